#!/usr/bin/env python3
"""Tiny random Llama models and their reference logits -> testdata/tiny/.

For every configuration in CONFIGS this script
  1. builds a seeded random LlamaForCausalLM with Hugging Face transformers (float32, eager
     attention) and saves it as safetensors in float32 (hf-f32/) and bfloat16 (hf-bf16/);
  2. converts hf-f32/ with llama.cpp's convert_hf_to_gguf.py to f32/f16/bf16 GGUF and quantizes
     the f32 GGUF with `llama-quantize --pure` to q8_0/q4_0/q4_1, then checks with gguf-py that
     every 2-D weight has the target type;
  3. computes reference logits with transformers in float32 for every position of a fixed token
     sequence, on exactly the weights stored in each file (GGUF tensors dequantized with
     gguf-py, mapped back to HF names, HF's Wq/Wk row permutation re-applied), plus the
     original unrounded weights;
  4. runs llama.cpp (tools/llama_ref.cpp, default context settings, 2 threads) on every GGUF
     for the same sequence;
  5. writes testdata/tiny/manifest.json and prints a sanity table.

Run it with the peer's venv (see tools/README.md):
    $CAMELID_PEER/venv/bin/python tools/make_tiny_models.py [--peer DIR] [--only NAME ...]

Logits files are raw little-endian float32, row-major [n_tokens, n_vocab], no header.
Sources of the facts used here: the Llama architecture and RoPE layouts as in the transformers
Llama model and its convert_llama_weights_to_hf.py `permute`; the GGUF tensor names as written
by llama.cpp's convert_hf_to_gguf.py (gguf-py tensor_mapping); the llama3 RoPE scaling rule as
in meta-llama/llama-models apply_scaling.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
OUT_REL = Path("testdata/tiny")
CORPUS_REL = Path("assets/corpus/hamlet_gut.txt")
N_VOCAB = 384

# Types produced by the converter (--outtype) and by llama-quantize --pure (from the f32 GGUF).
CONVERTED = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
QUANTIZED = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1"}

# Every dimension that is a quantized row length (hidden_size, intermediate_size) is a
# multiple of 32. "layout" says how config.json spells the RoPE settings: "classic" is the
# hub layout of Meta's checkpoints (rope_theta and rope_scaling at the top level), "v5" is what
# transformers >= 5 writes (rope_parameters with rope_theta inside).
CONFIGS = [
    dict(name="llama1-mha", style="LLaMA 1: MHA, eps 1e-6, theta 1e4", layout="classic",
         hidden=64, inter=128, heads=4, kv_heads=4, eps=1e-6, theta=1e4, rope=None, tied=False,
         n_tokens=64, seed=101, std=0.25),
    dict(name="llama2-gqa8", style="Llama 2 70B: GQA 16 heads / 2 kv heads (8:1), eps 1e-5, theta 1e4",
         layout="classic", hidden=128, inter=128, heads=16, kv_heads=2, eps=1e-5, theta=1e4,
         rope=None, tied=False, n_tokens=64, seed=102, std=0.18),
    dict(name="mqa", style="MQA: 4 heads / 1 kv head, eps 1e-5, theta 1e4", layout="classic",
         hidden=64, inter=128, heads=4, kv_heads=1, eps=1e-5, theta=1e4, rope=None, tied=False,
         n_tokens=64, seed=103, std=0.25),
    dict(name="llama3-gqa", style="Llama 3: GQA 8 heads / 2 kv heads (4:1), eps 1e-5, theta 5e5",
         layout="v5", hidden=64, inter=128, heads=8, kv_heads=2, eps=1e-5, theta=5e5, rope=None,
         tied=False, n_tokens=64, seed=104, std=0.25),
    dict(name="llama31-scaled",
         style="Llama 3.1: llama3 rope scaling (factor 8, low 1, high 4, original ctx 32), head_dim 32, "
               "80 tokens, theta 5e5",
         layout="classic", hidden=64, inter=128, heads=2, kv_heads=1, eps=1e-5, theta=5e5,
         rope=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=32),
         tied=False, n_tokens=80, seed=105, std=0.25),
    dict(name="llama32-tied",
         style="Llama 3.2: tied embeddings (no lm_head / output.weight), GQA 4:1, llama3 rope scaling "
               "factor 32 (original ctx 8192), theta 5e5",
         layout="v5", hidden=64, inter=128, heads=8, kv_heads=2, eps=1e-5, theta=5e5,
         rope=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192),
         tied=True, n_tokens=64, seed=106, std=0.25, max_pos=131072),
]


def log(*a):
    print(*a, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cmd, **kw):
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(str(c) for c in cmd)}")
    return res


# ---------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(dest: Path) -> Path:
    """SentencePiece BPE with byte fallback, Llama-style special ids (unk 0, bos 1, eos 2)."""
    import sentencepiece as spm

    corpus = REPO / CORPUS_REL
    if not corpus.is_file():
        raise SystemExit(f"{CORPUS_REL} is missing: run scripts/fetch-assets.sh")
    dest.mkdir(parents=True, exist_ok=True)
    # The model file records the input and prefix paths: use fixed relative names so that the
    # bytes do not depend on where this runs.
    shutil.copyfile(corpus, dest / "corpus.txt")
    cwd = os.getcwd()
    os.chdir(dest)
    try:
        spm.SentencePieceTrainer.train(
            input="corpus.txt", model_prefix="tokenizer", model_type="bpe", vocab_size=N_VOCAB,
            byte_fallback=True, character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=1, split_digits=True, input_sentence_size=0, shuffle_input_sentence=False,
            add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
            allow_whitespace_only_pieces=True, minloglevel=2)
    finally:
        os.chdir(cwd)
    (dest / "tokenizer.vocab").unlink()
    model = dest / "tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert sp.get_piece_size() == N_VOCAB
    log(f"tokenizer: {N_VOCAB} pieces, sha256 {sha256(model)[:16]}, "
        f"'To be, or not to be' -> {sp.encode('To be, or not to be', out_type=str)}")
    return model


# ---------------------------------------------------------------------------------------------
# models


def llama3_rope_regions(c) -> dict:
    """Which llama3-scaling region each RoPE frequency falls in (meta-llama/llama-models
    apply_scaling): wavelength < L/high -> unchanged, > L/low -> divided by factor, else mixed."""
    r = c["rope"]
    d = c["hidden"] // c["heads"]
    L = r["original_max_position_embeddings"]
    out = {"unchanged": 0, "divided": 0, "interpolated": 0}
    for i in range(d // 2):
        freq = 1.0 / (c["theta"] ** (2 * i / d))
        wavelen = 2 * math.pi / freq
        if wavelen < L / r["high_freq_factor"]:
            out["unchanged"] += 1
        elif wavelen > L / r["low_freq_factor"]:
            out["divided"] += 1
        else:
            out["interpolated"] += 1
    return out


def make_config(c):
    from transformers import LlamaConfig

    kw = dict(
        vocab_size=N_VOCAB, hidden_size=c["hidden"], intermediate_size=c["inter"],
        num_hidden_layers=2, num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
        head_dim=c["hidden"] // c["heads"], max_position_embeddings=c.get("max_pos", 512), rms_norm_eps=c["eps"],
        hidden_act="silu", tie_word_embeddings=c["tied"], bos_token_id=1, eos_token_id=2,
        attention_bias=False, mlp_bias=False, attn_implementation="eager")
    rope = {"rope_type": "default", "rope_theta": c["theta"]}
    if c["rope"] is not None:
        rope = dict(c["rope"], rope_theta=c["theta"])
    kw["rope_parameters"] = rope
    cfg = LlamaConfig(**kw)
    cfg._attn_implementation = "eager"
    return cfg


def build_model(c):
    from transformers import LlamaForCausalLM

    cfg = make_config(c)
    torch.manual_seed(c["seed"])
    model = LlamaForCausalLM(cfg).float().eval()
    gen = torch.Generator().manual_seed(c["seed"])
    with torch.no_grad():
        # named_parameters() lists a tied lm_head once (as the embedding).
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * c["std"])
            else:  # RMSNorm gains, jittered around 1
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
    if c["tied"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def fresh_model(c, state: dict):
    """A model of configuration c holding exactly the tensors in `state` (HF names, float32)."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(make_config(c)).float().eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if c["tied"] else set()
    if set(missing) - allowed_missing or unexpected:
        raise SystemExit(f"{c['name']}: state dict mismatch: missing {missing}, unexpected {unexpected}")
    if c["tied"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def logits_of(model, tokens) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32).numpy().astype("<f4")


