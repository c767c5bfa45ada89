#!/usr/bin/env python3
"""A real LoRA fine-tune of the default model, and PEFT's perplexity with it -> target/lora-smollm2/.

  1. Loads SmolLM2-135M-Instruct from the project's GGUF (assets/smollm2, Q4_1) into
     transformers' LlamaForCausalLM: every tensor dequantized with gguf-py, Wq/Wk rows put back
     in Hugging Face's order (make_tiny_models.read_gguf), float32.
  2. Trains a PEFT LoRA adapter (r 16, alpha 32, every linear layer of every block) for STEPS
     AdamW steps on Macbeth (assets/corpus/macbeth_gut.txt), windows of SEQ tokens, and saves
     it with `save_pretrained` (adapter_config.json + adapter_model.safetensors) and, through
     llama.cpp's convert_lora_to_gguf.py, as a GGUF adapter (adapter.gguf).
  3. Computes the perplexity of Hamlet (assets/corpus/hamlet_gut.txt) as llama-perplexity does
     (chunks of CTX tokens, each scored on its second half, tokens from `camelid tokenize`), with
     and without the adapter, in float32, and writes them to ppl.json.

`camelid perplexity -m assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf -f
assets/corpus/hamlet_gut.txt --ctx CTX --chunks CHUNKS --precision exact --cache-type f32
[--lora target/lora-smollm2/adapter]` gives camelid's figures for the same text, and
`llama-perplexity ... --lora target/lora-smollm2/adapter.gguf` llama.cpp's (BENCHMARKS.md).

Run from the repository root with the peer's venv (torch, transformers, gguf-py, peft) and a
built camelid:
    $CAMELID_PEER/venv/bin/python tools/lora_smollm2.py [--peer DIR] [--camelid target/release/camelid]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models as tiny  # noqa: E402

REPO = tiny.REPO
GGUF = REPO / "assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = REPO / "target/lora-smollm2"
STEPS, SEQ, BATCH, LR, SEED = 40, 256, 2, 1e-3, 7
CTX, CHUNKS = 512, 8


def log(*a):
    print(*a, flush=True)


def smollm2():
    """LlamaForCausalLM holding the GGUF's weights, and its config as make_tiny_models names it."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    r = gguf.GGUFReader(str(GGUF))
    kv = {f.name: f.contents() for f in r.fields.values() if not f.name.startswith("tokenizer.")}
    d, heads, kv_heads = kv["llama.embedding_length"], kv["llama.attention.head_count"], kv["llama.attention.head_count_kv"]
    c = dict(heads=heads, kv_heads=kv_heads, tied=not any(t.name == "output.weight" for t in r.tensors))
    cfg = LlamaConfig(
        vocab_size=len(r.fields["tokenizer.ggml.tokens"].data), hidden_size=d,
        intermediate_size=kv["llama.feed_forward_length"], num_hidden_layers=kv["llama.block_count"],
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=d // heads,
        max_position_embeddings=kv["llama.context_length"],
        rms_norm_eps=kv["llama.attention.layer_norm_rms_epsilon"], hidden_act="silu",
        tie_word_embeddings=c["tied"], attention_bias=False, mlp_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": kv["llama.rope.freq_base"]})
    cfg._attn_implementation = "eager"
    cfg.architectures = ["LlamaForCausalLM"]  # what llama.cpp's converter detects the model by
    state, _, _ = tiny.read_gguf(GGUF, c)
    model = LlamaForCausalLM(cfg).float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    return model


def tokens_of(camelid: Path, text: Path) -> list[int]:
    out = subprocess.run([str(camelid), "tokenize", "-m", str(GGUF), "-f", str(text), "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def perplexity(model, tokens: list[int]) -> float:
    """llama-perplexity's figure: chunk i of CTX tokens, NLL of tokens CTX/2+1 .. CTX-1 of each."""
    nll, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(CHUNKS):
            chunk = torch.tensor([tokens[i * CTX:(i + 1) * CTX]])
            logp = torch.log_softmax(model(input_ids=chunk, use_cache=False).logits[0].double(), -1)
            first = CTX // 2
            for j in range(first, CTX - 1):
                nll -= float(logp[j, chunk[0, j + 1]])
                n += 1
    return math.exp(nll / n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    ap.add_argument("--camelid", type=Path, default=REPO / "target/release/camelid")
    args = ap.parse_args()
    sys.path.insert(0, str(args.peer / "llama.cpp/gguf-py"))
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(SEED)
    torch.set_num_threads(os.cpu_count() or 1)
    train = tokens_of(args.camelid, REPO / "assets/corpus/macbeth_gut.txt")
    test = tokens_of(args.camelid, REPO / "assets/corpus/hamlet_gut.txt")
    assert len(test) >= CTX * CHUNKS, len(test)
    model = smollm2()
    base_ppl = perplexity(model, test)
    log(f"base: Hamlet perplexity {base_ppl:.4f} ({CHUNKS} chunks of {CTX})")

    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    rng = np.random.default_rng(SEED)
    model.train()
    t0 = time.time()
    for step in range(STEPS):
        starts = rng.integers(0, len(train) - SEQ - 1, size=BATCH)
        batch = torch.tensor(np.stack([train[s:s + SEQ] for s in starts]))
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == STEPS - 1:
            log(f"step {step}: loss {loss.item():.4f} ({time.time() - t0:.0f} s)")
    adapter = OUT / "adapter"
    model.save_pretrained(adapter)
    # The same adapter as llama.cpp reads it: its converter wants the base's config.json.
    model.base_model.model.config.save_pretrained(OUT / "base-config")
    subprocess.run([sys.executable, str(args.peer / "llama.cpp/convert_lora_to_gguf.py"), "--base",
                    str(OUT / "base-config"), "--outtype", "f32", "--outfile", str(OUT / "adapter.gguf"),
                    str(adapter)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tuned_ppl = perplexity(model, test)
    log(f"adapter: Hamlet perplexity {tuned_ppl:.4f}")
    (OUT / "ppl.json").write_text(json.dumps(
        {"ctx": CTX, "chunks": CHUNKS, "base": base_ppl, "adapter": tuned_ppl, "steps": STEPS,
         "seq": SEQ, "batch": BATCH, "lr": LR, "r": 16, "lora_alpha": 32}, indent=1) + "\n")
    log(f"wrote {adapter} and {OUT / 'ppl.json'}")


if __name__ == "__main__":
    main()
