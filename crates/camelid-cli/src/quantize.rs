//! `camelid quantize INPUT OUTPUT TYPE`: converts a GGUF (F32/F16/BF16 weights) or a Hugging Face
//! safetensors folder into a GGUF of another weight type.
//!
//! An already quantized GGUF is requantized only with `--allow-requantize`, as `llama-quantize`
//! asks: each tensor is dequantized to f32 and quantized again, which compounds two rounding
//! errors and can lose much more than quantizing the 16- or 32-bit original would. A tensor
//! that already has the type chosen for it is copied as it is (no loss), so only the tensors that
//! change type need the flag, as in llama.cpp (`llama_model_quantize_impl`).
//!
//! TYPE names the same file types as llama.cpp's `llama-quantize` (`llama_ftype` in
//! `include/llama.h`, whose numbers go into `general.file_type`), and the per-tensor choices follow
//! its rules (`src/llama-quant.cpp`, `llama_tensor_get_type_impl` and `tensor_type_fallback`), so
//! the two tools put every tensor in the same type:
//!
//! - Only 2-D `*.weight` tensors other than norms are converted; 1-D tensors stay F32.
//! - The output matrix (or, in a model with tied embeddings, the token embedding that serves as
//!   output) gets Q6_K in every quantized type except Q8_0, or Q8_0 when its rows are not a whole
//!   number of the base type's blocks.
//! - The `_M`/`_S`/`_L` mixes and Q2_K raise some tensors: `attn_v` (Q4_K_M, Q5_K_M: Q6_K in the
//!   layers where [`use_more_bits`] holds; Q3_K_M: Q5_K in the first two, else Q4_K; Q3_K_L: Q5_K;
//!   Q4_K_S: Q5_K in the first four; Q2_K: Q4_K with ≥ 4 query heads per KV head, else Q3_K; and
//!   Q5_K instead of Q3_K/Q4_K in a 70B-shaped model), `ffn_down` (Q4_K_M, Q5_K_M: Q6_K where
//!   [`use_more_bits`]; Q3_K_M: Q5_K in the first sixteenth, else Q4_K; Q3_K_L: Q5_K; Q4_K_S: Q5_K
//!   in the first eighth; Q2_K: Q3_K) and `attn_output` (Q2_K:
//!   Q3_K, Q3_K_M: Q4_K, Q3_K_L: Q5_K). llama.cpp counts layers in the order its loader keeps
//!   the tensors (`weight_name_comparer`, `src/llama-model-loader.h`: by block number, then by
//!   name), not in the file's: in a file stored in name order (blk.0, blk.1, blk.10, ..., as
//!   the default model is) the two differ. We take, and write, the tensors in llama.cpp's order.
//! - A row length that is not a whole number of blocks falls back: Q2_K and Q3_K to Q4_0, Q4_K to
//!   Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, and to F16 when even that does not divide it.
//! - `--pure` skips the mixture rules (not the fallback), as `llama-quantize --pure` does.
//!
//! A Hugging Face folder is read through the model crate's [`Checkpoint`], which undoes HF's
//! Wq/Wk row permutation; the `llama.*` keys are written from its config and the `tokenizer.*`
//! keys from `tokenizer.json` or `tokenizer.model` (the keys llama.cpp's `convert_hf_to_gguf.py`
//! writes for a Llama model, GGUF spec `docs/gguf.md`). Llama 3.1 RoPE scaling becomes a
//! `rope_freqs.weight` tensor of per-pair divisors, as that converter writes it.
//!
//! The output is written to a temporary file beside OUTPUT and renamed over it at the end; OUTPUT
//! may never be the input.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use camelid_formats::gguf::{DEFAULT_ALIGNMENT, GgmlType, Gguf, GgufWriter, Value, ValueType};
use camelid_kernels::DType;
use camelid_kernels::quant::quantize_row;
use camelid_model::config::{Config, RopeScaling};
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_model::weights::{Checkpoint, Tensor, Weights};
use camelid_tokenizer::{ModelKind, PreTokenizer, Tokenizer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// A GGUF file with F32, F16 or BF16 weights, or a Hugging Face model folder
    /// (config.json, safetensors, tokenizer.json or tokenizer.model); a GGUF with quantized
    /// weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) only with --allow-requantize.
    pub input: PathBuf,
    /// The GGUF file to write (replaced if it exists; never the input).
    pub output: PathBuf,
    /// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M,
    /// Q5_K_S, Q5_K_M, Q6_K, F16, BF16 or F32 (Q3_K, Q4_K, Q5_K mean the _M mixes).
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

/// A target file type: llama.cpp's `llama_ftype` (name, number, base tensor type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // llama.cpp's names
pub enum Ftype {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

/// (ftype, name, `llama_ftype` number, base type), `include/llama.h`.
const FTYPES: [(Ftype, &str, u32, DType); 17] = [
    (Ftype::F32, "F32", 0, DType::F32),
    (Ftype::F16, "F16", 1, DType::F16),
    (Ftype::Q4_0, "Q4_0", 2, DType::Q4_0),
    (Ftype::Q4_1, "Q4_1", 3, DType::Q4_1),
    (Ftype::Q8_0, "Q8_0", 7, DType::Q8_0),
    (Ftype::Q5_0, "Q5_0", 8, DType::Q5_0),
    (Ftype::Q5_1, "Q5_1", 9, DType::Q5_1),
    (Ftype::Q2_K, "Q2_K", 10, DType::Q2_K),
    (Ftype::Q3_K_S, "Q3_K_S", 11, DType::Q3_K),
    (Ftype::Q3_K_M, "Q3_K_M", 12, DType::Q3_K),
    (Ftype::Q3_K_L, "Q3_K_L", 13, DType::Q3_K),
    (Ftype::Q4_K_S, "Q4_K_S", 14, DType::Q4_K),
    (Ftype::Q4_K_M, "Q4_K_M", 15, DType::Q4_K),
    (Ftype::Q5_K_S, "Q5_K_S", 16, DType::Q5_K),
    (Ftype::Q5_K_M, "Q5_K_M", 17, DType::Q5_K),
    (Ftype::Q6_K, "Q6_K", 18, DType::Q6_K),
    (Ftype::BF16, "BF16", 32, DType::BF16),
];

impl Ftype {
    pub fn parse(s: &str) -> Option<Ftype> {
        let s = s.to_ascii_uppercase();
        // llama-quantize's short names for the _M mixes.
        let s = match s.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        FTYPES.iter().find(|f| f.1 == s).map(|f| f.0)
    }

    fn entry(self) -> &'static (Ftype, &'static str, u32, DType) {
        FTYPES
            .iter()
            .find(|f| f.0 == self)
            .expect("every ftype is listed")
    }

    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The number written as `general.file_type`.
    pub fn id(self) -> u32 {
        self.entry().2
    }

    pub fn base(self) -> DType {
        self.entry().3
    }
}

/// What a tensor is, for the mixture rules (llama.cpp's `tensor_category`, by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    AttnOutput,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    match name {
        "output.weight" => Category::Output,
        "token_embd.weight" => Category::TokenEmbd,
        _ if name.contains("attn_v.weight") => Category::AttnV,
        _ if name.contains("attn_output.weight") => Category::AttnOutput,
        _ if name.contains("ffn_down") => Category::FfnDown,
        _ => Category::Other,
    }
}

