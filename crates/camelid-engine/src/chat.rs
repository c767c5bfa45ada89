//! Chat templates: a dialog of messages turned into the token ids a chat model was trained on.
//!
//! Four ways, in order of preference ([`ChatTemplate::for_tokenizer`]):
//! - **The file's template** (`tokenizer.chat_template` in GGUF, `chat_template` in
//!   `tokenizer_config.json`): Jinja, rendered as Hugging Face transformers renders it
//!   (`utils/chat_template_utils.py`: `trim_blocks`, `lstrip_blocks`, loop controls,
//!   `raise_exception`, `strftime_now`, the variables `messages`, `add_generation_prompt`,
//!   `bos_token`, `eos_token`...), then tokenized with special tokens parsed.
//! - **Llama 3** built in, for a vocabulary with `<|start_header_id|>`: Meta's llama3
//!   `ChatFormat.encode_dialog_prompt` (llama3 `llama/tokenizer.py`).
//! - **ChatML** built in, for a vocabulary with `<|im_start|>` and `<|im_end|>`: each message
//!   `<|im_start|>{role}\n{content}<|im_end|>\n`, then `<|im_start|>assistant\n` when a reply is
//!   wanted, contents as given (what llama.cpp's built-in `chatml` writes, and SmolLM2's template
//!   without its default system prompt).
//! - **Llama 2** built in, for the 32,000-token SentencePiece Llama vocabulary: Meta's llama
//!   `generation.py` `chat_completion`.
//!
//! Meta's release folders carry no template; their generation picks the built-in (Llama 3 the
//! header format, Llama 2 `[INST]`, LLaMA 1 none), passed as the tokenizer's
//! [`ChatHint`].
//!
//! The built-ins are named as llama.cpp names them ([`BUILTIN_NAMES`]).
//!
//! The built-ins work on token ids, never on text: BOS, EOS and the header tokens are pushed as
//! ids and the message text is tokenized without special-token parsing, so a message that
//! contains `<|eot_id|>` or `</s>` cannot end a turn.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use camelid_tokenizer::{ChatHint, ModelKind, Tokenizer};
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

/// One turn of a dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant` (a Jinja template may know more roles, `tool`, `ipython`).
    pub role: String,
    pub content: String,
    /// The tools an assistant's turn called (OpenAI's `tool_calls`).
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers (OpenAI's `tool_call_id`).
    pub tool_call_id: Option<String>,
}

/// One call of a tool by the assistant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON value (OpenAI sends them as a JSON string; templates expect
    /// the object, as transformers' documentation passes it).
    pub arguments: serde_json::Value,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// How a dialog becomes tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// A Jinja template, as model files carry them.
    Jinja(String),
    /// Meta's Llama 2 chat layout: `<s>[INST] <<SYS>>…<</SYS>> user [/INST] answer </s>`.
    Llama2,
    /// Meta's Llama 3 layout: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`.
    Llama3,
    /// ChatML: `<|im_start|>role\ncontent<|im_end|>\n`.
    ChatMl,
}

/// The names of the built-in formats, as `--chat-template` takes them (llama.cpp's names,
/// `LLM_CHAT_TEMPLATES` in `src/llama-chat.cpp`).
pub const BUILTIN_NAMES: [&str; 3] = ["chatml", "llama2", "llama3"];

/// Why a dialog could not be encoded.
#[derive(Debug)]
pub enum ChatError {
    /// The Jinja template does not compile.
    Syntax(String),
    /// The template called `raise_exception(message)`.
    Raised(String),
    /// Rendering failed (an undefined value used, a type error, ...).
    Render(String),
    /// The roles are not in an order the format supports.
    RoleOrder {
        index: usize,
        role: String,
        expected: &'static str,
    },
    /// The dialog has no messages.
    Empty,
    /// The vocabulary lacks a token the format needs.
    MissingToken(&'static str),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Syntax(e) => write!(f, "the chat template does not parse: {e}"),
            ChatError::Raised(m) => write!(f, "the chat template refused the dialog: {m}"),
            ChatError::Render(e) => write!(f, "the chat template failed: {e}"),
            ChatError::RoleOrder {
                index,
                role,
                expected,
            } => write!(
                f,
                "message {index} has role {role:?} where the chat format expects {expected}"
            ),
            ChatError::Empty => write!(f, "the dialog has no messages"),
            ChatError::MissingToken(t) => {
                write!(
                    f,
                    "the vocabulary has no {t} token, which the chat format needs"
                )
            }
        }
    }
}

