//! Scalar twins of the i-quant and ternary kernels (IQ4_NL, IQ4_XS, TQ1_0, TQ2_0) against Q8
//! activations, in the decomposition of [`super::scalar`]: per block of 32, with `x = dx · qx`,
//! - IQ4_NL, IQ4_XS (codebook levels `v`, signed): `s · dx · Σ v·qx` with `s = d`, or
//!   `d · (ls − 32)` for IQ4_XS's sub-block `ls`;
//! - TQ1_0, TQ2_0 (levels `t ∈ 0..3` around 1): `d · dx · Σ t·qx − d · dx·Σqx`;
//! - the grid types ([`crate::quant::Grid`]): per half block of 16, `s · dx · Σ l·qx` with the
//!   half's scale `s` and signed levels `l`.

use super::scalar::{ActRow, DotFn, tile_with};
use super::{Tile, TypeKernels};
use crate::act::ActKind;
use crate::quant::{
    Grid, IQ1M, IQ1S, IQ2S, IQ2XS, IQ2XXS, IQ3S, IQ3XXS, IQ4NL_VALUES, iq4xs_scale, tq1_level,
    tq2_level,
};
use half::f16;

#[inline]
fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Σ v[i]·x[i] over 32 elements whose codebook indices are the nibbles of `qs` (element `j` in
/// the low nibble of byte `j`, `j + 16` in the high one).
#[inline]
fn nl_isum(qs: &[u8], x: &[i8]) -> i32 {
    (0..16)
        .map(|j| {
            IQ4NL_VALUES[(qs[j] & 0x0f) as usize] as i32 * x[j] as i32
                + IQ4NL_VALUES[(qs[j] >> 4) as usize] as i32 * x[j + 16] as i32
        })
        .sum()
}

fn dot_iq4_nl(w: &[u8], a: &ActRow) -> f32 {
    w.chunks_exact(18)
        .zip(a.qs.chunks_exact(32))
        .zip(a.d)
        .map(|((b, x), &dx)| h(b, 0) * (dx * nl_isum(&b[2..], x) as f32))
        .sum()
}

fn dot_iq4_xs(w: &[u8], a: &ActRow) -> f32 {
    let mut sum = 0.0f32;
    for (sb, b) in w.chunks_exact(136).enumerate() {
        let d = h(b, 0);
        for j in 0..8 {
            let blk = sb * 8 + j;
            let i = nl_isum(&b[8 + 16 * j..], &a.qs[32 * blk..][..32]);
            sum += d * iq4xs_scale(b, j) as f32 * (a.d[blk] * i as f32);
        }
    }
    sum
}

/// The ternary types: levels `0..3` from `level`, offset −1, one scale `d` at byte `d_at`.
fn dot_ternary(
    w: &[u8],
    a: &ActRow,
    bb: usize,
    d_at: usize,
    level: fn(&[u8], usize) -> i32,
) -> f32 {
    let mut sum = 0.0f32;
    for (sb, b) in w.chunks_exact(bb).enumerate() {
        let d = h(b, d_at);
        for j in 0..8 {
            let blk = sb * 8 + j;
            let x = &a.qs[32 * blk..][..32];
            let i: i32 = (0..32).map(|l| level(b, 32 * j + l) * x[l] as i32).sum();
            sum += d * (a.d[blk] * i as f32) - d * a.dsum[blk];
        }
    }
    sum
}

fn dot_tq1_0(w: &[u8], a: &ActRow) -> f32 {
    dot_ternary(w, a, 54, 52, tq1_level)
}

fn dot_tq2_0(w: &[u8], a: &ActRow) -> f32 {
    dot_ternary(w, a, 66, 64, tq2_level)
}

fn dot_grid<G: Grid>(w: &[u8], a: &ActRow) -> f32 {
    let mut sum = 0.0f32;
    for (sb, b) in w.chunks_exact(G::BYTES).enumerate() {
        for h in 0..16 {
            let x = &a.qs[256 * sb + 16 * h..][..16];
            let i: i32 = G::levels(b, h)
                .iter()
                .zip(x)
                .map(|(&l, &v)| l as i32 * v as i32)
                .sum();
            sum += G::scale(b, h) * (a.d[8 * sb + h / 2] * i as f32);
        }
    }
    sum
}

macro_rules! tiles {
    ($($name:ident: $dot:expr;)*) => {
        $(
            /// # Safety
            /// As for [`super::TileFn`].
            unsafe fn $name(t: &Tile) {
                // SAFETY: forwarded contract.
                unsafe { tile_with(t, ActKind::Q8, $dot as DotFn) }
            }
        )*
    };
}

tiles! {
    tile_iq4_nl: dot_iq4_nl;
    tile_iq4_xs: dot_iq4_xs;
    tile_tq1_0: dot_tq1_0;
    tile_tq2_0: dot_tq2_0;
    tile_iq3_s: dot_grid::<IQ3S>;
    tile_iq3_xxs: dot_grid::<IQ3XXS>;
    tile_iq2_xxs: dot_grid::<IQ2XXS>;
    tile_iq2_xs: dot_grid::<IQ2XS>;
    tile_iq2_s: dot_grid::<IQ2S>;
    tile_iq1_s: dot_grid::<IQ1S>;
    tile_iq1_m: dot_grid::<IQ1M>;
}

const fn k(tile: super::TileFn) -> TypeKernels {
    TypeKernels {
        act: ActKind::Q8,
        tile,
        panel: None,
        interleaved: None,
    }
}

pub(super) const IQ4_NL: TypeKernels = k(tile_iq4_nl);
pub(super) const IQ4_XS: TypeKernels = k(tile_iq4_xs);
pub(super) const TQ1_0: TypeKernels = k(tile_tq1_0);
pub(super) const TQ2_0: TypeKernels = k(tile_tq2_0);
pub(super) const IQ3_S: TypeKernels = k(tile_iq3_s);
pub(super) const IQ3_XXS: TypeKernels = k(tile_iq3_xxs);
pub(super) const IQ2_XXS: TypeKernels = k(tile_iq2_xxs);
pub(super) const IQ2_XS: TypeKernels = k(tile_iq2_xs);
pub(super) const IQ2_S: TypeKernels = k(tile_iq2_s);
pub(super) const IQ1_S: TypeKernels = k(tile_iq1_s);
pub(super) const IQ1_M: TypeKernels = k(tile_iq1_m);
