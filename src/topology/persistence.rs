//! Superlevel persistence of a weighted graph.
//!
//! Edges are sorted heaviest first (a stable radix sort on the f32 bits) and swept once while
//! tracking connected components. Only edges that merge components need meeting in order, so
//! edges that close cycles are filtered out unsorted wherever possible: `compute` on a stored edge
//! list, `compute_from` on a graph enumerated in weight bands without storing it (the `network`
//! scope; README "How it scales").
//! A vertex is born at the first edge that touches it, which is its heaviest incident edge, so the
//! `max_incident` birth rule costs nothing extra. When an edge joins two components the younger one
//! (smaller oldest birth) dies at the edge's weight (the elder rule); an edge inside one component
//! closes a cycle, an essential H1 class born at its weight.

use std::mem::MaybeUninit;

use super::graph::{Edge, EdgeSink, EdgeSource, WeightSample, NO_EDGE};

/// The `[homology]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HomologyOptions {
    pub keep_zero_persistence: bool,
    pub h1_diagram: bool,
}

/// A finite H0 pair and the edge that killed it (the merge edge; `weight == death`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H0Pair {
    pub birth: f32,
    pub death: f32,
    pub src: u32,
    pub dst: u32,
}

impl H0Pair {
    pub fn persistence(&self) -> f32 {
        self.birth - self.death
    }
}

/// Persistence of one graph. Buffers are reused by `Persistence::compute`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagram {
    pub n_vertices: u64,
    pub n_edges: u64,
    /// Finite H0 pairs kept (zero-persistence ones only when asked), in order of death, heaviest first.
    pub h0: Vec<H0Pair>,
    /// Births of the essential H0 classes (one per connected component), largest first.
    pub h0_essential: Vec<f32>,
    /// Number of essential H1 classes: |E| - |V| + components.
    pub h1_count: u64,
    /// Births of the essential H1 classes, largest first; filled only when `h1_diagram` is set.
    pub h1: Vec<f32>,
}

impl Diagram {
    fn clear(&mut self) {
        self.n_vertices = 0;
        self.n_edges = 0;
        self.h0.clear();
        self.h0_essential.clear();
        self.h1_count = 0;
        self.h1.clear();
    }
}

/// `comp` of a unit that is not (yet) a vertex; the "no label" of `EdgeSink::connected_labels`.
const UNBORN: u32 = super::graph::NO_LABEL;

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

/// Graphs with at least this many edges are filtered before sorting (see `compute`).
const FILTER_MIN: usize = 32 * 1024;

/// `compute_from` aims to sort and sweep this fraction of the edges (the heaviest) first.
/// (Trained CCFF, `cargo bench --bench topology` with ACTOPO_BENCH_TRAINED=1: 0.12-0.14 best;
/// 0.08 is 25% slower, 0.2 9%, 0.3 16%.)
const HEAVY_FRACTION: f64 = 0.13;

/// ... and each large part's heaviest this fraction of edges come in some pass before the last
/// (see `place_splits`). With random CCFF weights the conv edges all outweigh the dense ones: a
/// global quantile alone left the dense layer without heavy edges and made the passes 60% slower
/// than a stored edge list.
const PART_FRACTION: f64 = 0.02;

/// Splits closer than this ratio are merged (each pass enumerates the whole graph). Measured:
/// random-weight CCFF needs its dense layer's band (split ratio 2.9; without it 1.5 ms per input
/// instead of 1.1); on AlexNet-CIFAR, bands for its small late layers cost 16% (hence parts under
/// 20% of the edges get none).
const BAND_RATIO: f32 = 2.0;

/// `compute_from` places the split from about one in this many edge weights.
const SAMPLE_STRIDE: usize = 128;

