//! Meta's release folders (`params.json` + `consolidated.NN.pth` + `tokenizer.model`) in every
//! command: a Llama 3 folder with Meta's real tiktoken `tokenizer.model` (assets/llama3-meta,
//! the file of the `llama-models==0.3.0` wheel) tokenizes as llama.cpp's reference vectors say,
//! chats in Meta's Llama 3 header layout, and runs in `run`, `chat`, `tokenize`, `inspect`,
//! `perplexity`, `serve` and `quantize`; Llama 2 folders chat in `[INST]`, LLaMA 1 folders do
//! not chat; `quantize` of a folder gives llama.cpp's Q8_0 bytes and transformers' logits.
//!
//! A real-vocabulary folder is 128,256 embedding rows, too big to keep: it is written here, with
//! random weights, by `camelid_formats::pth::write_pth` in torch.save's layout.

#[path = "../../camelid-tokenizer/tests/common/mod.rs"]
mod vocab;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use camelid_engine::chat::ChatTemplate;
use camelid_formats::gguf::Gguf;
use camelid_formats::pth::{PthDtype, PthEntry, write_pth};
use camelid_model::tokenizer_load::checkpoint_tokenizer;
use camelid_model::weights::Checkpoint;
use camelid_tokenizer::ChatHint;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn camelid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("meta")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Random bf16 bytes, uniform in ±`scale` (splitmix64).
fn random_bf16(n: usize, scale: f32, seed: &mut u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        let bits = ((2.0 * u - 1.0) * scale).to_bits();
        out.extend_from_slice(&((bits >> 16) as u16).to_le_bytes());
    }
    out
}

/// A Llama 3.1-style Meta folder: 2 layers, d_model 64, 4 heads over 2 kv heads, Meta's FFN
/// rule (multiple_of 32: 192), θ 500000 with scaled RoPE, bf16 weights, one rank, and Meta's
/// real `tokenizer.model`. Written once per test run.
fn llama3_folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("llama3-real-vocab");
        let (d, layers, heads, kv, ff, vocab) =
            (64usize, 2usize, 4usize, 2usize, 192usize, 128256usize);
        let hd = d / heads;
        let params = serde_json::json!({
            "dim": d, "n_layers": layers, "n_heads": heads, "n_kv_heads": kv,
            "vocab_size": vocab, "multiple_of": 32, "norm_eps": 1e-5,
            "rope_theta": 500000.0, "use_scaled_rope": true,
        });
        std::fs::write(dir.join("params.json"), params.to_string()).unwrap();
        let mut seed = 20u64;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, scale: f32, seed: &mut u64| {
            let n = shape.iter().product();
            let data = if scale == 0.0 {
                // Norm gains of 1, as a fresh RMSNorm has.
                [0x80u8, 0x3F].repeat(n)
            } else {
                random_bf16(n, scale, seed)
            };
            tensors.push((name, shape, data));
        };
        add(
            "tok_embeddings.weight".into(),
            vec![vocab, d],
            1.0,
            &mut seed,
        );
        for l in 0..layers {
            let p = format!("layers.{l}.");
            let s = 1.0 / (d as f32).sqrt();
            add(format!("{p}attention.wq.weight"), vec![d, d], s, &mut seed);
            add(
                format!("{p}attention.wk.weight"),
                vec![kv * hd, d],
                s,
                &mut seed,
            );
            add(
                format!("{p}attention.wv.weight"),
                vec![kv * hd, d],
                s,
                &mut seed,
            );
            add(format!("{p}attention.wo.weight"), vec![d, d], s, &mut seed);
            add(
                format!("{p}feed_forward.w1.weight"),
                vec![ff, d],
                s,
                &mut seed,
            );
            add(
                format!("{p}feed_forward.w2.weight"),
                vec![d, ff],
                1.0 / (ff as f32).sqrt(),
                &mut seed,
            );
            add(
                format!("{p}feed_forward.w3.weight"),
                vec![ff, d],
                s,
                &mut seed,
            );
            add(format!("{p}attention_norm.weight"), vec![d], 0.0, &mut seed);
            add(format!("{p}ffn_norm.weight"), vec![d], 0.0, &mut seed);
        }
        add("norm.weight".into(), vec![d], 0.0, &mut seed);
        add(
            "output.weight".into(),
            vec![vocab, d],
            1.0 / (d as f32).sqrt(),
            &mut seed,
        );
        let entries: Vec<PthEntry> = tensors
            .iter()
            .map(|(name, shape, data)| PthEntry {
                name,
                dtype: PthDtype::BF16,
                shape,
                data,
            })
            .collect();
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join("consolidated.00.pth")).unwrap(),
        );
        write_pth(&mut f, &entries).unwrap();
        f.flush().unwrap();
        std::fs::copy(
            vocab::asset("llama3-meta/tokenizer.model"),
            dir.join("tokenizer.model"),
        )
        .unwrap();
        dir
    })
}

