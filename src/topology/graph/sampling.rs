//! Strided samples of a graph's edge weights, from which persistence places its split weights
//! (docs/persistence.md). A sample need not be exact: the splits change only the speed.

use super::geometry::Geometry;
use super::plan::{GraphOp, GraphPlan};
use super::sink::{Edge, EdgeSink};
use crate::spec::Conv2d;

/// Edge weights sampled from a graph, in parts whose weights may each be on their own scale
/// (the ops of a network).
#[derive(Debug, Default)]
pub struct WeightSample {
    pub(crate) weights: Vec<f32>,
    /// End of each part in `weights`.
    pub(crate) part_ends: Vec<usize>,
}

impl WeightSample {
    pub(crate) fn clear(&mut self) {
        self.weights.clear();
        self.part_ends.clear();
    }

    /// Closes the current part (the weights added since the previous one).
    pub(crate) fn end_part(&mut self) {
        self.part_ends.push(self.weights.len());
    }
}

/// A sink that keeps every `every`-th weight.
pub(super) struct EveryNth<'a> {
    every: usize,
    seen: usize,
    out: &'a mut Vec<f32>,
}

impl<'a> EveryNth<'a> {
    pub(super) fn new(every: usize, out: &'a mut Vec<f32>) -> Self {
        EveryNth {
            every,
            seen: 0,
            out,
        }
    }
}

impl EdgeSink for EveryNth<'_> {
    fn extend(&mut self, edges: &[Edge]) {
        // Every `every`-th edge overall, wherever the blocks start.
        let first = (self.every - self.seen % self.every) % self.every;
        let picked = edges.iter().skip(first).step_by(self.every);
        self.out.extend(picked.map(|e| e.weight));
        self.seen += edges.len();
    }
}

/// Adds about one in `every` of graph op `op`'s edge weights for one (checked) input to `out`.
/// Dense and conv layers hold most edges: they are sampled at strided positions of their
/// (weight, input) pairs without enumerating them; pools are enumerated.
pub(super) fn sample_op(
    plan: &GraphPlan,
    op: usize,
    input: &[f32],
    every: usize,
    out: &mut Vec<f32>,
) {
    let g = &plan.ops[op];
    if g.src_offset.is_none() {
        return;
    }
    match &g.geometry {
        Geometry::Linear => linear_sample(g, input, every, out),
        Geometry::Conv(c) => conv_sample(g, c, input, every, out),
        _ => plan.emit_edges(op, input, &mut EveryNth::new(every, out)),
    }
}

/// Every `every`-th (output, input) pair of a dense layer, as an edge weight when nonzero.
fn linear_sample(g: &GraphOp, a: &[f32], every: usize, out: &mut Vec<f32>) {
    let n_in = g.input_len();
    let picked = (0..g.weight.len()).step_by(every);
    out.extend(
        picked
            .map(|e| (g.weight[e] * a[e % n_in]).abs())
            .filter(|&w| w != 0.0),
    );
}

/// Every `every`-th (output channel, input channel, kernel tap, output position) of a conv, as
/// an edge weight when the tap reads a real cell and the weight is nonzero.
fn conv_sample(g: &GraphOp, c: &Conv2d, a: &[f32], every: usize, out: &mut Vec<f32>) {
    let [ci, h, w] = g.in_chw;
    let [co, oh, ow] = g.out_chw;
    let [kh, kw] = c.kernel;
    for e in (0..co * ci * kh * kw * oh * ow).step_by(every) {
        let (x, rest) = (e % ow, e / ow);
        let (y, tap) = (rest % oh, rest / oh);
        let (tx, ty, ch) = (tap % kw, (tap / kw) % kh, (tap / (kw * kh)) % ci);
        let iy = (y * c.stride[0] + ty * c.dilation[0]).wrapping_sub(c.padding[0]);
        let ix = (x * c.stride[1] + tx * c.dilation[1]).wrapping_sub(c.padding[1]);
        if iy < h && ix < w {
            let weight = (g.weight[tap] * a[(ch * h + iy) * w + ix]).abs();
            if weight != 0.0 {
                out.push(weight);
            }
        }
    }
}
