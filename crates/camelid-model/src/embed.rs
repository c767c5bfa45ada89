//! Embeddings: a sequence's final hidden states (the residual stream after the final RMSNorm,
//! what transformers' `LlamaModel(...).last_hidden_state` holds) pooled into one vector and
//! scaled to unit L2 norm, as OpenAI's `/v1/embeddings` returns them (its vectors have norm 1,
//! so a dot product is the cosine similarity).
//!
//! The pooling modes are those of sentence-transformers' `Pooling` module and llama.cpp's
//! `--pooling`: the mean over the tokens, the last token, or the first (`cls`; in a causal
//! model the first token sees only itself, so this is meaningful only for models trained to
//! put the sentence there).

use std::fmt;
use std::str::FromStr;

use crate::error::ModelError;
use crate::llama::{Model, State};

/// How a sequence's hidden states become one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every token.
    #[default]
    Mean,
    /// The last token's state (it has seen the whole sequence).
    Last,
    /// The first token's state.
    Cls,
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Pooling, String> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "last" => Ok(Pooling::Last),
            "cls" => Ok(Pooling::Cls),
            _ => Err(format!("unknown pooling `{s}` (mean, last or cls)")),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Last => "last",
            Pooling::Cls => "cls",
        })
    }
}

/// Pools the hidden states of one sequence of `len` tokens as they come, in order of position
/// (`pos` counted from the sequence's first token), possibly over several passes.
#[derive(Clone, Debug)]
pub struct Pooler {
    pooling: Pooling,
    len: usize,
    /// `[d]` the running sum (mean, in f64 so that long sequences lose nothing), or the row kept.
    acc: Vec<f64>,
}

impl Pooler {
    pub fn new(pooling: Pooling, len: usize, d_model: usize) -> Pooler {
        Pooler {
            pooling,
            len,
            acc: vec![0.0; d_model],
        }
    }

    /// Takes the hidden state of the token at `pos` (`0..len`).
    pub fn add(&mut self, pos: usize, hidden: &[f32]) {
        let keep = match self.pooling {
            Pooling::Mean => {
                for (a, &h) in self.acc.iter_mut().zip(hidden) {
                    *a += h as f64;
                }
                return;
            }
            Pooling::Last => pos + 1 == self.len,
            Pooling::Cls => pos == 0,
        };
        if keep {
            for (a, &h) in self.acc.iter_mut().zip(hidden) {
                *a = h as f64;
            }
        }
    }

    /// The pooled vector, of unit L2 norm (zero stays zero). The mean's division by the count
    /// drops out in the normalization.
    pub fn finish(self) -> Vec<f32> {
        let norm = self.acc.iter().map(|a| a * a).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        self.acc.iter().map(|&a| (a * scale) as f32).collect()
    }
}

impl Model {
    /// The embedding of `tokens`: their hidden states pooled and L2-normalised, computed in a
    /// fresh state of exactly their length.
    pub fn embed(&self, tokens: &[u32], pooling: Pooling) -> Result<Vec<f32>, ModelError> {
        let mut state: State = self.new_state(tokens.len())?;
        let mut pooler = Pooler::new(pooling, tokens.len(), self.config.d_model);
        self.hidden(&mut state, tokens, |pos, h| pooler.add(pos, h))?;
        Ok(pooler.finish())
    }
}
