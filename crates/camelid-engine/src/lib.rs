//! camelid-engine: turning logits into text.
//!
//! The sampler chain ([`sampler`]), the generation loop with its stop conditions
//! ([`generate`]), and chat templates ([`chat`]). Synchronous and free of I/O: the CLI and the
//! server drive it.

pub mod chat;
pub mod eval;
pub mod generate;
pub mod sampler;

/// Grammars for constrained decoding ([`GenParams::grammar`]).
pub use camelid_constrain as constrain;
pub use generate::{Continuation, FinishReason, GenParams, Generation, generate};
pub use sampler::{Sampler, SamplerConfig};
