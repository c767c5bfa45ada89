//! Quantized products on x86 in one arithmetic for every batch size: the prompt pass packs eight
//! weight rows into a panel and multiplies it with all activation rows; decoding (fewer than
//! [`crate::kernels::PANEL_MIN_N`] rows) reads the same eight rows in place. Both give every
//! output the same f32 operations, so a token's logits do not depend on how many other tokens
//! share its batch (a prompt pass, a decode step, a server batch all agree bit for bit).
//!
//! The weights are seen as blocks of 32 unsigned levels with, per row and per block (or per half
//! block for the formats with sub-blocks of 16), a scale `s` and an offset term `o`, so that a
//! weight is `s · q + o` (type-0 formats fold their level offset into `o = offset · d`, Q4_1 has
//! `o = m`, the k-quants `s = d · sc`, `o = −dmin · m` or `−offset · s`). Against 8-bit
//! activations `x = dx · qx` (blocks of 32, [`crate::act`]), per output and per block in order:
//!
//! ```text
//! acc  = fma(f32(Σ q · qx), s · dx, acc)
//! corr = fma(o, dx · Σ qx, corr)          (Σ qx per 16 for the split formats)
//! out  = acc + corr
//! ```
//!
//! The integer sums are exact whatever the order, and the eight rows run in the eight f32 lanes
//! of one vector, so each row's result is the same in a panel, in a tile of one activation row
//! and in a tile of four.
//!
//! Panel: vector `j` of a packed block holds in 32-bit lane `r` the levels of elements
//! `4j..4j + 4` of row `r`; four activation bytes broadcast against it give partial sums of all
//! eight rows at once. The repacking (an 8×8 transpose of 32-bit lanes per block) is paid once
//! per product and shared by all activation rows; nothing is kept between products.
//!
//! Tile: each row's levels meet the activations directly, and the eight rows' lane sums are
//! folded into one vector of eight block sums by horizontal adds (integer, exact).

use std::arch::x86_64::*;

use super::kq::{KQuant, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::q8::{Block32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::{Simd, prefetch};
use crate::kernels::{ActPtr, PanelBuf, PanelJob, Tile};
use crate::quant::IQ4NL_VALUES;

/// Rows per panel and per tile step: the lanes of one f32 vector.
pub const ROWS: usize = 8;

/// 8×8 transpose of 32-bit lanes: lane `r` of output `j` is lane `j` of input `r`.
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(super) unsafe fn transpose8(l: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: AVX2 (caller). Written out, not with closures: see `pack`.
    unsafe {
        let t0 = _mm256_unpacklo_epi32(l[0], l[1]);
        let t1 = _mm256_unpackhi_epi32(l[0], l[1]);
        let t2 = _mm256_unpacklo_epi32(l[2], l[3]);
        let t3 = _mm256_unpackhi_epi32(l[2], l[3]);
        let t4 = _mm256_unpacklo_epi32(l[4], l[5]);
        let t5 = _mm256_unpackhi_epi32(l[4], l[5]);
        let t6 = _mm256_unpacklo_epi32(l[6], l[7]);
        let t7 = _mm256_unpackhi_epi32(l[6], l[7]);
        // u_q (rows 0..4) and v_q (rows 4..8): dwords q and q + 4 in the two 128-bit halves.
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let v0 = _mm256_unpacklo_epi64(t4, t6);
        let v1 = _mm256_unpackhi_epi64(t4, t6);
        let v2 = _mm256_unpacklo_epi64(t5, t7);
        let v3 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256(u0, v0, 0x20),
            _mm256_permute2x128_si256(u1, v1, 0x20),
            _mm256_permute2x128_si256(u2, v2, 0x20),
            _mm256_permute2x128_si256(u3, v3, 0x20),
            _mm256_permute2x128_si256(u0, v0, 0x31),
            _mm256_permute2x128_si256(u1, v1, 0x31),
            _mm256_permute2x128_si256(u2, v2, 0x31),
            _mm256_permute2x128_si256(u3, v3, 0x31),
        ]
    }
}

#[inline(always)]
unsafe fn half(p: *const u8, f16: &[f32; 65536]) -> f32 {
    // SAFETY: caller guarantees two readable bytes.
    f16[unsafe { (p as *const u16).read_unaligned() } as usize]
}

/// A weight format as the panels and row tiles see it; see the module docs.
pub trait Packed {
    /// Bytes of a unit: one block of 32, or one super-block of 256.
    const UNIT_BYTES: usize;
    /// Blocks of 32 per unit.
    const BLOCKS: usize;
    /// Blocks of 32 whose levels are unpacked together ([`Packed::group`]).
    const GROUP: usize;
    /// Scale entries per block of 32: 1, or 2 for sub-blocks of 16.
    const HALVES: usize;
    /// Where block `b` of a unit is its 16 bytes of nibbles at `NIBBLES + 16 · b` (elements
    /// `0..16` low, `16..32` high) and nothing else: [`Block32::NIBBLES`] of Q4_0 and Q4_1, and
    /// IQ4_NL, IQ4_XS ([`Fold512`] takes four rows a vector).
    const NIBBLES: Option<usize> = None;
    /// Whether those nibbles index IQ4_NL's codebook rather than being the levels.
    const IQ4: bool = false;
    /// The largest level [`Packed::group`] gives (for [`Packed::SIGNED`] levels, magnitude).
    const LEVEL_MAX: i32 = 63;
    /// Whether [`Packed::group`] gives signed levels on a path without VNNI (Q8_0, IQ4_NL,
    /// IQ4_XS; with VNNI they are flipped to unsigned). AVX2's `vpmaddubsw` takes them as
    /// |w| times x with w's sign (`vpsignb`).
    const SIGNED: bool = false;
    /// On AVX2, weight vectors of a block whose `vpmaddubsw` pair sums the AVX2 panel adds in
    /// 16 bits before widening them with one `vpmaddwd`: the largest power of two that keeps
    /// the sum within i16 (two products of at most `LEVEL_MAX · 127` a pair; activations are
    /// within ±127) and within a half block where a block has two scale entries. Q4_0, Q4_1,
    /// Q4_K: 8; Q5_0, Q5_1, Q5_K: 4; Q6_K: 2; Q3_K, Q2_K: 4; Q8_0, IQ4_NL, IQ4_XS: 1.
    const RUN16: usize = {
        let fits = 32767 / (2 * 127 * Self::LEVEL_MAX) as usize;
        let mut run = 8 / Self::HALVES;
        while run > 1 && run > fits {
            run /= 2;
        }
        run
    };

    /// The levels of blocks `g · GROUP..(g + 1) · GROUP` of the unit at `p` (the first `GROUP`
    /// vectors), 32 unsigned bytes in element order each.
    ///
    /// # Safety
    /// `p` points to a whole unit; the CPU supports `S`.
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4];

    /// [`Packed::group`] of the units at `pa` (low 256 bits of each vector) and `pb` (high).
    ///
    /// # Safety
    /// As for `group`, for both; AVX-512 F.
    #[inline(always)]
    unsafe fn group2<S: Simd>(pa: *const u8, pb: *const u8, g: usize) -> [__m512i; 4] {
        // SAFETY: forwarded.
        unsafe { super::kq::pair(Self::group::<S>(pa, g), Self::group::<S>(pb, g)) }
    }

    /// `s[e · ROWS + r]`, `o[e · ROWS + r]` for the `BLOCKS · HALVES` entries `e` of the units
    /// at `p[r]` (one unit of each of the eight rows).
    ///
    /// # Safety
    /// Each `p[r]` points to a whole unit; `s` and `o` hold `BLOCKS · HALVES · ROWS` floats;
    /// the CPU supports `S`.
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]);

    /// Lane sums of 32 levels (from `group`) times 32 activation bytes: lane `k` sums elements
    /// `4k..4k + 4`.
    ///
    /// # Safety
    /// The CPU supports `S`.
    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: levels are at most 63 (Q8_0 overrides), within `dot_u8i8`'s bound.
        unsafe { S::dot_u8i8(_mm256_setzero_si256(), w, x) }
    }
}

