// An emulated CUDA driver (libcuda) and the handful of cuBLAS calls camelid-cuda makes, on the
// CPU, so that the whole CUDA backend (its host code, buffers, layouts, graphs, and the kernels
// through emu.h) runs and is tested on a machine without a GPU. Built by
// scripts/check-cuda-kernels.sh into target/cuda-emu/libcuda.so (also named libcublas.so; not
// libcuda.so.1, which NVRTC opens for private entry points of the real driver); with that
// folder and NVRTC's on LD_LIBRARY_PATH, `cargo test -p camelid-cuda --test cuda` runs the
// backend's GPU tests against it, and `camelid --device cuda` runs on it.
//
// Device memory is host memory: every allocation ends against an inaccessible page (an access
// past its end faults, and the fault is reported with the kernel that made it) and starts
// filled with NaN bytes (a read before any write shows up in the results). Streams run their
// work at once, in order; a capture records it instead, and a graph replays the record with
// the argument values of the capture. What the real driver refuses during a capture in
// CU_STREAM_CAPTURE_MODE_THREAD_LOCAL (synchronous copies, allocation, synchronizing, copies
// from pageable host memory) is refused here too and invalidates the capture. The kernels are
// the sources in ../*.cu, compiled for the CPU; a cubin handed to cuModuleLoadData is checked to
// be an ELF image (PTX, to have a `.version`) and otherwise ignored. It says nothing about speed.
#include "emu.h"
#include "common_emu.cpp"
#include "iq_grids_emu.cpp"
#include "quant_emu.cpp"
#include "ops_emu.cpp"
#include "attention_emu.cpp"

#include <csignal>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <unistd.h>

#define EXPORT extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
enum : int {
    OK = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    NOT_INITIALIZED = 3,
    NO_DEVICE = 100,
    INVALID_DEVICE = 101,
    INVALID_IMAGE = 200,
    INVALID_CONTEXT = 201,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    ILLEGAL_ADDRESS = 700,
    LAUNCH_OUT_OF_RESOURCES = 701,
    CAPTURE_UNSUPPORTED = 900,
    CAPTURE_INVALIDATED = 901,
    CAPTURE_WRONG_THREAD = 908,
    NOT_SUPPORTED = 801,
};

static const char* error_name(CUresult e) {
    switch (e) {
    case OK: return "CUDA_SUCCESS";
    case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
    case INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    case CAPTURE_UNSUPPORTED: return "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
    case CAPTURE_INVALIDATED: return "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED";
    case CAPTURE_WRONG_THREAD: return "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD";
    default: return "CUDA_ERROR_UNKNOWN";
    }
}

// Everything below runs under one lock: the driver is entered from any thread, one call at a
// time, and a kernel runs to its end inside the call that launched it.
static std::recursive_mutex g_lock;
#define LOCKED std::lock_guard<std::recursive_mutex> guard_(g_lock)

static bool g_init = false;
static int g_ctx_token;            // the primary context's handle points here
static thread_local void* g_current = nullptr;
// The compute capability the device reports (major · 10 + minor): 9.0, or CAMELID_CUDA_EMU_CC (a
// card older or newer than NVRTC knows, for the tests of what is compiled for it). The kernels
// run as they are whatever it says.
static int cc() {
    static const int v = [] {
        const char* e = getenv("CAMELID_CUDA_EMU_CC");
        return e ? atoi(e) : 90;
    }();
    return v;
}

// 80 GiB, or CAMELID_CUDA_EMU_MEM_MIB (a small card, for the tests of models that do not fit).
static const size_t TOTAL_MEM = [] {
    const char* v = getenv("CAMELID_CUDA_EMU_MEM_MIB");
    return v ? (size_t)strtoull(v, nullptr, 10) << 20 : 80ull << 30;
}();

// ---- memory -------------------------------------------------------------------------------

struct Alloc { char* base; size_t map_bytes; size_t bytes; bool device; };
static std::map<uintptr_t, Alloc> g_allocs;  // by the address handed out
static size_t g_device_bytes = 0;
static const char* g_kernel = nullptr;       // the kernel running now, for fault reports
static const size_t PAGE = 4096;

