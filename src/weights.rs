//! Model weights: a safetensors file with `<layer>.weight` and `<layer>.bias` tensors, read into
//! plain f32 arrays and checked against a resolved `Network`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::output::fingerprint::hex_sha256;
use crate::spec::{Layer, Network, Param};

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
    /// A batch norm's running mean and variance.
    pub running: Option<RunningStats>,
}

/// A batch norm's `.running_mean` and `.running_var`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningStats {
    pub mean: Tensor,
    pub var: Tensor,
}

/// All weights of a network, keyed by layer name; checked to fit the network.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    pub by_layer: BTreeMap<String, LayerWeights>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    // The io error is shown, not chained as a source: `{:#}` would print it twice.
    #[error(
        "cannot read safetensors file {path}: {error}\n  fix: check the path and its permissions"
    )]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("weights file {path} is not a valid safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    /// A file of another kind (a PyTorch checkpoint), or tensors this version cannot use.
    #[error("weights file {path} {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("weights file {path} does not fit model spec {spec}:\n  {}", problems.join("\n  "))]
    Mismatch {
        path: PathBuf,
        spec: PathBuf,
        problems: Vec<String>,
    },
}

/// Reads every tensor of a safetensors file as f32 (f16, bf16 and f64 are converted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    parse_safetensors(path, &read_file(path)?)
}

fn read_file(path: &Path) -> Result<Vec<u8>, WeightsError> {
    std::fs::read(path).map_err(|error| WeightsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// The tensors of a safetensors file's bytes, read from `path` (named in messages).
fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let unsupported = |message| WeightsError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let st = match SafeTensors::deserialize(bytes) {
        Ok(st) => st,
        Err(e) => {
            return Err(match pytorch_checkpoint(bytes) {
                Some(kind) => unsupported(format!("is a PyTorch checkpoint ({kind}), not a safetensors file\n  fix: {SAVE_SAFETENSORS}")),
                None => WeightsError::Format {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                },
            })
        }
    };
    tensors_as_f32(&st).map_err(|message| WeightsError::Format {
        path: path.to_path_buf(),
        message,
    })
}

/// How to turn a PyTorch model into weights actopo reads.
const SAVE_SAFETENSORS: &str = "export the weights with safetensors: `from safetensors.torch import save_file; save_file(model.state_dict(), \"model.safetensors\")` (for a checkpoint: `save_file(torch.load(\"model.pt\"), \"model.safetensors\")`, taking its state dict when it holds more), then set model.weights to the new file";

/// What kind of PyTorch file `bytes` is, from its first bytes: `torch.save` writes a zip archive
/// (`PK\x03\x04`) since PyTorch 1.6, a pickle (protocol 2+ starts with 0x80) before.
fn pytorch_checkpoint(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [b'P', b'K', 3, 4, ..] => Some("a torch.save zip archive"),
        [0x80, 2..=5, ..] => Some("a torch.save pickle"),
        _ => None,
    }
}

/// A batch norm's step counter in a state dict: unused at inference, so skipped when read.
const BATCHES_TRACKED: &str = "num_batches_tracked";

/// The message for a tensor no layer uses; batch-norm buffers get a hint of their own.
fn unused_tensor(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((layer, "running_mean" | "running_var")) => format!(
            "tensor `{name}` is a batch norm's buffer but the spec has no batch_norm layer named `{layer}`; add one (op = \"batch_norm2d\" or \"batch_norm1d\", name = \"{layer}\"), or write the spec with scripts/export_torch.py"
        ),
        _ => format!(
            "tensor `{name}` belongs to no layer of the spec; layer names are the `name` keys (or positions \"0\", \"1\", ...)"
        ),
    }
}

