//! Sizes and memory, checked before anything large is allocated (docs/limits.md).
//!
//! `ModelSizes` counts what a model needs from its spec's shapes alone (no weights are read);
//! `memory_parts` turns those counts and the pipeline settings into bytes, part by part; and
//! `check_memory` compares the total with the memory this process may use, naming the key to
//! lower and by how much. All arithmetic is saturating u128: a size past any machine's memory
//! stays past it instead of wrapping to something small.

use std::fmt;
use std::path::Path;

use crate::forward::{liveness, FORWARD_CHUNK};
use crate::spec::{LayerInput, Network};
use crate::topology::{Edge, GraphBounds};

/// Topology workers allowed per available core (`pipeline.workers`): workers are CPU-bound, so
/// more only add memory; a few per core leave room for machines whose core count is misreported.
pub(crate) const WORKERS_PER_CORE: usize = 4;
/// ... and never fewer than this many, so that small machines can still test parallel runs.
pub(crate) const MIN_WORKER_CAP: usize = 8;

/// The most topology workers this machine accepts.
pub(crate) fn max_workers(cores: usize) -> usize {
    cores.saturating_mul(WORKERS_PER_CORE).max(MIN_WORKER_CAP)
}

const F32_BYTES: u128 = 4;
const EDGE_BYTES: u128 = std::mem::size_of::<Edge>() as u128;
/// Per unit id a worker keeps its component, next, size, oldest birth and born lists (u32/f32).
const UNIT_BYTES: u128 = 20;
/// A worker's edge buffers fill about this fraction of the network's edge bound: the first pass
/// keeps the heaviest ~13% of the edges and the sort needs as many again (measured on
/// AlexNet-CIFAR: 0.46 GB per worker against a bound of 158 M edges of 12 bytes).
const EDGE_SHARE: (u128, u128) = (1, 4);
/// Copies of the weights held at once: the tensors as read, the graph plan's, libtorch's.
const WEIGHT_COPIES: u128 = 3;
/// A forward pass with gradients (attacks) keeps every layer's output for `FORWARD_CHUNK` rows,
/// and the backward pass makes their gradients too.
const FORWARD_COPIES: u128 = 3;
/// A forward pass without gradients holds its live tensors (`ModelSizes::forward_values`);
/// libtorch's allocator keeps freed blocks for reuse, so count them twice.
const NO_GRAD_COPIES: u128 = 2;
/// Raw input batches held by the reader at once (its queue of 2 and the one being read).
const INPUT_BATCHES: u128 = 3;
/// An over-estimate of one queue slot (a job or a result handle).
const SLOT_BYTES: u128 = 256;
/// libtorch and the rest of the process: the demo's peak RSS is about 200 MB on the CPU, and
/// about 0.8 GB with a CUDA device (its libraries and context; docs/performance.md, "Ninth round").
const RUNTIME_BYTES: u128 = 512 << 20;

/// What a model needs, counted from its shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSizes {
    /// Weights and biases of every layer.
    pub weight_values: u128,
    /// The layer with the most weights (name, values).
    pub largest_layer: Option<(String, u128)>,
    /// Values of one input.
    pub input_values: u128,
    /// Values captured per sample: the operands of every graph op (an `add`'s, all of them).
    pub capture_values: u128,
    /// Values of one row a forward pass without gradients holds at its peak: the tensors still
    /// to be read (each is dropped after its last reader), the output being made and an `add`'s
    /// capture copy.
    pub forward_values: u128,
    /// Values of one row a forward pass with gradients holds: the input and every layer's
    /// output (autograd keeps them for the backward pass).
    pub gradient_forward_values: u128,
    pub n_units: u128,
    pub max_edges: u128,
}

fn values(shape: &[usize]) -> u128 {
    shape
        .iter()
        .fold(1u128, |n, &d| n.saturating_mul(d as u128))
}

