//! Rows interleaved in eights ([`crate::interleave`]) on AVX-512 VNNI: the decode tiles and
//! prompt panels of Q4_K, Q5_K, Q6_K, IQ4_XS, Q4_0, Q4_1, IQ4_NL and Q8_0. They give the results of
//! [`super::panel`]'s tiles and panels on the file's layout bit for bit: the same integer block
//! sums (exact in any order) meet the same scale entries in the same f32 steps, block by block.
//!
//! Tile: a 64-byte vector holds the same eight bytes of the eight rows, so against eight
//! activation bytes broadcast to every row one `vpdpbusd` gives each row two lane sums, and the
//! vectors of a block (or of a sub-block of 16) add up in one accumulator. One fold (two
//! two-source permutes and an add) then turns two accumulators into the eight rows' sums of two
//! blocks, where the file-layout tile folds eight rows per block ([`super::panel::Fold512`]) and
//! loads each row apart. Q4_K's pieces hold two blocks (low and high nibbles): the high ones are
//! masked in place (`0xf0`, sixteen times the level: one operation instead of a shift and a
//! mask) and their sums shifted back, exactly. Q6_K's scales are stored a vector of eight rows
//! per entry, so they need no transposes.
//!
//! The eight rows are one contiguous stream, which the hardware prefetcher follows: asking for
//! the group eight ahead, as the file-layout tiles do, was slower (`--example kernel_cost`, one
//! thread, a 9 MiB Q4_K matrix in L3: 0.025 → 0.030 ns/byte; 75 MB from memory: the same).
//! Only Q6_K's tile asks ahead ([`AHEAD6`]), and its quants are laid out in the order it reads
//! them: with `qh` after all of `ql`, as in the file, three interleaved streams, one thread read
//! a Q6_K matrix from memory at half the speed of Q4_K's.
//!
//! Panel: the vectors of a piece go to the panel's layout (row `r` at lane `r`) with one permute
//! each, so packing costs less than the file layout's transposes.

use std::arch::x86_64::*;

use super::Avx512;
use super::iq::{IQ4NL, PIQ4XS};
use super::kq::{Q4K, Q5K, Q6K};
use super::panel::{ActRows, P32, PK, PK16, Packed, ROWS, gemm16, lined_mut, step, store};
use super::q8::{Block32, Q4_0, Q4_1, Q8_0};
use crate::kernels::{PanelBuf, PanelJob, Tile};
use crate::quant::IQ4NL_VALUES;

/// Bytes of a Q4_K super-block.
const BLOCK: usize = 144;
/// Bytes of a Q5_K super-block.
const BLOCK5: usize = 176;
/// Where a Q4_K or Q5_K group's quants start: after the eight rows' 16-byte headers (`d`,
/// `dmin`, scales).
const BODY: usize = ROWS * 16;
/// Bytes of an IQ4_XS super-block.
const BLOCK_XS: usize = 136;
/// Where an IQ4_XS group's nibbles start: after the eight rows' 8-byte headers.
const BODY_XS: usize = ROWS * 8;

/// The eight rows' headers of `bytes` each at the start of the group at `g`, where
/// [`Packed::scales`] reads them.
#[inline(always)]
pub(super) fn headers(g: *const u8, bytes: usize) -> [*const u8; ROWS] {
    std::array::from_fn(|r| g.wrapping_add(bytes * r))
}

/// An interleaved format whose blocks of 32 go in pairs: a pair's levels are four vectors per
/// block, each holding eight elements of the eight rows, and one fold gives both blocks' sums.
/// Every type here but Q6_K (sub-blocks of 16, [`tile6_body`]).
trait Pairs {
    /// Bytes of a group: a unit of each of the eight rows.
    const GROUP: usize;
    /// Blocks of 32 per unit (even).
    const BLOCKS: usize;
    /// Whether the tile takes the second block of a pair at sixteen times its levels (Q4_K's
    /// high nibbles masked in place), whose sums it shifts back.
    const HI16: bool = false;
    /// The format in the file's layout, whose scale entries and activation sums these are.
    type P: Packed;

