//! `actopo analyze` through the binary on small hand-made output folders whose answers are known.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use actopo::output::{diagrams_schema, subgraphs_schema, summary_schema};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    StringArray, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{Float64Type, Int64Type};
use parquet::arrow::ArrowWriter;

use crate::support::read_batches;

pub(crate) fn write(dir: &Path, table: &str, batch: RecordBatch) {
    fs::create_dir_all(dir.join(table)).unwrap();
    let mut w = ArrowWriter::try_new(
        fs::File::create(dir.join(table).join("s.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Summary rows: (index, variant, label, pred), network scope.
pub(crate) fn summary(rows: &[(u32, &str, i64, i64)]) -> RecordBatch {
    let n = rows.len();
    let u64s = || Arc::new(UInt64Array::from(vec![1u64; n])) as ArrayRef;
    let f64s = || Arc::new(Float64Array::from(vec![0.0; n])) as ArrayRef;
    RecordBatch::try_new(
        summary_schema(),
        vec![
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Float32Array::from(vec![0.9f32; n])),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from(vec!["network"; n])),
            u64s(),
            u64s(),
            u64s(),
            u64s(),
            f64s(),
            f64s(),
            f64s(),
            u64s(),
            Arc::new(BooleanArray::from(
                rows.iter()
                    .map(|r| (r.1 != "clean").then_some(r.2 != r.3))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float32Array::from(vec![None::<f32>; n])),
            Arc::new(Float32Array::from(vec![None::<f32>; n])),
        ],
    )
    .unwrap()
}

/// Diagram rows (index, variant, birth, death; None = essential), shard `s`, network scope, H0.
pub(crate) fn diagram_points(rows: &[(u32, &str, f32, Option<f32>)]) -> RecordBatch {
    let n = rows.len();
    RecordBatch::try_new(
        diagrams_schema(),
        vec![
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from(vec!["network"; n])),
            Arc::new(UInt8Array::from(vec![0u8; n])),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float32Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

pub(crate) fn actopo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(args)
        .output()
        .unwrap()
}

/// A sample's index, variant and the (source, target) unit ids of its subgraph's edges.
type SampleEdges<'a> = (u32, &'a str, &'a [(u64, u64)]);

#[test]
fn subgraph_analysis_finds_known_representatives_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    // class 0 lives on edges 1->2, 2->3; class 1 on 5->6, 6->7 (same data as the unit tests)
    let subgraphs: Vec<SampleEdges> = vec![
        (0, "clean", &[(1, 2), (2, 3), (9, 9)]),
        (1, "clean", &[(1, 2), (2, 3)]),
        (2, "clean", &[(5, 6), (6, 7)]),
        (0, "adv", &[(1, 2), (2, 3), (5, 6)]),
        (1, "adv", &[(5, 6), (6, 7)]),
        (2, "adv", &[(5, 6), (6, 7)]),
    ];
    write(
        dir.path(),
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (0, "adv", 0, 1),
            (1, "clean", 0, 0),
            (1, "adv", 0, 1),
            (2, "clean", 1, 1),
            (2, "adv", 1, 1),
        ]),
    );
    let mut rows: Vec<(u32, &str, u64, u64, u32)> = Vec::new();
    for (i, v, edges) in &subgraphs {
        for (rank, (s, d)) in edges.iter().enumerate() {
            rows.push((*i, v, *s, *d, rank as u32));
        }
    }
    let n = rows.len();
    let batch = RecordBatch::try_new(
        subgraphs_schema(),
        vec![
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from(vec!["network"; n])),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(StringArray::from(vec!["a"; n])),
            Arc::new(StringArray::from(vec!["b"; n])),
            Arc::new(Float32Array::from(vec![1.0f32; n])),
            Arc::new(Float32Array::from(vec![0.5f32; n])),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.4))),
        ],
    )
    .unwrap();
    write(dir.path(), "subgraphs", batch);

    let o = actopo(&[
        "analyze",
        "subgraphs",
        dir.path().to_str().unwrap(),
        "--min-fraction",
        "0.6",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("class 0: 2 edges from 2 samples"),
        "{stdout}"
    );

    let read = |name: &str| {
        read_batches(&dir.path().join("analysis").join(format!("{name}.parquet"))).remove(0)
    };
    let samples = read("subgraph_samples");
    let variant = samples
        .column_by_name("variant")
        .unwrap()
        .as_string::<i32>();
    let index = samples
        .column_by_name("index")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let sub_pred = samples
        .column_by_name("subgraph_pred")
        .unwrap()
        .as_primitive::<Int64Type>();
    let overlap_true = samples
        .column_by_name("overlap_true")
        .unwrap()
        .as_primitive::<Float64Type>();
    let row = |i: u32, v: &str| {
        (0..samples.num_rows())
            .find(|&r| index.value(r) == i && variant.value(r) == v)
            .unwrap()
    };
    let r = row(0, "adv");
    assert_eq!(sub_pred.value(r), 0);
    assert!((overlap_true.value(r) - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(sub_pred.value(row(1, "adv")), 1);

    let variants = read("subgraph_variants");
    let n = variants
        .column_by_name("n")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    let recovery = variants
        .column_by_name("recovery_rate")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(
        variants
            .column_by_name("variant")
            .unwrap()
            .as_string::<i32>()
            .value(1),
        "adv"
    );
    assert_eq!((n.value(1), recovery.value(1)), (2, 0.5));

    let reps = read("subgraph_representatives");
    assert_eq!(reps.num_rows(), 4);
    // no partial files left
    assert!(fs::read_dir(dir.path().join("analysis"))
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn uncertainty_analysis_reads_layer_diagrams() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "summary",
        summary(&[(0, "clean", 0, 0), (1, "clean", 0, 0), (2, "clean", 1, 0)]),
    );
    // (index, scope, dim, birth, death)
    let points: Vec<(u32, &str, u8, f32, Option<f32>)> = vec![
        (0, "network", 0, 9.0, Some(1.0)), // ignored: not a layer scope
        (0, "a", 0, 5.0, Some(3.0)),
        (0, "a", 0, 5.0, Some(1.0)),
        (0, "a", 0, 5.0, None), // essential: ignored
        (0, "b", 0, 5.0, Some(2.0)),
        (1, "a", 0, 5.0, Some(1.0)),
        (1, "b", 0, 5.0, Some(4.0)),
        (1, "b", 0, 5.0, Some(2.0)),
        (1, "b", 1, 5.0, None), // H1: ignored
        (2, "a", 0, 9.0, Some(5.0)),
        (2, "a", 0, 9.0, Some(5.0)),
        (2, "a", 0, 9.0, Some(5.0)),
        (2, "b", 0, 9.0, Some(0.5)),
    ];
    let n = points.len();
    let batch = RecordBatch::try_new(
        diagrams_schema(),
        vec![
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from_iter_values(points.iter().map(|p| p.0))),
            Arc::new(StringArray::from(vec!["clean"; n])),
            Arc::new(StringArray::from_iter_values(points.iter().map(|p| p.1))),
            Arc::new(UInt8Array::from_iter_values(points.iter().map(|p| p.2))),
            Arc::new(Float32Array::from_iter_values(points.iter().map(|p| p.3))),
            Arc::new(Float32Array::from(
                points.iter().map(|p| p.4).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    write(dir.path(), "diagrams", batch);
    let o = actopo(&["analyze", "uncertainty", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = read_batches(&dir.path().join("analysis/uncertainty.parquet")).remove(0);
    let tu = b
        .column_by_name("topological_uncertainty")
        .unwrap()
        .as_primitive::<Float64Type>();
    let correct = b.column_by_name("correct").unwrap().as_boolean();
    // same numbers as the unit test: class 0 means a = [2, 0.5], b = [3, 1]
    assert_eq!((tu.value(0), tu.value(2)), (1.75, 8.0));
    assert!(correct.value(0) && !correct.value(2));
    assert!(!tu.is_null(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("AUROC"), "{stdout}");
}

#[test]
fn analyze_without_subgraphs_says_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "summary", summary(&[(0, "clean", 0, 0)]));
    // without a manifest it is not an output folder at all
    let o = actopo(&["analyze", "subgraphs", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is not an actopo output folder"), "{e}");
    // a run's folder without the table: the key to set
    fs::write(dir.path().join("manifest.json"), "{}").unwrap();
    let o = actopo(&["analyze", "subgraphs", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("output.subgraphs = true"), "{e}");
}
