//! Handing over the heavy edges of a weighed 64-wide chunk, shared by the dense and conv kernels:
//! the chunk is weighed and compared with vector instructions (`vector`), and only the edges
//! heavier than the split are handed over.

use super::super::sink::{Blocks, EdgeSink};
use super::vector::Masks;

/// Hands the edges of `weights` whose bit is set in `masks.heavy` to `out`, in order; `ends(k)`
/// gives edge k's (src, dst). Returns how many nonzero edges it left out as lighter.
#[inline(always)]
pub(super) fn put_heavier<S: EdgeSink>(
    out: &mut Blocks<S>,
    weights: &[f32; 64],
    masks: Masks,
    ends: impl Fn(usize) -> (u32, u32),
) -> usize {
    let mut heavy = masks.heavy;
    while heavy != 0 {
        let k = heavy.trailing_zeros() as usize;
        let (src, dst) = ends(k);
        out.put(weights[k], src, dst);
        heavy &= heavy - 1;
    }
    masks.light as usize
}
