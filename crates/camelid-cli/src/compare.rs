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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use camelid_engine::eval::{Chunks, perplexity};
use camelid_model::Config;
use camelid_model::config::{Preset, presets};
use camelid_model::tokenizer_load::{load_tokenizer, tokenizer_from_gguf};
use camelid_model::weights::Checkpoint;
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

/// A count to three significant digits: 6.74B, 13.0B, 406B, 135M.
pub fn three_sig(n: u64) -> String {
    let (v, unit) = if n >= 1_000_000_000 {
        (n as f64 / 1e9, "B")
    } else if n >= 1_000_000 {
        (n as f64 / 1e6, "M")
    } else if n >= 1_000 {
        (n as f64 / 1e3, "K")
    } else {
        return n.to_string();
    };
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
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
        "params_3sig": three_sig(f.params),
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
        ("parameters".into(), col(&|_, g| three_sig(g.params))),
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
                three_sig(f.params),
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
// A model has one colour in every panel. An SVG writer cannot measure text, so widths are
// estimated on the wide side and layouts that must fit (legends, bar labels) use the estimate.

/// Matplotlib's "tab10" colours: distinct at line width, and familiar from plots people read.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const WIDTH: f64 = 880.0;
const MARGIN: f64 = 16.0;
/// The plot areas of the line panels: room on the left for tick labels such as "256 MiB", on the
/// right for half of the last x label.
const PLOT_LEFT: f64 = 84.0;
const PLOT_RIGHT: f64 = WIDTH - 40.0;
const PLOT_H: f64 = 280.0;
const FONT: f64 = 13.0;
const TICK_FONT: f64 = 12.0;
const TITLE_FONT: f64 = 16.0;

/// Estimated advance width of `s` in pixels at `size`: DejaVu Sans's widths rounded up per class
/// of character (it is wider than Arial and Helvetica, so those come out narrower still), a full
/// em for wide scripts such as CJK.
fn text_width(s: &str, size: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            ' ' | 'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 0.34,
            'm' | 'w' | 'M' | 'W' | '@' | '%' => 1.0,
            'A'..='Z' | '0'..='9' | '#' | '&' => 0.72,
            c if c.is_ascii() => 0.62,
            // Latin, Greek and Cyrillic letters outside ASCII are letter-sized; CJK, kana and
            // the rest are taken as full-width.
            c if (c as u32) < 0x2e80 => 0.72,
            _ => 1.0,
        })
        .sum();
    em * size
}

/// `s` cut with an ellipsis to fit `width` pixels at `size`.
fn fit_text(s: &str, size: f64, width: f64) -> String {
    if text_width(s, size) <= width {
        return s.to_string();
    }
    let mut out = String::new();
    for c in s.chars() {
        let mut next = out.clone();
        next.push(c);
        if text_width(&next, size) + text_width("…", size) > width {
            break;
        }
        out = next;
    }
    out + "…"
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One `<text>`; `attrs` carries the anchor, class and anything else.
fn text(svg: &mut String, x: f64, y: f64, size: f64, attrs: &str, s: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" {attrs}>{}</text>"#,
        xml_escape(s)
    );
}

/// Stroke patterns: solid, dashed, dotted, dash-dot.
const DASHES: [&str; 4] = ["", "9 5", "2 4", "12 4 2 4"];

