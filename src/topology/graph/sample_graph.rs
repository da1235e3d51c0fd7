//! One scope's graph of one sample, as persistence reads it: enumerated, never stored.

use std::ops::Range;

use super::errors::GraphError;
use super::plan::{GraphOp, GraphPlan};
use super::sampling::{sample_op, WeightSample};
use super::sink::{EdgeSink, EdgeSource};
use super::threshold::{CutSink, Cuts};

/// One scope's graph of one sample: the edges of a range of graph ops, op by op (all of them for
/// the `network` scope, one for a `layers` scope). The inputs are checked once, when it is made,
/// so that it can be enumerated any number of times. With cuts (`graph.threshold`), each op's
/// edges below its cut are left out.
pub struct SampleGraph<'a> {
    plan: &'a GraphPlan,
    /// `inputs[i]` is the input activation of graph op `i`.
    inputs: &'a [&'a [f32]],
    ops: Range<usize>,
    cuts: Option<Cuts<'a>>,
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
        ops: Range<usize>,
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
        Ok(SampleGraph {
            plan,
            inputs,
            ops,
            cuts: None,
        })
    }

    /// The same graph keeping only each op's edges at or above its cut (`OpCuts::compute`
    /// for these inputs); None keeps every edge.
    pub fn with_cuts(self, cuts: Option<Cuts<'a>>) -> Self {
        SampleGraph { cuts, ..self }
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
            match &self.cuts {
                None => self.plan.emit_edges(i, self.inputs[i], sink),
                Some(c) => {
                    let mut cut = CutSink::new(sink, c.cuts[i], c.below[i]);
                    self.plan.emit_edges(i, self.inputs[i], &mut cut);
                    cut.finish();
                }
            }
        }
    }

    /// One part per graph op (see `sampling::sample_op`), without the weights below its cut.
    fn sample_weights(&self, every: usize, sample: &mut WeightSample) {
        for i in self.ops.clone() {
            let start = sample.weights.len();
            sample_op(self.plan, i, self.inputs[i], every, &mut sample.weights);
            if let Some(c) = &self.cuts {
                let mut kept = start;
                for k in start..sample.weights.len() {
                    sample.weights[kept] = sample.weights[k];
                    kept += (sample.weights[k] >= c.cuts[i]) as usize;
                }
                sample.weights.truncate(kept);
            }
            sample.end_part();
        }
    }
}
