#!/usr/bin/env python3
"""Reference losses and gradients of tiny Llama models -> testdata/train/<name>.safetensors.

For every configuration in CONFIGS this script
  1. builds a transformers LlamaForCausalLM in float32 with eager attention and gives every
     tensor seeded random values (norm gains too, around 1), rounded to float16 so that the
     fixture can store them in half the space and both sides start from the same floats;
  2. makes a batch of 2 sequences of 16 tokens packed from short documents (BOS=1 and EOS=2
     inside the sequences), with the next token as target and some targets ignored (-100);
  3. takes the mean cross-entropy over the non-ignored targets (torch.nn.functional.cross_entropy
     on the logits; no shift inside the model: targets are given per position) and its gradient
     for every parameter with loss.backward(), all in float32 on the CPU;
  4. writes one safetensors file per configuration with
       param.<hf name>  F16   the weights (exact in float16)
       grad.<hf name>   F32   d(mean loss)/d(weight)
       inputs, targets  I32   [2, 16]; ignored targets are -1 (camelid's IGNORE)
       loss             F32   [1]
     and in the metadata "config", a JSON object with the model shape in camelid's terms.

Run from the repository root with the peer's venv (see tools/README.md):
    ~/.cache/camelid-peer/venv/bin/python tools/train_grad_reference.py
Deterministic: a second run writes byte-identical files.

The configurations cover MHA, GQA 4:1 and MQA; tied and untied output; RMSNorm eps 1e-6 and
1e-5; plain RoPE and Llama 3.1 "llama3" scaling (theta and original context chosen so the
frequencies fall in all three of its regimes); a head_dim that is not hidden/heads; sizes that
are not multiples of 16.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = Path(__file__).resolve().parent.parent / "testdata" / "train"
N_SEQS, SEQ_LEN = 2, 16
BOS, EOS = 1, 2

CONFIGS = {
    # LLaMA 1 style: multi-head attention, untied, eps 1e-6.
    "mha-untied": dict(
        vocab=64, hidden=32, heads=4, kv_heads=4, head_dim=8, ffn=48, eps=1e-6,
        theta=10000.0, rope=None, tied=False,
    ),
    # Llama 3.2 style: GQA 4:1, tied, eps 1e-5, llama3 RoPE scaling; q_dim 64 ≠ hidden 32.
    "gqa4-tied-llama3": dict(
        vocab=64, hidden=32, heads=8, kv_heads=2, head_dim=8, ffn=48, eps=1e-5,
        theta=500.0,
        rope=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                  original_max_position_embeddings=64),
        tied=True,
    ),
    # MQA, untied, eps 1e-5, odd sizes (hidden 40, head_dim 10, ffn 56, vocab 70).
    "mqa-untied": dict(
        vocab=70, hidden=40, heads=4, kv_heads=1, head_dim=10, ffn=56, eps=1e-5,
        theta=10000.0, rope=None, tied=False,
    ),
}


def hf_config(c: dict) -> LlamaConfig:
    rope = {"rope_type": "default", "rope_theta": c["theta"]}
    if c["rope"] is not None:
        rope = {"rope_type": "llama3", "rope_theta": c["theta"], **c["rope"]}
    return LlamaConfig(
        vocab_size=c["vocab"],
        hidden_size=c["hidden"],
        intermediate_size=c["ffn"],
        num_hidden_layers=2,
        num_attention_heads=c["heads"],
        num_key_value_heads=c["kv_heads"],
        head_dim=c["head_dim"],
        max_position_embeddings=128,
        rms_norm_eps=c["eps"],
        rope_parameters=rope,
        tie_word_embeddings=c["tied"],
        bos_token_id=BOS,
        eos_token_id=EOS,
        attn_implementation="eager",
    )


def randomize(model: LlamaForCausalLM, gen: torch.Generator) -> None:
    """Weights of a size that keeps activations and gradients of order one (std 1/sqrt(fan_in)
    for projections, 1 for the embedding, 1 ± 0.3 for norm gains), rounded to float16."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                v = 1.0 + 0.3 * torch.randn(p.shape, generator=gen)
            elif "embed_tokens" in name:
                v = torch.randn(p.shape, generator=gen)
            else:
                v = torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            p.copy_(v.half().float())


def make_batch(vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents of 3..8 tokens, each BOS ... EOS, packed back to back; targets are the next
    token of the stream. Ignored: the target after every EOS (the next document's BOS cannot
    be predicted) and two more positions."""
    n = N_SEQS * SEQ_LEN + 1
    stream: list[int] = []
    while len(stream) < n:
        k = int(torch.randint(3, 9, (1,), generator=gen))
        stream += [BOS] + torch.randint(3, vocab, (k,), generator=gen).tolist() + [EOS]
    stream = stream[:n]
    inputs = torch.tensor(stream[:-1]).view(N_SEQS, SEQ_LEN)
    targets = torch.tensor(stream[1:]).view(N_SEQS, SEQ_LEN).clone()
    targets[inputs == EOS] = -100
    targets[0, 5] = -100
    targets[1, 11] = -100
    return inputs, targets


def main() -> None:
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, c) in enumerate(CONFIGS.items()):
        gen = torch.Generator().manual_seed(1000 + i)
        model = LlamaForCausalLM(hf_config(c)).float().eval()
        randomize(model, gen)
        inputs, targets = make_batch(c["vocab"], gen)
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, c["vocab"]), targets.reshape(-1),
                               ignore_index=-100, reduction="mean")
        loss.backward()
        tensors = {}
        for pname, p in model.named_parameters():
            tensors[f"param.{pname}"] = p.detach().half().contiguous()
            tensors[f"grad.{pname}"] = p.grad.detach().float().contiguous()
        tensors["inputs"] = inputs.to(torch.int32).contiguous()
        tensors["targets"] = torch.where(targets < 0, -1, targets).to(torch.int32).contiguous()
        tensors["loss"] = loss.detach().reshape(1).float()
        meta = {**c, "layers": 2, "max_position_embeddings": 128}
        save_file(tensors, OUT / f"{name}.safetensors", metadata={"config": json.dumps(meta)})
        gmax = max(float(p.grad.abs().max()) for p in model.parameters())
        print(f"{name}: loss {loss.item():.6f}, max |grad| {gmax:.4f}, "
              f"{sum(p.numel() for p in model.parameters())} params")


if __name__ == "__main__":
    main()
