//! Activations quantized to 8 bits for the integer dot products of the fast path.
//!
//! As in llama.cpp, a matrix product with quantized weights first rounds each activation row to
//! signed 8-bit integers with one f32 scale per block of 32 ("Q8", like ggml's
//! `block_q8_0`/`block_q8_1`), for every quantized weight type (llama.cpp uses blocks of 256 for
//! the k-quants; one block size for all keeps a single arithmetic, see
//! `kernels::x86::panel`, and rounds finer). Besides the scales we keep block sums, which the
//! weight formats with an offset or a minimum need: `d · Σq` per block of 32 and per half block.
//!
//! The layout is ours (activations never leave the process): struct-of-arrays, rows contiguous.
//!
//! BF16 weights at [`crate::Precision::Fast`] take their activations rounded to bf16 instead
//! ([`round_bf16`]), so that AVX512-BF16's `vdpbf16ps` can multiply both in pairs; the
//! arithmetic of those products is described in `kernels::scalar` (`dot_bf16_bf16`).

/// How a weight type wants its activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    /// Plain f32 (float weights).
    F32,
    /// 8-bit with a scale per 32.
    Q8,
    /// bf16 (BF16 weights at [`crate::Precision::Fast`]): see [`round_bf16`].
    Bf16,
}

impl ActKind {
    /// Elements per scale.
    pub const fn block(self) -> usize {
        match self {
            ActKind::F32 | ActKind::Bf16 => 1,
            ActKind::Q8 => 32,
        }
    }
}

/// Quantized activation rows `[rows, cols]`; the buffers are reused from call to call.
#[derive(Default, Debug)]
pub struct QuantAct {
    pub rows: usize,
    pub cols: usize,
    /// `[rows, cols]`
    pub qs: Vec<i8>,
    /// `[rows, cols / block]`
    pub d: Vec<f32>,
    /// Q8: `[rows, cols / 32]`, `d · Σq` of each block.
    pub dsum: Vec<f32>,
    /// Q8: `[rows, cols / 16]`, `d · Σq` of each half block (for weights with sub-blocks of 16).
    pub dsum16: Vec<f32>,
    /// Bf16: `[rows, bf16_stride(cols)]`, each row padded with zeros.
    pub bf16s: Vec<u16>,
}

/// Quantizes one row to Q8: `qs = round(x / d)` with `d = max|x| / 127` per block of 32.
pub type QuantQ8Fn =
    fn(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32], dsum16: &mut [f32]);

impl QuantAct {
    /// Sizes the buffers for `rows × cols` of `kind` (growing them only when needed).
    pub fn reset(&mut self, kind: ActKind, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        let n = rows * cols;
        self.qs.resize(n, 0);
        match kind {
            ActKind::F32 => {}
            ActKind::Bf16 => self.bf16s.resize(rows * bf16_stride(cols), 0),
            ActKind::Q8 => {
                self.d.resize(n / 32, 0.0);
                self.dsum.resize(n / 32, 0.0);
                self.dsum16.resize(n / 16, 0.0);
            }
        }
    }
}

/// Rounds as the SIMD paths do (`cvtps2dq`: nearest, ties to even), so every path quantizes
/// activations identically.
#[inline]
fn to_i8(v: f32) -> i8 {
    v.round_ties_even() as i8
}

/// Scalar Q8 quantization (reference).
pub fn quantize_q8_scalar(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    dsum: &mut [f32],
    dsum16: &mut [f32],
) {
    for ((((xb, qb), db), sb), s16) in x
        .chunks_exact(32)
        .zip(qs.chunks_exact_mut(32))
        .zip(d.iter_mut())
        .zip(dsum.iter_mut())
        .zip(dsum16.chunks_exact_mut(2))
    {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut half = [0i32; 2];
        for (i, (q, &v)) in qb.iter_mut().zip(xb).enumerate() {
            *q = to_i8(v * inv);
            half[i / 16] += *q as i32;
        }
        *db = scale;
        *sb = scale * (half[0] + half[1]) as f32;
        s16[0] = scale * half[0] as f32;
        s16[1] = scale * half[1] as f32;
    }
}

/// Elements per row of bf16 activations: `cols` rounded up to a whole number of 32-column
/// chunks (one 512-bit vector of bf16), the padding zero, so the kernels need no column tail.
pub const fn bf16_stride(cols: usize) -> usize {
    cols.div_ceil(32) * 32
}

/// Rounds one activation to bf16 as `VCVTNE2PS2BF16` does (Intel SDM, "VCVTNE2PS2BF16",
/// `convert_fp32_to_bfloat16`): round to nearest even by adding `0x7fff` plus the kept lowest
/// bit; zeros and subnormals become a zero of the same sign; NaNs are quieted, infinities kept.
/// Checked bit for bit against the instruction (`bf16_rounding_matches_the_instruction`).
#[inline]
pub fn round_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if b & 0x7f80_0000 == 0 {
        (b >> 16) as u16 & 0x8000
    } else if x.is_nan() {
        (b >> 16) as u16 | 0x0040
    } else if x.is_infinite() {
        (b >> 16) as u16
    } else {
        (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }
}

/// Rounds one row to bf16 (`out` is [`bf16_stride`]`(x.len())` long; the padding is zeroed).
pub type QuantBf16Fn = fn(x: &[f32], out: &mut [u16]);

/// Scalar bf16 rounding of a row (reference).
pub fn quantize_bf16_scalar(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = round_bf16(v);
    }
    out[x.len()..].fill(0);
}
