//! The 32-element weight formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): their levels as unsigned bytes
//! (Q8_0: signed, or offset by 128 with VNNI). The products are in [`super::panel`].

use std::arch::x86_64::*;

use super::Simd;

/// One 32-element weight format.
pub trait Block32 {
    /// Bytes per block.
    const BYTES: usize;
    /// The largest level as [`super::panel::Packed::group`] gives it (Q8_0's: 255, flipped to
    /// unsigned with VNNI; 128 in magnitude without).
    const LEVEL_MAX: i32;
    /// [`super::panel::Packed::SIGNED`]: Q8_0's values and IQ4_NL's codebook.
    const SIGNED: bool = false;
    /// Type-1 formats store a minimum `m` right after the scale `d`.
    const TYPE1: bool;
    /// Level offset of the type-0 formats: −8 (Q4_0), −16 (Q5_0), 0 (Q8_0, signed values).
    const OFFSET: f32;
    /// Where the block is the 16 bytes of nibbles at this offset and its scales (Q4_0, Q4_1,
    /// IQ4_NL): elements `0..16` in the low nibbles, `16..32` in the high ones.
    const NIBBLES: Option<usize> = None;
    /// Whether those nibbles index IQ4_NL's codebook rather than being the levels.
    const IQ4: bool = false;

    /// The offset on path `S` (Q8_0 uses a different trick with VNNI).
    #[inline(always)]
    fn offset<S: Simd>() -> f32 {
        Self::OFFSET
    }

    /// The 32 levels of the block at `p`, one byte each in element order (unsigned), or for
    /// Q8_0 its signed values.
    ///
    /// # Safety
    /// `p` points to a whole block; the CPU supports `S`.
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i;

    /// Integer lane sums of the block's levels times 32 activations.
    ///
    /// # Safety
    /// The CPU supports `S`.
    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: levels are at most 31, within `dot_u8i8`'s bound.
        unsafe { S::dot_u8i8(_mm256_setzero_si256(), w, x) }
    }
}

/// Low nibbles of 16 bytes as elements 0..16, high nibbles as 16..32.
///
/// # Safety
/// 16 readable bytes at `p`; AVX2.
#[inline(always)]
pub(super) unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: caller's contract.
    unsafe {
        let q = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let q = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
        _mm256_and_si256(q, _mm256_set1_epi8(0x0f))
    }
}

#[inline(always)]
pub(super) unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: caller guarantees 4 readable bytes.
    unsafe { (p as *const u32).read_unaligned() }
}

pub struct Q8_0;
pub struct Q4_0;
pub struct Q4_1;
pub struct Q5_0;
pub struct Q5_1;

impl Block32 for Q8_0 {
    const BYTES: usize = 34;
    const LEVEL_MAX: i32 = 255;
    const SIGNED: bool = true;
    const TYPE1: bool = false;
    const OFFSET: f32 = 0.0;
    /// With VNNI the signed values are flipped to unsigned `w + 128` (one `vpxor`), and the
    /// `128 · Σx` this adds is taken off with the other offset terms.
    #[inline(always)]
    fn offset<S: Simd>() -> f32 {
        if S::VNNI { -128.0 } else { 0.0 }
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 34 bytes.
        unsafe {
            let w = _mm256_loadu_si256(p.add(2) as *const __m256i);
            if S::VNNI {
                _mm256_xor_si256(w, _mm256_set1_epi8(-128))
            } else {
                w
            }
        }
    }
    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the CPU supports `S` (caller).
        unsafe {
            if S::VNNI {
                S::dot_u8i8(_mm256_setzero_si256(), w, x)
            } else {
                // Signed × signed as |w| × (x with w's sign): |w| ≤ 128 and |x| ≤ 127 keep
                // AVX2's 16-bit pair sums from saturating.
                S::dot_u8i8(
                    _mm256_setzero_si256(),
                    _mm256_abs_epi8(w),
                    _mm256_sign_epi8(x, w),
                )
            }
        }
    }
}

impl Block32 for Q4_0 {
    const BYTES: usize = 18;
    const LEVEL_MAX: i32 = 15;
    const TYPE1: bool = false;
    const OFFSET: f32 = -8.0;
    const NIBBLES: Option<usize> = Some(2);
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 18 bytes.
        unsafe { nibbles(p.add(2)) }
    }
}

impl Block32 for Q4_1 {
    const BYTES: usize = 20;
    const LEVEL_MAX: i32 = 15;
    const TYPE1: bool = true;
    const OFFSET: f32 = 0.0;
    const NIBBLES: Option<usize> = Some(4);
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 20 bytes.
        unsafe { nibbles(p.add(4)) }
    }
}

impl Block32 for Q5_0 {
    const BYTES: usize = 22;
    const LEVEL_MAX: i32 = 31;
    const TYPE1: bool = false;
    const OFFSET: f32 = -16.0;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 22 bytes: scale, 4 bytes of high bits, 16 of nibbles.
        unsafe {
            _mm256_or_si256(
                nibbles(p.add(6)),
                S::bits_to_bytes(read_u32(p.add(2)), 0x10),
            )
        }
    }
}

impl Block32 for Q5_1 {
    const BYTES: usize = 24;
    const LEVEL_MAX: i32 = 31;
    const TYPE1: bool = true;
    const OFFSET: f32 = 0.0;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 24 bytes: scale, minimum, 4 bytes of high bits, 16 of nibbles.
        unsafe {
            _mm256_or_si256(
                nibbles(p.add(8)),
                S::bits_to_bytes(read_u32(p.add(4)), 0x10),
            )
        }
    }
}
