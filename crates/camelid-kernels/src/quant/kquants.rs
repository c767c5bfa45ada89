//! The k-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K: one super-block of 256 elements at a time.
//!
//! Layouts and dequantization formulas: ggml `ggml-common.h` and `dequantize_row_q*_K` in
//! `ggml-quants.c`; see the block structs in [`crate::dtype`]. The quantizers are our own: for
//! every sub-block a small search picks the scale (and minimum) with the least squared error,
//! then the sub-block scales are themselves quantized against one super-block scale and the
//! elements are rounded again to the scales that will actually be stored.

use super::{f16_at, put_f16, round_half_away};
use crate::dtype::{QK_K, kscale, q3k_scales};
use half::f16;

// ---------------------------------------------------------------------------------------------
// Dequantization

pub fn dequant_q2_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (e, o) in out.iter_mut().enumerate() {
        let sc = b[e / 16];
        let q = (b[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        *o = d * (sc & 0x0f) as f32 * q as f32 - dmin * (sc >> 4) as f32;
    }
}

pub fn dequant_q3_k(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 108);
    let sc = q3k_scales(&b[96..108]);
    for (e, o) in out.iter_mut().enumerate() {
        let low = (b[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        let high = (b[e % 32] >> (4 * (e / 128) + (e % 128) / 32)) & 1;
        let q = low as i32 - if high == 0 { 4 } else { 0 };
        *o = d * sc[e / 16] as f32 * q as f32;
    }
}

pub fn dequant_q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    for (j, chunk) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = kscale(&b[4..16], j);
        let (ds, dm) = (d * sc as f32, dmin * m as f32);
        let qs = &b[16 + 32 * (j / 2)..][..32];
        for (o, &q) in chunk.iter_mut().zip(qs) {
            let q = if j % 2 == 0 { q & 0x0f } else { q >> 4 };
            *o = ds * q as f32 - dm;
        }
    }
}

pub fn dequant_q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    for (j, chunk) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = kscale(&b[4..16], j);
        let (ds, dm) = (d * sc as f32, dmin * m as f32);
        let qs = &b[48 + 32 * (j / 2)..][..32];
        for (l, (o, &q)) in chunk.iter_mut().zip(qs).enumerate() {
            let lo = if j % 2 == 0 { q & 0x0f } else { q >> 4 };
            let hi = (b[16 + l] >> j) & 1;
            *o = ds * (lo | (hi << 4)) as f32 - dm;
        }
    }
}

pub fn dequant_q6_k(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 208);
    for (e, o) in out.iter_mut().enumerate() {
        let (h, r) = (e / 128, e % 128);
        let ql = b[64 * h + r % 64];
        let lo = if r < 64 { ql & 0x0f } else { ql >> 4 };
        let hi = (b[128 + 32 * h + r % 32] >> (2 * (r / 32))) & 3;
        let sc = b[192 + e / 16] as i8;
        *o = d * sc as f32 * ((lo | (hi << 4)) as i32 - 32) as f32;
    }
}

// ---------------------------------------------------------------------------------------------
// Sub-block fits

/// Rounds to f16 and back, so later steps see the scale that will be stored.
fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

fn round_clamp(v: f32, lo: i32, hi: i32) -> i32 {
    round_half_away(v).clamp(lo, hi)
}

/// Best `s` for `x ≈ s · q` with integer `q` in `lo..=hi` (lo < 0 < hi): tries the inverse scales
/// that put the extreme value near either end of the range, and for each the least-squares `s`
/// of the rounded levels. Returns `s`; the caller rounds again with the stored scale.
fn fit_type0(x: &[f32], lo: i32, hi: i32) -> f32 {
    let max = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    if max.abs() < 1e-30 {
        return 0.0;
    }
    let mut best = (0.0f32, f32::NEG_INFINITY);
    for end in [lo as f32, hi as f32] {
        for k in -10..=10 {
            // `max` lands on `end` nudged by a tenth of a step each way.
            let target = end - end.signum() * 0.1 * k as f32;
            let is = target / max;
            let (mut sxq, mut sqq) = (0.0f32, 0.0f32);
            for &v in x {
                let q = round_clamp(v * is, lo, hi) as f32;
                sxq += v * q;
                sqq += q * q;
            }
            // The squared error at the best s is Σx² − (Σxq)²/Σq²; maximize the second term.
            if sqq > 0.0 && sxq * sxq / sqq > best.1 {
                best = (sxq / sqq, sxq * sxq / sqq);
            }
        }
    }
    best.0
}

