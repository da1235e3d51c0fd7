//! Parquet output: per shard, `summary/<stem>.parquet`,
//! `diagrams/<stem>.parquet` and, when asked, `subgraphs/<stem>.parquet` (the killing edges of the
//! most persistent H0 pairs), zstd-compressed, with the graph and persistence conventions in the
//! key-value metadata.
//!
//! A `ShardOutput` takes sample results in any order, holds the early ones back, and appends rows
//! strictly by index, so files are identical whatever the worker count. Files are written under a
//! hidden temporary name in their final folder and renamed only by `finish`; dropping an unfinished
//! `ShardOutput` deletes them.

pub mod folder;
pub mod manifest;
pub mod resume;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use tempfile::NamedTempFile;


use crate::perturb::AttackStats;
use crate::output::resume::OutputFile;
use crate::topology::graph::layer_of_unit;
use crate::topology::{H0Pair, ScopeDiagram, Summary, VertexLayer};

/// What to write for every shard of a run, shared by all its `ShardOutput`s.
#[derive(Debug, Clone)]
pub struct OutputLayout {
    pub dir: PathBuf,
    pub summary: bool,
    pub diagrams: bool,
    /// `Some(top_k)` to write subgraphs of the `top_k` most persistent pairs.
    pub subgraph_top_k: Option<usize>,
    /// Variant names; rows go by index, then variant in this order.
    pub variants: Vec<String>,
    /// Unit-id blocks, to name each subgraph edge's layers.
    pub vertex_layers: Vec<VertexLayer>,
    /// Key-value metadata of every file (the conventions).
    pub metadata: Vec<(String, String)>,
    /// SHA-256 of the run identity, stamped on every file so a lost manifest can be rebuilt.
    pub run_identity: String,
}

/// Metadata keys that tie a shard's files together (see `commit_metadata`).
pub const RUN_IDENTITY_KEY: &str = "actopo.run_identity_sha256";
pub const SOURCE_KEY: &str = "actopo.source_sha256";
pub const SHARD_FILES_KEY: &str = "actopo.shard_files";

/// What each file of one shard's commit carries: the run, the shard's content, and the list of
/// tables written together, so a rebuild can tell a complete commit from a torn one.
fn commit_metadata(layout: &OutputLayout, source: &str, tables: &[&str]) -> Vec<(String, String)> {
    vec![
        (RUN_IDENTITY_KEY.into(), layout.run_identity.clone()),
        (SOURCE_KEY.into(), source.to_string()),
        (SHARD_FILES_KEY.into(), tables.join(",")),
    ]
}

/// `dir/<table>/<stem>.parquet`.
pub fn table_path(dir: &Path, table: &str, stem: &str) -> PathBuf {
    dir.join(table).join(format!("{stem}.parquet"))
}

/// One sample's results, as the workers send them.
#[derive(Debug, Clone)]
pub struct SampleResult {
    pub shard: usize,
    pub index: usize,
    /// Position in the variant list (0 = clean).
    pub variant: usize,
    pub label: Option<i64>,
    pub pred: i64,
    pub confidence: f32,
    /// None for the clean variant.
    pub attack: Option<AttackStats>,
    pub scopes: Vec<ScopeDiagram>,
}

pub fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("label", DataType::Int64, true),
        Field::new("pred", DataType::Int64, false),
        Field::new("confidence", DataType::Float32, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("n_vertices", DataType::UInt64, false),
        Field::new("n_edges", DataType::UInt64, false),
        Field::new("h0_pairs", DataType::UInt64, false),
        Field::new("h0_essential", DataType::UInt64, false),
        Field::new("h0_total_persistence", DataType::Float64, false),
        Field::new("h0_max_persistence", DataType::Float64, false),
        Field::new("h0_entropy", DataType::Float64, false),
        Field::new("h1_count", DataType::UInt64, false),
        Field::new("attack_success", DataType::Boolean, true),
        Field::new("perturbation_linf", DataType::Float32, true),
        Field::new("perturbation_l2", DataType::Float32, true),
    ]))
}

pub fn subgraphs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("src", DataType::UInt64, false),
        Field::new("dst", DataType::UInt64, false),
        Field::new("layer_src", DataType::Utf8, false),
        Field::new("layer_dst", DataType::Utf8, false),
        Field::new("weight", DataType::Float32, false),
        Field::new("persistence", DataType::Float32, false),
        Field::new("rank", DataType::UInt32, false),
    ]))
}

pub fn failures_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, true),
        Field::new("variant", DataType::Utf8, true),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
    ]))
}