fn tensors_as_f32(st: &SafeTensors) -> Result<BTreeMap<String, Tensor>, String> {
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if name
            .rsplit_once('.')
            .is_some_and(|(_, t)| t == BATCHES_TRACKED)
        {
            continue;
        }
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
                    "tensor `{name}` has dtype {other:?}: an integer or boolean tensor is a buffer, not a weight; weights must be f32, f64, f16 or bf16\n  fix: save only the model's parameters: `save_file({{k: v.detach() for k, v in model.named_parameters()}}, \"model.safetensors\")`"
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
    /// Reads `path` and checks it against `net`; `spec_path` is only used in messages. Also gives
    /// the SHA-256 (hex) of the bytes read, for the run identity.
    pub(crate) fn load(
        path: &Path,
        net: &Network,
        spec_path: &Path,
    ) -> Result<(Weights, String), WeightsError> {
        let bytes = read_file(path)?;
        // The hash on a thread of its own: 0.1 s of AlexNet-CIFAR's start-up, beside the parse.
        let (sha256, weights) = std::thread::scope(|scope| {
            let sha256 = scope.spawn(|| hex_sha256(&bytes));
            let weights = parse_safetensors(path, &bytes).and_then(|tensors| {
                Weights::from_tensors(tensors, net).map_err(|problems| WeightsError::Mismatch {
                    path: path.to_path_buf(),
                    spec: spec_path.to_path_buf(),
                    problems,
                })
            });
            (sha256.join().expect("SHA-256 does not panic"), weights)
        });
        Ok((weights?, sha256))
    }

    /// Picks each layer's tensors out of `tensors`. Every problem is returned, one per line:
    /// a missing tensor, a wrong shape, non-finite values, or tensors no layer uses.
    pub fn from_tensors(
        mut tensors: BTreeMap<String, Tensor>,
        net: &Network,
    ) -> Result<Weights, Vec<String>> {
        if let Some(problem) = positions_differ(&tensors, net) {
            return Err(vec![problem]);
        }
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
            let running = running_stats(&mut tensors, layer, &mut problems);
            if let Some(weight) = weight {
                let weights = LayerWeights {
                    weight,
                    bias,
                    running,
                };
                by_layer.insert(layer.name.clone(), weights);
            }
        }
        problems.extend(tensors.keys().map(|name| unused_tensor(name)));
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

/// The common trap of an `nn.Sequential` whose positions differ from the spec's (an
/// `nn.Flatten()` first that the spec leaves out shifts every name by one): when the layers whose
/// weights are missing would fit exactly the file's unused tensors, taken in the order of their
/// numeric prefixes, says so in two lines with the `name`s to set, instead of a line per tensor.
fn positions_differ(tensors: &BTreeMap<String, Tensor>, net: &Network) -> Option<String> {
    let params: Vec<(usize, &Layer)> = net
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.op.weight_shape().is_some())
        .collect();
    let wanted: std::collections::HashSet<String> = params
        .iter()
        .flat_map(|(_, l)| [format!("{}.weight", l.name), format!("{}.bias", l.name)])
        .collect();
    let fits = |layer: &Layer, prefix: &str| {
        let fit = |what: &str, shape: Option<Vec<usize>>| {
            let tensor = tensors.get(&format!("{prefix}.{what}"));
            tensor.map(|t| &t.shape) == shape.as_ref()
        };
        fit("weight", layer.op.weight_shape()) && fit("bias", layer.op.bias_shape())
    };
    let (missing, found): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(_, l)| !tensors.contains_key(&format!("{}.weight", l.name)));
    // Only when the rest of the file fits: otherwise every problem is listed.
    if !found.iter().all(|(_, l)| fits(l, &l.name)) {
        return None;
    }
    let mut prefixes = Vec::new();
    for name in tensors.keys().filter(|n| !wanted.contains(*n)) {
        let (prefix, _) = name.rsplit_once('.')?;
        prefixes.push(prefix.parse::<usize>().ok()?);
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    if missing.is_empty() || prefixes.len() != missing.len() {
        return None;
    }
    let mut used = 0;
    for ((_, layer), prefix) in missing.iter().zip(&prefixes) {
        if !fits(layer, &prefix.to_string()) {
            return None;
        }
        used += 1 + usize::from(layer.op.bias_shape().is_some());
    }
    if used != tensors.keys().filter(|n| !wanted.contains(*n)).count() {
        return None;
    }
    Some(rename_fix(net, &missing, &prefixes))
}

