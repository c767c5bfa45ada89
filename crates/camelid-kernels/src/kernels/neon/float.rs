//! Float weights (F32, F16, BF16 widened) against f32 activations: exact products, sixteen
//! running sums per activation row (four vectors), the columns past the last 16 one by one.

use std::arch::aarch64::*;

use super::entry;
use crate::kernels::Tile;

/// One float weight format.
trait FloatW {
    /// Bytes per weight.
    const WIDTH: usize;
    /// Four weights at `p` as f32.
    ///
    /// # Safety
    /// `4 · WIDTH` readable bytes at `p`.
    unsafe fn load4(p: *const u8) -> float32x4_t;
    /// The weight at `p` as f32.
    ///
    /// # Safety
    /// `WIDTH` readable bytes at `p`.
    unsafe fn one(p: *const u8) -> f32;
}

struct F32;
struct F16;
struct Bf16;

impl FloatW for F32 {
    const WIDTH: usize = 4;
    #[inline(always)]
    unsafe fn load4(p: *const u8) -> float32x4_t {
        // SAFETY: caller's contract; `vld1q_f32` needs no alignment.
        unsafe { vld1q_f32(p as *const f32) }
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        // SAFETY: caller's contract.
        unsafe { (p as *const f32).read_unaligned() }
    }
}

impl FloatW for F16 {
    const WIDTH: usize = 2;
    /// `fcvtl`, base AArch64: exact for every f16, subnormals included.
    #[inline(always)]
    unsafe fn load4(p: *const u8) -> float32x4_t {
        // SAFETY: caller's contract.
        unsafe { vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p as *const u16))) }
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        // SAFETY: caller's contract.
        half::f16::from_bits(unsafe { (p as *const u16).read_unaligned() }).to_f32()
    }
}

impl FloatW for Bf16 {
    const WIDTH: usize = 2;
    /// A bf16 is the top half of an f32.
    #[inline(always)]
    unsafe fn load4(p: *const u8) -> float32x4_t {
        // SAFETY: caller's contract.
        unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16))) }
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        // SAFETY: caller's contract.
        f32::from_bits((unsafe { (p as *const u16).read_unaligned() } as u32) << 16)
    }
}

/// # Safety
/// As for [`crate::kernels::TileFn`], with `N = nt` float activation rows.
#[inline(always)]
unsafe fn tile_body<W: FloatW, const N: usize>(t: &Tile) {
    let cols = t.cols;
    let main = cols / 16 * 16;
    for r in 0..t.nr {
        // SAFETY: row `r < nr` holds `cols` weights, activation row `i < N` holds `cols` floats,
        // every vector access is below `main ≤ cols`, and `out[i · ldo + r]` is writable
        // (the tile contract).
        unsafe {
            let w = t.w.add(r * t.row_bytes);
            let mut acc = [[vdupq_n_f32(0.0); 4]; N];
            let mut c = 0;
            while c < main {
                let wv = [
                    W::load4(w.add(c * W::WIDTH)),
                    W::load4(w.add((c + 4) * W::WIDTH)),
                    W::load4(w.add((c + 8) * W::WIDTH)),
                    W::load4(w.add((c + 12) * W::WIDTH)),
                ];
                for i in 0..N {
                    let x = t.act.f32s.add(i * cols + c);
                    for k in 0..4 {
                        acc[i][k] = vfmaq_f32(acc[i][k], wv[k], vld1q_f32(x.add(4 * k)));
                    }
                }
                c += 16;
            }
            for i in 0..N {
                let a = &acc[i];
                let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
                let x = t.act.f32s.add(i * cols);
                for c in main..cols {
                    s += W::one(w.add(c * W::WIDTH)) * *x.add(c);
                }
                *t.out.add(i * t.ldo + r) = s;
            }
        }
    }
}

entry!(tile_f32, tile_body, F32);
entry!(tile_f16, tile_body, F16);
entry!(tile_bf16, tile_body, Bf16);
