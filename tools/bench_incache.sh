#!/usr/bin/env bash
# camelid vs llama.cpp with the weights in the last-level cache: decode and prompt speed of a
# narrow Llama 3.2 1B-shaped model (its head size and query heads per kv head) small enough
# for the weights to stay in cache, so that the kernels' arithmetic and the per-token overhead,
# not the memory, set the speed (issue 16; BENCHMARKS.md "CPU, weights in cache").
#
#   tools/bench_incache.sh LLAMA_BENCH_BIN
#
# LLAMA_BENCH_BIN is llama.cpp's llama-bench; its folder goes on LD_LIBRARY_PATH (with
# GGML_CPU_LIB's before it, where set: a libggml-cpu to use instead of the one beside it).
# Environment (defaults in brackets): LAYERS [2], DIM [512], FFN [1536], VOCAB [4096] shape the
# model (2 layers of 512: 15.5 MiB in F16 and BF16, 8.2 MiB Q8_0, 5.0 Q4_0, 5.2 Q4_K_M);
# TYPES ["F16 BF16 Q8_0 Q4_0 Q4_K_M IQ4_XS"]; ROUNDS [2]; REPS [3]; THREADS [2]; CAMELID
# [target/release/camelid, built here when not set]; DEPTH [0]: both engines' `-d` (the tests
# after a context of DEPTH tokens); NGEN [128]: the tg test's tokens; CAMELID_ARGS: more
# arguments for `camelid bench` (`--cache-type f16` for llama.cpp's cache type).
#
# Steps: builds camelid (release); writes the F16 model with `camelid random-model` into
# target/bench-models/incache/ and quantizes it with `camelid quantize` (both engines read the
# same files); then per round and per type runs llama-bench and `camelid bench`
# (`-p 512 -n 128 -r REPS -t THREADS`), llama.cpp first in odd rounds and second in even ones,
# with the load average before each run; prints a table of tokens/s (every round) and the
# ratio of the means. The JSON of every run stays in target/bench-results/incache-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 LLAMA_BENCH_BIN (llama.cpp's llama-bench)" >&2
    exit 2
fi
LLAMA_BENCH=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
LLAMA_LIBS=${GGML_CPU_LIB:+$GGML_CPU_LIB:}$(dirname "$LLAMA_BENCH")
LAYERS=${LAYERS:-2} DIM=${DIM:-512} FFN=${FFN:-1536} VOCAB=${VOCAB:-4096}
TYPES=${TYPES:-F16 BF16 Q8_0 Q4_0 Q4_K_M IQ4_XS}
ROUNDS=${ROUNDS:-2} REPS=${REPS:-3} THREADS=${THREADS:-2} DEPTH=${DEPTH:-0} NGEN=${NGEN:-128}
if [ -z "${CAMELID:-}" ]; then
    cargo build --release -p camelid-cli 2>&1 | tail -1
    CAMELID=target/release/camelid
fi

MODELS=target/bench-models/incache
OUT=target/bench-results/incache-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$MODELS" "$OUT"
NAME=d${DIM}-f${FFN}-l${LAYERS}-v${VOCAB}
model() { echo "$MODELS/$NAME-$(echo "$1" | tr A-Z a-z).gguf"; }
if [ ! -f "$(model F16)" ]; then
    $CAMELID random-model llama3.2-1b "$(model F16)" F16 --seed 1 --dim "$DIM" --ffn "$FFN" \
        --layers "$LAYERS" --vocab "$VOCAB" --tokenizer testdata/tokenizer/spm-tiny.model >&2
fi
for t in $TYPES; do
    [ "$t" = F16 ] || [ -f "$(model "$t")" ] || $CAMELID quantize "$(model F16)" "$(model "$t")" "$t" >&2
done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    echo "caches: $(lscpu | grep -E '^L[23] cache' | tr -s ' ' | paste -sd ';')"
    echo "camelid: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (modified)')"
    echo "llama.cpp: $(LD_LIBRARY_PATH=$LLAMA_LIBS "$LLAMA_BENCH" --version 2>&1 | head -1)"
    echo "model: $NAME (dim $DIM, ffn $FFN, $LAYERS layers, vocab $VOCAB)"
    for t in $TYPES; do
        echo "  $t: $(stat -L -c %s "$(model "$t")" | awk '{printf "%.1f", $1 / 1048576}') MiB"
    done
    echo "threads $THREADS, rounds $ROUNDS, -r $REPS, -n $NGEN, -d $DEPTH, camelid args: ${CAMELID_ARGS:-none}"
} | tee "$OUT/machine.txt" >&2

for round in $(seq 1 "$ROUNDS"); do
    for t in $TYPES; do
        f=$(model "$t")
        lt=$(echo "$t" | tr A-Z a-z)
        run_llama() {
            echo "$round llama $t $(cat /proc/loadavg)" >> "$OUT/load.txt"
            LD_LIBRARY_PATH=$LLAMA_LIBS "$LLAMA_BENCH" -m "$f" -p 512 -n "$NGEN" -d "$DEPTH" \
                -r "$REPS" -t "$THREADS" -o json > "$OUT/llama-$lt-$round.json" 2> /dev/null
        }
        run_camelid() {
            echo "$round camelid $t $(cat /proc/loadavg)" >> "$OUT/load.txt"
            # shellcheck disable=SC2086 # CAMELID_ARGS is a list of arguments
            $CAMELID bench -m "$f" -p 512 -n "$NGEN" -d "$DEPTH" -r "$REPS" -t "$THREADS" \
                ${CAMELID_ARGS:-} --json > "$OUT/camelid-$lt-$round.json" 2> /dev/null
        }
        echo "round $round $t" >&2
        if [ $((round % 2)) = 1 ]; then run_llama; run_camelid; else run_camelid; run_llama; fi
    done
done

python3 - "$OUT" "$ROUNDS" "$NGEN" "$DEPTH" $TYPES <<'EOF' | tee "$OUT/report.md"
import json, sys
from pathlib import Path
out, rounds, ngen, depth = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
types = sys.argv[5:]
def ts(engine, t, r, test):
    runs = json.loads((out / f"{engine}-{t.lower()}-{r}.json").read_text())
    want = (512, 0) if test == "pp" else (0, ngen)
    return next(x["avg_ts"] for x in runs if (x["n_prompt"], x["n_gen"]) == want)
at = f" @ d{depth}" if depth else ""
tg, pp = f"tg{ngen}{at}", f"pp512{at}"
print(f"| type | {tg} llama.cpp | {tg} camelid | tg ratio | {pp} llama.cpp | {pp} camelid | pp ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for t in types:
    cells = [t]
    for test in ("tg", "pp"):
        l = [ts("llama", t, r, test) for r in range(1, rounds + 1)]
        c = [ts("camelid", t, r, test) for r in range(1, rounds + 1)]
        ratio = (sum(c) / len(c)) / (sum(l) / len(l))
        cells += [" / ".join(f"{v:.0f}" for v in l), " / ".join(f"{v:.0f}" for v in c), f"**{ratio:.2f}×**"]
    print("| " + " | ".join(cells) + " |")
print()
print("load average before each run (1, 5, 15 min):")
for line in (out / "load.txt").read_text().splitlines():
    print("    " + " ".join(line.split()[:6]))
EOF
echo "results in $OUT" >&2
