//! Persistent-subgraph analysis (Gebhart et al. 2019): does an adversarial input keep its true
//! class's dominant structure or take on the adversarial class's?
//!
//! A sample's subgraph S is the set of killing edges (src, dst) of its most persistent H0 pairs
//! (`subgraphs/` table, one scope). For each class c, the representative R_c holds the edges present
//! in at least `min_fraction` of the clean subgraphs of samples labelled c and predicted c. Every
//! (sample, variant) is compared with the representatives of its true and predicted classes
//! (overlap |S ∩ R| / |S| and Jaccard), gets a "subgraph prediction" (the representative with the
//! largest Jaccard, ties to the smaller class), and, for perturbed variants, the edges it gained over
//! its clean subgraph, D = S \ S_clean, are compared with both representatives too.
//!
//! Per variant, rates are over samples whose clean prediction is right and, for perturbed variants,
//! whose prediction the perturbation changed: recovery = subgraph prediction is the true class,
//! retention = it is the (new) predicted class.
//!
//! The representatives are fitted on the run scored (in-sample) or, with `--fit`, on another run's
//! clean subgraphs (`super::fit`); the rates always use the scored run's predictions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};

use super::fit::{self, Fit};
use super::{
    f64_col, key_columns, mean, read_table, variants_in_order, write_analysis, Columns, Prediction,
    Records, SampleRowKey,
};

/// A subgraph edge as the unit ids of its two ends (source, target), as in the `subgraphs` table.
pub type EdgeEnds = (u64, u64);

/// One (sample, variant) subgraph with its prediction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubgraphRecord {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub prediction: Prediction,
    pub edges: BTreeSet<EdgeEnds>,
}

/// A class representative: its edges with the fraction of the class's subgraphs holding each.
#[derive(Debug, Clone, PartialEq)]
pub struct Representative {
    pub support: usize,
    pub edges: BTreeMap<EdgeEnds, f64>,
}

impl Representative {
    fn contains(&self, e: &EdgeEnds) -> bool {
        self.edges.contains_key(e)
    }
}

/// The samples whose clean prediction is right, from `summary/`: a sample whose clean subgraph
/// is empty (every H0 pair of zero persistence) has no subgraph rows but is one all the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CleanRight {
    samples: HashSet<(String, u32)>,
    per_class: BTreeMap<i64, usize>,
}

impl CleanRight {
    fn from_predictions<'a>(
        predictions: impl Iterator<Item = (&'a (String, u32, String), &'a Prediction)>,
    ) -> Self {
        let mut right = CleanRight::default();
        for ((shard, index, variant), p) in predictions {
            if variant == "clean" && p.label == Some(p.pred) {
                right.samples.insert((shard.clone(), *index));
                *right.per_class.entry(p.pred).or_default() += 1;
            }
        }
        right
    }

    fn contains(&self, shard: &str, index: u32) -> bool {
        self.samples.contains(&(shard.to_string(), index))
    }

    /// The clean-right samples among `records` (the unit tests' hand-made data, where every
    /// sample has a subgraph).
    #[cfg(test)]
    fn of_records(records: &[SubgraphRecord]) -> Self {
        let keys: Vec<_> = records
            .iter()
            .map(|r| ((r.shard.clone(), r.index, r.variant.clone()), r.prediction))
            .collect();
        CleanRight::from_predictions(keys.iter().map(|(k, p)| (k, p)))
    }
}

/// One row of the per-sample table.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub label: Option<i64>,
    pub pred: i64,
    pub subgraph_pred: Option<i64>,
    pub overlap_true: Option<f64>,
    pub jaccard_true: Option<f64>,
    pub overlap_pred: Option<f64>,
    pub jaccard_pred: Option<f64>,
    /// |S \ S_clean| (perturbed variants only).
    pub diff_size: Option<u64>,
    pub diff_overlap_true: Option<f64>,
    pub diff_overlap_pred: Option<f64>,
}

impl SampleRowKey for SampleRow {
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

/// One row of the per-variant table.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantRow {
    pub variant: String,
    /// Samples counted (clean prediction right; perturbed: prediction changed).
    pub n: u64,
    pub recovery_rate: Option<f64>,
    pub retention_rate: Option<f64>,
    pub mean_overlap_true: Option<f64>,
    pub mean_overlap_pred: Option<f64>,
    pub mean_diff_overlap_true: Option<f64>,
    pub mean_diff_overlap_pred: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub representatives: BTreeMap<i64, Representative>,
    pub samples: Vec<SampleRow>,
    pub variants: Vec<VariantRow>,
}

