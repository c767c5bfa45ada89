//! camelid-formats: the model files camelid reads and writes, and nothing about compute.
//!
//! - [`gguf`]: GGUF v2/v3 reader over a memory map and a streaming writer. Spec: ggml
//!   `docs/gguf.md` (<https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>).
//! - [`safetensors`]: single and sharded safetensors checkpoints, memory-mapped. Spec: the
//!   format section of <https://github.com/huggingface/safetensors> (README, "Format").
//! - [`pth`]: PyTorch `torch.save` checkpoints (a zip archive with a restricted pickle) and
//!   Meta's original release folders (`params.json` + `consolidated.NN.pth`).
//! - [`hf_config`]: the Hugging Face `config.json` of `LlamaForCausalLM` and compatible models.
//!
//! Files are untrusted input. The parsers are hand-written so that every count, length and
//! offset is checked against the file size before anything is allocated or sliced, so that
//! every error names the file and the byte offset, tensor or field at fault, and so that they
//! can be fuzzed (see `fuzz/` at the repository root). Opening a file never copies tensor data
//! into the heap: tensors are byte ranges of the map.

mod backing;
pub mod error;
pub mod gguf;
pub mod hf_config;
pub mod pth;
pub mod safetensors;

pub use error::Error;
