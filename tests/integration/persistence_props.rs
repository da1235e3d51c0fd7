//! Property tests: our union-find persistence equals a brute-force boundary-matrix reduction.

use actopo::topology::{
    sort_heaviest_first, Diagram, Edge, EdgeSink, EdgeSource, HomologyOptions, Persistence, Summary,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// A stored edge list as a graph that `compute_from` can enumerate again and again (actopo's own
/// graphs are enumerated from the layers instead).
struct StoredEdges<'a>(&'a [Edge]);

impl EdgeSource for StoredEdges<'_> {
    fn max_edges(&self) -> usize {
        self.0.len()
    }

    fn for_each_edge<S: EdgeSink>(&self, sink: &mut S) {
        for block in self.0.chunks(256) {
            sink.extend(block);
        }
    }
}

/// Standard persistence algorithm over Z/2 on the full boundary matrix, written independently of
/// the union-find: simplices ordered by decreasing value, vertices before edges on ties, vertex
/// births computed directly as the largest incident weight.
/// Returns (finite H0 pairs, essential H0 births, H1 births), each sorted descending.
pub(crate) fn brute_force(edges: &[Edge], n_units: usize) -> (Vec<(f32, f32)>, Vec<f32>, Vec<f32>) {
    let mut birth = vec![f32::NEG_INFINITY; n_units];
    for e in edges {
        birth[e.src as usize] = birth[e.src as usize].max(e.weight);
        birth[e.dst as usize] = birth[e.dst as usize].max(e.weight);
    }
    // (value, dim, index into vertices or edges)
    let mut simplices: Vec<(f32, u8, usize)> = Vec::new();
    for (v, &b) in birth.iter().enumerate() {
        if b > f32::NEG_INFINITY {
            simplices.push((b, 0, v));
        }
    }
    for (i, e) in edges.iter().enumerate() {
        simplices.push((e.weight, 1, i));
    }
    simplices.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap()
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    let mut position = vec![usize::MAX; n_units];
    for (pos, s) in simplices.iter().enumerate() {
        if s.1 == 0 {
            position[s.2] = pos;
        }
    }
    // Reduced columns (sorted row positions) and which column owns each pivot row.
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); simplices.len()];
    let mut pivot_owner: Vec<Option<usize>> = vec![None; simplices.len()];
    let (mut h0, mut h1) = (Vec::new(), Vec::new());
    for pos in 0..simplices.len() {
        let (value, dim, idx) = simplices[pos];
        if dim == 0 {
            continue;
        }
        let e = edges[idx];
        let mut col = vec![position[e.src as usize], position[e.dst as usize]];
        col.sort();
        while let Some(owner) = col.last().and_then(|&low| pivot_owner[low]) {
            // col += columns[owner] (mod 2)
            let mut sum: Vec<usize> = Vec::new();
            let (a, b) = (&col, &columns[owner]);
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                if j == b.len() || (i < a.len() && a[i] < b[j]) {
                    sum.push(a[i]);
                    i += 1;
                } else if i == a.len() || b[j] < a[i] {
                    sum.push(b[j]);
                    j += 1;
                } else {
                    i += 1;
                    j += 1;
                }
            }
            col = sum;
        }
        match col.last() {
            None => h1.push(value),
            Some(&low) => {
                pivot_owner[low] = Some(pos);
                h0.push((simplices[low].0, value));
            }
        }
        columns[pos] = col;
    }
    let mut essential: Vec<f32> = simplices
        .iter()
        .enumerate()
        .filter(|(pos, s)| s.1 == 0 && pivot_owner[*pos].is_none())
        .map(|(_, s)| s.0)
        .collect();
    h0.sort_by(|a, b| b.partial_cmp(a).unwrap());
    essential.sort_by(|a, b| b.partial_cmp(a).unwrap());
    h1.sort_by(|a, b| b.partial_cmp(a).unwrap());
    (h0, essential, h1)
}

fn ours(edges: &[Edge], n_units: usize, opts: HomologyOptions) -> Diagram {
    let mut p = Persistence::new();
    let mut d = Diagram::default();
    let mut e = edges.to_vec();
    p.compute(&mut e, n_units, opts, &mut d);
    d
}

