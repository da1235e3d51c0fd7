//! Run configuration: built-in defaults < TOML file < `ACTOPO_` environment
//! variables (sections split on `__`) < `--set key=value` flags, merged with figment
//! (`sources`).
//!
//! Unknown keys and invalid values are all collected and reported together, each with its key and
//! the fix: `read` finds unknown keys and values of the wrong type, `check` the values a key may
//! not take. Relative paths (model files, shard globs, output dir) are resolved against the config
//! file's folder, wherever the value came from. docs/configuration.md lists every key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::perturb::{resolve_attacks, Attack, AttackTable};
use crate::topology::{GraphOptions, HomologyOptions, Scopes};

mod check;
mod read;
mod sources;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub spec: Option<PathBuf>,
    pub weights: Option<PathBuf>,
    pub device: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            spec: None,
            weights: None,
            device: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub shards: Vec<String>,
    pub format: String,
    pub image_column: String,
    pub label_column: Option<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub limit: u64,
    /// Valid range of raw input values (before mean/std); perturbed inputs are kept inside it.
    pub clip: [f32; 2],
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            shards: Vec::new(),
            format: "auto".into(),
            image_column: "image".into(),
            label_column: Some("label".into()),
            mean: vec![0.0],
            std: vec![1.0],
            limit: 0,
            clip: [0.0, 1.0],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Seeds every random draw (noise, PGD random starts), per sample.
    pub seed: u64,
    /// Memory the run may use, in MiB; 0: what the machine has available (docs/limits.md).
    /// Left out of the manifest when 0, so runs that do not set it record what they did before.
    #[serde(skip_serializing_if = "is_zero")]
    pub memory_limit_mb: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 128,
            workers: 0,
            seed: 0,
            memory_limit_mb: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    pub scopes: Vec<String>,
    pub include_input: bool,
    pub maxpool_edges: String,
    pub vertex_birth: String,
    /// "fold" (a batch norm after a conv or linear layer scales its edges) or "values". Left
    /// out of the manifest (and so of the run identity) when "fold", so runs that do not set it
    /// record what they did before.
    #[serde(skip_serializing_if = "is_fold")]
    pub batch_norm: String,
    /// `{ percentile = P }`, `{ weight = w }` or `{ reference_percentile = P }`: which edges of each graph op are kept. Left out
    /// of the manifest (and the run identity) when not set, as `batch_norm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdConfig>,
}

/// `graph.threshold`: exactly one of its keys (checked in `check`). Unknown keys in it are
/// reported with the other unknown keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ThresholdConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_percentile: Option<f64>,
}

fn is_fold(v: &str) -> bool {
    v == "fold"
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            scopes: vec!["network".into()],
            include_input: true,
            maxpool_edges: "all".into(),
            vertex_birth: "max_incident".into(),
            batch_norm: "fold".into(),
            threshold: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HomologyConfig {
    pub keep_zero_persistence: bool,
    pub h1_diagram: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub dir: PathBuf,
    pub diagrams: bool,
    pub summary: bool,
    /// Write the killing edges of the most persistent H0 pairs (`subgraphs/`).
    pub subgraphs: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("out/run"),
            diagrams: true,
            summary: true,
            subgraphs: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SubgraphConfig {
    /// Killing edges kept per (sample, variant, scope): those of the `top_k` most persistent pairs.
    pub top_k: usize,
}

impl Default for SubgraphConfig {
    fn default() -> Self {
        SubgraphConfig { top_k: 100 }
    }
}

/// The whole configuration, as merged from every source (read section by section, see `read`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Config {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub pipeline: PipelineConfig,
    pub graph: GraphConfig,
    pub homology: HomologyConfig,
    pub output: OutputConfig,
    pub subgraph: SubgraphConfig,
    /// Perturbed variants computed for every input besides the clean one.
    pub(crate) attacks: Vec<AttackTable>,
}

/// Where to run the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Device {
    Auto,
    Cpu,
    Cuda(usize),
}

impl Device {
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    fn parse(name: &str) -> Option<Device> {
        match name {
            "auto" => Some(Device::Auto),
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(0)),
            d => d.strip_prefix("cuda:")?.parse().ok().map(Device::Cuda),
        }
    }
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    Auto,
    Parquet,
    Idx,
    Npz,
}

impl DataFormat {
    fn parse(name: &str) -> Option<DataFormat> {
        match name {
            "auto" => Some(DataFormat::Auto),
            "parquet" => Some(DataFormat::Parquet),
            "idx" => Some(DataFormat::Idx),
            "npz" => Some(DataFormat::Npz),
            _ => None,
        }
    }
}

/// A config checked and turned into typed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The merged configuration with paths made absolute (goes into the manifest).
    pub config: Config,
    pub config_path: PathBuf,
    pub spec: PathBuf,
    pub weights: Option<PathBuf>,
    pub device: Device,
    pub format: DataFormat,
    pub scopes: Scopes,
    pub graph: GraphOptions,
    pub homology: HomologyOptions,
    pub workers: usize,
    /// Checked `[[attacks]]`, in config order (the variants after `clean`).
    pub attacks: Vec<Attack>,
}

/// All problems found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration {path} has {} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl Settings {
    /// Loads `path` and layers the environment and `--set` flags over it.
    pub fn load(path: &Path, sets: &[String]) -> Result<Settings, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            path: path.to_path_buf(),
            problems,
        };
        if !path.is_file() {
            return Err(fail(vec![
                "the file does not exist or is not a file; pass the path of a TOML config (see config/fashion-mnist.toml)".into()
            ]));
        }
        let mut problems = Vec::new();
        let figment = sources::layered(path, sets, &mut problems);
        match read::unknown_key_problems(&figment) {
            Ok(unknown) => problems.extend(unknown),
            Err(unreadable) => {
                problems.extend(unreadable);
                return Err(fail(problems));
            }
        }
        // Typed values, key by key: every bad one is reported and left at its default, so the
        // checks below still see the rest.
        let mut bad_keys = Vec::new();
        let (mut config, attacks) = read::read_config(&figment, &mut bad_keys, &mut problems);
        let mut checks = Vec::new();
        let checked = check::check(&mut config, &config_folder(path), &mut checks);
        let attacks_read = attacks.len();
        let attacks = resolve_attacks(&attacks).unwrap_or_else(|p| {
            checks.extend(p);
            Vec::new()
        });
        checks.extend(check::check_memory(&config, attacks_read));
        // A key with a type error is at its default: what the checks say of it would mislead.
        checks.retain(|p| !bad_keys.iter().any(|k| p.starts_with(&format!("`{k}`"))));
        problems.extend(checks);
        match checked {
            Some(checked) if problems.is_empty() => {
                Ok(Settings::new(config, path, checked, attacks))
            }
            _ => Err(fail(problems)),
        }
    }

    fn new(config: Config, path: &Path, c: check::Checked, attacks: Vec<Attack>) -> Settings {
        Settings {
            config,
            config_path: path.to_path_buf(),
            spec: c.spec,
            weights: c.weights,
            device: c.device,
            format: c.format,
            scopes: c.scopes,
            graph: c.graph,
            homology: c.homology,
            workers: c.workers,
            attacks,
        }
    }
}

/// The config file's folder, absolute where it can be ("config.toml" alone has an empty parent:
/// the current folder).
fn config_folder(path: &Path) -> PathBuf {
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&base).unwrap_or(base)
}
