#!/usr/bin/env python3
"""Write the hand-made malformed model files under testdata/malformed/ and their manifest.

Each file breaks one rule of its format, built here byte by byte from the specs (GGUF: ggml
docs/gguf.md; safetensors: the "Format" section of huggingface/safetensors' README), so it is
independent of camelid's reader and writer. testdata/malformed/expected.json maps each file to a
piece of the error message camelid must give for it: the test that replays the folder checks
that every hand-made file is rejected, for the stated reason. Files whose names start with
`fuzz-` are inputs the fuzzers found interesting; they may parse or not, but must not panic.

(big_endian.gguf is written by gguf-py itself, see tools/gguf_writer_reference.py.)

Usage: python3 tools/make_malformed.py   (plain Python 3, no packages needed)
"""

import json
import struct
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "malformed"

# GGUF value type ids (docs/gguf.md, gguf_metadata_value_type).
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# ggml type ids used below.
GGML_F32, GGML_Q4_0 = 0, 2


def s(text):
    """A GGUF string: u64 length + bytes."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def header(n_tensors, n_kv, version=3):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv_u32(key, value):
    return s(key) + struct.pack("<II", U32, value)


def kv_str(key, value):
    return s(key) + struct.pack("<I", STRING) + s(value)


def tensor_info(name, dims, ggml_type, offset):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) \
        + struct.pack("<IQ", ggml_type, offset)


def pad(data, alignment=32):
    return data + b"\0" * (-len(data) % alignment)


def gguf(kvs, tensors, data=b"", n_tensors=None, n_kv=None):
    """A complete file: header, metadata, tensor infos, padding to 32, data."""
    body = header(len(tensors) if n_tensors is None else n_tensors,
                  len(kvs) if n_kv is None else n_kv)
    body += b"".join(kvs) + b"".join(tensors)
    return pad(body) + data


ARCH = kv_str("general.architecture", "llama")
ONE_F32 = tensor_info("t", [4], GGML_F32, 0)
FOUR_FLOATS = struct.pack("<4f", 1, 2, 3, 4)

GGUF_CASES = {
    # name: (bytes, expected message fragment)
    "empty.gguf": (b"", "magic: needs 4 bytes but the file ends 0 bytes later"),
    "truncated_magic.gguf": (b"GG", "magic: needs 4 bytes"),
    "wrong_magic.gguf": (b"GGML" + bytes(20), "expected the magic \"GGUF\" (47 47 55 46), found 47 47 4d 4c"),
    "ggjt_magic.gguf": (struct.pack("<I", 0x67676A74) + bytes(20), "pre-GGUF ggml/ggmf/ggjt file"),
    "version1.gguf": (b"GGUF" + struct.pack("<III", 1, 0, 0), "GGUF version 1 is not supported"),
    "version99.gguf": (header(0, 0, version=99), "unsupported GGUF version 99, expected 2 or 3"),
    "truncated_counts.gguf": (b"GGUF" + struct.pack("<I", 3) + bytes(4), "tensor count: needs 8 bytes"),
    "absurd_tensor_count.gguf": (header(2**60, 0) + bytes(64), "tensor count 1152921504606846976 is impossible"),
    "absurd_kv_count.gguf": (header(0, 2**62) + bytes(64), "metadata key/value count 4611686018427387904 is impossible"),
    "huge_key.gguf": (header(0, 1) + struct.pack("<Q", 2**40) + b"general", "string length 1099511627776 exceeds the limit of 65535 bytes"),
    "huge_string_value.gguf": (
        header(0, 1) + s("general.name") + struct.pack("<IQ", STRING, 2**40) + b"abc",
        "value of metadata key \"general.name\": needs 1099511627776 bytes but the file ends 3 bytes later",
    ),
    "unknown_value_type.gguf": (header(0, 1) + s("k") + struct.pack("<IB", 13, 0), "metadata key \"k\": unknown value type 13"),
    "unknown_array_type.gguf": (header(0, 1) + s("k") + struct.pack("<IIQ", ARRAY, 77, 1) + bytes(8), "unknown array element type 77"),
    "absurd_array_len.gguf": (header(0, 1) + s("k") + struct.pack("<IIQ", ARRAY, U32, 2**61) + bytes(16), "array element count 2305843009213693952 is impossible"),
    "deeply_nested_array.gguf": (
        header(0, 1) + s("k") + struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * 20 + struct.pack("<IQ", U8, 0),
        "arrays nest deeper than 16 levels",
    ),
    "invalid_utf8_key.gguf": (header(0, 1) + s(b"gen\xffal") + struct.pack("<IB", U8, 1), "string is not valid UTF-8"),
    "invalid_utf8_value.gguf": (header(0, 1) + s("k") + struct.pack("<I", STRING) + s(b"\xc3\x28"), "string is not valid UTF-8"),
    "bad_bool.gguf": (header(0, 1) + s("k") + struct.pack("<IB", BOOL, 2), "bool byte is 2, expected 0 or 1"),
    "duplicate_key.gguf": (gguf([ARCH, ARCH], []), "duplicate metadata key \"general.architecture\""),
    "alignment_zero.gguf": (gguf([kv_u32("general.alignment", 0)], []), "general.alignment is 0, expected a non-zero power of two"),
    "alignment_48.gguf": (gguf([kv_u32("general.alignment", 48)], []), "general.alignment is 48, expected a non-zero power of two"),
    "alignment_u64.gguf": (
        gguf([s("general.alignment") + struct.pack("<IQ", U64, 32)], []),
        "general.alignment has type u64, expected u32",
    ),
    "truncated_tensor_info.gguf": (header(1, 0) + s("t") + struct.pack("<IQ", 2, 4) + bytes(5), "tensor \"t\": dimension 1: needs 8 bytes"),
    "too_many_dims.gguf": (gguf([], [tensor_info("t", [1] * 5, GGML_F32, 0)], FOUR_FLOATS), "tensor \"t\": 5 dimensions, expected at most 4"),
    "dims_overflow.gguf": (gguf([], [tensor_info("t", [2**32, 2**32], GGML_F32, 0)]), "have more than 2^63 - 1 elements"),
    "unknown_tensor_type.gguf": (gguf([], [tensor_info("t", [4], 4, 0)], FOUR_FLOATS), "tensor \"t\": unknown ggml type id 4"),
    "row_not_whole_blocks.gguf": (gguf([], [tensor_info("t", [33], GGML_Q4_0, 0)], bytes(64)), "row length 33 is not a multiple of the Q4_0 block size 32"),
    "tensor_name_too_long.gguf": (gguf([], [tensor_info("x" * 65, [4], GGML_F32, 0)], FOUR_FLOATS), "string length 65 exceeds the limit of 64 bytes"),
    "misaligned_offset.gguf": (gguf([], [tensor_info("t", [4], GGML_F32, 16)], bytes(64)), "data offset 16 is not a multiple of the alignment 32"),
    "data_past_end.gguf": (gguf([ARCH], [tensor_info("t", [1024], GGML_F32, 0)], FOUR_FLOATS), "ends past the end of the file"),
    "offset_overflow.gguf": (gguf([], [tensor_info("t", [4], GGML_F32, 2**64 - 32)], FOUR_FLOATS), "ends past the end of the file"),
    "duplicate_tensor.gguf": (gguf([], [ONE_F32, ONE_F32], FOUR_FLOATS), "duplicate tensor name \"t\""),
    "overlapping_tensors.gguf": (
        gguf([], [tensor_info("a", [8], GGML_F32, 0), tensor_info("b", [8], GGML_F32, 0)], bytes(64)),
        "overlaps tensor",
    ),
}


def st(header_text, data=b"", header_len=None):
    """A safetensors file: u64 header length, JSON header, data."""
    h = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def st_json(tensors):
    return json.dumps(tensors)


EIGHT = bytes(8)
SAFETENSORS_CASES = {
    "empty.safetensors": (b"", "needs 8 bytes for the header length"),
    "short_length.safetensors": (b"\x10\0\0", "needs 8 bytes for the header length"),
    "header_past_end.safetensors": (st("{}", header_len=2**40), "header length 1099511627776 exceeds the 2 bytes after it"),
    "header_not_json.safetensors": (st("{\"a\": nope}"), "header is not valid JSON"),
    "header_not_object.safetensors": (st("[1, 2]"), "expected a JSON object"),
    "header_invalid_utf8.safetensors": (st(b"{\"\xff\": 1}"), "header is not valid JSON"),
    "entry_not_object.safetensors": (st("{\"w\": 3}"), "tensor \"w\": expected an object"),
    "unknown_dtype.safetensors": (st(st_json({"w": entry("F7", [2], 0, 8)}), EIGHT), "tensor \"w\": unknown dtype \"F7\""),
    "missing_offsets.safetensors": (st("{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", EIGHT), "tensor \"w\": missing \"data_offsets\""),
    "bad_shape.safetensors": (st(st_json({"w": entry("F32", [2, -1], 0, 8)}), EIGHT), "tensor \"w\": \"shape\" must be an array of non-negative integers"),
    "size_mismatch.safetensors": (st(st_json({"w": entry("F32", [2, 2], 0, 12)}), bytes(12)), "tensor \"w\": F32 [2, 2] takes 16 bytes, but data_offsets [0, 12] span 12"),
    "shape_overflow.safetensors": (st(st_json({"w": entry("F32", [2**40, 2**40, 2**40], 0, 8)}), EIGHT), "tensor \"w\": shape [1099511627776, 1099511627776, 1099511627776] overflows"),
    "offsets_reversed.safetensors": (st(st_json({"w": entry("U8", [0], 8, 4)}), EIGHT), "tensor \"w\": data_offsets [8, 4] are reversed"),
    "offsets_past_end.safetensors": (st(st_json({"w": entry("U8", [1000], 0, 1000)}), EIGHT), "tensor \"w\": data_offsets [0, 1000] end past the 8 bytes of data"),
    "gap.safetensors": (
        st(st_json({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 8, 12)}), bytes(12)),
        "tensor \"b\" starts at data offset 8, but the previous tensor ends at 4",
    ),
    "overlap.safetensors": (
        st(st_json({"a": entry("U8", [8], 0, 8), "b": entry("U8", [8], 4, 12)}), bytes(12)),
        "tensor \"b\" starts at data offset 4, but the previous tensor ends at 8",
    ),
    "trailing_bytes.safetensors": (st(st_json({"w": entry("U8", [4], 0, 4)}), EIGHT), "tensors end at data offset 4, but the data is 8 bytes"),
    "duplicate_name.safetensors": (
        st("{\"w\": " + json.dumps(entry("U8", [4], 0, 4)) + ", \"w\": " + json.dumps(entry("U8", [4], 4, 8)) + "}", EIGHT),
        "duplicate tensor name \"w\"",
    ),
    "metadata_not_strings.safetensors": (st("{\"__metadata__\": {\"format\": 1}}"), "__metadata__ values must be strings"),
}


# ---------------------------------------------------------------------------------------------
# PyTorch .pth (torch.save's zip archive with a pickle). Opcodes: Python's Lib/pickletools.py;
# layout: torch/serialization.py `_save` (`<archive>/data.pkl`, `<archive>/data/<key>`,
# `<archive>/byteorder`). Each case is a file that must be refused without running anything.


def pk_str(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def pk_int(n):
    return b"J" + struct.pack("<i", n)


def pk_tuple(*items):
    return b"(" + b"".join(items) + b"t"


def pk_tensor(key, numel, offset, size, stride, storage="FloatStorage"):
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    pid = pk_tuple(pk_str("storage"), f"ctorch\n{storage}\n".encode(), pk_str(key), pk_str("cpu"),
                   pk_int(numel))
    args = pk_tuple(pid + b"Q", pk_int(offset), pk_tuple(*map(pk_int, size)),
                    pk_tuple(*map(pk_int, stride)), b"\x89",
                    b"ccollections\nOrderedDict\n)R")
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def pk_state_dict(items):
    body = b"".join(pk_str(k) + v for k, v in items)
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u}b."


def pth(pickle_bytes, storages=None, method=zipfile.ZIP_STORED, byteorder=b"little"):
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        def add(name, data):
            info = zipfile.ZipInfo(f"archive/{name}", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
        add("data.pkl", pickle_bytes)
        add("byteorder", byteorder)
        for k, v in (storages or {}).items():
            add(f"data/{k}", v)
    return buf.getvalue()


F32x6 = struct.pack("<6f", *range(6))
GOOD_TENSOR = pk_tensor("0", 6, 0, [2, 3], [3, 1])


def pth_cases():
    good = pth(pk_state_dict([("w", GOOD_TENSOR)]), {"0": F32x6})
    encrypted = bytearray(good)
    at = encrypted.index(b"PK\x01\x02")  # first central header: set the encryption flag
    encrypted[at + 8] |= 1
    many = bytearray(good)
    eocd = many.rindex(b"PK\x05\x06")
    many[eocd + 8:eocd + 12] = struct.pack("<HH", 0xFFFE, 0xFFFE)
    return {
        "os_system.pth": (pth(b"\x80\x02cos\nsystem\n" + pk_tuple(pk_str("echo pwned")) + b"R."),
                          "refused global `os.system`"),
        "posix_system_stack_global.pth": (
            pth(b"\x80\x02" + pk_str("posix") + pk_str("system") + b"\x93" + pk_tuple(pk_str("id")) + b"R."),
            "refused global `posix.system`"),
        "builtins_eval.pth": (pth(b"\x80\x02cbuiltins\neval\n" + pk_tuple(pk_str("1")) + b"R."),
                              "refused global `builtins.eval`"),
        "rebuild_parameter.pth": (pth(b"\x80\x02ctorch._utils\n_rebuild_parameter\n)R."),
                                  "refused global `torch._utils._rebuild_parameter`"),
        "long_storage.pth": (pth(pk_state_dict([("w", pk_tensor("0", 6, 0, [6], [1], "LongStorage"))]),
                                 {"0": b"\0" * 48}),
                             "storage class `torch.LongStorage` is not supported"),
        "inst_opcode.pth": (pth(b"\x80\x02(ios\nsystem\n."), "opcode INST (0x69)"),
        "newobj_opcode.pth": (pth(b"\x80\x02ccollections\nOrderedDict\n)\x81."), "opcode NEWOBJ (0x81)"),
        "reduce_on_string.pth": (pth(b"\x80\x02" + pk_str("x") + b")R."), "REDUCE calls a str"),
        "no_stop.pth": (pth(b"\x80\x02ccollections\nOrderedDict\n)R"), "ends without STOP"),
        "memo_never_stored.pth": (pth(b"\x80\x02h\x07."), "memo key 7 was never stored"),
        "not_a_dict.pth": (pth(b"\x80\x02" + pk_int(3) + b"."), "holds a int, not a state dict"),
        "storage_past_end.pth": (pth(pk_state_dict([("w", pk_tensor("0", 6, 4, [2, 3], [3, 1]))]),
                                     {"0": F32x6}),
                                 "lie past the end of storage"),
        "storage_size_mismatch.pth": (pth(pk_state_dict([("w", pk_tensor("0", 600, 0, [2, 3], [3, 1]))]),
                                          {"0": F32x6}),
                                      "declares 600 F32 elements but holds 24 bytes"),
        "missing_storage.pth": (pth(pk_state_dict([("w", GOOD_TENSOR)])),
                                "storage \"archive/data/0\" is not in the archive"),
        "storage_key_traversal.pth": (pth(pk_state_dict([("w", pk_tensor("../../etc/passwd", 6, 0, [6], [1]))])),
                                      "is not a plain name"),
        "transposed.pth": (pth(pk_state_dict([("w", pk_tensor("0", 6, 0, [2, 3], [1, 2]))]), {"0": F32x6}),
                           "is not contiguous"),
        "big_endian.pth": (pth(pk_state_dict([("w", GOOD_TENSOR)]), {"0": F32x6}, byteorder=b"big"),
                           "byteorder is \"big\""),
        "deflate_bomb.pth": (pth(pk_state_dict([("w", GOOD_TENSOR)]), {"0": b"\0" * (1 << 24)},
                                 method=zipfile.ZIP_DEFLATED),
                             "is compressed (method 8, deflate)"),
        "encrypted.pth": (bytes(encrypted), "is encrypted"),
        "absurd_entry_count.pth": (bytes(many), "65534 entries cannot fit"),
        "truncated.pth": (good[: len(good) // 2], "no zip end-of-central-directory record"),
        "not_a_zip.pth": (b"\x80\x02}." + b"\0" * 40, "no zip end-of-central-directory record"),
        "legacy_format.pth": (b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + b"\0" * 32,
                              "legacy (pre-1.6, non-zip) torch.save format"),
        "no_data_pkl.pth": (pth(b"").replace(b"archive/data.pkl", b"archive/datx.pkl"),
                            "expected one <archive>/data.pkl entry"),
    }


def main():
    expected = {}
    for folder, cases in (("gguf", GGUF_CASES), ("safetensors", SAFETENSORS_CASES), ("pth", pth_cases())):
        d = OUT / folder
        d.mkdir(parents=True, exist_ok=True)
        for name, (data, message) in cases.items():
            (d / name).write_bytes(data)
            expected[f"{folder}/{name}"] = message
    expected["gguf/big_endian.gguf"] = "this is a big-endian GGUF file"
    with open(OUT / "expected.json", "w", encoding="utf-8") as f:
        json.dump(dict(sorted(expected.items())), f, indent=1)
        f.write("\n")
    print(f"wrote {len(expected)} cases under {OUT}")


if __name__ == "__main__":
    main()
