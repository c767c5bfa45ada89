//! Matrix-matrix products for the prompt pass (32-element formats, Q4_K, Q5_K): eight weight
//! rows are repacked once per product into a small per-thread panel, then multiplied with every
//! activation row.
//!
//! The panel interleaves the rows for `vpdpbusd`: for each block of 32, vector `j` holds in its
//! 32-bit lane `r` the levels of elements `4j..4j + 4` of row `r`. Broadcasting four activation
//! bytes against it yields partial sums of all eight rows at once, so after eight such products
//! the eight lanes are the eight rows' block sums and one conversion and two FMAs apply the
//! scales of eight rows together (the tile kernels spend those three operations per row). The
//! repacking (an 8×8 transpose of 32-bit lanes per block) is paid once per product and shared by
//! all activation rows; nothing is kept between products, the weights stay in the map.

use std::arch::x86_64::*;

use super::Simd;
use super::kq::{KQuant, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::q8::{Block32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::kernels::{PanelBuf, PanelJob};

/// Rows per panel.
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

/// Packs eight rows of `nb` blocks into `buf`.
///
/// # Safety
/// `w` holds 8 rows of `row_bytes` with `nb` blocks each; the CPU supports `S`.
#[inline(always)]
unsafe fn pack<S: Simd, B: Block32>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    nb: usize,
    buf: &mut PanelBuf,
) {
    buf.levels.resize(nb * 256, 0);
    buf.s.resize(nb * ROWS, 0.0);
    buf.o.resize(nb * ROWS, 0.0);
    let f16 = crate::kernels::f16_table();
    let offset = B::offset::<S>();
    // SAFETY: blocks `b < nb` of rows `r < 8` are inside the caller's rows; the buffers were
    // sized above.
    unsafe {
        for b in 0..nb {
            // Missing rows of a short panel repeat the last one; their results are not stored.
            // Closures do not inherit target features in this generic code, so loops fill the
            // arrays of vectors throughout these kernels (a closure here made the intrinsics
            // calls).
            let mut l = [_mm256_setzero_si256(); 8];
            for (r, lr) in l.iter_mut().enumerate() {
                *lr = B::load::<S>(w.add(r.min(nr - 1) * row_bytes + b * B::BYTES));
            }
            let v = transpose8(l);
            let dst = buf.levels.as_mut_ptr().add(b * 256) as *mut __m256i;
            for (j, x) in v.iter().enumerate() {
                _mm256_storeu_si256(dst.add(j), *x);
            }
            for r in 0..ROWS {
                let p = w.add(r.min(nr - 1) * row_bytes + b * B::BYTES);
                let d = half(p, f16);
                buf.s[b * ROWS + r] = d;
                buf.o[b * ROWS + r] = if B::TYPE1 {
                    half(p.add(2), f16)
                } else {
                    offset * d
                };
            }
        }
    }
}

/// Packs eight rows of `nsb` Q4_K/Q5_K super-blocks into `buf` as blocks of 32 of the type-1
/// form `s · q + o` with `s = d · sc` and `o = −dmin · m` per sub-block.
///
/// # Safety
/// `w` holds 8 rows of `row_bytes` with `nsb` super-blocks each; the CPU supports `S`.
#[inline(always)]
unsafe fn pack_k<S: Simd, K: KQuant>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    nsb: usize,
    buf: &mut PanelBuf,
) {
    let nb = nsb * 8;
    buf.levels.resize(nb * 256, 0);
    buf.s.resize(nb * ROWS, 0.0);
    buf.o.resize(nb * ROWS, 0.0);
    let f16 = crate::kernels::f16_table();
    // SAFETY: super-blocks `sb < nsb` of rows `r < 8` are inside the caller's rows; the
    // buffers were sized above.
    unsafe {
        for sb in 0..nsb {
            let p: [*const u8; 8] =
                std::array::from_fn(|r| w.add(r.min(nr - 1) * row_bytes + sb * K::BYTES));
            for h in 0..2 {
                let mut lv = [[_mm256_setzero_si256(); 4]; 8];
                for r in 0..8 {
                    lv[r] = K::levels::<S>(p[r], h);
                }
                for k in 0..4 {
                    let mut col = [_mm256_setzero_si256(); 8];
                    for r in 0..8 {
                        col[r] = lv[r][k];
                    }
                    let v = transpose8(col);
                    let dst =
                        buf.levels.as_mut_ptr().add((sb * 8 + 4 * h + k) * 256) as *mut __m256i;
                    for (j, x) in v.iter().enumerate() {
                        _mm256_storeu_si256(dst.add(j), *x);
                    }
                }
            }
            for (r, &pr) in p.iter().enumerate() {
                let (d, dmin) = (half(pr, f16), half(pr.add(2), f16));
                let scales = std::slice::from_raw_parts(pr.add(4), 12);
                for j in 0..8 {
                    let (sc, m) = crate::dtype::kscale(scales, j);
                    buf.s[(sb * 8 + j) * ROWS + r] = d * sc as f32;
                    buf.o[(sb * 8 + j) * ROWS + r] = -dmin * m as f32;
                }
            }
        }
    }
}

