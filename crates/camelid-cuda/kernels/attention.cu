// camelid CUDA kernels: causal attention with grouped-query heads, flash-decoding style.
//
// Math as the CPU path (camelid-kernels `src/ops.rs`, `attention_with`): for query row j and
// query head h, scores s_t = (q . k_t) * scale over the cached positions t < n_past[j] of kv
// head g(h) = h / (n_heads / n_kv_heads), p = softmax(s), out = sum_t p_t v_t.
//
// Two kernels. `attention_partial` splits each row's positions into chunks of `chunk_len`;
// one CTA takes one (chunk, kv head, row) and computes, for every query head of that kv head
// (so each key and value row is read once per group, not once per head), the partial softmax
// of its chunk: m = max_t s_t, l = sum_t exp(s_t - m), o = sum_t exp(s_t - m) v_t. Inside the
// chunk it walks tiles of ATT_TILE positions with the running-maximum rescaling of
// FlashAttention (Dao et al. 2022; flash-decoding, Dao et al. 2023). `attention_combine`
// merges the chunks of each (row, head): M = max m_c, out = sum_c e^(m_c - M) o_c /
// sum_c e^(m_c - M) l_c. The grid does not depend on n_past: chunks at or past n_past[j] exit
// at once and the combine step reads only the ceil(n_past[j] / chunk_len) chunks that ran, so
// a decode step captured in a CUDA graph stays valid as the positions advance.
//
// `attention` does both in one launch (decode steps, where launches are the cost): the last
// CTA of a (row, kv head) to finish its chunk (a counter per pair, incremented after a memory
// fence, as in the CUDA C++ Programming Guide's "Memory Fence Functions" example of a sum over
// the grid) merges the chunks of that kv head's query heads, as `attention_combine` does, and
// sets the counter back to zero for the next launch.
//
// Each has a form for f32 caches and one for f16 caches (suffix `_f16`), whose keys and values
// are widened to f32 as they are read: the same arithmetic on the values the cache holds.
//
// Built at run time by NVRTC without any header. The ABI is in README.md beside this file.

#define ATT_WARPS 4
#define ATT_TILE (32 * ATT_WARPS) // positions per tile: one per lane when scoring
#define ATT_MAX_HD 256

#define FULL_MASK 0xFFFFFFFFu

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xFF800000); }

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
    acc = fmaf(a.z, b.z, acc);
    return fmaf(a.w, b.w, acc);
}

__device__ __forceinline__ float4 axpy4(float a, float4 x, float4 y) {
    return make_float4(fmaf(a, x.x, y.x), fmaf(a, x.y, y.y), fmaf(a, x.z, y.z), fmaf(a, x.w, y.w));
}

__device__ __forceinline__ float4 scale4(float a, float4 x) {
    return make_float4(a * x.x, a * x.y, a * x.z, a * x.w);
}

