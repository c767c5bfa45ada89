//! `camelid perplexity` (with `--save-logits` / `--kl-base` for quantization quality) and
//! `camelid score` (multiple-choice tasks); the math lives in `camelid_engine::eval`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use camelid_engine::eval::{
    self, Chunks, EvalError, KlSummary, LogitsHeader, chunk_bos, score_task,
};
use camelid_engine::eval_io::{
    LogitsWriter, PerplexityReport, ScoreReport, first_difference, kl_run, parse_tasks,
};
use indicatif::ProgressBar;
use serde_json::json;

use crate::load::{AdapterArgs, ComputeArgs, Loaded, MODEL_HELP};
use crate::run::read_text;

/// Model options of the evaluation commands; `--ctx` defaults to 512 as in llama-perplexity.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalModelArgs {
    #[arg(short, long, help = MODEL_HELP)]
    pub model: Option<String>,
    /// Tokens per chunk (default: 512; with --kl-base, the base run's).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[command(flatten)]
    pub adapters: AdapterArgs,
}

impl EvalModelArgs {
    fn load(&self, ctx: Option<usize>) -> Result<Loaded> {
        self.compute.load(self.model.clone(), ctx, &self.adapters)
    }
}

#[derive(clap::Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: EvalModelArgs,
    /// The text ("-" for stdin). Optional with --kl-base, whose file holds the tokens.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Evaluate at most this many chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Store this run's log-probabilities as the reference for a later --kl-base run
    /// (f16 log-softmax of every scored position: 2 bytes × vocabulary per token).
    #[arg(long, conflicts_with = "kl_base")]
    pub save_logits: Option<PathBuf>,
    /// Compare with a reference run saved by --save-logits: KL divergence, top-1 agreement and
    /// the perplexity ratio, on the reference's tokens and chunks.
    #[arg(long)]
    pub kl_base: Option<PathBuf>,
}

pub fn run_perplexity(a: &PerplexityArgs) -> Result<()> {
    if a.chunks == Some(0) {
        bail!("--chunks must be at least 1");
    }
    match &a.kl_base {
        Some(base) => run_kl(a, base),
        None => run_ppl(a),
    }
}

/// Reads a text for evaluation; an empty one is an error.
pub fn read_nonempty(path: &Path) -> Result<String> {
    let text = read_text(path)?;
    if text.is_empty() {
        bail!("{}: the file is empty", path.display());
    }
    Ok(text)
}

/// A progress bar over a run's items that prints each item's table line above it, under a
/// header; nothing with --json.
struct Lines {
    pb: ProgressBar,
    json: bool,
}

