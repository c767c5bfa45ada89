//! Activation quantization (Q8) with AVX2: the same f32 operations as the scalar
//! reference in [`crate::act`] (`127 / amax`, a product, round to nearest even), so both paths
//! produce identical bytes.

use std::arch::x86_64::*;

/// `max |x|` over `8 · k` values at `x`.
///
/// # Safety
/// `8 · k` readable floats; AVX2.
#[inline(always)]
unsafe fn amax(x: *const f32, k: usize) -> f32 {
    // SAFETY: caller's contract.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for i in 0..k {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * i))));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)))
    }
}

/// Rounds 32 values at `x` times `inv` to i8, stores them at `q`; returns the i32 sums of the
/// two halves of 16.
///
/// # Safety
/// 32 floats at `x`, 32 bytes at `q`; AVX2.
#[inline(always)]
unsafe fn quant32(x: *const f32, inv: f32, q: *mut i8) -> (i32, i32) {
    // SAFETY: caller's contract.
    unsafe {
        let iv = _mm256_set1_ps(inv);
        // Loops, not closures, wherever intrinsics run: a closure in this generic code does not
        // inherit the caller's target features, and its intrinsics would become calls.
        let mut v = [_mm256_setzero_si256(); 4];
        for (i, vi) in v.iter_mut().enumerate() {
            *vi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.add(8 * i)), iv));
        }
        let s0 = _mm256_add_epi32(v[0], v[1]);
        let s1 = _mm256_add_epi32(v[2], v[3]);
        // Pack to bytes; the packs interleave 128-bit lanes, a dword permute restores order.
        let p16a = _mm256_packs_epi32(v[0], v[1]);
        let p16b = _mm256_packs_epi32(v[2], v[3]);
        let p8 = _mm256_packs_epi16(p16a, p16b);
        let p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q as *mut __m256i, p8);
        (hsum_i32(s0), hsum_i32(s1))
    }
}

#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: AVX2 (caller).
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

/// # Safety
/// AVX2 + FMA + F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_body(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32], dsum16: &mut [f32]) {
    let nb = x.len() / 32;
    assert!(qs.len() >= 32 * nb && d.len() >= nb && dsum.len() >= nb && dsum16.len() >= 2 * nb);
    for b in 0..nb {
        // SAFETY: block `b < nb` lies inside `x` and `qs` (checked above).
        unsafe {
            let xb = x.as_ptr().add(32 * b);
            let a = amax(xb, 4);
            let inv = if a > 0.0 { 127.0 / a } else { 0.0 };
            let (s0, s1) = quant32(xb, inv, qs.as_mut_ptr().add(32 * b));
            let scale = a / 127.0;
            d[b] = scale;
            dsum[b] = scale * (s0 + s1) as f32;
            dsum16[2 * b] = scale * s0 as f32;
            dsum16[2 * b + 1] = scale * s1 as f32;
        }
    }
}

pub mod avx2 {
    use super::*;

    pub fn quant_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32], dsum16: &mut [f32]) {
        // SAFETY: this function is reachable only through the AVX2/AVX-512 tables, which
        // `kernels::table` hands out only on CPUs with AVX2, FMA and F16C.
        unsafe { q8_body(x, qs, d, dsum, dsum16) }
    }
}

pub mod avx512 {
    pub use super::avx2::*;
}
