#!/usr/bin/env python3
"""Write small safetensors checkpoints with the reference implementation (the `safetensors`
Python package, Rust core) and what that package reads back from them:

- testdata/safetensors/single.safetensors: one file, several dtypes and ranks (0-d, empty),
  `__metadata__`;
- testdata/safetensors/sharded/: two shards plus model.safetensors.index.json, laid out as
  transformers' save_pretrained(max_shard_size=...) does;
- testdata/safetensors/reference.json: per file, the tensors as `safetensors.deserialize` reports
  them (name, dtype, shape, data as hex), the header's data_offsets (read with Python's json),
  and the metadata.

Needs numpy and safetensors (pip install numpy safetensors). camelid's tests compare against
reference.json, never against camelid's own output.
"""

import json
import struct
from pathlib import Path

import numpy as np
from safetensors import TensorSpec, deserialize, serialize_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "safetensors"


def spec(dtype, shape, array):
    """A TensorSpec over `array`'s buffer (kept alive by the caller)."""
    array = np.ascontiguousarray(array)
    return TensorSpec(dtype=dtype, shape=list(shape), data_ptr=array.ctypes.data, data_len=array.nbytes), array


def bf16(values):
    """bfloat16 bits of float32 values (truncation is exact for these values)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32) >> 16
    return bits.astype(np.uint16)


def write(path, tensors, metadata):
    specs, keep = {}, []
    for name, (dtype, shape, array) in tensors.items():
        s, a = spec(dtype, shape, array)
        specs[name] = s
        keep.append(a)
    path.parent.mkdir(parents=True, exist_ok=True)
    serialize_file(specs, str(path), metadata=metadata)
    return path


def describe(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    tensors = []
    for name, info in deserialize(raw):
        offsets = header[name]["data_offsets"]
        tensors.append({
            "name": name,
            "dtype": info["dtype"],
            "shape": list(info["shape"]),
            "data_offsets": offsets,
            "data_start": 8 + n + offsets[0],
            "data": bytes(info["data"]).hex(),
        })
    return {
        "file": str(path.relative_to(OUT)),
        "header_len": n,
        "metadata": header.get("__metadata__", {}),
        "tensors": sorted(tensors, key=lambda t: t["name"]),
    }


def main():
    single = write(OUT / "single.safetensors", {
        "model.embed_tokens.weight": ("float32", (4, 3), np.arange(12, dtype=np.float32) - 5.5),
        "model.norm.weight": ("float16", (3,), np.array([1.0, -0.5, 2.0], dtype=np.float16)),
        "lm_head.weight": ("bfloat16", (2, 2), bf16([1.0, -2.0, 0.5, 3.0])),
        "ids": ("int64", (2, 2), np.array([[1, -2], [2**40, 0]], dtype=np.int64)),
        "mask": ("bool", (5,), np.array([True, False, True, True, False])),
        "scalar": ("float32", (), np.array(7.25, dtype=np.float32)),
        "empty": ("float32", (0, 3), np.zeros((0, 3), dtype=np.float32)),
        "fp8": ("float8_e4m3fn", (4,), np.array([0x38, 0xb8, 0x00, 0x7e], dtype=np.uint8)),
    }, {"format": "pt", "note": "camelid test"})

    shard_tensors = [
        {
            "model.layers.0.self_attn.q_proj.weight": ("float32", (2, 2), np.array([[1, 2], [3, 4]], dtype=np.float32)),
            "model.embed_tokens.weight": ("bfloat16", (3, 2), bf16([0.5, 1, 1.5, 2, 2.5, 3])),
        },
        {
            "model.norm.weight": ("float32", (2,), np.array([1.0, 1.0], dtype=np.float32)),
            "lm_head.weight": ("float16", (3, 2), np.arange(6, dtype=np.float16)),
        },
    ]
    shards = []
    weight_map = {}
    total = 0
    for i, tensors in enumerate(shard_tensors):
        name = f"model-{i + 1:05d}-of-{len(shard_tensors):05d}.safetensors"
        shards.append(write(OUT / "sharded" / name, tensors, {"format": "pt"}))
        for t, (_, _, array) in tensors.items():
            weight_map[t] = name
            total += array.nbytes
    with open(OUT / "sharded" / "model.safetensors.index.json", "w") as f:
        # As transformers writes it: indent 2, sorted keys.
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")

    reference = {
        "generator": "tools/safetensors_reference.py",
        "files": [describe(p) for p in [single, *shards]],
        "weight_map": weight_map,
    }
    with open(OUT / "reference.json", "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
