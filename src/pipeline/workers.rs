//! Worker stage: graph building and persistence, one (sample, variant) at a time, each worker
//! with its own topology buffers.

use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};

use super::stage::{self, Stage};
use super::writer::WriterMsg;
use crate::forward::ForwardOutput;
use crate::output::{fault_point, FailureStage, FaultPoint, SampleOutcome, SampleResult};
use crate::perturb::AttackStats;
use crate::topology::{GraphPlan, HomologyOptions, Scopes, Workspace};

/// Model -> workers: one (sample, variant), pointing into its batch's captured activations.
pub(super) struct Job {
    pub(super) shard: usize,
    pub(super) index: usize,
    pub(super) variant: usize,
    pub(super) label: Option<i64>,
    pub(super) attack: Option<AttackStats>,
    /// The sample's row in `batch`.
    pub(super) row: usize,
    pub(super) batch: Arc<ForwardOutput>,
}

/// What every worker computes.
#[derive(Clone, Copy)]
pub(super) struct WorkerTask<'a> {
    pub(super) plan: &'a GraphPlan,
    pub(super) scopes: Scopes,
    pub(super) homology: HomologyOptions,
}

/// Starts `count` workers; each runs until the job channel closes or the writer is gone.
pub(super) fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    count: usize,
    task: WorkerTask<'scope>,
    jobs: &Receiver<Job>,
    results: &Sender<WriterMsg>,
) -> anyhow::Result<Vec<ScopedJoinHandle<'scope, anyhow::Result<()>>>> {
    (0..count)
        .map(|i| {
            let (jobs, results) = (jobs.clone(), results.clone());
            std::thread::Builder::new()
                .name(format!("actopo-worker-{i}"))
                .spawn_scoped(scope, move || {
                    stage::guarded(Stage::Worker, || {
                        work(task, jobs, results);
                        Ok(())
                    })
                })
                .with_context(|| format!("cannot start worker thread {i}; lower pipeline.workers"))
        })
        .collect()
}

fn work(task: WorkerTask, jobs: Receiver<Job>, results: Sender<WriterMsg>) {
    let mut workspace = Workspace::new();
    for job in jobs {
        fault_point(FaultPoint::WorkerJob);
        let shard = job.shard;
        let entry = run_job(&mut workspace, task, job);
        if results.send(WriterMsg::Sample { shard, entry }).is_err() {
            return;
        }
    }
}

/// One sample's graph and diagrams, or its failure.
fn run_job(workspace: &mut Workspace, task: WorkerTask, job: Job) -> SampleOutcome {
    let b = &job.batch;
    let mut diagrams = Vec::new();
    let inputs: Vec<&[f32]> = b
        .captures
        .iter()
        .zip(&b.capture_lens)
        .map(|(c, &len)| &c[job.row * len..(job.row + 1) * len])
        .collect();
    match workspace.run(
        task.plan,
        &inputs,
        task.scopes,
        task.homology,
        &mut diagrams,
    ) {
        Ok(()) => SampleOutcome::Done(SampleResult {
            index: job.index,
            variant: job.variant,
            label: job.label,
            pred: b.pred[job.row],
            confidence: b.confidence[job.row],
            attack: job.attack,
            scopes: diagrams,
        }),
        Err(e) => SampleOutcome::Failed {
            index: job.index,
            variant: job.variant,
            stage: FailureStage::Topology,
            error: e.to_string(),
        },
    }
}
