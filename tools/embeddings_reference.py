#!/usr/bin/env python3
"""Reference embeddings of the tiny models -> testdata/embeddings/tiny.json.

For every model of testdata/tiny/manifest.json, transformers (float32, eager attention) runs
`LlamaModel` on its float32 safetensors (`hf-f32/`) for a few token sequences cut from the
manifest's fixed sequence, and takes `last_hidden_state` (the residual stream after the final
RMSNorm). Each sequence's states are pooled three ways (the mean over its tokens, its last
token, its first token: sentence-transformers' and llama.cpp's `mean`/`last`/`cls`) and scaled
to unit L2 norm. Token ids are given explicitly, so no tokenizer plays a part.

Run it with the peer's venv (see tools/README.md):
    $CAMELID_PEER/venv/bin/python tools/embeddings_reference.py

The output is deterministic (same inputs, CPU float32; values rounded to 8 significant
digits). camelid's test (crates/camelid-model/tests/model.rs, `embeddings_match_transformers`)
requires a cosine distance of at most 1e-4 to each vector.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "testdata/tiny"
OUT = REPO / "testdata/embeddings/tiny.json"


def inputs(tokens: list[int]) -> list[list[int]]:
    """A single token, a short and a longer cut, and the whole sequence (some of them do not
    start with BOS: the pooling must not depend on it)."""
    return [tokens[:1], tokens[:7], tokens[5:40], tokens]


def pooled(hidden: torch.Tensor) -> dict[str, list[float]]:
    """hidden: [n, d] float32 -> the three poolings, each L2-normalised (float64 for the sums)."""
    h = hidden.double()
    out = {"mean": h.mean(dim=0), "last": h[-1], "cls": h[0]}
    return {k: [float(f"{x:.8g}") for x in (v / v.norm()).tolist()] for k, v in out.items()}


def main():
    torch.manual_seed(0)
    manifest = json.loads((TINY / "manifest.json").read_text())
    models = []
    for m in manifest["models"]:
        rel = m["files"]["st-f32"]
        lm = AutoModelForCausalLM.from_pretrained(
            TINY / rel, torch_dtype=torch.float32, attn_implementation="eager"
        )
        lm.eval()
        seqs = inputs(m["tokens"])
        vecs = []
        with torch.no_grad():
            for ids in seqs:
                # lm.model is the LlamaModel under the LM head; its last_hidden_state is after
                # the final norm.
                out = lm.model(input_ids=torch.tensor([ids]))
                vecs.append(pooled(out.last_hidden_state[0]))
        models.append({"name": m["name"], "file": rel, "inputs": seqs, "embeddings": vecs})
        print(f"{m['name']:>16}: {len(seqs)} inputs, d = {len(vecs[0]['mean'])}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        {"generator": "tools/embeddings_reference.py", "models": models}, separators=(",", ":")
    )
    OUT.write_text(text + "\n")
    print(f"wrote {OUT.relative_to(REPO)} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
