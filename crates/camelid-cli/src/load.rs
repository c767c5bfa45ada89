//! Loading a model and its tokenizer from what the user named.

use std::path::Path;

use anyhow::{Result, bail};
use camelid_kernels::Precision;
use camelid_kernels::pool::{cap_threads, usable_cores};
use camelid_model::sampling::{SamplingHints, sampling_hints};
use camelid_model::tokenizer_load::checkpoint_tokenizer;
use camelid_model::weights::Checkpoint;
use camelid_model::{Device, Model};
use camelid_tokenizer::Tokenizer;

/// The help of every `-m` that goes through model resolution; the names are those
/// `fetch::ModelSpec::parse` knows.
pub const MODEL_HELP: &str = "A GGUF file, a Hugging Face model folder (config.json + \
safetensors), a Meta release folder (params.json + consolidated.NN.pth), `hf:OWNER/REPO[/FILE]`, or the name `smollm2` (SmolLM2-135M-Instruct, the default; \
fetched on first use)";

/// The help of `--precision`, one text for every command that runs a model.
pub const PRECISION_HELP: &str = "Products with quantized weights: `fast` (activations rounded \
to 8 bits, as llama.cpp does) or `exact` (f32 activations: the arithmetic of the unquantized \
reference, slower)";

#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    #[arg(short, long, help = MODEL_HELP)]
    pub model: Option<String>,
    /// Context length (default: the model's training context, at most 4096).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    #[arg(short, long, help = THREADS_HELP, value_parser = parse_threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fast, help = PRECISION_HELP)]
    pub precision: PrecisionArg,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

/// The model of a checkpoint, its weights on `device`.
pub fn open_model(ckpt: Checkpoint, device: Device) -> Result<Model> {
    match device {
        Device::Cpu => Ok(Model::from_checkpoint(ckpt)?),
        Device::Cuda(ordinal) => cuda_model(ckpt, ordinal),
    }
}

#[cfg(feature = "cuda")]
fn cuda_model(ckpt: Checkpoint, ordinal: usize) -> Result<Model> {
    let weights = ckpt.load_weights()?;
    let inv_freq = camelid_model::llama::rope_inv_freq(&ckpt.config, &weights);
    let backend = camelid_cuda::backend(&ckpt.config, &weights, inv_freq, ordinal)?;
    Ok(Model::with_backend(ckpt.config, backend))
}

#[cfg(not(feature = "cuda"))]
fn cuda_model(_: Checkpoint, _: usize) -> Result<Model> {
    bail!("this camelid was built without CUDA support; build it with `--features cuda`")
}

/// Where and how the evaluation commands (perplexity, score, logits) compute.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ComputeArgs {
    #[arg(short, long, help = THREADS_HELP, value_parser = parse_threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

impl ComputeArgs {
    /// The model `model` names, loaded with a context of `ctx` tokens.
    pub fn load(&self, model: Option<String>, ctx: Option<usize>) -> Result<Loaded> {
        load(&LoadArgs {
            model,
            ctx,
            threads: self.threads,
            precision: self.precision.get(),
            device: self.device,
        })
    }
}

/// `--precision` for the commands that used to spell it `--exact` (perplexity, score, logits):
/// the old flag stays as a hidden alias so that scripts written for it still run.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct PrecisionArgs {
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fast, help = PRECISION_HELP)]
    precision: PrecisionArg,
    #[arg(long, hide = true, conflicts_with = "precision")]
    exact: bool,
}

impl PrecisionArgs {
    pub fn get(&self) -> PrecisionArg {
        if self.exact {
            PrecisionArg::Exact
        } else {
            self.precision
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    Fast,
    Exact,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::Fast => Precision::Fast,
            PrecisionArg::Exact => Precision::Exact,
        }
    }
}

pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub n_ctx: usize,
    /// The sampling the checkpoint recommends (defaults for the options left unset).
    pub sampling: SamplingHints,
}

/// Applies `--threads` (the default, all cores, is the model's own).
pub fn set_threads(model: &mut Model, threads: Option<usize>) -> Result<()> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => model.set_threads(thread_count(t)),
        None => {}
    }
    Ok(())
}

/// `--threads` where leaving it out means all usable cores: the threads to start.
pub fn threads_or_all(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => Ok(thread_count(t)),
        None => Ok(usable_cores().unwrap_or(1)),
    }
}

/// A model resolved as `-m` names it, on `device`, with `--threads` and `--precision` applied.
pub fn open_resolved(
    model: Option<&str>,
    device: Device,
    threads: Option<usize>,
    precision: PrecisionArg,
) -> Result<(std::path::PathBuf, Model)> {
    let path = crate::fetch::resolve_model(model)?;
    let mut m = open_model(Checkpoint::open(&path)?, device)?;
    set_threads(&mut m, threads)?;
    m.set_precision(precision.into());
    Ok((path, m))
}

/// The environment variable that keeps a `--threads` above the core count as given. An
/// environment variable rather than a flag, so that every command that takes `--threads`
/// honours it alike and a benchmark script can set it once.
pub const THREADS_FORCE_ENV: &str = "CAMELID_THREADS_FORCE";

/// The help of every `--threads`.
pub const THREADS_HELP: &str = "Compute threads, -1 = all cores (default: all cores; more than \
the cores this process may use are capped to them unless CAMELID_THREADS_FORCE=1)";

/// `--threads`: a count ≥ 1, or -1 for all usable cores (llama.cpp's default value).
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<i64>().map_err(|e| e.to_string())? {
        -1 => Ok(usable_cores().unwrap_or(1)),
        n if n >= 1 => usize::try_from(n).map_err(|e| e.to_string()),
        n => Err(format!(
            "expected a count of threads ≥ 1, or -1 for all cores, got {n}"
        )),
    }
}

/// The threads to compute with when `requested` were asked for: capped to the usable cores,
/// with a warning, unless CAMELID_THREADS_FORCE=1 (see `camelid_kernels::pool::cap_threads`).
pub fn thread_count(requested: usize) -> usize {
    let forced = std::env::var_os(THREADS_FORCE_ENV).is_some_and(|v| v == "1");
    let hint = format!("{THREADS_FORCE_ENV}=1");
    let (n, warning) = cap_threads(requested, usable_cores(), forced, &hint);
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    n
}

pub fn load(a: &LoadArgs) -> Result<Loaded> {
    let path = crate::fetch::resolve_model(a.model.as_deref())?;
    load_from(&path, a)
}

/// [`load`] of a model already resolved to `path` (`a.model` is not looked at).
pub fn load_from(path: &Path, a: &LoadArgs) -> Result<Loaded> {
    let ckpt = Checkpoint::open(path)?;
    let tokenizer = checkpoint_tokenizer(&ckpt)?;
    let sampling = sampling_hints(&ckpt)?;
    let mut model = open_model(ckpt, a.device)?;
    set_threads(&mut model, a.threads)?;
    model.set_precision(a.precision.into());
    let n_ctx = model.config.context(a.ctx).map_err(anyhow::Error::msg)?;
    Ok(Loaded {
        model,
        tokenizer,
        n_ctx,
        sampling,
    })
}
