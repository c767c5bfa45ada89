//! camelid-engine: turning logits into text.
//!
//! The sampler chain ([`sampler`]), the generation loop with its stop conditions
//! ([`generate`]), chat templates ([`chat`]), a conversation that keeps its cache between
//! replies ([`conversation`]), evaluation ([`eval`]: perplexity, KL divergence,
//! multiple-choice scores) and models side by side ([`compare`]: figures, token counts,
//! perplexity, tables and a chart). Synchronous and free of I/O: the CLI and the
//! server drive it.

pub mod bench;
pub mod chat;
pub mod compare;
pub mod conversation;
pub mod eval;
pub mod eval_io;
pub mod generate;
pub mod sampler;

/// Grammars for constrained decoding ([`GenParams::grammar`]).
pub use camelid_constrain as constrain;
pub use generate::{Continuation, FinishReason, GenParams, Generation, generate};
pub use sampler::{Sampler, SamplerConfig};
