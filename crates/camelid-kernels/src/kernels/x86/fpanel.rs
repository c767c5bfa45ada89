//! Prompt-pass panels for float weights (F32, F16, BF16) on AVX-512, in the arithmetic of the
//! AVX-512 float tiles (`float::block`), so that a row's result does not depend on its batch:
//! per output, lane `j` of a 16-lane accumulator takes the columns `c ≡ j (mod 16)` in order,
//! one FMA each, then `_mm512_reduce_add_ps`, then the columns past the last multiple of 16 one
//! by one.
//!
//! For speed, sixteen weight rows are widened to f32 (exact) one slice of [`KC`] columns at a
//! time into a per-thread buffer that stays in L1, and multiplied there with all activation
//! rows, eight weight rows by three activation rows at a time (24 accumulators, 8 + 3 loads per
//! 24 FMAs). The accumulators of every (activation row, weight row) pair wait in a second buffer
//! between slices. While one group of activation rows is multiplied, the next group is
//! prefetched into L1, a share of it in each pass over the slice's weight rows: it comes from
//! further out than L2 (the activations of a whole product are read once per panel).
//!
//! Measured in a throwaway copy of this loop (not kept: 2048×2048, 2048×8192 and 8192×2048 F16
//! against 256 rows, one thread, twelve interleaved rounds): 8 × 3 with the prefetch and 256-column slices
//! took 1.05–1.14× the throughput of 4 × 6 with 512-column slices; 8 × 3 without the prefetch
//! 0.86–0.90×, 4 × 6 with it about 1.0×.

use std::arch::x86_64::*;

use super::float::{BF16, F16, F32, FloatW};
use super::panel::line_offset;
use crate::kernels::{PanelBuf, PanelJob};

/// Rows per panel.
pub const ROWS: usize = 16;
/// Weight rows and activation rows of the register block.
const MR: usize = 8;
const NR: usize = 3;
/// Columns per slice: 16 rows × 256 columns × 4 bytes = 16 KiB.
const KC: usize = 256;
/// Passes over the slice per group of activation rows, and the rows of the next group each
/// pass prefetches.
const PASSES: usize = ROWS / MR;
const PF: usize = NR.div_ceil(PASSES);

/// Widens columns `k0..k0 + kc` of the job's rows into `w[r · KC + c]` (missing rows of a short
/// panel repeat the last one; their results are not stored).
///
/// # Safety
/// The job's `nr` rows hold `k0 + kc` weights; `w` holds `ROWS · KC` floats; AVX-512F + F16C.
#[inline(always)]
unsafe fn widen<W: FloatW>(job: &PanelJob, k0: usize, kc: usize, w: &mut [f32]) {
    // SAFETY: caller's contract; `kc` is a multiple of 16.
    unsafe {
        for r in 0..ROWS {
            let src = job.w.add(r.min(job.nr - 1) * job.row_bytes + k0 * W::BYTES);
            let dst = w.as_mut_ptr().add(r * KC);
            let mut c = 0;
            while c < kc {
                _mm512_storeu_ps(dst.add(c), super::float::load16::<W>(src.add(c * W::BYTES)));
                c += 16;
            }
        }
    }
}

