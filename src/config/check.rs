//! Checking the typed config: values each key may take, paths resolved against the config file's
//! folder, the worker cap and the memory check. Every problem is collected; `check` returns the
//! typed settings only when there is none.

use std::path::{Path, PathBuf};

use super::{Config, DataFormat, Device};
use crate::limits::{self, MemoryLimit, ModelSizes, RunShape};
use crate::spec::{ModelSpec, Network};
use crate::topology::{
    BatchNormFolding, EdgeThreshold, GraphBounds, GraphOptions, HomologyOptions, MaxPoolEdges,
    ScopeKind, Scopes, VertexBirth,
};

/// What the checks turn the config into (the rest of `Settings`).
pub(super) struct Checked {
    pub spec: PathBuf,
    pub weights: Option<PathBuf>,
    pub device: Device,
    pub format: DataFormat,
    pub scopes: Scopes,
    pub graph: GraphOptions,
    pub homology: HomologyOptions,
    pub workers: usize,
}

/// Checks `c`, making its paths absolute against `base` (the config file's folder); problems go
/// into `problems`, in the order of the config's sections.
pub(super) fn check(c: &mut Config, base: &Path, problems: &mut Vec<String>) -> Option<Checked> {
    let (spec, device) = check_model(c, base, problems);
    let format = check_data(c, base, problems);
    if c.pipeline.batch_size == 0 {
        problems.push("`pipeline.batch_size` must be at least 1".into());
    }
    let (scopes, maxpool_edges, vertex_birth) = check_graph(c, problems);
    let batch_norm = (c.graph.batch_norm.parse::<BatchNormFolding>())
        .map_err(|e| problems.push(format!("`graph.batch_norm`: {e}")))
        .ok();
    let threshold = check_threshold(c, problems);
    check_output(c, base, problems);
    let workers = check_workers(c.pipeline.workers, problems);
    Some(Checked {
        spec: spec?,
        weights: c.model.weights.clone(),
        device: device?,
        format: format?,
        scopes,
        graph: GraphOptions {
            include_input: c.graph.include_input,
            maxpool_edges: maxpool_edges?,
            vertex_birth: vertex_birth?,
            batch_norm: batch_norm?,
            threshold: threshold?,
        },
        homology: HomologyOptions {
            keep_zero_persistence: c.homology.keep_zero_persistence,
            h1_diagram: c.homology.h1_diagram,
        },
        workers,
    })
}

/// `graph.threshold`: absent, or exactly one of `{ percentile = P }` or
/// `{ reference_percentile = P }` with 0 <= P <= 100 and `{ weight = w }` with w >= 0 (finite).
fn check_threshold(c: &Config, problems: &mut Vec<String>) -> Option<EdgeThreshold> {
    let Some(t) = &c.graph.threshold else {
        return Some(EdgeThreshold::None);
    };
    let set: Vec<&str> = [
        ("percentile", t.percentile),
        ("weight", t.weight),
        ("reference_percentile", t.reference_percentile),
    ]
    .iter()
    .filter_map(|(key, v)| v.map(|_| *key))
    .collect();
    if set.len() != 1 {
        problems.push(if set.is_empty() {
            "`graph.threshold` sets none of percentile, weight and reference_percentile; fix: write graph.threshold = { percentile = P }, { weight = w } or { reference_percentile = P }, or leave it out to keep every edge".into()
        } else {
            let both = if set.len() == 2 { "both " } else { "" };
            format!("`graph.threshold` sets {both}{}; fix: keep one of them", set.join(" and "))
        });
        return None;
    }
    let percentile = |key: &str, p: f64| {
        (0.0..=100.0).contains(&p).then_some(p).ok_or_else(|| format!(
            "`graph.threshold.{key}` = {p}: a percentile is between 0 and 100; fix: e.g. graph.threshold = {{ {key} = 90 }}"
        ))
    };
    let checked = match (t.percentile, t.weight, t.reference_percentile) {
        (Some(p), ..) => percentile("percentile", p).map(EdgeThreshold::Percentile),
        (_, Some(w), _) if w.is_finite() && w >= 0.0 => Ok(EdgeThreshold::Weight(w)),
        (_, Some(w), _) => Err(format!(
            "`graph.threshold.weight` = {w}: an edge weight cut is a finite number >= 0; fix: e.g. graph.threshold = {{ weight = 0.1 }}"
        )),
        (.., Some(p)) => percentile("reference_percentile", p).map(EdgeThreshold::ReferencePercentile),
        (None, None, None) => Ok(EdgeThreshold::None),
    };
    checked.map_err(|problem| problems.push(problem)).ok()
}

