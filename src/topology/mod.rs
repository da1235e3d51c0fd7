//! The topology core: activation graphs and their persistence, in pure Rust (no tch).
//!
//! - `graph`: unit numbering and sparse edge enumeration for linear, conv and pool layers;
//! - `persistence`: radix sort + union-find superlevel persistence (H0 pairs with their killing
//!   edges, essential H0, H1);
//! - `summary`: the per-diagram statistics written to the summary table.
//!
//! `Workspace` ties them together for one sample and owns every buffer, so a worker thread that
//! keeps one `Workspace` allocates nothing per sample once warmed up.

pub mod graph;
pub mod persistence;
pub mod summary;

pub use graph::{
    Edge, GraphError, GraphOptions, GraphPlan, MaxPoolEdges, VertexBirth, VertexLayer,
};
pub use persistence::{Diagram, H0Pair, HomologyOptions, Persistence};
pub use summary::Summary;

use std::ops::Range;

/// Which scopes to compute (design.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    pub network: bool,
    pub layers: bool,
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes {
            network: true,
            layers: false,
        }
    }
}

/// The diagram of one scope of one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeDiagram {
    /// "network", or a graph op's layer name.
    pub scope: String,
    pub diagram: Diagram,
}

/// Per-thread buffers for computing a sample's diagrams.
#[derive(Debug, Default)]
pub struct Workspace {
    edges: Vec<Edge>,
    layer_edges: Vec<Edge>,
    segments: Vec<Range<usize>>,
    persistence: Persistence,
}

impl Workspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes the requested scopes for one sample. `inputs[i]` is the input activation of graph
    /// op `i`. `out` is resized to the number of scopes (network first, then layers in model order)
    /// and its diagrams' buffers are reused.
    pub fn run(
        &mut self,
        plan: &GraphPlan,
        inputs: &[&[f32]],
        scopes: Scopes,
        homology: HomologyOptions,
        out: &mut Vec<ScopeDiagram>,
    ) -> Result<(), GraphError> {
        self.edges.clear();
        // Reserve the bound once: no reallocation while edges are enumerated (memory that is
        // reserved but never written costs nothing on Linux).
        if self.edges.capacity() < plan.max_edges() {
            self.edges.reserve(plan.max_edges());
        }
        plan.network_edges(inputs, &mut self.edges, &mut self.segments)?;
        let n_scopes = scopes.network as usize + if scopes.layers { plan.ops.len() } else { 0 };
        out.resize_with(n_scopes, ScopeDiagram::default);
        let mut slot = 0;
        if scopes.network {
            out[0].scope.clear();
            out[0].scope.push_str("network");
            slot = 1;
        }
        if scopes.layers {
            for (op, range) in plan.ops.iter().zip(&self.segments) {
                self.layer_edges.clear();
                self.layer_edges
                    .extend_from_slice(&self.edges[range.clone()]);
                let target = &mut out[slot];
                target.scope.clear();
                target.scope.push_str(&op.name);
                self.persistence.compute(
                    &mut self.layer_edges,
                    plan.n_units,
                    homology,
                    &mut target.diagram,
                );
                slot += 1;
            }
        }
        if scopes.network {
            self.persistence
                .compute(&mut self.edges, plan.n_units, homology, &mut out[0].diagram);
        }
        Ok(())
    }
}
