//! `graph.threshold`: diagrams of thresholded graphs against a brute-force oracle (every edge
//! enumerated, each op cut by nearest rank here, then the boundary-matrix reduction of
//! `persistence_props`), an exact hand example, the config's problems by key, and the record in
//! the manifest and the Parquet metadata.
//!
//! Both sides weigh edges with actopo's enumeration, so weights are compared exactly; what is
//! independent is the cut and the persistence.

use std::path::Path;

use actopo::spec::{ModelSpec, Network};
use actopo::topology::{
    Diagram, Edge, EdgeSink, EdgeSource, EdgeThreshold, GraphOptions, GraphPlan, HomologyOptions,
    OpCuts, Persistence, SampleGraph, ScopeDiagram, Scopes, Workspace,
};
use actopo::weights::{Tensor, Weights};
use proptest::prelude::*;

use crate::persistence_props::brute_force;
use crate::support::{demo_args, read_parquet, run_actopo as actopo, stderr};

#[derive(Default)]
struct Collected(Vec<Edge>);

impl EdgeSink for Collected {
    fn extend(&mut self, edges: &[Edge]) {
        self.0.extend_from_slice(edges);
    }
}

/// A small net with conv, max pool, avg pool and two dense layers (fc1 reads more than one
/// 64-wide chunk, so the kernels' skipping paths are met).
fn mixed_network() -> Network {
    let text = "format_version = 1\nname = \"mixed\"\ninput_shape = [2, 8, 8]\n\
        [[layers]]\nname = \"conv\"\nop = \"conv2d\"\nout_channels = 3\nkernel_size = 3\npadding = 1\nbias = false\n\
        [[layers]]\nname = \"pool\"\nop = \"max_pool2d\"\nkernel_size = 2\n\
        [[layers]]\nname = \"avg\"\nop = \"avg_pool2d\"\nkernel_size = 1\n\
        [[layers]]\nop = \"flatten\"\n\
        [[layers]]\nname = \"fc1\"\nop = \"linear\"\nout_features = 20\nbias = false\n\
        [[layers]]\nname = \"fc2\"\nop = \"linear\"\nout_features = 4\nbias = false\n";
    Network::resolve(&ModelSpec::parse(text, Path::new("mixed.toml")).unwrap()).unwrap()
}

/// Weights of `net` drawn by `draw`.
fn weights_of(net: &Network, draw: &mut impl FnMut() -> f32) -> Weights {
    let mut tensors = std::collections::BTreeMap::new();
    for layer in &net.layers {
        if let Some(shape) = layer.op.weight_shape() {
            let data = (0..shape.iter().product()).map(|_| draw()).collect();
            tensors.insert(format!("{}.weight", layer.name), Tensor { shape, data });
        }
    }
    Weights::from_tensors(tensors, net).unwrap()
}

/// The oracle's cut of one op: sort its nonzero weights, take the ceil(P n / 100)-th smallest.
fn oracle_cut(edges: &[Edge], threshold: EdgeThreshold) -> f64 {
    match threshold {
        EdgeThreshold::Percentile(p) => {
            let mut w: Vec<f32> = edges.iter().map(|e| e.weight).collect();
            w.sort_by(f32::total_cmp);
            let rank = (p * w.len() as f64 / 100.0).ceil() as usize;
            if rank == 0 {
                0.0
            } else {
                w[rank - 1] as f64
            }
        }
        EdgeThreshold::Weight(w) => w,
        EdgeThreshold::None => 0.0,
        EdgeThreshold::ReferencePercentile(_) => unreachable!("checked in reference_threshold.rs"),
    }
}

/// The oracle's edges of each op: all of them enumerated (no threshold), then cut.
fn oracle_edges(plan: &GraphPlan, inputs: &[&[f32]], threshold: EdgeThreshold) -> Vec<Vec<Edge>> {
    (0..plan.ops.len())
        .map(|op| {
            let mut all = Collected::default();
            SampleGraph::layer(plan, inputs, op)
                .unwrap()
                .for_each_edge(&mut all);
            let cut = oracle_cut(&all.0, threshold);
            all.0
                .into_iter()
                .filter(|e| e.weight as f64 >= cut)
                .collect()
        })
        .collect()
}

