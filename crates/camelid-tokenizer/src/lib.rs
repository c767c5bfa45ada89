//! camelid-tokenizer: the tokenizers of the Llama family, built from plain vectors or read from
//! `tokenizer.json`, SentencePiece `tokenizer.model` and Meta's tiktoken `tokenizer.model`.
//!
//! Two algorithms cover the family:
//! - **SentencePiece BPE** (LLaMA 1, Llama 2): the text, with spaces written `▁` and a `▁` put in
//!   front (the "dummy prefix"), is split into characters that merge pairwise, the pair whose
//!   merged piece has the best score first. Characters without a piece fall back to `<0xNN>` byte
//!   pieces. Source: google/sentencepiece `bpe_model.cc`; llama.cpp `llm_tokenizer_spm`.
//! - **Byte-level BPE** (Llama 3, GPT-2, SmolLM2): a pre-tokenizer cuts the text into pieces (see
//!   [`PreTokenizer`]); each piece's UTF-8 bytes merge pairwise by merge rank. With
//!   `ignore_merges` (Llama 3) a piece that is itself a token is emitted whole. Sources: openai
//!   tiktoken; huggingface tokenizers `models/bpe`.
//!
//! Special tokens (control and user-defined) are matched in the text before either algorithm runs:
//! user-defined ones always, control ones only when the caller passes `parse_special`.
//! Decoding is the inverse of encoding; [`StreamDecoder`] turns a stream of ids into text that only
//! ever holds complete UTF-8 characters. [`train`] learns new vocabularies of either kind from text
//! and writes them as `tokenizer.json`.

mod bytelevel;
mod error;
mod json;
mod merge;
mod pretok;
mod sentencepiece;
mod special;
mod stream;
pub mod text;
mod tiktoken;
pub mod train;
mod unicode;
mod unicode_tables;

use std::collections::HashMap;

pub use error::Error;
pub use pretok::PreTokenizer;
pub use stream::StreamDecoder;
pub use tiktoken::llama3_special_tokens;

use merge::{FastMap, NONE, PairMap, Scratch, Sym};
use special::Trie;

/// The algorithm a vocabulary is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// SentencePiece BPE over characters with scores and byte fallback (GGUF `llama`).
    SentencePiece,
    /// Byte-level BPE with merge ranks (GGUF `gpt2`).
    ByteLevel,
}

/// What a token is, with the numbering of SentencePiece's `ModelProto` and GGUF's
/// `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    /// From the SentencePiece / GGUF number; `None` for numbers outside 1..=6.
    pub fn from_i64(v: i64) -> Option<TokenType> {
        Some(match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }

    /// Control, unknown and user-defined tokens are matched as whole strings in the text and
    /// never produced by merging.
    fn is_special(self) -> bool {
        matches!(
            self,
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined
        )
    }
}

/// A tokenizer described by plain vectors, as a GGUF file holds it.
#[derive(Clone, Debug)]
pub struct TokenizerSpec {
    pub kind: ModelKind,
    /// Token spellings as the vocabulary stores them (`▁` for spaces in SentencePiece, GPT-2's
    /// byte-to-character mapping in byte-level BPE; special tokens as plain text).
    pub tokens: Vec<String>,
    /// SentencePiece scores (higher merges first). Empty means all zero.
    pub scores: Vec<f32>,
    /// Empty means every token is `Normal`. In a byte-level vocabulary a `Normal` token whose
    /// spelling is outside GPT-2's byte mapping is taken as plain text and made `UserDefined`.
    pub types: Vec<TokenType>,
    /// Byte-level BPE merges, `"left right"` in rank order. For SentencePiece, leave empty to merge
    /// by score, or give merges (a `tokenizer.json` of Llama 2) to rank by their order.
    pub merges: Vec<String>,
    /// Required for byte-level BPE.
    pub pre: Option<PreTokenizer>,
    /// Emit a pre-token whole when it is itself a token (Llama 3).
    pub ignore_merges: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// End of turn (`<|eot_id|>`), if the file declares it.
    pub eot: Option<u32>,
    /// End of message (`<|eom_id|>`), if the file declares it.
    pub eom: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// SentencePiece dummy prefix: a `▁` in front of the text.
    pub add_space_prefix: bool,
    pub chat_template: Option<String>,
}

