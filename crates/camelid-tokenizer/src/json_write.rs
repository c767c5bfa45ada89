//! Writing a tokenizer as a Hugging Face `tokenizer.json` + `tokenizer_config.json`, so that a
//! model folder made from a GGUF vocabulary or a `tokenizer.model`, or a vocabulary camelid
//! trained ([`crate::train`]), loads in `tokenizers` and transformers with the same encoding.
//!
//! The layouts are those of the files published for the two kinds (and of what
//! [`Tokenizer::from_tokenizer_json`] reads):
//! - Byte-level BPE, as Llama 3's `tokenizer.json`: the pre-tokenizer (Llama 3's `Split` regex,
//!   GPT-2's `ByteLevel` regex, or SmolLM2's `Digits` first), a `ByteLevel` decoder and the
//!   merges in rank order.
//! - SentencePiece BPE, as Llama 2's `tokenizer.json` (transformers' `LlamaConverter`, legacy
//!   layout): a `Prepend("▁")` + `Replace(" ", "▁")` normalizer, no pre-tokenizer, BPE with byte
//!   fallback. The merges are the rules in rank order ([`Tokenizer::merges`]: for a vocabulary
//!   merged by score, the rules the scores give, best first).
//!   Hugging Face normalizes each stretch of text between added tokens apart, so the `▁` goes in
//!   front of each stretch: llama.cpp's behaviour, which camelid follows for GGUF vocabularies.
//!   A `tokenizer.model` read by camelid puts it only in front of the whole text (SentencePiece's
//!   own behaviour); the two differ only on text holding control or user-defined pieces.
//!
//! Both list the control, unknown and user-defined tokens among the added tokens (special unless
//! user-defined), and every token in `model.vocab` but for the special tokens that end a
//! byte-level vocabulary (Llama 3's layout). BOS (and EOS, when the vocabulary asks for it) is
//! added by a `TemplateProcessing` post-processor, as in both published files.
//!
//! The bytes are fixed: keys in a fixed order, the vocabulary in id order and the merges in rank
//! order one entry per line, whether or not some other crate turns on serde_json's
//! `preserve_order`.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::{Algo, Error, ModelKind, PreTokenizer, TokenType, Tokenizer};

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Compact JSON with every object's keys sorted.
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

/// Hugging Face's `ByteLevel` pre-tokenizer, post-processor or decoder (`use_regex` true: GPT-2's
/// pattern).
fn byte_level(add_prefix_space: bool, trim_offsets: bool, use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space,
           "trim_offsets": trim_offsets, "use_regex": use_regex})
}

fn pre_tokenizer(pre: PreTokenizer) -> Value {
    match pre {
        PreTokenizer::Gpt2 => byte_level(false, true, true),
        PreTokenizer::Llama3 => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": crate::json::LLAMA3_PATTERN},
             "behavior": "Isolated", "invert": false},
            byte_level(false, true, false),
        ]}),
        PreTokenizer::SmolLm => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(false, true, true),
        ]}),
    }
}

