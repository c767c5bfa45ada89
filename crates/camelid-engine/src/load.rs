//! A model, its tokenizer and its recommended sampling, opened from a checkpoint on a device:
//! what every command (and a library user) does before anything else.

use std::fmt;
use std::path::{Path, PathBuf};

use camelid_kernels::Precision;
use camelid_model::lora;
use camelid_model::sampling::{SamplingHints, sampling_hints};
use camelid_model::tokenizer_load::{self, checkpoint_tokenizer};
use camelid_model::weights::{Checkpoint, Weights};
use camelid_model::{CacheType, Config, Device, Model, ModelError};
use camelid_tokenizer::Tokenizer;

/// How to open a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute threads; `None` keeps the model's default (all usable cores).
    pub threads: Option<usize>,
    pub precision: Precision,
    /// What the KV caches hold.
    pub cache_type: CacheType,
    /// The context asked for; `None` is the model's training context, at most 4096.
    pub ctx: Option<usize>,
    /// LoRA adapters (PEFT folders or GGUF adapters), each with the user's scale, merged into
    /// the weights at load ([`camelid_model::lora`]).
    pub adapters: Vec<(PathBuf, f32)>,
}

pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub n_ctx: usize,
    /// The sampling the checkpoint recommends (defaults for the options left unset).
    pub sampling: SamplingHints,
}

/// Why a model could not be opened.
#[derive(Debug)]
pub enum LoadError {
    Model(ModelError),
    Tokenizer(tokenizer_load::LoadError),
    /// The context asked for does not suit the model.
    Context(String),
    /// `--device cuda` in a build without the CUDA backend.
    NoCuda,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Model(e) => e.fmt(f),
            LoadError::Tokenizer(e) => e.fmt(f),
            LoadError::Context(msg) => f.write_str(msg),
            LoadError::NoCuda => f.write_str(
                "this camelid was built without CUDA support; build it with `--features cuda`",
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent, as `Display` is: the inner error's own source, not the inner error again.
        match self {
            LoadError::Model(e) => e.source(),
            LoadError::Tokenizer(e) => e.source(),
            _ => None,
        }
    }
}

impl From<ModelError> for LoadError {
    fn from(e: ModelError) -> LoadError {
        LoadError::Model(e)
    }
}

impl From<tokenizer_load::LoadError> for LoadError {
    fn from(e: tokenizer_load::LoadError) -> LoadError {
        LoadError::Tokenizer(e)
    }
}

/// The model of a checkpoint, its weights (with `o.adapters` merged) on `o.device`, with
/// `o.threads`, `o.precision` and `o.cache_type` applied (`o.ctx` is not looked at).
pub fn open_model(ckpt: Checkpoint, o: &LoadOptions) -> Result<Model, LoadError> {
    let mut weights = ckpt.load_weights()?;
    lora::merge_files(&mut weights, &ckpt.config, &o.adapters, o.precision)?;
    let mut model = match o.device {
        Device::Cpu => Model::new(ckpt.config, weights),
        Device::Cuda(ordinal) => cuda_model(ckpt.config, weights, ordinal)?,
    };
    if let Some(t) = o.threads {
        model.set_threads(t);
    }
    model.set_precision(o.precision);
    model.set_cache_type(o.cache_type)?;
    Ok(model)
}

#[cfg(feature = "cuda")]
fn cuda_model(config: Config, weights: Weights, ordinal: usize) -> Result<Model, LoadError> {
    let inv_freq = camelid_model::llama::rope_inv_freq(&config, &weights);
    let backend = camelid_cuda::backend(&config, &weights, inv_freq, ordinal)?;
    Ok(Model::with_backend(config, backend))
}

#[cfg(not(feature = "cuda"))]
fn cuda_model(_: Config, _: Weights, _: usize) -> Result<Model, LoadError> {
    Err(LoadError::NoCuda)
}

/// The model at `path` (a GGUF, a Hugging Face or Meta folder) with its tokenizer, sampling
/// hints and context.
pub fn load(path: &Path, o: &LoadOptions) -> Result<Loaded, LoadError> {
    let ckpt = Checkpoint::open(path)?;
    let tokenizer = checkpoint_tokenizer(&ckpt)?;
    let sampling = sampling_hints(&ckpt)?;
    let model = open_model(ckpt, o)?;
    let n_ctx = model.config.context(o.ctx).map_err(LoadError::Context)?;
    Ok(Loaded {
        model,
        tokenizer,
        n_ctx,
        sampling,
    })
}
