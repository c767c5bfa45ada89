//! Prompt-pass panels for float weights on AVX2, in the arithmetic of the AVX2 tiles so that a
//! row's result does not depend on its batch:
//!
//! - F32, F16, and BF16 at `Exact` (`float::block`, 256-bit): per output, lane `j` of one
//!   8-lane sum takes the columns `c ≡ j (mod 8)` in order, one FMA each, then `hsum`, then the
//!   columns past the last multiple of 8 one by one;
//! - BF16 against bf16 activations (`bf16.rs`, the `Fma` chunk): per 32-column chunk, lane `j`
//!   of sum `h` takes the odd then the even element of pair `8h + j`, one FMA each (the weights'
//!   last chunk zero-filled, the activations padded), then `hsum` of the two sums added.
//!
//! Both are one shape: each output has one or two independent 8-lane sums (planes), and each
//! plane a stream of weight and activation vectors in the order it takes them. Sixteen weight
//! rows are widened (exact) one slice of [`KC`] columns at a time into their planes' streams in
//! a per-thread buffer that stays in L1, and multiplied there with all activation rows, four
//! weight rows by `NR` activation rows at a time (12 or 8 sums in registers); the sums wait in a
//! second buffer between slices, and each pass over the slice prefetches a row of the next
//! activation group. The AVX2 tiles widen each weight vector once per four activation rows, and
//! the BF16 one splits every activation vector again for each weight row.
//!
//! `--example panel_speed` on AVX2 (one thread, a 1B layer's products, GFLOP/s), the tiles /
//! this panel, at n = 64 and 512 activation rows: F16 79–80, 72–74 / 78–85, 87–89; BF16 (bf16
//! activations) 47–48, 47–49 / 84–86, 86; F32 59–60, 58 / 77–79, 87–89. At n = 8 the tiles
//! were as fast or faster (F16 57 against 53–54). Sixteen rows a panel beat eight at n ≥ 128
//! (F16 n = 512 80–85 against 73–75 before the prefetch), three activation rows a block two
//! (71–75 against 57–59 with eight rows); the prefetch added 4–6% at n = 512.

use std::arch::x86_64::*;

use super::bf16::split;
use super::float::{BF16, F16, F32, FloatW};
use super::hsum;
use super::panel::line_offset;
use crate::act::bf16_stride;
use crate::kernels::{PanelBuf, PanelJob};

/// Rows per panel.
pub const ROWS: usize = 16;
/// Weight rows of the register block.
const MR: usize = 4;
/// Columns per slice: 16 rows × 256 columns × 4 bytes = 16 KiB.
const KC: usize = 256;

/// How one weight type's products accumulate (see the module header).
trait Stream {
    /// Columns per chunk: a multiple of 8 dividing [`KC`].
    const CHUNK: usize;
    /// Independent sums per output (at most 2).
    const PLANES: usize;
    /// Vectors of each plane per chunk (at most 2).
    const VECS: usize;
    /// Activation rows of the register block (at most 3): `MR · NR` sums, `NR · VECS`
    /// activation vectors and one weight vector in 16 registers.
    const NR: usize;
    /// Bytes of one activation.
    const ACT_BYTES: usize;

    /// Columns the vector loop covers: whole chunks, the last one padded or not.
    fn main(cols: usize) -> usize;

    /// Activation row `t`.
    ///
    /// # Safety
    /// `t < job.n`.
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8;

    /// Widens the chunk at column `c < main` of the weight row at `w` into `dst[p]` (`VECS · 8`
    /// floats for each plane `p`).
    ///
    /// # Safety
    /// The row holds `cols` weights; AVX2 + F16C.
    unsafe fn widen(w: *const u8, cols: usize, c: usize, dst: [*mut f32; 2]);

    /// Plane `p`'s activation vectors of the chunk at column `c` of the activation row `x`.
    ///
    /// # Safety
    /// `x` is an activation row of the job; AVX2.
    unsafe fn act(x: *const u8, c: usize, p: usize) -> [__m256; 2];

    /// The output from the planes' sums: their reduction and the columns past `main`.
    ///
    /// # Safety
    /// `w`, `x` are a weight row and an activation row of `cols` columns; AVX2.
    unsafe fn finish(sums: [__m256; 2], w: *const u8, x: *const u8, cols: usize) -> f32;
}

/// The float tiles' arithmetic for weights of format `W` against f32 activations.
struct Float<W>(std::marker::PhantomData<W>);

