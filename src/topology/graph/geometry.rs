//! The shapes of graph ops: which spec ops add edges, how many they can add, and which output
//! positions a kernel tap reads a real (unpadded) cell for, so that kernels need no bounds checks.

use std::ops::Range;

use super::units::OperandUnits;
use crate::spec::{numel, Conv2d, Op, Pool2d};

/// The kind and geometry of a graph op (a spec op that adds edges).
#[derive(Debug, Clone)]
pub(super) enum Geometry {
    Conv(Conv2d),
    Linear,
    MaxPool(Pool2d),
    AvgPool(Pool2d),
    AdaptiveAvgPool,
    Add,
}

impl Geometry {
    /// None for value and shape ops: they add no vertices and no edges.
    pub(super) fn of(op: &Op) -> Option<Geometry> {
        Some(match op {
            Op::Conv2d(c) => Geometry::Conv(c.clone()),
            Op::Linear(_) => Geometry::Linear,
            Op::MaxPool2d(p) => Geometry::MaxPool(p.clone()),
            Op::AvgPool2d(p) => Geometry::AvgPool(p.clone()),
            Op::AdaptiveAvgPool2d { .. } => Geometry::AdaptiveAvgPool,
            Op::Add => Geometry::Add,
            _ => return None,
        })
    }

    /// Upper bound on an op's edge count (every value and weight nonzero), counting only the
    /// input values that are vertices; None when it overflows. `in_chw` is each operand's shape.
    pub(super) fn max_edges(
        &self,
        in_chw: [usize; 3],
        out_chw: [usize; 3],
        operands: &[OperandUnits],
    ) -> Option<usize> {
        let [ci, h, w] = in_chw;
        let [co, oh, ow] = out_chw;
        // Channels whose values are vertices (features, for a linear layer).
        let channels = || operands[0].vertex_values(ci * h * w) / (h * w);
        let (taps_h, taps_w) = match self {
            Geometry::Linear => return channels().checked_mul(co),
            Geometry::Add => {
                let mut values = operands.iter().map(|u| u.vertex_values(ci * h * w));
                return values.try_fold(0usize, |sum, n| sum.checked_add(n));
            }
            Geometry::Conv(c) => (
                axis_taps(h, oh, c.kernel[0], c.stride[0], c.padding[0], c.dilation[0])?,
                axis_taps(w, ow, c.kernel[1], c.stride[1], c.padding[1], c.dilation[1])?,
            ),
            Geometry::MaxPool(p) | Geometry::AvgPool(p) => (
                axis_taps(h, oh, p.kernel[0], p.stride[0], p.padding[0], 1)?,
                axis_taps(w, ow, p.kernel[1], p.stride[1], p.padding[1], 1)?,
            ),
            // Each cell of each window: the windows' rows times their columns.
            Geometry::AdaptiveAvgPool => (
                (0..oh).map(|i| adaptive_window(i, h, oh).len()).sum(),
                (0..ow).map(|j| adaptive_window(j, w, ow).len()).sum(),
            ),
        };
        // A pool reads only its own channel; a conv's input channel feeds its group's outputs.
        let pairs = match self {
            Geometry::Conv(c) => channels().checked_mul(co / c.groups)?,
            _ => channels(),
        };
        pairs.checked_mul(taps_h)?.checked_mul(taps_w)
    }
}

/// The input rows (or columns) that adaptive pooling averages into output row `i` of `out`, from
/// `size`: PyTorch's floor(i * size / out) to ceil((i + 1) * size / out) - 1.
#[inline]
pub(super) fn adaptive_window(i: usize, size: usize, out: usize) -> Range<usize> {
    (i * size / out)..((i + 1) * size).div_ceil(out)
}

/// A shape as [C, H, W]; a flat [F] (or any other rank) is [F, 1, 1].
pub(super) fn chw(shape: &[usize]) -> [usize; 3] {
    match shape {
        [c, h, w] => [*c, *h, *w],
        _ => [numel(shape), 1, 1],
    }
}

/// Number of (output position, kernel tap) pairs along one axis that read a real (unpadded) cell.
/// None when the count overflows (spec limits rule that out on 64-bit).
fn axis_taps(size: usize, out: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    (0..k).try_fold(0usize, |sum, t| {
        let r = valid_range(size, out, s, t.checked_mul(d)?, p);
        sum.checked_add(r.end - r.start)
    })
}

/// Output positions `y` in `0..out` whose input cell `y * s + tap - p` lies in `0..size`.
#[inline]
pub(super) fn valid_range(size: usize, out: usize, s: usize, tap: usize, p: usize) -> Range<usize> {
    // need y*s + tap >= p  and  y*s + tap - p <= size - 1
    let lo = if tap >= p { 0 } else { (p - tap).div_ceil(s) };
    let hi = if tap > size - 1 + p {
        0
    } else {
        ((size - 1 + p - tap) / s + 1).min(out)
    };
    lo..hi.max(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output positions along one axis whose tap `t` reads a real cell, by a plain bounds check.
    fn reads_real_cell(size: usize, out: usize, s: usize, tap: usize, p: usize) -> Vec<usize> {
        (0..out)
            .filter(|&y| {
                let i = (y * s + tap) as isize - p as isize;
                i >= 0 && i < size as isize
            })
            .collect()
    }

    #[test]
    fn valid_range_matches_bounds_check() {
        for size in 1..9 {
            for k in 1..5 {
                for s in 1..4 {
                    for p in 0..3 {
                        for d in 1..3 {
                            let span = d * (k - 1) + 1;
                            if size + 2 * p < span {
                                continue;
                            }
                            let out = (size + 2 * p - span) / s + 1;
                            for t in 0..k {
                                let r = valid_range(size, out, s, t * d, p);
                                assert_eq!(
                                    r.collect::<Vec<_>>(),
                                    reads_real_cell(size, out, s, t * d, p),
                                    "size {size} k {k} s {s} p {p} d {d} t {t}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn edge_bounds_are_checked() {
        let all = [OperandUnits::Contiguous(0)];
        assert_eq!(
            Geometry::Linear.max_edges([usize::MAX, 1, 1], [2, 1, 1], &all),
            None
        );
        assert_eq!(
            Geometry::Linear.max_edges([5, 1, 1], [3, 1, 1], &all),
            Some(15)
        );
        assert_eq!(
            Geometry::Linear.max_edges([5, 1, 1], [3, 1, 1], &[OperandUnits::None]),
            Some(0)
        );
    }

    #[test]
    fn adaptive_windows_follow_pytorch() {
        // 5 rows to 3: [0, 2), [1, 4), [3, 5) (torch.nn.AdaptiveAvgPool2d's start/end indices).
        let windows: Vec<_> = (0..3).map(|i| adaptive_window(i, 5, 3)).collect();
        assert_eq!(windows, [0..2, 1..4, 3..5]);
        // Dividing sizes give plain, disjoint windows.
        let windows: Vec<_> = (0..2).map(|i| adaptive_window(i, 6, 2)).collect();
        assert_eq!(windows, [0..3, 3..6]);
        let geometry = Geometry::AdaptiveAvgPool;
        let all = [OperandUnits::Contiguous(0)];
        // per channel: (2 + 3 + 2) rows x 4 columns
        assert_eq!(geometry.max_edges([2, 5, 4], [2, 3, 1], &all), Some(56));
    }
}