/// One failed (sample, variant), or a whole shard when `index` is None.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub index: Option<usize>,
    pub variant: Option<String>,
    /// `read`, `forward`, `attack`, `topology`.
    pub stage: &'static str,
    pub error: String,
}

fn failures_batch(shard: &str, failures: &[Failure]) -> anyhow::Result<RecordBatch> {
    let mut b = (
        StringBuilder::new(),
        UInt32Builder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for f in failures {
        b.0.append_value(shard);
        b.1.append_option(f.index.map(|i| i as u32));
        b.2.append_option(f.variant.as_deref());
        b.3.append_value(f.stage);
        b.4.append_value(&f.error);
    }
    Ok(RecordBatch::try_new(
        failures_schema(),
        vec![
            Arc::new(b.0.finish()),
            Arc::new(b.1.finish()),
            Arc::new(b.2.finish()),
            Arc::new(b.3.finish()),
            Arc::new(b.4.finish()),
        ],
    )?)
}

/// Writes `failures/<stem>.parquet` for a shard that could not be processed at all, after deleting
/// whatever result tables an earlier attempt left for it, so the shard's files agree.
pub fn write_shard_failure(
    layout: &OutputLayout,
    shard: &str,
    stem: &str,
    source: &str,
    failure: Failure,
) -> anyhow::Result<OutputFile> {
    for table in ["summary", "diagrams", "subgraphs"] {
        if folder::remove_ours(&table_path(&layout.dir, table, stem))? {
            folder::sync_dir(&layout.dir.join(table))?;
        }
    }
    let mut file = PendingFile::create(
        &layout.dir.join("failures"),
        stem,
        failures_schema(),
        &layout.metadata,
    )?;
    file.write(failures_batch(shard, &[failure])?.columns().to_vec())?;
    let out = file
        .close(&commit_metadata(layout, source, &["failures"]))?
        .commit()?;
    folder::sync_dir(&layout.dir.join("failures"))?;
    Ok(out)
}

pub fn diagrams_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("dim", DataType::UInt8, false),
        Field::new("birth", DataType::Float32, false),
        Field::new("death", DataType::Float32, true),
    ]))
}

#[derive(Default)]
struct SummaryColumns {
    shard: StringBuilder,
    index: UInt32Builder,
    label: Int64Builder,
    pred: Int64Builder,
    confidence: Float32Builder,
    variant: StringBuilder,
    scope: StringBuilder,
    n_vertices: UInt64Builder,
    n_edges: UInt64Builder,
    h0_pairs: UInt64Builder,
    h0_essential: UInt64Builder,
    h0_total: Float64Builder,
    h0_max: Float64Builder,
    h0_entropy: Float64Builder,
    h1_count: UInt64Builder,
    attack_success: BooleanBuilder,
    perturbation_linf: Float32Builder,
    perturbation_l2: Float32Builder,
    rows: usize,
}

impl SummaryColumns {
    fn push(&mut self, shard: &str, variant: &str, r: &SampleResult, scope: &str, s: &Summary) {
        self.shard.append_value(shard);
        self.index.append_value(r.index as u32);
        self.label.append_option(r.label);
        self.pred.append_value(r.pred);
        self.confidence.append_value(r.confidence);
        self.variant.append_value(variant);
        self.scope.append_value(scope);
        self.n_vertices.append_value(s.n_vertices);
        self.n_edges.append_value(s.n_edges);
        self.h0_pairs.append_value(s.h0_pairs);
        self.h0_essential.append_value(s.h0_essential);
        self.h0_total.append_value(s.h0_total_persistence);
        self.h0_max.append_value(s.h0_max_persistence);
        self.h0_entropy.append_value(s.h0_entropy);
        self.h1_count.append_value(s.h1_count);
        self.attack_success
            .append_option(r.attack.map(|a| a.success));
        self.perturbation_linf
            .append_option(r.attack.map(|a| a.linf));
        self.perturbation_l2.append_option(r.attack.map(|a| a.l2));
        self.rows += 1;
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        vec![
            Arc::new(self.shard.finish()),
            Arc::new(self.index.finish()),
            Arc::new(self.label.finish()),
            Arc::new(self.pred.finish()),
            Arc::new(self.confidence.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.scope.finish()),
            Arc::new(self.n_vertices.finish()),
            Arc::new(self.n_edges.finish()),
            Arc::new(self.h0_pairs.finish()),
            Arc::new(self.h0_essential.finish()),
            Arc::new(self.h0_total.finish()),
            Arc::new(self.h0_max.finish()),
            Arc::new(self.h0_entropy.finish()),
            Arc::new(self.h1_count.finish()),
            Arc::new(self.attack_success.finish()),
            Arc::new(self.perturbation_linf.finish()),
            Arc::new(self.perturbation_l2.finish()),
        ]
    }
}

