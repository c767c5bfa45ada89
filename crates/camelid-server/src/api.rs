//! OpenAI's request and response bodies for `/v1/chat/completions` and `/v1/completions`
//! (the fields of the OpenAI API reference that clients rely on; unknown fields are ignored).

use camelid_engine::{FinishReason, GenParams, SamplerConfig};
use camelid_model::sampling::SamplingHints;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::worker::{Candidate, TokenLogprob, Usage};

/// `stop`: one string or up to four.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Sampling and length fields shared by both endpoints.
#[derive(Deserialize)]
pub struct Common {
    pub model: String,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<u64>,
    #[serde(default)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_completion_tokens: Option<u64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u64>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, an array of content parts (`{"type": "text", "text": ...}`), or null.
    #[serde(default)]
    pub content: Option<Value>,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub prompt: Value,
    /// Completions' `logprobs` is a count of alternatives (0 to 5).
    pub logprobs: Option<u64>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub best_of: Option<u64>,
    #[serde(flatten)]
    pub common: Common,
}

/// What a completion prompt is: text, or token ids.
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// Parses a body: malformed JSON and wrong or missing fields are 400s naming the field.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::bad_json())?;
    if !v.is_object() {
        return Err(ApiError::bad_json());
    }
    serde_json::from_value(v).map_err(|e| {
        let msg = e.to_string();
        // serde names a missing field as "missing field `name`".
        match msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) => ApiError::invalid(
                Some(field),
                format!("Missing required parameter: '{field}'."),
            ),
            None => ApiError::invalid(None, format!("Invalid request body: {msg}.")),
        }
    })
}

impl ChatMessage {
    /// The message's text: a string, or the text parts of an array joined.
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        let param = || format!("messages[{index}].content");
        match &self.content {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
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
}

impl CompletionRequest {
    pub fn prompt(&self) -> Result<Prompt, ApiError> {
        let bad = || {
            ApiError::invalid(
                Some("prompt"),
                "The prompt must be a string, an array of one string, or an array of token ids.",
            )
        };
        match &self.prompt {
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
            Value::Array(a) if a.len() > 1 && a.iter().all(Value::is_string) => Err(
                ApiError::invalid(Some("prompt"), "Only one prompt per request is supported."),
            ),
            _ => Err(bad()),
        }
    }
}

/// Checks the shared fields and turns them into generation settings; `max_tokens` is the
/// default budget when the request sets none. Fields the request leaves out take the model's
/// recommended sampling where it has one (`hints`), else OpenAI's defaults (temperature and
/// top_p 1; no top-k, min-p or repetition penalty, which the API does not have).
pub fn gen_params(
    c: &Common,
    hints: &SamplingHints,
    max_tokens: Option<u64>,
    default_max: usize,
) -> Result<GenParams, ApiError> {
    if let Some(n) = c.n
        && n != 1
    {
        return Err(ApiError::invalid(
            Some("n"),
            format!("This server generates one choice per request; n must be 1, got {n}."),
        ));
    }
    let range = |v: Option<f32>, name: &str, lo: f32, hi: f32, default: f32| match v {
        None => Ok(default),
        Some(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(x),
        Some(x) => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be between {lo} and {hi}, got {x}."),
        )),
    };
    let temperature = range(
        c.temperature,
        "temperature",
        0.0,
        2.0,
        hints.temperature.unwrap_or(1.0),
    )?;
    // top_p = 0 asks for the single most likely token; the sampler wants p > 0.
    let top_p =
        range(c.top_p, "top_p", 0.0, 1.0, hints.top_p.unwrap_or(1.0))?.max(f32::MIN_POSITIVE);
    let presence_penalty = range(c.presence_penalty, "presence_penalty", -2.0, 2.0, 0.0)?;
    let frequency_penalty = range(c.frequency_penalty, "frequency_penalty", -2.0, 2.0, 0.0)?;
    let max_tokens = match max_tokens {
        Some(0) => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                "max_tokens must be at least 1.",
            ));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => default_max,
    };
    let stop = match &c.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) if v.len() <= 4 => v.clone(),
        Some(Stop::Many(v)) => {
            return Err(ApiError::invalid(
                Some("stop"),
                format!("At most 4 stop sequences are allowed, got {}.", v.len()),
            ));
        }
    };
    let seed = match c.seed {
        Some(s) => s as u64,
        None => random_seed(),
    };
    let d = SamplerConfig::default();
    let sampler = SamplerConfig {
        temperature,
        top_k: hints.top_k.unwrap_or(0),
        top_p,
        min_p: hints.min_p.unwrap_or(0.0),
        repeat_penalty: hints.repeat_penalty.unwrap_or(1.0),
        repeat_last_n: hints.repeat_last_n.unwrap_or(d.repeat_last_n),
        presence_penalty,
        frequency_penalty,
        seed,
    };
    sampler
        .validate()
        .map_err(|e| ApiError::invalid(None, format!("Invalid sampling settings: {e}.")))?;
    Ok(GenParams {
        max_tokens,
        stop,
        sampler,
    })
}

/// A seed for requests that set none: different per request, from the clock and a counter.
fn random_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
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

    /// The whole answer of a request without `stream`.
    pub fn full(
        &self,
        text: &str,
        lps: &[TokenLogprob],
        finish: FinishReason,
        usage: Usage,
    ) -> Value {
        let choice = if self.chat {
            json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": self.logprobs_json(lps, 0),
                "finish_reason": finish_reason(finish),
            })
        } else {
            json!({
                "index": 0,
                "text": text,
                "logprobs": self.logprobs_json(lps, 0),
                "finish_reason": finish_reason(finish),
            })
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_json(usage),
        })
    }

    fn chunk(&self, choice: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The first chunk of a chat stream: the role.
    pub fn role_chunk(&self) -> Value {
        self.chunk(json!({
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": null,
        }))
    }

    /// A chunk of streamed text; `offset` is where it starts in the completion.
    pub fn text_chunk(&self, text: &str, lps: &[TokenLogprob], offset: usize) -> Value {
        let lp = self.logprobs_json(lps, offset);
        if self.chat {
            self.chunk(json!({
                "index": 0,
                "delta": {"content": text},
                "logprobs": lp,
                "finish_reason": null,
            }))
        } else {
            self.chunk(json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": null}))
        }
    }

    pub fn finish_chunk(&self, finish: FinishReason) -> Value {
        let reason = finish_reason(finish);
        if self.chat {
            self.chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}))
        } else {
            self.chunk(json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason}))
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
