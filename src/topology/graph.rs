//! Activation graphs, built sparsely straight from layer geometry.
//!
//! A `GraphPlan` is made once per model: it numbers the units of every vertex layer and keeps each
//! graph op's geometry and weights. `GraphPlan::op_edges` then appends one sample's edges for one op
//! to a caller-owned buffer, so a worker reuses its buffers across thousands of samples.
//! Conv and pool edges are enumerated from the shapes (stride, padding, dilation) without any
//! unrolled matrix: for each kernel tap the valid output rows and columns are computed up front, so
//! the inner loop has no bounds checks on padding.

use std::fmt;
use std::str::FromStr;

use crate::spec::{checked_numel, numel, Conv2d, Network, Op, Pool2d};
use crate::weights::Weights;

/// One edge of an activation graph: `src` and `dst` are unit ids, `weight` is |w * a| (> 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub weight: f32,
    pub src: u32,
    pub dst: u32,
}

/// Where edge enumeration puts the edges: a `Vec`, or a filter that keeps only some of them
/// (persistence enumerates a graph a few times rather than storing every edge; see `EdgeSource`).
/// Edges arrive in blocks, in enumeration order, so a sink's per-edge work runs in its own tight
/// loop with its counters in registers.
pub trait EdgeSink {
    fn extend(&mut self, edges: &[Edge]);

    /// Labels over unit ids: when `labels[u] == labels[v] != NO_LABEL` the sink drops any edge
    /// between u and v, so a graph may skip such edges without weighing them. `None`: every
    /// edge is wanted.
    fn connected_labels(&self) -> Option<&[u32]> {
        None
    }

    /// The sink keeps only edges heavier than this weight: a graph may leave the lighter ones out
    /// of `extend` if it reports how many to `skipped`. `None`: every edge is wanted. (With
    /// labels too, a graph may use either to skip an edge.)
    fn keeps_heavier_than(&self) -> Option<f32> {
        None
    }

    /// Counts edges a graph left out under `keeps_heavier_than`.
    fn skipped(&mut self, _count: usize) {}
}

/// See `EdgeSink::connected_labels`.
pub const NO_LABEL: u32 = u32::MAX;

impl EdgeSink for Vec<Edge> {
    fn extend(&mut self, edges: &[Edge]) {
        self.extend_from_slice(edges);
    }
}

/// Edges per block handed to a sink.
const BLOCK: usize = 256;

/// Gathers the edges an op enumerates into blocks for a sink, dropping zero weights. The block
/// lives outside this struct so that only it, not `len`, is seen by the sink: `len` then stays in
/// a register in the enumeration loops.
struct Blocks<'s, S: EdgeSink> {
    sink: &'s mut S,
    block: &'s mut [Edge; BLOCK],
    len: usize,
}

/// A placeholder for buffers that are written before they are read.
pub(crate) const NO_EDGE: Edge = Edge {
    weight: 0.0,
    src: 0,
    dst: 0,
};

impl<'s, S: EdgeSink> Blocks<'s, S> {
    fn new(sink: &'s mut S, block: &'s mut [Edge; BLOCK]) -> Self {
        Blocks {
            sink,
            block,
            len: 0,
        }
    }

    #[inline(always)]
    fn put(&mut self, weight: f32, src: u32, dst: u32) {
        // Always written, kept only when nonzero: no branch on the (often zero) activations.
        self.block[self.len] = Edge { weight, src, dst };
        self.len += (weight != 0.0) as usize;
        if self.len == BLOCK {
            self.sink.extend(&self.block[..]);
            self.len = 0;
        }
    }

    fn finish(self) {
        self.sink.extend(&self.block[..self.len]);
    }
}

/// A graph whose edges can be enumerated any number of times, in the same order each time.
pub trait EdgeSource {
    /// Upper bound on the number of edges.
    fn max_edges(&self) -> usize;
    /// Pushes every edge, in enumeration order, into `sink`.
    fn for_each_edge<S: EdgeSink>(&self, sink: &mut S);

