//! Writer stage: puts each shard's rows in index order into its Parquet files, commits a shard's
//! files together when all its samples are in, and records every shard in the manifest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::Context;
use crossbeam_channel::Receiver;

use super::plan::RunPlan;
use super::progress::Progress;
use super::stage::{self, Stage};
use crate::data::ShardSource;
use crate::output::fingerprint::SourceFingerprint;
use crate::output::manifest::{Manifest, ShardStatus};
use crate::output::{
    fault_point, write_shard_failure, Failure, FailureStage, FaultPoint, OutputLayout,
    SampleOutcome, ShardOutput,
};

/// Model and workers -> writer.
pub(super) enum WriterMsg {
    /// A shard's samples are about to flow.
    Started {
        shard: usize,
        samples: usize,
        source: SourceFingerprint,
    },
    /// A shard could not be processed at all.
    ShardFailed {
        shard: usize,
        stage: FailureStage,
        error: String,
    },
    /// One (sample, variant), done or failed.
    Sample { shard: usize, entry: SampleOutcome },
}

/// What the writer did.
#[derive(Default)]
pub(super) struct Written {
    pub(super) samples: usize,
    pub(super) shards_done: usize,
    pub(super) shard_failures: Vec<(String, String)>,
    pub(super) sample_failures: usize,
}

/// A shard the writer has heard of.
enum ShardState {
    Writing {
        output: Box<ShardOutput>,
        samples: usize,
    },
    Closed,
}

/// Writer stage state.
pub(super) struct Writer {
    /// This worker's shards; messages refer to them by position.
    shards: Vec<ShardSource>,
    layout: Arc<OutputLayout>,
    manifest: Manifest,
    manifest_file: String,
    quit: Arc<AtomicBool>,
    /// Per shard: None until it starts.
    states: Vec<Option<ShardState>>,
    progress: Progress,
    written: Written,
    /// Shards this run processes (for the progress line).
    shards_to_do: usize,
}

impl Writer {
    /// The writer of `plan`'s shards, starting from `manifest`.
    pub(super) fn new(
        plan: &RunPlan,
        layout: Arc<OutputLayout>,
        manifest: Manifest,
        quit: Arc<AtomicBool>,
    ) -> Writer {
        Writer {
            shards: plan.shards.clone(),
            layout,
            manifest,
            manifest_file: plan.manifest_file.clone(),
            quit,
            states: (0..plan.shards.len()).map(|_| None).collect(),
            progress: Progress::new(plan.todo.len()),
            written: Written::default(),
            shards_to_do: plan.todo.len(),
        }
    }