/// A 32-element format ([`Block32`]) as a [`Packed`] one.
pub struct P32<B>(std::marker::PhantomData<B>);

impl<B: Block32> Packed for P32<B> {
    const UNIT_BYTES: usize = B::BYTES;
    const LEVEL_MAX: i32 = B::LEVEL_MAX;
    const SIGNED: bool = B::SIGNED;
    const BLOCKS: usize = 1;
    const GROUP: usize = 1;
    const HALVES: usize = 1;
    const NIBBLES: Option<usize> = B::NIBBLES;
    const IQ4: bool = B::IQ4;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, _g: usize) -> [__m256i; 4] {
        // SAFETY: forwarded.
        unsafe {
            [
                B::load::<S>(p),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
            ]
        }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: each block holds `d` at 0 and, for type-1 formats, `m` at 2; `s`, `o` hold 8.
        unsafe {
            let d = halves8(p, 0);
            _mm256_storeu_ps(s.as_mut_ptr(), d);
            let ov = if B::TYPE1 {
                halves8(p, 2)
            } else {
                _mm256_mul_ps(_mm256_set1_ps(B::offset::<S>()), d)
            };
            _mm256_storeu_ps(o.as_mut_ptr(), ov);
        }
    }

    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: forwarded.
        unsafe { B::dot::<S>(w, x) }
    }
}

/// A k-quant with sub-blocks of 32 (Q4_K, Q5_K): `s = d · sc`, `o = −dmin · m`.
pub struct PK<K>(std::marker::PhantomData<K>);

impl<K: KQuant> Packed for PK<K> {
    const UNIT_BYTES: usize = K::BYTES;
    const LEVEL_MAX: i32 = K::LEVEL_MAX;
    const BLOCKS: usize = 8;
    const GROUP: usize = 4;
    const HALVES: usize = 1;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4] {
        // SAFETY: forwarded.
        unsafe { K::levels::<S>(p, g) }
    }

    #[inline(always)]
    unsafe fn group2<S: Simd>(pa: *const u8, pb: *const u8, g: usize) -> [__m512i; 4] {
        // SAFETY: forwarded.
        unsafe { K::levels2::<S>(pa, pb, g) }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: d at 0, dmin at 2, 12 bytes of scales at 4 in each super-block; `s`, `o`
        // hold 64 floats.
        unsafe {
            // The eight rows' 6-bit scales and minimums (see `crate::dtype::kscale`) unpacked
            // side by side, one row a lane: no transposes.
            let d = halves8(p, 0);
            let neg_dmin = _mm256_xor_ps(halves8(p, 2), _mm256_set1_ps(-0.0));
            let (w0, w1, w2) = (words8(p, 4), words8(p, 8), words8(p, 12));
            let (m6, m4, m2) = (
                _mm256_set1_epi32(0x3f3f_3f3f),
                _mm256_set1_epi32(0x0f0f_0f0f),
                _mm256_set1_epi32(0x0303_0303),
            );
            let sc = [
                _mm256_and_si256(w0, m6),
                _mm256_or_si256(
                    _mm256_and_si256(w2, m4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w0, 6), m2), 4),
                ),
            ];
            let mn = [
                _mm256_and_si256(w1, m6),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi32(w2, 4), m4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w1, 6), m2), 4),
                ),
            ];
            for j in 0..8 {
                let (sj, mj) = (byte_lanes(sc[j / 4], j % 4), byte_lanes(mn[j / 4], j % 4));
                _mm256_storeu_ps(s.as_mut_ptr().add(j * ROWS), _mm256_mul_ps(d, sj));
                _mm256_storeu_ps(o.as_mut_ptr().add(j * ROWS), _mm256_mul_ps(neg_dmin, mj));
            }
        }
    }
}

/// A k-quant with sub-blocks of 16: the type-1 form `s · q + o` of each of its 16 sub-blocks.
pub trait K16: KQuant {
    /// The level offset when `o = offset · s` (Q3_K, Q6_K); `None` when `o` has its own
    /// minimums (Q2_K).
    const OFFSET: Option<f32>;
    /// `s` and `o` of sub-blocks `0..8` and `8..16`.
    ///
    /// # Safety
    /// `p` points to a whole super-block; AVX2 + F16C.
    unsafe fn subs(p: *const u8) -> ([__m256; 2], [__m256; 2]);
}

/// `d · sc` and `offset · d · sc` for 16 signed scales.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn subs_signed(sc: __m128i, d: f32, offset: f32) -> ([__m256; 2], [__m256; 2]) {
    // SAFETY: AVX2 (caller).
    unsafe {
        let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc));
        let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)));
        let (dv, ov) = (_mm256_set1_ps(d), _mm256_set1_ps(offset));
        let s = [_mm256_mul_ps(dv, lo), _mm256_mul_ps(dv, hi)];
        (s, [_mm256_mul_ps(ov, s[0]), _mm256_mul_ps(ov, s[1])])
    }
}

