"""Reference for camelid-train's whole loop: 20 optimizer steps of transformers'
LlamaForCausalLM (f32) with torch.optim.AdamW + clip_grad_norm_ + the warmup/cosine LambdaLR,
on the tiny corpus's training tokens in camelid's batch order, from given initial weights.

Writes testdata/train/loop_reference.safetensors (the initial and final weights, `init.NAME` and
`final.NAME`) and testdata/train/loop_reference.json (settings, per-step lr, loss, grad norm).

The batch order is camelid's, restated from its documentation (crates/camelid-train/src/data.rs):
windows w of ctx + 1 tokens at stride ctx over the training stream; epoch e visits them in the
order of a Fisher-Yates shuffle (i from n-1 down to 1, j = (x * (i + 1)) >> 64) driven by
splitmix64 seeded with seed ^ (e * 0xD1B54A32D192ED03 mod 2^64). A step takes the next
seqs_per_step windows, in micro-batches of micro_seqs; the step's gradient is the mean of the
micro-batches' mean cross-entropy gradients, its loss the mean of their losses.

Run from the repository root with a Python that has torch, transformers and safetensors:
    python tools/train_loop_reference.py
"""

import json
import math
import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

DATA = os.path.join("testdata", "train", "data_reference.json")
OUT = os.path.join("testdata", "train", "loop_reference")
M64 = (1 << 64) - 1

SETTINGS = dict(lr=1e-2, min_lr_ratio=0.1, warmup=3, steps=20, ctx=8, seqs_per_step=4,
                micro_seqs=2, seed=7, max_grad_norm=1.0, weight_decay=0.1)
MODEL = dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8,
             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def permutation(n, seed, epoch):
    order = list(range(n))
    state = (seed ^ ((epoch * 0xD1B54A32D192ED03) & M64)) & M64
    for i in range(n - 1, 0, -1):
        state, x = splitmix64(state)
        j = (x * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    return order


def lr_factor(s, warmup, total, r):
    if s < warmup:
        return (s + 1) / warmup
    span = max(1, total - 1 - warmup)
    p = min(1.0, (s - warmup) / span)
    return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p))


def train(S, model_cfg, init_seed):
    """The loop both reference scripts run: the model of `model_cfg` made under
    torch.manual_seed(init_seed) (norm gains moved away from 1 so that their gradients matter),
    trained by settings `S` on the tiny corpus. Returns the initial state dict, the trained model
    and the per-step lr, loss and gradient norm."""
    stream = json.load(open(DATA))["train_tokens"]
    ctx = S["ctx"]
    n_windows = (len(stream) - 1) // ctx

    torch.manual_seed(init_seed)
    config = LlamaConfig(**model_cfg, attention_bias=False, mlp_bias=False, hidden_act="silu")
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn(p.shape))
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    decayed = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    plain = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": S["weight_decay"]},
                             {"params": plain, "weight_decay": 0.0}],
                            lr=S["lr"], betas=(0.9, 0.95), eps=1e-5, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, S["warmup"], S["steps"], S["min_lr_ratio"]))

    epoch, cursor, order = 0, 0, permutation(n_windows, S["seed"], 0)

    def next_window():
        nonlocal epoch, cursor, order
        if cursor >= n_windows:
            epoch, cursor = epoch + 1, 0
            order = permutation(n_windows, S["seed"], epoch)
        w = order[cursor]
        cursor += 1
        return stream[w * ctx: w * ctx + ctx + 1]

    steps = []
    n_micro = S["seqs_per_step"] // S["micro_seqs"]
    for s in range(S["steps"]):
        opt.zero_grad(set_to_none=False)
        lr = opt.param_groups[0]["lr"]
        losses = []
        for _ in range(n_micro):
            wins = torch.tensor([next_window() for _ in range(S["micro_seqs"])])
            inputs, targets = wins[:, :-1], wins[:, 1:]
            logits = model(input_ids=inputs).logits
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            (loss / n_micro).backward()
            losses.append(loss.item())
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), S["max_grad_norm"])
        opt.step()
        sched.step()
        steps.append({"lr": lr, "loss": sum(losses) / n_micro, "grad_norm": float(norm)})

    return init, model, steps


def main():
    S = SETTINGS
    init, model, steps = train(S, MODEL, 1)
    init = {"init." + k: v for k, v in init.items()}
    final = {"final." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file({**init, **final}, OUT + ".safetensors", metadata={"format": "pt"})
    import transformers
    with open(OUT + ".json", "w") as f:
        json.dump({"source": f"transformers {transformers.__version__}, torch {torch.__version__}",
                   "settings": S, "model": MODEL, "steps": steps}, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}.json/.safetensors: losses {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}")


if __name__ == "__main__":
    main()
