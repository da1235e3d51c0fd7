//! A model's activation-graph layout: its graph ops in order, each with the units its operands
//! hold, its shapes and weights, ready to enumerate one sample's edges into a sink.

use std::sync::OnceLock;

use super::bounds::{GraphBounds, VertexLayer};
use super::errors::{GraphError, PlanError};
use super::fold::edge_weights;
use super::geometry::{chw, Geometry};
use super::kernels::{
    adaptive_pool_edges, add_edges, conv_edges, linear_edges, mapped_linear_edges,
    maxpool_argmax_edges, pool_edges, DenseColumns,
};
use super::options::{GraphOptions, MaxPoolEdges};
use super::reference_cut::check_reference_plan;
use super::sink::{Edge, EdgeSink};
use super::threshold::EdgeThreshold;
use super::units::OperandUnits;
use crate::spec::Network;
use crate::weights::Weights;

/// One graph op, ready to emit edges.
#[derive(Debug, Clone)]
pub struct GraphOp {
    /// The layer's name in the spec; also its `layers` scope name.
    pub name: String,
    /// Index of the layer in `Network::layers`.
    pub layer_index: usize,
    /// Each operand's shape and the output shape as [C, H, W] (a flat [F] is [F, 1, 1]).
    pub(super) in_chw: [usize; 3],
    pub(super) out_chw: [usize; 3],
    /// The units of each operand's values (one operand, except for `add`).
    pub(super) operands: Vec<OperandUnits>,
    /// For convs and pools: the unit of each input channel's first value (`NO_UNIT` for
    /// channels that are no vertices); a channel's values are consecutive units.
    pub(super) channel_units: Vec<u32>,
    pub(super) dst_offset: u32,
    pub(super) geometry: Geometry,
    /// Conv and linear weights (with a batch norm folded in when `graph.batch_norm` says so).
    pub(super) weight: Vec<f32>,
    /// For linear ops: the heaviest weights of each column (the first pass's index), built on
    /// first use (`GraphOp::columns`) or ahead of it by `GraphPlan::index_columns`.
    columns: Option<OnceLock<DenseColumns>>,
    /// Largest |weight| (1 for pools and add): with the largest |input| it bounds every edge
    /// weight, so overflow needs checking edge by edge only when that bound is beyond f32.
    max_abs_weight: f32,
    /// Upper bound on this op's edge count (0 when its inputs are not vertices).
    max_edges: usize,
}

impl GraphOp {
    /// A linear op's column index, built here by the first caller (others wait for it).
    pub(super) fn columns(&self) -> Option<&DenseColumns> {
        let n_in = self.operand_len();
        let build = || DenseColumns::new(&self.weight, self.out_chw[0], n_in);
        self.columns.as_ref().map(|cell| cell.get_or_init(build))
    }

    /// Number of input values this op reads for one sample (for `add`, its operands one after
    /// the other).
    pub fn input_len(&self) -> usize {
        self.operand_len() * self.operands.len()
    }

    /// Values of one operand.
    pub(super) fn operand_len(&self) -> usize {
        self.in_chw.iter().product()
    }

    /// Upper bound on this op's edge count (all activations and weights nonzero).
    pub(super) fn max_edges(&self) -> usize {
        self.max_edges
    }

    /// Whether any input value is a vertex (else the op has no edges).
    pub(super) fn has_sources(&self) -> bool {
        self.operands.iter().any(|u| *u != OperandUnits::None)
    }
}

/// A model's activation-graph layout: vertex layers, unit ids and the graph ops in order.
#[derive(Debug, Clone)]
pub struct GraphPlan {
    pub ops: Vec<GraphOp>,
    pub vertex_layers: Vec<VertexLayer>,
    /// Total number of unit ids (vertices are a subset).
    pub n_units: usize,
    options: GraphOptions,
    /// Upper bound on the `network` graph's edge count (computed once: workers reserve it).
    max_edges: usize,
}

impl GraphPlan {
    /// Builds the dense layers' column indexes now. A run calls this on a thread of its own
    /// while libtorch takes the weights and runs the first batch (AlexNet-CIFAR's index took
    /// about 0.25 s of its start-up); a worker that needs an index first waits for it.
    pub fn index_columns(&self) {
        for op in &self.ops {
            op.columns();
        }
    }

