//! The backend seam: where the forward pass's operations run and where their buffers live.
//!
//! The forward pass ([`crate::llama::forward_rows`]) is written once, against [`Ops`]: the
//! operations of one batch of rows on named buffers ([`Buf`]) and named weights ([`Mat`],
//! [`Norm`]). A backend owns everything those names stand for: the weights (uploaded once, in
//! their stored type), each sequence's KV cache ([`KvCache`]) and the activation buffers.
//! Its [`Backend::forward`] builds its `Ops` for a batch and runs the shared pass over it, so
//! the pass is statically dispatched inside a backend while [`crate::Model`] holds any backend
//! behind one `dyn` pointer.
//!
//! The CPU backend ([`crate::cpu::CpuBackend`]) is the kernels of `camelid-kernels`; the CUDA
//! backend is the `camelid-cuda` crate.

use std::any::Any;

use camelid_kernels::Precision;

use crate::error::ModelError;

/// One token of a batch: which sequence it extends, at which position, and what it gives back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Index into the batch's caches.
    pub seq: usize,
    pub pos: usize,
    pub token: u32,
    pub out: Out,
}

/// What a row of a batch gives back besides its keys and values in the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Out {
    /// Nothing (a prompt token whose successor is also in the prompt).
    #[default]
    None,
    /// Its logits, `[V]` (the next-token distribution).
    Logits,
    /// Its final hidden state, `[d]`: the residual stream after the final RMSNorm, before the
    /// output projection (what transformers' `LlamaModel(...).last_hidden_state` holds). Pooled
    /// into embeddings.
    Hidden,
    /// Its greedy next token: [`greedy_token`] of its logits. Greedy generation; a backend
    /// whose logits live on a device picks it there and copies back one number, not `V`.
    Token,
}

/// The greedy pick of a row of logits: the index of the largest, the first of equals, NaNs
/// passed over; 0 when the first logit is NaN (a broken row gives a token, not a panic). Every
/// backend's [`Out::Token`] and the sampler at temperature 0 pick with this.
pub fn greedy_token(logits: &[f32]) -> u32 {
    if logits.first().is_none_or(|l| l.is_nan()) {
        return 0;
    }
    let max = max_logit(logits);
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

/// The largest of `logits`, NaN aside (-∞ for none): the maximum over 16 independent lanes
/// (the loop vectorizes).
pub fn max_logit(logits: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = logits.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &l) in lanes.iter_mut().zip(chunk) {
            *m = m.max(l);
        }
    }
    lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &l| m.max(l))
}

/// The activation buffers of a pass, each `[B, width]` for the `B` rows of the batch (at most
/// [`crate::llama::MAX_BATCH`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// `[B, d]` the residual stream
    X,
    /// `[B, d]` a normed copy of it
    Xn,
    /// `[B, q]`, `[B, kv]`, `[B, kv]`, `[B, q]`
    Q,
    K,
    V,
    Att,
    /// `[B, d]` a projection's output before the residual add
    Proj,
    /// `[B, ff]`
    Gate,
    Up,
    /// `[R + T, V]` the logits of the `R` rows that want them, then of the `T` rows that want
    /// their greedy token ([`Out::Token`]), each in batch order
    Logits,
    /// `[H, d]` the final hidden states of the `H` rows that want them, in batch order
    Hidden,
}

/// A weight matrix, by its role (`usize`: the layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mat {
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
    /// The output projection (the embedding when tied).
    Output,
}

/// An RMSNorm gain vector, by its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    Attn(usize),
    Ffn(usize),
    Output,
}

