//! Reader stage: streams each shard on a blocking thread, batch by batch, so memory stays flat
//! whatever the shard size; the bounded channel keeps it a few batches ahead of the model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::anyhow;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::Sender;
use tokio::task::JoinHandle;

use super::stage::{self, Stage};
use crate::data::{self, ReadOptions, SampleBatch, ShardEvent, ShardSource};
use crate::output::fingerprint::{self, SourceFingerprint};
use crate::output::{fault_point, FaultPoint};

/// Reader -> model. A shard's messages arrive in order: Start, then its Batches; Failed
/// (instead of Start, or after some Batches) when it cannot be read.
pub(super) enum ReaderMsg {
    Start {
        shard: usize,
        samples: usize,
        source: SourceFingerprint,
    },
    Batch {
        shard: usize,
        batch: SampleBatch,
    },
    Failed {
        shard: usize,
        error: String,
    },
}

/// What the reader reads.
pub(super) struct ReaderTask {
    /// (position in this worker's shard list, source), in reading order.
    pub(super) shards: Vec<(usize, ShardSource)>,
    pub(super) options: ReadOptions,
    pub(super) batch_size: usize,
}

/// Starts reading on one of `runtime`'s blocking threads, until all shards are read, `quit` is
/// set or the model stage is gone.
pub(super) fn spawn(
    runtime: &Runtime,
    task: ReaderTask,
    tx: Sender<ReaderMsg>,
    quit: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<()>> {
    runtime.spawn_blocking(move || {
        stage::guarded(Stage::Reader, || {
            for (shard, src) in &task.shards {
                fault_point(FaultPoint::ReaderShard);
                if quit.load(Ordering::SeqCst) {
                    break;
                }
                if !read_shard(*shard, src, &task, &tx, &quit) {
                    break;
                }
            }
            Ok(())
        })
    })
}

/// Waits for the reader to end.
pub(super) fn join(
    runtime: &Runtime,
    reader: JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    runtime
        .block_on(reader)
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(payload) => Err(stage::panicked(Stage::Reader, payload.as_ref())),
            Err(e) => Err(anyhow!("the reader stage ended: {e}")),
        })
}

/// Sends one shard's messages; false when the reader should stop (model gone or `quit`).
fn read_shard(
    shard: usize,
    src: &ShardSource,
    task: &ReaderTask,
    tx: &Sender<ReaderMsg>,
    quit: &AtomicBool,
) -> bool {
    // Fingerprinted before it is read, so the manifest records what was processed.
    let source = match fingerprint::fingerprint(src) {
        Ok(fp) => fp,
        Err(e) => {
            let error = format!("cannot read: {e}");
            return tx.blocking_send(ReaderMsg::Failed { shard, error }).is_ok();
        }
    };
    let mut open = true;
    let result = data::stream_shard(src, &task.options, task.batch_size, &mut |event| {
        let msg = match event {
            ShardEvent::Start { samples } => ReaderMsg::Start {
                shard,
                samples,
                source: source.clone(),
            },
            ShardEvent::Batch(batch) => ReaderMsg::Batch { shard, batch },
        };
        open = tx.blocking_send(msg).is_ok();
        open && !quit.load(Ordering::SeqCst)
    });
    if let Err(e) = result {
        let error = e.without_path();
        open = tx.blocking_send(ReaderMsg::Failed { shard, error }).is_ok();
    }
    open
}
