//! Rows interleaved in eights ([`crate::interleave`]) on AVX2: the decode tiles and prompt
//! panels of Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, IQ4_NL and IQ4_XS, with the results of [`super::panel`]'s
//! tiles and panels on the file's layout bit for bit (the same integer block sums meet the same
//! scale entries in the same f32 steps).
//!
//! Tile: the 32 bytes at a piece's start hold eight bytes of rows 0..4 and the next 32 those of
//! rows 4..8, so against eight activation bytes broadcast to every row one `vpmaddubsw` gives
//! each row four 16-bit pair sums. A block's four vectors add up in 16 bits (at most eight
//! products of a level ≤ 31 and an activation ≤ 127 in magnitude: 31,496, no saturation),
//! `vpmaddwd` widens them to two 32-bit sums a row, and one horizontal add and one permute put
//! the eight rows' block sums in the eight lanes. The file-layout tiles form each row's block
//! sum apart and fold eight rows with six horizontal adds and two lane swaps per block
//! ([`super::panel::Fold256`]), loading eight rows apart. The IQ4 formats' levels are the
//! codebook's signed values: `vpmaddubsw` takes |w| against x with w's sign, and each vector's
//! pair sums (up to 2 · 127 · 127) are widened on their own. `kernel_cost` on AVX2, L2, ns/byte,
//! file layout → interleaved: IQ4_XS 0.082 → 0.066, IQ4_NL 0.068 → 0.054, Q5_K 0.066 → 0.054
//! (Q4_0 0.052 → 0.033).
//!
//! Panel: the interleaved rows are packed straight into the file-layout panel's layout (the same
//! bytes and floats `panel`'s `pack` makes from the file's rows: one permute per level vector
//! and two lane swaps per pair) and multiplied by its products. Since that panel sums its
//! 4-bit products in 16 bits ([`Packed::RUN16`]) it beats the tile at every batch size:
//! `--example panel_speed` on AVX2 (one thread, a 1B layer's products, GFLOP/s), the panel /
//! the tile four activation rows at a time, at n = 8, 16, 32, 64, 128, 512: Q4_K 148, 145,
//! 179, 191, 192, 184 / 143, 131, 141, 139, 139, 130; Q4_0 163, 153, 172, 175, 190, 192 / 166,
//! 146, 171, 158, 154, 148; Q4_1 157, 152, 168, 174, 180, 191 / 147, 137, 158, 151, 149, 148.

use std::arch::x86_64::*;

use super::Avx2;
use super::iq::{IQ4NL, PIQ4XS, codebook};
use super::kq::{Q4K, Q5K, Q6K};
use super::octet::headers;
use super::panel::{ActRows, P32, PK, PK16, Packed, ROWS, gemm, lined_mut, step, store};
use super::q8::{Block32, Q4_0, Q4_1};
use crate::kernels::{PanelBuf, PanelJob, Tile};

/// An interleaved format whose blocks of 32 go in pairs, with levels of at most 31 (four
/// vectors' pair sums stay within i16) or, where `P::SIGNED`, IQ4_NL's signed codebook values.
trait Pairs2 {
    /// Bytes of a group: a unit of each of the eight rows.
    const GROUP: usize;
    /// Blocks of 32 per unit (even).
    const BLOCKS: usize;
    /// The format in the file's layout, whose scale entries, activation sums and panel these
    /// are.
    type P: Packed;

    /// `s[e · 8 + r]`, `o[e · 8 + r]` for the unit's `BLOCKS` entries, as `P::scales` gives
    /// them.
    ///
    /// # Safety
    /// A whole group at `g`; AVX2 + F16C.
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]);

    /// The levels of blocks `2p` and `2p + 1` of rows `4h..4h + 4` of the group at `g`: four
    /// vectors a block, each with the offset in the block of the eight elements it holds.
    ///
    /// # Safety
    /// A whole group at `g`; AVX2.
    unsafe fn levels(g: *const u8, p: usize, h: usize) -> [[(__m256i, usize); 4]; 2];
}