/// A k-quant with sub-blocks of 16: the type-1 form `s · q + o` of each of its 16 sub-blocks.
pub trait K16: KQuant {
    /// # Safety
    /// `p` points to a whole super-block.
    unsafe fn subs(p: *const u8, f16: &[f32; 65536]) -> [(f32, f32); 16];
}

impl K16 for Q6K {
    unsafe fn subs(p: *const u8, f16: &[f32; 65536]) -> [(f32, f32); 16] {
        // SAFETY: scales at 192, d at 208.
        unsafe {
            let d = half(p.add(208), f16);
            std::array::from_fn(|j| {
                let s = d * (*p.add(192 + j) as i8) as f32;
                (s, -32.0 * s)
            })
        }
    }
}

impl K16 for Q3K {
    unsafe fn subs(p: *const u8, f16: &[f32; 65536]) -> [(f32, f32); 16] {
        // SAFETY: scales at 96 (12 bytes), d at 108.
        unsafe {
            let d = half(p.add(108), f16);
            let sc = crate::dtype::q3k_scales(std::slice::from_raw_parts(p.add(96), 12));
            std::array::from_fn(|j| {
                let s = d * sc[j] as f32;
                (s, -4.0 * s)
            })
        }
    }
}

impl K16 for Q2K {
    unsafe fn subs(p: *const u8, f16: &[f32; 65536]) -> [(f32, f32); 16] {
        // SAFETY: scales at 0 (16 bytes), d and dmin at 80.
        unsafe {
            let (d, dmin) = (half(p.add(80), f16), half(p.add(82), f16));
            std::array::from_fn(|j| {
                let sc = *p.add(j);
                (d * (sc & 0x0f) as f32, -dmin * (sc >> 4) as f32)
            })
        }
    }
}

/// Packs eight rows of `nsb` super-blocks with sub-blocks of 16 into `buf`: levels as for the
/// other panels, and `(s, o)` per half block.
///
/// # Safety
/// `w` holds 8 rows of `row_bytes` with `nsb` super-blocks each; the CPU supports `S`.
#[inline(always)]
unsafe fn pack_k16<S: Simd, K: K16>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    nsb: usize,
    buf: &mut PanelBuf,
) {
    let nb = nsb * 8;
    buf.levels.resize(nb * 256, 0);
    buf.s.resize(2 * nb * ROWS, 0.0);
    buf.o.resize(2 * nb * ROWS, 0.0);
    let f16 = crate::kernels::f16_table();
    // SAFETY: super-blocks `sb < nsb` of rows `r < 8` are inside the caller's rows; the
    // buffers were sized above.
    unsafe {
        for sb in 0..nsb {
            let p: [*const u8; 8] =
                std::array::from_fn(|r| w.add(r.min(nr - 1) * row_bytes + sb * K::BYTES));
            for h in 0..2 {
                let mut lv = [[_mm256_setzero_si256(); 4]; 8];
                for r in 0..8 {
                    lv[r] = K::levels::<S>(p[r], h);
                }
                for k in 0..4 {
                    let mut col = [_mm256_setzero_si256(); 8];
                    for r in 0..8 {
                        col[r] = lv[r][k];
                    }
                    let v = transpose8(col);
                    let dst =
                        buf.levels.as_mut_ptr().add((sb * 8 + 4 * h + k) * 256) as *mut __m256i;
                    for (j, x) in v.iter().enumerate() {
                        _mm256_storeu_si256(dst.add(j), *x);
                    }
                }
            }
            for (r, &pr) in p.iter().enumerate() {
                for (j, (sv, ov)) in K::subs(pr, f16).into_iter().enumerate() {
                    buf.s[(sb * 16 + j) * ROWS + r] = sv;
                    buf.o[(sb * 16 + j) * ROWS + r] = ov;
                }
            }
        }
    }
}

/// As [`panel_body`] for the k-quants with sub-blocks of 16.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; the CPU supports `S`.
#[inline(always)]
unsafe fn panel_body_k16<S: Simd, K: K16>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack_k16::<S, K>(job.w, job.row_bytes, job.nr, job.cols / 256, buf);
        multiply::<S, true>(job, buf);
    }
}

