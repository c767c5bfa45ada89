//! AVX2 + FMA versions of the element-wise operations (SwiGLU, softmax, attention), and an AVX-512
//! attention.
//!
//! `exp` is evaluated as `2^n · e^r` with `n = round(x · log2 e)` and `|r| ≤ ln 2 / 2`, `e^r` by
//! the degree-6 polynomial of Cephes `expf` (S. Moshier, Cephes Math Library), `ln 2` split in
//! two parts so that `r` is exact. Its error is about 1 ulp in the range the models use, against
//! the correctly rounded `f32::exp` of the scalar twins.

use std::arch::x86_64::*;

use super::hsum;
use crate::ops::{AttnPrims, AttnShape, KvElem, Mix, attention_with};

/// `e^x` for eight lanes; inputs are clamped to `[-87.3, 88.7]`, where `e^x` is finite and
/// normal (below that the models only need "about zero").
///
/// # Safety
/// AVX2 + FMA.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    // SAFETY: AVX2 + FMA (caller).
    unsafe {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.7),
        );
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let e = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        // Multiply by 2^n through the exponent bits (n is within ±127 after the clamp).
        let bits = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(e), bits))
    }
}

/// # Safety
/// AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let main = n / 8 * 8;
    let mut i = 0;
    // SAFETY: `i + 8 ≤ main ≤ n` for every vector access.
    unsafe {
        let one = _mm256_set1_ps(1.0);
        while i < main {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
            let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
            _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(s, u));
            i += 8;
        }
    }
    crate::ops::reference::silu_mul(&mut gate[main..n], &up[main..n]);
}

/// # Safety
/// AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax(x: &mut [f32]) {
    // SAFETY: AVX2 + FMA (this function's features).
    unsafe { softmax_body(x) }
}

/// # Safety
/// AVX2 + FMA.
#[inline(always)]
unsafe fn softmax_body(x: &mut [f32]) {
    let n = x.len();
    let main = n / 8 * 8;
    // SAFETY: every vector access is below `main ≤ n`.
    unsafe {
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < main {
            m = _mm256_max_ps(m, _mm256_loadu_ps(x.as_ptr().add(i)));
            i += 8;
        }
        let mut max = {
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)))
        };
        for &v in &x[main..] {
            max = max.max(v);
        }
        let mv = _mm256_set1_ps(max);
        let mut s = _mm256_setzero_ps();
        i = 0;
        while i < main {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), mv));
            _mm256_storeu_ps(x.as_mut_ptr().add(i), e);
            s = _mm256_add_ps(s, e);
            i += 8;
        }
        let mut sum = hsum(s);
        for v in &mut x[main..] {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = _mm256_set1_ps(1.0 / sum);
        i = 0;
        while i < main {
            let p = x.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), inv));
            i += 8;
        }
        for v in &mut x[main..] {
            *v *= 1.0 / sum;
        }
    }
}

/// One vector width of the attention primitives.
trait AttnVec {
    type V: Copy;
    const LANES: usize;
    /// Accumulators [`mix_body`] keeps in registers (half the register file).
    const ACC: usize;
    /// [`AttnPrims::dot`] on this width.
    ///
    /// # Safety
    /// The path's features.
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32;
    /// Scores [`AttnVec::dots`] computes at once.
    const DOTS: usize;
    /// `out[j] = dot(q, k + j · stride) · scale` for `j < DOTS`, bit for bit [`AttnVec::dot`]
    /// and the product, with the reductions of all `DOTS` sums done side by side in the lanes
    /// of a few vectors (the same pairs added in the same order as one by one).
    ///
    /// # Safety
    /// `hd` (a multiple of 16) floats at `q` and at each `k + j · stride`; `DOTS` writable
    /// floats at `out`; the path's features.
    unsafe fn dots(
        q: *const f32,
        hd: usize,
        k: *const f32,
        stride: usize,
        scale: f32,
        out: *mut f32,
    );
    /// `LANES` floats from `x`.
    ///
    /// # Safety
    /// `LANES` readable floats at `x`; the path's features.
    unsafe fn load(x: *const f32) -> Self::V;
    /// `acc + a · x`, fused.
    ///
    /// # Safety
    /// The path's features.
    unsafe fn fma(a: f32, x: Self::V, acc: Self::V) -> Self::V;
    /// # Safety
    /// `LANES` writable floats at `out`; the path's features.
    unsafe fn store(out: *mut f32, v: Self::V);
    /// `LANES` f16 (as bits) at `src` widened to f32 at `dst` (`vcvtph2ps`, exact).
    ///
    /// # Safety
    /// `LANES` readable halves at `src` and writable floats at `dst`; the path's features.
    unsafe fn widen(src: *const u16, dst: *mut f32);
}

