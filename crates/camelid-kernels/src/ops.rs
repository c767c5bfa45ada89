//! Element-wise and row operations of the Llama forward pass, in f32.
//!
//! Formulas: RMSNorm (Zhang & Sennrich 2019) as in transformers `LlamaRMSNorm`; RoPE (Su et al.
//! 2021) on adjacent pairs as in Meta's `llama/model.py` (`apply_rotary_emb`); SwiGLU (Shazeer
//! 2020); causal scaled dot-product attention with grouped kv heads (Ainslie et al. 2023).

/// `out = x / sqrt(mean(x²) + eps) ⊙ gain`, one row.
pub fn rmsnorm(out: &mut [f32], x: &[f32], gain: &[f32], eps: f32) {
    debug_assert!(out.len() == x.len() && x.len() == gain.len());
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let inv = (1.0 / (ss / x.len() as f64 + eps as f64).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gain) {
        *o = g * (v * inv);
    }
}

/// Rotates the adjacent pairs `(x[2i], x[2i+1])` of every head of `x: [heads, head_dim]` by the
/// angle `pos · inv_freq[i]`.
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, inv_freq: &[f32]) {
    debug_assert_eq!(inv_freq.len() * 2, head_dim);
    // The angles are the same for every head: take sin and cos once per pair (on the stack for
    // any head_dim up to 512, else on the heap).
    let mut stack = [(0.0f32, 0.0f32); 256];
    let mut heap = Vec::new();
    let sc: &mut [(f32, f32)] = if inv_freq.len() <= stack.len() {
        &mut stack[..inv_freq.len()]
    } else {
        heap.resize(inv_freq.len(), (0.0, 0.0));
        &mut heap
    };
    for (v, &f) in sc.iter_mut().zip(inv_freq) {
        // The angle is formed in f32 as transformers does; sin/cos are then taken exactly.
        let angle = (pos as f32 * f) as f64;
        *v = (angle.sin() as f32, angle.cos() as f32);
    }
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(sin, cos)) in head.chunks_exact_mut(2).zip(sc.iter()) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` checked that the CPU has AVX2 + FMA.
        return unsafe { crate::kernels::x86::ops::softmax(x) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        return crate::kernels::neon::ops::softmax(x);
    }
    reference::softmax(x)
}

/// SwiGLU's gate: `gate[i] = silu(gate[i]) · up[i]` with `silu(x) = x · σ(x)`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` checked that the CPU has AVX2 + FMA.
        return unsafe { crate::kernels::x86::ops::silu_mul(gate, up) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        return crate::kernels::neon::ops::silu_mul(gate, up);
    }
    reference::silu_mul(gate, up)
}

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// What a KV cache holds: f32, or f16 (llama.cpp's default: half the bytes to keep and to
/// stream each decode step, every value rounded to nearest once when stored). Attention widens f16 keys and values a block at a time into f32 and runs the
/// f32 arithmetic on them, so its results are those of the widened cache on every path.
pub trait KvElem: Copy + Default + Send + Sync + 'static {
    /// Floats of [`attention`]'s scratch the widening takes (beyond the scores) for heads of
    /// `head_dim`.
    fn scratch(head_dim: usize) -> usize;
    /// `rows` in their stored type.
    fn rows(rows: &[Self]) -> KvRows<'_>;
    /// `x` rounded to this type (to nearest, ties to even), into `out`.
    fn store(x: &[f32], out: &mut [Self]);
}

/// A cache's keys or values in the type it holds.
pub enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl KvElem for f32 {
    fn scratch(_: usize) -> usize {
        0
    }
    #[inline(always)]
    fn rows(rows: &[f32]) -> KvRows<'_> {
        KvRows::F32(rows)
    }
    fn store(x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(x)
    }
}

impl KvElem for half::f16 {
    /// A block of keys or values.
    fn scratch(head_dim: usize) -> usize {
        SCORE_BLOCK * head_dim
    }
    #[inline(always)]
    fn rows(rows: &[half::f16]) -> KvRows<'_> {
        KvRows::F16(rows)
    }
    fn store(x: &[f32], out: &mut [half::f16]) {
        use half::slice::HalfFloatSliceExt;
        out.convert_from_f32_slice(x)
    }
}