    /// `s[e · 8 + r]`, `o[e · 8 + r]` for the unit's `BLOCKS` entries, as `P::scales` gives
    /// them.
    ///
    /// # Safety
    /// A whole group at `g`; AVX-512 F + F16C.
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]);

    /// The levels of blocks `2p` and `2p + 1` of the group at `g`: four vectors each, with the
    /// first of the eight elements a vector holds. `PACK`: the levels themselves, for the panel
    /// (else the second block may be sixteen times over: [`Pairs::HI16`]).
    ///
    /// # Safety
    /// A whole group at `g`; AVX-512 F/BW.
    unsafe fn levels<const PACK: bool>(g: *const u8, p: usize) -> [[(__m512i, usize); 4]; 2];
}

impl Pairs for Q4K {
    const GROUP: usize = ROWS * BLOCK;
    const BLOCKS: usize = 8;
    const HI16: bool = true;
    type P = PK<Q4K>;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: forwarded.
        unsafe { PK::<Q4K>::scales::<Avx512>(&headers(g, 16), s, o) }
    }
    #[inline(always)]
    unsafe fn levels<const PACK: bool>(g: *const u8, p: usize) -> [[(__m512i, usize); 4]; 2] {
        // SAFETY: forwarded; nibble piece `4p + v` holds elements `8v..8v + 8` of block `2p`
        // (low nibbles) and `2p + 1` (high).
        unsafe {
            let m = _mm512_set1_epi8(0x0f);
            let mut l = [[(_mm512_setzero_si512(), 0); 4]; 2];
            for v in 0..4 {
                let w = _mm512_loadu_si512(g.add(BODY + 64 * (4 * p + v)) as *const __m512i);
                let hi = if PACK {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(w), m)
                } else {
                    _mm512_and_si512(w, _mm512_set1_epi8(0xf0u8 as i8))
                };
                l[0][v] = (_mm512_and_si512(w, m), 8 * v);
                l[1][v] = (hi, 8 * v);
            }
            l
        }
    }
}

impl Pairs for Q5K {
    const GROUP: usize = ROWS * BLOCK5;
    const BLOCKS: usize = 8;
    type P = PK<Q5K>;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: forwarded.
        unsafe { PK::<Q5K>::scales::<Avx512>(&headers(g, 16), s, o) }
    }
    #[inline(always)]
    unsafe fn levels<const PACK: bool>(g: *const u8, p: usize) -> [[(__m512i, usize); 4]; 2] {
        // SAFETY: forwarded.
        unsafe {
            let (lo, hi) = levels5(g, p);
            let mut l = [[(_mm512_setzero_si512(), 0); 4]; 2];
            for v in 0..4 {
                l[0][v] = (lo[v], 8 * v);
                l[1][v] = (hi[v], 8 * v);
            }
            l
        }
    }
}

impl Pairs for PIQ4XS {
    const GROUP: usize = ROWS * BLOCK_XS;
    const BLOCKS: usize = 8;
    type P = PIQ4XS;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: forwarded.
        unsafe { <PIQ4XS as Packed>::scales::<Avx512>(&headers(g, 8), s, o) }
    }
    #[inline(always)]
    unsafe fn levels<const PACK: bool>(g: *const u8, p: usize) -> [[(__m512i, usize); 4]; 2] {
        // SAFETY: forwarded; block `2p + k` is pieces `4p + 2k` (elements 0..8 low, 16..24
        // high) and `4p + 2k + 1` (8..16, 24..32).
        unsafe {
            let mut l = [[(_mm512_setzero_si512(), 0); 4]; 2];
            for k in 0..2 {
                for t in 0..2 {
                    let (lo, hi) = codes_xs(g, 4 * p + 2 * k + t);
                    l[k][t] = (lo, 8 * t);
                    l[k][2 + t] = (hi, 16 + 8 * t);
                }
            }
            l
        }
    }
}

