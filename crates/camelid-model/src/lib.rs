//! camelid-model: configuration, weights in one canonical layout, and the Llama forward pass.

pub mod tokenizer_load;
