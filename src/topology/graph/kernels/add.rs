//! `add` edges: for each operand k, its value i's unit -> output unit i, weight |value| (the
//! operand's value as it enters the add). A skip connection is then an edge from the block's
//! input unit to its output unit.

use super::super::plan::GraphOp;
use super::super::sink::{Blocks, EdgeSink, BLOCK, NO_EDGE};
use super::super::units::{OperandUnits, NO_UNIT};

/// Operand by operand, values ascending. `a` holds the operands one after the other.
pub(in crate::topology::graph) fn add_edges<S: EdgeSink>(g: &GraphOp, a: &[f32], sink: &mut S) {
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(sink, &mut block);
    let n = g.operand_len();
    for (units, values) in g.operands.iter().zip(a.chunks_exact(n)) {
        let dst = (g.dst_offset..).zip(values);
        match units {
            OperandUnits::None => {}
            OperandUnits::Contiguous(base) => {
                for ((d, v), s) in dst.zip(*base..) {
                    out.put(v.abs(), s, d);
                }
            }
            OperandUnits::Channels { .. } => {
                for (i, (d, v)) in dst.enumerate() {
                    let s = units.unit(i);
                    if s != NO_UNIT {
                        out.put(v.abs(), s, d);
                    }
                }
            }
        }
    }
    out.finish();
}
