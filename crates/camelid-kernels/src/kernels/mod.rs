//! The per-type dot-product kernels behind [`crate::Kernels::matmul`], one table per instruction
//! set, chosen once.
//!
//! A kernel computes a *tile*: `nr` consecutive weight rows against `nt` (at most [`NT`])
//! consecutive activation rows, `out[t · ldo + r] = Σ_c w[r, c] · x[t, c]`. Decoding calls it
//! with `nt = 1` (a matrix-vector product); the prompt pass with `nt = NT`, so each block of
//! weights is loaded and unpacked once for several tokens.
//!
//! Every entry of the SIMD tables has a twin in [`scalar`] computing the same sums in the same
//! integer arithmetic; only the order of the f32 additions differs.
//!
//! The tables: [`scalar`] (every architecture); `x86` (AVX2, AVX-512, and AVX-512 with BF16)
//! on x86-64; `neon` on aarch64, with NEON tiles for F32, F16, BF16 (exact), the 32-element
//! formats and Q2_K to Q6_K, NEON activation quantization, and the scalar entries for the
//! other types. The NEON path is tested under qemu-user (`scripts/test-aarch64.sh`); its speed
//! on ARM hardware has not been measured.

#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod scalar;
mod scalar_iq;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use crate::act::{ActKind, QuantBf16Fn, QuantQ8Fn};
use crate::dtype::DType;
use crate::isa::Isa;
use crate::matmul::Precision;

/// Every f16 bit pattern as f32: a scalar scale conversion costs two loads instead of a trip
/// through the vector unit. 256 KiB, built on first use; the scales a model uses are few, so
/// the lines in use stay in L1.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn f16_table() -> &'static [f32; 65536] {
    static TABLE: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0.0f32; 65536]);
        for (i, v) in t.iter_mut().enumerate() {
            *v = half::f16::from_bits(i as u16).to_f32();
        }
        t
    })
}

/// Activation rows per tile.
pub const NT: usize = 4;

/// Pointers to the first activation row of a tile; row `t` is at `t · cols` elements (`qs`,
/// `f32s`), `t · cols / block` scales, `t · cols / 32` `dsum`.
#[derive(Clone, Copy, Debug)]
pub struct ActPtr {
    pub f32s: *const f32,
    pub qs: *const i8,
    pub d: *const f32,
    pub dsum: *const f32,
    /// `t · cols / 16`
    pub dsum16: *const f32,
    /// `t · bf16_stride(cols)` (see [`crate::act::bf16_stride`])
    pub bf16s: *const u16,
}

/// One tile of work; see the module docs. Built by the driver in `matmul.rs`, which checks every
/// bound before it hands out a tile.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    pub w: *const u8,
    pub row_bytes: usize,
    pub nr: usize,
    pub cols: usize,
    pub act: ActPtr,
    pub nt: usize,
    pub out: *mut f32,
    pub ldo: usize,
}

/// Computes a tile.
///
/// # Safety
/// `w` points to `nr` rows of `row_bytes` bytes holding `cols` elements of the table's type;
/// `act` to `nt` activation rows of `cols` elements of the type's [`ActKind`]; `out` is valid
/// for writes at `t · ldo + r` for `t < nt`, `r < nr`; and the CPU supports the table's ISA.
pub type TileFn = unsafe fn(&Tile);

/// Up to eight weight rows against all activation rows of a product, through a repacked panel (see
/// `x86::panel`); built by the driver like a [`Tile`].
#[derive(Clone, Copy, Debug)]
pub struct PanelJob {
    /// The first of `nr` rows (at most the panel's `rows`).
    pub w: *const u8,
    pub nr: usize,
    pub row_bytes: usize,
    pub cols: usize,
    /// Activation row 0.
    pub act: ActPtr,
    pub n: usize,
    /// `out[t · ldo + r]` for the rows `r < nr`, from activation row 0.
    pub out: *mut f32,
    pub ldo: usize,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl PanelJob {
    /// Activation row `t` as f32 (`cols` floats), as bytes.
    ///
    /// # Safety
    /// `t < n`, and the job's activations are f32.
    pub(crate) unsafe fn f32_row(&self, t: usize) -> *const u8 {
        // SAFETY: caller's contract.
        unsafe { self.act.f32s.add(t * self.cols) as *const u8 }
    }

    /// Activation row `t` as bf16 (padded to [`crate::act::bf16_stride`]), as bytes.
    ///
    /// # Safety
    /// `t < n`, and the job's activations are bf16.
    pub(crate) unsafe fn bf16_row(&self, t: usize) -> *const u8 {
        // SAFETY: caller's contract.
        unsafe { self.act.bf16s.add(t * crate::act::bf16_stride(self.cols)) as *const u8 }
    }
}

/// Per-thread scratch of a panel, reused from product to product (only the x86 panels pack).
#[derive(Default, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct PanelBuf {
    pub levels: Vec<u8>,
    pub s: Vec<f32>,
    pub o: Vec<f32>,
}

/// Computes a panel job.
///
/// # Safety
/// `w` points to `nr` rows (at most the panel's) as for [`TileFn`], `act` to `n` activation rows, `out` is valid
/// for writes at `t · ldo + r` for `t < n`, `r < nr`; the CPU supports the table's ISA.
pub type PanelFn = unsafe fn(&PanelJob, &mut PanelBuf);

