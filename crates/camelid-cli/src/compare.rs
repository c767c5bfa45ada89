//! `camelid models` (every published Llama shape with its costs) and `camelid compare` (presets
//! or model files side by side: shapes, memory, compute, tokenizer efficiency on given texts,
//! perplexity of model files, and an SVG chart).
//!
//! Figures and how they are computed:
//! - parameters: [`Config::n_params`], the count the published shapes imply;
//! - KV cache per token at F16: [`Config::kv_bytes_per_token`];
//! - weights: F16 2 bytes per parameter; Q8_0 8.5 bits (34-byte blocks of 32: an f16 scale and
//!   32 int8); Q4_K_M about 4.89 bits, an estimate: Q4_K_M is llama.cpp's mix of Q4_K and
//!   Q6_K tensors, and 4.8944 bits per weight is what llama.cpp's tools/quantize/README.md
//!   measures on Llama 3.1 8B (the mix, hence the average, differs a little by model);
//! - FLOPs per token at context position `t`: [`Config::flops_per_token`], `2·N_mm +
//!   4·n_layers·t·n_heads·head_dim` with `N_mm` [`Config::matmul_params`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use camelid_engine::eval::{Chunks, perplexity};
use camelid_model::Config;
use camelid_model::config::{Preset, presets};
use camelid_model::tokenizer_load::{load_tokenizer, tokenizer_from_gguf};
use camelid_model::weights::Checkpoint;
use camelid_plot::{
    Axis, Bar, BarGroup, BarPanel, Dash, Figure, Legend, LegendEntry, LinePanel, Marks, Series,
    Style, format,
};
use camelid_tokenizer::Tokenizer;
use serde_json::{Value, json};

use crate::fetch::{self, Packaged};
use crate::load::{LoadArgs, PrecisionArg, load_from};
use crate::run::read_text;

/// Bits per weight of the quantized sizes (see the module docs).
const Q8_0_BPW: f64 = 8.5;
const Q4_K_M_BPW: f64 = 4.8944;

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// List what is stored on this machine instead: the default model and the preset
    /// vocabularies in camelid's cache, and the hf: downloads in the Hugging Face cache, with
    /// their paths and sizes.
    #[arg(long)]
    pub local: bool,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Preset ids (llama-7b, llama2-7b, llama3-8b, llama3.1-405b, ...; see `camelid models`)
    /// or models as every command takes them: GGUF files, Hugging Face folders,
    /// `hf:OWNER/REPO[/FILE]`, `smollm2`.
    #[arg(required = true, num_args = 1..)]
    pub models: Vec<String>,
    /// Texts to tokenize with each model's tokenizer (repeatable); model files also get their
    /// perplexity on each text that holds two chunks.
    #[arg(long = "text")]
    pub texts: Vec<PathBuf>,
    /// Write an SVG chart: KV-cache memory against context length (log scales), tokens per
    /// 1,000 characters of each text for each model, and per-chunk perplexity of the model files
    /// on the texts.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Context (chunk length) of the perplexity runs.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Chunks per perplexity run at most.
    #[arg(long)]
    pub chunks: Option<usize>,
    #[arg(short, long, help = crate::load::THREADS_HELP, value_parser = crate::load::parse_threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// A preset or a model file, with what the tables need.
struct Entry {
    /// What the user typed: a preset id or a path.
    label: String,
    name: String,
    config: Config,
    training_tokens: Option<String>,
    file: Option<PathBuf>,
}

/// Derived figures of one shape.
struct Figures {
    params: u64,
    attention: String,
    kv_bytes_per_token: u64,
    weights_f16: f64,
    weights_q8_0: f64,
    weights_q4_k_m: f64,
    flops_short: f64,
    flops_full_ctx: f64,
}

fn figures(c: &Config) -> Figures {
    let params = c.n_params();
    Figures {
        params,
        attention: attention_kind(c),
        kv_bytes_per_token: c.kv_bytes_per_token(2),
        weights_f16: params as f64 * 2.0,
        weights_q8_0: params as f64 * Q8_0_BPW / 8.0,
        weights_q4_k_m: params as f64 * Q4_K_M_BPW / 8.0,
        flops_short: c.flops_per_token(0),
        flops_full_ctx: c.flops_per_token(c.n_ctx_train),
    }
}

