//! Scalar reference kernels: plain Rust over slices, the twins every SIMD path is tested against.
//!
//! Quantized weights meet quantized activations (see [`crate::act`]) block by block: integer sums
//! of products first, then the block scales in f32, following the decomposition of ggml's
//! `ggml_vec_dot_*_generic` (ggml `src/ggml-cpu/quants.c`): with `x = dx · qx`,
//! - Q8_0: `Σ_b dw · dx · Σ qw·qx`
//! - Q4_0 / Q5_0 (levels offset by 8 / 16): `Σ_b dw · (dx · Σ q·qx − 8 · dx·Σqx)`
//! - Q4_1 / Q5_1 (minimum `m`): `Σ_b dw · dx · Σ q·qx + m · dx·Σqx`
//! - k-quants: per sub-block of 32 (Q4_K, Q5_K) or 16 (Q2_K, Q3_K, Q6_K) the type-1 form
//!   `s · q + o` (`s = d · sc`, `o` the minimum or the level offset), then as Q4_1 with the
//!   activation sums per 32 or 16.

use super::{ActPtr, NT, Table, Tile, TypeKernels};
use crate::act::{ActKind, bf16_stride, quantize_bf16_scalar, quantize_q8_scalar};
use crate::dtype::{kscale, q3k_scales};
use half::{bf16, f16};

/// One activation row as slices.
#[derive(Clone, Copy)]
pub struct ActRow<'a> {
    pub f32s: &'a [f32],
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub dsum: &'a [f32],
    pub dsum16: &'a [f32],
    /// Bf16: `bf16_stride(cols)` elements, the padding zero.
    pub bf16s: &'a [u16],
}

/// Row `t` of a tile's activations.
///
/// # Safety
/// As for [`super::TileFn`]: the pointers of `kind` hold at least `t + 1` rows of `cols`.
pub unsafe fn act_row<'a>(a: &ActPtr, kind: ActKind, cols: usize, t: usize) -> ActRow<'a> {
    // SAFETY: the caller guarantees the buffers of `kind` hold row `t`; the others are unused.
    unsafe {
        match kind {
            ActKind::F32 => ActRow {
                f32s: std::slice::from_raw_parts(a.f32s.add(t * cols), cols),
                ..ActRow::EMPTY
            },
            ActKind::Bf16 => {
                let stride = bf16_stride(cols);
                ActRow {
                    bf16s: std::slice::from_raw_parts(a.bf16s.add(t * stride), stride),
                    ..ActRow::EMPTY
                }
            }
            ActKind::Q8 => ActRow {
                qs: std::slice::from_raw_parts(a.qs.add(t * cols), cols),
                d: std::slice::from_raw_parts(a.d.add(t * cols / 32), cols / 32),
                dsum: std::slice::from_raw_parts(a.dsum.add(t * cols / 32), cols / 32),
                dsum16: std::slice::from_raw_parts(a.dsum16.add(t * cols / 16), cols / 16),
                ..ActRow::EMPTY
            },
        }
    }
}

impl ActRow<'_> {
    const EMPTY: ActRow<'static> = ActRow {
        f32s: &[],
        qs: &[],
        d: &[],
        dsum: &[],
        dsum16: &[],
        bf16s: &[],
    };
}

pub(super) type DotFn = fn(&[u8], &ActRow) -> f32;

/// Runs `dot` over every (row, activation) pair of a tile.
///
/// # Safety
/// As for [`super::TileFn`].
#[inline(always)]
pub(super) unsafe fn tile_with(t: &Tile, kind: ActKind, dot: DotFn) {
    debug_assert!(t.nt <= NT);
    for r in 0..t.nr {
        // SAFETY: row `r < nr` of `row_bytes` bytes lies inside the weights (caller's contract).
        let w = unsafe { std::slice::from_raw_parts(t.w.add(r * t.row_bytes), t.row_bytes) };
        for i in 0..t.nt {
            // SAFETY: activation row `i < nt` exists and `out[i · ldo + r]` is writable.
            unsafe {
                let a = act_row(&t.act, kind, t.cols, i);
                *t.out.add(i * t.ldo + r) = dot(w, &a);
            }
        }
    }
}

