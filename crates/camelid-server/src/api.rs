//! OpenAI's request and response bodies for `/v1/chat/completions` and `/v1/completions`.
//!
//! Requests are read field by field ([`Fields`]): every field of OpenAI's schemas and of
//! llama.cpp's sampling extensions is either honoured here or refused with a 400 naming it.

use camelid_engine::chat::Message;
use camelid_engine::sampler::{BAN_BIAS, random_seed};
use camelid_engine::{FinishReason, GenParams, SamplerConfig};
use camelid_model::sampling::SamplingHints;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::fields::{self, Endpoint, Fields, wrong_type};
use crate::structured::{self, Constrained};
use crate::tools::{self, Call, Tools};
use crate::worker::{Candidate, TokenLogprob, Usage};

/// What checking a request needs to know about the server.
pub struct Limits<'a> {
    /// The model's recommended sampling: defaults for the fields a request leaves out.
    pub hints: &'a SamplingHints,
    pub n_vocab: usize,
    /// The most choices one request may ask for (`n`).
    pub max_n: usize,
}

/// The fields shared by both endpoints, checked.
pub struct Common {
    pub model: String,
    /// Choices to generate (`n`).
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// llama.cpp's `cache_prompt`: false computes the whole prompt even where a slot has it.
    pub cache_prompt: bool,
    /// The settings of choice 0; choice `i` draws with seed + `i`.
    pub params: GenParams,
}

impl Common {
    /// The settings of choice `i`: its own seed, so that choices differ yet a seeded request
    /// repeats all of them.
    pub fn choice_params(&self, i: usize) -> GenParams {
        let mut p = self.params.clone();
        p.sampler.seed = p.sampler.seed.wrapping_add(i as u64);
        p
    }
}

pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// `Some(k)`: log-probabilities with the `k` most likely alternatives.
    pub logprobs: Option<usize>,
    pub common: Common,
    /// `response_format`, `json_schema` or `grammar`.
    pub constrained: Option<Constrained>,
    pub tools: Option<Tools>,
}

pub struct CompletionRequest {
    pub prompt: Prompt,
    pub logprobs: Option<usize>,
    pub common: Common,
    /// `json_schema` or `grammar`.
    pub constrained: Option<Constrained>,
}

/// What a completion prompt is: text, or token ids.
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

pub fn chat_request(body: &[u8], limits: &Limits) -> Result<ChatRequest, ApiError> {
    let mut f = Fields::parse(body, Endpoint::Chat)?;
    let messages = messages(f.require("messages")?)?;
    // max_completion_tokens replaced max_tokens in OpenAI's chat API; the newer one wins.
    let max_tokens = f.integer("max_tokens")?;
    let max = match f.integer("max_completion_tokens")? {
        Some(m) => Some(("max_completion_tokens", m)),
        None => max_tokens.map(|m| ("max_tokens", m)),
    };
    let logprobs = match (
        f.bool("logprobs")?.unwrap_or(false),
        f.integer("top_logprobs")?,
    ) {
        (_, Some(k)) if !(0..=20).contains(&k) => {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                format!("top_logprobs must be between 0 and 20, got {k}."),
            ));
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                "top_logprobs needs logprobs to be true.",
            ));
        }
        (false, _) => None,
    };
    // No budget by default: until an end-of-turn token or a full context.
    let common = common(&mut f, limits, max, usize::MAX)?;
    let constrained = structured::read(&mut f, Endpoint::Chat)?;
    let tools = tools::read(&mut f)?;
    f.finish()?;
    Ok(ChatRequest {
        messages,
        logprobs,
        common,
        constrained,
        tools,
    })
}

pub fn completion_request(body: &[u8], limits: &Limits) -> Result<CompletionRequest, ApiError> {
    let mut f = Fields::parse(body, Endpoint::Completions)?;
    let prompt = prompt(&f.require("prompt")?)?;
    let max = f.integer("max_tokens")?.map(|m| ("max_tokens", m));
    let logprobs = match f.integer("logprobs")? {
        Some(k) if !(0..=5).contains(&k) => {
            return Err(ApiError::invalid(
                Some("logprobs"),
                format!("logprobs must be between 0 and 5, got {k}."),
            ));
        }
        k => k.map(|k| k as usize),
    };
    let best_of = f.integer("best_of")?;
    // OpenAI's default budget for completions is 16 tokens.
    let common = common(&mut f, limits, max, 16)?;
    // best_of = n asks for nothing beyond the n choices; more would need ranking by logprob.
    match best_of {
        Some(b) if b < common.n as i64 => {
            return Err(ApiError::invalid(
                Some("best_of"),
                format!("best_of must be at least n ({}), got {b}.", common.n),
            ));
        }
        Some(b) if b > common.n as i64 => return Err(fields::unsupported("best_of")),
        _ => {}
    }
    let constrained = structured::read(&mut f, Endpoint::Completions)?;
    f.finish()?;
    Ok(CompletionRequest {
        prompt,
        logprobs,
        common,
        constrained,
    })
}

