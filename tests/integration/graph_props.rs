//! Property tests: sparse conv (grouped too)/pool edge enumeration equals a naive all-pairs
//! construction.

use std::collections::BTreeSet;
use std::path::Path;

use actopo::spec::{ModelSpec, Network, Op};
use actopo::topology::{
    Diagram, Edge, EdgeSink, EdgeSource, GraphError, GraphOptions, GraphPlan, HomologyOptions,
    MaxPoolEdges, Persistence, SampleGraph,
};
use actopo::weights::{Tensor, Weights};
use proptest::prelude::*;

/// Collects every edge a graph enumerates (actopo itself never stores a whole graph: these
/// tests compare with the stored edge list).
#[derive(Default)]
struct Collected(Vec<Edge>);

impl EdgeSink for Collected {
    fn extend(&mut self, edges: &[Edge]) {
        self.0.extend_from_slice(edges);
    }
}

fn edges_of(graph: Result<SampleGraph, GraphError>) -> Result<Vec<Edge>, GraphError> {
    let mut sink = Collected::default();
    graph?.for_each_edge(&mut sink);
    Ok(sink.0)
}

/// The edges of graph op `op` (its `layers` scope); `inputs[i]` is graph op i's input.
fn op_edges(plan: &GraphPlan, op: usize, inputs: &[&[f32]]) -> Result<Vec<Edge>, GraphError> {
    edges_of(SampleGraph::layer(plan, inputs, op))
}

/// The edges of every graph op, op by op (the `network` scope).
fn network_edges(plan: &GraphPlan, inputs: &[&[f32]]) -> Result<Vec<Edge>, GraphError> {
    edges_of(SampleGraph::network(plan, inputs))
}

#[derive(Debug, Clone)]
struct Case {
    op: &'static str,
    c: usize,
    h: usize,
    w: usize,
    out_c: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    /// Conv groups: `c` and `out_c` are multiples of it.
    groups: usize,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just("conv2d"), Just("max_pool2d"), Just("avg_pool2d")],
        1usize..3,
        3usize..8,
        3usize..8,
        1usize..3,
        [1usize..4, 1usize..4],
        [1usize..3, 1usize..3],
        [0usize..3, 0usize..3],
        [1usize..3, 1usize..3],
        1usize..4,
    )
        .prop_map(|(op, c, h, w, out_c, k, s, p, d, groups)| {
            let mut case = Case {
                op,
                c,
                h,
                w,
                out_c,
                k,
                s,
                p,
                d,
                groups: 1,
            };
            if op == "conv2d" {
                // Grouped (depthwise when a group has one channel each way).
                (case.groups, case.c, case.out_c) = (groups, groups * c, groups * out_c);
            } else {
                case.d = [1, 1];
                case.p = [case.p[0].min(case.k[0] / 2), case.p[1].min(case.k[1] / 2)];
            }
            case
        })
        // The dilated kernel, d * (k - 1) + 1 cells, fits in the padded input.
        .prop_filter("kernel fits", |c| {
            c.h + 2 * c.p[0] > c.d[0] * (c.k[0] - 1) && c.w + 2 * c.p[1] > c.d[1] * (c.k[1] - 1)
        })
}

fn network(case: &Case) -> Network {
    let extra = if case.op == "conv2d" {
        format!(
            "out_channels = {}\ndilation = [{}, {}]\ngroups = {}\nbias = false\n",
            case.out_c, case.d[0], case.d[1], case.groups
        )
    } else {
        String::new()
    };
    let text = format!(
        "format_version = 1\nname = \"t\"\ninput_shape = [{}, {}, {}]\n[[layers]]\nname = \"l\"\nop = \"{}\"\nkernel_size = [{}, {}]\nstride = [{}, {}]\npadding = [{}, {}]\n{extra}",
        case.c, case.h, case.w, case.op, case.k[0], case.k[1], case.s[0], case.s[1], case.p[0], case.p[1]
    );
    Network::resolve(&ModelSpec::parse(&text, Path::new("t.toml")).unwrap()).unwrap()
}

