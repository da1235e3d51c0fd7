//! Strided samples of a graph's edge weights, from which persistence places its split weights
//! (docs/persistence.md). A sample need not be exact: the splits change only the speed.

use super::geometry::Geometry;
use super::plan::{GraphOp, GraphPlan};
use super::sink::{Edge, EdgeSink};
use super::units::{OperandUnits, NO_UNIT};
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
/// (weight, input) pairs without enumerating them; pools and adds are enumerated.
pub(super) fn sample_op(
    plan: &GraphPlan,
    op: usize,
    input: &[f32],
    every: usize,
    out: &mut Vec<f32>,
) {
    let g = &plan.ops[op];
    if !g.has_sources() {
        return;
    }
    match &g.geometry {
        Geometry::Linear => linear_sample(g, input, every, out),
        Geometry::Conv(c) => conv_sample(g, c, input, every, out),
        _ => plan.emit_edges(op, input, &mut EveryNth::new(every, out)),
    }
}

/// Every `every`-th (output, input) pair of a dense layer, as an edge weight when nonzero and the
/// input is a vertex.
fn linear_sample(g: &GraphOp, a: &[f32], every: usize, out: &mut Vec<f32>) {
    let n_in = g.input_len();
    let is_vertex = |j: usize| match &g.operands[0] {
        OperandUnits::Channels { starts, .. } => starts[j] != NO_UNIT,
        _ => true,
    };
    // The input index of each picked pair, stepped without dividing (e % n_in).
    let mut at = StridedDigits::new([n_in, usize::MAX], every);
    for e in (0..g.weight.len()).step_by(every) {
        let j = at.digits[0];
        at.advance();
        if is_vertex(j) {
            let weight = (g.weight[e] * a[j]).abs();
            if weight != 0.0 {
                out.push(weight);
            }
        }
    }
}

/// Every `every`-th (output channel, input channel of its group, kernel tap, output position) of
/// a conv, as an edge weight when the tap reads a real cell of a vertex channel and the weight
/// is nonzero.
fn conv_sample(g: &GraphOp, c: &Conv2d, a: &[f32], every: usize, out: &mut Vec<f32>) {
    let [ci, h, w] = g.in_chw;
    let [co, oh, ow] = g.out_chw;
    let [kh, kw] = c.kernel;
    let (group_in, group_out) = (ci / c.groups, co / c.groups);
    let total = co * group_in * kh * kw * oh * ow;
    // The coordinates of each picked edge, stepped without dividing: x, y, tx, ty, k, o.
    let mut at = StridedDigits::new([ow, oh, kw, kh, group_in, usize::MAX], every);
    for _ in (0..total).step_by(every) {
        let [x, y, tx, ty, k, o] = at.digits;
        at.advance();
        let tap = ((o * group_in + k) * kh + ty) * kw + tx;
        let ch = o / group_out * group_in + k;
        let iy = (y * c.stride[0] + ty * c.dilation[0]).wrapping_sub(c.padding[0]);
        let ix = (x * c.stride[1] + tx * c.dilation[1]).wrapping_sub(c.padding[1]);
        if iy < h && ix < w && g.channel_units[ch] != NO_UNIT {
            let weight = (g.weight[tap] * a[(ch * h + iy) * w + ix]).abs();
            if weight != 0.0 {
                out.push(weight);
            }
        }
    }
}

/// The digits of a flat index in a mixed radix (least significant first; the last digit is
/// unbounded), advanced by a fixed stride with adds and carries instead of a division per digit.
/// A sample of a big layer is thousands of positions per input, and the divisions cost more than
/// the weighing (on the demo, dividing to sample took about 4% of the CPU time; perf).
struct StridedDigits<const N: usize> {
    radix: [usize; N],
    /// The stride's own digits.
    step: [usize; N],
    digits: [usize; N],
}

impl<const N: usize> StridedDigits<N> {
    /// Starts at index 0. A zero radix (a layer with no positions, so nothing to step over)
    /// gives zero steps.
    fn new(radix: [usize; N], stride: usize) -> Self {
        let mut step = [0; N];
        let mut rest = stride;
        for i in 0..N - 1 {
            step[i] = rest.checked_rem(radix[i]).unwrap_or(0);
            rest = rest.checked_div(radix[i]).unwrap_or(0);
        }
        step[N - 1] = rest;
        StridedDigits {
            radix,
            step,
            digits: [0; N],
        }
    }

