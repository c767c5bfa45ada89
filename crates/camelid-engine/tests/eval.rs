//! Evaluation math against references (fixtures from tools/eval_reference.py in
//! testdata/eval/): chunked perplexity against transformers on a tiny model, KL divergence
//! against numpy on transformers logits, multiple-choice log-likelihoods against transformers,
//! the logits file format and its errors.

use std::path::{Path, PathBuf};

use camelid_engine::eval::{
    Chunks, EvalError, KlStats, LogitsHeader, Task, kl_row, log_softmax_into, log_sum_exp,
    percentile, perplexity, read_logp_row, score_task, task_tokens, wilson_interval,
    write_logp_row,
};
use camelid_model::Model;
use camelid_model::tokenizer_load::load_tokenizer;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Value {
    let path = repo().join("testdata/eval").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tools/eval_reference.py)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

fn f32_file(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn rel_close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1e-12)
}

/// The tiny-model perplexity fixture, its model and its tokens.
fn tiny_ppl() -> (Value, Model, Vec<u32>) {
    let f = fixture("tiny_ppl.json");
    let model = Model::load(&repo().join(f["model"].as_str().unwrap())).unwrap();
    let tokens = u32s(&f["tokens"]);
    (f, model, tokens)
}

#[test]
fn chunks_follow_llama_perplexity() {
    // llama-perplexity: at least 2·n_ctx tokens, ⌊n/n_ctx⌋ chunks, n_ctx − 1 − n_ctx/2 scored.
    assert!(matches!(
        Chunks::new(1023, 512, None),
        Err(EvalError::TooFewTokens {
            n_tokens: 1023,
            n_ctx: 512
        })
    ));
    let c = Chunks::new(52755, 512, None).unwrap();
    assert_eq!(
        (c.n_chunks, c.first(), c.scored_per_chunk()),
        (103, 256, 255)
    );
    assert_eq!(Chunks::new(52755, 512, Some(4)).unwrap().n_chunks, 4);
    assert_eq!(Chunks::new(52755, 512, Some(400)).unwrap().n_chunks, 103);
    assert_eq!(Chunks::new(1000, 65, None).unwrap().scored_per_chunk(), 32);
    assert!(matches!(
        Chunks::new(100, 3, None),
        Err(EvalError::ContextTooSmall { n_ctx: 3 })
    ));
    let msg = Chunks::new(10, 512, None).unwrap_err().to_string();
    assert!(msg.contains("10 tokens") && msg.contains("1024"), "{msg}");
}