impl K16 for Q6K {
    const OFFSET: Option<f32> = Some(-32.0);
    #[inline(always)]
    unsafe fn subs(p: *const u8) -> ([__m256; 2], [__m256; 2]) {
        // SAFETY: 16 scales at 192, d at 208.
        unsafe {
            let d = half(p.add(208), crate::kernels::f16_table());
            subs_signed(_mm_loadu_si128(p.add(192) as *const __m128i), d, -32.0)
        }
    }
}

impl K16 for Q3K {
    const OFFSET: Option<f32> = Some(-4.0);
    #[inline(always)]
    unsafe fn subs(p: *const u8) -> ([__m256; 2], [__m256; 2]) {
        // SAFETY: scales at 96 (12 bytes), d at 108.
        unsafe {
            let d = half(p.add(108), crate::kernels::f16_table());
            let sc = crate::dtype::q3k_scales(std::slice::from_raw_parts(p.add(96), 12));
            subs_signed(_mm_loadu_si128(sc.as_ptr() as *const __m128i), d, -4.0)
        }
    }
}

impl K16 for Q2K {
    const OFFSET: Option<f32> = None;
    #[inline(always)]
    unsafe fn subs(p: *const u8) -> ([__m256; 2], [__m256; 2]) {
        // SAFETY: scales at 0 (16 bytes: scale low nibble, minimum high), d and dmin at 80.
        unsafe {
            let f16 = crate::kernels::f16_table();
            let (d, dmin) = (half(p.add(80), f16), half(p.add(82), f16));
            let v = _mm_loadu_si128(p as *const __m128i);
            let sc = _mm_and_si128(v, _mm_set1_epi8(0x0f));
            let m = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
            let f = u8x8;
            let (dv, mv) = (_mm256_set1_ps(d), _mm256_set1_ps(-dmin));
            (
                [
                    _mm256_mul_ps(dv, f(sc)),
                    _mm256_mul_ps(dv, f(_mm_srli_si128(sc, 8))),
                ],
                [
                    _mm256_mul_ps(mv, f(m)),
                    _mm256_mul_ps(mv, f(_mm_srli_si128(m, 8))),
                ],
            )
        }
    }
}

/// A k-quant with sub-blocks of 16 (Q2_K, Q3_K, Q6_K) as a [`Packed`] format.
pub struct PK16<K>(std::marker::PhantomData<K>);

impl<K: K16> Packed for PK16<K> {
    const UNIT_BYTES: usize = K::BYTES;
    const LEVEL_MAX: i32 = K::LEVEL_MAX;
    const BLOCKS: usize = 8;
    const GROUP: usize = 4;
    const HALVES: usize = 2;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4] {
        // SAFETY: forwarded.
        unsafe { K::levels::<S>(p, g) }
    }

    #[inline(always)]
    unsafe fn group2<S: Simd>(pa: *const u8, pb: *const u8, g: usize) -> [__m512i; 4] {
        // SAFETY: forwarded.
        unsafe { K::levels2::<S>(pa, pb, g) }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: whole super-blocks at `p[r]`; `s`, `o` hold 128 floats.
        unsafe {
            let mut sv = [[_mm256_setzero_si256(); ROWS]; 2];
            let mut ov = [[_mm256_setzero_si256(); ROWS]; 2];
            for r in 0..ROWS {
                let (a, b) = K::subs(p[r]);
                for c in 0..2 {
                    sv[c][r] = _mm256_castps_si256(a[c]);
                    ov[c][r] = _mm256_castps_si256(b[c]);
                }
            }
            for c in 0..2 {
                store_transposed(sv[c], s.as_mut_ptr().add(c * 8 * ROWS));
                if let Some(f) = K::OFFSET {
                    // `o = offset · s`: the same product as `subs` forms, on the transposed `s`.
                    for e in 0..8 {
                        let at = (c * 8 + e) * ROWS;
                        let v =
                            _mm256_mul_ps(_mm256_set1_ps(f), _mm256_loadu_ps(s.as_ptr().add(at)));
                        _mm256_storeu_ps(o.as_mut_ptr().add(at), v);
                    }
                } else {
                    store_transposed(ov[c], o.as_mut_ptr().add(c * 8 * ROWS));
                }
            }
        }
    }
}

/// The f16 at byte `off` of each of the eight units, as f32.
///
/// # Safety
/// Two readable bytes at `p[r] + off`; AVX2 + F16C.
#[inline(always)]
pub(super) unsafe fn halves8(p: &[*const u8; ROWS], off: usize) -> __m256 {
    // SAFETY: caller's contract.
    unsafe {
        let h = |r: usize| (p[r].add(off) as *const i16).read_unaligned();
        _mm256_cvtph_ps(_mm_setr_epi16(
            h(0),
            h(1),
            h(2),
            h(3),
            h(4),
            h(5),
            h(6),
            h(7),
        ))
    }
}

/// The 32-bit word at byte `off` of each of the eight units.
///
/// # Safety
/// Four readable bytes at `p[r] + off`; AVX.
#[inline(always)]
pub(super) unsafe fn words8(p: &[*const u8; ROWS], off: usize) -> __m256i {
    // SAFETY: caller's contract.
    unsafe {
        let w = |r: usize| (p[r].add(off) as *const i32).read_unaligned();
        _mm256_setr_epi32(w(0), w(1), w(2), w(3), w(4), w(5), w(6), w(7))
    }
}

/// Byte `k` of each 32-bit lane of `v`, as f32.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn byte_lanes(v: __m256i, k: usize) -> __m256 {
    // SAFETY: AVX2 (caller).
    unsafe {
        let b = match k {
            0 => v,
            1 => _mm256_srli_epi32(v, 8),
            2 => _mm256_srli_epi32(v, 16),
            _ => _mm256_srli_epi32(v, 24),
        };
        _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(0xff)))
    }
}

/// The low eight unsigned bytes of `x` as f32.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn u8x8(x: __m128i) -> __m256 {
    // SAFETY: AVX2 (caller).
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x)) }
}

/// Stores row vectors `v[r]` (entries `0..8` of row `r`) as `dst[e · ROWS + r]`.
///
/// # Safety
/// `dst` is writable for 64 floats; AVX2.
#[inline(always)]
unsafe fn store_transposed(v: [__m256i; ROWS], dst: *mut f32) {
    // SAFETY: caller's contract.
    unsafe {
        for (e, t) in transpose8(v).iter().enumerate() {
            _mm256_storeu_si256(dst.add(e * ROWS) as *mut __m256i, *t);
        }
    }
}