impl ModelSizes {
    pub fn of(net: &Network, bounds: &GraphBounds) -> ModelSizes {
        let mut sizes = ModelSizes {
            weight_values: 0,
            largest_layer: None,
            input_values: values(&net.input_shape),
            capture_values: 0,
            forward_values: peak_forward_values(net),
            gradient_forward_values: values(&net.input_shape),
            n_units: bounds.n_units as u128,
            max_edges: bounds.max_edges as u128,
        };
        for layer in &net.layers {
            let weights =
                (layer.op.params().iter()).fold(0u128, |n, (_, s)| n.saturating_add(values(s)));
            sizes.weight_values = sizes.weight_values.saturating_add(weights);
            if weights > sizes.largest_layer.as_ref().map_or(0, |l| l.1) {
                sizes.largest_layer = Some((layer.name.clone(), weights));
            }
            if layer.op.is_graph_op() {
                sizes.capture_values = sizes
                    .capture_values
                    .saturating_add(layer.operands_numel() as u128);
            }
            sizes.gradient_forward_values = sizes
                .gradient_forward_values
                .saturating_add(values(&layer.out_shape));
        }
        sizes
    }
}

/// The most values of one row a forward pass without gradients holds at once: it runs the layers
/// in order and drops each tensor after its last reader (`forward::liveness`). While a layer
/// runs, the live tensors, its output and, for a multi-operand graph op (`add`), the copy of its
/// operands that is captured.
fn peak_forward_values(net: &Network) -> u128 {
    let mut live = values(&net.input_shape);
    let mut peak = live;
    for (layer, releases) in net.layers.iter().zip(liveness::releases(net)) {
        let out = values(&layer.out_shape);
        let capture_copy = if layer.op.is_graph_op() && layer.inputs.len() > 1 {
            layer.operands_numel() as u128
        } else {
            0
        };
        peak = peak.max(live.saturating_add(out).saturating_add(capture_copy));
        live = live.saturating_add(out);
        for source in releases {
            let freed = match source {
                LayerInput::Input => values(&net.input_shape),
                LayerInput::Layer(j) => values(&net.layers[j].out_shape),
            };
            live = live.saturating_sub(freed);
        }
    }
    peak
}

/// The pipeline settings that scale memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    pub batch_size: usize,
    pub workers: usize,
    /// `clean` plus one per attack. With attacks, the forward pass is sized as if it took
    /// gradients (keeping every layer's output).
    pub variants: usize,
    /// `homology.h1_diagram`: each worker then holds a sample's H1 death list, up to one value
    /// per edge.
    pub h1_diagram: bool,
}

/// The config key whose value scales a part of the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lever {
    BatchSize,
    Workers,
    Model,
    None,
}

/// One part of a run's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub what: &'static str,
    pub bytes: u128,
    pub lever: Lever,
}

/// Batches whose captures can be alive at once: the job queue holds 2 x max(batch_size, 64)
/// jobs, plus the batch the model stage computes and the one the workers finish.
fn capture_batches(batch_size: usize) -> u128 {
    let b = batch_size.max(1) as u128;
    (2 * b.max(64)).div_ceil(b) + 2
}

impl ModelSizes {
    /// A topology worker's buffers: per-unit lists, its share of the edge bound and, with
    /// `h1_diagram`, a value per edge.
    pub fn worker_bytes(&self, h1_diagram: bool) -> u128 {
        let edges = self.max_edges.saturating_mul(EDGE_BYTES);
        let h1 = if h1_diagram {
            self.max_edges.saturating_mul(F32_BYTES)
        } else {
            0
        };
        self.n_units
            .saturating_mul(UNIT_BYTES)
            .saturating_add(edges.saturating_mul(EDGE_SHARE.0) / EDGE_SHARE.1)
            .saturating_add(h1)
    }

    /// One sample's captured activations (one variant).
    pub fn capture_bytes(&self) -> u128 {
        self.capture_values.saturating_mul(F32_BYTES)
    }

    /// The forward pass's tensors for `FORWARD_CHUNK` rows, with or without gradients.
    pub fn forward_bytes(&self, gradients: bool) -> u128 {
        let (row_values, copies) = if gradients {
            (self.gradient_forward_values, FORWARD_COPIES)
        } else {
            (self.forward_values, NO_GRAD_COPIES)
        };
        row_values.saturating_mul(FORWARD_CHUNK as u128 * F32_BYTES * copies)
    }

    /// The weights, every copy.
    pub fn weight_bytes(&self) -> u128 {
        self.weight_values.saturating_mul(F32_BYTES * WEIGHT_COPIES)
    }
}

