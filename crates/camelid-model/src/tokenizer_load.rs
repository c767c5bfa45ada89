//! Loading a tokenizer from any source a user may point at: a model GGUF, a vocabulary-only GGUF,
//! a model folder (`tokenizer.json` or `tokenizer.model`, plus `tokenizer_config.json` when
//! present, or a `tokenizer.gguf`), a `tokenizer.json`, or a `tokenizer.model` (tiktoken text or SentencePiece protobuf).
//!
//! GGUF keys read (ggml-org/ggml `docs/gguf.md`, "Tokenizer"; defaults as llama.cpp
//! `llama-vocab.cpp` applies them): `tokenizer.ggml.model` (`llama` = SentencePiece, `gpt2` =
//! byte-level BPE), `.tokens`, `.scores`, `.token_type`, `.merges`, `.pre`, `.bos_token_id`,
//! `.eos_token_id`, `.unknown_token_id`, `.padding_token_id`, `.eot_token_id`, `.eom_token_id`,
//! `.add_bos_token`, `.add_eos_token`, `.add_space_prefix`, and `tokenizer.chat_template`.

use std::fmt;
use std::path::{Path, PathBuf};

use camelid_formats::gguf::keys::tokenizer as keys;
use camelid_formats::gguf::{Gguf, Value};
use camelid_tokenizer::{ModelKind, PreTokenizer, TokenType, Tokenizer, TokenizerSpec};

/// Why a tokenizer could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The GGUF file itself is unreadable or malformed.
    Gguf(camelid_formats::Error),
    /// A GGUF tokenizer key is missing or has the wrong type or value.
    Key {
        path: PathBuf,
        key: String,
        msg: String,
    },
    /// The tokenizer files are malformed or unsupported.
    Tokenizer(camelid_tokenizer::Error),
    /// The path is not something a tokenizer can be read from.
    NotFound { path: PathBuf, msg: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Gguf(e) => write!(f, "{e}"),
            LoadError::Key { path, key, msg } => write!(f, "{}: {key}: {msg}", path.display()),
            LoadError::Tokenizer(e) => write!(f, "{e}"),
            LoadError::NotFound { path, msg } => write!(f, "{}: {msg}", path.display()),
        }
    }
}

/// Each variant's message already includes the error it wraps, so none is reported again as a
/// source (an `anyhow` chain would print it twice).
impl std::error::Error for LoadError {}

impl From<camelid_tokenizer::Error> for LoadError {
    fn from(e: camelid_tokenizer::Error) -> LoadError {
        LoadError::Tokenizer(e)
    }
}

impl From<camelid_formats::Error> for LoadError {
    fn from(e: camelid_formats::Error) -> LoadError {
        LoadError::Gguf(e)
    }
}

/// Loads a tokenizer from a GGUF file, a model folder, a `tokenizer.json` or a `tokenizer.model`;
/// the kind is told by content (the GGUF magic, a JSON object), not by file name.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, LoadError> {
    let not_found = |msg: &str| LoadError::NotFound {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    };
    if path.is_dir() {
        let json = path.join("tokenizer.json");
        let model = path.join("tokenizer.model");
        // A vocabulary-only GGUF, as `camelid train` copies one into its checkpoints when the
        // tokenizer came as a GGUF (the presets' vocabularies).
        let gguf = path.join("tokenizer.gguf");
        let mut tok = if json.is_file() {
            Tokenizer::from_tokenizer_json(&json)?
        } else if model.is_file() {
            Tokenizer::from_tokenizer_model(&model)?
        } else if gguf.is_file() {
            return tokenizer_from_gguf(&Gguf::open(&gguf)?);
        } else {
            return Err(not_found(
                "the folder has neither tokenizer.json nor tokenizer.model (nor tokenizer.gguf)",
            ));
        };
        apply_config_beside(&mut tok, &path.join("tokenizer.json"))?;
        return Ok(tok);
    }
    let mut head = [0u8; 4];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| not_found(&e.to_string()))?;
        let mut n = 0;
        while n < 4 {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(not_found(&e.to_string())),
            }
        }
        n
    };
    if n == 4 && &head == b"GGUF" {
        let gguf = Gguf::open(path)?;
        return tokenizer_from_gguf(&gguf);
    }
    let first_non_space = head[..n].iter().find(|b| !b.is_ascii_whitespace());
    if first_non_space == Some(&b'{') {
        let mut tok = Tokenizer::from_tokenizer_json(path)?;
        apply_config_beside(&mut tok, path)?;
        return Ok(tok);
    }
    Ok(Tokenizer::from_tokenizer_model(path)?)
}

/// Applies the `tokenizer_config.json` next to `file`, if there is one.
fn apply_config_beside(tok: &mut Tokenizer, file: &Path) -> Result<(), LoadError> {
    if let Some(dir) = file.parent() {
        let config = dir.join("tokenizer_config.json");
        if config.is_file() {
            tok.apply_tokenizer_config(&config)?;
        }
    }
    Ok(())
}

/// The tokenizer of an opened checkpoint: a GGUF's from the same parse of the file that serves
/// the weights, a folder's from its tokenizer files.
/// A Meta folder's tokenizer also gets the chat format of its generation
/// ([`crate::meta::chat_hint`]).
pub fn checkpoint_tokenizer(ckpt: &crate::weights::Checkpoint) -> Result<Tokenizer, LoadError> {
    if let Some(g) = ckpt.gguf() {
        return tokenizer_from_gguf(g);
    }
    let mut tok = load_tokenizer(&ckpt.path)?;
    if let Some(meta) = ckpt.meta() {
        let hint = crate::meta::chat_hint(&meta.params, &tok);
        tok.set_chat_hint(hint);
    }
    Ok(tok)
}

