// Host emulation of the CUDA builtins the kernels use, so that their logic can be tested on a
// machine without a GPU: every CUDA thread of a CTA is a fiber (its own stack, switched by a few
// instructions on x86-64 and by ucontext elsewhere) on the calling OS thread, one CTA at a time
// (in grid order, or its reverse on every other launch); __syncthreads() and warp shuffles are
// barriers at which a fiber hands the turn to the next one that can run until its CTA (or warp)
// has arrived; __ldg checks alignment. It says nothing about speed or about the GPU memory
// model; it does run every line of the kernels. A barrier that can never be met (a thread
// waiting on one its CTA has left) aborts with a message. Used by
// scripts/check-cuda-kernels.sh (which also rewrites the two inline-PTX half conversions to
// emu_h2f / emu_f2h and drops `extern "C"`) and by driver.cpp, the emulated driver.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <algorithm>
#include <memory>
#include <ucontext.h>
#include <sys/mman.h>
#include <vector>
#include <functional>
#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)
struct dim3_ { unsigned x = 0, y = 0, z = 0; };
static dim3_ threadIdx, blockIdx;  // the running fiber's, set by the scheduler
static dim3_ blockDim, gridDim;
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
static inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
static inline float2 make_float2(float a, float b) { return {a, b}; }
#include <cassert>
// Memory fences and L2 loads order nothing here (one CTA runs at a time); the atomic is one
// thread's read-modify-write between barriers.
static inline void __threadfence() {}
template <class T> static inline T __ldcg(const T* p) { return *p; }
static inline int atomicAdd(int* p, int v) { int old = *p; *p = old + v; return old; }
template <class T> static inline T __ldg(const T* p) { if ((uintptr_t)p % sizeof(T)) { fprintf(stderr, "misaligned __ldg %p size %zu\n", (const void*)p, sizeof(T)); abort(); } return *p; }
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    s &= 31; uint64_t v = ((uint64_t)hi << 32) | lo; return (unsigned)(v >> s);
}
// PTX `prmt.b32` in its default mode: byte n of the result is byte (s >> 4n) & 7 of the eight
// bytes {x, y}, or that byte's sign bit repeated where bit 3 of the selector nibble is set.
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = ((uint64_t)y << 32) | x; unsigned r = 0;
    for (int n = 0; n < 4; n++) { unsigned sel = (s >> (4 * n)) & 15, b = (unsigned)(v >> (8 * (sel & 7))) & 255;
        if (sel & 8) b = (b & 128) ? 255 : 0; r |= b << (8 * n); }
    return r;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __int_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
static inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
using std::min; using std::max;
// f16 to f32 through a table: without F16C the compiler calls a library routine per value,
// which took a fifth of the emulated backend tests' time.
static inline float emu_h2f_slow(unsigned short h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static const float* emu_h2f_table() {
    static const float* t = [] {
        float* v = new float[65536];
        for (unsigned i = 0; i < 65536; i++) v[i] = emu_h2f_slow((unsigned short)i);
        return v;
    }();
    return t;
}
static inline float emu_h2f(unsigned short h) { static const float* t = emu_h2f_table(); return t[h]; }
static inline unsigned short emu_f2h(float f) { _Float16 x = (_Float16)f; unsigned short h; memcpy(&h, &x, 2); return h; }

// A barrier among the live threads of a CTA or a warp: a thread that exits drops out of it.
struct EmuBarrier { int live = 0, arrived = 0; unsigned gen = 0; };
// Switching fibers: on x86-64 a few instructions of our own (the callee-saved registers and the
// stack pointer; the floating-point control state is the same in every fiber, as nothing here
// changes it); swapcontext also saves the signal mask with a system call on every switch, which
// made the emulated backend tests several times slower.
#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* to_sp);
asm(R"(
    .text
    .p2align 4
    .hidden emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
struct EmuContext {
    void* sp = nullptr;
    // A fresh stack whose first switch "returns" into entry with the ABI's alignment.
    void start(char* stack, size_t size, void (*entry)()) {
        uint64_t* top = (uint64_t*)(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
        *--top = 0;                    // entry's return address (it never returns)
        *--top = (uint64_t)entry;      // popped by emu_switch's ret
        for (int i = 0; i < 6; i++) *--top = 0;  // rbp rbx r12..r15
        sp = top;
    }
};
static inline void emu_swap(EmuContext& from, EmuContext& to) { emu_switch(&from.sp, to.sp); }
#else
struct EmuContext {
    ucontext_t uc;
    void start(char* stack, size_t size, void (*entry)()) {
        getcontext(&uc);
        uc.uc_stack.ss_sp = stack;
        uc.uc_stack.ss_size = size;
        uc.uc_link = nullptr;
        makecontext(&uc, entry, 0);
    }
};
static inline void emu_swap(EmuContext& from, EmuContext& to) { swapcontext(&from.uc, &to.uc); }
#endif
// A fiber waiting at a barrier is not resumed until the barrier's generation moves on.
struct EmuFiber { EmuContext ctx; dim3_ tid; bool done = false, waited = false; const EmuBarrier* waits = nullptr; unsigned gen = 0; };
static EmuContext g_sched;
static EmuFiber* g_cur;
// The running CTA's fibers, the order they take turns in (reversed on every other CTA), and the
// running one's place in it.
static EmuFiber* g_fibers;
static int g_nt, g_turn;
static bool g_reverse;
static std::function<void()>* g_body;
static EmuBarrier g_block_bar;
static std::vector<EmuBarrier> g_warp_bar;
// Exchange slots of the warp shuffles and mma, two sets used by turns (the parity of the warp
// barrier's generation): a lane that has read after barrier g writes again only after barrier
// g + 1, which every lane reaches after its own read, so one barrier per exchange is enough.
static uint64_t g_slots[2][32][32];
static inline int flat_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
// The next fiber after the running one, in turn order, that can run (not done, not waiting at
// a barrier whose generation has not moved on), made the running one; nullptr if none can.
static inline EmuFiber* emu_next() {
    for (int k = 1; k <= g_nt; k++) {
        const int turn = (g_turn + k) % g_nt;
        EmuFiber& fb = g_fibers[g_reverse ? g_nt - 1 - turn : turn];
        if (fb.done || (fb.waits && fb.waits->gen == fb.gen)) continue;
        g_turn = turn; g_cur = &fb; threadIdx = fb.tid;
        return &fb;
    }
    return nullptr;
}
// From one fiber straight to the next (one switch, not two through the scheduler); back to the
// scheduler when none can run, which then ends the CTA or reports a deadlock.
static inline void emu_pass(EmuContext& from) {
    EmuFiber* next = emu_next();
    emu_swap(from, next ? next->ctx : g_sched);
}
static inline void emu_yield() { emu_pass(g_cur->ctx); }
static inline void emu_arrive(EmuBarrier& b) {
    unsigned g = b.gen;
    if (++b.arrived == b.live) { b.arrived = 0; b.gen++; return; }
    g_cur->waits = &b; g_cur->gen = g;
    emu_yield();
    g_cur->waits = nullptr;
}
static inline void emu_drop(EmuBarrier& b) {
    if (--b.live > 0 && b.arrived == b.live) { b.arrived = 0; b.gen++; }
}
static inline void __syncthreads() { emu_arrive(g_block_bar); }
// griddepcontrol.wait and .launch_dependents (the kernels' `grid_dep_wait`, which
// check-cuda-kernels.sh rewrites to this call under CAMELID_EMU): every thread of every kernel
// calls it before it touches what another kernel writes; `launch` aborts when a thread ended
// without it (launched with programmatic stream serialization, that kernel would race the one
// before it on the GPU). Where in the kernel it is called is not checked.
#define CAMELID_EMU 1
static inline void emu_grid_dep_wait() { g_cur->waited = true; }
// prefetch.global.L2 (rewritten likewise): a hint, but only for addresses the kernel may read,
// so the emulation reads the byte (past a device allocation's end, the emulated driver faults).
static inline void emu_prefetch(const void* p) { (void)*(const volatile unsigned char*)p; }
template <class T> static inline T emu_shfl(T v, int src) {
    int t = flat_tid(), w = t / 32, l = t % 32;
    uint64_t(&slots)[32] = g_slots[g_warp_bar[w].gen & 1][w];
    uint64_t u = 0; memcpy(&u, &v, sizeof(T)); slots[l] = u;
    emu_arrive(g_warp_bar[w]);
    T r; uint64_t s = slots[src & 31]; memcpy(&r, &s, sizeof(T));
    return r;
}
// mma.sync.m16n8k16.row.col.f32.f16.f16.f32 over the warp: every lane puts its fragments in the
// warp's slots, then computes its own four outputs from all of them (fragment layout: PTX ISA,
// "Matrix Fragments for mma.m16n8k16 with floating point type"; quant.cu says it too). The
// products of f16 values are exact in double; each output adds its 16 in order, in double, and
// rounds once onto the f32 accumulator. The hardware's order and roundings differ (not
// specified), by about an f32 rounding of the tile's sum.
static uint32_t g_mma[2][32][32][6];  // by turns, as g_slots
static inline float emu_half_of(uint32_t reg, int k) { return emu_h2f((unsigned short)(k & 1 ? reg >> 16 : reg & 0xFFFF)); }
static inline void emu_mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    int t = flat_tid(), w = t / 32, l = t % 32;
    uint32_t(&regs)[32][6] = g_mma[g_warp_bar[w].gen & 1][w];
    uint32_t* mine = regs[l];
    for (int i = 0; i < 4; i++) mine[i] = a[i];
    mine[4] = b0; mine[5] = b1;
    emu_arrive(g_warp_bar[w]);
    // A[r][k]: lane 4(r % 8) + (k % 8) / 2, register (k >= 8) * 2 + (r >= 8); B[k][n]: lane
    // 4n + (k % 8) / 2, register 4 + (k >= 8); the half is k % 2.
    auto A = [&](int r, int k) { return emu_half_of(regs[4 * (r % 8) + (k % 8) / 2][(k >= 8) * 2 + (r >= 8)], k); };
    auto B = [&](int k, int n) { return emu_half_of(regs[4 * n + (k % 8) / 2][4 + (k >= 8)], k); };
    const int g = l / 4, q = l % 4;
    for (int i = 0; i < 4; i++) {
        int r = g + 8 * (i >> 1), n = 2 * q + (i & 1);
        double s = 0;
        for (int k = 0; k < 16; k++) s += (double)A(r, k) * (double)B(k, n);
        c[i] = (float)((double)c[i] + s);
    }
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int off) { return emu_shfl(v, (flat_tid() % 32) ^ off); }
template <class T> static inline T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src); }

