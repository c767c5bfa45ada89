//! The training forward pass of a Llama model, keeping what the backward pass needs, and the
//! backward pass: the mean cross-entropy of a batch and its gradient for every parameter.
//!
//! The model is transformers' `LlamaForCausalLM` on Hugging Face-named weights (so RoPE pairs
//! dimension `i` with `i + head_dim/2`), run on a packed batch: `n_seqs` rows of `seq_len`
//! tokens at positions `0..seq_len`, plain causal attention over each row (document
//! boundaries inside a row are BOS/EOS tokens, not masks), as transformers without an
//! attention mask.
//!
//! Shapes: `S` sequences of `T` tokens, `N = S·T` rows, `d` = d_model, `q` = n_heads ·
//! head_dim, `kv` = n_kv_heads · head_dim, `ff` = d_ff, `V` = n_vocab, `L` layers.
//!
//! Results are bit-identical whatever the thread count: products split their output rows
//! between threads, row operations their rows, attention its (sequence, kv head) units, and
//! sums over the rows (norm gains, embedding) run on one thread in row order.

use camelid_kernels::Kernels;
use camelid_model::Config;

use crate::attn::{self, Shape};
use crate::error::TrainError;
use crate::linear::{self, Scratch};
use crate::ops;
use crate::par::{SharedMut, for_ranges};
use crate::params::{LayerIdx, Params};

/// Rows of logits made at a time: the output projection and the cross-entropy go through
/// the batch in blocks of this many rows.
const LOGIT_ROWS: usize = 512;

/// Target id that is not counted in the loss.
pub const IGNORE: u32 = u32::MAX;

/// A batch of packed sequences, row-major `[n_seqs][seq_len]`: `targets[i]` is the token that
/// should follow `inputs[..=i]` of its row (usually the next input), or [`IGNORE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub n_seqs: usize,
    pub seq_len: usize,
}

/// One layer's saved activations, `N` rows each.
struct LayerActs {
    /// `rms(x)` before attention, and its `1/rms`.  [N, d], [N]
    xn1: Vec<f32>,
    rstd1: Vec<f32>,
    /// Projections, q and k after RoPE.  [N, q], [N, kv], [N, kv]
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities, zero above the diagonal.  [S, n_heads, T, T]
    probs: Vec<f32>,
    /// Attention output before `o_proj`.  [N, q]
    att: Vec<f32>,
    /// The residual stream after attention.  [N, d]
    h: Vec<f32>,
    /// `rms(h)` before the MLP.  [N, d], [N]
    xn2: Vec<f32>,
    rstd2: Vec<f32>,
    /// SwiGLU: `gate`, `up` and `silu(gate) ⊙ up`.  [N, ff] each
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
}

impl LayerActs {
    fn new(c: &Config, s: usize, t: usize) -> LayerActs {
        let n = s * t;
        let z = |len: usize| vec![0.0f32; len];
        LayerActs {
            xn1: z(n * c.d_model),
            rstd1: z(n),
            q: z(n * c.q_dim()),
            k: z(n * c.kv_dim()),
            v: z(n * c.kv_dim()),
            probs: z(s * c.n_heads * t * t),
            att: z(n * c.q_dim()),
            h: z(n * c.d_model),
            xn2: z(n * c.d_model),
            rstd2: z(n),
            gate: z(n * c.d_ff),
            up: z(n * c.d_ff),
            act: z(n * c.d_ff),
        }
    }
}

/// Gradients of activations and scratch of the backward pass.
struct Back {
    /// The gradient of the residual stream.  [N, d]
    dx: Vec<f32>,
    /// The gradient of a norm's output, and a second term of it.  [N, d]
    dxn: Vec<f32>,
    tmp: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    datt: Vec<f32>,
    dact: Vec<f32>,
    dgate: Vec<f32>,
    dup: Vec<f32>,
    /// A norm gain's gradient.  [d]
    dg: Vec<f32>,
    lin: Scratch,
}

