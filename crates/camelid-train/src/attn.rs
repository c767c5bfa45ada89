//! Causal self-attention over packed sequences, forward and backward, one unit of work per
//! (sequence, kv head): the query heads that share a kv head (GQA/MQA) go together, so that a
//! unit owns the gradients of its keys and values and sums them in a fixed order.
//!
//! Forward: `S = Q·Kᵀ / sqrt(head_dim)` masked to `j ≤ i`, `P = softmax(S)` by rows,
//! `O = P·V` (transformers `eager_attention_forward`). Backward (the chain rule through the
//! softmax, as in Dao et al. 2022, FlashAttention, eq. for `dS`):
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik)`,
//! `dQ = dS·K / sqrt(hd)`, `dK = dSᵀ·Q / sqrt(hd)`.
//!
//! Each product is one [`Kernels::gemm_f32`] on the unit's thread (the whole `T × T` square;
//! the causal mask is applied to the scores, and the zeros above the diagonal of `P` and `dS`
//! make the products causal), with the keys or values transposed to `[head_dim, T]` where
//! they are the right operand of `·ᵀ`.

use std::cell::RefCell;

use camelid_kernels::{GemmF32, Kernels};

use crate::par::SharedMut;

/// Shapes of the packed batch: `n_seqs` sequences of `seq_len` tokens, row `s · seq_len + i`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub seq_len: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl Shape {
    fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

thread_local! {
    /// A participant's scratch, kept between calls (the pool's threads live on).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch for [`forward`] and [`backward`].
pub(crate) fn with_scratch(sh: Shape, f: impl FnOnce(&mut [f32])) {
    let (t, hd) = (sh.seq_len, sh.head_dim);
    let len = t * t + 6 * t * hd;
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// `dst[c · t + j] = rows[j · stride + c]` for `j < t`, `c < hd`: one head's rows transposed.
fn transpose_head(dst: &mut [f32], rows: &[f32], stride: usize, t: usize, hd: usize) {
    for j in 0..t {
        let r = &rows[j * stride..][..hd];
        for (c, &v) in r.iter().enumerate() {
            dst[c * t + j] = v;
        }
    }
}

/// `c[m, n] = op(a) · b` on the calling thread.
#[allow(clippy::too_many_arguments)]
fn gemm(
    kern: &Kernels,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    a_trans: bool,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
) {
    let g = GemmF32 {
        m,
        n,
        k,
        a,
        lda,
        a_trans,
        b,
        ldb,
    };
    kern.gemm_f32(&g, c, n, 1);
}

/// `dst` row `i` into columns `col..col + w` of row `row0 + i` of `out` (rows `ld` apart).
///
/// # Safety
/// Those elements of `out` belong to the caller's unit.
unsafe fn scatter_rows(
    out: SharedMut,
    dst_row0: usize,
    ld: usize,
    col: usize,
    src: &[f32],
    w: usize,
) {
    for (i, r) in src.chunks_exact(w).enumerate() {
        // SAFETY: the caller's contract.
        unsafe { out.slice((dst_row0 + i) * ld + col, w) }.copy_from_slice(r);
    }
}

/// Forward pass of unit `(s, g)`. `q: [N, q]`, `k, v: [N, kv]` (after RoPE); writes the unit's
/// heads of `att: [N, q]` and its blocks of `probs: [n_seqs, n_heads, T, T]` (zero above the
/// diagonal). `scratch` from [`with_scratch`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    kern: &Kernels,
    sh: Shape,
    s: usize,
    g: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    att: SharedMut,
    probs: SharedMut,
    scratch: &mut [f32],
) {
    let (t, hd, qd, kvd) = (sh.seq_len, sh.head_dim, sh.q_dim(), sh.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let rows = s * t;
    let (kt, rest) = scratch.split_at_mut(hd * t);
    let o = &mut rest[..t * hd];
    transpose_head(kt, &k[rows * kvd + g * hd..], kvd, t, hd);
    for h in g * sh.group()..(g + 1) * sh.group() {
        // SAFETY: the probability block of (s, h) belongs to this unit.
        let p = unsafe { probs.slice((s * sh.n_heads + h) * t * t, t * t) };
        // S = Q_h · K_gᵀ, then masked, scaled and normalized by rows.
        gemm(
            kern,
            (t, t, hd),
            &q[rows * qd + h * hd..],
            qd,
            false,
            kt,
            t,
            p,
        );
        for (i, row) in p.chunks_exact_mut(t).enumerate() {
            let (sc, masked) = row.split_at_mut(i + 1);
            masked.fill(0.0);
            for a in sc.iter_mut() {
                *a *= scale;
            }
            camelid_kernels::ops::softmax(sc);
        }
        // O = P · V_g.
        gemm(
            kern,
            (t, hd, t),
            p,
            t,
            false,
            &v[rows * kvd + g * hd..],
            kvd,
            o,
        );
        // SAFETY: head h of the rows of sequence s belongs to this unit.
        unsafe { scatter_rows(att, rows, qd, h * hd, o, hd) };
    }
}

/// Backward pass of unit `(s, g)`: from `datt: [N, q]` writes the unit's heads of `dq: [N, q]`
/// and its kv head of `dk, dv: [N, kv]`. `scratch` from [`with_scratch`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    kern: &Kernels,
    sh: Shape,
    s: usize,
    g: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    probs: &[f32],
    datt: &[f32],
    (dq, dk, dv): (SharedMut, SharedMut, SharedMut),
    scratch: &mut [f32],
) {
    let (t, hd, qd, kvd) = (sh.seq_len, sh.head_dim, sh.q_dim(), sh.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let rows = s * t;
    let (vt, rest) = scratch.split_at_mut(hd * t);
    let (ds, rest) = rest.split_at_mut(t * t);
    let (tmp, rest) = rest.split_at_mut(t * hd);
    let (dk_acc, rest) = rest.split_at_mut(t * hd);
    let dv_acc = &mut rest[..t * hd];
    transpose_head(vt, &v[rows * kvd + g * hd..], kvd, t, hd);
    dk_acc.fill(0.0);
    dv_acc.fill(0.0);
    let kg = &k[rows * kvd + g * hd..];
    for h in g * sh.group()..(g + 1) * sh.group() {
        let p = &probs[(s * sh.n_heads + h) * t * t..][..t * t];
        let (qh, doh) = (&q[rows * qd + h * hd..], &datt[rows * qd + h * hd..]);
        // dP = dO_h · V_gᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) / sqrt(hd), zero above the
        // diagonal as P is.
        gemm(kern, (t, t, hd), doh, qd, false, vt, t, ds);
        for (prow, drow) in p.chunks_exact(t).zip(ds.chunks_exact_mut(t)) {
            let mut d = 0.0f32;
            for (&pj, &dpj) in prow.iter().zip(drow.iter()) {
                d += pj * dpj;
            }
            for (x, &pj) in drow.iter_mut().zip(prow) {
                *x = pj * (*x - d) * scale;
            }
        }
        // dQ_h = dS · K_g.
        gemm(kern, (t, hd, t), ds, t, false, kg, kvd, tmp);
        // SAFETY: head h of the rows of sequence s belongs to this unit.
        unsafe { scatter_rows(dq, rows, qd, h * hd, tmp, hd) };
        // dK_g += dSᵀ · Q_h; dV_g += Pᵀ · dO_h, over the group's heads in order.
        gemm(kern, (t, hd, t), ds, t, true, qh, qd, tmp);
        add(dk_acc, tmp);
        gemm(kern, (t, hd, t), p, t, true, doh, qd, tmp);
        add(dv_acc, tmp);
    }
    // SAFETY: kv head g of the rows of sequence s belongs to this unit.
    unsafe {
        scatter_rows(dk, rows, kvd, g * hd, dk_acc, hd);
        scatter_rows(dv, rows, kvd, g * hd, dv_acc, hd);
    }
}

fn add(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}
