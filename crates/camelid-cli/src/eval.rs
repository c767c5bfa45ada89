//! `camelid perplexity` (with `--save-logits` / `--kl-base` for quantization quality) and
//! `camelid score` (multiple-choice tasks); the math lives in `camelid_engine::eval`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use camelid_engine::eval::{
    self, Chunks, KlStats, KlSummary, LogitsHeader, Moments, Task, eval_chunk, kl_row,
    log_softmax_into, read_logp_row, score_task, wilson_interval, write_logp_row,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::load::{Device, LoadArgs, Loaded, MODEL_HELP, PrecisionArgs, load};
use crate::run::read_text;

/// Model options of the evaluation commands; `--ctx` defaults to 512 as in llama-perplexity.
#[derive(clap::Args, Clone, Debug)]
pub struct EvalModelArgs {
    #[arg(short, long, help = MODEL_HELP)]
    pub model: Option<String>,
    /// Tokens per chunk (default: 512; with --kl-base, the base run's).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    #[arg(short, long, help = crate::load::THREADS_HELP, value_parser = crate::load::parse_threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

impl EvalModelArgs {
    fn load(&self, ctx: Option<usize>) -> Result<Loaded> {
        load(&LoadArgs {
            model: self.model.clone(),
            ctx,
            threads: self.threads,
            precision: self.precision.get(),
            device: self.device,
        })
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
fn read_nonempty(path: &Path) -> Result<String> {
    let text = read_text(path)?;
    if text.is_empty() {
        bail!("{}: the file is empty", path.display());
    }
    Ok(text)
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// The BOS a chunk starts with: llama.cpp puts it in only when the vocabulary adds BOS.
fn chunk_bos(tok: &camelid_tokenizer::Tokenizer) -> Option<u32> {
    if tok.add_bos_default() {
        tok.bos()
    } else {
        None
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
    if !a.json {
        eprintln!(
            "perplexity: {} tokens, {} chunks of {n_ctx} ({} scored per chunk), BOS {}",
            tokens.len(),
            chunks.n_chunks,
            chunks.scored_per_chunk(),
            if bos.is_some() {
                "at each chunk"
            } else {
                "off"
            }
        );
    }

    let mut saver = match &a.save_logits {
        Some(p) => Some(LogitsSaver::create(
            p,
            &LogitsHeader::new(model.config.n_vocab, chunks, &tokens),
        )?),
        None => None,
    };
    let mut state = model.new_state(n_ctx)?;
    let mut total = Moments::default();
    let mut rows = Vec::new();
    let pb = progress(chunks.n_chunks, "perplexity");
    if !a.json {
        pb.suspend(|| println!("{:>6}  {:>12}  {:>12}", "chunk", "PPL(chunk)", "PPL"));
    }
    for i in 0..chunks.n_chunks {
        let m = eval_chunk(&model, &mut state, chunks.chunk(&tokens, i), bos, |row| {
            if let Some(s) = &mut saver {
                s.push(row.logits);
            }
        })?;
        if let Some(s) = &mut saver {
            s.check()?;
        }
        total.add(&m);
        rows.push(json!({"chunk": i + 1, "ppl": m.ppl(), "running_ppl": total.ppl()}));
        if !a.json {
            pb.suspend(|| println!("{:>6}  {:>12.4}  {:>12.4}", i + 1, m.ppl(), total.ppl()));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if let Some(s) = saver {
        s.finish()?;
    }
    if a.json {
        let out = json!({
            "file": path.display().to_string(),
            "n_tokens": tokens.len(),
            "n_ctx": n_ctx,
            "n_chunks": chunks.n_chunks,
            "scored_tokens": total.count,
            "bos": bos,
            "chunks": rows,
            "nll_mean": total.mean(),
            "ppl": total.ppl(),
            "ppl_stderr": total.ppl_stderr(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5}  ({} tokens scored)",
            total.ppl(),
            total.ppl_stderr(),
            total.count
        );
        if let Some(p) = &a.save_logits {
            eprintln!("log-probabilities saved to {}", p.display());
        }
    }
    Ok(())
}

/// Writes a logits file row by row; I/O errors are kept until [`LogitsSaver::check`], as the
/// rows arrive inside the model's callback.
struct LogitsSaver {
    path: PathBuf,
    out: BufWriter<File>,
    logp: Vec<f32>,
    buf: Vec<u8>,
    err: Option<io::Error>,
}

impl LogitsSaver {
    fn create(path: &Path, header: &LogitsHeader) -> Result<LogitsSaver> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        header
            .write(&mut out)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(LogitsSaver {
            path: path.to_path_buf(),
            out,
            logp: Vec::new(),
            buf: Vec::new(),
            err: None,
        })
    }

    fn push(&mut self, logits: &[f32]) {
        if self.err.is_some() {
            return;
        }
        self.logp.resize(logits.len(), 0.0);
        log_softmax_into(logits, &mut self.logp);
        if let Err(e) = write_logp_row(&mut self.out, &self.logp, &mut self.buf) {
            self.err = Some(e);
        }
    }

    fn check(&mut self) -> Result<()> {
        match self.err.take() {
            Some(e) => Err(e).with_context(|| format!("writing {}", self.path.display())),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> Result<()> {
        self.check()?;
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
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
    if header.n_vocab as usize != model.config.n_vocab {
        return Err(eval::EvalError::LogitsMismatch {
            what: "the vocabulary size",
            file: header.n_vocab.to_string(),
            here: model.config.n_vocab.to_string(),
        })
        .with_context(ctx_err);
    }
    if let Some(path) = &a.file {
        // The reference's tokens are the ones evaluated; a text, if given, must agree.
        let text = read_nonempty(path)?;
        let tokens = tokenizer.encode(&text, tokenizer.add_bos_default(), false);
        let n = header.tokens.len();
        if let Some(k) = (0..n).find(|&k| tokens.get(k) != Some(&header.tokens[k])) {
            bail!(
                "{} tokenizes differently from the base run in {} (first difference at token {k})",
                path.display(),
                base.display()
            );
        }
    }
    let chunks = Chunks {
        n_ctx,
        n_chunks: a.chunks.map_or(header.n_chunks as usize, |c| {
            c.min(header.n_chunks as usize)
        }),
    };
    let bos = chunk_bos(&tokenizer);
    if !a.json {
        eprintln!(
            "KL divergence against {}: {} chunks of {n_ctx} ({} scored per chunk)",
            base.display(),
            chunks.n_chunks,
            chunks.scored_per_chunk()
        );
    }
    let n_vocab = model.config.n_vocab;
    let mut state = model.new_state(n_ctx)?;
    let mut stats = KlStats::default();
    let (mut base_row, mut buf) = (vec![0.0f32; n_vocab], Vec::new());
    let pb = progress(chunks.n_chunks, "KL divergence");
    if !a.json {
        pb.suspend(|| {
            println!(
                "{:>6}  {:>12}  {:>22}  {:>20}  {:>16}",
                "chunk", "PPL", "ln(PPL(Q)/PPL(base))", "KL divergence", "same top"
            )
        });
    }
    let mut per_chunk = Vec::new();
    for i in 0..chunks.n_chunks {
        let mut io_err = None;
        eval_chunk(
            &model,
            &mut state,
            chunks.chunk(&header.tokens, i),
            bos,
            |row| {
                if io_err.is_some() {
                    return;
                }
                if let Err(e) = read_logp_row(&mut r, &mut base_row, &mut buf) {
                    io_err = Some(e);
                    return;
                }
                stats.push(&kl_row(&base_row, row.logits, row.log_z, row.target));
            },
        )?;
        if let Some(e) = io_err {
            return Err(e)
                .with_context(|| format!("reading chunk {} of {}", i + 1, base.display()));
        }
        let s = stats.summary();
        per_chunk.push(json!({
            "chunk": i + 1, "ppl": s.ppl.0, "ln_ppl_ratio": s.ln_ppl_ratio.0,
            "kld_mean": s.kld_mean.0, "same_top": s.same_top.0,
        }));
        if !a.json {
            pb.suspend(|| {
                println!(
                    "{:>6}  {:>12.4}  {:>10.5} ± {:>9.5}  {:>8.5} ± {:>9.5}  {:>6.2} ± {:>5.2} %",
                    i + 1,
                    s.ppl.0,
                    s.ln_ppl_ratio.0,
                    s.ln_ppl_ratio.1,
                    s.kld_mean.0,
                    s.kld_mean.1,
                    100.0 * s.same_top.0,
                    100.0 * s.same_top.1
                )
            });
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let s = stats.summary();
    if a.json {
        let mut v = kl_json(&s);
        v["base"] = json!(base.display().to_string());
        v["n_ctx"] = json!(n_ctx);
        v["n_chunks"] = json!(chunks.n_chunks);
        v["chunks"] = json!(per_chunk);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_kl(&s);
    }
    Ok(())
}

fn kl_json(s: &KlSummary) -> Value {
    let pair = |p: (f64, f64)| json!([p.0, p.1]);
    json!({
        "count": s.count,
        "ppl": pair(s.ppl),
        "ppl_base": pair(s.ppl_base),
        "ln_ppl_correlation": s.ln_ppl_correlation,
        "ln_ppl_ratio": pair(s.ln_ppl_ratio),
        "ppl_ratio": pair(s.ppl_ratio),
        "kld_mean": pair(s.kld_mean),
        "kld_percentiles": s.kld_percentiles.iter().map(|&(q, v)| json!({"q": q, "kld": v})).collect::<Vec<_>>(),
        "p_diff_mean": pair(s.p_diff_mean),
        "p_diff_rms": pair(s.p_diff_rms),
        "same_top": pair(s.same_top),
    })
}

fn print_kl(s: &KlSummary) {
    println!();
    println!("====== Perplexity ({} tokens) ======", s.count);
    println!("PPL(Q)                  {:>12.6} ± {:.6}", s.ppl.0, s.ppl.1);
    println!(
        "PPL(base)               {:>12.6} ± {:.6}",
        s.ppl_base.0, s.ppl_base.1
    );
    println!(
        "Cor(ln PPL(Q), ln PPL(base)) {:>7.2} %",
        100.0 * s.ln_ppl_correlation
    );
    println!(
        "ln(PPL(Q)/PPL(base))    {:>12.6} ± {:.6}",
        s.ln_ppl_ratio.0, s.ln_ppl_ratio.1
    );
    println!(
        "PPL(Q)/PPL(base)        {:>12.6} ± {:.6}",
        s.ppl_ratio.0, s.ppl_ratio.1
    );
    println!();
    println!("====== KL divergence (nats) ======");
    println!(
        "Mean                    {:>12.6} ± {:.6}",
        s.kld_mean.0, s.kld_mean.1
    );
    for &(q, v) in &s.kld_percentiles {
        let label = match q {
            1.0 => "Maximum".to_string(),
            0.5 => "Median".to_string(),
            0.0 => "Minimum".to_string(),
            _ => format!("{:.1}%", 100.0 * q),
        };
        println!("{label:<24}{v:>12.6}");
    }
    println!();
    println!("====== Token probability ======");
    println!(
        "Mean Δp                 {:>9.3} ± {:.3} %",
        100.0 * s.p_diff_mean.0,
        100.0 * s.p_diff_mean.1
    );
    println!(
        "RMS Δp                  {:>9.3} ± {:.3} %",
        100.0 * s.p_diff_rms.0,
        100.0 * s.p_diff_rms.1
    );
    println!(
        "Same top token          {:>9.3} ± {:.3} %",
        100.0 * s.same_top.0,
        100.0 * s.same_top.1
    );
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
    #[arg(short, long, help = crate::load::THREADS_HELP, value_parser = crate::load::parse_threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Parses a JSONL task file; errors name the file and line.
pub fn parse_tasks(path: &Path, text: &str) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not valid JSON", at()))?;
        let context = v["context"]
            .as_str()
            .with_context(|| format!("{}: \"context\" must be a string", at()))?;
        let endings = v["endings"]
            .as_array()
            .with_context(|| format!("{}: \"endings\" must be an array of strings", at()))?
            .iter()
            .map(|e| e.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("{}: \"endings\" must be an array of strings", at()))?;
        if endings.len() < 2 {
            bail!(
                "{}: {} ending(s); a choice needs at least 2",
                at(),
                endings.len()
            );
        }
        // HellaSwag's own files write the label as a string ("3").
        let label = match &v["label"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .with_context(|| {
            format!(
                "{}: \"label\" must be an ending index (0 to {}), found {}",
                at(),
                endings.len() - 1,
                v["label"]
            )
        })?;
        if label as usize >= endings.len() {
            bail!(
                "{}: label {label} is not an index of the {} endings (0 to {})",
                at(),
                endings.len(),
                endings.len() - 1
            );
        }
        tasks.push(Task {
            context: context.to_string(),
            endings,
            label: label as usize,
        });
    }
    if tasks.is_empty() {
        bail!("{}: no tasks in the file", path.display());
    }
    Ok(tasks)
}

pub fn run_score(a: &ScoreArgs) -> Result<()> {
    let text = read_nonempty(&a.file)?;
    let tasks = parse_tasks(&a.file, &text)?;
    let margs = EvalModelArgs {
        model: a.model.clone(),
        ctx: None,
        threads: a.threads,
        precision: a.precision,
        device: a.device,
    };
    let Loaded {
        model,
        tokenizer,
        n_ctx,
        ..
    } = margs.load(None)?;
    let mut state = model.new_state(n_ctx)?;
    let pb = progress(tasks.len(), "score");
    let mut correct = 0;
    let mut rows = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let s = score_task(&model, &mut state, &tokenizer, task, i + 1)
            .with_context(|| a.file.display().to_string())?;
        correct += s.correct as usize;
        let means: Vec<f64> = s.endings.iter().map(|e| e.mean()).collect();
        if !a.json {
            let list = means
                .iter()
                .map(|m| format!("{m:.4}"))
                .collect::<Vec<_>>()
                .join(" ");
            pb.suspend(|| {
                println!(
                    "task {:>4}: chose {} (label {}) {}  mean log-prob per token: {list}",
                    i + 1,
                    s.choice,
                    task.label,
                    if s.correct { "right" } else { "wrong" }
                )
            });
        }
        rows.push(json!({
            "task": i + 1,
            "label": task.label,
            "choice": s.choice,
            "correct": s.correct,
            "endings": s.endings.iter().map(|e| json!({
                "logprob": e.logprob, "n_tokens": e.n_tokens, "mean": e.mean(),
            })).collect::<Vec<_>>(),
        }));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = tasks.len();
    let acc = correct as f64 / n as f64;
    let (lo, hi) = wilson_interval(correct, n);
    if a.json {
        let out = json!({
            "file": a.file.display().to_string(),
            "tasks": rows,
            "n_tasks": n,
            "correct": correct,
            "accuracy": acc,
            "accuracy_95": [lo, hi],
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "accuracy (length-normalized log-likelihood): {correct}/{n} = {:.2} % \
             (95% Wilson interval {:.2} to {:.2} %)",
            100.0 * acc,
            100.0 * lo,
            100.0 * hi
        );
    }
    Ok(())
}
