//! The `actopo.features` key of every features file's Parquet metadata (JSON): the grids of each
//! scope and the settings, so that another run can reuse the grids (`--grid-from`) and readers
//! can rebuild the sampling points.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::grid::ScopeGrids;
use crate::output::folder::parquet_metadata;

/// The metadata key that holds `FeaturesMetadata` as JSON.
pub(super) const METADATA_KEY: &str = "actopo.features";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct FeaturesMetadata {
    pub landscape_levels: usize,
    pub weight_power: f64,
    /// scope -> its grids.
    pub scopes: BTreeMap<String, ScopeGrids>,
}

impl FeaturesMetadata {
    pub(super) fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// The features files of `dir` (`dir/features/*.parquet`), sorted.
fn feature_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let folder = dir.join("features");
    let files = crate::analysis::parquet_files(&folder).map_err(|_| {
        anyhow::anyhow!(
            "--grid-from {}: it has no features/ folder\n  fix: run `actopo features {}` first (its grids are then reused), or leave --grid-from out to fit the grids on this run",
            dir.display(),
            dir.display()
        )
    })?;
    if files.is_empty() {
        bail!(
            "--grid-from {}: {} holds no .parquet file\n  fix: run `actopo features {}` first",
            dir.display(),
            folder.display(),
            dir.display()
        );
    }
    Ok(files)
}

/// The grids another run's `actopo features` fitted (read from its first features file).
pub(super) fn read_grids(dir: &Path) -> anyhow::Result<BTreeMap<String, ScopeGrids>> {
    let file = &feature_files(dir)?[0];
    let kv = parquet_metadata(file)
        .with_context(|| format!("{} is not a readable Parquet file", file.display()))?;
    let json = kv
        .iter()
        .find(|(k, _)| k == METADATA_KEY)
        .map(|(_, v)| v)
        .with_context(|| {
            format!(
                "{} has no `{METADATA_KEY}` metadata: it was not written by `actopo features`",
                file.display()
            )
        })?;
    let meta: FeaturesMetadata = serde_json::from_str(json).with_context(|| {
        format!(
            "{}: `{METADATA_KEY}` metadata is not what this version of actopo writes; rerun `actopo features` there",
            file.display()
        )
    })?;
    Ok(meta.scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::features::grid::{Grid, ImageGrid};
    use proptest::prelude::*;

    proptest! {
        /// The grids are rebuilt bit for bit by another run (--grid-from) and by Python readers.
        #[test]
        fn json_round_trips_exactly(min in -1e3f64..1e3, width in 0.0f64..1e3, sigma in 1e-9f64..10.0) {
            let g = Grid { min, max: min + width, n_bins: 7 };
            let meta = FeaturesMetadata {
                landscape_levels: 5,
                weight_power: 1.0,
                scopes: BTreeMap::from([(
                    "network".to_string(),
                    ScopeGrids { curve: g, image: ImageGrid { start: g, persistence: g, sigma } },
                )]),
            };
            let back: FeaturesMetadata =
                serde_json::from_str(&meta.to_json().expect("json")).expect("parse");
            prop_assert_eq!(back, meta);
        }
    }
}
