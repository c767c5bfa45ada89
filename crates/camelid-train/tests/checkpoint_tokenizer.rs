//! The `tokenizer.json` a checkpoint gets when the run's tokenizer had none (a GGUF vocabulary,
//! a SentencePiece or tiktoken `tokenizer.model`): the folder, loaded back by camelid through
//! that file, encodes the fixture corpus as the independent references do (llama.cpp,
//! tiktoken, Hugging Face `tokenizers`; `tools/tokenizer_corpus.py`), special tokens parsed and
//! not, with the same BOS/EOS. `tools/tokenizer_json_check.py` loads the same folders in
//! Hugging Face `tokenizers` and transformers against the same references. Assets come from
//! `scripts/fetch-assets.sh` (or `CAMELID_ASSETS`).

#[path = "../../camelid-tokenizer/tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use camelid_model::tokenizer_load::load_tokenizer;
use camelid_train::Params;
use camelid_train::checkpoint::{self, TokenizerFile};
use common::{asset, check_corpus, testdata};

/// Saves a (tiny, zero) model with the tokenizer files of `source` in a fresh folder, as the
/// trainer does, and returns the folder.
fn checkpoint_of(source: &Path, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("camelid-ck-tok-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let tok = load_tokenizer(source).unwrap();
    let files = checkpoint::tokenizer_files(source);
    let made: Vec<&str> = files
        .iter()
        .filter(|f| matches!(f, TokenizerFile::Made { .. }))
        .map(TokenizerFile::name)
        .collect();
    assert_eq!(made, ["tokenizer.json", "tokenizer_config.json"], "{name}");
    let config = camelid_model::Config {
        n_vocab: tok.n_vocab(),
        d_model: 8,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 4,
        d_ff: 16,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: camelid_model::config::RopeScaling::None,
        n_ctx_train: 16,
        tied_embeddings: true,
    };
    checkpoint::save_model(&dir, &Params::zeros(&config), tok.bos(), tok.eos(), &files).unwrap();
    dir
}

/// The folder's tokenizer (read through the written tokenizer.json) against the references, and
/// its special tokens and BOS rule against the source's.
fn check(source: &Path, name: &str, key: &str, special_key: &str) {
    let dir = checkpoint_of(source, name);
    let orig = load_tokenizer(source).unwrap();
    let back = load_tokenizer(&dir).unwrap();
    assert_eq!(
        (
            back.n_vocab(),
            back.bos(),
            back.eos(),
            back.add_bos_default()
        ),
        (
            orig.n_vocab(),
            orig.bos(),
            orig.eos(),
            orig.add_bos_default()
        ),
        "{name}: vocabulary size, BOS, EOS, add BOS"
    );
    assert_eq!(back.kind(), orig.kind(), "{name}");
    check_corpus(&back, key, Some(special_key));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn llama2_gguf_vocabulary() {
    let src = asset("llama-spm/ggml-vocab-llama-spm.gguf");
    check(&src, "llama-spm", "llama_spm", "llama_spm");
}

#[test]
fn llama3_gguf_vocabulary() {
    let src = asset("llama-bpe/ggml-vocab-llama-bpe.gguf");
    check(&src, "llama-bpe", "llama3", "llama3_gguf");
}

#[test]
fn llama3_tiktoken_model() {
    let src = asset("llama3-meta/tokenizer.model");
    check(&src, "llama3-meta", "llama3", "llama3");
}

#[test]
fn smollm2_gguf_vocabulary() {
    let src = asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    check(&src, "smollm2", "smollm2", "smollm2");
}

/// A SentencePiece `tokenizer.model` with byte fallback and user-defined pieces. Hugging Face
/// puts the `▁` in front of each stretch between added tokens, as llama.cpp does, where
/// SentencePiece puts it in front of the whole text; the reference is therefore Hugging Face
/// `tokenizers` on the same vocabulary in Llama 2's layout (`spm_tiny_json`, which equals
/// SentencePiece's ids except around user-defined pieces).
#[test]
fn sentencepiece_model() {
    let src = testdata("spm-tiny.model");
    let dir = checkpoint_of(&src, "spm-tiny");
    let back = load_tokenizer(&dir).unwrap();
    check_corpus(&back, "spm_tiny_json", None);
    let _ = fs::remove_dir_all(&dir);
}