/// R_c for every class with at least one correctly classified clean sample: the edges in at least
/// `min_fraction` of those samples' clean subgraphs (empty subgraphs count in the denominator).
pub(crate) fn representatives(
    records: &[SubgraphRecord],
    clean_right: &CleanRight,
    min_fraction: f64,
) -> BTreeMap<i64, Representative> {
    let mut counts: BTreeMap<i64, HashMap<EdgeEnds, usize>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.variant == "clean") {
        if !clean_right.contains(&r.shard, r.index) {
            continue;
        }
        let edges = counts.entry(r.prediction.pred).or_default();
        for e in &r.edges {
            *edges.entry(*e).or_default() += 1;
        }
    }
    clean_right
        .per_class
        .iter()
        .map(|(&class, &n)| {
            let kept = counts
                .remove(&class)
                .unwrap_or_default()
                .into_iter()
                .map(|(e, k)| (e, k as f64 / n as f64))
                .filter(|&(_, f)| f >= min_fraction)
                .collect();
            (
                class,
                Representative {
                    support: n,
                    edges: kept,
                },
            )
        })
        .collect()
}

fn overlap(s: &BTreeSet<EdgeEnds>, r: &Representative) -> Option<f64> {
    (!s.is_empty()).then(|| s.iter().filter(|e| r.contains(e)).count() as f64 / s.len() as f64)
}

