//! `camelid perplexity`, `score`, `models` and `compare` end to end, against llama.cpp, the
//! reference tokenizers and the published shapes (fixtures from tools/eval_reference.py in
//! testdata/eval/), and their errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use camelid_plot::read::{El, narrow_text_width, parse, texts_outside};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn assets() -> PathBuf {
    std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("assets"))
}

fn asset(rel: &str) -> String {
    let p = assets().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p.to_str().unwrap().to_string()
}

fn path(rel: &str) -> String {
    repo().join(rel).to_str().unwrap().to_string()
}

fn fixture(name: &str) -> Value {
    let p = repo().join("testdata/eval").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Runs camelid with its cache in the build folder and the test assets as its local source,
/// so that `compare`'s presets get their vocabularies without a download and nothing is written
/// to the user's cache.
fn camelid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(args)
        .env(
            "CAMELID_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-cache"),
        )
        .env("CAMELID_ASSETS", assets())
        .output()
        .unwrap()
}

/// Runs camelid, expects success, parses stdout as JSON.
fn camelid_json(args: &[&str]) -> Value {
    let out = camelid(args);
    assert!(
        out.status.success(),
        "camelid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "camelid {args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs camelid, expects failure, returns stderr.
fn camelid_err(args: &[&str]) -> String {
    let out = camelid(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "camelid {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn perplexity_of_smollm2_matches_llama_cpp() {
    let fx = fixture("smollm2_ppl.json");
    let chunks = fx["n_chunks"].as_u64().unwrap().to_string();
    let v = camelid_json(&[
        "perplexity",
        "-m",
        &asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "-f",
        &asset("corpus/hamlet_gut.txt"),
        "--ctx",
        "512",
        "--chunks",
        &chunks,
        "--json",
    ]);
    assert_eq!(v["n_chunks"].to_string(), chunks);
    assert_eq!(v["scored_tokens"], fx["n_chunks"].as_u64().unwrap() * 255);
    let ppl = f(&v["ppl"]);
    // Like for like: llama.cpp with an F32 KV cache and flash attention off, as camelid runs.
    let same = &fx["runs"]["f32_cache"];
    assert!(
        rel(ppl, f(&same["ppl"])) < 0.01,
        "camelid {ppl} vs llama.cpp {}",
        same["ppl"]
    );
    for (i, (c, w)) in v["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(same["running_ppl"].as_array().unwrap())
        .enumerate()
    {
        let g = f(&c["running_ppl"]);
        assert!(rel(g, f(w)) < 0.01, "chunk {}: {g} vs {w}", i + 1);
    }
    assert!(rel(f(&v["ppl_stderr"]), f(&same["ppl_stderr"])) < 0.02);
    // llama.cpp's defaults (F16 cache, flash attention on, which rounds queries and cache to
    // F16) sit ~1% higher on the first chunks and 0.3% higher after four: the final estimate
    // over four chunks is within 1% of them too.
    let default = f(&fx["runs"]["default"]["ppl"]);
    assert!(rel(ppl, default) < 0.01, "{ppl} vs {default}");
}

#[test]
fn kl_divergence_of_q4_0_matches_llama_cpp() {
    let fx = fixture("tiny_kld.json");
    for (name, m) in fx["models"].as_object().unwrap() {
        let base = tmp(&format!("{name}.logits"));
        let n_ctx = m["n_ctx"].to_string();
        let v = camelid_json(&[
            "perplexity",
            "-m",
            &path(m["base"].as_str().unwrap()),
            "-f",
            &asset("corpus/hamlet_gut.txt"),
            "--ctx",
            &n_ctx,
            "--chunks",
            &m["n_chunks"].to_string(),
            "--save-logits",
            base.to_str().unwrap(),
            "--json",
        ]);
        let base_ppl = f(&m["base_ppl"][0]);
        assert!(rel(f(&v["ppl"]), base_ppl) < 0.01, "{name}: base ppl");
        // Both precisions: 8-bit activations as llama.cpp, and f32 activations.
        for exact in [false, true] {
            let model = path(m["model"].as_str().unwrap());
            let mut args = vec![
                "perplexity",
                "-m",
                &model,
                "--kl-base",
                base.to_str().unwrap(),
                "--json",
            ];
            if exact {
                args.extend(["--precision", "exact"]);
            }
            let k = camelid_json(&args);
            let want = &m["kld"];
            let what = format!("{name} exact={exact}");
            assert_eq!(k["count"], m["n_chunks"].as_u64().unwrap() * 31);
            let kld = f(&k["kld_mean"][0]);
            assert!(
                rel(kld, f(&want["kld_mean"][0])) < 0.05,
                "{what}: mean KLD {kld} vs llama.cpp {}",
                want["kld_mean"][0]
            );
            let median = k["kld_percentiles"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| f(&p["q"]) == 0.5)
                .map(|p| f(&p["kld"]))
                .unwrap();
            assert!(rel(median, f(&want["kld_median"])) < 0.05, "{what}: median");
            assert!(rel(f(&k["ppl"][0]), f(&want["ppl_q"][0])) < 0.01, "{what}");
            assert!(rel(f(&k["ppl_base"][0]), f(&want["ppl_base"][0])) < 0.01);
            assert!(rel(f(&k["ppl_ratio"][0]), f(&want["ppl_ratio"][0])) < 0.01);
            // Top-1 agreement in percent; each of the 496 tokens is 0.2 points.
            let top = 100.0 * f(&k["same_top"][0]);
            assert!(
                (top - f(&want["same_top_percent"][0])).abs() < 2.5,
                "{what}: same top {top} vs {}",
                want["same_top_percent"][0]
            );
        }
    }
}

#[test]
fn models_gives_published_parameter_counts() {
    let v = camelid_json(&["models", "--json"]);
    let models = v["models"].as_array().unwrap();
    // LLAMA.md, "Published shapes": the counts the shapes imply.
    let want = [
        ("llama-7b", "6.74B"),
        ("llama-13b", "13.0B"),
        ("llama-33b", "32.5B"),
        ("llama-65b", "65.3B"),
        ("llama2-7b", "6.74B"),
        ("llama2-13b", "13.0B"),
        ("llama2-70b", "69.0B"),
        ("llama3-8b", "8.03B"),
        ("llama3-70b", "70.6B"),
        ("llama3.1-8b", "8.03B"),
        ("llama3.1-70b", "70.6B"),
        ("llama3.1-405b", "406B"),
        ("llama3.2-1b", "1.24B"),
        ("llama3.2-3b", "3.21B"),
    ];
    assert_eq!(models.len(), want.len());
    for (id, p) in want {
        let m = models.iter().find(|m| m["id"] == id).unwrap();
        assert_eq!(m["params_3sig"], p, "{id}");
    }
    let by = |id: &str| models.iter().find(|m| m["id"] == id).unwrap().clone();
    // KV bytes per token at F16 = 2 · layers · kv_heads · head_dim · 2.
    assert_eq!(
        by("llama2-7b")["kv_bytes_per_token_f16"],
        2 * 32 * 32 * 128 * 2
    );
    assert_eq!(
        by("llama2-70b")["kv_bytes_per_token_f16"],
        2 * 80 * 8 * 128 * 2
    );
    assert_eq!(
        by("llama3-8b")["kv_bytes_per_token_f16"],
        2 * 32 * 8 * 128 * 2
    );
    assert_eq!(by("llama2-70b")["attention"], "GQA 8:1");
    assert_eq!(by("llama-65b")["attention"], "MHA");
    assert_eq!(by("llama3.1-405b")["n_ctx"], 131072);
    assert_eq!(by("llama3-8b")["n_vocab"], 128256);
    assert_eq!(by("llama-7b")["training_tokens"], "1.0T");
    // Llama 3.1 8B at Q4_K_M: llama.cpp's tools/quantize/README.md table says 4.58 GiB.
    let q4 = f(&by("llama3.1-8b")["weights_bytes"]["q4_k_m_estimate"]) / (1u64 << 30) as f64;
    assert!((q4 - 4.58).abs() < 0.01, "{q4}");

    let out = camelid(&["models"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for col in ["GQA 8:1", "6.74B", "406B", "128k", "Q4_K_M~", "trained on"] {
        assert!(text.contains(col), "{col} missing from:\n{text}");
    }
}

#[test]
fn compare_counts_tokens_as_the_reference_tokenizers() {
    let fx = fixture("token_counts.json");
    let smol = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let texts: Vec<String> = ["ja.txt", "en.txt", "code.txt"]
        .iter()
        .map(|t| path(&format!("testdata/eval/{t}")))
        .collect();
    let mut args = vec!["compare", "llama2-7b", "llama3-8b", &smol];
    for t in &texts {
        args.extend(["--text", t.as_str()]);
    }
    // A context of 2048 keeps SmolLM2's perplexity out: no text holds two chunks.
    args.extend(["--ctx", "2048", "--json"]);
    let v = camelid_json(&args);
    for (t, row) in texts.iter().zip(v["texts"].as_array().unwrap()) {
        let name = Path::new(t).file_name().unwrap().to_str().unwrap();
        let want = &fx["texts"][name];
        assert_eq!(row["chars"], want["chars"], "{name}");
        assert_eq!(row["tokens"]["llama2-7b"], want["llama-spm"], "{name}");
        assert_eq!(row["tokens"]["llama3-8b"], want["llama-bpe"], "{name}");
        assert_eq!(row["tokens"][smol.as_str()], want["smollm2"], "{name}");
        let per_1k = 1000.0 * f(&want["llama-spm"]) / f(&want["chars"]);
        assert!((f(&row["tokens_per_1k_chars"]["llama2-7b"]) - per_1k).abs() < 1e-9);
    }
    // The texts are too short for two chunks: no perplexity, a note instead.
    assert_eq!(v["perplexity"].as_array().unwrap().len(), 0);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("needs at least 4096")
    );
}

/// Issue 19, item 10: a chart a person can read. With a 128K-context model beside 4K ones the
/// KV panel is on log axes (the old linear one squeezed the short contexts into a corner); the
/// model legend fits the picture (it was clipped at the right edge); tokens per 1,000
/// characters, the figure that says how well each vocabulary handles a text, has its own panel
/// with a bar per model and text, "n/a" for a model without a tokenizer; every axis says its
/// unit. Read from the SVG's structure, as a viewer would lay it out.
#[test]
fn compare_chart_has_its_panels_units_legends_and_token_bars() {
    // A model folder without a tokenizer: its bars must say n/a, not vanish.
    let notok = tmp("no-tokenizer");
    std::fs::create_dir_all(&notok).unwrap();
    for f in ["config.json", "model.safetensors"] {
        let from = repo().join("testdata/tiny/llama1-mha/hf-f32").join(f);
        std::fs::copy(from, notok.join(f)).unwrap();
    }
    let svg_path = tmp("compare.svg");
    let tiny = path("testdata/tiny/llama3-gqa/f32.gguf");
    let (en, ja) = (path("testdata/eval/en.txt"), path("testdata/eval/ja.txt"));
    let models = [
        "llama2-7b",
        "llama3-8b",
        "llama3.1-8b",
        tiny.as_str(),
        notok.to_str().unwrap(),
    ];
    let mut args = vec!["compare"];
    args.extend(models);
    args.extend(["--text", &en, "--text", &ja, "--ctx", "64", "--chunks", "5"]);
    args.extend(["--plot", svg_path.to_str().unwrap(), "--json"]);
    let v = camelid_json(&args);
    let runs = v["perplexity"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the tiny model on both texts");
    assert_eq!(runs[0]["chunk_ppl"].as_array().unwrap().len(), 5);

    let s = std::fs::read_to_string(&svg_path).unwrap();
    let svg = parse(&s).unwrap();
    let (w, h) = svg
        .picture_size()
        .expect("an svg with width and height of its viewBox");

    // Every panel, in order, with its title and axis titles with units.
    let panels = svg.all(&|e| e.has_class("panel"));
    let ids: Vec<&str> = panels.iter().map(|p| p.attr("id").unwrap()).collect();
    assert_eq!(ids, ["kv-cache", "tokens-per-char", "perplexity"]);
    let axis_titles = |p: &El| -> Vec<String> {
        p.all(&|e| e.has_class("axis-title"))
            .iter()
            .map(|e| e.text.clone())
            .collect()
    };
    assert_eq!(
        axis_titles(panels[0]),
        [
            "KV cache (bytes, log scale)",
            "context length (tokens, log scale)"
        ]
    );
    assert_eq!(
        axis_titles(panels[1]),
        ["tokens per 1,000 characters of the text (BOS not counted)"]
    );
    let ppl_axes = axis_titles(panels[2]);
    assert!(ppl_axes[0].starts_with("perplexity per chunk (exp of mean loss in nats/token"));
    assert_eq!(ppl_axes[1], "chunk (number; 64 tokens each)");
    for p in &panels {
        assert_eq!(p.all(&|e| e.has_class("panel-title")).len(), 1);
    }

    // The KV panel: a line per model, each ending at its trained context with the cache there
    // (LLaMA 2 7B: 512 KiB/token x 4k; Llama 3.1 8B: 128 KiB/token x 128k).
    assert_eq!(panels[0].all(&|e| e.name == "polyline").len(), models.len());
    let ends: Vec<String> = panels[0]
        .all(&|e| e.has_class("end-label"))
        .iter()
        .map(|e| e.text.clone())
        .collect();
    for want in ["2.00 GiB", "16.0 GiB"] {
        assert!(ends.iter().any(|e| e == want), "{want} not in {ends:?}");
    }
    // Log-scaled: the ticks run 2x or 4x apart, up to 128k.
    let ticks: Vec<String> = panels[0]
        .all(&|e| e.has_class("tick"))
        .iter()
        .map(|e| e.text.clone())
        .collect();
    for want in ["1k", "2k", "4k", "8k", "128k"] {
        assert!(ticks.iter().any(|t| t == want), "{want} not in {ticks:?}");
    }

    // One legend entry per model, in order; one per perplexity run.
    let legends = svg.all(&|e| e.has_class("legend"));
    assert_eq!(legends.len(), 2);
    let keys = |l: &El| -> Vec<String> {
        l.all(&|e| e.has_class("legend-entry"))
            .iter()
            .map(|e| e.attr("data-key").unwrap().to_string())
            .collect()
    };
    assert_eq!(keys(legends[0]), models);
    assert_eq!(
        keys(legends[1]),
        ["f32.gguf on en.txt", "f32.gguf on ja.txt"]
    );
    // Legends inside the picture: the box, and every label inside its box.
    for l in &legends {
        let b = l.all(&|e| e.has_class("legend-box"))[0];
        let (bx, by) = (b.num("x").unwrap(), b.num("y").unwrap());
        let (br, bb) = (bx + b.num("width").unwrap(), by + b.num("height").unwrap());
        assert!(
            bx >= 0.0 && by >= 0.0 && br <= w && bb <= h,
            "legend box {bx} {by} {br} {bb}"
        );
        for t in l.all(&|e| e.has_class("legend-label")) {
            let right =
                t.num("x").unwrap() + narrow_text_width(&t.text, t.num("font-size").unwrap());
            assert!(
                right <= br,
                "legend label {:?} ends at {right}, box at {br}",
                t.text
            );
            assert!(t.num("y").unwrap() <= bb, "{:?} below its box", t.text);
        }
    }

    // Tokens per 1,000 characters: a bar per model and text, as in the JSON; n/a, shown, for
    // the folder without a tokenizer.
    let bars = panels[1].all(&|e| e.has_class("bar"));
    assert_eq!(bars.len(), models.len() * 2);
    for (text_i, text) in ["en.txt", "ja.txt"].iter().enumerate() {
        for m in models {
            let bar = bars
                .iter()
                .find(|b| {
                    b.attr("data-model").unwrap() == m && b.attr("data-text").unwrap() == *text
                })
                .unwrap_or_else(|| panic!("no bar for {m} on {text}"));
            let want = &v["texts"][text_i]["tokens_per_1k_chars"][m];
            if m == notok.to_str().unwrap() {
                assert!(want.is_null());
                assert_eq!(bar.attr("data-value").unwrap(), "n/a");
                assert!(bar.all_text().contains("n/a"), "{}", bar.all_text());
                assert!(bar.all(&|e| e.name == "rect").is_empty());
            } else {
                let got: f64 = bar.attr("data-value").unwrap().parse().unwrap();
                assert!(
                    (got - f(want)).abs() < 0.051,
                    "{m} on {text}: {got} vs {want}"
                );
                let rect = bar.all(&|e| e.name == "rect");
                assert!(rect.len() == 1 && rect[0].num("width").unwrap() > 0.0);
                let shown = format!("{:.0}", f(want));
                assert!(bar.all_text().contains(&shown), "{m} on {text}: {shown}");
            }
        }
    }

    // Nothing drawn outside the picture: every text, by its anchor and estimated width.
    let outside = texts_outside(&svg);
    assert!(outside.is_empty(), "drawn outside the picture: {outside:?}");
}

#[test]
fn score_of_smollm2_matches_llama_cpp() {
    let fx = fixture("tasks_ref.json");
    let v = camelid_json(&[
        "score",
        "-m",
        &asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "-f",
        &path("testdata/eval/tasks.jsonl"),
        "--json",
    ]);
    // Like for like: llama.cpp with an F32 KV cache. On SmolLM2 single tokens move by up to a
    // nat between equally valid computations: llama.cpp's own default and F32-cache settings
    // differ by up to 0.18 in an ending's mean log-probability (camelid's two precisions by
    // 0.13), so each ending gets that slack, and the average difference must be small and
    // unbiased.
    let want = &fx["smollm2_f32_cache"];
    let mut diffs = Vec::new();
    for (i, (t, w)) in v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(want["tasks"].as_array().unwrap())
        .enumerate()
    {
        let mut means = Vec::new();
        for (e, we) in t["endings"]
            .as_array()
            .unwrap()
            .iter()
            .zip(w["endings"].as_array().unwrap())
        {
            assert_eq!(e["n_tokens"], we["n_tokens"], "task {}", i + 1);
            let wm = f(&we["logprob"]) / f(&we["n_tokens"]);
            let d = f(&e["mean"]) - wm;
            assert!(
                d.abs() < 0.2,
                "task {}: {} vs llama.cpp {wm}",
                i + 1,
                e["mean"]
            );
            diffs.push(d);
            means.push(wm);
        }
        // The choice must agree unless llama.cpp's best two are closer than that slack.
        let mut sorted = means.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > 0.2 {
            assert_eq!(t["choice"], w["choice"], "task {}", i + 1);
        }
    }
    let n = diffs.len() as f64;
    let mean_abs = diffs.iter().map(|d| d.abs()).sum::<f64>() / n;
    let bias = diffs.iter().sum::<f64>() / n;
    assert!(mean_abs < 0.05 && bias.abs() < 0.02, "{mean_abs} {bias}");
    assert_eq!(v["n_tasks"], 12);
    assert!((f(&v["accuracy"]) - f(&want["accuracy"])).abs() < 0.1);
}

#[test]
fn bad_input_is_a_clear_error() {
    let tiny = path("testdata/tiny/llama1-mha/f16.gguf");
    let en = path("testdata/eval/en.txt");

    let empty = tmp("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let err = camelid_err(&["perplexity", "-m", &tiny, "-f", empty.to_str().unwrap()]);
    assert!(err.contains("empty"), "{err}");

    let err = camelid_err(&["perplexity", "-m", &tiny, "-f", &en, "--ctx", "512"]);
    assert!(
        err.contains("needs at least 1024") && err.contains("en.txt"),
        "{err}"
    );

    let tasks = tmp("bad.jsonl");
    std::fs::write(
        &tasks,
        "{\"context\": \"A\", \"endings\": [\"b\", \"c\"], \"label\": 0}\n\
         {\"context\": \"A\", \"endings\": [\"b\", \"c\"], \"label\": 7}\n",
    )
    .unwrap();
    let err = camelid_err(&["score", "-m", &tiny, "-f", tasks.to_str().unwrap()]);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("label 7"),
        "{err}"
    );
    std::fs::write(
        &tasks,
        "{\"context\": \"A\", \"endings\": [\"b\", \"c\"], \"label\": \"x\"}\n",
    )
    .unwrap();
    let err = camelid_err(&["score", "-m", &tiny, "-f", tasks.to_str().unwrap()]);
    assert!(
        err.contains("bad.jsonl:1") && err.contains("\"label\""),
        "{err}"
    );
    std::fs::write(&tasks, "not json\n").unwrap();
    let err = camelid_err(&["score", "-m", &tiny, "-f", tasks.to_str().unwrap()]);
    assert!(err.contains("not valid JSON"), "{err}");

    // Logits files: garbage, missing, truncated, from another vocabulary or context.
    let junk = tmp("junk.logits");
    std::fs::write(&junk, b"hello, this is not a logits file at all").unwrap();
    let err = camelid_err(&[
        "perplexity",
        "-m",
        &tiny,
        "--kl-base",
        junk.to_str().unwrap(),
    ]);
    assert!(
        err.contains("not a camelid logits file") && err.contains("magic"),
        "{err}"
    );
    let missing = tmp("missing.logits");
    let err = camelid_err(&[
        "perplexity",
        "-m",
        &tiny,
        "--kl-base",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("missing.logits"), "{err}");

    let good = tmp("good.logits");
    let v = camelid_json(&[
        "perplexity",
        "-m",
        &tiny,
        "-f",
        &en,
        "--ctx",
        "64",
        "--chunks",
        "2",
        "--save-logits",
        good.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["n_chunks"], 2);
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp("cut.logits");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = camelid_err(&[
        "perplexity",
        "-m",
        &tiny,
        "--kl-base",
        cut.to_str().unwrap(),
    ]);
    assert!(err.contains("truncated"), "{err}");
    let err = camelid_err(&[
        "perplexity",
        "-m",
        &tiny,
        "--kl-base",
        good.to_str().unwrap(),
        "--ctx",
        "32",
    ]);
    assert!(err.contains("--ctx 32 differs"), "{err}");
    // The same layout with a vocabulary of 500: header fields at bytes 8 (n_vocab).
    let mut other = bytes[..20 + 2 * 64 * 4].to_vec();
    other[8..12].copy_from_slice(&500u32.to_le_bytes());
    other.resize(other.len() + 2 * 31 * 500 * 2, 0);
    let wrong = tmp("vocab.logits");
    std::fs::write(&wrong, &other).unwrap();
    let err = camelid_err(&[
        "perplexity",
        "-m",
        &tiny,
        "--kl-base",
        wrong.to_str().unwrap(),
    ]);
    assert!(
        err.contains("vocabulary size is 500 in the file but 384 here"),
        "{err}"
    );
    // A text that is not the one the base run evaluated.
    let ja = path("testdata/eval/ja.txt");
    let err = camelid_err(&[
        "perplexity",
        "-m",
        &tiny,
        "--kl-base",
        good.to_str().unwrap(),
        "-f",
        &ja,
    ]);
    assert!(err.contains("tokenizes differently"), "{err}");

    let err = camelid_err(&["compare", "llama-8b"]);
    assert!(
        err.contains("neither a preset") && err.contains("llama3-8b"),
        "{err}"
    );
    let err = camelid_err(&["perplexity", "-m", &tiny, "-f", &en, "--chunks", "0"]);
    assert!(err.contains("--chunks"), "{err}");
}
