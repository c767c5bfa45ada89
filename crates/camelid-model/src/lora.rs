//! LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
//! arXiv:2106.09685), merged into the weights at load.
//!
//! An adapter holds, for some of the model's matrices `W: [out, in]`, two factors
//! `A: [r, in]` and `B: [out, r]`; the adapted layer computes `W·x + s·B·(A·x)`. camelid adds
//! `s·B·A` to `W` once, when the model loads, so the forward pass, every backend and every
//! command run the adapted model with no step of their own.
//!
//! Two files carry adapters:
//! - PEFT's (`save_pretrained`): a folder with `adapter_config.json` and
//!   `adapter_model.safetensors`, tensors named
//!   `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`. `s = lora_alpha / r`, or
//!   `lora_alpha / sqrt(r)` with `use_rslora` (PEFT `LoraLayer.update_layer`). B's rows for
//!   `q_proj` and `k_proj` are in Hugging Face's permuted order, like the base's Wq/Wk rows
//!   (see `weights.rs`), and are put in Meta's order here.
//! - llama.cpp's (`convert_lora_to_gguf.py`): a GGUF with `general.type = "adapter"`,
//!   `adapter.type = "lora"`, `adapter.lora.alpha`, tensors `blk.N.attn_q.weight.lora_a`
//!   (`[r, in]`) and `.lora_b` (`[out, r]`), B's rows already in GGUF order.
//!   `s = alpha / r`, or 1 where alpha is 0, as llama.cpp applies it (`llama-graph.cpp`).
//!
//! Each adapter's `s` is multiplied by the user's scale (`--lora-scaled FILE:SCALE`, llama.cpp's
//! option). What type a merged matrix is stored in decides what is left of the change, as
//! measured with a LoRA trained by PEFT on SmolLM2's Q4_1 file (`tools/lora_smollm2.py`: Hamlet
//! perplexity 42.69 without it, 37.82 with it in PEFT): re-quantized to Q4_1, the change is
//! mostly rounded away (42.05); in Q8_0 it is kept to 0.3% (37.94); in F16 wholly (37.82), at
//! the cost of F16's speed. So a merged matrix is F32 where the base's was F32, F16 where it was
//! F16 or BF16, and where it was quantized, Q8_0 at `Precision::Fast` (8-bit weights beside the
//! 8-bit activations of that precision) and F16 at `Precision::Exact`; F32 wherever a value
//! exceeds F16's range.
//! Whatever is not a LoRA factor of a linear layer (embedding LoRA, DoRA, biases, whole saved
//! modules, per-module ranks) is refused with a message that names it: applying part of an
//! adapter would give a model nobody trained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use camelid_formats::gguf::{self, Gguf};
use camelid_formats::hf_config::load_adapter_config;
use camelid_formats::safetensors::{SafetensorsModel, StDtype};
use camelid_kernels::quant::{dequantize_row, quantize_row};
use camelid_kernels::{DType, Kernels, Precision, WeightView};
use half::f16;

use crate::config::Config;
use crate::error::ModelError;
use crate::weights::{Tensor, Weights, meta_row_order};

/// A LoRA adapter read from its file, not yet merged.
pub struct Adapter {
    pub path: PathBuf,
    /// What file it came from, in words (`camelid inspect`).
    format: &'static str,
    factors: Vec<Factors>,
}

/// The two factors of one matrix.
struct Factors {
    /// The GGUF name of the matrix they change (`blk.0.attn_q.weight`, `output.weight`).
    target: String,
    /// The name of `B` in the adapter's file, for errors.
    source: String,
    rank: usize,
    /// `[rank, cols]`, row-major.
    a: Vec<f32>,
    /// `[rows, rank]`, row-major.
    b: Vec<f32>,
    rows: usize,
    cols: usize,
    /// The adapter's own scale (`alpha / r`).
    scale: f32,
    /// B's rows are in Hugging Face's Wq/Wk order.
    hf_rows: bool,
}