impl std::error::Error for ChatError {}

impl ChatTemplate {
    /// The template of the model named `model`: its own, else the built-in
    /// format its vocabulary is recognised by; with where it came from, for messages. The
    /// error says how to give one.
    pub fn for_model(tok: &Tokenizer, model: &str) -> Result<(ChatTemplate, String), String> {
        let Some(t) = ChatTemplate::for_tokenizer(tok) else {
            return Err(format!(
                "{model}: the model has no chat template and its vocabulary is not one of a known \
                     chat format; give one with --chat-template NAME|FILE (built-in names: {})",
                BUILTIN_NAMES.join(", ")
            ));
        };
        let origin = match t {
            ChatTemplate::Jinja(_) => format!("{model}: the model's chat template"),
            _ => format!("the built-in {} chat format", t.name()),
        };
        Ok((t, origin))
    }

    /// The template for a tokenizer: the one its file carries, else a built-in one the
    /// vocabulary is recognised by, else none.
    /// A release's own format ([`ChatHint`], set for Meta's folders) comes between the two.
    pub fn for_tokenizer(tok: &Tokenizer) -> Option<ChatTemplate> {
        match (tok.chat_template(), tok.chat_hint()) {
            (Some(t), _) if !t.trim().is_empty() => Some(ChatTemplate::Jinja(t.to_string())),
            (_, Some(ChatHint::Llama2)) => Some(ChatTemplate::Llama2),
            (_, Some(ChatHint::Llama3)) => Some(ChatTemplate::Llama3),
            (_, Some(ChatHint::Plain)) => None,
            (_, None) => ChatTemplate::builtin_for(tok),
        }
    }

    /// The built-in format a vocabulary is recognised by, ignoring any template in the file.
    pub fn builtin_for(tok: &Tokenizer) -> Option<ChatTemplate> {
        let has = |t: &str| tok.token_id(t).is_some();
        if has("<|start_header_id|>") && has("<|end_header_id|>") && has("<|eot_id|>") {
            return Some(ChatTemplate::Llama3);
        }
        if has("<|im_start|>") && has("<|im_end|>") {
            return Some(ChatTemplate::ChatMl);
        }
        // Llama 2 (and LLaMA 1) share one SentencePiece vocabulary of 32,000 pieces.
        if tok.kind() == ModelKind::SentencePiece
            && tok.n_vocab() == 32_000
            && tok.bos().is_some()
            && tok.eos().is_some()
        {
            return Some(ChatTemplate::Llama2);
        }
        None
    }

    /// The built-in format of one of [`BUILTIN_NAMES`].
    pub fn builtin(name: &str) -> Option<ChatTemplate> {
        match name.trim() {
            "chatml" => Some(ChatTemplate::ChatMl),
            "llama2" => Some(ChatTemplate::Llama2),
            "llama3" => Some(ChatTemplate::Llama3),
            _ => None,
        }
    }

    /// Parses a `--chat-template` style name: one of [`BUILTIN_NAMES`], or else Jinja source.
    pub fn from_name_or_source(s: &str) -> ChatTemplate {
        ChatTemplate::builtin(s).unwrap_or_else(|| ChatTemplate::Jinja(s.to_string()))
    }

