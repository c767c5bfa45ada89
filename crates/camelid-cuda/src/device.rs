//! A thin owned layer over the driver API: device and pinned host allocations that free
//! themselves, the one stream, kernel launches with arguments on the stack, and cuBLAS.
//!
//! cudarc's safe `CudaSlice` records events around every use (to order several streams) and
//! its launch builder collects arguments in a `Vec`; a backend with one stream and a pass that
//! must not allocate per token wants neither, so buffers are plain device pointers here, owned
//! by [`DevBuf`], and every launch goes through [`launch`].

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cudarc::cublas::sys as blas;
use cudarc::driver::{CudaContext, CudaStream, result, sys};

/// A driver, NVRTC or cuBLAS failure, as one line of text.
#[derive(Debug, Clone)]
pub struct CudaError(pub String);

impl CudaError {
    pub fn at(what: &str, e: impl std::fmt::Display) -> CudaError {
        CudaError(format!("{what}: {e}"))
    }
}

impl From<CudaError> for camelid_model::ModelError {
    fn from(e: CudaError) -> Self {
        camelid_model::ModelError::Backend(format!("CUDA: {}", e.0))
    }
}

pub type Result<T> = std::result::Result<T, CudaError>;

/// The GPU's primary context and the stream everything runs on, in order.
pub struct Device {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// The device memory allocated through this value, now and at most.
    allocated: Arc<Allocated>,
}

#[derive(Default)]
struct Allocated {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Device {
    pub fn new(ordinal: usize) -> Result<Device> {
        let ctx = CudaContext::new(ordinal).map_err(|e| CudaError::at("opening the device", e))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| CudaError::at("creating a stream", e))?;
        Ok(Device {
            ctx,
            stream,
            allocated: Arc::default(),
        })
    }

    pub fn stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    /// Makes the context current on the calling thread (the backend may be driven from any).
    pub fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| CudaError::at("binding the context", e))
    }

    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| CudaError::at("running the pass", e))
    }

    /// Allocates `bytes` of device memory (at least one byte, so every buffer has an address).
    /// Out of memory, the error says how much the device has free.
    pub fn alloc(&self, bytes: usize, what: &str) -> Result<DevBuf> {
        self.bind()?;
        // SAFETY: the context is current; the memory is uninitialised, and every user writes
        // before reading (or it is zeroed by `alloc_zeroed`).
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }.map_err(|e| {
            let why = match (e.0, self.mem_info()) {
                (sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY, Ok((free, total))) => format!(
                    "out of memory (the device has {} free of {})",
                    mib(free),
                    mib(total)
                ),
                _ => e.to_string(),
            };
            CudaError(format!("allocating {what} ({}): {why}", mib(bytes)))
        })?;
        let now = self.allocated.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.allocated.peak.fetch_max(now, Ordering::Relaxed);
        Ok(DevBuf {
            ptr,
            bytes,
            ctx: self.ctx.clone(),
            allocated: self.allocated.clone(),
        })
    }

    /// The device memory held now through this value's allocations.
    pub fn allocated(&self) -> usize {
        self.allocated.now.load(Ordering::Relaxed)
    }

    /// The most device memory this process's backend has held at once through its own
    /// allocations: weights, KV caches, activations and scratch, the cuBLAS workspace. The
    /// CUDA context and the libraries' own memory are not in it (see [`Device::mem_info`]).
    pub fn peak_allocated(&self) -> usize {
        self.allocated.peak.load(Ordering::Relaxed)
    }

    pub fn alloc_zeroed(&self, bytes: usize, what: &str) -> Result<DevBuf> {
        let buf = self.alloc(bytes, what)?;
        // SAFETY: the range is the allocation just made; the stream orders the memset before
        // any later use, and the caller synchronizes before reading it on the host.
        unsafe { result::memset_d8_async(buf.ptr, 0, buf.bytes, self.stream()) }
            .map_err(|e| CudaError::at("zeroing a buffer", e))?;
        Ok(buf)
    }

    /// Copies `src` into `buf` from byte `offset` and waits for the copy (uploads happen once).
    pub fn upload_at<T: Copy>(
        &self,
        buf: &DevBuf,
        offset: usize,
        src: &[T],
        what: &str,
    ) -> Result<()> {
        let end = offset + std::mem::size_of_val(src);
        if end > buf.bytes {
            return Err(CudaError(format!(
                "uploading {what}: bytes {offset}..{end} are past the buffer's {}",
                buf.bytes
            )));
        }
        // SAFETY: the range lies in `buf` (checked above) and the copy is synchronous.
        unsafe { result::memcpy_htod_sync(buf.ptr + offset as u64, src) }
            .map_err(|e| CudaError::at(&format!("uploading {what}"), e))
    }

    /// `(free, total)` bytes of the device's memory.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(|e| CudaError::at("cuMemGetInfo", e))
    }
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// One device allocation, freed on drop.
pub struct DevBuf {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    ctx: Arc<CudaContext>,
    allocated: Arc<Allocated>,
}

