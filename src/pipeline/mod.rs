//! The streaming run, stage by stage (`docs/architecture.md`):
//!
//! ```text
//! reader (a blocking thread: streams and decodes shards batch by batch)
//!   -> model (this thread owns tch: forward passes, attacks, captures graph-op inputs)
//!   -> jobs (bounded crossbeam channel, one per sample and variant)
//!   -> workers (each owns a topology Workspace: graph + persistence)
//!   -> writer (reorders by index, Parquet per shard, atomic rename, manifest)
//! ```
//!
//! Every queue is bounded, so memory stays flat whatever the dataset size. Stages stop by
//! dropping their senders: when the reader is done the model loop ends, the job channel closes,
//! workers drain and exit, the result channel closes, and the writer finishes. The `quit` flag
//! (SIGINT/SIGTERM, or a fatal write error) makes the reader and model stop early; shards not
//! finished by then are abandoned (their partial files deleted) and stay `pending` in the
//! manifest. Every stage is joined; one that panicked or failed fails the run (exit code 2), and
//! its panic drops its channel ends, so the others end as after a normal finish.
//!
//! A sample that fails (undecodable, wrong size, NaN activations) is recorded in
//! `failures/<stem>.parquet` and the shard goes on; a shard that cannot be read at all is recorded
//! there too. A shard's files are written and synced under hidden names and renamed together when
//! all are complete; the manifest then marks it done. A rerun skips done shards whose inputs are
//! unchanged and redoes the rest (docs/data-safety.md: what the folder may hold and why;
//! docs/architecture.md: the stages and their files).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::config::Settings;
use crate::forward::{device_name, TchModel};
use crate::perturb::OutOfClip;

mod model_stage;
mod plan;
mod progress;
mod reader;
mod stage;
mod workers;
mod writer;

use model_stage::ModelStage;
use plan::RunPlan;
pub use plan::{prepare, Prepared};
use reader::ReaderTask;
use stage::Stage;
use workers::WorkerTask;
use writer::{Writer, Written};

/// How this process takes part in a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// This worker's index among `num_shards` processes sharing the output folder.
    pub shard_index: usize,
    pub num_shards: usize,
    /// Replace this worker's earlier outputs instead of refusing a folder of another run.
    pub overwrite: bool,
    /// Set by SIGINT/SIGTERM: stop cleanly.
    pub quit: Arc<AtomicBool>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub samples: usize,
    pub shards_done: usize,
    /// Shards skipped because an earlier run completed them.
    pub shards_skipped: usize,
    /// Shards that could not be processed (name, error).
    pub shard_failures: Vec<(String, String)>,
    /// Failed (sample, variant)s recorded in failures/.
    pub sample_failures: usize,
    /// Stopped by a signal before finishing.
    pub interrupted: bool,
    pub elapsed: Duration,
    pub device: String,
    pub workers: usize,
    pub out_dir: PathBuf,
    pub manifest: PathBuf,
    /// Raw input values outside `data.clip` in the samples processed (runs without attacks only:
    /// with attacks such a batch fails its shard).
    pub out_of_clip: OutOfClip,
}

/// Runs the whole job (this worker's share of it).
pub fn run(settings: &Settings, options: &RunOptions) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let prepared = prepare(settings)?;
    std::thread::scope(|scope| {
        // The dense layers' column indexes are built while libtorch takes the weights and runs
        // the first batch; without this thread the first worker to need one builds it.
        let _ = std::thread::Builder::new()
            .name("actopo-index".into())
            .spawn_scoped(scope, || prepared.plan.index_columns());
        run_prepared(settings, options, &prepared, started)
    })
}

