//! `actopo run CONFIG` and `actopo validate CONFIG`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actopo::config::Settings;
use actopo::data::{self, Samples, ShardSource};
use actopo::forward::{device_name, TchModel};
use actopo::perturb::{AttackKind, OutOfClip, SampleRng, ATTACKED_OUT_OF_CLIP, CLEAN_OUT_OF_CLIP};
use actopo::pipeline::{self, RunOptions, RunReport};
use anyhow::{bail, Context};

use super::CommandOutcome;

/// Which share of the shard list this process takes (`--shard-index I --num-shards N`), with
/// defaults from Slurm job arrays or Kubernetes Indexed Jobs.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ShardArgs {
    /// This worker's index (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, or JOB_COMPLETION_INDEX).
    #[arg(long)]
    shard_index: Option<usize>,
    /// Number of workers sharing the run (default: SLURM_ARRAY_TASK_COUNT; required with JOB_COMPLETION_INDEX).
    #[arg(long)]
    num_shards: Option<usize>,
    /// Replace this worker's earlier outputs in output.dir instead of refusing a different run.
    #[arg(long)]
    overwrite: bool,
}

fn env_usize(name: &str) -> anyhow::Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("environment variable {name}={v:?} is not a number")),
        Err(_) => Ok(None),
    }
}

impl ShardArgs {
    fn resolve(&self) -> anyhow::Result<(usize, usize)> {
        let slurm_id = env_usize("SLURM_ARRAY_TASK_ID")?;
        let slurm_min = env_usize("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let k8s = env_usize("JOB_COMPLETION_INDEX")?;
        let index = self
            .shard_index
            .or(slurm_id.map(|id| id.saturating_sub(slurm_min)))
            .or(k8s);
        let count = self.num_shards.or(env_usize("SLURM_ARRAY_TASK_COUNT")?);
        match (index, count) {
            (None, None) => Ok((0, 1)),
            (Some(_), None) => bail!(
                "a shard index is set (flag or JOB_COMPLETION_INDEX) but not the number of workers; pass --num-shards N"
            ),
            (None, Some(n)) => bail!("--num-shards {n} needs --shard-index I (0 <= I < {n})"),
            (Some(i), Some(n)) if i >= n || n == 0 => {
                bail!("--shard-index {i} must be below --num-shards {n}")
            }
            (Some(i), Some(n)) => Ok((i, n)),
        }
    }
}

/// Exit codes: 0 all done; 1 some sample or shard failed (see failures/); 2 bad configuration,
/// spec, weights or output folder (nothing processed), a fatal write error or a stage that
/// panicked; 130 interrupted.
pub(crate) fn run(
    config: &Path,
    sets: &[String],
    shard: &ShardArgs,
) -> anyhow::Result<CommandOutcome> {
    let settings = Settings::load(config, sets)?;
    let (shard_index, num_shards) = shard.resolve()?;
    // First SIGINT/SIGTERM: stop cleanly; a second one: exit at once.
    let quit = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, quit.clone())?;
        signal_hook::flag::register(signal, quit.clone())?;
    }
    let options = RunOptions {
        shard_index,
        num_shards,
        overwrite: shard.overwrite,
        quit,
    };
    let report = pipeline::run(&settings, &options)?;
    Ok(summarize(&report, settings.config.data.clip))
}

/// Tells what the run did; its outcome.
fn summarize(report: &RunReport, clip: [f32; 2]) -> CommandOutcome {
    let secs = report.elapsed.as_secs_f64();
    eprintln!(
        "actopo: {} samples in {} shard(s) in {:.1} s ({:.0} samples/s; device {}, {} workers){} -> {}",
        report.samples,
        report.shards_done,
        secs,
        report.samples as f64 / secs.max(1e-9),
        report.device,
        report.workers,
        if report.shards_skipped > 0 {
            format!("; {} shard(s) already complete, skipped", report.shards_skipped)
        } else {
            String::new()
        },
        report.out_dir.display()
    );
    if report.out_of_clip.values > 0 {
        eprintln!(
            "warning: {}",
            report.out_of_clip.describe(clip, CLEAN_OUT_OF_CLIP)
        );
    }
    for (_, error) in &report.shard_failures {
        eprintln!("error: {error}");
    }
    if report.interrupted {
        eprintln!(
            "actopo: interrupted; finished shards are kept and listed in {}, unfinished ones left no files. Rerun the same command to resume.",
            report.manifest.display()
        );
        return CommandOutcome::Interrupted;
    }
    if report.sample_failures > 0 || !report.shard_failures.is_empty() {
        eprintln!(
            "actopo: {} failure(s): {} sample(s), {} shard(s); see {}/failures/",
            report.sample_failures + report.shard_failures.len(),
            report.sample_failures,
            report.shard_failures.len(),
            report.out_dir.display()
        );
        return CommandOutcome::Failures;
    }
    CommandOutcome::Ok
}

