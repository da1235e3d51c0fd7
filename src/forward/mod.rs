//! The forward pass and the gradient attacks: the only module that uses tch (libtorch).
//!
//! `TchModel` builds the spec's layers from the checked weights and runs batched, no-grad forward
//! passes, capturing every graph op's input (post-activation values) as plain f32 arrays for the
//! topology workers, plus each sample's prediction and softmax confidence. Inputs come in raw units
//! (8-bit images in [0, 1]); the model applies the data's mean/std itself, so attacks can work and
//! clip in raw units with gradients through the normalisation (`attacks`).
//!
//! Batches are cut into fixed chunks of `FORWARD_CHUNK` samples, the last one padded with zeros:
//! libtorch's CPU kernels may round differently for different batch sizes, and outputs must not
//! depend on `pipeline.batch_size` (`docs/exactness.md`).

use anyhow::{bail, Context};
use tch::{Device as TchDevice, Kind, Tensor};

use crate::config::Device;
use crate::model::Model;
use crate::spec::{self, Op};

pub mod attacks;

/// Samples per forward call; every call sees exactly this many rows.
pub(crate) const FORWARD_CHUNK: usize = 32;

enum TchLayer {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
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
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
    Flatten,
    Identity,
}

/// A model on a device, ready for batched forward passes.
pub struct TchModel {
    layers: Vec<(TchLayer, bool)>,
    device: TchDevice,
    input_shape: Vec<i64>,
    capture_lens: Vec<usize>,
    /// Per-channel mean and std, shaped to broadcast over a [N, C, H, W] (or [N, F]) batch.
    mean: Tensor,
    std: Tensor,
}

/// What one forward pass over a batch gives the workers.
#[derive(Debug, Clone, Default)]
pub struct ForwardOutput {
    /// Per graph op: its input for every sample of the batch, sample-major.
    pub captures: Vec<Vec<f32>>,
    /// Values per sample of each capture.
    pub capture_lens: Vec<usize>,
    /// argmax of the model output, per sample.
    pub pred: Vec<i64>,
    /// Largest softmax probability, per sample.
    pub confidence: Vec<f32>,
}

fn i2(v: [usize; 2]) -> [i64; 2] {
    [v[0] as i64, v[1] as i64]
}

/// A layer's weight or bias from the checked weights, as a tensor on `device`.
fn parameter(model: &Model, layer: &str, param: Param, device: TchDevice) -> Option<Tensor> {
    let weights = model.weights.layer(layer)?;
    let t = match param {
        Param::Weight => &weights.weight,
        Param::Bias => weights.bias.as_ref()?,
    };
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Some(
        Tensor::from_slice(&t.data)
            .view(shape.as_slice())
            .to_device(device),
    )
}

#[derive(Clone, Copy)]
enum Param {
    Weight,
    Bias,
}

/// The tch form of one resolved spec layer.
fn build_layer(model: &Model, layer: &spec::Layer, device: TchDevice) -> anyhow::Result<TchLayer> {
    let tensor = |param| parameter(model, &layer.name, param, device);
    Ok(match &layer.op {
        Op::Conv2d(c) => TchLayer::Conv {
            weight: tensor(Param::Weight).context("conv weight")?,
            bias: tensor(Param::Bias),
            stride: i2(c.stride),
            padding: i2(c.padding),
            dilation: i2(c.dilation),
        },
        Op::Linear(_) => TchLayer::Linear {
            weight: tensor(Param::Weight).context("linear weight")?,
            bias: tensor(Param::Bias),
        },
        Op::MaxPool2d(p) => TchLayer::MaxPool {
            kernel: i2(p.kernel),
            stride: i2(p.stride),
            padding: i2(p.padding),
        },
        Op::AvgPool2d(p) => TchLayer::AvgPool {
            kernel: i2(p.kernel),
            stride: i2(p.stride),
            padding: i2(p.padding),
        },
        Op::Relu => TchLayer::Relu,
        Op::LeakyRelu { negative_slope } => TchLayer::LeakyRelu(*negative_slope as f64),
        Op::Sigmoid => TchLayer::Sigmoid,
        Op::Tanh => TchLayer::Tanh,
        Op::Flatten => TchLayer::Flatten,
        Op::Dropout => TchLayer::Identity,
        other => bail!("op `{}` is not in the forward pass yet", other.kind()),
    })
}

