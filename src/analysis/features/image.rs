//! The persistence image: each pair as a point (start = death, persistence = birth - death),
//! weighted by persistence^p and spread by a Gaussian kernel, sampled at the pixel centres; the
//! values of GUDHI's `PersistenceImage` (a kernel normalised to integrate to one, evaluated at
//! the grid points, not integrated over pixels).

use super::grid::{Grid, ImageGrid};
use super::silhouette::weight;
use super::Pair;

/// The image on `grid`, flattened row-major: row r is persistence point r (ascending), column c
/// is start point c (ascending); the value at (r, c) is
/// sum_k w_k exp(-((x_k - x_c)^2 + (y_k - y_r)^2) / (2 sigma^2)) / (2 pi sigma^2).
pub fn persistence_image(pairs: &[Pair], power: f64, grid: &ImageGrid) -> Vec<f64> {
    let (columns, rows) = (grid.start.n_bins, grid.persistence.n_bins);
    let mut out = vec![0.0; rows * columns];
    let scale = 1.0 / (grid.sigma * grid.sigma * 2.0 * std::f64::consts::PI);
    for p in pairs {
        let w = weight(p, power);
        if w == 0.0 {
            continue;
        }
        // the kernel factorises: one Gaussian per axis, multiplied per pixel
        let across = gaussians(p.death, &grid.start, grid.sigma);
        let down = gaussians(p.birth - p.death, &grid.persistence, grid.sigma);
        for (r, gy) in down.iter().enumerate() {
            let row = &mut out[r * columns..(r + 1) * columns];
            for (cell, gx) in row.iter_mut().zip(&across) {
                *cell += w * gy * gx * scale;
            }
        }
    }
    out
}

/// exp(-(x - g)^2 / (2 sigma^2)) at every point g of `axis`.
fn gaussians(x: f64, axis: &Grid, sigma: f64) -> Vec<f64> {
    let two_var = 2.0 * sigma * sigma;
    axis.points()
        .into_iter()
        .map(|g| (-(x - g) * (x - g) / two_var).exp())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: GUDHI's formula, one exponential of the summed squares per (point, pixel).
    fn direct(pairs: &[Pair], power: f64, grid: &ImageGrid) -> Vec<f64> {
        let (xs, ys) = (grid.start.points(), grid.persistence.points());
        let s2 = grid.sigma * grid.sigma;
        let mut out = Vec::new();
        for y in &ys {
            for x in &xs {
                let mut v = 0.0;
                for p in pairs {
                    let (px, py) = (p.death, p.birth - p.death);
                    let w = py.powf(power);
                    v += w * ((-(px - x).powi(2) - (py - y).powi(2)) / (2.0 * s2)).exp()
                        / (s2 * 2.0 * std::f64::consts::PI);
                }
                out.push(v);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn equals_the_unfactorised_sum(
            raw in prop::collection::vec((0.0f64..10.0, 0.0f64..10.0), 0..20),
            power in 0.5f64..2.0,
            sigma in 0.1f64..3.0,
            columns in 1usize..12,
            rows in 1usize..12,
        ) {
            let pairs: Vec<Pair> = raw.iter()
                .map(|&(a, b)| Pair { birth: a.max(b) + 0.01, death: a.min(b) })
                .collect();
            let grid = ImageGrid {
                start: Grid { min: 0.0, max: 10.0, n_bins: columns },
                persistence: Grid { min: 0.0, max: 10.0, n_bins: rows },
                sigma,
            };
            let fast = persistence_image(&pairs, power, &grid);
            let slow = direct(&pairs, power, &grid);
            prop_assert_eq!(fast.len(), rows * columns);
            let top = slow.iter().fold(0.0f64, |m, v| m.max(*v));
            for (a, b) in fast.iter().zip(&slow) {
                prop_assert!((a - b).abs() <= 1e-12 * (1.0 + top), "{} vs {}", a, b);
            }
        }
    }

    #[test]
    fn one_point_on_a_pixel_gives_the_kernel_peak_there() {
        let grid = ImageGrid {
            start: Grid {
                min: 0.0,
                max: 2.0,
                n_bins: 3,
            },
            persistence: Grid {
                min: 1.0,
                max: 3.0,
                n_bins: 3,
            },
            sigma: 0.5,
        };
        // start 1, persistence 2: the centre pixel, weight 2
        let image = persistence_image(
            &[Pair {
                birth: 3.0,
                death: 1.0,
            }],
            1.0,
            &grid,
        );
        let peak = 2.0 / (2.0 * std::f64::consts::PI * 0.25);
        assert!((image[4] - peak).abs() < 1e-12);
        let max_at = image
            .iter()
            .enumerate()
            .fold(0, |m, (i, v)| if *v > image[m] { i } else { m });
        assert_eq!(max_at, 4);
    }
}
