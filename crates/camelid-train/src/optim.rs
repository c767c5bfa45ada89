//! AdamW, global-norm gradient clipping and the learning-rate schedule, as the LLaMA paper trains
//! (arXiv 2302.13971 §2.2: β1 = 0.9, β2 = 0.95, weight decay 0.1, gradient clipping 1.0, 2,000
//! warmup steps, cosine decay to 10% of the peak).
//!
//! Each piece follows a PyTorch definition to the operation, so that a run can be checked against
//! `torch.optim.AdamW` + `torch.nn.utils.clip_grad_norm_` + a `LambdaLR` step for step
//! (tools/train_optim_reference.py):
//! - AdamW: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (arXiv 1711.05101),
//!   algorithm 2, in the order of PyTorch's documented algorithm (`torch.optim.AdamW`): decay the
//!   weight by `1 - lr·λ`, update the moments, divide by the bias-corrected second moment.
//! - Clipping: the 2-norm of all gradients as one vector, every gradient scaled by
//!   `min(1, max_norm / (norm + 1e-6))` (`clip_grad_norm_`'s formula, its 1e-6 included).
//! - Schedule: [`Schedule::lr`].
//!
//! Everything is elementwise or a reduction in a fixed order, so an update does not depend on the
//! thread count.

use crate::params::{ParamKind, Params};

/// AdamW's hyper-parameters. [`AdamW::llama`] gives the paper's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Decay the embedding (and a tied output projection) too. Off by default: decaying it pulls
    /// rare tokens' rows towards zero for no gain.
    pub decay_embeddings: bool,
    /// Decay the RMSNorm gains too. Off by default: a gain decayed towards 0 fights the norm.
    pub decay_norms: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-5,
            weight_decay: 0.1,
            decay_embeddings: false,
            decay_norms: false,
        }
    }
}

impl AdamWConfig {
    /// The weight decay applied to a tensor of this kind.
    pub fn decay_for(&self, kind: ParamKind) -> f32 {
        let on = match kind {
            ParamKind::Matrix | ParamKind::ResidualOut => true,
            ParamKind::Embedding => self.decay_embeddings,
            ParamKind::Norm => self.decay_norms,
        };
        if on { self.weight_decay } else { 0.0 }
    }
}

/// The optimizer state: step count and the two moments, `Params` of the model's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far (PyTorch's `state["step"]`).
    pub step: u64,
    /// First moment `m`, per parameter.
    pub m: Params,
    /// Second moment `v`, per parameter.
    pub v: Params,
}

impl AdamW {
    pub fn new(params: &Params, config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            step: 0,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// The paper's settings.
    pub fn llama(params: &Params) -> AdamW {
        AdamW::new(params, AdamWConfig::default())
    }

    /// One update of every parameter with learning rate `lr` (already scheduled).
    ///
    /// Per element, with `t` the step after incrementing (PyTorch `_single_tensor_adamw`):
    /// ```text
    /// p ← p·(1 − lr·λ)
    /// m ← m + (1 − β1)·(g − m)
    /// v ← β2·v + (1 − β2)·g²
    /// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
    /// ```
    pub fn update(&mut self, params: &mut Params, grads: &Params, lr: f64) {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        // The bias corrections are Python floats (f64) in PyTorch; only their results meet the
        // f32 tensors.
        let step_size = (lr / (1.0 - (c.beta1 as f64).powi(t))) as f32;
        let bc2_sqrt = (1.0 - (c.beta2 as f64).powi(t)).sqrt() as f32;
        let (b1, b2) = (c.beta1, c.beta2);
        let (one_b1, one_b2) = (1.0 - b1, 1.0 - b2);
        let tensors = params
            .tensors
            .iter_mut()
            .zip(&grads.tensors)
            .zip(self.m.tensors.iter_mut().zip(self.v.tensors.iter_mut()));
        for ((p, g), (m, v)) in tensors {
            debug_assert_eq!(p.name, g.name);
            let decay = (1.0 - lr * c.decay_for(p.kind) as f64) as f32;
            for (((p, &g), m), v) in p
                .data
                .iter_mut()
                .zip(&g.data)
                .zip(m.data.iter_mut())
                .zip(v.data.iter_mut())
            {
                *p *= decay;
                *m += one_b1 * (g - *m);
                *v = *v * b2 + one_b2 * g * g;
                let denom = v.sqrt() / bc2_sqrt + c.eps;
                *p += -step_size * (*m / denom);
            }
        }
    }
}

/// The 2-norm of all gradients taken as one vector. Accumulated in f64 in tensor order, so the
/// value is the same whatever the thread count.
pub fn grad_norm(grads: &Params) -> f64 {
    grads
        .tensors
        .iter()
        .map(|t| t.data.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
        .sum::<f64>()
        .sqrt()
}

/// Scales the gradients so that their global norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does: `coef = min(1, max_norm / (norm + 1e-6))`, applied to
/// every gradient (a no-op multiply by 1 when under the limit). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Params, max_norm: f64) -> f64 {
    let norm = grad_norm(grads);
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        let coef = coef as f32;
        for t in &mut grads.tensors {
            t.data.iter_mut().for_each(|x| *x *= coef);
        }
    }
    norm
}

