//! IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 against llama.cpp (`testdata/kernels/iquant_reference.json`,
//! written by `tools/iquant_reference.py` with gguf-py's dequantizers and libggml's quantizer).

use crate::quant_reference::{f32s, hex};
use camelid_kernels::quant::{can_quantize, dequantize_row, quantize_row};
use camelid_kernels::{DType, Isa, Kernels, Precision, WeightView};
use serde_json::Value;

pub const TYPES: [DType; 11] = [
    DType::IQ4_NL,
    DType::IQ4_XS,
    DType::TQ1_0,
    DType::TQ2_0,
    DType::IQ3_S,
    DType::IQ3_XXS,
    DType::IQ2_XXS,
    DType::IQ2_XS,
    DType::IQ2_S,
    DType::IQ1_S,
    DType::IQ1_M,
];

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/kernels/iquant_reference.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run tools/iquant_reference.py)"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Random blocks (every field random) and llama.cpp's quantization of a test matrix decode to
/// gguf-py's floats bit for bit.
#[test]
fn iquants_dequantize_bit_exact_to_gguf_py() {
    let fx = fixture();
    for dtype in TYPES {
        let case = &fx["dequant"][dtype.name()];
        let blocks = hex(&case["blocks"]);
        let want = f32s(&case["values_f32le"]);
        assert_eq!(Some(blocks.len()), dtype.row_bytes(want.len()), "{dtype}");
        let mut got = vec![0.0f32; want.len()];
        dequantize_row(dtype, &blocks, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{dtype} element {i}: {g} vs gguf-py {w}"
            );
        }
    }
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The fused dot products of every path (and the exact path) against gguf-py's dequantized
/// weights times the activations in f64. The fast paths round each block of 32 activations to
/// 8 bits (step `max|x| / 127`), so each product may be off by at most
/// `Σ |w| · step / 2`; f32 accumulation adds a relative 1e-5 of `Σ |w·x|`.
#[test]
fn iquant_dots_match_dequantized_reference_on_every_path() {
    let fx = fixture();
    let cols = 512;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for dtype in TYPES {
        let case = &fx["dequant"][dtype.name()];
        let blocks = hex(&case["blocks"]);
        let wd = f32s(&case["values_f32le"]);
        let rows = wd.len() / cols;
        let rb = dtype.row_bytes(cols).unwrap();
        let w = WeightView::new(dtype, rows, cols, &blocks[..rows * rb]).unwrap();
        let n = 9; // past the panel threshold, so the prompt-pass kernels run too
        let mut x: Vec<f32> = (0..n * cols).map(|_| (rng.unit() - 0.5) * 4.0).collect();
        x[cols..2 * cols]
            .iter_mut()
            .step_by(7)
            .for_each(|v| *v *= 50.0); // outliers
        for isa in Isa::available() {
            let k = Kernels::with_isa(2, isa);
            for precision in [Precision::Fast, Precision::Exact] {
                let mut got = vec![0.0f32; n * rows];
                k.matmul_with(&w, &x, &mut got, 2, precision);
                for t in 0..n {
                    let xt = &x[t * cols..][..cols];
                    for r in 0..rows {
                        let wr = &wd[r * cols..][..cols];
                        let want: f64 = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let mag: f64 = wr
                            .iter()
                            .zip(xt)
                            .map(|(&a, &b)| (a as f64 * b as f64).abs())
                            .sum();
                        let act: f64 = if precision == Precision::Fast {
                            wr.chunks(32)
                                .zip(xt.chunks(32))
                                .map(|(wb, xb)| {
                                    let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                                    let sw: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                                    sw * amax as f64 / 127.0 / 2.0
                                })
                                .sum()
                        } else {
                            0.0
                        };
                        let g = got[t * rows + r] as f64;
                        assert!(
                            (g - want).abs() <= act * 1.0001 + 1e-5 * mag + 1e-30,
                            "{isa} {precision:?} {dtype} t={t} r={r}: {g} vs {want} (bound {act:e} + {mag:e})"
                        );
                    }
                }
            }
        }
    }
}

/// The ternary quantizers write llama.cpp's bytes; the IQ4 quantizers' RMS error is no larger
/// than llama.cpp's on any row of the test matrix.
#[test]
fn iquants_quantize_like_llama_cpp() {
    let fx = fixture();
    let input = &fx["quant_input"];
    let cols = input["cols"].as_u64().unwrap() as usize;
    let x = f32s(&input["values_f32le"]);
    for dtype in TYPES.into_iter().filter(|&d| can_quantize(d)) {
        let case = &fx["quant"][dtype.name()];
        let rb = dtype.row_bytes(cols).unwrap();
        let mut q = vec![0u8; x.len() / cols * rb];
        for (row, out) in x.chunks_exact(cols).zip(q.chunks_exact_mut(rb)) {
            quantize_row(dtype, row, out);
        }
        if let Some(want) = case.get("bytes") {
            let want = hex(want);
            for (r, (g, w)) in q.chunks_exact(rb).zip(want.chunks_exact(rb)).enumerate() {
                assert!(g == w, "{dtype} row {r}: bytes differ from llama.cpp's");
            }
        }
        let theirs = case["row_rmse"].as_array().unwrap();
        let (mut sum_ours, mut sum_theirs) = (0.0, 0.0);
        let mut y = vec![0.0f32; cols];
        for (r, (row, qr)) in x.chunks_exact(cols).zip(q.chunks_exact(rb)).enumerate() {
            dequantize_row(dtype, qr, &mut y);
            let se: f64 = row
                .iter()
                .zip(&y)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            let ours = (se / cols as f64).sqrt();
            let theirs = theirs[r].as_f64().unwrap();
            eprintln!("{dtype} row {r}: RMS error {ours:.6e}, llama.cpp {theirs:.6e}");
            assert!(
                ours <= theirs * BOUND + 1e-9,
                "{dtype} row {r}: RMS error {ours:.6e} vs llama.cpp {theirs:.6e}"
            );
            sum_ours += ours;
            sum_theirs += theirs;
        }
        assert!(
            sum_ours <= sum_theirs * 1.0001,
            "{dtype}: {sum_ours} vs {sum_theirs}"
        );
    }
}

/// Per row, how much larger than llama.cpp's our RMS error may be: rounding (IQ4_NL takes
/// llama.cpp's scale and differs only where the f16 scale moves a weight to another level).
const BOUND: f64 = 1.000001;
