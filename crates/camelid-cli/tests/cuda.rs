//! The CLI on a CUDA device, for what the backend's own tests (camelid-cuda `tests/cuda.rs`,
//! on the tiny fixtures: F32, F16, BF16, Q8_0, Q4_0, Q4_1) do not reach: the k-quant types of
//! the bench set (Q4_K, Q5_K, Q6_K), which need rows of 256 columns. A model of that width is
//! written with `camelid random-model` and quantized with `camelid quantize`; `camelid logits
//! --precision exact` on the GPU must equal the CPU within 1e-4 · max(1, max |ref|) at every
//! position, for a prompt and for token-by-token decoding.
//!
//! Without a GPU (and driver) the test prints `skipped: ...` and passes, unless
//! `CAMELID_CUDA_TEST_REQUIRE_DEVICE` is set (scripts/test.sh runs it against the emulated
//! driver, crates/camelid-cuda/kernels/emu/driver.cpp, where a skip would hide a driver that did
//! not load).

use std::path::{Path, PathBuf};
use std::process::Command;

fn camelid(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(args)
        .output()
        .expect("running camelid")
}

fn ok(args: &[&str]) -> String {
    let out = camelid(args);
    assert!(
        out.status.success(),
        "camelid {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a CUDA device answers: `camelid logits --device cuda` on a small file either runs or
/// says why not.
fn device_or_skip(model: &Path) -> bool {
    let out = camelid(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "--tokens",
        "1",
        "--device",
        "cuda",
    ]);
    if out.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        std::env::var_os("CAMELID_CUDA_TEST_REQUIRE_DEVICE").is_none(),
        "no CUDA device ({why}), and CAMELID_CUDA_TEST_REQUIRE_DEVICE is set"
    );
    eprintln!("skipped: no CUDA device ({why})");
    false
}

fn logits(json: &str) -> Vec<Vec<f32>> {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    serde_json::from_value(v["logits"].take()).unwrap()
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda-kquants");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn kquant_logits_on_cuda_equal_the_cpu_exact_path() {
    let d = dir();
    let base = d.join("base.gguf");
    let b = base.to_str().unwrap();
    ok(&[
        "random-model",
        "llama3.2-1b",
        b,
        "F16",
        "--dim",
        "256",
        "--ffn",
        "512",
        "--layers",
        "2",
        "--vocab",
        "512",
        "--seed",
        "3",
    ]);
    if !device_or_skip(&base) {
        return;
    }
    // 40 token ids of the 512, spread out.
    let tokens: Vec<String> = (0..40u32)
        .map(|i| ((i * 197 + 11) % 512).to_string())
        .collect();
    let tokens = tokens.join(",");
    // Q4_K_M holds Q4_K and Q6_K tensors, Q5_K_M Q5_K and Q6_K, Q6_K only Q6_K.
    for ty in ["Q4_K_M", "Q5_K_M", "Q6_K"] {
        let file = d.join(format!("m-{ty}.gguf"));
        let f = file.to_str().unwrap();
        ok(&["quantize", b, f, ty]);
        for decode in [false, true] {
            let mut args = vec![
                "logits",
                "-m",
                f,
                "--tokens",
                &tokens,
                "--all",
                "--precision",
                "exact",
            ];
            if decode {
                args.push("--decode");
            }
            let want = logits(&ok(&args));
            args.extend(["--device", "cuda"]);
            let got = logits(&ok(&args));
            assert_eq!(got.len(), want.len(), "{ty}: positions");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let top = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = g.iter().zip(w).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    diff <= 1e-4 * top.max(1.0),
                    "{ty} {} position {i}: max |diff| {diff:.3e} (max |ref| {top:.3})",
                    if decode { "decode" } else { "prompt" }
                );
            }
        }
    }
}
