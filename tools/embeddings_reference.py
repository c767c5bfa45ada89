#!/usr/bin/env python3
"""Reference embeddings -> testdata/embeddings/tiny.json and testdata/embeddings/smollm2.json.

For every model of testdata/tiny/manifest.json, transformers (float32, eager attention) runs
`LlamaModel` on its float32 safetensors (`hf-f32/`) for a few token sequences cut from the
manifest's fixed sequence, and takes `last_hidden_state` (the residual stream after the final
RMSNorm). Each sequence's states are pooled three ways (the mean over its tokens, its last
token, its first token: sentence-transformers' and llama.cpp's `mean`/`last`/`cls`) and scaled
to unit L2 norm. Token ids are given explicitly, so no tokenizer plays a part.

The default model, SmolLM2-135M-Instruct Q4_1 (assets/, or --assets DIR), gets the same
treatment for a few prompts of testdata/smollm2/greedy.json (their token ids) and the mean and
last poolings: its GGUF tensors are dequantized with llama.cpp's gguf-py, mapped back to the
Hugging Face names and Wq/Wk row order (make_tiny_models.read_gguf), and run by transformers'
LlamaModel in float32. The server's test (crates/camelid-server/tests/server.rs) compares
`/v1/embeddings` with it.

Run it with the peer's venv (see tools/README.md):
    $CAMELID_PEER/venv/bin/python tools/embeddings_reference.py [--assets DIR]

The output is deterministic (same inputs, CPU float32; values rounded to 8 significant
digits). camelid's tests require a cosine distance of at most 1e-4 to each vector.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaModel

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "testdata/tiny"
OUT = REPO / "testdata/embeddings/tiny.json"
SMOLLM2_REL = Path("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
SMOLLM2_OUT = REPO / "testdata/embeddings/smollm2.json"
# Prompts of testdata/smollm2/greedy.json used as inputs, and one input that joins the first ten.
SMOLLM2_PROMPTS = [0, 3]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tiny_models import read_gguf  # noqa: E402


def inputs(tokens: list[int]) -> list[list[int]]:
    """A single token, a short and a longer cut, and the whole sequence (some of them do not
    start with BOS: the pooling must not depend on it)."""
    return [tokens[:1], tokens[:7], tokens[5:40], tokens]


def pooled(hidden: torch.Tensor) -> dict[str, list[float]]:
    """hidden: [n, d] float32 -> the three poolings, each L2-normalised (float64 for the sums)."""
    h = hidden.double()
    out = {"mean": h.mean(dim=0), "last": h[-1], "cls": h[0]}
    return {k: [float(f"{x:.8g}") for x in (v / v.norm()).tolist()] for k, v in out.items()}


def gguf_config(path: Path) -> LlamaConfig:
    """The hyper-parameters of a llama GGUF (its `llama.*` metadata), as a LlamaConfig."""
    import gguf

    r = gguf.GGUFReader(str(path))

    def meta(key):
        f = r.fields[f"llama.{key}"]
        return f.parts[f.data[0]].tolist()[0]

    hidden, heads = meta("embedding_length"), meta("attention.head_count")
    cfg = LlamaConfig(
        vocab_size=meta("vocab_size"), hidden_size=hidden,
        intermediate_size=meta("feed_forward_length"), num_hidden_layers=meta("block_count"),
        num_attention_heads=heads, num_key_value_heads=meta("attention.head_count_kv"),
        head_dim=hidden // heads, rms_norm_eps=meta("attention.layer_norm_rms_epsilon"),
        max_position_embeddings=meta("context_length"), hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": meta("rope.freq_base")},
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
    )
    cfg._attn_implementation = "eager"
    return cfg


def smollm2(assets: Path):
    path = assets / SMOLLM2_REL
    if not path.exists():
        print(f"{path} missing: smollm2.json not rewritten (scripts/fetch-assets.sh)")
        return
    cfg = gguf_config(path)
    state, _, _ = read_gguf(path, {"heads": cfg.num_attention_heads,
                                   "kv_heads": cfg.num_key_value_heads})
    model = LlamaModel(cfg).float().eval()
    # LlamaModel's names lack the causal LM's `model.` prefix; the tied output has no tensor.
    state = {k.removeprefix("model."): v for k, v in state.items() if k != "lm_head.weight"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{path}: state dict mismatch: missing {missing}, unexpected {unexpected}")
    greedy = json.loads((REPO / "testdata/smollm2/greedy.json").read_text())
    prompts = greedy["prompts"]
    seqs = [prompts[i]["prompt_ids"] for i in SMOLLM2_PROMPTS]
    seqs.append([t for p in prompts[:10] for t in p["prompt_ids"]])
    vecs = []
    with torch.no_grad():
        for ids in seqs:
            v = pooled(model(input_ids=torch.tensor([ids])).last_hidden_state[0])
            vecs.append({k: v[k] for k in ("mean", "last")})
    out = {
        "generator": "tools/embeddings_reference.py",
        "model": str(Path("assets") / SMOLLM2_REL),
        "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "inputs": seqs,
        "embeddings": vecs,
    }
    SMOLLM2_OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {SMOLLM2_OUT.relative_to(REPO)}: {len(seqs)} inputs, d = {cfg.hidden_size}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=Path, default=REPO / "assets")
    args = ap.parse_args()
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
    smollm2(args.assets)


if __name__ == "__main__":
    main()
