//! Run configuration: built-in defaults < TOML file < `ACTOPO_` environment
//! variables (sections split on `__`) < `--set key=value` flags, merged with figment.
//!
//! Unknown keys and invalid values are all collected and reported together, each with its key and
//! the fix. Relative paths (model files, shard globs, output dir) are resolved against the config
//! file's folder, wherever the value came from.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use figment::value::{Dict, Value};
use figment::Source;
use serde::de::DeserializeOwned;

use crate::limits::{self, MemoryLimit, ModelSizes, RunShape};
use crate::perturb::{resolve_attacks, Attack, AttackEntry};
use crate::spec::{ModelSpec, Network};
use crate::topology::{
    GraphBounds, GraphOptions, HomologyOptions, MaxPoolEdges, Scopes, VertexBirth,
};

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
    if key.split('.').any(|part| part.trim().is_empty()) {
        return Err(format!(
            "--set {flag}: the key {}; write --set section.key=value, e.g. --set pipeline.batch_size=64",
            if key.is_empty() {
                "is empty".to_string()
            } else {
                format!("`{key}` has an empty part")
            }
        ));
    }
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

/// A single value given for a key whose default is a list of values (`--set graph.scopes=layers`,
/// `ACTOPO_DATA__MEAN=0.5`, or the file) is taken as a one-element list. The value keeps its tag,
/// so a problem with it still names where it came from.
fn lists_from_single_values(f: Figment) -> Figment {
    let mut wrapped = Dict::new();
    for (section, keys) in known_keys().as_object().into_iter().flatten() {
        let mut lists = Dict::new();
        for (key, default) in keys.as_object().into_iter().flatten() {
            let Some(items) = default.as_array() else {
                continue;
            };
            if items.iter().any(|i| i.is_object() || i.is_array()) {
                continue; // tables (`[[attacks]]`) are not wrapped
            }
            if let Ok(
                v @ (Value::String(..) | Value::Char(..) | Value::Bool(..) | Value::Num(..)),
            ) = f.find_value(&format!("{section}.{key}"))
            {
                lists.insert(key.clone(), Value::Array(v.tag(), vec![v]));
            }
        }
        if !lists.is_empty() {
            wrapped.insert(section.clone(), Value::from(lists));
        }
    }
    if wrapped.is_empty() {
        return f;
    }
    f.merge(SingleValues(wrapped))
}

/// The provider of `lists_from_single_values`: merged last (global profile), so it wins.
struct SingleValues(Dict);

impl figment::Provider for SingleValues {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("a single value for a list key")
    }

    fn data(&self) -> figment::Result<figment::value::Map<figment::Profile, Dict>> {
        Ok(figment::Profile::Global.collect(self.0.clone()))
    }
}

/// Cores this process may use (affinity and cgroup quota included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Every key the config takes, with its default (`[[attacks]]` tables list an attack's keys).
fn known_keys() -> serde_json::Value {
    let mut known = serde_json::to_value(Config::default()).expect("defaults serialize");
    known["attacks"] = serde_json::json!([AttackEntry::default()]);
    // Left out of the defaults' serialization when 0 (see `PipelineConfig`).
    known["pipeline"]["memory_limit_mb"] = 0.into();
    known
}

/// The typed config. When it does not deserialize whole, each section and then each key is tried
/// on its own: a key whose value does not fit is reported (with where it came from) and left at
/// its default, and its dotted path goes into `bad`. `problems` must already hold the unknown
/// keys: when neither they nor a key explain the failure, the whole error is reported.
fn extract_config(f: &Figment, bad: &mut Vec<String>, problems: &mut Vec<String>) -> Config {
    let whole = match f.extract::<Config>() {
        Ok(config) => return config,
        Err(e) => e,
    };
    let explained = !problems.is_empty();
    let known = known_keys();
    let mut p = TypeProblems {
        figment: f,
        bad,
        problems,
    };
    let config = Config {
        model: p.section("model", &known),
        data: p.section("data", &known),
        pipeline: p.section("pipeline", &known),
        graph: p.section("graph", &known),
        homology: p.section("homology", &known),
        output: p.section("output", &known),
        subgraph: p.section("subgraph", &known),
        attacks: p.attacks(&known),
    };
    if !explained && p.bad.is_empty() {
        problems.extend(whole.into_iter().map(|e| e.to_string()));
    }
    config
}

/// Collects the keys whose values do not deserialize.
struct TypeProblems<'a> {
    figment: &'a Figment,
    bad: &'a mut Vec<String>,
    problems: &'a mut Vec<String>,
}