fn attacks_needing_model(kind: &AttackKind) -> Option<&AttackKind> {
    match kind {
        AttackKind::GaussianNoise { .. } | AttackKind::MatchedNoise { .. } => None,
        k => Some(k),
    }
}

pub(crate) fn validate(config: &Path, sets: &[String]) -> anyhow::Result<CommandOutcome> {
    let settings = Settings::load(config, sets)?;
    let prepared = pipeline::prepare(&settings)?;
    println!("config    {}: ok", config.display());
    println!(
        "model     {} ({} layers, {} graph ops, {} units, at most {} edges per input): ok",
        prepared.model.spec.path.display(),
        prepared.model.network.layers.len(),
        prepared.plan.ops.len(),
        prepared.plan.n_units,
        prepared.plan.max_edges()
    );
    println!("weights   {}: ok", prepared.model.weights_path.display());
    let tch_model = TchModel::new(
        &prepared.model,
        settings.device,
        &prepared.mean,
        &prepared.std,
    )?;
    println!("device    {}", device_name(tch_model.device()));
    let mut failed = 0;
    for shard in &prepared.shards {
        let one = data::ReadOptions {
            limit: 1,
            ..prepared.read_options.clone()
        };
        match data::read_shard(shard, &one) {
            Ok(s) if s.n == 0 => println!("shard     {}: empty", shard.path.display()),
            Ok(s) => {
                if !check_first_sample(&settings, &tch_model, shard, &s)? {
                    failed += 1;
                }
            }
            Err(e) => {
                failed += 1;
                println!("shard     error: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        CommandOutcome::Ok
    } else {
        CommandOutcome::Failures
    })
}

/// Checks a shard's first sample: its values against `data.clip`, the forward pass and every
/// attack that needs the model. False when the shard would fail its run.
fn check_first_sample(
    settings: &Settings,
    tch_model: &TchModel,
    shard: &ShardSource,
    s: &Samples,
) -> anyhow::Result<bool> {
    let clip = settings.config.data.clip;
    let seen = OutOfClip::of_batch(&s.x, tch_model.sample_len(), clip, |_| true);
    if seen.values > 0 {
        if settings.attacks.is_empty() {
            println!(
                "shard     {}: first sample: warning: {}",
                shard.path.display(),
                seen.describe(clip, CLEAN_OUT_OF_CLIP)
            );
        } else {
            println!(
                "shard     {}: first sample: error: {}",
                shard.path.display(),
                seen.describe(clip, ATTACKED_OUT_OF_CLIP)
            );
            return Ok(false);
        }
    }
    tch_model.forward(&s.x, 1)?;
    let target = s.labels.as_ref().map_or(0, |l| l[0]);
    for (i, attack) in settings.attacks.iter().enumerate() {
        if let Some(kind) = attacks_needing_model(&attack.kind) {
            let mut rng = vec![SampleRng::for_sample(0, &shard.name, 0, i)];
            tch_model
                .attack(kind, &s.x, 1, &[target], clip, &mut rng)
                .with_context(|| format!("attack `{}` on {}", attack.name, shard.path.display()))?;
        }
    }
    println!(
        "shard     {}: first sample ok{}",
        shard.path.display(),
        if s.labels.is_some() {
            " (labelled)"
        } else {
            " (no labels)"
        }
    );
    Ok(true)
}