impl DevBuf {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // A failure here (a context already torn down at exit) leaks nothing we could reclaim.
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `malloc_sync` and is freed once; `free_sync` waits for
            // the work that uses it (the stream is synchronized after every pass anyway).
            let _ = unsafe { result::free_sync(self.ptr) };
        }
        self.allocated.now.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Page-locked host memory: the staging area of per-pass inputs and of the logits, so that the
/// copies are true DMA transfers without a bounce through a driver buffer.
pub struct Pinned {
    ptr: *mut u8,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: the memory is plain bytes owned by this value; the backend reaches it only under its
// pass mutex.
unsafe impl Send for Pinned {}
// SAFETY: as above: shared references only read the pointer value.
unsafe impl Sync for Pinned {}

impl Pinned {
    pub fn new(dev: &Device, bytes: usize, what: &str) -> Result<Pinned> {
        dev.bind()?;
        // SAFETY: the context is current; flags 0 is plain page-locked memory.
        let ptr = unsafe { result::malloc_host(bytes.max(1), 0) }
            .map_err(|e| CudaError::at(&format!("allocating pinned {what}"), e))?;
        Ok(Pinned {
            ptr: ptr.cast(),
            bytes,
            ctx: dev.ctx.clone(),
        })
    }

    pub fn as_mut_slice<T: Copy>(&mut self) -> &mut [T] {
        assert_eq!(self.ptr as usize % std::mem::align_of::<T>(), 0);
        // SAFETY: the allocation is `bytes` long, page-aligned (checked for `T` above), ours
        // alone through `&mut self`, and every `T` used here (integers, floats) is valid for
        // any bits.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.cast(), self.bytes / std::mem::size_of::<T>())
        }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `malloc_host` and is freed once, after the last pass
            // synchronized its stream.
            let _ = unsafe { result::free_host(self.ptr.cast()) };
        }
    }
}

/// A kernel of the loaded module.
#[derive(Clone, Copy)]
pub struct Func {
    pub f: sys::CUfunction,
    /// Launched with programmatic stream serialization (programmatic dependent launch, sm_90
    /// and later): the kernel may start while the one before it in the stream finishes, and
    /// waits for it with `griddepcontrol.wait` before it touches anything that one writes
    /// (kernels/README.md, "Launch order").
    pub early: bool,
}

// SAFETY: a CUfunction is a handle valid in its context from any thread; launches are made only
// under the backend's pass mutex, with the context bound.
unsafe impl Send for Func {}
// SAFETY: as above; the handle is never mutated.
unsafe impl Sync for Func {}

/// Whether early launches ([`Func::early`]) are still taken: cleared for the rest of the process
/// when the driver refuses one, or a graph of them (then kernels go in plain stream order:
/// slower, the same results).
static EARLY_OK: AtomicBool = AtomicBool::new(true);

pub fn early_launches_ok() -> bool {
    EARLY_OK.load(Ordering::Relaxed)
}

/// Launches every later kernel in plain stream order, saying why once on stderr.
pub fn stop_early_launches(why: &str) {
    if EARLY_OK.swap(false, Ordering::Relaxed) {
        eprintln!("camelid: CUDA kernels launched in plain stream order from now on ({why})");
    }
}

/// A kernel argument as the driver wants it: a pointer to its value.
pub fn arg<T>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

/// Launches `f` on `stream`. `args` point at the values of the kernel's parameters, in order
/// and of their exact types (`u64` for pointers, `i32` for `int`, `i64` for `long long`).
///
/// # Safety
/// The arguments must match the kernel's signature, every pointer among them must address
/// device memory that holds what the kernel reads and writes at this geometry, and that memory
/// must stay allocated until the stream has run the kernel.
pub unsafe fn launch(
    f: Func,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    stream: sys::CUstream,
    args: &mut [*mut c_void],
) -> Result<()> {
    let plain = |args: &mut [*mut c_void]| {
        // SAFETY: forwarded to the caller (see above); the driver copies the argument values
        // at the call, so `args` need only live until it returns.
        unsafe { result::launch_kernel(f.f, grid, block, 0, stream, args) }
            .map_err(|e| CudaError::at("launching a kernel", e))
    };
    if !f.early || !early_launches_ok() {
        return plain(args);
    }
    // SAFETY: a plain-data union of the driver's headers; all zeros is a valid value.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: block.0,
        blockDimY: block.1,
        blockDimZ: block.2,
        sharedMemBytes: 0,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: as above; `config` and the attribute it points at live through the call, which
    // copies them.
    let early =
        unsafe { sys::cuLaunchKernelEx(&config, f.f, args.as_mut_ptr(), std::ptr::null_mut()) };
    if let Err(e) = early.result() {
        stop_early_launches(&format!("the driver refused an early launch: {e}"));
        return plain(args);
    }
    Ok(())
}

/// A cuBLAS handle bound to the backend's stream, with its own workspace so that GEMMs can be
/// captured into CUDA graphs (cuBLAS may not allocate during a capture).
pub struct Blas {
    handle: blas::cublasHandle_t,
    _workspace: DevBuf,
}