impl TypeProblems<'_> {
    fn section<T: Default + Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        known: &serde_json::Value,
    ) -> T {
        if let Ok(t) = self.figment.extract_inner::<T>(name) {
            return t;
        }
        match self.figment.find_value(name) {
            Ok(Value::Dict(_, dict)) => self
                .table(name, &dict, &T::default(), &known[name])
                .unwrap_or_default(),
            Ok(other) => {
                self.not_a_table(name, &other, &format!("a [{name}] section"));
                T::default()
            }
            Err(_) => T::default(),
        }
    }

    fn attacks(&mut self, known: &serde_json::Value) -> Vec<AttackEntry> {
        if let Ok(attacks) = self.figment.extract_inner::<Vec<AttackEntry>>("attacks") {
            return attacks;
        }
        let items = match self.figment.find_value("attacks") {
            Ok(Value::Array(_, items)) => items,
            Ok(other) => {
                self.not_a_table("attacks", &other, "[[attacks]] tables");
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("attacks[{i}]");
            match item {
                Value::Dict(_, dict) => {
                    let entry =
                        self.table(&path, dict, &AttackEntry::default(), &known["attacks"][0]);
                    out.extend(entry);
                }
                other => self.not_a_table(&path, other, "an [[attacks]] table"),
            }
        }
        out
    }

    /// `dict` as a `T` from `defaults`, keeping only the keys that deserialize one at a time.
    /// Unknown keys are skipped: they are reported as such.
    fn table<T: Serialize + DeserializeOwned>(
        &mut self,
        prefix: &str,
        dict: &Dict,
        defaults: &T,
        known: &serde_json::Value,
    ) -> Option<T> {
        let start = || Figment::from(Serialized::defaults(defaults));
        let mut good = start();
        for (key, value) in dict {
            let Some(default) = known.get(key) else {
                continue;
            };
            let path = format!("{prefix}.{key}");
            match start()
                .merge(Serialized::default(key, value))
                .extract::<T>()
            {
                Ok(_) => good = good.merge(Serialized::default(key, value)),
                Err(e) => {
                    let problem = type_problem(self.figment, &path, value, &e.kind, default);
                    self.problems.push(problem);
                    self.bad.push(path);
                }
            }
        }
        good.extract().ok()
    }

    fn not_a_table(&mut self, path: &str, value: &Value, expected: &str) {
        self.problems.push(format!(
            "`{path}` = {}{}: expected {expected}; fix: write it as {expected}",
            shown(value),
            origin(self.figment, path, value)
        ));
        self.bad.push(path.to_string());
    }
}

/// A value as written in TOML (near enough: JSON's syntax for strings, numbers and arrays).
fn shown(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
}

/// Where a value came from: " (in FILE)", " (from environment variable NAME)" or " (from --set)".
fn origin(f: &Figment, path: &str, value: &Value) -> String {
    let Some(meta) = f.get_metadata(value.tag()) else {
        return String::new();
    };
    match &meta.source {
        Some(Source::File(file)) => format!(" (in {})", file.display()),
        _ if meta.name.contains("environment") => format!(
            " (from environment variable ACTOPO_{})",
            path.replace('.', "__").to_ascii_uppercase()
        ),
        _ => " (from --set)".into(),
    }
}

/// A key whose value has the wrong type, with the type wanted and an example of a good value.
fn type_problem(
    f: &Figment,
    path: &str,
    value: &Value,
    kind: &figment::error::Kind,
    default: &serde_json::Value,
) -> String {
    // serde names Rust types; say what to write instead.
    let mut why = kind.to_string();
    for (rust, toml) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected f32", "expected a number"),
    ] {
        why = why.replace(rust, toml);
    }
    let example = match default {
        serde_json::Value::Null => "see README.md for the values it takes".to_string(),
        d => format!("write a value of this type, e.g. {path} = {d} (the default)"),
    };
    format!(
        "`{path}` = {}{}: {why}; fix: {example}",
        shown(value),
        origin(f, path, value)
    )
}

