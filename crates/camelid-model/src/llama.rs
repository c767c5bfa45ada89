//! The Llama forward pass, top to bottom, in the order of the paper.
//!
//! Notation for buffer shapes: `B` tokens in the current batch, `d` = d_model, `q` = n_heads ·
//! head_dim, `kv` = n_kv_heads · head_dim, `ff` = d_ff, `V` = n_vocab, `C` = context length.
//! A batched prompt pass and token-by-token decoding run the same code with `B` ≥ 1 and give the
//! same logits bit for bit: the kernels compute each row of a batch as they would alone.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use camelid_kernels::Precision;

use crate::backend::{Backend, Buf, CacheType, DeviceInfo, KvCache, Mat, Norm, Ops, Out, Row};
use crate::config::Config;
use crate::cpu::CpuBackend;
use crate::error::ModelError;
use crate::weights::{Checkpoint, Weights};

/// A loaded model: its config and the backend that holds its weights and runs it.
pub struct Model {
    pub config: Config,
    backend: Box<dyn Backend>,
    /// Tells this model's states from another's.
    id: u64,
}

/// Tokens processed per batch of the prompt pass; bounds the activation buffers.
pub const MAX_BATCH: usize = 256;

/// One sequence: its KV cache, in the backend's memory, and how far it is filled.
pub struct State {
    pub n_ctx: usize,
    /// Tokens already in the cache.
    pub pos: usize,
    cache: Box<dyn KvCache>,
    /// The model that made the cache.
    model: u64,
    /// `[R, V]` logits of the rows that asked for them (`[1, V]` until a caller asks for more);
    /// a multi-sequence batch uses the first state's.
    logits: Vec<f32>,
    /// `[H, d]` hidden states of the rows that asked for them (empty until a caller asks);
    /// a multi-sequence batch uses the first state's.
    hidden: Vec<f32>,
    /// `[T]` greedy tokens of the rows that asked for them (empty until a caller asks); a
    /// multi-sequence batch uses the first state's.
    picked: Vec<u32>,
    /// `[B]` what each row of the batch being formed is
    rows: Vec<Row>,
}

/// What a sequence of a batch wants back from the tokens it is given
/// ([`Model::forward_batch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// The logits of its last token: generation.
    Logits,
    /// The final hidden state of every token: embeddings.
    Hidden,
    /// The greedy next token after its last token ([`crate::backend::greedy_token`] of its
    /// logits): greedy generation, which then needs no logits from the device.
    Token,
    /// The greedy next token after each of its tokens, in order: checking a greedy
    /// speculative draft.
    Tokens,
    /// The logits of each of its tokens, in order: checking a sampled speculative draft.
    AllLogits,
}

/// What a sequence of a pass gives back for its last token ([`Model::forward_batch_rows`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next<'a> {
    /// Its logits ([`Want::Logits`]).
    Logits(&'a [f32]),
    /// Its greedy next token ([`Want::Token`]).
    Token(u32),
}

/// The RoPE frequencies of a model, `[head_dim / 2]`: the config's (with the Llama 3.1
/// scaling), divided by a GGUF `rope_freqs` tensor's per-pair divisors where the file has one.
pub fn rope_inv_freq(config: &Config, weights: &Weights) -> Vec<f32> {
    let mut inv_freq = config.rope_inv_freq();
    if let Some(div) = &weights.rope_freqs {
        for (f, d) in inv_freq.iter_mut().zip(div) {
            *f /= d;
        }
    }
    inv_freq
}