/// Per-channel mean and std shaped to broadcast over a [N, C, H, W] (or [N, F]) batch.
fn normalisation(
    mean: &[f32],
    std: &[f32],
    input_shape: &[i64],
    device: TchDevice,
) -> anyhow::Result<(Tensor, Tensor)> {
    anyhow::ensure!(
        mean.len() == std.len() && (mean.len() == 1 || input_shape.len() == 3),
        "data.mean/data.std must have one value, or one per input channel"
    );
    let stat_shape: Vec<i64> = if input_shape.len() == 3 {
        vec![1, mean.len() as i64, 1, 1]
    } else {
        vec![1, 1]
    };
    let tensor = |v: &[f32]| {
        Tensor::from_slice(v)
            .view(stat_shape.as_slice())
            .to_device(device)
    };
    Ok((tensor(mean), tensor(std)))
}

/// Picks the torch device for a configured one.
pub(crate) fn resolve_device(device: Device) -> anyhow::Result<TchDevice> {
    Ok(match device {
        Device::Cpu => TchDevice::Cpu,
        Device::Auto => TchDevice::cuda_if_available(),
        Device::Cuda(n) => {
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                bail!(
                    "`model.device` = \"cuda:{n}\" but {count} CUDA device(s) are visible; use device = \"auto\" or \"cpu\""
                );
            }
            TchDevice::Cuda(n)
        }
    })
}