fn jaccard(s: &BTreeSet<EdgeEnds>, r: &Representative) -> f64 {
    let inter = s.iter().filter(|e| r.contains(e)).count();
    let union = s.len() + r.edges.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// The class whose representative has the largest Jaccard with `s` (ties: smaller class).
pub(crate) fn nearest(s: &BTreeSet<EdgeEnds>, reps: &BTreeMap<i64, Representative>) -> Option<i64> {
    let mut best: Option<(i64, f64)> = None;
    for (&c, r) in reps {
        let j = jaccard(s, r);
        if best.is_none_or(|(_, b)| j > b) {
            best = Some((c, j));
        }
    }
    best.map(|(c, _)| c)
}

/// In-sample analysis: representatives fitted on `records` themselves (what `run` does without
/// `--fit`; the unit tests use it directly).
#[cfg(test)]
fn analyze(records: &[SubgraphRecord], min_fraction: f64) -> Analysis {
    let right = CleanRight::of_records(records);
    score(
        records,
        representatives(records, &right, min_fraction),
        &right,
    )
}

/// Scores `records` against representatives fitted elsewhere (or on them).
pub(crate) fn score(
    records: &[SubgraphRecord],
    reps: BTreeMap<i64, Representative>,
    clean_right: &CleanRight,
) -> Analysis {
    let clean: HashMap<(&str, u32), &SubgraphRecord> = records
        .iter()
        .filter(|r| r.variant == "clean")
        .map(|r| ((r.shard.as_str(), r.index), r))
        .collect();
    let mut samples = Vec::with_capacity(records.len());
    for r in records {
        let rep_true = r.prediction.label.and_then(|c| reps.get(&c));
        let rep_pred = reps.get(&r.prediction.pred);
        let diff: Option<BTreeSet<EdgeEnds>> = (r.variant != "clean")
            .then(|| clean.get(&(r.shard.as_str(), r.index)))
            .flatten()
            .map(|c| r.edges.difference(&c.edges).copied().collect());
        samples.push(SampleRow {
            shard: r.shard.clone(),
            index: r.index,
            variant: r.variant.clone(),
            label: r.prediction.label,
            pred: r.prediction.pred,
            subgraph_pred: nearest(&r.edges, &reps),
            overlap_true: rep_true.and_then(|rep| overlap(&r.edges, rep)),
            jaccard_true: rep_true.map(|rep| jaccard(&r.edges, rep)),
            overlap_pred: rep_pred.and_then(|rep| overlap(&r.edges, rep)),
            jaccard_pred: rep_pred.map(|rep| jaccard(&r.edges, rep)),
            diff_size: diff.as_ref().map(|d| d.len() as u64),
            diff_overlap_true: diff
                .as_ref()
                .zip(rep_true)
                .and_then(|(d, rep)| overlap(d, rep)),
            diff_overlap_pred: diff
                .as_ref()
                .zip(rep_pred)
                .and_then(|(d, rep)| overlap(d, rep)),
        });
    }
    let variants = variant_rows(&samples, clean_right);
    Analysis {
        representatives: reps,
        samples,
        variants,
    }
}

/// One row per variant, in first-seen order: the rates over the samples the clean model got right
/// (and, for a perturbed variant, whose prediction it changed).
fn variant_rows(samples: &[SampleRow], clean_right: &CleanRight) -> Vec<VariantRow> {
    // Clean first, as written.
    let order = variants_in_order(samples.iter().map(|s| s.variant.as_str()));
    order
        .iter()
        .map(|&v| {
            let rows: Vec<&SampleRow> = samples
                .iter()
                .filter(|s| s.variant == v && clean_right.contains(&s.shard, s.index))
                .filter(|s| v == "clean" || s.label != Some(s.pred))
                .collect();
            VariantRow {
                variant: v.to_string(),
                n: rows.len() as u64,
                recovery_rate: mean(rows.iter().map(|s| {
                    (s.subgraph_pred.is_some() && s.subgraph_pred == s.label) as u8 as f64
                })),
                retention_rate: mean(
                    rows.iter()
                        .map(|s| (s.subgraph_pred == Some(s.pred)) as u8 as f64),
                ),
                mean_overlap_true: mean(rows.iter().filter_map(|s| s.overlap_true)),
                mean_overlap_pred: mean(rows.iter().filter_map(|s| s.overlap_pred)),
                mean_diff_overlap_true: mean(rows.iter().filter_map(|s| s.diff_overlap_true)),
                mean_diff_overlap_pred: mean(rows.iter().filter_map(|s| s.diff_overlap_pred)),
            }
        })
        .collect()
}

/// Reads `subgraphs/` (one scope; only the clean variant with `clean_only`, as a fit needs) and
/// `summary/` into records.
pub(crate) fn read_records(
    dir: &Path,
    scope: &str,
    clean_only: bool,
) -> anyhow::Result<(Vec<SubgraphRecord>, CleanRight)> {
    let mut records = Records::new(dir)?;
    let clean_right = CleanRight::from_predictions(records.predictions.iter());
    // read_table's error already names `output.subgraphs` and the fix.
    let batches = read_table(dir, "subgraphs")?;
    for b in batches {
        let c = Columns::new(&b, "subgraphs");
        let (shard, index, variant, sc) = (
            c.str("shard")?,
            c.u32("index")?,
            c.str("variant")?,
            c.str("scope")?,
        );
        let (src, dst) = (c.u64("src")?, c.u64("dst")?);
        for i in 0..b.num_rows() {
            if sc[i] != scope || (clean_only && variant[i] != "clean") {
                continue;
            }
            let record = records.get(
                shard[i],
                index[i],
                variant[i],
                |shard, index, variant, prediction| SubgraphRecord {
                    shard,
                    index,
                    variant,
                    prediction,
                    edges: BTreeSet::new(),
                },
            )?;
            record.edges.insert((src[i], dst[i]));
        }
    }
    if records.list.is_empty() {
        anyhow::bail!(
            "{}: the subgraphs table has no rows for scope `{scope}`",
            dir.display()
        );
    }
    Ok((records.list, clean_right))
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.3}"))
}

/// The warnings about what the representatives were fitted on: empty ones, and classes with fewer
/// than `fit::MIN_FIT_SAMPLES` samples (among those fitted and those the scored run has).
fn fit_warnings(
    a: &Analysis,
    records: &[SubgraphRecord],
    min_fraction: f64,
    fit: &Fit,
) -> Vec<String> {
    let support = a
        .representatives
        .iter()
        .map(|(&c, r)| (c, r.support))
        .collect();
    let scored: BTreeSet<i64> = records
        .iter()
        .flat_map(|r| r.prediction.label.into_iter().chain([r.prediction.pred]))
        .collect();
    let sizes = a
        .representatives
        .iter()
        .map(|(&c, r)| (c, (r.support, r.edges.len())))
        .collect();
    let mut w = fit::few_samples_warnings(&support, &scored, fit, "representative");
    w.extend(fit::empty_representative_warnings(
        &sizes,
        min_fraction,
        fit,
    ));
    w
}

