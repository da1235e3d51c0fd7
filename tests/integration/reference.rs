//! `actopo validate` against PyTorch: the fixture in tests/data (written once by
//! tests/data/make_residual.py with PyTorch) is a residual block with a 1x1 downsample, batch
//! norms, grouped and depthwise convs, a cat, adaptive pooling and every value activation, and
//! PyTorch's outputs on 5 inputs.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::support::{npy_header, repo, stderr, write_npz};

/// PyTorch's outputs: 5 rows of 10.
const ROWS: usize = 5;
const COLS: usize = 10;

/// A folder with the fixture's spec, weights and reference file.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "residual.toml",
        "residual.safetensors",
        "residual.reference.safetensors",
    ] {
        fs::copy(repo(&format!("tests/data/{file}")), dir.path().join(file)).unwrap();
    }
    dir
}

fn actopo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The reference file's tensors: (input, output) as f32 values.
fn read_reference(path: &Path) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
    let bytes = fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32);
        (t.data().chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let shape = st.tensor("input").unwrap().shape().to_vec();
    (shape, f32s("input"), f32s("output"))
}

fn write_reference(path: &Path, input_shape: &[usize], input: &[f32], output: &[f32]) {
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (input_bytes, output_bytes) = (bytes(input), bytes(output));
    let views = [
        (
            "input",
            TensorView::new(Dtype::F32, input_shape.to_vec(), &input_bytes).unwrap(),
        ),
        (
            "output",
            TensorView::new(Dtype::F32, vec![ROWS, COLS], &output_bytes).unwrap(),
        ),
    ];
    fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

/// The number after `max abs difference ` in validate's reference line.
fn max_abs_difference(out: &str) -> f64 {
    out.split("max abs difference ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no difference in:\n{out}"))
}

#[test]
fn validate_a_spec_matches_pytorchs_outputs() {
    let dir = fixture();
    let o = actopo(dir.path(), &["validate", "residual.toml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    assert!(out.contains("model     residual.toml (26 layers,"), "{out}");
    assert!(
        out.contains("reference residual.reference.safetensors: 5 rows, 50 values compared"),
        "{out}"
    );
    // Outputs reach |2.75|: the tolerance is 1e-4 x 2.75.
    let diff = max_abs_difference(&out);
    assert!(diff <= 2.75e-4, "{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
}

#[test]
fn a_corrupted_reference_output_fails_with_exit_code_2_naming_the_row_and_both_values() {
    let dir = fixture();
    let path = dir.path().join("residual.reference.safetensors");
    let (shape, input, mut output) = read_reference(&path);
    let original = output[3 * COLS + 7];
    output[3 * COLS + 7] = original + 0.01;
    write_reference(&path, &shape, &input, &output);
    let o = actopo(dir.path(), &["validate", "residual.toml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("reference check failed: residual.reference.safetensors"),
        "{err}"
    );
    assert!(err.contains("at row 3, column 7"), "{err}");
    assert!(
        err.contains(&format!("(PyTorch {}, actopo ", original + 0.01)),
        "{err}"
    );
    assert!(err.contains("5 rows, 50 values compared"), "{err}");
    // A difference of 1e-5 (under the tolerance) passes.
    output[3 * COLS + 7] = original + 1e-5;
    write_reference(&path, &shape, &input, &output);
    let o = actopo(dir.path(), &["validate", "residual.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_reference_of_the_wrong_shape_or_none_is_said_in_one_line() {
    let dir = fixture();
    let path = dir.path().join("residual.reference.safetensors");
    let (_, input, output) = read_reference(&path);
    // The same values as 5 inputs of [3, 81]: not the spec's [3, 9, 9].
    write_reference(&path, &[ROWS, 3, 81], &input, &output);
    let o = actopo(dir.path(), &["validate", "residual.toml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tensor `input` has shape [5, 3, 81], expected [N, 3, 9, 9]"),
        "{err}"
    );
    fs::remove_file(&path).unwrap();
    let o = actopo(dir.path(), &["validate", "residual.toml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: Vec<&str> = out.lines().filter(|l| l.starts_with("reference")).collect();
    assert_eq!(
        line,
        ["reference none: no residual.reference.safetensors beside the spec (scripts/export_torch.py writes one)"]
    );
}

#[test]
fn validate_a_config_checks_the_reference_beside_its_spec() {
    let dir = fixture();
    let (_, input, _) = read_reference(&dir.path().join("residual.reference.safetensors"));
    let mut x = npy_header("<f4", &[ROWS, 3, 9, 9]);
    x.extend(input.iter().flat_map(|v| v.to_le_bytes()));
    write_npz(&dir.path().join("inputs.npz"), &[("x", &x)]);
    // The config normalises its data; the reference check must not.
    let config = "[model]\nspec = \"residual.toml\"\ndevice = \"cpu\"\n\n[data]\nshards = [\"inputs.npz\"]\nmean = [0.5, 0.5, 0.5]\nstd = [2.0, 2.0, 2.0]\nclip = [-20.0, 20.0]\n\n[output]\ndir = \"out\"\n";
    fs::write(dir.path().join("run.toml"), config).unwrap();
    let o = actopo(dir.path(), &["validate", "run.toml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    assert!(
        out.contains("residual.reference.safetensors: 5 rows, 50 values compared"),
        "{out}"
    );
    assert!(out.contains("inputs.npz: first sample ok"), "{out}");
    // Other weights than the spec's: the reference does not apply.
    fs::copy(
        dir.path().join("residual.safetensors"),
        dir.path().join("other.safetensors"),
    )
    .unwrap();
    let o = actopo(
        dir.path(),
        &[
            "validate",
            "run.toml",
            "--set",
            "model.weights=\"other.safetensors\"",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    assert!(out.contains("skipped: model.weights = "), "{out}");
    // --set belongs to configs.
    let o = actopo(
        dir.path(),
        &["validate", "residual.toml", "--set", "data.limit=1"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a model spec"), "{}", stderr(&o));
}
