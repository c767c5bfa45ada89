//! Integration tests of camelid-kernels: formats against llama.cpp's own encoder and decoder
//! (fixtures written by `tools/kernels_quant_reference.py`), and every SIMD path against its
//! scalar twin.

mod iquants;
mod ops_twins;
mod quant_reference;
mod simd_twins;
