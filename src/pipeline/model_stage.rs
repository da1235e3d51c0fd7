//! Model stage, the one that owns tch. Per batch: the clean forward pass, then each attack and its forward
//! pass, then one job per (sample, variant) for the workers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use crossbeam_channel::Sender;

use super::reader::ReaderMsg;
use super::workers::Job;
use super::writer::WriterMsg;
use crate::data::SampleBatch;
use crate::forward::{ForwardOutput, TchModel};
use crate::output::{fault_point, FailureStage, FaultPoint, SampleOutcome};
use crate::perturb::{self, Attack, AttackKind, AttackStats, OutOfClip, SampleRng};

pub(super) struct ModelStage<'a> {
    pub(super) model: &'a TchModel,
    pub(super) attacks: &'a [Attack],
    pub(super) clip: [f32; 2],
    pub(super) seed: u64,
    pub(super) shard_names: Vec<String>,
    pub(super) quit: &'a AtomicBool,
}

/// One variant of a batch: its forward pass and, for attacks, per-sample stats.
struct VariantBatch {
    output: Arc<ForwardOutput>,
    stats: Option<Vec<AttackStats>>,
}

/// A downstream stage (workers or writer) is gone: stop reading.
struct Stopped;

/// Where a batch's messages go.
struct Downstream {
    jobs: Sender<Job>,
    results: Sender<WriterMsg>,
}

impl Downstream {
    fn job(&self, job: Job) -> Result<(), Stopped> {
        self.jobs.send(job).map_err(|_| Stopped)
    }

    fn result(&self, msg: WriterMsg) -> Result<(), Stopped> {
        self.results.send(msg).map_err(|_| Stopped)
    }

    /// The shard fails as a whole: the writer drops what it wrote of it.
    fn shard_failed(
        &self,
        shard: usize,
        stage: FailureStage,
        error: String,
    ) -> Result<(), Stopped> {
        self.result(WriterMsg::ShardFailed {
            shard,
            stage,
            error,
        })
    }
}

/// The model stage's state across batches.
#[derive(Default)]
struct ModelState {
    /// Shards that failed: their further batches are skipped.
    failed: HashSet<usize>,
    out_of_clip: OutOfClip,
}

