//! Tokenizer tests against references: llama.cpp's test vectors, and the fixture corpus that
//! `tools/tokenizer_corpus.py` makes with tiktoken, Hugging Face tokenizers, sentencepiece and
//! llama.cpp. Assets come from `scripts/fetch-assets.sh` (or `CAMELID_ASSETS`).

mod common;
mod train;

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
    check_corpus(llama3_json(), "llama3", Some("llama3_gguf"));
}

#[test]
fn llama3_corpus_tiktoken_model() {
    check_corpus(llama3_tiktoken(), "llama3", Some("llama3"));
}

/// A Llama 2-style tokenizer.json (SentencePiece-like BPE, merges, byte fallback, Prepend
/// normalizer) against Hugging Face tokenizers.
#[test]
fn spm_tiny_corpus_tokenizer_json() {
    let tok = Tokenizer::from_tokenizer_json(testdata("spm-tiny.json")).unwrap();
    assert_eq!(tok.kind(), camelid_tokenizer::ModelKind::SentencePiece);
    check_corpus(&tok, "spm_tiny_json", None);
}

#[test]
fn spm_tiny_corpus_sentencepiece_model() {
    let tok = Tokenizer::from_sentencepiece_model(testdata("spm-tiny.model")).unwrap();
    check_corpus(&tok, "spm_tiny", None);
}

/// Random strings over characters that stress the pre-tokenizers: every class, every kind of
/// whitespace, apostrophes before letters of every case (and U+017F, which `(?i)s` matches).
fn random_strings(n: usize) -> Vec<String> {
    const POOL: &[&str] = &[
        "a", "Z", "s", "S", "t", "T", "r", "R", "e", "E", "v", "V", "m", "M", "l", "L", "d", "D",
        "\u{17F}", "K", "\u{212A}", "é", "日", "한", "я", "ب", "क", "\u{93F}", "\u{301}", "0", "7",
        "٣", "½", "Ⅻ", "²", "'", "'", "'", "’", "!", ".", ",", "-", "(", "<", "|", "_", "🦙",
        "\u{200D}", "\u{FE0F}", " ", " ", " ", "\t", "\n", "\r", "\r\n", "\u{A0}", "\u{3000}",
        "\u{2028}", "\u{85}", "\u{B}", "\u{C}", "\u{1C}",
    ];
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 1 + next() % 24;
            (0..len)
                .map(|_| POOL[(next() % POOL.len() as u64) as usize])
                .collect()
        })
        .collect()
}

fn regex_pieces<'t>(re: &fancy_regex::Regex, text: &'t str) -> Vec<&'t str> {
    re.find_iter(text).map(|m| m.unwrap().as_str()).collect()
}

/// The hand-written pre-tokenizers cut text exactly where the regexes they stand for do
/// (fancy-regex, the engine of tiktoken), on the corpus and on random strings.
#[test]
fn pretokenizers_equal_fancy_regex() {
    use camelid_tokenizer::PreTokenizer;
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT2: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    let llama3 = fancy_regex::Regex::new(LLAMA3).unwrap();
    let gpt2 = fancy_regex::Regex::new(GPT2).unwrap();
    let digit = fancy_regex::Regex::new(r"\p{N}").unwrap();
    let mut texts: Vec<String> = common::corpus()
        .records
        .iter()
        .map(|r| r.text.clone())
        .collect();
    texts.extend(random_strings(2000));
    for text in &texts {
        let mine = |p: PreTokenizer| {
            let mut v = Vec::new();
            p.split(text, |s| v.push(s));
            v
        };
        assert_eq!(
            mine(PreTokenizer::Llama3),
            regex_pieces(&llama3, text),
            "llama3 on {text:?}"
        );
        assert_eq!(
            mine(PreTokenizer::Gpt2),
            regex_pieces(&gpt2, text),
            "gpt2 on {text:?}"
        );
        // SmolLM: each \p{N} alone, the GPT-2 pattern on the stretches between.
        let mut want = Vec::new();
        let mut start = 0;
        for m in digit.find_iter(text) {
            let m = m.unwrap();
            want.extend(regex_pieces(&gpt2, &text[start..m.start()]));
            want.push(m.as_str());
            start = m.end();
        }
        want.extend(regex_pieces(&gpt2, &text[start..]));
        assert_eq!(mine(PreTokenizer::SmolLm), want, "smollm on {text:?}");
    }
}

