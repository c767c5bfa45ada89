//! camelid-kernels