/// A prompt-pass kernel: the function, the activations it takes (the k-quant panels take
/// blocks of 32, finer than their tiles' 256), the weight rows it packs at a time and the
/// activation rows from which it is used instead of the tile.
#[derive(Clone, Copy)]
pub struct Panel {
    pub f: PanelFn,
    pub act: ActKind,
    pub rows: usize,
    pub min_n: usize,
}

impl Panel {
    /// A panel used from [`PANEL_MIN_N`] activation rows.
    pub const fn new(f: PanelFn, act: ActKind, rows: usize) -> Panel {
        Panel {
            f,
            act,
            rows,
            min_n: PANEL_MIN_N,
        }
    }

    /// The same panel, used from `min_n` activation rows (where its packing costs more than
    /// the tile's product at fewer: measured with `--example panel_speed`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub const fn used_from(self, min_n: usize) -> Panel {
        Panel { min_n, ..self }
    }
}

/// Activation rows from which a product goes through panels where the type has them (unless
/// the panel says more).
pub const PANEL_MIN_N: usize = 8;

/// What a weight type needs from one instruction set.
#[derive(Clone, Copy)]
pub struct TypeKernels {
    pub act: ActKind,
    pub tile: TileFn,
    /// The prompt-pass kernel, where the path has one for the type.
    pub panel: Option<Panel>,
    /// The kernels of the rows interleaved in eights ([`crate::interleave`]), where the path
    /// has them: the same results bit for bit, on the same activations as `tile` and `panel`.
    pub interleaved: Option<(TileFn, Panel)>,
}

/// The kernels of one instruction set.
pub struct Table {
    pub isa: Isa,
    /// Indexed by [`type_index`].
    pub types: [TypeKernels; DType::ALL.len()],
    /// BF16 at [`Precision::Exact`]: widened to f32, f32 products (`types` holds the fast
    /// kernels, on bf16 activations).
    pub bf16_exact: TypeKernels,
    pub quant_q8: QuantQ8Fn,
    pub quant_bf16: QuantBf16Fn,
}

impl Table {
    /// The kernels of `dtype` at `precision` (quantized types at `Exact` do not use tiles: see
    /// `matmul::exact_rows`).
    pub fn get(&self, dtype: DType, precision: Precision) -> TypeKernels {
        if dtype == DType::BF16 && precision == Precision::Exact {
            self.bf16_exact
        } else {
            self.types[type_index(dtype)]
        }
    }
}

pub const fn type_index(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::Q8_0 => 3,
        DType::Q4_0 => 4,
        DType::Q4_1 => 5,
        DType::Q5_0 => 6,
        DType::Q5_1 => 7,
        DType::Q2_K => 8,
        DType::Q3_K => 9,
        DType::Q4_K => 10,
        DType::Q5_K => 11,
        DType::Q6_K => 12,
        DType::IQ4_NL => 13,
        DType::IQ4_XS => 14,
        DType::TQ1_0 => 15,
        DType::TQ2_0 => 16,
        DType::IQ3_S => 17,
        DType::IQ3_XXS => 18,
        DType::IQ2_XXS => 19,
        DType::IQ2_XS => 20,
        DType::IQ2_S => 21,
        DType::IQ1_S => 22,
        DType::IQ1_M => 23,
    }
}

/// The table of `isa`, which must be supported by this CPU (see [`Isa::supported`]); an
/// unsupported request gets the best supported table below it.
pub fn table(isa: Isa) -> &'static Table {
    match isa.or_below() {
        Isa::Scalar => &scalar::TABLE,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &x86::AVX2,
        // AVX512-BF16 (Zen 4, Sapphire Rapids and later) adds `vdpbf16ps` for BF16 weights.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if is_x86_feature_detected!("avx512bf16") => &x86::AVX512_BF16,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &x86::AVX512,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => &neon::TABLE,
        // Only the paths of this architecture get here (see `Isa::or_below`).
        _ => &scalar::TABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path quantizes activations to the same bytes, scales and sums as the scalar
    /// reference, so the kernels' twins see identical integer inputs.
    #[test]
    fn activation_quantization_is_identical_on_every_path() {
        let cols = 1024;
        let mut seed = 0x1234_5678u64;
        let mut x: Vec<f32> = (0..cols)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect();
        // A zero block, a block with one huge value, exact ties at .5 after scaling (the block's
        // largest magnitude 127 makes the scale 1).
        x[32..64].fill(0.0);
        x[70] = 1e6;
        for (i, v) in x[256..288].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) * 0.5;
        }
        x[256] = -127.0;
        let reference = table(Isa::Scalar);
        let (mut q0, mut d0, mut s0, mut h0) = (
            vec![0i8; cols],
            vec![0f32; 32],
            vec![0f32; 32],
            vec![0f32; 64],
        );
        (reference.quant_q8)(&x, &mut q0, &mut d0, &mut s0, &mut h0);
        for isa in Isa::available() {
            let t = table(isa);
            let (mut q, mut d, mut s, mut h) = (
                vec![0i8; cols],
                vec![0f32; 32],
                vec![0f32; 32],
                vec![0f32; 64],
            );
            (t.quant_q8)(&x, &mut q, &mut d, &mut s, &mut h);
            assert_eq!((&q, &d, &s, &h), (&q0, &d0, &s0, &h0), "{isa} Q8");
        }
    }
}