/// Streaming yields whole characters only, also where a character is split across byte-level
/// tokens (Llama 3) or byte-fallback pieces (SentencePiece), and adds up to the text.
#[test]
fn stream_decoder_yields_complete_characters() {
    let spm = Tokenizer::from_sentencepiece_model(testdata("spm-tiny.model")).unwrap();
    let mut split_seen = [0usize; 2];
    for r in &common::corpus().records {
        for (k, (tok, prefix)) in [(llama3_tiktoken(), ""), (&spm, " ")]
            .into_iter()
            .enumerate()
        {
            let ids = tok.encode(&r.text, false, false);
            let mut dec = tok.stream_decoder();
            let mut out = String::new();
            for &id in &ids {
                let piece = dec.push(id).unwrap();
                if piece.is_empty() && !tok.token_bytes(id).unwrap().is_empty() {
                    split_seen[k] += 1;
                }
                out.push_str(&piece);
            }
            out.push_str(&dec.finish());
            assert_eq!(out, format!("{prefix}{}", r.text), "streamed {:?}", r.text);
        }
    }
    assert!(
        split_seen.iter().all(|&n| n > 100),
        "characters split across tokens: {split_seen:?}"
    );
}

#[test]
fn stream_decoder_holds_and_finishes() {
    let tok = llama3_tiktoken();
    // "日" is E6 97 A5; as single-byte tokens it arrives in three parts.
    let byte_tokens: Vec<u32> = [0xE6u8, 0x97, 0xA5]
        .iter()
        .map(|&b| {
            (0..tok.n_vocab() as u32)
                .find(|&id| tok.token_bytes(id) == Some(&[b][..]))
                .unwrap()
        })
        .collect();
    let mut dec = tok.stream_decoder();
    assert_eq!(dec.push(byte_tokens[0]).unwrap(), "");
    assert_eq!(dec.push(byte_tokens[1]).unwrap(), "");
    assert_eq!(dec.push(byte_tokens[2]).unwrap(), "日");
    assert_eq!(dec.push(byte_tokens[0]).unwrap(), "");
    assert_eq!(
        dec.finish(),
        "\u{FFFD}",
        "an unfinished character at the end"
    );
    assert!(dec.push(200_000).is_err());
}

#[test]
fn decode_out_of_range_is_an_error() {
    let e = llama3_tiktoken()
        .decode(&[9906, 128256])
        .unwrap_err()
        .to_string();
    assert!(e.contains("128256") && e.contains("128256 tokens"), "{e}");
}

#[test]
fn special_tokens_only_when_asked() {
    let tok = llama3_tiktoken();
    let text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    let parsed = tok.encode(text, true, true);
    assert_eq!(parsed[..3], [128000, 128006, 882]);
    assert_eq!(*parsed.last().unwrap(), 128009);
    let plain = tok.encode(text, false, false);
    assert!(plain.iter().all(|&id| id < 128000), "{plain:?}");
    assert_eq!(
        tok.decode(&parsed).unwrap(),
        format!("<|begin_of_text|>{text}")
    );
    assert!(tok.is_eog(128009) && tok.is_eog(128008) && tok.is_eog(128001));
    assert_eq!(tok.token_id("<|python_tag|>"), Some(128010));
}

fn temp_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenizer-test");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn malformed_tokenizer_json_is_a_clear_error() {
    let p = temp_file(
        "bad.json",
        b"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}}",
    );
    let e = Tokenizer::from_tokenizer_json(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad.json") && e.contains("malformed tokenizer.json") && e.contains("line 1"),
        "{e}"
    );
    let p = temp_file("nomodel.json", b"{\"added_tokens\": []}");
    let e = Tokenizer::from_tokenizer_json(&p).unwrap_err().to_string();
    assert!(
        e.contains("nomodel.json") && e.contains("no \"model\""),
        "{e}"
    );
    let p = temp_file(
        "badmerge.json",
        r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}}"#.as_bytes(),
    );
    let e = Tokenizer::from_tokenizer_json(&p).unwrap_err().to_string();
    assert!(e.contains("badmerge.json") && e.contains("merge 0"), "{e}");
    let p = temp_file(
        "gap.json",
        br#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 2000000000}}}"#,
    );
    let e = Tokenizer::from_tokenizer_json(&p).unwrap_err().to_string();
    assert!(e.contains("gap.json") && e.contains("without gaps"), "{e}");
}

