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
    /// Write an SVG chart: KV-cache memory against context length, and per-chunk perplexity
    /// of the model files on the texts.
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
        let svg = render_svg(&entries, &ppl_runs, a.ctx);
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
// SVG

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const WIDTH: f64 = 880.0;
/// Height of a plot area; a chart adds its title, axis labels and legend rows.
const PLOT_H: f64 = 300.0;
const LEGEND_ROW: f64 = 20.0;

/// Height of a chart with `n` series: title 40, plot, tick and axis labels 50, legend rows in
/// two columns, margin.
fn chart_height(n: usize) -> f64 {
    40.0 + PLOT_H + 50.0 + LEGEND_ROW * n.div_ceil(2) as f64 + 20.0
}

/// Every other series is dashed, so that lines with the same slope stay visible.
fn dash(i: usize) -> &'static str {
    if i % 2 == 1 {
        r#" stroke-dasharray="9 5""#
    } else {
        ""
    }
}

struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    /// Mark the points (per-chunk data) rather than only the line.
    markers: bool,
}

struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_fmt: &'a dyn Fn(f64) -> String,
    series: Vec<Series>,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About five round tick values (1, 2 or 5 times a power of ten) from 0 to at least `max`.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Ticks for context lengths: powers of two times 1k when they fit.
fn ctx_ticks(max: f64) -> Vec<f64> {
    let t = ticks(max);
    if max < 4096.0 {
        return t;
    }
    let step = (1u64 << ((max / 5.0).log2().ceil() as u32)) as f64;
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
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

fn draw_chart(svg: &mut String, top: f64, c: &Chart<'_>, x_ctx: bool) {
    let (left, right, plot_top, plot_h) = (80.0, WIDTH - 30.0, top + 40.0, PLOT_H);
    let plot_w = right - left;
    let max_x = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let max_y = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let xt = if x_ctx {
        ctx_ticks(max_x)
    } else {
        ticks(max_x)
    };
    let yt = ticks(max_y * 1.05);
    let (xm, ym) = (*xt.last().unwrap(), *yt.last().unwrap());
    let px = |x: f64| left + plot_w * x / xm;
    let py = |y: f64| plot_top + plot_h - plot_h * y / ym;

    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="17" font-weight="bold" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        top + 24.0,
        xml_escape(c.title)
    );
    // Grid and tick labels.
    for &v in &yt {
        let y = py(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 4.0,
            tick_label(v)
        );
    }
    for &v in &xt {
        let x = px(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{plot_top}" x2="{x:.1}" y2="{}" stroke="#f0f0f0"/><text x="{x:.1}" y="{}" font-size="12" text-anchor="middle">{}</text>"##,
            plot_top + plot_h,
            plot_top + plot_h + 18.0,
            xml_escape(&(c.x_fmt)(v))
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        svg,
        r#"<line x1="{left}" y1="{0}" x2="{right}" y2="{0}" stroke="black"/><line x1="{left}" y1="{plot_top}" x2="{left}" y2="{0}" stroke="black"/>"#,
        plot_top + plot_h
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        plot_top + plot_h + 42.0,
        xml_escape(c.x_label)
    );
    let (yx, yy) = (22.0, plot_top + plot_h / 2.0);
    let _ = writeln!(
        svg,
        r#"<text x="{yx}" y="{yy}" font-size="14" text-anchor="middle" transform="rotate(-90 {yx} {yy})">{}</text>"#,
        xml_escape(c.y_label)
    );
    // Lines.
    let n = c.series.len();
    for (i, s) in c.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="{:.1}"{} points="{}"/>"#,
            // Earlier lines are wider, so that one hidden under a later one shows at its edges.
            2.0 + 3.0 * (n - 1 - i) as f64 / (n.max(2) - 1) as f64,
            dash(i),
            pts.join(" ")
        );
        let marks: Vec<(f64, f64)> = if s.markers {
            s.points.clone()
        } else {
            s.points.last().copied().into_iter().collect()
        };
        for (x, y) in marks {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                px(x),
                py(y)
            );
        }
    }
    // Legend below the axis label, two columns.
    let ly = plot_top + plot_h + 62.0;
    let col_w = (right - left) / 2.0;
    for (i, s) in c.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let x = left + col_w * (i % 2) as f64;
        let y = ly + LEGEND_ROW * (i / 2) as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="3"{}/><text x="{}" y="{y}" font-size="13">{}</text>"#,
            y - 4.0,
            x + 26.0,
            y - 4.0,
            dash(i),
            x + 32.0,
            xml_escape(&s.label)
        );
    }
}

/// The chart file: KV cache against context for every entry; per-chunk perplexity of model
/// files when there are runs.
fn render_svg(entries: &[Entry], runs: &[PplRun], n_ctx: usize) -> String {
    let kv = Chart {
        title: "KV cache per sequence (F16) against context length",
        x_label: "context length (tokens)",
        y_label: "KV cache (GiB)",
        x_fmt: &|v| ctx_label(v as usize),
        series: entries
            .iter()
            .map(|e| {
                let per_tok = figures(&e.config).kv_bytes_per_token as f64 / (1u64 << 30) as f64;
                let n = e.config.n_ctx_train as f64;
                Series {
                    label: format!(
                        "{} ({}, {}/token)",
                        short_name(&e.label),
                        attention_kind(&e.config),
                        kib(figures(&e.config).kv_bytes_per_token)
                    ),
                    points: vec![(0.0, 0.0), (n, n * per_tok)],
                    markers: false,
                }
            })
            .collect(),
    };
    let ppl_title = format!("Perplexity per chunk of {n_ctx} tokens");
    let ppl = Chart {
        title: &ppl_title,
        x_label: "chunk",
        y_label: "perplexity (chunk)",
        x_fmt: &|v| format!("{v:.0}"),
        series: runs
            .iter()
            .map(|r| Series {
                label: format!("{} on {}", short_name(&r.model), short_name(&r.text)),
                points: r
                    .chunk_ppl
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| ((i + 1) as f64, p))
                    .collect(),
                markers: true,
            })
            .collect(),
    };
    let kv_h = chart_height(kv.series.len());
    let height = kv_h
        + if runs.is_empty() {
            0.0
        } else {
            chart_height(ppl.series.len())
        };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    draw_chart(&mut svg, 0.0, &kv, true);
    if !runs.is_empty() {
        draw_chart(&mut svg, kv_h, &ppl, false);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The last path component, for legends.
fn short_name(s: &str) -> String {
    Path::new(s)
        .file_name()
        .map_or_else(|| s.to_string(), |n| n.to_string_lossy().into_owned())
}
