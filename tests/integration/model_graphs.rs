//! Model graphs (spec format 2) against a brute-force oracle written from docs/graph.md, sharing
//! no code with `src/topology/graph/`: each value's unit is traced element by element (cat by
//! multi-index), each edge found by looping over every (input, output) pair, and batch norms are
//! folded into an explicit W'. Diagrams are checked against the boundary-matrix reduction of
//! `persistence_props`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use actopo::spec::{numel, Conv2d, Layer, LayerInput, ModelSpec, Network, Op};
use actopo::topology::{
    BatchNormFolding, Diagram, Edge, EdgeSink, EdgeSource, GraphBounds, GraphOptions, GraphPlan,
    HomologyOptions, Persistence, SampleGraph, Scopes, Workspace,
};
use actopo::weights::{Tensor, Weights};
use proptest::prelude::*;

use crate::persistence_props::brute_force;

/// Every edge a graph enumerates.
#[derive(Default)]
struct Collected(Vec<Edge>);

impl EdgeSink for Collected {
    fn extend(&mut self, edges: &[Edge]) {
        self.0.extend_from_slice(edges);
    }
}

fn collect(graph: SampleGraph) -> Vec<Edge> {
    let mut sink = Collected::default();
    graph.for_each_edge(&mut sink);
    sink.0
}

/// An edge as (src, dst, weight bits).
type Key = (u32, u32, u32);

fn resolve(text: &str) -> Network {
    Network::resolve(&ModelSpec::parse(text, Path::new("t.toml")).unwrap()).unwrap()
}

/// Row-major multi-index of flat index `f` in `shape`.
fn unravel(mut f: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = f % shape[d];
        f /= shape[d];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |f, (&i, &n)| f * n + i)
}

/// The oracle's unit numbering: per layer, the unit of each value of its output (None: no
/// vertex); the input's; the first unit of each graph op; the number of units.
struct Units {
    input: Vec<Option<u32>>,
    layers: Vec<Vec<Option<u32>>>,
    op_first: Vec<u32>,
    n_units: usize,
}

impl Units {
    fn of(net: &Network, include_input: bool) -> Units {
        let n_in = numel(&net.input_shape);
        let mut next = 0u32;
        let input: Vec<Option<u32>> = if include_input {
            next = n_in as u32;
            (0..n_in as u32).map(Some).collect()
        } else {
            vec![None; n_in]
        };
        let (mut layers, mut op_first) = (Vec::new(), Vec::new());
        for layer in &net.layers {
            let operands: Vec<&Vec<Option<u32>>> = (layer.inputs.iter())
                .map(|i| match i {
                    LayerInput::Input => &input,
                    LayerInput::Layer(j) => &layers[*j],
                })
                .collect();
            let out: Vec<Option<u32>> = if layer.op.is_graph_op() {
                op_first.push(next);
                let n = numel(&layer.out_shape) as u32;
                next += n;
                (next - n..next).map(Some).collect()
            } else if let Op::Cat { dim } = layer.op {
                let shape = &layer.out_shape;
                (0..numel(shape))
                    .map(|f| {
                        let mut idx = unravel(f, shape);
                        let mut k = 0;
                        while idx[dim] >= layer.in_shapes[k][dim] {
                            idx[dim] -= layer.in_shapes[k][dim];
                            k += 1;
                        }
                        operands[k][ravel(&idx, &layer.in_shapes[k])]
                    })
                    .collect()
            } else {
                operands[0].clone()
            };
            layers.push(out);
        }
        Units {
            input,
            layers,
            op_first,
            n_units: next as usize,
        }
    }

    fn operand(&self, input: LayerInput) -> &[Option<u32>] {
        match input {
            LayerInput::Input => &self.input,
            LayerInput::Layer(j) => &self.layers[j],
        }
    }
}

