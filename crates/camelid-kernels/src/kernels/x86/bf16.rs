//! BF16 weights against bf16 activations (the fast precision): `vdpbf16ps` where the CPU has
//! AVX512-BF16, else the same steps as FMAs on 256-bit vectors.
//!
//! The arithmetic is the scalar twin's (`scalar::dot_bf16_bf16`): sixteen f32 lanes, lane `j`
//! adding the products of columns `2j + 1` then `2j` of each 32-column chunk, then
//! [`reduce16`]. Weights are read as they are in the file, two per 32-bit lane: no widening,
//! and one `vdpbf16ps` does the 32 multiply-adds for which the exact path needs two widenings
//! and two FMAs. Register blocking as the float tiles (`float.rs`): eight weight rows for one
//! activation row (eight independent sums), four by four otherwise. Every output gets the same
//! operations whatever the block, so a row's result does not depend on its batch; prompts of a
//! few hundred rows take these tiles too (four activation rows at a time over a unit of rows
//! that stays in L2), longer ones the AVX-512 float panel (`fpanel.rs`) in the same steps.
//!
//! Without AVX512-BF16 the pairs are split with a mask and a shift (a bf16 is the top half of
//! an f32) and multiplied with FMAs, two 8-lane vectors standing for the sixteen lanes.

use std::arch::x86_64::*;

use super::{hsum, prefetch_next};
use crate::act::{bf16_stride, round_bf16};
use crate::kernels::Tile;

/// Sixteen lanes summed as `scalar::reduce16`: halves, then quarters, then pairs.
///
/// # Safety
/// AVX-512F.
#[inline(always)]
pub(super) unsafe fn reduce16(v: __m512) -> f32 {
    // SAFETY: caller's contract.
    unsafe {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        hsum(_mm256_add_ps(_mm512_castps512_ps256(v), hi))
    }
}

/// One way of multiplying a 32-column chunk into sixteen lanes of sums.
trait Chunk {
    type Acc: Copy;
    /// Activation rows per weight row block: for one activation row, and for more.
    const MR1: usize;
    /// # Safety
    /// The CPU supports the path.
    unsafe fn zero() -> Self::Acc;
    /// # Safety
    /// 32 readable bf16 at each pointer; the CPU supports the path.
    unsafe fn step<const MR: usize, const N: usize>(
        acc: &mut [[Self::Acc; N]; MR],
        w: [*const u16; MR],
        x: [*const u16; N],
    );
    /// # Safety
    /// The CPU supports the path.
    unsafe fn reduce(a: Self::Acc) -> f32;
}

/// `vdpbf16ps` on 512-bit vectors (AVX512-BF16).
struct Dp;
/// Pairs of FMAs on two 8-lane vectors, lanes 0–7 and 8–15 (AVX2 + FMA).
struct Fma;