macro_rules! tiles {
    ($($name:ident: $kind:ident, $dot:ident;)*) => {
        $(
            /// # Safety
            /// As for [`super::TileFn`].
            pub(crate) unsafe fn $name(t: &Tile) {
                // SAFETY: forwarded contract.
                unsafe { tile_with(t, ActKind::$kind, $dot) }
            }
        )*
    };
}

tiles! {
    tile_f32: F32, dot_f32_w;
    tile_f16: F32, dot_f16;
    tile_bf16: F32, dot_bf16;
    tile_bf16_bf16: Bf16, dot_bf16_bf16;
    tile_q8_0: Q8, dot_q8_0;
    tile_q4_0: Q8, dot_q4_0;
    tile_q4_1: Q8, dot_q4_1;
    tile_q5_0: Q8, dot_q5_0;
    tile_q5_1: Q8, dot_q5_1;
    tile_q2_k: Q8, dot_q2_k;
    tile_q3_k: Q8, dot_q3_k;
    tile_q4_k: Q8, dot_q4_k;
    tile_q5_k: Q8, dot_q5_k;
    tile_q6_k: Q8, dot_q6_k;
}

const fn k(act: ActKind, tile: super::TileFn) -> TypeKernels {
    TypeKernels {
        act,
        tile,
        panel: None,
        interleaved: None,
    }
}

/// Prompt-pass twins of the SIMD panels (the same sums as the tiles).
const fn kp(tile: super::TileFn, panel: super::PanelFn) -> TypeKernels {
    TypeKernels {
        act: ActKind::Q8,
        tile,
        panel: Some(super::Panel::new(panel, ActKind::Q8, 8)),
        interleaved: None,
    }
}

/// The scalar kernels of every type, indexed by [`super::type_index`]; the paths without a
/// kernel of their own for a type take its entry from here.
pub(super) const TYPES: [TypeKernels; crate::dtype::DType::ALL.len()] = [
    k(ActKind::F32, tile_f32),
    k(ActKind::F32, tile_f16),
    k(ActKind::Bf16, tile_bf16_bf16),
    k(ActKind::Q8, tile_q8_0),
    k(ActKind::Q8, tile_q4_0),
    k(ActKind::Q8, tile_q4_1),
    k(ActKind::Q8, tile_q5_0),
    k(ActKind::Q8, tile_q5_1),
    kp(tile_q2_k, panel_q2_k),
    kp(tile_q3_k, panel_q3_k),
    kp(tile_q4_k, panel_q4_k),
    kp(tile_q5_k, panel_q5_k),
    kp(tile_q6_k, panel_q6_k),
    super::scalar_iq::IQ4_NL,
    super::scalar_iq::IQ4_XS,
    super::scalar_iq::TQ1_0,
    super::scalar_iq::TQ2_0,
    super::scalar_iq::IQ3_S,
    super::scalar_iq::IQ3_XXS,
    super::scalar_iq::IQ2_XXS,
    super::scalar_iq::IQ2_XS,
    super::scalar_iq::IQ2_S,
    super::scalar_iq::IQ1_S,
    super::scalar_iq::IQ1_M,
];

pub static TABLE: Table = Table {
    isa: crate::isa::Isa::Scalar,
    types: TYPES,
    bf16_exact: k(ActKind::F32, tile_bf16),
    quant_q8: quantize_q8_scalar,
    quant_bf16: quantize_bf16_scalar,
};

// ---------------------------------------------------------------------------------------------
// Float weights against f32 activations: exact products, eight running sums.

fn dot_floats(w: &[u8], x: &[f32], width: usize, get: impl Fn(&[u8]) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    for (wc, xc) in w.chunks_exact(8 * width).zip(x.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += get(&wc[k * width..]) * xc[k];
        }
    }
    let done = x.len() / 8 * 8;
    let mut tail = 0.0f32;
    for (i, &xv) in x.iter().enumerate().skip(done) {
        tail += get(&w[i * width..]) * xv;
    }
    acc.iter().sum::<f32>() + tail
}

fn dot_f32_w(w: &[u8], a: &ActRow) -> f32 {
    dot_floats(w, a.f32s, 4, |b| {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    })
}

fn dot_f16(w: &[u8], a: &ActRow) -> f32 {
    dot_floats(w, a.f32s, 2, |b| f16::from_le_bytes([b[0], b[1]]).to_f32())
}

