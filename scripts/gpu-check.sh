#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU, from prebuilt binaries: builds
# nothing, downloads nothing, makes its own models, prints one JSON document (scripts/gpu_check.py
# says what it checks). Where no GPU is present it says so and exits 0.
#
#   cargo build --release -p camelid-cli --features cuda     # on any x86-64 machine (19 MB)
#   scripts/gpu-check.sh [--bin target/release/camelid] [--default-model SmolLM2...gguf | DIR]
#
# Through the device tool: name kind `nvidia-h200` in every call (issue 15's llama.cpp figures and
# its 4.27 TB/s ceiling are an H200's; a call naming no kind first gets an H100, and a call naming
# another kind than the machine held gives that machine back), carry `target/release/camelid` and
# `assets/corpus/macbeth_gut.txt` (the perplexity text), and give the run about 8 minutes. The
# default model (98 MB) is over what one call carries (64 MiB with the 43 MB tree), so it
# travels in pieces over several calls to the same warm machine (it goes back after 30 s idle),
# which keeps ignored files between calls:
#
#   mkdir -p target/gpu-stage
#   split -b 20M assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf target/gpu-stage/smollm2.part-
#   # five calls, each at once after the last: carry one piece (target/gpu-stage/smollm2.part-aa
#   # .. -ae), command `true`; then carry the binary and the text, command
#   scripts/gpu-check.sh --default-model target/gpu-stage
#
# gpu_check.py joins the pieces in name order and checks the sha256; with any missing, the
# default-model check says so and the others run. The JSON document (about 60 KB) is also
# written to $OUT/gpu-check.json where $OUT is set (the device tool brings that file back; its
# output tail keeps only 12,000 characters), and the output ends with a one-line summary of the
# figures that decide. Where Nsight Systems (`nsys`) is installed, the last check profiles a
# bench run (under a minute); where only Nsight Compute (`ncu`) is, two decode steps' kernels
# and 8 layers of a prompt pass (150 s at most for the two).
#
# Without a GPU: `--rehearse` runs every step on the CPU (`--device cpu`), and `--emulated` runs
# the tiny check through the CUDA path on the emulated driver of scripts/check-cuda-kernels.sh
# (scripts/test.sh does, on one fixture).
set -euo pipefail
cd "$(dirname "$0")/.."
# cuBLAS and NVRTC may live outside the loader's path: in the toolkit's folder, or in the
# nvidia-* wheels PyTorch brings. The driver (libcuda.so.1) is on the path wherever a GPU is.
extra=$(python3 - <<'PY'
import glob, os, site
dirs = ["/usr/local/cuda/lib64"] + sorted(glob.glob("/usr/local/cuda-*/lib64"))
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib")))
print(":".join(d for d in dirs if os.path.isdir(d)))
PY
)
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$extra"
exec python3 scripts/gpu_check.py "$@"
