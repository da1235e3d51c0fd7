//! `actopo plot OUTPUT_DIR`: figures of a finished run, as SVG and PNG under `OUTPUT_DIR/plots/`
//! (`docs/plots-and-report.md`).
//!
//! - `stats`: Betti-0 curves on a common grid, class means and bands, total persistence spreads;
//! - `draw`: the figures as plain structs, drawn with plotters on any backend;
//! - `render`: SVG text and PNG bytes, marked as actopo's;
//! - `tables`: the distances table as box plots, the subgraph analysis tables as bar charts;
//! - `files`: atomic writes that replace only files actopo wrote.
//!
//! `actopo report` builds the same figures and inlines their SVG.

pub mod draw;
pub mod files;
pub mod render;
pub mod stats;
mod tables;

pub use tables::read_file as read_parquet;

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::analysis::diagram_set::{DiagramSet, SampleDiagram};
use draw::{BettiFigure, BoxFigure, DiagramFigure, Figure, VariantPoints};

/// Which sample, scope and names the figures use.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// The scope every figure reads (`network`, or a layer scope).
    pub scope: String,
    /// The shard of the sample shown in the diagram figure (None: the run's first shard).
    pub shard: Option<String>,
    pub index: u32,
    /// Names of classes 0, 1, ...; labels past the list keep their number.
    pub class_names: Vec<String>,
    /// Bars per variant in the barcode.
    pub bars: usize,
    /// Thresholds of the Betti-curve grid (100: `actopo features`' default `--bins`).
    pub grid_points: usize,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            scope: "network".into(),
            shard: None,
            index: 0,
            class_names: Vec::new(),
            bars: 40,
            grid_points: 100,
        }
    }
}

impl PlotOptions {
    /// A label as the figures show it.
    pub fn class_name(&self, label: Option<i64>) -> String {
        match label {
            None => "unlabelled".into(),
            Some(c) => usize::try_from(c)
                .ok()
                .and_then(|i| self.class_names.get(i))
                .cloned()
                .unwrap_or_else(|| format!("class {c}")),
        }
    }
}

/// A figure with the file stem it is saved under.
pub struct NamedFigure {
    pub stem: String,
    pub figure: Figure,
}

/// Which files `actopo plot` writes per figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Svg,
    Png,
    Both,
}

/// A name made safe for a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The diagrams of `scope`, checked to exist.
fn scope_samples<'a>(set: &'a DiagramSet, scope: &str) -> anyhow::Result<Vec<&'a SampleDiagram>> {
    set.check_scope(scope)?;
    Ok(set.samples.iter().filter(|s| s.scope == scope).collect())
}

/// One sample's diagram and barcode, every variant it has overlaid.
pub fn diagram_figure(set: &DiagramSet, o: &PlotOptions) -> anyhow::Result<NamedFigure> {
    let samples = scope_samples(set, &o.scope)?;
    let shard = match &o.shard {
        Some(s) => s.clone(),
        None => samples.first().map(|s| s.shard.clone()).unwrap_or_default(),
    };
    let variants: Vec<VariantPoints> = set
        .variants
        .iter()
        .filter_map(|v| set.find(&shard, o.index, v, &o.scope))
        .map(|s| VariantPoints {
            variant: s.variant.clone(),
            pairs: s.diagram.pairs.iter().map(|p| (p.birth, p.death)).collect(),
            essential: s.diagram.essential.clone(),
        })
        .collect();
    let Some(first) = variants.first() else {
        return Err(no_sample(&samples, &shard, o.index, set));
    };
    let sample = set
        .find(&shard, o.index, &first.variant, &o.scope)
        .map(|s| (s.label, s.pred));
    let (label, pred) = sample.unwrap_or((None, -1));
    let title = format!(
        "{shard} #{} ({} scope): label {}, clean prediction {}",
        o.index,
        o.scope,
        o.class_name(label),
        o.class_name(Some(pred)),
    );
    Ok(NamedFigure {
        stem: format!(
            "diagram-{}-{}-{}",
            file_part(shard.trim_end_matches(".gz")),
            o.index,
            file_part(&o.scope)
        ),
        figure: Figure::Diagram(DiagramFigure {
            title,
            variants,
            bars: o.bars,
        }),
    })
}

fn no_sample(
    samples: &[&SampleDiagram],
    shard: &str,
    index: u32,
    set: &DiagramSet,
) -> anyhow::Error {
    let mut shards: Vec<&str> = samples.iter().map(|s| s.shard.as_str()).collect();
    shards.dedup();
    let in_shard = samples.iter().filter(|s| s.shard == shard);
    let max = in_shard.map(|s| s.index).max();
    let known = match max {
        Some(m) => format!("shard {shard} has indices 0..={m} (failed samples have none)"),
        None => format!(
            "the run has no shard {shard}; its shards are: {}",
            shards.join(", ")
        ),
    };
    anyhow::anyhow!(
        "{}: no diagram for --shard {shard} --index {index}: {known}\n  fix: pick an index and shard the run processed (data.shards, data.limit set which)",
        set.dir.display()
    )
}

