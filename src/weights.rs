//! Model weights: a safetensors file with `<layer>.weight` and `<layer>.bias` tensors, read into
//! plain f32 arrays and checked against a resolved `Network`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::spec::{Layer, Network};

/// A dense f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Weights of one parameterised layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

/// All weights of a network, keyed by layer name; checked to fit the network.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    pub by_layer: BTreeMap<String, LayerWeights>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}\n  fix: set model.weights (or `weights` in the spec) to an existing .safetensors file")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights file {path} is not a valid safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("weights file {path} does not fit model spec {spec}:\n  {}", problems.join("\n  "))]
    Mismatch {
        path: PathBuf,
        spec: PathBuf,
        problems: Vec<String>,
    },
}

/// Reads every tensor of a safetensors file as f32 (f16, bf16 and f64 are converted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_safetensors(&bytes).map_err(|message| WeightsError::Format {
        path: path.to_path_buf(),
        message,
    })
}

pub fn parse_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect(),
            other => {
                return Err(format!(
                    "tensor `{name}` has dtype {other:?}; weights must be f32, f64, f16 or bf16"
                ))
            }
        };
        out.insert(
            name.to_string(),
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value = f * 2^-24
            let v = f as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

impl Weights {
    /// Reads `path` and checks it against `net`; `spec_path` is only used in messages.
    pub fn load(path: &Path, net: &Network, spec_path: &Path) -> Result<Weights, WeightsError> {
        let tensors = read_safetensors(path)?;
        Weights::from_tensors(tensors, net).map_err(|problems| WeightsError::Mismatch {
            path: path.to_path_buf(),
            spec: spec_path.to_path_buf(),
            problems,
        })
    }

    /// Picks each layer's tensors out of `tensors`. Every problem is returned, one per line:
    /// a missing tensor, a wrong shape, non-finite values, or tensors no layer uses.
    pub fn from_tensors(
        mut tensors: BTreeMap<String, Tensor>,
        net: &Network,
    ) -> Result<Weights, Vec<String>> {
        let mut problems = Vec::new();
        let mut by_layer = BTreeMap::new();
        for layer in &net.layers {
            let Some(wshape) = layer.op.weight_shape() else {
                continue;
            };
            let weight = take(&mut tensors, layer, "weight", &wshape, &mut problems);
            let bias = match layer.op.bias_shape() {
                Some(bshape) => take(&mut tensors, layer, "bias", &bshape, &mut problems),
                None => {
                    let key = format!("{}.bias", layer.name);
                    if tensors.remove(&key).is_some() {
                        problems.push(format!(
                            "layer `{}` ({}) has bias = false in the spec but the file has `{key}`; set bias = true in the spec",
                            layer.name,
                            layer.op.kind()
                        ));
                    }
                    None
                }
            };
            if let Some(weight) = weight {
                by_layer.insert(layer.name.clone(), LayerWeights { weight, bias });
            }
        }
        for name in tensors.keys() {
            problems.push(format!(
                "tensor `{name}` belongs to no layer of the spec; layer names are the `name` keys (or positions \"0\", \"1\", ...)"
            ));
        }
        if problems.is_empty() {
            Ok(Weights { by_layer })
        } else {
            Err(problems)
        }
    }

    pub fn layer(&self, name: &str) -> Option<&LayerWeights> {
        self.by_layer.get(name)
    }
}

fn take(
    tensors: &mut BTreeMap<String, Tensor>,
    layer: &Layer,
    what: &str,
    shape: &[usize],
    problems: &mut Vec<String>,
) -> Option<Tensor> {
    let key = format!("{}.{what}", layer.name);
    match tensors.remove(&key) {
        None => {
            problems.push(format!(
                "layer `{}` ({}): tensor `{key}` is missing; expected shape {shape:?}{}",
                layer.name,
                layer.op.kind(),
                if what == "bias" {
                    " (or set bias = false in the spec)"
                } else {
                    ""
                }
            ));
            None
        }
        Some(t) if t.shape != shape => {
            problems.push(format!(
                "layer `{}` ({}): tensor `{key}` has shape {:?} but the spec needs {shape:?} (input shape {:?})",
                layer.name,
                layer.op.kind(),
                t.shape,
                layer.in_shape
            ));
            None
        }
        Some(t) if t.data.iter().any(|v| !v.is_finite()) => {
            problems.push(format!("tensor `{key}` holds NaN or infinite values"));
            None
        }
        Some(t) => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