/// Preallocated activations and scratch for batches of up to `max_seqs × seq_len` tokens.
pub struct Workspace {
    config: Config,
    kernels: Kernels,
    threads: usize,
    max_seqs: usize,
    max_seq_len: usize,
    checkpointing: bool,
    /// Rows of logits per block (LOGIT_ROWS; fewer in tests, to cross block boundaries).
    pub(crate) logit_rows: usize,
    /// `cos` and `sin` of `pos · inv_freq[i]`.  [T, head_dim / 2]
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The residual stream entering each layer, and entering the final norm.  [L + 1][N, d]
    resid: Vec<Vec<f32>>,
    /// Every layer's activations, or one layer's when they are recomputed.
    acts: Vec<LayerActs>,
    /// Final norm.  [N, d], [N]
    xn_f: Vec<f32>,
    rstd_f: Vec<f32>,
    /// Logits, then their gradient, of at most LOGIT_ROWS rows.  [min(N, LOGIT_ROWS), V]
    logits: Vec<f32>,
    /// Loss of each row (NaN where ignored).  [N]
    row_loss: Vec<f32>,
    back: Back,
}

/// What every pass needs to read.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    c: &'a Config,
    k: &'a Kernels,
    threads: usize,
    cos: &'a [f32],
    sin: &'a [f32],
    /// Sequences and tokens per sequence of this batch.
    s: usize,
    t: usize,
}

impl Ctx<'_> {
    fn n(&self) -> usize {
        self.s * self.t
    }
    fn shape(&self) -> Shape {
        Shape {
            seq_len: self.t,
            n_heads: self.c.n_heads,
            n_kv_heads: self.c.n_kv_heads,
            head_dim: self.c.head_dim,
        }
    }
}