def rewrite_config(path: Path, c) -> dict:
    """transformers 5 writes rope_parameters; the hub's Llama checkpoints say rope_theta and
    rope_scaling (and torch_dtype for dtype, and no head_dim). For layout "classic" rewrite the
    file that way (transformers reads both)."""
    cfg = json.loads(path.read_text())
    if c["layout"] == "classic":
        rp = cfg.pop("rope_parameters")
        new = {}
        for k, v in cfg.items():
            if k == "dtype":
                k = "torch_dtype"
            if k == "head_dim":  # Meta's LLaMA 1/2/3/3.1 configs do not state it
                continue
            new[k] = v
            if k == "rms_norm_eps":
                new["rope_theta"] = rp["rope_theta"]
                new["rope_scaling"] = None
        if rp.get("rope_type", "default") != "default":
            new["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
        cfg = new
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg


def check_config_roundtrip(hf_dir: Path, c):
    """transformers must read the written config.json back to the same RoPE settings."""
    from transformers import AutoConfig

    got = AutoConfig.from_pretrained(hf_dir)
    rp = got.rope_parameters
    assert got.head_dim == c["hidden"] // c["heads"], (c["name"], got.head_dim)
    assert float(rp["rope_theta"]) == c["theta"], (c["name"], rp)
    want = c["rope"] or {"rope_type": "default"}
    for k, v in want.items():
        assert rp.get(k) == v, (c["name"], k, rp)


def save_hf(model, c, out: Path, tok_model: Path):
    f32_dir, bf16_dir = out / "hf-f32", out / "hf-bf16"
    for d in (f32_dir, bf16_dir):
        if d.exists():
            shutil.rmtree(d)
    model.save_pretrained(f32_dir, safe_serialization=True)
    model_bf16 = copy.deepcopy(model).to(torch.bfloat16)  # round to nearest even
    model_bf16.save_pretrained(bf16_dir, safe_serialization=True)
    for d in (f32_dir, bf16_dir):
        (d / "generation_config.json").unlink(missing_ok=True)
        rewrite_config(d / "config.json", c)
        check_config_roundtrip(d, c)
    # The converter reads the tokenizer from the model directory; hf-bf16 is never converted.
    # tokenizer_config.json as in Meta's Llama 2 hub repos, so the GGUF gets
    # tokenizer.ggml.add_bos_token = true and add_eos_token = false.
    shutil.copyfile(tok_model, f32_dir / "tokenizer.model")
    (f32_dir / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer"}, indent=2) + "\n")
    return json.loads((f32_dir / "config.json").read_text())


def load_safetensors(hf_dir: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(hf_dir.glob("*.safetensors"))
    assert len(files) == 1, files
    return {k: v.to(torch.float32) for k, v in load_file(files[0]).items()}


# ---------------------------------------------------------------------------------------------
# GGUF


def hf_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Re-apply Hugging Face's Wq/Wk row order (transformers convert_llama_weights_to_hf.py
    `permute`) to a GGUF (Meta-layout) matrix: within each head, rows (2j, 2j+1) go to
    (j, j + head_dim/2). Inverse of the converter's LlamaModel.permute."""
    rows, cols = w.shape
    half = rows // n_head // 2
    return w.reshape(n_head, half, 2, cols).swapaxes(1, 2).reshape(rows, cols)


GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
GGUF_BLK_TO_HF = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def read_gguf(path: Path, c):
    """Returns (HF state dict in float32, {gguf name: type name}, rope_freqs or None)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    state, types, rope_freqs = {}, {}, None
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))  # numpy order: rows first
        arr = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        types[t.name] = t.tensor_type.name
        if t.name == "rope_freqs.weight":
            rope_freqs = arr.copy()
            continue
        if t.name in GGUF_TO_HF:
            hf = GGUF_TO_HF[t.name]
        else:
            parts = t.name.split(".")
            if len(parts) != 4 or parts[0] != "blk" or parts[2] not in GGUF_BLK_TO_HF or parts[3] != "weight":
                raise SystemExit(f"{path}: unexpected tensor {t.name}")
            hf = f"model.layers.{parts[1]}.{GGUF_BLK_TO_HF[parts[2]]}.weight"
            if parts[2] == "attn_q":
                arr = hf_permute(arr, c["heads"])
            elif parts[2] == "attn_k":
                arr = hf_permute(arr, c["kv_heads"])
        state[hf] = torch.from_numpy(arr.copy())
    return state, types, rope_freqs


def check_types(path: Path, types: dict, target: str, c) -> dict:
    """Every 2-D weight must have the target type, every 1-D tensor F32. Returns exceptions."""
    exceptions = {}
    for name, ty in types.items():
        two_d = not (name.endswith("_norm.weight") or name == "rope_freqs.weight")
        want = target if two_d else "F32"
        if ty != want:
            exceptions[name] = ty
    if "output.weight" in types and c["tied"]:
        raise SystemExit(f"{path}: tied model has output.weight")
    if "output.weight" not in types and not c["tied"]:
        raise SystemExit(f"{path}: untied model lacks output.weight")
    return exceptions


# ---------------------------------------------------------------------------------------------
# llama.cpp


def build_llama_ref(peer: Path, cpu_lib: Path | None) -> Path:
    src = REPO / "tools/llama_ref.cpp"
    lib = peer / "llama.cpp/build/bin"
    out_dir = REPO / "target/camelid-tools"
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / "llama_ref"
    cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra",
           "-I", peer / "llama.cpp/include", "-I", peer / "llama.cpp/ggml/include",
           src, "-o", exe]
    if cpu_lib is not None:
        # A replacement libggml-cpu (same source, other CPU features), found before the peer's.
        cmd += ["-L", cpu_lib, "-Wl,--no-as-needed", "-lggml-cpu", "-Wl,--as-needed",
                f"-Wl,-rpath,{cpu_lib}"]
    cmd += ["-L", lib, "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{lib}"]
    run(cmd)
    return exe


def llamacpp_logits(exe: Path, gguf_path: Path, tokens, out_bin: Path, exact: bool = False):
    """llama.cpp's logits with default context settings, or with exact=True an F32 KV cache and
    no flash attention (a cross-check only, never stored)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(" ".join(str(t) for t in tokens) + "\n")
        tok_file = f.name
    env = dict(os.environ, LLAMA_REF_THREADS="2")
    env.pop("LLAMA_REF_EXACT", None)
    if exact:
        env["LLAMA_REF_EXACT"] = "1"
    try:
        run([exe, "logits", gguf_path, tok_file, out_bin], env=env)
    finally:
        os.unlink(tok_file)


# ---------------------------------------------------------------------------------------------


def dumps_compact(obj) -> str:
    """JSON with one level of indentation per nesting, lists of scalars kept on one line."""
    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict) and o:
            items = [f'{pad} {json.dumps(k)}: {enc(v, ind + 1)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and o and any(isinstance(x, (dict, list)) for x in o):
            return "[\n" + ",\n".join(pad + " " + enc(x, ind + 1) for x in o) + "\n" + pad + "]"
        return json.dumps(o)
    return enc(obj, 0) + "\n"


def write_bin(path: Path, arr: np.ndarray):
    path.write_bytes(np.ascontiguousarray(arr, dtype="<f4").tobytes())


def stats(a: np.ndarray, b: np.ndarray):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    top1 = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return float(d.max()), float(d.mean()), top1


def make_one(c, args, tok_model: Path, exe: Path | None, rows: list) -> dict:
    name = c["name"]
    out = REPO / OUT_REL / name
    out.mkdir(parents=True, exist_ok=True)
    log(f"\n=== {name}: {c['style']}")

    if c["rope"] is not None:
        regions = llama3_rope_regions(c)
        log(f"llama3 rope regions over {c['hidden'] // c['heads'] // 2} frequencies: {regions}")
        if name == "llama31-scaled":
            assert all(v > 0 for v in regions.values()), regions
            assert c["n_tokens"] > c["rope"]["original_max_position_embeddings"]

    model = build_model(c)
    rng = np.random.default_rng(c["seed"])
    tokens = [1] + [int(t) for t in rng.integers(3, N_VOCAB, size=c["n_tokens"] - 1)]
    unrounded = logits_of(model, tokens)
    top = np.sort(unrounded, axis=-1)
    log(f"logits: std {unrounded.std():.3f}, max |x| {np.abs(unrounded).max():.2f}, "
        f"median top1-top2 gap {np.median(top[:, -1] - top[:, -2]):.3f}, "
        f"min gap {np.min(top[:, -1] - top[:, -2]):.4f}")
    hf_config = save_hf(model, c, out, tok_model)

    files = {"st-f32": f"{name}/hf-f32", "st-bf16": f"{name}/hf-bf16"}
    refs = {"unrounded": unrounded}
    orig_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    st = load_safetensors(out / "hf-f32")
    if c["tied"]:
        assert "lm_head.weight" not in st, "tied checkpoint stores lm_head"
    for k, v in st.items():
        assert torch.equal(v, orig_state[k]), k
    refs["st-f32"] = logits_of(fresh_model(c, st), tokens)
    assert np.array_equal(refs["st-f32"], unrounded), "st-f32 ref differs from the original model"
    refs["st-bf16"] = logits_of(fresh_model(c, load_safetensors(out / "hf-bf16")), tokens)

    convert = [peer_python(args.peer), args.peer / "llama.cpp/convert_hf_to_gguf.py"]
    quantize = args.peer / "llama.cpp/build/bin/llama-quantize"
    notes = {}
    gguf_paths = {}
    for key, target in list(CONVERTED.items()) + list(QUANTIZED.items()):
        path = out / f"{key}.gguf"
        if key in CONVERTED:
            run(convert + [out / "hf-f32", "--outtype", key, "--outfile", path,
                           "--model-name", f"camelid-tiny-{name}"])
        else:
            run([quantize, "--pure", out / "f32.gguf", path, target.upper(), "2"])
        state, types, rope_freqs = read_gguf(path, c)
        exc = check_types(path, types, target, c)
        if exc:
            notes[f"gguf-{key}"] = {"tensor_types_other_than_target": exc}
            log(f"  {key}: tensors not in {target}: {exc}")
        if c["rope"] is not None:
            assert rope_freqs is not None, f"{path}: no rope_freqs.weight"
            # GGUF stores per-pair divisors of theta^(-2i/d); compare with transformers' inv_freq.
            d = c["hidden"] // c["heads"]
            base = 1.0 / (c["theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d))
            inv = model.model.rotary_emb.inv_freq.double().numpy()
            rel = np.max(np.abs(base / rope_freqs.astype(np.float64) - inv) / inv)
            assert rel < 1e-5, rel
            if key == "f32":
                log(f"  rope_freqs (divisors) {np.round(rope_freqs, 4).tolist()}, "
                    f"max rel diff to HF inv_freq {rel:.2e}")
        else:
            assert rope_freqs is None
        if key == "f32":
            for k, v in orig_state.items():
                if k == "lm_head.weight" and c["tied"]:
                    continue
                assert torch.equal(state[k], v), f"f32 GGUF {k} differs from the original"
        ref = logits_of(fresh_model(c, state), tokens)
        if key == "f32":
            assert np.array_equal(ref, unrounded), "gguf-f32 ref differs from the original model"
        refs[f"gguf-{key}"] = ref
        files[f"gguf-{key}"] = f"{name}/{key}.gguf"
        gguf_paths[f"gguf-{key}"] = path

    # bf16: the converter rounds like torch (to nearest even); norms stay F32 in the GGUF.
    st_bf16 = load_safetensors(out / "hf-bf16")
    g_bf16, _, _ = read_gguf(out / "bf16.gguf", c)
    for k, v in g_bf16.items():
        if "norm" not in k:
            assert torch.equal(v, st_bf16[k]), f"bf16 GGUF {k} differs from hf-bf16"

    # Write refs, deduplicating byte-identical arrays (unrounded = st-f32 = gguf-f32).
    ref_paths, written = {}, {}
    order = ["unrounded", "st-f32", "st-bf16"] + [f"gguf-{k}" for k in list(CONVERTED) + list(QUANTIZED)]
    for key in order:
        blob = np.ascontiguousarray(refs[key], dtype="<f4").tobytes()
        h = hashlib.sha256(blob).hexdigest()
        if h not in written:
            rel = f"{name}/ref-{key}.bin"
            (REPO / OUT_REL / rel).write_bytes(blob)
            written[h] = rel
        ref_paths[key] = written[h]
    for stale in out.glob("ref-*.bin"):
        if f"{name}/{stale.name}" not in written.values():
            stale.unlink()

    llamacpp = {}
    if exe is not None:
        for key, path in gguf_paths.items():
            rel = f"{name}/llamacpp-{key[len('gguf-'):]}.bin"
            llamacpp_logits(exe, path, tokens, REPO / OUT_REL / rel)
            got = np.fromfile(REPO / OUT_REL / rel, dtype="<f4")
            assert got.size == len(tokens) * N_VOCAB, (rel, got.size)
            got = got.reshape(len(tokens), N_VOCAB)
            llamacpp[key] = rel
            mx_u, mean_u, t1_u = stats(got, unrounded)
            mx_f, mean_f, t1_f = stats(got, refs[key])
            rows.append((name, key, mx_u, mean_u, t1_u, mx_f, mean_f, t1_f))
            log(f"  llama.cpp {key:10s} vs unrounded max {mx_u:.2e} mean {mean_u:.2e} top1 {t1_u:.3f} | "
                f"vs ref[file] max {mx_f:.2e} mean {mean_f:.2e} top1 {t1_f:.3f}")
        # Cross-check of the whole chain (names, permutation, RoPE scaling, tied output): on F32
        # weights with an F32 KV cache and no flash attention llama.cpp agrees with transformers.
        with tempfile.TemporaryDirectory() as tmp:
            llamacpp_logits(exe, gguf_paths["gguf-f32"], tokens, Path(tmp) / "x.bin", exact=True)
            got = np.fromfile(Path(tmp) / "x.bin", dtype="<f4").reshape(len(tokens), N_VOCAB)
        mx, mean, _ = stats(got, unrounded)
        log(f"  llama.cpp f32 with F32 KV cache, no flash attention: max {mx:.2e} mean {mean:.2e}")
        assert mx < 2e-4, mx
    for key in ["st-bf16"] + [f"gguf-{k}" for k in list(CONVERTED)[1:] + list(QUANTIZED)]:
        mx, mean, t1 = stats(refs[key], unrounded)
        log(f"  ref[{key}] vs unrounded: max {mx:.2e} mean {mean:.2e} top1 {t1:.3f}")

    entry = {
        "name": name, "style": c["style"], "n_vocab": N_VOCAB, "tokens": tokens,
        "hf_config": hf_config, "files": files, "ref": ref_paths, "llamacpp": llamacpp,
    }
    if notes:
        entry["notes"] = notes
    return entry


def peer_python(peer: Path) -> Path:
    return peer / "venv/bin/python"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")),
                    help="llama.cpp peer directory (default $CAMELID_PEER or ~/.cache/camelid-peer)")
    ap.add_argument("--ggml-cpu-lib", type=Path, default=os.environ.get("LLAMA_REF_GGML_CPU_LIB"),
                    help="directory with a replacement libggml-cpu.so for llama_ref (see tools/README.md)")
    ap.add_argument("--only", nargs="*", help="only these configurations (the manifest keeps the others)")
    ap.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp logits")
    args = ap.parse_args()
    args.peer = args.peer.expanduser().resolve()

    torch.set_num_threads(2)
    out_root = REPO / OUT_REL
    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok_model = train_tokenizer(Path(tmp))
        exe = None if args.no_llamacpp else build_llama_ref(args.peer, args.ggml_cpu_lib)
        manifest_path = out_root / "manifest.json"
        old = {}
        if manifest_path.exists():
            old = {m["name"]: m for m in json.loads(manifest_path.read_text())["models"]}
        rows, models = [], []
        for c in CONFIGS:
            if args.only and c["name"] not in args.only:
                if c["name"] in old:
                    models.append(old[c["name"]])
                continue
            models.append(make_one(c, args, tok_model, exe, rows))
    manifest = {"generator": "tools/make_tiny_models.py", "models": models}
    manifest_path.write_text(dumps_compact(manifest))

    if rows:
        log("\n| model | file | max vs unrounded | mean vs unrounded | top-1 vs unrounded "
            "| max vs ref[file] | mean vs ref[file] | top-1 vs ref[file] |")
        log("|---|---|---|---|---|---|---|---|")
        for r in rows:
            log(f"| {r[0]} | {r[1]} | {r[2]:.2e} | {r[3]:.2e} | {r[4]:.3f} | {r[5]:.2e} | {r[6]:.2e} | {r[7]:.3f} |")
    total = sum(p.stat().st_size for p in out_root.rglob("*") if p.is_file())
    biggest = max((p for p in out_root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    log(f"\ntestdata/tiny: {total / 1e6:.2f} MB, largest file {biggest.relative_to(REPO)} "
        f"{biggest.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
