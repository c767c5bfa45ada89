#!/usr/bin/env python3
"""llama-quantize --allow-requantize on quantized inputs -> testdata/quantize/llama_requantize.json.

`camelid quantize --allow-requantize` dequantizes a quantized input to f32 and quantizes it
again, as llama.cpp's `llama-quantize --allow-requantize` does. This script makes the reference
for that: it runs `llama-quantize --allow-requantize IN OUT TYPE 2` on

  - testdata/tiny/{llama3-gqa,llama32-tied}/{q4_0,q8_0}.gguf (rows of 64 and 128: the
    k-quant types fall back to 32-element ones there), and
  - assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (the default model, whose embedding is Q8_0;
    its ffn_down rows of 1536 take the k-quants as such),

reads every output with gguf-py and records, per tensor, its type, its RMSE against the
dequantized input, and the SHA-256 of its bytes:
    { "generator", "llama_cpp", "models": [ { "name", "input", "runs": [ { "ftype",
      "tensors": { NAME: [TYPE, RMSE, SHA256] } } ] } ] }
(crates/camelid-cli/tests/quantize.rs reads it: the same types, the same bytes where the
rounding rule is ggml's, an error no larger where camelid's k-quant search differs.)

Run from the repository root with the peer's Python (tools/README.md; it needs numpy and
gguf-py's dependencies, and the script puts the peer's own gguf-py first on the path) and the
assets (scripts/fetch-assets.sh):
    $PEER/venv/bin/python tools/requantize_ref.py [--peer $PEER]

llama-quantize only converts (no matrix products), so the AMX note of tools/README.md does not
apply. Deterministic: a rerun writes a byte-identical file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata/quantize/llama_requantize.json"

TINY_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"]
INPUTS = [
    ("llama3-gqa-q4_0", "testdata/tiny/llama3-gqa/q4_0.gguf", TINY_TYPES),
    ("llama3-gqa-q8_0", "testdata/tiny/llama3-gqa/q8_0.gguf", TINY_TYPES),
    ("llama32-tied-q4_0", "testdata/tiny/llama32-tied/q4_0.gguf", TINY_TYPES),
    ("llama32-tied-q8_0", "testdata/tiny/llama32-tied/q8_0.gguf", TINY_TYPES),
    ("smollm2-q4_1", "assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", ["Q8_0", "Q4_0", "Q4_K_M"]),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def tensors(gguf, path: Path) -> dict:
    """name -> (type name, float64 values, raw bytes)."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = (t.tensor_type.name, np.asarray(x, dtype=np.float64).reshape(-1),
                       bytes(np.asarray(t.data).tobytes()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    args = ap.parse_args()
    sys.path.insert(0, str(args.peer / "llama.cpp/gguf-py"))
    import gguf  # noqa: E402

    exe = args.peer / "llama.cpp/build/bin/llama-quantize"
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel, ftypes in INPUTS:
            src = tensors(gguf, REPO / rel)
            runs = []
            for ftype in ftypes:
                out = Path(tmp) / f"{name}-{ftype}.gguf"
                p = subprocess.run([exe, "--allow-requantize", REPO / rel, out, ftype, "2"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace")
                if p.returncode != 0:
                    log(p.stdout[-4000:])
                    raise SystemExit(f"llama-quantize {rel} {ftype} failed ({p.returncode})")
                res = {}
                for tname, (ty, x, raw) in tensors(gguf, out).items():
                    rmse = float(np.sqrt(np.mean((x - src[tname][1]) ** 2)))
                    res[tname] = [ty, rmse, hashlib.sha256(raw).hexdigest()]
                out.unlink()
                runs.append(dict(ftype=ftype, tensors=res))
                log(f"{name} {ftype}: " + ", ".join(sorted({v[0] for v in res.values()})))
            models.append(dict(name=name, input=rel, runs=runs))
    doc = dict(generator="tools/requantize_ref.py",
               llama_cpp="llama-quantize --allow-requantize from llama-cpp-python 0.3.36's "
                         "vendor/llama.cpp",
               models=models)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