/// The 32 bytes at `at` of the group at `g`.
///
/// # Safety
/// Inside the group; AVX.
#[inline(always)]
unsafe fn load(g: *const u8, at: usize) -> __m256i {
    // SAFETY: caller's contract.
    unsafe { _mm256_loadu_si256(g.add(at) as *const __m256i) }
}

/// The eight f16 at `at` of the group at `g`, as f32.
///
/// # Safety
/// Inside the group; AVX + F16C.
#[inline(always)]
unsafe fn halves(g: *const u8, at: usize) -> __m256 {
    // SAFETY: caller's contract.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(g.add(at) as *const __m128i)) }
}

/// The low and high nibbles of 32 bytes of nibbles.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn split(w: __m256i) -> (__m256i, __m256i) {
    // SAFETY: caller's contract.
    unsafe {
        let m = _mm256_set1_epi8(0x0f);
        (
            _mm256_and_si256(w, m),
            _mm256_and_si256(_mm256_srli_epi16::<4>(w), m),
        )
    }
}

impl Pairs2 for Q4K {
    /// Eight 144-byte super-blocks: the rows' 16-byte headers (`d`, `dmin`, scales), then the
    /// nibbles in 64-byte pieces.
    const GROUP: usize = ROWS * 144;
    const BLOCKS: usize = 8;
    type P = PK<Q4K>;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: row `r`'s header at `16r` (caller's contract).
        unsafe { PK::<Q4K>::scales::<Avx2>(&headers(g, 16), s, o) }
    }
    #[inline(always)]
    unsafe fn levels(g: *const u8, p: usize, h: usize) -> [[(__m256i, usize); 4]; 2] {
        // SAFETY: forwarded; nibble piece `4p + v` (after the 128 header bytes) holds elements
        // `8v..8v + 8` of block `2p` (low nibbles) and `2p + 1` (high).
        unsafe {
            let mut l = [[(_mm256_setzero_si256(), 0); 4]; 2];
            for v in 0..4 {
                let (lo, hi) = split(load(g, ROWS * 16 + 64 * (4 * p + v) + 32 * h));
                l[0][v] = (lo, 8 * v);
                l[1][v] = (hi, 8 * v);
            }
            l
        }
    }
}

/// Bit `k` of each byte of `q` as 16 or 0: Q5_K's fifth bit of block `k` of the super-block.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn fifth(q: __m256i, k: usize) -> __m256i {
    // SAFETY: AVX2 (the caller's).
    unsafe {
        let s = match k {
            0 => _mm256_slli_epi16::<4>(q),
            1 => _mm256_slli_epi16::<3>(q),
            2 => _mm256_slli_epi16::<2>(q),
            3 => _mm256_slli_epi16::<1>(q),
            4 => q,
            5 => _mm256_srli_epi16::<1>(q),
            6 => _mm256_srli_epi16::<2>(q),
            _ => _mm256_srli_epi16::<3>(q),
        };
        _mm256_and_si256(s, _mm256_set1_epi8(0x10))
    }
}

impl Pairs2 for Q5K {
    /// Eight 176-byte super-blocks: the rows' 16-byte headers (`d`, `dmin`, scales), then `qh`
    /// in four 64-byte pieces (piece `v`: bytes `8v..8v + 8` of each row, the fifth bits of
    /// elements `8v..8v + 8` of every block), then the nibbles as Q4_K's.
    const GROUP: usize = ROWS * 176;
    const BLOCKS: usize = 8;
    type P = PK<Q5K>;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: row `r`'s header at `16r` (caller's contract).
        unsafe { PK::<Q5K>::scales::<Avx2>(&headers(g, 16), s, o) }
    }
    #[inline(always)]
    unsafe fn levels(g: *const u8, p: usize, h: usize) -> [[(__m256i, usize); 4]; 2] {
        // SAFETY: forwarded; `qh` piece `v` at 128 + 64v, nibble piece `4p + v` at
        // 128 + 64 (4 + 4p + v): elements `8v..8v + 8` of blocks `2p` (low) and `2p + 1` (high).
        unsafe {
            let mut l = [[(_mm256_setzero_si256(), 0); 4]; 2];
            for v in 0..4 {
                let q = load(g, ROWS * 16 + 64 * v + 32 * h);
                let (lo, hi) = split(load(g, ROWS * 16 + 64 * (4 + 4 * p + v) + 32 * h));
                l[0][v] = (_mm256_or_si256(lo, fifth(q, 2 * p)), 8 * v);
                l[1][v] = (_mm256_or_si256(hi, fifth(q, 2 * p + 1)), 8 * v);
            }
            l
        }
    }
}

