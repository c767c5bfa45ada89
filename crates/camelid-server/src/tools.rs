//! Tool calling as OpenAI's chat API defines it: `tools`, `tool_choice`, `parallel_tool_calls`
//! in, `tool_calls` out (whole, or as stream deltas).
//!
//! How a call is written depends on the model's template:
//! - **Llama 3.1/3.2** (a Jinja template that renders `tools` and knows `<|python_tag|>` or the
//!   `ipython` role): Meta's JSON tool calling, `{"name": ..., "parameters": {...}}`, optionally
//!   after `<|python_tag|>` (llama-models, `llama3_1/prompt_format.md`, "JSON based tool
//!   calling"); tool results go back as `ipython` messages, which the template writes for
//!   `tool` messages.
//! - **Hermes/Qwen style** (a template that writes `<tool_call>`): `<tool_call>\n{"name": ...,
//!   "arguments": {...}}\n</tool_call>`, one block per call.
//! - **Any other template** (no `tools` in it, or a built-in format): camelid describes the
//!   tools in a system message and asks for `{"name": ..., "arguments": {...}}`; earlier calls
//!   and results are written into the dialog as that JSON and as `tool` turns.
//!
//! With `tool_choice` `required` or a named function the reply is constrained to a call (the
//! function's name as a constant, its `parameters` as the schema of the arguments), so it always
//! parses; with `auto` a reply that is a call is parsed into `tool_calls`, any other reply is
//! text; with `none` the tools are shown to the model but nothing is parsed.

use camelid_engine::chat::{Message, ToolCall};
use camelid_engine::constrain::GrammarSpec;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::fields::{Fields, missing, unknown, wrong_type};

/// What the request says about tools.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The `tools` entries as given, for the template.
    pub defs: Vec<Value>,
    pub functions: Vec<Function>,
    pub choice: Choice,
    /// Whether a reply may hold several calls.
    pub parallel: bool,
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// The JSON schema of the arguments.
    pub parameters: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// How calls are written, chosen by the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Llama3,
    Hermes,
    Generic,
}

impl Format {
    pub fn of(template: &camelid_engine::chat::ChatTemplate) -> Format {
        match template {
            camelid_engine::chat::ChatTemplate::Jinja(src) if template.supports_tools() => {
                if src.contains("<tool_call>") {
                    Format::Hermes
                } else if src.contains("<|python_tag|>") || src.contains("ipython") {
                    Format::Llama3
                } else {
                    Format::Generic
                }
            }
            _ => Format::Generic,
        }
    }

    /// The key of the arguments in a call's JSON.
    fn args_key(self) -> &'static str {
        match self {
            Format::Llama3 => "parameters",
            Format::Hermes | Format::Generic => "arguments",
        }
    }
}

/// Reads `tools`, `tool_choice`, `parallel_tool_calls`; `None` when no tool is given.
pub fn read(f: &mut Fields) -> Result<Option<Tools>, ApiError> {
    let list = match f.take("tools") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(wrong_type("tools", "an array of tools")),
    };
    let parallel = f.bool("parallel_tool_calls")?.unwrap_or(true);
    let choice = f.take("tool_choice");
    let mut functions = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        functions.push(function(t, i)?);
        if let Some(j) = functions[..i]
            .iter()
            .position(|g| g.name == functions[i].name)
        {
            return Err(ApiError::invalid(
                Some(&format!("tools[{i}].function.name")),
                format!(
                    "Tool names must be unique: tools[{j}] is also named '{}'.",
                    functions[i].name
                ),
            ));
        }
    }
    let choice = match choice {
        None => Choice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            _ => {
                return Err(ApiError::invalid(
                    Some("tool_choice"),
                    format!(
                        "Invalid value: '{s}'. Supported values are: 'none', 'auto', 'required', or an object naming a function."
                    ),
                ));
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (o.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(n)) => Choice::Named(n.to_string()),
                (Some("function"), None) => return Err(missing("tool_choice.function.name")),
                _ => {
                    return Err(ApiError::invalid(
                        Some("tool_choice"),
                        "A tool_choice object must be {\"type\": \"function\", \"function\": {\"name\": ...}}.",
                    ));
                }
            }
        }
        Some(_) => return Err(wrong_type("tool_choice", "a string or an object")),
    };
    if functions.is_empty() {
        return match choice {
            Choice::None | Choice::Auto => Ok(None),
            _ => Err(ApiError::invalid(
                Some("tool_choice"),
                "tool_choice asks for a tool call, but the request has no tools.",
            )),
        };
    }
    if let Choice::Named(n) = &choice
        && !functions.iter().any(|f| &f.name == n)
    {
        return Err(ApiError::invalid(
            Some("tool_choice.function.name"),
            format!("No tool named '{n}' in tools."),
        ));
    }
    Ok(Some(Tools {
        defs: list,
        functions,
        choice,
        parallel,
    }))
}

