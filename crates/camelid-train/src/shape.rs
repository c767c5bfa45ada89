//! Model shapes to train: presets, the three Llama generations' architecture choices, and the
//! memory a run takes.
//!
//! A shape is a preset's widths and depth; the generation (`Arch`) decides what the Llama papers
//! changed between generations (../shared/LLAMA.md): the norm eps, RoPE θ, grouped-query
//! attention and the tokenizer family. Explicit values override both.

use camelid_model::Config;
use camelid_model::config::RopeScaling;

/// A Llama generation's architecture choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA 1: MHA, eps 1e-6, θ 1e4, the SentencePiece vocabulary.
    Llama1,
    /// Llama 2 (7B/13B): MHA, eps 1e-5, θ 1e4, the SentencePiece vocabulary.
    Llama2,
    /// Llama 3: GQA with 4 query heads per kv head (8B: 32/8), eps 1e-5, θ 5e5, the byte-level
    /// BPE vocabulary.
    Llama3,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s.to_ascii_lowercase().as_str() {
            "llama1" | "llama" => Some(Arch::Llama1),
            "llama2" => Some(Arch::Llama2),
            "llama3" => Some(Arch::Llama3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama1 => "llama1",
            Arch::Llama2 => "llama2",
            Arch::Llama3 => "llama3",
        }
    }

    pub fn norm_eps(self) -> f32 {
        if self == Arch::Llama1 { 1e-6 } else { 1e-5 }
    }

    pub fn rope_theta(self) -> f32 {
        if self == Arch::Llama3 { 5e5 } else { 1e4 }
    }

    /// Query heads per kv head.
    pub fn gqa_group(self) -> usize {
        if self == Arch::Llama3 { 4 } else { 1 }
    }

    /// Whether the tokenizer family is Llama 3's byte-level BPE (else SentencePiece).
    pub fn byte_level_bpe(self) -> bool {
        self == Arch::Llama3
    }
}

/// A model shape to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    pub id: &'static str,
    pub what: &'static str,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub ctx: usize,
    /// The generation it is a scaled-down copy of, which `--arch` defaults to.
    pub arch: Option<Arch>,
}

/// The presets: llama2.c's TinyStories shapes (karpathy/llama2.c README, "Models" table: dim,
/// n_layers, n_heads, max context; FFN width by Meta's rule with multiple_of 32), two smaller
/// ones, and each generation's 7B/8B shape scaled down (width /16, depth /8, its FFN ratio and
/// GQA kept).
pub const PRESETS: [Preset; 8] = [
    Preset {
        id: "tiny",
        what: "a model that learns Shakespeare in minutes on two cores",
        d_model: 128,
        n_layers: 4,
        n_heads: 4,
        d_ff: 352,
        ctx: 128,
        arch: None,
    },
    Preset {
        id: "small",
        what: "twice tiny's width, 6 layers",
        d_model: 256,
        n_layers: 6,
        n_heads: 8,
        d_ff: 704,
        ctx: 256,
        arch: None,
    },
    Preset {
        id: "stories15m",
        what: "llama2.c's stories15M shape",
        d_model: 288,
        n_layers: 6,
        n_heads: 6,
        d_ff: 768,
        ctx: 256,
        arch: None,
    },
    Preset {
        id: "stories42m",
        what: "llama2.c's stories42M shape",
        d_model: 512,
        n_layers: 8,
        n_heads: 8,
        d_ff: 1376,
        ctx: 1024,
        arch: None,
    },
    Preset {
        id: "stories110m",
        what: "llama2.c's stories110M shape",
        d_model: 768,
        n_layers: 12,
        n_heads: 12,
        d_ff: 2048,
        ctx: 1024,
        arch: None,
    },
    Preset {
        id: "llama1-mini",
        what: "LLaMA 7B /16 wide, /8 deep: MHA, FFN 2.69·d (11008/4096)",
        d_model: 256,
        n_layers: 4,
        n_heads: 2,
        d_ff: 688,
        ctx: 256,
        arch: Some(Arch::Llama1),
    },
    Preset {
        id: "llama2-mini",
        what: "Llama 2 7B /16 wide, /8 deep: MHA, FFN 2.69·d, eps 1e-5",
        d_model: 256,
        n_layers: 4,
        n_heads: 2,
        d_ff: 688,
        ctx: 512,
        arch: Some(Arch::Llama2),
    },
    Preset {
        id: "llama3-mini",
        what: "Llama 3 8B /16 wide, /8 deep: 8 query heads on 2 kv heads, FFN 3.5·d, θ 5e5",
        d_model: 256,
        n_layers: 4,
        n_heads: 8,
        d_ff: 896,
        ctx: 512,
        arch: Some(Arch::Llama3),
    },
];

pub fn preset(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id.eq_ignore_ascii_case(id))
}

