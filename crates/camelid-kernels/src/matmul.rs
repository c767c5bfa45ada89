//! Matrix products of a weight matrix (any [`DType`]) with f32 activations.
//!
//! The reference path dequantizes a strip of each weight row to f32 on the stack and takes exact
//! f32 dot products with every activation row, so the only error against an f32 computation on
//! the same (rounded or dequantized) weights is the order of the additions.

use crate::dtype::DType;
use crate::quant::dequantize_row;

/// A row-major weight matrix `[rows, cols]` borrowed from wherever it lives (usually a memory map).
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> WeightView<'a> {
    /// Checks that `data` holds exactly `rows × cols` elements of `dtype`.
    pub fn new(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> Option<Self> {
        let expected = dtype.row_bytes(cols)?.checked_mul(rows)?;
        (data.len() == expected).then_some(WeightView {
            dtype,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// The raw bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Dequantizes row `r` into `dst` (`cols` long): an embedding lookup.
    pub fn dequantize_row_into(&self, r: usize, dst: &mut [f32]) {
        dequantize_row(self.dtype, self.row(r), dst);
    }
}

/// Columns dequantized at a time: a multiple of every block size, small enough for the stack.
const STRIP: usize = 256;

/// f32 dot product with eight independent accumulators, so the compiler can keep them in one
/// vector register without reassociating a single running sum.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `out[t, r] = Σ_c w[r, c] · x[t, c]` for `x: [n, cols]`, `out: [n, rows]`.
///
/// Rows of `w` are split between `threads` workers; each worker writes only its own rows.
pub fn matmul(w: &WeightView, x: &[f32], out: &mut [f32], threads: usize) {
    let (rows, cols) = (w.rows, w.cols);
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "activations are not [n, {cols}]"
    );
    let n = x.len() / cols;
    assert_eq!(out.len(), n * rows, "output is not [{n}, {rows}]");

    let work = rows * cols * n;
    let threads = if work < (1 << 18) {
        1
    } else {
        threads.clamp(1, rows)
    };
    if threads == 1 {
        matmul_rows(w, x, n, 0..rows, OutPtr(out.as_mut_ptr()));
        return;
    }
    let per = rows.div_ceil(threads);
    let ptr = OutPtr(out.as_mut_ptr());
    std::thread::scope(|s| {
        for t in 1..threads {
            let r = (t * per).min(rows)..((t + 1) * per).min(rows);
            s.spawn(move || matmul_rows(w, x, n, r, ptr));
        }
        matmul_rows(w, x, n, 0..per.min(rows), ptr);
    });
}

/// The output pointer shared by the workers of one `matmul`.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write disjoint sets of elements (distinct rows `r` of `out[t, r]`), and the
// scope in `matmul` ends before the borrow of `out` does.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

fn matmul_rows(w: &WeightView, x: &[f32], n: usize, rows: std::ops::Range<usize>, out: OutPtr) {
    let (cols, total_rows, dtype) = (w.cols, w.rows, w.dtype);
    let bs = dtype.block_size();
    let bb = dtype.block_bytes();
    let mut strip = [0.0f32; STRIP];
    for r in rows {
        let row = w.row(r);
        let mut sums = [0.0f32; 64];
        let mut t0 = 0;
        // Activation rows are taken 64 at a time so the partial sums stay on the stack.
        while t0 < n {
            let tn = (n - t0).min(64);
            sums[..tn].fill(0.0);
            for c0 in (0..cols).step_by(STRIP) {
                let len = STRIP.min(cols - c0);
                let bytes = &row[c0 / bs * bb..(c0 + len) / bs * bb];
                dequantize_row(dtype, bytes, &mut strip[..len]);
                for (t, s) in sums[..tn].iter_mut().enumerate() {
                    let xt = &x[(t0 + t) * cols + c0..][..len];
                    *s += dot_f32(&strip[..len], xt);
                }
            }
            for (t, s) in sums[..tn].iter().enumerate() {
                // SAFETY: `(t0 + t) < n` and `r < total_rows`, so the index is inside `out`,
                // and only this worker writes row `r`.
                unsafe { *out.0.add((t0 + t) * total_rows + r) = *s };
            }
            t0 += tn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row;

    /// The product equals a plain f64 triple loop over the dequantized weights.
    #[test]
    fn matmul_matches_naive_for_every_dtype_and_odd_sizes() {
        for dtype in DType::ALL {
            for &(rows, cols, n) in &[
                (1, 32, 1),
                (7, 96, 3),
                (33, 320, 2),
                (5, 288, 70),
                (3, 512, 5),
            ] {
                let Some(rb) = dtype.row_bytes(cols) else {
                    continue;
                };
                let wf: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                    .collect();
                let mut wq = vec![0u8; rb * rows];
                for r in 0..rows {
                    quantize_row(dtype, &wf[r * cols..][..cols], &mut wq[r * rb..][..rb]);
                }
                let mut wd = vec![0.0f32; rows * cols];
                for r in 0..rows {
                    dequantize_row(dtype, &wq[r * rb..][..rb], &mut wd[r * cols..][..cols]);
                }
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                    .collect();
                let w = WeightView::new(dtype, rows, cols, &wq).unwrap();
                for threads in [1, 3] {
                    let mut out = vec![0.0f32; n * rows];
                    matmul(&w, &x, &mut out, threads);
                    for t in 0..n {
                        for r in 0..rows {
                            let want: f64 = (0..cols)
                                .map(|c| wd[r * cols + c] as f64 * x[t * cols + c] as f64)
                                .sum();
                            let got = out[t * rows + r] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{dtype} {rows}x{cols} n={n}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