/// MHA, MQA, or GQA with its ratio of query heads to kv heads.
fn attention_kind(c: &Config) -> String {
    if c.n_kv_heads == c.n_heads {
        "MHA".into()
    } else if c.n_kv_heads == 1 {
        "MQA".into()
    } else {
        format!("GQA {}:1", c.n_heads / c.n_kv_heads.max(1))
    }
}

fn gib(bytes: f64) -> String {
    let g = bytes / (1u64 << 30) as f64;
    if g >= 100.0 {
        format!("{g:.0} GiB")
    } else if g >= 10.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{g:.2} GiB")
    }
}

fn kib(bytes: u64) -> String {
    let k = bytes as f64 / 1024.0;
    if k.fract() == 0.0 {
        format!("{k:.0} KiB")
    } else {
        format!("{k:.1} KiB")
    }
}

fn ctx_label(n: usize) -> String {
    if n >= 1024 && n & 1023 == 0 {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

fn entry_json(e: &Entry) -> Value {
    let f = figures(&e.config);
    let c = &e.config;
    json!({
        "id": e.label,
        "name": e.name,
        "file": e.file.as_ref().map(|p| p.display().to_string()),
        "params": f.params,
        "params_3sig": format::count(f.params as f64),
        "d_model": c.d_model,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "d_ff": c.d_ff,
        "n_ctx": c.n_ctx_train,
        "n_vocab": c.n_vocab,
        "attention": f.attention,
        "kv_bytes_per_token_f16": f.kv_bytes_per_token,
        "kv_bytes_full_ctx_f16": f.kv_bytes_per_token * c.n_ctx_train as u64,
        "weights_bytes": {"f16": f.weights_f16, "q8_0": f.weights_q8_0, "q4_k_m_estimate": f.weights_q4_k_m},
        "flops_per_token": {"short_ctx": f.flops_short, "full_ctx": f.flops_full_ctx},
        "training_tokens": e.training_tokens,
    })
}

fn preset_entry(p: &Preset) -> Entry {
    Entry {
        label: p.id.to_string(),
        name: p.name.to_string(),
        config: p.config.clone(),
        training_tokens: Some(p.training_tokens.to_string()),
        file: None,
    }
}

/// Rows of property name and one value per entry.
fn property_rows(entries: &[Entry]) -> Vec<(String, Vec<String>)> {
    let figs: Vec<Figures> = entries.iter().map(|e| figures(&e.config)).collect();
    let col = |f: &dyn Fn(&Entry, &Figures) -> String| -> Vec<String> {
        entries.iter().zip(&figs).map(|(e, g)| f(e, g)).collect()
    };
    vec![
        ("name".into(), col(&|e, _| e.name.clone())),
        (
            "parameters".into(),
            col(&|_, g| format::count(g.params as f64)),
        ),
        (
            "layers x d_model".into(),
            col(&|e, _| format!("{} x {}", e.config.n_layers, e.config.d_model)),
        ),
        (
            "context".into(),
            col(&|e, _| ctx_label(e.config.n_ctx_train)),
        ),
        (
            "vocabulary".into(),
            col(&|e, _| e.config.n_vocab.to_string()),
        ),
        (
            "attention".into(),
            col(&|e, g| {
                format!(
                    "{} ({}/{})",
                    g.attention, e.config.n_heads, e.config.n_kv_heads
                )
            }),
        ),
        (
            "KV/token F16".into(),
            col(&|_, g| kib(g.kv_bytes_per_token)),
        ),
        (
            "KV at full ctx".into(),
            col(&|e, g| gib((g.kv_bytes_per_token * e.config.n_ctx_train as u64) as f64)),
        ),
        ("weights F16".into(), col(&|_, g| gib(g.weights_f16))),
        ("weights Q8_0".into(), col(&|_, g| gib(g.weights_q8_0))),
        ("weights Q4_K_M~".into(), col(&|_, g| gib(g.weights_q4_k_m))),
        (
            "GFLOP/token".into(),
            col(&|_, g| format!("{:.1}", g.flops_short / 1e9)),
        ),
        (
            "GFLOP/tok full ctx".into(),
            col(&|_, g| format!("{:.1}", g.flops_full_ctx / 1e9)),
        ),
        (
            "trained on".into(),
            col(&|e, _| {
                e.training_tokens
                    .clone()
                    .unwrap_or_else(|| "-".into())
                    .replace(' ', "\u{a0}")
            }),
        ),
    ]
}

const FOOTNOTES: &str = "\
KV/token: 2 (K, V) x layers x kv_heads x head_dim x 2 bytes.  Q8_0: 8.5 bits/weight.
Q4_K_M~: an estimate at 4.89 bits/weight (llama.cpp's Q4_K/Q6_K mix measured on Llama 3.1 8B).
GFLOP/token: 2 x N_mm (matmul parameters: projections and output, not the embedding lookup);
full ctx adds 4 x layers x t x n_heads x head_dim for QK^T and A.V at position t = context.";

pub fn run_models(a: &ModelsArgs) -> Result<()> {
    let entries: Vec<Entry> = presets().iter().map(preset_entry).collect();
    if a.json {
        let v: Vec<Value> = entries.iter().map(entry_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "models": v }))?);
        return Ok(());
    }
    let header = [
        "id",
        "params",
        "ctx",
        "vocab",
        "attention",
        "KV/token",
        "F16",
        "Q8_0",
        "Q4_K_M~",
        "GFLOP/tok",
        "@full ctx",
        "trained on",
    ];
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let f = figures(&e.config);
            vec![
                e.label.clone(),
                format::count(f.params as f64),
                ctx_label(e.config.n_ctx_train),
                e.config.n_vocab.to_string(),
                f.attention.clone(),
                kib(f.kv_bytes_per_token),
                gib(f.weights_f16),
                gib(f.weights_q8_0),
                gib(f.weights_q4_k_m),
                format!("{:.1}", f.flops_short / 1e9),
                format!("{:.1}", f.flops_full_ctx / 1e9),
                e.training_tokens.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&header.map(String::from), &rows);
    println!();
    println!("{FOOTNOTES}");
    println!(
        "What is stored on this machine (default model, vocabularies, hf: downloads): camelid models --local"
    );
    Ok(())
}