/// The levels of nibble piece `k` of the IQ4_XS group at `g`: the low nibbles (elements
/// `8(k mod 2)..+8` of block `k div 2`) and the high ones (elements `16 + 8(k mod 2)..+8`),
/// looked up in IQ4_NL's codebook offset by 128 (unsigned, as [`super::iq`]'s VNNI levels).
///
/// # Safety
/// A whole group at `g`; AVX-512 F/BW.
#[inline(always)]
unsafe fn codes_xs(g: *const u8, k: usize) -> (__m512i, __m512i) {
    // SAFETY: caller's contract.
    unsafe {
        let book = iq4_book();
        let (lo, hi) = split(_mm512_loadu_si512(g.add(BODY_XS + 64 * k) as *const __m512i));
        (_mm512_shuffle_epi8(book, lo), _mm512_shuffle_epi8(book, hi))
    }
}

/// The piece `k` of the quants of the group at `g` (after a 32-byte header).
///
/// # Safety
/// A whole group at `g`.
#[inline(always)]
unsafe fn piece32(g: *const u8, k: usize) -> __m512i {
    // SAFETY: caller's contract.
    unsafe { _mm512_loadu_si512(g.add(32 + 64 * k) as *const __m512i) }
}

/// Q4_1: as Q4_0, with the eight rows' minimums of each block after their scales (a 64-byte
/// header), `s = d`, `o = m`.
impl Pairs for Q4_1 {
    const GROUP: usize = ROWS * 40;
    const BLOCKS: usize = 2;
    type P = P32<Q4_1>;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: the `d`s at 0 and 16, the `m`s at 32 and 48 (caller's contract).
        unsafe {
            for j in 0..2 {
                let half = |at: usize| _mm_loadu_si128(g.add(at) as *const __m128i);
                _mm256_storeu_ps(s.as_mut_ptr().add(8 * j), _mm256_cvtph_ps(half(16 * j)));
                _mm256_storeu_ps(
                    o.as_mut_ptr().add(8 * j),
                    _mm256_cvtph_ps(half(32 + 16 * j)),
                );
            }
        }
    }
    #[inline(always)]
    unsafe fn levels<const PACK: bool>(g: *const u8, _p: usize) -> [[(__m512i, usize); 4]; 2] {
        // SAFETY: forwarded; Q4_0's pieces 32 bytes further on.
        unsafe { <Q4_0 as Pairs>::levels::<PACK>(g.add(32), 0) }
    }
}

/// The low and high nibbles of a piece of nibbles.
///
/// # Safety
/// AVX-512 F/BW.
#[inline(always)]
unsafe fn split(w: __m512i) -> (__m512i, __m512i) {
    // SAFETY: caller's contract.
    unsafe {
        let m = _mm512_set1_epi8(0x0f);
        (
            _mm512_and_si512(w, m),
            _mm512_and_si512(_mm512_srli_epi16::<4>(w), m),
        )
    }
}

/// IQ4_NL's codebook offset by 128, in every 128-bit lane (the VNNI levels of [`super::iq`]).
///
/// # Safety
/// AVX-512 F.
#[inline(always)]
unsafe fn iq4_book() -> __m512i {
    // SAFETY: the codebook is 16 bytes.
    unsafe {
        _mm512_xor_si512(
            _mm512_broadcast_i32x4(_mm_loadu_si128(IQ4NL_VALUES.as_ptr() as *const __m128i)),
            _mm512_set1_epi8(-128),
        )
    }
}

/// The 32-element formats, two blocks a unit: the eight rows' `d` of each block side by side
/// (16 bytes), then the quants in pieces (Q4_0, IQ4_NL: two a block; Q8_0: four).
macro_rules! pairs32 {
    ($($ty:ty, $bytes:literal: |$g:ident, $j:ident| $levels:expr;)*) => {
        $(
            impl Pairs for $ty {
                const GROUP: usize = ROWS * 2 * $bytes;
                const BLOCKS: usize = 2;
                type P = P32<$ty>;
                #[inline(always)]
                unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
                    // SAFETY: the `d`s at 0 and 16 (caller's contract); `s = d`,
                    // `o = offset · d` as [`P32`]'s `scales` has them.
                    unsafe {
                        let off = _mm256_set1_ps(<$ty as Block32>::offset::<Avx512>());
                        for j in 0..2 {
                            let d = _mm_loadu_si128(g.add(16 * j) as *const __m128i);
                            let d = _mm256_cvtph_ps(d);
                            _mm256_storeu_ps(s.as_mut_ptr().add(8 * j), d);
                            _mm256_storeu_ps(o.as_mut_ptr().add(8 * j), _mm256_mul_ps(off, d));
                        }
                    }
                }
                #[inline(always)]
                unsafe fn levels<const PACK: bool>(
                    $g: *const u8,
                    _p: usize,
                ) -> [[(__m512i, usize); 4]; 2] {
                    // SAFETY: forwarded.
                    unsafe {
                        let mut l = [[(_mm512_setzero_si512(), 0); 4]; 2];
                        for $j in 0..2 {
                            l[$j] = $levels;
                        }
                        l
                    }
                }
            }
        )*
    };
}

