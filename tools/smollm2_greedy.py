#!/usr/bin/env python3
"""Greedy references from llama.cpp for SmolLM2 -> testdata/smollm2/greedy.json.

For each prompt in PROMPTS: tokenize it with llama.cpp's rule for the model (llama_tokenize,
add_special = true so BOS/EOS follow the vocabulary's flags, parse_special = true), run the
prompt as one batch, then generate N_GEN tokens greedily, one token per llama_decode call, with
llama.cpp's default context settings and 2 threads (tools/llama_ref.cpp, mode `greedy`).
Stored per prompt: prompt, prompt_ids, generated ids, and at each step llama.cpp's top-1 and
top-2 logits (and the top-2 id) so a test can tell near-ties apart. Generation does not stop
at an end-of-generation token; steps where one was chosen are listed in "eog_steps".

    $CAMELID_PEER/venv/bin/python tools/smollm2_greedy.py [--peer DIR] [--ggml-cpu-lib DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tiny_models import REPO, build_llama_ref, dumps_compact, run  # noqa: E402

MODEL_REL = Path("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_REL = Path("testdata/smollm2/greedy.json")
N_GEN = 64

PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "def fibonacci(n):\n",
    "Here is a list of fruits:\n1. Apple\n2.",
    "The quick brown fox",
    "Water boils at a temperature of",
    "In 1969, Neil Armstrong",
    "To make a cup of tea, first",
    "The three primary colors are",
    "import numpy as np\n\n# compute the mean of an array\n",
    "1, 2, 3, 4, 5,",
    "Monday, Tuesday, Wednesday,",
    # More candidates, so that tests can pick prompts on which llama.cpp's own greedy choice is
    # clear (top-2 gap) for as many steps as they need; the choice uses llama.cpp's gaps only.
    "January, February, March,",
    "A, B, C, D, E,",
    "2, 4, 6, 8, 10,",
    "10, 9, 8, 7, 6,",
    "one, two, three, four,",
    "a b c d e f g",
    "<html>\n<head>\n",
    "for i in range(10):\n",
    "#include <stdio.h>\n\nint main() {\n",
    "SELECT * FROM users WHERE",
    "Q: What is 2 + 2?\nA:",
    "The first ten prime numbers are",
    "Mercury, Venus, Earth,",
    "Red, orange, yellow,",
    "The United States of America declared independence in",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nList the days of the week.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is 12 times 12?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n",
    "3, 6, 9, 12, 15,",
    "5, 10, 15, 20, 25,",
    "100, 200, 300, 400,",
    "0, 1, 2, 3, 4,",
    "11, 12, 13, 14, 15,",
    "2, 3, 5, 7, 11, 13,",
    "1 2 3 4 5 6",
    "1, 3, 5, 7, 9,",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", type=Path,
                    default=Path(os.environ.get("CAMELID_PEER", Path.home() / ".cache/camelid-peer")))
    ap.add_argument("--ggml-cpu-lib", type=Path, default=os.environ.get("LLAMA_REF_GGML_CPU_LIB"),
                    help="directory with a replacement libggml-cpu.so for llama_ref (see tools/README.md)")
    ap.add_argument("--append", action="store_true",
                    help="keep the prompts already in the output and run only the new ones")
    args = ap.parse_args()
    peer = args.peer.expanduser().resolve()

    model = REPO / MODEL_REL
    if not model.is_file():
        raise SystemExit(f"{MODEL_REL} is missing: run scripts/fetch-assets.sh")
    exe = build_llama_ref(peer, args.ggml_cpu_lib)

    results = []
    done = {}
    if args.append and (REPO / OUT_REL).is_file():
        done = {p["prompt"]: p for p in json.loads((REPO / OUT_REL).read_text())["prompts"]}
    with tempfile.TemporaryDirectory() as tmp:
        for i, prompt in enumerate(PROMPTS):
            if prompt in done:
                results.append(done[prompt])
                continue
            out = Path(tmp) / f"{i}.json"
            run([exe, "greedy", model, prompt, str(N_GEN), out], env=dict(os.environ, LLAMA_REF_THREADS="2"))
            r = json.loads(out.read_text())
            assert len(r["generated"]) == N_GEN
            gaps = [a - b for a, b in zip(r["top1_logit"], r["top2_logit"])]
            print(f"{prompt!r}: {len(r['prompt_ids'])} prompt ids, min top1-top2 gap {min(gaps):.4f} "
                  f"at step {gaps.index(min(gaps))}, steps with gap < 0.1: "
                  f"{[k for k, g in enumerate(gaps) if g < 0.1]}, eog steps {r['eog_steps']}", flush=True)
            results.append({"prompt": prompt, **r})

    doc = {
        "generator": "tools/smollm2_greedy.py",
        "model": MODEL_REL.name,
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "n_generated": N_GEN,
        "settings": "llama.cpp default context (n_ctx 512, F16 KV cache, flash attention auto), "
                    "2 threads; prompt in one batch, then one token per decode; argmax ties to the lowest id",
        "prompts": results,
    }
    path = REPO / OUT_REL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_compact(doc))
    print(f"wrote {OUT_REL} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