/// The weights on layer `j`'s edges: W, or W'[o, ...] = W[o, ...] * gamma[o] / sqrt(var[o] + eps)
/// (f32) when a batch norm reads only j's output and nothing else reads it.
fn oracle_weight(
    net: &Network,
    tensors: &BTreeMap<String, Tensor>,
    j: usize,
    fold: bool,
) -> Vec<f32> {
    let name = &net.layers[j].name;
    let mut w = tensors[&format!("{name}.weight")].data.clone();
    let readers: Vec<usize> = (0..net.layers.len())
        .filter(|&i| net.layers[i].inputs.contains(&LayerInput::Layer(j)))
        .collect();
    let bn = match readers[..] {
        [i] if fold && net.layers[i].inputs == [LayerInput::Layer(j)] => match &net.layers[i].op {
            Op::BatchNorm2d(b) | Op::BatchNorm1d(b) => Some((i, b.eps)),
            _ => None,
        },
        _ => None,
    };
    if let Some((i, eps)) = bn {
        let bn_name = &net.layers[i].name;
        let gamma = &tensors[&format!("{bn_name}.weight")].data;
        let var = &tensors[&format!("{bn_name}.running_var")].data;
        let per = w.len() / gamma.len();
        for (k, x) in w.iter_mut().enumerate() {
            let o = k / per;
            *x *= gamma[o] / (var[o] + eps as f32).sqrt();
        }
    }
    w
}

/// An edge before the rules that drop it: (source unit, output value index, weight).
type Candidate = (Option<u32>, usize, f32);

/// Graph op at layer `li`'s edges, from every (input value, output value) pair; `a` is its input
/// (operands one after the other). Edges from values that are no vertices, and of weight 0, are
/// left out.
fn oracle_edges(
    net: &Network,
    units: &Units,
    tensors: &BTreeMap<String, Tensor>,
    li: usize,
    fold: bool,
    a: &[f32],
) -> BTreeSet<Key> {
    let layer = &net.layers[li];
    let op_index = (net.layers[..li].iter())
        .filter(|l| l.op.is_graph_op())
        .count();
    let first = units.op_first[op_index];
    let src = units.operand(layer.inputs[0]);
    let candidates = match &layer.op {
        Op::Linear(l) => linear_candidates(
            l.in_features,
            l.out_features,
            &oracle_weight(net, tensors, li, fold),
            src,
            a,
        ),
        Op::Conv2d(c) => conv_candidates(layer, c, &oracle_weight(net, tensors, li, fold), src, a),
        Op::AdaptiveAvgPool2d { output_size } => adaptive_candidates(layer, *output_size, src, a),
        Op::Add => {
            let n = numel(layer.in_shape());
            let operands = layer.inputs.iter().map(|&input| units.operand(input));
            (operands.enumerate())
                .flat_map(|(k, operand)| (0..n).map(move |i| (operand[i], i, a[k * n + i].abs())))
                .collect()
        }
        other => panic!("the oracle has no rule for {}", other.kind()),
    };
    let mut edges = BTreeSet::new();
    for (s, d, weight) in candidates {
        if let Some(s) = s.filter(|_| weight != 0.0) {
            assert!(
                edges.insert((s, first + d as u32, weight.to_bits())),
                "duplicate edge"
            );
        }
    }
    edges
}

fn linear_candidates(
    n_in: usize,
    n_out: usize,
    w: &[f32],
    src: &[Option<u32>],
    a: &[f32],
) -> Vec<Candidate> {
    let pairs = (0..n_out).flat_map(|i| (0..n_in).map(move |j| (i, j)));
    pairs
        .map(|(i, j)| (src[j], i, (w[i * n_in + j] * a[j]).abs()))
        .collect()
}

