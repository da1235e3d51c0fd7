//! `actopo analyze subgraphs|uncertainty --fit FIT_DIR`: class references fitted on one hand-made
//! run and scored on another, with answers worked out by hand; in-sample is the default and is
//! said so; runs that are not comparable are refused; thin classes are warned about; the
//! uncertainty counts of right and wrong predictions.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use actopo::output::{diagrams_schema, subgraphs_schema};
use arrow::array::{
    Array, AsArray, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{Float64Type, Int64Type, UInt32Type, UInt64Type};
use serde_json::{json, Value};

use crate::analyze::{actopo, summary, write};
use crate::support::read_parquet;

/// A run identity as `actopo run` records it (only the keys the comparison looks at matter here).
fn identity() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "spec_sha256": "spec",
        "weights_sha256": "weights",
        "config": {
            "model": {},
            "data": {"format": "auto", "limit": 0, "mean": [0.0], "std": [1.0], "clip": [0.0, 1.0]},
            "pipeline": {"seed": 0},
            "graph": {"scopes": ["network", "layers"], "include_input": true},
            "homology": {"keep_zero_persistence": false, "h1_diagram": false},
            "output": {"diagrams": true, "summary": true, "subgraphs": true},
            "subgraph": {"top_k": 100},
            "attacks": [],
        }
    })
}

/// Writes `dir/manifest.json` the way actopo starts it, with one done shard whose input has the
/// SHA-256 `input`.
fn manifest(dir: &Path, identity: &Value, input: &str) {
    let shards = json!([{
        "name": "s.idx", "path": "/data/s.idx", "status": "done", "samples": 1,
        "outputs": [], "failures": 0, "error": null,
        "source": {"sha256": input, "files": []},
    }]);
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("manifest.json"),
        format!(
            "{{\n  \"tool\": \"actopo\",\n  \"identity\": {identity},\n  \"shards\": {shards}\n}}"
        ),
    )
    .unwrap();
}

/// One sample's subgraph: (index, variant, edges).
type SubgraphRow<'a> = (u32, &'a str, &'a [(u64, u64)]);

/// The subgraphs table of the given rows, network scope.
fn subgraphs(rows: &[SubgraphRow]) -> RecordBatch {
    let mut flat: Vec<(u32, &str, u64, u64, u32)> = Vec::new();
    for (i, v, edges) in rows {
        for (rank, (s, d)) in edges.iter().enumerate() {
            flat.push((*i, v, *s, *d, rank as u32));
        }
    }
    let n = flat.len();
    RecordBatch::try_new(
        subgraphs_schema(),
        vec![
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from_iter_values(flat.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(flat.iter().map(|r| r.1))),
            Arc::new(StringArray::from(vec!["network"; n])),
            Arc::new(UInt64Array::from_iter_values(flat.iter().map(|r| r.2))),
            Arc::new(UInt64Array::from_iter_values(flat.iter().map(|r| r.3))),
            Arc::new(StringArray::from(vec!["a"; n])),
            Arc::new(StringArray::from(vec!["b"; n])),
            Arc::new(Float32Array::from(vec![1.0f32; n])),
            Arc::new(Float32Array::from(vec![0.5f32; n])),
            Arc::new(UInt32Array::from_iter_values(flat.iter().map(|r| r.4))),
        ],
    )
    .unwrap()
}

/// The diagrams table of (index, layer scope, H0 death values), clean variant.
fn diagrams(rows: &[(u32, &str, &[f32])]) -> RecordBatch {
    let mut flat: Vec<(u32, &str, f32)> = Vec::new();
    for (i, scope, deaths) in rows {
        flat.extend(deaths.iter().map(|&d| (*i, *scope, d)));
    }
    let n = flat.len();
    RecordBatch::try_new(
        diagrams_schema(),
        vec![
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from_iter_values(flat.iter().map(|p| p.0))),
            Arc::new(StringArray::from(vec!["clean"; n])),
            Arc::new(StringArray::from_iter_values(flat.iter().map(|p| p.1))),
            Arc::new(UInt8Array::from(vec![0u8; n])),
            Arc::new(Float32Array::from(vec![9.0f32; n])),
            Arc::new(Float32Array::from_iter_values(flat.iter().map(|p| p.2))),
        ],
    )
    .unwrap()
}

