//! The i-quants (IQ4_NL, IQ4_XS and the grid types) and the ternary TQ1_0, TQ2_0 as [`Packed`]
//! formats, so that the panels and row tiles of [`super::panel`] (one arithmetic for every batch
//! size) multiply them.
//!
//! - IQ4_NL / IQ4_XS: each nibble indexes a 16-entry signed codebook, looked up with one
//!   `vpshufb`. The levels are signed (−127..113), so on AVX2 they are multiplied as Q8_0's are
//!   (`|v|` times the activation with `v`'s sign), and have no panel there (the panel's unsigned
//!   products would saturate); with VNNI they are flipped to `v + 128` and the `128 · Σx` taken
//!   off through the offset term, as Q8_0 does.
//! - TQ2_0 / TQ1_0: levels `t ∈ 0..3` with offset −1 and one scale per super-block: `s = d`,
//!   `o = −d` for each of the eight blocks.
//! - The grid types (IQ3_*, IQ2_*, IQ1_*): signed levels per block from word-wide table lookups
//!   ([`PGrid`]), multiplied as IQ4's; the integer products are vectorized, the grid lookups
//!   are not.
//!
//! The AVX-512 entry points are the same bodies on the VNNI path (two rows per 512-bit vector in
//! the tiles, sixteen-row panels), where every type has a panel: `vpdpbusd` takes the flipped
//! signed levels without saturating.

use std::arch::x86_64::*;

use super::Simd;
use super::kq::{crumbs, loadu};
use super::panel::{P32, Packed, ROWS, halves8, words8};
use super::q8::{Block32, Q8_0, nibbles, read_u32};
use crate::quant::{Grid, IQ1M, IQ1S, IQ2S, IQ2XS, IQ2XXS, IQ3S, IQ3XXS, IQ4NL_VALUES};

/// Bytes `0..16` of each 128-bit lane of `idx` (all below 16) looked up in the IQ4_NL codebook:
/// signed levels, or `level + 128` with VNNI.
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(super) unsafe fn codebook<S: Simd>(idx: __m256i) -> __m256i {
    // SAFETY: AVX2 (caller); the table is 16 bytes.
    unsafe {
        let t =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_VALUES.as_ptr() as *const __m128i));
        let t = if S::VNNI {
            _mm256_xor_si256(t, _mm256_set1_epi8(-128))
        } else {
            t
        };
        _mm256_shuffle_epi8(t, idx)
    }
}

/// IQ4_NL: as Q8_0 with its 32 values looked up from nibbles.
pub struct IQ4NL;

impl Block32 for IQ4NL {
    const BYTES: usize = 18;
    /// The codebook's magnitudes (−127..113), signed as Q8_0's values.
    const LEVEL_MAX: i32 = 127;
    const SIGNED: bool = true;
    const TYPE1: bool = false;
    const OFFSET: f32 = 0.0;
    const NIBBLES: Option<usize> = Some(2);
    const IQ4: bool = true;
    #[inline(always)]
    fn offset<S: Simd>() -> f32 {
        <Q8_0 as Block32>::offset::<S>()
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 18 bytes: the scale, then 16 bytes of nibbles.
        unsafe { codebook::<S>(nibbles(p.add(2))) }
    }
    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: forwarded; the levels are in −127..113 (signed) like Q8_0's.
        unsafe { <Q8_0 as Block32>::dot::<S>(w, x) }
    }
}

/// IQ4_XS: eight sub-blocks of IQ4_NL's codebook with 6-bit scales (see
/// [`crate::dtype::BlockIQ4XS`]): `s = d · (ls − 32)`, `o = offset · s`.
pub struct PIQ4XS;

