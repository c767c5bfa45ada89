//! The tensor element types a GGUF file may name.
//!
//! Ids, block sizes (elements per block) and type sizes (bytes per block) follow ggml's
//! `enum ggml_type` in `ggml/include/ggml.h` and the block layouts with their `static_assert`ed
//! sizes in `ggml/src/ggml-common.h`. Ids 4, 5 and 31..=33, 36..=38 were removed from ggml and
//! are rejected like any unknown id.

use std::fmt;

macro_rules! ggml_types {
    ($( $variant:ident = $id:literal, $block:literal, $size:literal; )*) => {
        /// A tensor element type, by its ggml id. See the module docs for the source of the table.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum GgmlType {
            $( $variant, )*
        }

        impl GgmlType {
            /// Every type ggml defines, in id order.
            pub const ALL: &'static [GgmlType] = &[$( GgmlType::$variant, )*];

            /// The type with ggml id `id`, or `None` for ids ggml does not (or no longer) define.
            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $( $id => Some(GgmlType::$variant), )*
                    _ => None,
                }
            }

            /// The ggml id, as stored in a GGUF tensor info.
            pub fn id(self) -> u32 {
                match self { $( GgmlType::$variant => $id, )* }
            }

            /// The name as ggml's Python package spells it, e.g. `"Q4_0"`, `"Q6_K"`, `"BF16"`.
            pub fn name(self) -> &'static str {
                match self { $( GgmlType::$variant => stringify!($variant), )* }
            }

            /// Elements per block (1 for the plain types).
            pub fn block_size(self) -> usize {
                match self { $( GgmlType::$variant => $block, )* }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self { $( GgmlType::$variant => $size, )* }
            }
        }
    };
}

// name = id, elements per block, bytes per block (ggml-common.h).
ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;      // f16 d + 16 bytes of nibbles
    Q4_1 = 3, 32, 20;      // f16 d, f16 m + 16
    Q5_0 = 6, 32, 22;      // f16 d + u32 high bits + 16
    Q5_1 = 7, 32, 24;      // f16 d, f16 m + u32 + 16
    Q8_0 = 8, 32, 34;      // f16 d + 32 i8
    Q8_1 = 9, 32, 36;      // f16 d, f16 s + 32 i8
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;   // f32 d + 256 i8 + 16 i16 sums
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;    // e8m0 scale + 16 bytes of e2m1 nibbles
    NVFP4 = 40, 64, 36;    // 4 ue4m3 scales + 32 bytes of e2m1 nibbles
    Q1_0 = 41, 128, 18;    // f16 d + 16 bytes of sign bits
    Q2_0 = 42, 64, 18;     // f16 d + 16 bytes of 2-bit codes
}

impl GgmlType {
    /// Bytes taken by a row of `n` elements, or `None` when `n` is not a whole number of
    /// blocks (ggml cannot store such a row) or the size overflows `u64`.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if n % block != 0 {
            return None;
        }
        (n / block).checked_mul(self.type_size() as u64)
    }

    /// Whether the type stores blocks of quantized values (as opposed to plain numbers).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
        }
    }

    #[test]
    fn row_bytes_needs_whole_blocks() {
        assert_eq!(GgmlType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(GgmlType::Q4_0.row_bytes(65), None);
        assert_eq!(GgmlType::Q6_K.row_bytes(512), Some(420));
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
        assert_eq!(GgmlType::F32.row_bytes(3), Some(12));
    }
}
