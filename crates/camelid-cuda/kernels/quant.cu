// camelid CUDA kernels: the weight formats.
//
// Decode products (matvec_<t>, and the launches that fuse the operation after a product into it:
// RoPE and the cache writes after q, k and v, SwiGLU's gate after gate and up), expansion before
// cuBLAS GEMMs (dequant_<t>_f16, dequant_<t>_f32), embedding lookup (embed_<t>), the activation
// conversion for f16 GEMMs (f32_to_f16), and RoPE for the other batches (rope_store). The ABI
// (arguments, launch geometry) is in README.md beside this file.
//
// Built at run time by NVRTC without any header: only builtin types and intrinsics are used.
//
// Block layouts: ggml `ggml-common.h` (block_q8_0, block_q4_0, block_q4_1, block_q5_0,
// block_q5_1, block_q2_K, block_q3_K, block_q4_K, block_q5_K, block_q6_K, block_iq4_nl,
// block_iq4_xs, the grid i-quants' block_iq*, block_tq1_0, block_tq2_0), as declared in
// camelid-kernels `src/dtype.rs`. Dequantization reproduces
// camelid-kernels `src/quant/legacy.rs`, `kquants.rs` and `iquants.rs` element for element,
// including the order of the f32 operations (hence the explicit `__fmul_rn`/`__fadd_rn`, which
// the compiler may not fuse into an FMA).
//
// One mechanism for every type: a block is cut into "pieces" of 16 weights, one piece per thread
// and step. A piece is RUNS runs of RUN consecutive columns (RUNS * RUN == 16), with one scale
// (and for the affine types one offset) per run. Each format says where its runs lie
// (`run_col`) and how to decode a piece (`decode`); the kernels below are written once against
// that interface.

// Which kernels a compilation defines: all of them, or with CAMELID_QUANT_PART defined one group
// (src/kernels.rs, QUANT_GROUPS, lists the same groups and compiles group 0 and those of a
// model's types at once): 0 the float types with `rope_store` and `f32_to_f16`, 1 q8_0 q4_0
// q4_1, 2 q5_0 q5_1 iq4_nl, 3 q4_k q5_k q6_k, 4 q2_k q3_k iq4_xs tq1_0 tq2_0, 5 iq2_xxs iq2_xs
// iq2_s, 6 iq3_xxs iq3_s iq1_s iq1_m.
#ifdef CAMELID_QUANT_PART
#define CAMELID_PART(k) (CAMELID_QUANT_PART == (k))
#else
#define CAMELID_PART(k) 1
#endif

// ---------------------------------------------------------------------------------------------
// Scalars

// bfloat16 is the high half of an f32.
__device__ __forceinline__ float bf16_to_float(unsigned int bits16) {
    return __uint_as_float(bits16 << 16);
}

// A small unsigned integer `q` (< 2^23) minus `offset`, as f32, without an integer-to-float
// conversion (those issue at a quarter of the FMA rate): 0x4B000000 is 2^23, whose last
// mantissa bit weighs 1, so OR-ing `q` into the mantissa gives 2^23 + q exactly, and one
// subtraction of the constant 2^23 + offset leaves q - offset, exact for small integers.
__device__ __forceinline__ float level(unsigned int q, float offset) {
    return __int_as_float(0x4B000000u | q) - (8388608.0f + offset);
}

// Byte `i` (0..3) of a little-endian word.
__device__ __forceinline__ unsigned int byte_of(unsigned int w, int i) {
    return (w >> (8 * i)) & 0xFFu;
}

// Byte `i` (0..7) of two little-endian words, by a select rather than an index into the pair:
// a register array indexed at run time lives in local memory.
__device__ __forceinline__ unsigned int byte_of2(unsigned int w0, unsigned int w1, int i) {
    return byte_of(i < 4 ? w0 : w1, i & 3);
}

// Asks L2 for the `count` rows of `row_bytes` bytes from `w`, and as many from `w2` unless it
// is null, one 128-byte line per request, spread over the CTA's threads: the weights a CTA is
// about to stream, requested while it waits for the previous kernel. A hint (nothing is loaded
// into registers), given only bytes of the matrices. One call for both of SwiGLU's matrices:
// inlined, or called once for each, it made matvec_swiglu spill registers (up to 36 bytes on
// sm_90).
__device__ __noinline__ void prefetch_rows(const unsigned char* w, const unsigned char* w2,
                                           long long row_bytes, int count) {
#if defined(CAMELID_EMU) || __CUDA_ARCH__ >= 900
    const int t = threadIdx.y * blockDim.x + threadIdx.x, nt = blockDim.x * blockDim.y;
    const long long bytes = (long long)max(count, 0) * row_bytes;
    for (long long at = (long long)t * 128; at < bytes; at += (long long)nt * 128) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(w + at));
        if (w2) asm volatile("prefetch.global.L2 [%0];" ::"l"(w2 + at));
    }
#endif
}

// ---------------------------------------------------------------------------------------------
// Loads
//
// Weight pointers must be 16-byte aligned (the start of the matrix). Blocks of 18, 34, 22 and
// 210 bytes then start on any even address, so those formats read through `load_words`, which
// reads only the aligned words that overlap the requested bytes (never a word wholly outside
// them, so it cannot fault past the end of the buffer) and shifts them into place.

__device__ __forceinline__ unsigned int load_u16(const unsigned char* p) {
    return __ldg((const unsigned short*)p);
}

__device__ __forceinline__ unsigned int load_u32(const unsigned char* p) {
    return __ldg((const unsigned int*)p);
}

// `N` little-endian words starting at the 2-byte-aligned address `p`.
template <int N>
__device__ __forceinline__ void load_words(const unsigned char* p, unsigned int (&w)[N]) {
    const unsigned long long a = (unsigned long long)p;
    const unsigned int* q = (const unsigned int*)(a & ~3ull);
    const unsigned int shift = (unsigned int)(a & 2u) * 8u; // 0 or 16
    unsigned int raw[N + 1];
#pragma unroll
    for (int i = 0; i < N; ++i) raw[i] = __ldg(q + i);
    raw[N] = shift ? __ldg(q + N) : 0u;
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = __funnelshift_r(raw[i], raw[i + 1], shift);
}

// ---------------------------------------------------------------------------------------------
// Formats
//
// Each format is a struct with:
//   BLOCK   elements per block, BYTES bytes per block,
//   PIECES  pieces per block (PIECES * 16 == BLOCK),
//   RUNS, RUN  a piece is RUNS runs of RUN consecutive columns,
//   KIND    how a decoded value v becomes a weight of run k: PLAIN w = v, SCALED w = a[k] * v,
//           AFFINE w = a[k] * v + b[k] (the "type-1" formats with a minimum),
//   run_col(p, k)  column of run k of piece p, relative to the block's first column,
//   decode(blk, p, v, a, b)  the 16 values of piece p (v[k * RUN + i] is column
//           run_col(p, k) + i), with the scale a[k] and offset b[k] of each run.
// The float types are "blocks" of 16 elements with one piece.

enum Kind { PLAIN, SCALED, AFFINE };

struct FmtF32 {
    static constexpr int BLOCK = 16, BYTES = 64, PIECES = 1, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = PLAIN;
    static __device__ __forceinline__ int run_col(int, int k) { return 8 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int, float (&v)[16],
                                                  float (&)[RUNS], float (&)[RUNS]) {
        const float4* p = (const float4*)blk;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float4 f = __ldg(p + i);
            v[4 * i] = f.x;
            v[4 * i + 1] = f.y;
            v[4 * i + 2] = f.z;
            v[4 * i + 3] = f.w;
        }
    }
};

// 16 halves (f16 or bf16) from two 16-byte loads.
template <bool BF16>
struct FmtHalf {
    static constexpr int BLOCK = 16, BYTES = 32, PIECES = 1, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = PLAIN;
    static __device__ __forceinline__ int run_col(int, int k) { return 8 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int, float (&v)[16],
                                                  float (&)[RUNS], float (&)[RUNS]) {
        const uint4* p = (const uint4*)blk;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint4 u = __ldg(p + i);
            const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                v[8 * i + 2 * e] = BF16 ? bf16_to_float(w[e] & 0xFFFFu)
                                        : half_to_float((unsigned short)(w[e] & 0xFFFFu));
                v[8 * i + 2 * e + 1] = BF16 ? bf16_to_float(w[e] >> 16)
                                            : half_to_float((unsigned short)(w[e] >> 16));
            }
        }
    }
};
typedef FmtHalf<false> FmtF16;
typedef FmtHalf<true> FmtBF16;

// Q8_0: {f16 d; i8 qs[32]}, x = d * q. Piece p = bytes qs[16p .. 16p + 16), two runs of 8.
struct FmtQ8_0 {
    static constexpr int BLOCK = 32, BYTES = 34, PIECES = 2, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return 16 * p + 8 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int w[4];
        load_words<4>(blk + 2 + 16 * p, w);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = d;
        a[1] = d;
#pragma unroll
        for (int e = 0; e < 16; ++e) {
            // A signed byte plus 128 is an unsigned level 0..255.
            v[e] = level(byte_of(w[e / 4], e % 4) ^ 0x80u, 128.0f);
        }
    }
};

// The 4- and 5-bit 32-element formats share their nibble order: byte i of qs holds element i
// in its low nibble and element i + 16 in its high nibble. Piece p takes qs[8p .. 8p + 8): its
// low nibbles are run 0 (columns 8p..) and its high nibbles run 1 (columns 16 + 8p..). For the
// 5-bit formats, bit 4 of element e is bit e of the little-endian word qh.
template <bool FIVE>
__device__ __forceinline__ void decode_nibbles(const unsigned int (&qs)[2], unsigned int qh, int p,
                                               float offset, float (&v)[16]) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const unsigned int byte = byte_of(qs[i / 4], i % 4);
        unsigned int lo = byte & 0x0Fu, hi = byte >> 4;
        if constexpr (FIVE) {
            lo |= ((qh >> (8 * p + i)) << 4) & 0x10u;
            hi |= ((qh >> (16 + 8 * p + i)) << 4) & 0x10u;
        }
        v[i] = level(lo, offset);
        v[8 + i] = level(hi, offset);
    }
}