static void* map_guarded(size_t bytes, bool device) {
    size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
    size_t pages = (rounded + PAGE - 1) / PAGE * PAGE;
    void* m = mmap(nullptr, pages + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    char* base = (char*)m;
    mprotect(base + pages, PAGE, PROT_NONE);
    char* p = base + pages - rounded;  // 256-byte aligned, its end against the guard page
    memset(p, 0xff, rounded);          // NaN in every float, f16 and bf16 interpretation
    g_allocs[(uintptr_t)p] = Alloc{base, pages + PAGE, bytes, device};
    if (device) g_device_bytes += bytes;
    return p;
}

static bool unmap_guarded(void* p, bool device) {
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || it->second.device != device) return false;
    if (device) g_device_bytes -= it->second.bytes;
    munmap(it->second.base, it->second.map_bytes);
    g_allocs.erase(it);
    return true;
}

static bool is_pinned(const void* p, size_t n) {
    auto it = g_allocs.upper_bound((uintptr_t)p);
    if (it == g_allocs.begin()) return false;
    --it;
    return !it->second.device && (uintptr_t)p + n <= it->first + it->second.bytes;
}

static struct sigaction g_old_segv;
static void on_segv(int sig, siginfo_t* info, void* uctx) {
    uintptr_t a = (uintptr_t)info->si_addr;
    for (auto& [start, al] : g_allocs) {
        uintptr_t guard = (uintptr_t)al.base + al.map_bytes - PAGE;
        if (a >= guard && a < guard + PAGE) {
            char msg[256];
            int n = snprintf(msg, sizeof msg,
                             "cuda emulator: %s read or wrote %zu bytes past the end of a %s buffer of %zu bytes\n",
                             g_kernel ? g_kernel : "a copy", (size_t)(a - start - al.bytes),
                             al.device ? "device" : "pinned host", al.bytes);
            if (write(2, msg, n) < 0) {}
            abort();
        }
    }
    // Not ours: hand the fault to whoever handled it before (e.g. Rust's stack-overflow report).
    sigaction(SIGSEGV, &g_old_segv, nullptr);
    (void)sig; (void)uctx;
}

static unsigned long g_launches = 0, g_early_launches = 0, g_graph_launches = 0;

// With CAMELID_CUDA_EMU_STATS set, the kernels and graphs run are counted on stderr at exit.
static void print_stats() {
    fprintf(stderr, "cuda emulator: %lu kernels run (%lu launched early), %lu graph launches\n", g_launches,
            g_early_launches, g_graph_launches);
}

__attribute__((constructor)) static void install_fault_report() {
    if (getenv("CAMELID_CUDA_EMU_STATS")) atexit(print_stats);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &g_old_segv);
}

// ---- streams, captures, graphs ------------------------------------------------------------

typedef std::vector<std::function<void()>> Work;
struct Stream { bool capturing = false; bool invalidated = false; Work rec; std::thread::id by; };
struct Graph { Work ops; };
static std::vector<Stream*> g_streams;

// The stream the calling thread is capturing (in THREAD_LOCAL mode the restrictions of a
// capture apply to the thread that began it).
static Stream* capturing_stream() {
    for (Stream* s : g_streams)
        if (s->capturing && s->by == std::this_thread::get_id()) return s;
    return nullptr;
}

// Runs `op` on stream `s` now, or records it when `s` is capturing. The legacy stream (0)
// cannot take work while another stream captures.
static CUresult enqueue(void* s, std::function<void()> op) {
    Stream* st = (Stream*)s;
    if (st && st->capturing) {
        st->rec.push_back(std::move(op));
        return OK;
    }
    if (!st) {
        if (Stream* c = capturing_stream()) {
            c->invalidated = true;
            return CAPTURE_INVALIDATED;
        }
    }
    op();
    return OK;
}

// A call the driver refuses while this thread captures (THREAD_LOCAL mode).
static CUresult refused_while_capturing() {
    if (Stream* c = capturing_stream()) {
        c->invalidated = true;
        return CAPTURE_UNSUPPORTED;
    }
    return OK;
}

// ---- kernels ------------------------------------------------------------------------------

