//! camelid-model: configuration, weights in one canonical layout, and the Llama forward pass.

pub mod backend;
pub mod config;
pub mod conversion;
pub mod convert;
pub mod cpu;
pub mod embed;
pub mod error;
pub mod figures;
pub mod inspect;
pub mod llama;
pub mod lora;
mod meta;
pub mod sampling;
pub mod tokenizer_load;
pub mod weights;

pub use backend::{Backend, CacheType, Device, DeviceInfo};
pub use config::Config;
pub use embed::Pooling;
pub use error::ModelError;
pub use figures::Figures;
pub use llama::{Model, Next, State, Want};
