//! Dense (linear) layer edges: input j -> output i, weight |W[i, j] * a[j]|, row by row.

use super::super::plan::GraphOp;
use super::super::sink::{Blocks, EdgeSink, BLOCK, NO_EDGE, NO_LABEL};
use super::super::units::NO_UNIT;
use super::columns::group_by_row;
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

/// How many output labels keep their list of inputs; a further label's list replaces the last one.
const CACHED_LABELS: usize = 32;

/// Every (output, nonzero input) pair, output by output, inputs ascending; rows skip what the sink
/// says it does not want (edges lighter than its split, or that cannot merge components).
fn edges<S: EdgeSink, U: FeatureUnits>(g: &GraphOp, units: U, a: &[f32], sink: &mut S) {
    let n_in = g.in_chw.iter().product::<usize>();
    // ReLU leaves many inputs at exactly 0: visit only the others (same edge order as a full scan).
    let nonzero: Vec<u32> = (0..n_in as u32).filter(|&j| a[j as usize] != 0.0).collect();
    match sink.connected_labels() {
        // Few edges above the sink's floor: found from the column index, and the sink drops
        // those whose ends it knows connected.
        Some(_) if walks_columns(g, a, &nonzero, sink.keeps_heavier_than()) => {
            all_or_heavy_edges(g, units, a, &nonzero, sink)
        }
        Some(labels) => {
            let mut rows = RowInputs::new(g, labels, &nonzero, units, a);
            open_edges(g, units, a, &mut rows, sink)
        }
        None => all_or_heavy_edges(g, units, a, &nonzero, sink),
    }
}

/// Whether a later pass should find its edges by walking the column index: only with a floor
/// (the sink keeps only edges heavier than `floor` >= 0; the last band's is below every weight)
/// and when few columns' edges above it go past their entries (those columns are weighed whole).
fn walks_columns(g: &GraphOp, a: &[f32], nonzero: &[u32], floor: Option<f32>) -> bool {
    let (Some(floor), Some(columns)) = (floor.filter(|&f| f >= 0.0), g.columns()) else {
        return false;
    };
    columns.mostly_within_entries(a, nonzero, floor)
}

/// Every edge, or with a split (`keeps_heavier_than`) only the heavier ones, the rest counted.
fn all_or_heavy_edges<S: EdgeSink, U: FeatureUnits>(
    g: &GraphOp,
    units: U,
    a: &[f32],
    nonzero: &[u32],
    sink: &mut S,
) {
    let n_in = a.len();
    let above = sink.keeps_heavier_than();
    let mut light = 0usize;
    let isa = Isa::detected();
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(&mut *sink, &mut block);
    // (A negative split keeps zero weights too, which `heavy_edges` does not hand over.)
    if let (Some(split), Some(columns)) = (above.filter(|&s| s >= 0.0), g.columns()) {
        let dst_offset = g.dst_offset;
        let put = |out: &mut Blocks<S>, w, j, i| out.put(w, units.unit(j), dst_offset + i);
        let light = columns.heavy_edges(&g.weight, a, nonzero, split, &mut out, put);
        out.finish();
        sink.skipped(light);
        return;
    }
    for i in 0..g.out_chw[0] {
        let row = &g.weight[i * n_in..(i + 1) * n_in];
        let dst = g.dst_offset + i as u32;
        match above {
            Some(above) => light += heavy_row(&mut out, isa, row, a, above, units, dst),
            None => put_inputs(&mut out, row, a, units, nonzero, dst),
        }
    }
    out.finish();
    sink.skipped(light);
}

/// The edges whose ends are not yet connected, for a sink with component labels, leaving out
/// those that cannot merge anything (`RowInputs`).
fn open_edges<S: EdgeSink, U: FeatureUnits>(
    g: &GraphOp,
    units: U,
    a: &[f32],
    rows: &mut RowInputs,
    sink: &mut S,
) {
    let n_in = a.len();
    let mut block = [NO_EDGE; BLOCK];
    let mut out = Blocks::new(&mut *sink, &mut block);
    for i in 0..g.out_chw[0] {
        let row = &g.weight[i * n_in..(i + 1) * n_in];
        let dst = g.dst_offset + i as u32;
        let inputs = rows.inputs_of(i, row, a);
        put_inputs(&mut out, row, a, units, inputs, dst);
    }
    out.finish();
}