    /// Adds about one in `every` edge weights, spread over the graph, to `out` (to place a split
    /// weight; it need not be exact). By default every `every`-th edge enumerated, in one part.
    fn sample_weights(&self, every: usize, out: &mut WeightSample) {
        self.for_each_edge(&mut EveryNth {
            every,
            seen: 0,
            out: &mut out.weights,
        });
        out.end_part();
    }
}

/// Edge weights sampled from a graph, in parts whose weights may each be on their own scale
/// (the ops of a network).
#[derive(Debug, Default)]
pub struct WeightSample {
    pub weights: Vec<f32>,
    /// End of each part in `weights`.
    pub part_ends: Vec<usize>,
}

impl WeightSample {
    pub fn clear(&mut self) {
        self.weights.clear();
        self.part_ends.clear();
    }

    /// Closes the current part (the weights added since the previous one).
    pub fn end_part(&mut self) {
        self.part_ends.push(self.weights.len());
    }
}

/// A sink that keeps every `every`-th weight.
struct EveryNth<'a> {
    every: usize,
    seen: usize,
    out: &'a mut Vec<f32>,
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

impl EdgeSource for [Edge] {
    fn max_edges(&self) -> usize {
        self.len()
    }
    fn for_each_edge<S: EdgeSink>(&self, sink: &mut S) {
        for block in self.chunks(BLOCK) {
            sink.extend(block);
        }
    }
}

/// One scope's graph of one sample: the edges of a range of graph ops, op by op (all of them for
/// the `network` scope, one for a `layers` scope). The inputs are checked once, when it is made,
/// so that it can be enumerated any number of times.
pub struct SampleGraph<'a> {
    plan: &'a GraphPlan,
    /// `inputs[i]` is the input activation of graph op `i`.
    inputs: &'a [&'a [f32]],
    ops: std::ops::Range<usize>,
}

impl<'a> SampleGraph<'a> {
    /// The `network` scope. `inputs[i]` is the input activation of graph op `i`.
    pub fn network(plan: &'a GraphPlan, inputs: &'a [&'a [f32]]) -> Result<Self, GraphError> {
        Self::ops(plan, inputs, 0..plan.ops.len())
    }

    /// The `layers` scope of graph op `op`.
    pub fn layer(
        plan: &'a GraphPlan,
        inputs: &'a [&'a [f32]],
        op: usize,
    ) -> Result<Self, GraphError> {
        Self::ops(plan, inputs, op..op + 1)
    }

    fn ops(
        plan: &'a GraphPlan,
        inputs: &'a [&'a [f32]],
        ops: std::ops::Range<usize>,
    ) -> Result<Self, GraphError> {
        if inputs.len() != plan.ops.len() {
            return Err(GraphError::OpCount {
                expected: plan.ops.len(),
                got: inputs.len(),
            });
        }
        for op in ops.clone() {
            plan.check_input(op, inputs[op])?;
        }
        Ok(SampleGraph { plan, inputs, ops })
    }
}

impl EdgeSource for SampleGraph<'_> {
    fn max_edges(&self) -> usize {
        self.plan.ops[self.ops.clone()]
            .iter()
            .map(GraphOp::max_edges)
            .sum()
    }

    fn for_each_edge<S: EdgeSink>(&self, sink: &mut S) {
        for i in self.ops.clone() {
            self.plan.emit_edges(i, self.inputs[i], sink);
        }
    }

    /// Dense and conv layers hold most edges: they are sampled at strided positions of their
    /// (weight, input) pairs without enumerating them; pools are enumerated.
    fn sample_weights(&self, every: usize, sample: &mut WeightSample) {
        for i in self.ops.clone() {
            let input = self.inputs[i];
            let out = &mut sample.weights;
            let op = &self.plan.ops[i];
            if op.src_offset.is_none() {
                sample.end_part();
                continue;
            }
            match &op.geometry {
                Geometry::Linear => {
                    let n_in = op.input_len();
                    let picked = (0..op.weight.len()).step_by(every);
                    out.extend(
                        picked
                            .map(|e| (op.weight[e] * input[e % n_in]).abs())
                            .filter(|&w| w != 0.0),
                    );
                }
                Geometry::Conv(c) => conv_sample(op, c, input, every, out),
                _ => {
                    let mut sink = EveryNth {
                        every,
                        seen: 0,
                        out: &mut *out,
                    };
                    self.plan.emit_edges(i, input, &mut sink);
                }
            }
            sample.end_part();
        }
    }
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

