//! Topological Uncertainty (Lacombe, Ike, Carrière, Chazal, Glisse, Umeda 2021).
//!
//! For each graph op's `layers` scope, a sample's H0 death values (finite pairs of the diagrams
//! table), sorted in decreasing order, are compared with the mean sorted death values of the
//! correctly classified clean samples of the sample's predicted class: the distance is the L1
//! distance between the two vectors, the shorter padded with zeros (the 1-Wasserstein distance
//! between diagrams whose points all share one birth line). TU is the mean of that distance over
//! layers. High TU flags inputs whose activations look unlike those the network gets right.
//! Lacombe et al. use every edge of the layer's maximum spanning tree; that is this definition with
//! `homology.keep_zero_persistence = true` (without it, zero-persistence pairs are left out).
//!
//! The class means are fitted on the run scored (in-sample) or, with `--fit`, on another run's
//! clean samples (`super::fit`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};

use super::fit::{self, Fit};
use super::{
    f64_col, key_columns, mean, read_table, variants_in_order, write_analysis, Columns, Prediction,
    Records, SampleRowKey,
};
use crate::topology::ScopeKind;

/// One (sample, variant): its per-layer death values, sorted in decreasing order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeathRecord {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub prediction: Prediction,
    pub layers: BTreeMap<String, Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TuRow {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub label: Option<i64>,
    pub pred: i64,
    /// None when the predicted class has no correctly classified clean sample to compare with.
    pub tu: Option<f64>,
}

fn padded(v: &[f32], len: usize) -> impl Iterator<Item = f64> + '_ {
    v.iter()
        .map(|&x| x as f64)
        .chain(std::iter::repeat(0.0))
        .take(len)
}

/// The fitted reference: mean sorted death vector per (class, layer), and how many samples each
/// class's means average.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ClassMeans {
    pub means: HashMap<(i64, String), Vec<f64>>,
    pub support: BTreeMap<i64, usize>,
}

/// Class means over the correctly classified clean samples of `records`.
pub(crate) fn class_means(records: &[DeathRecord]) -> ClassMeans {
    let mut groups: HashMap<(i64, String), Vec<&Vec<f32>>> = HashMap::new();
    let mut support: BTreeMap<i64, usize> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.variant == "clean" && r.prediction.label == Some(r.prediction.pred))
    {
        *support.entry(r.prediction.pred).or_default() += 1;
        for (layer, deaths) in &r.layers {
            groups
                .entry((r.prediction.pred, layer.clone()))
                .or_default()
                .push(deaths);
        }
    }
    let means = groups
        .into_iter()
        .map(|(key, vs)| {
            let len = vs.iter().map(|v| v.len()).max().unwrap_or(0);
            let mut mean = vec![0f64; len];
            for v in &vs {
                for (m, x) in mean.iter_mut().zip(padded(v, len)) {
                    *m += x;
                }
            }
            mean.iter_mut().for_each(|m| *m /= vs.len() as f64);
            (key, mean)
        })
        .collect();
    ClassMeans { means, support }
}

impl SampleRowKey for TuRow {
    fn key(&self) -> (&str, u32, &str, Option<i64>, i64) {
        (
            &self.shard,
            self.index,
            &self.variant,
            self.label,
            self.pred,
        )
    }
}

/// In-sample TU: class means fitted on `records` themselves (what `run` does without `--fit`; the
/// unit tests use it directly).
#[cfg(test)]
fn topological_uncertainty(records: &[DeathRecord]) -> Vec<TuRow> {
    score(records, &class_means(records).means)
}

