//! Sliced Wasserstein distance (Carriere, Cuturi, Oudot 2017): `M` fixed directions
//! `theta_k = -pi/2 + k pi / M` (k = 0..M), each diagram's points projected on the line together
//! with the projections of the other diagram's diagonal projections, the two sorted lists compared
//! in L1, and the mean over directions taken (the definition's integral over the half circle by
//! the rectangle rule). The directions are fixed, so the result is deterministic.
//!
//! GUDHI's `representations.SlicedWassersteinDistance(num_directions=M)` (3.13) averages the
//! first `M - 1` of these directions (it takes `linspace(-pi/2, pi/2, M, endpoint=False)[:-1]`);
//! `tests/python/distances_crosscheck.py` checks that sum and the last direction separately.
//!
//! Points enter as `(x, y) = (death, birth)`, the superlevel diagram reflected to GUDHI's
//! `birth < death` orientation (an isometry; with an even `M` the direction set is symmetric under
//! it, so the value does not depend on the orientation then).
//!
//! Speed: consecutive directions order the projections almost alike, so each list keeps the
//! previous direction's order and is re-sorted with the standard library's stable sort, which
//! merges the runs it finds in nearly sorted input.

use super::Pair;

/// The projections of one side: each entry is (projection, point), in the last sorted order.
struct Side {
    entries: Vec<(f64, u32)>,
    /// `(x, y)` of the points whose projections the entries hold.
    points: Vec<(f64, f64)>,
}

impl Side {
    /// This diagram's points, then the other diagram's points projected on the diagonal.
    fn new(own: &[Pair], other: &[Pair]) -> Self {
        let on_diagonal = |p: &Pair| {
            let m = (p.death + p.birth) / 2.0;
            (m, m)
        };
        let points: Vec<(f64, f64)> = own
            .iter()
            .map(|p| (p.death, p.birth))
            .chain(other.iter().map(on_diagonal))
            .collect();
        let entries = (0..points.len() as u32).map(|i| (0.0, i)).collect();
        Side { entries, points }
    }

    fn project_and_sort(&mut self, (c, s): (f64, f64)) {
        for e in &mut self.entries {
            let (x, y) = self.points[e.1 as usize];
            e.0 = x * c + y * s;
        }
        self.entries.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
}

/// The sliced Wasserstein distance with `directions` directions (>= 1).
pub fn sliced_wasserstein(a: &[Pair], b: &[Pair], directions: usize) -> f64 {
    let (mut left, mut right) = (Side::new(a, b), Side::new(b, a));
    let mut total = 0.0;
    for k in 0..directions {
        let theta =
            -std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::PI / directions as f64;
        let line = (theta.cos(), theta.sin());
        left.project_and_sort(line);
        right.project_and_sort(line);
        total += left
            .entries
            .iter()
            .zip(&right.entries)
            .map(|(x, y)| (x.0 - y.0).abs())
            .sum::<f64>();
    }
    total / directions as f64
}
