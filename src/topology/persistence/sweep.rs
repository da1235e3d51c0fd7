//! The union-find sweep: edges met heaviest first, vertices born at their first edge, components
//! merged by the elder rule (docs/persistence.md).

use super::{Diagram, H0Pair, HomologyOptions, Persistence};
use crate::topology::graph::{Edge, NO_LABEL};

/// `comp` of a unit that is not (yet) a vertex; the "no label" of `EdgeSink::connected_labels`.
pub(super) const UNBORN: u32 = NO_LABEL;

impl Persistence {
    pub(super) fn begin(&mut self, n_units: usize, out: &mut Diagram) {
        out.clear();
        if self.comp.len() < n_units {
            self.comp.resize(n_units, UNBORN);
            self.next.resize(n_units, 0);
            self.size.resize(n_units, 0);
            self.oldest.resize(n_units, 0.0);
        }
    }

    /// One pass over edges sorted heaviest first.
    pub(super) fn sweep(&mut self, edges: &[Edge], options: HomologyOptions, out: &mut Diagram) {
        for e in edges {
            let w = e.weight;
            let (mut cu, mut cv) = (self.comp[e.src as usize], self.comp[e.dst as usize]);
            // Most edges close cycles, and both their ends are born: the birth tests run only
            // on the other edges.
            if cu != cv || cu == UNBORN {
                // A vertex is born at its first (so heaviest) incident edge: max_incident.
                if cu == UNBORN {
                    cu = self.bear(e.src, w);
                }
                if cv == UNBORN {
                    // `comp` again: a self-loop's one end was just born.
                    cv = match self.comp[e.dst as usize] {
                        UNBORN => self.bear(e.dst, w),
                        c => c,
                    };
                }
            }
            // One component: a cycle (after a birth, only a self-loop can be).
            if cu == cv {
                if options.h1_diagram {
                    out.h1.push(w);
                }
                continue;
            }
            let (bu, bv) = (self.oldest[cu as usize], self.oldest[cv as usize]);
            // Elder rule: the component with the younger (smaller) oldest birth dies here.
            let young_birth = bu.min(bv);
            if young_birth != w || options.keep_zero_persistence {
                out.h0.push(H0Pair {
                    birth: young_birth,
                    death: w,
                    src: e.src,
                    dst: e.dst,
                });
            }
            let (big, small) = if self.size[cu as usize] >= self.size[cv as usize] {
                (cu, cv)
            } else {
                (cv, cu)
            };
            let mut x = small;
            loop {
                self.comp[x as usize] = big;
                x = self.next[x as usize];
                if x == small {
                    break;
                }
            }
            self.next.swap(big as usize, small as usize);
            self.size[big as usize] += self.size[small as usize];
            self.oldest[big as usize] = bu.max(bv);
        }
    }

    /// Makes unit `v` a vertex born at `w`, alone in its component; returns the component.
    #[inline(always)]
    fn bear(&mut self, v: u32, w: f32) -> u32 {
        let vi = v as usize;
        self.comp[vi] = v;
        self.next[vi] = v;
        self.size[vi] = 1;
        self.oldest[vi] = w;
        self.born.push(v);
        v
    }

    pub(super) fn finish(&mut self, options: HomologyOptions, out: &mut Diagram) {
        out.n_vertices = self.born.len() as u64;
        for &v in &self.born {
            if self.comp[v as usize] == v {
                out.h0_essential.push(self.oldest[v as usize]);
            }
        }
        // Every edge that did not merge two components closed a cycle.
        out.h1_count = out.n_edges + out.h0_essential.len() as u64 - out.n_vertices;
        out.h0_essential.sort_unstable_by(|a, b| b.total_cmp(a));
        if options.h1_diagram {
            out.h1.sort_unstable_by(|a, b| b.total_cmp(a));
        }
        for &v in &self.born {
            self.comp[v as usize] = UNBORN;
        }
        self.born.clear();
    }
}
