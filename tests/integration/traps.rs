//! What a new user trips over (issue 12), through the binary: inputs saved already normalised
//! (outside `data.clip`), PyTorch checkpoints and batch-norm state dicts given as weights, wrong
//! relative paths, a single value for a list key, an analysis of a table the run did not write,
//! `--help` text, and state-dict names shifted against the spec's layer positions. Each message
//! must name the cause and the fix (docs/messages.md lists them).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::RecordBatch;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::support::{failures, npy_header, read_batches, repo, stderr, write_npz};

const SAMPLES: usize = 6;

/// A folder with a run config over the demo CCFF model (28x28 inputs) and `data/` for shards.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(extra: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        let cfg = format!(
            "[model]\nspec = \"{}\"\ndevice = \"cpu\"\n[data]\nshards = [\"data/*.npz\"]\n[pipeline]\nbatch_size = 4\n[output]\ndir = \"out\"\n{extra}",
            repo("models/ccff.toml").display()
        );
        fs::write(dir.path().join("run.toml"), cfg).unwrap();
        Case { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn actopo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_actopo"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "run.toml"];
        args.extend(extra);
        self.actopo(&args)
    }
}

/// Pixel values in [0, 1) (a fixed pseudo-random pattern), `n` 28x28 images.
fn raw_pixels(n: usize) -> Vec<f32> {
    (0..n * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect()
}

/// `raw` as saved by someone who applied Fashion-MNIST's mean and std first.
fn normalised(raw: &[f32]) -> Vec<f32> {
    raw.iter().map(|v| (v - 0.286) / 0.353).collect()
}

/// data/<name>.npz with float32 images `x` and labels 0, 1, 2, ...
fn write_float_npz(dir: &Path, name: &str, x: &[f32]) {
    let n = x.len() / 784;
    let mut xs = npy_header("<f4", &[n, 28, 28]);
    xs.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    let mut ys = npy_header("<i8", &[n]);
    ys.extend((0..n as i64).flat_map(|v| (v % 10).to_le_bytes()));
    write_npz(&dir.join(format!("{name}.npz")), &[("x", &xs), ("y", &ys)]);
}

/// The columns of every batch of a table, without the file's metadata (which holds the run's
/// identity, so it differs between runs with different settings).
fn columns(path: &Path) -> Vec<Vec<arrow::array::ArrayRef>> {
    read_batches(path)
        .iter()
        .map(|b: &RecordBatch| b.columns().to_vec())
        .collect()
}

#[test]
fn normalised_inputs_fail_an_attacked_run_before_the_attack_naming_data_clip() {
    let c = Case::new("[[attacks]]\nkind = \"fgsm\"\neps = 0.05\n");
    let x = normalised(&raw_pixels(SAMPLES));
    write_float_npz(&c.path("data"), "norm", &x);
    let out = c.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // The first batch (4 samples) fails the shard: its count is of those samples.
    let first = &x[..4 * 784];
    let outside = first.iter().filter(|v| **v < 0.0 || **v > 1.0).count();
    assert!(outside > 0);
    for needed in [
        format!("samples 0..4: {outside} raw input value(s) of 4 sample(s) lie outside data.clip = [0, 1]"),
        "already normalised".to_string(),
        "fix: save raw values".to_string(),
        "or set data.clip to the data's range".to_string(),
    ] {
        assert!(err.contains(&needed), "missing {needed:?} in:\n{err}");
    }
    let first_min = first.iter().copied().fold(f32::INFINITY, f32::min);
    let first_max = first.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(
        err.contains(&format!("(observed min {first_min}, max {first_max})")),
        "{err}"
    );
    assert!(first_min >= min && first_max <= max);
    let rows = failures(&c.path("out/failures/norm.parquet"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].2.as_str()), (None, "read"));
    assert!(rows[0].3.contains("data.clip"), "{}", rows[0].3);
    assert!(!c.path("out/summary/norm.parquet").exists());
}

#[test]
fn normalised_inputs_warn_an_unattacked_run_with_counts_and_leave_outputs_unchanged() {
    let c = Case::new("");
    let x = normalised(&raw_pixels(SAMPLES));
    write_float_npz(&c.path("data"), "norm", &x);
    let out = c.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let values = x.iter().filter(|v| **v < 0.0 || **v > 1.0).count();
    let samples = x
        .chunks(784)
        .filter(|s| s.iter().any(|v| *v < 0.0 || *v > 1.0))
        .count();
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let expected = format!(
        "warning: {values} raw input value(s) of {samples} sample(s) lie outside data.clip = [0, 1] (observed min {min}, max {max})"
    );
    assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    assert!(err.contains("fix: "), "{err}");
    // Clean inputs are not clipped: the rows equal those of a run whose clip holds the data.
    let wide = c.run(&["--set", "data.clip=[-3.0, 3.0]", "--set", "output.dir=\"wide\""]);
    assert_eq!(wide.status.code(), Some(0), "{}", stderr(&wide));
    assert!(!stderr(&wide).contains("warning"), "{}", stderr(&wide));
    for table in ["summary", "diagrams"] {
        let a = columns(&c.path(&format!("out/{table}/norm.parquet")));
        let b = columns(&c.path(&format!("wide/{table}/norm.parquet")));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{table} differs");
    }
}

#[test]
fn raw_inputs_inside_data_clip_give_no_warning() {
    let c = Case::new("[[attacks]]\nkind = \"fgsm\"\neps = 0.05\n");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(SAMPLES));
    let out = c.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("data.clip"), "{err}");
}