__device__ __forceinline__ float4 add4(float4 a, float4 b) {
    return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// Four cache elements from element 4c of a row, as f32: a float4 of an f32 cache, or four f16
// bits of an f16 cache widened exactly (common.cuh, "KV caches").
__device__ __forceinline__ float4 load4(const float* row, int c) {
    return __ldg((const float4*)row + c);
}

// Four f16 values (two words, the lower element in the lower half) widened exactly.
__device__ __forceinline__ float4 widen4(unsigned int lo, unsigned int hi) {
    return make_float4(half_to_float((unsigned short)(lo & 0xFFFFu)),
                       half_to_float((unsigned short)(lo >> 16)),
                       half_to_float((unsigned short)(hi & 0xFFFFu)),
                       half_to_float((unsigned short)(hi >> 16)));
}

__device__ __forceinline__ float4 load4(const unsigned short* row, int c) {
    const uint2 u = __ldg((const uint2*)row + c);
    return widen4(u.x, u.y);
}

// The scores of one key row (`nv4` float4s) against the pass's queries in shared memory
// (`sq[g * nv4 + c]`): s[g] += q_g . k, in column order, for g < gc.
template <int SLOTS>
__device__ __forceinline__ void score_row(const float* kr, int nv4, const float4* sq, int gc,
                                          float (&s)[SLOTS]) {
#pragma unroll 4
    for (int c = 0; c < nv4; ++c) {
        const float4 k4 = load4(kr, c);
#pragma unroll
        for (int g = 0; g < SLOTS; ++g)
            if (g < gc) s[g] = dot4(sq[g * nv4 + c], k4, s[g]);
    }
}

// The same over an f16 row: where its width is a multiple of 8 (so every row starts 16-byte
// aligned), 16 bytes a load, half the load instructions of the scoring loop, the same sums in
// the same order.
template <int SLOTS>
__device__ __forceinline__ void score_row(const unsigned short* kr, int nv4, const float4* sq,
                                          int gc, float (&s)[SLOTS]) {
    if (nv4 % 2) {
        for (int c = 0; c < nv4; ++c) {
            const float4 k4 = load4(kr, c);
#pragma unroll
            for (int g = 0; g < SLOTS; ++g)
                if (g < gc) s[g] = dot4(sq[g * nv4 + c], k4, s[g]);
        }
        return;
    }
#pragma unroll 2
    for (int c = 0; c < nv4; c += 2) {
        const uint4 u = __ldg((const uint4*)kr + c / 2);
        const float4 k0 = widen4(u.x, u.y), k1 = widen4(u.z, u.w);
#pragma unroll
        for (int g = 0; g < SLOTS; ++g)
            if (g < gc) s[g] = dot4(sq[g * nv4 + c + 1], k1, dot4(sq[g * nv4 + c], k0, s[g]));
    }
}

__device__ __forceinline__ float4 shfl_xor4(float4 v, int off) {
    return make_float4(__shfl_xor_sync(FULL_MASK, v.x, off), __shfl_xor_sync(FULL_MASK, v.y, off),
                       __shfl_xor_sync(FULL_MASK, v.z, off), __shfl_xor_sync(FULL_MASK, v.w, off));
}

// The combine step of (row j, query head h): out[j, h, :] = sum_c e^(m_c - M) o_c /
// sum_c e^(m_c - M) l_c over the ceil(n_past[j] / chunk_len) chunks that ran; zeros when
// n_past[j] == 0 (the CPU's empty mix). COMBINE_THREADS threads, all of which call it. The
// partials are read through L2 (`__ldcg`): in the one-launch form other CTAs wrote them during
// this kernel, and L1 is not coherent.
#define COMBINE_THREADS 128

// A fixed-order reduction over the CTA (COMBINE_THREADS / 32 warps): the largest, or the sum.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
    v = MAX ? warp_max(v) : warp_sum(v);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = scratch[0];
#pragma unroll
    for (int w = 1; w < COMBINE_THREADS / 32; ++w) r = MAX ? fmaxf(r, scratch[w]) : r + scratch[w];
    __syncthreads();
    return r;
}

// The chunks of a row with np positions that ran (ceil(np / chunk_len), at most max_chunks).
__device__ __forceinline__ int chunks_run(int np, int chunk_len, int max_chunks) {
    return np > 0 ? min(max_chunks, (np + chunk_len - 1) / chunk_len) : 0;
}

__device__ __forceinline__ void combine_head(const float* part_o, const float* part_ml, int np,
                                             float* out, int n_heads, int head_dim,
                                             int chunk_len, int max_chunks, int h, int j,
                                             float* scratch, float* weight) {
    const int tid = threadIdx.x;
    const int nc = chunks_run(np, chunk_len, max_chunks);
    const long long base = ((long long)j * n_heads + h) * max_chunks;

    float m = neg_inf();
    for (int c = tid; c < nc; c += COMBINE_THREADS) m = fmaxf(m, __ldcg(part_ml + 2 * (base + c)));
    const float M = block_reduce<true>(m, scratch);
    float l = 0.0f;
    for (int c = tid; c < nc; c += COMBINE_THREADS)
        l += __ldcg(part_ml + 2 * (base + c) + 1) * expf(__ldcg(part_ml + 2 * (base + c)) - M);
    const float total = block_reduce<false>(l, scratch);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;

    // Each thread owns columns tid and tid + COMBINE_THREADS (head_dim <= 256); the chunk
    // weights e^(m_c - M) are computed once per batch of COMBINE_THREADS chunks.
    float acc[ATT_MAX_HD / COMBINE_THREADS] = {};
    for (int c0 = 0; c0 < nc; c0 += COMBINE_THREADS) {
        const int c = c0 + tid;
        weight[tid] = c < nc ? expf(__ldcg(part_ml + 2 * (base + c)) - M) : 0.0f;
        __syncthreads();
        const int cn = min(COMBINE_THREADS, nc - c0);
#pragma unroll
        for (int k = 0; k < ATT_MAX_HD / COMBINE_THREADS; ++k) {
            const int d = tid + k * COMBINE_THREADS;
            if (d < head_dim) {
                const float* po = part_o + (base + c0) * head_dim + d;
                for (int i = 0; i < cn; ++i)
                    acc[k] = fmaf(weight[i], __ldcg(po + (long long)i * head_dim), acc[k]);
            }
        }
        __syncthreads();
    }
    float* o = out + ((long long)j * n_heads + h) * head_dim;
#pragma unroll
    for (int k = 0; k < ATT_MAX_HD / COMBINE_THREADS; ++k) {
        const int d = tid + k * COMBINE_THREADS;
        if (d < head_dim) o[d] = acc[k] * inv;
    }
}

