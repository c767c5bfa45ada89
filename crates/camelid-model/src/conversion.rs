//! Whole conversions as `camelid quantize` and `camelid random-model` run them, on top of the
//! rules in [`crate::convert`]: the output's metadata and tensor plan for a checkpoint (GGUF
//! metadata copied; a Hugging Face folder's written from its config and tokenizer) or for a
//! random model of a preset's shape, the check that refuses to requantize unasked (as
//! `llama-quantize` does without `--allow-requantize`), the check that OUTPUT is not the input,
//! and the summary of what was written.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use camelid_formats::gguf::{DEFAULT_ALIGNMENT, GgufWriter};
use camelid_kernels::DType;
use camelid_tokenizer::Tokenizer;

use crate::config::ConfigError;
use crate::convert::{
    self, Ftype, Planned, llama_metadata, llama3_rope_divisors, plan_canonical, plan_gguf,
    tokenizer_metadata,
};
use crate::tokenizer_load::{LoadError, load_tokenizer};
use crate::weights::{Checkpoint, Weights};
use crate::{Config, ModelError};

/// Why a conversion cannot be made.
#[derive(Debug)]
pub enum ConversionError {
    Model(ModelError),
    /// The tokenizer of `path` could not be read.
    Tokenizer {
        path: PathBuf,
        source: LoadError,
    },
    /// A tokenizer with more tokens than the model has embeddings.
    TooManyTokens {
        path: PathBuf,
        tokens: usize,
        embeddings: usize,
    },
    /// A random model's shape option out of range (`what` says which and why).
    Shape(String),
    /// The shape asked for is not a valid model.
    Config(ConfigError),
    /// Quantized tensors would be requantized and that was not allowed.
    Requantize {
        input: PathBuf,
        found: Requantize,
    },
    /// OUTPUT cannot be written: the input itself, or a folder (`why`).
    Output {
        path: PathBuf,
        why: String,
    },
    /// Writing the file failed.
    Write {
        path: PathBuf,
        source: camelid_formats::Error,
    },
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversionError::Model(e) => e.fmt(f),
            ConversionError::Tokenizer { path, .. } => {
                write!(f, "{}: reading the tokenizer", path.display())
            }
            ConversionError::TooManyTokens {
                path,
                tokens,
                embeddings,
            } => write!(
                f,
                "{}: the tokenizer has {tokens} tokens but the model only {embeddings} embeddings",
                path.display()
            ),
            ConversionError::Shape(s) => f.write_str(s),
            ConversionError::Config(e) => {
                write!(f, "the shape asked for is not a valid model: {e}")
            }
            ConversionError::Requantize { input, found } => write!(
                f,
                "{}: tensor {} is {}, already quantized ({} tensors to convert from {}); \
                 requantizing can severely reduce quality compared to quantizing from F32, F16 or \
                 BF16 weights: pass --allow-requantize to do it anyway",
                input.display(),
                found.first,
                found.first_type,
                found.count,
                found.from.join(", ")
            ),
            ConversionError::Output { path, why } => write!(f, "{}: {why}", path.display()),
            ConversionError::Write { path, .. } => write!(f, "writing {}", path.display()),
        }
    }
}

impl std::error::Error for ConversionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent, as `Display` is.
            ConversionError::Model(e) => std::error::Error::source(e),
            ConversionError::Tokenizer { source, .. } => Some(source),
            ConversionError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ModelError> for ConversionError {
    fn from(e: ModelError) -> Self {
        ConversionError::Model(e)
    }
}

/// The output file's metadata (in the writer) and its tensors, planned but not yet converted.
pub struct Conversion<'a> {
    pub writer: GgufWriter<'a>,
    pub plan: Vec<Planned<'a>>,
}

impl<'a> Conversion<'a> {
    /// Elements of the planned tensors: the length of a progress bar.
    pub fn elements(&self) -> u64 {
        self.plan
            .iter()
            .map(|p| p.dims.iter().product::<u64>())
            .sum()
    }

