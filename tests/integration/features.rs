//! `actopo features` through the binary on a small real run: the file's shape, identical bytes
//! whatever the thread count or a reused grid, and the refusals (item 5 of issue 16).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;

use crate::analyze::actopo;
use crate::support::{read_parquet, repo, stderr, FASHION};

const STEM: &str = "t10k-images-idx3-ubyte";

/// A 12-image run with the `network` and `layers` scopes and one attack, made once and copied
/// by each test (the command writes into the folder).
fn shared_run() -> &'static Path {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let o = actopo(&[
            "run",
            repo("config/fashion-mnist.toml").to_str().unwrap(),
            "--set",
            "data.limit=12",
            "--set",
            &format!("data.shards=[\"{FASHION}\"]"),
            "--set",
            "graph.scopes=[\"network\", \"layers\"]",
            "--set",
            "data.clip=[0.0, 1.0]",
            "--set",
            "attacks=[{kind=\"fgsm\", eps=0.1}]",
            "--set",
            &format!("output.dir=\"{}\"", out.display()),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        dir
    })
    .path()
}

/// A fresh copy of the shared run's folder.
fn copy_of_run(into: &Path) -> PathBuf {
    let to = into.join("run");
    copy_dir(&shared_run().join("run"), &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

fn features(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["features", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    actopo(&args)
}

fn features_file(dir: &Path) -> PathBuf {
    dir.join("features").join(format!("{STEM}.parquet"))
}

#[test]
fn features_are_one_row_per_sample_variant_scope_and_identical_whatever_the_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    let o = features(
        &run,
        &["--threads", "1", "--bins", "30", "--landscape-levels", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let one = fs::read(features_file(&run)).unwrap();
    let o = features(
        &run,
        &["--threads", "3", "--bins", "30", "--landscape-levels", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(features_file(&run)).unwrap(),
        one,
        "thread count changed the bytes"
    );

    let (batches, meta) = read_parquet(&features_file(&run));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let meta_json: serde_json::Value = serde_json::from_str(&meta["actopo.features"]).unwrap();
    let scopes = meta_json["scopes"].as_object().unwrap().len();
    // CCFF has 4 graph ops: network + 4 layer scopes; clean + FGSM
    assert_eq!(scopes, 5);
    assert_eq!(rows, 12 * 2 * scopes);
    let b = &batches[0];
    let index = b
        .column_by_name("index")
        .unwrap()
        .as_primitive::<UInt32Type>();
    assert_eq!((index.value(0), index.value(rows - 1)), (0, 11));
    let landscape = b.column_by_name("landscape").unwrap().as_fixed_size_list();
    assert_eq!(landscape.value_length(), 3 * 30);
    assert!(meta.contains_key("actopo.version"));

    // reusing this run's own grids gives the same file
    let o = features(
        &run,
        &[
            "--grid-from",
            run.to_str().unwrap(),
            "--landscape-levels",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(features_file(&run)).unwrap(),
        one,
        "--grid-from itself changed the bytes"
    );
}

#[test]
fn features_refusals_name_what_is_missing_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    let o = features(&run, &["--scope", "nope"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("nope") && e.contains("graph.scopes"), "{e}");

    let o = features(&run, &["--grid-from", tmp.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no features/ folder") && e.contains("actopo features"),
        "{e}"
    );

    // the other run's features cover only `network`
    let other = tmp.path().join("other");
    copy_dir(&run, &other);
    assert!(features(&other, &["--scope", "network"]).status.success());
    let o = features(&run, &["--grid-from", other.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no grid for scope `0`") && e.contains("it has: network"),
        "{e}"
    );
    assert!(features(
        &run,
        &["--grid-from", other.to_str().unwrap(), "--scope", "network"]
    )
    .status
    .success());

    let o = features(
        &run,
        &["--grid-from", other.to_str().unwrap(), "--bins", "10"],
    );
    assert!(!o.status.success(), "--grid-from fixes the grid sizes");

    fs::remove_dir_all(run.join("diagrams")).unwrap();
    let o = features(&run, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("diagrams") && e.contains("output.diagrams"),
        "{e}"
    );
}

#[test]
fn features_never_replace_a_file_actopo_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_of_run(tmp.path());
    fs::create_dir_all(run.join("features")).unwrap();
    fs::write(features_file(&run), b"somebody's notes").unwrap();
    let o = features(&run, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("was not written by actopo"), "{e}");
    assert_eq!(fs::read(features_file(&run)).unwrap(), b"somebody's notes");
    let leftovers: Vec<_> = fs::read_dir(run.join("features"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(leftovers.len(), 1, "a temporary file was left behind");
}
