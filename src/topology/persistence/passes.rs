//! `compute_from`'s passes: the graph is enumerated once per band of weights, heaviest band
//! first, and each pass keeps only the edges that may still merge components (docs/persistence.md).

use std::mem::MaybeUninit;

use super::sweep::UNBORN;
use super::{Diagram, HomologyOptions, Persistence};
use crate::topology::graph::{Edge, EdgeSink, EdgeSource};

impl Persistence {
    /// `compute_from`'s passes at the given splits (heaviest first).
    pub(super) fn passes<G: EdgeSource + ?Sized>(
        &mut self,
        graph: &G,
        splits: &[f32],
        options: HomologyOptions,
        out: &mut Diagram,
    ) {
        let mut kept = std::mem::take(&mut self.kept);
        kept.clear();
        kept.reserve(graph.max_edges() + 1);
        let mut first = HeavyEdges {
            split: splits[0],
            edges: kept.spare_capacity_mut(),
            len: 0,
            n_edges: 0,
        };
        graph.for_each_edge(&mut first);
        let (n_heavy, n_edges) = (first.len, first.n_edges);
        // SAFETY: `HeavyEdges` wrote every slot below `len`.
        unsafe { kept.set_len(n_heavy) };
        out.n_edges = n_edges as u64;
        self.reduce(&mut kept, options, out);
        // Then each band of lighter weights, down to the rest (above -1: every weight).
        let lower = splits[1..].iter().copied().chain([-1.0]);
        for (above, at_most) in lower.zip(splits.iter().copied()) {
            kept.clear();
            let mut band = Unconnected {
                above,
                at_most,
                comp: &self.comp,
                kept: kept.spare_capacity_mut(),
                len: 0,
                h1: options.h1_diagram.then_some(&mut out.h1),
            };
            graph.for_each_edge(&mut band);
            let len = band.len;
            // SAFETY: `Unconnected` wrote every slot below `len`.
            unsafe { kept.set_len(len) };
            self.reduce(&mut kept, options, out);
        }
        self.kept = kept;
    }
}

/// `compute_from`'s first pass: keeps the edges heavier than `split`, in order, and counts all
/// edges. Every edge given is written and the length advanced only for heavy ones, so there is
/// no branch to mispredict (`edges` has room for one more than all the edges).
struct HeavyEdges<'a> {
    split: f32,
    edges: &'a mut [MaybeUninit<Edge>],
    len: usize,
    n_edges: usize,
}

impl EdgeSink for HeavyEdges<'_> {
    fn extend(&mut self, block: &[Edge]) {
        self.n_edges += block.len();
        let (split, mut len) = (self.split, self.len);
        for &edge in block {
            self.edges[len].write(edge);
            len += (edge.weight > split) as usize;
        }
        self.len = len;
    }

    fn keeps_heavier_than(&self) -> Option<f32> {
        Some(self.split)
    }

    fn skipped(&mut self, count: usize) {
        self.n_edges += count;
    }
}

/// `compute_from`'s later passes: keeps the edges heavier than `above` whose ends are not in one
/// component after the earlier passes (`comp` holds the component labels), in order; the others
/// close cycles. Edges heavier than `at_most` need no test of their own: they were swept or
/// found closing cycles before, so their ends are connected.
struct Unconnected<'a> {
    above: f32,
    at_most: f32,
    comp: &'a [u32],
    kept: &'a mut [MaybeUninit<Edge>],
    len: usize,
    /// The H1 births, when the diagram is asked for (then every edge must be seen).
    h1: Option<&'a mut Vec<f32>>,
}

impl EdgeSink for Unconnected<'_> {
    fn extend(&mut self, block: &[Edge]) {
        let (above, comp, mut len) = (self.above, self.comp, self.len);
        // Branch-free on the tests, which are unpredictable.
        for &edge in block {
            let cu = comp[edge.src as usize];
            let cycle = (cu != UNBORN) & (cu == comp[edge.dst as usize]);
            self.kept[len].write(edge);
            len += (!cycle & (edge.weight > above)) as usize;
        }
        self.len = len;
        if let Some(h1) = self.h1.as_mut() {
            for edge in block {
                let cu = comp[edge.src as usize];
                let in_band = edge.weight > above && edge.weight <= self.at_most;
                if in_band && cu != UNBORN && cu == comp[edge.dst as usize] {
                    h1.push(edge.weight);
                }
            }
        }
    }

    fn connected_labels(&self) -> Option<&[u32]> {
        // With the H1 diagram asked for, every cycle's weight is needed.
        match self.h1 {
            Some(_) => None,
            None => Some(self.comp),
        }
    }

    fn keeps_heavier_than(&self) -> Option<f32> {
        // Lighter edges belong to later bands (the count of edges is the first pass's).
        Some(self.above)
    }
}