    pub fn new(
        net: &Network,
        weights: &Weights,
        options: GraphOptions,
    ) -> Result<GraphPlan, PlanError> {
        if let EdgeThreshold::ReferencePercentile(_) = options.threshold {
            check_reference_plan(net)?;
        }
        let mut bounds = GraphBounds::new(net, options)?;
        // Vertex layer of graph op i (the input, when a vertex layer, comes first).
        let first = usize::from(options.include_input);
        let graph_layers =
            (net.layers.iter().enumerate()).filter_map(|(i, l)| Some((i, l, Geometry::of(&l.op)?)));
        let operands = std::mem::take(&mut bounds.operands);
        let mut ops = Vec::new();
        for ((i, (layer_index, layer, geometry)), operands) in
            graph_layers.enumerate().zip(operands)
        {
            let weight = match geometry {
                Geometry::Conv(_) | Geometry::Linear => {
                    edge_weights(net, layer_index, weights, options.batch_norm)?
                }
                _ => Vec::new(),
            };
            let max_abs_weight = weight.iter().fold(1.0f32, |m, w| m.max(w.abs()));
            let in_chw = chw(layer.in_shape());
            let out_chw = chw(&layer.out_shape);
            let columns = matches!(geometry, Geometry::Linear).then(OnceLock::new);
            let channel_units = match geometry {
                Geometry::Linear | Geometry::Add => Vec::new(),
                _ => operands[0].channel_starts(in_chw[0], in_chw[1] * in_chw[2]),
            };
            ops.push(GraphOp {
                name: layer.name.clone(),
                layer_index,
                in_chw,
                out_chw,
                operands,
                channel_units,
                dst_offset: bounds.vertex_layers[first + i].offset,
                geometry,
                weight,
                columns,
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

    /// Which edges of each graph op are kept (`graph.threshold`).
    pub fn threshold(&self) -> EdgeThreshold {
        self.options.threshold
    }

    /// Upper bound on the `network` graph's edge count.
    pub fn max_edges(&self) -> usize {
        self.max_edges
    }

    /// Checks graph op `op`'s input for one sample: its length, that every value is finite, and
    /// that no edge weight overflows f32.
    pub(super) fn check_input(&self, op: usize, input: &[f32]) -> Result<(), GraphError> {
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
            let mut probe = FindsInfinite(false);
            self.emit_edges(op, input, &mut probe);
            if probe.0 {
                return Err(GraphError::Overflow {
                    layer: g.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Hands graph op `op`'s edges for one (checked) input to `sink`. `input` is the op's input
    /// activation, flat in C, H, W order (for `add`, its operands one after the other): the
    /// values as they enter the op, after the value ops before it.
    pub(super) fn emit_edges<S: EdgeSink>(&self, op: usize, input: &[f32], sink: &mut S) {
        let g = &self.ops[op];
        if !g.has_sources() {
            return;
        }
        match &g.geometry {
            Geometry::Linear => match &g.operands[0] {
                OperandUnits::Contiguous(base) => linear_edges(g, *base, input, sink),
                OperandUnits::Channels { starts, .. } => {
                    mapped_linear_edges(g, starts, input, sink)
                }
                OperandUnits::None => {}
            },
            Geometry::Conv(c) => conv_edges(g, c, input, sink),
            Geometry::MaxPool(p) => match self.options.maxpool_edges {
                MaxPoolEdges::All => pool_edges(g, p, input, 1.0, sink),
                MaxPoolEdges::Argmax => maxpool_argmax_edges(g, p, input, sink),
            },
            Geometry::AvgPool(p) => {
                let area = (p.kernel[0] * p.kernel[1]) as f32;
                pool_edges(g, p, input, area, sink)
            }
            Geometry::AdaptiveAvgPool => adaptive_pool_edges(g, input, sink),
            Geometry::Add => add_edges(g, input, sink),
        }
    }
}

/// A sink that only notes whether any edge weight is infinite (overflowed).
struct FindsInfinite(bool);

impl EdgeSink for FindsInfinite {
    fn extend(&mut self, edges: &[Edge]) {
        self.0 |= edges.iter().any(|e| e.weight.is_infinite());
    }
}
