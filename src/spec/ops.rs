//! The ops a model spec can list: the keys each takes as written (`OpKeys`, one struct per op),
//! the resolved ops (`Op`), and how each op's output shape follows from its input shape
//! (PyTorch's rules). docs/model-spec.md describes every op and key for users.

use serde::Deserialize;

use super::{numel, Shape, ShapeStr, MAX_WINDOW};
use crate::tagged::{tagged_settings, Tagged};

/// An int, or a pair `[h, w]`, as PyTorch accepts for kernel sizes, strides and paddings.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "expected a whole number or a pair [h, w] of whole numbers"
)]
pub(crate) enum IntOrPair {
    One(usize),
    Two([usize; 2]),
}

impl IntOrPair {
    fn pair(self) -> [usize; 2] {
        match self {
            IntOrPair::One(v) => [v, v],
            IntOrPair::Two(p) => p,
        }
    }
}

/// Keys of `conv2d` (`nn.Conv2d`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct Conv2dKeys {
    out_channels: Option<usize>,
    in_channels: Option<usize>,
    kernel_size: Option<IntOrPair>,
    stride: Option<IntOrPair>,
    padding: Option<IntOrPair>,
    dilation: Option<IntOrPair>,
    groups: Option<usize>,
    bias: Option<bool>,
}

/// Keys of `linear` (`nn.Linear`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct LinearKeys {
    out_features: Option<usize>,
    in_features: Option<usize>,
    bias: Option<bool>,
}

/// Keys of `max_pool2d` and `avg_pool2d` (`nn.MaxPool2d`, `nn.AvgPool2d`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct PoolKeys {
    kernel_size: Option<IntOrPair>,
    stride: Option<IntOrPair>,
    padding: Option<IntOrPair>,
}

/// Keys of `leaky_relu` (`nn.LeakyReLU`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct LeakyReluKeys {
    negative_slope: Option<f32>,
}

/// Keys of `dropout` (`nn.Dropout`; an identity at inference, `p` is accepted and unused).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct DropoutKeys {
    #[allow(dead_code)] // read for PyTorch parity; dropout is the identity at inference
    p: Option<f32>,
}

/// Keys of `batch_norm2d` and `batch_norm1d` (`nn.BatchNorm2d`, `nn.BatchNorm1d` in eval mode:
/// running statistics, affine).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct BatchNormKeys {
    num_features: Option<usize>,
    eps: Option<f64>,
}

/// Keys of `adaptive_avg_pool2d` (`nn.AdaptiveAvgPool2d`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct AdaptivePoolKeys {
    output_size: Option<IntOrPair>,
}

/// Keys of `cat` (`torch.cat`; `dim` counts the batch dimension, as in PyTorch).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct CatKeys {
    dim: Option<i64>,
}

/// Keys of `flatten` (`nn.Flatten` / `torch.flatten`; `start_dim` counts the batch dimension).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct FlattenKeys {
    start_dim: Option<i64>,
}

/// Keys of `reshape` (`shape` without the batch dimension; one entry may be -1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ReshapeKeys {
    shape: Option<Vec<i64>>,
}

/// Keys of `hardtanh` (`nn.Hardtanh`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct HardtanhKeys {
    min_val: Option<f32>,
    max_val: Option<f32>,
}

/// Keys of `gelu` (`nn.GELU`): `approximate` = "none" (erf, the default) or "tanh".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct GeluKeys {
    approximate: Option<GeluApproximation>,
}

/// Keys of `elu` (`nn.ELU`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct EluKeys {
    alpha: Option<f32>,
}

/// Keys of `softplus` (`nn.Softplus`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct SoftplusKeys {
    beta: Option<f32>,
    threshold: Option<f32>,
}

/// Ops that take no keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct NoKeys {}

