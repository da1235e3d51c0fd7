//! Sampling grids: evenly spaced points fitted once per scope from a run's diagrams (as
//! giotto-tda's `fit`), stored in the features file's metadata and reusable for another run.

use serde::{Deserialize, Serialize};

use super::Pair;

/// `n_bins` evenly spaced points from `min` to `max`, both included (numpy's `linspace`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub min: f64,
    pub max: f64,
    pub n_bins: usize,
}

impl Grid {
    /// The points, computed as numpy's `linspace` does (`min + i * step`, the last set to
    /// `max`), so that Python readers rebuild the same floats from the metadata.
    pub fn points(&self) -> Vec<f64> {
        if self.n_bins == 1 {
            return vec![self.min];
        }
        let step = (self.max - self.min) / (self.n_bins - 1) as f64;
        let mut points: Vec<f64> = (0..self.n_bins)
            .map(|i| i as f64 * step + self.min)
            .collect();
        points[self.n_bins - 1] = self.max;
        points
    }

    /// The smallest and largest of `values`, or None for no values.
    pub fn fit(values: impl Iterator<Item = f64>, n_bins: usize) -> Option<Grid> {
        let (min, max) = values.fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })?;
        Some(Grid { min, max, n_bins })
    }

    /// The spacing between neighbouring points (0 for a single point).
    pub fn step(&self) -> f64 {
        if self.n_bins < 2 {
            0.0
        } else {
            (self.max - self.min) / (self.n_bins - 1) as f64
        }
    }
}

/// The persistence image's pixel centres: the interval start (the death weight) across, the
/// persistence (birth - death) down; and the Gaussian kernel's standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageGrid {
    pub start: Grid,
    pub persistence: Grid,
    pub sigma: f64,
}

/// Every grid of one scope.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScopeGrids {
    /// Betti curve, landscape and silhouette: from the smallest death to the largest birth.
    pub curve: Grid,
    pub image: ImageGrid,
}

/// How many points each grid has, and the kernel width when chosen by hand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSizes {
    pub n_bins: usize,
    pub image_size: usize,
    /// None: one pixel of the coarser image axis (in weight units).
    pub sigma: Option<f64>,
}

/// Fits a scope's grids on all its finite pairs (None when it has none): the curve grid spans
/// [smallest death, largest birth]; the image spans the deaths across and the persistences down.
pub fn fit_scope<'a>(
    pairs: impl Iterator<Item = &'a Pair> + Clone,
    sizes: GridSizes,
) -> Option<ScopeGrids> {
    let curve = Grid::fit(pairs.clone().flat_map(|p| [p.death, p.birth]), sizes.n_bins)?;
    let start = Grid::fit(pairs.clone().map(|p| p.death), sizes.image_size)?;
    let persistence = Grid::fit(pairs.map(|p| p.birth - p.death), sizes.image_size)?;
    let sigma = sizes
        .sigma
        .unwrap_or_else(|| default_sigma(&start, &persistence));
    Some(ScopeGrids {
        curve,
        image: ImageGrid {
            start,
            persistence,
            sigma,
        },
    })
}

/// One pixel of the coarser axis; 1.0 when both axes are a single point.
fn default_sigma(start: &Grid, persistence: &Grid) -> f64 {
    let pixel = start.step().max(persistence.step());
    if pixel > 0.0 {
        pixel
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_run_from_min_to_max_evenly() {
        let g = Grid {
            min: 0.1,
            max: 0.7,
            n_bins: 4,
        };
        let p = g.points();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], 0.1);
        assert_eq!(p[3], 0.7);
        assert!((p[1] - 0.3).abs() < 1e-15 && (p[2] - 0.5).abs() < 1e-15);
        let one = Grid { n_bins: 1, ..g };
        assert_eq!(one.points(), vec![0.1]);
        let flat = Grid {
            min: 2.0,
            max: 2.0,
            n_bins: 3,
        };
        assert_eq!(flat.points(), vec![2.0; 3]);
    }

    #[test]
    fn fit_spans_deaths_to_births_and_persistences() {
        let pairs = [
            Pair {
                birth: 3.0,
                death: 1.0,
            },
            Pair {
                birth: 5.0,
                death: 4.5,
            },
        ];
        let sizes = GridSizes {
            n_bins: 10,
            image_size: 5,
            sigma: None,
        };
        let g = fit_scope(pairs.iter(), sizes).expect("two pairs");
        assert_eq!((g.curve.min, g.curve.max, g.curve.n_bins), (1.0, 5.0, 10));
        assert_eq!((g.image.start.min, g.image.start.max), (1.0, 4.5));
        assert_eq!(
            (g.image.persistence.min, g.image.persistence.max),
            (0.5, 2.0)
        );
        // sigma: the coarser pixel, (4.5 - 1) / 4
        assert_eq!(g.image.sigma, 3.5 / 4.0);
        assert!(fit_scope([].iter(), sizes).is_none());
    }
}
