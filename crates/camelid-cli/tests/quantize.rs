//! `camelid quantize` against llama.cpp: the same type for every tensor as `llama-quantize`, an
//! error no worse than its (testdata/quantize/llama_quantize.json, made by
//! tools/quantize_ref.py), requantized inputs as `llama-quantize --allow-requantize` does them
//! (testdata/quantize/llama_requantize.json, tools/requantize_ref.py), Hugging Face folders
//! converted as llama.cpp's converter does
//! (testdata/tiny/*/f32.gguf, assets/llama-bpe), and refusals that leave the input alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use camelid_formats::gguf::{Gguf, TensorInfo, Value};
use camelid_kernels::DType;
use camelid_kernels::quant::dequantize_row;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn assets() -> PathBuf {
    std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("assets"))
}

fn asset(rel: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

fn camelid(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .arg("quantize")
        .args(args)
        .output()
        .unwrap()
}

fn quantize(input: &Path, output: &Path, ftype: &str, extra: &[&str]) {
    let mut args: Vec<&std::ffi::OsStr> =
        vec![input.as_os_str(), output.as_os_str(), ftype.as_ref()];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    let out = camelid(&args);
    assert!(
        out.status.success(),
        "camelid quantize {} {ftype} {extra:?}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh folder under the target directory (removed at the start of each run, kept after it
/// for inspection).
fn scratch(name: &str) -> PathBuf {
    let d = repo().join("target/camelid-tests/quantize").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn dtype_of(t: &TensorInfo) -> DType {
    DType::from_name(t.ggml_type.name())
        .unwrap_or_else(|| panic!("{}: type {}", t.name, t.ggml_type))
}

fn values(g: &Gguf, t: &TensorInfo) -> Vec<f32> {
    let cols = t.dims[0] as usize;
    let mut out = vec![0.0f32; t.n_elements() as usize];
    let dtype = dtype_of(t);
    let data = g.tensor_data(t);
    let rb = dtype.row_bytes(cols).unwrap();
    for (dst, src) in out.chunks_exact_mut(cols).zip(data.chunks_exact(rb)) {
        dequantize_row(dtype, src, dst);
    }
    out
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

fn u64_key(g: &Gguf, k: &str) -> Option<u64> {
    g.get(k).and_then(Value::as_u64)
}

/// llama_ftype numbers (llama.cpp `include/llama.h`).
fn ftype_id(name: &str) -> u64 {
    match name {
        "Q4_0" => 2,
        "Q4_1" => 3,
        "Q8_0" => 7,
        "Q5_0" => 8,
        "Q5_1" => 9,
        "Q2_K" => 10,
        "Q3_K_S" => 11,
        "Q3_K_M" => 12,
        "Q3_K_L" => 13,
        "Q4_K_S" => 14,
        "Q4_K_M" => 15,
        "Q5_K_S" => 16,
        "Q5_K_M" => 17,
        "Q6_K" => 18,
        "IQ4_NL" => 25,
        "IQ4_XS" => 30,
        other => panic!("no id for {other}"),
    }
}

/// Every file type, mixture and fallback of llama-quantize on three inputs (k-quant rows of 256;
/// rows of 64 and 128 where llama.cpp falls back; tied embeddings): camelid picks the same type
/// for every tensor, and its RMSE against the input is at most llama-quantize's (equal for the
/// 32-element types, whose rounding rule is ggml's; the k-quants search further).
#[test]
fn same_types_as_llama_quantize_and_no_larger_error() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/quantize/llama_quantize.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch("mixes");
    let mut failures = Vec::new();
    let mut n_checked = 0;
    for model in fixture["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        let input = repo().join(model["input"].as_str().unwrap());
        let src = Gguf::open(&input).unwrap();
        for run in model["runs"].as_array().unwrap() {
            let ftype = run["ftype"].as_str().unwrap();
            let pure = run["pure"].as_bool().unwrap();
            let out = dir.join(format!("{name}-{ftype}-{pure}.gguf"));
            let extra: &[&str] = if pure {
                &["--pure", "-t", "2"]
            } else {
                &["-t", "2"]
            };
            quantize(&input, &out, ftype, extra);
            let g = Gguf::open(&out).unwrap();
            assert_eq!(
                u64_key(&g, "general.file_type"),
                Some(ftype_id(ftype)),
                "{name} {ftype}"
            );
            assert_eq!(u64_key(&g, "general.quantization_version"), Some(2));
            let tensors = run["tensors"].as_object().unwrap();
            assert_eq!(
                g.tensors().len(),
                tensors.len(),
                "{name} {ftype}: tensor count"
            );
            for (tname, want) in tensors {
                let (want_ty, want_rmse) = (want[0].as_str().unwrap(), want[1].as_f64().unwrap());
                let t = g
                    .tensor(tname)
                    .unwrap_or_else(|| panic!("{name} {ftype}: no {tname}"));
                let s = src.tensor(tname).unwrap();
                assert_eq!(t.dims, s.dims, "{tname}");
                let got_ty = t.ggml_type.name();
                let err = rmse(&values(&g, t), &values(&src, s));
                n_checked += 1;
                if got_ty != want_ty || err > want_rmse * (1.0 + 1e-6) + 1e-12 {
                    failures.push(format!(
                        "{name} {ftype}{} {tname}: {got_ty} rmse {err:.6e}, llama-quantize {want_ty} rmse {want_rmse:.6e}",
                        if pure { " --pure" } else { "" }
                    ));
                }
            }
        }
    }
    assert!(n_checked > 1000, "only {n_checked} tensors checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The converter's keys that must come out the same from a Hugging Face folder (the name and size
/// label are free text).
fn same_metadata(ours: &Gguf, theirs: &Gguf, what: &str) {
    for (k, v) in theirs.metadata() {
        if matches!(k.as_str(), "general.name" | "general.size_label") {
            continue;
        }
        match ours.get(k) {
            Some(o) => assert_eq!(o, v, "{what}: key {k}"),
            None => panic!("{what}: key {k} missing"),
        }
    }
}

/// A Hugging Face folder gives the GGUF llama.cpp's converter made from it: the same keys, every
/// matrix byte for byte (so Wq/Wk are put back in Meta's row order), the Llama 3.1 RoPE divisors;
/// and quantized, the same bytes as llama-quantize --pure from the converter's file.
#[test]
fn hf_folders_convert_as_llama_cpp_does() {
    let dir = scratch("hf");
    let models = [
        "llama1-mha",
        "llama2-gqa8",
        "mqa",
        "llama3-gqa",
        "llama31-scaled",
        "llama32-tied",
    ];
    for m in models {
        let tiny = repo().join("testdata/tiny").join(m);
        let theirs = Gguf::open(&tiny.join("f32.gguf")).unwrap();
        let out = dir.join(format!("{m}-f32.gguf"));
        quantize(&tiny.join("hf-f32"), &out, "F32", &[]);
        let ours = Gguf::open(&out).unwrap();
        same_metadata(&ours, &theirs, m);
        assert_eq!(
            ours.tensors().len(),
            theirs.tensors().len(),
            "{m}: tensor count"
        );
        for t in theirs.tensors() {
            let o = ours
                .tensor(&t.name)
                .unwrap_or_else(|| panic!("{m}: no {}", t.name));
            assert_eq!(
                (o.ggml_type, &o.dims),
                (t.ggml_type, &t.dims),
                "{m} {}",
                t.name
            );
            if t.name == "rope_freqs.weight" {
                // The converter computes the divisors in float32, camelid in float64.
                for (a, b) in values(&ours, o).iter().zip(values(&theirs, t)) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs(),
                        "{m} rope_freqs: {a} vs {b}"
                    );
                }
            } else {
                assert!(
                    ours.tensor_data(o) == theirs.tensor_data(t),
                    "{m} {}: bytes differ",
                    t.name
                );
            }
        }

        for (ftype, file) in [
            ("Q8_0", "q8_0.gguf"),
            ("Q4_0", "q4_0.gguf"),
            ("Q4_1", "q4_1.gguf"),
        ] {
            let theirs = Gguf::open(&tiny.join(file)).unwrap();
            let out = dir.join(format!("{m}-{file}"));
            quantize(&tiny.join("hf-f32"), &out, ftype, &["--pure"]);
            let ours = Gguf::open(&out).unwrap();
            same_metadata(&ours, &theirs, &format!("{m} {ftype}"));
            for t in theirs.tensors() {
                let o = ours.tensor(&t.name).unwrap();
                if t.name == "rope_freqs.weight" {
                    continue;
                }
                assert_eq!(o.ggml_type, t.ggml_type, "{m} {ftype} {}", t.name);
                assert!(
                    ours.tensor_data(o) == theirs.tensor_data(t),
                    "{m} {ftype} {}: bytes differ",
                    t.name
                );
            }
        }
    }
}

/// Writes a safetensors file (format: 8-byte little-endian header length, JSON header, data).
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, vals) in tensors {
        let start = data.len();
        for v in vals {
            // BF16: the high half of the f32 (the values below are exact in BF16).
            data.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&data);
    std::fs::write(path, file).unwrap();
}

/// A Llama 3 folder with `tokenizer.json` gets the vocabulary llama.cpp keeps for Llama 3
/// (assets/llama-bpe/ggml-vocab-llama-bpe.gguf): the same tokens, types, merges, pre-tokenizer
/// and special ids.
#[test]
fn llama3_tokenizer_json_gives_llama_cpp_vocab() {
    let dir = scratch("llama3-vocab");
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(asset(&format!("llama3-hf/{f}")), hf.join(f)).unwrap();
    }
    let (v, d, kv, ff) = (128256usize, 32usize, 16usize, 64usize);
    std::fs::write(
        hf.join("config.json"),
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
            "intermediate_size": ff, "num_attention_heads": 2, "num_key_value_heads": 1,
            "num_hidden_layers": 1, "vocab_size": v, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "max_position_embeddings": 8192, "tie_word_embeddings": true
        })
        .to_string(),
    )
    .unwrap();
    let fill = |n: usize| {
        (0..n)
            .map(|i| ((i % 17) as f32 - 8.0) / 16.0)
            .collect::<Vec<_>>()
    };
    let l = "model.layers.0.";
    write_safetensors(
        &hf.join("model.safetensors"),
        &[
            ("model.embed_tokens.weight", vec![v, d], fill(v * d)),
            (&format!("{l}input_layernorm.weight"), vec![d], vec![1.0; d]),
            (
                &format!("{l}self_attn.q_proj.weight"),
                vec![d, d],
                fill(d * d),
            ),
            (
                &format!("{l}self_attn.k_proj.weight"),
                vec![kv, d],
                fill(kv * d),
            ),
            (
                &format!("{l}self_attn.v_proj.weight"),
                vec![kv, d],
                fill(kv * d),
            ),
            (
                &format!("{l}self_attn.o_proj.weight"),
                vec![d, d],
                fill(d * d),
            ),
            (
                &format!("{l}post_attention_layernorm.weight"),
                vec![d],
                vec![1.0; d],
            ),
            (
                &format!("{l}mlp.gate_proj.weight"),
                vec![ff, d],
                fill(ff * d),
            ),
            (&format!("{l}mlp.up_proj.weight"), vec![ff, d], fill(ff * d)),
            (
                &format!("{l}mlp.down_proj.weight"),
                vec![d, ff],
                fill(d * ff),
            ),
            ("model.norm.weight", vec![d], vec![1.0; d]),
        ],
    );
    let out = dir.join("out.gguf");
    quantize(&hf, &out, "F16", &[]);
    let ours = Gguf::open(&out).unwrap();
    let theirs = Gguf::open(&asset("llama-bpe/ggml-vocab-llama-bpe.gguf")).unwrap();
    for k in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "llama.vocab_size",
    ] {
        assert!(ours.get(k) == theirs.get(k), "{k} differs");
    }
    // Tied: no output matrix; the embedding is F16 as asked.
    assert!(ours.tensor("output.weight").is_none());
    assert_eq!(
        ours.tensor("token_embd.weight").unwrap().ggml_type.name(),
        "F16"
    );
}

