//! Causal self-attention over packed sequences, forward and backward, one unit of work per
//! (sequence, kv head): the query heads that share a kv head (GQA/MQA) go together, so that a
//! unit owns the gradients of its keys and values and sums them in a fixed order.
//!
//! Forward: `S = Q·Kᵀ / sqrt(head_dim)` masked to `j ≤ i`, `P = softmax(S)` by rows,
//! `O = P·V` (transformers `eager_attention_forward`). Backward (the chain rule through the
//! softmax, as in Dao et al. 2022, FlashAttention, eq. for `dS`):
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik)`,
//! `dQ = dS·K / sqrt(hd)`, `dK = dSᵀ·Q / sqrt(hd)`.

use camelid_kernels::matmul::dot_f32;

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

/// Forward pass of unit `(s, g)`. `q: [N, q]`, `k, v: [N, kv]` (after RoPE); writes the unit's
/// heads of `att: [N, q]` and its rows of `probs: [n_seqs, n_heads, T, T]` (zero above the
/// diagonal).
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
) {
    let (t_len, hd, qd, kvd) = (sh.seq_len, sh.head_dim, sh.q_dim(), sh.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let heads = g * sh.group()..(g + 1) * sh.group();
    let first = (s * sh.n_heads + heads.start) * t_len * t_len;
    // SAFETY: the probability rows of this sequence's heads of kv head g belong to this unit.
    let p_all = unsafe { probs.slice(first, heads.len() * t_len * t_len) };
    for (hi, h) in heads.enumerate() {
        for i in 0..t_len {
            let row = s * t_len + i;
            let qi = &q[row * qd + h * hd..][..hd];
            let p = &mut p_all[(hi * t_len + i) * t_len..][..t_len];
            for (j, pj) in p[..=i].iter_mut().enumerate() {
                let kj = &k[(s * t_len + j) * kvd + g * hd..][..hd];
                *pj = dot_f32(qi, kj) * scale;
            }
            p[i + 1..].fill(0.0);
            camelid_kernels::ops::softmax(&mut p[..=i]);
            // SAFETY: head h of row `row` belongs to this unit.
            let o = unsafe { att.slice(row * qd + h * hd, hd) };
            o.fill(0.0);
            for (j, &pj) in p[..=i].iter().enumerate() {
                let vj = &v[(s * t_len + j) * kvd + g * hd..][..hd];
                for (a, &b) in o.iter_mut().zip(vj) {
                    *a += pj * b;
                }
            }
        }
    }
}

/// Backward pass of unit `(s, g)`: from `datt: [N, q]` writes the unit's heads of `dq: [N, q]`
/// and its kv head of `dk, dv: [N, kv]`. `scratch` holds at least `T · (2 · head_dim + 1)`.
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
    let (t_len, hd, qd, kvd) = (sh.seq_len, sh.head_dim, sh.q_dim(), sh.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let (dk_acc, rest) = scratch.split_at_mut(t_len * hd);
    let (dv_acc, rest) = rest.split_at_mut(t_len * hd);
    let dp = &mut rest[..t_len];
    dk_acc.fill(0.0);
    dv_acc.fill(0.0);
    for h in g * sh.group()..(g + 1) * sh.group() {
        for i in 0..t_len {
            let row = s * t_len + i;
            let p = &probs[((s * sh.n_heads + h) * t_len + i) * t_len..][..=i];
            let doi = &datt[row * qd + h * hd..][..hd];
            let mut d = 0.0f32;
            for (j, (dpj, &pj)) in dp.iter_mut().zip(p).enumerate() {
                let vj = &v[(s * t_len + j) * kvd + g * hd..][..hd];
                *dpj = dot_f32(doi, vj);
                d += pj * *dpj;
            }
            let qi = &q[row * qd + h * hd..][..hd];
            // SAFETY: head h of row `row` belongs to this unit.
            let dqi = unsafe { dq.slice(row * qd + h * hd, hd) };
            dqi.fill(0.0);
            for (j, &pj) in p.iter().enumerate() {
                let ds = pj * (dp[j] - d) * scale;
                let kj = &k[(s * t_len + j) * kvd + g * hd..][..hd];
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
        let at = (s * t_len + j) * kvd + g * hd;
        // SAFETY: kv head g of the rows of sequence s belongs to this unit.
        unsafe { dk.slice(at, hd) }.copy_from_slice(&dk_acc[j * hd..][..hd]);
        // SAFETY: as above.
        unsafe { dv.slice(at, hd) }.copy_from_slice(&dv_acc[j * hd..][..hd]);
    }
}