/// Positions `t0..t0 + nt` of a kv head's `rows` (`hd` floats a position) as f32, in `buf`
/// where they must be widened, with the next block asked for while this one is used.
///
/// The widening is called here, where the path's features are known (every function down to
/// the path's entry point inlined): handed to the element type as a function value instead, it
/// ran out of line without them, its intrinsics called one at a time (the f16 cache 2.7x slower
/// than the f32 one in L3, `attn_speed`).
#[inline(always)]
fn block<'a, P: AttnPrims, E: KvElem>(
    rows: &'a [E],
    t0: usize,
    nt: usize,
    hd: usize,
    buf: &'a mut [f32],
) -> &'a [f32] {
    let next = &rows[(t0 + nt) * hd..];
    P::prefetch(&next[..next.len().min(SCORE_BLOCK * hd)]);
    match E::rows(&rows[t0 * hd..][..nt * hd]) {
        KvRows::F32(x) => x,
        KvRows::F16(h) => {
            let b = &mut buf[..h.len()];
            P::widen(h, b);
            b
        }
    }
}

/// Causal attention of one query position over the cached keys and values `0..n_past`.
///
/// `q: [n_heads, head_dim]`, `out: [n_heads, head_dim]`; `k, v: [n_kv_heads, cap, head_dim]`,
/// each kv head's positions side by side (`cap ≥ n_past` is the slices' length over
/// `n_kv_heads · head_dim`), so that a head's keys and values are each one stream through
/// memory; `scores`: scratch of at least `n_past` (with `n_heads / n_kv_heads` times that, the
/// query heads of a kv head go together), plus [`KvElem::scratch`]. Query head `h` reads kv
/// head `h / (n_heads / n_kv_heads)`.
pub fn attention<E: KvElem>(
    out: &mut [f32],
    q: &[f32],
    k: &[E],
    v: &[E],
    n_past: usize,
    shape: AttnShape,
    scores: &mut [f32],
) {
    attention_heads(out, q, k, v, &[n_past], shape, 0..shape.n_heads, scores)
}

/// Whether the vector versions may run: the active path is AVX2 or better.
#[cfg(target_arch = "x86_64")]
fn simd() -> bool {
    use crate::isa::Isa;
    matches!(Isa::active(), Isa::Avx2 | Isa::Avx512)
}

/// Whether the vector versions may run: the active path is NEON.
#[cfg(target_arch = "aarch64")]
fn simd() -> bool {
    crate::isa::Isa::active() == crate::isa::Isa::Neon
}

/// The primitives attention is built from; the scalar reference and the SIMD path share
/// [`attention_with`].
pub(crate) trait AttnPrims {
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `out[t] = dot(q, rows[t · stride..][..q.len()]) · scale` for `t < out.len()`: the scores
    /// of one head over consecutive positions (a path may compute several at once, in the same
    /// arithmetic as [`AttnPrims::dot`]).
    fn scores(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        for (t, o) in out.iter_mut().enumerate() {
            *o = Self::dot(q, &rows[t * stride..][..q.len()]) * scale;
        }
    }
    /// For each of the `out.len() / hd` heads `j`: `out[j · hd + d] += Σ_t p[j · ps + t] ·
    /// rows[t · stride + d]` over `t < n`, `d < hd` (the fields of `m`), each element summed
    /// onto the output in the order of `t` (so a head's result does not depend on the heads
    /// beside it, nor on the blocks of positions it is taken in).
    fn mix(out: &mut [f32], p: &[f32], rows: &[f32], m: Mix);
    fn softmax(x: &mut [f32]);
    /// `dst[i] = src[i]` as f32 (exact).
    fn widen(src: &[half::f16], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
    /// A hint that `x` is read soon: the next block of keys while this one is scored, so that
    /// the memory's reads overlap the arithmetic (decode deep in a context streams the whole
    /// cache from memory).
    fn prefetch<E>(_x: &[E]) {}
}

/// The shape of one [`AttnPrims::mix`]: head size, the weights' row stride, positions and the
/// value rows' stride.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mix {
    pub hd: usize,
    pub ps: usize,
    pub n: usize,
    pub stride: usize,
}

/// Positions per block of scores (64 keys of 128 floats: 32 KiB).
const SCORE_BLOCK: usize = 64;