/// Which units of a max-pool window get an edge to the pooled unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxPoolEdges {
    /// Every unit in the window (the reference code's rule).
    #[default]
    All,
    /// Only the unit PyTorch's max pool picks (the first maximum in window order).
    Argmax,
}

/// How a vertex's filtration value is chosen. Only the reference code's rule exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VertexBirth {
    /// The largest weight among the vertex's incident edges.
    #[default]
    MaxIncident,
}

impl fmt::Display for MaxPoolEdges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaxPoolEdges::All => "all",
            MaxPoolEdges::Argmax => "argmax",
        })
    }
}

impl FromStr for MaxPoolEdges {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(MaxPoolEdges::All),
            "argmax" => Ok(MaxPoolEdges::Argmax),
            _ => Err(format!(
                "`{s}` is not a max-pool edge rule; use all or argmax"
            )),
        }
    }
}

impl fmt::Display for VertexBirth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("max_incident")
    }
}

/// The `[graph]` settings that change which graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphOptions {
    pub include_input: bool,
    pub maxpool_edges: MaxPoolEdges,
    pub vertex_birth: VertexBirth,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            include_input: true,
            maxpool_edges: MaxPoolEdges::All,
            vertex_birth: VertexBirth::MaxIncident,
        }
    }
}

/// A block of consecutive unit ids: the units of the input or of one graph op's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexLayer {
    /// "input" for the input tensor, else the graph op's layer name.
    pub name: String,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug, Clone)]
enum Geometry {
    Conv(Conv2d),
    Linear,
    MaxPool(Pool2d),
    AvgPool(Pool2d),
}

/// One graph op, ready to emit edges.
#[derive(Debug, Clone)]
pub struct GraphOp {
    /// The layer's name in the spec; also its `layers` scope name.
    pub name: String,
    /// Index of the layer in `Network::layers`.
    pub layer_index: usize,
    /// Input and output shapes as [C, H, W] (a flat [F] is [F, 1, 1]).
    pub in_chw: [usize; 3],
    pub out_chw: [usize; 3],
    /// Unit-id offset of the input units, or None when they are not vertices
    /// (the first graph op when `include_input = false`).
    pub src_offset: Option<u32>,
    pub dst_offset: u32,
    geometry: Geometry,
    weight: Vec<f32>,
    /// Largest |weight| (1 for pools): with the largest |input| it bounds every edge weight, so
    /// overflow needs checking edge by edge only when that bound is beyond f32.
    max_abs_weight: f32,
    /// Upper bound on this op's edge count (0 when its inputs are not vertices).
    max_edges: usize,
}

impl GraphOp {
    pub fn kind(&self) -> &'static str {
        match self.geometry {
            Geometry::Conv(_) => "conv2d",
            Geometry::Linear => "linear",
            Geometry::MaxPool(_) => "max_pool2d",
            Geometry::AvgPool(_) => "avg_pool2d",
        }
    }

    /// Number of input values this op reads for one sample.
    pub fn input_len(&self) -> usize {
        self.in_chw.iter().product()
    }

    /// Upper bound on this op's edge count (all activations and weights nonzero).
    pub fn max_edges(&self) -> usize {
        self.max_edges
    }
}

impl Geometry {
    fn of(op: &Op) -> Option<Geometry> {
        Some(match op {
            Op::Conv2d(c) => Geometry::Conv(c.clone()),
            Op::Linear(_) => Geometry::Linear,
            Op::MaxPool2d(p) => Geometry::MaxPool(p.clone()),
            Op::AvgPool2d(p) => Geometry::AvgPool(p.clone()),
            _ => return None,
        })
    }