impl Persistence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes the diagram of the graph whose edges are `edges` over unit ids `0..n_units`.
    /// `edges` is reordered.
    ///
    /// Nearly every edge of an activation graph closes a cycle, and only the |V| - 1 or so edges
    /// that merge components need to be met in sorted order. So large graphs are split at a
    /// sampled pivot: the heaviest quarter is sorted and swept first; then each lighter edge whose
    /// two ends are already in one component is counted as a cycle (H1) without being sorted, and
    /// the rest goes through the same steps until it is small enough to sort whole. Partition, filter and sort are all stable, so edges are met
    /// in exactly the order a full stable sort gives: same pairs, same killing edges.
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
                graph.sample_weights(SAMPLE_STRIDE, &mut self.weight_sample);
                place_splits(&mut self.weight_sample, &mut splits);
            }
        }
        self.passes(graph, &splits, options, out);
        self.splits = splits;
        self.finish(options, out);
    }

    /// `compute_from`'s passes at the given splits (heaviest first).
    fn passes<G: EdgeSource + ?Sized>(
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

    /// The rounds of `compute` on `edges` (reordered), adding to `out`.
    fn reduce(&mut self, edges: &mut [Edge], options: HomologyOptions, out: &mut Diagram) {
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

    fn begin(&mut self, n_units: usize, out: &mut Diagram) {
        out.clear();
        if self.comp.len() < n_units {
            self.comp.resize(n_units, UNBORN);
            self.next.resize(n_units, 0);
            self.size.resize(n_units, 0);
            self.oldest.resize(n_units, 0.0);
        }
    }

    /// One pass over edges sorted heaviest first.
    fn sweep(&mut self, edges: &[Edge], options: HomologyOptions, out: &mut Diagram) {
        for e in edges {
            let w = e.weight;
            // A vertex is born at its first (so heaviest) incident edge: the max_incident rule.
            for v in [e.src, e.dst] {
                let vi = v as usize;
                if self.comp[vi] == UNBORN {
                    self.comp[vi] = v;
                    self.next[vi] = v;
                    self.size[vi] = 1;
                    self.oldest[vi] = w;
                    self.born.push(v);
                }
            }
            let (cu, cv) = (self.comp[e.src as usize], self.comp[e.dst as usize]);
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

    fn finish(&mut self, options: HomologyOptions, out: &mut Diagram) {
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

/// The split weights, heaviest first. The first has about `HEAVY_FRACTION` of all edges above
/// it. A large part of the graph (a big layer) whose weights are on a lighter scale would get
/// few edges above it, leave its units unconnected, and nearly all its edges would survive the
/// next pass: so each large part's `PART_FRACTION` quantile that lies well below the splits so
/// far is a split too, and its band a pass of its own. Parts with under 20% of the sample are
/// left out.
fn place_splits(sample: &mut WeightSample, splits: &mut Vec<f32>) {
    let total = sample.weights.len();
    let mut start = 0;
    for &end in &sample.part_ends {
        let part = &mut sample.weights[start..end];
        if !part.is_empty() && part.len() * 5 >= total {
            splits.push(quantile(part, PART_FRACTION));
        }
        start = end;
    }
    let first = quantile(&mut sample.weights, HEAVY_FRACTION);
    splits.sort_by(|a, b| b.total_cmp(a));
    let mut last = first;
    splits.retain(|&s| {
        let keep = s < last / BAND_RATIO;
        if keep {
            last = s;
        }
        keep
    });
    splits.insert(0, first);
}

/// The weight with about `fraction` of a sample above it.
fn quantile(sample: &mut [f32], fraction: f64) -> f32 {
    if sample.is_empty() {
        return f32::INFINITY;
    }
    let k = ((sample.len() as f64 * fraction) as usize).min(sample.len() - 1);
    let (_, kth, _) = sample.select_nth_unstable_by(k, |a, b| b.total_cmp(a));
    *kth
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

/// Sorts edges by weight, heaviest first, keeping the given order among equal weights.
pub fn sort_heaviest_first(edges: &mut [Edge], scratch: &mut Vec<Edge>) {
    scratch.resize(edges.len(), NO_EDGE);
    radix_sort_heaviest_first(edges, scratch);
}

/// Stable sort, heaviest first, with `tmp` (at least as long) as scratch. Weights are
/// non-negative and finite, so their IEEE bits order like the values; an LSD radix sort on the
/// complemented bits (3 passes of 11 bits) beats a comparison sort several times over.
pub fn radix_sort_heaviest_first(edges: &mut [Edge], tmp: &mut [Edge]) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    const PASSES: usize = 3;
    let n = edges.len();
    if n < 64 {
        edges.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        return;
    }
    let tmp = &mut tmp[..n];
    let key = |e: &Edge| !e.weight.to_bits();
    let mut counts = [[0usize; BUCKETS]; PASSES];
    for e in edges.iter() {
        let k = key(e);
        for (pass, c) in counts.iter_mut().enumerate() {
            c[((k >> (pass as u32 * BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut in_tmp = false;
    for (pass, c) in counts.iter_mut().enumerate() {
        // A pass where every key has the same digit leaves the order unchanged.
        if c.contains(&n) {
            continue;
        }
        let mut sum = 0;
        for slot in c.iter_mut() {
            let here = *slot;
            *slot = sum;
            sum += here;
        }
        let shift = pass as u32 * BITS;
        let (from, to): (&[Edge], &mut [Edge]) = if in_tmp {
            (&*tmp, &mut *edges)
        } else {
            (&*edges, &mut *tmp)
        };
        for e in from {
            let d = ((key(e) >> shift) as usize) & (BUCKETS - 1);
            to[c[d]] = *e;
            c[d] += 1;
        }
        in_tmp = !in_tmp;
    }
    if in_tmp {
        edges.copy_from_slice(tmp);
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
    fn radix_sort_is_stable_and_descending() {
        let mut edges: Vec<Edge> = (0..1000u32)
            .map(|i| e(((i * 7919) % 97) as f32 * 0.25 + 1e-30, i, 0))
            .collect();
        let mut expect = edges.clone();
        expect.sort_by(|a, b| b.weight.partial_cmp(&a.weight).unwrap());
        let mut scratch = Vec::new();
        sort_heaviest_first(&mut edges, &mut scratch);
        assert_eq!(edges, expect);
    }

    #[test]
    fn every_large_part_gets_heavy_edges_in_some_pass() {
        // Part 1: 1000 weights 1..=1000; part 2: 1000 weights a hundred times lighter; part 3:
        // 10 tiny weights (under 20% of the sample: ignored).
        let mut sample = WeightSample::default();
        sample.weights.extend((1..=1000).map(|i| i as f32));
        sample.end_part();
        sample.weights.extend((1..=1000).map(|i| i as f32 / 100.0));
        sample.end_part();
        sample.weights.extend((1..=10).map(|i| i as f32 * 1e-6));
        sample.end_part();
        let mut splits = Vec::new();
        place_splits(&mut sample, &mut splits);
        // 13% of all lies inside part 1 (about 740); part 2 would get no edge above it, so its
        // top 2% (about 9.8) starts a band of its own; part 1's top 2% is above the first split.
        assert_eq!(splits.len(), 2, "{splits:?}");
        assert!(splits[0] > 730.0 && splits[0] < 750.0, "{splits:?}");
        assert!(splits[1] > 9.0 && splits[1] < 10.0, "{splits:?}");
        // One part alone: its own 13% quantile.
        let mut one = WeightSample::default();
        one.weights.extend((1..=1000).map(|i| i as f32));
        one.end_part();
        splits.clear();
        place_splits(&mut one, &mut splits);
        assert_eq!(splits.len(), 1, "{splits:?}");
        assert!(splits[0] > 860.0 && splits[0] < 880.0, "{splits:?}");
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
