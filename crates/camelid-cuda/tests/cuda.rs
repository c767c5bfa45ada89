//! The CUDA backend against the CPU backend on the tiny test models (testdata/tiny, every
//! fixture format): at `Precision::Exact` the logits agree within 1e-4 · max(1, max |ref|) at
//! every position, for a batched prompt, for token-by-token decoding (replayed CUDA graphs),
//! and for several sequences batched together. The fast path's error stays within llama.cpp's.
//!
//! Without a GPU and driver every test but the first prints `skipped: no CUDA device (...)` and
//! passes; the first checks that asking for the backend then is a one-line error.

use std::path::{Path, PathBuf};

use camelid_cuda::Limits;
use camelid_kernels::Precision;
use camelid_model::llama::{MAX_BATCH, rope_inv_freq};
use camelid_model::weights::Checkpoint;
use camelid_model::{CacheType, Model, ModelError};
use serde_json::Value;

/// Every file format of the fixtures.
const FILES: [&str; 8] = [
    "st-f32",
    "st-bf16",
    "gguf-f32",
    "gguf-f16",
    "gguf-bf16",
    "gguf-q8_0",
    "gguf-q4_0",
    "gguf-q4_1",
];

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny")
}

fn manifest() -> Value {
    let p = tiny().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn tokens(m: &Value) -> Vec<u32> {
    m["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Whether a GPU is here; prints the visible note when not, or fails where
/// `CAMELID_CUDA_TEST_REQUIRE_DEVICE` is set (scripts/test.sh's emulated run, where a skip would
/// hide a driver that did not load).
fn gpu() -> bool {
    let why = match camelid_cuda::device_count() {
        Ok(n) if n > 0 => return true,
        Ok(_) => "the driver sees none".to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        std::env::var_os("CAMELID_CUDA_TEST_REQUIRE_DEVICE").is_none(),
        "no CUDA device ({why}), and CAMELID_CUDA_TEST_REQUIRE_DEVICE is set"
    );
    eprintln!("skipped: no CUDA device ({why})");
    false
}

/// The same file on the CPU and on the GPU (cuda:0), both at `precision`.
fn pair(path: &Path, precision: Precision, logit_rows: Option<usize>) -> (Model, Model) {
    let limits = Limits {
        logit_rows,
        ..Limits::default()
    };
    pair_with(path, precision, limits)
}

/// [`pair`], the GPU's buffers as small as `limits` says.
fn pair_with(path: &Path, precision: Precision, limits: Limits) -> (Model, Model) {
    let ckpt = Checkpoint::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = ckpt.config.clone();
    let weights = ckpt.load_weights().unwrap();
    let inv_freq = rope_inv_freq(&config, &weights);
    let be = camelid_cuda::backend_with_limits(&config, &weights, inv_freq, 0, limits)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut gpu = Model::with_backend(config.clone(), be);
    let mut cpu = Model::new(config, weights);
    gpu.set_precision(precision);
    cpu.set_precision(precision);
    (cpu, gpu)
}

/// Logits at every position, from one batched pass.
fn run_all(model: &Model, toks: &[u32]) -> Vec<Vec<f32>> {
    let mut state = model.new_state(toks.len()).unwrap();
    let mut out = vec![Vec::new(); toks.len()];
    model
        .forward(&mut state, toks, true, |i, l| out[i] = l.to_vec())
        .unwrap();
    out
}

/// Logits at every position, one token per pass.
fn run_one_by_one(model: &Model, toks: &[u32]) -> Vec<Vec<f32>> {
    let mut state = model.new_state(toks.len()).unwrap();
    let mut out = Vec::new();
    for t in toks {
        model
            .forward(&mut state, &[*t], false, |_, l| out.push(l.to_vec()))
            .unwrap();
    }
    out
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// |a - b|, infinite where either side is NaN (`f32::max` would pass over a NaN, and NaN logits
/// would pass every bound).
fn gap(a: f32, b: f32) -> f32 {
    let d = (a - b).abs();
    if d.is_nan() { f32::INFINITY } else { d }
}

/// The largest [`gap`].
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logits of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| gap(*x, *y))
        .fold(0f32, f32::max)
}

/// Within 1e-4 · max(1, max |want|) at every position.
fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_within(got, want, 1e-4, what)
}

/// Within `share` · max(1, max |want|) at every position.
fn assert_within(got: &[Vec<f32>], want: &[Vec<f32>], share: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: positions");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = share * max_abs(w).max(1.0);
        let d = max_diff(g, w);
        assert!(
            d <= bound,
            "{what}, position {i}: max |diff| {d:.3e} > {bound:.3e}"
        );
    }
}

