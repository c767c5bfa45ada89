//! Models side by side, for `camelid models` and `camelid compare`: shapes and their costs
//! ([`camelid_model::Figures`]), tokenizer efficiency on given texts (tokens per 1,000
//! characters), perplexity of model files on those texts, as tables, JSON and an SVG chart.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use camelid_model::config::Preset;
use camelid_model::tokenizer_load::{checkpoint_tokenizer, load_tokenizer};
use camelid_model::weights::Checkpoint;
use camelid_model::{Config, Model};
use camelid_plot::{
    Axis, Bar, BarGroup, BarPanel, Dash, Figure, Legend, LegendEntry, LinePanel, Marks, Series,
    Style, format,
};
use camelid_tokenizer::Tokenizer;
use serde_json::{Value, json};

use crate::eval::{Chunks, EvalError, chunk_bos, perplexity};

/// A preset or a model file, with what the tables need.
#[derive(Clone, Debug)]
pub struct Entry {
    /// What the user typed: a preset id or a path.
    pub label: String,
    pub name: String,
    pub config: Config,
    /// The published count of training tokens ("2.0T"); None for a model file.
    pub training_tokens: Option<String>,
    /// The model file; None for a preset.
    pub file: Option<std::path::PathBuf>,
}

impl Entry {
    pub fn preset(p: &Preset) -> Entry {
        Entry {
            label: p.id.to_string(),
            name: p.name.to_string(),
            config: p.config.clone(),
            training_tokens: Some(p.training_tokens.to_string()),
            file: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let (c, f) = (&self.config, self.config.figures());
        json!({
            "id": self.label,
            "name": self.name,
            "file": self.file.as_ref().map(|p| p.display().to_string()),
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
            "training_tokens": self.training_tokens,
        })
    }
}

/// What the figures in the tables mean.
pub const FOOTNOTES: &str = "\
KV/token: 2 (K, V) x layers x kv_heads x head_dim x 2 bytes.  Q8_0: 8.5 bits/weight.
Q4_K_M~: an estimate at 4.89 bits/weight (llama.cpp's Q4_K/Q6_K mix measured on Llama 3.1 8B).
GFLOP/token: 2 x N_mm (matmul parameters: projections and output, not the embedding lookup);
full ctx adds 4 x layers x t x n_heads x head_dim for QK^T and A.V at position t = context.";

/// Bytes in GiB to three significant digits.
fn gib(bytes: f64) -> String {
    format!("{} GiB", format::sig3(bytes / (1u64 << 30) as f64))
}

/// Bytes in KiB, whole or to a tenth.
fn kib(bytes: u64) -> String {
    let k = bytes as f64 / 1024.0;
    if k.fract() == 0.0 {
        format!("{k:.0} KiB")
    } else {
        format!("{k:.1} KiB")
    }
}

fn gflop(flops: f64) -> String {
    format!("{:.1}", flops / 1e9)
}

/// `camelid models`' table: a row per entry.
pub fn models_table(entries: &[Entry]) -> (Vec<String>, Vec<Vec<String>>) {
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
    let rows = entries
        .iter()
        .map(|e| {
            let f = e.config.figures();
            vec![
                e.label.clone(),
                format::count(f.params as f64),
                format::count_k(e.config.n_ctx_train as f64),
                e.config.n_vocab.to_string(),
                f.attention.clone(),
                kib(f.kv_bytes_per_token),
                gib(f.weights_f16),
                gib(f.weights_q8_0),
                gib(f.weights_q4_k_m),
                gflop(f.flops_short),
                gflop(f.flops_full_ctx),
                e.training_tokens.clone().unwrap_or_default(),
            ]
        })
        .collect();
    (header.map(String::from).to_vec(), rows)
}

/// `camelid compare`'s table: a row per property, a column per entry.
pub fn property_rows(entries: &[Entry]) -> Vec<Vec<String>> {
    let figs: Vec<_> = entries.iter().map(|e| e.config.figures()).collect();
    let row = |name: &str, f: &dyn Fn(&Entry, &camelid_model::Figures) -> String| {
        std::iter::once(name.to_string())
            .chain(entries.iter().zip(&figs).map(|(e, g)| f(e, g)))
            .collect()
    };
    vec![
        row("name", &|e, _| e.name.clone()),
        row("parameters", &|_, g| format::count(g.params as f64)),
        row("layers x d_model", &|e, _| {
            format!("{} x {}", e.config.n_layers, e.config.d_model)
        }),
        row("context", &|e, _| {
            format::count_k(e.config.n_ctx_train as f64)
        }),
        row("vocabulary", &|e, _| e.config.n_vocab.to_string()),
        row("attention", &|e, g| {
            format!(
                "{} ({}/{})",
                g.attention, e.config.n_heads, e.config.n_kv_heads
            )
        }),
        row("KV/token F16", &|_, g| kib(g.kv_bytes_per_token)),
        row("KV at full ctx", &|e, g| {
            gib((g.kv_bytes_per_token * e.config.n_ctx_train as u64) as f64)
        }),
        row("weights F16", &|_, g| gib(g.weights_f16)),
        row("weights Q8_0", &|_, g| gib(g.weights_q8_0)),
        row("weights Q4_K_M~", &|_, g| gib(g.weights_q4_k_m)),
        row("GFLOP/token", &|_, g| gflop(g.flops_short)),
        row("GFLOP/tok full ctx", &|_, g| gflop(g.flops_full_ctx)),
        row("trained on", &|e, _| {
            // A no-break space keeps "1.0 T" one cell for readers that split on spaces.
            e.training_tokens
                .as_deref()
                .unwrap_or("-")
                .replace(' ', "\u{a0}")
        }),
    ]
}

/// A text table: the first column left-aligned, the others right-aligned, two spaces apart,
/// widths in characters; a line per row, trailing spaces trimmed.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .chain([&header[i]])
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    for cells in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, (c, w)) in cells.iter().zip(&w).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if i == 0 {
                line.push_str(c);
                line.push_str(&pad);
            } else {
                line.push_str("  ");
                line.push_str(&pad);
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Token counts of one text.
#[derive(Clone, Debug)]
pub struct TextCount {
    /// The text's name (its path as given).
    pub name: String,
    pub chars: usize,
    /// Tokens without BOS, one per entry; None for an entry without a tokenizer.
    pub tokens: Vec<Option<usize>>,
}

impl TextCount {
    /// Tokens per 1,000 characters, one per entry.
    pub fn per_1k(&self) -> Vec<Option<f64>> {
        let per = |n: usize| 1000.0 * n as f64 / self.chars.max(1) as f64;
        self.tokens.iter().map(|n| n.map(per)).collect()
    }
}

/// Perplexity of one model file on one text, per chunk and in all.
#[derive(Clone, Debug)]
pub struct PplRun {
    pub model: String,
    pub text: String,
    /// Where it ran (`cpu`, `cuda:0`, ...).
    pub device: String,
    pub chunk_ppl: Vec<f64>,
    pub ppl: f64,
    pub ppl_stderr: f64,
}

/// Everything `camelid compare` reports.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    pub entries: Vec<Entry>,
    /// Per entry: why it has no tokenizer, where it has none.
    pub tokenizer_errors: Vec<Option<String>>,
    pub counts: Vec<TextCount>,
    pub runs: Vec<PplRun>,
    /// Context of the perplexity runs.
    pub n_ctx: usize,
    /// What could not be done, for the reader (a missing tokenizer, a text too short).
    pub notes: Vec<String>,
}

/// How [`compare`] runs perplexity: the context, the chunks at most, how a model file is
/// loaded, and where to report a run as it starts.
pub struct PplOptions<'a, E> {
    pub n_ctx: usize,
    pub max_chunks: Option<usize>,
    pub load: &'a mut dyn FnMut(&Path) -> Result<Model, E>,
    pub started: &'a mut dyn FnMut(&str),
}

