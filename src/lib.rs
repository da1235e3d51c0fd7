//! actopo: persistent homology of neural-network activation graphs over whole datasets.
//!
//! One module per pipeline stage:
//! - `config`: the layered run configuration (figment);
//! - `data`: shard listing and decoding (Parquet, IDX, npz);
//! - `forward`: the forward pass and gradient attacks, the only module that uses tch;
//! - `perturb`: attack definitions, seeded noise, norms (no tch);
//! - `topology`: activation graphs and persistence, pure Rust;
//! - `output`: Parquet writing in index order with atomic renames; `manifest`: the run record;
//! - `outdir`: what actopo may touch in its output folder (never an input, never a file it did
//!   not write, no links followed), durable renames and the run lock; `resume`: what is done;
//! - `pipeline`: the stages wired together with bounded channels; `progress`: indicatif bars;
//! - `analysis`: `actopo analyze` over a run's outputs (persistent subgraphs, topological uncertainty).
//!
//! `spec`, `weights` and `model` describe the network; like `topology` they are free of tch.
//! `limits` sizes a run from the spec's shapes and checks it fits in memory before it starts.

pub mod analysis;
pub mod config;
pub mod data;
pub mod forward;
pub mod limits;
pub mod manifest;
pub mod model;
pub mod outdir;
pub mod output;
pub mod perturb;
pub mod pipeline;
pub mod progress;
pub mod resume;
pub mod spec;
mod tagged;
pub mod topology;
pub mod weights;
