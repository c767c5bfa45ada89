//! The 32-element weight formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) against Q8 activations.
//!
//! Per weight row, a first pass converts the f16 scales (by table) and stores the products
//! `dw · dx` for every activation row, and sums the offset terms (`−8 · dw · dx·Σqx`
//! for Q4_0, `m · dx·Σqx` for Q4_1, see [`crate::kernels::scalar`]). The main pass then costs,
//! per block and activation row, one integer dot product, one conversion and one FMA with a
//! scale broadcast from memory. Levels are unpacked once per block for all activation rows.

use std::arch::x86_64::*;

use super::{Avx2, Avx512, Simd, entry, hsum, prefetch};
use crate::kernels::Tile;

/// Blocks per pass; their scale products live on the stack (`NT · SEG` floats).
const SEG: usize = 256;

/// One 32-element weight format.
pub trait Block32 {
    /// Bytes per block.
    const BYTES: usize;
    /// Type-1 formats store a minimum `m` right after the scale `d`.
    const TYPE1: bool;
    /// Level offset of the type-0 formats: −8 (Q4_0), −16 (Q5_0), 0 (Q8_0, signed values).
    const OFFSET: f32;

    /// The offset on path `S` (Q8_0 uses a different trick with VNNI).
    #[inline(always)]
    fn offset<S: Simd>() -> f32 {
        Self::OFFSET
    }

    /// The 32 levels of the block at `p`, one byte each in element order (unsigned), or for
    /// Q8_0 its signed values.
    ///
    /// # Safety
    /// `p` points to a whole block; the CPU supports `S`.
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i;

    /// Integer lane sums of the block's levels times 32 activations.
    ///
    /// # Safety
    /// The CPU supports `S`.
    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: levels are at most 31, within `dot_u8i8`'s bound.
        unsafe { S::dot_u8i8(_mm256_setzero_si256(), w, x) }
    }
}

/// Low nibbles of 16 bytes as elements 0..16, high nibbles as 16..32.
///
/// # Safety
/// 16 readable bytes at `p`; AVX2.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: caller's contract.
    unsafe {
        let q = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let q = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
        _mm256_and_si256(q, _mm256_set1_epi8(0x0f))
    }
}

#[inline(always)]
unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: caller guarantees 4 readable bytes.
    unsafe { (p as *const u32).read_unaligned() }
}

pub struct Q8_0;
pub struct Q4_0;
pub struct Q4_1;
pub struct Q5_0;
pub struct Q5_1;

impl Block32 for Q8_0 {
    const BYTES: usize = 34;
    const TYPE1: bool = false;
    const OFFSET: f32 = 0.0;
    /// With VNNI the signed values are flipped to unsigned `w + 128` (one `vpxor`), and the
    /// `128 · Σx` this adds is taken off with the other offset terms.
    #[inline(always)]
    fn offset<S: Simd>() -> f32 {
        if S::VNNI { -128.0 } else { 0.0 }
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 34 bytes.
        unsafe {
            let w = _mm256_loadu_si256(p.add(2) as *const __m256i);
            if S::VNNI {
                _mm256_xor_si256(w, _mm256_set1_epi8(-128))
            } else {
                w
            }
        }
    }
    #[inline(always)]
    unsafe fn dot<S: Simd>(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: the CPU supports `S` (caller).
        unsafe {
            if S::VNNI {
                S::dot_u8i8(_mm256_setzero_si256(), w, x)
            } else {
                // Signed × signed as |w| × (x with w's sign): |w| ≤ 128 and |x| ≤ 127 keep
                // AVX2's 16-bit pair sums from saturating.
                S::dot_u8i8(
                    _mm256_setzero_si256(),
                    _mm256_abs_epi8(w),
                    _mm256_sign_epi8(x, w),
                )
            }
        }
    }
}

impl Block32 for Q4_0 {
    const BYTES: usize = 18;
    const TYPE1: bool = false;
    const OFFSET: f32 = -8.0;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 18 bytes.
        unsafe { nibbles(p.add(2)) }
    }
}

impl Block32 for Q4_1 {
    const BYTES: usize = 20;
    const TYPE1: bool = true;
    const OFFSET: f32 = 0.0;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 20 bytes.
        unsafe { nibbles(p.add(4)) }
    }
}

impl Block32 for Q5_0 {
    const BYTES: usize = 22;
    const TYPE1: bool = false;
    const OFFSET: f32 = -16.0;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 22 bytes: scale, 4 bytes of high bits, 16 of nibbles.
        unsafe {
            _mm256_or_si256(
                nibbles(p.add(6)),
                S::bits_to_bytes(read_u32(p.add(2)), 0x10),
            )
        }
    }
}

