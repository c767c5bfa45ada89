//! Dense f32 matrix products `c = a · b` for training, where both operands are activations or
//! f32 weights and either side may be the long one (the output projection's gradient is
//! `[tokens, vocab]`).
//!
//! Unlike [`Kernels::matmul`], which takes dot products along rows of both operands, this is an
//! outer-product GEMM after Goto and van de Geijn ("Anatomy of high-performance matrix
//! multiplication", ACM TOMS 2008): `b` is packed in blocks of [`KC`] × [`NC`] that stay in the
//! L2 cache, `a` in micro-panels of [`MR`] rows, and a micro-kernel keeps an `MR × NR` tile of
//! `c` in registers while it walks `k`, one broadcast of `a` and one FMA per element per step,
//! with no horizontal sums. `a` may be given transposed (`[k, m]`), which makes the weight
//! gradient `dW = dYᵀ·X` a product without copies.
//!
//! Every element of `c` is one chain of fused multiply-adds in the order of `k`, rounded to f32
//! between blocks of [`KC`]: the result depends on neither the thread count (threads take
//! blocks of rows of `c`) nor the instruction set (the scalar twin uses `f32::mul_add`), bit
//! for bit.

use std::cell::RefCell;
use std::ops::Range;

use crate::isa::Isa;
use crate::matmul::{Kernels, OutPtr};

/// Rows of `a` and `c` in a micro-tile.
pub const MR: usize = 12;
/// Columns of `b` and `c` in a micro-tile (two AVX-512 vectors).
pub const NR: usize = 32;
/// Depth of a packed block: a micro-panel of `b` is `KC · NR · 4` = 32 KiB.
pub const KC: usize = 256;
/// Columns of a packed block of `b`: `KC · NC · 4` = 512 KiB, within a Zen 4 or Sapphire
/// Rapids core's L2.
pub const NC: usize = 512;

/// The operands of `c[m, n] = a[m, k] · b[k, n]`.
#[derive(Clone, Copy, Debug)]
pub struct GemmF32<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// `a[i, p]` is `a[i · lda + p]`, or `a[p · lda + i]` when `a_trans` (a stored `[k, m]`).
    pub a: &'a [f32],
    pub lda: usize,
    pub a_trans: bool,
    /// `b[p, j]` is `b[p · ldb + j]`.
    pub b: &'a [f32],
    pub ldb: usize,
}

/// One micro-tile: `c[i · ldc + j] (+)= Σ_p a(p, i) · bp[p · NR + j]` for `i < mr`, `j < nr`,
/// adding to `c` when `load_c`, with `a(p, i) = ap[p · MR + i]` (a packed micro-panel) or, for
/// the kernels that read `a` in place, `a(p, i) = ap[i · lda + p]` (twelve rows of a row-major
/// `a`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Micro {
    pub kc: usize,
    pub ap: *const f32,
    pub lda: usize,
    pub bp: *const f32,
    pub c: *mut f32,
    pub ldc: usize,
    pub mr: usize,
    pub nr: usize,
    pub load_c: bool,
}

/// A micro-kernel.
///
/// # Safety
/// `ap` holds the `kc × MR` values of `a` the kernel reads (packed: `kc · MR` floats; in place:
/// `MR` rows `lda` apart of `kc` floats, and then `mr = MR`), `bp` `kc · NR` floats; `c` is
/// valid for reads and writes at `i · ldc + j` for `i < mr ≤ MR`, `j < nr ≤ NR`; the CPU
/// supports the kernel's ISA.
pub(crate) type MicroFn = unsafe fn(&Micro);

/// The portable micro-kernel body, shared by the scalar twin and the AVX2 build of it: the same
/// FMA chains as the AVX-512 kernel (`f32::mul_add` rounds once, as `vfmadd` does). `DIRECT`:
/// `a` read in place.
///
/// # Safety
/// As for [`MicroFn`].
#[inline(always)]
pub(crate) unsafe fn micro_body<const DIRECT: bool>(u: &Micro) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the caller's contract bounds every access.
    unsafe {
        if u.load_c {
            for (i, row) in acc.iter_mut().enumerate().take(u.mr) {
                for (j, v) in row.iter_mut().enumerate().take(u.nr) {
                    *v = *u.c.add(i * u.ldc + j);
                }
            }
        }
        let bp = std::slice::from_raw_parts(u.bp, u.kc * NR);
        for (p, b) in bp.chunks_exact(NR).enumerate() {
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = if DIRECT {
                    *u.ap.add(i * u.lda + p)
                } else {
                    *u.ap.add(p * MR + i)
                };
                for (v, &bj) in row.iter_mut().zip(b) {
                    *v = ai.mul_add(bj, *v);
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(u.mr) {
            for (j, &v) in row.iter().enumerate().take(u.nr) {
                *u.c.add(i * u.ldc + j) = v;
            }
        }
    }
}

/// The scalar twins: packed `a`, and `a` in place.
///
/// # Safety
/// As for [`MicroFn`].
pub(crate) unsafe fn micro_scalar(u: &Micro) {
    // SAFETY: forwarded contract.
    unsafe { micro_body::<false>(u) }
}

/// # Safety
/// As for [`MicroFn`].
pub(crate) unsafe fn micro_scalar_direct(u: &Micro) {
    // SAFETY: forwarded contract.
    unsafe { micro_body::<true>(u) }
}

/// The kernels of `isa`: packed `a`, and row-major `a` read in place.
fn micro_for(isa: Isa) -> (MicroFn, MicroFn) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (
            crate::kernels::x86::gemm::micro_avx512,
            crate::kernels::x86::gemm::micro_avx512_direct,
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (
            crate::kernels::x86::gemm::micro_avx2,
            crate::kernels::x86::gemm::micro_avx2_direct,
        ),
        _ => (micro_scalar, micro_scalar_direct),
    }
}

