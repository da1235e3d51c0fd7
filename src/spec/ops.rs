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

/// Keys of `conv2d` (`nn.Conv2d`, no groups).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct Conv2dKeys {
    out_channels: Option<usize>,
    in_channels: Option<usize>,
    kernel_size: Option<IntOrPair>,
    stride: Option<IntOrPair>,
    padding: Option<IntOrPair>,
    dilation: Option<IntOrPair>,
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
        "flatten" => Flatten(NoKeys),
        "dropout" => Dropout(DropoutKeys),
    }
}

/// Geometry of a 2-d convolution (PyTorch semantics, no groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub bias: bool,
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
    Relu,
    LeakyRelu { negative_slope: f32 },
    Sigmoid,
    Tanh,
    Flatten,
    Dropout,
}

impl Op {
    /// Graph ops create a vertex layer and add edges.
    pub fn is_graph_op(&self) -> bool {
        matches!(
            self,
            Op::Conv2d(_) | Op::Linear(_) | Op::MaxPool2d(_) | Op::AvgPool2d(_)
        )
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
        }
    }

    /// Shape of the weight tensor `<name>.weight`, if the op has one.
    pub fn weight_shape(&self) -> Option<Vec<usize>> {
        match self {
            Op::Conv2d(c) => Some(vec![
                c.out_channels,
                c.in_channels,
                c.kernel[0],
                c.kernel[1],
            ]),
            Op::Linear(l) => Some(vec![l.out_features, l.in_features]),
            _ => None,
        }
    }

    /// Shape of the bias tensor `<name>.bias`, if the op has one.
    pub fn bias_shape(&self) -> Option<Vec<usize>> {
        match self {
            Op::Conv2d(c) if c.bias => Some(vec![c.out_channels]),
            Op::Linear(l) if l.bias => Some(vec![l.out_features]),
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
    /// The op these keys describe on an input of `shape`, and its output shape; the error says
    /// which key is missing or does not fit the input.
    pub(super) fn resolve(&self, shape: &[usize]) -> Result<(Op, Shape), String> {
        let same = |op: Op| Ok((op, shape.to_vec()));
        match self {
            OpKeys::Conv2d(k) => conv2d(k, shape),
            OpKeys::Linear(k) => linear(k, shape),
            OpKeys::MaxPool2d(k) => pool(k, self.name(), shape).map(|(p, s)| (Op::MaxPool2d(p), s)),
            OpKeys::AvgPool2d(k) => pool(k, self.name(), shape).map(|(p, s)| (Op::AvgPool2d(p), s)),
            OpKeys::Relu(_) => same(Op::Relu),
            OpKeys::LeakyRelu(k) => same(Op::LeakyRelu {
                negative_slope: k.negative_slope.unwrap_or(0.01),
            }),
            OpKeys::Sigmoid(_) => same(Op::Sigmoid),
            OpKeys::Tanh(_) => same(Op::Tanh),
            OpKeys::Flatten(_) => Ok((Op::Flatten, vec![numel(shape)])),
            OpKeys::Dropout(_) => same(Op::Dropout),
        }
    }
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
