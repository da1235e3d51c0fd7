//! Exact p-Wasserstein distance between two finite diagrams with the L-infinity ground metric
//! (GUDHI's `wasserstein_distance(a, b, order=p, internal_p=inf)`), by a min-cost perfect matching.
//!
//! The problem: a partial matching between the points of `a` and `b` minimising the sum of
//! `d(a_i, b_j)^p` over matched pairs plus `diag(x)^p` over unmatched points. Writing it as
//! `sum_j diag(b_j)^p` plus the cost of assigning every `a_i` either to a `b_j` (at
//! `d(a_i, b_j)^p - diag(b_j)^p`) or to a private diagonal slot (at `diag(a_i)^p`), with each `b_j`
//! used at most once, gives a rectangular assignment problem with `|a|` rows: no diagonal copies of
//! `b` and no zero-cost diagonal-to-diagonal block. Only pairs with
//! `d^p < diag(a_i)^p + diag(b_j)^p` get an edge: any matching that uses another pair costs at
//! least as much as sending both points to the diagonal, so the optimum is unchanged, and the graph
//! stays sparse for diagrams whose points lie near the diagonal. The assignment is solved by
//! successive shortest paths (Dijkstra with potentials, stopped at the first free column), the
//! sparse form of the Hungarian algorithm; the result is exact up to floating-point rounding (the
//! cost is summed from the final matching).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{linf, to_diagonal, Pair};

/// The exact p-Wasserstein distance (p >= 1) between `a` and `b`.
pub fn wasserstein(a: &[Pair], b: &[Pair], p: f64) -> f64 {
    let graph = CostGraph::new(a, b, p);
    graph.min_cost_perfect_matching().powf(1.0 / p)
}

/// The assignment graph in compressed rows: row `i` (point `a_i`) has edges to columns `j < |b|`
/// (points of `b`) and to its diagonal slot, column `|b| + i`.
struct CostGraph {
    rows: usize,
    columns: usize,
    offsets: Vec<usize>,
    targets: Vec<u32>,
    costs: Vec<f64>,
    /// `d^p` of each edge (the cost before subtracting `diag(b_j)^p`; the slot's `diag(a_i)^p`).
    lengths: Vec<f64>,
    /// `diag(b_j)^p`.
    unmatched_b: Vec<f64>,
}

/// `x^p` for the two orders used, without `powf`'s cost for them.
fn power(x: f64, p: f64) -> f64 {
    if p == 1.0 {
        x
    } else if p == 2.0 {
        x * x
    } else {
        x.powf(p)
    }
}

impl CostGraph {
    fn new(a: &[Pair], b: &[Pair], p: f64) -> Self {
        let da: Vec<f64> = a.iter().map(|x| power(to_diagonal(x), p)).collect();
        let db: Vec<f64> = b.iter().map(|x| power(to_diagonal(x), p)).collect();
        let mut g = CostGraph {
            rows: a.len(),
            columns: a.len() + b.len(),
            offsets: vec![0],
            targets: Vec::new(),
            costs: Vec::new(),
            lengths: Vec::new(),
            unmatched_b: db.clone(),
        };
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                let c = power(linf(x, y), p);
                if c < da[i] + db[j] {
                    g.push(j, c - db[j], c);
                }
            }
            g.push(b.len() + i, da[i], da[i]);
            g.offsets.push(g.targets.len());
        }
        g
    }

    fn push(&mut self, target: usize, cost: f64, length: f64) {
        self.targets.push(target as u32);
        self.costs.push(cost);
        self.lengths.push(length);
    }

    fn row(&self, u: usize) -> std::ops::Range<usize> {
        self.offsets[u]..self.offsets[u + 1]
    }

    /// The cost of a minimum-cost assignment of every row (one exists: every row has its slot),
    /// summed from the matching: matched lengths plus the unmatched points of `b`.
    fn min_cost_perfect_matching(&self) -> f64 {
        let mut m = Matching::new(self);
        for s in 0..self.rows {
            if m.mate_left[s] == FREE {
                m.augment_from(self, s);
            }
        }
        let matched: f64 = (0..self.rows)
            .map(|u| {
                let v = m.mate_left[u];
                self.row(u)
                    .find(|&e| self.targets[e] == v)
                    .map_or(0.0, |e| self.lengths[e])
            })
            .sum();
        let unmatched: f64 = self
            .unmatched_b
            .iter()
            .zip(&m.mate_right)
            .filter(|(_, &w)| w == FREE)
            .map(|(d, _)| d)
            .sum();
        matched + unmatched
    }
}

