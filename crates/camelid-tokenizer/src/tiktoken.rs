//! Meta's Llama 3 `tokenizer.model`: tiktoken's rank file, one `base64(token bytes) rank` per
//! line, ranks 0..n in order; the 256 special tokens follow in code (meta-llama/llama-models
//! `models/llama3/tokenizer.py`). A pair of tokens merges when their concatenation is a token,
//! lowest rank first (openai/tiktoken `src/lib.rs`), and a pre-token that is itself a token is
//! emitted whole.

use std::path::Path;

use crate::merge::{FastMap, PairMap};
use crate::{Error, ModelKind, PreTokenizer, TokenType, Tokenizer, TokenizerSpec};

/// The Llama 3 special tokens after `n_base` ranked tokens, as Meta's `tokenizer.py`
/// (llama-models 0.3.0) names them: eleven named ones, `<|image|>`, then
/// `<|reserved_special_token_2|>` onwards to make 256.
pub fn llama3_special_tokens() -> Vec<String> {
    let named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ];
    let mut v: Vec<String> = named.iter().map(|s| s.to_string()).collect();
    let mut k = 2;
    while v.len() < 256 {
        v.push(format!("<|reserved_special_token_{k}|>"));
        k += 1;
    }
    v
}

/// Standard base64 (RFC 4648 section 4) with optional `=` padding.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = match s.iter().position(|&c| c == b'=') {
        Some(p) => {
            if s[p..].iter().any(|&c| c != b'=') || s.len() % 4 != 0 || s.len() - p > 2 {
                return None;
            }
            &s[..p]
        }
        None => s,
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() - 1; // bytes this chunk carries
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Whether `data` looks like a tiktoken rank file (text lines of base64, space, number).
pub(crate) fn looks_like_tiktoken(data: &[u8]) -> bool {
    let first = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut parts = first.split(|&b| b == b' ');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(b), Some(r), None) if !b.is_empty() && base64_decode(b).is_some()
            && !r.is_empty() && r.iter().all(u8::is_ascii_digit)
    )
}

pub(crate) fn parse(data: &[u8], path: &Path) -> Result<Tokenizer, Error> {
    let mut ranked: Vec<Vec<u8>> = Vec::new();
    for (lineno, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| Error::format(path, format!("line {}: {what}", lineno + 1));
        let sp = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("expected `base64 rank`"))?;
        let token = base64_decode(&line[..sp]).ok_or_else(|| bad("invalid base64"))?;
        let rank: usize = std::str::from_utf8(&line[sp + 1..])
            .ok()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| bad("invalid rank"))?;
        if rank != ranked.len() {
            return Err(bad(&format!(
                "rank {rank} where {} was expected (ranks must count up from 0)",
                ranked.len()
            )));
        }
        if token.is_empty() {
            return Err(bad("empty token"));
        }
        ranked.push(token);
    }
    if ranked.is_empty() {
        return Err(Error::format(path, "no ranked tokens"));
    }
    Tokenizer::from_tiktoken_ranks(ranked, llama3_special_tokens(), PreTokenizer::Llama3)
        .map_err(|e| e.in_file(path))
}

impl Tokenizer {
    /// Reads Meta's Llama 3 `tokenizer.model` (tiktoken format) and adds the 256 Llama 3 special
    /// tokens. BOS (`<|begin_of_text|>`) is added by default; EOS is `<|end_of_text|>`.
    pub fn from_tiktoken_model(path: impl AsRef<Path>) -> Result<Tokenizer, Error> {
        let path = path.as_ref();
        let data = crate::error::read(path)?;
        parse(&data, path)
    }

    /// A tiktoken-style tokenizer: `ranked[r]` is the token of rank (and id) `r`; special tokens
    /// follow with ids from `ranked.len()`.
    pub fn from_tiktoken_ranks(
        ranked: Vec<Vec<u8>>,
        specials: Vec<String>,
        pre: PreTokenizer,
    ) -> Result<Tokenizer, Error> {
        let n_base = ranked.len();
        let mut index: FastMap<&[u8], u32> = FastMap::default();
        for (id, t) in ranked.iter().enumerate() {
            if index.insert(t, id as u32).is_some() {
                return Err(Error::invalid(format!("token of rank {id} appears twice")));
            }
        }
        for b in 0..=255u8 {
            if !index.contains_key(&[b][..]) {
                return Err(Error::invalid(format!(
                    "no token for the single byte 0x{b:02X}"
                )));
            }
        }
        // Every way of cutting a token into two tokens is a merge of that token's rank.
        let mut pairs = PairMap::default();
        for (id, t) in ranked.iter().enumerate() {
            for cut in 1..t.len() {
                if let (Some(&l), Some(&r)) = (index.get(&t[..cut]), index.get(&t[cut..])) {
                    pairs.insert(l, r, id as u32, id as u32);
                }
            }
        }
        drop(index);
        let mut tokens: Vec<String> = ranked
            .iter()
            .map(|t| {
                t.iter()
                    .map(|&b| crate::bytelevel::BYTE_TO_CHAR[b as usize])
                    .collect()
            })
            .collect();
        let mut types = vec![TokenType::Normal; n_base];
        for s in specials {
            tokens.push(s);
            types.push(TokenType::Control);
        }
        let mut spec = TokenizerSpec::new(ModelKind::ByteLevel, tokens);
        spec.types = types;
        spec.pre = Some(pre);
        spec.ignore_merges = true;
        let find = |name: &str| {
            spec.tokens
                .iter()
                .skip(n_base)
                .position(|t| t == name)
                .map(|p| (p + n_base) as u32)
        };
        spec.bos = find("<|begin_of_text|>");
        spec.eos = find("<|end_of_text|>");
        spec.eot = find("<|eot_id|>");
        spec.eom = find("<|eom_id|>");
        spec.pad = find("<|finetune_right_pad_id|>");
        spec.add_bos = spec.bos.is_some();
        Tokenizer::build_with_pairs(spec, pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode(b"IQ=="), Some(b"!".to_vec()));
        assert_eq!(base64_decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode(b"a"), None);
        assert_eq!(base64_decode(b"a=b="), None);
        assert_eq!(base64_decode(b"a*=="), None);
    }

    #[test]
    fn special_names() {
        let s = llama3_special_tokens();
        assert_eq!(s.len(), 256);
        assert_eq!(s[9], "<|eot_id|>");
        assert_eq!(s[255], "<|reserved_special_token_245|>");
    }
}
