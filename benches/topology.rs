//! Criterion benchmarks of the topology core on the paper's CCFF net (conv 1->3 k5, conv 3->3 k3,
//! linear 1452->256, linear 256->10, ReLU, no bias): graph building, sorting + union-find, the
//! whole per-sample `Workspace::run` (two enumerations, no stored graph) and, for comparison, the
//! same diagram from a stored edge list.
//!
//! Weights are seeded Kaiming-uniform; inputs are seeded uniform [0, 1) images pushed through a
//! naive forward pass written here (the tool itself uses libtorch), so activations have ReLU zeros
//! as real ones do. `cargo bench --bench topology` prints the edge counts first.

use std::collections::BTreeMap;
use std::path::Path;

use actopo::output::{OutputLayout, SampleOutcome, SampleResult, ShardOutput};
use actopo::spec::{ModelSpec, Network, Op};
use actopo::topology::{
    sort_heaviest_first, Diagram, Edge, EdgeSink, EdgeSource, GraphOptions, GraphPlan,
    HomologyOptions, Persistence, SampleGraph, Scopes, Workspace,
};
use actopo::weights::{Tensor, Weights};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// The demo model's spec (its weights are not used: the benchmark makes its own).
const CCFF: &str = include_str!("../models/ccff.toml");

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn ccff() -> (Network, Weights) {
    let net = Network::resolve(&ModelSpec::parse(CCFF, Path::new("ccff.toml")).unwrap()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tensors = BTreeMap::new();
    for layer in &net.layers {
        if let Some(shape) = layer.op.weight_shape() {
            let fan_in: usize = shape[1..].iter().product();
            let bound = (6.0 / fan_in as f32).sqrt();
            let data = (0..shape.iter().product::<usize>())
                .map(|_| (rng.next() * 2.0 - 1.0) * bound)
                .collect();
            tensors.insert(format!("{}.weight", layer.name), Tensor { shape, data });
        }
    }
    let weights = Weights::from_tensors(tensors, &net).unwrap();
    (net, weights)
}

/// Naive forward pass (no bias, stride 1, no padding: what CCFF needs) returning each graph op's input.
fn forward(net: &Network, weights: &Weights, x: Vec<f32>) -> Vec<Vec<f32>> {
    let mut inputs = Vec::new();
    let mut a = x;
    for layer in &net.layers {
        match &layer.op {
            Op::Conv2d(c) => {
                inputs.push(a.clone());
                let w = &weights.layer(&layer.name).unwrap().weight.data;
                let (ci, h, wd) = (
                    layer.in_shape()[0],
                    layer.in_shape()[1],
                    layer.in_shape()[2],
                );
                let (co, oh, ow) = (layer.out_shape[0], layer.out_shape[1], layer.out_shape[2]);
                let (kh, kw) = (c.kernel[0], c.kernel[1]);
                let mut out = vec![0.0f32; co * oh * ow];
                for o in 0..co {
                    for y in 0..oh {
                        for x in 0..ow {
                            let mut s = 0.0;
                            for c in 0..ci {
                                for i in 0..kh {
                                    for j in 0..kw {
                                        s += w[((o * ci + c) * kh + i) * kw + j]
                                            * a[(c * h + y + i) * wd + x + j];
                                    }
                                }
                            }
                            out[(o * oh + y) * ow + x] = s;
                        }
                    }
                }
                a = out;
            }
            Op::Linear(l) => {
                inputs.push(a.clone());
                let w = &weights.layer(&layer.name).unwrap().weight.data;
                a = (0..l.out_features)
                    .map(|i| {
                        (0..l.in_features)
                            .map(|j| w[i * l.in_features + j] * a[j])
                            .sum()
                    })
                    .collect();
            }
            Op::Relu => a.iter_mut().for_each(|v| *v = v.max(0.0)),
            _ => {}
        }
    }
    inputs
}

fn as_slices(s: &[Vec<f32>]) -> Vec<&[f32]> {
    s.iter().map(|v| v.as_slice()).collect()
}

/// Appends every edge it is given (the stored-edge computation, for comparison).
struct Collect<'a>(&'a mut Vec<Edge>);

impl EdgeSink for Collect<'_> {
    fn extend(&mut self, edges: &[Edge]) {
        self.0.extend_from_slice(edges);
    }
}

/// Appends one sample's `network` graph to `out`.
fn network_edges(plan: &GraphPlan, inputs: &[Vec<f32>], out: &mut Vec<Edge>) {
    let inputs = as_slices(inputs);
    let graph = SampleGraph::network(plan, &inputs).unwrap();
    graph.for_each_edge(&mut Collect(out));
}