impl Adapter {
    /// Reads a PEFT adapter (its folder, or its `adapter_model.safetensors` with the config
    /// beside it) or a GGUF adapter.
    pub fn open(path: &Path) -> Result<Adapter, ModelError> {
        let err = |msg: String| ModelError::Adapter {
            path: path.to_path_buf(),
            msg,
        };
        if path.is_dir() {
            let config = path.join("adapter_config.json");
            if !config.is_file() {
                return Err(err(
                    "not a LoRA adapter: the folder has no adapter_config.json (PEFT's)".into(),
                ));
            }
            return open_peft(&config, &path.join("adapter_model.safetensors"));
        }
        if gguf::has_magic(path) {
            return open_gguf(path);
        }
        if path.extension().is_some_and(|e| e == "safetensors") {
            return open_peft(&path.with_file_name("adapter_config.json"), path);
        }
        Err(err(if path.exists() {
            "not a LoRA adapter: neither a GGUF adapter nor a PEFT folder or safetensors file"
                .into()
        } else {
            "no such file or folder".into()
        }))
    }

    /// The matrices the adapter changes, by GGUF name.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.factors.iter().map(|f| f.target.as_str())
    }

    /// What `camelid inspect` prints of an adapter: its format, and each matrix it changes
    /// with its shape, rank and scale.
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let params: usize = self.factors.iter().map(|f| f.a.len() + f.b.len()).sum();
        // Writing to a String cannot fail.
        let _ = (|| -> std::fmt::Result {
            writeln!(out, "file: {}", self.path.display())?;
            writeln!(out, "format: {}", self.format)?;
            writeln!(out, "\nmatrices changed ({}):", self.factors.len())?;
            writeln!(
                out,
                "  {:<28} {:<16} {:>5} {:>8}",
                "name", "shape", "rank", "scale"
            )?;
            for f in &self.factors {
                let shape = format!("[{}, {}]", f.rows, f.cols);
                let (name, rank, scale) = (&f.target, f.rank, f.scale);
                writeln!(out, "  {name:<28} {shape:<16} {rank:>5} {scale:>8.4}")?;
            }
            writeln!(out, "\nparameters: {params} ({:.2}M)", params as f64 / 1e6)
        })();
        out
    }
}

/// Whether `path` is a LoRA adapter rather than a model: a folder with `adapter_config.json`,
/// a `.safetensors` file beside one, or a GGUF whose `general.type` is "adapter".
pub fn is_adapter(path: &Path) -> bool {
    if path.is_dir() {
        return path.join("adapter_config.json").is_file();
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        return path.with_file_name("adapter_config.json").is_file();
    }
    gguf::has_magic(path)
        && Gguf::open(path)
            .is_ok_and(|g| g.get("general.type").and_then(|v| v.as_str()) == Some("adapter"))
}