/// llama.cpp's choice of layers that get more bits in the _M mixes: the first and last eighth,
/// and every third layer in between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The model facts the rules look at.
struct Shape {
    n_layers: usize,
    /// Query heads per KV head.
    n_gqa: usize,
    /// llama.cpp's `LLM_TYPE_70B`: 80 layers with grouped-query attention.
    is_70b: bool,
    tied: bool,
    /// Number of `attn_v` tensors.
    n_attn_v: usize,
}

/// Counters over the tensors seen so far, as llama.cpp keeps them.
#[derive(Default)]
struct Counters {
    attn_v: usize,
    ffn_down: usize,
}

/// The type of one converted tensor with `cols` elements per row.
fn choose_type(
    ft: Ftype,
    pure: bool,
    name: &str,
    cols: usize,
    shape: &Shape,
    counters: &mut Counters,
) -> DType {
    let base = ft.base();
    if !base.is_quantized() {
        return base;
    }
    let mut t = base;
    if !pure {
        t = mixture_type(ft, name, cols, shape, counters);
    }
    fallback(t, cols)
}

fn mixture_type(ft: Ftype, name: &str, cols: usize, s: &Shape, c: &mut Counters) -> DType {
    use DType as D;
    use Ftype as F;
    let mut t = ft.base();
    let cat = category(name);
    if cat == Category::Output || (s.tied && cat == Category::TokenEmbd) {
        if !cols.is_multiple_of(t.block_size()) {
            return D::Q8_0;
        }
        return if t == D::Q8_0 { t } else { D::Q6_K };
    }
    match cat {
        Category::Output | Category::TokenEmbd | Category::Other => {}
        Category::AttnV => {
            let i = c.attn_v;
            match ft {
                F::Q2_K => t = if s.n_gqa >= 4 { D::Q4_K } else { D::Q3_K },
                F::Q3_K_M => t = if i < 2 { D::Q5_K } else { D::Q4_K },
                F::Q3_K_L => t = D::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, s.n_attn_v) => t = D::Q6_K,
                F::Q4_K_S if i < 4 => t = D::Q5_K,
                _ => {}
            }
            if s.is_70b && matches!(t, D::Q3_K | D::Q4_K) {
                t = D::Q5_K;
            }
            c.attn_v += 1;
        }
        Category::FfnDown => {
            let (i, n) = (c.ffn_down, s.n_layers);
            match ft {
                F::Q2_K => t = D::Q3_K,
                F::Q3_K_M => t = if i < n / 16 { D::Q5_K } else { D::Q4_K },
                F::Q3_K_L => t = D::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => t = D::Q6_K,
                F::Q4_K_S if i < n / 8 => t = D::Q5_K,
                _ => {}
            }
            c.ffn_down += 1;
        }
        Category::AttnOutput => match ft {
            F::Q2_K => t = D::Q3_K,
            F::Q3_K_M => t = D::Q4_K,
            F::Q3_K_L => t = D::Q5_K,
            _ => {}
        },
    }
    t
}