impl Block32 for Q5_1 {
    const BYTES: usize = 24;
    const TYPE1: bool = true;
    const OFFSET: f32 = 0.0;
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const u8) -> __m256i {
        // SAFETY: a block is 24 bytes: scale, minimum, 4 bytes of high bits, 16 of nibbles.
        unsafe {
            _mm256_or_si256(
                nibbles(p.add(8)),
                S::bits_to_bytes(read_u32(p.add(4)), 0x10),
            )
        }
    }
}

/// First pass over `nb` blocks at `w`: `sc[i][b] = dw_b · dx_ib`, and the offset terms of each
/// activation row `i`, returned. The f16 scales are converted by table (two loads a block; a
/// `vpgatherdd` of eight measured several times slower), the products and sums in vectors.
///
/// # Safety
/// `w` holds `nb` blocks; `d[i]`, `dsum[i]` hold `nb` floats; AVX2 + FMA.
#[inline(always)]
unsafe fn prep<S: Simd, B: Block32, const N: usize>(
    w: *const u8,
    nb: usize,
    d: &[*const f32; N],
    dsum: &[*const f32; N],
    sc: &mut [[f32; SEG]; N],
    f16: &[f32; 65536],
) -> [f32; N] {
    let offset = B::offset::<S>();
    let has_corr = B::TYPE1 || offset != 0.0;
    let mut dw = [0.0f32; SEG];
    let mut mw = [0.0f32; SEG];
    let mut out = [0.0f32; N];
    // SAFETY: every access stays inside the `nb` blocks and `nb` floats of the contract.
    unsafe {
        scales8(w, nb, B::BYTES, 0, f16, &mut dw);
        if B::TYPE1 {
            scales8(w, nb, B::BYTES, 2, f16, &mut mw);
        }
        let f = if B::TYPE1 { &mw } else { &dw };
        let main = nb / 8 * 8;
        for i in 0..N {
            let mut c0 = _mm256_setzero_ps();
            let mut c1 = _mm256_setzero_ps();
            let mut b = 0;
            while b < main {
                let v = _mm256_loadu_ps(dw.as_ptr().add(b));
                let dx = _mm256_loadu_ps(d[i].add(b));
                _mm256_storeu_ps(sc[i].as_mut_ptr().add(b), _mm256_mul_ps(v, dx));
                if has_corr {
                    let fv = _mm256_loadu_ps(f.as_ptr().add(b));
                    let sv = _mm256_loadu_ps(dsum[i].add(b));
                    if b % 16 == 0 {
                        c0 = _mm256_fmadd_ps(fv, sv, c0);
                    } else {
                        c1 = _mm256_fmadd_ps(fv, sv, c1);
                    }
                }
                b += 8;
            }
            let mut o = hsum(_mm256_add_ps(c0, c1));
            for b in main..nb {
                sc[i][b] = dw[b] * *d[i].add(b);
                o += f[b] * *dsum[i].add(b);
            }
            out[i] = if B::TYPE1 { o } else { o * offset };
        }
    }
    out
}

/// `out[b]` = the f16 at byte `off` of block `b` (blocks of `bytes` at `w`), as f32: eight at a
/// time inserted into one vector and widened with `vcvtph2ps`, the rest by table.
///
/// # Safety
/// `w` holds `nb` blocks of `bytes`, `off + 2 ≤ bytes`; AVX2 + F16C.
#[inline(always)]
unsafe fn scales8(
    w: *const u8,
    nb: usize,
    bytes: usize,
    off: usize,
    f16: &[f32; 65536],
    out: &mut [f32; SEG],
) {
    let main = nb / 8 * 8;
    // SAFETY: blocks `b < nb` are inside the caller's blocks.
    unsafe {
        let h = |b: usize| (w.add(b * bytes + off) as *const i16).read_unaligned();
        let mut b = 0;
        while b < main {
            let v = _mm_setr_epi16(
                h(b),
                h(b + 1),
                h(b + 2),
                h(b + 3),
                h(b + 4),
                h(b + 5),
                h(b + 6),
                h(b + 7),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(b), _mm256_cvtph_ps(v));
            b += 8;
        }
        scales_by_table(w.add(main * bytes), bytes, off, f16, &mut out[main..nb]);
    }
}

