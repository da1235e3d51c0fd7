//! Model spec: a TOML file that lists a network's ops in order.
//!
//! `ModelSpec::load` parses and checks the file; `Network::resolve` walks the ops with the input
//! shape, fills in inferred channel and feature counts, and computes every layer's output shape.
//! Nothing here touches tch: the topology core and the tests use these types directly.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A shape without the batch dimension: `[C, H, W]` for images, `[F]` for feature vectors.
pub type Shape = Vec<usize>;

/// Errors found in a spec, each naming the file, the layer and the key.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    // The io error is shown, not chained as a source: `{:#}` would print it twice.
    #[error("cannot read model spec {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("model spec {path} is not valid TOML for a spec: {message}\n  fix: see the model spec section of README.md for the keys each op takes")]
    Parse { path: PathBuf, message: String },
    #[error("model spec {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// An int, or a pair `[h, w]`, as PyTorch accepts for kernel sizes, strides and paddings.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrPair {
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

/// One `[[layers]]` table as written. Every key any op can take is listed so that unknown keys are
/// rejected by serde, and keys that do not apply to an op are rejected by `Network::resolve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEntry {
    pub name: Option<String>,
    pub op: String,
    pub out_channels: Option<usize>,
    pub out_features: Option<usize>,
    pub in_channels: Option<usize>,
    pub in_features: Option<usize>,
    pub kernel_size: Option<IntOrPair>,
    pub stride: Option<IntOrPair>,
    pub padding: Option<IntOrPair>,
    pub dilation: Option<IntOrPair>,
    pub bias: Option<bool>,
    pub negative_slope: Option<f32>,
    pub p: Option<f32>,
}

/// The spec file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub format_version: u32,
    pub name: String,
    pub input_shape: Vec<usize>,
    /// Weights file named by the spec, relative to the spec file.
    pub weights: Option<PathBuf>,
    pub layers: Vec<LayerEntry>,
    /// Where the spec was read from (not a TOML key).
    #[serde(skip)]
    pub path: PathBuf,
}

impl ModelSpec {
    pub fn load(path: &Path) -> Result<ModelSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|error| SpecError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut spec = ModelSpec::parse(&text, path)?;
        spec.path = path.to_path_buf();
        Ok(spec)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ModelSpec, SpecError> {
        let mut spec: ModelSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        spec.path = path.to_path_buf();
        if spec.format_version != 1 {
            return Err(SpecError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "format_version = {} is not supported; this actopo reads format_version = 1",
                    spec.format_version
                ),
            });
        }
        Ok(spec)
    }

    /// The weights file the spec names, resolved against the spec's folder.
    pub fn weights_path(&self) -> Option<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.weights.as_ref().map(|w| dir.join(w))
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
}

/// One layer of a resolved network, with the shapes it reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub name: String,
    pub op: Op,
    pub in_shape: Shape,
    pub out_shape: Shape,
}

/// A spec resolved against its input shape: every layer with its op and shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub name: String,
    pub input_shape: Shape,
    pub layers: Vec<Layer>,
}

/// Values in a shape. Shapes of a resolved `Network` are checked to have at most `MAX_VALUES`.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Values in a shape, or None when the product overflows.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Most values one input or one layer's output may have: every value is a vertex whose unit id is
/// a u32 (docs/limits.md).
pub const MAX_VALUES: usize = u32::MAX as usize;

/// Largest kernel size, stride, padding or dilation (docs/limits.md): far above any real network,
/// low enough that window arithmetic cannot overflow and edge bounds are quick to count.
pub const MAX_WINDOW: usize = 65_535;

/// Checks that a shape has at most `MAX_VALUES` values; the error says how many it has.
fn check_values(shape: &[usize]) -> Result<(), String> {
    match checked_numel(shape) {
        Some(n) if n <= MAX_VALUES => Ok(()),
        Some(n) => Err(format!(
            "{} has {n} values per input, more than the {MAX_VALUES} that 32-bit unit ids can number",
            ShapeStr(shape)
        )),
        None => Err(format!(
            "{} has more values per input than 64-bit arithmetic can count (the {MAX_VALUES} that 32-bit unit ids can number is the limit)",
            ShapeStr(shape)
        )),
    }
}

struct ShapeStr<'a>(&'a [usize]);
impl fmt::Display for ShapeStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

/// Keys each op accepts besides `name` and `op`.
fn allowed_keys(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "conv2d" => &[
            "out_channels",
            "in_channels",
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "bias",
        ],
        "linear" => &["out_features", "in_features", "bias"],
        "max_pool2d" | "avg_pool2d" => &["kernel_size", "stride", "padding"],
        "leaky_relu" => &["negative_slope"],
        "dropout" => &["p"],
        "relu" | "sigmoid" | "tanh" | "flatten" => &[],
        _ => return None,
    })
}

