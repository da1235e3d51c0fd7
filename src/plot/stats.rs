//! The numbers the figures show, computed from a run's diagrams: Betti-0 curves on a common grid,
//! their per-class means and bands, and per-(class, variant) spreads of total persistence.
//!
//! Superlevel filtration (edges enter by decreasing weight): at threshold t the complex holds the
//! edges of weight >= t, so a finite pair (birth b, death d) is a component alive for d < t <= b
//! and an essential class for t <= b.

use std::collections::BTreeMap;

use crate::analysis::diagram_set::{Diagram, SampleDiagram};

/// `n` evenly spaced thresholds from `lo` to `hi` (both included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl Grid {
    /// The grid spanning every value of `diagrams` (smallest death or essential birth to largest
    /// birth), so curves of one scope, every class and variant, share it. None without values.
    pub fn spanning<'a>(diagrams: impl Iterator<Item = &'a Diagram>, n: usize) -> Option<Grid> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for d in diagrams {
            for p in &d.pairs {
                lo = lo.min(p.death);
                hi = hi.max(p.birth);
            }
            for &b in &d.essential {
                lo = lo.min(b);
                hi = hi.max(b);
            }
        }
        (lo <= hi && n >= 2).then_some(Grid {
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
            n,
        })
    }

    /// The i-th threshold.
    pub fn at(&self, i: usize) -> f64 {
        if i + 1 == self.n {
            return self.hi;
        }
        self.lo + (self.hi - self.lo) * i as f64 / (self.n - 1) as f64
    }

    pub fn points(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.at(i)).collect()
    }

    /// The first index whose threshold is > x (n when none), exact against `at`.
    fn first_above(&self, x: f64) -> usize {
        let step = (self.hi - self.lo) / (self.n - 1) as f64;
        let guess = ((x - self.lo) / step).floor();
        let mut i = if guess.is_finite() && guess > 0.0 {
            (guess as usize).min(self.n)
        } else {
            0
        };
        while i > 0 && self.at(i - 1) > x {
            i -= 1;
        }
        while i < self.n && self.at(i) <= x {
            i += 1;
        }
        i
    }
}

/// Betti-0 at every grid threshold: components alive in the superlevel complex.
pub fn betti_curve(diagram: &Diagram, grid: &Grid) -> Vec<f64> {
    // Counts changes on a difference array: O(points + grid).
    let mut delta = vec![0i64; grid.n + 1];
    let mut add = |from: usize, to: usize| {
        if from < to {
            delta[from] += 1;
            delta[to] -= 1;
        }
    };
    for p in &diagram.pairs {
        add(grid.first_above(p.death), grid.first_above(p.birth));
    }
    for &b in &diagram.essential {
        add(0, grid.first_above(b));
    }
    let mut alive = 0i64;
    delta[..grid.n]
        .iter()
        .map(|d| {
            alive += d;
            alive as f64
        })
        .collect()
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
        by_class
            .entry(s.label)
            .or_default()
            .push(betti_curve(&s.diagram, grid));
    }
    by_class
        .into_iter()
        .map(|(class, curves)| band(class, &curves, grid.n))
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
    use proptest::prelude::*;

    /// Betti-0 at t by definition: pairs with d < t <= b, essential classes with t <= b.
    fn betti_at(d: &Diagram, t: f64) -> f64 {
        let finite = d.pairs.iter().filter(|p| p.death < t && t <= p.birth);
        let essential = d.essential.iter().filter(|&&b| t <= b);
        (finite.count() + essential.count()) as f64
    }

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
    fn betti_curve_counts_components_at_grid_points_that_hit_values() {
        // Grid 0, 0.5, 1, 1.5, 2: thresholds land exactly on births and deaths.
        let d = diagram(&[(1.0, 0.5), (2.0, 0.0), (1.5, 1.5)], &[2.0]);
        let grid = Grid::spanning(std::iter::once(&d), 5).unwrap();
        assert_eq!(grid.points(), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(betti_curve(&d, &grid), vec![1.0, 2.0, 3.0, 2.0, 2.0]);
    }

    proptest! {
        #[test]
        fn betti_curve_matches_its_definition(
            points in prop::collection::vec((0.0f64..3.0, 0.0f64..3.0), 0..40),
            essential in prop::collection::vec(0.0f64..3.0, 0..3),
            n in 2usize..60,
        ) {
            let d = diagram(&points, &essential);
            if let Some(grid) = Grid::spanning(std::iter::once(&d), n) {
                let curve = betti_curve(&d, &grid);
                for (i, &b) in curve.iter().enumerate() {
                    prop_assert_eq!(b, betti_at(&d, grid.at(i)), "t = {}", grid.at(i));
                }
            }
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
        let grid = Grid::spanning([&a.diagram, &b.diagram, &c.diagram].into_iter(), 3).unwrap();
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