/// A type whose blocks divide the row, as llama.cpp falls back.
fn fallback(t: DType, cols: usize) -> DType {
    if cols.is_multiple_of(t.block_size()) {
        return t;
    }
    let f = match t {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        other => other,
    };
    if cols.is_multiple_of(f.block_size()) {
        f
    } else {
        DType::F16
    }
}

/// Where the bytes of one output tensor come from.
enum Source<'a> {
    /// A weight matrix, converted row by row.
    Matrix(&'a Tensor),
    /// A 1-D tensor, written as F32.
    Vector(&'a [f32]),
    /// A tensor camelid does not use, copied as it is.
    Raw(GgmlType, &'a [u8]),
}

struct Planned<'a> {
    name: String,
    /// GGUF order: row length first.
    dims: Vec<u64>,
    ty: DType,
    source: Source<'a>,
}

fn ggml_type(d: DType) -> GgmlType {
    *GgmlType::ALL
        .iter()
        .find(|t| t.name() == d.name())
        .expect("every camelid type is a ggml type")
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
            for (k, v) in g.metadata() {
                if k != "general.alignment" {
                    writer.add_metadata(k, v.clone());
                }
            }
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
    let requantized: Vec<&Tensor> = plan
        .iter()
        .filter_map(|p| match p.source {
            Source::Matrix(t) if t.dtype.is_quantized() && t.dtype != p.ty => Some(t),
            _ => None,
        })
        .collect();
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
        let names: Vec<&str> = FTYPES.iter().map(|f| f.1).collect();
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
    pb: &'a ProgressBar,
    ft: Ftype,
    threads: usize,
    verbose: bool,
) -> Result<()> {
    writer.add_metadata("general.file_type", Value::U32(ft.id()));
    // GGML_QNT_VERSION (ggml.h): the block layouts of the current quantized types.
    writer.add_metadata("general.quantization_version", Value::U32(2));

    pb.set_length(plan.iter().map(|p| p.dims.iter().product::<u64>()).sum());
    // (type, tensors, elements, bytes)
    let mut counts: Vec<(DType, usize, u64, u64)> = Vec::new();
    for p in &plan {
        if verbose {
            pb.suspend(|| eprintln!("{:<28} {:>14} -> {}", p.name, format!("{:?}", p.dims), p.ty));
        }
        let n = p.dims.iter().product::<u64>();
        let bytes = match p.source {
            Source::Raw(_, b) => b.len() as u64,
            Source::Vector(v) => 4 * v.len() as u64,
            Source::Matrix(t) => (p.ty.row_bytes(t.cols).unwrap_or(0) * t.rows) as u64,
        };
        match counts.iter_mut().find(|c| c.0 == p.ty) {
            Some(c) => (c.1, c.2, c.3) = (c.1 + 1, c.2 + n, c.3 + bytes),
            None => counts.push((p.ty, 1, n, bytes)),
        }
    }
    for p in plan {
        let name = p.name.clone();
        let n = p.dims.iter().product::<u64>();
        match p.source {
            Source::Raw(ty, bytes) => writer.add_tensor_stream(&p.name, &p.dims, ty, move |w| {
                pb.set_message(name);
                w.write_all(bytes)?;
                pb.inc(n);
                Ok(())
            })?,
            Source::Vector(v) => {
                writer.add_tensor_stream(&p.name, &p.dims, GgmlType::F32, move |w| {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    w.write_all(&bytes)?;
                    pb.inc(n);
                    Ok(())
                })?
            }
            Source::Matrix(t) => {
                writer.add_tensor_stream(&p.name, &p.dims, ggml_type(p.ty), move |w| {
                    pb.set_message(name);
                    convert_matrix(t, p.ty, threads, w, pb)
                })?
            }
        }
    }
    let written = writer
        .write_file(out_path)
        .with_context(|| format!("writing {}", out_path.display()))?;
    pb.finish_and_clear();
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

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:28!} [{wide_bar}] {percent:>3}% {elapsed:>4} eta {eta:>4}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
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

fn model_shape(c: &Config, tied: bool, n_attn_v: usize) -> Shape {
    Shape {
        n_layers: c.n_layers,
        n_gqa: c.n_heads / c.n_kv_heads,
        is_70b: c.n_layers == 80 && c.n_heads != c.n_kv_heads,
        tied,
        n_attn_v,
    }
}

/// The tensors of a GGUF input, in its order: the model's matrices converted, its 1-D tensors as
/// F32, anything else copied.
fn plan_gguf<'a>(
    g: &'a Gguf,
    c: &Config,
    w: &'a Weights,
    ft: Ftype,
    pure: bool,
) -> Vec<Planned<'a>> {
    let matrices: Vec<&Tensor> = w.matrices().collect();
    let mut vectors: Vec<(String, &[f32])> = vec![("output_norm.weight".into(), &w.output_norm)];
    for (i, l) in w.layers.iter().enumerate() {
        vectors.push((format!("blk.{i}.attn_norm.weight"), &l.attn_norm));
        vectors.push((format!("blk.{i}.ffn_norm.weight"), &l.ffn_norm));
    }
    if let Some(f) = &w.rope_freqs {
        vectors.push(("rope_freqs.weight".into(), f));
    }
    let n_attn_v = g
        .tensors()
        .iter()
        .filter(|t| category(&t.name) == Category::AttnV)
        .count();
    let tied = g.tensor("output.weight").is_none();
    let shape = model_shape(c, tied, n_attn_v);
    let mut counters = Counters::default();
    let mut plan = Vec::new();
    let mut ordered: Vec<_> = g.tensors().iter().collect();
    ordered.sort_by(|a, b| llama_order(&a.name, &b.name));
    for t in ordered {
        let dims = t.dims.clone();
        let source = if let Some(m) = matrices.iter().find(|m| m.name == t.name) {
            let ty = choose_type(ft, pure, &t.name, m.cols, &shape, &mut counters);
            plan.push(Planned {
                name: t.name.clone(),
                dims,
                ty,
                source: Source::Matrix(m),
            });
            continue;
        } else if let Some((_, v)) = vectors.iter().find(|(n, _)| *n == t.name) {
            Source::Vector(v)
        } else {
            Source::Raw(t.ggml_type, g.tensor_data(t))
        };
        let ty = match &source {
            Source::Raw(gt, _) => DType::from_name(gt.name()).unwrap_or(DType::F32),
            _ => DType::F32,
        };
        plan.push(Planned {
            name: t.name.clone(),
            dims,
            ty,
            source,
        });
    }
    plan
}