/// One scale entry of the module docs' arithmetic for the eight rows of `isum`'s lanes.
///
/// # Safety
/// AVX2 + FMA; `s` and `o` point to eight floats.
#[inline(always)]
pub(super) unsafe fn step(
    acc: &mut __m256,
    corr: &mut __m256,
    isum: __m256i,
    s: *const f32,
    o: *const f32,
    dx: f32,
    sum: f32,
) {
    // SAFETY: caller's contract.
    unsafe {
        let scale = _mm256_mul_ps(_mm256_loadu_ps(s), _mm256_set1_ps(dx));
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
        *corr = _mm256_fmadd_ps(_mm256_loadu_ps(o), _mm256_set1_ps(sum), *corr);
    }
}

/// Stores the eight lanes of `acc + corr` as rows `0..nr` at `out`.
///
/// # Safety
/// `out` is writable for `nr ≤ 8` floats; AVX.
#[inline(always)]
pub(super) unsafe fn store(out: *mut f32, nr: usize, acc: __m256, corr: __m256) {
    // SAFETY: caller's contract.
    unsafe {
        let v = _mm256_add_ps(acc, corr);
        if nr >= ROWS {
            _mm256_storeu_ps(out, v);
        } else {
            let mut tmp = [0.0f32; ROWS];
            _mm256_storeu_ps(tmp.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, nr);
        }
    }
}

/// The first 64-byte-aligned element of a panel buffer. The buffers are sized one cache line
/// more than they need and used from there, so that no vector load or store of theirs straddles
/// two lines (measured: a split load of every 512-bit weight vector cost the F16 panels ~20%).
pub(super) fn lined<T>(v: &[T]) -> *const T {
    v.as_ptr().wrapping_add(line_offset(v.as_ptr()))
}

/// As [`lined`], for writing.
pub(super) fn lined_mut<T>(v: &mut [T]) -> *mut T {
    let at = line_offset(v.as_ptr());
    v.as_mut_ptr().wrapping_add(at)
}

/// Elements from `p` to the next 64-byte boundary (fewer than `64 / size_of::<T>()`), computed
/// from the address (`align_offset` may give up and return `usize::MAX`).
pub(super) fn line_offset<T>(p: *const T) -> usize {
    (64 - (p as usize) % 64) % 64 / std::mem::size_of::<T>()
}

/// Packs `8 · G` rows (missing rows of a short panel repeat the last one; their results are not
/// stored) into `buf`: levels transposed per block, `(s, o)` per entry. The rows go in octets
/// side by side: vector `j` of block `b` for octet `h` at byte `((b · 8 + j) · G + h) · 32`, the
/// entry `e` of octet `h` at float `(e · G + h) · 8`, so that with `G = 2` one 512-bit load
/// takes sixteen rows.
///
/// # Safety
/// `w` holds `nr` rows of `row_bytes` with `cols / 32` blocks each; the CPU supports `S`.
#[inline(always)]
unsafe fn pack<S: Simd, P: Packed, const G: usize>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    cols: usize,
    buf: &mut PanelBuf,
) {
    let nb = cols / 32;
    let units = nb / P::BLOCKS;
    let entries = P::BLOCKS * P::HALVES;
    buf.levels.resize(nb * 256 * G + 64, 0);
    buf.s.resize(units * entries * ROWS * G + 16, 0.0);
    buf.o.resize(units * entries * ROWS * G + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    // SAFETY: units `u < units` of rows `r < nr` are inside the caller's rows; the buffers were
    // sized above.
    unsafe {
        for u in 0..units {
            for h in 0..G {
                // Closures do not inherit target features in this generic code, so loops fill
                // the arrays of vectors throughout these kernels (a closure here made the
                // intrinsics calls).
                let mut p = [w; ROWS];
                for (r, pr) in p.iter_mut().enumerate() {
                    *pr = w.add((h * ROWS + r).min(nr - 1) * row_bytes + u * P::UNIT_BYTES);
                }
                for g in 0..P::BLOCKS / P::GROUP {
                    let mut lv = [[_mm256_setzero_si256(); 4]; ROWS];
                    for r in 0..ROWS {
                        lv[r] = P::group::<S>(p[r], g);
                    }
                    for k in 0..P::GROUP {
                        let mut col = [_mm256_setzero_si256(); ROWS];
                        for r in 0..ROWS {
                            col[r] = lv[r][k];
                        }
                        let v = transpose8(col);
                        let b = u * P::BLOCKS + g * P::GROUP + k;
                        let dst = lined_mut(&mut buf.levels) as *mut __m256i;
                        for (j, x) in v.iter().enumerate() {
                            _mm256_storeu_si256(dst.add((b * 8 + j) * G + h), *x);
                        }
                    }
                }
                let (mut s, mut o) = ([0.0f32; 16 * ROWS], [0.0f32; 16 * ROWS]);
                P::scales::<S>(&p, &mut s, &mut o);
                for e in 0..entries {
                    let at = ((u * entries + e) * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(e * ROWS), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(e * ROWS), ob.add(at), ROWS);
                }
            }
        }
    }
}

/// `N` consecutive rows of 8-bit activations from row `t0` ([`crate::act`]): their bytes, the
/// scale `dx` of each block of 32, and the sums `dx · Σqx` each scale entry pairs with.
pub(super) struct ActRows<const N: usize> {
    pub(super) x: [*const u8; N],
    d: [*const f32; N],
    ds: [*const f32; N],
    ds16: [*const f32; N],
}

impl<const N: usize> ActRows<N> {
    /// # Safety
    /// Rows `t0..t0 + N` of `act` exist, with `cols` bytes, `cols / 32` scales and sums and
    /// `cols / 16` sums per half block each.
    #[inline(always)]
    pub(super) unsafe fn new(act: &ActPtr, cols: usize, t0: usize) -> Self {
        let nb = cols / 32;
        // SAFETY: caller's contract.
        unsafe {
            Self {
                x: std::array::from_fn(|i| act.qs.add((t0 + i) * cols) as *const u8),
                d: std::array::from_fn(|i| act.d.add((t0 + i) * nb)),
                ds: std::array::from_fn(|i| act.dsum.add((t0 + i) * nb)),
                ds16: std::array::from_fn(|i| act.dsum16.add((t0 + i) * 2 * nb)),
            }
        }
    }

    /// Bytes `at..at + 4` of row `i`, as one 32-bit word.
    ///
    /// # Safety
    /// Inside the row.
    #[inline(always)]
    unsafe fn quad(&self, i: usize, at: usize) -> i32 {
        // SAFETY: caller's contract.
        unsafe { (self.x[i].add(at) as *const i32).read_unaligned() }
    }

    /// The 32 bytes of block `b` of row `i`.
    ///
    /// # Safety
    /// Inside the row; AVX.
    #[inline(always)]
    unsafe fn block(&self, i: usize, b: usize) -> __m256i {
        // SAFETY: caller's contract.
        unsafe { _mm256_loadu_si256(self.x[i].add(b * 32) as *const __m256i) }
    }

    /// `dx` of block `b` of row `i`.
    ///
    /// # Safety
    /// Inside the row.
    #[inline(always)]
    pub(super) unsafe fn dx(&self, i: usize, b: usize) -> f32 {
        // SAFETY: caller's contract.
        unsafe { *self.d[i].add(b) }
    }

    /// The sum that scale entry `h` of block `b` of `P` pairs with: per half block for the
    /// formats with two entries a block, else per block.
    ///
    /// # Safety
    /// Inside the row.
    #[inline(always)]
    pub(super) unsafe fn sum<P: Packed>(&self, i: usize, b: usize, h: usize) -> f32 {
        // SAFETY: caller's contract.
        unsafe {
            if P::HALVES == 2 {
                *self.ds16[i].add(2 * b + h)
            } else {
                *self.ds[i].add(b)
            }
        }
    }
}

/// The packed panel against activation rows `t0..t0 + N`.
///
/// # Safety
/// As for [`panel_body`]; `t0 + N ≤ job.n`; `buf` packed for the job.
#[inline(always)]
pub(super) unsafe fn gemm<S: Simd, P: Packed, const N: usize>(
    job: &PanelJob,
    buf: &PanelBuf,
    t0: usize,
) {
    let nb = job.cols / 32;
    // SAFETY: activation rows `t0..t0 + N` hold `cols` values, `nb` scales and sums each; the
    // panel holds `nb` blocks; `out` rows `t0..t0 + N` have `nr` writable floats at `job.out`.
    unsafe {
        let a = ActRows::<N>::new(&job.act, job.cols, t0);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut corr = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let lv = lined(&buf.levels).add(b * 256) as *const __m256i;
            // With two halves per block (vectors 0..4 and 4..8) there are two sums.
            let mut isum = [[_mm256_setzero_si256(); 2]; N];
            // Without VNNI, the 16-bit pair sums of `RUN16` vectors at a time, widened once.
            let mut i16s = [_mm256_setzero_si256(); N];
            for j in 0..8 {
                let wv = _mm256_loadu_si256(lv.add(j));
                // Signed levels: |w| (|−128| is 128 unsigned), the sign goes to x below.
                let uw = if P::SIGNED && !S::VNNI {
                    _mm256_abs_epi8(wv)
                } else {
                    wv
                };
                let h = if P::HALVES == 2 { j / 4 } else { 0 };
                for i in 0..N {
                    let mut xb = _mm256_set1_epi32(a.quad(i, b * 32 + 4 * j));
                    if S::VNNI {
                        isum[i][h] = S::dot_u8i8(isum[i][h], wv, xb);
                    } else {
                        if P::SIGNED {
                            xb = _mm256_sign_epi8(xb, wv);
                        }
                        i16s[i] = _mm256_add_epi16(i16s[i], _mm256_maddubs_epi16(uw, xb));
                        if (j + 1) % P::RUN16 == 0 {
                            let wide = _mm256_madd_epi16(i16s[i], _mm256_set1_epi16(1));
                            isum[i][h] = _mm256_add_epi32(isum[i][h], wide);
                            i16s[i] = _mm256_setzero_si256();
                        }
                    }
                }
            }
            for h in 0..P::HALVES {
                let e = b * P::HALVES + h;
                let (s, o) = (lined(&buf.s).add(e * ROWS), lined(&buf.o).add(e * ROWS));
                for i in 0..N {
                    let (dx, sum) = (a.dx(i, b), a.sum::<P>(i, b, h));
                    step(&mut acc[i], &mut corr[i], isum[i][h], s, o, dx, sum);
                }
            }
        }
        for i in 0..N {
            store(job.out.add((t0 + i) * job.ldo), job.nr, acc[i], corr[i]);
        }
    }
}