fn run_prepared(
    settings: &Settings,
    options: &RunOptions,
    prepared: &Prepared,
    started: Instant,
) -> anyhow::Result<RunReport> {
    let plan = RunPlan::new(settings, options, prepared)?;
    let model = TchModel::new(
        &prepared.model,
        settings.device,
        &prepared.mean,
        &prepared.std,
    )?;
    let device = device_name(model.device());
    let manifest = plan.manifest(settings, prepared, &device);
    manifest.write(&plan.out_dir, &plan.manifest_file)?;
    let layout = Arc::new(plan.layout(settings, prepared));
    let writer = Writer::new(&plan, layout, manifest, options.quit.clone());
    let stages = Stages {
        settings,
        quit: &options.quit,
        model: &model,
        prepared,
        plan: &plan,
    };
    let (written, out_of_clip) = stages.run(writer)?;
    Ok(RunReport {
        samples: written.samples,
        shards_done: written.shards_done,
        shards_skipped: plan.skipped(),
        shard_failures: written.shard_failures,
        sample_failures: written.sample_failures,
        interrupted: options.quit.load(Ordering::SeqCst),
        elapsed: started.elapsed(),
        device,
        workers: settings.workers.max(1),
        out_dir: plan.out_dir.clone(),
        manifest: plan.out_dir.join(&plan.manifest_file),
        out_of_clip,
    })
}

/// What the stages of one run share.
struct Stages<'a> {
    settings: &'a Settings,
    quit: &'a Arc<AtomicBool>,
    model: &'a TchModel,
    prepared: &'a Prepared,
    plan: &'a RunPlan,
}

impl Stages<'_> {
    /// Starts the workers, the writer and the reader, runs the model stage on this thread (tch
    /// stays on the thread that loaded the model), then joins them all. The first failed stage
    /// in pipeline order (reader, model, workers, writer) fails the run.
    fn run(&self, writer: Writer) -> anyhow::Result<(Written, OutOfClip)> {
        let (workers, batch_size) = (self.settings.workers.max(1), self.batch_size());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .build()?;
        // Scoped: every thread is joined even when a later one cannot start; the channels live
        // inside, so an early return closes them and lets the started threads end.
        let joined = std::thread::scope(|scope| {
            let (reader_tx, reader_rx) = tokio::sync::mpsc::channel(2);
            let (job_tx, job_rx) = bounded(batch_size.max(64) * 2);
            let (result_tx, result_rx) = bounded(workers * 64 + batch_size);
            let task = self.worker_task();
            let worker_handles = workers::spawn(scope, workers, task, &job_rx, &result_tx)?;
            drop(job_rx);
            let writer = writer.spawn(scope, result_rx)?;
            let reader = reader::spawn(&runtime, self.reader_task(), reader_tx, self.quit.clone());
            let model_result = stage::guarded(Stage::Model, || {
                Ok(self.model_stage().run(reader_rx, job_tx, result_tx))
            });
            let reader_result = reader::join(&runtime, reader);
            let workers_result: anyhow::Result<Vec<()>> = worker_handles
                .into_iter()
                .map(|h| stage::join(Stage::Worker, h))
                .collect();
            let written = stage::join(Stage::Writer, writer);
            reader_result?;
            let out_of_clip = model_result?;
            workers_result?;
            anyhow::Ok((written?, out_of_clip))
        });
        runtime.shutdown_background();
        joined
    }

    fn batch_size(&self) -> usize {
        self.settings.config.pipeline.batch_size
    }

    fn reader_task(&self) -> ReaderTask {
        ReaderTask {
            shards: (self.plan.todo.iter())
                .map(|&i| (i, self.plan.shards[i].clone()))
                .collect(),
            options: self.prepared.read_options.clone(),
            batch_size: self.batch_size(),
        }
    }

    fn worker_task(&self) -> WorkerTask<'_> {
        WorkerTask {
            plan: &self.prepared.plan,
            scopes: self.settings.scopes,
            homology: self.settings.homology,
        }
    }

    fn model_stage(&self) -> ModelStage<'_> {
        ModelStage {
            model: self.model,
            attacks: &self.settings.attacks,
            clip: self.settings.config.data.clip,
            seed: self.settings.config.pipeline.seed,
            shard_names: self.plan.shards.iter().map(|s| s.name.clone()).collect(),
            quit: self.quit,
        }
    }
}
