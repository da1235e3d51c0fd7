//! What an output folder already holds, so a rerun redoes nothing that is done and refuses to mix
//! runs: which of this worker's shards are complete (from its manifest, or rebuilt from the files'
//! commit metadata when the manifest was cut short), and the unfinished and stale partial files a
//! killed run leaves behind.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::fingerprint::fingerprint;
use super::folder::{self, Existing};
use super::identity::{differences, identity_sha256};
use super::manifest::{
    has_manifest, read_manifests, FoundManifest, ManifestView, OutputFile, ShardRecord, ShardStatus,
};
use super::shard::{RUN_IDENTITY_KEY, SHARD_FILES_KEY, SOURCE_KEY};
use super::tables::Table;
use crate::data::{self, ShardSource};

impl ShardRecord {
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

/// What to do with an output folder before running.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// This worker's shards already complete, by name, with their manifest entries: skipped.
    pub(crate) complete: Vec<ShardRecord>,
    /// Entries of this worker's earlier manifest for shards no longer in its list (kept, so the
    /// folder stays described and their output names stay taken).
    pub(crate) former: Vec<ShardRecord>,
    /// What the user should hear about (changed shards, a rebuilt manifest).
    pub(crate) notes: Vec<String>,
}

impl Plan {
    pub(crate) fn is_complete(&self, name: &str) -> bool {
        self.complete.iter().any(|e| e.name == name)
    }
}

/// Checks `dir` against this run's identity. Refuses a folder holding another run's outputs (naming
/// what differs), unknown files, or an earlier shard whose outputs this run's shards would
/// overwrite; with `overwrite`, removes this worker's outputs and manifest instead. Returns the
/// shards of `mine` already complete (unchanged since), rebuilding that list from the output
/// files themselves when this worker's manifest was cut short.
pub(crate) fn check_output_dir(
    dir: &Path,
    identity: &Value,
    manifest_file: &str,
    mine: &[ShardSource],
    overwrite: bool,
    tables: &[Table],
) -> anyhow::Result<Plan> {
    let manifests = read_manifests(dir)?;
    if overwrite {
        // Outputs first, then the manifest: a crash in between leaves nothing marked done.
        clear_unfinished(dir, mine, &Plan::default())?;
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
pub(crate) fn refuse_unknown_files(dir: &Path) -> anyhow::Result<()> {
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
                src.location,
                Table::Summary.path(dir, &src.stem).display(),
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
                src.location
            )),
            None => plan.notes.push(format!(
                "{} was processed by an actopo that recorded no fingerprint; redoing it",
                src.location
            )),
        }
    }
    plan
}

/// Rebuilds the list of complete shards from the output files: a shard counts when every file
/// of its last commit is present, written by this run for the shard's current content, and the
/// commit holds every result table this run writes (see `shard::commit_metadata`).
fn rebuild(
    dir: &Path,
    identity: &Value,
    mine: &[ShardSource],
    tables: &[Table],
) -> anyhow::Result<Plan> {
    let run = identity_sha256(identity);
    let mut plan = Plan::default();
    for src in mine {
        let present = files_present(dir, src)?;
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
        for (kv, (_, path)) in stamps.iter().zip(&present) {
            if stamp(kv, RUN_IDENTITY_KEY).is_some_and(|r| r != run) {
                anyhow::bail!(
                    "output.dir {} holds {} from a different run; fix: use another output.dir, or rerun with --overwrite",
                    dir.display(),
                    path.display()
                );
            }
        }
        let present_tables: Vec<Table> = present.iter().map(|(t, _)| *t).collect();
        if !one_whole_commit(&stamps, &present_tables, tables, &run, &source.sha256) {
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
        plan.complete.push(ShardRecord {
            status: ShardStatus::Done,
            outputs,
            source: Some(source),
            ..ShardRecord::pending(&src.name, &src.stem, &src.location.as_path())
        });
    }
    Ok(plan)
}

/// The shard's files actopo wrote, by table; refuses a file in their place that it did not write.
fn files_present(dir: &Path, src: &ShardSource) -> anyhow::Result<Vec<(Table, PathBuf)>> {
    let mut present = Vec::new();
    for table in Table::ALL {
        let path = table.path(dir, &src.stem);
        match folder::existing(&path) {
            Existing::Absent => {}
            Existing::Ours => present.push((table, path)),
            Existing::Foreign(why) => anyhow::bail!(
                "{} {why}; fix: move it away, or choose another output.dir",
                path.display()
            ),
        }
    }
    Ok(present)
}

/// The value of `key` in a file's footer metadata.
fn stamp(kv: &[(String, String)], key: &str) -> Option<String> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Whether the files (`stamps`, of the `present` tables) are one commit of this run for the
/// shard's current content, with every file it listed and every table this run writes.
fn one_whole_commit(
    stamps: &[Vec<(String, String)>],
    present: &[Table],
    tables: &[Table],
    run: &str,
    source: &str,
) -> bool {
    let listed = stamp(&stamps[0], SHARD_FILES_KEY).unwrap_or_default();
    let names: Vec<&str> = present.iter().map(|t| t.name()).collect();
    let one_commit = stamps.iter().all(|kv| {
        stamp(kv, RUN_IDENTITY_KEY).as_deref() == Some(run)
            && stamp(kv, SOURCE_KEY).as_deref() == Some(source)
            && stamp(kv, SHARD_FILES_KEY).as_deref() == Some(listed.as_str())
    });
    one_commit && listed == names.join(",") && tables.iter().all(|t| present.contains(t))
}

/// Before a run: shards that are not complete lose the files an interrupted attempt renamed into
/// place (a shard's files count only once the manifest says `done`).
pub(crate) fn clear_unfinished(
    dir: &Path,
    mine: &[ShardSource],
    plan: &Plan,
) -> anyhow::Result<()> {
    for src in mine.iter().filter(|s| !plan.is_complete(&s.name)) {
        for table in Table::ALL {
            folder::remove_ours(&table.path(dir, &src.stem))?;
        }
    }
    remove_stale_partials(dir, mine);
    Ok(())
}

/// Deletes the temporary manifest (`.<manifest>.XXXXXX.partial`) a killed run of this worker left.
pub(crate) fn remove_stale_manifest_temps(dir: &Path, manifest_file: &str) {
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
fn remove_stale_partials(dir: &Path, mine: &[ShardSource]) {
    for table in Table::ALL {
        let Ok(entries) = std::fs::read_dir(table.dir(dir)) else {
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
pub(crate) fn split(shards: &[ShardSource], index: usize, count: usize) -> Vec<ShardSource> {
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
    fn split_is_disjoint_and_complete() {
        let shards: Vec<ShardSource> = (0..10)
            .map(|i| ShardSource {
                location: crate::data::ShardLocation::Local(format!("/d/{i}.npz").into()),
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
    }
}