/// llama.cpp's loader order (`weight_name_comparer`): tensors outside the blocks first, then
/// block by block in numeric order, by name within each.
fn llama_order(a: &str, b: &str) -> std::cmp::Ordering {
    let block = |name: &str| -> Option<u64> {
        let rest = name.strip_prefix("blk.")?;
        rest.split_once('.')?.0.parse().ok()
    };
    block(a).cmp(&block(b)).then_with(|| a.cmp(b))
}

/// The tensors of a Hugging Face input in llama.cpp's names, layer by layer.
fn plan_canonical<'a>(
    c: &Config,
    w: &'a Weights,
    rope_freqs: Option<&'a [f32]>,
    ft: Ftype,
    pure: bool,
) -> Vec<Planned<'a>> {
    let shape = model_shape(c, w.output.is_none(), w.layers.len());
    let mut counters = Counters::default();
    let mut plan = Vec::new();
    let matrix = |plan: &mut Vec<Planned<'a>>, t: &'a Tensor, counters: &mut Counters| {
        let ty = choose_type(ft, pure, &t.name, t.cols, &shape, counters);
        plan.push(Planned {
            name: t.name.clone(),
            dims: vec![t.cols as u64, t.rows as u64],
            ty,
            source: Source::Matrix(t),
        });
    };
    let vector = |plan: &mut Vec<Planned<'a>>, name: String, v: &'a [f32]| {
        plan.push(Planned {
            name,
            dims: vec![v.len() as u64],
            ty: DType::F32,
            source: Source::Vector(v),
        });
    };
    if let Some(f) = rope_freqs {
        vector(&mut plan, "rope_freqs.weight".into(), f);
    }
    matrix(&mut plan, &w.token_embd, &mut counters);
    for (i, l) in w.layers.iter().enumerate() {
        vector(&mut plan, format!("blk.{i}.attn_norm.weight"), &l.attn_norm);
        for t in [&l.wq, &l.wk, &l.wv, &l.wo] {
            matrix(&mut plan, t, &mut counters);
        }
        vector(&mut plan, format!("blk.{i}.ffn_norm.weight"), &l.ffn_norm);
        for t in [&l.w_gate, &l.w_up, &l.w_down] {
            matrix(&mut plan, t, &mut counters);
        }
    }
    vector(&mut plan, "output_norm.weight".into(), &w.output_norm);
    if let Some(o) = &w.output {
        matrix(&mut plan, o, &mut counters);
    }
    plan
}

