//! The subgraph analysis tables (`actopo analyze subgraphs`: `analysis/subgraph_variants.parquet`
//! and `analysis/subgraph_representatives.parquet`) as bar charts, when they exist.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::draw::{BarFigure, BoxFigure, Figure};
use super::{NamedFigure, PlotOptions};

/// Every batch of one Parquet file.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a readable Parquet file", path.display()))?
    .build()?;
    reader
        .map(|b| b.with_context(|| format!("reading {}", path.display())))
        .collect()
}

fn column<'a>(b: &'a RecordBatch, name: &str, path: &Path) -> anyhow::Result<&'a dyn Array> {
    b.column_by_name(name).map(|c| c.as_ref()).with_context(|| {
        format!(
            "{} has no column `{name}`; rerun `actopo analyze subgraphs` with this version",
            path.display()
        )
    })
}

fn f64s(b: &RecordBatch, name: &str, path: &Path) -> anyhow::Result<Vec<Option<f64>>> {
    let c = column(b, name, path)?
        .as_primitive_opt::<Float64Type>()
        .with_context(|| format!("{}: column `{name}` is not float64", path.display()))?;
    Ok((0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect())
}

fn typed<'a, T>(
    b: &'a RecordBatch,
    name: &str,
    path: &Path,
    cast: impl Fn(&'a dyn Array) -> Option<&'a T>,
    what: &str,
) -> anyhow::Result<&'a T> {
    cast(column(b, name, path)?)
        .with_context(|| format!("{}: column `{name}` is not {what}", path.display()))
}

/// Recovery/retention rates and mean overlaps per variant.
fn variant_figures(path: &Path) -> anyhow::Result<Vec<NamedFigure>> {
    let mut categories = Vec::new();
    let names = [
        (
            "recovery_rate",
            "recovery (subgraph predicts the true class)",
        ),
        (
            "retention_rate",
            "retention (subgraph predicts the new class)",
        ),
        ("mean_overlap_true", "overlap with true class"),
        ("mean_overlap_pred", "overlap with predicted class"),
        (
            "mean_diff_overlap_true",
            "gained edges: overlap with true class",
        ),
        (
            "mean_diff_overlap_pred",
            "gained edges: overlap with predicted class",
        ),
    ];
    let mut values: Vec<Vec<Option<f64>>> = vec![Vec::new(); names.len()];
    for b in read_file(path)? {
        let variant = typed(&b, "variant", path, |c| c.as_string_opt::<i32>(), "utf8")?;
        let n = typed(
            &b,
            "n",
            path,
            |c| c.as_primitive_opt::<UInt64Type>(),
            "uint64",
        )?;
        for i in 0..b.num_rows() {
            categories.push(format!("{} (n = {})", variant.value(i), n.value(i)));
        }
        for (k, (col, _)) in names.iter().enumerate() {
            values[k].extend(f64s(&b, col, path)?);
        }
    }
    let series = |range: std::ops::Range<usize>| {
        range
            .map(|k| (names[k].1.to_string(), values[k].clone()))
            .collect()
    };
    Ok(vec![
        NamedFigure {
            stem: "subgraph-rates".into(),
            figure: Figure::Bars(BarFigure {
                title: "Persistent subgraphs: recovery and retention per variant".into(),
                y_desc: "fraction of the n samples".into(),
                categories: categories.clone(),
                series: series(0..2),
            }),
        },
        NamedFigure {
            stem: "subgraph-overlaps".into(),
            figure: Figure::Bars(BarFigure {
                title: "Persistent subgraphs: mean overlap |S ∩ R| / |S| per variant".into(),
                y_desc: "mean overlap".into(),
                categories,
                series: series(2..6),
            }),
        },
    ])
}

