//! Prompt-pass panels for float weights (F32, F16, BF16) on AVX-512.
//!
//! Sixteen weight rows are widened to f32 and transposed once per product into a per-thread
//! panel `[cols][16]`; then every activation value is broadcast against a 512-bit vector of
//! sixteen rows, so each FMA adds one column to sixteen outputs of one activation row and no
//! horizontal sums are needed. Eight activation rows share each panel load. Widening is exact:
//! the results differ from the scalar twin only in the order of the additions.

use std::arch::x86_64::*;

use super::float::{BF16, F16, F32, FloatW};
use super::panel::transpose8;
use crate::kernels::{PanelBuf, PanelJob};

/// Rows per panel.
pub const ROWS: usize = 16;

/// Widens and transposes the job's rows into `buf.s` as `[cols][16]`.
///
/// # Safety
/// `w` holds `nr ≤ 16` rows of `cols` weights; AVX2 + F16C.
#[inline(always)]
unsafe fn pack<W: FloatW>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    cols: usize,
    buf: &mut PanelBuf,
) {
    buf.s.resize(cols * ROWS, 0.0);
    let main = cols / 8 * 8;
    // Missing rows of a short panel repeat the last one; their results are not stored.
    let row = |r: usize| w.wrapping_add(r.min(nr - 1) * row_bytes);
    // SAFETY: rows `r < nr` and columns below `cols` are inside the job's weights; `buf.s` was
    // sized above.
    unsafe {
        let dst = buf.s.as_mut_ptr();
        let mut k = 0;
        while k < main {
            for g in 0..2 {
                let mut v = [_mm256_setzero_si256(); 8];
                for (i, vi) in v.iter_mut().enumerate() {
                    *vi = _mm256_castps_si256(W::load8(row(8 * g + i).add(k * W::BYTES)));
                }
                for (j, t) in transpose8(v).iter().enumerate() {
                    _mm256_storeu_si256(dst.add((k + j) * ROWS + 8 * g) as *mut __m256i, *t);
                }
            }
            k += 8;
        }
        for k in main..cols {
            for r in 0..ROWS {
                let b = std::slice::from_raw_parts(row(r).add(k * W::BYTES), W::BYTES);
                *dst.add(k * ROWS + r) = W::one(b);
            }
        }
    }
}

/// Columns per pass: a 16 KiB slice of the panel and the activations' matching slices stay in
/// L1 while every activation row runs over them.
const KC: usize = 256;

/// Columns `k0..k1` of the panel against activation rows `t0..t0 + N`, added to `out` unless
/// `first`.
///
/// # Safety
/// The job's activation rows `t0..t0 + N` exist; `buf` is packed for the job; AVX-512F.
#[inline(always)]
unsafe fn gemm<const N: usize>(
    job: &PanelJob,
    buf: &PanelBuf,
    t0: usize,
    k0: usize,
    k1: usize,
    first: bool,
) {
    let cols = job.cols;
    let mask = if job.nr >= ROWS {
        0xffff
    } else {
        (1u16 << job.nr) - 1
    };
    // SAFETY: activation rows `t0..t0 + N` hold `cols` floats; the panel `cols · 16`; outputs
    // `t · ldo + r` for `r < nr` are writable.
    unsafe {
        let x: [*const f32; N] = std::array::from_fn(|i| job.act.f32s.add((t0 + i) * cols));
        let o: [*mut f32; N] = std::array::from_fn(|i| job.out.add((t0 + i) * job.ldo));
        let p = buf.s.as_ptr();
        let mut acc = [_mm512_setzero_ps(); N];
        if !first {
            for i in 0..N {
                acc[i] = _mm512_maskz_loadu_ps(mask, o[i]);
            }
        }
        for k in k0..k1 {
            let wv = _mm512_loadu_ps(p.add(k * ROWS));
            for i in 0..N {
                acc[i] = _mm512_fmadd_ps(wv, _mm512_set1_ps(*x[i].add(k)), acc[i]);
            }
        }
        for i in 0..N {
            _mm512_mask_storeu_ps(o[i], mask, acc[i]);
        }
    }
}

/// # Safety
/// As for [`crate::kernels::PanelFn`]; AVX-512F.
#[inline(always)]
unsafe fn body<W: FloatW>(job: &PanelJob, buf: &mut PanelBuf) {
    // SAFETY: forwarded contract.
    unsafe {
        pack::<W>(job.w, job.row_bytes, job.nr, job.cols, buf);
        let mut k0 = 0;
        while k0 < job.cols {
            let k1 = (k0 + KC).min(job.cols);
            let mut t = 0;
            while t + 8 <= job.n {
                gemm::<8>(job, buf, t, k0, k1, k0 == 0);
                t += 8;
            }
            while t < job.n {
                gemm::<1>(job, buf, t, k0, k1, k0 == 0);
                t += 1;
            }
            k0 = k1;
        }
    }
}

macro_rules! fpanels {
    ($($name:ident: $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::PanelFn`]; the CPU supports the AVX-512 path.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { body::<$ty>(job, buf) }
            }
        )*
    };
}

fpanels! {
    panel_f32: F32;
    panel_f16: F16;
    panel_bf16: BF16;
}
