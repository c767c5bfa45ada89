"""Reference for camelid-train's optimizer: 20 steps of torch.optim.AdamW +
torch.nn.utils.clip_grad_norm_ + a LambdaLR warmup-then-cosine schedule, on the tensors of a tiny
Llama layout with given gradients, written to testdata/train/optim_reference.json.

The schedule (camelid `Schedule::lr`, update s counted from 0, W warmup, T total, r floor ratio):
    s < W:  (s + 1) / W
    s >= W: r + (1 - r) * (1 + cos(pi * min(1, (s - W) / max(1, T - 1 - W)))) / 2
as a LambdaLR factor on the peak, stepped after each optimizer step.

Weight decay 0.1 goes to the projections only (a parameter group of its own), none to the
embedding and norm gains, as camelid's default. Steps 0-19 get gradients of alternating scales
so that clip_grad_norm_(max_norm=1.0) clips at some steps and not at others (recorded per step).

Run from the repository root with a Python that has torch (CPU is enough):
    python tools/train_optim_reference.py
Deterministic: a second run writes the same bytes.
"""

import json
import math
import os

import torch

OUT = os.path.join("testdata", "train", "optim_reference.json")

# The tensors of a Llama of vocab 6, d_model 4, 1 layer, 2 heads of 2, 1 kv head, FFN 6, untied,
# in camelid's `Params` order (Hugging Face names).
V, D, Q, KV, F = 6, 4, 4, 2, 6
LAYOUT = [
    ("model.embed_tokens.weight", [V, D], "embedding"),
    ("model.layers.0.input_layernorm.weight", [D], "norm"),
    ("model.layers.0.self_attn.q_proj.weight", [Q, D], "matrix"),
    ("model.layers.0.self_attn.k_proj.weight", [KV, D], "matrix"),
    ("model.layers.0.self_attn.v_proj.weight", [KV, D], "matrix"),
    ("model.layers.0.self_attn.o_proj.weight", [D, Q], "residual_out"),
    ("model.layers.0.post_attention_layernorm.weight", [D], "norm"),
    ("model.layers.0.mlp.gate_proj.weight", [F, D], "matrix"),
    ("model.layers.0.mlp.up_proj.weight", [F, D], "matrix"),
    ("model.layers.0.mlp.down_proj.weight", [D, F], "residual_out"),
    ("model.norm.weight", [D], "norm"),
    ("lm_head.weight", [V, D], "matrix"),
]

PEAK, WARMUP, TOTAL, MIN_RATIO = 1e-2, 5, 20, 0.1
BETAS, EPS, WD, MAX_NORM = (0.9, 0.95), 1e-5, 0.1, 1.0
# Gradient scale per step: large ones (global norm well over 1) clip, small ones do not.
SCALES = [0.01, 0.5, 0.02, 2.0, 0.05, 0.03, 1.0, 0.01, 0.2, 0.04,
          3.0, 0.02, 0.01, 0.5, 0.03, 0.06, 0.02, 1.5, 0.01, 0.04]


def factor(s):
    if s < WARMUP:
        return (s + 1) / WARMUP
    span = max(1, TOTAL - 1 - WARMUP)
    progress = min(1.0, (s - WARMUP) / span)
    return MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def main():
    gen = torch.Generator().manual_seed(1234)
    params = []
    for name, shape, kind in LAYOUT:
        if kind == "norm":
            init = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            init = 0.5 * torch.randn(shape, generator=gen)
        params.append(torch.nn.Parameter(init.to(torch.float32)))
    initial = [flat(p) for p in params]

    decayed = [p for p, (_, _, k) in zip(params, LAYOUT) if k in ("matrix", "residual_out")]
    plain = [p for p, (_, _, k) in zip(params, LAYOUT) if k not in ("matrix", "residual_out")]
    opt = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": WD}, {"params": plain, "weight_decay": 0.0}],
        lr=PEAK, betas=BETAS, eps=EPS, foreach=False,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)

    steps = []
    for s in range(TOTAL):
        grads = [SCALES[s] * torch.randn(p.shape, generator=gen) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        lr = opt.param_groups[0]["lr"]
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        opt.step()
        sched.step()
        steps.append({
            "lr": lr,
            "grad_norm": float(norm),
            "clipped": bool(float(norm) > MAX_NORM),
            "grads": [flat(g) for g in grads],
        })

    out = {
        "source": "torch " + torch.__version__ + ": AdamW(foreach=False) + clip_grad_norm_ + LambdaLR",
        "peak": PEAK, "warmup": WARMUP, "total": TOTAL, "min_ratio": MIN_RATIO,
        "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WD,
        "max_norm": MAX_NORM,
        "tensors": [{"name": n, "shape": s, "kind": k} for n, s, k in LAYOUT],
        "initial": initial,
        "steps": steps,
        "final": [flat(p) for p in params],
        "exp_avg": [flat(opt.state[p]["exp_avg"]) for p in params],
        "exp_avg_sq": [flat(opt.state[p]["exp_avg_sq"]) for p in params],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    n_clipped = sum(st["clipped"] for st in steps)
    print(f"wrote {OUT}: {TOTAL} steps, {n_clipped} clipped")


if __name__ == "__main__":
    main()