/// The memory check (docs/limits.md), run when the spec can be read; a spec that cannot is
/// reported when the model is loaded, with its weights. Runs on the checked config (paths made
/// absolute), whatever else is wrong with it.
fn check_memory(c: &Config) -> Vec<String> {
    let Some(spec) = &c.model.spec else {
        return Vec::new();
    };
    let Ok(net) = ModelSpec::load(spec).and_then(|s| Network::resolve(&s)) else {
        return Vec::new();
    };
    let graph = GraphOptions {
        include_input: c.graph.include_input,
        ..GraphOptions::default()
    };
    let Ok(bounds) = GraphBounds::new(&net, graph) else {
        return Vec::new();
    };
    let limit = match c.pipeline.memory_limit_mb {
        0 => MemoryLimit::of_machine(),
        mb => Some(MemoryLimit::from_mb(mb)),
    };
    let Some(limit) = limit else {
        return Vec::new();
    };
    // Too many workers is reported on its own; the rest is sized as if at the cap.
    let workers = match c.pipeline.workers {
        0 => cores(),
        w => w.min(limits::max_workers(cores())),
    };
    let run = RunShape {
        batch_size: c.pipeline.batch_size,
        workers,
        variants: 1 + c.attacks.len(),
        h1_diagram: c.homology.h1_diagram,
    };
    limits::check_memory(&ModelSizes::of(&net, &bounds), spec, run, &limit)
}

/// The problem with a path key whose file is missing: the key, the value, the path it resolves
/// to and, for a relative value, that it is resolved against the config file's folder.
fn missing_file(key: &str, written: &Path, base: &Path) -> Option<String> {
    let resolved = resolve(base, written);
    let why = match std::fs::metadata(&resolved) {
        Ok(m) if m.is_file() => return None,
        Ok(_) => "is not a file",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
        Err(_) => "cannot be read",
    };
    let (relative, fix) = if written.is_relative() {
        (
            format!(
                " (relative paths are resolved against the config file's folder {}, wherever the value came from)",
                base.display()
            ),
            "write the path relative to the config file's folder, or an absolute path",
        )
    } else {
        (String::new(), "correct the path")
    };
    Some(format!(
        "`{key}` = \"{}\": {} {why}{relative}; fix: {fix}",
        written.display(),
        resolved.display()
    ))
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
        let figment = lists_from_single_values(figment);
        // Unknown keys, all of them.
        match figment.extract::<serde_json::Value>() {
            Ok(value) => {
                let mut unknown = Vec::new();
                unknown_keys(&value, &known_keys(), "", &mut unknown);
                for key in unknown {
                    problems.push(format!(
                        "unknown key `{key}`; check its spelling and section (README.md lists every key)"
                    ));
                }
            }
            // A file that is not TOML, or a provider that fails: nothing else can be read.
            Err(e) => {
                problems.extend(e.into_iter().map(|e| e.to_string()));
                return Err(fail(problems));
            }
        }
        // Typed values, key by key: every bad one is reported and left at its default, so the
        // checks below still see the rest.
        let mut bad_keys = Vec::new();
        let mut config = extract_config(&figment, &mut bad_keys, &mut problems);
        // The config's folder ("config.toml" alone has an empty parent: the current folder).
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        let mut checks = Vec::new();
        let settings = Settings::check(&mut config, &base, &mut checks);
        let attacks = resolve_attacks(&config.attacks).unwrap_or_else(|p| {
            checks.extend(p);
            Vec::new()
        });
        checks.extend(check_memory(&config));
        // A key with a type error is at its default: what the checks say of it would mislead.
        checks.retain(|p| !bad_keys.iter().any(|k| p.starts_with(&format!("`{k}`"))));
        problems.extend(checks);
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
        for (key, written) in [
            ("model.spec", &c.model.spec),
            ("model.weights", &c.model.weights),
        ] {
            if let Some(written) = written {
                problems.extend(missing_file(key, written, base));
            }
        }
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
        // Also refuses NaN bounds.
        if c.data.clip[0].partial_cmp(&c.data.clip[1]) != Some(std::cmp::Ordering::Less) {
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
        let cores = cores();
        let max_workers = limits::max_workers(cores);
        if c.pipeline.workers > max_workers {
            problems.push(format!(
                "`pipeline.workers` = {}: at most {max_workers} on this machine ({} per available core, {cores} core(s); workers are CPU-bound, more only take memory); fix: set pipeline.workers = 0 (one per core) or at most {max_workers}",
                c.pipeline.workers,
                limits::WORKERS_PER_CORE
            ));
        }
        let workers = if c.pipeline.workers == 0 {
            cores
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_flags_need_a_key_with_no_empty_part() {
        assert_eq!(
            parse_set("pipeline.batch_size=64").unwrap(),
            ("pipeline.batch_size".into(), toml::Value::Integer(64))
        );
        for (flag, why) in [
            ("=1", "the key is empty"),
            (" =1", "the key is empty"),
            (".x=1", "the key `.x` has an empty part"),
            ("a..b=1", "the key `a..b` has an empty part"),
        ] {
            let err = parse_set(flag).unwrap_err();
            assert!(err.starts_with(&format!("--set {flag}: {why};")), "{err}");
        }
    }
}