// Q4_0: {f16 d; u8 qs[16]}, x = d * (q - 8).
struct FmtQ4_0 {
    static constexpr int BLOCK = 32, BYTES = 18, PIECES = 2, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return 8 * p + 16 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int qs[2];
        load_words<2>(blk + 2 + 8 * p, qs);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = d;
        a[1] = d;
        decode_nibbles<false>(qs, 0u, p, 8.0f, v);
    }
};

// Q4_1: {f16 d; f16 m; u8 qs[16]}, x = d * q + m. 20-byte blocks are 4-byte aligned.
struct FmtQ4_1 {
    static constexpr int BLOCK = 32, BYTES = 20, PIECES = 2, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = AFFINE;
    static __device__ __forceinline__ int run_col(int p, int k) { return 8 * p + 16 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&b)[RUNS]) {
        const unsigned int qs[2] = {load_u32(blk + 4 + 8 * p), load_u32(blk + 8 + 8 * p)};
        const unsigned int dm = load_u32(blk);
        const float d = half_to_float((unsigned short)(dm & 0xFFFFu));
        const float m = half_to_float((unsigned short)(dm >> 16));
        a[0] = d;
        a[1] = d;
        b[0] = m;
        b[1] = m;
        decode_nibbles<false>(qs, 0u, p, 0.0f, v);
    }
};

// Q5_0: {f16 d; u8 qh[4]; u8 qs[16]}, x = d * (q - 16).
struct FmtQ5_0 {
    static constexpr int BLOCK = 32, BYTES = 22, PIECES = 2, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return 8 * p + 16 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int qh[1], qs[2];
        load_words<1>(blk + 2, qh);
        load_words<2>(blk + 6 + 8 * p, qs);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = d;
        a[1] = d;
        decode_nibbles<true>(qs, qh[0], p, 16.0f, v);
    }
};

// Q5_1: {f16 d; f16 m; u8 qh[4]; u8 qs[16]}, x = d * q + m. 24-byte blocks: qs is 8-aligned.
struct FmtQ5_1 {
    static constexpr int BLOCK = 32, BYTES = 24, PIECES = 2, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = AFFINE;
    static __device__ __forceinline__ int run_col(int p, int k) { return 8 * p + 16 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&b)[RUNS]) {
        const uint2 q2 = __ldg((const uint2*)(blk + 8 + 8 * p));
        const unsigned int qs[2] = {q2.x, q2.y};
        const unsigned int dm = load_u32(blk);
        const unsigned int qh = load_u32(blk + 4);
        const float d = half_to_float((unsigned short)(dm & 0xFFFFu));
        const float m = half_to_float((unsigned short)(dm >> 16));
        a[0] = d;
        a[1] = d;
        b[0] = m;
        b[1] = m;
        decode_nibbles<true>(qs, qh, p, 0.0f, v);
    }
};

// The 6-bit scale and minimum of sub-block j (0..7) of a Q4_K/Q5_K super-block, from the 12
// scale bytes as three words s0 (bytes 0..3), s1 (4..7), s2 (8..11). Packing as camelid-kernels
// dtype.rs `kscale` (ggml `get_scale_min_k4`): for j < 4, bytes j and j + 4 hold scale and
// minimum in their low six bits; for j >= 4 the low four bits are the nibbles of byte j + 4 and
// the high two bits the top bits of bytes j - 4 (scale) and j (minimum). Both cases are
// computed and one is selected, so the lanes of a warp do not diverge.
__device__ __forceinline__ void kscale(unsigned int s0, unsigned int s1, unsigned int s2, int j,
                                       unsigned int& sc, unsigned int& m) {
    const int i = j & 3;
    const unsigned int b0 = byte_of(s0, i), b1 = byte_of(s1, i), b2 = byte_of(s2, i);
    const unsigned int sc_hi = (b2 & 0x0Fu) | ((b0 >> 6) << 4);
    const unsigned int m_hi = (b2 >> 4) | ((b1 >> 6) << 4);
    sc = j < 4 ? (b0 & 63u) : sc_hi;
    m = j < 4 ? (b1 & 63u) : m_hi;
}

// Q4_K / Q5_K: {f16 d; f16 dmin; u8 scales[12]; [Q5_K: u8 qh[32];] u8 qs[128]}, 8 sub-blocks of
// 32, x = (d * sc) * q - (dmin * m). Sub-blocks 2g and 2g + 1 share qs[32g .. 32g + 32), low and
// high nibbles. Piece p = 4g + c takes qs[32g + 8c .. + 8): run 0 is columns 64g + 8c.. of
// sub-block 2g, run 1 columns 64g + 32 + 8c.. of sub-block 2g + 1. For Q5_K, bit 4 of element
// 32j + l is bit j of qh[l]. Blocks of 144 and 176 bytes are 16-byte aligned.
template <bool FIVE>
struct FmtK45 {
    static constexpr int BLOCK = 256, BYTES = FIVE ? 176 : 144, PIECES = 16, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = AFFINE;
    static __device__ __forceinline__ int run_col(int p, int k) {
        return 64 * (p >> 2) + 8 * (p & 3) + 32 * k;
    }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&b)[RUNS]) {
        const int g = p >> 2, c = p & 3;
        const uint2 q2 = __ldg((const uint2*)(blk + (FIVE ? 48 : 16) + 32 * g + 8 * c));
        const unsigned int qs[2] = {q2.x, q2.y};
        unsigned int qh[2] = {0u, 0u};
        if constexpr (FIVE) {
            const uint2 h2 = __ldg((const uint2*)(blk + 16 + 8 * c));
            qh[0] = h2.x;
            qh[1] = h2.y;
        }
        const unsigned int dm = load_u32(blk);
        const unsigned int s0 = load_u32(blk + 4), s1 = load_u32(blk + 8), s2 = load_u32(blk + 12);
        const float d = half_to_float((unsigned short)(dm & 0xFFFFu));
        const float dmin = half_to_float((unsigned short)(dm >> 16));
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            unsigned int sc, m;
            kscale(s0, s1, s2, 2 * g + k, sc, m);
            a[k] = __fmul_rn(d, (float)sc);
            b[k] = -__fmul_rn(dmin, (float)m);
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const unsigned int byte = byte_of(qs[i / 4], i % 4);
            unsigned int lo = byte & 0x0Fu, hi = byte >> 4;
            if constexpr (FIVE) {
                const unsigned int h = byte_of(qh[i / 4], i % 4) >> (2 * g);
                lo |= (h & 1u) << 4;
                hi |= (h & 2u) << 3;
            }
            v[i] = level(lo, 0.0f);
            v[8 + i] = level(hi, 0.0f);
        }
    }
};
typedef FmtK45<false> FmtQ4_K;
typedef FmtK45<true> FmtQ5_K;

// Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}, 16 sub-blocks of 16,
// x = (d * scales[e / 16]) * (q - 32). In half h (128 elements, r = e % 128) the low four bits
// of q are in ql[64h + r % 64] (low nibble for r < 64, high otherwise) and the high two bits at
// bit 2 * (r / 32) of qh[32h + r % 32]. Piece p = 8h + t / 4 (t = 0, 4, .., 28) takes the four
// bytes ql[64h + t..], ql[64h + 32 + t..] and qh[32h + t..]: four runs of 4, columns
// 128h + t + 32u for u = 0..3, of sub-blocks 8h + 2u + t / 16. 210-byte blocks are 2-aligned.
struct FmtQ6_K {
    static constexpr int BLOCK = 256, BYTES = 210, PIECES = 16, RUNS = 4, RUN = 4;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) {
        return 128 * (p >> 3) + 4 * (p & 7) + 32 * k;
    }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        const int h = p >> 3, t = 4 * (p & 7);
        unsigned int ql0[1], ql1[1], qh[1], sc[2];
        load_words<1>(blk + 64 * h + t, ql0);      // runs 0 (low nibbles) and 2 (high)
        load_words<1>(blk + 64 * h + 32 + t, ql1); // runs 1 (low nibbles) and 3 (high)
        load_words<1>(blk + 128 + 32 * h + t, qh);
        load_words<2>(blk + 192 + 8 * h, sc);     // scales of sub-blocks 8h .. 8h + 7
        const float d = half_to_float((unsigned short)load_u16(blk + 208));
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int s = (t >> 4) + 2 * u; // 0..7 within the half
            const signed char q = (signed char)byte_of(sc[s >> 2], s & 3);
            a[u] = __fmul_rn(d, (float)q);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const unsigned int l0 = byte_of(ql0[0], i), l1 = byte_of(ql1[0], i);
            const unsigned int hb = byte_of(qh[0], i);
            const unsigned int low4[4] = {l0 & 0x0Fu, l1 & 0x0Fu, l0 >> 4, l1 >> 4};
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const unsigned int q = low4[u] | (((hb >> (2 * u)) & 3u) << 4);
                v[4 * u + i] = level(q, 32.0f);
            }
        }
    }
};

// The 2-bit values of Q2_K and Q3_K: in half h (128 elements, r = e % 128) the two bits of
// element e are at bit 2 * (r / 32) of byte 32h + r % 32 of the 64 bytes `qs`. Piece p = 8h +
// t / 4 (t = 0, 4, .., 28) takes the four bytes qs[32h + t..]: four runs of 4, columns 128h + t
// + 32u for u = 0..3, of the 16-element sub-blocks 8h + 2u + t / 16 (Q6_K's arrangement).
__device__ __forceinline__ int k2_run_col(int p, int k) {
    return 128 * (p >> 3) + 4 * (p & 7) + 32 * k;
}

// Q2_K: {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}, 16 sub-blocks of 16, x = (d * (s & 15)) * q
// - dmin * (s >> 4) with s = scales[e / 16] (camelid-kernels `dequant_q2_k`). 84-byte blocks
// are 4-byte aligned.
struct FmtQ2_K {
    static constexpr int BLOCK = 256, BYTES = 84, PIECES = 16, RUNS = 4, RUN = 4;
    static constexpr Kind KIND = AFFINE;
    static __device__ __forceinline__ int run_col(int p, int k) { return k2_run_col(p, k); }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&b)[RUNS]) {
        const int h = p >> 3, t = 4 * (p & 7);
        const unsigned int q = load_u32(blk + 16 + 32 * h + t);
        const unsigned int sc[2] = {load_u32(blk + 8 * h), load_u32(blk + 8 * h + 4)};
        const unsigned int dm = load_u32(blk + 80);
        const float d = half_to_float((unsigned short)(dm & 0xFFFFu));
        const float dmin = half_to_float((unsigned short)(dm >> 16));
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int j = (t >> 4) + 2 * u; // sub-block within the half
            const unsigned int s = byte_of2(sc[0], sc[1], j);
            a[u] = __fmul_rn(d, (float)(s & 15u));
            b[u] = -__fmul_rn(dmin, (float)(s >> 4));
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int u = 0; u < 4; ++u)
                v[4 * u + i] = level((byte_of(q, i) >> (2 * u)) & 3u, 0.0f);
    }
};

