//! The forward pass of each op against values computed another way (plain loops over the
//! formulas in f64), and the layout of the captures of multi-operand graphs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::TchModel;
use crate::config::Device;
use crate::model::Model;
use crate::spec::{ModelSpec, Network};
use crate::weights::{Tensor, Weights};

/// Deterministic values in [-range, range).
fn values(n: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * range
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64, range: f32) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: values(shape.iter().product(), seed, range),
    }
}

/// A model from a spec's text and its tensors.
fn model(spec: &str, tensors: Vec<(&str, Tensor)>) -> Model {
    let spec = ModelSpec::parse(spec, Path::new("t.toml")).unwrap();
    let network = Network::resolve(&spec).unwrap();
    let tensors: BTreeMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let weights = Weights::from_tensors(tensors, &network).unwrap();
    Model {
        spec,
        network,
        weights,
        weights_path: PathBuf::from("t.safetensors"),
        weights_sha256: String::new(),
    }
}

/// The model's outputs on `x` (n samples), without normalisation.
fn outputs(m: &Model, x: &[f32], n: usize) -> Vec<f32> {
    let tch = TchModel::new(m, Device::Cpu, &[0.0], &[1.0]).unwrap();
    tch.outputs(x, n).unwrap()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

fn spec(input: &str, layers: &str) -> String {
    format!("format_version = 2\nname = \"t\"\ninput_shape = {input}\n{layers}")
}

#[test]
fn batch_norm_uses_the_running_statistics_and_eps() {
    let (c, hw, n) = (3, 4, 2);
    let gamma = tensor(&[c], 1, 2.0);
    let beta = tensor(&[c], 2, 1.0);
    let mean = tensor(&[c], 3, 1.0);
    let mut var = tensor(&[c], 4, 1.0);
    var.data.iter_mut().for_each(|v| *v = v.abs() + 0.1);
    let layers = "[[layers]]\nname = \"bn\"\nop = \"batch_norm2d\"\neps = 0.01\n";
    fn bn<'a>(t: &Tensor, name: &'a str) -> (&'a str, Tensor) {
        (name, t.clone())
    }
    let m = model(
        &spec("[3, 2, 2]", layers),
        vec![
            bn(&gamma, "bn.weight"),
            bn(&beta, "bn.bias"),
            bn(&mean, "bn.running_mean"),
            bn(&var, "bn.running_var"),
        ],
    );
    let x = values(n * c * hw, 5, 3.0);
    let want: Vec<f64> = (0..x.len())
        .map(|i| {
            let ch = (i / hw) % c;
            let norm = (x[i] as f64 - mean.data[ch] as f64) / (var.data[ch] as f64 + 0.01).sqrt();
            norm * gamma.data[ch] as f64 + beta.data[ch] as f64
        })
        .collect();
    assert_close(&outputs(&m, &x, n), &want, 1e-5, "batch_norm2d");

    // batch_norm1d: one statistic per feature of a flat input.
    let layers = "[[layers]]\nname = \"bn\"\nop = \"batch_norm1d\"\n";
    let m = model(
        &spec("[3]", layers),
        vec![
            bn(&gamma, "bn.weight"),
            bn(&beta, "bn.bias"),
            bn(&mean, "bn.running_mean"),
            bn(&var, "bn.running_var"),
        ],
    );
    let x = values(2 * c, 6, 3.0);
    let want: Vec<f64> = (0..x.len())
        .map(|i| {
            let f = i % c;
            (x[i] as f64 - mean.data[f] as f64) / (var.data[f] as f64 + 1e-5).sqrt()
                * gamma.data[f] as f64
                + beta.data[f] as f64
        })
        .collect();
    assert_close(&outputs(&m, &x, 2), &want, 1e-5, "batch_norm1d");
}

/// A conv by plain loops: output channel o of group g reads input channels of group g only.
struct ConvGeometry {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
}

