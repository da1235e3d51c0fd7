//! The stable sort of edges by weight, heaviest first: an LSD radix sort on the f32 bits.

use crate::topology::graph::{Edge, NO_EDGE};

/// Sorts edges by weight, heaviest first, keeping the given order among equal weights.
pub fn sort_heaviest_first(edges: &mut [Edge], scratch: &mut Vec<Edge>) {
    scratch.resize(edges.len(), NO_EDGE);
    radix_sort_heaviest_first(edges, scratch);
}

/// Stable sort, heaviest first, with `tmp` (at least as long) as scratch. Weights are
/// non-negative and finite, so their IEEE bits order like the values; an LSD radix sort on the
/// complemented bits beats a comparison sort several times over.
pub(super) fn radix_sort_heaviest_first(edges: &mut [Edge], tmp: &mut [Edge]) {
    let n = edges.len();
    if n < 64 {
        edges.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    } else if n < LARGE {
        lsd_radix::<8, 256, 4>(edges, &mut tmp[..n]);
    } else {
        lsd_radix::<11, 2048, 3>(edges, &mut tmp[..n]);
    }
}

/// From this many edges on, three passes of 11 bits; below, four passes of 8 bits, whose
/// counts (4 x 256) take less time to clear and sum than 3 x 2048 do: Filter-Kruskal sorts
/// lists under 2,048 edges, where the counts cost more than moving the edges.
const LARGE: usize = 16 * 1024;

/// The LSD radix sort with `PASSES` digits of `BITS` bits (`BUCKETS` = 2^BITS); `tmp` as long as
/// `edges`.
fn lsd_radix<const BITS: u32, const BUCKETS: usize, const PASSES: usize>(
    edges: &mut [Edge],
    tmp: &mut [Edge],
) {
    let n = edges.len();
    // Both buffers hold exactly the n edges counted below (the scatter relies on it).
    assert_eq!(tmp.len(), n);
    let key = |e: &Edge| !e.weight.to_bits();
    let mut counts = [[0u32; BUCKETS]; PASSES];
    for e in edges.iter() {
        let k = key(e);
        for (pass, c) in counts.iter_mut().enumerate() {
            c[((k >> (pass as u32 * BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut in_tmp = false;
    for (pass, c) in counts.iter_mut().enumerate() {
        // A pass where every key has the same digit leaves the order unchanged.
        if c.contains(&(n as u32)) {
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
            // SAFETY: `c` is the prefix sum of this digit's counts over these same n edges, so
            // every slot handed out is below n (unchecked: the check cost 2% of the demo's worker
            // instructions).
            unsafe { *to.get_unchecked_mut(c[d] as usize) = *e };
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
        for n in [
            10,
            64,
            100,
            1000,
            2047,
            LARGE as u32 - 1,
            LARGE as u32 + 1000,
        ] {
            sorts_stably(n);
        }
    }

    /// Weights crowded near one value (many ties), spread over many octaves, all equal, and two
    /// values far apart.
    #[test]
    fn sorts_like_a_stable_sort_whatever_the_spread() {
        let mut s = 0x9e37_79b9_u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for n in [64, 65, 300, 1500, 5000] {
            for shape in 0..4 {
                let mut draw = |i: u32| match shape {
                    0 => 1.0 + (next() % 50) as f32 * 1e-7,
                    1 => f32::from_bits(0x3000_0000 + next() % 0x1000_0000),
                    2 => 0.25,
                    _ if i.is_multiple_of(3) => 1e-30,
                    _ => 1e30,
                };
                let mut edges: Vec<Edge> = (0..n)
                    .map(|i| Edge {
                        weight: draw(i),
                        src: i,
                        dst: 0,
                    })
                    .collect();
                let mut expect = edges.clone();
                expect.sort_by(|a, b| b.weight.total_cmp(&a.weight));
                let mut scratch = Vec::new();
                sort_heaviest_first(&mut edges, &mut scratch);
                assert_eq!(edges, expect, "{n} edges");
            }
        }
    }

    /// 251 distinct weights (so many ties) whose bits differ in every digit, subnormals included.
    fn sorts_stably(n: u32) {
        let mut edges: Vec<Edge> = (0..n)
            .map(|i| Edge {
                weight: f32::from_bits(((i % 251).wrapping_mul(2_654_435_761) >> 2) & 0x3fff_ffff),
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
