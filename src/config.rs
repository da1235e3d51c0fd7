//! Run configuration (design.md section 5): built-in defaults < TOML file < `ACTOPO_` environment
//! variables (sections split on `__`) < `--set key=value` flags, merged with figment.
//!
//! Unknown keys and invalid values are all collected and reported together, each with its key and
//! the fix. Relative paths (model files, shard globs, output dir) are resolved against the config
//! file's folder, wherever the value came from.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::perturb::{resolve_attacks, Attack, AttackEntry};
use crate::topology::{GraphOptions, HomologyOptions, MaxPoolEdges, Scopes, VertexBirth};

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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 128,
            workers: 0,
            seed: 0,
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
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            scopes: vec!["network".into()],
            include_input: true,
            maxpool_edges: "all".into(),
            vertex_birth: "max_incident".into(),
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

/// The whole configuration, as merged from every source.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub pipeline: PipelineConfig,
    pub graph: GraphConfig,
    pub homology: HomologyConfig,
    pub output: OutputConfig,
    pub subgraph: SubgraphConfig,
    /// Perturbed variants computed for every input besides the clean one.
    pub attacks: Vec<AttackEntry>,
}

/// Where to run the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Device {
    Auto,
    Cpu,
    Cuda(usize),
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

/// Parses a `--set key=value` flag. The value is read as a TOML value when it is one
/// (`64`, `true`, `["a", "b"]`), else as a string.
fn parse_set(flag: &str) -> Result<(String, toml::Value), String> {
    let (key, value) = flag.split_once('=').ok_or_else(|| {
        format!("--set {flag}: expected key=value, e.g. --set pipeline.batch_size=64")
    })?;
    let key = key.trim().to_string();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key, parsed))
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

