//! Tokenizer tests against references: llama.cpp's test vectors, and the fixture corpus that
//! `tools/tokenizer_corpus.py` makes with tiktoken, Hugging Face tokenizers, sentencepiece and
//! llama.cpp. Assets come from `scripts/fetch-assets.sh` (or `CAMELID_ASSETS`).

mod common;

use std::sync::OnceLock;

use camelid_tokenizer::Tokenizer;
use common::{asset, check_corpus, check_vectors, testdata};

fn llama3_json() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_tokenizer_json(asset("llama3-hf/tokenizer.json")).unwrap())
}

fn llama3_tiktoken() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_tiktoken_model(asset("llama3-meta/tokenizer.model")).unwrap())
}

#[test]
fn llama_bpe_vectors_tokenizer_json() {
    check_vectors(llama3_json(), "llama-bpe");
}

#[test]
fn llama_bpe_vectors_tiktoken_model() {
    check_vectors(llama3_tiktoken(), "llama-bpe");
}

#[test]
fn llama3_corpus_tokenizer_json() {
    check_corpus(llama3_json(), "llama3", false);
}

#[test]
fn llama3_corpus_tiktoken_model() {
    check_corpus(llama3_tiktoken(), "llama3", true);
}

#[test]
fn spm_tiny_corpus_sentencepiece_model() {
    let tok = Tokenizer::from_sentencepiece_model(testdata("spm-tiny.model")).unwrap();
    check_corpus(&tok, "spm_tiny", false);
}