impl TokenizerSpec {
    /// A spec with the given kind and tokens and every other field empty or off.
    pub fn new(kind: ModelKind, tokens: Vec<String>) -> TokenizerSpec {
        TokenizerSpec {
            kind,
            tokens,
            scores: Vec::new(),
            types: Vec::new(),
            merges: Vec::new(),
            pre: None,
            ignore_merges: false,
            bos: None,
            eos: None,
            unk: None,
            pad: None,
            eot: None,
            eom: None,
            add_bos: false,
            add_eos: false,
            add_space_prefix: kind == ModelKind::SentencePiece,
            chat_template: None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Algo {
    Spm {
        add_space_prefix: bool,
        /// llama.cpp puts the dummy prefix in front of every stretch of text that follows a special
        /// token; SentencePiece itself only in front of the whole text.
        prefix_after_special: bool,
    },
    Bpe {
        pre: PreTokenizer,
        ignore_merges: bool,
    },
}

/// The chat format a release implies where its files carry no chat template: Meta's release
/// folders have none, and their generation tells the format (LLaMA 1 has none, Llama 2 its
/// `[INST]` layout, Llama 3 its header layout). The loader that knows the release sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatHint {
    /// Meta's Llama 2 `chat_completion` layout.
    Llama2,
    /// Meta's Llama 3 header layout, ending turns with `<|eot_id|>`.
    Llama3,
    /// A base model released without a chat format (LLaMA 1): plain text only.
    Plain,
}

/// A tokenizer of the Llama family. Cheap to share across threads (`&Tokenizer` is `Sync`).
#[derive(Clone)]
pub struct Tokenizer {
    algo: Algo,
    /// Spellings as stored in the vocabulary.
    texts: Vec<String>,
    /// What each token decodes to.
    bytes: Vec<Box<[u8]>>,
    types: Vec<TokenType>,
    /// Tokens that merging may produce, by the bytes they stand for (for SentencePiece, by their
    /// spelling with `▁`).
    pieces: FastMap<Box<[u8]>, u32>,
    pairs: PairMap,
    /// The token of each single byte: the byte-level base tokens, or SentencePiece's `<0xNN>`.
    byte_tokens: [u32; 256],
    /// Special tokens matched when the caller asks for it (control, unknown, user-defined) and
    /// always (user-defined only).
    special_all: Trie,
    special_always: Trie,
    by_text: HashMap<String, u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    eog: Vec<u32>,
    has_unused: bool,
    chat_template: Option<String>,
    chat_hint: Option<ChatHint>,
    /// SentencePiece scores as given (empty when the source has none), kept for writing GGUF.
    scores: Vec<f32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("algo", &self.algo)
            .field("n_vocab", &self.texts.len())
            .field("n_merges", &self.pairs.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("eog", &self.eog)
            .finish()
    }
}

/// Token texts that end a generation when the vocabulary has them as special tokens.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
];

/// The SentencePiece escape for a space, U+2581 LOWER ONE EIGHTH BLOCK.
const SPM_SPACE: &str = "\u{2581}";

/// Parses a SentencePiece byte piece `<0xNN>`.
fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Builds a tokenizer from plain vectors (what the GGUF glue fills).
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer, Error> {
        Self::build(spec, false)
    }

    /// `sentencepiece_mode`: the dummy prefix only in front of the whole text (SentencePiece's own
    /// behaviour) rather than after every special token (llama.cpp's).
    fn build(spec: TokenizerSpec, sentencepiece_mode: bool) -> Result<Tokenizer, Error> {
        Self::build_inner(spec, sentencepiece_mode, None)
    }

    /// With merge rules already made (tiktoken files derive them from the ranks).
    fn build_with_pairs(spec: TokenizerSpec, pairs: PairMap) -> Result<Tokenizer, Error> {
        Self::build_inner(spec, false, Some(pairs))
    }