    /// Upper bound on an op's edge count when its inputs are vertices; None when it overflows.
    fn max_edges(&self, in_chw: [usize; 3], out_chw: [usize; 3]) -> Option<usize> {
        let [ci, h, w] = in_chw;
        let [co, oh, ow] = out_chw;
        let (taps_h, taps_w) = match self {
            Geometry::Linear => return ci.checked_mul(co),
            Geometry::Conv(c) => (
                axis_taps(h, oh, c.kernel[0], c.stride[0], c.padding[0], c.dilation[0])?,
                axis_taps(w, ow, c.kernel[1], c.stride[1], c.padding[1], c.dilation[1])?,
            ),
            Geometry::MaxPool(p) | Geometry::AvgPool(p) => (
                axis_taps(h, oh, p.kernel[0], p.stride[0], p.padding[0], 1)?,
                axis_taps(w, ow, p.kernel[1], p.stride[1], p.padding[1], 1)?,
            ),
        };
        // A pool reads only its own channel; a conv reads every input channel.
        let channels = match self {
            Geometry::Conv(_) => co.checked_mul(ci)?,
            _ => co,
        };
        channels.checked_mul(taps_h)?.checked_mul(taps_w)
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
fn valid_range(size: usize, out: usize, s: usize, tap: usize, p: usize) -> std::ops::Range<usize> {
    // need y*s + tap >= p  and  y*s + tap - p <= size - 1
    let lo = if tap >= p { 0 } else { (p - tap).div_ceil(s) };
    let hi = if tap > size - 1 + p {
        0
    } else {
        ((size - 1 + p - tap) / s + 1).min(out)
    };
    lo..hi.max(lo)
}

/// The vertex layer (in unit-id order) a unit id belongs to.
pub fn layer_of_unit(layers: &[VertexLayer], unit: u32) -> Option<&VertexLayer> {
    let i = layers.partition_point(|l| l.offset + l.len <= unit);
    layers.get(i).filter(|l| l.offset <= unit)
}

/// Per-sample failures while building a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("layer `{layer}`: expected {expected} input values, got {got}")]
    InputLength {
        layer: String,
        expected: usize,
        got: usize,
    },
    #[error("layer `{layer}`: input value at flat index {index} is {value} (NaN or infinite activations cannot be ordered)")]
    NonFinite {
        layer: String,
        index: usize,
        value: f32,
    },
    #[error("layer `{layer}`: an edge weight overflowed to infinity (|w * a| beyond f32 range)")]
    Overflow { layer: String },
    #[error("expected activations for {expected} graph ops, got {got}")]
    OpCount { expected: usize, got: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("layer `{0}` has no weights loaded")]
    MissingWeights(String),
    #[error("the network has more than the 2^32 - 1 units that unit ids can number (at layer `{0}`); use a smaller model or input")]
    TooManyUnits(String),
    #[error(
        "layer `{0}` has more possible edges than 64-bit arithmetic can count; use a smaller layer"
    )]
    TooManyEdges(String),
}

/// A model's unit numbering and edge bounds, from its shapes alone: sizes a run before any weight
/// is loaded (`actopo inspect`, the memory check), and `GraphPlan::new` numbers units with it.
/// Every sum and product is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphBounds {
    pub vertex_layers: Vec<VertexLayer>,
    /// Per graph op, in order: its edge bound (0 when its inputs are not vertices).
    pub op_max_edges: Vec<usize>,
    /// Total number of unit ids.
    pub n_units: usize,
    /// Upper bound on the `network` graph's edge count.
    pub max_edges: usize,
}

impl GraphBounds {
    pub fn new(net: &Network, options: GraphOptions) -> Result<GraphBounds, PlanError> {
        let mut vertex_layers = Vec::new();
        let mut next: usize = 0;
        if options.include_input {
            next = add_vertex_layer(&mut vertex_layers, "input", 0, &net.input_shape)?;
        }
        let mut op_max_edges = Vec::new();
        let mut max_edges: usize = 0;
        for layer in &net.layers {
            let Some(geometry) = Geometry::of(&layer.op) else {
                continue;
            };
            let has_src = !vertex_layers.is_empty();
            next = add_vertex_layer(&mut vertex_layers, &layer.name, next, &layer.out_shape)?;
            let too_many = || PlanError::TooManyEdges(layer.name.clone());
            let edges = if has_src {
                geometry
                    .max_edges(chw(&layer.in_shape), chw(&layer.out_shape))
                    .ok_or_else(too_many)?
            } else {
                0
            };
            max_edges = max_edges.checked_add(edges).ok_or_else(too_many)?;
            op_max_edges.push(edges);
        }
        Ok(GraphBounds {
            vertex_layers,
            op_max_edges,
            n_units: next,
            max_edges,
        })
    }
}

