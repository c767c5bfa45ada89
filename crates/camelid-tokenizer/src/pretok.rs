//! Pre-tokenizers of byte-level BPE: they cut text into pieces that are merged independently.
//! Each is a hand-written matcher for one regular expression, proven equal to the regex by the
//! test `pretokenizers_equal_fancy_regex` (random and corpus text, compared piece by piece).
//!
//! - `Llama3` (GGUF `tokenizer.ggml.pre` = `llama-bpe`/`llama3`; meta-llama/llama3 `tokenizer.py`):
//!   `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! - `Gpt2` (`gpt2`; openai/gpt-2 `src/encoder.py`):
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! - `SmolLm` (`smollm`; llama.cpp `llama-vocab.cpp` groups it with StarCoder, and SmolLM2's
//!   `tokenizer.json` says `Digits(individual_digits)` then `ByteLevel`): every `\p{N}` character
//!   is a piece of its own, then the GPT-2 expression runs on each stretch between them, each
//!   stretch's end counting as the end of the text.
//!
//! The regexes follow leftmost-first alternation: at each position the first alternative that
//! matches wins, which is what the matchers below spell out case by case.

use crate::unicode::{Class, class};

/// Which pre-tokenizer a byte-level vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// Llama 3's pattern (`llama-bpe`, `llama3`).
    Llama3,
    /// GPT-2's pattern (`gpt2`).
    Gpt2,
    /// Single digits, then GPT-2's pattern (`smollm`).
    SmolLm,
}

impl PreTokenizer {
    /// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name, if camelid knows it.
    pub fn from_gguf_name(name: &str) -> Option<PreTokenizer> {
        match name {
            "llama3" | "llama-v3" | "llama-bpe" => Some(PreTokenizer::Llama3),
            "gpt2" | "gpt-2" => Some(PreTokenizer::Gpt2),
            "smollm" => Some(PreTokenizer::SmolLm),
            _ => None,
        }
    }

    /// Calls `f` with each piece of `text`, in order; the pieces concatenate to `text`.
    pub fn split<'t>(self, text: &'t str, mut f: impl FnMut(&'t str)) {
        match self {
            PreTokenizer::Llama3 => split_with(text, llama3_end, &mut f),
            PreTokenizer::Gpt2 => split_with(text, gpt2_end, &mut f),
            PreTokenizer::SmolLm => {
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if class(c) == Class::Number {
                        split_with(&text[start..i], gpt2_end, &mut f);
                        f(&text[i..i + c.len_utf8()]);
                        start = i + c.len_utf8();
                    }
                }
                split_with(&text[start..], gpt2_end, &mut f);
            }
        }
    }
}

fn split_with<'t>(text: &'t str, end_of: fn(&str, usize) -> usize, f: &mut impl FnMut(&'t str)) {
    let mut i = 0;
    while i < text.len() {
        let end = end_of(text, i);
        debug_assert!(end > i);
        f(&text[i..end]);
        i = end;
    }
}

/// The character at byte offset `i` (a char boundary) and its class, or `None` at the end.
#[inline]
fn at(s: &str, i: usize) -> Option<(char, Class)> {
    let b = *s.as_bytes().get(i)?;
    if b < 0x80 {
        let c = b as char;
        return Some((c, class(c)));
    }
    let c = s[i..].chars().next()?;
    Some((c, class(c)))
}

/// End of the run of characters of class `cls` starting at `i`.
#[inline]
fn run_end(s: &str, mut i: usize, cls: Class) -> usize {
    let bytes = s.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if class(b as char) != cls {
                break;
            }
            i += 1;
        } else {
            let c = s[i..].chars().next().unwrap();
            if class(c) != cls {
                break;
            }
            i += c.len_utf8();
        }
    }
    i
}

/// End of up to `max` characters of class `cls` starting at `i`.
fn run_end_max(s: &str, mut i: usize, cls: Class, max: usize) -> usize {
    for _ in 0..max {
        match at(s, i) {
            Some((c, k)) if k == cls => i += c.len_utf8(),
            _ => break,
        }
    }
    i
}

