//! safetensors (filled in below)
