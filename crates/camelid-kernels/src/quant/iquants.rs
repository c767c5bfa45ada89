//! IQ4_NL, IQ4_XS (a non-linear 4-bit codebook) and the ternary TQ1_0, TQ2_0: decoding, and
//! quantizers of our own for the types that need no importance matrix.
//!
//! Layouts: ggml `ggml-common.h` (see the block structs in [`crate::dtype`]); the decoding
//! follows gguf-py's numpy dequantizers (`gguf.quants`), against which the tests check it bit for
//! bit. The codebook is generated from gguf-py (`iq_tables.rs`).

use super::iq_tables::IQ4NL_VALUES;
use super::{f16_at, put_f16};
use half::f16;

// ---------------------------------------------------------------------------------------------
// Decoding.

pub(super) fn dequant_iq4_nl(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    nl_block(d, &b[2..18], out);
}

/// 32 elements from 16 bytes of codebook indices (low nibbles first) at scale `d`.
#[inline]
fn nl_block(d: f32, qs: &[u8], out: &mut [f32]) {
    for (j, &q) in qs.iter().enumerate() {
        out[j] = d * IQ4NL_VALUES[(q & 0x0f) as usize] as f32;
        out[j + 16] = d * IQ4NL_VALUES[(q >> 4) as usize] as f32;
    }
}

/// The 6-bit scale of sub-block `j` of an IQ4_XS super-block, bias 32 removed.
#[inline]
pub(crate) fn iq4xs_scale(b: &[u8], j: usize) -> i32 {
    let high = u16::from_le_bytes([b[2], b[3]]);
    let lo = (b[4 + j / 2] >> (4 * (j % 2))) & 0x0f;
    let hi = ((high >> (2 * j)) & 3) as u8;
    (lo | (hi << 4)) as i32 - 32
}

pub(super) fn dequant_iq4_xs(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, o) in out.chunks_exact_mut(32).enumerate() {
        // gguf-py forms the sub-block scale in f32 first, then multiplies.
        let dl = d * iq4xs_scale(b, j) as f32;
        nl_block(dl, &b[8 + 16 * j..][..16], o);
    }
}

pub(super) fn dequant_tq2_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 64);
    for (e, o) in out.iter_mut().enumerate() {
        *o = d * (tq2_level(b, e) - 1) as f32;
    }
}

/// The 2-bit level (0..4; 3 is not written by the quantizer but decodes as +2) of element `e`.
#[inline]
pub(crate) fn tq2_level(b: &[u8], e: usize) -> i32 {
    ((b[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) as i32
}

/// Trit `n` of byte `q`: the base-3 digits are stored as a fixed-point fraction of 3⁵, so
/// multiplying by `3ⁿ` (mod 256) brings digit `n` to the top and `· 3 >> 8` reads it.
#[inline]
pub(crate) fn trit(q: u8, n: usize) -> i32 {
    let shifted = q.wrapping_mul(3u8.pow(n as u32));
    ((shifted as u16 * 3) >> 8) as i32
}

/// The trit (0..3) of element `e` of a TQ1_0 super-block; see [`crate::dtype::BlockTQ1_0`].
#[inline]
pub(crate) fn tq1_level(b: &[u8], e: usize) -> i32 {
    if e < 160 {
        trit(b[e % 32], e / 32)
    } else if e < 240 {
        trit(b[32 + (e - 160) % 16], (e - 160) / 16)
    } else {
        trit(b[48 + (e - 240) % 4], (e - 240) / 4)
    }
}

pub(super) fn dequant_tq1_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 52);
    for (e, o) in out.iter_mut().enumerate() {
        *o = d * (tq1_level(b, e) - 1) as f32;
    }
}

// ---------------------------------------------------------------------------------------------
// Ternary quantizers: the scale is the largest magnitude, each weight its nearest trit (ties away
// from zero), as ggml's reference quantizers do; the tests compare bytes.

/// `d` and the levels `q + 1 ∈ {0, 1, 2}` of one super-block.
fn ternary(x: &[f32]) -> (f32, [u8; 256]) {
    let d = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut q = [1u8; 256];
    for (l, &v) in q.iter_mut().zip(x) {
        *l = ((v * id).round() as i32 + 1) as u8;
    }
    (d, q)
}

pub(super) fn quant_tq2_0(x: &[f32], b: &mut [u8]) {
    let (d, q) = ternary(x);
    for (i, byte) in b[..64].iter_mut().enumerate() {
        let (h, m) = (i / 32, i % 32);
        *byte = (0..4).fold(0, |acc, n| acc | (q[128 * h + 32 * n + m] << (2 * n)));
    }
    put_f16(b, 64, d);
}

/// Packs `n` trits (most significant first, padded to five digits) into a byte as the fraction
/// `⌈value · 256 / 243⌉`, so that [`trit`] reads them back.
fn pack_trits(t: impl Iterator<Item = u8>, n: usize) -> u8 {
    let mut v = 0u16;
    for l in t {
        v = 3 * v + l as u16;
    }
    v *= 3u16.pow(5 - n as u32);
    ((v * 256).div_ceil(243)) as u8
}

pub(super) fn quant_tq1_0(x: &[f32], b: &mut [u8]) {
    let (d, q) = ternary(x);
    for m in 0..32 {
        b[m] = pack_trits((0..5).map(|n| q[32 * n + m]), 5);
    }
    for m in 0..16 {
        b[32 + m] = pack_trits((0..5).map(|n| q[160 + 16 * n + m]), 5);
    }
    for m in 0..4 {
        b[48 + m] = pack_trits((0..4).map(|n| q[240 + 4 * n + m]), 4);
    }
    put_f16(b, 52, d);
}

