#!/usr/bin/env bash
# How often the default model (SmolLM2-135M-Instruct Q4_1) names the expected answer when it is
# asked one question, over seeds 1..N: camelid chat in both precisions, and llama.cpp's
# llama-completion on the same chat prompt with the same sampler options.
#
#   tools/answer_rate.sh [N] [-- SAMPLER OPTIONS]      e.g. tools/answer_rate.sh 40 -- --temp 0.2
#
# QUESTION (default "What is the capital of France?") and WORD (default "Paris") override the
# question and the word looked for. The sampler options are passed to both engines, so use the
# names they share: --temp, --top-k, --top-p, --min-p. Without options both use their defaults,
# which are the same (temp 0.8, top-k 40, top-p 0.95, min-p 0.05).
#
# The llama.cpp prompt is the model's chat template rendered by hand (ChatML with the template's
# default system prompt); `camelid tokenize --special` and `llama-tokenize` give the same 37 ids
# for it. Needs the peer (../shared/peer/build-llama-cpp.sh with
# EXTRA_TARGETS=llama-completion) and a release build of camelid.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-20}
shift || true
[ "${1:-}" = "--" ] && shift
QUESTION=${QUESTION:-What is the capital of France?}
WORD=${WORD:-Paris}
PEER=${CAMELID_PEER:-$HOME/.cache/camelid-peer}
COMPLETION=$PEER/llama.cpp/build/bin/llama-completion
CAMELID=target/release/camelid
MODEL=${MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/camelid/models/SmolLM2-135M-Instruct.Q4_1.gguf}

[ -x "$CAMELID" ] || { echo "build camelid first: cargo build --release" >&2; exit 1; }
[ -x "$COMPLETION" ] || { echo "$COMPLETION missing: build the peer with EXTRA_TARGETS=llama-completion" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "$MODEL missing: run camelid once to fetch the default model" >&2; exit 1; }

PROMPT=$(mktemp)
trap 'rm -f "$PROMPT"' EXIT
printf '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' \
    "$QUESTION" > "$PROMPT"

count() { # label, then a function that prints one reply for the seed given as its argument
    local label=$1 fn=$2 hits=0 seed reply
    for seed in $(seq 1 "$N"); do
        # The whole reply first: `grep -q` in a pipe would stop reading at the first match
        # and fail the writer with SIGPIPE, which pipefail counts as no match.
        reply=$("$fn" "$seed" || true)
        if grep -q "$WORD" <<< "$reply"; then hits=$((hits + 1)); fi
    done
    printf '%-28s %3d / %d replies name %s\n' "$label" "$hits" "$N" "$WORD"
}
camelid_fast() { echo "$QUESTION" | "$CAMELID" chat -m "$MODEL" -n 64 --seed "$1" "${OPTS[@]}" 2>/dev/null; }
camelid_exact() { echo "$QUESTION" | "$CAMELID" chat -m "$MODEL" -n 64 --precision exact --seed "$1" "${OPTS[@]}" 2>/dev/null; }
llama_cpp() {
    "$COMPLETION" -m "$MODEL" -f "$PROMPT" -no-cnv -n 64 -t 2 --no-display-prompt -s "$1" "${OPTS[@]}" 2>/dev/null
}

OPTS=("$@")
echo "question: $QUESTION | options: ${OPTS[*]:-(defaults)} | seeds 1..$N"
count "camelid chat (fast)" camelid_fast
count "camelid chat (exact)" camelid_exact
count "llama.cpp llama-completion" llama_cpp
