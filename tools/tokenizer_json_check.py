#!/usr/bin/env python3
"""Checks the tokenizer.json that camelid writes into a checkpoint for a tokenizer that had none
(crates/camelid-tokenizer/src/json_write.rs via camelid_train::checkpoint::tokenizer_files)
with Hugging Face's own readers: for each source vocabulary, the folder's tokenizer.json in
`tokenizers` and the folder in transformers' AutoTokenizer must encode every string of the
fixture corpus (testdata/tokenizer/corpus.jsonl, made by tools/tokenizer_corpus.py) to the ids of
the independent reference stored there (llama.cpp, tiktoken, Hugging Face tokenizers), with
special tokens parsed and not, put BOS in front as the vocabulary asks, and decode back to the
text. The same folders are checked on camelid's side by crates/camelid-train/tests/
checkpoint_tokenizer.rs, so passing both means the two libraries encode alike.

Needs the assets (scripts/fetch-assets.sh, or CAMELID_ASSETS), the example built:
    cargo build --release -p camelid-train --example tokenizer_files
and a Python with tokenizers and transformers (no torch needed). Run from the repository root:
    python tools/tokenizer_json_check.py
Exits 1 if anything differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("CAMELID_ASSETS", ROOT / "assets"))
EXAMPLE = ROOT / "target" / "release" / "examples" / "tokenizer_files"

# (name, source, corpus key without special tokens parsed, with them parsed)
SOURCES = [
    ("llama2 GGUF vocabulary", ASSETS / "llama-spm" / "ggml-vocab-llama-spm.gguf",
     "llama_spm", "llama_spm"),
    ("llama3 GGUF vocabulary", ASSETS / "llama-bpe" / "ggml-vocab-llama-bpe.gguf",
     "llama3", "llama3_gguf"),
    ("llama3 tiktoken tokenizer.model", ASSETS / "llama3-meta" / "tokenizer.model",
     "llama3", "llama3"),
    ("SmolLM2 GGUF", ASSETS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf",
     "smollm2", "smollm2"),
    # SentencePiece puts the ▁ only in front of the whole text, Hugging Face in front of each
    # stretch between added tokens: the reference is HF on the same vocabulary (spm_tiny_json,
    # stored where it differs from sentencepiece's spm_tiny).
    ("SentencePiece tokenizer.model (spm-tiny)", ROOT / "testdata" / "tokenizer" / "spm-tiny.model",
     "spm_tiny_json", None),
]

DECODE_REFERENCE = {"spm_tiny_json": ROOT / "testdata" / "tokenizer" / "spm-tiny.json"}


def load_corpus():
    # Records end at "\n" only: the strings hold other line breaks that splitlines() would cut at.
    text = (ROOT / "testdata" / "tokenizer" / "corpus.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.split("\n")[1:] if line]
    # The 100 KB line is stored as ids only; its text is generated as tools/tokenizer_corpus.py does.
    sys.path.insert(0, str(ROOT / "tools"))
    from tokenizer_corpus import SEED, long_line

    for r in records:
        if r.get("long_line"):
            r["text"] = long_line(SEED)
    return records


def want(rec, key):
    if key == "spm_tiny_json" and key not in rec:
        return rec["spm_tiny"]
    return rec[key]


def check(name, src, key, special_key, corpus, work) -> int:
    """Compares one written folder with the references; returns the number of differences."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    folder = Path(work) / key
    subprocess.run([str(EXAMPLE), str(src), str(folder)], check=True, capture_output=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # Decoding: back to the text, except where Hugging Face's own file of this layout does not
    # (spm-tiny: its Prepend normalizer puts a ▁ after a user-defined piece that decodes to a
    # space); there the reference is that file's decoding of the same ids.
    dec_ref = Tokenizer.from_file(str(DECODE_REFERENCE[key])) if key in DECODE_REFERENCE else None
    auto = AutoTokenizer.from_pretrained(str(folder))
    bad = []
    n_special = 0
    for rec in corpus:
        text = rec["text"]
        ref = want(rec, key)
        hf.encode_special_tokens = True  # special tokens as plain text, as camelid without parse_special
        got = hf.encode(text, add_special_tokens=False).ids
        if got != ref:
            bad.append(f"tokenizers {text!r}: {got} != {ref}")
        back = hf.decode(got, skip_special_tokens=False)
        if back != (dec_ref.decode(got, skip_special_tokens=False) if dec_ref else text):
            bad.append(f"tokenizers decode {text!r} -> {back!r}")
        hf.encode_special_tokens = False
        sref = ref
        if special_key and "special" in rec:
            n_special += 1
            sref = rec["special"][special_key]
            got = hf.encode(text, add_special_tokens=False).ids
            if got != sref:
                bad.append(f"tokenizers (special parsed) {text!r}: {got} != {sref}")
        elif rec.get("special") is not None:
            continue  # no reference with special tokens parsed for this vocabulary
        # transformers parses special tokens, as HF does by default.
        got = auto(text, add_special_tokens=False)["input_ids"]
        if got != sref:
            bad.append(f"transformers {text!r}: {got} != {sref}")
    text = "Fair is foul, and foul is fair."
    plain = hf.encode(text, add_special_tokens=False).ids
    bos = hf.token_to_id(cfg["bos_token"]) if cfg.get("bos_token") else None
    expect = ([bos] if cfg.get("add_bos_token") and bos is not None else []) + plain
    for who, got in [("tokenizers", hf.encode(text).ids), ("transformers", auto(text)["input_ids"])]:
        if got != expect:
            bad.append(f"{who} with special tokens added: {got} != {expect}")
    status = "ok" if not bad else f"{len(bad)} differences"
    print(f"{name}: {len(corpus)} strings ({n_special} also with special tokens parsed), "
          f"tokenizers and transformers: {status}")
    for b in bad[:10]:
        print("  " + b[:400])
    return len(bad)


def main() -> None:
    if not EXAMPLE.exists():
        sys.exit(f"{EXAMPLE.relative_to(ROOT)}: not built (see this script's docstring)")
    import tokenizers
    import transformers
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    corpus = load_corpus()
    n_bad = 0
    with tempfile.TemporaryDirectory() as work:
        for name, src, key, special_key in SOURCES:
            if not src.exists():
                sys.exit(f"{src}: missing (scripts/fetch-assets.sh)")
            n_bad += check(name, src, key, special_key, corpus, work)
    sys.exit(1 if n_bad else 0)


if __name__ == "__main__":
    main()
