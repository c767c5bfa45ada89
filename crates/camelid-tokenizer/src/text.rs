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
