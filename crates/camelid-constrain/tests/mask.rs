//! Token masks over the real vocabularies of both tokenizer kinds: SmolLM2's byte-level BPE
//! (49,152 tokens, the default model) and Llama 2's SentencePiece (32,000 tokens, `▁` spaces and
//! `<0xNN>` byte pieces). The expected mask of a small grammar is computed here by brute force
//! from its definition (a token is allowed iff its bytes are a non-empty prefix of a string
//! the grammar still accepts), independently of the engine.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use camelid_constrain::{GrammarSpec, Vocabulary};
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_tokenizer::{TokenType, Tokenizer};

fn assets() -> PathBuf {
    std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets")))
}

fn load(rel: &str) -> (Arc<Tokenizer>, Vocabulary) {
    let path = assets().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        path.display()
    );
    let tok = Arc::new(load_tokenizer(&path).unwrap_or_else(|e| panic!("{rel}: {e}")));
    let vocab = Vocabulary::new(tok.clone()).unwrap();
    (tok, vocab)
}

fn bpe() -> &'static (Arc<Tokenizer>, Vocabulary) {
    static V: OnceLock<(Arc<Tokenizer>, Vocabulary)> = OnceLock::new();
    V.get_or_init(|| load("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn spm() -> &'static (Arc<Tokenizer>, Vocabulary) {
    static V: OnceLock<(Arc<Tokenizer>, Vocabulary)> = OnceLock::new();
    V.get_or_init(|| load("llama-spm/ggml-vocab-llama-spm.gguf"))
}

fn is_text_token(tok: &Tokenizer, id: u32) -> bool {
    !tok.is_eog(id)
        && !matches!(
            tok.token_type(id),
            Some(TokenType::Control | TokenType::Unknown | TokenType::Unused)
        )
}

/// The ids whose bytes are a non-empty prefix of one of `rests` (each the rest of a string the
/// grammar accepts), by brute force over the vocabulary.
fn prefixes_of(tok: &Tokenizer, rests: &[&str]) -> Vec<u32> {
    (0..tok.n_vocab() as u32)
        .filter(|&id| is_text_token(tok, id))
        .filter(|&id| {
            let b = tok.token_bytes(id).unwrap();
            !b.is_empty() && rests.iter().any(|r| r.as_bytes().starts_with(b))
        })
        .collect()
}

fn allowed(c: &mut camelid_constrain::Constraint, n: usize) -> Vec<u32> {
    let mask = c.allowed().unwrap();
    (0..n as u32).filter(|&i| mask.is_allowed(i)).collect()
}

/// Walks `yes | no | maybe later` token by token along "maybe later" and checks every mask.
fn walk_alternatives(tok: &Tokenizer, vocab: &Vocabulary) {
    let words = ["yes", "no", "maybe later"];
    let g = vocab
        .compile(&GrammarSpec::Gbnf(
            r#"root ::= "yes" | "no" | "maybe" " " [a-z]+"#.into(),
        ))
        .unwrap();
    let mut c = g.start();
    let n = tok.n_vocab();
    assert_eq!(allowed(&mut c, n), prefixes_of(tok, &words));
    assert!(!c.is_accepting());

    // "maybe" then " later", each by a token that spells a prefix of what is left.
    let target = "maybe later";
    let mut done = 0;
    while done < target.len() {
        let rest = &target[done..];
        let next = prefixes_of(tok, &[rest])
            .into_iter()
            .max_by_key(|&id| tok.token_bytes(id).unwrap().len())
            .unwrap();
        c.accept(next).unwrap();
        done += tok.token_bytes(next).unwrap().len();
    }
    // After "maybe later": more lowercase letters, or the end (every end-of-generation token).
    assert!(c.is_accepting());
    let want: Vec<u32> = (0..n as u32)
        .filter(|&id| {
            tok.is_eog(id)
                || (is_text_token(tok, id) && {
                    let b = tok.token_bytes(id).unwrap();
                    !b.is_empty() && b.iter().all(u8::is_ascii_lowercase)
                })
        })
        .collect();
    assert_eq!(allowed(&mut c, n), want);
    let eog = tok.eog_ids()[0];
    c.accept(eog).unwrap();
    assert!(c.is_finished());
}

#[test]
fn byte_level_mask_follows_the_grammar() {
    let (tok, vocab) = bpe();
    walk_alternatives(tok, vocab);
}

#[test]
fn sentencepiece_mask_follows_the_grammar() {
    let (tok, vocab) = spm();
    walk_alternatives(tok, vocab);
    // `▁yes` is " yes": not allowed where "yes" starts, allowed where " yes" does.
    let g = vocab
        .compile(&GrammarSpec::Gbnf(r#"root ::= "yes""#.into()))
        .unwrap();
    let space_yes = tok.token_id("\u{2581}yes").unwrap();
    assert!(!g.start().allowed().unwrap().is_allowed(space_yes));
    let g = vocab
        .compile(&GrammarSpec::Gbnf(r#"root ::= " yes""#.into()))
        .unwrap();
    assert!(g.start().allowed().unwrap().is_allowed(space_yes));
}

#[test]
fn special_tokens_are_never_grammar_text() {
    let (tok, vocab) = bpe();
    let g = vocab
        .compile(&GrammarSpec::Gbnf("root ::= .*".into()))
        .unwrap();
    let mut c = g.start();
    let mask = c.allowed().unwrap();
    let im_start = tok.token_id("<|im_start|>").unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert!(!mask.is_allowed(im_start), "a control token inside text");
    // <|im_end|> ends SmolLM2's turns: allowed as the end, since `.*` may end anywhere.
    assert!(tok.is_eog(im_end));
    assert!(mask.is_allowed(im_end));
    let hello = tok.encode("Hello", false, false);
    assert!(mask.is_allowed(hello[0]));
}

/// A seeded random walk through the allowed tokens of a JSON schema ends in a document that
/// satisfies it (checked here field by field, by hand).
#[test]
fn random_walks_under_a_schema_give_valid_json() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}
        },
        "required": ["color", "count", "tags"],
        "additionalProperties": false
    });
    for (tok, vocab) in [bpe(), spm()] {
        let g = vocab
            .compile(&GrammarSpec::JsonSchema(schema.clone()))
            .unwrap();
        for seed in 1..=4u64 {
            let mut c = g.start();
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut ids = Vec::new();
            for _ in 0..200 {
                let mask = c.allowed().unwrap();
                let ok: Vec<u32> = (0..tok.n_vocab() as u32)
                    .filter(|&i| mask.is_allowed(i))
                    .collect();
                assert!(!ok.is_empty());
                // Prefer ending once allowed, and anything over more whitespace (which JSON
                // allows without end), so walks stay short.
                let visible: Vec<u32> = ok
                    .iter()
                    .copied()
                    .filter(|&i| {
                        !tok.token_bytes(i)
                            .unwrap()
                            .iter()
                            .all(u8::is_ascii_whitespace)
                    })
                    .collect();
                let pool = if visible.is_empty() { &ok } else { &visible };
                let t = match ok.iter().find(|&&i| tok.is_eog(i)) {
                    Some(&e) => e,
                    None => {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        pool[(rng % pool.len() as u64) as usize]
                    }
                };
                c.accept(t).unwrap();
                if tok.is_eog(t) {
                    break;
                }
                ids.push(t);
            }
            assert!(c.is_finished(), "seed {seed}: the walk did not end");
            let bytes = tok.decode_bytes(&ids).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let v: serde_json::Value = serde_json::from_str(text.trim())
                .unwrap_or_else(|e| panic!("seed {seed}: {text:?}: {e}"));
            let o = v.as_object().unwrap();
            assert_eq!(o.len(), 3, "{text}");
            assert!(["red", "green", "blue"].contains(&o["color"].as_str().unwrap()));
            assert!((1..=9).contains(&o["count"].as_i64().unwrap()), "{text}");
            let tags = o["tags"].as_array().unwrap();
            assert!(
                tags.len() <= 3 && tags.iter().all(|t| t.is_boolean()),
                "{text}"
            );
        }
    }
}