/// The two lines of `positions_differ`: what the names say, and the `name`s to set.
fn rename_fix(net: &Network, missing: &[(usize, &Layer)], prefixes: &[usize]) -> String {
    let renames: Vec<(usize, String)> = missing
        .iter()
        .zip(prefixes)
        .map(|((i, _), p)| (*i, p.to_string()))
        .collect();
    let names = layer_names(net, &renames);
    let unique = if names.len() > renames.len() {
        " (layer names must be unique)"
    } else {
        ""
    };
    format!(
        "{}\n  fix: set each layer's `name` in the spec to its state-dict prefix: {}{unique}",
        why_positions_differ(missing, prefixes),
        names.join(", ")
    )
}

/// What the file's names say, and the likely cause when they are the spec's positions shifted.
fn why_positions_differ(missing: &[(usize, &Layer)], prefixes: &[usize]) -> String {
    let list = |names: Vec<String>| {
        let shown: Vec<String> = names
            .iter()
            .take(3)
            .map(|n| format!("`{n}.weight`"))
            .collect();
        shown.join(", ") + if names.len() > 3 { ", ..." } else { "" }
    };
    let found = list(prefixes.iter().map(|p| p.to_string()).collect());
    let expected = list(missing.iter().map(|(_, l)| l.name.clone()).collect());
    let shift = prefixes[0] as i64 - missing[0].0 as i64;
    let shifted = missing
        .iter()
        .zip(prefixes)
        .all(|((i, l), p)| l.name == i.to_string() && *p as i64 - *i as i64 == shift);
    if shifted && shift > 0 {
        format!(
            "the file names its tensors by the PyTorch model's nn.Sequential positions, which are the spec's layer positions shifted by {shift} ({found} where the spec expects {expected}): the PyTorch model has {shift} module(s) the spec leaves out, e.g. an nn.Flatten() first"
        )
    } else {
        format!(
            "the file names its tensors by nn.Sequential positions that are not the spec's layer names ({found} where the spec expects {expected})"
        )
    }
}

/// The `name = ...` settings that give layer `i` the name `renames[i]`; a layer whose current
/// name one of them takes gets a new one too (`<op><position>`), since names must be unique.
fn layer_names(net: &Network, renames: &[(usize, String)]) -> Vec<String> {
    let mut names: Vec<String> = net.layers.iter().map(|l| l.name.clone()).collect();
    let mut changed = std::collections::BTreeSet::new();
    for (i, name) in renames {
        names[*i] = name.clone();
        changed.insert(*i);
    }
    for i in 0..names.len() {
        if changed.contains(&i) || !renames.iter().any(|(_, n)| *n == names[i]) {
            continue;
        }
        let mut fresh = format!("{}{i}", net.layers[i].op.kind());
        while names.contains(&fresh) {
            fresh.push('_');
        }
        names[i] = fresh;
        changed.insert(i);
    }
    changed
        .iter()
        .map(|&i| {
            format!(
                "layer {i} ({}) `name = \"{}\"`",
                net.layers[i].op.kind(),
                names[i]
            )
        })
        .collect()
}