#[inline(always)]
fn put_inputs<S: EdgeSink, U: FeatureUnits>(
    out: &mut Blocks<S>,
    row: &[f32],
    a: &[f32],
    units: U,
    inputs: &[u32],
    dst: u32,
) {
    for &j in inputs {
        out.put((row[j as usize] * a[j as usize]).abs(), units.unit(j), dst);
    }
}

/// Which inputs each output row still needs in a later pass, where the sink holds the component
/// labels of the earlier passes. Every edge there is lighter than every edge swept before.
///
/// - Inputs with the row's own label: none (their edges close cycles).
/// - Between a vertex not yet born and one component, only the heaviest edge (the first of equal
///   weights) can merge anything: with the component's heavier edges, each other one closes a
///   cycle of which it is the last edge met (docs/persistence.md). So an unborn row takes only
///   its heaviest edge from the inputs of the most common input label, and an unborn input only
///   its heaviest edge into the rows of the most common output label. (Edges to other
///   components are all kept: there are few.)
struct RowInputs<'a> {
    /// The nonzero inputs (indices within the op's input) and their labels.
    nonzero: &'a [u32],
    input_labels: Vec<u32>,
    /// The label of each output unit.
    outputs: Vec<u32>,
    /// The most common label among the labelled nonzero inputs, and among the outputs.
    main_in: u32,
    main_out: u32,
    /// (output label, inputs to list for it) for the first few labels met: the nonzero inputs
    /// not carrying it, but no unborn ones for `main_out` (see `picks`).
    cached: Vec<(u32, Vec<u32>)>,
    /// For each row labelled `main_out`: the unborn inputs whose heaviest edge into `main_out`
    /// is this row's, ascending (`picks[pick_start[i]..pick_start[i + 1]]`).
    pick_start: Vec<u32>,
    picks: Vec<u32>,
    /// The list for the current row when it is not cached.
    other: Vec<u32>,
}

impl<'a> RowInputs<'a> {
    fn new(
        g: &GraphOp,
        labels: &[u32],
        nonzero: &'a [u32],
        units: impl FeatureUnits,
        a: &[f32],
    ) -> Self {
        let n_out = g.out_chw[0];
        let input_labels: Vec<u32> = nonzero
            .iter()
            .map(|&j| labels[units.unit(j) as usize])
            .collect();
        let outputs = labels[g.dst_offset as usize..][..n_out].to_vec();
        let main_out = most_common_label(&outputs);
        let (pick_start, picks) = heaviest_rows(g, nonzero, &input_labels, &outputs, main_out, a);
        RowInputs {
            nonzero,
            main_in: most_common_label(&input_labels),
            main_out,
            input_labels,
            outputs,
            cached: Vec::new(),
            pick_start,
            picks,
            other: Vec::new(),
        }
    }

    /// The inputs of row `i` (weights `row`) to hand over, ascending.
    fn inputs_of(&mut self, i: usize, row: &[f32], a: &[f32]) -> &[u32] {
        let here = self.outputs[i];
        if here == NO_LABEL {
            return self.inputs_of_unborn_row(row, a);
        }
        let cached = self.cached_inputs(here);
        let picks = &self.picks[self.pick_start[i] as usize..self.pick_start[i + 1] as usize];
        if picks.is_empty() {
            return &self.cached[cached].1;
        }
        self.other.clear();
        merge_ascending(&self.cached[cached].1, picks, &mut self.other);
        &self.other
    }

