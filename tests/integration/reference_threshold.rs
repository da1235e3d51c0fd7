//! `graph.threshold = { reference_percentile = P }` (the reference code's cuts): a hand example
//! whose cuts and kept edges are worked out below, the models it refuses, the config's problems
//! by key, and the record in the manifest and the Parquet metadata. The comparison with a numpy
//! re-implementation of the reference code on real images is tests/python/reference_threshold_check.py.

use std::collections::BTreeMap;
use std::path::Path;

use actopo::spec::{ModelSpec, Network};
use actopo::topology::{
    Edge, EdgeSink, EdgeSource, EdgeThreshold, GraphOptions, GraphPlan, OpCuts, SampleGraph,
};
use actopo::weights::{Tensor, Weights};

use crate::support::{demo_args, read_parquet, run_actopo as actopo, stderr};

#[derive(Default)]
struct Collected(Vec<Edge>);

impl EdgeSink for Collected {
    fn extend(&mut self, edges: &[Edge]) {
        self.0.extend_from_slice(edges);
    }
}

fn network(name: &str, layers: &str) -> Network {
    let text = format!("format_version = 1\nname = \"{name}\"\ninput_shape = [1, 1, 4]\n{layers}");
    Network::resolve(&ModelSpec::parse(&text, Path::new("t.toml")).unwrap()).unwrap()
}

/// Weights of `net`: every weight of a layer is `value[layer name]`.
fn weights(net: &Network, value: &[(&str, f32)]) -> Weights {
    let mut tensors = BTreeMap::new();
    for layer in &net.layers {
        if let Some(shape) = layer.op.weight_shape() {
            let v = value.iter().find(|(n, _)| *n == layer.name).unwrap().1;
            let data = vec![v; shape.iter().product()];
            tensors.insert(format!("{}.weight", layer.name), Tensor { shape, data });
        }
    }
    Weights::from_tensors(tensors, net).unwrap()
}

const CHAIN: &str =
    "[[layers]]\nname = \"c1\"\nop = \"conv2d\"\nout_channels = 1\nkernel_size = 1\nbias = false\n\
    [[layers]]\nop = \"relu\"\n\
    [[layers]]\nname = \"c2\"\nop = \"conv2d\"\nout_channels = 1\nkernel_size = 1\nbias = false\n\
    [[layers]]\nop = \"flatten\"\n\
    [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 1\nbias = false\n";

/// Input x = [1, 2, 3, 4]; c1 (weight 1) outputs x, c2 (weight 2) outputs 2x, fc (weight 1)
/// reads 2x. At P = 50 numpy's percentile of 4 sorted values is the midpoint of the 2nd and 3rd:
/// - c1 (op 0): cut = percentile(|c1 output| = [1, 2, 3, 4]) / 1 = 2.5; edges x: 3 and 4 kept;
/// - c2 (op 1): cut = percentile([2, 4, 6, 8]) / 2 = 2.5; edges 2x: 4, 6 and 8 kept;
/// - fc (op 2): cut = percentile(|1 * 2x|) = 5; edges 2x: 6 and 8 kept.
///
/// At P = 100 every cut is the largest value (divided by l + 1 for a conv): strictly above it,
/// c1 keeps nothing, c2 keeps 2x > 4 (6 and 8), fc nothing. At P = 0 the cuts are the smallest
/// values: c1 1 (keeps 2, 3, 4), c2 2 / 2 = 1 (keeps all), fc 2 (keeps 4, 6, 8).
#[test]
fn a_hand_example_keeps_the_edges_worked_out_by_hand() {
    let net = network("chain", CHAIN);
    let w = weights(&net, &[("c1", 1.0), ("c2", 2.0), ("fc", 1.0)]);
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let doubled = x.map(|v| 2.0 * v);
    let inputs: [&[f32]; 3] = [&x, &x, &doubled];
    for (p, want) in [
        (50.0, [vec![3.0, 4.0], vec![4.0, 6.0, 8.0], vec![6.0, 8.0]]),
        (100.0, [vec![], vec![6.0, 8.0], vec![]]),
        (
            0.0,
            [x[1..].to_vec(), doubled.to_vec(), vec![4.0, 6.0, 8.0]],
        ),
    ] {
        let options = GraphOptions {
            threshold: EdgeThreshold::ReferencePercentile(p),
            ..GraphOptions::default()
        };
        let plan = GraphPlan::new(&net, &w, options).unwrap();
        let mut cuts = OpCuts::default();
        let cuts = cuts.compute(&plan, &inputs, plan.threshold());
        for (op, want) in want.iter().enumerate() {
            let mut got = Collected::default();
            (SampleGraph::layer(&plan, &inputs, op).unwrap())
                .with_cuts(cuts)
                .for_each_edge(&mut got);
            let mut got: Vec<f32> = got.0.iter().map(|e| e.weight).collect();
            got.sort_by(f32::total_cmp);
            assert_eq!(&got, want, "P = {p}, op {op}");
        }
    }
}

