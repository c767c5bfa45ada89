//! The grid i-quants (IQ3_S, IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M): groups of four or
//! eight weights are an index into a grid of small integer vectors (`iq_tables.rs`, generated from
//! gguf-py), with signs and a scale per 16 or 32 weights. Decoding only: their quantizers need an
//! importance matrix, which camelid does not make.
//!
//! Every type is seen through [`Grid`] as 16 halves of 16 weights, each `scale · level` with an
//! f32 scale and signed integer levels (at most 62 in magnitude). The scales are formed in the
//! order gguf-py's numpy dequantizers (`gguf.quants`) form them, so decoding is bit-exact to
//! them. Block layouts: ggml `ggml-common.h` (the `block_iq*` structs), read as gguf-py reads
//! them; see the structs in [`crate::dtype`].

// `Grid::block32` and its word tables serve the x86 tiles; other targets decode through `levels`.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::f16_at;
use super::iq_tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS,
};
use half::f16;

/// One grid type; see the module docs.
pub(crate) trait Grid {
    /// Bytes per super-block of 256.
    const BYTES: usize;
    /// The super-block's f16 scale `d`.
    #[inline]
    fn d(b: &[u8]) -> f32 {
        f16_at(b, 0)
    }
    /// The scale of weights `16h..16h + 16` of the super-block `b`, whose `d` is given.
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32;
    /// The scale of weights `16h..16h + 16` of the super-block `b`.
    #[inline]
    fn scale(b: &[u8], h: usize) -> f32 {
        Self::scale_d(Self::d(b), b, h)
    }
    /// Their signed levels.
    fn levels(b: &[u8], h: usize) -> [i8; 16];

    /// The 32 levels of block `blk` (halves `2blk`, `2blk + 1`) as bytes, eight to a word: the
    /// same values as [`Grid::levels`], by word-wide table lookups and sign flips for the SIMD
    /// paths (every type overrides it; this default is the plain one).
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (k, half) in [Self::levels(b, 2 * blk), Self::levels(b, 2 * blk + 1)]
            .iter()
            .enumerate()
        {
            for j in 0..2 {
                let bytes: [u8; 8] = std::array::from_fn(|i| half[8 * j + i] as u8);
                out[2 * k + j] = u64::from_le_bytes(bytes);
            }
        }
        out
    }
}

/// Byte `j` of entry `s` is 0xff where bit `j` of `s` is set.
static SIGN_MASKS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut s = 0;
    while s < 256 {
        let mut j = 0;
        while j < 8 {
            if s >> j & 1 == 1 {
                t[s] |= 0xff << (8 * j);
            }
            j += 1;
        }
        s += 1;
    }
    t
};

/// Eight positive levels (bytes 1..=127) negated where `signs` has a bit: two's complement per byte
/// (`!v + 1`), which cannot carry into the next byte because no level is 0.
#[inline]
fn signed8(entry: u64, signs: u8) -> u64 {
    let m = SIGN_MASKS[signs as usize];
    (entry ^ m).wrapping_add(m & 0x0101_0101_0101_0101)
}

