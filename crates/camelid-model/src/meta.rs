//! Meta's original release folders (`params.json` + `consolidated.NN.pth`): the config from
//! `params.json`, Meta's tensor names, and the model-parallel shards joined back.
//!
//! Meta's weights are already in camelid's canonical layout: Meta's RoPE rotates adjacent pairs
//! (`apply_rotary_emb` views the head as complex pairs, meta-llama/llama `llama/model.py`), and
//! Hugging Face's Wq/Wk are Meta's passed through `permute` (transformers
//! `convert_llama_weights_to_hf.py`), which the HF path of the loader undoes. So Wq/Wk are used
//! as stored.
//!
//! How ranks split a tensor follows the fairscale layer each uses in Meta's model code:
//! `ColumnParallelLinear` (wq, wk, wv, w1, w3, output) splits the output dimension, rows of
//! `[out, in]`; `RowParallelLinear` (wo, w2) the input dimension, columns; RMSNorm gains are
//! replicated. The embedding differs by generation: LLaMA 1/2 use `ParallelEmbedding`, split
//! along the model dimension (columns; meta-llama/llama `llama/model.py`), Llama 3 uses
//! `VocabParallelEmbedding`, split along the vocabulary (rows; meta-llama/llama3
//! `llama/model.py`). transformers' converter joins them the same way (`concat_dim = 0` for
//! Llama 3, else 1). Which one a folder uses is told from the shapes.

use camelid_formats::pth::{MetaCheckpoint, MetaParams, PthDtype, PthTensor};
use camelid_kernels::DType;
use camelid_tokenizer::{ChatHint, Tokenizer};

use crate::config::{Config, ConfigError, RopeScaling, ffn_width};
use crate::error::ModelError;

/// Meta's name for a GGUF tensor name; `None` when Meta's checkpoints have no such tensor.
pub(crate) fn meta_name(gguf: &str) -> Option<String> {
    let fixed = [
        ("token_embd.weight", "tok_embeddings.weight"),
        ("output_norm.weight", "norm.weight"),
        ("output.weight", "output.weight"),
    ];
    if let Some((_, m)) = fixed.iter().find(|(g, _)| *g == gguf) {
        return Some(m.to_string());
    }
    let (layer, part) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let part = match part {
        "attn_norm.weight" => "attention_norm.weight",
        "attn_q.weight" => "attention.wq.weight",
        "attn_k.weight" => "attention.wk.weight",
        "attn_v.weight" => "attention.wv.weight",
        "attn_output.weight" => "attention.wo.weight",
        "ffn_norm.weight" => "ffn_norm.weight",
        "ffn_gate.weight" => "feed_forward.w1.weight",
        "ffn_up.weight" => "feed_forward.w3.weight",
        "ffn_down.weight" => "feed_forward.w2.weight",
        _ => return None,
    };
    Some(format!("layers.{layer}.{part}"))
}

/// How the ranks' slices of one tensor fit together.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Split {
    /// Rows (dim 0) concatenated.
    Rows,
    /// Columns (dim 1) concatenated.
    Cols,
    /// Every rank holds the whole tensor.
    Replicated,
}

fn split_of(meta: &str) -> Split {
    let column = [".wq.", ".wk.", ".wv.", ".w1.", ".w3."];
    let row = [".wo.", ".w2."];
    if meta == "output.weight" || column.iter().any(|c| meta.contains(c)) {
        Split::Rows
    } else if row.iter().any(|r| meta.contains(r)) {
        Split::Cols
    } else {
        Split::Replicated
    }
}

fn dtype(d: PthDtype) -> DType {
    match d {
        PthDtype::F32 => DType::F32,
        PthDtype::F16 => DType::F16,
        PthDtype::BF16 => DType::BF16,
    }
}

/// A tensor found in the folder: its joined shape, and either a single rank's tensor to use in
/// place or the bytes joined from all ranks.
pub(crate) enum Found {
    InPlace(usize),
    Joined(Vec<u8>),
}

