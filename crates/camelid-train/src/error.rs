//! What can be wrong with the inputs of a training step; every case is reported, none panics.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// An input or target id at `index` of the batch (row-major) is not in the vocabulary.
    TokenOutOfRange {
        what: &'static str,
        index: usize,
        token: u32,
        n_vocab: usize,
    },
    /// The batch has more sequences, or longer ones, than the workspace was made for.
    BatchTooLarge {
        n_seqs: usize,
        seq_len: usize,
        max_seqs: usize,
        max_seq_len: usize,
    },
    /// `inputs` or `targets` do not hold `n_seqs · seq_len` ids.
    BatchShape {
        what: &'static str,
        len: usize,
        n_seqs: usize,
        seq_len: usize,
    },
    /// Every target of the batch is ignored: the mean loss is undefined.
    NoTargets,
    /// A parameter or gradient tensor is not in the layout of the workspace's config.
    ShapeMismatch {
        what: &'static str,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The parameters or gradients hold a different number of tensors than the config implies.
    TensorCount {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// The parameters were made for another model shape.
    ConfigMismatch,
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::TokenOutOfRange {
                what,
                index,
                token,
                n_vocab,
            } => write!(
                f,
                "{what} id {token} at position {index} is outside the vocabulary of {n_vocab}"
            ),
            TrainError::BatchTooLarge {
                n_seqs,
                seq_len,
                max_seqs,
                max_seq_len,
            } => write!(
                f,
                "batch of {n_seqs} × {seq_len} tokens does not fit the workspace ({max_seqs} × {max_seq_len})"
            ),
            TrainError::BatchShape {
                what,
                len,
                n_seqs,
                seq_len,
            } => write!(
                f,
                "{what} holds {len} ids, not n_seqs × seq_len = {n_seqs} × {seq_len}"
            ),
            TrainError::NoTargets => write!(f, "every target of the batch is ignored"),
            TrainError::ShapeMismatch {
                what,
                tensor,
                expected,
                got,
            } => write!(
                f,
                "{what} tensor {tensor} has shape {got:?}, the config needs {expected:?}"
            ),
            TrainError::TensorCount {
                what,
                expected,
                got,
            } => write!(f, "{what} hold {got} tensors, the config needs {expected}"),
            TrainError::ConfigMismatch => {
                write!(f, "the parameters were made for another model config")
            }
        }
    }
}

impl std::error::Error for TrainError {}