fn contents(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Refusals: OUTPUT naming the input (also through another spelling or a hard link), a file in
/// the input folder, an already quantized input without --allow-requantize, an unknown type. Each exits non-zero with a
/// message and leaves the input as it was.
#[test]
fn refuses_to_overwrite_the_input_or_requantize() {
    let dir = scratch("refuse");
    let input = dir.join("in.gguf");
    std::fs::copy(repo().join("testdata/tiny/llama3-gqa/f32.gguf"), &input).unwrap();
    let before = contents(&input);
    let link = dir.join("link.gguf");
    std::fs::hard_link(&input, &link).unwrap();
    let respelled = dir.join("../refuse/./in.gguf");
    let hf = repo().join("testdata/tiny/llama3-gqa/hf-f32");
    let quantized = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let cases: [(&Path, &Path, &str, &str); 6] = [
        (&input, &input, "Q8_0", "overwrite the input"),
        (&input, &respelled, "Q8_0", "overwrite the input"),
        (&input, &link, "Q8_0", "overwrite the input"),
        (
            &hf,
            &hf.join("model.safetensors"),
            "Q8_0",
            "overwrite the input",
        ),
        (
            &quantized,
            &dir.join("x.gguf"),
            "Q8_0",
            "is Q4_0, already quantized (16 tensors to convert from Q4_0); requantizing can \
             severely reduce quality compared to quantizing from F32, F16 or BF16 weights: pass \
             --allow-requantize",
        ),
        (&input, &dir.join("y.gguf"), "Q4_2", "unknown TYPE"),
    ];
    for (inp, out, ty, msg) in cases {
        let o = camelid(&[inp.as_os_str(), out.as_os_str(), ty.as_ref()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{} -> {}: succeeded",
            inp.display(),
            out.display()
        );
        assert!(
            err.contains(msg),
            "{} -> {}: {err}",
            inp.display(),
            out.display()
        );
    }
    assert!(contents(&input) == before, "the input changed");
    // Nothing was left behind: no output, no temporary file.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["in.gguf", "link.gguf"]);
}

/// Exact logits (`--precision exact`, so that only the weights differ) of `tokens`, row-major.
fn exact_logits(model: &Path, tokens: &str) -> Vec<f32> {
    let o = command(&[
        "logits".as_ref(),
        "-m".as_ref(),
        model.as_os_str(),
        "--tokens".as_ref(),
        tokens.as_ref(),
        "--all".as_ref(),
        "--precision".as_ref(),
        "exact".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["logits"].as_array().unwrap();
    let mut out = Vec::new();
    for r in rows {
        out.extend(
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32),
        );
    }
    out
}

/// Mean KL divergence KL(p || q) per position of the softmaxes of two logit matrices.
fn mean_kl(p: &[f32], q: &[f32], n_vocab: usize) -> f64 {
    let log_softmax = |r: &[f32]| -> Vec<f64> {
        let m = r.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + r.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        r.iter().map(|&x| x as f64 - lse).collect()
    };
    let rows = p.len() / n_vocab;
    let mut total = 0.0;
    for (a, b) in p.chunks_exact(n_vocab).zip(q.chunks_exact(n_vocab)) {
        let (la, lb) = (log_softmax(a), log_softmax(b));
        total += la
            .iter()
            .zip(&lb)
            .map(|(x, y)| x.exp() * (x - y))
            .sum::<f64>();
    }
    total / rows as f64
}

fn manifest_tokens(model: &str, n: usize) -> String {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/tiny/manifest.json")).unwrap(),
    )
    .unwrap();
    let entry = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == model)
        .unwrap();
    let ids: Vec<String> = entry["tokens"].as_array().unwrap()[..n]
        .iter()
        .map(|t| t.to_string())
        .collect();
    ids.join(",")
}

/// Requantizing (issue 19): a quantized input is refused without --allow-requantize and nothing
/// is written; with it, a warning, and every tensor gets the type llama-quantize picks for that
/// file type (the types of llama_quantize.json, which depend on names and shapes, not on the
/// input's type). What can be checked exactly is: Q4_0 -> F32 dequantizes without loss (the
/// logits are the input's); Q4_0 -> Q5_0 loses nothing either (the signed largest element of a
/// Q4_0 block is -8d, so Q5_0 picks the step d/2 and every Q4_0 level d(q-8) is the Q5_0 level
/// 2q); Q4_0 -> Q4_0 --pure copies every byte and needs no flag. The lossy types give logits
/// close to the input's: Q8_0 within a small KL divergence.
#[test]
fn requantizes_quantized_inputs_with_allow_requantize() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/quantize/llama_quantize.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch("requantize");
    for name in ["llama3-gqa", "llama32-tied"] {
        let input = repo().join(format!("testdata/tiny/{name}/q4_0.gguf"));
        let src = Gguf::open(&input).unwrap();
        let n_vocab = u64_key(&src, "llama.vocab_size").unwrap() as usize;
        let tokens = manifest_tokens(name, 16);
        let base = exact_logits(&input, &tokens);
        let run = |ftype: &str, extra: &[&str]| -> (PathBuf, String) {
            let out = dir.join(format!("{name}-{ftype}{}.gguf", extra.join("")));
            let mut args: Vec<&std::ffi::OsStr> =
                vec![input.as_os_str(), out.as_os_str(), ftype.as_ref()];
            args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
            let o = camelid(&args);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(o.status.success(), "{name} {ftype} {extra:?}: {err}");
            (out, err)
        };

        let refused = dir.join(format!("{name}-refused.gguf"));
        let o = camelid(&[input.as_os_str(), refused.as_os_str(), "Q8_0".as_ref()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("--allow-requantize"),
            "{err}"
        );
        assert!(!refused.exists());

        for ftype in ["Q8_0", "Q4_1", "Q5_0", "Q4_K_M", "Q5_K_M", "Q6_K"] {
            let (out, err) = run(ftype, &["--allow-requantize"]);
            assert!(
                err.contains("warning: requantizing") && err.contains("severely reduce quality"),
                "{name} {ftype}: {err}"
            );
            let g = Gguf::open(&out).unwrap();
            assert_eq!(u64_key(&g, "general.file_type"), Some(ftype_id(ftype)));
            let want = fixture["models"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap()["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["ftype"] == ftype && r["pure"] == false)
                .unwrap()["tensors"]
                .as_object()
                .unwrap();
            assert_eq!(g.tensors().len(), want.len());
            for (tname, w) in want {
                let t = g.tensor(tname).unwrap();
                assert_eq!(
                    t.ggml_type.name(),
                    w[0].as_str().unwrap(),
                    "{name} {ftype} {tname}"
                );
            }
            let logits = exact_logits(&out, &tokens);
            assert!(logits.iter().all(|x| x.is_finite()));
            let kl = mean_kl(&base, &logits, n_vocab);
            if ftype == "Q8_0" {
                assert!(kl < 0.02, "{name} {ftype}: KL {kl}");
            }
        }

        // Lossless: dequantized to F32, and requantized to Q5_0.
        for ftype in ["F32", "Q5_0"] {
            let (out, _) = run(ftype, &["--allow-requantize", "--pure"]);
            let g = Gguf::open(&out).unwrap();
            for t in src.tensors() {
                let o = g.tensor(&t.name).unwrap();
                assert_eq!(
                    values(&g, o),
                    values(&src, t),
                    "{name} {ftype}: {} changed",
                    t.name
                );
            }
            let logits = exact_logits(&out, &tokens);
            assert_eq!(logits.len(), base.len(), "{name} {ftype}: logits");
            let worst = base
                .iter()
                .zip(&logits)
                .map(|(a, b)| (a - b).abs())
                // A NaN counts as infinitely far (f32::max would pass over it).
                .fold(0.0f32, |m, d| {
                    m.max(if d.is_nan() { f32::INFINITY } else { d })
                });
            assert!(worst < 1e-4, "{name} {ftype}: logits moved by {worst}");
        }

        // Nothing to convert: no flag needed, no warning, the same tensor bytes.
        let (out, err) = run("Q4_0", &["--pure"]);
        assert!(!err.contains("warning"), "{err}");
        let g = Gguf::open(&out).unwrap();
        for t in src.tensors() {
            let o = g.tensor(&t.name).unwrap();
            assert!(g.tensor_data(o) == src.tensor_data(t), "{}", t.name);
        }
    }
}

/// Requantizing against llama-quantize --allow-requantize (testdata/quantize/llama_requantize.json,
/// made by tools/requantize_ref.py) on the tiny Q4_0 and Q8_0 models and on the default model:
/// every tensor in llama.cpp's type; byte for byte the same where the type's rounding rule is
/// ggml's (F32 and the 32-element types); where camelid's k-quant search differs, an error
/// against the dequantized input no larger than llama.cpp's.
#[test]
fn requantizes_as_llama_quantize_does() {
    use sha2::{Digest, Sha256};
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/quantize/llama_requantize.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch("requantize-reference");
    let mut failures = Vec::new();
    let mut n_checked = 0;
    for model in fixture["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        let rel = model["input"].as_str().unwrap();
        let input = match rel.strip_prefix("assets/") {
            Some(a) => asset(a),
            None => repo().join(rel),
        };
        let src = Gguf::open(&input).unwrap();
        for run in model["runs"].as_array().unwrap() {
            let ftype = run["ftype"].as_str().unwrap();
            let out = dir.join(format!("{name}-{ftype}.gguf"));
            quantize(&input, &out, ftype, &["--allow-requantize", "-t", "2"]);
            let g = Gguf::open(&out).unwrap();
            let tensors = run["tensors"].as_object().unwrap();
            assert_eq!(g.tensors().len(), tensors.len(), "{name} {ftype}");
            for (tname, want) in tensors {
                let want_ty = want[0].as_str().unwrap();
                let want_rmse = want[1].as_f64().unwrap();
                let want_sha = want[2].as_str().unwrap();
                let t = g.tensor(tname).unwrap();
                let ty = dtype_of(t);
                n_checked += 1;
                let what = format!("{name} {ftype} {tname}");
                if t.ggml_type.name() != want_ty {
                    failures.push(format!("{what}: {ty}, llama-quantize {want_ty}"));
                } else if ty.block_size() <= 32 {
                    let sha: String = Sha256::digest(g.tensor_data(t))
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    if sha != want_sha {
                        failures.push(format!("{what}: {ty} bytes differ from llama-quantize's"));
                    }
                } else {
                    let err = rmse(&values(&g, t), &values(&src, src.tensor(tname).unwrap()));
                    if err > want_rmse * (1.0 + 1e-6) + 1e-12 {
                        failures.push(format!(
                            "{what}: {ty} rmse {err:.6e}, llama-quantize {want_rmse:.6e}"
                        ));
                    }
                }
            }
        }
    }
    assert!(n_checked > 1000, "only {n_checked} tensors checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The default model (SmolLM2-135M-Instruct: Q4_1, its tied embedding Q8_0) was refused
/// (issue 19). With --allow-requantize it goes to Q8_0: the Q8_0 embedding is copied byte for
/// byte, the Q4_1 matrices are requantized, and the model's greedy next token and its
/// distribution stay those of the input.
#[test]
fn the_default_model_requantizes_with_the_flag() {
    let input = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let dir = scratch("requantize-smollm2");
    let out = dir.join("q8_0.gguf");
    let o = camelid(&[input.as_os_str(), out.as_os_str(), "Q8_0".as_ref()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is Q4_1") && err.contains("--allow-requantize"),
        "{err}"
    );
    assert!(!out.exists());
    quantize(&input, &out, "Q8_0", &["--allow-requantize"]);
    let (src, g) = (Gguf::open(&input).unwrap(), Gguf::open(&out).unwrap());
    let emb = "token_embd.weight";
    assert!(g.tensor_data(g.tensor(emb).unwrap()) == src.tensor_data(src.tensor(emb).unwrap()));
    for t in g.tensors().iter().filter(|t| t.dims.len() == 2) {
        assert_eq!(t.ggml_type.name(), "Q8_0", "{}", t.name);
    }
    // The ids of testdata/chat/smollm2.json's "single_user" turn without the default system
    // prompt: "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n".
    let tokens = "1,4093,198,1780,314,260,3575,282,4649,47,2,198,1,520,9531,198";
    let (a, b) = (exact_logits(&input, tokens), exact_logits(&out, tokens));
    let n_vocab = 49152;
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |m, (i, &x)| if x > m.1 { (i, x) } else { m },
            )
            .0
    };
    let last = a.len() - n_vocab;
    assert_eq!(argmax(&a[last..]), argmax(&b[last..]));
    let kl = mean_kl(&a, &b, n_vocab);
    assert!(kl < 0.02, "KL {kl}");
}

/// A camelid-quantized file runs in camelid: the k-quant mix of the 256-row model gives finite
/// logits of the right length.
#[test]
fn quantized_output_loads_and_runs() {
    let dir = scratch("runs");
    let out = dir.join("k256-q4_k_m.gguf");
    quantize(
        &repo().join("testdata/quantize/k256.gguf"),
        &out,
        "Q4_K_M",
        &[],
    );
    let o = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(["logits", "-m"])
        .arg(&out)
        .args(["--tokens", "1,50,100,200"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = v["logits"][0].as_array().unwrap();
    assert_eq!(row.len(), 384);
    assert!(row.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)));
}

/// `random-model` writes a loadable model of a published shape: the preset's widths, the
/// requested type and reductions, metadata llama.cpp reads, and the same bytes for the same seed.
#[test]
fn random_model_has_the_preset_shape_and_is_reproducible() {
    let dir = scratch("random-model");
    let (a, b) = (dir.join("a.gguf"), dir.join("b.gguf"));
    for out in [&a, &b] {
        let o = command(&[
            "random-model".as_ref(),
            "llama3.2-1b".as_ref(),
            out.as_os_str(),
            "Q4_0".as_ref(),
            "--layers".as_ref(),
            "1".as_ref(),
            "--vocab".as_ref(),
            "512".as_ref(),
            "--seed".as_ref(),
            "7".as_ref(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let g = Gguf::open(&a).unwrap();
    let u = |k: &str| match g.get(k) {
        Some(Value::U32(v)) => *v,
        other => panic!("{k}: {other:?}"),
    };
    // Llama 3.2 1B (LLAMA.md): d 2048, 32 heads over 8 kv heads, FFN 8192, tied embeddings.
    assert_eq!(u("llama.block_count"), 1);
    assert_eq!(u("llama.embedding_length"), 2048);
    assert_eq!(u("llama.attention.head_count_kv"), 8);
    assert_eq!(u("llama.feed_forward_length"), 8192);
    assert!(g.tensor("output.weight").is_none());
    assert!(g.tensor("rope_freqs.weight").is_some());
    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ggml_type.name(), "Q4_0");
    assert_eq!(q.dims, [2048, 2048]);
    // It runs: one position's logits over the reduced vocabulary.
    let o = command(&[
        "logits".as_ref(),
        "-m".as_ref(),
        a.as_os_str(),
        "--tokens".as_ref(),
        "1,2,3".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n_vocab"], 512);
    let o = command(&[
        "random-model".as_ref(),
        "no-such-shape".as_ref(),
        dir.join("x.gguf").as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("one of: llama-7b"),
        "{err}"
    );
    // A narrower model of the same head size and GQA ratio (the in-cache benchmark's).
    let narrow = dir.join("narrow.gguf");
    let o = command(&[
        "random-model".as_ref(),
        "llama3.2-1b".as_ref(),
        narrow.as_os_str(),
        "--layers".as_ref(),
        "1".as_ref(),
        "--vocab".as_ref(),
        "512".as_ref(),
        "--dim".as_ref(),
        "512".as_ref(),
        "--ffn".as_ref(),
        "1536".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = Gguf::open(&narrow).unwrap();
    let u = |k: &str| match g.get(k) {
        Some(Value::U32(v)) => *v,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(u("llama.embedding_length"), 512);
    assert_eq!(u("llama.attention.head_count"), 8);
    assert_eq!(u("llama.attention.head_count_kv"), 2);
    assert_eq!(u("llama.feed_forward_length"), 1536);
    let o = command(&[
        "random-model".as_ref(),
        "llama3.2-1b".as_ref(),
        dir.join("y.gguf").as_os_str(),
        "--dim".as_ref(),
        "100".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--dim must be a positive multiple of 256"),
        "{err}"
    );
}

/// Any `camelid` subcommand.
fn command(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(args)
        .output()
        .unwrap()
}

/// `quantize --lora` writes the adapted model (llama-export-lora's job): F32 files of a GGUF
/// and of a Hugging Face input with an adapter merged give PEFT's logits (`testdata/lora`) at
/// `--precision exact`, within 1e-4 · max(1, max |ref|); an adapter of a tied model's output
/// gives the file an `output.weight` of its own beside the unchanged embeddings.
#[test]
fn quantize_with_lora_writes_the_adapted_model() {
    use camelid_kernels::Precision;
    use camelid_model::Model;
    let man: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/lora/manifest.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch("lora");
    for (name, input, adapter) in [
        ("gqa8-all", "llama2-gqa8/f32.gguf", "gqa8-all"),
        (
            "tied-lm-head",
            "llama32-tied/f32.gguf",
            "tied-lm-head/adapter.gguf",
        ),
        ("tied-lm-head", "llama32-tied/hf-f32", "tied-lm-head"),
    ] {
        let a = man["adapters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap();
        let out = dir.join(format!("{}.gguf", input.replace('/', "-")));
        let adapter = repo().join("testdata/lora").join(adapter);
        quantize(
            &repo().join("testdata/tiny").join(input),
            &out,
            "F32",
            &["--lora", adapter.to_str().unwrap()],
        );
        if name == "tied-lm-head" {
            let g = Gguf::open(&out).unwrap();
            assert!(g.tensor("output.weight").is_some() && g.tensor("token_embd.weight").is_some());
        }
        let mut model = Model::load(&out).unwrap();
        model.set_precision(Precision::Exact);
        let toks: Vec<u32> = a["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let mut state = model.new_state(toks.len()).unwrap();
        let mut rows = vec![Vec::new(); toks.len()];
        model
            .forward(&mut state, &toks, true, |i, l| rows[i] = l.to_vec())
            .unwrap();
        let got = rows.concat();
        let want: Vec<f32> =
            std::fs::read(repo().join(format!("testdata/lora/{name}/ref-f32.bin")))
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
        assert_eq!(got.len(), want.len());
        let bound = 1e-4 * want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let max = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
        assert!(max <= bound, "{input} + {name}: max |diff| {max} > {bound}");
    }
}