    /// Starts the writer's thread; it runs until every sender of `messages` is gone.
    pub(super) fn spawn<'scope>(
        self,
        scope: &'scope Scope<'scope, '_>,
        messages: Receiver<WriterMsg>,
    ) -> anyhow::Result<ScopedJoinHandle<'scope, anyhow::Result<Written>>> {
        std::thread::Builder::new()
            .name("actopo-writer".into())
            .spawn_scoped(scope, move || {
                stage::guarded(Stage::Writer, || self.run(messages))
            })
            .context("cannot start the writer thread")
    }

    /// Consumes messages until every sender is gone. A write error (unwritable or full disk) is
    /// fatal: it sets `quit` so the other stages stop, drains the channel, and is returned.
    fn run(mut self, messages: Receiver<WriterMsg>) -> anyhow::Result<Written> {
        let mut fatal: Option<anyhow::Error> = None;
        for msg in messages {
            if fatal.is_some() {
                continue; // drain so the other stages can finish
            }
            if let Err(e) = self.handle(msg) {
                self.quit.store(true, Ordering::SeqCst);
                fatal = Some(e);
            }
        }
        self.progress.finish();
        // Shards still open were interrupted: dropping their outputs deletes the partial files.
        let written = std::mem::take(&mut self.written);
        drop(self);
        match fatal {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    fn handle(&mut self, msg: WriterMsg) -> anyhow::Result<()> {
        match msg {
            WriterMsg::Started {
                shard,
                samples,
                source,
            } => self.start(shard, samples, source),
            WriterMsg::ShardFailed {
                shard,
                stage,
                error,
            } => self.fail(shard, stage, error),
            WriterMsg::Sample { shard, entry } => self.add(shard, entry),
        }
    }

    fn start(
        &mut self,
        shard: usize,
        samples: usize,
        source: SourceFingerprint,
    ) -> anyhow::Result<()> {
        let src = &self.shards[shard];
        self.progress.shard_started(shard, &src.name, samples);
        let output =
            ShardOutput::create(self.layout.clone(), &src.name, &src.stem, &source.sha256)?;
        self.manifest.shards[shard].source = Some(source);
        self.states[shard] = Some(ShardState::Writing {
            output: Box::new(output),
            samples,
        });
        if samples == 0 {
            self.complete(shard)?;
        }
        Ok(())
    }

    fn add(&mut self, shard: usize, entry: SampleOutcome) -> anyhow::Result<()> {
        fault_point(FaultPoint::WriterSample);
        let Some(ShardState::Writing { output, samples }) = self.states[shard].as_mut() else {
            return Ok(()); // the shard failed already
        };
        let samples = *samples;
        let before = output.written();
        output.add(entry)?;
        for _ in before..output.written() {
            self.progress.sample_done(shard);
        }
        if output.written() == samples {
            self.complete(shard)?;
        }
        Ok(())
    }

    /// Drops whatever was written for the shard, then records it as failed. A reader error can
    /// arrive after the shard's last batch was written: it is undone too.
    fn fail(&mut self, shard: usize, stage: FailureStage, error: String) -> anyhow::Result<()> {
        self.states[shard] = Some(ShardState::Closed);
        let entry = &self.manifest.shards[shard];
        if entry.status == ShardStatus::Done {
            self.written.shards_done -= 1;
            self.written.samples -= entry.samples.unwrap_or(0);
            self.written.sample_failures -= entry.failures as usize;
        }
        let src = &self.shards[shard];
        let source = entry
            .source
            .as_ref()
            .map_or(String::new(), |s| s.sha256.clone());
        let failure = Failure {
            index: None,
            variant: None,
            stage,
            error: error.clone(),
        };
        let file = write_shard_failure(&self.layout, &src.name, &src.stem, &source, failure)?;
        let error = format!("{}: {error}", src.location);
        let entry = &mut self.manifest.shards[shard];
        entry.status = ShardStatus::Failed;
        entry.error = Some(error.clone());
        entry.outputs = vec![file];
        entry.failures = 1;
        self.manifest.write(&self.layout.dir, &self.manifest_file)?;
        self.progress
            .shard_ended(shard, self.written.shards_done, self.shards_to_do);
        self.written.shard_failures.push((src.name.clone(), error));
        Ok(())
    }

    /// Finishes a fully written shard: final names, manifest.
    fn complete(&mut self, shard: usize) -> anyhow::Result<()> {
        let Some(ShardState::Writing { output, samples }) = self.states[shard].take() else {
            return Ok(());
        };
        self.states[shard] = Some(ShardState::Closed);
        let failures = output.failures();
        let files = output.finish().with_context(|| {
            format!(
                "writing the outputs of {} into {}",
                self.shards[shard].name,
                self.layout.dir.display()
            )
        })?;
        let entry = &mut self.manifest.shards[shard];
        entry.status = ShardStatus::Done;
        entry.samples = Some(samples);
        entry.outputs = files;
        entry.failures = failures as u64;
        self.manifest.write(&self.layout.dir, &self.manifest_file)?;
        self.written.shards_done += 1;
        self.written.samples += samples;
        self.written.sample_failures += failures;
        self.progress
            .shard_ended(shard, self.written.shards_done, self.shards_to_do);
        Ok(())
    }
}