impl Tokenizer {
    /// The tokenizer as a Hugging Face `tokenizer.json` (see the module documentation for the
    /// layout). Fails for what the format cannot say the same way: two tokens spelled alike, or a
    /// SentencePiece vocabulary with unused pieces (SentencePiece merges through them and splits
    /// them again; Hugging Face's BPE would emit them).
    pub fn to_tokenizer_json(&self) -> Result<String, Error> {
        let spm = self.kind() == ModelKind::SentencePiece;
        if spm && self.has_unused {
            return Err(Error::Unsupported(
                "a SentencePiece vocabulary with unused pieces has no tokenizer.json equivalent"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.texts.len());
        if let Some(dup) = self.texts.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(Error::Unsupported(format!(
                "two tokens are spelled {dup:?}; tokenizer.json maps spellings to ids"
            )));
        }
        let special = |id: usize| self.types[id].is_special();
        // The special tokens after the last ordinary one are added tokens only in a byte-level
        // file, as in Llama 3's: Hugging Face numbers them on from the vocabulary, in order.
        // Every other token is in the model's vocabulary too, as in Llama 2's file: Hugging Face
        // takes an added token's id from there, and gives one missing from it a new id after the
        // vocabulary (SmolLM2's specials, ids 0 to 16, would move). No merge makes them.
        let n_model = if spm {
            self.texts.len()
        } else {
            (0..self.texts.len())
                .rposition(|id| !special(id))
                .map_or(0, |last| last + 1)
        };

        let mut out = String::with_capacity(self.texts.len() * 24 + self.pairs.len() * 24);
        out.push_str("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
        out.push_str("  \"added_tokens\": [");
        let mut sep = "";
        for id in (0..self.texts.len()).filter(|&id| special(id)) {
            let added = json!({
                "id": id, "content": self.texts[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false,
                "special": self.types[id] != TokenType::UserDefined,
            });
            let _ = write!(out, "{sep}\n    {}", canonical(&added));
            sep = ",";
        }
        out.push_str("\n  ],\n");

        let (normalizer, pre, decoder, model) = match self.algo {
            Algo::Spm {
                add_space_prefix, ..
            } => {
                let mut norm = Vec::new();
                let mut dec = vec![
                    json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                    json!({"type": "ByteFallback"}),
                    json!({"type": "Fuse"}),
                ];
                if add_space_prefix {
                    norm.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
                    dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                norm.push(
                    json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}),
                );
                let unk = self.unk.map(|u| self.texts[u as usize].clone());
                (
                    json!({"type": "Sequence", "normalizers": norm}),
                    Value::Null,
                    json!({"type": "Sequence", "decoders": dec}),
                    json!({"unk_token": unk, "fuse_unk": true, "byte_fallback": true,
                           "ignore_merges": false}),
                )
            }
            Algo::Bpe { pre, ignore_merges } => (
                Value::Null,
                pre_tokenizer(pre),
                byte_level(true, true, true),
                json!({"unk_token": null, "fuse_unk": false, "byte_fallback": false,
                       "ignore_merges": ignore_merges}),
            ),
        };
        let pipeline = [
            ("normalizer", normalizer),
            ("pre_tokenizer", pre),
            ("post_processor", self.post_processor()),
            ("decoder", decoder),
        ];
        for (name, v) in pipeline {
            let _ = writeln!(out, "  \"{name}\": {},", canonical(&v));
        }

        // The model's fixed fields, then its vocabulary and merges one entry per line, in id and
        // rank order.
        let mut model = model;
        if let Value::Object(m) = &mut model {
            m.extend([
                ("type".to_string(), json!("BPE")),
                ("dropout".to_string(), Value::Null),
                ("continuing_subword_prefix".to_string(), Value::Null),
                ("end_of_word_suffix".to_string(), Value::Null),
            ]);
        }
        let head = canonical(&model);
        let _ = write!(
            out,
            "  \"model\": {},\n    \"vocab\": {{",
            &head[..head.len() - 1]
        );
        let mut sep = "";
        for (id, text) in self.texts[..n_model].iter().enumerate() {
            let _ = write!(out, "{sep}\n      {}: {id}", quoted(text));
            sep = ",";
        }
        // Pairs, the form `tokenizers` writes since 0.20.
        out.push_str("\n    },\n    \"merges\": [");
        let mut sep = "";
        for (l, r, _) in self.merges() {
            let (l, r) = (&self.texts[l as usize], &self.texts[r as usize]);
            let _ = write!(out, "{sep}\n      [{}, {}]", quoted(l), quoted(r));
            sep = ",";
        }
        out.push_str("\n    ]\n  }\n}\n");
        Ok(out)
    }

    /// BOS in front and EOS behind, as far as the vocabulary asks for them; for byte-level
    /// vocabularies after a `ByteLevel` step, as in Llama 3's file (it only trims offsets).
    fn post_processor(&self) -> Value {
        let template = self.template();
        match self.algo {
            Algo::Spm { .. } => template,
            Algo::Bpe { .. } if template.is_null() => byte_level(true, false, true),
            Algo::Bpe { .. } => json!({"type": "Sequence", "processors": [
                byte_level(true, false, true),
                template,
            ]}),
        }
    }

    /// The `TemplateProcessing` that adds BOS and EOS; `null` for neither.
    fn template(&self) -> Value {
        let bos = self.bos.filter(|_| self.add_bos);
        let eos = self.eos.filter(|_| self.add_eos);
        if bos.is_none() && eos.is_none() {
            return Value::Null;
        }
        let special = |id: u32, type_id: u32| json!({"SpecialToken": {"id": self.texts[id as usize], "type_id": type_id}});
        let seq = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
        let mut single = Vec::new();
        let mut pair = Vec::new();
        for (name, type_id) in [("A", 0), ("B", 1)] {
            let part: Vec<Value> = bos
                .map(|b| special(b, type_id))
                .into_iter()
                .chain([seq(name, type_id)])
                .chain(eos.map(|e| special(e, type_id)))
                .collect();
            if type_id == 0 {
                single = part.clone();
            }
            pair.extend(part);
        }
        let mut tokens = Map::new();
        for id in bos.into_iter().chain(eos) {
            let text = &self.texts[id as usize];
            tokens.insert(
                text.clone(),
                json!({"id": text, "ids": [id], "tokens": [text]}),
            );
        }
        json!({"type": "TemplateProcessing", "single": single, "pair": pair,
               "special_tokens": tokens})
    }

    /// A `tokenizer_config.json` for the `tokenizer.json` above: transformers' generic fast
    /// tokenizer, the special tokens by name, whether BOS/EOS are added (which camelid reads back
    /// too), and the chat template.
    pub fn to_tokenizer_config_json(&self) -> String {
        let name = |id: Option<u32>| id.map(|i| self.texts[i as usize].clone());
        let mut j = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": name(self.bos),
            "eos_token": name(self.eos),
            "unk_token": name(self.unk),
            "pad_token": name(self.pad),
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
            "clean_up_tokenization_spaces": false,
        });
        if let (Value::Object(m), Some(t)) = (&mut j, &self.chat_template) {
            m.insert("chat_template".into(), json!(t));
        }
        serde_json::to_string_pretty(&j).expect("a JSON value serializes") + "\n"
    }
}
