//! Checkpoints: Hugging Face model folders that camelid and transformers load, plus what a run
//! needs to continue bit-identically.
//!
//! ```text
//! DIR/config.json            transformers LlamaConfig (LlamaForCausalLM), float32
//! DIR/model.safetensors      the parameters under their HF names, f32
//! DIR/tokenizer.*            the tokenizer's files, copied (tokenizer.json / tokenizer.model /
//!                            tokenizer_config.json, or tokenizer.gguf for a GGUF vocabulary),
//!                            and a tokenizer.json (+ config) written where there was none
//! DIR/optimizer.safetensors  AdamW's moments, `exp_avg.<name>` and `exp_avg_sq.<name>`
//! DIR/train_state.json       the step, the data position and the run's settings
//! DIR/log.jsonl              one line per step (written by the trainer, kept across resumes)
//! DIR/loss.svg               the loss curve drawn from the log (`chart`)
//! ```
//!
//! Every file is written under a temporary name and renamed over the old one, so an interrupted
//! save leaves the previous checkpoint whole.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use camelid_formats::safetensors::{self, SafetensorsModel, StDtype};
use camelid_model::Config;
use camelid_model::config::RopeScaling;

use crate::optim::AdamW;
use crate::params::Params;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "train_state.json";
pub const CONFIG_FILE: &str = "config.json";

/// Why a checkpoint could not be written or read.
#[derive(Debug)]
pub enum CheckpointError {
    Io {
        path: PathBuf,
        err: io::Error,
    },
    /// A file of the checkpoint is malformed or does not fit the model.
    Bad {
        path: PathBuf,
        msg: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            CheckpointError::Bad { path, msg } => write!(f, "{}: {msg}", path.display()),
        }
    }
}

impl std::error::Error for CheckpointError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |err| CheckpointError::Io {
        path: path.to_path_buf(),
        err,
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Writes `dir/name` through a temporary file and a rename: `write` fills the file.
fn write_atomic_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
) -> Result<(), CheckpointError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut w = io::BufWriter::new(fs::File::create(&tmp)?);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&path)(e)
    })
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomic_with(dir, name, |w| io::Write::write_all(w, bytes))
}

/// Writes the safetensors of `params` (HF names, f32): the same bytes for the same values.
pub fn write_model(w: impl io::Write, params: &Params) -> io::Result<()> {
    let tensors: Vec<(&str, &[usize], &[f32])> = params
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice()))
        .collect();
    safetensors::write_f32(w, &tensors, &[("format", "pt")])
}

fn write_optimizer(w: impl io::Write, opt: &AdamW) -> io::Result<()> {
    let names: Vec<(String, String)> = opt
        .m
        .tensors
        .iter()
        .map(|t| {
            (
                format!("exp_avg.{}", t.name),
                format!("exp_avg_sq.{}", t.name),
            )
        })
        .collect();
    let mut tensors: Vec<(&str, &[usize], &[f32])> = Vec::new();
    for ((m, v), (mn, vn)) in opt.m.tensors.iter().zip(&opt.v.tensors).zip(&names) {
        tensors.push((mn, &m.shape, &m.data));
        tensors.push((vn, &v.shape, &v.data));
    }
    let step = opt.step.to_string();
    safetensors::write_f32(w, &tensors, &[("format", "pt"), ("step", &step)])
}

/// transformers' `LlamaConfig` as `save_pretrained` writes it, for these shapes (field meanings:
/// transformers `models/llama/configuration_llama.py`).
pub fn hf_config_json(c: &Config, bos: Option<u32>, eos: Option<u32>) -> String {
    let rope_scaling = match c.rope_scaling {
        RopeScaling::None => serde_json::Value::Null,
        RopeScaling::Linear { factor } => {
            serde_json::json!({"rope_type": "linear", "factor": factor})
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => serde_json::json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_context,
        }),
    };
    let v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.n_vocab,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.n_ctx_train,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": c.tied_embeddings,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "use_cache": true,
        "torch_dtype": "float32",
    });
    serde_json::to_string_pretty(&v).expect("a JSON value serializes") + "\n"
}

/// A tokenizer file of a checkpoint, under its Hugging Face name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerFile {
    /// Copied from the tokenizer the run read.
    Copy { from: PathBuf, name: String },
    /// Written from the tokenizer (a `tokenizer.json` for a GGUF vocabulary or a
    /// `tokenizer.model`, so that transformers reads the folder).
    Made { name: String, bytes: Vec<u8> },
}

impl TokenizerFile {
    pub fn name(&self) -> &str {
        match self {
            TokenizerFile::Copy { name, .. } | TokenizerFile::Made { name, .. } => name,
        }
    }

    fn bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        match self {
            TokenizerFile::Copy { from, .. } => fs::read(from).map_err(io_err(from)),
            TokenizerFile::Made { bytes, .. } => Ok(bytes.clone()),
        }
    }
}

