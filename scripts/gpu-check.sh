#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU, from prebuilt binaries: builds
# nothing, downloads nothing, makes its own models, prints one JSON document (scripts/gpu_check.py
# says what it checks). Where no GPU is present it says so and exits 0.
#
#   cargo build --release -p camelid-cli --features cuda     # on any x86-64 machine
#   scripts/gpu-check.sh [--bin target/release/camelid] [--default-model SmolLM2...gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/gpu_check.py "$@"