    /// Converts the planned tensors on `threads` threads and writes the file (to a temporary
    /// name beside `path`, renamed over it at the end); returns its size and what it holds.
    pub fn write(
        self,
        path: &Path,
        ft: Ftype,
        threads: usize,
        progress: &'a dyn convert::Progress,
    ) -> Result<(u64, Summary), ConversionError> {
        let Conversion { mut writer, plan } = self;
        let summary = Summary::of(&plan);
        convert::add_tensors(&mut writer, plan, ft, threads, progress)
            .map_err(|e| ConversionError::Model(e.into()))?;
        let written = writer
            .write_file(path)
            .map_err(|source| ConversionError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((written, summary))
    }
}

/// The RoPE frequency divisors to write for a checkpoint: the file's own, else Llama 3's for a
/// Hugging Face folder of a Llama 3.1 shape (a GGUF without them has none to write).
pub fn rope_freqs(ckpt: &Checkpoint, weights: &Weights) -> Option<Vec<f32>> {
    match (&weights.rope_freqs, ckpt.gguf()) {
        (Some(f), _) => Some(f.clone()),
        (None, None) => llama3_rope_divisors(&ckpt.config),
        (None, Some(_)) => None,
    }
}

/// The conversion of `ckpt` to `ft`: a GGUF's metadata is copied and its tensors planned by
/// llama.cpp's rules; a Hugging Face folder gets metadata from its config and tokenizer (which
/// must fit the embeddings). `rope_freqs` from [`rope_freqs`].
pub fn of_checkpoint<'a>(
    ckpt: &'a Checkpoint,
    weights: &'a Weights,
    rope_freqs: Option<&'a [f32]>,
    ft: Ftype,
    pure: bool,
) -> Result<Conversion<'a>, ConversionError> {
    if let Some(g) = ckpt.gguf() {
        let mut writer = GgufWriter::new(g.alignment());
        convert::copy_metadata(g, &mut writer);
        let plan = plan_gguf(g, &ckpt.config, weights, ft, pure);
        return Ok(Conversion { writer, plan });
    }
    let path = ckpt.path.as_path();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut writer = GgufWriter::new(DEFAULT_ALIGNMENT);
    for (k, v) in llama_metadata(&ckpt.config, &name) {
        writer.add_metadata(&k, v);
    }
    add_tokenizer(&mut writer, path, ckpt.config.n_vocab)?;
    let plan = plan_canonical(&ckpt.config, weights, rope_freqs, ft, pure);
    Ok(Conversion { writer, plan })
}

/// The tokenizer keys of the tokenizer at `path`, padded to `n_vocab`.
fn add_tokenizer(
    writer: &mut GgufWriter,
    path: &Path,
    n_vocab: usize,
) -> Result<(), ConversionError> {
    let tok: Tokenizer = load_tokenizer(path).map_err(|source| ConversionError::Tokenizer {
        path: path.to_path_buf(),
        source,
    })?;
    if tok.n_vocab() > n_vocab {
        return Err(ConversionError::TooManyTokens {
            path: path.to_path_buf(),
            tokens: tok.n_vocab(),
            embeddings: n_vocab,
        });
    }
    for (k, v) in tokenizer_metadata(&tok, n_vocab) {
        writer.add_metadata(&k, v);
    }
    Ok(())
}

