//! `manifest.json`: what a run was asked to do and how far it got, so it can be audited and resumed.
//! Rewritten atomically and durably (temporary file, sync, rename, sync the folder) whenever a
//! shard changes status; a shard counts as done only once its entry here says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::output::folder;
use crate::perturb::Attack;
use crate::output::resume::{OutputFile, SourceFingerprint};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    Pending,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardEntry {
    pub name: String,
    /// Output file stem (`summary/<stem>.parquet`).
    #[serde(default)]
    pub stem: String,
    pub path: PathBuf,
    pub status: ShardStatus,
    pub samples: Option<usize>,
    /// Final files with their sizes (a rerun skips the shard only if they are all still there).
    pub outputs: Vec<OutputFile>,
    /// Rows in this shard's failures table.
    pub failures: u64,
    pub error: Option<String>,
    /// The input files as they were when the shard was processed: a rerun redoes the shard when
    /// they have changed.
    #[serde(default)]
    pub source: Option<SourceFingerprint>,
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

/// SHA-256 of a file, read in blocks (shards may be large).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Writes `dir/<file>` atomically and durably.
    pub fn write(&self, dir: &Path, file: &str) -> anyhow::Result<()> {
        folder::write_atomically(dir, file, &serde_json::to_vec_pretty(self)?)
    }
}
