//! The persistence landscape: at each grid point t, the k largest tent values of the intervals
//! [death, birth], largest first, scaled by sqrt(2) as GUDHI's `Landscape` does.

use super::grid::Grid;
use super::{tent, Pair};

/// `levels` landscape functions on `grid`, level-major: level 0 (the largest tent) at every grid
/// point, then level 1, and so on; levels beyond the number of pairs are zero.
pub fn landscape(pairs: &[Pair], levels: usize, grid: &Grid) -> Vec<f64> {
    let n = grid.n_bins;
    let mut out = vec![0.0; levels * n];
    let mut top: Vec<f64> = Vec::with_capacity(levels + 1);
    for (i, t) in grid.points().into_iter().enumerate() {
        top.clear();
        for p in pairs {
            insert_descending(&mut top, tent(p, t), levels);
        }
        for (level, value) in top.iter().enumerate() {
            out[level * n + i] = value * std::f64::consts::SQRT_2;
        }
    }
    out
}

/// Inserts `value` into the descending list `top`, keeping at most `keep` values.
fn insert_descending(top: &mut Vec<f64>, value: f64, keep: usize) {
    if value <= 0.0 || keep == 0 {
        return;
    }
    let at = top.partition_point(|&v| v >= value);
    if at < keep {
        top.insert(at, value);
        top.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: Bubenik's definition, lambda_k(t) = sup { s >= 0 : at least k intervals contain
    /// [t - s, t + s] }, by trying every candidate s (the distances from t to the interval ends).
    fn by_rank_function(pairs: &[Pair], levels: usize, grid: &Grid) -> Vec<f64> {
        let n = grid.n_bins;
        let mut out = vec![0.0; levels * n];
        for (i, t) in grid.points().into_iter().enumerate() {
            let candidates: Vec<f64> = pairs
                .iter()
                .flat_map(|p| [t - p.death, p.birth - t])
                .filter(|&s| s >= 0.0)
                .collect();
            for k in 1..=levels {
                let best = candidates
                    .iter()
                    .copied()
                    .filter(|&s| {
                        // a hair of slack: t - (t - death) need not round back to death
                        pairs
                            .iter()
                            .filter(|p| p.death <= t - s + 1e-12 && t + s <= p.birth + 1e-12)
                            .count()
                            >= k
                    })
                    .fold(0.0, f64::max);
                out[(k - 1) * n + i] = best * std::f64::consts::SQRT_2;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn equals_the_rank_function_definition(
            raw in prop::collection::vec((0.0f64..10.0, 0.0f64..10.0), 0..25),
            levels in 1usize..6,
            n_bins in 1usize..30,
        ) {
            let pairs: Vec<Pair> = raw.iter()
                .map(|&(a, b)| Pair { birth: a.max(b), death: a.min(b) })
                .collect();
            let grid = Grid { min: -1.0, max: 11.0, n_bins };
            let fast = landscape(&pairs, levels, &grid);
            let slow = by_rank_function(&pairs, levels, &grid);
            for (a, b) in fast.iter().zip(&slow) {
                prop_assert!((a - b).abs() <= 1e-12, "{} vs {}", a, b);
            }
        }
    }
}
