//! Rows interleaved in eights ([`crate::interleave`]) on AVX2: the decode tiles and prompt
//! panels of Q4_K, Q4_0 and Q4_1, with the results of [`super::panel`]'s tiles and panels on the
//! file's layout bit for bit (the same integer block sums meet the same scale entries in the
//! same f32 steps).
//!
//! Tile: the 32 bytes at a piece's start hold eight bytes of rows 0..4 and the next 32 those of
//! rows 4..8, so against eight activation bytes broadcast to every row one `vpmaddubsw` gives
//! each row four 16-bit pair sums. A block's four vectors add up in 16 bits (at most eight
//! products of a level ≤ 15 and an activation ≤ 127 in magnitude: 15,240, no saturation),
//! `vpmaddwd` widens them to two 32-bit sums a row, and one horizontal add and one permute put
//! the eight rows' block sums in the eight lanes. The file-layout tiles form each row's block
//! sum apart and fold eight rows with six horizontal adds and two lane swaps per block
//! ([`super::panel::Fold256`]), loading eight rows apart.
//!
//! Panel: the tile, four activation rows at a time, which beats the file-layout panels for Q4_0
//! and Q4_1 at every batch size; for Q4_K from 160 activation rows ([`Pairs2::TILES_BELOW`]), the
//! group of eight rows goes back to the file's layout in the thread's buffer (a copy of
//! eight-byte pieces) and the file-layout panel packs it from there as it would from the file.

use std::arch::x86_64::*;

use super::Avx2;
use super::kq::Q4K;
use super::panel::{ActRows, P32, PK, Packed, ROWS, panel_body, step, store};
use super::q8::{Block32, Q4_0, Q4_1};
use crate::DType;
use crate::kernels::{ActPtr, PanelBuf, PanelJob, Tile};

