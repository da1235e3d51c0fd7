//! Conv2d edges, enumerated from the shapes (stride, padding, dilation) without any unrolled
//! matrix: for each kernel tap the valid output rows and columns are computed up front, so the
//! inner loops have no bounds checks on padding. Grouped convs (depthwise included) link an
//! output channel only to the input channels of its group.

use std::cell::Cell;
use std::ops::Range;

use super::super::geometry::valid_range;
use super::super::plan::GraphOp;
use super::super::sink::{Blocks, EdgeSink, BLOCK, NO_EDGE, NO_LABEL};
use super::super::units::NO_UNIT;
use super::heavy::put_heavier;
use super::vector::{compare, low_bits, unconnected, weigh_scaled, Isa};
use crate::spec::Conv2d;

/// Input cell -> output cell for each kernel tap reading it, weight |w * a|, in the order of
/// `conv_runs`.
pub(in crate::topology::graph) fn conv_edges<S: EdgeSink>(
    g: &GraphOp,
    c: &Conv2d,
    a: &[f32],
    sink: &mut S,
) {
    match (sink.keeps_heavier_than(), sink.connected_labels()) {
        (Some(split), None) => heavy_conv_edges(g, c, a, split, sink),
        (above, Some(labels)) => {
            // Edges between units the sink knows connected are skipped unweighed, and so are
            // runs lighter than the sink's floor.
            let src_labels = input_labels(g, labels);
            let dst = g.dst_offset as usize;
            let dst_labels = labels[dst..][..g.out_chw.iter().product()].to_vec();
            let labels = Labels {
                src: &src_labels,
                dst: &dst_labels,
            };
            unconnected_conv_edges(g, c, a, labels, above, sink)
        }
        (None, None) => all_conv_edges(g, c, a, sink),
    }
}

/// The label of each input value, by flat index (`NO_LABEL` for values that are no vertices).
fn input_labels(g: &GraphOp, labels: &[u32]) -> Vec<u32> {
    let plane = g.in_chw[1] * g.in_chw[2];
    let mut out = vec![NO_LABEL; g.operand_len()];
    for (channel, &unit) in out.chunks_mut(plane).zip(&g.channel_units) {
        if unit != NO_UNIT {
            channel.copy_from_slice(&labels[unit as usize..][..plane]);
        }
    }
    out
}

/// The component label that all of a channel's units carry, if one does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum ChannelLabel {
    /// The channel has no units (of those asked about).
    Empty,
    One(u32),
    /// Two labels, or a unit without one.
    Mixed,
}

impl ChannelLabel {
    fn of(mut labels: impl Iterator<Item = u32>) -> Self {
        let Some(first) = labels.next() else {
            return ChannelLabel::Empty;
        };
        if first != NO_LABEL && labels.all(|l| l == first) {
            ChannelLabel::One(first)
        } else {
            ChannelLabel::Mixed
        }
    }
}

