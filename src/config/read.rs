//! Reading the merged config into typed sections and `[[attacks]]` tables. Every unknown key and
//! every value of the wrong type is reported, with where it came from; the rest is still read, so
//! that the checks after this see every other key.

use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::{Figment, Source};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Config;
use crate::perturb::{attack_kind, AttackKeys, AttackTable, ReadAttack};
use crate::tagged::{plain_type_words, shown, Kind, Tagged};

/// A problem for each key no section or attack kind takes; Err when the sources cannot be read at
/// all (a file that is not TOML, a provider that fails): nothing else can then be checked.
pub(super) fn unknown_key_problems(f: &Figment) -> Result<Vec<String>, Vec<String>> {
    let value = f
        .extract::<serde_json::Value>()
        .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let mut unknown = Vec::new();
    unknown_keys(&value, &known_keys(), "", &mut unknown);
    Ok(unknown
        .into_iter()
        .map(|key| {
            format!(
                "unknown key `{key}`; check its spelling and section (README.md lists every key)"
            )
        })
        .collect())
}

/// Lists dotted keys present in `value` that the defaults do not have.
fn unknown_keys(
    value: &serde_json::Value,
    known: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    let (Some(map), Some(known_map)) = (value.as_object(), known.as_object()) else {
        return;
    };
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match known_map.get(k) {
            None => out.push(path),
            Some(kv) if kv.is_object() => unknown_keys(v, kv, &path, out),
            Some(serde_json::Value::Array(kinds)) if kinds.len() == 1 && kinds[0].is_object() => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    unknown_keys(item, &kinds[0], &format!("{path}[{i}]"), out);
                }
            }
            Some(_) => {}
        }
    }
}

/// Every key the config takes, with its default (`[[attacks]]` tables list every attack kind's
/// keys, with no defaults).
pub(super) fn known_keys() -> serde_json::Value {
    let mut known = serde_json::to_value(Config::default()).expect("defaults serialize");
    let mut attack = serde_json::Map::new();
    attack.insert("name".into(), serde_json::Value::Null);
    attack.insert(AttackKeys::TAG.into(), "".into());
    for key in AttackKeys::all_keys() {
        attack.insert(key.into(), serde_json::Value::Null);
    }
    known["attacks"] = serde_json::json!([attack]);
    // Left out of the defaults' serialization when 0 (see `PipelineConfig`).
    known["pipeline"]["memory_limit_mb"] = 0.into();
    // Left out when "fold" (see `GraphConfig`).
    known["graph"]["batch_norm"] = "fold".into();
    // Not set by default (see `GraphConfig`); its keys, so that others are reported unknown.
    known["graph"]["threshold"] =
        serde_json::json!({"percentile": null, "weight": null, "reference_percentile": null});
    known
}

/// The typed config and the `[[attacks]]` tables as read. Each section is read whole when it
/// can be, else key by key: a key whose value does not fit is reported (with where it came from)
/// and left at its default, and its dotted path goes into `bad`. `problems` must already hold the
/// unknown keys: when neither they nor a key explain a section's failure, its error is reported.
pub(super) fn read_config(
    f: &Figment,
    bad: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> (Config, Vec<ReadAttack>) {
    let mut p = TypeProblems {
        figment: f,
        known: known_keys(),
        explained: !problems.is_empty(),
        bad,
        problems,
    };
    let mut config = Config {
        model: p.section("model"),
        data: p.section("data"),
        pipeline: p.section("pipeline"),
        graph: p.section("graph"),
        homology: p.section("homology"),
        output: p.section("output"),
        subgraph: p.section("subgraph"),
        attacks: Vec::new(),
    };
    let attacks = p.attacks();
    config.attacks = attacks.iter().filter_map(|a| a.table.clone()).collect();
    (config, attacks)
}

/// Collects the keys whose values do not deserialize.
struct TypeProblems<'a> {
    figment: &'a Figment,
    known: serde_json::Value,
    /// Unknown keys were found: they explain a section that does not deserialize.
    explained: bool,
    bad: &'a mut Vec<String>,
    problems: &'a mut Vec<String>,
}

