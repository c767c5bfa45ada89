//! Loading a tokenizer from any source a user may point at (GGUF, tokenizer.json, tokenizer.model, a model folder).
