//! What ran, from the run's manifest(s): config, model, data, device, times.
//!
//! The run does not record its duration. The report shows when the folder's run lock was first
//! created (`.actopo.lock`: the first run into the folder started then) and when the manifest was
//! last written (the last shard finished then); samples/s is derived from those two, so it is
//! only an estimate, and wrong for a folder that was resumed later.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use serde_json::Value;

use super::html::{escape, key_values};

/// The manifests of `dir` (one, or one per worker), parsed.
pub struct RunInfo {
    pub manifests: Vec<(PathBuf, Value)>,
    pub started: Option<SystemTime>,
    pub finished: Option<SystemTime>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl RunInfo {
    pub fn read(dir: &Path) -> anyhow::Result<RunInfo> {
        let mut manifests = Vec::new();
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "cannot read {}; pass the output.dir of a run",
                dir.display()
            )
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("manifest") && name.ends_with(".json") {
                let bytes = std::fs::read(e.path())?;
                let value: Value = serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is not a readable manifest", e.path().display())
                })?;
                manifests.push((e.path(), value));
            }
        }
        manifests.sort_by(|a, b| a.0.cmp(&b.0));
        if manifests.is_empty() {
            bail!(
                "{} is not an actopo output folder (it has no manifest.json)\n  fix: pass the output.dir of a finished `actopo run`",
                dir.display()
            );
        }
        let finished = manifests.iter().filter_map(|(p, _)| modified(p)).max();
        Ok(RunInfo {
            manifests,
            started: modified(&dir.join(".actopo.lock")),
            finished,
        })
    }

    fn first(&self) -> &Value {
        &self.manifests[0].1
    }

    /// Samples processed over every shard record of every manifest.
    pub fn samples(&self) -> u64 {
        self.shards().filter_map(|s| s["samples"].as_u64()).sum()
    }

    pub fn shards(&self) -> impl Iterator<Item = &Value> {
        self.manifests
            .iter()
            .flat_map(|(_, m)| m["shards"].as_array().into_iter().flatten())
    }

    /// Seconds between the lock's creation and the last manifest write.
    pub fn elapsed_s(&self) -> Option<f64> {
        let (s, f) = (self.started?, self.finished?);
        f.duration_since(s).ok().map(|d| d.as_secs_f64())
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn utc(t: Option<SystemTime>) -> String {
    t.map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()
    })
    .unwrap_or_else(|| "-".into())
}

/// The "what ran" section.
pub fn section(info: &RunInfo) -> String {
    let m = info.first();
    let samples = info.samples();
    let rate = match info.elapsed_s() {
        Some(s) if s > 0.0 => format!(
            "{:.1} (estimate: {samples} samples over {s:.0} s from the run lock's creation to the last manifest write)",
            samples as f64 / s
        ),
        _ => "not known (the folder has no run lock time)".into(),
    };
    let model = &m["model"];
    let rows = [
        ("config file", text(&m["config_file"])),
        ("actopo version", text(&m["version"])),
        (
            "model",
            format!(
                "{} (spec {}, weights {})",
                text(&model["name"]),
                text(&model["spec"]),
                text(&model["weights"])
            ),
        ),
        ("weights sha256", text(&model["weights_sha256"])),
        ("input shape", text(&model["input_shape"])),
        ("device", text(&m["device"])),
        ("workers (manifests)", info.manifests.len().to_string()),
        ("scopes", text(&m["config"]["graph"]["scopes"])),
        ("variants", text(&m["variants"])),
        ("samples", samples.to_string()),
        ("started (run lock created)", utc(info.started)),
        ("finished (last manifest write)", utc(info.finished)),
        ("samples/s", rate),
    ];
    let shards: Vec<Vec<String>> = info
        .shards()
        .map(|s| {
            ["name", "status", "samples", "failures", "error"]
                .iter()
                .map(|k| text(&s[*k]))
                .collect()
        })
        .collect();
    let config = serde_json::to_string_pretty(&m["config"]).unwrap_or_default();
    let attacks = serde_json::to_string_pretty(&m["attacks"]).unwrap_or_default();
    format!(
        "<h2 id=\"run\">What ran</h2>\n{}<h3>Shards</h3>\n{}<details><summary>Attacks (resolved parameters)</summary><pre>{}</pre></details>\n<details><summary>Full config</summary><pre>{}</pre></details>\n",
        key_values(&rows),
        super::html::table(&["shard", "status", "samples", "failures", "error"], &shards),
        escape(&attacks),
        escape(&config),
    )
}