/// The reference ids of a dialog of testdata/chat/llama3.json (Meta's `ChatFormat` layout,
/// tokenized by Hugging Face's tokenizer: tools/chat_reference.py).
fn chat_reference(file: &str, case: &str) -> (Value, Vec<u64>) {
    let text = std::fs::read_to_string(repo().join("testdata/chat").join(file)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let c = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap()
        .clone();
    let ids = c["meta_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (c["messages"].clone(), ids)
}

/// Issue 20 item 1: the folder's tokenizer, through the loader every command uses, is Meta's
/// tiktoken file with the 256 special tokens: llama.cpp's 46 Llama 3 vectors, `<|eot_id|>` and
/// `<|end_of_text|>` ending generation, and the Llama 3 header layout as its chat format.
#[test]
fn llama3_folder_tokenizes_as_the_reference_and_chats_in_the_header_layout() {
    let dir = llama3_folder();
    let ckpt = Checkpoint::open(dir).unwrap();
    assert_eq!(ckpt.config.n_vocab, 128256);
    let tok = checkpoint_tokenizer(&ckpt).unwrap();
    assert_eq!(tok.n_vocab(), 128256);
    vocab::check_vectors(&tok, "llama-bpe");
    assert_eq!(tok.bos(), Some(128000));
    for id in [128001, 128008, 128009] {
        assert!(tok.eog_ids().contains(&id), "{id}: {:?}", tok.eog_ids());
    }
    assert_eq!(
        ChatTemplate::for_tokenizer(&tok),
        Some(ChatTemplate::Llama3)
    );
    // Meta's layout, token for token.
    for case in ["single_user", "system_user", "multi_turn"] {
        let (messages, want) = chat_reference("llama3.json", case);
        let msgs: Vec<camelid_engine::chat::Message> = messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                camelid_engine::chat::Message::new(
                    m["role"].as_str().unwrap(),
                    m["content"].as_str().unwrap(),
                )
            })
            .collect();
        let got = ChatTemplate::Llama3.encode(&tok, &msgs, true).unwrap();
        let got: Vec<u64> = got.into_iter().map(u64::from).collect();
        assert_eq!(got, want, "{case}");
    }
}