/// Packs the job's eight rows and multiplies them with all its activation rows.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; the CPU supports `S`.
#[inline(always)]
pub(super) unsafe fn panel_body<S: Simd, P: Packed>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack::<S, P, 1>(job.w, job.row_bytes, job.nr, job.cols, buf);
        let mut t = 0;
        while t + 4 <= job.n {
            gemm::<S, P, 4>(job, buf, t);
            t += 4;
        }
        while t < job.n {
            gemm::<S, P, 1>(job, buf, t);
            t += 1;
        }
    }
}

/// As [`gemm`] for a panel of sixteen rows packed with `G = 2`, on 512-bit vectors (AVX-512
/// VNNI): one `vpdpbusd` takes sixteen rows, twice the work of a 256-bit one at the same rate
/// on the cores measured. Lane `r` does what lane `r mod 8` of [`gemm`] or of a tile does for
/// its row, so the results are the same bit for bit.
///
/// # Safety
/// As for [`gemm`], with `buf` packed by `pack::<_, P, 2>`; AVX-512 F + VNNI.
#[inline(always)]
pub(super) unsafe fn gemm16<P: Packed, const N: usize>(job: &PanelJob, buf: &PanelBuf, t0: usize) {
    let nb = job.cols / 32;
    // SAFETY: as in `gemm`; the panel holds `nb` blocks of 512 bytes and 16 floats per entry.
    unsafe {
        let a = ActRows::<N>::new(&job.act, job.cols, t0);
        let mut acc = [_mm512_setzero_ps(); N];
        let mut corr = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let lv = lined(&buf.levels).add(b * 512) as *const __m512i;
            let mut isum = [[_mm512_setzero_si512(); 2]; N];
            for j in 0..8 {
                let wv = _mm512_loadu_si512(lv.add(j));
                let h = if P::HALVES == 2 { j / 4 } else { 0 };
                for i in 0..N {
                    let xb = _mm512_set1_epi32(a.quad(i, b * 32 + 4 * j));
                    isum[i][h] = _mm512_dpbusd_epi32(isum[i][h], wv, xb);
                }
            }
            for h in 0..P::HALVES {
                let e = b * P::HALVES + h;
                let s = _mm512_loadu_ps(lined(&buf.s).add(e * 2 * ROWS));
                let o = _mm512_loadu_ps(lined(&buf.o).add(e * 2 * ROWS));
                for i in 0..N {
                    let sum = a.sum::<P>(i, b, h);
                    let scale = _mm512_mul_ps(s, _mm512_set1_ps(a.dx(i, b)));
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][h]), scale, acc[i]);
                    corr[i] = _mm512_fmadd_ps(o, _mm512_set1_ps(sum), corr[i]);
                }
            }
        }
        let mask = if job.nr >= 2 * ROWS {
            0xffff
        } else {
            (1u16 << job.nr) - 1
        };
        for i in 0..N {
            let v = _mm512_add_ps(acc[i], corr[i]);
            _mm512_mask_storeu_ps(job.out.add((t0 + i) * job.ldo), mask, v);
        }
    }
}

