//! The Hugging Face `config.json` of `LlamaForCausalLM` and compatible checkpoints.
//!
//! Field names follow transformers' `LlamaConfig` (`models/llama/configuration_llama.py`).
//! Every field is optional here: which ones are required, and what defaults apply, is the model
//! crate's decision. Unknown fields are ignored.

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// A token id, or several (Llama 3.1 lists three end-of-sequence ids).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdOrIds {
    One(u32),
    Many(Vec<u32>),
}

impl IdOrIds {
    /// All ids, in order.
    pub fn ids(&self) -> Vec<u32> {
        match self {
            IdOrIds::One(id) => vec![*id],
            IdOrIds::Many(ids) => ids.clone(),
        }
    }
}

/// `config.json`. Field meanings: transformers `LlamaConfig`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct HfConfig {
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    /// Absent in LLaMA 1 / Llama 2 7B-13B configs, meaning "same as `num_attention_heads`".
    pub num_key_value_heads: Option<usize>,
    /// Absent in most configs, meaning `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<HfRopeScaling>,
    /// transformers 5 keeps `rope_theta` and the scaling fields here instead.
    pub rope_parameters: Option<HfRopeScaling>,
    pub max_position_embeddings: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub bos_token_id: Option<IdOrIds>,
    pub eos_token_id: Option<IdOrIds>,
    pub pad_token_id: Option<IdOrIds>,
    /// The dtype the weights were saved in (`"bfloat16"`, ...). Newer transformers write
    /// [`HfConfig::dtype`] instead.
    pub torch_dtype: Option<String>,
    pub dtype: Option<String>,
    pub hidden_act: Option<String>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub pretraining_tp: Option<usize>,
    pub attention_dropout: Option<f64>,
    pub initializer_range: Option<f64>,
    pub use_cache: Option<bool>,
    pub transformers_version: Option<String>,
}

impl HfConfig {
    /// `dtype`, or the older `torch_dtype`.
    pub fn weights_dtype(&self) -> Option<&str> {
        self.dtype.as_deref().or(self.torch_dtype.as_deref())
    }
}

/// `rope_scaling`: for Llama 3.1 and later, `{"rope_type": "llama3", "factor": 8.0,
/// "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`.
/// Older configs name the type `type`; some have both, which is fine when they agree.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(try_from = "RawRopeScaling")]
pub struct HfRopeScaling {
    pub rope_type: Option<String>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
    /// Only in transformers 5's `rope_parameters`.
    pub rope_theta: Option<f64>,
}

#[derive(Deserialize)]
struct RawRopeScaling {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
    rope_theta: Option<f64>,
}

impl TryFrom<RawRopeScaling> for HfRopeScaling {
    type Error = String;

    fn try_from(raw: RawRopeScaling) -> Result<Self, String> {
        let rope_type = match (raw.rope_type, raw.type_) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!("\"rope_type\" is {a:?} but \"type\" is {b:?}"));
            }
            (a, b) => a.or(b),
        };
        Ok(HfRopeScaling {
            rope_type,
            factor: raw.factor,
            low_freq_factor: raw.low_freq_factor,
            high_freq_factor: raw.high_freq_factor,
            original_max_position_embeddings: raw.original_max_position_embeddings,
            rope_theta: raw.rope_theta,
        })
    }
}

/// Reads and parses `path` (a `config.json`, or a folder holding one).
pub fn load(path: &Path) -> Result<HfConfig, Error> {
    let path = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path)
}

/// Parses the text of a `config.json`; `path` is only used in errors.
pub fn parse(text: &str, path: &Path) -> Result<HfConfig, Error> {
    parse_json(text, path)
}

/// `adapter_config.json` of a PEFT LoRA adapter. Field meanings: PEFT `LoraConfig`
/// (`peft/tuners/lora/config.py`); only what decides the arithmetic of a merge is read.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct AdapterConfig {
    /// `"LORA"` for a LoRA adapter.
    pub peft_type: Option<String>,
    pub r: Option<usize>,
    pub lora_alpha: Option<f64>,
    /// Scale by `lora_alpha / sqrt(r)` instead of `lora_alpha / r`.
    pub use_rslora: Option<bool>,
    /// DoRA (weight-decomposed LoRA), which a sum of `B·A` does not express.
    pub use_dora: Option<bool>,
    /// Weights stored `[in, out]` (GPT-2's Conv1D), never so in Llama.
    pub fan_in_fan_out: Option<bool>,
    /// Per-module ranks and alphas that override `r` and `lora_alpha`.
    pub rank_pattern: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    pub alpha_pattern: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Reads and parses an `adapter_config.json`.
pub fn load_adapter_config(path: &Path) -> Result<AdapterConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(&text, path)
}

/// `generation_config.json`: the sampling the model's authors recommend, as transformers'
/// `GenerationConfig` names it. Only the fields camelid's sampler has are read; the rest
/// (`do_sample`, token ids, beam settings, ...) are ignored, as llama.cpp's converter ignores
/// them when it turns this file into GGUF `general.sampling.*` keys (gguf-py `metadata.py`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GenerationConfig {
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
}

/// Reads `generation_config.json` from a model folder; `Ok(None)` when the folder has none.
pub fn load_generation_config(dir: &Path) -> Result<Option<GenerationConfig>, Error> {
    let path = dir.join("generation_config.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_json(&text, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path, source }),
    }
}

/// Parses a JSON config file into `T`. serde_json's message gives the line and column but not
/// the field, so on a type error the top-level field that fails on its own is named.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, Error> {
    let fail = |field: String, msg: String| Error::Config {
        path: path.to_path_buf(),
        field,
        msg,
    };
    match serde_json::from_str::<T>(text) {
        Ok(config) => Ok(config),
        Err(e) if !e.is_data() => Err(fail(String::new(), format!("not valid JSON: {e}"))),
        Err(e) => {
            let field = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .ok()
                .and_then(|map| {
                    map.into_iter()
                        .find(|(k, v)| {
                            let one = serde_json::Map::from_iter([(k.clone(), v.clone())]);
                            serde_json::from_value::<T>(one.into()).is_err()
                        })
                        .map(|(k, _)| k)
                })
                .unwrap_or_default();
            Err(fail(field, e.to_string()))
        }
    }
}
