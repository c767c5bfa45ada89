//! The k-quants (Q2_K … Q6_K) against Q8K activations.
//!
//! One body serves all five: a super-block of 256 is eight chunks of 32 elements. For each chunk
//! the type supplies its levels as unsigned bytes (at most 63, so `vpmaddubsw` cannot saturate)
//! and its sub-block scales as i16 lanes; `vpmaddubsw` and a multiply-add by those scales
//! (`vpmaddwd`, or `vpdpwssd` with VNNI) accumulate `Σ sc · q · x` in i32 over the whole
//! super-block. One f32 step per super-block then applies `d · dx`, and a second one the
//! minimums or level offsets, which are integer combinations of the activation sums per 16:
//! `Σ_j c_j · Σx_j` with `c_j` the minimum (Q2_K, Q4_K, Q5_K) or the scale (Q3_K, Q6_K, offset 4
//! or 32). The formulas are those of [`crate::kernels::scalar`].

use std::arch::x86_64::*;

use super::{Avx2, Avx512, Simd, entry, hsum, prefetch};
use crate::kernels::Tile;

/// What one super-block contributes besides its levels.
pub struct Prep {
    /// Scales as i16 words, arranged for [`chunk_scales`]: word `k` of the low lane scales the
    /// first 16 elements of chunk `k`, word `k` of the high lane the last 16.
    e: __m256i,
    /// The 16 coefficients of the activation sums per 16, as i16.
    c: __m256i,
    /// Factor of `Σ sc · q · x`.
    d: f32,
    /// Factor of `Σ c · Σx`.
    dc: f32,
}

/// One k-quant format.
pub trait KQuant {
    const BYTES: usize;
    /// # Safety
    /// `p` points to a whole super-block; the CPU supports `S`.
    unsafe fn prep<S: Simd>(p: *const u8) -> Prep;
    /// Levels of chunks `4h..4h + 4`, element order.
    ///
    /// # Safety
    /// As for `prep`.
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4];
}

/// The i16 scales of chunk `k` from [`Prep::e`].
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn chunk_scales(e: __m256i, k: usize) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let lo = (2 * k) as i8;
        let hi = lo + 1;
        _mm256_shuffle_epi8(
            e,
            _mm256_set1_epi16(((hi as u8 as i16) << 8) | lo as u8 as i16),
        )
    }
}

#[inline(always)]
unsafe fn h16(p: *const u8) -> f32 {
    // SAFETY: caller guarantees two readable bytes and F16C.
    unsafe {
        let h = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }
}

#[inline(always)]
unsafe fn loadu(p: *const u8) -> __m256i {
    // SAFETY: caller guarantees 32 readable bytes.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// 16 signed bytes reordered evens-then-odds and widened: the `e` layout for 16 sub-blocks.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn e_from_16(v: __m128i) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let split = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(v, split))
    }
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

/// Scales and minimums of Q4_K/Q5_K (see [`crate::dtype::kscale`]), eight 6-bit values each.
#[inline(always)]
unsafe fn kscales(p: *const u8) -> (u64, u64) {
    // SAFETY: the caller's super-block holds the 12 bytes at offset 4.
    let (w0, w1, w2) = unsafe {
        (
            (p.add(4) as *const u32).read_unaligned(),
            (p.add(8) as *const u32).read_unaligned(),
            (p.add(12) as *const u32).read_unaligned(),
        )
    };
    let sc_lo = w0 & 0x3f3f_3f3f;
    let sc_hi = (w2 & 0x0f0f_0f0f) | (((w0 >> 6) & 0x0303_0303) << 4);
    let m_lo = w1 & 0x3f3f_3f3f;
    let m_hi = ((w2 >> 4) & 0x0f0f_0f0f) | (((w1 >> 6) & 0x0303_0303) << 4);
    (
        sc_lo as u64 | ((sc_hi as u64) << 32),
        m_lo as u64 | ((m_hi as u64) << 32),
    )
}