// Block ATT_TILE threads, grid (max_chunks, n_kv_heads, n), no dynamic shared memory.
//
// Scoring: lane = position (each lane reads its own key row, the group's queries are broadcast
// from shared memory), so a score needs no cross-lane reduction. Mixing: lanes = columns of
// the value rows (coalesced), positions taken in turn with their weight broadcast by shuffle;
// when a row has fewer than 32 float4s, the warp splits into 32 / L groups of L lanes that take
// different positions and are summed at the end.
//
// Each lane keeps ATT_SLOTS float4 accumulators: one per query head of the pass when a value
// row fits in 32 float4s (head_dim <= 128, ATT_SLOTS heads per pass), two per head otherwise
// (ATT_SLOTS / 2 heads per pass, slot s = head s / 2, float4 column lc + 32 (s % 2)).
#define ATT_SLOTS 8
static_assert(COMBINE_THREADS == ATT_TILE, "the last CTA of attention_partial combines");

// ONE: the one-launch form (`attention`), whose last CTA of a row and kv head combines. A
// template rather than a run-time choice: the combining tail costs registers (137 against 104
// on sm_90), which the partials-only form (`attention_partial`, prompt batches, many CTAs)
// should not pay. E: the caches' element, float or f16 bits (unsigned short).
template <bool ONE, class E>
__device__ __forceinline__ void attention_impl(const float* __restrict__ q, const E* const* __restrict__ k_cache,
                      const E* const* __restrict__ v_cache, const int* __restrict__ n_past,
                      float* part_o, float* part_ml, int n_heads, int n_kv_heads, int head_dim,
                      float scale, int chunk_len, int max_chunks, int* counters, float* out) {
    __shared__ float4 sq[ATT_SLOTS * 32];                // the pass's queries, [head][float4]
    __shared__ float4 red[ATT_WARPS - 1][ATT_SLOTS][32]; // outputs of warps 1..
    __shared__ float smax[ATT_WARPS][ATT_SLOTS];
    __shared__ float ssum[ATT_WARPS][ATT_SLOTS];

    __shared__ float comb_scratch[COMBINE_THREADS / 32];
    __shared__ float comb_weight[COMBINE_THREADS];
    __shared__ int last;

    grid_dep_wait();
    const int chunk = blockIdx.x, kvh = blockIdx.y, j = blockIdx.z;
    const int np = n_past[j];
    const int t_begin = chunk * chunk_len;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = n_heads / n_kv_heads;
    if (ONE && np == 0 && chunk == 0) {
        // No chunk runs: this CTA gives the group's heads their zeros.
        for (int g = 0; g < group; ++g)
            combine_head(part_o, part_ml, np, out, n_heads, head_dim, chunk_len, max_chunks,
                         kvh * group + g, j, comb_scratch, comb_weight);
        return;
    }
    if (t_begin >= np) return; // past this row's positions: the combine step skips it
    const int t_end = min(np, t_begin + chunk_len);

    const int kv_dim = n_kv_heads * head_dim;
    const int nv4 = head_dim / 4;
    const E* K = k_cache[j] + kvh * head_dim;
    const E* V = v_cache[j] + kvh * head_dim;
    const float4* q4 = (const float4*)q;

    // Mixing layout: L lanes per value row, 32 / L rows at a time; wide heads take two slots.
    const int L = nv4 <= 8 ? 8 : (nv4 <= 16 ? 16 : 32);
    const int rows_at_once = 32 / L;
    const int sub = lane / L, lc = lane % L;
    const bool wide = nv4 > 32;
    const int heads_per_pass = wide ? ATT_SLOTS / 2 : ATT_SLOTS;

    for (int g0 = 0; g0 < group; g0 += heads_per_pass) {
        const int gc = min(heads_per_pass, group - g0);
        __syncthreads(); // the previous pass is done with sq and red
        for (int e = tid; e < gc * nv4; e += ATT_TILE) {
            sq[e] = q4[((long long)j * n_heads + kvh * group + g0) * nv4 + e];
        }
        __syncthreads();

        float m_run[ATT_SLOTS], l_part[ATT_SLOTS];
        float4 o[ATT_SLOTS];
#pragma unroll
        for (int g = 0; g < ATT_SLOTS; ++g) {
            m_run[g] = neg_inf();
            l_part[g] = 0.0f;
            o[g] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }

        for (int tile = t_begin; tile < t_end; tile += ATT_TILE) {
            // Scores of this lane's position, one per head of the pass.
            const int t = tile + warp * 32 + lane;
            const bool valid = t < t_end;
            float s[ATT_SLOTS];
#pragma unroll
            for (int g = 0; g < ATT_SLOTS; ++g) s[g] = 0.0f;
            if (valid) score_row(K + (long long)t * kv_dim, nv4, sq, gc, s);
#pragma unroll
            for (int g = 0; g < ATT_SLOTS; ++g) {
                s[g] = valid ? s[g] * scale : neg_inf();
                if (g < gc) {
                    const float mx = warp_max(s[g]);
                    if (lane == 0) smax[warp][g] = mx;
                }
            }
            __syncthreads();

            // New running maximum (the tile's first position is valid, so it is finite);
            // rescale what was summed so far to it.
            float p[ATT_SLOTS], alpha[ATT_SLOTS];
#pragma unroll
            for (int g = 0; g < ATT_SLOTS; ++g) {
                p[g] = 0.0f;
                alpha[g] = 1.0f;
                if (g < gc) {
                    float mt = smax[0][g];
#pragma unroll
                    for (int w = 1; w < ATT_WARPS; ++w) mt = fmaxf(mt, smax[w][g]);
                    const float m_new = fmaxf(m_run[g], mt);
                    alpha[g] = expf(m_run[g] - m_new); // 0 on the first tile
                    p[g] = valid ? expf(s[g] - m_new) : 0.0f;
                    l_part[g] = fmaf(l_part[g], alpha[g], p[g]);
                    m_run[g] = m_new;
                }
            }
#pragma unroll
            for (int sl = 0; sl < ATT_SLOTS; ++sl) {
                o[sl] = scale4(wide ? alpha[sl >> 1] : alpha[sl], o[sl]);
            }
            __syncthreads(); // smax is rewritten by the next tile

            // o += p_t v_t over this warp's positions; invalid positions are never read.
            const int wbase = tile + warp * 32;
            const int cnt = min(32, t_end - wbase);
            for (int i0 = 0; i0 < cnt; i0 += rows_at_once) {
                const int i = i0 + sub;
                float pi[ATT_SLOTS];
#pragma unroll
                for (int g = 0; g < ATT_SLOTS; ++g)
                    pi[g] = g < gc ? __shfl_sync(FULL_MASK, p[g], i & 31) : 0.0f;
                if (i < cnt) {
                    const E* vr = V + (long long)(wbase + i) * kv_dim;
                    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    const float4 v0 = lc < nv4 ? load4(vr, lc) : zero;
                    const float4 v1 = wide && lc + 32 < nv4 ? load4(vr, lc + 32) : zero;
#pragma unroll
                    for (int sl = 0; sl < ATT_SLOTS; ++sl) {
                        const int g = wide ? sl >> 1 : sl;
                        if (g < gc) {
                            const float w = wide ? pi[sl >> 1] : pi[sl];
                            o[sl] = axpy4(w, wide && (sl & 1) ? v1 : v0, o[sl]);
                        }
                    }
                }
            }
        }

        // Sum the lane groups that took different positions, then the warps, in a fixed order.
        for (int off = L; off < 32; off <<= 1) {
#pragma unroll
            for (int sl = 0; sl < ATT_SLOTS; ++sl) o[sl] = add4(o[sl], shfl_xor4(o[sl], off));
        }
#pragma unroll
        for (int g = 0; g < ATT_SLOTS; ++g) {
            if (g < gc) {
                const float l = warp_sum(l_part[g]);
                if (lane == 0) ssum[warp][g] = l;
            }
        }
        if (warp > 0 && sub == 0) {
#pragma unroll
            for (int sl = 0; sl < ATT_SLOTS; ++sl) red[warp - 1][sl][lc] = o[sl];
        }
        __syncthreads();
        if (warp == 0 && sub == 0) {
#pragma unroll
            for (int sl = 0; sl < ATT_SLOTS; ++sl) {
                const int g = wide ? sl >> 1 : sl;
                const int c = wide ? lc + 32 * (sl & 1) : lc;
                if (g < gc && c < nv4) {
                    const long long part =
                        ((long long)j * n_heads + kvh * group + g0 + g) * max_chunks + chunk;
                    float4 acc = o[sl];
#pragma unroll
                    for (int w = 0; w < ATT_WARPS - 1; ++w) acc = add4(acc, red[w][sl][lc]);
                    ((float4*)part_o)[part * nv4 + c] = acc;
                }
            }
        }
        if (tid < gc) {
            const long long part =
                ((long long)j * n_heads + kvh * group + g0 + tid) * max_chunks + chunk;
            float l = ssum[0][tid];
#pragma unroll
            for (int w = 1; w < ATT_WARPS; ++w) l += ssum[w][tid];
            float m = m_run[0];
#pragma unroll
            for (int g = 1; g < ATT_SLOTS; ++g)
                if (g == tid) m = m_run[g];
            part_ml[2 * part] = m;
            part_ml[2 * part + 1] = l;
        }
    }
    if (!ONE) return;

    // The one-launch form: this CTA's partials are made visible to the whole device before it
    // is counted; the CTA that brings the count to the number of chunks that run is the last,
    // and combines.
    __threadfence();
    __syncthreads();
    const int nc = chunks_run(np, chunk_len, max_chunks);
    int* count = counters + (long long)j * n_kv_heads + kvh;
    if (tid == 0) last = atomicAdd(count, 1) == nc - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (tid == 0) *count = 0;
    for (int g = 0; g < group; ++g)
        combine_head(part_o, part_ml, np, out, n_heads, head_dim, chunk_len, max_chunks,
                     kvh * group + g, j, comb_scratch, comb_weight);
}

