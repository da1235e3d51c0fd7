//! `manifest.json` (one `manifest-IIIII-of-NNNNN.json` per worker when several share a folder):
//! what a run was asked to do and how far it got, so it can be audited and resumed. Rewritten
//! atomically and durably (temporary file, sync, rename, sync the folder) whenever a shard changes
//! status; a shard counts as done only once its record here says so. Fields and statuses:
//! `docs/output-schema.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fingerprint::SourceFingerprint;
use super::folder;
use crate::config::Config;
use crate::perturb::Attack;

/// The model a run used, as recorded in the manifest.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelInfo {
    pub(crate) name: String,
    pub(crate) spec: PathBuf,
    pub(crate) spec_sha256: String,
    pub(crate) weights: PathBuf,
    pub(crate) weights_sha256: String,
    pub(crate) input_shape: Vec<usize>,
    /// Vertex layers in unit-id order: name, first unit id, number of units.
    pub(crate) vertex_layers: Vec<(String, u32, u32)>,
}

/// Where a shard stands: `pending` until its files are committed, then `done` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShardStatus {
    Pending,
    Done,
    Failed,
}

/// One shard's record in the manifest: its files, status and outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShardRecord {
    pub(crate) name: String,
    /// Output file stem (`summary/<stem>.parquet`).
    #[serde(default)]
    pub(crate) stem: String,
    pub(crate) path: PathBuf,
    pub(crate) status: ShardStatus,
    pub(crate) samples: Option<usize>,
    /// Final files with their sizes (a rerun skips the shard only if they are all still there).
    pub(crate) outputs: Vec<OutputFile>,
    /// Rows in this shard's failures table.
    pub(crate) failures: u64,
    pub(crate) error: Option<String>,
    /// The input files as they were when the shard was processed: a rerun redoes the shard when
    /// they have changed.
    #[serde(default)]
    pub(crate) source: Option<SourceFingerprint>,
}

impl ShardRecord {
    /// A shard not started yet.
    pub(crate) fn pending(name: &str, stem: &str, path: &Path) -> ShardRecord {
        ShardRecord {
            name: name.to_string(),
            stem: stem.to_string(),
            path: path.to_path_buf(),
            status: ShardStatus::Pending,
            samples: None,
            outputs: Vec::new(),
            failures: 0,
            error: None,
            source: None,
        }
    }
}

/// The run record, as written.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Manifest {
    pub(crate) tool: &'static str,
    pub(crate) version: &'static str,
    /// What decides the output rows (see `identity::identity`): a rerun with another identity into
    /// the same folder is refused.
    pub(crate) identity: serde_json::Value,
    /// This worker's index and the number of workers sharing the folder.
    pub(crate) worker: [usize; 2],
    pub(crate) config_file: PathBuf,
    pub(crate) config: Config,
    pub(crate) device: String,
    pub(crate) model: ModelInfo,
    pub(crate) conventions: BTreeMap<String, String>,
    /// The `variant` values, in row order: `clean`, then the attacks.
    pub(crate) variants: Vec<String>,
    /// The attacks with every parameter resolved (defaults filled in).
    pub(crate) attacks: Vec<Attack>,
    pub(crate) shards: Vec<ShardRecord>,
}

/// An output file and its size when it was finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: PathBuf,
    pub bytes: u64,
}

impl Manifest {
    /// Writes `dir/<file>` atomically and durably.
    pub(crate) fn write(&self, dir: &Path, file: &str) -> anyhow::Result<()> {
        folder::write_atomically(dir, file, &serde_json::to_vec_pretty(self)?)
    }
}

/// True for the names manifests have (`manifest.json`, `manifest-IIIII-of-NNNNN.json`).
fn is_manifest_name(name: &str) -> bool {
    name.starts_with("manifest") && name.ends_with(".json")
}

/// Whether `dir` holds a manifest (of any worker).
pub(crate) fn has_manifest(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| is_manifest_name(&e.file_name().to_string_lossy()))
    })
}

/// The manifest file of worker `index` of `count`.
pub(crate) fn manifest_name(index: usize, count: usize) -> String {
    if count <= 1 {
        "manifest.json".to_string()
    } else {
        format!("manifest-{index:05}-of-{count:05}.json")
    }
}

/// The start every manifest actopo writes has (pretty-printed JSON, `tool` first).
const MANIFEST_START: &[u8] = b"{\n  \"tool\": \"actopo\"";

/// An actopo manifest, or what is left of one cut short by a crash (empty or truncated).
fn manifest_is_ours(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MANIFEST_START.len());
    bytes[..n] == MANIFEST_START[..n]
}

