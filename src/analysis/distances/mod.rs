//! `actopo distances`: distances between H0 persistence diagrams (`docs/distances.md`).
//!
//! Pure functions over finite pairs (`&[Pair]`, superlevel: birth >= death; the orientation does
//! not matter to any of them):
//! - [`bottleneck`]: exact bottleneck distance (L-infinity ground metric);
//! - [`wasserstein`]: exact p-Wasserstein distance, L-infinity ground metric (GUDHI's
//!   `internal_p = inf`), by a sparse min-cost perfect matching;
//! - [`sliced_wasserstein`]: GUDHI's sliced Wasserstein distance with M fixed directions;
//! - [`essential_distance`]: the bottleneck distance between the essential classes (births only),
//!   kept apart from the finite pairs as GUDHI's finite-diagram distances leave them out;
//! - [`rank_mean`]: the class mean diagram that clean samples are compared with.
//!
//! [`run`] is the command: the distance of every perturbed variant's diagram to the same sample's
//! clean diagram, and of every clean diagram to its class's mean, in
//! `OUTPUT_DIR/analysis/distances.parquet`.

mod bottleneck;
mod command;
mod mean;
mod sliced;
mod wasserstein;

#[cfg(test)]
mod tests;

pub use super::diagram_set::Pair;
pub use bottleneck::bottleneck;
pub use command::{run, DistanceRow, Options, Order, Reference};
pub use mean::rank_mean;
pub use sliced::sliced_wasserstein;
pub use wasserstein::wasserstein;

/// The number of sliced Wasserstein directions when none is given.
pub const DEFAULT_DIRECTIONS: u32 = 50;

/// L-infinity distance between two points.
fn linf(a: &Pair, b: &Pair) -> f64 {
    (a.birth - b.birth).abs().max((a.death - b.death).abs())
}

/// L-infinity distance from a point to the diagonal (to its projection `((b+d)/2, (b+d)/2)`).
fn to_diagonal(a: &Pair) -> f64 {
    (a.birth - a.death).abs() / 2.0
}

/// Distances between two diagrams' finite pairs, plus their essential classes' distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distances {
    pub bottleneck: f64,
    /// The p-Wasserstein distance for the `Order` asked.
    pub wasserstein: f64,
    pub sliced_wasserstein: f64,
    /// [`essential_distance`] of the essential births.
    pub essential: f64,
}

/// Every distance between (`pairs_a`, `essential_a`) and (`pairs_b`, `essential_b`).
pub fn all_distances(
    (pairs_a, essential_a): (&[Pair], &[f64]),
    (pairs_b, essential_b): (&[Pair], &[f64]),
    p: Order,
    directions: usize,
) -> Distances {
    Distances {
        bottleneck: bottleneck(pairs_a, pairs_b),
        wasserstein: wasserstein(pairs_a, pairs_b, p.value()),
        sliced_wasserstein: sliced_wasserstein(pairs_a, pairs_b, directions),
        essential: essential_distance(essential_a, essential_b),
    }
}

/// Bottleneck distance between two sets of essential classes given by their births: the largest
/// birth difference after sorting both (the optimal matching on a line), infinity when the
/// counts differ (an essential class cannot be matched to the diagonal), 0 when both are empty.
pub fn essential_distance(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    sorted(a)
        .iter()
        .zip(sorted(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