impl Workspace {
    /// A workspace for batches of up to `max_seqs` sequences of up to `seq_len` tokens, computing
    /// on `threads` threads.
    pub fn new(config: &Config, max_seqs: usize, seq_len: usize, threads: usize) -> Workspace {
        let c = config;
        let (s, t) = (max_seqs.max(1), seq_len.max(1));
        let n = s * t;
        let half = c.head_dim / 2;
        let inv_freq = c.rope_inv_freq();
        let (mut cos, mut sin) = (vec![0.0f32; t * half], vec![0.0f32; t * half]);
        for pos in 0..t {
            for (i, &f) in inv_freq.iter().enumerate() {
                // The angle in f32 as transformers forms it (`inv_freq @ position_ids`), then
                // cos and sin taken exactly.
                let angle = (pos as f32 * f) as f64;
                cos[pos * half + i] = angle.cos() as f32;
                sin[pos * half + i] = angle.sin() as f32;
            }
        }
        let z = |len: usize| vec![0.0f32; len];
        Workspace {
            config: c.clone(),
            kernels: Kernels::new(threads.max(1)),
            threads: threads.max(1),
            max_seqs: s,
            max_seq_len: t,
            checkpointing: false,
            logit_rows: LOGIT_ROWS,
            cos,
            sin,
            resid: (0..=c.n_layers).map(|_| z(n * c.d_model)).collect(),
            acts: (0..c.n_layers).map(|_| LayerActs::new(c, s, t)).collect(),
            xn_f: z(n * c.d_model),
            rstd_f: z(n),
            logits: z(n.min(LOGIT_ROWS) * c.n_vocab),
            row_loss: z(n),
            back: Back {
                dx: z(n * c.d_model),
                dxn: z(n * c.d_model),
                tmp: z(n * c.d_model),
                dq: z(n * c.q_dim()),
                dk: z(n * c.kv_dim()),
                dv: z(n * c.kv_dim()),
                datt: z(n * c.q_dim()),
                dact: z(n * c.d_ff),
                dgate: z(n * c.d_ff),
                dup: z(n * c.d_ff),
                dg: z(c.d_model),
                lin: Scratch::new(c),
            },
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Sets the compute threads (at least 1). Results do not depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Keeps only the residual stream between layers in the forward pass, and recomputes each
    /// layer's activations in the backward pass (one more forward pass of the layers, for
    /// `L − 1` layers' activations less memory). Results are the same bit for bit.
    pub fn set_checkpointing(&mut self, on: bool) {
        if on == self.checkpointing {
            return;
        }
        self.checkpointing = on;
        let keep = if on { 1 } else { self.config.n_layers };
        self.acts.truncate(keep);
        while self.acts.len() < keep {
            self.acts.push(LayerActs::new(
                &self.config,
                self.max_seqs,
                self.max_seq_len,
            ));
        }
    }

    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// Bytes of the buffers this workspace holds (saved activations, logits, gradients of
    /// activations, the products' scratch), all allocated by [`Workspace::new`] and
    /// [`Workspace::set_checkpointing`]. Not counted: each compute thread's packing buffers
    /// (about 0.5 MiB plus 12 KiB per 12 rows of a product) and attention scratch
    /// (`4·(T² + 6·T·head_dim)` bytes).
    pub fn bytes(&self) -> usize {
        let acts: usize = self
            .acts
            .iter()
            .map(|a| {
                [
                    &a.xn1, &a.rstd1, &a.q, &a.k, &a.v, &a.probs, &a.att, &a.h, &a.xn2, &a.rstd2,
                    &a.gate, &a.up, &a.act,
                ]
                .iter()
                .map(|v| v.len())
                .sum::<usize>()
            })
            .sum();
        let b = &self.back;
        let back = [
            &b.dx, &b.dxn, &b.tmp, &b.dq, &b.dk, &b.dv, &b.datt, &b.dact, &b.dgate, &b.dup, &b.dg,
        ]
        .iter()
        .map(|v| v.len())
        .sum::<usize>()
            + b.lin.len();
        let resid: usize = self.resid.iter().map(Vec::len).sum();
        let rest = self.cos.len()
            + self.sin.len()
            + self.xn_f.len()
            + self.rstd_f.len()
            + self.logits.len()
            + self.row_loss.len();
        4 * (acts + back + resid + rest)
    }

    /// `grads += scale · ∂(mean cross-entropy over the batch's non-IGNORE targets)/∂params`;
    /// returns that mean loss.
    pub fn loss_and_grad(
        &mut self,
        params: &Params,
        batch: &Batch,
        grads: &mut Params,
        scale: f32,
    ) -> Result<f32, TrainError> {
        let n_valid = self.check(params, batch)?;
        check_layout(&self.config, grads, "gradient")?;
        let coef = scale / n_valid as f32;
        let loss = self.forward(params, batch, Some((&mut *grads, coef)), n_valid);
        self.backward(params, batch, grads);
        Ok(loss)
    }

    /// The mean loss of [`Workspace::loss_and_grad`], without gradients (validation).
    pub fn loss(&mut self, params: &Params, batch: &Batch) -> Result<f32, TrainError> {
        let n_valid = self.check(params, batch)?;
        Ok(self.forward(params, batch, None, n_valid))
    }

    /// The loss at every position of the batch, row-major `[n_seqs][seq_len]`: NaN where the
    /// target is [`IGNORE`] (for studies of the loss by position).
    pub fn losses(&mut self, params: &Params, batch: &Batch) -> Result<Vec<f32>, TrainError> {
        let n_valid = self.check(params, batch)?;
        self.forward(params, batch, None, n_valid);
        Ok(self.row_loss[..batch.n_seqs * batch.seq_len].to_vec())
    }

    /// Checks the parameters and the batch; returns the number of counted targets.
    fn check(&self, params: &Params, batch: &Batch) -> Result<usize, TrainError> {
        self.config
            .validate()
            .map_err(|e| TrainError::InvalidConfig(e.to_string()))?;
        if params.config != self.config {
            return Err(TrainError::ConfigMismatch);
        }
        check_layout(&self.config, params, "parameter")?;
        let (s, t) = (batch.n_seqs, batch.seq_len);
        if s > self.max_seqs || t > self.max_seq_len || s == 0 || t == 0 {
            return Err(TrainError::BatchTooLarge {
                n_seqs: s,
                seq_len: t,
                max_seqs: self.max_seqs,
                max_seq_len: self.max_seq_len,
            });
        }
        for (what, ids) in [("inputs", &batch.inputs), ("targets", &batch.targets)] {
            if ids.len() != s * t {
                return Err(TrainError::BatchShape {
                    what,
                    len: ids.len(),
                    n_seqs: s,
                    seq_len: t,
                });
            }
        }
        let n_vocab = self.config.n_vocab;
        let bad = |what: &'static str, ids: &[u32], ignore_ok: bool| {
            ids.iter()
                .position(|&id| id as usize >= n_vocab && !(ignore_ok && id == IGNORE))
                .map(|index| TrainError::TokenOutOfRange {
                    what,
                    index,
                    token: ids[index],
                    n_vocab,
                })
        };
        if let Some(e) = bad("input", &batch.inputs, false) {
            return Err(e);
        }
        if let Some(e) = bad("target", &batch.targets, true) {
            return Err(e);
        }
        match batch.targets.iter().filter(|&&t| t != IGNORE).count() {
            0 => Err(TrainError::NoTargets),
            n => Ok(n),
        }
    }

    /// The forward pass to the loss. With `grad = Some((grads, coef))`, also the output
    /// projection's backward pass, block by block of rows as the logits are made: `b.dxn` gets
    /// `coef · ∂loss_sum/∂xn` and the output matrix's gradient `coef · ∂loss_sum/∂W` (`coef` is
    /// `scale` over the number of counted targets, applied to the products' results, `[rows, d]`
    /// and `[V, d]`, rather than to `[rows, V]`). Returns the mean loss over the `n_valid`
    /// counted targets.
    fn forward(
        &mut self,
        params: &Params,
        batch: &Batch,
        mut grad: Option<(&mut Params, f32)>,
        n_valid: usize,
    ) -> f32 {
        let cx = Ctx {
            c: &self.config,
            k: &self.kernels,
            threads: self.threads,
            cos: &self.cos,
            sin: &self.sin,
            s: batch.n_seqs,
            t: batch.seq_len,
        };
        let c = cx.c;
        let (n, d, v) = (cx.n(), c.d_model, c.n_vocab);
        let t = &params.tensors;

        // Embedding lookup: x[t] = embed_tokens[input t].  [N, d]
        let emb = &t[params.embedding()].data;
        for (row, &tok) in self.resid[0].chunks_exact_mut(d).zip(&batch.inputs) {
            row.copy_from_slice(&emb[tok as usize * d..][..d]);
        }

        // The layers, each reading resid[l] and writing resid[l + 1].
        let ckpt = self.checkpointing;
        for l in 0..c.n_layers {
            let (before, after) = self.resid.split_at_mut(l + 1);
            let acts = &mut self.acts[if ckpt { 0 } else { l }];
            layer_forward(
                cx,
                params,
                l,
                &before[l],
                acts,
                &mut self.back,
                &mut after[0],
            );
        }

        // Final norm.  [N, d]
        norm_rows(
            cx,
            &self.resid[c.n_layers][..n * d],
            &t[params.final_norm()].data,
            &mut self.xn_f[..n * d],
            &mut self.rstd_f[..n],
        );

        // Output projection, cross-entropy and their backward passes, LOGIT_ROWS rows at a
        // time (the logits of a whole batch would be [N, V]); the gradient of the output
        // matrix is summed block by block.
        let w_out = &t[params.output()].data;
        let b = &mut self.back;
        linear::transpose_weight(cx.k, cx.threads, &mut b.lin, w_out, v, d);
        let block = self.logit_rows.clamp(1, LOGIT_ROWS);
        for r0 in (0..n).step_by(block) {
            let m = block.min(n - r0);
            let rows = r0..r0 + m;
            let xn = &self.xn_f[rows.start * d..rows.end * d];
            let logits = &mut self.logits[..m * v];
            linear::forward_transposed(cx.k, cx.threads, &b.lin, v, d, xn, logits);
            // Cross-entropy of every row; the rows of ignored targets count nothing.
            let targets = &batch.targets[rows.clone()];
            let (lg, rl) = (
                SharedMut::new(&mut *logits),
                SharedMut::new(&mut self.row_loss[rows.clone()]),
            );
            let want_grad = grad.is_some();
            for_ranges(cx.k, cx.threads, m, &|rs| {
                for r in rs {
                    // SAFETY: row r of the logits and of the losses belongs to this participant.
                    let (z, loss) = unsafe { (lg.slice(r * v, v), &mut rl.slice(r, 1)[0]) };
                    if targets[r] == IGNORE {
                        *loss = f32::NAN;
                        z.fill(0.0);
                    } else {
                        *loss = ops::cross_entropy(z, targets[r] as usize, want_grad);
                    }
                }
            });
            // dxn = coef · dlogits · W_out; dW_out += coef · dlogitsᵀ · xn.
            if let Some((grads, coef)) = grad.as_mut() {
                let dxn = &mut b.dxn[rows.start * d..rows.end * d];
                linear::backward_input(cx.k, cx.threads, w_out, v, d, logits, dxn);
                for x in dxn.iter_mut() {
                    *x *= *coef;
                }
                let g_out = &mut grads.tensors[params.output()].data;
                linear::backward_weight(
                    cx.k,
                    cx.threads,
                    &mut b.lin,
                    logits,
                    xn,
                    (v, d, *coef),
                    g_out,
                );
            }
        }
        let sum: f64 = self.row_loss[..n]
            .iter()
            .zip(&batch.targets)
            .filter(|&(_, &tg)| tg != IGNORE)
            .map(|(&l, _)| l as f64)
            .sum();
        (sum / n_valid as f64) as f32
    }

    /// The backward pass from `b.dxn`, the gradient of the final norm's output left by
    /// [`Workspace::forward`].
    fn backward(&mut self, params: &Params, batch: &Batch, grads: &mut Params) {
        let cx = Ctx {
            c: &self.config,
            k: &self.kernels,
            threads: self.threads,
            cos: &self.cos,
            sin: &self.sin,
            s: batch.n_seqs,
            t: batch.seq_len,
        };
        let c = cx.c;
        let (n, d) = (cx.n(), c.d_model);
        let t = &params.tensors;
        let b = &mut self.back;

        // Final norm.
        b.dx[..n * d].fill(0.0);
        norm_backward(
            cx,
            b,
            &self.resid[c.n_layers][..n * d],
            &t[params.final_norm()].data,
            &self.rstd_f[..n],
            &mut grads.tensors[params.final_norm()].data,
        );

        for l in (0..c.n_layers).rev() {
            let slot = if self.checkpointing {
                // Recompute the layer's activations (its output, resid[l + 1], comes out the
                // same as before and is no longer read).
                let (before, after) = self.resid.split_at_mut(l + 1);
                layer_forward(
                    cx,
                    params,
                    l,
                    &before[l],
                    &mut self.acts[0],
                    b,
                    &mut after[0],
                );
                0
            } else {
                l
            };
            layer_backward(cx, params, l, &self.resid[l], &self.acts[slot], b, grads);
        }

        // Embedding: the rows of each token summed in row order, then added to its gradient
        // row (so that the sums do not depend on what the gradient already holds).
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&r| batch.inputs[r]);
        let g_emb = &mut grads.tensors[params.embedding()].data;
        let sum = &mut b.dg;
        for same in order.chunk_by(|&a, &c| batch.inputs[a] == batch.inputs[c]) {
            sum.fill(0.0);
            for &r in same {
                add(sum, &b.dx[r * d..][..d]);
            }
            let tok = batch.inputs[same[0]] as usize;
            add(&mut g_emb[tok * d..][..d], sum);
        }
    }
}

