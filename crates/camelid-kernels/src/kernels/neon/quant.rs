//! Quantized weights against Q8 activations, in the integer arithmetic of the scalar twins
//! (`kernels::scalar`): per block of 32 (or sub-block of 16) the integer sum of levels times
//! activations, unsigned levels with their offset left in; the scales in f32 per lane, and the
//! offset or minimum terms (`o · dx·Σx`) summed apart and added at the end.

use std::arch::aarch64::*;

use super::{dot16, entry};
use crate::dtype::kscale;
use crate::kernels::{Tile, f16_table, scalar};

/// Levels as 32 bytes, elements `0..16` and `16..32`.
type Levels = (int8x16_t, int8x16_t);

/// The f16 at `p`.
///
/// # Safety
/// Two readable bytes at `p`.
#[inline(always)]
unsafe fn half(p: *const u8, f16: &[f32; 65536]) -> f32 {
    // SAFETY: caller's contract.
    f16[unsafe { (p as *const u16).read_unaligned() } as usize]
}

/// 16 bytes at `p`.
///
/// # Safety
/// 16 readable bytes.
#[inline(always)]
unsafe fn load(p: *const u8) -> uint8x16_t {
    // SAFETY: caller's contract; `vld1q_u8` needs no alignment.
    unsafe { vld1q_u8(p) }
}

/// Each byte of `v` shifted right by `k` and masked with `m`.
#[inline(always)]
fn bits(v: uint8x16_t, k: usize, m: u8) -> uint8x16_t {
    // SAFETY: NEON is part of the aarch64 base ISA.
    unsafe { vandq_u8(vshlq_u8(v, vdupq_n_s8(-(k as i8))), vdupq_n_u8(m)) }
}

#[inline(always)]
fn s8(v: uint8x16_t) -> int8x16_t {
    // SAFETY: NEON is part of the aarch64 base ISA.
    unsafe { vreinterpretq_s8_u8(v) }
}

/// Low nibbles of the 16 bytes at `p` as elements `0..16`, high nibbles as `16..32`.
///
/// # Safety
/// 16 readable bytes.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: caller's contract.
    unsafe {
        let q = load(p);
        (vandq_u8(q, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(q))
    }
}

/// Byte `i` = 0x10 where bit `i` of the little-endian u32 at `p` is set (Q5's fifth bits).
///
/// # Safety
/// Four readable bytes.
#[inline(always)]
unsafe fn fifth_bits(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: caller's contract.
    unsafe {
        let h = vreinterpretq_u8_u32(vdupq_n_u32((p as *const u32).read_unaligned().to_le()));
        // Byte k of `h` spread over bytes 8k..8k + 8, then one bit tested per byte.
        let lo = vqtbl1q_u8(h, vcombine_u8(vdup_n_u8(0), vdup_n_u8(1)));
        let hi = vqtbl1q_u8(h, vcombine_u8(vdup_n_u8(2), vdup_n_u8(3)));
        let sel = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        let ten = vdupq_n_u8(0x10);
        (
            vandq_u8(vtstq_u8(lo, sel), ten),
            vandq_u8(vtstq_u8(hi, sel), ten),
        )
    }
}