pairs32! {
    // Block `j`'s pieces: `2j` (elements 0..8 low, 16..24 high) and `2j + 1` (8..16, 24..32).
    Q4_0, 18: |g, j| {
        let (l0, h0) = split(piece32(g, 2 * j));
        let (l1, h1) = split(piece32(g, 2 * j + 1));
        [(l0, 0), (l1, 8), (h0, 16), (h1, 24)]
    };
    // Q4_0's pieces looked up in the codebook.
    IQ4NL, 18: |g, j| {
        let book = iq4_book();
        let (l0, h0) = split(piece32(g, 2 * j));
        let (l1, h1) = split(piece32(g, 2 * j + 1));
        [
            (_mm512_shuffle_epi8(book, l0), 0),
            (_mm512_shuffle_epi8(book, l1), 8),
            (_mm512_shuffle_epi8(book, h0), 16),
            (_mm512_shuffle_epi8(book, h1), 24),
        ]
    };
    // Pieces `4j..4j + 4`, flipped to unsigned as [`Q8_0`]'s VNNI levels (no closures here:
    // they would not inherit the target features).
    Q8_0, 34: |g, j| {
        let flip = _mm512_set1_epi8(-128);
        let mut q = [(_mm512_setzero_si512(), 0); 4];
        for v in 0..4 {
            q[v] = (_mm512_xor_si512(piece32(g, 4 * j + v), flip), 8 * v);
        }
        q
    };
}

/// The row tile of a [`Pairs`] format: `t.nr` (a multiple of eight) interleaved rows against
/// `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
unsafe fn tile_body<P: Pairs, const N: usize>(t: &Tile) {
    let units = t.cols / (32 * P::BLOCKS);
    // SAFETY: the tile contract bounds every pointer: `nr` rows of `units` units in groups of
    // eight rows, `N` activation rows of `cols` bytes and `cols / 32` scales and sums.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let mut s = [0.0f32; 8 * ROWS];
        let mut o = [0.0f32; 8 * ROWS];
        let mut r0 = 0;
        while r0 < t.nr {
            let base = t.w.add(r0 * t.row_bytes);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut corr = [_mm256_setzero_ps(); N];
            for u in 0..units {
                let g = base.add(u * P::GROUP);
                P::scales(g, &mut s, &mut o);
                for p in 0..P::BLOCKS / 2 {
                    let l = P::levels::<false>(g, p);
                    let b = u * P::BLOCKS + 2 * p;
                    for i in 0..N {
                        let x = a.x[i].add(32 * b);
                        let mut d = [_mm512_setzero_si512(); 2];
                        for k in 0..2 {
                            for (v, off) in l[k] {
                                let xv = (x.add(32 * k + off) as *const i64).read_unaligned();
                                d[k] = _mm512_dpbusd_epi32(d[k], v, _mm512_set1_epi64(xv));
                            }
                        }
                        // Lanes 0..8: block b of rows 0..8; 8..16: block b + 1.
                        let f = _mm512_add_epi32(
                            _mm512_permutex2var_epi32(d[0], even, d[1]),
                            _mm512_permutex2var_epi32(d[0], odd, d[1]),
                        );
                        let f = if P::HI16 {
                            _mm512_mask_srai_epi32(f, 0xff00, f, 4)
                        } else {
                            f
                        };
                        let sums = [_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1)];
                        for (k, v) in sums.into_iter().enumerate() {
                            let e = (2 * p + k) * ROWS;
                            step(
                                &mut acc[i],
                                &mut corr[i],
                                v,
                                s.as_ptr().add(e),
                                o.as_ptr().add(e),
                                a.dx(i, b + k),
                                a.sum::<P::P>(i, b + k, 0),
                            );
                        }
                    }
                }
            }
            for i in 0..N {
                store(t.out.add(i * t.ldo + r0), ROWS, acc[i], corr[i]);
            }
            r0 += ROWS;
        }
    }
}

