#!/usr/bin/env bash
# camelid against llama.cpp with and without a LoRA adapter, alternating: the perplexity of
# Hamlet (8 chunks of 512, 2 threads) and the wall time of the whole command (loading, merging
# the adapter for camelid, evaluating), then camelid's own prompt and decode speed (`bench`).
# The adapter is tools/lora_smollm2.py's (target/lora-smollm2: the PEFT folder for camelid, its
# GGUF form for llama.cpp); LLAMA_CPP_BIN is the peer's build/bin (../shared/peer/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to llama.cpp build/bin}
camelid=${CAMELID:-target/release/camelid}
model=assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
text=assets/corpus/hamlet_gut.txt
lora=target/lora-smollm2
now() { date +%s.%N; }
for round in 1 2; do
    for with in no yes; do
        flags=() lflags=()
        [ $with = yes ] && flags=(--lora "$lora/adapter") lflags=(--lora "$lora/adapter.gguf")
        t0=$(now)
        out=$(LD_LIBRARY_PATH=$bin "$bin/llama-perplexity" -m $model -f $text -c 512 --chunks 8 \
            -t 2 "${lflags[@]}" 2>&1)
        t1=$(now)
        ppl=$(grep -o 'Final estimate: PPL = [0-9.]*' <<<"$out" | awk '{print $NF}')
        printf 'round %s lora=%-3s llama.cpp: ppl %s, %.1f s\n' $round $with "$ppl" \
            "$(echo "$t1 - $t0" | bc)"
        t0=$(now)
        ppl=$("$camelid" perplexity -m $model -f $text --ctx 512 --chunks 8 -t 2 "${flags[@]}" \
            --json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ppl"], 4))')
        t1=$(now)
        printf 'round %s lora=%-3s camelid:   ppl %s, %.1f s\n' $round $with "$ppl" \
            "$(echo "$t1 - $t0" | bc)"
        "$camelid" bench -m $model -p 128 -n 64 -r 3 -t 2 "${flags[@]}" --json 2>/dev/null |
            python3 -c 'import json,sys; v=json.load(sys.stdin); print("round '"$round"' lora='"$with"' camelid bench:", ", ".join("%s %.1f t/s" % (t["test"], t["avg_ts"]) for t in v))'
    done
done