struct Kernel {
    const char* name;
    std::vector<size_t> sizes;             // of each argument
    std::vector<bool> pointers;            // which arguments are pointers
    std::function<void(void**)> run;       // the kernel body with its arguments
};

template <class... A, size_t... I>
static void call_with(void (*k)(A...), void** p, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}
template <class... A> static Kernel make_kernel(const char* name, void (*k)(A...)) {
    return Kernel{name, {sizeof(A)...}, {std::is_pointer_v<A>...},
                  [k](void** p) { call_with(k, p, std::index_sequence_for<A...>{}); }};
}
#define KERNEL(n) make_kernel(#n, n)
#define WEIGHT_KERNELS(t) \
    KERNEL(matvec_##t), KERNEL(matvec3_##t), KERNEL(matvec_add_##t), KERNEL(matvec_add_norm_##t), \
        KERNEL(v1_matvec_##t), KERNEL(v1_matvec3_##t), KERNEL(v1_matvec_add_##t), KERNEL(v1_matvec_swiglu_##t), KERNEL(matvec_swiglu_##t), KERNEL(embed_##t), \
        KERNEL(dequant_##t##_f16), KERNEL(dequant_##t##_f32)
#define TC_KERNELS(t) KERNEL(tc_matvec_##t), KERNEL(tc_matvec_add_##t)

static std::vector<Kernel>& kernels() {
    static std::vector<Kernel> table = {
        WEIGHT_KERNELS(f32), WEIGHT_KERNELS(f16), WEIGHT_KERNELS(bf16), WEIGHT_KERNELS(q8_0),
        WEIGHT_KERNELS(q4_0), WEIGHT_KERNELS(q4_1), WEIGHT_KERNELS(q5_0), WEIGHT_KERNELS(q5_1),
        WEIGHT_KERNELS(q4_k), WEIGHT_KERNELS(q5_k), WEIGHT_KERNELS(q6_k), WEIGHT_KERNELS(q2_k),
        WEIGHT_KERNELS(q3_k), WEIGHT_KERNELS(iq4_nl), WEIGHT_KERNELS(iq4_xs), WEIGHT_KERNELS(iq2_xxs),
        WEIGHT_KERNELS(iq2_xs), WEIGHT_KERNELS(iq2_s), WEIGHT_KERNELS(iq3_xxs), WEIGHT_KERNELS(iq3_s),
        WEIGHT_KERNELS(iq1_s), WEIGHT_KERNELS(iq1_m), WEIGHT_KERNELS(tq1_0), WEIGHT_KERNELS(tq2_0),
        TC_KERNELS(f16), TC_KERNELS(bf16), TC_KERNELS(q8_0), TC_KERNELS(q4_0), TC_KERNELS(q4_1),
        TC_KERNELS(q5_0), TC_KERNELS(q5_1), TC_KERNELS(q4_k), TC_KERNELS(q5_k), TC_KERNELS(q6_k),
        TC_KERNELS(q2_k), TC_KERNELS(q3_k), TC_KERNELS(iq4_nl), TC_KERNELS(iq4_xs), TC_KERNELS(iq2_xxs),
        TC_KERNELS(iq2_xs), TC_KERNELS(iq2_s), TC_KERNELS(iq3_xxs), TC_KERNELS(iq3_s), TC_KERNELS(iq1_s),
        TC_KERNELS(iq1_m), TC_KERNELS(tq1_0), TC_KERNELS(tq2_0),
        KERNEL(f32_to_f16), KERNEL(rmsnorm), KERNEL(rope_store), KERNEL(silu_mul), KERNEL(add),
        KERNEL(gather_rows), KERNEL(argmax_rows), KERNEL(attention_partial), KERNEL(attention), KERNEL(attention_combine),
        KERNEL(attention_partial_f16), KERNEL(attention_f16), KERNEL(attention_tc_f16),
    };
    return table;
}

static int g_module_token;

// ---- the driver API -----------------------------------------------------------------------

EXPORT CUresult cuGetErrorName(CUresult e, const char** s) { *s = error_name(e); return OK; }
EXPORT CUresult cuGetErrorString(CUresult e, const char** s) { *s = error_name(e); return OK; }
EXPORT CUresult cuInit(unsigned) { LOCKED; g_init = true; return OK; }
EXPORT CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
EXPORT CUresult cuDeviceGetCount(int* n) {
    if (!g_init) return NOT_INITIALIZED;
    *n = 1;
    return OK;
}
EXPORT CUresult cuDeviceGet(int* d, int ordinal) {
    if (!g_init) return NOT_INITIALIZED;
    if (ordinal != 0) return INVALID_DEVICE;
    *d = 0;
    return OK;
}
EXPORT CUresult cuDeviceGetName(char* name, int len, int d) {
    if (d != 0) return INVALID_DEVICE;
    snprintf(name, len, "camelid CUDA emulator (CPU)");
    return OK;
}
EXPORT CUresult cuDeviceTotalMem_v2(size_t* b, int d) {
    if (d != 0) return INVALID_DEVICE;
    *b = TOTAL_MEM;
    return OK;
}
EXPORT CUresult cuDeviceGetAttribute(int* v, int attr, int d) {
    if (d != 0) return INVALID_DEVICE;
    switch (attr) {
    case 1: *v = 1024; break;    // max threads per block
    case 2: *v = 1024; break;    // max block dim x
    case 3: *v = 1024; break;    // y
    case 4: *v = 64; break;      // z
    case 5: *v = 0x7fffffff; break;  // max grid dim x
    case 6: case 7: *v = 65535; break;
    case 8: *v = 48 << 10; break;  // shared memory per block
    case 10: *v = 32; break;     // warp size
    case 16: *v = 132; break;    // multiprocessors
    case 75: *v = cc() / 10; break;  // compute capability major
    case 76: *v = cc() % 10; break;  // minor
    default: *v = 0; break;      // no memory pools, no managed memory, ...
    }
    return OK;
}
EXPORT CUresult cuDevicePrimaryCtxRetain(void** ctx, int d) {
    if (!g_init) return NOT_INITIALIZED;
    if (d != 0) return INVALID_DEVICE;
    *ctx = &g_ctx_token;
    return OK;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int) { return OK; }
EXPORT CUresult cuCtxSetCurrent(void* ctx) { g_current = ctx; return OK; }
EXPORT CUresult cuCtxGetCurrent(void** ctx) { *ctx = g_current; return OK; }
EXPORT CUresult cuCtxGetDevice(int* d) {
    if (!g_current) return INVALID_CONTEXT;
    *d = 0;
    return OK;
}
EXPORT CUresult cuCtxSetFlags(unsigned) { return OK; }
EXPORT CUresult cuCtxSynchronize() { LOCKED; return refused_while_capturing(); }

EXPORT CUresult cuMemGetInfo_v2(size_t* free_b, size_t* total) {
    LOCKED;
    if (!g_current) return INVALID_CONTEXT;
    *total = TOTAL_MEM;
    *free_b = TOTAL_MEM - g_device_bytes;
    return OK;
}
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    LOCKED;
    if (!g_current) return INVALID_CONTEXT;
    if (CUresult e = refused_while_capturing()) return e;
    if (bytes == 0) return INVALID_VALUE;
    if (g_device_bytes + bytes > TOTAL_MEM) return OUT_OF_MEMORY;
    void* m = map_guarded(bytes, true);
    if (!m) return OUT_OF_MEMORY;
    *p = (CUdeviceptr)m;
    return OK;
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    LOCKED;
    if (CUresult e = refused_while_capturing()) return e;
    return unmap_guarded((void*)p, true) ? OK : INVALID_VALUE;
}
EXPORT CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    LOCKED;
    if (!g_current) return INVALID_CONTEXT;
    if (CUresult e = refused_while_capturing()) return e;
    void* m = map_guarded(bytes, false);
    if (!m) return OUT_OF_MEMORY;
    *p = m;
    return OK;
}
EXPORT CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
EXPORT CUresult cuMemFreeHost(void* p) {
    LOCKED;
    if (CUresult e = refused_while_capturing()) return e;
    return unmap_guarded(p, false) ? OK : INVALID_VALUE;
}

static bool is_device(CUdeviceptr p, size_t n) {
    auto it = g_allocs.upper_bound((uintptr_t)p);
    if (it == g_allocs.begin()) return false;
    --it;
    return it->second.device && p + n <= it->first + it->second.bytes;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    LOCKED;
    if (CUresult e = refused_while_capturing()) return e;
    if (!is_device(dst, n)) return INVALID_VALUE;
    memcpy((void*)dst, src, n);
    return OK;
}
EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    LOCKED;
    if (CUresult e = refused_while_capturing()) return e;
    if (!is_device(src, n)) return INVALID_VALUE;
    memcpy(dst, (const void*)src, n);
    return OK;
}
// An asynchronous copy with a pageable host side is staged by the driver at the call, which a
// capture cannot record.
static CUresult host_side(void* s, const void* host, size_t n) {
    Stream* st = (Stream*)s;
    if (st && st->capturing && !is_pinned(host, n)) {
        st->invalidated = true;
        return CAPTURE_UNSUPPORTED;
    }
    return OK;
}
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    LOCKED;
    if (!is_device(dst, n)) return INVALID_VALUE;
    if (CUresult e = host_side(s, src, n)) return e;
    return enqueue(s, [=] { memcpy((void*)dst, src, n); });
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    LOCKED;
    if (!is_device(src, n)) return INVALID_VALUE;
    if (CUresult e = host_side(s, dst, n)) return e;
    return enqueue(s, [=] { memcpy(dst, (const void*)src, n); });
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    LOCKED;
    if (!is_device(dst, n) || !is_device(src, n)) return INVALID_VALUE;
    return enqueue(s, [=] { memmove((void*)dst, (const void*)src, n); });
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* s) {
    LOCKED;
    if (!is_device(dst, n)) return INVALID_VALUE;
    return enqueue(s, [=] { memset((void*)dst, v, n); });
}
EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    LOCKED;
    if (CUresult e = refused_while_capturing()) return e;
    if (!is_device(dst, n)) return INVALID_VALUE;
    memset((void*)dst, v, n);
    return OK;
}

