//! A model's unit numbering and edge bounds, from the spec's shapes alone (docs/graph.md).

use super::errors::PlanError;
use super::geometry::{chw, Geometry};
use super::options::GraphOptions;
use super::units::{self, OperandUnits, NO_UNIT};
use crate::spec::{checked_numel, Network};

/// A block of consecutive unit ids: the units of the input or of one graph op's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexLayer {
    /// "input" for the input tensor, else the graph op's layer name.
    pub name: String,
    pub offset: u32,
    pub len: u32,
}

/// The vertex layer (in unit-id order) a unit id belongs to.
pub(crate) fn layer_of_unit(layers: &[VertexLayer], unit: u32) -> Option<&VertexLayer> {
    let i = layers.partition_point(|l| l.offset + l.len <= unit);
    layers.get(i).filter(|l| l.offset <= unit)
}

/// A model's unit numbering and edge bounds, from its shapes alone: sizes a run before any weight
/// is loaded (`actopo inspect`, the memory check), and `GraphPlan::new` numbers units with it.
/// Every sum and product is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphBounds {
    /// The input (when a vertex layer), then one per graph op in `Network::layers` order.
    pub vertex_layers: Vec<VertexLayer>,
    /// Per graph op, in order: its edge bound (counting only inputs that are vertices).
    pub op_max_edges: Vec<usize>,
    /// Total number of unit ids.
    pub n_units: usize,
    /// Upper bound on the `network` graph's edge count.
    pub max_edges: usize,
    /// Per graph op, in order: the units each of its operands holds.
    pub(super) operands: Vec<Vec<OperandUnits>>,
}

impl GraphBounds {
    /// Fails when the units overflow u32 ids, an edge bound 64-bit arithmetic, or when an
    /// operand's values cannot be mapped to units channel by channel (docs/graph.md).
    pub fn new(net: &Network, options: GraphOptions) -> Result<GraphBounds, PlanError> {
        let mut vertex_layers = Vec::new();
        let mut next: usize = 0;
        if options.include_input {
            next = add_vertex_layer(&mut vertex_layers, "input", 0, &net.input_shape)?;
        }
        let mut op_offsets = Vec::new();
        for layer in net.graph_layers() {
            op_offsets.push(next as u32);
            next = add_vertex_layer(&mut vertex_layers, &layer.name, next, &layer.out_shape)?;
        }
        let input_unit = if options.include_input { 0 } else { NO_UNIT };
        let operands = units::trace(net, input_unit, &op_offsets, &vertex_layers)?;
        let mut op_max_edges = Vec::new();
        let mut max_edges: usize = 0;
        for (layer, units) in net.graph_layers().zip(&operands) {
            let too_many = || PlanError::TooManyEdges(layer.name.clone());
            let geometry = Geometry::of(&layer.op).expect("every graph op has a geometry");
            let edges = geometry
                .max_edges(chw(layer.in_shape()), chw(&layer.out_shape), units)
                .ok_or_else(too_many)?;
            max_edges = max_edges.checked_add(edges).ok_or_else(too_many)?;
            op_max_edges.push(edges);
        }
        Ok(GraphBounds {
            vertex_layers,
            op_max_edges,
            n_units: next,
            max_edges,
            operands,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Layer, LayerInput, Linear, Op};

    #[test]
    fn bounds_refuse_unit_ids_past_u32() {
        let n = u32::MAX as usize;
        let dense = |name: &str, in_features, out_features| Layer {
            name: name.into(),
            op: Op::Linear(Linear {
                in_features,
                out_features,
                bias: false,
            }),
            inputs: vec![LayerInput::Input],
            in_shapes: vec![vec![in_features]],
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
    }
}