fn dash(pattern: usize) -> String {
    match DASHES[pattern % DASHES.len()] {
        "" => String::new(),
        d => format!(r#" stroke-dasharray="{d}""#),
    }
}

/// The colour and stroke pattern of model `i`: every other model dashed, so that lines with the
/// same course (models with the same KV per token) stay apart; once the palette runs out the
/// colours repeat with the patterns swapped.
fn model_style(i: usize) -> (&'static str, usize) {
    (PALETTE[i % PALETTE.len()], (i + i / PALETTE.len()) % 2)
}

/// An axis: the value range it shows, linear or logarithmic, and its labelled ticks.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Where `v` falls: 0 at `lo`, 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v / self.lo).ln() / (self.hi / self.lo).ln()
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// A log axis between powers of two around `lo..=hi`, ticked at every `2^k`-th power for
    /// the smallest `k` that keeps the ticks at most `max_ticks`, ending on a tick.
    fn pow2(lo: f64, hi: f64, max_ticks: usize, label: &dyn Fn(f64) -> String) -> Axis {
        let a = lo.max(1e-9).log2().floor() as i32;
        let b = (hi.max(lo).log2().ceil() as i32).max(a + 1);
        let span = (b - a) as usize;
        let step = (1..=span)
            .find(|s| span.div_ceil(*s) < max_ticks)
            .unwrap_or(span);
        let b = a + (span.div_ceil(step) * step) as i32;
        let ticks = (a..=b)
            .step_by(step)
            .map(|e| (2f64.powi(e), label(2f64.powi(e))))
            .collect();
        Axis {
            lo: 2f64.powi(a),
            hi: 2f64.powi(b),
            log: true,
            ticks,
        }
    }

    /// A linear axis with about five round ticks (1, 2 or 5 times a power of ten, at least
    /// `min_step` apart) from at or below `lo` to at or above `hi`.
    fn linear(lo: f64, hi: f64, min_step: f64, label: &dyn Fn(f64) -> String) -> Axis {
        let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
        let raw = span / 5.0;
        let pow = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * pow)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * pow)
            .max(min_step);
        let first = (lo / step).floor() as i64;
        let last = ((hi / step).ceil() as i64).max(first + 1);
        let ticks = (first..=last)
            .map(|i| i as f64 * step)
            .map(|v| (v, label(v)))
            .collect();
        Axis {
            lo: first as f64 * step,
            hi: last as f64 * step,
            log: false,
            ticks,
        }
    }

    /// A log axis ticked at 1, 2 and 5 times powers of ten, for values over a wide range.
    fn log10(lo: f64, hi: f64, label: &dyn Fn(f64) -> String) -> Axis {
        let steps = |e: i32| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e));
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let all: Vec<f64> = (a..=b).flat_map(steps).collect();
        let lo_t = all.iter().rev().find(|v| **v <= lo).copied().unwrap_or(lo);
        let hi_t = all.iter().find(|v| **v >= hi).copied().unwrap_or(hi);
        let ticks = all
            .into_iter()
            .filter(|v| (lo_t..=hi_t).contains(v))
            .map(|v| (v, label(v)))
            .collect();
        Axis {
            lo: lo_t,
            hi: hi_t,
            log: true,
            ticks,
        }
    }
}

/// A size in bytes at a power of two, in the largest binary unit that keeps it whole-ish.
fn bytes_label(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", tick_label(v), units[u])
}

