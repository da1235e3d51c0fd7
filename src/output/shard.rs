//! One shard's output files. A `ShardOutput` takes sample outcomes in any order, holds the early
//! ones back, and appends rows strictly by index, so files are identical whatever the worker
//! count. A shard's files are renamed into place together by `finish`, each stamped with the
//! commit metadata that lets a lost manifest be rebuilt; dropping an unfinished `ShardOutput`
//! deletes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::columns::ColumnBuilders;
use super::fault::{fault_point, FaultPoint};
use super::folder;
use super::manifest::OutputFile;
use super::pending::PendingFile;
use super::tables::{
    DiagramColumns, Failure, FailureColumns, FailureStage, RowKey, SubgraphColumns, SummaryColumns,
    Table,
};
use crate::perturb::AttackStats;
use crate::topology::{H0Pair, ScopeDiagram, VertexLayer};

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
pub(crate) const RUN_IDENTITY_KEY: &str = "actopo.run_identity_sha256";
pub(crate) const SOURCE_KEY: &str = "actopo.source_sha256";
pub(crate) const SHARD_FILES_KEY: &str = "actopo.shard_files";

/// What each file of one shard's commit carries: the run, the shard's content, and the list of
/// tables written together, so a rebuild can tell a complete commit from a torn one.
fn commit_metadata(layout: &OutputLayout, source: &str, tables: &[Table]) -> Vec<(String, String)> {
    let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
    vec![
        (RUN_IDENTITY_KEY.into(), layout.run_identity.clone()),
        (SOURCE_KEY.into(), source.to_string()),
        (SHARD_FILES_KEY.into(), names.join(",")),
    ]
}

/// One (sample, variant)'s results, as the workers send them (the shard travels with the message).
#[derive(Debug, Clone)]
pub struct SampleResult {
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

/// What the writer receives for one (sample, variant): its results, or why it has none.
#[derive(Debug, Clone)]
pub enum SampleOutcome {
    Done(SampleResult),
    Failed {
        index: usize,
        variant: usize,
        stage: FailureStage,
        error: String,
    },
}

impl SampleOutcome {
    fn index_variant(&self) -> (usize, usize) {
        match self {
            SampleOutcome::Done(r) => (r.index, r.variant),
            SampleOutcome::Failed { index, variant, .. } => (*index, *variant),
        }
    }
}

/// Rows per Arrow batch handed to the Parquet writer.
const FLUSH_ROWS: usize = 64 * 1024;

/// One table of a shard being written: its pending file and the rows not yet handed to it.
struct TableWriter<C> {
    file: PendingFile,
    columns: C,
}

impl<C: ColumnBuilders> TableWriter<C> {
    fn create(layout: &OutputLayout, stem: &str) -> anyhow::Result<Self> {
        let dir = C::TABLE.dir(&layout.dir);
        Ok(TableWriter {
            file: PendingFile::create(&dir, stem, C::schema(), &layout.metadata)?,
            columns: C::default(),
        })
    }

    /// Hands the rows over once there are `FLUSH_ROWS` of them (batch sizes shape the bytes).
    fn flush_full(&mut self) -> anyhow::Result<()> {
        if self.columns.rows() >= FLUSH_ROWS {
            self.file.write(self.columns.finish())?;
        }
        Ok(())
    }