/// The dialog: each message's role and text, an assistant's `tool_calls` and a tool result's
/// `tool_call_id`. Fields of a message that camelid cannot render (participant names, audio)
/// are refused, naming the message.
fn messages(v: Value) -> Result<Vec<Message>, ApiError> {
    let Value::Array(list) = v else {
        return Err(wrong_type("messages", "an array of messages"));
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must hold at least one message.",
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let Value::Object(mut m) = m else {
                return Err(wrong_type(&format!("messages[{i}]"), "an object"));
            };
            let role = match m.remove("role") {
                Some(Value::String(r)) => r,
                None | Some(Value::Null) => {
                    return Err(fields::missing(&format!("messages[{i}].role")));
                }
                Some(_) => return Err(wrong_type(&format!("messages[{i}].role"), "a string")),
            };
            let text = text(m.remove("content"), i)?;
            let mut msg = Message::new(role, text);
            for (k, v) in m {
                let name = format!("messages[{i}].{k}");
                let trivial = match k.as_str() {
                    _ if v.is_null() => true,
                    "tool_calls" => {
                        msg.tool_calls = tools::message_calls(v, i)?;
                        true
                    }
                    "tool_call_id" => match v {
                        Value::String(id) => {
                            msg.tool_call_id = Some(id);
                            true
                        }
                        _ => return Err(wrong_type(&name, "a string")),
                    },
                    // The chat templates have no place for a participant's name, an earlier
                    // refusal, the deprecated function_call or audio: refused rather than
                    // silently dropped.
                    "name" | "refusal" | "function_call" | "audio" => false,
                    _ => return Err(fields::unknown(&name)),
                };
                if !trivial {
                    return Err(fields::unsupported(&name));
                }
            }
            Ok(msg)
        })
        .collect()
}

/// A message's text: a string, or the text parts of an array joined.
fn text(content: Option<Value>, index: usize) -> Result<String, ApiError> {
    let param = || format!("messages[{index}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => out.push_str(t),
                    _ => {
                        return Err(ApiError::invalid(
                            Some(&param()),
                            "Only text content parts ({\"type\": \"text\", \"text\": ...}) are supported.",
                        ));
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(ApiError::invalid(
            Some(&param()),
            "Message content must be a string or an array of text parts.",
        )),
    }
}

fn prompt(v: &Value) -> Result<Prompt, ApiError> {
    let bad = || {
        ApiError::invalid(
            Some("prompt"),
            "The prompt must be a string, an array of one string, or an array of token ids.",
        )
    };
    match v {
        Value::String(s) => Ok(Prompt::Text(s.clone())),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            Ok(Prompt::Text(a[0].as_str().unwrap_or_default().to_string()))
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_u64) => a
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<_, _>>()
            .map(Prompt::Tokens),
        Value::Array(a) if a.len() > 1 && a.iter().all(Value::is_string) => Err(ApiError::invalid(
            Some("prompt"),
            "Only one prompt per request is supported.",
        )),
        _ => Err(bad()),
    }
}

/// A number field within `lo..=hi`, as f32.
fn ranged(f: &mut Fields, name: &str, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
    match f.number(name)? {
        None => Ok(None),
        Some(x) if (lo as f64..=hi as f64).contains(&x) => Ok(Some(x as f32)),
        Some(x) => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be between {lo} and {hi}, got {x}."),
        )),
    }
}

/// A count where -1 means "no limit" as in llama.cpp; `None` when absent.
fn count_or_all(f: &mut Fields, name: &str) -> Result<Option<usize>, ApiError> {
    match f.integer(name)? {
        None => Ok(None),
        Some(-1) => Ok(Some(usize::MAX)),
        Some(k) if k >= 0 => Ok(Some(usize::try_from(k).unwrap_or(usize::MAX))),
        Some(k) => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be ≥ 0, or -1 for no limit, got {k}."),
        )),
    }
}

