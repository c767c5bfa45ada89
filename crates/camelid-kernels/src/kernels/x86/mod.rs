//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F/BW/VL + VNNI).
//!
//! Both paths share one body per weight type, generic over [`Simd`], which supplies the few
//! operations that differ (the u8×i8 dot product: `vpmaddubsw` + `vpmaddwd` on AVX2, `vpdpbusd`
//! on AVX-512 VNNI). The generic bodies are `#[inline(always)]` and only ever inlined into the
//! `#[target_feature]` entry points of their path, so they compile with that path's features.
//! Vectors are 256 bits wide on both paths: on current Intel cores 512-bit operations run on
//! fewer ports, and these kernels are bound by memory and shuffles rather than by width. The
//! exceptions are on the AVX-512 path, where the work is `vpdpbusd`, which runs 512 bits wide
//! at the 256-bit rate: the quantized panels take sixteen rows (`panel::gemm16`), the row
//! tiles put two rows in one vector (`panel::Fold512`), and the types of [`crate::interleave`]
//! have tiles and panels of their own for rows interleaved in eights (`octet`), which the CPU
//! backend lays its matrices out for at load. On AVX2, Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, IQ4_NL
//! and IQ4_XS have them too (`octet2`).

// The bodies index several parallel arrays (sums, pointers, scales) by one row index.
#![allow(clippy::needless_range_loop)]

mod act;
mod bf16;
mod float;
mod fpanel;
mod fpanel2;
pub(crate) mod gemm;
mod iq;
mod kq;
mod octet;
mod octet2;
pub mod ops;
mod panel;
mod q8;

use std::arch::x86_64::*;

use super::{Table, TileFn, TypeKernels};
use crate::act::{ActKind, QuantBf16Fn, quantize_bf16_scalar};
use crate::isa::Isa;

/// The operations that differ between the two x86 paths.
pub trait Simd: Copy {
    /// Whether `dot_u8i8` is VNNI's `vpdpbusd` (no 16-bit intermediate that could saturate).
    const VNNI: bool;

    /// `acc + Σ a·b` over each group of four bytes, `a` unsigned and `b` signed, into i32 lanes.
    ///
    /// # Safety
    /// The CPU supports the path. On AVX2 the pairwise sums must fit in i16 (`a ≤ 128` with
    /// `|b| ≤ 127` is enough).
    unsafe fn dot_u8i8(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;

    /// Byte `i` = `v` where bit `i` of `bits` is set, else 0.
    ///
    /// # Safety
    /// The CPU supports the path.
    unsafe fn bits_to_bytes(bits: u32, v: i8) -> __m256i;
}

#[derive(Clone, Copy)]
pub struct Avx2;
#[derive(Clone, Copy)]
pub struct Avx512;

impl Simd for Avx2 {
    const VNNI: bool = false;

    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the caller runs on an AVX2 CPU (trait contract).
        unsafe {
            let p = _mm256_maddubs_epi16(a, b);
            _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
        }
    }

    #[inline(always)]
    unsafe fn bits_to_bytes(bits: u32, v: i8) -> __m256i {
        // SAFETY: AVX2 CPU (trait contract).
        unsafe {
            // Spread byte k of `bits` over bytes 8k..8k+8, then test one bit per byte.
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(bits as i32),
                _mm256_set_epi64x(
                    0x0303_0303_0303_0303,
                    0x0202_0202_0202_0202,
                    0x0101_0101_0101_0101,
                    0,
                ),
            );
            let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            let hit = _mm256_cmpeq_epi8(_mm256_and_si256(spread, sel), sel);
            _mm256_and_si256(hit, _mm256_set1_epi8(v))
        }
    }
}

impl Simd for Avx512 {
    const VNNI: bool = true;

    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI + VL CPU (trait contract).
        unsafe { _mm256_dpbusd_epi32(acc, a, b) }
    }

    #[inline(always)]
    unsafe fn bits_to_bytes(bits: u32, v: i8) -> __m256i {
        // SAFETY: AVX-512 BW + VL CPU (trait contract).
        unsafe { _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(v)) }
    }
}

/// Prefetches the cache lines of `[p, p + len)` into L2, one `prefetcht1` per 64 bytes.
///
/// The quantized row tiles read eight rows at once, eight streams too short for the hardware
/// prefetcher to run ahead of, and compute hard on them, so they ask for their data a few units
/// ahead themselves (`panel::prefetch_ahead`). Into L2 rather than L1: the loads that follow
/// find the lines there (measured, `--example matvec`: as fast or faster than `prefetcht0`).
/// Prefetches never fault, and the addresses are formed with wrapping arithmetic, so running
/// past the matrix is harmless.
///
/// # Safety
/// SSE (always there on x86-64).
#[inline(always)]
pub unsafe fn prefetch(p: *const u8, len: usize) {
    let mut o = 0;
    while o < len {
        // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(o) as *const i8) };
        o += 64;
    }
}

