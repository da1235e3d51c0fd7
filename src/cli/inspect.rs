//! `actopo inspect SPEC`: a table of layers with shapes, units and edge bounds, to size a sweep.

use std::path::Path;

use actopo::spec::{numel, ModelSpec, Network};
use actopo::topology::{GraphOptions, GraphPlan};
use actopo::weights::{Tensor, Weights};

pub fn run(spec_path: &Path) -> anyhow::Result<()> {
    let spec = ModelSpec::load(spec_path)?;
    let net = Network::resolve(&spec)?;
    // Edge bounds need only shapes: stand-in weights of the right shape, all nonzero.
    let mut tensors = std::collections::BTreeMap::new();
    for layer in &net.layers {
        for (what, shape) in [
            ("weight", layer.op.weight_shape()),
            ("bias", layer.op.bias_shape()),
        ] {
            if let Some(shape) = shape {
                let data = vec![1.0; numel(&shape)];
                tensors.insert(format!("{}.{what}", layer.name), Tensor { shape, data });
            }
        }
    }
    let weights =
        Weights::from_tensors(tensors, &net).map_err(|p| anyhow::anyhow!(p.join("\n")))?;
    let plan = GraphPlan::new(&net, &weights, GraphOptions::default())?;
    println!(
        "model `{}` ({}), input {:?}: {} input units",
        net.name,
        spec_path.display(),
        net.input_shape,
        numel(&net.input_shape)
    );
    println!(
        "{:<4} {:<12} {:<11} {:>16} {:>10} {:>14}",
        "#", "name", "op", "output", "units", "max edges"
    );
    let mut ops = plan.ops.iter();
    for (i, layer) in net.layers.iter().enumerate() {
        let (units, edges) = if layer.op.is_graph_op() {
            let op = ops.next().expect("one graph op per graph layer");
            (
                numel(&layer.out_shape).to_string(),
                op.max_edges().to_string(),
            )
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
    println!(
        "network scope: {} units, at most {} edges per input (fewer where activations or weights are 0)",
        plan.n_units,
        plan.max_edges()
    );
    Ok(())
}
