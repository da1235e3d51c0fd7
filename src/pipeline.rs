//! The streaming run (design.md section 6):
//!
//! ```text
//! reader (tokio: reads + decodes shards ahead, cuts batches)
//!   -> model (this thread owns tch: batched forward, captures graph-op inputs)
//!   -> jobs (bounded crossbeam channel, one per sample)
//!   -> workers (each owns a topology Workspace: graph + persistence)
//!   -> writer (reorders by index, Parquet per shard, atomic rename, manifest)
//! ```
//!
//! Every queue is bounded, so memory stays flat whatever the dataset size. Stages stop by
//! dropping their senders: when the reader is done the model loop ends, the job channel closes,
//! workers drain and exit, the result channel closes, and the writer finishes. A failing sample or
//! shard fails only its shard: its partial files are deleted, the others complete, and the run
//! reports the failures (non-zero exit).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use crate::config::Settings;
use crate::data::{self, ReadOptions, ShardSource};
use crate::forward::{device_name, ForwardOutput, TchModel};
use crate::manifest::{sha256_file, Manifest, ModelInfo, ShardEntry, ShardStatus};
use crate::model::Model;
use crate::output::{OutputLayout, SampleResult, ShardOutput};
use crate::perturb::{self, Attack, AttackKind, AttackStats, SampleRng};
use crate::progress::Progress;
use crate::topology::{GraphPlan, HomologyOptions, Scopes, Workspace};

/// Reader -> model.
enum ReaderMsg {
    /// A shard was read; its batches follow.
    Shard {
        shard: usize,
        samples: usize,
    },
    Batch {
        shard: usize,
        start: usize,
        n: usize,
        x: Vec<f32>,
        labels: Option<Vec<i64>>,
    },
    Failed {
        shard: usize,
        error: String,
    },
}

/// Model -> writer, about whole shards.
enum Control {
    Started { shard: usize, samples: usize },
    Failed { shard: usize, error: String },
}

/// Model -> workers: one (sample, variant), pointing into its batch's captured activations.
struct Job {
    shard: usize,
    index: usize,
    variant: usize,
    label: Option<i64>,
    attack: Option<AttackStats>,
    row: usize,
    batch: Arc<ForwardOutput>,
}

/// Workers -> writer.
enum Outcome {
    Done(SampleResult),
    Failed {
        shard: usize,
        index: usize,
        error: String,
    },
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub samples: usize,
    pub shards_done: usize,
    /// (shard name, error) for every shard that failed.
    pub failures: Vec<(String, String)>,
    pub elapsed: Duration,
    pub device: String,
    pub workers: usize,
    pub out_dir: PathBuf,
}

/// Everything checked before any sample is processed.
pub struct Prepared {
    pub model: Model,
    pub shards: Vec<ShardSource>,
    pub plan: GraphPlan,
    /// Per-channel mean and std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub read_options: ReadOptions,
}

/// Loads and checks the model and lists the shards; no data is read.
pub fn prepare(settings: &Settings) -> anyhow::Result<Prepared> {
    let model = Model::load(&settings.spec, settings.weights.as_deref())?;
    let shards = data::list_shards(&settings.config.data.shards, settings.format).map_err(|p| {
        anyhow!(
            "data shards in {}:\n  {}",
            settings.config_path.display(),
            p.join("\n  ")
        )
    })?;
    let plan = GraphPlan::new(&model.network, &model.weights, settings.graph)?;
    let shape = &model.network.input_shape;
    let channels = if shape.len() == 3 { shape[0] } else { 1 };
    let (mean, std) = data::channel_stats(
        &settings.config.data.mean,
        &settings.config.data.std,
        channels,
    )
    .map_err(|e| anyhow!("configuration {}: {e}", settings.config_path.display()))?;
    for attack in &settings.attacks {
        if matches!(attack.kind, AttackKind::GaussianBlur { .. }) && shape.len() != 3 {
            anyhow::bail!(
                "configuration {}: attack `{}` (gaussian_blur) needs image inputs but model {} takes {:?}; remove the attack",
                settings.config_path.display(),
                attack.name,
                model.spec.path.display(),
                shape
            );
        }
    }
    let read_options = ReadOptions {
        input_shape: shape.clone(),
        image_column: settings.config.data.image_column.clone(),
        label_column: settings.config.data.label_column.clone(),
        limit: settings.config.data.limit as usize,
    };
    Ok(Prepared {
        model,
        shards,
        plan,
        mean,
        std,
        read_options,
    })
}