/// Reads and checks the shared fields. `max` is the budget field that was set (and its name),
/// `default_max` the budget otherwise. Sampling fields the request leaves out take the model's
/// recommended sampling where it has one, else OpenAI's defaults (temperature and top_p 1; no
/// top-k, min-p or repetition penalty, which OpenAI's API does not have).
fn common(
    f: &mut Fields,
    limits: &Limits,
    max: Option<(&'static str, i64)>,
    default_max: usize,
) -> Result<Common, ApiError> {
    let model = f.string("model")?.ok_or_else(|| fields::missing("model"))?;
    let n = match f.integer("n")? {
        None => 1,
        Some(n) if n >= 1 && n as u64 <= limits.max_n as u64 => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                Some("n"),
                format!("n must be between 1 and {}, got {n}.", limits.max_n),
            ));
        }
    };
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = stream_options(f.take("stream_options"), stream)?;
    let hints = limits.hints;
    let temperature = ranged(f, "temperature", 0.0, 2.0)?;
    // top_p = 0 asks for the single most likely token; the sampler wants p > 0.
    let top_p = ranged(f, "top_p", 0.0, 1.0)?.map(|p| p.max(f32::MIN_POSITIVE));
    let presence_penalty = ranged(f, "presence_penalty", -2.0, 2.0)?;
    let frequency_penalty = ranged(f, "frequency_penalty", -2.0, 2.0)?;
    // llama.cpp's extensions: top_k 0 or -1 is off, repeat_last_n -1 is the whole context.
    let top_k = count_or_all(f, "top_k")?.map(|k| if k == usize::MAX { 0 } else { k });
    let min_p = ranged(f, "min_p", 0.0, 1.0)?;
    let repeat_penalty = match f.number("repeat_penalty")? {
        Some(r) if !(r > 0.0 && (r as f32).is_finite()) => {
            return Err(ApiError::invalid(
                Some("repeat_penalty"),
                format!("repeat_penalty must be > 0 (1 is off), got {r}."),
            ));
        }
        r => r.map(|r| r as f32),
    };
    let repeat_last_n = count_or_all(f, "repeat_last_n")?;
    let cache_prompt = f.bool("cache_prompt")?.unwrap_or(true);
    let seed = f.integer("seed")?;
    let stop = stop(f.take("stop"))?;
    let logit_bias = logit_bias(f.take("logit_bias"), limits.n_vocab)?;
    let max_tokens = match max {
        Some((name, m)) if m < 1 => {
            return Err(ApiError::invalid(
                Some(name),
                format!("{name} must be at least 1, got {m}."),
            ));
        }
        Some((_, m)) => usize::try_from(m).unwrap_or(usize::MAX),
        None => default_max,
    };
    let given = SamplingHints {
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        repeat_last_n,
        source: String::new(),
    };
    // OpenAI's defaults, except the penalty window, which OpenAI does not have.
    let openai = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        ..SamplerConfig::default()
    };
    let sampler = SamplerConfig {
        presence_penalty: presence_penalty.unwrap_or(0.0),
        frequency_penalty: frequency_penalty.unwrap_or(0.0),
        seed: seed.map_or_else(random_seed, |s| s as u64),
        logit_bias,
        ..openai.with_hints(&given.or(hints))
    };
    sampler
        .validate()
        .map_err(|e| ApiError::invalid(None, format!("Invalid sampling settings: {e}.")))?;
    Ok(Common {
        model,
        n,
        stream,
        include_usage,
        cache_prompt,
        params: GenParams {
            max_tokens,
            stop,
            sampler,
            // Compiled by the handler, after the body is read (`structured`, `tools`).
            grammar: None,
        },
    })
}

/// `stream_options`: only with `stream`, as OpenAI requires; `include_usage` is honoured,
/// `include_obfuscation` (padding against packet-size side channels) only when false.
fn stream_options(v: Option<Value>, stream: bool) -> Result<bool, ApiError> {
    let Some(v) = v else { return Ok(false) };
    if !stream {
        return Err(ApiError::invalid(
            Some("stream_options"),
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    let Value::Object(o) = v else {
        return Err(wrong_type("stream_options", "an object"));
    };
    let mut include_usage = false;
    for (k, v) in o {
        let name = format!("stream_options.{k}");
        match (k.as_str(), v) {
            (_, Value::Null) => {}
            ("include_usage", Value::Bool(b)) => include_usage = b,
            ("include_obfuscation", Value::Bool(false)) => {}
            ("include_obfuscation", Value::Bool(true)) => return Err(fields::unsupported(&name)),
            ("include_usage" | "include_obfuscation", _) => {
                return Err(wrong_type(&name, "a boolean"));
            }
            _ => return Err(fields::unknown(&name)),
        }
    }
    Ok(include_usage)
}

/// `stop`: one string or up to four.
fn stop(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    let bad = || wrong_type("stop", "a string or an array of strings");
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(a)) if a.len() > 4 => Err(ApiError::invalid(
            Some("stop"),
            format!("At most 4 stop sequences are allowed, got {}.", a.len()),
        )),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|s| match s {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `logit_bias`: token ids (as strings, JSON keys) to biases in [-100, 100]; -100 bans the
/// token. An id outside the vocabulary is an error, not a silent no-op.
fn logit_bias(v: Option<Value>, n_vocab: usize) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Object(o) = v else {
        return Err(wrong_type(
            "logit_bias",
            "an object of token ids to numbers",
        ));
    };
    o.into_iter()
        .map(|(k, b)| {
            let id = k
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    ApiError::invalid(
                        Some("logit_bias"),
                        format!("Invalid key in logit_bias: {k:?} is not a token id."),
                    )
                })?;
            if id >= n_vocab as u64 {
                return Err(ApiError::invalid(
                    Some("logit_bias"),
                    format!(
                        "Invalid key in logit_bias: token id {id} is outside the vocabulary of {n_vocab} tokens."
                    ),
                ));
            }
            let bias = b.as_f64().filter(|b| (-100.0..=100.0).contains(b)).ok_or_else(|| {
                ApiError::invalid(
                    Some("logit_bias"),
                    format!("Invalid value in logit_bias for token {id}: expected a number between {BAN_BIAS} and 100, got {b}."),
                )
            })?;
            Ok((id as u32, bias as f32))
        })
        .collect()
}

pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::EndOfGeneration | FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length | FinishReason::ContextFull => "length",
    }
}