/// Weight rows `m0..m0 + MR` of the slice against activation rows `t0..t0 + N`, columns
/// `k0..k0 + kc`; the accumulators live in `acc[(t · ROWS + r) · 16..]`. Prefetches `kc`
/// floats at each of `pf`.
///
/// # Safety
/// `w` is the widened slice, `acc` holds `n · ROWS · 16` floats, the activation rows exist;
/// AVX-512F.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const N: usize>(
    job: &PanelJob,
    w: &[f32],
    acc: &mut [f32],
    m0: usize,
    t0: usize,
    k0: usize,
    kc: usize,
    pf: [*const f32; PF],
) {
    // SAFETY: caller's contract.
    unsafe {
        let x: [*const f32; N] =
            std::array::from_fn(|i| job.act.f32s.add((t0 + i) * job.cols + k0));
        let a = |m: usize, i: usize| acc.as_ptr().add(((t0 + i) * ROWS + m0 + m) * 16) as *mut f32;
        let mut v = [[_mm512_setzero_ps(); N]; MR];
        if k0 > 0 {
            for m in 0..MR {
                for i in 0..N {
                    v[m][i] = _mm512_loadu_ps(a(m, i));
                }
            }
        }
        let wp = w.as_ptr().add(m0 * KC);
        let mut c = 0;
        while c < kc {
            // The N activation vectors stay in registers and the weight rows stream past them:
            // 24 sums + 3 + 1 registers of the 32 (eight weight vectors held at once, with the
            // sums, would be 33: one sum spilled to the stack every step).
            let xv: [__m512; N] = std::array::from_fn(|i| _mm512_loadu_ps(x[i].add(c)));
            for p in pf {
                _mm_prefetch::<_MM_HINT_T0>(p.add(c) as *const i8);
            }
            for m in 0..MR {
                let wv = _mm512_loadu_ps(wp.add(m * KC + c));
                for i in 0..N {
                    v[m][i] = _mm512_fmadd_ps(wv, xv[i], v[m][i]);
                }
            }
            c += 16;
        }
        for m in 0..MR {
            for i in 0..N {
                _mm512_storeu_ps(a(m, i), v[m][i]);
            }
        }
    }
}

/// # Safety
/// As for [`crate::kernels::PanelFn`]; AVX-512F.
#[inline(always)]
unsafe fn body<W: FloatW>(job: &PanelJob, buf: &mut PanelBuf) {
    let (n, cols) = (job.n, job.cols);
    let main = cols / 16 * 16;
    // Both buffers start on a cache line (`panel::lined`).
    buf.s.resize(ROWS * KC + 16, 0.0);
    buf.o.resize(n * ROWS * 16 + 16, 0.0);
    let (ws, os) = (line_offset(buf.s.as_ptr()), line_offset(buf.o.as_ptr()));
    // SAFETY: forwarded contract; the buffers were sized above.
    unsafe {
        let mut k0 = 0;
        while k0 < main {
            let kc = (main - k0).min(KC);
            widen::<W>(job, k0, kc, &mut buf.s[ws..]);
            let mut t0 = 0;
            while t0 < n {
                let nt = (n - t0).min(NR);
                for pass in 0..PASSES {
                    let m0 = pass * MR;
                    // Rows of the next group (the last row again past the end: prefetching a
                    // line twice costs little).
                    let pf = std::array::from_fn(|q| {
                        let t = (t0 + nt + pass * PF + q).min(n - 1);
                        job.act.f32s.add(t * job.cols + k0)
                    });
                    let (w, acc) = (&buf.s[ws..], &mut buf.o[os..]);
                    match nt {
                        1 => micro::<1>(job, w, acc, m0, t0, k0, kc, pf),
                        2 => micro::<2>(job, w, acc, m0, t0, k0, kc, pf),
                        _ => micro::<3>(job, w, acc, m0, t0, k0, kc, pf),
                    }
                }
                t0 += nt;
            }
            k0 += kc;
        }
        for t in 0..n {
            let x = std::slice::from_raw_parts(job.act.f32s.add(t * cols), cols);
            for r in 0..job.nr {
                let mut s = if main > 0 {
                    _mm512_reduce_add_ps(_mm512_loadu_ps(
                        buf.o.as_ptr().add(os + (t * ROWS + r) * 16),
                    ))
                } else {
                    0.0
                };
                let row = std::slice::from_raw_parts(job.w.add(r * job.row_bytes), job.row_bytes);
                for c in main..cols {
                    s += W::one(&row[c * W::BYTES..]) * x[c];
                }
                *job.out.add(t * job.ldo + r) = s;
            }
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
