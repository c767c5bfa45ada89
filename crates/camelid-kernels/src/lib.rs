//! camelid-kernels: the numeric core of camelid.
//!
//! This crate owns the weight types (f32, f16, bf16 and the GGUF block quantizations), their
//! quantize/dequantize routines, the matrix products, and the element-wise operations of the Llama
//! forward pass (RMSNorm, RoPE, softmax, SwiGLU, attention over a KV slice). It knows nothing of
//! files, models or strings: callers hand it checked slices.
//!
//! Every kernel has a scalar reference implementation that stays in the tree forever; faster
//! paths (AVX2, AVX-512 on x86-64; NEON on aarch64) are chosen once at run time
//! ([`Isa::active`]) and are tested against it.
//! A model holds one [`Kernels`]: the chosen kernel table, the [`Precision`] of quantized
//! products, and the persistent thread pool.

pub(crate) mod act;
mod attn;
pub mod bandwidth;
pub mod dtype;
pub mod gemm;
pub mod hugebuf;
pub mod interleave;
pub mod isa;
pub(crate) mod kernels;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;

pub use attn::Kv;
pub use dtype::DType;
pub use gemm::GemmF32;
pub use isa::Isa;
pub use matmul::{Kernels, Precision, WeightView};
