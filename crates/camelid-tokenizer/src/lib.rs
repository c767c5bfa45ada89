//! camelid-tokenizer
