//! Quantization and dequantization of rows: the scalar reference of every weight type.
//!
//! Block formats: ggml `ggml-common.h` (see [`crate::dtype`]). The 32-element formats round as
//! ggml's reference quantizers do ([`legacy`]); the k-quants use our own least-squares search
//! ([`kquants`]), the i-quants without an importance matrix and the ternary types are in
//! [`iquants`]. Rows are read byte by byte (little-endian), so slices need no alignment.

mod grids;
#[rustfmt::skip]
mod iq_tables;
mod iquants;
mod kquants;
mod legacy;

pub(crate) use grids::{Grid, IQ1M, IQ1S, IQ2S, IQ2XS, IQ2XXS, IQ3S, IQ3XXS};
pub use iq_tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, IQ4NL_VALUES, KSIGNS,
};
pub(crate) use iquants::{iq4xs_scale, tq1_level, tq2_level};

use crate::dtype::DType;
use half::{bf16, f16};

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline]
pub(crate) fn put_f16(b: &mut [u8], i: usize, v: f32) {
    b[i..i + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

type BlockFn = fn(&[u8], &mut [f32]);
type QuantFn = fn(&[f32], &mut [u8]);

/// The grid i-quants have no quantizer (theirs needs an importance matrix).
fn no_quantizer(_: &[f32], _: &mut [u8]) {
    unreachable!("checked by quantize_row")
}

/// Whether [`quantize_row`] can write `dtype`: every type but the grid i-quants (IQ3_S, IQ3_XXS,
/// IQ2_*, IQ1_*), whose quantizers need an importance matrix.
pub fn can_quantize(dtype: DType) -> bool {
    !matches!(
        dtype,
        DType::IQ3_S
            | DType::IQ3_XXS
            | DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ2_S
            | DType::IQ1_S
            | DType::IQ1_M
    )
}

/// The per-block routines of a quantized type.
fn block_fns(dtype: DType) -> Option<(BlockFn, QuantFn)> {
    Some(match dtype {
        DType::F32 | DType::F16 | DType::BF16 => return None,
        DType::IQ3_S => (grids::dequant::<IQ3S>, no_quantizer),
        DType::IQ3_XXS => (grids::dequant::<IQ3XXS>, no_quantizer),
        DType::IQ2_XXS => (grids::dequant::<IQ2XXS>, no_quantizer),
        DType::IQ2_XS => (grids::dequant::<IQ2XS>, no_quantizer),
        DType::IQ2_S => (grids::dequant::<IQ2S>, no_quantizer),
        DType::IQ1_S => (grids::dequant::<IQ1S>, no_quantizer),
        DType::IQ1_M => (grids::dequant::<IQ1M>, no_quantizer),
        DType::Q8_0 => (legacy::dequant_q8_0, legacy::quant_q8_0),
        DType::Q4_0 => (legacy::dequant_q4_0, legacy::quant_q4_0),
        DType::Q4_1 => (legacy::dequant_q4_1, legacy::quant_q4_1),
        DType::Q5_0 => (legacy::dequant_q5_0, legacy::quant_q5_0),
        DType::Q5_1 => (legacy::dequant_q5_1, legacy::quant_q5_1),
        DType::Q2_K => (kquants::dequant_q2_k, kquants::quant_q2_k),
        DType::Q3_K => (kquants::dequant_q3_k, kquants::quant_q3_k),
        DType::Q4_K => (kquants::dequant_q4_k, kquants::quant_q4_k),
        DType::Q5_K => (kquants::dequant_q5_k, kquants::quant_q5_k),
        DType::Q6_K => (kquants::dequant_q6_k, kquants::quant_q6_k),
        DType::IQ4_NL => (iquants::dequant_iq4_nl, iquants::quant_iq4_nl),
        DType::IQ4_XS => (iquants::dequant_iq4_xs, iquants::quant_iq4_xs),
        DType::TQ1_0 => (iquants::dequant_tq1_0, iquants::quant_tq1_0),
        DType::TQ2_0 => (iquants::dequant_tq2_0, iquants::quant_tq2_0),
    })
}

/// `x.round()` (halves away from zero, as C's `roundf` in ggml's reference quantizers) for
/// `x.round() as i32` (halves away from zero, as C's `roundf` in ggml's reference quantizers),
/// without the call into libm that `f32::round` costs on a baseline x86-64 build: the cast
/// truncates in one instruction and `x - t` is exact. Saturates as the cast does; NaN gives 0.
#[inline]
pub(crate) fn round_half_away(x: f32) -> i32 {
    let t = x as i32;
    let f = x - t as f32;
    if f >= 0.5 {
        t.saturating_add(1)
    } else if f <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// Dequantizes one row: `src` holds `dst.len()` elements of `dtype`.
///
/// Panics if the lengths disagree; callers validate shapes once at load time.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    assert_eq!(
        Some(src.len()),
        dtype.row_bytes(dst.len()),
        "{dtype} row length"
    );
    match dtype {
        DType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        DType::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        _ => {
            let (deq, _) = block_fns(dtype).expect("quantized type");
            let (bs, bb) = (dtype.block_size(), dtype.block_bytes());
            for (out, b) in dst.chunks_exact_mut(bs).zip(src.chunks_exact(bb)) {
                deq(b, out);
            }
        }
    }
}

/// Quantizes one row of `src.len()` elements into `dst` (exactly `row_bytes` long).
///
/// Panics for a type [`can_quantize`] refuses; callers choose their target types.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) {
    assert!(can_quantize(dtype), "camelid cannot quantize to {dtype}");
    assert_eq!(
        Some(dst.len()),
        dtype.row_bytes(src.len()),
        "{dtype} row length"
    );
    match dtype {
        DType::F32 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&s.to_le_bytes());
            }
        }
        DType::F16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f16::from_f32(*s).to_le_bytes());
            }
        }
        DType::BF16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&bf16::from_f32(*s).to_le_bytes());
            }
        }
        _ => {
            let (_, quant) = block_fns(dtype).expect("quantized type");
            let (bs, bb) = (dtype.block_size(), dtype.block_bytes());
            for (b, x) in dst.chunks_exact_mut(bb).zip(src.chunks_exact(bs)) {
                quant(x, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed blocks: the expected values follow from the block definitions alone.
    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5; nibble j = j (low) and 15 - j (high).
        let mut b = vec![0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | (((15 - j) as u8) << 4);
        }
        let mut out = [0.0f32; 32];
        dequantize_row(DType::Q4_0, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * (j as f32 - 8.0));
            assert_eq!(out[j + 16], 0.5 * (7.0 - j as f32));
        }
    }

    #[test]
    fn q4_1_and_q8_0_blocks_by_hand() {
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        b[4] = 0xf3; // element 0 = 3, element 16 = 15
        let mut out = [0.0f32; 32];
        dequantize_row(DType::Q4_1, &b, &mut out);
        assert_eq!(out[0], -0.25);
        assert_eq!(out[16], 2.75);
        assert_eq!(out[1], -1.0);

        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2] = (-128i8) as u8;
        b[33] = 127;
        dequantize_row(DType::Q8_0, &b, &mut out);
        assert_eq!(out[0], -256.0);
        assert_eq!(out[31], 254.0);
    }

    /// Quantizing then dequantizing stays within half a step of each block's scale.
    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i / 32) as f32))
            .collect();
        for dtype in [
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
        ] {
            let mut q = vec![0u8; dtype.row_bytes(x.len()).unwrap()];
            quantize_row(dtype, &x, &mut q);
            let mut y = vec![0.0f32; x.len()];
            dequantize_row(dtype, &q, &mut y);
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let (lo, hi) = xb
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let step = match dtype {
                    DType::Q8_0 => amax / 127.0,
                    DType::Q4_0 => amax / 8.0,
                    DType::Q5_0 => amax / 16.0,
                    DType::Q4_1 => (hi - lo) / 15.0,
                    _ => (hi - lo) / 31.0,
                };
                // Q4_0 and Q5_0 have one step more below zero than above so the extreme of the other
                // sign is off by up to a whole step; elsewhere rounding costs half a step.
                let steps = if matches!(dtype, DType::Q4_0 | DType::Q5_0) {
                    1.0
                } else {
                    0.5
                };
                for (a, b) in xb.iter().zip(yb) {
                    // f16 rounding of the scale adds a relative 2^-11 per step.
                    assert!(
                        (a - b).abs() <= steps * step * 1.01 + 1e-3 * amax,
                        "{dtype}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod round_tests {
    use super::round_half_away;

    /// The same integer as `f32::round` for halves, their neighbours, every magnitude and the
    /// values a cast saturates.
    #[test]
    fn rounds_as_f32_round() {
        let mut xs = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.49999997,
            -0.49999997,
            127.49999,
            127.5,
            -127.5,
            8388607.5,
            8388608.0,
            2.1e9,
            -2.1e9,
            3e9,
            -3e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            1e-40,
        ];
        let mut v = 1e-3f32;
        while v < 1e10 {
            for x in [v, -v, v.next_up(), -v.next_down()] {
                xs.push(x);
            }
            v *= 1.37;
        }
        for k in -300..300 {
            let h = k as f32 + 0.5;
            xs.extend([h, h.next_up(), h.next_down()]);
        }
        for x in xs {
            assert_eq!(round_half_away(x), x.round() as i32, "{x:e}");
        }
    }
}