/// `actopo analyze subgraphs`: fits the class representatives (on `dir`, or on `fit_dir`), writes
/// analysis/subgraph_*.parquet and prints the per-variant table.
pub fn run(
    dir: &Path,
    min_fraction: f64,
    scope: &str,
    fit_dir: Option<&Path>,
) -> anyhow::Result<Analysis> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&min_fraction) && min_fraction > 0.0,
        "--min-fraction must be in (0, 1]"
    );
    let (fit, mut warnings) = fit::resolve(dir, fit_dir, fit::AnalysisKind::Subgraphs)?;
    let (records, clean_right) = read_records(dir, scope, false)?;
    let reps = match &fit {
        Fit::InSample => representatives(&records, &clean_right, min_fraction),
        Fit::Other(f) => {
            let (fit_records, fit_right) = read_records(f, scope, true)?;
            representatives(&fit_records, &fit_right, min_fraction)
        }
    };
    let a = score(&records, reps, &clean_right);
    warnings.extend(fit_warnings(&a, &records, min_fraction, &fit));
    let metadata = fit::metadata(&fit, &warnings);

    for (name, batch) in [
        ("subgraph_representatives", representatives_batch(&a)?),
        ("subgraph_samples", samples_batch(&a.samples)?),
        ("subgraph_variants", variants_batch(&a.variants)?),
    ] {
        write_analysis(dir, name, batch, &metadata)?;
    }
    print_report(dir, &a, scope, min_fraction, &fit, &warnings);
    Ok(a)
}

/// `subgraph_representatives`: one row per (class, edge) of each class representative.
fn representatives_batch(a: &Analysis) -> anyhow::Result<RecordBatch> {
    let mut rep_rows: Vec<(i64, u64, u64, u64, f64)> = Vec::new();
    for (&c, r) in &a.representatives {
        for (&(s, d), &f) in &r.edges {
            rep_rows.push((c, r.support as u64, s, d, f));
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("class", DataType::Int64, false),
            Field::new("support", DataType::UInt64, false),
            Field::new("src", DataType::UInt64, false),
            Field::new("dst", DataType::UInt64, false),
            Field::new("fraction", DataType::Float64, false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(rep_rows.iter().map(|r| r.0))),
            Arc::new(UInt64Array::from_iter_values(rep_rows.iter().map(|r| r.1))),
            Arc::new(UInt64Array::from_iter_values(rep_rows.iter().map(|r| r.2))),
            Arc::new(UInt64Array::from_iter_values(rep_rows.iter().map(|r| r.3))),
            Arc::new(Float64Array::from_iter_values(rep_rows.iter().map(|r| r.4))),
        ],
    )?)
}

/// `subgraph_samples`: one row per scored (sample, variant).
fn samples_batch(s: &[SampleRow]) -> anyhow::Result<RecordBatch> {
    let opt = |f: fn(&SampleRow) -> Option<f64>| f64_col(&s.iter().map(f).collect::<Vec<_>>());
    let (mut fields, mut columns) = key_columns(s);
    fields.push(Field::new("subgraph_pred", DataType::Int64, true));
    columns.push(Arc::new(Int64Array::from(
        s.iter().map(|r| r.subgraph_pred).collect::<Vec<_>>(),
    )));
    for (name, f) in [
        (
            "overlap_true",
            (|r| r.overlap_true) as fn(&SampleRow) -> Option<f64>,
        ),
        ("jaccard_true", |r| r.jaccard_true),
        ("overlap_pred", |r| r.overlap_pred),
        ("jaccard_pred", |r| r.jaccard_pred),
    ] {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(opt(f));
    }
    fields.push(Field::new("diff_size", DataType::UInt64, true));
    columns.push(Arc::new(UInt64Array::from(
        s.iter().map(|r| r.diff_size).collect::<Vec<_>>(),
    )));
    for (name, f) in [
        (
            "diff_overlap_true",
            (|r| r.diff_overlap_true) as fn(&SampleRow) -> Option<f64>,
        ),
        ("diff_overlap_pred", |r| r.diff_overlap_pred),
    ] {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(opt(f));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// `subgraph_variants`: one row per variant, the rates and mean overlaps.
fn variants_batch(v: &[VariantRow]) -> anyhow::Result<RecordBatch> {
    let vopt = |f: fn(&VariantRow) -> Option<f64>| f64_col(&v.iter().map(f).collect::<Vec<_>>());
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("variant", DataType::Utf8, false),
            Field::new("n", DataType::UInt64, false),
            Field::new("recovery_rate", DataType::Float64, true),
            Field::new("retention_rate", DataType::Float64, true),
            Field::new("mean_overlap_true", DataType::Float64, true),
            Field::new("mean_overlap_pred", DataType::Float64, true),
            Field::new("mean_diff_overlap_true", DataType::Float64, true),
            Field::new("mean_diff_overlap_pred", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                v.iter().map(|r| r.variant.as_str()),
            )) as ArrayRef,
            Arc::new(UInt64Array::from_iter_values(v.iter().map(|r| r.n))),
            vopt(|r| r.recovery_rate),
            vopt(|r| r.retention_rate),
            vopt(|r| r.mean_overlap_true),
            vopt(|r| r.mean_overlap_pred),
            vopt(|r| r.mean_diff_overlap_true),
            vopt(|r| r.mean_diff_overlap_pred),
        ],
    )?)
}

