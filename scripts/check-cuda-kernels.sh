#!/usr/bin/env bash
# Compiles every CUDA kernel source of camelid-cuda, without a GPU and without a CUDA toolkit:
#   1. nvcc to cubin for sm_80 and sm_90 with -Werror all-warnings, printing each
#      kernel's registers, spills and shared memory (ptxas -v);
#   2. NVRTC (the run-time path of the host crate) through Python ctypes, with no include path
#      and no header, for compute_80 and compute_90, with NVRTC 12 and NVRTC 13;
#   3. that every entry point of the ABI (kernels/README.md) is in the PTX;
#   4. the kernels' logic on the CPU: kernels/emu emulates the CUDA builtins (threads, shuffles,
#      barriers) and tests every kernel against scalar references;
#   5. the emulated driver (kernels/emu/driver.cpp: the driver API and the cuBLAS calls the
#      backend makes, the kernels run as in 4) into target/cuda-emu/libcuda.so (and
#      libcublas.so), with which scripts/test.sh runs the backend's GPU tests on the CPU.
# With CAMELID_EMU_SANITIZE=1, 4 and 5 are built with AddressSanitizer and UBSan (the kernels'
# __shared__ arrays are static there, so red zones surround them; device buffers end at guard
# pages either way), the driver into target/cuda-emu-asan instead. The backend's tests then need
# the sanitizer's runtime loaded first, e.g.:
#   LD_PRELOAD=$(g++ -print-file-name=libasan.so) \
#   ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0:handle_segv=0:allow_user_segv_handler=1 \
#   LD_LIBRARY_PATH=target/cuda-emu-asan:<NVRTC's folder> target/debug/deps/cuda-<hash>
# (the test binary `cargo test -p camelid-cuda --test cuda --no-run` names).
# The compilers come from PyPI by package name, pinned, into a virtual environment under
# ~/.cache/camelid (CAMELID_CUDA_VENV overrides). Needs python3 with venv and pip, and a host
# C++ compiler (nvcc preprocesses with it). Exits non-zero on any error or warning.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
kdir="$root/crates/camelid-cuda/kernels"
venv="${CAMELID_CUDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/camelid/cuda-check-venv}"

# nvcc itself ships only in the CUDA 13 wheels (the -cu12 "nvcc" wheels hold ptxas and NVVM
# but no nvcc driver); CUDA 13 still targets sm_80 and sm_90. NVRTC is checked in both majors,
# since the host loads whichever libnvrtc the machine has.
packages=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.88
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cuda-nvrtc-cu12==12.9.86
)

if ! command -v g++ >/dev/null && ! command -v c++ >/dev/null; then
    echo "check-cuda-kernels: nvcc needs a host C++ compiler (g++), none found" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
nvcc="$site/nvidia/cu13/bin/nvcc"
[ -x "$nvcc" ] || { echo "check-cuda-kernels: no nvcc at $nvcc" >&2; exit 1; }