impl TypeProblems<'_> {
    fn section<T: Default + Serialize + DeserializeOwned>(&mut self, name: &str) -> T {
        let whole = match self.figment.extract_inner::<T>(name) {
            Ok(t) => return t,
            Err(e) => e,
        };
        let found = self.problems.len();
        let section = match self.figment.find_value(name) {
            Ok(Value::Dict(_, dict)) => {
                let known = self.known[name].clone();
                self.table(name, &dict, &T::default(), &known)
                    .unwrap_or_default()
            }
            Ok(other) => {
                self.not_a_table(name, &other, &format!("a [{name}] section"));
                T::default()
            }
            Err(_) => T::default(),
        };
        if !self.explained && self.problems.len() == found {
            self.problems
                .extend(whole.into_iter().map(|e| e.to_string()));
        }
        section
    }

    fn attacks(&mut self) -> Vec<ReadAttack> {
        let items = match self.figment.find_value("attacks") {
            Ok(Value::Array(_, items)) => items,
            Ok(other) => {
                self.not_a_table("attacks", &other, "[[attacks]] tables");
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        let mut read = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Dict(_, dict) => read.push(self.attack(i, dict)),
                other => {
                    let path = format!("attacks[{i}]");
                    self.not_a_table(&path, other, "an [[attacks]] table");
                    read.push(ReadAttack {
                        table: None,
                        problems: Vec::new(),
                    });
                }
            }
        }
        read
    }

    /// One `[[attacks]]` table: its name, its kind, and the keys that kind takes.
    fn attack(&mut self, index: usize, dict: &Dict) -> ReadAttack {
        let path = format!("attacks[{index}]");
        let name = dict
            .get("name")
            .and_then(|v| self.value::<String>(&format!("{path}.name"), v));
        let kind = dict
            .get(AttackKeys::TAG)
            .and_then(|v| self.value::<String>(&format!("{path}.{}", AttackKeys::TAG), v))
            .unwrap_or_default();
        let written: Vec<&str> = dict.keys().map(String::as_str).collect();
        let (found, mut problems) = attack_kind(index, &kind, &written);
        let keys = found.and_then(|kind| match self.attack_keys(&path, kind, dict) {
            Ok(keys) => Some(keys),
            Err(e) => {
                problems.push(e);
                None
            }
        });
        let table = keys.map(|keys| AttackTable { name, keys });
        ReadAttack { table, problems }
    }

    /// The keys `kind` takes from `dict`, each tried on its own: one whose value does not fit is
    /// reported and left out (unset).
    fn attack_keys(&mut self, path: &str, kind: Kind, dict: &Dict) -> Result<AttackKeys, String> {
        let start = || Figment::from(Serialized::default(AttackKeys::TAG, kind.name));
        let mut good = start();
        for (key, value) in dict.iter().filter(|(k, _)| kind.keys.contains(&k.as_str())) {
            let one = start().merge(Serialized::default(key, value));
            match one.extract::<AttackKeys>() {
                Ok(_) => good = good.merge(Serialized::default(key, value)),
                Err(e) => self.wrong_type(&format!("{path}.{key}"), value, &e.kind),
            }
        }
        good.extract().map_err(|e| format!("`{path}`: {e}"))
    }

    /// `value` as a `T`, or None after reporting it.
    fn value<T: DeserializeOwned>(&mut self, path: &str, value: &Value) -> Option<T> {
        match Figment::from(Serialized::default("value", value)).extract_inner::<T>("value") {
            Ok(t) => Some(t),
            Err(e) => {
                self.wrong_type(path, value, &e.kind);
                None
            }
        }
    }

    /// Reports a value of the wrong type at `path` (`attacks[0].eps`), with its default from the
    /// known keys.
    fn wrong_type(&mut self, path: &str, value: &Value, kind: &figment::error::Kind) {
        let key = path.rsplit('.').next().unwrap_or(path);
        let default = &self.known["attacks"][0][key];
        let problem = type_problem(self.figment, path, value, kind, default);
        self.problems.push(problem);
        self.bad.push(path.to_string());
    }

    /// `dict` as a `T` from `defaults`, keeping only the keys that deserialize one at a time.
    /// Unknown keys are skipped: they are reported as such.
    fn table<T: Serialize + DeserializeOwned>(
        &mut self,
        prefix: &str,
        dict: &Dict,
        defaults: &T,
        known: &serde_json::Value,
    ) -> Option<T> {
        let start = || Figment::from(Serialized::defaults(defaults));
        let mut good = start();
        for (key, value) in dict {
            let Some(default) = known.get(key) else {
                continue;
            };
            let path = format!("{prefix}.{key}");
            match start()
                .merge(Serialized::default(key, value))
                .extract::<T>()
            {
                Ok(_) => good = good.merge(Serialized::default(key, value)),
                Err(e) => {
                    let problem = type_problem(self.figment, &path, value, &e.kind, default);
                    self.problems.push(problem);
                    self.bad.push(path);
                }
            }
        }
        good.extract().ok()
    }

    fn not_a_table(&mut self, path: &str, value: &Value, expected: &str) {
        self.problems.push(format!(
            "`{path}` = {}{}: expected {expected}; fix: write it as {expected}",
            shown(value),
            origin(self.figment, path, value)
        ));
        self.bad.push(path.to_string());
    }
}

/// Where a value came from: " (in FILE)", " (from environment variable NAME)" or " (from --set)".
fn origin(f: &Figment, path: &str, value: &Value) -> String {
    let Some(meta) = f.get_metadata(value.tag()) else {
        return String::new();
    };
    match &meta.source {
        Some(Source::File(file)) => format!(" (in {})", file.display()),
        _ if meta.name.contains("environment") => format!(
            " (from environment variable ACTOPO_{})",
            path.replace('.', "__").to_ascii_uppercase()
        ),
        _ => " (from --set)".into(),
    }
}

/// A key whose value has the wrong type, with the type wanted and an example of a good value.
fn type_problem(
    f: &Figment,
    path: &str,
    value: &Value,
    kind: &figment::error::Kind,
    default: &serde_json::Value,
) -> String {
    let why = plain_type_words(&kind.to_string());
    let example = match default {
        serde_json::Value::Null => "see README.md for the values it takes".to_string(),
        d => format!("write a value of this type, e.g. {path} = {d} (the default)"),
    };
    format!(
        "`{path}` = {}{}: {why}; fix: {example}",
        shown(value),
        origin(f, path, value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/configuration.md has a row for every key of every section.
    #[test]
    fn the_docs_list_every_key() {
        let docs = include_str!("../../docs/configuration.md");
        let known = known_keys();
        for (section, keys) in known.as_object().into_iter().flatten() {
            for key in keys.as_object().into_iter().flatten().map(|(k, _)| k) {
                let row = format!("| `{section}.{key}` |");
                assert!(
                    docs.contains(&row),
                    "docs/configuration.md has no row {row}"
                );
            }
        }
    }
}
