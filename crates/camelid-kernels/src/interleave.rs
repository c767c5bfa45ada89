//! Weight rows interleaved in eights: a load-time rearrangement of a quantized matrix that lets
//! one 512-bit load take the same eight bytes of eight rows.
//!
//! A decode tile multiplies eight rows at once. In the GGUF layout each row's blocks are
//! contiguous, so the tile loads every row apart and has to fold eight rows' lane sums out of
//! each vector of products, per block of 32 (`x86::panel::Fold512`). Interleaved, the products of
//! a 512-bit `vpdpbusd` land as two lanes per row, and one fold serves two blocks
//! (`x86::octet`). llama.cpp does the same kind of repacking for its CPU backend
//! (`ggml-cpu/repack.cpp`, `block_q4_Kx8`); the layout here is our own, and is only a
//! permutation of the file's bytes, so it takes exactly the same memory. Which types a kernel
//! path takes interleaved: [`crate::Kernels::interleaves`] (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K,
//! IQ4_NL and IQ4_XS on AVX-512; the same but Q8_0 on AVX2; none elsewhere). F16 rows interleaved in pieces of sixteen
//! were tried and dropped: one thread read a 134 MB matrix from memory no faster (0.045
//! ns/byte either way).
//!
//! The layout: rows `8g..8g + 8` occupy the same `8 · row_bytes` bytes as before, as groups of
//! eight super-blocks, group `u` holding super-block `u` of each of the eight rows (block
//! layouts: `ggml-common.h`). In a group, a header, then the quants in pieces of eight bytes:
//! piece `k` of the eight rows at `H + 64k`, row `r`'s at `H + 64k + 8r`, so that one 64-byte
//! vector holds the same eight bytes of all eight rows.
//! - Q4_K (144-byte super-blocks: `d`, `dmin`, 12 bytes of 6-bit scales and minimums, 128 of
//!   nibbles): at `16r`, the first 16 bytes of row `r`; from `H = 128`, the nibbles.
//! - Q5_K (176 bytes: Q4_K's 16, then 32 bytes of fifth bits `qh`, then 128 of nibbles): as
//!   Q4_K, the pieces from `H = 128` being `qh`'s four, then the nibbles' sixteen.
//! - Q6_K (210 bytes: 128 of low nibbles `ql`, 64 of high bit pairs `qh`, 16 signed scales,
//!   `d`): at `8e + r`, scale `e` of row `r` (a vector of eight rows per scale); at `128 + 2r`,
//!   row `r`'s `d`; from `H = 144`, the 24 pieces of `ql` and `qh` in the order the tile reads
//!   them: for each half `h` of the super-block and `v` in `0..4`, `ql` pieces `8h + v` and
//!   `8h + 4 + v`, then `qh` piece `4h + v` (in the file, `qh` follows all of `ql`). One
//!   thread streamed a 110 MB Q6_K matrix from memory 1.3× faster in this order than with `qh`
//!   after `ql` ([`q6k_piece`]).
//! - IQ4_XS (136 bytes: `d`, `scales_h`, `scales_l`, 128 of nibbles): at `8r`, the first 8
//!   bytes of row `r`; from `H = 64`, the nibbles.
//! - Q4_0, IQ4_NL (18-byte blocks: `d`, 16 bytes of nibbles) and Q8_0 (34: `d`, 32 bytes), two
//!   blocks a unit: at `2(8j + r)`, row `r`'s `d` of block `j` (eight rows' `d` side by side);
//!   from `H = 32`, the quants of block 0, then of block 1.
//! - Q4_1 (20-byte blocks: `d`, `m`, 16 bytes of nibbles), two blocks a unit: the `d`s as
//!   Q4_0's, the `m`s the same way at `32 + 2(8j + r)`, the nibbles from `H = 64`.

use crate::dtype::DType;

/// Rows interleaved together.
pub const ROWS: usize = 8;

