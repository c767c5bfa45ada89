//! GGUF-based tokenizer tests: llama.cpp's test vectors for the LLaMA/Llama 2 SentencePiece and
//! Llama 3 vocabularies, and the fixture corpus of `tools/tokenizer_corpus.py` for Llama 3,
//! Llama 2 and SmolLM2 read from GGUF. Assets come from `scripts/fetch-assets.sh` (or
//! `CAMELID_ASSETS`).

#[path = "../../camelid-tokenizer/tests/common/mod.rs"]
mod common;

use std::sync::OnceLock;

use camelid_model::tokenizer_load::load_tokenizer;
use camelid_tokenizer::Tokenizer;
use common::{asset, check_corpus, check_vectors};

fn llama_spm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_tokenizer(&asset("llama-spm/ggml-vocab-llama-spm.gguf")).unwrap())
}

fn llama_bpe() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_tokenizer(&asset("llama-bpe/ggml-vocab-llama-bpe.gguf")).unwrap())
}

/// tokenizer.json with the tokenizer_config.json beside it.
fn llama3_folder() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_tokenizer(&asset("llama3-hf")).unwrap())
}

fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_tokenizer(&asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap())
}

#[test]
fn llama_spm_gguf_vectors() {
    let tok = llama_spm();
    assert_eq!(
        (tok.n_vocab(), tok.bos(), tok.eos(), tok.add_bos_default()),
        (32000, Some(1), Some(2), true)
    );
    check_vectors(tok, "llama-spm");
}

#[test]
fn llama_bpe_gguf_vectors() {
    let tok = llama_bpe();
    assert_eq!(
        (tok.n_vocab(), tok.bos(), tok.eos(), tok.add_bos_default()),
        (128256, Some(128000), Some(128001), true)
    );
    check_vectors(tok, "llama-bpe");
}

#[test]
fn llama3_corpus_gguf() {
    check_corpus(llama_bpe(), "llama3", Some("llama3_gguf"));
}

#[test]
fn llama_spm_corpus_gguf() {
    check_corpus(llama_spm(), "llama_spm", Some("llama_spm"));
}

#[test]
fn smollm2_corpus_gguf() {
    check_corpus(smollm2(), "smollm2", Some("smollm2"));
}

#[test]
fn smollm2_metadata() {
    let tok = smollm2();
    assert_eq!(tok.n_vocab(), 49152);
    assert!(!tok.add_bos_default());
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert!(tok.is_eog(2), "<|im_end|> ends a turn");
    assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn llama3_eog_set() {
    let tok = llama_bpe();
    for name in ["<|end_of_text|>", "<|eot_id|>"] {
        let id = tok.token_id(name).unwrap();
        assert!(tok.is_eog(id), "{name} must end a generation");
    }
    assert!(!tok.is_eog(tok.token_id("<|start_header_id|>").unwrap()));
}

/// The three sources of the Llama 3 tokenizer agree id for id on the corpus.
#[test]
fn llama3_three_sources_agree() {
    let json = llama3_folder();
    let meta = load_tokenizer(&asset("llama3-meta/tokenizer.model")).unwrap();
    let gguf = llama_bpe();
    for r in &common::corpus().records {
        let a = gguf.encode(&r.text, true, false);
        assert_eq!(
            a,
            json.encode(&r.text, true, false),
            "{:?}: GGUF vs tokenizer.json",
            r.text
        );
        assert_eq!(
            a,
            meta.encode(&r.text, true, false),
            "{:?}: GGUF vs tokenizer.model",
            r.text
        );
    }
}

#[test]
fn load_folder_with_config() {
    let tok = llama3_folder();
    assert_eq!(tok.bos(), Some(128000));
    assert!(tok.chat_template().unwrap().contains("<|start_header_id|>"));
}

#[test]
fn not_a_tokenizer_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("camelid-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty_dir = dir.join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let e = load_tokenizer(&empty_dir).unwrap_err().to_string();
    assert!(
        e.contains("neither tokenizer.json nor tokenizer.model"),
        "{e}"
    );
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, [0xFFu8, 0x13, 0x00, 0x42, 0x99]).unwrap();
    let e = load_tokenizer(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.bin") && e.contains("not a SentencePiece model"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