// Q3_K: {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}, 16 sub-blocks of 16, x = (d * s) * (q -
// 4 * (1 - hbit)): q the two bits as in Q2_K (qs at byte 32), hbit bit 4h + r / 32 of
// hmask[r % 32], s the sub-block's 6-bit scale less 32 (camelid-kernels `q3k_scales`: for
// sub-block j the low four bits are nibble j / 8 of scales[j % 8], the high two bits
// 2 * (j / 4).. of scales[8 + j % 4]). 110-byte blocks are 2-byte aligned.
struct FmtQ3_K {
    static constexpr int BLOCK = 256, BYTES = 110, PIECES = 16, RUNS = 4, RUN = 4;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return k2_run_col(p, k); }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        const int h = p >> 3, t = 4 * (p & 7);
        unsigned int q[1], hm[1], sc[3];
        load_words<1>(blk + 32 + 32 * h + t, q);
        load_words<1>(blk + t, hm);
        load_words<3>(blk + 96, sc);
        const float d = half_to_float((unsigned short)load_u16(blk + 108));
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int j = 8 * h + (t >> 4) + 2 * u;
            const unsigned int lo = (byte_of2(sc[0], sc[1], j & 7) >> (4 * (j >> 3))) & 15u;
            const unsigned int hi = (byte_of(sc[2], j & 3) >> (2 * (j >> 2))) & 3u;
            a[u] = __fmul_rn(d, (float)((int)(lo | (hi << 4)) - 32));
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const unsigned int lq = byte_of(q[0], i), hb = byte_of(hm[0], i) >> (4 * h);
#pragma unroll
            for (int u = 0; u < 4; ++u)
                v[4 * u + i] = level(((lq >> (2 * u)) & 3u) | (((hb >> u) & 1u) << 2), 4.0f);
        }
    }
};

// TQ2_0 (ternary): {u8 qs[64]; f16 d}, x = d * (q - 1) with q the two bits as in Q2_K (qs at
// byte 0), one scale for the block (camelid-kernels `dequant_tq2_0`). 66-byte blocks are 2-byte
// aligned.
struct FmtTQ2_0 {
    static constexpr int BLOCK = 256, BYTES = 66, PIECES = 16, RUNS = 4, RUN = 4;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return k2_run_col(p, k); }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int q[1];
        load_words<1>(blk + 32 * (p >> 3) + 4 * (p & 7), q);
        const float d = half_to_float((unsigned short)load_u16(blk + 64));
#pragma unroll
        for (int u = 0; u < 4; ++u) a[u] = d;
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int u = 0; u < 4; ++u)
                v[4 * u + i] = level((byte_of(q[0], i) >> (2 * u)) & 3u, 1.0f);
    }
};

// Trit n (0..4) of byte q, which holds five base-3 digits as a fixed-point fraction of 3^5:
// multiplying by 3^n (mod 256) brings digit n to the top, and (x * 3) >> 8 reads it
// (camelid-kernels `trit`).
__device__ __forceinline__ unsigned int trit(unsigned int q, int n) {
    const unsigned int pow3 = n == 0 ? 1u : n == 1 ? 3u : n == 2 ? 9u : n == 3 ? 27u : 81u;
    return (((q * pow3) & 0xFFu) * 3u) >> 8;
}

// TQ1_0 (ternary): {u8 qs[48]; u8 qh[4]; f16 d}, x = d * (t - 1) with t a trit: elements 0..160
// are trit e / 32 of byte e % 32, elements 160..240 trit (e - 160) / 16 of byte 32 + (e - 160) %
// 16, elements 240..256 trit (e - 240) / 4 of byte 48 + (e - 240) % 4 (camelid-kernels
// `tq1_level`). Piece p (16 consecutive columns, one scale): pieces 0..9 are trit p / 2 of bytes
// 16 (p % 2)..; pieces 10..14 trit p - 10 of bytes 32..48; piece 15 trits 0..3 of bytes 48..52,
// four each. 54-byte blocks are 2-byte aligned.
struct FmtTQ1_0 {
    static constexpr int BLOCK = 256, BYTES = 54, PIECES = 16, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return 16 * p + 8 * k; }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        const float d = half_to_float((unsigned short)load_u16(blk + 52));
        a[0] = d;
        a[1] = d;
        if (p == 15) {
            unsigned int q[1];
            load_words<1>(blk + 48, q);
#pragma unroll
            for (int i = 0; i < 16; ++i) v[i] = level(trit(byte_of(q[0], i & 3), i >> 2), 1.0f);
        } else {
            unsigned int q[4];
            load_words<4>(blk + (p < 10 ? 16 * (p & 1) : 32), q);
            const int n = p < 10 ? p >> 1 : p - 10;
#pragma unroll
            for (int i = 0; i < 16; ++i) v[i] = level(trit(byte_of(q[i >> 2], i & 3), n), 1.0f);
        }
    }
};

// The IQ4 codebook (camelid-kernels `IQ4NL_VALUES`, ggml's kvalues_iq4nl: -127, -104, -83, -65,
// -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113), plus 128, as bytes of four words; and the
// values of the four indices (0..15) in the bytes of `n`, plus 128, as the bytes of a word: two
// byte permutations (`prmt`, whose selector nibbles take bytes 0..7 of two words) look up the
// indices' low three bits in each half of the codebook, and bit 3 picks the half.
#define IQ4_T0 0x3F2D1801u
#define IQ4_T1 0x766A5D4Fu
#define IQ4_T2 0xA6998D81u
#define IQ4_T3 0xF1D9C5B5u
__device__ __forceinline__ unsigned int iq4_values(unsigned int n) {
    const unsigned int x = n & 0x07070707u;
    const unsigned int y = x | (x >> 4);
    const unsigned int sel = (y & 0xFFu) | ((y >> 8) & 0xFF00u);
    const unsigned int lo = __byte_perm(IQ4_T0, IQ4_T1, sel);
    const unsigned int hi = __byte_perm(IQ4_T2, IQ4_T3, sel);
    const unsigned int pick = ((n >> 3) & 0x01010101u) * 0xFFu;
    return (lo & ~pick) | (hi & pick);
}

// Eight bytes of IQ4 indices in Q4_0's nibble order (`decode_nibbles`): low nibbles to v[0..8),
// high nibbles to v[8..16).
__device__ __forceinline__ void decode_iq4(const unsigned int (&qs)[2], float (&v)[16]) {
#pragma unroll
    for (int w = 0; w < 2; ++w) {
        const unsigned int lo = iq4_values(qs[w] & 0x0F0F0F0Fu);
        const unsigned int hi = iq4_values((qs[w] >> 4) & 0x0F0F0F0Fu);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            v[4 * w + e] = level(byte_of(lo, e), 128.0f);
            v[8 + 4 * w + e] = level(byte_of(hi, e), 128.0f);
        }
    }
}

// IQ4_NL: Q4_0's block {f16 d; u8 qs[16]} and nibble order, x = d * kvalues[q].
struct FmtIQ4_NL : FmtQ4_0 {
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int qs[2];
        load_words<2>(blk + 2 + 8 * p, qs);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = d;
        a[1] = d;
        decode_iq4(qs, v);
    }
};

// IQ4_XS: {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}, 8 sub-blocks of 32, x = (d * (ls -
// 32)) * kvalues[q]: ls has nibble ib % 2 of scales_l[ib / 2] for its low four bits and bits 2ib,
// 2ib + 1 of scales_h for its high two (camelid-kernels `iq4xs_scale`); qs[16ib..] hold
// sub-block ib in Q4_0's nibble order. Piece p = 2ib + c takes qs[16ib + 8c..+8): run 0 is
// columns 32ib + 8c.., run 1 columns 32ib + 16 + 8c... 136-byte blocks are 8-byte aligned.
struct FmtIQ4_XS {
    static constexpr int BLOCK = 256, BYTES = 136, PIECES = 16, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) {
        return 32 * (p >> 1) + 8 * (p & 1) + 16 * k;
    }
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        const int ib = p >> 1;
        const uint2 q2 = __ldg((const uint2*)(blk + 8 + 8 * p));
        const unsigned int qs[2] = {q2.x, q2.y};
        const unsigned int dh = load_u32(blk), sl = load_u32(blk + 4);
        const float d = half_to_float((unsigned short)(dh & 0xFFFFu));
        const unsigned int ls = ((sl >> (4 * ib)) & 15u) | (((dh >> (16 + 2 * ib)) & 3u) << 4);
        a[0] = __fmul_rn(d, (float)((int)ls - 32));
        a[1] = a[0];
        decode_iq4(qs, v);
    }
};

// The grid i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): groups of four or
// eight weights are an index into a codebook of small integer vectors (`iq_grids.cuh`, before
// this file), with signs and a scale per 16 or 32 weights. As camelid-kernels `src/quant/grids.rs`
// sees them: 16 pieces of 16 consecutive columns, piece p a scale (formed in gguf-py's order, as
// grids.rs forms it) times 16 signed integer levels. Two runs of 8 with the same scale. Defined
// with their codebooks, only where their kernels are (parts 5 and 6).
#if CAMELID_PART(5) || CAMELID_PART(6)
struct GridFmt {
    static constexpr int BLOCK = 256, PIECES = 16, RUNS = 2, RUN = 8;
    static constexpr Kind KIND = SCALED;
    static __device__ __forceinline__ int run_col(int p, int k) { return 16 * p + 8 * k; }
};

// The seven-bit sign index s as a sign pattern (`IQ_KSIGNS[s]`: the eighth bit makes the count of
// minus signs even).
__device__ __forceinline__ unsigned int ksigns(unsigned int s) {
    return s | ((__popc(s) & 1u) << 7);
}

