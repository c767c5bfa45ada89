"""Reference loss curve for camelid-train's 200-step test: transformers' LlamaForCausalLM (f32)
trained by torch.optim.AdamW + clip_grad_norm_ + the warmup/cosine LambdaLR for 200 steps on the
tiny corpus's training tokens in camelid's batch order, from given initial weights.

The batch order, the schedule and the parameter groups are those of tools/train_loop_reference.py
(imported from it; its docstring restates camelid's rules). This run is longer (200 steps, many
epochs over the tiny corpus) and keeps only what the test compares: the initial weights and the
per-step learning rate, loss and gradient norm.

Writes testdata/train/curve_reference.safetensors (the initial weights, Hugging Face names) and
testdata/train/curve_reference.json (settings, model, per-step lr, loss, grad norm).

Run from the repository root with a Python that has torch, transformers and safetensors:
    python tools/train_curve_reference.py
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_loop_reference import lr_factor, permutation  # noqa: E402

DATA = os.path.join("testdata", "train", "data_reference.json")
OUT = os.path.join("testdata", "train", "curve_reference")

SETTINGS = dict(lr=5e-3, min_lr_ratio=0.1, warmup=10, steps=200, ctx=8, seqs_per_step=4,
                micro_seqs=2, seed=11, max_grad_norm=1.0, weight_decay=0.1)
MODEL = dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8,
             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)


def main():
    S = SETTINGS
    stream = json.load(open(DATA))["train_tokens"]
    ctx = S["ctx"]
    n_windows = (len(stream) - 1) // ctx

    torch.manual_seed(2)
    config = LlamaConfig(**MODEL, attention_bias=False, mlp_bias=False, hidden_act="silu")
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
    for _ in range(S["steps"]):
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

    save_file(init, OUT + ".safetensors", metadata={"format": "pt"})
    import transformers
    with open(OUT + ".json", "w") as f:
        json.dump({"source": f"transformers {transformers.__version__}, torch {torch.__version__}",
                   "settings": S, "model": MODEL, "steps": steps}, f)
        f.write("\n")
    print(f"wrote {OUT}.json/.safetensors: losses {steps[0]['loss']:.4f} -> "
          f"{steps[99]['loss']:.4f} (step 100) -> {steps[-1]['loss']:.4f}")


if __name__ == "__main__":
    main()
