//! Streaming decoding: generated ids arrive one by one, and a character may be split across
//! several of them (byte-fallback pieces `<0xE6><0x97><0xA5>`, or byte-level tokens that end
//! inside a character). The decoder holds back an incomplete tail until it completes.

use crate::{Error, Tokenizer};

/// Turns ids into text, yielding only complete UTF-8 characters. Unlike [`Tokenizer::decode`] it
/// does not drop the SentencePiece dummy-prefix space: it decodes a continuation, not a whole text.
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tok: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder {
            tok,
            pending: Vec::new(),
        }
    }

    /// Adds one id; returns the text that is now complete (often empty).
    pub fn push(&mut self, id: u32) -> Result<String, Error> {
        let b = self.tok.token_bytes(id).ok_or(Error::IdOutOfRange {
            id,
            n_vocab: self.tok.n_vocab(),
            position: 0,
        })?;
        self.pending.extend_from_slice(b);
        Ok(self.take_complete())
    }

    /// Returns what is still held back (an unfinished character), as U+FFFD, and resets.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is what from_utf8 just validated.
                    out.push_str(std::str::from_utf8(good).unwrap());
                    match e.error_len() {
                        // Invalid bytes in the middle can never complete: replace them.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }
}
