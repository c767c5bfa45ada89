//! Writing a tokenizer as a Hugging Face `tokenizer.json` + `tokenizer_config.json`, so that a
//! model folder made from a GGUF vocabulary or a `tokenizer.model` loads in `tokenizers` and
//! transformers with the same encoding.
//!
//! The layouts are those of the files published for the two kinds (and of what
//! [`Tokenizer::from_tokenizer_json`] reads):
//! - Byte-level BPE, as Llama 3's `tokenizer.json`: the pre-tokenizer (Llama 3's `Split` regex,
//!   GPT-2's `ByteLevel` regex, or SmolLM2's `Digits` first), a `ByteLevel` decoder and the
//!   merges in rank order.
//! - SentencePiece BPE, as Llama 2's `tokenizer.json` (transformers' `LlamaConverter`, legacy
//!   layout): a `Prepend("▁")` + `Replace(" ", "▁")` normalizer, no pre-tokenizer, BPE with byte
//!   fallback. The merges are the rules the scores give, best first ([`Tokenizer::merges`]).
//!   Hugging Face normalizes each stretch of text between added tokens apart, so the `▁` goes in
//!   front of each stretch: llama.cpp's behaviour, which camelid follows for GGUF vocabularies.
//!   A `tokenizer.model` read by camelid puts it only in front of the whole text (SentencePiece's
//!   own behaviour); the two differ only on text holding control or user-defined pieces.
//!
//! Both put every token in `model.vocab` and the control, unknown and user-defined ones also
//! among the added tokens (special unless user-defined). BOS (and EOS, when the vocabulary asks
//! for it) is added by a `TemplateProcessing` post-processor, as in both published files.

use serde_json::{Map, Value, json};

use crate::{Algo, Error, ModelKind, PreTokenizer, TokenType, Tokenizer};

/// The byte-level pre-tokenizer as Hugging Face writes it (`use_regex` true: GPT-2's pattern).
fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
           "use_regex": use_regex})
}

fn pre_tokenizer(pre: PreTokenizer) -> Value {
    match pre {
        PreTokenizer::Gpt2 => byte_level(true),
        PreTokenizer::Llama3 => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": crate::json::LLAMA3_PATTERN},
             "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]}),
        PreTokenizer::SmolLm => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
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
        let mut vocab = Map::with_capacity(self.texts.len());
        let mut added = Vec::new();
        for (id, text) in self.texts.iter().enumerate() {
            let ty = self.types[id];
            let special = ty.is_special();
            if special {
                added.push(json!({
                    "id": id, "content": text, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false,
                    "special": ty != TokenType::UserDefined,
                }));
            }
            // Every token in the model's vocabulary too, as in Llama 2's file: Hugging Face takes
            // an added token's id from there, and gives one missing from it a new id after the
            // vocabulary (SmolLM2's specials, ids 0 to 16, would move). No merge makes them.
            vocab.insert(text.clone(), json!(id));
        }

        let rules = self.merges();
        let spelled = |id: u32| self.texts[id as usize].as_str();
        // Pairs as "left right" strings (readable by every `tokenizers` version) unless a
        // spelling holds a space, which only the newer pair form can carry.
        let pair_form = rules
            .iter()
            .any(|&(l, r, _)| spelled(l).contains(' ') || spelled(r).contains(' '));
        let merges: Vec<Value> = rules
            .iter()
            .map(|&(l, r, _)| {
                if pair_form {
                    json!([spelled(l), spelled(r)])
                } else {
                    json!(format!("{} {}", spelled(l), spelled(r)))
                }
            })
            .collect();

        let (normalizer, pre, decoder, model_extra) = match self.algo {
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
                json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                       "use_regex": true}),
                json!({"unk_token": null, "fuse_unk": false, "byte_fallback": false,
                       "ignore_merges": ignore_merges}),
            ),
        };
        let mut model = json!({
            "type": "BPE", "dropout": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "vocab": vocab, "merges": merges,
        });
        if let (Value::Object(m), Value::Object(extra)) = (&mut model, model_extra) {
            m.extend(extra);
        }
        let j = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre,
            "post_processor": self.post_processor(),
            "decoder": decoder,
            "model": model,
        });
        Ok(serde_json::to_string_pretty(&j).expect("a JSON value serializes") + "\n")
    }

    /// BOS in front and EOS behind, as far as the vocabulary asks for them; `null` for neither.
    fn post_processor(&self) -> Value {
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