    /// A short name for messages: `jinja`, or the built-in's name.
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::Jinja(_) => "jinja",
            ChatTemplate::Llama2 => "llama2",
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::ChatMl => "chatml",
        }
    }

    /// Checks that the template can encode a dialog for this vocabulary (the Jinja source
    /// compiles and renders, the vocabulary has the tokens a built-in needs), so that a broken
    /// template is reported when a program starts rather than at its first message. The probe is
    /// the smallest dialog a chat sends: the system prompt, if any, and one user message.
    pub fn validate(&self, tok: &Tokenizer, system: Option<&str>) -> Result<(), ChatError> {
        self.encode_turn(tok, system, "Hello").map(|_| ())
    }

    /// One user message, after the system prompt if any (an empty one is none), with the
    /// assistant's turn opened: a one-turn chat.
    pub fn encode_turn(
        &self,
        tok: &Tokenizer,
        system: Option<&str>,
        user: &str,
    ) -> Result<Vec<u32>, ChatError> {
        let system = system.filter(|s| !s.is_empty()).map(Message::system);
        let dialog: Vec<Message> = system.into_iter().chain([Message::user(user)]).collect();
        self.encode(tok, &dialog, true)
    }

    /// Encodes `system` (if any) and `turns` with the assistant's turn opened, leaving out the
    /// oldest turns (a user message and the replies up to the next user message, so that a
    /// format's user/assistant alternation holds) until the ids are at most `budget` long. The
    /// system prompt and the turn of the last user message are always kept, so the result can
    /// still be longer than `budget`: the caller decides what a prompt that does not fit means.
    /// Returns the ids and how many leading messages of `turns` were left out.
    pub fn encode_within(
        &self,
        tok: &Tokenizer,
        system: Option<&Message>,
        turns: &[Message],
        budget: usize,
    ) -> Result<(Vec<u32>, usize), ChatError> {
        let encode = |from: usize| {
            let dialog: Vec<Message> = system.into_iter().chain(&turns[from..]).cloned().collect();
            self.encode(tok, &dialog, true)
        };
        // Where each turn starts; the last one is never dropped.
        let starts: Vec<usize> = (0..turns.len())
            .filter(|&i| turns[i].role == "user")
            .collect();
        let mut from = 0;
        let mut ids = encode(from)?;
        for &next in starts.iter().filter(|&&i| i > 0) {
            if ids.len() <= budget {
                break;
            }
            from = next;
            ids = encode(from)?;
        }
        Ok((ids, from))
    }

    /// Encodes a dialog. With `add_generation_prompt` the ids end where the assistant's reply
    /// begins (for Llama 2 that needs the dialog to end with a user turn).
    pub fn encode(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, ChatError> {
        self.encode_with_tools(tok, messages, None, add_generation_prompt)
    }

    /// Whether the template renders tool definitions itself (a Jinja template that reads
    /// `tools`); for the others the caller describes the tools in a system message.
    pub fn supports_tools(&self) -> bool {
        matches!(self, ChatTemplate::Jinja(src) if src.contains("tools"))
    }

    /// [`ChatTemplate::encode`] with tool definitions (OpenAI's `tools` entries, as given),
    /// which a Jinja template receives as transformers' `apply_chat_template(tools=...)` passes
    /// them; the built-in formats have no place for them (see [`ChatTemplate::supports_tools`]).
    pub fn encode_with_tools(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::Empty);
        }
        match self {
            ChatTemplate::Jinja(src) => {
                let text =
                    render_jinja_with_tools(src, tok, messages, tools, add_generation_prompt)?;
                let mut ids = tok.encode(&text, false, true);
                // The template usually writes BOS itself (`{{ bos_token }}`); add it only when
                // the vocabulary wants one and the text did not start with it: never two.
                let missing = |b: &u32| tok.add_bos_default() && ids.first() != Some(b);
                if let Some(bos) = tok.bos().filter(missing) {
                    ids.insert(0, bos);
                }
                Ok(ids)
            }
            ChatTemplate::Llama2 => encode_llama2(tok, messages, add_generation_prompt),
            ChatTemplate::Llama3 => encode_llama3(tok, messages, add_generation_prompt),
            ChatTemplate::ChatMl => encode_chatml(tok, messages, add_generation_prompt),
        }
    }
}