/// Decode steps per file: every token, or the first `CAMELID_CUDA_TEST_STEPS` (at least 10).
/// scripts/test.sh asks for a few where the device is the CPU emulator (kernels/emu/driver.cpp),
/// whose fibers take about 50 ms a step.
fn decode_steps(n: usize) -> usize {
    std::env::var("CAMELID_CUDA_TEST_STEPS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .map_or(n, |k| k.clamp(10, n))
}

/// Every model's Q4_0 file.
fn each_q4_0(mut f: impl FnMut(&str, &Value, &Path)) {
    for m in manifest()["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        f(
            name,
            m,
            &tiny().join(m["files"]["gguf-q4_0"].as_str().unwrap()),
        );
    }
}

/// Every model in every format.
fn each_file(mut f: impl FnMut(&str, &str, &Value, &Path)) {
    let man = manifest();
    for m in man["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        for key in FILES {
            f(
                name,
                key,
                m,
                &tiny().join(m["files"][key].as_str().unwrap()),
            );
        }
    }
}

#[test]
fn without_a_gpu_asking_for_the_backend_is_a_one_line_error() {
    if let Ok(n @ 1..) = camelid_cuda::device_count() {
        eprintln!("skipped: a CUDA device is present ({n})");
        return;
    }
    let m = &manifest()["models"][0];
    let path = tiny().join(m["files"]["gguf-q4_0"].as_str().unwrap());
    let ckpt = Checkpoint::open(&path).unwrap();
    let weights = ckpt.load_weights().unwrap();
    let inv_freq = rope_inv_freq(&ckpt.config, &weights);
    let err = match camelid_cuda::backend(&ckpt.config, &weights, inv_freq, 0) {
        Ok(_) => panic!("a backend without a GPU"),
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, ModelError::Backend(_)), "{err:?}");
    assert!(msg.starts_with("CUDA: "), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains("no driver found") || msg.contains("no CUDA device"),
        "says why: {msg}"
    );
}

fn iquant() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/iquant")
}

/// The i-quants and the ternary types, in the files llama.cpp's quantizer wrote (testdata/iquant:
/// the 256-wide model of testdata/quantize, 2 layers, 4 query heads on one kv head; camelid
/// cannot write the grid types, which need an importance matrix). At the exact precision the
/// GPU's logits equal the CPU's within 1e-4 · max(1, max |ref|), for a prompt of 32 tokens (the
/// f32 products), of 64 (the GEMMs on f32 expansions) and token by token (the one-vector kernels
/// and their fusions, graph-captured). At the fast precision, prompts of 16 tokens (the
/// tensor-core products) and of 96 (the f16 GEMMs) stay within 2e-2 of the CPU's exact logits,
/// as in `fast_decode_steps_of_many_sequences_track_the_cpu_exact_path`.
#[test]
fn iquant_logits_equal_the_cpu_exact_path() {
    if !gpu() {
        return;
    }
    let man: Value =
        serde_json::from_str(&std::fs::read_to_string(iquant().join("manifest.json")).unwrap())
            .unwrap();
    let toks = tokens(&man);
    let twice = [&toks[..], &toks[..]].concat();
    let thrice = [&twice[..], &toks[..]].concat();
    for ty in [
        "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M",
        "TQ1_0", "TQ2_0",
    ] {
        let path = iquant().join(format!("k256-{}.gguf", ty.to_lowercase()));
        let (cpu, gpu) = pair(&path, Precision::Exact, None);
        let want = run_all(&cpu, &thrice);
        assert_close(
            &run_all(&gpu, &toks),
            &want[..toks.len()],
            &format!("{ty} prompt"),
        );
        assert_close(
            &run_all(&gpu, &twice),
            &want[..twice.len()],
            &format!("{ty} prompt of 64"),
        );
        let steps = decode_steps(toks.len());
        let want_steps = run_one_by_one(&cpu, &toks[..steps]);
        let got = run_one_by_one(&gpu, &toks[..steps]);
        assert_close(&got, &want_steps, &format!("{ty} decode"));
        let (_, fast) = pair(&path, Precision::Fast, None);
        let short = run_all(&fast, &toks[..16]);
        assert_within(&short, &want[..16], 2e-2, &format!("{ty} fast 16"));
        assert_within(
            &run_all(&fast, &thrice),
            &want,
            2e-2,
            &format!("{ty} fast 96"),
        );
    }
}