/// Every command on the Llama 3 folder: tokenize (BOS then the reference ids), inspect, run,
/// run --chat (Meta's header layout), chat, perplexity, serve.
#[test]
fn llama3_folder_works_in_every_command() {
    let dir = llama3_folder();
    let m = dir.to_str().unwrap();
    let (text, want) = vocab::vectors("llama-bpe")
        .into_iter()
        .find(|(s, _)| s.contains("Hello world"))
        .unwrap();
    let ids: Vec<u32> = serde_json::from_str(&ok(
        &camelid(&["tokenize", "-m", m, "--json", &text]),
        "tokenize",
    ))
    .unwrap();
    assert_eq!(ids, [&[128000][..], &want].concat());

    let shown = ok(&camelid(&["inspect", m]), "inspect");
    assert!(shown.contains("vocab 128256"), "{shown}");
    assert!(shown.contains("format: Meta release of Llama 3"), "{shown}");
    assert!(shown.contains("factor: 8.0"), "{shown}");

    let out = ok(
        &camelid(&[
            "run", "-m", m, "-p", "Hello", "-n", "3", "--temp", "0", "--json",
        ]),
        "run",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!([128000, 9906]));
    assert_eq!(v["ids"].as_array().unwrap().len(), 3);

    let (messages, want) = chat_reference("llama3.json", "system_user");
    let system = messages[0]["content"].as_str().unwrap();
    let user = messages[1]["content"].as_str().unwrap();
    let out = ok(
        &camelid(&[
            "run", "-m", m, "--chat", "--system", system, "-p", user, "-n", "1", "--temp", "0",
            "--json",
        ]),
        "run --chat",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!(want));

    let mut child = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(["chat", "-m", m, "-n", "2", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hi there\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat: {err}");
    assert!(!out.stdout.is_empty());

    let text_file = repo().join("testdata/eval/en.txt");
    let out = ok(
        &camelid(&[
            "perplexity",
            "-m",
            m,
            "-f",
            text_file.to_str().unwrap(),
            "-c",
            "64",
            "--chunks",
            "1",
            "--json",
        ]),
        "perplexity",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let ppl = v["ppl"].as_f64().unwrap();
    // A random model is about as unsure as a uniform guess over the vocabulary.
    assert!(ppl.is_finite() && ppl > 1000.0, "{v}");

    serve_answers_in_the_llama3_layout(m, want.len());
}

/// `serve` on the folder: a chat request is laid out in Meta's Llama 3 format (its prompt
/// counts the reference's tokens).
fn serve_answers_in_the_llama3_layout(m: &str, prompt_tokens: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(["serve", "--port", "0", "--ctx", "256", "-m", m])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the server exited before listening: {:?}", child.wait());
        }
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on http://".len()..].trim().to_string();
        }
    };
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
    });
    let (messages, _) = chat_reference("llama3.json", "system_user");
    // The model's id is the folder's name.
    let body = serde_json::json!({
        "model": "llama3-real-vocab", "messages": messages, "max_tokens": 2, "temperature": 0,
    })
    .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let json = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens, "{v}");
}

