//! Training a BPE vocabulary on text, in either of the Llama family's two styles, written as a
//! Hugging Face `tokenizer.json`:
//! - **byte-level** (Llama 3): the text is cut by Llama 3's pre-tokenizer pattern; words are UTF-8
//!   bytes, so the 256 bytes are the alphabet and every text is encodable. Special tokens
//!   (`<|begin_of_text|>`, ...) follow the learned vocabulary, as in Llama 3.
//! - **SentencePiece-style** (LLaMA 1, Llama 2): spaces become `▁` and one goes in front of the
//!   text; words are characters, the alphabet the characters that cover `character_coverage` of
//!   the text, and the others fall back to the 256 `<0xNN>` byte pieces. The layout is Llama 2's:
//!   `<unk>`, `<s>`, `</s>`, the byte pieces, the merged pieces, then the single characters.
//!
//! Both count the distinct words of the text first (on several threads), then learn merges over
//! them ([`learn`]). The vocabulary size counts every token, special ones included.

mod learn;
mod words;
mod write;

use std::time::Duration;

use crate::bytelevel::BYTE_TO_CHAR;
use crate::merge::FastMap;
use crate::{Error, ModelKind, Tokenizer};
use learn::Word;

/// The named special tokens of Llama 3 (without the reserved ones), after the learned tokens.
pub const LLAMA3_SPECIALS: &[&str] = &[
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
];

/// SentencePiece's unknown, BOS and EOS pieces, ids 0, 1 and 2.
pub const SPM_SPECIALS: &[&str] = &["<unk>", "<s>", "</s>"];

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub kind: ModelKind,
    /// Tokens in all, special tokens included.
    pub vocab_size: usize,
    /// A pair seen fewer times is never merged (so the vocabulary may come out smaller).
    pub min_frequency: u64,
    /// SentencePiece style: the share of character occurrences the alphabet must cover (the rarest
    /// characters are left to byte fallback). SentencePiece's default is 0.9995.
    pub character_coverage: f64,
    /// Threads for counting words.
    pub threads: usize,
}

impl TrainConfig {
    pub fn new(kind: ModelKind, vocab_size: usize) -> TrainConfig {
        TrainConfig {
            kind,
            vocab_size,
            min_frequency: 2,
            character_coverage: 0.9995,
            threads: 1,
        }
    }
}

/// A trained vocabulary.
#[derive(Clone, Debug)]
pub struct Trained {
    kind: ModelKind,
    /// Spellings by id, as `tokenizer.json` writes them (GPT-2's byte characters for byte-level
    /// tokens, `▁` for spaces in SentencePiece pieces).
    vocab: Vec<String>,
    /// Ids of the special tokens, which `tokenizer.json` also lists as added tokens.
    specials: Vec<u32>,
    /// `(left, right)` ids in rank order.
    merges: Vec<(u32, u32)>,
    learn_time: Duration,
    n_words: usize,
}

/// Trains a vocabulary on `texts`, one document each.
pub fn train(texts: &[&str], config: &TrainConfig) -> Result<Trained, Error> {
    check(config)?;
    let counts = words::count(config.kind, texts, config.threads);
    let n_words = counts.len();
    // Sorted, so that symbol numbering, and with it the order among equal counts, does not
    // depend on the hash map's.
    let mut counts: Vec<(Box<str>, u64)> = counts.into_iter().collect();
    counts.sort_unstable();
    let start = std::time::Instant::now();
    let mut t = match config.kind {
        ModelKind::ByteLevel => train_byte_level(&counts, config),
        ModelKind::SentencePiece => train_sentencepiece(&counts, config),
    }?;
    t.learn_time = start.elapsed();
    t.n_words = n_words;
    Ok(t)
}

fn check(c: &TrainConfig) -> Result<(), Error> {
    let least = match c.kind {
        ModelKind::ByteLevel => 256 + LLAMA3_SPECIALS.len(),
        ModelKind::SentencePiece => SPM_SPECIALS.len() + 256 + 1,
    };
    if c.vocab_size < least || c.vocab_size >= u32::MAX as usize / 2 {
        return Err(Error::invalid(format!(
            "vocabulary size {} is out of range: this style needs at least {least} tokens \
             (special tokens and bytes)",
            c.vocab_size
        )));
    }
    if !(c.character_coverage > 0.0 && c.character_coverage <= 1.0) {
        return Err(Error::invalid(format!(
            "character coverage {} is not in (0, 1]",
            c.character_coverage
        )));
    }
    Ok(())
}

