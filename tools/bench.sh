#!/usr/bin/env bash
# camelid vs llama.cpp on the Llama 3.2 1B-shaped benchmark model: the whole measurement behind
# BENCHMARKS.md, so it can be rerun on a quiet machine.
#
#   tools/bench.sh [--wait-quiet] [--rounds N] [--reps N] [--threads N] [--types "f16 q8_0 q4_0 q4_k_m"] [--profile]
#
# Steps:
#  1. builds camelid (release) and tools/membw.c;
#  2. makes target/bench-models/llama32-1b-shape-f16.gguf if missing (tools/make_bench_model.py)
#     and quantizes it to Q8_0, Q4_0 and Q4_K_M with llama-quantize (llama-*.gguf, the files both
#     engines are timed on) and with `camelid quantize` (camelid-*.gguf, timed, and checked to give
#     every tensor the same type and the same file size);
#  3. with --wait-quiet, waits until the 1-minute load average is below 1.0 (polls for up to
#     WAIT_MAX seconds, default 3600), before building and again before measuring;
#  4. measures memory bandwidth (membw: read, 8-stream read and triad with the benchmark's thread
#     count), before the rounds and again after them;
#  5. per round, per file: llama-bench and `camelid bench` (pp512 + tg128, -r REPS, the same
#     thread count), alternating which goes first, each under /usr/bin/time -v for the peak RSS,
#     with /proc/loadavg recorded before every run;
#  6. writes the tables (tools/bench_report.py) to target/bench-results/<date>/report.md;
#  7. with --profile, records where camelid's time goes (`perf record` of tg64 and of pp128 per
#     type, flat profile of the top symbols in profile-<type>-{tg,pp}.txt).
#
# llama.cpp: the peer build (../shared/peer), its libggml-cpu replaced by the one built without
# AMX (GGML_CPU_LIB, default ~/.cache/camelid-ref/build-noamx/bin): the peer's AMX kernels die
# with SIGILL on quantized models on this machine (tools/README.md). Set GGML_CPU_LIB= (empty)
# on a CPU without AMX.
set -euo pipefail
cd "$(dirname "$0")/.."

PEER=${CAMELID_PEER:-$HOME/.cache/camelid-peer}
LLAMA_BIN=$PEER/llama.cpp/build/bin
GGML_CPU_LIB=${GGML_CPU_LIB-$HOME/.cache/camelid-ref/build-noamx/bin}
MODELS=target/bench-models
F16=$MODELS/llama32-1b-shape-f16.gguf
ROUNDS=3 REPS=2 THREADS=2 WAIT=0 PROFILE=0 WAIT_MAX=${WAIT_MAX:-3600}
TYPES="f16 q8_0 q4_0 q4_k_m"
while [ $# -gt 0 ]; do
    case $1 in
        --wait-quiet) WAIT=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --reps) REPS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --types) TYPES=$2; shift ;;
        --profile) PROFILE=1 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=target/bench-results/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT" target/camelid-tools
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }
llama_env() {
    if [ -n "$GGML_CPU_LIB" ]; then env LD_LIBRARY_PATH="$GGML_CPU_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; else "$@"; fi
}

# With --wait-quiet: until the 1-minute load average is below 1.0 (or WAIT_MAX seconds passed).
wait_quiet() {
    [ "$WAIT" = 1 ] || return 0
    local waited=0 load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk "BEGIN{exit !($load < 1.0)}"; then break; fi
        if [ "$waited" -ge "$WAIT_MAX" ]; then log "still loaded ($load) after ${WAIT_MAX}s; going on"; break; fi
        sleep 20; waited=$((waited + 20))
    done
    log "load average $(cut -d' ' -f1-3 /proc/loadavg) after waiting ${waited}s"
}

# Build what is in the tree when the machine is quiet (others may still be changing it).
wait_quiet
log "building camelid (release) and membw"
cargo build --release -p camelid-cli 2>&1 | tail -1
cc -O3 -march=native -pthread tools/membw.c -o target/camelid-tools/membw
CAMELID=target/release/camelid

if [ ! -f "$F16" ]; then
    log "making $F16"
    "$PEER/venv/bin/python" tools/make_bench_model.py --out "$F16"
fi
for t in q8_0 q4_0 q4_k_m; do
    T=$(echo $t | tr a-z A-Z)
    if [ ! -f "$MODELS/llama-$t.gguf" ]; then
        log "llama-quantize $T"
        llama_env /usr/bin/time -v "$LLAMA_BIN/llama-quantize" "$F16" "$MODELS/llama-$t.gguf" "$T" "$THREADS" \
            > "$OUT/llama-quantize-$t.log" 2>&1
    fi
    if [ ! -f "$MODELS/camelid-$t.gguf" ]; then
        log "camelid quantize $T"
        /usr/bin/time -v $CAMELID quantize "$F16" "$MODELS/camelid-$t.gguf" "$T" -t "$THREADS" \
            > "$OUT/camelid-quantize-$t.log" 2>&1
    fi