/// The `variant` names: `clean`, then the attacks in config order.
pub fn variant_names(attacks: &[Attack]) -> Vec<String> {
    std::iter::once("clean".to_string())
        .chain(attacks.iter().map(|a| a.name.clone()))
        .collect()
}

fn conventions(settings: &Settings, model: &Model) -> Vec<(String, String)> {
    let g = &settings.graph;
    let h = &settings.homology;
    vec![
        ("actopo.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("actopo.model".into(), model.network.name.clone()),
        (
            "actopo.filtration".into(),
            "superlevel: simplices enter by decreasing value; birth >= death".into(),
        ),
        (
            "actopo.edge_weight".into(),
            "|w * a| in f32 (pool: |a|, avg pool: |a| / (kh * kw)); zero-weight edges left out"
                .into(),
        ),
        ("actopo.include_input".into(), g.include_input.to_string()),
        ("actopo.maxpool_edges".into(), g.maxpool_edges.to_string()),
        ("actopo.vertex_birth".into(), g.vertex_birth.to_string()),
        (
            "actopo.keep_zero_persistence".into(),
            h.keep_zero_persistence.to_string(),
        ),
        ("actopo.h1_diagram".into(), h.h1_diagram.to_string()),
        (
            "actopo.scopes".into(),
            settings.config.graph.scopes.join(","),
        ),
        (
            "actopo.subgraph_top_k".into(),
            settings.config.subgraph.top_k.to_string(),
        ),
        (
            "actopo.unit_ids".into(),
            "vertex layer offset + flat C,H,W index; layers listed in manifest.json".into(),
        ),
    ]
}

/// Runs the whole job.
pub fn run(settings: &Settings) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let Prepared {
        model,
        shards,
        plan,
        mean,
        std,
        read_options,
    } = prepare(settings)?;
    let tch_model = TchModel::new(&model, settings.device, &mean, &std)?;
    let variants = Arc::new(variant_names(&settings.attacks));
    let device = device_name(tch_model.device());
    let out_dir = settings.config.output.dir.clone();
    std::fs::create_dir_all(&out_dir).with_context(|| {
        format!(
            "cannot create output.dir {}; check the path and its permissions",
            out_dir.display()
        )
    })?;
    let conventions = conventions(settings, &model);
    let manifest = Manifest {
        tool: "actopo",
        version: env!("CARGO_PKG_VERSION"),
        config_file: settings.config_path.clone(),
        config: settings.config.clone(),
        device: device.clone(),
        model: ModelInfo {
            name: model.network.name.clone(),
            spec: model.spec.path.clone(),
            spec_sha256: sha256_file(&model.spec.path)?,
            weights: model.weights_path.clone(),
            weights_sha256: sha256_file(&model.weights_path)?,
            input_shape: model.network.input_shape.clone(),
            vertex_layers: plan
                .vertex_layers
                .iter()
                .map(|l| (l.name.clone(), l.offset, l.len))
                .collect(),
        },
        conventions: conventions.iter().cloned().collect(),
        variants: variants.to_vec(),
        attacks: settings.attacks.clone(),
        shards: shards
            .iter()
            .map(|s| ShardEntry {
                name: s.name.clone(),
                path: s.path.clone(),
                status: ShardStatus::Pending,
                samples: None,
                outputs: Vec::new(),
                error: None,
            })
            .collect(),
    };
    manifest.write(&out_dir)?;

    let workers = settings.workers.max(1);
    let batch_size = settings.config.pipeline.batch_size;
    let (reader_tx, reader_rx) = tokio::sync::mpsc::channel::<ReaderMsg>(2);
    let (job_tx, job_rx) = bounded::<Job>(batch_size.max(64) * 2);
    let (result_tx, result_rx) = bounded::<Outcome>(workers * 64);
    let (control_tx, control_rx) = unbounded::<Control>();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .build()?;
    runtime.spawn(read_shards(
        shards.clone(),
        read_options,
        batch_size,
        reader_tx,
    ));

    let plan = Arc::new(plan);
    let worker_handles: Vec<_> = (0..workers)
        .map(|i| {
            let (jobs, results, plan) = (job_rx.clone(), result_tx.clone(), plan.clone());
            let (scopes, homology) = (settings.scopes, settings.homology);
            std::thread::Builder::new()
                .name(format!("actopo-worker-{i}"))
                .spawn(move || worker_loop(&plan, scopes, homology, jobs, results))
                .expect("spawn worker")
        })
        .collect();
    drop(job_rx);
    drop(result_tx);

    let layout = Arc::new(OutputLayout {
        dir: out_dir.clone(),
        summary: settings.config.output.summary,
        diagrams: settings.config.output.diagrams,
        subgraph_top_k: settings
            .config
            .output
            .subgraphs
            .then_some(settings.config.subgraph.top_k),
        variants: variants.to_vec(),
        vertex_layers: plan.vertex_layers.clone(),
        metadata: conventions,
    });
    let writer = {
        let shards = shards.clone();
        std::thread::Builder::new()
            .name("actopo-writer".into())
            .spawn(move || {
                Writer {
                    shards,
                    layout,
                    manifest,
                }
                .run(result_rx, control_rx)
            })
            .expect("spawn writer")
    };

    let stage = ModelStage {
        model: &tch_model,
        attacks: &settings.attacks,
        clip: settings.config.data.clip,
        seed: settings.config.pipeline.seed,
        shard_names: shards.iter().map(|s| s.name.clone()).collect(),
    };
    let model_result = stage.run(reader_rx, job_tx, control_tx);
    for h in worker_handles {
        h.join().map_err(|_| anyhow!("a worker thread panicked"))?;
    }
    let (samples, shards_done, failures) = writer
        .join()
        .map_err(|_| anyhow!("the writer thread panicked"))??;
    runtime.shutdown_background();
    model_result?;
    Ok(RunReport {
        samples,
        shards_done,
        failures,
        elapsed: started.elapsed(),
        device,
        workers,
        out_dir: settings.config.output.dir.clone(),
    })
}

