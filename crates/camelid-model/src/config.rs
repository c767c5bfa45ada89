//! Model hyper-parameters: read from GGUF `llama.*` keys or a Hugging Face `config.json`,
//! validated, and cross-checked against the tensors by the loader.
//!
//! Key names: GGUF spec (ggml `docs/gguf.md`, "LLM" section); config fields: transformers
//! `LlamaConfig`. RoPE scaling: see `rope_inv_freq`.

use std::fmt;

/// How RoPE frequencies are stretched for long contexts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (equivalently, every frequency divided by it).
    Linear {
        factor: f32,
    },
    /// Llama 3.1 "llama3" scaling (meta-llama/llama-models `apply_scaling`; transformers
    /// `_compute_llama3_parameters`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: usize,
    },
}

/// The hyper-parameters of a Llama-architecture model.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub n_vocab: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Width of the SwiGLU hidden layer.
    pub d_ff: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// The output projection reuses the token embedding (Llama 3.2 1B/3B, SmolLM2).
    pub tied_embeddings: bool,
}

/// A hyper-parameter that is missing, out of range or inconsistent.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub field: String,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.msg)
    }
}

impl std::error::Error for ConfigError {}

fn bad(field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        msg: msg.into(),
    }
}

impl Config {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Rejects values no real checkpoint has, before anything is allocated from them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits: [(&str, usize, usize); 8] = [
            ("vocab_size", self.n_vocab, 1 << 24),
            ("hidden_size", self.d_model, 1 << 17),
            ("num_hidden_layers", self.n_layers, 1 << 12),
            ("num_attention_heads", self.n_heads, 1 << 12),
            ("num_key_value_heads", self.n_kv_heads, 1 << 12),
            ("head_dim", self.head_dim, 1 << 12),
            ("intermediate_size", self.d_ff, 1 << 20),
            ("max_position_embeddings", self.n_ctx_train, 1 << 24),
        ];
        for (field, v, max) in limits {
            if v == 0 || v > max {
                return Err(bad(field, format!("{v} is outside 1..={max}")));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.n_kv_heads, self.n_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                format!("{} is odd; RoPE rotates pairs", self.head_dim),
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(bad(
                "rms_norm_eps",
                format!("{} is not in (0, 1)", self.norm_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(bad(
                "rope_theta",
                format!("{} is not a finite value > 1", self.rope_theta),
            ));
        }
        match self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(bad("rope_scaling.factor", format!("{factor} is not > 0")));
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => {
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(bad("rope_scaling.factor", format!("{factor} is not > 0")));
                }
                if !(low_freq_factor > 0.0 && high_freq_factor > low_freq_factor) {
                    return Err(bad(
                        "rope_scaling",
                        format!(
                            "need 0 < low_freq_factor ({low_freq_factor}) < high_freq_factor ({high_freq_factor})"
                        ),
                    ));
                }
                if original_context == 0 {
                    return Err(bad("rope_scaling.original_max_position_embeddings", "is 0"));
                }
            }
        }
        Ok(())
    }

    /// The context of a run that asks for `requested` tokens (None: the training context, at
    /// most 4096): at least one token and at most the training context. Errors name `--ctx`.
    pub fn context(&self, requested: Option<usize>) -> Result<usize, String> {
        match requested {
            Some(0) => Err("--ctx must be at least 1".into()),
            Some(c) if c > self.n_ctx_train => Err(format!(
                "--ctx {c} is beyond the {} tokens this model was trained for",
                self.n_ctx_train
            )),
            Some(c) => Ok(c),
            None => Ok(self.n_ctx_train.min(4096)),
        }
    }

    /// Parameter count implied by the shapes: embeddings, attention, SwiGLU, norms, and the
    /// output projection unless tied.
    pub fn n_params(&self) -> u64 {
        let (d, v) = (self.d_model as u64, self.n_vocab as u64);
        // Each layer's matrices and its two norm gains; the final norm's gain after the layers.
        let per_layer = self.layer_matmul_params() + 2 * d;
        let output = if self.tied_embeddings { 0 } else { v * d };
        v * d + self.n_layers as u64 * per_layer + d + output
    }

    /// One layer's weights that multiply activations: the q, k, v and output projections and
    /// the three SwiGLU matrices.
    fn layer_matmul_params(&self) -> u64 {
        let (d, ff) = (self.d_model as u64, self.d_ff as u64);
        let (q, kv) = (self.q_dim() as u64, self.kv_dim() as u64);
        d * q + 2 * d * kv + q * d + 3 * d * ff
    }

    /// The parameters that multiply activations, `N_mm`: every layer's projections and the
    /// output matrix (counted even when it is the tied embedding, since the product runs either
    /// way); not the embedding lookup, a gather, nor the norm gains.
    pub fn matmul_params(&self) -> u64 {
        let (d, v) = (self.d_model as u64, self.n_vocab as u64);
        self.n_layers as u64 * self.layer_matmul_params() + v * d
    }

    /// Bytes the KV cache holds per token of context, `2 (K and V) · n_layers · n_kv_heads ·
    /// head_dim · bytes_per_value` (2 for F16, 4 for f32).
    pub fn kv_bytes_per_token(&self, bytes_per_value: u64) -> u64 {
        2 * self.n_layers as u64 * self.kv_dim() as u64 * bytes_per_value
    }

    /// FLOPs of the forward pass for one token at context position `pos`:
    /// `2·N_mm + 4·n_layers·pos·n_heads·head_dim`. The attention term counts `QKᵀ` and `A·V`
    /// (`pos·n_heads·head_dim` multiply-adds each, 2 FLOPs per multiply-add), after Kaplan et
    /// al. 2020 ("Scaling Laws for Neural Language Models", table 1), who count `QKᵀ` only.
    /// Softmax, norms, RoPE and SwiGLU are left out: they are O(d) per token.
    pub fn flops_per_token(&self, pos: usize) -> f64 {
        let attention = 4.0 * self.n_layers as f64 * pos as f64 * self.q_dim() as f64;
        2.0 * self.matmul_params() as f64 + attention
    }

    /// Per-pair RoPE inverse frequencies `θ^(-2i/head_dim)`, with the configured scaling.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let hd = self.head_dim;
        (0..hd / 2)
            .map(|i| {
                let f = (self.rope_theta as f64).powf(-((2 * i) as f64) / hd as f64);
                scale_freq(f, self.rope_scaling) as f32
            })
            .collect()
    }
}

