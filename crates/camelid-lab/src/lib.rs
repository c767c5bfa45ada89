//! Studies that test what each Llama generation changed, at a scale that fits two cores:
//! `camelid experiment gqa|scaling|context|vocab`. Each study trains a few models in-process with
//! camelid-train (exactly what the `camelid train` command it records would do: same shapes,
//! settings, initialisation and data order, so the same seed gives the same numbers), measures
//! them, and writes a Markdown report with SVG charts whose every number comes from those runs.
//!
//! - [`run`]: one training run from its `camelid train` options, and the lab that holds the
//!   tokenizer, the token shards and the output folder of a study.
//! - [`report`]: the Markdown report, its charts and `results.json`.
//! - [`gqa`]: MHA vs GQA vs MQA at one parameter budget (Llama 2's 70B, Llama 3).
//! - [`scaling`]: a sweep of sizes at one training compute; the LLaMA argument on the Chinchilla
//!   curve.
//! - [`context`]: training context 256 vs 1024 at equal tokens; loss by position.
//! - [`vocab`]: byte-level vocabularies of 1K to 32K on English and Japanese; tokens per
//!   character, and bits per byte at equal training tokens (Llama 3).

pub mod context;
pub mod gqa;
pub mod report;
pub mod run;
pub mod scaling;
pub mod vocab;

use std::fmt;
use std::path::PathBuf;

pub use run::{Lab, Options};

/// The studies `camelid experiment` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Study {
    Gqa,
    Scaling,
    Context,
    Vocab,
}

impl Study {
    pub const ALL: [Study; 4] = [Study::Gqa, Study::Scaling, Study::Context, Study::Vocab];

    pub fn parse(s: &str) -> Option<Study> {
        Study::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Study::Gqa => "gqa",
            Study::Scaling => "scaling",
            Study::Context => "context",
            Study::Vocab => "vocab",
        }
    }

    /// Runs the study into `lab`'s folder; returns the report's path.
    pub fn run(self, lab: &mut Lab) -> Result<PathBuf, LabError> {
        let report = match self {
            Study::Gqa => gqa::run(lab)?,
            Study::Scaling => scaling::run(lab)?,
            Study::Context => context::run(lab)?,
            Study::Vocab => vocab::run(lab)?,
        };
        report.write(lab)
    }
}

/// Why a study could not run or be written.
#[derive(Debug)]
pub enum LabError {
    /// Setting up or running a training run (the message names the run).
    Train(String),
    /// Loading a trained checkpoint for decoding.
    Model(String),
    Io {
        path: PathBuf,
        err: std::io::Error,
    },
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Train(m) | LabError::Model(m) => f.write_str(m),
            LabError::Io { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for LabError {}

impl From<camelid_train::session::SessionError> for LabError {
    fn from(e: camelid_train::session::SessionError) -> Self {
        LabError::Train(e.to_string())
    }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |err| LabError::Io {
        path: path.to_path_buf(),
        err,
    }
}