/// Reader stage: decodes shard i+1 on a blocking thread while shard i's batches are sent.
async fn read_shards(
    shards: Vec<ShardSource>,
    options: ReadOptions,
    batch_size: usize,
    tx: tokio::sync::mpsc::Sender<ReaderMsg>,
) {
    let options = Arc::new(options);
    let spawn_read = |src: ShardSource| {
        let options = options.clone();
        tokio::task::spawn_blocking(move || data::read_shard(&src, &options))
    };
    let mut next = shards.first().cloned().map(spawn_read);
    for shard in 0..shards.len() {
        let current = next.take().expect("a read per shard");
        next = shards.get(shard + 1).cloned().map(spawn_read);
        let samples = match current.await {
            Ok(Ok(samples)) => samples,
            Ok(Err(e)) => {
                let _ = tx
                    .send(ReaderMsg::Failed {
                        shard,
                        error: e.to_string(),
                    })
                    .await;
                continue;
            }
            Err(e) => {
                let _ = tx
                    .send(ReaderMsg::Failed {
                        shard,
                        error: format!("reader panicked: {e}"),
                    })
                    .await;
                continue;
            }
        };
        if tx
            .send(ReaderMsg::Shard {
                shard,
                samples: samples.n,
            })
            .await
            .is_err()
        {
            return;
        }
        let mut x = samples.x;
        for start in (0..samples.n).step_by(batch_size) {
            let n = (samples.n - start).min(batch_size);
            let batch = x[start * samples.sample_len..(start + n) * samples.sample_len].to_vec();
            let labels = samples
                .labels
                .as_ref()
                .map(|l| l[start..start + n].to_vec());
            if tx
                .send(ReaderMsg::Batch {
                    shard,
                    start,
                    n,
                    x: batch,
                    labels,
                })
                .await
                .is_err()
            {
                return;
            }
        }
        x.clear();
    }
}

/// Model stage: owns tch. Per batch: the clean forward pass, then each attack and its forward
/// pass, then one job per (sample, variant).
struct ModelStage<'a> {
    model: &'a TchModel,
    attacks: &'a [Attack],
    clip: [f32; 2],
    seed: u64,
    shard_names: Vec<String>,
}

/// One variant of a batch: its forward pass and, for attacks, per-sample stats.
struct VariantBatch {
    output: Arc<ForwardOutput>,
    stats: Option<Vec<AttackStats>>,
}