/// The joined dtype, shape and split of `meta` across the ranks, checked for consistency.
/// `d_model` tells the embedding's split (columns when each rank holds `d_model / ranks`).
fn plan(
    ck: &MetaCheckpoint,
    meta: &str,
    d_model: usize,
) -> Result<Option<(PthDtype, Vec<usize>, Split)>, ModelError> {
    let n = ck.shards.len();
    let parts: Vec<&PthTensor> = match ck.shards[0].tensor(meta) {
        None => return Ok(None),
        Some(_) => ck
            .shards
            .iter()
            .map(|s| {
                s.tensor(meta).ok_or_else(|| ModelError::MissingTensor {
                    path: s.path().to_path_buf(),
                    tensor: meta.to_string(),
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let first = parts[0];
    for (p, s) in parts.iter().zip(&ck.shards) {
        if p.dtype != first.dtype || p.shape.len() != first.shape.len() {
            return Err(ModelError::Shape {
                path: s.path().to_path_buf(),
                tensor: meta.to_string(),
                expected: first.shape.clone(),
                got: p.shape.clone(),
            });
        }
    }
    let mut split = split_of(meta);
    if meta == "tok_embeddings.weight" && n > 1 && first.shape.len() == 2 {
        split = if first.shape[1] == d_model {
            Split::Rows
        } else {
            Split::Cols
        };
    }
    if n == 1 || first.shape.len() != 2 {
        split = Split::Replicated;
    }
    let mut shape = first.shape.clone();
    for (p, s) in parts.iter().zip(&ck.shards).skip(1) {
        let fits = match split {
            Split::Replicated => p.shape == first.shape,
            Split::Rows => p.shape[1..] == first.shape[1..],
            Split::Cols => p.shape.len() == 2 && p.shape[0] == first.shape[0],
        };
        if !fits {
            return Err(ModelError::Shape {
                path: s.path().to_path_buf(),
                tensor: meta.to_string(),
                expected: first.shape.clone(),
                got: p.shape.clone(),
            });
        }
        match split {
            Split::Rows => shape[0] += p.shape[0],
            Split::Cols => shape[1] += p.shape[1],
            Split::Replicated => {}
        }
    }
    Ok(Some((first.dtype, shape, split)))
}

/// Finds `gguf_name` in the folder: `(dtype, joined shape, where its bytes are)`.
pub(crate) fn find(
    ck: &MetaCheckpoint,
    gguf_name: &str,
    d_model: usize,
) -> Result<Option<(DType, Vec<usize>, Found)>, ModelError> {
    let Some(meta) = meta_name(gguf_name) else {
        return Ok(None);
    };
    let Some((dt, shape, split)) = plan(ck, &meta, d_model)? else {
        return Ok(None);
    };
    let parts: Vec<(&[u8], &PthTensor)> = ck
        .shards
        .iter()
        .map(|s| {
            let t = s.tensor(&meta).expect("plan checked every rank");
            (s.data(t), t)
        })
        .collect();
    let found = match split {
        Split::Replicated => {
            // Norm gains must agree across ranks; a rank that differs is a broken download.
            for ((bytes, _), s) in parts.iter().zip(&ck.shards).skip(1) {
                if *bytes != parts[0].0 {
                    return Err(ModelError::NotAModel {
                        path: s.path().to_path_buf(),
                        msg: format!(
                            "tensor `{meta}` should be replicated across ranks but differs from rank 0's"
                        ),
                    });
                }
            }
            Found::InPlace(0)
        }
        Split::Rows => Found::Joined(parts.iter().flat_map(|(b, _)| b.iter().copied()).collect()),
        Split::Cols => {
            let es = dt.size();
            let rows = shape[0];
            let mut out = Vec::with_capacity(shape.iter().product::<usize>() * es);
            for r in 0..rows {
                for (b, t) in &parts {
                    let w = t.shape[1] * es;
                    out.extend_from_slice(&b[r * w..(r + 1) * w]);
                }
            }
            Found::Joined(out)
        }
    };
    Ok(Some((dtype(dt), shape, found)))
}

fn cfg_err(field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        msg: msg.into(),
    }
}

/// Which of Meta's releases a folder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Generation {
    Llama1,
    Llama2,
    /// Llama 3, 3.1, 3.2, 3.3.
    Llama3,
}

impl Generation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Generation::Llama1 => "LLaMA 1",
            Generation::Llama2 => "Llama 2",
            Generation::Llama3 => "Llama 3",
        }
    }
}

/// The generation, told from params.json, which does not name it: Llama 3 alone has θ 500000
/// (or scaled RoPE, or a vocabulary of 128,256; Code Llama, a Llama 2, has θ 1e6 and 32,016);
/// of the two with `vocab_size: -1` and no θ, LLaMA 1 alone has eps 1e-6 (Llama 2: 1e-5).
pub(crate) fn generation(p: &MetaParams) -> Generation {
    if p.rope_theta == Some(500000.0)
        || p.use_scaled_rope == Some(true)
        || p.vocab_size.is_some_and(|v| v >= 128_000)
    {
        Generation::Llama3
    } else if p.norm_eps.is_some_and(|e| e < 5e-6) {
        Generation::Llama1
    } else {
        Generation::Llama2
    }
}

