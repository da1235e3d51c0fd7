//! What a new user trips over (issue 12), through the binary: inputs saved already normalised
//! (outside `data.clip`), PyTorch checkpoints and undeclared batch-norm buffers given as weights, wrong
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
    let wide = c.run(&[
        "--set",
        "data.clip=[-3.0, 3.0]",
        "--set",
        "output.dir=\"wide\"",
    ]);
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

/// A safetensors file of `(name, dtype, shape)` tensors (floats 0.01, integers 0).
fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, &[usize])]) {
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, dtype, shape)| {
            let n: usize = shape.iter().product();
            let bytes = match dtype {
                Dtype::F32 => (0..n).flat_map(|_| 0.01f32.to_le_bytes()).collect(),
                _ => vec![0u8; n * dtype.bitsize() / 8],
            };
            (name.to_string(), *dtype, shape.to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

/// `actopo validate` of the case's config; exit code and stderr.
fn validate(c: &Case, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["validate", "run.toml"];
    args.extend(extra);
    let out = c.actopo(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stderr(&out), stdout)
}

#[test]
fn a_pytorch_checkpoint_given_as_weights_is_named_with_the_safetensors_fix() {
    let c = Case::new("");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(1));
    // torch.save writes a zip archive (PyTorch >= 1.6) or, before, a pickle (protocol 2).
    write_npz(&c.path("model.pt"), &[("archive/data", b"\x80\x02}q\x00.")]);
    fs::write(
        c.path("legacy.pt"),
        b"\x80\x02\x8a\x0alp\xfc\x9cF\xf9 j\xa8P\x19.",
    )
    .unwrap();
    for (file, kind) in [
        ("model.pt", "a torch.save zip archive"),
        ("legacy.pt", "a torch.save pickle"),
    ] {
        let (code, err, _) = validate(&c, &["--set", &format!("model.weights=\"{file}\"")]);
        assert_eq!(code, Some(2), "{err}");
        let expected = format!("{file} is a PyTorch checkpoint ({kind}), not a safetensors file");
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
        assert!(
            err.contains("fix: export the weights with safetensors: `from safetensors.torch import save_file; save_file(model.state_dict(), \"model.safetensors\")`"),
            "{err}"
        );
        assert!(!err.contains("header too large"), "{err}");
    }
}

#[test]
fn batch_norm_buffers_the_spec_does_not_declare_name_the_layer_to_add() {
    let c = Case::new("");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(1));
    write_safetensors(
        &c.path("bn.safetensors"),
        &[
            ("0.weight", Dtype::F32, &[3, 1, 5, 5]),
            ("bn0.weight", Dtype::F32, &[3]),
            ("bn0.bias", Dtype::F32, &[3]),
            ("bn0.running_mean", Dtype::F32, &[3]),
            ("bn0.running_var", Dtype::F32, &[3]),
            ("bn0.num_batches_tracked", Dtype::I64, &[]),
        ],
    );
    let (code, err, _) = validate(&c, &["--set", "model.weights=\"bn.safetensors\""]);
    assert_eq!(code, Some(2), "{err}");
    for needed in [
        "tensor `bn0.running_mean` is a batch norm's buffer but the spec has no batch_norm layer named `bn0`",
        "tensor `bn0.running_var` is a batch norm's buffer",
        "scripts/export_torch.py",
        "tensor `bn0.weight` belongs to no layer",
    ] {
        assert!(err.contains(needed), "missing {needed:?} in:\n{err}");
    }
    assert!(!err.contains("has dtype I64"), "{err}");
}

