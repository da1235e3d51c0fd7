//! `actopo analyze`: the paper's analyses as commands over a run's Parquet outputs (`docs/analyses.md`).
//!
//! - `subgraphs`: class representatives of the persistent subgraphs, overlaps, subgraph predictions,
//!   recovery and retention rates per variant (Gebhart et al. 2019, section V);
//! - `uncertainty`: Topological Uncertainty per sample (Lacombe et al. 2021) from `layers` diagrams.
//!
//! Both read `OUTPUT_DIR/<table>/*.parquet`, write `OUTPUT_DIR/analysis/*.parquet` (atomically) and
//! print a table. The computations are plain functions over in-memory records, tested on small
//! hand-made inputs. Both fit class references (representatives, class means) on the clean samples
//! of the run they score, or with `--fit FIT_DIR` on another comparable run (`fit`).

pub mod diagram_set;
pub mod distances;
pub mod features;
pub mod fit;
pub mod subgraphs;
pub mod uncertainty;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{
    DataType, Field, Float32Type, Int64Type, UInt32Type, UInt64Type, UInt8Type,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::output::PendingFile;

/// Why `dir/table` is missing, and the fix: the run did not write that table (naming the key to
/// set), or `dir` is not a run's output folder at all.
fn missing_table(dir: &Path, table: &str) -> anyhow::Error {
    if crate::output::manifest::has_manifest(dir) {
        anyhow::anyhow!(
            "{} holds no `{table}/` table: the run that wrote it had output.{table} = false\n  fix: set `output.{table} = true` in the run's config and rerun it (into a new output.dir, or with --overwrite: the setting changes the run), then analyze that folder",
            dir.display()
        )
    } else {
        anyhow::anyhow!(
            "{} is not an actopo output folder (it has no manifest.json)\n  fix: pass the output.dir of a finished `actopo run`",
            dir.display()
        )
    }
}

/// Every batch of `dir/table/*.parquet`, files in sorted order.
pub fn read_table(dir: &Path, table: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for_each_batch(dir, table, |b| {
        batches.push(b);
        Ok(())
    })?;
    Ok(batches)
}

/// Hands every batch of `dir/table/*.parquet` to `f`, files in sorted order, one batch in memory
/// at a time (a 10,000-image diagrams table is 2.4 M rows).
pub fn for_each_batch(
    dir: &Path,
    table: &str,
    mut f: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for path in table_files(dir, table)? {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)
            .with_context(|| format!("{} is not a readable Parquet file", path.display()))?
            .build()?;
        for b in reader {
            f(b.with_context(|| format!("reading {}", path.display()))?)?;
        }
    }
    Ok(())
}

/// The `.parquet` files of `folder`, sorted by name; hidden ones (actopo's temporary
/// `.NAME.XXXXXX.parquet.partial`, or anyone's dot files) left out.
pub(crate) fn parquet_files(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "parquet")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The `.parquet` files of `dir/table/`, sorted; hidden (temporary) files left out.
fn table_files(dir: &Path, table: &str) -> anyhow::Result<Vec<PathBuf>> {
    let folder = dir.join(table);
    if !folder.exists() {
        return Err(missing_table(dir, table));
    }
    let files = parquet_files(&folder).with_context(|| {
        format!(
            "cannot read {}: is {} an actopo output folder?",
            folder.display(),
            dir.display()
        )
    })?;
    if files.is_empty() {
        bail!("{} has no .parquet files", folder.display());
    }
    Ok(files)
}

fn column<'a>(b: &'a RecordBatch, name: &str, table: &str) -> anyhow::Result<&'a ArrayRef> {
    b.column_by_name(name).with_context(|| {
        format!("table `{table}` has no column `{name}`; was it written by this version of actopo?")
    })
}

/// Typed views of the columns the analyses read.
pub(crate) struct Columns<'a> {
    batch: &'a RecordBatch,
    table: &'static str,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(batch: &'a RecordBatch, table: &'static str) -> Self {
        Columns { batch, table }
    }

    pub(crate) fn str(&self, name: &str) -> anyhow::Result<Vec<&'a str>> {
        let c = column(self.batch, name, self.table)?;
        let c = c
            .as_string_opt::<i32>()
            .with_context(|| format!("column `{name}` is not utf8"))?;
        Ok((0..c.len()).map(|i| c.value(i)).collect())
    }

    pub(crate) fn u32(&self, name: &str) -> anyhow::Result<Vec<u32>> {
        Ok(column(self.batch, name, self.table)?
            .as_primitive::<UInt32Type>()
            .values()
            .to_vec())
    }

    pub(crate) fn u64(&self, name: &str) -> anyhow::Result<Vec<u64>> {
        Ok(column(self.batch, name, self.table)?
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec())
    }

    pub(crate) fn u8(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        Ok(column(self.batch, name, self.table)?
            .as_primitive::<UInt8Type>()
            .values()
            .to_vec())
    }

    pub(crate) fn opt_i64(&self, name: &str) -> anyhow::Result<Vec<Option<i64>>> {
        let c = column(self.batch, name, self.table)?;
        anyhow::ensure!(
            c.data_type() == &DataType::Int64,
            "column `{name}` is not int64"
        );
        let c = c.as_primitive::<Int64Type>();
        Ok((0..c.len())
            .map(|i| c.is_valid(i).then(|| c.value(i)))
            .collect())
    }

    pub(crate) fn opt_f32(&self, name: &str) -> anyhow::Result<Vec<Option<f32>>> {
        let c = column(self.batch, name, self.table)?.as_primitive::<Float32Type>();
        Ok((0..c.len())
            .map(|i| c.is_valid(i).then(|| c.value(i)))
            .collect())
    }
}