EXPORT CUresult cuStreamCreate(void** s, unsigned) {
    LOCKED;
    if (!g_current) return INVALID_CONTEXT;
    g_streams.push_back(new Stream);
    *s = g_streams.back();
    return OK;
}
EXPORT CUresult cuStreamCreateWithPriority(void** s, unsigned flags, int) { return cuStreamCreate(s, flags); }
EXPORT CUresult cuStreamDestroy_v2(void* s) {
    LOCKED;
    for (size_t i = 0; i < g_streams.size(); i++)
        if (g_streams[i] == s) {
            delete g_streams[i];
            g_streams.erase(g_streams.begin() + i);
            return OK;
        }
    return INVALID_HANDLE;
}
EXPORT CUresult cuStreamSynchronize(void* s) {
    LOCKED;
    Stream* st = (Stream*)s;
    if (st && st->capturing) {
        st->invalidated = true;
        return CAPTURE_UNSUPPORTED;
    }
    return st ? OK : refused_while_capturing();
}
EXPORT CUresult cuStreamQuery(void*) { return OK; }
EXPORT CUresult cuStreamWaitEvent(void*, void*, unsigned) { return OK; }
EXPORT CUresult cuStreamGetPriority(void*, int* p) { *p = 0; return OK; }
EXPORT CUresult cuCtxGetStreamPriorityRange(int* lo, int* hi) { *lo = 0; *hi = 0; return OK; }
EXPORT CUresult cuEventCreate(void** e, unsigned) { static int token; *e = &token; return OK; }
EXPORT CUresult cuEventDestroy_v2(void*) { return OK; }
EXPORT CUresult cuEventRecord(void*, void*) { return OK; }
EXPORT CUresult cuEventSynchronize(void*) { return OK; }
EXPORT CUresult cuEventQuery(void*) { return OK; }