/// Packs sixteen interleaved rows of a [`Pairs`] format (a last panel of eight repeats them;
/// their results are not stored) as [`super::panel`]'s `pack::<_, P::P, 2>` does from rows in
/// the file's layout: the same bytes and floats in the same places.
///
/// # Safety
/// `w` holds `nr` (8 or 16) interleaved rows of `row_bytes` with `cols / (32 · BLOCKS)` units
/// each; AVX-512 F/BW.
#[inline(always)]
unsafe fn pack<P: Pairs>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    cols: usize,
    buf: &mut PanelBuf,
) {
    const G: usize = 2;
    let nb = cols / 32;
    buf.levels.resize(nb * 256 * G + 64, 0);
    buf.s.resize(nb * ROWS * G + 16, 0.0);
    buf.o.resize(nb * ROWS * G + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: groups `u < units` of octets below `nr` are inside the caller's rows; the buffers
    // were sized above.
    unsafe {
        for h in 0..G {
            let octet = w.add(h.min(nr / ROWS - 1) * ROWS * row_bytes);
            for u in 0..nb / P::BLOCKS {
                let g = octet.add(u * P::GROUP);
                for p in 0..P::BLOCKS / 2 {
                    for (k, lk) in P::levels::<true>(g, p).into_iter().enumerate() {
                        for (v, off) in lk {
                            put_piece(dst, u * P::BLOCKS + 2 * p + k, off / 8, h, v);
                        }
                    }
                }
                let (mut s, mut o) = ([0.0f32; 8 * ROWS], [0.0f32; 8 * ROWS]);
                P::scales(g, &mut s, &mut o);
                for e in 0..P::BLOCKS {
                    let at = ((u * P::BLOCKS + e) * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(e * ROWS), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(e * ROWS), ob.add(at), ROWS);
                }
            }
        }
    }
}

/// Bit `k` of each byte of `q` as 16 or 0 (Q5_K's fifth bit of block `k` of a pair of pieces).
///
/// # Safety
/// AVX-512 F/BW.
#[inline(always)]
unsafe fn fifth(q: __m512i, k: usize) -> __m512i {
    // SAFETY: AVX-512 BW (the caller's).
    unsafe {
        let s = match k {
            0 => _mm512_slli_epi16::<4>(q),
            1 => _mm512_slli_epi16::<3>(q),
            2 => _mm512_slli_epi16::<2>(q),
            3 => _mm512_slli_epi16::<1>(q),
            4 => q,
            5 => _mm512_srli_epi16::<1>(q),
            6 => _mm512_srli_epi16::<2>(q),
            _ => _mm512_srli_epi16::<3>(q),
        };
        _mm512_and_si512(s, _mm512_set1_epi8(0x10))
    }
}

/// The levels of blocks `2j` and `2j + 1` of the Q5_K group at `g`, piece by piece: nibble
/// piece `4j + v` (low nibbles: block `2j`, high: `2j + 1`, elements `8v..8v + 8`) with the
/// fifth bits of `qh` piece `v`.
///
/// # Safety
/// A whole group at `g`; AVX-512 F/BW.
#[inline(always)]
unsafe fn levels5(g: *const u8, j: usize) -> ([__m512i; 4], [__m512i; 4]) {
    // SAFETY: caller's contract: `qh` pieces 0..4 and nibble pieces 4..20 from `BODY`.
    unsafe {
        let p = g.add(BODY) as *const __m512i;
        let m = _mm512_set1_epi8(0x0f);
        let (mut lo, mut hi) = ([_mm512_setzero_si512(); 4], [_mm512_setzero_si512(); 4]);
        for v in 0..4 {
            let (q, w) = (
                _mm512_loadu_si512(p.add(v)),
                _mm512_loadu_si512(p.add(4 + 4 * j + v)),
            );
            lo[v] = _mm512_or_si512(_mm512_and_si512(w, m), fifth(q, 2 * j));
            hi[v] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(w), m),
                fifth(q, 2 * j + 1),
            );
        }
        (lo, hi)
    }
}

