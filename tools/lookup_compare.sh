#!/usr/bin/env bash
# camelid run --lookup against llama.cpp's llama-lookup, same file, same raw prompts, greedy,
# 2 threads, alternating; plain decoding of both beside (camelid run, llama-bench tg128).
# Usage: LLAMA_CPP_BIN=... tools/lookup_compare.sh   (about 40 s on 2 cores after the release build)
B=./target/release/camelid
L=${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to the peer build (../shared/peer/README.md), with EXTRA_TARGETS=llama-lookup}
M=assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
CODE=$'def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef div(a, b):\n'
TEXT=$'It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.\n\nThe same sentence, copied word for word:\nIt was the best of times,'
cm() { $B run -m $M -p "$1" -n 128 --temp 0 -t 2 --json "${@:2}" 2>/dev/null | python3 -c 'import json,sys; v=json.load(sys.stdin); s=v.get("speculation") or {}; print("%.1f t/s (%d tokens) drafted %s accepted %s" % (v["timings"]["gen_tokens_per_s"], v["timings"]["gen_tokens"], s.get("drafted"), s.get("accepted")))'; }
ll_lookup() { $L/llama-lookup -m $M -p "$1" -n 128 --temp 0 -t 2 --spec-draft-n-max $2 2>&1 | grep -E "decoded|n_drafted|n_accept " | tr -s ' ' | tr '\n' ' '; echo; }
ll_plain() { $L/llama-bench -m $M -p 0 -n 128 -t 2 -r 2 -o json 2>/dev/null | python3 -c 'import json,sys; print("tg128 %.1f t/s" % json.load(sys.stdin)[0]["avg_ts"])'; }
for task in CODE TEXT; do
  for r in 1 2; do
    echo "$task r$r camelid plain:        $(cm "${!task}")"
    echo "$task r$r llama.cpp plain:      $(ll_plain "${!task}")"
    echo "$task r$r camelid --lookup:     $(cm "${!task}" --lookup)"
    echo "$task r$r llama-lookup n_max 3: $(ll_lookup "${!task}" 3)"
    echo "$task r$r llama-lookup n_max 16: $(ll_lookup "${!task}" 16)"
  done
done