// N levels, byte j of `e` (a small positive integer) negated where bit j of `signs` is set, into
// v[0..N).
template <int N>
__device__ __forceinline__ void grid_levels(unsigned long long e, unsigned int signs, float* v) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
        const float x = level((unsigned int)(e >> (8 * j)) & 0xFFu, 0.0f);
        v[j] = (signs >> j) & 1u ? -x : x;
    }
}

// `d · (0.5 + ls) · factor` in gguf-py's order (IQ2_*: factor 1/4; IQ3_XXS: 1/2).
__device__ __forceinline__ float half_step(float d, unsigned int ls, float factor) {
    return __fmul_rn(__fmul_rn(d, __fadd_rn(0.5f, (float)ls)), factor);
}

// IQ2_XXS, 66 bytes: {f16 d; then per sub-block of 32 two words: the grid indices of its four
// groups of eight (a byte each), and four 7-bit sign indices with a 4-bit scale at bit 28}.
struct FmtIQ2_XXS : GridFmt {
    static constexpr int BYTES = 66;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int w[2];
        load_words<2>(blk + 2 + 8 * (p >> 1), w);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = half_step(d, w[1] >> 28, 0.25f);
        a[1] = a[0];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int l = 2 * (p & 1) + k;
            grid_levels<8>(__ldg(&IQ2XXS_GRID[byte_of(w[0], l)]), ksigns((w[1] >> (7 * l)) & 127u),
                           v + 8 * k);
        }
    }
};

// The 4-bit scale of piece p from the eight scale bytes at `at` (low nibble first).
__device__ __forceinline__ unsigned int nibble_scale(const unsigned char* at, int p) {
    unsigned int sc[2];
    load_words<2>(at, sc);
    return (byte_of2(sc[0], sc[1], p >> 1) >> (4 * (p & 1))) & 15u;
}

// IQ2_XS, 74 bytes: {f16 d; u16 qs[32] (a 9-bit grid index and a 7-bit sign index per group of
// eight); u8 scales[8] (4 bits per 16)}.
struct FmtIQ2_XS : GridFmt {
    static constexpr int BYTES = 74;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int q[1];
        load_words<1>(blk + 2 + 4 * p, q);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = half_step(d, nibble_scale(blk + 66, p), 0.25f);
        a[1] = a[0];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const unsigned int g = (q[0] >> (16 * k)) & 0xFFFFu;
            grid_levels<8>(__ldg(&IQ2XS_GRID[g & 511u]), ksigns(g >> 9), v + 8 * k);
        }
    }
};

// IQ2_S, 82 bytes: {f16 d; u8 qs[32] (low index bits); u8 signs[32] (a byte per group of
// eight); u8 qh[8] (two high index bits per group, group g at bit 2 (g % 4) of qh[g / 4]);
// u8 scales[8] (4 bits per 16)}.
struct FmtIQ2_S : GridFmt {
    static constexpr int BYTES = 82;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int q[1], s[1], h[2];
        load_words<1>(blk + 2 + 2 * p, q);
        load_words<1>(blk + 34 + 2 * p, s);
        load_words<2>(blk + 66, h);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = half_step(d, nibble_scale(blk + 74, p), 0.25f);
        a[1] = a[0];
        const unsigned int qh = byte_of2(h[0], h[1], p >> 1);
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int g = 2 * p + k;
            const unsigned int idx = byte_of(q[0], k) | (((qh >> (2 * (g & 3))) & 3u) << 8);
            grid_levels<8>(__ldg(&IQ2S_GRID[idx]), byte_of(s[0], k), v + 8 * k);
        }
    }
};

// IQ3_XXS, 98 bytes: {f16 d; u8 qs[64] (a grid index per four values); then per sub-block of 32
// a word: four 7-bit sign indices (one per eight values) and a 4-bit scale at bit 28}.
struct FmtIQ3_XXS : GridFmt {
    static constexpr int BYTES = 98;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int q[1], aux[1];
        load_words<1>(blk + 2 + 4 * p, q);
        load_words<1>(blk + 66 + 4 * (p >> 1), aux);
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = half_step(d, aux[0] >> 28, 0.5f);
        a[1] = a[0];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const unsigned int signs = ksigns((aux[0] >> (7 * (2 * (p & 1) + k))) & 127u);
            grid_levels<4>(__ldg(&IQ3XXS_GRID[byte_of(q[0], 2 * k)]), signs, v + 8 * k);
            grid_levels<4>(__ldg(&IQ3XXS_GRID[byte_of(q[0], 2 * k + 1)]), signs >> 4,
                           v + 8 * k + 4);
        }
    }
};

// IQ3_S, 110 bytes: {f16 d; u8 qs[64] (low index bits, four values each); u8 qh[8] (the high
// bit of index i at bit i % 8 of qh[i / 8]); u8 signs[32] (a nibble per four values, low
// first); u8 scales[4] (4 bits per 32): d · (1 + 2 ls)}.
struct FmtIQ3_S : GridFmt {
    static constexpr int BYTES = 110;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        unsigned int q[1], h[2], s[1], sc[1];
        load_words<1>(blk + 2 + 4 * p, q);
        load_words<2>(blk + 66, h);
        load_words<1>(blk + 74 + 2 * p, s);
        load_words<1>(blk + 106, sc);
        const float d = half_to_float((unsigned short)load_u16(blk));
        const unsigned int ls = (byte_of(sc[0], p >> 2) >> (4 * ((p >> 1) & 1))) & 15u;
        a[0] = __fmul_rn(d, (float)(1u + 2u * ls));
        a[1] = a[0];
        const unsigned int qh = byte_of2(h[0], h[1], p >> 1) >> (4 * (p & 1));
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const unsigned int idx = byte_of(q[0], k) | (((qh >> k) & 1u) << 8);
            const unsigned int signs = byte_of(s[0], k >> 1) >> (4 * (k & 1));
            grid_levels<4>(__ldg(&IQ3S_GRID[idx]), signs, v + 4 * k);
        }
    }
};

// IQ1_S and IQ1_M levels: codebook values -1, 0, 1 shifted by delta = ±1/8, as integers eight
// times larger (8 g ± 1), the scale carrying the 1/8.
__device__ __forceinline__ void iq1_levels(unsigned int idx, bool minus, float* v) {
    const unsigned long long e = __ldg(&IQ1S_GRID[idx]);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const int g = (int)(signed char)(unsigned char)(e >> (8 * j));
        v[j] = level((unsigned int)(8 * g + (minus ? -1 : 1) + 16), 16.0f);
    }
}

// IQ1_S, 50 bytes: {f16 d; u8 qs[32] (low index bits, eight values each); u16 qh[8]: per
// sub-block of 32 the three high index bits of its four groups (bits 3l..), a 3-bit scale at
// bit 12 (d · (2 ls + 1) / 8) and the sign of delta at bit 15}.
struct FmtIQ1_S : GridFmt {
    static constexpr int BYTES = 50;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        const unsigned int q = load_u16(blk + 2 + 2 * p);
        const unsigned int qh = load_u16(blk + 34 + 2 * (p >> 1));
        const float d = half_to_float((unsigned short)load_u16(blk));
        a[0] = __fmul_rn(__fmul_rn(d, (float)(2u * ((qh >> 12) & 7u) + 1u)), 0.125f);
        a[1] = a[0];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int l = 2 * (p & 1) + k;
            const unsigned int idx = ((q >> (8 * k)) & 0xFFu) | (((qh >> (3 * l)) & 7u) << 8);
            iq1_levels(idx, (qh & 0x8000u) != 0, v + 8 * k);
        }
    }
};

// IQ1_M, 56 bytes: {u8 qs[32] (low index bits); u8 qh[16] (a nibble per group of eight, low
// first: three high index bits and the sign of delta at bit 3); u16 scales[4] (3 bits per 16,
// scale p at bit 3 (p % 4) of word p / 4, d · (2 ls + 1) / 8; the words' top nibbles are the f16
// d, word k its bits 4k..4k + 4)}. 56-byte blocks are 8-byte aligned.
struct FmtIQ1_M : GridFmt {
    static constexpr int BYTES = 56;
    static __device__ __forceinline__ void decode(const unsigned char* blk, int p, float (&v)[16],
                                                  float (&a)[RUNS], float (&)[RUNS]) {
        const unsigned int q = load_u16(blk + 2 * p);
        const unsigned int nibs = byte_of(load_u32(blk + 32 + 4 * (p >> 2)), p & 3);
        const uint2 sw = __ldg((const uint2*)(blk + 48));
        const unsigned int bits =
            (sw.x >> 12 & 0xFu) | (sw.x >> 28 << 4) | (sw.y >> 12 & 0xFu) << 8 | (sw.y >> 28) << 12;
        const float d = half_to_float((unsigned short)bits);
        const unsigned int word = ((p >> 2) < 2 ? sw.x : sw.y) >> (16 * ((p >> 2) & 1));
        const unsigned int ls = (word >> (3 * (p & 3))) & 7u;
        a[0] = __fmul_rn(__fmul_rn(d, (float)(2u * ls + 1u)), 0.125f);
        a[1] = a[0];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const unsigned int nib = (nibs >> (4 * k)) & 15u;
            iq1_levels(((q >> (8 * k)) & 0xFFu) | ((nib & 7u) << 8), (nib & 8u) != 0, v + 8 * k);
        }
    }
};
#endif

// ---------------------------------------------------------------------------------------------
// RoPE (Meta's `apply_rotary_emb`, adjacent pairs): (x0, x1) rotated by the angle
// pos * inv_freq_i, the angle formed in f32 (as transformers and the CPU form it), its sine and
// cosine taken in f64 and rounded to f32, each product and sum rounded (camelid-kernels
// `src/ops.rs`, `rope`).
__device__ __forceinline__ float2 rope_pair(float x0, float x1, int pos, float inv_freq_i) {
    const float angle = __fmul_rn((float)pos, inv_freq_i);
    double s, c;
    sincos((double)angle, &s, &c);
    const float sin_a = (float)s, cos_a = (float)c;
    float2 r;
    r.x = __fsub_rn(__fmul_rn(x0, cos_a), __fmul_rn(x1, sin_a));
    r.y = __fadd_rn(__fmul_rn(x0, sin_a), __fmul_rn(x1, cos_a));
    return r;
}