/// Bytes of a Q6_K super-block.
const BLOCK6: usize = 210;
/// Where a Q6_K group's quants start: after the scales (8 · 16 bytes) and the `d`s (8 · 2).
const BODY6: usize = 144;
/// How far ahead the Q6_K tile asks for the quants it will read. Unlike the other types' tiles
/// (see the module docs), this one gains from it: one thread read a 110 MB matrix from memory
/// at 0.051–0.053 ns/byte without, 0.043–0.045 with 4 KiB, 0.043–0.047 with 8, 0.050 with 16
/// (`kernel_cost`, `CAMELID_COST_ROWS=32768`), and nothing changed in L2 or L3; the same
/// prefetch made Q4_K, Q5_K, Q8_0, Q4_0 and IQ4_XS 2–35% slower from memory. Perhaps because
/// each half super-block here asks for twelve new lines at once where the others ask for four.
const AHEAD6: usize = 4096;

/// Scale entries `e` (sub-blocks of 16) of the eight rows of the Q6_K group at `g` as
/// [`PK16`]'s `scales` gives them: `s[8e + r] = d · sc`, `o = −32 · s`, the same products.
///
/// # Safety
/// A whole group at `g`; `s`, `o` hold 128 floats; AVX-512 F + F16C.
#[inline(always)]
unsafe fn scales6(g: *const u8, s: &mut [f32; 16 * ROWS], o: &mut [f32; 16 * ROWS]) {
    // SAFETY: caller's contract: scales at 0 (one byte per row and entry), `d`s at 128.
    unsafe {
        let d = _mm256_cvtph_ps(_mm_loadu_si128(g.add(128) as *const __m128i));
        let d = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(d), d);
        for e in (0..16).step_by(2) {
            let sc = _mm_loadu_si128(g.add(8 * e) as *const __m128i);
            let sv = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)));
            _mm512_storeu_ps(s.as_mut_ptr().add(e * ROWS), sv);
            let ov = _mm512_mul_ps(_mm512_set1_ps(-32.0), sv);
            _mm512_storeu_ps(o.as_mut_ptr().add(e * ROWS), ov);
        }
    }
}

/// The levels of blocks `4h..4h + 4` of the Q6_K group at `g`, `[block][piece]`: piece `v`
/// holds elements `8v..8v + 8` of the eight rows, two 32-bit lanes a row (Q6_K's element order
/// as in [`super::kq`]'s `q6k_levels`).
///
/// # Safety
/// A whole group at `g`; AVX-512 F/BW.
#[inline(always)]
unsafe fn levels6(g: *const u8, h: usize) -> [[__m512i; 4]; 4] {
    // SAFETY: caller's contract: from `BODY6`, per half and `v`, `ql` pieces `8h + v` and
    // `8h + 4 + v` and `qh` piece `4h + v` (`interleave::q6k_piece`).
    unsafe {
        // Not closures: they would not inherit the caller's target features.
        #[inline(always)]
        unsafe fn level(nib: __m512i, top: __m512i) -> __m512i {
            // SAFETY: AVX-512 F (the caller's).
            unsafe {
                _mm512_or_si512(
                    _mm512_and_si512(nib, _mm512_set1_epi8(0x0f)),
                    _mm512_and_si512(top, _mm512_set1_epi8(0x30)),
                )
            }
        }
        let p = g.add(BODY6) as *const __m512i;
        let mut l = [[_mm512_setzero_si512(); 4]; 4];
        for v in 0..4 {
            let at = 12 * h + 3 * v;
            let a = _mm512_loadu_si512(p.add(at));
            let b = _mm512_loadu_si512(p.add(at + 1));
            let q = _mm512_loadu_si512(p.add(at + 2));
            l[0][v] = level(a, _mm512_slli_epi16::<4>(q));
            l[1][v] = level(b, _mm512_slli_epi16::<2>(q));
            l[2][v] = level(_mm512_srli_epi16::<4>(a), q);
            l[3][v] = level(_mm512_srli_epi16::<4>(b), _mm512_srli_epi16::<2>(q));
        }
        l
    }
}

