//! Model spec: a TOML file that lists a network's ops, in order (format 1) or as a graph whose
//! layers name their inputs (format 2).
//!
//! `ModelSpec::load` parses and checks the file; `Network::resolve` orders the layers
//! topologically (`order`), walks them with the input shape, fills in inferred channel and feature
//! counts, and computes every layer's output shape. Nothing here touches tch: the topology core
//! and the tests use these types directly.

use std::fmt;
use std::path::{Path, PathBuf};

use std::collections::HashSet;

use serde::Deserialize;

use crate::output::fingerprint::hex_sha256;

mod layer_table;
mod ops;
mod order;

use layer_table::LayerTable;
use ops::OpKeys;
pub use ops::{BatchNorm, Conv2d, GeluApproximation, Linear, Op, OpRole, Param, Pool2d};

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

/// The spec file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    format_version: u32,
    pub name: String,
    pub input_shape: Vec<usize>,
    /// Weights file named by the spec, relative to the spec file.
    pub weights: Option<PathBuf>,
    /// The `[[layers]]` tables, read one by one by `Network::resolve` so that every problem of
    /// every table is reported (as figment values: unlike `toml::Value` they hold integers past
    /// i64, which are then refused by name).
    layers: Vec<figment::value::Dict>,
    /// Where the spec was read from (not a TOML key).
    #[serde(skip)]
    pub path: PathBuf,
    /// SHA-256 (hex) of the file's bytes as read by `load`, for the run identity.
    #[serde(skip)]
    pub sha256: String,
}

impl ModelSpec {
    pub fn load(path: &Path) -> Result<ModelSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|error| SpecError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut spec = ModelSpec::parse(&text, path)?;
        spec.path = path.to_path_buf();
        spec.sha256 = hex_sha256(text.as_bytes());
        Ok(spec)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ModelSpec, SpecError> {
        let mut spec: ModelSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        spec.path = path.to_path_buf();
        if !(1..=2).contains(&spec.format_version) {
            return Err(SpecError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "format_version = {} is not supported; this actopo reads format_version = 1 (a sequence of layers) or 2 (layers may name their `inputs`)",
                    spec.format_version
                ),
            });
        }
        Ok(spec)
    }

    fn invalid(&self, problems: &[String]) -> SpecError {
        SpecError::Invalid {
            path: self.path.clone(),
            message: problems.join("\n  "),
        }
    }

    /// The weights file the spec names, resolved against the spec's folder.
    pub(crate) fn weights_path(&self) -> Option<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.weights.as_ref().map(|w| dir.join(w))
    }
}

/// What a layer reads: the model input or an earlier layer's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerInput {
    Input,
    /// Index into `Network::layers`.
    Layer(usize),
}

/// One layer of a resolved network, with the shapes it reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub name: String,
    pub op: Op,
    /// Its operands, in order (one, except for `add` and `cat`).
    pub inputs: Vec<LayerInput>,
    /// Shape of each operand.
    pub in_shapes: Vec<Shape>,
    pub out_shape: Shape,
}

impl Layer {
    /// Shape of the first operand (of every operand, for all ops but `cat`).
    pub fn in_shape(&self) -> &[usize] {
        &self.in_shapes[0]
    }

    /// Values of all its operands together, for one sample: what a graph op's capture holds
    /// (`add`'s operands one after the other).
    pub fn operands_numel(&self) -> usize {
        self.in_shapes.iter().map(|s| numel(s)).sum()
    }
}

/// A spec resolved against its input shape: every layer with its op and shapes, in a topological
/// order (the spec's own order when it is one); the last layer is the model's output.
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
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Most values one input or one layer's output may have: every value is a vertex whose unit id is
/// a u32 (docs/limits.md).
pub(crate) const MAX_VALUES: usize = u32::MAX as usize;

/// Largest kernel size, stride, padding or dilation (docs/limits.md): far above any real network,
/// low enough that window arithmetic cannot overflow and edge bounds are quick to count.
pub(crate) const MAX_WINDOW: usize = 65_535;

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

impl Network {
    /// Resolves a spec: names layers, checks keys and inputs, orders the layers, infers input
    /// counts, computes shapes. All problems found are reported together, one per line: those of
    /// every layer's keys and inputs, cycles, and every layer whose shape cannot be computed from
    /// known input shapes (the shapes after it are unknown).
    pub fn resolve(spec: &ModelSpec) -> Result<Network, SpecError> {
        check_input_shape(&spec.input_shape).map_err(|p| spec.invalid(&[p]))?;
        if spec.layers.is_empty() {
            return Err(spec.invalid(&["the spec has no [[layers]]".to_string()]));
        }
        let mut problems: Vec<String> = Vec::new();
        let mut names = HashSet::new();
        let tables: Vec<LayerTable> = (spec.layers.iter().enumerate())
            .map(|(i, table)| LayerTable::read(i, table))
            .collect();
        for table in &tables {
            problems.extend(name_clash(table, &mut names));
            problems.extend(table.problems.iter().cloned());
        }
        let graph = order::LayerGraph::new(&tables, spec.format_version, &mut problems);
        let order = graph.topological_order(&tables, &mut problems);
        let layers = resolve_shapes(spec, &tables, &graph, &order, &mut problems);
        if !problems.is_empty() {
            return Err(spec.invalid(&problems));
        }
        Ok(Network {
            name: spec.name.clone(),
            input_shape: spec.input_shape.clone(),
            layers,
        })
    }