/// The float decode tiles' prefetch: while a block of rows is multiplied, the same share of the
/// block after it: the lines at `next + at + 64k` for `64k < len`. Every caller's `len` is a
/// constant once inlined (so the loop unrolls) and `at` a multiple of 64 (so the lines are whole
/// ones). Rounding `at` down to a line at run time instead cost the AVX2 F16 tile more than half
/// its speed in L2 (0.0128 -> 0.030 ns a weight byte, `kernel_cost`). A decode tile reads its
/// rows as several short streams at once, which the hardware prefetcher does not run ahead of
/// (as `panel::prefetch_ahead` says of the quantized tiles).
///
/// # Safety
/// None: the addresses are formed with wrapping arithmetic and only prefetched.
#[inline(always)]
pub unsafe fn prefetch_next(next: *const u8, at: usize, len: usize) {
    debug_assert!(
        at.is_multiple_of(64),
        "prefetch_next at {at}: not a whole line"
    );
    let p = next.wrapping_add(at);
    let mut o = 0;
    while o < len {
        // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(o) as *const i8) };
        o += 64;
    }
}

/// Horizontal sum of eight f32 lanes.
///
/// # Safety
/// AVX CPU.
#[inline(always)]
pub unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: AVX is part of both paths.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// Defines the `#[target_feature]` entry points of one path: `$name` computes a tile with the
/// generic body `$body::<$simd, ..>`, dispatching on the number of activation rows.
macro_rules! entry {
    ($feat:literal, $simd:ty, $name:ident, $body:ident $(, $extra:ty)*) => {
        /// # Safety
        /// As for [`crate::kernels::TileFn`]; the CPU supports this path's features.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $name(t: &crate::kernels::Tile) {
            // SAFETY: forwarded contract; the body is inlined here with these features.
            unsafe {
                match t.nt {
                    1 => $body::<$simd $(, $extra)*, 1>(t),
                    2 => $body::<$simd $(, $extra)*, 2>(t),
                    3 => $body::<$simd $(, $extra)*, 3>(t),
                    _ => $body::<$simd $(, $extra)*, 4>(t),
                }
            }
        }
    };
}
pub(crate) use entry;

/// A quantized type: its row tile and, where the path has one, its panel of `rows` rows (both
/// on Q8 activations, in the same arithmetic: see [`panel`]).
const fn kq_rows(tile: TileFn, panel: Option<super::PanelFn>, rows: usize) -> TypeKernels {
    TypeKernels {
        act: ActKind::Q8,
        tile,
        panel: match panel {
            Some(f) => Some(super::Panel::new(f, ActKind::Q8, rows)),
            None => None,
        },
        interleaved: None,
    }
}

/// [`kq_rows`] with panels of eight rows (AVX2).
const fn kq(tile: TileFn, panel: Option<super::PanelFn>) -> TypeKernels {
    kq_rows(tile, panel, panel::ROWS)
}

/// [`kq_rows`] with the sixteen-row panels of the AVX-512 path.
const fn kq16(tile: TileFn, panel: Option<super::PanelFn>) -> TypeKernels {
    kq_rows(tile, panel, panel::avx512::PANEL_ROWS)
}

/// A float type: its tile and its panel of `rows` rows, on activations of kind `act`.
const fn kf(act: ActKind, tile: TileFn, panel: super::PanelFn, rows: usize) -> TypeKernels {
    TypeKernels {
        act,
        tile,
        panel: Some(super::Panel::new(panel, act, rows)),
        interleaved: None,
    }
}