impl ModelStage<'_> {
    fn run(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<ReaderMsg>,
        jobs: Sender<Job>,
        control: Sender<Control>,
    ) -> anyhow::Result<()> {
        let mut failed = std::collections::HashSet::new();
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                ReaderMsg::Shard { shard, samples } => {
                    control.send(Control::Started { shard, samples })?;
                }
                ReaderMsg::Failed { shard, error } => {
                    control.send(Control::Failed { shard, error })?;
                }
                ReaderMsg::Batch {
                    shard,
                    start,
                    n,
                    x,
                    labels,
                } => {
                    if failed.contains(&shard) {
                        continue;
                    }
                    let variants = match self.batch(shard, start, n, &x, labels.as_deref()) {
                        Ok(v) => v,
                        Err(e) => {
                            failed.insert(shard);
                            control.send(Control::Failed {
                                shard,
                                error: format!("samples {start}..{}: {e:#}", start + n),
                            })?;
                            continue;
                        }
                    };
                    for row in 0..n {
                        for (variant, v) in variants.iter().enumerate() {
                            let job = Job {
                                shard,
                                index: start + row,
                                variant,
                                label: labels.as_ref().map(|l| l[row]),
                                attack: v.stats.as_ref().map(|s| s[row]),
                                row,
                                batch: v.output.clone(),
                            };
                            if jobs.send(job).is_err() {
                                return Err(anyhow!("the workers stopped early"));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn batch(
        &self,
        shard: usize,
        start: usize,
        n: usize,
        x: &[f32],
        labels: Option<&[i64]>,
    ) -> anyhow::Result<Vec<VariantBatch>> {
        let clean = self.model.forward(x, n).context("forward pass")?;
        // Untargeted attacks move away from the label, or from the clean prediction.
        let targets: Vec<i64> = labels
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| clean.pred.clone());
        let len = self.model.sample_len();
        let mut out = vec![VariantBatch {
            output: Arc::new(clean),
            stats: None,
        }];
        for (i, attack) in self.attacks.iter().enumerate() {
            let mut rngs: Vec<SampleRng> = (0..n)
                .map(|r| SampleRng::for_sample(self.seed, &self.shard_names[shard], start + r, i))
                .collect();
            let adv = match attack.kind {
                AttackKind::GaussianNoise { sigma } => {
                    perturb::gaussian_noise(x, len, sigma, self.clip, &mut rngs)
                }
                AttackKind::MatchedNoise { of } => {
                    let target: Vec<f32> = out[of + 1]
                        .stats
                        .as_ref()
                        .expect("an attack's stats")
                        .iter()
                        .map(|s| s.l2)
                        .collect();
                    perturb::matched_noise(x, len, &target, self.clip, &mut rngs)
                }
                ref kind => self
                    .model
                    .attack(kind, x, n, &targets, self.clip, &mut rngs)
                    .with_context(|| format!("attack `{}`", attack.name))?,
            };
            let output = self
                .model
                .forward(&adv, n)
                .with_context(|| format!("forward pass of attack `{}`", attack.name))?;
            let stats = perturb::norms(x, &adv, len)
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
}

/// Worker stage: graph building and persistence with thread-owned buffers.
fn worker_loop(
    plan: &GraphPlan,
    scopes: Scopes,
    homology: HomologyOptions,
    jobs: Receiver<Job>,
    results: Sender<Outcome>,
) {
    let mut workspace = Workspace::new();
    for job in jobs {
        let b = &job.batch;
        let mut diagrams = Vec::new();
        let inputs: Vec<&[f32]> = b
            .captures
            .iter()
            .zip(&b.capture_lens)
            .map(|(c, &len)| &c[job.row * len..(job.row + 1) * len])
            .collect();
        let outcome = match workspace.run(plan, &inputs, scopes, homology, &mut diagrams) {
            Ok(()) => Outcome::Done(SampleResult {
                shard: job.shard,
                index: job.index,
                variant: job.variant,
                label: job.label,
                pred: b.pred[job.row],
                confidence: b.confidence[job.row],
                attack: job.attack,
                scopes: diagrams,
            }),
            Err(e) => Outcome::Failed {
                shard: job.shard,
                index: job.index,
                error: if job.variant == 0 {
                    e.to_string()
                } else {
                    format!("variant {}: {e}", job.variant)
                },
            },
        };
        if results.send(outcome).is_err() {
            return;
        }
    }
}

/// Writer stage state.
struct Writer {
    shards: Vec<ShardSource>,
    layout: Arc<OutputLayout>,
    manifest: Manifest,
}

enum ShardState {
    Writing { output: ShardOutput, samples: usize },
    Finished,
}

impl Writer {
    /// Returns (samples written, shards done, failures).
    #[allow(clippy::type_complexity)]
    fn run(
        mut self,
        results: Receiver<Outcome>,
        control: Receiver<Control>,
    ) -> anyhow::Result<(usize, usize, Vec<(String, String)>)> {
        let mut states: Vec<Option<ShardState>> = (0..self.shards.len()).map(|_| None).collect();
        let mut progress = Progress::new(self.shards.len());
        let mut failures = Vec::new();
        let (mut samples, mut done) = (0usize, 0usize);
        let (mut results_open, mut control_open) = (true, true);
        while results_open || control_open {
            // Control messages for a shard are sent before its first job, so handle them first.
            let msg = if control_open {
                match control.try_recv() {
                    Ok(c) => Some(Err(c)),
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        control_open = false;
                        continue;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => None,
                }
            } else {
                None
            };
            let msg = match msg {
                Some(m) => m,
                None if results_open && control_open => select! {
                    recv(control) -> c => match c { Ok(c) => Err(c), Err(_) => { control_open = false; continue; } },
                    recv(results) -> r => match r { Ok(r) => Ok(r), Err(_) => { results_open = false; continue; } },
                },
                None if results_open => match results.recv() {
                    Ok(r) => Ok(r),
                    Err(_) => {
                        results_open = false;
                        continue;
                    }
                },
                None => continue,
            };
            match msg {
                Err(Control::Started { shard, samples: n }) => {
                    let src = &self.shards[shard];
                    progress.shard_started(shard, &src.name, n);
                    match ShardOutput::create(self.layout.clone(), &src.name, &src.stem) {
                        Ok(output) => {
                            states[shard] = Some(ShardState::Writing { output, samples: n })
                        }
                        Err(e) => self.fail(
                            shard,
                            format!("{e:#}"),
                            &mut states,
                            &mut failures,
                            &mut progress,
                            done,
                        )?,
                    }
                    if n == 0 {
                        if let Some(s) =
                            self.complete(shard, &mut states, &mut failures, &mut progress, done)?
                        {
                            done += 1;
                            samples += s;
                        }
                    }
                }
                Err(Control::Failed { shard, error }) => {
                    self.fail(
                        shard,
                        error,
                        &mut states,
                        &mut failures,
                        &mut progress,
                        done,
                    )?;
                }
                Ok(Outcome::Failed {
                    shard,
                    index,
                    error,
                }) => {
                    self.fail(
                        shard,
                        format!("sample {index}: {error}"),
                        &mut states,
                        &mut failures,
                        &mut progress,
                        done,
                    )?;
                }
                Ok(Outcome::Done(result)) => {
                    let shard = result.shard;
                    let Some(ShardState::Writing { output, samples: n }) = states[shard].as_mut()
                    else {
                        continue; // the shard failed already
                    };
                    if result.variant == 0 {
                        progress.sample_done(shard);
                    }
                    let n = *n;
                    if let Err(e) = output.add(result) {
                        self.fail(
                            shard,
                            format!("writing output: {e:#}"),
                            &mut states,
                            &mut failures,
                            &mut progress,
                            done,
                        )?;
                        continue;
                    }
                    if output.written() == n {
                        if let Some(s) =
                            self.complete(shard, &mut states, &mut failures, &mut progress, done)?
                        {
                            done += 1;
                            samples += s;
                        }
                    }
                }
            }
        }
        progress.finish();
        Ok((samples, done, failures))
    }

    /// Finishes a fully written shard: final names, manifest. Returns its sample count.
    fn complete(
        &mut self,
        shard: usize,
        states: &mut [Option<ShardState>],
        failures: &mut Vec<(String, String)>,
        progress: &mut Progress,
        done: usize,
    ) -> anyhow::Result<Option<usize>> {
        let Some(ShardState::Writing { output, samples }) = states[shard].take() else {
            return Ok(None);
        };
        states[shard] = Some(ShardState::Finished);
        match output.finish() {
            Ok(paths) => {
                let entry = &mut self.manifest.shards[shard];
                entry.status = ShardStatus::Done;
                entry.samples = Some(samples);
                entry.outputs = paths;
                self.manifest.write(&self.layout.dir)?;
                progress.shard_ended(shard, done + 1, self.shards.len());
                Ok(Some(samples))
            }
            Err(e) => {
                self.fail(
                    shard,
                    format!("finishing output: {e:#}"),
                    states,
                    failures,
                    progress,
                    done,
                )?;
                Ok(None)
            }
        }
    }

    fn fail(
        &mut self,
        shard: usize,
        error: String,
        states: &mut [Option<ShardState>],
        failures: &mut Vec<(String, String)>,
        progress: &mut Progress,
        done: usize,
    ) -> anyhow::Result<()> {
        if matches!(states[shard], Some(ShardState::Finished))
            && self.manifest.shards[shard].status == ShardStatus::Failed
        {
            return Ok(()); // already reported
        }
        // Dropping the output deletes its temporary files.
        states[shard] = Some(ShardState::Finished);
        let src = &self.shards[shard];
        let error = format!("{}: {error}", src.path.display());
        let entry = &mut self.manifest.shards[shard];
        entry.status = ShardStatus::Failed;
        entry.error = Some(error.clone());
        self.manifest.write(&self.layout.dir)?;
        progress.shard_ended(shard, done, self.shards.len());
        failures.push((src.name.clone(), error));
        Ok(())
    }
}
