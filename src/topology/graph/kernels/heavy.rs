//! The 64-wide selection of heavy edges shared by the dense and conv kernels: a chunk of weights
//! is compared with vector instructions (no stores), and only the heavier edges are handed over.

use super::super::sink::{Blocks, EdgeSink};

/// Hands the edges of `weights[..n]` heavier than `split` to `out`, in order; `ends(k)` gives
/// edge k's (src, dst). Returns how many nonzero edges it left out as lighter.
#[inline(always)]
pub(super) fn put_heavier<S: EdgeSink>(
    out: &mut Blocks<S>,
    weights: &[f32; 64],
    n: usize,
    split: f32,
    ends: impl Fn(usize) -> (u32, u32),
) -> usize {
    let (nonzero, mut heavy) = masks(weights, n, split);
    let light = (nonzero.count_ones() - heavy.count_ones()) as usize;
    while heavy != 0 {
        let k = heavy.trailing_zeros() as usize;
        let (src, dst) = ends(k);
        out.put(weights[k], src, dst);
        heavy &= heavy - 1;
    }
    light
}

/// For `weights[..n]`: bit k of the first mask is set when weights[k] != 0, of the second when
/// weights[k] > split as well.
#[inline(always)]
fn masks(weights: &[f32; 64], n: usize, split: f32) -> (u64, u64) {
    let valid = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let (nonzero, heavy) = compare(weights, n, split);
    let nonzero = nonzero & valid;
    (nonzero, heavy & nonzero)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn compare(weights: &[f32; 64], n: usize, split: f32) -> (u64, u64) {
    use std::arch::x86_64::*;
    // SAFETY: SSE is part of x86_64; each load reads 4 floats inside `weights`.
    unsafe {
        let (zero, split) = (_mm_setzero_ps(), _mm_set1_ps(split));
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for q in 0..n.div_ceil(4) {
            let v = _mm_loadu_ps(weights.as_ptr().add(4 * q));
            nonzero |= (_mm_movemask_ps(_mm_cmpneq_ps(v, zero)) as u64) << (4 * q);
            heavy |= (_mm_movemask_ps(_mm_cmpgt_ps(v, split)) as u64) << (4 * q);
        }
        (nonzero, heavy)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn compare(weights: &[f32; 64], n: usize, split: f32) -> (u64, u64) {
    let (mut nonzero, mut heavy) = (0u64, 0u64);
    for (k, &weight) in weights[..n].iter().enumerate() {
        nonzero |= ((weight != 0.0) as u64) << k;
        heavy |= ((weight > split) as u64) << k;
    }
    (nonzero, heavy)
}