/// Packs the job's sixteen rows and multiplies them with all its activation rows (AVX-512).
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
pub(super) unsafe fn panel16_body<P: Packed>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack::<super::Avx512, P, 2>(job.w, job.row_bytes, job.nr, job.cols, buf);
        let mut t = 0;
        while t + 4 <= job.n {
            gemm16::<P, 4>(job, buf, t);
            t += 4;
        }
        while t < job.n {
            gemm16::<P, 1>(job, buf, t);
            t += 1;
        }
    }
}

/// Super-blocks ahead of the one being multiplied that a k-quant row tile asks for. 8 rather
/// than 4: the 1.24B benchmark model's Q4_K_M and IQ4_XS decode, two threads, three and two
/// alternating rounds of `camelid bench -p 0 -n 64 -r 2`, went 30.2–31.5 → 31.8–33.2 and
/// 33.6–34.8 → 35.3–35.7 tokens/s (its rows of 2048 columns now take the next eight rows' way
/// below, a whole tile ahead); 16 was no better than 8.
pub(super) const AHEAD: usize = 8;

/// Asks for weights ahead of unit `u` of the eight rows from `r0`. The eight rows are read as
/// eight streams, too short for the hardware prefetcher to run ahead of. The k-quants ask for
/// super-block `u + AHEAD` of each row (past the rows' end: at the start of the next eight
/// rows); the 32-element formats, whose blocks are a few dozen bytes, for the `u`-th slice of
/// the next eight rows (contiguous), as many bytes as a block of each row. Measured with
/// `--example matvec`: the k-quants' way is 1.1–1.35× the other on Q4_K and Q6_K rows of 8192
/// columns and the same on rows of 2048, but it costs Q4_0, whose blocks are 18 bytes, a
/// quarter of its speed. Rows of at most `AHEAD` super-blocks (2048 columns or fewer) take the
/// 32-element formats' way too, where the k-quants' way asks for lines a row past the ones
/// needed next: in-cache decode of 512-column Q4_K_M and Q6_K models, one thread, best of 8,
/// measured 1.03–1.05× (Q4_K_M) and 1.08× (Q6_K) at a load average of 4, 1.1–1.4× at 6.
///
/// # Safety
/// None: the addresses are formed with wrapping arithmetic and only prefetched.
#[inline(always)]
unsafe fn prefetch_ahead<P: Packed>(t: &Tile, r0: usize, u: usize, units: usize) {
    // SAFETY: hints.
    unsafe {
        if P::BLOCKS == 1 || units <= AHEAD {
            let next = t.w.wrapping_add((r0 + ROWS) * t.row_bytes);
            prefetch(
                next.wrapping_add(u * ROWS * P::UNIT_BYTES),
                ROWS * P::UNIT_BYTES,
            );
        } else {
            let (first, at) = if u + AHEAD < units {
                (r0, u + AHEAD)
            } else {
                (r0 + ROWS, u + AHEAD - units)
            };
            for r in 0..ROWS {
                let row = t.w.wrapping_add((first + r) * t.row_bytes);
                prefetch(row.wrapping_add(at * P::UNIT_BYTES), P::UNIT_BYTES);
            }
        }
    }
}

/// How a row tile sums a group of blocks ([`Packed::group`]) of its eight rows against the
/// activations: for block `k` of the group and activation row `i`, `[i][k] = (lo, hi)` with the
/// integer sums of elements `0..16` (`lo`) and `16..32` (`hi`) of rows `0..8` in lanes `0..8`.
/// The sums are exact, so the two widths give the same values.
pub(super) trait Fold {
    /// # Safety
    /// `p[r]` point to whole units; block `b0 + k` exists in the activation rows; the CPU
    /// supports `S` (and AVX-512 VNNI for [`Fold512`]).
    unsafe fn sums<S: Simd, P: Packed, const N: usize>(
        p: &[*const u8; ROWS],
        g: usize,
        a: &ActRows<N>,
        b0: usize,
    ) -> [[(__m256i, __m256i); 4]; N];
}

/// 256-bit vectors: one row's block per dot product, the eight rows' lane sums folded by six
/// horizontal adds and two lane swaps.
pub(super) struct Fold256;

impl Fold for Fold256 {
    #[inline(always)]
    unsafe fn sums<S: Simd, P: Packed, const N: usize>(
        p: &[*const u8; ROWS],
        g: usize,
        a: &ActRows<N>,
        b0: usize,
    ) -> [[(__m256i, __m256i); 4]; N] {
        // SAFETY: caller's contract.
        unsafe {
            // pair[i][k][q]: rows 2q and 2q + 1 folded by one horizontal add.
            let mut pair = [[[_mm256_setzero_si256(); 4]; 4]; N];
            for q in 0..ROWS / 2 {
                let la = P::group::<S>(p[2 * q], g);
                let lb = P::group::<S>(p[2 * q + 1], g);
                for k in 0..P::GROUP {
                    for i in 0..N {
                        let xv = a.block(i, b0 + k);
                        pair[i][k][q] =
                            _mm256_hadd_epi32(P::dot::<S>(la[k], xv), P::dot::<S>(lb[k], xv));
                    }
                }
            }
            let mut out = [[(_mm256_setzero_si256(), _mm256_setzero_si256()); 4]; N];
            for i in 0..N {
                for k in 0..P::GROUP {
                    // Lanes 0..4 of `q0`: rows 0..4, elements 0..16; 4..8: elements 16..32.
                    let q0 = _mm256_hadd_epi32(pair[i][k][0], pair[i][k][1]);
                    let q1 = _mm256_hadd_epi32(pair[i][k][2], pair[i][k][3]);
                    out[i][k] = (
                        _mm256_permute2x128_si256(q0, q1, 0x20),
                        _mm256_permute2x128_si256(q0, q1, 0x31),
                    );
                }
            }
            out
        }
    }
}

/// 512-bit vectors (AVX-512 VNNI): rows `2q` and `2q + 1` share one vector, so one `vpdpbusd`
/// takes two rows' block, and the fold is six two-source permutes (`vpermt2d`) and three adds.
/// The nibble formats ([`Packed::NIBBLES`]) take four rows a vector instead ([`nibble_sums`]).
pub(super) struct Fold512;

