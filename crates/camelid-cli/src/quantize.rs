//! `camelid quantize INPUT OUTPUT TYPE`: converts a GGUF (F32/F16/BF16 weights) or a Hugging Face
//! safetensors folder into a GGUF of another weight type.
//!
//! An already quantized GGUF is requantized only with `--allow-requantize`, as `llama-quantize`
//! asks: each tensor is dequantized to f32 and quantized again, which compounds two rounding
//! errors and can lose much more than quantizing the 16- or 32-bit original would. A tensor
//! that already has the type chosen for it is copied as it is (no loss), so only the tensors that
//! change type need the flag, as in llama.cpp (`llama_model_quantize_impl`).
//!
//! TYPE names the same file types as llama.cpp's `llama-quantize`, and every tensor gets the type
//! llama.cpp would give it: the rules, the tensor order and the metadata keys live in the library
//! ([`camelid_model::convert`]); this file parses the arguments, checks the paths, draws the
//! progress bar and prints the summary.
//!
//! The output is written to a temporary file beside OUTPUT and renamed over it at the end; OUTPUT
//! may never be the input.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use camelid_formats::gguf::{DEFAULT_ALIGNMENT, GgufWriter};
use camelid_kernels::DType;
use camelid_model::convert::{
    self, Ftype, Planned, llama_metadata, llama3_rope_divisors, plan_canonical, plan_gguf,
    tokenizer_metadata,
};
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_model::weights::{Checkpoint, Tensor, Weights};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// A GGUF file with F32, F16 or BF16 weights, or a Hugging Face model folder
    /// (config.json, safetensors, tokenizer.json or tokenizer.model); a GGUF with quantized
    /// weights (any type camelid reads) only with --allow-requantize.
    pub input: PathBuf,
    /// The GGUF file to write (replaced if it exists; never the input).
    pub output: PathBuf,
    /// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M,
    /// Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, F16, BF16 or F32 (Q3_K, Q4_K, Q5_K mean the _M
    /// mixes).
    #[arg(value_name = "TYPE")]
    pub ftype: String,
    /// Put every converted tensor in TYPE's base type: no mixture rules, no Q6_K output.
    #[arg(long)]
    pub pure: bool,
    /// Accept quantized input tensors: dequantized to f32, then quantized to their new type.
    /// Warning: this can severely reduce quality compared to quantizing from 16-bit or 32-bit
    /// weights.
    #[arg(long)]
    pub allow_requantize: bool,
    #[arg(short, long, help = crate::load::THREADS_HELP, value_parser = crate::load::parse_threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Print each tensor's name, shape and type.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(a: &QuantizeArgs) -> Result<()> {
    let ft = parse_ftype(&a.ftype)?;
    let threads = thread_count(a.threads)?;
    check_paths(&a.input, &a.output)?;
    let ckpt = Checkpoint::open(&a.input)?;
    let weights = ckpt.load_weights()?;
    let rope_freqs = match (&weights.rope_freqs, ckpt.gguf()) {
        (Some(f), _) => Some(f.clone()),
        (None, None) => llama3_rope_divisors(&ckpt.config),
        (None, Some(_)) => None,
    };

    let pb = progress_bar();
    let mut writer;
    let plan;
    match ckpt.gguf() {
        Some(g) => {
            writer = GgufWriter::new(g.alignment());
            convert::copy_metadata(g, &mut writer);
            plan = plan_gguf(g, &ckpt.config, &weights, ft, a.pure);
        }
        None => {
            writer = GgufWriter::new(DEFAULT_ALIGNMENT);
            let tok = load_tokenizer(&a.input)
                .with_context(|| format!("{}: reading the tokenizer", a.input.display()))?;
            if tok.n_vocab() > ckpt.config.n_vocab {
                bail!(
                    "{}: the tokenizer has {} tokens but the model only {} embeddings",
                    a.input.display(),
                    tok.n_vocab(),
                    ckpt.config.n_vocab
                );
            }
            let name = a
                .input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (k, v) in llama_metadata(&ckpt.config, &name) {
                writer.add_metadata(&k, v);
            }
            for (k, v) in tokenizer_metadata(&tok, ckpt.config.n_vocab) {
                writer.add_metadata(&k, v);
            }
            plan = plan_canonical(&ckpt.config, &weights, rope_freqs.as_deref(), ft, a.pure);
        }
    }
    check_requantize(&a.input, &plan, a.allow_requantize)?;
    write_gguf(&a.output, writer, plan, &pb, ft, threads, a.verbose)
}