/// The tokenizer of every entry, or why it has none (as text, its causes after colons): a
/// model file's own; a preset's vocabulary file from `fetch_vocabularies(preset ids)`, which
/// gives one path or error per id, each distinct file loaded once. One that cannot be had
/// fails its entry's figures, not the comparison.
pub fn entry_tokenizers(
    entries: &[Entry],
    fetch_vocabularies: impl FnOnce(&[&str]) -> Vec<Result<PathBuf, String>>,
) -> Vec<Result<Rc<Tokenizer>, String>> {
    let presets: Vec<&str> = entries
        .iter()
        .filter(|e| e.file.is_none())
        .map(|e| e.label.as_str())
        .collect();
    let mut vocabs = if presets.is_empty() {
        Vec::new()
    } else {
        fetch_vocabularies(&presets)
    }
    .into_iter();
    let mut loaded: Vec<(PathBuf, Rc<Tokenizer>)> = Vec::new();
    let mut load = |path: PathBuf| {
        if let Some((_, t)) = loaded.iter().find(|(p, _)| *p == path) {
            return Ok(Rc::clone(t));
        }
        let t = load_tokenizer(&path).map(Rc::new).map_err(|e| {
            format!(
                "cannot load a tokenizer from {}: {}",
                path.display(),
                with_causes(&e)
            )
        })?;
        loaded.push((path, Rc::clone(&t)));
        Ok(t)
    };
    entries
        .iter()
        .map(|e| match &e.file {
            None => vocabs
                .next()
                .unwrap_or_else(|| Err("no vocabulary".into()))
                .and_then(&mut load),
            Some(p) => Checkpoint::open(p)
                .map_err(|e| with_causes(&e))
                .and_then(|c| checkpoint_tokenizer(&c).map_err(|e| with_causes(&e)))
                .map(Rc::new),
        })
        .map(|t| t.map_err(|why| format!("no tokenizer: {why}")))
        .collect()
}