#[derive(Default)]
struct DiagramColumns {
    shard: StringBuilder,
    index: UInt32Builder,
    variant: StringBuilder,
    scope: StringBuilder,
    dim: UInt8Builder,
    birth: Float32Builder,
    death: Float32Builder,
    rows: usize,
    /// Scratch for ordering one diagram's points.
    points: Vec<(f32, Option<f32>)>,
}

impl DiagramColumns {
    /// Appends one scope's diagram: dim 0 then dim 1; within a dim birth descending, then death
    /// descending with essential classes (null death) last.
    fn push(&mut self, shard: &str, variant: &str, r: &SampleResult, sd: &ScopeDiagram) {
        let d = &sd.diagram;
        self.points.clear();
        self.points
            .extend(d.h0.iter().map(|p| (p.birth, Some(p.death))));
        self.points
            .extend(d.h0_essential.iter().map(|&b| (b, None)));
        sort_points(&mut self.points);
        let n0 = self.points.len();
        self.points.extend(d.h1.iter().map(|&b| (b, None)));
        sort_points(&mut self.points[n0..]);
        for (i, &(birth, death)) in self.points.iter().enumerate() {
            self.shard.append_value(shard);
            self.index.append_value(r.index as u32);
            self.variant.append_value(variant);
            self.scope.append_value(&sd.scope);
            self.dim.append_value(if i < n0 { 0 } else { 1 });
            self.birth.append_value(birth);
            self.death.append_option(death);
        }
        self.rows += self.points.len();
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        vec![
            Arc::new(self.shard.finish()),
            Arc::new(self.index.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.scope.finish()),
            Arc::new(self.dim.finish()),
            Arc::new(self.birth.finish()),
            Arc::new(self.death.finish()),
        ]
    }
}

#[derive(Default)]
struct SubgraphColumns {
    shard: StringBuilder,
    index: UInt32Builder,
    variant: StringBuilder,
    scope: StringBuilder,
    src: UInt64Builder,
    dst: UInt64Builder,
    layer_src: StringBuilder,
    layer_dst: StringBuilder,
    weight: Float32Builder,
    persistence: Float32Builder,
    rank: UInt32Builder,
    rows: usize,
    /// Scratch for ranking one diagram's pairs.
    ranked: Vec<H0Pair>,
}

impl SubgraphColumns {
    /// Appends the killing edges of the `top_k` most persistent finite H0 pairs, most persistent
    /// first (ties: larger birth, then smaller src, then smaller dst).
    fn push(
        &mut self,
        shard: &str,
        variant: &str,
        r: &SampleResult,
        sd: &ScopeDiagram,
        top_k: usize,
        layers: &[VertexLayer],
    ) {
        self.ranked.clear();
        self.ranked.extend_from_slice(&sd.diagram.h0);
        self.ranked.sort_by(|a, b| {
            b.persistence()
                .total_cmp(&a.persistence())
                .then(b.birth.total_cmp(&a.birth))
                .then(a.src.cmp(&b.src))
                .then(a.dst.cmp(&b.dst))
        });
        self.ranked.truncate(top_k);
        let name = |unit: u32| layer_of_unit(layers, unit).map_or("?", |l| l.name.as_str());
        for (rank, p) in self.ranked.iter().enumerate() {
            self.shard.append_value(shard);
            self.index.append_value(r.index as u32);
            self.variant.append_value(variant);
            self.scope.append_value(&sd.scope);
            self.src.append_value(p.src as u64);
            self.dst.append_value(p.dst as u64);
            self.layer_src.append_value(name(p.src));
            self.layer_dst.append_value(name(p.dst));
            self.weight.append_value(p.death);
            self.persistence.append_value(p.persistence());
            self.rank.append_value(rank as u32);
        }
        self.rows += self.ranked.len();
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        vec![
            Arc::new(self.shard.finish()),
            Arc::new(self.index.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.scope.finish()),
            Arc::new(self.src.finish()),
            Arc::new(self.dst.finish()),
            Arc::new(self.layer_src.finish()),
            Arc::new(self.layer_dst.finish()),
            Arc::new(self.weight.finish()),
            Arc::new(self.persistence.finish()),
            Arc::new(self.rank.finish()),
        ]
    }
}

fn sort_points(points: &mut [(f32, Option<f32>)]) {
    points.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then_with(|| match (a.1, b.1) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    });
}

/// A Parquet file being written under a hidden temporary name in its final folder; `close` then
/// `commit` (or `finish`, both at once) renames it, dropping it unfinished deletes it.
pub struct PendingFile {
    writer: ArrowWriter<File>,
    temp: NamedTempFile,
    final_path: PathBuf,
    schema: SchemaRef,
}