/// The label and the model's prediction for one (shard, index, variant), from the summary table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prediction {
    pub label: Option<i64>,
    pub pred: i64,
}

/// (shard, index, variant) -> prediction, from `summary/`.
pub(crate) fn read_predictions(
    dir: &Path,
) -> anyhow::Result<HashMap<(String, u32, String), Prediction>> {
    let mut out = HashMap::new();
    for b in read_table(dir, "summary")? {
        let c = Columns::new(&b, "summary");
        let (shard, index, variant) = (c.str("shard")?, c.u32("index")?, c.str("variant")?);
        let (label, pred) = (c.opt_i64("label")?, c.opt_i64("pred")?);
        for i in 0..b.num_rows() {
            out.entry((shard[i].to_string(), index[i], variant[i].to_string()))
                .or_insert(Prediction {
                    label: label[i],
                    pred: pred[i].unwrap_or(-1),
                });
        }
    }
    Ok(out)
}

/// Collects one record per (shard, index, variant) while reading a table row by row, each made
/// with that sample's prediction from `summary/`.
pub(crate) struct Records<R> {
    dir: PathBuf,
    predictions: HashMap<(String, u32, String), Prediction>,
    at: HashMap<(String, u32, String), usize>,
    pub(crate) list: Vec<R>,
}

impl<R> Records<R> {
    pub(crate) fn new(dir: &Path) -> anyhow::Result<Self> {
        Ok(Records {
            dir: dir.to_path_buf(),
            predictions: read_predictions(dir)?,
            at: HashMap::new(),
            list: Vec::new(),
        })
    }

    /// The record of (shard, index, variant), made by `make(shard, index, variant, prediction)` on
    /// first sight.
    pub(crate) fn get(
        &mut self,
        shard: &str,
        index: u32,
        variant: &str,
        make: impl FnOnce(String, u32, String, Prediction) -> R,
    ) -> anyhow::Result<&mut R> {
        let key = (shard.to_string(), index, variant.to_string());
        let slot = match self.at.get(&key) {
            Some(&s) => s,
            None => {
                let prediction = *self.predictions.get(&key).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: no summary row for shard {shard} index {index} variant {variant}",
                        self.dir.display()
                    )
                })?;
                self.list
                    .push(make(key.0.clone(), index, key.2.clone(), prediction));
                self.at.insert(key, self.list.len() - 1);
                self.list.len() - 1
            }
        };
        Ok(&mut self.list[slot])
    }
}

/// A per-(sample, variant) row of an analysis table.
pub(crate) trait SampleRowKey {
    fn key(&self) -> (&str, u32, &str, Option<i64>, i64);
}

/// The leading columns every per-sample analysis table has: shard, index, variant, label, pred.
pub(crate) fn key_columns<R: SampleRowKey>(rows: &[R]) -> (Vec<Field>, Vec<ArrayRef>) {
    let keys: Vec<_> = rows.iter().map(SampleRowKey::key).collect();
    let fields = vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("label", DataType::Int64, true),
        Field::new("pred", DataType::Int64, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        std::sync::Arc::new(StringArray::from_iter_values(keys.iter().map(|k| k.0))),
        std::sync::Arc::new(UInt32Array::from_iter_values(keys.iter().map(|k| k.1))),
        std::sync::Arc::new(StringArray::from_iter_values(keys.iter().map(|k| k.2))),
        std::sync::Arc::new(Int64Array::from(
            keys.iter().map(|k| k.3).collect::<Vec<_>>(),
        )),
        std::sync::Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| k.4))),
    ];
    (fields, columns)
}

/// Writes one analysis table atomically under `dir/analysis/<name>.parquet`, with actopo's version
/// and `extra` in its metadata.
pub(crate) fn write_analysis(
    dir: &Path,
    name: &str,
    batch: RecordBatch,
    extra: &[(String, String)],
) -> anyhow::Result<PathBuf> {
    let mut metadata = vec![(
        "actopo.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )];
    metadata.extend_from_slice(extra);
    let mut file = PendingFile::create(&dir.join("analysis"), name, batch.schema(), &metadata)?;
    file.write(batch.columns().to_vec())?;
    Ok(file.finish()?.path)
}

pub(crate) fn f64_col(v: &[Option<f64>]) -> ArrayRef {
    std::sync::Arc::new(arrow::array::Float64Array::from(v.to_vec()))
}

/// The mean, or None for no values (summed left to right).
pub(crate) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for x in values {
        sum += x;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// Each variant once, in the order first seen (the run writes `clean` first, then the attacks).
pub(crate) fn variants_in_order<'a>(variants: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut order: Vec<&str> = Vec::new();
    for v in variants {
        if !order.contains(&v) {
            order.push(v);
        }
    }
    order
}
