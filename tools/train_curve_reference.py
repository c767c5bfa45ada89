"""Reference loss curve for camelid-train's 200-step test: transformers' LlamaForCausalLM (f32)
trained by torch.optim.AdamW + clip_grad_norm_ + the warmup/cosine LambdaLR for 200 steps on the
tiny corpus's training tokens in camelid's batch order, from given initial weights.

The model set-up, batch order, schedule and parameter groups are those of
tools/train_loop_reference.py (its `train`, imported; its docstring restates camelid's rules).
This run is longer (200 steps, many epochs over the tiny corpus) and keeps only what the test
compares: the initial weights and the per-step learning rate, loss and gradient norm.

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_loop_reference import train  # noqa: E402

OUT = os.path.join("testdata", "train", "curve_reference")

SETTINGS = dict(lr=5e-3, min_lr_ratio=0.1, warmup=10, steps=200, ctx=8, seqs_per_step=4,
                micro_seqs=2, seed=11, max_grad_norm=1.0, weight_decay=0.1)
MODEL = dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8,
             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)


def main():
    S = SETTINGS
    init, _, steps = train(S, MODEL, 2)
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