/// The tokenizer files of a checkpoint for a tokenizer read from `path`: the file itself under
/// its HF name (a GGUF vocabulary as `tokenizer.gguf`), plus a `tokenizer_config.json` found
/// beside it; for a folder, its tokenizer files. Where there is no `tokenizer.json` (a GGUF
/// vocabulary, a SentencePiece or tiktoken `tokenizer.model`), one is written from the
/// tokenizer, with a `tokenizer_config.json` unless one is copied
/// ([`Tokenizer::to_tokenizer_json`](camelid_tokenizer::Tokenizer::to_tokenizer_json)); camelid
/// then loads the folder through it. A tokenizer that format cannot express gets a warning on
/// stderr and keeps only its original file.
pub fn tokenizer_files(path: &Path) -> Vec<TokenizerFile> {
    let mut files = copied_tokenizer_files(path);
    if files.iter().any(|f| f.name() == "tokenizer.json") {
        return files;
    }
    let made = camelid_model::tokenizer_load::load_tokenizer(path)
        .map_err(|e| e.to_string())
        .and_then(|tok| {
            let json = tok.to_tokenizer_json().map_err(|e| e.to_string())?;
            Ok((json, tok.to_tokenizer_config_json()))
        });
    match made {
        Ok((json, config)) => {
            files.push(TokenizerFile::Made {
                name: "tokenizer.json".into(),
                bytes: json.into_bytes(),
            });
            if !files.iter().any(|f| f.name() == "tokenizer_config.json") {
                files.push(TokenizerFile::Made {
                    name: "tokenizer_config.json".into(),
                    bytes: config.into_bytes(),
                });
            }
        }
        Err(e) => eprintln!(
            "warning: {}: no tokenizer.json for the checkpoints ({e}); they carry the original file",
            path.display()
        ),
    }
    files
}

/// The files of [`tokenizer_files`] that are copied.
fn copied_tokenizer_files(path: &Path) -> Vec<TokenizerFile> {
    let copy = |from: PathBuf, name: &str| TokenizerFile::Copy {
        from,
        name: name.to_string(),
    };
    let known = ["tokenizer.json", "tokenizer.model", "tokenizer_config.json"];
    if path.is_dir() {
        return known
            .iter()
            .map(|n| (path.join(n), n))
            .filter(|(p, _)| p.is_file())
            .map(|(p, n)| copy(p, n))
            .collect();
    }
    let is_gguf = camelid_formats::gguf::has_magic(path);
    let name = if is_gguf {
        "tokenizer.gguf"
    } else {
        let first = fs::read(path)
            .ok()
            .and_then(|b| b.iter().copied().find(|c| !c.is_ascii_whitespace()));
        if first == Some(b'{') {
            "tokenizer.json"
        } else {
            "tokenizer.model"
        }
    };
    let mut files = vec![copy(path.to_path_buf(), name)];
    if let Some(cfg) = path
        .parent()
        .map(|d| d.join("tokenizer_config.json"))
        .filter(|c| c.is_file() && !is_gguf)
    {
        files.push(copy(cfg, "tokenizer_config.json"));
    }
    files
}

/// Writes the model folder files: config.json, model.safetensors and the tokenizer files.
pub fn save_model(
    dir: &Path,
    params: &Params,
    bos: Option<u32>,
    eos: Option<u32>,
    tokenizer: &[TokenizerFile],
) -> Result<(), CheckpointError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_atomic(
        dir,
        CONFIG_FILE,
        hf_config_json(&params.config, bos, eos).as_bytes(),
    )?;
    write_atomic_with(dir, MODEL_FILE, |w| write_model(w, params))?;
    for file in tokenizer {
        let bytes = file.bytes()?;
        let dst = dir.join(file.name());
        if dst.is_file() && fs::read(&dst).ok().as_deref() == Some(&bytes[..]) {
            continue;
        }
        write_atomic(dir, file.name(), &bytes)?;
    }
    Ok(())
}

/// Writes the optimizer moments and the training state (after the model files, so a state file
/// never describes a model that is not there).
pub fn save_state(
    dir: &Path,
    opt: &AdamW,
    state: &serde_json::Value,
) -> Result<(), CheckpointError> {
    write_atomic_with(dir, OPTIMIZER_FILE, |w| write_optimizer(w, opt))?;
    let text = serde_json::to_string_pretty(state).expect("a JSON value serializes") + "\n";
    write_atomic(dir, STATE_FILE, text.as_bytes())
}

/// Reads `train_state.json`.
pub fn read_state(dir: &Path) -> Result<serde_json::Value, CheckpointError> {
    let path = dir.join(STATE_FILE);
    if !path.is_file() {
        return Err(bad(
            dir,
            format!("not a camelid training checkpoint (no {STATE_FILE})"),
        ));
    }
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| bad(&path, format!("not JSON: {e}")))
}

/// Fills `into` (already laid out for the model) from the f32 tensors of a safetensors file,
/// each looked up as `prefix + name`.
fn fill(path: &Path, into: &mut Params, prefix: &str) -> Result<SafetensorsModel, CheckpointError> {
    let st = SafetensorsModel::open(path).map_err(|e| bad(path, e.to_string()))?;
    for t in &mut into.tensors {
        let name = format!("{prefix}{}", t.name);
        let s = st
            .tensor(&name)
            .ok_or_else(|| bad(path, format!("tensor {name} is missing")))?;
        if s.dtype != StDtype::F32 || s.shape != t.shape {
            return Err(bad(
                path,
                format!(
                    "tensor {name} is {} {:?}, expected F32 {:?}",
                    s.dtype, s.shape, t.shape
                ),
            ));
        }
        for (x, b) in t.data.iter_mut().zip(st.data(s).chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(st)
}

/// Reads the parameters of a checkpoint of `config`'s layout.
pub fn load_params(dir: &Path, config: &Config) -> Result<Params, CheckpointError> {
    let mut params = Params::zeros(config);
    fill(&dir.join(MODEL_FILE), &mut params, "")?;
    Ok(params)
}

/// Restores the optimizer's moments and step into `opt` (laid out for the model).
pub fn load_optimizer(dir: &Path, opt: &mut AdamW) -> Result<(), CheckpointError> {
    let path = dir.join(OPTIMIZER_FILE);
    fill(&path, &mut opt.m, "exp_avg.")?;
    let st = fill(&path, &mut opt.v, "exp_avg_sq.")?;
    let step = st
        .metadata()
        .iter()
        .find(|(k, _)| k == "step")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| bad(&path, "no `step` in the metadata"))?;
    opt.step = step;
    Ok(())
}