/// Attention of query rows of one sequence for the query heads `heads` (see [`attention`]):
/// row `r` of `q: [rows, n_heads · head_dim]` attends over positions `0..n_past[r]` of `k` and
/// `v`, and its result for the `heads` goes to row `r` of `out: [rows, heads.len() · head_dim]`.
///
/// The query heads that share a kv head (grouped-query attention) and the rows are taken
/// together, as many heads as `scores` has room for (`rows · max n_past` floats each): each
/// block of keys and values is then read (and widened, for an f16 cache) once for all of them
/// instead of once per head and row, which matters once the cache outgrows the caches of the
/// core. Every row and head gets the same operations in the same order as alone: the same
/// blocks of positions, each cut at the row's own `n_past`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_with<P: AttnPrims, E: KvElem>(
    out: &mut [f32],
    q: &[f32],
    k: &[E],
    v: &[E],
    n_past: &[usize],
    shape: AttnShape,
    heads: std::ops::Range<usize>,
    scores: &mut [f32],
) {
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim,
    } = shape;
    let (rows, qd, od) = (n_past.len(), n_heads * head_dim, heads.len() * head_dim);
    let max_past = n_past.iter().copied().max().unwrap_or(0);
    let kv_dim = n_kv_heads * head_dim;
    let cap = k.len() / kv_dim.max(1);
    assert!(
        k.len() == cap * kv_dim && v.len() == k.len() && cap >= max_past,
        "the cache is not [{n_kv_heads}, ≥ {max_past}, {head_dim}]"
    );
    assert!(
        q.len() == rows * qd && out.len() == rows * od,
        "{rows} query rows"
    );
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (scores, buf) = scores.split_at_mut(scores.len() - E::scratch(head_dim));
    let room = (scores.len() / (rows * max_past).max(1)).max(1);
    let first = heads.start;
    let mut h0 = heads.start;
    while h0 < heads.end {
        // Query heads h0..h1 share kv head `kvh`; row `r`'s scores for head `h` are
        // `sc[((r · nh) + h − h0) · max_past..][..n_past[r]]`.
        let kvh = h0 / group;
        let h1 = heads.end.min((kvh + 1) * group).min(h0 + room);
        let nh = h1 - h0;
        let head = kvh * cap * head_dim..(kvh * cap + max_past) * head_dim;
        let (kh, vh) = (&k[head.clone()], &v[head]);
        let sc = &mut scores[..rows * nh * max_past];
        // Positions in blocks whose keys stay in L1 while each row and head takes them.
        for t0 in (0..max_past).step_by(SCORE_BLOCK) {
            let kt = block::<P, E>(kh, t0, (max_past - t0).min(SCORE_BLOCK), head_dim, buf);
            for (r, &np) in n_past.iter().enumerate().filter(|(_, np)| **np > t0) {
                let nt = (np - t0).min(SCORE_BLOCK);
                for h in h0..h1 {
                    let o = &mut sc[(r * nh + h - h0) * max_past + t0..][..nt];
                    P::scores(
                        &q[r * qd + h * head_dim..][..head_dim],
                        kt,
                        head_dim,
                        scale,
                        o,
                    );
                }
            }
        }
        for (r, &np) in n_past.iter().enumerate() {
            for row in sc[r * nh * max_past..][..nh * max_past].chunks_exact_mut(max_past.max(1)) {
                P::softmax(&mut row[..np]);
            }
        }
        // The values in the same blocks, each head's sums carried from block to block in
        // `out` (an f32 stored and loaded again is the same f32: the same sums as one pass,
        // from zero).
        for r in 0..rows {
            out[r * od + (h0 - first) * head_dim..][..nh * head_dim].fill(0.0);
        }
        for t0 in (0..max_past).step_by(SCORE_BLOCK) {
            let vt = block::<P, E>(vh, t0, (max_past - t0).min(SCORE_BLOCK), head_dim, buf);
            for (r, &np) in n_past.iter().enumerate().filter(|(_, np)| **np > t0) {
                let m = Mix {
                    hd: head_dim,
                    ps: max_past,
                    n: (np - t0).min(SCORE_BLOCK),
                    stride: head_dim,
                };
                let oh = &mut out[r * od + (h0 - first) * head_dim..][..nh * head_dim];
                P::mix(oh, &sc[r * nh * max_past + t0..], vt, m);
            }
        }
        h0 = h1;
    }
}