/// `out[b]` = the f16 at byte `off` of block `b` (blocks of `bytes` at `w`), as f32, for the
/// few blocks left over by [`scales8`].
///
/// Deliberately compiled without the paths' target features and never inlined into them:
/// with AVX2 enabled LLVM turns this loop into `vpgatherdd`, which measured slower.
///
/// # Safety
/// `w` holds `out.len()` blocks of `bytes`, `off + 2 ≤ bytes`.
#[inline(never)]
unsafe fn scales_by_table(
    w: *const u8,
    bytes: usize,
    off: usize,
    f16: &[f32; 65536],
    out: &mut [f32],
) {
    for (b, o) in out.iter_mut().enumerate() {
        // SAFETY: block `b < nb` is inside the caller's blocks.
        let h = unsafe { (w.add(b * bytes + off) as *const u16).read_unaligned() };
        *o = f16[h as usize];
    }
}

/// A tile of a 32-element format; `N` activation rows.
///
/// # Safety
/// As for [`crate::kernels::TileFn`]; the CPU supports `S`.
#[inline(always)]
unsafe fn tile_body<S: Simd, B: Block32, const N: usize>(t: &Tile) {
    // SAFETY: the tile contract bounds every pointer below: `nr` rows of `cols / 32` blocks,
    // `N` activation rows of `cols` values and `cols / 32` scales and sums.
    unsafe {
        let nbt = t.cols / 32;
        let f16 = crate::kernels::f16_table();
        let mut sc = [[0.0f32; SEG]; N];
        for r in 0..t.nr {
            let wrow = t.w.add(r * t.row_bytes);
            let mut total = [0.0f32; N];
            let mut b0 = 0;
            while b0 < nbt {
                let nb = (nbt - b0).min(SEG);
                let w = wrow.add(b0 * B::BYTES);
                let d: [*const f32; N] = std::array::from_fn(|i| t.act.d.add(i * nbt + b0));
                let ds: [*const f32; N] = std::array::from_fn(|i| t.act.dsum.add(i * nbt + b0));
                let x: [*const i8; N] = std::array::from_fn(|i| t.act.qs.add(i * t.cols + b0 * 32));
                let corr = prep::<S, B, N>(w, nb, &d, &ds, &mut sc, f16);
                // Independent sums hide the FMA latency: four per activation row when decoding,
                // fewer when several rows already interleave (and registers are scarcer).
                let u = match N {
                    1 => 4,
                    2 => 2,
                    _ => 1,
                };
                let mut acc = [[_mm256_setzero_ps(); 4]; N];
                let mut b = 0;
                while b + u <= nb {
                    prefetch(w.wrapping_add(2 * t.row_bytes + b * B::BYTES), u * B::BYTES);
                    for k in 0..u {
                        let wv = B::load::<S>(w.add((b + k) * B::BYTES));
                        for i in 0..N {
                            let xv = _mm256_loadu_si256(x[i].add((b + k) * 32) as *const __m256i);
                            let p = _mm256_cvtepi32_ps(B::dot::<S>(wv, xv));
                            acc[i][k] = _mm256_fmadd_ps(p, _mm256_set1_ps(sc[i][b + k]), acc[i][k]);
                        }
                    }
                    b += u;
                }
                while b < nb {
                    let w0 = B::load::<S>(w.add(b * B::BYTES));
                    for i in 0..N {
                        let x0 = _mm256_loadu_si256(x[i].add(b * 32) as *const __m256i);
                        let p0 = _mm256_cvtepi32_ps(B::dot::<S>(w0, x0));
                        acc[i][0] = _mm256_fmadd_ps(p0, _mm256_set1_ps(sc[i][b]), acc[i][0]);
                    }
                    b += 1;
                }
                for i in 0..N {
                    let a = acc[i];
                    let sum = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
                    total[i] += hsum(sum) + corr[i];
                }
                b0 += nb;
            }
            for (i, v) in total.iter().enumerate() {
                *t.out.add(i * t.ldo + r) = *v;
            }
        }
    }
}

pub mod avx2 {
    use super::*;
    entry!("avx2,fma,f16c", Avx2, tile_q8_0, tile_body, Q8_0);
    entry!("avx2,fma,f16c", Avx2, tile_q4_0, tile_body, Q4_0);
    entry!("avx2,fma,f16c", Avx2, tile_q4_1, tile_body, Q4_1);
    entry!("avx2,fma,f16c", Avx2, tile_q5_0, tile_body, Q5_0);
    entry!("avx2,fma,f16c", Avx2, tile_q5_1, tile_body, Q5_1);
}

pub mod avx512 {
    use super::*;
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q8_0,
        tile_body,
        Q8_0
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q4_0,
        tile_body,
        Q4_0
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q4_1,
        tile_body,
        Q4_1
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q5_0,
        tile_body,
        Q5_0
    );
    entry!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        Avx512,
        tile_q5_1,
        tile_body,
        Q5_1
    );
}
