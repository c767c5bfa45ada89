//! hf_config
