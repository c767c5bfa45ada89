//! `.pth` files written by `torch.save` (testdata/meta, from tools/make_meta_checkpoints.py):
//! every tensor's name, shape, dtype and bytes as torch wrote them.

use camelid_formats::pth::{MetaCheckpoint, PthDtype, PthFile};

use crate::{fixture, testdata};

/// The fixture's state dict, in Meta's names and order (`hf_to_meta` of the script).
fn meta_names(n_layers: usize) -> Vec<String> {
    let mut names = vec!["tok_embeddings.weight".to_string()];
    for i in 0..n_layers {
        for part in [
            "attention.wq",
            "attention.wk",
            "attention.wv",
            "attention.wo",
            "feed_forward.w1",
            "feed_forward.w2",
            "feed_forward.w3",
            "attention_norm",
            "ffn_norm",
        ] {
            names.push(format!("layers.{i}.{part}.weight"));
        }
    }
    names.push("norm.weight".into());
    names.push("output.weight".into());
    names
}

#[test]
fn torch_save_files_read_as_torch_wrote_them() {
    let man = fixture("meta/manifest.json");
    for f in man["fixtures"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let ranks = f["ranks"].as_u64().unwrap() as usize;
        let p = &f["params"];
        let ck = MetaCheckpoint::open(&testdata().join("meta").join(name)).unwrap();
        assert_eq!(ck.shards.len(), ranks, "{name}");
        assert_eq!(ck.params.dim, p["dim"].as_u64().map(|x| x as usize));
        assert_eq!(ck.params.vocab_size, p["vocab_size"].as_i64());
        assert_eq!(ck.params.use_scaled_rope, p["use_scaled_rope"].as_bool());
        let dim = p["dim"].as_u64().unwrap() as usize;
        let want_dtype = if f["dtype"] == "bf16" {
            PthDtype::BF16
        } else {
            PthDtype::F32
        };
        for shard in &ck.shards {
            let got: Vec<&str> = shard.tensors().iter().map(|t| t.name.as_str()).collect();
            assert_eq!(got, meta_names(2), "{name}");
            for t in shard.tensors() {
                assert_eq!(t.dtype, want_dtype, "{name} {}", t.name);
                assert_eq!(shard.data(t).len(), t.n_elements() * t.dtype.size());
            }
            // A replicated norm gain has the whole model width; a column-parallel matrix a
            // 1/ranks share of its rows.
            assert_eq!(shard.tensor("norm.weight").unwrap().shape, [dim]);
            let wq = shard.tensor("layers.0.attention.wq.weight").unwrap();
            assert_eq!(wq.shape, [dim / ranks, dim], "{name}");
        }
    }
}

#[test]
fn bf16_norm_gains_are_the_bytes_torch_wrote() {
    // The gains of the tiny models are 1 + 0.3·N(0,1): every bf16 value is in a sane range and
    // the ranks' copies are identical.
    let dir = testdata().join("meta/llama1-mha-mp2-bf16");
    let a = PthFile::open(&dir.join("consolidated.00.pth")).unwrap();
    let b = PthFile::open(&dir.join("consolidated.01.pth")).unwrap();
    let ta = a.tensor("layers.1.ffn_norm.weight").unwrap();
    let tb = b.tensor("layers.1.ffn_norm.weight").unwrap();
    assert_eq!(a.data(ta), b.data(tb));
    for v in a.data(ta).chunks_exact(2) {
        let x = f32::from_bits((u16::from_le_bytes([v[0], v[1]]) as u32) << 16);
        assert!(x.is_finite() && x.abs() < 4.0, "{x}");
    }
}