fn dot_bf16(w: &[u8], a: &ActRow) -> f32 {
    dot_floats(w, a.f32s, 2, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
}

// ---------------------------------------------------------------------------------------------
// BF16 weights against bf16 activations (the fast precision).

/// A bf16 as f32 as `vdpbf16ps` reads it: subnormals are zero (DAZ).
#[inline]
fn bf16_in(h: u16) -> f32 {
    let b = (h as u32) << 16;
    if b & 0x7f80_0000 == 0 {
        f32::from_bits(b & 0x8000_0000)
    } else {
        f32::from_bits(b)
    }
}

/// `s + w · x` rounded to f32 (the product of two bf16 is exact in f32), a subnormal result
/// flushed to zero (FTZ), as each step of `vdpbf16ps`.
#[inline]
fn bf16_step(s: f32, w: u16, x: u16) -> f32 {
    let v = s + bf16_in(w) * bf16_in(x);
    if v.is_subnormal() {
        f32::from_bits(v.to_bits() & 0x8000_0000)
    } else {
        v
    }
}

/// The arithmetic of BF16 weights against bf16 activations, the twin of every SIMD path's.
/// Sixteen f32 lanes; the row is taken 32 columns at a time (the last chunk padded with zeros)
/// and lane `j` adds the products of columns `2j + 1`, then `2j`, of each chunk, one rounding
/// each: what one `vdpbf16ps` does (Intel SDM, "VDPBF16PS": the odd element first; checked bit
/// for bit on Zen 4 over 3.2 M random lanes). The lanes are then summed as a tree, halves
/// first: `((l[j] + l[j+8]) + (… + l[j+4])) …` down to one value (`x86::bf16::reduce16`).
/// The AVX2 path does each step with an FMA instead, which differs only when a weight is
/// subnormal or a partial sum underflows (no DAZ/FTZ there).
fn dot_bf16_bf16(w: &[u8], a: &ActRow) -> f32 {
    let x = a.bf16s;
    let cols = w.len() / 2;
    let wh = |c: usize| {
        if c < cols {
            u16::from_le_bytes([w[2 * c], w[2 * c + 1]])
        } else {
            0
        }
    };
    let mut lane = [0.0f32; 16];
    for k in (0..x.len()).step_by(32) {
        for (j, l) in lane.iter_mut().enumerate() {
            let (c0, c1) = (k + 2 * j, k + 2 * j + 1);
            *l = bf16_step(*l, wh(c1), x[c1]);
            *l = bf16_step(*l, wh(c0), x[c0]);
        }
    }
    reduce16(lane)
}

/// The tree sum of sixteen lanes that the SIMD paths do with shuffles.
pub fn reduce16(l: [f32; 16]) -> f32 {
    let l8: [f32; 8] = std::array::from_fn(|j| l[j] + l[j + 8]);
    let l4: [f32; 4] = std::array::from_fn(|j| l8[j] + l8[j + 4]);
    (l4[0] + l4[2]) + (l4[1] + l4[3])
}

// ---------------------------------------------------------------------------------------------
// 32-element formats against Q8 activations.

#[inline]
fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Σ q[i]·x[i] over one block, `q` given by `level(i)`.
#[inline]
fn isum(x: &[i8], level: impl Fn(usize) -> i32) -> i32 {
    x.iter()
        .enumerate()
        .map(|(i, &v)| level(i) * v as i32)
        .sum()
}

#[inline]
fn nibble(qs: &[u8], i: usize) -> i32 {
    if i < 16 {
        (qs[i] & 0x0f) as i32
    } else {
        (qs[i - 16] >> 4) as i32
    }
}

#[inline]
fn q5_level(qh: &[u8], qs: &[u8], i: usize) -> i32 {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    nibble(qs, i) | ((((h >> i) & 1) as i32) << 4)
}

fn blocks<'a>(
    w: &'a [u8],
    a: &'a ActRow,
    bb: usize,
) -> impl Iterator<Item = (&'a [u8], &'a [i8], f32, f32)> {
    w.chunks_exact(bb)
        .zip(a.qs.chunks_exact(32))
        .zip(a.d.iter().zip(a.dsum))
        .map(|((b, x), (&d, &s))| (b, x, d, s))
}

