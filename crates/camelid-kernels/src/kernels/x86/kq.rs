//! The k-quants (Q2_K … Q6_K): a super-block of 256 as eight chunks of 32 unsigned levels
//! (at most 63, so AVX2's `vpmaddubsw` cannot saturate); the level offsets, minimums and scales
//! are applied by [`super::panel`].

use std::arch::x86_64::*;

use super::Simd;

/// One k-quant format.
pub trait KQuant {
    const BYTES: usize;
    /// The largest level ([`Packed::LEVEL_MAX`]).
    const LEVEL_MAX: i32;
    /// Levels of chunks `4h..4h + 4`, element order, unsigned (at most 63).
    ///
    /// # Safety
    /// `p` points to a whole super-block; the CPU supports `S`.
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4];

    /// [`KQuant::levels`] of the super-blocks at `pa` (the low 256 bits of each vector) and `pb`
    /// (the high 256 bits).
    ///
    /// # Safety
    /// As for `levels`, for both; AVX-512 F.
    #[inline(always)]
    unsafe fn levels2<S: Simd>(pa: *const u8, pb: *const u8, h: usize) -> [__m512i; 4] {
        // SAFETY: forwarded.
        unsafe { pair(Self::levels::<S>(pa, h), Self::levels::<S>(pb, h)) }
    }
}

/// Vector `k` of `a` as the low 256 bits and of `b` as the high 256 bits of vector `k`.
///
/// # Safety
/// AVX-512 F.
#[inline(always)]
pub(super) unsafe fn pair(a: [__m256i; 4], b: [__m256i; 4]) -> [__m512i; 4] {
    // SAFETY: AVX-512 F (caller).
    unsafe {
        let mut v = [_mm512_setzero_si512(); 4];
        for k in 0..4 {
            v[k] = _mm512_inserti64x4(_mm512_castsi256_si512(a[k]), b[k], 1);
        }
        v
    }
}

/// Bytes of one row in a 256-bit vector, or of two rows side by side in a 512-bit one: the few
/// operations the k-quants' level unpacking needs, so that it is written once for both widths.
pub trait RowBytes: Copy {
    /// Where the bytes come from: one pointer, or two.
    type At: Copy;
    /// 32 bytes at byte `off` of each row.
    ///
    /// # Safety
    /// Readable; the CPU supports the width.
    unsafe fn load(at: Self::At, off: usize) -> Self;
    /// # Safety
    /// The CPU supports the width.
    unsafe fn and(a: Self, b: Self) -> Self;
    /// # Safety
    /// The CPU supports the width.
    unsafe fn or(a: Self, b: Self) -> Self;
    /// Shifts of each 16-bit lane (`K` > 0: left by `K`, `K` < 0: right by `-K`).
    ///
    /// # Safety
    /// The CPU supports the width.
    unsafe fn shift16<const K: i32>(a: Self) -> Self;
    /// # Safety
    /// The CPU supports the width.
    unsafe fn splat(b: i8) -> Self;
}

impl RowBytes for __m256i {
    type At = *const u8;
    #[inline(always)]
    unsafe fn load(at: *const u8, off: usize) -> Self {
        // SAFETY: caller's contract.
        unsafe { loadu(at.add(off)) }
    }
    #[inline(always)]
    unsafe fn and(a: Self, b: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_and_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn or(a: Self, b: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe { _mm256_or_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn shift16<const K: i32>(a: Self) -> Self {
        // SAFETY: AVX2 (caller).
        unsafe {
            match K {
                0 => a,
                2 => _mm256_slli_epi16::<2>(a),
                4 => _mm256_slli_epi16::<4>(a),
                -2 => _mm256_srli_epi16::<2>(a),
                -4 => _mm256_srli_epi16::<4>(a),
                _ => unreachable!("shift {K}"),
            }
        }
    }
    #[inline(always)]
    unsafe fn splat(b: i8) -> Self {
        // SAFETY: AVX (caller).
        unsafe { _mm256_set1_epi8(b) }
    }
}

impl RowBytes for __m512i {
    type At = (*const u8, *const u8);
    #[inline(always)]
    unsafe fn load(at: (*const u8, *const u8), off: usize) -> Self {
        // SAFETY: caller's contract.
        unsafe {
            _mm512_inserti64x4(
                _mm512_castsi256_si512(loadu(at.0.add(off))),
                loadu(at.1.add(off)),
                1,
            )
        }
    }
    #[inline(always)]
    unsafe fn and(a: Self, b: Self) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_and_si512(a, b) }
    }
    #[inline(always)]
    unsafe fn or(a: Self, b: Self) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_or_si512(a, b) }
    }
    #[inline(always)]
    unsafe fn shift16<const K: i32>(a: Self) -> Self {
        // SAFETY: AVX-512 BW (caller).
        unsafe {
            match K {
                0 => a,
                2 => _mm512_slli_epi16::<2>(a),
                4 => _mm512_slli_epi16::<4>(a),
                -2 => _mm512_srli_epi16::<2>(a),
                -4 => _mm512_srli_epi16::<4>(a),
                _ => unreachable!("shift {K}"),
            }
        }
    }
    #[inline(always)]
    unsafe fn splat(b: i8) -> Self {
        // SAFETY: AVX-512 F (caller).
        unsafe { _mm512_set1_epi8(b) }
    }
}

