//! Where config values come from, in rising order: built-in defaults, the TOML file, `ACTOPO_`
//! environment variables (sections split on `__`), `--set key=value` flags.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;

use super::read::known_keys;
use super::Config;

/// Every source merged over the defaults; a `--set` flag that cannot be read is a problem.
pub(super) fn layered(path: &Path, sets: &[String], problems: &mut Vec<String>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file_exact(path))
        .merge(
            Env::prefixed("ACTOPO_")
                .split("__")
                .filter(|k| !k.as_str().is_empty())
                .map(|k| k.as_str().to_lowercase().into()),
        );
    for flag in sets {
        match parse_set(flag) {
            Ok((key, value)) => figment = figment.merge(Serialized::global(&key, value)),
            Err(e) => problems.push(e),
        }
    }
    lists_from_single_values(figment)
}

/// Parses a `--set key=value` flag. The value is read as a TOML value when it is one
/// (`64`, `true`, `["a", "b"]`), else as a string.
fn parse_set(flag: &str) -> Result<(String, toml::Value), String> {
    let (key, value) = flag.split_once('=').ok_or_else(|| {
        format!("--set {flag}: expected key=value, e.g. --set pipeline.batch_size=64")
    })?;
    let key = key.trim().to_string();
    if key.split('.').any(|part| part.trim().is_empty()) {
        return Err(format!(
            "--set {flag}: the key {}; write --set section.key=value, e.g. --set pipeline.batch_size=64",
            if key.is_empty() {
                "is empty".to_string()
            } else {
                format!("`{key}` has an empty part")
            }
        ));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key, parsed))
}

/// A single value given for a key whose default is a list of values (`--set graph.scopes=layers`,
/// `ACTOPO_DATA__MEAN=0.5`, or the file) is taken as a one-element list. The value keeps its tag,
/// so a problem with it still names where it came from.
fn lists_from_single_values(f: Figment) -> Figment {
    let mut wrapped = Dict::new();
    for (section, keys) in known_keys().as_object().into_iter().flatten() {
        let mut lists = Dict::new();
        for (key, default) in keys.as_object().into_iter().flatten() {
            let Some(items) = default.as_array() else {
                continue;
            };
            if items.iter().any(|i| i.is_object() || i.is_array()) {
                continue; // tables (`[[attacks]]`) are not wrapped
            }
            if let Ok(
                v @ (Value::String(..) | Value::Char(..) | Value::Bool(..) | Value::Num(..)),
            ) = f.find_value(&format!("{section}.{key}"))
            {
                lists.insert(key.clone(), Value::Array(v.tag(), vec![v]));
            }
        }
        if !lists.is_empty() {
            wrapped.insert(section.clone(), Value::from(lists));
        }
    }
    if wrapped.is_empty() {
        return f;
    }
    f.merge(SingleValues(wrapped))
}

/// The provider of `lists_from_single_values`: merged last (global profile), so it wins.
struct SingleValues(Dict);

impl figment::Provider for SingleValues {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("a single value for a list key")
    }

    fn data(&self) -> figment::Result<figment::value::Map<figment::Profile, Dict>> {
        Ok(figment::Profile::Global.collect(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_flags_need_a_key_with_no_empty_part() {
        assert_eq!(
            parse_set("pipeline.batch_size=64").unwrap(),
            ("pipeline.batch_size".into(), toml::Value::Integer(64))
        );
        for (flag, why) in [
            ("=1", "the key is empty"),
            (" =1", "the key is empty"),
            (".x=1", "the key `.x` has an empty part"),
            ("a..b=1", "the key `a..b` has an empty part"),
        ] {
            let err = parse_set(flag).unwrap_err();
            assert!(err.starts_with(&format!("--set {flag}: {why};")), "{err}");
        }
    }
}
