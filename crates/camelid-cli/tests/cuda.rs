//! The CLI on a CUDA device, for what the backend's own tests (camelid-cuda `tests/cuda.rs`,
//! on the tiny fixtures: F32, F16, BF16, Q8_0, Q4_0, Q4_1) do not reach: the k-quant types
//! (Q2_K to Q6_K) and the IQ4 ones, which need rows of 256 columns. A model of that width is
//! written with `camelid random-model` and quantized with `camelid quantize`; `camelid logits
//! --precision exact` on the GPU must equal the CPU within 1e-4 · max(1, max |ref|) at every
//! position, for a prompt and for token-by-token decoding. And the fallback from early kernel
//! launches that the driver refuses, which the emulated driver can be told to do.
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

/// A 2-layer F16 model of rows 256 wide (`camelid random-model`), written into `d`.
fn small_model(d: &Path, name: &str, seed: u32) -> PathBuf {
    let path = d.join(name);
    let seed = seed.to_string();
    ok(&[
        "random-model",
        "llama3.2-1b",
        path.to_str().unwrap(),
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
        &seed,
    ]);
    path
}

/// Within `share` · max(1, max |want|) at every position; a NaN counts as infinitely far
/// (`f32::max` would pass over it). Returns the largest difference as a share of that scale.
fn assert_within(got: &[Vec<f32>], want: &[Vec<f32>], share: f32, what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: positions");
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what} position {i}: logits");
        let top = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = g.iter().zip(w).fold(0f32, |m, (x, y)| {
            let d = (x - y).abs();
            m.max(if d.is_nan() { f32::INFINITY } else { d })
        });
        assert!(
            diff <= share * top.max(1.0),
            "{what} position {i}: max |diff| {diff:.3e} (max |ref| {top:.3})"
        );
        worst = worst.max(diff / top.max(1.0));
    }
    worst
}

/// The types of 256-element blocks, and IQ4_NL, in the files `camelid quantize` writes: Q4_K_M
/// holds Q4_K and Q6_K tensors, Q5_K_M Q5_K and Q6_K, Q6_K only Q6_K, Q3_K_M Q3_K, Q4_K, Q5_K and
/// Q6_K, Q2_K Q2_K, Q3_K, Q4_K and Q6_K, IQ4_XS and IQ4_NL themselves with Q5_K and Q6_K. At the
/// exact precision the GPU's logits equal the CPU's within 1e-4 · max(1, max |ref|), for a
/// prompt of 80 tokens (the GEMMs on f32 expansions) and token by token (the one-vector kernels
/// and their fusions, graph-captured). At the fast precision, prompts of 40 tokens (the
/// tensor-core products) and of 80 (the f16 GEMMs) stay within 2e-2 of the CPU's exact logits,
/// as in camelid-cuda's `fast_decode_steps_of_many_sequences_track_the_cpu_exact_path` (f16
/// activations: about 5e-3 there).
#[test]
fn kquant_logits_on_cuda_equal_the_cpu_exact_path() {
    let d = dir();
    let base = small_model(&d, "base.gguf", 3);
    let b = base.to_str().unwrap();
    if !device_or_skip(&base) {
        return;
    }
    // 80 token ids of the 512, spread out.
    let ids: Vec<String> = (0..80u32)
        .map(|i| ((i * 197 + 11) % 512).to_string())
        .collect();
    let (t80, t40) = (ids.join(","), ids[..40].join(","));
    for ty in [
        "Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "IQ4_XS", "IQ4_NL",
    ] {
        let file = d.join(format!("m-{ty}.gguf"));
        let f = file.to_str().unwrap();
        ok(&["quantize", b, f, ty]);
        let run = |tokens: &str, precision: &str, decode: bool, device: &str| {
            let mut args = vec![
                "logits",
                "-m",
                f,
                "--tokens",
                tokens,
                "--all",
                "--precision",
                precision,
                "--device",
                device,
            ];
            if decode {
                args.push("--decode");
            }
            logits(&ok(&args))
        };
        let want = run(&t80, "exact", false, "cpu");
        let got = run(&t80, "exact", false, "cuda");
        let prompt = assert_within(&got, &want, 1e-4, &format!("{ty} prompt"));
        let got = run(&t40, "exact", true, "cuda");
        let decoded = run(&t40, "exact", true, "cpu");
        let decode = assert_within(&got, &decoded, 1e-4, &format!("{ty} decode"));
        let got = run(&t40, "fast", false, "cuda");
        let fast40 = assert_within(&got, &want[..40], 2e-2, &format!("{ty} fast prompt of 40"));
        let got = run(&t80, "fast", false, "cuda");
        let fast80 = assert_within(&got, &want, 2e-2, &format!("{ty} fast prompt of 80"));
        eprintln!(
            "{ty:<7} exact prompt {prompt:.1e} decode {decode:.1e}, fast 40 {fast40:.1e} 80 {fast80:.1e} (of max(1, max |ref|))"
        );
    }
}

