//! `actopo inspect SPEC`: a table of layers with their inputs, role in the activation graph,
//! shapes, units and edge bounds, to size a sweep.
//! Everything comes from the spec's shapes (no weights are read or made), with the same checks as
//! `actopo run`: a spec too large for this machine is refused.

use std::path::Path;

use actopo::limits::{self, Bytes, MemoryLimit, ModelSizes, RunShape};
use actopo::spec::{numel, Layer, LayerInput, ModelSpec, Network, OpRole};
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
    println!("roles: graph adds a vertex layer and edges; value changes the values units pass on; shape re-indexes units; a batch norm that folds into a conv or linear layer scales its edge weights (graph.batch_norm = \"fold\", docs/graph.md)");
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

/// One line per layer: its inputs, what it does to the graph, its output shape, and for graph ops
/// their units and edge bound. Columns are as wide as their longest entry.
fn print_layers(net: &Network, bounds: &GraphBounds) {
    let mut op_edges = bounds.op_max_edges.iter();
    let mut rows = vec![[
        "#",
        "name",
        "op",
        "inputs",
        "role",
        "output",
        "units",
        "max edges",
    ]
    .map(String::from)];
    for (i, layer) in net.layers.iter().enumerate() {
        let (units, edges) = if layer.op.is_graph_op() {
            let edges = op_edges.next().map_or("-".into(), |e| e.to_string());
            (numel(&layer.out_shape).to_string(), edges)
        } else {
            ("-".into(), "-".into())
        };
        rows.push([
            i.to_string(),
            layer.name.clone(),
            layer.op.kind().to_string(),
            inputs(net, layer),
            role(net, i),
            format!("{:?}", layer.out_shape),
            units,
            edges,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = (row.iter().zip(&widths).enumerate())
            .map(|(c, (cell, &w))| match c {
                5..=7 => format!("{cell:>w$}"),
                _ => format!("{cell:<w$}"),
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// The layer's operands by name (`input` for the model input).
fn inputs(net: &Network, layer: &Layer) -> String {
    let names: Vec<&str> = (layer.inputs.iter())
        .map(|input| match input {
            LayerInput::Input => "input",
            LayerInput::Layer(j) => net.layers[*j].name.as_str(),
        })
        .collect();
    names.join(",")
}

/// What layer `i` does to the activation graph (docs/graph.md): a graph op adds a vertex layer,
/// a value op changes values, a shape op re-indexes units; a batch norm that folds (with the
/// default `graph.batch_norm = "fold"`) names the layer whose edges it scales.
fn role(net: &Network, i: usize) -> String {
    if let Some(j) = net.fold_target(i) {
        return format!("folds into {}", net.layers[j].name);
    }
    match net.layers[i].op.role() {
        OpRole::Graph => "graph",
        OpRole::Value => "value",
        OpRole::Shape => "shape",
    }
    .to_string()
}