fn open_peft(config_path: &Path, file: &Path) -> Result<Adapter, ModelError> {
    let cfg = load_adapter_config(config_path)?;
    let refuse = |msg: String| ModelError::Adapter {
        path: config_path.to_path_buf(),
        msg,
    };
    if let Some(t) = cfg.peft_type.as_deref().filter(|t| *t != "LORA") {
        return Err(refuse(format!(
            "a {t} adapter (`peft_type`); camelid applies LoRA adapters"
        )));
    }
    if cfg.use_dora == Some(true) {
        return Err(refuse(
            "a DoRA adapter (`use_dora`), which a sum of LoRA factors does not express".into(),
        ));
    }
    if cfg.fan_in_fan_out == Some(true) {
        return Err(refuse(
            "`fan_in_fan_out` (weights stored [in, out]) is not a Llama layout".into(),
        ));
    }
    for (field, pattern) in [
        ("rank_pattern", &cfg.rank_pattern),
        ("alpha_pattern", &cfg.alpha_pattern),
    ] {
        if pattern.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(refuse(format!(
                "per-module ranks or alphas (`{field}`) are not supported"
            )));
        }
    }
    let r = cfg
        .r
        .filter(|&r| r > 0)
        .ok_or_else(|| refuse("`r` is missing or 0".into()))?;
    // PEFT's default lora_alpha is 8 (`LoraConfig`).
    let alpha = cfg.lora_alpha.unwrap_or(8.0);
    let scale = if cfg.use_rslora == Some(true) {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    } as f32;

    let st = SafetensorsModel::open(file)?;
    let bad = |name: &str, msg: String| ModelError::Adapter {
        path: file.to_path_buf(),
        msg: format!("tensor `{name}`: {msg}"),
    };
    // By the matrix they change: A, B and a saved base layer, each (name, shape, values).
    type Part = Option<(String, Vec<usize>, Vec<f32>)>;
    let mut modules: BTreeMap<String, [Part; 3]> = BTreeMap::new();
    for t in st.tensors() {
        let rest = t.name.strip_prefix("base_model.model.").ok_or_else(|| {
            bad(
                &t.name,
                "not a PEFT name (they start `base_model.model.`)".into(),
            )
        })?;
        // PEFT saves the output layer whole beside its factors whenever an adapter targets it:
        // the base's own weights, unless the vocabulary was resized (its shape then differs,
        // which is refused below). camelid merges into the model's own.
        let (module, slot) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
            (m, 0)
        } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
            (m, 1)
        } else if let Some(m) = rest.strip_suffix(".base_layer.weight") {
            (m, 2)
        } else {
            return Err(bad(
                &t.name,
                "not a LoRA factor (`lora_A` or `lora_B` of a linear layer); embedding LoRA, \
                 DoRA, biases and saved modules are not supported"
                    .into(),
            ));
        };
        let target = peft_target(module).map_err(|m| bad(&t.name, m))?;
        if t.shape.len() != 2 || t.shape.contains(&0) {
            return Err(bad(&t.name, format!("shape {:?}, not a matrix", t.shape)));
        }
        let data = st.data(t);
        let values: Vec<f32> = match (slot, t.dtype) {
            (2, _) => Vec::new(),
            (_, StDtype::F32) => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            (_, StDtype::F16) => data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            (_, StDtype::BF16) => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            (_, other) => {
                return Err(bad(
                    &t.name,
                    format!("type {other:?}, not F32, F16 or BF16"),
                ));
            }
        };
        modules.entry(target).or_default()[slot] = Some((t.name.clone(), t.shape.clone(), values));
    }
    let mut factors = Vec::new();
    for (target, [a, b, base]) in modules {
        let (a_name, a_shape, a) = match (a, &b) {
            (Some(a), Some(_)) => a,
            (Some((name, ..)), None) => return Err(bad(&name, "has no `lora_B` beside it".into())),
            (None, Some((name, ..))) => return Err(bad(name, "has no `lora_A` beside it".into())),
            (None, None) => {
                let (name, ..) = base.expect("one of the three");
                return Err(bad(&name, "a saved layer without LoRA factors".into()));
            }
        };
        let (b_name, b_shape, b) = b.expect("matched above");
        let (rank, cols, rows) = (a_shape[0], a_shape[1], b_shape[0]);
        if rank != r {
            return Err(bad(
                &a_name,
                format!("rank {rank}, but adapter_config.json says r = {r}"),
            ));
        }
        if b_shape[1] != rank {
            return Err(bad(
                &b_name,
                format!("shape {b_shape:?}, but its lora_A has rank {rank}"),
            ));
        }
        if let Some((name, shape, _)) = base.filter(|(_, shape, _)| shape != &[rows, cols]) {
            return Err(bad(
                &name,
                format!(
                    "shape {shape:?}, but its factors change a [{rows}, {cols}] matrix (a \
                     resized vocabulary is not supported)"
                ),
            ));
        }
        factors.push(Factors {
            hf_rows: target.ends_with("attn_q.weight") || target.ends_with("attn_k.weight"),
            target,
            source: b_name,
            rank,
            a,
            b,
            rows,
            cols,
            scale,
        });
    }
    Ok(Adapter {
        path: file.to_path_buf(),
        format: "PEFT LoRA (adapter_config.json + adapter_model.safetensors)",
        factors,
    })
}

/// The GGUF name of the matrix a PEFT module name (`model.layers.3.mlp.up_proj`, `lm_head`)
/// stands for.
fn peft_target(module: &str) -> Result<String, String> {
    if module == "lm_head" {
        return Ok("output.weight".into());
    }
    if module == "model.embed_tokens" {
        return Err("LoRA of the token embeddings is not supported".into());
    }
    let part = |rest: &str| -> Option<String> {
        let (layer, name) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let gguf = match name {
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        };
        Some(format!("blk.{layer}.{gguf}.weight"))
    };
    module
        .strip_prefix("model.layers.")
        .and_then(part)
        .ok_or_else(|| format!("`{module}` is not a linear layer of a Llama model"))
}