/// The chat format of a Meta folder (Meta ships none in the folder; its code writes one per
/// generation): Llama 3's header layout (meta-llama/llama3 `ChatFormat`) where the vocabulary
/// has its header tokens, Llama 2's `[INST]` layout (meta-llama/llama `chat_completion`), and
/// none for LLaMA 1, a base model only.
pub(crate) fn chat_hint(p: &MetaParams, tok: &Tokenizer) -> Option<ChatHint> {
    let has = |t: &str| tok.token_id(t).is_some();
    match generation(p) {
        Generation::Llama1 => Some(ChatHint::Plain),
        Generation::Llama2 => Some(ChatHint::Llama2),
        Generation::Llama3
            if has("<|start_header_id|>") && has("<|end_header_id|>") && has("<|eot_id|>") =>
        {
            Some(ChatHint::Llama3)
        }
        // A vocabulary without the header tokens (a test model's): nothing to say.
        Generation::Llama3 => None,
    }
}

/// The RoPE scaling of a Meta folder. Meta's Llama 3 code scales only when `use_scaled_rope`
/// is set, and then with the constants fixed in `apply_scaling`: factor 8, low 1, high 4,
/// original context 8192 (meta-llama/llama-models 0.3.0 `models/llama3/model.py`; its
/// `ModelArgs`, `models/llama3/args.py`, has no field for them and drops unknown ones). That is
/// Llama 3.1's rule, and Meta's code applies it to Llama 3.2 1B/3B too, whose params.json say
/// the same; the Hugging Face configs of 3.2 1B/3B say factor 32 instead, so a Meta 3.2 folder
/// and its Hugging Face twin differ at long range. A folder that states `rope_scaling_factor`
/// or `rope_high_freq_factor` (the fields of Llama 4's `ModelArgs`, `models/llama4/args.py`,
/// used by the same formula in `models/llama4/model.py`) gets those values.
fn rope_scaling(p: &MetaParams) -> Result<RopeScaling, ConfigError> {
    let positive = |v: Option<f64>, field: &str, default: f32| match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x > 0.0 && x < 1e6 => Ok(x as f32),
        Some(x) => Err(cfg_err(field, format!("{x} is not a factor > 0"))),
    };
    let factor = positive(p.rope_scaling_factor, "rope_scaling_factor", 8.0)?;
    let high_freq_factor = positive(p.rope_high_freq_factor, "rope_high_freq_factor", 4.0)?;
    if high_freq_factor <= 1.0 && p.use_scaled_rope == Some(true) {
        return Err(cfg_err(
            "rope_high_freq_factor",
            format!("{high_freq_factor} must be above the low-frequency factor 1"),
        ));
    }
    Ok(if p.use_scaled_rope == Some(true) {
        RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor,
            original_context: 8192,
        }
    } else {
        RopeScaling::None
    })
}

