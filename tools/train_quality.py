#!/usr/bin/env python3
"""Quality at equal time: `camelid train` and a PyTorch eager loop train the same model on the
same data and tokenizer for the same wall-clock time, side by side, each pinned to its own core
with one thread (`taskset -c 0` / `taskset -c 1`), then both are scored in validation bits per
byte on the same held-out windows.

What is shared:
- data and tokenizer: camelid's token shards (`camelid train`'s defaults: the Shakespeare text
  and the Llama 2 vocabulary, or --data/--tokenizer), which the PyTorch loop reads from the cache;
- model: the preset's config.json and camelid's initial weights, from a one-step run at a
  learning rate of 1e-30 (each update is far below half an ulp, so the weights stay as
  initialised), which transformers' LlamaForCausalLM loads;
- optimizer and schedule: AdamW (β 0.9/0.95, ε 1e-5, weight decay 0.1 on the projections),
  clipping at 1.0, linear warmup then cosine to 10% of the peak, the same batch (16 sequences,
  micro-batches of 8) and camelid's batch order (tools/train_loop_reference.py restates it);
- the score: the mean loss on the first min(64, n) validation windows, over ln 2 and the
  validation split's bytes per token (as camelid_train::Trainer::evaluate computes it), both
  models scored by the same PyTorch code, and camelid's own figure beside it (logged when its
  run reaches its last step).

Each engine's schedule spans the steps it can take in the time: a calibration (both engines
side by side for --calibrate seconds) measures each one's steps per second, and --steps is set
to fill the time; both also stop at the time limit, whatever the step.

Build, then run with a Python that has torch and transformers (about minutes + 4 minutes):
    cargo build --release -p camelid-cli
    python tools/train_quality.py [--minutes 20] [--preset tiny] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAMELID = ROOT / "target" / "release" / "camelid"
# camelid train's defaults (crates/camelid-cli/src/train.rs), passed explicitly to both.
SEQS, MICRO, LR, MIN_LR, WD, SEED, EVAL_SEQS = 16, 8, 2e-3, 0.1, 0.1, 0, 64


def shard_dir(cache: Path) -> Path:
    found = sorted(cache.rglob("shards.json"))
    if len(found) != 1:
        sys.exit(f"expected one shard folder under {cache}, found {len(found)}")
    return found[0].parent


def camelid_args(a, out: Path, steps: int, lr: float, seconds: float | None) -> list[str]:
    args = [str(CAMELID), "train", "--preset", a.preset, "--threads", "1", "--steps", str(steps),
            "--lr", str(lr), "--min-lr-ratio", str(MIN_LR), "--micro-batch", str(MICRO),
            "--weight-decay", str(WD), "--seed", str(SEED), "--eval-every", "1000000000",
            "--out", str(out)]
    args += [x for d in a.data for x in ("--data", d)]
    if a.tokenizer:
        args += ["--tokenizer", a.tokenizer]
    if seconds is not None:
        args += ["--max-time", f"{int(seconds)}s"]
    return args


# ---------------------------------------------------------------------------------------------
# The PyTorch side (run as `train_quality.py torch ...` on its own core).

def load_split(shards: Path, split: str):
    import numpy as np

    info = json.loads((shards / "shards.json").read_text())
    dtype = np.uint16 if info["width"] == 2 else np.uint32
    return np.fromfile(shards / f"{split}.bin", dtype=dtype).astype(np.int64), info


def evaluate(model, val, ctx: int, bytes_per_token: float) -> tuple[float, float]:
    """camelid's evaluation: mean loss over the first min(64, n) windows, bits per byte."""
    import torch
    import torch.nn.functional as F

    n = max(1, min(EVAL_SEQS, (len(val) - 1) // ctx))
    total = 0.0
    model.eval()
    with torch.no_grad():
        for s in range(0, n, MICRO):
            k = min(MICRO, n - s)
            w = torch.stack([torch.from_numpy(val[(s + j) * ctx:(s + j) * ctx + ctx + 1])
                             for j in range(k)])
            logits = model(input_ids=w[:, :-1], use_cache=False).logits
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     w[:, 1:].reshape(-1)).item() * k
    model.train()
    loss = total / n
    return loss, loss / math.log(2) / bytes_per_token


def torch_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True, help="a camelid checkpoint folder (config + weights)")
    ap.add_argument("--shards", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--score", action="store_true", help="only score --init")
    a = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    sys.path.insert(0, str(ROOT / "tools"))
    from train_loop_reference import lr_factor, permutation

    torch.set_num_threads(1)
    shards = Path(a.shards)
    train, info = load_split(shards, "train")
    val, _ = load_split(shards, "val")
    bpt = info["val_bytes"] / max(1, info["val_tokens"] - 1)
    model = LlamaForCausalLM.from_pretrained(a.init, dtype=torch.float32,
                                             attn_implementation="sdpa").train()
    ctx = model.config.max_position_embeddings
    if a.score:
        loss, bpb = evaluate(model, val, ctx, bpt)
        Path(a.out).write_text(json.dumps({"val_loss": loss, "val_bpb": bpb}) + "\n")
        return
    warmup = min(100, a.steps // 10)  # camelid train's default
    decayed = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    plain = [p for n, p in model.named_parameters()
             if not (p.dim() == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": WD},
                             {"params": plain, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, a.steps, MIN_LR))
    n_windows = (len(train) - 1) // ctx
    epoch, cursor, order = 0, 0, permutation(n_windows, SEED, 0)

    def window():
        nonlocal epoch, cursor, order
        if cursor >= n_windows:
            epoch, cursor = epoch + 1, 0
            order = permutation(n_windows, SEED, epoch)
        w = order[cursor]
        cursor += 1
        return torch.from_numpy(train[w * ctx:w * ctx + ctx + 1])

    t0 = time.perf_counter()
    step, losses = 0, []
    while step < a.steps and time.perf_counter() - t0 < a.seconds:
        opt.zero_grad(set_to_none=False)
        loss_sum = 0.0
        for _ in range(SEQS // MICRO):
            w = torch.stack([window() for _ in range(MICRO)])
            logits = model(input_ids=w[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
            (loss / (SEQS // MICRO)).backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss_sum / (SEQS // MICRO))
    elapsed = time.perf_counter() - t0
    val_loss, bpb = evaluate(model, val, ctx, bpt)
    import transformers
    Path(a.out).write_text(json.dumps({
        "engine": f"pytorch {torch.__version__}, transformers {transformers.__version__}, sdpa",
        "steps": step, "steps_planned": a.steps, "elapsed_s": elapsed,
        "tokens_per_s": step * SEQS * ctx / elapsed, "last_loss": losses[-1] if losses else None,
        "val_loss": val_loss, "val_bpb": bpb}) + "\n")


# ---------------------------------------------------------------------------------------------
# The driver.

def side_by_side(a, work: Path, tag: str, camelid_steps: int, torch_steps: int, seconds: float,
                 init: Path, shards: Path, env) -> tuple[dict, dict]:
    """Both engines at once, camelid on core 0 and PyTorch on core 1."""
    out = work / f"camelid-{tag}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun's (camelid train wants a new folder)
    cam = subprocess.Popen(["taskset", "-c", "0"] + camelid_args(a, out, camelid_steps, LR, seconds),
                           env=env, stdout=subprocess.DEVNULL, stderr=open(work / f"camelid-{tag}.log", "w"))
    tout = work / f"torch-{tag}.json"
    tor = subprocess.Popen(["taskset", "-c", "1", sys.executable, __file__, "torch", "--init", str(init),
                            "--shards", str(shards), "--steps", str(torch_steps),
                            "--seconds", str(seconds), "--out", str(tout)],
                           stdout=subprocess.DEVNULL, stderr=open(work / f"torch-{tag}.log", "w"))
    for p, name in [(cam, "camelid"), (tor, "pytorch")]:
        if p.wait() != 0:
            sys.exit(f"{name} ({tag}) failed: see {work}/{name if name == 'camelid' else 'torch'}-{tag}.log")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line]
    evals = [r for r in log if "val_bpb" in r]
    last = log[-1]
    ctx = json.loads((init / "config.json").read_text())["max_position_embeddings"]
    c = {"steps": last["step"], "elapsed_s": last["elapsed_s"],
         "tokens_per_s": last["step"] * SEQS * ctx / last["elapsed_s"],
         "last_loss": last["loss"], "val_loss": evals[-1]["val_loss"] if evals else None,
         "val_bpb": evals[-1]["val_bpb"] if evals else None, "out": out}
    return c, json.loads(tout.read_text())


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "torch":
        return torch_main(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--calibrate", type=float, default=90, help="seconds")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--tokenizer")
    ap.add_argument("--work", default="train-quality")
    a = ap.parse_args()
    if not CAMELID.exists():
        sys.exit(f"{CAMELID}: build it first (cargo build --release -p camelid-cli)")
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CAMELID_DATA_CACHE=str(work / "cache"))
    print(f"load average at start: {load()}", flush=True)

    init = work / "init"
    if not (init / "model.safetensors").exists():
        subprocess.run(camelid_args(a, init, 1, 1e-30, None), env=env, check=True,
                       stdout=subprocess.DEVNULL)
    shards = shard_dir(work / "cache")

    cal_c, cal_t = side_by_side(a, work, "calibration", 1_000_000, 1_000_000, a.calibrate, init,
                                shards, env)
    seconds = a.minutes * 60
    # Steps in the time at the calibrated rates, less 3% for the margin of a shared machine.
    c_steps = max(10, int(cal_c["steps"] / cal_c["elapsed_s"] * seconds * 0.97))
    t_steps = max(10, int(cal_t["steps"] / cal_t["elapsed_s"] * seconds * 0.97))
    print(f"calibration ({a.calibrate:.0f} s): camelid {cal_c['steps']} steps, PyTorch "
          f"{cal_t['steps']} steps; schedules of {c_steps} and {t_steps} steps; load {load()}",
          flush=True)

    c, t = side_by_side(a, work, "run", c_steps, t_steps, seconds, init, shards, env)
    check = work / "camelid-scored-by-torch.json"
    subprocess.run([sys.executable, __file__, "torch", "--init", str(c["out"]), "--shards", str(shards),
                    "--steps", "0", "--seconds", "0", "--out", str(check), "--score"], check=True)
    cross = json.loads(check.read_text())
    own = f"{c['val_bpb']:.4f}" if c["val_bpb"] is not None else "(stopped by time, no eval)"
    print(f"load average at the end: {load()}; {t['engine']}\n")
    print("| engine (1 core, 1 thread) | steps (of its schedule) | seconds | tokens/s "
          "| last train loss | val loss | val bits/byte | its own val bits/byte |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| camelid | {c['steps']} ({c_steps}) | {c['elapsed_s']:.0f} | {c['tokens_per_s']:.0f} "
          f"| {c['last_loss']:.3f} | {cross['val_loss']:.4f} | {cross['val_bpb']:.4f} | {own} |")
    print(f"| PyTorch eager | {t['steps']} ({t_steps}) | {t['elapsed_s']:.0f} | "
          f"{t['tokens_per_s']:.0f} | {t['last_loss']:.3f} | {t['val_loss']:.4f} | "
          f"{t['val_bpb']:.4f} | {t['val_bpb']:.4f} |")
    print("\n(val columns: both models scored by the same PyTorch code on the same windows)")

if __name__ == "__main__":
    main()
