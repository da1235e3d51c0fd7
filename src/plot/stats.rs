//! The numbers the figures show, computed from a run's diagrams: Betti-0 curves on a common grid
//! (`analysis::features`' curve and grid),
//! their per-class means and bands, and per-(class, variant) spreads of total persistence.
//!
//! Superlevel filtration (edges enter by decreasing weight): at threshold t the complex holds the
//! edges of weight >= t, so a finite pair (birth b, death d) is a component alive for d < t <= b
//! and an essential class for t <= b.

use std::collections::BTreeMap;

use crate::analysis::diagram_set::{Diagram, SampleDiagram};
use crate::analysis::features::{betti_curve, Grid};

/// The Betti-curve grid of a scope, fitted as `actopo features` fits it: `n` points from the
/// smallest death to the largest birth of the finite pairs of `diagrams`, so every class and
/// variant of the scope shares it, and the mean curves drawn are the means of the features
/// table's `betti` column (same `--bins`). None without finite pairs.
pub fn scope_grid<'a>(diagrams: impl Iterator<Item = &'a Diagram>, n: usize) -> Option<Grid> {
    let values = diagrams.flat_map(|d| d.pairs.iter().flat_map(|p| [p.death, p.birth]));
    Grid::fit(values, n)
}

/// The q-quantile of sorted values, interpolated linearly between order statistics (NumPy's
/// default). None when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    let next = sorted[(i + 1).min(last)];
    Some(sorted[i] + (next - sorted[i]) * frac)
}

/// A class's Betti curves summarised per threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveBand {
    pub class: Option<i64>,
    pub samples: usize,
    pub mean: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
}

/// The band's quantiles: 10% to 90% of the class's curves at each threshold.
pub const BAND: (f64, f64) = (0.1, 0.9);

/// Mean and 10-90% band of the Betti-0 curves of `samples`, per true class (None: unlabelled).
pub fn class_bands(samples: &[&SampleDiagram], grid: &Grid) -> Vec<CurveBand> {
    let mut by_class: BTreeMap<Option<i64>, Vec<Vec<f64>>> = BTreeMap::new();
    for s in samples {
        by_class.entry(s.label).or_default().push(betti_curve(
            &s.diagram.pairs,
            &s.diagram.essential,
            grid,
        ));
    }
    by_class
        .into_iter()
        .map(|(class, curves)| band(class, &curves, grid.n_bins))
        .collect()
}

fn band(class: Option<i64>, curves: &[Vec<f64>], n: usize) -> CurveBand {
    let (mut mean, mut low, mut high) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut column = Vec::with_capacity(curves.len());
    for i in 0..n {
        column.clear();
        column.extend(curves.iter().map(|c| c[i]));
        mean[i] = column.iter().sum::<f64>() / column.len() as f64;
        column.sort_by(f64::total_cmp);
        low[i] = quantile(&column, BAND.0).unwrap_or(0.0);
        high[i] = quantile(&column, BAND.1).unwrap_or(0.0);
    }
    CurveBand {
        class,
        samples: curves.len(),
        mean,
        low,
        high,
    }
}

/// Sum of birth - death over the finite pairs.
pub fn total_persistence(d: &Diagram) -> f64 {
    d.pairs.iter().map(|p| p.birth - p.death).sum()
}

/// Five numbers for a box: whiskers at 10% and 90%, box at the quartiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxStats {
    pub n: usize,
    pub p10: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub p90: f64,
}

impl BoxStats {
    pub fn of(mut values: Vec<f64>) -> Option<BoxStats> {
        values.sort_by(f64::total_cmp);
        let q = |p| quantile(&values, p);
        Some(BoxStats {
            n: values.len(),
            p10: q(0.1)?,
            q1: q(0.25)?,
            median: q(0.5)?,
            q3: q(0.75)?,
            p90: q(0.9)?,
        })
    }
}

/// Total persistence spread per (true class, variant), variants in the order given.
pub fn total_persistence_boxes(
    samples: &[&SampleDiagram],
    variants: &[String],
) -> BTreeMap<Option<i64>, Vec<Option<BoxStats>>> {
    let mut values: BTreeMap<Option<i64>, Vec<Vec<f64>>> = BTreeMap::new();
    for s in samples {
        let Some(v) = variants.iter().position(|v| *v == s.variant) else {
            continue;
        };
        values
            .entry(s.label)
            .or_insert_with(|| vec![Vec::new(); variants.len()])[v]
            .push(total_persistence(&s.diagram));
    }
    values
        .into_iter()
        .map(|(class, per_variant)| (class, per_variant.into_iter().map(BoxStats::of).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::diagram_set::Pair;

    fn diagram(points: &[(f64, f64)], essential: &[f64]) -> Diagram {
        Diagram {
            pairs: points
                .iter()
                .map(|&(b, d)| Pair {
                    birth: b.max(d),
                    death: b.min(d),
                })
                .collect(),
            essential: essential.to_vec(),
        }
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        // numpy.quantile([1, 2, 4, 8], [0, 0.1, 0.5, 0.9, 1]) = 1, 1.3, 3, 6.8, 8
        let got: Vec<f64> = [0.0, 0.1, 0.5, 0.9, 1.0]
            .iter()
            .map(|&q| quantile(&v, q).unwrap())
            .collect();
        for (g, want) in got.iter().zip([1.0, 1.3, 3.0, 6.8, 8.0]) {
            assert!((g - want).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn bands_group_by_class_and_bound_the_mean() {
        let sample = |label, d: Diagram| SampleDiagram {
            shard: "s".into(),
            index: 0,
            variant: "clean".into(),
            scope: "network".into(),
            label,
            pred: 0,
            diagram: d,
        };
        let a = sample(Some(1), diagram(&[(2.0, 0.0)], &[2.0]));
        let b = sample(Some(1), diagram(&[], &[2.0]));
        let c = sample(None, diagram(&[(1.0, 0.0)], &[]));
        let grid = scope_grid([&a.diagram, &b.diagram, &c.diagram].into_iter(), 3).unwrap();
        assert_eq!(grid.points(), vec![0.0, 1.0, 2.0]);
        let bands = class_bands(&[&a, &b, &c], &grid);
        assert_eq!(bands.len(), 2);
        assert_eq!(bands[0].class, None);
        assert_eq!(bands[1].class, Some(1));
        assert_eq!(bands[1].samples, 2);
        // t = 0: a has 1 (essential; the pair dies at 0), b 1. t = 1, 2: a 2, b 1.
        assert_eq!(bands[1].mean, vec![1.0, 1.5, 1.5]);
        assert_eq!(bands[1].low, vec![1.0, 1.1, 1.1]);
        assert_eq!(bands[1].high, vec![1.0, 1.9, 1.9]);
    }

    #[test]
    fn total_persistence_boxes_split_by_class_and_variant() {
        let s = |label, variant: &str, lifetime: f64| SampleDiagram {
            shard: "s".into(),
            index: 0,
            variant: variant.into(),
            scope: "network".into(),
            label: Some(label),
            pred: 0,
            diagram: diagram(&[(lifetime, 0.0)], &[]),
        };
        let rows = [s(0, "clean", 1.0), s(0, "clean", 3.0), s(0, "fgsm", 2.0)];
        let refs: Vec<&SampleDiagram> = rows.iter().collect();
        let boxes = total_persistence_boxes(&refs, &["clean".into(), "fgsm".into()]);
        let clean = boxes[&Some(0)][0].unwrap();
        assert_eq!((clean.n, clean.median, clean.p10), (2, 2.0, 1.2));
        assert_eq!(boxes[&Some(0)][1].unwrap().median, 2.0);
    }
}