/// [`attention_with`] on the active path: rows of one sequence, the query heads `heads`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_heads<E: KvElem>(
    out: &mut [f32],
    q: &[f32],
    k: &[E],
    v: &[E],
    n_past: &[usize],
    shape: AttnShape,
    heads: std::ops::Range<usize>,
    scores: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::x86::ops as x86;
        match crate::isa::Isa::active() {
            crate::isa::Isa::Avx512 => {
                // SAFETY: the active path is one this CPU supports.
                return unsafe {
                    x86::attention_avx512(out, q, k, v, n_past, shape, heads, scores)
                };
            }
            crate::isa::Isa::Avx2 => {
                // SAFETY: as above.
                return unsafe { x86::attention(out, q, k, v, n_past, shape, heads, scores) };
            }
            // `Isa::active` only returns paths of this architecture.
            crate::isa::Isa::Scalar | crate::isa::Isa::Neon => {}
        }
    }
    #[cfg(target_arch = "aarch64")]
    if simd() {
        return crate::kernels::neon::ops::attention(out, q, k, v, n_past, shape, heads, scores);
    }
    reference::attention_heads(out, q, k, v, n_past, shape, heads, scores)
}

/// The scalar references of the operations that have SIMD versions.
pub mod reference {
    use super::{AttnPrims, AttnShape, KvElem, Mix, attention_with};
    use crate::matmul::dot_f32;
    pub fn softmax(x: &mut [f32]) {
        let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for v in x.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }

    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
    }

    struct Scalar;
    impl AttnPrims for Scalar {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            dot_f32(a, b)
        }
        fn mix(out: &mut [f32], p: &[f32], rows: &[f32], m: Mix) {
            let Mix { hd, ps, n, stride } = m;
            for (j, oh) in out.chunks_exact_mut(hd.max(1)).enumerate() {
                for (t, &pt) in p[j * ps..][..n].iter().enumerate() {
                    for (o, &v) in oh.iter_mut().zip(&rows[t * stride..][..hd]) {
                        *o += pt * v;
                    }
                }
            }
        }
        fn softmax(x: &mut [f32]) {
            softmax(x)
        }
    }

    pub fn attention<E: KvElem>(
        out: &mut [f32],
        q: &[f32],
        k: &[E],
        v: &[E],
        n_past: usize,
        shape: AttnShape,
        scores: &mut [f32],
    ) {
        attention_heads(out, q, k, v, &[n_past], shape, 0..shape.n_heads, scores)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_heads<E: KvElem>(
        out: &mut [f32],
        q: &[f32],
        k: &[E],
        v: &[E],
        n_past: &[usize],
        shape: AttnShape,
        heads: std::ops::Range<usize>,
        scores: &mut [f32],
    ) {
        attention_with::<Scalar, E>(out, q, k, v, n_past, shape, heads, scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_of_a_constant_row_is_the_gain() {
        let x = [3.0f32; 8];
        let g: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let mut out = [0.0f32; 8];
        rmsnorm(&mut out, &x, &g, 0.0);
        for (o, gi) in out.iter().zip(&g) {
            assert!((o - gi).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position_times_frequency() {
        // One head of dim 4: pair 0 turns by pos·1, pair 1 by pos·0.5.
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        rope(&mut x, 4, 2, &[1.0, 0.5]);
        let (s2, c2, s1, c1) = (2f32.sin(), 2f32.cos(), 1f32.sin(), 1f32.cos());
        let want = [c2, s2, -s1, c1];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn attention_with_one_position_returns_its_value_and_groups_heads() {
        // 4 query heads share 2 kv heads; with one cached position softmax is 1.
        let shape = AttnShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 2,
        };
        let q = [1.0f32; 8];
        let k = [0.5f32; 4];
        let v = [1.0f32, 2.0, 3.0, 4.0];
        let mut out = [0.0f32; 8];
        let mut scores = [0.0f32; 1];
        attention(&mut out, &q, &k, &v, 1, shape, &mut scores);
        assert_eq!(out, [1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn softmax_matches_closed_form() {
        let mut x = [0.0f32, (2.0f32).ln()];
        softmax(&mut x);
        assert!((x[0] - 1.0 / 3.0).abs() < 1e-7 && (x[1] - 2.0 / 3.0).abs() < 1e-7);
    }
}
