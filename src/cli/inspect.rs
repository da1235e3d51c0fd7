//! `actopo inspect SPEC`: a table of layers with shapes, units and edge bounds, to size a sweep.
//! Everything comes from the spec's shapes (no weights are read or made), with the same checks as
//! `actopo run`: a spec too large for this machine is refused.

use std::path::Path;

use actopo::limits::{self, Bytes, MemoryLimit, ModelSizes, RunShape};
use actopo::spec::{numel, ModelSpec, Network};
use actopo::topology::{GraphBounds, GraphOptions};
use anyhow::{anyhow, bail};

pub(crate) fn run(spec_path: &Path) -> anyhow::Result<()> {
    let spec = ModelSpec::load(spec_path)?;
    let net = Network::resolve(&spec)?;
    let bounds = GraphBounds::new(&net, GraphOptions::default())
        .map_err(|e| anyhow!("model spec {}: {e}", spec_path.display()))?;
    let sizes = ModelSizes::of(&net, &bounds);
    // The smallest run: one sample per batch, one worker, no attacks.
    let smallest = RunShape {
        batch_size: 1,
        workers: 1,
        variants: 1,
        h1_diagram: false,
    };
    if let Some(limit) = MemoryLimit::of_machine() {
        let problems = limits::check_memory(&sizes, spec_path, smallest, &limit);
        if !problems.is_empty() {
            bail!(
                "model spec {} cannot run on this machine:\n  {}",
                spec_path.display(),
                problems.join("\n  ")
            );
        }
    }
    println!(
        "model `{}` ({}), input {:?}: {} input units",
        net.name,
        spec_path.display(),
        net.input_shape,
        numel(&net.input_shape)
    );
    print_layers(&net, &bounds);
    println!(
        "network scope: {} units, at most {} edges per input (fewer where activations or weights are 0)",
        bounds.n_units, bounds.max_edges
    );
    println!(
        "memory: weights {}, each topology worker about {}, each sample of a batch {} per variant (docs/limits.md)",
        Bytes(sizes.weight_bytes()),
        Bytes(sizes.worker_bytes(false)),
        Bytes(sizes.capture_bytes())
    );
    Ok(())
}

/// One line per layer: its op, output shape, and for graph ops its units and edge bound.
fn print_layers(net: &Network, bounds: &GraphBounds) {
    println!(
        "{:<4} {:<12} {:<11} {:>16} {:>10} {:>14}",
        "#", "name", "op", "output", "units", "max edges"
    );
    let mut op_edges = bounds.op_max_edges.iter();
    for (i, layer) in net.layers.iter().enumerate() {
        let (units, edges) = if layer.op.is_graph_op() {
            let edges = op_edges.next().map_or("-".into(), |e| e.to_string());
            (numel(&layer.out_shape).to_string(), edges)
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "{:<4} {:<12} {:<11} {:>16} {:>10} {:>14}",
            i,
            layer.name,
            layer.op.kind(),
            format!("{:?}", layer.out_shape),
            units,
            edges
        );
    }
}