    /// The index in `cached` of the list for rows labelled `here` (made if new; a full cache
    /// drops its last list).
    fn cached_inputs(&mut self, here: u32) -> usize {
        if let Some(k) = self.cached.iter().position(|(label, _)| *label == here) {
            return k;
        }
        let skip_unborn = here == self.main_out;
        let listed = (self.nonzero.iter().zip(&self.input_labels))
            .filter(|&(_, &label)| label != here && !(skip_unborn && label == NO_LABEL))
            .map(|(&j, _)| j)
            .collect();
        if self.cached.len() == CACHED_LABELS {
            self.cached.pop();
        }
        self.cached.push((here, listed));
        self.cached.len() - 1
    }

    /// An unborn row's inputs: every nonzero input but those labelled `main_in`, of which only
    /// the heaviest edge (the first of equal weights) is kept.
    fn inputs_of_unborn_row(&mut self, row: &[f32], a: &[f32]) -> &[u32] {
        // Unborn inputs are no component: with no labelled input, every input is kept.
        let main = self.main_in;
        let mut heaviest = (0.0f32, u32::MAX);
        for (&j, &label) in self.nonzero.iter().zip(&self.input_labels) {
            let weight = (row[j as usize] * a[j as usize]).abs();
            if label == main && label != NO_LABEL && weight > heaviest.0 {
                heaviest = (weight, j);
            }
        }
        self.other.clear();
        let pairs = self.nonzero.iter().zip(&self.input_labels);
        let kept =
            pairs.filter(|&(&j, &label)| label != main || main == NO_LABEL || j == heaviest.1);
        self.other.extend(kept.map(|(&j, _)| j));
        &self.other
    }
}

/// The label most outputs or inputs carry (NO_LABEL when none has one).
fn most_common_label(labels: &[u32]) -> u32 {
    let mut sorted: Vec<u32> = labels.iter().copied().filter(|&l| l != NO_LABEL).collect();
    sorted.sort_unstable();
    let runs = sorted.chunk_by(|x, y| x == y);
    runs.max_by_key(|run| run.len())
        .map_or(NO_LABEL, |run| run[0])
}

/// For each unborn nonzero input, the row labelled `main_out` holding its heaviest edge (the first
/// of equal weights; none when every such edge weighs 0), as lists by row: (`pick_start`, `picks`).
fn heaviest_rows(
    g: &GraphOp,
    nonzero: &[u32],
    input_labels: &[u32],
    outputs: &[u32],
    main_out: u32,
    a: &[f32],
) -> (Vec<u32>, Vec<u32>) {
    let unborn: Vec<u32> = (nonzero.iter().zip(input_labels))
        .filter(|&(_, &label)| label == NO_LABEL)
        .map(|(&j, _)| j)
        .collect();
    let wanted = |i: usize| outputs[i] == main_out && main_out != NO_LABEL;
    let columns = g.columns().expect("a linear op has its column index");
    let heaviest: Vec<u32> = (unborn.iter())
        .map(|&j| columns.heaviest_row(&g.weight, a, j as usize, wanted))
        .map(|row| row.unwrap_or(NO_ROW))
        .collect();
    // By row; inputs stay ascending within a row.
    let found: Vec<(u32, u32)> = (unborn.iter().zip(&heaviest))
        .filter(|(_, &i)| i != NO_ROW)
        .map(|(&j, &i)| (i, j))
        .collect();
    let (pick_start, grouped) = group_by_row(outputs.len(), &found, |&(i, _)| i);
    let picks = grouped.into_iter().map(|(_, j)| j).collect();
    (pick_start, picks)
}

const NO_ROW: u32 = u32::MAX;

/// Merges two ascending lists into `out`.
fn merge_ascending(x: &[u32], y: &[u32], out: &mut Vec<u32>) {
    let (mut p, mut q) = (0, 0);
    while p < x.len() && q < y.len() {
        if x[p] < y[q] {
            out.push(x[p]);
            p += 1;
        } else {
            out.push(y[q]);
            q += 1;
        }
    }
    out.extend_from_slice(&x[p..]);
    out.extend_from_slice(&y[q..]);
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
