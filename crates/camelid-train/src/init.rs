//! The Llama initialisation.
//!
//! - Embedding and projections: N(0, 0.02²), transformers' `LlamaPreTrainedModel._init_weights`
//!   with `initializer_range` 0.02.
//! - The two projections that write into the residual stream (`o_proj`, `down_proj`):
//!   N(0, (0.02 / √(2·n_layers))²), GPT-2's scaling of residual layers by 1/√N with N = 2·n_layers
//!   residual branches (Radford et al. 2019, §2.3), which keeps the residual stream's variance
//!   from growing with depth at the start of training. Meta does not publish LLaMA's init; this
//!   is a documented choice.
//! - RMSNorm gains: 1.
//!
//! Draws: every tensor has its own splitmix64 stream (the run's seed and the tensor's index), its
//! normals by Box–Muller (Box & Muller 1958) from pairs of 53-bit uniforms, so the weights depend
//! on the seed and the shapes only.

use crate::data::SplitMix64;
use crate::params::{ParamKind, Params};

/// The standard deviation of the embedding and projections.
pub const STD: f32 = 0.02;

/// A model of `config`'s layout initialised from `seed`.
pub fn init_params(config: &camelid_model::Config, seed: u64) -> Params {
    let mut params = Params::zeros(config);
    let residual_std = STD / ((2 * config.n_layers) as f32).sqrt();
    for (i, t) in params.tensors.iter_mut().enumerate() {
        let std = match t.kind {
            ParamKind::Norm => {
                t.data.fill(1.0);
                continue;
            }
            ParamKind::ResidualOut => residual_std,
            ParamKind::Embedding | ParamKind::Matrix => STD,
        };
        let mut rng = SplitMix64::new(seed ^ (i as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        let uniform =
            |rng: &mut SplitMix64| ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        for pair in t.data.chunks_mut(2) {
            let (u, v) = (uniform(&mut rng), uniform(&mut rng));
            let r = (-2.0 * u.ln()).sqrt();
            let a = std::f64::consts::TAU * v;
            pair[0] = std * (r * a.cos()) as f32;
            if let Some(x) = pair.get_mut(1) {
                *x = std * (r * a.sin()) as f32;
            }
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use camelid_model::config::RopeScaling;

    #[test]
    fn the_init_has_the_documented_scales() {
        let c = camelid_model::Config {
            n_vocab: 256,
            d_model: 64,
            n_layers: 8,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            d_ff: 192,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            n_ctx_train: 64,
            tied_embeddings: false,
        };
        let p = init_params(&c, 5);
        assert_eq!(p, init_params(&c, 5));
        assert_ne!(p, init_params(&c, 6));
        let std = |name: &str| {
            let t = p.get(name).unwrap();
            let n = t.data.len() as f64;
            let mean = t.data.iter().map(|&x| x as f64).sum::<f64>() / n;
            (t.data
                .iter()
                .map(|&x| (x as f64 - mean).powi(2))
                .sum::<f64>()
                / n)
                .sqrt()
        };
        // 16,384 draws: the sample deviation is within 2% of the true one with ample margin.
        for name in ["model.embed_tokens.weight", "lm_head.weight"] {
            assert!(
                (std(name) / 0.02 - 1.0).abs() < 0.02,
                "{name}: {}",
                std(name)
            );
        }
        let down = std("model.layers.3.mlp.down_proj.weight");
        assert!((down / (0.02 / 4.0) - 1.0).abs() < 0.03, "{down}");
        assert!(
            p.get("model.norm.weight")
                .unwrap()
                .data
                .iter()
                .all(|&x| x == 1.0)
        );
    }
}