/// For a sink that keeps only edges heavier than `split`: weighed in 64-wide chunks of a run,
/// handing over only the heavier edges. A run whose weight times its input row's largest |a| is
/// not heavier is skipped unweighed: rounding is monotone, so none of its edges is heavier either.
/// Its edges are then counted from running counts of nonzero inputs along the run's step (exact
/// when the weight times the row's smallest nonzero |a| does not round to 0, which is checked).
fn heavy_conv_edges<S: EdgeSink>(g: &GraphOp, c: &Conv2d, a: &[f32], split: f32, sink: &mut S) {
    let dst_offset = g.dst_offset as usize;
    let [_, h, w] = g.in_chw;
    let rows = RowStats::new(a, w, c.stride[1]);
    let taps = TapStats::new(g, c, &rows);
    let light = Cell::new(0usize);
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(&mut *sink, &mut block);
    let mut weights = [0.0f32; 64];
    let isa = Isa::detected();
    debug_assert_eq!(rows.max_abs.len(), g.in_chw[0] * h);
    conv_runs(
        g,
        c,
        |_, _| false,
        // The same test for all of a tap's runs at once: most taps of a wide conv are light.
        |tap| match taps.light_edges(tap, split) {
            Some(n) => {
                light.set(light.get() + n);
                true
            }
            None => false,
        },
        |run| {
            let (wv, src, step, len, row) = (run.weight, run.src, run.step, run.len, run.row);
            let none_heavy = (wv * rows.max_abs[row]).abs() <= split;
            if none_heavy && (wv * rows.min_nonzero_abs[row]) != 0.0 {
                light.set(light.get() + rows.nonzero(src, step, len));
                return;
            }
            for start in (0..len).step_by(64) {
                let n = (len - start).min(64);
                let masks = if step == 1 {
                    weigh_scaled(isa, wv, &a[src + start..][..n], split, &mut weights)
                } else {
                    for (k, slot) in weights[..n].iter_mut().enumerate() {
                        *slot = (wv * a[src + (start + k) * step]).abs();
                    }
                    compare(isa, &weights, n, split)
                };
                let first_src = run.src_unit + start * step;
                let first_dst = dst_offset + run.dst + start;
                let n_light = put_heavier(&mut out, &weights, masks, |k| {
                    ((first_src + k * step) as u32, (first_dst + k) as u32)
                });
                light.set(light.get() + n_light);
            }
        },
    );
    out.finish();
    sink.skipped(light.get());
}

/// The input rows (channel-relative y) that tap row `ty` reads, one per output row it reaches.
fn tap_rows(g: &GraphOp, c: &Conv2d, ty: usize) -> impl Iterator<Item = usize> {
    let tap_y = ty * c.dilation[0];
    let (stride, padding) = (c.stride[0], c.padding[0]);
    let ys = valid_range(g.in_chw[1], g.out_chw[1], stride, tap_y, padding);
    ys.map(move |y| y * stride + tap_y - padding)
}

/// The output columns tap column `tx` reaches, and the input column it reads for the first of
/// them (0 when it reaches none).
#[inline(always)]
fn tap_columns(g: &GraphOp, c: &Conv2d, tx: usize) -> (Range<usize>, usize) {
    let tap_x = tx * c.dilation[1];
    let xs = valid_range(g.in_chw[2], g.out_chw[2], c.stride[1], tap_x, c.padding[1]);
    let ix0 = if xs.is_empty() {
        0
    } else {
        xs.start * c.stride[1] + tap_x - c.padding[1]
    };
    (xs, ix0)
}

/// For each (input channel, tap row), the largest of `row_max` over the input rows it reads.
fn tap_row_max(g: &GraphOp, c: &Conv2d, row_max: &[f32]) -> Vec<f32> {
    let [ci, h, _] = g.in_chw;
    let mut out = Vec::with_capacity(ci * c.kernel[0]);
    for ch in 0..ci {
        for ty in 0..c.kernel[0] {
            out.push(tap_rows(g, c, ty).fold(0.0f32, |m, iy| m.max(row_max[ch * h + iy])));
        }
    }
    out
}

/// Per-tap facts that let the heavy pass skip all of a tap's runs unweighed. A tap's runs read
/// the same inputs for every output channel, so these are computed once per input channel.
struct TapStats {
    kernel: [usize; 2],
    /// Per (input channel, tap row): the largest |a| of the rows it reads.
    max_abs: Vec<f32>,
    /// Per (input channel, tap row): the smallest nonzero |a| of the rows it reads.
    min_nonzero_abs: Vec<f32>,
    /// Per (input channel, tap row, tap column): how many nonzero inputs its runs read.
    nonzero: Vec<usize>,
}

