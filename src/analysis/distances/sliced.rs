//! Sliced Wasserstein distance (Carriere, Cuturi, Oudot 2017): `M` fixed directions
//! `theta_k = -pi/2 + k pi / M` (k = 0, ..., M-1), each diagram's points projected on the line together
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

use super::Pair;

/// The sliced Wasserstein distance with `directions` directions (>= 1).
pub fn sliced_wasserstein(a: &[Pair], b: &[Pair], directions: usize) -> f64 {
    let xy = |p: &Pair| (p.death, p.birth);
    let on_diagonal = |p: &Pair| {
        let m = (p.death + p.birth) / 2.0;
        (m, m)
    };
    let mut left = Vec::with_capacity(a.len() + b.len());
    let mut right = Vec::with_capacity(a.len() + b.len());
    let mut total = 0.0;
    for k in 0..directions {
        let theta =
            -std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::PI / directions as f64;
        let (c, s) = (theta.cos(), theta.sin());
        let project = |(x, y): (f64, f64)| x * c + y * s;
        left.clear();
        right.clear();
        left.extend(a.iter().map(|p| project(xy(p))));
        left.extend(b.iter().map(|p| project(on_diagonal(p))));
        right.extend(b.iter().map(|p| project(xy(p))));
        right.extend(a.iter().map(|p| project(on_diagonal(p))));
        left.sort_unstable_by(f64::total_cmp);
        right.sort_unstable_by(f64::total_cmp);
        total += left
            .iter()
            .zip(&right)
            .map(|(x, y)| (x - y).abs())
            .sum::<f64>();
    }
    total / directions as f64
}
