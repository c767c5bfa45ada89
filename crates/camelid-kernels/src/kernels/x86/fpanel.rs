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
//! activation vectors in the order it takes them. A panel's sixteen weight rows are first laid
//! out, as they are stored (f16, bf16 or f32), chunk by chunk: the chunk `k` of the sixteen rows
//! side by side, so that the weights a step needs are consecutive bytes. The laid-out panel
//! stays in L2 (64 KiB for 2048 f16 columns, 256 KiB for 8192) and is multiplied with all
//! activation rows, eight weight rows by three activation rows at a time over every column, the
//! 24 sums in registers from the first column to the last (8 + 3 loads per 24 FMAs or
//! `vdpbf16ps`; widening f16 inside the loop costs nothing measurable: it does not take the FMA
//! units). While one group of activation rows is multiplied, the next group is prefetched into
//! L1, a share of it in each pass.
//!
//! `--example panel_speed` (one thread, a 1B layer's products, GFLOP/s; the FMA peak of this
//! Zen 4 core is 117): F16 at n = 512 73–78 → 91–98 against the version before, which widened
//! 256-column slices into L1 and kept the sums in memory between slices (a tenth of its time
//! went to those loads and stores), 2048×2048 71 → 98–101; n = 64 80 → 85–91.

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
/// Passes over the panel per group of activation rows, and the rows of the next group each
/// pass prefetches.
const PASSES: usize = ROWS / MR;
const PF: usize = NR.div_ceil(PASSES);

/// How one weight type's products accumulate (see the module header).
trait Stream {
    /// Columns per step (one 16-lane vector of sums).
    const CHUNK: usize;
    /// Bytes of one step's weights of one row, as laid out.
    const VB: usize;
    /// Bytes of one activation.
    const ACT_BYTES: usize;
    /// Columns the vector loop covers: whole chunks, the last one padded or not.
    fn main(cols: usize) -> usize;
    /// Activation row `t`.
    ///
    /// # Safety
    /// `t < job.n`.
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8;
    /// Copies the chunk at column `c < main` of the weight row at `w` to the `VB` bytes at
    /// `dst`.
    ///
    /// # Safety
    /// The row holds `cols` weights.
    unsafe fn lay(w: *const u8, cols: usize, c: usize, dst: *mut u8);
    /// A laid-out chunk as a vector (widened to f32, or the bf16 pairs as they are).
    ///
    /// # Safety
    /// `VB` readable bytes; the CPU supports the stream's instructions.
    unsafe fn load(w: *const u8) -> __m512;
    /// The activation vector of the chunk at column `c` of the activation row `x`.
    ///
    /// # Safety
    /// `x` is an activation row of the job; AVX-512F.
    unsafe fn act(x: *const u8, c: usize) -> __m512;
    /// One step of a sum: a weight vector against an activation vector.
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
    const VB: usize = 16 * W::BYTES;
    const ACT_BYTES: usize = 4;
    fn main(cols: usize) -> usize {
        cols / 16 * 16
    }
    #[inline(always)]
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8 {
        // SAFETY: caller's contract (f32 activations).
        unsafe { job.f32_row(t) }
    }
    #[inline(always)]
    unsafe fn lay(w: *const u8, _: usize, c: usize, dst: *mut u8) {
        // SAFETY: caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(w.add(c * W::BYTES), dst, Self::VB) }
    }
    #[inline(always)]
    unsafe fn load(w: *const u8) -> __m512 {
        // SAFETY: caller's contract.
        unsafe { super::float::load16::<W>(w) }
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
            let s = if cols >= 16 {
                _mm512_reduce_add_ps(sum)
            } else {
                0.0
            };
            super::float::tail::<W>(s, w, x as *const f32, Self::main(cols), cols)
        }
    }
}

/// BF16 weights against bf16 activations with `vdpbf16ps`, as `bf16.rs`'s `Dp` chunks.
struct Bf16Dp;

