//! The `actopo features OUTPUT_DIR` command: load the run's H0 diagrams, fit (or reuse) one grid
//! set per scope, and write `features/<stem>.parquet` per shard, atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::grid::{fit_scope, GridSizes, ScopeGrids};
use super::metadata::{read_grids, FeaturesMetadata, METADATA_KEY};
use super::table::{self, VectorLengths};
use super::{features, FeatureSettings, Features};
use crate::analysis::diagram_set::{DiagramSet, SampleDiagram};
use crate::output::PendingFile;

/// Rows computed and handed to the Parquet writer at a time (fixed, so the bytes are too).
const BATCH_ROWS: usize = 8192;

#[derive(clap::Args, Debug, Clone)]
pub struct FeaturesArgs {
    /// The run's output.dir (it needs the diagrams/ and summary/ tables).
    pub output_dir: PathBuf,
    /// Grid points of the Betti curve, landscape and silhouette.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub bins: u32,
    /// Landscape levels k (the k largest tents at each grid point).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub landscape_levels: u32,
    /// Persistence image size: N x N pixels.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub image_size: u32,
    /// Standard deviation of the persistence image's Gaussian kernel, in edge-weight units
    /// (default: one pixel of the image's coarser axis, per scope).
    #[arg(long)]
    pub sigma: Option<f64>,
    /// Exponent p of the weights persistence^p of the silhouette and the persistence image.
    #[arg(long, default_value_t = 1.0)]
    pub weight_power: f64,
    /// Reuse the grids (and kernel width) that `actopo features` fitted on another run, so both
    /// runs' features share one grid.
    #[arg(long, value_name = "OTHER_DIR", conflicts_with_all = ["bins", "image_size", "sigma"])]
    pub grid_from: Option<PathBuf>,
    /// Only this scope (default: every scope of the run).
    #[arg(long)]
    pub scope: Option<String>,
    /// Worker threads (default: every core); the files are the same whatever the number.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

/// Runs `actopo features`; prints what it wrote.
pub fn run(args: &FeaturesArgs) -> anyhow::Result<()> {
    let settings = check_settings(args)?;
    let set = DiagramSet::load(&args.output_dir)?;
    let scopes = chosen_scopes(&set, args.scope.as_deref())?;
    let grids = scope_grids(&set, &scopes, args)?;
    let lengths = vector_lengths(&grids, settings.landscape_levels)?;
    let metadata = FeaturesMetadata {
        landscape_levels: settings.landscape_levels,
        weight_power: settings.weight_power,
        scopes: grids.clone(),
    };
    let threads = args.threads.map_or_else(default_threads, |t| t as usize);
    let mut rows = 0;
    for (stem, samples) in by_shard(&set, &scopes) {
        let path = write_shard(
            &set.dir, &stem, &samples, &grids, &settings, &metadata, lengths, threads,
        )?;
        rows += samples.len();
        println!("wrote {} ({} rows)", path.display(), samples.len());
    }
    for (scope, g) in &grids {
        println!(
            "scope {scope}: curve grid [{}, {}] x {}; image start [{}, {}], persistence [{}, {}], sigma {}",
            g.curve.min, g.curve.max, g.curve.n_bins, g.image.start.min, g.image.start.max,
            g.image.persistence.min, g.image.persistence.max, g.image.sigma
        );
    }
    println!("{rows} rows: one per (shard, index, variant, scope)");
    Ok(())
}

fn check_settings(args: &FeaturesArgs) -> anyhow::Result<FeatureSettings> {
    if let Some(s) = args.sigma {
        if !(s.is_finite() && s > 0.0) {
            bail!("--sigma {s}: the kernel width must be a positive number (edge-weight units)");
        }
    }
    if !(args.weight_power.is_finite() && args.weight_power >= 0.0) {
        bail!(
            "--weight-power {}: must be a number >= 0",
            args.weight_power
        );
    }
    Ok(FeatureSettings {
        landscape_levels: args.landscape_levels as usize,
        weight_power: args.weight_power,
    })
}

fn chosen_scopes(set: &DiagramSet, scope: Option<&str>) -> anyhow::Result<Vec<String>> {
    match scope {
        Some(s) => {
            set.check_scope(s)?;
            Ok(vec![s.to_string()])
        }
        None => Ok(set.scopes.clone()),
    }
}

/// Each scope's grids: fitted on all its finite pairs (every variant), or read from --grid-from.
fn scope_grids(
    set: &DiagramSet,
    scopes: &[String],
    args: &FeaturesArgs,
) -> anyhow::Result<BTreeMap<String, ScopeGrids>> {
    if let Some(other) = &args.grid_from {
        let mut theirs = read_grids(other)?;
        let names = theirs.keys().cloned().collect::<Vec<_>>().join(", ");
        return scopes
            .iter()
            .map(|s| {
                let g = theirs.remove(s).with_context(|| {
                    format!(
                        "--grid-from {}: its features have no grid for scope `{s}` (it has: {})\n  fix: run `actopo features {}` with that scope there (its graph.scopes must produce it), or pass --scope to pick a shared one",
                        other.display(),
                        names,
                        other.display()
                    )
                })?;
                Ok((s.clone(), g))
            })
            .collect();
    }
    let sizes = GridSizes {
        n_bins: args.bins as usize,
        image_size: args.image_size as usize,
        sigma: args.sigma,
    };
    scopes
        .iter()
        .map(|s| {
            let pairs = set
                .samples
                .iter()
                .filter(|d| &d.scope == s)
                .flat_map(|d| d.diagram.pairs.iter());
            let g = fit_scope(pairs, sizes).with_context(|| {
                format!(
                    "{}: scope `{s}` has no finite H0 pair in any diagram, so no grid can be fitted on it\n  fix: leave it out with --scope, or reuse another run's grids with --grid-from",
                    set.dir.display()
                )
            })?;
            Ok((s.clone(), g))
        })
        .collect()
}

/// The vector columns' lengths, which must not differ between scopes (one schema per file).
fn vector_lengths(
    grids: &BTreeMap<String, ScopeGrids>,
    levels: usize,
) -> anyhow::Result<VectorLengths> {
    let mut lengths = None;
    for (scope, g) in grids {
        let these = VectorLengths {
            n_bins: g.curve.n_bins,
            landscape: levels * g.curve.n_bins,
            image: g.image.start.n_bins * g.image.persistence.n_bins,
        };
        match lengths {
            None => lengths = Some(these),
            Some(l) if l != these => {
                bail!("scope `{scope}`'s grids have other sizes than the other scopes'")
            }
            _ => {}
        }
    }
    lengths.context("no scope to compute features for")
}

/// The chosen scopes' samples grouped by output stem, in the run's order.
fn by_shard<'a>(set: &'a DiagramSet, scopes: &[String]) -> Vec<(String, Vec<&'a SampleDiagram>)> {
    let mut groups: Vec<(String, Vec<&SampleDiagram>)> = Vec::new();
    for s in set.samples.iter().filter(|s| scopes.contains(&s.scope)) {
        let stem = crate::data::stem_of(Path::new(&s.shard));
        match groups.iter_mut().find(|(st, _)| *st == stem) {
            Some((_, list)) => list.push(s),
            None => groups.push((stem, vec![s])),
        }
    }
    groups
}

