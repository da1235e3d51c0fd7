//! Exact bottleneck distance between two finite diagrams (L-infinity ground metric, points may go
//! to the diagonal), as GUDHI's `bottleneck_distance(a, b, e=0)` and hera define it.
//!
//! The distance is one of the candidate values: a distance between a point of each diagram, or a
//! point's distance to the diagonal. A threshold `r` is feasible when a matching of cost <= r
//! exists; the smallest feasible candidate is found by a binary search that splits the candidate
//! list at its median (`select_nth_unstable`, so the list is never sorted). For diagrams with more
//! than 2^24 point pairs the list is not built: the search bisects the doubles in `[0, upper]`
//! instead (about 64 tests, exact for the same reason).
//!
//! Feasibility without the diagonal copies: points within `r` of the diagonal may always go there,
//! and diagonal copies pair with each other at cost 0, so `r` is feasible iff some matching between
//! the two diagrams (edges of length <= r) covers every point of either diagram that is farther
//! than `r` from the diagonal. By the Mendelsohn-Dulmage theorem that holds iff one matching covers
//! the far points of `a` and another the far points of `b`; each is a Hopcroft-Karp maximum
//! matching whose edges come from a window of the other diagram sorted by birth (the geometric
//! speed-up: only points whose birth is within `r` can be neighbours).

use super::{linf, to_diagonal, Pair};

/// Above this many point pairs the candidate list (8 bytes a pair) is not built: the search
/// bisects the floating-point numbers instead.
const MAX_CANDIDATES: usize = 1 << 24;

/// The exact bottleneck distance between `a` and `b` (0 when both are empty).
pub fn bottleneck(a: &[Pair], b: &[Pair]) -> f64 {
    bottleneck_with(a, b, a.len().saturating_mul(b.len()) <= MAX_CANDIDATES)
}

/// The search over the candidate values (`candidates`), or by bisecting the doubles.
pub(super) fn bottleneck_with(a: &[Pair], b: &[Pair], candidates: bool) -> f64 {
    let upper = a.iter().chain(b).map(to_diagonal).fold(0.0, f64::max);
    let by_birth_a = SortedByBirth::new(a);
    let by_birth_b = SortedByBirth::new(b);
    let feasible = |r: f64| covers_far(a, &by_birth_b, r) && covers_far(b, &by_birth_a, r);
    if !candidates {
        return smallest_feasible_double(upper, feasible);
    }
    let mut values: Vec<f64> = a.iter().chain(b).map(to_diagonal).collect();
    for p in a {
        values.extend(b.iter().map(|q| linf(p, q)).filter(|&d| d < upper));
    }
    values.push(0.0);
    smallest_feasible(&mut values, feasible)
}

/// The smallest double in [0, upper] for which `feasible` (monotone, true at `upper`) holds: a
/// bisection of the bit patterns, which order non-negative doubles. Feasibility changes only at
/// a candidate value, computed by the same formulas, so the result is that candidate exactly.
fn smallest_feasible_double(upper: f64, feasible: impl Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (0u64, upper.to_bits()); // the answer is in [lo, hi]
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if feasible(f64::from_bits(mid)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    f64::from_bits(lo)
}

/// The smallest value of `values` for which `feasible` (monotone: false then true) holds; the
/// largest value must be feasible.
fn smallest_feasible(values: &mut [f64], feasible: impl Fn(f64) -> bool) -> f64 {
    let mut rest = values;
    while rest.len() > 1 {
        let mid = (rest.len() - 1) / 2;
        let (_, &mut median, _) = rest.select_nth_unstable_by(mid, f64::total_cmp);
        rest = if feasible(median) {
            &mut rest[..=mid]
        } else {
            &mut rest[mid + 1..]
        };
    }
    rest[0]
}

/// A diagram's points in increasing birth order, with their births for window searches.
struct SortedByBirth<'a> {
    points: Vec<&'a Pair>,
    births: Vec<f64>,
}

impl<'a> SortedByBirth<'a> {
    fn new(diagram: &'a [Pair]) -> Self {
        let mut points: Vec<&Pair> = diagram.iter().collect();
        points.sort_by(|p, q| p.birth.total_cmp(&q.birth));
        let births = points.iter().map(|p| p.birth).collect();
        SortedByBirth { points, births }
    }

