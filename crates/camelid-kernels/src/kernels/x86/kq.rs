//! The k-quants (Q2_K … Q6_K): a super-block of 256 as eight chunks of 32 unsigned levels
//! (at most 63, so AVX2's `vpmaddubsw` cannot saturate); the level offsets, minimums and scales
//! are applied by [`super::panel`].

use std::arch::x86_64::*;

use super::Simd;

/// One k-quant format.
pub trait KQuant {
    const BYTES: usize;
    /// Levels of chunks `4h..4h + 4`, element order, unsigned (at most 63).
    ///
    /// # Safety
    /// `p` points to a whole super-block; the CPU supports `S`.
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4];
}

#[inline(always)]
unsafe fn loadu(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 32 readable bytes.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The 2-bit fields of a 32-byte group at bit offsets 0, 2, 4, 6: four chunks.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn crumbs(q: __m256i) -> [__m256i; 4] {
    // SAFETY: AVX2 (caller).
    unsafe {
        let m = _mm256_set1_epi8(3);
        [
            _mm256_and_si256(q, m),
            _mm256_and_si256(_mm256_srli_epi16(q, 2), m),
            _mm256_and_si256(_mm256_srli_epi16(q, 4), m),
            _mm256_and_si256(_mm256_srli_epi16(q, 6), m),
        ]
    }
}

/// Bit `j` of each byte of `qh` moved to bit 4 (Q5_K's fifth bit of chunk `j`).
///
/// Functions rather than closures here and below: a closure in this generic code does not
/// inherit the caller's target features, and its intrinsics would not be inlined.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn q5k_bit(qh: __m256i, j: usize) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let s = match j {
            0 => _mm256_slli_epi16(qh, 4),
            1 => _mm256_slli_epi16(qh, 3),
            2 => _mm256_slli_epi16(qh, 2),
            3 => _mm256_slli_epi16(qh, 1),
            4 => qh,
            5 => _mm256_srli_epi16(qh, 1),
            6 => _mm256_srli_epi16(qh, 2),
            _ => _mm256_srli_epi16(qh, 3),
        };
        _mm256_and_si256(s, _mm256_set1_epi8(0x10))
    }
}

/// 4 where bit `k` of the byte of `hm` is set, else 0 (Q3_K's high bit of chunk `k`).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn q3k_bit(hm: __m256i, k: usize) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let sel = _mm256_set1_epi8((1u8 << k) as i8);
        let on = _mm256_cmpeq_epi8(_mm256_and_si256(hm, sel), sel);
        _mm256_and_si256(on, _mm256_set1_epi8(4))
    }
}

pub struct Q2K;
pub struct Q3K;
pub struct Q4K;
pub struct Q5K;
pub struct Q6K;

impl KQuant for Q4K {
    const BYTES: usize = 144;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: 128 bytes of nibbles at offset 16; AVX2.
        unsafe {
            let m = _mm256_set1_epi8(0x0f);
            let a = loadu(p.add(16 + 64 * h));
            let b = loadu(p.add(16 + 64 * h + 32));
            [
                _mm256_and_si256(a, m),
                _mm256_and_si256(_mm256_srli_epi16(a, 4), m),
                _mm256_and_si256(b, m),
                _mm256_and_si256(_mm256_srli_epi16(b, 4), m),
            ]
        }
    }
}

impl KQuant for Q5K {
    const BYTES: usize = 176;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: 32 bytes of high bits at 16, 128 of nibbles at 48; AVX2.
        unsafe {
            let m = _mm256_set1_epi8(0x0f);
            let qh = loadu(p.add(16));
            let a = loadu(p.add(48 + 64 * h));
            let b = loadu(p.add(48 + 64 * h + 32));
            // Bit j of qh[l] is bit 4 of element l of chunk j; move it to bit 4.
            let j = 4 * h;
            [
                _mm256_or_si256(_mm256_and_si256(a, m), q5k_bit(qh, j)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(a, 4), m),
                    q5k_bit(qh, j + 1),
                ),
                _mm256_or_si256(_mm256_and_si256(b, m), q5k_bit(qh, j + 2)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(b, 4), m),
                    q5k_bit(qh, j + 3),
                ),
            ]
        }
    }
}

impl KQuant for Q6K {
    const BYTES: usize = 210;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: ql at 64h (64 bytes), qh at 128 + 32h (32 bytes); AVX2.
        unsafe {
            let m = _mm256_set1_epi8(0x0f);
            let m2 = _mm256_set1_epi8(0x30);
            let a = loadu(p.add(64 * h));
            let b = loadu(p.add(64 * h + 32));
            let qh = loadu(p.add(128 + 32 * h));
            [
                _mm256_or_si256(
                    _mm256_and_si256(a, m),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(b, m),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(a, 4), m),
                    _mm256_and_si256(qh, m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(b, 4), m),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2),
                ),
            ]
        }
    }
}

impl KQuant for Q2K {
    const BYTES: usize = 84;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: 64 bytes of quants at 16; AVX2.
        unsafe { crumbs(loadu(p.add(16 + 32 * h))) }
    }
}

impl KQuant for Q3K {
    const BYTES: usize = 110;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: hmask at 0 (32 bytes), low bits at 32 (64 bytes); AVX2.
        unsafe {
            let low = crumbs(loadu(p.add(32 + 32 * h)));
            let hm = loadu(p);
            // A set high bit adds 4 to the level (the offset 4 is taken off via `c`).
            [
                _mm256_or_si256(low[0], q3k_bit(hm, 4 * h)),
                _mm256_or_si256(low[1], q3k_bit(hm, 4 * h + 1)),
                _mm256_or_si256(low[2], q3k_bit(hm, 4 * h + 2)),
                _mm256_or_si256(low[3], q3k_bit(hm, 4 * h + 3)),
            ]
        }
    }
}
