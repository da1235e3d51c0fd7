//! Attack properties on the trained demo model (models/ccff.*) and real Fashion-MNIST test images
//! (Debian package dataset-fashion-mnist, installed by scripts/setup.sh): budgets and clip range,
//! success growing with eps, matched noise size, and seeded reproducibility through the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use actopo::config::{DataFormat, Device};
use actopo::data::{read_shard, ReadOptions, ShardLocation, ShardSource};
use actopo::forward::TchModel;
use actopo::model::Model;
use actopo::perturb::{norms, AttackKind, Norm, SampleRng};

use crate::support::{read_batches, repo, FASHION};

/// The first `n` test images (raw, in [0, 1]) and labels.
fn images(n: usize) -> (Vec<f32>, Vec<i64>) {
    let src = ShardSource {
        location: ShardLocation::Local(FASHION.into()),
        name: "t10k-images-idx3-ubyte.gz".into(),
        stem: "t10k-images-idx3-ubyte".into(),
        format: DataFormat::Idx,
    };
    let opts = ReadOptions {
        input_shape: vec![1, 28, 28],
        image_column: "image".into(),
        label_column: None,
        limit: n,
    };
    let s = read_shard(&src, &opts).expect("Fashion-MNIST test split (run scripts/setup.sh)");
    (s.x, s.labels.expect("labels"))
}

fn model() -> TchModel {
    let m = Model::load(&repo("models/ccff.toml"), None).unwrap();
    TchModel::new(&m, Device::Cpu, &[0.0], &[1.0]).unwrap()
}

fn rngs(n: usize) -> Vec<SampleRng> {
    (0..n)
        .map(|i| SampleRng::for_sample(0, "t", i, 0))
        .collect()
}

fn success_rate(model: &TchModel, adv: &[f32], labels: &[i64]) -> f64 {
    let out = model.forward(adv, labels.len()).unwrap();
    out.pred.iter().zip(labels).filter(|(p, l)| p != l).count() as f64 / labels.len() as f64
}

#[test]
fn attacks_respect_budget_and_clip_range() {
    let (x, y) = images(40);
    let m = model();
    let n = y.len();
    let clip = [0.0, 1.0];
    let cases = [
        (AttackKind::Fgsm { eps: 0.05 }, Some((Norm::Linf, 0.05))),
        (
            AttackKind::Pgd {
                eps: 0.05,
                norm: Norm::Linf,
                steps: 10,
                step_size: 0.0125,
                random_start: true,
            },
            Some((Norm::Linf, 0.05)),
        ),
        (
            AttackKind::Pgd {
                eps: 1.0,
                norm: Norm::L2,
                steps: 10,
                step_size: 0.25,
                random_start: true,
            },
            Some((Norm::L2, 1.0)),
        ),
        (
            AttackKind::CwL2 {
                confidence: 0.0,
                steps: 30,
                lr: 0.01,
                binary_search_steps: 3,
                initial_const: 0.1,
            },
            None,
        ),
        (
            AttackKind::Deepfool {
                steps: 20,
                overshoot: 0.02,
            },
            None,
        ),
        (AttackKind::GaussianBlur { sigma: 1.0 }, None),
    ];
    for (kind, budget) in cases {
        let adv = m.attack(&kind, &x, n, &y, clip, &mut rngs(n)).unwrap();
        assert_eq!(adv.len(), x.len());
        assert!(
            adv.iter().all(|v| (clip[0]..=clip[1]).contains(v)),
            "{kind:?} leaves the clip range"
        );
        if let Some((norm, eps)) = budget {
            for (i, (linf, l2)) in norms(&x, &adv, 784).into_iter().enumerate() {
                let size = if norm == Norm::Linf { linf } else { l2 };
                assert!(
                    size <= eps * (1.0 + 1e-5) + 1e-6,
                    "{kind:?}: sample {i} has size {size} > {eps}"
                );
            }
        }
        // gradient attacks must actually fool the model on some of these images
        if !matches!(kind, AttackKind::GaussianBlur { .. }) {
            assert!(success_rate(&m, &adv, &y) > 0.3, "{kind:?} barely succeeds");
        }
    }
    // Minimal-perturbation attacks: every success comes with a finite, nonzero perturbation.
    let adv = m
        .attack(
            &AttackKind::Deepfool {
                steps: 50,
                overshoot: 0.02,
            },
            &x,
            n,
            &y,
            clip,
            &mut rngs(n),
        )
        .unwrap();
    assert!(success_rate(&m, &adv, &y) > 0.9);
}

