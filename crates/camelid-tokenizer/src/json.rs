//! Reading a Hugging Face `tokenizer.json` (huggingface/tokenizers, `tokenizer/serialization.rs`)
//! of the two kinds the Llama family uses: byte-level BPE (Llama 3, SmolLM2) and SentencePiece-like
//! BPE with byte fallback (Llama 2). Also `tokenizer_config.json` for BOS/EOS and the chat template.

use std::path::Path;

use serde_json::Value;

use crate::{Error, ModelKind, PreTokenizer, TokenType, Tokenizer, TokenizerSpec};

/// Llama 3's pre-tokenizer regex as `tokenizer.json` writes it.
pub(crate) const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

fn ty(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The pre-tokenizer a byte-level `tokenizer.json` describes.
fn byte_level_pre(pre: &Value) -> Result<PreTokenizer, Error> {
    let unsupported = || Error::Unsupported(format!("pre_tokenizer {}", short(pre)));
    let flag =
        |v: &Value, k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
    let byte_level_ok = |v: &Value, regex: bool| {
        ty(v) == "ByteLevel"
            && !flag(v, "add_prefix_space", true)
            && flag(v, "use_regex", true) == regex
    };
    match ty(pre) {
        "ByteLevel" if byte_level_ok(pre, true) => Ok(PreTokenizer::Gpt2),
        "Sequence" => {
            let list = pre
                .get("pretokenizers")
                .and_then(Value::as_array)
                .ok_or_else(unsupported)?;
            match list.as_slice() {
                [split, bl] if ty(split) == "Split" && byte_level_ok(bl, false) => {
                    let pattern = split.pointer("/pattern/Regex").and_then(Value::as_str);
                    let behavior = split.get("behavior").and_then(Value::as_str);
                    if pattern == Some(LLAMA3_PATTERN)
                        && behavior == Some("Isolated")
                        && !flag(split, "invert", false)
                    {
                        Ok(PreTokenizer::Llama3)
                    } else {
                        Err(unsupported())
                    }
                }
                [digits, bl]
                    if ty(digits) == "Digits"
                        && flag(digits, "individual_digits", false)
                        && byte_level_ok(bl, true) =>
                {
                    Ok(PreTokenizer::SmolLm)
                }
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}

fn contains_type(v: &Value, t: &str) -> bool {
    match v {
        Value::Object(m) => {
            m.get("type").and_then(Value::as_str) == Some(t)
                || m.values().any(|x| contains_type(x, t))
        }
        Value::Array(a) => a.iter().any(|x| contains_type(x, t)),
        _ => false,
    }
}

/// Whether a SentencePiece-like `tokenizer.json` puts `▁` in front of the text.
fn spm_prefix(j: &Value) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                let t = m.get("type").and_then(Value::as_str).unwrap_or("");
                (t == "Prepend" && m.get("prepend").and_then(Value::as_str) == Some("\u{2581}"))
                    || (t == "Metaspace"
                        && (m.get("add_prefix_space").and_then(Value::as_bool) == Some(true)
                            || matches!(
                                m.get("prepend_scheme").and_then(Value::as_str),
                                Some("always" | "first")
                            )))
                    || m.values().any(walk)
            }
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    walk(&j["normalizer"]) || walk(&j["pre_tokenizer"])
}

pub(crate) fn parse(data: &[u8], path: &Path) -> Result<Tokenizer, Error> {
    let j: Value = serde_json::from_slice(data)
        .map_err(|e| Error::format(path, format!("malformed tokenizer.json: {e}")))?;
    parse_value(&j).map_err(|e| e.in_file(path))
}

fn parse_value(j: &Value) -> Result<Tokenizer, Error> {
    let model = j
        .get("model")
        .filter(|m| m.is_object())
        .ok_or_else(|| Error::invalid("no \"model\" object"))?;
    let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if model_type != "BPE" {
        return Err(Error::Unsupported(format!(
            "tokenizer.json model type {model_type:?}; only BPE is implemented"
        )));
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid("model.vocab is not an object"))?;
    let added: &[Value] = j
        .get("added_tokens")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    let id_of = |v: &Value, what: &str| -> Result<u32, Error> {
        v.as_u64()
            .filter(|&i| i < u32::MAX as u64 / 2)
            .map(|i| i as u32)
            .ok_or_else(|| Error::invalid(format!("{what} has id {v}, not a token id")))
    };
    let mut n = 0usize;
    let mut entries: Vec<(u32, String, TokenType)> = Vec::with_capacity(vocab.len() + added.len());
    for (text, id) in vocab {
        let id = id_of(id, &format!("vocab entry {text:?}"))?;
        entries.push((id, text.clone(), TokenType::Normal));
    }
    for a in added {
        let text = a
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(format!("added token without content: {}", short(a))))?;
        let id = id_of(
            a.get("id").unwrap_or(&Value::Null),
            &format!("added token {text:?}"),
        )?;
        let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
        entries.push((
            id,
            text.to_string(),
            if special {
                TokenType::Control
            } else {
                TokenType::UserDefined
            },
        ));
    }
    for e in &entries {
        n = n.max(e.0 as usize + 1);
    }
    // Ids must run 0..n without gaps; checking before allocating keeps a stray huge id from
    // asking for gigabytes.
    if n > entries.len() {
        return Err(Error::invalid(format!(
            "token ids go up to {} but there are only {} tokens: ids must run from 0 without gaps",
            n - 1,
            entries.len()
        )));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![TokenType::Normal; n];
    for (id, text, t) in entries {
        // An added token that repeats a vocabulary entry keeps its spelling and becomes special.
        tokens[id as usize] = Some(text);
        if t != TokenType::Normal {
            types[id as usize] = t;
        }
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            t.ok_or_else(|| {
                Error::invalid(format!(
                    "no token has id {id} (ids must be 0..{n} without gaps)"
                ))
            })
        })
        .collect::<Result<_, _>>()?;

    let mut merges = Vec::new();
    if let Some(list) = model.get("merges") {
        let list = list
            .as_array()
            .ok_or_else(|| Error::invalid("model.merges is not an array"))?;
        merges.reserve(list.len());
        for (i, m) in list.iter().enumerate() {
            let s = match m {
                Value::String(s) => s.clone(),
                Value::Array(a) => match a.as_slice() {
                    [Value::String(l), Value::String(r)]
                        if !l.contains(' ') && !r.contains(' ') =>
                    {
                        format!("{l} {r}")
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "merge {i} is {m}, not a pair of tokens without spaces"
                        )));
                    }
                },
                _ => {
                    return Err(Error::invalid(format!(
                        "merge {i} is {m}, not a string or pair"
                    )));
                }
            };
            merges.push(s);
        }
    }

    let byte_level = contains_type(&j["pre_tokenizer"], "ByteLevel")
        || contains_type(&j["decoder"], "ByteLevel");
    let byte_fallback = model
        .get("byte_fallback")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut spec;
    if byte_level {
        if !j["normalizer"].is_null() {
            return Err(Error::Unsupported(format!(
                "normalizer {} in a byte-level tokenizer.json",
                short(&j["normalizer"])
            )));
        }
        spec = TokenizerSpec::new(ModelKind::ByteLevel, tokens);
        spec.pre = Some(byte_level_pre(&j["pre_tokenizer"])?);
        spec.ignore_merges = model
            .get("ignore_merges")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    } else if byte_fallback || spm_prefix(j) {
        spec = TokenizerSpec::new(ModelKind::SentencePiece, tokens);
        spec.add_space_prefix = spm_prefix(j);
        // Pieces spelled <0xNN> are the byte-fallback pieces.
        for (id, t) in spec.tokens.iter().enumerate() {
            if types[id] == TokenType::Normal && crate::parse_byte_piece(t).is_some() {
                types[id] = TokenType::Byte;
            }
        }
    } else {
        return Err(Error::Unsupported(
            "tokenizer.json is neither byte-level BPE nor SentencePiece-like BPE".to_string(),
        ));
    }
    spec.types = types;
    spec.merges = merges;
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| spec.tokens.iter().position(|t| t == n))
            .map(|p| p as u32)
    };
    if let Some(unk) = model.get("unk_token").and_then(Value::as_str) {
        spec.unk = find(&[unk]);
        if let Some(u) = spec.unk {
            spec.types[u as usize] = TokenType::Unknown;
        }
    }
    // BOS: what the post-processor puts in front, or the family's usual name.
    let template_bos = j
        .pointer("/post_processor/single/0/SpecialToken/id")
        .or_else(|| {
            j.pointer("/post_processor/processors")
                .and_then(Value::as_array)
                .and_then(|ps| {
                    ps.iter()
                        .find_map(|p| p.pointer("/single/0/SpecialToken/id"))
                })
        })
        .and_then(Value::as_str);
    spec.bos = match template_bos {
        Some(name) => find(&[name]),
        None => find(&["<|begin_of_text|>", "<s>"]),
    };
    spec.add_bos = template_bos.is_some()
        || spec.pre == Some(PreTokenizer::Llama3)
        || spec.kind == ModelKind::SentencePiece;
    spec.eos = find(&["<|end_of_text|>", "</s>", "<|endoftext|>"]);
    spec.eot = find(&["<|eot_id|>"]);
    spec.eom = find(&["<|eom_id|>"]);
    Tokenizer::from_spec(spec)
}