/// The Q6_K row tile: per block, pieces 0–1 and 2–3 are its two sub-blocks of 16, whose lane
/// sums one fold turns into the eight rows' two sums.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
unsafe fn tile6_body<const N: usize>(t: &Tile) {
    let units = t.cols / 256;
    // SAFETY: as in `tile_body`; activation rows also hold `cols / 16` sums.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let mut s = [0.0f32; 16 * ROWS];
        let mut o = [0.0f32; 16 * ROWS];
        let mut r0 = 0;
        while r0 < t.nr {
            let base = t.w.add(r0 * t.row_bytes);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut corr = [_mm256_setzero_ps(); N];
            for u in 0..units {
                let g = base.add(u * ROWS * BLOCK6);
                scales6(g, &mut s, &mut o);
                for h in 0..2 {
                    // The twelve lines of quants this half reads, `AHEAD6` bytes on.
                    let ahead = g.wrapping_add(BODY6 + 64 * 12 * h + AHEAD6);
                    for k in 0..12 {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * k) as *const i8);
                    }
                    let l = levels6(g, h);
                    for (k, lk) in l.iter().enumerate() {
                        let (bu, b) = (4 * h + k, u * 8 + 4 * h + k);
                        for i in 0..N {
                            let x = a.x[i].add(32 * b) as *const i64;
                            let mut xv = [_mm512_setzero_si512(); 4];
                            for v in 0..4 {
                                xv[v] = _mm512_set1_epi64(x.add(v).read_unaligned());
                            }
                            let d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lk[0], xv[0]);
                            let d0 = _mm512_dpbusd_epi32(d0, lk[1], xv[1]);
                            let d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lk[2], xv[2]);
                            let d1 = _mm512_dpbusd_epi32(d1, lk[3], xv[3]);
                            // Lanes 0..8: elements 0..16 of rows 0..8; 8..16: elements 16..32.
                            let f = _mm512_add_epi32(
                                _mm512_permutex2var_epi32(d0, even, d1),
                                _mm512_permutex2var_epi32(d0, odd, d1),
                            );
                            let sums = [_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1)];
                            for (half, v) in sums.into_iter().enumerate() {
                                let e = (2 * bu + half) * ROWS;
                                step(
                                    &mut acc[i],
                                    &mut corr[i],
                                    v,
                                    s.as_ptr().add(e),
                                    o.as_ptr().add(e),
                                    a.dx(i, b),
                                    a.sum::<PK16<Q6K>>(i, b, half),
                                );
                            }
                        }
                    }
                }
            }
            for i in 0..N {
                store(t.out.add(i * t.ldo + r0), ROWS, acc[i], corr[i]);
            }
            r0 += ROWS;
        }
    }
}

/// Stores piece `v` of block `b` (levels, two 32-bit lanes a row) in a panel packed with
/// `G = 2` for octet `h`: its lanes `2r` and `2r + 1` are the panel's vectors `2v` and `2v + 1`
/// of the block, row `r` at lane `r`.
///
/// # Safety
/// `dst` is the panel's lined level buffer, holding block `b`; AVX-512 F.
#[inline(always)]
unsafe fn put_piece(dst: *mut __m256i, b: usize, v: usize, h: usize, l: __m512i) {
    const G: usize = 2;
    // SAFETY: caller's contract.
    unsafe {
        let order = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let q = _mm512_permutexvar_epi32(order, l);
        _mm256_storeu_si256(dst.add((b * 8 + 2 * v) * G + h), _mm512_castsi512_si256(q));
        _mm256_storeu_si256(
            dst.add((b * 8 + 2 * v + 1) * G + h),
            _mm512_extracti64x4_epi64(q, 1),
        );
    }
}

