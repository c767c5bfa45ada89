//! Token ids and pieces as people type and read them: ids in any separator, pieces escaped to
//! stay on one line, bytes that must be UTF-8 text.

use std::fmt;

/// Why typed ids or given bytes are not what they should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextError {
    /// A word that is not a token id.
    NotAnId(String),
    /// No ids at all.
    NoIds,
    /// Bytes of `source` that are not UTF-8: the first bad byte and its offset.
    NotUtf8 {
        source: String,
        byte: u8,
        offset: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::NotAnId(s) => {
                write!(f, "{s:?} is not a token id (a number 0 to 4294967295)")
            }
            TextError::NoIds => f.write_str("no token ids given"),
            TextError::NotUtf8 {
                source,
                byte,
                offset,
            } => write!(
                f,
                "{source} is not valid UTF-8: byte 0x{byte:02X} at offset {offset}"
            ),
        }
    }
}

impl std::error::Error for TextError {}

/// Ids separated by commas, spaces or both, in one or several parts; brackets are allowed
/// around them (`1,2,3`, `"1 2 3"`, `[1, 2, 3]`).
pub fn parse_ids<S: AsRef<str>>(parts: &[S]) -> Result<Vec<u32>, TextError> {
    let mut ids = Vec::new();
    for part in parts {
        let words = part
            .as_ref()
            .split(|c: char| c == ',' || c.is_whitespace() || c == '[' || c == ']')
            .filter(|s| !s.is_empty());
        for s in words {
            ids.push(s.parse().map_err(|_| TextError::NotAnId(s.to_string()))?);
        }
    }
    if ids.is_empty() {
        return Err(TextError::NoIds);
    }
    Ok(ids)
}

/// `bytes` as text, naming the first byte that is not UTF-8 and where `source` has it.
pub fn utf8_text(bytes: Vec<u8>, source: &str) -> Result<String, TextError> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        TextError::NotUtf8 {
            source: source.to_string(),
            byte: e.as_bytes()[offset],
            offset,
        }
    })
}

/// A token's bytes for display on one line: escapes for line breaks, tabs and other controls,
/// `\xNN` for bytes that are part of a character split across tokens.
pub fn escape_piece(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_any_separator_and_words_that_are_not_ids() {
        let want = vec![1, 2, 3];
        for parts in [&["1,2,3"][..], &["1 2 3"], &["1", "2", "3"], &["[1, 2, 3]"]] {
            assert_eq!(parse_ids(parts).unwrap(), want, "{parts:?}");
        }
        assert_eq!(parse_ids(&["1,x"]), Err(TextError::NotAnId("x".into())));
        assert_eq!(
            parse_ids(&["4294967296"]).unwrap_err().to_string(),
            "\"4294967296\" is not a token id (a number 0 to 4294967295)"
        );
        assert_eq!(parse_ids(&[" , [ ]"]), Err(TextError::NoIds));
    }

    #[test]
    fn text_that_is_not_utf8_names_the_byte_and_its_offset() {
        assert_eq!(utf8_text(b"caf\xC3\xA9".to_vec(), "f").unwrap(), "café");
        let e = utf8_text(b"caf\xC3(".to_vec(), "notes.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "notes.txt is not valid UTF-8: byte 0xC3 at offset 3"
        );
    }

    #[test]
    fn pieces_stay_on_one_line() {
        assert_eq!(escape_piece(b"a\nb\tc\\"), "a\\nb\\tc\\\\");
        assert_eq!(escape_piece(b"\xE2\x96"), "\\xE2\\x96");
        assert_eq!(escape_piece("\u{1}".as_bytes()), "\\u{1}");
    }
}