/// Python's `str.strip()` with no argument: Unicode whitespace, and the separators U+001C to
/// U+001F that Python also counts as space (`str.isspace`). Meta's references and Jinja's `trim`
/// strip this way.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// Meta's Llama 2 `chat_completion` (meta-llama/llama `llama/generation.py`): a system prompt is
/// merged into the first user turn as `<<SYS>>\n{system}\n<</SYS>>\n\n{user}`; each finished
/// (user, answer) pair is `BOS "[INST] {user} [/INST] {answer} " EOS` and a last user turn
/// `BOS "[INST] {user} [/INST]"`, user and answer stripped, each segment tokenized on its own
/// (so each gets SentencePiece's dummy prefix).
fn encode_llama2(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ChatError> {
    let bos = tok.bos().ok_or(ChatError::MissingToken("BOS"))?;
    let eos = tok.eos().ok_or(ChatError::MissingToken("EOS"))?;

    // (index in `messages`, content) of each user/assistant turn, system merged in.
    let mut turns: Vec<(usize, String)> = Vec::with_capacity(messages.len());
    let mut rest = messages.iter().enumerate();
    if messages[0].role == "system" {
        rest.next();
        match rest.next() {
            Some((i, m)) if m.role == "user" => turns.push((
                i,
                format!(
                    "<<SYS>>\n{}\n<</SYS>>\n\n{}",
                    messages[0].content, m.content
                ),
            )),
            Some((i, m)) => {
                return Err(ChatError::RoleOrder {
                    index: i,
                    role: m.role.clone(),
                    expected: "\"user\" after the system prompt",
                });
            }
            None => {
                return Err(ChatError::RoleOrder {
                    index: 0,
                    role: "system".to_string(),
                    expected: "a user message to follow it",
                });
            }
        }
    }
    for (i, m) in rest {
        turns.push((i, m.content.clone()));
    }
    for (k, (i, _)) in turns.iter().enumerate() {
        let expected = if k % 2 == 0 { "user" } else { "assistant" };
        if messages[*i].role != expected {
            return Err(ChatError::RoleOrder {
                index: *i,
                role: messages[*i].role.clone(),
                expected: if k % 2 == 0 {
                    "\"user\" (Llama 2 alternates user and assistant)"
                } else {
                    "\"assistant\" (Llama 2 alternates user and assistant)"
                },
            });
        }
    }
    let ends_with_user = turns.len() % 2 == 1;
    if add_generation_prompt && !ends_with_user {
        let (i, _) = turns[turns.len() - 1];
        return Err(ChatError::RoleOrder {
            index: i,
            role: messages[i].role.clone(),
            expected: "a final \"user\" message to reply to",
        });
    }

    let mut ids = Vec::new();
    for pair in turns.chunks(2) {
        let user = py_strip(&pair[0].1);
        ids.push(bos);
        match pair.get(1) {
            Some((_, answer)) => {
                let text = format!("[INST] {user} [/INST] {} ", py_strip(answer));
                ids.extend(tok.encode(&text, false, false));
                ids.push(eos);
            }
            None => ids.extend(tok.encode(&format!("[INST] {user} [/INST]"), false, false)),
        }
    }
    Ok(ids)
}

/// Meta's Llama 3 `ChatFormat` (meta-llama/llama3 `llama/tokenizer.py`): `<|begin_of_text|>`,
/// then per message `<|start_header_id|>` role `<|end_header_id|>` "\n\n" content.strip()
/// `<|eot_id|>`, then the assistant header when a reply is wanted. Each piece is tokenized on its
/// own, special tokens as ids.
fn encode_llama3(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ChatError> {
    let id = |t: &'static str| tok.token_id(t).ok_or(ChatError::MissingToken(t));
    let begin = id("<|begin_of_text|>")?;
    let start = id("<|start_header_id|>")?;
    let end = id("<|end_header_id|>")?;
    let eot = id("<|eot_id|>")?;
    let newlines = tok.encode("\n\n", false, false);
    let header = |ids: &mut Vec<u32>, role: &str| {
        ids.push(start);
        ids.extend(tok.encode(role, false, false));
        ids.push(end);
        ids.extend_from_slice(&newlines);
    };
    let mut ids = vec![begin];
    for m in messages {
        header(&mut ids, &m.role);
        ids.extend(tok.encode(py_strip(&m.content), false, false));
        ids.push(eot);
    }
    if add_generation_prompt {
        header(&mut ids, "assistant");
    }
    Ok(ids)
}

/// ChatML (llama.cpp's built-in `chatml`, `llm_chat_apply_template`): per message
/// `<|im_start|>` role "\n" content `<|im_end|>` "\n", contents neither stripped nor changed, then
/// `<|im_start|>` "assistant\n" when a reply is wanted. The text between two control tokens is
/// tokenized as one piece, as a tokenizer that parses the control tokens out of the rendered text
/// splits it; BOS only where the vocabulary asks for it (ChatML vocabularies usually do not).
/// Message text is never parsed for control tokens, as in the other built-ins.
fn encode_chatml(
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ChatError> {
    let start = tok
        .token_id("<|im_start|>")
        .ok_or(ChatError::MissingToken("<|im_start|>"))?;
    let end = tok
        .token_id("<|im_end|>")
        .ok_or(ChatError::MissingToken("<|im_end|>"))?;
    let newline = tok.encode("\n", false, false);
    let mut ids = Vec::new();
    // Never two BOS: some ChatML vocabularies name `<|im_start|>` their BOS.
    if let Some(bos) = tok.bos().filter(|&b| tok.add_bos_default() && b != start) {
        ids.push(bos);
    }
    for m in messages {
        ids.push(start);
        ids.extend(tok.encode(&format!("{}\n{}", m.role, m.content), false, false));
        ids.push(end);
        ids.extend_from_slice(&newline);
    }
    if add_generation_prompt {
        ids.push(start);
        ids.extend(tok.encode("assistant\n", false, false));
    }
    Ok(ids)
}

/// Renders a Jinja chat template to text the way transformers does: the same environment
/// settings and the same variables, special-token texts from the vocabulary.
pub fn render_jinja(
    source: &str,
    tok: &Tokenizer,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<String, ChatError> {
    render_jinja_with_tools(source, tok, messages, None, add_generation_prompt)
}

/// [`render_jinja`] with `tools`, and messages that carry `tool_calls` (each
/// `{"id", "type": "function", "function": {"name", "arguments"}}`, arguments as an object) and
/// `tool_call_id`, as OpenAI's messages have them.
pub fn render_jinja_with_tools(
    source: &str,
    tok: &Tokenizer,
    messages: &[Message],
    tools: Option<&[serde_json::Value]>,
    add_generation_prompt: bool,
) -> Result<String, ChatError> {
    let mut env = Environment::new();
    // transformers: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    // extensions=[loopcontrols]); Jinja's default drops one trailing newline of the source.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .map_err(|e| ChatError::Syntax(describe(&e)))?;
    env.set_syntax(syntax);
    // Jinja prints Python's True, False and None; minijinja would print true, false, none.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            out.write_str("None").map_err(JinjaError::from)
        } else if value.kind() == minijinja::value::ValueKind::Bool {
            let text = if value.is_true() { "True" } else { "False" };
            out.write_str(text).map_err(JinjaError::from)
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    // Jinja's `trim` is Python's `str.strip`.
    env.add_filter("trim", |s: String, chars: Option<String>| match chars {
        Some(c) => s.trim_matches(|x| c.contains(x)).to_string(),
        None => py_strip(&s).to_string(),
    });
    let raised: Arc<Mutex<Option<String>>> = Arc::default();
    let slot = Arc::clone(&raised);
    env.add_function(
        "raise_exception",
        move |msg: String| -> Result<Value, JinjaError> {
            if let Ok(mut s) = slot.lock() {
                *s = Some(msg.clone());
            }
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
    // transformers' own `tojson`: Python's json.dumps (", " and ": " separators, or an indent;
    // no HTML escaping; keys in their order), where Jinja's and minijinja's differ.
    env.add_filter(
        "tojson",
        |v: Value, kwargs: minijinja::value::Kwargs| -> Result<String, JinjaError> {
            let indent: Option<usize> = kwargs.get("indent")?;
            let _: Option<bool> = kwargs.get("ensure_ascii")?;
            let _: Option<bool> = kwargs.get("sort_keys")?;
            kwargs.assert_all_used()?;
            let json = serde_json::to_value(&v)
                .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, e.to_string()))?;
            let mut out = String::new();
            py_json(&json, indent, 0, &mut out);
            Ok(out)
        },
    );

    let template = env
        .template_from_named_str("chat_template", source)
        .map_err(|e| ChatError::Syntax(describe(&e)))?;

    let msgs: Vec<Value> = messages.iter().map(message_value).collect();
    let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
    ctx.insert("messages", Value::from(msgs));
    ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
    // transformers passes tools and documents, None when absent, so `is none` tests hold.
    ctx.insert(
        "tools",
        tools.map_or_else(
            || Value::from(()),
            |t| Value::from(minijinja::value::Serde(t)),
        ),
    );
    ctx.insert("documents", Value::from(()));
    let piece = |id: Option<u32>| id.and_then(|i| tok.token_piece(i)).map(Value::from);
    for (name, id) in [
        ("bos_token", tok.bos()),
        ("eos_token", tok.eos()),
        ("unk_token", tok.unk()),
        ("pad_token", tok.pad()),
    ] {
        if let Some(v) = piece(id) {
            ctx.insert(name, v);
        }
    }
    template.render(Value::from(ctx)).map_err(|e| {
        match raised.lock().ok().and_then(|mut s| s.take()) {
            Some(msg) => ChatError::Raised(msg),
            None => ChatError::Render(describe(&e)),
        }
    })
}

/// A message as transformers hands it to a template: `role` and `content`, and `tool_calls` and
/// `tool_call_id` where the message has them (an assistant turn that only calls tools has
/// `content` None, as OpenAI's messages send it).
fn message_value(m: &Message) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("role".into(), m.role.clone().into());
    let content = if m.content.is_empty() && !m.tool_calls.is_empty() {
        serde_json::Value::Null
    } else {
        m.content.clone().into()
    };
    map.insert("content".into(), content);
    if !m.tool_calls.is_empty() {
        let calls: Vec<serde_json::Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
        map.insert("tool_calls".into(), calls.into());
    }
    if let Some(id) = &m.tool_call_id {
        map.insert("tool_call_id".into(), id.clone().into());
    }
    Value::from(minijinja::value::Serde(serde_json::Value::Object(map)))
}

/// Python's `json.dumps(v, ensure_ascii=False, indent=indent)`: separators ", " and ": "
/// without an indent, "," and ": " with one; floats as Python writes them.
fn py_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&py_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        J::String(s) => py_string(s, out),
        J::Array(a) if a.is_empty() => out.push_str("[]"),
        J::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                py_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(o) if o.is_empty() => out.push_str("{}"),
        J::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                py_string(k, out);
                out.push_str(": ");
                py_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, `.0` on whole numbers, exponents
/// with a sign and two digits at least (1e-05, 1e+16).
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", e.abs());
    }
    let s = format!("{f:?}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// A JSON string as Python's json.dumps writes it with `ensure_ascii=False`.
fn py_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The error with where it happened (minijinja puts the line in Display) and its causes.
fn describe(e: &JinjaError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// transformers' `strftime_now(format)`: the current UTC date and time (Llama 3.2 templates put
/// today's date in the system prompt). Supports the directives templates use.
fn strftime_now(fmt: &str) -> Result<String, JinjaError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_time(secs, fmt)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `strftime` over seconds since the Unix epoch (UTC), for %Y %y %m %d %e %B %b %A %a %H %M %S
/// %j %% (C `strftime` in the C locale).
fn format_time(secs: u64, fmt: &str) -> Result<String, JinjaError> {
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let tod = secs % 86_400;
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[(m - 1) as usize];
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            other => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms", `civil_from_days`); also the
/// server's access-log timestamps.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`] (same source, `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_calendar_days() {
        // Unix timestamps of known instants (from `date -u -d @SECS`).
        assert_eq!(
            format_time(0, "%Y-%m-%d %H:%M:%S %A %j").unwrap(),
            "1970-01-01 00:00:00 Thursday 001"
        );
        assert_eq!(
            format_time(951_782_400, "%d %b %Y %a").unwrap(),
            "29 Feb 2000 Tue"
        );
        assert_eq!(
            format_time(1_721_952_000, "%d %B %Y").unwrap(),
            "26 July 2024"
        );
        assert_eq!(format_time(1_735_689_599, "%j %y %e").unwrap(), "366 24 31");
        assert!(format_time(0, "%Q").is_err());
    }

    #[test]
    fn python_strip_counts_the_information_separators() {
        assert_eq!(py_strip("\x1c\u{a0} a b\u{3000}\x1f\n"), "a b");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
    }
}