tagged_settings! {
    /// The op of one `[[layers]]` table with the keys written for it: one variant per op, the
    /// struct listing the keys that op takes.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    pub(crate) enum OpKeys tag "op" {
        "conv2d" => Conv2d(Conv2dKeys),
        "linear" => Linear(LinearKeys),
        "max_pool2d" => MaxPool2d(PoolKeys),
        "avg_pool2d" => AvgPool2d(PoolKeys),
        "relu" => Relu(NoKeys),
        "leaky_relu" => LeakyRelu(LeakyReluKeys),
        "sigmoid" => Sigmoid(NoKeys),
        "tanh" => Tanh(NoKeys),
        "flatten" => Flatten(FlattenKeys),
        "dropout" => Dropout(DropoutKeys),
        "batch_norm2d" => BatchNorm2d(BatchNormKeys),
        "batch_norm1d" => BatchNorm1d(BatchNormKeys),
        "add" => Add(NoKeys),
        "cat" => Cat(CatKeys),
        "adaptive_avg_pool2d" => AdaptiveAvgPool2d(AdaptivePoolKeys),
        "identity" => Identity(NoKeys),
        "reshape" => Reshape(ReshapeKeys),
        "relu6" => Relu6(NoKeys),
        "hardtanh" => Hardtanh(HardtanhKeys),
        "gelu" => Gelu(GeluKeys),
        "silu" => Silu(NoKeys),
        "elu" => Elu(EluKeys),
        "softplus" => Softplus(SoftplusKeys),
        "hardswish" => Hardswish(NoKeys),
    }
}

/// `gelu`'s `approximate` key, as in PyTorch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeluApproximation {
    /// The exact form, x * Phi(x) with the error function.
    #[default]
    None,
    /// The tanh approximation.
    Tanh,
}

/// Geometry of a 2-d convolution (PyTorch semantics). With `groups` > 1 the input and output
/// channels split into that many groups, and output channel o reads only the input channels of
/// its group: the weight is [out_channels, in_channels / groups, kh, kw].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
}

/// A batch norm in eval mode: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias,
/// per channel (`batch_norm2d`, [C, H, W] input) or per feature (`batch_norm1d`, [F] input).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub features: usize,
    pub eps: f64,
}

/// Geometry of a fully connected layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

/// Geometry of a max or average pool (PyTorch defaults: floor mode; padded cells count in the
/// average's divisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// A resolved op.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv2d(Conv2d),
    Linear(Linear),
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    /// `adaptive_avg_pool2d` to `[oh, ow]`: PyTorch's windows, rows floor(i * H / oh) to
    /// ceil((i + 1) * H / oh), columns likewise.
    AdaptiveAvgPool2d {
        output_size: [usize; 2],
    },
    /// Elementwise sum of two or more operands of one shape.
    Add,
    Relu,
    LeakyRelu {
        negative_slope: f32,
    },
    Sigmoid,
    Tanh,
    Relu6,
    Hardtanh {
        min_val: f32,
        max_val: f32,
    },
    Gelu {
        approximate: GeluApproximation,
    },
    Silu,
    Elu {
        alpha: f32,
    },
    Softplus {
        beta: f32,
        threshold: f32,
    },
    Hardswish,
    BatchNorm2d(BatchNorm),
    BatchNorm1d(BatchNorm),
    Dropout,
    Identity,
    /// Shape ops: the layer's `out_shape` says what they make.
    Flatten,
    Reshape,
    /// Concatenation along `dim` of the sample's shape (0 = channels; PyTorch's dim minus one).
    Cat {
        dim: usize,
    },
}

/// What an op does to a model's activation graph (docs/graph.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRole {
    /// Makes a new vertex layer from its output units and links its inputs' units to them.
    Graph,
    /// Changes the values units pass on, not the units (activations, batch norm, dropout).
    Value,
    /// Re-indexes units (flatten, reshape, cat): no vertices, no edges.
    Shape,
}

/// A tensor a layer's op reads from the weights file: `<layer name>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    Weight,
    Bias,
    RunningMean,
    RunningVar,
}

impl Param {
    /// The tensor name's suffix after `<layer name>.`.
    pub fn suffix(self) -> &'static str {
        match self {
            Param::Weight => "weight",
            Param::Bias => "bias",
            Param::RunningMean => "running_mean",
            Param::RunningVar => "running_var",
        }
    }
}

impl Op {
    /// Graph ops create a vertex layer and add edges.
    pub fn is_graph_op(&self) -> bool {
        self.role() == OpRole::Graph
    }

    pub fn role(&self) -> OpRole {
        match self {
            Op::Conv2d(_)
            | Op::Linear(_)
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Add => OpRole::Graph,
            Op::Flatten | Op::Reshape | Op::Cat { .. } => OpRole::Shape,
            _ => OpRole::Value,
        }
    }

