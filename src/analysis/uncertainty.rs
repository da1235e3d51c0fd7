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

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use super::{
    f64_col, key_columns, read_table, write_analysis, Columns, Outcome, Records, SampleRowKey,
};

/// One (sample, variant): its per-layer death values, sorted in decreasing order.
#[derive(Debug, Clone, PartialEq)]
pub struct DeathRecord {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub outcome: Outcome,
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

/// Mean sorted death vector per (class, layer) over correctly classified clean samples.
pub fn class_means(records: &[DeathRecord]) -> HashMap<(i64, String), Vec<f64>> {
    let mut groups: HashMap<(i64, String), Vec<&Vec<f32>>> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.variant == "clean" && r.outcome.label == Some(r.outcome.pred))
    {
        for (layer, deaths) in &r.layers {
            groups
                .entry((r.outcome.pred, layer.clone()))
                .or_default()
                .push(deaths);
        }
    }
    groups
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
        .collect()
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

pub fn topological_uncertainty(records: &[DeathRecord]) -> Vec<TuRow> {
    let means = class_means(records);
    records
        .iter()
        .map(|r| {
            let mut dists = Vec::new();
            let mut complete = !r.layers.is_empty();
            for (layer, deaths) in &r.layers {
                match means.get(&(r.outcome.pred, layer.clone())) {
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
                label: r.outcome.label,
                pred: r.outcome.pred,
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

/// Reads the `layers` scopes of `diagrams/` and the outcomes of `summary/`.
pub fn read_records(dir: &Path) -> anyhow::Result<Vec<DeathRecord>> {
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
            if scope[i] == "network" || dim[i] != 0 {
                continue;
            }
            let record = records.get(
                shard[i],
                index[i],
                variant[i],
                |shard, index, variant, outcome| DeathRecord {
                    shard,
                    index,
                    variant,
                    outcome,
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

/// `actopo analyze uncertainty`: writes analysis/uncertainty.parquet and prints a table per variant.
pub fn run(dir: &Path) -> anyhow::Result<Vec<TuRow>> {
    let records = read_records(dir)?;
    let rows = topological_uncertainty(&records);
    let (mut fields, mut columns) = key_columns(&rows);
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
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    write_analysis(dir, "uncertainty", batch)?;

    let mut order: Vec<&str> = Vec::new();
    for r in &rows {
        if !order.contains(&r.variant.as_str()) {
            order.push(&r.variant);
        }
    }
    println!(
        "{:<30} {:>6} {:>12} {:>12} {:>8}",
        "variant", "n", "TU right", "TU wrong", "AUROC"
    );
    for v in order {
        let (mut right, mut wrong) = (Vec::new(), Vec::new());
        for r in rows.iter().filter(|r| r.variant == v) {
            if let (Some(tu), Some(label)) = (r.tu, r.label) {
                if label == r.pred {
                    right.push(tu)
                } else {
                    wrong.push(tu)
                }
            }
        }
        let m = |x: &[f64]| {
            if x.is_empty() {
                "-".to_string()
            } else {
                format!("{:.4}", x.iter().sum::<f64>() / x.len() as f64)
            }
        };
        println!(
            "{:<30} {:>6} {:>12} {:>12} {:>8}",
            v,
            right.len() + wrong.len(),
            m(&right),
            m(&wrong),
            auroc(&right, &wrong).map_or("-".into(), |a| format!("{a:.3}"))
        );
    }
    println!(
        "\nTU: mean over layers of the L1 distance between sorted H0 death values and the mean of the\n\
         predicted class's correctly classified clean samples. AUROC: how well TU separates wrong from\n\
         right predictions (0.5 = not at all). Table: {}/analysis/uncertainty.parquet",
        dir.display()
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
            outcome: Outcome {
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