/// Linear warmup, then cosine decay to `min_ratio` of the peak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    /// Warmup updates.
    pub warmup: u64,
    /// Total updates of the run.
    pub total: u64,
    /// The final learning rate over the peak (0.1 in the LLaMA paper).
    pub min_ratio: f64,
}

impl Schedule {
    /// The learning rate of update `s` (0-based: the first update is `s = 0`):
    /// ```text
    /// s < W:  peak · (s + 1) / W
    /// s ≥ W:  peak · (r + (1 − r) · (1 + cos(π · min(1, (s − W) / max(1, T − 1 − W)))) / 2)
    /// ```
    /// with `W` the warmup, `T` the total and `r` the minimum ratio: the first update already
    /// moves, the peak is reached at update `W`, and the last update (`T − 1`) runs at `r·peak`.
    /// In PyTorch this is `LambdaLR(opt, lambda s: lr(s) / peak)` with `scheduler.step()` after
    /// each `opt.step()`.
    pub fn lr(&self, s: u64) -> f64 {
        if s < self.warmup {
            return self.peak * (s + 1) as f64 / self.warmup as f64;
        }
        let span = self
            .total
            .saturating_sub(1)
            .saturating_sub(self.warmup)
            .max(1);
        let progress = ((s - self.warmup) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_peaks_and_ends_at_the_floor() {
        let s = Schedule {
            peak: 1e-3,
            warmup: 4,
            total: 20,
            min_ratio: 0.1,
        };
        assert_eq!(s.lr(0), 2.5e-4);
        assert_eq!(s.lr(3), 1e-3);
        assert_eq!(s.lr(4), 1e-3);
        assert!((s.lr(19) - 1e-4).abs() < 1e-15);
        assert!((s.lr(100) - 1e-4).abs() < 1e-15);
        for i in 4..19 {
            assert!(s.lr(i + 1) < s.lr(i), "not decreasing at {i}");
        }
    }

    /// 20 steps against torch.optim.AdamW + clip_grad_norm_ + LambdaLR
    /// (tools/train_optim_reference.py), within 1e-5 relative per weight.
    #[test]
    fn twenty_steps_match_torch_adamw_with_clipping_and_the_schedule() {
        use camelid_model::config::RopeScaling;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/train/optim_reference.json"
        );
        let text = std::fs::read_to_string(path).expect("read the fixture");
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let floats = |v: &serde_json::Value| -> Vec<Vec<f32>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_array().unwrap().iter().map(|x| f(x) as f32).collect())
                .collect()
        };
        let config = camelid_model::Config {
            n_vocab: 6,
            d_model: 4,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 2,
            d_ff: 6,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            n_ctx_train: 16,
            tied_embeddings: false,
        };
        let mut params = Params::zeros(&config);
        for (t, want) in params.tensors.iter().zip(r["tensors"].as_array().unwrap()) {
            assert_eq!(t.name, want["name"].as_str().unwrap());
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{}", t.name);
        }
        for (t, init) in params.tensors.iter_mut().zip(floats(&r["initial"])) {
            t.data = init;
        }
        let sched = Schedule {
            peak: f(&r["peak"]),
            warmup: r["warmup"].as_u64().unwrap(),
            total: r["total"].as_u64().unwrap(),
            min_ratio: f(&r["min_ratio"]),
        };
        let mut opt = AdamW::llama(&params);
        assert_eq!(opt.config.beta2 as f64, f(&r["beta2"]) as f32 as f64);
        assert_eq!(opt.config.eps as f64, f(&r["eps"]) as f32 as f64);
        let mut grads = params.zeros_like();
        let mut clipped = 0;
        for (s, step) in r["steps"].as_array().unwrap().iter().enumerate() {
            for (g, data) in grads.tensors.iter_mut().zip(floats(&step["grads"])) {
                g.data = data;
            }
            let lr = sched.lr(s as u64);
            let want_lr = f(&step["lr"]);
            assert!(
                (lr - want_lr).abs() <= 1e-12 * want_lr,
                "step {s}: lr {lr} vs {want_lr}"
            );
            let norm = clip_grad_norm(&mut grads, f(&r["max_norm"]));
            let want_norm = f(&step["grad_norm"]);
            assert!(
                (norm - want_norm).abs() <= 1e-5 * want_norm,
                "step {s}: norm {norm} vs {want_norm}"
            );
            clipped += usize::from(step["clipped"].as_bool().unwrap());
            opt.update(&mut params, &grads, lr);
        }
        assert!(
            clipped > 0 && clipped < 20,
            "the fixture clips at some steps only"
        );
        let close = |what: &str, got: &Params, want: Vec<Vec<f32>>| {
            for (t, want) in got.tensors.iter().zip(want) {
                for (i, (&a, &b)) in t.data.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * b.abs().max(1e-3);
                    assert!(
                        (a - b).abs() <= tol,
                        "{what} {}[{i}]: {a} vs torch {b}",
                        t.name
                    );
                }
            }
        };
        close("weight", &params, floats(&r["final"]));
        close("exp_avg", &opt.m, floats(&r["exp_avg"]));
        close("exp_avg_sq", &opt.v, floats(&r["exp_avg_sq"]));
        assert_eq!(opt.step, 20);
    }
}