/// The shapes of the tensors of `config`, in the order of [`Params`].
fn expected_shapes(c: &Config) -> Vec<Vec<usize>> {
    let (d, ff, v, q, kv) = (c.d_model, c.d_ff, c.n_vocab, c.q_dim(), c.kv_dim());
    let mut s = vec![vec![v, d]];
    for _ in 0..c.n_layers {
        s.extend([
            vec![d],
            vec![q, d],
            vec![kv, d],
            vec![kv, d],
            vec![d, q],
            vec![d],
            vec![ff, d],
            vec![ff, d],
            vec![d, ff],
        ]);
    }
    s.push(vec![d]);
    if !c.tied_embeddings {
        s.push(vec![v, d]);
    }
    s
}

/// Checks that `p` holds the tensors of `c` in the layout of [`Params`].
fn check_layout(c: &Config, p: &Params, what: &'static str) -> Result<(), TrainError> {
    let want = expected_shapes(c);
    if p.tensors.len() != want.len() {
        return Err(TrainError::TensorCount {
            what,
            expected: want.len(),
            got: p.tensors.len(),
        });
    }
    for (t, w) in p.tensors.iter().zip(want) {
        if t.shape != w || t.data.len() != w.iter().product::<usize>() {
            return Err(TrainError::ShapeMismatch {
                what,
                tensor: t.name.clone(),
                expected: w,
                got: t.shape.clone(),
            });
        }
    }
    Ok(())
}

