#!/usr/bin/env bash
# `camelid quantize` to IQ4_NL and IQ4_XS against `llama-quantize` on the same input (issue 20):
# both files through llama.cpp's own `llama-perplexity` on a Shakespeare play, and the
# tensor types each tool chose (read with gguf-py, the reference reader).
#
#   tools/iq_perplexity.sh LLAMA_CPP_BIN [INPUT_GGUF] [TEXT]
#
# INPUT_GGUF (default: the default model, SmolLM2-135M-Instruct Q4_1) is first expanded to F32 by
# llama-quantize (--allow-requantize), so that both tools quantize the very same F32 weights.
# Needs a release build (cargo build --release -p camelid-cli) and python3 with the `gguf` package
# (PYTHON=... to choose the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: tools/iq_perplexity.sh LLAMA_CPP_BIN [INPUT_GGUF] [TEXT]}
INPUT=${2:-assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
TEXT=${3:-assets/corpus/macbeth_gut.txt}
PYTHON=${PYTHON:-python3}
CAMELID=target/release/camelid
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BIN/llama-quantize" --allow-requantize "$INPUT" "$WORK/f32.gguf" F32 >/dev/null 2>&1

ppl() {
    "$BIN/llama-perplexity" -m "$1" -f "$TEXT" -c 512 -t 2 2>&1 |
        sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 \2/p'
}

types() {
    "$PYTHON" - "$1" <<'PY'
import collections, sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
print(" ".join(f"{k}:{v}" for k, v in sorted(collections.Counter(t.tensor_type.name for t in r.tensors).items())))
PY
}

echo "input: $INPUT (expanded to F32 by llama-quantize), text: $TEXT, llama-perplexity -c 512"
read -r base base_err < <(ppl "$WORK/f32.gguf")
echo "F32: PPL $base ± $base_err"
for T in IQ4_NL IQ4_XS; do
    "$BIN/llama-quantize" "$WORK/f32.gguf" "$WORK/ref-$T.gguf" "$T" >/dev/null 2>&1
    "$CAMELID" quantize "$WORK/f32.gguf" "$WORK/cam-$T.gguf" "$T" >/dev/null
    read -r ref ref_err < <(ppl "$WORK/ref-$T.gguf")
    read -r cam cam_err < <(ppl "$WORK/cam-$T.gguf")
    echo "$T llama-quantize: PPL $ref ± $ref_err, $(stat -c %s "$WORK/ref-$T.gguf") bytes, tensors $(types "$WORK/ref-$T.gguf")"
    echo "$T camelid:        PPL $cam ± $cam_err, $(stat -c %s "$WORK/cam-$T.gguf") bytes, tensors $(types "$WORK/cam-$T.gguf")"
    awk -v a="$cam" -v b="$ref" -v t="$T" 'BEGIN { printf "%s camelid / llama-quantize perplexity: %.4f (%+.2f%%)\n", t, a / b, 100 * (a / b - 1) }'
done
