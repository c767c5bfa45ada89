#!/usr/bin/env bash
# JSON-schema-constrained decoding against unconstrained decoding on the same model, prompt and
# number of generated tokens (the constrained run's count), greedy, one sequence: generation
# tokens/s of each and the grammar's mask time per token (`camelid run --json` timings).
#
#   tools/bench_constrained.sh [MODEL] [REPS]
# Needs a release build (cargo build --release -p camelid-cli) and python3 for the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
REPS=${2:-3}
BIN=target/release/camelid
SCHEMA=testdata/constrain/people.schema.json
PROMPT="A JSON list of 6 people with their name, age and city:"
field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(d$1)"; }
RATIOS=()
for r in $(seq "$REPS"); do
    c=$("$BIN" run -m "$MODEL" -p "$PROMPT" --temp 0 -n 1000 --json --json-schema "$SCHEMA")
    n=$(echo "$c" | field "['timings']['gen_tokens']")
    u=$("$BIN" run -m "$MODEL" -p "$PROMPT" --temp 0 -n "$n" --json)
    line=$(python3 - "$c" "$u" <<'PY'
import json, sys
c, u = (json.loads(a)["timings"] for a in sys.argv[1:3])
print(f"{c['gen_tokens_per_s'] / u['gen_tokens_per_s']:.3f} "
      f"({c['gen_tokens_per_s']:.1f} vs {u['gen_tokens_per_s']:.1f} tokens/s over {c['gen_tokens']} vs {u['gen_tokens']} tokens); "
      f"mask {1e3 * c['grammar_mask_ms'] / c['grammar_masks']:.1f} us per token ({c['grammar_masks']} masks), "
      f"{100 * c['grammar_mask_ms'] / c['gen_ms']:.2f}% of the constrained generation time")
PY
)
    echo "  ratio $line"
    RATIOS+=("${line%% *}")
done
printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{a[NR]=$1} END {print "median ratio (constrained/unconstrained tokens/s) over " NR " reps: " a[int((NR+1)/2)]}'