/// RMSNorm of every row of `x: [N, d]` into `out`, `1/rms` into `rstd: [N]`.
fn norm_rows(cx: Ctx, x: &[f32], gain: &[f32], out: &mut [f32], rstd: &mut [f32]) {
    let (d, eps) = (cx.c.d_model, cx.c.norm_eps);
    let (o, r) = (SharedMut::new(out), SharedMut::new(rstd));
    for_ranges(cx.k, cx.threads, x.len() / d, &|rows| {
        for t in rows {
            // SAFETY: row t belongs to this participant.
            let (ot, rt) = unsafe { (o.slice(t * d, d), r.slice(t, 1)) };
            rt[0] = ops::rmsnorm(ot, &x[t * d..][..d], gain, eps);
        }
    });
}

/// The backward pass of a norm from `b.dxn`: `b.dx += ∂/∂x`, `dgain += ∂/∂gain`.
fn norm_backward(cx: Ctx, b: &mut Back, x: &[f32], gain: &[f32], rstd: &[f32], dgain: &mut [f32]) {
    let d = cx.c.d_model;
    let n = x.len() / d;
    let dy = &b.dxn[..n * d];
    let dx = SharedMut::new(&mut b.dx[..n * d]);
    for_ranges(cx.k, cx.threads, n, &|rows| {
        for t in rows {
            // SAFETY: row t belongs to this participant.
            let dxt = unsafe { dx.slice(t * d, d) };
            ops::rmsnorm_backward(dxt, &dy[t * d..][..d], &x[t * d..][..d], gain, rstd[t]);
        }
    });
    b.dg.fill(0.0);
    ops::rmsnorm_gain_grad(&mut b.dg, dy, x, rstd);
    for (a, &g) in dgain.iter_mut().zip(&b.dg) {
        *a += g;
    }
}