fn function(t: &Value, i: usize) -> Result<Function, ApiError> {
    let at = |k: &str| format!("tools[{i}]{k}");
    let Value::Object(o) = t else {
        return Err(wrong_type(&at(""), "an object"));
    };
    match o.get("type") {
        Some(Value::String(s)) if s == "function" => {}
        None | Some(Value::Null) => return Err(missing(&at(".type"))),
        Some(_) => {
            return Err(ApiError::invalid(
                Some(&at(".type")),
                "Only tools of type 'function' are supported.",
            ));
        }
    }
    if let Some(k) = o.keys().find(|k| *k != "type" && *k != "function") {
        return Err(unknown(&at(&format!(".{k}"))));
    }
    let Some(Value::Object(f)) = o.get("function") else {
        return Err(missing(&at(".function")));
    };
    let name = match f.get("name") {
        Some(Value::String(n)) => n.clone(),
        None | Some(Value::Null) => return Err(missing(&at(".function.name"))),
        Some(_) => return Err(wrong_type(&at(".function.name"), "a string")),
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid(
            Some(&at(".function.name")),
            "A function name must be 1 to 64 letters, digits, '_' or '-'.",
        ));
    }
    for (k, v) in f {
        let ok = match k.as_str() {
            "name" => true,
            "description" => v.is_string() || v.is_null(),
            "parameters" => v.is_object() || v.is_null(),
            "strict" => v.is_boolean() || v.is_null(),
            _ => return Err(unknown(&at(&format!(".function.{k}")))),
        };
        if !ok {
            return Err(wrong_type(&at(&format!(".function.{k}")), "another type"));
        }
    }
    // No parameters: a function that takes none, as OpenAI reads it.
    let parameters = match f.get("parameters") {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => json!({"type": "object", "properties": {}}),
    };
    Ok(Function { name, parameters })
}

impl Tools {
    /// Whether replies are read for calls.
    pub fn parses(&self) -> bool {
        self.choice != Choice::None
    }

    /// The grammar a reply must follow: a call of one of the allowed functions, for
    /// `required` and a named function; none for `auto` and `none`.
    pub fn grammar(&self, format: Format) -> Option<GrammarSpec> {
        let allowed: Vec<&Function> = match &self.choice {
            Choice::Required => self.functions.iter().collect(),
            Choice::Named(n) => self.functions.iter().filter(|f| &f.name == n).collect(),
            Choice::None | Choice::Auto => return None,
        };
        let key = format.args_key();
        let calls: Vec<Value> = allowed
            .iter()
            .map(|f| {
                let mut params = f.parameters.clone();
                close_objects(&mut params);
                json!({
                    "type": "object",
                    "properties": {"name": {"const": f.name}, key: params},
                    "required": ["name", key],
                    "additionalProperties": false,
                })
            })
            .collect();
        let call = if calls.len() == 1 {
            calls.into_iter().next().expect("one")
        } else {
            json!({"anyOf": calls})
        };
        Some(match format {
            Format::Hermes => GrammarSpec::Lark(format!(
                "start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: %json {call}\n"
            )),
            Format::Llama3 | Format::Generic => GrammarSpec::JsonSchema(call),
        })
    }