// The two forms for each cache element: `attention_partial` and `attention` read f32 caches,
// `attention_partial_f16` and `attention_f16` f16 ones; the arguments are the same otherwise.
// `attention` is attention_partial and attention_combine in one launch: the same grid and
// block as attention_partial; `counters` holds n * n_kv_heads ints, zero before the launch and
// after it. (No __launch_bounds__: with it ptxas caps the registers and spills; without, it
// fits.)
#define CAMELID_ATTENTION(suffix, E)                                                              \
    extern "C" __global__ void attention_partial##suffix(                                         \
        const float* __restrict__ q, const E* const* __restrict__ k_cache,                        \
        const E* const* __restrict__ v_cache, const int* __restrict__ n_past,                     \
        float* __restrict__ part_o, float* __restrict__ part_ml, int n_heads, int n_kv_heads,     \
        int head_dim, float scale, int chunk_len, int max_chunks) {                               \
        attention_impl<false, E>(q, k_cache, v_cache, n_past, part_o, part_ml, n_heads,           \
                                 n_kv_heads, head_dim, scale, chunk_len, max_chunks, nullptr,     \
                                 nullptr);                                                        \
    }                                                                                             \
    extern "C" __global__ void attention##suffix(                                                 \
        const float* __restrict__ q, const E* const* __restrict__ k_cache,                        \
        const E* const* __restrict__ v_cache, const int* __restrict__ n_past, float* part_o,      \
        float* part_ml, int n_heads, int n_kv_heads, int head_dim, float scale, int chunk_len,    \
        int max_chunks, int* counters, float* out) {                                              \
        attention_impl<true, E>(q, k_cache, v_cache, n_past, part_o, part_ml, n_heads,            \
                                n_kv_heads, head_dim, scale, chunk_len, max_chunks, counters,     \
                                out);                                                             \
    }

