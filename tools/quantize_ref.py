#!/usr/bin/env python3
"""llama-quantize's per-tensor types and errors -> testdata/quantize/.

`camelid quantize` must put every tensor in the type llama.cpp's `llama-quantize` picks for the
same file type, and quantize it no worse. This script makes the reference for that check:

  1. writes testdata/quantize/k256.gguf: a small random Llama (F16) whose row lengths (256)
     are multiples of the 256-element k-quant super-block, so that Q2_K..Q6_K apply as such
     (the tiny models in testdata/tiny have rows of 64 and 128, where llama.cpp falls back to
     32-element types); weights are Student-t (5 degrees of freedom, so with a few outliers
     like real checkpoints) with a per-row scale;
  2. runs `llama-quantize IN OUT TYPE 2` (and `--pure` for a few types) on k256.gguf and on
     testdata/tiny/{llama3-gqa,llama32-tied}/f32.gguf;
  3. reads every output with gguf-py, dequantizes every tensor and records its type and its
     RMSE against the input in testdata/quantize/llama_quantize.json:
        { "generator", "llama_cpp", "models": [ { "name", "input", "runs": [ { "ftype", "pure",
          "tensors": { NAME: [TYPE, RMSE] } } ] } ] }
  4. with --camelid BIN, also quantizes every input with camelid, checks that llama.cpp
     (`llama-simple`) loads each camelid file and generates from it, and prints camelid's RMSE
     beside llama-quantize's per type (the assertion itself is in
     crates/camelid-cli/tests/quantize.rs, which reads the JSON).

Run from the repository root with the peer's Python (see tools/README.md):
    $PEER/venv/bin/python tools/quantize_ref.py [--peer $PEER] [--ggml-cpu-lib DIR] [--camelid target/release/camelid]

On a CPU with AMX, pass --ggml-cpu-lib with the library built without AMX (tools/README.md).
Deterministic: a rerun writes byte-identical files.
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
OUT_REL = Path("testdata/quantize")

FTYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M",
          "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"]
PURE = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_XS"]

# k256: 2 layers, d_model 256, 4 query heads of 64 sharing 1 KV head (so Q2_K's n_gqa >= 4 rule
# applies), FFN 256, untied output; the vocabulary (384 SentencePiece tokens) is copied from the
# tiny llama3-gqa model.
K256 = dict(d_model=256, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=256, n_vocab=384, seed=7)
VOCAB_FROM = Path("testdata/tiny/llama3-gqa/f32.gguf")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_k256(gguf, out: Path):
    c = K256
    rng = np.random.default_rng(c["seed"])
    hd = c["d_model"] // c["n_heads"]
    kv = c["n_kv_heads"] * hd

    def mat(rows, cols, scale):
        row_scale = np.exp(rng.normal(0.0, 0.3, size=(rows, 1)))
        w = rng.standard_t(5, size=(rows, cols)) * scale * row_scale
        return w.astype(np.float16)

    src = gguf.GGUFReader(str(REPO / VOCAB_FROM))
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("camelid-quantize-k256")
    w.add_block_count(c["n_layers"])
    w.add_context_length(512)
    w.add_embedding_length(c["d_model"])
    w.add_feed_forward_length(c["d_ff"])
    w.add_head_count(c["n_heads"])
    w.add_head_count_kv(c["n_kv_heads"])
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(1)
    w.add_vocab_size(c["n_vocab"])
    w.add_rope_dimension_count(hd)
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"]:
        f = src.fields[key]
        v = f.contents()
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, v, t, sub_type=f.types[1])
        else:
            w.add_key_value(key, v, t)
    d, ff, v = c["d_model"], c["d_ff"], c["n_vocab"]
    w.add_tensor("token_embd.weight", mat(v, d, 0.5))
    for i in range(c["n_layers"]):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", (1 + 0.1 * rng.normal(size=d)).astype(np.float32))
        w.add_tensor(p + "attn_q.weight", mat(d, d, 0.05))
        w.add_tensor(p + "attn_k.weight", mat(kv, d, 0.05))
        w.add_tensor(p + "attn_v.weight", mat(kv, d, 0.05))
        w.add_tensor(p + "attn_output.weight", mat(d, d, 0.05))
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.normal(size=d)).astype(np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(ff, d, 0.05))
        w.add_tensor(p + "ffn_up.weight", mat(ff, d, 0.05))
        w.add_tensor(p + "ffn_down.weight", mat(d, ff, 0.03))
    w.add_tensor("output_norm.weight", (1 + 0.1 * rng.normal(size=d)).astype(np.float32))
    w.add_tensor("output.weight", mat(v, d, 0.1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tensors_f64(gguf, path: Path) -> dict:
    """name -> (type name, float64 values in GGUF order [rows, cols])."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = (t.tensor_type.name, np.asarray(x, dtype=np.float64).reshape(-1))
    return out