/// A size to three significant digits in the largest binary unit it reaches.
fn size_label(b: f64) -> String {
    let (v, unit) = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .iter()
        .map(|&(shift, u)| (b / (1u64 << shift) as f64, u))
        .find(|(v, _)| *v >= 1.0)
        .unwrap_or((b, "B"));
    if v >= 100.0 || unit == "B" {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A swatch and a label in a legend; `key` names what it stands for (a model's label, or a
/// perplexity run), for readers of the file.
struct LegendEntry {
    key: String,
    label: String,
    color: &'static str,
    dash: usize,
}

/// Draws a boxed legend at `top`, in as many equal columns as fit the figure's width (labels
/// too long for one column are cut), filled column by column; returns its height.
fn draw_legend(svg: &mut String, top: f64, heading: Option<&str>, entries: &[LegendEntry]) -> f64 {
    const PAD: f64 = 10.0;
    const SWATCH: f64 = 34.0;
    const GAP: f64 = 24.0;
    const ROW: f64 = 20.0;
    if entries.is_empty() {
        return 0.0;
    }
    let inner = WIDTH - 2.0 * MARGIN - 2.0 * PAD;
    let widest = entries
        .iter()
        .map(|e| text_width(&e.label, FONT))
        .fold(0.0, f64::max)
        .min(inner - SWATCH);
    let col_w = SWATCH + widest + GAP;
    let cols = (((inner + GAP) / col_w).floor() as usize).clamp(1, entries.len());
    let rows = entries.len().div_ceil(cols);
    let head_h = if heading.is_some() { ROW } else { 0.0 };
    let box_w = cols as f64 * col_w - GAP + 2.0 * PAD;
    let box_h = head_h + rows as f64 * ROW + 2.0 * PAD - 4.0;
    let _ = writeln!(
        svg,
        r##"<g class="legend"><rect class="legend-box" x="{MARGIN}" y="{top}" width="{box_w:.1}" height="{box_h:.1}" fill="white" stroke="#c8c8c8"/>"##
    );
    if let Some(h) = heading {
        text(
            svg,
            MARGIN + PAD,
            top + PAD + 11.0,
            FONT,
            r#"font-weight="bold""#,
            h,
        );
    }
    for (i, e) in entries.iter().enumerate() {
        let x = MARGIN + PAD + (i / rows) as f64 * col_w;
        let y = top + PAD + head_h + (i % rows) as f64 * ROW + 11.0;
        let _ = writeln!(
            svg,
            r#"<g class="legend-entry" data-key="{}"><line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"{}/><circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
            xml_escape(&e.key),
            y - 4.0,
            x + SWATCH - 8.0,
            y - 4.0,
            e.color,
            dash(e.dash),
            x + SWATCH - 8.0,
            y - 4.0,
            e.color,
        );
        text(
            svg,
            x + SWATCH,
            y,
            FONT,
            r#"class="legend-label""#,
            &fit_text(&e.label, FONT, widest),
        );
        svg.push_str("</g>\n");
    }
    svg.push_str("</g>\n");
    box_h
}

/// A panel's title, and the group that holds the panel; the caller closes the group.
fn open_panel(svg: &mut String, top: f64, id: &str, title: &str) {
    let _ = writeln!(svg, r#"<g class="panel" id="{id}">"#);
    text(
        svg,
        WIDTH / 2.0,
        top + 20.0,
        TITLE_FONT,
        r#"class="panel-title" font-weight="bold" text-anchor="middle""#,
        title,
    );
}

struct Line {
    color: &'static str,
    dash: usize,
    points: Vec<(f64, f64)>,
    /// Mark every point (per-chunk data) rather than only the last (where a line ends).
    every_point: bool,
    /// Written beside the last point.
    end_label: Option<String>,
}

/// A panel of lines on `x` and `y` at `top`: title, y-axis title above the plot (horizontal,
/// so that it can be as long as its units need), grid, lines, x-axis title. Returns its height.
fn draw_lines(
    svg: &mut String,
    top: f64,
    titles: [&str; 4],
    x: &Axis,
    y: &Axis,
    lines: &[Line],
) -> f64 {
    let [id, title, x_title, y_title] = titles;
    open_panel(svg, top, id, title);
    let plot_top = top + 58.0;
    let bottom = plot_top + PLOT_H;
    let px = |v: f64| PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * x.frac(v);
    let py = |v: f64| bottom - PLOT_H * y.frac(v);
    text(
        svg,
        MARGIN,
        top + 46.0,
        FONT,
        r#"class="axis-title y-axis""#,
        y_title,
    );
    for (v, l) in &y.ticks {
        let yy = py(*v);
        let _ = writeln!(
            svg,
            r##"<line x1="{PLOT_LEFT}" y1="{yy:.1}" x2="{PLOT_RIGHT}" y2="{yy:.1}" stroke="#e4e4e4"/>"##
        );
        text(
            svg,
            PLOT_LEFT - 6.0,
            yy + 4.0,
            TICK_FONT,
            r#"class="tick" text-anchor="end""#,
            l,
        );
    }
    for (v, l) in &x.ticks {
        let xx = px(*v);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{plot_top:.1}" x2="{xx:.1}" y2="{bottom:.1}" stroke="#efefef"/>"##
        );
        text(
            svg,
            xx,
            bottom + 18.0,
            TICK_FONT,
            r#"class="tick" text-anchor="middle""#,
            l,
        );
    }
    let _ = writeln!(
        svg,
        r#"<path d="M{PLOT_LEFT} {plot_top:.1}V{bottom:.1}H{PLOT_RIGHT}" fill="none" stroke="black"/>"#
    );
    text(
        svg,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        bottom + 40.0,
        FONT,
        r#"class="axis-title x-axis" text-anchor="middle""#,
        x_title,
    );
    let n = lines.len();
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", px(a), py(b)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="{:.1}"{} points="{}"/>"#,
            l.color,
            // Earlier lines are wider, so that one hidden under a later one shows at its edges.
            2.0 + 3.0 * (n - 1 - i) as f64 / (n.max(2) - 1) as f64,
            dash(l.dash),
            pts.join(" ")
        );
        let marks = if l.every_point {
            &l.points[..]
        } else {
            &l.points[l.points.len().saturating_sub(1)..]
        };
        for &(a, b) in marks {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"/>"#,
                px(a),
                py(b),
                l.color
            );
        }
    }
    let ends: Vec<(f64, f64, &str, &str)> = lines
        .iter()
        .filter_map(|l| {
            let (a, b) = *l.points.last()?;
            Some((px(a), py(b), l.end_label.as_deref()?, l.color))
        })
        .collect();
    draw_end_labels(svg, &ends);
    svg.push_str("</g>\n");
    bottom + 50.0 - top
}