/// The summary `actopo analyze subgraphs` prints: the representatives and the per-variant table.
fn print_report(
    dir: &Path,
    a: &Analysis,
    scope: &str,
    min_fraction: f64,
    fit: &Fit,
    warnings: &[String],
) {
    println!("{}", fit.describe("class representatives"));
    println!(
        "class representatives (scope `{scope}`, edges in >= {min_fraction} of correctly classified clean subgraphs):"
    );
    for (c, r) in &a.representatives {
        println!(
            "  class {c}: {} edges from {} samples",
            r.edges.len(),
            r.support
        );
    }
    println!(
        "\n{:<30} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "variant", "n", "recovery", "retention", "ovl_true", "ovl_pred", "diff_true", "diff_pred"
    );
    for r in &a.variants {
        println!(
            "{:<30} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
            r.variant,
            r.n,
            fmt(r.recovery_rate),
            fmt(r.retention_rate),
            fmt(r.mean_overlap_true),
            fmt(r.mean_overlap_pred),
            fmt(r.mean_diff_overlap_true),
            fmt(r.mean_diff_overlap_pred)
        );
    }
    println!(
        "\nn: clean samples predicted right (perturbed variants: of those, the ones whose prediction changed).\n\
         recovery: nearest representative is the true class; retention: it is the predicted class.\n\
         ovl_*: |S ∩ R| / |S| with the true / predicted class representative; diff_*: the same for the\n\
         edges a variant gained over its clean subgraph. Tables: {}/analysis/subgraph_*.parquet{}",
        dir.display(),
        fit::report(warnings)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: u32, variant: &str, label: i64, pred: i64, edges: &[EdgeEnds]) -> SubgraphRecord {
        SubgraphRecord {
            shard: "s".into(),
            index,
            variant: variant.into(),
            prediction: Prediction {
                label: Some(label),
                pred,
            },
            edges: edges.iter().copied().collect(),
        }
    }

    /// Class 0 lives on edges (1,2),(2,3); class 1 on (5,6),(6,7). Sample 3 is wrong when clean.
    fn data() -> Vec<SubgraphRecord> {
        vec![
            rec(0, "clean", 0, 0, &[(1, 2), (2, 3), (9, 9)]),
            rec(1, "clean", 0, 0, &[(1, 2), (2, 3)]),
            rec(2, "clean", 1, 1, &[(5, 6), (6, 7)]),
            rec(3, "clean", 1, 0, &[(1, 2)]),
            // sample 0 attacked into class 1 but keeps most of class 0's structure
            rec(0, "adv", 0, 1, &[(1, 2), (2, 3), (5, 6)]),
            // sample 1 attacked into class 1 and takes on class 1's structure
            rec(1, "adv", 0, 1, &[(5, 6), (6, 7)]),
            // sample 2 attacked but still predicted right: not counted in the rates
            rec(2, "adv", 1, 1, &[(5, 6), (6, 7)]),
        ]
    }

    fn reps_of(records: &[SubgraphRecord], min_fraction: f64) -> BTreeMap<i64, Representative> {
        representatives(records, &CleanRight::of_records(records), min_fraction)
    }

    /// A clean-right sample whose clean subgraph is empty has no subgraph rows; it still counts
    /// in its class's support and, when an attack flips it, in that variant's rates (as in
    /// scripts/paper_comparison.py, which reads the clean predictions from the summary table).
    #[test]
    fn a_clean_right_sample_with_an_empty_clean_subgraph_still_counts() {
        let mut records = data();
        records.push(rec(4, "adv", 0, 1, &[(1, 2), (2, 3)]));
        let mut right = CleanRight::of_records(&records);
        right.samples.insert(("s".to_string(), 4));
        *right.per_class.entry(0).or_default() += 1;
        let reps = representatives(&records, &right, 0.5);
        assert_eq!(reps[&0].support, 3);
        // (9,9) is now in 1 of 3 class-0 subgraphs: below 0.5
        assert_eq!(reps[&0].edges.len(), 2);
        let a = score(&records, reps, &right);
        let adv = &a.variants[1];
        assert_eq!((adv.variant.as_str(), adv.n), ("adv", 3));
        assert_eq!(a.variants[0].n, 3, "no clean subgraph, no clean row");
    }

    #[test]
    fn representatives_use_correct_clean_samples_only() {
        let reps = reps_of(&data(), 0.5);
        assert_eq!(reps.len(), 2);
        assert_eq!(reps[&0].support, 2);
        // (9,9) is in half the class-0 subgraphs: kept at 0.5, dropped at 0.6
        assert_eq!(
            reps[&0].edges.keys().copied().collect::<Vec<_>>(),
            vec![(1, 2), (2, 3), (9, 9)]
        );
        assert_eq!(reps[&0].edges[&(9, 9)], 0.5);
        let strict = reps_of(&data(), 0.6);
        assert_eq!(strict[&0].edges.len(), 2);
        // sample 3 (labelled 1, predicted 0) is in neither
        assert_eq!(strict[&1].support, 1);
    }

    #[test]
    fn overlaps_predictions_and_rates() {
        let a = analyze(&data(), 0.6);
        let row = |i: u32, v: &str| {
            a.samples
                .iter()
                .find(|s| s.index == i && s.variant == v)
                .unwrap()
                .clone()
        };
        let r = row(0, "adv");
        assert_eq!(r.subgraph_pred, Some(0)); // J0 = 2/3, J1 = 1/4
        assert_eq!(r.overlap_true, Some(2.0 / 3.0));
        assert_eq!(r.overlap_pred, Some(1.0 / 3.0));
        assert_eq!(r.jaccard_true, Some(2.0 / 3.0));
        assert_eq!(r.diff_size, Some(1)); // gained (5,6); lost (9,9)
        assert_eq!(r.diff_overlap_true, Some(0.0));
        assert_eq!(r.diff_overlap_pred, Some(1.0));
        let r = row(1, "adv");
        assert_eq!(r.subgraph_pred, Some(1));
        assert_eq!(r.overlap_true, Some(0.0));
        assert_eq!(row(3, "clean").subgraph_pred, Some(0));
        assert_eq!(row(3, "clean").diff_size, None);

        let clean = &a.variants[0];
        assert_eq!((clean.variant.as_str(), clean.n), ("clean", 3));
        assert_eq!(clean.recovery_rate, Some(1.0));
        let adv = &a.variants[1];
        // samples 0 and 1 count (clean right, prediction changed); sample 2 does not
        assert_eq!((adv.variant.as_str(), adv.n), ("adv", 2));
        assert_eq!(adv.recovery_rate, Some(0.5));
        assert_eq!(adv.retention_rate, Some(0.5));
        assert_eq!(adv.mean_overlap_true, Some((2.0 / 3.0 + 0.0) / 2.0));
    }

    #[test]
    fn empty_subgraphs_have_no_overlap_and_zero_jaccard() {
        let reps = reps_of(&data(), 0.6);
        let empty = BTreeSet::new();
        assert_eq!(overlap(&empty, &reps[&0]), None);
        assert_eq!(jaccard(&empty, &reps[&0]), 0.0);
        assert_eq!(nearest(&empty, &reps), Some(0)); // all zero: the smaller class
    }
}
