//! GPT-2's reversible byte-to-character mapping, used by byte-level BPE vocabularies (GPT-2,
//! SmolLM2, Llama 3 in `tokenizer.json` and GGUF): the printable bytes `!`..`~`, `¡`..`¬` and
//! `®`..`ÿ` stand for themselves, the other 68 bytes become U+0100.. in byte order.
//! Source: openai/gpt-2 `src/encoder.py`, `bytes_to_unicode`.

const fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character each byte is spelled with.
pub(crate) const BYTE_TO_CHAR: [char; 256] = {
    let mut t = ['\0'; 256];
    let mut extra = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let cp = if is_printable(b as u8) {
            b as u32
        } else {
            extra += 1;
            255 + extra
        };
        t[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    t
};

/// Inverse of [`BYTE_TO_CHAR`] for the code points below 256 + 68; -1 where no byte maps.
const CHAR_TO_BYTE: [i16; 324] = {
    let mut t = [-1i16; 324];
    let mut b = 0usize;
    while b < 256 {
        t[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    t
};

/// The byte a character spells, or `None`.
#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    match CHAR_TO_BYTE.get(c as usize) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

/// Decodes a byte-level token spelling into its bytes; `None` if a character is outside the mapping.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    text.chars().map(char_to_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_bytes() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(BYTE_TO_CHAR[b as usize]), Some(b));
        }
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(decode("Ġhello"), Some(b" hello".to_vec()));
    }
}
