#!/usr/bin/env bash
# `camelid serve` against the official openai Python package (tests/serve_openai.py).
# Needs the test assets (scripts/fetch-assets.sh) and network access to PyPI for the client.
set -euo pipefail
cd "$(dirname "$0")/.."
# jsonschema validates structured replies against their schemas (an independent reference).
python3 -m pip install --quiet --disable-pip-version-check "openai>=1.40,<3" "jsonschema>=4,<5"
cargo build --quiet -p camelid-cli --bin camelid
assets="${CAMELID_ASSETS:-assets}"
exec python3 tests/serve_openai.py --bin target/debug/camelid \
    --model "$assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