/// A complete, synced Parquet file still under its temporary name.
pub struct ClosedFile {
    temp: NamedTempFile,
    final_path: PathBuf,
}

impl PendingFile {
    pub fn create(
        dir: &Path,
        stem: &str,
        schema: SchemaRef,
        metadata: &[(String, String)],
    ) -> anyhow::Result<PendingFile> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create output folder {}: {e}; check output.dir and its permissions",
                dir.display()
            )
        })?;
        let temp = folder::temp_file(dir, stem, ".parquet.partial")?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_key_value_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        let writer = ArrowWriter::try_new(temp.reopen()?, schema.clone(), Some(props))?;
        Ok(PendingFile {
            writer,
            temp,
            final_path: dir.join(format!("{stem}.parquet")),
            schema,
        })
    }

    pub fn write(&mut self, columns: Vec<ArrayRef>) -> anyhow::Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Writes the footer (with `extra` metadata appended) and syncs the file; no rename yet.
    pub fn close(mut self, extra: &[(String, String)]) -> anyhow::Result<ClosedFile> {
        for (k, v) in extra {
            self.writer
                .append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
        self.writer.close().with_context(|| {
            format!(
                "cannot write {}; check free space",
                self.temp.path().display()
            )
        })?;
        self.temp
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot sync {}", self.temp.path().display()))?;
        Ok(ClosedFile {
            temp: self.temp,
            final_path: self.final_path,
        })
    }

    /// `close` and `commit`, then syncs the folder: for a file that stands alone.
    pub fn finish(self) -> anyhow::Result<OutputFile> {
        let file = self.close(&[])?.commit()?;
        folder::sync_dir(file.path.parent().unwrap_or(Path::new(".")))?;
        Ok(file)
    }
}

impl ClosedFile {
    /// Renames the file to its final name (refusing to replace a file actopo did not write). The
    /// caller syncs the folder.
    pub fn commit(self) -> anyhow::Result<OutputFile> {
        folder::persist(self.temp, &self.final_path)?;
        let bytes = std::fs::metadata(&self.final_path)?.len();
        Ok(OutputFile {
            path: self.final_path,
            bytes,
        })
    }
}

/// Rows per Arrow batch handed to the Parquet writer.
const FLUSH_ROWS: usize = 64 * 1024;

/// A (sample, variant) outcome as the writer receives it.
#[derive(Debug, Clone)]
pub enum Entry {
    Done(SampleResult),
    Failed {
        index: usize,
        variant: usize,
        stage: &'static str,
        error: String,
    },
}

impl Entry {
    fn index_variant(&self) -> (usize, usize) {
        match self {
            Entry::Done(r) => (r.index, r.variant),
            Entry::Failed { index, variant, .. } => (*index, *variant),
        }
    }
}

/// The outputs of one shard, filled in index order. Failed samples leave no rows in the result
/// tables and one row each in `failures/<stem>.parquet` (created only when needed).
pub struct ShardOutput {
    shard_name: String,
    stem: String,
    /// The shard's content hash (see `resume::ShardSource`), stamped at commit.
    source: String,
    layout: Arc<OutputLayout>,
    summary: Option<(PendingFile, SummaryColumns)>,
    diagrams: Option<(PendingFile, DiagramColumns)>,
    subgraphs: Option<(PendingFile, SubgraphColumns)>,
    failures: Vec<Failure>,
    /// Entries that arrived before their predecessors, by index * variants + variant.
    waiting: BTreeMap<usize, Entry>,
    next_key: usize,
}

impl ShardOutput {
    pub fn create(
        layout: Arc<OutputLayout>,
        shard_name: &str,
        stem: &str,
        source: &str,
    ) -> anyhow::Result<ShardOutput> {
        let open = |sub: &str, schema: SchemaRef| {
            PendingFile::create(&layout.dir.join(sub), stem, schema, &layout.metadata)
        };
        let summary = match layout.summary {
            true => Some((
                open("summary", summary_schema())?,
                SummaryColumns::default(),
            )),
            false => None,
        };
        let diagrams = match layout.diagrams {
            true => Some((
                open("diagrams", diagrams_schema())?,
                DiagramColumns::default(),
            )),
            false => None,
        };
        let subgraphs = match layout.subgraph_top_k {
            Some(_) => Some((
                open("subgraphs", subgraphs_schema())?,
                SubgraphColumns::default(),
            )),
            None => None,
        };
        Ok(ShardOutput {
            shard_name: shard_name.to_string(),
            stem: stem.to_string(),
            source: source.to_string(),
            layout,
            summary,
            diagrams,
            subgraphs,
            failures: Vec::new(),
            waiting: BTreeMap::new(),
            next_key: 0,
        })
    }

