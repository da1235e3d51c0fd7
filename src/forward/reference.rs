//! The reference check: actopo's forward pass against PyTorch's outputs for the same inputs.
//!
//! The exporter (scripts/export_torch.py) writes beside a spec `NAME.toml` the file
//! `NAME.reference.safetensors` with f32 tensors `input` ([N, *input_shape], the inputs exactly as
//! PyTorch received them, no normalisation) and `output` ([N, K], PyTorch's outputs).
//! `actopo validate` runs the model on `input` on the CPU, without `data.mean`/`data.std`, and
//! compares with `output` (docs/model-spec.md, "Reference outputs").

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::TchModel;
use crate::config::Device;
use crate::model::Model;
use crate::spec::numel;
use crate::weights::{read_safetensors, Tensor};

/// Largest accepted difference, relative to max(1, largest |output|): libtorch and PyTorch on
/// one CPU differ only by the order of float sums (batch size, threads), far below this.
pub const RELATIVE_TOLERANCE: f32 = 1e-4;

/// Where the reference outputs of the spec at `spec_path` are: `NAME.toml` ->
/// `NAME.reference.safetensors`, in the spec's folder.
pub fn reference_path(spec_path: &Path) -> PathBuf {
    spec_path.with_extension("reference.safetensors")
}

/// The largest difference between PyTorch's outputs and actopo's, where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rows: usize,
    pub values: usize,
    /// Largest |expected - got| (infinite where one is NaN or infinite and the other differs).
    pub max_abs_diff: f32,
    /// Row, column, PyTorch's value and actopo's at the largest difference.
    pub worst: (usize, usize, f32, f32),
    /// Largest finite |expected|.
    pub max_abs_output: f32,
}

impl Comparison {
    /// `RELATIVE_TOLERANCE` x max(1, largest |output|).
    pub fn tolerance(&self) -> f32 {
        RELATIVE_TOLERANCE * self.max_abs_output.max(1.0)
    }

    pub fn passes(&self) -> bool {
        self.max_abs_diff <= self.tolerance()
    }
}

/// Compares `got` with `expected`, both `cols` values per row, row-major.
pub fn compare(expected: &[f32], got: &[f32], cols: usize) -> Comparison {
    let mut c = Comparison {
        rows: expected.len() / cols.max(1),
        values: expected.len(),
        max_abs_diff: 0.0,
        worst: (
            0,
            0,
            expected.first().copied().unwrap_or(0.0),
            got.first().copied().unwrap_or(0.0),
        ),
        max_abs_output: 0.0,
    };
    for (i, (&e, &g)) in expected.iter().zip(got).enumerate() {
        if e.is_finite() {
            c.max_abs_output = c.max_abs_output.max(e.abs());
        }
        let diff = match (e - g).abs() {
            _ if e == g => 0.0, // equal infinities too
            d if d.is_nan() => f32::INFINITY,
            d => d,
        };
        if diff > c.max_abs_diff {
            c.max_abs_diff = diff;
            c.worst = (i / cols.max(1), i % cols.max(1), e, g);
        }
    }
    c
}

/// Runs `model` on the reference inputs at `path` and compares with the reference outputs.
pub fn check(model: &Model, path: &Path) -> anyhow::Result<Comparison> {
    let mut tensors = read_safetensors(path)?;
    let net = &model.network;
    let mut take = |name: &str| {
        tensors.remove(name).with_context(|| {
            format!(
                "reference file {} has no tensor `{name}`; it needs `input` [N, {}] (the spec's input_shape) and `output` [N, {}] (the model's outputs)\n  fix: write it again with scripts/export_torch.py, or remove it",
                path.display(),
                dims(&net.input_shape),
                numel(net.output_shape())
            )
        })
    };
    let (input, output) = (take("input")?, take("output")?);
    let rows = input.shape.first().copied().unwrap_or(0);
    check_shape(path, "input", &input, rows, &net.input_shape)?;
    let cols = numel(net.output_shape());
    check_shape(path, "output", &output, rows, &[cols])?;
    // The inputs exactly as PyTorch got them: mean 0 and std 1 leave them unchanged.
    let cpu = TchModel::new(model, Device::Cpu, &[0.0], &[1.0])?;
    let got = cpu.outputs(&input.data, rows)?;
    anyhow::ensure!(
        got.len() == output.data.len(),
        "the model gave {} output values for {rows} reference inputs, the reference has {}",
        got.len(),
        output.data.len()
    );
    Ok(compare(&output.data, &got, cols))
}

/// A reference tensor is [rows, *shape] (any shape with as many values per row, for `output`).
fn check_shape(
    path: &Path,
    name: &str,
    t: &Tensor,
    rows: usize,
    shape: &[usize],
) -> anyhow::Result<()> {
    let fits = match name {
        "input" => t.shape.get(1..) == Some(shape),
        _ => t.shape.first() == Some(&rows) && numel(&t.shape[1..]) == numel(shape),
    };
    if rows == 0 || !fits {
        bail!(
            "reference file {}: tensor `{name}` has shape [{}], expected [N, {}] with N >= 1 rows{}\n  fix: write it again with scripts/export_torch.py from the model this spec describes",
            path.display(),
            dims(&t.shape),
            dims(shape),
            if name == "output" { format!(" (N = {rows}, as `input`)") } else { String::new() }
        );
    }
    Ok(())
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_difference_is_found_with_its_row_and_column() {
        let expected = [1.0, -2.0, 3.0, 40.0, 5.0, 6.0];
        let got = [1.0, -2.0, 3.0, 40.002, 5.0, 6.001];
        let c = compare(&expected, &got, 3);
        assert_eq!((c.rows, c.values), (2, 6));
        assert_eq!(c.worst.0, 1);
        assert_eq!(c.worst.1, 0);
        assert_eq!((c.worst.2, c.worst.3), (40.0, 40.002));
        assert!((c.max_abs_diff - 0.002).abs() < 1e-5, "{}", c.max_abs_diff);
        assert_eq!(c.max_abs_output, 40.0);
        // 1e-4 x 40 = 0.004 > 0.002
        assert!(c.passes());
        assert!(!compare(&expected, &[1.0, -2.0, 3.0, 40.01, 5.0, 6.0], 3).passes());
    }

    #[test]
    fn nan_fails_and_small_outputs_get_an_absolute_floor() {
        let c = compare(&[0.5, 0.25], &[0.5, f32::NAN], 2);
        assert_eq!(c.max_abs_diff, f32::INFINITY);
        assert_eq!(c.worst.1, 1);
        assert!(!c.passes());
        let c = compare(&[0.001, 0.0], &[0.00105, 0.0], 2);
        assert_eq!(c.tolerance(), 1e-4);
        assert!(c.passes());
        assert_eq!(
            reference_path(Path::new("models/resnet18.toml")),
            Path::new("models/resnet18.reference.safetensors")
        );
    }
}