    /// Builds a tokenizer in phases: check the spec's counts and ids, pick the algorithm, each
    /// token's bytes, the pieces merging may produce, the merge rules, the special-token tries
    /// and the end-of-generation set.
    fn build_inner(
        mut spec: TokenizerSpec,
        sentencepiece_mode: bool,
        given_pairs: Option<PairMap>,
    ) -> Result<Tokenizer, Error> {
        check_spec(&spec)?;
        let algo = match spec.kind {
            ModelKind::SentencePiece => Algo::Spm {
                add_space_prefix: spec.add_space_prefix,
                prefix_after_special: !sentencepiece_mode,
            },
            ModelKind::ByteLevel => Algo::Bpe {
                pre: spec.pre.ok_or_else(|| {
                    Error::invalid("a byte-level BPE vocabulary needs a pre-tokenizer")
                })?,
                ignore_merges: spec.ignore_merges,
            },
        };

        // Moved out; `spec` keeps what the later phases read.
        let mut types = std::mem::take(&mut spec.types);
        if types.is_empty() {
            types = vec![TokenType::Normal; spec.tokens.len()];
        }
        let (bytes, mut byte_tokens) = token_bytes(&spec, &mut types)?;
        let pieces = mergeable_pieces(&spec, &types, &bytes, &mut byte_tokens);
        let pairs = match given_pairs {
            Some(p) => p,
            None => merge_pairs(&spec, &pieces, &bytes)?,
        };
        let (special_all, special_always, by_text) = special_tokens(&spec.tokens, &types);
        let eog = end_of_generation(&spec, &types, &by_text);
        let has_unused = types.contains(&TokenType::Unused);
        Ok(Tokenizer {
            algo,
            texts: spec.tokens,
            bytes,
            types,
            pieces,
            pairs,
            byte_tokens,
            special_all,
            special_always,
            by_text,
            bos: spec.bos,
            eos: spec.eos,
            unk: spec.unk,
            pad: spec.pad,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            eog,
            has_unused,
            chat_template: spec.chat_template,
            chat_hint: None,
            scores: spec.scores,
        })
    }

    /// Reads a `tokenizer.model` of either kind, told apart by content: Meta's tiktoken rank
    /// file (Llama 3, text) or a SentencePiece protocol buffer (LLaMA, Llama 2).
    pub fn from_tokenizer_model(path: impl AsRef<std::path::Path>) -> Result<Tokenizer, Error> {
        let path = path.as_ref();
        let data = error::read(path)?;
        if tiktoken::looks_like_tiktoken(&data) {
            tiktoken::parse(&data, path)
        } else {
            sentencepiece::parse(&data, path)
        }
    }