def errors(gguf, src: dict, path: Path) -> dict:
    res = {}
    for name, (ty, x) in tensors_f64(gguf, path).items():
        ref = src[name][1]
        rmse = float(np.sqrt(np.mean((x - ref) ** 2)))
        res[name] = [ty, rmse]
    return res


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                       errors="replace")
    if p.returncode != 0:
        log(p.stdout[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    ap.add_argument("--ggml-cpu-lib", type=Path, default=None,
                    help="folder with a libggml-cpu.so to use instead of the peer's (AMX machines)")
    ap.add_argument("--camelid", type=Path, default=None,
                    help="a camelid binary: also check that llama.cpp loads its outputs")
    args = ap.parse_args()

    sys.path.insert(0, str(args.peer / "llama.cpp/gguf-py"))
    import gguf  # noqa: E402

    bin_dir = args.peer / "llama.cpp/build/bin"
    env = dict(os.environ)
    if args.ggml_cpu_lib:
        env["LD_LIBRARY_PATH"] = f"{args.ggml_cpu_lib}:{env.get('LD_LIBRARY_PATH', '')}"
    out_dir = REPO / OUT_REL
    out_dir.mkdir(parents=True, exist_ok=True)
    k256 = out_dir / "k256.gguf"
    make_k256(gguf, k256)
    log(f"wrote {k256.relative_to(REPO)} ({k256.stat().st_size} bytes)")

    inputs = [("k256", OUT_REL / "k256.gguf"),
              ("llama3-gqa", Path("testdata/tiny/llama3-gqa/f32.gguf")),
              ("llama32-tied", Path("testdata/tiny/llama32-tied/f32.gguf"))]
    models = []
    compare = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, rel in inputs:
            src = tensors_f64(gguf, REPO / rel)
            runs = []
            for ftype in FTYPES:
                for pure in ([False, True] if ftype in PURE else [False]):
                    out = tmp / f"{name}-{ftype}{'-pure' if pure else ''}.gguf"
                    cmd = [bin_dir / "llama-quantize"] + (["--pure"] if pure else []) + \
                        [REPO / rel, out, ftype, "2"]
                    run(cmd, env)
                    ref = errors(gguf, src, out)
                    runs.append(dict(ftype=ftype, pure=pure, tensors=ref))
                    if args.camelid:
                        mine = tmp / f"camelid-{out.name}"
                        run([args.camelid, "quantize", REPO / rel, mine, ftype]
                            + (["--pure"] if pure else []) + ["-t", "2"])
                        got = errors(gguf, src, mine)
                        text = run([bin_dir / "llama-simple", "-m", mine, "-n", "4", "Hello"], env)
                        ratios = [got[t][1] / ref[t][1] for t in ref if ref[t][1] > 0]
                        if any(got[t][1] > 0 for t in ref if ref[t][1] == 0):
                            ratios.append(float("inf"))
                        worst, mean = max(ratios), sum(ratios) / len(ratios)
                        same_types = all(got[t][0] == ref[t][0] for t in ref)
                        compare.append((name, ftype + (" pure" if pure else ""), same_types, worst,
                                        mean, "loads" if text else "?"))
                    log(f"{name} {ftype}{' --pure' if pure else ''}: "
                        + ", ".join(sorted({v[0] for v in ref.values()})))
            models.append(dict(name=name, input=str(rel), runs=runs))

    doc = dict(generator="tools/quantize_ref.py",
               llama_cpp="llama-quantize from llama-cpp-python 0.3.36's vendor/llama.cpp",
               models=models)
    path = out_dir / "llama_quantize.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    log(f"wrote {path.relative_to(REPO)}")
    if compare:
        print("| model | type | same types | RMSE camelid/llama: worst tensor | mean | llama.cpp |")
        print("|---|---|---|---:|---:|---|")
        for row in compare:
            print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.4f} | {row[4]:.4f} | {row[5]} |")


if __name__ == "__main__":
    main()