/// Models that are not a chain of convs and linear layers ending in a linear one are refused,
/// naming the layer and the fix.
#[test]
fn other_models_are_refused_naming_the_layer() {
    let options = GraphOptions {
        threshold: EdgeThreshold::ReferencePercentile(90.0),
        ..GraphOptions::default()
    };
    let pool = "[[layers]]\nname = \"c1\"\nop = \"conv2d\"\nout_channels = 1\nkernel_size = 1\nbias = false\n\
        [[layers]]\nname = \"p\"\nop = \"max_pool2d\"\nkernel_size = 1\n\
        [[layers]]\nop = \"flatten\"\n\
        [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 1\nbias = false\n";
    let conv_last = "[[layers]]\nname = \"c1\"\nop = \"conv2d\"\nout_channels = 1\nkernel_size = 1\nbias = false\n";
    for (layers, want) in [
        (pool, "layer `p` is a pool or add"),
        (
            conv_last,
            "layer `c1` is a conv with no graph op after it to read its output",
        ),
    ] {
        let net = network("other", layers);
        let w = weights(&net, &[("c1", 1.0), ("fc", 1.0)]);
        let e = GraphPlan::new(&net, &w, options).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        assert!(
            e.contains("fix: use graph.threshold = { percentile = P }"),
            "{e}"
        );
        // The per-op percentile is defined for them.
        let per_op = GraphOptions {
            threshold: EdgeThreshold::Percentile(90.0),
            ..GraphOptions::default()
        };
        assert!(GraphPlan::new(&net, &w, per_op).is_ok());
    }
}

#[test]
fn wrong_reference_thresholds_are_listed_by_key_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (set, want) in [
        (
            "graph.threshold={reference_percentile=101}",
            "`graph.threshold.reference_percentile` = 101: a percentile is between 0 and 100; fix: e.g. graph.threshold = { reference_percentile = 90 }",
        ),
        (
            "graph.threshold={percentile=90, reference_percentile=90}",
            "`graph.threshold` sets both percentile and reference_percentile; fix: keep one of them",
        ),
        (
            "graph.threshold={percentile=90, weight=1, reference_percentile=90}",
            "`graph.threshold` sets percentile and weight and reference_percentile; fix: keep one of them",
        ),
    ] {
        let o = actopo(&demo_args("validate", &dir.path().join("out"), &[set]));
        assert_eq!(o.status.code(), Some(2), "{set}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{set}: {want:?} not in\n{}", stderr(&o));
    }
}

/// The setting is recorded in the manifest (and so the run identity) and the Parquet metadata.
#[test]
fn a_reference_threshold_is_recorded_in_the_manifest_and_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref");
    let sets = [
        "graph.include_input=false",
        "graph.threshold={reference_percentile=90}",
    ];
    let o = actopo(&demo_args("run", &out, &sets));
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["config"]["graph"]["threshold"],
        serde_json::json!({"reference_percentile": 90.0})
    );
    let (_, meta) = read_parquet(&out.join("summary/t10k-images-idx3-ubyte.parquet"));
    let rule = meta.get("actopo.threshold").unwrap();
    assert!(
        rule.starts_with(
            "reference_percentile = 90; per graph op and input, the reference code's cut"
        ),
        "{rule}"
    );
}