    /// Number of tokens, special tokens included.
    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }

    /// Which algorithm this tokenizer runs.
    pub fn kind(&self) -> ModelKind {
        match self.algo {
            Algo::Spm { .. } => ModelKind::SentencePiece,
            Algo::Bpe { .. } => ModelKind::ByteLevel,
        }
    }

    /// The byte-level pre-tokenizer, if this is a byte-level BPE tokenizer.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match self.algo {
            Algo::Bpe { pre, .. } => Some(pre),
            Algo::Spm { .. } => None,
        }
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether the vocabulary asks for BOS in front of a prompt.
    pub fn add_bos_default(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether the vocabulary asks for EOS after a prompt (rare; [`Tokenizer::encode`] never adds it).
    pub fn add_eos_default(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }

    /// Whether `id` ends a generation: EOS, end of turn or message, and the like.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// The chat template the file carries (`tokenizer.chat_template`, `tokenizer_config.json`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
    }

    /// The chat format the model's release implies when its files carry no template.
    pub fn chat_hint(&self) -> Option<ChatHint> {
        self.chat_hint
    }

    pub fn set_chat_hint(&mut self, hint: Option<ChatHint>) {
        self.chat_hint = hint;
    }

    /// Overrides BOS/EOS and whether BOS is added (from `tokenizer_config.json`, for instance).
    pub fn set_bos(&mut self, bos: Option<u32>, add_bos: bool) {
        self.bos = bos.filter(|&b| (b as usize) < self.n_vocab());
        self.add_bos = add_bos;
    }

    pub fn set_eos(&mut self, eos: Option<u32>) {
        self.eos = eos.filter(|&e| (e as usize) < self.n_vocab());
        if let Some(e) = self.eos {
            if let Err(i) = self.eog.binary_search(&e) {
                self.eog.insert(i, e);
            }
        }
    }

    /// The SentencePiece scores the vocabulary was built from; empty when it had none.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// The merge rules as `(left, right, merged)` token ids in rank order (for SentencePiece
    /// vocabularies merged by score, the rules derived from the scores).
    pub fn merges(&self) -> Vec<(u32, u32, u32)> {
        self.pairs.rules()
    }

    /// Whether a SentencePiece vocabulary puts a `▁` in front of the text (false for byte-level).
    pub fn add_space_prefix(&self) -> bool {
        matches!(
            self.algo,
            Algo::Spm {
                add_space_prefix: true,
                ..
            }
        )
    }

    /// The token's spelling in the vocabulary (`▁the`, `Ġthe`, `<|eot_id|>`), or `None` if out of range.
    pub fn token_piece(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The bytes the token decodes to, or `None` if out of range.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).map(|b| &b[..])
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The id of the token spelled exactly `text` in the vocabulary.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    /// Encodes `text`. With `add_bos`, BOS goes in front (when the vocabulary has one). With
    /// `parse_special`, control tokens written in the text (`<|eot_id|>`) become their ids;
    /// without it they are encoded as plain text. User-defined tokens are always matched.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        let mut scratch = Scratch::default();
        let mut syms = Vec::new();
        let trie = if parse_special {
            &self.special_all
        } else {
            &self.special_always
        };

        if let Algo::Spm {
            add_space_prefix: true,
            prefix_after_special: false,
        } = self.algo
        {
            // SentencePiece normalizes first (dummy prefix, spaces as ▁) and matches user-defined
            // pieces in the normalized text.
            let mut norm = String::with_capacity(text.len() + 3);
            if !text.is_empty() {
                norm.push_str(SPM_SPACE);
            }
            escape_spaces(text, &mut norm);
            special::split(trie, &norm, |part| match part {
                special::Part::Text(t, _) => {
                    self.encode_spm_escaped(t, &mut out, &mut syms, &mut scratch)
                }
                special::Part::Token(id) => out.push(id),
            });
            return out;
        }

        special::split(trie, text, |part| match part {
            special::Part::Text(t, after_special) => match self.algo {
                Algo::Spm {
                    add_space_prefix,
                    prefix_after_special,
                } => {
                    let prefix = add_space_prefix && (prefix_after_special && after_special);
                    let mut norm = String::with_capacity(t.len() + 3);
                    if prefix {
                        norm.push_str(SPM_SPACE);
                    }
                    escape_spaces(t, &mut norm);
                    self.encode_spm_escaped(&norm, &mut out, &mut syms, &mut scratch);
                }
                Algo::Bpe { pre, ignore_merges } => {
                    pre.split(t, |piece| {
                        self.encode_bpe_piece(
                            piece,
                            ignore_merges,
                            &mut out,
                            &mut syms,
                            &mut scratch,
                        )
                    });
                }
            },
            special::Part::Token(id) => out.push(id),
        });
        out
    }

    fn encode_bpe_piece(
        &self,
        piece: &str,
        ignore_merges: bool,
        out: &mut Vec<u32>,
        syms: &mut Vec<Sym>,
        scratch: &mut Scratch,
    ) {
        let b = piece.as_bytes();
        if ignore_merges || b.len() == 1 {
            if let Some(&id) = self.pieces.get(b) {
                out.push(id);
                return;
            }
        }
        syms.clear();
        syms.extend(b.iter().enumerate().map(|(i, &byte)| Sym {
            id: self.byte_tokens[byte as usize],
            start: i as u32,
        }));
        merge::merge(&self.pairs, syms, scratch, &mut |_, _, _| {});
        for s in syms.iter() {
            if s.id != NONE {
                out.push(s.id);
            } else if let Some(u) = self.unk {
                out.push(u);
            }
        }
    }

    /// SentencePiece BPE on text whose spaces are already `▁`.
    fn encode_spm_escaped(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        syms: &mut Vec<Sym>,
        scratch: &mut Scratch,
    ) {
        if text.is_empty() {
            return;
        }
        syms.clear();
        for (i, c) in text.char_indices() {
            let mut buf = [0u8; 4];
            let key = c.encode_utf8(&mut buf).as_bytes();
            let id = self.pieces.get(key).copied().unwrap_or(NONE);
            syms.push(Sym {
                id,
                start: i as u32,
            });
        }
        // SentencePiece merges through unused pieces but never emits them: remember how each was
        // made so it can be split again (sentencepiece `bpe_model.cc`, rev_merge).
        let mut rev: HashMap<u32, (u32, u32)> = HashMap::new();
        let has_unused = self.has_unused;
        let types = &self.types;
        merge::merge(&self.pairs, syms, scratch, &mut |m, l, r| {
            if has_unused && types[m as usize] == TokenType::Unused {
                rev.insert(m, (l, r));
            }
        });
        for (k, s) in syms.iter().enumerate() {
            if s.id != NONE {
                self.push_resegmented(s.id, &rev, out);
                continue;
            }
            let end = syms.get(k + 1).map_or(text.len(), |n| n.start as usize);
            let chunk = &text.as_bytes()[s.start as usize..end];
            if chunk.iter().all(|&b| self.byte_tokens[b as usize] != NONE) {
                out.extend(chunk.iter().map(|&b| self.byte_tokens[b as usize]));
            } else if let Some(u) = self.unk {
                out.push(u);
            }
        }
    }

    fn push_resegmented(&self, id: u32, rev: &HashMap<u32, (u32, u32)>, out: &mut Vec<u32>) {
        if self.types[id as usize] == TokenType::Unused {
            if let Some(&(l, r)) = rev.get(&id) {
                self.push_resegmented(l, rev, out);
                self.push_resegmented(r, rev, out);
                return;
            }
        }
        out.push(id);
    }

    /// Decodes ids to bytes: the exact inverse of [`Tokenizer::encode`] (special tokens come back
    /// as their text; the SentencePiece dummy prefix is dropped where encoding put it).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let (mut strip, after_special) = match self.algo {
            Algo::Spm {
                add_space_prefix,
                prefix_after_special,
            } => (add_space_prefix, add_space_prefix && prefix_after_special),
            Algo::Bpe { .. } => (false, false),
        };
        for (pos, &id) in ids.iter().enumerate() {
            let b = self.bytes.get(id as usize).ok_or(Error::IdOutOfRange {
                id,
                n_vocab: self.n_vocab(),
                position: pos,
            })?;
            match self.types[id as usize] {
                t if t.is_special() => {
                    out.extend_from_slice(b);
                    if after_special {
                        strip = true;
                    } else if t != TokenType::Control {
                        strip = false;
                    }
                }
                TokenType::Byte => {
                    out.extend_from_slice(b);
                    strip = false;
                }
                _ => {
                    let b: &[u8] = if strip {
                        b.strip_prefix(b" ").unwrap_or(b)
                    } else {
                        b
                    };
                    out.extend_from_slice(b);
                    strip = false;
                }
            }
        }
        Ok(out)
    }

    /// Decodes ids to text. Bytes that do not form UTF-8 (a sequence cut inside a character)
    /// become U+FFFD; an id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        let bytes = self.decode_bytes(ids)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A decoder for a stream of generated ids that yields only complete characters.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }
}