pub static AVX2: Table = Table {
    isa: Isa::Avx2,
    types: [
        kf(
            ActKind::F32,
            float::avx2::tile_f32,
            fpanel2::panel_f32,
            fpanel2::ROWS,
        ),
        kf(
            ActKind::F32,
            float::avx2::tile_f16,
            fpanel2::panel_f16,
            fpanel2::ROWS,
        ),
        kf(
            ActKind::Bf16,
            bf16::tile_bf16_bf16_fma,
            fpanel2::panel_bf16_bf16,
            fpanel2::ROWS,
        ),
        // The Q8_0 panel packs 34-byte blocks: below 16 rows the tile is faster (`panel_speed`
        // Q8_0 at n = 8: 73–75 GFLOP/s against 81–84, n = 12 level, n = 16 90–95 against 82).
        TypeKernels {
            panel: Some(
                super::Panel::new(panel::avx2::panel_q8_0, ActKind::Q8, panel::ROWS).used_from(16),
            ),
            ..kq(panel::avx2::tile_q8_0, None)
        },
        TypeKernels {
            interleaved: Some((
                octet2::tile_q4_0,
                super::Panel::new(octet2::panel_q4_0, ActKind::Q8, panel::ROWS),
            )),
            ..kq(panel::avx2::tile_q4_0, Some(panel::avx2::panel_q4_0))
        },
        TypeKernels {
            interleaved: Some((
                octet2::tile_q4_1,
                super::Panel::new(octet2::panel_q4_1, ActKind::Q8, panel::ROWS),
            )),
            ..kq(panel::avx2::tile_q4_1, Some(panel::avx2::panel_q4_1))
        },
        kq(panel::avx2::tile_q5_0, Some(panel::avx2::panel_q5_0)),
        kq(panel::avx2::tile_q5_1, Some(panel::avx2::panel_q5_1)),
        kq(panel::avx2::tile_q2_k, Some(panel::avx2::panel_q2_k)),
        kq(panel::avx2::tile_q3_k, Some(panel::avx2::panel_q3_k)),
        TypeKernels {
            interleaved: Some((
                octet2::tile_q4_k,
                super::Panel::new(octet2::panel_q4_k, ActKind::Q8, panel::ROWS),
            )),
            ..kq(panel::avx2::tile_q4_k, Some(panel::avx2::panel_q4_k))
        },
        TypeKernels {
            interleaved: Some((
                octet2::tile_q5_k,
                super::Panel::new(octet2::panel_q5_k, ActKind::Q8, panel::ROWS),
            )),
            ..kq(panel::avx2::tile_q5_k, Some(panel::avx2::panel_q5_k))
        },
        TypeKernels {
            interleaved: Some((
                octet2::tile_q6_k,
                super::Panel::new(octet2::panel_q6_k, ActKind::Q8, panel::ROWS),
            )),
            ..kq(panel::avx2::tile_q6_k, Some(panel::avx2::panel_q6_k))
        },
        TypeKernels {
            interleaved: Some((
                octet2::tile_iq4_nl,
                super::Panel::new(octet2::panel_iq4_nl, ActKind::Q8, panel::ROWS),
            )),
            ..kq(iq::avx2::tile_iq4_nl, Some(iq::avx2::panel_iq4_nl))
        },
        TypeKernels {
            interleaved: Some((
                octet2::tile_iq4_xs,
                super::Panel::new(octet2::panel_iq4_xs, ActKind::Q8, panel::ROWS),
            )),
            ..kq(iq::avx2::tile_iq4_xs, Some(iq::avx2::panel_iq4_xs))
        },
        kq(iq::avx2::tile_tq1_0, Some(iq::avx2::panel_tq1_0)),
        kq(iq::avx2::tile_tq2_0, Some(iq::avx2::panel_tq2_0)),
        kq(iq::avx2::tile_iq3_s, None),
        kq(iq::avx2::tile_iq3_xxs, None),
        kq(iq::avx2::tile_iq2_xxs, None),
        kq(iq::avx2::tile_iq2_xs, None),
        kq(iq::avx2::tile_iq2_s, None),
        kq(iq::avx2::tile_iq1_s, None),
        kq(iq::avx2::tile_iq1_m, None),
    ],
    bf16_exact: kf(
        ActKind::F32,
        float::avx2::tile_bf16,
        fpanel2::panel_bf16,
        fpanel2::ROWS,
    ),
    quant_q8: act::avx2::quant_q8,
    quant_bf16: quantize_bf16_scalar,
};

/// The AVX-512 table with `vdpbf16ps` for BF16 weights (chosen where the CPU has AVX512-BF16).
///
/// Its BF16 panel beats the tile (4 × 4 `vdpbf16ps` sums in registers over rows in L2) only on
/// long prompts: `panel_speed` BF16 (one thread, a 1B layer's products, GFLOP/s) at n = 64
/// 141–148 against the tile's 152–162, n = 128 level, n = 256 185 against 170, n = 512 192
/// against 164–169.
pub static AVX512_BF16: Table = avx512(
    TypeKernels {
        act: ActKind::Bf16,
        tile: bf16::tile_bf16_bf16_dp,
        panel: Some(
            super::Panel::new(fpanel::panel_bf16_dp, ActKind::Bf16, fpanel::ROWS).used_from(192),
        ),
        interleaved: None,
    },
    bf16::quant_bf16_avx512,
);