fn graphs() -> impl Strategy<Value = (usize, Vec<Edge>)> {
    (2usize..14)
        .prop_flat_map(|n| {
            let edge =
                (0..n as u32, 0..n as u32, 1u8..6).prop_filter_map("no loops", |(a, b, w)| {
                    (a != b).then_some(Edge {
                        weight: w as f32 * 0.5,
                        src: a,
                        dst: b,
                    })
                });
            (Just(n), proptest::collection::vec(edge, 0..40))
        })
        .prop_map(|(n, mut edges)| {
            // no multi-edges: keep the first of each unordered pair
            let mut seen = std::collections::HashSet::new();
            edges.retain(|e| seen.insert((e.src.min(e.dst), e.src.max(e.dst))));
            (n, edges)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn union_find_matches_matrix_reduction((n, edges) in graphs(), keep_zero in any::<bool>()) {
        let opts = HomologyOptions { keep_zero_persistence: keep_zero, h1_diagram: true };
        let d = ours(&edges, n, opts);
        let (h0, essential, h1) = brute_force(&edges, n);
        let expected_h0: Vec<(f32, f32)> = h0.into_iter().filter(|(b, d)| keep_zero || b != d).collect();
        let mut got_h0: Vec<(f32, f32)> = d.h0.iter().map(|p| (p.birth, p.death)).collect();
        got_h0.sort_by(|a, b| b.partial_cmp(a).unwrap());
        prop_assert_eq!(got_h0, expected_h0);
        prop_assert_eq!(&d.h0_essential, &essential);
        prop_assert_eq!(&d.h1, &h1);
        prop_assert_eq!(d.h1_count as usize, h1.len());
        let vertices: std::collections::HashSet<u32> = edges.iter().flat_map(|e| [e.src, e.dst]).collect();
        prop_assert_eq!(d.n_vertices as usize, vertices.len());
        // Euler characteristic: |V| - |E| = b0 - b1
        prop_assert_eq!(vertices.len() as i64 - edges.len() as i64, essential.len() as i64 - h1.len() as i64);
        // each killing edge is a real edge with the pair's death as weight
        for p in &d.h0 {
            prop_assert!(edges.iter().any(|e| e.src == p.src && e.dst == p.dst && e.weight == p.death));
        }
    }

    #[test]
    fn diagram_does_not_depend_on_edge_order((n, edges) in graphs(), seed in any::<u64>()) {
        let opts = HomologyOptions { keep_zero_persistence: true, h1_diagram: true };
        let a = ours(&edges, n, opts);
        let mut shuffled = edges.clone();
        // Fisher-Yates with a tiny LCG (deterministic per seed)
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let b = ours(&shuffled, n, opts);
        let sorted = |d: &Diagram| { let mut v: Vec<_> = d.h0.iter().map(|p| (p.birth, p.death)).collect(); v.sort_by(|x, y| y.partial_cmp(x).unwrap()); v };
        prop_assert_eq!(sorted(&a), sorted(&b));
        prop_assert_eq!(&a.h0_essential, &b.h0_essential);
        prop_assert_eq!(&a.h1, &b.h1);
        let (sa, sb) = (Summary::of(&a), Summary::of(&b));
        prop_assert!((sa.h0_total_persistence - sb.h0_total_persistence).abs() < 1e-9);
        prop_assert_eq!(sa.h0_max_persistence, sb.h0_max_persistence);
    }
}

/// Large sparse graphs with many ties: many merges late in the sweep.
fn large_graphs() -> impl Strategy<Value = (usize, Vec<Edge>)> {
    (800usize..6000, 2100usize..12000, 1u32..200, any::<u64>()).prop_map(|(n, m, levels, seed)| {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut edges = Vec::with_capacity(m);
        let mut seen = std::collections::HashSet::new();
        while edges.len() < m {
            let (a, b) = ((next() % n as u64) as u32, (next() % n as u64) as u32);
            if a == b || !seen.insert((a.min(b), a.max(b))) {
                if seen.len() >= n * (n - 1) / 2 {
                    break;
                }
                continue;
            }
            edges.push(Edge {
                weight: (1 + next() % levels as u64) as f32 * 0.125,
                src: a,
                dst: b,
            });
        }
        (n, edges)
    })
}

#[test]
fn large_sparse_graphs_match_matrix_reduction() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..12 {
        let (n, edges) = large_graphs().new_tree(&mut runner).unwrap().current();
        let edges: Vec<Edge> = edges.into_iter().take(2600).collect();
        let d = ours(
            &edges,
            n,
            HomologyOptions {
                keep_zero_persistence: true,
                h1_diagram: true,
            },
        );
        let (h0, essential, h1) = brute_force(&edges, n);
        let mut got: Vec<(f32, f32)> = d.h0.iter().map(|p| (p.birth, p.death)).collect();
        got.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(got, h0);
        assert_eq!(d.h0_essential, essential);
        assert_eq!(d.h1, h1);
    }
}

/// Graphs past the size where `compute` filters cycle edges before sorting: it must give exactly
/// what a full stable sort and sweep give (pairs, killing edges, order, H1).
fn huge_graphs() -> impl Strategy<Value = (usize, Vec<Edge>)> {
    (
        2000usize..20000,
        33_000usize..90_000,
        1u32..5000,
        any::<u64>(),
    )
        .prop_map(|(n, m, levels, seed)| {
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            // duplicates are harmless here: both sides see the same edge list
            let edges = (0..m)
                .map(|_| {
                    let a = (next() % n as u64) as u32;
                    let b = (a + 1 + (next() % (n as u64 - 1)) as u32) % n as u32;
                    Edge {
                        weight: (1 + next() % levels as u64) as f32 / 64.0,
                        src: a,
                        dst: b,
                    }
                })
                .collect();
            (n, edges)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn filtered_compute_equals_a_full_sort_and_sweep((n, edges) in huge_graphs(), keep_zero in any::<bool>(), h1 in any::<bool>()) {
        let opts = HomologyOptions { keep_zero_persistence: keep_zero, h1_diagram: h1 };
        let fast = ours(&edges, n, opts);
        let mut sorted = edges.clone();
        sort_heaviest_first(&mut sorted, &mut Vec::new());
        let mut p = Persistence::new();
        let mut slow = Diagram::default();
        p.compute_sorted(&sorted, n, opts, &mut slow);
        prop_assert_eq!(fast, slow);
    }
}

/// `compute_from` (two enumerations around a split weight) with the split given.
fn two_pass(edges: &[Edge], n: usize, opts: HomologyOptions, splits: Option<Vec<f32>>) -> Diagram {
    let mut p = Persistence::new();
    p.set_splits(splits);
    let mut d = Diagram::default();
    p.compute_from(&StoredEdges(edges), n, opts, &mut d);
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn two_pass_equals_stored_for_any_split((n, edges) in graphs(), splits in proptest::collection::vec(0u8..7, 0..4), placed in any::<bool>(), keep_zero in any::<bool>(), h1 in any::<bool>()) {
        let opts = HomologyOptions { keep_zero_persistence: keep_zero, h1_diagram: h1 };
        // up to 3 splits below, between and above the weights (0.5 .. 2.5), ties included; or
        // placed by actopo
        let split = (!placed).then(|| splits.iter().map(|&s| s as f32 * 0.5).collect());
        prop_assert_eq!(two_pass(&edges, n, opts, split), ours(&edges, n, opts));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn two_pass_equals_stored_on_large_graphs((n, edges) in huge_graphs(), picks in proptest::collection::vec(0usize..1000, 1..4), h1 in any::<bool>()) {
        let opts = HomologyOptions { keep_zero_persistence: false, h1_diagram: h1 };
        let split = Some(picks.iter().map(|&p| edges[p * edges.len() / 1000].weight).collect());
        prop_assert_eq!(two_pass(&edges, n, opts, split), ours(&edges, n, opts));
    }
}

#[test]
fn a_workspace_gives_each_graph_the_same_diagram_whatever_came_before() {
    // Buffers are reused from graph to graph: run graphs in two orders.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let graphs: Vec<(usize, Vec<Edge>)> = (0..6)
        .map(|_| huge_graphs().new_tree(&mut runner).unwrap().current())
        .collect();
    let opts = HomologyOptions::default();
    let mut p = Persistence::new();
    let mut forward = Vec::new();
    for (n, edges) in &graphs {
        let mut d = Diagram::default();
        p.compute_from(&StoredEdges(edges), *n, opts, &mut d);
        assert_eq!(d, ours(edges, *n, opts));
        forward.push(d);
    }
    for (i, (n, edges)) in graphs.iter().enumerate().rev() {
        let mut d = Diagram::default();
        p.compute_from(&StoredEdges(edges), *n, opts, &mut d);
        assert_eq!(d, forward[i]);
    }
}
