//! actopo: persistent homology of neural-network activation graphs over whole datasets.
//!
//! One module per pipeline stage:
//! - `config`: the layered run configuration (figment);
//! - `data`: shard listing and decoding (Parquet, IDX, npz);
//! - `forward`: the forward pass and gradient attacks, the only module that uses tch;
//! - `perturb`: attack definitions, seeded noise, norms (no tch);
//! - `topology`: activation graphs and persistence, pure Rust;
//! - `output`: the output folder: tables written in index order with atomic renames, the
//!   manifest (the run record), resume (what is done), and what actopo may touch there (never an
//!   input, never a file it did not write, no links followed); see `docs/output-schema.md`;
//! - `pipeline`: the stages wired together with bounded channels, and their progress bars
//!   (`docs/architecture.md`);
//! - `analysis`: `actopo analyze` over a run's outputs (persistent subgraphs, topological uncertainty);
//! - `plot`, `report`: `actopo plot` (SVG and PNG figures) and `actopo report` (one HTML page).
//!
//! `spec`, `weights` and `model` describe the network; like `topology` they are free of tch.
//! `limits` sizes a run from the spec's shapes and checks it fits in memory before it starts.

pub mod analysis;
pub mod config;
pub mod data;
pub mod forward;
pub mod limits;
pub mod model;
pub mod output;
pub mod perturb;
pub mod pipeline;
pub mod plot;
pub mod report;
pub mod spec;
mod tagged;
pub mod topology;
pub mod weights;