/// Early launches (programmatic dependent launch) that the driver refuses, one by one or in a
/// graph, leave the kernels in plain stream order with a note on stderr, and the same logits.
/// The emulated driver refuses them on request (`CAMELID_CUDA_EMU_REFUSE`); a real GPU does not
/// take the request, and the test says it skipped.
#[test]
fn refused_early_launches_fall_back_to_stream_order() {
    let base = small_model(&dir(), "fallback.gguf", 5);
    let b = base.to_str().unwrap();
    if !device_or_skip(&base) {
        return;
    }
    let isa = device_name(b);
    if !isa.contains("emulator") || !isa.contains("PDL") {
        eprintln!("skipped: {isa} is not the emulated driver with early launches");
        return;
    }
    let args = [
        "logits",
        "-m",
        b,
        "--tokens",
        "5,77,300,12,9,401",
        "--all",
        "--decode",
        "--device",
        "cuda",
    ];
    let want = logits(&ok(&args));
    for refuse in ["early", "early-graphs"] {
        let out = Command::new(env!("CARGO_BIN_EXE_camelid"))
            .args(args)
            .env("CAMELID_CUDA_EMU_REFUSE", refuse)
            .output()
            .expect("running camelid");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{refuse}: {stderr}");
        assert!(
            stderr.contains("plain stream order") && !stderr.contains("graphs disabled"),
            "{refuse}: {stderr}"
        );
        let got = logits(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(got, want, "{refuse}: other logits");
    }
}

/// The device `camelid bench --device cuda` reports for the model file `model`.
fn device_name(model: &str) -> String {
    let bench = ok(&[
        "bench", "-m", model, "--device", "cuda", "-p", "0", "-n", "1", "-r", "1", "--json",
    ]);
    serde_json::from_str::<serde_json::Value>(&bench).unwrap()[0]["isa"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A model, or a KV cache, larger than the device's free memory is a one-line error that says
/// what it needs and what the device has, and a non-zero exit: never a crash, and the model is
/// refused before its kernels are compiled or its weights copied. The emulated driver plays a
/// small card on request (`CAMELID_CUDA_EMU_MEM_MIB`); a real GPU does not take the request,
/// and the test says it skipped.
#[test]
fn too_little_device_memory_is_a_clear_error() {
    let base = small_model(&dir(), "memory.gguf", 7);
    let b = base.to_str().unwrap();
    if !device_or_skip(&base) {
        return;
    }
    if !device_name(b).contains("emulator") {
        eprintln!("skipped: not the emulated driver, which can play a small card");
        return;
    }
    let run = |mib: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_camelid"))
            .args(args)
            .env("CAMELID_CUDA_EMU_MEM_MIB", mib)
            .output()
            .expect("running camelid");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(out.status.code(), Some(1), "{mib} MiB {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        stderr
    };
    // The 2.4 MiB model with its 12.2 MiB of buffers on a card of 4 MiB.
    let e = run(
        "4",
        &["logits", "-m", b, "--tokens", "1,2", "--device", "cuda"],
    );
    assert!(
        e.contains("the model does not fit on cuda:0")
            && e.contains("weights 2.4 MiB")
            && e.contains("free of 4.0 MiB"),
        "{e}"
    );
    // It fits a card of 64 MiB, but not with a cache of 120,001 positions (29.3 MiB in f16).
    let e = run(
        "64",
        &[
            "bench", "-m", b, "--device", "cuda", "-p", "1", "-n", "0", "-d", "120000", "-r", "1",
        ],
    );
    assert!(
        e.contains("allocating a KV cache of 120001 positions (29.3 MiB): out of memory")
            && e.contains("free of 64.0 MiB"),
        "{e}"
    );
}

/// `camelid compare --device cuda`: the perplexity runs of a model file on the GPU give the CPU's
/// perplexities (`--precision exact`: the same f32 arithmetic) to within 1e-5 relative, chunk by
/// chunk (measured: 6e-8 on the emulated driver).
#[test]
fn compare_perplexity_on_cuda_equals_the_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/llama3-gqa");
    let model = root.join("q4_0.gguf");
    if !device_or_skip(&model) {
        return;
    }
    // Words the tiny model's byte-level vocabulary covers: three chunks of 32 tokens at least.
    let text = dir().join("compare.txt");
    let words = [
        "the", "king", "and", "queen", "rode", "to", "the", "castle", "at", "night",
    ];
    let body: Vec<&str> = (0..400)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect();
    std::fs::write(&text, body.join(" ")).unwrap();
    let ppl = |device: &str| -> (String, Vec<f64>) {
        let json = ok(&[
            "compare",
            model.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--ctx",
            "32",
            "--chunks",
            "3",
            "--precision",
            "exact",
            "--device",
            device,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let run = &v["perplexity"][0];
        let ran_on = run["device"].as_str().unwrap().to_string();
        (
            ran_on,
            serde_json::from_value(run["chunk_ppl"].clone()).unwrap(),
        )
    };
    let ((on_cpu, cpu), (on_gpu, gpu)) = (ppl("cpu"), ppl("cuda"));
    assert_eq!((on_cpu.as_str(), cpu.len()), ("cpu", 3), "{cpu:?}");
    assert!(on_gpu.starts_with("cuda:"), "{on_gpu}");
    for (c, g) in cpu.iter().zip(&gpu) {
        assert!((g - c).abs() <= 1e-5 * c, "cpu {cpu:?} cuda {gpu:?}");
    }
}

/// A card newer than every architecture the NVRTC at hand knows runs on PTX for the newest it
/// knows, which the driver translates (said on stderr the first time, kept in the cache like a
/// CUBIN), with the logits of a card it knows; a card older than all of them is a one-line error
/// that says what NVRTC compiles for. The emulated driver reports the compute capability it is
/// told (`CAMELID_CUDA_EMU_CC`); a real GPU does not take the request, and the test says it
/// skipped.
#[test]
fn cards_newer_and_older_than_nvrtc() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/mqa/f16.gguf");
    let m = model.to_str().unwrap();
    if !device_or_skip(&model) {
        return;
    }
    if !device_name(m).contains("emulator") {
        eprintln!("skipped: not the emulated driver, which can play other cards");
        return;
    }
    let args = [
        "logits", "-m", m, "--tokens", "1,5,9,2", "--all", "--device", "cuda",
    ];
    let want = logits(&ok(&args));
    let cache = dir().join("ptx-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let start = |cc: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_camelid"))
            .args(args)
            .env("CAMELID_CUDA_EMU_CC", cc)
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("CAMELID_CUDA_KERNELS")
            .output()
            .expect("running camelid");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        (out, stderr)
    };
    for first in [true, false] {
        let (out, said) = start("990");
        assert!(out.status.success(), "{said}");
        assert_eq!(
            said.contains("does not know the card's sm_990, so PTX that the driver translates"),
            first,
            "{said}"
        );
        assert_eq!(logits(&String::from_utf8(out.stdout).unwrap()), want);
    }
    // The device line says what runs.
    let out = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args([
            "bench", "-m", m, "--device", "cuda", "-p", "0", "-n", "1", "-r", "1", "--json",
        ])
        .env("CAMELID_CUDA_EMU_CC", "990")
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .expect("running camelid");
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("(sm_990 via compute_"), "{json}");
    let kept = std::fs::read_dir(cache.join("camelid/cuda")).unwrap();
    assert!(
        kept.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .all(|n| n.contains("-compute_") && n.ends_with(".ptx")),
        "not PTX"
    );
    let (out, said) = start("30");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.lines().count() == 1 && said.contains("and this card is sm_30: use the NVRTC"),
        "{said}"
    );
}

