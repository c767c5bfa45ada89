//! Weight types and their block layouts.
//!
//! The block layouts are those of GGUF/ggml (`ggml/src/ggml-common.h`): a row of `cols` elements
//! is stored as `cols / block_size` consecutive blocks, each carrying its own scale (and for the
//! "type-1" formats a minimum) as IEEE half floats. The k-quants group 256 elements into a
//! super-block with one half-float scale and small integer scales per sub-block of 16 or 32. The
//! i-quants map 4-bit indices through a non-linear codebook (IQ4_NL, IQ4_XS) or groups of four or
//! eight weights to entries of a grid of small integer vectors (IQ3_*, IQ2_*, IQ1_*); the ternary
//! types (TQ1_0, TQ2_0) store −1, 0, 1 with one scale per 256.
//!
//! The structs below document the layouts and pin their sizes; the kernels address blocks by
//! byte offset (`offset_of!`) so that rows taken straight from a memory map need no alignment.

use half::f16;
use std::mem::{align_of, offset_of, size_of};

/// The element types a weight matrix can be stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // the names GGUF uses: Q4_K beside Q4_0
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
    TQ1_0,
    TQ2_0,
    IQ3_S,
    IQ3_XXS,
    IQ2_XXS,
    IQ2_XS,
    IQ2_S,
    IQ1_S,
    IQ1_M,
}

/// Elements per block of the 32-element formats.
pub const QK: usize = 32;
/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;

/// 32 signed 8-bit values and one scale: `x[i] = d · qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// 32 unsigned 4-bit values around 8 and one scale: `x[i] = d · (q[i] − 8)`.
/// Byte `j` holds element `j` in its low nibble and element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

/// 32 unsigned 4-bit values with a scale and a minimum: `x[i] = d · q[i] + m`; nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

/// 32 unsigned 5-bit values around 16: `x[i] = d · (q[i] − 16)`. The low four bits are nibbles
/// as in Q4_0; bit `i` of the little-endian `qh` is bit 4 of element `i`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 unsigned 5-bit values with a scale and a minimum: `x[i] = d · q[i] + m`; bits as in Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 2-bit "type-1" super-block: 16 sub-blocks of 16, each with a 4-bit scale (low nibble of
/// `scales[j]`) and a 4-bit minimum (high nibble): `x = d · sc · q − dmin · m`.
///
/// Element `e` sits in `qs[32 · (e / 128) + e % 32]` at bit `2 · ((e % 128) / 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ2K {
    pub scales: [u8; 16],
    pub qs: [u8; 64],
    pub d: f16,
    pub dmin: f16,
}

/// 3-bit "type-0" super-block: 16 sub-blocks of 16 with 6-bit scales stored biased by 32:
/// `x = d · (sc − 32) · (q − 4 · !hbit)`. The low two bits of `q` are placed as in Q2_K; the
/// high bit of element `e` is bit `4 · (e / 128) + (e % 128) / 32` of `hmask[e % 32]`, and a
/// *clear* bit subtracts 4. Scale `j` has its low four bits in `scales[j % 8]` (low nibble for
/// `j < 8`, high nibble otherwise) and its high two bits at bit `2 · (j / 4)` of `scales[8 + j % 4]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ3K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: f16,
}

/// 4-bit "type-1" super-block: 8 sub-blocks of 32 with 6-bit scales and minimums packed into 12
/// bytes (see [`kscale`]): `x = d · sc · q − dmin · m`. Each group of 64 elements uses 32 bytes of
/// `qs`, the low nibbles for the first 32 elements and the high nibbles for the next 32.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// 5-bit "type-1" super-block: as Q4_K, plus bit 4 of element `e` at bit `e / 32` of
/// `qh[e % 32]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 6-bit "type-0" super-block: 16 sub-blocks of 16 with signed 8-bit scales:
/// `x = d · sc[e / 16] · (q − 32)`. In each half of 128 elements (`h = e / 128`, `r = e % 128`),
/// the low four bits come from `ql[64h + r % 64]` (low nibble for `r < 64`, high otherwise) and
/// the high two bits from `qh[32h + r % 32]` at bit `2 · (r / 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}

/// 32 4-bit indices into the non-linear codebook [`crate::quant::IQ4NL_VALUES`] and one scale:
/// `x[i] = d · values[q[i]]`; nibbles as in Q4_0. Layout: ggml `ggml-common.h` (`block_iq4_nl`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ4NL {
    pub d: f16,
    pub qs: [u8; 16],
}

/// IQ4_NL's codebook in super-blocks of 256 with eight 6-bit sub-block scales stored biased by
/// 32: `x = d · (ls − 32) · values[q]`. Scale `j` has its low four bits in `scales_l[j / 2]` (low
/// nibble for even `j`) and its high two bits at bit `2j` of the little-endian `scales_h`.
/// Sub-block `j` takes `qs[16j..16j + 16]`, nibbles as in Q4_0. Layout: ggml `ggml-common.h`
/// (`block_iq4_xs`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ4XS {
    pub d: f16,
    pub scales_h: [u8; 2],
    pub scales_l: [u8; 4],
    pub qs: [u8; 128],
}