/// Elements converted per step; bounds the buffers to a few MiB whatever the tensor.
const CHUNK_ELEMS: usize = 1 << 22;

/// Writes `t` converted to `ty`, rows split over `threads` threads, chunk by chunk.
fn convert_matrix(
    t: &Tensor,
    ty: DType,
    threads: usize,
    w: &mut dyn Write,
    pb: &ProgressBar,
) -> io::Result<()> {
    if t.dtype == ty {
        w.write_all(t.bytes())?;
        pb.inc((t.rows * t.cols) as u64);
        return Ok(());
    }
    let view = t.view();
    let row_bytes = ty
        .row_bytes(t.cols)
        .expect("the type was chosen to fit the rows");
    let chunk_rows = (CHUNK_ELEMS / t.cols).max(threads).min(t.rows);
    let mut buf = vec![0u8; chunk_rows * row_bytes];
    let mut start = 0;
    while start < t.rows {
        let n = chunk_rows.min(t.rows - start);
        let chunk = &mut buf[..n * row_bytes];
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (k, part) in chunk.chunks_mut(per * row_bytes).enumerate() {
                let view = &view;
                s.spawn(move || {
                    let mut row = vec![0.0f32; t.cols];
                    for (j, dst) in part.chunks_exact_mut(row_bytes).enumerate() {
                        view.dequantize_row_into(start + k * per + j, &mut row);
                        quantize_row(ty, &row, dst);
                    }
                });
            }
        });
        w.write_all(chunk)?;
        pb.inc((n * t.cols) as u64);
        start += n;
    }
    Ok(())
}

