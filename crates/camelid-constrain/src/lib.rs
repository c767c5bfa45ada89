//! camelid-constrain: constrained decoding. A grammar (a JSON schema, "any JSON object",
//! llama.cpp's GBNF, or the grammar engine's own Lark-like syntax) becomes, at each step, the set
//! of tokens that keep the output inside the grammar; every other token's logit is set to -∞
//! before sampling, and generation ends when the grammar is complete.
//!
//! The token mask comes from the `llguidance` crate (MIT), the engine behind OpenAI's, vLLM's,
//! llama.cpp's and mistral.rs's structured outputs. Why it and not our own, measured on the
//! default model's 49,152-token byte-level vocabulary (SmolLM2-135M) on this project's 2-vCPU
//! VM (BENCHMARKS.md, "Constrained decoding"): its mask takes about 100 µs per token for a JSON
//! schema, 0.1-0.7% of a constrained decode step of that model; its vocabulary trie is built
//! once per tokenizer (110-250 ms) and a schema compiles in under 1 ms. A mask that fast needs
//! a lexer over regex derivatives, an Earley parser over lexemes, and a token trie walked once
//! per step with the lexer's states shared between tokens that share a prefix; the naïve own
//! mask (each of 49,152 tokens' bytes pushed through a character-level pushdown automaton per
//! step) costs milliseconds, as much as the model step itself, and a fast own one is the same
//! thousands of lines llguidance already has, tested against JSON-Schema suites; JSON Schema
//! alone (`anyOf`, `$ref`, bounds, patterns, formats) is a large surface to get right. Its
//! weight: 26 crates new to the tree (`derivre`, `toktrie`, `referencing`, `indexmap`, `ahash`,
//! `parking_lot`, `strum`, `bytemuck`... some only for other platforms), about 85 s of a clean
//! release build on 2 cores of its own; it is kept out of the kernel and model crates: only this
//! crate (used by the engine) depends on it, with its `rayon` feature off.
//!
//! What camelid adds: the vocabulary as the engine sees it (each token's bytes from
//! [`camelid_tokenizer::Tokenizer::token_bytes`], so SentencePiece `▁` is a space and `<0xNN>` a
//! byte; control and other special tokens kept out of grammar text and reachable only as
//! `<|name|>` in Lark; every end-of-generation token allowed when the grammar may end), and a
//! GBNF translator ([`gbnf`]), since llguidance reads Lark, not GBNF.

pub mod gbnf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use camelid_tokenizer::{ModelKind, TokenType, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use toktrie::{InferenceCapabilities, SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

/// What output must look like.
#[derive(Clone, Debug, PartialEq)]
pub enum GrammarSpec {
    /// A JSON value valid under this JSON schema.
    JsonSchema(Value),
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// llama.cpp's GBNF (`root` is the start rule).
    Gbnf(String),
    /// The grammar engine's Lark-like syntax (`start` is the start rule), which can also embed
    /// JSON schemas (`%json {...}`) and special tokens (`<|python_tag|>`).
    Lark(String),
}

/// Why a grammar cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstrainError {
    /// GBNF that does not parse.
    Gbnf(gbnf::GbnfError),
    /// The engine refused the grammar or schema (the message says why).
    Grammar(String),
    /// The vocabulary cannot be turned into a token trie.
    Vocabulary(String),
}

impl std::fmt::Display for ConstrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConstrainError::Gbnf(e) => e.fmt(f),
            ConstrainError::Grammar(m) => write!(f, "{m}"),
            ConstrainError::Vocabulary(m) => write!(f, "the vocabulary: {m}"),
        }
    }
}

impl std::error::Error for ConstrainError {}

/// The vocabulary as the grammar engine sees it, built once per tokenizer and shared by every
/// grammar compiled for it.
pub struct Vocabulary {
    factory: ParserFactory,
    /// End-of-generation ids, all allowed where the grammar may end.
    eog: Arc<[u32]>,
    n_vocab: usize,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("n_vocab", &self.n_vocab)
            .field("eog", &self.eog)
            .finish()
    }
}

/// Adapts camelid's tokenizer to the engine's tokenizer interface: a trie of each token's bytes
/// (special tokens as `0xFF <|name|>`, toktrie's marker, so no grammar text can produce them),
/// and tokenization for the literal strings the engine may want to force.
struct Env {
    tok: Arc<Tokenizer>,
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        // SentencePiece encoding would put its dummy-prefix space in front of the text, which
        // is not what the grammar spells: the longest tokens that spell the bytes instead, as
        // for bytes that are not text (a cut character).
        match std::str::from_utf8(s) {
            Ok(text) if self.tok.kind() == ModelKind::ByteLevel => {
                self.tok.encode(text, false, false)
            }
            _ => self.trie.greedy_tokenize(s),
        }
    }
}

/// Whether a token stands outside text: control tokens (`<|im_end|>`, `<s>`), unknown and
/// unused ones, every end-of-generation token, and user-defined tokens spelled like markup
/// (`<|python_tag|>`, `<tool_call>`); a grammar reaches those only by name.
fn is_special(tok: &Tokenizer, id: u32) -> bool {
    match tok.token_type(id) {
        Some(TokenType::Control | TokenType::Unknown | TokenType::Unused) => true,
        Some(TokenType::UserDefined) => tok
            .token_piece(id)
            .is_some_and(|p| p.len() > 2 && p.starts_with('<') && p.ends_with('>')),
        _ => tok.is_eog(id),
    }
}