impl Packed for PIQ4XS {
    const UNIT_BYTES: usize = 136;
    const BLOCKS: usize = 8;
    const GROUP: usize = 4;
    const HALVES: usize = 1;
    const NIBBLES: Option<usize> = Some(8);
    const IQ4: bool = true;
    const LEVEL_MAX: i32 = 127;
    const SIGNED: bool = true;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4] {
        // SAFETY: sub-block `j` has its 16 bytes of nibbles at 8 + 16j.
        unsafe {
            let mut v = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                v[k] = codebook::<S>(nibbles(p.add(8 + 16 * (4 * g + k))));
            }
            v
        }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: d and scales_h in the word at 0, scales_l in the word at 4; `s`, `o` hold 64.
        unsafe {
            let d = halves8(p, 0);
            // One row a lane: scale j's low nibble is at bit 4j of the word at 4, its high two
            // bits at bit 16 + 2j of the word at 0.
            let (lo, hi) = (words8(p, 4), words8(p, 0));
            let off = _mm256_set1_ps(<Q8_0 as Block32>::offset::<S>());
            for j in 0..8 {
                let l = _mm256_and_si256(
                    _mm256_srlv_epi32(lo, _mm256_set1_epi32(4 * j as i32)),
                    _mm256_set1_epi32(0x0f),
                );
                let h = _mm256_and_si256(
                    _mm256_srlv_epi32(hi, _mm256_set1_epi32(16 + 2 * j as i32)),
                    _mm256_set1_epi32(3),
                );
                let ls = _mm256_sub_epi32(
                    _mm256_or_si256(l, _mm256_slli_epi32(h, 4)),
                    _mm256_set1_epi32(32),
                );
                let sj = _mm256_mul_ps(d, _mm256_cvtepi32_ps(ls));
                _mm256_storeu_ps(s.as_mut_ptr().add(j * ROWS), sj);
                _mm256_storeu_ps(o.as_mut_ptr().add(j * ROWS), _mm256_mul_ps(off, sj));
            }
        }
    }

    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: forwarded; signed levels as IQ4_NL's.
        unsafe { <Q8_0 as Block32>::dot::<S>(w, x) }
    }
}

/// `s = d`, `o = −d` for the eight blocks of the super-blocks at `p` (`d` at byte `d_at`).
///
/// # Safety
/// Two readable bytes at `p[r] + d_at`; `s`, `o` hold 64 floats; AVX2 + F16C.
#[inline(always)]
unsafe fn ternary_scales(p: &[*const u8; ROWS], d_at: usize, s: &mut [f32], o: &mut [f32]) {
    // SAFETY: caller's contract.
    unsafe {
        let d = halves8(p, d_at);
        let neg = _mm256_xor_ps(d, _mm256_set1_ps(-0.0));
        for j in 0..8 {
            _mm256_storeu_ps(s.as_mut_ptr().add(j * ROWS), d);
            _mm256_storeu_ps(o.as_mut_ptr().add(j * ROWS), neg);
        }
    }
}

/// TQ2_0: the 2-bit levels in Q2_K's order (32 bytes per four blocks), offset −1.
pub struct PTQ2;

impl Packed for PTQ2 {
    const UNIT_BYTES: usize = 66;
    const BLOCKS: usize = 8;
    const GROUP: usize = 4;
    const HALVES: usize = 1;
    /// Two-bit fields (0..2 in a valid file, 3 in any other).
    const LEVEL_MAX: i32 = 3;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4] {
        // SAFETY: 64 bytes of levels at 0.
        unsafe { crumbs(loadu(p.add(32 * g))) }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: d at 64.
        unsafe { ternary_scales(p, 64, s, o) }
    }
}

/// Per byte, the trit of `src` that multiplying by `pow` (a power of 3, per byte) brings to the
/// top: `((src · pow mod 256) · 3) >> 8` (see [`crate::dtype::BlockTQ1_0`]). Even and odd bytes
/// go through 16-bit multiplies separately.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn trits(src: __m256i, pow: __m256i) -> __m256i {
    // SAFETY: AVX2 (caller).
    unsafe {
        let lo8 = _mm256_set1_epi16(0x00ff);
        let hi8 = _mm256_set1_epi16(0xff00u16 as i16);
        let three = _mm256_set1_epi16(3);
        // Even bytes: the low byte of the product depends only on the low bytes.
        let pe = _mm256_and_si256(pow, lo8);
        let me = _mm256_and_si256(_mm256_mullo_epi16(src, pe), lo8);
        let te = _mm256_srli_epi16(_mm256_mullo_epi16(me, three), 8);
        // Odd bytes: (hi · 256) · pow keeps (hi · pow mod 256) in the high byte.
        let po = _mm256_srli_epi16(pow, 8);
        let mo = _mm256_mullo_epi16(_mm256_and_si256(src, hi8), po);
        let to = _mm256_and_si256(_mm256_mullo_epi16(_mm256_srli_epi16(mo, 8), three), hi8);
        _mm256_or_si256(te, to)
    }
}

