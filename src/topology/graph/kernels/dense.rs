//! Dense (linear) layer edges: input j -> output i, weight |W[i, j] * a[j]|, row by row.

use super::super::plan::GraphOp;
use super::super::sink::{Blocks, EdgeSink, BLOCK, NO_EDGE, NO_LABEL};
use super::super::units::NO_UNIT;
use super::heavy::put_heavier;
use super::vector::{weigh_pairs, Isa};

/// The unit of input feature j: `base + j` for an input that is one vertex layer in order, or
/// a table (a `cat` of several). Generic so that the common case compiles to an addition.
trait FeatureUnits: Copy {
    fn unit(self, j: u32) -> u32;
}

#[derive(Clone, Copy)]
struct Offset(u32);

impl FeatureUnits for Offset {
    #[inline(always)]
    fn unit(self, j: u32) -> u32 {
        self.0 + j
    }
}

#[derive(Clone, Copy)]
struct Table<'a>(&'a [u32]);

impl FeatureUnits for Table<'_> {
    #[inline(always)]
    fn unit(self, j: u32) -> u32 {
        self.0[j as usize]
    }
}

/// `linear_edges` for an input whose features are units `base, base + 1, ...`.
pub(in crate::topology::graph) fn linear_edges<S: EdgeSink>(
    g: &GraphOp,
    base: u32,
    a: &[f32],
    sink: &mut S,
) {
    edges(g, Offset(base), a, sink)
}

/// `linear_edges` for an input whose feature j is unit `units[j]` (`NO_UNIT`: no vertex, no
/// edges; such features are read as 0).
pub(in crate::topology::graph) fn mapped_linear_edges<S: EdgeSink>(
    g: &GraphOp,
    units: &[u32],
    a: &[f32],
    sink: &mut S,
) {
    if units.contains(&NO_UNIT) {
        let masked: Vec<f32> = (a.iter().zip(units))
            .map(|(&x, &u)| if u == NO_UNIT { 0.0 } else { x })
            .collect();
        edges(g, Table(units), &masked, sink)
    } else {
        edges(g, Table(units), a, sink)
    }
}

/// How many output labels keep their list of inputs; rows with any further label list theirs anew.
const CACHED_LABELS: usize = 32;

/// Every (output, nonzero input) pair, output by output, inputs ascending; rows skip what the sink
/// says it does not want (edges inside a component, or lighter than its split).
fn edges<S: EdgeSink, U: FeatureUnits>(g: &GraphOp, units: U, a: &[f32], sink: &mut S) {
    let n_in = g.in_chw.iter().product::<usize>();
    let n_out = g.out_chw[0];
    let above = sink.keeps_heavier_than();
    // ReLU leaves many inputs at exactly 0: visit only the others (same edge order as a full scan).
    let nonzero: Vec<u32> = (0..n_in as u32).filter(|&j| a[j as usize] != 0.0).collect();
    let mut by_label = sink
        .connected_labels()
        .map(|labels| InputsByLabel::new(labels, &nonzero, units, g.dst_offset, n_out));
    let mut light = 0usize;
    let isa = Isa::detected();
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(&mut *sink, &mut block);
    for i in 0..n_out {
        let row = &g.weight[i * n_in..(i + 1) * n_in];
        let dst = g.dst_offset + i as u32;
        let inputs = match (&mut by_label, above) {
            (Some(by_label), _) if by_label.outputs[i] != NO_LABEL => {
                by_label.inputs_to(by_label.outputs[i])
            }
            (_, Some(above)) => {
                light += heavy_row(&mut out, isa, row, a, above, units, dst);
                continue;
            }
            _ => &nonzero[..],
        };
        for &j in inputs {
            out.put((row[j as usize] * a[j as usize]).abs(), units.unit(j), dst);
        }
    }
    out.finish();
    sink.skipped(light);
}

/// Most edges of a dense layer join units the sink already knows connected. Rows whose output
/// has the same label need the same inputs (those labelled otherwise): they are listed once per
/// label, and only those are weighed.
struct InputsByLabel<'a> {
    /// The nonzero inputs (indices within the op's input) and their labels.
    nonzero: &'a [u32],
    input_labels: Vec<u32>,
    /// The label of each output unit.
    outputs: Vec<u32>,
    /// (output label, inputs not carrying it) for the first few labels met.
    cached: Vec<(u32, Vec<u32>)>,
    /// The list for a row whose label is not cached.
    other: Vec<u32>,
}

impl<'a> InputsByLabel<'a> {
    fn new(
        labels: &[u32],
        nonzero: &'a [u32],
        units: impl FeatureUnits,
        dst_offset: u32,
        n_out: usize,
    ) -> Self {
        let input_labels = nonzero
            .iter()
            .map(|&j| labels[units.unit(j) as usize])
            .collect();
        InputsByLabel {
            nonzero,
            input_labels,
            outputs: labels[dst_offset as usize..][..n_out].to_vec(),
            cached: Vec::new(),
            other: Vec::new(),
        }
    }

    /// The nonzero inputs whose label is not `here`, in order.
    #[inline]
    fn inputs_to(&mut self, here: u32) -> &[u32] {
        let (nonzero, input_labels) = (self.nonzero, &self.input_labels);
        let not_here = || {
            let pairs = nonzero.iter().zip(input_labels);
            pairs.filter(|(_, &label)| label != here).map(|(&j, _)| j)
        };
        match self.cached.iter().position(|(label, _)| *label == here) {
            Some(k) => &self.cached[k].1,
            None if self.cached.len() < CACHED_LABELS => {
                self.cached.push((here, not_here().collect()));
                &self.cached[self.cached.len() - 1].1
            }
            None => {
                self.other.clear();
                self.other.extend(not_here());
                &self.other
            }
        }
    }
}

/// One dense row for a sink that keeps only edges heavier than `above`: weighed in 64-wide
/// chunks, handing over only the heavier edges, in order. Returns how many lighter edges it left
/// out.
#[inline(always)]
fn heavy_row<S: EdgeSink, U: FeatureUnits>(
    out: &mut Blocks<S>,
    isa: Isa,
    row: &[f32],
    a: &[f32],
    above: f32,
    units: U,
    dst: u32,
) -> usize {
    let mut light = 0;
    let mut weights = [0.0f32; 64];
    for (chunk, (w64, a64)) in row.chunks(64).zip(a.chunks(64)).enumerate() {
        let masks = weigh_pairs(isa, w64, a64, above, &mut weights);
        let first = (chunk * 64) as u32;
        light += put_heavier(out, &weights, masks, |k| {
            (units.unit(first + k as u32), dst)
        });
    }
    light
}