/// Best `(s, m)` for `x ≈ s · q − m` with integer `q` in `0..=top` and `m ≥ 0` (the k-quant
/// "type-1" form): tries a grid of ranges starting at `min(x, 0)`, refits `s` and `m` by least
/// squares on the rounded levels, and keeps the pair with the least squared error.
fn fit_type1(x: &[f32], top: i32) -> (f32, f32) {
    let min = x.iter().fold(0.0f32, |m, &v| m.min(v));
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max - min < 1e-30 {
        // All equal and ≤ 0, or all zero: only the minimum is needed.
        return (0.0, -min);
    }
    let n = x.len() as f32;
    let err = |s: f32, m: f32| -> f32 {
        let is = if s > 0.0 { 1.0 / s } else { 0.0 };
        x.iter()
            .map(|&v| {
                let q = round_clamp((v + m) * is, 0, top) as f32;
                (s * q - m - v).powi(2)
            })
            .sum()
    };
    let mut best = ((max - min) / top as f32, -min);
    let mut best_err = err(best.0, best.1);
    for k in -10..=10 {
        let s0 = (max - min) / (top as f32 + 0.1 * k as f32);
        let (mut s, mut m) = (s0, -min);
        for _ in 0..2 {
            let is = 1.0 / s;
            let (mut sq, mut sqq, mut sx, mut sxq) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for &v in x {
                let q = round_clamp((v + m) * is, 0, top) as f32;
                sq += q;
                sqq += q * q;
                sx += v;
                sxq += v * q;
            }
            // Least squares of v ≈ s·q + c over (s, c), with c = −m kept ≤ 0.
            let det = n * sqq - sq * sq;
            if det <= 0.0 {
                break;
            }
            let mut ns = (n * sxq - sq * sx) / det;
            let mut c = (sqq * sx - sq * sxq) / det;
            if c > 0.0 {
                c = 0.0;
                ns = sxq / sqq;
            }
            if ns <= 0.0 {
                break;
            }
            (s, m) = (ns, -c);
            let e = err(s, m);
            if e < best_err {
                best = (s, m);
                best_err = e;
            }
        }
    }
    best
}

/// Quantizes sub-block scales `v` (all ≥ 0) to integers in `0..=top` against a common scale,
/// rounded to f16. Returns the stored scale and the integers.
fn quantize_scales<const N: usize>(v: &[f32; N], top: u8) -> (f32, [u8; N]) {
    let max = v.iter().fold(0.0f32, |m, &s| m.max(s));
    let d = f16_round(max / top as f32);
    let mut l = [0u8; N];
    if d > 0.0 {
        for (q, &s) in l.iter_mut().zip(v) {
            *q = (s / d).round().clamp(0.0, top as f32) as u8;
        }
    }
    (d, l)
}

/// Squared error of one type-1 sub-block at integer scale `ls` and minimum `lm`, and its levels.
fn type1_err(x: &[f32], d: f32, dmin: f32, ls: u8, lm: u8, top: i32, q: &mut [u8]) -> f32 {
    let (ds, dm) = (d * ls as f32, dmin * lm as f32);
    let is = if ds != 0.0 { 1.0 / ds } else { 0.0 };
    let mut e = 0.0f32;
    for (l, &v) in q.iter_mut().zip(x) {
        *l = round_clamp((v + dm) * is, 0, top) as u8;
        e += (ds * *l as f32 - dm - v).powi(2);
    }
    e
}

