"""Reference for camelid-train's data pipeline on the tiny corpus testdata/train/corpus/, written
to testdata/train/data_reference.json.

The rules (crates/camelid-train/src/data.rs), restated here independently of camelid:
- documents: the folder's .txt and .md files, recursively, hidden entries skipped, sorted by
  their path relative to the folder (byte order of the '/'-joined names);
- validation: the ceil(n * fraction) documents whose sha256(content) is smallest (ties by order),
  at most n - 1 of them;
- tokens per document: BOS + SentencePiece ids of the text (no BOS, no EOS) + EOS, with the
  reference `sentencepiece` library on testdata/tokenizer/spm-tiny.model;
- windows of ctx + 1 tokens at stride ctx over a split's stream.

Run from the repository root with a Python that has sentencepiece:
    python tools/train_data_reference.py
"""

import hashlib
import json
import math
import os

import sentencepiece as spm

ROOT = os.path.join("testdata", "train", "corpus")
MODEL = os.path.join("testdata", "tokenizer", "spm-tiny.model")
OUT = os.path.join("testdata", "train", "data_reference.json")
VAL_FRACTION = 0.25
CTX = 8


def documents():
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if f.startswith(".") or not f.lower().endswith((".txt", ".md")):
                continue
            full = os.path.join(dirpath, f)
            found.append(os.path.relpath(full, ROOT).replace(os.sep, "/"))
    found.sort(key=lambda n: os.path.join(ROOT, n).encode())
    return found


def main():
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    names = documents()
    texts = [open(os.path.join(ROOT, n), "rb").read() for n in names]
    hashes = [hashlib.sha256(t).digest() for t in texts]
    n_val = min(math.ceil(len(names) * VAL_FRACTION), len(names) - 1)
    ranked = sorted(range(len(names)), key=lambda i: (hashes[i], i))
    held = set(ranked[:n_val])
    bos, eos = sp.bos_id(), sp.eos_id()
    split = {"train": [], "val": []}
    nbytes = {"train": 0, "val": 0}
    for i, (name, text) in enumerate(zip(names, texts)):
        ids = [bos] + sp.encode(text.decode("utf-8")) + [eos]
        which = "val" if i in held else "train"
        split[which].extend(ids)
        nbytes[which] += len(text)
    windows = []
    stream = split["train"]
    for w in range((len(stream) - 1) // CTX):
        windows.append(stream[w * CTX: w * CTX + CTX + 1])
    out = {
        "source": "sentencepiece " + spm.__version__ + " on " + MODEL,
        "val_fraction": VAL_FRACTION,
        "ctx": CTX,
        "documents": names,
        "val_names": [names[i] for i in sorted(held)],
        "train_tokens": split["train"],
        "val_tokens": split["val"],
        "train_bytes": nbytes["train"],
        "val_bytes": nbytes["val"],
        "train_windows": windows,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(names)} documents, {len(held)} held out, "
          f"{len(split['train'])} + {len(split['val'])} tokens")


if __name__ == "__main__":
    main()