/// A batch norm's running statistics (None for other ops, or when one is missing: a problem).
fn running_stats(
    tensors: &mut BTreeMap<String, Tensor>,
    layer: &Layer,
    problems: &mut Vec<String>,
) -> Option<RunningStats> {
    let stats: Vec<Option<Tensor>> = (layer.op.params().into_iter())
        .filter(|(p, _)| matches!(p, Param::RunningMean | Param::RunningVar))
        .map(|(p, shape)| take(tensors, layer, p.suffix(), &shape, problems))
        .collect();
    let [Some(mean), Some(var)] = <[Option<Tensor>; 2]>::try_from(stats).ok()? else {
        return None;
    };
    if var.data.iter().any(|&v| v < 0.0) {
        problems.push(format!(
            "`{}.running_var` has a negative value; a variance is at least 0 (was the file written from a trained model's state_dict?)",
            layer.name
        ));
        return None;
    }
    Some(RunningStats { mean, var })
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
                layer.in_shape()
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

    /// A network from spec `layers` (TOML `[[layers]]` tables) over `input_shape`.
    fn network(input_shape: &str, layers: &str) -> Network {
        let text =
            format!("format_version = 1\nname = \"t\"\ninput_shape = {input_shape}\n{layers}");
        crate::spec::resolve_toml(&text).unwrap()
    }

    const MLP: &str = "[[layers]]\nop = \"linear\"\nout_features = 3\n[[layers]]\nop = \"relu\"\n[[layers]]\nop = \"linear\"\nout_features = 2\n";

    fn tensors(list: &[(&str, &[usize])]) -> BTreeMap<String, Tensor> {
        list.iter()
            .map(|(name, shape)| {
                let data = vec![0.5; shape.iter().product()];
                let shape = shape.to_vec();
                (name.to_string(), Tensor { shape, data })
            })
            .collect()
    }

    #[test]
    fn sequential_positions_shifted_by_a_flatten_are_one_problem_with_the_names_to_set() {
        let net = network("[4]", MLP);
        let file = tensors(&[
            ("1.weight", &[3, 4]),
            ("1.bias", &[3]),
            ("3.weight", &[2, 3]),
            ("3.bias", &[2]),
        ]);
        let problems = Weights::from_tensors(file, &net).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.lines().count(), 2, "{p}");
        assert!(p.contains("shifted by 1"), "{p}");
        // Layer 1 (relu) holds the name "1" by position: it is renamed too.
        assert!(
            p.contains("layer 0 (linear) `name = \"1\"`, layer 1 (relu) `name = \"relu1\"`, layer 2 (linear) `name = \"3\"` (layer names must be unique)"),
            "{p}"
        );
    }

    #[test]
    fn positions_that_differ_unevenly_are_named_without_a_shift() {
        let net = network("[4]", MLP);
        let file = tensors(&[
            ("1.weight", &[3, 4]),
            ("1.bias", &[3]),
            ("4.weight", &[2, 3]),
            ("4.bias", &[2]),
        ]);
        let problems = Weights::from_tensors(file, &net).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(!problems[0].contains("shifted"), "{}", problems[0]);
        assert!(
            problems[0].contains("layer 0 (linear) `name = \"1\"`, layer 1 (relu) `name = \"relu1\"`, layer 2 (linear) `name = \"4\"`"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn renamed_tensors_that_would_not_fit_keep_the_full_list() {
        let net = network("[4]", MLP);
        // Layer 2's tensors are shaped for another model: renaming would not make the file fit.
        let file = tensors(&[
            ("1.weight", &[3, 4]),
            ("1.bias", &[3]),
            ("3.weight", &[7, 3]),
            ("3.bias", &[7]),
        ]);
        let problems = Weights::from_tensors(file, &net).unwrap_err();
        assert_eq!(problems.len(), 8, "{problems:?}");
    }

    #[test]
    fn pytorch_files_and_batch_norm_buffers_are_recognised() {
        assert_eq!(
            pytorch_checkpoint(b"PK\x03\x04rest"),
            Some("a torch.save zip archive")
        );
        assert_eq!(
            pytorch_checkpoint(&[0x80, 0x02, 0x8a]),
            Some("a torch.save pickle")
        );
        assert_eq!(pytorch_checkpoint(&[8, 0, 0, 0, 0, 0, 0, 0]), None);
        let message = unused_tensor("f.bn.running_var");
        assert!(
            message.contains("no batch_norm layer named `f.bn`"),
            "{message}"
        );
        assert!(unused_tensor("f.weight").contains("belongs to no layer"));
    }

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
