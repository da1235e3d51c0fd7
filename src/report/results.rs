//! Accuracy and attack success per variant (from `summary/`), and the failures (`failures/`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use arrow::array::{Array, AsArray};

use super::html::{batches_table, escape, table};
use crate::analysis::{read_table, variants_in_order, Columns};

/// One variant's results over the samples it has a summary row for.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantResult {
    pub variant: String,
    pub samples: usize,
    pub labelled: usize,
    pub correct: usize,
    /// Samples whose attack_success is set (perturbed variants), and how many of them succeeded.
    pub attacked: usize,
    pub succeeded: usize,
    /// Samples whose prediction differs from their clean prediction.
    pub changed: usize,
    pub mean_confidence: f64,
    pub mean_linf: Option<f64>,
    pub mean_l2: Option<f64>,
}

/// One summary row, one scope only (the sample's prediction repeats across scopes).
struct Row {
    key: (String, u32),
    variant: String,
    label: Option<i64>,
    pred: Option<i64>,
    confidence: f64,
    success: Option<bool>,
    linf: Option<f64>,
    l2: Option<f64>,
}

fn read_rows(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut scope_kept: Option<String> = None;
    for b in read_table(dir, "summary")? {
        let c = Columns::new(&b, "summary");
        let (shard, index, variant, scope) = (
            c.str("shard")?,
            c.u32("index")?,
            c.str("variant")?,
            c.str("scope")?,
        );
        let (label, pred) = (c.opt_i64("label")?, c.opt_i64("pred")?);
        let (confidence, linf, l2) = (
            c.opt_f32("confidence")?,
            c.opt_f32("perturbation_linf")?,
            c.opt_f32("perturbation_l2")?,
        );
        let success = b
            .column_by_name("attack_success")
            .and_then(|a| a.as_boolean_opt())
            .context("summary: no boolean column `attack_success`; was it written by this version of actopo?")?;
        for i in 0..b.num_rows() {
            let kept = scope_kept.get_or_insert_with(|| scope[i].to_string());
            if scope[i] != kept.as_str() {
                continue;
            }
            rows.push(Row {
                key: (shard[i].to_string(), index[i]),
                variant: variant[i].to_string(),
                label: label[i],
                pred: pred[i],
                confidence: confidence[i].map_or(f64::NAN, f64::from),
                success: success.is_valid(i).then(|| success.value(i)),
                linf: linf[i].map(f64::from),
                l2: l2[i].map(f64::from),
            });
        }
    }
    Ok(rows)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    crate::analysis::mean(values)
}

/// Per variant, in run order.
pub fn variant_results(dir: &Path) -> anyhow::Result<Vec<VariantResult>> {
    let rows = read_rows(dir)?;
    let clean: HashMap<&(String, u32), Option<i64>> = rows
        .iter()
        .filter(|r| r.variant == "clean")
        .map(|r| (&r.key, r.pred))
        .collect();
    let order = variants_in_order(rows.iter().map(|r| r.variant.as_str()));
    Ok(order
        .into_iter()
        .map(|v| {
            let of: Vec<&Row> = rows.iter().filter(|r| r.variant == v).collect();
            VariantResult {
                variant: v.to_string(),
                samples: of.len(),
                labelled: of.iter().filter(|r| r.label.is_some()).count(),
                correct: of
                    .iter()
                    .filter(|r| r.label.is_some() && r.label == r.pred)
                    .count(),
                attacked: of.iter().filter(|r| r.success.is_some()).count(),
                succeeded: of.iter().filter(|r| r.success == Some(true)).count(),
                changed: of
                    .iter()
                    .filter(|r| clean.get(&r.key).is_some_and(|&p| p != r.pred))
                    .count(),
                mean_confidence: mean(of.iter().map(|r| r.confidence)).unwrap_or(f64::NAN),
                mean_linf: mean(of.iter().filter_map(|r| r.linf)),
                mean_l2: mean(of.iter().filter_map(|r| r.l2)),
            }
        })
        .collect())
}

fn ratio(k: usize, n: usize) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.3} ({k}/{n})", k as f64 / n as f64)
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The accuracy section.
pub fn section(dir: &Path) -> String {
    let results = match variant_results(dir) {
        Ok(r) => r,
        Err(e) => {
            return format!(
            "<h2 id=\"accuracy\">Accuracy and attack success</h2>\n<p class=\"missing\">{}</p>\n",
            escape(&format!("{e:#}"))
        )
        }
    };
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.variant.clone(),
                r.samples.to_string(),
                ratio(r.correct, r.labelled),
                ratio(r.succeeded, r.attacked),
                if r.variant == "clean" {
                    "-".into()
                } else {
                    ratio(r.changed, r.samples)
                },
                format!("{:.3}", r.mean_confidence),
                opt(r.mean_linf),
                opt(r.mean_l2),
            ]
        })
        .collect();
    format!(
        "<h2 id=\"accuracy\">Accuracy and attack success</h2>\n{}<p class=\"note\">accuracy: prediction = label over labelled samples; attack success: the summary's <code>attack_success</code> (prediction differs from the label, or from the clean prediction when unlabelled); changed: prediction differs from the same sample's clean prediction.</p>\n",
        table(
            &["variant", "samples", "accuracy", "attack success", "changed vs clean", "mean confidence", "mean L∞", "mean L2"],
            &rows
        )
    )
}

/// The failures section: counts per (stage, variant) and the first rows.
pub fn failures_section(dir: &Path) -> String {
    let head = "<h2 id=\"failures\">Failures</h2>\n";
    if !dir.join("failures").is_dir() {
        return format!("{head}<p>None: the run wrote no <code>failures/</code> table.</p>\n");
    }
    let batches = match read_table(dir, "failures") {
        Ok(b) => b,
        Err(e) => {
            return format!(
                "{head}<p class=\"missing\">{}</p>\n",
                escape(&format!("{e:#}"))
            )
        }
    };
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let shown = rows.min(50);
    match batches_table(&batches, 50) {
        Ok(t) => format!("{head}<p>{rows} failure rows (first {shown} shown).</p>\n{t}"),
        Err(e) => format!(
            "{head}<p class=\"missing\">{}</p>\n",
            escape(&format!("{e:#}"))
        ),
    }
}