fn train_byte_level(counts: &[(Box<str>, u64)], config: &TrainConfig) -> Result<Trained, Error> {
    // The alphabet in the order of the bytes' spelling characters, as GPT-2 and Llama 3 number
    // them ('!' is 0).
    let mut order: Vec<u8> = (0..=255).collect();
    order.sort_by_key(|&b| BYTE_TO_CHAR[b as usize]);
    let mut symbol_of = [0u32; 256];
    for (i, &b) in order.iter().enumerate() {
        symbol_of[b as usize] = i as u32;
    }
    let words = counts
        .iter()
        .map(|(w, n)| Word {
            symbols: w.bytes().map(|b| symbol_of[b as usize]).collect(),
            count: *n,
        })
        .collect();
    let alphabet = order.iter().map(|&b| vec![b]).collect();
    let n_learned = config.vocab_size - LLAMA3_SPECIALS.len();
    let forbidden = |t: &[u8]| LLAMA3_SPECIALS.iter().any(|s| s.as_bytes() == t);
    let l = learn::learn(words, alphabet, n_learned, config.min_frequency, &forbidden);
    let mut vocab: Vec<String> = l
        .tokens
        .iter()
        .map(|t| t.iter().map(|&b| BYTE_TO_CHAR[b as usize]).collect())
        .collect();
    let first_special = vocab.len() as u32;
    vocab.extend(LLAMA3_SPECIALS.iter().map(|s| s.to_string()));
    Ok(Trained {
        kind: ModelKind::ByteLevel,
        vocab,
        specials: (first_special..first_special + LLAMA3_SPECIALS.len() as u32).collect(),
        merges: l.merges.iter().map(|&(a, b, _)| (a, b)).collect(),
        learn_time: Duration::ZERO,
        n_words: 0,
    })
}

/// The characters that cover `coverage` of all character occurrences, most frequent first (ties
/// by code point), at most `max` of them.
fn alphabet(counts: &[(Box<str>, u64)], coverage: f64, max: usize) -> Vec<char> {
    let mut freq: FastMap<char, u64> = FastMap::default();
    for (w, n) in counts {
        for c in w.chars() {
            *freq.entry(c).or_insert(0) += n;
        }
    }
    let mut chars: Vec<(char, u64)> = freq.into_iter().collect();
    chars.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u64 = chars.iter().map(|c| c.1).sum();
    let mut covered = 0u64;
    let mut out = Vec::new();
    for (c, n) in chars {
        if out.len() >= max || covered as f64 >= coverage * total as f64 {
            break;
        }
        out.push(c);
        covered += n;
    }
    out
}

fn train_sentencepiece(counts: &[(Box<str>, u64)], config: &TrainConfig) -> Result<Trained, Error> {
    let n_fixed = SPM_SPECIALS.len() + 256;
    let chars = alphabet(
        counts,
        config.character_coverage,
        config.vocab_size - n_fixed,
    );
    let symbol_of: FastMap<char, u32> = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, i as u32))
        .collect();
    // A character outside the alphabet cuts its word: merges never cross it.
    let mut words = Vec::new();
    for (w, n) in counts {
        let mut symbols = Vec::new();
        for c in w.chars() {
            match symbol_of.get(&c) {
                Some(&s) => symbols.push(s),
                None if symbols.is_empty() => {}
                None => words.push(Word {
                    symbols: std::mem::take(&mut symbols),
                    count: *n,
                }),
            }
        }
        if !symbols.is_empty() {
            words.push(Word { symbols, count: *n });
        }
    }
    let alphabet_bytes: Vec<Vec<u8>> = chars.iter().map(|c| c.to_string().into_bytes()).collect();
    let forbidden = |t: &[u8]| {
        let s = std::str::from_utf8(t).unwrap_or("");
        SPM_SPECIALS.contains(&s) || crate::parse_byte_piece(s).is_some()
    };
    let l = learn::learn(
        words,
        alphabet_bytes,
        config.vocab_size - n_fixed,
        config.min_frequency,
        &forbidden,
    );
    // Llama 2's layout: specials, bytes, merged pieces, then the characters.
    let n_chars = chars.len();
    let n_merged = l.tokens.len() - n_chars;
    let id = |t: u32| -> u32 {
        let t = t as usize;
        (if t < n_chars {
            n_fixed + n_merged + t
        } else {
            n_fixed + t - n_chars
        }) as u32
    };
    let mut vocab: Vec<String> = SPM_SPECIALS.iter().map(|s| s.to_string()).collect();
    vocab.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    let text = |t: &[u8]| String::from_utf8(t.to_vec()).expect("pieces are whole characters");
    vocab.extend(l.tokens[n_chars..].iter().map(|t| text(t)));
    vocab.extend(l.tokens[..n_chars].iter().map(|t| text(t)));
    Ok(Trained {
        kind: ModelKind::SentencePiece,
        vocab,
        specials: (0..SPM_SPECIALS.len() as u32).collect(),
        merges: l.merges.iter().map(|&(a, b, _)| (id(a), id(b))).collect(),
        learn_time: Duration::ZERO,
        n_words: 0,
    })
}

impl Trained {
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Tokens in all, special tokens included.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    pub fn n_merges(&self) -> usize {
        self.merges.len()
    }