/// The memory a run needs, part by part (the rule in docs/limits.md).
pub(crate) fn memory_parts(m: &ModelSizes, run: RunShape) -> Vec<Part> {
    let batch = run.batch_size as u128;
    let workers = run.workers as u128;
    let variants = run.variants as u128;
    let captures = m
        .capture_values
        .saturating_mul(variants)
        .saturating_mul(capture_batches(run.batch_size))
        .saturating_add(m.input_values.saturating_mul(INPUT_BATCHES))
        .saturating_mul(batch)
        .saturating_mul(F32_BYTES);
    let slots = (2 * batch.max(64))
        .saturating_add(workers.saturating_mul(64))
        .saturating_add(batch);
    vec![
        Part {
            what: "activation captures",
            bytes: captures,
            lever: Lever::BatchSize,
        },
        Part {
            what: "topology workers",
            bytes: m.worker_bytes(run.h1_diagram).saturating_mul(workers),
            lever: Lever::Workers,
        },
        Part {
            what: "weights",
            bytes: m.weight_bytes(),
            lever: Lever::Model,
        },
        Part {
            what: "forward pass",
            bytes: m.forward_bytes(run.variants > 1),
            lever: Lever::Model,
        },
        Part {
            what: "queues",
            bytes: slots.saturating_mul(SLOT_BYTES),
            lever: Lever::BatchSize,
        },
        Part {
            what: "runtime",
            bytes: RUNTIME_BYTES,
            lever: Lever::None,
        },
    ]
}

pub(crate) fn total(parts: &[Part]) -> u128 {
    parts.iter().fold(0u128, |t, p| t.saturating_add(p.bytes))
}

/// Memory this process may use, and where the figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Bytes a run may need in all.
    pub available: u128,
    /// Bytes one allocation may take: past this the kernel refuses it outright.
    pub one_allocation: u128,
    /// `available` and where it comes from, as it follows "more than" in messages.
    pub source: String,
}

impl MemoryLimit {
    /// `pipeline.memory_limit_mb` set by the user: used for both figures.
    pub(crate) fn from_mb(mb: u64) -> MemoryLimit {
        let bytes = (mb as u128) << 20;
        MemoryLimit {
            available: bytes,
            one_allocation: bytes,
            source: format!(
                "the {} set by pipeline.memory_limit_mb = {mb}",
                Bytes(bytes)
            ),
        }
    }

    /// This machine's: MemAvailable, lowered to the process's cgroup limit less the cgroup's
    /// anonymous memory when there is one; one allocation may take memory plus swap (Linux's
    /// default overcommit refuses more). None where the platform does not say.
    pub fn of_machine() -> Option<MemoryLimit> {
        let mut sys = sysinfo::System::new().ok()?;
        sys.refresh_memory();
        let total = sys.total_memory();
        if total == 0 {
            return None;
        }
        let available = sys.available_memory() as u128;
        let mut limit = MemoryLimit {
            available,
            one_allocation: total.saturating_add(sys.total_swap()) as u128,
            source: format!(
                "the {} of available memory (MemAvailable)",
                Bytes(available)
            ),
        };
        if let Some(cg) = own_cgroup_limits(&mut sys) {
            let free = cg.total_memory.saturating_sub(cg.rss) as u128;
            if free < limit.available {
                limit.available = free;
                limit.source = format!(
                    "the {} left under this process's cgroup memory limit",
                    Bytes(free)
                );
            }
            let cg_total = cg.total_memory.saturating_add(cg.free_swap) as u128;
            limit.one_allocation = limit.one_allocation.min(cg_total);
        }
        Some(limit)
    }
}

/// The memory limits of this process's cgroup (Slurm, Kubernetes, containers), if any.
fn own_cgroup_limits(sys: &mut sysinfo::System) -> Option<sysinfo::CGroupLimits> {
    let pid = sysinfo::get_current_pid().ok()?;
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[pid]),
        false,
        sysinfo::ProcessRefreshKind::nothing(),
    );
    sys.process(pid)
        .and_then(|p| p.cgroup_limits())
        .or_else(|| sys.cgroup_limits())
}

/// Bytes for people: "1.5 GiB".
pub struct Bytes(pub u128);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