/// TU of every record against class means fitted elsewhere (or on them).
pub(crate) fn score(
    records: &[DeathRecord],
    means: &HashMap<(i64, String), Vec<f64>>,
) -> Vec<TuRow> {
    records
        .iter()
        .map(|r| {
            let mut dists = Vec::new();
            let mut complete = !r.layers.is_empty();
            for (layer, deaths) in &r.layers {
                match means.get(&(r.prediction.pred, layer.clone())) {
                    Some(mean) => {
                        let len = deaths.len().max(mean.len());
                        let d: f64 = padded(deaths, len)
                            .zip(mean.iter().copied().chain(std::iter::repeat(0.0)))
                            .map(|(a, b)| (a - b).abs())
                            .sum();
                        dists.push(d);
                    }
                    None => complete = false,
                }
            }
            TuRow {
                shard: r.shard.clone(),
                index: r.index,
                variant: r.variant.clone(),
                label: r.prediction.label,
                pred: r.prediction.pred,
                tu: complete.then(|| dists.iter().sum::<f64>() / dists.len() as f64),
            }
        })
        .collect()
}

/// Probability that a random wrong prediction has higher TU than a random right one (ties 1/2).
pub fn auroc(right: &[f64], wrong: &[f64]) -> Option<f64> {
    if right.is_empty() || wrong.is_empty() {
        return None;
    }
    let mut score = 0.0;
    for w in wrong {
        for r in right {
            score += if w > r {
                1.0
            } else if w == r {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(score / (right.len() * wrong.len()) as f64)
}

/// Reads the `layers` scopes of `diagrams/` (only the clean variant with `clean_only`, as a fit
/// needs) and the predictions of `summary/`.
pub(crate) fn read_records(dir: &Path, clean_only: bool) -> anyhow::Result<Vec<DeathRecord>> {
    let mut records = Records::new(dir)?;
    for b in read_table(dir, "diagrams")? {
        let c = Columns::new(&b, "diagrams");
        let (shard, index, variant, scope) = (
            c.str("shard")?,
            c.u32("index")?,
            c.str("variant")?,
            c.str("scope")?,
        );
        let (dim, death) = (c.u8("dim")?, c.opt_f32("death")?);
        for i in 0..b.num_rows() {
            if scope[i] == ScopeKind::Network.name()
                || dim[i] != 0
                || (clean_only && variant[i] != "clean")
            {
                continue;
            }
            let record = records.get(
                shard[i],
                index[i],
                variant[i],
                |shard, index, variant, prediction| DeathRecord {
                    shard,
                    index,
                    variant,
                    prediction,
                    layers: BTreeMap::new(),
                },
            )?;
            let deaths = record.layers.entry(scope[i].to_string()).or_default();
            if let Some(d) = death[i] {
                deaths.push(d);
            }
        }
    }
    let mut records = records.list;
    if records.is_empty() {
        anyhow::bail!(
            "{}: the diagrams table has no `layers` scope rows; run with graph.scopes = [\"network\", \"layers\"] and output.diagrams = true",
            dir.display()
        );
    }
    for r in &mut records {
        for v in r.layers.values_mut() {
            v.sort_by(|a, b| b.total_cmp(a));
        }
    }
    Ok(records)
}

/// Right and wrong predictions of one variant, over every class (`class` None) or one true class:
/// counts over labelled samples, TU means and AUROC over those of them with a TU.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    pub variant: String,
    pub class: Option<i64>,
    pub right: u64,
    pub wrong: u64,
    /// Labelled samples without a TU (their predicted class has no fitted mean).
    pub no_tu: u64,
    pub mean_tu_right: Option<f64>,
    pub mean_tu_wrong: Option<f64>,
    pub auroc: Option<f64>,
}

fn counts_of<'a>(
    variant: &str,
    class: Option<i64>,
    rows: impl Iterator<Item = &'a TuRow>,
) -> Counts {
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    let (mut n_right, mut n_wrong, mut no_tu) = (0, 0, 0);
    for r in rows {
        let Some(label) = r.label else { continue };
        let is_right = label == r.pred;
        if is_right {
            n_right += 1;
        } else {
            n_wrong += 1;
        }
        match (r.tu, is_right) {
            (Some(tu), true) => right.push(tu),
            (Some(tu), false) => wrong.push(tu),
            (None, _) => no_tu += 1,
        }
    }
    Counts {
        variant: variant.to_string(),
        class,
        right: n_right,
        wrong: n_wrong,
        no_tu,
        mean_tu_right: mean(right.iter().copied()),
        mean_tu_wrong: mean(wrong.iter().copied()),
        auroc: auroc(&right, &wrong),
    }
}

/// Per variant (first-seen order): the total over classes, then each true class in order.
pub(crate) fn counts(rows: &[TuRow]) -> Vec<Counts> {
    let order = variants_in_order(rows.iter().map(|r| r.variant.as_str()));
    let mut out = Vec::new();
    for v in order {
        let of_variant = || rows.iter().filter(move |r| r.variant == v);
        out.push(counts_of(v, None, of_variant()));
        let classes: BTreeSet<i64> = of_variant().filter_map(|r| r.label).collect();
        for c in classes {
            out.push(counts_of(
                v,
                Some(c),
                of_variant().filter(|r| r.label == Some(c)),
            ));
        }
    }
    out
}

fn per_sample_table(rows: &[TuRow]) -> anyhow::Result<RecordBatch> {
    let (mut fields, mut columns) = key_columns(rows);
    fields.push(Field::new("correct", DataType::Boolean, true));
    fields.push(Field::new(
        "topological_uncertainty",
        DataType::Float64,
        true,
    ));
    columns.push(Arc::new(BooleanArray::from(
        rows.iter()
            .map(|r| r.label.map(|l| l == r.pred))
            .collect::<Vec<_>>(),
    )));
    columns.push(f64_col(&rows.iter().map(|r| r.tu).collect::<Vec<_>>()));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn counts_table(counts: &[Counts]) -> anyhow::Result<RecordBatch> {
    let u64s = |f: fn(&Counts) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(counts.iter().map(f)))
    };
    let f64s = |f: fn(&Counts) -> Option<f64>| f64_col(&counts.iter().map(f).collect::<Vec<_>>());
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("variant", DataType::Utf8, false),
            Field::new("class", DataType::Int64, true),
            Field::new("right", DataType::UInt64, false),
            Field::new("wrong", DataType::UInt64, false),
            Field::new("no_tu", DataType::UInt64, false),
            Field::new("mean_tu_right", DataType::Float64, true),
            Field::new("mean_tu_wrong", DataType::Float64, true),
            Field::new("auroc", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                counts.iter().map(|c| c.variant.as_str()),
            )),
            Arc::new(Int64Array::from(
                counts.iter().map(|c| c.class).collect::<Vec<_>>(),
            )),
            u64s(|c| c.right),
            u64s(|c| c.wrong),
            u64s(|c| c.no_tu),
            f64s(|c| c.mean_tu_right),
            f64s(|c| c.mean_tu_wrong),
            f64s(|c| c.auroc),
        ],
    )?)
}

