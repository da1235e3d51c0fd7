//! The edge protocol between graphs and their consumers: a graph (`EdgeSource`) hands its edges in
//! blocks to a sink (`EdgeSink`), which may tell the graph which edges it does not want, so that
//! they are skipped unweighed. Persistence enumerates a graph a few times rather than storing it.

use super::sampling::{EveryNth, WeightSample};

/// One edge of an activation graph: `src` and `dst` are unit ids, `weight` is |w * a| (> 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub weight: f32,
    pub src: u32,
    pub dst: u32,
}

/// A placeholder for buffers that are written before they are read.
pub(crate) const NO_EDGE: Edge = Edge {
    weight: 0.0,
    src: 0,
    dst: 0,
};

/// Where edge enumeration puts the edges: a filter that keeps only some of them, or a collector.
/// Edges arrive in blocks, in enumeration order, so a sink's per-edge work runs in its own tight
/// loop with its counters in registers.
pub trait EdgeSink {
    fn extend(&mut self, edges: &[Edge]);

    /// Labels over unit ids: when `labels[u] == labels[v] != NO_LABEL` the sink drops any edge
    /// between u and v, so a graph may skip such edges without weighing them. `None`: every
    /// edge is wanted.
    fn connected_labels(&self) -> Option<&[u32]> {
        None
    }

    /// The sink keeps only edges heavier than this weight: a graph may leave the lighter ones out
    /// of `extend` if it reports how many to `skipped`. `None`: every edge is wanted. (With
    /// labels too, a graph may use either to skip an edge.)
    fn keeps_heavier_than(&self) -> Option<f32> {
        None
    }

    /// Counts edges a graph left out under `keeps_heavier_than`.
    fn skipped(&mut self, _count: usize) {}
}

/// See `EdgeSink::connected_labels`.
pub(crate) const NO_LABEL: u32 = u32::MAX;

/// A graph whose edges can be enumerated any number of times, in the same order each time.
pub trait EdgeSource {
    /// Upper bound on the number of edges.
    fn max_edges(&self) -> usize;
    /// Pushes every edge, in enumeration order, into `sink`.
    fn for_each_edge<S: EdgeSink>(&self, sink: &mut S);

    /// Adds about one in `every` edge weights, spread over the graph, to `out` (to place a split
    /// weight; it need not be exact). By default every `every`-th edge enumerated, in one part.
    fn sample_weights(&self, every: usize, out: &mut WeightSample) {
        self.for_each_edge(&mut EveryNth::new(every, &mut out.weights));
        out.end_part();
    }
}

/// Edges per block handed to a sink.
pub(super) const BLOCK: usize = 256;

/// Gathers the edges an op enumerates into blocks for a sink, dropping zero weights. The block
/// lives outside this struct so that only it, not `len`, is seen by the sink: `len` then stays in
/// a register in the enumeration loops.
pub(super) struct Blocks<'s, S: EdgeSink> {
    sink: &'s mut S,
    block: &'s mut [Edge; BLOCK],
    len: usize,
}

impl<'s, S: EdgeSink> Blocks<'s, S> {
    pub(super) fn new(sink: &'s mut S, block: &'s mut [Edge; BLOCK]) -> Self {
        Blocks {
            sink,
            block,
            len: 0,
        }
    }

    #[inline(always)]
    pub(super) fn put(&mut self, weight: f32, src: u32, dst: u32) {
        // Always written, kept only when nonzero: no branch on the (often zero) activations.
        // `len < BLOCK` always; `% BLOCK` (a mask) lets the compiler see it and drop the check.
        self.block[self.len % BLOCK] = Edge { weight, src, dst };
        self.len += (weight != 0.0) as usize;
        if self.len == BLOCK {
            self.sink.extend(&self.block[..]);
            self.len = 0;
        }
    }

    pub(super) fn finish(self) {
        self.sink.extend(&self.block[..self.len]);
    }
}
