//! The one error type of this crate.
//!
//! Every variant carries the file it is about and a position inside it (a byte offset, a tensor
//! name or a JSON field), so a message read on its own tells the user what is wrong and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a model file.
#[derive(Debug)]
pub enum Error {
    /// The operating system refused to open, map, read or write a file.
    Io { path: PathBuf, source: io::Error },
    /// A GGUF file is malformed. `offset` is the byte where the offending item starts.
    Gguf {
        path: PathBuf,
        offset: u64,
        msg: String,
    },
    /// A safetensors file (or its shard index) is malformed. `offset` is a byte offset in the
    /// file; for the JSON header it is where the header starts (8) unless a better one is known.
    Safetensors {
        path: PathBuf,
        offset: u64,
        msg: String,
    },
    /// A PyTorch `.pth` checkpoint (its zip container, its pickle or a tensor in it) is
    /// malformed, unsupported or refused. `offset` is a byte offset in the file.
    Pth {
        path: PathBuf,
        offset: u64,
        msg: String,
    },
    /// A `config.json` is malformed or a field has the wrong type. `field` is empty when the
    /// problem is the JSON syntax itself (the message then gives the line and column).
    Config {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// The GGUF writer was given something it cannot write (a bad name, a size that does not
    /// match the tensor's shape, a stream that wrote too few bytes, ...).
    GgufWrite { path: PathBuf, msg: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Gguf { path, offset, msg } => {
                write!(
                    f,
                    "{}: invalid GGUF at byte {offset}: {msg}",
                    path.display()
                )
            }
            Error::Safetensors { path, offset, msg } => {
                write!(
                    f,
                    "{}: invalid safetensors at byte {offset}: {msg}",
                    path.display()
                )
            }
            Error::Pth { path, offset, msg } => {
                write!(
                    f,
                    "{}: invalid PyTorch checkpoint at byte {offset}: {msg}",
                    path.display()
                )
            }
            Error::Config { path, field, msg } if field.is_empty() => {
                write!(f, "{}: invalid config: {msg}", path.display())
            }
            Error::Config { path, field, msg } => {
                write!(
                    f,
                    "{}: invalid config field `{field}`: {msg}",
                    path.display()
                )
            }
            Error::GgufWrite { path, msg } => {
                write!(f, "{}: cannot write GGUF: {msg}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
