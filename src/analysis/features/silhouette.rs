//! The power-weighted silhouette: at each grid point t, the mean of the intervals' tents weighted by
//! persistence^p, scaled by sqrt(2) as GUDHI's `Silhouette` does.

use super::grid::Grid;
use super::{tent, Pair};

/// The silhouette on `grid` with weights (birth - death)^`power`; zero everywhere when the
/// weights sum to zero (no pairs, or only zero-persistence ones).
pub fn silhouette(pairs: &[Pair], power: f64, grid: &Grid) -> Vec<f64> {
    let weights: Vec<f64> = pairs.iter().map(|p| weight(p, power)).collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return vec![0.0; grid.n_bins];
    }
    grid.points()
        .into_iter()
        .map(|t| {
            let mean: f64 = pairs
                .iter()
                .zip(&weights)
                .map(|(p, w)| w / total * tent(p, t))
                .sum();
            mean * std::f64::consts::SQRT_2
        })
        .collect()
}

/// persistence^power (a zero-persistence pair weighs nothing, whatever the power).
pub(crate) fn weight(p: &Pair, power: f64) -> f64 {
    let persistence = p.birth - p.death;
    if persistence > 0.0 {
        persistence.powf(power)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: the weighted mean of the tents written as a ratio of sums, with each tent as
    /// min(t - death, birth - t) clipped at zero.
    fn ratio_of_sums(pairs: &[Pair], power: f64, grid: &Grid) -> Vec<f64> {
        grid.points()
            .into_iter()
            .map(|t| {
                let (mut num, mut den) = (0.0, 0.0);
                for p in pairs {
                    let w = (p.birth - p.death).powf(power);
                    num += w * (t - p.death).min(p.birth - t).max(0.0);
                    den += w;
                }
                if den > 0.0 {
                    num / den * 2f64.sqrt()
                } else {
                    0.0
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn equals_a_ratio_of_sums(
            raw in prop::collection::vec((0.0f64..10.0, 0.0f64..10.0), 0..25),
            power in 0.5f64..3.0,
            n_bins in 1usize..30,
        ) {
            let pairs: Vec<Pair> = raw.iter()
                .map(|&(a, b)| Pair { birth: a.max(b) + 0.01, death: a.min(b) })
                .collect();
            let grid = Grid { min: -1.0, max: 11.0, n_bins };
            let fast = silhouette(&pairs, power, &grid);
            let slow = ratio_of_sums(&pairs, power, &grid);
            for (a, b) in fast.iter().zip(&slow) {
                prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{} vs {}", a, b);
            }
        }
    }

    #[test]
    fn equal_weights_give_the_mean_tent_and_no_weight_gives_zero() {
        let grid = Grid {
            min: 0.0,
            max: 4.0,
            n_bins: 5,
        };
        let pairs = [
            Pair {
                birth: 2.0,
                death: 0.0,
            },
            Pair {
                birth: 4.0,
                death: 2.0,
            },
        ];
        let s = silhouette(&pairs, 0.0, &grid);
        let r2 = std::f64::consts::SQRT_2;
        let expected = [0.0, 0.5 * r2, 0.0, 0.5 * r2, 0.0];
        for (a, b) in s.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15);
        }
        assert_eq!(silhouette(&[], 1.0, &grid), vec![0.0; 5]);
        assert_eq!(
            silhouette(
                &[Pair {
                    birth: 1.0,
                    death: 1.0
                }],
                1.0,
                &grid
            ),
            vec![0.0; 5]
        );
    }
}
