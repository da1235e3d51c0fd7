//! Max-, average- and adaptive-average-pool edges: a window's cells -> the pooled cell, within
//! one channel. Channels whose values are no vertices are skipped.

use super::super::geometry::{adaptive_window, valid_range};
use super::super::plan::GraphOp;
use super::super::sink::{Blocks, EdgeSink, BLOCK, NO_EDGE};
use super::super::units::NO_UNIT;
use crate::spec::Pool2d;

/// Every real (unpadded) cell of every window -> pooled unit, weight |a| / divisor (1 for max
/// pools with every window unit, kh * kw for average pools).
pub(in crate::topology::graph) fn pool_edges<S: EdgeSink>(
    g: &GraphOp,
    p: &Pool2d,
    a: &[f32],
    divisor: f32,
    sink: &mut S,
) {
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let [ch_n, h, w] = g.in_chw;
    let [_, oh, ow] = g.out_chw;
    for ch in 0..ch_n {
        if g.channel_units[ch] == NO_UNIT {
            continue;
        }
        let plane = &a[ch * h * w..(ch + 1) * h * w];
        let src_base = g.channel_units[ch] as usize;
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
    a: &[f32],
    sink: &mut S,
) {
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let [ch_n, h, w] = g.in_chw;
    let [_, oh, ow] = g.out_chw;
    for ch in 0..ch_n {
        let channel_unit = g.channel_units[ch];
        if channel_unit == NO_UNIT {
            continue;
        }
        let plane = &a[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            for x in 0..ow {
                if let Some((v, idx)) = window_argmax(plane, [h, w], p, [y, x]) {
                    out.put(
                        v.abs(),
                        channel_unit + idx as u32,
                        g.dst_offset + (ch * oh * ow + y * ow + x) as u32,
                    );
                }
            }
        }
    }
    out.finish();
}

/// Every cell of every adaptive window -> pooled unit, weight |a| / (window rows * window
/// columns); order: channel, output row, output column, window row, window column.
pub(in crate::topology::graph) fn adaptive_pool_edges<S: EdgeSink>(
    g: &GraphOp,
    a: &[f32],
    sink: &mut S,
) {
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let [ch_n, h, w] = g.in_chw;
    let [_, oh, ow] = g.out_chw;
    for ch in 0..ch_n {
        let channel_unit = g.channel_units[ch];
        if channel_unit == NO_UNIT {
            continue;
        }
        let plane = &a[ch * h * w..(ch + 1) * h * w];
        let dst_base = g.dst_offset + (ch * oh * ow) as u32;
        for y in 0..oh {
            let rows = adaptive_window(y, h, oh);
            for x in 0..ow {
                let cols = adaptive_window(x, w, ow);
                let area = (rows.len() * cols.len()) as f32;
                let dst = dst_base + (y * ow + x) as u32;
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let cell = iy * w + ix;
                        out.put(plane[cell].abs() / area, channel_unit + cell as u32, dst);
                    }
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