CAMELID_ATTENTION(, float)
CAMELID_ATTENTION(_f16, unsigned short)

// Block COMBINE_THREADS, grid (n_heads, n), no dynamic shared memory. out: [n, n_heads *
// head_dim].
extern "C" __global__ void __launch_bounds__(COMBINE_THREADS)
    attention_combine(const float* part_o, const float* part_ml,
                      const int* __restrict__ n_past, float* __restrict__ out, int n_heads,
                      int head_dim, int chunk_len, int max_chunks) {
    __shared__ float scratch[COMBINE_THREADS / 32];
    __shared__ float weight[COMBINE_THREADS];
    grid_dep_wait();
    const int h = blockIdx.x, j = blockIdx.y;
    combine_head(part_o, part_ml, n_past[j], out, n_heads, head_dim, chunk_len, max_chunks, h, j,
                 scratch, weight);
}

// ---------------------------------------------------------------------------------------------
// Prompt attention on the tensor cores, over f16 caches: `attention_tc_f16`.
//
// The kernels above read each key and value row once per row of the batch (and group of query
// heads): a prompt of n rows reads its cache n times over, and scores on the FP32 units. Here a
// CTA takes a tile of consecutive rows of one sequence, whose query vectors (row, query head
// of the kv head) all share each key and value row it loads, and both products run as
// mma.m16n8k16 (common.cuh) with f16 inputs and f32 sums: S = Q K^T, then O += P V, with the
// running-maximum rescaling of FlashAttention-2 (Dao 2023, "FlashAttention-2", Algorithm 1)
// between them, where the score tile's accumulator fragment becomes the probability tile's A
// fragment.
//
// Keys and values are the cache's f16 values, exact in an mma. Queries and probabilities are
// f32: each goes in as two f16 terms, hi = f16(x) and lo = f16(x - hi), two mma for one, which
// carry x to within 2^-22 |x| or 2^-25 (f16's subnormal step), whichever is larger. So the
// output is the f32 kernels' on the same cache up to summation order and those bits (the
// emulated kernel test: 3e-7 of values in [-1, 1]). One f16 rounding of the queries and
// probabilities, as llama.cpp's CUDA flash attention makes them, moved the tiny test models'
// logits as much as the f16 GEMMs' roundings do. (Queries beyond f16's range, 65504, would
// overflow; the cache's keys cannot exceed it either.)
//
// A CTA of TCA_WARPS warps holds TCA_VECS query vectors, 16 a warp: vector v is row v / group
// of its tile (query head kvh * group + v % group), so a tile has at most TCA_VECS / group rows.
// The positions may be cut into chunks of chunk_len, a CTA each (grid z), whose partial
// softmaxes `attention_combine` then merges, as for `attention_partial`: a prompt pass has few
// tiles, and a tile's last rows see every position before them. A CTA walks its positions
// TCA_KEYS at a time: the tile's keys ([key][dim]) and values (transposed, [dim][key], so that
// a B fragment is one word) into shared memory, then each warp its 16 vectors' scores, masks
// (position t counts for row j when t < n_past[j]), rescaling and products. The rows of shared
// memory are 4 words longer than their data, so that the 32 lanes of a fragment load (8 rows,
// 4 words) hit 32 banks.
#define TCA_WARPS 4
#define TCA_VECS (16 * TCA_WARPS)
#define TCA_KEYS 64
#define TCA_MAX_HD 128
#define TCA_KS_STRIDE (TCA_MAX_HD / 2 + 4) // words a key row of ks (68: 4 mod 32)
#define TCA_VT_STRIDE (TCA_KEYS / 2 + 4)   // words a dimension row of vt (36: 4 mod 32)

