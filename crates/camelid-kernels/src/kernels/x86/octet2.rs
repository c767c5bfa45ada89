//! Rows interleaved in eights ([`crate::interleave`]) on AVX2: the decode tile and prompt panel
//! of Q4_K, with the results of [`super::panel`]'s tile and panel on the file's layout bit for
//! bit (the same integer block sums meet the same scale entries in the same f32 steps).
//!
//! Tile: the 32 bytes at a piece's start hold eight bytes of rows 0..4 and the next 32 those of
//! rows 4..8, so against eight activation bytes broadcast to every row one `vpmaddubsw` gives
//! each row four 16-bit pair sums. A block's four pieces add up in 16 bits (at most eight
//! products of a level ≤ 15 and an activation ≤ 127 in magnitude: 15,240, no saturation),
//! `vpmaddwd` widens them to two 32-bit sums a row, and one horizontal add and one permute put
//! the eight rows' block sums in the eight lanes. The file-layout tile forms each row's block
//! sum apart and folds eight rows with six horizontal adds and two lane swaps per block
//! ([`super::panel::Fold256`]), loading eight rows apart.
//!
//! Panel: from [`TILES_BELOW`] activation rows, the group of eight rows goes back to the file's
//! layout in the thread's buffer (a copy of eight-byte pieces), and the file-layout panel packs
//! it from there as it would from the file; fewer rows go through the tile, four at a time.

use std::arch::x86_64::*;

use super::Avx2;
use super::kq::Q4K;
use super::panel::{ActRows, PK, Packed, ROWS, panel_body, step, store};
use crate::DType;
use crate::kernels::{ActPtr, PanelBuf, PanelJob, Tile};

/// Bytes of a Q4_K super-block.
const BLOCK: usize = 144;
/// Where a group's quants start: after the eight rows' 16-byte headers (`d`, `dmin`, scales).
const BODY: usize = ROWS * 16;

/// The Q4_K row tile: `t.nr` (a multiple of eight) interleaved rows against `N` activation
/// rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; AVX2 + FMA + F16C.
#[inline(always)]
unsafe fn tile_q4k_body<const N: usize>(t: &Tile) {
    let units = t.cols / 256;
    // SAFETY: the tile contract bounds every pointer: `nr` rows of `units` super-blocks in
    // groups of eight rows, `N` activation rows of `cols` bytes and `cols / 32` scales and sums.
    unsafe {
        let a = ActRows::<N>::new(&t.act, t.cols, 0);
        let nibble = _mm256_set1_epi8(0x0f);
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
                let g = base.add(u * ROWS * BLOCK);
                let headers: [*const u8; ROWS] = std::array::from_fn(|r| g.add(16 * r));
                PK::<Q4K>::scales::<Avx2>(&headers, &mut s, &mut o);
                for p in 0..4 {
                    // Nibble piece `4p + v` holds elements `8v..8v + 8` of block `2p` (low
                    // nibbles) and `2p + 1` (high); `d[i][k][h]`: block `2p + k`, rows
                    // `4h..4h + 4`, in 16 bits.
                    let b = u * 8 + 2 * p;
                    let mut d = [[[_mm256_setzero_si256(); 2]; 2]; N];
                    for v in 0..4 {
                        for h in 0..2 {
                            let w = _mm256_loadu_si256(
                                g.add(BODY + 64 * (4 * p + v) + 32 * h) as *const __m256i
                            );
                            let lo = _mm256_and_si256(w, nibble);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(w), nibble);
                            for i in 0..N {
                                let x = a.x[i].add(32 * b + 8 * v);
                                let xl = _mm256_set1_epi64x((x as *const i64).read_unaligned());
                                let xh =
                                    _mm256_set1_epi64x((x.add(32) as *const i64).read_unaligned());
                                d[i][0][h] =
                                    _mm256_add_epi16(d[i][0][h], _mm256_maddubs_epi16(lo, xl));
                                d[i][1][h] =
                                    _mm256_add_epi16(d[i][1][h], _mm256_maddubs_epi16(hi, xh));
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

/// Activation rows below which a panel job goes through the tile, four rows at a time, rather
/// than moving its rows back to the file's layout: `--example panel_speed Q4_K` on AVX2 (one
/// thread, a 1B layer's products, GFLOP/s) with the file-layout panel, the interleaved rows
/// through the tile and through the file-layout panel: n = 8: 102–119, 136, 68–72; 16: 129,
/// 136, 98; 32: 137, 135, 121; 64: 148, 142, 138; 512: 148–150, –, 148–150.
const TILES_BELOW: usize = 64;

/// The Q4_K panel of eight interleaved rows: under [`TILES_BELOW`] activation rows the tile,
/// else back to the file's layout and [`super::panel`]'s panel.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`] with `job.nr` a whole group of interleaved rows; AVX2 +
/// FMA + F16C.
#[inline(always)]
unsafe fn panel_q4k_body(job: &PanelJob, buf: &mut PanelBuf) {
    if job.n < TILES_BELOW {
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
            unsafe {
                match t.nt {
                    1 => tile_q4k_body::<1>(&t),
                    2 => tile_q4k_body::<2>(&t),
                    3 => tile_q4k_body::<3>(&t),
                    _ => tile_q4k_body::<4>(&t),
                }
            }
            t0 += 4;
        }
        return;
    }
    let bytes = job.nr * job.row_bytes;
    let mut rows = std::mem::take(&mut buf.rows);
    rows.resize(bytes, 0);
    // SAFETY: the panel contract: `nr` rows of `row_bytes` at `w`.
    let src = unsafe { std::slice::from_raw_parts(job.w, bytes) };
    let whole = crate::interleave::deinterleave_into(DType::Q4_K, job.cols, src, &mut rows);
    assert!(
        whole,
        "a Q4_K panel of whole groups of eight interleaved rows"
    );
    let file = PanelJob {
        w: rows.as_ptr(),
        ..*job
    };
    // SAFETY: the same rows in the file's layout, in `rows`, which lives past the call.
    unsafe { panel_body::<Avx2, PK<Q4K>>(&file, buf) };
    buf.rows = rows;
}

/// # Safety
/// As for [`crate::kernels::TileFn`] with the rows interleaved; the CPU supports AVX2 + FMA +
/// F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile_q4_k(t: &Tile) {
    // SAFETY: forwarded contract; the body is inlined here with these features.
    unsafe {
        match t.nt {
            1 => tile_q4k_body::<1>(t),
            2 => tile_q4k_body::<2>(t),
            3 => tile_q4k_body::<3>(t),
            _ => tile_q4k_body::<4>(t),
        }
    }
}

/// # Safety
/// As for [`crate::kernels::PanelFn`] with the rows interleaved; the CPU supports AVX2 + FMA +
/// F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn panel_q4_k(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract, with this path's features.
    unsafe { panel_q4k_body(job, buf) }
}