const OPS: &str =
    "conv2d, linear, max_pool2d, avg_pool2d, relu, leaky_relu, sigmoid, tanh, flatten, dropout";

fn present_keys(e: &LayerEntry) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let checks: [(&'static str, bool); 11] = [
        ("out_channels", e.out_channels.is_some()),
        ("out_features", e.out_features.is_some()),
        ("in_channels", e.in_channels.is_some()),
        ("in_features", e.in_features.is_some()),
        ("kernel_size", e.kernel_size.is_some()),
        ("stride", e.stride.is_some()),
        ("padding", e.padding.is_some()),
        ("dilation", e.dilation.is_some()),
        ("bias", e.bias.is_some()),
        ("negative_slope", e.negative_slope.is_some()),
        ("p", e.p.is_some()),
    ];
    for (k, present) in checks {
        if present {
            keys.push(k);
        }
    }
    keys
}

impl Network {
    /// Resolves a spec: names layers, checks keys, infers input counts, computes shapes.
    /// All problems found are reported together, one per line.
    pub fn resolve(spec: &ModelSpec) -> Result<Network, SpecError> {
        let mut problems: Vec<String> = Vec::new();
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut shape: Shape = spec.input_shape.clone();
        if !(shape.len() == 1 || shape.len() == 3) || shape.contains(&0) {
            problems.push(format!(
                "input_shape = {} must be [C, H, W] or [features] with no zero dimension",
                ShapeStr(&shape)
            ));
        } else if let Err(e) = check_values(&shape) {
            problems.push(format!("input_shape = {e}; use a smaller input"));
        }
        if !problems.is_empty() {
            return Err(SpecError::Invalid {
                path: spec.path.clone(),
                message: problems.join("\n  "),
            });
        }
        let mut names = std::collections::HashSet::new();
        for (i, entry) in spec.layers.iter().enumerate() {
            let name = entry.name.clone().unwrap_or_else(|| i.to_string());
            let at = format!("layer {i} ({name}, op = \"{}\")", entry.op);
            if !names.insert(name.clone()) {
                problems.push(format!(
                    "{at}: the name `{name}` is used twice; layer names must be unique"
                ));
            }
            if name == "input" {
                problems.push(format!(
                    "{at}: `input` is reserved for the input layer; pick another name"
                ));
            }
            let Some(allowed) = allowed_keys(&entry.op) else {
                problems.push(format!(
                    "{at}: unknown op `{}`; expected one of {OPS}",
                    entry.op
                ));
                break; // shapes after an unknown op cannot be inferred
            };
            let mut bad_key = false;
            for key in present_keys(entry) {
                if !allowed.contains(&key) {
                    problems.push(format!(
                        "{at}: key `{key}` does not apply to {}; remove it (accepted: {})",
                        entry.op,
                        if allowed.is_empty() {
                            "none".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ));
                    bad_key = true;
                }
            }
            if bad_key {
                break;
            }
            match resolve_op(entry, &shape).and_then(|(op, out)| {
                check_values(&out).map_err(|e| format!("output {e}; {}", shrink_hint(&op)))?;
                Ok((op, out))
            }) {
                Ok((op, out_shape)) => {
                    layers.push(Layer {
                        name,
                        op,
                        in_shape: shape.clone(),
                        out_shape: out_shape.clone(),
                    });
                    shape = out_shape;
                }
                Err(message) => {
                    problems.push(format!("{at}: {message}"));
                    break;
                }
            }
        }
        if spec.layers.is_empty() {
            problems.push("the spec has no [[layers]]".to_string());
        }
        if !problems.is_empty() {
            return Err(SpecError::Invalid {
                path: spec.path.clone(),
                message: problems.join("\n  "),
            });
        }
        Ok(Network {
            name: spec.name.clone(),
            input_shape: spec.input_shape.clone(),
            layers,
        })
    }

    /// The layers that add vertices and edges, in order.
    pub fn graph_layers(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| l.op.is_graph_op())
    }

    pub fn output_shape(&self) -> &[usize] {
        self.layers
            .last()
            .map(|l| l.out_shape.as_slice())
            .unwrap_or(&self.input_shape)
    }
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

/// What to lower when a layer's output is too large.
fn shrink_hint(op: &Op) -> &'static str {
    match op {
        Op::Conv2d(_) => "lower out_channels or raise stride",
        Op::Linear(_) => "lower out_features",
        _ => "use a smaller input_shape",
    }
}