// Two f32 as two f16 pairs: hi their rounding, lo the rounding of what hi leaves (hi + lo is x
// to about 22 bits). The lower element in the lower halves.
__device__ __forceinline__ void split_half2(float x0, float x1, unsigned int& hi, unsigned int& lo) {
    hi = pack_half2(x0, x1);
    lo = pack_half2(x0 - half_to_float((unsigned short)(hi & 0xFFFFu)),
                    x1 - half_to_float((unsigned short)(hi >> 16)));
}

// attention_f16's arguments with `tiles` for its counters. Block TCA_WARPS * 32 threads, grid
// (n_tiles, n_kv_heads, max_chunks), static smem 35.9 KB. Tile i is rows tiles[2i] ..
// tiles[2i] + tiles[2i + 1] - 1 of the batch: consecutive rows of one sequence (the same
// k_cache and v_cache pointers), at most TCA_VECS / group of them. max_chunks == 1: `out` as
// attention_combine leaves it. Otherwise chunk c (positions c * chunk_len .. + chunk_len - 1,
// chunk_len a multiple of TCA_KEYS) writes part_o and part_ml as attention_partial does, for
// the rows with n_past[j] > c * chunk_len, and attention_combine makes `out`. head_dim a
// multiple of 8, at most TCA_MAX_HD; group at most TCA_VECS. sm_80 and later.
extern "C" __global__ void __launch_bounds__(32 * TCA_WARPS)
    attention_tc_f16(const float* __restrict__ q, const unsigned short* const* __restrict__ k_cache,
                     const unsigned short* const* __restrict__ v_cache,
                     const int* __restrict__ n_past, float* __restrict__ part_o,
                     float* __restrict__ part_ml, int n_heads, int n_kv_heads, int head_dim,
                     float scale, int chunk_len, int max_chunks, const int* __restrict__ tiles,
                     float* __restrict__ out) {
    __shared__ unsigned int ks[TCA_KEYS * TCA_KS_STRIDE];
    __shared__ unsigned int vt[TCA_MAX_HD * TCA_VT_STRIDE];
    __shared__ int tile_np;

    grid_dep_wait();
    const int first = tiles[2 * blockIdx.x], count = tiles[2 * blockIdx.x + 1];
    const int kvh = blockIdx.y;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int group = n_heads / n_kv_heads;
    const int kv_dim = n_kv_heads * head_dim;
    const int nks = (head_dim + 15) / 16; // k-steps of a score (dimensions past head_dim are 0)
    const int nds = head_dim / 8;         // n-tiles of an output row, 8-element pieces of a row

    // This lane's two vectors: fragment rows g (h = 0) and g + 8 (h = 1) of its warp's 16.
    int np[2];
    long long qrow[2]; // the vector's offset in q and out; -1 past the tile
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int v = 16 * warp + 8 * h + g;
        const int r = v / group;
        np[h] = r < count ? n_past[first + r] : 0;
        qrow[h] = r < count ? ((long long)(first + r) * n_heads + kvh * group + v % group) * head_dim
                            : -1;
    }
    if (tid == 0) {
        int m = 0;
        for (int r = 0; r < count; ++r) m = max(m, n_past[first + r]);
        tile_np = m;
    }
    // The positions this warp's vectors see: past them the warp only helps load.
    int warp_np = max(np[0], np[1]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        warp_np = max(warp_np, __shfl_xor_sync(FULL_MASK, warp_np, off));

    // The A fragments of Q (hi and lo): step s holds dimensions 16s..16s+15.
    unsigned int qa[TCA_MAX_HD / 16][4], ql[TCA_MAX_HD / 16][4];
#pragma unroll
    for (int s = 0; s < TCA_MAX_HD / 16; ++s) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int h = i & 1, d = 16 * s + 2 * t + 8 * (i >> 1);
            qa[s][i] = 0;
            ql[s][i] = 0;
            if (s < nks && qrow[h] >= 0 && d < head_dim) {
                const float2 x = *(const float2*)(q + qrow[h] + d);
                split_half2(x.x, x.y, qa[s][i], ql[s][i]);
            }
        }
    }

    float o[TCA_MAX_HD / 8][4];
