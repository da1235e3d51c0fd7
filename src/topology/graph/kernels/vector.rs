//! Chunks of up to 64 edges in the widest vector instructions this CPU has, chosen at run time:
//! weighing them (|w * a|) and comparing with a split, or comparing their ends' component labels.
//! Every variant computes the same IEEE products and compares, so the results are bit for bit
//! the same (tests run each available variant on the same inputs).

use std::sync::OnceLock;

use super::super::sink::NO_LABEL;

/// The vector instruction set the kernels use. `Baseline` is what every target has (SSE on
/// x86_64, scalar code elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

impl Isa {
    /// The widest set this CPU supports (detected once per process).
    pub(crate) fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| *Isa::available().last().unwrap_or(&Isa::Baseline))
    }

    /// Every set this CPU supports, narrowest first.
    pub(crate) fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            // Every CPU with AVX2 has POPCNT; asked anyway, since the variants use it.
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt") {
                out.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512f") {
                    out.push(Isa::Avx512);
                }
            }
        }
        out
    }
}

/// Which edges of a chunk count: bit k of `nonzero` is set when weight k != 0, of `heavy` when
/// it is also heavier than the split; `light` counts the nonzero edges that are not heavy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Masks {
    pub(super) nonzero: u64,
    pub(super) heavy: u64,
    /// Counted here, where the AVX variants have POPCNT (x86-64's baseline counts bits in a
    /// dozen instructions: 22% of ResNet-18's enumeration time before).
    pub(super) light: u32,
}

impl Masks {
    /// Keeps the first `n` bits (lanes past `n` hold stale or padding values).
    #[inline(always)]
    fn first(nonzero: u64, heavy: u64, n: usize) -> Masks {
        let nonzero = nonzero & low_bits(n);
        let heavy = heavy & nonzero;
        Masks {
            nonzero,
            heavy,
            light: nonzero.count_ones() - heavy.count_ones(),
        }
    }
}

/// The lowest `n` bits set (n <= 64): a chunk's valid lanes.
#[inline(always)]
pub(super) fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// `out[k] = |w[k] * a[k]|` for k < w.len() (at most 64, `a` as long), and the chunk's masks.
#[inline(always)]
pub(super) fn weigh_pairs(
    isa: Isa,
    w: &[f32],
    a: &[f32],
    split: f32,
    out: &mut [f32; 64],
) -> Masks {
    debug_assert!(w.len() <= 64 && a.len() == w.len());
    match isa {
        // SAFETY: `Isa::detected` (or the test's `available`) found the CPU feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::pairs_avx512(w, a, split, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::pairs_avx2(w, a, split, out) },
        _ => {
            for ((slot, &w), &x) in out.iter_mut().zip(w).zip(a) {
                *slot = (w * x).abs();
            }
            compare(isa, out, w.len(), split)
        }
    }
}

/// `out[k] = |w * a[k]|` for k < a.len() (at most 64), and the chunk's masks.
#[inline(always)]
pub(super) fn weigh_scaled(isa: Isa, w: f32, a: &[f32], split: f32, out: &mut [f32; 64]) -> Masks {
    debug_assert!(a.len() <= 64);
    match isa {
        // SAFETY: `Isa::detected` (or the test's `available`) found the CPU feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::scaled_avx512(w, a, split, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::scaled_avx2(w, a, split, out) },
        _ => {
            for (slot, &x) in out.iter_mut().zip(a) {
                *slot = (w * x).abs();
            }
            compare(isa, out, a.len(), split)
        }
    }
}

/// Bit k is set when `src[k] != dst[k]` or `src[k] == NO_LABEL` (k < src.len() <= 64, `dst`
/// as long): the edges whose ends are not known to be connected.
#[inline(always)]
pub(super) fn unconnected(isa: Isa, src: &[u32], dst: &[u32]) -> u64 {
    debug_assert!(src.len() <= 64 && dst.len() == src.len());
    match isa {
        // SAFETY: `Isa::detected` (or the test's `available`) found the CPU feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::unconnected_avx512(src, dst) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::unconnected_avx2(src, dst) },
        _ => {
            let mut bits = 0u64;
            for (k, (&s, &d)) in src.iter().zip(dst).enumerate() {
                bits |= ((s != d || s == NO_LABEL) as u64) << k;
            }
            bits
        }
    }
}

