#!/usr/bin/env python3
"""LoRA adapters of two tiny models and PEFT's logits with them -> testdata/lora/.

For each adapter in ADAPTERS this script
  1. builds a seeded LoRA adapter with Hugging Face PEFT (`LoraConfig`, `get_peft_model`) on the
     tiny model's float32 safetensors (testdata/tiny/NAME/hf-f32, made by make_tiny_models.py),
     its A and B matrices drawn from N(0, STD^2) so that every target changes the logits, and
     saves it as PEFT does (`adapter_config.json` + `adapter_model.safetensors`);
  2. converts it with llama.cpp's convert_lora_to_gguf.py to a GGUF adapter (`adapter.gguf`,
     f32), the format `llama-cli --lora` reads (not the rslora one: see below);
  3. computes PEFT's logits (float32, eager attention, the adapter unmerged: W x + s B A x) for
     the tiny model's token sequence (testdata/tiny/manifest.json) on
       - the float32 weights (`ref-f32.bin`),
       - the weights of the q8_0 GGUF dequantized with gguf-py (`ref-q8_0.bin`),
       - the float32 weights with the adapter at half its scale (`ref-half.bin`: lora_alpha
         halved, which is what a user scale of 0.5 is);
  4. writes testdata/lora/manifest.json.

Run it with the peer's venv (torch, transformers, gguf-py; `pip install peft`):
    $CAMELID_PEER/venv/bin/python tools/lora_reference.py [--peer DIR]

Logits files are raw little-endian float32, row-major [n_tokens, n_vocab]. Sources: PEFT's
LoRA layer (scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora) and its
adapter file layout; llama.cpp's GGUF adapter layout (general.type "adapter", adapter.type
"lora", adapter.lora.alpha, tensors NAME.lora_a / NAME.lora_b).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models as tiny  # noqa: E402

REPO = tiny.REPO
OUT = REPO / "testdata/lora"
STD = 0.15

ADAPTERS = [
    # Every linear layer of a GQA 8:1 model (Wk rows permuted with 2 kv heads) and its lm_head.
    dict(name="gqa8-all", model="llama2-gqa8", r=4, alpha=8.0, rslora=False, seed=201,
         targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                  "lm_head"]),
    # Attention only, rank-stabilized scaling (alpha / sqrt(r)), on the tied-embedding model.
    dict(name="tied-qv-rslora", model="llama32-tied", r=8, alpha=4.0, rslora=True, seed=202,
         targets=["q_proj", "v_proj"]),
    # The output layer of the tied model (its embeddings stay as they are) and the down
    # projection.
    dict(name="tied-lm-head", model="llama32-tied", r=2, alpha=2.0, rslora=False, seed=203,
         targets=["lm_head", "down_proj"]),
]


def log(*a):
    print(*a, flush=True)


def peft_model(base, a, alpha):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=a["r"], lora_alpha=alpha, target_modules=a["targets"], lora_dropout=0.0,
                     bias="none", use_rslora=a["rslora"], init_lora_weights=False)
    return get_peft_model(base, cfg).eval()


def draw(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * STD)


def lora_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def with_adapter(c, state, a, alpha, lora):
    """PEFT's model of the base weights `state` with the adapter's tensors `lora`."""
    m = peft_model(tiny.fresh_model(c, state), a, alpha)
    missing, unexpected = m.load_state_dict(lora, strict=False)
    assert not unexpected, unexpected
    assert all("lora_" not in k for k in missing), [k for k in missing if "lora_" in k]
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    args = ap.parse_args()
    converter = args.peer / "llama.cpp/convert_lora_to_gguf.py"
    sys.path.insert(0, str(args.peer / "llama.cpp/gguf-py"))
    manifest = json.loads((REPO / "testdata/tiny/manifest.json").read_text())
    models = {m["name"]: m for m in manifest["models"]}
    configs = {c["name"]: c for c in tiny.CONFIGS}
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    for a in ADAPTERS:
        c, m = configs[a["model"]], models[a["model"]]
        tokens = m["tokens"]
        out = OUT / a["name"]
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        log(f"=== {a['name']} on {a['model']}: r {a['r']}, alpha {a['alpha']}, {a['targets']}")

        f32_dir = REPO / "testdata/tiny" / m["files"]["st-f32"]
        f32 = tiny.load_safetensors(f32_dir)
        torch.manual_seed(a["seed"])
        model = peft_model(tiny.fresh_model(c, f32), a, a["alpha"])
        draw(model, a["seed"])
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            for f in ["adapter_config.json", "adapter_model.safetensors"]:
                shutil.copy(Path(tmp) / f, out / f)
        # PEFT writes the base model's path into the config: a path of this machine.
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = f"testdata/tiny/{m['files']['st-f32']}"
        cfg["target_modules"] = sorted(cfg["target_modules"])  # a set in PEFT: any order
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        lora = lora_state(model)

        # llama.cpp's converter writes lora_alpha as it is and llama.cpp scales by alpha / r
        # (llama-graph.cpp), so an rslora adapter (alpha / sqrt(r)) has no faithful GGUF.
        if not a["rslora"]:
            subprocess.run([sys.executable, str(converter), "--base", str(f32_dir), "--outtype",
                            "f32", "--outfile", str(out / "adapter.gguf"), str(out)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        base_logits = tiny.logits_of(tiny.fresh_model(c, f32), tokens)
        refs = {}
        q8_state, _, _ = tiny.read_gguf(REPO / "testdata/tiny" / m["files"]["gguf-q8_0"], c)
        for tag, state, alpha in [("f32", f32, a["alpha"]), ("q8_0", q8_state, a["alpha"]),
                                  ("half", f32, a["alpha"] / 2)]:
            logits = tiny.logits_of(with_adapter(c, state, a, alpha, lora), tokens)
            tiny.write_bin(out / f"ref-{tag}.bin", logits)
            refs[tag] = f"ref-{tag}.bin"
            log(f"  {tag}: max |logit| {np.abs(logits).max():.2f}, "
                f"max |change from the base| {np.abs(logits - base_logits).max():.3f}")
        entries.append(dict(
            name=a["name"], model=a["model"], r=a["r"], lora_alpha=a["alpha"], use_rslora=a["rslora"],
            targets=a["targets"], n_vocab=m["n_vocab"], tokens=tokens,
            base={"f32": m["files"]["gguf-f32"], "st-f32": m["files"]["st-f32"],
                  "q8_0": m["files"]["gguf-q8_0"]},
            refs=refs, half_scale=0.5, gguf=None if a["rslora"] else "adapter.gguf"))
    (OUT / "manifest.json").write_text(tiny.dumps_compact(
        {"generator": "tools/lora_reference.py", "adapters": entries}) + "\n")
    log(f"wrote {OUT / 'manifest.json'}")


if __name__ == "__main__":
    main()