/// Prints a table: the first column left-aligned, the others right-aligned.
fn print_table(header: &[String], rows: &[Vec<String>]) {
    let n = header.len();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..n).map(width).collect();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        println!("{}", s.trim_end());
    };
    line(header);
    for r in rows {
        line(r);
    }
}

/// The vocabulary of a preset: LLaMA and Llama 2 share one SentencePiece vocabulary, all
/// Llama 3.x one tiktoken-style vocabulary; llama.cpp's vocabulary-only GGUFs of the two.
fn preset_vocabulary(id: &str) -> &'static Packaged {
    if id.starts_with("llama3") {
        &fetch::LLAMA_BPE_VOCAB
    } else {
        &fetch::LLAMA_SPM_VOCAB
    }
}

fn resolve(arg: &str) -> Result<Entry> {
    let all = presets();
    if let Some(p) = all.iter().find(|p| p.id.eq_ignore_ascii_case(arg)) {
        return Ok(preset_entry(p));
    }
    let path = fetch::resolve_model(Some(arg)).map_err(|e| {
        let ids: Vec<&str> = all.iter().map(|p| p.id).collect();
        e.context(format!(
            "`{arg}` is neither a preset nor a model (presets: {})",
            ids.join(", ")
        ))
    })?;
    let ckpt = Checkpoint::open(&path)?;
    let name = path
        .file_name()
        .map_or_else(|| arg.to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Entry {
        label: arg.to_string(),
        name,
        config: ckpt.config.clone(),
        training_tokens: None,
        file: Some(path),
    })
}