#[test]
fn perplexity_matches_transformers_on_tiny_chunks() {
    let (f, model, tokens) = tiny_ppl();
    let n_ctx = f["n_ctx"].as_u64().unwrap() as usize;
    let chunks = Chunks::new(tokens.len(), n_ctx, None).unwrap();
    assert_eq!(chunks.n_chunks as u64, f["n_chunks"].as_u64().unwrap());
    let want_chunks: Vec<f64> = f["chunk_ppl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let bos = f["bos"].as_u64().map(|b| b as u32);
    let mut got_chunks = Vec::new();
    let total = perplexity(&model, &tokens, chunks, bos, |_, m, _| {
        got_chunks.push(m.ppl())
    })
    .unwrap();
    // f32 weights on both sides: only the order of additions differs.
    for (i, (g, w)) in got_chunks.iter().zip(&want_chunks).enumerate() {
        assert!(rel_close(*g, *w, 1e-4), "chunk {}: {g} vs {w}", i + 1);
    }
    let (ppl, se) = (
        f["ppl"].as_f64().unwrap(),
        f["ppl_stderr"].as_f64().unwrap(),
    );
    assert!(
        rel_close(total.ppl(), ppl, 1e-4),
        "{} vs {ppl}",
        total.ppl()
    );
    assert!(rel_close(total.ppl_stderr(), se, 1e-3));
    assert_eq!(
        total.count,
        (chunks.n_chunks * chunks.scored_per_chunk()) as u64
    );
}

/// Without BOS replacement every chunk is scored on its own first token: the result must move.
#[test]
fn bos_replacement_matters() {
    let (f, model, tokens) = tiny_ppl();
    let chunks = Chunks::new(tokens.len(), 64, Some(4)).unwrap();
    let with = perplexity(&model, &tokens, chunks, Some(1), |_, _, _| {}).unwrap();
    let without = perplexity(&model, &tokens, chunks, None, |_, _, _| {}).unwrap();
    let want = f["chunk_ppl"].as_array().unwrap()[..4]
        .iter()
        .map(|v| v.as_f64().unwrap().ln())
        .sum::<f64>()
        / 4.0;
    assert!(rel_close(with.mean(), want, 1e-4));
    assert!((without.mean() - with.mean()).abs() > 1e-3);
}

fn kl_inputs() -> (Value, Vec<f32>, Vec<f32>, Vec<u32>, usize) {
    let f = fixture("kl_math.json");
    let man: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/tiny/manifest.json")).unwrap(),
    )
    .unwrap();
    let m = man["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == f["model"])
        .unwrap();
    let tiny = repo().join("testdata/tiny");
    let p = f32_file(&tiny.join(f["base"].as_str().unwrap()));
    let q = f32_file(&tiny.join(f["q"].as_str().unwrap()));
    let n_vocab = m["n_vocab"].as_u64().unwrap() as usize;
    (f, p, q, u32s(&m["tokens"]), n_vocab)
}

#[test]
fn kl_divergence_matches_numpy() {
    let (f, p, q, tokens, v) = kl_inputs();
    let n = f["positions"].as_u64().unwrap() as usize;
    let want: Vec<f64> = f["kld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut stats = KlStats::default();
    let mut base = vec![0.0f32; v];
    for i in 0..n {
        let (pr, qr) = (&p[i * v..][..v], &q[i * v..][..v]);
        log_softmax_into(pr, &mut base);
        let r = kl_row(&base, qr, log_sum_exp(qr), tokens[i + 1]);
        assert!(
            (r.kld - want[i]).abs() < 1e-5 + 1e-4 * want[i],
            "position {i}: {} vs {}",
            r.kld,
            want[i]
        );
        stats.push(&r);
    }
    let s = stats.summary();
    let num = |k: &str| f[k].as_f64().unwrap();
    assert!(rel_close(s.kld_mean.0, num("kld_mean"), 1e-5));
    let pct = |q: f64| {
        s.kld_percentiles
            .iter()
            .find(|(x, _)| *x == q)
            .map(|p| p.1)
            .unwrap()
    };
    assert!(rel_close(pct(0.5), num("kld_median"), 1e-5));
    assert!(rel_close(pct(0.99), num("kld_99"), 1e-5));
    assert!(rel_close(pct(1.0), num("kld_max"), 1e-5));
    assert!(rel_close(s.same_top.0, num("same_top"), 1e-12));
    assert!(rel_close(s.ppl.0, num("ppl_q"), 1e-5));
    assert!(rel_close(s.ppl_base.0, num("ppl_base"), 1e-5));
    assert!(rel_close(s.ppl_ratio.0, num("ppl_ratio"), 1e-5));
}

#[test]
fn kl_of_a_distribution_with_itself_is_zero() {
    let (_, p, _, tokens, v) = kl_inputs();
    let mut base = vec![0.0f32; v];
    log_softmax_into(&p[..v], &mut base);
    let r = kl_row(&base, &p[..v], log_sum_exp(&p[..v]), tokens[1]);
    assert!(r.kld.abs() < 1e-6 && r.same_top && r.p_diff.abs() < 1e-6);
}

#[test]
fn percentile_interpolates_between_ranks() {
    // numpy.percentile([1, 2, 3, 4], q) with linear interpolation.
    let xs = [1.0f32, 2.0, 3.0, 4.0];
    assert_eq!(percentile(&xs, 0.5), 2.5);
    assert_eq!(percentile(&xs, 0.0), 1.0);
    assert_eq!(percentile(&xs, 1.0), 4.0);
    assert!((percentile(&xs, 0.9) - 3.7).abs() < 1e-12);
}

#[test]
fn logits_file_round_trip() {
    let (f, p, q, tokens, v) = kl_inputs();
    let n = f["positions"].as_u64().unwrap() as usize;
    // A file of one chunk of 8 tokens: 3 scored rows (positions 4, 5, 6).
    let chunks = Chunks::new(16, 8, Some(1)).unwrap();
    let header = LogitsHeader::new(v, chunks, &tokens[..16]);
    let mut file = Vec::new();
    header.write(&mut file).unwrap();
    let mut logp = vec![0.0f32; v];
    let mut buf = Vec::new();
    for i in 0..chunks.scored_per_chunk() {
        log_softmax_into(&p[i * v..][..v], &mut logp);
        write_logp_row(&mut file, &logp, &mut buf).unwrap();
    }
    assert_eq!(file.len() as u64, header.file_len().unwrap());
    assert_eq!(file.len(), 20 + 8 * 4 + 3 * v * 2);

    let mut r = &file[..];
    let back = LogitsHeader::read(&mut r, file.len() as u64).unwrap();
    assert_eq!(back, header);
    let mut row = vec![0.0f32; v];
    for i in 0..chunks.scored_per_chunk() {
        read_logp_row(&mut r, &mut row, &mut buf).unwrap();
        log_softmax_into(&p[i * v..][..v], &mut logp);
        for (a, b) in row.iter().zip(&logp) {
            // f16 keeps 11 significant bits: half an ulp is 2^-11 relative.
            assert!(
                (a - b).abs() <= b.abs() * 2f32.powi(-11) + 1e-7,
                "{a} vs {b}"
            );
        }
        // The KL divergence through the rounded file stays within 0.2% of the exact one.
        let qr = &q[i * v..][..v];
        let exact = kl_row(&logp, qr, log_sum_exp(qr), tokens[i + 1]).kld;
        let rounded = kl_row(&row, qr, log_sum_exp(qr), tokens[i + 1]).kld;
        assert!(rel_close(rounded, exact, 2e-3), "{rounded} vs {exact}");
    }
    assert!(r.is_empty());
    assert!(n > 3);
}

#[test]
fn bad_logits_files_are_clear_errors() {
    let tokens: Vec<u32> = (0..16).collect();
    let header = LogitsHeader::new(384, Chunks::new(16, 8, Some(1)).unwrap(), &tokens);
    let mut good = Vec::new();
    header.write(&mut good).unwrap();
    good.resize(header.file_len().unwrap() as usize, 0);
    let read = |bytes: &[u8]| {
        let mut r = bytes;
        LogitsHeader::read(&mut r, bytes.len() as u64)
            .unwrap_err()
            .to_string()
    };
    let mut bad = good.clone();
    bad[..8].copy_from_slice(b"_logits_");
    assert!(read(&bad).contains("magic"), "{}", read(&bad));
    let short = &good[..good.len() - 1];
    let msg = read(short);
    assert!(msg.contains("truncated") && msg.contains("bytes"), "{msg}");
    assert!(
        read(&good[..10]).contains("at byte 0"),
        "{}",
        read(&good[..10])
    );
    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&2u32.to_le_bytes());
    assert!(read(&bad).contains("n_ctx 2"), "{}", read(&bad));
    let mut bad = good.clone();
    bad[20..24].copy_from_slice(&999u32.to_le_bytes());
    let msg = read(&bad);
    assert!(
        msg.contains("token 999") && msg.contains("at byte 20"),
        "{msg}"
    );
    let mut bad = good.clone();
    bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(read(&bad).contains("declares"), "{}", read(&bad));
}

fn tasks() -> Vec<Task> {
    let text = std::fs::read_to_string(repo().join("testdata/eval/tasks.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Task {
                context: v["context"].as_str().unwrap().to_string(),
                endings: v["endings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap().to_string())
                    .collect(),
                label: v["label"].as_u64().unwrap() as usize,
            }
        })
        .collect()
}

#[test]
fn multiple_choice_matches_transformers_on_tiny() {
    let f = fixture("tasks_ref.json");
    let tiny = repo().join("testdata/tiny/llama1-mha");
    let model = Model::load(&tiny.join("hf-f32")).unwrap();
    // The GGUF's vocabulary is the one llama-tokenize used for the reference ids.
    let tok = load_tokenizer(&tiny.join("f32.gguf")).unwrap();
    let mut state = model.new_state(256).unwrap();
    for (i, (task, want)) in tasks()
        .iter()
        .zip(f["tiny"]["tasks"].as_array().unwrap())
        .enumerate()
    {
        let (seqs, prefix) = task_tokens(&tok, task);
        assert_eq!(prefix as u64, want["prefix"].as_u64().unwrap(), "task {i}");
        let got = score_task(&model, &mut state, &tok, task, i + 1).unwrap();
        for (s, (e, w)) in got
            .endings
            .iter()
            .zip(want["endings"].as_array().unwrap())
            .enumerate()
        {
            assert_eq!(seqs[s], u32s(&w["tokens"]), "task {i} ending {s}");
            assert_eq!(e.n_tokens as u64, w["n_tokens"].as_u64().unwrap());
            let lp = w["logprob"].as_f64().unwrap();
            assert!(
                (e.logprob - lp).abs() < 1e-3,
                "task {i} ending {s}: {} vs {lp}",
                e.logprob
            );
        }
        assert_eq!(got.choice as u64, want["choice"].as_u64().unwrap());
        assert_eq!(got.correct, want["correct"].as_bool().unwrap());
    }
}

#[test]
fn bad_tasks_are_clear_errors() {
    let tiny = repo().join("testdata/tiny/llama1-mha");
    let model = Model::load(&tiny.join("f32.gguf")).unwrap();
    let tok = load_tokenizer(&tiny.join("f32.gguf")).unwrap();
    let mut state = model.new_state(64).unwrap();
    let task = |endings: &[&str], label| Task {
        context: "The king".into(),
        endings: endings.iter().map(|s| s.to_string()).collect(),
        label,
    };
    let mut err = |t: Task| {
        score_task(&model, &mut state, &tok, &t, 7)
            .unwrap_err()
            .to_string()
    };
    assert!(err(task(&["a", "b"], 2)).contains("task 7: label 2"));
    assert!(err(task(&["a"], 0)).contains("at least 2"));
    let long = "word ".repeat(200);
    assert!(err(task(&["a", &long], 0)).contains("do not fit"));
}

#[test]
fn wilson_interval_textbook_values() {
    // 5 of 10 at 95%: 0.2366 to 0.7634; 0 of 10: 0 to 0.2775 (Wilson 1927; e.g. Newcombe 1998).
    let (lo, hi) = wilson_interval(5, 10);
    assert!((lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4);
    let (lo, hi) = wilson_interval(0, 10);
    assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4);
}

// ---------------------------------------------------------------------------------------------
// compare: figures, tables, token counts, perplexity runs and the chart, in-process

mod compare {
    use std::cell::Cell;
    use std::path::Path;

    use camelid_engine::compare::{Entry, PplOptions, compare, models_table, property_rows, table};
    use camelid_engine::eval::EvalError;
    use camelid_model::Model;
    use camelid_model::config::presets;
    use camelid_model::tokenizer_load::load_tokenizer;
    use camelid_plot::read::{parse, texts_outside};

    use super::repo;

    fn entries(ids: &[&str]) -> Vec<Entry> {
        ids.iter()
            .map(|id| Entry::preset(presets().iter().find(|p| p.id == *id).unwrap()))
            .collect()
    }

    #[test]
    fn tables_align_and_say_the_published_figures() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rows = vec![h(&["x", "1"]), h(&["long", "22"])];
        // First column padded to 4 on the right, the second to 2 on the left, 2 spaces apart.
        assert_eq!(
            table(&h(&["", "a"]), &rows),
            "       a\nx      1\nlong  22\n"
        );

        let e = entries(&["llama2-7b", "llama3-8b", "llama3.1-405b"]);
        let (header, rows) = models_table(&e);
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        // LLAMA.md's published counts; KV per token 2·layers·kv_heads·head_dim·2 bytes.
        assert_eq!(rows[0][col("params")], "6.74B");
        assert_eq!(rows[0][col("KV/token")], "512 KiB");
        assert_eq!(rows[0][col("attention")], "MHA");
        assert_eq!(rows[1][col("attention")], "GQA 4:1");
        assert_eq!(rows[1][col("ctx")], "8k");
        assert_eq!(rows[2][col("params")], "406B");
        assert_eq!(rows[2][col("ctx")], "128k");
        // Compare's table: a row per property, a column per model.
        let props = property_rows(&e);
        let row = |name: &str| props.iter().find(|r| r[0] == name).unwrap();
        assert_eq!(row("KV at full ctx")[1], "2.00 GiB"); // 512 KiB x 4096
        assert_eq!(row("KV at full ctx")[2], "1.00 GiB"); // 128 KiB x 8192
        assert_eq!(row("layers x d_model")[1], "32 x 4096");
        assert!(props.iter().all(|r| r.len() == 4));
    }

    /// A preset without a tokenizer fails its own cells, not the comparison; a text too short
    /// for two chunks gets a note; a model file is loaded only when some text holds two chunks,
    /// and its perplexity over equal chunks is the geometric mean of the chunks'.
    #[test]
    fn compare_counts_tokens_and_runs_perplexity_where_it_can() {
        let tiny = repo().join("testdata/tiny/llama3-gqa/f32.gguf");
        let tok = load_tokenizer(&tiny).unwrap();
        let mut e = entries(&["llama2-7b"]);
        let mut file = e[0].clone();
        file.label = "tiny".into();
        file.file = Some(tiny.clone());
        e.push(file);
        let long = std::fs::read_to_string(repo().join("testdata/eval/en.txt")).unwrap();
        let texts = vec![
            ("en".to_string(), long.clone()),
            ("short".to_string(), "héllo".to_string()),
        ];
        let tokenizers: Vec<Result<&_, String>> = vec![Err("no vocabulary".into()), Ok(&tok)];
        let loads = Cell::new(0);
        let mut load = |p: &Path| -> Result<Model, EvalError> {
            loads.set(loads.get() + 1);
            Ok(Model::load(p)?)
        };
        let mut started = Vec::new();
        let ppl = PplOptions {
            n_ctx: 32,
            max_chunks: Some(3),
            load: &mut load,
            started: &mut |s: &str| started.push(s.to_string()),
        };
        let c = compare(e, &texts, &tokenizers, ppl).unwrap();
        assert_eq!(loads.get(), 1);
        assert_eq!(started.len(), 1);
        assert_eq!(c.tokenizer_errors[0].as_deref(), Some("no vocabulary"));
        assert_eq!(c.counts[1].chars, 5, "characters, not bytes");
        assert_eq!(c.counts[0].tokens[0], None);
        let n = c.counts[0].tokens[1].unwrap();
        assert_eq!(
            c.counts[0].per_1k()[1],
            Some(1000.0 * n as f64 / long.chars().count() as f64)
        );
        assert!(
            c.notes
                .iter()
                .any(|n| n.starts_with("llama2-7b: no vocabulary"))
        );
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("no perplexity of tiny on short"))
        );
        assert_eq!(c.runs.len(), 1);
        let r = &c.runs[0];
        assert_eq!(r.chunk_ppl.len(), 3);
        let geo = (r.chunk_ppl.iter().map(|p| p.ln()).sum::<f64>() / 3.0).exp();
        assert!((geo / r.ppl - 1.0).abs() < 1e-9, "{geo} vs {}", r.ppl);

        let v = c.to_json();
        assert_eq!(v["texts"][0]["tokens"]["tiny"], n);
        assert!(v["texts"][0]["tokens"]["llama2-7b"].is_null());
        assert_eq!(v["perplexity"][0]["chunk_ppl"].as_array().unwrap().len(), 3);
        let text = c.to_text();
        assert!(
            text.contains("perplexity at context 32:\n  tiny on en: "),
            "{text}"
        );
        assert!(text.contains("note: llama2-7b: no vocabulary"));

        // The chart: the three panels, bars with n/a for the preset, nothing off the picture.
        let svg = parse(&c.to_svg()).unwrap();
        let ids: Vec<&str> = svg
            .class("panel")
            .iter()
            .map(|p| p.attr("id").unwrap())
            .collect();
        assert_eq!(ids, ["kv-cache", "tokens-per-char", "perplexity"]);
        let na = svg
            .class("bar")
            .iter()
            .filter(|b| b.attr("data-value") == Some("n/a"))
            .count();
        assert_eq!(na, 2, "the preset on both texts");
        assert!(svg.texts("end-label").contains(&"2.00 GiB".to_string()));
        assert_eq!(texts_outside(&svg), []);
    }
}

