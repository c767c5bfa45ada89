//! The Llama forward pass, top to bottom, in the order of the paper.
//!
//! Notation for buffer shapes: `B` tokens in the current batch, `d` = d_model, `q` = n_heads ·
//! head_dim, `kv` = n_kv_heads · head_dim, `ff` = d_ff, `V` = n_vocab, `C` = context length.
//! A batched prompt pass and token-by-token decoding run the same code with `B` ≥ 1 and give the
//! same logits bit for bit: the kernels compute each row of a batch as they would alone.

use std::path::Path;

use camelid_kernels::Kernels;
use camelid_kernels::ops::{AttnShape, rmsnorm, rope, silu_mul};

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
pub const MAX_BATCH: usize = 256;

/// The KV cache and activation buffers of one sequence, allocated once.
pub struct State {
    pub n_ctx: usize,
    /// Tokens already in the cache.
    pub pos: usize,
    /// `[n_layers, C, kv]`
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    act: Activations,
}

/// The buffers of one batch of rows; a multi-sequence batch borrows the first state's.
#[derive(Default)]
struct Activations {
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
    /// `[R, V]` for the `R` rows whose logits were asked for, in batch order (`[1, V]` until a
    /// caller asks for more)
    logits: Vec<f32>,
    /// `[B]` what each row of the batch is
    rows: Vec<Row>,
}

/// One token of a batch: which sequence it extends, at which position, and whether its logits
/// are wanted.
#[derive(Clone, Copy, Default)]
struct Row {
    seq: usize,
    pos: usize,
    token: u32,
    logits: bool,
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