/// The 16 nibble bytes at `off` of the units `p[0..4]`, row `r` in 128-bit lane `r`.
///
/// # Safety
/// 16 readable bytes at each `p[r] + off`; AVX-512 F.
#[inline(always)]
unsafe fn four_rows(p: &[*const u8], off: usize) -> __m512i {
    // SAFETY: caller's contract.
    unsafe {
        let row = |r: usize| _mm_loadu_si128(p[r].add(off) as *const __m128i);
        let v = _mm512_castsi128_si512(row(0));
        let v = _mm512_inserti32x4::<1>(v, row(1));
        let v = _mm512_inserti32x4::<2>(v, row(2));
        _mm512_inserti32x4::<3>(v, row(3))
    }
}

/// [`Fold::sums`] of a nibble format on 512-bit vectors: four rows' 16 nibble bytes a vector,
/// the low nibbles against activation bytes `0..16` and the high ones against `16..32`
/// accumulating into the same lanes, so that eight rows take four `vpdpbusd` into two vectors
/// of four lane sums a row, folded by two two-source permutes, a swap of lane pairs and a
/// gather of the even lanes. The block sum comes back whole as `lo` (`hi` zero): the tile adds
/// them, and integer sums are exact in any order, so the result is [`Fold256`]'s. The IQ4
/// formats look their nibbles up in the codebook offset by 128, as their `group` does.
///
/// # Safety
/// As for [`Fold::sums`] with `P::NIBBLES = Some(off)`; AVX-512 F/BW + VNNI.
#[inline(always)]
unsafe fn nibble_sums<P: Packed, const N: usize>(
    p: &[*const u8; ROWS],
    off: usize,
    g: usize,
    a: &ActRows<N>,
    b0: usize,
) -> [[(__m256i, __m256i); 4]; N] {
    // SAFETY: caller's contract.
    unsafe {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let mask = _mm512_set1_epi8(0x0f);
        let book = _mm512_xor_si512(
            _mm512_broadcast_i32x4(_mm_loadu_si128(IQ4NL_VALUES.as_ptr() as *const __m128i)),
            _mm512_set1_epi8(-128),
        );
        // Not a closure: closures do not inherit the target features here.
        #[inline(always)]
        unsafe fn levels<P: Packed>(book: __m512i, v: __m512i) -> __m512i {
            if P::IQ4 {
                // SAFETY: AVX-512 BW (the caller's).
                unsafe { _mm512_shuffle_epi8(book, v) }
            } else {
                v
            }
        }
        let mut out = [[(_mm256_setzero_si256(), _mm256_setzero_si256()); 4]; N];
        for k in 0..P::GROUP {
            let at = off + 16 * (g * P::GROUP + k);
            let w = [four_rows(&p[..4], at), four_rows(&p[4..], at)];
            let lo = [
                levels::<P>(book, _mm512_and_si512(w[0], mask)),
                levels::<P>(book, _mm512_and_si512(w[1], mask)),
            ];
            let hi = [
                levels::<P>(book, _mm512_and_si512(_mm512_srli_epi16::<4>(w[0]), mask)),
                levels::<P>(book, _mm512_and_si512(_mm512_srli_epi16::<4>(w[1]), mask)),
            ];
            for i in 0..N {
                let x = a.x[i].add((b0 + k) * 32);
                let xlo = _mm512_broadcast_i32x4(_mm_loadu_si128(x as *const __m128i));
                let xhi = _mm512_broadcast_i32x4(_mm_loadu_si128(x.add(16) as *const __m128i));
                let mut d = [_mm512_setzero_si512(); 2];
                for h in 0..2 {
                    d[h] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[h], xlo);
                    d[h] = _mm512_dpbusd_epi32(d[h], hi[h], xhi);
                }
                // Lanes 2r and 2r + 1 of `e`: row r's four lane sums in pairs; then both hold
                // the row's sum, and the even lanes go to lanes 0..8.
                let e = _mm512_add_epi32(
                    _mm512_permutex2var_epi32(d[0], even, d[1]),
                    _mm512_permutex2var_epi32(d[0], odd, d[1]),
                );
                let f = _mm512_add_epi32(e, _mm512_shuffle_epi32::<0xb1>(e));
                let v = _mm512_permutexvar_epi32(even, f);
                out[i][k] = (_mm512_castsi512_si256(v), _mm256_setzero_si256());
            }
        }
        out
    }
}

impl Fold for Fold512 {
    #[inline(always)]
    unsafe fn sums<S: Simd, P: Packed, const N: usize>(
        p: &[*const u8; ROWS],
        g: usize,
        a: &ActRows<N>,
        b0: usize,
    ) -> [[(__m256i, __m256i); 4]; N] {
        // SAFETY: caller's contract.
        unsafe {
            if let Some(off) = P::NIBBLES {
                return nibble_sums::<P, N>(p, off, g, a, b0);
            }
            // Over the 32 lanes of two vectors: the sum of lanes 2j and 2j + 1, then, with each
            // row's four pair sums at lanes 4r..4r + 4, its two halves: lanes 0..8 take half 0
            // of rows 0..8, lanes 8..16 half 1 (loop-invariant constants).
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
            let half0 =
                _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 2, 6, 10, 14, 18, 22, 26, 30);
            let half1 = _mm512_add_epi32(half0, _mm512_set1_epi32(1));
            // dots[i][k][q]: rows 2q (lanes 0..8) and 2q + 1 (lanes 8..16).
            let mut dots = [[[_mm512_setzero_si512(); 4]; 4]; N];
            for q in 0..ROWS / 2 {
                let lv = P::group2::<S>(p[2 * q], p[2 * q + 1], g);
                for k in 0..P::GROUP {
                    for i in 0..N {
                        let xv = _mm512_broadcast_i64x4(a.block(i, b0 + k));
                        dots[i][k][q] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lv[k], xv);
                    }
                }
            }
            let mut out = [[(_mm256_setzero_si256(), _mm256_setzero_si256()); 4]; N];
            for i in 0..N {
                for k in 0..P::GROUP {
                    let d = &dots[i][k];
                    let e01 = _mm512_add_epi32(
                        _mm512_permutex2var_epi32(d[0], even, d[1]),
                        _mm512_permutex2var_epi32(d[0], odd, d[1]),
                    );
                    let e23 = _mm512_add_epi32(
                        _mm512_permutex2var_epi32(d[2], even, d[3]),
                        _mm512_permutex2var_epi32(d[2], odd, d[3]),
                    );
                    let f = _mm512_add_epi32(
                        _mm512_permutex2var_epi32(e01, half0, e23),
                        _mm512_permutex2var_epi32(e01, half1, e23),
                    );
                    out[i][k] = (_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1));
                }
            }
            out
        }
    }
}