impl<W: FloatW> Stream for Float<W> {
    const CHUNK: usize = 8;
    const PLANES: usize = 1;
    const VECS: usize = 1;
    const NR: usize = 3;
    const ACT_BYTES: usize = 4;
    fn main(cols: usize) -> usize {
        cols / 8 * 8
    }
    #[inline(always)]
    unsafe fn row(job: &PanelJob, t: usize) -> *const u8 {
        // SAFETY: caller's contract (f32 activations).
        unsafe { job.f32_row(t) }
    }
    #[inline(always)]
    unsafe fn widen(w: *const u8, _: usize, c: usize, dst: [*mut f32; 2]) {
        // SAFETY: caller's contract.
        unsafe { _mm256_storeu_ps(dst[0], W::load8(w.add(c * W::BYTES))) }
    }
    #[inline(always)]
    unsafe fn act(x: *const u8, c: usize, _: usize) -> [__m256; 2] {
        // SAFETY: caller's contract.
        unsafe {
            let v = _mm256_loadu_ps((x as *const f32).add(c));
            [v, v]
        }
    }
    #[inline(always)]
    unsafe fn finish(sums: [__m256; 2], w: *const u8, x: *const u8, cols: usize) -> f32 {
        // SAFETY: caller's contract.
        unsafe {
            let s = hsum(sums[0]);
            super::float::tail::<W>(s, w, x as *const f32, Self::main(cols), cols)
        }
    }
}

/// BF16 weights against bf16 activations, as `bf16.rs`'s `Fma` chunks.
struct Bf16Pairs;

impl Stream for Bf16Pairs {
    const CHUNK: usize = 32;
    const PLANES: usize = 2;
    const VECS: usize = 2;
    const NR: usize = 2;
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
    unsafe fn widen(w: *const u8, cols: usize, c: usize, dst: [*mut f32; 2]) {
        // SAFETY: caller's contract; the last chunk is read through a zeroed copy, as the tile
        // does.
        unsafe {
            let w = w as *const u16;
            for (h, d) in dst.into_iter().enumerate() {
                let at = c + 16 * h;
                let v = if at + 16 <= cols {
                    _mm256_loadu_si256(w.add(at) as *const __m256i)
                } else {
                    let mut tail = [0u16; 16];
                    let len = cols.saturating_sub(at);
                    std::ptr::copy_nonoverlapping(w.add(at.min(cols)), tail.as_mut_ptr(), len);
                    _mm256_loadu_si256(tail.as_ptr() as *const __m256i)
                };
                let (odd, even) = split(v);
                _mm256_storeu_ps(d, odd);
                _mm256_storeu_ps(d.add(8), even);
            }
        }
    }
    #[inline(always)]
    unsafe fn act(x: *const u8, c: usize, p: usize) -> [__m256; 2] {
        // SAFETY: caller's contract (the row is padded to whole chunks).
        unsafe {
            let (odd, even) = split(_mm256_loadu_si256(
                (x as *const u16).add(c + 16 * p) as *const __m256i
            ));
            [odd, even]
        }
    }
    #[inline(always)]
    unsafe fn finish(sums: [__m256; 2], _: *const u8, _: *const u8, _: usize) -> f32 {
        // SAFETY: caller's contract.
        unsafe { hsum(_mm256_add_ps(sums[0], sums[1])) }
    }
}

/// Floats of one plane of one row in a slice.
const fn plane_len<S: Stream>() -> usize {
    KC / S::CHUNK * S::VECS * 8
}

/// Widens columns `k0..k0 + kc` of the job's rows into `w` (plane `p` of row `r` at
/// `(p · ROWS + r) · plane_len`; missing rows of a short panel repeat the last one, their
/// results are not stored).
///
/// # Safety
/// `k0 + kc ≤ S::main(cols)`; `w` holds `PLANES · ROWS · plane_len` floats; AVX2 + F16C.
#[inline(always)]
unsafe fn widen<S: Stream>(job: &PanelJob, k0: usize, kc: usize, w: &mut [f32]) {
    let len = plane_len::<S>();
    // SAFETY: caller's contract.
    unsafe {
        for r in 0..ROWS {
            let src = job.w.add(r.min(job.nr - 1) * job.row_bytes);
            let base: [*mut f32; 2] = std::array::from_fn(|p| {
                w.as_mut_ptr().add((p.min(S::PLANES - 1) * ROWS + r) * len)
            });
            let step = S::VECS * 8;
            for k in 0..kc / S::CHUNK {
                S::widen(
                    src,
                    job.cols,
                    k0 + k * S::CHUNK,
                    [base[0].add(k * step), base[1].add(k * step)],
                );
            }
        }
    }
}

