//! Model spec: a TOML file that lists a network's ops in order.
//!
//! `ModelSpec::load` parses and checks the file; `Network::resolve` walks the ops with the input
//! shape, fills in inferred channel and feature counts, and computes every layer's output shape.
//! Nothing here touches tch: the topology core and the tests use these types directly.

use std::fmt;
use std::path::{Path, PathBuf};

use std::collections::HashSet;

use serde::Deserialize;

use crate::output::fingerprint::hex_sha256;

mod layer_table;
mod ops;

use layer_table::LayerTable;
use ops::OpKeys;
pub use ops::{Conv2d, Linear, Op, Pool2d};

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
    /// Resolves a spec: names layers, checks keys, infers input counts, computes shapes.
    /// All problems found are reported together, one per line: those of every layer's keys, and
    /// the first layer whose shape cannot be computed (the shapes after it are unknown).
    pub fn resolve(spec: &ModelSpec) -> Result<Network, SpecError> {
        check_input_shape(&spec.input_shape).map_err(|p| spec.invalid(&[p]))?;
        let mut problems: Vec<String> = Vec::new();
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut names = HashSet::new();
        let mut shape = Some(spec.input_shape.clone());
        for (i, table) in spec.layers.iter().enumerate() {
            let table = LayerTable::read(i, table);
            problems.extend(name_clash(&table, &mut names));
            problems.extend(table.problems);
            let (Some(op), Some(in_shape)) = (table.op, shape.take()) else {
                continue; // shapes after a layer with a problem cannot be inferred
            };
            match layer(table.name, &op, in_shape) {
                Ok(layer) => {
                    shape = Some(layer.out_shape.clone());
                    layers.push(layer);
                }
                Err(message) => problems.push(format!("{}: {message}", table.at)),
            }
        }
        if spec.layers.is_empty() {
            problems.push("the spec has no [[layers]]".to_string());
        }
        if !problems.is_empty() {
            return Err(spec.invalid(&problems));
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

/// The layer `op` makes of an input of `in_shape`, its output checked to fit unit ids.
fn layer(name: String, op: &OpKeys, in_shape: Shape) -> Result<Layer, String> {
    let (op, out_shape) = op.resolve(&in_shape)?;
    check_values(&out_shape).map_err(|e| format!("output {e}; {}", op.shrink_hint()))?;
    Ok(Layer {
        name,
        op,
        in_shape,
        out_shape,
    })
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
