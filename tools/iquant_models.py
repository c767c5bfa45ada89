#!/usr/bin/env python3
"""A model in each i-quant and ternary type, quantized by llama.cpp, with llama.cpp's logits.

camelid must load these files and its logits' error against the unquantized model must be no
larger than llama.cpp's on the same file. This script writes testdata/iquant/:

  - k256-{iq4_nl,iq4_xs,tq1_0,tq2_0,iq3_s,...,iq1_m}.gguf: testdata/quantize/k256.gguf (a
    random 2-layer Llama with rows of 256, made by tools/quantize_ref.py) through
    `llama-quantize --pure`, so that every matrix is in the type; the grid types (IQ3_*, IQ2_*,
    IQ1_*) with a uniform importance matrix (all ones, llama.cpp's legacy imatrix format);
  - llamacpp-{f16,iq4_nl,...}.bin: llama.cpp's logits (tools/llama_ref.cpp, `logits` mode) of
    the F16 input and of each quantized file, little-endian f32 [n_tokens, n_vocab];
  - manifest.json: the tokens and the files.

Run from the repository root (needs numpy and gguf-py; the peer's llama.cpp build, see
tools/README.md):
    python3 tools/iquant_models.py [--peer ~/.cache/camelid-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT_REL = Path("testdata/iquant")
INPUT = Path("testdata/quantize/k256.gguf")
TYPES = ["IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0",
         "IQ3_S", "IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M"]
# Quantized with a uniform importance matrix (some need one; all of these are meant for one).
WITH_IMATRIX = TYPES[4:]
# llama-quantize's file type whose base tensor type is the type (llama.cpp's IQ2_S file type
# is built on IQ2_XS tensors, its IQ2_M on IQ2_S).
FTYPE = {"IQ2_S": "IQ2_M"}
N_VOCAB = 384
N_TOKENS = 32


def run(cmd, env=None):
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, text=True, errors="replace")
    if p.returncode != 0:
        print(p.stdout[-4000:], file=sys.stderr)
        raise SystemExit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}")
    return p.stdout


def build_llama_ref(peer: Path) -> Path:
    lib = peer / "llama.cpp/build/bin"
    out_dir = REPO / "target/camelid-tools"
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / "llama_ref"
    run(["g++", "-std=c++17", "-O2", "-I", peer / "llama.cpp/include",
         "-I", peer / "llama.cpp/ggml/include", REPO / "tools/llama_ref.cpp", "-o", exe,
         "-L", lib, "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{lib}"])
    return exe


def write_uniform_imatrix(model: Path, out: Path):
    """llama.cpp's legacy imatrix file with every input column weighted 1 for each matrix."""
    import gguf

    r = gguf.GGUFReader(str(model))
    entries = [(t.name, int(t.shape[0])) for t in r.tensors if len(t.shape) == 2]
    with open(out, "wb") as f:
        f.write(np.int32(len(entries)).tobytes())
        for name, cols in entries:
            f.write(np.int32(len(name)).tobytes() + name.encode())
            f.write(np.int32(1).tobytes() + np.int32(cols).tobytes())
            f.write(np.ones(cols, dtype="<f4").tobytes())


def logits(exe: Path, model: Path, tokens, out: Path):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(" ".join(map(str, tokens)) + "\n")
    env = dict(os.environ, LLAMA_REF_THREADS="2")
    env.pop("LLAMA_REF_EXACT", None)
    try:
        run([exe, "logits", model, f.name, out], env)
    finally:
        os.unlink(f.name)
    x = np.fromfile(out, dtype="<f4")
    assert x.size == len(tokens) * N_VOCAB, (out, x.size)
    return x.reshape(len(tokens), N_VOCAB)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    args = ap.parse_args()
    sys.path.insert(0, str(args.peer / "llama.cpp/gguf-py"))
    out_dir = REPO / OUT_REL
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = build_llama_ref(args.peer)
    rng = np.random.default_rng(256)
    tokens = [1] + [int(t) for t in rng.integers(3, N_VOCAB, N_TOKENS - 1)]
    manifest = {"generator": "tools/iquant_models.py", "input": str(INPUT), "n_vocab": N_VOCAB,
                "tokens": tokens, "unquantized": str(OUT_REL / "llamacpp-f16.bin"), "files": {}}
    ref = logits(exe, REPO / INPUT, tokens, out_dir / "llamacpp-f16.bin")
    tmp = Path(tempfile.mkdtemp())
    imatrix = tmp / "uniform.imatrix"
    write_uniform_imatrix(REPO / INPUT, imatrix)
    for ty in TYPES:
        low = ty.lower()
        model = out_dir / f"k256-{low}.gguf"
        extra = ["--imatrix", imatrix] if ty in WITH_IMATRIX else []
        run([args.peer / "llama.cpp/build/bin/llama-quantize", "--pure", *extra, REPO / INPUT,
             model, FTYPE.get(ty, ty), "2"])
        import gguf

        kinds = {t.tensor_type.name for t in gguf.GGUFReader(str(model)).tensors if len(t.shape) == 2}
        assert kinds == {ty}, (ty, kinds)
        got = logits(exe, model, tokens, out_dir / f"llamacpp-{low}.bin")
        err = np.abs(got.astype(np.float64) - ref)
        print(f"{ty}: {model.stat().st_size} bytes; llama.cpp |error| mean {err.mean():.4e} "
              f"max {err.max():.4e}", file=sys.stderr)
        manifest["files"][ty] = {"gguf": str(OUT_REL / model.name),
                                 "llamacpp": str(OUT_REL / f"llamacpp-{low}.bin")}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