/// Type-1 super-block fit shared by Q2_K, Q4_K, Q5_K: per sub-block (s, m) fits, their
/// quantization to `0..=scale_top`, then for each sub-block the neighbouring integer scale and
/// minimum with the least error (rounding the fitted pair is not always best once the elements
/// are rounded again). Returns (d, dmin, integer scales, integer mins, levels).
fn fit_type1_superblock<const N: usize>(
    x: &[f32],
    top: i32,
    scale_top: u8,
) -> (f32, f32, [u8; N], [u8; N], [u8; QK_K]) {
    let sub = QK_K / N;
    let mut s = [0.0f32; N];
    let mut m = [0.0f32; N];
    for j in 0..N {
        (s[j], m[j]) = fit_type1(&x[j * sub..][..sub], top);
    }
    let (d, mut ls) = quantize_scales(&s, scale_top);
    let (dmin, mut lm) = quantize_scales(&m, scale_top);
    let mut q = [0u8; QK_K];
    let mut tmp = [0u8; 32];
    for j in 0..N {
        let xj = &x[j * sub..][..sub];
        let (ls0, lm0) = (ls[j] as i32, lm[j] as i32);
        let mut best = f32::INFINITY;
        for a in (ls0 - 1).max(0)..=(ls0 + 1).min(scale_top as i32) {
            for b in (lm0 - 1).max(0)..=(lm0 + 1).min(scale_top as i32) {
                let e = type1_err(xj, d, dmin, a as u8, b as u8, top, &mut tmp[..sub]);
                if e < best {
                    best = e;
                    (ls[j], lm[j]) = (a as u8, b as u8);
                    q[j * sub..][..sub].copy_from_slice(&tmp[..sub]);
                }
            }
        }
    }
    (d, dmin, ls, lm, q)
}

/// Type-0 super-block fit with 16 sub-blocks of 16 (Q3_K, Q6_K): per sub-block scale fits,
/// their quantization to `sc_lo..=sc_hi`, then the neighbouring integer scale with the least
/// error. The super-block scale is tried at both ends of the range and one f16 step up, since
/// small scales land among the f16 subnormals where rounding is coarse. Returns (d, scales,
/// levels offset by `-lo` so they are non-negative).
fn fit_type0_superblock(
    x: &[f32],
    lo: i32,
    hi: i32,
    sc_lo: i32,
    sc_hi: i32,
) -> (f32, [i32; 16], [u8; QK_K]) {
    let mut s = [0.0f32; 16];
    for (j, sj) in s.iter_mut().enumerate() {
        *sj = fit_type0(&x[16 * j..][..16], lo, hi);
    }
    let max = s
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let mut best = (f32::INFINITY, 0.0f32, [0i32; 16], [(-lo) as u8; QK_K]);
    if max == 0.0 {
        return (0.0, best.2, best.3);
    }
    for base in [max / sc_hi as f32, max / sc_lo as f32] {
        let d0 = f16::from_f32(base.abs());
        for d in [d0, f16::from_bits(d0.to_bits() + 1)] {
            let d = d.to_f32();
            let mut total = 0.0f32;
            let mut ls = [0i32; 16];
            let mut q = [(-lo) as u8; QK_K];
            for j in 0..16 {
                let xj = &x[16 * j..][..16];
                let l0 = round_clamp(s[j] / d, sc_lo, sc_hi);
                let mut bj = f32::INFINITY;
                for a in (l0 - 1).max(sc_lo)..=(l0 + 1).min(sc_hi) {
                    let ds = d * a as f32;
                    let is = if ds != 0.0 { 1.0 / ds } else { 0.0 };
                    let mut e = 0.0f32;
                    let mut tmp = [0u8; 16];
                    for (l, &v) in tmp.iter_mut().zip(xj) {
                        let k = round_clamp(v * is, lo, hi);
                        *l = (k - lo) as u8;
                        e += (ds * k as f32 - v).powi(2);
                    }
                    if e < bj {
                        bj = e;
                        ls[j] = a;
                        q[16 * j..][..16].copy_from_slice(&tmp);
                    }
                }
                total += bj;
            }
            if total < best.0 {
                best = (total, d, ls, q);
            }
        }
    }
    (best.1, best.2, best.3)
}

// ---------------------------------------------------------------------------------------------
// Quantization

/// Packs 2-bit levels as Q2_K/Q3_K store their low bits.
fn pack_2bit(q: &[u8; QK_K], qs: &mut [u8]) {
    for (e, &l) in q.iter().enumerate() {
        let i = 32 * (e / 128) + e % 32;
        if (e % 128) < 32 {
            qs[i] = 0;
        }
        qs[i] |= (l & 3) << (2 * ((e % 128) / 32));
    }
}

