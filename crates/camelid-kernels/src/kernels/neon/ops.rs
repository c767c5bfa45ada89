//! NEON versions of the element-wise operations (SwiGLU, softmax) and of attention's
//! primitives.
//!
//! `exp` as on x86 (`kernels::x86::ops`): `2^n · e^r` with `n = round(x · log2 e)`, `e^r` by the
//! degree-6 polynomial of Cephes `expf` (S. Moshier, Cephes Math Library), `ln 2` in two parts.

use std::arch::aarch64::*;

use crate::ops::{AttnPrims, AttnShape, KvElem, Mix, attention_with};

/// `e^x` for four lanes; inputs clamped to `[-87.3, 88.7]`, where `e^x` is finite and normal.
#[inline(always)]
fn exp4(x: float32x4_t) -> float32x4_t {
    // SAFETY: NEON is part of the aarch64 base ISA.
    unsafe {
        let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3)), vdupq_n_f32(88.7));
        let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
        let r = vfmsq_f32(x, n, vdupq_n_f32(0.693_359_4));
        let r = vfmsq_f32(r, n, vdupq_n_f32(-2.121_944_4e-4));
        let mut p = vdupq_n_f32(1.987_569_1e-4);
        for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            p = vfmaq_f32(vdupq_n_f32(c), p, r);
        }
        let r2 = vmulq_f32(r, r);
        let e = vaddq_f32(vfmaq_f32(r, p, r2), vdupq_n_f32(1.0));
        // Multiply by 2^n through the exponent bits (n is within ±127 after the clamp).
        let bits = vshlq_n_s32::<23>(vcvtq_s32_f32(n));
        vreinterpretq_f32_s32(vaddq_s32(vreinterpretq_s32_f32(e), bits))
    }
}

pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let main = n / 4 * 4;
    let mut i = 0;
    // SAFETY: `i + 4 ≤ main ≤ n` for every vector access; NEON is in the base ISA.
    unsafe {
        while i < main {
            let g = vld1q_f32(gate.as_ptr().add(i));
            let u = vld1q_f32(up.as_ptr().add(i));
            let e = exp4(vnegq_f32(g));
            let s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0), e));
            vst1q_f32(gate.as_mut_ptr().add(i), vmulq_f32(s, u));
            i += 4;
        }
    }
    crate::ops::reference::silu_mul(&mut gate[main..n], &up[main..n]);
}

pub fn softmax(x: &mut [f32]) {
    let n = x.len();
    let main = n / 4 * 4;
    // SAFETY: every vector access is below `main ≤ n`; NEON is in the base ISA.
    unsafe {
        let mut m = vdupq_n_f32(f32::NEG_INFINITY);
        let mut i = 0;
        while i < main {
            m = vmaxq_f32(m, vld1q_f32(x.as_ptr().add(i)));
            i += 4;
        }
        let mut max = vmaxvq_f32(m);
        for &v in &x[main..] {
            max = max.max(v);
        }
        let mv = vdupq_n_f32(max);
        let mut s = vdupq_n_f32(0.0);
        i = 0;
        while i < main {
            let e = exp4(vsubq_f32(vld1q_f32(x.as_ptr().add(i)), mv));
            vst1q_f32(x.as_mut_ptr().add(i), e);
            s = vaddq_f32(s, e);
            i += 4;
        }
        let mut sum = vaddvq_f32(s);
        for v in &mut x[main..] {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        i = 0;
        while i < main {
            let p = x.as_mut_ptr().add(i);
            vst1q_f32(p, vmulq_n_f32(vld1q_f32(p), inv));
            i += 4;
        }
        for v in &mut x[main..] {
            *v *= inv;
        }
    }
}

/// Vectors of four of one head's outputs kept in registers while the value rows stream past.
const MIX_VECS: usize = 8;

struct Neon;

impl AttnPrims for Neon {
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let main = n / 16 * 16;
        // SAFETY: accesses below `main ≤ n`; NEON is in the base ISA.
        unsafe {
            let mut s = [vdupq_n_f32(0.0); 4];
            let mut i = 0;
            while i < main {
                let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
                for k in 0..4 {
                    s[k] = vfmaq_f32(s[k], vld1q_f32(pa.add(4 * k)), vld1q_f32(pb.add(4 * k)));
                }
                i += 16;
            }
            let mut sum = vaddvq_f32(vaddq_f32(vaddq_f32(s[0], s[1]), vaddq_f32(s[2], s[3])));
            for j in main..n {
                sum += a[j] * b[j];
            }
            sum
        }
    }

    /// One head at a time (so a head's result does not depend on its company), up to
    /// [`MIX_VECS`] vectors of its outputs at once: one fused multiply-add per element and row,
    /// in row order onto the outputs; the dimensions past the last whole vector one by one, also
    /// fused.
    fn mix(out: &mut [f32], p: &[f32], rows: &[f32], m: Mix) {
        let Mix { hd, ps, n, stride } = m;
        let g = out.len() / hd.max(1);
        assert!(out.len() == g * hd && (g == 0 || n == 0 || p.len() >= (g - 1) * ps + n));
        assert!(n == 0 || (n - 1) * stride + hd <= rows.len());
        let whole = hd / 4;
        for j in 0..g {
            let mut v0 = 0;
            while v0 < whole {
                let nv = (whole - v0).min(MIX_VECS);
                // SAFETY: NEON is in the base ISA.
                let mut acc = unsafe { [vdupq_n_f32(0.0); MIX_VECS] };
                // SAFETY: row `t < n` holds `hd` floats at `t · stride` (asserted) and
                // `4 · (v0 + nv) ≤ hd`; head `j < g` has `hd` outputs at `j · hd`.
                unsafe {
                    let o = out.as_mut_ptr().add(j * hd + 4 * v0);
                    for (k, a) in acc.iter_mut().enumerate().take(nv) {
                        *a = vld1q_f32(o.add(4 * k));
                    }
                    for t in 0..n {
                        let r = rows.as_ptr().add(t * stride + 4 * v0);
                        let pt = p[j * ps + t];
                        for k in 0..nv {
                            acc[k] = vfmaq_n_f32(acc[k], vld1q_f32(r.add(4 * k)), pt);
                        }
                    }
                    for k in 0..nv {
                        vst1q_f32(o.add(4 * k), acc[k]);
                    }
                }
                v0 += nv;
            }
            for d in whole * 4..hd {
                let mut o = out[j * hd + d];
                for t in 0..n {
                    o = p[j * ps + t].mul_add(rows[t * stride + d], o);
                }
                out[j * hd + d] = o;
            }
        }
    }

    fn softmax(x: &mut [f32]) {
        softmax(x)
    }
}

/// [`crate::ops::attention`] for the query heads `heads` on NEON.
#[allow(clippy::too_many_arguments)]
pub fn attention<E: KvElem>(
    out: &mut [f32],
    q: &[f32],
    k: &[E],
    v: &[E],
    n_past: &[usize],
    shape: AttnShape,
    heads: std::ops::Range<usize>,
    scores: &mut [f32],
) {
    attention_with::<Neon, E>(out, q, k, v, n_past, shape, heads, scores)
}
