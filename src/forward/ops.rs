//! Each spec op as a libtorch call with PyTorch's eval-mode semantics: `TchOp::build` takes a
//! resolved layer and its checked weights, `TchOp::apply` runs it on the layer's operands.

use anyhow::Context;
use tch::{Device as TchDevice, Tensor};

use crate::model::Model;
use crate::spec::{self, GeluApproximation, Op, Param};

/// One layer's op, its tensors on the model's device.
pub(super) enum TchOp {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
        groups: i64,
    },
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    MaxPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
    },
    AvgPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
    },
    AdaptiveAvgPool([i64; 2]),
    BatchNorm {
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        eps: f64,
    },
    Add,
    /// Concatenation along this tensor dimension (the batch is dimension 0).
    Cat(i64),
    /// Flatten and reshape: to this shape, the batch dimension included (-1).
    Reshape(Vec<i64>),
    Activation(Activation),
    Identity,
}

/// The value ops with no tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Activation {
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
    Relu6,
    Hardtanh { min: f64, max: f64 },
    Gelu(GeluApproximation),
    Silu,
    Elu(f64),
    Softplus { beta: f64, threshold: f64 },
    Hardswish,
}

fn i2(v: [usize; 2]) -> [i64; 2] {
    [v[0] as i64, v[1] as i64]
}

/// A layer's tensors from the checked weights, as tensors on `device`.
struct LayerTensors<'a> {
    model: &'a Model,
    layer: &'a spec::Layer,
    device: TchDevice,
}

impl LayerTensors<'_> {
    fn optional(&self, param: Param) -> Option<Tensor> {
        let weights = self.model.weights.layer(&self.layer.name)?;
        let t = match param {
            Param::Weight => &weights.weight,
            Param::Bias => weights.bias.as_ref()?,
            Param::RunningMean => &weights.running.as_ref()?.mean,
            Param::RunningVar => &weights.running.as_ref()?.var,
        };
        let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        Some(
            Tensor::from_slice(&t.data)
                .view(shape.as_slice())
                .to_device(self.device),
        )
    }

    fn required(&self, param: Param) -> anyhow::Result<Tensor> {
        let layer = self.layer;
        self.optional(param).with_context(|| {
            format!(
                "layer `{}` ({}) has no `{}.{}` in the weights",
                layer.name,
                layer.op.kind(),
                layer.name,
                param.suffix()
            )
        })
    }
}

impl TchOp {
    /// The tch form of one resolved spec layer.
    pub(super) fn build(
        model: &Model,
        layer: &spec::Layer,
        device: TchDevice,
    ) -> anyhow::Result<TchOp> {
        let tensors = LayerTensors {
            model,
            layer,
            device,
        };
        Ok(match &layer.op {
            Op::Conv2d(c) => TchOp::Conv {
                weight: tensors.required(Param::Weight)?,
                bias: tensors.optional(Param::Bias),
                stride: i2(c.stride),
                padding: i2(c.padding),
                dilation: i2(c.dilation),
                groups: c.groups as i64,
            },
            Op::Linear(_) => TchOp::Linear {
                weight: tensors.required(Param::Weight)?,
                bias: tensors.optional(Param::Bias),
            },
            Op::MaxPool2d(p) => TchOp::MaxPool {
                kernel: i2(p.kernel),
                stride: i2(p.stride),
                padding: i2(p.padding),
            },
            Op::AvgPool2d(p) => TchOp::AvgPool {
                kernel: i2(p.kernel),
                stride: i2(p.stride),
                padding: i2(p.padding),
            },
            Op::AdaptiveAvgPool2d { output_size } => TchOp::AdaptiveAvgPool(i2(*output_size)),
            Op::BatchNorm2d(b) | Op::BatchNorm1d(b) => TchOp::BatchNorm {
                weight: tensors.required(Param::Weight)?,
                bias: tensors.required(Param::Bias)?,
                running_mean: tensors.required(Param::RunningMean)?,
                running_var: tensors.required(Param::RunningVar)?,
                eps: b.eps,
            },
            Op::Add => TchOp::Add,
            Op::Cat { dim } => TchOp::Cat(*dim as i64 + 1),
            Op::Flatten | Op::Reshape => {
                let mut shape = vec![-1];
                shape.extend(layer.out_shape.iter().map(|&d| d as i64));
                TchOp::Reshape(shape)
            }
            Op::Dropout | Op::Identity => TchOp::Identity,
            op => TchOp::Activation(
                activation(op)
                    .with_context(|| format!("op `{}` has no forward pass", op.kind()))?,
            ),
        })
    }

    /// The op on its operands (one, except for `add` and `cat`).
    pub(super) fn apply(&self, operands: &[&Tensor]) -> anyhow::Result<Tensor> {
        let h = *operands.first().context("an op got no operand")?;
        Ok(match self {
            TchOp::Conv {
                weight,
                bias,
                stride,
                padding,
                dilation,
                groups,
            } => conv2d_in_f32(
                h,
                weight,
                bias.as_ref(),
                *stride,
                *padding,
                *dilation,
                *groups,
            )?,
            TchOp::Linear { weight, bias } => h.f_linear(weight, bias.as_ref())?,
            TchOp::MaxPool {
                kernel,
                stride,
                padding,
            } => h.f_max_pool2d(kernel, stride, padding, [1, 1], false)?,
            TchOp::AvgPool {
                kernel,
                stride,
                padding,
            } => h.f_avg_pool2d(kernel, stride, padding, false, true, None::<i64>)?,
            TchOp::AdaptiveAvgPool(size) => h.f_adaptive_avg_pool2d(size)?,
            TchOp::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
            } => h.f_batch_norm(
                Some(weight),
                Some(bias),
                Some(running_mean),
                Some(running_var),
                false, // eval mode: the running statistics, never the batch's
                0.1,
                *eps,
                true,
            )?,
            TchOp::Add => sum(operands)?,
            TchOp::Cat(dim) => Tensor::f_cat(operands, *dim)?,
            TchOp::Reshape(shape) => h.f_reshape(shape.as_slice())?,
            TchOp::Activation(a) => a.apply(h)?,
            TchOp::Identity => h.shallow_clone(),
        })
    }
}