/// Mean Betti-0 curve per class with its 10-90% band, one figure per variant, on one grid per
/// scope (so the variants' figures compare).
pub fn betti_figures(set: &DiagramSet, o: &PlotOptions) -> anyhow::Result<Vec<NamedFigure>> {
    let samples = scope_samples(set, &o.scope)?;
    let Some(grid) = stats::scope_grid(samples.iter().map(|s| &s.diagram), o.grid_points) else {
        bail!(
            "{}: the diagrams of scope {} hold no point to draw a Betti curve from",
            set.dir.display(),
            o.scope
        );
    };
    let thresholds = grid.points();
    let mut out = Vec::new();
    for variant in &set.variants {
        let of_variant: Vec<&SampleDiagram> = samples
            .iter()
            .copied()
            .filter(|s| s.variant == *variant)
            .collect();
        if of_variant.is_empty() {
            continue;
        }
        let bands = stats::class_bands(&of_variant, &grid)
            .into_iter()
            .map(|b| (o.class_name(b.class), b))
            .collect();
        out.push(NamedFigure {
            stem: format!("betti0-{}-{}", file_part(&o.scope), file_part(variant)),
            figure: Figure::Betti(BettiFigure {
                title: format!(
                    "Mean Betti-0 curve by true class, {variant}, {} scope (band: 10-90% of samples)",
                    o.scope
                ),
                thresholds: thresholds.clone(),
                bands,
            }),
        });
    }
    Ok(out)
}

/// Total persistence per true class, one box per variant.
pub fn total_persistence_figure(set: &DiagramSet, o: &PlotOptions) -> anyhow::Result<NamedFigure> {
    let samples = scope_samples(set, &o.scope)?;
    let boxes = stats::total_persistence_boxes(&samples, &set.variants);
    Ok(NamedFigure {
        stem: format!("total-persistence-{}", file_part(&o.scope)),
        figure: Figure::Boxes(BoxFigure {
            title: format!(
                "H0 total persistence by true class and variant, {} scope",
                o.scope
            ),
            y_desc: "sum of birth - death (box: quartiles, whiskers: 10-90%)".into(),
            categories: boxes.keys().map(|&c| o.class_name(c)).collect(),
            series: set.variants.clone(),
            boxes: boxes.into_values().collect(),
        }),
    })
}

/// Every figure of the run: diagram figure, Betti curves, total persistence, and the distances
/// and subgraph analysis tables when `analysis/` has them.
pub fn figures(set: &DiagramSet, o: &PlotOptions) -> anyhow::Result<Vec<NamedFigure>> {
    check_shard(set, o)?;
    let mut out = vec![diagram_figure(set, o)?];
    out.extend(betti_figures(set, o)?);
    out.push(total_persistence_figure(set, o)?);
    out.extend(tables::distance_figures(&set.dir, o)?);
    out.extend(tables::subgraph_figures(&set.dir, o)?);
    Ok(out)
}

/// `actopo plot`: writes every figure under `dir/plots/`; returns the files written.
pub fn run(dir: &Path, o: &PlotOptions, format: Format) -> anyhow::Result<Vec<PathBuf>> {
    let set = DiagramSet::load(dir)?;
    let figures = figures(&set, o)?;
    let out = dir.join("plots");
    files::ensure_folder(&out)?;
    let mut written = Vec::new();
    for f in &figures {
        if format != Format::Png {
            let name = format!("{}.svg", f.stem);
            files::write_file(&out, &name, render::svg(&f.figure)?.as_bytes())?;
            written.push(out.join(name));
        }
        if format != Format::Svg {
            let name = format!("{}.png", f.stem);
            files::write_file(&out, &name, &render::png(&f.figure)?)?;
            written.push(out.join(name));
        }
    }
    Ok(written)
}

/// Fails, listing the run's shards, when `--shard` names none of them.
fn check_shard(set: &DiagramSet, o: &PlotOptions) -> anyhow::Result<()> {
    let Some(shard) = &o.shard else {
        return Ok(());
    };
    if set.samples.iter().any(|s| s.shard == *shard) {
        return Ok(());
    }
    let shards = crate::analysis::variants_in_order(set.samples.iter().map(|s| s.shard.as_str()));
    bail!(
        "{} has no shard `{shard}`; its shards are: {}\n  fix: pass one of those to --shard (data.shards lists the run's inputs)",
        set.dir.display(),
        shards.join(", ")
    )
}