struct Avx2Vec;
struct Avx512Vec;

impl AttnVec for Avx2Vec {
    type V = __m256;
    const LANES: usize = 8;
    const ACC: usize = 8;
    const DOTS: usize = 8;
    #[inline(always)]
    unsafe fn dots(
        q: *const f32,
        hd: usize,
        k: *const f32,
        stride: usize,
        scale: f32,
        out: *mut f32,
    ) {
        // SAFETY: AVX2 + FMA (caller); every access below `hd` of `q` and of the `DOTS` rows.
        unsafe {
            let mut s = [[_mm256_setzero_ps(); 2]; 8];
            let mut i = 0;
            while i < hd {
                let (q0, q1) = (_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(q.add(i + 8)));
                for (j, sj) in s.iter_mut().enumerate() {
                    let kj = k.add(j * stride + i);
                    sj[0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(kj), sj[0]);
                    sj[1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(kj.add(8)), sj[1]);
                }
                i += 16;
            }
            let u: [__m256; 8] = std::array::from_fn(|j| _mm256_add_ps(s[j][0], s[j][1]));
            // `hsum`'s tree on eight sums at once: halves, then lanes 0 + 2 and 1 + 3, then
            // 0 + 1. Taking them in the order below puts sum `j`'s total in lane `j`.
            let r = [u[0], u[4], u[1], u[5], u[2], u[6], u[3], u[7]];
            let x: [__m256; 4] = std::array::from_fn(|m| {
                let (a, b) = (r[2 * m], r[2 * m + 1]);
                _mm256_add_ps(
                    _mm256_permute2f128_ps::<0x20>(a, b),
                    _mm256_permute2f128_ps::<0x31>(a, b),
                )
            });
            let y: [__m256; 2] = std::array::from_fn(|m| {
                let (a, b) = (x[2 * m], x[2 * m + 1]);
                _mm256_add_ps(
                    _mm256_shuffle_ps::<0x44>(a, b),
                    _mm256_shuffle_ps::<0xee>(a, b),
                )
            });
            let w = _mm256_add_ps(
                _mm256_shuffle_ps::<0x88>(y[0], y[1]),
                _mm256_shuffle_ps::<0xdd>(y[0], y[1]),
            );
            _mm256_storeu_ps(out, _mm256_mul_ps(w, _mm256_set1_ps(scale)));
        }
    }
    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let main = n / 16 * 16;
        // SAFETY: AVX2 + FMA (caller); accesses below `main ≤ n`.
        unsafe {
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i < main {
                let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), s1);
                i += 16;
            }
            let mut s = hsum(_mm256_add_ps(s0, s1));
            for j in main..n {
                s += a[j] * b[j];
            }
            s
        }
    }
    #[inline(always)]
    unsafe fn load(x: *const f32) -> __m256 {
        // SAFETY: caller's contract.
        unsafe { _mm256_loadu_ps(x) }
    }
    #[inline(always)]
    unsafe fn fma(a: f32, x: __m256, acc: __m256) -> __m256 {
        // SAFETY: AVX2 + FMA (caller).
        unsafe { _mm256_fmadd_ps(_mm256_set1_ps(a), x, acc) }
    }
    #[inline(always)]
    unsafe fn store(out: *mut f32, v: __m256) {
        // SAFETY: caller's contract.
        unsafe { _mm256_storeu_ps(out, v) }
    }
    #[inline(always)]
    unsafe fn widen(src: *const u16, dst: *mut f32) {
        // SAFETY: caller's contract (F16C is part of both paths).
        unsafe { _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128(src.cast()))) }
    }
}

