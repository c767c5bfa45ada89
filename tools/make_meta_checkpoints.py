#!/usr/bin/env python3
"""Meta-format checkpoints of the tiny models, with reference logits -> testdata/meta/.

Each fixture folder is what Meta releases: `params.json`, `consolidated.NN.pth` (one per
model-parallel rank, written with torch.save) and `tokenizer.model`. They are made from the
float32 Hugging Face checkpoints of testdata/tiny (tools/make_tiny_models.py):

  1. HF -> Meta: names as in Meta's model code (meta-llama/llama and meta-llama/llama3
     `llama/model.py`), Wq/Wk rows taken back from HF's rotate-half order to Meta's adjacent-pair
     order (the inverse of transformers' `permute` in convert_llama_weights_to_hf.py), the
     FFN width written as Meta's `multiple_of`/`ffn_dim_multiplier` rule, optionally rounded to
     bfloat16 (every tensor, norms included, as Meta's bf16 releases are).
  2. Split for model parallelism as fairscale's layers do in Meta's code: ColumnParallelLinear
     (wq, wk, wv, w1, w3, output) along the output dimension (dim 0), RowParallelLinear (wo, w2)
     along the input dimension (dim 1), RMSNorm gains replicated, and the embedding along the
     model dimension (dim 1, `ParallelEmbedding`, LLaMA 1/2) or the vocabulary (dim 0,
     `VocabParallelEmbedding`, Llama 3). Each rank's tensors are contiguous copies.
  3. Back to HF with transformers' own converter, `write_model` of
     convert_llama_weights_to_hf.py (transformers 4.46.3, the last release that ships it;
     loaded from that wheel, `pip download --no-deps transformers==4.46.3`), and reference
     logits from the converted model in float32 (eager attention) for the tiny model's tokens.
     The converter casts to bfloat16 before saving; the script keeps float32 by loading the
     converter's temporary checkpoint in float32 instead (`_F32Llama` below).
  4. Checks: for float32 fixtures whose RoPE settings Meta's params can express, the
     converted weights equal the original HF weights bit for bit, and the logits equal the
     tiny model's own reference.

Run:  python tools/make_meta_checkpoints.py --converter PATH/convert_llama_weights_to_hf.py
(needs torch, transformers 5, safetensors, numpy). Logits files are raw little-endian float32
[n_tokens, n_vocab].
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "testdata/tiny"
OUT = REPO / "testdata/meta"

# (tiny config, model-parallel ranks, dtype, transformers llama_version). The version picks the
# embedding's split axis (1/2: dim 1; 3: dim 0) and, for 3.1, llama3 RoPE scaling with Meta's
# constants (factor 8, low 1, high 4, original context 8192: llama-models `apply_scaling`).
# Ranks divide n_kv_heads, as Meta's code requires (n_local_kv_heads = n_kv_heads // ranks).
FIXTURES = [
    ("llama1-mha", 1, "f32", "1"),
    ("llama1-mha", 2, "bf16", "1"),
    ("llama2-gqa8", 2, "bf16", "2"),
    ("mqa", 1, "bf16", "2"),
    ("llama3-gqa", 2, "f32", "3"),
    ("llama3-gqa", 1, "bf16", "3"),
    ("llama31-scaled", 1, "f32", "3.1"),
    ("llama32-tied", 2, "bf16", "3.1"),
]


def log(*a):
    print(*a, flush=True)


def load_converter(path: Path):
    spec = importlib.util.spec_from_file_location("convert_llama_weights_to_hf", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _F32Llama:
    """Stands in for LlamaForCausalLM inside the converter: its final load in float32."""

    from_pretrained_dtype = torch.float32

    @classmethod
    def from_pretrained(cls, path, **kw):
        from transformers import LlamaForCausalLM

        kw.pop("torch_dtype", None)
        kw["dtype"] = cls.from_pretrained_dtype
        return LlamaForCausalLM.from_pretrained(path, **kw)


def meta_ffn(dim: int, inter: int):
    """multiple_of and ffn_dim_multiplier that give `inter` by Meta's FeedForward rule."""
    h = int(2 * 4 * dim / 3)
    for multiple_of in (256, 128, 64, 32):
        if multiple_of * ((h + multiple_of - 1) // multiple_of) == inter:
            return multiple_of, None
    multiple_of = inter
    mult = round(inter / h - 0.01, 4)  # int(mult * h) just below inter rounds up to it
    assert multiple_of * ((int(mult * h) + multiple_of - 1) // multiple_of) == inter
    return multiple_of, mult


def hf_to_meta(hf: dict, cfg: dict) -> "collections.OrderedDict[str, torch.Tensor]":
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def unpermute(w, n):  # inverse of transformers' permute (view n, hd/2, 2 -> transpose)
        rows, cols = w.shape
        return w.view(n, 2, rows // n // 2, cols).transpose(1, 2).reshape(rows, cols)

    out = collections.OrderedDict()
    out["tok_embeddings.weight"] = hf["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[f"layers.{i}.attention.wq.weight"] = unpermute(hf[p + "self_attn.q_proj.weight"], heads)
        out[f"layers.{i}.attention.wk.weight"] = unpermute(hf[p + "self_attn.k_proj.weight"], kv)
        out[f"layers.{i}.attention.wv.weight"] = hf[p + "self_attn.v_proj.weight"]
        out[f"layers.{i}.attention.wo.weight"] = hf[p + "self_attn.o_proj.weight"]
        out[f"layers.{i}.feed_forward.w1.weight"] = hf[p + "mlp.gate_proj.weight"]
        out[f"layers.{i}.feed_forward.w2.weight"] = hf[p + "mlp.down_proj.weight"]
        out[f"layers.{i}.feed_forward.w3.weight"] = hf[p + "mlp.up_proj.weight"]
        out[f"layers.{i}.attention_norm.weight"] = hf[p + "input_layernorm.weight"]
        out[f"layers.{i}.ffn_norm.weight"] = hf[p + "post_attention_layernorm.weight"]
    out["norm.weight"] = hf["model.norm.weight"]
    # Meta's model always has its own `output` (ColumnParallelLinear), also when HF ties it.
    out["output.weight"] = hf.get("lm_head.weight", hf["model.embed_tokens.weight"])
    return out


COLUMN = ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3")
ROW = ("attention.wo", "feed_forward.w2")


def split_axis(name: str, version: str):
    if name == "tok_embeddings.weight":
        return 0 if version.startswith("3") else 1
    if name == "output.weight" or any(f".{c}." in name for c in COLUMN):
        return 0
    if any(f".{r}." in name for r in ROW):
        return 1
    return None  # norms: replicated


def shard(state, ranks: int, version: str):
    out = [collections.OrderedDict() for _ in range(ranks)]
    for name, t in state.items():
        axis = split_axis(name, version)
        parts = [t] * ranks if axis is None else torch.chunk(t, ranks, dim=axis)
        for r in range(ranks):
            out[r][name] = parts[r].clone().contiguous()
    for o in out:
        # What Module.state_dict() carries; torch.save writes it with BUILD.
        o._metadata = collections.OrderedDict([("", {"version": 1})])
    return out


def logits_of(model, tokens) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32).numpy().astype("<f4")


def make_one(conv, tiny: dict, ranks: int, dtype: str, version: str) -> dict:
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    name = tiny["name"]
    cfg = tiny["hf_config"]
    fixture = f"{name}-mp{ranks}-{dtype}"
    dest = OUT / fixture
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    hf = load_file(TINY / name / "hf-f32/model.safetensors")
    meta = hf_to_meta(hf, cfg)
    if dtype == "bf16":
        meta = collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in meta.items())

    dim, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    multiple_of, mult = meta_ffn(dim, cfg["intermediate_size"])
    rope = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", rope.get("rope_theta"))
    params = {"dim": dim, "n_layers": cfg["num_hidden_layers"], "n_heads": heads,
              "n_kv_heads": cfg["num_key_value_heads"], "vocab_size": cfg["vocab_size"],
              "multiple_of": multiple_of, "norm_eps": cfg["rms_norm_eps"], "rope_theta": theta}
    if mult is not None:
        params["ffn_dim_multiplier"] = mult
    if version in ("1", "2"):
        params["vocab_size"] = -1  # as in LLaMA 1/2's params.json: the tokenizer decides
        if theta == 10000.0:
            del params["rope_theta"]  # LLaMA 1/2's code has no such parameter
    if version == "3.1":
        params["use_scaled_rope"] = True
    (dest / "params.json").write_text(json.dumps(params) + "\n")
    for r, sd in enumerate(shard(meta, ranks, version)):
        torch.save(sd, dest / f"consolidated.{r:02d}.pth")
    shutil.copyfile(TINY / name / "hf-f32/tokenizer.model", dest / "tokenizer.model")

    # Back to HF by transformers' rules, then reference logits.
    conv.LlamaForCausalLM = _F32Llama
    with tempfile.TemporaryDirectory() as tmp:
        conv.write_model(model_path=tmp, input_base_path=str(dest), safe_serialization=True,
                         llama_version=version, vocab_size=cfg["vocab_size"], num_shards=ranks)
        model = LlamaForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
        converted = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ref = logits_of(model, tiny["tokens"])

    if dtype == "f32" and version not in ("3.1",):
        for k, v in hf.items():
            assert torch.equal(converted[k], v), f"{fixture}: converted {k} differs from the original"
        own = np.fromfile(TINY / tiny["ref"]["st-f32"], dtype="<f4").reshape(ref.shape)
        gap = float(np.abs(own - ref).max())
        log(f"  {fixture}: converted logits vs the tiny model's own reference: max {gap:.2e}")
        assert gap < 1e-5, gap
    if dtype == "bf16":
        # bf16 weights are exact in float32: the converted model holds them unchanged.
        bf = {k: v.to(torch.bfloat16) for k, v in hf.items()}
        for k, v in bf.items():
            assert torch.equal(converted[k].to(torch.bfloat16), v), f"{fixture}: {k}"

    (dest / "ref.bin").write_bytes(np.ascontiguousarray(ref, dtype="<f4").tobytes())
    sizes = sum(p.stat().st_size for p in dest.iterdir())
    log(f"  {fixture}: {ranks} rank(s), {dtype}, llama_version {version}, "
        f"max |logit| {np.abs(ref).max():.2f}, {sizes / 1e3:.0f} KB")
    return {"name": fixture, "tiny": name, "ranks": ranks, "dtype": dtype,
            "llama_version": version, "n_vocab": cfg["vocab_size"], "tokens": tiny["tokens"],
            "params": params, "ref": f"{fixture}/ref.bin",
            "sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                       for p in sorted(dest.iterdir()) if p.suffix == ".pth"}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--converter", type=Path, required=True,
                    help="convert_llama_weights_to_hf.py from the transformers 4.46.3 wheel")
    args = ap.parse_args()
    torch.set_num_threads(2)
    conv = load_converter(args.converter)
    tiny = {m["name"]: m for m in json.loads((TINY / "manifest.json").read_text())["models"]}
    OUT.mkdir(parents=True, exist_ok=True)
    entries = [make_one(conv, tiny[n], r, d, v) for n, r, d, v in FIXTURES]
    manifest = {"generator": "tools/make_meta_checkpoints.py", "fixtures": entries}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    log(f"testdata/meta: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