impl ModelStage<'_> {
    /// Runs until the reader is done, `quit` is set or a downstream stage is gone. Returns the raw
    /// values outside `data.clip` seen in the batches that went on.
    pub(super) fn run(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<ReaderMsg>,
        jobs: Sender<Job>,
        results: Sender<WriterMsg>,
    ) -> OutOfClip {
        let out = Downstream { jobs, results };
        let mut state = ModelState::default();
        while let Some(msg) = rx.blocking_recv() {
            if self.quit.load(Ordering::SeqCst) {
                break;
            }
            if self.handle(msg, &mut state, &out).is_err() {
                break;
            }
        }
        state.out_of_clip
    }

    fn handle(
        &self,
        msg: ReaderMsg,
        state: &mut ModelState,
        out: &Downstream,
    ) -> Result<(), Stopped> {
        match msg {
            ReaderMsg::Start {
                shard,
                samples,
                source,
            } => out.result(WriterMsg::Started {
                shard,
                samples,
                source,
            }),
            ReaderMsg::Failed { shard, error } => {
                state.failed.insert(shard);
                out.shard_failed(shard, FailureStage::Read, error)
            }
            ReaderMsg::Batch { shard, batch } if !state.failed.contains(&shard) => {
                fault_point(FaultPoint::ModelBatch);
                self.on_batch(shard, batch, state, out)
            }
            ReaderMsg::Batch { .. } => Ok(()),
        }
    }

    /// Checks a batch's inputs, runs its variants and sends one job per (sample, variant).
    fn on_batch(
        &self,
        shard: usize,
        batch: SampleBatch,
        state: &mut ModelState,
        out: &Downstream,
    ) -> Result<(), Stopped> {
        let SampleBatch {
            start,
            n,
            x,
            labels,
            failed: bad,
        } = batch;
        let samples = format!("samples {start}..{}", start + n);
        let seen = OutOfClip::of_batch(&x, self.model.sample_len(), self.clip, |row| {
            !bad.iter().any(|(i, _)| *i == start + row)
        });
        if seen.values > 0 && !self.attacks.is_empty() {
            // Checked before any attack runs: clipping would move these inputs beyond the
            // attack's budget without a word.
            state.failed.insert(shard);
            let why = seen.describe(self.clip, perturb::ATTACKED_OUT_OF_CLIP);
            return out.shard_failed(shard, FailureStage::Read, format!("{samples}: {why}"));
        }
        state.out_of_clip.add(&seen);
        let variants = match self.variants(shard, start, n, &x, &labels) {
            Ok(v) => v,
            Err(e) => {
                state.failed.insert(shard);
                return out.shard_failed(shard, FailureStage::Forward, format!("{samples}: {e:#}"));
            }
        };
        for row in 0..n {
            let index = start + row;
            match bad.iter().find(|(i, _)| *i == index) {
                Some((_, error)) => self.undecodable(shard, index, error, out)?,
                None => {
                    for (variant, v) in variants.iter().enumerate() {
                        out.job(Job {
                            shard,
                            index,
                            variant,
                            label: labels[row],
                            attack: v.stats.as_ref().map(|s| s[row]),
                            row,
                            batch: v.output.clone(),
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// An undecodable sample: a failure row per variant, no jobs.
    fn undecodable(
        &self,
        shard: usize,
        index: usize,
        error: &str,
        out: &Downstream,
    ) -> Result<(), Stopped> {
        for variant in 0..1 + self.attacks.len() {
            let entry = SampleOutcome::Failed {
                index,
                variant,
                stage: FailureStage::Read,
                error: error.to_string(),
            };
            out.result(WriterMsg::Sample { shard, entry })?;
        }
        Ok(())
    }

    /// The clean forward pass, then each attack and its forward pass.
    fn variants(
        &self,
        shard: usize,
        start: usize,
        n: usize,
        x: &[f32],
        labels: &[Option<i64>],
    ) -> anyhow::Result<Vec<VariantBatch>> {
        let clean = self.model.forward(x, n).context("forward pass")?;
        // Untargeted attacks move away from the label, or from the clean prediction.
        let targets: Vec<i64> = labels
            .iter()
            .zip(&clean.pred)
            .map(|(label, pred)| label.unwrap_or(*pred))
            .collect();
        let mut out = vec![VariantBatch {
            output: Arc::new(clean),
            stats: None,
        }];
        for (i, attack) in self.attacks.iter().enumerate() {
            let mut rngs: Vec<SampleRng> = (0..n)
                .map(|r| SampleRng::for_sample(self.seed, &self.shard_names[shard], start + r, i))
                .collect();
            let adv = self.perturb(attack, x, n, &targets, &out, &mut rngs)?;
            let output = self
                .model
                .forward(&adv, n)
                .with_context(|| format!("forward pass of attack `{}`", attack.name))?;
            let stats = perturb::norms(x, &adv, self.model.sample_len())
                .into_iter()
                .zip(output.pred.iter().zip(&targets))
                .map(|((linf, l2), (p, t))| AttackStats {
                    success: p != t,
                    linf,
                    l2,
                })
                .collect();
            out.push(VariantBatch {
                output: Arc::new(output),
                stats: Some(stats),
            });
        }
        Ok(out)
    }

    /// The attacked inputs of a batch; `done` holds the variants computed so far (clean first).
    fn perturb(
        &self,
        attack: &Attack,
        x: &[f32],
        n: usize,
        targets: &[i64],
        done: &[VariantBatch],
        rngs: &mut [SampleRng],
    ) -> anyhow::Result<Vec<f32>> {
        let len = self.model.sample_len();
        Ok(match attack.kind {
            AttackKind::GaussianNoise { sigma } => {
                perturb::gaussian_noise(x, len, sigma, self.clip, rngs)
            }
            AttackKind::MatchedNoise { of } => {
                // The settings check that `of` names an earlier attack.
                let target: Vec<f32> = done[of + 1]
                    .stats
                    .as_ref()
                    .expect("an attack's stats")
                    .iter()
                    .map(|s| s.l2)
                    .collect();
                perturb::matched_noise(x, len, &target, self.clip, rngs)
            }
            ref kind => self
                .model
                .attack(kind, x, n, targets, self.clip, rngs)
                .with_context(|| format!("attack `{}`", attack.name))?,
        })
    }
}