/// Fit run A: class 0 on edges 1->2, 2->3; class 1 on 5->6; class 2's two samples share no edge.
fn subgraph_fit_run(dir: &Path) {
    write(
        dir,
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (1, "clean", 0, 0),
            (2, "clean", 1, 1),
            (3, "clean", 1, 1),
            (4, "clean", 2, 2),
            (5, "clean", 2, 2),
            (6, "clean", 1, 0), // wrong: not fitted on
        ]),
    );
    write(
        dir,
        "subgraphs",
        subgraphs(&[
            (0, "clean", &[(1, 2), (2, 3)]),
            (1, "clean", &[(1, 2), (2, 3), (4, 4)]),
            (2, "clean", &[(5, 6), (6, 7)]),
            (3, "clean", &[(5, 6), (8, 8)]),
            (4, "clean", &[(9, 1)]),
            (5, "clean", &[(9, 2)]),
            (6, "clean", &[(6, 7)]),
        ]),
    );
}

/// Scored run B, whose own (in-sample) representatives differ from A's.
fn subgraph_scored_run(dir: &Path) {
    write(
        dir,
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (0, "adv", 0, 1),
            (1, "clean", 1, 1),
            (1, "adv", 1, 1),
        ]),
    );
    write(
        dir,
        "subgraphs",
        subgraphs(&[
            (0, "clean", &[(1, 2), (6, 7)]),
            (0, "adv", &[(1, 2), (5, 6), (6, 7)]),
            (1, "clean", &[(5, 6), (6, 7)]),
            (1, "adv", &[(5, 6)]),
        ]),
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The row of (index, variant) in a per-sample analysis table.
fn row_of(b: &RecordBatch, index: u32, variant: &str) -> usize {
    let idx = b
        .column_by_name("index")
        .unwrap()
        .as_primitive::<UInt32Type>();
    let var = b.column_by_name("variant").unwrap().as_string::<i32>();
    (0..b.num_rows())
        .find(|&r| idx.value(r) == index && var.value(r) == variant)
        .unwrap()
}

fn f64_at(b: &RecordBatch, col: &str, row: usize) -> Option<f64> {
    let c = b.column_by_name(col).unwrap().as_primitive::<Float64Type>();
    c.is_valid(row).then(|| c.value(row))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn subgraphs_fitted_on_another_run_score_with_its_representatives() {
    let tmp = tempfile::tempdir().unwrap();
    let (fit, scored) = (tmp.path().join("train"), tmp.path().join("test"));
    subgraph_fit_run(&fit);
    subgraph_scored_run(&scored);
    // data.limit and attacks differ: they choose the samples, not how a clean graph is made
    let mut test_identity = identity();
    test_identity["config"]["data"]["limit"] = json!(300);
    test_identity["config"]["attacks"] = json!([{"kind": "fgsm", "eps": 0.1}]);
    manifest(&fit, &identity(), "train-images");
    manifest(&scored, &test_identity, "test-images");

    let o = actopo(&[
        "analyze",
        "subgraphs",
        path(&scored),
        "--min-fraction",
        "0.6",
        "--fit",
        path(&fit),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    let fit_abs = fs::canonicalize(&fit).unwrap();
    assert!(
        stdout.contains(&format!(
            "fit: class representatives fitted on {}",
            fit_abs.display()
        )),
        "{stdout}"
    );
    // A's representatives at 0.6: R0 = {1->2, 2->3}, R1 = {5->6}, R2 = {} (each edge in 1 of 2)
    assert!(
        stdout.contains("class 0: 2 edges from 2 samples"),
        "{stdout}"
    );
    assert!(
        stdout.contains("class 1: 1 edges from 2 samples"),
        "{stdout}"
    );
    assert!(
        stdout.contains("class 2: 0 edges from 2 samples"),
        "{stdout}"
    );

    let (batches, meta) = read_parquet(&scored.join("analysis/subgraph_samples.parquet"));
    let b = &batches[0];
    assert_eq!(meta["actopo.fit"], fit_abs.display().to_string());
    let sub_pred = b
        .column_by_name("subgraph_pred")
        .unwrap()
        .as_primitive::<Int64Type>();
    let diff_size = b
        .column_by_name("diff_size")
        .unwrap()
        .as_primitive::<UInt64Type>();
    // clean 0: S = {1->2, 6->7}: |S ∩ R0| = 1, J0 = 1/3, J1 = 0
    let r = row_of(b, 0, "clean");
    assert!(close(f64_at(b, "overlap_true", r), 0.5));
    assert!(close(f64_at(b, "jaccard_true", r), 1.0 / 3.0));
    assert_eq!(sub_pred.value(r), 0);
    // clean 1: S = {5->6, 6->7}: J1 = 1/(2 + 1 - 1)
    let r = row_of(b, 1, "clean");
    assert!(close(f64_at(b, "jaccard_true", r), 0.5));
    assert_eq!(sub_pred.value(r), 1);
    // adv 0 (label 0, pred 1): S = {1->2, 5->6, 6->7}: J0 = 1/4 < J1 = 1/3; gained {5->6} ⊂ R1
    let r = row_of(b, 0, "adv");
    assert_eq!(sub_pred.value(r), 1);
    assert!(close(f64_at(b, "jaccard_true", r), 0.25));
    assert!(close(f64_at(b, "jaccard_pred", r), 1.0 / 3.0));
    assert!(close(f64_at(b, "overlap_true", r), 1.0 / 3.0));
    assert_eq!(diff_size.value(r), 1);
    assert!(close(f64_at(b, "diff_overlap_true", r), 0.0));
    assert!(close(f64_at(b, "diff_overlap_pred", r), 1.0));

    let (variants, vmeta) = read_parquet(&scored.join("analysis/subgraph_variants.parquet"));
    let v = &variants[0];
    assert_eq!(vmeta["actopo.fit"], fit_abs.display().to_string());
    let n = v.column_by_name("n").unwrap().as_primitive::<UInt64Type>();
    // clean: both right and recovered; adv: only sample 0 counts, and it is retained, not recovered
    assert_eq!((n.value(0), n.value(1)), (2, 1));
    assert!(close(f64_at(v, "recovery_rate", 0), 1.0));
    assert!(close(f64_at(v, "recovery_rate", 1), 0.0));
    assert!(close(f64_at(v, "retention_rate", 1), 1.0));
    let (reps, _) = read_parquet(&scored.join("analysis/subgraph_representatives.parquet"));
    assert_eq!(reps[0].num_rows(), 3);

    // in-sample (the default) fits B's own R0 = {1->2, 6->7}, R1 = {5->6, 6->7}: adv 0 ties and
    // goes to class 0, so the answer above came from A
    let o = actopo(&[
        "analyze",
        "subgraphs",
        path(&scored),
        "--min-fraction",
        "0.6",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("fit: in-sample"), "{stdout}");
    let (batches, meta) = read_parquet(&scored.join("analysis/subgraph_samples.parquet"));
    assert_eq!(meta["actopo.fit"], "in-sample");
    let b = &batches[0];
    let sub_pred = b
        .column_by_name("subgraph_pred")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(sub_pred.value(row_of(b, 0, "adv")), 0);
    // --fit naming OUTPUT_DIR itself is in-sample too
    let o = actopo(&[
        "analyze",
        "subgraphs",
        path(&scored),
        "--fit",
        path(&scored),
        "--min-fraction",
        "0.6",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("fit: in-sample"));
}

#[test]
fn thin_and_empty_representatives_are_warned_about_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (fit, scored) = (tmp.path().join("train"), tmp.path().join("test"));
    subgraph_fit_run(&fit);
    subgraph_scored_run(&scored);
    manifest(&fit, &identity(), "images");
    manifest(&scored, &identity(), "images");
    let o = actopo(&[
        "analyze",
        "subgraphs",
        path(&scored),
        "--min-fraction",
        "0.6",
        "--fit",
        path(&fit),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    let empty = "class 2: representative is empty (0 edges from 2 samples";
    let thin =
        "class 0: representative fitted on 2 correctly classified clean sample(s), fewer than 10";
    for text in [&stderr, &stdout] {
        assert!(text.contains(empty), "{text}");
        assert!(text.contains("lower --min-fraction"), "{text}");
        assert!(text.contains(thin), "{text}");
        assert!(text.contains("fit on more samples"), "{text}");
        // both runs read the same input file: those samples are not out-of-sample
        assert!(text.contains("both read input s.idx"), "{text}");
    }
    let (_, meta) = read_parquet(&scored.join("analysis/subgraph_variants.parquet"));
    let warnings: Vec<String> = serde_json::from_str(&meta["actopo.warnings"]).unwrap();
    // classes 0, 1, 2 have 2 samples each; class 2 is empty; the shared input
    assert_eq!(warnings.len(), 5, "{warnings:?}");
}

#[test]
fn fit_on_a_run_that_is_not_comparable_is_refused_naming_both_and_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (fit, scored) = (tmp.path().join("train"), tmp.path().join("test"));
    subgraph_fit_run(&fit);
    subgraph_scored_run(&scored);
    manifest(&scored, &identity(), "b");
    let mut other = identity();
    other["weights_sha256"] = json!("other-weights");
    other["config"]["graph"]["scopes"] = json!(["network"]);
    manifest(&fit, &other, "a");
    for analysis in ["subgraphs", "uncertainty"] {
        let o = actopo(&["analyze", analysis, path(&scored), "--fit", path(&fit)]);
        assert_eq!(o.status.code(), Some(2));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("not comparable"), "{e}");
        assert!(e.contains(path(&fit)) && e.contains(path(&scored)), "{e}");
        assert!(
            e.contains("weights_sha256: \"other-weights\" -> \"weights\""),
            "{e}"
        );
        assert!(e.contains("graph.scopes"), "{e}");
        assert!(!scored.join("analysis").exists());
    }
    // subgraph.top_k matters to subgraphs only
    let mut top_k = identity();
    top_k["config"]["subgraph"]["top_k"] = json!(10);
    manifest(&fit, &top_k, "a");
    let o = actopo(&["analyze", "subgraphs", path(&scored), "--fit", path(&fit)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("subgraph.top_k: 10 -> 100"));
    // a folder without a manifest cannot be checked
    fs::remove_file(fit.join("manifest.json")).unwrap();
    let o = actopo(&["analyze", "subgraphs", path(&scored), "--fit", path(&fit)]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!(
            "--fit {} has no readable actopo manifest",
            fs::canonicalize(&fit).unwrap().display()
        )),
        "{e}"
    );
}

/// Fit run A's class means: class 0 a = [3, 1], b = [2, 1] (two samples); class 1 a = [1], b = [1].
fn uncertainty_fit_run(dir: &Path) {
    write(
        dir,
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (1, "clean", 0, 0),
            (2, "clean", 1, 0),
            (3, "clean", 1, 1),
        ]),
    );
    write(
        dir,
        "diagrams",
        diagrams(&[
            (0, "a", &[4.0, 2.0]),
            (0, "b", &[2.0]),
            (1, "a", &[2.0]),
            (1, "b", &[2.0, 2.0]),
            (2, "a", &[9.0]), // wrong: not fitted on
            (2, "b", &[9.0]),
            (3, "a", &[1.0]),
            (3, "b", &[1.0]),
        ]),
    );
}

#[test]
fn uncertainty_fitted_on_another_run_with_right_and_wrong_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (fit, scored) = (tmp.path().join("train"), tmp.path().join("test"));
    uncertainty_fit_run(&fit);
    write(
        &scored,
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (1, "clean", 1, 0),
            (2, "clean", 1, 1),
            (3, "clean", 2, 2),
        ]),
    );
    write(
        &scored,
        "diagrams",
        diagrams(&[
            (0, "a", &[5.0]),
            (0, "b", &[2.0]),
            (1, "a", &[1.0]),
            (1, "b", &[4.0]),
            (2, "a", &[2.0]),
            (2, "b", &[1.0]),
            (3, "a", &[1.0]),
            (3, "b", &[1.0]),
        ]),
    );
    manifest(&fit, &identity(), "train");
    let mut test_identity = identity();
    test_identity["config"]["subgraph"]["top_k"] = json!(5); // does not matter to TU
    manifest(&scored, &test_identity, "test");

    let o = actopo(&["analyze", "uncertainty", path(&scored), "--fit", path(&fit)]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stderr}");
    let fit_abs = fs::canonicalize(&fit).unwrap().display().to_string();
    assert!(
        stdout.contains(&format!("fit: class means fitted on {fit_abs}")),
        "{stdout}"
    );
    let (batches, meta) = read_parquet(&scored.join("analysis/uncertainty.parquet"));
    assert_eq!(meta["actopo.fit"], fit_abs);
    let b = &batches[0];
    let tu = |i: u32| f64_at(b, "topological_uncertainty", row_of(b, i, "clean"));
    // 0 (pred 0): a |5-3| + |0-1| = 3, b |2-2| + |0-1| = 1 -> 2
    assert!(close(tu(0), 2.0), "{:?}", tu(0));
    // 1 (pred 0): a |1-3| + |0-1| = 3, b |4-2| + |0-1| = 3 -> 3
    assert!(close(tu(1), 3.0));
    // 2 (pred 1): a |2-1| = 1, b 0 -> 0.5
    assert!(close(tu(2), 0.5));
    // 3 (pred 2): A has no class 2
    assert_eq!(tu(3), None);

    // right / wrong counts: clean 3 right (one without TU), 1 wrong
    let (counts, cmeta) = read_parquet(&scored.join("analysis/uncertainty_counts.parquet"));
    assert_eq!(cmeta["actopo.fit"], fit_abs);
    let c = &counts[0];
    let class = c
        .column_by_name("class")
        .unwrap()
        .as_primitive::<Int64Type>();
    let u = |col: &str, r: usize| {
        c.column_by_name(col)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .value(r)
    };
    let at = |k: Option<i64>| {
        (0..c.num_rows())
            .find(|&r| class.is_valid(r).then(|| class.value(r)) == k)
            .unwrap()
    };
    let total = at(None);
    assert_eq!(
        (u("right", total), u("wrong", total), u("no_tu", total)),
        (3, 1, 1)
    );
    assert!(close(f64_at(c, "mean_tu_right", total), 1.25));
    assert!(close(f64_at(c, "mean_tu_wrong", total), 3.0));
    assert!(close(f64_at(c, "auroc", total), 1.0));
    let one = at(Some(1));
    assert_eq!(
        (u("right", one), u("wrong", one), u("no_tu", one)),
        (1, 1, 0)
    );
    assert_eq!(c.num_rows(), 4); // total + classes 0, 1, 2
                                 // the printout: variant, n (with a TU: 0, 1, 2), right, wrong
    let line = stdout.lines().find(|l| l.starts_with("clean ")).unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[..4], ["clean", "3", "3", "1"], "{stdout}");
    // classes fitted on 2, 1 and 0 samples
    for class in [
        "class 0: class mean fitted on 2",
        "class 1: class mean fitted on 1",
        "class 2: class mean fitted on 0",
    ] {
        assert!(stderr.contains(class) && stdout.contains(class), "{stderr}");
    }

    // in-sample (the default): class 0's mean is sample 0 itself, so its TU is 0
    let o = actopo(&["analyze", "uncertainty", path(&scored)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("fit: in-sample"));
    let (batches, meta) = read_parquet(&scored.join("analysis/uncertainty.parquet"));
    assert_eq!(meta["actopo.fit"], "in-sample");
    let b = &batches[0];
    assert!(close(
        f64_at(b, "topological_uncertainty", row_of(b, 0, "clean")),
        0.0
    ));
}
