//! The output folder: per shard, `summary/<stem>.parquet`, `diagrams/<stem>.parquet`,
//! `subgraphs/<stem>.parquet` (when asked) and `failures/<stem>.parquet` (when something failed),
//! zstd-compressed, with the graph and persistence conventions in their key-value metadata; and
//! the manifest that records the run. The contract for readers is `docs/output-schema.md`.
//!
//! - `tables`: the tables and their columns (declared once, with `columns::table_columns!`), and
//!   how a sample's results become rows;
//! - `shard`: one shard's files, filled in index order and committed together;
//! - `pending`: a file written under a temporary name, renamed only once complete;
//! - `manifest`: the run record and its shard records; `identity`: what makes two runs the
//!   same; `fingerprint`: content hashes of the inputs; `resume`: what a rerun may skip;
//! - `folder`: what actopo may touch in its output folder (never an input, never a file it did
//!   not write, no links followed) and durable renames; `lock`: the run lock; `fault`: the crash
//!   tests' fault points.

mod columns;
pub(crate) mod fault;
pub(crate) mod fingerprint;
pub(crate) mod folder;
pub(crate) mod identity;
pub(crate) mod lock;
pub(crate) mod manifest;
mod pending;
pub(crate) mod resume;
mod shard;
mod tables;

pub(crate) use fault::{fault_point, FaultPoint};
pub use folder::write_replacing;
pub use manifest::OutputFile;
pub(crate) use pending::PendingFile;
pub(crate) use shard::write_shard_failure;
pub use shard::{OutputLayout, SampleOutcome, SampleResult, ShardOutput};
pub use tables::{diagrams_schema, subgraphs_schema, summary_schema, FailureStage};
pub(crate) use tables::{Failure, Table};
