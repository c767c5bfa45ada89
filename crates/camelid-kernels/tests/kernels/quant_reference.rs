//! Dequantization and quantization against llama.cpp (`testdata/kernels/quant_reference.json`).

use camelid_kernels::DType;
use camelid_kernels::quant::{dequantize_row, quantize_row};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/kernels/quant_reference.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run tools/kernels_quant_reference.py)"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

pub(crate) fn hex(s: &Value) -> Vec<u8> {
    let s = s.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub(crate) fn f32s(s: &Value) -> Vec<f32> {
    hex(s)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The types of this fixture; the i-quants and ternary types have their own (`iquants.rs`).
fn quantized() -> impl Iterator<Item = DType> {
    DType::ALL
        .into_iter()
        .filter(|d| d.is_quantized() && !crate::iquants::TYPES.contains(d))
}

/// Random blocks decode to exactly what gguf-py decodes them to (up to f32 rounding of the
/// product order, which both sides do the same way for these formulas).
#[test]
fn dequantize_matches_gguf_py() {
    let fx = fixture();
    for dtype in quantized() {
        let case = &fx["dequant"][dtype.name()];
        let blocks = hex(&case["blocks"]);
        let want = f32s(&case["values_f32le"]);
        let mut got = vec![0.0f32; want.len()];
        dequantize_row(dtype, &blocks, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "{dtype} element {i}: {g} vs gguf-py {w}"
            );
        }
    }
}

/// The 32-element quantizers write llama.cpp's bytes; the k-quant quantizers are at least as
/// accurate as llama.cpp's reference quantizer on every row of the test matrix.
#[test]
fn quantize_matches_or_beats_llama_cpp() {
    let fx = fixture();
    let input = &fx["quant_input"];
    let cols = input["cols"].as_u64().unwrap() as usize;
    let x = f32s(&input["values_f32le"]);
    for dtype in quantized() {
        let case = &fx["quant"][dtype.name()];
        let rb = dtype.row_bytes(cols).unwrap();
        let mut q = vec![0u8; x.len() / cols * rb];
        for (row, out) in x.chunks_exact(cols).zip(q.chunks_exact_mut(rb)) {
            quantize_row(dtype, row, out);
        }
        if dtype.block_size() == 32 {
            let want = hex(&case["bytes"]);
            for (r, (g, w)) in q.chunks_exact(rb).zip(want.chunks_exact(rb)).enumerate() {
                assert!(g == w, "{dtype} row {r}: bytes differ from llama.cpp's");
            }
        }
        let theirs = case["row_rmse"].as_array().unwrap();
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
            // A hair of slack for rows where both are at f16 resolution.
            assert!(
                ours <= theirs * 1.001 + 1e-9,
                "{dtype} row {r}: RMS error {ours:.6e} vs llama.cpp {theirs:.6e}"
            );
        }
    }
}