/// Bytes of a super-block of the types with the interleaved layout.
fn block_bytes(dtype: DType) -> Option<usize> {
    match dtype {
        DType::Q4_K => Some(144),
        DType::Q5_K => Some(176),
        DType::Q6_K => Some(210),
        DType::IQ4_XS => Some(136),
        // Two blocks of 32 make a unit.
        DType::Q4_0 | DType::IQ4_NL => Some(36),
        DType::Q8_0 => Some(68),
        DType::Q4_1 => Some(40),
        _ => None,
    }
}

/// Whether `dtype` has the interleaved layout.
pub fn supports(dtype: DType) -> bool {
    block_bytes(dtype).is_some()
}

/// Whether a `[rows, cols]` matrix of `dtype` can be interleaved: a type with the layout,
/// whole groups of eight rows, rows of whole (super-)blocks.
pub fn fits(dtype: DType, rows: usize, cols: usize) -> bool {
    match (block_bytes(dtype), dtype.row_bytes(cols)) {
        (Some(bb), Some(rb)) => rows.is_multiple_of(ROWS) && rb > 0 && rb.is_multiple_of(bb),
        _ => false,
    }
}

/// Offset within a group (super-block `u` of each of eight rows) of byte `i` of row `r`'s
/// super-block: see the module docs.
fn position(dtype: DType, r: usize, i: usize) -> usize {
    /// Body byte `j` of row `r` after a header of `at` bytes: eight-byte pieces, row by row.
    fn piece(at: usize, r: usize, j: usize) -> usize {
        at + 64 * (j / 8) + 8 * r + j % 8
    }
    match dtype {
        DType::Q4_K if i < 16 => 16 * r + i,
        DType::Q4_K => piece(128, r, i - 16),
        DType::Q5_K if i < 16 => 16 * r + i,
        DType::Q5_K => piece(128, r, i - 16),
        DType::Q6_K if i < 192 => piece(144, r, 8 * q6k_piece(i / 8) + i % 8),
        DType::Q6_K if i < 208 => 8 * (i - 192) + r,
        DType::Q6_K => 128 + 2 * r + (i - 208),
        DType::IQ4_XS if i < 8 => 8 * r + i,
        DType::IQ4_XS => piece(64, r, i - 8),
        DType::Q4_0 | DType::IQ4_NL | DType::Q8_0 => {
            // Block `j` of the two, byte `q` of it: `d` first, then its quants.
            let bytes = block_bytes(dtype).unwrap_or(0) / 2;
            let (j, q) = (i / bytes, i % bytes);
            if q < 2 {
                2 * (8 * j + r) + q
            } else {
                piece(32, r, j * (bytes - 2) + q - 2)
            }
        }
        DType::Q4_1 => {
            // Block `j` of the two, byte `q` of it: `d`, `m`, then its nibbles.
            let (j, q) = (i / 20, i % 20);
            match q {
                0..2 => 2 * (8 * j + r) + q,
                2..4 => 32 + 2 * (8 * j + r) + q - 2,
                _ => piece(64, r, j * 16 + q - 4),
            }
        }
        _ => unreachable!("{dtype} is not interleaved"),
    }
}

/// Where piece `k` of a Q6_K super-block's quants (eight bytes: `0..16` of `ql`, `16..24` of
/// `qh`) goes among the group's pieces: the order in which the tile reads them, each half `h`
/// of the super-block as `v` in `0..4` of (`ql` `8h + v`, `ql` `8h + 4 + v`, `qh` `4h + v`),
/// so that the eight rows are one stream read front to back.
pub(crate) const fn q6k_piece(k: usize) -> usize {
    if k < 16 {
        let (h, j) = (k / 8, k % 8);
        12 * h + 3 * (j % 4) + j / 4
    } else {
        let (h, v) = ((k - 16) / 4, (k - 16) % 4);
        12 * h + 3 * v + 2
    }
}