#[test]
fn a_missing_relative_path_names_the_key_the_resolved_path_and_the_config_folder() {
    let c = Case::new("");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(1));
    fs::create_dir(c.path("elsewhere")).unwrap();
    // Run from another folder: the paths are still relative to the config file.
    let out = Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args([
            "validate",
            "../run.toml",
            "--set",
            "model.spec=\"models/mlp.toml\"",
        ])
        .args(["--set", "model.weights=\"w.safetensors\""])
        .current_dir(c.path("elsewhere"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let folder = fs::canonicalize(c.dir.path()).unwrap();
    for (key, written) in [
        ("model.spec", "models/mlp.toml"),
        ("model.weights", "w.safetensors"),
    ] {
        let expected = format!(
            "`{key}` = \"{written}\": {} does not exist (relative paths are resolved against the config file's folder {}",
            folder.join(written).display(),
            folder.display()
        );
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("has 2 problem(s)"), "{err}");
    assert!(!err.contains("os error"), "{err}");

    // A spec's `weights` is relative to the spec's folder: said once, with the fix.
    fs::create_dir(c.path("models")).unwrap();
    let spec = fs::read_to_string(repo("models/ccff.toml")).unwrap();
    fs::write(c.path("models/ccff.toml"), spec).unwrap();
    let (code, err, _) = validate(&c, &["--set", "model.spec=\"models/ccff.toml\""]);
    assert_eq!(code, Some(2), "{err}");
    let expected = format!(
        "`weights` = \"ccff.safetensors\": {} does not exist (a spec's relative paths are resolved against the spec file's folder {})",
        folder.join("models/ccff.safetensors").display(),
        folder.join("models").display()
    );
    assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
}

#[test]
fn a_single_value_for_a_list_key_is_a_one_element_list() {
    let c = Case::new("");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(2));
    let manifest_scopes = |dir: &str| {
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(c.path(&format!("{dir}/manifest.json"))).unwrap())
                .unwrap();
        (
            m["config"]["graph"]["scopes"].clone(),
            m["config"]["data"]["shards"].clone(),
        )
    };
    let out = c.run(&[
        "--set",
        "graph.scopes=layers",
        "--set",
        "data.shards=data/raw.npz",
        "--set",
        "output.dir=set",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shard = fs::canonicalize(c.path("data/raw.npz")).unwrap();
    assert_eq!(
        manifest_scopes("set"),
        (serde_json::json!(["layers"]), serde_json::json!([shard]))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(["run", "run.toml", "--set", "output.dir=env"])
        .env("ACTOPO_GRAPH__SCOPES", "layers")
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(manifest_scopes("env").0, serde_json::json!(["layers"]));
    // A bad single value is still reported with where it came from.
    let (code, err, _) = validate(&c, &["--set", "data.mean=abc"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`data.mean` = [\"abc\"] (from --set): invalid type"),
        "{err}"
    );
}

#[test]
fn analyze_subgraphs_on_a_run_without_them_names_the_key_to_set() {
    let c = Case::new("");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(2));
    let out = c.run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = c.actopo(&["analyze", "subgraphs", "out"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needed in [
        "out holds no `subgraphs/` table: the run that wrote it had output.subgraphs = false",
        "fix: set `output.subgraphs = true` in the run's config and rerun it",
    ] {
        assert!(err.contains(needed), "missing {needed:?} in:\n{err}");
    }
    assert!(!err.contains("an actopo output folder?"), "{err}");
    // A folder that is no run's output is told apart.
    let out = c.actopo(&["analyze", "uncertainty", "data"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("data is not an actopo output folder (it has no manifest.json)"),
        "{err}"
    );
}

/// The argument and option entries of a `--help` text whose description is missing.
fn entries_without_text(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut bare = Vec::new();
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_list = *line == "Arguments:" || *line == "Options:";
            continue;
        }
        let entry = line.trim_start();
        let is_entry = in_list && line.starts_with("  ") && entry.starts_with(['-', '<', '[']);
        if !is_entry {
            continue;
        }
        // "  --flag <V>  text", or the text on the next, further indented line.
        let indent = line.len() - entry.len();
        let text_here = entry
            .split_once("  ")
            .is_some_and(|(_, t)| !t.trim().is_empty());
        let text_below = lines.get(i + 1).is_some_and(|next| {
            let t = next.trim_start();
            !t.is_empty() && next.len() - t.len() > indent && !t.starts_with(['-', '<', '['])
        });
        if !text_here && !text_below {
            bare.push(entry.to_string());
        }
    }
    bare
}

#[test]
fn every_help_describes_each_argument_and_flag_and_points_to_the_readme() {
    let c = Case::new("");
    let commands: [&[&str]; 8] = [
        &[],
        &["run"],
        &["validate"],
        &["analyze"],
        &["analyze", "subgraphs"],
        &["analyze", "uncertainty"],
        &["inspect"],
        &["diagrams"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = c.actopo(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(help.contains("Options:"), "{args:?}: {help}");
        assert_eq!(
            entries_without_text(&help),
            Vec::<String>::new(),
            "{args:?}: {help}"
        );
        assert!(
            help.contains("README.md"),
            "{args:?} does not point to README.md: {help}"
        );
    }
    // The parser itself: a bare flag is found.
    let bare = "Options:\n      --h1-diagram\n  -h, --help  Print help\n";
    assert_eq!(entries_without_text(bare), vec!["--h1-diagram".to_string()]);
    let wrapped = "Options:\n      --set <KEY=VALUE>\n          Override a key\n";
    assert!(entries_without_text(wrapped).is_empty());
}

/// The MLP of the issue: input [784], Linear(784, 8), ReLU, Linear(8, 10).
const MLP_SPEC: &str = "format_version = 1\nname = \"mlp\"\ninput_shape = [784]\nweights = \"mlp.safetensors\"\n\n[[layers]]\nop = \"linear\"\nout_features = 8\n\n[[layers]]\nop = \"relu\"\n\n[[layers]]\nop = \"linear\"\nout_features = 10\n";

#[test]
fn state_dict_names_shifted_by_a_flatten_are_said_in_two_lines_with_the_names_to_set() {
    let c = Case::new("");
    write_float_npz(&c.path("data"), "raw", &raw_pixels(1));
    fs::write(c.path("mlp.toml"), MLP_SPEC).unwrap();
    // nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10)).state_dict()
    write_safetensors(
        &c.path("mlp.safetensors"),
        &[
            ("1.weight", Dtype::F32, &[8, 784]),
            ("1.bias", Dtype::F32, &[8]),
            ("3.weight", Dtype::F32, &[10, 8]),
            ("3.bias", Dtype::F32, &[10]),
        ],
    );
    let (code, err, _) = validate(&c, &["--set", "model.spec=\"mlp.toml\""]);
    assert_eq!(code, Some(2), "{err}");
    // The header line, the cause and the fix.
    assert_eq!(err.trim_end().lines().count(), 3, "{err}");
    assert!(
        err.contains(
            "shifted by 1 (`1.weight`, `3.weight` where the spec expects `0.weight`, `2.weight`)"
        ),
        "{err}"
    );
    assert!(err.contains("e.g. an nn.Flatten() first"), "{err}");
    // The fix as given makes the file fit.
    let names: Vec<(usize, String)> = err
        .split("layer ")
        .skip(1)
        .filter_map(|part| {
            let (index, rest) = part.split_once(' ')?;
            let name = rest.split("`name = \"").nth(1)?.split('"').next()?;
            Some((index.parse().ok()?, name.to_string()))
        })
        .collect();
    assert_eq!(names.len(), 3, "{err}");
    let mut layers: Vec<String> = MLP_SPEC.split("[[layers]]\n").map(String::from).collect();
    for (index, name) in &names {
        layers[index + 1] = format!("name = \"{name}\"\n{}", layers[index + 1]);
    }
    fs::write(c.path("mlp.toml"), layers.join("[[layers]]\n")).unwrap();
    let (code, err, out) = validate(&c, &["--set", "model.spec=\"mlp.toml\""]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    assert!(out.contains("mlp.safetensors: ok"), "{out}");
}
