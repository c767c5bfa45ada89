//! Pre-training Llama-architecture models on the CPU.
//!
//! The inference path (`camelid-model`) never carries a tape: training has its own forward pass
//! that keeps what the backward pass needs, and a hand-written backward pass for each operation.
//! Everything is f32: master weights, gradients, Adam moments.
//!
//! - [`params`]: the named f32 tensors of a model (Hugging Face names and shapes), the Llama
//!   initialisation, and a gradient buffer of the same layout.
//! - [`grad`]: the training forward and backward passes: [`Workspace::loss_and_grad`] of a
//!   [`Batch`], equal to transformers' `LlamaForCausalLM` autograd in f32 (fixtures from
//!   `tools/train_grad_reference.py`), the same bits at any thread count, with optional
//!   activation checkpointing.
//! - [`ops`]: the row operations (RMSNorm, rotate-half RoPE, SwiGLU, cross-entropy) and their
//!   backward passes. The products run on camelid-kernels' `gemm_f32`.

mod attn;
pub mod error;
pub mod grad;
#[cfg(test)]
mod grad_tests;
mod linear;
pub mod ops;
mod par;
pub mod params;

pub use error::TrainError;
pub use grad::{Batch, IGNORE, Workspace};
pub use params::{ParamKind, Params, Tensor};