/// Q4_K's levels of chunks `4h..4h + 4` at any width.
///
/// # Safety
/// Whole super-blocks at `at`; the CPU supports the width.
#[inline(always)]
unsafe fn q4k_levels<V: RowBytes>(at: V::At, h: usize) -> [V; 4] {
    // SAFETY: 128 bytes of nibbles at offset 16.
    unsafe {
        let m = V::splat(0x0f);
        let a = V::load(at, 16 + 64 * h);
        let b = V::load(at, 16 + 64 * h + 32);
        [
            V::and(a, m),
            V::and(V::shift16::<-4>(a), m),
            V::and(b, m),
            V::and(V::shift16::<-4>(b), m),
        ]
    }
}

/// Q6_K's levels of chunks `4h..4h + 4` at any width.
///
/// # Safety
/// Whole super-blocks at `at`; the CPU supports the width.
#[inline(always)]
unsafe fn q6k_levels<V: RowBytes>(at: V::At, h: usize) -> [V; 4] {
    // SAFETY: ql at 64h (64 bytes), qh at 128 + 32h (32 bytes).
    unsafe {
        let (m, m2) = (V::splat(0x0f), V::splat(0x30));
        let a = V::load(at, 64 * h);
        let b = V::load(at, 64 * h + 32);
        let qh = V::load(at, 128 + 32 * h);
        [
            V::or(V::and(a, m), V::and(V::shift16::<4>(qh), m2)),
            V::or(V::and(b, m), V::and(V::shift16::<2>(qh), m2)),
            V::or(V::and(V::shift16::<-4>(a), m), V::and(qh, m2)),
            V::or(
                V::and(V::shift16::<-4>(b), m),
                V::and(V::shift16::<-2>(qh), m2),
            ),
        ]
    }
}

#[inline(always)]
pub(super) unsafe fn loadu(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 32 readable bytes.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The 2-bit fields of a 32-byte group at bit offsets 0, 2, 4, 6: four chunks.
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(super) unsafe fn crumbs(q: __m256i) -> [__m256i; 4] {
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
    const LEVEL_MAX: i32 = 15;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: forwarded.
        unsafe { q4k_levels(p, h) }
    }
    #[inline(always)]
    unsafe fn levels2<S: Simd>(pa: *const u8, pb: *const u8, h: usize) -> [__m512i; 4] {
        // SAFETY: forwarded.
        unsafe { q4k_levels((pa, pb), h) }
    }
}

impl KQuant for Q5K {
    const BYTES: usize = 176;
    const LEVEL_MAX: i32 = 31;
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
    const LEVEL_MAX: i32 = 63;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: forwarded.
        unsafe { q6k_levels(p, h) }
    }
    #[inline(always)]
    unsafe fn levels2<S: Simd>(pa: *const u8, pb: *const u8, h: usize) -> [__m512i; 4] {
        // SAFETY: forwarded.
        unsafe { q6k_levels((pa, pb), h) }
    }
}

impl KQuant for Q2K {
    const BYTES: usize = 84;
    const LEVEL_MAX: i32 = 3;
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: 64 bytes of quants at 16; AVX2.
        unsafe { crumbs(loadu(p.add(16 + 32 * h))) }
    }
}

impl KQuant for Q3K {
    const BYTES: usize = 110;
    const LEVEL_MAX: i32 = 7;
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