/// A token named in `tokenizer_config.json`: a string or `{"content": ...}`.
fn token_name(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("content").and_then(Value::as_str),
        _ => None,
    }
}

impl Tokenizer {
    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Tokenizer, Error> {
        let path = path.as_ref();
        let data = crate::error::read(path)?;
        parse(&data, path)
    }

    /// As [`Tokenizer::from_tokenizer_json`], from bytes; `path` only names them in errors.
    pub fn from_tokenizer_json_bytes(data: &[u8], path: &Path) -> Result<Tokenizer, Error> {
        parse(data, path)
    }

    /// Applies a `tokenizer_config.json`: `bos_token`, `eos_token`, `add_bos_token` and
    /// `chat_template` (a string, or a list of `{name, template}` of which `default` is taken).
    pub fn apply_tokenizer_config(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let data = crate::error::read(path)?;
        let j: Value = serde_json::from_slice(&data)
            .map_err(|e| Error::format(path, format!("malformed tokenizer_config.json: {e}")))?;
        if let Some(name) = token_name(j.get("bos_token")) {
            let id = self.token_id(name);
            self.set_bos(id, self.add_bos);
        }
        if let Some(name) = token_name(j.get("eos_token")) {
            self.set_eos(self.token_id(name));
        }
        if let Some(add) = j.get("add_bos_token").and_then(Value::as_bool) {
            self.set_bos(self.bos, add);
        }
        match j.get("chat_template") {
            Some(Value::String(t)) => self.chat_template = Some(t.clone()),
            Some(Value::Array(list)) => {
                self.chat_template = list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            _ => {}
        }
        Ok(())
    }
}
