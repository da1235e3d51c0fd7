//! The forward pass and the gradient attacks: the only module that uses tch (libtorch).
//!
//! `TchModel` builds the spec's model graph from the checked weights (`ops`: each op with
//! PyTorch's eval-mode semantics) and runs batched, no-grad forward passes. It evaluates the layers
//! in `Network::layers` order (a topological order), keeping each layer's output only until its
//! last reader has run (`liveness`), and captures every graph op's operands as plain f32 arrays
//! for the topology workers, plus each sample's prediction and softmax confidence. Inputs come in
//! raw units (8-bit images in [0, 1]); the model applies the data's mean/std itself, so attacks can
//! work and clip in raw units with gradients through the normalisation (`attacks`).
//!
//! Batches are cut into fixed chunks of `FORWARD_CHUNK` samples, the last one padded with zeros:
//! libtorch's CPU kernels may round differently for different batch sizes, and outputs must not
//! depend on `pipeline.batch_size` (`docs/exactness.md`).

use anyhow::{bail, Context};
use tch::{Device as TchDevice, Kind, Tensor};

use crate::config::Device;
use crate::model::Model;
use crate::spec::{Layer, LayerInput};

pub mod attacks;
mod cuda;
pub(crate) mod liveness;
mod ops;
pub mod reference;

use ops::TchOp;

/// Samples per forward call; every call sees exactly this many rows.
pub(crate) const FORWARD_CHUNK: usize = 32;

/// One layer of the model graph: its op, what it reads, and what may be dropped after it.
struct Node {
    op: TchOp,
    inputs: Vec<LayerInput>,
    /// A graph op: its operands are captured for the topology workers.
    is_graph_op: bool,
    /// Operands this layer is the last reader of (`liveness`).
    releases: Vec<LayerInput>,
}

/// A model on a device, ready for batched forward passes.
pub struct TchModel {
    /// In `Network::layers` order (topological); the last is the model output.
    nodes: Vec<Node>,
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

/// Picks the torch device for a configured one, opening libtorch's CUDA library first when the
/// device may be a GPU (`cuda`).
pub(crate) fn resolve_device(device: Device) -> anyhow::Result<TchDevice> {
    Ok(match device {
        Device::Cpu => TchDevice::Cpu,
        Device::Auto => {
            cuda::prepare(true);
            TchDevice::cuda_if_available()
        }
        Device::Cuda(n) => {
            let library = cuda::prepare(false);
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                bail!(
                    "`model.device` = \"cuda:{n}\" but {count} CUDA device(s) are visible ({}); use device = \"auto\" or \"cpu\"",
                    library.why_no_device(cuda_failure)
                );
            }
            TchDevice::Cuda(n)
        }
    })
}