fn open_gguf(path: &Path) -> Result<Adapter, ModelError> {
    let g = Gguf::open(path)?;
    let err = |msg: String| ModelError::Adapter {
        path: path.to_path_buf(),
        msg,
    };
    let text = |key: &str| g.get(key).and_then(|v| v.as_str()).unwrap_or("");
    match text("general.type") {
        "adapter" => {}
        "" | "model" => {
            return Err(err(
                "a model, not an adapter (`general.type` is not \"adapter\")".into(),
            ));
        }
        other => {
            return Err(err(format!(
                "`general.type` is \"{other}\", not \"adapter\""
            )));
        }
    }
    if text("adapter.type") != "lora" {
        return Err(err(format!(
            "a \"{}\" adapter (`adapter.type`); camelid applies LoRA adapters",
            text("adapter.type")
        )));
    }
    if text("general.architecture") != "llama" {
        return Err(err(format!(
            "an adapter of a \"{}\" model (`general.architecture`), not of a Llama",
            text("general.architecture")
        )));
    }
    let alpha = match g.get("adapter.lora.alpha") {
        None => 0.0,
        Some(v) => v
            .as_f32()
            .ok_or_else(|| err(format!("`adapter.lora.alpha` is a {}", v.type_name())))?,
    };
    let bad = |name: &str, msg: String| err(format!("tensor `{name}`: {msg}"));
    let read = |name: &str| -> Result<(usize, usize, Vec<f32>), ModelError> {
        let t = g.tensor(name).expect("listed");
        let tname = t.ggml_type.name();
        let dtype = DType::from_name(tname)
            .ok_or_else(|| bad(name, format!("type {tname}, which camelid cannot read")))?;
        let [cols, rows] = t.dims[..] else {
            return Err(bad(name, format!("dims {:?}, not a matrix", t.dims)));
        };
        let (rows, cols) = (rows as usize, cols as usize);
        if rows == 0 || cols == 0 {
            return Err(bad(name, format!("dims {:?}: empty", t.dims)));
        }
        let rb = dtype
            .row_bytes(cols)
            .filter(|&rb| rb.checked_mul(rows) == Some(t.n_bytes()))
            .ok_or_else(|| {
                bad(
                    name,
                    format!("{rows} rows of {cols} do not fit type {tname}"),
                )
            })?;
        let mut out = vec![0.0; rows * cols];
        for (dst, src) in out
            .chunks_exact_mut(cols)
            .zip(g.tensor_data(t).chunks_exact(rb))
        {
            dequantize_row(dtype, src, dst);
        }
        Ok((rows, cols, out))
    };
    let mut factors = Vec::new();
    for t in g.tensors() {
        if t.name.ends_with(".lora_b") {
            continue;
        }
        let Some(target) = t.name.strip_suffix(".lora_a") else {
            return Err(bad(
                &t.name,
                "not a LoRA factor (`.lora_a` or `.lora_b`); an adapter's norm or embedding \
                 weights are not supported"
                    .into(),
            ));
        };
        let b_name = format!("{target}.lora_b");
        if g.tensor(&b_name).is_none() {
            return Err(bad(&t.name, "has no `.lora_b` beside it".into()));
        }
        if !is_layer_matrix(target) {
            return Err(bad(
                &t.name,
                format!("`{target}` is not a linear layer of a Llama model"),
            ));
        }
        let (rank, cols, a) = read(&t.name)?;
        let (rows, b_rank, b) = read(&b_name)?;
        if b_rank != rank {
            return Err(bad(
                &b_name,
                format!("rank {b_rank}, but its lora_a has rank {rank}"),
            ));
        }
        factors.push(Factors {
            target: target.to_string(),
            source: b_name,
            rank,
            a,
            b,
            rows,
            cols,
            scale: if alpha != 0.0 {
                alpha / rank as f32
            } else {
                1.0
            },
            hf_rows: false,
        });
    }
    for t in g.tensors() {
        if let Some(target) = t.name.strip_suffix(".lora_b")
            && g.tensor(&format!("{target}.lora_a")).is_none()
        {
            return Err(bad(&t.name, "has no `.lora_a` beside it".into()));
        }
    }
    Ok(Adapter {
        path: path.to_path_buf(),
        format: "GGUF LoRA adapter (llama.cpp's convert_lora_to_gguf.py)",
        factors,
    })
}

