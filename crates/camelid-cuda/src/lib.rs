//! camelid-cuda: the forward pass on an NVIDIA GPU, behind camelid-model's backend seam.
//!
//! [`backend`] uploads a model's weights once, in the type they are stored in (raw GGUF blocks),
//! and returns a [`camelid_model::Backend`] that runs the shared forward pass
//! ([`camelid_model::llama::forward_rows`]) with CUDA kernels: fused dequantize-dot products for
//! decode (a handful of rows), cuBLAS GEMMs on dequantized weights for prompt batches, and the
//! row operations of `kernels/*.cu` (RMSNorm, RoPE, SwiGLU, the KV cache, flash-decoding
//! attention). KV caches hold f32 or f16 ([`camelid_model::CacheType`], as on the CPU). Every
//! step of a decode pass is replayed from a CUDA graph once it has been seen.
//!
//! # Why cudarc, and with which features
//! The crate must build, lint and test on machines with no CUDA toolkit and no GPU (CI), and
//! the binary must start on them (the CPU backend is the default): nothing may link against
//! `libcuda.so` at build time. `cudarc` gives Rust bindings of the driver API, NVRTC and cuBLAS
//! that resolve every symbol at run time through `dlopen` (feature `dynamic-loading`), one
//! symbol at a time on first use, so a driver older than the bindings still serves the calls
//! this crate makes. Its other features stay off (`default-features = false`): no runtime API,
//! cuRAND or cuBLASLt, nothing built from C. The kernels are CUDA C++ compiled at run time by
//! NVRTC for the card at hand (no `nvcc` at build time, and one binary for every architecture).
//!
//! `cuda-13000` picks the bindings' API version. The calls used here have had the same
//! signatures since CUDA 11.4; the version matters for which library file names are tried
//! (`libcublas.so`, `.so.13`, `.so.12`, `.so.11`, ...), and 13 is the newest list, which
//! still includes 12's names. A GPU machine needs the driver (`libcuda.so.1`), and NVRTC and
//! cuBLAS from a CUDA 12 or 13 toolkit on the loader's path (`LD_LIBRARY_PATH`).
//!
//! # Run time
//! The kernels are compiled on the first start for a card and the CUBINs (for a card newer than the
//! NVRTC at hand knows, PTX of the newest architecture it knows, which the driver translates)
//! cached in `~/.cache/camelid/cuda` (`$XDG_CACHE_HOME` honoured): those of the model's weight
//! types, in programs of a few types each, at once (9 s for a Q4_0 model on 2 cores; a line on
//! stderr says so), or with `CAMELID_CUDA_KERNELS=all` those of every type (to fill the cache
//! ahead). Decode steps run from CUDA graphs; `CAMELID_CUDA_NO_GRAPHS=1` launches every kernel one
//! by one instead (for profiling, or to rule graphs out when chasing a bug). Knobs move the
//! crossovers between a product's kernels (`src/ops.rs`), for measuring them on a card:
//! `CAMELID_CUDA_TC_ROWS=N` and `CAMELID_CUDA_TC_MAX_ROWS=N`, the batch sizes from which and up to
//! which the fast precision's products run on the tensor cores rather than the GEMMs (4 and 64; up
//! to 256; a first of 65 turns them off), and `CAMELID_CUDA_MATVEC_ROWS=N`, up to which the others
//! take the fused f32 matvec kernels rather than GEMMs (32). `CAMELID_CUDA_MATVEC_SHAPE=RxW`
//! compiles those kernels with CTAs of R rows (2 or 4) and W warps (2, 4 or 8) rather than 2x4.
//! `CAMELID_CUDA_FUSE=0` runs RoPE with the cache writes, SwiGLU's gate, attention's combine step
//! and the RMSNorms after the residual products as launches of their own rather than inside the
//! launches before them (the same results; 163 launches a decode step of a 16-layer model instead
//! of 83), to measure what the launches cost on a card. At the fast precision, prompts over f16
//! caches (the default) take their attention on the tensor cores (`attention_tc_f16`, a CTA for a
//! tile of one sequence's rows, which share every key and value row it loads);
//! `CAMELID_CUDA_TC_ATTENTION=0` keeps them on the flash-decoding kernels, which read the cache
//! once per row. On sm_90 and later every kernel is launched with programmatic stream serialization
//! (programmatic dependent launch, "PDL" in the device's name): it starts while the kernel before
//! it finishes, asks L2 for its weights, and waits for that kernel's results (`kernels/README.md`,
//! "Launch order"); `CAMELID_CUDA_PDL=0` launches them in plain stream order. So does a driver that
//! refuses an early launch, or a graph of them: camelid says so once on stderr and goes on in
//! stream order (the same results).
//!
//! # Testing without a GPU
//! `kernels/emu/driver.cpp` is an emulated `libcuda.so` (and the cuBLAS calls made here) that
//! runs the kernels on the CPU; `scripts/check-cuda-kernels.sh` builds it into `target/cuda-emu`,
//! and with that folder and NVRTC's on `LD_LIBRARY_PATH` this crate's GPU tests
//! (`tests/cuda.rs`) and `camelid --device cuda` run on any machine (`scripts/test.sh` does).
//! `CAMELID_CUDA_EMU_STATS=1` counts the kernels and graph launches run, at exit.
//!
//! cudarc panics when it cannot open a library on first use, so [`backend`] and
//! [`device_count`] first probe for each library and answer a missing one with a one-line
//! [`ModelError::Backend`], and initialisation also runs under `catch_unwind` as a backstop.

