//! Rows interleaved in eights ([`crate::interleave`]) on AVX-512 VNNI: the decode tiles and
//! prompt panels of Q4_K, Q5_K, Q6_K, IQ4_XS, Q4_0, IQ4_NL and Q8_0. They give the results of
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
//!
//! Panel: the vectors of a piece go to the panel's layout (row `r` at lane `r`) with one permute
//! each, so packing costs less than the file layout's transposes.

use std::arch::x86_64::*;

use super::Avx512;
use super::iq::{IQ4NL, PIQ4XS};
use super::kq::{Q4K, Q5K, Q6K};
use super::panel::{ActRows, P32, PK, PK16, Packed, ROWS, gemm16, lined_mut, step, store};
use super::q8::{Block32, Q4_0, Q8_0};
use crate::kernels::{PanelBuf, PanelJob, Tile};
use crate::quant::IQ4NL_VALUES;

/// Bytes of a Q4_K super-block.
const BLOCK: usize = 144;
/// Bytes of one interleaved group: a super-block of each of the eight rows.
const GROUP: usize = ROWS * BLOCK;
/// Where a group's nibbles start: after the eight rows' 16-byte headers (`d`, `dmin`, scales).
const BODY: usize = ROWS * 16;

/// The eight rows' headers in the group at `g`, where [`Packed::scales`] reads them.
#[inline(always)]
fn headers(g: *const u8) -> [*const u8; ROWS] {
    std::array::from_fn(|r| g.wrapping_add(16 * r))
}

/// The levels of nibble vector `k` of the group at `g`: low nibbles as they are, high nibbles
/// masked in place (sixteen times the level).
///
/// # Safety
/// A whole group at `g`; AVX-512 F.
#[inline(always)]
unsafe fn nibbles(g: *const u8, k: usize) -> (__m512i, __m512i) {
    // SAFETY: caller's contract.
    unsafe {
        let w = _mm512_loadu_si512(g.add(BODY + 64 * k) as *const __m512i);
        (
            _mm512_and_si512(w, _mm512_set1_epi8(0x0f)),
            _mm512_and_si512(w, _mm512_set1_epi8(0xf0u8 as i8)),
        )
    }
}