#[test]
fn not_a_sentencepiece_model_is_a_clear_error() {
    // A valid protobuf of another kind: field 1 holds a varint, not a piece.
    let p = temp_file("other.pb", &[0x08, 0x96, 0x01]);
    let e = Tokenizer::from_sentencepiece_model(&p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other.pb") && e.contains("not a SentencePiece model") && e.contains("offset"),
        "{e}"
    );
    // Random bytes: a length that runs past the end.
    let p = temp_file("junk.model", &[0x0A, 0xFF, 0x7F, 0x01]);
    let e = Tokenizer::from_sentencepiece_model(&p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("junk.model") && e.contains("past the end") && e.contains("offset 0"),
        "{e}"
    );
    // A truncated copy of a real model.
    let data = std::fs::read(testdata("spm-tiny.model")).unwrap();
    let p = temp_file("cut.model", &data[..data.len() / 2]);
    let e = Tokenizer::from_sentencepiece_model(&p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cut.model") && e.contains("not a SentencePiece model"),
        "{e}"
    );
}

#[test]
fn malformed_tiktoken_is_a_clear_error() {
    let p = temp_file("bad.tiktoken", b"IQ== 0\nIg== 1\n!!! 2\n");
    let e = Tokenizer::from_tiktoken_model(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad.tiktoken") && e.contains("line 3") && e.contains("base64"),
        "{e}"
    );
    let p = temp_file("gap.tiktoken", b"IQ== 0\nIg== 2\n");
    let e = Tokenizer::from_tiktoken_model(&p).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("rank 2"), "{e}");
}

#[test]
fn tokenizer_model_is_sniffed() {
    let a = Tokenizer::from_tokenizer_model(asset("llama3-meta/tokenizer.model")).unwrap();
    assert_eq!(a.n_vocab(), 128256);
    let b = Tokenizer::from_tokenizer_model(testdata("spm-tiny.model")).unwrap();
    assert_eq!(b.kind(), camelid_tokenizer::ModelKind::SentencePiece);
}

/// Ids as people type them, pieces as they should read on one line, bytes that must be text.
#[test]
fn typed_ids_escaped_pieces_and_utf8_text() {
    use camelid_tokenizer::text::{TextError, escape_piece, parse_ids, utf8_text};
    assert_eq!(parse_ids(&["1,2, 3"]).unwrap(), [1, 2, 3]);
    assert_eq!(parse_ids(&["1", "2", "3"]).unwrap(), [1, 2, 3]);
    assert_eq!(parse_ids(&["[1, 2]"]).unwrap(), [1, 2]);
    assert_eq!(parse_ids(&["1,x"]), Err(TextError::NotAnId("x".into())));
    assert_eq!(
        parse_ids(&["4294967296"]).unwrap_err().to_string(),
        "\"4294967296\" is not a token id (a number 0 to 4294967295)"
    );
    assert_eq!(parse_ids(&[","]), Err(TextError::NoIds));
    assert_eq!(
        utf8_text(b"ab\xFFc".to_vec(), "f.txt")
            .unwrap_err()
            .to_string(),
        "f.txt is not valid UTF-8: byte 0xFF at offset 2"
    );
    assert_eq!(utf8_text("é".into(), "x").unwrap(), "é");
    assert_eq!(escape_piece(b" a\n\t\\"), " a\\n\\t\\\\");
    // The first two bytes of 日 (E6 97 A5): half a character.
    assert_eq!(escape_piece(&[0xE6, 0x97]), "\\xE6\\x97");
    assert_eq!(escape_piece("\u{7}".as_bytes()), "\\u{7}");
}
