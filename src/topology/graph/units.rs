//! The unit map (docs/graph.md): which unit each value a graph op reads belongs to. Values are
//! traced back through value ops (same units) and shape ops (flatten and reshape keep the flat
//! order, cat concatenates its operands' units) to the vertex layers that made them.

use std::rc::Rc;

use super::bounds::{layer_of_unit, VertexLayer};
use super::errors::PlanError;
use super::geometry::chw;
use crate::spec::{numel, Layer, LayerInput, Network, Op, OpRole};

/// Marks a value that is no vertex (the model input when `graph.include_input = false`).
pub(crate) const NO_UNIT: u32 = u32::MAX;

/// The units of one operand of a graph op, by the operand's flat (C, H, W) value index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OperandUnits {
    /// No value is a vertex.
    None,
    /// Value i is unit `base + i`: the operand is one vertex layer, in order (every sequential
    /// model, and most residual ones).
    Contiguous(u32),
    /// Value i is unit `starts[i / plane] + i % plane`, or no vertex where that start is
    /// `NO_UNIT`. `plane` is H * W for the operands of convs and pools (a start per channel), 1
    /// for a linear layer's features (a start per feature).
    Channels { plane: usize, starts: Vec<u32> },
}

impl OperandUnits {
    /// The unit of value `i`, or `NO_UNIT`.
    #[inline]
    pub(crate) fn unit(&self, i: usize) -> u32 {
        match self {
            OperandUnits::None => NO_UNIT,
            OperandUnits::Contiguous(base) => base + i as u32,
            OperandUnits::Channels { plane, starts } => match starts[i / plane] {
                NO_UNIT => NO_UNIT,
                start => start + (i % plane) as u32,
            },
        }
    }

    /// The unit of the first value of each of `channels` channels of `plane` values (`NO_UNIT`
    /// where they are no vertices). Only for maps made with that plane (or contiguous ones).
    pub(crate) fn channel_starts(&self, channels: usize, plane: usize) -> Vec<u32> {
        match self {
            OperandUnits::Channels { starts, .. } => starts.clone(),
            _ => (0..channels).map(|c| self.unit(c * plane)).collect(),
        }
    }

    /// How many of the operand's `len` values are vertices.
    pub(crate) fn vertex_values(&self, len: usize) -> usize {
        match self {
            OperandUnits::None => 0,
            OperandUnits::Contiguous(_) => len,
            OperandUnits::Channels { plane, starts } => {
                plane * starts.iter().filter(|&&s| s != NO_UNIT).count()
            }
        }
    }

    /// The map of values `0..len` of `runs`, a start per `plane` values; `Err(c)` when channel c's
    /// values are not consecutive units of one vertex layer.
    fn of(runs: &Runs, len: usize, plane: usize) -> Result<OperandUnits, usize> {
        if let [run] = &runs.0[..] {
            return Ok(match run.unit {
                NO_UNIT => OperandUnits::None,
                unit => OperandUnits::Contiguous(unit),
            });
        }
        let starts = (0..len / plane)
            .map(|c| runs.start_of_whole(c * plane, plane).ok_or(c))
            .collect::<Result<Vec<u32>, usize>>()?;
        Ok(OperandUnits::Channels { plane, starts }.simplified())
    }

    /// `None` or `Contiguous` when the starts say so (a cat of one operand, say).
    fn simplified(self) -> OperandUnits {
        let OperandUnits::Channels { plane, starts } = &self else {
            return self;
        };
        if starts.iter().all(|&s| s == NO_UNIT) {
            return OperandUnits::None;
        }
        let first = starts[0];
        let in_order = first != NO_UNIT
            && (starts.iter().enumerate()).all(|(c, &s)| s as usize == first as usize + c * plane);
        if in_order {
            OperandUnits::Contiguous(first)
        } else {
            self
        }
    }
}