    /// The learning loop's share of the training time (the rest is counting words).
    pub fn learn_time(&self) -> Duration {
        self.learn_time
    }

    /// Distinct words the text held.
    pub fn n_words(&self) -> usize {
        self.n_words
    }

    /// The spelling of each token, by id.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// The merge rules as `(left, right)` ids, in rank order.
    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merges
    }

    /// The vocabulary as a Hugging Face `tokenizer.json`.
    pub fn tokenizer_json(&self) -> String {
        write::tokenizer_json(self)
    }

    /// A `tokenizer_config.json` naming BOS and EOS, for `transformers`.
    pub fn tokenizer_config_json(&self) -> String {
        write::tokenizer_config_json(self)
    }

    /// The tokenizer, read back from [`Trained::tokenizer_json`] as any `tokenizer.json` is.
    pub fn tokenizer(&self) -> Result<Tokenizer, Error> {
        Tokenizer::from_tokenizer_json_bytes(
            self.tokenizer_json().as_bytes(),
            std::path::Path::new("<trained tokenizer.json>"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "the theme of the thesis: the three thin thieves thought thrice.\n\
                        東京は日本の首都です。東京の天気。 1234 3.14 — naïve café";

    #[test]
    fn byte_level_vocabulary_round_trips() {
        let mut cfg = TrainConfig::new(ModelKind::ByteLevel, 300);
        cfg.min_frequency = 1;
        let t = train(&[TEXT, TEXT], &cfg).unwrap();
        assert_eq!(t.n_vocab(), 300);
        assert_eq!(t.n_merges(), 300 - 256 - LLAMA3_SPECIALS.len());
        assert_eq!(t.vocab()[0], "!");
        assert_eq!(t.vocab()[299], "<|python_tag|>");
        let tok = t.tokenizer().unwrap();
        assert_eq!(tok.kind(), ModelKind::ByteLevel);
        let ids = tok.encode(TEXT, false, false);
        assert!(ids.len() < TEXT.len() / 2, "{} tokens", ids.len());
        assert_eq!(tok.decode(&ids).unwrap(), TEXT);
        assert_eq!(tok.bos(), tok.token_id("<|begin_of_text|>"));
        assert_eq!(tok.eos(), tok.token_id("<|end_of_text|>"));
    }

    #[test]
    fn sentencepiece_vocabulary_round_trips() {
        let mut cfg = TrainConfig::new(ModelKind::SentencePiece, 320);
        cfg.min_frequency = 1;
        cfg.character_coverage = 0.98;
        let t = train(&[TEXT, TEXT], &cfg).unwrap();
        assert_eq!(t.n_vocab(), 320);
        assert_eq!(&t.vocab()[..4], ["<unk>", "<s>", "</s>", "<0x00>"]);
        assert!(t.vocab()[259..].contains(&"▁the".to_string()));
        // Coverage below 1 leaves the rarest characters out; they fall back to bytes.
        assert!(!t.vocab().iter().any(|v| v.contains("首")));
        let tok = t.tokenizer().unwrap();
        assert_eq!(tok.kind(), ModelKind::SentencePiece);
        assert!(tok.add_space_prefix());
        let ids = tok.encode(TEXT, false, false);
        assert_eq!(tok.decode(&ids).unwrap(), TEXT);
        assert!(ids.contains(&tok.token_id("<0xE9>").unwrap()));
        assert_eq!(tok.bos(), Some(1));
        assert_eq!(tok.unk(), Some(0));
    }

    #[test]
    fn no_learned_token_is_spelled_like_a_special_one() {
        let text = "<|begin_of_text|> <s> </s> <unk> <0x41> ".repeat(50);
        for kind in [ModelKind::ByteLevel, ModelKind::SentencePiece] {
            let t = train(&[&text], &TrainConfig::new(kind, 600)).unwrap();
            let mut seen = std::collections::HashSet::new();
            for v in t.vocab() {
                assert!(seen.insert(v), "{kind:?}: {v:?} twice");
            }
            t.tokenizer().unwrap();
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        for (kind, size) in [(ModelKind::ByteLevel, 263), (ModelKind::SentencePiece, 259)] {
            let err = train(&["x"], &TrainConfig::new(kind, size)).unwrap_err();
            assert!(err.to_string().contains("at least"), "{err}");
        }
        let mut cfg = TrainConfig::new(ModelKind::SentencePiece, 1000);
        cfg.character_coverage = 0.0;
        assert!(train(&["x"], &cfg).is_err());
        // An empty corpus is a vocabulary of the alphabet and specials alone.
        let t = train(&[], &TrainConfig::new(ModelKind::ByteLevel, 1000)).unwrap();
        assert_eq!(t.n_vocab(), 256 + LLAMA3_SPECIALS.len());
        t.tokenizer().unwrap();
    }
}