/// 16-lane dot products, the last partial vector masked.
impl AttnVec for Avx512Vec {
    type V = __m512;
    const LANES: usize = 16;
    const ACC: usize = 16;
    const DOTS: usize = 16;
    #[inline(always)]
    unsafe fn dots(
        q: *const f32,
        hd: usize,
        k: *const f32,
        stride: usize,
        scale: f32,
        out: *mut f32,
    ) {
        // SAFETY: AVX-512F (caller); every access below `hd` of `q` and of the `DOTS` rows.
        unsafe {
            let mut s = [_mm512_setzero_ps(); 16];
            let mut i = 0;
            while i < hd {
                let qv = _mm512_loadu_ps(q.add(i));
                for (j, sj) in s.iter_mut().enumerate() {
                    *sj = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k.add(j * stride + i)), *sj);
                }
                i += 16;
            }
            // `_mm512_reduce_add_ps`'s tree on sixteen sums at once: halves, quarters, lanes
            // 0 + 2 and 1 + 3, then 0 + 1. Taking them transposed by fours puts sum `j`'s
            // total in lane `j`.
            let r: [__m512; 16] = std::array::from_fn(|i| s[4 * (i % 4) + i / 4]);
            let x: [__m512; 8] = std::array::from_fn(|m| {
                let (a, b) = (r[2 * m], r[2 * m + 1]);
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x44>(a, b),
                    _mm512_shuffle_f32x4::<0xee>(a, b),
                )
            });
            let y: [__m512; 4] = std::array::from_fn(|m| {
                let (a, b) = (x[2 * m], x[2 * m + 1]);
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x88>(a, b),
                    _mm512_shuffle_f32x4::<0xdd>(a, b),
                )
            });
            let z: [__m512; 2] = std::array::from_fn(|m| {
                let (a, b) = (y[2 * m], y[2 * m + 1]);
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x44>(a, b),
                    _mm512_shuffle_ps::<0xee>(a, b),
                )
            });
            let w = _mm512_add_ps(
                _mm512_shuffle_ps::<0x88>(z[0], z[1]),
                _mm512_shuffle_ps::<0xdd>(z[0], z[1]),
            );
            _mm512_storeu_ps(out, _mm512_mul_ps(w, _mm512_set1_ps(scale)));
        }
    }
    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let main = n / 16 * 16;
        // SAFETY: AVX-512F (caller); the masked load reads only the `n - main` floats that
        // exist.
        unsafe {
            let mut s = _mm512_setzero_ps();
            let mut i = 0;
            while i < main {
                let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
                s = _mm512_fmadd_ps(_mm512_loadu_ps(pa), _mm512_loadu_ps(pb), s);
                i += 16;
            }
            if main < n {
                let m: __mmask16 = (1u16 << (n - main)) - 1;
                let (pa, pb) = (a.as_ptr().add(main), b.as_ptr().add(main));
                s = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(m, pa),
                    _mm512_maskz_loadu_ps(m, pb),
                    s,
                );
            }
            _mm512_reduce_add_ps(s)
        }
    }
    #[inline(always)]
    unsafe fn load(x: *const f32) -> __m512 {
        // SAFETY: caller's contract.
        unsafe { _mm512_loadu_ps(x) }
    }
    #[inline(always)]
    unsafe fn fma(a: f32, x: __m512, acc: __m512) -> __m512 {
        // SAFETY: AVX-512F (caller).
        unsafe { _mm512_fmadd_ps(_mm512_set1_ps(a), x, acc) }
    }
    #[inline(always)]
    unsafe fn store(out: *mut f32, v: __m512) {
        // SAFETY: caller's contract.
        unsafe { _mm512_storeu_ps(out, v) }
    }
    #[inline(always)]
    unsafe fn widen(src: *const u16, dst: *mut f32) {
        // SAFETY: caller's contract.
        unsafe { _mm512_storeu_ps(dst, _mm512_cvtph_ps(_mm256_loadu_si256(src.cast()))) }
    }
}

