//! What an output folder already holds, so a rerun redoes nothing that is done and refuses to mix
//! runs: the run's identity (what decides the output rows), per-worker manifests, which shards are
//! complete, and the stale partial files a killed run leaves behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::data::{self, ShardSource};
use crate::output::manifest::{hex_sha256, sha256_file, ShardEntry, ShardStatus};
use crate::output::folder::{self, Existing};
use crate::output;

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

/// True for the names manifests have (`manifest.json`, `manifest-IIIII-of-NNNNN.json`).
pub fn is_manifest_name(name: &str) -> bool {
    name.starts_with("manifest") && name.ends_with(".json")
}

/// Whether `dir` holds a manifest (of any worker).
pub fn has_manifest(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| is_manifest_name(&e.file_name().to_string_lossy()))
    })
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

/// One input file as it was when its shard was processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub path: PathBuf,
    pub bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
    pub sha256: String,
}

/// A shard's input files (the data file, and an IDX image file's labels) and one hash over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFingerprint {
    pub sha256: String,
    pub files: Vec<FileFingerprint>,
}

fn size_and_mtime(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), modified))
}

/// The files reading a shard opens: the data file, then an IDX image file's labels.
fn source_files(src: &ShardSource) -> Vec<PathBuf> {
    std::iter::once(src.path.clone())
        .chain(data::companion_files(src))
        .collect()
}

/// Reads a shard's files once to fingerprint them.
pub fn fingerprint(src: &ShardSource) -> std::io::Result<SourceFingerprint> {
    let mut files = Vec::new();
    for path in source_files(src) {
        let (bytes, modified_ns) = size_and_mtime(&path)?;
        files.push(FileFingerprint {
            sha256: sha256_file(&path)?,
            path,
            bytes,
            modified_ns,
        });
    }
    let joined: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
    Ok(SourceFingerprint {
        sha256: hex_sha256(joined.join("\n").as_bytes()),
        files,
    })
}

impl SourceFingerprint {
    /// Whether `src` still holds what was fingerprinted. Files whose size and modification time
    /// are as recorded are taken as unchanged (like make and rsync); others are hashed again, so
    /// a copied dataset (new times, same bytes) is not redone.
    pub fn unchanged(&self, src: &ShardSource) -> bool {
        let paths = source_files(src);
        paths.len() == self.files.len()
            && paths
                .iter()
                .zip(&self.files)
                .all(|(path, old)| match size_and_mtime(path) {
                    Ok((bytes, modified)) if bytes == old.bytes && modified == old.modified_ns => {
                        true
                    }
                    Ok((bytes, _)) if bytes == old.bytes => {
                        sha256_file(path).is_ok_and(|h| h == old.sha256)
                    }
                    _ => false,
                })
    }
}

/// The parts of a manifest a rerun needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestView {
    pub identity: Value,
    pub shards: Vec<ShardEntry>,
}

/// A manifest file found in the output folder.
pub enum FoundManifest {
    Intact(ManifestView),
    /// Empty or cut short (a crash or full disk while writing it): rebuilt from the outputs.
    Damaged,
}

impl ShardEntry {
    /// Done, with every output file still a regular file at its recorded size.
    fn outputs_present(&self) -> bool {
        self.status == ShardStatus::Done
            && self.outputs.iter().all(|f| {
                std::fs::symlink_metadata(&f.path).is_ok_and(|m| m.is_file() && m.len() == f.bytes)
            })
    }

    /// The output stem (older manifests did not record it: derived from the name).
    fn output_stem(&self) -> String {
        if self.stem.is_empty() {
            data::stem_of(Path::new(&self.name))
        } else {
            self.stem.clone()
        }
    }
}

