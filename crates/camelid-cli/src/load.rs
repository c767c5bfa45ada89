//! Loading a model and its tokenizer from what the user named.

use anyhow::{Result, bail};
use camelid_kernels::Precision;
use camelid_model::Model;
use camelid_model::sampling::{SamplingHints, sampling_hints};
use camelid_model::tokenizer_load::{load_tokenizer, tokenizer_from_gguf};
use camelid_model::weights::Checkpoint;
use camelid_tokenizer::Tokenizer;

/// The help of every `-m` that goes through model resolution; the names are those
/// `fetch::ModelSpec::parse` knows.
pub const MODEL_HELP: &str = "A GGUF file, a Hugging Face model folder (config.json + \
safetensors), `hf:OWNER/REPO[/FILE]`, or the name `smollm2` (SmolLM2-135M-Instruct, the default; \
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
    /// Compute threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fast, help = PRECISION_HELP)]
    pub precision: PrecisionArg,
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
        Some(t) => model.threads = t,
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
    let mut model = Model::from_checkpoint(ckpt)?;
    set_threads(&mut model, a.threads)?;
    model.kernels.precision = a.precision.into();
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
