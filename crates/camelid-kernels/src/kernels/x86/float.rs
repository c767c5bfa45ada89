//! Float weights (F32, F16, BF16) against f32 activations: widen to f32, FMA.
//!
//! Widening is exact, so these products differ from the scalar twin only in the order of the
//! additions. The tiles are register-blocked: several weight rows against several activation
//! rows, each weight vector loaded and widened once for all activations and each activation
//! vector once for all rows. The AVX-512 path uses 512-bit vectors here: these loops are all
//! FMAs, which the wide units execute at twice the rate.

use std::arch::x86_64::*;

use super::{Avx2, Avx512, Simd, entry, hsum, prefetch_next};
use crate::kernels::Tile;

/// One float weight format.
pub trait FloatW {
    const BYTES: usize;
    const IS_F16: bool = false;
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
    const IS_F16: bool = true;
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

/// Sixteen weights at `p` as f32 (AVX-512).
///
/// # Safety
/// `16 · W::BYTES` readable bytes; AVX-512F.
#[inline(always)]
pub(super) unsafe fn load16<W: FloatW>(p: *const u8) -> __m512 {
    // SAFETY: caller's contract.
    unsafe {
        match W::BYTES {
            4 => _mm512_loadu_ps(p as *const f32),
            _ if W::IS_F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
            _ => {
                let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
                _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))
            }
        }
    }
}

/// `s` plus the products of columns `from..cols` of the weight row `w` and the activation row
/// `x`, one by one in column order: the columns past the last whole vector, in every float
/// kernel (tiles and panels alike, so that they agree bit for bit).
///
/// # Safety
/// `w` holds `cols` weights and `x` `cols` floats.
#[inline(always)]
pub(super) unsafe fn tail<W: FloatW>(
    mut s: f32,
    w: *const u8,
    x: *const f32,
    from: usize,
    cols: usize,
) -> f32 {
    // SAFETY: caller's contract.
    let (row, x) = unsafe {
        (
            std::slice::from_raw_parts(w, cols * W::BYTES),
            std::slice::from_raw_parts(x, cols),
        )
    };
    for c in from..cols {
        s += W::one(&row[c * W::BYTES..]) * x[c];
    }
    s
}

/// `MR` weight rows against `N` activation rows, register-blocked: each weight vector is
/// loaded (and widened) once for the `N` activations, each activation vector once for the `MR`
/// rows. 256-bit vectors (`WIDE = false`) or 512-bit (`WIDE = true`, AVX-512 only).
///
/// # Safety
/// `w[m]` holds `cols` weights, `x[i]` `cols` floats; the CPU supports the vectors used.
#[inline(always)]
unsafe fn block<W: FloatW, const MR: usize, const N: usize, const WIDE: bool>(
    w: [*const u8; MR],
    x: [*const f32; N],
    cols: usize,
) -> [[f32; N]; MR] {
    let mut out = [[0.0f32; N]; MR];
    // SAFETY: the loops stay below `cols` (caller's contract).
    unsafe {
        let main = if WIDE {
            let main = cols / 16 * 16;
            let mut acc = [[_mm512_setzero_ps(); N]; MR];
            let next = (N == 1 && MR > 1).then(|| w[MR - 1].wrapping_add(cols * W::BYTES));
            let mut c = 0;
            while c < main {
                if let Some(next) = next {
                    prefetch_next(next, c * W::BYTES * MR, 16 * W::BYTES * MR);
                }
                let mut wv = [_mm512_setzero_ps(); MR];
                for m in 0..MR {
                    wv[m] = load16::<W>(w[m].add(c * W::BYTES));
                }
                for i in 0..N {
                    let xv = _mm512_loadu_ps(x[i].add(c));
                    for m in 0..MR {
                        acc[m][i] = _mm512_fmadd_ps(wv[m], xv, acc[m][i]);
                    }
                }
                c += 16;
            }
            for m in 0..MR {
                for i in 0..N {
                    out[m][i] = _mm512_reduce_add_ps(acc[m][i]);
                }
            }
            main
        } else {
            let main = cols / 8 * 8;
            let mut acc = [[_mm256_setzero_ps(); N]; MR];
            let next = (N == 1 && MR > 1).then(|| w[MR - 1].wrapping_add(cols * W::BYTES));
            let mut c = 0;
            while c < main {
                if let Some(next) = next {
                    prefetch_next(next, c * W::BYTES * MR, 8 * W::BYTES * MR);
                }
                let mut wv = [_mm256_setzero_ps(); MR];
                for m in 0..MR {
                    wv[m] = W::load8(w[m].add(c * W::BYTES));
                }
                for i in 0..N {
                    let xv = _mm256_loadu_ps(x[i].add(c));
                    for m in 0..MR {
                        acc[m][i] = _mm256_fmadd_ps(wv[m], xv, acc[m][i]);
                    }
                }
                c += 8;
            }
            for m in 0..MR {
                for i in 0..N {
                    out[m][i] = hsum(acc[m][i]);
                }
            }
            main
        };
        for m in 0..MR {
            for i in 0..N {
                out[m][i] = tail::<W>(out[m][i], w[m], x[i], main, cols);
            }
        }
    }
    out
}

