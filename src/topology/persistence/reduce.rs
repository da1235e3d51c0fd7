//! The rounds that reduce a stored batch of edges: sort and sweep the heaviest quarter, drop the
//! lighter edges that now close cycles, and go on with the rest (docs/persistence.md).

use super::radix::radix_sort_heaviest_first;
use super::sweep::UNBORN;
use super::{Diagram, HomologyOptions, Persistence};
use crate::topology::graph::{Edge, NO_EDGE};

/// Graphs with at least this many edges are filtered before sorting (see `compute`).
const FILTER_MIN: usize = 32 * 1024;

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
        // Each round: sort and sweep the heaviest quarter, drop the lighter edges that now close
        // cycles, and go on with the survivors (always in edges[..len]).
        let mut len = n;
        loop {
            let heavy = if len >= FILTER_MIN {
                split_heaviest_quarter(&edges[..len], &mut scratch)
            } else {
                0
            };
            if heavy == 0 {
                radix_sort_heaviest_first(&mut edges[..len], &mut scratch);
                self.sweep(&edges[..len], options, out);
                break;
            }
            // scratch[..heavy] holds the heavy edges, scratch[heavy..len] the light ones, in order.
            let (heavy_part, rest) = scratch.split_at_mut(heavy);
            radix_sort_heaviest_first(heavy_part, &mut edges[..heavy]);
            self.sweep(heavy_part, options, out);
            let mut kept = 0;
            for e in rest[..len - heavy].iter() {
                let cu = self.comp[e.src as usize];
                if cu != UNBORN && cu == self.comp[e.dst as usize] {
                    if options.h1_diagram {
                        out.h1.push(e.weight);
                    }
                } else {
                    edges[kept] = *e;
                    kept += 1;
                }
            }
            len = kept;
        }
        self.sort_scratch = scratch;
    }
}

/// Stable partition of `edges` into `out`: the edges heavier than a pivot near the top quarter
/// first, then the others. Returns how many are heavy (0 when no useful pivot exists).
fn split_heaviest_quarter(edges: &[Edge], out: &mut [Edge]) -> usize {
    let n = edges.len();
    let mut sample: Vec<f32> = edges
        .iter()
        .step_by((n / 1024).max(1))
        .map(|e| e.weight)
        .collect();
    sample.sort_unstable_by(|a, b| b.total_cmp(a));
    let pivot = sample[sample.len() / 4];
    let heavy = edges.iter().filter(|e| e.weight > pivot).count();
    if heavy == 0 || heavy == n {
        return 0;
    }
    let (mut h, mut l) = (0, heavy);
    for e in edges {
        if e.weight > pivot {
            out[h] = *e;
            h += 1;
        } else {
            out[l] = *e;
            l += 1;
        }
    }
    heavy
}