/// Appends a vertex layer of `shape`'s units at `offset`; returns the next free unit id.
fn add_vertex_layer(
    layers: &mut Vec<VertexLayer>,
    name: &str,
    offset: usize,
    shape: &[usize],
) -> Result<usize, PlanError> {
    let too_many = || PlanError::TooManyUnits(name.to_string());
    let len = checked_numel(shape).ok_or_else(too_many)?;
    let next = offset.checked_add(len).ok_or_else(too_many)?;
    if next > u32::MAX as usize {
        return Err(too_many());
    }
    layers.push(VertexLayer {
        name: name.to_string(),
        offset: offset as u32,
        len: len as u32,
    });
    Ok(next)
}

/// A model's activation-graph layout: vertex layers, unit ids and the graph ops in order.
#[derive(Debug, Clone)]
pub struct GraphPlan {
    pub ops: Vec<GraphOp>,
    pub vertex_layers: Vec<VertexLayer>,
    /// Total number of unit ids (vertices are a subset).
    pub n_units: usize,
    pub options: GraphOptions,
    /// Upper bound on the `network` graph's edge count (computed once: workers reserve it).
    max_edges: usize,
}

fn chw(shape: &[usize]) -> [usize; 3] {
    match shape {
        [c, h, w] => [*c, *h, *w],
        _ => [numel(shape), 1, 1],
    }
}