    /// Indices of the layers that read layer `i`'s output.
    pub fn consumers(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (self.layers.iter().enumerate())
            .filter(move |(_, l)| l.inputs.contains(&LayerInput::Layer(i)))
            .map(|(j, _)| j)
    }

    /// The conv or linear layer a batch norm at `i` can be folded into: the one it directly
    /// follows, when that layer's output feeds nothing else.
    pub fn fold_target(&self, i: usize) -> Option<usize> {
        let layer = &self.layers[i];
        if !matches!(layer.op, Op::BatchNorm2d(_) | Op::BatchNorm1d(_)) {
            return None;
        }
        let [LayerInput::Layer(j)] = layer.inputs[..] else {
            return None;
        };
        let foldable = matches!(self.layers[j].op, Op::Conv2d(_) | Op::Linear(_));
        (foldable && self.consumers(j).count() == 1).then_some(j)
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

/// The input shape is an image or a feature vector, with no zero dimension and few enough values.
fn check_input_shape(shape: &[usize]) -> Result<(), String> {
    if !(shape.len() == 1 || shape.len() == 3) || shape.contains(&0) {
        return Err(format!(
            "input_shape = {} must be [C, H, W] or [features] with no zero dimension",
            ShapeStr(shape)
        ));
    }
    check_values(shape).map_err(|e| format!("input_shape = {e}; use a smaller input"))
}

/// A name used twice, or the reserved `input`.
fn name_clash(table: &LayerTable, names: &mut HashSet<String>) -> Vec<String> {
    let (at, name) = (&table.at, &table.name);
    let mut problems = Vec::new();
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
    problems
}

/// Walks the tables in `order`, computing each layer's op and shapes from its inputs' shapes.
/// A layer whose inputs' shapes are unknown (a problem earlier) is skipped silently.
fn resolve_shapes(
    spec: &ModelSpec,
    tables: &[LayerTable],
    graph: &order::LayerGraph,
    order: &[usize],
    problems: &mut Vec<String>,
) -> Vec<Layer> {
    // Position in `layers` of each table, once resolved.
    let mut resolved: Vec<Option<usize>> = vec![None; tables.len()];
    let mut layers: Vec<Layer> = Vec::with_capacity(order.len());
    for &t in order {
        let table = &tables[t];
        let Some(op) = &table.op else { continue };
        let inputs: Option<Vec<LayerInput>> = graph.inputs[t]
            .iter()
            .map(|source| match source {
                order::Source::Input => Some(LayerInput::Input),
                order::Source::Table(u) => resolved[*u].map(LayerInput::Layer),
            })
            .collect();
        let (fewest, most) = op.arity();
        let Some(inputs) = inputs.filter(|i| (fewest..=most).contains(&i.len())) else {
            continue; // a problem already listed: unknown input, wrong count, or unresolved input
        };
        let in_shapes: Vec<Shape> = inputs
            .iter()
            .map(|input| match input {
                LayerInput::Input => spec.input_shape.clone(),
                LayerInput::Layer(j) => layers[*j].out_shape.clone(),
            })
            .collect();
        match layer(table.name.clone(), op, inputs, in_shapes) {
            Ok(layer) => {
                resolved[t] = Some(layers.len());
                layers.push(layer);
            }
            Err(message) => problems.push(format!("{}: {message}", table.at)),
        }
    }
    layers
}

/// The layer `op` makes of inputs of `in_shapes`, its output checked to fit unit ids.
fn layer(
    name: String,
    op: &OpKeys,
    inputs: Vec<LayerInput>,
    in_shapes: Vec<Shape>,
) -> Result<Layer, String> {
    let (op, out_shape) = op.resolve(&in_shapes)?;
    check_values(&out_shape).map_err(|e| format!("output {e}; {}", op.shrink_hint()))?;
    Ok(Layer {
        name,
        op,
        inputs,
        in_shapes,
        out_shape,
    })
}

/// Tests' shortcut: a network resolved from a spec's text (read as `m.toml`), or the message of
/// what is wrong with it.
#[cfg(test)]
pub(crate) fn resolve_toml(text: &str) -> Result<Network, String> {
    let spec = ModelSpec::parse(text, Path::new("m.toml")).map_err(|e| e.to_string())?;
    Network::resolve(&spec).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CCFF: &str = include_str!("../../models/ccff.toml");

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
        let net = resolve_toml(text).unwrap();
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
        let err = resolve_toml(text).unwrap_err();
        assert!(err.contains("m.toml"), "{err}");
        assert!(err.contains("layer 0 (r"), "{err}");
        assert!(err.contains("kernel_size"), "{err}");

        let text = text.replace("op = \"relu\"\nkernel_size = 3", "op = \"softmax\"");
        let err = resolve_toml(&text).unwrap_err();
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
        let err = resolve_toml(text).unwrap_err();
        assert!(err.contains("flatten"), "{err}");
    }

    #[test]
    fn sizes_past_unit_ids_or_windows_are_refused_before_any_arithmetic_wraps() {
        let spec = |input: &str, layer: &str| {
            let text = format!(
                "format_version = 1\nname = \"x\"\ninput_shape = {input}\n[[layers]]\nname = \"l\"\n{layer}\n"
            );
            resolve_toml(&text).map(|_| ())
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

    const BLOCK: &str = r#"
format_version = 2
name = "block"
input_shape = [4, 6, 6]
[[layers]]
name = "conv1"
op = "conv2d"
out_channels = 8
kernel_size = 3
padding = 1
groups = 4
bias = false
[[layers]]
name = "bn1"
op = "batch_norm2d"
[[layers]]
name = "relu1"
op = "relu"
[[layers]]
name = "down"
op = "conv2d"
inputs = ["input"]
out_channels = 8
kernel_size = 1
bias = false
[[layers]]
name = "add"
op = "add"
inputs = ["relu1", "down"]
[[layers]]
name = "both"
op = "cat"
inputs = ["add", "relu1"]
dim = 1
[[layers]]
name = "pool"
op = "adaptive_avg_pool2d"
output_size = [4, 3]
[[layers]]
name = "flat"
op = "flatten"
[[layers]]
name = "fc"
op = "linear"
out_features = 5
"#;

    #[test]
    fn format_2_resolves_a_model_graph_in_topological_order() {
        let net = resolve_toml(BLOCK).unwrap();
        let names: Vec<&str> = net.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["conv1", "bn1", "relu1", "down", "add", "both", "pool", "flat", "fc"]
        );
        assert_eq!(net.layers[3].inputs, [LayerInput::Input]);
        assert_eq!(
            net.layers[4].inputs,
            [LayerInput::Layer(2), LayerInput::Layer(3)]
        );
        assert_eq!(net.layers[5].out_shape, [16, 6, 6]);
        assert_eq!(net.layers[6].out_shape, [16, 4, 3]);
        assert_eq!(net.layers[7].out_shape, [192]);
        assert_eq!(net.layers[0].op.weight_shape(), Some(vec![8, 1, 3, 3]));
        assert_eq!(net.fold_target(1), Some(0));
        assert_eq!(net.consumers(2).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(net.graph_layers().count(), 5);
    }

    #[test]
    fn layers_listed_out_of_order_are_sorted_and_relu_output_does_not_fold() {
        // "down" listed after its reader; the order puts it first among the ready layers.
        let text = BLOCK.replace(
            "inputs = [\"relu1\", \"down\"]",
            "inputs = [\"down\", \"relu1\"]",
        );
        let net = resolve_toml(&text).unwrap();
        assert_eq!(net.layers[4].inputs[0], LayerInput::Layer(3));
        let text = r#"
format_version = 2
name = "x"
input_shape = [3]
[[layers]]
name = "out"
op = "add"
inputs = ["a", "b"]
[[layers]]
name = "a"
op = "linear"
inputs = ["input"]
out_features = 3
[[layers]]
name = "b"
op = "relu"
inputs = ["input"]
"#;
        // The last table is the output: "b" is read, "out" is not, so "out" is refused.
        let err = resolve_toml(text).unwrap_err();
        assert!(
            err.contains("layer 0 (out") && err.contains("no layer reads"),
            "{err}"
        );
    }

    #[test]
    fn every_graph_problem_is_listed_by_layer() {
        let text = r#"
format_version = 2
name = "x"
input_shape = [2, 4, 4]
[[layers]]
name = "a"
op = "relu"
inputs = ["c"]
[[layers]]
name = "b"
op = "relu"
inputs = ["nowhere"]
[[layers]]
name = "c"
op = "relu"
inputs = ["a"]
[[layers]]
name = "d"
op = "add"
inputs = ["input"]
[[layers]]
name = "e"
op = "flatten"
inputs = ["input"]
[[layers]]
name = "f"
op = "add"
inputs = ["input", "e"]
[[layers]]
name = "g"
op = "cat"
inputs = ["f", "e"]
[[layers]]
name = "h"
op = "cat"
inputs = ["input", "input"]
dim = 2
[[layers]]
name = "i"
op = "gelu"
inputs = ["b", "c", "d", "g", "h"]
"#;
        let err = resolve_toml(text).unwrap_err();
        for want in [
            "input `nowhere` is no layer's name",
            "layers a, c read each other in a cycle",
            "layer 3 (d, op = \"add\"): add takes at least 2 inputs but `inputs` names 1",
            "layer 5 (f, op = \"add\"): add needs operands of one shape but gets [2, 4, 4] and [32]",
            "layer 8 (i, op = \"gelu\"): gelu takes exactly one input but `inputs` names 5",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
        let v1 = "format_version = 1\nname = \"x\"\ninput_shape = [3]\n[[layers]]\nop = \"relu\"\ninputs = [\"input\"]\n";
        let err = resolve_toml(v1).unwrap_err();
        assert!(err.contains("`inputs` needs format_version = 2"), "{err}");
    }
}