/// The AVX-512 table without AVX512-BF16: BF16 weights on the AVX2 path's FMA tiles and panels
/// (the same arithmetic).
pub static AVX512: Table = avx512(
    kf(
        ActKind::Bf16,
        bf16::tile_bf16_bf16_fma,
        fpanel2::panel_bf16_bf16,
        fpanel2::ROWS,
    ),
    quantize_bf16_scalar,
);

const fn avx512(bf16: TypeKernels, quant_bf16: QuantBf16Fn) -> Table {
    Table {
        isa: Isa::Avx512,
        types: [
            kf(
                ActKind::F32,
                float::avx512::tile_f32,
                fpanel::panel_f32,
                fpanel::ROWS,
            ),
            kf(
                ActKind::F32,
                float::avx512::tile_f16,
                fpanel::panel_f16,
                fpanel::ROWS,
            ),
            bf16,
            TypeKernels {
                interleaved: Some((
                    octet::tile_q8_0,
                    super::Panel::new(octet::panel_q8_0, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(panel::avx512::tile_q8_0, Some(panel::avx512::panel_q8_0))
            },
            TypeKernels {
                interleaved: Some((
                    octet::tile_q4_0,
                    super::Panel::new(octet::panel_q4_0, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(panel::avx512::tile_q4_0, Some(panel::avx512::panel_q4_0))
            },
            TypeKernels {
                interleaved: Some((
                    octet::tile_q4_1,
                    super::Panel::new(octet::panel_q4_1, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(panel::avx512::tile_q4_1, Some(panel::avx512::panel_q4_1))
            },
            kq16(panel::avx512::tile_q5_0, Some(panel::avx512::panel_q5_0)),
            kq16(panel::avx512::tile_q5_1, Some(panel::avx512::panel_q5_1)),
            kq16(panel::avx512::tile_q2_k, Some(panel::avx512::panel_q2_k)),
            kq16(panel::avx512::tile_q3_k, Some(panel::avx512::panel_q3_k)),
            TypeKernels {
                interleaved: Some((
                    octet::tile_q4_k,
                    super::Panel::new(octet::panel_q4_k, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(panel::avx512::tile_q4_k, Some(panel::avx512::panel_q4_k))
            },
            TypeKernels {
                interleaved: Some((
                    octet::tile_q5_k,
                    super::Panel::new(octet::panel_q5_k, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(panel::avx512::tile_q5_k, Some(panel::avx512::panel_q5_k))
            },
            TypeKernels {
                interleaved: Some((
                    octet::tile_q6_k,
                    super::Panel::new(octet::panel_q6_k, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(panel::avx512::tile_q6_k, Some(panel::avx512::panel_q6_k))
            },
            TypeKernels {
                interleaved: Some((
                    octet::tile_iq4_nl,
                    super::Panel::new(octet::panel_iq4_nl, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(iq::avx512::tile_iq4_nl, Some(iq::avx512::panel_iq4_nl))
            },
            TypeKernels {
                interleaved: Some((
                    octet::tile_iq4_xs,
                    super::Panel::new(octet::panel_iq4_xs, ActKind::Q8, panel::avx512::PANEL_ROWS),
                )),
                ..kq16(iq::avx512::tile_iq4_xs, Some(iq::avx512::panel_iq4_xs))
            },
            kq16(iq::avx512::tile_tq1_0, Some(iq::avx512::panel_tq1_0)),
            kq16(iq::avx512::tile_tq2_0, Some(iq::avx512::panel_tq2_0)),
            kq16(iq::avx512::tile_iq3_s, Some(iq::avx512::panel_iq3_s)),
            kq16(iq::avx512::tile_iq3_xxs, Some(iq::avx512::panel_iq3_xxs)),
            kq16(iq::avx512::tile_iq2_xxs, Some(iq::avx512::panel_iq2_xxs)),
            kq16(iq::avx512::tile_iq2_xs, Some(iq::avx512::panel_iq2_xs)),
            kq16(iq::avx512::tile_iq2_s, Some(iq::avx512::panel_iq2_s)),
            kq16(iq::avx512::tile_iq1_s, Some(iq::avx512::panel_iq1_s)),
            kq16(iq::avx512::tile_iq1_m, Some(iq::avx512::panel_iq1_m)),
        ],
        bf16_exact: kf(
            ActKind::F32,
            float::avx512::tile_bf16,
            fpanel::panel_bf16,
            fpanel::ROWS,
        ),
        quant_q8: act::avx512::quant_q8,
        quant_bf16,
    }
}