/// Q4_0 and Q4_1, two blocks a unit: a header of the eight rows' `d` of each block side by side
/// (and for Q4_1 their `m`), then the nibbles in four 64-byte pieces: block `j`'s are pieces
/// `2j` (elements 0..8 low, 16..24 high) and `2j + 1` (8..16, 24..32).
macro_rules! pairs32 {
    ($($ty:ty, $bytes:literal, $header:literal;)*) => {
        $(
            impl Pairs2 for $ty {
                const GROUP: usize = ROWS * 2 * $bytes;
                const BLOCKS: usize = 2;
                type P = P32<$ty>;
                #[inline(always)]
                unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
                    // SAFETY: the `d`s at 0 and 16, Q4_1's `m`s at 32 and 48 (caller's
                    // contract); `s = d` and `o = offset · d` (Q4_0) or `m` (Q4_1), as
                    // [`P32`]'s `scales` has them.
                    unsafe {
                        for j in 0..2 {
                            let d = halves(g, 16 * j);
                            _mm256_storeu_ps(s.as_mut_ptr().add(8 * j), d);
                            let off = if <$ty as Block32>::TYPE1 {
                                halves(g, 32 + 16 * j)
                            } else {
                                _mm256_mul_ps(_mm256_set1_ps(<$ty as Block32>::offset::<Avx2>()), d)
                            };
                            _mm256_storeu_ps(o.as_mut_ptr().add(8 * j), off);
                        }
                    }
                }
                #[inline(always)]
                unsafe fn levels(g: *const u8, _p: usize, h: usize) -> [[(__m256i, usize); 4]; 2] {
                    // SAFETY: forwarded.
                    unsafe {
                        let mut l = [[(_mm256_setzero_si256(), 0); 4]; 2];
                        for j in 0..2 {
                            let (l0, h0) = split(load(g, $header + 64 * (2 * j) + 32 * h));
                            let (l1, h1) = split(load(g, $header + 64 * (2 * j + 1) + 32 * h));
                            l[j] = [(l0, 0), (l1, 8), (h0, 16), (h1, 24)];
                            if <$ty as Block32>::IQ4 {
                                for (v, _) in &mut l[j] {
                                    *v = codebook::<Avx2>(*v);
                                }
                            }
                        }
                        l
                    }
                }
            }
        )*
    };
}

pairs32! {
    Q4_0, 18, 32;
    Q4_1, 20, 64;
    IQ4NL, 18, 32;
}

/// IQ4_XS: the rows' 8-byte headers (`d`, `scales_h`, `scales_l`), then the nibbles in sixteen
/// 64-byte pieces, block `j`'s being pieces `2j` (elements 0..8 low, 16..24 high) and `2j + 1`
/// (8..16, 24..32), looked up in IQ4_NL's codebook.
impl Pairs2 for PIQ4XS {
    const GROUP: usize = ROWS * 136;
    const BLOCKS: usize = 8;
    type P = PIQ4XS;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: row `r`'s header at `8r` (caller's contract).
        unsafe { <PIQ4XS as Packed>::scales::<Avx2>(&headers(g, 8), s, o) }
    }
    #[inline(always)]
    unsafe fn levels(g: *const u8, p: usize, h: usize) -> [[(__m256i, usize); 4]; 2] {
        // SAFETY: forwarded; the pieces of blocks `2p` and `2p + 1` follow the 64 header bytes.
        unsafe {
            let mut l = [[(_mm256_setzero_si256(), 0); 4]; 2];
            for k in 0..2 {
                let j = 2 * p + k;
                let (l0, h0) = split(load(g, 64 + 64 * (2 * j) + 32 * h));
                let (l1, h1) = split(load(g, 64 + 64 * (2 * j + 1) + 32 * h));
                l[k] = [
                    (codebook::<Avx2>(l0), 0),
                    (codebook::<Avx2>(l1), 8),
                    (codebook::<Avx2>(h0), 16),
                    (codebook::<Avx2>(h1), 24),
                ];
            }
            l
        }
    }
}