/// The masks of `weights[..n]`.
#[inline(always)]
pub(super) fn compare(isa: Isa, weights: &[f32; 64], n: usize, split: f32) -> Masks {
    match isa {
        // SAFETY: `Isa::detected` (or the test's `available`) found the CPU feature.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::compare_avx2(weights, n, split) },
        _ => {
            let (nonzero, heavy) = baseline_compare(weights, n, split);
            Masks::first(nonzero, heavy, n)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn baseline_compare(weights: &[f32; 64], n: usize, split: f32) -> (u64, u64) {
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
fn baseline_compare(weights: &[f32; 64], n: usize, split: f32) -> (u64, u64) {
    let (mut nonzero, mut heavy) = (0u64, 0u64);
    for (k, &weight) in weights[..n].iter().enumerate() {
        nonzero |= ((weight != 0.0) as u64) << k;
        heavy |= ((weight > split) as u64) << k;
    }
    (nonzero, heavy)
}

/// The AVX2 and AVX-512 variants. Compares are `!=` (true for NaN, as SSE's cmpneq) and `>`
/// (false for NaN); products and abs are the same IEEE operations as the scalar code.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{low_bits, Masks, NO_LABEL};
    use std::arch::x86_64::*;

    /// Lanes `16 q ..` of a 64-wide chunk with `n` valid entries.
    #[inline(always)]
    fn lanes16(n: usize, q: usize) -> __mmask16 {
        let left = n - 16 * q;
        if left >= 16 {
            0xffff
        } else {
            (1u16 << left) - 1
        }
    }

    #[target_feature(enable = "avx2,avx512f,popcnt")]
    pub(super) fn pairs_avx512(w: &[f32], a: &[f32], split: f32, out: &mut [f32; 64]) -> Masks {
        let n = w.len();
        let (zero, split) = (_mm512_setzero_ps(), _mm512_set1_ps(split));
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for q in 0..n.div_ceil(16) {
            let m = lanes16(n, q);
            // SAFETY: masked loads read only the `n` floats of `w` and `a`; `out` has 64.
            let p = unsafe {
                let wv = _mm512_maskz_loadu_ps(m, w.as_ptr().add(16 * q));
                let av = _mm512_maskz_loadu_ps(m, a.as_ptr().add(16 * q));
                let p = _mm512_abs_ps(_mm512_mul_ps(wv, av));
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * q), p);
                p
            };
            nonzero |= (_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(p, zero) as u64) << (16 * q);
            heavy |= (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(p, split) as u64) << (16 * q);
        }
        Masks::first(nonzero, heavy, n)
    }

    #[target_feature(enable = "avx2,avx512f,popcnt")]
    pub(super) fn scaled_avx512(w: f32, a: &[f32], split: f32, out: &mut [f32; 64]) -> Masks {
        let n = a.len();
        let (zero, split, wv) = (
            _mm512_setzero_ps(),
            _mm512_set1_ps(split),
            _mm512_set1_ps(w),
        );
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for q in 0..n.div_ceil(16) {
            let m = lanes16(n, q);
            // SAFETY: the masked load reads only the `n` floats of `a`; `out` has 64.
            let p = unsafe {
                let av = _mm512_maskz_loadu_ps(m, a.as_ptr().add(16 * q));
                let p = _mm512_abs_ps(_mm512_mul_ps(wv, av));
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * q), p);
                p
            };
            nonzero |= (_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(p, zero) as u64) << (16 * q);
            heavy |= (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(p, split) as u64) << (16 * q);
        }
        Masks::first(nonzero, heavy, n)
    }

    /// Lanes `8 q ..` of a chunk with `n` valid entries, as a `maskload` mask (sign bit set: load).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes8(n: usize, q: usize) -> __m256i {
        let left = (n - 8 * q).min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(left),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// Up to 64 pairs; lanes past `n` are not read (masked loads) and come out as 0.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn pairs_avx2(w: &[f32], a: &[f32], split: f32, out: &mut [f32; 64]) -> Masks {
        let n = w.len();
        assert!(n <= 64 && a.len() == n);
        let (zero, split) = (_mm256_setzero_ps(), _mm256_set1_ps(split));
        let sign = _mm256_set1_ps(-0.0);
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for q in 0..n.div_ceil(8) {
            let m = lanes8(n, q);
            // SAFETY: masked loads read only the `n` floats of `w` and `a`; `out` has 64.
            let p = unsafe {
                let wv = _mm256_maskload_ps(w.as_ptr().add(8 * q), m);
                let av = _mm256_maskload_ps(a.as_ptr().add(8 * q), m);
                let p = _mm256_andnot_ps(sign, _mm256_mul_ps(wv, av));
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * q), p);
                p
            };
            nonzero |=
                (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(p, zero)) as u64) << (8 * q);
            heavy |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(p, split)) as u64) << (8 * q);
        }
        Masks::first(nonzero, heavy, n)
    }

    /// Up to 64 inputs; lanes past `n` are not read (masked loads) and come out as 0.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn scaled_avx2(w: f32, a: &[f32], split: f32, out: &mut [f32; 64]) -> Masks {
        let n = a.len();
        assert!(n <= 64);
        let (zero, split, wv) = (
            _mm256_setzero_ps(),
            _mm256_set1_ps(split),
            _mm256_set1_ps(w),
        );
        let sign = _mm256_set1_ps(-0.0);
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for q in 0..n.div_ceil(8) {
            // SAFETY: the masked load reads only the `n` floats of `a`; `out` has 64.
            let p = unsafe {
                let av = _mm256_maskload_ps(a.as_ptr().add(8 * q), lanes8(n, q));
                let p = _mm256_andnot_ps(sign, _mm256_mul_ps(wv, av));
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * q), p);
                p
            };
            nonzero |=
                (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(p, zero)) as u64) << (8 * q);
            heavy |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(p, split)) as u64) << (8 * q);
        }
        Masks::first(nonzero, heavy, n)
    }

    #[target_feature(enable = "avx2,avx512f,popcnt")]
    pub(super) fn unconnected_avx512(src: &[u32], dst: &[u32]) -> u64 {
        let n = src.len();
        let none = _mm512_set1_epi32(NO_LABEL as i32);
        let mut bits = 0u64;
        for q in 0..n.div_ceil(16) {
            let m = lanes16(n, q);
            // SAFETY: masked loads read only the `n` labels of each slice.
            let (s, d) = unsafe {
                let s = _mm512_maskz_loadu_epi32(m, src.as_ptr().add(16 * q) as *const i32);
                let d = _mm512_maskz_loadu_epi32(m, dst.as_ptr().add(16 * q) as *const i32);
                (s, d)
            };
            let open = _mm512_cmpneq_epi32_mask(s, d) | _mm512_cmpeq_epi32_mask(s, none);
            bits |= ((open & m) as u64) << (16 * q);
        }
        bits
    }

    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn unconnected_avx2(src: &[u32], dst: &[u32]) -> u64 {
        let n = src.len();
        assert!(n <= 64 && dst.len() == n);
        let none = _mm256_set1_epi32(NO_LABEL as i32);
        let mut bits = 0u64;
        for q in 0..n.div_ceil(8) {
            let m = lanes8(n, q);
            // SAFETY: masked loads read only the `n` labels of each slice.
            let (s, d) = unsafe {
                let s = _mm256_maskload_epi32(src.as_ptr().add(8 * q) as *const i32, m);
                let d = _mm256_maskload_epi32(dst.as_ptr().add(8 * q) as *const i32, m);
                (s, d)
            };
            let same = _mm256_andnot_si256(_mm256_cmpeq_epi32(s, none), _mm256_cmpeq_epi32(s, d));
            let same = _mm256_movemask_ps(_mm256_castsi256_ps(same)) as u64;
            bits |= (!same & 0xff) << (8 * q);
        }
        bits & low_bits(n)
    }

    /// Lanes past `n` (up to the next multiple of 8) are read but masked off by the caller.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn compare_avx2(weights: &[f32; 64], n: usize, split: f32) -> Masks {
        let (zero, split) = (_mm256_setzero_ps(), _mm256_set1_ps(split));
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for q in 0..n.div_ceil(8) {
            // SAFETY: 8 floats at 8 q <= 56, inside `weights`.
            let v = unsafe { _mm256_loadu_ps(weights.as_ptr().add(8 * q)) };
            nonzero |=
                (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as u64) << (8 * q);
            heavy |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, split)) as u64) << (8 * q);
        }
        Masks::first(nonzero, heavy, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values with zeros, negatives, ties with the split and tiny magnitudes.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                match (s >> 60) as u8 {
                    0..=3 => 0.0,
                    4 => 0.5,
                    5 => -0.5,
                    6 => 1e-40,
                    _ => ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn every_variant_weighs_and_compares_the_same() {
        let isas = Isa::available();
        for n in 0..=64 {
            for seed in 0..20u64 {
                let (w, a) = (values(seed, n), values(seed + 1000, n));
                let split = [0.0f32, 0.25, 0.5 * 0.5, 0.1][seed as usize % 4];
                let mut expect = [0.0f32; 64];
                for k in 0..n {
                    expect[k] = (w[k] * a[k]).abs();
                }
                let expect_masks = scalar_masks(&expect[..n], split);
                for &isa in &isas {
                    let mut out = [7.0f32; 64];
                    let masks = weigh_pairs(isa, &w, &a, split, &mut out);
                    assert_eq!(masks, expect_masks, "pairs {isa:?} n={n}");
                    assert_eq!(out[..n], expect[..n], "pairs {isa:?} n={n}");
                    let masks =
                        weigh_scaled(isa, w.first().copied().unwrap_or(1.0), &a, split, &mut out);
                    let scaled: Vec<f32> = a
                        .iter()
                        .map(|&x| (w.first().copied().unwrap_or(1.0) * x).abs())
                        .collect();
                    assert_eq!(masks, scalar_masks(&scaled, split), "scaled {isa:?} n={n}");
                    assert_eq!(out[..n], scaled[..], "scaled {isa:?} n={n}");
                    assert_eq!(
                        compare(isa, &expect, n, split),
                        expect_masks,
                        "compare {isa:?} n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_variant_finds_the_same_unconnected_edges() {
        for n in 0..=64 {
            for seed in 0..20u64 {
                let label = |x: f32| {
                    if x == 0.0 {
                        NO_LABEL
                    } else {
                        (x.abs() * 4.0) as u32
                    }
                };
                let src: Vec<u32> = values(seed, n).into_iter().map(label).collect();
                let dst: Vec<u32> = values(seed + 7, n).into_iter().map(label).collect();
                let mut expect = 0u64;
                for k in 0..n {
                    expect |= ((src[k] != dst[k] || src[k] == NO_LABEL) as u64) << k;
                }
                for isa in Isa::available() {
                    assert_eq!(unconnected(isa, &src, &dst), expect, "{isa:?} n={n}");
                }
            }
        }
    }

    fn scalar_masks(weights: &[f32], split: f32) -> Masks {
        let (mut nonzero, mut heavy) = (0u64, 0u64);
        for (k, &x) in weights.iter().enumerate() {
            nonzero |= ((x != 0.0) as u64) << k;
            heavy |= ((x != 0.0 && x > split) as u64) << k;
        }
        let light = nonzero.count_ones() - heavy.count_ones();
        Masks {
            nonzero,
            heavy,
            light,
        }
    }
}
