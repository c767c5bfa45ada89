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