/// As [`pack`] for Q6_K: `pack::<_, PK16<Q6K>, 2>`'s bytes and floats from interleaved rows.
///
/// # Safety
/// As for [`pack`], with Q6_K rows.
#[inline(always)]
unsafe fn pack6(w: *const u8, row_bytes: usize, nr: usize, cols: usize, buf: &mut PanelBuf) {
    const G: usize = 2;
    let (nb, units) = (cols / 32, cols / 256);
    buf.levels.resize(nb * 256 * G + 64, 0);
    buf.s.resize(units * 16 * ROWS * G + 16, 0.0);
    buf.o.resize(units * 16 * ROWS * G + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: as in `pack`.
    unsafe {
        for h in 0..G {
            let octet = w.add(h.min(nr / ROWS - 1) * ROWS * row_bytes);
            for u in 0..units {
                let g = octet.add(u * ROWS * BLOCK6);
                for half in 0..2 {
                    let l = levels6(g, half);
                    for (k, lk) in l.iter().enumerate() {
                        for (v, &piece) in lk.iter().enumerate() {
                            put_piece(dst, u * 8 + 4 * half + k, v, h, piece);
                        }
                    }
                }
                let (mut s, mut o) = ([0.0f32; 16 * ROWS], [0.0f32; 16 * ROWS]);
                scales6(g, &mut s, &mut o);
                for e in 0..16 {
                    let at = ((u * 16 + e) * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(e * ROWS), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(e * ROWS), ob.add(at), ROWS);
                }
            }
        }
    }
}

/// The entry points of each interleaved type: its decode tile (`$body` for the number of
/// activation rows) and its prompt panel (`$pack`, then [`gemm16`] on the packed `$packed`).
macro_rules! entries {
    ($($tile:ident, $panel:ident: $body:ident<$($g:ty),*>, $pack:ident<$($pg:ty),*>,
        $packed:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 VNNI.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            pub(crate) unsafe fn $tile(t: &Tile) {
                // SAFETY: forwarded contract; the body is inlined here with these features.
                unsafe {
                    match t.nt {
                        1 => $body::<$($g,)* 1>(t),
                        2 => $body::<$($g,)* 2>(t),
                        3 => $body::<$($g,)* 3>(t),
                        _ => $body::<$($g,)* 4>(t),
                    }
                }
            }

            /// # Safety
            /// As for [`crate::kernels::PanelFn`] with the rows interleaved; AVX-512 VNNI.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            pub(crate) unsafe fn $panel(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe {
                    $pack::<$($pg),*>(job.w, job.row_bytes, job.nr, job.cols, buf);
                    let mut t = 0;
                    while t + 4 <= job.n {
                        gemm16::<$packed, 4>(job, buf, t);
                        t += 4;
                    }
                    while t < job.n {
                        gemm16::<$packed, 1>(job, buf, t);
                        t += 1;
                    }
                }
            }
        )*
    };
}

entries! {
    tile_q4_k, panel_q4_k: tile_body<Q4K>, pack<Q4K>, PK<Q4K>;
    tile_q5_k, panel_q5_k: tile_body<Q5K>, pack<Q5K>, PK<Q5K>;
    tile_q6_k, panel_q6_k: tile6_body<>, pack6<>, PK16<Q6K>;
    tile_iq4_xs, panel_iq4_xs: tile_body<PIQ4XS>, pack<PIQ4XS>, PIQ4XS;
    tile_q4_0, panel_q4_0: tile_body<Q4_0>, pack<Q4_0>, P32<Q4_0>;
    tile_q4_1, panel_q4_1: tile_body<Q4_1>, pack<Q4_1>, P32<Q4_1>;
    tile_iq4_nl, panel_iq4_nl: tile_body<IQ4NL>, pack<IQ4NL>, P32<IQ4NL>;
    tile_q8_0, panel_q8_0: tile_body<Q8_0>, pack<Q8_0>, P32<Q8_0>;
}
