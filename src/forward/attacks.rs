//! Attacks that need the model: FGSM, PGD (L-inf and L2), Carlini-Wagner L2, DeepFool (L2), and
//! Gaussian blur, batched with tch autograd on the model's device.
//!
//! All work in raw input units and keep inputs inside `clip`; gradients flow through the model's
//! normalisation. Attacks are untargeted against `targets` (the label, or the clean prediction when
//! there is none). Like the forward pass, they run in fixed padded chunks of `FORWARD_CHUNK`
//! samples; losses sum over the real rows only, so padding never changes a real row's gradient.

use anyhow::bail;
use tch::{Kind, Reduction, Tensor};

use super::{TchModel, FORWARD_CHUNK};
use crate::perturb::{AttackKind, Norm, SampleRng};

impl TchModel {
    /// The perturbed inputs of `n` samples (`x` raw, sample-major). `rngs` has one generator per
    /// sample (PGD's random start). Noise attacks that need no model live in `perturb`.
    pub fn attack(
        &self,
        kind: &AttackKind,
        x: &[f32],
        n: usize,
        targets: &[i64],
        clip: [f32; 2],
        rngs: &mut [SampleRng],
    ) -> anyhow::Result<Vec<f32>> {
        let len = self.sample_len();
        anyhow::ensure!(
            x.len() == n * len && targets.len() == n && rngs.len() == n,
            "attack batch sizes disagree"
        );
        let mut out = Vec::with_capacity(x.len());
        let mut padded = vec![0f32; FORWARD_CHUNK * len];
        let mut padded_y = vec![0i64; FORWARD_CHUNK];
        for start in (0..n).step_by(FORWARD_CHUNK) {
            let rows = (n - start).min(FORWARD_CHUNK);
            padded[..rows * len].copy_from_slice(&x[start * len..(start + rows) * len]);
            padded[rows * len..].fill(0.0);
            padded_y[..rows].copy_from_slice(&targets[start..start + rows]);
            padded_y[rows..].fill(0);
            let xt = self.batch_tensor(&padded, FORWARD_CHUNK);
            let yt = Tensor::from_slice(&padded_y).to_device(self.device);
            let chunk = Chunk {
                model: self,
                x: &xt,
                y: &yt,
                rows,
                clip,
            };
            let adv = match *kind {
                AttackKind::Fgsm { eps } => chunk.fgsm(eps)?,
                AttackKind::Pgd {
                    eps,
                    norm,
                    steps,
                    step_size,
                    random_start,
                } => {
                    let start_delta = if random_start {
                        Some(self.random_start(norm, eps, &mut rngs[start..start + rows]))
                    } else {
                        None
                    };
                    chunk.pgd(eps, norm, steps, step_size, start_delta)?
                }
                AttackKind::CwL2 {
                    confidence,
                    steps,
                    lr,
                    binary_search_steps,
                    initial_const,
                } => chunk.cw_l2(confidence, steps, lr, binary_search_steps, initial_const)?,
                AttackKind::Deepfool { steps, overshoot } => chunk.deepfool(steps, overshoot)?,
                AttackKind::GaussianBlur { sigma } => chunk.blur(sigma)?,
                AttackKind::GaussianNoise { .. } | AttackKind::MatchedNoise { .. } => {
                    bail!("noise attacks do not need the model; use perturb::gaussian_noise / matched_noise")
                }
            };
            let adv = adv
                .narrow(0, 0, rows as i64)
                .to_device(tch::Device::Cpu)
                .contiguous()
                .f_flatten(0, -1)?;
            let begin = out.len();
            out.resize(begin + rows * len, 0.0);
            adv.f_copy_data(&mut out[begin..], rows * len)?;
        }
        Ok(out)
    }

    /// PGD's random start for the real rows of a chunk (zero rows after them).
    fn random_start(&self, norm: Norm, eps: f32, rngs: &mut [SampleRng]) -> Tensor {
        let len = self.sample_len();
        let mut delta = vec![0f32; FORWARD_CHUNK * len];
        for (row, rng) in rngs.iter_mut().enumerate() {
            let d = &mut delta[row * len..(row + 1) * len];
            match norm {
                Norm::Linf => d
                    .iter_mut()
                    .for_each(|v| *v = (rng.uniform() * 2.0 - 1.0) * eps),
                Norm::L2 => {
                    // uniform in the L2 ball: Gaussian direction, radius eps * u^(1/d)
                    d.iter_mut().for_each(|v| *v = rng.normal());
                    let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    let radius = eps * rng.uniform().powf(1.0 / len as f32);
                    d.iter_mut().for_each(|v| *v *= radius / norm);
                }
            }
        }
        self.batch_tensor(&delta, FORWARD_CHUNK)
    }
}