#[test]
fn invalid_grammars_are_errors_not_panics() {
    let (_, vocab) = bpe();
    for bad in [
        GrammarSpec::Gbnf("root ::= missing".into()),
        GrammarSpec::Lark("start: (".into()),
        GrammarSpec::JsonSchema(serde_json::json!({"type": "no-such-type"})),
        GrammarSpec::JsonSchema(serde_json::json!(["not", "a", "schema"])),
    ] {
        let e = vocab.compile(&bad).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}

/// GBNF matches characters, not lexemes: in `[a-z]+ "x"` the class also matches the `x`, and
/// the translation keeps both readings open (each class its own one-character terminal).
#[test]
fn gbnf_keeps_character_level_ambiguity() {
    let (tok, vocab) = bpe();
    let g = vocab
        .compile(&GrammarSpec::Gbnf(r#"root ::= [a-z]+ "x""#.into()))
        .unwrap();
    let id = |s: &str| {
        let ids = tok.encode(s, false, false);
        assert_eq!(ids.len(), 1, "{s:?} is one token");
        ids[0]
    };
    let mut c = g.start();
    for ch in ["a", "b", "x"] {
        assert!(c.allowed().unwrap().is_allowed(id(ch)), "{ch}");
        c.accept(id(ch)).unwrap();
    }
    // "abx" is complete ([a-z]+ = "ab"), and "abxx" would be too ([a-z]+ = "abx").
    assert!(c.is_accepting());
    let mask = c.allowed().unwrap();
    assert!(mask.is_allowed(tok.eog_ids()[0]));
    assert!(mask.is_allowed(id("x")));
    // "ab" alone is not.
    let mut c = g.start();
    c.accept(id("a")).unwrap();
    c.accept(id("b")).unwrap();
    assert!(!c.is_accepting());
}