/// An error and its causes, joined by colons (as anyhow's `{:#}` prints a chain).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s = format!("{s}: {c}");
        cause = c.source();
    }
    s
}

/// Compares `entries` on `texts` (name, content): each entry's tokenizer (or why it has none)
/// counts the tokens of every text, and each model file gets its perplexity on every text that
/// holds two chunks (the model is loaded only if one does).
pub fn compare<E: From<EvalError>>(
    entries: Vec<Entry>,
    texts: &[(String, String)],
    tokenizers: &[Result<&Tokenizer, String>],
    mut ppl: PplOptions<'_, E>,
) -> Result<Comparison, E> {
    let mut c = Comparison {
        tokenizer_errors: vec![None; entries.len()],
        counts: texts
            .iter()
            .map(|(name, t)| TextCount {
                name: name.clone(),
                chars: t.chars().count(),
                tokens: Vec::new(),
            })
            .collect(),
        n_ctx: ppl.n_ctx,
        ..Comparison::default()
    };
    for (i, (e, tok)) in entries.iter().zip(tokenizers).enumerate() {
        let tok = match tok {
            Ok(t) => *t,
            Err(why) => {
                c.notes.push(format!("{}: {why}", e.label));
                c.tokenizer_errors[i] = Some(why.clone());
                c.counts.iter_mut().for_each(|n| n.tokens.push(None));
                continue;
            }
        };
        for (n, (_, t)) in c.counts.iter_mut().zip(texts) {
            n.tokens.push(Some(tok.encode(t, false, false).len()));
        }
        if let Some(path) = &e.file {
            let runs = model_perplexities(&e.label, path, tok, texts, &mut c.notes, &mut ppl)?;
            c.runs.extend(runs);
        }
    }
    c.entries = entries;
    Ok(c)
}

