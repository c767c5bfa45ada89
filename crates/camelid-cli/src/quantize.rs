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
//! ([`camelid_model::convert`], whole conversions and their checks in
//! [`camelid_model::conversion`]); this file parses the arguments, draws the progress bar and
//! prints the summary.
//!
//! The output is written to a temporary file beside OUTPUT and renamed over it at the end; OUTPUT
//! may never be the input.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use camelid_kernels::Precision;
use camelid_model::conversion::{self, Conversion};
use camelid_model::convert::{self, Ftype, llama3_rope_divisors};
use camelid_model::lora;
use camelid_model::weights::{Checkpoint, Weights};
use indicatif::ProgressBar;

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// A GGUF file with F32, F16 or BF16 weights, a Hugging Face model folder (config.json,
    /// safetensors, tokenizer.json or tokenizer.model), or a Meta release folder (params.json,
    /// consolidated.NN.pth, tokenizer.model); a GGUF with quantized
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
    #[arg(short, long, help = crate::load::THREADS_HELP, value_parser = camelid_engine::options::threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Print each tensor's name, shape and type.
    #[arg(short, long)]
    pub verbose: bool,
    /// LoRA adapters merged into the weights before they are converted (llama-export-lora's
    /// job): the output is the adapted model.
    #[command(flatten)]
    pub adapters: crate::load::AdapterArgs,
}

pub fn run(a: &QuantizeArgs) -> Result<()> {
    let ft = parse_ftype(&a.ftype)?;
    let threads = crate::load::threads_or_all(a.threads)?;
    conversion::check_output(&a.input, &a.output)?;
    let ckpt = Checkpoint::open(&a.input)?;
    let mut weights = ckpt.load_weights()?;
    // Merged at the exact precision (F16 or F32): TYPE rounds each merged matrix once, from there.
    let adapters = a.adapters.get()?;
    lora::merge_files(&mut weights, &ckpt.config, &adapters, Precision::Exact)?;
    let rope_freqs = conversion::rope_freqs(&ckpt, &weights);
    let pb = progress_bar();
    let c = conversion::of_checkpoint(&ckpt, &weights, rope_freqs.as_deref(), ft, a.pure)?;
    if let Some(r) = conversion::check_requantize(&a.input, &c.plan, a.allow_requantize)? {
        eprintln!("warning: {r}");
    }
    write_gguf(&a.output, c, &pb, ft, threads, a.verbose)
}

/// `camelid random-model PRESET OUTPUT [TYPE]`.
#[derive(clap::Args)]
pub struct RandomModelArgs {
    /// A shape of `camelid models` (e.g. llama3.2-1b, llama2-7b).
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
    let Some(p) = camelid_model::config::find_preset(&a.preset) else {
        let ids = camelid_model::config::preset_ids();
        bail!("unknown shape {:?}; one of: {ids}", a.preset);
    };
    let config = p.config.resized(a.layers, a.vocab, a.dim, a.ffn)?;
    let threads = crate::load::threads_or_all(a.threads)?;
    if a.output.is_dir() {
        bail!("{}: OUTPUT is a folder; name a file", a.output.display());
    }
    let weights = Weights::random(&config, a.seed);
    let rope_freqs = llama3_rope_divisors(&config);
    let pb = progress_bar();
    let name = format!("{} (random weights, seed {})", p.name, a.seed);
    let c = conversion::of_random(
        &config,
        &weights,
        rope_freqs.as_deref(),
        &name,
        a.tokenizer.as_deref(),
        ft,
    )?;
    write_gguf(&a.output, c, &pb, ft, threads, false)
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

/// Converts the planned tensors and writes the file (to a temporary name, renamed at the end).
fn write_gguf<'a>(
    out_path: &Path,
    c: Conversion<'a>,
    pb: &'a Bar,
    ft: Ftype,
    threads: usize,
    verbose: bool,
) -> Result<()> {
    pb.0.set_length(c.elements());
    if verbose {
        for p in &c.plan {
            let dims = format!("{:?}", p.dims);
            pb.0.suspend(|| eprintln!("{:<28} {dims:>14} -> {}", p.name, p.ty));
        }
    }
    let (written, summary) = c.write(out_path, ft, threads, pb)?;
    pb.0.finish_and_clear();
    eprintln!(
        "wrote {} ({}): {:.1} MiB, {summary}",
        out_path.display(),
        ft.name(),
        written as f64 / (1 << 20) as f64,
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
    Bar(crate::progress_bar(
        0,
        "{msg:28!} [{wide_bar}] {percent:>3}% {elapsed:>4} eta {eta:>4}",
    ))
}