/// Llama 3.1 scaling as GGUF stores it: per-pair divisors of the base frequencies (llama.cpp's
/// converter, `LlamaModel.generate_extra_tensors`; the rule in `Config::rope_inv_freq`).
fn llama3_rope_divisors(c: &Config) -> Option<Vec<f32>> {
    if !matches!(c.rope_scaling, RopeScaling::Llama3 { .. }) {
        return None;
    }
    let plain = Config {
        rope_scaling: RopeScaling::None,
        ..c.clone()
    };
    Some(
        plain
            .rope_inv_freq()
            .iter()
            .zip(c.rope_inv_freq())
            .map(|(f, scaled)| f / scaled)
            .collect(),
    )
}

/// The `general.*` and `llama.*` keys of a model (GGUF spec, "LLM"), as llama.cpp's converter
/// writes them for a Llama checkpoint.
fn llama_metadata(c: &Config, name: &str) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.type".into(), Value::String("model".into())),
    ];
    if !name.is_empty() {
        m.push(("general.name".into(), Value::String(name.into())));
    }
    m.extend([
        ("llama.block_count".into(), u(c.n_layers)),
        ("llama.context_length".into(), u(c.n_ctx_train)),
        ("llama.embedding_length".into(), u(c.d_model)),
        ("llama.feed_forward_length".into(), u(c.d_ff)),
        ("llama.attention.head_count".into(), u(c.n_heads)),
        ("llama.attention.head_count_kv".into(), u(c.n_kv_heads)),
        ("llama.rope.freq_base".into(), Value::F32(c.rope_theta)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(c.norm_eps),
        ),
        ("llama.attention.key_length".into(), u(c.head_dim)),
        ("llama.attention.value_length".into(), u(c.head_dim)),
        ("llama.vocab_size".into(), u(c.n_vocab)),
        ("llama.rope.dimension_count".into(), u(c.head_dim)),
    ]);
    if let RopeScaling::Linear { factor } = c.rope_scaling {
        m.push((
            "llama.rope.scaling.type".into(),
            Value::String("linear".into()),
        ));
        m.push(("llama.rope.scaling.factor".into(), Value::F32(factor)));
    }
    m
}

/// The GGUF name of a byte-level pre-tokenizer (llama.cpp `tokenizer.ggml.pre`).
fn pre_name(p: PreTokenizer) -> &'static str {
    match p {
        PreTokenizer::Llama3 => "llama-bpe",
        PreTokenizer::Gpt2 => "gpt2",
        PreTokenizer::SmolLm => "smollm",
    }
}