/// The interleaved copy of the `[rows, cols]` matrix `src` of `dtype`; `None` where the type has
/// no interleaved layout, the rows are not a multiple of eight, or `src` is not the matrix.
pub fn interleave(dtype: DType, rows: usize, cols: usize, src: &[u8]) -> Option<Vec<u8>> {
    let rb = dtype.row_bytes(cols)?;
    if src.len() != rows.checked_mul(rb)? {
        return None;
    }
    let mut out = vec![0u8; src.len()];
    interleave_into(dtype, cols, src, &mut out).then_some(out)
}

/// [`interleave`] into `dst` (as long as `src`): any whole groups of eight rows can go
/// separately, so that a large matrix can be copied a slice at a time. `false` (and `dst`
/// untouched) where the type has no interleaved layout or `src` is not whole groups of rows.
pub fn interleave_into(dtype: DType, cols: usize, src: &[u8], dst: &mut [u8]) -> bool {
    permute(dtype, cols, src, dst, true)
}

/// The inverse of [`interleave_into`]: the file's layout of whole groups of eight interleaved
/// rows `src`, into `dst`. `false` (and `dst` untouched) where [`interleave_into`] would refuse.
pub fn deinterleave_into(dtype: DType, cols: usize, src: &[u8], dst: &mut [u8]) -> bool {
    permute(dtype, cols, src, dst, false)
}

/// A stretch of a row's super-block that stays contiguous in the group: row `row`'s bytes
/// `at..at + len` are the group's bytes `to..to + len`.
struct Run {
    row: usize,
    at: usize,
    to: usize,
    len: usize,
}

/// Moves whole groups of eight rows between the two layouts (`forward`: into the interleaved
/// one) a run at a time: most runs are the eight-byte pieces, copied as one word each.
fn permute(dtype: DType, cols: usize, src: &[u8], dst: &mut [u8], forward: bool) -> bool {
    let (Some(bb), Some(rb)) = (block_bytes(dtype), dtype.row_bytes(cols)) else {
        return false;
    };
    if !fits(dtype, ROWS, cols) || !src.len().is_multiple_of(ROWS * rb) || dst.len() != src.len() {
        return false;
    }
    let mut runs = Vec::new();
    for row in 0..ROWS {
        let mut at = 0;
        while at < bb {
            let to = position(dtype, row, at);
            let mut len = 1;
            while at + len < bb && position(dtype, row, at + len) == to + len {
                len += 1;
            }
            runs.push(Run { row, at, to, len });
            at += len;
        }
    }
    for (from, to) in src
        .chunks_exact(ROWS * rb)
        .zip(dst.chunks_exact_mut(ROWS * rb))
    {
        for u in 0..rb / bb {
            for r in &runs {
                // The file's layout at `f`, the interleaved one at `g`: both inside the group
                // of eight rows (`from`, `to`: `8 · rb` bytes each), since `position` maps a
                // row's super-block onto its group's.
                let (f, g) = (r.row * rb + u * bb + r.at, u * ROWS * bb + r.to);
                let (a, b) = if forward { (f, g) } else { (g, f) };
                assert!(a + r.len <= from.len() && b + r.len <= to.len());
                // SAFETY: both ranges were checked just above; `from` and `to` do not overlap
                // (a shared and a mutable borrow).
                unsafe {
                    let (s, d) = (from.as_ptr().add(a), to.as_mut_ptr().add(b));
                    if r.len == 8 {
                        (d as *mut u64).write_unaligned((s as *const u64).read_unaligned());
                    } else {
                        std::ptr::copy_nonoverlapping(s, d, r.len);
                    }
                }
            }
        }
    }
    true
}