    /// The op's name in a spec (`op = "..."`).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "conv2d",
            Op::Linear(_) => "linear",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::Relu => "relu",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::Flatten => "flatten",
            Op::Dropout => "dropout",
            Op::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            Op::Add => "add",
            Op::Relu6 => "relu6",
            Op::Hardtanh { .. } => "hardtanh",
            Op::Gelu { .. } => "gelu",
            Op::Silu => "silu",
            Op::Elu { .. } => "elu",
            Op::Softplus { .. } => "softplus",
            Op::Hardswish => "hardswish",
            Op::BatchNorm2d(_) => "batch_norm2d",
            Op::BatchNorm1d(_) => "batch_norm1d",
            Op::Identity => "identity",
            Op::Reshape => "reshape",
            Op::Cat { .. } => "cat",
        }
    }

    /// The tensors the op reads from the weights file, with their shapes, in `Param` order.
    pub fn params(&self) -> Vec<(Param, Vec<usize>)> {
        let mut params = Vec::new();
        if let Some(shape) = self.weight_shape() {
            params.push((Param::Weight, shape));
        }
        if let Some(shape) = self.bias_shape() {
            params.push((Param::Bias, shape));
        }
        if let Op::BatchNorm2d(b) | Op::BatchNorm1d(b) = self {
            params.push((Param::RunningMean, vec![b.features]));
            params.push((Param::RunningVar, vec![b.features]));
        }
        params
    }

    /// Shape of the weight tensor `<name>.weight`, if the op has one.
    pub fn weight_shape(&self) -> Option<Vec<usize>> {
        match self {
            Op::Conv2d(c) => Some(vec![
                c.out_channels,
                c.in_channels / c.groups,
                c.kernel[0],
                c.kernel[1],
            ]),
            Op::Linear(l) => Some(vec![l.out_features, l.in_features]),
            Op::BatchNorm2d(b) | Op::BatchNorm1d(b) => Some(vec![b.features]),
            _ => None,
        }
    }

    /// Shape of the bias tensor `<name>.bias`, if the op has one.
    pub fn bias_shape(&self) -> Option<Vec<usize>> {
        match self {
            Op::Conv2d(c) if c.bias => Some(vec![c.out_channels]),
            Op::Linear(l) if l.bias => Some(vec![l.out_features]),
            Op::BatchNorm2d(b) | Op::BatchNorm1d(b) => Some(vec![b.features]),
            _ => None,
        }
    }

    /// What to lower when the op's output is too large.
    pub(super) fn shrink_hint(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "lower out_channels or raise stride",
            Op::Linear(_) => "lower out_features",
            _ => "use a smaller input_shape",
        }
    }
}

impl OpKeys {
    /// How many inputs the op takes: (fewest, most).
    pub(super) fn arity(&self) -> (usize, usize) {
        match self {
            OpKeys::Add(_) => (2, usize::MAX),
            OpKeys::Cat(_) => (1, usize::MAX),
            _ => (1, 1),
        }
    }

