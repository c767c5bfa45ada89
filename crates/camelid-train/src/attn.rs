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
//! A unit first transposes its keys (and values, backward) to `[head_dim, T]`, so that a query
//! row's scores are `head_dim` contiguous multiply-adds over the keys instead of one short dot
//! product (and its horizontal sum) per key. The bodies are plain Rust, built twice: for the
//! baseline and, chosen at run time, with AVX2 + FMA enabled for the compiler's vectors. Both
//! builds do the same operations in the same order (Rust does not fuse or reorder float
//! operations), so they give the same bits.

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

/// Scratch floats a participant needs for [`forward`] and [`backward`].
pub(crate) fn scratch_len(sh: Shape) -> usize {
    sh.seq_len * (4 * sh.head_dim + 1)
}

/// Whether the AVX2 build may run.
fn avx2() -> bool {
    camelid_kernels::Isa::active() >= camelid_kernels::Isa::Avx2
}

/// `dst[c · t + j] = rows[j · stride + c]` for `j < t`, `c < hd`: one head's rows transposed.
#[inline(always)]
fn transpose_head(dst: &mut [f32], rows: &[f32], stride: usize, t: usize, hd: usize) {
    for j in 0..t {
        let r = &rows[j * stride..][..hd];
        for (c, &v) in r.iter().enumerate() {
            dst[c * t + j] = v;
        }
    }
}

/// Forward pass of unit `(s, g)`. `q: [N, q]`, `k, v: [N, kv]` (after RoPE); writes the unit's
/// heads of `att: [N, q]` and its rows of `probs: [n_seqs, n_heads, T, T]` (zero above the
/// diagonal). `scratch`: [`scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
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
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { forward_avx2(sh, s, g, q, k, v, att, probs, scratch) };
    }
    forward_body(sh, s, g, q, k, v, att, probs, scratch)
}

/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_avx2(
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
    forward_body(sh, s, g, q, k, v, att, probs, scratch)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_body(
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
    let (t_len, hd, qd, kvd) = (sh.seq_len, sh.head_dim, sh.q_dim(), sh.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let heads = g * sh.group()..(g + 1) * sh.group();
    let rows = s * t_len;
    let kt = &mut scratch[..hd * t_len];
    transpose_head(kt, &k[rows * kvd + g * hd..], kvd, t_len, hd);
    let first = (s * sh.n_heads + heads.start) * t_len * t_len;
    // SAFETY: the probability rows of this sequence's heads of kv head g belong to this unit.
    let p_all = unsafe { probs.slice(first, heads.len() * t_len * t_len) };
    for (hi, h) in heads.enumerate() {
        for i in 0..t_len {
            let row = rows + i;
            let qi = &q[row * qd + h * hd..][..hd];
            let p = &mut p_all[(hi * t_len + i) * t_len..][..t_len];
            let (sc, rest) = p.split_at_mut(i + 1);
            rest.fill(0.0);
            // Scores over the keys j ≤ i, one dimension c at a time.
            sc.fill(0.0);
            for (c, &qc) in qi.iter().enumerate() {
                for (a, &kv) in sc.iter_mut().zip(&kt[c * t_len..][..=i]) {
                    *a += qc * kv;
                }
            }
            for a in sc.iter_mut() {
                *a *= scale;
            }
            camelid_kernels::ops::softmax(sc);
            // SAFETY: head h of row `row` belongs to this unit.
            let o = unsafe { att.slice(row * qd + h * hd, hd) };
            o.fill(0.0);
            for (j, &pj) in sc.iter().enumerate() {
                let vj = &v[(rows + j) * kvd + g * hd..][..hd];
                for (a, &b) in o.iter_mut().zip(vj) {
                    *a += pj * b;
                }
            }
        }
    }
}

/// Backward pass of unit `(s, g)`: from `datt: [N, q]` writes the unit's heads of `dq: [N, q]`
/// and its kv head of `dk, dv: [N, kv]`. `scratch`: [`scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    sh: Shape,
    s: usize,
    g: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    datt: &[f32],
    dq: SharedMut,
    dk: SharedMut,
    dv: SharedMut,
    scratch: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { backward_avx2(sh, s, g, q, k, v, probs, datt, dq, dk, dv, scratch) };
    }
    backward_body(sh, s, g, q, k, v, probs, datt, dq, dk, dv, scratch)
}

/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_avx2(
    sh: Shape,
    s: usize,
    g: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    datt: &[f32],
    dq: SharedMut,
    dk: SharedMut,
    dv: SharedMut,
    scratch: &mut [f32],
) {
    backward_body(sh, s, g, q, k, v, probs, datt, dq, dk, dv, scratch)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_body(
    sh: Shape,
    s: usize,
    g: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    datt: &[f32],
    dq: SharedMut,
    dk: SharedMut,
    dv: SharedMut,
    scratch: &mut [f32],
) {
    let (t_len, hd, qd, kvd) = (sh.seq_len, sh.head_dim, sh.q_dim(), sh.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let rows = s * t_len;
    let (vt, rest) = scratch.split_at_mut(hd * t_len);
    let (dk_acc, rest) = rest.split_at_mut(t_len * hd);
    let (dv_acc, rest) = rest.split_at_mut(t_len * hd);
    let dp = &mut rest[..t_len];
    transpose_head(vt, &v[rows * kvd + g * hd..], kvd, t_len, hd);
    dk_acc.fill(0.0);
    dv_acc.fill(0.0);
    for h in g * sh.group()..(g + 1) * sh.group() {
        for i in 0..t_len {
            let row = rows + i;
            let p = &probs[((s * sh.n_heads + h) * t_len + i) * t_len..][..=i];
            let doi = &datt[row * qd + h * hd..][..hd];
            // dP_ij = dO_i · V_j over the keys j ≤ i, one dimension c at a time.
            let dpi = &mut dp[..=i];
            dpi.fill(0.0);
            for (c, &dc) in doi.iter().enumerate() {
                for (a, &vv) in dpi.iter_mut().zip(&vt[c * t_len..][..=i]) {
                    *a += dc * vv;
                }
            }
            let mut d = 0.0f32;
            for (&pj, &dpj) in p.iter().zip(dpi.iter()) {
                d += pj * dpj;
            }
            let qi = &q[row * qd + h * hd..][..hd];
            // SAFETY: head h of row `row` belongs to this unit.
            let dqi = unsafe { dq.slice(row * qd + h * hd, hd) };
            dqi.fill(0.0);
            for (j, (&pj, &dpj)) in p.iter().zip(dpi.iter()).enumerate() {
                let ds = pj * (dpj - d) * scale;
                let kj = &k[(rows + j) * kvd + g * hd..][..hd];
                for (a, &b) in dqi.iter_mut().zip(kj) {
                    *a += ds * b;
                }
                for (a, &b) in dk_acc[j * hd..][..hd].iter_mut().zip(qi) {
                    *a += ds * b;
                }
                for (a, &b) in dv_acc[j * hd..][..hd].iter_mut().zip(doi) {
                    *a += pj * b;
                }
            }
        }
    }
    for j in 0..t_len {
        let at = (rows + j) * kvd + g * hd;
        // SAFETY: kv head g of the rows of sequence s belongs to this unit.
        unsafe { dk.slice(at, hd) }.copy_from_slice(&dk_acc[j * hd..][..hd]);
        // SAFETY: as above.
        unsafe { dv.slice(at, hd) }.copy_from_slice(&dv_acc[j * hd..][..hd]);
    }
}