    /// The system text that describes the tools to a template with no place for them.
    fn system_text(&self) -> String {
        let mut s = String::from(
            "You can call the following functions. To call one, reply with only a JSON object \
             {\"name\": function name, \"arguments\": object of argument names and values}, \
             and nothing else.\n\nFunctions:\n",
        );
        for d in &self.defs {
            s.push_str(&d.get("function").unwrap_or(d).to_string());
            s.push('\n');
        }
        s
    }

    /// The dialog for a template with no place for tools: the tools described in the system
    /// message (added, or appended to the first one), earlier calls written as the JSON the
    /// model is asked to write.
    pub fn inline(&self, messages: &[Message]) -> Vec<Message> {
        let mut out = Vec::with_capacity(messages.len() + 1);
        let tools = self.system_text();
        match messages.first() {
            Some(m) if m.role == "system" => {
                out.push(Message::system(format!("{}\n\n{tools}", m.content)));
            }
            _ => out.push(Message::system(tools)),
        }
        let skip = usize::from(messages.first().is_some_and(|m| m.role == "system"));
        for m in &messages[skip..] {
            if m.tool_calls.is_empty() {
                out.push(Message::new(m.role.clone(), m.content.clone()));
                continue;
            }
            let calls: Vec<String> = m
                .tool_calls
                .iter()
                .map(|c| json!({"name": c.name, "arguments": c.arguments}).to_string())
                .collect();
            let text = if m.content.is_empty() {
                calls.join("\n")
            } else {
                format!("{}\n{}", m.content, calls.join("\n"))
            };
            out.push(Message::assistant(text));
        }
        out
    }

    /// The calls in a reply, if it is one (or several, separated by whitespace or `;`); `None`
    /// when it is text. Names must be among the tools; only the first call is kept when
    /// parallel calls are off.
    pub fn parse(
        &self,
        text: &str,
        format: Format,
        call_id: &mut impl FnMut() -> String,
    ) -> Option<Vec<Call>> {
        let t = text.trim();
        let t = t.strip_prefix("<|python_tag|>").unwrap_or(t).trim();
        let mut values: Vec<Value> = Vec::new();
        if format == Format::Hermes || t.starts_with("<tool_call>") {
            let mut rest = t;
            while let Some(start) = rest.find("<tool_call>") {
                let body = &rest[start + "<tool_call>".len()..];
                let end = body.find("</tool_call>").unwrap_or(body.len());
                values.push(serde_json::from_str(body[..end].trim()).ok()?);
                rest = &body[(end + "</tool_call>".len()).min(body.len())..];
            }
            if values.is_empty() {
                return None;
            }
        } else {
            // One JSON value, or several separated by `;` (Llama 3's parallel calls).
            values = match serde_json::from_str(t) {
                Ok(v) => vec![v],
                Err(_) => Tools::parse_rest(t)?,
            };
            if values.is_empty() {
                return None;
            }
        }
        // A list of calls counts as calls too.
        let flat: Vec<Value> = values
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a,
                v => vec![v],
            })
            .collect();
        let mut calls = Vec::with_capacity(flat.len());
        for v in flat {
            let name = v.get("name")?.as_str()?;
            if !self.functions.iter().any(|f| f.name == name) {
                return None;
            }
            let args = v
                .get(format.args_key())
                .or_else(|| v.get("arguments"))
                .or_else(|| v.get("parameters"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let arguments = match args {
                Value::String(s) => s,
                v => v.to_string(),
            };
            calls.push(Call {
                id: call_id(),
                name: name.to_string(),
                arguments,
            });
        }
        if calls.is_empty() {
            return None;
        }
        if !self.parallel {
            calls.truncate(1);
        }
        Some(calls)
    }

    fn parse_rest(t: &str) -> Option<Vec<Value>> {
        t.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| serde_json::from_str(s).ok())
            .collect()
    }
}