// ---------------------------------------------------------------------------------------------
// eval_io: task files, the logits file writer and the KL pass over it, the KL report

#[test]
fn task_files_parse_as_json_lines_with_line_numbers() {
    use camelid_engine::eval_io::parse_tasks;
    let text = std::fs::read_to_string(repo().join("testdata/eval/tasks.jsonl")).unwrap();
    // The same tasks as the test's own reading of the file above.
    assert_eq!(parse_tasks(&text).unwrap(), tasks());
    // HellaSwag writes labels as strings; blank lines are skipped.
    let t = parse_tasks("\n{\"context\": \"A\", \"endings\": [\"b\", \"c\"], \"label\": \"1\"}\n")
        .unwrap();
    assert_eq!(t[0].label, 1);
    let err = |s: &str| parse_tasks(s).unwrap_err().to_string();
    let ok = "{\"context\": \"A\", \"endings\": [\"b\", \"c\"], \"label\": 0}";
    assert_eq!(
        err(&format!("{ok}\n{}", ok.replace(": 0", ": 7"))),
        "line 2: label 7 is not an index of the 2 endings (0 to 1)"
    );
    assert!(err("{\"context\": 1}").starts_with("line 1: \"context\" must be a string"));
    assert!(err("{\"context\": \"A\", \"endings\": [\"b\"], \"label\": 0}").contains("at least 2"));
    assert!(
        err("{\"context\": \"A\", \"endings\": [\"b\", 3], \"label\": 0}")
            .contains("array of strings")
    );
    assert!(err("not json").starts_with("line 1: not valid JSON"));
    assert_eq!(err("\n\n"), "no tasks in the file");
}