/// [`AttnPrims::mix`]: the outputs stay in vector registers while the rows stream past (up to
/// eight vectors of one head, or of two or four heads at once, which then share each load of a
/// value row; at most [`AttnVec::ACC`] in all): one fused multiply-add per element and row, in
/// row order, onto the outputs, the same arithmetic at any vector width and in any company; the
/// dimensions past the last whole vector one by one.
///
/// # Safety
/// The features of `M`'s path.
#[inline(always)]
unsafe fn mix_body<M: AttnVec>(out: &mut [f32], p: &[f32], rows: &[f32], m: Mix) {
    let Mix { hd, ps, n, stride } = m;
    let g = out.len() / hd.max(1);
    assert!(out.len() == g * hd && (g == 0 || n == 0 || p.len() >= (g - 1) * ps + n));
    assert!(n == 0 || (n - 1) * stride + hd <= rows.len());
    let whole = hd / M::LANES;
    let mut j = 0;
    // SAFETY: row `t < n` holds `hd` floats at `t · stride` and head `j < g` has `n` weights
    // at `p[j · n]` and `hd` outputs at `out[j · hd]` (asserted); every vector access is below
    // `whole · LANES ≤ hd`.
    unsafe {
        while j < g {
            let hp = if g - j >= 4 {
                4
            } else if g - j >= 2 {
                2
            } else {
                1
            };
            let mut v0 = 0;
            while v0 < whole {
                let nv = (whole - v0).min(8).min(M::ACC / hp);
                let o = out.as_mut_ptr().add(j * hd + v0 * M::LANES);
                let (pj, r) = (p.as_ptr().add(j * ps), rows.as_ptr().add(v0 * M::LANES));
                macro_rules! go {
                    ($($nv:literal),*) => {
                        match (nv, hp) {
                            $(
                                ($nv, 1) => mix_block::<M, $nv, 1>(o, pj, r, m),
                                ($nv, 2) => mix_block::<M, $nv, 2>(o, pj, r, m),
                            )*
                            (1, _) => mix_block::<M, 1, 4>(o, pj, r, m),
                            (2, _) => mix_block::<M, 2, 4>(o, pj, r, m),
                            (3, _) => mix_block::<M, 3, 4>(o, pj, r, m),
                            _ => mix_block::<M, 4, 4>(o, pj, r, m),
                        }
                    };
                }
                go!(1, 2, 3, 4, 5, 6, 7, 8);
                v0 += nv;
            }
            j += hp;
        }
    }
    for (j, oh) in out.chunks_exact_mut(hd.max(1)).enumerate() {
        for (d, o) in oh.iter_mut().enumerate().skip(whole * M::LANES) {
            for t in 0..n {
                *o = p[j * ps + t].mul_add(rows[t * stride + d], *o);
            }
        }
    }
}

/// `NV` vectors of `HP` heads.
///
/// # Safety
/// `NV · LANES` floats to add to at `out + j · hd` and `n` weights at `p + j · ps` for `j <
/// HP`; `NV · LANES` floats at `rows + t · stride` for `t < n`; `M`'s features.
#[inline(always)]
unsafe fn mix_block<M: AttnVec, const NV: usize, const HP: usize>(
    out: *mut f32,
    p: *const f32,
    rows: *const f32,
    m: Mix,
) {
    let Mix { hd, ps, n, stride } = m;
    // SAFETY: caller's contract.
    unsafe {
        let mut acc: [[M::V; NV]; HP] = std::array::from_fn(|j| {
            std::array::from_fn(|i| M::load(out.add(j * hd + i * M::LANES)))
        });
        for t in 0..n {
            let r = rows.add(t * stride);
            for i in 0..NV {
                let x = M::load(r.add(i * M::LANES));
                for j in 0..HP {
                    acc[j][i] = M::fma(*p.add(j * ps + t), x, acc[j][i]);
                }
            }
        }
        for j in 0..HP {
            for i in 0..NV {
                M::store(out.add(j * hd + i * M::LANES), acc[j][i]);
            }
        }
    }
}

/// The primitives on one vector width; the softmax is the AVX2 one on both paths.
struct Prims<V>(std::marker::PhantomData<V>);

impl<V: AttnVec> AttnPrims for Prims<V> {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only inlined into the entry points below, which have `V`'s features.
        unsafe { V::dot(a, b) }
    }

    #[inline(always)]
    fn scores(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        let (hd, n) = (q.len(), out.len());
        assert!(n == 0 || (n - 1) * stride + hd <= rows.len());
        let mut t = 0;
        if hd.is_multiple_of(16) {
            while t + V::DOTS <= n {
                // SAFETY: rows `t..t + DOTS` lie inside `rows` (asserted), `out` has `DOTS`
                // floats from `t`; the features as for `dot`.
                unsafe {
                    let (q, k, o) = (q.as_ptr(), rows.as_ptr().add(t * stride), out.as_mut_ptr());
                    // The cache's rows lie side by side (stride = head size): with both known
                    // here, `dots` (inlined) reads its rows at fixed offsets from one address
                    // instead of keeping a pointer per row (which spilled to the stack).
                    match (hd, stride) {
                        (64, 64) => V::dots(q, 64, k, 64, scale, o.add(t)),
                        (128, 128) => V::dots(q, 128, k, 128, scale, o.add(t)),
                        _ => V::dots(q, hd, k, stride, scale, o.add(t)),
                    }
                }
                t += V::DOTS;
            }
        }
        for (t, o) in out.iter_mut().enumerate().skip(t) {
            *o = Self::dot(q, &rows[t * stride..][..hd]) * scale;
        }
    }

    #[inline(always)]
    fn mix(out: &mut [f32], p: &[f32], rows: &[f32], m: Mix) {
        // SAFETY: as for `dot`.
        unsafe { mix_body::<V>(out, p, rows, m) }
    }

    #[inline(always)]
    fn softmax(x: &mut [f32]) {
        // SAFETY: as for `dot` (both paths include AVX2 + FMA).
        unsafe { softmax_body(x) }
    }

    #[inline(always)]
    fn widen(src: &[half::f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let main = n / V::LANES * V::LANES;
        let mut i = 0;
        while i < main {
            // SAFETY: `i + LANES ≤ main ≤ n` elements of both; the features as for `dot`.
            unsafe { V::widen(src.as_ptr().add(i).cast(), dst.as_mut_ptr().add(i)) };
            i += V::LANES;
        }
        for (d, s) in dst[main..n].iter_mut().zip(&src[main..n]) {
            *d = s.to_f32();
        }
    }

    #[inline(always)]
    fn prefetch<E>(x: &[E]) {
        // Every line: asking for every other one (the adjacent-line prefetcher taking the
        // rest) was slower than none.
        let (p, bytes) = (x.as_ptr().cast::<u8>(), std::mem::size_of_val(x));
        for at in (0..bytes).step_by(64) {
            // SAFETY: a hint only; the address is inside `x`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(at).cast()) }
        }
    }
}

