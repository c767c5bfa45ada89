//! Prompt-pass panels for float weights on AVX-512, in the arithmetic of the AVX-512 tiles so
//! that a row's result does not depend on its batch:
//!
//! - F32, F16, and BF16 at `Exact` (`float::block`): per output, lane `j` of a 16-lane sum takes
//!   the columns `c ≡ j (mod 16)` in order, one FMA each, then `_mm512_reduce_add_ps`, then the
//!   columns past the last multiple of 16 one by one;
//! - BF16 against bf16 activations with AVX512-BF16 (`bf16.rs`, the `Dp` chunk): per 32-column
//!   chunk, lane `j` takes pair `j` with one `vdpbf16ps` (the weights' last chunk zero-filled,
//!   the activations padded), then `bf16::reduce16`.
//!
//! Both are one shape: each output has one 16-lane sum and a stream of 64-byte weight and
//! activation vectors in the order it takes them. Sixteen weight rows are laid out one slice of
//! sixteen vectors per row at a time into a per-thread buffer that stays in L1 (widened to f32,
//! exact, or the bf16 pairs as they are: 16 KiB either way), and multiplied there with all
//! activation rows, eight weight rows by three activation rows at a time (24 sums, 8 + 3 loads
//! per 24 FMAs or `vdpbf16ps`). The sums of every (activation row, weight row) pair wait in a
//! second buffer between slices. While one group of activation rows is multiplied, the next group
//! is prefetched into L1, a share of it in each pass over the slice's weight rows: it comes from
//! further out than L2 (the activations of a whole product are read once per panel).
//!
//! Measured in a throwaway copy of this loop (not kept: 2048×2048, 2048×8192 and 8192×2048 F16
//! against 256 rows, one thread, twelve interleaved rounds): 8 × 3 with the prefetch and 256-column slices
//! took 1.05–1.14× the throughput of 4 × 6 with 512-column slices; 8 × 3 without the prefetch
//! 0.86–0.90×, 4 × 6 with it about 1.0×.

use std::arch::x86_64::*;

use super::bf16::reduce16;
use super::float::{BF16, F16, F32, FloatW};
use super::panel::line_offset;
use crate::act::bf16_stride;
use crate::kernels::{PanelBuf, PanelJob};

/// Rows per panel.
pub const ROWS: usize = 16;
/// Weight rows and activation rows of the register block.
const MR: usize = 8;
const NR: usize = 3;
/// 64-byte vectors per row in a slice: 16 rows × 16 vectors = 16 KiB.
const VECS: usize = 16;
/// Passes over the slice per group of activation rows, and the rows of the next group each
/// pass prefetches.
const PASSES: usize = ROWS / MR;
const PF: usize = NR.div_ceil(PASSES);

/// How one weight type's products accumulate (see the module header).
trait Stream {
    /// Columns per 64-byte vector.
    const CHUNK: usize;
    /// Bytes of one activation.
    const ACT_BYTES: usize;
    /// Columns the vector loop covers: whole chunks, the last one padded or not.
    fn main(cols: usize) -> usize;
    /// Activation row `t`.
    ///
    /// # Safety
    /// `t < job.n`.
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8;
    /// Lays out the chunk at column `c < main` of the weight row at `w` into the 64 bytes at
    /// `dst`.
    ///
    /// # Safety
    /// The row holds `cols` weights; the CPU supports the stream's instructions.
    unsafe fn lay(w: *const u8, cols: usize, c: usize, dst: *mut f32);
    /// The activation vector of the chunk at column `c` of the activation row `x`.
    ///
    /// # Safety
    /// `x` is an activation row of the job; AVX-512F.
    unsafe fn act(x: *const u8, c: usize) -> __m512;
    /// One step of a sum: a laid-out weight vector against an activation vector.
    ///
    /// # Safety
    /// The CPU supports the stream's instructions.
    unsafe fn madd(sum: __m512, w: __m512, x: __m512) -> __m512;
    /// The output from its sum: the reduction and the columns past `main`.
    ///
    /// # Safety
    /// `w`, `x` are a weight row and an activation row of `cols` columns; AVX-512F.
    unsafe fn finish(sum: __m512, w: *const u8, x: *const u8, cols: usize) -> f32;
}

/// The float tiles' arithmetic for weights of format `W` against f32 activations.
struct Float<W>(std::marker::PhantomData<W>);