    /// The op these keys describe on inputs of `shapes` (one per operand), and its output shape;
    /// the error says which key is missing or does not fit the input.
    pub(super) fn resolve(&self, shapes: &[Shape]) -> Result<(Op, Shape), String> {
        if let OpKeys::Add(_) = self {
            return add(shapes);
        }
        if let OpKeys::Cat(k) = self {
            return cat(k, shapes);
        }
        let shape = shapes[0].as_slice();
        let same = |op: Op| Ok((op, shape.to_vec()));
        match self {
            OpKeys::Conv2d(k) => conv2d(k, shape),
            OpKeys::Linear(k) => linear(k, shape),
            OpKeys::MaxPool2d(k) => pool(k, self.name(), shape).map(|(p, s)| (Op::MaxPool2d(p), s)),
            OpKeys::AvgPool2d(k) => pool(k, self.name(), shape).map(|(p, s)| (Op::AvgPool2d(p), s)),
            OpKeys::AdaptiveAvgPool2d(k) => adaptive_pool(k, shape),
            OpKeys::Relu(_) => same(Op::Relu),
            OpKeys::LeakyRelu(k) => same(Op::LeakyRelu {
                negative_slope: k.negative_slope.unwrap_or(0.01),
            }),
            OpKeys::Sigmoid(_) => same(Op::Sigmoid),
            OpKeys::Tanh(_) => same(Op::Tanh),
            OpKeys::Relu6(_) => same(Op::Relu6),
            OpKeys::Hardtanh(k) => hardtanh(k, shape),
            OpKeys::Gelu(k) => same(Op::Gelu {
                approximate: k.approximate.unwrap_or_default(),
            }),
            OpKeys::Silu(_) => same(Op::Silu),
            OpKeys::Elu(k) => same(Op::Elu {
                alpha: k.alpha.unwrap_or(1.0),
            }),
            OpKeys::Softplus(k) => softplus(k, shape),
            OpKeys::Hardswish(_) => same(Op::Hardswish),
            OpKeys::BatchNorm2d(k) => batch_norm(k, self.name(), 3, shape),
            OpKeys::BatchNorm1d(k) => batch_norm(k, self.name(), 1, shape),
            OpKeys::Dropout(_) => same(Op::Dropout),
            OpKeys::Identity(_) => same(Op::Identity),
            OpKeys::Flatten(k) => flatten(k, shape),
            OpKeys::Reshape(k) => reshape(k, shape),
            OpKeys::Add(_) | OpKeys::Cat(_) => unreachable!("handled above"),
        }
    }
}

/// A value op's checks on `hardtanh`'s bounds.
fn hardtanh(k: &HardtanhKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let (min_val, max_val) = (k.min_val.unwrap_or(-1.0), k.max_val.unwrap_or(1.0));
    if min_val.is_nan() || max_val.is_nan() || min_val > max_val {
        return Err(format!(
            "min_val = {min_val} must be at most max_val = {max_val}"
        ));
    }
    Ok((Op::Hardtanh { min_val, max_val }, shape.to_vec()))
}

fn softplus(k: &SoftplusKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let (beta, threshold) = (k.beta.unwrap_or(1.0), k.threshold.unwrap_or(20.0));
    if !(beta.is_finite() && beta > 0.0) || threshold.is_nan() {
        return Err(format!(
            "beta = {beta} must be a positive number and threshold = {threshold} a number"
        ));
    }
    Ok((Op::Softplus { beta, threshold }, shape.to_vec()))
}

/// `batch_norm2d` (rank 3, [C, H, W]) or `batch_norm1d` (rank 1, [F]).
fn batch_norm(
    k: &BatchNormKeys,
    op: &str,
    rank: usize,
    shape: &[usize],
) -> Result<(Op, Shape), String> {
    if shape.len() != rank {
        let want = if rank == 3 { "[C, H, W]" } else { "[features]" };
        return Err(format!(
            "{op} needs a {want} input but gets {}",
            ShapeStr(shape)
        ));
    }
    let features = shape[0];
    if let Some(n) = k.num_features.filter(|&n| n != features) {
        return Err(format!(
            "num_features = {n} but the input has {features}; remove num_features or fix it"
        ));
    }
    let eps = k.eps.unwrap_or(1e-5);
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(format!("eps = {eps} must be a finite number >= 0"));
    }
    let bn = BatchNorm { features, eps };
    let op = if rank == 3 {
        Op::BatchNorm2d(bn)
    } else {
        Op::BatchNorm1d(bn)
    };
    Ok((op, shape.to_vec()))
}

/// `add`: every operand has the same shape (no broadcasting).
fn add(shapes: &[Shape]) -> Result<(Op, Shape), String> {
    let first = &shapes[0];
    if let Some(other) = shapes.iter().find(|s| *s != first) {
        return Err(format!(
            "add needs operands of one shape but gets {} and {}; actopo does not broadcast",
            ShapeStr(first),
            ShapeStr(other)
        ));
    }
    Ok((Op::Add, first.clone()))
}

/// A PyTorch dim (counting the batch dimension, negative from the end) as an index into a
/// sample's shape of `rank` dims.
fn sample_dim(dim: i64, rank: usize, key: &str) -> Result<usize, String> {
    let full = rank as i64 + 1;
    let d = if dim < 0 { dim + full } else { dim };
    if d < 1 || d >= full {
        return Err(format!(
            "`{key}` = {dim} is not a dimension of a sample of rank {rank} (PyTorch numbering: 1..={rank}, or negative; 0 is the batch)"
        ));
    }
    Ok((d - 1) as usize)
}