/// Whether a GGUF name is a matrix an adapter may change.
fn is_layer_matrix(name: &str) -> bool {
    if name == "output.weight" {
        return true;
    }
    let Some((layer, part)) = name
        .strip_prefix("blk.")
        .and_then(|rest| rest.split_once('.'))
    else {
        return false;
    };
    layer.parse::<usize>().is_ok()
        && [
            "attn_q.weight",
            "attn_k.weight",
            "attn_v.weight",
            "attn_output.weight",
            "ffn_gate.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ]
        .contains(&part)
}

/// Adds every adapter's `scale · s · B·A` to the matrices it changes (the module
/// documentation). `adapters` pairs each adapter with the user's scale. A change to the output
/// matrix of a model whose output is tied to its embeddings unties them: the embeddings stay
/// as they were.
pub fn merge(
    weights: &mut Weights,
    config: &Config,
    adapters: &[(Adapter, f32)],
    precision: Precision,
) -> Result<(), ModelError> {
    let mut targets: Vec<&str> = adapters.iter().flat_map(|(a, _)| a.targets()).collect();
    targets.sort_unstable();
    targets.dedup();
    // One buffer for every matrix: fresh pages for each would be zeroed by the kernel each time.
    let mut work: Vec<f32> = Vec::new();
    for target in targets {
        let changes: Vec<(&Adapter, &Factors, f32)> = adapters
            .iter()
            .flat_map(|(a, user)| {
                a.factors
                    .iter()
                    .filter(move |f| f.target == target)
                    .map(move |f| (a, f, f.scale * user))
            })
            .collect();
        // The output of a tied model is its embeddings: the change makes it a matrix of its own.
        let untie = target == "output.weight" && weights.output.is_none();
        let w = if untie {
            &mut weights.token_embd
        } else {
            match matrix_mut(weights, target) {
                Some(w) => w,
                None => {
                    let (a, f, _) = changes[0];
                    return Err(ModelError::Adapter {
                        path: a.path.clone(),
                        msg: format!(
                            "tensor `{}` changes `{target}`, which the model does not have",
                            f.source
                        ),
                    });
                }
            }
        };
        for (a, f, _) in &changes {
            if (f.rows, f.cols) != (w.rows, w.cols) {
                return Err(ModelError::Adapter {
                    path: a.path.clone(),
                    msg: format!(
                        "tensor `{}`: its factors change a [{}, {}] matrix, but the model's \
                         `{target}` is [{}, {}] (an adapter of another model?)",
                        f.source, f.rows, f.cols, w.rows, w.cols
                    ),
                });
            }
        }
        let heads = if target.ends_with("attn_q.weight") {
            config.n_heads
        } else {
            config.n_kv_heads
        };
        let bs: Vec<Vec<f32>> = changes
            .iter()
            .map(|(_, f, s)| {
                let b: Vec<f32> = f.b.iter().map(|v| v * s).collect();
                if f.hf_rows {
                    // B's rows are the matrix's: in HF's Wq/Wk order (see `weights.rs`).
                    meta_row_order(&b, f.rank, heads, config.head_dim)
                } else {
                    b
                }
            })
            .collect();
        let n = w.rows * w.cols;
        if work.len() < n {
            work.resize(n, 0.0);
        }
        merged_rows(w, &changes, &bs, &mut work[..n]);
        let merged = w.replaced(target, &work[..n], precision);
        if untie {
            weights.output = Some(merged);
        } else {
            // The file's pages of the matrix are not read again (a tied model's embeddings
            // still are).
            w.release(0..w.bytes().len());
            *w = merged;
        }
    }
    Ok(())
}

/// [`merge`] of the adapters at `paths`, each with the user's scale.
pub fn merge_files(
    weights: &mut Weights,
    config: &Config,
    paths: &[(PathBuf, f32)],
    precision: Precision,
) -> Result<(), ModelError> {
    let adapters = paths
        .iter()
        .map(|(path, scale)| Ok((Adapter::open(path)?, *scale)))
        .collect::<Result<Vec<_>, ModelError>>()?;
    merge(weights, config, &adapters, precision)
}

fn matrix_mut<'w>(weights: &'w mut Weights, name: &str) -> Option<&'w mut Tensor> {
    if name == "output.weight" {
        return weights.output.as_mut();
    }
    let (layer, part) = name.strip_prefix("blk.")?.split_once('.')?;
    let l = weights.layers.get_mut(layer.parse::<usize>().ok()?)?;
    Some(match part {
        "attn_q.weight" => &mut l.wq,
        "attn_k.weight" => &mut l.wk,
        "attn_v.weight" => &mut l.wv,
        "attn_output.weight" => &mut l.wo,
        "ffn_gate.weight" => &mut l.w_gate,
        "ffn_up.weight" => &mut l.w_up,
        "ffn_down.weight" => &mut l.w_down,
        _ => return None,
    })
}

