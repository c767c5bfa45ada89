//! Loading a model and its tokenizer from what the user named.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use camelid_engine::load::{LoadOptions, open_model};
use camelid_kernels::Precision;
use camelid_kernels::pool::{cap_threads, usable_cores};
use camelid_model::weights::Checkpoint;
use camelid_model::{CacheType, Device, Model};

pub use camelid_engine::load::Loaded;

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
    #[arg(short, long, help = THREADS_HELP, value_parser = camelid_engine::options::threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fast, help = PRECISION_HELP)]
    pub precision: PrecisionArg,
    #[arg(long, value_enum, help = CACHE_TYPE_HELP)]
    pub cache_type: Option<CacheTypeArg>,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    #[command(flatten)]
    pub adapters: AdapterArgs,
}

/// `--lora` and `--lora-scaled`, spelled as llama.cpp spells them: LoRA adapters merged into
/// the weights at load (`camelid_model::lora`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AdapterArgs {
    /// A LoRA adapter to apply: a PEFT folder (adapter_config.json + adapter_model.safetensors)
    /// or a GGUF adapter (llama.cpp's convert_lora_to_gguf.py). Repeatable or comma-separated;
    /// merged into the weights at load.
    #[arg(long = "lora", value_name = "ADAPTER", value_delimiter = ',')]
    pub lora: Vec<PathBuf>,
    /// A LoRA adapter at a scale (1 = as trained, 0.5 = half its change). Repeatable or
    /// comma-separated.
    #[arg(
        long = "lora-scaled",
        value_name = "ADAPTER:SCALE",
        value_delimiter = ','
    )]
    pub lora_scaled: Vec<String>,
}

impl AdapterArgs {
    /// Every adapter with its scale, in the order given (`--lora` first).
    pub fn get(&self) -> Result<Vec<(PathBuf, f32)>> {
        let mut out: Vec<(PathBuf, f32)> = self.lora.iter().map(|p| (p.clone(), 1.0)).collect();
        for arg in &self.lora_scaled {
            let (path, scale) = arg
                .rsplit_once(':')
                .and_then(|(p, s)| Some((p, s.parse::<f32>().ok().filter(|s| s.is_finite())?)))
                .ok_or_else(|| {
                    anyhow::anyhow!("--lora-scaled {arg}: not ADAPTER:SCALE with a number SCALE")
                })?;
            out.push((PathBuf::from(path), scale));
        }
        Ok(out)
    }
}

/// The help of `--cache-type`.
pub const CACHE_TYPE_HELP: &str = "What the KV cache holds: `f16` (llama.cpp's default: half the \
memory of f32 and faster deep into long contexts, keys and values rounded to 16-bit floats) or \
`f32` [default: f16 at --precision fast, f32 at --precision exact]";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheTypeArg {
    F32,
    F16,
}

impl CacheTypeArg {
    /// The cache asked for, or the default for `precision`.
    pub fn resolve(c: Option<CacheTypeArg>, precision: Precision) -> CacheType {
        match c {
            Some(CacheTypeArg::F32) => CacheType::F32,
            Some(CacheTypeArg::F16) => CacheType::F16,
            None => CacheType::default_for(precision),
        }
    }
}

/// Where and how the evaluation commands (perplexity, score, logits) compute.
#[derive(clap::Args, Clone, Debug)]
pub struct ComputeArgs {
    #[arg(short, long, help = THREADS_HELP, value_parser = camelid_engine::options::threads,
          allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    #[arg(long, value_enum, help = CACHE_TYPE_HELP)]
    pub cache_type: Option<CacheTypeArg>,
    /// Where to compute: `cpu`, or `cuda[:N]` (an NVIDIA GPU; builds with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

impl ComputeArgs {
    /// The model `model` names, loaded with a context of `ctx` tokens and `adapters` merged.
    pub fn load(
        &self,
        model: Option<String>,
        ctx: Option<usize>,
        adapters: &AdapterArgs,
    ) -> Result<Loaded> {
        load(&self.load_args(model, ctx, adapters))
    }

    /// These settings as [`LoadArgs`] for `model` with a context of `ctx` tokens.
    pub fn load_args(
        &self,
        model: Option<String>,
        ctx: Option<usize>,
        adapters: &AdapterArgs,
    ) -> LoadArgs {
        LoadArgs {
            model,
            ctx,
            threads: self.threads,
            precision: self.precision.get(),
            cache_type: self.cache_type,
            device: self.device,
            adapters: adapters.clone(),
        }
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

/// The threads `--threads` asks for, capped (`None`, all cores, is the model's default).
pub fn threads_arg(threads: Option<usize>) -> Result<Option<usize>> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        t => Ok(t.map(thread_count)),
    }
}

/// `--threads` where leaving it out means all usable cores: the threads to start.
pub fn threads_or_all(threads: Option<usize>) -> Result<usize> {
    Ok(threads_arg(threads)?.unwrap_or_else(|| usable_cores().unwrap_or(1)))
}

/// A model resolved as `-m` names it, on `device`, with `--threads`, `--precision`,
/// `--cache-type` and the adapters applied.
pub fn open_resolved(
    model: Option<&str>,
    device: Device,
    threads: Option<usize>,
    precision: PrecisionArg,
    cache_type: Option<CacheTypeArg>,
    adapters: Vec<(PathBuf, f32)>,
) -> Result<(PathBuf, Model)> {
    let path = crate::fetch::resolve_model(model)?;
    let o = LoadOptions {
        device,
        threads: threads_arg(threads)?,
        precision: precision.into(),
        cache_type: CacheTypeArg::resolve(cache_type, precision.into()),
        ctx: None,
        adapters,
    };
    let m = open_model(Checkpoint::open(&path)?, &o)?;
    Ok((path, m))
}

/// The environment variable that keeps a `--threads` above the core count as given. An
/// environment variable rather than a flag, so that every command that takes `--threads`
/// honours it alike and a benchmark script can set it once.
pub const THREADS_FORCE_ENV: &str = "CAMELID_THREADS_FORCE";

/// The help of every `--threads`.
pub const THREADS_HELP: &str = "Compute threads, -1 = all cores (default: all cores; more than \
the cores this process may use are capped to them unless CAMELID_THREADS_FORCE=1)";

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
    let o = LoadOptions {
        device: a.device,
        threads: threads_arg(a.threads)?,
        precision: a.precision.into(),
        cache_type: CacheTypeArg::resolve(a.cache_type, a.precision.into()),
        ctx: a.ctx,
        adapters: a.adapters.get()?,
    };
    Ok(camelid_engine::load::load(path, &o)?)
}