/// One padded chunk of an attack.
struct Chunk<'a> {
    model: &'a TchModel,
    x: &'a Tensor,
    y: &'a Tensor,
    rows: usize,
    clip: [f32; 2],
}

impl Chunk<'_> {
    fn clip(&self, t: &Tensor) -> anyhow::Result<Tensor> {
        Ok(t.f_clamp(self.clip[0] as f64, self.clip[1] as f64)?)
    }

    /// A [B] tensor of per-row values reshaped to broadcast over [B, ...].
    fn per_row(&self, v: &Tensor) -> anyhow::Result<Tensor> {
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, self.x.dim() - 1));
        Ok(v.f_view(shape.as_slice())?)
    }

    fn l2_per_row(&self, t: &Tensor) -> anyhow::Result<Tensor> {
        Ok(t.f_flatten(1, -1)?
            .f_norm_scalaropt_dim(2, [1i64].as_slice(), false)?)
    }

    /// 1 for real rows, 0 for padding, as a [B] float tensor.
    fn real_rows(&self) -> Tensor {
        let b = self.x.size()[0];
        Tensor::f_arange(b, (Kind::Int64, self.x.device()))
            .expect("arange")
            .lt(self.rows as i64)
            .to_kind(Kind::Float)
    }

    /// Gradient of the summed cross-entropy of the real rows with respect to the input.
    fn loss_grad(&self, xa: &Tensor) -> anyhow::Result<Tensor> {
        let xa = xa.detach().set_requires_grad(true);
        let rows = self.rows as i64;
        let logits = self.model.logits(&xa)?.narrow(0, 0, rows);
        let loss = logits.f_cross_entropy_loss::<Tensor>(
            &self.y.narrow(0, 0, rows),
            None,
            Reduction::Sum,
            -100,
            0.0,
        )?;
        let grads = Tensor::f_run_backward(&[&loss], &[&xa], false, false)?;
        Ok(grads.into_iter().next().expect("one gradient"))
    }

    fn fgsm(&self, eps: f32) -> anyhow::Result<Tensor> {
        let g = self.loss_grad(self.x)?;
        tch::no_grad(|| self.clip(&(self.x + g.sign() * eps as f64)))
    }

    fn pgd(
        &self,
        eps: f32,
        norm: Norm,
        steps: usize,
        step_size: f32,
        start: Option<Tensor>,
    ) -> anyhow::Result<Tensor> {
        let mut adv = match start {
            Some(delta) => self.clip(&(self.x + delta))?,
            None => self.x.shallow_clone(),
        };
        for _ in 0..steps {
            let g = self.loss_grad(&adv)?;
            adv = tch::no_grad(|| -> anyhow::Result<Tensor> {
                let stepped = match norm {
                    Norm::Linf => &adv + g.sign() * step_size as f64,
                    Norm::L2 => {
                        let gn = self.per_row(&self.l2_per_row(&g)?.clamp_min(1e-12))?;
                        &adv + (&g / gn) * step_size as f64
                    }
                };
                let delta = &stepped - self.x;
                let delta = match norm {
                    Norm::Linf => delta.f_clamp(-eps as f64, eps as f64)?,
                    Norm::L2 => {
                        let dn = self.l2_per_row(&delta)?;
                        let factor = (dn.clamp_min(1e-12).reciprocal() * eps as f64).clamp_max(1.0);
                        &delta * self.per_row(&factor)?
                    }
                };
                self.clip(&(self.x + delta))
            })?;
        }
        Ok(adv)
    }

    /// Carlini-Wagner L2 (untargeted): Adam on tanh-space inputs minimising
    /// ||x' - x||^2 + c * max(Z_y - max_{i != y} Z_i + confidence, 0), with a per-row binary search
    /// on c. Rows never made adversarial keep their input (zero perturbation).
    fn cw_l2(
        &self,
        confidence: f32,
        steps: usize,
        lr: f32,
        search_steps: usize,
        initial_const: f32,
    ) -> anyhow::Result<Tensor> {
        let tanh_box = TanhBox {
            lo: self.clip[0] as f64,
            hi: self.clip[1] as f64,
        };
        let b = self.x.size()[0];
        let dev = self.x.device();
        let w0 = tch::no_grad(|| tanh_box.to_tanh_space(self.x))?;
        let real = self.real_rows();
        let mut c = Tensor::f_full([b], initial_const as f64, (Kind::Float, dev))?;
        let mut lower = Tensor::f_zeros([b], (Kind::Float, dev))?;
        let mut upper = Tensor::f_full([b], 1e10, (Kind::Float, dev))?;
        let mut best_l2 = Tensor::f_full([b], f64::INFINITY, (Kind::Float, dev))?;
        let mut best = self.x.shallow_clone();
        let n_classes = tch::no_grad(|| self.model.logits(self.x))?.size()[1];
        let onehot = self.y.f_one_hot(n_classes)?.to_kind(Kind::Float);
        for _ in 0..search_steps {
            let mut w = w0.shallow_clone();
            let mut m = w.zeros_like();
            let mut v = w.zeros_like();
            let mut succeeded = Tensor::f_zeros([b], (Kind::Bool, dev))?;
            for t in 1..=steps {
                let wv = w.detach().set_requires_grad(true);
                let xa = tanh_box.to_input(&wv)?;
                let logits = self.model.logits(&xa)?;
                let margin = cw_margin(&logits, &onehot, confidence);
                let l2sq = (&xa - self.x).square().flatten(1, -1).sum_dim_intlist(
                    [1i64].as_slice(),
                    false,
                    Kind::Float,
                );
                let loss = ((&l2sq + &c * &margin) * &real).sum(Kind::Float);
                let g = Tensor::f_run_backward(&[&loss], &[&wv], false, false)?.remove(0);
                tch::no_grad(|| -> anyhow::Result<()> {
                    // record successes at this step's input
                    let pred = logits.argmax(1, false);
                    let hit = pred.ne_tensor(self.y).logical_and(&margin.le(0.0));
                    let better = hit.logical_and(&l2sq.lt_tensor(&best_l2));
                    best_l2 = l2sq.where_self(&better, &best_l2);
                    best = xa.detach().where_self(&self.per_row(&better)?, &best);
                    succeeded = succeeded.logical_or(&hit);
                    // Adam
                    m = &m * 0.9 + &g * 0.1;
                    v = &v * 0.999 + g.square() * 0.001;
                    let mhat = &m / (1.0 - 0.9f64.powi(t as i32));
                    let vhat = &v / (1.0 - 0.999f64.powi(t as i32));
                    w = &wv.detach() - mhat * lr as f64 / (vhat.sqrt() + 1e-8);
                    Ok(())
                })?;
            }
            tch::no_grad(|| search_const(&mut c, &mut lower, &mut upper, &succeeded));
        }
        Ok(best)
    }

    /// DeepFool (L2): linearise the classifier around the current point and step to the nearest
    /// decision boundary, until each row's prediction leaves its target.
    fn deepfool(&self, steps: usize, overshoot: f32) -> anyhow::Result<Tensor> {
        let total = self.x.zeros_like();
        let mut r_tot = total;
        let real = self.real_rows().to_kind(Kind::Bool);
        let n_classes = tch::no_grad(|| self.model.logits(self.x))?.size()[1];
        let ones = |t: &Tensor| self.per_row(t);
        for _ in 0..steps {
            let xa = tch::no_grad(|| self.clip(&(self.x + &r_tot * (1.0 + overshoot as f64))))?
                .detach()
                .set_requires_grad(true);
            let logits = self.model.logits(&xa)?;
            let pred = logits.argmax(1, false);
            let active = pred.eq_tensor(self.y).logical_and(&real);
            if !bool::try_from(active.any())? {
                break;
            }
            let mut grads = Vec::with_capacity(n_classes as usize);
            for k in 0..n_classes {
                let out = logits.select(1, k).sum(Kind::Float);
                grads.push(Tensor::f_run_backward(&[&out], &[&xa], true, false)?.remove(0));
            }
            let step = tch::no_grad(|| -> anyhow::Result<Tensor> {
                let g = Tensor::stack(&grads, 1); // [B, K, ...]
                let y_idx = self.y.view([-1, 1]);
                let f_y = logits.gather(1, &y_idx, false); // [B, 1]
                let mut gshape = vec![-1i64, 1];
                gshape.extend(std::iter::repeat_n(1, self.x.dim() - 1));
                let g_y_index = y_idx.view(gshape.as_slice()).expand_as(&g.narrow(1, 0, 1));
                let g_y = g.gather(1, &g_y_index, false); // [B, 1, ...]
                let w = &g - &g_y; // [B, K, ...]
                let f = (&logits - &f_y).detach(); // [B, K]
                let wn = w
                    .flatten(2, -1)
                    .norm_scalaropt_dim(2, [2i64].as_slice(), false); // [B, K]
                let dist = f.abs() / (&wn + 1e-8);
                let dist = dist.masked_fill(
                    &self.y.one_hot(n_classes).to_kind(Kind::Bool),
                    f64::INFINITY,
                );
                let l = dist.argmin(1, true); // [B, 1]
                let f_l = f.gather(1, &l, false).squeeze_dim(1).abs();
                let wn_l = wn.gather(1, &l, false).squeeze_dim(1);
                let w_l = w
                    .gather(1, &l.view(gshape.as_slice()).expand_as(&g_y_index), false)
                    .squeeze_dim(1);
                let scale = (f_l + 1e-4) / (wn_l.square() + 1e-8);
                let scale = scale * active.to_kind(Kind::Float);
                Ok(w_l * ones(&scale)?)
            })?;
            r_tot = &r_tot + step;
        }
        tch::no_grad(|| self.clip(&(self.x + r_tot * (1.0 + overshoot as f64))))
    }

    /// Gaussian blur (separable, replicate padding), per channel.
    fn blur(&self, sigma: f32) -> anyhow::Result<Tensor> {
        if self.x.dim() != 4 {
            bail!("gaussian_blur needs image inputs [C, H, W]");
        }
        let radius = (3.0 * sigma).ceil().max(1.0) as i64;
        let taps: Vec<f32> = (-radius..=radius)
            .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
            .collect();
        let sum: f32 = taps.iter().sum();
        let taps: Vec<f32> = taps.iter().map(|t| t / sum).collect();
        let c = self.x.size()[1];
        let k = 2 * radius + 1;
        let dev = self.x.device();
        let kh = Tensor::from_slice(&taps)
            .view([1, 1, k, 1])
            .repeat([c, 1, 1, 1])
            .to_device(dev);
        let kw = Tensor::from_slice(&taps)
            .view([1, 1, 1, k])
            .repeat([c, 1, 1, 1])
            .to_device(dev);
        tch::no_grad(|| -> anyhow::Result<Tensor> {
            let h = self
                .x
                .f_pad([0, 0, radius, radius].as_slice(), "replicate", None)?;
            let h = h.f_conv2d(
                &kh,
                None::<Tensor>,
                [1, 1].as_slice(),
                [0, 0].as_slice(),
                [1, 1].as_slice(),
                c,
            )?;
            let h = h.f_pad([radius, radius, 0, 0].as_slice(), "replicate", None)?;
            let h = h.f_conv2d(
                &kw,
                None::<Tensor>,
                [1, 1].as_slice(),
                [0, 0].as_slice(),
                [1, 1].as_slice(),
                c,
            )?;
            self.clip(&h)
        })
    }
}

