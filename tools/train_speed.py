#!/usr/bin/env python3
"""Training speed, camelid against PyTorch eager, in one run: whole optimizer steps (forward,
backward, clipping, AdamW) in f32 on the same shapes and batches, the engines interleaved and
their order alternated each round, then a Markdown table of tokens/s and FLOP/s against the FMA
peak measured in the same run.

Build first, then run with a Python that has torch and transformers:

    cargo build --release -p camelid-train --example train_speed \\
        -p camelid-kernels --example gemm_speed
    python tools/train_speed.py [--rounds 2] [--threads 2] [--steps 5]

The shapes: llama2.c's stories15M (dim 288, 6 layers, 6 heads, ffn 768, ctx 256, tied, 4
sequences a step) and camelid's preset tiny (dim 128, 4 layers, 4 heads, ffn 352, ctx 128,
untied, 8 sequences a step), both with the 32,000-token vocabulary. The engines:
target/release/examples/train_speed, and tools/train_speed_reference.py with transformers'
"sdpa" and "eager" attention. The peak is target/release/examples/gemm_speed's one-core figure
times the thread count. Each figure is the median over rounds of each run's median step (wall
clock) or mean CPU time per step (user + system, which other jobs on a shared machine disturb
less; its FLOP rate is set against one core's peak); the load average is printed with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "target", "release", "examples")
SHAPES = [("stories15m", 4, True), ("tiny", 8, False)]
ENGINES = ["camelid", "pytorch-sdpa", "pytorch-eager"]


def command(engine: str, preset: str, seqs: int, tied: bool, a) -> list[str]:
    common = ["--preset", preset, "--threads", str(a.threads), "--seqs", str(seqs),
              "--steps", str(a.steps)] + (["--tied"] if tied else [])
    if engine == "camelid":
        return [os.path.join(EXAMPLES, "train_speed")] + common
    attn = engine.split("-", 1)[1]
    return [sys.executable, os.path.join(ROOT, "tools", "train_speed_reference.py"),
            "--attn", attn] + common


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    for exe in ("train_speed", "gemm_speed"):
        if not os.path.exists(os.path.join(EXAMPLES, exe)):
            sys.exit(f"{exe}: not built (see this script's docstring)")

    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), "unknown CPU")
    print(f"machine: {model}, {os.cpu_count()} CPUs; load average before: {load()}")
    out = subprocess.run([os.path.join(EXAMPLES, "gemm_speed")], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"FMA peak \((\d+) lanes\): ([\d.]+) GFLOP/s per core", out)
    if not m:
        sys.exit("gemm_speed printed no FMA peak (a CPU without AVX2?)")
    peak = float(m.group(2)) * a.threads
    print(f"FMA peak: {m.group(2)} GFLOP/s per core ({m.group(1)} lanes), "
          f"{peak:.1f} at {a.threads} threads")

    runs: dict[tuple[str, str], list[dict]] = {}
    versions = ""
    for r in range(a.rounds):
        for preset, seqs, tied in SHAPES:
            order = ENGINES if r % 2 == 0 else ENGINES[::-1]
            for engine in order:
                res = subprocess.run(command(engine, preset, seqs, tied, a), capture_output=True,
                                     text=True)
                if res.returncode != 0:
                    sys.exit(f"{engine} {preset}: exit {res.returncode}\n{res.stderr}")
                line = json.loads(res.stdout.strip().splitlines()[-1])
                versions = line.get("versions", versions)
                runs.setdefault((preset, engine), []).append(line)
                print(f"round {r + 1} {preset:<10} {engine:<14} {line['tokens_per_s']:8.0f} "
                      f"tokens/s, {line['cpu_s_per_step']:.2f} CPU s/step, load {load()}",
                      flush=True)
    print(f"load average after: {load()}; {versions}\n")

    # Wall-clock figures against the peak of all threads; CPU-time figures (user + system time
    # of the process, which other jobs on a shared machine disturb less) against one core's.
    print("| shape | tokens/step | engine | tokens/s | step (ms) | GFLOP/s | of peak "
          "| tokens per CPU s | GFLOP per CPU s | of one core's peak | camelid × (wall, CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for preset, seqs, _ in SHAPES:
        wall = {e: statistics.median(x["tokens_per_s"] for x in runs[(preset, e)]) for e in ENGINES}
        cpu = {e: statistics.median(x["seqs"] * x["seq_len"] / x["cpu_s_per_step"]
                                    for x in runs[(preset, e)]) for e in ENGINES}
        for e in ENGINES:
            x = runs[(preset, e)]
            tokens = seqs * x[0]["seq_len"]
            flop_per_token = x[0]["flop_per_step"] / tokens
            step = statistics.median(v["median_s"] for v in x) * 1e3
            gflops = wall[e] * flop_per_token / 1e9
            gflop_cpu = cpu[e] * flop_per_token / 1e9
            ratio = "" if e == "camelid" else \
                f"{wall['camelid'] / wall[e]:.2f}, {cpu['camelid'] / cpu[e]:.2f}"
            print(f"| {preset} | {tokens} | {e} | {wall[e]:.0f} | {step:.0f} | {gflops:.1f} "
                  f"| {100 * gflops / peak:.0f}% | {cpu[e]:.0f} | {gflop_cpu:.1f} "
                  f"| {100 * gflop_cpu / (peak / a.threads):.0f}% | {ratio} |")

if __name__ == "__main__":
    main()