/// Ternary super-block of 256 at 1.6875 bits a weight: `x = d · (t − 1)` with trits `t ∈ {0, 1,
/// 2}` packed five to a byte (four in `qh`) as a fixed-point fraction: the trit `n` of byte `b`
/// is `(((b · 3ⁿ) mod 256) · 3) >> 8`. Elements `32n + m` (`n < 5`) are trit `n` of `qs[m]`,
/// `160 + 16n + m` trit `n` of `qs[32 + m]`, `240 + 4n + m` (`n < 4`) trit `n` of `qh[m]`.
/// Layout: ggml `ggml-common.h` (`block_tq1_0`); the decoding follows gguf-py's
/// `TQ1_0.dequantize_blocks`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockTQ1_0 {
    pub qs: [u8; 48],
    pub qh: [u8; 4],
    pub d: f16,
}

/// Ternary super-block of 256 at 2 bits a weight: `x = d · (q − 1)`, the 2-bit `q` of element
/// `e` in `qs[32 · (e / 128) + e % 32]` at bit `2 · ((e % 128) / 32)` (Q2_K's order). Layout:
/// ggml `ggml-common.h` (`block_tq2_0`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockTQ2_0 {
    pub qs: [u8; 64],
    pub d: f16,
}

// The grid i-quants: super-blocks of 256 whose groups of four or eight weights index a grid of
// small integer vectors (the field meanings are in `crate::quant::grids`). Layouts: ggml
// `ggml-common.h` (`block_iq3_s`, `block_iq3_xxs`, `block_iq2_xxs`, `block_iq2_xs`, `block_iq2_s`,
// `block_iq1_s`, `block_iq1_m`).

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ3S {
    pub d: f16,
    pub qs: [u8; 64],
    pub qh: [u8; 8],
    pub signs: [u8; 32],
    pub scales: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ3XXS {
    pub d: f16,
    /// 64 grid indices, then eight words of signs and scales.
    pub qs: [u8; 96],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ2XXS {
    pub d: f16,
    pub qs: [u16; 32],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ2XS {
    pub d: f16,
    pub qs: [u16; 32],
    pub scales: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ2S {
    pub d: f16,
    /// 32 low index bytes, then 32 sign bytes.
    pub qs: [u8; 64],
    pub qh: [u8; 8],
    pub scales: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ1S {
    pub d: f16,
    pub qs: [u8; 32],
    pub qh: [u16; 8],
}

/// No separate scale field: the f16 `d` is spread over the top nibbles of the four `scales` words.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ1M {
    pub qs: [u8; 32],
    pub qh: [u8; 16],
    pub scales: [u8; 8],
}

const _: () = {
    assert!(size_of::<BlockIQ3S>() == 110);
    assert!(size_of::<BlockIQ3XXS>() == 98);
    assert!(size_of::<BlockIQ2XXS>() == 66);
    assert!(size_of::<BlockIQ2XS>() == 74);
    assert!(size_of::<BlockIQ2S>() == 82);
    assert!(size_of::<BlockIQ1S>() == 50);
    assert!(size_of::<BlockIQ1M>() == 56);
    assert!(offset_of!(BlockIQ3S, signs) == 74 && offset_of!(BlockIQ3S, scales) == 106);
    assert!(offset_of!(BlockIQ2XS, scales) == 66 && offset_of!(BlockIQ2S, qh) == 66);
    assert!(offset_of!(BlockIQ1S, qh) == 34 && offset_of!(BlockIQ1M, scales) == 48);
};

const _: () = {
    assert!(size_of::<BlockIQ4NL>() == 18);
    assert!(size_of::<BlockIQ4XS>() == 136);
    assert!(size_of::<BlockTQ1_0>() == 54);
    assert!(size_of::<BlockTQ2_0>() == 66);
    assert!(offset_of!(BlockIQ4XS, scales_l) == 4 && offset_of!(BlockIQ4XS, qs) == 8);
    assert!(offset_of!(BlockTQ1_0, qh) == 48 && offset_of!(BlockTQ1_0, d) == 52);
    assert!(offset_of!(BlockTQ2_0, d) == 64);
};

const _: () = {
    assert!(size_of::<BlockQ8_0>() == 34);
    assert!(size_of::<BlockQ4_0>() == 18);
    assert!(size_of::<BlockQ4_1>() == 20);
    assert!(size_of::<BlockQ5_0>() == 22);
    assert!(size_of::<BlockQ5_1>() == 24);
    assert!(size_of::<BlockQ2K>() == 84);
    assert!(size_of::<BlockQ3K>() == 110);
    assert!(size_of::<BlockQ4K>() == 144);
    assert!(size_of::<BlockQ5K>() == 176);
    assert!(size_of::<BlockQ6K>() == 210);
    assert!(align_of::<BlockQ8_0>() == 2);
    // The offsets the kernels rely on.
    assert!(offset_of!(BlockQ5_0, qs) == 6);
    assert!(offset_of!(BlockQ5_1, qs) == 8);
    assert!(offset_of!(BlockQ2K, d) == 80);
    assert!(offset_of!(BlockQ3K, scales) == 96 && offset_of!(BlockQ3K, d) == 108);
    assert!(offset_of!(BlockQ4K, scales) == 4 && offset_of!(BlockQ4K, qs) == 16);
    assert!(offset_of!(BlockQ5K, qh) == 16 && offset_of!(BlockQ5K, qs) == 48);
    assert!(offset_of!(BlockQ6K, qh) == 128 && offset_of!(BlockQ6K, scales) == 192);
    assert!(offset_of!(BlockQ6K, d) == 208);
};

/// Unpacks the 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K/Q5_K super-block.
///
/// Layout (ggml `get_scale_min_k4`): for `j < 4`, `scales[j]` and `scales[j + 4]` hold scale and
/// minimum in their low six bits; for `j ≥ 4`, the low four bits are the nibbles of
/// `scales[j + 4]` and the high two bits are the top bits of `scales[j − 4]` (scale) and
/// `scales[j]` (minimum).
#[inline]
pub fn kscale(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Unpacks the sixteen 6-bit Q3_K scales, bias 32 removed.
#[inline]
pub fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
        let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (lo | (hi << 4)) as i8 - 32;
    }
    out
}

impl DType {
    pub const ALL: [DType; 24] = [
        DType::F32,
        DType::F16,
        DType::BF16,
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
        DType::IQ4_NL,
        DType::IQ4_XS,
        DType::TQ1_0,
        DType::TQ2_0,
        DType::IQ3_S,
        DType::IQ3_XXS,
        DType::IQ2_XXS,
        DType::IQ2_XS,
        DType::IQ2_S,
        DType::IQ1_S,
        DType::IQ1_M,
    ];

    /// Elements per block (1 for the float types).
    pub const fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::IQ4_NL => {
                QK
            }
            DType::Q2_K
            | DType::Q3_K
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
            | DType::IQ4_XS
            | DType::TQ1_0
            | DType::TQ2_0
            | DType::IQ3_S
            | DType::IQ3_XXS
            | DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ2_S
            | DType::IQ1_S
            | DType::IQ1_M => QK_K,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => size_of::<BlockQ8_0>(),
            DType::Q4_0 => size_of::<BlockQ4_0>(),
            DType::Q4_1 => size_of::<BlockQ4_1>(),
            DType::Q5_0 => size_of::<BlockQ5_0>(),
            DType::Q5_1 => size_of::<BlockQ5_1>(),
            DType::Q2_K => size_of::<BlockQ2K>(),
            DType::Q3_K => size_of::<BlockQ3K>(),
            DType::Q4_K => size_of::<BlockQ4K>(),
            DType::Q5_K => size_of::<BlockQ5K>(),
            DType::Q6_K => size_of::<BlockQ6K>(),
            DType::IQ4_NL => size_of::<BlockIQ4NL>(),
            DType::IQ4_XS => size_of::<BlockIQ4XS>(),
            DType::TQ1_0 => size_of::<BlockTQ1_0>(),
            DType::TQ2_0 => size_of::<BlockTQ2_0>(),
            DType::IQ3_S => size_of::<BlockIQ3S>(),
            DType::IQ3_XXS => size_of::<BlockIQ3XXS>(),
            DType::IQ2_XXS => size_of::<BlockIQ2XXS>(),
            DType::IQ2_XS => size_of::<BlockIQ2XS>(),
            DType::IQ2_S => size_of::<BlockIQ2S>(),
            DType::IQ1_S => size_of::<BlockIQ1S>(),
            DType::IQ1_M => size_of::<BlockIQ1M>(),
        }
    }

    /// Bytes of a row of `cols` elements, or `None` when `cols` is not a whole number of blocks.
    pub const fn row_bytes(self, cols: usize) -> Option<usize> {
        if !cols.is_multiple_of(self.block_size()) {
            return None;
        }
        (cols / self.block_size()).checked_mul(self.block_bytes())
    }

    /// The name GGUF and llama.cpp use.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::IQ4_NL => "IQ4_NL",
            DType::IQ4_XS => "IQ4_XS",
            DType::TQ1_0 => "TQ1_0",
            DType::TQ2_0 => "TQ2_0",
            DType::IQ3_S => "IQ3_S",
            DType::IQ3_XXS => "IQ3_XXS",
            DType::IQ2_XXS => "IQ2_XXS",
            DType::IQ2_XS => "IQ2_XS",
            DType::IQ2_S => "IQ2_S",
            DType::IQ1_S => "IQ1_S",
            DType::IQ1_M => "IQ1_M",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    pub const fn is_quantized(self) -> bool {
        self.block_size() > 1
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