/// Every manifest in `dir` (any worker's), by file name. A file named like a manifest that actopo
/// did not write is refused rather than touched.
pub fn read_manifests(dir: &Path) -> anyhow::Result<Vec<(PathBuf, FoundManifest)>> {
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
        if !folder::manifest_is_ours(&bytes) {
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

/// What to do with an output folder before running.
#[derive(Debug, Default)]
pub struct Plan {
    /// This worker's shards already complete, by name, with their manifest entries: skipped.
    pub complete: Vec<ShardEntry>,
    /// Entries of this worker's earlier manifest for shards no longer in its list (kept, so the
    /// folder stays described and their output names stay taken).
    pub former: Vec<ShardEntry>,
    /// What the user should hear about (changed shards, a rebuilt manifest).
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_complete(&self, name: &str) -> bool {
        self.complete.iter().any(|e| e.name == name)
    }
}

/// The SHA-256 of a run identity, as stamped on every output file.
pub fn identity_sha256(identity: &Value) -> String {
    hex_sha256(identity.to_string().as_bytes())
}

/// Checks `dir` against this run's identity. Refuses a folder holding another run's outputs (naming
/// what differs), unknown files, or an earlier shard whose outputs this run's shards would
/// overwrite; with `overwrite`, removes this worker's outputs and manifest instead. Returns the
/// shards of `mine` already complete (unchanged since), rebuilding that list from the output
/// files themselves when this worker's manifest was cut short.
pub fn check_output_dir(
    dir: &Path,
    identity: &Value,
    manifest_file: &str,
    mine: &[ShardSource],
    overwrite: bool,
    tables: &[&str],
) -> anyhow::Result<Plan> {
    let manifests = read_manifests(dir)?;
    if overwrite {
        remove_outputs(dir, mine)?;
        folder::remove_ours(&dir.join(manifest_file))?;
        return Ok(Plan::default());
    }
    let intact: Vec<(&PathBuf, &ManifestView)> = manifests
        .iter()
        .filter_map(|(p, m)| match m {
            FoundManifest::Intact(v) => Some((p, v)),
            FoundManifest::Damaged => None,
        })
        .collect();
    for (path, m) in &intact {
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
    for (path, m) in &intact {
        check_stems(dir, path, m, mine)?;
    }
    let own = manifests
        .iter()
        .find(|(p, _)| p.file_name().is_some_and(|n| n == manifest_file));
    match own {
        Some((_, FoundManifest::Intact(m))) => Ok(plan_from_manifest(m, mine)),
        Some((path, FoundManifest::Damaged)) => {
            let mut plan = rebuild(dir, identity, mine, tables)?;
            plan.notes.push(format!(
                "{} was empty or cut short (an earlier run stopped while writing it); rebuilt it: {} shard(s) verifiably complete, the rest will be redone",
                path.display(),
                plan.complete.len()
            ));
            Ok(plan)
        }
        None => Ok(Plan::default()),
    }
}

/// Refuses a folder that holds visible files but no actopo manifest. The run calls it before
/// taking its lock, so actopo leaves no lock file in someone else's folder.
pub fn refuse_unknown_files(dir: &Path) -> anyhow::Result<()> {
    if has_manifest(dir) {
        return Ok(());
    }
    let stray: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    if !stray.is_empty() {
        anyhow::bail!(
            "output.dir {} is not empty but has no actopo manifest ({}); fix: use an empty or new output.dir",
            dir.display(),
            stray.join(", ")
        );
    }
    Ok(())
}

/// Refuses a shard of this run whose output name another shard already has in the folder.
fn check_stems(
    dir: &Path,
    manifest: &Path,
    m: &ManifestView,
    mine: &[ShardSource],
) -> anyhow::Result<()> {
    for src in mine {
        if let Some(other) = m
            .shards
            .iter()
            .find(|e| e.name != src.name && e.output_stem() == src.stem)
        {
            anyhow::bail!(
                "shard {} would write {}, which belongs to shard {} in {} (outputs are named by file stem); fix: rename one of the two files, or use another output.dir",
                src.path.display(),
                dir.join("summary").join(format!("{}.parquet", src.stem)).display(),
                other.name,
                manifest.display()
            );
        }
    }
    Ok(())
}

fn plan_from_manifest(m: &ManifestView, mine: &[ShardSource]) -> Plan {
    let mut plan = Plan::default();
    for e in &m.shards {
        let Some(src) = mine.iter().find(|s| s.name == e.name) else {
            plan.former.push(e.clone());
            continue;
        };
        if !e.outputs_present() {
            continue;
        }
        match &e.source {
            Some(fp) if fp.unchanged(src) => plan.complete.push(e.clone()),
            Some(_) => plan.notes.push(format!(
                "{} changed since it was processed; redoing it",
                src.path.display()
            )),
            None => plan.notes.push(format!(
                "{} was processed by an actopo that recorded no fingerprint; redoing it",
                src.path.display()
            )),
        }
    }
    plan
}

/// Rebuilds the list of complete shards from the output files: a shard counts when every file
/// of its last commit is present, written by this run for the shard's current content, and the
/// commit holds every result table this run writes (see `output::commit_metadata`).
fn rebuild(
    dir: &Path,
    identity: &Value,
    mine: &[ShardSource],
    tables: &[&str],
) -> anyhow::Result<Plan> {
    let run = identity_sha256(identity);
    let mut plan = Plan::default();
    for src in mine {
        let mut present = Vec::new();
        for table in TABLES {
            let path = output::table_path(dir, table, &src.stem);
            match folder::existing(&path) {
                Existing::Absent => {}
                Existing::Ours => present.push((table, path)),
                Existing::Foreign(why) => anyhow::bail!(
                    "{} {why}; fix: move it away, or choose another output.dir",
                    path.display()
                ),
            }
        }
        if present.is_empty() {
            continue;
        }
        let Ok(source) = fingerprint(src) else {
            continue;
        };
        let stamps: Vec<Vec<(String, String)>> = present
            .iter()
            .map(|(_, p)| folder::parquet_metadata(p).unwrap_or_default())
            .collect();
        let get = |kv: &[(String, String)], key: &str| {
            kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        };
        for (kv, (_, path)) in stamps.iter().zip(&present) {
            if get(kv, output::RUN_IDENTITY_KEY).is_some_and(|r| r != run) {
                anyhow::bail!(
                    "output.dir {} holds {} from a different run; fix: use another output.dir, or rerun with --overwrite",
                    dir.display(),
                    path.display()
                );
            }
        }
        let listed = get(&stamps[0], output::SHARD_FILES_KEY).unwrap_or_default();
        let names: Vec<&str> = present.iter().map(|(t, _)| *t).collect();
        let one_commit = stamps.iter().all(|kv| {
            get(kv, output::RUN_IDENTITY_KEY).as_deref() == Some(run.as_str())
                && get(kv, output::SOURCE_KEY).as_deref() == Some(source.sha256.as_str())
                && get(kv, output::SHARD_FILES_KEY).as_deref() == Some(listed.as_str())
        });
        let whole = listed == names.join(",") && tables.iter().all(|t| names.contains(t));
        if !(one_commit && whole) {
            continue;
        }
        let outputs = present
            .iter()
            .map(|(_, p)| {
                Ok(OutputFile {
                    bytes: std::fs::metadata(p)?.len(),
                    path: p.clone(),
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        plan.complete.push(ShardEntry {
            name: src.name.clone(),
            stem: src.stem.clone(),
            path: src.path.clone(),
            status: ShardStatus::Done,
            samples: None,
            outputs,
            failures: 0,
            error: None,
            source: Some(source),
        });
    }
    Ok(plan)
}

/// Deletes this worker's final and partial output files (only files actopo wrote).
fn remove_outputs(dir: &Path, mine: &[ShardSource]) -> anyhow::Result<()> {
    for src in mine {
        for table in TABLES {
            folder::remove_ours(&output::table_path(dir, table, &src.stem))?;
        }
    }
    remove_stale_partials(dir, mine);
    Ok(())
}

/// Before a run: shards that are not complete lose the files an interrupted attempt renamed into
/// place (a shard's files count only once the manifest says `done`).
pub fn clear_unfinished(dir: &Path, mine: &[ShardSource], plan: &Plan) -> anyhow::Result<()> {
    for src in mine.iter().filter(|s| !plan.is_complete(&s.name)) {
        for table in TABLES {
            folder::remove_ours(&output::table_path(dir, table, &src.stem))?;
        }
    }
    remove_stale_partials(dir, mine);
    Ok(())
}

/// Deletes the temporary manifest (`.<manifest>.XXXXXX.partial`) a killed run of this worker left.
pub fn remove_stale_manifest_temps(dir: &Path, manifest_file: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if folder::is_temp_name(&name, manifest_file, ".partial") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Deletes the hidden temporary files (`.<stem>.XXXXXX.parquet.partial`) a killed run of this
/// worker left behind. Only this worker's stems: other workers sharing the folder may be writing
/// theirs right now.
pub fn remove_stale_partials(dir: &Path, mine: &[ShardSource]) {
    for table in TABLES {
        let Ok(entries) = std::fs::read_dir(dir.join(table)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if mine
                .iter()
                .any(|s| folder::is_temp_name(&name, &s.stem, ".parquet.partial"))
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
