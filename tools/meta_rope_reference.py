#!/usr/bin/env python3
"""RoPE inverse frequencies of Meta folders as Meta's own code computes them -> testdata/meta/rope.json.

A Meta release folder says only `"use_scaled_rope": true` (Llama 3.1, and 3.2 1B/3B alike); the
scaling constants are in Meta's code. This script runs that code from the `llama-models==0.3.0`
wheel (`pip download --no-deps llama-models==0.3.0`; fairscale, which the modules import but
`precompute_freqs_cis` does not use, is stubbed):

- `llama_models/llama3/args.py` `ModelArgs(**params)`: which params.json fields Meta's Llama 3
  code reads (unknown ones are dropped), and their defaults;
- `llama_models/llama3/model.py` `precompute_freqs_cis(head_dim, end, rope_theta,
  use_scaled_rope)`: the rotation angles, whose step per position is the inverse frequency. Its
  `apply_scaling` fixes factor 8, low 1, high 4, original context 8192;
- for a folder that states `rope_scaling_factor` / `rope_high_freq_factor` (fields of Llama 4's
  `ModelArgs`, `llama_models/llama4/args.py`; Llama 3's code has no such field), Llama 4's
  `precompute_freqs_cis(..., scale_factor, high_freq_factor)`, the same rule with the factors as
  arguments.

Each case is a params.json variant of testdata/meta/llama31-scaled-mp1-f32 (head_dim 32,
theta 500000), with the inverse frequencies Meta's code gives (float32, as torch computes them).

    python tools/meta_rope_reference.py --wheel PATH/llama_models-0.3.0-py3-none-any.whl
(needs torch and pydantic)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "testdata/meta/llama31-scaled-mp1-f32/params.json"
OUT = REPO / "testdata/meta/rope.json"

# (name, fields changed in the base params.json; None removes the field)
CASES = [
    ("llama31_scaled", {}),
    ("unscaled", {"use_scaled_rope": None}),
    ("scaled_false", {"use_scaled_rope": False}),
    ("explicit_factor_32", {"rope_scaling_factor": 32.0}),
    ("explicit_factor_and_high", {"rope_scaling_factor": 16.0, "rope_high_freq_factor": 2.0}),
    ("factor_without_scaling", {"use_scaled_rope": False, "rope_scaling_factor": 32.0}),
]


def stub_fairscale():
    """Empty fairscale modules: the model files import them at the top."""
    class Layer:
        def __init__(self, *a, **k):
            pass

    names = ["fairscale", "fairscale.nn", "fairscale.nn.model_parallel",
             "fairscale.nn.model_parallel.initialize", "fairscale.nn.model_parallel.layers",
             "fairscale.nn.model_parallel.mappings"]
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    layers = sys.modules["fairscale.nn.model_parallel.layers"]
    for cls in ["ColumnParallelLinear", "RowParallelLinear", "ParallelEmbedding",
                "VocabParallelEmbedding"]:
        setattr(layers, cls, Layer)
    sys.modules["fairscale.nn.model_parallel.mappings"].reduce_from_model_parallel_region = None


def inv_freq(freqs_cis: torch.Tensor) -> list[float]:
    """The angle step per position: row 1 of the polar table (position 1)."""
    return [float(x) for x in torch.angle(freqs_cis[1]).to(torch.float32)]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, required=True, help="llama_models-0.3.0 wheel")
    args = ap.parse_args()
    stub_fairscale()
    base = json.loads(BASE.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(args.wheel).extractall(tmp)
        sys.path.insert(0, tmp)
        l3_args = importlib.import_module("llama_models.llama3.args")
        l3_model = importlib.import_module("llama_models.llama3.model")
        l4_model = importlib.import_module("llama_models.llama4.model")
        cases = []
        for name, change in CASES:
            params = dict(base)
            for k, v in change.items():
                if v is None:
                    params.pop(k, None)
                else:
                    params[k] = v
            a = l3_args.ModelArgs(**params)
            head_dim = a.dim // a.n_heads
            if "rope_scaling_factor" in params or "rope_high_freq_factor" in params:
                # Llama 3's ModelArgs drops these fields; Llama 4's code takes them.
                fc = l4_model.precompute_freqs_cis(
                    head_dim, 2, a.rope_theta, a.use_scaled_rope,
                    params.get("rope_scaling_factor", 8.0),
                    params.get("rope_high_freq_factor", 4.0))
                source = "llama_models.llama4.model.precompute_freqs_cis"
            else:
                fc = l3_model.precompute_freqs_cis(head_dim, 2, a.rope_theta, a.use_scaled_rope)
                source = "llama_models.llama3.model.precompute_freqs_cis"
            cases.append({"name": name, "params": params, "source": source,
                          "inv_freq": inv_freq(fc)})
            print(f"{name}: {source}, first/last {cases[-1]['inv_freq'][0]:.4g} "
                  f"{cases[-1]['inv_freq'][-1]:.4g}")
    out = {"generator": "tools/meta_rope_reference.py", "package": "llama-models==0.3.0",
           "weights": "llama31-scaled-mp1-f32", "cases": cases}
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