/// A tile of float weights: rows in groups of `MR`, `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`]; the CPU supports the vectors used.
#[inline(always)]
unsafe fn tile_rows<W: FloatW, const MR: usize, const N: usize, const WIDE: bool>(t: &Tile) {
    // SAFETY: the tile contract bounds the `nr` weight rows and the `N` activation rows.
    unsafe {
        let x: [*const f32; N] = std::array::from_fn(|i| t.act.f32s.add(i * t.cols));
        let store = |r: usize, v: &[f32; N]| {
            for (i, s) in v.iter().enumerate() {
                *t.out.add(i * t.ldo + r) = *s;
            }
        };
        let mut r = 0;
        while r + MR <= t.nr {
            let w: [*const u8; MR] = std::array::from_fn(|m| t.w.add((r + m) * t.row_bytes));
            let v = block::<W, MR, N, WIDE>(w, x, t.cols);
            for (m, vm) in v.iter().enumerate() {
                store(r + m, vm);
            }
            r += MR;
        }
        while r < t.nr {
            let v = block::<W, 1, N, WIDE>([t.w.add(r * t.row_bytes)], x, t.cols);
            store(r, &v[0]);
            r += 1;
        }
    }
}

/// Weight rows per register block of a decode tile (one activation row): eight independent
/// sums, so that two FMA units with a latency of four cycles each have eight FMAs in flight.
/// With fewer (two rows on AVX2, four on AVX-512, as the blocks for several activation rows
/// take) the sums' dependency chains, not the units, bound a matrix-vector product whose
/// weights come from cache. Each output's arithmetic is the same whatever the block's rows.
const DECODE_MR: usize = 8;

/// AVX2: 16 registers hold 2 × 4 sums, two weight and one activation vector; a decode tile
/// takes [`DECODE_MR`] rows.
#[inline(always)]
unsafe fn tile_body<S: Simd, W: FloatW, const N: usize>(t: &Tile) {
    // SAFETY: forwarded.
    unsafe {
        if N == 1 {
            tile_rows::<W, DECODE_MR, 1, false>(t)
        } else {
            tile_rows::<W, 2, N, false>(t)
        }
    }
}

/// AVX-512: 32 registers hold 4 × 4 sums of 16 lanes, four weight and one activation vector;
/// a decode tile takes [`DECODE_MR`] rows.
#[inline(always)]
unsafe fn tile_body_wide<S: Simd, W: FloatW, const N: usize>(t: &Tile) {
    // SAFETY: forwarded.
    unsafe {
        if N == 1 {
            tile_rows::<W, DECODE_MR, 1, true>(t)
        } else {
            tile_rows::<W, 4, N, true>(t)
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
        tile_body_wide,
        F32
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_f16,
        tile_body_wide,
        F16
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_bf16,
        tile_body_wide,
        BF16
    );
}
