//! Perturbed variants of every input (`[[attacks]]` in the config): their definitions, and the parts
//! that need no gradients (seeded noise, noise matched to another attack's L2 size, norms).
//! The gradient attacks (FGSM, PGD, Carlini-Wagner L2, DeepFool) and the blur run with tch in
//! `forward::attacks`.
//!
//! All sizes are in raw input units: 8-bit images scaled to [0, 1], before mean/std. Random numbers
//! come from one generator per (seed, shard, sample, attack), so a rerun gives the same outputs
//! whatever the batch size or worker count.

mod attack;

pub(crate) use attack::{attack_kind, resolve_attacks, AttackKeys, AttackTable, ReadAttack};
pub use attack::{Attack, AttackKind, Norm};

/// How an attacked sample came out (the extra summary columns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackStats {
    /// Prediction differs from the label (or from the clean prediction when unlabelled).
    pub success: bool,
    pub linf: f32,
    pub l2: f32,
}

/// A small deterministic generator (SplitMix64) with Gaussian draws (Box-Muller).
#[derive(Debug, Clone)]
pub struct SampleRng {
    state: u64,
    spare: Option<f32>,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SampleRng {
    /// The generator of one (seed, shard, sample index, attack) cell.
    pub fn for_sample(seed: u64, shard: &str, index: usize, attack: usize) -> SampleRng {
        let mut h = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
        for b in shard.bytes() {
            h = mix(h ^ b as u64);
        }
        h = mix(h ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        h = mix(h ^ (attack as u64 + 1));
        SampleRng {
            state: h,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn normal(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some((r * t.sin()) as f32);
        (r * t.cos()) as f32
    }
}

/// What raw values outside `data.clip` mean for a run with attacks (its shard fails).
pub const ATTACKED_OUT_OF_CLIP: &str = "attacks clip their inputs to data.clip, which would change these inputs beyond the attack budget";
/// What they mean for a run without attacks (a warning).
pub const CLEAN_OUT_OF_CLIP: &str =
    "clean inputs are used as they are, but an attack added to this config would clip them";

/// Raw input values outside `data.clip`, counted over one or more batches. Attacks clip what they
/// perturb to `data.clip`, so inputs outside it would be changed beyond the attack budget (the
/// usual cause: data saved already normalised); clean inputs are used as they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutOfClip {
    /// Values below `clip[0]` or above `clip[1]`.
    pub values: u64,
    /// Samples holding at least one such value.
    pub samples: u64,
    /// Smallest and largest value seen (over every sample counted, inside the range or not).
    pub min: f32,
    pub max: f32,
}

impl Default for OutOfClip {
    fn default() -> Self {
        OutOfClip {
            values: 0,
            samples: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl OutOfClip {
    /// Counts the samples of `x` (sample-major, `sample_len` values each) for which `counted(row)`
    /// holds. NaN is not counted here: it fails its sample later, naming the layer.
    pub fn of_batch(
        x: &[f32],
        sample_len: usize,
        clip: [f32; 2],
        counted: impl Fn(usize) -> bool,
    ) -> OutOfClip {
        let mut out = OutOfClip::default();
        for (row, sample) in x.chunks(sample_len.max(1)).enumerate() {
            if !counted(row) {
                continue;
            }
            let mut outside = 0u64;
            for &v in sample {
                out.min = out.min.min(v);
                out.max = out.max.max(v);
                outside += u64::from(v < clip[0] || v > clip[1]);
            }
            out.values += outside;
            out.samples += u64::from(outside > 0);
        }
        out
    }

    pub fn add(&mut self, other: &OutOfClip) {
        self.values += other.values;
        self.samples += other.samples;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// What was seen, `consequence`, the likely cause and the fix, for `data.clip` = `clip`.
    pub fn describe(&self, clip: [f32; 2], consequence: &str) -> String {
        // A range that holds the data, rounded outwards to two decimals.
        let lo = (f64::from(self.min) * 100.0).floor() / 100.0;
        let hi = (f64::from(self.max) * 100.0).ceil() / 100.0;
        format!(
            "{} raw input value(s) of {} sample(s) lie outside data.clip = [{}, {}] (observed min {}, max {}); \
             {consequence}; likely cause: the data was saved already normalised (mean/std applied)\n  \
             fix: save raw values (8-bit images, or floats in [0, 1]) and set data.mean / data.std, \
             or set data.clip to the data's range, e.g. data.clip = [{lo}, {hi}]",
            self.values, self.samples, clip[0], clip[1], self.min, self.max
        )
    }
}

/// Per-sample L-infinity and L2 norms of `adv - x`.
pub fn norms(x: &[f32], adv: &[f32], sample_len: usize) -> Vec<(f32, f32)> {
    x.chunks(sample_len)
        .zip(adv.chunks(sample_len))
        .map(|(a, b)| {
            let mut linf = 0f32;
            let mut sq = 0f64;
            for (u, v) in a.iter().zip(b) {
                let d = (v - u).abs();
                linf = linf.max(d);
                sq += (d as f64) * (d as f64);
            }
            (linf, sq.sqrt() as f32)
        })
        .collect()
}

/// `x + sigma * N(0, 1)`, clipped, one generator per sample.
pub(crate) fn gaussian_noise(
    x: &[f32],
    sample_len: usize,
    sigma: f32,
    clip: [f32; 2],
    rngs: &mut [SampleRng],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for (sample, rng) in x.chunks(sample_len).zip(rngs.iter_mut()) {
        out.extend(
            sample
                .iter()
                .map(|&v| (v + sigma * rng.normal()).clamp(clip[0], clip[1])),
        );
    }
    out
}

/// Gaussian noise whose perturbation, after clipping, has L2 norm `target[i]` for sample i (the
/// paper's control: random noise of the same size as an adversarial perturbation). The scale is
/// found by bisection, since clipping makes the norm a monotone but non-linear function of it.
pub(crate) fn matched_noise(
    x: &[f32],
    sample_len: usize,
    target: &[f32],
    clip: [f32; 2],
    rngs: &mut [SampleRng],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    let mut dir = vec![0f32; sample_len];
    for ((sample, rng), &goal) in x.chunks(sample_len).zip(rngs.iter_mut()).zip(target) {
        dir.iter_mut().for_each(|d| *d = rng.normal());
        let at = |s: f32| -> f64 {
            sample
                .iter()
                .zip(&dir)
                .map(|(&v, &d)| {
                    let p = ((v + s * d).clamp(clip[0], clip[1]) - v) as f64;
                    p * p
                })
                .sum::<f64>()
                .sqrt()
        };
        let goal64 = goal as f64;
        let mut scale = 0f32;
        if goal > 0.0 {
            let dir_norm = dir
                .iter()
                .map(|&d| (d as f64) * (d as f64))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            let (mut lo, mut hi) = (0f32, (goal64 / dir_norm) as f32);
            let mut grow = 0;
            while at(hi) < goal64 && grow < 60 {
                lo = hi;
                hi *= 2.0;
                grow += 1;
            }
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if at(mid) < goal64 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            // the end whose norm is closer to the goal
            scale = if (at(lo) - goal64).abs() <= (at(hi) - goal64).abs() {
                lo
            } else {
                hi
            };
        }
        out.extend(
            sample
                .iter()
                .zip(&dir)
                .map(|(&v, &d)| (v + scale * d).clamp(clip[0], clip[1])),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_clip_counts_values_and_samples_and_skips_failed_rows() {
        // Three samples of 3 values; row 2 failed to decode and is not counted.
        let x = [0.0, 0.5, 1.0, -0.25, 1.5, 0.2, 9.0, -9.0, 0.0];
        let seen = OutOfClip::of_batch(&x, 3, [0.0, 1.0], |row| row != 2);
        assert_eq!((seen.values, seen.samples), (2, 1));
        assert_eq!((seen.min, seen.max), (-0.25, 1.5));
        let mut total = OutOfClip::default();
        total.add(&seen);
        total.add(&OutOfClip::of_batch(&x[..3], 3, [0.0, 1.0], |_| true));
        assert_eq!((total.values, total.samples), (2, 1));
        let text = total.describe([0.0, 1.0], "consequence");
        assert!(text.contains("data.clip = [-0.25, 1.5]"), "{text}");
    }

    #[test]
    fn matched_noise_hits_the_target_norm_inside_the_clip_box() {
        let x: Vec<f32> = (0..3 * 50).map(|i| (i % 11) as f32 / 10.0).collect();
        let target = [0.5f32, 2.0, 0.0];
        let mut rngs: Vec<_> = (0..3)
            .map(|i| SampleRng::for_sample(1, "s", i, 0))
            .collect();
        let adv = matched_noise(&x, 50, &target, [0.0, 1.0], &mut rngs);
        assert!(adv.iter().all(|&v| (0.0..=1.0).contains(&v)));
        for ((_, l2), t) in norms(&x, &adv, 50).into_iter().zip(target) {
            assert!((l2 - t).abs() <= 1e-4 * t.max(1.0), "{l2} vs {t}");
        }
    }

    #[test]
    fn generators_are_per_sample_and_repeatable() {
        let a: Vec<f32> = {
            let mut r = SampleRng::for_sample(3, "x.npz", 5, 1);
            (0..4).map(|_| r.normal()).collect()
        };
        let b: Vec<f32> = {
            let mut r = SampleRng::for_sample(3, "x.npz", 5, 1);
            (0..4).map(|_| r.normal()).collect()
        };
        let c: Vec<f32> = {
            let mut r = SampleRng::for_sample(3, "x.npz", 6, 1);
            (0..4).map(|_| r.normal()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = SampleRng::for_sample(0, "", 0, 0);
        let draws: Vec<f32> = (0..20000).map(|_| r.normal()).collect();
        let mean = draws.iter().sum::<f32>() / draws.len() as f32;
        let var = draws.iter().map(|d| (d - mean) * (d - mean)).sum::<f32>() / draws.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