/// Packs the Q4_K/Q5_K 6-bit scales and minimums (inverse of [`kscale`]).
fn pack_kscales(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
    s.fill(0);
    for j in 0..8 {
        if j < 4 {
            s[j] |= ls[j] & 63;
            s[j + 4] |= lm[j] & 63;
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
}

pub fn quant_q2_k(x: &[f32], b: &mut [u8]) {
    let (d, dmin, ls, lm, q) = fit_type1_superblock::<16>(x, 3, 15);
    for j in 0..16 {
        b[j] = ls[j] | (lm[j] << 4);
    }
    pack_2bit(&q, &mut b[16..80]);
    put_f16(b, 80, d);
    put_f16(b, 82, dmin);
}

pub fn quant_q3_k(x: &[f32], b: &mut [u8]) {
    let (d, ls, q) = fit_type0_superblock(x, -4, 3, -32, 31);
    // hmask: a set bit means the level is ≥ 4 after the +4 offset (no 4 subtracted).
    b[..32].fill(0);
    for (e, &l) in q.iter().enumerate() {
        if l >= 4 {
            b[e % 32] |= 1 << (4 * (e / 128) + (e % 128) / 32);
        }
    }
    pack_2bit(&q, &mut b[32..96]);
    let s = &mut b[96..108];
    s.fill(0);
    for (j, &l) in ls.iter().enumerate() {
        let v = (l + 32) as u8;
        if j < 8 {
            s[j] |= v & 0x0f;
        } else {
            s[j - 8] |= (v & 0x0f) << 4;
        }
        s[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
    }
    put_f16(b, 108, d);
}

pub fn quant_q4_k(x: &[f32], b: &mut [u8]) {
    let (d, dmin, ls, lm, q) = fit_type1_superblock::<8>(x, 15, 63);
    put_f16(b, 0, d);
    put_f16(b, 2, dmin);
    pack_kscales(&ls, &lm, &mut b[4..16]);
    for g in 0..4 {
        for l in 0..32 {
            b[16 + 32 * g + l] = q[64 * g + l] | (q[64 * g + 32 + l] << 4);
        }
    }
}

pub fn quant_q5_k(x: &[f32], b: &mut [u8]) {
    let (d, dmin, ls, lm, q) = fit_type1_superblock::<8>(x, 31, 63);
    put_f16(b, 0, d);
    put_f16(b, 2, dmin);
    pack_kscales(&ls, &lm, &mut b[4..16]);
    b[16..48].fill(0);
    for (e, &l) in q.iter().enumerate() {
        b[16 + e % 32] |= (l >> 4) << (e / 32);
    }
    for g in 0..4 {
        for l in 0..32 {
            b[48 + 32 * g + l] = (q[64 * g + l] & 0x0f) | ((q[64 * g + 32 + l] & 0x0f) << 4);
        }
    }
}

pub fn quant_q6_k(x: &[f32], b: &mut [u8]) {
    let (d, ls, q) = fit_type0_superblock(x, -32, 31, -128, 127);
    b[..192].fill(0);
    for (e, &l) in q.iter().enumerate() {
        let (h, r) = (e / 128, e % 128);
        b[64 * h + r % 64] |= if r < 64 { l & 0x0f } else { (l & 0x0f) << 4 };
        b[128 + 32 * h + r % 32] |= (l >> 4) << (2 * (r / 32));
    }
    for (j, &l) in ls.iter().enumerate() {
        b[192 + j] = l as i8 as u8;
    }
    put_f16(b, 208, d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kscale_packing_round_trips() {
        let ls: [u8; 8] = [0, 1, 17, 63, 32, 5, 48, 62];
        let lm: [u8; 8] = [63, 2, 33, 0, 16, 61, 7, 40];
        let mut s = [0u8; 12];
        pack_kscales(&ls, &lm, &mut s);
        for j in 0..8 {
            assert_eq!(kscale(&s, j), (ls[j], lm[j]), "sub-block {j}");
        }
    }

    #[test]
    fn type0_fit_is_exact_on_a_grid() {
        // x = 0.5 · q for q in -4..=3 is representable exactly.
        let x: Vec<f32> = (0..16).map(|i| 0.5 * ((i % 8) as f32 - 4.0)).collect();
        let s = fit_type0(&x, -4, 3);
        assert!((s - 0.5).abs() < 1e-6, "{s}");
    }

    #[test]
    fn type1_fit_is_exact_on_a_grid() {
        // x = 0.25 · q − 1 for q in 0..=15.
        let x: Vec<f32> = (0..32).map(|i| 0.25 * (i % 16) as f32 - 1.0).collect();
        let (s, m) = fit_type1(&x, 15);
        assert!((s - 0.25).abs() < 1e-5 && (m - 1.0).abs() < 1e-5, "{s} {m}");
    }
}
