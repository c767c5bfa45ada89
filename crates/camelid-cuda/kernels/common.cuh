// camelid CUDA kernels: what every source uses, put before each of them when it is compiled
// (the host's NVRTC programs, scripts/check-cuda-kernels.sh's nvcc runs and emulation). Like
// the sources, it includes no header.

// Programmatic dependent launch (sm_90 and later; PTX ISA, "griddepcontrol"; README.md, "Launch
// order"): waits until the stream's previous kernel has completed and its writes show, then
// lets the next kernel launch. Every thread of every kernel calls it before it reads or writes
// anything another kernel writes (the products first ask L2 for their weights, which no kernel
// writes). Below sm_90, and for a kernel launched without the attribute, there is nothing to
// wait for.
__device__ __forceinline__ void grid_dep_wait() {
#if defined(CAMELID_EMU) || __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// IEEE half bits to f32 (exact) and f32 to half bits (round to nearest even), as the `half`
// crate does on the CPU.
__device__ __forceinline__ float half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short float_to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// KV caches hold f32, or f16 bits (the CPU's `CacheType::F16`: each key and value rounded to
// nearest once when stored, widened exactly when read; README.md, "KV caches"). Elements `off`
// and `off + 1` (`off` even) of a cache row: a rotated pair of keys, or two values.
__device__ __forceinline__ void store_kv_pair(void* row, int off, float2 v, int half) {
    if (half) {
        *(unsigned int*)((unsigned short*)row + off) =
            (unsigned int)float_to_half(v.x) | ((unsigned int)float_to_half(v.y) << 16);
    } else {
        *(float2*)((float*)row + off) = v;
    }
}

// Two f32 to f16 (round to nearest even) in one register, `lo` in the low half.
__device__ __forceinline__ unsigned int pack_half2(float lo, float hi) {
    unsigned int r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    r = (unsigned int)float_to_half(lo) | ((unsigned int)float_to_half(hi) << 16);
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}

// c += A · B for one m16n8k16 tile, f16 inputs and f32 accumulators (PTX ISA, "Matrix Fragments
// for mma.m16n8k16 with floating point type"; quant.cu's tensor-core products spell the layout
// out). sm_80 and later: the host does not launch the kernels that use it on older cards
// (kernels.rs, TC_MIN_MAJOR), where this traps.
__device__ __forceinline__ void mma_16816(float (&c)[4], const unsigned int (&a)[4],
                                          unsigned int b0, unsigned int b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    asm volatile("trap;");
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// RMSNorm of one row of `d` floats (transformers `LlamaRMSNorm`; camelid-kernels `src/ops.rs`):
// out = x / sqrt(mean(x^2) + eps) * gain, by a CTA of THREADS threads (a multiple of 32 dividing
// RMS_THREADS), with its sums in the order of a CTA of RMS_THREADS threads whatever THREADS is:
// virtual thread u sums the f64 squares of columns u, u + RMS_THREADS, .., each virtual warp adds
// its lanes' by xor shuffles, and the warps' sums are added in order. So `rmsnorm` (ops.cu) and
// the products that norm their output on their way out (quant.cu, `matvec_add_norm_<t>`) give
// the same floats. `x` is read through L2 (`__ldcg`): in the products other CTAs wrote it during
// the launch. `out` may be `x` (every element is read for the sum before any is written, and
// then by the thread that writes it). `warp_sums`: RMS_THREADS / 32 doubles of shared memory,
// free again when this returns.
#define RMS_THREADS 256

template <int THREADS>
__device__ __forceinline__ void rms_row(float* out, const float* x, const float* __restrict__ gain,
                                        int d, float eps, double* warp_sums) {
    static_assert(THREADS % 32 == 0 && RMS_THREADS % THREADS == 0, "whole warps dividing 256");
    constexpr int V = RMS_THREADS / THREADS;
    const int t = threadIdx.y * blockDim.x + threadIdx.x;
    // f64 squares and sums, as the CPU: the result then does not depend on the summation order
    // to f32 precision. Four loads go out before their sums (columns past `d` add +0, which
    // changes no sum), so that a row's reads overlap rather than wait for each other.
#pragma unroll
    for (int v = 0; v < V; ++v) {
        double ss = 0.0;
        for (int c0 = t + v * THREADS; c0 < d; c0 += 4 * RMS_THREADS) {
            double e[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int c = c0 + k * RMS_THREADS;
                e[k] = c < d ? (double)__ldcg(x + c) : 0.0;
            }
#pragma unroll
            for (int k = 0; k < 4; ++k) ss += e[k] * e[k];
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xFFFFFFFFu, ss, off);
        if ((t & 31) == 0) warp_sums[(t >> 5) + v * (THREADS / 32)] = ss;
    }
    __syncthreads();
    double total = 0.0;
#pragma unroll
    for (int w = 0; w < RMS_THREADS / 32; ++w) total += warp_sums[w];
    const float inv = (float)(1.0 / sqrt(total / (double)d + (double)eps));
    for (int c = t; c < d; c += THREADS) out[c] = __fmul_rn(gain[c], __fmul_rn(__ldcg(x + c), inv));
    __syncthreads();
}
