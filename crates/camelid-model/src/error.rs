//! Errors of loading and running a model.

use std::fmt;
use std::path::PathBuf;

use crate::config::ConfigError;

#[derive(Debug)]
pub enum ModelError {
    /// The file could not be parsed (the message names the file and the offset).
    Format(camelid_formats::Error),
    /// A hyper-parameter is missing, out of range or contradicts another.
    Config { path: PathBuf, err: ConfigError },
    /// The file is not of a supported architecture.
    Architecture { path: PathBuf, arch: String },
    /// A tensor the model needs is not in the file.
    MissingTensor { path: PathBuf, tensor: String },
    /// A tensor's shape contradicts the config.
    Shape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A tensor is stored in a type this build cannot compute with.
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A path that is neither a GGUF file nor a Hugging Face model folder.
    NotAModel { path: PathBuf, msg: String },
    /// A LoRA adapter that cannot be read or applied (`lora.rs`).
    Adapter { path: PathBuf, msg: String },
    /// A token id outside the vocabulary.
    TokenOutOfRange { token: u32, n_vocab: usize },
    /// A state made by another model.
    ForeignState,
    /// The backend could not allocate or run (device memory, driver).
    Backend(String),
    /// A copy of more tokens than the source state holds.
    PrefixBeyondState { len: usize, pos: usize },
    /// More tokens than the context holds.
    ContextFull {
        n_tokens: usize,
        pos: usize,
        n_ctx: usize,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Format(e) => e.fmt(f),
            ModelError::Config { path, err } => {
                write!(f, "{}: invalid model config: {err}", path.display())
            }
            ModelError::Architecture { path, arch } => write!(
                f,
                "{}: architecture `{arch}` is not supported (camelid runs `llama`)",
                path.display()
            ),
            ModelError::MissingTensor { path, tensor } => {
                write!(f, "{}: tensor `{tensor}` is missing", path.display())
            }
            ModelError::Shape {
                path,
                tensor,
                expected,
                got,
            } => write!(
                f,
                "{}: tensor `{tensor}` has shape {got:?}, but the config implies {expected:?}",
                path.display()
            ),
            ModelError::UnsupportedType {
                path,
                tensor,
                dtype,
            } => write!(
                f,
                "{}: tensor `{tensor}` is stored as {dtype}, which camelid cannot compute with yet",
                path.display()
            ),
            ModelError::NotAModel { path, msg } | ModelError::Adapter { path, msg } => {
                write!(f, "{}: {msg}", path.display())
            }
            ModelError::ForeignState => {
                write!(f, "a sequence state used with a model that did not make it")
            }
            ModelError::Backend(msg) => f.write_str(msg),
            ModelError::TokenOutOfRange { token, n_vocab } => write!(
                f,
                "token id {token} is out of range: the vocabulary has {n_vocab} tokens"
            ),
            ModelError::PrefixBeyondState { len, pos } => write!(
                f,
                "cannot copy the first {len} tokens of a state that holds {pos}"
            ),
            ModelError::ContextFull {
                n_tokens,
                pos,
                n_ctx,
            } => write!(
                f,
                "{n_tokens} tokens at position {pos} do not fit in the context of {n_ctx} tokens"
            ),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Displayed as the format error itself, so its source is the format error's own
            // source: returning `e` would print the same sentence twice in an error chain.
            ModelError::Format(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<camelid_formats::Error> for ModelError {
    fn from(e: camelid_formats::Error) -> Self {
        ModelError::Format(e)
    }
}