fn escape_spaces(text: &str, out: &mut String) {
    for (i, part) in text.split(' ').enumerate() {
        if i > 0 {
            out.push_str(SPM_SPACE);
        }
        out.push_str(part);
    }
}

/// The key under which `pieces` stores token `id`.
fn bytes_key<'a>(
    kind: ModelKind,
    tokens: &'a [String],
    bytes: &'a [Box<[u8]>],
    id: u32,
) -> &'a [u8] {
    match kind {
        ModelKind::SentencePiece => tokens[id as usize].as_bytes(),
        ModelKind::ByteLevel => &bytes[id as usize],
    }
}

/// Splits a merge rule `"left right"` at its single separating space. Byte-level spellings never
/// contain a space (it is `Ġ`); SentencePiece ones spell it `▁`.
fn split_merge(m: &str) -> Option<(&str, &str)> {
    let (l, r) = m.split_once(' ')?;
    if l.is_empty() || r.is_empty() || r.contains(' ') {
        return None;
    }
    Some((l, r))
}

/// SentencePiece's rule: two adjacent symbols may merge when their concatenation is a piece; the
/// best-scoring such piece goes first. Every way of cutting each piece into two pieces becomes a
/// rule, ranked by the merged piece's score (equal scores share a rank so that the leftmost wins).
fn spm_pairs_by_score(
    tokens: &[String],
    scores: &[f32],
    pieces: &FastMap<Box<[u8]>, u32>,
) -> PairMap {
    let score = |id: u32| scores.get(id as usize).copied().unwrap_or(0.0);
    let mut ids: Vec<u32> = pieces.values().copied().collect();
    ids.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
    let mut rank = vec![0u32; tokens.len()];
    let mut r = 0u32;
    for (k, &id) in ids.iter().enumerate() {
        if k > 0 && score(id).total_cmp(&score(ids[k - 1])) != std::cmp::Ordering::Equal {
            r += 1;
        }
        rank[id as usize] = r;
    }
    let mut pairs = PairMap::default();
    for &id in &ids {
        let text = &tokens[id as usize];
        for (cut, _) in text.char_indices().skip(1) {
            let (l, rt) = text.split_at(cut);
            if let (Some(&li), Some(&ri)) = (pieces.get(l.as_bytes()), pieces.get(rt.as_bytes())) {
                pairs.insert(li, ri, rank[id as usize], id);
            }
        }
    }
    pairs
}

