// camelid CUDA kernels: the row and element-wise operations of the Llama forward pass, in f32.
//
// Formulas as the CPU path, camelid-kernels `src/ops.rs`: RMSNorm as transformers
// `LlamaRMSNorm` (sum of squares in f64), SwiGLU's `silu(gate) * up` (RoPE is in quant.cu,
// beside the q and k products that apply it as they finish). Where the CPU rounds after each
// operation, so do these kernels (`__fmul_rn` and friends keep the compiler from fusing a
// product and a sum into one FMA).
//
// Built at run time by NVRTC without any header. The ABI is in README.md beside this file.

// ---------------------------------------------------------------------------------------------
// rmsnorm: out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * gain, one CTA of RMS_THREADS
// threads per row, grid (n); `out` may be `x` (`rms_row`, common.cuh).
extern "C" __global__ void __launch_bounds__(RMS_THREADS)
    rmsnorm(float* out, const float* x, const float* __restrict__ gain, int d, float eps, int n) {
    grid_dep_wait();
    __shared__ double warp_sums[RMS_THREADS / 32];
    const int row = blockIdx.x;
    if (row >= n) return;
    rms_row<RMS_THREADS>(out + (long long)row * d, x + (long long)row * d, gain, d, eps, warp_sums);
}

// ---------------------------------------------------------------------------------------------
// Element-wise, any grid (grid-stride loops); suggested block 256, grid ceil(n / 256) capped at
// a few thousand.

// SwiGLU's gate: gate = silu(gate) * up with silu(g) = g / (1 + exp(-g)), in the CPU's order.
extern "C" __global__ void silu_mul(float* __restrict__ gate, const float* __restrict__ up,
                                    long long n) {
    grid_dep_wait();
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = gate[i];
        gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
    }
}

// The residual: x += y.
extern "C" __global__ void add(float* __restrict__ x, const float* __restrict__ y, long long n) {
    grid_dep_wait();
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        x[i] = __fadd_rn(x[i], y[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// Row copies: one CTA per row, any block size (suggested 256), grid (n).

// out[j, :] = x[idx[j], :] (the rows whose logits are wanted, for instance).
extern "C" __global__ void gather_rows(float* __restrict__ out, const float* __restrict__ x,
                                       const int* __restrict__ idx, int d, int n) {
    grid_dep_wait();
    const int j = blockIdx.x;
    if (j >= n) return;
    const float* src = x + (long long)idx[j] * d;
    float* dst = out + (long long)j * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
}

// ---------------------------------------------------------------------------------------------
// Greedy picks: out[j] = the index of the largest of logits[j, 0 .. n_vocab), the first of
// equals, NaNs passed over, 0 when logits[j, 0] is NaN (camelid-model `greedy_token`, which the
// CPU and the sampler use). One CTA of ARGMAX_THREADS threads per row, grid (n). A thread reads
// its logits eight at a time before comparing them (in index order): a 128K vocabulary is then
// 16 rounds of eight loads a thread, rather than 125 loads in a plain loop.
#define ARGMAX_THREADS 1024
#define ARGMAX_BATCH 8

// Keeps (v, i) when it beats (best, at): larger, or equal at a smaller index. A NaN compares
// false both ways, so it never wins.
__device__ __forceinline__ void keep_better(float& best, int& at, float v, int i) {
    if (v > best || (v == best && i < at)) {
        best = v;
        at = i;
    }
}

extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_rows(const float* __restrict__ logits, unsigned int* __restrict__ out, int n_vocab,
                int n) {
    __shared__ float warp_best[ARGMAX_THREADS / 32];
    __shared__ int warp_at[ARGMAX_THREADS / 32];
    grid_dep_wait();
    const int row = blockIdx.x;
    if (row >= n) return;
    const float* l = logits + (long long)row * n_vocab;
    float best = __int_as_float(0xFF800000); // -inf: any number but NaN ties or beats it
    int at = 0x7FFFFFFF;
    for (int i0 = threadIdx.x; i0 < n_vocab; i0 += ARGMAX_BATCH * ARGMAX_THREADS) {
        float v[ARGMAX_BATCH];
#pragma unroll
        for (int k = 0; k < ARGMAX_BATCH; ++k) {
            const int i = i0 + k * ARGMAX_THREADS;
            v[k] = i < n_vocab ? l[i] : __int_as_float(0x7FC00000); // past the end: NaN, never kept
        }
#pragma unroll
        for (int k = 0; k < ARGMAX_BATCH; ++k) keep_better(best, at, v[k], i0 + k * ARGMAX_THREADS);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ob = __shfl_xor_sync(0xFFFFFFFFu, best, off);
        const int oa = __shfl_xor_sync(0xFFFFFFFFu, at, off);
        keep_better(best, at, ob, oa);
    }
    if ((threadIdx.x & 31) == 0) {
        warp_best[threadIdx.x >> 5] = best;
        warp_at[threadIdx.x >> 5] = at;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / 32; ++w) keep_better(best, at, warp_best[w], warp_at[w]);
        const float first = l[0];
        out[row] = (first != first || at == 0x7FFFFFFF) ? 0u : (unsigned int)at;
    }
}
