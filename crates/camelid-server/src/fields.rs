//! Reading a request body field by field, so that every field is either honoured or refused.
//!
//! A body is a JSON object; each field the server implements is taken out of it by name, with a
//! type check whose error names the field. What is left at the end is either a field of
//! OpenAI's (or llama.cpp's) schema that camelid does not implement, refused unless its value
//! asks for nothing ([`trivially_satisfied`]), one it accepts and ignores by design
//! ([`ignored`]), or an unknown field, refused as OpenAI refuses it. `null` is the same as
//! absent, as OpenAI's own server treats it (clients send `"tools": null` and the like).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Which endpoint a body is for: the two schemas differ in a few fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

/// Fields accepted and ignored by design: identifiers and tags for OpenAI's dashboards, abuse
/// tracking and cache routing, none of which changes what a model generates. (camelid's
/// prefix cache matches prompts by their tokens, so it needs no `prompt_cache_key`.) The
/// completions and embeddings schemas have only `user`.
pub fn ignored(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Chat => &["user", "metadata", "safety_identifier", "prompt_cache_key"],
        Endpoint::Completions | Endpoint::Embeddings => &["user"],
    }
}

/// A request body being taken apart.
pub struct Fields {
    map: Map<String, Value>,
    endpoint: Endpoint,
}

impl Fields {
    /// Parses a body: malformed JSON, or JSON that is not an object, is a 400.
    pub fn parse(body: &[u8], endpoint: Endpoint) -> Result<Fields, ApiError> {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(Fields { map, endpoint }),
            _ => Err(ApiError::bad_json()),
        }
    }

    /// Removes a field; `null` reads as absent.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    pub fn require(&mut self, name: &str) -> Result<Value, ApiError> {
        self.take(name).ok_or_else(|| missing(name))
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(name, "a string")),
        }
    }

    pub fn bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(wrong_type(name, "a boolean")),
        }
    }

    pub fn number(&mut self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "a number")),
        }
    }

    /// An integer (JSON `3`, also `3.0` as some clients serialise whole numbers).
    pub fn integer(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => as_integer(&v)
                .map(Some)
                .ok_or_else(|| wrong_type(name, "an integer")),
        }
    }

    /// Checks what is left: fields ignored by design pass (with their type checked), fields of
    /// the schema that camelid does not implement pass only when they ask for nothing, and
    /// anything else is an unknown field. The first offending field, by name, is reported.
    pub fn finish(mut self) -> Result<(), ApiError> {
        for name in ignored(self.endpoint) {
            let ok = match self.take(name) {
                None => true,
                Some(Value::Object(_)) => *name == "metadata",
                Some(Value::String(_)) => *name != "metadata",
                Some(_) => false,
            };
            if !ok {
                let want = if *name == "metadata" {
                    "an object"
                } else {
                    "a string"
                };
                return Err(wrong_type(name, want));
            }
        }
        let endpoint = self.endpoint;
        for (name, v) in std::mem::take(&mut self.map) {
            if v.is_null() {
                if known(endpoint, &name) {
                    continue;
                }
                return Err(unknown(&name));
            }
            match trivially_satisfied(endpoint, &name, &v) {
                Some(true) => {}
                Some(false) => return Err(unsupported(&name)),
                None => return Err(unknown(&name)),
            }
        }
        Ok(())
    }
}

pub fn as_integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Fields of the schema that camelid knows but does not implement (constrained decoding and
/// tool calling are on their way; audio, web search and the like are not for a local model).
/// `Some(true)` when the value asks for nothing beyond plain text generation, `Some(false)`
/// when it asks for something camelid cannot do, `None` when the field is not in the schema.
pub fn trivially_satisfied(endpoint: Endpoint, name: &str, v: &Value) -> Option<bool> {
    let empty_list = || v.as_array().is_some_and(Vec::is_empty);
    let is = |s: &str| v.as_str() == Some(s);
    if endpoint == Endpoint::Embeddings {
        // Every field of the embeddings schema is implemented or refused where it is read.
        return None;
    }
    let chat = endpoint == Endpoint::Chat;
    Some(match name {
        // Tool calling: no tools means no call can be asked for; `auto` and `none` then agree.
        "tools" | "functions" if chat => empty_list(),
        "tool_choice" | "function_call" if chat => is("auto") || is("none"),
        // Only says whether several calls may come at once; without tools none can.
        "parallel_tool_calls" if chat => v.is_boolean(),
        "response_format" if chat => v
            .as_object()
            .is_some_and(|o| o.len() == 1 && o.get("type").and_then(Value::as_str) == Some("text")),
        "modalities" if chat => v.as_array().is_some_and(|a| a.iter().all(|m| m == "text")),
        "audio" | "prediction" | "web_search_options" | "reasoning_effort" | "verbosity"
            if chat =>
        {
            false
        }
        // Nothing is stored, and there is one tier of service.
        "store" if chat => v == &Value::Bool(false),
        "service_tier" if chat => is("auto") || is("default"),
        // camelid's prefix cache lives in memory for as long as the server runs.
        "prompt_cache_retention" if chat => is("in_memory"),
        "echo" if !chat => v == &Value::Bool(false),
        "suffix" if !chat => is(""),
        // llama.cpp's constrained decoding fields, on both endpoints.
        "grammar" => is(""),
        "json_schema" => false,
        _ => return None,
    })
}

/// Whether `name` is a field of the endpoint's schema at all (implemented or not).
fn known(endpoint: Endpoint, name: &str) -> bool {
    ignored(endpoint).contains(&name) || trivially_satisfied(endpoint, name, &Value::Null).is_some()
}

pub fn missing(name: &str) -> ApiError {
    ApiError::invalid(Some(name), format!("Missing required parameter: '{name}'."))
}

pub fn wrong_type(name: &str, want: &str) -> ApiError {
    ApiError::invalid(
        Some(name),
        format!("Invalid type for '{name}': expected {want}."),
    )
    .with_code("invalid_type")
}

pub fn unknown(name: &str) -> ApiError {
    ApiError::invalid(
        Some(name),
        format!("Unrecognized request argument supplied: {name}"),
    )
    .with_code("unknown_parameter")
}

pub fn unsupported(name: &str) -> ApiError {
    ApiError::invalid(
        Some(name),
        format!(
            "'{name}' is not supported by this server (camelid does not implement it yet); leave it out or null."
        ),
    )
    .with_code("unsupported_parameter")
}