EXPORT CUresult cuStreamBeginCapture_v2(void* s, int) {
    LOCKED;
    Stream* st = (Stream*)s;
    if (!st) return INVALID_VALUE;  // the legacy stream cannot be captured
    if (st->capturing || capturing_stream()) return CAPTURE_UNSUPPORTED;
    st->capturing = true;
    st->by = std::this_thread::get_id();
    st->invalidated = false;
    st->rec.clear();
    return OK;
}
EXPORT CUresult cuStreamEndCapture(void* s, void** graph) {
    LOCKED;
    Stream* st = (Stream*)s;
    if (!st || !st->capturing) return INVALID_VALUE;
    if (st->by != std::this_thread::get_id()) return CAPTURE_WRONG_THREAD;
    st->capturing = false;
    if (st->invalidated) {
        *graph = nullptr;
        st->rec.clear();
        return CAPTURE_INVALIDATED;
    }
    Graph* g = new Graph{std::move(st->rec)};
    st->rec.clear();
    *graph = g;
    return OK;
}
EXPORT CUresult cuStreamIsCapturing(void* s, int* status) {
    LOCKED;
    Stream* st = (Stream*)s;
    *status = st && st->capturing ? (st->invalidated ? 2 : 1) : 0;
    return OK;
}
EXPORT CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    LOCKED;
    if (!graph) return INVALID_VALUE;
    *exec = new Graph(*(Graph*)graph);
    return OK;
}
EXPORT CUresult cuGraphLaunch(void* exec, void* s) {
    LOCKED;
    if (!exec) return INVALID_VALUE;
    Graph* g = (Graph*)exec;
    g_graph_launches++;
    return enqueue(s, [g] { for (auto& op : g->ops) op(); });
}
EXPORT CUresult cuGraphExecDestroy(void* exec) { LOCKED; delete (Graph*)exec; return OK; }
EXPORT CUresult cuGraphDestroy(void* graph) { LOCKED; delete (Graph*)graph; return OK; }

