#!/usr/bin/env python3
"""Write testdata/kernels/quant_reference.json: what llama.cpp makes of the quantized types.

camelid-kernels' tests compare against this file, so the expected values never come from camelid:

1. `dequant`: random blocks of every quantized type (scale fields set to finite halves) and the
   floats that llama.cpp's `gguf` package (gguf-py, `gguf.quants.dequantize`) decodes them to.
2. `quant`: a test matrix with adversarial rows (outliers, zeros, constants, tiny values), the
   bytes llama.cpp's own quantizer (`ggml_quantize_chunk` in libggml-base, the routine
   llama-quantize calls; no importance matrix) writes for every type, and its RMS error.
   Our quantizer must write the same bytes for the 32-element types (same rounding rules) and
   must not have a larger error for the k-quants.

Run with the peer's Python (it has gguf-py and numpy) and its build directory:

    python tools/kernels_quant_reference.py [LLAMA_CPP_BIN]

LLAMA_CPP_BIN defaults to $LLAMA_CPP_BIN, else ~/.cache/camelid-peer/llama.cpp/build/bin.
"""

import ctypes
import json
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "kernels" / "quant_reference.json"

TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# (block elements, block bytes, byte offsets of the f16 fields)
LAYOUT = {
    "Q8_0": (32, 34, [0]),
    "Q4_0": (32, 18, [0]),
    "Q4_1": (32, 20, [0, 2]),
    "Q5_0": (32, 22, [0]),
    "Q5_1": (32, 24, [0, 2]),
    "Q2_K": (256, 84, [80, 82]),
    "Q3_K": (256, 110, [108]),
    "Q4_K": (256, 144, [0, 2]),
    "Q5_K": (256, 176, [0, 2]),
    "Q6_K": (256, 210, [208]),
}


def f32hex(a):
    """Floats as the hex of their little-endian f32 bytes: exact and compact."""
    return np.ascontiguousarray(a, dtype="<f4").tobytes().hex()


def dequant_cases(rng):
    out = {}
    for name in TYPES:
        elems, nbytes, halves = LAYOUT[name]
        nblocks = 2 if elems == 256 else 8
        raw = rng.integers(0, 256, size=(nblocks, nbytes), dtype=np.uint8)
        for b in range(nblocks):
            for off in halves:
                v = np.float16(rng.uniform(-2.0, 2.0) * 10.0 ** rng.integers(-3, 1))
                raw[b, off : off + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
        floats = dequantize(raw.reshape(-1), getattr(T, name)).reshape(-1)
        out[name] = {"blocks": raw.tobytes().hex(), "values_f32le": f32hex(floats)}
    return out


def test_matrix(rng):
    cols = 512
    rows = [
        rng.standard_normal(cols),
        rng.standard_normal(cols) * 0.02,
        rng.standard_t(3, cols),  # heavy tails
        np.where(rng.random(cols) < 0.02, 40.0, 1.0) * rng.standard_normal(cols),  # outliers
        rng.uniform(0.5, 1.5, cols),  # all positive
        -rng.uniform(0.5, 1.5, cols),  # all negative
        np.concatenate([np.zeros(256), rng.standard_normal(256) * 1e-4]),  # zeros, tiny values
        np.concatenate([np.full(256, 0.75), rng.standard_normal(256) * 1e3]),  # constant, huge
    ]
    return np.stack(rows).astype(np.float32)


def main():
    bindir = Path(
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("LLAMA_CPP_BIN", Path.home() / ".cache/camelid-peer/llama.cpp/build/bin")
    )
    ggml = ctypes.CDLL(str(bindir / "libggml-base.so"))
    ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
    ggml.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]

    rng = np.random.default_rng(20240611)
    x = test_matrix(rng)
    rows, cols = x.shape
    quant = {}
    for name in TYPES:
        elems, nbytes, _ = LAYOUT[name]
        dst = np.zeros(rows * cols // elems * nbytes, dtype=np.uint8)
        n = ggml.ggml_quantize_chunk(
            int(getattr(T, name)), x.ctypes.data, dst.ctypes.data, 0, rows, cols, None
        )
        assert n == dst.size, (name, n, dst.size)
        y = dequantize(dst, getattr(T, name)).reshape(rows, cols)
        rmse = [float(np.sqrt(np.mean((y[r] - x[r]).astype(np.float64) ** 2))) for r in range(rows)]
        quant[name] = {"row_rmse": rmse}
        if elems == 32:
            quant[name]["bytes"] = dst.tobytes().hex()

    doc = {
        "source": "gguf-py dequantize; ggml_quantize_chunk from " + bindir.name,
        "dequant": dequant_cases(rng),
        "quant_input": {"rows": rows, "cols": cols, "values_f32le": f32hex(x)},
        "quant": quant,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