/// The packed panel against activation rows `t0..t0 + N`.
///
/// # Safety
/// As for [`panel_body`]; `t0 + N ≤ job.n`.
#[inline(always)]
unsafe fn gemm<S: Simd, const N: usize, const SPLIT: bool>(
    job: &PanelJob,
    buf: &PanelBuf,
    nb: usize,
    t0: usize,
) {
    // SAFETY: activation rows `t0..t0 + N` hold `cols` values, `nb` scales and sums each; the
    // panel holds `nb` blocks; `out` rows `t0..t0 + N` have `nr` writable floats at `job.out`.
    unsafe {
        let cols = job.cols;
        let x: [*const u8; N] =
            std::array::from_fn(|i| job.act.qs.add((t0 + i) * cols) as *const u8);
        let d: [*const f32; N] = std::array::from_fn(|i| job.act.d.add((t0 + i) * nb));
        let ds: [*const f32; N] = std::array::from_fn(|i| job.act.dsum.add((t0 + i) * nb));
        let ds16: [*const f32; N] = std::array::from_fn(|i| job.act.dsum16.add((t0 + i) * 2 * nb));
        let mut acc = [_mm256_setzero_ps(); N];
        let mut corr = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let lv = buf.levels.as_ptr().add(b * 256) as *const __m256i;
            // With SPLIT the two halves of the block (vectors 0..4 and 4..8) have their own
            // scales: two sums.
            let mut isum = [[_mm256_setzero_si256(); 2]; N];
            for j in 0..8 {
                let wv = _mm256_loadu_si256(lv.add(j));
                let h = if SPLIT { j / 4 } else { 0 };
                for i in 0..N {
                    let xb = _mm256_set1_epi32(
                        (x[i].add(b * 32 + 4 * j) as *const i32).read_unaligned(),
                    );
                    isum[i][h] = S::dot_u8i8(isum[i][h], wv, xb);
                }
            }
            let halves = if SPLIT { 2 } else { 1 };
            for h in 0..halves {
                let e = b * halves + h;
                let sv = _mm256_loadu_ps(buf.s.as_ptr().add(e * ROWS));
                let ov = _mm256_loadu_ps(buf.o.as_ptr().add(e * ROWS));
                for i in 0..N {
                    let scale = _mm256_mul_ps(sv, _mm256_set1_ps(*d[i].add(b)));
                    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][h]), scale, acc[i]);
                    let sum = if SPLIT {
                        *ds16[i].add(e)
                    } else {
                        *ds[i].add(b)
                    };
                    corr[i] = _mm256_fmadd_ps(ov, _mm256_set1_ps(sum), corr[i]);
                }
            }
        }
        for i in 0..N {
            let o = job.out.add((t0 + i) * job.ldo);
            let v = _mm256_add_ps(acc[i], corr[i]);
            if job.nr == ROWS {
                _mm256_storeu_ps(o, v);
            } else {
                let mut tmp = [0.0f32; ROWS];
                _mm256_storeu_ps(tmp.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, job.nr);
            }
        }
    }
}

/// Packs the job's eight rows and multiplies them with all its activation rows.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; the CPU supports `S`.
#[inline(always)]
unsafe fn panel_body<S: Simd, B: Block32>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack::<S, B>(job.w, job.row_bytes, job.nr, job.cols / 32, buf);
        multiply::<S, false>(job, buf);
    }
}

/// As [`panel_body`] for the k-quants with sub-blocks of 32.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; the CPU supports `S`.
#[inline(always)]
unsafe fn panel_body_k<S: Simd, K: KQuant>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack_k::<S, K>(job.w, job.row_bytes, job.nr, job.cols / 256, buf);
        multiply::<S, false>(job, buf);
    }
}

/// The packed panel against all the job's activation rows.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; the CPU supports `S`; `buf` packed for the job's rows.
#[inline(always)]
unsafe fn multiply<S: Simd, const SPLIT: bool>(job: &PanelJob, buf: &PanelBuf) {
    let nb = job.cols / 32;
    // SAFETY: forwarded contract.
    unsafe {
        let mut t = 0;
        while t + 4 <= job.n {
            gemm::<S, 4, SPLIT>(job, buf, nb, t);
            t += 4;
        }
        while t < job.n {
            gemm::<S, 1, SPLIT>(job, buf, nb, t);
            t += 1;
        }
    }
}

macro_rules! panels {
    ($feat:literal, $simd:ty; $($name:ident: $body:ident, $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::PanelFn`]; the CPU supports this path's features.
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { $body::<$simd, $ty>(job, buf) }
            }
        )*
    };
}

/// AVX2: `vpmaddubsw` saturates above 128 × 127 per pair, so Q8_0 (levels up to 255 in this
/// form) keeps its tiles.
pub mod avx2 {
    use super::*;
    panels! {
        "avx2,fma,f16c", super::super::Avx2;
        panel_q4_0: panel_body, Q4_0;
        panel_q4_1: panel_body, Q4_1;
        panel_q5_0: panel_body, Q5_0;
        panel_q5_1: panel_body, Q5_1;
        panel_q4_k: panel_body_k, Q4K;
        panel_q5_k: panel_body_k, Q5K;
        panel_q2_k: panel_body_k16, Q2K;
        panel_q3_k: panel_body_k16, Q3K;
        panel_q6_k: panel_body_k16, Q6K;
    }
}

pub mod avx512 {
    use super::*;
    panels! {
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", super::super::Avx512;
        panel_q8_0: panel_body, Q8_0;
        panel_q4_0: panel_body, Q4_0;
        panel_q4_1: panel_body, Q4_1;
        panel_q5_0: panel_body, Q5_0;
        panel_q5_1: panel_body, Q5_1;
        panel_q4_k: panel_body_k, Q4K;
        panel_q5_k: panel_body_k, Q5K;
        panel_q2_k: panel_body_k16, Q2K;
        panel_q3_k: panel_body_k16, Q3K;
        panel_q6_k: panel_body_k16, Q6K;
    }
}
