//! Every SIMD path this CPU supports against its scalar twin, on random and adversarial data.
//!
//! Both paths quantize activations identically (same rounding), so they compute the same
//! integer sums; only the order of the f32 additions differs. The tolerance is therefore relative
//! to the size of the terms being added.

use camelid_kernels::quant::dequantize_row;
use camelid_kernels::{DType, Isa, Kernels, Precision, WeightView};
use half::f16;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Offsets of the f16 fields of one block (scales, minimums).
fn half_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::IQ4_NL | DType::IQ4_XS => &[0],
        DType::IQ3_S
        | DType::IQ3_XXS
        | DType::IQ2_XXS
        | DType::IQ2_XS
        | DType::IQ2_S
        | DType::IQ1_S => &[0],
        // Its f16 scale is spread over four nibbles: see `weights`.
        DType::IQ1_M => &[],
        DType::TQ1_0 => &[52],
        DType::TQ2_0 => &[64],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        DType::F32 | DType::F16 | DType::BF16 => &[],
    }
}

/// Random bytes with sane (finite) halves, in one of several adversarial styles.
fn weights(dtype: DType, rows: usize, cols: usize, style: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = dtype.row_bytes(cols).unwrap();
    let mut w: Vec<u8> = (0..rows * rb).map(|_| rng.next() as u8).collect();
    match dtype {
        DType::F32 => {
            for c in w.chunks_exact_mut(4) {
                let v = (rng.unit() - 0.5) * if style == 1 { 1e4 } else { 1.0 };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 | DType::BF16 => {
            for c in w.chunks_exact_mut(2) {
                let v = rng.unit() - 0.5;
                let b = if dtype == DType::F16 {
                    f16::from_f32(v).to_le_bytes()
                } else {
                    half::bf16::from_f32(v).to_le_bytes()
                };
                c.copy_from_slice(&b);
            }
        }
        _ => {
            let bb = dtype.block_bytes();
            for blk in w.chunks_exact_mut(bb) {
                if dtype == DType::Q8_0 && style == 2 {
                    // Every value −128: the end of the signed range.
                    blk[2..].fill(0x80);
                }
                if style == 3 {
                    // All bits set: the largest levels everywhere.
                    blk.fill(0xff);
                }
                if dtype == DType::IQ1_M {
                    // d's four nibbles are the top nibbles of the u16 words at 48..56.
                    let d = f16::from_f32(rng.unit() - 0.5).to_bits();
                    for k in 0..4 {
                        let at = 49 + 2 * k;
                        blk[at] = (blk[at] & 0x0f) | (((d >> (4 * k)) & 0xf) as u8) << 4;
                    }
                }
                for &off in half_fields(dtype) {
                    let v = match (style, rng.below(4)) {
                        (1, _) => 60000.0 * if rng.below(2) == 0 { 1.0 } else { -1.0 },
                        (_, 0) => 0.0,
                        (_, 1) => 1e-6,
                        _ => rng.unit() - 0.5,
                    };
                    blk[off..off + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
        }
    }
    w
}

fn activations(n: usize, cols: usize, style: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n * cols)
        .map(|i| match style {
            // A zero row, and a row of one huge value among small ones.
            1 if i / cols == 0 => 0.0,
            1 if i % cols == 5 => 3e4,
            // Every activation the same: with the largest levels (weights' style 3), the
            // largest integer sums a block can have.
            3 => 1.0,
            _ => (rng.unit() - 0.5) * 4.0,
        })
        .collect()
}

#[test]
fn simd_paths_match_scalar_twins() {
    let scalar = Kernels::with_isa(2, Isa::Scalar);
    let paths: Vec<Kernels> = Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .map(|i| Kernels::with_isa(2, i))
        .collect();
    eprintln!(
        "checking {:?} against scalar",
        paths.iter().map(|k| k.isa()).collect::<Vec<_>>()
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for dtype in DType::ALL {
        let bs = dtype.block_size().max(32);
        // One block; odd counts of blocks and rows; more blocks than one pass of 256 holds.
        // Panels: 8 (quantized) or 16 (float) rows and a short last one; float columns past one
        // pass of 256.
        let shapes = [
            (1, bs),
            (13, 3 * bs),
            (5, 2 * bs),
            (17, bs * 9),
            (3, 33 * 256),
            (19, 2 * bs),
        ];
        for (rows, cols) in shapes {
            // Float weights: lengths that are no multiple of the vector width.
            let cols = match (dtype.block_size(), rows) {
                (1, 1) => 37,
                (1, 19) => 45,
                _ => cols,
            };
            for style in 0..4 {
                let wq = weights(dtype, rows, cols, style, &mut rng);
                let w = WeightView::new(dtype, rows, cols, &wq).unwrap();
                let mut wd = vec![0.0f32; rows * cols];
                let rb = dtype.row_bytes(cols).unwrap();
                for r in 0..rows {
                    dequantize_row(dtype, &wq[r * rb..][..rb], &mut wd[r * cols..][..cols]);
                }
                // Formats with an offset or a minimum add terms larger than the weights before
                // they cancel; four times the largest weight of the block bounds them.
                let bmax: Vec<f32> = wd
                    .chunks(dtype.block_size())
                    .flat_map(|b| {
                        let m = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                        std::iter::repeat_n(4.0 * m, b.len())
                    })
                    .collect();
                // 8 and more activation rows take the prompt-pass kernels (panels) where a path
                // has them (some from 16).
                for n in [1, 2, 3, 4, 6, 9, 17] {
                    let x = activations(n, cols, style, &mut rng);
                    // Float weights are exact at either precision, BF16 only at `Exact`:
                    // both paths of the float types.
                    let precisions: &[Precision] = if dtype.block_size() == 1 {
                        &[Precision::Fast, Precision::Exact]
                    } else {
                        &[Precision::Fast]
                    };
                    for &precision in precisions {
                        let mut want = vec![0.0f32; n * rows];
                        scalar.matmul_with(&w, &x, &mut want, 2, precision);
                        for k in &paths {
                            let mut got = vec![0.0f32; n * rows];
                            k.matmul_with(&w, &x, &mut got, 2, precision);
                            for t in 0..n {
                                for r in 0..rows {
                                    let mag: f64 = (0..cols)
                                        .map(|c| {
                                            bmax[r * cols + c] as f64
                                                * (x[t * cols + c] as f64).abs()
                                        })
                                        .sum();
                                    let (g, e) = (got[t * rows + r], want[t * rows + r]);
                                    assert!(
                                        ((g - e) as f64).abs() <= 2e-5 * mag + 1e-30,
                                        "{} {dtype} {precision:?} {rows}x{cols} style {style} n={n} \
                                     t={t} r={r}: {g} vs scalar {e} (bound {mag:e})",
                                        k.isa()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A row's result must not depend on the batch it is computed in: a prompt pass (panels), a
/// decode step (one activation row) and a server batch (a few rows) give the same bits, on every
/// path and for every type. Otherwise a cached prompt, a crowd of requests or the split of a
/// prompt into batches would change the logits, and with them seeded and greedy outputs.
#[test]
fn results_do_not_depend_on_the_batch() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for isa in Isa::available() {
        let k = Kernels::with_isa(2, isa);
        for dtype in DType::ALL {
            let bs = dtype.block_size().max(32);
            for (rows, cols) in [(19, 2 * bs), (8, 9 * bs), (37, 256), (3, 33 * 256)] {
                let cols = if dtype.block_size() == 1 && rows == 19 {
                    45
                } else {
                    cols
                };
                let wq = weights(dtype, rows, cols, 0, &mut rng);
                let w = WeightView::new(dtype, rows, cols, &wq).unwrap();
                // Past the row count from which each path takes its panels (8, or 192 for the
                // `vdpbf16ps` one).
                let n = if rows == 37 { 200 } else { 13 };
                let x = activations(n, cols, 0, &mut rng);
                let mut all = vec![0.0f32; n * rows];
                k.matmul_with(&w, &x, &mut all, 2, Precision::Fast);
                // Each row alone, and rows 3..6 as a batch of three.
                for t in 0..n {
                    let mut one = vec![0.0f32; rows];
                    k.matmul_with(&w, &x[t * cols..][..cols], &mut one, 1, Precision::Fast);
                    let got = &all[t * rows..][..rows];
                    assert!(
                        one.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa} {dtype} {rows}x{cols}: row {t} alone {one:?} vs in a batch of {n} {got:?}"
                    );
                }
                let mut three = vec![0.0f32; 3 * rows];
                k.matmul_with(&w, &x[3 * cols..6 * cols], &mut three, 2, Precision::Fast);
                assert_eq!(three, all[3 * rows..6 * rows], "{isa} {dtype}: batch of 3");
            }
        }
    }
}

/// BF16 weights at the fast precision: every path computes the scalar twin's steps (bf16
/// activations, the pairs of each 16-lane `vdpbf16ps`, a tree sum), so on data without
/// subnormals (where only `vdpbf16ps` flushes to zero) they agree bit for bit; and the result
/// is within the rounding of the activations of an f64 product.
#[test]
fn bf16_fast_equals_its_twin_and_the_rounding_bound() {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let scalar = Kernels::with_isa(1, Isa::Scalar);
    for (rows, cols) in [
        (1, 1),
        (9, 31),
        (17, 32),
        (13, 33),
        (8, 95),
        (21, 2048 + 17),
    ] {
        let wq = weights(DType::BF16, rows, cols, 0, &mut rng);
        let w = WeightView::new(DType::BF16, rows, cols, &wq).unwrap();
        let mut wd = vec![0.0f32; rows * cols];
        dequantize_row(DType::BF16, &wq, &mut wd);
        // 200 rows: past the row count from which a path may take a panel instead of its tile
        // (192 for the `vdpbf16ps` one).
        for n in [1, 2, 4, 5, 9, 200] {
            let mut x = activations(n, cols, 0, &mut rng);
            // Ties of the bf16 rounding (both directions) and a value that rounds up a binade.
            x[0] = f32::from_bits(0x3f80_8000);
            x[n * cols - 1] = -f32::from_bits(0x3f81_8000);
            if cols > 2 {
                x[1] = f32::from_bits(0x3fff_ffff);
            }
            let mut want = vec![0.0f32; n * rows];
            scalar.matmul_with(&w, &x, &mut want, 1, Precision::Fast);
            for t in 0..n {
                for r in 0..rows {
                    let (wr, xt) = (&wd[r * cols..][..cols], &x[t * cols..][..cols]);
                    let exact: f64 = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let mag: f64 = wr
                        .iter()
                        .zip(xt)
                        .map(|(&a, &b)| (a as f64 * b as f64).abs())
                        .sum();
                    // 2⁻⁸ per activation (bf16 keeps 8 significant bits), plus f32 sums over at most `cols` terms.
                    let bound = mag * (1.0 / 256.0 + cols as f64 * 1.2e-7);
                    let e = want[t * rows + r] as f64;
                    assert!(
                        (e - exact).abs() <= bound,
                        "{rows}x{cols} n={n}: {e} vs {exact}"
                    );
                }
            }
            for isa in Isa::available() {
                let k = Kernels::with_isa(2, isa);
                let mut got = vec![0.0f32; n * rows];
                k.matmul_with(&w, &x, &mut got, 2, Precision::Fast);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{isa} {rows}x{cols} n={n} #{i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}
