//! Activation graphs, built sparsely straight from layer geometry (definition: docs/graph.md).
//!
//! - `options`: the `[graph]` settings that change which graph is built;
//! - `bounds`: unit numbering (vertex layers) and edge bounds, from the spec's shapes alone;
//! - `units`: the unit map: which unit each value a graph op reads belongs to, traced through
//!   value and shape ops (flatten, reshape, cat);
//! - `plan`: a model's graph ops with their weights, per-sample input checks, and edge dispatch;
//! - `fold`: the weights on conv and linear edges, with a following batch norm folded in;
//! - `sink`: the edge protocol: `Edge`, `EdgeSink` (where edges go, in blocks) and `EdgeSource`
//!   (a graph that can be enumerated again and again);
//! - `sample_graph`: one scope's graph of one sample, the `EdgeSource` persistence reads;
//! - `threshold`: `graph.threshold`: each op's cut for one sample, and the sink that applies it;
//! - `reference_cut`: the reference code's cuts (`reference_percentile`) and numpy's percentile;
//! - `sampling`: strided samples of edge weights (to place persistence's split weights);
//! - `geometry`: the op shapes and the valid-tap ranges that let kernels skip padding;
//! - `kernels`: the edge enumeration loops for dense, conv, pool and add ops.
//!
//! A `GraphPlan` is made once per model; a worker then enumerates each sample's graph into sinks
//! that may keep only some edges, reusing its buffers across thousands of samples.

mod bounds;
mod errors;
mod fold;
mod geometry;
mod kernels;
mod options;
mod plan;
mod reference_cut;
mod sample_graph;
mod sampling;
mod sink;
mod threshold;
mod units;

pub(crate) use bounds::layer_of_unit;
pub use bounds::{GraphBounds, VertexLayer};
pub use errors::{GraphError, PlanError};
pub use options::{BatchNormFolding, GraphOptions, MaxPoolEdges, VertexBirth};
pub use plan::{GraphOp, GraphPlan};
pub use sample_graph::SampleGraph;
pub use sampling::WeightSample;
pub use sink::{Edge, EdgeSink, EdgeSource};
pub(crate) use sink::{NO_EDGE, NO_LABEL};
pub use threshold::{percentile_cut, Cuts, EdgeThreshold, OpCuts};