#[allow(clippy::too_many_arguments)]
fn write_shard(
    dir: &Path,
    stem: &str,
    samples: &[&SampleDiagram],
    grids: &BTreeMap<String, ScopeGrids>,
    settings: &FeatureSettings,
    metadata: &FeaturesMetadata,
    lengths: VectorLengths,
    threads: usize,
) -> anyhow::Result<PathBuf> {
    let kv = vec![
        (
            "actopo.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (METADATA_KEY.to_string(), metadata.to_json()?),
    ];
    let mut file = PendingFile::create(&dir.join("features"), stem, table::schema(lengths), &kv)?;
    for chunk in samples.chunks(BATCH_ROWS) {
        let computed = compute(chunk, grids, settings, threads);
        file.write(table::columns(chunk, &computed, lengths)?)?;
    }
    Ok(file.finish()?.path)
}

/// The features of `samples`, in order, computed on up to `threads` threads.
fn compute(
    samples: &[&SampleDiagram],
    grids: &BTreeMap<String, ScopeGrids>,
    settings: &FeatureSettings,
    threads: usize,
) -> Vec<Features> {
    let one = |s: &&SampleDiagram| {
        // every sample's scope is one of the grids' keys (both come from the chosen scopes)
        let g = &grids[&s.scope];
        features(&s.diagram.pairs, &s.diagram.essential, g, settings)
    };
    let per_thread = samples.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