/// The `tokenizer.*` keys (GGUF spec, "Tokenizer"). A model with more embedding rows than tokens
/// gets padding tokens `[PAD<i>]` of type unused, as llama.cpp's converter pads the vocabulary.
fn tokenizer_metadata(tok: &Tokenizer, n_vocab: usize) -> Vec<(String, Value)> {
    let n = tok.n_vocab();
    let spm = tok.kind() == ModelKind::SentencePiece;
    let mut tokens: Vec<Value> = (0..n as u32)
        .map(|i| Value::String(tok.token_piece(i).unwrap_or_default().to_string()))
        .collect();
    let mut types: Vec<Value> = (0..n as u32)
        .map(|i| Value::I32(tok.token_type(i).map_or(1, |t| t as i32)))
        .collect();
    for i in n..n_vocab {
        tokens.push(Value::String(format!("[PAD{i}]")));
        types.push(Value::I32(5));
    }
    let mut m: Vec<(String, Value)> = vec![
        (
            "tokenizer.ggml.model".into(),
            Value::String(if spm { "llama" } else { "gpt2" }.into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            Value::String(tok.pre_tokenizer().map_or("default", pre_name).into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(ValueType::String, tokens),
        ),
    ];
    if spm {
        let scores = spm_scores(tok, n_vocab);
        m.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
        ));
    }
    m.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(ValueType::I32, types),
    ));
    if !spm {
        let piece = |i: u32| tok.token_piece(i).unwrap_or_default();
        let merges: Vec<Value> = tok
            .merges()
            .into_iter()
            .map(|(l, r, _)| Value::String(format!("{} {}", piece(l), piece(r))))
            .collect();
        m.push((
            "tokenizer.ggml.merges".into(),
            Value::Array(ValueType::String, merges),
        ));
    }
    let ids = [
        ("tokenizer.ggml.bos_token_id", tok.bos()),
        ("tokenizer.ggml.eos_token_id", tok.eos()),
        ("tokenizer.ggml.unknown_token_id", tok.unk()),
        ("tokenizer.ggml.padding_token_id", tok.pad()),
    ];
    for (k, id) in ids {
        if let Some(id) = id {
            m.push((k.into(), Value::U32(id)));
        }
    }
    m.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(tok.add_bos_default()),
    ));
    m.push((
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(tok.add_eos_default()),
    ));
    // llama.cpp assumes a space prefix for SentencePiece; say so only when it is off.
    if spm && !tok.add_space_prefix() {
        m.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)));
    }
    if let Some(t) = tok.chat_template() {
        m.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    m
}

/// SentencePiece scores: as given, or, for a `tokenizer.json` that has merges instead, minus the
/// rank of the merge that makes each piece (so merging by score follows the merge order).
fn spm_scores(tok: &Tokenizer, n_vocab: usize) -> Vec<f32> {
    let mut s = tok.scores().to_vec();
    if s.is_empty() {
        s = vec![0.0; tok.n_vocab()];
        let mut seen = vec![false; tok.n_vocab()];
        for (rank, (_, _, merged)) in tok.merges().into_iter().enumerate() {
            let m = merged as usize;
            if !seen[m] {
                seen[m] = true;
                s[m] = -(rank as f32);
            }
        }
    }
    s.resize(n_vocab, 0.0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `use_more_bits` on 16 and 32 layers (the layer lists follow from its formula).
    #[test]
    fn more_bits_layers() {
        let pick = |n| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(pick(16), [0, 1, 4, 7, 10, 13, 14, 15]);
        assert_eq!(pick(2), [1]);
    }

    /// The order of llama.cpp's `weight_name_comparer`: blocks by number, not by text.
    #[test]
    fn tensors_in_llama_cpp_order() {
        let mut names = [
            "blk.10.attn_v.weight",
            "token_embd.weight",
            "blk.2.ffn_down.weight",
            "blk.2.attn_v.weight",
            "output.weight",
            "blk.1.attn_v.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.1.attn_v.weight",
                "blk.2.attn_v.weight",
                "blk.2.ffn_down.weight",
                "blk.10.attn_v.weight",
            ]
        );
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(DType::Q4_K, 64), DType::Q5_0);
        assert_eq!(fallback(DType::Q3_K, 96), DType::Q4_0);
        assert_eq!(fallback(DType::Q6_K, 2048), DType::Q6_K);
        assert_eq!(fallback(DType::Q5_K, 48), DType::F16);
        assert_eq!(fallback(DType::Q8_0, 40), DType::F16);
    }

    #[test]
    fn ftype_names() {
        assert_eq!(Ftype::parse("q4_k"), Some(Ftype::Q4_K_M));
        assert_eq!(Ftype::parse("Q4_K_M").map(Ftype::id), Some(15));
        assert_eq!(Ftype::parse("bf16").map(Ftype::id), Some(32));
        assert_eq!(Ftype::parse("Q4_2"), None);
    }
}
