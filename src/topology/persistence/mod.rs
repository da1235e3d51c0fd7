//! Superlevel persistence of a weighted graph (conventions: docs/persistence.md).
//!
//! Edges are sorted heaviest first (a stable radix sort on the f32 bits, `radix`) and swept once
//! while tracking connected components (`sweep`). Only edges that merge components need meeting
//! in order, so edges that close cycles are filtered out unsorted wherever possible: `compute` on a
//! stored edge list (`reduce`), `compute_from` on a graph enumerated in weight bands without
//! storing it (`passes`, at the weights `splits` places; README "How it scales").
//! A vertex is born at the first edge that touches it, which is its heaviest incident edge, so the
//! `max_incident` birth rule costs nothing extra. When an edge joins two components the younger one
//! (smaller oldest birth) dies at the edge's weight (the elder rule); an edge inside one component
//! closes a cycle, an essential H1 class born at its weight.

mod diagram;
mod passes;
mod radix;
mod reduce;
mod splits;
mod sweep;

pub use diagram::{Diagram, H0Pair, HomologyOptions};
pub use radix::sort_heaviest_first;

use crate::topology::graph::{Edge, EdgeSource, WeightSample};
use splits::{place_splits, sample_stride};

/// A reusable persistence workspace: component labels over unit ids and a sort buffer.
///
/// Components are kept as "quick-find" labels: `comp[v]` is v's component id, so checking whether an
/// edge closes a cycle is two loads. A merge relabels the smaller component (its members are a
/// circular list through `next`), so a vertex is relabelled at most log2(|V|) times. Almost every
/// edge of an activation graph closes a cycle, so cheap checks matter more than cheap merges.
#[derive(Debug, Default)]
pub struct Persistence {
    comp: Vec<u32>,
    next: Vec<u32>,
    size: Vec<u32>,
    /// For a component id: the largest vertex birth in the component.
    oldest: Vec<f32>,
    /// Units born in the current computation, so that resetting costs O(vertices).
    born: Vec<u32>,
    sort_scratch: Vec<Edge>,
    /// `compute_from`'s buffers: the edges a pass keeps, the split weights.
    kept: Vec<Edge>,
    splits: Vec<f32>,
    weight_sample: WeightSample,
    /// Split weights for `compute_from` given by `set_splits`.
    fixed_splits: Option<Vec<f32>>,
}

