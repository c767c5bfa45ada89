//! The words of a training corpus: the stretches that merges never cross, each counted once per
//! occurrence. Training works on the distinct words and their counts, not on the text.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::merge::FastMap;
use crate::unicode::{Class, class};
use crate::{ModelKind, PreTokenizer};

/// Distinct words and how often each occurs.
pub(crate) type Counts = FastMap<Box<str>, u64>;

/// The SentencePiece space, `▁` (3 bytes in UTF-8).
const SPACE: char = '\u{2581}';

/// Counts the words of `texts` (one document each) on up to `threads` threads.
pub(crate) fn count(kind: ModelKind, texts: &[&str], threads: usize) -> Counts {
    let threads = threads.clamp(1, texts.len().max(1));
    if threads == 1 {
        let mut counts = Counts::default();
        for t in texts {
            count_text(kind, t, &mut counts);
        }
        return counts;
    }
    // Documents go to whichever thread is free next, so one long file does not hold up the rest.
    let next = AtomicUsize::new(0);
    let partial: Vec<Counts> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut counts = Counts::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(t) = texts.get(i) else { break };
                        count_text(kind, t, &mut counts);
                    }
                    counts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a word-counting thread panicked"))
            .collect()
    });
    let mut it = partial.into_iter();
    let mut counts = it.next().unwrap_or_default();
    for part in it {
        for (w, c) in part {
            *counts.entry(w).or_insert(0) += c;
        }
    }
    counts
}

fn count_text(kind: ModelKind, text: &str, counts: &mut Counts) {
    let bump = |w: &str| match counts.get_mut(w) {
        Some(c) => *c += 1,
        None => {
            counts.insert(w.into(), 1);
        }
    };
    match kind {
        ModelKind::ByteLevel => PreTokenizer::Llama3.split(text, bump),
        ModelKind::SentencePiece => {
            if text.is_empty() {
                return;
            }
            let mut norm = String::with_capacity(text.len() + 3);
            norm.push(SPACE);
            for c in text.chars() {
                norm.push(if c == ' ' { SPACE } else { c });
            }
            spm_words(&norm, bump);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Digit,
    Alpha,
    Other,
}

fn kind(c: char) -> Kind {
    if c == SPACE {
        Kind::Space
    } else if class(c) == Class::Number {
        Kind::Digit
    } else if c.is_alphabetic() {
        // Alphabetic rather than \p{L}: the vowel signs of Indic scripts stay with their letters.
        Kind::Alpha
    } else {
        Kind::Other
    }
}

/// Cuts SentencePiece-normalized text (spaces already `▁`) into training words, close to the
/// limits SentencePiece's trainer puts on pieces (`trainer_interface.cc`, IsValidSentencePiece,
/// with split_digits; its one-script rule becomes letters apart from other characters): a word
/// is a run of letters or a run of other characters, with at most one `▁` in front; digits stand
/// alone; a run of several `▁` is a word of its own but leaves its last `▁` to the word that
/// follows, as `\s+(?!\S)` does in the byte-level patterns.
pub(crate) fn spm_words<'t>(text: &'t str, mut f: impl FnMut(&'t str)) {
    let run_end = |from: usize, k: Kind| {
        text[from..]
            .char_indices()
            .find(|&(_, c)| kind(c) != k)
            .map_or(text.len(), |(j, _)| from + j)
    };
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap();
        let end = match kind(c) {
            Kind::Space => {
                let end = run_end(i, Kind::Space);
                let next = text[end..].chars().next().map(kind);
                match next {
                    None | Some(Kind::Digit) => end,
                    Some(_) if end - i > SPACE.len_utf8() => end - SPACE.len_utf8(),
                    Some(k) => run_end(end, k),
                }
            }
            Kind::Digit => i + c.len_utf8(),
            k => run_end(i, k),
        };
        f(&text[i..end]);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        spm_words(s, |w| v.push(w));
        v
    }

    #[test]
    fn spm_words_examples() {
        assert_eq!(words("▁Hello,▁world!"), ["▁Hello", ",", "▁world", "!"]);
        assert_eq!(
            words("▁in▁2024▁▁▁x"),
            ["▁in", "▁", "2", "0", "2", "4", "▁▁", "▁x"]
        );
        assert_eq!(words("▁a\n\nb▁"), ["▁a", "\n\n", "b", "▁"]);
        assert_eq!(words("▁東京は日本。"), ["▁東京は日本", "。"]);
        assert_eq!(words("▁हिन्दी"), ["▁हिन", "्", "दी"]);
    }

    #[test]
    fn counts_add_up_across_threads() {
        let texts = ["the cat and the hat", "the end", "", "cat cat"];
        for kind in [ModelKind::ByteLevel, ModelKind::SentencePiece] {
            let one = count(kind, &texts, 1);
            let three = count(kind, &texts, 3);
            assert_eq!(one, three);
        }
        let c = count(ModelKind::ByteLevel, &texts, 2);
        assert_eq!(c.get(" the"), Some(&1));
        assert_eq!(c.get("the"), Some(&2));
        assert_eq!(c.get(" cat"), Some(&2));
        assert_eq!(c.get("cat"), Some(&1));
        let c = count(ModelKind::SentencePiece, &texts, 2);
        assert_eq!(c.get("▁the"), Some(&3));
        assert_eq!(c.get("▁cat"), Some(&3));
    }
}
