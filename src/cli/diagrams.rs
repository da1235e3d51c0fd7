//! `actopo diagrams`: persistence of given activations, as JSON. A developer and test tool: it runs
//! the topology core on activations computed elsewhere (e.g. by PyTorch hooks), so the core can be
//! cross-checked against other implementations without the forward pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use actopo::model::Model;
use actopo::topology::{
    BatchNormFolding, EdgeThreshold, GraphOptions, GraphPlan, HomologyOptions, MaxPoolEdges,
    ScopeDiagram, ScopeKind, Scopes, Summary, Workspace,
};
use actopo::weights::{read_safetensors, Tensor};
use anyhow::{bail, Context};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model spec TOML.
    #[arg(long)]
    spec: PathBuf,
    /// Weights (safetensors); defaults to the file the spec names.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Safetensors file with one tensor per graph op, named like the layer, holding that op's
    /// input activations for N samples: shape [N, ...layer input shape] (for `add`, its operands
    /// one after the other: [N, operands, ...operand shape]).
    #[arg(long)]
    activations: PathBuf,
    /// Where to write the JSON result.
    #[arg(long)]
    out: PathBuf,
    /// Scopes to compute: network, layers, or both (comma-separated).
    #[arg(long, default_value = "network", value_delimiter = ',')]
    scopes: Vec<ScopeKind>,
    /// Leave the input units out of the graph (graph.include_input = false).
    #[arg(long)]
    no_input: bool,
    /// Max-pool edges: all (every window unit, the reference rule) or argmax (PyTorch's pick).
    #[arg(long, default_value = "all")]
    maxpool_edges: MaxPoolEdges,
    /// Batch norms: fold (into the conv or linear before them, graph.batch_norm = "fold") or
    /// values (never fold).
    #[arg(long, default_value = "fold")]
    batch_norm: BatchNormFolding,
    /// Keep each graph op's edges at or above the P-th percentile (0 to 100, nearest rank) of its
    /// nonzero edge weights (graph.threshold = { percentile = P }).
    #[arg(long, conflicts_with_all = ["threshold_weight", "threshold_reference_percentile"])]
    threshold_percentile: Option<f64>,
    /// Keep the edges of weight at or above W >= 0 (graph.threshold = { weight = W }).
    #[arg(long, conflicts_with = "threshold_reference_percentile")]
    threshold_weight: Option<f64>,
    /// Keep each graph op's edges strictly above the reference code's cut at the P-th percentile
    /// (graph.threshold = { reference_percentile = P }).
    #[arg(long)]
    threshold_reference_percentile: Option<f64>,
    /// Keep H0 pairs with birth == death (homology.keep_zero_persistence = true).
    #[arg(long)]
    keep_zero_persistence: bool,
    /// List H1 classes in the diagrams, not only their count (homology.h1_diagram = true).
    #[arg(long)]
    h1_diagram: bool,
}

/// `--threshold-percentile`, `--threshold-weight` or `--threshold-reference-percentile`, checked
/// as `graph.threshold` is.
fn threshold(args: &Args) -> anyhow::Result<EdgeThreshold> {
    if let Some(p) = args.threshold_reference_percentile {
        if !(0.0..=100.0).contains(&p) {
            bail!("--threshold-reference-percentile {p}: a percentile is between 0 and 100")
        }
        return Ok(EdgeThreshold::ReferencePercentile(p));
    }
    match (args.threshold_percentile, args.threshold_weight) {
        (Some(p), _) if !(0.0..=100.0).contains(&p) => {
            bail!("--threshold-percentile {p}: a percentile is between 0 and 100")
        }
        (Some(p), _) => Ok(EdgeThreshold::Percentile(p)),
        (_, Some(w)) if !(w.is_finite() && w >= 0.0) => {
            bail!("--threshold-weight {w}: an edge weight cut is a finite number >= 0")
        }
        (_, Some(w)) => Ok(EdgeThreshold::Weight(w)),
        (None, None) => Ok(EdgeThreshold::None),
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let model = Model::load(&args.spec, args.weights.as_deref())?;
    let options = GraphOptions {
        include_input: !args.no_input,
        maxpool_edges: args.maxpool_edges,
        batch_norm: args.batch_norm,
        threshold: threshold(args)?,
        ..Default::default()
    };
    let plan = GraphPlan::new(&model.network, &model.weights, options)?;
    let scopes = Scopes::of(&args.scopes);
    let homology = HomologyOptions {
        keep_zero_persistence: args.keep_zero_persistence,
        h1_diagram: args.h1_diagram,
    };
    let tensors = read_safetensors(&args.activations)?;
    let (per_op, n_samples) = op_inputs(args, &model, &plan, &tensors)?;
    let mut workspace = Workspace::new();
    let mut results = Vec::new();
    let mut samples = Vec::with_capacity(n_samples);
    for i in 0..n_samples {
        let inputs: Vec<&[f32]> = plan
            .ops
            .iter()
            .zip(&per_op)
            .map(|(op, t)| &t.data[i * op.input_len()..(i + 1) * op.input_len()])
            .collect();
        workspace
            .run(&plan, &inputs, scopes, homology, &mut results)
            .with_context(|| format!("sample {i}"))?;
        samples.push(json!({"index": i, "scopes": scopes_json(&results)}));
    }
    let vertex_layers: Vec<_> = plan
        .vertex_layers
        .iter()
        .map(|l| json!({"name": l.name, "offset": l.offset, "len": l.len}))
        .collect();
    let doc = json!({"vertex_layers": vertex_layers, "samples": samples});
    actopo::output::write_replacing(&args.out, &serde_json::to_vec(&doc)?)
}

/// Per graph op, its input tensor, and the number of samples they all hold.
fn op_inputs<'t>(
    args: &Args,
    model: &Model,
    plan: &GraphPlan,
    tensors: &'t BTreeMap<String, Tensor>,
) -> anyhow::Result<(Vec<&'t Tensor>, usize)> {
    let mut per_op = Vec::new();
    let mut n_samples = None;
    for op in &plan.ops {
        let t = tensors.get(&op.name).with_context(|| {
            format!(
                "{}: no tensor named `{}` (the input of graph op `{}`)",
                args.activations.display(),
                op.name,
                op.name
            )
        })?;
        let n = t.shape.first().copied().unwrap_or(0);
        if *n_samples.get_or_insert(n) != n || t.data.len() != n * op.input_len() {
            let layer = &model.network.layers[op.layer_index];
            let operands = match layer.in_shapes.len() {
                1 => String::new(),
                k => format!("{k}, "),
            };
            bail!(
                "{}: tensor `{}` has shape {:?}; expected [N, {operands}{}] with the same N for every op",
                args.activations.display(),
                op.name,
                t.shape,
                layer.in_shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        per_op.push(t);
    }
    Ok((per_op, n_samples.unwrap_or(0)))
}

/// One sample's diagrams, per scope.
fn scopes_json(results: &[ScopeDiagram]) -> Vec<serde_json::Value> {
    results
        .iter()
        .map(|r| {
            let d = &r.diagram;
            json!({
                "scope": r.scope,
                "summary": Summary::of(d),
                "h0": d.h0.iter().map(|p| json!([p.birth, p.death, p.src, p.dst])).collect::<Vec<_>>(),
                "h0_essential": d.h0_essential,
                "h1": d.h1,
            })
        })
        .collect()
}
