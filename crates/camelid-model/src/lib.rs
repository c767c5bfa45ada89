//! camelid-model: configuration, weights in one canonical layout, and the Llama forward pass.

pub mod config;
pub mod tokenizer_load;
