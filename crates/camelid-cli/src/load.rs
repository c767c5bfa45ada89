//! Loading a model and its tokenizer from what the user named.

use anyhow::{Result, bail};
use camelid_kernels::Precision;
use camelid_model::Model;
use camelid_model::sampling::{SamplingHints, sampling_hints};
use camelid_model::tokenizer_load::{load_tokenizer, tokenizer_from_gguf};
use camelid_model::weights::Checkpoint;
use camelid_tokenizer::Tokenizer;

#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// A GGUF file, a Hugging Face model folder, `hf:OWNER/REPO[/FILE]`, or a known name
    /// (default: SmolLM2-135M-Instruct, fetched on first use).
    #[arg(short, long)]
    pub model: Option<String>,
    /// Context length (default: the model's training context, at most 4096).
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Compute threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Products with quantized weights: `fast` (activations rounded to 8 bits, as llama.cpp
    /// does) or `exact` (f32 activations: the arithmetic of the unquantized reference, slower).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fast)]
    pub precision: PrecisionArg,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

/// A device to run a model on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The GPU of this ordinal.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("{s:?} is not a device: cpu, cuda or cuda:N")),
        }
    }
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
        Some(t) => model.set_threads(t),
        None => {}
    }
    Ok(())
}

pub fn load(a: &LoadArgs) -> Result<Loaded> {
    let path = crate::fetch::resolve_model(a.model.as_deref())?;
    let ckpt = Checkpoint::open(&path)?;
    // One parse of the file serves both the weights and the vocabulary.
    let tokenizer = match ckpt.gguf() {
        Some(g) => tokenizer_from_gguf(g)?,
        None => load_tokenizer(&path)?,
    };
    let sampling = sampling_hints(&ckpt)?;
    let mut model = open_model(ckpt, a.device)?;
    set_threads(&mut model, a.threads)?;
    model.set_precision(a.precision.into());
    let n_ctx = match a.ctx {
        Some(0) => bail!("--ctx must be at least 1"),
        Some(c) if c > model.config.n_ctx_train => bail!(
            "--ctx {c} is beyond the {} tokens this model was trained for",
            model.config.n_ctx_train
        ),
        Some(c) => c,
        None => model.config.n_ctx_train.min(4096),
    };
    Ok(Loaded {
        model,
        tokenizer,
        n_ctx,
        sampling,
    })
}