/// The operations of the forward pass on one batch of rows, in a backend's memory.
///
/// `n` is the number of leading rows an operation covers (the batch, or the rows gathered for
/// logits); the operations that place rows in sequences (RoPE, the cache, attention) read the
/// batch's [`Row`]s, which the backend was given when it built this `Ops`. No method fails:
/// shapes are checked when the weights are loaded and the batch when it is formed.
pub trait Ops {
    /// `out[t] = token_embd[rows[t].token]` for every row of the batch.
    fn embed(&mut self, out: Buf);
    /// `out[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ gain`, `t < n`.
    fn rmsnorm(&mut self, out: Buf, x: Buf, gain: Norm, n: usize);
    /// `out[t, r] = Σ_c w[r, c] · x[t, c]`, `t < n`.
    fn matmul(&mut self, w: Mat, x: Buf, out: Buf, n: usize);
    /// [`Ops::matmul`] of each `(w, out)` of `products` with the same `x`; a backend may run
    /// them as one operation (the results are those of the separate products).
    fn matmuls(&mut self, x: Buf, products: &[(Mat, Buf)], n: usize) {
        for &(w, out) in products {
            self.matmul(w, x, out, n);
        }
    }
    /// `x[t] += w · a[t]`, `t < n` (the residual's products): [`Ops::matmul`] into `scratch`,
    /// then [`Ops::add`]; a backend may run it as one operation with the same results.
    fn matmul_add(&mut self, w: Mat, a: Buf, x: Buf, scratch: Buf, n: usize) {
        self.matmul(w, a, scratch, n);
        self.add(x, scratch, n);
    }
    /// Rotates the pairs of every head of `q[t]` and of `k[t]` by the angles of position
    /// `rows[t].pos` (RoPE), then writes the rotated `k[t]` and `v[t]` into layer `layer` of row
    /// `t`'s sequence cache at that position.
    fn rope_store(&mut self, layer: usize, q: Buf, k: Buf, v: Buf);
    /// The attention's inputs of layer `layer`: `q`, `k` and `v` of `x` ([`Ops::matmuls`] of
    /// Wq, Wk and Wv), then [`Ops::rope_store`]; a backend may run them as one operation with
    /// the same results. `n` is the whole batch.
    fn qkv_rope_store(&mut self, layer: usize, x: Buf, q: Buf, k: Buf, v: Buf, n: usize) {
        self.matmuls(
            x,
            &[(Mat::Q(layer), q), (Mat::K(layer), k), (Mat::V(layer), v)],
            n,
        );
        self.rope_store(layer, q, k, v);
    }
    /// Causal attention of `q[t]` over positions `0..=rows[t].pos` of its sequence's cache.
    fn attention(&mut self, layer: usize, q: Buf, out: Buf);
    /// SwiGLU's gate: `gate = silu(gate) ⊙ up`, `t < n`.
    fn silu_mul(&mut self, gate: Buf, up: Buf, n: usize);
    /// SwiGLU's first half of layer `layer`: `gate = silu(Wgate · x) ⊙ (Wup · x)`, `t < n`
    /// ([`Ops::matmuls`], then [`Ops::silu_mul`]; `up` is scratch); a backend may run it as
    /// one operation with the same results.
    fn swiglu(&mut self, layer: usize, x: Buf, gate: Buf, up: Buf, n: usize) {
        self.matmuls(x, &[(Mat::Gate(layer), gate), (Mat::Up(layer), up)], n);
        self.silu_mul(gate, up, n);
    }
    /// `x += y`, `t < n`.
    fn add(&mut self, x: Buf, y: Buf, n: usize);
    /// Copies the rows whose [`Row::out`] is `wants[0]`, then those whose is `wants[1]`, ...,
    /// each in batch order, to the first rows of `out`; returns how many. The pass only reads
    /// `out` after this and writes neither it nor `x` again, so a backend may let `out` stand
    /// for `x` where the gather would copy `x` whole (a pass of one row).
    fn gather_rows(&mut self, wants: &[Out], out: Buf, x: Buf) -> usize;
    /// The greedy tokens ([`greedy_token`]) of [`Buf::Logits`] rows `from..from + n`, in order:
    /// what the pass gives back for its [`Out::Token`] rows.
    fn greedy_tokens(&mut self, from: usize, n: usize);
    /// Narrows the batch to its rows that give something back ([`Row::out`] not
    /// [`Out::None`]), in batch order: their rows of each of `bufs` move to the front, and
    /// the ops that follow (products, norms, `silu_mul`, `add`, `gather_rows`; no more
    /// per-position ops) see only them. Returns how many rows the batch has now. A backend may
    /// keep every row, as this default does: it returns `n`, the rows so far.
    fn keep_output_rows(&mut self, bufs: &[Buf], n: usize) -> usize {
        let _ = bufs;
        n
    }
}

/// One sequence's keys and values, in a backend's memory; [`crate::State`] holds one.
pub trait KvCache: Any + Send + Sync {
    /// Positions it holds.
    fn n_ctx(&self) -> usize;
}

/// A device to run a model on, as users name it: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The GPU of this ordinal.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("{s:?} is not a device: cpu, cuda or cuda:N")),
        }
    }
}

/// What a backend runs on, for reports (`camelid bench --json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// The processor or card, and the code path (`avx512`, `NVIDIA H200 (sm_90, PDL)`).
    pub name: String,
    /// Bytes of the weights as the backend holds them.
    pub weight_bytes: u64,
    /// The most device memory the backend has held at once through its own allocations
    /// (weights, KV caches, activations, scratch), where it has a device of its own (GPU).
    pub memory_used: Option<u64>,
    /// The device's memory in use as its driver reports it (total − free): the above plus the
    /// driver's context and libraries, and any other process on the device.
    pub memory_in_use: Option<u64>,
}

/// The type of a KV cache's keys and values: f32, or f16 (llama.cpp's default: half the
/// memory, and half the bytes each decode step reads deep in a context; every key and value
/// rounded to nearest once when stored, so results move off the f32 arithmetic by about the
/// rounding of a 16-bit float).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheType {
    #[default]
    F32,
    F16,
}

