//! `POST /v1/embeddings`: OpenAI's request and response, and the embedding work the batching
//! worker runs.
//!
//! Each input becomes one [`EmbedJob`]: its tokens are computed in a slot like a prompt, in the
//! same passes as the generation requests' decode steps and prompt chunks, asking for the final
//! hidden states instead of logits ([`camelid_model::Want::Hidden`]); the worker pools them as
//! they come ([`Pooler`]) and sends the unit-norm vector back.
//!
//! Request fields (OpenAI's embeddings schema): `input` (a string, an array of strings, an
//! array of token ids or an array of such arrays; at most [`MAX_INPUTS`]), `model`,
//! `encoding_format` (`float` or `base64`: the little-endian f32 bytes, as OpenAI sends them),
//! `dimensions` (only the model's width: camelid does not truncate embeddings, which is only
//! sound for models trained for it), `user` (ignored by design).

use camelid_model::embed::{Pooler, Pooling};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ApiError;
use crate::fields::{Endpoint, Fields, wrong_type};
use crate::worker::Failure;

/// Inputs one request may hold (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// An input as given: text to tokenize, or token ids.
pub enum Input {
    Text(String),
    Tokens(Vec<u32>),
}

pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<Input>,
    pub base64: bool,
}

/// Parses and checks a request body; `d_model` is the width of the embeddings.
pub fn embeddings_request(body: &[u8], d_model: usize) -> Result<EmbeddingsRequest, ApiError> {
    let mut f = Fields::parse(body, Endpoint::Embeddings)?;
    let inputs = inputs(f.require("input")?)?;
    let model = f
        .string("model")?
        .ok_or_else(|| crate::fields::missing("model"))?;
    let base64 = match f.string("encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                Some("encoding_format"),
                format!("encoding_format must be 'float' or 'base64', got '{other}'."),
            ));
        }
    };
    match f.integer("dimensions")? {
        None => {}
        Some(d) if d == d_model as i64 => {}
        Some(d) => {
            return Err(ApiError::invalid(
                Some("dimensions"),
                format!(
                    "This model's embeddings have {d_model} dimensions; shortening them to {d} is not supported."
                ),
            ));
        }
    }
    f.finish()?;
    Ok(EmbeddingsRequest {
        model,
        inputs,
        base64,
    })
}

/// `input`: a string, an array of strings, an array of token ids, or an array of arrays of
/// token ids; nothing empty.
fn inputs(v: Value) -> Result<Vec<Input>, ApiError> {
    let bad = || {
        wrong_type(
            "input",
            "a string, an array of strings, an array of token ids or an array of arrays of token ids",
        )
    };
    let empty = || ApiError::invalid(Some("input"), "The input must not be empty.");
    let ids = |a: &[Value]| -> Result<Vec<u32>, ApiError> {
        if a.is_empty() {
            return Err(empty());
        }
        a.iter()
            .map(|t| {
                t.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(bad)
            })
            .collect()
    };
    let list = match v {
        Value::String(s) if s.is_empty() => return Err(empty()),
        Value::String(s) => return Ok(vec![Input::Text(s)]),
        Value::Array(a) => a,
        _ => return Err(bad()),
    };
    if list.is_empty() {
        return Err(empty());
    }
    if list.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            Some("input"),
            format!(
                "At most {MAX_INPUTS} inputs per request, got {}.",
                list.len()
            ),
        ));
    }
    if list.iter().all(Value::is_number) {
        return Ok(vec![Input::Tokens(ids(&list)?)]);
    }
    list.into_iter()
        .map(|item| match item {
            Value::String(s) if s.is_empty() => Err(empty()),
            Value::String(s) => Ok(Input::Text(s)),
            Value::Array(a) => ids(&a).map(Input::Tokens),
            _ => Err(bad()),
        })
        .collect()
}

/// The answer: one entry per input, in order.
pub fn response(vectors: &[Vec<f32>], base64: bool, model: &str, prompt_tokens: usize) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(encode_base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

/// Standard base64 with padding (RFC 4648, section 4).
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One input of an embeddings request, as the worker sees it.
pub struct EmbedJob {
    pub tokens: Vec<u32>,
    pub pooling: Pooling,
    /// Which input of its request this is (the `index` of the answer's `data`).
    pub index: usize,
    pub events: UnboundedSender<(usize, Result<Vec<f32>, Failure>)>,
}

impl EmbedJob {
    pub fn send(&self, result: Result<Vec<f32>, Failure>) {
        let _ = self.events.send((self.index, result));
    }

    /// Prompt tokens a slot's cache may save: with last-token pooling every state but the last
    /// is unused, so a cached prefix may stand in for them; mean and first-token pooling need
    /// every state (or the first), which the cache does not hold.
    pub fn reusable(&self) -> usize {
        match self.pooling {
            Pooling::Last => self.tokens.len() - 1,
            Pooling::Mean | Pooling::Cls => 0,
        }
    }
}

/// An embedding being computed in a slot.
pub struct Embedding {
    pub job: EmbedJob,
    /// Tokens in the cache; the rest is fed in chunks.
    pub fed: usize,
    pub pooler: Pooler,
}

impl Embedding {
    pub fn new(job: EmbedJob, fed: usize, d_model: usize) -> Embedding {
        let pooler = Pooler::new(job.pooling, job.tokens.len(), d_model);
        Embedding { job, fed, pooler }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 section 10's test vectors.
    #[test]
    fn base64_follows_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_base64(plain.as_bytes()), coded, "{plain:?}");
        }
    }
}