/// `'s|'t|'re|'ve|'m|'ll|'d` after an apostrophe at `i`: the length matched after it, or 0.
/// With `fold`, letters match as under `(?i)` in the `regex` crate (simple case folding, which
/// also maps U+017F LATIN SMALL LETTER LONG S to `s`).
fn contraction(s: &str, i: usize, fold: bool) -> usize {
    let rest = &s[i..];
    let mut chars = rest.chars();
    let eq = |c: Option<char>, lower: char| -> bool {
        match c {
            Some(c) if c == lower => true,
            Some(c) if fold => c.to_ascii_lowercase() == lower || (lower == 's' && c == '\u{17F}'),
            _ => false,
        }
    };
    let c1 = chars.next();
    let c2 = chars.next();
    let len = |n: usize| rest.chars().take(n).map(char::len_utf8).sum::<usize>();
    if eq(c1, 's') || eq(c1, 't') || eq(c1, 'm') || eq(c1, 'd') {
        return len(1);
    }
    if (eq(c1, 'r') || eq(c1, 'v')) && eq(c2, 'e') {
        return len(2);
    }
    if eq(c1, 'l') && eq(c2, 'l') {
        return len(2);
    }
    0
}

/// The end of the whitespace alternatives shared by both patterns, for a whitespace run at `i`:
/// `\s+(?!\S)|\s+` (and before them, for Llama 3, `\s*[\r\n]+` when `newlines`).
fn whitespace_end(s: &str, i: usize, newlines: bool) -> usize {
    let end = run_end(s, i, Class::Space);
    if newlines {
        // `\s*[\r\n]+`: the greedy `\s*` gives back characters until a line break follows it,
        // so the match ends just after the run's last line break.
        if let Some(k) = s[i..end].rfind(['\r', '\n']) {
            return i + k + 1;
        }
    }
    if end == s.len() {
        return end;
    }
    // A non-space follows: `\s+(?!\S)` leaves the run's last character to the next piece, and
    // when that is the only character, `\s+` takes it.
    let last = s[i..end].chars().next_back().unwrap();
    if end - last.len_utf8() > i {
        end - last.len_utf8()
    } else {
        end
    }
}

fn llama3_end(s: &str, i: usize) -> usize {
    let (c, cls) = at(s, i).unwrap();
    let next = at(s, i + c.len_utf8());
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == '\'' {
        let n = contraction(s, i + 1, true);
        if n > 0 {
            return i + 1 + n;
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if cls == Class::Letter {
        return run_end(s, i, Class::Letter);
    }
    if c != '\r' && c != '\n' && cls != Class::Number {
        if let Some((_, Class::Letter)) = next {
            return run_end(s, i + c.len_utf8(), Class::Letter);
        }
    }
    // \p{N}{1,3}
    if cls == Class::Number {
        return run_end_max(s, i, Class::Number, 3);
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    let other_start = if cls == Class::Other {
        Some(i)
    } else if c == ' ' && matches!(next, Some((_, Class::Other))) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(j) = other_start {
        let mut j = run_end(s, j, Class::Other);
        while matches!(s.as_bytes().get(j), Some(b'\r' | b'\n')) {
            j += 1;
        }
        return j;
    }
    // \s*[\r\n]+|\s+(?!\S)|\s+
    whitespace_end(s, i, true)
}

fn gpt2_end(s: &str, i: usize) -> usize {
    let (c, cls) = at(s, i).unwrap();
    // 's|'t|'re|'ve|'m|'ll|'d
    if c == '\'' {
        let n = contraction(s, i + 1, false);
        if n > 0 {
            return i + 1 + n;
        }
    }
    // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+'
    if cls != Class::Space {
        return run_end(s, i, cls);
    }
    if c == ' ' {
        if let Some((_, next)) = at(s, i + 1) {
            if next != Class::Space {
                return run_end(s, i + 1, next);
            }
        }
    }
    // \s+(?!\S)|\s+
    whitespace_end(s, i, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(p: PreTokenizer, s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        p.split(s, |x| v.push(x));
        v
    }

    #[test]
    fn llama3_examples() {
        let p = PreTokenizer::Llama3;
        assert_eq!(pieces(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(p, "I'VE 12345"), ["I", "'VE", " ", "123", "45"]);
        assert_eq!(
            pieces(p, "a  b\n\n c "),
            ["a", " ", " b", "\n\n", " c", " "]
        );
        assert_eq!(pieces(p, "x !!\r\n"), ["x", " !!\r\n"]);
    }

    #[test]
    fn smollm_examples() {
        let p = PreTokenizer::SmolLm;
        assert_eq!(pieces(p, "abc 123"), ["abc", " ", "1", "2", "3"]);
        assert_eq!(pieces(p, "I'm  x"), ["I", "'m", " ", " x"]);
    }
}
