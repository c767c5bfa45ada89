//! The three products of a linear layer `Y = X·Wᵀ` (`W: [out, in]`, `X: [N, in]`), all on
//! camelid-kernels' f32 GEMM ([`Kernels::gemm_f32`], `c = a·b` with `b` row-major and `a`
//! row-major or transposed):
//!
//! - forward `Y = X·Wᵀ`: `a = X`, `b = Wᵀ` (`[in, out]`, a transposed copy of the weights, a
//!   `1/N` share of the product's work);
//! - input gradient `dX = dY·W`: `a = dY`, `b = W`;
//! - weight gradient `dW += dYᵀ·X`: `a = dY` read transposed, `b = X`, in blocks of output rows
//!   so that only a block of `dW` is held apart from the gradient (the output projection's is
//!   `[vocab, d]`) before it is added.
//!
//! The GEMM splits the rows of its result between threads and sums each element in one fixed
//! order, so every product is the same bit for bit whatever the thread count.

use camelid_kernels::{GemmF32, Kernels};

use crate::par::transpose;

/// Output rows of the weight gradient per block.
const DW_BLOCK: usize = 4096;

/// Reusable buffers of the products.
pub(crate) struct Scratch {
    /// `Wᵀ`, `[in, out]`
    wt: Vec<f32>,
    /// A block of `dW`, `[DW_BLOCK, in]`
    dw: Vec<f32>,
}

impl Scratch {
    /// Buffers for the largest product of a model of `config`.
    pub(crate) fn new(c: &camelid_model::Config) -> Scratch {
        let (d, q, ff, v) = (c.d_model, c.q_dim(), c.d_ff, c.n_vocab);
        let widest_in = d.max(q).max(ff);
        let largest = (v * d).max(q * d).max(ff * d);
        Scratch {
            wt: vec![0.0; largest],
            dw: vec![0.0; DW_BLOCK.min(v.max(ff).max(q)) * widest_in],
        }
    }

    /// Floats held.
    pub(crate) fn len(&self) -> usize {
        self.wt.len() + self.dw.len()
    }
}

/// `y[N, out] = x[N, in] · wᵀ`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    k: &Kernels,
    threads: usize,
    s: &mut Scratch,
    w: &[f32],
    out: usize,
    inp: usize,
    x: &[f32],
    y: &mut [f32],
) {
    if s.wt.len() < out * inp {
        s.wt.resize(out * inp, 0.0);
    }
    transpose(k, threads, w, out, inp, inp, &mut s.wt);
    let g = GemmF32 {
        m: x.len() / inp,
        n: out,
        k: inp,
        a: x,
        lda: inp,
        a_trans: false,
        b: &s.wt[..out * inp],
        ldb: out,
    };
    k.gemm_f32(&g, y, out, threads);
}

/// `dx[N, in] = dy[N, out] · w`.
pub(crate) fn backward_input(
    k: &Kernels,
    threads: usize,
    w: &[f32],
    out: usize,
    inp: usize,
    dy: &[f32],
    dx: &mut [f32],
) {
    let g = GemmF32 {
        m: dy.len() / out,
        n: inp,
        k: out,
        a: dy,
        lda: out,
        a_trans: false,
        b: w,
        ldb: inp,
    };
    k.gemm_f32(&g, dx, inp, threads);
}

/// `dw[out, in] += scale · dy[N, out]ᵀ · x[N, in]`.
pub(crate) fn backward_weight(
    k: &Kernels,
    threads: usize,
    s: &mut Scratch,
    dy: &[f32],
    x: &[f32],
    (out, inp, scale): (usize, usize, f32),
    dw: &mut [f32],
) {
    let n = x.len() / inp;
    let rows = DW_BLOCK.min(out);
    if s.dw.len() < rows * inp {
        s.dw.resize(rows * inp, 0.0);
    }
    for o0 in (0..out).step_by(rows) {
        let m = rows.min(out - o0);
        let g = GemmF32 {
            m,
            n: inp,
            k: n,
            a: &dy[o0..],
            lda: out,
            a_trans: true,
            b: x,
            ldb: inp,
        };
        let block = &mut s.dw[..m * inp];
        k.gemm_f32(&g, block, inp, threads);
        for (a, &b) in dw[o0 * inp..(o0 + m) * inp].iter_mut().zip(block.iter()) {
            *a += scale * b;
        }
    }
}