/// Whether the file at `path` is an actopo manifest (judged by its first bytes alone).
pub(crate) fn file_is_ours(path: &Path) -> bool {
    read_start(path, MANIFEST_START.len()).is_ok_and(|b| manifest_is_ours(&b))
}

/// Up to `n` first bytes of a file (a manifest is recognised by its start alone).
fn read_start(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(n);
    std::fs::File::open(path)?
        .take(n as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The parts of a manifest a rerun needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ManifestView {
    pub(crate) identity: Value,
    pub(crate) shards: Vec<ShardRecord>,
}

/// A manifest file found in the output folder.
pub(crate) enum FoundManifest {
    Intact(ManifestView),
    /// Empty or cut short (a crash or full disk while writing it): rebuilt from the outputs.
    Damaged,
}

/// Every manifest in `dir` (any worker's), by file name. A file named like a manifest that actopo
/// did not write is refused rather than touched.
pub(crate) fn read_manifests(dir: &Path) -> anyhow::Result<Vec<(PathBuf, FoundManifest)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_manifest_name(&name) {
            continue;
        }
        let path = e.path();
        let foreign = |why: &str| {
            anyhow::anyhow!(
                "{} {why}, but actopo keeps its run record under that name; fix: move it away, or choose another output.dir",
                path.display()
            )
        };
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            return Err(foreign("is a symbolic link"));
        }
        if !meta.is_file() {
            return Err(foreign("is not a regular file"));
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if !manifest_is_ours(&bytes) {
            return Err(foreign("was not written by actopo"));
        }
        let found = match serde_json::from_slice::<ManifestView>(&bytes) {
            Ok(view) => FoundManifest::Intact(view),
            Err(e) if e.is_eof() || bytes.is_empty() => FoundManifest::Damaged,
            Err(e) => anyhow::bail!(
                "{} is not a manifest this actopo can read ({e}); fix: move it away, or rerun with --overwrite",
                path.display()
            ),
        };
        out.push((path, found));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_cut_short_are_ours_others_are_not() {
        assert!(manifest_is_ours(b""));
        assert!(manifest_is_ours(b"{\n  \"to"));
        assert!(manifest_is_ours(
            b"{\n  \"tool\": \"actopo\",\n  \"version\""
        ));
        assert!(!manifest_is_ours(b"{\"tool\": \"actopo\"}"));
        assert!(!manifest_is_ours(b"[1, 2]"));
    }

    /// Every field a manifest and its shard records are written with has its row in the doc.
    #[test]
    fn the_schema_doc_lists_every_manifest_field() {
        let doc = include_str!("../../docs/output-schema.md");
        let section = &doc[doc.find("## The manifest").expect("manifest section")..];
        let record = ShardRecord::pending("a.npz", "a", Path::new("a.npz"));
        let manifest = Manifest {
            tool: "actopo",
            version: "0",
            identity: Value::Null,
            worker: [0, 1],
            config_file: "c.toml".into(),
            config: Config::default(),
            device: "cpu".into(),
            model: ModelInfo {
                name: "m".into(),
                spec: "s".into(),
                spec_sha256: String::new(),
                weights: "w".into(),
                weights_sha256: String::new(),
                input_shape: Vec::new(),
                vertex_layers: Vec::new(),
            },
            conventions: BTreeMap::new(),
            variants: Vec::new(),
            attacks: Vec::new(),
            shards: vec![record.clone()],
        };
        let keys = |v: Value| -> Vec<String> {
            v.as_object().expect("an object").keys().cloned().collect()
        };
        let manifest = serde_json::to_value(&manifest).expect("a manifest serializes");
        let record = serde_json::to_value(&record).expect("a record serializes");
        for key in keys(manifest).into_iter().chain(keys(record)) {
            assert!(
                section.contains(&format!("| `{key}` |")),
                "docs/output-schema.md: the manifest section has no row for `{key}`"
            );
        }
        for status in [ShardStatus::Pending, ShardStatus::Done, ShardStatus::Failed] {
            let name = serde_json::to_value(status).expect("a status serializes");
            let name = name.as_str().expect("a string");
            assert!(section.contains(&format!("- `{name}`:")), "status `{name}`");
        }
    }

    #[test]
    fn manifest_names_per_worker() {
        assert_eq!(manifest_name(0, 1), "manifest.json");
        assert_eq!(manifest_name(2, 16), "manifest-00002-of-00016.json");
        assert!(is_manifest_name(&manifest_name(2, 16)));
    }
}