impl Persistence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes the diagram of the graph whose edges are `edges` over unit ids `0..n_units`.
    /// `edges` is reordered.
    ///
    /// Nearly every edge of an activation graph closes a cycle, and only the |V| - 1 or so edges
    /// that merge components need to be met in sorted order. So large graphs are split at a
    /// sampled pivot (Filter-Kruskal): the heaviest quarter is reduced first, the same way; then
    /// each lighter edge whose two ends are already in one component is counted as a cycle (H1)
    /// without being sorted, and the rest goes through the same steps until it is small enough to
    /// sort whole (`reduce`).
    /// Partition, filter and sort are all stable, so edges are met in exactly the order a full
    /// stable sort gives: same pairs, same killing edges.
    pub fn compute(
        &mut self,
        edges: &mut [Edge],
        n_units: usize,
        options: HomologyOptions,
        out: &mut Diagram,
    ) {
        self.begin(n_units, out);
        out.n_edges = edges.len() as u64;
        self.reduce(edges, options, out);
        self.finish(options, out);
    }

    /// As `compute`, for a graph too large to be worth storing whole: its edges are enumerated
    /// a few times instead, once per band of weights between split weights, heaviest band first.
    /// The first pass counts every edge and keeps those above the first split, which go through
    /// `compute`'s steps. Each later pass keeps the edges of its band whose ends are not yet in
    /// one component (the others close cycles, counted by |E| - |V| + c), and these go through
    /// the same steps; the last band reaches down to the lightest edge. A pass may skip,
    /// unweighed, the edges it would not keep (see `EdgeSink`). The splits are placed from a
    /// sample of the graph's weights (`place_splits`); any splits give exactly the same diagram,
    /// poor ones only take longer.
    pub fn compute_from<G: EdgeSource + ?Sized>(
        &mut self,
        graph: &G,
        n_units: usize,
        options: HomologyOptions,
        out: &mut Diagram,
    ) {
        self.begin(n_units, out);
        let mut splits = std::mem::take(&mut self.splits);
        splits.clear();
        match &self.fixed_splits {
            Some(fixed) => splits.extend_from_slice(fixed),
            None => {
                self.weight_sample.clear();
                graph.sample_weights(sample_stride(graph.max_edges()), &mut self.weight_sample);
                place_splits(&mut self.weight_sample, &mut splits);
            }
        }
        self.passes(graph, &splits, options, out);
        self.splits = splits;
        self.finish(options, out);
    }

    /// Makes `compute_from` use these split weights instead of placing its own. The diagram
    /// does not depend on them; tests use it to try any splits.
    pub fn set_splits(&mut self, splits: Option<Vec<f32>>) {
        self.fixed_splits = splits.map(|mut s| {
            s.sort_by(|a, b| b.total_cmp(a));
            s.dedup();
            if s.is_empty() {
                s.push(f32::INFINITY);
            }
            s
        });
    }

    /// As `compute`, for edges already sorted heaviest first.
    pub fn compute_sorted(
        &mut self,
        edges: &[Edge],
        n_units: usize,
        options: HomologyOptions,
        out: &mut Diagram,
    ) {
        self.begin(n_units, out);
        out.n_edges = edges.len() as u64;
        self.sweep(edges, options, out);
        self.finish(options, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(weight: f32, src: u32, dst: u32) -> Edge {
        Edge { weight, src, dst }
    }

    fn run(mut edges: Vec<Edge>, n: usize, opts: HomologyOptions) -> Diagram {
        let mut p = Persistence::new();
        let mut d = Diagram::default();
        p.compute(&mut edges, n, opts, &mut d);
        d
    }

    fn pairs(d: &Diagram) -> Vec<(f32, f32)> {
        let mut v: Vec<_> = d.h0.iter().map(|p| (p.birth, p.death)).collect();
        v.sort_by(|a, b| b.partial_cmp(a).unwrap());
        v
    }

    #[test]
    fn path_graph() {
        // 0 -5- 1 -3- 2 -4- 3 : births 5,5,4,4. Edge 3 joins {0,1} (5) and {2,3} (4): (4,3) dies.
        let d = run(
            vec![e(5.0, 0, 1), e(3.0, 1, 2), e(4.0, 2, 3)],
            4,
            HomologyOptions::default(),
        );
        assert_eq!(d.n_vertices, 4);
        assert_eq!(d.n_edges, 3);
        assert_eq!(pairs(&d), vec![(4.0, 3.0)]);
        assert_eq!(d.h0_essential, vec![5.0]);
        assert_eq!(d.h1_count, 0);
        let all = run(
            vec![e(5.0, 0, 1), e(3.0, 1, 2), e(4.0, 2, 3)],
            4,
            HomologyOptions {
                keep_zero_persistence: true,
                ..Default::default()
            },
        );
        assert_eq!(pairs(&all), vec![(5.0, 5.0), (4.0, 4.0), (4.0, 3.0)]);
        // The killing edge of the finite pair is kept.
        let kill = d.h0[0];
        assert_eq!((kill.src, kill.dst, kill.death), (1, 2, 3.0));
    }

    #[test]
    fn star_graph() {
        // Centre 0, leaves 1..4 with weights 1..4: every leaf after the first heaviest is born and
        // dies on the same edge, except the centre which is born at 4 with leaf 4.
        let d = run(
            (1..=4).map(|i| e(i as f32, 0, i)).collect(),
            5,
            HomologyOptions::default(),
        );
        assert_eq!(d.n_vertices, 5);
        assert!(d.h0.is_empty());
        assert_eq!(d.h0_essential, vec![4.0]);
    }

    #[test]
    fn two_components_and_a_cycle() {
        // Triangle 0,1,2 (weights 3,2,1) and an edge 5-6 (weight 7); 3 and 4 are not vertices.
        let d = run(
            vec![e(3.0, 0, 1), e(2.0, 1, 2), e(1.0, 2, 0), e(7.0, 5, 6)],
            7,
            HomologyOptions {
                h1_diagram: true,
                ..Default::default()
            },
        );
        assert_eq!(d.n_vertices, 5);
        assert_eq!(d.h0_essential, vec![7.0, 3.0]);
        assert_eq!(d.h1_count, 1);
        assert_eq!(d.h1, vec![1.0]);
        assert!(d.h0.is_empty());
    }

    #[test]
    fn elder_rule_with_later_merge() {
        // Components {0,1} born 9 and {2,3} born 6 merge at 2; then 4 joins late.
        let d = run(
            vec![e(9.0, 0, 1), e(6.0, 2, 3), e(2.0, 1, 2), e(1.0, 3, 4)],
            5,
            HomologyOptions::default(),
        );
        assert_eq!(pairs(&d), vec![(6.0, 2.0)]);
        assert_eq!(d.h0_essential, vec![9.0]);
    }

    #[test]
    fn ties_give_the_same_diagram_in_any_order() {
        let edges = vec![
            e(2.0, 0, 1),
            e(2.0, 2, 3),
            e(2.0, 1, 2),
            e(1.0, 3, 4),
            e(2.0, 4, 5),
            e(1.0, 0, 5),
        ];
        let opts = HomologyOptions {
            keep_zero_persistence: true,
            h1_diagram: true,
        };
        let a = run(edges.clone(), 6, opts);
        let mut rev = edges.clone();
        rev.reverse();
        let b = run(rev, 6, opts);
        assert_eq!(pairs(&a), pairs(&b));
        assert_eq!(a.h0_essential, b.h0_essential);
        assert_eq!(a.h1, b.h1);
        // 6 vertices, one component: 5 finite pairs, four of them born and killed at 2.
        assert_eq!(
            pairs(&a),
            vec![(2.0, 2.0), (2.0, 2.0), (2.0, 2.0), (2.0, 2.0), (2.0, 1.0)]
        );
        assert_eq!(a.h1, vec![1.0]);
    }

    #[test]
    fn a_self_loop_closes_a_cycle() {
        // Activation graphs have none, but `compute` takes any edges: the loop's unit is born
        // at it (first seen, unborn, on both ends) and the loop is an H1 class.
        let d = run(
            vec![e(4.0, 2, 2), e(3.0, 2, 1)],
            3,
            HomologyOptions {
                h1_diagram: true,
                ..Default::default()
            },
        );
        assert_eq!(d.n_vertices, 2);
        assert_eq!(d.h0_essential, vec![4.0]);
        assert_eq!(d.h1, vec![4.0]);
        assert!(d.h0.is_empty());
    }

    #[test]
    fn workspace_is_clean_between_calls() {
        let mut p = Persistence::new();
        let mut d = Diagram::default();
        let opts = HomologyOptions::default();
        p.compute(&mut [e(5.0, 0, 1), e(1.0, 2, 3)], 4, opts, &mut d);
        let first = d.clone();
        p.compute(&mut [e(3.0, 1, 2)], 4, opts, &mut d);
        assert_eq!(d.n_vertices, 2);
        assert_eq!(d.h0_essential, vec![3.0]);
        p.compute(&mut [e(5.0, 0, 1), e(1.0, 2, 3)], 4, opts, &mut d);
        assert_eq!(d, first);
    }
}