impl CacheType {
    /// The cache a command uses where none is asked for, on every device: f16 at the fast
    /// precision (llama.cpp's default, half the memory, and the faster one deep in a context);
    /// f32 at the exact precision, whose results are the f32 reference's.
    pub fn default_for(precision: Precision) -> CacheType {
        match precision {
            Precision::Fast => CacheType::F16,
            Precision::Exact => CacheType::F32,
        }
    }

    /// `f32` or `f16`, as `--cache-type` names it.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
        }
    }

    /// Bytes of one key or value.
    pub fn bytes(self) -> u64 {
        match self {
            CacheType::F32 => 4,
            CacheType::F16 => 2,
        }
    }
}

/// A place the model runs: it owns the uploaded weights, makes KV caches, and runs batches.
pub trait Backend: Send + Sync {
    fn info(&self) -> DeviceInfo;

    /// Precision of products with quantized weights.
    fn precision(&self) -> Precision;
    fn set_precision(&mut self, precision: Precision);

    /// What the caches [`Backend::new_cache`] makes from now on hold.
    fn cache_type(&self) -> CacheType {
        CacheType::F32
    }
    /// Fails where the backend has no such cache.
    fn set_cache_type(&mut self, t: CacheType) -> Result<(), ModelError> {
        match t {
            CacheType::F32 => Ok(()),
            CacheType::F16 => Err(ModelError::Backend(format!(
                "the {} backend keeps f32 KV caches only",
                self.info().device
            ))),
        }
    }

    /// Host threads the backend computes with (1 where the host only drives a device).
    fn threads(&self) -> usize;
    fn set_threads(&mut self, threads: usize);

    /// A cache of `n_ctx` positions for one sequence. Fails when the backend's memory cannot
    /// hold it.
    fn new_cache(&self, n_ctx: usize) -> Result<Box<dyn KvCache>, ModelError>;

    /// Runs one batch of at most [`crate::llama::MAX_BATCH`] rows through the model
    /// ([`crate::llama::forward_rows`]): row `t` extends `caches[rows[t].seq]` at `rows[t].pos`
    /// (rows of one sequence in order of position; every cache made by this backend, with room
    /// for the row's position); the logits of the rows that want them go to the first `R` rows
    /// of `logits` (in batch order; it has room for `R + T` rows, the rest scratch), the greedy
    /// tokens of the `T` rows that want them to `tokens`, and the hidden states of those that
    /// want them to `hidden` (`[H, d]`). Fails when the device does (a lost GPU, a kernel
    /// fault) or cannot give an output: the CPU backend never fails.
    fn forward(
        &self,
        rows: &[Row],
        caches: &mut [&mut dyn KvCache],
        logits: &mut [f32],
        tokens: &mut [u32],
        hidden: &mut [f32],
    ) -> Result<(), ModelError>;

    /// Copies positions `0..len` of every layer of `src` into `dst` (both made by this
    /// backend, each holding at least `len` positions; [`crate::Model::copy_prefix`] checks),
    /// so that `dst` continues as if it had computed those tokens itself: `n > 1` choices of
    /// one prompt compute the prompt once.
    fn copy_cache(
        &self,
        src: &dyn KvCache,
        dst: &mut dyn KvCache,
        len: usize,
    ) -> Result<(), ModelError>;
}

/// The concrete cache of backend `C` behind a `dyn KvCache`.
///
/// # Panics
/// If the cache was made by another backend: [`crate::Model`] gives a backend only caches of
/// states it made itself.
pub fn downcast_cache<C: KvCache>(cache: &mut dyn KvCache) -> &mut C {
    // `KvCache: Any`, so the trait object upcasts to `dyn Any` (Rust 1.86).
    (cache as &mut dyn Any)
        .downcast_mut::<C>()
        .expect("a KV cache made by another backend")
}

/// As [`downcast_cache`], shared.
///
/// # Panics
/// If the cache was made by another backend.
pub fn downcast_cache_ref<C: KvCache>(cache: &dyn KvCache) -> &C {
    (cache as &dyn Any)
        .downcast_ref::<C>()
        .expect("a KV cache made by another backend")
}

#[cfg(test)]
mod tests {
    use super::{Device, greedy_token};

    #[test]
    fn the_greedy_token_is_the_first_largest_logit() {
        let mut l = vec![0.0f32; 37];
        l[5] = 2.0;
        l[30] = 2.0;
        assert_eq!(greedy_token(&l), 5, "the first of equals");
        l[20] = f32::NAN;
        l[33] = 3.0;
        assert_eq!(greedy_token(&l), 33, "NaNs passed over, the tail counted");
        l[0] = f32::NAN;
        assert_eq!(greedy_token(&l), 0, "a NaN first logit");
        assert_eq!(greedy_token(&[f32::NEG_INFINITY; 3]), 0);
        assert_eq!(greedy_token(&[-0.0, 0.0, -0.0]), 0, "zeros are equal");
        assert_eq!(greedy_token(&[]), 0);
    }

    #[test]
    fn devices_by_name() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert_eq!(e, format!("{bad:?} is not a device: cpu, cuda or cuda:N"));
        }
    }
}