/// `cat`: operands agree on every dimension but `dim`.
fn cat(k: &CatKeys, shapes: &[Shape]) -> Result<(Op, Shape), String> {
    let first = &shapes[0];
    let dim = sample_dim(k.dim.unwrap_or(1), first.len(), "dim")?;
    let mut out = first.clone();
    for s in &shapes[1..] {
        let fits = s.len() == first.len()
            && s.iter()
                .zip(first)
                .enumerate()
                .all(|(i, (a, b))| i == dim || a == b);
        if !fits {
            return Err(format!(
                "cat along dim {} needs operands that agree on the other dimensions but gets {} and {}",
                dim + 1,
                ShapeStr(first),
                ShapeStr(s)
            ));
        }
        out[dim] += s[dim];
    }
    Ok((Op::Cat { dim }, out))
}

/// `flatten` from `start_dim` (PyTorch numbering, default 1) to the last dimension.
fn flatten(k: &FlattenKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let start = sample_dim(k.start_dim.unwrap_or(1), shape.len(), "start_dim")?;
    let mut out = shape[..start].to_vec();
    out.push(numel(&shape[start..]));
    Ok((Op::Flatten, out))
}

/// `reshape` to `shape` (no batch dimension; one -1 is inferred).
fn reshape(k: &ReshapeKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let want = required(k.shape.as_ref(), "shape")?;
    let n = numel(shape);
    let known: i64 = want.iter().filter(|&&d| d != -1).product();
    let free = want.iter().filter(|&&d| d == -1).count();
    let bad = want.iter().any(|&d| d == 0 || d < -1) || free > 1 || known <= 0;
    let inferred = if free == 1 && !bad && n as i64 % known == 0 {
        Some((n as i64 / known) as usize)
    } else {
        None
    };
    let out: Vec<usize> = want
        .iter()
        .map(|&d| {
            if d == -1 {
                inferred.unwrap_or(0)
            } else {
                d as usize
            }
        })
        .collect();
    if bad || numel(&out) != n || out.is_empty() {
        return Err(format!(
            "shape = {want:?} does not hold the {n} values of the input {} (positive sizes, at most one -1)",
            ShapeStr(shape)
        ));
    }
    Ok((Op::Reshape, out))
}

/// `adaptive_avg_pool2d` to `output_size`.
fn adaptive_pool(k: &AdaptivePoolKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let (c, _, _) = need_image("adaptive_avg_pool2d", shape)?;
    let output_size = pair_positive(
        required(k.output_size, "output_size")?.pair(),
        "output_size",
    )?;
    Ok((
        Op::AdaptiveAvgPool2d { output_size },
        vec![c, output_size[0], output_size[1]],
    ))
}

fn conv2d(k: &Conv2dKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let (c, h, w) = need_image("conv2d", shape)?;
    let out_channels = positive(required(k.out_channels, "out_channels")?, "out_channels")?;
    if let Some(ic) = k.in_channels.filter(|&ic| ic != c) {
        return Err(format!(
            "in_channels = {ic} but the input has {c} channels (shape {}); remove in_channels or fix it",
            ShapeStr(shape)
        ));
    }
    let kernel = pair_positive(
        required(k.kernel_size, "kernel_size")?.pair(),
        "kernel_size",
    )?;
    let stride = pair_positive(k.stride.map_or([1, 1], IntOrPair::pair), "stride")?;
    let padding = window_sized(k.padding.map_or([0, 0], IntOrPair::pair), "padding")?;
    let dilation = pair_positive(k.dilation.map_or([1, 1], IntOrPair::pair), "dilation")?;
    let groups = positive(k.groups.unwrap_or(1), "groups")?;
    if c % groups != 0 || out_channels % groups != 0 {
        return Err(format!(
            "groups = {groups} must divide both the input's {c} channels and out_channels = {out_channels}"
        ));
    }
    let oh = window_out(h, kernel[0], stride[0], padding[0], dilation[0]);
    let ow = window_out(w, kernel[1], stride[1], padding[1], dilation[1]);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return Err(format!(
            "kernel {kernel:?} with dilation {dilation:?} does not fit the input {} with padding {padding:?}",
            ShapeStr(shape)
        ));
    };
    let conv = Conv2d {
        in_channels: c,
        out_channels,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        bias: k.bias.unwrap_or(true),
    };
    Ok((Op::Conv2d(conv), vec![out_channels, oh, ow]))
}