#pragma unroll
    for (int dt = 0; dt < TCA_MAX_HD / 8; ++dt)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[dt][i] = 0.0f;
    float m_run[2] = {neg_inf(), neg_inf()}, l_run[2] = {0.0f, 0.0f};

    const unsigned short* K = k_cache[first] + kvh * head_dim;
    const unsigned short* V = v_cache[first] + kvh * head_dim;
    __syncthreads(); // tile_np
    const int chunk = blockIdx.z, begin = chunk * chunk_len;
    const int end = max_chunks == 1 ? tile_np : min(tile_np, begin + chunk_len);
    if (max_chunks > 1 && begin >= end) return; // no row of the tile sees this chunk
    for (int p0 = max_chunks == 1 ? 0 : begin; p0 < end; p0 += TCA_KEYS) {
        __syncthreads(); // every warp is done with the previous tile
        // Keys: piece (key, c8) is dimensions 8 c8..8 c8 + 7 of the key's row, 16 bytes (rows
        // of a cache whose head_dim is a multiple of 8 are 16-byte aligned), words 4 c8.. of
        // ks; zeros past the chunk's positions and in the dimensions the last k-step pads.
        // TCA_MAX_HD / 8 pieces a key, those past the k-steps skipped (no division by a width
        // known only at run time).
        for (int u = tid; u < TCA_KEYS * (TCA_MAX_HD / 8); u += 32 * TCA_WARPS) {
            const int key = u / (TCA_MAX_HD / 8), c8 = u % (TCA_MAX_HD / 8);
            if (c8 >= 2 * nks) continue;
            uint4 w = make_uint4(0u, 0u, 0u, 0u);
            if (p0 + key < end && c8 < nds)
                w = __ldg((const uint4*)(K + (long long)(p0 + key) * kv_dim) + c8);
            *(uint4*)&ks[key * TCA_KS_STRIDE + 4 * c8] = w;
        }
        // Values, transposed: piece (pair kp, c8) is dimensions 8 c8..8 c8 + 7 of positions
        // 2 kp and 2 kp + 1, one word of vt per dimension (lanes on consecutive pairs).
        for (int u = tid; u < (TCA_KEYS / 2) * nds; u += 32 * TCA_WARPS) {
            const int kp = u % (TCA_KEYS / 2), c8 = u / (TCA_KEYS / 2);
            const int p = p0 + 2 * kp;
            uint4 a = make_uint4(0u, 0u, 0u, 0u), b = make_uint4(0u, 0u, 0u, 0u);
            if (p < end) a = __ldg((const uint4*)(V + (long long)p * kv_dim) + c8);
            if (p + 1 < end) b = __ldg((const uint4*)(V + (long long)(p + 1) * kv_dim) + c8);
            const unsigned int wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
            unsigned int* col = vt + 8 * c8 * TCA_VT_STRIDE + kp;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                col[2 * i * TCA_VT_STRIDE] = (wa[i] & 0xFFFFu) | (wb[i] << 16);
                col[(2 * i + 1) * TCA_VT_STRIDE] = (wa[i] >> 16) | (wb[i] & 0xFFFF0000u);
            }
        }
        __syncthreads();
        if (p0 >= warp_np) continue; // no vector of this warp sees these positions

        // Scores: n-tile nt is positions p0 + 8 nt .. + 7; B is K^T, key 8 nt + g's row.
        float s[TCA_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < TCA_KEYS / 8; ++nt) {
#pragma unroll
            for (int i = 0; i < 4; ++i) s[nt][i] = 0.0f;
            const unsigned int* kr = ks + (8 * nt + g) * TCA_KS_STRIDE + t;
#pragma unroll
            for (int st = 0; st < TCA_MAX_HD / 16; ++st) {
                if (st < nks) {
                    mma_16816(s[nt], qa[st], kr[8 * st], kr[8 * st + 4]);
                    mma_16816(s[nt], ql[st], kr[8 * st], kr[8 * st + 4]);
                }
            }
        }

        // Scaled and masked; the new running maximum of each vector (its quad of lanes holds
        // its row of the tile), and the rescaling of what was summed before. A vector that has
        // seen no position yet keeps a maximum of -inf and subtracts 0, so its terms are 0.
        float mx[2] = {neg_inf(), neg_inf()};