/// The tokenizer of every entry, or why it has none: a preset's vocabulary is fetched on first
/// use (each one once, however many presets share it), and one that cannot be had fails its
/// entry's figures, not the comparison.
fn entry_tokenizers(entries: &[Entry]) -> Vec<Result<Rc<Tokenizer>, String>> {
    // By name: a constant has no one address to compare.
    let same = |a: &Packaged, b: &Packaged| a.artifact.file_name == b.artifact.file_name;
    let mut vocabs: Vec<&'static Packaged> = Vec::new();
    for e in entries.iter().filter(|e| e.file.is_none()) {
        let v = preset_vocabulary(&e.label);
        if !vocabs.iter().any(|w| same(w, v)) {
            vocabs.push(v);
        }
    }
    let fetched: Vec<Result<Rc<Tokenizer>, String>> = if vocabs.is_empty() {
        Vec::new()
    } else {
        match fetch::Resolver::from_env() {
            Ok(r) => r
                .packaged(&vocabs)
                .into_iter()
                .map(|path| {
                    let path = path?;
                    load_tokenizer(&path)
                        .map(Rc::new)
                        .with_context(|| format!("cannot load a tokenizer from {}", path.display()))
                })
                .map(|t| t.map_err(|e| format!("{e:#}")))
                .collect(),
            Err(e) => vocabs.iter().map(|_| Err(format!("{e:#}"))).collect(),
        }
    };
    entries
        .iter()
        .map(|e| match &e.file {
            None => {
                let v = preset_vocabulary(&e.label);
                let i = vocabs.iter().position(|w| same(w, v));
                match &fetched[i.expect("every preset's vocabulary was fetched")] {
                    Ok(t) => Ok(Rc::clone(t)),
                    Err(why) => Err(format!("no tokenizer: {why}")),
                }
            }
            Some(p) => file_tokenizer(p)
                .map(Rc::new)
                .map_err(|e| format!("no tokenizer: {e:#}")),
        })
        .collect()
}

fn file_tokenizer(p: &Path) -> Result<Tokenizer> {
    let ckpt = Checkpoint::open(p)?;
    Ok(match ckpt.gguf() {
        Some(g) => tokenizer_from_gguf(g)?,
        None => load_tokenizer(p)?,
    })
}

struct TextCount {
    path: PathBuf,
    chars: usize,
    /// Tokens without BOS, one per entry; None for an entry without a tokenizer.
    tokens: Vec<Option<usize>>,
}

struct PplRun {
    model: String,
    text: String,
    chunk_ppl: Vec<f64>,
    ppl: f64,
    ppl_stderr: f64,
}

