//! `actopo run CONFIG` and `actopo validate CONFIG|SPEC`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actopo::config::Settings;
use actopo::data::{self, Samples, ShardSource};
use actopo::forward::{device_name, reference, TchModel};
use actopo::model::Model;
use actopo::perturb::{AttackKind, OutOfClip, SampleRng, ATTACKED_OUT_OF_CLIP, CLEAN_OUT_OF_CLIP};
use actopo::pipeline::{self, RunOptions, RunReport};
use actopo::topology::{GraphOptions, GraphPlan};
use anyhow::{anyhow, bail, Context};

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

/// `actopo validate PATH`: a config, or a model spec (a TOML file with a top-level
/// `format_version` key). Exit code 2 when the model's outputs differ from its reference file's.
pub(crate) fn validate(path: &Path, sets: &[String]) -> anyhow::Result<CommandOutcome> {
    if is_model_spec(path) {
        if !sets.is_empty() {
            bail!(
                "--set changes config keys, but {} is a model spec (it has `format_version`)\n  fix: drop --set, or validate a config whose model.spec names this spec",
                path.display()
            );
        }
        return validate_spec(path);
    }
    let settings = Settings::load(path, sets)?;
    let prepared = pipeline::prepare(&settings)?;
    println!("config    {}: ok", path.display());
    print_model(&prepared.model, &prepared.plan);
    let tch_model = TchModel::new(
        &prepared.model,
        settings.device,
        &prepared.mean,
        &prepared.std,
    )?;
    println!("device    {}", device_name(tch_model.device()));
    check_reference(&prepared.model)?;
    let mut failed = 0;
    for shard in &prepared.shards {
        let one = data::ReadOptions {
            limit: 1,
            ..prepared.read_options.clone()
        };
        match data::read_shard(shard, &one) {
            Ok(s) if s.n == 0 => println!("shard     {}: empty", shard.location),
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

/// A model spec has a top-level `format_version` key (a config never does); a file that is not
/// valid TOML counts as a spec when a line starts with it, so that its errors are a spec's.
fn is_model_spec(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false; // the config loader says why it cannot be read
    };
    match text.parse::<toml::Table>() {
        Ok(table) => table.contains_key("format_version"),
        Err(_) => (text.lines()).any(|l| l.trim_start().starts_with("format_version")),
    }
}

/// Loads a spec and the weights it names, sizes its graph, and checks its reference outputs.
fn validate_spec(path: &Path) -> anyhow::Result<CommandOutcome> {
    let model = Model::load(path, None)?;
    let plan = GraphPlan::new(&model.network, &model.weights, GraphOptions::default())
        .map_err(|e| anyhow!("model spec {}: {e}", path.display()))?;
    print_model(&model, &plan);
    check_reference(&model)?;
    Ok(CommandOutcome::Ok)
}

/// The weights loaded are the file the spec names (not replaced by the config's model.weights).
fn uses_spec_weights(model: &Model) -> bool {
    let Some(named) = &model.spec.weights else {
        return false;
    };
    let folder = model.spec.path.parent().unwrap_or(Path::new("."));
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same(&folder.join(named), &model.weights_path)
}

fn print_model(model: &Model, plan: &GraphPlan) {
    println!(
        "model     {} ({} layers, {} graph ops, {} units, at most {} edges per input): ok",
        model.spec.path.display(),
        model.network.layers.len(),
        plan.ops.len(),
        plan.n_units,
        plan.max_edges()
    );
    println!("weights   {}: ok", model.weights_path.display());
}

/// Compares the model's outputs with the reference file beside its spec, when there is one; an
/// error (exit code 2) past the tolerance, naming the file, the worst row and column and both
/// values.
fn check_reference(model: &Model) -> anyhow::Result<()> {
    let path = reference::reference_path(&model.spec.path);
    if !path.exists() {
        println!(
            "reference none: no {} beside the spec (scripts/export_torch.py writes one)",
            path.display()
        );
        return Ok(());
    }
    if !uses_spec_weights(model) {
        println!(
            "reference {}: skipped: model.weights = {} replaces the spec's weights, which the reference outputs were written with",
            path.display(),
            model.weights_path.display()
        );
        return Ok(());
    }
    let c = reference::check(model, &path)?;
    let (row, col, expected, got) = c.worst;
    if !c.passes() {
        bail!(
            "reference check failed: {}: actopo's output differs from PyTorch's by {:.3e} at row {row}, column {col} (PyTorch {expected}, actopo {got}), above the tolerance {:.1e} = {:.0e} x max(1, largest |output| {}); {} rows, {} values compared\n  fix: the spec or its weights do not reproduce the model the reference was written from; export them again with scripts/export_torch.py (docs/model-spec.md, \"Reference outputs\")",
            path.display(),
            c.max_abs_diff,
            c.tolerance(),
            reference::RELATIVE_TOLERANCE,
            c.max_abs_output,
            c.rows,
            c.values
        );
    }
    println!(
        "reference {}: {} rows, {} values compared on the cpu: max abs difference {:.3e} (tolerance {:.1e}): ok",
        path.display(),
        c.rows,
        c.values,
        c.max_abs_diff,
        c.tolerance()
    );
    Ok(())
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
                shard.location,
                seen.describe(clip, CLEAN_OUT_OF_CLIP)
            );
        } else {
            println!(
                "shard     {}: first sample: error: {}",
                shard.location,
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
                .with_context(|| format!("attack `{}` on {}", attack.name, shard.location))?;
        }
    }
    println!(
        "shard     {}: first sample ok{}",
        shard.location,
        if s.labels.is_some() {
            " (labelled)"
        } else {
            " (no labels)"
        }
    );
    Ok(true)
}
