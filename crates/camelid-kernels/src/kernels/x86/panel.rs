//! Matrix-matrix products for the prompt pass (AVX-512 VNNI, 32-element formats): eight weight
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
use super::q8::{Block32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use crate::kernels::{PanelBuf, PanelJob};

/// Rows per panel.
pub const ROWS: usize = 8;

/// 8×8 transpose of 32-bit lanes: lane `r` of output `j` is lane `j` of input `r`.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn transpose8(l: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: AVX2 (caller).
    unsafe {
        let t: [__m256i; 8] = std::array::from_fn(|k| {
            let (a, b) = (l[2 * (k / 2)], l[2 * (k / 2) + 1]);
            if k % 2 == 0 {
                _mm256_unpacklo_epi32(a, b)
            } else {
                _mm256_unpackhi_epi32(a, b)
            }
        });
        // u[4h + q]: rows 4h..4h+4, dwords q and q + 4 (in the two 128-bit halves).
        let u: [__m256i; 8] = std::array::from_fn(|k| {
            let (h, q) = (k / 4, k % 4);
            let (a, b) = (t[4 * h + q / 2], t[4 * h + 2 + q / 2]);
            if q % 2 == 0 {
                _mm256_unpacklo_epi64(a, b)
            } else {
                _mm256_unpackhi_epi64(a, b)
            }
        });
        std::array::from_fn(|j| {
            if j < 4 {
                _mm256_permute2x128_si256(u[j], u[4 + j], 0x20)
            } else {
                _mm256_permute2x128_si256(u[j - 4], u[j], 0x31)
            }
        })
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
unsafe fn pack<S: Simd, B: Block32>(w: *const u8, row_bytes: usize, nb: usize, buf: &mut PanelBuf) {
    buf.levels.resize(nb * 256, 0);
    buf.s.resize(nb * ROWS, 0.0);
    buf.o.resize(nb * ROWS, 0.0);
    let f16 = crate::kernels::f16_table();
    let offset = B::offset::<S>();
    // SAFETY: blocks `b < nb` of rows `r < 8` are inside the caller's rows; the buffers were
    // sized above.
    unsafe {
        for b in 0..nb {
            let l: [__m256i; 8] =
                std::array::from_fn(|r| B::load::<S>(w.add(r * row_bytes + b * B::BYTES)));
            let v = transpose8(l);
            let dst = buf.levels.as_mut_ptr().add(b * 256) as *mut __m256i;
            for (j, x) in v.iter().enumerate() {
                _mm256_storeu_si256(dst.add(j), *x);
            }
            for r in 0..ROWS {
                let p = w.add(r * row_bytes + b * B::BYTES);
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

/// The packed panel against activation rows `t0..t0 + N`.
///
/// # Safety
/// As for [`panel_body`]; `t0 + N ≤ job.n`.
#[inline(always)]
unsafe fn gemm<const N: usize>(job: &PanelJob, buf: &PanelBuf, nb: usize, t0: usize) {
    // SAFETY: activation rows `t0..t0 + N` hold `cols` values, `nb` scales and sums each; the
    // panel holds `nb` blocks; `out` rows `t0..t0 + N` have 8 writable floats at `job.out`.
    unsafe {
        let cols = job.cols;
        let x: [*const u8; N] =
            std::array::from_fn(|i| job.act.qs.add((t0 + i) * cols) as *const u8);
        let d: [*const f32; N] = std::array::from_fn(|i| job.act.d.add((t0 + i) * nb));
        let ds: [*const f32; N] = std::array::from_fn(|i| job.act.dsum.add((t0 + i) * nb));
        let mut acc = [_mm256_setzero_ps(); N];
        let mut corr = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let lv = buf.levels.as_ptr().add(b * 256) as *const __m256i;
            let mut isum = [_mm256_setzero_si256(); N];
            for j in 0..8 {
                let wv = _mm256_loadu_si256(lv.add(j));
                for i in 0..N {
                    let xb = _mm256_set1_epi32(
                        (x[i].add(b * 32 + 4 * j) as *const i32).read_unaligned(),
                    );
                    isum[i] = _mm256_dpbusd_epi32(isum[i], wv, xb);
                }
            }
            let sv = _mm256_loadu_ps(buf.s.as_ptr().add(b * ROWS));
            let ov = _mm256_loadu_ps(buf.o.as_ptr().add(b * ROWS));
            for i in 0..N {
                let scale = _mm256_mul_ps(sv, _mm256_set1_ps(*d[i].add(b)));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i]), scale, acc[i]);
                corr[i] = _mm256_fmadd_ps(ov, _mm256_set1_ps(*ds[i].add(b)), corr[i]);
            }
        }
        for i in 0..N {
            let o = job.out.add((t0 + i) * job.ldo);
            _mm256_storeu_ps(o, _mm256_add_ps(acc[i], corr[i]));
        }
    }
}

/// Packs the job's eight rows and multiplies them with all its activation rows.
///
/// # Safety
/// As for [`crate::kernels::PanelFn`]; AVX-512 VNNI.
#[inline(always)]
unsafe fn panel_body<S: Simd, B: Block32>(job: &PanelJob, buf: &mut PanelBuf) {
    let nb = job.cols / 32;
    // SAFETY: forwarded contract.
    unsafe {
        pack::<S, B>(job.w, job.row_bytes, nb, buf);
        let mut t = 0;
        while t + 4 <= job.n {
            gemm::<4>(job, buf, nb, t);
            t += 4;
        }
        while t < job.n {
            gemm::<1>(job, buf, nb, t);
            t += 1;
        }
    }
}

macro_rules! panels {
    ($($name:ident: $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::PanelFn`]; AVX-512 VNNI.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { panel_body::<super::Avx512, $ty>(job, buf) }
            }
        )*
    };
}

panels! {
    panel_q8_0: Q8_0;
    panel_q4_0: Q4_0;
    panel_q4_1: Q4_1;
    panel_q5_0: Q5_0;
    panel_q5_1: Q5_1;
}
