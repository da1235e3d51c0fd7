//! The run identity: the settings that decide the output rows. Two runs with the same identity
//! write the same rows, so a rerun may resume into the folder; any other run is refused, naming
//! what differs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fingerprint::hex_sha256;
use crate::config::Config;

/// The settings that decide the output rows: the configuration without the keys that only change
/// speed or location (workers, batch size, device, output dir, which shards), plus what the model
/// files hold and the tool's version. Two runs with the same identity write the same rows.
pub(crate) fn identity(config: &Config, spec_sha256: &str, weights_sha256: &str) -> Value {
    let mut c = serde_json::to_value(config).expect("config serializes");
    for (section, key) in [
        ("pipeline", "workers"),
        ("pipeline", "batch_size"),
        ("pipeline", "memory_limit_mb"),
        ("model", "device"),
        ("model", "spec"),
        ("model", "weights"),
        ("output", "dir"),
        ("data", "shards"),
    ] {
        if let Some(obj) = c.get_mut(section).and_then(Value::as_object_mut) {
            obj.remove(key);
        }
    }
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "spec_sha256": spec_sha256,
        "weights_sha256": weights_sha256,
        "config": c,
    })
}

fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// "key: old -> new" for every leaf that differs between two identities.
pub(crate) fn differences(old: &Value, new: &Value) -> Vec<String> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(old, "", &mut a);
    flatten(new, "", &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| {
                m.get(k).cloned().unwrap_or_else(|| "(unset)".into())
            };
            format!(
                "{}: {} -> {}",
                k.strip_prefix("config.").unwrap_or(k),
                show(&a),
                show(&b)
            )
        })
        .collect()
}

/// The SHA-256 of a run identity, as stamped on every output file.
pub(crate) fn identity_sha256(identity: &Value) -> String {
    hex_sha256(identity.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ignores_speed_and_location_keys() {
        let mut a = Config::default();
        let mut b = Config::default();
        b.pipeline.workers = 7;
        b.pipeline.batch_size = 3;
        b.pipeline.memory_limit_mb = 4096;
        b.output.dir = "elsewhere".into();
        b.data.shards = vec!["more/*.npz".into()];
        assert_eq!(identity(&a, "s", "w"), identity(&b, "s", "w"));
        a.graph.scopes = vec!["layers".into()];
        let d = differences(&identity(&b, "s", "w"), &identity(&a, "s", "w2"));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with("graph.scopes: [\"network\"] -> [\"layers\"]"),
            "{d:?}"
        );
        assert!(d[1].starts_with("weights_sha256"), "{d:?}");
    }
}
