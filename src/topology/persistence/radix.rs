//! The stable sort of edges by weight, heaviest first: an LSD radix sort on the f32 bits.

use crate::topology::graph::{Edge, NO_EDGE};

/// Sorts edges by weight, heaviest first, keeping the given order among equal weights.
pub fn sort_heaviest_first(edges: &mut [Edge], scratch: &mut Vec<Edge>) {
    scratch.resize(edges.len(), NO_EDGE);
    radix_sort_heaviest_first(edges, scratch);
}

/// Stable sort, heaviest first, with `tmp` (at least as long) as scratch. Weights are
/// non-negative and finite, so their IEEE bits order like the values; an LSD radix sort on the
/// complemented bits (3 passes of 11 bits) beats a comparison sort several times over.
pub(super) fn radix_sort_heaviest_first(edges: &mut [Edge], tmp: &mut [Edge]) {
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

    #[test]
    fn radix_sort_is_stable_and_descending() {
        let mut edges: Vec<Edge> = (0..1000u32)
            .map(|i| Edge {
                weight: ((i * 7919) % 97) as f32 * 0.25 + 1e-30,
                src: i,
                dst: 0,
            })
            .collect();
        let mut expect = edges.clone();
        expect.sort_by(|a, b| b.weight.partial_cmp(&a.weight).unwrap());
        let mut scratch = Vec::new();
        sort_heaviest_first(&mut edges, &mut scratch);
        assert_eq!(edges, expect);
    }
}
