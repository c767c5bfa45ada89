#!/usr/bin/env bash
# The test command: fetch the test assets by package name (checksum-verified, cached), run every
# test of the workspace (the CLI built with the CUDA backend, which answers `--device cuda` with a
# clear error where there is no GPU), the kernels again on the AVX2, scalar and aarch64 paths,
# compile and emulate the CUDA kernels, then the server against the official `openai` Python
# package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
cargo test --workspace --features camelid-cli/cuda "$@"
# Attention and the element-wise operations follow the process-wide kernel path (the matmul
# tests already run every path the CPU has): their tests and the model's again on AVX2, and the
# kernels' on the scalar path. The test programs built above run again as they are (cargo says
# where they are): `cargo test -p` of these crates alone would build them anew with the features
# of that smaller build, three minutes of compiling for ten seconds of tests.
built=$(cargo test --workspace --features camelid-cli/cuda --no-run --message-format=json "$@" |
    python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]), m["target"]["kind"][0], m["executable"])')
# rerun KIND PACKAGE [VAR=VALUE... -- TEST ARGS]: the test programs of PACKAGE of that target
# kind ("lib" for the unit tests, "any" for all), with those variables set.
rerun() {
    local kind=$1 pkg=$2 dir k exe n=0
    shift 2
    local vars=() args=()
    while (($#)) && [ "$1" != -- ]; do vars+=("$1"); shift; done
    (($#)) && { shift; args=("$@"); }
    while read -r dir k exe; do
        [ "$(basename "$dir")" = "$pkg" ] && { [ "$kind" = any ] || [ "$kind" = "$k" ]; } || continue
        echo "== ${vars[*]} ${exe#"$PWD"/}"
        (cd "$dir" && env "${vars[@]}" "$exe" -q "${args[@]}")
        n=$((n + 1))
    done <<<"$built"
    [ "$n" -gt 0 ] || { echo "test.sh: no $kind test program of $pkg found to rerun" >&2; exit 1; }
}
rerun any camelid-kernels CAMELID_ISA=avx2
rerun any camelid-model CAMELID_ISA=avx2
rerun any camelid-kernels CAMELID_ISA=scalar
# The kernels on aarch64 (NEON and scalar), cross-built and run under qemu-user, and the
# default model's greedy tokens against llama.cpp's on that path.
scripts/test-aarch64.sh
# The CUDA sources through nvcc and NVRTC (from PyPI wheels) and a CPU emulation of the kernels;
# then the backend's own build of them with that NVRTC (no GPU needed to compile).
scripts/check-cuda-kernels.sh
venv="${CAMELID_CUDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/camelid/cuda-check-venv}"
nvrtc=$(dirname "$(find "$venv" -name 'libnvrtc.so.1[23]' | head -1)")
rerun lib camelid-cuda LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" -- \
    --nocapture every_source_compiles
# The CUDA backend end to end on the CPU, against the emulated driver that check-cuda-kernels.sh
# built: its GPU tests (camelid-cuda: logits against the CPU exact path on every tiny fixture,
# prompts, graph-replayed decoding, batches, hidden rows, cache copies; a few decode steps a
# file; the i-quants in llama.cpp's files) and the CLI's (camelid-cli: the k-quant and IQ4 types,
# whose rows the tiny fixtures are too narrow for), split over two processes (the emulator runs
# one call at a time). The build is the workspace test run's.
emu_env=(env LD_LIBRARY_PATH="$PWD/target/cuda-emu:$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    CAMELID_CUDA_TEST_STEPS=16 CAMELID_CUDA_TEST_REQUIRE_DEVICE=1)
emu_tests=(cargo test --workspace --features camelid-cli/cuda --test cuda "$@")
"${emu_tests[@]}" --no-run
# A short test first, alone: it compiles every weight type's kernels (CAMELID_CUDA_KERNELS=all)
# into the on-disk cache that the two processes then read, where each would otherwise compile
# its files' types at once.
"${emu_env[@]}" CAMELID_CUDA_KERNELS=all "${emu_tests[@]}" -- --exact \
    hidden_rows_and_cache_copies_equal_the_cpu_exact_path
"${emu_env[@]}" "${emu_tests[@]}" -- --test-threads 1 decode_logits multi_sequence iquant_logits &
emu_pid=$!
"${emu_env[@]}" "${emu_tests[@]}" -- --test-threads 1 --skip decode_logits --skip multi_sequence \
    --skip iquant_logits --skip hidden_rows_and_cache_copies
wait $emu_pid
# The GPU check's script (scripts/gpu-check.sh, what a GPU session runs) through its CUDA path on
# the same emulated driver, one tiny fixture's files: so that a change to the CLI it drives shows
# here, not in a GPU session's scarce minutes.
scripts/gpu-check.sh --emulated --bin target/debug/camelid --tiny-models llama32-tied >/dev/null
tests/serve_openai.sh