/// The presets, the initialisation, the optimizer and the output as `camelid train --help` tells
/// them.
pub const PRESET_HELP: &str = "Presets (--preset; each value can be overridden):
  tiny          d 128, 4 layers, 4 heads, FFN 352, ctx 128: Shakespeare in minutes on two cores
  small         d 256, 6 layers, 8 heads, FFN 704, ctx 256
  stories15m    d 288, 6 layers, 6 heads, FFN 768, ctx 256   (llama2.c's stories15M)
  stories42m    d 512, 8 layers, 8 heads, FFN 1376, ctx 1024 (llama2.c's stories42M)
  stories110m   d 768, 12 layers, 12 heads, FFN 2048, ctx 1024 (llama2.c's stories110M)
  llama1-mini   LLaMA 7B scaled down (width /16, depth /8): d 256, 4 layers, 2 heads of 128, MHA,
                FFN 688 (7B's 2.69·d), eps 1e-6, θ 1e4
  llama2-mini   the same shape as Llama 2 7B scaled down: eps 1e-5, ctx 512
  llama3-mini   Llama 3 8B scaled down: d 256, 4 layers, 8 query heads on 2 kv heads, FFN 896
                (8B's 3.5·d), θ 5e5, the 128K vocabulary
Initialisation: N(0, 0.02²) for the embedding and projections, N(0, (0.02/√(2·layers))²) for
o_proj and down_proj (GPT-2's depth scaling of residual outputs), norm gains 1.
Optimizer: AdamW β 0.9/0.95, ε 1e-5, clipping at global norm 1.0, linear warmup then cosine
decay to --min-lr-ratio of --lr (the LLaMA paper's recipe).
Output: DIR/config.json + model.safetensors + tokenizer files (a Hugging Face folder: `camelid
run -m DIR`, transformers' from_pretrained), optimizer.safetensors + train_state.json (--resume),
log.jsonl (step, lr, loss, bpb, grad_norm, tokens_per_s, val_loss, val_bpb), loss.svg (train and
validation in bits per byte against the step).";

/// Values given explicitly, each overriding the preset's or the generation's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub d_model: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub n_kv_heads: Option<usize>,
    pub d_ff: Option<usize>,
    pub n_vocab: Option<usize>,
    pub ctx: Option<usize>,
    pub tied: bool,
}

/// The model config of a preset under a generation, with overrides, for a tokenizer of
/// `tokenizer_vocab` tokens. The message of an error names the option at fault.
pub fn model_config(
    p: &Preset,
    arch: Arch,
    o: &Overrides,
    tokenizer_vocab: usize,
) -> Result<Config, String> {
    let d = o.d_model.unwrap_or(p.d_model);
    let heads = o.n_heads.unwrap_or(p.n_heads);
    if heads == 0 || d == 0 || !d.is_multiple_of(heads) {
        return Err(format!("--heads {heads} must divide --dim {d}"));
    }
    let kv = match o.n_kv_heads {
        Some(kv) => kv,
        None if heads.is_multiple_of(arch.gqa_group()) => heads / arch.gqa_group(),
        None => heads,
    };
    if kv == 0 || !heads.is_multiple_of(kv) {
        return Err(format!("--kv-heads {kv} must divide --heads {heads}"));
    }
    let n_vocab = o.n_vocab.unwrap_or(tokenizer_vocab);
    if n_vocab < tokenizer_vocab {
        return Err(format!(
            "--vocab {n_vocab} is smaller than the tokenizer's {tokenizer_vocab} tokens"
        ));
    }
    let ctx = o.ctx.unwrap_or(p.ctx);
    let c = Config {
        n_vocab,
        d_model: d,
        n_layers: o.n_layers.unwrap_or(p.n_layers),
        n_heads: heads,
        n_kv_heads: kv,
        head_dim: d / heads,
        d_ff: o.d_ff.unwrap_or(p.d_ff),
        norm_eps: arch.norm_eps(),
        rope_theta: arch.rope_theta(),
        rope_scaling: RopeScaling::None,
        n_ctx_train: ctx,
        tied_embeddings: o.tied,
    };
    c.validate()
        .map_err(|e| format!("not a valid model: {e}"))?;
    Ok(c)
}

/// The memory a run takes, in bytes, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub weights: u64,
    pub grads: u64,
    /// AdamW's two moments.
    pub moments: u64,
    /// The training workspace: saved activations of a micro-batch and the backward pass's
    /// buffers (`grad::Workspace::bytes`).
    pub activations: u64,
    /// The token shards, memory-mapped (all their pages once touched).
    pub shards: u64,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.weights + self.grads + self.moments + self.activations + self.shards
    }
}

/// The memory of training `c`: the parameters, their gradients and two moments (f32 each),
/// `activation_bytes` of training workspace (`grad::Workspace::bytes`: saved activations and the
/// backward pass's buffers for a micro-batch) and `shard_bytes` of memory-mapped token shards.
pub fn memory(c: &Config, activation_bytes: u64, shard_bytes: u64) -> Memory {
    let p = c.n_params();
    Memory {
        weights: 4 * p,
        grads: 4 * p,
        moments: 8 * p,
        activations: activation_bytes,
        shards: shard_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help lists every preset, each at the start of its line, so the two cannot drift apart.
    #[test]
    fn the_help_lists_every_preset() {
        for p in PRESETS {
            let line = format!("\n  {} ", p.id);
            assert!(PRESET_HELP.contains(&line), "{} is missing", p.id);
        }
        let listed = PRESET_HELP
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "));
        assert_eq!(listed.count(), PRESETS.len());
    }
}
