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
//! - [`data`]: text files → token shards in the user cache → shuffled packed sequences, with a
//!   held-out validation split.
//! - [`optim`]: AdamW, gradient clipping and the learning-rate schedule of the LLaMA paper.
//! - [`init`]: the Llama initialisation (normal 0.02, residual outputs scaled by depth).
//! - [`trainer`]: the loop: accumulation, evaluation, the JSONL log, stopping and resuming.
//! - [`session`]: a run from its options (checks, batch, data, summaries, samples): `camelid
//!   train` between parsing and printing.
//! - [`shape`]: presets, the generations' architecture choices, the memory of a run.
//! - [`chart`]: the loss curve (`loss.svg`), train and validation in bits per byte.
//! - [`checkpoint`]: Hugging Face folders (config.json, model.safetensors, tokenizer files) plus
//!   the optimizer state and the data position.

mod attn;
pub mod chart;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod export;
pub mod grad;
#[cfg(test)]
mod grad_tests;
pub mod init;
mod linear;
pub mod ops;
pub mod optim;
mod par;
pub mod params;
pub mod session;
pub mod shape;
pub mod trainer;

pub use error::TrainError;
pub use grad::{Batch, IGNORE, Workspace};
pub use params::{ParamKind, Params, Tensor};
