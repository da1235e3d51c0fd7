//! The tables a shard writes, each one's columns declared once (`table_columns!`), and how a
//! sample's results become their rows: the order of diagram points, the ranking of subgraph
//! edges. The contract for readers is `docs/output-schema.md`; a test below keeps it in step
//! with these declarations.

use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;

use super::columns::{table_columns, ColumnBuilders};
use super::shard::SampleResult;
use crate::topology::graph::layer_of_unit;
use crate::topology::{H0Pair, ScopeDiagram, Summary, VertexLayer};

/// A table written per shard, as `<output.dir>/<table>/<stem>.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Summary,
    Diagrams,
    Subgraphs,
    Failures,
}

impl Table {
    /// Every table, in the order a shard's files are committed.
    pub(crate) const ALL: [Table; 4] = [
        Table::Summary,
        Table::Diagrams,
        Table::Subgraphs,
        Table::Failures,
    ];

    /// The folder name, also the name listed in the `actopo.shard_files` metadata.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Summary => "summary",
            Table::Diagrams => "diagrams",
            Table::Subgraphs => "subgraphs",
            Table::Failures => "failures",
        }
    }

    /// `dir/<table>`.
    pub(crate) fn dir(self, dir: &Path) -> PathBuf {
        dir.join(self.name())
    }

    /// `dir/<table>/<stem>.parquet`.
    pub(crate) fn path(self, dir: &Path, stem: &str) -> PathBuf {
        self.dir(dir).join(format!("{stem}.parquet"))
    }

    #[cfg(test)]
    fn schema(self) -> SchemaRef {
        match self {
            Table::Summary => SummaryColumns::schema(),
            Table::Diagrams => DiagramColumns::schema(),
            Table::Subgraphs => SubgraphColumns::schema(),
            Table::Failures => FailureColumns::schema(),
        }
    }
}

table_columns! {
    /// One row of `summary/`: one per (sample, variant, scope).
    table Table::Summary, row SummaryRow<'a>, builders SummaryColumns {
        shard: required Utf8,
        index: required UInt32,
        label: nullable Int64,
        pred: required Int64,
        confidence: required Float32,
        variant: required Utf8,
        scope: required Utf8,
        n_vertices: required UInt64,
        n_edges: required UInt64,
        h0_pairs: required UInt64,
        h0_essential: required UInt64,
        h0_total_persistence: required Float64,
        h0_max_persistence: required Float64,
        h0_entropy: required Float64,
        h1_count: required UInt64,
        attack_success: nullable Boolean,
        perturbation_linf: nullable Float32,
        perturbation_l2: nullable Float32,
    }
}

table_columns! {
    /// One row of `diagrams/`: one per diagram point.
    table Table::Diagrams, row DiagramRow<'a>, builders DiagramColumns {
        shard: required Utf8,
        index: required UInt32,
        variant: required Utf8,
        scope: required Utf8,
        dim: required UInt8,
        birth: required Float32,
        death: nullable Float32,
    }
}

table_columns! {
    /// One row of `subgraphs/`: the killing edge of one of the most persistent H0 pairs.
    table Table::Subgraphs, row SubgraphRow<'a>, builders SubgraphColumns {
        shard: required Utf8,
        index: required UInt32,
        variant: required Utf8,
        scope: required Utf8,
        src: required UInt64,
        dst: required UInt64,
        layer_src: required Utf8,
        layer_dst: required Utf8,
        weight: required Float32,
        persistence: required Float32,
        rank: required UInt32,
    }
}

table_columns! {
    /// One row of `failures/`: a failed (sample, variant), or a whole shard (null index).
    table Table::Failures, row FailureRow<'a>, builders FailureColumns {
        shard: required Utf8,
        index: nullable UInt32,
        variant: nullable Utf8,
        stage: required Utf8,
        error: required Utf8,
    }
}

/// The schema of `summary/` files.
pub fn summary_schema() -> SchemaRef {
    SummaryColumns::schema()
}

/// The schema of `diagrams/` files.
pub fn diagrams_schema() -> SchemaRef {
    DiagramColumns::schema()
}

/// The schema of `subgraphs/` files.
pub fn subgraphs_schema() -> SchemaRef {
    SubgraphColumns::schema()
}

/// Where a sample or a shard failed: the `stage` column of `failures/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStage {
    /// Reading or decoding the input, or inputs outside `data.clip` before an attack.
    Read,
    /// The forward pass or an attack's gradient steps.
    Forward,
    /// Building the activation graph or its persistence (e.g. NaN or infinite activations).
    Topology,
}

impl FailureStage {
    /// The value written in the `stage` column.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FailureStage::Read => "read",
            FailureStage::Forward => "forward",
            FailureStage::Topology => "topology",
        }
    }
}

/// One failed (sample, variant), or a whole shard when `index` is None.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) index: Option<usize>,
    pub(crate) variant: Option<String>,
    pub(crate) stage: FailureStage,
    pub(crate) error: String,
}

/// The columns every result row of one (sample, variant) starts with.
pub(crate) struct RowKey<'a> {
    pub(crate) shard: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) sample: &'a SampleResult,
}