/// Applies a scaling rule to one inverse frequency. The Llama 3.1 rule (LLAMA.md): with
/// `λ = 2π/f`, wavelengths shorter than `L/high` keep `f`, longer than `L/low` get `f/factor`,
/// and in between `f' = (1 − s)·f/factor + s·f` with `s = (L/λ − low)/(high − low)`.
fn scale_freq(f: f64, scaling: RopeScaling) -> f64 {
    match scaling {
        RopeScaling::None => f,
        RopeScaling::Linear { factor } => f / factor as f64,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => {
            let (factor, low, high) = (
                factor as f64,
                low_freq_factor as f64,
                high_freq_factor as f64,
            );
            let l = original_context as f64;
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < l / high {
                f
            } else if wavelen > l / low {
                f / factor
            } else {
                let s = (l / wavelen - low) / (high - low);
                (1.0 - s) * f / factor + s * f
            }
        }
    }
}

/// A published model shape (../shared/LLAMA.md, "Published shapes").
#[derive(Clone, Debug)]
pub struct Preset {
    pub id: &'static str,
    pub name: &'static str,
    pub config: Config,
    /// The published parameter count, as printed in LLAMA.md's table.
    pub published_params: &'static str,
    /// Pre-training tokens, from the papers and model cards.
    pub training_tokens: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn shape(
    d: usize,
    layers: usize,
    heads: usize,
    kv: usize,
    ff: usize,
    vocab: usize,
    theta: f32,
    ctx: usize,
    eps: f32,
    tied: bool,
    scaling: RopeScaling,
) -> Config {
    Config {
        n_vocab: vocab,
        d_model: d,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: kv,
        head_dim: d / heads,
        d_ff: ff,
        norm_eps: eps,
        rope_theta: theta,
        rope_scaling: scaling,
        n_ctx_train: ctx,
        tied_embeddings: tied,
    }
}

const NO: RopeScaling = RopeScaling::None;
const L31: RopeScaling = RopeScaling::Llama3 {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_context: 8192,
};
const L32: RopeScaling = RopeScaling::Llama3 {
    factor: 32.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_context: 8192,
};

/// Every row of the table in LLAMA.md.
pub fn presets() -> Vec<Preset> {
    let p = |id, name, config, published_params, training_tokens| Preset {
        id,
        name,
        config,
        published_params,
        training_tokens,
    };
    vec![
        p(
            "llama-7b",
            "LLaMA 7B",
            shape(4096, 32, 32, 32, 11008, 32000, 1e4, 2048, 1e-6, false, NO),
            "6.74B",
            "1.0T",
        ),
        p(
            "llama-13b",
            "LLaMA 13B",
            shape(5120, 40, 40, 40, 13824, 32000, 1e4, 2048, 1e-6, false, NO),
            "13.0B",
            "1.0T",
        ),
        p(
            "llama-33b",
            "LLaMA 33B",
            shape(6656, 60, 52, 52, 17920, 32000, 1e4, 2048, 1e-6, false, NO),
            "32.5B",
            "1.4T",
        ),
        p(
            "llama-65b",
            "LLaMA 65B",
            shape(8192, 80, 64, 64, 22016, 32000, 1e4, 2048, 1e-6, false, NO),
            "65.3B",
            "1.4T",
        ),
        p(
            "llama2-7b",
            "Llama 2 7B",
            shape(4096, 32, 32, 32, 11008, 32000, 1e4, 4096, 1e-5, false, NO),
            "6.74B",
            "2.0T",
        ),
        p(
            "llama2-13b",
            "Llama 2 13B",
            shape(5120, 40, 40, 40, 13824, 32000, 1e4, 4096, 1e-5, false, NO),
            "13.0B",
            "2.0T",
        ),
        p(
            "llama2-70b",
            "Llama 2 70B",
            shape(8192, 80, 64, 8, 28672, 32000, 1e4, 4096, 1e-5, false, NO),
            "69.0B",
            "2.0T",
        ),
        p(
            "llama3-8b",
            "Llama 3 8B",
            shape(4096, 32, 32, 8, 14336, 128256, 5e5, 8192, 1e-5, false, NO),
            "8.03B",
            "15T+",
        ),
        p(
            "llama3-70b",
            "Llama 3 70B",
            shape(8192, 80, 64, 8, 28672, 128256, 5e5, 8192, 1e-5, false, NO),
            "70.6B",
            "15T+",
        ),
        p(
            "llama3.1-8b",
            "Llama 3.1 8B",
            shape(
                4096, 32, 32, 8, 14336, 128256, 5e5, 131072, 1e-5, false, L31,
            ),
            "8.03B",
            "15T+",
        ),
        p(
            "llama3.1-70b",
            "Llama 3.1 70B",
            shape(
                8192, 80, 64, 8, 28672, 128256, 5e5, 131072, 1e-5, false, L31,
            ),
            "70.6B",
            "15T+",
        ),
        p(
            "llama3.1-405b",
            "Llama 3.1 405B",
            shape(
                16384, 126, 128, 8, 53248, 128256, 5e5, 131072, 1e-5, false, L31,
            ),
            "406B",
            "15T+",
        ),
        p(
            "llama3.2-1b",
            "Llama 3.2 1B",
            shape(2048, 16, 32, 8, 8192, 128256, 5e5, 131072, 1e-5, true, L32),
            "1.24B",
            "up to 9T",
        ),
        p(
            "llama3.2-3b",
            "Llama 3.2 3B",
            shape(3072, 28, 24, 8, 8192, 128256, 5e5, 131072, 1e-5, true, L32),
            "3.21B",
            "up to 9T",
        ),
    ]
}

/// Meta's FFN width rule (`FeedForward` in llama/model.py): `h = int(2·4d/3)`, times the
/// multiplier if any, rounded up to a multiple of `multiple_of`.
pub fn ffn_width(d_model: usize, multiplier: Option<f64>, multiple_of: usize) -> usize {
    let mut h = (2 * 4 * d_model) / 3;
    if let Some(m) = multiplier {
        h = (m * h as f64) as usize;
    }
    h.div_ceil(multiple_of) * multiple_of
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats a count to three significant digits the way the table prints it.
    fn three_sig(n: u64) -> String {
        let b = n as f64 / 1e9;
        if b >= 100.0 {
            format!("{b:.0}B")
        } else if b >= 10.0 {
            format!("{b:.1}B")
        } else {
            format!("{b:.2}B")
        }
    }

    #[test]
    fn presets_reproduce_the_published_parameter_counts() {
        for p in presets() {
            p.config.validate().unwrap();
            assert_eq!(
                three_sig(p.config.n_params()),
                p.published_params,
                "{}",
                p.name
            );
        }
    }

    /// FFN widths of the table follow from Meta's rule with the published multipliers.
    #[test]
    fn ffn_rule_gives_the_published_widths() {
        assert_eq!(ffn_width(4096, None, 256), 11008);
        assert_eq!(ffn_width(5120, None, 256), 13824);
        assert_eq!(ffn_width(4096, Some(1.3), 1024), 14336);
        assert_eq!(ffn_width(8192, Some(1.3), 4096), 28672);
    }

    /// Llama 3.1 scaling, regions checked against the closed form of LLAMA.md.
    #[test]
    fn llama3_scaling_keeps_high_divides_low_and_blends_between() {
        let c = presets()
            .into_iter()
            .find(|p| p.id == "llama3.1-8b")
            .unwrap()
            .config;
        let scaled = c.rope_inv_freq();
        let plain = Config {
            rope_scaling: RopeScaling::None,
            ..c.clone()
        }
        .rope_inv_freq();
        assert_eq!(scaled[0], plain[0]); // wavelength 2π < 8192/4
        let last = plain.len() - 1; // wavelength ≫ 8192
        assert!((scaled[last] - plain[last] / 8.0).abs() <= 1e-6 * plain[last]);
        let mid = (0..plain.len())
            .find(|&i| {
                let w = 2.0 * std::f64::consts::PI / plain[i] as f64;
                w > 2048.0 && w < 8192.0
            })
            .unwrap();
        assert!(scaled[mid] < plain[mid] && scaled[mid] > plain[mid] / 8.0);
    }

    fn preset(id: &str) -> Config {
        presets().into_iter().find(|p| p.id == id).unwrap().config
    }

    #[test]
    fn a_run_context_is_within_the_training_one() {
        let c = preset("llama2-7b");
        assert_eq!((c.context(None), c.context(Some(100))), (Ok(4096), Ok(100)));
        assert_eq!(c.context(Some(0)), Err("--ctx must be at least 1".into()));
        let e = c.context(Some(4097)).unwrap_err();
        assert_eq!(
            e,
            "--ctx 4097 is beyond the 4096 tokens this model was trained for"
        );
        // Longer training contexts are capped at 4096 unless asked for.
        assert_eq!(preset("llama3.1-8b").context(None), Ok(4096));
    }

    /// Llama 2 7B by hand: per layer 4·4096² (attention, no GQA) + 3·4096·11008 (SwiGLU), 32
    /// layers, plus the 32000×4096 output matrix; the whole count is Meta's 6,738,415,616.
    #[test]
    fn llama2_7b_figures_by_hand() {
        let c = preset("llama2-7b");
        let layer = 4 * 4096 * 4096 + 3 * 4096 * 11008;
        assert_eq!(c.matmul_params(), 32 * layer + 32000 * 4096);
        assert_eq!(c.n_params(), 6_738_415_616);
        assert_eq!(c.kv_bytes_per_token(2), 512 << 10);
        assert_eq!(c.flops_per_token(0), 2.0 * c.matmul_params() as f64);
        assert_eq!(
            c.flops_per_token(4096),
            2.0 * c.matmul_params() as f64 + 4.0 * 32.0 * 4096.0 * 4096.0
        );
    }

    /// Grouped-query attention shrinks the KV cache by the group size (8 kv heads of 32 in
    /// Llama 3 8B), and f32 doubles it.
    #[test]
    fn kv_bytes_follow_the_kv_heads() {
        let c = preset("llama3-8b");
        assert_eq!(c.kv_bytes_per_token(2), 128 << 10);
        assert_eq!(c.kv_bytes_per_token(4), 256 << 10);
    }

    /// The parameters that do not multiply activations are the norm gains and, unless the
    /// output matrix is the embedding, the embedding table.
    #[test]
    fn matmul_params_leave_out_the_lookup_and_the_norms() {
        for p in presets() {
            let c = &p.config;
            let (d, v, l) = (c.d_model as u64, c.n_vocab as u64, c.n_layers as u64);
            let lookup = if c.tied_embeddings { 0 } else { v * d };
            assert_eq!(
                c.n_params() - c.matmul_params(),
                lookup + 2 * d * l + d,
                "{}",
                p.id
            );
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = presets()[0].config.clone();
        c.n_kv_heads = 5;
        assert_eq!(c.validate().unwrap_err().field, "num_key_value_heads");
        c.n_kv_heads = 32;
        c.head_dim = 0;
        assert_eq!(c.validate().unwrap_err().field, "head_dim");
    }
}