// SAFETY: the handle is used only under the backend's pass mutex (cuBLAS handles may move
// between threads as long as calls on one handle are not concurrent).
unsafe impl Send for Blas {}
// SAFETY: as above.
unsafe impl Sync for Blas {}

/// The cuBLAS workspace: twice the 4 MiB pool cuBLAS gives itself before Hopper (it suggests
/// 32 MiB on Hopper, for split-K kernels that the prompt GEMMs' shapes, 256 rows against
/// thousands of columns, have little use for; 24 MiB more would be 3% of the 1B's Q4_0 file).
pub(crate) const BLAS_WORKSPACE: usize = 8 << 20;

impl Blas {
    pub fn new(dev: &Device) -> Result<Blas> {
        dev.bind()?;
        let handle = cudarc::cublas::result::create_handle()
            .map_err(|e| CudaError::at("creating the cuBLAS handle", e))?;
        let workspace = dev.alloc(BLAS_WORKSPACE, "the cuBLAS workspace")?;
        // SAFETY: `handle` is live; the stream and workspace outlive it (both are owned by the
        // backend, and the workspace by this value).
        unsafe {
            check(
                blas::cublasSetStream_v2(handle, dev.stream() as _),
                "cublasSetStream",
            )?;
            check(
                blas::cublasSetWorkspace_v2(handle, workspace.ptr() as *mut c_void, BLAS_WORKSPACE),
                "cublasSetWorkspace",
            )?;
            // The default math mode: no TF32 for f32 GEMMs (the exact path is f32 throughout);
            // f16 inputs use tensor cores in any mode.
            check(
                blas::cublasSetMathMode(handle, blas::cublasMath_t::CUBLAS_DEFAULT_MATH),
                "cublasSetMathMode",
            )?;
        }
        Ok(Blas {
            handle,
            _workspace: workspace,
        })
    }

    /// Row-major `out[t, r] = Σ_c w[r, c] · x[t, c]` for `t < n`, `r < m`, `c < k`, with `out`
    /// rows `ldo` floats apart (a slab of a wider output). `w` and `x` are f32 (`f16 = false`)
    /// or f16 (`f16 = true`); `out` is f32, accumulated in f32.
    ///
    /// cuBLAS is column-major: a row-major `[a, b]` array is the column-major `[b, a]` array,
    /// its transpose, with leading dimension `b`. So `w` reads as `Wᵀ` (`[k, m]`, ld `k`), `x`
    /// as `Xᵀ` (`[k, n]`, ld `k`) and `out` as `Outᵀ` (`[m, n]`, ld `ldo`), and the product
    /// wanted is `Outᵀ = W · Xᵀ = (Wᵀ)ᵀ · Xᵀ`: op(A) = transpose of the `w` array, op(B) = the
    /// `x` array as it is ("TN"), m × n × k.
    ///
    /// # Safety
    /// `w` must hold `m · k` elements, `x` `n · k`, `out` `(n − 1) · ldo + m` floats, all
    /// device memory that lives until the stream has run the product.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        &self,
        f16: bool,
        m: usize,
        n: usize,
        k: usize,
        w: u64,
        x: u64,
        out: u64,
        ldo: usize,
    ) -> Result<()> {
        let (alpha, beta) = (1f32, 0f32);
        let (m, n, k, ldo) = (m as i32, n as i32, k as i32, ldo as i32);
        let t = blas::cublasOperation_t::CUBLAS_OP_T;
        let nt = blas::cublasOperation_t::CUBLAS_OP_N;
        // SAFETY: shapes and buffers as the caller guarantees; alpha and beta are host scalars
        // (the handle's default pointer mode) read during the call.
        unsafe {
            if f16 {
                let h = blas::cudaDataType_t::CUDA_R_16F;
                let f = blas::cudaDataType_t::CUDA_R_32F;
                check(
                    blas::cublasGemmEx(
                        self.handle,
                        t,
                        nt,
                        m,
                        n,
                        k,
                        arg(&alpha),
                        w as *const c_void,
                        h,
                        k,
                        x as *const c_void,
                        h,
                        k,
                        arg(&beta),
                        out as *mut c_void,
                        f,
                        ldo,
                        blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    ),
                    "cublasGemmEx",
                )
            } else {
                check(
                    blas::cublasSgemm_v2(
                        self.handle,
                        t,
                        nt,
                        m,
                        n,
                        k,
                        &alpha,
                        w as *const f32,
                        k,
                        x as *const f32,
                        k,
                        &beta,
                        out as *mut f32,
                        ldo,
                    ),
                    "cublasSgemm",
                )
            }
        }
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `create_handle` and is destroyed once.
        let _ = unsafe { cudarc::cublas::result::destroy_handle(self.handle) };
    }
}

fn check(status: blas::cublasStatus_t, what: &str) -> Result<()> {
    if status == blas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(CudaError(format!("{what}: {status:?}")))
    }
}