/// Labels above and left of line ends (the lines rise to the right, so that spot is clear of
/// their own line), in the line's colour, each moved up past any label already placed that it
/// would overlap.
fn draw_end_labels(svg: &mut String, ends: &[(f64, f64, &str, &str)]) {
    const H: f64 = 15.0;
    let mut order: Vec<usize> = (0..ends.len()).collect();
    // Lowest first, so that labels stack upwards, the way the lines run.
    order.sort_by(|&a, &b| ends[b].1.total_cmp(&ends[a].1));
    // Boxes placed so far: left, right, baseline.
    let mut placed: Vec<(f64, f64, f64)> = Vec::new();
    for i in order {
        let (x, y, s, color) = ends[i];
        let (right, w) = (x - 6.0, text_width(s, TICK_FONT));
        let mut base = y - 7.0;
        while let Some(&(_, _, b)) = placed
            .iter()
            .find(|&&(l, r, b)| l < right && right - w < r && (b - base).abs() < H)
        {
            base = b - H;
        }
        placed.push((right - w, right, base));
        text(
            svg,
            right,
            base,
            TICK_FONT,
            // A white halo keeps the label legible where it crosses a line.
            &format!(
                r#"class="end-label" text-anchor="end" fill="{color}" font-weight="bold" stroke="white" stroke-width="3" paint-order="stroke""#
            ),
            s,
        );
    }
}

/// The KV-cache panel: each entry from a short context to its trained one.
fn draw_kv_panel(svg: &mut String, top: f64, entries: &[Entry]) -> f64 {
    let per_tok: Vec<f64> = entries
        .iter()
        .map(|e| figures(&e.config).kv_bytes_per_token as f64)
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
    let x = Axis::pow2(x_lo, x_hi, 12, &|v| ctx_label(v as usize));
    let y = Axis::pow2(y_lo, y_hi, 9, &bytes_label);
    let lines: Vec<Line> = entries
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let (color, dash) = model_style(i);
            Line {
                color,
                dash,
                points: vec![(x.lo, per_tok[i] * x.lo), (ctx[i], per_tok[i] * ctx[i])],
                every_point: false,
                end_label: Some(size_label(per_tok[i] * ctx[i])),
            }
        })
        .collect();
    draw_lines(
        svg,
        top,
        [
            "kv-cache",
            "KV cache of one sequence (F16) against context length; a dot marks the trained context",
            "context length (tokens, log scale)",
            "KV cache (bytes, log scale)",
        ],
        &x,
        &y,
        &lines,
    )
}