fn bench(c: &mut Criterion) {
    let (net, weights) = ccff();
    let mut rng = Rng(42);
    let mut samples: Vec<Vec<Vec<f32>>> = (0..8)
        .map(|_| forward(&net, &weights, (0..784).map(|_| rng.next()).collect()))
        .collect();
    // With ACTOPO_BENCH_TRAINED=1: the trained demo weights on real Fashion-MNIST test images
    // (graphs as the demo sees them: 270k-330k edges), instead of random weights and pixels.
    let (net, weights) = if std::env::var_os("ACTOPO_BENCH_TRAINED").is_some() {
        let model = actopo::model::Model::load(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/ccff.toml")),
            None,
        )
        .unwrap();
        let opts = actopo::data::ReadOptions {
            input_shape: vec![1, 28, 28],
            image_column: "image".into(),
            label_column: None,
            limit: 8,
        };
        let src = actopo::data::ShardSource {
            location: actopo::data::ShardLocation::Local(
                "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz".into(),
            ),
            name: "t10k".into(),
            stem: "t10k".into(),
            format: actopo::config::DataFormat::Idx,
        };
        let images = actopo::data::read_shard(&src, &opts).unwrap();
        samples = images
            .x
            .chunks(784)
            .map(|x| forward(&model.network, &model.weights, x.to_vec()))
            .collect();
        (model.network, model.weights)
    } else {
        (net, weights)
    };
    let plan = GraphPlan::new(&net, &weights, GraphOptions::default()).unwrap();

    let mut edges = Vec::new();
    let counts: Vec<usize> = samples
        .iter()
        .map(|s| {
            edges.clear();
            network_edges(&plan, s, &mut edges);
            edges.len()
        })
        .collect();
    let mean_edges = counts.iter().sum::<usize>() / counts.len();
    println!(
        "CCFF: at most {} edges per input; these inputs have {:?} edges (mean {mean_edges})",
        plan.max_edges(),
        counts
    );

    let mut group = c.benchmark_group("ccff");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("build_edges", |b| {
        b.iter(|| {
            edges.clear();
            i = (i + 1) % samples.len();
            network_edges(&plan, &samples[i], &mut edges);
            edges.len()
        })
    });
    // Sort and union-find on prebuilt edge lists.
    let built: Vec<Vec<_>> = samples
        .iter()
        .map(|s| {
            let mut e = Vec::new();
            network_edges(&plan, s, &mut e);
            e
        })
        .collect();
    let mut scratch = Vec::new();
    group.bench_function("radix_sort", |b| {
        b.iter_batched_ref(
            || built[0].clone(),
            |e| sort_heaviest_first(e, &mut scratch),
            BatchSize::LargeInput,
        )
    });
    let mut sorted = built[0].clone();
    sort_heaviest_first(&mut sorted, &mut scratch);
    let mut persistence = Persistence::new();
    let mut diagram = Diagram::default();
    group.bench_function("union_find", |b| {
        b.iter(|| {
            persistence.compute_sorted(
                &sorted,
                plan.n_units,
                HomologyOptions::default(),
                &mut diagram,
            );
            diagram.h0.len()
        })
    });
    // The whole network scope the straightforward way, for comparison with `sample_network`
    // (two enumerations, see `Persistence::compute_from`): store every edge, then compute.
    let mut stored = Vec::new();
    group.bench_function("sample_network_stored_edges", |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            stored.clear();
            network_edges(&plan, &samples[i], &mut stored);
            persistence.compute(
                &mut stored,
                plan.n_units,
                HomologyOptions::default(),
                &mut diagram,
            );
            diagram.h0.len()
        })
    });
    let mut workspace = Workspace::new();
    let mut out = Vec::new();
    for (name, scopes) in [
        ("sample_network", Scopes::default()),
        (
            "sample_network_and_layers",
            Scopes {
                network: true,
                layers: true,
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % samples.len();
                workspace
                    .run(
                        &plan,
                        &as_slices(&samples[i]),
                        scopes,
                        HomologyOptions::default(),
                        &mut out,
                    )
                    .unwrap();
                out.len()
            })
        });
    }
    group.finish();

    // Parquet writer: summary + diagrams for 256 samples of these diagrams.
    let mut results = Vec::new();
    for i in 0..256 {
        let mut out = Vec::new();
        workspace
            .run(
                &plan,
                &as_slices(&samples[i % samples.len()]),
                Scopes::default(),
                HomologyOptions::default(),
                &mut out,
            )
            .unwrap();
        results.push(out);
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = std::sync::Arc::new(OutputLayout {
        dir: dir.path().to_path_buf(),
        summary: true,
        diagrams: true,
        subgraph_top_k: None,
        variants: vec!["clean".into()],
        vertex_layers: plan.vertex_layers.clone(),
        metadata: vec![],
        run_identity: String::new(),
    });
    let points: usize = results
        .iter()
        .map(|r| r[0].diagram.h0.len() + r[0].diagram.h0_essential.len())
        .sum();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(256));
    group.bench_function(format!("256_samples_{points}_points"), |b| {
        b.iter(|| {
            let mut output = ShardOutput::create(layout.clone(), "bench", "bench", "").unwrap();
            for (i, scopes) in results.iter().enumerate() {
                output
                    .add(SampleOutcome::Done(SampleResult {
                        index: i,
                        variant: 0,
                        label: Some(1),
                        pred: 1,
                        confidence: 0.9,
                        attack: None,
                        scopes: scopes.clone(),
                    }))
                    .unwrap();
            }
            output.finish().unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
