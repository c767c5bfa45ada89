// camelid CUDA kernels: the row and element-wise operations of the Llama forward pass, in f32.
//
// Formulas as the CPU path, camelid-kernels `src/ops.rs`: RMSNorm as transformers
// `LlamaRMSNorm` (sum of squares in f64), RoPE on adjacent pairs as Meta's `apply_rotary_emb`
// (angle formed in f32, sine and cosine taken in f64 and rounded to f32), SwiGLU's
// `silu(gate) * up`. Where the CPU rounds after each operation, so do these kernels
// (`__fmul_rn` and friends keep the compiler from fusing a product and a sum into one FMA).
//
// Built at run time by NVRTC without any header. The ABI is in README.md beside this file.

// ---------------------------------------------------------------------------------------------
// rmsnorm: out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * gain, one CTA of RMS_THREADS
// threads per row, grid (n). `out` may be `x`: every element is read for the sum before any is
// written (the block reduction synchronizes), and then by the thread that writes it.
#define RMS_THREADS 256

extern "C" __global__ void __launch_bounds__(RMS_THREADS)
    rmsnorm(float* out, const float* x, const float* __restrict__ gain, int d, float eps, int n) {
    __shared__ double warp_sums[RMS_THREADS / 32];
    const int row = blockIdx.x;
    if (row >= n) return;
    const float* xr = x + (long long)row * d;
    float* outr = out + (long long)row * d;

    // f64 squares and sums, as the CPU: the result then does not depend on the summation order
    // to f32 precision.
    double ss = 0.0;
    for (int c = threadIdx.x; c < d; c += RMS_THREADS) {
        const double v = (double)xr[c];
        ss += v * v;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xFFFFFFFFu, ss, off);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
    __syncthreads();
    double total = 0.0;
#pragma unroll
    for (int w = 0; w < RMS_THREADS / 32; ++w) total += warp_sums[w];
    const float inv = (float)(1.0 / sqrt(total / (double)d + (double)eps));

    for (int c = threadIdx.x; c < d; c += RMS_THREADS) {
        outr[c] = __fmul_rn(gain[c], __fmul_rn(xr[c], inv));
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE: the adjacent pairs (x[2i], x[2i+1]) of every head of row j rotated by the angle
// pos[j] * inv_freq[i], in place. One thread per (row, head, pair), each with its own sine and
// cosine (cheap next to the launch; the grid is small).
#define ROPE_THREADS 128

// The pair at p rotated by the angle pos * inv_freq_i, in place; returns the new pair.
__device__ __forceinline__ float2 rotate_pair(float2* p, int pos, float inv_freq_i) {
    // The angle in f32 (as transformers and the CPU form it), then sin and cos exactly.
    const float angle = __fmul_rn((float)pos, inv_freq_i);
    double s, c;
    sincos((double)angle, &s, &c);
    const float sin_a = (float)s, cos_a = (float)c;
    const float2 v = *p;
    float2 r;
    r.x = __fsub_rn(__fmul_rn(v.x, cos_a), __fmul_rn(v.y, sin_a));
    r.y = __fadd_rn(__fmul_rn(v.x, sin_a), __fmul_rn(v.y, cos_a));
    *p = r;
    return r;
}

// RoPE of q (n_heads) and of k (n_kv_heads) in place, then the rotated k and v into the row's
// cache slots (k_rows[j], v_rows[j]: n_kv_heads * head_dim floats each): the first
// n_heads * head_dim / 2 threads of a row rotate q's pairs, the next n_kv_heads * head_dim / 2
// rotate k's and copy that pair of k and of v to the cache. Block ROPE_THREADS, grid
// (ceil((n_heads + n_kv_heads) * head_dim / 2 / ROPE_THREADS), n).
extern "C" __global__ void __launch_bounds__(ROPE_THREADS)
    rope_store(float* q, float* k, const float* __restrict__ v, const int* __restrict__ pos,
               const float* __restrict__ inv_freq, float* const* __restrict__ k_rows,
               float* const* __restrict__ v_rows, int n, int n_heads, int n_kv_heads,
               int head_dim) {
    const int j = blockIdx.y;
    const int half = head_dim / 2;
    int idx = blockIdx.x * ROPE_THREADS + threadIdx.x;
    if (j >= n || idx >= (n_heads + n_kv_heads) * half) return;
    if (idx < n_heads * half) {
        const int head = idx / half, i = idx % half;
        rotate_pair((float2*)(q + (long long)j * n_heads * head_dim + head * head_dim + 2 * i),
                    pos[j], inv_freq[i]);
        return;
    }
    idx -= n_heads * half;
    const int i = idx % half, off = (idx / half) * head_dim + 2 * i;
    const long long row = (long long)j * n_kv_heads * head_dim;
    const float2 r = rotate_pair((float2*)(k + row + off), pos[j], inv_freq[i]);
    *(float2*)(k_rows[j] + off) = r;
    *(float2*)(v_rows[j] + off) = *(const float2*)(v + row + off);
}

// ---------------------------------------------------------------------------------------------
// Element-wise, any grid (grid-stride loops); suggested block 256, grid ceil(n / 256) capped at
// a few thousand.

// SwiGLU's gate: gate = silu(gate) * up with silu(g) = g / (1 + exp(-g)), in the CPU's order.
extern "C" __global__ void silu_mul(float* __restrict__ gate, const float* __restrict__ up,
                                    long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = gate[i];
        gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
    }
}

// The residual: x += y.
extern "C" __global__ void add(float* __restrict__ x, const float* __restrict__ y, long long n) {
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
    const int j = blockIdx.x;
    if (j >= n) return;
    const float* src = x + (long long)idx[j] * d;
    float* dst = out + (long long)j * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
}

// ---------------------------------------------------------------------------------------------
// Greedy picks: out[j] = the index of the largest of logits[j, 0 .. n_vocab), the first of
// equals, NaNs passed over, 0 when logits[j, 0] is NaN (camelid-model `greedy_token`, which the
// CPU and the sampler use). One CTA of ARGMAX_THREADS threads per row, grid (n).
#define ARGMAX_THREADS 256

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
    const int row = blockIdx.x;
    if (row >= n) return;
    const float* l = logits + (long long)row * n_vocab;
    float best = __int_as_float(0xFF800000); // -inf: any number but NaN ties or beats it
    int at = 0x7FFFFFFF;
    for (int i = threadIdx.x; i < n_vocab; i += ARGMAX_THREADS) keep_better(best, at, l[i], i);
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