/// Objects of a schema that list their `properties` and say nothing of others get
/// `"additionalProperties": false`, as OpenAI's strict function calling requires of them: a
/// constrained call then holds the declared arguments only, and a small model cannot pad it
/// with invented keys until the token budget cuts it off unparsed.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (k, v) in o.iter_mut() {
                match (k.as_str(), v) {
                    // Maps of names to schemas.
                    (
                        "properties" | "$defs" | "definitions" | "patternProperties",
                        Value::Object(m),
                    ) => m.values_mut().for_each(close_objects),
                    // Values under these keys are data, not schemas.
                    ("const" | "enum" | "default" | "examples" | "required", _) => {}
                    (_, v) => close_objects(v),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// A call parsed from a reply: what OpenAI's `tool_calls` entries hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl Call {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }
}

/// A message's `tool_calls` (assistant) as the engine's calls; errors name the field.
pub fn message_calls(v: Value, index: usize) -> Result<Vec<ToolCall>, ApiError> {
    let at = |k: &str| format!("messages[{index}].tool_calls{k}");
    let Value::Array(list) = v else {
        return Err(wrong_type(&at(""), "an array"));
    };
    list.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| missing(&at(&format!("[{i}].id"))))?
                .to_string();
            let f = c
                .get("function")
                .ok_or_else(|| missing(&at(&format!("[{i}].function"))))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| missing(&at(&format!("[{i}].function.name"))))?
                .to_string();
            // OpenAI sends the arguments as JSON text; an object is taken as it is.
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| {
                    ApiError::invalid(
                        Some(&at(&format!("[{i}].function.arguments"))),
                        "The arguments of a tool call must be a JSON object (as a string).",
                    )
                })?,
                Some(v @ Value::Object(_)) => v.clone(),
                None | Some(Value::Null) => json!({}),
                Some(_) => {
                    return Err(wrong_type(
                        &at(&format!("[{i}].function.arguments")),
                        "a string of JSON",
                    ));
                }
            };
            Ok(ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// Per choice of a streamed reply: text held back while it may still be a call.
pub struct StreamHold {
    held: Vec<Option<String>>,
}

impl StreamHold {
    pub fn new(n: usize) -> StreamHold {
        StreamHold {
            held: vec![Some(String::new()); n],
        }
    }

    /// Takes a piece of choice `i`'s text; returns what to stream now as content. Text is held
    /// until its first visible character: a reply that starts like a call (`{`, `[`, `<`) is
    /// held to the end, any other is streamed from then on.
    pub fn push(&mut self, i: usize, text: &str) -> String {
        let Some(buf) = &mut self.held[i] else {
            return text.to_string();
        };
        buf.push_str(text);
        match buf.trim_start().chars().next() {
            None | Some('{' | '[' | '<') => String::new(),
            Some(_) => self.held[i].take().unwrap_or_default(),
        }
    }

    /// The text still held for choice `i` at its end.
    pub fn take(&mut self, i: usize) -> Option<String> {
        self.held[i].take()
    }
}

/// The stream chunks of a choice's calls, as OpenAI streams them: per call, one delta with its
/// index, id, type and name (arguments empty), then one with the arguments; then the finish
/// chunk with `tool_calls` as the reason.
pub fn call_chunks(reply: &crate::api::Reply, choice: usize, calls: &[Call]) -> Vec<Value> {
    let delta = |d: Value, finish: Value| {
        reply.chunk(json!({"index": choice, "delta": d, "logprobs": null, "finish_reason": finish}))
    };
    let mut out = Vec::with_capacity(2 * calls.len() + 1);
    for (k, c) in calls.iter().enumerate() {
        out.push(delta(
            json!({"tool_calls": [{
                "index": k, "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": ""},
            }]}),
            Value::Null,
        ));
        out.push(delta(
            json!({"tool_calls": [{"index": k, "function": {"arguments": c.arguments}}]}),
            Value::Null,
        ));
    }
    out.push(delta(json!({}), json!("tool_calls")));
    out
}