pub fn device_name(device: TchDevice) -> String {
    match device {
        TchDevice::Cpu => "cpu".into(),
        TchDevice::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

impl TchModel {
    /// `mean` and `std` have one value, or one per input channel (the data normalisation).
    pub fn new(
        model: &Model,
        device: Device,
        mean: &[f32],
        std: &[f32],
    ) -> anyhow::Result<TchModel> {
        let device = resolve_device(device)?;
        if device == TchDevice::Cpu {
            // The topology workers need the cores more than this small forward pass does.
            tch::set_num_threads(1);
        }
        let mut layers = Vec::new();
        let mut capture_lens = Vec::new();
        for layer in &model.network.layers {
            let is_graph_op = layer.op.is_graph_op();
            if is_graph_op {
                capture_lens.push(layer.in_shape.iter().product());
            }
            layers.push((build_layer(model, layer, device)?, is_graph_op));
        }
        let input_shape: Vec<i64> = model
            .network
            .input_shape
            .iter()
            .map(|&d| d as i64)
            .collect();
        let (mean, std) = normalisation(mean, std, &input_shape, device)?;
        Ok(TchModel {
            layers,
            device,
            input_shape,
            capture_lens,
            mean,
            std,
        })
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.input_shape.iter().product::<i64>() as usize
    }

    /// A [rows, ...input shape] tensor on the model's device from raw values.
    fn batch_tensor(&self, x: &[f32], rows: usize) -> Tensor {
        let mut shape = vec![rows as i64];
        shape.extend(&self.input_shape);
        Tensor::from_slice(x)
            .view(shape.as_slice())
            .to_device(self.device)
    }

    /// Logits of a batch of raw inputs, differentiable (used by the attacks).
    pub fn logits(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        let mut h = x.f_sub(&self.mean)?.f_div(&self.std)?;
        for (layer, _) in &self.layers {
            h = apply(layer, h)?;
        }
        Ok(h.f_flatten(1, -1)?)
    }

    pub fn device(&self) -> TchDevice {
        self.device
    }

    /// Runs `n` samples (`x` holds n * input numel raw values; the model normalises them).
    pub fn forward(&self, x: &[f32], n: usize) -> anyhow::Result<ForwardOutput> {
        let sample_len: usize = self.input_shape.iter().product::<i64>() as usize;
        anyhow::ensure!(
            x.len() == n * sample_len,
            "batch has {} values for {n} samples of {sample_len}",
            x.len()
        );
        let mut out = ForwardOutput {
            captures: self
                .capture_lens
                .iter()
                .map(|&l| Vec::with_capacity(l * n))
                .collect(),
            capture_lens: self.capture_lens.clone(),
            pred: Vec::with_capacity(n),
            confidence: Vec::with_capacity(n),
        };
        let mut padded = vec![0f32; FORWARD_CHUNK * sample_len];
        for start in (0..n).step_by(FORWARD_CHUNK) {
            let rows = (n - start).min(FORWARD_CHUNK);
            padded[..rows * sample_len]
                .copy_from_slice(&x[start * sample_len..(start + rows) * sample_len]);
            padded[rows * sample_len..].fill(0.0);
            tch::no_grad(|| self.forward_chunk(&padded, rows, &mut out))?;
        }
        Ok(out)
    }

    fn forward_chunk(&self, x: &[f32], rows: usize, out: &mut ForwardOutput) -> anyhow::Result<()> {
        let x = self.batch_tensor(x, FORWARD_CHUNK);
        let mut h = x.f_sub(&self.mean)?.f_div(&self.std)?;
        let mut op = 0;
        for (layer, is_graph_op) in &self.layers {
            if *is_graph_op {
                append_rows(&h, rows, &mut out.captures[op])?;
                op += 1;
            }
            h = apply(layer, h)?;
        }
        let logits = h.f_flatten(1, -1)?.narrow(0, 0, rows as i64);
        let pred = logits.f_argmax(1, false)?.to_device(TchDevice::Cpu);
        let conf = logits
            .f_softmax(1, Kind::Float)?
            .f_amax(1, false)?
            .to_device(TchDevice::Cpu);
        out.pred.extend(Vec::<i64>::try_from(&pred)?);
        out.confidence.extend(Vec::<f32>::try_from(&conf)?);
        Ok(())
    }
}

fn apply(layer: &TchLayer, h: Tensor) -> anyhow::Result<Tensor> {
    Ok(match layer {
        TchLayer::Conv {
            weight,
            bias,
            stride,
            padding,
            dilation,
        } => h.f_conv2d(weight, bias.as_ref(), stride, padding, dilation, 1)?,
        TchLayer::Linear { weight, bias } => h.f_linear(weight, bias.as_ref())?,
        TchLayer::MaxPool {
            kernel,
            stride,
            padding,
        } => h.f_max_pool2d(kernel, stride, padding, [1, 1], false)?,
        TchLayer::AvgPool {
            kernel,
            stride,
            padding,
        } => h.f_avg_pool2d(kernel, stride, padding, false, true, None::<i64>)?,
        TchLayer::Relu => h.f_relu()?,
        TchLayer::LeakyRelu(slope) => {
            let neg = h.f_mul_scalar(*slope)?;
            h.f_where_self(&h.f_gt(0.0)?, &neg)?
        }
        TchLayer::Sigmoid => h.f_sigmoid()?,
        TchLayer::Tanh => h.f_tanh()?,
        TchLayer::Flatten => h.f_flatten(1, -1)?,
        TchLayer::Identity => h,
    })
}

fn append_rows(h: &Tensor, rows: usize, dst: &mut Vec<f32>) -> anyhow::Result<()> {
    let t = h
        .narrow(0, 0, rows as i64)
        .to_device(TchDevice::Cpu)
        .contiguous()
        .f_flatten(0, -1)?;
    let len = t.numel();
    let start = dst.len();
    dst.resize(start + len, 0.0);
    t.f_copy_data(&mut dst[start..], len)?;
    Ok(())
}