const FREE: u32 = u32::MAX;

/// A matching with dual potentials: reduced costs `cost - u[left] - v[right]` stay >= 0, and 0 on
/// matched edges.
struct Matching {
    mate_left: Vec<u32>,
    mate_right: Vec<u32>,
    u: Vec<f64>,
    v: Vec<f64>,
    // Dijkstra state, reused between augmentations
    dist: Vec<f64>,
    pred: Vec<u32>,
    done: Vec<bool>,
    /// The smallest distance to a free column seen in this search: nothing farther is pushed.
    bound: f64,
}

/// A heap entry: distance (as ordered bits of a non-negative f64) and right vertex.
type Entry = Reverse<(u64, u32)>;

impl Matching {
    /// Row minima as left potentials, and a greedy matching on the tight edges.
    fn new(g: &CostGraph) -> Self {
        let (n, k) = (g.rows, g.columns);
        let mut m = Matching {
            mate_left: vec![FREE; n],
            mate_right: vec![FREE; k],
            u: vec![0.0; n],
            v: vec![0.0; k],
            dist: vec![f64::INFINITY; k],
            pred: vec![FREE; k],
            done: vec![false; k],
            bound: f64::INFINITY,
        };
        for s in 0..n {
            let best = g.row(s).min_by(|&e, &f| g.costs[e].total_cmp(&g.costs[f]));
            if let Some(e) = best {
                m.u[s] = g.costs[e];
                let t = g.targets[e] as usize;
                if m.mate_right[t] == FREE {
                    m.mate_right[t] = s as u32;
                    m.mate_left[s] = t as u32;
                }
            }
        }
        m
    }

    fn relax(&mut self, g: &CostGraph, from: usize, base: f64, heap: &mut BinaryHeap<Entry>) {
        for e in g.row(from) {
            let t = g.targets[e] as usize;
            if self.done[t] {
                continue;
            }
            let d = base + (g.costs[e] - self.u[from] - self.v[t]).max(0.0);
            if d < self.dist[t] && d <= self.bound {
                if self.mate_right[t] == FREE {
                    self.bound = d;
                }
                self.dist[t] = d;
                self.pred[t] = from as u32;
                heap.push(Reverse((d.to_bits(), t as u32)));
            }
        }
    }

    /// One shortest augmenting path from the free left vertex `s`, then the potential update.
    fn augment_from(&mut self, g: &CostGraph, s: usize) {
        let mut heap = BinaryHeap::new();
        let mut reached_right: Vec<usize> = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        self.bound = f64::INFINITY;
        self.relax(g, s, 0.0, &mut heap);
        let (sink, total) = loop {
            let Some(Reverse((bits, t))) = heap.pop() else {
                unreachable!(
                    "every left vertex has its diagonal copy, so a perfect matching exists"
                )
            };
            let (t, d) = (t as usize, f64::from_bits(bits));
            if self.done[t] || d > self.dist[t] {
                continue;
            }
            self.done[t] = true;
            reached_right.push(t);
            let w = self.mate_right[t];
            if w == FREE {
                break (t, d);
            }
            self.relax(g, w as usize, d, &mut heap);
        };
        // potentials: u of the reached left vertices up, v of the finished right vertices down
        self.u[s] += total;
        for &t in &reached_right {
            let slack = total - self.dist[t];
            if t != sink {
                self.u[self.mate_right[t] as usize] += slack;
            }
            self.v[t] -= slack;
        }
        touched.extend(reached_right.iter().copied());
        // augment along the predecessors
        let mut t = sink;
        loop {
            let w = self.pred[t] as usize;
            let previous = self.mate_left[w];
            self.mate_left[w] = t as u32;
            self.mate_right[t] = w as u32;
            if w == s {
                break;
            }
            t = previous as usize;
        }
        self.reset(&touched, &mut heap);
    }

    /// Clears the Dijkstra state of the vertices this search set.
    fn reset(&mut self, touched: &[usize], heap: &mut BinaryHeap<Entry>) {
        for &t in touched {
            self.done[t] = false;
        }
        while let Some(Reverse((_, t))) = heap.pop() {
            self.dist[t as usize] = f64::INFINITY;
        }
        for &t in touched {
            self.dist[t] = f64::INFINITY;
        }
    }
}