#[test]
fn prompt_logits_equal_the_cpu_exact_path() {
    if !gpu() {
        return;
    }
    each_file(|name, key, m, path| {
        let toks = tokens(m);
        let (cpu, gpu) = pair(path, Precision::Exact, None);
        let want = run_all(&cpu, &toks);
        assert_close(
            &run_all(&gpu, &toks),
            &want,
            &format!("{name} {key} prompt"),
        );
        // 20 rows: the fused products in slices of 8 rather than a GEMM.
        assert_close(
            &run_all(&gpu, &toks[..20]),
            &want[..20],
            &format!("{name} {key} short prompt"),
        );
        if key == "gguf-q4_0" {
            // A logits buffer of 7 rows: the prompt's logits come back in chunks. A weight
            // scratch of a seventh of the output matrix in f32 (54 rows of 64 columns): the
            // GEMMs of matrices larger than that go a slab of rows at a time, the last slab
            // shorter (the 1B's in Q4_0 take two to four).
            let c = &cpu.config;
            let scratch_bytes = Some(c.n_vocab * c.d_model * 4 / 7);
            let limits = Limits {
                logit_rows: Some(7),
                scratch_bytes,
                ..Limits::default()
            };
            let (_, small) = pair_with(path, Precision::Exact, limits);
            assert_close(
                &run_all(&small, &toks),
                &want,
                &format!("{name} {key} chunked, in slabs"),
            );
            // The fast path's slabs, in f16, against its whole products: a prompt of twice the
            // tokens, whose products all take the GEMM (up to 64 rows take the tensor-core
            // products), the output matrix's too (unchunked: a chunk of a few rows takes
            // another product, which rounds otherwise).
            let limits = Limits {
                scratch_bytes,
                ..Limits::default()
            };
            let (_, small) = pair_with(path, Precision::Fast, limits);
            let (_, fast) = pair(path, Precision::Fast, None);
            let twice = [&toks[..], &toks[..]].concat();
            assert_close(
                &run_all(&small, &twice),
                &run_all(&fast, &twice),
                &format!("{name} {key} fast, in slabs"),
            );
        }
        let dev = gpu.device();
        assert!(dev.device.starts_with("cuda:"), "{dev:?}");
        assert!(
            dev.memory_used.is_some_and(|m| m >= dev.weight_bytes),
            "{dev:?}"
        );
    });
}

#[test]
fn decode_logits_equal_the_cpu_exact_path() {
    if !gpu() {
        return;
    }
    each_file(|name, key, m, path| {
        let toks = tokens(m);
        let (cpu, gpu) = pair(path, Precision::Exact, None);
        let want = run_all(&cpu, &toks);
        let steps = decode_steps(toks.len());
        // Every step after the first replays the graph captured for one row.
        assert_close(
            &run_one_by_one(&gpu, &toks[..steps]),
            &want[..steps],
            &format!("{name} {key} decode"),
        );
        // A second sequence replays the same graph against another cache.
        assert_close(
            &run_one_by_one(&gpu, &toks[..9]),
            &want[..9],
            &format!("{name} {key} decode again"),
        );
    });
}