/// Consecutive values of a tensor (flat order) whose units are consecutive too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Flat index of the first value.
    start: usize,
    len: usize,
    /// Unit of the first value, or `NO_UNIT` for values that are no vertices.
    unit: u32,
}

/// The units of a tensor's values: runs covering its flat indices in order.
#[derive(Debug, Clone, Default)]
struct Runs(Vec<Run>);

impl Runs {
    fn single(len: usize, unit: u32) -> Runs {
        Runs(vec![Run {
            start: 0,
            len,
            unit,
        }])
    }

    fn len(&self) -> usize {
        self.0.last().map_or(0, |r| r.start + r.len)
    }

    /// Appends `len` values of units from `unit` on, merged into the last run when they go on
    /// from it.
    fn push(&mut self, len: usize, unit: u32) {
        let start = self.len();
        if let Some(last) = self.0.last_mut() {
            let goes_on = match (last.unit, unit) {
                (NO_UNIT, NO_UNIT) => true,
                (NO_UNIT, _) | (_, NO_UNIT) => false,
                (l, u) => l as usize + last.len == u as usize,
            };
            if goes_on {
                last.len += len;
                return;
            }
        }
        self.0.push(Run { start, len, unit });
    }

    /// Index of the run holding value `i`.
    fn run_at(&self, i: usize) -> usize {
        self.0.partition_point(|r| r.start + r.len <= i)
    }

    /// Appends values `start..start + len` of `from`.
    fn extend_from(&mut self, from: &Runs, start: usize, len: usize) {
        let end = start + len;
        let mut pos = start;
        for run in &from.0[from.run_at(start)..] {
            if pos >= end {
                break;
            }
            let take = (run.start + run.len).min(end) - pos;
            let unit = match run.unit {
                NO_UNIT => NO_UNIT,
                u => u + (pos - run.start) as u32,
            };
            self.push(take, unit);
            pos += take;
        }
    }

    /// The unit of value `start` when values `start..start + len` lie in one run (`NO_UNIT` for
    /// values that are no vertices); None when they span runs.
    fn start_of_whole(&self, start: usize, len: usize) -> Option<u32> {
        let run = self.0[self.run_at(start)];
        (start + len <= run.start + run.len).then(|| match run.unit {
            NO_UNIT => NO_UNIT,
            u => u + (start - run.start) as u32,
        })
    }

