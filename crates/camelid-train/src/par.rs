//! Row and head loops split over the kernels' thread pool.
//!
//! Every output element is written by exactly one participant, with the same operations
//! whatever the split: results do not depend on the thread count. Reductions across rows (the
//! gradients of norm gains, of the embedding) are not split at all.

use std::marker::PhantomData;
use std::ops::Range;

use camelid_kernels::Kernels;

/// A mutable buffer shared by the participants of one job, each writing its own elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<'a> {
    ptr: *mut f32,
    len: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: the participants of a job write disjoint elements (the contract of `slice`), and the
// job ends before the borrow the pointer came from does (`PhantomData` ties it to that borrow).
unsafe impl Send for SharedMut<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for SharedMut<'_> {}

impl<'a> SharedMut<'a> {
    pub(crate) fn new(x: &'a mut [f32]) -> SharedMut<'a> {
        SharedMut {
            ptr: x.as_mut_ptr(),
            len: x.len(),
            _borrow: PhantomData,
        }
    }

    /// Elements `at..at + len`.
    ///
    /// # Safety
    /// No other live slice from this buffer overlaps them.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len, "slice {at}+{len} of {}", self.len);
        // SAFETY: inside the buffer (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

/// Runs `f` on contiguous ranges that split `0..n` in `threads` parts (fewer when `n` is
/// small), one per participant.
pub(crate) fn for_ranges(k: &Kernels, threads: usize, n: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    let parts = threads.clamp(1, n.max(1));
    if parts == 1 {
        f(0..n);
        return;
    }
    k.run(parts, &|i| f(n * i / parts..n * (i + 1) / parts));
}

/// `dst[c, r] = src[r · ld + c]` for `r < rows`, `c < cols` (`src` rows `ld` apart). Eight
/// source rows at a time: each destination row gets eight consecutive floats (one store), read
/// from eight source rows that walk forward together and stay in cache.
pub(crate) fn transpose(
    k: &Kernels,
    threads: usize,
    src: &[f32],
    rows: usize,
    cols: usize,
    ld: usize,
    dst: &mut [f32],
) {
    /// Source columns per block: 8 rows × 256 columns = 8 KiB of source in L1.
    const B: usize = 256;
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(src.len() >= (rows - 1) * ld + cols && dst.len() >= rows * cols);
    let out = SharedMut::new(&mut dst[..rows * cols]);
    let threads = if rows * cols < 1 << 15 { 1 } else { threads };
    // Each participant writes the destination rows (source columns) of its range.
    for_ranges(k, threads, cols.div_ceil(B), &|blocks| {
        let c_lo = blocks.start * B;
        let c_hi = (blocks.end * B).min(cols);
        if c_lo >= c_hi {
            return;
        }
        // SAFETY: destination rows `c_lo..c_hi` belong to this participant only.
        let d = unsafe { out.slice(c_lo * rows, (c_hi - c_lo) * rows) };
        for c0 in (c_lo..c_hi).step_by(B) {
            let c1 = (c0 + B).min(c_hi);
            let w = c1 - c0;
            let mut r0 = 0;
            while r0 + 8 <= rows {
                let s: [&[f32]; 8] = std::array::from_fn(|i| &src[(r0 + i) * ld + c0..][..w]);
                for c in 0..w {
                    let o: &mut [f32; 8] = (&mut d[(c0 - c_lo + c) * rows + r0..][..8])
                        .try_into()
                        .expect("eight floats");
                    *o = std::array::from_fn(|i| s[i][c]);
                }
                r0 += 8;
            }
            for r in r0..rows {
                let s = &src[r * ld + c0..][..w];
                for (c, &v) in s.iter().enumerate() {
                    d[(c0 - c_lo + c) * rows + r] = v;
                }
            }
        }
    });
}