/// `camelid random-model PRESET OUTPUT [TYPE]`.
#[derive(clap::Args)]
pub struct RandomModelArgs {
    /// A shape of `camelid models` (e.g. llama-3.2-1b, llama-2-7b).
    pub preset: String,
    /// The GGUF file to write (replaced if it exists).
    pub output: PathBuf,
    /// The file type, as for `quantize` (default F16).
    #[arg(value_name = "TYPE", default_value = "F16")]
    pub ftype: String,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep only the first N layers (a smaller model of the same widths).
    #[arg(long)]
    pub layers: Option<usize>,
    /// A vocabulary of N tokens instead of the shape's (a smaller file for tests).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// A model width of D instead of the shape's, with as many heads of the shape's head size
    /// and its query heads per kv head (a model whose weights fit in a CPU's cache).
    #[arg(long, value_name = "D")]
    pub dim: Option<usize>,
    /// A feed-forward width of F instead of the shape's.
    #[arg(long, value_name = "F")]
    pub ffn: Option<usize>,
    /// Write this tokenizer's keys (a GGUF, tokenizer.json, tokenizer.model or a model
    /// folder), padded to the model's vocabulary, so that text commands and `serve` run.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// Writes a model of a published shape with random weights ([`Weights::random`]): benchmark
/// and device-check models made where nothing can be downloaded. Without `--tokenizer` it has
/// no tokenizer keys: it serves `bench` and `logits`, not text commands.
pub fn run_random(a: &RandomModelArgs) -> Result<()> {
    let ft = parse_ftype(&a.ftype)?;
    let presets = camelid_model::config::presets();
    let Some(p) = presets.iter().find(|p| p.id == a.preset) else {
        let ids: Vec<&str> = presets.iter().map(|p| p.id).collect();
        bail!("unknown shape {:?}; one of: {}", a.preset, ids.join(", "));
    };
    let mut config = p.config.clone();
    if let Some(n) = a.layers {
        if n == 0 || n > config.n_layers {
            bail!("--layers must be in 1..={}", config.n_layers);
        }
        config.n_layers = n;
    }
    if let Some(v) = a.vocab {
        if v == 0 || v > config.n_vocab {
            bail!("--vocab must be in 1..={}", config.n_vocab);
        }
        config.n_vocab = v;
    }
    if let Some(d) = a.dim {
        let group = config.n_heads / config.n_kv_heads;
        let unit = config.head_dim * group;
        if d == 0 || !d.is_multiple_of(unit) {
            bail!(
                "--dim must be a positive multiple of {unit} (head size {} × {group} query heads \
                 per kv head)",
                config.head_dim
            );
        }
        config.d_model = d;
        config.n_heads = d / config.head_dim;
        config.n_kv_heads = config.n_heads / group;
    }
    if let Some(f) = a.ffn {
        if f == 0 || !f.is_multiple_of(32) {
            bail!("--ffn must be a positive multiple of 32");
        }
        config.d_ff = f;
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("the shape asked for is not a valid model: {e}"))?;
    let threads = thread_count(a.threads)?;
    if a.output.is_dir() {
        bail!("{}: OUTPUT is a folder; name a file", a.output.display());
    }
    let weights = Weights::random(&config, a.seed);
    let rope_freqs = llama3_rope_divisors(&config);
    let pb = progress_bar();
    let mut writer = GgufWriter::new(DEFAULT_ALIGNMENT);
    let name = format!("{} (random weights, seed {})", p.name, a.seed);
    for (k, v) in llama_metadata(&config, &name) {
        writer.add_metadata(&k, v);
    }
    if let Some(path) = &a.tokenizer {
        let tok = load_tokenizer(path)
            .with_context(|| format!("{}: reading the tokenizer", path.display()))?;
        if tok.n_vocab() > config.n_vocab {
            bail!(
                "{}: the tokenizer has {} tokens, more than the model's {}",
                path.display(),
                tok.n_vocab(),
                config.n_vocab
            );
        }
        for (k, v) in tokenizer_metadata(&tok, config.n_vocab) {
            writer.add_metadata(&k, v);
        }
    }
    let plan = plan_canonical(&config, &weights, rope_freqs.as_deref(), ft, false);
    write_gguf(&a.output, writer, plan, &pb, ft, threads, false)
}

/// Refuses, without `--allow-requantize`, a plan that converts a quantized tensor to another
/// type; with it, warns once. Copies (same type in and out) lose nothing and pass either way.
fn check_requantize(input: &Path, plan: &[Planned], allow: bool) -> Result<()> {
    let requantized: Vec<&Tensor> = plan.iter().filter_map(Planned::requantizes).collect();
    let Some(first) = requantized.first() else {
        return Ok(());
    };
    let mut from: Vec<&str> = requantized.iter().map(|t| t.dtype.name()).collect();
    from.sort_unstable();
    from.dedup();
    if !allow {
        bail!(
            "{}: tensor {} is {}, already quantized ({} tensors to convert from {}); requantizing \
             can severely reduce quality compared to quantizing from F32, F16 or BF16 weights: \
             pass --allow-requantize to do it anyway",
            input.display(),
            first.name,
            first.dtype,
            requantized.len(),
            from.join(", ")
        );
    }
    eprintln!(
        "warning: requantizing {} tensors from {} through f32; this can severely reduce quality \
         compared to quantizing from 16-bit or 32-bit weights",
        requantized.len(),
        from.join(", ")
    );
    Ok(())
}

fn parse_ftype(name: &str) -> Result<Ftype> {
    Ftype::parse(name).with_context(|| {
        let names: Vec<&str> = Ftype::all().map(Ftype::name).collect();
        format!(
            "unknown TYPE {name:?}; one of: {} (and Q3_K, Q4_K, Q5_K for the _M mixes)",
            names.join(", ")
        )
    })
}

fn thread_count(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => Ok(crate::load::thread_count(t)),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Converts the planned tensors and writes the file (to a temporary name, renamed at the end).
fn write_gguf<'a>(
    out_path: &Path,
    mut writer: GgufWriter<'a>,
    plan: Vec<Planned<'a>>,
    pb: &'a Bar,
    ft: Ftype,
    threads: usize,
    verbose: bool,
) -> Result<()> {
    let pb_ = &pb.0;
    pb_.set_length(plan.iter().map(|p| p.dims.iter().product::<u64>()).sum());
    // (type, tensors, elements, bytes)
    let mut counts: Vec<(DType, usize, u64, u64)> = Vec::new();
    for p in &plan {
        if verbose {
            pb_.suspend(|| eprintln!("{:<28} {:>14} -> {}", p.name, format!("{:?}", p.dims), p.ty));
        }
        let n = p.dims.iter().product::<u64>();
        let bytes = p.bytes();
        match counts.iter_mut().find(|c| c.0 == p.ty) {
            Some(c) => (c.1, c.2, c.3) = (c.1 + 1, c.2 + n, c.3 + bytes),
            None => counts.push((p.ty, 1, n, bytes)),
        }
    }
    convert::add_tensors(&mut writer, plan, ft, threads, pb)?;
    let written = writer
        .write_file(out_path)
        .with_context(|| format!("writing {}", out_path.display()))?;
    pb_.finish_and_clear();
    let summary: Vec<String> = counts.iter().map(|(t, n, ..)| format!("{n} {t}")).collect();
    let n_weights: u64 = counts.iter().map(|c| c.2).sum();
    let tensor_bytes: u64 = counts.iter().map(|c| c.3).sum();
    eprintln!(
        "wrote {} ({}): {:.1} MiB, tensors {:.1} MiB = {:.2} bits per weight; {}",
        out_path.display(),
        ft.name(),
        written as f64 / (1 << 20) as f64,
        tensor_bytes as f64 / (1 << 20) as f64,
        tensor_bytes as f64 * 8.0 / n_weights.max(1) as f64,
        summary.join(", ")
    );
    Ok(())
}

/// The conversion's progress on stderr: the tensor being written and the share of all elements.
struct Bar(ProgressBar);

impl convert::Progress for Bar {
    fn tensor(&self, name: &str) {
        self.0.set_message(name.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn progress_bar() -> Bar {
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:28!} [{wide_bar}] {percent:>3}% {elapsed:>4} eta {eta:>4}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    Bar(pb)
}

/// Refuses an OUTPUT that is the input or one of the input folder's files.
fn check_paths(input: &Path, output: &Path) -> Result<()> {
    if !input.exists() {
        bail!("{}: no such file or folder", input.display());
    }
    if output.is_dir() {
        bail!("{}: OUTPUT is a folder; name a file", output.display());
    }
    let Ok(out) = output.canonicalize() else {
        // OUTPUT does not exist yet, so it cannot be the input.
        return Ok(());
    };
    let inp = input
        .canonicalize()
        .with_context(|| format!("resolving {}", input.display()))?;
    let same = out == inp || same_file(&out, &inp) || (inp.is_dir() && out.parent() == Some(&inp));
    if same {
        bail!(
            "{}: OUTPUT would overwrite the input {}; choose another name",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}
