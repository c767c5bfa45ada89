//! Float weights (F32, F16, BF16) against f32 activations: widen to f32, FMA.
//!
//! Widening is exact, so these products differ from the scalar twin only in the order of the
//! additions. Each weight vector is loaded and widened once for all activation rows of a tile.

use std::arch::x86_64::*;

use super::{Avx2, Avx512, Simd, entry, hsum};
use crate::kernels::Tile;

/// One float weight format.
pub trait FloatW {
    const BYTES: usize;
    /// Eight weights at `p` as f32.
    ///
    /// # Safety
    /// `8 · BYTES` readable bytes; AVX2 + F16C.
    unsafe fn load8(p: *const u8) -> __m256;
    /// One weight.
    fn one(p: &[u8]) -> f32;
}

pub struct F32;
pub struct F16;
pub struct BF16;

impl FloatW for F32 {
    const BYTES: usize = 4;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: caller's contract.
        unsafe { _mm256_loadu_ps(p as *const f32) }
    }
    fn one(p: &[u8]) -> f32 {
        f32::from_le_bytes([p[0], p[1], p[2], p[3]])
    }
}

impl FloatW for F16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: caller's contract.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    fn one(p: &[u8]) -> f32 {
        half::f16::from_le_bytes([p[0], p[1]]).to_f32()
    }
}

impl FloatW for BF16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // bf16 is the top half of an f32.
        // SAFETY: caller's contract.
        unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
        }
    }
    fn one(p: &[u8]) -> f32 {
        half::bf16::from_le_bytes([p[0], p[1]]).to_f32()
    }
}

/// A tile of float weights; `N` activation rows, `U` independent sums per row.
///
/// # Safety
/// As for [`crate::kernels::TileFn`]; AVX2 + FMA + F16C.
#[inline(always)]
unsafe fn tile_body<S: Simd, W: FloatW, const N: usize>(t: &Tile) {
    // Decoding (one activation row) needs more independent sums to hide the FMA latency.
    const U: usize = 4;
    let u = if N == 1 { 4 } else { 2 };
    let step = 8 * u;
    // SAFETY: the tile contract bounds the `nr` weight rows of `cols` and the `N` rows of `cols`
    // activations; the loops stay below `cols`.
    unsafe {
        let main = t.cols / step * step;
        for r in 0..t.nr {
            let w = t.w.add(r * t.row_bytes);
            let x: [*const f32; N] = std::array::from_fn(|i| t.act.f32s.add(i * t.cols));
            let mut acc = [[_mm256_setzero_ps(); U]; N];
            let mut c = 0;
            while c < main {
                for k in 0..u {
                    let wv = W::load8(w.add((c + 8 * k) * W::BYTES));
                    for i in 0..N {
                        let xv = _mm256_loadu_ps(x[i].add(c + 8 * k));
                        acc[i][k] = _mm256_fmadd_ps(wv, xv, acc[i][k]);
                    }
                }
                c += step;
            }
            let row = std::slice::from_raw_parts(w, t.row_bytes);
            for i in 0..N {
                let mut s = acc[i][0];
                for a in &acc[i][1..u] {
                    s = _mm256_add_ps(s, *a);
                }
                let mut v = hsum(s);
                for cc in main..t.cols {
                    v += W::one(&row[cc * W::BYTES..]) * *x[i].add(cc);
                }
                *t.out.add(i * t.ldo + r) = v;
            }
        }
    }
}

pub mod avx2 {
    use super::*;
    entry!("avx2,fma,f16c", Avx2, tile_f32, tile_body, F32);
    entry!("avx2,fma,f16c", Avx2, tile_f16, tile_body, F16);
    entry!("avx2,fma,f16c", Avx2, tile_bf16, tile_body, BF16);
}

pub mod avx512 {
    use super::*;
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_f32,
        tile_body,
        F32
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_f16,
        tile_body,
        F16
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_bf16,
        tile_body,
        BF16
    );
}