impl Lines {
    fn new(len: usize, what: &str, header: Option<&str>, json: bool) -> Lines {
        let pb = crate::progress_bar(
            len as u64,
            "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        );
        pb.set_message(what.to_string());
        if let Some(h) = header.filter(|_| !json) {
            pb.suspend(|| println!("{h}"));
        }
        Lines { pb, json }
    }

    fn line(&self, line: &str) {
        if !self.json {
            self.pb.suspend(|| println!("{line}"));
        }
        self.pb.inc(1);
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
    }
}

fn run_ppl(a: &PerplexityArgs) -> Result<()> {
    let Some(path) = &a.file else {
        bail!("perplexity needs a text: -f FILE (or --kl-base FILE)");
    };
    let text = read_nonempty(path)?;
    let Loaded {
        model, tokenizer, ..
    } = a.model.load(Some(a.model.ctx.unwrap_or(512)))?;
    let n_ctx = a.model.ctx.unwrap_or(512);
    let tokens = tokenizer.encode(&text, tokenizer.add_bos_default(), false);
    let chunks = Chunks::new(tokens.len(), n_ctx, a.chunks)
        .with_context(|| format!("{}", path.display()))?;
    let bos = chunk_bos(&tokenizer);
    let mut report = PerplexityReport::new(path.display().to_string(), tokens.len(), chunks, bos);
    if !a.json {
        eprintln!("{}", report.intro());
    }

    let header = LogitsHeader::new(model.config.n_vocab, chunks, &tokens);
    let writing = |p: &Path| format!("writing {}", p.display());
    let mut saver = match &a.save_logits {
        Some(p) => {
            let f = File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let out = BufWriter::with_capacity(1 << 20, f);
            Some(LogitsWriter::new(out, &header).with_context(|| writing(p))?)
        }
        None => None,
    };
    let lines = Lines::new(
        chunks.n_chunks,
        "perplexity",
        Some(PerplexityReport::CHUNK_HEADER),
        a.json,
    );
    let ran = report.run(&model, &tokens, saver.as_mut(), |l| lines.line(&l));
    drop(lines);
    match (ran, &a.save_logits) {
        (Err(EvalError::Io(e)), Some(p)) => return Err(e).with_context(|| writing(p)),
        (ran, _) => ran?,
    }
    if let (Some(s), Some(p)) = (saver, &a.save_logits) {
        s.finish().with_context(|| writing(p))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        println!("{}", report.summary());
        if let Some(p) = &a.save_logits {
            eprintln!("log-probabilities saved to {}", p.display());
        }
    }
    Ok(())
}

fn run_kl(a: &PerplexityArgs, base: &Path) -> Result<()> {
    let ctx_err = || format!("{}", base.display());
    let f = File::open(base).with_context(|| format!("opening {}", base.display()))?;
    let file_len = f.metadata().with_context(ctx_err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let header = LogitsHeader::read(&mut r, file_len).with_context(ctx_err)?;
    let n_ctx = header.n_ctx as usize;
    if let Some(c) = a.model.ctx.filter(|&c| c != n_ctx) {
        bail!(
            "--ctx {c} differs from the context of the base run in {} ({n_ctx}); leave --ctx out",
            base.display()
        );
    }
    let Loaded {
        model, tokenizer, ..
    } = a.model.load(Some(n_ctx))?;
    header
        .check_vocab(model.config.n_vocab)
        .with_context(ctx_err)?;
    if let Some(path) = &a.file {
        // The reference's tokens are the ones evaluated; a text, if given, must agree.
        let text = read_nonempty(path)?;
        let tokens = tokenizer.encode(&text, tokenizer.add_bos_default(), false);
        if let Some(k) = first_difference(&header, &tokens) {
            bail!(
                "{} tokenizes differently from the base run in {} (first difference at token {k})",
                path.display(),
                base.display()
            );
        }
    }
    let chunks = header.chunks_at_most(a.chunks);
    let bos = chunk_bos(&tokenizer);
    if !a.json {
        eprintln!(
            "KL divergence against {}: {} chunks of {n_ctx} ({} scored per chunk)",
            base.display(),
            chunks.n_chunks,
            chunks.scored_per_chunk()
        );
    }
    let lines = Lines::new(
        chunks.n_chunks,
        "KL divergence",
        Some(KlSummary::CHUNK_HEADER),
        a.json,
    );
    let mut per_chunk = Vec::new();
    let stats = kl_run(&model, &header, chunks, bos, &mut r, |i, s| {
        per_chunk.push(s.chunk_json(i));
        lines.line(&s.chunk_line(i));
    })
    .with_context(|| format!("KL divergence against {}", base.display()))?;
    drop(lines);
    let s = stats.summary();
    if a.json {
        let mut v = s.to_json();
        v["base"] = json!(base.display().to_string());
        v["n_ctx"] = json!(n_ctx);
        v["n_chunks"] = json!(chunks.n_chunks);
        v["chunks"] = json!(per_chunk);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{s}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// score

#[derive(clap::Args)]
pub struct ScoreArgs {
    #[arg(short, long, help = MODEL_HELP)]
    pub model: Option<String>,
    /// Tasks, one JSON object per line: {"context": "...", "endings": ["...", ...], "label": N}
    /// (label: the index of the right ending, from 0).
    #[arg(short, long)]
    pub file: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[command(flatten)]
    pub adapters: AdapterArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run_score(a: &ScoreArgs) -> Result<()> {
    let text = read_nonempty(&a.file)?;
    // Errors as `FILE:LINE: what`, the way compilers point at a line.
    let tasks = parse_tasks(&text).map_err(|e| match e {
        eval::EvalError::TaskLine { line, msg } if line > 0 => {
            anyhow::anyhow!("{}:{line}: {msg}", a.file.display())
        }
        e => anyhow::Error::new(e).context(a.file.display().to_string()),
    })?;
    let Loaded {
        model,
        tokenizer,
        n_ctx,
        ..
    } = a.compute.load(a.model.clone(), None, &a.adapters)?;
    let mut state = model.new_state(n_ctx)?;
    let lines = Lines::new(tasks.len(), "score", None, a.json);
    let mut report = ScoreReport::new(a.file.display().to_string());
    for (i, task) in tasks.iter().enumerate() {
        let s = score_task(&model, &mut state, &tokenizer, task, i + 1)
            .with_context(|| a.file.display().to_string())?;
        lines.line(&report.add(&s, task.label));
    }
    drop(lines);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}