/// `Prep` of the type-1 formats with eight sub-blocks of 32.
#[inline(always)]
unsafe fn prep_k8(p: *const u8) -> Prep {
    // SAFETY: whole super-block at `p`; AVX2 + F16C (caller).
    unsafe {
        let (sc, m) = kscales(p);
        let sc16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64));
        let m8 = _mm_cvtsi64_si128(m as i64);
        Prep {
            // Chunk k is sub-block k: the same scale in both halves.
            e: _mm256_broadcastsi128_si256(sc16),
            // Minimum j covers the sums 2j and 2j + 1.
            c: _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)),
            d: h16(p),
            dc: -h16(p.add(2)),
        }
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
    unsafe fn prep<S: Simd>(p: *const u8) -> Prep {
        // SAFETY: forwarded.
        unsafe { prep_k8(p) }
    }
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
    unsafe fn prep<S: Simd>(p: *const u8) -> Prep {
        // SAFETY: forwarded.
        unsafe { prep_k8(p) }
    }
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
    unsafe fn prep<S: Simd>(p: *const u8) -> Prep {
        // SAFETY: scales at 192, d at 208; AVX2 + F16C.
        unsafe {
            let sc = _mm_loadu_si128(p.add(192) as *const __m128i);
            let d = h16(p.add(208));
            Prep {
                e: e_from_16(sc),
                c: _mm256_cvtepi8_epi16(sc),
                d,
                dc: -32.0 * d,
            }
        }
    }
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
    unsafe fn prep<S: Simd>(p: *const u8) -> Prep {
        // SAFETY: scales at 0, d and dmin at 80; AVX2 + F16C.
        unsafe {
            let s = _mm_loadu_si128(p as *const __m128i);
            let lo = _mm_and_si128(s, _mm_set1_epi8(0x0f));
            let hi = _mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0f));
            Prep {
                e: e_from_16(lo),
                c: _mm256_cvtepu8_epi16(hi),
                d: h16(p.add(80)),
                dc: -h16(p.add(82)),
            }
        }
    }
    #[inline(always)]
    unsafe fn levels<S: Simd>(p: *const u8, h: usize) -> [__m256i; 4] {
        // SAFETY: 64 bytes of quants at 16; AVX2.
        unsafe { crumbs(loadu(p.add(16 + 32 * h))) }
    }
}

impl KQuant for Q3K {
    const BYTES: usize = 110;
    #[inline(always)]
    unsafe fn prep<S: Simd>(p: *const u8) -> Prep {
        // SAFETY: scales at 96 (12 bytes), d at 108; AVX2 + F16C.
        unsafe {
            let sc = crate::dtype::q3k_scales(std::slice::from_raw_parts(p.add(96), 12));
            let v = _mm_loadu_si128(sc.as_ptr() as *const __m128i);
            let d = h16(p.add(108));
            Prep {
                e: e_from_16(v),
                c: _mm256_cvtepi8_epi16(v),
                d,
                dc: -4.0 * d,
            }
        }
    }
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

/// A tile of a k-quant; `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`]; the CPU supports `S`.
#[inline(always)]
unsafe fn tile_body<S: Simd, K: KQuant, const N: usize>(t: &Tile) {
    // SAFETY: the tile contract bounds every pointer: `nr` rows of `cols / 256` super-blocks,
    // `N` activation rows of `cols` values, `cols / 256` scales and `cols / 16` sums.
    unsafe {
        let nsb = t.cols / 256;
        let x: [*const i8; N] = std::array::from_fn(|i| t.act.qs.add(i * t.cols));
        let dx: [*const f32; N] = std::array::from_fn(|i| t.act.d.add(i * nsb));
        let bs: [*const i16; N] = std::array::from_fn(|i| t.act.bsums.add(i * t.cols / 16));
        for r in 0..t.nr {
            let w = t.w.add(r * t.row_bytes);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut corr = [_mm256_setzero_ps(); N];
            for sb in 0..nsb {
                let p = w.add(sb * K::BYTES);
                prefetch(p.wrapping_add(2 * t.row_bytes), K::BYTES);
                let prep = K::prep::<S>(p);
                let mut isum = [_mm256_setzero_si256(); N];
                for h in 0..2 {
                    let lv = K::levels::<S>(p, h);
                    for (k, v) in lv.iter().enumerate() {
                        let s = chunk_scales(prep.e, 4 * h + k);
                        for i in 0..N {
                            let xv = loadu(x[i].add(sb * 256 + 32 * (4 * h + k)) as *const u8);
                            isum[i] = S::dot_i16(isum[i], _mm256_maddubs_epi16(*v, xv), s);
                        }
                    }
                }
                for i in 0..N {
                    let dxi = *dx[i].add(sb);
                    acc[i] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(isum[i]),
                        _mm256_set1_ps(prep.d * dxi),
                        acc[i],
                    );
                    let sums = loadu(bs[i].add(sb * 16) as *const u8);
                    corr[i] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(_mm256_madd_epi16(sums, prep.c)),
                        _mm256_set1_ps(prep.dc * dxi),
                        corr[i],
                    );
                }
            }
            for i in 0..N {
                *t.out.add(i * t.ldo + r) = hsum(_mm256_add_ps(acc[i], corr[i]));
            }
        }
    }
}

pub mod avx2 {
    use super::*;
    entry!("avx2,fma,f16c", Avx2, tile_q2_k, tile_body, Q2K);
    entry!("avx2,fma,f16c", Avx2, tile_q3_k, tile_body, Q3K);
    entry!("avx2,fma,f16c", Avx2, tile_q4_k, tile_body, Q4K);
    entry!("avx2,fma,f16c", Avx2, tile_q5_k, tile_body, Q5K);
    entry!("avx2,fma,f16c", Avx2, tile_q6_k, tile_body, Q6K);
}

pub mod avx512 {
    use super::*;
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q2_k,
        tile_body,
        Q2K
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q3_k,
        tile_body,
        Q3K
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q4_k,
        tile_body,
        Q4K
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q5_k,
        tile_body,
        Q5K
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q6_k,
        tile_body,
        Q6K
    );
}