fn dot_q8_0(w: &[u8], a: &ActRow) -> f32 {
    blocks(w, a, 34)
        .map(|(b, x, dx, _)| h(b, 0) * (dx * isum(x, |i| b[2 + i] as i8 as i32) as f32))
        .sum()
}

fn dot_q4_0(w: &[u8], a: &ActRow) -> f32 {
    blocks(w, a, 18)
        .map(|(b, x, dx, s)| h(b, 0) * (dx * isum(x, |i| nibble(&b[2..], i)) as f32 - 8.0 * s))
        .sum()
}

fn dot_q4_1(w: &[u8], a: &ActRow) -> f32 {
    blocks(w, a, 20)
        .map(|(b, x, dx, s)| h(b, 0) * (dx * isum(x, |i| nibble(&b[4..], i)) as f32) + h(b, 2) * s)
        .sum()
}

fn dot_q5_0(w: &[u8], a: &ActRow) -> f32 {
    blocks(w, a, 22)
        .map(|(b, x, dx, s)| {
            let i = isum(x, |i| q5_level(&b[2..6], &b[6..22], i));
            h(b, 0) * (dx * i as f32 - 16.0 * s)
        })
        .sum()
}

fn dot_q5_1(w: &[u8], a: &ActRow) -> f32 {
    blocks(w, a, 24)
        .map(|(b, x, dx, s)| {
            let i = isum(x, |i| q5_level(&b[4..8], &b[8..24], i));
            h(b, 0) * (dx * i as f32) + h(b, 2) * s
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// k-quants against Q8 activations.

/// Q4_K and Q5_K against Q8 activations: per sub-block of 32 the type-1 form `s · q + o` with
/// `s = d · sc`, `o = −dmin · m`, then as Q4_1.
fn dot_k_type1_q8(w: &[u8], a: &ActRow, bb: usize, level: impl Fn(&[u8], usize) -> i32) -> f32 {
    let mut sum = 0.0f32;
    for (sb, b) in w.chunks_exact(bb).enumerate() {
        let (d, dmin) = (h(b, 0), h(b, 2));
        for j in 0..8 {
            let blk = sb * 8 + j;
            let (sc, m) = kscale(&b[4..16], j);
            let i = isum(&a.qs[32 * blk..][..32], |l| level(b, 32 * j + l));
            sum += d * sc as f32 * (a.d[blk] * i as f32) - dmin * m as f32 * a.dsum[blk];
        }
    }
    sum
}

/// Q2_K, Q3_K and Q6_K against Q8 activations: per sub-block of 16 the type-1 form
/// `s · q + o` given by `subs`, with the activation sums per 16.
fn dot_k16_q8(
    w: &[u8],
    a: &ActRow,
    bb: usize,
    level: impl Fn(&[u8], usize) -> i32,
    subs: impl Fn(&[u8]) -> [(f32, f32); 16],
) -> f32 {
    let mut sum = 0.0f32;
    for (sb, b) in w.chunks_exact(bb).enumerate() {
        for (j, (sv, ov)) in subs(b).into_iter().enumerate() {
            let half = sb * 16 + j;
            let i = isum(&a.qs[16 * half..][..16], |l| level(b, 16 * j + l));
            sum += sv * (a.d[half / 2] * i as f32) + ov * a.dsum16[half];
        }
    }
    sum
}

fn q2k_level(b: &[u8], e: usize) -> i32 {
    ((b[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) as i32
}

/// Q3_K levels with the offset 4 left in (`0..8`); `subs` takes it off.
fn q3k_level(b: &[u8], e: usize) -> i32 {
    let low = (b[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    let high = (b[e % 32] >> (4 * (e / 128) + (e % 128) / 32)) & 1;
    (low + 4 * high) as i32
}

/// Q6_K levels with the offset 32 left in (`0..64`).
fn q6k_level(b: &[u8], e: usize) -> i32 {
    let (hh, r) = (e / 128, e % 128);
    let ql = b[64 * hh + r % 64];
    let lo = if r < 64 { ql & 0x0f } else { ql >> 4 };
    let hi = (b[128 + 32 * hh + r % 32] >> (2 * (r / 32))) & 3;
    (lo | (hi << 4)) as i32
}

pub(super) fn q2k_subs(b: &[u8]) -> [(f32, f32); 16] {
    let (d, dmin) = (h(b, 80), h(b, 82));
    std::array::from_fn(|j| (d * (b[j] & 0x0f) as f32, -dmin * (b[j] >> 4) as f32))
}

pub(super) fn q3k_subs(b: &[u8]) -> [(f32, f32); 16] {
    let d = h(b, 108);
    let sc = q3k_scales(&b[96..108]);
    std::array::from_fn(|j| {
        let s = d * sc[j] as f32;
        (s, -4.0 * s)
    })
}

pub(super) fn q6k_subs(b: &[u8]) -> [(f32, f32); 16] {
    let d = h(b, 208);
    std::array::from_fn(|j| {
        let s = d * (b[192 + j] as i8) as f32;
        (s, -32.0 * s)
    })
}

/// # Safety
/// As for [`super::PanelFn`].
unsafe fn panel_q2_k(job: &super::PanelJob, _: &mut super::PanelBuf) {
    // SAFETY: forwarded.
    unsafe { panel_with(job, dot_q2_k) }
}

/// # Safety
/// As for [`super::PanelFn`].
unsafe fn panel_q3_k(job: &super::PanelJob, _: &mut super::PanelBuf) {
    // SAFETY: forwarded.
    unsafe { panel_with(job, dot_q3_k) }
}

/// # Safety
/// As for [`super::PanelFn`].
unsafe fn panel_q6_k(job: &super::PanelJob, _: &mut super::PanelBuf) {
    // SAFETY: forwarded.
    unsafe { panel_with(job, dot_q6_k) }
}

fn q4k_level(b: &[u8], e: usize) -> i32 {
    let q = b[16 + 32 * (e / 64) + e % 32];
    (if (e / 32).is_multiple_of(2) {
        q & 0x0f
    } else {
        q >> 4
    }) as i32
}

fn q5k_level(b: &[u8], e: usize) -> i32 {
    let q = b[48 + 32 * (e / 64) + e % 32];
    let lo = if (e / 32).is_multiple_of(2) {
        q & 0x0f
    } else {
        q >> 4
    };
    (lo | (((b[16 + e % 32] >> (e / 32)) & 1) << 4)) as i32
}

/// The job's rows against all its activation rows (the panel contract) with `dot`.
///
/// # Safety
/// As for [`super::PanelFn`].
unsafe fn panel_with(job: &super::PanelJob, dot: DotFn) {
    for r in 0..job.nr {
        // SAFETY: the job holds `nr` rows, `n` Q8 activation rows, and writable outputs.
        unsafe {
            let w = std::slice::from_raw_parts(job.w.add(r * job.row_bytes), job.row_bytes);
            for t in 0..job.n {
                let a = act_row(&job.act, ActKind::Q8, job.cols, t);
                *job.out.add(t * job.ldo + r) = dot(w, &a);
            }
        }
    }
}

/// # Safety
/// As for [`super::PanelFn`].
unsafe fn panel_q4_k(job: &super::PanelJob, _: &mut super::PanelBuf) {
    // SAFETY: forwarded.
    unsafe { panel_with(job, dot_q4_k) }
}

/// # Safety
/// As for [`super::PanelFn`].
unsafe fn panel_q5_k(job: &super::PanelJob, _: &mut super::PanelBuf) {
    // SAFETY: forwarded.
    unsafe { panel_with(job, dot_q5_k) }
}

fn dot_q2_k(w: &[u8], a: &ActRow) -> f32 {
    dot_k16_q8(w, a, 84, q2k_level, q2k_subs)
}

fn dot_q3_k(w: &[u8], a: &ActRow) -> f32 {
    dot_k16_q8(w, a, 110, q3k_level, q3k_subs)
}

fn dot_q4_k(w: &[u8], a: &ActRow) -> f32 {
    dot_k_type1_q8(w, a, 144, q4k_level)
}

fn dot_q5_k(w: &[u8], a: &ActRow) -> f32 {
    dot_k_type1_q8(w, a, 176, q5k_level)
}

fn dot_q6_k(w: &[u8], a: &ActRow) -> f32 {
    dot_k16_q8(w, a, 210, q6k_level, q6k_subs)
}