impl Chunk for Dp {
    type Acc = __m512;
    const MR1: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        // SAFETY: caller's contract.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn step<const MR: usize, const N: usize>(
        acc: &mut [[__m512; N]; MR],
        w: [*const u16; MR],
        x: [*const u16; N],
    ) {
        // SAFETY: caller's contract; `__m512bh` is 32 bf16 in the bits of a `__m512i`.
        unsafe {
            let xv: [__m512bh; N] =
                std::array::from_fn(|i| std::mem::transmute(_mm512_loadu_si512(x[i] as *const _)));
            for m in 0..MR {
                let wv: __m512bh = std::mem::transmute(_mm512_loadu_si512(w[m] as *const _));
                for i in 0..N {
                    acc[m][i] = _mm512_dpbf16_ps(acc[m][i], wv, xv[i]);
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn reduce(v: __m512) -> f32 {
        // SAFETY: caller's contract.
        unsafe { reduce16(v) }
    }
}

impl Chunk for Fma {
    type Acc = [__m256; 2];
    const MR1: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> [__m256; 2] {
        // SAFETY: caller's contract.
        unsafe { [_mm256_setzero_ps(); 2] }
    }
    #[inline(always)]
    unsafe fn step<const MR: usize, const N: usize>(
        acc: &mut [[[__m256; 2]; N]; MR],
        w: [*const u16; MR],
        x: [*const u16; N],
    ) {
        // SAFETY: caller's contract.
        unsafe {
            for h in 0..2 {
                let xv: [(__m256, __m256); N] = std::array::from_fn(|i| {
                    split(_mm256_loadu_si256(x[i].add(16 * h) as *const __m256i))
                });
                for m in 0..MR {
                    let (wo, we) = split(_mm256_loadu_si256(w[m].add(16 * h) as *const __m256i));
                    for i in 0..N {
                        let a = _mm256_fmadd_ps(wo, xv[i].0, acc[m][i][h]);
                        acc[m][i][h] = _mm256_fmadd_ps(we, xv[i].1, a);
                    }
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn reduce([lo, hi]: [__m256; 2]) -> f32 {
        // SAFETY: caller's contract.
        unsafe { hsum(_mm256_add_ps(lo, hi)) }
    }
}

/// The odd element of each bf16 pair (the high half of the 32-bit lane) and the even one, as
/// f32.
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(super) unsafe fn split(v: __m256i) -> (__m256, __m256) {
    // SAFETY: caller's contract.
    unsafe {
        let hi = _mm256_set1_epi32(0xffff_0000u32 as i32);
        (
            _mm256_castsi256_ps(_mm256_and_si256(v, hi)),
            _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)),
        )
    }
}

/// `out[m][i]` = row `w[m]` against activation row `x[i]` over `cols` columns; the activations
/// are padded to [`bf16_stride`], the weight rows are not (their last chunk is copied into a
/// zeroed buffer).
///
/// # Safety
/// `w[m]` holds `cols` bf16, `x[i]` `bf16_stride(cols)`; the CPU supports `K`'s path.
#[inline(always)]
unsafe fn rows<K: Chunk, const MR: usize, const N: usize>(
    w: [*const u16; MR],
    x: [*const u16; N],
    cols: usize,
) -> [[f32; N]; MR] {
    // SAFETY: chunks below `main` lie inside the weight rows, and every chunk inside the
    // padded activation rows (caller's contract).
    unsafe {
        let mut acc = [[K::zero(); N]; MR];
        let main = cols / 32 * 32;
        // The next `MR` rows, when this block is a decode tile's (see `prefetch_next`).
        let next = (N == 1 && MR > 1).then(|| w[MR - 1].wrapping_add(cols) as *const u8);
        let mut c = 0;
        while c < main {
            if let Some(next) = next {
                prefetch_next(next, c / 32 * MR * 64, MR * 64);
            }
            K::step(
                &mut acc,
                std::array::from_fn(|m| w[m].add(c)),
                std::array::from_fn(|i| x[i].add(c)),
            );
            c += 32;
        }
        if main < cols {
            let mut tail = [[0u16; 32]; MR];
            for m in 0..MR {
                std::ptr::copy_nonoverlapping(w[m].add(main), tail[m].as_mut_ptr(), cols - main);
            }
            K::step(
                &mut acc,
                std::array::from_fn(|m| tail[m].as_ptr()),
                std::array::from_fn(|i| x[i].add(main)),
            );
        }
        let mut out = [[0.0f32; N]; MR];
        for m in 0..MR {
            for i in 0..N {
                out[m][i] = K::reduce(acc[m][i]);
            }
        }
        out
    }
}

/// A tile: rows in groups of `MR`, then one by one, against `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with bf16 activations; the CPU supports `K`'s path.
#[inline(always)]
unsafe fn tile_rows<K: Chunk, const MR: usize, const N: usize>(t: &Tile) {
    // SAFETY: the tile contract bounds the `nr` weight rows and the `N` activation rows.
    unsafe {
        let stride = bf16_stride(t.cols);
        let x: [*const u16; N] = std::array::from_fn(|i| t.act.bf16s.add(i * stride));
        let row = |r: usize| t.w.add(r * t.row_bytes) as *const u16;
        let mut r = 0;
        while r + MR <= t.nr {
            let v = rows::<K, MR, N>(std::array::from_fn(|m| row(r + m)), x, t.cols);
            for m in 0..MR {
                for i in 0..N {
                    *t.out.add(i * t.ldo + r + m) = v[m][i];
                }
            }
            r += MR;
        }
        while r < t.nr {
            let v = rows::<K, 1, N>([row(r)], x, t.cols);
            for i in 0..N {
                *t.out.add(i * t.ldo + r) = v[0][i];
            }
            r += 1;
        }
    }
}

/// The tile body for `N` activation rows: [`Chunk::MR1`] weight rows for one activation row
/// (eight independent sums of 16 lanes), a register file's worth otherwise (4 × 4 on
/// AVX-512, 1 × N pairs of 8-lane sums on AVX2).
///
/// # Safety
/// As for [`tile_rows`].
#[inline(always)]
unsafe fn body<K: Chunk, const N: usize>(t: &Tile) {
    // SAFETY: forwarded.
    unsafe {
        match (N, K::MR1) {
            (1, 8) => tile_rows::<K, 8, N>(t),
            (1, _) => tile_rows::<K, 4, N>(t),
            (_, 8) => tile_rows::<K, 4, N>(t),
            _ => tile_rows::<K, 1, N>(t),
        }
    }
}

macro_rules! bf16_entry {
    ($feat:literal, $name:ident, $k:ty) => {
        /// # Safety
        /// As for [`crate::kernels::TileFn`] with bf16 activations; the CPU supports this
        /// path's features.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $name(t: &Tile) {
            // SAFETY: forwarded contract; the body is inlined here with these features.
            unsafe {
                match t.nt {
                    1 => body::<$k, 1>(t),
                    2 => body::<$k, 2>(t),
                    3 => body::<$k, 3>(t),
                    _ => body::<$k, 4>(t),
                }
            }
        }
    };
}

bf16_entry!("avx2,fma,f16c", tile_bf16_bf16_fma, Fma);
bf16_entry!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16",
    tile_bf16_bf16_dp,
    Dp
);

/// Rounds a row to bf16 with `vcvtne2ps2bf16`, 32 at a time (the scalar [`round_bf16`] is
/// the same rounding, bit for bit), the rest and the padding as `act::quantize_bf16_scalar`.
pub fn quant_bf16_avx512(x: &[f32], out: &mut [u16]) {
    /// # Safety
    /// AVX-512F + AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn body(x: &[f32], out: &mut [u16]) {
        assert!(out.len() >= bf16_stride(x.len()));
        let main = x.len() / 32 * 32;
        let mut c = 0;
        while c < main {
            // SAFETY: `c + 32 ≤ main ≤ x.len() ≤ out.len()`; `__m512bh` has a `__m512i`'s bits.
            unsafe {
                let lo = _mm512_loadu_ps(x.as_ptr().add(c));
                let hi = _mm512_loadu_ps(x.as_ptr().add(c + 16));
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(out.as_mut_ptr().add(c) as *mut _, v);
            }
            c += 32;
        }
        for (o, &v) in out[main..].iter_mut().zip(&x[main..]) {
            *o = round_bf16(v);
        }
        out[x.len()..].fill(0);
    }
    // SAFETY: reachable only through the AVX512-BF16 table, chosen on CPUs that have it.
    unsafe { body(x, out) }
}
