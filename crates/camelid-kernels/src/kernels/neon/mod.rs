//! aarch64 kernels on NEON (Advanced SIMD, part of every AArch64 core, so nothing is detected).
//!
//! The integer dot products use `smull`/`smull2` (8 × 8 → 16-bit products, exact since
//! `|w| ≤ 128` and `|x| ≤ 127`) and `sadalp` (pairwise widening adds into 32-bit lanes).
//! ARMv8.2's `sdot` does the same in one instruction, but its intrinsic `vdotq_s32` is unstable
//! in Rust 1.96 (feature `stdarch_neon_dotprod`, rust-lang/rust#117224), so this path keeps to
//! the base instruction set. Tiles unpack each block of weights once for all `nt` activation
//! rows; there are no prompt panels (the driver then uses the tiles for prompts too). Types
//! without a NEON tile here (the i-quants and ternary types, BF16 on bf16 activations) keep the
//! scalar kernels.
//!
//! Tested under qemu-user only (`scripts/test-aarch64.sh`): the speed of this path on real
//! hardware has not been measured.

// The bodies index several parallel arrays (sums, pointers, scales) by one row index.
#![allow(clippy::needless_range_loop)]

mod act;
mod float;
pub mod ops;
mod quant;

use std::arch::aarch64::*;

use super::{Table, TileFn, TypeKernels, scalar, type_index};
use crate::act::{ActKind, quantize_bf16_scalar};
use crate::dtype::DType;
use crate::isa::Isa;

/// `acc + Σ w·x` over 16 signed bytes, the pairs of products summed into four i32 lanes.
#[inline(always)]
pub(super) fn dot16(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is part of the aarch64 base ISA.
    unsafe {
        let lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
        let hi = vmull_high_s8(w, x);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// Defines the entry point `$name` of a tile body generic over the number of activation rows.
macro_rules! entry {
    ($name:ident, $body:ident $(, $extra:ty)*) => {
        /// # Safety
        /// As for [`crate::kernels::TileFn`].
        pub(crate) unsafe fn $name(t: &crate::kernels::Tile) {
            // SAFETY: forwarded contract.
            unsafe {
                match t.nt {
                    1 => $body::<$($extra,)* 1>(t),
                    2 => $body::<$($extra,)* 2>(t),
                    3 => $body::<$($extra,)* 3>(t),
                    _ => $body::<$($extra,)* 4>(t),
                }
            }
        }
    };
}
pub(crate) use entry;

const fn k(act: ActKind, tile: TileFn) -> TypeKernels {
    TypeKernels {
        act,
        tile,
        panel: None,
        interleaved: None,
    }
}

/// The scalar table's entries with this path's own tiles put in.
const fn types() -> [TypeKernels; DType::ALL.len()] {
    let mut t = scalar::TYPES;
    t[type_index(DType::F32)] = k(ActKind::F32, float::tile_f32);
    t[type_index(DType::F16)] = k(ActKind::F32, float::tile_f16);
    t[type_index(DType::Q8_0)] = k(ActKind::Q8, quant::tile_q8_0);
    t[type_index(DType::Q4_0)] = k(ActKind::Q8, quant::tile_q4_0);
    t[type_index(DType::Q4_1)] = k(ActKind::Q8, quant::tile_q4_1);
    t[type_index(DType::Q5_0)] = k(ActKind::Q8, quant::tile_q5_0);
    t[type_index(DType::Q5_1)] = k(ActKind::Q8, quant::tile_q5_1);
    t[type_index(DType::Q2_K)] = k(ActKind::Q8, quant::tile_q2_k);
    t[type_index(DType::Q3_K)] = k(ActKind::Q8, quant::tile_q3_k);
    t[type_index(DType::Q4_K)] = k(ActKind::Q8, quant::tile_q4_k);
    t[type_index(DType::Q5_K)] = k(ActKind::Q8, quant::tile_q5_k);
    t[type_index(DType::Q6_K)] = k(ActKind::Q8, quant::tile_q6_k);
    t
}

pub static TABLE: Table = Table {
    isa: Isa::Neon,
    types: types(),
    bf16_exact: k(ActKind::F32, float::tile_bf16),
    quant_q8: act::quant_q8,
    quant_bf16: quantize_bf16_scalar,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::Precision;

    /// The types the NEON path promises go through its own tiles, not the scalar ones: a table
    /// built wrong cannot pass the twin tests by being the scalar table.
    #[test]
    fn neon_table_uses_its_own_tiles() {
        assert_eq!(super::super::table(Isa::best()).isa, Isa::Neon);
        for dtype in [
            DType::F32,
            DType::F16,
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q2_K,
            DType::Q3_K,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
        ] {
            let (neon, scalar) = (
                TABLE.get(dtype, Precision::Fast).tile as usize,
                scalar::TABLE.get(dtype, Precision::Fast).tile as usize,
            );
            assert_ne!(neon, scalar, "{dtype}");
        }
        assert_ne!(
            TABLE.quant_q8 as usize,
            scalar::TABLE.quant_q8 as usize,
            "quant_q8"
        );
    }
}