/// Edges and support of each class representative.
fn representative_figure(path: &Path, o: &PlotOptions) -> anyhow::Result<NamedFigure> {
    let mut classes: BTreeMap<i64, (u64, usize)> = BTreeMap::new();
    for b in read_file(path)? {
        let class = typed(
            &b,
            "class",
            path,
            |c| c.as_primitive_opt::<Int64Type>(),
            "int64",
        )?;
        let support = typed(
            &b,
            "support",
            path,
            |c| c.as_primitive_opt::<UInt64Type>(),
            "uint64",
        )?;
        for i in 0..b.num_rows() {
            let entry = classes
                .entry(class.value(i))
                .or_insert((support.value(i), 0));
            entry.1 += 1;
        }
    }
    Ok(NamedFigure {
        stem: "subgraph-representatives".into(),
        figure: Figure::Bars(BarFigure {
            title: "Class representatives: edges per class (n: clean samples fitted)".into(),
            y_desc: "edges in the representative".into(),
            categories: classes
                .iter()
                .map(|(&c, &(support, _))| format!("{} (n = {support})", o.class_name(Some(c))))
                .collect(),
            series: vec![(
                "edges".into(),
                classes
                    .values()
                    .map(|&(_, edges)| Some(edges as f64))
                    .collect(),
            )],
        }),
    })
}

fn strs<'a>(b: &'a RecordBatch, name: &str, path: &Path) -> anyhow::Result<Vec<&'a str>> {
    let c = typed(b, name, path, |c| c.as_string_opt::<i32>(), "utf8")?;
    Ok((0..c.len()).map(|i| c.value(i)).collect())
}

/// `actopo distances`' table (`analysis/distances.parquet`): per perturbed variant of `o.scope`,
/// the spread of each distance to the same sample's clean diagram (every Float64 column).
fn distance_figure(path: &Path, o: &PlotOptions) -> anyhow::Result<Option<NamedFigure>> {
    let mut metrics: Vec<String> = Vec::new();
    let mut values: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    let mut variants: Vec<String> = Vec::new();
    for b in read_file(path)? {
        let schema = b.schema();
        let floats: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &arrow::datatypes::DataType::Float64)
            .map(|f| f.name().as_str())
            .collect();
        let (variant, scope, reference) = (
            strs(&b, "variant", path)?,
            strs(&b, "scope", path)?,
            strs(&b, "reference", path)?,
        );
        for name in floats {
            let m = position_or_push(&mut metrics, name);
            for (i, v) in f64s(&b, name, path)?.into_iter().enumerate() {
                if reference[i] != "clean" || scope[i] != o.scope {
                    continue;
                }
                let Some(v) = v else { continue };
                let k = position_or_push(&mut variants, variant[i]);
                values.entry((k, m)).or_default().push(v);
            }
        }
    }
    if variants.is_empty() {
        return Ok(None);
    }
    let boxes = (0..variants.len())
        .map(|k| {
            (0..metrics.len())
                .map(|m| values.remove(&(k, m)).and_then(super::stats::BoxStats::of))
                .collect()
        })
        .collect();
    Ok(Some(NamedFigure {
        stem: format!("distances-{}", super::file_part(&o.scope)),
        figure: Figure::Boxes(BoxFigure {
            title: format!(
                "Distance to the clean diagram per variant, {} scope",
                o.scope
            ),
            y_desc: "distance (edge-weight units; box: quartiles, whiskers: 10-90%)".into(),
            categories: variants,
            series: metrics,
            boxes,
        }),
    }))
}

fn position_or_push(list: &mut Vec<String>, item: &str) -> usize {
    match list.iter().position(|x| x == item) {
        Some(i) => i,
        None => {
            list.push(item.to_string());
            list.len() - 1
        }
    }
}

/// The distances figure when `dir/analysis/distances.parquet` exists and has rows of the scope.
pub(crate) fn distance_figures(dir: &Path, o: &PlotOptions) -> anyhow::Result<Vec<NamedFigure>> {
    let path = dir.join("analysis").join("distances.parquet");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    Ok(distance_figure(&path, o)?.into_iter().collect())
}

/// The subgraph figures for the tables `dir/analysis/` holds (none when it has none).
pub(crate) fn subgraph_figures(dir: &Path, o: &PlotOptions) -> anyhow::Result<Vec<NamedFigure>> {
    let analysis = dir.join("analysis");
    let mut out = Vec::new();
    let variants = analysis.join("subgraph_variants.parquet");
    if variants.is_file() {
        out.extend(variant_figures(&variants)?);
    }
    let representatives = analysis.join("subgraph_representatives.parquet");
    if representatives.is_file() {
        out.push(representative_figure(&representatives, o)?);
    }
    Ok(out)
}