/// TQ1_0: trits packed five to a byte; see [`crate::dtype::BlockTQ1_0`] for the element order.
pub struct PTQ1;

impl Packed for PTQ1 {
    const UNIT_BYTES: usize = 54;
    const BLOCKS: usize = 8;
    const GROUP: usize = 4;
    const HALVES: usize = 1;
    /// Trits: 0..2 from any byte.
    const LEVEL_MAX: i32 = 2;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4] {
        // SAFETY: qs at 0 (48 bytes), qh at 48 (4 bytes); no load reaches past byte 52.
        unsafe {
            if g == 0 {
                // Blocks 0..4: trits 0..4 of qs[0..32].
                let q = loadu(p);
                [
                    trits(q, _mm256_set1_epi8(1)),
                    trits(q, _mm256_set1_epi8(3)),
                    trits(q, _mm256_set1_epi8(9)),
                    trits(q, _mm256_set1_epi8(27)),
                ]
            } else {
                let q = loadu(p);
                let q1 = _mm_loadu_si128(p.add(32) as *const __m128i);
                let qq = _mm256_broadcastsi128_si256(q1);
                // Block 7: trit 4 of qs[32..48], then trits 0..4 of qh[0..4], four bytes each.
                let qh = _mm_set1_epi32(read_u32(p.add(48)) as i32);
                let tail = _mm256_setr_m128i(q1, qh);
                let pow_tail = _mm256_setr_m128i(
                    _mm_set1_epi8(81),
                    _mm_setr_epi32(0x0101_0101, 0x0303_0303, 0x0909_0909, 0x1b1b_1b1b),
                );
                [
                    trits(q, _mm256_set1_epi8(81)),
                    trits(qq, _mm256_setr_m128i(_mm_set1_epi8(1), _mm_set1_epi8(3))),
                    trits(qq, _mm256_setr_m128i(_mm_set1_epi8(9), _mm_set1_epi8(27))),
                    trits(tail, pow_tail),
                ]
            }
        }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: d at 52.
        unsafe { ternary_scales(p, 52, s, o) }
    }
}

/// A grid i-quant ([`Grid`]): each block's levels from word-wide grid lookups and sign flips
/// ([`Grid::block32`]; the lookups have no vector form here), then multiplied as IQ4_NL's signed
/// levels; `s` per half, `o = 0`
/// (with VNNI the `v + 128` correction).
pub struct PGrid<G>(std::marker::PhantomData<G>);

impl<G: Grid> Packed for PGrid<G> {
    const UNIT_BYTES: usize = G::BYTES;
    const BLOCKS: usize = 8;
    const GROUP: usize = 4;
    const HALVES: usize = 2;