/// `[model]`: the spec (required) and weights files exist; the device is one we know.
fn check_model(
    c: &mut Config,
    base: &Path,
    problems: &mut Vec<String>,
) -> (Option<PathBuf>, Option<Device>) {
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
    let device = Device::parse(&c.model.device);
    if device.is_none() {
        problems.push(format!(
            "`model.device` = \"{}\": use auto, cpu, cuda or cuda:N",
            c.model.device
        ));
    }
    (spec, device)
}

/// `[data]`: shards listed (made absolute), a known format, normalisation and clip range.
fn check_data(c: &mut Config, base: &Path, problems: &mut Vec<String>) -> Option<DataFormat> {
    let d = &mut c.data;
    if d.shards.is_empty() {
        problems.push(
            "`data.shards` is empty: list the input files or globs, e.g. [\"data/*.parquet\"]"
                .into(),
        );
    }
    // URLs (s3://, hf://, ...) stay as written; local paths become absolute.
    for shard in d
        .shards
        .iter_mut()
        .filter(|s| !crate::data::looks_remote(s))
    {
        *shard = resolve(base, Path::new(shard))
            .to_string_lossy()
            .into_owned();
    }
    let format = DataFormat::parse(&d.format);
    if format.is_none() {
        problems.push(format!(
            "`data.format` = \"{}\": use auto, parquet, idx or npz",
            d.format
        ));
    }
    if d.mean.is_empty() || d.mean.len() != d.std.len() {
        problems.push(format!(
            "`data.mean` ({} values) and `data.std` ({} values) need one value per channel each",
            d.mean.len(),
            d.std.len()
        ));
    }
    // Also refuses NaN bounds.
    if d.clip[0].partial_cmp(&d.clip[1]) != Some(std::cmp::Ordering::Less) {
        problems.push(format!(
            "`data.clip` = {:?}: the lower bound must be below the upper one",
            d.clip
        ));
    }
    if d.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        problems.push("`data.std` values must be positive".into());
    }
    format
}

/// `[graph]`: known scopes, at least one; the max-pool edge rule; the vertex birth rule.
fn check_graph(
    c: &Config,
    problems: &mut Vec<String>,
) -> (Scopes, Option<MaxPoolEdges>, Option<VertexBirth>) {
    let mut kinds = Vec::new();
    for s in &c.graph.scopes {
        match s.parse::<ScopeKind>() {
            Ok(kind) => kinds.push(kind),
            Err(why) => problems.push(format!("`graph.scopes` has {why}")),
        }
    }
    let scopes = Scopes::of(&kinds);
    if c.graph.scopes.is_empty() {
        problems.push("`graph.scopes` is empty: use [\"network\"], [\"layers\"] or both".into());
    }
    let maxpool_edges = c
        .graph
        .maxpool_edges
        .parse::<MaxPoolEdges>()
        .map_err(|e| problems.push(format!("`graph.maxpool_edges`: {e}")))
        .ok();
    let vertex_birth = match c.graph.vertex_birth.as_str() {
        "max_incident" => Some(VertexBirth::MaxIncident),
        other => {
            problems.push(format!(
                "`graph.vertex_birth` = \"{other}\": only \"max_incident\" is implemented"
            ));
            None
        }
    };
    (scopes, maxpool_edges, vertex_birth)
}

/// `[subgraph]` and `[output]`: something to write; the output folder made absolute.
fn check_output(c: &mut Config, base: &Path, problems: &mut Vec<String>) {
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
}

/// `pipeline.workers`: at most the cap; 0 means one per core.
fn check_workers(workers: usize, problems: &mut Vec<String>) -> usize {
    let cores = cores();
    let max_workers = limits::max_workers(cores);
    if workers > max_workers {
        problems.push(format!(
            "`pipeline.workers` = {workers}: at most {max_workers} on this machine ({} per available core, {cores} core(s); workers are CPU-bound, more only take memory); fix: set pipeline.workers = 0 (one per core) or at most {max_workers}",
            limits::WORKERS_PER_CORE
        ));
    }
    effective_workers(workers)
}

/// The workers a run gets for `pipeline.workers`: one per core for 0, never more than the cap
/// (too many is reported on its own by `check_workers`).
fn effective_workers(workers: usize) -> usize {
    match workers {
        0 => cores(),
        w => w.min(limits::max_workers(cores())),
    }
}

/// Cores this process may use (affinity and cgroup quota included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The memory check (docs/limits.md), run when the spec can be read; a spec that cannot is
/// reported when the model is loaded, with its weights. Runs on the checked config (paths made
/// absolute), whatever else is wrong with it.
pub(super) fn check_memory(c: &Config, attacks: usize) -> Vec<String> {
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
    let run = RunShape {
        batch_size: c.pipeline.batch_size,
        workers: effective_workers(c.pipeline.workers),
        variants: 1 + attacks,
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
