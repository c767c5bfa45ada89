//! Structured outputs: the request fields that constrain a reply to a grammar, read and
//! compiled.
//!
//! - OpenAI's `response_format` (chat): `{"type": "text"}` (no constraint),
//!   `{"type": "json_object"}` (any JSON object), `{"type": "json_schema", "json_schema":
//!   {"name", "schema", "strict", "description"}}` (JSON valid under `schema`). The reply is
//!   held to the schema whether `strict` is true or false: camelid has no looser mode, and a
//!   reply that validates is what both ask for.
//! - llama.cpp's `json_schema` (a schema object) and `grammar` (GBNF text), on both endpoints.
//!
//! At most one of them per request; a grammar the engine cannot use is a 400 naming the field.

use camelid_engine::constrain::{ConstrainError, Grammar, GrammarSpec, Vocabulary};
use serde_json::Value;

use crate::error::ApiError;
use crate::fields::{Endpoint, Fields, unknown, wrong_type};

/// A grammar asked for, with the field that asked (named in errors).
#[derive(Clone, Debug)]
pub struct Constrained {
    pub param: String,
    pub spec: GrammarSpec,
}

/// Reads `response_format` (chat), `json_schema` and `grammar`.
pub fn read(f: &mut Fields, endpoint: Endpoint) -> Result<Option<Constrained>, ApiError> {
    let mut found: Vec<Constrained> = Vec::new();
    if endpoint == Endpoint::Chat
        && let Some(v) = f.take("response_format")
    {
        found.extend(response_format(v)?);
    }
    if let Some(v) = f.take("json_schema") {
        if !v.is_object() {
            return Err(wrong_type("json_schema", "a JSON schema object"));
        }
        found.push(Constrained {
            param: "json_schema".into(),
            spec: GrammarSpec::JsonSchema(v),
        });
    }
    match f.take("grammar") {
        None => {}
        Some(Value::String(g)) if g.trim().is_empty() => {}
        Some(Value::String(g)) => found.push(Constrained {
            param: "grammar".into(),
            spec: GrammarSpec::Gbnf(g),
        }),
        Some(_) => return Err(wrong_type("grammar", "a string (GBNF)")),
    }
    if found.len() > 1 {
        return Err(ApiError::invalid(
            Some(&found[1].param),
            format!(
                "Only one of response_format, json_schema and grammar may constrain a reply; {} and {} both do.",
                found[0].param, found[1].param
            ),
        ));
    }
    Ok(found.pop())
}

fn response_format(v: Value) -> Result<Option<Constrained>, ApiError> {
    let Value::Object(mut o) = v else {
        return Err(wrong_type("response_format", "an object"));
    };
    let kind = match o.remove("type") {
        Some(Value::String(t)) => t,
        None | Some(Value::Null) => return Err(crate::fields::missing("response_format.type")),
        Some(_) => return Err(wrong_type("response_format.type", "a string")),
    };
    let c = match kind.as_str() {
        "text" => None,
        "json_object" => Some(Constrained {
            param: "response_format".into(),
            spec: GrammarSpec::JsonObject,
        }),
        "json_schema" => {
            let js = match o.remove("json_schema") {
                Some(Value::Object(js)) => js,
                None | Some(Value::Null) => {
                    return Err(crate::fields::missing("response_format.json_schema"));
                }
                Some(_) => return Err(wrong_type("response_format.json_schema", "an object")),
            };
            let mut schema = None;
            let mut named = false;
            for (k, v) in js {
                let name = format!("response_format.json_schema.{k}");
                match (k.as_str(), v) {
                    (_, Value::Null) => {}
                    ("name", Value::String(n)) => {
                        if n.is_empty()
                            || n.len() > 64
                            || !n
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        {
                            return Err(ApiError::invalid(
                                Some(&name),
                                "The schema's name must be 1 to 64 letters, digits, '_' or '-'.",
                            ));
                        }
                        named = true;
                    }
                    ("schema", s @ Value::Object(_)) => schema = Some(s),
                    ("strict", Value::Bool(_)) | ("description", Value::String(_)) => {}
                    ("name" | "description", _) => return Err(wrong_type(&name, "a string")),
                    ("schema", _) => return Err(wrong_type(&name, "a JSON schema object")),
                    ("strict", _) => return Err(wrong_type(&name, "a boolean")),
                    _ => return Err(unknown(&name)),
                }
            }
            if !named {
                return Err(crate::fields::missing("response_format.json_schema.name"));
            }
            Some(Constrained {
                param: "response_format.json_schema.schema".into(),
                // No schema: any JSON value, as OpenAI reads an absent one.
                spec: GrammarSpec::JsonSchema(schema.unwrap_or_else(|| serde_json::json!({}))),
            })
        }
        other => {
            return Err(ApiError::invalid(
                Some("response_format.type"),
                format!(
                    "Invalid value: '{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."
                ),
            ));
        }
    };
    if let Some((k, _)) = o.iter().find(|(_, v)| !v.is_null()) {
        return Err(unknown(&format!("response_format.{k}")));
    }
    Ok(c)
}

/// Compiles a grammar for the vocabulary; what the engine refuses is a 400 naming the field.
pub fn compile(vocab: Option<&Vocabulary>, c: &Constrained) -> Result<Grammar, ApiError> {
    let Some(vocab) = vocab else {
        return Err(ApiError::invalid(
            Some(&c.param),
            "This model's vocabulary has no end-of-generation token, so no constrained reply could end.",
        ));
    };
    vocab.compile(&c.spec).map_err(|e| {
        let what = match &e {
            ConstrainError::Gbnf(_) => "Invalid GBNF grammar",
            _ => match c.spec {
                GrammarSpec::Gbnf(_) | GrammarSpec::Lark(_) => "Invalid grammar",
                _ => "Invalid or unsupported JSON schema",
            },
        };
        ApiError::invalid(
            Some(&c.param),
            format!("{what}: {}", first_line(&e.to_string())),
        )
    })
}

/// The engine's messages can carry a dump of its state after the first line; the client needs
/// the first.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}
