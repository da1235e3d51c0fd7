//! What an output folder already holds, so a rerun redoes nothing that is done and refuses to mix
//! runs: the run's identity (what decides the output rows), per-worker manifests, which shards are
//! complete, and the stale partial files a killed run leaves behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::data::ShardSource;

/// Output folders a shard writes into.
pub const TABLES: [&str; 4] = ["summary", "diagrams", "subgraphs", "failures"];

/// The settings that decide the output rows: the configuration without the keys that only change
/// speed or location (workers, batch size, device, output dir, which shards), plus what the model
/// files hold and the tool's version. Two runs with the same identity write the same rows.
pub fn identity(config: &Config, spec_sha256: &str, weights_sha256: &str) -> Value {
    let mut c = serde_json::to_value(config).expect("config serializes");
    for (section, key) in [
        ("pipeline", "workers"),
        ("pipeline", "batch_size"),
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
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
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

/// The manifest file of worker `index` of `count`.
pub fn manifest_name(index: usize, count: usize) -> String {
    if count <= 1 {
        "manifest.json".to_string()
    } else {
        format!("manifest-{index:05}-of-{count:05}.json")
    }
}

/// An output file and its size when it was finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The parts of a manifest a rerun needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestView {
    pub identity: Value,
    pub shards: Vec<ShardView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardView {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
}

impl ShardView {
    /// Done, with every output file present at its recorded size.
    pub fn complete(&self) -> bool {
        self.status == "done"
            && self
                .outputs
                .iter()
                .all(|f| std::fs::metadata(&f.path).is_ok_and(|m| m.len() == f.bytes))
    }
}

/// Every manifest in `dir` (any worker's), by file name.
pub fn read_manifests(dir: &Path) -> anyhow::Result<Vec<(PathBuf, ManifestView)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("manifest") && name.ends_with(".json") {
            let text = std::fs::read_to_string(e.path())?;
            let view: ManifestView = serde_json::from_str(&text).map_err(|err| {
                anyhow::anyhow!(
                    "{} is not a manifest this actopo can read ({err}); move it away or rerun with --overwrite",
                    e.path().display()
                )
            })?;
            out.push((e.path(), view));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What to do with an output folder before running.
#[derive(Debug, Default)]
pub struct Plan {
    /// Shards (by name) already complete: skipped.
    pub complete: Vec<String>,
}

/// Checks `dir` against this run's identity. Refuses a folder holding another run's outputs (naming
/// what differs) or unknown files, unless `overwrite`, in which case this worker's outputs and
/// manifest are removed. Returns the shards of `mine` that are already complete.
pub fn check_output_dir(
    dir: &Path,
    identity: &Value,
    manifest_file: &str,
    mine: &[ShardSource],
    overwrite: bool,
) -> anyhow::Result<Plan> {
    if overwrite {
        remove_outputs(dir, mine)?;
        let _ = std::fs::remove_file(dir.join(manifest_file));
        return Ok(Plan::default());
    }
    let manifests = read_manifests(dir)?;
    for (path, m) in &manifests {
        if &m.identity != identity {
            let diffs = differences(&m.identity, identity);
            anyhow::bail!(
                "output.dir {} holds the outputs of a different run ({}):\n  {}\n  fix: use another output.dir, restore those settings to resume, or rerun with --overwrite to replace this worker's outputs",
                dir.display(),
                path.display(),
                diffs.join("\n  ")
            );
        }
    }
    if manifests.is_empty() {
        let stray: Vec<String> = std::fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let has_outputs = stray
            .iter()
            .any(|n| TABLES.contains(&n.as_str()) || !n.starts_with('.'));
        if has_outputs {
            anyhow::bail!(
                "output.dir {} is not empty but has no actopo manifest ({}); fix: use an empty or new output.dir, or rerun with --overwrite",
                dir.display(),
                stray.join(", ")
            );
        }
    }
    let mut plan = Plan::default();
    if let Some((_, m)) = manifests
        .iter()
        .find(|(p, _)| p.file_name().is_some_and(|n| n == manifest_file))
    {
        for s in &m.shards {
            if s.complete() && mine.iter().any(|src| src.name == s.name) {
                plan.complete.push(s.name.clone());
            }
        }
    }
    Ok(plan)
}

/// Deletes this worker's final and partial output files.
fn remove_outputs(dir: &Path, mine: &[ShardSource]) -> anyhow::Result<()> {
    for table in TABLES {
        for src in mine {
            let f = dir.join(table).join(format!("{}.parquet", src.stem));
            if f.exists() {
                std::fs::remove_file(&f)?;
            }
        }
    }
    remove_stale_partials(dir, mine);
    Ok(())
}

/// Deletes hidden `.<stem>.*.partial` files a killed run of this worker left behind. Only this
/// worker's stems: other workers sharing the folder may be writing theirs right now.
pub fn remove_stale_partials(dir: &Path, mine: &[ShardSource]) {
    for table in TABLES.iter().copied().chain(["analysis"]) {
        let Ok(entries) = std::fs::read_dir(dir.join(table)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial")
                && mine
                    .iter()
                    .any(|s| name.starts_with(&format!(".{}.", s.stem)))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The shards worker `index` of `count` processes: every count-th of the sorted list.
pub fn split(shards: &[ShardSource], index: usize, count: usize) -> Vec<ShardSource> {
    shards
        .iter()
        .enumerate()
        .filter(|(i, _)| i % count.max(1) == index)
        .map(|(_, s)| s.clone())
        .collect()
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

    #[test]
    fn split_is_disjoint_and_complete() {
        let shards: Vec<ShardSource> = (0..10)
            .map(|i| ShardSource {
                path: format!("/d/{i}.npz").into(),
                name: format!("{i}.npz"),
                stem: i.to_string(),
                format: crate::config::DataFormat::Npz,
            })
            .collect();
        let mut seen: Vec<String> = (0..3)
            .flat_map(|w| split(&shards, w, 3))
            .map(|s| s.name)
            .collect();
        seen.sort();
        let mut all: Vec<String> = shards.iter().map(|s| s.name.clone()).collect();
        all.sort();
        assert_eq!(seen, all);
        assert_eq!(split(&shards, 1, 3).len(), 3);
        assert_eq!(manifest_name(0, 1), "manifest.json");
        assert_eq!(manifest_name(2, 16), "manifest-00002-of-00016.json");
    }
}