static void emu_fiber_main() {
    (*g_body)();
    g_cur->done = true;
    emu_drop(g_block_bar);
    emu_drop(g_warp_bar[flat_tid() / 32]);
    emu_pass(g_cur->ctx);  // never resumed
    abort();
}

// Runs kernel body f over the grid, one CTA after another, each CTA's threads as fibers.
static void launch(dim3_ grid, dim3_ block, std::function<void()> f) {
    constexpr size_t STACK = 256 << 10;
    static std::vector<EmuFiber> fibers(1024);
    static char* stacks = nullptr;
    int nt = block.x * block.y * block.z;
    if (nt < 1 || nt > 1024) { fprintf(stderr, "emu: a block of %d threads\n", nt); abort(); }
    if (!stacks) {
        // Reserved once; pages are only backed as the fibers touch them.
        void* m = mmap(nullptr, STACK * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) { perror("emu: fiber stacks"); abort(); }
        stacks = (char*)m;
    }
    gridDim = grid; blockDim = block; g_body = &f;
    dim3_ saved_tid = threadIdx, saved_bid = blockIdx;
    // Every other launch runs its CTAs in the reverse order, so that a kernel whose result
    // depends on which CTA runs first (or last, as in attention's one-launch combine) shows it.
    static unsigned long launches = 0;
    const bool backwards = launches++ % 2 == 1;
    const unsigned long ctas = (unsigned long)grid.x * grid.y * grid.z;
    for (unsigned long c = 0; c < ctas; c++) {
        const unsigned long i = backwards ? ctas - 1 - c : c;
        const unsigned bx = i % grid.x, by = i / grid.x % grid.y, bz = i / ((unsigned long)grid.x * grid.y);
        blockIdx = {bx, by, bz};
        g_block_bar = EmuBarrier{nt, 0, 0};
        g_warp_bar.assign((nt + 31) / 32, EmuBarrier{});
        for (int w = 0; w < (nt + 31) / 32; w++) g_warp_bar[w].live = std::min(32, nt - 32 * w);
        for (int t = 0; t < nt; t++) {
            EmuFiber& fb = fibers[t];
            fb.done = false;
            fb.waited = false;
            fb.tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            // Stack tops staggered by a few lines each: at one stride they would all fall in
            // the same cache sets, and every switch would miss.
            fb.ctx.start(stacks + (size_t)t * STACK, STACK - (size_t)(t % 64) * 320, emu_fiber_main);
        }
        // Every other CTA run runs its threads in the reverse order, so that a read of shared
        // memory that lacks its barrier sees the write missing in one order or the other.
        static unsigned long ctas_run = 0;
        g_reverse = ctas_run++ % 2 == 1;
        g_fibers = fibers.data(); g_nt = nt; g_turn = nt - 1;
        // The fibers pass the turn among themselves and come back here when none can run.
        if (emu_next()) emu_swap(g_sched, g_cur->ctx);
        int live = 0;
        for (int t = 0; t < nt; t++) live += !fibers[t].done;
        if (live > 0) {
            fprintf(stderr, "emu: deadlock in CTA (%u,%u,%u): %d threads wait at a barrier the others never reach\n", bx, by, bz, live);
            abort();
        }
        for (int t = 0; t < nt; t++)
            if (!fibers[t].waited) {
                fprintf(stderr, "emu: thread %d of CTA (%u,%u,%u) ended without griddepcontrol.wait\n", t, bx, by, bz);
                abort();
            }
    }
    threadIdx = saved_tid; blockIdx = saved_bid;
}