EXPORT CUresult cuModuleLoadData(void** module, const void* image) {
    LOCKED;
    if (!g_current) return INVALID_CONTEXT;
    // The kernels here are compiled with one CTA shape of the decode products: a host that asks
    // for another (CAMELID_CUDA_MATVEC_SHAPE) would launch them with the wrong geometry.
    if (const char* shape = getenv("CAMELID_CUDA_MATVEC_SHAPE")) {
        char mine[16];
        snprintf(mine, sizeof mine, "%dx%d", MV_ROWS, MV_WARPS);
        if (strcmp(shape, mine) != 0) {
            fprintf(stderr, "emulated driver: its kernels are built with the decode products' "
                            "shape %s, not CAMELID_CUDA_MATVEC_SHAPE=%s\n", mine, shape);
            return INVALID_IMAGE;
        }
    }
    // A CUBIN, or PTX text (NVRTC's starts with comments, then `.version`).
    if (!image || (memcmp(image, "\x7f" "ELF", 4) != 0 && !strstr((const char*)image, ".version")))
        return INVALID_IMAGE;
    *module = &g_module_token;
    return OK;
}
EXPORT CUresult cuModuleUnload(void*) { return OK; }
EXPORT CUresult cuModuleGetFunction(void** f, void* module, const char* name) {
    LOCKED;
    if (module != &g_module_token) return INVALID_HANDLE;
    for (auto& k : kernels())
        if (strcmp(k.name, name) == 0) {
            *f = &k;
            return OK;
        }
    return NOT_FOUND;
}