/// The config of a Meta folder from `params.json` (field meanings and defaults: `ModelArgs` in
/// meta-llama/llama3 `llama/model.py` and meta-llama/llama-models `models/llama3/args.py`),
/// with the vocabulary taken from the embedding when `vocab_size` is -1 (LLaMA 1/2).
pub(crate) fn config(ck: &MetaCheckpoint) -> Result<Config, ModelError> {
    let path = ck.dir.join(camelid_formats::pth::PARAMS_FILE);
    let err = |e: ConfigError| ModelError::Config {
        path: path.clone(),
        err: e,
    };
    let p = &ck.params;
    let need = |v: Option<usize>, f: &str| v.ok_or_else(|| err(cfg_err(f, "missing")));
    let d_model = need(p.dim, "dim")?;
    let n_heads = need(p.n_heads, "n_heads")?;
    if n_heads == 0 || !d_model.is_multiple_of(n_heads) {
        return Err(err(cfg_err(
            "n_heads",
            format!("{n_heads} does not divide dim {d_model}"),
        )));
    }
    let multiple_of = p.multiple_of.unwrap_or(256);
    if multiple_of == 0 || multiple_of > 1 << 20 {
        return Err(err(cfg_err(
            "multiple_of",
            format!("{multiple_of} is out of range"),
        )));
    }
    if let Some(m) = p.ffn_dim_multiplier
        && !(m.is_finite() && m > 0.0 && m < 64.0)
    {
        return Err(err(cfg_err(
            "ffn_dim_multiplier",
            format!("{m} is out of range"),
        )));
    }
    if d_model > 1 << 17 {
        return Err(err(cfg_err("dim", format!("{d_model} is out of range"))));
    }
    let (_, embd_shape, _) =
        plan(ck, "tok_embeddings.weight", d_model)?.ok_or_else(|| ModelError::MissingTensor {
            path: ck.shards[0].path().to_path_buf(),
            tensor: "tok_embeddings.weight".into(),
        })?;
    let rows = embd_shape.first().copied().unwrap_or(0);
    let n_vocab = match p.vocab_size {
        Some(v) if v > 0 => {
            if v as u64 != rows as u64 {
                return Err(err(cfg_err(
                    "vocab_size",
                    format!("{v} differs from tok_embeddings.weight's {rows} rows"),
                )));
            }
            rows
        }
        // -1 (LLaMA 1/2): Meta's generator sets it from the tokenizer, whose size the
        // embedding has.
        Some(-1) | None => rows,
        Some(v) => return Err(err(cfg_err("vocab_size", format!("{v} is not a size")))),
    };
    let norm_eps = p.norm_eps.unwrap_or(1e-5);
    let rope_scaling = rope_scaling(p).map_err(err)?;
    // Context lengths of each generation as transformers' converter records them
    // (CONTEXT_LENGTH_FOR_VERSION): scaled Llama 3.1+ 131072, Llama 3 8192, Llama 2 4096,
    // LLaMA 1 2048. params.json does not say.
    let n_ctx_train = match (p.max_seq_len, generation(p)) {
        (Some(n), _) => n,
        (None, _) if p.use_scaled_rope == Some(true) => 131072,
        (None, Generation::Llama3) => 8192,
        (None, Generation::Llama2) => 4096,
        (None, Generation::Llama1) => 2048,
    };
    let config = Config {
        n_vocab,
        d_model,
        n_layers: need(p.n_layers, "n_layers")?,
        n_heads,
        n_kv_heads: p.n_kv_heads.unwrap_or(n_heads),
        head_dim: d_model / n_heads,
        d_ff: ffn_width(d_model, p.ffn_dim_multiplier, multiple_of),
        norm_eps: norm_eps as f32,
        // LLaMA 1/2's code has no rope_theta: 10000 is fixed in precompute_freqs_cis.
        rope_theta: p.rope_theta.unwrap_or(10000.0) as f32,
        rope_scaling,
        n_ctx_train,
        tied_embeddings: plan(ck, "output.weight", d_model)?.is_none(),
    };
    config.validate().map_err(err)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The params.json of Meta's releases (the fields that tell them apart, as published).
    #[test]
    fn generation_from_params() {
        let p = |json: &str| -> MetaParams { serde_json::from_str(json).unwrap() };
        let cases = [
            (
                r#"{"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-06, "vocab_size": -1}"#,
                Generation::Llama1,
            ),
            (
                r#"{"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-05, "vocab_size": -1}"#,
                Generation::Llama2,
            ),
            (
                r#"{"dim": 8192, "multiple_of": 4096, "ffn_dim_multiplier": 1.3, "n_heads": 64, "n_kv_heads": 8, "n_layers": 80, "norm_eps": 1e-05, "vocab_size": -1}"#,
                Generation::Llama2,
            ),
            (
                r#"{"dim": 4096, "n_layers": 32, "n_heads": 32, "multiple_of": 256, "ffn_dim_multiplier": 1.0, "norm_eps": 1e-5, "rope_theta": 1000000, "vocab_size": 32016}"#,
                Generation::Llama2,
            ),
            (
                r#"{"dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256, "multiple_of": 1024, "ffn_dim_multiplier": 1.3, "norm_eps": 1e-05, "rope_theta": 500000.0}"#,
                Generation::Llama3,
            ),
            (
                r#"{"dim": 2048, "ffn_dim_multiplier": 1.5, "multiple_of": 256, "n_heads": 32, "n_kv_heads": 8, "n_layers": 16, "norm_eps": 1e-05, "rope_theta": 500000.0, "use_scaled_rope": true, "vocab_size": 128256}"#,
                Generation::Llama3,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(generation(&p(json)), want, "{json}");
        }
    }

    #[test]
    fn names_and_splits() {
        assert_eq!(
            meta_name("blk.3.ffn_gate.weight").unwrap(),
            "layers.3.feed_forward.w1.weight"
        );
        assert_eq!(
            meta_name("blk.0.ffn_up.weight").unwrap(),
            "layers.0.feed_forward.w3.weight"
        );
        assert_eq!(meta_name("rope_freqs.weight"), None);
        assert_eq!(split_of("layers.1.attention.wo.weight"), Split::Cols);
        assert_eq!(split_of("layers.1.feed_forward.w2.weight"), Split::Cols);
        assert_eq!(split_of("layers.1.attention.wk.weight"), Split::Rows);
        assert_eq!(split_of("output.weight"), Split::Rows);
        assert_eq!(split_of("layers.1.ffn_norm.weight"), Split::Replicated);
    }
}
