//! Typed settings report every problem at once: a config whose `[[attacks]]` tables have problems
//! of every sort (unknown kind, a key of another kind, a value of the wrong type, a missing
//! required key, a bad `of`) lists them all, with the config's other problems; a model spec whose
//! layers have problems in several tables lists them all. Nothing is run.

use std::fs;
use std::process::{Command, Output};

use crate::support::{repo, stderr};

fn actopo(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn assert_lists(err: &str, needles: &[&str]) {
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn every_problem_of_every_attack_table_is_listed_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[model]
spec = "{}"
device = "cpu"
[data]
shards = ["data/*.npz"]
[pipeline]
batch_size = 0
[[attacks]]
kind = "fgsm"
[[attacks]]
kind = "pgd"
eps = "big"
norm = "l3"
[[attacks]]
kind = "deepfool"
sigma = 2
bogus = 1
[[attacks]]
kind = "sparkle"
[[attacks]]
kind = "gaussian_noise"
sigma = 0.1
name = "clean"
[[attacks]]
kind = "matched_noise"
of = "deepfool"
"#,
        repo("models/ccff.toml").display()
    );
    fs::write(dir.path().join("run.toml"), config).unwrap();
    let o = actopo(dir.path(), &["validate", "run.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_lists(
        &err,
        &[
            "has 10 problem(s)",
            "unknown key `attacks[2].bogus`",
            "`attacks[1].eps` = \"big\" (in ",
            "`pipeline.batch_size` must be at least 1",
            "attacks[0] (kind = \"fgsm\"): `eps` is required",
            "attacks[1] (kind = \"pgd\"): `eps` is required",
            "attacks[1] (kind = \"pgd\"): `norm` = \"l3\"; use \"linf\" or \"l2\"",
            "attacks[2] (kind = \"deepfool\"): key `sigma` does not apply to deepfool; it takes steps, overshoot",
            "attacks[3] (kind = \"sparkle\"): unknown kind; use one of fgsm, pgd, cw_l2, deepfool, gaussian_noise, gaussian_blur, matched_noise",
            "attacks[4] (kind = \"gaussian_noise\"): name \"clean\" is taken",
            "attacks[5] (kind = \"matched_noise\"): `of` = \"deepfool\" must name an attack listed before it",
        ],
    );
    assert!(!err.contains('\0'), "{err:?}");
}

#[test]
fn every_layer_with_a_problem_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"format_version = 1
name = "x"
input_shape = [1, 8, 8]
[[layers]]
name = "c"
op = "conv2d"
out_channels = 2
kernel_size = "three"
p = 0.5
[[layers]]
op = "relu"
negative_slope = 0.1
[[layers]]
op = "softmax"
[[layers]]
name = "c"
op = "linear"
out_features = -1
[[layers]]
kernel_size = 2
"#;
    fs::write(dir.path().join("m.toml"), spec).unwrap();
    let o = actopo(dir.path(), &["inspect", "m.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_lists(
        &stderr(&o),
        &[
            "layer 0 (c, op = \"conv2d\"): `kernel_size` = \"three\": expected a whole number or a pair [h, w] of whole numbers",
            "layer 0 (c, op = \"conv2d\"): key `p` does not apply to conv2d; remove it (accepted: out_channels, in_channels, kernel_size, stride, padding, dilation, groups, bias)",
            "layer 1 (1, op = \"relu\"): key `negative_slope` does not apply to relu; remove it (accepted: none)",
            "layer 2 (2, op = \"softmax\"): unknown op `softmax`; expected one of conv2d, linear,",
            "layer 3 (c, op = \"linear\"): the name `c` is used twice",
            "layer 3 (c, op = \"linear\"): `out_features` = -1: invalid value signed int `-1`, expected a whole number",
            "layer 4 (4): missing key `op`; set it to one of conv2d,",
        ],
    );
}
