#!/usr/bin/env python3
"""Write a random GGUF of the Llama 3.2 1B shape (F16) for speed measurements.

d_model 2048, 16 layers, 32 heads, 8 kv heads, FFN 8192, vocab 128256, tied embeddings; the
tokenizer metadata is copied from a Llama 3 vocabulary GGUF. Quantize the result with the peer:

    python tools/make_bench_model.py assets/llama-bpe/ggml-vocab-llama-bpe.gguf r1b-f16.gguf
    llama-quantize r1b-f16.gguf r1b-Q4_K_M.gguf Q4_K_M

Needs gguf-py and numpy (the peer venv has both). Random weights: fine for timing, meaningless
as a model.
"""
import sys, numpy as np, gguf
vocab_path, out = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(vocab_path)
w = gguf.GGUFWriter(out, "llama")
d, L, H, KV, FF, V = 2048, 16, 32, 8, 8192, 128256
hd = d // H
w.add_name("rand-llama-3.2-1b-shape")
w.add_context_length(131072); w.add_embedding_length(d); w.add_block_count(L)
w.add_feed_forward_length(FF); w.add_head_count(H); w.add_head_count_kv(KV)
w.add_rope_dimension_count(hd); w.add_rope_freq_base(500000.0)
w.add_layer_norm_rms_eps(1e-5); w.add_vocab_size(V); w.add_file_type(1)
for f in r.fields.values():
    if not f.name.startswith("tokenizer."):
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == gguf.GGUFValueType.STRING:
            vals = [bytes(f.parts[i]) for i in f.data]
        else:
            vals = [f.parts[i].tolist()[0] for i in f.data]
        w.add_key_value(f.name, vals, t, sub_type=sub)
    elif t == gguf.GGUFValueType.STRING:
        w.add_key_value(f.name, bytes(f.parts[f.data[0]]), t)
    else:
        w.add_key_value(f.name, f.parts[f.data[0]].tolist()[0], t)
rng = np.random.default_rng(1)
def mat(rows, cols, s=0.02):
    return (rng.standard_normal((rows, cols), dtype=np.float32) * s).astype(np.float16)
w.add_tensor("token_embd.weight", mat(V, d))
w.add_tensor("output_norm.weight", np.ones(d, np.float32))
for l in range(L):
    p = f"blk.{l}."
    w.add_tensor(p + "attn_norm.weight", np.ones(d, np.float32))
    w.add_tensor(p + "attn_q.weight", mat(d, d))
    w.add_tensor(p + "attn_k.weight", mat(KV * hd, d))
    w.add_tensor(p + "attn_v.weight", mat(KV * hd, d))
    w.add_tensor(p + "attn_output.weight", mat(d, d))
    w.add_tensor(p + "ffn_norm.weight", np.ones(d, np.float32))
    w.add_tensor(p + "ffn_gate.weight", mat(FF, d))
    w.add_tensor(p + "ffn_up.weight", mat(FF, d))
    w.add_tensor(p + "ffn_down.weight", mat(d, FF))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
