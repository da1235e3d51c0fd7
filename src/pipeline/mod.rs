//! The streaming run:
//!
//! ```text
//! reader (tokio: streams and decodes shards batch by batch)
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
//! finished by then are abandoned (their partial files deleted) and stay `pending` in the manifest.
//!
//! A sample that fails (undecodable, wrong size, NaN activations) is recorded in
//! `failures/<stem>.parquet` and the shard goes on; a shard that cannot be read at all is recorded
//! there too. A shard's files are written and synced under hidden names and renamed together when
//! all are complete; the manifest then marks it done. A rerun skips done shards whose inputs are
//! unchanged and redoes the rest (docs/data-safety.md: what the folder may hold and why).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::config::Settings;
use crate::data::{self, ReadOptions, SampleBatch, ShardEvent, ShardSource};
use crate::forward::{device_name, ForwardOutput, TchModel};
use crate::manifest::{sha256_file, Manifest, ModelInfo, ShardEntry, ShardStatus};
use crate::model::Model;
use crate::outdir;
use crate::output::{write_shard_failure, Entry, Failure, OutputLayout, SampleResult, ShardOutput};
use crate::perturb::{self, Attack, AttackKind, AttackStats, OutOfClip, SampleRng};
use crate::resume::{self, SourceFingerprint};
use crate::topology::{GraphPlan, HomologyOptions, Scopes, Workspace};

mod progress;

use progress::Progress;

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

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            shard_index: 0,
            num_shards: 1,
            overwrite: false,
            quit: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Reader -> model. Messages of one shard arrive in order: Start, Batch..., End or Failed.
enum ReaderMsg {
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

/// Model and workers -> writer.
enum Outcome {
    /// A shard's samples are about to flow.
    Started {
        shard: usize,
        samples: usize,
        source: SourceFingerprint,
    },
    /// A shard could not be processed at all.
    ShardFailed {
        shard: usize,
        stage: &'static str,
        error: String,
    },
    Sample {
        shard: usize,
        entry: Entry,
    },
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

/// Runs the whole job (this worker's share of it).
pub fn run(settings: &Settings, options: &RunOptions) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let Prepared {
        model,
        shards,
        plan,
        mean,
        std,
        read_options,
    } = prepare(settings)?;
    anyhow::ensure!(
        options.num_shards >= 1 && options.shard_index < options.num_shards,
        "--shard-index {} must be below --num-shards {}",
        options.shard_index,
        options.num_shards
    );
    let mine = resume::split(&shards, options.shard_index, options.num_shards);
    let out_dir = settings.config.output.dir.clone();
    let manifest_file = resume::manifest_name(options.shard_index, options.num_shards);
    let inputs = run_inputs(settings, &model, &shards);
    inputs.check_output(&out_dir.join(&manifest_file))?;
    for src in &mine {
        for table in resume::TABLES {
            inputs.check_output(&crate::output::table_path(&out_dir, table, &src.stem))?;
        }
    }
    std::fs::create_dir_all(&out_dir).with_context(|| {
        format!(
            "cannot create output.dir {}; fix: check the path and its permissions",
            out_dir.display()
        )
    })?;
    if !options.overwrite {
        resume::refuse_unknown_files(&out_dir)?;
    }
    // Held until the run ends: a second run into the same folder (or worker) is refused.
    let _lock = outdir::lock(&out_dir, &manifest_file, options.num_shards > 1)?;
    outdir::check_table_dirs(&out_dir, &resume::TABLES)?;
    let spec_sha256 = sha256_file(&model.spec.path)?;
    let weights_sha256 = sha256_file(&model.weights_path)?;
    let identity = resume::identity(&settings.config, &spec_sha256, &weights_sha256);
    let run_identity = resume::identity_sha256(&identity);
    let previous = resume::check_output_dir(
        &out_dir,
        &identity,
        &manifest_file,
        &mine,
        options.overwrite,
        &result_tables(settings),
    )?;
    for note in &previous.notes {
        eprintln!("actopo: {note}");
    }
    resume::clear_unfinished(&out_dir, &mine, &previous)?;
    resume::remove_stale_manifest_temps(&out_dir, &manifest_file);

