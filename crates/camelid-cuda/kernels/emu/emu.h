// Host emulation of the CUDA builtins the kernels use, so that their logic can be tested on a
// machine without a GPU: one OS thread per CUDA thread, one CTA at a time, warp shuffles and
// __syncthreads() through barriers, __ldg checking alignment. It says nothing about speed or
// about the GPU memory model; it does run every line of the kernels. Used by
// scripts/check-cuda-kernels.sh, which also rewrites the two inline-PTX half conversions to
// emu_h2f / emu_f2h and drops `extern "C"`.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <algorithm>
#include <barrier>
#include <thread>
#include <vector>
#include <functional>
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)
struct dim3_ { unsigned x = 0, y = 0, z = 0; };
static thread_local dim3_ threadIdx, blockIdx;
static dim3_ blockDim, gridDim;
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
static inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
#include <cassert>
template <class T> static inline T __ldg(const T* p) { if ((uintptr_t)p % sizeof(T)) { fprintf(stderr, "misaligned __ldg %p size %zu\n", (const void*)p, sizeof(T)); abort(); } return *p; }
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    s &= 31; uint64_t v = ((uint64_t)hi << 32) | lo; return (unsigned)(v >> s);
}
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __int_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
static inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
using std::min; using std::max;
static inline float emu_h2f(unsigned short h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline unsigned short emu_f2h(float f) { _Float16 x = (_Float16)f; unsigned short h; memcpy(&h, &x, 2); return h; }

static std::barrier<>* g_block_bar;
static std::vector<std::barrier<>*> g_warp_bar;
static uint64_t g_slots[32][32];
static inline int flat_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
static inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
template <class T> static inline T emu_shfl(T v, int src) {
    int t = flat_tid(), w = t / 32, l = t % 32;
    uint64_t u = 0; memcpy(&u, &v, sizeof(T)); g_slots[w][l] = u;
    g_warp_bar[w]->arrive_and_wait();
    T r; uint64_t s = g_slots[w][src & 31]; memcpy(&r, &s, sizeof(T));
    g_warp_bar[w]->arrive_and_wait();
    return r;
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int off) { return emu_shfl(v, (flat_tid() % 32) ^ off); }
template <class T> static inline T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src); }

// Runs kernel body f over the grid; every thread of a CTA runs in its own OS thread.
// Early-returning threads must drop out of the barriers: we use arrive_and_drop at exit.
static void launch(dim3_ grid, dim3_ block, std::function<void()> f) {
    gridDim = grid; blockDim = block;
    int nt = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; bz++) for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) {
        std::barrier<> bb(nt); g_block_bar = &bb;
        std::vector<std::unique_ptr<std::barrier<>>> wb; g_warp_bar.clear();
        for (int w = 0; w < (nt + 31) / 32; w++) { wb.emplace_back(new std::barrier<>(std::min(32, nt - 32 * w))); g_warp_bar.push_back(wb.back().get()); }
        std::vector<std::thread> th;
        for (int t = 0; t < nt; t++) th.emplace_back([&, t] {
            threadIdx.x = t % block.x; threadIdx.y = (t / block.x) % block.y; threadIdx.z = t / (block.x * block.y);
            blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
            f();
            g_block_bar->arrive_and_drop();
            g_warp_bar[t / 32]->arrive_and_drop();
        });
        for (auto& x : th) x.join();
    }
}