impl GraphPlan {
    pub fn new(
        net: &Network,
        weights: &Weights,
        options: GraphOptions,
    ) -> Result<GraphPlan, PlanError> {
        let bounds = GraphBounds::new(net, options)?;
        // Vertex layer of graph op i (the input, when a vertex layer, comes first).
        let first = usize::from(options.include_input);
        let graph_layers = net
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l, Geometry::of(&l.op)?)));
        let mut ops = Vec::new();
        for (i, (layer_index, layer, geometry)) in graph_layers.enumerate() {
            let weight = match geometry {
                Geometry::Conv(_) | Geometry::Linear => weights
                    .layer(&layer.name)
                    .ok_or_else(|| PlanError::MissingWeights(layer.name.clone()))?
                    .weight
                    .data
                    .clone(),
                Geometry::MaxPool(_) | Geometry::AvgPool(_) => Vec::new(),
            };
            let max_abs_weight = weight.iter().fold(1.0f32, |m, w| m.max(w.abs()));
            let src_offset = (first + i)
                .checked_sub(1)
                .map(|j| bounds.vertex_layers[j].offset);
            ops.push(GraphOp {
                name: layer.name.clone(),
                layer_index,
                in_chw: chw(&layer.in_shape),
                out_chw: chw(&layer.out_shape),
                src_offset,
                dst_offset: bounds.vertex_layers[first + i].offset,
                geometry,
                weight,
                max_abs_weight,
                max_edges: bounds.op_max_edges[i],
            });
        }
        Ok(GraphPlan {
            ops,
            vertex_layers: bounds.vertex_layers,
            n_units: bounds.n_units,
            options,
            max_edges: bounds.max_edges,
        })
    }

    /// Upper bound on the `network` graph's edge count.
    pub fn max_edges(&self) -> usize {
        self.max_edges
    }

    /// Appends the edges of graph op `op` for one sample to `out`. `input` is the op's input
    /// activation (post-activation values of the current layer), flat in C, H, W order.
    pub fn op_edges(
        &self,
        op: usize,
        input: &[f32],
        out: &mut Vec<Edge>,
    ) -> Result<(), GraphError> {
        self.check_input(op, input)?;
        self.emit_edges(op, input, out);
        Ok(())
    }

    /// Checks graph op `op`'s input for one sample: its length, that every value is finite, and
    /// that no edge weight overflows f32.
    fn check_input(&self, op: usize, input: &[f32]) -> Result<(), GraphError> {
        let g = &self.ops[op];
        if input.len() != g.input_len() {
            return Err(GraphError::InputLength {
                layer: g.name.clone(),
                expected: g.input_len(),
                got: input.len(),
            });
        }
        let mut max_abs_input = 0.0f32;
        for (index, &value) in input.iter().enumerate() {
            if !value.is_finite() {
                return Err(GraphError::NonFinite {
                    layer: g.name.clone(),
                    index,
                    value,
                });
            }
            max_abs_input = max_abs_input.max(value.abs());
        }
        if !(g.max_abs_weight * max_abs_input).is_finite() {
            // Some product may overflow: look at every edge.
            let mut probe = Vec::new();
            self.emit_edges(op, input, &mut probe);
            if probe.iter().any(|e| e.weight.is_infinite()) {
                return Err(GraphError::Overflow {
                    layer: g.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Hands graph op `op`'s edges for one (checked) input to `sink`.
    fn emit_edges<S: EdgeSink>(&self, op: usize, input: &[f32], sink: &mut S) {
        let g = &self.ops[op];
        let Some(src_offset) = g.src_offset else {
            return;
        };
        match &g.geometry {
            Geometry::Linear => linear_edges(g, src_offset, input, sink),
            Geometry::Conv(c) => conv_edges(g, c, src_offset, input, sink),
            Geometry::MaxPool(p) => match self.options.maxpool_edges {
                MaxPoolEdges::All => pool_edges(g, p, src_offset, input, 1.0, sink),
                MaxPoolEdges::Argmax => maxpool_argmax_edges(g, p, src_offset, input, sink),
            },
            Geometry::AvgPool(p) => {
                let area = (p.kernel[0] * p.kernel[1]) as f32;
                pool_edges(g, p, src_offset, input, area, sink)
            }
        }
    }

    /// Appends the edges of every graph op (the `network` scope) and returns, for each op, the
    /// range of `out` holding its edges (its `layers` scope).
    pub fn network_edges(
        &self,
        inputs: &[&[f32]],
        out: &mut Vec<Edge>,
        segments: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<(), GraphError> {
        if inputs.len() != self.ops.len() {
            return Err(GraphError::OpCount {
                expected: self.ops.len(),
                got: inputs.len(),
            });
        }
        segments.clear();
        for (i, input) in inputs.iter().enumerate() {
            let start = out.len();
            self.op_edges(i, input, out)?;
            segments.push(start..out.len());
        }
        Ok(())
    }
}

fn linear_edges<S: EdgeSink>(g: &GraphOp, src_offset: u32, a: &[f32], sink: &mut S) {
    let n_in = g.in_chw.iter().product::<usize>();
    let n_out = g.out_chw[0];
    let above = sink.keeps_heavier_than();
    // ReLU leaves many inputs at exactly 0: visit only the others (same edge order as a full scan).
    let nonzero: Vec<u32> = (0..n_in as u32).filter(|&j| a[j as usize] != 0.0).collect();
    // Most edges of a dense layer join units the sink already knows connected. Rows whose
    // output has the same label need the same inputs (those labelled otherwise): list them once
    // per label, and weigh only those.
    let labels = sink.connected_labels().map(|labels| {
        let inputs: Vec<u32> = nonzero
            .iter()
            .map(|&j| labels[(src_offset + j) as usize])
            .collect();
        let outputs = labels[g.dst_offset as usize..][..n_out].to_vec();
        (inputs, outputs)
    });
    // (output label, inputs not carrying it) for the first few labels met; a row with another
    // label gets its list in `other`.
    const CACHED_LABELS: usize = 32;
    let mut needed: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut other: Vec<u32> = Vec::new();
    let mut light = 0usize;
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(&mut *sink, &mut block);
    for i in 0..n_out {
        let row = &g.weight[i * n_in..(i + 1) * n_in];
        let dst = g.dst_offset + i as u32;
        let inputs = match (&labels, above) {
            (Some((inputs, outputs)), _) if outputs[i] != NO_LABEL => {
                let here = outputs[i];
                let not_here = || {
                    let pairs = nonzero.iter().zip(inputs);
                    pairs.filter(|(_, &label)| label != here).map(|(&j, _)| j)
                };
                match needed.iter().position(|(label, _)| *label == here) {
                    Some(k) => &needed[k].1,
                    None if needed.len() < CACHED_LABELS => {
                        needed.push((here, not_here().collect()));
                        &needed[needed.len() - 1].1
                    }
                    None => {
                        other.clear();
                        other.extend(not_here());
                        &other
                    }
                }
            }
            (_, Some(above)) => {
                light += heavy_row(&mut out, row, a, above, src_offset, dst);
                continue;
            }
            _ => &nonzero,
        };
        for &j in inputs {
            out.put((row[j as usize] * a[j as usize]).abs(), src_offset + j, dst);
        }
    }
    out.finish();
    sink.skipped(light);
}

/// One dense row for a sink that keeps only edges heavier than `above`: weighed in 64-wide
/// chunks (vectorised compares, no stores), handing over only the heavier edges, in order.
/// Returns how many lighter edges it left out.
#[inline(always)]
fn heavy_row<S: EdgeSink>(
    out: &mut Blocks<S>,
    row: &[f32],
    a: &[f32],
    above: f32,
    src_offset: u32,
    dst: u32,
) -> usize {
    let mut light = 0;
    for (chunk, (w64, a64)) in row.chunks(64).zip(a.chunks(64)).enumerate() {
        let mut weights = [0.0f32; 64];
        for ((slot, &w), &x) in weights.iter_mut().zip(w64).zip(a64) {
            *slot = (w * x).abs();
        }
        let (nonzero, mut heavy) = masks(&weights, w64.len(), above);
        light += (nonzero.count_ones() - heavy.count_ones()) as usize;
        while heavy != 0 {
            let k = heavy.trailing_zeros() as usize;
            out.put(weights[k], src_offset + (chunk * 64 + k) as u32, dst);
            heavy &= heavy - 1;
        }
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

fn conv_edges<S: EdgeSink>(g: &GraphOp, c: &Conv2d, src_offset: u32, a: &[f32], sink: &mut S) {
    let n_src = g.input_len();
    let n_dst: usize = g.out_chw.iter().product();
    let (src_offset, dst_offset) = (src_offset as usize, g.dst_offset as usize);
    let split = sink.keeps_heavier_than();
    if let (Some(split), None) = (split, sink.connected_labels()) {
        // Only the heavier edges are handed over (see `heavy_row`).
        let mut light = 0usize;
        let mut block = [NO_EDGE; BLOCK];
        let mut out = Blocks::new(&mut *sink, &mut block);
        let mut weights = [0.0f32; 64];
        conv_runs(g, c, |wv, src, step, dst, len| {
            for start in (0..len).step_by(64) {
                let n = (len - start).min(64);
                for (k, slot) in weights[..n].iter_mut().enumerate() {
                    *slot = (wv * a[src + (start + k) * step]).abs();
                }
                let (nonzero, mut heavy) = masks(&weights, n, split);
                light += (nonzero.count_ones() - heavy.count_ones()) as usize;
                while heavy != 0 {
                    let k = heavy.trailing_zeros() as usize;
                    let (s, d) = (src + (start + k) * step, dst + start + k);
                    out.put(weights[k], (src_offset + s) as u32, (dst_offset + d) as u32);
                    heavy &= heavy - 1;
                }
            }
        });
        out.finish();
        sink.skipped(light);
        return;
    }
    // The sink's labels for this op's input and output units, when it has them: edges between
    // connected units are skipped unweighed.
    let labels = sink.connected_labels().map(|labels| {
        let src = labels[src_offset..][..n_src].to_vec();
        let dst = labels[dst_offset..][..n_dst].to_vec();
        (src, dst)
    });
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    match labels {
        Some((src_labels, dst_labels)) => conv_runs(g, c, |wv, src, step, dst, len| {
            for k in 0..len {
                let (s, d) = (src + k * step, dst + k);
                if src_labels[s] != dst_labels[d] || src_labels[s] == NO_LABEL {
                    out.put(
                        (wv * a[s]).abs(),
                        (src_offset + s) as u32,
                        (dst_offset + d) as u32,
                    );
                }
            }
        }),
        None => conv_runs(g, c, |wv, src, step, dst, len| {
            for k in 0..len {
                let (s, d) = (src + k * step, dst + k);
                out.put(
                    (wv * a[s]).abs(),
                    (src_offset + s) as u32,
                    (dst_offset + d) as u32,
                );
            }
        }),
    }
    out.finish();
}

/// Calls `run(weight, src, src_step, dst, len)` for each run of a conv's edges that share a
/// nonzero kernel weight and an output row, in enumeration order: edge k of the run joins input
/// `src + k * src_step` to output `dst + k` (indices within the op's input and output).
#[inline(always)]
fn conv_runs(g: &GraphOp, c: &Conv2d, mut run: impl FnMut(f32, usize, usize, usize, usize)) {
    let [ci, h, w] = g.in_chw;
    let [co, oh, ow] = g.out_chw;
    let [kh, kw] = c.kernel;
    for o in 0..co {
        for ch in 0..ci {
            for ty in 0..kh {
                let tap_y = ty * c.dilation[0];
                let ys = valid_range(h, oh, c.stride[0], tap_y, c.padding[0]);
                for tx in 0..kw {
                    let wv = g.weight[((o * ci + ch) * kh + ty) * kw + tx];
                    if wv == 0.0 {
                        continue;
                    }
                    let tap_x = tx * c.dilation[1];
                    let xs = valid_range(w, ow, c.stride[1], tap_x, c.padding[1]);
                    if xs.is_empty() {
                        continue;
                    }
                    let ix0 = xs.start * c.stride[1] + tap_x - c.padding[1];
                    for y in ys.clone() {
                        let iy = y * c.stride[0] + tap_y - c.padding[0];
                        run(
                            wv,
                            (ch * h + iy) * w + ix0,
                            c.stride[1],
                            (o * oh + y) * ow + xs.start,
                            xs.len(),
                        );
                    }
                }
            }
        }
    }
}

/// Every real cell of every window -> pooled unit, weight |a| / divisor.
fn pool_edges<S: EdgeSink>(
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
fn maxpool_argmax_edges<S: EdgeSink>(
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
                if let Some((v, idx)) = best {
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

#[cfg(test)]
mod tests {
    use super::*;

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
                                let want: Vec<usize> = (0..out)
                                    .filter(|&y| {
                                        let i = (y * s + t * d) as isize - p as isize;
                                        i >= 0 && i < size as isize
                                    })
                                    .collect();
                                assert_eq!(
                                    r.collect::<Vec<_>>(),
                                    want,
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
    fn bounds_refuse_unit_ids_past_u32_and_edge_counts_past_usize() {
        use crate::spec::{Layer, Linear};
        let n = u32::MAX as usize;
        let dense = |name: &str, in_features, out_features| Layer {
            name: name.into(),
            op: Op::Linear(Linear {
                in_features,
                out_features,
                bias: false,
            }),
            in_shape: vec![in_features],
            out_shape: vec![out_features],
        };
        let net = Network {
            name: "x".into(),
            input_shape: vec![n],
            layers: vec![dense("fc", n, 2)],
        };
        let err = GraphBounds::new(&net, GraphOptions::default()).unwrap_err();
        assert!(
            matches!(&err, PlanError::TooManyUnits(l) if l == "fc"),
            "{err}"
        );
        // Without the input as vertices it fits, and the first op has no source vertices.
        let no_input = GraphOptions {
            include_input: false,
            ..GraphOptions::default()
        };
        let b = GraphBounds::new(&net, no_input).unwrap();
        assert_eq!(
            (b.n_units, b.max_edges, b.op_max_edges.clone()),
            (2, 0, vec![0])
        );
        assert_eq!(
            Geometry::Linear.max_edges([usize::MAX, 1, 1], [2, 1, 1]),
            None
        );
        assert_eq!(Geometry::Linear.max_edges([5, 1, 1], [3, 1, 1]), Some(15));
    }
}