/// Every (output cell, input cell of the output's group, kernel tap) whose tap reads that cell.
fn conv_candidates(
    layer: &Layer,
    c: &Conv2d,
    w: &[f32],
    src: &[Option<u32>],
    a: &[f32],
) -> Vec<Candidate> {
    let (ins, outs) = (layer.in_shape(), &layer.out_shape);
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let mut out = Vec::new();
    for d in 0..numel(outs) {
        let [o, y, x] = unravel(d, outs)[..] else {
            unreachable!()
        };
        for s in 0..numel(ins) {
            let [ch, iy, ix] = unravel(s, ins)[..] else {
                unreachable!()
            };
            if ch / cig != o / cog {
                continue; // another group
            }
            for ty in 0..c.kernel[0] {
                for tx in 0..c.kernel[1] {
                    let row =
                        (y * c.stride[0] + ty * c.dilation[0]) as isize - c.padding[0] as isize;
                    let col =
                        (x * c.stride[1] + tx * c.dilation[1]) as isize - c.padding[1] as isize;
                    if row == iy as isize && col == ix as isize {
                        let wv = w[((o * cig + ch % cig) * c.kernel[0] + ty) * c.kernel[1] + tx];
                        out.push((src[s], d, (wv * a[s]).abs()));
                    }
                }
            }
        }
    }
    out
}

/// Every cell of every output cell's window, PyTorch's window of output i of n over size being
/// [floor(i size / n), ceil((i + 1) size / n)) (computed here in f64).
fn adaptive_candidates(
    layer: &Layer,
    size: [usize; 2],
    src: &[Option<u32>],
    a: &[f32],
) -> Vec<Candidate> {
    let (ins, outs) = (layer.in_shape(), &layer.out_shape);
    let window = |i: usize, len: usize, n: usize| {
        let lo = (i as f64 * len as f64 / n as f64).floor() as usize;
        let hi = ((i + 1) as f64 * len as f64 / n as f64).ceil() as usize;
        lo..hi
    };
    let mut out = Vec::new();
    for d in 0..numel(outs) {
        let [ch, y, x] = unravel(d, outs)[..] else {
            unreachable!()
        };
        let (rows, cols) = (window(y, ins[1], size[0]), window(x, ins[2], size[1]));
        let area = (rows.len() * cols.len()) as f32;
        for iy in rows.clone() {
            for ix in cols.clone() {
                let s = ravel(&[ch, iy, ix], ins);
                out.push((src[s], d, a[s].abs() / area));
            }
        }
    }
    out
}

/// The sizes of one random residual model (see `residual_spec`).
#[derive(Debug, Clone)]
struct Residual {
    groups: usize,
    per_group_in: usize,
    per_group_out: usize,
    h: usize,
    w: usize,
    k: usize,
    dilation: usize,
    cat_dim: usize,
    k2: usize,
    s2: usize,
    p2: usize,
    pool: [usize; 2],
    features: usize,
    eps: f64,
}

fn residuals() -> impl Strategy<Value = Residual> {
    (
        (1usize..3, 1usize..3, 1usize..3, 2usize..5, 2usize..5),
        (prop_oneof![Just(1usize), Just(3)], 1usize..3, 1usize..4),
        (
            1usize..4,
            1usize..3,
            0usize..2,
            [1usize..8, 1usize..8],
            1usize..4,
        ),
        prop_oneof![Just(1e-5f64), Just(0.5)],
    )
        .prop_map(
            |(
                (groups, gi, go, h, w),
                (k, dilation, cat_dim),
                (k2, s2, p2, pool, features),
                eps,
            )| Residual {
                groups,
                per_group_in: gi,
                per_group_out: go,
                h,
                w,
                k,
                dilation,
                cat_dim,
                k2,
                s2,
                p2,
                pool,
                features,
                eps,
            },
        )
        .prop_filter("c2's kernel fits", |r| {
            r.h + 2 * r.p2 >= r.k2 && r.w + 2 * r.p2 >= r.k2
        })
}