// RoPE of q (n_heads) and of k (n_kv_heads) in place, then the rotated k and v into the row's
// cache slots (k_rows[j], v_rows[j]: n_kv_heads * head_dim elements each, f16 bits where
// `half_cache`, else floats): the first n_heads * head_dim / 2 threads of a row rotate q's
// pairs, the next n_kv_heads * head_dim / 2 rotate k's and copy that pair of k and of v to the
// cache. Block ROPE_THREADS, grid (ceil((n_heads + n_kv_heads) * head_dim / 2 / ROPE_THREADS),
// n). Batches whose q, k and v are not `matvec3_<t>`'s products (prompts, tensor-core steps)
// take this launch after them.
#define ROPE_THREADS 128

#if CAMELID_PART(0)
extern "C" __global__ void __launch_bounds__(ROPE_THREADS)
    rope_store(float* q, float* k, const float* __restrict__ v, const int* __restrict__ pos,
               const float* __restrict__ inv_freq, void* const* __restrict__ k_rows,
               void* const* __restrict__ v_rows, int n, int n_heads, int n_kv_heads,
               int head_dim, int half_cache) {
    grid_dep_wait();
    const int j = blockIdx.y;
    const int half = head_dim / 2;
    int idx = blockIdx.x * ROPE_THREADS + threadIdx.x;
    if (j >= n || idx >= (n_heads + n_kv_heads) * half) return;
    if (idx < n_heads * half) {
        const int head = idx / half, i = idx % half;
        float2* p = (float2*)(q + (long long)j * n_heads * head_dim + head * head_dim + 2 * i);
        const float2 x = *p;
        *p = rope_pair(x.x, x.y, pos[j], inv_freq[i]);
        return;
    }
    idx -= n_heads * half;
    const int i = idx % half, off = (idx / half) * head_dim + 2 * i;
    const long long row = (long long)j * n_kv_heads * head_dim;
    float2* p = (float2*)(k + row + off);
    const float2 x = *p;
    const float2 r = rope_pair(x.x, x.y, pos[j], inv_freq[i]);
    *p = r;
    store_kv_pair(k_rows[j], off, r, half_cache);
    store_kv_pair(v_rows[j], off, *(const float2*)(v + row + off), half_cache);
}
#endif

// ---------------------------------------------------------------------------------------------
// Generic kernels

// The weight of value v in run k, computed in the reference's order (no FMA contraction), so
// that dequantization is bit-exact.
template <class F>
__device__ __forceinline__ float exact_weight(float v, float a, float b) {
    if (F::KIND == PLAIN) return v;
    if (F::KIND == SCALED) return __fmul_rn(a, v);
    return __fadd_rn(__fmul_rn(a, v), b);
}

// Stores RUN consecutive values at `out` (16-byte aligned for f32 runs of 4 and 8 and f16 runs
// of 8, 8-byte aligned for f16 runs of 4: columns of runs are multiples of the run length).
template <int RUN>
__device__ __forceinline__ void store_run(float* out, const float* w) {
#pragma unroll
    for (int i = 0; i < RUN; i += 4) {
        *(float4*)(out + i) = make_float4(w[i], w[i + 1], w[i + 2], w[i + 3]);
    }
}

template <int RUN>
__device__ __forceinline__ void store_run(unsigned short* out, const float* w) {
    unsigned int h[RUN / 2];
#pragma unroll
    for (int i = 0; i < RUN / 2; ++i) {
        h[i] = (unsigned int)float_to_half(w[2 * i]) |
               ((unsigned int)float_to_half(w[2 * i + 1]) << 16);
    }
    if constexpr (RUN == 8) {
        *(uint4*)out = make_uint4(h[0], h[1], h[2], h[3]);
    } else {
        *(uint2*)out = make_uint2(h[0], h[1]);
    }
}

// Decodes piece p of the block at `blk` and writes its 16 weights, exactly, to `out` (the
// block's first element).
template <class F, class T>
__device__ __forceinline__ void write_piece(const unsigned char* blk, int p, T* out) {
    float v[16], a[F::RUNS], b[F::RUNS];
    F::decode(blk, p, v, a, b);
#pragma unroll
    for (int k = 0; k < F::RUNS; ++k) {
        float w[F::RUN];
#pragma unroll
        for (int i = 0; i < F::RUN; ++i) w[i] = exact_weight<F>(v[k * F::RUN + i], a[k], b[k]);
        store_run<F::RUN>(out + F::run_col(p, k), w);
    }
}

// n_blocks consecutive blocks to T (f32 or f16 bits), one piece per thread, grid-stride.
template <class F, class T>
__device__ __forceinline__ void dequant_impl(const unsigned char* __restrict__ w,
                                             T* __restrict__ out, long long n_blocks) {
    grid_dep_wait();
    const long long pieces = n_blocks * F::PIECES;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < pieces; i += stride) {
        const long long blk = i / F::PIECES;
        write_piece<F>(w + blk * F::BYTES, (int)(i % F::PIECES), out + blk * F::BLOCK);
    }
}

// Rows tokens[i] of the matrix as f32: grid (ceil(cols / 16 / 128), n), one piece per thread.
template <class F>
__device__ __forceinline__ void embed_impl(const unsigned char* __restrict__ w,
                                           const unsigned int* __restrict__ tokens,
                                           float* __restrict__ out, int cols, int n) {
    grid_dep_wait();
    const int i = blockIdx.y;
    const int piece = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || piece >= cols / 16) return;
    const long long row_bytes = (long long)(cols / F::BLOCK) * F::BYTES;
    const unsigned char* row = w + (long long)tokens[i] * row_bytes;
    const int blk = piece / F::PIECES;
    write_piece<F>(row + (long long)blk * F::BYTES, piece % F::PIECES,
                   out + (long long)i * cols + blk * F::BLOCK);
}

// Decode products: y[j * rows + r] = sum_c W[r, c] * x[j * cols + c] for j < n.
//
// A CTA of MV_WARPS warps takes MV_ROWS consecutive rows. The columns are cut into steps of 32
// pieces (512 columns); warp w takes steps w, w + MV_WARPS, .. of its rows, one piece per lane, so
// the CTA streams a contiguous stretch of each row. The rows share each load of x (held in
// registers), which divides the activation traffic through L1 by MV_ROWS. Weights are decoded in
// registers once per step and multiplied by up to MV_MAX_N vectors of x (the sequences decoding
// together share one read of the matrix). More vectors are taken MV_MAX_N at a time, each slice a
// pass over the CTA's rows: only the first reads them from memory, the others find the CTA's few
// kilobytes in cache, and one launch serves a whole batch. Each lane keeps f32 partial sums; a warp
// shuffle and then a fixed-order sum over the warps finish each output, so results are
// deterministic and a vector's result does not depend on n or on its slice. For the scaled formats
// the scale is applied once per run to the dot product of the raw levels (the levels are exact
// small integers).
//
// The CTA's shape is 2 rows of 4 warps unless the host defines another before this file (an
// even MV_ROWS, for RoPE's pairs; `CAMELID_CUDA_MATVEC_SHAPE`, src/kernels.rs): a knob for
// measuring on a card. Each shape sums in its own order.
#ifndef MV_ROWS
#define MV_ROWS 2
#endif
#ifndef MV_WARPS
#define MV_WARPS 4
#endif
#define MV_MAX_N 8
static_assert(MV_ROWS % 2 == 0 && MV_ROWS * MV_MAX_N <= 32 * MV_WARPS && MV_WARPS <= 8,
              "the decode products' CTA shape");