done
"$PEER/venv/bin/python" - "$MODELS" "$PEER" > "$OUT/quantize-check.txt" <<'EOF'
# Same type for every tensor, same size, from llama-quantize and camelid quantize.
import sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[2]) / "llama.cpp/gguf-py"))
import gguf
d = Path(sys.argv[1])
for t in ["q8_0", "q4_0", "q4_k_m"]:
    a, b = gguf.GGUFReader(str(d / f"llama-{t}.gguf")), gguf.GGUFReader(str(d / f"camelid-{t}.gguf"))
    ta = {x.name: x.tensor_type.name for x in a.tensors}
    tb = {x.name: x.tensor_type.name for x in b.tensors}
    diff = [n for n in ta if ta[n] != tb.get(n)]
    sa, sb = (d / f"llama-{t}.gguf").stat().st_size, (d / f"camelid-{t}.gguf").stat().st_size
    counts = {}
    for v in ta.values():
        counts[v] = counts.get(v, 0) + 1
    print(f"{t}: {len(ta)} tensors {counts}; types differ: {diff or 'none'}; sizes {sa} / {sb}")
EOF
cat "$OUT/quantize-check.txt" >&2

wait_quiet

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "camelid: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (modified)')"
    echo "rustc: $(rustc -V)"
    echo "llama.cpp: $("$LLAMA_BIN/llama-bench" --version 2>&1 | head -1) ($LLAMA_BIN, libggml-cpu from ${GGML_CPU_LIB:-the peer})"
    echo "threads: $THREADS, rounds: $ROUNDS, reps per run: $REPS"
    echo "load before: $(cat /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

log "memory bandwidth"
target/camelid-tools/membw "$THREADS" 1024 8 > "$OUT/membw.txt"
cat "$OUT/membw.txt" >&2

for round in $(seq 1 "$ROUNDS"); do
    for t in $TYPES; do
        if [ "$t" = f16 ]; then f=$F16; else f=$MODELS/llama-$t.gguf; fi
        run_llama() {
            echo "$round llama $t $(cat /proc/loadavg)" >> "$OUT/load.txt"
            llama_env /usr/bin/time -v "$LLAMA_BIN/llama-bench" -m "$f" -t "$THREADS" -p 512 -n 128 \
                -r "$REPS" -o json > "$OUT/llama-$t-$round.json" 2> "$OUT/llama-$t-$round.time"
        }
        run_camelid() {
            echo "$round camelid $t $(cat /proc/loadavg)" >> "$OUT/load.txt"
            /usr/bin/time -v $CAMELID bench -m "$f" -t "$THREADS" -p 512 -n 128 -r "$REPS" --json \
                > "$OUT/camelid-$t-$round.json" 2> "$OUT/camelid-$t-$round.time"
        }
        log "round $round $t"
        if [ $((round % 2)) = 1 ]; then run_llama; run_camelid; else run_camelid; run_llama; fi
    done
done
echo "after: $(cat /proc/loadavg)" >> "$OUT/machine.txt"
log "memory bandwidth again (the report keeps the better figure)"
target/camelid-tools/membw "$THREADS" 1024 8 > "$OUT/membw-after.txt"
cat "$OUT/membw-after.txt" >&2
python3 tools/bench_report.py "$OUT" > "$OUT/report.md"
cat "$OUT/report.md"
if [ "$PROFILE" = 1 ]; then
    for t in $TYPES; do
        if [ "$t" = f16 ]; then f=$F16; else f=$MODELS/llama-$t.gguf; fi
        for test in tg pp; do
            log "profile $t $test"
            if [ $test = tg ]; then args="-p 0 -n 64"; else args="-p 128 -n 0"; fi
            perf record -q -F 499 -g -o "$OUT/perf-$t-$test.data" -- \
                $CAMELID bench -m "$f" -t "$THREADS" $args -r 1 > /dev/null 2>&1 || true
            perf report -q -i "$OUT/perf-$t-$test.data" --no-children --sort symbol \
                --percent-limit 1 -g none 2>/dev/null | head -40 > "$OUT/profile-$t-$test.txt" || true
            rm -f "$OUT/perf-$t-$test.data"
        done
    done
fi
log "results in $OUT"