pub fn run_compare(a: &CompareArgs) -> Result<()> {
    let entries = a
        .models
        .iter()
        .map(|m| resolve(m))
        .collect::<Result<Vec<_>>>()?;
    let texts = a
        .texts
        .iter()
        .map(|p| {
            let t = read_text(p)?;
            if t.is_empty() {
                bail!("{}: the file is empty", p.display());
            }
            Ok((p.clone(), t))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut counts: Vec<TextCount> = texts
        .iter()
        .map(|(p, t)| TextCount {
            path: p.clone(),
            chars: t.chars().count(),
            tokens: Vec::new(),
        })
        .collect();
    let mut ppl_runs = Vec::new();
    let mut notes = Vec::new();
    // Per entry: why it has no tokenizer, for its row.
    let mut tokenizer_errors: Vec<Option<String>> = vec![None; entries.len()];
    if !texts.is_empty() {
        let tokenizers = entry_tokenizers(&entries);
        for (i, (e, tok)) in entries.iter().zip(&tokenizers).enumerate() {
            let tok = match tok {
                Ok(t) => t,
                Err(why) => {
                    notes.push(format!("{}: {why}", e.label));
                    tokenizer_errors[i] = Some(why.clone());
                    for c in counts.iter_mut() {
                        c.tokens.push(None);
                    }
                    continue;
                }
            };
            for (c, (_, t)) in counts.iter_mut().zip(&texts) {
                c.tokens.push(Some(tok.encode(t, false, false).len()));
            }
            if e.file.is_some() {
                ppl_runs.extend(model_perplexities(a, e, tok, &texts, &mut notes)?);
            }
        }
    }

    if let Some(out) = &a.plot {
        let svg = render_svg(&entries, &counts, &ppl_runs, a.ctx);
        std::fs::write(out, svg).with_context(|| format!("writing {}", out.display()))?;
    }

    if a.json {
        let models = entries.iter().zip(&tokenizer_errors).map(|(e, err)| {
            let mut v = entry_json(e);
            if let Some(why) = err {
                v["tokenizer_error"] = json!(why);
            }
            v
        });
        let v = json!({
            "models": models.collect::<Vec<_>>(),
            "texts": counts.iter().map(|c| {
                let by = |f: &dyn Fn(usize) -> Value| -> BTreeMap<String, Value> {
                    entries
                        .iter()
                        .zip(&c.tokens)
                        .map(|(e, n)| (e.label.clone(), n.map_or(Value::Null, f)))
                        .collect()
                };
                json!({
                    "file": c.path.display().to_string(),
                    "chars": c.chars,
                    "tokens": by(&|n| json!(n)),
                    "tokens_per_1k_chars": by(&|n| json!(per_1k(n, c.chars))),
                })
            }).collect::<Vec<_>>(),
            "perplexity": ppl_runs.iter().map(|r| json!({
                "model": r.model, "text": r.text, "n_ctx": a.ctx, "chunk_ppl": r.chunk_ppl,
                "ppl": r.ppl, "ppl_stderr": r.ppl_stderr,
            })).collect::<Vec<_>>(),
            "notes": notes,
            "plot": a.plot.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }

    let mut header = vec![String::new()];
    header.extend(entries.iter().map(|e| e.label.clone()));
    let rows: Vec<Vec<String>> = property_rows(&entries)
        .into_iter()
        .map(|(k, vals)| std::iter::once(k).chain(vals).collect())
        .collect();
    print_table(&header, &rows);
    for c in &counts {
        println!();
        println!(
            "{} ({} characters): tokens, and tokens per 1,000 characters",
            c.path.display(),
            c.chars
        );
        // An entry without a tokenizer shows why in the notes below the tables.
        let cell = |n: &Option<usize>, f: &dyn Fn(usize) -> String| n.map_or("-".into(), f);
        let rows = vec![
            std::iter::once("tokens".to_string())
                .chain(c.tokens.iter().map(|n| cell(n, &|n| n.to_string())))
                .collect(),
            std::iter::once("per 1k chars".to_string())
                .chain(
                    c.tokens
                        .iter()
                        .map(|n| cell(n, &|n| format!("{:.0}", per_1k(n, c.chars)))),
                )
                .collect(),
        ];
        print_table(&header, &rows);
    }
    if !ppl_runs.is_empty() {
        println!();
        println!("perplexity at context {}:", a.ctx);
        for r in &ppl_runs {
            println!(
                "  {} on {}: {:.4} +/- {:.5} ({} chunks)",
                r.model,
                r.text,
                r.ppl,
                r.ppl_stderr,
                r.chunk_ppl.len()
            );
        }
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!();
    println!("{FOOTNOTES}");
    if let Some(p) = &a.plot {
        println!("chart written to {}", p.display());
    }
    Ok(())
}

fn per_1k(tokens: usize, chars: usize) -> f64 {
    1000.0 * tokens as f64 / chars.max(1) as f64
}

fn model_perplexities(
    a: &CompareArgs,
    e: &Entry,
    tok: &Tokenizer,
    texts: &[(PathBuf, String)],
    notes: &mut Vec<String>,
) -> Result<Vec<PplRun>> {
    // Tokenize first: the model is loaded only if some text holds two chunks.
    let mut jobs = Vec::new();
    for (p, t) in texts {
        let tokens = tok.encode(t, tok.add_bos_default(), false);
        match Chunks::new(tokens.len(), a.ctx, a.chunks) {
            Ok(c) => jobs.push((p, tokens, c)),
            Err(err) => notes.push(format!(
                "no perplexity of {} on {}: {err}",
                e.label,
                p.display()
            )),
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let Some(path) = &e.file else {
        return Ok(Vec::new());
    };
    let loaded = load_from(
        path,
        &LoadArgs {
            model: None,
            ctx: Some(a.ctx),
            threads: a.threads,
            precision: PrecisionArg::Fast,
            device: crate::load::Device::Cpu,
        },
    )?;
    let tok = &loaded.tokenizer;
    let bos = if tok.add_bos_default() {
        tok.bos()
    } else {
        None
    };
    let mut runs = Vec::new();
    for (p, tokens, chunks) in jobs {
        eprintln!(
            "perplexity of {} on {}: {} chunks of {}",
            e.label,
            p.display(),
            chunks.n_chunks,
            a.ctx
        );
        let mut chunk_ppl = Vec::new();
        let total = perplexity(&loaded.model, &tokens, chunks, bos, |_, m, _| {
            chunk_ppl.push(m.ppl())
        })?;
        runs.push(PplRun {
            model: e.label.clone(),
            text: p.display().to_string(),
            chunk_ppl,
            ppl: total.ppl(),
            ppl_stderr: total.ppl_stderr(),
        });
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// SVG chart
//
// One legend of the models, then a panel per question, each on the scale its data needs:
// - KV cache against context, log-log: contexts run from 2k to 128k and caches over four orders
//   of magnitude, so a linear axis leaves every short-context model in one corner; on log-log
//   axes each model is a line of slope one, its height the bytes per token, its end the
//   trained context;
// - tokens per 1,000 characters of each text, bars from zero grouped by text (the question is
//   which vocabulary suits this text), a model without a tokenizer marked "n/a";
// - per-chunk perplexity of the model files, on a range fitted to the values.
// A model has one colour in every panel.

/// The KV-cache panel: each entry from a short context to its trained one.
fn kv_panel(entries: &[Entry]) -> LinePanel {
    let per_tok: Vec<f64> = entries
        .iter()
        .map(|e| e.config.kv_bytes_per_token(2) as f64)
        .collect();
    let ctx: Vec<f64> = entries
        .iter()
        .map(|e| e.config.n_ctx_train.max(1) as f64)
        .collect();
    // Start an eighth below the shortest context: room for every line to show its slope.
    let x_lo = (ctx.iter().copied().fold(f64::INFINITY, f64::min) / 8.0).max(1.0);
    let x_hi = ctx.iter().copied().fold(1.0, f64::max);
    let y_lo = per_tok.iter().copied().fold(f64::INFINITY, f64::min) * x_lo;
    let y_hi = per_tok
        .iter()
        .zip(&ctx)
        .map(|(p, c)| p * c)
        .fold(1.0, f64::max);
    let x =
        Axis::pow2(x_lo, x_hi, 12, &format::count_k).title("context length (tokens, log scale)");
    let y = Axis::pow2(y_lo, y_hi, 9, &format::bytes_pow2).title("KV cache (bytes, log scale)");
    let lo = x.lo();
    let mut panel = LinePanel::new(
        "kv-cache",
        "KV cache of one sequence (F16) against context length; a dot marks the trained context",
        x,
        y,
    );
    for (i, e) in entries.iter().enumerate() {
        let points = vec![(lo, per_tok[i] * lo), (ctx[i], per_tok[i] * ctx[i])];
        panel = panel.series(
            Series::line(&e.label, Style::nth(i), points)
                .marks(Marks::Last)
                .end_label(format::bytes(per_tok[i] * ctx[i])),
        );
    }
    panel
}

/// The tokenizer panel: one group per text and one bar per model in it; "n/a" where a model
/// has no tokenizer.
fn token_panel(entries: &[Entry], counts: &[TextCount]) -> BarPanel {
    let mut panel = BarPanel::new(
        "tokens-per-char",
        "Tokens per 1,000 characters of each text: fewer means the vocabulary fits the text",
        "tokens per 1,000 characters of the text (BOS not counted)",
    );
    panel.missing = "n/a (no tokenizer, see the notes)".into();
    for c in counts {
        let text_name = short_name(&c.path.display().to_string());
        let bars = entries
            .iter()
            .zip(&c.tokens)
            .enumerate()
            .map(|(i, (e, n))| Bar {
                label: short_name(&e.label),
                value: n.map(|n| per_1k(n, c.chars)),
                color: Style::nth(i).color,
                data: vec![
                    ("model".into(), e.label.clone()),
                    ("text".into(), text_name.clone()),
                ],
            })
            .collect();
        panel = panel.group(BarGroup {
            heading: format!(
                "{text_name} ({} characters)",
                format::thousands(c.chars as u64)
            ),
            bars,
        });
    }
    panel
}

/// The perplexity panel: per-chunk perplexity of every run, coloured by model, patterned by text,
/// with its own legend. A range beyond a factor of ten gets a log axis.
fn ppl_panel(entries: &[Entry], counts: &[TextCount], runs: &[PplRun], n_ctx: usize) -> LinePanel {
    let all = runs.iter().flat_map(|r| r.chunk_ppl.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let y = if hi > 10.0 * lo {
        Axis::log10(lo, hi, &format::number)
    } else {
        Axis::linear(lo, hi, 0.0, &format::number)
    };
    let y = y.title("perplexity per chunk (exp of mean loss in nats/token; lower is better)");
    let n_max = runs.iter().map(|r| r.chunk_ppl.len()).max().unwrap_or(1);
    let x = Axis::linear(1.0, n_max as f64, 1.0, &format::number)
        .title(format!("chunk (number; {n_ctx} tokens each)"));
    let style = |r: &PplRun| {
        let m = entries.iter().position(|e| e.label == r.model).unwrap_or(0);
        let t = counts
            .iter()
            .position(|c| c.path.display().to_string() == r.text)
            .unwrap_or(0);
        Style {
            color: Style::nth(m).color,
            dash: Dash::nth(t),
        }
    };
    let title = format!("Perplexity per chunk of {n_ctx} tokens (model files)");
    let mut panel = LinePanel::new("perplexity", title, x, y);
    let mut legend = Legend::new(None);
    for r in runs {
        let key = format!("{} on {}", short_name(&r.model), short_name(&r.text));
        let label = format!(
            "{key}: {:.2} ± {:.2} over {} chunks",
            r.ppl,
            r.ppl_stderr,
            r.chunk_ppl.len()
        );
        let points = (1..)
            .map(f64::from)
            .zip(r.chunk_ppl.iter().copied())
            .collect();
        panel = panel.series(Series::line(&key, style(r), points).marks(Marks::Every));
        legend = legend.entry(LegendEntry::new(key, label, style(r)));
    }
    panel.legend(legend)
}

/// The chart file: the models' legend, the KV-cache panel, the tokenizer panel when there are
/// texts, and the perplexity panel when model files were run on them.
fn render_svg(entries: &[Entry], counts: &[TextCount], runs: &[PplRun], n_ctx: usize) -> String {
    let mut legend = Legend::new(Some("Models (one colour each in every panel)"));
    for (i, e) in entries.iter().enumerate() {
        let label = format!(
            "{}: {}, KV {}/token, context {}",
            short_name(&e.label),
            attention_kind(&e.config),
            kib(e.config.kv_bytes_per_token(2)),
            ctx_label(e.config.n_ctx_train)
        );
        legend = legend.entry(LegendEntry::new(&e.label, label, Style::nth(i)));
    }
    let mut fig = Figure::new();
    fig.legend(legend).lines(kv_panel(entries));
    if !counts.is_empty() {
        fig.bars(token_panel(entries, counts));
    }
    if !runs.is_empty() {
        fig.lines(ppl_panel(entries, counts, runs, n_ctx));
    }
    fig.to_svg()
}

/// The last path component, for legends.
fn short_name(s: &str) -> String {
    Path::new(s)
        .file_name()
        .map_or_else(|| s.to_string(), |n| n.to_string_lossy().into_owned())
}