fn naive_conv(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
    let oh = (g.h + 2 * g.pad - g.k) / g.stride + 1;
    let ow = (g.w + 2 * g.pad - g.k) / g.stride + 1;
    let (cg, og) = (g.c / g.groups, g.o / g.groups);
    let mut out = vec![0f64; g.o * oh * ow];
    for o in 0..g.o {
        let group = o / og;
        for (i, j) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))) {
            let mut acc = bias[o] as f64;
            for ci in 0..cg {
                let c = group * cg + ci;
                for (ki, kj) in (0..g.k).flat_map(|a| (0..g.k).map(move |b| (a, b))) {
                    let (y, xx) = (i * g.stride + ki, j * g.stride + kj);
                    if y < g.pad || xx < g.pad || y - g.pad >= g.h || xx - g.pad >= g.w {
                        continue;
                    }
                    let a = x[(c * g.h + y - g.pad) * g.w + xx - g.pad] as f64;
                    acc += weight[((o * cg + ci) * g.k + ki) * g.k + kj] as f64 * a;
                }
            }
            out[(o * oh + i) * ow + j] = acc;
        }
    }
    out
}

#[test]
fn grouped_and_depthwise_convs_read_only_their_groups_channels() {
    for (groups, o) in [(2, 6), (4, 4), (1, 3)] {
        let g = ConvGeometry {
            c: 4,
            h: 5,
            w: 6,
            o,
            k: 3,
            stride: 2,
            pad: 1,
            groups,
        };
        let layers = format!(
            "[[layers]]\nname = \"c\"\nop = \"conv2d\"\nout_channels = {o}\nkernel_size = 3\nstride = 2\npadding = 1\ngroups = {groups}\n"
        );
        let weight = tensor(&[o, 4 / groups, 3, 3], 7, 1.0);
        let bias = tensor(&[o], 8, 1.0);
        let m = model(
            &spec("[4, 5, 6]", &layers),
            vec![("c.weight", weight.clone()), ("c.bias", bias.clone())],
        );
        let x = values(2 * 4 * 5 * 6, 9, 1.0);
        let got = outputs(&m, &x, 2);
        let per = got.len() / 2;
        for s in 0..2 {
            let want = naive_conv(&g, &x[s * 120..(s + 1) * 120], &weight.data, &bias.data);
            let what = format!("conv groups={groups} sample {s}");
            assert_close(&got[s * per..(s + 1) * per], &want, 1e-5, &what);
        }
    }
}

#[test]
fn adaptive_pooling_averages_pytorchs_overlapping_windows() {
    // 5 x 7 -> 3 x 4: rows [0,2) [1,4) [3,5); columns [0,2) [1,4) [3,6) [5,7).
    let layers = "[[layers]]\nop = \"adaptive_avg_pool2d\"\noutput_size = [3, 4]\n";
    let m = model(&spec("[2, 5, 7]", layers), vec![]);
    let x = values(2 * 5 * 7, 10, 2.0);
    let window = |i: usize, n: usize, out: usize| (i * n / out, ((i + 1) * n).div_ceil(out));
    assert_eq!(window(1, 5, 3), (1, 4));
    let mut want = Vec::new();
    for c in 0..2 {
        for i in 0..3 {
            for j in 0..4 {
                let (r0, r1) = window(i, 5, 3);
                let (c0, c1) = window(j, 7, 4);
                let cells = (r0..r1).flat_map(|r| (c0..c1).map(move |q| (r, q)));
                let sum: f64 = cells.map(|(r, q)| x[(c * 5 + r) * 7 + q] as f64).sum();
                want.push(sum / ((r1 - r0) * (c1 - c0)) as f64);
            }
        }
    }
    assert_close(&outputs(&m, &x, 1), &want, 1e-6, "adaptive_avg_pool2d");
}