impl TapStats {
    fn new(g: &GraphOp, c: &Conv2d, rows: &RowStats) -> Self {
        let [ci, h, w] = g.in_chw;
        let [kh, kw] = c.kernel;
        let mut min_nonzero_abs = Vec::with_capacity(ci * kh);
        let mut nonzero = Vec::with_capacity(ci * kh * kw);
        for ch in 0..ci {
            for ty in 0..kh {
                let smallest = |m: f32, iy| m.min(rows.min_nonzero_abs[ch * h + iy]);
                min_nonzero_abs.push(tap_rows(g, c, ty).fold(f32::INFINITY, smallest));
                for tx in 0..kw {
                    let (xs, ix0) = tap_columns(g, c, tx);
                    let count =
                        |iy: usize| rows.nonzero((ch * h + iy) * w + ix0, c.stride[1], xs.len());
                    let runs = tap_rows(g, c, ty).filter(|_| !xs.is_empty());
                    nonzero.push(runs.map(count).sum());
                }
            }
        }
        TapStats {
            kernel: c.kernel,
            max_abs: tap_row_max(g, c, &rows.max_abs),
            min_nonzero_abs,
            nonzero,
        }
    }

    /// How many (light) edges the tap has when none is heavier than `split` and the count is
    /// exact (the run test of `heavy_conv_edges`, for all its rows at once); else None.
    fn light_edges(&self, tap: Tap, split: f32) -> Option<usize> {
        let i = tap.channel * self.kernel[0] + tap.ty;
        let none_heavy = (tap.weight * self.max_abs[i]).abs() <= split;
        (none_heavy && tap.weight * self.min_nonzero_abs[i] != 0.0)
            .then(|| self.nonzero[i * self.kernel[1] + tap.tx])
    }
}

/// Per-row facts about a conv's input that let the heavy pass skip runs unweighed.
struct RowStats {
    /// The largest |a| of each input row (rows of `width` values).
    max_abs: Vec<f32>,
    /// The smallest nonzero |a| of each input row (infinity for a row of zeros).
    min_nonzero_abs: Vec<f32>,
    /// `nonzero_through[i]`: how many of a[i], a[i - step], a[i - 2 step], ... are nonzero.
    nonzero_through: Vec<u32>,
    step: usize,
}

/// The largest |a| of each input row (rows of `width` values).
fn row_max_abs(a: &[f32], width: usize) -> Vec<f32> {
    a.chunks(width)
        .map(|row| row.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .collect()
}

impl RowStats {
    fn new(a: &[f32], width: usize, step: usize) -> Self {
        let max_abs = row_max_abs(a, width);
        let smallest = |m: f32, v: &f32| if *v == 0.0 { m } else { m.min(v.abs()) };
        let min_nonzero_abs = a
            .chunks(width)
            .map(|row| row.iter().fold(f32::INFINITY, smallest))
            .collect();
        let mut nonzero_through = vec![0u32; a.len()];
        for i in 0..a.len() {
            let before = if i >= step {
                nonzero_through[i - step]
            } else {
                0
            };
            nonzero_through[i] = before + (a[i] != 0.0) as u32;
        }
        RowStats {
            max_abs,
            min_nonzero_abs,
            nonzero_through,
            step,
        }
    }

    /// How many of a[src], a[src + step], ..., `len` values in all, are nonzero.
    fn nonzero(&self, src: usize, step: usize, len: usize) -> usize {
        debug_assert_eq!(step, self.step);
        let last = self.nonzero_through[src + (len - 1) * step];
        let before = if src >= step {
            self.nonzero_through[src - step]
        } else {
            0
        };
        (last - before) as usize
    }
}

/// The component labels of a conv's input values (by flat index) and of its output units.
#[derive(Clone, Copy)]
struct Labels<'a> {
    src: &'a [u32],
    dst: &'a [u32],
}