#[test]
fn stronger_eps_never_lowers_success_rate() {
    let (x, y) = images(96);
    let m = model();
    let n = y.len();
    for make in [
        (|eps: f32| AttackKind::Fgsm { eps }) as fn(f32) -> AttackKind,
        |eps: f32| AttackKind::Pgd {
            eps,
            norm: Norm::Linf,
            steps: 10,
            step_size: eps / 4.0,
            random_start: false,
        },
        |eps: f32| AttackKind::Pgd {
            eps: eps * 20.0,
            norm: Norm::L2,
            steps: 10,
            step_size: eps * 5.0,
            random_start: false,
        },
    ] {
        let mut last = -1.0;
        for eps in [0.0, 0.01, 0.03, 0.1, 0.3] {
            let adv = if eps == 0.0 {
                x.clone()
            } else {
                m.attack(&make(eps), &x, n, &y, [0.0, 1.0], &mut rngs(n))
                    .unwrap()
            };
            let rate = success_rate(&m, &adv, &y);
            assert!(
                rate >= last,
                "{:?}: success {rate} at eps {eps} is below {last}",
                make(eps)
            );
            last = rate;
        }
        assert!(last > 0.8, "{:?} reaches only {last}", make(0.3));
    }
}

fn run_attack_config(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"[model]
spec = "{}"
device = "cpu"
[data]
shards = ["{FASHION}"]
limit = 24
[output]
dir = "{name}"
{extra}
[[attacks]]
kind = "pgd"
eps = 0.1
steps = 5
[[attacks]]
kind = "matched_noise"
of = "pgd-linf-0.1"
[[attacks]]
name = "noise"
kind = "gaussian_noise"
sigma = 0.2
"#,
            repo("models/ccff.toml").display()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(["run", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join(name)
}

/// (variant, index) -> (success, linf, l2) from a summary file's network rows.
/// One summary row of an attacked run: variant, index, success, linf, l2, prediction.
type AttackRow = (String, u32, Option<bool>, Option<f32>, Option<f32>, i64);

fn attack_columns(path: &Path) -> Vec<AttackRow> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Int64Type, UInt32Type};
    let mut rows = Vec::new();
    for b in read_batches(path) {
        let variant = b
            .column_by_name("variant")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let index = b
            .column_by_name("index")
            .unwrap()
            .as_primitive::<UInt32Type>()
            .clone();
        let success = b
            .column_by_name("attack_success")
            .unwrap()
            .as_boolean()
            .clone();
        let linf = b
            .column_by_name("perturbation_linf")
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone();
        let l2 = b
            .column_by_name("perturbation_l2")
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone();
        let pred = b
            .column_by_name("pred")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        use arrow::array::Array;
        for i in 0..b.num_rows() {
            rows.push((
                variant.value(i).to_string(),
                index.value(i),
                success.is_valid(i).then(|| success.value(i)),
                linf.is_valid(i).then(|| linf.value(i)),
                l2.is_valid(i).then(|| l2.value(i)),
                pred.value(i),
            ));
        }
    }
    rows
}

#[test]
fn matched_noise_copies_the_size_and_runs_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = run_attack_config(dir.path(), "a", "");
    let b = run_attack_config(dir.path(), "b", "[pipeline]\nbatch_size = 5\nworkers = 1\n");
    let c = run_attack_config(dir.path(), "c", "[pipeline]\nseed = 7\n");
    let file = "summary/t10k-images-idx3-ubyte.parquet";
    // same seed: identical bytes, whatever the batch size and worker count
    for f in [file, "diagrams/t10k-images-idx3-ubyte.parquet"] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let rows = attack_columns(&a.join(file));
    let variants: Vec<&str> = rows.iter().take(4).map(|r| r.0.as_str()).collect();
    assert_eq!(
        variants,
        [
            "clean",
            "pgd-linf-0.1",
            "matched_noise-pgd-linf-0.1",
            "noise"
        ]
    );
    assert!(
        rows[0].2.is_none() && rows[0].3.is_none() && rows[0].4.is_none(),
        "clean rows have null attack columns"
    );
    for chunk in rows.chunks(4) {
        let (pgd, matched) = (&chunk[1], &chunk[2]);
        let (l2_pgd, l2_matched) = (pgd.4.unwrap(), matched.4.unwrap());
        assert!(
            (l2_pgd - l2_matched).abs() <= 1e-4 * l2_pgd.max(1.0),
            "index {}: {l2_pgd} vs {l2_matched}",
            pgd.1
        );
        assert!(pgd.3.unwrap() <= 0.1 + 1e-6);
    }
    // another seed changes the random variants (PGD's random start, the noises) but not clean rows
    let other = attack_columns(&c.join(file));
    assert_eq!(
        rows.iter().filter(|r| r.0 == "clean").collect::<Vec<_>>(),
        other.iter().filter(|r| r.0 == "clean").collect::<Vec<_>>()
    );
    let noise_l2 = |rs: &[AttackRow]| {
        rs.iter()
            .filter(|r| r.0 == "noise")
            .map(|r| r.4.unwrap())
            .collect::<Vec<_>>()
    };
    assert_ne!(noise_l2(&rows), noise_l2(&other));
}
