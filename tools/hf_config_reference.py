#!/usr/bin/env python3
"""Reference values for camelid-formats' config.json tests, from transformers' own LlamaConfig.

For each published config in testdata/hf_config/*.json (transformers 4 layout, copied from the
model repositories), this loads it with `transformers.LlamaConfig`, saves it again as the
installed transformers writes it (testdata/hf_config/transformers5/, the `rope_parameters`
layout), and records in testdata/hf_config/reference.json the values transformers resolves from
it. camelid must read the same values from both layouts.

Run with a Python that has transformers (the peer venv): python tools/hf_config_reference.py
"""

import json
from pathlib import Path

import transformers
from transformers import LlamaConfig

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "testdata" / "hf_config"


def ids(v):
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def main():
    (DIR / "transformers5").mkdir(exist_ok=True)
    reference = {"generator": f"tools/hf_config_reference.py with transformers {transformers.__version__}", "configs": {}}
    for path in sorted(DIR.glob("*.json")):
        if path.name == "reference.json":
            continue
        c = LlamaConfig.from_json_file(str(path))
        c.to_json_file(str(DIR / "transformers5" / path.name))
        rope = dict(c.rope_parameters or {})
        reference["configs"][path.name] = {
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads,
            "head_dim": c.head_dim,
            "rms_norm_eps": c.rms_norm_eps,
            "max_position_embeddings": c.max_position_embeddings,
            "tie_word_embeddings": c.tie_word_embeddings,
            "bos_token_id": ids(c.bos_token_id),
            "eos_token_id": ids(c.eos_token_id),
            "rope_theta": rope.get("rope_theta"),
            "rope_type": rope.get("rope_type"),
            "rope_factor": rope.get("factor"),
            "low_freq_factor": rope.get("low_freq_factor"),
            "high_freq_factor": rope.get("high_freq_factor"),
            "original_max_position_embeddings": rope.get("original_max_position_embeddings"),
        }
    with open(DIR / "reference.json", "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    print(f"wrote {DIR / 'reference.json'}")


if __name__ == "__main__":
    main()