impl<W: FloatW> Stream for Float<W> {
    const CHUNK: usize = 16;
    const ACT_BYTES: usize = 4;
    fn main(cols: usize) -> usize {
        cols / 16 * 16
    }
    #[inline(always)]
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8 {
        // SAFETY: caller's contract.
        unsafe { job.act.f32s.add(t * job.cols) as *const u8 }
    }
    #[inline(always)]
    unsafe fn lay(w: *const u8, _: usize, c: usize, dst: *mut f32) {
        // SAFETY: caller's contract.
        unsafe { _mm512_storeu_ps(dst, super::float::load16::<W>(w.add(c * W::BYTES))) }
    }
    #[inline(always)]
    unsafe fn act(x: *const u8, c: usize) -> __m512 {
        // SAFETY: caller's contract.
        unsafe { _mm512_loadu_ps((x as *const f32).add(c)) }
    }
    #[inline(always)]
    unsafe fn madd(sum: __m512, w: __m512, x: __m512) -> __m512 {
        // SAFETY: caller's contract.
        unsafe { _mm512_fmadd_ps(w, x, sum) }
    }
    #[inline(always)]
    unsafe fn finish(sum: __m512, w: *const u8, x: *const u8, cols: usize) -> f32 {
        // SAFETY: caller's contract.
        unsafe {
            let mut s = if cols >= 16 {
                _mm512_reduce_add_ps(sum)
            } else {
                0.0
            };
            let row = std::slice::from_raw_parts(w, cols * W::BYTES);
            for c in Self::main(cols)..cols {
                s += W::one(&row[c * W::BYTES..]) * *(x as *const f32).add(c);
            }
            s
        }
    }
}

/// BF16 weights against bf16 activations with `vdpbf16ps`, as `bf16.rs`'s `Dp` chunks.
struct Bf16Dp;

impl Stream for Bf16Dp {
    const CHUNK: usize = 32;
    const ACT_BYTES: usize = 2;
    fn main(cols: usize) -> usize {
        bf16_stride(cols)
    }
    #[inline(always)]
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8 {
        // SAFETY: caller's contract; bf16 rows are padded to `bf16_stride`.
        unsafe { job.act.bf16s.add(t * bf16_stride(job.cols)) as *const u8 }
    }
    #[inline(always)]
    unsafe fn lay(w: *const u8, cols: usize, c: usize, dst: *mut f32) {
        // SAFETY: caller's contract; the last chunk is read through a zeroed copy, as the tile
        // does.
        unsafe {
            let w = w as *const u16;
            let v = if c + 32 <= cols {
                _mm512_loadu_si512(w.add(c) as *const _)
            } else {
                let mut tail = [0u16; 32];
                std::ptr::copy_nonoverlapping(w.add(c), tail.as_mut_ptr(), cols - c);
                _mm512_loadu_si512(tail.as_ptr() as *const _)
            };
            _mm512_storeu_si512(dst as *mut _, v);
        }
    }
    #[inline(always)]
    unsafe fn act(x: *const u8, c: usize) -> __m512 {
        // SAFETY: caller's contract (the row is padded to whole chunks).
        unsafe { _mm512_castsi512_ps(_mm512_loadu_si512((x as *const u16).add(c) as *const _)) }
    }
    #[inline(always)]
    unsafe fn madd(sum: __m512, w: __m512, x: __m512) -> __m512 {
        // SAFETY: caller's contract; `__m512bh` is 32 bf16 in the bits of a vector.
        unsafe {
            let w = std::mem::transmute::<__m512, __m512bh>(w);
            let x = std::mem::transmute::<__m512, __m512bh>(x);
            _mm512_dpbf16_ps(sum, w, x)
        }
    }
    #[inline(always)]
    unsafe fn finish(sum: __m512, _: *const u8, _: *const u8, _: usize) -> f32 {
        // SAFETY: caller's contract.
        unsafe { reduce16(sum) }
    }
}

/// Lays out columns `k0..k0 + kc` of the job's rows into `w[(r · VECS + v) · 16..]` (missing
/// rows of a short panel repeat the last one; their results are not stored).
///
/// # Safety
/// `k0 + kc ≤ S::main(cols)`, `kc ≤ VECS · S::CHUNK`; `w` holds `ROWS · VECS · 16` floats; the
/// CPU supports the stream's instructions.
#[inline(always)]
unsafe fn lay<S: Stream>(job: &PanelJob, k0: usize, kc: usize, w: &mut [f32]) {
    // SAFETY: caller's contract.
    unsafe {
        for r in 0..ROWS {
            let src = job.w.add(r.min(job.nr - 1) * job.row_bytes);
            let dst = w.as_mut_ptr().add(r * VECS * 16);
            for v in 0..kc / S::CHUNK {
                S::lay(src, job.cols, k0 + v * S::CHUNK, dst.add(v * 16));
            }
        }
    }
}