/// Carlini-Wagner's change of variables: x = lo + (tanh(w) + 1) / 2 * (hi - lo) keeps every
/// iterate inside the clip range without clipping.
struct TanhBox {
    lo: f64,
    hi: f64,
}

impl TanhBox {
    fn to_tanh_space(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        x.f_sub_scalar(self.lo)?
            .f_div_scalar(self.hi - self.lo)?
            .f_mul_scalar(2.0)?
            .f_sub_scalar(1.0)?
            .f_clamp(-1.0 + 1e-6, 1.0 - 1e-6)?
            .f_atanh()
    }

    fn to_input(&self, w: &Tensor) -> anyhow::Result<Tensor> {
        Ok((w.f_tanh()? + 1.0) * ((self.hi - self.lo) / 2.0) + self.lo)
    }
}

/// How far each row's true-class logit stays above the best other class, plus the confidence
/// margin; zero once the attack has won by that margin.
fn cw_margin(logits: &Tensor, onehot: &Tensor, confidence: f32) -> Tensor {
    let real_logit = (logits * onehot).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let other = (logits - onehot * 1e9).amax([1i64].as_slice(), false);
    (real_logit - &other + confidence as f64).clamp_min(0.0)
}

/// One binary-search step on each row's constant c: success brings the bound above down to c;
/// failure raises the bound below to c, and c grows tenfold until some success gives an upper
/// bound.
fn search_const(c: &mut Tensor, lower: &mut Tensor, upper: &mut Tensor, succeeded: &Tensor) {
    *upper = upper.minimum(c).where_self(succeeded, upper);
    *lower = lower.where_self(succeeded, &lower.maximum(c));
    let mid = (&*lower + &*upper) / 2.0;
    let on_failure = mid.where_self(&upper.lt(1e9), &(&*c * 10.0));
    *c = mid.where_self(succeeded, &on_failure);
}