/// An interleaved format whose blocks of 32 go in pairs, with levels of at most 15.
trait Pairs2 {
    /// The type, for moving rows back to the file's layout.
    const DTYPE: DType;
    /// Activation rows below which a panel job goes through the tile, four rows at a time,
    /// rather than moving its rows back to the file's layout for the file-layout panel.
    /// `--example panel_speed` on AVX2 (one thread, a 1B layer's products, GFLOP/s), the
    /// file-layout panel on the file's rows / the tile / the file-layout panel on the rows moved
    /// back, at n = 8, 32, 64, 128, 256 activation rows: Q4_K 111, 145, 147–151, 151–153,
    /// 153–154 / 145, 142, 145, 145, 141 / 68–72, 124, 128, 143, 147–150; Q4_0 112, 147, 152,
    /// 154, 154 / 158, 162, 168, 161, 161 / –, 109, 129, 143, 148; Q4_1 –, 141, 149, 154, 156 /
    /// –, 140, 151, 150, 150 / –, 94, 120, 137, 145. At 512 rows Q4_K's panel on rows moved
    /// back runs at 147–150, the file's 148–151.
    const TILES_BELOW: usize;
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
    const DTYPE: DType = DType::Q4_K;
    const TILES_BELOW: usize = 160;
    /// Eight 144-byte super-blocks: the rows' 16-byte headers (`d`, `dmin`, scales), then the
    /// nibbles in 64-byte pieces.
    const GROUP: usize = ROWS * 144;
    const BLOCKS: usize = 8;
    type P = PK<Q4K>;
    #[inline(always)]
    unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
        // SAFETY: row `r`'s header at `16r` (caller's contract).
        unsafe {
            let headers: [*const u8; ROWS] = std::array::from_fn(|r| g.add(16 * r));
            PK::<Q4K>::scales::<Avx2>(&headers, s, o)
        }
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

/// Q4_0 and Q4_1, two blocks a unit: a header of the eight rows' `d` of each block side by side
/// (and for Q4_1 their `m`), then the nibbles in four 64-byte pieces: block `j`'s are pieces
/// `2j` (elements 0..8 low, 16..24 high) and `2j + 1` (8..16, 24..32).
macro_rules! pairs32 {
    ($($ty:ty, $dtype:ident, $bytes:literal, $header:literal;)*) => {
        $(
            impl Pairs2 for $ty {
                const DTYPE: DType = DType::$dtype;
                // The tile at every size (measured: see the trait).
                const TILES_BELOW: usize = usize::MAX;
                const GROUP: usize = ROWS * 2 * $bytes;
                const BLOCKS: usize = 2;
                type P = P32<$ty>;
                #[inline(always)]
                unsafe fn scales(g: *const u8, s: &mut [f32; 8 * ROWS], o: &mut [f32; 8 * ROWS]) {
                    // SAFETY: the `d`s at 0 and 16, Q4_1's `m`s at 32 and 48 (caller's
                    // contract); `s = d` and `o = offset · d` (Q4_0) or `m` (Q4_1), as
                    // [`P32`]'s `scales` has them.
                    unsafe {
                        let half = |at: usize| _mm256_cvtph_ps(_mm_loadu_si128(g.add(at) as *const __m128i));
                        for j in 0..2 {
                            let d = half(16 * j);
                            _mm256_storeu_ps(s.as_mut_ptr().add(8 * j), d);
                            let off = if <$ty as Block32>::TYPE1 {
                                half(32 + 16 * j)
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
                        }
                        l
                    }
                }
            }
        )*
    };
}

pairs32! {
    Q4_0, Q4_0, 18, 32;
    Q4_1, Q4_1, 20, 64;
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
                    let mut d = [[[_mm256_setzero_si256(); 2]; 2]; N];
                    for h in 0..2 {
                        let l = P::levels(g, p, h);
                        for k in 0..2 {
                            for (v, off) in l[k] {
                                for i in 0..N {
                                    let x = a.x[i].add(32 * (b + k) + off) as *const i64;
                                    let xv = _mm256_set1_epi64x(x.read_unaligned());
                                    d[i][k][h] =
                                        _mm256_add_epi16(d[i][k][h], _mm256_maddubs_epi16(v, xv));
                                }
                            }
                        }
                    }
                    for i in 0..N {
                        for k in 0..2 {
                            let q = _mm256_hadd_epi32(
                                _mm256_madd_epi16(d[i][k][0], ones),
                                _mm256_madd_epi16(d[i][k][1], ones),
                            );
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

/// The panel of eight interleaved rows of a [`Pairs2`] format: under [`Pairs2::TILES_BELOW`]
/// activation rows the tile, else back to the file's layout and [`super::panel`]'s panel.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`] with `job.nr` a whole group of interleaved rows; AVX2 +
/// FMA + F16C.
#[inline(always)]
unsafe fn panel_body2<P: Pairs2>(job: &PanelJob, buf: &mut PanelBuf) {
    if job.n < P::TILES_BELOW {
        let (cols, nb) = (job.cols, job.cols / 32);
        let mut t0 = 0;
        while t0 < job.n {
            // SAFETY: activation rows `t0..t0 + nt` of the job, laid out as the driver does for
            // tiles (the same Q8 activations: row `t` at `t · cols` bytes, `t · cols / 32`
            // scales and sums, `t · cols / 16` half-block sums).
            let t = unsafe {
                Tile {
                    w: job.w,
                    row_bytes: job.row_bytes,
                    nr: job.nr,
                    cols,
                    act: ActPtr {
                        qs: job.act.qs.add(t0 * cols),
                        d: job.act.d.add(t0 * nb),
                        dsum: job.act.dsum.add(t0 * nb),
                        dsum16: job.act.dsum16.add(t0 * 2 * nb),
                        ..job.act
                    },
                    nt: (job.n - t0).min(4),
                    out: job.out.add(t0 * job.ldo),
                    ldo: job.ldo,
                }
            };
            // SAFETY: the job's rows and outputs, `t.nt` of its activation rows.
            unsafe { tile_n::<P>(&t) };
            t0 += 4;
        }
        return;
    }
    let bytes = job.nr * job.row_bytes;
    let mut rows = std::mem::take(&mut buf.rows);
    rows.resize(bytes, 0);
    // SAFETY: the panel contract: `nr` rows of `row_bytes` at `w`.
    let src = unsafe { std::slice::from_raw_parts(job.w, bytes) };
    let whole = crate::interleave::deinterleave_into(P::DTYPE, job.cols, src, &mut rows);
    assert!(whole, "a panel of whole groups of eight interleaved rows");
    let file = PanelJob {
        w: rows.as_ptr(),
        ..*job
    };
    // SAFETY: the same rows in the file's layout, in `rows`, which lives past the call.
    unsafe { panel_body::<Avx2, P::P>(&file, buf) };
    buf.rows = rows;
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
    tile_q4_0, panel_q4_0: Q4_0;
    tile_q4_1, panel_q4_1: Q4_1;
}
