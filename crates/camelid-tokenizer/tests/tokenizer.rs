//! Tokenizer tests against references: llama.cpp's test vectors, and the fixture corpus that
//! `tools/tokenizer_corpus.py` makes with tiktoken, Hugging Face tokenizers, sentencepiece and
//! llama.cpp. Assets come from `scripts/fetch-assets.sh` (or `CAMELID_ASSETS`).

use std::path::PathBuf;
use std::sync::OnceLock;

use camelid_tokenizer::Tokenizer;

fn assets() -> PathBuf {
    match std::env::var_os("CAMELID_ASSETS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets")),
    }
}

fn asset(rel: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(
        p.exists(),
        "missing test asset {}: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

fn llama3_json() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_tokenizer_json(asset("llama3-hf/tokenizer.json")).unwrap())
}

fn llama3_tiktoken() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_tiktoken_model(asset("llama3-meta/tokenizer.model")).unwrap())
}

/// llama.cpp's vectors: strings separated by "\n__ggml_vocab_test__\n", one line of ids per string.
fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let inp =
        std::fs::read_to_string(asset(&format!("{name}/ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out =
        std::fs::read_to_string(asset(&format!("{name}/ggml-vocab-{name}.gguf.out"))).unwrap();
    let mut strings: Vec<String> = inp
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    // The file ends with a separator, which leaves one empty tail.
    assert_eq!(strings.pop().as_deref(), Some(""));
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(strings.len(), 46);
    assert_eq!(ids.len(), 46);
    strings.into_iter().zip(ids).collect()
}

fn check_vectors(tok: &Tokenizer, name: &str) {
    let mut bad = Vec::new();
    for (s, want) in vectors(name) {
        let got = tok.encode(&s, false, false);
        if got != want {
            bad.push(format!("{s:?}: got {got:?}, want {want:?}"));
        }
        assert_eq!(tok.decode(&got).unwrap(), s, "round trip of {s:?}");
    }
    assert!(
        bad.is_empty(),
        "{} of 46 differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn llama_bpe_vectors_tokenizer_json() {
    check_vectors(llama3_json(), "llama-bpe");
}

#[test]
fn llama_bpe_vectors_tiktoken_model() {
    check_vectors(llama3_tiktoken(), "llama-bpe");
}