/// A model compared with its own saved log-probabilities: no divergence beyond the f16
/// rounding of the file, the same top token everywhere, the same perplexity; a file cut short
/// is an I/O error, not a panic.
#[test]
fn a_model_against_its_own_saved_logits_does_not_diverge() {
    use camelid_engine::eval::{LogitsHeader, eval_chunk};
    use camelid_engine::eval_io::{LogitsWriter, first_difference, kl_chunk};
    let (f, model, tokens) = tiny_ppl();
    let chunks = Chunks::new(tokens.len(), 64, Some(3)).unwrap();
    let header = LogitsHeader::new(model.config.n_vocab, chunks, &tokens);
    assert_eq!(first_difference(&header, &tokens), None);
    let mut other = tokens.clone();
    other[70] += 1;
    assert_eq!(first_difference(&header, &other), Some(70));

    let bos = f["bos"].as_u64().map(|b| b as u32);
    let mut state = model.new_state(64).unwrap();
    let mut w = LogitsWriter::new(Vec::new(), &header).unwrap();
    for i in 0..chunks.n_chunks {
        eval_chunk(&model, &mut state, chunks.chunk(&tokens, i), bos, |row| {
            w.push(row.logits)
        })
        .unwrap();
        w.check().unwrap();
    }
    let file = w.finish().unwrap();
    assert_eq!(Some(file.len() as u64), header.file_len());

    // The KL pass over `bytes` of the file: each chunk's result, and the statistics.
    let mut kl_pass = |bytes: &[u8]| {
        let mut r = std::io::Cursor::new(bytes);
        let back = LogitsHeader::read(&mut r, file.len() as u64).unwrap();
        assert_eq!(back, header);
        let mut stats = KlStats::default();
        let results: Vec<_> = (0..chunks.n_chunks)
            .map(|i| {
                let chunk = chunks.chunk(&tokens, i);
                kl_chunk(&model, &mut state, chunk, bos, &mut r, &mut stats)
            })
            .collect();
        (results, stats)
    };
    let (results, stats) = kl_pass(&file);
    assert!(results.iter().all(Result::is_ok));
    let s = stats.summary();
    assert_eq!(s.count, (3 * chunks.scored_per_chunk()) as u64);
    assert!(s.kld_mean.0.abs() < 1e-4, "{:?}", s.kld_mean);
    assert_eq!(s.same_top.0, 1.0);
    assert!(
        rel_close(s.ppl.0, s.ppl_base.0, 1e-3),
        "{:?} {:?}",
        s.ppl,
        s.ppl_base
    );
    let report = s.to_string();
    for section in [
        "====== Perplexity (93 tokens) ======",
        "====== KL divergence (nats) ======",
        "Median",
        "Same top token            100.000",
    ] {
        assert!(report.contains(section), "{section} not in\n{report}");
    }
    assert_eq!(s.to_json()["count"], 93);
    // Per-chunk lines under their header: the columns line up.
    let line = s.chunk_line(3);
    assert!(line.starts_with("     3  "), "{line}");
    assert_eq!(s.chunk_json(3)["chunk"], 3);
    let header = camelid_engine::eval::KlSummary::CHUNK_HEADER;
    assert_eq!(
        header.find("PPL ").map(|i| i + 3),
        line.find('.').map(|i| i + 5)
    );

    // The base file cut inside the second chunk's rows.
    let (results, _) = kl_pass(&file[..file.len() - 2 * model.config.n_vocab * 40]);
    assert!(results[0].is_ok());
    let e = results[1].as_ref().unwrap_err();
    assert!(matches!(e, EvalError::Io(_)), "{e}");
}

