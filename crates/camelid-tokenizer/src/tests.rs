//! Unit tests on small hand-made vocabularies; the reference-based tests are in `tests/`.

use super::*;

fn spm_tiny() -> Tokenizer {
    // Pieces with scores: merges go to the best score first.
    let toks = [
        "<unk>", "<s>", "</s>", "▁", "a", "b", "c", "▁a", "ab", "▁ab", "bc",
    ];
    let scores = [
        0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -2.0, -3.0, -1.5, -4.0, -1.0,
    ];
    let mut types = vec![TokenType::Normal; toks.len()];
    types[0] = TokenType::Unknown;
    types[1] = TokenType::Control;
    types[2] = TokenType::Control;
    let mut spec = TokenizerSpec::new(
        ModelKind::SentencePiece,
        toks.iter().map(|s| s.to_string()).collect(),
    );
    spec.scores = scores.to_vec();
    spec.types = types;
    spec.unk = Some(0);
    spec.bos = Some(1);
    spec.eos = Some(2);
    spec.add_bos = true;
    Tokenizer::from_spec(spec).unwrap()
}

#[test]
fn spm_merges_by_score() {
    let t = spm_tiny();
    // "▁abc": candidates ▁a (-3), ab (-1.5), bc (-1.0): bc first, then ▁a, leaving ▁a bc.
    assert_eq!(t.encode("abc", false, false), vec![7, 10]);
    assert_eq!(t.encode("abc", true, false), vec![1, 7, 10]);
    // No piece for "z" and no byte pieces: unknown.
    assert_eq!(t.encode("z", false, false), vec![3, 0]);
    assert_eq!(t.decode(&[7, 10]).unwrap(), "abc");
}

#[test]
fn decode_rejects_out_of_range() {
    let t = spm_tiny();
    let e = t.decode(&[1, 99]).unwrap_err();
    assert!(
        e.to_string().contains("99") && e.to_string().contains("position 1"),
        "{e}"
    );
}

#[test]
fn tokenizer_json_refuses_what_it_cannot_say() {
    let mut spec = TokenizerSpec::new(
        ModelKind::SentencePiece,
        ["<unk>", "a", "b", "a"].map(String::from).to_vec(),
    );
    spec.unk = Some(0);
    let e = Tokenizer::from_spec(spec.clone())
        .unwrap()
        .to_tokenizer_json()
        .unwrap_err();
    assert!(
        e.to_string().contains("two tokens are spelled \"a\""),
        "{e}"
    );

    spec.tokens[3] = "ab".into();
    spec.types = vec![
        TokenType::Unknown,
        TokenType::Normal,
        TokenType::Normal,
        TokenType::Unused,
    ];
    let e = Tokenizer::from_spec(spec)
        .unwrap()
        .to_tokenizer_json()
        .unwrap_err();
    assert!(e.to_string().contains("unused pieces"), "{e}");
}
