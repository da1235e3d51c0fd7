//! One sample's diagrams, scope by scope, with the buffers a worker thread keeps across samples.

use super::graph::{EdgeThreshold, GraphError, GraphPlan, OpCuts, SampleGraph};
use super::persistence::{Diagram, HomologyOptions, Persistence};

/// A kind of scope (`graph.scopes`): the whole network as one graph, or one graph per graph op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Network,
    Layers,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 2] = [ScopeKind::Network, ScopeKind::Layers];

    /// The name in the config and, for `Network`, the `scope` column's value.
    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::Network => "network",
            ScopeKind::Layers => "layers",
        }
    }
}

impl std::str::FromStr for ScopeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ScopeKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| format!("\"{s}\": use \"network\" and/or \"layers\""))
    }
}

/// Which scopes to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    pub network: bool,
    pub layers: bool,
}

impl Scopes {
    /// The set of the given kinds.
    pub fn of(kinds: &[ScopeKind]) -> Scopes {
        Scopes {
            network: kinds.contains(&ScopeKind::Network),
            layers: kinds.contains(&ScopeKind::Layers),
        }
    }
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
    persistence: Persistence,
    /// Each graph op's cut for the current sample (`graph.threshold`).
    cuts: OpCuts,
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
        let n_scopes = scopes.network as usize + if scopes.layers { plan.ops.len() } else { 0 };
        out.resize_with(n_scopes, ScopeDiagram::default);
        let mut slot = 0;
        // Each op's cut, once for all scopes and passes (inputs checked first).
        let cuts = match plan.threshold() {
            EdgeThreshold::None => None,
            threshold => {
                SampleGraph::network(plan, inputs)?;
                self.cuts.compute(plan, inputs, threshold)
            }
        };
        // Graphs are enumerated a few times rather than stored (see `compute_from`).
        if scopes.network {
            let graph = SampleGraph::network(plan, inputs)?.with_cuts(cuts);
            out[0].scope.clear();
            out[0].scope.push_str(ScopeKind::Network.name());
            self.persistence
                .compute_from(&graph, plan.n_units, homology, &mut out[0].diagram);
            slot = 1;
        }
        if scopes.layers {
            for (i, op) in plan.ops.iter().enumerate() {
                let graph = SampleGraph::layer(plan, inputs, i)?.with_cuts(cuts);
                let target = &mut out[slot];
                target.scope.clear();
                target.scope.push_str(&op.name);
                self.persistence
                    .compute_from(&graph, plan.n_units, homology, &mut target.diagram);
                slot += 1;
            }
        }
        Ok(())
    }
}