/// libtorch's own reason for not reaching a CUDA device: the first line of its error.
fn cuda_failure() -> String {
    match Tensor::f_zeros([1], (Kind::Float, TchDevice::Cuda(0))) {
        Ok(_) => "a tensor could be made on cuda:0".into(),
        Err(e) => e.to_string().lines().next().unwrap_or_default().to_string(),
    }
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
        let net = &model.network;
        let mut nodes = Vec::with_capacity(net.layers.len());
        for (layer, releases) in net.layers.iter().zip(liveness::releases(net)) {
            nodes.push(Node {
                op: TchOp::build(model, layer, device)?,
                inputs: layer.inputs.clone(),
                is_graph_op: layer.op.is_graph_op(),
                releases,
            });
        }
        let input_shape: Vec<i64> = net.input_shape.iter().map(|&d| d as i64).collect();
        let (mean, std) = normalisation(mean, std, &input_shape, device)?;
        Ok(TchModel {
            nodes,
            device,
            input_shape,
            capture_lens: net.graph_layers().map(Layer::operands_numel).collect(),
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
        let h = x.f_sub(&self.mean)?.f_div(&self.std)?;
        Ok(self.evaluate(h, |_, _| Ok(()))?.f_flatten(1, -1)?)
    }

    pub fn device(&self) -> TchDevice {
        self.device
    }

    /// Runs the model graph on a normalised batch `h`; `capture(i, operands)` sees the operands
    /// of the i-th graph op before it runs. Each tensor is dropped once its last reader has run.
    /// Returns the model output (the last layer's).
    fn evaluate(
        &self,
        h: Tensor,
        mut capture: impl FnMut(usize, &[&Tensor]) -> anyhow::Result<()>,
    ) -> anyhow::Result<Tensor> {
        let mut input = Some(h);
        let mut outputs: Vec<Option<Tensor>> = (0..self.nodes.len()).map(|_| None).collect();
        let mut graph_op = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            let out = {
                let operands = (node.inputs.iter())
                    .map(|source| match source {
                        LayerInput::Input => input.as_ref(),
                        LayerInput::Layer(j) => outputs[*j].as_ref(),
                    })
                    .collect::<Option<Vec<&Tensor>>>()
                    .context("a layer reads a tensor already dropped (layers out of order)")?;
                if node.is_graph_op {
                    capture(graph_op, &operands)?;
                    graph_op += 1;
                }
                node.op.apply(&operands)?
            };
            for source in &node.releases {
                match source {
                    LayerInput::Input => input = None,
                    LayerInput::Layer(j) => outputs[*j] = None,
                }
            }
            outputs[i] = Some(out);
        }
        outputs.pop().flatten().context("the model has no layers")
    }

    /// Runs `n` samples (`x` holds n * input numel raw values; the model normalises them).
    pub fn forward(&self, x: &[f32], n: usize) -> anyhow::Result<ForwardOutput> {
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
        self.for_each_chunk(x, n, |chunk, rows| {
            tch::no_grad(|| self.forward_chunk(chunk, rows, &mut out))
        })?;
        Ok(out)
    }

    /// The model outputs (the last layer's, flat per sample) of `n` samples given as they enter
    /// the model, so without `data.mean`/`data.std` unless the model was built with mean 0 and
    /// std 1: sample-major, `n` rows.
    pub fn outputs(&self, x: &[f32], n: usize) -> anyhow::Result<Vec<f32>> {
        let mut out = Vec::new();
        self.for_each_chunk(x, n, |chunk, rows| {
            tch::no_grad(|| {
                let logits = self.logits(&self.batch_tensor(chunk, FORWARD_CHUNK))?;
                append_rows(&logits, rows, &mut out)
            })
        })?;
        Ok(out)
    }

    /// Calls `f(chunk, rows)` on `FORWARD_CHUNK`-row chunks of `n` samples, the last one padded
    /// with zeros (outputs must not depend on the batch size).
    fn for_each_chunk(
        &self,
        x: &[f32],
        n: usize,
        mut f: impl FnMut(&[f32], usize) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let sample_len = self.sample_len();
        anyhow::ensure!(
            x.len() == n * sample_len,
            "batch has {} values for {n} samples of {sample_len}",
            x.len()
        );
        let mut padded = vec![0f32; FORWARD_CHUNK * sample_len];
        for start in (0..n).step_by(FORWARD_CHUNK) {
            let rows = (n - start).min(FORWARD_CHUNK);
            padded[..rows * sample_len]
                .copy_from_slice(&x[start * sample_len..(start + rows) * sample_len]);
            padded[rows * sample_len..].fill(0.0);
            f(&padded, rows)?;
        }
        Ok(())
    }

    fn forward_chunk(&self, x: &[f32], rows: usize, out: &mut ForwardOutput) -> anyhow::Result<()> {
        let x = self.batch_tensor(x, FORWARD_CHUNK);
        let h = x.f_sub(&self.mean)?.f_div(&self.std)?;
        let captures = &mut out.captures;
        let h = self.evaluate(h, |op, operands| {
            append_capture(operands, rows, &mut captures[op])
        })?;
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

/// Appends the first `rows` samples of a graph op's operands to its capture: per sample, operand
/// 0's values (flat, row-major), then operand 1's, ... (one operand but for `add`).
fn append_capture(operands: &[&Tensor], rows: usize, dst: &mut Vec<f32>) -> anyhow::Result<()> {
    match operands {
        [one] => append_rows(one, rows, dst),
        many => {
            let flat = (many.iter())
                .map(|t| t.narrow(0, 0, rows as i64).f_flatten(1, -1))
                .collect::<Result<Vec<Tensor>, _>>()?;
            append_rows(&Tensor::f_cat(&flat, 1)?, rows, dst)
        }
    }
}

fn append_rows(h: &Tensor, rows: usize, dst: &mut Vec<f32>) -> anyhow::Result<()> {
    let h = h.narrow(0, 0, rows as i64);
    let start = dst.len();
    dst.resize(start + h.numel(), 0.0);
    // One copy from wherever `h` is straight into `dst`, through a CPU tensor laid over it: from
    // a GPU, going through a fresh CPU tensor cost a second copy and its page faults, and
    // ResNet-18's operands came over at 0.9 GB/s (docs/performance.md, "Ninth round").
    let target = &mut dst[start..];
    // SAFETY: `target` holds exactly `h.numel()` f32s (`h`'s shape, contiguous) and outlives
    // `host`, which is dropped at the end of this function; nothing else reads it meanwhile.
    let mut host = unsafe {
        Tensor::f_from_blob(
            target.as_mut_ptr().cast::<u8>(),
            &h.size(),
            &[],
            Kind::Float,
            TchDevice::Cpu,
        )?
    };
    host.f_copy_(&h)?;
    Ok(())
}

#[cfg(test)]
mod tests;