    /// Number of samples whose every variant is written (or recorded as failed).
    pub fn written(&self) -> usize {
        self.next_key / self.layout.variants.len()
    }

    /// Failed (sample, variant)s so far.
    pub fn failures(&self) -> usize {
        self.failures.len()
    }

    /// Takes an entry; writes it and every waiting successor once its turn comes.
    pub fn add(&mut self, entry: Entry) -> anyhow::Result<()> {
        let (index, variant) = entry.index_variant();
        self.waiting
            .insert(index * self.layout.variants.len() + variant, entry);
        while let Some(e) = self.waiting.remove(&self.next_key) {
            match e {
                Entry::Done(r) => self.append(&r)?,
                Entry::Failed {
                    index,
                    variant,
                    stage,
                    error,
                } => self.failures.push(Failure {
                    index: Some(index),
                    variant: Some(self.layout.variants[variant].clone()),
                    stage,
                    error,
                }),
            }
            self.next_key += 1;
        }
        Ok(())
    }

    fn append(&mut self, r: &SampleResult) -> anyhow::Result<()> {
        let variant = &self.layout.variants[r.variant];
        let shard = &self.shard_name;
        if let Some((file, cols)) = self.summary.as_mut() {
            for sd in &r.scopes {
                cols.push(shard, variant, r, &sd.scope, &Summary::of(&sd.diagram));
            }
            if cols.rows >= FLUSH_ROWS {
                file.write(cols.finish())?;
            }
        }
        if let Some((file, cols)) = self.diagrams.as_mut() {
            for sd in &r.scopes {
                cols.push(shard, variant, r, sd);
            }
            if cols.rows >= FLUSH_ROWS {
                file.write(cols.finish())?;
            }
        }
        if let (Some((file, cols)), Some(top_k)) =
            (self.subgraphs.as_mut(), self.layout.subgraph_top_k)
        {
            for sd in &r.scopes {
                cols.push(shard, variant, r, sd, top_k, &self.layout.vertex_layers);
            }
            if cols.rows >= FLUSH_ROWS {
                file.write(cols.finish())?;
            }
        }
        Ok(())
    }

    /// Writes the remaining rows, then commits the shard: every file is completed and synced
    /// under its temporary name first, the failures file of an earlier attempt is deleted when
    /// this one has none, and only then are the files renamed into place and their folders synced.
    /// A crash before the manifest says `done` leaves a shard the next run redoes.
    pub fn finish(mut self) -> anyhow::Result<Vec<OutputFile>> {
        anyhow::ensure!(
            self.waiting.is_empty(),
            "results past row {} never got their predecessors",
            self.next_key
        );
        let mut pending: Vec<(&str, PendingFile)> = Vec::new();
        if let Some((mut file, mut cols)) = self.summary.take() {
            if cols.rows > 0 {
                file.write(cols.finish())?;
            }
            pending.push(("summary", file));
        }
        if let Some((mut file, mut cols)) = self.diagrams.take() {
            if cols.rows > 0 {
                file.write(cols.finish())?;
            }
            pending.push(("diagrams", file));
        }
        if let Some((mut file, mut cols)) = self.subgraphs.take() {
            if cols.rows > 0 {
                file.write(cols.finish())?;
            }
            pending.push(("subgraphs", file));
        }
        if !self.failures.is_empty() {
            let mut file = PendingFile::create(
                &self.layout.dir.join("failures"),
                &self.stem,
                failures_schema(),
                &self.layout.metadata,
            )?;
            file.write(
                failures_batch(&self.shard_name, &self.failures)?
                    .columns()
                    .to_vec(),
            )?;
            pending.push(("failures", file));
        }
        let tables: Vec<&str> = pending.iter().map(|(t, _)| *t).collect();
        let meta = commit_metadata(&self.layout, &self.source, &tables);
        let closed = pending
            .into_iter()
            .map(|(table, file)| Ok((table, file.close(&meta)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !tables.contains(&"failures") {
            folder::remove_ours(&table_path(&self.layout.dir, "failures", &self.stem))?;
        }
        let mut files = Vec::new();
        for (_, file) in closed {
            files.push(file.commit()?);
            folder::fault_point("shard-file-renamed");
        }
        for table in tables.iter().chain(Some(&"failures")) {
            let dir = self.layout.dir.join(table);
            if dir.is_dir() {
                folder::sync_dir(&dir)?;
            }
        }
        Ok(files)
    }
}