/// The spec's lengths agree and its special ids are inside the vocabulary.
fn check_spec(spec: &TokenizerSpec) -> Result<(), Error> {
    let n = spec.tokens.len();
    if n == 0 {
        return Err(Error::invalid("the vocabulary is empty"));
    }
    if n >= NONE as usize {
        return Err(Error::invalid(format!("{n} tokens are too many")));
    }
    if !spec.scores.is_empty() && spec.scores.len() != n {
        return Err(Error::invalid(format!(
            "{} scores for {n} tokens",
            spec.scores.len()
        )));
    }
    if !spec.types.is_empty() && spec.types.len() != n {
        return Err(Error::invalid(format!(
            "{} token types for {n} tokens",
            spec.types.len()
        )));
    }
    for (name, id) in [
        ("bos", spec.bos),
        ("eos", spec.eos),
        ("unk", spec.unk),
        ("pad", spec.pad),
        ("eot", spec.eot),
        ("eom", spec.eom),
    ] {
        if let Some(id) = id {
            if id as usize >= n {
                return Err(Error::invalid(format!(
                    "{name} token id {id} is outside the vocabulary of {n}"
                )));
            }
        }
    }
    Ok(())
}

/// The token of each byte value, `NONE` where the vocabulary has none.
type ByteTokens = [u32; 256];
/// A token's bytes.
type TokenBytes = Box<[u8]>;

/// Each token's bytes, and the byte tokens (`<0xNN>` pieces, or byte-level single bytes); a
/// byte-level "normal" token outside the byte mapping becomes user-defined in `types`.
fn token_bytes(
    spec: &TokenizerSpec,
    types: &mut [TokenType],
) -> Result<(Vec<TokenBytes>, ByteTokens), Error> {
    let n = spec.tokens.len();
    let mut bytes: Vec<Box<[u8]>> = Vec::with_capacity(n);
    let mut byte_tokens = [NONE; 256];
    for (id, text) in spec.tokens.iter().enumerate() {
        let b: Vec<u8> = match (spec.kind, types[id]) {
            (ModelKind::SentencePiece, TokenType::Byte) => {
                let byte = parse_byte_piece(text).ok_or_else(|| {
                    Error::invalid(format!("byte token {id} is spelled {text:?}, not <0xNN>"))
                })?;
                if byte_tokens[byte as usize] == NONE {
                    byte_tokens[byte as usize] = id as u32;
                }
                vec![byte]
            }
            (ModelKind::SentencePiece, TokenType::Normal | TokenType::Unused) => {
                text.replace(SPM_SPACE, " ").into_bytes()
            }
            (ModelKind::ByteLevel, TokenType::Normal | TokenType::Unused) => {
                match bytelevel::decode(text) {
                    Some(b) => b,
                    None => {
                        // A "normal" token outside the byte mapping is plain text (some
                        // converters mark added tokens normal); match it like user-defined.
                        types[id] = TokenType::UserDefined;
                        text.as_bytes().to_vec()
                    }
                }
            }
            (ModelKind::ByteLevel, TokenType::Byte) => match bytelevel::decode(text) {
                Some(b) if b.len() == 1 => b,
                _ => parse_byte_piece(text).map(|b| vec![b]).ok_or_else(|| {
                    Error::invalid(format!("byte token {id} is spelled {text:?}"))
                })?,
            },
            _ => text.as_bytes().to_vec(),
        };
        bytes.push(b.into_boxed_slice());
    }

    Ok((bytes, byte_tokens))
}