impl Vocabulary {
    /// Builds the token trie of a tokenizer (tens of milliseconds for 128k tokens).
    pub fn new(tok: Arc<Tokenizer>) -> Result<Vocabulary, ConstrainError> {
        let n = tok.n_vocab();
        let eog: Arc<[u32]> = tok.eog_ids().into();
        let Some(&first_eog) = eog.first() else {
            return Err(ConstrainError::Vocabulary(
                "no end-of-generation token, so no grammar could ever end".into(),
            ));
        };
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                if is_special(&tok, id) {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tok.token_piece(id).unwrap_or("").as_bytes());
                    w
                } else {
                    tok.token_bytes(id).unwrap_or_default().to_vec()
                }
            })
            .collect();
        let info = TokRxInfo {
            vocab_size: n as u32,
            tok_eos: tok.eos().filter(|e| eog.contains(e)).unwrap_or(first_eog),
            tok_bos: tok.bos(),
            tok_pad: tok.pad(),
            tok_unk: tok.unk(),
            tok_end_of_turn: None,
        };
        // Every end-of-generation token is an EOS to the engine: each may end the grammar.
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(Env { tok, trie });
        let mut factory = ParserFactory::new(
            &env,
            InferenceCapabilities::default(),
            &llguidance::earley::SlicedBiasComputer::general_slices(),
        )
        .map_err(|e| ConstrainError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(Vocabulary {
            factory,
            eog,
            n_vocab: n,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Compiles a grammar; errors say what is wrong with it (for a 400 naming the field).
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Grammar, ConstrainError> {
        let top = match spec {
            GrammarSpec::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(ConstrainError::Grammar(
                        "a JSON schema must be an object (or true/false)".into(),
                    ));
                }
                TopLevelGrammar::from_json_schema(bounded_whitespace(schema))
            }
            GrammarSpec::JsonObject => TopLevelGrammar::from_json_schema(bounded_whitespace(
                &serde_json::json!({"type": "object"}),
            )),
            GrammarSpec::Gbnf(src) => {
                TopLevelGrammar::from_lark(gbnf::gbnf_to_lark(src).map_err(ConstrainError::Gbnf)?)
            }
            GrammarSpec::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| ConstrainError::Grammar(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstrainError::Grammar(e));
        }
        Ok(Grammar {
            start: Arc::new(matcher),
            eog: self.eog.clone(),
            n_vocab: self.n_vocab,
        })
    }
}

/// The schema with the engine's option that bounds the whitespace between two JSON tokens to
/// 16 characters (unless the schema sets its own `x-guidance` options): JSON allows any amount,
/// and a small model that starts repeating newlines would otherwise only stop at its budget.
fn bounded_whitespace(schema: &Value) -> Value {
    let mut s = match schema {
        Value::Bool(true) => serde_json::json!({}),
        s => s.clone(),
    };
    if let Some(o) = s.as_object_mut() {
        o.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_pattern": "[\\x20\\x0A\\x0D\\x09]{1,16}"}),
        );
    }
    s
}

/// A compiled grammar: start as many sequences from it as wanted ([`Grammar::start`]).
#[derive(Clone)]
pub struct Grammar {
    start: Arc<Matcher>,
    eog: Arc<[u32]>,
    n_vocab: usize,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar")
            .field("n_vocab", &self.n_vocab)
            .finish_non_exhaustive()
    }
}

impl Grammar {
    /// A fresh constraint for one sequence.
    pub fn start(&self) -> Constraint {
        Constraint {
            matcher: self.start.deep_clone(),
            eog: self.eog.clone(),
            n_vocab: self.n_vocab,
            mask_time: Duration::ZERO,
            masks: 0,
            failed: None,
        }
    }
}

/// The state of one sequence under a grammar.
pub struct Constraint {
    matcher: Matcher,
    eog: Arc<[u32]>,
    n_vocab: usize,
    mask_time: Duration,
    masks: u32,
    /// The engine's error, once a token was refused or a mask could not be computed.
    failed: Option<String>,
}

impl Constraint {
    /// The tokens allowed next: grammar text that keeps the output inside the grammar, and the
    /// end-of-generation tokens when the grammar may end here. Sized to the vocabulary.
    pub fn allowed(&mut self) -> Result<SimpleVob, ConstrainError> {
        let t0 = Instant::now();
        let r = self.matcher.compute_mask_or_eos();
        self.mask_time += t0.elapsed();
        self.masks += 1;
        r.map_err(|e| self.fail(e.to_string()))
    }

    /// Sets every logit the grammar forbids to -∞. Returns false (logits untouched) when the
    /// grammar has failed (see [`Constraint::error`]).
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> bool {
        let Ok(mask) = self.allowed() else {
            return false;
        };
        let n = logits.len().min(self.n_vocab);
        for (id, l) in logits.iter_mut().enumerate() {
            if id >= n || !mask.is_allowed(id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        true
    }

    /// Advances the grammar over a sampled token. An end-of-generation token is taken as the
    /// end. Errors when the grammar does not allow the token.
    pub fn accept(&mut self, token: u32) -> Result<(), ConstrainError> {
        // A grammar that cannot go on has already ended; the end token only says so.
        if self.eog.contains(&token) && self.is_finished() {
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| self.fail(e.to_string()))
    }

    /// Whether the grammar is complete and allows nothing more: generation should end.
    pub fn is_finished(&self) -> bool {
        self.failed.is_none() && self.matcher.is_stopped()
    }

    /// Whether the output so far is a complete sentence of the grammar (more may follow).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// The engine's error, if a token was refused.
    pub fn error(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Time spent computing masks, and how many were computed.
    pub fn mask_stats(&self) -> (Duration, u32) {
        (self.mask_time, self.masks)
    }

    fn fail(&mut self, e: String) -> ConstrainError {
        self.failed = Some(e.clone());
        ConstrainError::Grammar(e)
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("masks", &self.masks)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