    /// Hands the remaining rows over; the file is ready to close.
    fn into_file(mut self) -> anyhow::Result<(Table, PendingFile)> {
        if self.columns.rows() > 0 {
            self.file.write(self.columns.finish())?;
        }
        Ok((C::TABLE, self.file))
    }
}

/// The `failures/` file of a shard, with one row per failure.
fn failures_file(
    layout: &OutputLayout,
    shard: &str,
    stem: &str,
    failures: &[Failure],
) -> anyhow::Result<(Table, PendingFile)> {
    let mut table = TableWriter::<FailureColumns>::create(layout, stem)?;
    for f in failures {
        table.columns.push_failure(shard, f);
    }
    table.into_file()
}

/// Writes `failures/<stem>.parquet` for a shard that could not be processed at all, after deleting
/// whatever result tables an earlier attempt left for it, so the shard's files agree.
pub(crate) fn write_shard_failure(
    layout: &OutputLayout,
    shard: &str,
    stem: &str,
    source: &str,
    failure: Failure,
) -> anyhow::Result<OutputFile> {
    for table in [Table::Summary, Table::Diagrams, Table::Subgraphs] {
        if folder::remove_ours(&table.path(&layout.dir, stem))? {
            folder::sync_dir(&table.dir(&layout.dir))?;
        }
    }
    let (table, file) = failures_file(layout, shard, stem, &[failure])?;
    let out = file
        .close(&commit_metadata(layout, source, &[table]))?
        .commit()?;
    folder::sync_dir(&table.dir(&layout.dir))?;
    Ok(out)
}

/// Scratch space for turning a sample into rows, kept between samples.
#[derive(Default)]
struct RowScratch {
    points: Vec<(f32, Option<f32>)>,
    ranked: Vec<H0Pair>,
}

/// The outputs of one shard, filled in index order. Failed samples leave no rows in the result
/// tables and one row each in `failures/<stem>.parquet` (created only when needed).
pub struct ShardOutput {
    shard_name: String,
    stem: String,
    /// The shard's content hash (see `fingerprint::SourceFingerprint`), stamped at commit.
    source: String,
    layout: Arc<OutputLayout>,
    summary: Option<TableWriter<SummaryColumns>>,
    diagrams: Option<TableWriter<DiagramColumns>>,
    subgraphs: Option<TableWriter<SubgraphColumns>>,
    scratch: RowScratch,
    failures: Vec<Failure>,
    /// Outcomes that arrived before their predecessors, by index * variants + variant.
    waiting: BTreeMap<usize, SampleOutcome>,
    next_key: usize,
}

impl ShardOutput {
    pub fn create(
        layout: Arc<OutputLayout>,
        shard_name: &str,
        stem: &str,
        source: &str,
    ) -> anyhow::Result<ShardOutput> {
        let summary = layout
            .summary
            .then(|| TableWriter::create(&layout, stem))
            .transpose()?;
        let diagrams = layout
            .diagrams
            .then(|| TableWriter::create(&layout, stem))
            .transpose()?;
        let subgraphs = layout
            .subgraph_top_k
            .map(|_| TableWriter::create(&layout, stem))
            .transpose()?;
        Ok(ShardOutput {
            shard_name: shard_name.to_string(),
            stem: stem.to_string(),
            source: source.to_string(),
            layout,
            summary,
            diagrams,
            subgraphs,
            scratch: RowScratch::default(),
            failures: Vec::new(),
            waiting: BTreeMap::new(),
            next_key: 0,
        })
    }

    /// Number of samples whose every variant is written (or recorded as failed).
    pub(crate) fn written(&self) -> usize {
        self.next_key / self.layout.variants.len()
    }

    /// Failed (sample, variant)s so far.
    pub(crate) fn failures(&self) -> usize {
        self.failures.len()
    }

    /// Takes an outcome; writes it and every waiting successor once its turn comes.
    pub fn add(&mut self, outcome: SampleOutcome) -> anyhow::Result<()> {
        let (index, variant) = outcome.index_variant();
        self.waiting
            .insert(index * self.layout.variants.len() + variant, outcome);
        while let Some(next) = self.waiting.remove(&self.next_key) {
            match next {
                SampleOutcome::Done(r) => self.append(&r)?,
                SampleOutcome::Failed {
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
        let key = RowKey {
            shard: &self.shard_name,
            variant: &self.layout.variants[r.variant],
            sample: r,
        };
        if let Some(table) = self.summary.as_mut() {
            table.columns.push_sample(&key);
            table.flush_full()?;
        }
        if let Some(table) = self.diagrams.as_mut() {
            for sd in &r.scopes {
                table.columns.push_scope(&key, sd, &mut self.scratch.points);
            }
            table.flush_full()?;
        }
        if let (Some(table), Some(top_k)) = (self.subgraphs.as_mut(), self.layout.subgraph_top_k) {
            let layers = &self.layout.vertex_layers;
            for sd in &r.scopes {
                table
                    .columns
                    .push_scope(&key, sd, top_k, layers, &mut self.scratch.ranked);
            }
            table.flush_full()?;
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
        let mut pending = Vec::new();
        if let Some(table) = self.summary.take() {
            pending.push(table.into_file()?);
        }
        if let Some(table) = self.diagrams.take() {
            pending.push(table.into_file()?);
        }
        if let Some(table) = self.subgraphs.take() {
            pending.push(table.into_file()?);
        }
        if !self.failures.is_empty() {
            let failures = &self.failures;
            let file = failures_file(&self.layout, &self.shard_name, &self.stem, failures)?;
            pending.push(file);
        }
        self.commit(pending)
    }

    /// Closes every file, then renames them into place and syncs their folders.
    fn commit(&self, pending: Vec<(Table, PendingFile)>) -> anyhow::Result<Vec<OutputFile>> {
        let dir = &self.layout.dir;
        let tables: Vec<Table> = pending.iter().map(|(t, _)| *t).collect();
        let meta = commit_metadata(&self.layout, &self.source, &tables);
        let closed = pending
            .into_iter()
            .map(|(_, file)| file.close(&meta))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !tables.contains(&Table::Failures) {
            folder::remove_ours(&Table::Failures.path(dir, &self.stem))?;
        }
        let mut files = Vec::new();
        for file in closed {
            files.push(file.commit()?);
            fault_point(FaultPoint::ShardFileRenamed);
        }
        for table in tables.iter().chain(Some(&Table::Failures)) {
            let table_dir = table.dir(dir);
            if table_dir.is_dir() {
                folder::sync_dir(&table_dir)?;
            }
        }
        Ok(files)
    }
}