fn need_image(op: &str, shape: &[usize]) -> Result<(usize, usize, usize), String> {
    if shape.len() != 3 {
        return Err(format!(
            "{op} needs a [C, H, W] input but gets {}; {op} cannot follow flatten or linear",
            ShapeStr(shape)
        ));
    }
    Ok((shape[0], shape[1], shape[2]))
}

/// Output size of a sliding window along one axis (PyTorch floor mode); None when the window does
/// not fit (or the sizes overflow, which `MAX_WINDOW` and `MAX_VALUES` rule out on 64-bit).
fn window_out(size: usize, kernel: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    let span = dil.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = size.checked_add(pad.checked_mul(2)?)?;
    Some(padded.checked_sub(span)? / stride + 1)
}

fn resolve_op(e: &LayerEntry, shape: &[usize]) -> Result<(Op, Shape), String> {
    match e.op.as_str() {
        "conv2d" => {
            let (c, h, w) = need_image("conv2d", shape)?;
            let out_channels = positive(
                e.out_channels.ok_or("missing key `out_channels`")?,
                "out_channels",
            )?;
            if let Some(ic) = e.in_channels {
                if ic != c {
                    return Err(format!("in_channels = {ic} but the input has {c} channels (shape {}); remove in_channels or fix it", ShapeStr(shape)));
                }
            }
            let kernel = pair_positive(
                e.kernel_size.ok_or("missing key `kernel_size`")?.pair(),
                "kernel_size",
            )?;
            let stride = pair_positive(e.stride.map_or([1, 1], |s| s.pair()), "stride")?;
            let padding = window_sized(e.padding.map_or([0, 0], |s| s.pair()), "padding")?;
            let dilation = pair_positive(e.dilation.map_or([1, 1], |s| s.pair()), "dilation")?;
            let oh = window_out(h, kernel[0], stride[0], padding[0], dilation[0]);
            let ow = window_out(w, kernel[1], stride[1], padding[1], dilation[1]);
            let (Some(oh), Some(ow)) = (oh, ow) else {
                return Err(format!(
                    "kernel {kernel:?} with dilation {dilation:?} does not fit the input {} with padding {padding:?}",
                    ShapeStr(shape)
                ));
            };
            Ok((
                Op::Conv2d(Conv2d {
                    in_channels: c,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    bias: e.bias.unwrap_or(true),
                }),
                vec![out_channels, oh, ow],
            ))
        }
        "linear" => {
            if shape.len() != 1 {
                return Err(format!(
                    "linear needs a flat input but gets {}; add {{ op = \"flatten\" }} before it",
                    ShapeStr(shape)
                ));
            }
            let in_features = shape[0];
            if let Some(f) = e.in_features {
                if f != in_features {
                    return Err(format!("in_features = {f} but the input has {in_features} features; remove in_features or fix it"));
                }
            }
            let out_features = positive(
                e.out_features.ok_or("missing key `out_features`")?,
                "out_features",
            )?;
            Ok((
                Op::Linear(Linear {
                    in_features,
                    out_features,
                    bias: e.bias.unwrap_or(true),
                }),
                vec![out_features],
            ))
        }
        "max_pool2d" | "avg_pool2d" => {
            let (c, h, w) = need_image(&e.op, shape)?;
            let kernel = pair_positive(
                e.kernel_size.ok_or("missing key `kernel_size`")?.pair(),
                "kernel_size",
            )?;
            let stride = pair_positive(e.stride.map_or(kernel, |s| s.pair()), "stride")?;
            let padding = window_sized(e.padding.map_or([0, 0], |s| s.pair()), "padding")?;
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
            let op = if e.op == "max_pool2d" {
                Op::MaxPool2d(pool)
            } else {
                Op::AvgPool2d(pool)
            };
            Ok((op, vec![c, oh, ow]))
        }
        "relu" => Ok((Op::Relu, shape.to_vec())),
        "leaky_relu" => Ok((
            Op::LeakyRelu {
                negative_slope: e.negative_slope.unwrap_or(0.01),
            },
            shape.to_vec(),
        )),
        "sigmoid" => Ok((Op::Sigmoid, shape.to_vec())),
        "tanh" => Ok((Op::Tanh, shape.to_vec())),
        "flatten" => Ok((Op::Flatten, vec![numel(shape)])),
        "dropout" => Ok((Op::Dropout, shape.to_vec())),
        other => Err(format!("unknown op `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CCFF: &str = include_str!("../models/ccff.toml");

    #[test]
    fn resolves_ccff_shapes_and_default_names() {
        let spec = ModelSpec::parse(CCFF, Path::new("ccff.toml")).unwrap();
        let net = Network::resolve(&spec).unwrap();
        let shapes: Vec<_> = net.layers.iter().map(|l| l.out_shape.clone()).collect();
        assert_eq!(shapes[0], vec![3, 24, 24]);
        assert_eq!(shapes[2], vec![3, 22, 22]);
        assert_eq!(shapes[4], vec![1452]);
        assert_eq!(shapes[7], vec![10]);
        assert_eq!(net.layers[5].name, "5");
        assert_eq!(net.graph_layers().count(), 4);
    }

    #[test]
    fn pool_and_dilation_shapes_follow_pytorch() {
        let text = r#"
format_version = 1
name = "x"
input_shape = [2, 9, 8]
[[layers]]
name = "c"
op = "conv2d"
out_channels = 4
kernel_size = [3, 2]
stride = [2, 1]
padding = 1
dilation = 2
[[layers]]
name = "p"
op = "max_pool2d"
kernel_size = 3
stride = 1
padding = 1
[[layers]]
name = "a"
op = "avg_pool2d"
kernel_size = 2
"#;
        let net = Network::resolve(&ModelSpec::parse(text, Path::new("x.toml")).unwrap()).unwrap();
        // H: (9 + 2 - 5) / 2 + 1 = 4; W: (8 + 2 - 3) / 1 + 1 = 8
        assert_eq!(net.layers[0].out_shape, vec![4, 4, 8]);
        assert_eq!(net.layers[1].out_shape, vec![4, 4, 8]);
        assert_eq!(net.layers[2].out_shape, vec![4, 2, 4]);
    }

    #[test]
    fn errors_name_layer_and_key() {
        let text = r#"
format_version = 1
name = "x"
input_shape = [1, 8, 8]
[[layers]]
name = "r"
op = "relu"
kernel_size = 3
"#;
        let err = Network::resolve(&ModelSpec::parse(text, Path::new("m.toml")).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml"), "{err}");
        assert!(err.contains("layer 0 (r"), "{err}");
        assert!(err.contains("kernel_size"), "{err}");

        let text = text.replace("op = \"relu\"\nkernel_size = 3", "op = \"softmax\"");
        let err = Network::resolve(&ModelSpec::parse(&text, Path::new("m.toml")).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown op `softmax`"), "{err}");

        let err = ModelSpec::parse(
            "format_version = 1\nname = \"x\"\ninput_shape = [3]\ncolour = 1\nlayers = []",
            Path::new("m.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn linear_after_image_asks_for_flatten() {
        let text = r#"
format_version = 1
name = "x"
input_shape = [1, 4, 4]
[[layers]]
op = "linear"
out_features = 3
"#;
        let err = Network::resolve(&ModelSpec::parse(text, Path::new("m.toml")).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("flatten"), "{err}");
    }

    #[test]
    fn sizes_past_unit_ids_or_windows_are_refused_before_any_arithmetic_wraps() {
        let spec = |input: &str, layer: &str| {
            let text = format!(
                "format_version = 1\nname = \"x\"\ninput_shape = {input}\n[[layers]]\nname = \"l\"\n{layer}\n"
            );
            let spec = ModelSpec::parse(&text, Path::new("m.toml")).unwrap();
            Network::resolve(&spec)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // 2^32 cubed wraps to 0 in 64 bits.
        let err = spec("[4294967296, 4294967296, 4294967296]", "op = \"relu\"").unwrap_err();
        assert!(
            err.contains("input_shape") && err.contains("use a smaller input"),
            "{err}"
        );
        let err = spec("[1, 65536, 65536]", "op = \"relu\"").unwrap_err();
        assert!(err.contains("4294967296 values per input"), "{err}");
        assert!(spec("[1, 65535, 65535]", "op = \"relu\"").is_ok());
        let conv = "op = \"conv2d\"\nkernel_size = 1\nout_channels = 100000000";
        let err = spec("[1, 8, 8]", conv).unwrap_err();
        assert!(
            err.contains("layer 0 (l") && err.contains("lower out_channels"),
            "{err}"
        );
        let err = spec("[8]", "op = \"linear\"\nout_features = 5000000000").unwrap_err();
        assert!(err.contains("lower out_features"), "{err}");
        let err = spec(
            "[1, 8, 8]",
            "op = \"max_pool2d\"\nkernel_size = 2\npadding = 18446744073709551615",
        )
        .unwrap_err();
        assert!(
            err.contains("`padding` = 18446744073709551615 is above 65535"),
            "{err}"
        );
        let err = spec(
            "[1, 8, 8]",
            "op = \"conv2d\"\nout_channels = 1\nkernel_size = 3\ndilation = 70000",
        )
        .unwrap_err();
        assert!(err.contains("`dilation` = 70000"), "{err}");
    }
}