    let tch_model = TchModel::new(&model, settings.device, &mean, &std)?;
    let device = device_name(tch_model.device());
    let variants = variant_names(&settings.attacks);
    let conventions = conventions(settings, &model);
    let manifest = Manifest {
        tool: "actopo",
        version: env!("CARGO_PKG_VERSION"),
        identity,
        worker: [options.shard_index, options.num_shards],
        config_file: settings.config_path.clone(),
        config: settings.config.clone(),
        device: device.clone(),
        model: ModelInfo {
            name: model.network.name.clone(),
            spec: model.spec.path.clone(),
            spec_sha256,
            weights: model.weights_path.clone(),
            weights_sha256,
            input_shape: model.network.input_shape.clone(),
            vertex_layers: plan
                .vertex_layers
                .iter()
                .map(|l| (l.name.clone(), l.offset, l.len))
                .collect(),
        },
        conventions: conventions.iter().cloned().collect(),
        variants: variants.clone(),
        attacks: settings.attacks.clone(),
        shards: mine
            .iter()
            .map(
                |s| match previous.complete.iter().find(|e| e.name == s.name) {
                    Some(done) => ShardEntry {
                        path: s.path.clone(),
                        ..done.clone()
                    },
                    None => ShardEntry {
                        name: s.name.clone(),
                        stem: s.stem.clone(),
                        path: s.path.clone(),
                        status: ShardStatus::Pending,
                        samples: None,
                        outputs: Vec::new(),
                        failures: 0,
                        error: None,
                        source: None,
                    },
                },
            )
            .chain(previous.former.iter().cloned())
            .collect(),
    };
    manifest.write(&out_dir, &manifest_file)?;
    // Only shards not already complete are read.
    let todo: Vec<usize> = (0..mine.len())
        .filter(|&i| !previous.is_complete(&mine[i].name))
        .collect();

    let workers = settings.workers.max(1);
    let batch_size = settings.config.pipeline.batch_size;
    let (reader_tx, reader_rx) = tokio::sync::mpsc::channel::<ReaderMsg>(2);
    let (job_tx, job_rx) = bounded::<Job>(batch_size.max(64) * 2);
    let (result_tx, result_rx) = bounded::<Outcome>(workers * 64 + batch_size);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .build()?;
    let reader = runtime.spawn(read_shards(
        todo.iter().map(|&i| (i, mine[i].clone())).collect(),
        read_options,
        batch_size,
        reader_tx,
        options.quit.clone(),
    ));

    let plan = Arc::new(plan);
    let worker_handles: Vec<_> = (0..workers)
        .map(|i| {
            let (jobs, results, plan) = (job_rx.clone(), result_tx.clone(), plan.clone());
            let (scopes, homology) = (settings.scopes, settings.homology);
            std::thread::Builder::new()
                .name(format!("actopo-worker-{i}"))
                .spawn(move || worker_loop(&plan, scopes, homology, jobs, results))
                .with_context(|| format!("cannot start worker thread {i}; lower pipeline.workers"))
        })
        .collect::<anyhow::Result<_>>()?;
    drop(job_rx);

    let layout = Arc::new(OutputLayout {
        dir: out_dir.clone(),
        summary: settings.config.output.summary,
        diagrams: settings.config.output.diagrams,
        subgraph_top_k: settings
            .config
            .output
            .subgraphs
            .then_some(settings.config.subgraph.top_k),
        variants,
        vertex_layers: plan.vertex_layers.clone(),
        metadata: conventions,
        run_identity,
    });
    let writer = {
        let (shards, quit, manifest_file) =
            (mine.clone(), options.quit.clone(), manifest_file.clone());
        std::thread::Builder::new()
            .name("actopo-writer".into())
            .spawn(move || {
                Writer {
                    shards,
                    layout,
                    manifest,
                    manifest_file,
                    quit,
                }
                .run(result_rx, todo.len())
            })
            .context("cannot start the writer thread")?
    };