mod backend;
mod device;
mod kernels;
mod ops;

use std::panic::{AssertUnwindSafe, catch_unwind};

use camelid_model::weights::Weights;
use camelid_model::{Backend, Config, ModelError};

pub use backend::CudaBackend;

/// The CUDA backend on GPU `ordinal`, holding `weights` (uploaded once; the host copy may be
/// dropped afterwards). `inv_freq` is [`camelid_model::llama::rope_inv_freq`] of the model.
///
/// Fails with [`ModelError::Backend`] when there is no driver, no such GPU, or not enough
/// memory, and with [`ModelError::UnsupportedType`] for a weight type without kernels.
pub fn backend(
    config: &Config,
    weights: &Weights,
    inv_freq: Vec<f32>,
    ordinal: usize,
) -> Result<Box<dyn Backend>, ModelError> {
    backend_with_limits(config, weights, inv_freq, ordinal, Limits::default())
}

/// Smaller buffers than a model's own, for tests to reach on tiny models the paths that real
/// ones take: `None` keeps the default.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Rows of the logits buffer at the start (default: as many as fit in 8 MiB; decode steps
    /// of more sequences grow it): passes with more logits rows take them in chunks.
    pub logit_rows: Option<usize>,
    /// Bytes of the weight scratch of prompt GEMMs (default: a 48th of the weights, within
    /// 16..64 MiB; at least one f32 row of the widest matrix): a matrix larger than it is
    /// expanded and multiplied a slab of rows at a time.
    pub scratch_bytes: Option<usize>,
    /// Keeps prompt attention on the f32 kernels (as `CAMELID_CUDA_TC_ATTENTION=0` does), for
    /// a test to set the tensor-core kernel beside them.
    pub no_tc_attention: bool,
    /// The most rows a product takes on the tensor-core products rather than a GEMM (as
    /// `CAMELID_CUDA_TC_MAX_ROWS` does; default 64), for a test to set whole prompt passes on
    /// them beside the GEMMs.
    pub tc_max_rows: Option<usize>,
}

/// [`backend`] with [`Limits`].
#[doc(hidden)]
pub fn backend_with_limits(
    config: &Config,
    weights: &Weights,
    inv_freq: Vec<f32>,
    ordinal: usize,
    limits: Limits,
) -> Result<Box<dyn Backend>, ModelError> {
    // Type checks first: they need no GPU, and name the tensor.
    backend::check_weights(config, weights)?;
    probe_libraries()?;
    let count = device_count()?;
    if ordinal >= count {
        return Err(ModelError::Backend(format!(
            "CUDA: no device cuda:{ordinal} (this machine has {count} CUDA device{})",
            if count == 1 { "" } else { "s" }
        )));
    }
    let made = catch_unwind(AssertUnwindSafe(|| {
        CudaBackend::new(config, weights, inv_freq, ordinal, limits)
    }));
    match made {
        Ok(r) => r.map(|b| Box::new(b) as Box<dyn Backend>),
        Err(panic) => Err(ModelError::Backend(format!(
            "CUDA: initialisation failed: {}",
            panic_message(&*panic)
        ))),
    }
}

/// How many CUDA devices the driver sees. Fails when there is no driver.
pub fn device_count() -> Result<usize, ModelError> {
    probe_driver()?;
    catch_unwind(cudarc::driver::CudaContext::device_count)
        .map_err(|p| ModelError::Backend(format!("CUDA: {}", panic_message(&*p))))?
        .map(|n| n.max(0) as usize)
        .map_err(|e| match e.0 {
            // cuInit's answer on a machine with a driver but no usable GPU.
            cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => {
                ModelError::Backend(format!("CUDA: no CUDA device found ({e})"))
            }
            _ => ModelError::Backend(format!("CUDA: the driver failed to start: {e}")),
        })
}

/// The driver library, before anything asks cudarc for a symbol of it.
fn probe_driver() -> Result<(), ModelError> {
    // SAFETY: opening a shared library runs its initialisers; libcuda's (the NVIDIA driver's
    // user-space half) have no preconditions. The handle is closed again at once.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(ModelError::Backend(
            "CUDA: no driver found (libcuda.so could not be loaded); --device cuda needs an \
             NVIDIA GPU and its driver"
                .into(),
        ))
    }
}

/// The driver, NVRTC (the kernels are compiled at run time) and cuBLAS (prompt GEMMs).
fn probe_libraries() -> Result<(), ModelError> {
    probe_driver()?;
    // SAFETY: as in `probe_driver`: NVRTC's and cuBLAS's initialisers have no preconditions.
    let (nvrtc, cublas) = unsafe {
        (
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    let missing = match (nvrtc, cublas) {
        (true, true) => return Ok(()),
        (false, true) => "NVRTC (libnvrtc.so)",
        (true, false) => "cuBLAS (libcublas.so)",
        (false, false) => "NVRTC and cuBLAS (libnvrtc.so, libcublas.so)",
    };
    Err(ModelError::Backend(format!(
        "CUDA: {missing} could not be loaded; the CUDA backend needs the CUDA toolkit's \
         libraries (12 or 13) on the library path (LD_LIBRARY_PATH)"
    )))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}