impl Model {
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        Model::from_checkpoint(Checkpoint::open(path)?)
    }

    pub fn from_checkpoint(ckpt: Checkpoint) -> Result<Model, ModelError> {
        let weights = ckpt.load_weights()?;
        Ok(Model::new(ckpt.config, weights))
    }

    /// The model on the CPU backend.
    pub fn new(config: Config, weights: Weights) -> Model {
        let inv_freq = rope_inv_freq(&config, &weights);
        let cpu = CpuBackend::new(config.clone(), weights, inv_freq);
        Model::with_backend(config, Box::new(cpu))
    }

    /// The model on a backend that already holds its weights.
    pub fn with_backend(config: Config, backend: Box<dyn Backend>) -> Model {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Model {
            config,
            backend,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// What the model runs on.
    pub fn device(&self) -> DeviceInfo {
        self.backend.info()
    }

    pub fn precision(&self) -> Precision {
        self.backend.precision()
    }

    /// Sets the precision of products with quantized weights.
    pub fn set_precision(&mut self, precision: Precision) {
        self.backend.set_precision(precision);
    }

    /// What the KV caches of states made from now on hold.
    pub fn cache_type(&self) -> CacheType {
        self.backend.cache_type()
    }

    /// Sets what the KV caches of states made from now on hold (states made before keep
    /// theirs); fails where the backend has no such cache.
    pub fn set_cache_type(&mut self, t: CacheType) -> Result<(), ModelError> {
        self.backend.set_cache_type(t)
    }

    pub fn threads(&self) -> usize {
        self.backend.threads()
    }

    /// Sets the compute threads (at least 1) of a backend that computes on the host.
    pub fn set_threads(&mut self, threads: usize) {
        self.backend.set_threads(threads);
    }

    /// A fresh state holding up to `n_ctx` tokens, its cache in the backend's memory. Fails when
    /// that memory cannot hold it.
    pub fn new_state(&self, n_ctx: usize) -> Result<State, ModelError> {
        Ok(State {
            n_ctx,
            pos: 0,
            cache: self.backend.new_cache(n_ctx)?,
            model: self.id,
            logits: vec![0.0; self.config.n_vocab],
            hidden: Vec::new(),
            picked: Vec::new(),
            rows: Vec::new(),
        })
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
        let v = self.config.n_vocab;
        self.run(state, tokens, all, |first, rows| {
            for (i, row) in rows.chunks_exact(v).enumerate() {
                on_logits(first + i, row);
            }
        })
    }

    /// [`Model::forward`] with every token's logits, a pass at a time: `on_rows(first, rows)`
    /// with the `[n, V]` logits of tokens `first..first + n` (`n` at most [`MAX_BATCH`]), so
    /// that the caller can share its work on them out over threads.
    pub fn forward_batches(
        &self,
        state: &mut State,
        tokens: &[u32],
        on_rows: impl FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        self.run(state, tokens, true, on_rows)
    }

    /// The passes of [`Model::forward`]: `on_rows(first, rows)` after each pass with the logits
    /// of its rows (`all`), or once with the last token's.
    fn run(
        &self,
        state: &mut State,
        tokens: &[u32],
        all: bool,
        mut on_rows: impl FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        let v = self.config.n_vocab;
        self.check(state, tokens)?;
        // The row list and logits leave the state for the pass (a move, no copy) so that the
        // state's cache can be lent beside them.
        let mut rows = std::mem::take(&mut state.rows);
        let mut logits = std::mem::take(&mut state.logits);
        if all {
            // Grown once, on the first request for every position's logits.
            let need = MAX_BATCH.min(tokens.len()) * v;
            if logits.len() < need {
                logits.resize(need, 0.0);
            }
        }
        let mut done = 0;
        let mut result = Ok(());
        for chunk in tokens.chunks(MAX_BATCH) {
            let last_chunk = done + chunk.len() == tokens.len();
            rows.clear();
            rows.extend(chunk.iter().enumerate().map(|(i, &token)| Row {
                seq: 0,
                pos: state.pos + i,
                token,
                out: if all || (last_chunk && i + 1 == chunk.len()) {
                    Out::Logits
                } else {
                    Out::None
                },
            }));
            result = self.backend.forward(
                &rows,
                &mut [&mut *state.cache],
                &mut logits,
                &mut [],
                &mut [],
            );
            if result.is_err() {
                break;
            }
            state.pos += chunk.len();
            if all {
                on_rows(done, &logits[..chunk.len() * v]);
            } else if last_chunk {
                on_rows(tokens.len() - 1, &logits[..v]);
            }
            done += chunk.len();
        }
        state.rows = rows;
        state.logits = logits;
        result
    }

    /// Runs `tokens` at positions `state.pos..`, appends them to the cache, and calls
    /// `on_hidden(pos, hidden)` with the final hidden state (`[d]`, after the final RMSNorm) of
    /// every token, in order: what embeddings pool.
    pub fn hidden(
        &self,
        state: &mut State,
        tokens: &[u32],
        mut on_hidden: impl FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        self.forward_batch(
            &mut [state],
            &[tokens],
            |_| Want::Hidden,
            |_, _| {},
            |_, pos, h| on_hidden(pos, h),
        )
    }

    /// Runs several sequences in one pass over the weights: `tokens[i]` is appended to
    /// `states[i]` at its positions `states[i].pos..`, and `on_logits(i, logits)` is called with
    /// the logits of the last token of every non-empty `tokens[i]`, in order of `i`.
    ///
    /// This is continuous batching's decoding step (one token per sequence), and it may mix in
    /// prompt chunks. Every sequence sees only its own cache, so each gets the logits it would
    /// get alone, bit for bit. More than [`MAX_BATCH`] tokens in all run as several passes.
    ///
    /// # Panics
    /// If `states` and `tokens` differ in length.
    pub fn forward_seqs(
        &self,
        states: &mut [&mut State],
        tokens: &[&[u32]],
        mut on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        let on_next = |i, next: Next<'_>| {
            if let Next::Logits(l) = next {
                on_logits(i, l);
            }
        };
        self.forward_batch(states, tokens, |_| Want::Logits, on_next, |_, _, _| {})
    }

    /// [`Model::forward_seqs`] where sequence `i` wants `want(i)`: the logits of its last token
    /// or its greedy next token (`on_next(i, next)`), or the hidden state of each of its tokens
    /// (`on_hidden(i, pos, hidden)`, in order of position). Generation and embedding sequences
    /// share the passes.
    ///
    /// # Panics
    /// If `states` and `tokens` differ in length.
    pub fn forward_batch(
        &self,
        states: &mut [&mut State],
        tokens: &[&[u32]],
        want: impl Fn(usize) -> Want,
        mut on_next: impl FnMut(usize, Next<'_>),
        on_hidden: impl FnMut(usize, usize, &[f32]),
    ) -> Result<(), ModelError> {
        let each = |rows: &[(usize, Next<'_>)]| {
            for &(i, next) in rows {
                on_next(i, next);
            }
        };
        self.forward_batch_rows(states, tokens, want, each, on_hidden)
    }

    /// [`Model::forward_batch`] giving what each pass's sequences give back together,
    /// `on_rows(&[(i, next)])` (those that want logits first, then those that want greedy
    /// tokens; each sequence once, but for [`Want::Tokens`] and [`Want::AllLogits`], once a
    /// token in order), so that a caller can sample them in parallel.
    ///
    /// # Panics
    /// If `states` and `tokens` differ in length.
    pub fn forward_batch_rows(
        &self,
        states: &mut [&mut State],
        tokens: &[&[u32]],
        want: impl Fn(usize) -> Want,
        mut on_rows: impl FnMut(&[(usize, Next<'_>)]),
        mut on_hidden: impl FnMut(usize, usize, &[f32]),
    ) -> Result<(), ModelError> {
        assert_eq!(states.len(), tokens.len(), "one token slice per state");
        for (s, t) in states.iter().zip(tokens) {
            self.check(s, t)?;
        }
        let Some(first) = states.first_mut() else {
            return Ok(());
        };
        let (v, d) = (self.config.n_vocab, self.config.d_model);
        let mut rows = std::mem::take(&mut first.rows);
        let mut logits = std::mem::take(&mut first.logits);
        let mut hidden = std::mem::take(&mut first.hidden);
        let mut picked = std::mem::take(&mut first.picked);
        // Rows whose logits the pass computes: those that want them and those that want their
        // greedy token (the backend's scratch for picking it).
        let n_logits: usize = (0..tokens.len())
            .map(|i| match want(i) {
                Want::Logits | Want::Token => usize::from(!tokens[i].is_empty()),
                Want::Tokens | Want::AllLogits => tokens[i].len(),
                Want::Hidden => 0,
            })
            .sum();
        let n_hidden: usize = (0..tokens.len())
            .filter(|&i| want(i) == Want::Hidden)
            .map(|i| tokens[i].len())
            .sum();
        // Grown on the first batch that needs more, then kept.
        if logits.len() < MAX_BATCH.min(n_logits) * v {
            logits.resize(MAX_BATCH.min(n_logits) * v, 0.0);
        }
        if hidden.len() < MAX_BATCH.min(n_hidden) * d {
            hidden.resize(MAX_BATCH.min(n_hidden) * d, 0.0);
        }
        if picked.len() < MAX_BATCH.min(n_logits) {
            picked.resize(MAX_BATCH.min(n_logits), 0);
        }
        // Every row first (their positions are read before the caches are lent), then the
        // passes, at most MAX_BATCH rows each.
        rows.clear();
        for (seq, (s, toks)) in states.iter().zip(tokens).enumerate() {
            let w = want(seq);
            rows.extend(toks.iter().enumerate().map(|(i, &token)| Row {
                seq,
                pos: s.pos + i,
                token,
                out: match w {
                    Want::Hidden => Out::Hidden,
                    Want::Tokens => Out::Token,
                    Want::AllLogits => Out::Logits,
                    Want::Logits if i + 1 == toks.len() => Out::Logits,
                    Want::Token if i + 1 == toks.len() => Out::Token,
                    Want::Logits | Want::Token => Out::None,
                },
            }));
        }
        let mut caches: Vec<&mut dyn KvCache> = states.iter_mut().map(|s| &mut *s.cache).collect();
        let mut result = Ok(());
        for chunk in rows.chunks(MAX_BATCH) {
            result =
                self.backend
                    .forward(chunk, &mut caches, &mut logits, &mut picked, &mut hidden);
            if result.is_err() {
                break;
            }
            let with_hidden = chunk.iter().filter(|r| r.out == Out::Hidden);
            for (r, h) in with_hidden.zip(hidden.chunks_exact(d)) {
                on_hidden(r.seq, r.pos, h);
            }
            let with_logits = chunk.iter().filter(|r| r.out == Out::Logits);
            let with_token = chunk.iter().filter(|r| r.out == Out::Token);
            let rows: Vec<(usize, Next<'_>)> = with_logits
                .zip(logits.chunks_exact(v))
                .map(|(r, l)| (r.seq, Next::Logits(l)))
                .chain(
                    with_token
                        .zip(&picked)
                        .map(|(r, &t)| (r.seq, Next::Token(t))),
                )
                .collect();
            if !rows.is_empty() {
                on_rows(&rows);
            }
        }
        drop(caches);
        // A failed pass (a device error) advances no sequence: what it wrote past their
        // positions is overwritten by the next tokens.
        if result.is_ok() {
            for (s, t) in states.iter_mut().zip(tokens) {
                s.pos += t.len();
            }
        }
        states[0].rows = rows;
        states[0].logits = logits;
        states[0].hidden = hidden;
        states[0].picked = picked;
        result
    }

    /// Makes `dst` hold the first `len` tokens of `src`: their keys and values are copied in
    /// the backend's memory and `dst.pos` becomes `len`. Continuing `dst` then gives, bit for
    /// bit, what continuing a state that computed those tokens itself gives (the cache is all a
    /// state carries). How `n > 1` choices of one prompt compute it once.
    pub fn copy_prefix(&self, src: &State, dst: &mut State, len: usize) -> Result<(), ModelError> {
        if src.model != self.id || dst.model != self.id {
            return Err(ModelError::ForeignState);
        }
        if len > src.pos {
            return Err(ModelError::PrefixBeyondState { len, pos: src.pos });
        }
        if len > dst.n_ctx {
            return Err(ModelError::ContextFull {
                n_tokens: len,
                pos: 0,
                n_ctx: dst.n_ctx,
            });
        }
        self.backend.copy_cache(&*src.cache, &mut *dst.cache, len)?;
        dst.pos = len;
        Ok(())
    }

    /// The checks that keep the pass free of errors: a state of this model, ids in the
    /// vocabulary, room in the cache.
    fn check(&self, state: &State, tokens: &[u32]) -> Result<(), ModelError> {
        if state.model != self.id {
            return Err(ModelError::ForeignState);
        }
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
}

/// The forward pass of one batch of at most [`MAX_BATCH`] rows, each extending its sequence's
/// cache at its position (a sequence's rows come in order of position), on any backend's
/// [`Ops`]. Leaves in [`Buf::Logits`] the logits of the rows that want them (then those of the
/// rows that want their greedy token, which [`Ops::greedy_tokens`] picks) and in
/// [`Buf::Hidden`] the final hidden states of those that want them, each in batch order.
///
/// Shapes: `B` rows in the batch, `d` = d_model, `q` = n_heads · head_dim, `kv` = n_kv_heads ·
/// head_dim, `ff` = d_ff, `V` = n_vocab, `R` rows that want logits, `T` rows that want their
/// greedy token, `H` rows that want hidden states.
pub fn forward_rows<O: Ops>(c: &Config, ops: &mut O, rows: &[Row]) {
    let mut b = rows.len();

    // Embedding lookup: x[t] = token_embd[token t].  x: [B, d]
    ops.embed(Buf::X);

    for l in 0..c.n_layers {
        // Attention block: xn = rms(x); q, k, v projections.  [B, d] -> [B, q], [B, kv]
        // Then RoPE on q and k, and k and v go into their sequence's cache at their
        // positions. Cache layout per sequence: [n_layers, C, kv].
        ops.rmsnorm(Buf::Xn, Buf::X, Norm::Attn(l), b);
        ops.qkv_rope_store(l, Buf::Xn, Buf::Q, Buf::K, Buf::V, b);

        // Causal attention: a row sees its own sequence's positions 0..=pos.  att: [B, q]
        ops.attention(l, Buf::Q, Buf::Att);

        // The rest of the last layer matters only to the rows that give something back (every
        // row's keys and values are cached above): the others leave the batch here, as they
        // leave llama.cpp's graph (`inp_out_ids`).  [B, *] -> [R + H, *]
        if l + 1 == c.n_layers {
            b = ops.keep_output_rows(&[Buf::X, Buf::Att], b);
        }

        // Output projection and residual: x += Wo · att.
        ops.matmul_add(Mat::O(l), Buf::Att, Buf::X, Buf::Proj, b);

        // Feed-forward block: x += W2 · (silu(W1 · rms(x)) ⊙ (W3 · rms(x))).
        ops.rmsnorm(Buf::Xn, Buf::X, Norm::Ffn(l), b);
        ops.swiglu(l, Buf::Xn, Buf::Gate, Buf::Up, b);
        ops.matmul_add(Mat::Down(l), Buf::Gate, Buf::X, Buf::Proj, b);
    }

    // Final norm and output projection for the rows that want logits, then for those that
    // want their greedy token, which is picked from its logits.  logits: [R + T, V]
    let n = ops.gather_rows(&[Out::Logits, Out::Token], Buf::Proj, Buf::X);
    if n > 0 {
        ops.rmsnorm(Buf::Xn, Buf::Proj, Norm::Output, n);
        ops.matmul(Mat::Output, Buf::Xn, Buf::Logits, n);
    }
    let t = rows.iter().filter(|r| r.out == Out::Token).count();
    if t > 0 {
        ops.greedy_tokens(n - t, t);
    }

    // Final norm alone for the rows that want hidden states (embeddings).  hidden: [H, d]
    let h = ops.gather_rows(&[Out::Hidden], Buf::Proj, Buf::X);
    if h > 0 {
        ops.rmsnorm(Buf::Hidden, Buf::Proj, Norm::Output, h);
    }
}