/// For a sink with component labels: only edges whose ends carry different labels (or none).
/// With a floor (`above` >= 0: the sink keeps only heavier edges), a run whose weight times its
/// input row's largest |a| is not heavier is skipped unweighed, as in `heavy_conv_edges`.
fn unconnected_conv_edges<S: EdgeSink>(
    g: &GraphOp,
    c: &Conv2d,
    a: &[f32],
    labels: Labels,
    above: Option<f32>,
    sink: &mut S,
) {
    let (src_labels, dst_labels) = (labels.src, labels.dst);
    // (The last band's floor is below every weight: nothing to skip.)
    let floor = above.filter(|&above| above >= 0.0);
    let row_max = match floor {
        Some(_) => row_max_abs(a, g.in_chw[2]),
        None => Vec::new(),
    };
    let tap_max = match floor {
        Some(_) => tap_row_max(g, c, &row_max),
        None => Vec::new(),
    };
    let light_tap = |tap: Tap| {
        floor.is_some_and(|floor| {
            let max = tap_max[tap.channel * c.kernel[0] + tap.ty];
            (tap.weight * max).abs() <= floor
        })
    };
    let dst_offset = g.dst_offset as usize;
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let isa = Isa::detected();
    let [_, h, w] = g.in_chw;
    let [_, oh, ow] = g.out_chw;
    let inputs: Vec<ChannelLabel> = (src_labels.chunks(h * w).zip(a.chunks(h * w)))
        .map(|(labels, a)| {
            ChannelLabel::of(
                labels
                    .iter()
                    .zip(a)
                    .filter(|(_, &v)| v != 0.0)
                    .map(|(&l, _)| l),
            )
        })
        .collect();
    let outputs: Vec<ChannelLabel> = dst_labels
        .chunks(oh * ow)
        .map(|labels| ChannelLabel::of(labels.iter().copied()))
        .collect();
    // A pair of channels whose edges all join units of one component has no edge to hand over.
    let connected = |o: usize, ch: usize| match (inputs[ch], outputs[o]) {
        (ChannelLabel::Empty, _) => true,
        (ChannelLabel::One(a), ChannelLabel::One(b)) => a == b,
        _ => false,
    };
    // Inputs at 0 have no edges, whatever their labels: left out before anything is weighed.
    let nonzero = NonzeroBits::new(a);
    conv_runs(g, c, connected, light_tap, |run| {
        let (wv, src, step, dst, len) = (run.weight, run.src, run.step, run.dst, run.len);
        if floor.is_some_and(|floor| (wv * row_max[run.row]).abs() <= floor) {
            return;
        }
        let src_unit = run.src_unit;
        if step == 1 {
            // Labels compared 64 at a time; most edges join connected units and are never weighed.
            for start in (0..len).step_by(64) {
                let n = (len - start).min(64);
                let (s, d) = (src + start, dst + start);
                let mut open = unconnected(isa, &src_labels[s..][..n], &dst_labels[d..][..n]);
                open &= nonzero.window(s, n);
                while open != 0 {
                    let k = open.trailing_zeros() as usize;
                    let unit = (src_unit + start + k) as u32;
                    out.put((wv * a[s + k]).abs(), unit, (dst_offset + d + k) as u32);
                    open &= open - 1;
                }
            }
            return;
        }
        for k in 0..len {
            let (s, d) = (src + k * step, dst + k);
            let open = src_labels[s] != dst_labels[d] || src_labels[s] == NO_LABEL;
            if open && a[s] != 0.0 {
                let weight = (wv * a[s]).abs();
                out.put(
                    weight,
                    (src_unit + k * step) as u32,
                    (dst_offset + d) as u32,
                );
            }
        }
    });
    out.finish();
}

/// One bit per input value, set when it is nonzero (zero inputs have no edges).
struct NonzeroBits(Vec<u64>);

impl NonzeroBits {
    fn new(a: &[f32]) -> Self {
        // One word of padding, so that `window` may always read the word after.
        let mut bits = vec![0u64; a.len() / 64 + 2];
        for (word, chunk) in bits.iter_mut().zip(a.chunks(64)) {
            for (k, &x) in chunk.iter().enumerate() {
                *word |= ((x != 0.0) as u64) << k;
            }
        }
        NonzeroBits(bits)
    }

    /// Bits `start .. start + n` (n <= 64) as the low bits of a word.
    #[inline(always)]
    fn window(&self, start: usize, n: usize) -> u64 {
        let (word, offset) = (start / 64, start % 64);
        let low = self.0[word] >> offset;
        // (A shift by 64 would overflow: the word after adds nothing at offset 0.)
        let high = (self.0[word + 1] << 1) << (63 - offset);
        (low | high) & low_bits(n)
    }
}

