//! `actopo distances` through the binary on small hand-made output folders whose distances are
//! known, its bad-input messages, and its independence of the thread count.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float64Type;

use crate::analyze::{actopo, diagram_points as diagrams, summary, write};
use crate::support::read_batches;

/// A diagram point: (index, variant, birth, death; None = essential).
type Point<'a> = (u32, &'a str, f32, Option<f32>);

/// Samples 0 and 1 are class 0 and right, sample 2 is class 1 and wrong (its class has no mean);
/// each has a clean and an `adv` diagram.
fn known_run(dir: &Path) {
    write(
        dir,
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (0, "adv", 0, 1),
            (1, "clean", 0, 0),
            (1, "adv", 0, 0),
            (2, "clean", 1, 0),
            (2, "adv", 1, 0),
        ]),
    );
    let points: Vec<Point> = vec![
        (0, "clean", 5.0, None),
        (0, "clean", 3.0, Some(1.0)),
        (0, "adv", 5.25, None),
        (0, "adv", 3.5, Some(1.0)),
        (1, "clean", 5.0, None),
        (1, "clean", 3.0, Some(1.0)),
        (1, "adv", 5.0, None),
        (2, "clean", 4.0, None),
        (2, "clean", 2.0, Some(1.0)),
        (2, "adv", 4.0, None),
        (2, "adv", 2.0, Some(1.0)),
    ];
    write(dir, "diagrams", diagrams(&points));
}

/// (variant, index, reference, bottleneck, wasserstein_2, essential) of each row.
type Row = (String, u32, String, Option<f64>, Option<f64>, Option<f64>);

fn rows(dir: &Path) -> Vec<Row> {
    let b = read_batches(&dir.join("analysis/distances.parquet")).remove(0);
    let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
    let f = |n: &str| {
        let c = b
            .column_by_name(n)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        (0..c.len())
            .map(|i| c.is_valid(i).then(|| c.value(i)))
            .collect::<Vec<_>>()
    };
    let index = b
        .column_by_name("index")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>()
        .clone();
    let (variant, reference) = (s("variant"), s("reference"));
    let (bn, w2, ess) = (
        f("bottleneck"),
        f("wasserstein_2"),
        f("essential_bottleneck"),
    );
    (0..b.num_rows())
        .map(|i| {
            (
                variant.value(i).to_string(),
                index.value(i),
                reference.value(i).to_string(),
                bn[i],
                w2[i],
                ess[i],
            )
        })
        .collect()
}

fn row(variant: &str, index: u32, reference: &str, d: Option<(f64, f64, f64)>) -> Row {
    (
        variant.into(),
        index,
        reference.into(),
        d.map(|d| d.0),
        d.map(|d| d.1),
        d.map(|d| d.2),
    )
}

#[test]
fn distances_to_clean_and_to_the_class_mean_are_known() {
    let dir = tempfile::tempdir().unwrap();
    known_run(dir.path());
    let path = dir.path().to_str().unwrap();
    let o = actopo(&["distances", path, "--p", "2", "--threads", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("scope network, class 1: mean diagram fitted on 0"),
        "{stdout}"
    );
    let one_thread = rows(dir.path());
    // (3, 1) vs (3.5, 1): 0.5; (3, 1) vs nothing: 1 (to the diagonal); class 0's mean is (3, 1)
    // with essential 5; sample 2's class 1 has no correctly classified clean sample
    assert_eq!(
        one_thread,
        vec![
            row("clean", 0, "class_mean", Some((0.0, 0.0, 0.0))),
            row("adv", 0, "clean", Some((0.5, 0.5, 0.25))),
            row("clean", 1, "class_mean", Some((0.0, 0.0, 0.0))),
            row("adv", 1, "clean", Some((1.0, 1.0, 0.0))),
            row("clean", 2, "class_mean", None),
            row("adv", 2, "clean", Some((0.0, 0.0, 0.0))),
        ]
    );
    let o = actopo(&["distances", path, "--p", "2", "--threads", "3"]);
    assert!(o.status.success());
    assert_eq!(
        rows(dir.path()),
        one_thread,
        "the thread count changed the table"
    );

    let o = actopo(&["distances", path, "--p", "2", "--variant", "adv"]);
    assert!(o.status.success());
    assert!(rows(dir.path()).iter().all(|r| r.0 == "adv"));
}

fn fails_with(args: &[&str], wanted: &[&str]) {
    let o = actopo(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    for w in wanted {
        assert!(err.contains(w), "{args:?}: no `{w}` in: {err}");
    }
}

#[test]
fn bad_inputs_name_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    known_run(dir.path());
    let path = dir.path().to_str().unwrap();
    fails_with(
        &["distances", path, "--scope", "conv1"],
        &["conv1", "network", "graph.scopes"],
    );
    fails_with(
        &["distances", path, "--variant", "pgd"],
        &["pgd", "adv", "[[attacks]]"],
    );
    fails_with(&["distances", path, "--p", "3"], &["--p", "3"]);
    fails_with(&["distances", path, "--directions", "0"], &["--directions"]);

    // a run without attacks: asking for one names the `attacks` config table
    let clean = tempfile::tempdir().unwrap();
    write(clean.path(), "summary", summary(&[(0, "clean", 0, 0)]));
    write(
        clean.path(),
        "diagrams",
        diagrams(&[(0, "clean", 1.0, None)]),
    );
    let clean_path = clean.path().to_str().unwrap();
    fails_with(
        &["distances", clean_path, "--variant", "fgsm-linf-0.1"],
        &["no attacks", "[[attacks]]"],
    );
    let o = actopo(&["distances", clean_path]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("no perturbed variants"));

    // a run that wrote no diagrams table, and one with no rows in it
    std::fs::remove_dir_all(clean.path().join("diagrams")).unwrap();
    std::fs::write(clean.path().join("manifest.json"), "{}").unwrap();
    fails_with(
        &["distances", clean_path],
        &["diagrams/", "output.diagrams = true"],
    );
    write(clean.path(), "diagrams", diagrams(&[]));
    fails_with(&["distances", clean_path], &["holds no diagrams"]);
    // not an output folder
    let empty = tempfile::tempdir().unwrap();
    fails_with(
        &["distances", empty.path().to_str().unwrap()],
        &["manifest.json"],
    );
}