impl Stream for Bf16Dp {
    const CHUNK: usize = 32;
    const VB: usize = 64;
    const ACT_BYTES: usize = 2;
    fn main(cols: usize) -> usize {
        bf16_stride(cols)
    }
    #[inline(always)]
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8 {
        // SAFETY: caller's contract (bf16 activations).
        unsafe { job.bf16_row(t) }
    }
    #[inline(always)]
    unsafe fn lay(w: *const u8, cols: usize, c: usize, dst: *mut u8) {
        // SAFETY: caller's contract; the last chunk is zero-filled past the row, as the tile
        // does.
        unsafe {
            let len = 32.min(cols - c);
            std::ptr::copy_nonoverlapping(w.add(2 * c), dst, 2 * len);
            std::ptr::write_bytes(dst.add(2 * len), 0, 64 - 2 * len);
        }
    }
    #[inline(always)]
    unsafe fn load(w: *const u8) -> __m512 {
        // SAFETY: caller's contract.
        unsafe { _mm512_loadu_ps(w as *const f32) }
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

/// Lays out the job's rows over all `main` columns, chunk by chunk: row `r`'s chunk `k` at
/// byte `(k · ROWS + r) · VB`, so that a step of `MR` rows reads `MR · VB` consecutive bytes
/// (missing rows of a short panel repeat the last one; their results are not stored).
///
/// # Safety
/// `w` holds `main / CHUNK · ROWS · VB` bytes.
#[inline(always)]
unsafe fn lay<S: Stream>(job: &PanelJob, main: usize, w: *mut u8) {
    // SAFETY: caller's contract.
    unsafe {
        for r in 0..ROWS {
            let src = job.w.add(r.min(job.nr - 1) * job.row_bytes);
            for k in 0..main / S::CHUNK {
                S::lay(src, job.cols, k * S::CHUNK, w.add((k * ROWS + r) * S::VB));
            }
        }
    }
}

/// Weight rows `m0..m0 + MR` of the laid-out panel against activation rows `t0..t0 + N`, over
/// all columns: the outputs. Prefetches the activations of the rows at `pf`.
///
/// # Safety
/// `w` is the laid-out panel, the activation rows exist; the CPU supports the stream's
/// instructions.
#[inline(always)]
unsafe fn micro<S: Stream, const N: usize>(
    job: &PanelJob,
    w: *const u8,
    m0: usize,
    t0: usize,
    pf: [*const u8; PF],
) -> [[f32; N]; MR] {
    // SAFETY: caller's contract.
    unsafe {
        let main = S::main(job.cols);
        let x: [*const u8; N] = std::array::from_fn(|i| S::row(job, t0 + i));
        let mut v = [[_mm512_setzero_ps(); N]; MR];
        let mut wp = w.add(m0 * S::VB);
        let mut c = 0;
        while c < main {
            // The N activation vectors stay in registers and the weight rows stream past them:
            // 24 sums + 3 + 1 registers of the 32.
            let xv: [__m512; N] = std::array::from_fn(|i| S::act(x[i], c));
            for p in pf {
                _mm_prefetch::<_MM_HINT_T0>(p.add(c * S::ACT_BYTES) as *const i8);
            }
            for m in 0..MR {
                let wv = S::load(wp.add(m * S::VB));
                for i in 0..N {
                    v[m][i] = S::madd(v[m][i], wv, xv[i]);
                }
            }
            wp = wp.add(ROWS * S::VB);
            c += S::CHUNK;
        }
        let mut out = [[0.0f32; N]; MR];
        for m in 0..MR {
            let wr = job.w.add((m0 + m).min(job.nr - 1) * job.row_bytes);
            for i in 0..N {
                out[m][i] = S::finish(v[m][i], wr, x[i], job.cols);
            }
        }
        out
    }
}

/// # Safety
/// As for [`crate::kernels::PanelFn`] with the activations `S` takes; the CPU supports the
/// stream's instructions.
#[inline(always)]
unsafe fn body<S: Stream>(job: &PanelJob, buf: &mut PanelBuf) {
    let (n, main) = (job.n, S::main(job.cols));
    // The laid-out panel, from a cache line.
    buf.s
        .resize((main / S::CHUNK * ROWS * S::VB).div_ceil(4) + 16, 0.0);
    let ws = line_offset(buf.s.as_ptr());
    // SAFETY: forwarded contract; the buffer was sized above.
    unsafe {
        let w = buf.s.as_mut_ptr().add(ws) as *mut u8;
        lay::<S>(job, main, w);
        let mut t0 = 0;
        while t0 < n {
            let nt = (n - t0).min(NR);
            for pass in 0..PASSES {
                let m0 = pass * MR;
                // Rows of the next group (the last row again past the end: prefetching a line
                // twice costs little).
                let pf = std::array::from_fn(|q| S::row(job, (t0 + nt + pass * PF + q).min(n - 1)));
                let put = |m: usize, i: usize, v: f32| {
                    if m0 + m < job.nr {
                        *job.out.add((t0 + i) * job.ldo + m0 + m) = v;
                    }
                };
                match nt {
                    1 => {
                        let o = micro::<S, 1>(job, w, m0, t0, pf);
                        (0..MR).for_each(|m| put(m, 0, o[m][0]));
                    }
                    2 => {
                        let o = micro::<S, 2>(job, w, m0, t0, pf);
                        (0..MR).for_each(|m| (0..2).for_each(|i| put(m, i, o[m][i])));
                    }
                    _ => {
                        let o = micro::<S, 3>(job, w, m0, t0, pf);
                        (0..MR).for_each(|m| (0..3).for_each(|i| put(m, i, o[m][i])));
                    }
                }
            }
            t0 += nt;
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
