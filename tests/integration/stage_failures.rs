//! A pipeline stage that panics (fault injection with ACTOPOTEST_PANIC_AT) fails the run with exit
//! code 2 and an error naming the stage; the output folder stays consistent (the shard committed
//! before is intact, the unfinished ones are pending and left no files, temporary ones included),
//! and a plain rerun completes the run with the bytes of an uninterrupted one.

use crate::support::{faulted, stderr as err};
use crate::sweeps::{manifest, reference, statuses, tree, Sweep};

/// Panics `stage` at `point` (`name:n`, the n-th time it is reached) in a run of three shards of
/// 20 samples (one batch each) with one worker, so results reach the writer in a fixed order and
/// the first shard is always committed before the panic stops the run.
fn a_stage_panic_is_a_failed_run_that_a_rerun_completes(stage: &str, point: &str) {
    let s = Sweep::new(3, 20);
    let want = reference(&s);
    let o = faulted(
        &s,
        "ACTOPOTEST_PANIC_AT",
        point,
        &["--set", "pipeline.workers=1"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let name = point.split(':').next().unwrap();
    let message = format!("error: the {stage} stage panicked: fault injected at {name}");
    assert!(err(&o).contains(&message), "{}", err(&o));
    assert_eq!(
        statuses(&manifest(&s.path("out/manifest.json"))),
        ["done", "pending", "pending"]
    );
    let committed: Vec<_> = want
        .iter()
        .filter(|(n, _)| n.contains("/part-00-"))
        .cloned()
        .collect();
    assert_eq!(committed.len(), 2);
    assert_eq!(tree(&s.path("out")), committed);
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("40 samples in 2 shard(s)"), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), want);
}

#[test]
fn a_reader_panic_fails_the_run_and_a_rerun_completes_it() {
    // as the reader starts the second shard
    a_stage_panic_is_a_failed_run_that_a_rerun_completes("reader", "reader-shard:2");
}

#[test]
fn a_model_stage_panic_fails_the_run_and_a_rerun_completes_it() {
    // before the forward pass of the second shard's batch
    a_stage_panic_is_a_failed_run_that_a_rerun_completes("model", "model-batch:2");
}

#[test]
fn a_worker_panic_fails_the_run_and_a_rerun_completes_it() {
    // on the second shard's tenth sample
    a_stage_panic_is_a_failed_run_that_a_rerun_completes("worker", "worker-job:30");
}

#[test]
fn a_writer_panic_fails_the_run_and_a_rerun_completes_it() {
    // as it adds the second shard's tenth sample
    a_stage_panic_is_a_failed_run_that_a_rerun_completes("writer", "writer-sample:30");
}
