//! Max- and average-pool edges: a window's cells -> the pooled cell, within one channel.

use super::super::geometry::valid_range;
use super::super::plan::GraphOp;
use super::super::sink::{Blocks, EdgeSink, BLOCK, NO_EDGE};
use crate::spec::Pool2d;

/// Every real (unpadded) cell of every window -> pooled unit, weight |a| / divisor (1 for max
/// pools with every window unit, kh * kw for average pools).
pub(in crate::topology::graph) fn pool_edges<S: EdgeSink>(
    g: &GraphOp,
    p: &Pool2d,
    src_offset: u32,
    a: &[f32],
    divisor: f32,
    sink: &mut S,
) {
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let [ch_n, h, w] = g.in_chw;
    let [_, oh, ow] = g.out_chw;
    for ch in 0..ch_n {
        let plane = &a[ch * h * w..(ch + 1) * h * w];
        let src_base = src_offset as usize + ch * h * w;
        let dst_base = g.dst_offset as usize + ch * oh * ow;
        for ty in 0..p.kernel[0] {
            let ys = valid_range(h, oh, p.stride[0], ty, p.padding[0]);
            for tx in 0..p.kernel[1] {
                let xs = valid_range(w, ow, p.stride[1], tx, p.padding[1]);
                for y in ys.clone() {
                    let iy = y * p.stride[0] + ty - p.padding[0];
                    for x in xs.clone() {
                        let ix = x * p.stride[1] + tx - p.padding[1];
                        out.put(
                            plane[iy * w + ix].abs() / divisor,
                            (src_base + iy * w + ix) as u32,
                            (dst_base + y * ow + x) as u32,
                        );
                    }
                }
            }
        }
    }
    out.finish();
}

/// Only the window's first maximum (PyTorch's pick) -> pooled unit, weight |a|.
pub(in crate::topology::graph) fn maxpool_argmax_edges<S: EdgeSink>(
    g: &GraphOp,
    p: &Pool2d,
    src_offset: u32,
    a: &[f32],
    sink: &mut S,
) {
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let [ch_n, h, w] = g.in_chw;
    let [_, oh, ow] = g.out_chw;
    for ch in 0..ch_n {
        let plane = &a[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            for x in 0..ow {
                if let Some((v, idx)) = window_argmax(plane, [h, w], p, [y, x]) {
                    out.put(
                        v.abs(),
                        src_offset + (ch * h * w + idx) as u32,
                        g.dst_offset + (ch * oh * ow + y * ow + x) as u32,
                    );
                }
            }
        }
    }
    out.finish();
}

/// The first maximum of the window of output cell `[y, x]` in row-major window order, as (value,
/// index in `plane`); None when the window holds no real cell.
#[inline]
fn window_argmax(
    plane: &[f32],
    [h, w]: [usize; 2],
    p: &Pool2d,
    [y, x]: [usize; 2],
) -> Option<(f32, usize)> {
    let mut best: Option<(f32, usize)> = None;
    for ty in 0..p.kernel[0] {
        let iy = (y * p.stride[0] + ty) as isize - p.padding[0] as isize;
        if iy < 0 || iy >= h as isize {
            continue;
        }
        for tx in 0..p.kernel[1] {
            let ix = (x * p.stride[1] + tx) as isize - p.padding[1] as isize;
            if ix < 0 || ix >= w as isize {
                continue;
            }
            let idx = iy as usize * w + ix as usize;
            if best.is_none_or(|(v, _)| plane[idx] > v) {
                best = Some((plane[idx], idx));
            }
        }
    }
    best
}
