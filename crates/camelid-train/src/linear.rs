//! The three products of a linear layer `Y = X·Wᵀ` (`W: [out, in]`, `X: [N, in]`), all on
//! camelid-kernels' f32 GEMM, which computes `out[t, r] = Σ_c w[r, c] · x[t, c]` with both
//! operands contiguous along the summed dimension:
//!
//! - forward `Y = X·Wᵀ`: `w = W`, `x = X`;
//! - input gradient `dX = dY·W`: `w = Wᵀ` (`[in, out]`, a transposed copy), `x = dY`;
//! - weight gradient `dW += dYᵀ·X`: `w = Xᵀ` (`[in, N]`), `x = dYᵀ` (`[out, N]`), which gives
//!   `out[o, i] = Σ_t dY[t, o] · X[t, i]` in `W`'s layout. It goes in blocks of output rows
//!   so that only a block of `dYᵀ` is ever held (the output projection's `dY` is `[N, vocab]`).
//!
//! The kernel splits the output rows `r` between threads and sums each output in one fixed
//! order, so every product is the same bit for bit whatever the thread count.

use camelid_kernels::{DType, Kernels, WeightView};

use crate::par::transpose;

/// Output rows of the weight gradient per block.
const DW_BLOCK: usize = 256;

/// The bytes of an f32 slice, for a [`WeightView`] of dtype F32.
fn bytes(x: &[f32]) -> &[u8] {
    // SAFETY: the bytes of initialized f32s are initialized u8s with no alignment requirement,
    // inside the same allocation and borrowed for the same lifetime.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

fn view(w: &[f32], rows: usize, cols: usize) -> WeightView<'_> {
    WeightView {
        dtype: DType::F32,
        rows,
        cols,
        data: bytes(&w[..rows * cols]),
    }
}

/// Reusable buffers of the backward products.
#[derive(Default)]
pub(crate) struct Scratch {
    /// `Wᵀ`, `[in, out]`
    wt: Vec<f32>,
    /// A block of `dYᵀ`, `[DW_BLOCK, N]`
    dyt: Vec<f32>,
    /// A block of `dW`, `[DW_BLOCK, in]`
    dw: Vec<f32>,
}

/// `y[N, out] = x[N, in] · wᵀ`.
pub(crate) fn forward(
    k: &Kernels,
    threads: usize,
    w: &[f32],
    out: usize,
    inp: usize,
    x: &[f32],
    y: &mut [f32],
) {
    k.matmul(&view(w, out, inp), x, y, threads);
}

/// `dx[N, in] = dy[N, out] · w`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_input(
    k: &Kernels,
    threads: usize,
    s: &mut Scratch,
    w: &[f32],
    out: usize,
    inp: usize,
    dy: &[f32],
    dx: &mut [f32],
) {
    s.wt.resize(out * inp, 0.0);
    transpose(k, threads, w, out, inp, inp, &mut s.wt);
    k.matmul(&view(&s.wt, inp, out), dy, dx, threads);
}

/// `dw[out, in] += dy[N, out]ᵀ · x[N, in]`, given `xt = xᵀ` (`[in, N]`, shared by the
/// products that read the same input).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_weight(
    k: &Kernels,
    threads: usize,
    s: &mut Scratch,
    dy: &[f32],
    xt: &[f32],
    n: usize,
    out: usize,
    inp: usize,
    dw: &mut [f32],
) {
    let xt = view(xt, inp, n);
    s.dyt.resize(DW_BLOCK * n, 0.0);
    s.dw.resize(DW_BLOCK * inp, 0.0);
    let mut o0 = 0;
    while o0 < out {
        let m = DW_BLOCK.min(out - o0);
        // dyt[o, t] = dy[t, o0 + o]: the block's columns of dy, transposed.
        transpose(k, threads, &dy[o0..], n, m, out, &mut s.dyt[..m * n]);
        let block = &mut s.dw[..m * inp];
        k.matmul(&xt, &s.dyt[..m * n], block, threads);
        for (a, &b) in dw[o0 * inp..(o0 + m) * inp].iter_mut().zip(block.iter()) {
            *a += b;
        }
        o0 += m;
    }
}
