//! The `[graph]` settings that change which graph is built (docs/graph.md).

use std::fmt;
use std::str::FromStr;

use super::threshold::EdgeThreshold;

/// Which units of a max-pool window get an edge to the pooled unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxPoolEdges {
    /// Every unit in the window (the reference code's rule).
    #[default]
    All,
    /// Only the unit PyTorch's max pool picks (the first maximum in window order).
    Argmax,
}

/// How a vertex's filtration value is chosen. Only the reference code's rule exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VertexBirth {
    /// The largest weight among the vertex's incident edges.
    #[default]
    MaxIncident,
}

impl fmt::Display for MaxPoolEdges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaxPoolEdges::All => "all",
            MaxPoolEdges::Argmax => "argmax",
        })
    }
}

impl FromStr for MaxPoolEdges {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(MaxPoolEdges::All),
            "argmax" => Ok(MaxPoolEdges::Argmax),
            _ => Err(format!(
                "`{s}` is not a max-pool edge rule; use all or argmax"
            )),
        }
    }
}

/// Whether a batch norm that can be folded into the conv or linear layer before it is folded
/// (`Network::fold_target`): its scale then multiplies that layer's weights before edges are
/// weighed. The forward pass is the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormFolding {
    /// W' = W * gamma / sqrt(running_var + eps), per output channel (f32).
    #[default]
    Fold,
    /// Never fold: every batch norm is a value op and edges carry the raw weights.
    Values,
}

impl fmt::Display for BatchNormFolding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BatchNormFolding::Fold => "fold",
            BatchNormFolding::Values => "values",
        })
    }
}

impl FromStr for BatchNormFolding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fold" => Ok(BatchNormFolding::Fold),
            "values" => Ok(BatchNormFolding::Values),
            _ => Err(format!(
                "`{s}` is not a batch-norm rule; use fold (into the conv or linear before it) or values (never fold)"
            )),
        }
    }
}

impl fmt::Display for VertexBirth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("max_incident")
    }
}

/// The `[graph]` settings that change which graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphOptions {
    pub include_input: bool,
    pub maxpool_edges: MaxPoolEdges,
    pub vertex_birth: VertexBirth,
    pub batch_norm: BatchNormFolding,
    /// Which edges of each graph op are kept (`graph.threshold`).
    pub threshold: EdgeThreshold,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            include_input: true,
            maxpool_edges: MaxPoolEdges::All,
            vertex_birth: VertexBirth::MaxIncident,
            batch_norm: BatchNormFolding::Fold,
            threshold: EdgeThreshold::None,
        }
    }
}