/// The chat format follows the generation of a Meta folder, which carries no template: Llama 2
/// folders Meta's `[INST] <<SYS>>` layout, LLaMA 1 (a base model) none, which `chat` reports.
#[test]
fn meta_folders_chat_in_their_generations_format() {
    let meta = repo().join("testdata/meta");
    let template = |name: &str| {
        let ckpt = Checkpoint::open(&meta.join(name)).unwrap();
        ChatTemplate::for_tokenizer(&checkpoint_tokenizer(&ckpt).unwrap())
    };
    assert_eq!(template("llama2-gqa8-mp2-bf16"), Some(ChatTemplate::Llama2));
    assert_eq!(template("mqa-mp1-bf16"), Some(ChatTemplate::Llama2));
    assert_eq!(template("llama1-mha-mp1-f32"), None);
    assert_eq!(template("llama1-mha-mp2-bf16"), None);
    // The tiny vocabularies are no known format by themselves: the generation decides.
    let hint = |name: &str| {
        let ckpt = Checkpoint::open(&meta.join(name)).unwrap();
        checkpoint_tokenizer(&ckpt).unwrap().chat_hint()
    };
    assert_eq!(hint("llama1-mha-mp1-f32"), Some(ChatHint::Plain));
    assert_eq!(hint("llama2-gqa8-mp2-bf16"), Some(ChatHint::Llama2));
    // With the real 32,000-piece vocabulary, which Llama 2 and LLaMA 1 share, the hint is what
    // keeps a LLaMA 1 folder from Llama 2's format.
    let mut spm = camelid_model::tokenizer_load::load_tokenizer(&vocab::asset(
        "llama-spm/ggml-vocab-llama-spm.gguf",
    ))
    .unwrap();
    assert_eq!(
        ChatTemplate::for_tokenizer(&spm),
        Some(ChatTemplate::Llama2)
    );
    spm.set_chat_hint(Some(ChatHint::Plain));
    assert_eq!(ChatTemplate::for_tokenizer(&spm), None);

    let l2 = meta.join("llama2-gqa8-mp2-bf16");
    let l2 = l2.to_str().unwrap();
    let run_chat = |extra: &[&str]| -> Value {
        let args = [
            &[
                "run",
                "-m",
                l2,
                "--chat",
                "--system",
                "Be brief.",
                "-p",
                "Hi",
                "-n",
                "1",
            ][..],
            extra,
            &["--temp", "0", "--json"],
        ]
        .concat();
        serde_json::from_str(&ok(&camelid(&args), "run --chat")).unwrap()
    };
    // Meta's layout (meta-llama/llama `generation.py` `chat_completion`) as text, BOS as an
    // id: the tiny vocabulary's tokenization is checked against sentencepiece elsewhere.
    let by_default = run_chat(&[]);
    let l2_text = "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]";
    let want: Vec<u32> = serde_json::from_str(&ok(
        &camelid(&["tokenize", "-m", l2, "--json", l2_text]),
        "tokenize",
    ))
    .unwrap();
    assert_eq!(by_default["prompt_ids"], serde_json::json!(want));

    for (name, generation) in [
        ("llama1-mha-mp2-bf16", "LLaMA 1"),
        ("llama2-gqa8-mp2-bf16", "Llama 2"),
        ("llama32-tied-mp2-bf16", "Llama 3"),
    ] {
        let shown = ok(
            &camelid(&["inspect", meta.join(name).to_str().unwrap()]),
            "inspect",
        );
        assert!(
            shown.contains(&format!("format: Meta release of {generation} (")),
            "{shown}"
        );
    }

    let l1 = meta.join("llama1-mha-mp1-f32");
    let out = camelid(&["run", "-m", l1.to_str().unwrap(), "--chat", "-p", "Hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("has no chat template"), "{err}");
    let out = camelid(&["run", "-m", l1.to_str().unwrap(), "-p", "Hi", "-n", "2"]);
    ok(&out, "run on LLaMA 1");
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Issue 20 item 1: `camelid quantize` on a Meta folder. The f32 folders hold the very weights
/// of the tiny Hugging Face models (tools/make_meta_checkpoints.py checks it), so their Q8_0
/// GGUF is the one llama.cpp's `llama-quantize` made of them (testdata/tiny/*/q8_0.gguf): the
/// same tensor bytes, and logits within transformers' on those weights
/// (`ref-gguf-q8_0.bin`); the tokenizer goes along, so `run` works on the file.
#[test]
fn quantize_of_a_meta_folder_is_llama_cpps_q8_0() {
    let meta = repo().join("testdata/meta");
    let tiny = repo().join("testdata/tiny");
    let out_dir = scratch("quantize");
    for (folder, model) in [
        ("llama3-gqa-mp2-f32", "llama3-gqa"),
        ("llama1-mha-mp1-f32", "llama1-mha"),
    ] {
        let src = meta.join(folder);
        let dst = out_dir.join(format!("{folder}.q8_0.gguf"));
        ok(
            &camelid(&[
                "quantize",
                src.to_str().unwrap(),
                dst.to_str().unwrap(),
                "Q8_0",
            ]),
            "quantize",
        );
        let ours = Gguf::open(&dst).unwrap();
        let theirs = Gguf::open(&tiny.join(model).join("q8_0.gguf")).unwrap();
        for t in theirs.tensors() {
            let o = ours
                .tensor(&t.name)
                .unwrap_or_else(|| panic!("{folder}: no {}", t.name));
            assert_eq!(
                (o.ggml_type, &o.dims),
                (t.ggml_type, &t.dims),
                "{folder} {}",
                t.name
            );
            assert!(
                ours.tensor_data(o) == theirs.tensor_data(t),
                "{folder} {}: bytes differ from llama-quantize's",
                t.name
            );
        }

        // Logits of the GGUF against transformers on the same Q8_0 weights.
        let man: Value =
            serde_json::from_str(&std::fs::read_to_string(tiny.join("manifest.json")).unwrap())
                .unwrap();
        let m = man["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == model)
            .unwrap();
        let toks: Vec<String> = m["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        let want = read_f32(&tiny.join(m["ref"]["gguf-q8_0"].as_str().unwrap()));
        let out = ok(
            &camelid(&[
                "logits",
                "-m",
                dst.to_str().unwrap(),
                "--tokens",
                &toks.join(","),
                "--all",
                "--precision",
                "exact",
            ]),
            "logits",
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let got: Vec<f32> = v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(got.len(), want.len());
        let max_ref = want.iter().fold(1f32, |a, x| a.max(x.abs()));
        let max_diff = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            // A NaN counts as infinitely far (f32::max would pass over it).
            .fold(0f32, |a, d| {
                a.max(if d.is_nan() { f32::INFINITY } else { d })
            });
        assert!(
            max_diff <= 1e-4 * max_ref,
            "{folder}: max |diff| {max_diff} (max |ref| {max_ref})"
        );

        // The tokenizer went into the file: the GGUF tokenizes as the folder does, and runs.
        let text = "Hello world";
        let folder_ids = ok(
            &camelid(&["tokenize", "-m", src.to_str().unwrap(), "--json", text]),
            "tokenize folder",
        );
        let gguf_ids = ok(
            &camelid(&["tokenize", "-m", dst.to_str().unwrap(), "--json", text]),
            "tokenize gguf",
        );
        assert_eq!(folder_ids, gguf_ids);
        ok(
            &camelid(&[
                "run",
                "-m",
                dst.to_str().unwrap(),
                "-p",
                text,
                "-n",
                "2",
                "--temp",
                "0",
            ]),
            "run on the GGUF",
        );
    }
}

/// The Llama 3 folder with the real vocabulary converts too: Meta's tokenizer in the GGUF
/// (llama.cpp's `gpt2` model with the `llama-bpe` pre-tokenizer), the reference ids from the
/// file, the Llama 3 chat format recognised, and the logits within Q8_0's error of the folder's.
#[test]
fn quantize_of_a_llama3_folder_carries_metas_tokenizer() {
    let dir = llama3_folder();
    let dst = scratch("quantize-llama3").join("llama3.q8_0.gguf");
    ok(
        &camelid(&[
            "quantize",
            dir.to_str().unwrap(),
            dst.to_str().unwrap(),
            "Q8_0",
        ]),
        "quantize",
    );
    let g = Gguf::open(&dst).unwrap();
    let s = |k: &str| g.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(s("tokenizer.ggml.model").as_deref(), Some("gpt2"));
    assert_eq!(s("tokenizer.ggml.pre").as_deref(), Some("llama-bpe"));
    assert!(
        g.tensor("rope_freqs.weight").is_some(),
        "Llama 3.1 RoPE divisors"
    );
    let tok = camelid_model::tokenizer_load::tokenizer_from_gguf(&g).unwrap();
    vocab::check_vectors(&tok, "llama-bpe");
    assert_eq!(
        ChatTemplate::for_tokenizer(&tok),
        Some(ChatTemplate::Llama3)
    );

    let logits = |m: &Path| -> Vec<f64> {
        let out = ok(
            &camelid(&[
                "logits",
                "-m",
                m.to_str().unwrap(),
                "--tokens",
                "128000,9906,1917",
                "--precision",
                "exact",
            ]),
            "logits",
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        v["logits"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, b) = (logits(dir), logits(&dst));
    let max_ref = a.iter().fold(1f64, |m, x| m.max(x.abs()));
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        // A NaN counts as infinitely far (f64::max would pass over it).
        .fold(0f64, |m, d| {
            m.max(if d.is_nan() { f64::INFINITY } else { d })
        });
    // Q8_0 rounds each weight to 1/254 of its block's largest magnitude.
    assert!(
        max_diff <= 0.02 * max_ref,
        "max |diff| {max_diff}, max |logit| {max_ref}"
    );
}