    #[inline(always)]
    unsafe fn group<S: Simd>(p: *const u8, g: usize) -> [__m256i; 4] {
        // SAFETY: a whole super-block at `p` (caller); `words` holds the 32 bytes loaded.
        unsafe {
            let b = std::slice::from_raw_parts(p, G::BYTES);
            let mut v = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let words = G::block32(b, 4 * g + k);
                let l = _mm256_loadu_si256(words.as_ptr() as *const __m256i);
                v[k] = if S::VNNI {
                    _mm256_xor_si256(l, _mm256_set1_epi8(-128))
                } else {
                    l
                };
            }
            v
        }
    }

    #[inline(always)]
    unsafe fn scales<S: Simd>(p: &[*const u8; ROWS], s: &mut [f32], o: &mut [f32]) {
        // SAFETY: whole super-blocks at `p[r]` (caller); `s`, `o` hold 16 · ROWS floats.
        unsafe {
            let off = <Q8_0 as Block32>::offset::<S>();
            for (r, &pr) in p.iter().enumerate() {
                let b = std::slice::from_raw_parts(pr, G::BYTES);
                let d = G::d(b);
                for e in 0..16 {
                    let v = G::scale_d(d, b, e);
                    s[e * ROWS + r] = v;
                    o[e * ROWS + r] = off * v;
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: forwarded; the levels are at most 62 in magnitude.
        unsafe { <Q8_0 as Block32>::dot::<S>(w, x) }
    }
}

/// The AVX2 entry points.
pub mod avx2 {
    use super::super::panel::{Fold256, panel_body, tile_body};
    use super::super::{Avx2, entry};
    use super::*;
    use crate::kernels::{PanelBuf, PanelJob};

    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq4_nl,
        tile_body,
        P32<IQ4NL>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq4_xs,
        tile_body,
        PIQ4XS,
        Fold256
    );
    entry!("avx2,fma,f16c", Avx2, tile_tq1_0, tile_body, PTQ1, Fold256);

    /// # Safety
    /// As for [`crate::kernels::PanelFn`]; AVX2 + FMA + F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn panel_iq4_nl(job: &PanelJob, buf: &mut PanelBuf) {
        // SAFETY: forwarded contract, with this path's features.
        unsafe { panel_body::<Avx2, P32<IQ4NL>>(job, buf) }
    }

    /// # Safety
    /// As for [`crate::kernels::PanelFn`]; AVX2 + FMA + F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn panel_iq4_xs(job: &PanelJob, buf: &mut PanelBuf) {
        // SAFETY: forwarded contract, with this path's features.
        unsafe { panel_body::<Avx2, PIQ4XS>(job, buf) }
    }
    entry!("avx2,fma,f16c", Avx2, tile_tq2_0, tile_body, PTQ2, Fold256);
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq3_s,
        tile_body,
        PGrid<IQ3S>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq3_xxs,
        tile_body,
        PGrid<IQ3XXS>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq2_xxs,
        tile_body,
        PGrid<IQ2XXS>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq2_xs,
        tile_body,
        PGrid<IQ2XS>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq2_s,
        tile_body,
        PGrid<IQ2S>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq1_s,
        tile_body,
        PGrid<IQ1S>,
        Fold256
    );
    entry!(
        "avx2,fma,f16c",
        Avx2,
        tile_iq1_m,
        tile_body,
        PGrid<IQ1M>,
        Fold256
    );

    /// # Safety
    /// As for [`crate::kernels::PanelFn`]; AVX2 + FMA + F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn panel_tq1_0(job: &PanelJob, buf: &mut PanelBuf) {
        // SAFETY: forwarded contract, with this path's features.
        unsafe { panel_body::<Avx2, PTQ1>(job, buf) }
    }

    /// # Safety
    /// As for [`crate::kernels::PanelFn`]; AVX2 + FMA + F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn panel_tq2_0(job: &PanelJob, buf: &mut PanelBuf) {
        // SAFETY: forwarded contract, with this path's features.
        unsafe { panel_body::<Avx2, PTQ2>(job, buf) }
    }
}

/// The AVX-512 VNNI entry points.
pub mod avx512 {
    use super::super::panel::{Fold512, panel16_body, tile_body};
    use super::super::{Avx512, entry};
    use super::*;
    use crate::kernels::{PanelBuf, PanelJob};

    macro_rules! avx512 {
        ($($tile:ident, $panel:ident: $ty:ty;)*) => {
            $(
                entry!(
                    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
                    Avx512,
                    $tile,
                    tile_body,
                    $ty,
                    Fold512
                );

                /// # Safety
                /// As for [`crate::kernels::PanelFn`]; the CPU supports AVX-512 VNNI.
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
                pub(crate) unsafe fn $panel(job: &PanelJob, buf: &mut PanelBuf) {
                    // SAFETY: forwarded contract, with this path's features.
                    unsafe { panel16_body::<$ty>(job, buf) }
                }
            )*
        };
    }

    avx512! {
        tile_iq4_nl, panel_iq4_nl: P32<IQ4NL>;
        tile_iq4_xs, panel_iq4_xs: PIQ4XS;
        tile_tq1_0, panel_tq1_0: PTQ1;
        tile_tq2_0, panel_tq2_0: PTQ2;
        tile_iq3_s, panel_iq3_s: PGrid<IQ3S>;
        tile_iq3_xxs, panel_iq3_xxs: PGrid<IQ3XXS>;
        tile_iq2_xxs, panel_iq2_xxs: PGrid<IQ2XXS>;
        tile_iq2_xs, panel_iq2_xs: PGrid<IQ2XS>;
        tile_iq2_s, panel_iq2_s: PGrid<IQ2S>;
        tile_iq1_s, panel_iq1_s: PGrid<IQ1S>;
        tile_iq1_m, panel_iq1_m: PGrid<IQ1M>;
    }
}