/// Largest `n` in `1..=high` for which `fits(n)` holds (`fits` shrinks as n grows), or None.
fn largest_fitting(high: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    if high == 0 || !fits(1) {
        return None;
    }
    let (mut lo, mut hi) = (1, high);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// "needs about X of memory, more than Y: part X1, part X2, ...".
fn needs(parts: &[Part], limit: &MemoryLimit) -> String {
    let listing = parts
        .iter()
        .map(|p| format!("{} {}", p.what, Bytes(p.bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "needs about {} of memory, more than {}: {listing}",
        Bytes(total(parts)),
        limit.source
    )
}

/// Checks a run of the model in `spec` against `limit`; each problem names the key to change and
/// the fix.
pub fn check_memory(
    m: &ModelSizes,
    spec: &Path,
    run: RunShape,
    limit: &MemoryLimit,
) -> Vec<String> {
    let spec = spec.display().to_string();
    let mut problems: Vec<String> = edge_buffer_too_large(m, &spec, limit).into_iter().collect();
    let parts = memory_parts(m, run);
    if total(&parts) <= limit.available {
        return problems;
    }
    let smallest = RunShape {
        batch_size: 1,
        workers: 1,
        ..run
    };
    if total(&memory_parts(m, smallest)) > limit.available {
        problems.push(format!(
            "`model.spec` = \"{spec}\": even with pipeline.batch_size = 1 and pipeline.workers = 1 the model {}; fix: use a smaller model{}, or raise `pipeline.memory_limit_mb` if more memory will be free",
            needs(&memory_parts(m, smallest), limit),
            m.largest_layer
                .as_ref()
                .map(|(name, n)| format!(" (layer `{name}` has the most weights: {n})"))
                .unwrap_or_default()
        ));
        return problems;
    }
    problems.push(lower_batch_or_workers(m, run, &parts, limit));
    problems
}

/// One worker's edge buffer is a single allocation: past what the kernel can give at all, no
/// setting helps.
fn edge_buffer_too_large(m: &ModelSizes, spec: &str, limit: &MemoryLimit) -> Option<String> {
    let edge_buffer = m.max_edges.saturating_mul(EDGE_BYTES);
    (edge_buffer > limit.one_allocation).then(|| format!(
        "`model.spec` = \"{spec}\": each topology worker reserves room for the network's {} possible edges per input ({}) in one allocation, more than the {} (memory plus swap) this process can be given at all; fix: use a smaller model (`actopo inspect SPEC` lists the edges per layer)",
        m.max_edges,
        Bytes(edge_buffer),
        Bytes(limit.one_allocation)
    ))
}

/// A run too large for `limit` that fits with batch size and workers 1: names the key whose part
/// dominates and the largest values of both that fit.
fn lower_batch_or_workers(
    m: &ModelSizes,
    run: RunShape,
    parts: &[Part],
    limit: &MemoryLimit,
) -> String {
    let fits = |run: RunShape| total(&memory_parts(m, run)) <= limit.available;
    let dominant = parts
        .iter()
        .filter(|p| p.lever != Lever::None)
        .max_by_key(|p| p.bytes)
        .map_or(Lever::BatchSize, |p| p.lever);
    let max_batch = largest_fitting(run.batch_size, |b| {
        fits(RunShape {
            batch_size: b,
            ..run
        })
    });
    let max_workers = largest_fitting(run.workers, |w| fits(RunShape { workers: w, ..run }));
    let batch_fix = max_batch.map(|b| format!("lower `pipeline.batch_size` to at most {b}"));
    let workers_fix = max_workers.map(|w| format!("lower `pipeline.workers` to at most {w}"));
    let (key, value, fixes) = match dominant {
        Lever::Workers => ("pipeline.workers", run.workers, [workers_fix, batch_fix]),
        _ => (
            "pipeline.batch_size",
            run.batch_size,
            [batch_fix, workers_fix],
        ),
    };
    let mut fixes: Vec<String> = fixes.into_iter().flatten().collect();
    if fixes.is_empty() {
        fixes.push("lower `pipeline.batch_size` and `pipeline.workers` (both 1 fit)".into());
    }
    if run.variants > 1 && dominant != Lever::Workers {
        fixes.push("use fewer [[attacks]]".into());
    }
    fixes.push("raise `pipeline.memory_limit_mb` if more memory will be free".into());
    format!(
        "`{key}` = {value}: this run {}; fix: {}",
        needs(parts, limit),
        fixes.join(", or ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> ModelSizes {
        ModelSizes {
            weight_values: 1_000,
            largest_layer: Some(("fc".into(), 800)),
            input_values: 784,
            capture_values: 2_000,
            forward_values: 3_000,
            gradient_forward_values: 5_000,
            n_units: 4_000,
            max_edges: 400_000,
        }
    }

    fn limit(gib: u128) -> MemoryLimit {
        MemoryLimit {
            available: gib << 30,
            one_allocation: gib << 30,
            source: "test".into(),
        }
    }

    const SPEC: &str = "m.toml";

    const RUN: RunShape = RunShape {
        batch_size: 128,
        workers: 2,
        variants: 1,
        h1_diagram: false,
    };

    #[test]
    fn captures_scale_with_batch_variants_and_batches_in_flight() {
        let parts = memory_parts(&sizes(), RUN);
        // 128 x 4 bytes x (2,000 values x 1 variant x 4 batches + 784 x 3 input batches)
        assert_eq!(parts[0].bytes, 128 * 4 * (2_000 * 4 + 784 * 3));
        // 2 workers x (4,000 units x 20 bytes + 400,000 edges x 12 bytes / 4)
        assert_eq!(parts[1].bytes, 2 * (4_000 * 20 + 400_000 * 12 / 4));
        // ... + 400,000 x 4 bytes each for H1 diagrams
        let h1 = memory_parts(
            &sizes(),
            RunShape {
                h1_diagram: true,
                ..RUN
            },
        );
        assert_eq!(h1[1].bytes, parts[1].bytes + 2 * 400_000 * 4);
        assert_eq!(capture_batches(1), 130);
        assert_eq!(capture_batches(64), 4);
        assert_eq!(capture_batches(100_000), 4);
    }

    #[test]
    fn a_small_run_fits_and_a_huge_batch_names_the_key_and_the_largest_that_fits() {
        assert!(check_memory(&sizes(), Path::new(SPEC), RUN, &limit(2)).is_empty());
        let huge = RunShape {
            batch_size: 1_000_000_000_000,
            ..RUN
        };
        let problems = check_memory(&sizes(), Path::new(SPEC), huge, &limit(2));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert!(
            p.starts_with("`pipeline.batch_size` = 1000000000000"),
            "{p}"
        );
        let at_most: usize = p
            .split("to at most ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no bound in {p}"));
        let fits = |b| {
            total(&memory_parts(
                &sizes(),
                RunShape {
                    batch_size: b,
                    ..RUN
                },
            ))
        };
        assert!(
            fits(at_most) <= 2 << 30 && fits(at_most + 1) > 2 << 30,
            "{p}"
        );
    }

    #[test]
    fn too_many_workers_name_workers_and_a_model_too_large_names_the_spec() {
        let mut m = sizes();
        m.max_edges = 100_000_000; // 300 MB of edge buffers per worker
        let many = RunShape { workers: 64, ..RUN };
        let p = check_memory(&m, Path::new(SPEC), many, &limit(4)).join("\n");
        assert!(p.starts_with("`pipeline.workers` = 64"), "{p}");
        assert!(p.contains("lower `pipeline.workers` to at most"), "{p}");
        m.weight_values = 1 << 40;
        let p = check_memory(&m, Path::new(SPEC), RUN, &limit(4)).join("\n");
        assert!(p.starts_with("`model.spec` = \"m.toml\""), "{p}");
        assert!(p.contains("layer `fc`"), "{p}");
    }

    #[test]
    fn an_edge_buffer_past_one_allocation_is_refused() {
        let mut m = sizes();
        m.max_edges = 1 << 40;
        let p = check_memory(&m, Path::new(SPEC), RUN, &limit(64)).join("\n");
        assert!(p.contains("in one allocation"), "{p}");
    }

    #[test]
    fn a_model_graph_counts_add_operands_and_its_peak_of_live_tensors() {
        let text = r#"
format_version = 2
name = "res"
input_shape = [2, 4, 4]
[[layers]]
name = "a"
op = "conv2d"
out_channels = 4
kernel_size = 1
[[layers]]
name = "bn"
op = "batch_norm2d"
[[layers]]
name = "down"
op = "conv2d"
inputs = ["input"]
out_channels = 4
kernel_size = 1
[[layers]]
name = "sum"
op = "add"
inputs = ["bn", "down"]
[[layers]]
name = "flat"
op = "flatten"
"#;
        let net = crate::spec::resolve_toml(text).unwrap();
        let bounds = GraphBounds::new(&net, crate::topology::GraphOptions::default()).unwrap();
        let m = ModelSizes::of(&net, &bounds);
        // a and down read the input (32 values each); sum reads bn and down (64 + 64).
        assert_eq!(m.capture_values, 32 + 32 + 128);
        // input 32; a +64 (96); bn +64 (160), drops a (96); down +64 (160), drops the input
        // (128); sum: 128 live + 64 out + 128 captured = 320, drops bn and down (64); flat 128.
        assert_eq!(m.forward_values, 320);
        assert_eq!(m.gradient_forward_values, 32 + 5 * 64);
        // conv weights 4 x 2 + bias 4, twice; batch norm 4 tensors of 4.
        assert_eq!(m.weight_values, 2 * 12 + 16);
        let chunk = FORWARD_CHUNK as u128 * 4;
        assert_eq!(m.forward_bytes(false), 320 * chunk * NO_GRAD_COPIES);
        let forward_part = |variants| {
            memory_parts(&m, RunShape { variants, ..RUN })
                .into_iter()
                .find(|p| p.what == "forward pass")
                .map(|p| p.bytes)
        };
        assert_eq!(forward_part(1), Some(320 * chunk * NO_GRAD_COPIES));
        assert_eq!(forward_part(2), Some(352 * chunk * FORWARD_COPIES));
    }

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(3 << 29).to_string(), "1.5 GiB");
    }

    /// The rule must not refuse real jobs: the demo and the paper's AlexNet-for-CIFAR shape.
    #[test]
    fn the_demo_and_alexnet_cifar_fit_in_a_few_gib() {
        use crate::topology::GraphOptions;
        let sizes_of = |text: &str| {
            let net = crate::spec::resolve_toml(text).unwrap();
            ModelSizes::of(
                &net,
                &GraphBounds::new(&net, GraphOptions::default()).unwrap(),
            )
        };
        let mut alexnet =
            String::from("format_version = 1\nname = \"a\"\ninput_shape = [3, 32, 32]\n");
        for layer in [
            "op = \"conv2d\"\nout_channels = 64\nkernel_size = 11",
            "op = \"relu\"",
            "op = \"max_pool2d\"\nkernel_size = 2\nstride = 1",
            "op = \"conv2d\"\nout_channels = 192\nkernel_size = 5",
            "op = \"relu\"",
            "op = \"max_pool2d\"\nkernel_size = 2",
            "op = \"conv2d\"\nout_channels = 384\nkernel_size = 3",
            "op = \"conv2d\"\nout_channels = 256\nkernel_size = 3",
            "op = \"conv2d\"\nout_channels = 256\nkernel_size = 3",
            "op = \"max_pool2d\"\nkernel_size = 2",
            "op = \"flatten\"",
            "op = \"linear\"\nout_features = 4096",
            "op = \"linear\"\nout_features = 4096",
            "op = \"linear\"\nout_features = 10",
        ] {
            alexnet += &format!("[[layers]]\n{layer}\n");
        }
        let alexnet = sizes_of(&alexnet);
        assert_eq!(alexnet.max_edges, 158_457_856); // as `actopo inspect` and the README say
        let ccff = sizes_of(include_str!("../models/ccff.toml"));
        let run = |batch_size, workers| RunShape {
            batch_size,
            workers,
            variants: 1,
            h1_diagram: false,
        };
        let gib = |m: &ModelSizes, r| total(&memory_parts(m, r)) as f64 / (1u64 << 30) as f64;
        // Measured peak RSS: CCFF 0.55 GB; AlexNet-CIFAR with batch 8: 1.09 GB with 1 worker,
        // 1.55-1.8 GB with 2.
        assert!(gib(&ccff, run(128, 2)) < 0.6, "{}", gib(&ccff, run(128, 2)));
        assert!(gib(&ccff, run(128, 16)) < 0.6);
        let a = gib(&alexnet, run(8, 2));
        assert!((1.5..2.2).contains(&a), "{a}");
        assert!(
            gib(&alexnet, run(128, 16)) < 10.0,
            "{}",
            gib(&alexnet, run(128, 16))
        );
    }
}