/// The row tile of a [`Pairs2`] format: `t.nr` (a multiple of eight) interleaved rows against
/// `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX2 + FMA + F16C.
#[inline(always)]
unsafe fn tile_body<P: Pairs2, const N: usize>(t: &Tile) {
    let units = t.cols / (32 * P::BLOCKS);
    // SAFETY: the tile contract bounds every pointer: `nr` rows of `units` units in groups of
    // eight rows, `N` activation rows of `cols` bytes and `cols / 32` scales and sums.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let ones = _mm256_set1_epi16(1);
        let signed = <P::P as Packed>::SIGNED;
        // `vphaddd` of rows 0..4 and 4..8 leaves the rows in the order 0 1 4 5 2 3 6 7.
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
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
                    // `d[i][k][h]`: block `b + k` of rows `4h..4h + 4`, four 16-bit sums a row.
                    let b = u * P::BLOCKS + 2 * p;
                    // Signed levels (IQ4): |w| against x with w's sign, and the pair sums
                    // (up to 2 · 127 · 127) widened one vector at a time: `d` holds 32-bit sums.
                    let mut d = [[[_mm256_setzero_si256(); 2]; 2]; N];
                    for h in 0..2 {
                        let l = P::levels(g, p, h);
                        for k in 0..2 {
                            for (v, off) in l[k] {
                                let uv = if signed { _mm256_abs_epi8(v) } else { v };
                                for i in 0..N {
                                    let x = a.x[i].add(32 * (b + k) + off) as *const i64;
                                    let mut xv = _mm256_set1_epi64x(x.read_unaligned());
                                    if signed {
                                        xv = _mm256_sign_epi8(xv, v);
                                        let w =
                                            _mm256_madd_epi16(_mm256_maddubs_epi16(uv, xv), ones);
                                        d[i][k][h] = _mm256_add_epi32(d[i][k][h], w);
                                    } else {
                                        d[i][k][h] = _mm256_add_epi16(
                                            d[i][k][h],
                                            _mm256_maddubs_epi16(v, xv),
                                        );
                                    }
                                }
                            }
                        }
                    }
                    for i in 0..N {
                        for k in 0..2 {
                            let [mut d0, mut d1] = d[i][k];
                            if !signed {
                                d0 = _mm256_madd_epi16(d0, ones);
                                d1 = _mm256_madd_epi16(d1, ones);
                            }
                            let q = _mm256_hadd_epi32(d0, d1);
                            let e = (2 * p + k) * ROWS;
                            step(
                                &mut acc[i],
                                &mut corr[i],
                                _mm256_permutevar8x32_epi32(q, order),
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

/// As `panel`'s `pack::<Avx2, P::P, 1>` for eight interleaved rows of a [`Pairs2`] format: the
/// same bytes and floats. The panel's vector `j` of block `b` holds elements `4j..4j + 4` of row
/// `r` in 32-bit lane `r`; a level vector holds eight elements of four rows (two 32-bit lanes a
/// row), so one permute per vector and two lane swaps per pair of them make two of the panel's.
///
/// # Safety
/// `w` holds eight interleaved rows of `P` with `cols / (32 · BLOCKS)` units each; AVX2 + F16C.
#[inline(always)]
unsafe fn pack2<P: Pairs2>(w: *const u8, cols: usize, buf: &mut PanelBuf) {
    let (nb, units) = (cols / 32, cols / (32 * P::BLOCKS));
    buf.levels.resize(nb * 256 + 64, 0);
    buf.s.resize(units * P::BLOCKS * ROWS + 16, 0.0);
    buf.o.resize(units * P::BLOCKS * ROWS + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: as in `pack`: the caller's units, the buffers sized above.
    unsafe {
        for u in 0..units {
            let g = w.add(u * P::GROUP);
            for p in 0..P::BLOCKS / 2 {
                let (l0, l1) = (P::levels(g, p, 0), P::levels(g, p, 1));
                for k in 0..2 {
                    let b = u * P::BLOCKS + 2 * p + k;
                    for (&(v0, off), &(v1, _)) in l0[k].iter().zip(&l1[k]) {
                        let (lo, hi) = words(v0, v1);
                        _mm256_storeu_si256(dst.add(b * 8 + off / 4), lo);
                        _mm256_storeu_si256(dst.add(b * 8 + off / 4 + 1), hi);
                    }
                }
            }
            let (mut s, mut o) = ([0.0f32; 8 * ROWS], [0.0f32; 8 * ROWS]);
            P::scales(g, &mut s, &mut o);
            let at = u * P::BLOCKS * ROWS;
            std::ptr::copy_nonoverlapping(s.as_ptr(), sb.add(at), P::BLOCKS * ROWS);
            std::ptr::copy_nonoverlapping(o.as_ptr(), ob.add(at), P::BLOCKS * ROWS);
        }
    }
}

/// Two level vectors of the same eight elements of rows `0..4` (`v0`) and `4..8` (`v1`), as the
/// panel's two vectors of their first and last four elements, row `r` in 32-bit lane `r`.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn words(v0: __m256i, v1: __m256i) -> (__m256i, __m256i) {
    // SAFETY: caller's contract.
    unsafe {
        // Even 32-bit lanes (the rows' first four elements) to the low half, odd to the high.
        let split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        let a0 = _mm256_permutevar8x32_epi32(v0, split);
        let a1 = _mm256_permutevar8x32_epi32(v1, split);
        (
            _mm256_permute2x128_si256::<0x20>(a0, a1),
            _mm256_permute2x128_si256::<0x31>(a0, a1),
        )
    }
}

/// The panel of eight interleaved rows of a [`Pairs2`] format: [`pack2`] and `panel`'s
/// [`gemm`], as for rows in the file's layout.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`] with `job.nr` a whole group of interleaved rows; AVX2 +
/// FMA + F16C.
#[inline(always)]
unsafe fn panel_body2<P: Pairs2>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack2::<P>(job.w, job.cols, buf);
        gemm_all::<P::P>(job, buf);
    }
}

/// `panel`'s [`gemm`] over all the job's activation rows, four at a time.
///
/// # Safety
/// As for [`gemm`], with `buf` packed for the job; AVX2 + FMA + F16C.
#[inline(always)]
unsafe fn gemm_all<P: Packed>(job: &PanelJob, buf: &PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        let mut t = 0;
        while t + 4 <= job.n {
            gemm::<Avx2, P, 4>(job, buf, t);
            t += 4;
        }
        while t < job.n {
            gemm::<Avx2, P, 1>(job, buf, t);
            t += 1;
        }
    }
}

/// [`tile_body`] for `t.nt` activation rows.
///
/// # Safety
/// As for [`tile_body`].
#[inline(always)]
unsafe fn tile_n<P: Pairs2>(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe {
        match t.nt {
            1 => tile_body::<P, 1>(t),
            2 => tile_body::<P, 2>(t),
            3 => tile_body::<P, 3>(t),
            _ => tile_body::<P, 4>(t),
        }
    }
}

/// Bytes of a Q6_K super-block.
const BLOCK6: usize = 210;
/// Where a Q6_K group's quants start: after the scales (8 · 16 bytes) and the `d`s (8 · 2).
const BODY6: usize = 144;
/// How far ahead the Q6_K tile asks for its quants, as the AVX-512 one does (`octet::AHEAD6`).
const AHEAD6: usize = 4096;

/// Scale entries `e` (sub-blocks of 16) of the eight rows of the Q6_K group at `g` as
/// [`PK16`]'s `scales` gives them: `s[8e + r] = d · sc`, `o = −32 · s`, the same products.
///
/// # Safety
/// A whole group at `g`; AVX2 + F16C.
#[inline(always)]
unsafe fn scales6(g: *const u8, s: &mut [f32; 16 * ROWS], o: &mut [f32; 16 * ROWS]) {
    // SAFETY: caller's contract: scales at 0 (one byte per row and entry), `d`s at 128.
    unsafe {
        let d = _mm256_cvtph_ps(_mm_loadu_si128(g.add(128) as *const __m128i));
        for e in 0..16 {
            let sc = _mm_loadl_epi64(g.add(8 * e) as *const __m128i);
            let sv = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
            _mm256_storeu_ps(s.as_mut_ptr().add(e * ROWS), sv);
            let ov = _mm256_mul_ps(_mm256_set1_ps(-32.0), sv);
            _mm256_storeu_ps(o.as_mut_ptr().add(e * ROWS), ov);
        }
    }
}

/// The levels (0..64) of piece `v` of blocks `4h..4h + 4` of rows `4rh..4rh + 4` of the Q6_K
/// group at `g`, `[block]`: elements `8v..8v + 8`, eight bytes a row (Q6_K's element order as
/// in [`super::kq`]'s `q6k_levels`).
///
/// # Safety
/// A whole group at `g`; AVX2.
#[inline(always)]
unsafe fn levels6(g: *const u8, h: usize, v: usize, rh: usize) -> [__m256i; 4] {
    // SAFETY: caller's contract: from `BODY6`, per half and `v`, `ql` pieces `8h + v` and
    // `8h + 4 + v` and `qh` piece `4h + v` (`interleave::q6k_piece`), 64 bytes each.
    unsafe {
        #[inline(always)]
        unsafe fn level(nib: __m256i, top: __m256i) -> __m256i {
            // SAFETY: AVX2 (the caller's).
            unsafe {
                _mm256_or_si256(
                    _mm256_and_si256(nib, _mm256_set1_epi8(0x0f)),
                    _mm256_and_si256(top, _mm256_set1_epi8(0x30)),
                )
            }
        }
        let at = BODY6 + 64 * (12 * h + 3 * v) + 32 * rh;
        let (a, b, q) = (load(g, at), load(g, at + 64), load(g, at + 128));
        [
            level(a, _mm256_slli_epi16::<4>(q)),
            level(b, _mm256_slli_epi16::<2>(q)),
            level(_mm256_srli_epi16::<4>(a), q),
            level(_mm256_srli_epi16::<4>(b), _mm256_srli_epi16::<2>(q)),
        ]
    }
}

/// The Q6_K row tile: per block and sub-block of 16 (pieces 0–1, 2–3), the two pieces of each
/// four rows add up in 16 bits (at most four products of a level ≤ 63 and an activation ≤ 127
/// in magnitude: 32,004), then as [`tile_body`].
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX2 + FMA + F16C.
#[inline(always)]
unsafe fn tile6_body<const N: usize>(t: &Tile) {
    let units = t.cols / 256;
    // SAFETY: as in `tile_body`; activation rows also hold `cols / 16` sums.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let ones = _mm256_set1_epi16(1);
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
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
                    // `sums[i][k][half]`: elements `16 half..16 half + 16` of block `4h + k`
                    // of the eight rows, in 32 bits; each half's `d[i][k][rh]`: rows
                    // `4rh..4rh + 4`, four 16-bit sums a row.
                    let mut sums = [[[_mm256_setzero_si256(); 2]; 4]; N];
                    for half in 0..2 {
                        let mut d = [[[_mm256_setzero_si256(); 2]; 4]; N];
                        for v in 2 * half..2 * half + 2 {
                            for rh in 0..2 {
                                let l = levels6(g, h, v, rh);
                                for k in 0..4 {
                                    let b = u * 8 + 4 * h + k;
                                    for i in 0..N {
                                        let x = a.x[i].add(32 * b + 8 * v) as *const i64;
                                        let xv = _mm256_set1_epi64x(x.read_unaligned());
                                        d[i][k][rh] = _mm256_add_epi16(
                                            d[i][k][rh],
                                            _mm256_maddubs_epi16(l[k], xv),
                                        );
                                    }
                                }
                            }
                        }
                        for i in 0..N {
                            for k in 0..4 {
                                let q = _mm256_hadd_epi32(
                                    _mm256_madd_epi16(d[i][k][0], ones),
                                    _mm256_madd_epi16(d[i][k][1], ones),
                                );
                                sums[i][k][half] = _mm256_permutevar8x32_epi32(q, order);
                            }
                        }
                    }
                    // The f32 steps block by block, half by half, as the file-layout tile's.
                    for i in 0..N {
                        for k in 0..4 {
                            let (bu, b) = (4 * h + k, u * 8 + 4 * h + k);
                            for half in 0..2 {
                                let e = (2 * bu + half) * ROWS;
                                step(
                                    &mut acc[i],
                                    &mut corr[i],
                                    sums[i][k][half],
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

/// As `panel`'s `pack::<Avx2, PK16<Q6K>, 1>` for eight interleaved Q6_K rows: the same bytes
/// and floats, as [`pack2`] makes them.
///
/// # Safety
/// `w` holds eight interleaved Q6_K rows of `row_bytes` with `cols / 256` super-blocks each;
/// AVX2 + F16C.
#[inline(always)]
unsafe fn pack6(w: *const u8, cols: usize, buf: &mut PanelBuf) {
    let (nb, units) = (cols / 32, cols / 256);
    buf.levels.resize(nb * 256 + 64, 0);
    buf.s.resize(units * 16 * ROWS + 16, 0.0);
    buf.o.resize(units * 16 * ROWS + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: as in `pack`: the caller's super-blocks, the buffers sized above.
    unsafe {
        for u in 0..units {
            let g = w.add(u * ROWS * BLOCK6);
            for h in 0..2 {
                for v in 0..4 {
                    let (l0, l1) = (levels6(g, h, v, 0), levels6(g, h, v, 1));
                    for k in 0..4 {
                        let b = u * 8 + 4 * h + k;
                        let (lo, hi) = words(l0[k], l1[k]);
                        _mm256_storeu_si256(dst.add(b * 8 + 2 * v), lo);
                        _mm256_storeu_si256(dst.add(b * 8 + 2 * v + 1), hi);
                    }
                }
            }
            let (mut s, mut o) = ([0.0f32; 16 * ROWS], [0.0f32; 16 * ROWS]);
            scales6(g, &mut s, &mut o);
            let at = u * 16 * ROWS;
            std::ptr::copy_nonoverlapping(s.as_ptr(), sb.add(at), 16 * ROWS);
            std::ptr::copy_nonoverlapping(o.as_ptr(), ob.add(at), 16 * ROWS);
        }
    }
}

/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; the CPU supports AVX2 + FMA +
/// F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile_q6_k(t: &Tile) {
    // SAFETY: forwarded contract; the body is inlined here with these features.
    unsafe {
        match t.nt {
            1 => tile6_body::<1>(t),
            2 => tile6_body::<2>(t),
            3 => tile6_body::<3>(t),
            _ => tile6_body::<4>(t),
        }
    }
}

/// The Q6_K panel of eight interleaved rows: [`pack6`], then `panel`'s [`gemm`] as for rows in
/// the file's layout (at every batch size: faster than the tile from eight activation rows).
///
/// # Safety
/// As for [`crate::kernels::PanelFn`] with `job.nr` a whole group of interleaved rows; the CPU
/// supports AVX2 + FMA + F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn panel_q6_k(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack6(job.w, job.cols, buf);
        gemm_all::<PK16<Q6K>>(job, buf);
    }
}

macro_rules! octets {
    ($($tile:ident, $panel:ident: $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::TileFn`] with the rows interleaved; the CPU supports
            /// AVX2 + FMA + F16C.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(crate) unsafe fn $tile(t: &Tile) {
                // SAFETY: forwarded contract; the body is inlined here with these features.
                unsafe { tile_n::<$ty>(t) }
            }

            /// # Safety
            /// As for [`crate::kernels::PanelFn`] with the rows interleaved; the CPU supports
            /// AVX2 + FMA + F16C.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(crate) unsafe fn $panel(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { panel_body2::<$ty>(job, buf) }
            }
        )*
    };
}

octets! {
    tile_q4_k, panel_q4_k: Q4K;
    tile_q5_k, panel_q5_k: Q5K;
    tile_q4_0, panel_q4_0: Q4_0;
    tile_q4_1, panel_q4_1: Q4_1;
    tile_iq4_nl, panel_iq4_nl: IQ4NL;
    tile_iq4_xs, panel_iq4_xs: PIQ4XS;
}
