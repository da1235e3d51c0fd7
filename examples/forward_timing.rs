//! Times the forward pass and the gradient attacks alone (no graphs, no persistence, no output):
//! what `model.device` changes. Used by `scripts/bench_device.py`, which runs it on the CPU and on
//! a GPU side by side; `docs/performance.md` has the figures.
//!
//!   cargo run --release --example forward_timing -- SPEC DEVICE [BATCH] [REPEATS] [ATTACK_STEPS]
//!
//! DEVICE is `cpu`, `cuda` or `cuda:N`. Inputs are seeded uniform noise in the raw range [0, 1]
//! (the timings do not depend on the values); the attacks' targets are the clean predictions.
//! Each measurement runs once to warm up (libtorch's first call on a device loads its kernels),
//! then REPEATS times; the median is printed. Attacks run ATTACK_STEPS steps (CW: one binary
//! search step), so their per-step cost can be scaled to any configured number of steps. On a
//! GPU it also prints how far the captured operands are from the CPU's (a capture copied in the
//! wrong layout shows as a deviation near 1).

use std::path::Path;
use std::time::Instant;

use actopo::config::Device;
use actopo::forward::TchModel;
use actopo::model::Model;
use actopo::perturb::{AttackKind, Norm, SampleRng};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: forward_timing SPEC DEVICE [BATCH] [REPEATS] [ATTACK_STEPS]"
    );
    let number = |i: usize, default: usize| args.get(i).map_or(Ok(default), |s| s.parse());
    let (batch, repeats, steps) = (number(2, 128)?, number(3, 5)?.max(1), number(4, 10)?);
    let device = match args[1].as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => Device::Cuda(other.trim_start_matches("cuda:").parse()?),
    };
    let spec = Path::new(&args[0]);
    let name = spec.file_stem().unwrap_or_default().to_string_lossy();
    let model = Model::load(spec, None)?;
    let tch_model = TchModel::new(&model, device, &[0.0], &[1.0])?;
    let x = noise(batch * tch_model.sample_len());
    let label = format!("{name} {}", args[1]);

    let clean = tch_model.forward(&x, batch)?;
    if device != Device::Cpu {
        let on_cpu = TchModel::new(&model, Device::Cpu, &[0.0], &[1.0])?.forward(&x, batch)?;
        println!(
            "{label:<28} captures  largest deviation from the CPU's: {:.2e} of the largest value",
            deviation(&clean.captures, &on_cpu.captures)
        );
    }
    let forward = median_seconds(repeats, || tch_model.forward(&x, batch).map(drop))?;
    report(&label, "forward", batch, forward, "");

    let mut rngs: Vec<SampleRng> = (0..batch)
        .map(|i| SampleRng::for_sample(0, "timing", i, 0))
        .collect();
    for (what, kind, steps) in attacks(steps) {
        tch_model.attack(&kind, &x, batch, &clean.pred, [0.0, 1.0], &mut rngs)?;
        let seconds = median_seconds(repeats, || {
            tch_model
                .attack(&kind, &x, batch, &clean.pred, [0.0, 1.0], &mut rngs)
                .map(drop)
        })?;
        report(&label, what, batch, seconds, &format!(" ({steps})"));
    }
    Ok(())
}

/// The gradient attacks, each cut to `steps` steps, with how many they take.
fn attacks(steps: usize) -> Vec<(&'static str, AttackKind, String)> {
    let exactly = format!("{steps} steps");
    vec![
        ("fgsm", AttackKind::Fgsm { eps: 0.1 }, "one step".into()),
        (
            "pgd",
            AttackKind::Pgd {
                eps: 0.1,
                norm: Norm::Linf,
                steps,
                step_size: 0.01,
                random_start: true,
            },
            exactly.clone(),
        ),
        (
            "cw_l2",
            AttackKind::CwL2 {
                confidence: 0.0,
                steps,
                lr: 0.01,
                binary_search_steps: 1,
                initial_const: 0.1,
            },
            exactly,
        ),
        (
            "deepfool",
            AttackKind::Deepfool {
                steps,
                overshoot: 0.02,
            },
            // A sample stops once its prediction flips.
            format!("at most {steps} steps"),
        ),
    ]
}

fn median_seconds(
    repeats: usize,
    mut run: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        run()?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[repeats / 2])
}

fn report(label: &str, what: &str, batch: usize, seconds: f64, steps: &str) {
    let per_input_ms = seconds / batch as f64 * 1e3;
    println!(
        "{label:<28} {what:<9} {:>9.2} ms/batch of {batch} = {per_input_ms:>8.3} ms/input = {:>9.1} inputs/s{steps}",
        seconds * 1e3,
        batch as f64 / seconds
    );
}

/// Largest |a - b| over every captured value, over the largest |b|. A capture copied in the wrong
/// layout deviates by about the values themselves; rounding alone stays near 1e-6.
fn deviation(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut worst, mut largest) = (0f64, 0f64);
    assert_eq!(a.len(), b.len(), "captures per op");
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.len(), b.len(), "captured values");
        for (&x, &y) in a.iter().zip(b) {
            worst = worst.max((x as f64 - y as f64).abs());
            largest = largest.max((y as f64).abs());
        }
    }
    worst / largest
}

/// Seeded uniform [0, 1) values (a 64-bit LCG; the values do not matter for timing).
fn noise(len: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}
