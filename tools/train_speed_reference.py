#!/usr/bin/env python3
"""PyTorch eager training throughput on llama2.c's stories15M shape, the twin of camelid's
`cargo run --release -p camelid-train --example train_speed`.

Same shape (dim 288, 6 layers, 6 heads, ffn 768, vocab 32000, tied, ctx 256), same work per
step: forward, mean cross-entropy, backward into zeroed gradients, no optimizer; f32 on the
CPU with torch.set_num_threads(THREADS). Prints the median step time and tokens/s, and the CPU time per step (less disturbed than the
wall clock on a machine shared with other jobs).

    ~/.cache/camelid-peer/venv/bin/python tools/train_speed_reference.py [threads] [seqs] [steps] [attn]

attn is transformers' attention implementation: "sdpa" (default, fused) or "eager".
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    seqs = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    attn = sys.argv[4] if len(sys.argv) > 4 else "sdpa"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    seq_len, vocab = 256, 32000
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=288, intermediate_size=768, num_hidden_layers=6,
        num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True, attn_implementation=attn,
    )
    model = LlamaForCausalLM(config).float().train()
    inputs = torch.randint(0, vocab, (seqs, seq_len))
    targets = torch.randint(0, vocab, (seqs, seq_len))

    def step() -> float:
        model.zero_grad(set_to_none=False)
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
        loss.backward()
        return loss.item()

    loss = step()
    times = []
    cpu0 = time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / steps
    times.sort()
    median = times[len(times) // 2]
    n = seqs * seq_len
    print(f"pytorch {torch.__version__} {attn}, {threads} threads, {seqs}x{seq_len} tokens: "
          f"loss {loss:.4f}, median step {median * 1e3:.1f} ms (min {times[0] * 1e3:.1f}), "
          f"{n / median:.0f} tokens/s; {cpu:.2f} CPU s/step, {n / cpu:.0f} tokens per CPU second")


if __name__ == "__main__":
    main()