/// `p` against `base` when relative, with `.` and `..` folded away (lexically).
fn resolve(base: &Path, p: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Settings {
    /// Loads `path` and layers the environment and `--set` flags over it.
    pub fn load(path: &Path, sets: &[String]) -> Result<Settings, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            path: path.to_path_buf(),
            problems,
        };
        if !path.is_file() {
            return Err(fail(vec![format!(
                "the file does not exist or is not a file; pass the path of a TOML config (see config/fashion-mnist.toml)"
            )]));
        }
        let mut problems = Vec::new();
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file_exact(path))
            .merge(
                Env::prefixed("ACTOPO_")
                    .split("__")
                    .filter(|k| !k.as_str().is_empty())
                    .map(|k| k.as_str().to_lowercase().into()),
            );
        for flag in sets {
            match parse_set(flag) {
                Ok((key, value)) => figment = figment.merge(Serialized::global(&key, value)),
                Err(e) => problems.push(e),
            }
        }
        // Unknown keys, all of them, before typed extraction (which stops at the first).
        match figment.extract::<serde_json::Value>() {
            Ok(value) => {
                let mut known =
                    serde_json::to_value(Config::default()).expect("defaults serialize");
                // Every [[attacks]] table is checked against the keys an attack can take.
                known["attacks"] = serde_json::json!([AttackEntry::default()]);
                let mut unknown = Vec::new();
                unknown_keys(&value, &known, "", &mut unknown);
                for key in unknown {
                    problems.push(format!(
                        "unknown key `{key}`; check its spelling and section (README.md lists every key)"
                    ));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let mut config: Config = figment.extract().map_err(|e| {
            fail(
                e.into_iter()
                    .map(|e| {
                        let key = e.path.join(".");
                        format!("`{key}`: {}", e.kind)
                    })
                    .collect(),
            )
        })?;
        // The config's folder ("config.toml" alone has an empty parent: the current folder).
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        let settings = Settings::check(&mut config, &base, &mut problems);
        let attacks = resolve_attacks(&config.attacks).unwrap_or_else(|p| {
            problems.extend(p);
            Vec::new()
        });
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let (spec, weights, device, format, scopes, graph, homology, workers) =
            settings.expect("no problems means settings");
        Ok(Settings {
            config,
            config_path: path.to_path_buf(),
            spec,
            weights,
            device,
            format,
            scopes,
            graph,
            homology,
            workers,
            attacks,
        })
    }

    #[allow(clippy::type_complexity)]
    fn check(
        c: &mut Config,
        base: &Path,
        problems: &mut Vec<String>,
    ) -> Option<(
        PathBuf,
        Option<PathBuf>,
        Device,
        DataFormat,
        Scopes,
        GraphOptions,
        HomologyOptions,
        usize,
    )> {
        let spec = match &c.model.spec {
            Some(p) => Some(resolve(base, p)),
            None => {
                problems.push("`model.spec` is required: the path of the model spec TOML".into());
                None
            }
        };
        c.model.spec = spec.clone();
        c.model.weights = c.model.weights.as_ref().map(|p| resolve(base, p));
        let device = match c.model.device.as_str() {
            "auto" => Some(Device::Auto),
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(0)),
            d => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Some(Device::Cuda(n)),
                None => {
                    problems.push(format!(
                        "`model.device` = \"{d}\": use auto, cpu, cuda or cuda:N"
                    ));
                    None
                }
            },
        };
        if c.data.shards.is_empty() {
            problems.push(
                "`data.shards` is empty: list the input files or globs, e.g. [\"data/*.parquet\"]"
                    .into(),
            );
        }
        c.data.shards = c
            .data
            .shards
            .iter()
            .map(|s| resolve(base, Path::new(s)).to_string_lossy().into_owned())
            .collect();
        let format = match c.data.format.as_str() {
            "auto" => Some(DataFormat::Auto),
            "parquet" => Some(DataFormat::Parquet),
            "idx" => Some(DataFormat::Idx),
            "npz" => Some(DataFormat::Npz),
            f => {
                problems.push(format!(
                    "`data.format` = \"{f}\": use auto, parquet, idx or npz"
                ));
                None
            }
        };
        if c.data.mean.is_empty() || c.data.mean.len() != c.data.std.len() {
            problems.push(format!(
                "`data.mean` ({} values) and `data.std` ({} values) need one value per channel each",
                c.data.mean.len(),
                c.data.std.len()
            ));
        }
        if !(c.data.clip[0] < c.data.clip[1]) {
            problems.push(format!(
                "`data.clip` = {:?}: the lower bound must be below the upper one",
                c.data.clip
            ));
        }
        if c.data.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            problems.push("`data.std` values must be positive".into());
        }
        if c.pipeline.batch_size == 0 {
            problems.push("`pipeline.batch_size` must be at least 1".into());
        }
        let mut scopes = Scopes {
            network: false,
            layers: false,
        };
        for s in &c.graph.scopes {
            match s.as_str() {
                "network" => scopes.network = true,
                "layers" => scopes.layers = true,
                other => problems.push(format!(
                    "`graph.scopes` has \"{other}\": use \"network\" and/or \"layers\""
                )),
            }
        }
        if c.graph.scopes.is_empty() {
            problems
                .push("`graph.scopes` is empty: use [\"network\"], [\"layers\"] or both".into());
        }
        let maxpool_edges = match c.graph.maxpool_edges.parse::<MaxPoolEdges>() {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push(format!("`graph.maxpool_edges`: {e}"));
                None
            }
        };
        if c.graph.vertex_birth != "max_incident" {
            problems.push(format!(
                "`graph.vertex_birth` = \"{}\": only \"max_incident\" is implemented",
                c.graph.vertex_birth
            ));
        }
        if c.subgraph.top_k == 0 {
            problems.push("`subgraph.top_k` must be at least 1".into());
        }
        if !c.output.summary && !c.output.diagrams && !c.output.subgraphs {
            problems.push(
                "`output.summary`, `output.diagrams` and `output.subgraphs` are all false: nothing would be written"
                    .into(),
            );
        }
        c.output.dir = resolve(base, &c.output.dir);
        let workers = if c.pipeline.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            c.pipeline.workers
        };
        Some((
            spec?,
            c.model.weights.clone(),
            device?,
            format?,
            scopes,
            GraphOptions {
                include_input: c.graph.include_input,
                maxpool_edges: maxpool_edges?,
                vertex_birth: VertexBirth::MaxIncident,
            },
            HomologyOptions {
                keep_zero_persistence: c.homology.keep_zero_persistence,
                h1_diagram: c.homology.h1_diagram,
            },
            workers,
        ))
    }
}