/// Weight rows `m0..m0 + MR` of the slice against activation rows `t0..t0 + N`, columns
/// `k0..k0 + kc`; the sums live in `acc[(t · ROWS + r) · 16..]`. Prefetches the slice's
/// activations of the rows at `pf`.
///
/// # Safety
/// `w` is the laid-out slice, `acc` holds `n · ROWS · 16` floats, the activation rows exist;
/// the CPU supports the stream's instructions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<S: Stream, const N: usize>(
    job: &PanelJob,
    w: &[f32],
    acc: &mut [f32],
    m0: usize,
    t0: usize,
    k0: usize,
    kc: usize,
    pf: [*const u8; PF],
) {
    // SAFETY: caller's contract.
    unsafe {
        let x: [*const u8; N] = std::array::from_fn(|i| S::row(job, t0 + i));
        let a = |m: usize, i: usize| acc.as_ptr().add(((t0 + i) * ROWS + m0 + m) * 16) as *mut f32;
        let mut v = [[_mm512_setzero_ps(); N]; MR];
        if k0 > 0 {
            for m in 0..MR {
                for i in 0..N {
                    v[m][i] = _mm512_loadu_ps(a(m, i));
                }
            }
        }
        let wp = w.as_ptr().add(m0 * VECS * 16);
        for k in 0..kc / S::CHUNK {
            let c = k0 + k * S::CHUNK;
            // The N activation vectors stay in registers and the weight rows stream past them:
            // 24 sums + 3 + 1 registers of the 32 (eight weight vectors held at once, with the
            // sums, would be 33: one sum spilled to the stack every step).
            let xv: [__m512; N] = std::array::from_fn(|i| S::act(x[i], c));
            for p in pf {
                _mm_prefetch::<_MM_HINT_T0>(p.add(c * S::ACT_BYTES) as *const i8);
            }
            for m in 0..MR {
                let wv = _mm512_loadu_ps(wp.add((m * VECS + k) * 16));
                for i in 0..N {
                    v[m][i] = S::madd(v[m][i], wv, xv[i]);
                }
            }
        }
        for m in 0..MR {
            for i in 0..N {
                _mm512_storeu_ps(a(m, i), v[m][i]);
            }
        }
    }
}

/// # Safety
/// As for [`crate::kernels::PanelFn`] with the activations `S` takes; the CPU supports the
/// stream's instructions.
#[inline(always)]
unsafe fn body<S: Stream>(job: &PanelJob, buf: &mut PanelBuf) {
    let (n, cols) = (job.n, job.cols);
    let main = S::main(cols);
    // Both buffers start on a cache line (`panel::lined`).
    buf.s.resize(ROWS * VECS * 16 + 16, 0.0);
    buf.o.resize(n * ROWS * 16 + 16, 0.0);
    let (ws, os) = (line_offset(buf.s.as_ptr()), line_offset(buf.o.as_ptr()));
    // SAFETY: forwarded contract; the buffers were sized above.
    unsafe {
        let mut k0 = 0;
        while k0 < main {
            let kc = (main - k0).min(VECS * S::CHUNK);
            lay::<S>(job, k0, kc, &mut buf.s[ws..]);
            let mut t0 = 0;
            while t0 < n {
                let nt = (n - t0).min(NR);
                for pass in 0..PASSES {
                    let m0 = pass * MR;
                    // Rows of the next group (the last row again past the end: prefetching a
                    // line twice costs little).
                    let pf =
                        std::array::from_fn(|q| S::row(job, (t0 + nt + pass * PF + q).min(n - 1)));
                    let (w, acc) = (&buf.s[ws..], &mut buf.o[os..]);
                    match nt {
                        1 => micro::<S, 1>(job, w, acc, m0, t0, k0, kc, pf),
                        2 => micro::<S, 2>(job, w, acc, m0, t0, k0, kc, pf),
                        _ => micro::<S, 3>(job, w, acc, m0, t0, k0, kc, pf),
                    }
                }
                t0 += nt;
            }
            k0 += kc;
        }
        for t in 0..n {
            let x = S::row(job, t);
            for r in 0..job.nr {
                let sum = _mm512_loadu_ps(buf.o.as_ptr().add(os + (t * ROWS + r) * 16));
                *job.out.add(t * job.ldo + r) =
                    S::finish(sum, job.w.add(r * job.row_bytes), x, cols);
            }
        }
    }
}

macro_rules! fpanels {
    ($feat:literal: $($name:ident: $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::PanelFn`]; the CPU supports this path's features.
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { body::<$ty>(job, buf) }
            }
        )*
    };
}

fpanels! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni":
    panel_f32: Float<F32>;
    panel_f16: Float<F16>;
    panel_bf16: Float<BF16>;
}

fpanels! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16":
    panel_bf16_dp: Bf16Dp;
}
