//! Writing a trained vocabulary as `tokenizer.json`, in the layout of the files Meta's models
//! ship on the Hugging Face hub (huggingface/tokenizers `tokenizer/serialization.rs`): Llama 3's
//! for byte-level vocabularies (Split on the pattern, then ByteLevel without its own regex;
//! `ignore_merges`), Llama 2's for SentencePiece-style ones (Prepend `▁` and Replace spaces;
//! `byte_fallback`). The vocabulary is written in id order, one entry per line.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Trained;
use crate::ModelKind;
use crate::json::LLAMA3_PATTERN;

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Compact JSON with every object's keys sorted: the same bytes whether or not some other crate
/// turns on serde_json's `preserve_order`.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", quoted(k), canonical(&m[k.as_str()])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        v => v.to_string(),
    }
}

/// TemplateProcessing that puts `bos` in front of each sequence, as Meta's files do.
fn bos_template(bos: &str, bos_id: u32) -> Value {
    let special = |id: &str| json!({"SpecialToken": {"id": id, "type_id": 0}});
    let seq = |id: &str, t: u32| json!({"Sequence": {"id": id, "type_id": t}});
    json!({
        "type": "TemplateProcessing",
        "single": [special(bos), seq("A", 0)],
        "pair": [special(bos), seq("A", 0), json!({"SpecialToken": {"id": bos, "type_id": 1}}),
                 seq("B", 1)],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    })
}

/// The parts of the file around the model: normalizer, pre-tokenizer, post-processor, decoder.
fn pipeline(t: &Trained) -> [(&'static str, Value); 4] {
    match t.kind {
        ModelKind::ByteLevel => {
            let bos = "<|begin_of_text|>";
            let bos_id = t.vocab.iter().position(|v| v == bos).unwrap_or(0) as u32;
            let byte_level = |prefix: bool, trim: bool, regex: bool| {
                json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim,
                       "use_regex": regex})
            };
            [
                ("normalizer", Value::Null),
                (
                    "pre_tokenizer",
                    json!({"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN},
                         "behavior": "Isolated", "invert": false},
                        byte_level(false, true, false),
                    ]}),
                ),
                (
                    "post_processor",
                    json!({"type": "Sequence", "processors": [
                        byte_level(true, false, true),
                        bos_template(bos, bos_id),
                    ]}),
                ),
                ("decoder", byte_level(true, true, true)),
            ]
        }
        ModelKind::SentencePiece => [
            (
                "normalizer",
                json!({"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "\u{2581}"},
                    {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
                ]}),
            ),
            ("pre_tokenizer", Value::Null),
            ("post_processor", bos_template("<s>", 1)),
            (
                "decoder",
                json!({"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                    {"type": "ByteFallback"},
                    {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
                ]}),
            ),
        ],
    }
}

pub(super) fn tokenizer_json(t: &Trained) -> String {
    let spm = t.kind == ModelKind::SentencePiece;
    let mut out = String::with_capacity(t.vocab.len() * 24 + t.merges.len() * 24);
    out.push_str("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    out.push_str("  \"added_tokens\": [");
    for (k, &id) in t.specials.iter().enumerate() {
        let added = json!({
            "id": id, "content": t.vocab[id as usize], "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true,
        });
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\n    {}", canonical(&added));
    }
    out.push_str("\n  ],\n");
    for (name, v) in pipeline(t) {
        let _ = writeln!(out, "  \"{name}\": {},", canonical(&v));
    }
    let model = json!({
        "type": "BPE", "dropout": null,
        "unk_token": if spm { json!("<unk>") } else { Value::Null },
        "continuing_subword_prefix": null, "end_of_word_suffix": null,
        "fuse_unk": spm, "byte_fallback": spm, "ignore_merges": !spm,
    });
    // The model's fixed fields, then its vocabulary and merges one entry per line. The special
    // tokens of a byte-level vocabulary are added tokens only, as in Llama 3's file.
    let head = canonical(&model);
    let _ = write!(
        out,
        "  \"model\": {},\n    \"vocab\": {{",
        &head[..head.len() - 1]
    );
    let in_vocab = |id: usize| spm || !t.specials.contains(&(id as u32));
    let mut first = true;
    for (id, v) in t.vocab.iter().enumerate().filter(|&(id, _)| in_vocab(id)) {
        let sep = if first { "" } else { "," };
        first = false;
        let _ = write!(out, "{sep}\n      {}: {id}", quoted(v));
    }
    out.push_str("\n    },\n    \"merges\": [");
    for (k, &(a, b)) in t.merges.iter().enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let (l, r) = (&t.vocab[a as usize], &t.vocab[b as usize]);
        let _ = write!(out, "{sep}\n      [{}, {}]", quoted(l), quoted(r));
    }
    out.push_str("\n    ]\n  }\n}\n");
    out
}

pub(super) fn tokenizer_config_json(t: &Trained) -> String {
    let (bos, eos, unk) = match t.kind {
        ModelKind::ByteLevel => ("<|begin_of_text|>", "<|end_of_text|>", None),
        ModelKind::SentencePiece => ("<s>", "</s>", Some("<unk>")),
    };
    let mut v = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "add_bos_token": true,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(u) = unk {
        v["unk_token"] = json!(u);
    }
    let mut s = canonical(&v);
    s.push('\n');
    s
}