impl Config {
    /// This shape made smaller, checked (None: as it is): the first `layers` layers, a
    /// vocabulary of `vocab` tokens, a model width of `dim` with as many heads of the shape's
    /// head size and its query heads per kv head, a feed-forward width of `ffn` (a multiple of
    /// 32).
    pub fn resized(
        &self,
        layers: Option<usize>,
        vocab: Option<usize>,
        dim: Option<usize>,
        ffn: Option<usize>,
    ) -> Result<Config, ConversionError> {
        let mut c = self.clone();
        let shape = |s: String| Err(ConversionError::Shape(s));
        if let Some(n) = layers {
            if n == 0 || n > c.n_layers {
                return shape(format!("--layers must be in 1..={}", c.n_layers));
            }
            c.n_layers = n;
        }
        if let Some(v) = vocab {
            if v == 0 || v > c.n_vocab {
                return shape(format!("--vocab must be in 1..={}", c.n_vocab));
            }
            c.n_vocab = v;
        }
        if let Some(d) = dim {
            let group = c.n_heads / c.n_kv_heads;
            let unit = c.head_dim * group;
            if d == 0 || !d.is_multiple_of(unit) {
                return shape(format!(
                    "--dim must be a positive multiple of {unit} (head size {} × {group} query \
                     heads per kv head)",
                    c.head_dim
                ));
            }
            c.d_model = d;
            c.n_heads = d / c.head_dim;
            c.n_kv_heads = c.n_heads / group;
        }
        if let Some(f) = ffn {
            if f == 0 || !f.is_multiple_of(32) {
                return shape("--ffn must be a positive multiple of 32".into());
            }
            c.d_ff = f;
        }
        c.validate().map_err(ConversionError::Config)?;
        Ok(c)
    }
}

/// The conversion of random `weights` of `config` named `name`, with the tokenizer keys of
/// `tokenizer` (padded to the vocabulary) when given.
pub fn of_random<'a>(
    config: &'a Config,
    weights: &'a Weights,
    rope_freqs: Option<&'a [f32]>,
    name: &str,
    tokenizer: Option<&Path>,
    ft: Ftype,
) -> Result<Conversion<'a>, ConversionError> {
    let mut writer = GgufWriter::new(DEFAULT_ALIGNMENT);
    for (k, v) in llama_metadata(config, name) {
        writer.add_metadata(&k, v);
    }
    if let Some(path) = tokenizer {
        add_tokenizer(&mut writer, path, config.n_vocab)?;
    }
    let plan = plan_canonical(config, weights, rope_freqs, ft, false);
    Ok(Conversion { writer, plan })
}

/// Quantized tensors a plan converts to another type: the first, how many, from which types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requantize {
    pub first: String,
    pub first_type: DType,
    pub count: usize,
    /// The types converted from, sorted by name.
    pub from: Vec<&'static str>,
}

impl fmt::Display for Requantize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requantizing {} tensors from {} through f32; this can severely reduce quality \
             compared to quantizing from 16-bit or 32-bit weights",
            self.count,
            self.from.join(", ")
        )
    }
}

/// What of `plan` would be requantized: tensors already in their chosen type are copied
/// without loss and do not count.
pub fn requantized(plan: &[Planned]) -> Option<Requantize> {
    let tensors: Vec<_> = plan.iter().filter_map(Planned::requantizes).collect();
    let first = tensors.first()?;
    let mut from: Vec<&'static str> = tensors.iter().map(|t| t.dtype.name()).collect();
    from.sort_unstable();
    from.dedup();
    Some(Requantize {
        first: first.name.clone(),
        first_type: first.dtype,
        count: tensors.len(),
        from,
    })
}

/// Refuses a plan that requantizes unless `allow`; with `allow`, what it requantizes (for a
/// warning).
pub fn check_requantize(
    input: &Path,
    plan: &[Planned],
    allow: bool,
) -> Result<Option<Requantize>, ConversionError> {
    match requantized(plan) {
        Some(found) if !allow => Err(ConversionError::Requantize {
            input: input.to_path_buf(),
            found,
        }),
        r => Ok(r),
    }
}

