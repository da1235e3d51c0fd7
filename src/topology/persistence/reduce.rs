//! The rounds that reduce a stored batch of edges (filter-Kruskal): split off the heaviest part,
//! reduce it the same way, drop the lighter edges that now close cycles, and go on with the rest
//! (docs/persistence.md).

use super::radix::radix_sort_heaviest_first;
use super::sweep::UNBORN;
use super::{Diagram, HomologyOptions, Persistence};
use crate::topology::graph::{Edge, NO_EDGE};

/// Lists with at least this many edges are split before sorting; shorter ones are sorted whole.
/// (Time per demo input: 2,048 and 4,096 best, 1,024 and 8,192 a few percent slower, 32,768
/// 15-20% slower; docs/performance.md, "Second round".)
const FILTER_MIN: usize = 2 * 1024;

/// Each split puts about 1 / HEAVY_SHARE of a list (its heaviest) on the heavy side (1/2, 1/6
/// and 1/8 were no faster).
const HEAVY_SHARE: usize = 4;

/// How many weights a split's pivot is chosen from.
const PIVOT_SAMPLE: usize = 256;

impl Persistence {
    /// The rounds of `compute` on `edges` (reordered), adding to `out`.
    pub(super) fn reduce(
        &mut self,
        edges: &mut [Edge],
        options: HomologyOptions,
        out: &mut Diagram,
    ) {
        let n = edges.len();
        let mut scratch = std::mem::take(&mut self.sort_scratch);
        scratch.resize(scratch.len().max(n), NO_EDGE);
        self.reduce_with(edges, &mut scratch[..n], options, out);
        self.sort_scratch = scratch;
    }

    /// `reduce` with `scratch` as long as `edges`. Each round splits off the heaviest edges
    /// (into `scratch`) and reduces them first, recursively, using the room the split freed at the
    /// end of `edges` as their scratch; then the lighter edges that close cycles are dropped and
    /// the survivors (always `edges[..len]`) go round again, until few enough to sort whole.
    fn reduce_with(
        &mut self,
        edges: &mut [Edge],
        scratch: &mut [Edge],
        options: HomologyOptions,
        out: &mut Diagram,
    ) {
        let mut len = edges.len();
        loop {
            let heavy = if len >= FILTER_MIN {
                split_heaviest(&mut edges[..len], scratch)
            } else {
                0
            };
            if heavy == 0 {
                radix_sort_heaviest_first(&mut edges[..len], scratch);
                self.sweep(&edges[..len], options, out);
                return;
            }
            let light = len - heavy;
            let (light_part, freed) = edges.split_at_mut(light);
            self.reduce_with(&mut scratch[..heavy], &mut freed[..heavy], options, out);
            len = self.drop_cycles(light_part, options, out);
        }
    }

    /// Moves the edges of `edges` whose ends are not in one component to its front, in order,
    /// and returns how many; the others close cycles (their weights go to the H1 diagram when
    /// it is asked for).
    fn drop_cycles(
        &self,
        edges: &mut [Edge],
        options: HomologyOptions,
        out: &mut Diagram,
    ) -> usize {
        let comp = &self.comp[..];
        let mut kept = 0;
        for i in 0..edges.len() {
            let e = edges[i];
            let cu = comp[e.src as usize];
            let cycle = (cu != UNBORN) & (cu == comp[e.dst as usize]);
            if cycle && options.h1_diagram {
                out.h1.push(e.weight);
            }
            // Branch-free: the test is unpredictable. `kept <= i`, so nothing unread is written.
            // SAFETY: `kept <= i < edges.len()`.
            unsafe { *edges.get_unchecked_mut(kept) = e };
            kept += !cycle as usize;
        }
        kept
    }
}

/// Stable split of `edges`: the edges heavier than a pivot near the heaviest `1 / HEAVY_SHARE`
/// go to `heavy` in order, the others to the front of `edges` in order. Returns how many are
/// heavy (0 when no edge is heavier than the pivot: then nothing moved).
fn split_heaviest(edges: &mut [Edge], heavy: &mut [Edge]) -> usize {
    let n = edges.len();
    // The pivot comes from PIVOT_SAMPLE weights spread evenly over the list, on the stack: a
    // heap sample cost an allocation per split.
    let stride = (n / PIVOT_SAMPLE).max(1);
    let mut sample = [0.0f32; PIVOT_SAMPLE];
    let taken = n.min(PIVOT_SAMPLE);
    for (i, w) in sample[..taken].iter_mut().enumerate() {
        *w = edges[i * stride].weight;
    }
    let sample = &mut sample[..taken];
    let k = sample.len() / HEAVY_SHARE;
    let (_, &mut pivot, _) = sample.select_nth_unstable_by(k, |a, b| b.total_cmp(a));
    assert!(heavy.len() >= n);
    let (mut h, mut l) = (0, 0);
    for i in 0..n {
        let e = edges[i];
        let is_heavy = e.weight > pivot;
        // Branch-free: each edge is written to both places, one of which is kept.
        // SAFETY: `h + l == i < n <= heavy.len()`, so both writes are in bounds (unchecked: the
        // two bounds checks were 12% of the split's instructions).
        unsafe {
            *heavy.get_unchecked_mut(h) = e;
            *edges.get_unchecked_mut(l) = e;
        }
        h += is_heavy as usize;
        l += !is_heavy as usize;
    }
    h
}
