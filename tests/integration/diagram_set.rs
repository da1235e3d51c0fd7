//! `DiagramSet::load` on a real run: every diagram row is read, grouped by (sample, variant, scope)
//! and agrees with the summary table's counts and totals.

use std::process::Command;

use actopo::analysis::diagram_set::DiagramSet;
use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};

use crate::support::{read_batches, repo};

/// A 6-image CCFF run with FGSM, network and layer scopes.
fn small_run(dir: &std::path::Path) {
    let out = format!("output.dir={:?}", dir.to_str().unwrap());
    let o = Command::new(env!("CARGO_BIN_EXE_actopo"))
        .arg("run")
        .arg(repo("config/fashion-mnist-attacks.toml"))
        .args(["--set", "data.limit=6", "--set", &out])
        .args(["--set", r#"attacks=[{kind="fgsm", eps=0.1}]"#])
        .args(["--set", r#"graph.scopes=["network","layers"]"#])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn diagram_set_agrees_with_the_summary_table() {
    let tmp = tempfile::tempdir().unwrap();
    small_run(tmp.path());
    let set = DiagramSet::load(tmp.path()).unwrap();
    assert_eq!(set.variants, ["clean", "fgsm-0.1"]);
    assert_eq!(set.scopes[0], "network");
    assert!(set.scopes.len() > 1, "layer scopes: {:?}", set.scopes);
    let summary = read_batches(&tmp.path().join("summary/t10k-images-idx3-ubyte.parquet"));
    let mut rows = 0;
    for b in &summary {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let (shard, variant, scope) = (col("shard"), col("variant"), col("scope"));
        let (shard, variant, scope) = (
            shard.as_string::<i32>(),
            variant.as_string::<i32>(),
            scope.as_string::<i32>(),
        );
        let index = col("index");
        let index = index.as_primitive::<UInt32Type>();
        let (pairs, essential) = (col("h0_pairs"), col("h0_essential"));
        let total = col("h0_total_persistence");
        for i in 0..b.num_rows() {
            let s = set
                .find(
                    shard.value(i),
                    index.value(i),
                    variant.value(i),
                    scope.value(i),
                )
                .expect("every summary row has a diagram");
            let d = &s.diagram;
            assert_eq!(
                d.pairs.len() as u64,
                pairs.as_primitive::<UInt64Type>().value(i)
            );
            assert_eq!(
                d.essential.len() as u64,
                essential.as_primitive::<UInt64Type>().value(i)
            );
            assert!(d.pairs.iter().all(|p| p.birth >= p.death));
            // The summary sums f32 pairs in f64: the same values, maybe another order.
            let sum: f64 = d.pairs.iter().map(|p| p.persistence()).sum();
            let want = total.as_primitive::<Float64Type>().value(i);
            assert!(
                (sum - want).abs() <= 1e-9 * want.max(1.0),
                "{sum} vs {want}"
            );
            rows += 1;
        }
    }
    assert_eq!(rows, set.samples.len(), "no diagram without a summary row");
}

#[test]
fn unknown_scopes_and_variants_name_the_config_key() {
    let tmp = tempfile::tempdir().unwrap();
    small_run(tmp.path());
    let set = DiagramSet::load(tmp.path()).unwrap();
    let e = set.check_scope("conv9").unwrap_err().to_string();
    assert!(
        e.contains("conv9") && e.contains("graph.scopes") && e.contains("network"),
        "{e}"
    );
    let e = set.check_variant("pgd").unwrap_err().to_string();
    assert!(e.contains("fgsm-0.1") && e.contains("[[attacks]]"), "{e}");
    assert!(set.check_variant("clean").is_ok() && set.check_scope("network").is_ok());
}

#[test]
fn a_run_without_diagrams_names_output_diagrams() {
    let tmp = tempfile::tempdir().unwrap();
    let out = format!("output.dir={:?}", tmp.path().to_str().unwrap());
    let o = Command::new(env!("CARGO_BIN_EXE_actopo"))
        .arg("run")
        .arg(repo("config/fashion-mnist.toml"))
        .args([
            "--set",
            "data.limit=2",
            "--set",
            &out,
            "--set",
            "output.diagrams=false",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let e = DiagramSet::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("output.diagrams = true"), "{e}");
}