// ---------------------------------------------------------------------------------------------
// bench: the statistics and the runs (structure only: no timed assertions)

mod bench {
    use camelid_engine::bench::{Stat, bench_tokens, decode_speed, prompt_speed};
    use camelid_model::Model;

    use super::repo;

    #[test]
    fn statistics_are_the_textbook_ones() {
        let s = |n_prompt, n_gen, samples: &[f64]| Stat {
            samples: samples.to_vec(),
            ..Stat::new(n_prompt, n_gen)
        };
        // 1, 2, 3, 4: mean 2.5, sample variance 5/3.
        let st = s(0, 8, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(st.mean(), 2.5);
        assert!((st.stddev() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s(0, 8, &[7.0]).stddev(), 0.0);
        // A 1 GB model: 10 decoded tokens/s read 10 GB/s; 1000 prompt tokens/s in passes of
        // 100 read it 10 times a second.
        assert!((s(0, 8, &[10.0]).weight_read_gbs(1_000_000_000) - 10.0).abs() < 1e-9);
        assert!((s(100, 0, &[1000.0]).weight_read_gbs(1_000_000_000) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn runs_take_the_samples_asked_for() {
        let t = bench_tokens(50, 200);
        assert_eq!(t.len(), 200);
        assert!(t.iter().all(|&x| x < 50));
        assert_eq!(t[0], 12345 % 50);
        let model = Model::load(&repo().join("testdata/tiny/llama1-mha/f32.gguf")).unwrap();
        let tokens = bench_tokens(model.config.n_vocab, 16);
        let mut state = model.new_state(16).unwrap();
        let pp = prompt_speed(&model, &mut state, &tokens, 2).unwrap();
        assert_eq!(
            (pp.test.as_str(), pp.n_prompt, pp.samples.len()),
            ("pp16", 16, 2)
        );
        // Each test starts from the state's position: the prompt's 16 tokens fill it.
        assert!(decode_speed(&model, &mut state, &tokens[..8], 1).is_err());
        state.pos = 0;
        let tg = decode_speed(&model, &mut state, &tokens[..8], 3).unwrap();
        assert_eq!(
            (tg.test.as_str(), tg.n_gen, tg.samples.len()),
            ("tg8", 8, 3)
        );
        assert!(
            pp.samples
                .iter()
                .chain(&tg.samples)
                .all(|x| x.is_finite() && *x > 0.0)
        );
        assert_eq!(state.pos, 8);
        // A prompt longer than the state holds is the model's error, not a panic.
        assert!(prompt_speed(&model, &mut model.new_state(4).unwrap(), &tokens, 1).is_err());
    }
}

/// `camelid logits` in-process: the JSON shape, one row or all, the same logits fed as a batch
/// or one token at a time (results do not depend on the batch), nothing written for a rejected
/// id.
#[test]
fn logits_as_json_batch_or_decode() {
    use camelid_engine::eval_io::write_logits_json;
    let (_, model, _) = tiny_ppl();
    let json = |all, decode| {
        let mut out = Vec::new();
        write_logits_json(&model, &[1, 5, 9], all, decode, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["n_vocab"], model.config.n_vocab);
        let rows = v["logits"].as_array().unwrap().clone();
        let rows: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        assert!(rows.iter().all(|r| r.len() == model.config.n_vocab));
        rows
    };
    let (last, all) = (json(false, false), json(true, false));
    assert_eq!((last.len(), all.len()), (1, 3));
    assert_eq!(last[0], all[2]);
    let decoded = json(true, true);
    for (a, b) in all.iter().flatten().zip(decoded.iter().flatten()) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
    }
    for decode in [false, true] {
        let mut out = Vec::new();
        let e = write_logits_json(&model, &[1, 100_000], true, decode, &mut out).unwrap_err();
        assert!(e.to_string().contains("100000"), "{e}");
        assert!(out.is_empty(), "nothing written for a rejected input");
    }
}