    /// A fresh state holding up to `n_ctx` tokens. Its batch buffers grow with the largest batch
    /// it runs (at most [`MAX_BATCH`] rows), so a state that only ever lends its cache to a
    /// multi-sequence batch, or decodes one token at a time, costs little beyond its cache.
    pub fn new_state(&self, n_ctx: usize) -> State {
        let c = &self.config;
        let cache = c.n_layers * n_ctx * c.kv_dim();
        State {
            n_ctx,
            pos: 0,
            k_cache: vec![0.0; cache],
            v_cache: vec![0.0; cache],
            act: Activations {
                logits: vec![0.0; c.n_vocab],
                ..Activations::default()
            },
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
        self.check(state, tokens)?;
        // The batch buffers leave the state for the pass (a move, no copy) so that the state's
        // cache can be borrowed beside them.
        let mut act = std::mem::take(&mut state.act);
        if all {
            // Grown once, on the first request for every position's logits.
            let need = MAX_BATCH.min(tokens.len()) * n_vocab;
            if act.logits.len() < need {
                act.logits.resize(need, 0.0);
            }
        }
        let mut done = 0;
        for chunk in tokens.chunks(MAX_BATCH) {
            let last_chunk = done + chunk.len() == tokens.len();
            act.rows.clear();
            act.rows
                .extend(chunk.iter().enumerate().map(|(i, &token)| Row {
                    seq: 0,
                    pos: state.pos + i,
                    token,
                    logits: all || (last_chunk && i + 1 == chunk.len()),
                }));
            self.forward_rows(&mut act, std::slice::from_mut(&mut &mut *state));
            let v = n_vocab;
            if all {
                for i in 0..chunk.len() {
                    on_logits(done + i, &act.logits[i * v..][..v]);
                }
            } else if last_chunk {
                on_logits(tokens.len() - 1, &act.logits[..v]);
            }
            done += chunk.len();
        }
        state.act = act;
        Ok(())
    }

    /// Runs several sequences in one pass over the weights: `tokens[i]` is appended to
    /// `states[i]` at its positions `states[i].pos..`, and `on_logits(i, logits)` is called with
    /// the logits of the last token of every non-empty `tokens[i]`, in order of `i`.
    ///
    /// This is continuous batching's decoding step (one token per sequence), and it may mix in
    /// prompt chunks. Every sequence sees only its own cache, so each gets the logits it would
    /// get alone, bit for bit. The batch buffers of `states[0]` serve the whole
    /// batch; more than [`MAX_BATCH`] tokens in all run as several passes.
    ///
    /// # Panics
    /// If `states` and `tokens` differ in length.
    pub fn forward_seqs(
        &self,
        states: &mut [&mut State],
        tokens: &[&[u32]],
        mut on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        assert_eq!(states.len(), tokens.len(), "one token slice per state");
        for (s, t) in states.iter().zip(tokens) {
            self.check(s, t)?;
        }
        let Some(first) = states.first_mut() else {
            return Ok(());
        };
        let v = self.config.n_vocab;
        let mut act = std::mem::take(&mut first.act);
        let n_seqs = tokens.iter().filter(|t| !t.is_empty()).count();
        let need = MAX_BATCH.min(n_seqs) * v;
        if act.logits.len() < need {
            act.logits.resize(need, 0.0);
        }
        act.rows.clear();
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        let mut row = 0;
        for (seq, toks) in tokens.iter().enumerate() {
            let pos0 = states[seq].pos;
            for (i, &token) in toks.iter().enumerate() {
                act.rows.push(Row {
                    seq,
                    pos: pos0 + i,
                    token,
                    logits: i + 1 == toks.len(),
                });
                row += 1;
                // A full batch, or the very last token: run what is gathered.
                if act.rows.len() == MAX_BATCH || row == total {
                    self.forward_rows(&mut act, states);
                    let wanted = act.rows.iter().filter(|r| r.logits);
                    for (k, r) in wanted.enumerate() {
                        on_logits(r.seq, &act.logits[k * v..][..v]);
                    }
                    act.rows.clear();
                }
            }
        }
        states[0].act = act;
        Ok(())
    }

    /// The checks that keep the pass free of errors: ids in the vocabulary, room in the cache.
    fn check(&self, state: &State, tokens: &[u32]) -> Result<(), ModelError> {
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
        Ok(())
    }

    /// One batch of at most `MAX_BATCH` rows (`a.rows`), each extending `seqs[row.seq]` at
    /// `row.pos`; a sequence's rows come in order of position. Fills `a.logits` with the logits
    /// of the rows that want them, in batch order, and advances each sequence's `pos`.
    fn forward_rows(&self, a: &mut Activations, seqs: &mut [&mut State]) {
        let c = &self.config;
        let w = &self.weights;
        let (b, d, qd, kvd, ff) = (a.rows.len(), c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        for (buf, width) in [
            (&mut a.x, d),
            (&mut a.xn, d),
            (&mut a.q, qd),
            (&mut a.k, kvd),
            (&mut a.v, kvd),
            (&mut a.att, qd),
            (&mut a.proj, d),
            (&mut a.gate, ff),
            (&mut a.up, ff),
        ] {
            if buf.len() < b * width {
                buf.resize(b * width, 0.0);
            }
        }
        let hd = c.head_dim;
        let th = self.threads;
        let kern = &self.kernels;
        let shape = AttnShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };

        // Embedding lookup: x[t] = token_embd[token t].  x: [B, d]
        for (t, r) in a.rows.iter().enumerate() {
            w.token_embd
                .view()
                .dequantize_row_into(r.token as usize, &mut a.x[t * d..][..d]);
        }

        for (l, layer) in w.layers.iter().enumerate() {
            // Attention block: xn = rms(x); q, k, v projections.  [B, d] -> [B, q], [B, kv]
            for t in 0..b {
                rmsnorm(
                    &mut a.xn[t * d..][..d],
                    &a.x[t * d..][..d],
                    &layer.attn_norm,
                    c.norm_eps,
                );
            }
            let xn = &a.xn[..b * d];
            kern.matmul(&layer.wq.view(), xn, &mut a.q[..b * qd], th);
            kern.matmul(&layer.wk.view(), xn, &mut a.k[..b * kvd], th);
            kern.matmul(&layer.wv.view(), xn, &mut a.v[..b * kvd], th);

            // RoPE on q and k, then k and v go into their sequence's cache at their positions.
            // Cache layout per sequence: [n_layers, C, kv].
            for (t, r) in a.rows.iter().enumerate() {
                let s = &mut *seqs[r.seq];
                rope(&mut a.q[t * qd..][..qd], hd, r.pos, &self.inv_freq);
                rope(&mut a.k[t * kvd..][..kvd], hd, r.pos, &self.inv_freq);
                let at = (l * s.n_ctx + r.pos) * kvd;
                s.k_cache[at..][..kvd].copy_from_slice(&a.k[t * kvd..][..kvd]);
                s.v_cache[at..][..kvd].copy_from_slice(&a.v[t * kvd..][..kvd]);
            }

            // Causal attention: a row sees its own sequence's positions 0..=pos.  att: [B, q]
            let seqs_ref: &[&mut State] = seqs;
            kern.attention_rows(&mut a.att[..b * qd], &a.q[..b * qd], shape, th, |t| {
                let r = &a.rows[t];
                let s = &*seqs_ref[r.seq];
                let layer_cache = l * s.n_ctx * kvd..(l + 1) * s.n_ctx * kvd;
                (
                    &s.k_cache[layer_cache.clone()],
                    &s.v_cache[layer_cache],
                    r.pos + 1,
                )
            });

            // Output projection and residual: x += Wo · att.
            kern.matmul(&layer.wo.view(), &a.att[..b * qd], &mut a.proj[..b * d], th);
            add(&mut a.x[..b * d], &a.proj[..b * d]);

            // Feed-forward block: x += W2 · (silu(W1 · rms(x)) ⊙ (W3 · rms(x))).
            for t in 0..b {
                rmsnorm(
                    &mut a.xn[t * d..][..d],
                    &a.x[t * d..][..d],
                    &layer.ffn_norm,
                    c.norm_eps,
                );
            }
            let xn = &a.xn[..b * d];
            kern.matmul(&layer.w_gate.view(), xn, &mut a.gate[..b * ff], th);
            kern.matmul(&layer.w_up.view(), xn, &mut a.up[..b * ff], th);
            silu_mul(&mut a.gate[..b * ff], &a.up[..b * ff]);
            kern.matmul(
                &layer.w_down.view(),
                &a.gate[..b * ff],
                &mut a.proj[..b * d],
                th,
            );
            add(&mut a.x[..b * d], &a.proj[..b * d]);
        }
        for r in &a.rows {
            seqs[r.seq].pos = r.pos + 1;
        }

        // Final norm and output projection for the rows that want logits.  logits: [R, V]
        let mut n = 0;
        for (t, r) in a.rows.iter().enumerate() {
            if r.logits {
                rmsnorm(
                    &mut a.xn[n * d..][..d],
                    &a.x[t * d..][..d],
                    &w.output_norm,
                    c.norm_eps,
                );
                n += 1;
            }
        }
        if n > 0 {
            kern.matmul(
                &w.output().view(),
                &a.xn[..n * d],
                &mut a.logits[..n * c.n_vocab],
                th,
            );
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
