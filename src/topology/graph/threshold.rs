//! Edge thresholds (`graph.threshold`, docs/graph.md): each graph op's edges lighter than a cut
//! are left out of the graph, in every scope alike. The cut of an op is computed once per sample
//! (`OpCuts`), then every enumeration of the graph drops the lighter edges (`CutSink`).

use std::fmt;

use super::plan::GraphPlan;
use super::reference_cut::reference_cut;
use super::sink::{Edge, EdgeSink, BLOCK};

/// Which edges of each graph op are kept.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum EdgeThreshold {
    /// Every edge (no cut).
    #[default]
    None,
    /// Per graph op and input: the edges at or above the P-th percentile (0..=100, nearest rank)
    /// of the op's nonzero edge weights.
    Percentile(f64),
    /// The edges whose weight (as f64) is at or above this one (>= 0).
    Weight(f64),
    /// The reference code's cuts at the P-th percentile (0..=100, `reference_cut`): per graph op
    /// and input, the edges strictly above the cut.
    ReferencePercentile(f64),
}

// The config refuses NaN, so equality is an equivalence.
impl Eq for EdgeThreshold {}

impl fmt::Display for EdgeThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeThreshold::None => f.write_str("none"),
            EdgeThreshold::Percentile(p) => write!(f, "percentile = {p}"),
            EdgeThreshold::Weight(w) => write!(f, "weight = {w}"),
            EdgeThreshold::ReferencePercentile(p) => write!(f, "reference_percentile = {p}"),
        }
    }
}

/// The nearest-rank P-th percentile of `weights` (all > 0): with n weights sorted ascending,
/// rank r = ceil(P * n / 100) and the cut is the r-th smallest; r = 0 gives 0 (keep all).
/// `weights` is reordered.
pub fn percentile_cut(weights: &mut [f32], percentile: f64) -> f32 {
    let n = weights.len();
    // P * n is exact for the sizes met, so a whole-number rank is not rounded up by error.
    let rank = ((percentile * n as f64) / 100.0).ceil() as usize;
    if rank == 0 || n == 0 {
        return 0.0;
    }
    let rank = rank.min(n);
    *weights.select_nth_unstable_by(rank - 1, f32::total_cmp).1
}

/// The smallest f32 whose f64 value is at or above `w`: `weight >= cut` in f32 is then
/// `weight as f64 >= w`.
fn weight_cut(w: f64) -> f32 {
    let cut = w as f32;
    if (cut as f64) < w {
        cut.next_up()
    } else {
        cut
    }
}

/// One sample's cut of each graph op, with the buffer that computes them (kept per worker).
#[derive(Debug, Default)]
pub struct OpCuts {
    weights: Vec<f32>,
    /// The values a reference cut is a percentile of.
    values: Vec<f32>,
    /// `cuts[i]`: the lightest weight graph op `i` keeps.
    cuts: Vec<f32>,
    /// `below[i]`: how many of op `i`'s nonzero edges are lighter than its cut.
    below: Vec<usize>,
}

/// The cuts of a sample's graph ops, as `SampleGraph` reads them.
#[derive(Debug, Clone, Copy)]
pub struct Cuts<'a> {
    pub(super) cuts: &'a [f32],
    pub(super) below: &'a [usize],
}

impl OpCuts {
    /// Each graph op's cut for one sample whose inputs are checked (`inputs[i]` is graph op
    /// `i`'s input); None when `threshold` keeps every edge.
    pub fn compute(
        &mut self,
        plan: &GraphPlan,
        inputs: &[&[f32]],
        threshold: EdgeThreshold,
    ) -> Option<Cuts<'_>> {
        if threshold == EdgeThreshold::None {
            return None;
        }
        self.cuts.clear();
        self.below.clear();
        for (op, input) in inputs.iter().enumerate() {
            self.weights.clear();
            plan.emit_edges(op, input, &mut Weighs(&mut self.weights));
            let cut = match threshold {
                EdgeThreshold::Percentile(p) => percentile_cut(&mut self.weights, p),
                EdgeThreshold::Weight(w) => weight_cut(w),
                // Strictly above the cut: at or above the next f32.
                EdgeThreshold::ReferencePercentile(p) => {
                    reference_cut(plan, op, inputs, p, &mut self.values).next_up()
                }
                EdgeThreshold::None => 0.0,
            };
            self.cuts.push(cut);
            self.below
                .push(self.weights.iter().filter(|&&w| w < cut).count());
        }
        Some(Cuts {
            cuts: &self.cuts,
            below: &self.below,
        })
    }
}