/// Ids for calls: `call_` and 24 hex digits, unique within the server's run.
pub fn new_call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "call_{:016x}{:08x}",
        t.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        n as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(choice: Choice, parallel: bool) -> Tools {
        Tools {
            defs: vec![],
            functions: vec![
                Function {
                    name: "get_weather".into(),
                    parameters: json!({"type": "object"}),
                },
                Function {
                    name: "add".into(),
                    parameters: json!({"type": "object"}),
                },
            ],
            choice,
            parallel,
        }
    }

    #[test]
    fn parses_each_format_and_refuses_text() {
        let t = tools(Choice::Auto, true);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("c{n}")
        };
        let calls = t
            .parse(
                "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1}}",
                Format::Llama3,
                &mut id,
            )
            .unwrap();
        assert_eq!(calls[0].name, "add");
        assert_eq!(calls[0].arguments, "{\"a\":1}");
        let calls = t
            .parse(
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>{\"name\": \"add\", \"arguments\": {}}</tool_call>",
                Format::Hermes,
                &mut id,
            )
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, "{\"city\":\"Oslo\"}");
        let calls = t
            .parse(
                "{\"name\": \"add\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {}}",
                Format::Llama3,
                &mut id,
            )
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert!(
            t.parse("The weather is fine.", Format::Generic, &mut id)
                .is_none()
        );
        assert!(
            t.parse(
                "{\"name\": \"nope\", \"arguments\": {}}",
                Format::Generic,
                &mut id
            )
            .is_none()
        );
        assert!(
            t.parse("{\"name\": \"add\", \"argu", Format::Generic, &mut id)
                .is_none()
        );
        let one = tools(Choice::Auto, false)
            .parse(
                "[{\"name\": \"add\"}, {\"name\": \"add\"}]",
                Format::Generic,
                &mut id,
            )
            .unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn hold_streams_text_and_keeps_calls() {
        let mut h = StreamHold::new(2);
        assert_eq!(h.push(0, "  "), "");
        assert_eq!(h.push(0, " Hi"), "   Hi");
        assert_eq!(h.push(0, " there"), " there");
        assert_eq!(h.take(0), None);
        assert_eq!(h.push(1, "{\"na"), "");
        assert_eq!(h.push(1, "me\"}"), "");
        assert_eq!(h.take(1).as_deref(), Some("{\"name\"}"));
    }

    #[test]
    fn required_grammar_names_every_function() {
        let t = tools(Choice::Required, true);
        let Some(GrammarSpec::JsonSchema(s)) = t.grammar(Format::Generic) else {
            panic!("a schema")
        };
        assert_eq!(s["anyOf"].as_array().unwrap().len(), 2);
        let t = tools(Choice::Named("add".into()), true);
        let Some(GrammarSpec::JsonSchema(s)) = t.grammar(Format::Llama3) else {
            panic!("a schema")
        };
        assert_eq!(s["properties"]["name"]["const"], "add");
        let mut nested = json!({"type": "object", "properties": {"p": {"properties": {}},
            "properties": {"type": "string"},
            "q": {"additionalProperties": true, "properties": {}}, "r": {"enum": [{"properties": 1}]}}});
        close_objects(&mut nested);
        assert_eq!(nested["additionalProperties"], false);
        assert_eq!(nested["properties"]["p"]["additionalProperties"], false);
        assert_eq!(nested["properties"]["q"]["additionalProperties"], true);
        assert_eq!(
            nested["properties"]["r"]["enum"][0],
            json!({"properties": 1})
        );
        assert_eq!(
            nested["properties"]["properties"],
            json!({"type": "string"})
        );
        assert!(s["properties"].get("parameters").is_some());
        assert!(tools(Choice::Auto, true).grammar(Format::Generic).is_none());
    }
}
