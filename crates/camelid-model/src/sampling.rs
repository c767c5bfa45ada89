//! The sampling settings a checkpoint recommends.
//!
//! A GGUF may carry them as `general.sampling.*` keys (the convention of llama.cpp, whose
//! converter writes them from `generation_config.json`: gguf-py `constants.py` and
//! `metadata.py`); a Hugging Face folder carries `generation_config.json` itself, read here with
//! the same mapping, so a folder and its GGUF conversion recommend the same thing. Front ends
//! use them as their defaults for the options the user did not set. Keys for samplers camelid
//! does not have (`sequence`, `xtc_*`, `mirostat*`) are ignored.

use camelid_formats::gguf::keys::sampling as keys;
use camelid_formats::gguf::{Gguf, Value};

use crate::ModelError;
use crate::weights::Checkpoint;

/// Recommended values; `None` where the checkpoint says nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingHints {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<usize>,
    /// Where the values come from, for messages: `general.sampling.* of FILE` or the path of
    /// `generation_config.json`.
    pub source: String,
}

impl SamplingHints {
    /// No value is recommended.
    pub fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_k.is_none()
            && self.top_p.is_none()
            && self.min_p.is_none()
            && self.repeat_penalty.is_none()
            && self.repeat_last_n.is_none()
    }

    /// These values where they are set, else `fallback`'s (whose source is kept): the options a
    /// user set over the model's recommendations.
    pub fn or(&self, fallback: &SamplingHints) -> SamplingHints {
        SamplingHints {
            temperature: self.temperature.or(fallback.temperature),
            top_k: self.top_k.or(fallback.top_k),
            top_p: self.top_p.or(fallback.top_p),
            min_p: self.min_p.or(fallback.min_p),
            repeat_penalty: self.repeat_penalty.or(fallback.repeat_penalty),
            repeat_last_n: self.repeat_last_n.or(fallback.repeat_last_n),
            source: fallback.source.clone(),
        }
    }

    /// These values where `given` leaves them unset: the recommendations in effect when a user
    /// set `given`.
    pub fn unset_in(&self, given: &SamplingHints) -> SamplingHints {
        SamplingHints {
            temperature: self.temperature.filter(|_| given.temperature.is_none()),
            top_k: self.top_k.filter(|_| given.top_k.is_none()),
            top_p: self.top_p.filter(|_| given.top_p.is_none()),
            min_p: self.min_p.filter(|_| given.min_p.is_none()),
            repeat_penalty: self
                .repeat_penalty
                .filter(|_| given.repeat_penalty.is_none()),
            repeat_last_n: self.repeat_last_n.filter(|_| given.repeat_last_n.is_none()),
            source: self.source.clone(),
        }
    }

    /// The values that are set, as `temp 0.6, top-p 0.9` (the CLI's option names).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut put = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{name} {v}"));
            }
        };
        put("temp", self.temperature.map(|v| v.to_string()));
        put("top-k", self.top_k.map(|v| v.to_string()));
        put("top-p", self.top_p.map(|v| v.to_string()));
        put("min-p", self.min_p.map(|v| v.to_string()));
        put("repeat-penalty", self.repeat_penalty.map(|v| v.to_string()));
        put(
            "repeat-last-n",
            self.repeat_last_n.map(|v| match v {
                usize::MAX => "all".to_string(),
                v => v.to_string(),
            }),
        );
        parts.join(", ")
    }
}

/// Reads the recommendations of an opened checkpoint. A value of the wrong type (a string
/// where a number belongs) is an error naming the key and the file; whether a number is in
/// range is the sampler's check, made when the values are used. A negative top-k means off
/// (llama.cpp's and vLLM's reading) and a penalty window of -1 the whole context (llama.cpp's).
pub fn sampling_hints(ckpt: &Checkpoint) -> Result<SamplingHints, ModelError> {
    match ckpt.gguf() {
        Some(g) => from_gguf(g),
        None => from_hf_folder(&ckpt.path),
    }
}

fn from_gguf(g: &Gguf) -> Result<SamplingHints, ModelError> {
    let path = g.path();
    let bad = |key: &str, msg: String| ModelError::Config {
        path: path.into(),
        err: crate::config::ConfigError {
            field: key.into(),
            msg,
        },
    };
    let float = |key: &str| {
        g.get_as(key, "a number", Value::as_f32)
            .map_err(|m| bad(key, m))
    };
    let int = |key: &str| {
        g.get_as(key, "an integer", Value::as_i64)
            .map_err(|m| bad(key, m))
    };
    // llama.cpp's readings: top-k ≤ 0 is off; a penalty window of -1 is the whole context.
    let top_k = int(keys::TOP_K)?.map(|k| usize::try_from(k).unwrap_or(0));
    let repeat_last_n = int(keys::PENALTY_LAST_N)?
        .map(penalty_window)
        .transpose()
        .map_err(|m| bad(keys::PENALTY_LAST_N, m))?;
    Ok(SamplingHints {
        temperature: float(keys::TEMP)?,
        top_k,
        top_p: float(keys::TOP_P)?,
        min_p: float(keys::MIN_P)?,
        repeat_penalty: float(keys::PENALTY_REPEAT)?,
        repeat_last_n,
        source: format!("general.sampling.* of {}", path.display()),
    })
}

/// A penalty window as llama.cpp reads it: a count of tokens, or -1 for the whole context
/// (`usize::MAX`).
pub fn penalty_window(n: i64) -> Result<usize, String> {
    match n {
        -1 => Ok(usize::MAX),
        n => usize::try_from(n).map_err(|_| format!("expected a count of tokens or -1, got {n}")),
    }
}

fn from_hf_folder(dir: &std::path::Path) -> Result<SamplingHints, ModelError> {
    let Some(c) = camelid_formats::hf_config::load_generation_config(dir)? else {
        return Ok(SamplingHints::default());
    };
    Ok(SamplingHints {
        temperature: c.temperature.map(|v| v as f32),
        top_k: c.top_k.map(|k| usize::try_from(k).unwrap_or(0)),
        top_p: c.top_p.map(|v| v as f32),
        min_p: c.min_p.map(|v| v as f32),
        repeat_penalty: c.repetition_penalty.map(|v| v as f32),
        repeat_last_n: None,
        source: dir.join("generation_config.json").display().to_string(),
    })
}
