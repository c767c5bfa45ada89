//! Weight rows interleaved in eights: a load-time rearrangement of a k-quant matrix that lets
//! one 512-bit load take the same eight bytes of eight rows.
//!
//! A decode tile multiplies eight rows at once. In the GGUF layout each row's super-block is
//! contiguous, so the tile loads every row apart and has to fold eight rows' lane sums out of
//! each vector of products, per block of 32 (`x86::panel::Fold512`). Interleaved, the products of
//! a 512-bit `vpdpbusd` land as two lanes per row, and one fold serves two blocks. llama.cpp does
//! the same kind of repacking for its CPU backend (`ggml-cpu/repack.cpp`, `block_q4_Kx8`); the
//! layout here is our own, and is only a permutation of the file's bytes, so it takes exactly
//! the same memory.
//!
//! The layout, for Q4_K (144-byte super-blocks: `d`, `dmin`, 12 bytes of 6-bit scales and
//! minimums, then 128 bytes of nibbles; `ggml-common.h`): rows `8g..8g + 8` occupy the same
//! `8 · row_bytes` bytes as before, as `row_bytes / 144` groups of 1152 bytes, group `u` holding
//! super-block `u` of each of the eight rows:
//! - bytes `16r..16r + 16`: the first 16 bytes (`d`, `dmin`, scales) of row `r`'s super-block;
//! - bytes `128 + 64k + 8r..128 + 64k + 8r + 8`: nibble bytes `8k..8k + 8` of row `r`
//!   (`k < 16`), so that vector `k` holds bytes `8k..8k + 8` of all eight rows.

use crate::dtype::DType;

/// Rows interleaved together.
pub const ROWS: usize = 8;

/// Where a type's super-block bytes go: its header (copied whole per row) and the body
/// (interleaved in pieces of eight bytes).
struct Spec {
    block_bytes: usize,
    header: std::ops::Range<usize>,
    body: std::ops::Range<usize>,
}

fn spec(dtype: DType) -> Option<Spec> {
    match dtype {
        DType::Q4_K => Some(Spec {
            block_bytes: 144,
            header: 0..16,
            body: 16..144,
        }),
        _ => None,
    }
}

/// Whether `dtype` has the interleaved layout.
pub fn supports(dtype: DType) -> bool {
    spec(dtype).is_some()
}

/// Offset within a group of eight super-blocks (one per row) of byte `i` of row `r`'s
/// super-block.
fn position(s: &Spec, r: usize, i: usize) -> usize {
    let header = s.header.len();
    if s.header.contains(&i) {
        header * r + (i - s.header.start)
    } else {
        let j = i - s.body.start;
        ROWS * header + 64 * (j / 8) + 8 * r + j % 8
    }
}

/// The interleaved copy of the `[rows, cols]` matrix `src` of `dtype`; `None` where the type has
/// no interleaved layout, the rows are not a multiple of eight, or `src` is not the matrix.
pub fn interleave(dtype: DType, rows: usize, cols: usize, src: &[u8]) -> Option<Vec<u8>> {
    let s = spec(dtype)?;
    let rb = dtype.row_bytes(cols)?;
    if !rows.is_multiple_of(ROWS) || src.len() != rows.checked_mul(rb)? {
        return None;
    }
    let mut out = vec![0u8; src.len()];
    let units = rb / s.block_bytes;
    for g in 0..rows / ROWS {
        for u in 0..units {
            let dst = g * ROWS * rb + u * ROWS * s.block_bytes;
            for r in 0..ROWS {
                let from = (g * ROWS + r) * rb + u * s.block_bytes;
                for i in 0..s.block_bytes {
                    out[dst + position(&s, r, i)] = src[from + i];
                }
            }
        }
    }
    Some(out)
}

/// Row `r` of an interleaved `[_, cols]` matrix `data` of `dtype`, in the file's layout, into
/// `dst` (`row_bytes` long).
///
/// # Panics
/// If `dtype` has no interleaved layout or the sizes disagree (the caller's invariants).
pub fn row_into(dtype: DType, cols: usize, data: &[u8], r: usize, dst: &mut [u8]) {
    let s = spec(dtype).expect("an interleaved type");
    let rb = dtype.row_bytes(cols).expect("whole blocks");
    assert_eq!(dst.len(), rb, "row buffer of {dtype}");
    let group = &data[r / ROWS * ROWS * rb..][..ROWS * rb];
    for u in 0..rb / s.block_bytes {
        let at = u * ROWS * s.block_bytes;
        for i in 0..s.block_bytes {
            dst[u * s.block_bytes + i] = group[at + position(&s, r % ROWS, i)];
        }
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
        assert!(interleave(DType::Q4_0, 16, cols, &src).is_none());
    }
}