thread_local! {
    /// Per-thread packing buffers (`b` block, `a` micro-panel), kept between products: the
    /// pool's threads live as long as the model.
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Kernels {
    /// `c[i · ldc + j] = Σ_p a[i, p] · b[p, j]` for `i < m`, `j < n` (see [`GemmF32`]), on at
    /// most `threads` threads; the same bits whatever `threads`.
    ///
    /// # Panics
    /// If a slice is too short for its shape and leading dimension.
    pub fn gemm_f32(&self, g: &GemmF32, c: &mut [f32], ldc: usize, threads: usize) {
        let (m, n, k) = (g.m, g.n, g.k);
        if m == 0 || n == 0 {
            return;
        }
        let (a_rows, a_cols) = if g.a_trans { (k, m) } else { (m, k) };
        let fits = |len: usize, rows: usize, cols: usize, ld: usize| {
            rows == 0 || (ld >= cols && (rows - 1) * ld + cols <= len)
        };
        assert!(
            fits(g.a.len(), a_rows, a_cols, g.lda),
            "a is not {a_rows}×{a_cols}, ld {}",
            g.lda
        );
        assert!(
            fits(g.b.len(), k, n, g.ldb),
            "b is not {k}×{n}, ld {}",
            g.ldb
        );
        assert!(fits(c.len(), m, n, ldc), "c is not {m}×{n}, ld {ldc}");
        if k == 0 {
            for i in 0..m {
                c[i * ldc..][..n].fill(0.0);
            }
            return;
        }
        let micro = micro_for(self.isa());
        let blocks = m.div_ceil(MR);
        let parts = if m * n * k < 1 << 18 {
            1
        } else {
            threads.clamp(1, blocks)
        };
        let out = OutPtr(c.as_mut_ptr());
        self.run(parts, &|i| {
            let lo = (blocks * i / parts * MR).min(m);
            let hi = (blocks * (i + 1) / parts * MR).min(m);
            if lo < hi {
                gemm_rows(g, lo..hi, out, ldc, micro);
            }
        });
    }
}

/// Rows `rows` of `c` (a range starting on a multiple of [`MR`]). For each block of [`KC`]
/// steps of `k`, this participant's rows of `a` are packed once (a row-major `a` only for a
/// last, partial micro-panel: whole ones are read in place, twelve rows walking forward
/// together), then every block of [`NC`] columns of `b` is packed and multiplied with them.
fn gemm_rows(g: &GemmF32, rows: Range<usize>, c: OutPtr, ldc: usize, micro: (MicroFn, MicroFn)) {
    PACK.with(|p| {
        let (bpack, apack) = &mut *p.borrow_mut();
        let panels = rows.len().div_ceil(MR);
        bpack.resize(KC * NC.next_multiple_of(NR), 0.0);
        apack.resize(KC * MR * panels, 0.0);
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            for (q, ic) in rows.clone().step_by(MR).enumerate() {
                let mr = MR.min(rows.end - ic);
                if g.a_trans || mr < MR {
                    pack_a(g, ic, mr, pc, kc, &mut apack[q * kc * MR..]);
                }
            }
            for jc in (0..g.n).step_by(NC) {
                let nc = NC.min(g.n - jc);
                pack_b(g, pc, kc, jc, nc, bpack);
                for (q, ic) in rows.clone().step_by(MR).enumerate() {
                    let mr = MR.min(rows.end - ic);
                    let direct = !g.a_trans && mr == MR;
                    let (ap, kernel) = if direct {
                        (g.a[ic * g.lda + pc..].as_ptr(), micro.1)
                    } else {
                        (apack[q * kc * MR..].as_ptr(), micro.0)
                    };
                    for jr in (0..nc).step_by(NR) {
                        let u = Micro {
                            kc,
                            ap,
                            lda: g.lda,
                            bp: bpack[jr * kc..].as_ptr(),
                            // SAFETY: `ic < m` and `jc + jr < n`: inside `c` (checked by
                            // `gemm_f32`), in rows this participant owns.
                            c: unsafe { c.0.add(ic * ldc + jc + jr) },
                            ldc,
                            mr,
                            nr: NR.min(nc - jr),
                            load_c: pc > 0,
                        };
                        // SAFETY: the panels hold `kc · MR` and `kc · NR` floats (packed
                        // above) or, in place, rows `ic..ic + MR` of `a` hold columns
                        // `pc..pc + kc` (checked by `gemm_f32`); the tile's `mr × nr` elements
                        // of `c` are inside it and this participant's; `micro_for` chose
                        // kernels of a supported ISA.
                        unsafe { kernel(&u) };
                    }
                }
            }
        }
    });
}