/// `a + b + c ...`, left to right as Python adds them.
fn sum(operands: &[&Tensor]) -> anyhow::Result<Tensor> {
    let (first, rest) = operands.split_first().context("add got no operand")?;
    let mut total = first.f_add(rest.first().context("add got one operand")?)?;
    for t in &rest[1..] {
        total = total.f_add(t)?;
    }
    Ok(total)
}

/// The activation a value op is, if it is one.
fn activation(op: &Op) -> Option<Activation> {
    Some(match *op {
        Op::Relu => Activation::Relu,
        Op::LeakyRelu { negative_slope } => Activation::LeakyRelu(negative_slope as f64),
        Op::Sigmoid => Activation::Sigmoid,
        Op::Tanh => Activation::Tanh,
        Op::Relu6 => Activation::Relu6,
        Op::Hardtanh { min_val, max_val } => Activation::Hardtanh {
            min: min_val as f64,
            max: max_val as f64,
        },
        Op::Gelu { approximate } => Activation::Gelu(approximate),
        Op::Silu => Activation::Silu,
        Op::Elu { alpha } => Activation::Elu(alpha as f64),
        Op::Softplus { beta, threshold } => Activation::Softplus {
            beta: beta as f64,
            threshold: threshold as f64,
        },
        Op::Hardswish => Activation::Hardswish,
        _ => return None,
    })
}

impl Activation {
    fn apply(self, h: &Tensor) -> anyhow::Result<Tensor> {
        Ok(match self {
            Activation::Relu => h.f_relu()?,
            Activation::LeakyRelu(slope) => {
                let neg = h.f_mul_scalar(slope)?;
                h.f_where_self(&h.f_gt(0.0)?, &neg)?
            }
            Activation::Sigmoid => h.f_sigmoid()?,
            Activation::Tanh => h.f_tanh()?,
            Activation::Relu6 => h.f_relu6()?,
            // PyTorch's hardtanh forward is a clamp.
            Activation::Hardtanh { min, max } => h.f_clamp(min, max)?,
            Activation::Gelu(GeluApproximation::None) => h.f_gelu("none")?,
            Activation::Gelu(GeluApproximation::Tanh) => h.f_gelu("tanh")?,
            Activation::Silu => h.f_silu()?,
            Activation::Elu(alpha) => elu(h, alpha)?,
            Activation::Softplus { beta, threshold } => softplus(h, beta, threshold)?,
            Activation::Hardswish => h.f_hardswish()?,
        })
    }
}

/// ELU: x for x > 0, else alpha (e^x - 1). tch binds libtorch's kernel with its default alpha
/// (1) only; other alphas are composed from the same formula.
fn elu(h: &Tensor, alpha: f64) -> anyhow::Result<Tensor> {
    if alpha == 1.0 {
        return Ok(h.f_elu()?);
    }
    let neg = h.f_expm1()?.f_mul_scalar(alpha)?;
    Ok(h.f_where_self(&h.f_gt(0.0)?, &neg)?)
}

/// Softplus: log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (PyTorch's rule).
/// tch binds libtorch's kernel with its defaults (beta 1, threshold 20) only.
fn softplus(h: &Tensor, beta: f64, threshold: f64) -> anyhow::Result<Tensor> {
    if beta == 1.0 && threshold == 20.0 {
        return Ok(h.f_softplus()?);
    }
    let scaled = h.f_mul_scalar(beta)?;
    let soft = scaled.f_exp()?.f_log1p()?.f_div_scalar(beta)?;
    Ok(h.f_where_self(&scaled.f_gt(threshold)?, &soft)?)
}

/// `conv2d` with TF32 ruled out. libtorch lets cuDNN run f32 convolutions in TF32 (10-bit
/// mantissas) unless told otherwise: on an H200 that moved ResNet-18's captured operands by
/// 1.9e-3 of their largest value from the CPU's, against 2.0e-6 without it (docs/performance.md,
/// "Ninth round"). Otherwise as `conv2d`, which calls the same `_convolution` with libtorch's
/// defaults: cuDNN on, no benchmark search, no deterministic algorithms; on the CPU the cuDNN
/// and TF32 flags are not read. (Gradients for the attacks follow libtorch's global setting.)
pub(super) fn conv2d_in_f32(
    h: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
    groups: i64,
) -> anyhow::Result<Tensor> {
    let (transposed, output_padding) = (false, [0, 0]);
    let (benchmark, deterministic, cudnn_enabled, allow_tf32) = (false, false, true, false);
    Ok(h.f_internal_convolution(
        weight,
        bias,
        stride,
        padding,
        dilation,
        transposed,
        output_padding,
        groups,
        benchmark,
        deterministic,
        cudnn_enabled,
        allow_tf32,
    )?)
}