/// Every edge.
fn all_conv_edges<S: EdgeSink>(g: &GraphOp, c: &Conv2d, a: &[f32], sink: &mut S) {
    let dst_offset = g.dst_offset as usize;
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    conv_runs(
        g,
        c,
        |_, _| false,
        |_| false,
        |run| {
            for k in 0..run.len {
                let (s, d) = (run.src + k * run.step, run.dst + k);
                out.put(
                    (run.weight * a[s]).abs(),
                    (run.src_unit + k * run.step) as u32,
                    (dst_offset + d) as u32,
                );
            }
        },
    );
    out.finish();
}

/// One run of a conv's edges: they share a nonzero kernel weight and an output row. Edge k of the
/// run joins input `src + k * step` (unit `src_unit + k * step`) to output `dst + k` (indices
/// within the op's input and output); all its inputs lie in input row `row` (channel * height + y).
#[derive(Clone, Copy)]
struct Run {
    weight: f32,
    src: usize,
    step: usize,
    dst: usize,
    len: usize,
    src_unit: usize,
    row: usize,
}

/// One kernel tap of an (output channel, input channel) pair: all the runs that share its weight.
#[derive(Clone, Copy)]
struct Tap {
    weight: f32,
    channel: usize,
    ty: usize,
    tx: usize,
}

/// Calls `run` for each run of a conv's edges, in enumeration order. Order: output channel,
/// input channel of its group, tap row, tap column, output row; input channels that are no
/// vertices are skipped, and so are the (output channel, input channel) pairs for which `skip`
/// says true and the taps (all their runs) for which `skip_tap` does.
#[inline(always)]
fn conv_runs(
    g: &GraphOp,
    c: &Conv2d,
    skip: impl Fn(usize, usize) -> bool,
    mut skip_tap: impl FnMut(Tap) -> bool,
    mut run: impl FnMut(Run),
) {
    let [ci, h, w] = g.in_chw;
    let [co, oh, ow] = g.out_chw;
    let [kh, kw] = c.kernel;
    // Input and output channels per group.
    let (group_in, group_out) = (ci / c.groups, co / c.groups);
    for o in 0..co {
        let first_channel = o / group_out * group_in;
        for k in 0..group_in {
            let ch = first_channel + k;
            let channel_unit = g.channel_units[ch];
            if channel_unit == NO_UNIT || skip(o, ch) {
                continue;
            }
            for ty in 0..kh {
                let tap_y = ty * c.dilation[0];
                let ys = valid_range(h, oh, c.stride[0], tap_y, c.padding[0]);
                for tx in 0..kw {
                    let wv = g.weight[((o * group_in + k) * kh + ty) * kw + tx];
                    if wv == 0.0 {
                        continue;
                    }
                    let (xs, ix0) = tap_columns(g, c, tx);
                    let tap = Tap {
                        weight: wv,
                        channel: ch,
                        ty,
                        tx,
                    };
                    if xs.is_empty() || skip_tap(tap) {
                        continue;
                    }
                    for y in ys.clone() {
                        let iy = y * c.stride[0] + tap_y - c.padding[0];
                        let in_plane = iy * w + ix0;
                        run(Run {
                            weight: wv,
                            src: ch * h * w + in_plane,
                            step: c.stride[1],
                            dst: (o * oh + y) * ow + xs.start,
                            len: xs.len(),
                            src_unit: channel_unit as usize + in_plane,
                            row: ch * h + iy,
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NonzeroBits;

    #[test]
    fn nonzero_windows_match_the_values() {
        // Zeros at irregular places, across word boundaries, up to the last value.
        let a: Vec<f32> = (0..200)
            .map(|i| {
                if i % 3 == 0 || i % 7 == 2 {
                    0.0
                } else {
                    i as f32
                }
            })
            .collect();
        let bits = NonzeroBits::new(&a);
        for start in 0..a.len() {
            for n in 0..=64.min(a.len() - start) {
                let expect = (0..n).fold(0u64, |m, k| m | ((a[start + k] != 0.0) as u64) << k);
                assert_eq!(bits.window(start, n), expect, "start {start}, n {n}");
            }
        }
    }
}