/// Refuses an OUTPUT that is a folder, the input, or one of the input folder's files.
pub fn check_output(input: &Path, output: &Path) -> Result<(), ConversionError> {
    let refuse = |why: String| {
        Err(ConversionError::Output {
            path: output.to_path_buf(),
            why,
        })
    };
    if !input.exists() {
        return Err(ConversionError::Output {
            path: input.to_path_buf(),
            why: "no such file or folder".into(),
        });
    }
    if output.is_dir() {
        return refuse("OUTPUT is a folder; name a file".into());
    }
    let (Ok(out), Ok(inp)) = (output.canonicalize(), input.canonicalize()) else {
        // OUTPUT does not exist yet, so it cannot be the input.
        return Ok(());
    };
    if out == inp || same_file(&out, &inp) || (inp.is_dir() && out.parent() == Some(&inp)) {
        return refuse(format!(
            "OUTPUT would overwrite the input {}; choose another name",
            input.display()
        ));
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

/// Tensors, weights and bytes of a plan by output type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per type name: (tensors, weights, bytes).
    pub by_type: BTreeMap<&'static str, (usize, u64, u64)>,
}

impl Summary {
    pub fn of(plan: &[Planned]) -> Summary {
        let mut s = Summary::default();
        for p in plan {
            let e = s.by_type.entry(p.ty.name()).or_default();
            *e = (
                e.0 + 1,
                e.1 + p.dims.iter().product::<u64>(),
                e.2 + p.bytes(),
            );
        }
        s
    }

    pub fn weights(&self) -> u64 {
        self.by_type.values().map(|v| v.1).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.by_type.values().map(|v| v.2).sum()
    }

    /// Bits per weight over all tensors.
    pub fn bits_per_weight(&self) -> f64 {
        self.bytes() as f64 * 8.0 / self.weights().max(1) as f64
    }
}

/// "tensors 12.3 MiB = 4.50 bits per weight; 2 F32, 7 Q4_0".
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = self
            .by_type
            .iter()
            .map(|(t, (n, ..))| format!("{n} {t}"))
            .collect();
        write!(
            f,
            "tensors {:.1} MiB = {:.2} bits per weight; {}",
            self.bytes() as f64 / (1 << 20) as f64,
            self.bits_per_weight(),
            types.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Weights;

    struct Count(std::sync::atomic::AtomicU64);

    impl convert::Progress for Count {
        fn tensor(&self, _: &str) {}
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A random model written as Q8_0 reads back with the planned tensors, and the progress
    /// reaches the plan's element count.
    #[test]
    fn a_conversion_writes_what_it_planned() {
        let preset = crate::config::find_preset("llama-7b").unwrap();
        let config = preset
            .config
            .resized(Some(1), Some(64), Some(128), Some(96))
            .unwrap();
        let weights = Weights::random(&config, 3);
        let c = of_random(&config, &weights, None, "tiny", None, Ftype::Q8_0).unwrap();
        let (n_tensors, elements) = (c.plan.len(), c.elements());
        let path = std::env::temp_dir().join(format!("camelid-conv-{}.gguf", std::process::id()));
        let progress = Count(Default::default());
        let (written, summary) = c.write(&path, Ftype::Q8_0, 2, &progress).unwrap();
        assert_eq!(written, std::fs::metadata(&path).unwrap().len());
        assert_eq!(summary.weights(), elements);
        assert_eq!(
            progress.0.load(std::sync::atomic::Ordering::Relaxed),
            elements
        );
        let ckpt = Checkpoint::open(&path).unwrap();
        assert_eq!(ckpt.gguf().unwrap().tensors().len(), n_tensors);
        std::fs::remove_file(&path).unwrap();
        let nowhere = std::env::temp_dir()
            .join("camelid-no-such-dir")
            .join("x.gguf");
        let e = of_random(&config, &weights, None, "tiny", None, Ftype::Q8_0)
            .unwrap()
            .write(&nowhere, Ftype::Q8_0, 1, &progress)
            .unwrap_err();
        assert_eq!(e.to_string(), format!("writing {}", nowhere.display()));
    }
}
