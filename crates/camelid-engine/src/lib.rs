//! camelid-engine: turning logits into text.
//!
//! The sampler chain ([`sampler`]), the generation loop with its stop conditions
//! ([`generate`]), chat templates ([`chat`]), a conversation that keeps its cache between
//! replies ([`conversation`]), evaluation ([`eval`]: perplexity, KL divergence,
//! multiple-choice scores), opening a model on a device ([`load`]), models side by side
//! ([`compare`]: figures, token counts, perplexity, tables and a chart), and option values as
//! llama.cpp reads them ([`options`]).
//! Synchronous, and free of I/O apart from reading model files ([`load`], and the tokenizers
//! of [`compare`]): the CLI and the server drive it.

pub mod bench;
pub mod chat;
pub mod compare;
pub mod conversation;
pub mod eval;
pub mod eval_io;
mod exp_sum;
pub mod generate;
pub mod load;
pub mod options;
pub mod sampler;
pub mod speculate;

/// Grammars for constrained decoding ([`GenParams::grammar`]).
pub use camelid_constrain as constrain;
pub use generate::{
    Continuation, FinishReason, GenParams, Generation, Speculation, generate, generate_with,
};
pub use sampler::{Sampler, SamplerConfig};
