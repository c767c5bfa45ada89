#!/usr/bin/env python3
"""PyTorch eager training throughput, the twin of camelid's
`cargo run --release -p camelid-train --example train_speed`: the same shape (a preset of
crates/camelid-train/src/shape.rs with the 32,000-token vocabulary), the same batch (seqs x the
preset's ctx, random tokens) and the same work per step: zeroed gradients, forward, mean
cross-entropy, backward, clip_grad_norm_(1.0), torch.optim.AdamW (the LLaMA settings, weight
decay on the matrices only) with its default implementation; transformers' LlamaForCausalLM in
f32 on the CPU with torch.set_num_threads(threads). Prints one JSON line like the example's.

    python tools/train_speed_reference.py [--preset stories15m] [--threads 2] [--seqs 4]
        [--steps 5] [--tied] [--attn sdpa|eager]

--attn is transformers' attention implementation: "sdpa" (default; PyTorch's fused
scaled_dot_product_attention, still eager mode) or "eager" (matmul + softmax + matmul).
FLOPs per step: 3 x the forward pass, 2*N_mm + 4*layers*pos*q_dim per token at position pos
(camelid_model::Config::flops_per_token).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

# (dim, layers, heads, ffn, ctx) of camelid's presets (crates/camelid-train/src/shape.rs).
PRESETS = {
    "tiny": (128, 4, 4, 352, 128),
    "small": (256, 6, 8, 704, 256),
    "stories15m": (288, 6, 6, 768, 256),
}
VOCAB = 32000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="stories15m", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dim, layers, heads, ffn, ctx = PRESETS[a.preset]
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=dim, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=ctx,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=a.tied,
        attention_bias=False, mlp_bias=False, attn_implementation=a.attn,
    )
    model = LlamaForCausalLM(config).float().train()
    decayed = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    plain = [p for n, p in model.named_parameters()
             if not (p.dim() == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1},
                             {"params": plain, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-5)
    inputs = torch.randint(0, VOCAB, (a.seqs, ctx))
    targets = torch.randint(0, VOCAB, (a.seqs, ctx))

    def step() -> float:
        opt.zero_grad(set_to_none=False)
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    # One warm-up step (allocations, lazily created optimizer state), then the timed ones.
    first_loss = step()
    times = []
    cpu0 = time.process_time()
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / a.steps
    times.sort()
    median = times[len(times) // 2]
    n_mm = layers * (4 * dim * dim + 3 * dim * ffn) + VOCAB * dim
    flop = 3 * a.seqs * sum(2 * n_mm + 4 * layers * pos * dim for pos in range(ctx))
    import transformers
    print(json.dumps({
        "engine": f"pytorch-{a.attn}", "versions": f"torch {torch.__version__}, "
        f"transformers {transformers.__version__}",
        "preset": a.preset, "dim": dim, "layers": layers, "heads": heads, "ffn": ffn,
        "vocab": VOCAB, "tied": a.tied, "threads": a.threads, "seqs": a.seqs, "seq_len": ctx,
        "steps": a.steps, "first_loss": first_loss,
        "median_s": median, "min_s": times[0], "cpu_s_per_step": cpu,
        "tokens_per_s": a.seqs * ctx / median, "flop_per_step": flop,
        "gflop_per_s": flop / median / 1e9,
    }))


if __name__ == "__main__":
    main()
