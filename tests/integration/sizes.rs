//! Sizes from configs and specs are checked before anything is allocated (docs/limits.md): a huge
//! batch, too many workers, a shape whose product overflows or a layer too large for memory is
//! refused with exit code 2, the key and the fix, instead of aborting. Type errors, unknown keys
//! and bad values are reported together.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::support::stderr;

/// A flat model: 4 x 4 images, flatten, one dense layer of 3.
const SPEC: &str = r#"format_version = 1
name = "flat"
input_shape = [1, 4, 4]
weights = "flat.safetensors"

[[layers]]
op = "flatten"

[[layers]]
name = "fc"
op = "linear"
out_features = 3
"#;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// The flat model with weights, 5 raw IDX images, and `config.toml` with `extra` appended.
    fn new(extra: &str) -> Dir {
        let d = Dir {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::write(d.path("flat.toml"), SPEC).unwrap();
        write_weights(&d.path("flat.safetensors"));
        let mut idx = vec![0u8, 0, 8, 3];
        for dim in [5u32, 4, 4] {
            idx.extend(dim.to_be_bytes());
        }
        idx.extend((0..5 * 16).map(|i| (i * 3 % 256) as u8));
        fs::write(d.path("images-idx3-ubyte"), idx).unwrap();
        d.config("config.toml", "flat.toml", extra);
        d
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn config(&self, name: &str, spec: &str, extra: &str) {
        let text = format!(
            "[model]\nspec = \"{spec}\"\ndevice = \"cpu\"\n\n[data]\nshards = [\"images-idx3-ubyte\"]\n\n[output]\ndir = \"out\"\n\n{extra}"
        );
        fs::write(self.path(name), text).unwrap();
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actopo"));
        cmd.args(args).current_dir(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn write_weights(path: &Path) {
    let bytes: Vec<u8> = (0..48)
        .flat_map(|i| ((i as f32 - 24.0) / 30.0).to_le_bytes())
        .collect();
    let bias: Vec<u8> = [0.1f32, -0.2, 0.3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = vec![
        (
            "fc.weight".to_string(),
            TensorView::new(Dtype::F32, vec![3, 16], &bytes).unwrap(),
        ),
        (
            "fc.bias".to_string(),
            TensorView::new(Dtype::F32, vec![3], &bias).unwrap(),
        ),
    ];
    fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

/// Exit code 2 (a config error, not an abort), no panic, nothing written; returns stderr.
fn refused(d: &Dir, o: &Output) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(!d.path("out").exists(), "nothing may be written: {e}");
    e
}

/// The number after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> u64 {
    text.split(marker)
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after {marker:?} in {text}"))
}

#[test]
fn a_huge_batch_size_is_refused_with_its_key_the_need_and_the_largest_that_fits() {
    let d = Dir::new("");
    let o = d.run(
        &[
            "run",
            "config.toml",
            "--set",
            "pipeline.batch_size=1000000000000",
        ],
        &[],
    );
    let e = refused(&d, &o);
    assert!(e.contains("`pipeline.batch_size` = 1000000000000"), "{e}");
    assert!(e.contains("needs about"), "{e}");
    assert!(e.contains("activation captures"), "{e}");
    // The bound it offers must itself pass the check.
    let fits = number_after(&e, "`pipeline.batch_size` to at most ");
    assert!((1..1_000_000_000_000).contains(&fits), "{e}");
    let o = d.run(
        &[
            "validate",
            "config.toml",
            "--set",
            &format!("pipeline.batch_size={}", fits / 2),
        ],
        &[],
    );
    assert!(
        !stderr(&o).contains("pipeline.batch_size"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn too_many_workers_are_refused_with_the_cap() {
    let d = Dir::new("");
    let o = d.run(
        &["run", "config.toml", "--set", "pipeline.workers=100000"],
        &[],
    );
    let e = refused(&d, &o);
    assert!(e.contains("`pipeline.workers` = 100000"), "{e}");
    let cap = number_after(&e, "at most ");
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(cap, (4 * cores).max(8), "{e}");
    assert!(e.contains("pipeline.workers = 0"), "{e}");
}

#[test]
fn an_input_shape_whose_product_overflows_is_refused_by_run_and_inspect() {
    let d = Dir::new("");
    let big = SPEC.replace(
        "input_shape = [1, 4, 4]",
        "input_shape = [4294967296, 4294967296, 4294967296]",
    );
    fs::write(d.path("big.toml"), big).unwrap();
    d.config("big-config.toml", "big.toml", "");
    for args in [&["run", "big-config.toml"][..], &["inspect", "big.toml"]] {
        let o = d.run(args, &[]);
        let e = refused(&d, &o);
        assert!(e.contains("big.toml"), "{args:?}: {e}");
        assert!(e.contains("input_shape"), "{args:?}: {e}");
        assert!(e.contains("use a smaller input"), "{args:?}: {e}");
    }
}

#[test]
fn a_layer_too_large_is_refused_by_run_and_inspect() {
    let d = Dir::new("");
    // Too many units for 32-bit unit ids: refused by the spec check.
    let conv = "format_version = 1\nname = \"wide\"\ninput_shape = [1, 8, 8]\n\n[[layers]]\nname = \"c\"\nop = \"conv2d\"\nout_channels = 1000000000\nkernel_size = 3\n";
    fs::write(d.path("wide.toml"), conv).unwrap();
    // Few enough units, but 16 x 10^9 weights: refused by the memory check.
    let dense = SPEC.replace("out_features = 3", "out_features = 1000000000");
    fs::write(d.path("dense.toml"), dense).unwrap();
    for (spec, needles) in [
        ("wide.toml", ["layer 0 (c", "lower out_channels"]),
        (
            "dense.toml",
            ["layer `fc` has the most weights", "needs about"],
        ),
    ] {
        d.config("big-config.toml", spec, "");
        for args in [&["run", "big-config.toml"][..], &["inspect", spec]] {
            let o = d.run(args, &[]);
            let e = refused(&d, &o);
            assert!(e.contains(spec), "{args:?}: {e}");
            for needle in needles {
                assert!(e.contains(needle), "{args:?}: missing {needle}: {e}");
            }
        }
    }
}

#[test]
fn memory_limit_mb_replaces_the_machine_figure() {
    let d = Dir::new("");
    let o = d.run(
        &["run", "config.toml", "--set", "pipeline.memory_limit_mb=1"],
        &[],
    );
    let e = refused(&d, &o);
    assert!(e.contains("pipeline.memory_limit_mb = 1"), "{e}");
    let o = d.run(
        &[
            "run",
            "config.toml",
            "--set",
            "pipeline.memory_limit_mb=4096",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let manifest = fs::read_to_string(d.path("out/manifest.json")).unwrap();
    assert!(manifest.contains("\"memory_limit_mb\": 4096"), "{manifest}");
}

#[test]
fn a_valid_run_records_no_memory_limit_and_passes_the_checks() {
    let d = Dir::new("");
    let o = d.run(&["run", "config.toml"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let manifest = fs::read_to_string(d.path("out/manifest.json")).unwrap();
    assert!(!manifest.contains("memory_limit_mb"), "{manifest}");
    let o = d.run(&["inspect", "flat.toml"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // 16 input units + 3 outputs; 48 weights + 3 biases of 4 bytes, 3 copies.
    assert!(out.contains("19 units, at most 48 edges"), "{out}");
    assert!(out.contains("memory: weights 612 B"), "{out}");
}

#[test]
fn type_errors_are_reported_with_every_other_problem() {
    let d = Dir::new("[pipeline]\nbatch_size = \"x\"\nbogus = 1\n\n[graph]\ninclude_input = 3\nscopes = [\"nope\"]\n");
    let o = d.run(
        &["run", "config.toml"],
        &[("ACTOPO_PIPELINE__WORKERS", "many")],
    );
    let e = refused(&d, &o);
    for needle in [
        "has 5 problem(s)",
        "`pipeline.batch_size` = \"x\" (in ",
        "expected a whole number; fix: write a value of this type, e.g. pipeline.batch_size = 128",
        "`graph.include_input` = 3",
        "unknown key `pipeline.bogus`",
        "`graph.scopes` has \"nope\"",
        "`pipeline.workers` = \"many\" (from environment variable ACTOPO_PIPELINE__WORKERS)",
    ] {
        assert!(e.contains(needle), "missing {needle}: {e}");
    }
}

#[test]
fn set_with_an_empty_key_says_so_without_a_source_location() {
    let d = Dir::new("");
    for (flag, needle) in [
        ("=1", "--set =1: the key is empty"),
        (
            "pipeline.=1",
            "--set pipeline.=1: the key `pipeline.` has an empty part",
        ),
    ] {
        let o = d.run(&["run", "config.toml", "--set", flag], &[]);
        let e = refused(&d, &o);
        assert!(e.contains(needle), "{e}");
        assert!(e.contains("e.g. --set pipeline.batch_size=64"), "{e}");
        assert!(!e.contains(".rs:"), "a source location leaked: {e}");
    }
}