/// RoPE (or, with `backward`, its transpose) on every row of `x: [N, heads · head_dim]`, row
/// `r` at position `r mod T`.
fn rope_rows(cx: Ctx, x: &mut [f32], width: usize, backward: bool) {
    let (hd, t) = (cx.c.head_dim, cx.t);
    let half = hd / 2;
    let n = x.len() / width;
    let xs = SharedMut::new(x);
    for_ranges(cx.k, cx.threads, n, &|rows| {
        for r in rows {
            let pos = r % t;
            let (cos, sin) = (&cx.cos[pos * half..][..half], &cx.sin[pos * half..][..half]);
            // SAFETY: row r belongs to this participant.
            let row = unsafe { xs.slice(r * width, width) };
            if backward {
                ops::rope_backward(row, hd, cos, sin);
            } else {
                ops::rope(row, hd, cos, sin);
            }
        }
    });
}

/// One layer's forward pass from `x = resid[l]` to `out = resid[l + 1]`, saving its
/// activations in `a`, with `b.tmp` and `b.lin` as scratch.
fn layer_forward(
    cx: Ctx,
    params: &Params,
    l: usize,
    x: &[f32],
    a: &mut LayerActs,
    b: &mut Back,
    out: &mut [f32],
) {
    let c = cx.c;
    let (n, d, q, kv, ff) = (cx.n(), c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
    let (k, th) = (cx.k, cx.threads);
    let li = params.layer(l);
    let w = |i: usize| &params.tensors[i].data[..];
    let (x, tmp, out) = (&x[..n * d], &mut b.tmp[..n * d], &mut out[..n * d]);
    let lin = &mut b.lin;

    // Attention block: xn = rms(x); q, k, v projections; RoPE on q and k.
    norm_rows(
        cx,
        x,
        w(li.attn_norm),
        &mut a.xn1[..n * d],
        &mut a.rstd1[..n],
    );
    let xn1 = &a.xn1[..n * d];
    linear::forward(k, th, lin, w(li.wq), q, d, xn1, &mut a.q[..n * q]);
    linear::forward(k, th, lin, w(li.wk), kv, d, xn1, &mut a.k[..n * kv]);
    linear::forward(k, th, lin, w(li.wv), kv, d, xn1, &mut a.v[..n * kv]);
    rope_rows(cx, &mut a.q[..n * q], q, false);
    rope_rows(cx, &mut a.k[..n * kv], kv, false);

    // Causal attention per (sequence, kv head).  att: [N, q]
    let sh = cx.shape();
    let (att, probs) = (
        SharedMut::new(&mut a.att[..n * q]),
        SharedMut::new(&mut a.probs),
    );
    let (qs, ks, vs) = (&a.q[..n * q], &a.k[..n * kv], &a.v[..n * kv]);
    let kvh = c.n_kv_heads;
    for_ranges(k, th, cx.s * kvh, &|units| {
        attn::with_scratch(sh, |scratch| {
            for u in units {
                attn::forward(k, sh, u / kvh, u % kvh, qs, ks, vs, att, probs, scratch);
            }
        })
    });

    // Output projection and residual: h = x + Wo · att.
    linear::forward(k, th, lin, w(li.wo), d, q, &a.att[..n * q], tmp);
    for ((h, &xi), &p) in a.h[..n * d].iter_mut().zip(x).zip(tmp.iter()) {
        *h = xi + p;
    }

    // Feed-forward block: out = h + W_down · (silu(W_gate · rms(h)) ⊙ (W_up · rms(h))).
    norm_rows(
        cx,
        &a.h[..n * d],
        w(li.ffn_norm),
        &mut a.xn2[..n * d],
        &mut a.rstd2[..n],
    );
    let xn2 = &a.xn2[..n * d];
    linear::forward(k, th, lin, w(li.w_gate), ff, d, xn2, &mut a.gate[..n * ff]);
    linear::forward(k, th, lin, w(li.w_up), ff, d, xn2, &mut a.up[..n * ff]);
    {
        let (gate, up) = (&a.gate[..n * ff], &a.up[..n * ff]);
        let act = SharedMut::new(&mut a.act[..n * ff]);
        for_ranges(k, th, n, &|rows| {
            let span = rows.start * ff..rows.end * ff;
            // SAFETY: these rows belong to this participant.
            let out = unsafe { act.slice(span.start, span.len()) };
            ops::swiglu(out, &gate[span.clone()], &up[span]);
        });
    }
    linear::forward(k, th, lin, w(li.w_down), d, ff, &a.act[..n * ff], tmp);
    for ((o, &h), &p) in out.iter_mut().zip(&a.h[..n * d]).zip(tmp.iter()) {
        *o = h + p;
    }
}

/// One layer's backward pass: on entry `b.dx` is `∂loss/∂resid[l + 1]`, on return
/// `∂loss/∂resid[l]`; the layer's parameter gradients are added to `grads`.
fn layer_backward(
    cx: Ctx,
    params: &Params,
    l: usize,
    x: &[f32],
    a: &LayerActs,
    b: &mut Back,
    grads: &mut Params,
) {
    let li = params.layer(l);
    mlp_backward(cx, params, li, a, b, grads);
    attention_backward(cx, params, li, &x[..cx.n() * cx.c.d_model], a, b, grads);
}

/// The feed-forward block's backward pass, from `out = h + W_down · act`: `b.dx` becomes
/// `∂loss/∂h`.
fn mlp_backward(
    cx: Ctx,
    params: &Params,
    li: LayerIdx,
    a: &LayerActs,
    b: &mut Back,
    grads: &mut Params,
) {
    let c = cx.c;
    let (n, d, ff) = (cx.n(), c.d_model, c.d_ff);
    let (k, th) = (cx.k, cx.threads);
    let w = |i: usize| &params.tensors[i].data[..];
    let dout = &b.dx[..n * d];
    linear::backward_input(k, th, w(li.w_down), d, ff, dout, &mut b.dact[..n * ff]);
    linear::backward_weight(
        k,
        th,
        &mut b.lin,
        dout,
        &a.act[..n * ff],
        (d, ff, 1.0),
        &mut grads.tensors[li.w_down].data,
    );
    {
        let (gate, up, dact) = (&a.gate[..n * ff], &a.up[..n * ff], &b.dact[..n * ff]);
        let (dg, du) = (
            SharedMut::new(&mut b.dgate[..n * ff]),
            SharedMut::new(&mut b.dup[..n * ff]),
        );
        for_ranges(k, th, n, &|rows| {
            let span = rows.start * ff..rows.end * ff;
            // SAFETY: these rows belong to this participant.
            let (dgs, dus) = unsafe {
                (
                    dg.slice(span.start, span.len()),
                    du.slice(span.start, span.len()),
                )
            };
            ops::swiglu_backward(
                dgs,
                dus,
                &dact[span.clone()],
                &gate[span.clone()],
                &up[span],
            );
        });
    }
    let (dgate, dup) = (&b.dgate[..n * ff], &b.dup[..n * ff]);
    linear::backward_input(k, th, w(li.w_gate), ff, d, dgate, &mut b.dxn[..n * d]);
    linear::backward_input(k, th, w(li.w_up), ff, d, dup, &mut b.tmp[..n * d]);
    add(&mut b.dxn[..n * d], &b.tmp[..n * d]);
    for (dy, t) in [(dgate, li.w_gate), (dup, li.w_up)] {
        let g = &mut grads.tensors[t].data;
        linear::backward_weight(k, th, &mut b.lin, dy, &a.xn2[..n * d], (ff, d, 1.0), g);
    }
    norm_backward(
        cx,
        b,
        &a.h[..n * d],
        w(li.ffn_norm),
        &a.rstd2[..n],
        &mut grads.tensors[li.ffn_norm].data,
    );
}

/// The attention block's backward pass, from `h = x + Wo · att`: `b.dx` becomes
/// `∂loss/∂x`.
fn attention_backward(
    cx: Ctx,
    params: &Params,
    li: LayerIdx,
    x: &[f32],
    a: &LayerActs,
    b: &mut Back,
    grads: &mut Params,
) {
    let c = cx.c;
    let (n, d, q, kv) = (cx.n(), c.d_model, c.q_dim(), c.kv_dim());
    let (k, th) = (cx.k, cx.threads);
    let w = |i: usize| &params.tensors[i].data[..];
    let dh = &b.dx[..n * d];
    linear::backward_input(k, th, w(li.wo), d, q, dh, &mut b.datt[..n * q]);
    linear::backward_weight(
        k,
        th,
        &mut b.lin,
        dh,
        &a.att[..n * q],
        (d, q, 1.0),
        &mut grads.tensors[li.wo].data,
    );
    {
        let sh = cx.shape();
        let (qs, ks, vs) = (&a.q[..n * q], &a.k[..n * kv], &a.v[..n * kv]);
        let (probs, datt) = (&a.probs[..], &b.datt[..n * q]);
        let dq = SharedMut::new(&mut b.dq[..n * q]);
        let dk = SharedMut::new(&mut b.dk[..n * kv]);
        let dv = SharedMut::new(&mut b.dv[..n * kv]);
        let kvh = c.n_kv_heads;
        for_ranges(k, th, cx.s * kvh, &|units| {
            attn::with_scratch(sh, |scratch| {
                for u in units {
                    let (s, g) = (u / kvh, u % kvh);
                    let qkv = (qs, ks, vs);
                    attn::backward(k, sh, s, g, qkv, probs, datt, (dq, dk, dv), scratch);
                }
            })
        });
    }
    rope_rows(cx, &mut b.dq[..n * q], q, true);
    rope_rows(cx, &mut b.dk[..n * kv], kv, true);
    let (dq, dk, dv) = (&b.dq[..n * q], &b.dk[..n * kv], &b.dv[..n * kv]);
    linear::backward_input(k, th, w(li.wq), q, d, dq, &mut b.dxn[..n * d]);
    linear::backward_input(k, th, w(li.wk), kv, d, dk, &mut b.tmp[..n * d]);
    add(&mut b.dxn[..n * d], &b.tmp[..n * d]);
    linear::backward_input(k, th, w(li.wv), kv, d, dv, &mut b.tmp[..n * d]);
    add(&mut b.dxn[..n * d], &b.tmp[..n * d]);
    for (dy, t, rows) in [(dq, li.wq, q), (dk, li.wk, kv), (dv, li.wv, kv)] {
        let g = &mut grads.tensors[t].data;
        linear::backward_weight(k, th, &mut b.lin, dy, &a.xn1[..n * d], (rows, d, 1.0), g);
    }
    norm_backward(
        cx,
        b,
        x,
        w(li.attn_norm),
        &a.rstd1[..n],
        &mut grads.tensors[li.attn_norm].data,
    );
}

fn add(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}