// Vectors 0 .. n - 1 (n <= NMAX <= MV_MAX_N) of x against the CTA's rows (`rowp`, the first
// `row0`). NMAX is MV_MAX_N, or 1 for the single-vector kernels (`v1_*`: a decode step of one
// sequence), which then keep one accumulator per row rather than MV_MAX_N: half the registers
// (40-64 against 80-96), twice the CTAs resident per SM to hide the weights' latency. Vector
// j's arithmetic is the same either way.
// A call rather than inlined into the loop over slices: inlined, ptxas gave the kernels up to
// 128 registers (80-96 as one slice), fewer CTAs per SM to hide the weights' memory latency;
// called, 80-94 (`scripts/check-cuda-kernels.sh` prints them).
template <class F, bool ACC, int NMAX>
__device__ __noinline__ void matvec_slice(const unsigned char* const (&rowp)[MV_ROWS],
                                             const float* __restrict__ x, float* __restrict__ y,
                                             int rows, int cols, int n, int row0,
                                             float (&partial)[MV_WARPS][MV_ROWS][MV_MAX_N]) {
    const int lane = threadIdx.x, warp = threadIdx.y;
    const int pieces = cols / 16;

    float acc[MV_ROWS][NMAX];
#pragma unroll
    for (int r = 0; r < MV_ROWS; ++r)
#pragma unroll
        for (int j = 0; j < NMAX; ++j) acc[r][j] = 0.0f;

#pragma unroll 2
    for (int base = warp * 32; base < pieces; base += MV_WARPS * 32) {
        const int piece = base + lane;
        if (piece < pieces) {
            const int blk = piece / F::PIECES, p = piece % F::PIECES;
            float v[MV_ROWS][16], a[MV_ROWS][F::RUNS], b[MV_ROWS][F::RUNS];
#pragma unroll
            for (int r = 0; r < MV_ROWS; ++r) {
                F::decode(rowp[r] + (long long)blk * F::BYTES, p, v[r], a[r], b[r]);
                if (F::KIND == AFFINE) {
#pragma unroll
                    for (int k = 0; k < F::RUNS; ++k)
#pragma unroll
                        for (int i = 0; i < F::RUN; ++i)
                            v[r][k * F::RUN + i] = fmaf(a[r][k], v[r][k * F::RUN + i], b[r][k]);
                }
            }
            const float* xp = x + blk * F::BLOCK;
#pragma unroll
            for (int j = 0; j < NMAX; ++j) {
                if (j < n) {
                    float xv[16];
#pragma unroll
                    for (int k = 0; k < F::RUNS; ++k) {
                        const float4* q =
                            (const float4*)(xp + (long long)j * cols + F::run_col(p, k));
#pragma unroll
                        for (int i = 0; i < F::RUN / 4; ++i) {
                            const float4 f = __ldg(q + i);
                            xv[k * F::RUN + 4 * i] = f.x;
                            xv[k * F::RUN + 4 * i + 1] = f.y;
                            xv[k * F::RUN + 4 * i + 2] = f.z;
                            xv[k * F::RUN + 4 * i + 3] = f.w;
                        }
                    }
#pragma unroll
                    for (int r = 0; r < MV_ROWS; ++r) {
#pragma unroll
                        for (int k = 0; k < F::RUNS; ++k) {
                            float s = 0.0f;
#pragma unroll
                            for (int i = 0; i < F::RUN; ++i)
                                s = fmaf(v[r][k * F::RUN + i], xv[k * F::RUN + i], s);
                            acc[r][j] = F::KIND == SCALED ? fmaf(a[r][k], s, acc[r][j])
                                                          : acc[r][j] + s;
                        }
                    }
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < MV_ROWS; ++r) {
#pragma unroll
        for (int j = 0; j < NMAX; ++j) {
            if (j < n) {
                float s = acc[r][j];
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
                if (lane == 0) partial[warp][r][j] = s;
            }
        }
    }
    __syncthreads();
    const int t = warp * 32 + lane;
    if (t < MV_ROWS * MV_MAX_N) {
        const int r = t / MV_MAX_N, j = t % MV_MAX_N;
        if (j < n && row0 + r < rows) {
            float s = 0.0f;
#pragma unroll
            for (int ww = 0; ww < MV_WARPS; ++ww) s += partial[ww][r][j];
            float* out = y + (long long)j * rows + row0 + r;
            *out = ACC ? __fadd_rn(*out, s) : s;
        }
    }
}

// `cta` is the CTA's place among this matrix's CTAs (blockIdx.x, or less in a fused launch).
// With ACC the products are added to y (`y = y + s`, rounded as the `add` kernel rounds) rather
// than stored. NMAX: as `matvec_slice`'s (with 1, n must be 1).
template <class F, bool ACC = false, int NMAX = MV_MAX_N>
__device__ __forceinline__ void matvec_impl(const unsigned char* __restrict__ w,
                                            const float* __restrict__ x, float* __restrict__ y,
                                            int rows, int cols, int n, int cta) {
    __shared__ float partial[MV_WARPS][MV_ROWS][MV_MAX_N];
    const int row0 = cta * MV_ROWS;
    const long long row_bytes = (long long)(cols / F::BLOCK) * F::BYTES;

    // Rows past the end re-read the last row (always in bounds); their sums are not stored.
    const unsigned char* rowp[MV_ROWS];
#pragma unroll
    for (int r = 0; r < MV_ROWS; ++r) rowp[r] = w + (long long)min(row0 + r, rows - 1) * row_bytes;

    for (int j0 = 0; j0 < n; j0 += NMAX) {
        // The previous slice's partial sums are read before this one's are written.
        if (j0 > 0) __syncthreads();
        matvec_slice<F, ACC, NMAX>(rowp, x + (long long)j0 * cols, y + (long long)j0 * rows,
                                   rows, cols, min(n - j0, NMAX), row0, partial);
    }
}

// The CTA's rows of a decode product (and the same rows of `w2`, unless null), to L2 (see
// `prefetch_rows`).
template <class F>
__device__ __forceinline__ void prefetch_matvec_rows(const unsigned char* w,
                                                     const unsigned char* w2, int rows,
                                                     int cols, int cta) {
    const long long row_bytes = (long long)(cols / F::BLOCK) * F::BYTES;
    const long long at = (long long)cta * MV_ROWS * row_bytes;
    prefetch_rows(w + at, w2 ? w2 + at : nullptr, row_bytes, min(MV_ROWS, rows - cta * MV_ROWS));
}

// The operations that follow a product, fused into its launch: after `matvec_impl` has stored
// the CTA's rows of every vector, the CTA reads them back (its own writes, seen after a barrier)
// and finishes them as the separate kernel would, bit for bit. Done after the products rather
// than inside `matvec_slice`, where they cost registers (96-116 against 80-94).

// RoPE on the CTA's rows of every vector (rows 2i and 2i + 1 of a head are a pair, since
// MV_ROWS is even and a head's width is even) as `rope_store` rotates them, and with `cache`,
// the rows into each vector's cache slot (`cache[j]`, one element per row of the matrix, f16
// where `half_cache`); without `inv_freq`, only the copy (v). A call: inlined, the f64 sine and
// cosine took matvec3 from 80 registers to 96 with spills.
__device__ __noinline__ void rope_cache_rows(float* __restrict__ y, int rows, int n, int cta,
                                                const int* __restrict__ pos,
                                                const float* __restrict__ inv_freq,
                                                void* const* __restrict__ cache, int head_dim,
                                                int half_cache) {
    constexpr int PAIRS = MV_ROWS / 2;
    __syncthreads();
    for (int i = threadIdx.y * 32 + threadIdx.x; i < n * PAIRS; i += 32 * MV_WARPS) {
        const int j = i / PAIRS, r = cta * MV_ROWS + 2 * (i % PAIRS);
        if (r >= rows) continue;
        float2* p = (float2*)(y + (long long)j * rows + r);
        float2 v = *p;
        if (inv_freq) {
            v = rope_pair(v.x, v.y, pos[j], inv_freq[(r % head_dim) / 2]);
            *p = v;
        }
        if (cache) store_kv_pair(cache[j], r, v, half_cache);
    }
}

// h = silu(h) * u on the CTA's rows of every vector, as `silu_mul` (ops.cu) computes it.
__device__ __forceinline__ void swiglu_rows(float* __restrict__ h, const float* __restrict__ u,
                                            int rows, int n, int cta) {
    __syncthreads();
    const int row0 = cta * MV_ROWS;
    for (int i = threadIdx.y * 32 + threadIdx.x; i < MV_ROWS * n; i += 32 * MV_WARPS) {
        const int row = row0 + i % MV_ROWS;
        if (row < rows) {
            const long long at = (long long)(i / MV_ROWS) * rows + row;
            const float g = h[at];
            h[at] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u[at]);
        }
    }
}

// The residual's RMSNorm after its product (`matvec_add_norm_<t>`: x += Wo att, then the
// feed-forward block's xn = rms(x); x += Wdown h, then the next layer's), for one vector: every
// CTA makes its stored rows of `y` visible to the device and is counted; the last to be counted
// norms `y` (`rows` floats) into `out`, as `rmsnorm` would (`rms_row`), and sets the counter back
// to 0. One vector only: the tail is one CTA's (about a microsecond a row, by estimate), where
// `rmsnorm` takes several rows at once in a launch of its own.
__device__ __forceinline__ void norm_tail(const float* y, float* out, const float* __restrict__ gain,
                                          int rows, float eps, int* counter) {
    __shared__ double warp_sums[RMS_THREADS / 32];
    __shared__ int last;
    const int t = threadIdx.y * 32 + threadIdx.x;
    __threadfence();
    __syncthreads();
    if (t == 0) last = atomicAdd(counter, 1) == (int)gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (t == 0) *counter = 0;
    rms_row<32 * MV_WARPS>(out, y, gain, rows, eps, warp_sums);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core products of a few vectors (fast precision): y[j * rows + r] = Σ_c W[r, c] · xh[j, c]
// for j < n, with `xh` the activations already in f16 (`f32_to_f16`) and each weight rounded to
// f16 as `dequant_<t>_f16` rounds it: the inputs of the f16 GEMM path, without expanding the
// matrix into memory. The f32 matvec above is compute-bound from a few vectors on (its FMAs grow
// with n while its reads do not); these products run on the tensor cores, so the matrix read
// stays the cost up to tens of vectors (several sequences decoding together).
//
// mma.sync.m16n8k16 with f16 inputs and f32 accumulators (PTX ISA, "Matrix Fragments for
// mma.m16n8k16 with floating point type"): lane l = 4g + t holds A (16 x 16, row-major) elements
// (g, 2t..2t+1) in a0, (g + 8, 2t..2t+1) in a1, (g, 2t+8..2t+9) in a2, (g + 8, 2t+8..2t+9) in
// a3; B (16 x 8) elements (k 2t..2t+1, column g) in b0 and (k 2t+8..2t+9, column g) in b1; C
// (16 x 8) elements (g, 2t..2t+1) in c0, c1 and (g + 8, 2t..2t+1) in c2, c3 (the lower column in
// the lower half of a register).
//
// A dot product does not care which k is which column, so long as A and B agree: here lane t's
// four k's of a step (2t, 2t+1, 2t+8, 2t+9) are four consecutive weights of one piece, for both
// A (rows g and g + 8 of the tile) and B (activation g of the n-tile), and four steps take the
// whole piece. Four steps are a "group" of four pieces, piece 4G + t to lane t: each lane
// decodes two whole pieces a group and m-tile (its rows g and g + 8), with the formats' own
// `decode`, and loads 8 bytes of f16 activations per step and n-tile. Weight rows are the M
// dimension (16 per m-tile), vectors the N dimension (8 per n-tile).
//
// A CTA takes TC_MT m-tiles (TC_ROWS rows), and its TC_WARPS warps split the columns: warp w
// takes groups w, w + TC_WARPS, .. of those rows, so that the CTA streams its rows contiguously
// and each warp's chain of dependent steps is a quarter of the row. (With every warp on its own
// rows over all the columns, a 2048-row matrix had 64 warps on the whole card, each walking 32
// groups one after another: latency-bound.) Vectors go TC_NT n-tiles (TC_MAX_N) at a time, each
// slice a pass over the rows. Each warp keeps one f32 accumulator per output through its groups
// in order, and the warps' sums are added in warp order, so a vector's result does not depend on
// n. Rows past the end re-read the last row and are not stored; vectors past n read the last
// vector and are not stored.
#define TC_WARPS 4
#define TC_MT 2
#define TC_NT 4
#define TC_ROWS (TC_MT * 16)
#define TC_MAX_N (TC_NT * 8)

// Piece `piece` of a row, its 16 weights rounded to f16 in pairs: h[2s] holds elements 4s, 4s + 1
// and h[2s + 1] elements 4s + 2, 4s + 3 (step s's a0 and a2, or a1 and a3).
template <class F>
__device__ __forceinline__ void tc_piece(const unsigned char* row, int piece, unsigned int (&h)[8]) {
    float v[16], a[F::RUNS], b[F::RUNS];
    const int blk = piece / F::PIECES, p = piece % F::PIECES;
    F::decode(row + (long long)blk * F::BYTES, p, v, a, b);
#pragma unroll
    for (int e = 0; e < 16; e += 2) {
        const int k = e / F::RUN;
        h[e / 2] = pack_half2(exact_weight<F>(v[e], a[k], b[k]), exact_weight<F>(v[e + 1], a[k], b[k]));
    }
}

// The column of element e (a multiple of 4) of piece `piece`: elements e..e + 3 are consecutive
// columns (runs are 4 or 8 long).
template <class F>
__device__ __forceinline__ int tc_col(int piece, int e) {
    return (piece / F::PIECES) * F::BLOCK + F::run_col(piece % F::PIECES, e / F::RUN) + e % F::RUN;
}

// Float weights (KIND PLAIN) are exact in f16 (f16) or nearly (bf16: but for magnitudes below
// 2^-14), so rounding the activations would be the products' whole error: their activations
// come as two f16 terms, two mma for one (`xh` holds the roundings, then, `lo` halves further
// on, what each rounding left: f32_to_f16 with `split`). A quantized matrix's own error is far
// larger than one f16 rounding of the activations, and its products take one term.
template <class F>
__device__ __forceinline__ constexpr bool tc_split() {
    return F::KIND == PLAIN;
}

template <class F, bool ACC>
__device__ __noinline__ void tc_slice(const unsigned char* __restrict__ w,
                                      const unsigned short* __restrict__ xh, long long lo,
                                      float* __restrict__ y, int rows, int cols, int n,
                                      long long row_bytes) {
    __shared__ float red[TC_WARPS - 1][TC_MT * TC_NT * 4][32]; // warps 1.. sums, for warp 0
    const int lane = threadIdx.x, warp = threadIdx.y;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.x * TC_ROWS;

    // Rows g and g + 8 of each m-tile (clamped), and vector g of each n-tile (clamped).
    const unsigned char* rowp[TC_MT][2];
#pragma unroll
    for (int m = 0; m < TC_MT; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            rowp[m][h] = w + (long long)min(row0 + 16 * m + 8 * h + g, rows - 1) * row_bytes;
    const unsigned short* xp[TC_NT];
#pragma unroll
    for (int nt = 0; nt < TC_NT; ++nt) xp[nt] = xh + (long long)min(8 * nt + g, n - 1) * cols;
    const int nts = (n + 7) / 8;

    float acc[TC_MT][TC_NT][4];
#pragma unroll
    for (int m = 0; m < TC_MT; ++m)
#pragma unroll
        for (int nt = 0; nt < TC_NT; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[m][nt][i] = 0.0f;

    const int groups = cols / 64;
    for (int G = warp; G < groups; G += TC_WARPS) {
        const int piece = 4 * G + t;
        unsigned int wh[TC_MT][2][8];
#pragma unroll
        for (int m = 0; m < TC_MT; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h) tc_piece<F>(rowp[m][h], piece, wh[m][h]);
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            const int col = tc_col<F>(piece, 4 * s);
#pragma unroll
            for (int nt = 0; nt < TC_NT; ++nt) {
                if (nt < nts) {
                    const uint2 b = __ldg((const uint2*)(xp[nt] + col));
                    uint2 bl = b;
                    if (tc_split<F>()) bl = __ldg((const uint2*)(xp[nt] + lo + col));
#pragma unroll
                    for (int m = 0; m < TC_MT; ++m) {
                        const unsigned int a[4] = {wh[m][0][2 * s], wh[m][1][2 * s],
                                                   wh[m][0][2 * s + 1], wh[m][1][2 * s + 1]};
                        mma_16816(acc[m][nt], a, b.x, b.y);
                        if (tc_split<F>()) mma_16816(acc[m][nt], a, bl.x, bl.y);
                    }
                }
            }
        }
    }

    // Warp 0 adds the other warps' sums, in warp order, and stores. The barrier after lets the
    // next slice write `red` again.
    if (warp > 0) {
#pragma unroll
        for (int m = 0; m < TC_MT; ++m)
#pragma unroll
            for (int nt = 0; nt < TC_NT; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    red[warp - 1][(m * TC_NT + nt) * 4 + i][lane] = acc[m][nt][i];
    }
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int m = 0; m < TC_MT; ++m) {
#pragma unroll
            for (int nt = 0; nt < TC_NT; ++nt) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    float sum = acc[m][nt][i];
#pragma unroll
                    for (int w = 1; w < TC_WARPS; ++w)
                        sum += red[w - 1][(m * TC_NT + nt) * 4 + i][lane];
                    const int r = row0 + 16 * m + 8 * (i >> 1) + g;
                    const int j = 8 * nt + 2 * t + (i & 1);
                    if (nt < nts && r < rows && j < n) {
                        float* out = y + (long long)j * rows + r;
                        *out = ACC ? __fadd_rn(*out, sum) : sum;
                    }
                }
            }
        }
    }
    __syncthreads();
}

// `cols` must be a multiple of 64 (4 pieces a group): every Llama width is.
template <class F, bool ACC = false>
__device__ __forceinline__ void tc_matvec_impl(const unsigned char* __restrict__ w,
                                               const unsigned short* __restrict__ xh,
                                               float* __restrict__ y, int rows, int cols, int n) {
    const long long row_bytes = (long long)(cols / F::BLOCK) * F::BYTES;
    const int row0 = blockIdx.x * TC_ROWS;
    prefetch_rows(w + row0 * row_bytes, nullptr, row_bytes, min(TC_ROWS, rows - row0));
    grid_dep_wait();
    const long long lo = tc_split<F>() ? (long long)n * cols : 0;
    for (int j0 = 0; j0 < n; j0 += TC_MAX_N) {
        tc_slice<F, ACC>(w, xh + (long long)j0 * cols, lo, y + (long long)j0 * rows, rows, cols,
                         min(n - j0, TC_MAX_N), row_bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points, one set per weight type.

// The decode products of a type for up to NMAX vectors at a time (MV_MAX_N; 1 for the
// single-vector kernels, prefix `v1_`, whose `n` must be 1).
#define CAMELID_MATVECS(prefix, name, F, NMAX)                                                  \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                 \
        prefix##matvec_##name(const unsigned char* w, const float* x, float* y, int rows,       \
                              int cols, int n) {                                                \
        prefetch_matvec_rows<F>(w, nullptr, rows, cols, blockIdx.x);                            \
        grid_dep_wait();                                                                        \
        matvec_impl<F, false, NMAX>(w, x, y, rows, cols, NMAX == 1 ? 1 : n, blockIdx.x);        \
    }                                                                                           \
    /* The residual's products (o, down): y += W x, as matvec_ then add give it. */              \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                 \
        prefix##matvec_add_##name(const unsigned char* w, const float* x, float* y, int rows,   \
                                  int cols, int n) {                                            \
        prefetch_matvec_rows<F>(w, nullptr, rows, cols, blockIdx.x);                            \
        grid_dep_wait();                                                                        \
        matvec_impl<F, true, NMAX>(w, x, y, rows, cols, NMAX == 1 ? 1 : n, blockIdx.x);         \
    }                                                                                           \
    /* Up to three matrices of one type and width against the same x in one launch (q, k, v; \
       gate, up): the first ceil(rows0 / MV_ROWS) CTAs take w0, the next w1, the rest w2.    \
       `pos` not null they are q, k and v, and RoPE and the cache writes follow as rope_store \
       does them. */                                                                          \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                 \
        prefix##matvec3_##name(const unsigned char* w0, float* y0, int rows0,                   \
                               const unsigned char* w1, float* y1, int rows1,                   \
                               const unsigned char* w2, float* y2, int rows2, const float* x,   \
                               int cols, int n, const int* pos, const float* inv_freq,          \
                               void* const* k_rows, void* const* v_rows, int head_dim,          \
                               int half_cache) {                                                \
        const int c0 = (rows0 + MV_ROWS - 1) / MV_ROWS, c1 = (rows1 + MV_ROWS - 1) / MV_ROWS;   \
        const int nn = NMAX == 1 ? 1 : n;                                                       \
        int cta = blockIdx.x;                                                                   \
        const unsigned char* w = w0;                                                            \
        float* y = y0;                                                                          \
        int rows = rows0;                                                                       \
        void* const* cache = nullptr;                                                           \
        if (cta >= c0 + c1) {                                                                   \
            w = w2, y = y2, rows = rows2, cta -= c0 + c1, cache = v_rows, inv_freq = nullptr;   \
        } else if (cta >= c0) {                                                                 \
            w = w1, y = y1, rows = rows1, cta -= c0, cache = k_rows;                            \
        }                                                                                       \
        prefetch_matvec_rows<F>(w, nullptr, rows, cols, cta);                                   \
        grid_dep_wait();                                                                        \
        matvec_impl<F, false, NMAX>(w, x, y, rows, cols, nn, cta);                              \
        if (pos) rope_cache_rows(y, rows, nn, cta, pos, inv_freq, cache, head_dim, half_cache); \
    }                                                                                           \
    /* SwiGLU's gate in one launch: each CTA takes its rows of the gate into h, the same       \
       rows of up into u, then h = silu(h) * u, as matvec3_ then silu_mul give it. */          \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                 \
        prefix##matvec_swiglu_##name(const unsigned char* w_gate, const unsigned char* w_up,    \
                                     const float* x, float* h, float* u, int rows, int cols,    \
                                     int n) {                                                   \
        const int nn = NMAX == 1 ? 1 : n;                                                       \
        prefetch_matvec_rows<F>(w_gate, w_up, rows, cols, blockIdx.x);                          \
        grid_dep_wait();                                                                        \
        matvec_impl<F, false, NMAX>(w_gate, x, h, rows, cols, nn, blockIdx.x);                  \
        __syncthreads(); /* the gate's last sums are read from `partial` before up's go in */  \
        matvec_impl<F, false, NMAX>(w_up, x, u, rows, cols, nn, blockIdx.x);                    \
        swiglu_rows(h, u, rows, nn, blockIdx.x);                                                \
    }