/// The error function by its Taylor series (|x| <= 3: about 13 correct digits in f64).
fn erf(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..80 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// An activation's value at x, in f64.
type Formula = Box<dyn Fn(f64) -> f64>;

#[test]
fn activations_follow_pytorchs_formulas() {
    let x: Vec<f32> = values(64, 11, 3.0)
        .into_iter()
        .chain([0.0, -3.0, 3.0, 6.5, -1.0, 2.0])
        .collect();
    let n = x.len();
    let relu6 = |v: f64| v.clamp(0.0, 6.0);
    let softplus = |v: f64, beta: f64, threshold: f64| {
        if v * beta > threshold {
            v
        } else {
            (1.0 + (v * beta).exp()).ln() / beta
        }
    };
    let elu = |v: f64, a: f64| if v > 0.0 { v } else { a * (v.exp() - 1.0) };
    let tanh_gelu = |v: f64| {
        0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
    };
    let cases: Vec<(&str, Formula)> = vec![
        ("op = \"relu6\"", Box::new(relu6)),
        (
            "op = \"hardtanh\"\nmin_val = -0.5\nmax_val = 2.0",
            Box::new(|v: f64| v.clamp(-0.5, 2.0)),
        ),
        (
            "op = \"gelu\"",
            Box::new(|v: f64| 0.5 * v * (1.0 + erf(v / 2f64.sqrt()))),
        ),
        ("op = \"gelu\"\napproximate = \"tanh\"", Box::new(tanh_gelu)),
        ("op = \"silu\"", Box::new(|v: f64| v / (1.0 + (-v).exp()))),
        ("op = \"elu\"", Box::new(move |v| elu(v, 1.0))),
        ("op = \"elu\"\nalpha = 0.5", Box::new(move |v| elu(v, 0.5))),
        (
            "op = \"softplus\"",
            Box::new(move |v| softplus(v, 1.0, 20.0)),
        ),
        (
            "op = \"softplus\"\nbeta = 2.0\nthreshold = 3.0",
            Box::new(move |v| softplus(v, 2.0, 3.0)),
        ),
        (
            "op = \"hardswish\"",
            Box::new(move |v: f64| v * relu6(v + 3.0) / 6.0),
        ),
        ("op = \"identity\"", Box::new(|v| v)),
    ];
    for (layer, f) in cases {
        let m = model(
            &spec(&format!("[{n}]"), &format!("[[layers]]\n{layer}\n")),
            vec![],
        );
        let want: Vec<f64> = x.iter().map(|&v| f(v as f64)).collect();
        assert_close(&outputs(&m, &x, 1), &want, 2e-6, layer);
    }
}

/// A residual block and a cat: a (relu) and b (sigmoid) of the input, sum = a + b,
/// both = cat(sum, a) along channels, then a linear layer on the flat result.
const ADD_CAT: &str = r#"
format_version = 2
name = "add_cat"
input_shape = [2, 2, 2]
[[layers]]
name = "a"
op = "relu"
[[layers]]
name = "b"
op = "sigmoid"
inputs = ["input"]
[[layers]]
name = "sum"
op = "add"
inputs = ["a", "b"]
[[layers]]
name = "both"
op = "cat"
inputs = ["sum", "a"]
dim = 1
[[layers]]
name = "flat"
op = "flatten"
[[layers]]
name = "fc"
op = "linear"
out_features = 3
"#;

#[test]
fn add_captures_its_operands_one_after_the_other_and_cat_stacks_channels() {
    let fc_w = tensor(&[3, 16], 12, 1.0);
    let fc_b = tensor(&[3], 13, 1.0);
    let m = model(
        ADD_CAT,
        vec![("fc.weight", fc_w.clone()), ("fc.bias", fc_b.clone())],
    );
    let n = 3;
    let x = values(n * 8, 14, 2.0);
    let tch = TchModel::new(&m, Device::Cpu, &[0.0], &[1.0]).unwrap();
    let out = tch.forward(&x, n).unwrap();
    assert_eq!(out.capture_lens, [16, 16]);
    let mut logits = Vec::new();
    for s in 0..n {
        let xs: Vec<f64> = x[s * 8..(s + 1) * 8].iter().map(|&v| v as f64).collect();
        let a: Vec<f64> = xs.iter().map(|v| v.max(0.0)).collect();
        let b: Vec<f64> = xs.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
        let add_capture: Vec<f64> = a.iter().chain(&b).copied().collect();
        assert_close(
            &out.captures[0][s * 16..(s + 1) * 16],
            &add_capture,
            1e-6,
            "add",
        );
        // cat along channels of [2, 2, 2] tensors: sum's 8 values, then a's.
        let sum: Vec<f64> = a.iter().zip(&b).map(|(p, q)| p + q).collect();
        let cat: Vec<f64> = sum.iter().chain(&a).copied().collect();
        assert_close(&out.captures[1][s * 16..(s + 1) * 16], &cat, 1e-6, "cat");
        for k in 0..3 {
            let dot: f64 = (0..16).map(|i| fc_w.data[k * 16 + i] as f64 * cat[i]).sum();
            logits.push(dot + fc_b.data[k] as f64);
        }
    }
    assert_close(&tch.outputs(&x, n).unwrap(), &logits, 1e-5, "logits");
    // Captures do not depend on how many samples share the call (chunks are padded).
    let one = tch.forward(&x[8..16], 1).unwrap();
    assert_eq!(one.captures[0], out.captures[0][16..32]);
    assert_eq!(one.captures[1], out.captures[1][16..32]);
}

#[test]
fn cat_along_rows_or_columns_and_reshape_follow_pytorchs_layout() {
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
    // [1, 2, 3] cat [1, 2, 3]: on dim 2 (rows) -> [1, 4, 3], the rows then their copies; on
    // dim -1 (columns) -> [1, 2, 6], each row then its copy. The reshape keeps the order.
    let rows = [0., 1., 2., 3., 4., 5., 0., 1., 2., 3., 4., 5.];
    let columns = [0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.];
    for (dim, want) in [("2", rows), ("-1", columns)] {
        let layers = format!(
            "[[layers]]\nop = \"cat\"\ninputs = [\"input\", \"input\"]\ndim = {dim}\n[[layers]]\nop = \"reshape\"\nshape = [3, -1]\n"
        );
        let m = model(&spec("[1, 2, 3]", &layers), vec![]);
        assert_eq!(m.network.output_shape(), [3, 4]);
        assert_close(&outputs(&m, &x, 1), &want.map(f64::from), 0.0, &layers);
    }
}

#[test]
fn logits_are_differentiable_through_add_and_cat() {
    let m = model(
        ADD_CAT,
        vec![
            ("fc.weight", tensor(&[3, 16], 12, 1.0)),
            ("fc.bias", tensor(&[3], 13, 1.0)),
        ],
    );
    let tch = TchModel::new(&m, Device::Cpu, &[0.0], &[1.0]).unwrap();
    let x = tch
        .batch_tensor(&values(8, 15, 2.0), 1)
        .set_requires_grad(true);
    let logits = tch.logits(&x).unwrap();
    logits.sum(tch::Kind::Float).backward();
    let grad = Vec::<f32>::try_from(x.grad().flatten(0, -1)).unwrap();
    assert_eq!(grad.len(), 8);
    assert!(grad.iter().all(|g| g.is_finite()) && grad.iter().any(|&g| g != 0.0));
}

/// The conv every device runs (`conv2d_in_f32`, libtorch's `_convolution` with TF32 off) must
/// read its stride, padding, dilation and groups as `conv2d` does; compared on the CPU with every
/// argument away from its default so that a swapped one changes the output.
#[test]
fn the_conv_without_tf32_takes_conv2ds_arguments() {
    use tch::{Kind, Tensor as TchTensor};
    let tch_tensor = |shape: &[i64], seed: u64| {
        let n = shape.iter().product::<i64>() as usize;
        TchTensor::from_slice(&values(n, seed, 1.0)).view(shape)
    };
    let (x, weight, bias) = (
        tch_tensor(&[2, 4, 11, 9], 1),
        tch_tensor(&[6, 2, 3, 2], 2),
        tch_tensor(&[6], 3),
    );
    let (stride, padding, dilation, groups) = ([2, 1], [1, 2], [2, 3], 2);
    let want = x.conv2d(&weight, Some(&bias), stride, padding, dilation, groups);
    let got =
        super::ops::conv2d_in_f32(&x, &weight, Some(&bias), stride, padding, dilation, groups)
            .unwrap();
    assert_eq!(got.size(), want.size(), "output shape");
    assert_eq!(got.kind(), Kind::Float);
    let deviation = (got - &want).abs().max().double_value(&[]);
    assert!(deviation <= 1e-6, "largest deviation {deviation}");
}