/// The tokenizer panel: horizontal bars of tokens per 1,000 characters, one group per text and
/// one bar per model in it, the value at the bar's end; "n/a" where a model has no tokenizer.
fn draw_token_panel(svg: &mut String, top: f64, entries: &[Entry], counts: &[TextCount]) -> f64 {
    const ROW: f64 = 18.0;
    const BAR: f64 = 12.0;
    const GROUP_HEAD: f64 = 24.0;
    let names: Vec<String> = entries.iter().map(|e| short_name(&e.label)).collect();
    let label_w = names
        .iter()
        .map(|n| text_width(n, TICK_FONT))
        .fold(40.0, f64::max)
        .min(220.0);
    let left = (MARGIN + 12.0 + label_w + 8.0).max(PLOT_LEFT);
    let max_v = counts
        .iter()
        .flat_map(|c| c.tokens.iter().flatten().map(|n| per_1k(*n, c.chars)))
        .fold(0.0, f64::max);
    let x = Axis::linear(0.0, max_v.max(1.0), 1.0, &tick_label);
    let px = |v: f64| left + (PLOT_RIGHT - left) * x.frac(v);

    open_panel(
        svg,
        top,
        "tokens-per-char",
        "Tokens per 1,000 characters of each text: fewer means the vocabulary fits the text",
    );
    let area_top = top + 34.0;
    let area_h: f64 = counts
        .iter()
        .map(|_| GROUP_HEAD + ROW * entries.len() as f64 + 6.0)
        .sum();
    let bottom = area_top + area_h;
    for (v, l) in &x.ticks {
        let xx = px(*v);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{area_top:.1}" x2="{xx:.1}" y2="{bottom:.1}" stroke="#e4e4e4"/>"##
        );
        text(
            svg,
            xx,
            bottom + 18.0,
            TICK_FONT,
            r#"class="tick" text-anchor="middle""#,
            l,
        );
    }
    let _ = writeln!(
        svg,
        r#"<path d="M{left:.1} {area_top:.1}V{bottom:.1}H{PLOT_RIGHT}" fill="none" stroke="black"/>"#
    );
    let mut y = area_top;
    for c in counts {
        let text_name = short_name(&c.path.display().to_string());
        text(
            svg,
            MARGIN,
            y + 16.0,
            FONT,
            // Over the axis where the labels' column is narrower than the title: a white halo
            // keeps it legible.
            r#"class="group-title" font-weight="bold" stroke="white" stroke-width="4" paint-order="stroke""#,
            &format!("{text_name} ({} characters)", thousands(c.chars)),
        );
        y += GROUP_HEAD;
        for (i, (name, n)) in names.iter().zip(&c.tokens).enumerate() {
            let (color, _) = model_style(i);
            let mid = y + ROW / 2.0;
            let value = n.map(|n| per_1k(n, c.chars));
            let _ = writeln!(
                svg,
                r#"<g class="bar" data-model="{}" data-text="{}" data-value="{}">"#,
                xml_escape(&entries[i].label),
                xml_escape(&text_name),
                value.map_or("n/a".into(), |v| format!("{v:.1}")),
            );
            text(
                svg,
                left - 8.0,
                mid + 4.0,
                TICK_FONT,
                r#"class="bar-label" text-anchor="end""#,
                &fit_text(name, TICK_FONT, label_w),
            );
            match value {
                Some(v) => {
                    let end = px(v);
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{BAR}" fill="{color}"/>"#,
                        mid - BAR / 2.0,
                        end - left
                    );
                    let shown = format!("{v:.0}");
                    // The value after the bar, or inside it where the bar reaches the edge.
                    if end + 4.0 + text_width(&shown, TICK_FONT) <= PLOT_RIGHT {
                        text(
                            svg,
                            end + 4.0,
                            mid + 4.0,
                            TICK_FONT,
                            r#"class="value""#,
                            &shown,
                        );
                    } else {
                        text(
                            svg,
                            end - 4.0,
                            mid + 4.0,
                            TICK_FONT,
                            r#"class="value" text-anchor="end" fill="white""#,
                            &shown,
                        );
                    }
                }
                None => text(
                    svg,
                    left + 4.0,
                    mid + 4.0,
                    TICK_FONT,
                    r##"class="value" fill="#666" font-style="italic""##,
                    "n/a (no tokenizer, see the notes)",
                ),
            }
            svg.push_str("</g>\n");
            y += ROW;
        }
        y += 6.0;
    }
    text(
        svg,
        (left + PLOT_RIGHT) / 2.0,
        bottom + 40.0,
        FONT,
        r#"class="axis-title x-axis" text-anchor="middle""#,
        "tokens per 1,000 characters of the text (BOS not counted)",
    );
    svg.push_str("</g>\n");
    bottom + 50.0 - top
}