/// Row `r` of an interleaved `[_, cols]` matrix `data` of `dtype`, in the file's layout, into
/// `dst` (`row_bytes` long).
///
/// # Panics
/// If `dtype` has no interleaved layout or the sizes disagree (the caller's invariants).
pub fn row_into(dtype: DType, cols: usize, data: &[u8], r: usize, dst: &mut [u8]) {
    let bb = block_bytes(dtype).expect("an interleaved type");
    assert_eq!(
        dst.len(),
        dtype.row_bytes(cols).unwrap_or(0),
        "row buffer of {dtype}"
    );
    for (u, unit) in dst.chunks_exact_mut(bb).enumerate() {
        unit_into(dtype, cols, data, r, u, unit);
    }
}

/// Dequantizes row `r` of an interleaved `[_, cols]` matrix `data` of `dtype` into `dst`
/// (`cols` long), a unit at a time through a buffer on the stack: an embedding lookup of a tied
/// output matrix, once per token, without an allocation.
///
/// # Panics
/// As [`row_into`].
pub fn dequantize_row_into(dtype: DType, cols: usize, data: &[u8], r: usize, dst: &mut [f32]) {
    let bb = block_bytes(dtype).expect("an interleaved type");
    let units = dtype.row_bytes(cols).expect("whole blocks") / bb;
    assert_eq!(dst.len(), cols, "row of {dtype}");
    let mut unit = [0u8; 256];
    for (u, out) in dst.chunks_exact_mut(cols / units).enumerate() {
        unit_into(dtype, cols, data, r, u, &mut unit[..bb]);
        crate::quant::dequantize_row(dtype, &unit[..bb], out);
    }
}