pub fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// One finished choice of a request without `stream`.
#[derive(Clone, Debug)]
pub struct Choice {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: FinishReason,
    /// The reply read as tool calls (then `text` is not sent).
    pub tool_calls: Option<Vec<Call>>,
}

/// Which endpoint a response is for, with what it echoes back.
#[derive(Clone)]
pub struct Reply {
    pub chat: bool,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Log-probabilities asked for.
    pub logprobs: bool,
}

impl Reply {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
            (false, _) => "text_completion",
        }
    }

    fn logprobs_json(&self, lps: &[TokenLogprob], text_offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        if self.chat {
            let cand =
                |c: &Candidate| json!({"token": c.text, "logprob": c.logprob, "bytes": c.bytes});
            let content: Vec<Value> = lps
                .iter()
                .map(|t| {
                    let mut v = cand(&t.token);
                    v["top_logprobs"] = t.top.iter().map(cand).collect();
                    v
                })
                .collect();
            json!({"content": content, "refusal": null})
        } else {
            let mut offsets = Vec::with_capacity(lps.len());
            let mut at = text_offset;
            for t in lps {
                offsets.push(at);
                at += t.token.text.len();
            }
            let top: Vec<Value> = lps
                .iter()
                .map(|t| {
                    let m: serde_json::Map<String, Value> = t
                        .top
                        .iter()
                        .map(|c| (c.text.clone(), json!(c.logprob)))
                        .collect();
                    Value::Object(m)
                })
                .collect();
            json!({
                "tokens": lps.iter().map(|t| t.token.text.clone()).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|t| t.token.logprob).collect::<Vec<_>>(),
                "top_logprobs": top,
                "text_offset": offsets,
            })
        }
    }

    /// The whole answer of a request without `stream`: one entry per choice, in order.
    pub fn full(&self, choices: &[Choice], usage: Usage) -> Value {
        let choices: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let lp = self.logprobs_json(&c.logprobs, 0);
                let reason = finish_reason(c.finish);
                if let Some(calls) = &c.tool_calls {
                    let calls: Vec<Value> = calls.iter().map(Call::json).collect();
                    json!({
                        "index": index,
                        "message": {"role": "assistant", "content": null, "tool_calls": calls},
                        "logprobs": lp,
                        "finish_reason": "tool_calls",
                    })
                } else if self.chat {
                    json!({
                        "index": index,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": lp,
                        "finish_reason": reason,
                    })
                } else {
                    json!({"index": index, "text": c.text, "logprobs": lp, "finish_reason": reason})
                }
            })
            .collect();
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage_json(usage),
        })
    }

    pub(crate) fn chunk(&self, choice: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The first chunk of a chat stream's choice: the role.
    pub fn role_chunk(&self, index: usize) -> Value {
        self.chunk(json!({
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": null,
        }))
    }

    /// A chunk of streamed text; `offset` is where it starts in the choice's completion.
    pub fn text_chunk(
        &self,
        index: usize,
        text: &str,
        lps: &[TokenLogprob],
        offset: usize,
    ) -> Value {
        let lp = self.logprobs_json(lps, offset);
        if self.chat {
            self.chunk(json!({
                "index": index,
                "delta": {"content": text},
                "logprobs": lp,
                "finish_reason": null,
            }))
        } else {
            self.chunk(json!({"index": index, "text": text, "logprobs": lp, "finish_reason": null}))
        }
    }

    pub fn finish_chunk(&self, index: usize, finish: FinishReason) -> Value {
        let reason = finish_reason(finish);
        if self.chat {
            self.chunk(
                json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}),
            )
        } else {
            self.chunk(
                json!({"index": index, "text": "", "logprobs": null, "finish_reason": reason}),
            )
        }
    }

    /// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(usage),
        })
    }
}