/// input -> c1 (grouped conv, 'same' padding) -> bn1 -> r1; sc (1x1 conv of the input);
/// add = r1 + sc; cat = add with the input (along channels) or with r1 (along H or W);
/// c2 (conv of the cat along channels, else of add) -> ap (adaptive pool) -> fc -> bnf (folds
/// into fc); out (linear) reads the cat of bnf and the flattened cat.
fn residual_spec(r: &Residual) -> String {
    let (c, o) = (r.groups * r.per_group_in, r.groups * r.per_group_out);
    let pad = r.dilation * (r.k - 1) / 2;
    let (cat_with, c2_reads) = if r.cat_dim == 1 {
        ("input", "cat")
    } else {
        ("r1", "add")
    };
    format!(
        r#"format_version = 2
name = "residual"
input_shape = [{c}, {h}, {w}]
[[layers]]
name = "c1"
op = "conv2d"
out_channels = {o}
kernel_size = {k}
dilation = {d}
padding = {pad}
groups = {g}
bias = false
[[layers]]
name = "bn1"
op = "batch_norm2d"
eps = {eps}
[[layers]]
name = "r1"
op = "relu"
[[layers]]
name = "sc"
op = "conv2d"
inputs = ["input"]
out_channels = {o}
kernel_size = 1
bias = false
[[layers]]
name = "add"
op = "add"
inputs = ["r1", "sc"]
[[layers]]
name = "cat"
op = "cat"
inputs = ["add", "{cat_with}"]
dim = {dim}
[[layers]]
name = "c2"
op = "conv2d"
inputs = ["{c2_reads}"]
out_channels = 2
kernel_size = {k2}
stride = {s2}
padding = {p2}
bias = false
[[layers]]
name = "ap"
op = "adaptive_avg_pool2d"
output_size = [{ph}, {pw}]
[[layers]]
name = "fa"
op = "flatten"
[[layers]]
name = "fc"
op = "linear"
out_features = {f}
bias = false
[[layers]]
name = "bnf"
op = "batch_norm1d"
eps = {eps}
[[layers]]
name = "fcat"
op = "flatten"
inputs = ["cat"]
[[layers]]
name = "both"
op = "cat"
inputs = ["bnf", "fcat"]
[[layers]]
name = "out"
op = "linear"
out_features = 3
bias = false
"#,
        h = r.h,
        w = r.w,
        k = r.k,
        d = r.dilation,
        g = r.groups,
        eps = r.eps,
        dim = r.cat_dim,
        k2 = r.k2,
        s2 = r.s2,
        p2 = r.p2,
        ph = r.pool[0],
        pw = r.pool[1],
        f = r.features,
    )
}

/// Random tensors for every parameter of `net` from `draw` (batch-norm variances positive).
fn random_tensors(net: &Network, draw: &mut impl FnMut() -> f32) -> BTreeMap<String, Tensor> {
    let mut tensors = BTreeMap::new();
    for layer in &net.layers {
        for (param, shape) in layer.op.params() {
            let data: Vec<f32> = (0..numel(&shape))
                .map(|_| match param.suffix() {
                    "running_var" => draw().abs() * 0.75 + 0.25,
                    _ => draw(),
                })
                .collect();
            tensors.insert(
                format!("{}.{}", layer.name, param.suffix()),
                Tensor { shape, data },
            );
        }
    }
    tensors
}

/// Small integers in [-3, 3] (zeros and ties are common), from a seeded xorshift.
fn small_ints(seed: u32) -> impl FnMut() -> f32 {
    let mut state = seed as u64 | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 7) as f32 - 3.0
    }
}