#define CAMELID_WEIGHT_TYPE(name, F)                                                            \
    CAMELID_MATVECS(, name, F, MV_MAX_N)                                                        \
    CAMELID_MATVECS(v1_, name, F, 1)                                                            \
    /* The residual's product for one vector, then the RMSNorm of y into out (rmsnorm's        \
       floats), by the last CTA; `counter` is 0 before the launch and after it. */             \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                 \
        matvec_add_norm_##name(const unsigned char* w, const float* x, float* y, int rows,      \
                               int cols, float* out, const float* gain, float eps,             \
                               int* counter) {                                                  \
        prefetch_matvec_rows<F>(w, nullptr, rows, cols, blockIdx.x);                            \
        grid_dep_wait();                                                                        \
        matvec_impl<F, true, 1>(w, x, y, rows, cols, 1, blockIdx.x);                            \
        norm_tail(y, out, gain, rows, eps, counter);                                            \
    }                                                                                           \
    extern "C" __global__ void embed_##name(const unsigned char* w, const unsigned int* tokens, \
                                            float* out, int cols, int n) {                      \
        embed_impl<F>(w, tokens, out, cols, n);                                                 \
    }

// Tensor-core products of f16 activations (fast precision, a few vectors; those of f16 and bf16
// weights take two terms each, `tc_split`): every type but f32, whose weights the fast path never
// rounds to f16. `tc_matvec_add_` adds the products to y.
#define CAMELID_TC_TYPE(name, F)                                                                \
    extern "C" __global__ void __launch_bounds__(32 * TC_WARPS)                                 \
        tc_matvec_##name(const unsigned char* w, const unsigned short* xh, float* y, int rows,  \
                         int cols, int n) {                                                     \
        tc_matvec_impl<F>(w, xh, y, rows, cols, n);                                             \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(32 * TC_WARPS)                                 \
        tc_matvec_add_##name(const unsigned char* w, const unsigned short* xh, float* y,        \
                             int rows, int cols, int n) {                                       \
        tc_matvec_impl<F, true>(w, xh, y, rows, cols, n);                                       \
    }