    /// Indices of the points within L-infinity distance `r` of `p`.
    fn neighbours(&self, p: &Pair, r: f64, out: &mut Vec<u32>) {
        let start = self.births.partition_point(|&b| b < p.birth - r);
        for (i, q) in self.points.iter().enumerate().skip(start) {
            if q.birth > p.birth + r {
                break;
            }
            if linf(p, q) <= r {
                out.push(i as u32);
            }
        }
    }
}

/// Whether the points of `from` farther than `r` from the diagonal can all be matched to distinct
/// points of `to` within `r`.
fn covers_far(from: &[Pair], to: &SortedByBirth, r: f64) -> bool {
    let far: Vec<&Pair> = from.iter().filter(|p| to_diagonal(p) > r).collect();
    if far.len() > to.points.len() {
        return false;
    }
    let mut offsets = vec![0u32];
    let mut edges = Vec::new();
    for p in &far {
        to.neighbours(p, r, &mut edges);
        if edges.len() == *offsets.last().unwrap_or(&0) as usize {
            return false; // a far point with no neighbour
        }
        offsets.push(edges.len() as u32);
    }
    let graph = Bipartite {
        offsets,
        edges,
        right: to.points.len(),
    };
    graph.maximum_matching() == far.len()
}

/// A bipartite graph in compressed rows: the right neighbours of left vertex `u` are
/// `edges[offsets[u]..offsets[u + 1]]`.
pub(super) struct Bipartite {
    pub offsets: Vec<u32>,
    pub edges: Vec<u32>,
    pub right: usize,
}

const FREE: u32 = u32::MAX;

impl Bipartite {
    fn left(&self) -> usize {
        self.offsets.len() - 1
    }

    fn adjacent(&self, u: usize) -> &[u32] {
        &self.edges[self.offsets[u] as usize..self.offsets[u + 1] as usize]
    }

    /// The size of a maximum matching (Hopcroft-Karp).
    pub fn maximum_matching(&self) -> usize {
        let mut mate_left = vec![FREE; self.left()];
        let mut mate_right = vec![FREE; self.right];
        let mut size = 0;
        let mut layer = vec![0u32; self.left()];
        while self.layers(&mate_left, &mate_right, &mut layer) {
            let mut next = vec![0usize; self.left()];
            for u in 0..self.left() {
                if mate_left[u] == FREE
                    && self.augment(u, &mut mate_left, &mut mate_right, &layer, &mut next)
                {
                    size += 1;
                }
            }
        }
        size
    }

    /// Breadth-first layers from the free left vertices; true if a free right vertex is reached.
    fn layers(&self, mate_left: &[u32], mate_right: &[u32], layer: &mut [u32]) -> bool {
        let mut queue = std::collections::VecDeque::new();
        for u in 0..self.left() {
            layer[u] = if mate_left[u] == FREE {
                queue.push_back(u);
                0
            } else {
                u32::MAX
            };
        }
        let mut found = false;
        while let Some(u) = queue.pop_front() {
            for &v in self.adjacent(u) {
                match mate_right[v as usize] {
                    FREE => found = true,
                    w if layer[w as usize] == u32::MAX => {
                        layer[w as usize] = layer[u] + 1;
                        queue.push_back(w as usize);
                    }
                    _ => {}
                }
            }
        }
        found
    }

    /// Depth-first search for an augmenting path from `u` along the layers.
    fn augment(
        &self,
        u: usize,
        mate_left: &mut [u32],
        mate_right: &mut [u32],
        layer: &[u32],
        next: &mut [usize],
    ) -> bool {
        while next[u] < self.adjacent(u).len() {
            let v = self.adjacent(u)[next[u]] as usize;
            next[u] += 1;
            let w = mate_right[v];
            let ok = w == FREE
                || (layer[w as usize] == layer[u] + 1
                    && self.augment(w as usize, mate_left, mate_right, layer, next));
            if ok {
                mate_left[u] = v as u32;
                mate_right[v] = u as u32;
                return true;
            }
        }
        false
    }
}
