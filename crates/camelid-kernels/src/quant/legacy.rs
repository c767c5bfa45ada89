//! The 32-element formats Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1: one block at a time.
//!
//! Layouts: ggml `ggml-common.h`. The quantizers follow the rounding rules of ggml's reference
//! quantizers (`quantize_row_q*_ref` in `ggml-quants.c`), so a file we write holds what
//! llama-quantize writes for the same input: Q8_0 maps the largest magnitude to ±127; Q4_0 and
//! Q5_0 map the value of largest magnitude, sign included, to the most negative level (−8, −16),
//! which leaves one level more on that side; Q4_1 and Q5_1 span `[min, max]` evenly.

use super::{f16_at, put_f16, round_half_away};
use crate::dtype::QK;

pub fn dequant_q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..34]) {
        *o = d * (q as i8) as f32;
    }
}

/// The two halves of a block's 32 outputs beside its 16 bytes of nibbles (zipped, so that the
/// loops below carry no bounds checks and vectorize).
fn halves<'a>(
    qs: &'a [u8],
    out: &'a mut [f32],
) -> impl Iterator<Item = ((&'a mut f32, &'a mut f32), &'a u8)> {
    let (lo, hi) = out[..QK].split_at_mut(QK / 2);
    lo.iter_mut().zip(hi.iter_mut()).zip(&qs[..QK / 2])
}

pub fn dequant_q4_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for ((lo, hi), &q) in halves(&b[2..18], out) {
        *lo = d * ((q & 0x0f) as i32 - 8) as f32;
        *hi = d * ((q >> 4) as i32 - 8) as f32;
    }
}

pub fn dequant_q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for ((lo, hi), &q) in halves(&b[4..20], out) {
        *lo = d * (q & 0x0f) as f32 + m;
        *hi = d * (q >> 4) as f32 + m;
    }
}

/// The 5-bit values of a Q5 block: nibbles from `qs`, bit 4 from `qh`.
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut v = [0u8; 32];
    for j in 0..16 {
        v[j] = (qs[j] & 0x0f) | ((((h >> j) & 1) as u8) << 4);
        v[j + 16] = (qs[j] >> 4) | ((((h >> (j + 16)) & 1) as u8) << 4);
    }
    v
}

pub fn dequant_q5_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&q5_values(&b[2..6], &b[6..22])) {
        *o = d * (q as i32 - 16) as f32;
    }
}

pub fn dequant_q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (o, &q) in out.iter_mut().zip(&q5_values(&b[4..8], &b[8..24])) {
        *o = d * q as f32 + m;
    }
}

pub fn quant_q8_0(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    for (q, v) in b[2..34].iter_mut().zip(x) {
        *q = round_half_away(v * id) as i8 as u8;
    }
}

/// The value of largest magnitude, sign included (the first one on ties).
fn signed_max(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

/// Packs 32 levels of at most 4 bits into 16 bytes: element `j` low, element `j + 16` high.
fn pack_nibbles(levels: &[u8; 32], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = (levels[j] & 0x0f) | ((levels[j + 16] & 0x0f) << 4);
    }
}

/// Packs bit 4 of 32 levels into the little-endian `qh` word.
fn pack_high_bits(levels: &[u8; 32], qh: &mut [u8]) {
    let h = levels
        .iter()
        .enumerate()
        .fold(0u32, |h, (j, &l)| h | (((l >> 4) as u32 & 1) << j));
    qh.copy_from_slice(&h.to_le_bytes());
}

/// Type-0 levels `q = x / d + bias` rounded half up and capped at `top`, the ggml rule.
fn levels_type0(x: &[f32], bias: f32, top: u8) -> (f32, [u8; 32]) {
    let d = signed_max(x) / -bias;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut l = [0u8; 32];
    for (q, &v) in l.iter_mut().zip(x) {
        *q = ((v * id + bias + 0.5) as i8).min(top as i8) as u8;
    }
    (d, l)
}

/// Type-1 levels over `[min, max]` in `top` steps.
fn levels_type1(x: &[f32], top: u8) -> (f32, f32, [u8; 32]) {
    let min = x.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let d = (max - min) / top as f32;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut l = [0u8; 32];
    for (q, &v) in l.iter_mut().zip(x) {
        *q = (((v - min) * id + 0.5) as i8).min(top as i8) as u8;
    }
    (d, min, l)
}

pub fn quant_q4_0(x: &[f32], b: &mut [u8]) {
    debug_assert_eq!(x.len(), QK);
    let (d, l) = levels_type0(x, 8.0, 15);
    put_f16(b, 0, d);
    pack_nibbles(&l, &mut b[2..18]);
}

pub fn quant_q4_1(x: &[f32], b: &mut [u8]) {
    let (d, m, l) = levels_type1(x, 15);
    put_f16(b, 0, d);
    put_f16(b, 2, m);
    pack_nibbles(&l, &mut b[4..20]);
}

pub fn quant_q5_0(x: &[f32], b: &mut [u8]) {
    let (d, l) = levels_type0(x, 16.0, 31);
    put_f16(b, 0, d);
    pack_high_bits(&l, &mut b[2..6]);
    pack_nibbles(&l, &mut b[6..22]);
}

pub fn quant_q5_1(x: &[f32], b: &mut [u8]) {
    let (d, m, l) = levels_type1(x, 31);
    put_f16(b, 0, d);
    put_f16(b, 2, m);
    pack_high_bits(&l, &mut b[4..8]);
    pack_nibbles(&l, &mut b[8..24]);
}
