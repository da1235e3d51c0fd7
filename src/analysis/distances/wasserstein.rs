//! Exact p-Wasserstein distance between two finite diagrams with the L-infinity ground metric
//! (GUDHI's `wasserstein_distance(a, b, order=p, internal_p=inf)`), by a min-cost perfect matching.
//!
//! The matching problem: left vertices are the points of `a` and the diagonal copies of the points
//! of `b`; right vertices are the points of `b` and the diagonal copies of `a`. Edges: `a_i - b_j`
//! (cost `d(a_i, b_j)^p`), `a_i - a_i'` and `b_j' - b_j` (a point's distance to the diagonal, to the
//! p), and `b_j' - a_i'` (cost 0). Only pairs with `d^p < diag(a_i)^p + diag(b_j)^p` get the first
//! and last edges: any matching that uses another pair costs at least as much as sending both points
//! to the diagonal, so the optimum is unchanged, and the graph stays sparse for diagrams whose points
//! lie near the diagonal. The minimum is found by successive shortest paths (Dijkstra with
//! potentials, stopped at the first free vertex), the sparse form of the Hungarian algorithm; the
//! result is exact up to floating-point rounding.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{linf, to_diagonal, Pair};

/// The exact p-Wasserstein distance (p >= 1) between `a` and `b`.
pub fn wasserstein(a: &[Pair], b: &[Pair], p: f64) -> f64 {
    let graph = CostGraph::new(a, b, p);
    graph.min_cost_perfect_matching().powf(1.0 / p)
}

/// A bipartite graph with `n` vertices a side, in compressed rows, with edge costs.
struct CostGraph {
    n: usize,
    offsets: Vec<usize>,
    targets: Vec<u32>,
    costs: Vec<f64>,
}

impl CostGraph {
    fn new(a: &[Pair], b: &[Pair], p: f64) -> Self {
        let (na, nb) = (a.len(), b.len());
        let da: Vec<f64> = a.iter().map(|x| to_diagonal(x).powf(p)).collect();
        let db: Vec<f64> = b.iter().map(|x| to_diagonal(x).powf(p)).collect();
        // useful[i]: (j, cost) of the pairs worth matching
        let mut useful: Vec<Vec<(u32, f64)>> = vec![Vec::new(); na];
        let mut useful_b: Vec<Vec<u32>> = vec![Vec::new(); nb];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                let c = linf(x, y).powf(p);
                if c < da[i] + db[j] {
                    useful[i].push((j as u32, c));
                    useful_b[j].push(i as u32);
                }
            }
        }
        let n = na + nb;
        let mut g = CostGraph {
            n,
            offsets: vec![0],
            targets: Vec::new(),
            costs: Vec::new(),
        };
        // right vertex ids: b_j = j, a_i' = nb + i
        for (i, row) in useful.iter().enumerate() {
            for &(j, c) in row {
                g.push(j, c);
            }
            g.push((nb + i) as u32, da[i]);
            g.offsets.push(g.targets.len());
        }
        for (j, row) in useful_b.iter().enumerate() {
            g.push(j as u32, db[j]);
            for &i in row {
                g.push((nb + i as usize) as u32, 0.0);
            }
            g.offsets.push(g.targets.len());
        }
        g
    }

    fn push(&mut self, target: u32, cost: f64) {
        self.targets.push(target);
        self.costs.push(cost);
    }

    fn row(&self, u: usize) -> std::ops::Range<usize> {
        self.offsets[u]..self.offsets[u + 1]
    }

    /// The cost of a minimum-cost perfect matching (one exists: every point has its diagonal copy).
    fn min_cost_perfect_matching(&self) -> f64 {
        let mut m = Matching::new(self);
        for s in 0..self.n {
            if m.mate_left[s] == FREE {
                m.augment_from(self, s);
            }
        }
        (0..self.n)
            .map(|u| {
                let v = m.mate_left[u];
                self.row(u)
                    .find(|&e| self.targets[e] == v)
                    .map_or(0.0, |e| self.costs[e])
            })
            .sum()
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
}

/// A heap entry: distance (as ordered bits of a non-negative f64) and right vertex.
type Entry = Reverse<(u64, u32)>;

impl Matching {
    /// Row minima as left potentials, and a greedy matching on the tight edges.
    fn new(g: &CostGraph) -> Self {
        let n = g.n;
        let mut m = Matching {
            mate_left: vec![FREE; n],
            mate_right: vec![FREE; n],
            u: vec![0.0; n],
            v: vec![0.0; n],
            dist: vec![f64::INFINITY; n],
            pred: vec![FREE; n],
            done: vec![false; n],
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
            if d < self.dist[t] {
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
        self.relax(g, s, 0.0, &mut heap);
        let (sink, total) = loop {
            let Some(Reverse((bits, t))) = heap.pop() else {
                unreachable!("every left vertex has its diagonal copy, so a perfect matching exists")
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