/// Collects edge weights.
struct Weighs<'a>(&'a mut Vec<f32>);

impl EdgeSink for Weighs<'_> {
    fn extend(&mut self, edges: &[Edge]) {
        self.0.extend(edges.iter().map(|e| e.weight));
    }
}

/// Passes on the edges of one graph op at or above its cut. It asks the kernels to skip the
/// lighter edges too (they then only count them), and since it knows how many of the op's edges
/// are below the cut (`below`), it passes on to `inner.skipped` only the count of kept edges
/// the kernels skipped for `inner`.
pub(super) struct CutSink<'s, S: EdgeSink> {
    inner: &'s mut S,
    cut: f32,
    below: usize,
    /// Edges below the cut seen in `extend`, and all edges the kernels skipped.
    dropped: usize,
    skipped: usize,
}

impl<'s, S: EdgeSink> CutSink<'s, S> {
    pub(super) fn new(inner: &'s mut S, cut: f32, below: usize) -> Self {
        CutSink {
            inner,
            cut,
            below,
            dropped: 0,
            skipped: 0,
        }
    }

    /// Ends the op: reports the kept edges the kernels skipped. (A sink with labels gets no
    /// exact count: kernels skip edges by label uncounted; such sinks do not read the count.)
    pub(super) fn finish(self) {
        let skipped_below = self.below.saturating_sub(self.dropped);
        let exact = self.inner.connected_labels().is_none();
        debug_assert!(
            !exact || self.skipped >= skipped_below,
            "skip counts add up"
        );
        let kept_skipped = self.skipped.saturating_sub(skipped_below);
        if kept_skipped > 0 {
            self.inner.skipped(kept_skipped);
        }
    }
}

impl<S: EdgeSink> EdgeSink for CutSink<'_, S> {
    fn extend(&mut self, edges: &[Edge]) {
        let mut block = [super::sink::NO_EDGE; BLOCK];
        for chunk in edges.chunks(BLOCK) {
            let mut len = 0;
            for &edge in chunk {
                block[len] = edge;
                len += (edge.weight >= self.cut) as usize;
            }
            self.dropped += chunk.len() - len;
            self.inner.extend(&block[..len]);
        }
    }

    fn connected_labels(&self) -> Option<&[u32]> {
        self.inner.connected_labels()
    }

    fn keeps_heavier_than(&self) -> Option<f32> {
        // Edges at most the float just below the cut are exactly those below it.
        let below_cut = (self.cut > 0.0).then(|| self.cut.next_down());
        match (self.inner.keeps_heavier_than(), below_cut) {
            (Some(s), Some(b)) => Some(s.max(b)),
            (s, b) => s.or(b),
        }
    }

    fn skipped(&mut self, count: usize) {
        self.skipped += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_ceil_rank() {
        let w = [5.0f32, 1.0, 4.0, 2.0, 3.0, 6.0, 8.0, 7.0, 10.0, 9.0];
        for (p, cut) in [
            (0.0, 0.0),
            (1.0, 1.0),
            (10.0, 1.0),
            (11.0, 2.0),
            (50.0, 5.0),
        ] {
            assert_eq!(percentile_cut(&mut w.clone(), p), cut, "P = {p}");
        }
        for (p, cut) in [(90.0, 9.0), (90.5, 10.0), (100.0, 10.0)] {
            assert_eq!(percentile_cut(&mut w.clone(), p), cut, "P = {p}");
        }
        assert_eq!(percentile_cut(&mut [], 90.0), 0.0);
    }

    #[test]
    fn a_weight_cut_compares_in_f64() {
        let cut = weight_cut(0.3);
        assert!(cut as f64 >= 0.3 && (cut.next_down() as f64) < 0.3);
        assert_eq!(weight_cut(0.5), 0.5);
        assert_eq!(weight_cut(0.0), 0.0);
    }
}