impl SummaryColumns {
    /// Appends one row per scope of the sample.
    pub(crate) fn push_sample(&mut self, key: &RowKey) {
        let r = key.sample;
        for sd in &r.scopes {
            let s = Summary::of(&sd.diagram);
            self.push(SummaryRow {
                shard: key.shard,
                index: r.index as u32,
                label: r.label,
                pred: r.pred,
                confidence: r.confidence,
                variant: key.variant,
                scope: &sd.scope,
                n_vertices: s.n_vertices,
                n_edges: s.n_edges,
                h0_pairs: s.h0_pairs,
                h0_essential: s.h0_essential,
                h0_total_persistence: s.h0_total_persistence,
                h0_max_persistence: s.h0_max_persistence,
                h0_entropy: s.h0_entropy,
                h1_count: s.h1_count,
                attack_success: r.attack.map(|a| a.success),
                perturbation_linf: r.attack.map(|a| a.linf),
                perturbation_l2: r.attack.map(|a| a.l2),
            });
        }
    }
}

impl DiagramColumns {
    /// Appends one scope's diagram: dim 0 then dim 1; within a dim birth descending, then death
    /// descending with essential classes (null death) last. `points` is scratch space.
    pub(crate) fn push_scope(
        &mut self,
        key: &RowKey,
        sd: &ScopeDiagram,
        points: &mut Vec<(f32, Option<f32>)>,
    ) {
        let d = &sd.diagram;
        points.clear();
        points.extend(d.h0.iter().map(|p| (p.birth, Some(p.death))));
        points.extend(d.h0_essential.iter().map(|&b| (b, None)));
        sort_points(points);
        let n0 = points.len();
        points.extend(d.h1.iter().map(|&b| (b, None)));
        sort_points(&mut points[n0..]);
        for (i, &(birth, death)) in points.iter().enumerate() {
            self.push(DiagramRow {
                shard: key.shard,
                index: key.sample.index as u32,
                variant: key.variant,
                scope: &sd.scope,
                dim: if i < n0 { 0 } else { 1 },
                birth,
                death,
            });
        }
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

impl SubgraphColumns {
    /// Appends the killing edges of the `top_k` most persistent finite H0 pairs, most persistent
    /// first (ties: larger birth, then smaller src, then smaller dst). `ranked` is scratch space.
    pub(crate) fn push_scope(
        &mut self,
        key: &RowKey,
        sd: &ScopeDiagram,
        top_k: usize,
        layers: &[VertexLayer],
        ranked: &mut Vec<H0Pair>,
    ) {
        ranked.clear();
        ranked.extend_from_slice(&sd.diagram.h0);
        ranked.sort_by(|a, b| {
            b.persistence()
                .total_cmp(&a.persistence())
                .then(b.birth.total_cmp(&a.birth))
                .then(a.src.cmp(&b.src))
                .then(a.dst.cmp(&b.dst))
        });
        ranked.truncate(top_k);
        let name = |unit: u32| layer_of_unit(layers, unit).map_or("?", |l| l.name.as_str());
        for (rank, p) in ranked.iter().enumerate() {
            self.push(SubgraphRow {
                shard: key.shard,
                index: key.sample.index as u32,
                variant: key.variant,
                scope: &sd.scope,
                src: p.src as u64,
                dst: p.dst as u64,
                layer_src: name(p.src),
                layer_dst: name(p.dst),
                weight: p.death,
                persistence: p.persistence(),
                rank: rank as u32,
            });
        }
    }
}

impl FailureColumns {
    pub(crate) fn push_failure(&mut self, shard: &str, f: &Failure) {
        self.push(FailureRow {
            shard,
            index: f.index.map(|i| i as u32),
            variant: f.variant.as_deref(),
            stage: f.stage.name(),
            error: &f.error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the first Markdown table under the `## ` heading that names `<table>/`:
    /// (column, Arrow type, nullable).
    fn documented_columns(doc: &str, table: Table) -> Vec<(String, String, String)> {
        let heading = format!("`{}/", table.name());
        let section = doc
            .split("\n## ")
            .find(|s| s.lines().next().is_some_and(|h| h.contains(&heading)))
            .unwrap_or_else(|| panic!("docs/output-schema.md has no `## ` section for {heading}"));
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // header and separator
            .map(|l| {
                let cells: Vec<String> = l
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().trim_matches('`').to_string())
                    .collect();
                (cells[0].clone(), cells[1].clone(), cells[2].clone())
            })
            .collect()
    }

    #[test]
    fn the_schema_doc_lists_every_declared_column_with_its_type() {
        let doc = include_str!("../../docs/output-schema.md");
        for table in Table::ALL {
            let declared: Vec<(String, String, String)> = table
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    let null = if f.is_nullable() { "yes" } else { "no" };
                    (
                        f.name().clone(),
                        format!("{:?}", f.data_type()),
                        null.into(),
                    )
                })
                .collect();
            assert_eq!(
                documented_columns(doc, table),
                declared,
                "docs/output-schema.md, table `{}`: (column, Arrow type, nullable) rows must match the declaration in src/output/tables.rs, in order",
                table.name()
            );
        }
    }

    #[test]
    fn pushed_rows_finish_as_arrays_of_the_declared_types() {
        let mut c = FailureColumns::default();
        let failure = Failure {
            index: None,
            variant: None,
            stage: FailureStage::Read,
            error: "bad".into(),
        };
        c.push_failure("s", &failure);
        assert_eq!(c.rows(), 1);
        let batch = arrow::record_batch::RecordBatch::try_new(FailureColumns::schema(), c.finish())
            .unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(c.rows(), 0);
    }
}