// ---------------------------------------------------------------------------------------------
// IQ4 quantizers.
//
// The search of llama.cpp's reference (`quantize_row_iq4_nl_impl`, without an importance
// matrix), written anew: each weight's squared error is weighted by its square, which favours the
// large weights. For a block, each candidate inverse scale `id` assigns every weight its nearest
// codebook level `v(x · id)`, and the best scale for that assignment is the weighted
// least-squares one, `d = Σ w·v·x / Σ w·v²`, which lowers the error by `(Σ w·v·x)² / Σ w·v²`; the
// candidate with the largest reduction wins. The candidates put the block's largest weight `max`
// on or near an end of the codebook: `id = 127 / max`, then `id = (v₀ + k) / max` for
// `k = −7..=7`. (Also trying the other end, `v₁₅ + k`, lowers the weighted error but raised the
// RMS error by up to 2.5% on the test rows, so it is not done.) Where llama.cpp assigns the
// levels at the f32 scale, we assign each weight its nearest level at the stored f16 scale.
// IQ4_XS then stores the sub-block scales as 6-bit multiples of one f16 `d` (`d = −max_scale /
// 32`, as llama.cpp), trying each sub-block's rounded multiple and its two neighbours and keeping
// the one with the least plain squared error (llama.cpp keeps the rounded one; on the test
// matrices this lowers the RMS error by 1–3%, where choosing by the weighted error raised it).

/// The index of the codebook level nearest `v` (ties to the lower level).
#[inline]
fn nearest_level(v: f32) -> u8 {
    // Midpoints between consecutive levels, in order: the index is the count below `v`.
    const MID: [f32; 15] = {
        let mut m = [0.0f32; 15];
        let mut i = 0;
        while i < 15 {
            m[i] = (IQ4NL_VALUES[i] as f32 + IQ4NL_VALUES[i + 1] as f32) * 0.5;
            i += 1;
        }
        m
    };
    MID.partition_point(|&m| m < v) as u8
}

/// The best scale of one block of 32 by the search above (0 for a block of zeros).
fn iq4_block_scale(x: &[f32], w: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        return 0.0;
    }
    let lo = IQ4NL_VALUES[0] as f32;
    let (mut best_d, mut best) = (0.0f32, -1.0f32);
    let candidates = std::iter::once(-lo / max).chain((-7..=7).map(|k| (lo + k as f32) / max));
    for id in candidates {
        let (mut sqx, mut sq2) = (0.0f32, 0.0f32);
        for (&v, &wt) in x.iter().zip(w) {
            let q = IQ4NL_VALUES[nearest_level(v * id) as usize] as f32;
            sqx += wt * q * v;
            sq2 += wt * q * q;
        }
        if sq2 > 0.0 && sqx * sqx > best * sq2 {
            best_d = sqx / sq2;
            best = best_d * sqx;
        }
    }
    best_d
}

/// The indices of 32 weights at the stored scale `d`, packed as nibbles (element `j` low,
/// `j + 16` high).
fn iq4_pack(x: &[f32], d: f32, qs: &mut [u8]) {
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    for j in 0..16 {
        qs[j] = nearest_level(x[j] * id) | (nearest_level(x[j + 16] * id) << 4);
    }
}

/// The weighted squared error of 32 weights at scale `d`, each at its nearest level.
fn iq4_error(x: &[f32], w: &[f32], d: f32) -> f32 {
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    x.iter()
        .zip(w)
        .map(|(&v, &wt)| {
            let e = v - d * IQ4NL_VALUES[nearest_level(v * id) as usize] as f32;
            wt * e * e
        })
        .sum()
}

const ONES: [f32; 32] = [1.0; 32];

fn squares(x: &[f32]) -> [f32; 32] {
    std::array::from_fn(|i| x[i] * x[i])
}

pub(super) fn quant_iq4_nl(x: &[f32], b: &mut [u8]) {
    let d = iq4_block_scale(x, &squares(x));
    let d = f16::from_f32(d).to_f32();
    put_f16(b, 0, d);
    iq4_pack(x, d, &mut b[2..18]);
}

pub(super) fn quant_iq4_xs(x: &[f32], b: &mut [u8]) {
    let ws: Vec<[f32; 32]> = x.chunks_exact(32).map(squares).collect();
    let scales: Vec<f32> = x
        .chunks_exact(32)
        .zip(&ws)
        .map(|(xb, w)| iq4_block_scale(xb, w))
        .collect();
    let max_scale = scales
        .iter()
        .fold(0.0f32, |m, &s| if s.abs() > m.abs() { s } else { m });
    let d = f16::from_f32(-max_scale / 32.0).to_f32();
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    put_f16(b, 0, d);
    let mut high = 0u16;
    b[4..8].fill(0);
    for (j, xb) in x.chunks_exact(32).enumerate() {
        let l0 = (id * scales[j]).round() as i32;
        let l = (l0 - 1..=l0 + 1)
            .map(|l| l.clamp(-32, 31))
            .min_by(|&a, &c| {
                let (ea, ec) = (
                    iq4_error(xb, &ONES, d * a as f32),
                    iq4_error(xb, &ONES, d * c as f32),
                );
                ea.total_cmp(&ec)
            })
            .expect("three candidates");
        let biased = (l + 32) as u8;
        b[4 + j / 2] |= (biased & 0x0f) << (4 * (j % 2));
        high |= ((biased >> 4) as u16) << (2 * j);
        iq4_pack(xb, d * l as f32, &mut b[8 + 16 * j..][..16]);
    }
    b[2..4].copy_from_slice(&high.to_le_bytes());
}