/// Three sequences: prompts of different lengths batched together, decoding steps of one token
/// each (graphs of three rows), and a step where one sequence takes a chunk longer than a pass.
/// The GPU's logits buffer starts with one row, as a 128K vocabulary's holds fewer rows than a
/// server's sequences: the prompts' logits come a row at a time, a step of one sequence is
/// captured with that buffer, the first step of three grows it (the graphs captured so far,
/// which write into the old one, must go), and a step of one is captured again.
#[test]
fn multi_sequence_batches_equal_the_cpu_exact_path() {
    if !gpu() {
        return;
    }
    for key in ["gguf-q4_0", "gguf-f16"] {
        let man = manifest();
        for m in man["models"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap();
            let path = tiny().join(m["files"][key].as_str().unwrap());
            let (cpu, gpu) = pair(&path, Precision::Exact, Some(1));
            let toks = tokens(m);
            let n = toks.len();
            let prompts: Vec<Vec<u32>> = (0..3)
                .map(|k| {
                    let mut p = toks.clone();
                    p.rotate_left(k * 3 % n);
                    p.truncate(n - k);
                    p
                })
                .collect();
            let ctx = 2 * n + MAX_BATCH + 80;
            let mut states: Vec<_> = [&cpu, &gpu]
                .iter()
                .map(|model| {
                    (0..3)
                        .map(|_| model.new_state(ctx).unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut step = |feeds: &[&[u32]], what: &str| {
                let mut got: Vec<Vec<Vec<f32>>> = Vec::new();
                for (model, st) in [&cpu, &gpu].iter().zip(states.iter_mut()) {
                    let mut refs: Vec<&mut _> = st.iter_mut().collect();
                    let mut out = vec![Vec::new(); 3];
                    model
                        .forward_seqs(&mut refs, feeds, |i, l| out[i] = l.to_vec())
                        .unwrap();
                    got.push(out);
                }
                assert_close(&got[1], &got[0], &format!("{name} {key} {what}"));
            };
            let p: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            step(&p, "prompts");
            let one = |s: usize| [toks[(s * 5) % n]];
            step(&[&one(7), &[], &[]], "one sequence, before the growth");
            for s in 0..6 {
                let next: Vec<u32> = (0..3).map(|k| toks[(s * 5 + k * 7) % n]).collect();
                let feeds: Vec<&[u32]> = next.iter().map(std::slice::from_ref).collect();
                step(&feeds, &format!("decode step {s}"));
            }
            step(&[&one(8), &[], &[]], "one sequence, after the growth");
            let long: Vec<u32> = (0..MAX_BATCH + 6).map(|i| toks[i % n]).collect();
            step(&[&toks[..1], &long, &toks[1..2]], "mixed step");
        }
    }
}

/// At the fast precision, decode steps of six sequences take the tensor-core products (from
/// four rows, `TC_ROWS_DEFAULT` in src/ops.rs), captured in graphs and replayed: every
/// sequence's logits stay within the fast path's f16 rounding of the CPU exact path's, step after
/// step. Measured on the emulated driver, as a share of max(1, max |ref|): at most 6.5e-3 over
/// these files, and 6.8e-3 without the tensor-core products (`CAMELID_CUDA_TC_ROWS=65`: the f32
/// matvec for the steps, f16 GEMMs for the prompts, whose rounding dominates both). The Q4_0
/// files run with f16 caches (the fast precision's default; RoPE and the cache writes then round
/// in `rope_store`, captured in the graphs): 4.3e-3 to 8.0e-3 (f32 caches: 3.6e-3 to 6.5e-3).
/// The bound, 2e-2, is over twice that and far below what a wrong fragment, row or vector gives
/// (errors of the logits' own size).
#[test]
fn fast_decode_steps_of_many_sequences_track_the_cpu_exact_path() {
    if !gpu() {
        return;
    }
    const SEQS: usize = 6;
    // The Q4_0 files with f16 caches (the fast precision's default), the F16 files with f32.
    for (key, cache) in [("gguf-q4_0", CacheType::F16), ("gguf-f16", CacheType::F32)] {
        let man = manifest();
        for m in man["models"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap();
            let path = tiny().join(m["files"][key].as_str().unwrap());
            let (cpu, mut gpu) = pair(&path, Precision::Exact, None);
            gpu.set_precision(Precision::Fast);
            gpu.set_cache_type(cache).unwrap();
            let toks = tokens(m);
            let n = toks.len();
            let prompts: Vec<Vec<u32>> = (0..SEQS)
                .map(|k| {
                    let mut p = toks.clone();
                    p.rotate_left(k * 5 % n);
                    p.truncate(n / 2 + k);
                    p
                })
                .collect();
            let mut states: Vec<_> = [&cpu, &gpu]
                .iter()
                .map(|model| {
                    (0..SEQS)
                        .map(|_| model.new_state(n + 16).unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut worst = 0f32;
            let mut step = |feeds: &[&[u32]], what: &str| {
                let mut got: Vec<Vec<Vec<f32>>> = Vec::new();
                for (model, st) in [&cpu, &gpu].iter().zip(states.iter_mut()) {
                    let mut refs: Vec<&mut _> = st.iter_mut().collect();
                    let mut out = vec![Vec::new(); SEQS];
                    model
                        .forward_seqs(&mut refs, feeds, |i, l| out[i] = l.to_vec())
                        .unwrap();
                    got.push(out);
                }
                for (i, (g, w)) in got[1].iter().zip(&got[0]).enumerate() {
                    let scale = max_abs(w).max(1.0);
                    let d = max_diff(g, w) / scale;
                    worst = worst.max(d);
                    assert!(
                        d <= 2e-2,
                        "{name} {key} {what}, sequence {i}: max |diff| {d:.3e} of max(1, max |ref|)"
                    );
                }
            };
            let p: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            step(&p, "prompts");
            for s in 0..4 {
                let next: Vec<u32> = (0..SEQS).map(|k| toks[(s * 3 + k * 7) % n]).collect();
                let feeds: Vec<&[u32]> = next.iter().map(std::slice::from_ref).collect();
                step(&feeds, &format!("decode step {s}"));
            }
            eprintln!("{name:>14} {key:<9} worst {worst:.3e} of max(1, max |ref|)");
        }
    }
}

/// Sequences that want their greedy token (`Want::Token`) get the argmax of the logits they
/// would get asking for them, and the sequences beside them their logits unchanged, bit for
/// bit: in prompt passes whose logits go to the host a chunk at a time (the logits buffer
/// starts at one row; the host picks), and in decode steps, graph-captured and replayed, where
/// the device picks and only the tokens cross (the step with tokens and the step without are
/// different graphs).
#[test]
fn greedy_tokens_are_the_argmax_of_the_logits() {
    use camelid_model::backend::greedy_token;
    use camelid_model::{Next, Want};
    if !gpu() {
        return;
    }
    const SEQS: usize = 4;
    for key in ["gguf-q4_0", "gguf-f16"] {
        let man = manifest();
        for m in man["models"].as_array().unwrap().iter().take(3) {
            let name = m["name"].as_str().unwrap();
            let path = tiny().join(m["files"][key].as_str().unwrap());
            let (_, gpu) = pair(&path, Precision::Fast, Some(1));
            let toks = tokens(m);
            let n = toks.len();
            // Two sets of states fed the same tokens: one asks every sequence for logits, the
            // other the even sequences for their token.
            let mut sets: Vec<Vec<_>> = (0..2)
                .map(|_| (0..SEQS).map(|_| gpu.new_state(n + 16).unwrap()).collect())
                .collect();
            let mut feeds: Vec<Vec<u32>> =
                (0..SEQS).map(|k| toks[k..n / 2 + 2 * k].to_vec()).collect();
            for step in 0..6 {
                let mut got: Vec<Vec<Option<Next<'static>>>> = Vec::new();
                let mut logits: Vec<Vec<Vec<f32>>> = Vec::new();
                for (set, states) in sets.iter_mut().enumerate() {
                    let mut refs: Vec<&mut _> = states.iter_mut().collect();
                    let f: Vec<&[u32]> = feeds.iter().map(Vec::as_slice).collect();
                    let mut out = vec![None; SEQS];
                    let mut rows = vec![Vec::new(); SEQS];
                    let want = |i: usize| {
                        if set == 1 && i.is_multiple_of(2) {
                            Want::Token
                        } else {
                            Want::Logits
                        }
                    };
                    gpu.forward_batch(
                        &mut refs,
                        &f,
                        want,
                        |i, next| match next {
                            Next::Logits(l) => rows[i] = l.to_vec(),
                            Next::Token(t) => out[i] = Some(Next::Token(t)),
                        },
                        |_, _, _| {},
                    )
                    .unwrap();
                    got.push(out);
                    logits.push(rows);
                }
                for i in 0..SEQS {
                    let want_token = greedy_token(&logits[0][i]);
                    if i % 2 == 0 {
                        assert_eq!(
                            got[1][i],
                            Some(Next::Token(want_token)),
                            "{name} {key} step {step}, sequence {i}"
                        );
                    } else {
                        assert!(
                            logits[1][i] == logits[0][i],
                            "{name} {key} step {step}, sequence {i}: logits beside the tokens"
                        );
                    }
                }
                // The next step feeds each sequence its greedy token.
                feeds = (0..SEQS)
                    .map(|i| vec![greedy_token(&logits[0][i])])
                    .collect();
            }
        }
    }
}

/// A speculative draft's check on the device: a sequence that wants every row's greedy token
/// (`Want::Tokens`) gets the argmax of each of its rows, in order, and one that wants every
/// row's logits (`Want::AllLogits`) gets them, beside a sequence that wants its last row's;
/// against the same batch asking every row's logits. With the device's logits buffer of one
/// row (the host picks the tokens) and as built (the device does).
#[test]
fn every_rows_tokens_and_logits_of_a_draft_check() {
    use camelid_model::backend::greedy_token;
    use camelid_model::{Next, Want};
    if !gpu() {
        return;
    }
    let man = manifest();
    let m = &man["models"][0];
    let name = m["name"].as_str().unwrap();
    let path = tiny().join(m["files"]["gguf-q4_0"].as_str().unwrap());
    let toks = tokens(m);
    let feeds: Vec<Vec<u32>> = vec![toks[..7].to_vec(), toks[3..9].to_vec(), toks[1..5].to_vec()];
    for logit_rows in [Some(1), None] {
        let (_, gpu) = pair(&path, Precision::Fast, logit_rows);
        // Set 0: every row's logits; set 1: tokens, logits of every row, the last row's.
        let mut rows: Vec<Vec<Vec<Vec<f32>>>> = vec![vec![Vec::new(); 3]; 2];
        let mut picked: Vec<u32> = Vec::new();
        for (set, got) in rows.iter_mut().enumerate() {
            let mut states: Vec<_> = feeds
                .iter()
                .map(|f| gpu.new_state(f.len()).unwrap())
                .collect();
            let mut refs: Vec<&mut _> = states.iter_mut().collect();
            let f: Vec<&[u32]> = feeds.iter().map(Vec::as_slice).collect();
            let want = |i: usize| match (set, i) {
                (0, _) | (1, 1) => Want::AllLogits,
                (1, 0) => Want::Tokens,
                _ => Want::Logits,
            };
            gpu.forward_batch(
                &mut refs,
                &f,
                want,
                |i, next| match next {
                    Next::Logits(l) => got[i].push(l.to_vec()),
                    Next::Token(t) => picked.push(t),
                },
                |_, _, _| {},
            )
            .unwrap();
        }
        let what = format!("{name}, logit rows {logit_rows:?}");
        let want: Vec<u32> = rows[0][0].iter().map(|l| greedy_token(l)).collect();
        assert_eq!(picked, want, "{what}: every row's token");
        eprintln!(
            "{what}: {} tokens picked, {} rows of logits",
            picked.len(),
            rows[1][1].len()
        );
        assert!(rows[1][1] == rows[0][1], "{what}: every row's logits");
        assert!(
            rows[1][2].len() == 1 && rows[1][2][0] == rows[0][2][3],
            "{what}: the last row's"
        );
    }
}

/// Hidden-state rows (embeddings) equal the CPU's at the exact path, in a batch where a
/// generation sequence takes logits beside them and alone for one token; and a KV cache copied
/// on the device continues as the CPU's computed one does.
#[test]
fn hidden_rows_and_cache_copies_equal_the_cpu_exact_path() {
    if !gpu() {
        return;
    }
    each_q4_0(|name, m, path| {
        let (cpu, gpu) = pair(path, Precision::Exact, None);
        let toks = tokens(m);
        let n = toks.len();
        let mut got = Vec::new();
        for model in [&cpu, &gpu] {
            let mut a = model.new_state(n + 8).unwrap();
            let mut b = model.new_state(n + 8).unwrap();
            let mut hidden = vec![Vec::new(); n];
            let mut logits = Vec::new();
            model
                .forward_batch(
                    &mut [&mut a, &mut b],
                    &[&toks, &toks[..n / 2]],
                    |i| {
                        if i == 0 {
                            camelid_model::Want::Hidden
                        } else {
                            camelid_model::Want::Logits
                        }
                    },
                    |_, next| {
                        if let camelid_model::Next::Logits(l) = next {
                            logits = l.to_vec();
                        }
                    },
                    |_, pos, h| hidden[pos] = h.to_vec(),
                )
                .unwrap();
            // b continues from a copy of a's first n - 1 positions.
            model.copy_prefix(&a, &mut b, n - 1).unwrap();
            let mut next = Vec::new();
            model
                .forward(&mut b, &toks[n - 1..], false, |_, l| next = l.to_vec())
                .unwrap();
            // The hidden state of a one-token input: a pass of one row, whose output rows are
            // its only row (the CUDA backend gathers nothing and norms the last residual's sum
            // in its product's launch).
            let mut c = model.new_state(1).unwrap();
            model
                .forward_batch(
                    &mut [&mut c],
                    &[&toks[..1]],
                    |_| camelid_model::Want::Hidden,
                    |_, _| {},
                    |_, _, h| hidden.push(h.to_vec()),
                )
                .unwrap();
            got.push((hidden, logits, next));
        }
        assert_close(&got[1].0, &got[0].0, &format!("{name} hidden rows"));
        assert_close(
            &[got[1].1.clone()],
            &[got[0].1.clone()],
            &format!("{name} logits beside them"),
        );
        assert_close(
            &[got[1].2.clone()],
            &[got[0].2.clone()],
            &format!("{name} after a copy"),
        );
    });
}

/// The bound of the f16 caches' logits against the CPU's, as a share of max(1, max |ref|). Each
/// device rounds every key and value to f16 as the CPU does, but from f32 values that differ in
/// their last bits (other summation orders), so now and then one lies on the other side of a
/// rounding boundary and the two caches differ by one f16 step there. Measured on the emulated
/// driver over the tiny models (Q4_0 files), prompt and decode: 3e-6 to 3.8e-4; the f16
/// rounding itself moves the logits 2.1e-3 to 2.9e-3 from the f32 caches'.
const F16_CACHE_BOUND: f32 = 1e-3;

/// f16 KV caches (`--cache-type f16`): at the exact precision the GPU's logits equal the CPU's
/// with an f16 cache within [`F16_CACHE_BOUND`], where they are farther than it from the f32
/// caches' at some position (so the keys and values were rounded as the CPU rounds them, not
/// kept in f32). For a batched prompt (RoPE and the cache writes in a launch of their own,
/// attention in two), token by token (graph-replayed steps whose q, k, v launch writes the
/// cache, attention in one launch) and after a cache copied on the device. A copy between an
/// f16 and an f32 cache, or a batch that mixes them, is an error.
#[test]
fn f16_caches_equal_the_cpu_f16_cache_exact_path() {
    if !gpu() {
        return;
    }
    each_q4_0(|name, m, path| {
        let (mut cpu, mut gpu) = pair(path, Precision::Exact, None);
        let toks = tokens(m);
        let n = toks.len();
        let want32 = run_all(&cpu, &toks);
        for model in [&mut cpu, &mut gpu] {
            model.set_cache_type(CacheType::F16).unwrap();
        }
        let want = run_all(&cpu, &toks);
        let got = run_all(&gpu, &toks);
        assert_within(
            &got,
            &want,
            F16_CACHE_BOUND,
            &format!("{name} f16 cache, prompt"),
        );
        assert!(
            got.iter()
                .zip(&want32)
                .any(|(g, w)| max_diff(g, w) > F16_CACHE_BOUND * max_abs(w).max(1.0)),
            "{name}: the f16 cache's logits are within the bound of the f32 cache's"
        );
        let steps = decode_steps(n);
        assert_within(
            &run_one_by_one(&gpu, &toks[..steps]),
            &want[..steps],
            F16_CACHE_BOUND,
            &format!("{name} f16 cache, decode"),
        );
        // b continues from a device copy of a's first n - 1 positions.
        let mut a = gpu.new_state(n).unwrap();
        gpu.forward(&mut a, &toks, false, |_, _| {}).unwrap();
        let mut b = gpu.new_state(n + 1).unwrap();
        gpu.copy_prefix(&a, &mut b, n - 1).unwrap();
        let mut next = Vec::new();
        gpu.forward(&mut b, &toks[n - 1..], false, |_, l| next = l.to_vec())
            .unwrap();
        assert_within(
            &[next],
            &want[n - 1..],
            F16_CACHE_BOUND,
            &format!("{name} f16 cache, after a copy"),
        );
        // An f32 cache beside them.
        gpu.set_cache_type(CacheType::F32).unwrap();
        let mut c = gpu.new_state(n).unwrap();
        let e = gpu.copy_prefix(&a, &mut c, 1).unwrap_err().to_string();
        assert!(e.contains("between an f16 and an f32 KV cache"), "{e}");
        let e = gpu
            .forward_batch(
                &mut [&mut b, &mut c],
                &[&toks[..1], &toks[..1]],
                |_| camelid_model::Want::Logits,
                |_, _| {},
                |_, _, _| {},
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("mixes f16 and f32 KV caches"), "{e}");
    });
}

/// Prompt attention on the tensor cores (`attention_tc_f16`: the fast precision's prompt
/// passes over f16 caches) against the f32 kernels (`Limits::no_tc_attention`), everything else
/// the same: a prompt (every position's logits; its positions in two chunks, each a CTA of its
/// own, merged by the combine step), three prompts of different lengths in one pass (tiles of
/// three sequences), then their continuations (tiles whose rows also see the positions of the
/// pass before). The kernel carries queries and probabilities to about 22 bits
/// (kernels/attention.cu; its emulated test holds it to 1e-6 of the f64 softmax), so the two
/// differ by their sums' order, and where that moves an activation across an f16 rounding
/// boundary of the GEMMs after it. Measured on the emulated driver, as a share of max(1, max
/// |ref|): 7.1e-4 to 1.5e-3 over these files. With the probabilities rounded to f16 once, 1.8e-3
/// to 2.8e-3; the queries, 3.1e-3 to 5.5e-3 (and past the bound on llama3-gqa); a mask one
/// position off, 1.5; the chunks' partials all written to the first chunk's place, infinite.
/// The kernel's test holds its arithmetic to f32's; this one's job is the tiles and their rows,
/// caches, masks and chunks in a pass, with room for a card's summation order: a wrong tile,
/// mask or chunk moves logits by whole units.
const TC_ATTENTION_BOUND: f32 = 5e-3;

#[test]
fn tensor_core_prompt_attention_equals_the_f32_kernels() {
    if !gpu() {
        return;
    }
    each_q4_0(|name, m, path| {
        let (_, mut tc) = pair(path, Precision::Fast, None);
        let limits = Limits {
            no_tc_attention: true,
            ..Limits::default()
        };
        let (_, mut plain) = pair_with(path, Precision::Fast, limits);
        let toks = tokens(m);
        let n = toks.len();
        let long = toks.repeat(3);
        let prompts: Vec<Vec<u32>> = (0..3)
            .map(|k| {
                let mut p = toks.clone();
                p.rotate_left(k * 5 % n);
                p.truncate(n - 7 * k);
                p
            })
            .collect();
        let mut got: Vec<Vec<Vec<f32>>> = Vec::new();
        for model in [&mut tc, &mut plain] {
            model.set_cache_type(CacheType::F16).unwrap();
            let mut states: Vec<_> = (0..3).map(|_| model.new_state(n).unwrap()).collect();
            let mut refs: Vec<&mut _> = states.iter_mut().collect();
            // Every position of one prompt of three times the tokens (in two chunks of
            // positions: passes of 192 rows and more split theirs in two,
            // `CudaBackend::chunking`), then the last of each of the three.
            let mut out = run_all(model, &long);
            let all = out.len();
            out.resize(all + 6, Vec::new());
            let heads: Vec<&[u32]> = prompts.iter().map(|p| &p[..p.len() / 2]).collect();
            model
                .forward_seqs(&mut refs, &heads, |i, l| out[all + i] = l.to_vec())
                .unwrap();
            let tails: Vec<&[u32]> = prompts.iter().map(|p| &p[p.len() / 2..]).collect();
            model
                .forward_seqs(&mut refs, &tails, |i, l| out[all + 3 + i] = l.to_vec())
                .unwrap();
            got.push(out);
        }
        let worst = got[0]
            .iter()
            .zip(&got[1])
            .map(|(a, b)| max_diff(a, b) / max_abs(b).max(1.0))
            .fold(0.0f32, f32::max);
        eprintln!("{name:>14} tensor-core prompt attention: {worst:.3e} of max(1, max |ref|)");
        // Other sums in another order: were the two the same kernel, every bit would agree.
        assert!(
            worst > 0.0,
            "{name}: the prompts did not take the tensor-core kernel"
        );
        assert_within(
            &got[0],
            &got[1],
            TC_ATTENTION_BOUND,
            &format!("{name} tensor-core prompt attention"),
        );
    });
}

/// Whole prompt passes on the tensor-core products (`Limits::tc_max_rows`, as
/// `CAMELID_CUDA_TC_MAX_ROWS=256` asks, a knob for measuring them against the GEMMs on a card)
/// against the f16 GEMMs they replace: the same f16 weights and activations, f32 sums in another
/// order, so the logits agree but for an activation pushed across an f16 rounding boundary now
/// and then. Measured on the emulated driver, as a share of max(1, max |ref|): 7.5e-4 to 1.2e-3
/// over these files; a wrong slice or row offset moves logits by whole units.
const TC_PROMPT_BOUND: f32 = 5e-3;

#[test]
fn tensor_core_products_of_whole_prompts_equal_the_gemms() {
    if !gpu() {
        return;
    }
    each_q4_0(|name, m, path| {
        let (_, gemm) = pair(path, Precision::Fast, None);
        let limits = Limits {
            tc_max_rows: Some(MAX_BATCH),
            ..Limits::default()
        };
        let (_, tc) = pair_with(path, Precision::Fast, limits);
        // A prompt of three times the tokens: one pass of 192 rows, six slices of 32 vectors.
        let long = tokens(m).repeat(3);
        let (a, b) = (run_all(&tc, &long), run_all(&gemm, &long));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| max_diff(x, y) / max_abs(y).max(1.0))
            .fold(0.0f32, f32::max);
        eprintln!("{name:>14} tensor-core prompt products: {worst:.3e} of max(1, max |ref|)");
        assert!(
            worst > 0.0,
            "{name}: the prompt did not take the tensor-core products"
        );
        assert_within(
            &a,
            &b,
            TC_PROMPT_BOUND,
            &format!("{name} tensor-core prompt products"),
        );
    });
}

/// The fast path (tensor-core products for prompts of up to 64 tokens, f16 GEMMs past that)
/// against the transformers reference on each file's own weights, with f32 caches and with f16
/// ones (the fast precision's default), both devices alike: its mean error is no larger than the
/// larger of llama.cpp's (f16 caches) and the CPU fast path's on the same file, and its largest
/// within 1.25 times theirs (two roundings of the activations, each largest error one extreme
/// draw; the GPU check, scripts/gpu_check.py, judges the same way, with f32 caches).
#[test]
fn fast_path_error_is_within_llama_cpp() {
    if !gpu() {
        return;
    }
    let man = manifest();
    for m in man["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let n_vocab = m["n_vocab"].as_u64().unwrap() as usize;
        let toks = tokens(m);
        for (file, cache) in [
            "gguf-f16",
            "gguf-bf16",
            "gguf-q8_0",
            "gguf-q4_0",
            "gguf-q4_1",
        ]
        .into_iter()
        .flat_map(|f| [(f, CacheType::F32), (f, CacheType::F16)])
        {
            let path = tiny().join(m["files"][file].as_str().unwrap());
            let (mut cpu, mut gpu) = pair(&path, Precision::Fast, None);
            cpu.set_cache_type(cache).unwrap();
            gpu.set_cache_type(cache).unwrap();
            let key = format!("{file} {}", cache.name());
            let reference = read_logits(m["ref"][file].as_str().unwrap(), n_vocab);
            let theirs = read_logits(m["llamacpp"][file].as_str().unwrap(), n_vocab);
            let ours = run_all(&gpu, &toks);
            let cpu_fast = run_all(&cpu, &toks);
            let err = |a: &[Vec<f32>]| {
                assert_eq!(a.len(), reference.len(), "{name} {key}: positions");
                assert!(a.iter().all(|r| r.len() == n_vocab), "{name} {key}: logits");
                let all: Vec<f32> = a
                    .iter()
                    .zip(&reference)
                    .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| gap(*p, *q)))
                    .collect();
                let mean = all.iter().map(|&d| d as f64).sum::<f64>() / all.len() as f64;
                (max_abs(&all), mean)
            };
            let (o, l, c) = (err(&ours), err(&theirs), err(&cpu_fast));
            eprintln!(
                "{name:>14} {key:<13} cuda fast max {:.3e} mean {:.3e} | llama.cpp {:.3e} {:.3e} | cpu fast {:.3e} {:.3e}",
                o.0, o.1, l.0, l.1, c.0, c.1
            );
            assert!(
                o.0 <= 1.25 * l.0.max(c.0),
                "{name} {key}: max error {} past 1.25 times llama.cpp's {} and the CPU's {}",
                o.0,
                l.0,
                c.0
            );
            assert!(
                o.1 <= l.1.max(c.1),
                "{name} {key}: mean error {} above llama.cpp's {} and the CPU's {}",
                o.1,
                l.1,
                c.1
            );
        }
    }
}

/// A `[n, n_vocab]` little-endian f32 file of the fixtures.
fn read_logits(rel: &str, n_vocab: usize) -> Vec<Vec<f32>> {
    let p = tiny().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let f: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    f.chunks(n_vocab).map(<[f32]>::to_vec).collect()
}