// Quantized types: the count is in blocks of the format.
#define CAMELID_DEQUANT_BLOCKS(name, F)                                                         \
    extern "C" __global__ void dequant_##name##_f16(const unsigned char* w, unsigned short* out, \
                                                    long long n_blocks) {                       \
        dequant_impl<F>(w, out, n_blocks);                                                      \
    }                                                                                           \
    extern "C" __global__ void dequant_##name##_f32(const unsigned char* w, float* out,         \
                                                    long long n_blocks) {                       \
        dequant_impl<F>(w, out, n_blocks);                                                      \
    }

// Float types: the count is in elements, a multiple of 16.
#define CAMELID_DEQUANT_ELEMENTS(name, F)                                                       \
    extern "C" __global__ void dequant_##name##_f16(const unsigned char* w, unsigned short* out, \
                                                    long long n_elements) {                     \
        dequant_impl<F>(w, out, n_elements / 16);                                               \
    }                                                                                           \
    extern "C" __global__ void dequant_##name##_f32(const unsigned char* w, float* out,         \
                                                    long long n_elements) {                     \
        dequant_impl<F>(w, out, n_elements / 16);                                               \
    }

#if CAMELID_PART(0)
CAMELID_WEIGHT_TYPE(f32, FmtF32)
CAMELID_WEIGHT_TYPE(f16, FmtF16)
CAMELID_WEIGHT_TYPE(bf16, FmtBF16)
CAMELID_TC_TYPE(f16, FmtF16)
CAMELID_TC_TYPE(bf16, FmtBF16)
CAMELID_DEQUANT_ELEMENTS(f32, FmtF32)
CAMELID_DEQUANT_ELEMENTS(f16, FmtF16)
CAMELID_DEQUANT_ELEMENTS(bf16, FmtBF16)
#endif

#if CAMELID_PART(1)
CAMELID_WEIGHT_TYPE(q8_0, FmtQ8_0)
CAMELID_WEIGHT_TYPE(q4_0, FmtQ4_0)
CAMELID_WEIGHT_TYPE(q4_1, FmtQ4_1)
CAMELID_TC_TYPE(q8_0, FmtQ8_0)
CAMELID_TC_TYPE(q4_0, FmtQ4_0)
CAMELID_TC_TYPE(q4_1, FmtQ4_1)
CAMELID_DEQUANT_BLOCKS(q8_0, FmtQ8_0)
CAMELID_DEQUANT_BLOCKS(q4_0, FmtQ4_0)
CAMELID_DEQUANT_BLOCKS(q4_1, FmtQ4_1)
#endif

#if CAMELID_PART(2)
CAMELID_WEIGHT_TYPE(q5_0, FmtQ5_0)
CAMELID_WEIGHT_TYPE(q5_1, FmtQ5_1)
CAMELID_TC_TYPE(q5_0, FmtQ5_0)
CAMELID_TC_TYPE(q5_1, FmtQ5_1)
CAMELID_DEQUANT_BLOCKS(q5_0, FmtQ5_0)
CAMELID_DEQUANT_BLOCKS(q5_1, FmtQ5_1)
CAMELID_WEIGHT_TYPE(iq4_nl, FmtIQ4_NL)
CAMELID_TC_TYPE(iq4_nl, FmtIQ4_NL)
CAMELID_DEQUANT_BLOCKS(iq4_nl, FmtIQ4_NL)
#endif

#if CAMELID_PART(3)
CAMELID_WEIGHT_TYPE(q4_k, FmtQ4_K)
CAMELID_WEIGHT_TYPE(q5_k, FmtQ5_K)
CAMELID_WEIGHT_TYPE(q6_k, FmtQ6_K)
CAMELID_TC_TYPE(q4_k, FmtQ4_K)
CAMELID_TC_TYPE(q5_k, FmtQ5_K)
CAMELID_TC_TYPE(q6_k, FmtQ6_K)
CAMELID_DEQUANT_BLOCKS(q4_k, FmtQ4_K)
CAMELID_DEQUANT_BLOCKS(q5_k, FmtQ5_K)
CAMELID_DEQUANT_BLOCKS(q6_k, FmtQ6_K)
#endif

#if CAMELID_PART(4)
CAMELID_WEIGHT_TYPE(q2_k, FmtQ2_K)
CAMELID_WEIGHT_TYPE(q3_k, FmtQ3_K)
CAMELID_TC_TYPE(q2_k, FmtQ2_K)
CAMELID_TC_TYPE(q3_k, FmtQ3_K)
CAMELID_DEQUANT_BLOCKS(q2_k, FmtQ2_K)
CAMELID_DEQUANT_BLOCKS(q3_k, FmtQ3_K)
CAMELID_WEIGHT_TYPE(iq4_xs, FmtIQ4_XS)
CAMELID_TC_TYPE(iq4_xs, FmtIQ4_XS)
CAMELID_DEQUANT_BLOCKS(iq4_xs, FmtIQ4_XS)
#endif

#if CAMELID_PART(4)
CAMELID_WEIGHT_TYPE(tq1_0, FmtTQ1_0)
CAMELID_WEIGHT_TYPE(tq2_0, FmtTQ2_0)
CAMELID_TC_TYPE(tq1_0, FmtTQ1_0)
CAMELID_TC_TYPE(tq2_0, FmtTQ2_0)
CAMELID_DEQUANT_BLOCKS(tq1_0, FmtTQ1_0)
CAMELID_DEQUANT_BLOCKS(tq2_0, FmtTQ2_0)
#endif

#if CAMELID_PART(5)
CAMELID_WEIGHT_TYPE(iq2_xxs, FmtIQ2_XXS)
CAMELID_WEIGHT_TYPE(iq2_xs, FmtIQ2_XS)
CAMELID_WEIGHT_TYPE(iq2_s, FmtIQ2_S)
CAMELID_TC_TYPE(iq2_xxs, FmtIQ2_XXS)
CAMELID_TC_TYPE(iq2_xs, FmtIQ2_XS)
CAMELID_TC_TYPE(iq2_s, FmtIQ2_S)
CAMELID_DEQUANT_BLOCKS(iq2_xxs, FmtIQ2_XXS)
CAMELID_DEQUANT_BLOCKS(iq2_xs, FmtIQ2_XS)
CAMELID_DEQUANT_BLOCKS(iq2_s, FmtIQ2_S)
#endif

#if CAMELID_PART(6)
CAMELID_WEIGHT_TYPE(iq3_xxs, FmtIQ3_XXS)
CAMELID_WEIGHT_TYPE(iq3_s, FmtIQ3_S)
CAMELID_WEIGHT_TYPE(iq1_s, FmtIQ1_S)
CAMELID_WEIGHT_TYPE(iq1_m, FmtIQ1_M)
CAMELID_TC_TYPE(iq3_xxs, FmtIQ3_XXS)
CAMELID_TC_TYPE(iq3_s, FmtIQ3_S)
CAMELID_TC_TYPE(iq1_s, FmtIQ1_S)
CAMELID_TC_TYPE(iq1_m, FmtIQ1_M)
CAMELID_DEQUANT_BLOCKS(iq3_xxs, FmtIQ3_XXS)
CAMELID_DEQUANT_BLOCKS(iq3_s, FmtIQ3_S)
CAMELID_DEQUANT_BLOCKS(iq1_s, FmtIQ1_S)
CAMELID_DEQUANT_BLOCKS(iq1_m, FmtIQ1_M)
#endif

#if CAMELID_PART(0)
// Activations to f16 bits for the f16 products (round to nearest even); any grid, grid-stride.
// With `split`, also what each rounding leaves, rounded: out[n + i] = f16(x[i] - out[i]), so
// that out[i] + out[n + i] is x[i] to within 2^-22 |x[i]| (or 2^-25): the tensor-core products
// of float weights take both.
extern "C" __global__ void f32_to_f16(const float* __restrict__ x, unsigned short* __restrict__ out,
                                      long long n, int split) {
    grid_dep_wait();
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = x[i];
        const unsigned short hi = float_to_half(v);
        out[i] = hi;
        if (split) out[n + i] = float_to_half(v - half_to_float(hi));
    }
}
#endif