/// The row tile: `t.nr` (a multiple of eight) interleaved rows against `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
unsafe fn tile_body<const N: usize>(t: &Tile) {
    let units = t.cols / 256;
    // SAFETY: the tile contract bounds every pointer: `nr` rows of `units` super-blocks in
    // groups of eight rows, `N` activation rows of `cols` bytes and `cols / 32` scales and sums.
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
                let g = base.add(u * GROUP);
                PK::<Q4K>::scales::<Avx512>(&headers(g), &mut s, &mut o);
                for pair in 0..4 {
                    let mut lo = [_mm512_setzero_si512(); 4];
                    let mut hi = [_mm512_setzero_si512(); 4];
                    for v in 0..4 {
                        (lo[v], hi[v]) = nibbles(g, 4 * pair + v);
                    }
                    let b = u * 8 + 2 * pair;
                    for i in 0..N {
                        let x = a.x[i].add(32 * b) as *const i64;
                        let (mut dl, mut dh) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                        for v in 0..4 {
                            let xl = _mm512_set1_epi64(x.add(v).read_unaligned());
                            let xh = _mm512_set1_epi64(x.add(4 + v).read_unaligned());
                            dl = _mm512_dpbusd_epi32(dl, lo[v], xl);
                            dh = _mm512_dpbusd_epi32(dh, hi[v], xh);
                        }
                        // Lanes 0..8: block b of rows 0..8; 8..16: block b + 1 (times 16).
                        let f = _mm512_add_epi32(
                            _mm512_permutex2var_epi32(dl, even, dh),
                            _mm512_permutex2var_epi32(dl, odd, dh),
                        );
                        let f = _mm512_mask_srai_epi32(f, 0xff00, f, 4);
                        let sums = [_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1)];
                        for (k, v) in sums.into_iter().enumerate() {
                            let e = (2 * pair + k) * ROWS;
                            step(
                                &mut acc[i],
                                &mut corr[i],
                                v,
                                s.as_ptr().add(e),
                                o.as_ptr().add(e),
                                a.dx(i, b + k),
                                a.sum::<PK<Q4K>>(i, b + k, 0),
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

/// Packs sixteen interleaved rows (a last panel of eight repeats them; their results are not
/// stored) as [`super::panel`]'s `pack::<_, PK<Q4K>, 2>` does from rows in the file's layout:
/// the same bytes and floats in the same places. The 32-bit lanes `2r` and `2r + 1` of a
/// nibble vector are two consecutive groups of four levels of row `r`; one permute per block
/// puts them in the panel's order (row `r` at lane `r`).
///
/// # Safety
/// `w` holds `nr` (8 or 16) interleaved rows of `row_bytes` with `cols / 256` super-blocks
/// each; AVX-512 F/BW.
#[inline(always)]
unsafe fn pack(w: *const u8, row_bytes: usize, nr: usize, cols: usize, buf: &mut PanelBuf) {
    const G: usize = 2;
    let (nb, units) = (cols / 32, cols / 256);
    buf.levels.resize(nb * 256 * G + 64, 0);
    buf.s.resize(units * 8 * ROWS * G + 16, 0.0);
    buf.o.resize(units * 8 * ROWS * G + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: groups `u < units` of octets below `nr` are inside the caller's rows; the buffers
    // were sized above.
    unsafe {
        let mask = _mm512_set1_epi8(0x0f);
        for h in 0..G {
            let octet = w.add(h.min(nr / ROWS - 1) * ROWS * row_bytes);
            for u in 0..units {
                let g = octet.add(u * GROUP);
                for k in 0..16 {
                    let v = _mm512_loadu_si512(g.add(BODY + 64 * k) as *const __m512i);
                    let levels = [
                        _mm512_and_si512(v, mask),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask),
                    ];
                    // Block `b`, levels `8(k mod 4)..+8`: piece `k mod 4` of the block.
                    for (half, l) in levels.into_iter().enumerate() {
                        put_piece(dst, u * 8 + 2 * (k / 4) + half, k % 4, h, l);
                    }
                }
                let (mut s, mut o) = ([0.0f32; 8 * ROWS], [0.0f32; 8 * ROWS]);
                PK::<Q4K>::scales::<Avx512>(&headers(g), &mut s, &mut o);
                for e in 0..8 {
                    let at = ((u * 8 + e) * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(e * ROWS), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(e * ROWS), ob.add(at), ROWS);
                }
            }
        }
    }
}

/// Bytes of a Q5_K super-block.
const BLOCK5: usize = 176;

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

/// The Q5_K row tile: [`tile_body`]'s way, with the fifth bits put in.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
unsafe fn tile5_body<const N: usize>(t: &Tile) {
    let units = t.cols / 256;
    // SAFETY: as in `tile_body`.
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
                let g = base.add(u * ROWS * BLOCK5);
                PK::<Q5K>::scales::<Avx512>(&headers(g), &mut s, &mut o);
                for pair in 0..4 {
                    let (lo, hi) = levels5(g, pair);
                    let b = u * 8 + 2 * pair;
                    for i in 0..N {
                        let x = a.x[i].add(32 * b) as *const i64;
                        let (mut dl, mut dh) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                        for v in 0..4 {
                            let xl = _mm512_set1_epi64(x.add(v).read_unaligned());
                            let xh = _mm512_set1_epi64(x.add(4 + v).read_unaligned());
                            dl = _mm512_dpbusd_epi32(dl, lo[v], xl);
                            dh = _mm512_dpbusd_epi32(dh, hi[v], xh);
                        }
                        // Lanes 0..8: block b of rows 0..8; 8..16: block b + 1.
                        let f = _mm512_add_epi32(
                            _mm512_permutex2var_epi32(dl, even, dh),
                            _mm512_permutex2var_epi32(dl, odd, dh),
                        );
                        let sums = [_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1)];
                        for (k, v) in sums.into_iter().enumerate() {
                            let e = (2 * pair + k) * ROWS;
                            step(
                                &mut acc[i],
                                &mut corr[i],
                                v,
                                s.as_ptr().add(e),
                                o.as_ptr().add(e),
                                a.dx(i, b + k),
                                a.sum::<PK<Q5K>>(i, b + k, 0),
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

/// As [`pack`] for Q5_K: `pack::<_, PK<Q5K>, 2>`'s bytes and floats from interleaved rows.
///
/// # Safety
/// As for [`pack`], with Q5_K rows.
#[inline(always)]
unsafe fn pack5(w: *const u8, row_bytes: usize, nr: usize, cols: usize, buf: &mut PanelBuf) {
    const G: usize = 2;
    let (nb, units) = (cols / 32, cols / 256);
    buf.levels.resize(nb * 256 * G + 64, 0);
    buf.s.resize(units * 8 * ROWS * G + 16, 0.0);
    buf.o.resize(units * 8 * ROWS * G + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: as in `pack`.
    unsafe {
        for h in 0..G {
            let octet = w.add(h.min(nr / ROWS - 1) * ROWS * row_bytes);
            for u in 0..units {
                let g = octet.add(u * ROWS * BLOCK5);
                for pair in 0..4 {
                    let (lo, hi) = levels5(g, pair);
                    for v in 0..4 {
                        put_piece(dst, u * 8 + 2 * pair, v, h, lo[v]);
                        put_piece(dst, u * 8 + 2 * pair + 1, v, h, hi[v]);
                    }
                }
                let (mut s, mut o) = ([0.0f32; 8 * ROWS], [0.0f32; 8 * ROWS]);
                PK::<Q5K>::scales::<Avx512>(&headers(g), &mut s, &mut o);
                for e in 0..8 {
                    let at = ((u * 8 + e) * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(e * ROWS), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(e * ROWS), ob.add(at), ROWS);
                }
            }
        }
    }
}

/// Bytes of a Q6_K super-block.
const BLOCK6: usize = 210;
/// Where a Q6_K group's quants start: after the scales (8 · 16 bytes) and the `d`s (8 · 2).
const BODY6: usize = 144;

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
    // SAFETY: caller's contract: `ql` pieces 0..16, `qh` pieces 16..24 from `BODY6`.
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
            let a = _mm512_loadu_si512(p.add(8 * h + v));
            let b = _mm512_loadu_si512(p.add(8 * h + 4 + v));
            let q = _mm512_loadu_si512(p.add(16 + 4 * h + v));
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

/// Bytes of an IQ4_XS super-block.
const BLOCK_XS: usize = 136;
/// Where an IQ4_XS group's nibbles start: after the eight rows' 8-byte headers.
const BODY_XS: usize = ROWS * 8;

/// The levels of nibble piece `k` of the IQ4_XS group at `g`: the low nibbles (elements
/// `8(k mod 2)..+8` of block `k div 2`) and the high ones (elements `16 + 8(k mod 2)..+8`),
/// looked up in IQ4_NL's codebook offset by 128 (unsigned, as [`super::iq`]'s VNNI levels).
///
/// # Safety
/// A whole group at `g`; AVX-512 F/BW.
#[inline(always)]
unsafe fn codes_xs(g: *const u8, k: usize) -> (__m512i, __m512i) {
    // SAFETY: caller's contract; the codebook is 16 bytes.
    unsafe {
        let book = _mm512_xor_si512(
            _mm512_broadcast_i32x4(_mm_loadu_si128(IQ4NL_VALUES.as_ptr() as *const __m128i)),
            _mm512_set1_epi8(-128),
        );
        let m = _mm512_set1_epi8(0x0f);
        let w = _mm512_loadu_si512(g.add(BODY_XS + 64 * k) as *const __m512i);
        (
            _mm512_shuffle_epi8(book, _mm512_and_si512(w, m)),
            _mm512_shuffle_epi8(book, _mm512_and_si512(_mm512_srli_epi16::<4>(w), m)),
        )
    }
}

/// The IQ4_XS row tile: a block is two pieces, whose low and high nibbles meet four eight-byte
/// slices of the activations in one accumulator; one fold serves two blocks.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
unsafe fn tile_xs_body<const N: usize>(t: &Tile) {
    let units = t.cols / 256;
    // SAFETY: as in `tile_body`.
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
                let g = base.add(u * ROWS * BLOCK_XS);
                let heads: [*const u8; ROWS] = std::array::from_fn(|r| g.wrapping_add(8 * r));
                PIQ4XS::scales::<Avx512>(&heads, &mut s, &mut o);
                for pair in 0..4 {
                    let mut lo = [_mm512_setzero_si512(); 4];
                    let mut hi = [_mm512_setzero_si512(); 4];
                    for v in 0..4 {
                        (lo[v], hi[v]) = codes_xs(g, 4 * pair + v);
                    }
                    let b = u * 8 + 2 * pair;
                    for i in 0..N {
                        let x = a.x[i].add(32 * b) as *const i64;
                        let mut d = [_mm512_setzero_si512(); 2];
                        for k in 0..2 {
                            for t in 0..2 {
                                let (l, h) = (lo[2 * k + t], hi[2 * k + t]);
                                let xl = _mm512_set1_epi64(x.add(4 * k + t).read_unaligned());
                                let xh = _mm512_set1_epi64(x.add(4 * k + 2 + t).read_unaligned());
                                d[k] = _mm512_dpbusd_epi32(d[k], l, xl);
                                d[k] = _mm512_dpbusd_epi32(d[k], h, xh);
                            }
                        }
                        // Lanes 0..8: block b of rows 0..8; 8..16: block b + 1.
                        let f = _mm512_add_epi32(
                            _mm512_permutex2var_epi32(d[0], even, d[1]),
                            _mm512_permutex2var_epi32(d[0], odd, d[1]),
                        );
                        let sums = [_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1)];
                        for (k, v) in sums.into_iter().enumerate() {
                            let e = (2 * pair + k) * ROWS;
                            step(
                                &mut acc[i],
                                &mut corr[i],
                                v,
                                s.as_ptr().add(e),
                                o.as_ptr().add(e),
                                a.dx(i, b + k),
                                a.sum::<PIQ4XS>(i, b + k, 0),
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

/// As [`pack`] for IQ4_XS: `pack::<_, PIQ4XS, 2>`'s bytes and floats from interleaved rows.
///
/// # Safety
/// As for [`pack`], with IQ4_XS rows.
#[inline(always)]
unsafe fn pack_xs(w: *const u8, row_bytes: usize, nr: usize, cols: usize, buf: &mut PanelBuf) {
    const G: usize = 2;
    let (nb, units) = (cols / 32, cols / 256);
    buf.levels.resize(nb * 256 * G + 64, 0);
    buf.s.resize(units * 8 * ROWS * G + 16, 0.0);
    buf.o.resize(units * 8 * ROWS * G + 16, 0.0);
    let (sb, ob) = (lined_mut(&mut buf.s), lined_mut(&mut buf.o));
    let dst = lined_mut(&mut buf.levels) as *mut __m256i;
    // SAFETY: as in `pack`.
    unsafe {
        for h in 0..G {
            let octet = w.add(h.min(nr / ROWS - 1) * ROWS * row_bytes);
            for u in 0..units {
                let g = octet.add(u * ROWS * BLOCK_XS);
                for k in 0..16 {
                    // Piece `k`: levels `8t..8t + 8` and `16 + 8t..` of block `k div 2`.
                    let (lo, hi) = codes_xs(g, k);
                    let (b, t) = (u * 8 + k / 2, k % 2);
                    put_piece(dst, b, t, h, lo);
                    put_piece(dst, b, 2 + t, h, hi);
                }
                let heads: [*const u8; ROWS] = std::array::from_fn(|r| g.wrapping_add(8 * r));
                let (mut s, mut o) = ([0.0f32; 8 * ROWS], [0.0f32; 8 * ROWS]);
                PIQ4XS::scales::<Avx512>(&heads, &mut s, &mut o);
                for e in 0..8 {
                    let at = ((u * 8 + e) * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(e * ROWS), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(e * ROWS), ob.add(at), ROWS);
                }
            }
        }
    }
}

/// A 32-element format interleaved two blocks a unit (Q4_0, IQ4_NL, Q8_0): the eight rows'
/// `d` of each block side by side (16 bytes), then the quants in eight-byte pieces.
pub(super) trait Pair32 {
    /// The format, whose [`P32`] scales and sums these give bit for bit.
    type B: Block32;
    /// Bytes of the eight rows' unit (two blocks each).
    const GROUP: usize;

    /// Block `j`'s levels in the group at `g`, each with the first of the eight elements its
    /// pieces hold (the offset of the activation bytes it meets).
    ///
    /// # Safety
    /// A whole group at `g`; AVX-512 F/BW.
    unsafe fn levels(g: *const u8, j: usize) -> [(__m512i, usize); 4];
}

/// The piece `k` of the quants of the group at `g`.
///
/// # Safety
/// A whole group at `g`.
#[inline(always)]
unsafe fn piece32(g: *const u8, k: usize) -> __m512i {
    // SAFETY: caller's contract.
    unsafe { _mm512_loadu_si512(g.add(32 + 64 * k) as *const __m512i) }
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

impl Pair32 for Q4_0 {
    type B = Q4_0;
    const GROUP: usize = ROWS * 36;
    #[inline(always)]
    unsafe fn levels(g: *const u8, j: usize) -> [(__m512i, usize); 4] {
        // SAFETY: forwarded; block `j`'s pieces are `2j` (elements 0..8 low, 16..24 high)
        // and `2j + 1` (8..16, 24..32).
        unsafe {
            let (l0, h0) = split(piece32(g, 2 * j));
            let (l1, h1) = split(piece32(g, 2 * j + 1));
            [(l0, 0), (l1, 8), (h0, 16), (h1, 24)]
        }
    }
}

impl Pair32 for IQ4NL {
    type B = IQ4NL;
    const GROUP: usize = ROWS * 36;
    #[inline(always)]
    unsafe fn levels(g: *const u8, j: usize) -> [(__m512i, usize); 4] {
        // SAFETY: forwarded; Q4_0's pieces, looked up in the codebook.
        unsafe {
            let book = iq4_book();
            let mut l = <Q4_0 as Pair32>::levels(g, j);
            for (v, _) in l.iter_mut() {
                *v = _mm512_shuffle_epi8(book, *v);
            }
            l
        }
    }
}

impl Pair32 for Q8_0 {
    type B = Q8_0;
    const GROUP: usize = ROWS * 68;
    #[inline(always)]
    unsafe fn levels(g: *const u8, j: usize) -> [(__m512i, usize); 4] {
        // SAFETY: forwarded; block `j` is pieces `4j..4j + 4`, flipped to unsigned as
        // [`Q8_0`]'s VNNI levels.
        unsafe {
            let flip = _mm512_set1_epi8(-128);
            let mut l = [(_mm512_setzero_si512(), 0); 4];
            for v in 0..4 {
                l[v] = (_mm512_xor_si512(piece32(g, 4 * j + v), flip), 8 * v);
            }
            l
        }
    }
}

/// The scale entries of the two blocks of the group at `g`, as [`P32`]'s `scales` gives them:
/// `s = d`, `o = offset · d`.
///
/// # Safety
/// A whole group at `g`; `s`, `o` hold 16 floats; AVX2 + F16C.
#[inline(always)]
unsafe fn scales32<P: Pair32>(g: *const u8, s: &mut [f32; 16], o: &mut [f32; 16]) {
    // SAFETY: caller's contract: the `d`s at 0 and 16.
    unsafe {
        let off = _mm256_set1_ps(P::B::offset::<Avx512>());
        for j in 0..2 {
            let d = _mm256_cvtph_ps(_mm_loadu_si128(g.add(16 * j) as *const __m128i));
            _mm256_storeu_ps(s.as_mut_ptr().add(8 * j), d);
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * j), _mm256_mul_ps(off, d));
        }
    }
}

/// The row tile of a [`Pair32`] format: a block's four level vectors in one accumulator; one
/// fold for the unit's two blocks.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX-512 F/BW/VL + VNNI.
#[inline(always)]
unsafe fn tile32_body<P: Pair32, const N: usize>(t: &Tile) {
    let units = t.cols / 64;
    // SAFETY: as in `tile_body`.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let (mut s, mut o) = ([0.0f32; 16], [0.0f32; 16]);
        let mut r0 = 0;
        while r0 < t.nr {
            let base = t.w.add(r0 * t.row_bytes);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut corr = [_mm256_setzero_ps(); N];
            for u in 0..units {
                let g = base.add(u * P::GROUP);
                scales32::<P>(g, &mut s, &mut o);
                let l = [P::levels(g, 0), P::levels(g, 1)];
                let b = 2 * u;
                for i in 0..N {
                    let x = a.x[i].add(32 * b);
                    let mut d = [_mm512_setzero_si512(); 2];
                    for j in 0..2 {
                        for (v, off) in l[j] {
                            let xv = (x.add(32 * j + off) as *const i64).read_unaligned();
                            d[j] = _mm512_dpbusd_epi32(d[j], v, _mm512_set1_epi64(xv));
                        }
                    }
                    // Lanes 0..8: block b of rows 0..8; 8..16: block b + 1.
                    let f = _mm512_add_epi32(
                        _mm512_permutex2var_epi32(d[0], even, d[1]),
                        _mm512_permutex2var_epi32(d[0], odd, d[1]),
                    );
                    let sums = [_mm512_castsi512_si256(f), _mm512_extracti64x4_epi64(f, 1)];
                    for (j, v) in sums.into_iter().enumerate() {
                        step(
                            &mut acc[i],
                            &mut corr[i],
                            v,
                            s.as_ptr().add(8 * j),
                            o.as_ptr().add(8 * j),
                            a.dx(i, b + j),
                            a.sum::<P32<P::B>>(i, b + j, 0),
                        );
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

/// As [`pack`] for a [`Pair32`] format: `pack::<_, P32<B>, 2>`'s bytes and floats.
///
/// # Safety
/// As for [`pack`], with the format's rows and `cols / 64` units.
#[inline(always)]
unsafe fn pack32<P: Pair32>(
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
    // SAFETY: as in `pack`.
    unsafe {
        for h in 0..G {
            let octet = w.add(h.min(nr / ROWS - 1) * ROWS * row_bytes);
            for u in 0..nb / 2 {
                let g = octet.add(u * P::GROUP);
                let (mut s, mut o) = ([0.0f32; 16], [0.0f32; 16]);
                scales32::<P>(g, &mut s, &mut o);
                for j in 0..2 {
                    let b = 2 * u + j;
                    for (v, off) in P::levels(g, j) {
                        put_piece(dst, b, off / 8, h, v);
                    }
                    let at = (b * G + h) * ROWS;
                    std::ptr::copy_nonoverlapping(s.as_ptr().add(8 * j), sb.add(at), ROWS);
                    std::ptr::copy_nonoverlapping(o.as_ptr().add(8 * j), ob.add(at), ROWS);
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
    tile_q4_k, panel_q4_k: tile_body<>, pack<>, PK<Q4K>;
    tile_q5_k, panel_q5_k: tile5_body<>, pack5<>, PK<Q5K>;
    tile_q6_k, panel_q6_k: tile6_body<>, pack6<>, PK16<Q6K>;
    tile_iq4_xs, panel_iq4_xs: tile_xs_body<>, pack_xs<>, PIQ4XS;
    tile_q4_0, panel_q4_0: tile32_body<Q4_0>, pack32<Q4_0>, P32<Q4_0>;
    tile_iq4_nl, panel_iq4_nl: tile32_body<IQ4NL>, pack32<IQ4NL>, P32<IQ4NL>;
    tile_q8_0, panel_q8_0: tile32_body<Q8_0>, pack32<Q8_0>, P32<Q8_0>;
}
