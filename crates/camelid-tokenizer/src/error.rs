use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong building or using a tokenizer.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file's contents are not what its kind requires. `offset` is a byte offset or line number
    /// as `what` says.
    Format { path: PathBuf, what: String },
    /// The vocabulary is inconsistent (bad ids, merges naming unknown tokens, ...).
    Invalid(String),
    /// The file asks for something camelid does not implement (a Unigram model, an unknown
    /// pre-tokenizer).
    Unsupported(String),
    /// An id passed to decode is not in the vocabulary.
    IdOutOfRange {
        id: u32,
        n_vocab: usize,
        position: usize,
    },
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }

    pub(crate) fn format(path: &std::path::Path, what: impl Into<String>) -> Error {
        Error::Format {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    /// Adds the file the error concerns, for errors raised without one.
    pub(crate) fn in_file(self, path: &std::path::Path) -> Error {
        match self {
            Error::Invalid(m) => Error::format(path, m),
            e => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, what } => write!(f, "{}: {what}", path.display()),
            Error::Invalid(m) => write!(f, "invalid tokenizer: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported tokenizer: {m}"),
            Error::IdOutOfRange {
                id,
                n_vocab,
                position,
            } => write!(
                f,
                "token id {id} (at position {position}) is out of range: the vocabulary has {n_vocab} tokens (0..{})",
                n_vocab.saturating_sub(1)
            ),
        }
    }
}

/// The I/O error is part of the message, so it is not reported again as a source.
impl std::error::Error for Error {}

pub(crate) fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