/// Packs `b[pc..pc + kc, jc..jc + nc]` as micro-panels `[nc / NR][kc][NR]`, zero-padded.
fn pack_b(g: &GemmF32, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
    for jr in (0..nc).step_by(NR) {
        let w = NR.min(nc - jr);
        let panel = &mut out[jr * kc..][..kc * NR];
        for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
            let src = &g.b[(pc + p) * g.ldb + jc + jr..];
            if w == NR {
                // A copy of a constant length: moves, not a call to memmove.
                dst.copy_from_slice(&src[..NR]);
            } else {
                dst[..w].copy_from_slice(&src[..w]);
                dst[w..].fill(0.0);
            }
        }
    }
}

/// Packs `a[ic..ic + mr, pc..pc + kc]` as `[kc][MR]`, zero-padded.
fn pack_a(g: &GemmF32, ic: usize, mr: usize, pc: usize, kc: usize, out: &mut [f32]) {
    let out = &mut out[..kc * MR];
    if g.a_trans {
        for (p, dst) in out.chunks_exact_mut(MR).enumerate() {
            let src = &g.a[(pc + p) * g.lda + ic..];
            if mr == MR {
                dst.copy_from_slice(&src[..MR]);
            } else {
                dst[..mr].copy_from_slice(&src[..mr]);
                dst[mr..].fill(0.0);
            }
        }
    } else {
        // Only a last, partial micro-panel is packed (whole ones are read in place).
        out.fill(0.0);
        for i in 0..mr {
            let row = &g.a[(ic + i) * g.lda + pc..][..kc];
            for (p, &v) in row.iter().enumerate() {
                out[p * MR + i] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Every path against an f64 triple loop, and bit for bit against the scalar twin at 1 and
    /// 3 threads, for both layouts of `a`, tails in every dimension and `k` over two blocks.
    #[test]
    fn gemm_matches_naive_and_every_path_gives_the_scalar_bits() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (13, 33, 7),
            (25, 70, 300),
            (40, 600, 520),
            (3, 5, 0),
        ] {
            for a_trans in [false, true] {
                let lda = if a_trans { m + 3 } else { k + 2 };
                let ldb = n + 1;
                let ldc = n + 5;
                let a = data(if a_trans { k * lda } else { m * lda }, 1);
                let b = data(k * ldb, 2);
                let g = GemmF32 {
                    m,
                    n,
                    k,
                    a: &a,
                    lda,
                    a_trans,
                    b: &b,
                    ldb,
                };
                let mut want = vec![0.0f32; m * ldc];
                Kernels::with_isa(1, Isa::Scalar).gemm_f32(&g, &mut want, ldc, 1);
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|p| {
                                let av = if a_trans {
                                    a[p * lda + i]
                                } else {
                                    a[i * lda + p]
                                };
                                av as f64 * b[p * ldb + j] as f64
                            })
                            .sum();
                        let got = want[i * ldc + j] as f64;
                        assert!(
                            (got - exact).abs() <= 1e-5 * (1.0 + k as f64),
                            "{m}x{n}x{k} ({i},{j}): {got} vs {exact}"
                        );
                    }
                }
                for isa in Isa::ALL.into_iter().filter(|i| i.supported()) {
                    for threads in [1, 3] {
                        let mut c = vec![7.0f32; m * ldc];
                        Kernels::with_isa(threads, isa).gemm_f32(&g, &mut c, ldc, threads);
                        for i in 0..m {
                            for j in 0..n {
                                assert_eq!(
                                    c[i * ldc + j].to_bits(),
                                    want[i * ldc + j].to_bits(),
                                    "{isa:?} {threads} threads {m}x{n}x{k} trans {a_trans} ({i},{j})"
                                );
                            }
                            // Past column n the rows are untouched.
                            assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 7.0));
                        }
                    }
                }
            }
        }
    }
}