    let stage = ModelStage {
        model: &tch_model,
        attacks: &settings.attacks,
        clip: settings.config.data.clip,
        seed: settings.config.pipeline.seed,
        shard_names: mine.iter().map(|s| s.name.clone()).collect(),
        quit: &options.quit,
    };
    let model_result = stage.run(reader_rx, job_tx, result_tx);
    // Every stage is joined; a stage that panicked or failed fails the run (exit code 2), so
    // shards it left pending are never reported as a clean finish.
    let reader_result = runtime
        .block_on(reader)
        .map_err(|_| anyhow!("the reader stage panicked"))
        .and_then(|r| r);
    let workers_result = worker_handles
        .into_iter()
        .map(|h| h.join().map_err(|_| anyhow!("a worker thread panicked")))
        .collect::<anyhow::Result<Vec<()>>>();
    let written = writer
        .join()
        .map_err(|_| anyhow!("the writer thread panicked"))?;
    runtime.shutdown_background();
    reader_result?;
    workers_result?;
    let out_of_clip = model_result?;
    let written = written?;
    Ok(RunReport {
        samples: written.samples,
        shards_done: written.shards_done,
        shards_skipped: previous.complete.len(),
        shard_failures: written.shard_failures,
        sample_failures: written.sample_failures,
        interrupted: options.quit.load(Ordering::SeqCst),
        elapsed: started.elapsed(),
        device,
        workers,
        out_dir,
        manifest: settings.config.output.dir.join(&manifest_file),
        out_of_clip,
    })
}

/// Every file the run reads, which it must never write over.
fn run_inputs(settings: &Settings, model: &Model, shards: &[ShardSource]) -> outdir::Inputs {
    let mut inputs = outdir::Inputs::default();
    inputs.add(&settings.config_path, "the config file");
    inputs.add(&model.spec.path, "the model spec");
    inputs.add(&model.weights_path, "the weights file");
    for src in shards {
        inputs.add(&src.path, "the input shard");
        for companion in data::companion_files(src) {
            inputs.add(&companion, "the label file");
        }
    }
    inputs
}

/// The result tables this run writes for every shard (`failures` only when something fails).
fn result_tables(settings: &Settings) -> Vec<&'static str> {
    let out = &settings.config.output;
    [
        (out.summary, "summary"),
        (out.diagrams, "diagrams"),
        (out.subgraphs, "subgraphs"),
    ]
    .into_iter()
    .filter_map(|(on, table)| on.then_some(table))
    .collect()
}

/// Reader stage: streams each shard on a blocking thread, batch by batch, so memory stays flat
/// whatever the shard size; the bounded channel keeps it a few batches ahead of the model.
async fn read_shards(
    shards: Vec<(usize, ShardSource)>,
    options: ReadOptions,
    batch_size: usize,
    tx: tokio::sync::mpsc::Sender<ReaderMsg>,
    quit: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        for (shard, src) in shards {
            outdir::fault_point("reader-shard");
            if quit.load(Ordering::SeqCst) {
                return;
            }
            let mut open = true;
            // Fingerprinted before it is read, so the manifest records what was processed.
            let source = match resume::fingerprint(&src) {
                Ok(fp) => fp,
                Err(e) => {
                    let error = format!("cannot read: {e}");
                    if tx
                        .blocking_send(ReaderMsg::Failed { shard, error })
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            let result = data::stream_shard(&src, &options, batch_size, &mut |event| {
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
                open = tx
                    .blocking_send(ReaderMsg::Failed {
                        shard,
                        error: e.without_path(),
                    })
                    .is_ok();
            }
            if !open {
                return;
            }
        }
    })
    .await
    .map_err(|_| anyhow!("the reader stage panicked"))
}

/// Model stage: owns tch. Per batch: the clean forward pass, then each attack and its forward
/// pass, then one job per (sample, variant).
struct ModelStage<'a> {
    model: &'a TchModel,
    attacks: &'a [Attack],
    clip: [f32; 2],
    seed: u64,
    shard_names: Vec<String>,
    quit: &'a AtomicBool,
}

/// One variant of a batch: its forward pass and, for attacks, per-sample stats.
struct VariantBatch {
    output: Arc<ForwardOutput>,
    stats: Option<Vec<AttackStats>>,
}