/// Unit `u` of row `r` (one super-block, or two blocks of 32) in the file's layout, into `dst`.
fn unit_into(dtype: DType, cols: usize, data: &[u8], r: usize, u: usize, dst: &mut [u8]) {
    let rb = dtype.row_bytes(cols).expect("whole blocks");
    let group = &data[r / ROWS * ROWS * rb..][..ROWS * rb];
    let at = u * ROWS * dst.len();
    for (i, b) in dst.iter_mut().enumerate() {
        *b = group[at + position(dtype, r % ROWS, i)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout is a permutation: every byte of the file's rows comes back, and the documented
    /// positions hold what the module docs say.
    #[test]
    fn interleaving_is_a_permutation_that_rows_undo() {
        let (rows, cols) = (16, 512);
        let rb = DType::Q4_K.row_bytes(cols).unwrap();
        let src: Vec<u8> = (0..rows * rb).map(|i| (i * 131 % 251) as u8).collect();
        let out = interleave(DType::Q4_K, rows, cols, &src).unwrap();
        let mut sorted = (src.clone(), out.clone());
        sorted.0.sort_unstable();
        sorted.1.sort_unstable();
        assert_eq!(sorted.0, sorted.1);
        let mut row = vec![0u8; rb];
        for r in 0..rows {
            row_into(DType::Q4_K, cols, &out, r, &mut row);
            assert_eq!(row, src[r * rb..][..rb], "row {r}");
        }
        // Row 11 (group 1, row 3), super-block 1: `d` at 16·3, nibble byte 8·5 + 2 at
        // 128 + 64·5 + 8·3 + 2.
        let (g, u) = (rb * 8 + 1152, 8 * rb + 3 * rb + 144);
        assert_eq!(out[g + 48], src[u]);
        assert_eq!(out[g + 128 + 320 + 24 + 2], src[u + 16 + 42]);
        assert!(interleave(DType::Q4_K, 12, cols, &src[..12 * rb]).is_none());
        assert!(interleave(DType::Q2_K, 16, cols, &src).is_none());
    }

    /// Every type's layout is a permutation that `row_into` and `deinterleave_into` undo, and
    /// whose rows dequantize as the file's; Q6_K's and Q4_0's documented places hold what they
    /// should.
    #[test]
    fn every_layout_is_a_permutation_that_rows_undo() {
        let (rows, cols) = (8, 512);
        for dtype in DType::ALL.into_iter().filter(|&d| supports(d)) {
            let rb = dtype.row_bytes(cols).unwrap();
            let src: Vec<u8> = (0..rows * rb).map(|i| (i * 131 % 251) as u8).collect();
            let out = interleave(dtype, rows, cols, &src).unwrap();
            let mut sorted = (src.clone(), out.clone());
            sorted.0.sort_unstable();
            sorted.1.sort_unstable();
            assert_eq!(sorted.0, sorted.1, "{dtype}");
            let mut row = vec![0u8; rb];
            for r in 0..rows {
                row_into(dtype, cols, &out, r, &mut row);
                assert_eq!(row, src[r * rb..][..rb], "{dtype} row {r}");
            }
            // Embedding lookups dequantize the interleaved row as the file's row.
            if crate::quant::can_quantize(dtype) {
                let w: Vec<f32> = (0..rows * cols)
                    .map(|i| (i % 37) as f32 / 9.0 - 2.0)
                    .collect();
                let mut q = vec![0u8; src.len()];
                for (wr, qr) in w.chunks_exact(cols).zip(q.chunks_exact_mut(rb)) {
                    crate::quant::quantize_row(dtype, wr, qr);
                }
                let qi = interleave(dtype, rows, cols, &q).unwrap();
                let (mut want, mut got) = (vec![0f32; cols], vec![f32::NAN; cols]);
                for r in 0..rows {
                    crate::quant::dequantize_row(dtype, &q[r * rb..][..rb], &mut want);
                    dequantize_row_into(dtype, cols, &qi, r, &mut got);
                    assert_eq!(got, want, "{dtype} row {r} dequantized");
                }
            }
            let mut back = vec![0u8; src.len()];
            assert!(deinterleave_into(dtype, cols, &out, &mut back));
            assert_eq!(back, src, "{dtype} deinterleaved");
        }
        // Q4_0, row 6, unit 2 (blocks 4 and 5): block 5's `d` at 2 · (8 + 6), its nibble byte
        // 9 at 32 + 64 · (2 + 1) + 8 · 6 + 1.
        let rb = DType::Q4_0.row_bytes(cols).unwrap();
        let src: Vec<u8> = (0..rows * rb).map(|i| (i * 131 % 251) as u8).collect();
        let out = interleave(DType::Q4_0, rows, cols, &src).unwrap();
        let (g, u) = (2 * 8 * 36, 6 * rb + 5 * 18);
        assert_eq!(out[g + 28..g + 30], src[u..u + 2]);
        assert_eq!(out[g + 32 + 192 + 48 + 1], src[u + 2 + 9]);
        let rb = DType::Q6_K.row_bytes(cols).unwrap();
        let src: Vec<u8> = (0..rows * rb).map(|i| (i * 131 % 251) as u8).collect();
        let out = interleave(DType::Q6_K, rows, cols, &src).unwrap();
        // Row 5, super-block 1: scale 3 at 8·3 + 5, `d` at 128 + 10, `qh` byte 9 (piece 17:
        // half 0, `v` 1) in piece 3 + 2 = 5, `ql` byte 44 (piece 5: half 0, `v` 1, second) in
        // piece 4, `ql` byte 100 (piece 12: half 1, `v` 0, second) in piece 13.
        let (g, u) = (1680, 5 * rb + 210);
        assert_eq!(out[g + 29], src[u + 195]);
        assert_eq!(out[g + 138..g + 140], src[u + 208..u + 210]);
        assert_eq!(out[g + 144 + 64 * 5 + 40 + 1], src[u + 128 + 9]);
        assert_eq!(out[g + 144 + 64 * 4 + 40 + 4], src[u + 44]);
        assert_eq!(out[g + 144 + 64 * 13 + 40 + 4], src[u + 100]);
        let order: Vec<usize> = (0..24).map(q6k_piece).collect();
        assert_eq!(
            order,
            [
                0, 3, 6, 9, 1, 4, 7, 10, 12, 15, 18, 21, 13, 16, 19, 22, 2, 5, 8, 11, 14, 17, 20,
                23
            ]
        );
    }
}
