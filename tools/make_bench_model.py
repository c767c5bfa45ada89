#!/usr/bin/env python3
"""The benchmark model: a Llama 3.2 1B-shaped GGUF (F16) with random weights.

Shape of meta-llama/Llama-3.2-1B (its config.json): d_model 2048, 16 layers, 32 query heads and
8 KV heads of 64, FFN 8192, vocabulary 128256, tied embeddings, RMSNorm eps 1e-5, RoPE theta
500000 with the "llama3" scaling (factor 32, low 1, high 4, original context 8192), stored as
GGUF `rope_freqs.weight` divisors as llama.cpp's converter writes them. The tokenizer keys are
copied from llama.cpp's Llama 3 vocabulary (assets/llama-bpe/ggml-vocab-llama-bpe.gguf).

Weights: N(0, 0.02²) matrices (a typical initialisation scale), norms 1 + N(0, 0.02²); seeded, so
a rerun writes the same bytes. Speed does not depend on the values, only on the shapes and types.

Run from the repository root with the peer's Python (gguf-py), see tools/README.md:
    $PEER/venv/bin/python tools/make_bench_model.py [--out target/bench-models/llama32-1b-shape-f16.gguf]
    $PEER/venv/bin/python tools/make_bench_model.py VOCAB.gguf OUT.gguf     # another vocabulary
tools/bench.sh runs it and quantizes the result with llama-quantize and with camelid.

The file (2.5 GB) is written to a temporary name and renamed when complete; target/ is
git-ignored.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
VOCAB = Path("assets/llama-bpe/ggml-vocab-llama-bpe.gguf")

D, L, H, HKV, FF, V = 2048, 16, 32, 8, 8192, 128256
HD = D // H
THETA, EPS, CTX = 500000.0, 1e-5, 131072
SCALING = dict(factor=32.0, low=1.0, high=4.0, original=8192)
TOKENIZER_KEYS = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                  "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                  "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]


def rope_divisors() -> np.ndarray:
    """Per-pair divisors of θ^(-2i/d) under the llama3 rule (meta-llama/llama-models
    apply_scaling): wavelengths below L/high keep their frequency, above L/low are divided by
    the factor, and in between interpolate."""
    s = SCALING
    out = []
    for i in range(HD // 2):
        f = THETA ** (-2.0 * i / HD)
        wavelen = 2 * math.pi / f
        if wavelen < s["original"] / s["high"]:
            out.append(1.0)
        elif wavelen > s["original"] / s["low"]:
            out.append(s["factor"])
        else:
            smooth = (s["original"] / wavelen - s["low"]) / (s["high"] - s["low"])
            out.append(1.0 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def tensors():
    """(name, shape [rows, cols] or [n], numpy dtype) in file order."""
    yield "rope_freqs.weight", (HD // 2,), np.float32
    yield "token_embd.weight", (V, D), np.float16
    for i in range(L):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", (D,), np.float32
        yield p + "attn_q.weight", (H * HD, D), np.float16
        yield p + "attn_k.weight", (HKV * HD, D), np.float16
        yield p + "attn_v.weight", (HKV * HD, D), np.float16
        yield p + "attn_output.weight", (D, H * HD), np.float16
        yield p + "ffn_norm.weight", (D,), np.float32
        yield p + "ffn_gate.weight", (FF, D), np.float16
        yield p + "ffn_up.weight", (FF, D), np.float16
        yield p + "ffn_down.weight", (D, FF), np.float16
    yield "output_norm.weight", (D,), np.float32


def values(rng, name, shape, dtype):
    if name == "rope_freqs.weight":
        return rope_divisors()
    if len(shape) == 1:
        return (1.0 + 0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
    out = np.empty(shape, dtype=dtype)
    step = max(1, (1 << 24) // shape[1])
    for r in range(0, shape[0], step):
        chunk = rng.standard_normal((min(step, shape[0] - r), shape[1]), dtype=np.float32)
        out[r:r + step] = chunk * np.float32(0.02)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("vocab_pos", nargs="?", type=Path, metavar="VOCAB",
                    help=f"GGUF whose tokenizer keys to copy (default {VOCAB})")
    ap.add_argument("out_pos", nargs="?", type=Path, metavar="OUT", help="the GGUF to write")
    ap.add_argument("--out", type=Path, default=REPO / "target/bench-models/llama32-1b-shape-f16.gguf")
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    args = ap.parse_args()
    sys.path.insert(0, str(args.peer / "llama.cpp/gguf-py"))
    import gguf  # noqa: E402

    vocab = args.vocab_pos or REPO / VOCAB
    if args.out_pos:
        args.out = args.out_pos
    if not vocab.is_file():
        raise SystemExit(f"{vocab} is missing: run scripts/fetch-assets.sh")
    src = gguf.GGUFReader(str(vocab))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")

    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("llama32-1b-shape-random")
    w.add_block_count(L)
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_rope_freq_base(THETA)
    w.add_layer_norm_rms_eps(EPS)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_file_type(1)  # LLAMA_FTYPE_MOSTLY_F16
    w.add_vocab_size(V)
    w.add_rope_dimension_count(HD)
    for key in TOKENIZER_KEYS:
        f = src.fields[key]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), f.types[0], sub_type=f.types[1])
        else:
            w.add_key_value(key, f.contents(), f.types[0])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    for name, shape, dtype in tensors():
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        w.add_tensor_info(name, shape, np.dtype(dtype), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(20250101)
    for name, shape, dtype in tensors():
        w.write_tensor_data(values(rng, name, shape, dtype))
        print(f"\r{name:32}", end="", file=sys.stderr, flush=True)
    w.close()
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out} ({args.out.stat().st_size / 2**30:.2f} GiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
