//! `actopo features`: each H0 diagram as fixed-length vectors for learning (`docs/features.md`).
//!
//! The diagrams are superlevel in edge-weight units (birth >= death); every feature reads a finite
//! pair as the interval [death, birth] on the weight axis. The representations are pure functions
//! of the pairs and a grid fitted once per scope (`grid`), one file per representation:
//! - `betti`: the Betti-0 curve (the only one that counts the essential classes);
//! - `landscape`: persistence landscapes (k levels);
//! - `silhouette`: the persistence^p weighted silhouette;
//! - `image`: the persistence image (Gaussian kernel, weight persistence^p);
//! - `scalars`: persistence entropy and total persistence p-norms (p = 1, 2, inf).

pub mod betti;
mod command;
pub mod grid;
pub mod image;
pub mod landscape;
mod metadata;
pub mod scalars;
pub mod silhouette;
mod table;

pub use betti::betti_curve;
pub use command::{run, FeaturesArgs};
pub use grid::{Grid, GridSizes, ImageGrid, ScopeGrids};

pub use crate::analysis::diagram_set::Pair;

/// The tent of the interval [death, birth] at t: max(0, half-length - |t - midpoint|), computed as
/// GUDHI's `Landscape` and `Silhouette` do (so the values agree to the last bit).
pub(crate) fn tent(p: &Pair, t: f64) -> f64 {
    let midpoint = (p.death + p.birth) / 2.0;
    let height = (p.birth - p.death) / 2.0;
    (height - (t - midpoint).abs()).max(0.0)
}

/// The settings that are not grids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSettings {
    pub landscape_levels: usize,
    /// The exponent p of the silhouette's and the image's weights persistence^p.
    pub weight_power: f64,
}

/// Every feature of one diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub betti_curve: Vec<f64>,
    pub landscape: Vec<f64>,
    pub silhouette: Vec<f64>,
    pub persistence_image: Vec<f64>,
    pub entropy: f64,
    /// 1-, 2- and max-norm of the lifetimes.
    pub total_persistence: [f64; 3],
}

/// The features of one diagram (finite `pairs`, `essential` births) on its scope's grids.
pub fn features(
    pairs: &[Pair],
    essential: &[f64],
    grids: &ScopeGrids,
    settings: &FeatureSettings,
) -> Features {
    Features {
        betti_curve: betti_curve(pairs, essential, &grids.curve),
        landscape: landscape::landscape(pairs, settings.landscape_levels, &grids.curve),
        silhouette: silhouette::silhouette(pairs, settings.weight_power, &grids.curve),
        persistence_image: image::persistence_image(pairs, settings.weight_power, &grids.image),
        entropy: scalars::persistence_entropy(pairs),
        total_persistence: scalars::total_persistence(pairs),
    }
}