/// Builds the tokenizer a GGUF file describes in its `tokenizer.*` keys.
pub fn tokenizer_from_gguf(gguf: &Gguf) -> Result<Tokenizer, LoadError> {
    let path = gguf.path();
    let err = |key: &str, msg: String| LoadError::Key {
        path: path.to_path_buf(),
        key: key.to_string(),
        msg,
    };
    let array = |key: &str| -> Result<Option<&[Value]>, LoadError> {
        gguf.get_as(key, "an array", Value::as_array)
            .map_err(|msg| err(key, msg))
    };
    let id = |key: &str| -> Result<Option<u32>, LoadError> {
        match gguf.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                // Some converters write -1 for "none".
                Some(-1) => Ok(None),
                Some(i) if (0..u32::MAX as i64).contains(&i) => Ok(Some(i as u32)),
                _ => Err(err(key, format!("expected a token id, found {v}"))),
            },
        }
    };
    let flag = |key: &str| -> Result<Option<bool>, LoadError> {
        gguf.get_as(key, "a bool", Value::as_bool)
            .map_err(|msg| err(key, msg))
    };

    let model = gguf
        .get(keys::MODEL)
        .ok_or_else(|| {
            err(
                keys::MODEL,
                "missing: the file has no tokenizer".to_string(),
            )
        })?
        .as_str()
        .ok_or_else(|| err(keys::MODEL, "expected a string".to_string()))?;
    let kind = match model {
        "llama" => ModelKind::SentencePiece,
        "gpt2" => ModelKind::ByteLevel,
        other => {
            return Err(err(
                keys::MODEL,
                format!("tokenizer model {other:?} is not supported (llama, gpt2 are)"),
            ));
        }
    };

    let tokens: Vec<String> = array(keys::TOKENS)?
        .ok_or_else(|| err(keys::TOKENS, "missing".to_string()))?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                err(
                    keys::TOKENS,
                    format!("element {i} is {}, not a string", v.type_name()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let n = tokens.len();
    let mut spec = TokenizerSpec::new(kind, tokens);

    if let Some(scores) = array(keys::SCORES)? {
        if scores.len() != n {
            return Err(err(
                keys::SCORES,
                format!("{} scores for {n} tokens", scores.len()),
            ));
        }
        spec.scores = scores
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f32()
                    .ok_or_else(|| err(keys::SCORES, format!("element {i} is not a number")))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(types) = array(keys::TOKEN_TYPE)? {
        if types.len() != n {
            return Err(err(
                keys::TOKEN_TYPE,
                format!("{} token types for {n} tokens", types.len()),
            ));
        }
        spec.types = types
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64().and_then(TokenType::from_i64).ok_or_else(|| {
                    err(
                        keys::TOKEN_TYPE,
                        format!("element {i} is {v}, not a token type 1..=6"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(merges) = array(keys::MERGES)? {
        spec.merges = merges
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    err(
                        keys::MERGES,
                        format!("element {i} is {}, not a string", v.type_name()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
    }

    let pre_name = match gguf.get(keys::PRE) {
        None => "default",
        Some(v) => v
            .as_str()
            .ok_or_else(|| err(keys::PRE, "expected a string".to_string()))?,
    };
    if kind == ModelKind::ByteLevel {
        if spec.merges.is_empty() {
            return Err(err(
                keys::MERGES,
                "missing: a gpt2 tokenizer needs merges".to_string(),
            ));
        }
        let pre = PreTokenizer::from_gguf_name(pre_name).ok_or_else(|| {
            err(keys::PRE, format!("pre-tokenizer {pre_name:?} is not supported (llama-bpe, llama3, gpt2, smollm are)"))
        })?;
        spec.pre = Some(pre);
        // llama.cpp emits whole pre-tokens that are tokens for the Llama 3 family only.
        spec.ignore_merges = pre == PreTokenizer::Llama3;
    }

    spec.bos = id(keys::BOS_ID)?;
    spec.eos = id(keys::EOS_ID)?;
    spec.unk = id(keys::UNKNOWN_ID)?;
    spec.pad = id(keys::PADDING_ID)?;
    spec.eot = id(keys::EOT_ID)?;
    spec.eom = id(keys::EOM_ID)?;
    // Defaults as llama.cpp: SentencePiece and the Llama 3 family add BOS, others do not.
    let default_bos = kind == ModelKind::SentencePiece || spec.pre == Some(PreTokenizer::Llama3);
    spec.add_bos = flag(keys::ADD_BOS)?.unwrap_or(default_bos);
    spec.add_eos = flag(keys::ADD_EOS)?.unwrap_or(false);
    spec.add_space_prefix =
        flag(keys::ADD_SPACE_PREFIX)?.unwrap_or(kind == ModelKind::SentencePiece);
    if kind == ModelKind::ByteLevel && spec.add_space_prefix {
        return Err(err(
            keys::ADD_SPACE_PREFIX,
            "a space prefix on a byte-level tokenizer is not supported".to_string(),
        ));
    }
    spec.chat_template = match gguf.get(keys::CHAT_TEMPLATE) {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| err(keys::CHAT_TEMPLATE, "expected a string".to_string()))?
                .to_string(),
        ),
    };
    Tokenizer::from_spec(spec).map_err(|e| match e {
        camelid_tokenizer::Error::Invalid(msg) => err("tokenizer.ggml.*", msg),
        e => LoadError::Tokenizer(e),
    })
}