fn model_perplexities<E: From<EvalError>>(
    label: &str,
    path: &Path,
    tok: &Tokenizer,
    texts: &[(String, String)],
    notes: &mut Vec<String>,
    ppl: &mut PplOptions<'_, E>,
) -> Result<Vec<PplRun>, E> {
    let n_ctx = ppl.n_ctx;
    // Tokenize first: the model is loaded only if some text holds two chunks.
    let mut jobs = Vec::new();
    for (name, t) in texts {
        let tokens = tok.encode(t, tok.add_bos_default(), false);
        match Chunks::new(tokens.len(), n_ctx, ppl.max_chunks) {
            Ok(c) => jobs.push((name, tokens, c)),
            Err(err) => notes.push(format!("no perplexity of {label} on {name}: {err}")),
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let model = (ppl.load)(path)?;
    let bos = chunk_bos(tok);
    let mut runs = Vec::new();
    for (name, tokens, chunks) in jobs {
        (ppl.started)(&format!(
            "perplexity of {label} on {name}: {} chunks of {n_ctx}",
            chunks.n_chunks
        ));
        let mut chunk_ppl = Vec::new();
        let total = perplexity(&model, &tokens, chunks, bos, |_, m, _| {
            chunk_ppl.push(m.ppl())
        })?;
        runs.push(PplRun {
            model: label.to_string(),
            text: name.clone(),
            device: model.device().device,
            chunk_ppl,
            ppl: total.ppl(),
            ppl_stderr: total.ppl_stderr(),
        });
    }
    Ok(runs)
}

impl Comparison {
    pub fn to_json(&self) -> Value {
        let models = self
            .entries
            .iter()
            .zip(&self.tokenizer_errors)
            .map(|(e, err)| {
                let mut v = e.to_json();
                if let Some(why) = err {
                    v["tokenizer_error"] = json!(why);
                }
                v
            });
        let by_entry = |vals: Vec<Value>| -> serde_json::Map<String, Value> {
            self.entries
                .iter()
                .map(|e| e.label.clone())
                .zip(vals)
                .collect()
        };
        let texts = self.counts.iter().map(|c| {
            json!({
                "file": c.name,
                "chars": c.chars,
                "tokens": by_entry(c.tokens.iter().map(|n| json!(n)).collect()),
                "tokens_per_1k_chars": by_entry(c.per_1k().into_iter().map(|n| json!(n)).collect()),
            })
        });
        let runs = self.runs.iter().map(|r| {
            json!({
                "model": r.model, "text": r.text, "device": r.device, "n_ctx": self.n_ctx,
                "chunk_ppl": r.chunk_ppl, "ppl": r.ppl, "ppl_stderr": r.ppl_stderr,
            })
        });
        json!({
            "models": models.collect::<Vec<_>>(),
            "texts": texts.collect::<Vec<_>>(),
            "perplexity": runs.collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// The tables, the perplexity runs, the notes and the footnotes, as printed.
    pub fn to_text(&self) -> String {
        let mut header = vec![String::new()];
        header.extend(self.entries.iter().map(|e| e.label.clone()));
        let mut out = table(&header, &property_rows(&self.entries));
        for c in &self.counts {
            out += &format!(
                "\n{} ({} characters): tokens, and tokens per 1,000 characters\n",
                c.name, c.chars
            );
            // An entry without a tokenizer shows why in the notes below the tables.
            let cells = |label: &str, v: Vec<Option<String>>| -> Vec<String> {
                std::iter::once(label.to_string())
                    .chain(v.into_iter().map(|s| s.unwrap_or_else(|| "-".into())))
                    .collect()
            };
            let rows = [
                cells(
                    "tokens",
                    c.tokens.iter().map(|n| n.map(|n| n.to_string())).collect(),
                ),
                cells(
                    "per 1k chars",
                    c.per_1k()
                        .iter()
                        .map(|v| v.map(|v| format!("{v:.0}")))
                        .collect(),
                ),
            ];
            out += &table(&header, &rows);
        }
        if !self.runs.is_empty() {
            out += &format!("\nperplexity at context {}:\n", self.n_ctx);
            for r in &self.runs {
                out += &format!(
                    "  {} on {}: {:.4} +/- {:.5} ({} chunks, {})\n",
                    r.model,
                    r.text,
                    r.ppl,
                    r.ppl_stderr,
                    r.chunk_ppl.len(),
                    r.device
                );
            }
        }
        for n in &self.notes {
            out += &format!("note: {n}\n");
        }
        out + "\n" + FOOTNOTES + "\n"
    }

    /// The chart (see [`chart`]).
    pub fn to_svg(&self) -> String {
        chart(&self.entries, &self.counts, &self.runs, self.n_ctx)
    }
}

// ---------------------------------------------------------------------------------------------
// The chart
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
        let text_name = short_name(&c.name);
        let bars = entries
            .iter()
            .zip(c.per_1k())
            .enumerate()
            .map(|(i, (e, value))| Bar {
                label: short_name(&e.label),
                color: Style::nth(i).color,
                value,
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

/// The perplexity panel: per-chunk perplexity of every run, coloured by model, patterned by
/// text, with its own legend. A range beyond a factor of ten gets a log axis.
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
        let t = counts.iter().position(|c| c.name == r.text).unwrap_or(0);
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

/// The chart: the models' legend, the KV-cache panel, the tokenizer panel when there are texts,
/// and the perplexity panel when model files were run on them.
pub fn chart(entries: &[Entry], counts: &[TextCount], runs: &[PplRun], n_ctx: usize) -> String {
    let mut legend = Legend::new(Some("Models (one colour each in every panel)"));
    for (i, e) in entries.iter().enumerate() {
        let label = format!(
            "{}: {}, KV {}/token, context {}",
            short_name(&e.label),
            e.config.attention_kind(),
            kib(e.config.kv_bytes_per_token(2)),
            format::count_k(e.config.n_ctx_train as f64)
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
