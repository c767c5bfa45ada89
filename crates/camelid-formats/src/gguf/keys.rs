//! The metadata keys camelid reads and writes, in one table for the reader (camelid-model's
//! config, tokenizer and sampling loaders) and the writer (`camelid quantize`, `random-model`),
//! so that the two cannot drift apart by a typo.
//!
//! Names as the GGUF spec (ggml `docs/gguf.md`, "Standardized key-value pairs") and llama.cpp's
//! `convert_hf_to_gguf.py` spell them. The per-architecture keys carry the architecture as their
//! prefix; camelid reads the Llama family only, so they are written out for `llama`.

/// `general.*`: the file as a whole.
pub mod general {
    pub const ARCHITECTURE: &str = "general.architecture";
    /// `model`, or `adapter` for a LoRA.
    pub const TYPE: &str = "general.type";
    pub const NAME: &str = "general.name";
    /// Alignment of the data section and tensor offsets (a `u32`).
    pub const ALIGNMENT: &str = "general.alignment";
    /// llama.cpp's `llama_ftype` number.
    pub const FILE_TYPE: &str = "general.file_type";
    /// `GGML_QNT_VERSION`: the block layouts the quantized tensors follow.
    pub const QUANTIZATION_VERSION: &str = "general.quantization_version";
}

/// `llama.*`: the model's shape (the spec's "LLM" section).
pub mod llama {
    pub const BLOCK_COUNT: &str = "llama.block_count";
    pub const CONTEXT_LENGTH: &str = "llama.context_length";
    pub const EMBEDDING_LENGTH: &str = "llama.embedding_length";
    pub const FEED_FORWARD_LENGTH: &str = "llama.feed_forward_length";
    pub const HEAD_COUNT: &str = "llama.attention.head_count";
    pub const HEAD_COUNT_KV: &str = "llama.attention.head_count_kv";
    pub const KEY_LENGTH: &str = "llama.attention.key_length";
    pub const VALUE_LENGTH: &str = "llama.attention.value_length";
    pub const RMS_EPSILON: &str = "llama.attention.layer_norm_rms_epsilon";
    pub const VOCAB_SIZE: &str = "llama.vocab_size";
    pub const ROPE_FREQ_BASE: &str = "llama.rope.freq_base";
    pub const ROPE_DIMENSION_COUNT: &str = "llama.rope.dimension_count";
    pub const ROPE_SCALING_TYPE: &str = "llama.rope.scaling.type";
    pub const ROPE_SCALING_FACTOR: &str = "llama.rope.scaling.factor";
    /// The older spelling of a linear scaling factor, still in some files.
    pub const ROPE_SCALE_LINEAR: &str = "llama.rope.scale_linear";
}

/// `tokenizer.*`: the vocabulary (the spec's "Tokenizer" section).
pub mod tokenizer {
    /// `llama` (SentencePiece) or `gpt2` (byte-level BPE).
    pub const MODEL: &str = "tokenizer.ggml.model";
    /// The pre-tokenizer of a byte-level BPE (llama.cpp's names: `llama-bpe`, `smollm`, ...).
    pub const PRE: &str = "tokenizer.ggml.pre";
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    pub const SCORES: &str = "tokenizer.ggml.scores";
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    pub const MERGES: &str = "tokenizer.ggml.merges";
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    pub const UNKNOWN_ID: &str = "tokenizer.ggml.unknown_token_id";
    pub const PADDING_ID: &str = "tokenizer.ggml.padding_token_id";
    pub const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
    pub const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
}

/// `general.sampling.*`: the sampler settings a model recommends, as llama.cpp's converter
/// writes them from `generation_config.json`.
pub mod sampling {
    pub const TOP_K: &str = "general.sampling.top_k";
    pub const TOP_P: &str = "general.sampling.top_p";
    pub const MIN_P: &str = "general.sampling.min_p";
    pub const TEMP: &str = "general.sampling.temp";
    pub const PENALTY_LAST_N: &str = "general.sampling.penalty_last_n";
    pub const PENALTY_REPEAT: &str = "general.sampling.penalty_repeat";
}
