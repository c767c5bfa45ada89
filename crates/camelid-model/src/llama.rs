//! The Llama forward pass, top to bottom, in the order of the paper.
//!
//! Notation for buffer shapes: `B` tokens in the current batch, `d` = d_model, `q` = n_heads ·
//! head_dim, `kv` = n_kv_heads · head_dim, `ff` = d_ff, `V` = n_vocab, `C` = context length.
//! A batched prompt pass and token-by-token decoding run the same code with `B` ≥ 1 and give the
//! same logits up to the order of additions.

use std::path::Path;

use camelid_kernels::Kernels;
use camelid_kernels::ops::{AttnShape, attention, rmsnorm, rope, silu_mul};

use crate::config::Config;
use crate::error::ModelError;
use crate::weights::{Checkpoint, Weights};

/// A loaded model: config, weights and the RoPE frequencies derived from them.
pub struct Model {
    pub config: Config,
    pub weights: Weights,
    /// `[head_dim / 2]`
    inv_freq: Vec<f32>,
    pub threads: usize,
    /// Kernel table, precision of quantized products, and the compute thread pool.
    pub kernels: Kernels,
}

/// Tokens processed per batch of the prompt pass; bounds the activation buffers.
pub const MAX_BATCH: usize = 64;

/// The KV cache and activation buffers of one sequence, allocated once.
pub struct State {
    pub n_ctx: usize,
    /// Tokens already in the cache.
    pub pos: usize,
    /// `[n_layers, C, kv]`
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    /// `[B, d]` residual stream, normed input
    x: Vec<f32>,
    xn: Vec<f32>,
    /// `[B, q]`, `[B, kv]`, `[B, kv]`, `[B, q]`
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    /// `[B, d]` output of a projection before the residual add
    proj: Vec<f32>,
    /// `[B, ff]`
    gate: Vec<f32>,
    up: Vec<f32>,
    /// `[C]` attention scores of one head
    scores: Vec<f32>,
    /// `[B, V]` when every position's logits were asked for, else `[1, V]`
    logits: Vec<f32>,
}

