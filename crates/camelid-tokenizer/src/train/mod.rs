//! Training a BPE vocabulary on text, in either of the Llama family's two styles, as a
//! [`Tokenizer`] (written as a Hugging Face `tokenizer.json` by [`Tokenizer::to_tokenizer_json`]):
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

use std::time::Duration;

use crate::bytelevel::BYTE_TO_CHAR;
use crate::merge::FastMap;
use crate::{Error, ModelKind, PreTokenizer, TokenType, Tokenizer, TokenizerSpec};
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
    tokenizer: Tokenizer,
    learn_time: Duration,
    n_words: usize,
}

/// What training learned, before it becomes a [`Tokenizer`].
struct Learned {
    /// Spellings by id, as `tokenizer.json` writes them (GPT-2's byte characters for byte-level
    /// tokens, `▁` for spaces in SentencePiece pieces).
    vocab: Vec<String>,
    /// `(left, right)` ids in rank order.
    merges: Vec<(u32, u32)>,
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
    let learned = match config.kind {
        ModelKind::ByteLevel => train_byte_level(&counts, config),
        ModelKind::SentencePiece => train_sentencepiece(&counts, config),
    };
    let learn_time = start.elapsed();
    Ok(Trained {
        tokenizer: tokenizer(config.kind, learned)?,
        learn_time,
        n_words,
    })
}

/// The tokenizer of a learned vocabulary: Llama 3's pre-tokenizer, BOS and EOS for byte-level,
/// Llama 2's special pieces for SentencePiece; BOS added in front.
fn tokenizer(kind: ModelKind, l: Learned) -> Result<Tokenizer, Error> {
    let merges = l
        .merges
        .iter()
        .map(|&(a, b)| format!("{} {}", l.vocab[a as usize], l.vocab[b as usize]))
        .collect();
    let id = |vocab: &[String], text: &str| vocab.iter().position(|v| v == text).map(|p| p as u32);
    let mut spec = TokenizerSpec::new(kind, l.vocab);
    spec.merges = merges;
    spec.add_bos = true;
    let specials = match kind {
        ModelKind::ByteLevel => LLAMA3_SPECIALS,
        ModelKind::SentencePiece => SPM_SPECIALS,
    };
    spec.types = spec
        .tokens
        .iter()
        .map(|t| {
            if specials.contains(&t.as_str()) {
                TokenType::Control
            } else if kind == ModelKind::SentencePiece && crate::parse_byte_piece(t).is_some() {
                TokenType::Byte
            } else {
                TokenType::Normal
            }
        })
        .collect();
    match kind {
        ModelKind::ByteLevel => {
            spec.pre = Some(PreTokenizer::Llama3);
            spec.ignore_merges = true;
            spec.bos = id(&spec.tokens, "<|begin_of_text|>");
            spec.eos = id(&spec.tokens, "<|end_of_text|>");
            spec.eot = id(&spec.tokens, "<|eot_id|>");
            spec.eom = id(&spec.tokens, "<|eom_id|>");
        }
        ModelKind::SentencePiece => {
            spec.types[0] = TokenType::Unknown;
            (spec.unk, spec.bos, spec.eos) = (Some(0), Some(1), Some(2));
        }
    }
    Tokenizer::from_spec(spec)
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

fn train_byte_level(counts: &[(Box<str>, u64)], config: &TrainConfig) -> Learned {
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
    vocab.extend(LLAMA3_SPECIALS.iter().map(|s| s.to_string()));
    Learned {
        vocab,
        merges: l.merges.iter().map(|&(a, b, _)| (a, b)).collect(),
    }
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

fn train_sentencepiece(counts: &[(Box<str>, u64)], config: &TrainConfig) -> Learned {
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
    Learned {
        vocab,
        merges: l.merges.iter().map(|&(a, b, _)| (id(a), id(b))).collect(),
    }
}

impl Trained {
    pub fn kind(&self) -> ModelKind {
        self.tokenizer.kind()
    }

    /// Tokens in all, special tokens included.
    pub fn n_vocab(&self) -> usize {
        self.tokenizer.n_vocab()
    }

    pub fn n_merges(&self) -> usize {
        self.tokenizer.pairs.len()
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
        &self.tokenizer.texts
    }

    /// The trained tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// What was trained, on `n_docs` documents of `bytes` bytes in `took` in all, in one line;
    /// then, when the vocabulary came out smaller than `config` asked, why.
    pub fn report(
        &self,
        config: &TrainConfig,
        n_docs: usize,
        bytes: usize,
        took: Duration,
    ) -> Vec<String> {
        let mut lines = vec![format!(
            "trained {} tokens ({} merges) on {} documents, {:.1} MiB, {} distinct words, in \
             {:.2} s ({:.2} s counting words, {:.2} s merging)",
            self.n_vocab(),
            self.n_merges(),
            n_docs,
            bytes as f64 / (1 << 20) as f64,
            self.n_words(),
            took.as_secs_f64(),
            took.saturating_sub(self.learn_time).as_secs_f64(),
            self.learn_time.as_secs_f64()
        )];
        if self.n_vocab() < config.vocab_size {
            lines.push(format!(
                "note: no pair occurs --min-frequency {} times any more: the vocabulary has {} \
                 tokens, not {}",
                config.min_frequency,
                self.n_vocab(),
                config.vocab_size
            ));
        }
        lines
    }
}

/// Tokens of `texts` (no BOS or EOS), encoded on up to `threads` threads: the compression a
/// vocabulary achieves.
pub fn count_tokens(tok: &Tokenizer, texts: &[&str], threads: usize) -> usize {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(texts.len()).max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    let take = || next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    while let Some(t) = texts.get(take()) {
                        n += tok.encode(t, false, false).len();
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_alike_on_any_number_of_threads() {
        let mut cfg = TrainConfig::new(ModelKind::ByteLevel, 300);
        cfg.min_frequency = 1;
        let t = train(&[TEXT, TEXT], &cfg).unwrap();
        let tok = t.tokenizer();
        let texts = [TEXT, "the theme", "", "東京"];
        let one: usize = texts
            .iter()
            .map(|t| tok.encode(t, false, false).len())
            .sum();
        for threads in [1, 2, 8] {
            assert_eq!(count_tokens(tok, &texts, threads), one);
        }
        let lines = t.report(&cfg, 2, 3 << 19, Duration::from_secs(2));
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("trained 300 tokens (36 merges) on 2 documents, 1.5 MiB"),
            "{}",
            lines[0]
        );
        cfg.vocab_size = 400;
        let note = &t.report(&cfg, 2, 0, Duration::ZERO)[1];
        assert_eq!(
            note,
            "note: no pair occurs --min-frequency 1 times any more: the vocabulary has 300 tokens, not 400"
        );
    }

    /// The trained tokenizer written as `tokenizer.json` and read back, which writes the same
    /// bytes again.
    fn read_back(t: &Trained) -> Tokenizer {
        let json = t.tokenizer().to_tokenizer_json().unwrap();
        let back =
            Tokenizer::from_tokenizer_json_bytes(json.as_bytes(), std::path::Path::new("t.json"))
                .unwrap();
        assert_eq!(back.to_tokenizer_json().unwrap(), json);
        back
    }

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
        let tok = read_back(&t);
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
        let tok = read_back(&t);
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
            read_back(&t);
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
        read_back(&t);
    }
}