/// The kernels are compiled on a first start, which says so on stderr, and kept in the cache
/// folder (`$XDG_CACHE_HOME/camelid/cuda`): a second start compiles nothing and says nothing,
/// with the same logits; a Q4_0 model's start compiles group 0, Q4_0's group, ops and attention.
#[test]
fn kernels_are_compiled_once_and_kept() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/mqa/q4_0.gguf");
    if !device_or_skip(&model) {
        return;
    }
    let cache = dir().join("kernel-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let start = || {
        let out = Command::new(env!("CARGO_BIN_EXE_camelid"))
            .args([
                "logits",
                "-m",
                model.to_str().unwrap(),
                "--tokens",
                "1,5,9",
                "--device",
                "cuda",
            ])
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("CAMELID_CUDA_KERNELS")
            .output()
            .expect("running camelid");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (logits(&String::from_utf8(out.stdout).unwrap()), stderr)
    };
    let (first, said) = start();
    assert!(
        said.contains("compiling 4 CUDA kernel programs") && said.contains("kernel-cache"),
        "{said}"
    );
    let mut kept: Vec<String> = std::fs::read_dir(cache.join("camelid/cuda"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let stems: Vec<&str> = kept.iter().map(|n| n.split('-').next().unwrap()).collect();
    assert_eq!(stems, ["attention", "ops", "quant0", "quant1"], "{kept:?}");
    let (second, said) = start();
    assert!(!said.contains("compiling"), "{said}");
    assert_eq!(first, second);
}