/// Defines an attention entry point for one path: [`attention_with`] on `Prims<$v>`.
macro_rules! attention_entries {
    ($($name:ident: $feat:literal, $v:ty;)*) => {
        $(
            /// # Safety
            /// The CPU has the features of this path.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name<E: KvElem>(
                out: &mut [f32],
                q: &[f32],
                k: &[E],
                v: &[E],
                n_past: &[usize],
                shape: AttnShape,
                heads: std::ops::Range<usize>,
                scores: &mut [f32],
            ) {
                attention_with::<Prims<$v>, E>(out, q, k, v, n_past, shape, heads, scores)
            }
        )*
    };
}

attention_entries! {
    attention: "avx2,fma,f16c", Avx2Vec;
    attention_avx512: "avx2,fma,f16c,avx512f", Avx512Vec;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores of `n` positions both ways: [`AttnPrims::scores`] (blocks of `V::DOTS` with the
    /// side-by-side reductions) and one [`AttnVec::dot`] each.
    ///
    /// # Safety
    /// The CPU has `V`'s features (the callers below enable them).
    #[inline(always)]
    unsafe fn both<V: AttnVec>(q: &[f32], rows: &[f32], stride: usize, n: usize) -> [Vec<f32>; 2] {
        let scale = 0.125f32;
        let mut block = vec![0.0f32; n];
        Prims::<V>::scores(q, rows, stride, scale, &mut block);
        // SAFETY: caller's contract.
        let one = (0..n)
            .map(|t| unsafe { V::dot(q, &rows[t * stride..][..q.len()]) } * scale)
            .collect();
        [block, one]
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn both_avx2(q: &[f32], rows: &[f32], stride: usize, n: usize) -> [Vec<f32>; 2] {
        // SAFETY: this function's features.
        unsafe { both::<Avx2Vec>(q, rows, stride, n) }
    }

    #[target_feature(enable = "avx2,fma,avx512f")]
    unsafe fn both_avx512(q: &[f32], rows: &[f32], stride: usize, n: usize) -> [Vec<f32>; 2] {
        // SAFETY: this function's features.
        unsafe { both::<Avx512Vec>(q, rows, stride, n) }
    }

    /// The blocked scores are the one-by-one scores bit for bit, so attention gives what it
    /// gave before and the same in every batch.
    #[test]
    fn blocked_scores_equal_one_dot_at_a_time() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        };
        for hd in [16, 32, 64, 80, 128, 256, 36] {
            for n in [0, 1, 7, 8, 16, 17, 40, 64] {
                let stride = 3 * hd + 4;
                let q: Vec<f32> = (0..hd).map(|_| next()).collect();
                let rows: Vec<f32> = (0..n.max(1) * stride).map(|_| next()).collect();
                let mut paths = Vec::new();
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: checked above.
                    paths.push(("avx2", unsafe { both_avx2(&q, &rows, stride, n) }));
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: checked above.
                    paths.push(("avx512", unsafe { both_avx512(&q, &rows, stride, n) }));
                }
                for (isa, [block, one]) in paths {
                    for t in 0..n {
                        assert_eq!(
                            block[t].to_bits(),
                            one[t].to_bits(),
                            "{isa} hd {hd} n {n} t {t}: {} vs {}",
                            block[t],
                            one[t]
                        );
                    }
                }
            }
        }
    }
}