fn linear(k: &LinearKeys, shape: &[usize]) -> Result<(Op, Shape), String> {
    let &[in_features] = shape else {
        return Err(format!(
            "linear needs a flat input but gets {}; add {{ op = \"flatten\" }} before it",
            ShapeStr(shape)
        ));
    };
    if let Some(f) = k.in_features.filter(|&f| f != in_features) {
        return Err(format!(
            "in_features = {f} but the input has {in_features} features; remove in_features or fix it"
        ));
    }
    let out_features = positive(required(k.out_features, "out_features")?, "out_features")?;
    let linear = Linear {
        in_features,
        out_features,
        bias: k.bias.unwrap_or(true),
    };
    Ok((Op::Linear(linear), vec![out_features]))
}

/// A max or average pool's geometry and output shape (`op` names it in messages).
fn pool(k: &PoolKeys, op: &str, shape: &[usize]) -> Result<(Pool2d, Shape), String> {
    let (c, h, w) = need_image(op, shape)?;
    let kernel = pair_positive(
        required(k.kernel_size, "kernel_size")?.pair(),
        "kernel_size",
    )?;
    let stride = pair_positive(k.stride.map_or(kernel, IntOrPair::pair), "stride")?;
    let padding = window_sized(k.padding.map_or([0, 0], IntOrPair::pair), "padding")?;
    if padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1] {
        return Err(format!(
            "padding {padding:?} must be at most half the kernel size {kernel:?} (PyTorch's rule)"
        ));
    }
    let oh = window_out(h, kernel[0], stride[0], padding[0], 1);
    let ow = window_out(w, kernel[1], stride[1], padding[1], 1);
    let (Some(oh), Some(ow)) = (oh, ow) else {
        return Err(format!(
            "kernel {kernel:?} does not fit the input {}",
            ShapeStr(shape)
        ));
    };
    let pool = Pool2d {
        kernel,
        stride,
        padding,
    };
    Ok((pool, vec![c, oh, ow]))
}

fn required<T>(value: Option<T>, key: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing key `{key}`"))
}

fn positive(v: usize, key: &str) -> Result<usize, String> {
    if v == 0 {
        Err(format!("`{key}` must be at least 1"))
    } else {
        Ok(v)
    }
}

fn pair_positive(v: [usize; 2], key: &str) -> Result<[usize; 2], String> {
    positive(v[0], key)?;
    positive(v[1], key)?;
    window_sized(v, key)
}

/// Kernel sizes, strides, paddings and dilations are at most `MAX_WINDOW`.
fn window_sized(v: [usize; 2], key: &str) -> Result<[usize; 2], String> {
    match v.iter().find(|&&x| x > MAX_WINDOW) {
        Some(x) => Err(format!(
            "`{key}` = {x} is above {MAX_WINDOW}, the largest window actopo accepts; use a smaller {key}"
        )),
        None => Ok(v),
    }
}

fn need_image(op: &str, shape: &[usize]) -> Result<(usize, usize, usize), String> {
    match *shape {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(format!(
            "{op} needs a [C, H, W] input but gets {}; {op} cannot follow flatten or linear",
            ShapeStr(shape)
        )),
    }
}

/// Output size of a sliding window along one axis (PyTorch floor mode); None when the window does
/// not fit (or the sizes overflow, which `MAX_WINDOW` and `MAX_VALUES` rule out on 64-bit).
fn window_out(size: usize, kernel: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    let span = dil.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = size.checked_add(pad.checked_mul(2)?)?;
    Some(padded.checked_sub(span)? / stride + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/model-spec.md names every op and, in the op's row, every key it takes.
    #[test]
    fn the_docs_list_every_op_and_its_keys() {
        let docs = include_str!("../../docs/model-spec.md");
        for kind in OpKeys::kinds() {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", kind.name)))
                .unwrap_or_else(|| panic!("docs/model-spec.md has no row for op `{}`", kind.name));
            for key in kind.keys {
                assert!(
                    row.contains(&format!("`{key}`")),
                    "docs/model-spec.md: the row of `{}` does not name key `{key}`",
                    kind.name
                );
            }
        }
    }
}
