#!/usr/bin/env python3
"""Write testdata/gguf_reference.json: what llama.cpp's own `gguf` Python package (gguf-py)
reads from the GGUF test assets and what it says about ggml types. camelid-formats' tests compare
their reader against this file, so the expected values never come from camelid itself.

Run with a Python that can `import gguf` (the peer venv has it, or put llama.cpp's gguf-py on
PYTHONPATH next to numpy):

    python tools/gguf_reference.py            # assets from ./assets or $CAMELID_ASSETS

Assets come from scripts/fetch-assets.sh.
"""

import json
import os
import sys
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("CAMELID_ASSETS", ROOT / "assets"))
OUT = ROOT / "testdata" / "gguf_reference.json"

FILES = [
    "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "llama-spm/ggml-vocab-llama-spm.gguf",
    "llama-bpe/ggml-vocab-llama-bpe.gguf",
]

# Values of these gguf-py types are plain numbers.
SCALARS = {
    gguf.GGUFValueType.UINT8, gguf.GGUFValueType.INT8, gguf.GGUFValueType.UINT16,
    gguf.GGUFValueType.INT16, gguf.GGUFValueType.UINT32, gguf.GGUFValueType.INT32,
    gguf.GGUFValueType.UINT64, gguf.GGUFValueType.INT64, gguf.GGUFValueType.FLOAT32,
    gguf.GGUFValueType.FLOAT64, gguf.GGUFValueType.BOOL,
}

# gguf-py's value type names, mapped to the short names camelid's ValueType::name() uses.
TYPE_NAMES = {
    "UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32",
    "INT32": "i32", "UINT64": "u64", "INT64": "i64", "FLOAT32": "f32", "FLOAT64": "f64",
    "BOOL": "bool", "STRING": "string", "ARRAY": "array",
}


def element(field, i):
    """Element i of an array field (or the value of a scalar field when i is 0)."""
    part = field.parts[field.data[i]]
    if field.types[-1] == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    v = part[0]
    if field.types[-1] == gguf.GGUFValueType.BOOL:
        return bool(v)
    if isinstance(v, np.floating):
        return float(v)
    return int(v)


def describe(path):
    r = gguf.GGUFReader(path)
    version = int(r.fields["GGUF.version"].parts[-1][0])
    metadata = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        types = [TYPE_NAMES[gguf.GGUFValueType(t).name] for t in field.types]
        entry = {"key": key, "type": types[0], "offset": int(field.offset)}
        if types[0] == "array":
            n = len(field.data)
            entry["element_type"] = types[1]
            entry["len"] = n
            # The first three elements and the last: enough to catch a misread stride.
            picks = sorted({i for i in (0, 1, 2, n - 1) if 0 <= i < n})
            entry["samples"] = [[i, element(field, i)] for i in picks]
        else:
            entry["value"] = element(field, 0)
        metadata.append(entry)
    tensors = []
    for t in r.tensors:
        data = bytes(np.asarray(t.data).view(np.uint8).reshape(-1))
        tensors.append({
            "name": t.name,
            "dims": [int(d) for d in t.shape],  # gguf-py's shape is in GGUF order
            "type": t.tensor_type.name,
            "data_offset": int(t.data_offset),  # absolute, in the file
            "n_bytes": int(t.n_bytes),
            "n_elements": int(t.n_elements),
            "head": data[:8].hex(),
            "tail": data[-8:].hex(),
        })
    alignment = r.fields.get("general.alignment")
    return {
        "file": str(Path(path).relative_to(ASSETS)),
        "version": version,
        "alignment": int(alignment.parts[-1][0]) if alignment else 32,
        "data_offset": int(r.data_offset),
        "metadata": metadata,
        "tensors": tensors,
    }


def main():
    files = []
    for rel in FILES:
        p = ASSETS / rel
        if not p.exists():
            sys.exit(f"missing asset {p}: run scripts/fetch-assets.sh")
        files.append(describe(p))
    types = [
        {
            "name": t.name,
            "id": int(t.value),
            "block_size": gguf.GGML_QUANT_SIZES[t][0],
            "type_size": gguf.GGML_QUANT_SIZES[t][1],
        }
        for t in gguf.GGMLQuantizationType
    ]
    value_types = [{"name": TYPE_NAMES[t.name], "id": int(t.value)} for t in gguf.GGUFValueType]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(
            {
                "generator": "tools/gguf_reference.py, reading with llama.cpp's gguf-py",
                "ggml_types": types,
                "value_types": value_types,
                "files": files,
            },
            f,
            indent=1,
            ensure_ascii=False,
        )
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