    fn advance(&mut self) {
        let mut carry = 0;
        for i in 0..N - 1 {
            // Both addends are below the radix, so one subtraction wraps it.
            let d = self.digits[i] + self.step[i] + carry;
            carry = (d >= self.radix[i]) as usize;
            self.digits[i] = d - carry * self.radix[i];
        }
        self.digits[N - 1] += self.step[N - 1] + carry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::graph::GraphOptions;
    use crate::weights::{Tensor, Weights};

    /// Collects edge weights.
    struct Weighs(Vec<f32>);

    impl EdgeSink for Weighs {
        fn extend(&mut self, edges: &[Edge]) {
            self.0.extend(edges.iter().map(|e| e.weight));
        }
    }

    fn sorted(mut v: Vec<f32>) -> Vec<f32> {
        v.sort_by(f32::total_cmp);
        v
    }

    /// Sampling every edge (stride 1) gives exactly the enumerated edge weights: a grouped conv,
    /// a linear layer reading a cat of the (non-vertex) input and a conv, and an add.
    #[test]
    fn a_stride_one_sample_is_every_edge_weight() {
        let text = "format_version = 2\nname = \"s\"\ninput_shape = [4, 3, 3]\n\
            [[layers]]\nname = \"c\"\nop = \"conv2d\"\nout_channels = 6\nkernel_size = 2\npadding = 1\ngroups = 2\nbias = false\n\
            [[layers]]\nname = \"a\"\nop = \"add\"\ninputs = [\"c\", \"c\"]\n\
            [[layers]]\nname = \"f\"\nop = \"flatten\"\n\
            [[layers]]\nname = \"fi\"\nop = \"flatten\"\ninputs = [\"input\"]\n\
            [[layers]]\nname = \"cat\"\nop = \"cat\"\ninputs = [\"fi\", \"f\"]\n\
            [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 3\nbias = false\n";
        let net = crate::spec::resolve_toml(text).unwrap();
        let mut next = 7u32;
        let mut draw = move || {
            next = next.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((next >> 16) % 5) as f32 - 2.0
        };
        let mut tensors = std::collections::BTreeMap::new();
        for (name, shape) in [("c", vec![6, 2, 2, 2]), ("fc", vec![3, 36 + 96])] {
            let data = (0..shape.iter().product()).map(|_| draw()).collect();
            tensors.insert(format!("{name}.weight"), Tensor { shape, data });
        }
        let weights = Weights::from_tensors(tensors, &net).unwrap();
        let options = GraphOptions {
            include_input: false,
            ..GraphOptions::default()
        };
        let plan = GraphPlan::new(&net, &weights, options).unwrap();
        for op in 0..plan.ops.len() {
            let input: Vec<f32> = (0..plan.ops[op].input_len()).map(|_| draw()).collect();
            let mut sample = Vec::new();
            sample_op(&plan, op, &input, 1, &mut sample);
            let mut all = Weighs(Vec::new());
            plan.emit_edges(op, &input, &mut all);
            assert!(!all.0.is_empty() || op == 0, "op {op} has edges");
            assert_eq!(sorted(sample), sorted(all.0), "op {op}");
        }
    }

    /// Stepping the digits by a stride lands where dividing the flat index does (a radix of 1
    /// included, as a conv with a 1-wide kernel has).
    #[test]
    fn strided_digits_match_division() {
        let radix = [3, 1, 4, usize::MAX];
        for stride in [1, 2, 5, 12, 24, 25, 100] {
            let mut at = StridedDigits::new(radix, stride);
            for e in (0..500).step_by(stride) {
                let (mut expect, mut rest) = ([0; 4], e);
                for i in 0..3 {
                    expect[i] = rest % radix[i];
                    rest /= radix[i];
                }
                expect[3] = rest;
                assert_eq!(at.digits, expect, "stride {stride}, index {e}");
                at.advance();
            }
        }
    }
}
