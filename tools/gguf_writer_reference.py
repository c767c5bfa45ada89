#!/usr/bin/env python3
"""Write small GGUF files with llama.cpp's own writer (gguf-py's GGUFWriter):

- testdata/gguf/gguf_py_writer.gguf: every metadata value type (nested arrays too), tensors of
  several types and ranks, alignment 64. camelid's GgufWriter must produce the same bytes from the
  same content, and camelid's reader must read back the values listed here.
- testdata/malformed/gguf/big_endian.gguf: the same kind of file written big-endian, which
  camelid must reject with a clear message.

Run with a Python that can `import gguf` (see tools/gguf_reference.py).
"""

from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
T = gguf.GGUFValueType


def fill(w):
    """Content shared with crates/camelid-formats/tests/formats/gguf.rs (gguf_py_writer_bytes)."""
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**40 + 3)
    w.add_int64("test.i64", -(2**40))
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo \u2713")
    w.add_array("test.array_i32", [1, -2, 3])
    w.add_array("test.array_str", ["a", "bc", ""])
    w.add_key_value("test.array_u8", [0, 255], T.ARRAY, sub_type=T.UINT8)
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_array("test.nested_str", [["x"], ["y", "z"]])

    # F32 [2, 3] in numpy order is dims [3, 2] in GGUF order.
    w.add_tensor("t.f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("t.f16", np.array([1.0, -2.0, 0.5, 65504.0, 0.0], dtype=np.float16))
    w.add_tensor("t.i32", np.array([[-1, 2], [3, -4]], dtype=np.int32).reshape(1, 2, 2))
    # Two Q8_0 blocks (34 bytes each) in one row of 64 elements, as raw bytes.
    q8 = np.arange(68, dtype=np.uint8).reshape(1, 68)
    w.add_tensor("t.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.4d", np.ones((1, 1, 2, 1), dtype=np.float32))


def write(path, endianess):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(path, "llama", endianess=endianess)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({path.stat().st_size} bytes)")


write(ROOT / "testdata" / "gguf" / "gguf_py_writer.gguf", gguf.GGUFEndian.LITTLE)
write(ROOT / "testdata" / "malformed" / "gguf" / "big_endian.gguf", gguf.GGUFEndian.BIG)