/// The pieces merging may produce, keyed the way the merge loop looks them up; for byte-level
/// vocabularies the single-byte pieces also become the byte tokens.
fn mergeable_pieces(
    spec: &TokenizerSpec,
    types: &[TokenType],
    bytes: &[Box<[u8]>],
    byte_tokens: &mut [u32; 256],
) -> FastMap<Box<[u8]>, u32> {
    let mut pieces: FastMap<Box<[u8]>, u32> = FastMap::default();
    for (id, text) in spec.tokens.iter().enumerate() {
        let mergeable = match spec.kind {
            // SentencePiece merges into normal, user-defined and unused pieces
            // (sentencepiece `model_interface.cc`, InitializePieces).
            ModelKind::SentencePiece => matches!(
                types[id],
                TokenType::Normal | TokenType::UserDefined | TokenType::Unused
            ),
            ModelKind::ByteLevel => matches!(types[id], TokenType::Normal | TokenType::Unused),
        };
        if !mergeable {
            continue;
        }
        let key: &[u8] = match spec.kind {
            ModelKind::SentencePiece => text.as_bytes(),
            ModelKind::ByteLevel => &bytes[id],
        };
        pieces.entry(key.into()).or_insert(id as u32);
    }
    if spec.kind == ModelKind::ByteLevel {
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            if let Some(&id) = pieces.get(&[b as u8][..]) {
                *slot = id;
            }
        }
    }

    pieces
}

/// The merge rules: from the spec's merges (each checked against the vocabulary), or for a
/// SentencePiece vocabulary without them, from the scores.
fn merge_pairs(
    spec: &TokenizerSpec,
    pieces: &FastMap<Box<[u8]>, u32>,
    bytes: &[Box<[u8]>],
) -> Result<PairMap, Error> {
    let mut pairs = PairMap::default();
    if !spec.merges.is_empty() {
        for (rank, m) in spec.merges.iter().enumerate() {
            let (l, r) = split_merge(m)
                .ok_or_else(|| Error::invalid(format!("merge {rank} ({m:?}) is not two tokens")))?;
            let lookup = |s: &str| -> Option<u32> {
                match spec.kind {
                    ModelKind::SentencePiece => pieces.get(s.as_bytes()).copied(),
                    ModelKind::ByteLevel => pieces.get(bytelevel::decode(s)?.as_slice()).copied(),
                }
            };
            let (Some(li), Some(ri)) = (lookup(l), lookup(r)) else {
                return Err(Error::invalid(format!(
                    "merge {rank} ({m:?}) names a token that is not in the vocabulary"
                )));
            };
            let mut joined: Vec<u8> = bytes_key(spec.kind, &spec.tokens, bytes, li).to_vec();
            joined.extend_from_slice(bytes_key(spec.kind, &spec.tokens, bytes, ri));
            let Some(&mi) = pieces.get(joined.as_slice()) else {
                return Err(Error::invalid(format!(
                    "merge {rank} ({m:?}) makes a token that is not in the vocabulary"
                )));
            };
            pairs.insert(li, ri, rank as u32, mi);
        }
    } else if spec.kind == ModelKind::SentencePiece {
        pairs = spm_pairs_by_score(&spec.tokens, &spec.scores, pieces);
    }

    Ok(pairs)
}

/// The tries of special tokens (all of them; the user-defined ones matched even where
/// specials are not parsed) and the index of every token by its text.
fn special_tokens(tokens: &[String], types: &[TokenType]) -> (Trie, Trie, HashMap<String, u32>) {
    let n = tokens.len();
    let mut special_all = Trie::default();
    let mut special_always = Trie::default();
    let mut by_text = HashMap::with_capacity(n);
    for (id, text) in tokens.iter().enumerate() {
        by_text.entry(text.clone()).or_insert(id as u32);
        if types[id].is_special() && !text.is_empty() {
            special_all.insert(text.as_bytes(), id as u32);
            if types[id] == TokenType::UserDefined {
                special_always.insert(text.as_bytes(), id as u32);
            }
        }
    }

    (special_all, special_always, by_text)
}

/// The end-of-generation tokens: EOS, EOT, EOM, and the special tokens spelled as the known
/// end-of-turn texts.
fn end_of_generation(
    spec: &TokenizerSpec,
    types: &[TokenType],
    by_text: &HashMap<String, u32>,
) -> Vec<u32> {
    let mut eog: Vec<u32> = [spec.eos, spec.eot, spec.eom]
        .into_iter()
        .flatten()
        .collect();
    for t in EOG_TEXTS {
        if let Some(&id) = by_text.get(*t) {
            if types[id as usize].is_special() {
                eog.push(id);
            }
        }
    }
    eog.sort_unstable();
    eog.dedup();

    eog
}

#[cfg(test)]
mod tests;
