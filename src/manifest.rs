//! `manifest.json`: what a run was asked to do and how far it got, so it can be audited and resumed.
//! Rewritten atomically (temporary file, then rename) whenever a shard changes status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::perturb::Attack;
use crate::resume::OutputFile;

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub spec: PathBuf,
    pub spec_sha256: String,
    pub weights: PathBuf,
    pub weights_sha256: String,
    pub input_shape: Vec<usize>,
    /// Vertex layers in unit-id order: name, first unit id, number of units.
    pub vertex_layers: Vec<(String, u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    Pending,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardEntry {
    pub name: String,
    pub path: PathBuf,
    pub status: ShardStatus,
    pub samples: Option<usize>,
    /// Final files with their sizes (a rerun skips the shard only if they are all still there).
    pub outputs: Vec<OutputFile>,
    /// Rows in this shard's failures table.
    pub failures: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub tool: &'static str,
    pub version: &'static str,
    /// What decides the output rows (see `resume::identity`): a rerun with another identity into
    /// the same folder is refused.
    pub identity: serde_json::Value,
    /// This worker's index and the number of workers sharing the folder.
    pub worker: [usize; 2],
    pub config_file: PathBuf,
    pub config: Config,
    pub device: String,
    pub model: ModelInfo,
    pub conventions: BTreeMap<String, String>,
    /// The `variant` values, in row order: `clean`, then the attacks.
    pub variants: Vec<String>,
    /// The attacks with every parameter resolved (defaults filled in).
    pub attacks: Vec<Attack>,
    pub shards: Vec<ShardEntry>,
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

impl Manifest {
    /// Writes `dir/<file>` atomically.
    pub fn write(&self, dir: &Path, file: &str) -> anyhow::Result<()> {
        let path = dir.join(file);
        let tmp = dir.join(format!(".{file}.partial"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).map_err(|e| {
            anyhow::anyhow!(
                "cannot write {}: {e}; check output.dir and its permissions",
                tmp.display()
            )
        })?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}