/// For every (output unit, input unit) pair, looks for a kernel tap that reads the input when
/// computing the output: the definition in the README ("Conventions"), with no index arithmetic shared
/// with the sparse builder.
fn naive_edges(
    case: &Case,
    net: &Network,
    weight: &[f32],
    a: &[f32],
    rule: MaxPoolEdges,
) -> BTreeSet<(u32, u32, u32)> {
    let out = &net.layers[0].out_shape;
    let (oc, oh, ow) = (out[0], out[1], out[2]);
    let n_in = case.c * case.h * case.w;
    // Input and output channels per conv group.
    let (cig, cog) = (case.c / case.groups, oc / case.groups);
    let mut edges = BTreeSet::new();
    for o in 0..oc {
        for y in 0..oh {
            for x in 0..ow {
                let dst = (n_in + (o * oh + y) * ow + x) as u32;
                let mut window = Vec::new();
                for c in 0..case.c {
                    if case.op != "conv2d" && c != o {
                        continue;
                    }
                    if case.op == "conv2d" && c / cig != o / cog {
                        continue; // a conv's output channel reads only its group's inputs
                    }
                    for ih in 0..case.h {
                        for iw in 0..case.w {
                            for kh in 0..case.k[0] {
                                for kw in 0..case.k[1] {
                                    let hit = (y * case.s[0] + kh * case.d[0]) as isize
                                        - case.p[0] as isize
                                        == ih as isize
                                        && (x * case.s[1] + kw * case.d[1]) as isize
                                            - case.p[1] as isize
                                            == iw as isize;
                                    if hit {
                                        let av = a[(c * case.h + ih) * case.w + iw];
                                        let wgt = match case.op {
                                            "conv2d" => (weight[((o * cig + c % cig) * case.k[0]
                                                + kh)
                                                * case.k[1]
                                                + kw]
                                                * av)
                                                .abs(),
                                            "avg_pool2d" => {
                                                av.abs() / (case.k[0] * case.k[1]) as f32
                                            }
                                            _ => av.abs(),
                                        };
                                        window.push((
                                            (kh, kw),
                                            (c * case.h + ih) * case.w + iw,
                                            av,
                                            wgt,
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
                if case.op == "max_pool2d" && rule == MaxPoolEdges::Argmax {
                    // PyTorch scans the window row by row and keeps the first maximum.
                    window.sort_by_key(|t| t.0);
                    let mut best: Option<(usize, f32)> = None;
                    for &(_, src, av, _) in &window {
                        if best.is_none_or(|(_, b)| av > b) {
                            best = Some((src, av));
                        }
                    }
                    window.retain(|t| Some(t.1) == best.map(|b| b.0));
                }
                for (_, src, _, wgt) in window {
                    if wgt != 0.0 {
                        edges.insert((src as u32, dst, wgt.to_bits()));
                    }
                }
            }
        }
    }
    edges
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sparse_edges_match_naive(case in cases(), seed in any::<u32>(), argmax in any::<bool>()) {
        let net = network(&case);
        let mut rng = seed as u64 | 1;
        let mut next = move || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        // small integers make ties and exact zeros common
        let mut sample = |n: usize| -> Vec<f32> { (0..n).map(|_| (next() % 7) as f32 - 3.0).collect() };
        let a = sample(case.c * case.h * case.w);
        let mut weights = Weights::default();
        let mut wdata = Vec::new();
        if let Op::Conv2d(_) = net.layers[0].op {
            let shape = net.layers[0].op.weight_shape().unwrap();
            wdata = sample(shape.iter().product());
            let mut t = std::collections::BTreeMap::new();
            t.insert("l.weight".to_string(), Tensor { shape, data: wdata.clone() });
            weights = Weights::from_tensors(t, &net).unwrap();
        }
        let rule = if argmax { MaxPoolEdges::Argmax } else { MaxPoolEdges::All };
        let plan = GraphPlan::new(&net, &weights, GraphOptions { maxpool_edges: rule, ..Default::default() }).unwrap();
        let edges = op_edges(&plan, 0, &[&a]).unwrap();
        let got: BTreeSet<(u32, u32, u32)> = edges.iter().map(|e| (e.src, e.dst, e.weight.to_bits())).collect();
        prop_assert_eq!(got.len(), edges.len(), "duplicate edges");
        prop_assert_eq!(got, naive_edges(&case, &net, &wdata, &a, rule));
        prop_assert!(edges.len() <= plan.max_edges());
    }
}

#[test]
fn include_input_false_drops_the_first_ops_edges_and_renumbers() {
    let text = "format_version = 1\nname = \"m\"\ninput_shape = [3]\n[[layers]]\nname = \"a\"\nop = \"linear\"\nout_features = 2\nbias = false\n[[layers]]\nname = \"b\"\nop = \"linear\"\nout_features = 1\nbias = false\n";
    let net = Network::resolve(&ModelSpec::parse(text, Path::new("m.toml")).unwrap()).unwrap();
    let mut t = std::collections::BTreeMap::new();
    t.insert(
        "a.weight".into(),
        Tensor {
            shape: vec![2, 3],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        },
    );
    t.insert(
        "b.weight".into(),
        Tensor {
            shape: vec![1, 2],
            data: vec![0.5, -1.0],
        },
    );
    let weights = Weights::from_tensors(t, &net).unwrap();
    let with = GraphPlan::new(&net, &weights, GraphOptions::default()).unwrap();
    assert_eq!(with.n_units, 6);
    let inputs: [&[f32]; 2] = [&[1.0, 0.0, 2.0], &[3.0, 2.0]];
    let edges = network_edges(&with, &inputs).unwrap();
    // a: rows (1,2,3),(4,5,6) times a = (1,0,2): 4 nonzero edges; b: 2 edges
    assert_eq!(op_edges(&with, 0, &inputs).unwrap(), edges[0..4]);
    assert_eq!(op_edges(&with, 1, &inputs).unwrap(), edges[4..6]);
    assert_eq!(edges.len(), 6);
    assert_eq!(edges[5].weight, 2.0);
    assert_eq!((edges[5].src, edges[5].dst), (4, 5));
    let without = GraphPlan::new(
        &net,
        &weights,
        GraphOptions {
            include_input: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(without.n_units, 3);
    assert_eq!(without.vertex_layers[0].name, "a");
    let edges = network_edges(&without, &inputs).unwrap();
    assert!(op_edges(&without, 0, &inputs).unwrap().is_empty());
    assert_eq!(op_edges(&without, 1, &inputs).unwrap(), edges);
    assert_eq!(edges.len(), 2);
    assert_eq!((edges[1].src, edges[1].dst), (1, 2));
}

#[test]
fn non_finite_activation_names_the_layer() {
    let text = "format_version = 1\nname = \"m\"\ninput_shape = [1, 2, 2]\n[[layers]]\nname = \"pool\"\nop = \"max_pool2d\"\nkernel_size = 2\n";
    let net = Network::resolve(&ModelSpec::parse(text, Path::new("m.toml")).unwrap()).unwrap();
    let plan = GraphPlan::new(&net, &Weights::default(), GraphOptions::default()).unwrap();
    let err = op_edges(&plan, 0, &[&[1.0, f32::NAN, 0.0, 2.0]]).unwrap_err();
    assert!(err.to_string().contains("layer `pool`"), "{err}");
    assert!(err.to_string().contains("index 1"), "{err}");
}

/// A small net with every kind of graph op, dense layers last (where edges between connected
/// units are skipped unweighed; fc1 reads 108 inputs, more than one 64-wide chunk, and has 300
/// outputs, more than its column index keeps, so that later passes find some of its edges from
/// the index and weigh others row by row), and convs of stride 1 and 2 (whose passes skip runs
/// by their rows' largest input).
fn mixed_network() -> Network {
    let text = "format_version = 1\nname = \"mixed\"\ninput_shape = [2, 24, 24]\n\
        [[layers]]\nname = \"conv\"\nop = \"conv2d\"\nout_channels = 3\nkernel_size = 3\npadding = 1\nbias = false\n\
        [[layers]]\nname = \"down\"\nop = \"conv2d\"\nout_channels = 3\nkernel_size = 3\nstride = 2\npadding = 1\nbias = false\n\
        [[layers]]\nname = \"pool\"\nop = \"max_pool2d\"\nkernel_size = 2\n\
        [[layers]]\nname = \"avg\"\nop = \"avg_pool2d\"\nkernel_size = 1\n\
        [[layers]]\nop = \"flatten\"\n\
        [[layers]]\nname = \"fc1\"\nop = \"linear\"\nout_features = 300\nbias = false\n\
        [[layers]]\nname = \"fc2\"\nop = \"linear\"\nout_features = 4\nbias = false\n";
    Network::resolve(&ModelSpec::parse(text, Path::new("mixed.toml")).unwrap()).unwrap()
}

/// The diagrams of the mixed net's `network` graph and of each layer's graph, from a stored edge
/// list and from `compute_from` at the given splits (`None`: placed by actopo): pairs of
/// (stored, banded). Weights and inputs are small integers times `scale`, so ties and zeros
/// (dropped edges) are common. With `zero`, zero-persistence pairs are kept, so that which of
/// two tied edges merges a new vertex shows in the killing edges.
fn stored_and_banded(
    seed: u32,
    splits: Option<Vec<f32>>,
    (h1, zero): (bool, bool),
    argmax: bool,
    scale: f32,
) -> Vec<(Diagram, Diagram)> {
    let net = mixed_network();
    let mut rng = seed as u64 | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut sample = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| ((next() % 7) as f32 - 3.0) * scale)
            .collect()
    };
    let mut tensors = std::collections::BTreeMap::new();
    for layer in &net.layers {
        if let Some(shape) = layer.op.weight_shape() {
            let data = sample(shape.iter().product());
            tensors.insert(format!("{}.weight", layer.name), Tensor { shape, data });
        }
    }
    let weights = Weights::from_tensors(tensors, &net).unwrap();
    let rule = if argmax {
        MaxPoolEdges::Argmax
    } else {
        MaxPoolEdges::All
    };
    let plan = GraphPlan::new(
        &net,
        &weights,
        GraphOptions {
            maxpool_edges: rule,
            ..Default::default()
        },
    )
    .unwrap();
    let inputs: Vec<Vec<f32>> = plan.ops.iter().map(|op| sample(op.input_len())).collect();
    let inputs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let opts = HomologyOptions {
        keep_zero_persistence: zero,
        h1_diagram: h1,
    };

    let mut p = Persistence::new();
    p.set_splits(splits);
    let mut both = Vec::new();
    let edges = network_edges(&plan, &inputs).unwrap();
    let mut stored = Diagram::default();
    Persistence::new().compute(&mut edges.clone(), plan.n_units, opts, &mut stored);
    let mut banded = Diagram::default();
    p.compute_from(
        &SampleGraph::network(&plan, &inputs).unwrap(),
        plan.n_units,
        opts,
        &mut banded,
    );
    both.push((stored, banded));
    // Each layer's graph alone too (the `layers` scope).
    for op in 0..plan.ops.len() {
        let mut edges = op_edges(&plan, op, &inputs).unwrap();
        let mut stored = Diagram::default();
        Persistence::new().compute(&mut edges, plan.n_units, opts, &mut stored);
        let mut banded = Diagram::default();
        p.compute_from(
            &SampleGraph::layer(&plan, &inputs, op).unwrap(),
            plan.n_units,
            opts,
            &mut banded,
        );
        both.push((stored, banded));
    }
    both
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn two_pass_network_persistence_equals_stored_edges(seed in any::<u32>(), split in 0u8..10, h1 in any::<bool>(), zero in any::<bool>(), argmax in any::<bool>()) {
        // 9: the splits actopo places itself; else one split, or two (split and split / 3)
        let splits = (split != 9).then(|| if split % 2 == 0 { vec![split as f32] } else { vec![split as f32, split as f32 / 3.0] });
        for (graph, (stored, banded)) in stored_and_banded(seed, splits, (h1, zero), argmax, 1.0).into_iter().enumerate() {
            prop_assert_eq!(banded, stored, "graph {} (0: network, then each layer)", graph);
        }
    }
}

#[test]
fn products_that_round_to_zero_are_no_edges_in_any_pass() {
    // Weights and inputs near 1e-23: products near 1e-46, where f32 rounds some to 0 (those are
    // no edges) and keeps others as subnormals. Runs skipped unweighed must count only the others.
    for seed in 1..40 {
        let split = [1e-45f32, 3e-45, 6e-45][seed as usize % 3];
        for (graph, (stored, banded)) in
            stored_and_banded(seed, Some(vec![split]), (false, false), false, 1e-23)
                .into_iter()
                .enumerate()
        {
            assert_eq!(banded, stored, "seed {seed}, graph {graph}");
        }
    }
}

#[test]
fn overflowing_edge_weight_is_an_error_but_a_large_bound_alone_is_not() {
    let text = "format_version = 1\nname = \"m\"\ninput_shape = [2]\n[[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 1\nbias = false\n";
    let net = Network::resolve(&ModelSpec::parse(text, Path::new("m.toml")).unwrap()).unwrap();
    let mut t = std::collections::BTreeMap::new();
    t.insert(
        "fc.weight".into(),
        Tensor {
            shape: vec![1, 2],
            data: vec![1e30, 1.0],
        },
    );
    let weights = Weights::from_tensors(t, &net).unwrap();
    let plan = GraphPlan::new(&net, &weights, GraphOptions::default()).unwrap();
    // max|w| * max|a| overflows, but 1e30 * 1 and 1 * 1e30 do not.
    assert_eq!(op_edges(&plan, 0, &[&[1.0, 1e30]]).unwrap().len(), 2);
    let err = op_edges(&plan, 0, &[&[1e10, 1.0]]).unwrap_err();
    assert!(err.to_string().contains("layer `fc`"), "{err}");
    assert!(err.to_string().contains("overflow"), "{err}");
}

#[test]
fn two_pass_dense_layer_with_many_components_equals_stored_edges() {
    use actopo::topology::{Diagram, HomologyOptions, Persistence};
    // Heavy diagonal weights pair input i with output i: after the heavy pass every output is
    // in its own component, more labels than the dense layer caches.
    let n = 48;
    let text = format!("format_version = 1\nname = \"d\"\ninput_shape = [{n}]\n[[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = {n}\nbias = false\n");
    let net = Network::resolve(&ModelSpec::parse(&text, Path::new("d.toml")).unwrap()).unwrap();
    let data: Vec<f32> = (0..n * n)
        .map(|k| {
            if k / n == k % n {
                10.0
            } else {
                1.0 + ((k * 7919) % 1009) as f32 / 1009.0
            }
        })
        .collect();
    let mut t = std::collections::BTreeMap::new();
    t.insert(
        "fc.weight".into(),
        Tensor {
            shape: vec![n, n],
            data,
        },
    );
    let weights = Weights::from_tensors(t, &net).unwrap();
    let plan = GraphPlan::new(&net, &weights, GraphOptions::default()).unwrap();
    let input = vec![1.0f32; n];
    let inputs: Vec<&[f32]> = vec![&input];
    let opts = HomologyOptions::default();
    let mut edges = network_edges(&plan, &inputs).unwrap();
    let mut stored = Diagram::default();
    Persistence::new().compute(&mut edges, plan.n_units, opts, &mut stored);
    let mut p = Persistence::new();
    p.set_splits(Some(vec![5.0]));
    let mut two_pass = Diagram::default();
    let graph = SampleGraph::network(&plan, &inputs).unwrap();
    p.compute_from(&graph, plan.n_units, opts, &mut two_pass);
    assert_eq!(two_pass, stored);
    assert_eq!(stored.n_edges as usize, n * n);
}

#[test]
fn conv_channels_in_different_components_keep_the_edges_between_them() {
    // Input 2x3x3, a 3x3 kernel: each output unit reads all 9 inputs of both channels. Heavy
    // weights (10) join channel c to output c, light ones (0.1) cross over. After the heavy band,
    // input and output channel 0 carry one label and channel 1 another: the later pass must skip
    // neither pair of different labels, or the graph falls apart into two components.
    let text = "format_version = 1\nname = \"two\"\ninput_shape = [2, 3, 3]\n\
        [[layers]]\nname = \"conv\"\nop = \"conv2d\"\nout_channels = 2\nkernel_size = 3\nbias = false\n";
    let net = Network::resolve(&ModelSpec::parse(text, Path::new("two.toml")).unwrap()).unwrap();
    let data = (0..36)
        .map(|i| if i / 18 == (i / 9) % 2 { 10.0 } else { 0.1 })
        .collect();
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert(
        "conv.weight".into(),
        Tensor {
            shape: vec![2, 2, 3, 3],
            data,
        },
    );
    let weights = Weights::from_tensors(tensors, &net).unwrap();
    let plan = GraphPlan::new(&net, &weights, GraphOptions::default()).unwrap();
    let x = vec![1.0f32; 18];
    let inputs: [&[f32]; 1] = [&x];
    let opts = HomologyOptions::default();
    let mut stored = Diagram::default();
    let mut edges = network_edges(&plan, &inputs).unwrap();
    Persistence::new().compute(&mut edges, plan.n_units, opts, &mut stored);
    assert_eq!(stored.h0_essential, vec![10.0]);
    let mut p = Persistence::new();
    p.set_splits(Some(vec![1.0]));
    let mut banded = Diagram::default();
    p.compute_from(
        &SampleGraph::network(&plan, &inputs).unwrap(),
        plan.n_units,
        opts,
        &mut banded,
    );
    assert_eq!(banded, stored);
}
