//! `actopo run CONFIG` and `actopo validate CONFIG`.

use std::path::Path;

use actopo::config::Settings;
use actopo::data;
use actopo::forward::{device_name, TchModel};
use actopo::perturb::{AttackKind, SampleRng};
use actopo::pipeline;
use anyhow::Context;

fn attacks_needing_model(kind: &AttackKind) -> Option<&AttackKind> {
    match kind {
        AttackKind::GaussianNoise { .. } | AttackKind::MatchedNoise { .. } => None,
        k => Some(k),
    }
}

/// Exit codes: 0 all shards done; 1 some shard failed; 2 bad configuration, spec or weights.
pub enum Outcome {
    Ok,
    ShardsFailed,
}

pub fn run(config: &Path, sets: &[String]) -> anyhow::Result<Outcome> {
    let settings = Settings::load(config, sets)?;
    let report = pipeline::run(&settings)?;
    let secs = report.elapsed.as_secs_f64();
    eprintln!(
        "actopo: {} samples in {} shard(s) in {:.1} s ({:.0} samples/s; device {}, {} workers) -> {}",
        report.samples,
        report.shards_done,
        secs,
        report.samples as f64 / secs.max(1e-9),
        report.device,
        report.workers,
        report.out_dir.display()
    );
    if report.failures.is_empty() {
        Ok(Outcome::Ok)
    } else {
        for (_, error) in &report.failures {
            eprintln!("error: {error}");
        }
        eprintln!(
            "actopo: {} shard(s) failed and have no output; the others are complete (see manifest.json)",
            report.failures.len()
        );
        Ok(Outcome::ShardsFailed)
    }
}

pub fn validate(config: &Path, sets: &[String]) -> anyhow::Result<Outcome> {
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
                tch_model.forward(&s.x, 1)?;
                let target = s.labels.as_ref().map_or(0, |l| l[0]);
                for (i, attack) in settings.attacks.iter().enumerate() {
                    if let Some(kind) = attacks_needing_model(&attack.kind) {
                        let mut rng = vec![SampleRng::for_sample(0, &shard.name, 0, i)];
                        tch_model
                            .attack(
                                kind,
                                &s.x,
                                1,
                                &[target],
                                settings.config.data.clip,
                                &mut rng,
                            )
                            .with_context(|| {
                                format!("attack `{}` on {}", attack.name, shard.path.display())
                            })?;
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
            }
            Err(e) => {
                failed += 1;
                println!("shard     error: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        Outcome::Ok
    } else {
        Outcome::ShardsFailed
    })
}