// Runs in stream order; launched `early` (programmatic stream serialization) it is only counted:
// the kernels run one after another here, and emu.h checks that every thread of every kernel
// calls griddepcontrol.wait, which makes an early launch safe on the GPU.
static CUresult launch_kernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                              unsigned bz, unsigned smem, void* s, void** params, void** extra, bool early) {
    if (!g_current) return INVALID_CONTEXT;
    if (!f || extra || !params) return INVALID_VALUE;
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return INVALID_VALUE;
    if (gy > 65535 || gz > 65535 || bx > 1024 || by > 1024 || bz > 64) return INVALID_VALUE;
    if ((unsigned long long)bx * by * bz > 1024) return INVALID_VALUE;
    if (smem > (48u << 10)) return INVALID_VALUE;
    Kernel* k = (Kernel*)f;
    // The argument values as they are now (a graph replays those of its capture). A pointer
    // must point into a device allocation: a host address, a freed buffer or an integer in a
    // pointer's place is refused here, where the real GPU would fault on the first access.
    auto args = std::make_shared<std::vector<std::vector<char>>>();
    for (size_t i = 0; i < k->sizes.size(); i++) {
        const char* p = (const char*)params[i];
        args->emplace_back(p, p + k->sizes[i]);
        CUdeviceptr v;
        memcpy(&v, p, sizeof v);
        // A null pointer is an argument a kernel may be told not to use (matvec3's `pos`); one
        // that is read faults, and the fault report names the kernel.
        if (k->pointers[i] && v != 0 && !is_device(v, 1)) {
            fprintf(stderr, "cuda emulator: %s: argument %zu (0x%llx) is not a device address\n", k->name, i, v);
            return ILLEGAL_ADDRESS;
        }
    }
    dim3_ grid{gx, gy, gz}, block{bx, by, bz};
    return enqueue(s, [k, args, grid, block, early] {
        std::vector<void*> ptrs;
        for (auto& a : *args) ptrs.push_back(a.data());
        g_kernel = k->name;
        g_launches++;
        g_early_launches += early;
        launch(grid, block, [&] { k->run(ptrs.data()); });
        g_kernel = nullptr;
    });
}

EXPORT CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned smem, void* s, void** params, void** extra) {
    LOCKED;
    return launch_kernel(f, gx, gy, gz, bx, by, bz, smem, s, params, extra, false);
}

// CUlaunchConfig and CUlaunchAttribute (cuda.h, CUDA 12): only the attribute camelid-cuda sets,
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (6), is taken.
struct LaunchAttribute { int id; char pad[4]; union { int allowed; char bytes[64]; } value; };
struct LaunchConfig {
    unsigned gx, gy, gz, bx, by, bz, smem;
    void* stream;
    LaunchAttribute* attrs;
    unsigned n_attrs;
};
EXPORT CUresult cuLaunchKernelEx(const LaunchConfig* c, void* f, void** params, void** extra) {
    LOCKED;
    if (!c || (c->n_attrs > 0 && !c->attrs)) return INVALID_VALUE;
    bool early = false;
    for (unsigned i = 0; i < c->n_attrs; i++) {
        if (c->attrs[i].id != 6) return INVALID_VALUE;
        early = c->attrs[i].value.allowed != 0;
    }
    // CAMELID_CUDA_EMU_REFUSE, for tests of camelid-cuda's fallbacks: `early` refuses every
    // early launch, `early-graphs` only those made while capturing (and invalidates the capture,
    // as a failed call does).
    if (const char* refuse = getenv("CAMELID_CUDA_EMU_REFUSE"); early && refuse) {
        Stream* st = (Stream*)c->stream;
        const bool capturing = st && st->capturing;
        if (!strcmp(refuse, "early") || (!strcmp(refuse, "early-graphs") && capturing)) {
            if (capturing) st->invalidated = true;
            return NOT_SUPPORTED;
        }
    }
    return launch_kernel(f, c->gx, c->gy, c->gz, c->bx, c->by, c->bz, c->smem, c->stream, params, extra, early);
}

// ---- cuBLAS: the GEMMs camelid-cuda asks for ----------------------------------------------

typedef int cublasStatus_t;
enum : int { BLAS_OK = 0, BLAS_NOT_INITIALIZED = 1, BLAS_INVALID_VALUE = 7, BLAS_EXECUTION_FAILED = 13,
             BLAS_NOT_SUPPORTED = 15 };
struct Blas { void* stream = nullptr; };

EXPORT cublasStatus_t cublasCreate_v2(void** h) { *h = new Blas; return BLAS_OK; }
EXPORT cublasStatus_t cublasDestroy_v2(void* h) { delete (Blas*)h; return BLAS_OK; }
EXPORT cublasStatus_t cublasSetStream_v2(void* h, void* s) { ((Blas*)h)->stream = s; return BLAS_OK; }
EXPORT cublasStatus_t cublasSetWorkspace_v2(void*, void*, size_t) { return BLAS_OK; }
EXPORT cublasStatus_t cublasSetMathMode(void*, int) { return BLAS_OK; }
EXPORT cublasStatus_t cublasGetVersion_v2(void*, int* v) { *v = 130000; return BLAS_OK; }