#pragma unroll
        for (int nt = 0; nt < TCA_KEYS / 8; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int h = i >> 1, pos = p0 + 8 * nt + 2 * t + (i & 1);
                const float x = pos < np[h] ? s[nt][i] * scale : neg_inf();
                s[nt][i] = x;
                mx[h] = fmaxf(mx[h], x);
            }
        float base[2], alpha[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(FULL_MASK, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(FULL_MASK, mx[h], 2));
            const float m_new = fmaxf(m_run[h], mx[h]);
            base[h] = m_new == neg_inf() ? 0.0f : m_new;
            alpha[h] = expf(m_run[h] - base[h]); // 0 before the first position
            m_run[h] = m_new;
            l_run[h] *= alpha[h];
        }
#pragma unroll
        for (int nt = 0; nt < TCA_KEYS / 8; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float p = expf(s[nt][i] - base[i >> 1]);
                s[nt][i] = p;
                l_run[i >> 1] += p;
            }
#pragma unroll
        for (int dt = 0; dt < TCA_MAX_HD / 8; ++dt)
#pragma unroll
            for (int i = 0; i < 4; ++i) o[dt][i] *= alpha[i >> 1];

        // O += P V: score n-tiles 2 kk and 2 kk + 1 are the A fragment of positions
        // 16 kk..16 kk + 15 (c0 c1 of a tile are a0 or a2, c2 c3 are a1 or a3); B is V,
        // dimension 8 dt + g's row of vt.
#pragma unroll
        for (int kk = 0; kk < TCA_KEYS / 16; ++kk) {
            unsigned int ph[4], pl[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float* c = s[2 * kk + (i >> 1)] + 2 * (i & 1);
                split_half2(c[0], c[1], ph[i], pl[i]);
            }
#pragma unroll
            for (int dt = 0; dt < TCA_MAX_HD / 8; ++dt) {
                if (dt < nds) {
                    const unsigned int* vr = vt + (8 * dt + g) * TCA_VT_STRIDE + 8 * kk + t;
                    mma_16816(o[dt], ph, vr[0], vr[4]);
                    mma_16816(o[dt], pl, vr[0], vr[4]);
                }
            }
        }
    }

    // One chunk: out = O / l, l summed over the vector's quad; a vector that saw no position
    // gets zeros (the CPU's empty mix). Several: this chunk's O, m and l, for the rows that see
    // it (attention_combine reads the chunks below n_past[j] only).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float l = l_run[h];
        l += __shfl_xor_sync(FULL_MASK, l, 1);
        l += __shfl_xor_sync(FULL_MASK, l, 2);
        if (qrow[h] < 0 || (max_chunks > 1 && np[h] <= begin)) continue;
        const long long part = (qrow[h] / head_dim) * max_chunks + chunk;
        const float inv = max_chunks > 1 ? 1.0f : (l > 0.0f ? 1.0f / l : 0.0f);
        float* dst = max_chunks > 1 ? part_o + part * head_dim : out + qrow[h];
#pragma unroll
        for (int dt = 0; dt < TCA_MAX_HD / 8; ++dt)
            if (dt < nds)
                *(float2*)(dst + 8 * dt + 2 * t) =
                    make_float2(o[dt][2 * h] * inv, o[dt][2 * h + 1] * inv);
        if (max_chunks > 1 && t == 0) {
            part_ml[2 * part] = m_run[h];
            part_ml[2 * part + 1] = l;
        }
    }
}