impl ModelStage<'_> {
    /// Returns the raw values outside `data.clip` seen in the batches that went on.
    fn run(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<ReaderMsg>,
        jobs: Sender<Job>,
        results: Sender<Outcome>,
    ) -> anyhow::Result<OutOfClip> {
        let n_variants = 1 + self.attacks.len();
        let mut failed = std::collections::HashSet::new();
        let mut out_of_clip = OutOfClip::default();
        while let Some(msg) = rx.blocking_recv() {
            if self.quit.load(Ordering::SeqCst) {
                break;
            }
            let sent = match msg {
                ReaderMsg::Start {
                    shard,
                    samples,
                    source,
                } => results
                    .send(Outcome::Started {
                        shard,
                        samples,
                        source,
                    })
                    .is_ok(),
                ReaderMsg::Failed { shard, error } => {
                    failed.insert(shard);
                    results
                        .send(Outcome::ShardFailed {
                            shard,
                            stage: "read",
                            error,
                        })
                        .is_ok()
                }
                ReaderMsg::Batch { shard, batch } => {
                    if failed.contains(&shard) {
                        continue;
                    }
                    let SampleBatch {
                        start,
                        n,
                        x,
                        labels,
                        failed: bad,
                    } = batch;
                    let seen = OutOfClip::of_batch(&x, self.model.sample_len(), self.clip, |row| {
                        !bad.iter().any(|(i, _)| *i == start + row)
                    });
                    if seen.values > 0 && !self.attacks.is_empty() {
                        // Checked before any attack runs: clipping would move these inputs
                        // beyond the attack's budget without a word.
                        failed.insert(shard);
                        let error = format!(
                            "samples {start}..{}: {}",
                            start + n,
                            seen.describe(self.clip, perturb::ATTACKED_OUT_OF_CLIP)
                        );
                        let stage = "read";
                        let sent = results.send(Outcome::ShardFailed {
                            shard,
                            stage,
                            error,
                        });
                        if sent.is_err() {
                            break;
                        }
                        continue;
                    }
                    out_of_clip.add(&seen);
                    let variants = match self.batch(shard, start, n, &x, &labels) {
                        Ok(v) => v,
                        Err(e) => {
                            failed.insert(shard);
                            let error = format!("samples {start}..{}: {e:#}", start + n);
                            results
                                .send(Outcome::ShardFailed {
                                    shard,
                                    stage: "forward",
                                    error,
                                })
                                .ok();
                            continue;
                        }
                    };
                    let mut ok = true;
                    for row in 0..n {
                        let index = start + row;
                        if let Some((_, error)) = bad.iter().find(|(i, _)| *i == index) {
                            // Undecodable sample: a failure row per variant, no jobs.
                            for variant in 0..n_variants {
                                let entry = Entry::Failed {
                                    index,
                                    variant,
                                    stage: "read",
                                    error: error.clone(),
                                };
                                ok &= results.send(Outcome::Sample { shard, entry }).is_ok();
                            }
                            continue;
                        }
                        for (variant, v) in variants.iter().enumerate() {
                            let job = Job {
                                shard,
                                index,
                                variant,
                                label: labels[row],
                                attack: v.stats.as_ref().map(|s| s[row]),
                                row,
                                batch: v.output.clone(),
                            };
                            ok &= jobs.send(job).is_ok();
                        }
                    }
                    ok
                }
            };
            if !sent {
                break; // the writer stopped
            }
        }
        Ok(out_of_clip)
    }

    fn batch(
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
        let entry = match workspace.run(plan, &inputs, scopes, homology, &mut diagrams) {
            Ok(()) => Entry::Done(SampleResult {
                shard: job.shard,
                index: job.index,
                variant: job.variant,
                label: job.label,
                pred: b.pred[job.row],
                confidence: b.confidence[job.row],
                attack: job.attack,
                scopes: diagrams,
            }),
            Err(e) => Entry::Failed {
                index: job.index,
                variant: job.variant,
                stage: "topology",
                error: e.to_string(),
            },
        };
        if results
            .send(Outcome::Sample {
                shard: job.shard,
                entry,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Writer stage state.
struct Writer {
    shards: Vec<ShardSource>,
    layout: Arc<OutputLayout>,
    manifest: Manifest,
    manifest_file: String,
    quit: Arc<AtomicBool>,
}

/// What the writer did.
struct Written {
    samples: usize,
    shards_done: usize,
    shard_failures: Vec<(String, String)>,
    sample_failures: usize,
}

enum ShardState {
    Writing {
        output: Box<ShardOutput>,
        samples: usize,
    },
    Closed,
}

impl Writer {
    /// Consumes outcomes until every sender is gone. A write error (unwritable or full disk) is
    /// fatal: it sets `quit` so the other stages stop, drains the channel, and is returned.
    fn run(mut self, results: Receiver<Outcome>, shards_to_do: usize) -> anyhow::Result<Written> {
        let mut states: Vec<Option<ShardState>> = (0..self.shards.len()).map(|_| None).collect();
        let mut progress = Progress::new(shards_to_do);
        let mut w = Written {
            samples: 0,
            shards_done: 0,
            shard_failures: Vec::new(),
            sample_failures: 0,
        };
        let mut fatal: Option<anyhow::Error> = None;
        for outcome in results {
            if fatal.is_some() {
                continue; // drain so the other stages can finish
            }
            if let Err(e) = self.handle(outcome, &mut states, &mut progress, &mut w, shards_to_do) {
                self.quit.store(true, Ordering::SeqCst);
                fatal = Some(e);
            }
        }
        progress.finish();
        // Shards still open were interrupted: dropping their outputs deletes the partial files.
        drop(states);
        match fatal {
            Some(e) => Err(e),
            None => Ok(w),
        }
    }

    fn handle(
        &mut self,
        outcome: Outcome,
        states: &mut [Option<ShardState>],
        progress: &mut Progress,
        w: &mut Written,
        total: usize,
    ) -> anyhow::Result<()> {
        match outcome {
            Outcome::Started {
                shard,
                samples,
                source,
            } => {
                let src = &self.shards[shard];
                progress.shard_started(shard, &src.name, samples);
                let output =
                    ShardOutput::create(self.layout.clone(), &src.name, &src.stem, &source.sha256)?;
                self.manifest.shards[shard].source = Some(source);
                states[shard] = Some(ShardState::Writing {
                    output: Box::new(output),
                    samples,
                });
                if samples == 0 {
                    self.complete(shard, states, progress, w, total)?;
                }
            }
            Outcome::ShardFailed {
                shard,
                stage,
                error,
            } => {
                // Drop whatever was written for it, then record the shard as failed. A reader
                // error can arrive after the shard's last batch was written: it is undone too.
                states[shard] = Some(ShardState::Closed);
                if self.manifest.shards[shard].status == ShardStatus::Done {
                    w.shards_done -= 1;
                    w.samples -= self.manifest.shards[shard].samples.unwrap_or(0);
                    w.sample_failures -= self.manifest.shards[shard].failures as usize;
                }
                let src = &self.shards[shard];
                let source = self.manifest.shards[shard]
                    .source
                    .as_ref()
                    .map_or(String::new(), |s| s.sha256.clone());
                let file = write_shard_failure(
                    &self.layout,
                    &src.name,
                    &src.stem,
                    &source,
                    Failure {
                        index: None,
                        variant: None,
                        stage,
                        error: error.clone(),
                    },
                )?;
                let error = format!("{}: {error}", src.path.display());
                let entry = &mut self.manifest.shards[shard];
                entry.status = ShardStatus::Failed;
                entry.error = Some(error.clone());
                entry.outputs = vec![file];
                entry.failures = 1;
                self.manifest.write(&self.layout.dir, &self.manifest_file)?;
                progress.shard_ended(shard, w.shards_done, total);
                w.shard_failures.push((src.name.clone(), error));
            }
            Outcome::Sample { shard, entry } => {
                let Some(ShardState::Writing { output, samples }) = states[shard].as_mut() else {
                    return Ok(()); // the shard failed already
                };
                let samples = *samples;
                let before = output.written();
                output.add(entry)?;
                for _ in before..output.written() {
                    progress.sample_done(shard);
                }
                if output.written() == samples {
                    self.complete(shard, states, progress, w, total)?;
                }
            }
        }
        Ok(())
    }

    /// Finishes a fully written shard: final names, manifest.
    fn complete(
        &mut self,
        shard: usize,
        states: &mut [Option<ShardState>],
        progress: &mut Progress,
        w: &mut Written,
        total: usize,
    ) -> anyhow::Result<()> {
        let Some(ShardState::Writing { output, samples }) = states[shard].take() else {
            return Ok(());
        };
        states[shard] = Some(ShardState::Closed);
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
        w.shards_done += 1;
        w.samples += samples;
        w.sample_failures += failures;
        progress.shard_ended(shard, w.shards_done, total);
        Ok(())
    }
}