/// Fails unless `d` is the brute-force diagram of `edges`.
fn check_diagram(
    d: &Diagram,
    edges: &[Edge],
    n_units: usize,
    what: &str,
) -> Result<(), TestCaseError> {
    let (h0, essential, h1) = brute_force(edges, n_units);
    let mut ours: Vec<(f32, f32)> = d.h0.iter().map(|p| (p.birth, p.death)).collect();
    ours.sort_by(|a, b| b.partial_cmp(a).unwrap());
    prop_assert_eq!(d.n_edges as usize, edges.len(), "{} edges", what);
    let vertices: std::collections::BTreeSet<u32> =
        edges.iter().flat_map(|e| [e.src, e.dst]).collect();
    prop_assert_eq!(d.n_vertices as usize, vertices.len(), "{} vertices", what);
    prop_assert_eq!(ours, h0, "{} H0", what);
    prop_assert_eq!(&d.h0_essential, &essential, "{} essential H0", what);
    prop_assert_eq!(&d.h1, &h1, "{} H1", what);
    prop_assert_eq!(d.h1_count as usize, h1.len(), "{} H1 count", what);
    Ok(())
}

fn thresholds() -> impl Strategy<Value = EdgeThreshold> {
    prop_oneof![
        prop::sample::select(vec![0.0, 10.0, 50.0, 90.0, 95.0, 99.0, 100.0])
            .prop_map(EdgeThreshold::Percentile),
        (0.0f64..100.0).prop_map(EdgeThreshold::Percentile),
        (0u8..12).prop_map(|w| EdgeThreshold::Weight(w as f64 * 0.5)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    /// Every scope of a thresholded graph (through `Workspace`, and through `compute_from` at
    /// any splits) has the diagram of the cut edges.
    #[test]
    fn thresholded_diagrams_match_the_brute_force_oracle(seed in any::<u32>(), threshold in thresholds(), split in 0u8..10) {
        let net = mixed_network();
        let mut rng = seed as u64 | 1;
        // Small integers: ties and zeros are common.
        let mut draw = move || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; (rng % 7) as f32 - 3.0 };
        let weights = weights_of(&net, &mut draw);
        let options = GraphOptions { threshold, ..GraphOptions::default() };
        let plan = GraphPlan::new(&net, &weights, options).unwrap();
        let inputs: Vec<Vec<f32>> = plan.ops.iter().map(|op| (0..op.input_len()).map(|_| draw()).collect()).collect();
        let inputs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let homology = HomologyOptions { keep_zero_persistence: true, h1_diagram: true };
        let per_op = oracle_edges(&plan, &inputs, threshold);
        let network: Vec<Edge> = per_op.concat();

        let mut out: Vec<ScopeDiagram> = Vec::new();
        let scopes = Scopes { network: true, layers: true };
        Workspace::new().run(&plan, &inputs, scopes, homology, &mut out).unwrap();
        check_diagram(&out[0].diagram, &network, plan.n_units, "network")?;
        for (op, edges) in per_op.iter().enumerate() {
            check_diagram(&out[op + 1].diagram, edges, plan.n_units, &plan.ops[op].name)?;
        }

        // The passes at given splits: the skip counts must add up whatever the bands.
        let mut cuts = OpCuts::default();
        let cuts = cuts.compute(&plan, &inputs, threshold);
        let mut p = Persistence::new();
        p.set_splits((split != 9).then(|| vec![split as f32, split as f32 / 3.0]));
        let homology = HomologyOptions { keep_zero_persistence: true, h1_diagram: split % 2 == 0 };
        let mut d = Diagram::default();
        let graph = SampleGraph::network(&plan, &inputs).unwrap().with_cuts(cuts);
        p.compute_from(&graph, plan.n_units, homology, &mut d);
        if !homology.h1_diagram {
            d.h1 = brute_force(&network, plan.n_units).2;
        }
        check_diagram(&d, &network, plan.n_units, "network at splits")?;
    }
}

/// A dense layer [4] -> [2] with nonzero edge weights 1, 2, 3, 3, 5, 6 (the fourth input is 0):
/// the kept edges at each cut, counted by hand.
#[test]
fn a_hand_example_keeps_the_edges_counted_by_hand() {
    let text = "format_version = 1\nname = \"hand\"\ninput_shape = [4]\n\
        [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 2\nbias = false\n";
    let net = Network::resolve(&ModelSpec::parse(text, Path::new("hand.toml")).unwrap()).unwrap();
    let w = [1.0, 2.0, 3.0, 9.0, 3.0, 5.0, -6.0, 7.0];
    let mut next = w.into_iter();
    let weights = weights_of(&net, &mut || next.next().unwrap());
    let input = [1.0f32, 1.0, 1.0, 0.0];
    let cases = [
        (EdgeThreshold::None, 6, 5),
        (EdgeThreshold::Percentile(0.0), 6, 5),
        // n = 6: rank ceil(3) = 3, cut 3 (the tie kept): 3, 3, 5, 6.
        (EdgeThreshold::Percentile(50.0), 4, 5),
        // rank ceil(5.4) = 6, cut 6: one edge.
        (EdgeThreshold::Percentile(90.0), 1, 2),
        (EdgeThreshold::Percentile(100.0), 1, 2),
        // rank ceil(0.96) = 1 keeps all; rank ceil(1.02) = 2 drops the 1.
        (EdgeThreshold::Percentile(16.0), 6, 5),
        (EdgeThreshold::Percentile(17.0), 5, 5),
        (EdgeThreshold::Weight(3.0), 4, 5),
        (EdgeThreshold::Weight(3.0001), 2, 3),
        (EdgeThreshold::Weight(7.0), 0, 0),
    ];
    for (threshold, n_edges, n_vertices) in cases {
        let options = GraphOptions {
            threshold,
            ..GraphOptions::default()
        };
        let plan = GraphPlan::new(&net, &weights, options).unwrap();
        let mut out = Vec::new();
        let scopes = Scopes {
            network: true,
            layers: true,
        };
        Workspace::new()
            .run(
                &plan,
                &[&input],
                scopes,
                HomologyOptions::default(),
                &mut out,
            )
            .unwrap();
        for scope in &out {
            let d = &scope.diagram;
            assert_eq!(
                (d.n_edges, d.n_vertices),
                (n_edges, n_vertices),
                "{threshold} {}",
                scope.scope
            );
        }
    }
    // At percentile 90 the one edge, 6 (input 2 -> output 1), gives both ends birth 6.
    let options = GraphOptions {
        threshold: EdgeThreshold::Percentile(90.0),
        ..GraphOptions::default()
    };
    let plan = GraphPlan::new(&net, &weights, options).unwrap();
    let mut out = Vec::new();
    Workspace::new()
        .run(
            &plan,
            &[&input],
            Scopes::default(),
            HomologyOptions::default(),
            &mut out,
        )
        .unwrap();
    assert_eq!(out[0].diagram.h0_essential, [6.0]);
}

/// Wrong thresholds are refused, each by its key with a fix.
#[test]
fn wrong_thresholds_are_listed_by_key_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "graph.threshold={percentile=101}",
            "`graph.threshold.percentile` = 101: a percentile is between 0 and 100; fix:",
        ),
        (
            "graph.threshold={percentile=-1}",
            "`graph.threshold.percentile` = -1: a percentile is between 0 and 100; fix:",
        ),
        (
            "graph.threshold={weight=-0.5}",
            "`graph.threshold.weight` = -0.5: an edge weight cut is a finite number >= 0; fix:",
        ),
        (
            "graph.threshold={percentile=90, weight=1}",
            "`graph.threshold` sets both percentile and weight; fix: keep one of them",
        ),
        (
            "graph.threshold={}",
            "`graph.threshold` sets none of percentile, weight and reference_percentile; fix:",
        ),
        (
            "graph.threshold={percentil=90}",
            "unknown key `graph.threshold.percentil`; check its spelling",
        ),
    ];
    for (set, want) in cases {
        let o = actopo(&demo_args("validate", &dir.path().join("out"), &[set]));
        assert_eq!(o.status.code(), Some(2), "{set}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{set}: {want:?} not in\n{}",
            stderr(&o)
        );
    }
    let o = actopo(&demo_args(
        "validate",
        &dir.path().join("out"),
        &["graph.threshold={percentile=90}"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A threshold is recorded in the manifest and the Parquet metadata; a run without one records
/// neither (its manifest, and so its run identity, is as before).
#[test]
fn a_threshold_is_recorded_in_the_manifest_and_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, sets: &[&str]| {
        let out = dir.path().join(name);
        let o = actopo(&demo_args("run", &out, sets));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        let (_, meta) = read_parquet(&out.join("summary/t10k-images-idx3-ubyte.parquet"));
        (manifest, meta)
    };
    let (manifest, meta) = run("default", &[]);
    assert!(!manifest.contains("threshold"));
    assert_eq!(meta.get("actopo.threshold"), None);
    let (manifest, meta) = run("p90", &["graph.threshold={percentile=90}"]);
    let value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        value["config"]["graph"]["threshold"],
        serde_json::json!({"percentile": 90.0})
    );
    let rule = meta.get("actopo.threshold").unwrap();
    assert!(
        rule.starts_with("percentile = 90; per graph op and input: the nearest-rank"),
        "{rule}"
    );
    let (manifest, meta) = run("w", &["graph.threshold={weight=0.25}"]);
    let value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        value["config"]["graph"]["threshold"],
        serde_json::json!({"weight": 0.25})
    );
    let rule = meta.get("actopo.threshold").unwrap();
    assert!(
        rule.starts_with("weight = 0.25; edges of weight at or above it kept"),
        "{rule}"
    );
}
