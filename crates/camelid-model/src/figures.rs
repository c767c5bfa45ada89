//! What a shape costs: parameters, KV cache, weight sizes at the common storage types, FLOPs
//! per token; the figures `camelid models` and `camelid compare` print, from [`Config`]'s counts.
//!
//! - parameters: [`Config::n_params`], the count the published shapes imply;
//! - KV cache per token at F16: [`Config::kv_bytes_per_token`];
//! - weights: F16 2 bytes per parameter; Q8_0 8.5 bits (34-byte blocks of 32: an f16 scale and
//!   32 int8, ggml's `block_q8_0`); Q4_K_M about 4.89 bits, an estimate: Q4_K_M is llama.cpp's
//!   mix of Q4_K and Q6_K tensors, and 4.8944 bits per weight is what llama.cpp's
//!   tools/quantize/README.md measures on Llama 3.1 8B (the mix, hence the average, differs a
//!   little by model);
//! - FLOPs per token at context position `t`: [`Config::flops_per_token`].

use crate::Config;

/// Bits per weight of Q8_0: 34 bytes per block of 32 weights.
pub const Q8_0_BITS_PER_WEIGHT: f64 = 34.0 * 8.0 / 32.0;
/// Bits per weight of llama.cpp's Q4_K_M mix, as measured on Llama 3.1 8B (an estimate for
/// other models).
pub const Q4_K_M_BITS_PER_WEIGHT: f64 = 4.8944;

/// The derived figures of one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub params: u64,
    /// "MHA", "MQA", or "GQA n:1" (query heads per kv head).
    pub attention: String,
    /// KV-cache bytes per token of context at F16.
    pub kv_bytes_per_token: u64,
    pub weights_f16: f64,
    pub weights_q8_0: f64,
    /// An estimate (see [`Q4_K_M_BITS_PER_WEIGHT`]).
    pub weights_q4_k_m: f64,
    /// FLOPs per token at the start of the context.
    pub flops_short: f64,
    /// FLOPs per token at the last position of the trained context.
    pub flops_full_ctx: f64,
}

impl Config {
    /// MHA (as many kv heads as query heads), MQA (one kv head), or GQA with its ratio of query
    /// heads to kv heads.
    pub fn attention_kind(&self) -> String {
        if self.n_kv_heads == self.n_heads {
            "MHA".into()
        } else if self.n_kv_heads == 1 {
            "MQA".into()
        } else {
            format!("GQA {}:1", self.n_heads / self.n_kv_heads.max(1))
        }
    }

    /// The shape's figures; see the module docs for how each is counted.
    pub fn figures(&self) -> Figures {
        let params = self.n_params();
        let bytes_at = |bits: f64| params as f64 * bits / 8.0;
        Figures {
            params,
            attention: self.attention_kind(),
            kv_bytes_per_token: self.kv_bytes_per_token(2),
            weights_f16: bytes_at(16.0),
            weights_q8_0: bytes_at(Q8_0_BITS_PER_WEIGHT),
            weights_q4_k_m: bytes_at(Q4_K_M_BITS_PER_WEIGHT),
            flops_short: self.flops_per_token(0),
            flops_full_ctx: self.flops_per_token(self.n_ctx_train),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::presets;

    fn preset(id: &str) -> crate::Config {
        presets().into_iter().find(|p| p.id == id).unwrap().config
    }

    #[test]
    fn figures_of_published_shapes() {
        // LLaMA 2 7B: 32 layers, 32 heads of 128, no GQA: 2·32·32·128·2 bytes = 512 KiB/token.
        let f = preset("llama2-7b").figures();
        assert_eq!(f.attention, "MHA");
        assert_eq!(f.kv_bytes_per_token, 512 * 1024);
        assert_eq!(f.weights_f16, 2.0 * f.params as f64);
        assert_eq!(f.weights_q8_0, 34.0 / 32.0 * f.params as f64);
        // Llama 3 8B: 32 query heads over 8 kv heads: a quarter of that cache.
        let g = preset("llama3-8b").figures();
        assert_eq!(g.attention, "GQA 4:1");
        assert_eq!(g.kv_bytes_per_token, 128 * 1024);
        // Llama 3.1 8B at Q4_K_M: llama.cpp's tools/quantize/README.md table says 4.58 GiB.
        let q4 = preset("llama3.1-8b").figures().weights_q4_k_m / (1u64 << 30) as f64;
        assert!((q4 - 4.58).abs() < 0.01, "{q4}");
        // The attention term grows with the context: more FLOPs at the end than the start.
        assert!(g.flops_full_ctx > g.flops_short);
        let mut mqa = preset("llama2-7b");
        mqa.n_kv_heads = 1;
        assert_eq!(mqa.attention_kind(), "MQA");
    }
}