impl Model {
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        Model::from_checkpoint(Checkpoint::open(path)?)
    }

    pub fn from_checkpoint(ckpt: Checkpoint) -> Result<Model, ModelError> {
        let weights = ckpt.load_weights()?;
        Ok(Model::new(ckpt.config, weights))
    }

    pub fn new(config: Config, weights: Weights) -> Model {
        let mut inv_freq = config.rope_inv_freq();
        // A GGUF `rope_freqs` tensor holds the per-pair divisors of the scaled frequencies.
        if let Some(div) = &weights.rope_freqs {
            for (f, d) in inv_freq.iter_mut().zip(div) {
                *f /= d;
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Model {
            config,
            weights,
            inv_freq,
            threads,
            kernels: Kernels::new(threads),
        }
    }

    /// A fresh state holding up to `n_ctx` tokens.
    pub fn new_state(&self, n_ctx: usize) -> State {
        let c = &self.config;
        let b = MAX_BATCH;
        let cache = c.n_layers * n_ctx * c.kv_dim();
        State {
            n_ctx,
            pos: 0,
            k_cache: vec![0.0; cache],
            v_cache: vec![0.0; cache],
            x: vec![0.0; b * c.d_model],
            xn: vec![0.0; b * c.d_model],
            q: vec![0.0; b * c.q_dim()],
            k: vec![0.0; b * c.kv_dim()],
            v: vec![0.0; b * c.kv_dim()],
            att: vec![0.0; b * c.q_dim()],
            proj: vec![0.0; b * c.d_model],
            gate: vec![0.0; b * c.d_ff],
            up: vec![0.0; b * c.d_ff],
            scores: vec![0.0; n_ctx],
            logits: vec![0.0; c.n_vocab],
        }
    }

    /// Runs `tokens` at positions `state.pos..` and appends them to the cache.
    ///
    /// Calls `on_logits(i, logits)` for token `i` of `tokens` when `all` is set, else only for
    /// the last one.
    pub fn forward(
        &self,
        state: &mut State,
        tokens: &[u32],
        all: bool,
        mut on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        let n_vocab = self.config.n_vocab;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ModelError::TokenOutOfRange { token, n_vocab });
        }
        if state.pos + tokens.len() > state.n_ctx {
            return Err(ModelError::ContextFull {
                n_tokens: tokens.len(),
                pos: state.pos,
                n_ctx: state.n_ctx,
            });
        }
        if all {
            // Grown once, on the first request for every position's logits.
            let need = MAX_BATCH.min(tokens.len()) * n_vocab;
            if state.logits.len() < need {
                state.logits.resize(need, 0.0);
            }
        }
        let mut done = 0;
        for chunk in tokens.chunks(MAX_BATCH) {
            let last_chunk = done + chunk.len() == tokens.len();
            let want = match (all, last_chunk) {
                (true, _) => Want::All,
                (false, true) => Want::Last,
                (false, false) => Want::None,
            };
            self.forward_batch(state, chunk, want);
            let v = n_vocab;
            if all {
                for i in 0..chunk.len() {
                    on_logits(done + i, &state.logits[i * v..][..v]);
                }
            } else if last_chunk {
                on_logits(tokens.len() - 1, &state.logits[..v]);
            }
            done += chunk.len();
        }
        Ok(())
    }

    /// One batch of at most `MAX_BATCH` tokens; fills `state.logits` for every token, or for the
    /// last one at row 0, as `want` says.
    fn forward_batch(&self, s: &mut State, tokens: &[u32], want: Want) {
        let c = &self.config;
        let w = &self.weights;
        let (b, d, qd, kvd, ff) = (tokens.len(), c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        let hd = c.head_dim;
        let th = self.threads;
        let kern = &self.kernels;
        let pos0 = s.pos;
        let shape = AttnShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };

        // Embedding lookup: x[t] = token_embd[token t].  x: [B, d]
        for (t, &tok) in tokens.iter().enumerate() {
            w.token_embd
                .view()
                .dequantize_row_into(tok as usize, &mut s.x[t * d..][..d]);
        }

        for (l, layer) in w.layers.iter().enumerate() {
            // Attention block: xn = rms(x); q, k, v projections.  [B, d] -> [B, q], [B, kv]
            for t in 0..b {
                rmsnorm(
                    &mut s.xn[t * d..][..d],
                    &s.x[t * d..][..d],
                    &layer.attn_norm,
                    c.norm_eps,
                );
            }
            let xn = &s.xn[..b * d];
            kern.matmul(&layer.wq.view(), xn, &mut s.q[..b * qd], th);
            kern.matmul(&layer.wk.view(), xn, &mut s.k[..b * kvd], th);
            kern.matmul(&layer.wv.view(), xn, &mut s.v[..b * kvd], th);

            // RoPE on q and k, then k and v go into the cache at their positions.
            let cache = &mut s.k_cache[l * s.n_ctx * kvd..][..s.n_ctx * kvd];
            let vcache = &mut s.v_cache[l * s.n_ctx * kvd..][..s.n_ctx * kvd];
            for t in 0..b {
                let pos = pos0 + t;
                rope(&mut s.q[t * qd..][..qd], hd, pos, &self.inv_freq);
                rope(&mut s.k[t * kvd..][..kvd], hd, pos, &self.inv_freq);
                cache[pos * kvd..][..kvd].copy_from_slice(&s.k[t * kvd..][..kvd]);
                vcache[pos * kvd..][..kvd].copy_from_slice(&s.v[t * kvd..][..kvd]);
            }

            // Causal attention: token t sees positions 0..=pos0 + t.  att: [B, q]
            for t in 0..b {
                let n_past = pos0 + t + 1;
                attention(
                    &mut s.att[t * qd..][..qd],
                    &s.q[t * qd..][..qd],
                    cache,
                    vcache,
                    n_past,
                    shape,
                    &mut s.scores,
                );
            }

            // Output projection and residual: x += Wo · att.
            kern.matmul(&layer.wo.view(), &s.att[..b * qd], &mut s.proj[..b * d], th);
            add(&mut s.x[..b * d], &s.proj[..b * d]);

            // Feed-forward block: x += W2 · (silu(W1 · rms(x)) ⊙ (W3 · rms(x))).
            for t in 0..b {
                rmsnorm(
                    &mut s.xn[t * d..][..d],
                    &s.x[t * d..][..d],
                    &layer.ffn_norm,
                    c.norm_eps,
                );
            }
            let xn = &s.xn[..b * d];
            kern.matmul(&layer.w_gate.view(), xn, &mut s.gate[..b * ff], th);
            kern.matmul(&layer.w_up.view(), xn, &mut s.up[..b * ff], th);
            silu_mul(&mut s.gate[..b * ff], &s.up[..b * ff]);
            kern.matmul(
                &layer.w_down.view(),
                &s.gate[..b * ff],
                &mut s.proj[..b * d],
                th,
            );
            add(&mut s.x[..b * d], &s.proj[..b * d]);
        }
        s.pos += b;

        // Final norm and output projection, for all tokens or only the last.  logits: [B, V]
        let rows = match want {
            Want::None => return,
            Want::All => 0..b,
            Want::Last => b - 1..b,
        };
        let n = rows.len();
        for (i, t) in rows.enumerate() {
            rmsnorm(
                &mut s.xn[i * d..][..d],
                &s.x[t * d..][..d],
                &w.output_norm,
                c.norm_eps,
            );
        }
        kern.matmul(
            &w.output().view(),
            &s.xn[..n * d],
            &mut s.logits[..n * c.n_vocab],
            th,
        );
    }
}

/// Which logits a batch computes.
#[derive(Clone, Copy)]
enum Want {
    None,
    Last,
    All,
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