    /// The vertex layers (or "values that are no vertices") that values `start..start + len`
    /// come from, for messages.
    fn sources(&self, start: usize, len: usize, layers: &[VertexLayer]) -> Vec<String> {
        let mut part = Runs::default();
        part.extend_from(self, start, len);
        let mut names: Vec<String> = Vec::new();
        for run in &part.0 {
            let name = match layer_of_unit(layers, run.unit) {
                Some(l) => format!("`{}`", l.name),
                None => "model input values that are no vertices".to_string(),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// The runs of a cat along `dim` of the sample shape: for each index of the dimensions before
/// `dim`, each operand's block of values in turn.
fn cat_runs(layer: &Layer, dim: usize, operands: &[Rc<Runs>]) -> Runs {
    let outer = numel(&layer.out_shape[..dim]);
    let blocks: Vec<usize> = (layer.in_shapes.iter()).map(|s| numel(&s[dim..])).collect();
    let mut out = Runs::default();
    for o in 0..outer {
        for (runs, &block) in operands.iter().zip(&blocks) {
            out.extend_from(runs, o * block, block);
        }
    }
    out
}

/// Values per map start for each operand of a graph op: a channel's for convs and pools, one
/// value for linear layers; `add` tries channels first and falls back to single values.
fn planes(op: &Op, in_shape: &[usize]) -> Vec<usize> {
    let [_, h, w] = chw(in_shape);
    match op {
        Op::Linear(_) => vec![1],
        Op::Add if h * w > 1 => vec![h * w, 1],
        _ => vec![h * w],
    }
}

/// The map of one graph op's operand, or the error naming the channel that cannot be mapped.
fn operand_units(
    layer: &Layer,
    runs: &Runs,
    layers: &[VertexLayer],
) -> Result<OperandUnits, PlanError> {
    let len = numel(layer.in_shape());
    let planes = planes(&layer.op, layer.in_shape());
    let mut failed = 0;
    for &plane in &planes {
        match OperandUnits::of(runs, len, plane) {
            Ok(units) => return Ok(units),
            Err(c) => failed = c,
        }
    }
    let plane = planes[0];
    Err(PlanError::UnitLayout {
        layer: layer.name.clone(),
        op: layer.op.kind(),
        channel: failed,
        sources: runs.sources(failed * plane, plane, layers).join(" and "),
    })
}

/// Per graph op, in `net.layers` order, the units of each of its operands. `input_unit` is the
/// model input's first unit (`NO_UNIT` when it is no vertex layer); `op_offsets[i]` is graph op
/// i's first unit; `layers` (for messages) are the vertex layers.
pub(super) fn trace(
    net: &Network,
    input_unit: u32,
    op_offsets: &[u32],
    layers: &[VertexLayer],
) -> Result<Vec<Vec<OperandUnits>>, PlanError> {
    let input = Rc::new(Runs::single(numel(&net.input_shape), input_unit));
    let mut values: Vec<Rc<Runs>> = Vec::with_capacity(net.layers.len());
    let mut out = Vec::with_capacity(op_offsets.len());
    for layer in &net.layers {
        let operands: Vec<Rc<Runs>> = (layer.inputs.iter())
            .map(|input_of| match input_of {
                LayerInput::Input => input.clone(),
                LayerInput::Layer(j) => values[*j].clone(),
            })
            .collect();
        let value = match (layer.op.role(), &layer.op) {
            (OpRole::Graph, _) => {
                let units = (operands.iter())
                    .map(|runs| operand_units(layer, runs, layers))
                    .collect::<Result<Vec<_>, _>>()?;
                let offset = op_offsets[out.len()];
                out.push(units);
                Rc::new(Runs::single(numel(&layer.out_shape), offset))
            }
            (_, Op::Cat { dim }) => Rc::new(cat_runs(layer, *dim, &operands)),
            // Value ops, flatten and reshape: the same units in the same flat order.
            _ => operands[0].clone(),
        };
        values.push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_and_slice() {
        let mut r = Runs::default();
        r.push(3, 10);
        r.push(2, 13); // goes on from 10..13
        r.push(2, NO_UNIT);
        r.push(1, NO_UNIT);
        r.push(4, 40);
        assert_eq!(r.0.len(), 3);
        assert_eq!(r.len(), 12);
        let mut s = Runs::default();
        s.extend_from(&r, 4, 6);
        let got: Vec<(usize, usize, u32)> = s.0.iter().map(|r| (r.start, r.len, r.unit)).collect();
        assert_eq!(got, [(0, 1, 14), (1, 3, NO_UNIT), (4, 2, 40)]);
        assert_eq!(r.start_of_whole(1, 4), Some(11));
        assert_eq!(r.start_of_whole(5, 3), Some(NO_UNIT));
        assert_eq!(r.start_of_whole(4, 2), None);
    }

    #[test]
    fn operand_maps_simplify() {
        let mut r = Runs::default();
        r.push(4, 0);
        r.push(4, 100);
        let units = OperandUnits::of(&r, 8, 2).unwrap();
        assert_eq!(
            units,
            OperandUnits::Channels {
                plane: 2,
                starts: vec![0, 2, 100, 102]
            }
        );
        assert_eq!(units.unit(5), 101);
        assert_eq!(OperandUnits::of(&r, 8, 8), Err(0));
        let mut r = Runs::default();
        r.push(4, NO_UNIT);
        r.push(4, 7);
        let units = OperandUnits::of(&r, 8, 4).unwrap();
        assert_eq!(units.vertex_values(8), 4);
        assert_eq!(units.unit(2), NO_UNIT);
    }
}
