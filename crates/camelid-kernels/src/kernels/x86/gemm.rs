//! The f32 GEMM micro-kernels of `crate::gemm` for x86: AVX-512 with intrinsics, and the
//! portable body built for AVX2 + FMA.

use std::arch::x86_64::*;

use crate::gemm::{MR, Micro, NR, micro_body};

/// `MR × NR` tile in 24 zmm accumulators: per step of `k`, two loads of `b`, twelve broadcasts
/// of `a` and 24 FMAs. Partial tiles load and store through masks, so every element takes the
/// same FMA chain as in a full tile (and as in the scalar twin).
///
/// # Safety
/// As for `crate::gemm::MicroFn`; AVX-512F.
#[target_feature(enable = "avx2,fma,avx512f")]
pub(crate) unsafe fn micro_avx512(u: &Micro) {
    // SAFETY: forwarded contract.
    unsafe { body512::<false>(u) }
}

/// [`micro_avx512`] reading twelve rows of a row-major `a` in place.
///
/// # Safety
/// As for `crate::gemm::MicroFn`; AVX-512F.
#[target_feature(enable = "avx2,fma,avx512f")]
pub(crate) unsafe fn micro_avx512_direct(u: &Micro) {
    // SAFETY: forwarded contract.
    unsafe { body512::<true>(u) }
}

/// # Safety
/// As for `crate::gemm::MicroFn`; AVX-512F (the callers' target features).
#[inline(always)]
unsafe fn body512<const DIRECT: bool>(u: &Micro) {
    // SAFETY: the caller's contract bounds every pointer below: `kc` steps of the panels (or
    // of `MR` rows of `a`), and `c` through masks that cover only columns `< nr` of rows
    // `< mr`.
    unsafe {
        let m0: __mmask16 = ((1u32 << u.nr.min(16)) - 1) as u16;
        let m1: __mmask16 = ((1u32 << u.nr.saturating_sub(16)) - 1) as u16;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        if u.load_c {
            for (i, a) in acc.iter_mut().enumerate() {
                if i < u.mr {
                    let row = u.c.add(i * u.ldc);
                    a[0] = _mm512_maskz_loadu_ps(m0, row);
                    a[1] = _mm512_maskz_loadu_ps(m1, row.add(16));
                }
            }
        }
        let (mut ap, mut bp) = (u.ap, u.bp);
        for _ in 0..u.kc {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for (i, a) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(if DIRECT {
                    *ap.add(i * u.lda)
                } else {
                    *ap.add(i)
                });
                a[0] = _mm512_fmadd_ps(x, b0, a[0]);
                a[1] = _mm512_fmadd_ps(x, b1, a[1]);
            }
            ap = ap.add(if DIRECT { 1 } else { MR });
            bp = bp.add(NR);
        }
        for (i, a) in acc.iter().enumerate() {
            if i < u.mr {
                let row = u.c.add(i * u.ldc);
                _mm512_mask_storeu_ps(row, m0, a[0]);
                _mm512_mask_storeu_ps(row.add(16), m1, a[1]);
            }
        }
    }
}

/// The portable body with AVX2 + FMA enabled (`mul_add` becomes `vfmadd`).
///
/// # Safety
/// As for `crate::gemm::MicroFn`; AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn micro_avx2(u: &Micro) {
    // SAFETY: forwarded contract.
    unsafe { micro_body::<false>(u) }
}

/// # Safety
/// As for `crate::gemm::MicroFn`; AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn micro_avx2_direct(u: &Micro) {
    // SAFETY: forwarded contract.
    unsafe { micro_body::<true>(u) }
}