/// Plane `p` of weight rows `m0..m0 + MR` of the slice against activation rows `t0..t0 + N`,
/// columns `k0..k0 + kc`; the sums live in `acc[((t · PLANES + p) · ROWS + r) · 8..]`.
///
/// # Safety
/// `w` is the widened slice, `acc` holds `n · PLANES · ROWS · 8` floats, the activation rows
/// exist; AVX2 + FMA.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<S: Stream, const N: usize>(
    job: &PanelJob,
    w: &[f32],
    acc: &mut [f32],
    p: usize,
    m0: usize,
    t0: usize,
    k0: usize,
    kc: usize,
    pf: *const u8,
) {
    // SAFETY: caller's contract.
    unsafe {
        let x: [*const u8; N] = std::array::from_fn(|i| S::row(job, t0 + i));
        let a = |m: usize, i: usize| {
            acc.as_ptr()
                .add((((t0 + i) * S::PLANES + p) * ROWS + m0 + m) * 8) as *mut f32
        };
        let mut v = [[_mm256_setzero_ps(); N]; MR];
        if k0 > 0 {
            for m in 0..MR {
                for i in 0..N {
                    v[m][i] = _mm256_loadu_ps(a(m, i));
                }
            }
        }
        let len = plane_len::<S>();
        let wp = w.as_ptr().add((p * ROWS + m0) * len);
        for k in 0..kc / S::CHUNK {
            let c = k0 + k * S::CHUNK;
            _mm_prefetch::<_MM_HINT_T0>(pf.add(c * S::ACT_BYTES) as *const i8);
            let xv: [[__m256; 2]; N] = std::array::from_fn(|i| S::act(x[i], c, p));
            for q in 0..S::VECS {
                for m in 0..MR {
                    let wv = _mm256_loadu_ps(wp.add(m * len + (k * S::VECS + q) * 8));
                    for i in 0..N {
                        v[m][i] = _mm256_fmadd_ps(wv, xv[i][q], v[m][i]);
                    }
                }
            }
        }
        for m in 0..MR {
            for i in 0..N {
                _mm256_storeu_ps(a(m, i), v[m][i]);
            }
        }
    }
}

/// # Safety
/// As for [`crate::kernels::PanelFn`] with the activations `S` takes; AVX2 + FMA + F16C.
#[inline(always)]
unsafe fn body<S: Stream>(job: &PanelJob, buf: &mut PanelBuf) {
    let (n, cols) = (job.n, job.cols);
    let main = S::main(cols);
    // Both buffers start on a cache line (`panel::lined`).
    buf.s.resize(S::PLANES * ROWS * plane_len::<S>() + 16, 0.0);
    buf.o.resize(n * S::PLANES * ROWS * 8 + 16, 0.0);
    let (ws, os) = (line_offset(buf.s.as_ptr()), line_offset(buf.o.as_ptr()));
    // SAFETY: forwarded contract; the buffers were sized above.
    unsafe {
        let mut k0 = 0;
        while k0 < main {
            let kc = (main - k0).min(KC);
            widen::<S>(job, k0, kc, &mut buf.s[ws..]);
            let mut t0 = 0;
            while t0 < n {
                let nt = (n - t0).min(S::NR);
                for p in 0..S::PLANES {
                    for m0 in (0..ROWS).step_by(MR) {
                        let (w, acc) = (&buf.s[ws..], &mut buf.o[os..]);
                        // The next group's rows, a share of them in each pass (the last row
                        // again past the end: prefetching a line twice costs little).
                        let pass = p * ROWS / MR + m0 / MR;
                        let pf = S::row(job, (t0 + nt + pass % S::NR).min(n - 1));
                        match nt {
                            1 => micro::<S, 1>(job, w, acc, p, m0, t0, k0, kc, pf),
                            2 => micro::<S, 2>(job, w, acc, p, m0, t0, k0, kc, pf),
                            _ => micro::<S, 3>(job, w, acc, p, m0, t0, k0, kc, pf),
                        }
                    }
                }
                t0 += nt;
            }
            k0 += kc;
        }
        for t in 0..n {
            let x = S::row(job, t);
            for r in 0..job.nr {
                let sums: [__m256; 2] = std::array::from_fn(|p| {
                    if main > 0 && p < S::PLANES {
                        _mm256_loadu_ps(
                            buf.o
                                .as_ptr()
                                .add(os + ((t * S::PLANES + p) * ROWS + r) * 8),
                        )
                    } else {
                        _mm256_setzero_ps()
                    }
                });
                *job.out.add(t * job.ldo + r) =
                    S::finish(sums, job.w.add(r * job.row_bytes), x, cols);
            }
        }
    }
}

macro_rules! fpanels {
    ($($name:ident: $ty:ty;)*) => {
        $(
            /// # Safety
            /// As for [`crate::kernels::PanelFn`]; AVX2 + FMA + F16C.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(crate) unsafe fn $name(job: &PanelJob, buf: &mut PanelBuf) {
                // SAFETY: forwarded contract, with this path's features.
                unsafe { body::<$ty>(job, buf) }
            }
        )*
    };
}

fpanels! {
    panel_f32: Float<F32>;
    panel_f16: Float<F16>;
    panel_bf16: Float<BF16>;
    panel_bf16_bf16: Bf16Pairs;
}
