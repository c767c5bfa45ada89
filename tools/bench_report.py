#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from a tools/bench.sh results folder (standard library only).

    python3 tools/bench_report.py target/bench-results/<date>

Per file type: pp512 and tg128 of camelid and llama.cpp, mean ± sample standard deviation over
every repetition of every round; the ratio of the means; the decode ceiling, memory read
bandwidth (the best of membw's read tests) ÷ weight bytes read per token (every matrix once, the tied output matrix included;
the KV cache adds under 1% at tg128 and is left out); peak RSS of both processes against the
target file size + KV cache + 100 MiB.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from pathlib import Path

TYPES = ["f16", "q8_0", "q4_0", "q4_k_m"]
NAMES = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q4_K_M"}
MIB = 1 << 20


def samples(d: Path, engine: str, t: str, test: str):
    out, meta = [], None
    for f in sorted(d.glob(f"{engine}-{t}-*.json")):
        try:
            runs = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        for r in runs:
            name = r.get("test") or (f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}")
            if name == test:
                out.extend(r["samples_ts"])
                meta = r
    return out, meta


def peak_rss(d: Path, engine: str, t: str):
    vals = []
    for f in d.glob(f"{engine}-{t}-*.time"):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read_text())
        if m:
            vals.append(int(m.group(1)) * 1024)
    return max(vals) if vals else None


def fmt(xs):
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def ratio(a, b):
    if not a or not b:
        return "n/a"
    return f"{statistics.mean(a) / statistics.mean(b):.2f}×"


def main():
    d = Path(sys.argv[1])
    # membw ran before and after the rounds; a busy moment only lowers a figure, so keep the best.
    bw = {}
    for f in sorted(d.glob("membw*.txt")):
        for line in f.read_text().splitlines():
            m = re.match(r"(\w+) GB/s: ([\d.]+) ([\d.]+)", line)
            if m:
                best, mean = float(m.group(2)), float(m.group(3))
                if best > bw.get(m.group(1), (0, 0))[0]:
                    bw[m.group(1)] = (best, mean)
    # The better of the two read tests: a decode step reads many weight rows side by side.
    read_bw = max(bw["read"][0], bw.get("read8", (0, 0))[0]) * 1e9
    print("## Machine\n")
    print("```")
    print((d / "machine.txt").read_text().rstrip())
    for k, (best, mean) in bw.items():
        print(f"memory bandwidth, {k}: best {best:.1f} GB/s, mean {mean:.1f} GB/s")
    print("```\n")
    loads = [l.split() for l in (d / "load.txt").read_text().splitlines()] if (d / "load.txt").exists() else []
    if loads:
        one = [float(l[3]) for l in loads]
        print(f"1-minute load average before each run: min {min(one):.2f}, max {max(one):.2f} "
              f"(the benchmark's own {len(one)} runs keep it near the thread count).\n")

    rows_tg, rows_pp, rows_mem = [], [], []
    for t in TYPES:
        c_tg, meta = samples(d, "camelid", t, "tg128")
        l_tg, lmeta = samples(d, "llama", t, "tg128")
        c_pp, _ = samples(d, "camelid", t, "pp512")
        l_pp, _ = samples(d, "llama", t, "pp512")
        if meta is None and lmeta is None:
            continue
        size = meta["model_size"] if meta else lmeta["model_size"]
        ceiling = read_bw / size
        pct = lambda xs: f"{100 * statistics.mean(xs) / ceiling:.0f}%" if xs else "n/a"
        rows_tg.append(f"| {NAMES[t]} | {size / MIB:.0f} | {fmt(c_tg)} | {fmt(l_tg)} | {ratio(c_tg, l_tg)} "
                       f"| {ceiling:.1f} | {pct(c_tg)} / {pct(l_tg)} |")
        rows_pp.append(f"| {NAMES[t]} | {fmt(c_pp)} | {fmt(l_pp)} | {ratio(c_pp, l_pp)} |")
        c_rss, l_rss = peak_rss(d, "camelid", t), peak_rss(d, "llama", t)
        fname = meta["model_filename"] if meta else lmeta["model_filename"]
        fsize = os.path.getsize(fname) if os.path.exists(fname) else None
        kv = meta.get("kv_cache_bytes") if meta else None
        if fsize and kv is not None and c_rss:
            budget = fsize + kv + 100 * MIB
            ok = "yes" if c_rss <= budget else "NO"
            rows_mem.append(f"| {NAMES[t]} | {fsize / MIB:.0f} | {kv / MIB:.0f} | {budget / MIB:.0f} "
                            f"| {c_rss / MIB:.0f} | {ok} | {l_rss / MIB if l_rss else float('nan'):.0f} |")

    print("## Decode, tg128 (tokens/s)\n")
    print("| type | weights read per token (MiB) | camelid | llama.cpp | camelid ÷ llama.cpp "
          "| ceiling: read bandwidth ÷ weights (t/s) | share of ceiling camelid / llama.cpp |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows_tg))
    print("\n## Prompt, pp512 (tokens/s)\n")
    print("| type | camelid | llama.cpp | camelid ÷ llama.cpp |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows_pp))
    print("\n## Peak resident memory (MiB, /usr/bin/time -v, largest over the rounds)\n")
    print("| type | file | camelid KV cache (f32, 512 positions) | target: file + KV + 100 | camelid "
          "| within target | llama-bench |")
    print("|---|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows_mem))


if __name__ == "__main__":
    main()