/// One 32-element weight format.
trait Block32 {
    /// Bytes per block.
    const BYTES: usize;
    /// Level offset of the type-0 formats: −8 (Q4_0), −16 (Q5_0), 0 (Q8_0, signed values).
    /// Type-1 formats (a minimum after the scale) have none.
    const OFFSET: Option<f32>;
    /// The block's levels (Q8_0: its signed values).
    ///
    /// # Safety
    /// `p` points to a whole block.
    unsafe fn levels(p: *const u8) -> Levels;
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Block32 for Q8_0 {
    const BYTES: usize = 34;
    const OFFSET: Option<f32> = Some(0.0);
    #[inline(always)]
    unsafe fn levels(p: *const u8) -> Levels {
        // SAFETY: 32 values after the scale.
        unsafe { (s8(load(p.add(2))), s8(load(p.add(18)))) }
    }
}

impl Block32 for Q4_0 {
    const BYTES: usize = 18;
    const OFFSET: Option<f32> = Some(-8.0);
    #[inline(always)]
    unsafe fn levels(p: *const u8) -> Levels {
        // SAFETY: 16 bytes of nibbles after the scale.
        unsafe {
            let (a, b) = nibbles(p.add(2));
            (s8(a), s8(b))
        }
    }
}

impl Block32 for Q4_1 {
    const BYTES: usize = 20;
    const OFFSET: Option<f32> = None;
    #[inline(always)]
    unsafe fn levels(p: *const u8) -> Levels {
        // SAFETY: 16 bytes of nibbles after the scale and the minimum.
        unsafe {
            let (a, b) = nibbles(p.add(4));
            (s8(a), s8(b))
        }
    }
}

impl Block32 for Q5_0 {
    const BYTES: usize = 22;
    const OFFSET: Option<f32> = Some(-16.0);
    #[inline(always)]
    unsafe fn levels(p: *const u8) -> Levels {
        // SAFETY: scale, 4 bytes of fifth bits, 16 of nibbles.
        unsafe {
            let (a, b) = nibbles(p.add(6));
            let (ha, hb) = fifth_bits(p.add(2));
            (s8(vorrq_u8(a, ha)), s8(vorrq_u8(b, hb)))
        }
    }
}

impl Block32 for Q5_1 {
    const BYTES: usize = 24;
    const OFFSET: Option<f32> = None;
    #[inline(always)]
    unsafe fn levels(p: *const u8) -> Levels {
        // SAFETY: scale, minimum, 4 bytes of fifth bits, 16 of nibbles.
        unsafe {
            let (a, b) = nibbles(p.add(8));
            let (ha, hb) = fifth_bits(p.add(4));
            (s8(vorrq_u8(a, ha)), s8(vorrq_u8(b, hb)))
        }
    }
}

/// Integer lane sums of 32 levels times the 32 activations at `x`.
///
/// # Safety
/// 32 readable bytes at `x`.
#[inline(always)]
unsafe fn isum32(l: Levels, x: *const i8) -> int32x4_t {
    // SAFETY: caller's contract.
    unsafe {
        let s = dot16(vdupq_n_s32(0), l.0, vld1q_s8(x));
        dot16(s, l.1, vld1q_s8(x.add(16)))
    }
}

/// Writes `Σ lanes of acc + corr` of each activation row to `out[i · ldo + r]`.
///
/// # Safety
/// As for [`crate::kernels::TileFn`].
#[inline(always)]
unsafe fn store<const N: usize>(t: &Tile, r: usize, acc: &[float32x4_t; N], corr: &[f32; N]) {
    for i in 0..N {
        // SAFETY: `out[i · ldo + r]` is writable for `i < nt`, `r < nr` (tile contract).
        unsafe { *t.out.add(i * t.ldo + r) = vaddvq_f32(acc[i]) + corr[i] };
    }
}

/// # Safety
/// As for [`crate::kernels::TileFn`], with `N = nt` Q8 activation rows.
#[inline(always)]
unsafe fn tile_b32<B: Block32, const N: usize>(t: &Tile) {
    let f16 = f16_table();
    let nb = t.cols / 32;
    for r in 0..t.nr {
        // SAFETY: row `r < nr` holds `nb` blocks; activation row `i < N` holds `cols` values,
        // `nb` scales and sums (the tile contract).
        unsafe {
            let w = t.w.add(r * t.row_bytes);
            let mut acc = [vdupq_n_f32(0.0); N];
            let mut corr = [0.0f32; N];
            for b in 0..nb {
                let p = w.add(b * B::BYTES);
                let l = B::levels(p);
                let d = half(p, f16);
                // Type 0: `d · (dx·Σq·x + offset · dx·Σx)`; type 1: `d · dx·Σq·x + m · dx·Σx`.
                let o = match B::OFFSET {
                    Some(off) => d * off,
                    None => half(p.add(2), f16),
                };
                for i in 0..N {
                    let blk = i * nb + b;
                    let s = isum32(l, t.act.qs.add(32 * blk));
                    acc[i] = vfmaq_n_f32(acc[i], vcvtq_f32_s32(s), d * *t.act.d.add(blk));
                    corr[i] += o * *t.act.dsum.add(blk);
                }
            }
            store(t, r, &acc, &corr);
        }
    }
}

entry!(tile_q8_0, tile_b32, Q8_0);
entry!(tile_q4_0, tile_b32, Q4_0);
entry!(tile_q4_1, tile_b32, Q4_1);
entry!(tile_q5_0, tile_b32, Q5_0);
entry!(tile_q5_1, tile_b32, Q5_1);

/// A k-quant with sub-blocks of 32 and a minimum (Q4_K, Q5_K).
trait KType1 {
    const BYTES: usize;
    /// The levels of chunk `j < 8` (elements `32j..32j + 32`).
    ///
    /// # Safety
    /// `p` points to a whole super-block.
    unsafe fn chunk(p: *const u8, j: usize) -> Levels;
}

struct Q4K;
struct Q5K;

impl KType1 for Q4K {
    const BYTES: usize = 144;
    /// Chunks `2k` and `2k + 1` are the low and high nibbles of the 32 bytes at `16 + 32k`.
    #[inline(always)]
    unsafe fn chunk(p: *const u8, j: usize) -> Levels {
        // SAFETY: 128 bytes of nibbles at 16.
        unsafe {
            let q = p.add(16 + 32 * (j / 2));
            let k = 4 * (j % 2);
            (
                s8(bits(load(q), k, 0x0f)),
                s8(bits(load(q.add(16)), k, 0x0f)),
            )
        }
    }
}

impl KType1 for Q5K {
    const BYTES: usize = 176;
    /// As Q4_K's nibbles (at 48), with bit `j` of the 32 bytes at 16 as the fifth bit.
    #[inline(always)]
    unsafe fn chunk(p: *const u8, j: usize) -> Levels {
        // SAFETY: 32 bytes of fifth bits at 16, 128 of nibbles at 48.
        unsafe {
            let q = p.add(48 + 32 * (j / 2));
            let k = 4 * (j % 2);
            let hi = |o: usize| vshlq_n_u8::<4>(bits(load(p.add(16 + o)), j, 1));
            (
                s8(vorrq_u8(bits(load(q), k, 0x0f), hi(0))),
                s8(vorrq_u8(bits(load(q.add(16)), k, 0x0f), hi(16))),
            )
        }
    }
}

/// Q4_K and Q5_K: per chunk of 32 `s = d · sc`, `o = −dmin · m` (as the scalar twin).
///
/// # Safety
/// As for [`crate::kernels::TileFn`], with `N = nt` Q8 activation rows.
#[inline(always)]
unsafe fn tile_k1<K: KType1, const N: usize>(t: &Tile) {
    let f16 = f16_table();
    let (nsb, nb) = (t.cols / 256, t.cols / 32);
    for r in 0..t.nr {
        // SAFETY: row `r < nr` holds `nsb` super-blocks; activation row `i < N` holds `cols`
        // values, `nb` scales and sums (the tile contract).
        unsafe {
            let w = t.w.add(r * t.row_bytes);
            let mut acc = [vdupq_n_f32(0.0); N];
            let mut corr = [0.0f32; N];
            for sb in 0..nsb {
                let p = w.add(sb * K::BYTES);
                let (d, dmin) = (half(p, f16), half(p.add(2), f16));
                let scales = std::slice::from_raw_parts(p.add(4), 12);
                for j in 0..8 {
                    let (sc, m) = kscale(scales, j);
                    let (s, o) = (d * sc as f32, -dmin * m as f32);
                    let l = K::chunk(p, j);
                    for i in 0..N {
                        let blk = i * nb + sb * 8 + j;
                        let x = isum32(l, t.act.qs.add(32 * blk));
                        acc[i] = vfmaq_n_f32(acc[i], vcvtq_f32_s32(x), s * *t.act.d.add(blk));
                        corr[i] += o * *t.act.dsum.add(blk);
                    }
                }
            }
            store(t, r, &acc, &corr);
        }
    }
}

entry!(tile_q4_k, tile_k1, Q4K);
entry!(tile_q5_k, tile_k1, Q5K);

/// A k-quant with sub-blocks of 16 (Q2_K, Q3_K, Q6_K).
trait K16 {
    const BYTES: usize;
    /// The levels of chunk `c < 8` (elements `32c..32c + 32`, sub-blocks `2c` and `2c + 1`),
    /// unsigned with the format's offset left in.
    ///
    /// # Safety
    /// `p` points to a whole super-block.
    unsafe fn chunk(p: *const u8, c: usize) -> Levels;
    /// The scalar twin's `(s, o)` of the 16 sub-blocks.
    fn subs(b: &[u8]) -> [(f32, f32); 16];
}

struct Q2K;
struct Q3K;
struct Q6K;

impl K16 for Q2K {
    const BYTES: usize = 84;
    /// Two bits at `2 (c mod 4)` of the 32 bytes at `16 + 32 ⌊c / 4⌋`.
    #[inline(always)]
    unsafe fn chunk(p: *const u8, c: usize) -> Levels {
        // SAFETY: 64 bytes of quants at 16.
        unsafe {
            let q = p.add(16 + 32 * (c / 4));
            let k = 2 * (c % 4);
            (s8(bits(load(q), k, 3)), s8(bits(load(q.add(16)), k, 3)))
        }
    }
    fn subs(b: &[u8]) -> [(f32, f32); 16] {
        scalar::q2k_subs(b)
    }
}

impl K16 for Q3K {
    const BYTES: usize = 110;
    /// As Q2_K's two bits (at 32), plus 4 where bit `c` of the 32 bytes at 0 (the high mask)
    /// is set: levels `0..8`, the offset 4 left in.
    #[inline(always)]
    unsafe fn chunk(p: *const u8, c: usize) -> Levels {
        // SAFETY: hmask at 0 (32 bytes), low bits at 32 (64 bytes).
        unsafe {
            let q = p.add(32 + 32 * (c / 4));
            let k = 2 * (c % 4);
            let half = |o: usize| {
                let high = vshlq_n_u8::<2>(bits(load(p.add(o)), c, 1));
                s8(vorrq_u8(bits(load(q.add(o)), k, 3), high))
            };
            (half(0), half(16))
        }
    }
    fn subs(b: &[u8]) -> [(f32, f32); 16] {
        scalar::q3k_subs(b)
    }
}

impl K16 for Q6K {
    const BYTES: usize = 210;
    /// Levels `0..64` (the offset 32 left in): low nibbles from the 64 bytes at `64h`
    /// (`h = ⌊c / 4⌋`), two high bits from the 32 bytes at `128 + 32h`.
    #[inline(always)]
    unsafe fn chunk(p: *const u8, c: usize) -> Levels {
        // SAFETY: ql at 0 (128 bytes), qh at 128 (64 bytes).
        unsafe {
            let (h, k) = (c / 4, c % 4);
            let ql = p.add(64 * h + 32 * (k % 2));
            let qh = p.add(128 + 32 * h);
            let lo = 4 * (k / 2);
            let half = |o: usize| {
                let l = bits(load(ql.add(o)), lo, 0x0f);
                let hb = vshlq_n_u8::<4>(bits(load(qh.add(o)), 2 * k, 3));
                s8(vorrq_u8(l, hb))
            };
            (half(0), half(16))
        }
    }
    fn subs(b: &[u8]) -> [(f32, f32); 16] {
        scalar::q6k_subs(b)
    }
}

/// Sub-blocks of 16: per sub-block the scalar twin's `(s, o)`, activation sums per 16.
///
/// # Safety
/// As for [`crate::kernels::TileFn`], with `N = nt` Q8 activation rows.
#[inline(always)]
unsafe fn tile_k16<K: K16, const N: usize>(t: &Tile) {
    let (nsb, nb) = (t.cols / 256, t.cols / 32);
    for r in 0..t.nr {
        // SAFETY: row `r < nr` holds `nsb` super-blocks; activation row `i < N` holds `cols`
        // values, `nb` scales and `2 · nb` sums per 16 (the tile contract).
        unsafe {
            let w = t.w.add(r * t.row_bytes);
            let mut acc = [vdupq_n_f32(0.0); N];
            let mut corr = [0.0f32; N];
            for sb in 0..nsb {
                let p = w.add(sb * K::BYTES);
                let subs = K::subs(std::slice::from_raw_parts(p, K::BYTES));
                for c in 0..8 {
                    let (l0, l1) = K::chunk(p, c);
                    for i in 0..N {
                        let blk = i * nb + sb * 8 + c;
                        let x = t.act.qs.add(32 * blk);
                        let dx = *t.act.d.add(blk);
                        for (l, hh) in [(l0, 0), (l1, 1)] {
                            let (s, o) = subs[2 * c + hh];
                            let v = dot16(vdupq_n_s32(0), l, vld1q_s8(x.add(16 * hh)));
                            acc[i] = vfmaq_n_f32(acc[i], vcvtq_f32_s32(v), s * dx);
                            corr[i] += o * *t.act.dsum16.add(2 * blk + hh);
                        }
                    }
                }
            }
            store(t, r, &acc, &corr);
        }
    }
}

entry!(tile_q2_k, tile_k16, Q2K);
entry!(tile_q3_k, tile_k16, Q3K);
entry!(tile_q6_k, tile_k16, Q6K);