/// The perplexity panel: per-chunk perplexity of every run, coloured by model, patterned by text,
/// with its own legend. A range beyond a factor of ten gets a log axis.
fn draw_ppl_panel(
    svg: &mut String,
    top: f64,
    entries: &[Entry],
    counts: &[TextCount],
    runs: &[PplRun],
    n_ctx: usize,
) -> f64 {
    let all = runs.iter().flat_map(|r| r.chunk_ppl.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let y = if hi > 10.0 * lo {
        Axis::log10(lo, hi, &tick_label)
    } else {
        Axis::linear(lo, hi, 0.0, &tick_label)
    };
    let n_max = runs.iter().map(|r| r.chunk_ppl.len()).max().unwrap_or(1);
    let x = Axis::linear(1.0, n_max as f64, 1.0, &tick_label);
    let style = |r: &PplRun| {
        let m = entries.iter().position(|e| e.label == r.model).unwrap_or(0);
        let t = counts
            .iter()
            .position(|c| c.path.display().to_string() == r.text)
            .unwrap_or(0);
        (model_style(m).0, t)
    };
    let lines: Vec<Line> = runs
        .iter()
        .map(|r| Line {
            color: style(r).0,
            dash: style(r).1,
            points: (1..)
                .map(f64::from)
                .zip(r.chunk_ppl.iter().copied())
                .collect(),
            every_point: true,
            end_label: None,
        })
        .collect();
    let title = format!("Perplexity per chunk of {n_ctx} tokens (model files)");
    let x_title = format!("chunk (number; {n_ctx} tokens each)");
    let h = draw_lines(
        svg,
        top,
        [
            "perplexity",
            &title,
            &x_title,
            "perplexity per chunk (exp of mean loss in nats/token; lower is better)",
        ],
        &x,
        &y,
        &lines,
    );
    let legend: Vec<LegendEntry> = runs
        .iter()
        .map(|r| LegendEntry {
            key: format!("{} on {}", short_name(&r.model), short_name(&r.text)),
            label: format!(
                "{} on {}: {:.2} ± {:.2} over {} chunks",
                short_name(&r.model),
                short_name(&r.text),
                r.ppl,
                r.ppl_stderr,
                r.chunk_ppl.len()
            ),
            color: style(r).0,
            dash: style(r).1,
        })
        .collect();
    h + draw_legend(svg, top + h, None, &legend) + 10.0
}

/// The chart file: the models' legend, the KV-cache panel, the tokenizer panel when there are
/// texts, and the perplexity panel when model files were run on them.
fn render_svg(entries: &[Entry], counts: &[TextCount], runs: &[PplRun], n_ctx: usize) -> String {
    let legend: Vec<LegendEntry> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (color, dash) = model_style(i);
            LegendEntry {
                key: e.label.clone(),
                label: format!(
                    "{}: {}, KV {}/token, context {}",
                    short_name(&e.label),
                    attention_kind(&e.config),
                    kib(figures(&e.config).kv_bytes_per_token),
                    ctx_label(e.config.n_ctx_train)
                ),
                color,
                dash,
            }
        })
        .collect();
    let mut body = String::new();
    let mut y = MARGIN;
    y += draw_legend(
        &mut body,
        y,
        Some("Models (one colour each in every panel)"),
        &legend,
    ) + 6.0;
    y += draw_kv_panel(&mut body, y, entries);
    if !counts.is_empty() {
        y += draw_token_panel(&mut body, y, entries, counts);
    }
    if !runs.is_empty() {
        y += draw_ppl_panel(&mut body, y, entries, counts, runs, n_ctx);
    }
    let height = (y + MARGIN).ceil();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Verdana, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

/// 173942 as "173,942".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The last path component, for legends.
fn short_name(s: &str) -> String {
    Path::new(s)
        .file_name()
        .map_or_else(|| s.to_string(), |n| n.to_string_lossy().into_owned())
}