shopt -s nullglob
sources=("$kdir"/*.cu)
# Put before every source (kernels/common.cuh says why); the codebooks before quant.cu.
common="$kdir/common.cuh"
grids="$kdir/iq_grids.cuh"
[ ${#sources[@]} -gt 0 ] || { echo "check-cuda-kernels: no .cu file in $kdir" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

status=0
# NVRTC, header-free, as the host compiles at run time.
nvrtc_check='
import ctypes, glob, sys
lib_glob, label, out_dir, common, grids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
libs = sorted(glob.glob(lib_glob))
if not libs:
    sys.exit("no libnvrtc at " + lib_glob)
# NVRTC dlopens its builtins library by soname: load it first, globally, from beside NVRTC.
for builtins in sorted(glob.glob(libs[0].rsplit("/", 1)[0] + "/libnvrtc-builtins.so.*")):
    if ".alt." not in builtins:
        ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        break
nv = ctypes.CDLL(libs[0])
major, minor = ctypes.c_int(), ctypes.c_int()
nv.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
print("== NVRTC %d.%d (%s)" % (major.value, minor.value, label))
failed = False
for path in sys.argv[6:]:
    src = open(path, "rb").read()
    name = path.rsplit("/", 1)[-1]
    # quant.cu reads the grid i-quants codebooks, which the host puts after common.cuh.
    prelude = open(common, "rb").read() + (open(grids, "rb").read() if name == "quant.cu" else b"")
    if b"#include" in src + prelude:
        print("FAIL %s: #include is not allowed (NVRTC compiles without headers)" % name)
        failed = True
        continue
    for arch in ("compute_80", "compute_90"):
        prog = ctypes.c_void_p()
        rc = nv.nvrtcCreateProgram(ctypes.byref(prog), prelude + src, name.encode(), 0, None, None)
        if rc != 0:
            sys.exit("nvrtcCreateProgram failed: %d" % rc)
        opts = [b"--gpu-architecture=" + arch.encode(), b"--std=c++17"]
        rc = nv.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        nv.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nv.nvrtcGetProgramLog(prog, log)
        text = log.value.decode(errors="replace").strip()
        if rc != 0 or text:
            print("FAIL %s %s (rc %d)\n%s" % (name, arch, rc, text))
            failed = True
        else:
            nv.nvrtcGetPTXSize(prog, ctypes.byref(size))
            ptx = ctypes.create_string_buffer(size.value)
            nv.nvrtcGetPTX(prog, ptx)
            open("%s/%s.%s.%s.ptx" % (out_dir, name, label, arch), "wb").write(ptx.value)
            print("  ok %-14s %-10s PTX %7d bytes" % (name, arch, len(ptx.value)))
        nv.nvrtcDestroyProgram(ctypes.byref(prog))
sys.exit(1 if failed else 0)
'
# Both NVRTC majors compile in the background while nvcc runs (CI has two cores); their
# reports follow nvcc's.
"$venv/bin/python" -c "$nvrtc_check" "$site/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" nvrtc12 "$out" "$common" "$grids" \
    "${sources[@]}" >"$out/nvrtc12.log" 2>&1 &
nvrtc12=$!
"$venv/bin/python" -c "$nvrtc_check" "$site/nvidia/cu13/lib/libnvrtc.so.13*" nvrtc13 "$out" "$common" "$grids" \
    "${sources[@]}" >"$out/nvrtc13.log" 2>&1 &
nvrtc13=$!

echo "== nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
for src in "${sources[@]}"; do
    name=$(basename "$src" .cu)
    for arch in 80 90; do
        # Straight to a cubin: the same front end and warnings as -ptx, then ptxas.
        prelude=(-include "$common")
        [ "$name" = quant ] && prelude+=(-include "$grids")
        if ! "$nvcc" -arch="sm_$arch" -std=c++17 -Werror all-warnings "${prelude[@]}" -cubin -Xptxas -v \
            "$src" -o "$out/$name.sm_$arch.cubin" 2>"$out/$name.sm_$arch.log"; then
            cat "$out/$name.sm_$arch.log" >&2
            echo "FAIL nvcc -cubin $name.cu sm_$arch" >&2
            status=1
            continue
        fi
        # One line per kernel: registers, spills, shared memory.
        awk -v file="$name.cu" -v arch="sm_$arch" '
            /Compiling entry function/ { match($0, /'\''[^'\'']*'\''/); k = substr($0, RSTART + 1, RLENGTH - 2) }
            /spill stores/ { split($0, a, ","); spill = a[2] "," a[3]; gsub(/^ +/, "", spill) }
            /Used [0-9]+ registers/ {
                match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15)
                smem = "0"; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
                printf "  %-6s %-14s %-22s regs %3d  smem %5d  %s\n", arch, file, k, regs, smem, spill
            }' "$out/$name.sm_$arch.log" | sort -k3
        if grep -q "spill stores" "$out/$name.sm_$arch.log" &&
            grep "spill stores" "$out/$name.sm_$arch.log" | grep -vq " 0 bytes spill stores, 0 bytes spill loads"; then
            echo "  note: register spills in $name.cu for sm_$arch (see above)"
        fi
    done
done

# The decode products' other CTA shapes (CAMELID_CUDA_MATVEC_SHAPE, src/kernels.rs), each of
# which the host may compile: one group of types each, for sm_90, without warnings; registers
# and spills of the one-vector product.
for shape in 2x2 2x8 4x2 4x4 4x8; do
    r=${shape%x*} w=${shape#*x}
    log="$out/quant.$shape.log"
    if "$nvcc" -arch=sm_90 -std=c++17 -Werror all-warnings -include "$common" -include "$grids" \
        -DCAMELID_QUANT_PART=1 -DMV_ROWS="$r" -DMV_WARPS="$w" -cubin -Xptxas -v "$kdir/quant.cu" \
        -o "$out/quant.$shape.cubin" 2>"$log"; then
        v1=$(grep -A3 "Compiling entry function '_*v1_matvec_q4_0'" "$log")
        regs=$(sed -n 's/.*Used \([0-9]*\) registers.*/\1/p' <<<"$v1")
        spill=$(sed -n 's/.* \([0-9]*\) bytes spill stores.*/\1/p' <<<"$v1")
        echo "  ok shape $shape (sm_90, q4_0 group): v1_matvec_q4_0 $regs registers, $spill bytes spilled"
    else
        cat "$log" >&2
        echo "FAIL nvcc quant.cu with the decode products' shape $shape" >&2
        status=1
    fi
done

wait $nvrtc12 || status=1
cat "$out/nvrtc12.log"
wait $nvrtc13 || status=1
cat "$out/nvrtc13.log"

# Every entry point of the ABI, in the PTX NVRTC produced.
types="f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s iq1_s iq1_m tq1_0 tq2_0"
expected="f32_to_f16 rmsnorm rope_store silu_mul add gather_rows argmax_rows attention_partial attention attention_combine attention_partial_f16 attention_f16 attention_tc_f16"
for t in $types; do
    expected="$expected matvec_$t matvec3_$t matvec_add_$t matvec_add_norm_$t matvec_swiglu_$t v1_matvec_$t v1_matvec3_$t v1_matvec_add_$t v1_matvec_swiglu_$t embed_$t dequant_${t}_f16 dequant_${t}_f32"
    [ "$t" = f32 ] || expected="$expected tc_matvec_$t tc_matvec_add_$t"
done
missing=0
for e in $expected; do
    if ! grep -qs "^\.visible \.entry $e(" "$out"/*.nvrtc12.compute_90.ptx; then
        echo "FAIL entry point $e missing from the PTX" >&2
        missing=1
    fi
done
[ $missing -eq 0 ] && echo "== all $(echo $expected | wc -w) ABI entry points present"
[ $missing -eq 0 ] || status=1

# The kernels' logic, run on the CPU under emulation (kernels/emu), against scalar references.
echo "== host emulation (g++ -std=c++20, each CUDA thread a fiber)"
mkdir -p "$out/emu"
for src in "$common" "$grids" "${sources[@]}"; do
    name=$(basename "$src"); name=${name%.*}
    python3 - "$src" "$out/emu/${name}_emu.cpp" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
for old, new in (('asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));', 'f = emu_h2f(h);'),
                 ('asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));', 'h = emu_f2h(f);'),
                 ('asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));',
                  'r = (unsigned)emu_f2h(lo) | ((unsigned)emu_f2h(hi) << 16);'),
                 ('extern "C"', '')):
    s = s.replace(old, new)
# Launch order (griddepcontrol) and L2 prefetches become emu.h's checks.
s, waits = re.subn(r'asm volatile\("griddepcontrol\.wait;.*?\);', 'emu_grid_dep_wait();', s)
assert 'asm volatile("griddepcontrol' not in s, "grid_dep_wait not rewritten"
s, _ = re.subn(r'asm volatile\("prefetch\.global\.L2 \[%0\];" ::"l"\((.*?)\)\);', r'emu_prefetch(\1);', s)
assert "asm volatile(\"prefetch" not in s, "prefetch not rewritten"
# The tensor-core product (one statement over several lines) becomes emu.h's warp exchange.
s, mma = re.subn(r'asm volatile\("mma\.sync.*?\(b1\)\);', 'emu_mma_16816(c, a, b0, b1);', s,
                 flags=re.DOTALL)
assert mma == open(sys.argv[1]).read().count('asm volatile("mma.sync'), "mma statement not rewritten"
open(sys.argv[2], "w").write(s)
PY
done
cxx=$(command -v g++ || command -v c++)
# The emulated driver (below) builds in the background while the tests build and run. Named
# libcuda.so only (cudarc's first choice): NVRTC looks for libcuda.so.1 and calls private entry
# points of the real driver when it finds one.
emu_dir="$root/target/cuda-emu"
san=()
if [ "${CAMELID_EMU_SANITIZE:-0}" = 1 ]; then
    san=(-g -fsanitize=address,undefined -fno-sanitize=vptr)
    emu_dir="$root/target/cuda-emu-asan"
    # The fibers switch stacks under the sanitizer; the emulation's statics live to the end.
    export ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0
fi
mkdir -p "$emu_dir"
"$cxx" "${san[@]}" -O2 -std=c++20 -shared -fPIC -fvisibility=hidden -w -I"$kdir/emu" -I"$out/emu" \
    "$kdir/emu/driver.cpp" -o "$emu_dir/libcuda.so.tmp" >"$out/driver.log" 2>&1 &
driver=$!
# The decode products' tests again with another CTA shape (4 rows of 2 warps), built beside the
# first run.
"$cxx" "${san[@]}" -O1 -std=c++20 -pthread -w -I"$kdir/emu" -I"$out/emu" -DMV_ROWS=4 -DMV_WARPS=2 \
    "$kdir/emu/test.cpp" -o "$out/emu/test-4x2" >"$out/test-4x2.log" 2>&1 &
shaped=$!
if "$cxx" "${san[@]}" -O1 -std=c++20 -pthread -w -I"$kdir/emu" -I"$out/emu" "$kdir/emu/test.cpp" \
    -o "$out/emu/test"; then
    "$out/emu/test" | sed 's/^/  /' || status=1
else
    echo "FAIL host emulation build" >&2
    status=1
fi
if wait $shaped; then
    "$out/emu/test-4x2" matvec | sed 's/^/  /' || status=1
else
    cat "$out/test-4x2.log" >&2
    echo "FAIL host emulation build (4x2)" >&2
    status=1
fi

# The emulated driver.
if wait $driver; then
    mv "$emu_dir/libcuda.so.tmp" "$emu_dir/libcuda.so"
    ln -sf libcuda.so "$emu_dir/libcublas.so"
    echo "== emulated driver: $emu_dir/libcuda.so"
else
    cat "$out/driver.log" >&2
    echo "FAIL emulated driver build" >&2
    status=1
fi

if [ $status -eq 0 ]; then
    echo "check-cuda-kernels: ok"
else
    echo "check-cuda-kernels: FAILED" >&2
fi
exit $status
