//! Character classes for the pre-tokenizers: `\p{L}`, `\p{N}` and `\s` exactly as the `regex` crate
//! (and so tiktoken's fancy-regex) defines them. The tables come from `unicode_tables.rs`; the
//! test `unicode_tables_equal_regex` checks all code points against `regex`.

use std::sync::OnceLock;

use crate::unicode_tables::{LETTER, NUMBER, WHITESPACE};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Class {
    /// `\p{L}`
    Letter = 0,
    /// `\p{N}`
    Number = 1,
    /// `\s` (Unicode White_Space)
    Space = 2,
    /// Everything else: punctuation, symbols, marks, controls, unassigned.
    Other = 3,
}

const fn ascii_class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Number,
        b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => Class::Space,
        _ => Class::Other,
    }
}

static ASCII: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii_class(i as u8);
        i += 1;
    }
    t
};

fn in_ranges(table: &[(u32, u32)], cp: u32) -> bool {
    // Index of the first range starting after cp; the range before it may contain cp.
    let i = table.partition_point(|&(start, _)| start <= cp);
    i > 0 && cp <= table[i - 1].1
}

fn class_slow(cp: u32) -> Class {
    if in_ranges(LETTER, cp) {
        Class::Letter
    } else if in_ranges(NUMBER, cp) {
        Class::Number
    } else if in_ranges(WHITESPACE, cp) {
        Class::Space
    } else {
        Class::Other
    }
}

/// The Basic Multilingual Plane as one byte per code point (64 KiB, built on first use): CJK and
/// other scripts whose text is almost all BMP then cost one load per character, not a search.
fn bmp() -> &'static [Class] {
    static BMP: OnceLock<Vec<Class>> = OnceLock::new();
    BMP.get_or_init(|| (0..0x10000u32).map(class_slow).collect())
}

#[inline]
pub(crate) fn class(c: char) -> Class {
    let cp = c as u32;
    if cp < 0x80 {
        ASCII[cp as usize]
    } else if cp < 0x10000 {
        bmp()[cp as usize]
    } else {
        class_slow(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_checks() {
        assert_eq!(class('a'), Class::Letter);
        assert_eq!(class('日'), Class::Letter);
        assert_eq!(class('٣'), Class::Number); // Arabic-Indic digit three
        assert_eq!(class('½'), Class::Number);
        assert_eq!(class('\u{3000}'), Class::Space);
        assert_eq!(class('\u{301}'), Class::Other); // combining acute: a mark, not a letter
        assert_eq!(class('\u{1F600}'), Class::Other);
        assert_eq!(class('\u{1D400}'), Class::Letter); // mathematical bold A
    }
}

#[cfg(test)]
mod table_tests {
    use super::{Class, class};
    use regex_syntax::hir::{Class as HirClass, HirKind};

    /// The non-ASCII ranges of a regex class, as the `regex` crate defines it.
    fn all_ranges(pattern: &str) -> Vec<(u32, u32)> {
        let hir = regex_syntax::parse(pattern).unwrap();
        let HirKind::Class(HirClass::Unicode(cls)) = hir.kind() else {
            panic!("{pattern} is not a Unicode class")
        };
        cls.ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect()
    }

    fn regex_ranges(pattern: &str) -> Vec<(u32, u32)> {
        all_ranges(pattern)
            .into_iter()
            .filter(|&(_, end)| end >= 0x80)
            .map(|(s, e)| (s.max(0x80), e))
            .collect()
    }

    /// Tables and regex agree range for range; a char in neither is `Other`.
    #[test]
    fn unicode_tables_equal_regex() {
        assert_eq!(super::LETTER, regex_ranges(r"\p{L}").as_slice(), "\\p{{L}}");
        assert_eq!(super::NUMBER, regex_ranges(r"\p{N}").as_slice(), "\\p{{N}}");
        assert_eq!(super::WHITESPACE, regex_ranges(r"\s").as_slice(), "\\s");
        for (pattern, cls) in [
            (r"\p{L}", Class::Letter),
            (r"\p{N}", Class::Number),
            (r"\s", Class::Space),
        ] {
            let r = all_ranges(pattern);
            for b in 0u32..128 {
                let in_regex = r.iter().any(|&(s, e)| (s..=e).contains(&b));
                assert_eq!(
                    in_regex,
                    class(char::from_u32(b).unwrap()) == cls,
                    "{pattern} at 0x{b:02X}"
                );
            }
        }
    }
}
