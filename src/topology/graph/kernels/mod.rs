//! The edge enumeration loops, one file per op family. Each hands its edges to a sink through
//! `Blocks` (dropping zero weights) in a fixed order: the order persistence relies on to meet tied
//! edges the same way in every pass. They use what the sink says it does not want to skip edges
//! unweighed (`EdgeSink::connected_labels`, `EdgeSink::keeps_heavier_than`).

mod add;
mod columns;
mod conv;
mod dense;
mod heavy;
mod pool;
mod vector;

pub(super) use add::add_edges;
pub(super) use columns::DenseColumns;
pub(super) use conv::conv_edges;
pub(super) use dense::{linear_edges, mapped_linear_edges};
pub(super) use pool::{adaptive_pool_edges, maxpool_argmax_edges, pool_edges};