/// Two four-value entries as one word of eight.
#[inline]
fn pair4(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

pub(crate) struct IQ2XXS;
pub(crate) struct IQ2XS;
pub(crate) struct IQ2S;
pub(crate) struct IQ3XXS;
pub(crate) struct IQ3S;
pub(crate) struct IQ1S;
pub(crate) struct IQ1M;

#[inline]
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

#[inline]
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Eight grid values with the signs of `signs` (bit `j` set: value `j` negative) into `out`.
#[inline]
fn put8(out: &mut [i8], entry: u64, signs: u8) {
    for (j, o) in out[..8].iter_mut().enumerate() {
        let v = (entry >> (8 * j)) as u8 as i8;
        *o = if signs >> j & 1 == 1 { -v } else { v };
    }
}

/// Four grid values, signed by bits `0..4` of `signs`.
#[inline]
fn put4(out: &mut [i8], entry: u32, signs: u8) {
    for (j, o) in out[..4].iter_mut().enumerate() {
        let v = (entry >> (8 * j)) as u8 as i8;
        *o = if signs >> j & 1 == 1 { -v } else { v };
    }
}

/// `d · (0.5 + ls) · factor` in gguf-py's order (IQ2_*: factor 1/4; IQ3_XXS: 1/2).
#[inline]
fn half_step(d: f32, ls: u32, factor: f32) -> f32 {
    d * (0.5 + ls as f32) * factor
}

/// IQ2_XXS: per sub-block of 32, two words at `2 + 8ib`: the first holds the grid indices of its
/// four groups of eight (one byte each), the second four 7-bit sign indices (into [`KSIGNS`]) and
/// a 4-bit scale at bit 28: `d · (0.5 + ls) / 4`.
impl Grid for IQ2XXS {
    const BYTES: usize = 66;
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        half_step(d, u32_at(b, 2 + 8 * (h / 2) + 4) >> 28, 0.25)
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let ib = h / 2;
        let aux = u32_at(b, 2 + 8 * ib + 4);
        let mut out = [0i8; 16];
        for k in 0..2 {
            let l = 2 * (h % 2) + k;
            let idx = b[2 + 8 * ib + l] as usize;
            let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
            put8(&mut out[8 * k..], IQ2XXS_GRID[idx], signs);
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        let aux = u32_at(b, 2 + 8 * blk + 4);
        std::array::from_fn(|l| {
            let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
            signed8(IQ2XXS_GRID[b[2 + 8 * blk + l] as usize], signs)
        })
    }
}

/// IQ2_XS: per group of eight, a u16 at `2 + 2g`: a 9-bit grid index and a 7-bit sign index;
/// 4-bit scales per 16 in the nibbles of the 8 bytes at 66 (low nibble first).
impl Grid for IQ2XS {
    const BYTES: usize = 74;
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        let ls = (b[66 + h / 2] >> (4 * (h % 2))) & 0x0f;
        half_step(d, ls as u32, 0.25)
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let mut out = [0i8; 16];
        for k in 0..2 {
            let q = u16_at(b, 2 + 2 * (2 * h + k));
            put8(
                &mut out[8 * k..],
                IQ2XS_GRID[(q & 511) as usize],
                KSIGNS[(q >> 9) as usize],
            );
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        std::array::from_fn(|l| {
            let q = u16_at(b, 2 + 2 * (4 * blk + l));
            signed8(IQ2XS_GRID[(q & 511) as usize], KSIGNS[(q >> 9) as usize])
        })
    }
}

/// IQ2_S: 32 low index bytes at 2, 32 sign bytes at 34 (one per group of eight, bit `j` for value
/// `j`), the two high index bits of group `g` at bit `2 · (g % 4)` of byte `66 + g / 4`, 4-bit
/// scales per 16 at 74.
impl Grid for IQ2S {
    const BYTES: usize = 82;
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        let ls = (b[74 + h / 2] >> (4 * (h % 2))) & 0x0f;
        half_step(d, ls as u32, 0.25)
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let mut out = [0i8; 16];
        for k in 0..2 {
            let g = 2 * h + k;
            let hi = (b[66 + g / 4] >> (2 * (g % 4))) & 3;
            let idx = b[2 + g] as usize | (hi as usize) << 8;
            put8(&mut out[8 * k..], IQ2S_GRID[idx], b[34 + g]);
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        let qh = b[66 + blk];
        std::array::from_fn(|l| {
            let g = 4 * blk + l;
            let idx = b[2 + g] as usize | (((qh >> (2 * l)) & 3) as usize) << 8;
            signed8(IQ2S_GRID[idx], b[34 + g])
        })
    }
}

/// IQ3_XXS: 64 grid indices at 2 (four values each), then per sub-block of 32 a word at
/// `66 + 4ib`: four 7-bit sign indices and a 4-bit scale at bit 28: `d · (0.5 + ls) / 2`.
impl Grid for IQ3XXS {
    const BYTES: usize = 98;
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        half_step(d, u32_at(b, 66 + 4 * (h / 2)) >> 28, 0.5)
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let aux = u32_at(b, 66 + 4 * (h / 2));
        let mut out = [0i8; 16];
        for k in 0..2 {
            let l = 2 * (h % 2) + k;
            let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
            let g = 2 * h + k;
            put4(&mut out[8 * k..], IQ3XXS_GRID[b[2 + 2 * g] as usize], signs);
            put4(
                &mut out[8 * k + 4..],
                IQ3XXS_GRID[b[3 + 2 * g] as usize],
                signs >> 4,
            );
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        let aux = u32_at(b, 66 + 4 * blk);
        std::array::from_fn(|l| {
            let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
            let at = 2 + 8 * blk + 2 * l;
            let e = pair4(IQ3XXS_GRID[b[at] as usize], IQ3XXS_GRID[b[at + 1] as usize]);
            signed8(e, signs)
        })
    }
}

/// IQ3_S: 64 low index bytes at 2 (four values each), their high bits at 66 (bit `k % 8` of byte
/// `k / 8`), 32 sign bytes at 74, 4-bit scales per 32 at 106: `d · (1 + 2 · ls)`.
impl Grid for IQ3S {
    const BYTES: usize = 110;
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        let ls = (b[106 + h / 4] >> (4 * ((h / 2) % 2))) & 0x0f;
        d * (1 + 2 * ls) as f32
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let mut out = [0i8; 16];
        for k in 0..4 {
            let i = 4 * h + k;
            let idx = b[2 + i] as usize | (((b[66 + i / 8] >> (i % 8)) & 1) as usize) << 8;
            let signs = b[74 + i / 2] >> (4 * (i % 2));
            put4(&mut out[4 * k..], IQ3S_GRID[idx], signs);
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        let qh = b[66 + blk];
        let idx = |i: usize| b[2 + 8 * blk + i] as usize | (((qh >> i) & 1) as usize) << 8;
        std::array::from_fn(|l| {
            let e = pair4(IQ3S_GRID[idx(2 * l)], IQ3S_GRID[idx(2 * l + 1)]);
            signed8(e, b[74 + 4 * blk + l])
        })
    }
}

/// [`IQ1S_GRID`] as levels `8 · g + delta` (bytes), for `delta = +1` (index 0) and `−1`: built
/// at compile time from the grid, for [`Grid::block32`].
static IQ1_LEVELS: [[u64; 2048]; 2] = [iq1_levels(1), iq1_levels(-1)];

const fn iq1_levels(delta: i8) -> [u64; 2048] {
    let mut t = [0u64; 2048];
    let mut k = 0;
    while k < 2048 {
        let mut j = 0;
        while j < 8 {
            let g = (IQ1S_GRID[k] >> (8 * j)) as u8 as i8;
            t[k] |= ((8 * g + delta) as u8 as u64) << (8 * j);
            j += 1;
        }
        k += 1;
    }
    t
}

/// IQ1_S and IQ1_M levels: grid values `−1, 0, 1` shifted by `±1/8` (the sign of `delta`), as
/// integers eight times larger, so the scale carries the `1/8`.
#[inline]
fn iq1_put8(out: &mut [i8], idx: usize, minus: bool) {
    let delta = if minus { -1 } else { 1 };
    for (j, o) in out[..8].iter_mut().enumerate() {
        *o = 8 * ((IQ1S_GRID[idx] >> (8 * j)) as u8 as i8) + delta;
    }
}

/// IQ1_S: 32 low index bytes at 2; per sub-block of 32 a u16 at `34 + 2ib` with the three high
/// index bits of its four groups (bits `3l..3l + 3`), a 3-bit scale at bit 12 (`d · (2ls + 1)`)
/// and the sign of `delta` at bit 15. `x = dl · (grid + delta)`, `delta = ±1/8`.
impl Grid for IQ1S {
    const BYTES: usize = 50;
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        let qh = u16_at(b, 34 + 2 * (h / 2));
        d * (2 * ((qh >> 12) & 7) + 1) as f32 * 0.125
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let qh = u16_at(b, 34 + 2 * (h / 2));
        let mut out = [0i8; 16];
        for k in 0..2 {
            let l = 2 * (h % 2) + k;
            let idx = b[2 + 2 * h + k] as usize | (((qh >> (3 * l)) & 7) as usize) << 8;
            iq1_put8(&mut out[8 * k..], idx, qh & 0x8000 != 0);
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        let qh = u16_at(b, 34 + 2 * blk);
        let levels = &IQ1_LEVELS[(qh >> 15) as usize];
        std::array::from_fn(|l| {
            levels[b[2 + 4 * blk + l] as usize | (((qh >> (3 * l)) & 7) as usize) << 8]
        })
    }
}

/// IQ1_M: 32 low index bytes at 0; at `32 + g / 2` a nibble per group of eight (low for even
/// `g`): three high index bits and the sign of `delta` (bit 3); four u16 at 48 holding 3-bit
/// scales per 16 (scale `h` at bit `3 · (h % 4)` of word `h / 4`, `d · (2ls + 1)`) and, in their
/// top nibbles, the f16 `d` (word `k` gives bits `4k..4k + 4`).
impl Grid for IQ1M {
    const BYTES: usize = 56;
    fn d(b: &[u8]) -> f32 {
        let bits = (0..4).fold(0u16, |acc, k| {
            acc | (u16_at(b, 48 + 2 * k) >> 12) << (4 * k)
        });
        f16::from_bits(bits).to_f32()
    }
    fn scale_d(d: f32, b: &[u8], h: usize) -> f32 {
        let ls = (u16_at(b, 48 + 2 * (h / 4)) >> (3 * (h % 4))) & 7;
        d * (2 * ls + 1) as f32 * 0.125
    }
    fn levels(b: &[u8], h: usize) -> [i8; 16] {
        let mut out = [0i8; 16];
        for k in 0..2 {
            let g = 2 * h + k;
            let nib = (b[32 + g / 2] >> (4 * (g % 2))) & 0x0f;
            let idx = b[g] as usize | ((nib & 7) as usize) << 8;
            iq1_put8(&mut out[8 * k..], idx, nib & 8 != 0);
        }
        out
    }
    #[inline]
    fn block32(b: &[u8], blk: usize) -> [u64; 4] {
        std::array::from_fn(|l| {
            let g = 4 * blk + l;
            let nib = (b[32 + g / 2] >> (4 * (g % 2))) & 0x0f;
            IQ1_LEVELS[(nib >> 3) as usize][b[g] as usize | ((nib & 7) as usize) << 8]
        })
    }
}

/// Decodes one super-block of a grid type.
pub(super) fn dequant<G: Grid>(b: &[u8], out: &mut [f32]) {
    let d = G::d(b);
    for (h, o) in out.chunks_exact_mut(16).enumerate() {
        let s = G::scale_d(d, b, h);
        for (v, l) in o.iter_mut().zip(G::levels(b, h)) {
            *v = s * l as f32;
        }
    }
}