/// `W + Σ B·A` in f32; `bs[i]` is change i's B, scaled. `B·A` goes through camelid-kernels'
/// f32 product (`B: [rows, r]` times the matrix `Aᵀ: [cols, r]`), a chunk of rows at a time so
/// that its buffer stays small. `out` is `[rows, cols]`.
fn merged_rows(
    w: &Tensor,
    changes: &[(&Adapter, &Factors, f32)],
    bs: &[Vec<f32>],
    out: &mut [f32],
) {
    const CHUNK: usize = 1024;
    let (rows, cols) = (w.rows, w.cols);
    let threads = threads();
    let src = w.bytes();
    let rb = src.len() / rows;
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (dst, src) in out.chunks_mut(per * cols).zip(src.chunks(per * rb)) {
            s.spawn(move || {
                for (row, bytes) in dst.chunks_exact_mut(cols).zip(src.chunks_exact(rb)) {
                    dequantize_row(w.dtype, bytes, row);
                }
            });
        }
    });
    let kernels = Kernels::new(threads);
    let mut delta = vec![0.0f32; CHUNK.min(rows) * cols];
    for ((_, f, _), b) in changes.iter().zip(bs) {
        let mut at = Vec::with_capacity(cols * f.rank * 4);
        for c in 0..cols {
            for k in 0..f.rank {
                at.extend_from_slice(&f.a[k * cols + c].to_le_bytes());
            }
        }
        let at = WeightView::new(DType::F32, cols, f.rank, &at).expect("[cols, rank] of f32");
        for (dst, x) in out.chunks_mut(CHUNK * cols).zip(b.chunks(CHUNK * f.rank)) {
            let d = &mut delta[..dst.len()];
            kernels.matmul_with(&at, x, d, threads, Precision::Exact);
            for (o, v) in dst.iter_mut().zip(d.iter()) {
                *o += v;
            }
        }
    }
}

/// The threads of a merge: the cores (a merge runs once, before the model's own threads start).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Tensor {
    /// A matrix named `name` of this one's shape holding `values` (`[rows, cols]`), in the type
    /// the module documentation gives for this one's type and `precision`.
    fn replaced(&self, name: &str, values: &[f32], precision: Precision) -> Tensor {
        let f16_fits = values.iter().all(|v| v.abs() <= f16::MAX.to_f32());
        let dtype = match self.dtype {
            DType::F32 => DType::F32,
            _ if !f16_fits => DType::F32,
            DType::F16 | DType::BF16 => DType::F16,
            _ => match precision {
                Precision::Exact => DType::F16,
                Precision::Fast => DType::Q8_0,
            },
        };
        let cols = self.cols;
        let rb = dtype
            .row_bytes(cols)
            .expect("a row of a quantized matrix fits Q8_0");
        let mut bytes = vec![0u8; rb * self.rows];
        let per = self.rows.div_ceil(threads()).max(1);
        std::thread::scope(|s| {
            for (dst, src) in bytes.chunks_mut(per * rb).zip(values.chunks(per * cols)) {
                s.spawn(move || {
                    for (d, v) in dst.chunks_exact_mut(rb).zip(src.chunks_exact(cols)) {
                        quantize_row(dtype, v, d);
                    }
                });
            }
        });
        Tensor::owned(name, dtype, self.rows, self.cols, bytes)
    }
}