fn options(include_input: bool, fold: bool) -> GraphOptions {
    GraphOptions {
        include_input,
        threshold: Default::default(),
        batch_norm: if fold {
            BatchNormFolding::Fold
        } else {
            BatchNormFolding::Values
        },
        ..GraphOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Grouped convs, folded batch norms, add, cat feeding a conv and a linear, and adaptive
    /// pooling to sizes that need not divide: every op's edges equal the oracle's, within the
    /// op's bound; the network's H0 diagram equals the matrix reduction of the oracle's edges.
    #[test]
    fn model_graph_edges_and_diagrams_match_the_oracle(
        r in residuals(), seed in any::<u32>(), include_input in any::<bool>(), fold in any::<bool>(),
        split in 0u8..10,
    ) {
        let net = resolve(&residual_spec(&r));
        let mut draw = small_ints(seed);
        let tensors = random_tensors(&net, &mut draw);
        let weights = Weights::from_tensors(tensors.clone(), &net).unwrap();
        let plan = GraphPlan::new(&net, &weights, options(include_input, fold)).unwrap();
        let units = Units::of(&net, include_input);
        prop_assert_eq!(plan.n_units, units.n_units);
        let captures: Vec<Vec<f32>> = plan.ops.iter().map(|op| (0..op.input_len()).map(|_| draw()).collect()).collect();
        let inputs: Vec<&[f32]> = captures.iter().map(|c| c.as_slice()).collect();
        let mut all = Vec::new();
        for (i, op) in plan.ops.iter().enumerate() {
            // The capture of a graph op: its operands' values one after the other.
            let layer = &net.layers[op.layer_index];
            prop_assert_eq!(op.input_len(), layer.in_shapes.iter().map(|s| numel(s)).sum::<usize>());
            let edges = collect(SampleGraph::layer(&plan, &inputs, i).unwrap());
            let got: BTreeSet<Key> = edges.iter().map(|e| (e.src, e.dst, e.weight.to_bits())).collect();
            prop_assert_eq!(got.len(), edges.len(), "duplicate edges in {}", op.name);
            let want = oracle_edges(&net, &units, &tensors, op.layer_index, fold, inputs[i]);
            prop_assert!(got == want, "layer {}: {} edges, oracle {}", op.name, got.len(), want.len());
            let bound = GraphBounds::new(&net, options(include_input, fold)).unwrap().op_max_edges[i];
            prop_assert!(edges.len() <= bound);
            all.extend(edges);
        }
        let opts = HomologyOptions { keep_zero_persistence: true, h1_diagram: true };
        let mut d = Diagram::default();
        let mut p = Persistence::new();
        // Split weights make the kernels skip light edges and edges inside components (9: the
        // splits actopo places itself).
        p.set_splits((split != 9).then(|| vec![split as f32 / 2.0, split as f32 / 6.0]));
        p.compute_from(&SampleGraph::network(&plan, &inputs).unwrap(), plan.n_units, opts, &mut d);
        let (h0, essential, h1) = brute_force(&all, plan.n_units);
        let mut got: Vec<(f32, f32)> = d.h0.iter().map(|p| (p.birth, p.death)).collect();
        got.sort_by(|a, b| b.partial_cmp(a).unwrap());
        prop_assert_eq!(got, h0);
        prop_assert_eq!(&d.h0_essential, &essential);
        prop_assert_eq!(d.h1_count as usize, h1.len());
    }
}

const BLOCK: &str = r#"
format_version = 2
name = "block"
input_shape = [4, 6, 6]
[[layers]]
name = "conv1"
op = "conv2d"
out_channels = 8
kernel_size = 3
padding = 1
groups = 4
bias = false
[[layers]]
name = "bn1"
op = "batch_norm2d"
[[layers]]
name = "relu1"
op = "relu"
[[layers]]
name = "down"
op = "conv2d"
inputs = ["input"]
out_channels = 8
kernel_size = 1
bias = false
[[layers]]
name = "add"
op = "add"
inputs = ["relu1", "down"]
[[layers]]
name = "both"
op = "cat"
inputs = ["add", "relu1"]
dim = 1
[[layers]]
name = "pool"
op = "adaptive_avg_pool2d"
output_size = [4, 3]
[[layers]]
name = "flat"
op = "flatten"
[[layers]]
name = "fc"
op = "linear"
out_features = 5
"#;

/// A residual block: vertex layers in layers order (the input first), one per graph op, `add`
/// included; with every weight and value nonzero each op has exactly its bound of edges.
#[test]
fn a_residual_block_resolves_to_its_vertex_layers_and_edge_counts() {
    let net = resolve(BLOCK);
    let ones = |shape: Vec<usize>| Tensor {
        data: vec![1.0; numel(&shape)],
        shape,
    };
    let tensors: BTreeMap<String, Tensor> = (net.layers.iter())
        .flat_map(|l| {
            l.op.params()
                .into_iter()
                .map(move |(p, s)| (format!("{}.{}", l.name, p.suffix()), ones(s)))
        })
        .collect();
    let weights = Weights::from_tensors(tensors, &net).unwrap();
    let plan = GraphPlan::new(&net, &weights, GraphOptions::default()).unwrap();
    let layers: Vec<(&str, u32, u32)> = plan
        .vertex_layers
        .iter()
        .map(|l| (l.name.as_str(), l.offset, l.len))
        .collect();
    assert_eq!(
        layers,
        [
            ("input", 0, 144),
            ("conv1", 144, 288),
            ("down", 432, 288),
            ("add", 720, 288),
            ("pool", 1008, 192),
            ("fc", 1200, 5)
        ]
    );
    let inputs: Vec<Vec<f32>> = plan
        .ops
        .iter()
        .map(|op| vec![1.0; op.input_len()])
        .collect();
    let inputs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let counts: Vec<usize> = (0..plan.ops.len())
        .map(|i| collect(SampleGraph::layer(&plan, &inputs, i).unwrap()).len())
        .collect();
    // conv1: 4 input channels x 2 outputs of their group x 16 x 16 row/column taps; down: 4 x 8 x
    // 36; add: 2 x 288; pool: 16 channels x (2 + 2 + 2 + 2 rows) x (2 + 2 + 2 columns); fc: 192 x 5.
    assert_eq!(counts, [2048, 1152, 576, 768, 960]);
    assert_eq!(
        GraphBounds::new(&net, GraphOptions::default())
            .unwrap()
            .op_max_edges,
        counts
    );
    // The skip connection: input unit u -> down's unit, and down's unit i -> add's unit i.
    let add = collect(SampleGraph::layer(&plan, &inputs, 2).unwrap());
    assert!(add.iter().any(|e| (e.src, e.dst) == (432 + 7, 720 + 7)));
    assert!(add.iter().any(|e| (e.src, e.dst) == (144 + 7, 720 + 7)));
    // The layers scope: one graph per graph op, named by the layer.
    let mut out = Vec::new();
    let scopes = Scopes {
        network: true,
        layers: true,
    };
    Workspace::new()
        .run(&plan, &inputs, scopes, HomologyOptions::default(), &mut out)
        .unwrap();
    let names: Vec<&str> = out.iter().map(|s| s.scope.as_str()).collect();
    assert_eq!(names, ["network", "conv1", "down", "add", "pool", "fc"]);
}

/// A conv cannot read a cat along height: its channels would hold units of two vertex layers.
#[test]
fn a_conv_reading_a_cat_along_height_is_refused_by_name() {
    let text = BLOCK.replace("dim = 1", "dim = 2").replace(
        "name = \"pool\"\nop = \"adaptive_avg_pool2d\"\noutput_size = [4, 3]",
        "name = \"pool\"\nop = \"conv2d\"\nout_channels = 2\nkernel_size = 1\nbias = false",
    );
    let net = resolve(&text);
    let err = GraphBounds::new(&net, GraphOptions::default())
        .unwrap_err()
        .to_string();
    for want in [
        "layer `pool` (conv2d)",
        "channel 0",
        "`add` and `conv1`",
        "cat dim = 1",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

/// `graph.batch_norm`: the default is left out of the manifest (the run identity of earlier runs
/// stays the same) and out of the Parquet metadata of a model with no batch norm; a run that
/// sets "values" records it in both; any other value is refused by key.
#[test]
fn graph_batch_norm_is_recorded_only_where_it_is_a_choice() {
    use crate::support::{demo_args, read_parquet, run_actopo, stderr};
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, rule: &str| {
        let out = dir.path().join(name);
        let set = format!("graph.batch_norm=\"{rule}\"");
        let sets: &[&str] = if rule.is_empty() { &[] } else { &[&set] };
        (run_actopo(&demo_args("run", &out, sets)), out)
    };
    let (o, default) = run("default", "");
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, values) = run("values", "values");
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = |out: &Path| std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(!manifest(&default).contains("batch_norm"));
    assert!(manifest(&values).contains("\"batch_norm\": \"values\""));
    let stem = "summary/t10k-images-idx3-ubyte.parquet";
    let (_, meta) = read_parquet(&default.join(stem));
    assert_eq!(meta.get("actopo.batch_norm"), None);
    let (_, meta) = read_parquet(&values.join(stem));
    assert_eq!(
        meta.get("actopo.batch_norm").map(String::as_str),
        Some("values")
    );
    let (o, _) = run("bad", "none");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`graph.batch_norm`: `none` is not a batch-norm rule"),
        "{}",
        stderr(&o)
    );
}

/// Writes `tensors` (name, shape, values) as a safetensors file.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = (tensors.iter())
        .map(|(_, _, data)| data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView)> = (tensors.iter().zip(&bytes))
        .map(|((name, shape, _), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

/// `actopo diagrams` on a residual block (no forward pass needed): one scope per graph op, `add`
/// included, whose diagrams equal the library's on the same captures (add's capture: its two
/// operands one after the other), with and without folding.
#[test]
fn diagrams_command_computes_a_model_graph_from_given_captures() {
    let dir = tempfile::tempdir().unwrap();
    let net = resolve(BLOCK);
    let mut draw = small_ints(11);
    let tensors = random_tensors(&net, &mut draw);
    let as_file = |t: &BTreeMap<String, Tensor>| -> Vec<(String, Vec<usize>, Vec<f32>)> {
        t.iter()
            .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.clone()))
            .collect()
    };
    write_safetensors(&dir.path().join("block.safetensors"), &as_file(&tensors));
    std::fs::write(dir.path().join("block.toml"), BLOCK).unwrap();
    let weights = Weights::from_tensors(tensors, &net).unwrap();
    let n = 2;
    let mut captures = Vec::new();
    for layer in net.layers.iter().filter(|l| l.op.is_graph_op()) {
        let len: usize = layer.in_shapes.iter().map(|s| numel(s)).sum();
        let mut shape = vec![n, layer.in_shapes.len()];
        shape.extend(layer.in_shape());
        let data: Vec<f32> = (0..n * len).map(|_| draw()).collect();
        captures.push((layer.name.clone(), shape, data));
    }
    write_safetensors(&dir.path().join("acts.safetensors"), &captures);
    for fold in [true, false] {
        let rule = if fold { "fold" } else { "values" };
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_actopo"))
            .args([
                "diagrams",
                "--spec",
                "block.toml",
                "--weights",
                "block.safetensors",
            ])
            .args([
                "--activations",
                "acts.safetensors",
                "--out",
                "d.json",
                "--scopes",
                "network,layers",
            ])
            .args(["--batch-norm", rule])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("d.json")).unwrap()).unwrap();
        let plan = GraphPlan::new(&net, &weights, options(true, fold)).unwrap();
        for i in 0..n {
            let inputs: Vec<&[f32]> = (plan.ops.iter().zip(&captures))
                .map(|(op, (_, _, data))| &data[i * op.input_len()..(i + 1) * op.input_len()])
                .collect();
            let mut out = Vec::new();
            let scopes = Scopes {
                network: true,
                layers: true,
            };
            Workspace::new()
                .run(&plan, &inputs, scopes, HomologyOptions::default(), &mut out)
                .unwrap();
            let got = doc["samples"][i]["scopes"].as_array().unwrap();
            let names: Vec<&str> = got.iter().map(|s| s["scope"].as_str().unwrap()).collect();
            assert_eq!(names, ["network", "conv1", "down", "add", "pool", "fc"]);
            for (scope, want) in got.iter().zip(&out) {
                let h0: Vec<(f32, f32)> =
                    want.diagram.h0.iter().map(|p| (p.birth, p.death)).collect();
                let json_h0: Vec<(f32, f32)> = (scope["h0"].as_array().unwrap().iter())
                    .map(|p| (p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32))
                    .collect();
                assert_eq!(json_h0, h0, "{rule}, sample {i}, scope {}", want.scope);
            }
        }
    }
}