/// A tile: the weight rows eight at a time, read in place, against `N` activation rows, their
/// block sums formed by `F`.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with Q8 activations; the CPU supports `S` (and `F`'s
/// features).
#[inline(always)]
pub(super) unsafe fn tile_body<S: Simd, P: Packed, F: Fold, const N: usize>(t: &Tile) {
    let nb = t.cols / 32;
    let units = nb / P::BLOCKS;
    // SAFETY: the tile contract bounds every pointer: `nr` rows of `units` units, `N` activation
    // rows of `cols` bytes, `nb` scales and sums, `2 · nb` sums per 16.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let mut s = [0.0f32; 16 * ROWS];
        let mut o = [0.0f32; 16 * ROWS];
        let mut r0 = 0;
        while r0 < t.nr {
            let nr = (t.nr - r0).min(ROWS);
            let mut rows = [t.w; ROWS];
            for (r, p) in rows.iter_mut().enumerate() {
                *p = t.w.add((r0 + r.min(nr - 1)) * t.row_bytes);
            }
            let mut acc = [_mm256_setzero_ps(); N];
            let mut corr = [_mm256_setzero_ps(); N];
            for u in 0..units {
                prefetch_ahead::<P>(t, r0, u, units);
                let mut p = rows;
                for pr in p.iter_mut() {
                    *pr = pr.add(u * P::UNIT_BYTES);
                }
                P::scales::<S>(&p, &mut s, &mut o);
                for g in 0..P::BLOCKS / P::GROUP {
                    let b0 = u * P::BLOCKS + g * P::GROUP;
                    let sums = F::sums::<S, P, N>(&p, g, &a, b0);
                    for k in 0..P::GROUP {
                        let (bu, b) = (g * P::GROUP + k, b0 + k);
                        for i in 0..N {
                            let (lo, hi) = sums[i][k];
                            let dx = a.dx(i, b);
                            if P::HALVES == 2 {
                                for (h, v) in [lo, hi].into_iter().enumerate() {
                                    let e = 2 * bu + h;
                                    let (sp, op) =
                                        (s.as_ptr().add(e * ROWS), o.as_ptr().add(e * ROWS));
                                    step(
                                        &mut acc[i],
                                        &mut corr[i],
                                        v,
                                        sp,
                                        op,
                                        dx,
                                        a.sum::<P>(i, b, h),
                                    );
                                }
                            } else {
                                let (sp, op) =
                                    (s.as_ptr().add(bu * ROWS), o.as_ptr().add(bu * ROWS));
                                step(
                                    &mut acc[i],
                                    &mut corr[i],
                                    _mm256_add_epi32(lo, hi),
                                    sp,
                                    op,
                                    dx,
                                    a.sum::<P>(i, b, 0),
                                );
                            }
                        }
                    }
                }
            }
            for i in 0..N {
                store(t.out.add(i * t.ldo + r0), nr, acc[i], corr[i]);
            }
            r0 += ROWS;
        }
    }
}

/// The row-tile entry points of one path: [`tile_body`] with the path's `Simd` and [`Fold`].
macro_rules! tiles {
    ($feat:literal, $simd:ty, $fold:ty; $($name:ident: $ty:ty;)*) => {
        $(entry!($feat, $simd, $name, tile_body, $ty, $fold);)*
    };
}

macro_rules! panels {
    ($feat:literal, $simd:ty; $($name:ident: $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::PanelFn`]; the CPU supports this path's features.
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { panel_body::<$simd, $ty>(job, buf) }
            }
        )*
    };
}

/// AVX2: `vpmaddubsw` saturates above 128 × 127 per pair, so Q8_0 (levels up to 255 in the
/// packed form) has no panel there; its tile takes every batch size.
pub mod avx2 {
    use super::super::{Avx2, entry};
    use super::*;
    panels! {
        "avx2,fma,f16c", Avx2;
        panel_q8_0: P32<Q8_0>;
        panel_q4_0: P32<Q4_0>;
        panel_q4_1: P32<Q4_1>;
        panel_q5_0: P32<Q5_0>;
        panel_q5_1: P32<Q5_1>;
        panel_q4_k: PK<Q4K>;
        panel_q5_k: PK<Q5K>;
        panel_q2_k: PK16<Q2K>;
        panel_q3_k: PK16<Q3K>;
        panel_q6_k: PK16<Q6K>;
    }
    tiles! {
        "avx2,fma,f16c", Avx2, Fold256;
        tile_q8_0: P32<Q8_0>;
        tile_q4_0: P32<Q4_0>;
        tile_q4_1: P32<Q4_1>;
        tile_q5_0: P32<Q5_0>;
        tile_q5_1: P32<Q5_1>;
        tile_q4_k: PK<Q4K>;
        tile_q5_k: PK<Q5K>;
        tile_q2_k: PK16<Q2K>;
        tile_q3_k: PK16<Q3K>;
        tile_q6_k: PK16<Q6K>;
    }
}

pub mod avx512 {
    use super::super::{Avx512, entry};
    use super::*;
    /// Sixteen rows per panel on this path ([`panel16_body`]).
    pub const PANEL_ROWS: usize = 2 * ROWS;
    macro_rules! panels16 {
        ($($name:ident: $ty:ty;)*) => {
            $(
                /// # Safety
                /// As for [`crate::kernels::PanelFn`]; the CPU supports AVX-512 VNNI.
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
                pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                    // SAFETY: forwarded contract, with this path's features.
                    unsafe { panel16_body::<$ty>(job, buf) }
                }
            )*
        };
    }
    panels16! {
        panel_q8_0: P32<Q8_0>;
        panel_q4_0: P32<Q4_0>;
        panel_q4_1: P32<Q4_1>;
        panel_q5_0: P32<Q5_0>;
        panel_q5_1: P32<Q5_1>;
        panel_q4_k: PK<Q4K>;
        panel_q5_k: PK<Q5K>;
        panel_q2_k: PK16<Q2K>;
        panel_q3_k: PK16<Q3K>;
        panel_q6_k: PK16<Q6K>;
    }
    tiles! {
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", Avx512, Fold512;
        tile_q8_0: P32<Q8_0>;
        tile_q4_0: P32<Q4_0>;
        tile_q4_1: P32<Q4_1>;
        tile_q5_0: P32<Q5_0>;
        tile_q5_1: P32<Q5_1>;
        tile_q4_k: PK<Q4K>;
        tile_q5_k: PK<Q5K>;
        tile_q2_k: PK16<Q2K>;
        tile_q3_k: PK16<Q3K>;
        tile_q6_k: PK16<Q6K>;
    }
}