// Column-major C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, summed in f32.
template <class TA, class TB, class Load>
static void gemm(int ta, int tb, int m, int n, int k, float alpha, const TA* A, int lda, const TB* B, int ldb,
                 float beta, float* C, int ldc, Load load) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int l = 0; l < k; l++) {
                float a = load(ta ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda]);
                float b = load(tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb]);
                s += a * b;
            }
            float& c = C[i + (size_t)j * ldc];
            c = beta == 0 ? alpha * s : alpha * s + beta * c;
        }
}

static bool gemm_args_ok(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
    if (ta < 0 || ta > 1 || tb < 0 || tb > 1 || m < 0 || n < 0 || k < 0) return false;
    return lda >= std::max(1, ta ? k : m) && ldb >= std::max(1, tb ? n : k) && ldc >= std::max(1, m);
}

// Whether a column-major rows x cols matrix with leading dimension ld lies in device memory.
static bool device_matrix(const void* p, long long rows, long long cols, long long ld, size_t elem, const char* what) {
    size_t bytes = rows && cols ? (size_t)((cols - 1) * ld + rows) * elem : 1;
    if (is_device((CUdeviceptr)p, bytes)) return true;
    fprintf(stderr, "cuda emulator: cuBLAS GEMM: %s (%lld x %lld, ld %lld) is not inside a device allocation\n",
            what, rows, cols, ld);
    return false;
}
static bool gemm_memory_ok(int ta, int tb, int m, int n, int k, const void* A, int lda, size_t ea, const void* B,
                           int ldb, size_t eb, const void* C, int ldc) {
    return device_matrix(A, ta ? k : m, ta ? m : k, lda, ea, "A") &&
           device_matrix(B, tb ? n : k, tb ? k : n, ldb, eb, "B") && device_matrix(C, m, n, ldc, 4, "C");
}

EXPORT cublasStatus_t cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                                     const float* A, int lda, const float* B, int ldb, const float* beta,
                                     float* C, int ldc) {
    LOCKED;
    if (!gemm_args_ok(ta, tb, m, n, k, lda, ldb, ldc)) return BLAS_INVALID_VALUE;
    if (!gemm_memory_ok(ta, tb, m, n, k, A, lda, 4, B, ldb, 4, C, ldc)) return BLAS_EXECUTION_FAILED;
    float al = *alpha, be = *beta;
    CUresult e = enqueue(((Blas*)h)->stream, [=] {
        g_kernel = "cublasSgemm";
        gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc, [](float x) { return x; });
        g_kernel = nullptr;
    });
    return e == OK ? BLAS_OK : BLAS_NOT_SUPPORTED;
}

EXPORT cublasStatus_t cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* A,
                                   int atype, int lda, const void* B, int btype, int ldb, const void* beta, void* C,
                                   int ctype, int ldc, int compute, int) {
    LOCKED;
    const int R_32F = 0, R_16F = 2, COMPUTE_32F = 68;
    if (!gemm_args_ok(ta, tb, m, n, k, lda, ldb, ldc)) return BLAS_INVALID_VALUE;
    if (atype != R_16F || btype != R_16F || ctype != R_32F || compute != COMPUTE_32F) return BLAS_NOT_SUPPORTED;
    if (!gemm_memory_ok(ta, tb, m, n, k, A, lda, 2, B, ldb, 2, C, ldc)) return BLAS_EXECUTION_FAILED;
    float al = *(const float*)alpha, be = *(const float*)beta;
    CUresult e = enqueue(((Blas*)h)->stream, [=] {
        g_kernel = "cublasGemmEx";
        gemm(ta, tb, m, n, k, al, (const unsigned short*)A, lda, (const unsigned short*)B, ldb, be, (float*)C, ldc,
             [](unsigned short x) { return emu_h2f(x); });
        g_kernel = nullptr;
    });
    return e == OK ? BLAS_OK : BLAS_NOT_SUPPORTED;
}