fn print_counts(first: &str, rows: &[&Counts], label: impl Fn(&Counts) -> String) {
    let f = |x: Option<f64>, digits: usize| x.map_or("-".into(), |x| format!("{x:.digits$}"));
    println!(
        "{:<30} {:>6} {:>6} {:>6} {:>12} {:>12} {:>8}",
        first, "n", "right", "wrong", "TU right", "TU wrong", "AUROC"
    );
    for c in rows {
        println!(
            "{:<30} {:>6} {:>6} {:>6} {:>12} {:>12} {:>8}",
            label(c),
            c.right + c.wrong - c.no_tu,
            c.right,
            c.wrong,
            f(c.mean_tu_right, 4),
            f(c.mean_tu_wrong, 4),
            f(c.auroc, 3)
        );
    }
}

/// `actopo analyze uncertainty`: fits the class means (on `dir`, or on `fit_dir`), writes
/// analysis/uncertainty.parquet (per sample) and analysis/uncertainty_counts.parquet (right and
/// wrong per variant and class), and prints both.
pub fn run(dir: &Path, fit_dir: Option<&Path>) -> anyhow::Result<Vec<TuRow>> {
    let (fit, mut warnings) = fit::resolve(dir, fit_dir, fit::AnalysisKind::Uncertainty)?;
    let records = read_records(dir, false)?;
    let means = match &fit {
        Fit::InSample => class_means(&records),
        Fit::Other(f) => class_means(&read_records(f, true)?),
    };
    let rows = score(&records, &means.means);
    let scored: BTreeSet<i64> = rows
        .iter()
        .flat_map(|r| r.label.into_iter().chain([r.pred]))
        .collect();
    warnings.extend(fit::few_samples_warnings(
        &means.support,
        &scored,
        &fit,
        "class mean",
    ));
    let metadata = fit::metadata(&fit, &warnings);
    let counts = counts(&rows);
    write_analysis(dir, "uncertainty", per_sample_table(&rows)?, &metadata)?;
    write_analysis(dir, "uncertainty_counts", counts_table(&counts)?, &metadata)?;

    println!("{}", fit.describe("class means"));
    let totals: Vec<&Counts> = counts.iter().filter(|c| c.class.is_none()).collect();
    print_counts("variant", &totals, |c| c.variant.clone());
    let clean: Vec<&Counts> = counts
        .iter()
        .filter(|c| c.variant == "clean" && c.class.is_some())
        .collect();
    if !clean.is_empty() {
        println!(
            "
clean samples by true class:"
        );
        print_counts("class", &clean, |c| {
            c.class.map_or(String::new(), |k| k.to_string())
        });
    }
    println!(
        "
TU: mean over layers of the L1 distance between sorted H0 death values and the mean of the\n\
         predicted class's correctly classified clean samples. right / wrong: labelled samples whose\n\
         prediction is / is not the label; n: those with a TU (a predicted class without a fitted mean\n\
         gives none). AUROC: how well TU separates wrong from right predictions (0.5 = not at all).\n\
         Tables: {}/analysis/uncertainty.parquet (per sample), uncertainty_counts.parquet{}",
        dir.display(),
        fit::report(&warnings)
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        index: u32,
        variant: &str,
        label: i64,
        pred: i64,
        layers: &[(&str, &[f32])],
    ) -> DeathRecord {
        DeathRecord {
            shard: "s".into(),
            index,
            variant: variant.into(),
            prediction: Prediction {
                label: Some(label),
                pred,
            },
            layers: layers
                .iter()
                .map(|(l, v)| (l.to_string(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn distances_to_the_class_mean() {
        let records = vec![
            rec(0, "clean", 0, 0, &[("a", &[3.0, 1.0]), ("b", &[2.0])]),
            rec(1, "clean", 0, 0, &[("a", &[1.0]), ("b", &[4.0, 2.0])]),
            // wrong: not part of the reference
            rec(2, "clean", 1, 0, &[("a", &[5.0, 5.0, 5.0]), ("b", &[0.5])]),
            // predicted class 1 has no reference
            rec(3, "clean", 1, 1, &[("a", &[1.0])]),
        ];
        // class 0 means: a = [2, 0.5], b = [3, 1]
        let rows = topological_uncertainty(&records);
        // sample 0: a |3-2| + |1-0.5| = 1.5; b |2-3| + |0-1| = 2  -> 1.75
        assert_eq!(rows[0].tu, Some(1.75));
        // sample 2: a 3 + 4.5 + 5 = 12.5; b 2.5 + 1 = 3.5 -> 8
        assert_eq!(rows[2].tu, Some(8.0));
        // class 1's only sample is right, so it is its own reference: distance 0
        assert_eq!(rows[3].tu, Some(0.0));
        let lonely = topological_uncertainty(&[rec(0, "clean", 1, 0, &[("a", &[1.0])])]);
        assert_eq!(lonely[0].tu, None);
    }

    #[test]
    fn auroc_counts_pairs() {
        assert_eq!(auroc(&[1.0, 2.0], &[3.0]), Some(1.0));
        assert_eq!(auroc(&[1.0, 3.0], &[2.0]), Some(0.5));
        assert_eq!(auroc(&[2.0], &[2.0]), Some(0.5));
        assert_eq!(auroc(&[], &[1.0]), None);
    }
}
