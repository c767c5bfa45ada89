//! Loading a checkpoint into one canonical set of weights.
//!
//! Whatever the source (GGUF, Hugging Face safetensors, or Meta's original `consolidated.NN.pth`
//! folders, see `meta.rs`), the model sees the same [`Weights`]:
//! row-major matrices `[out, in]` in the dtype they are stored in, borrowed from the memory map,
//! and Wq/Wk rows in Meta's layout, where RoPE rotates adjacent pairs. Hugging Face checkpoints
//! store Wq/Wk rows permuted for its rotate-half RoPE (transformers
//! `convert_llama_weights_to_hf.py`, `permute`; Wk with `n_kv_heads`); we undo that permutation
//! at load, the same way llama.cpp's converter does (`LlamaModel.permute`), so there is one RoPE.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use camelid_formats::gguf::{Gguf, Value, keys};
use camelid_formats::hf_config::HfConfig;
use camelid_formats::pth::MetaCheckpoint;
use camelid_formats::safetensors::{SafetensorsModel, StDtype};
use camelid_kernels::quant::quantize_row;
use camelid_kernels::{DType, WeightView};

use crate::config::{Config, ConfigError, RopeScaling};
use crate::error::ModelError;

/// Where a tensor's bytes live.
enum Data {
    /// In a GGUF memory map, used in place.
    Gguf(Arc<Gguf>, std::ops::Range<usize>),
    /// In a safetensors memory map, used in place (tensor index into the model's table).
    Safetensors(Arc<SafetensorsModel>, usize),
    /// In a `.pth` memory map, used in place: (shard, tensor index in that shard).
    Pth(Arc<MetaCheckpoint>, usize, usize),
    /// Rearranged at load (HF Wq/Wk, whose rows are permuted; Meta tensors joined from
    /// several model-parallel shards).
    Owned(Vec<u8>),
    /// Copied by the CPU backend into memory of the tensor's own on huge pages
    /// ([`Tensor::lay_out`]), the rows interleaved in eights or in the file's layout.
    Copied {
        buf: camelid_kernels::hugebuf::HugeBuf,
        interleaved: bool,
    },
}

/// A weight matrix `[rows, cols]`.
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

impl Tensor {
    /// The bytes, in the file's layout unless [`Tensor::lay_out`] interleaved them.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Gguf(g, r) => &g.bytes()[r.clone()],
            Data::Safetensors(st, i) => st.data(&st.tensors()[*i]),
            Data::Pth(m, s, i) => m.shards[*s].data(&m.shards[*s].tensors()[*i]),
            Data::Owned(v) => v,
            Data::Copied { buf, .. } => buf,
        }
    }

    pub fn view(&self) -> WeightView<'_> {
        WeightView {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            data: self.bytes(),
            interleaved: matches!(
                self.data,
                Data::Copied {
                    interleaved: true,
                    ..
                }
            ),
        }
    }

    /// Whether the bytes are used in place from a memory map.
    pub fn is_mapped(&self) -> bool {
        !matches!(self.data, Data::Owned(_) | Data::Copied { .. })
    }

    /// Puts the bytes in memory of the tensor's own on huge pages
    /// ([`camelid_kernels::hugebuf`]: a decode step streams every weight once, and streams
    /// faster there than through the map's 4 KiB pages), the rows interleaved in eights
    /// ([`camelid_kernels::interleave`]) where `interleave` asks and the type and rows allow, else
    /// in the file's layout. A map's pages are let go a few MiB at a time as they are copied, so
    /// that the process never holds much of both (a tied 128K-token output matrix is 200 MB).
    pub fn lay_out(&mut self, interleave: bool) {
        use camelid_kernels::interleave::{ROWS, deinterleave_into, fits, interleave_into};
        let interleave = interleave && fits(self.dtype, self.rows, self.cols);
        let from_interleaved = match &self.data {
            Data::Copied { interleaved, .. } if *interleaved == interleave => return,
            Data::Copied { interleaved, .. } => *interleaved,
            _ => false,
        };
        let src = self.bytes();
        let rb = src.len() / self.rows.max(1);
        let mut out = camelid_kernels::hugebuf::HugeBuf::zeroed(src.len());
        // Whole groups of eight rows, so that each slice can be rearranged by itself.
        let group = (ROWS * rb).max(1);
        let step = group * ((4 << 20) / group).max(1);
        for start in (0..src.len()).step_by(step) {
            let range = start..(start + step).min(src.len());
            let (from, to) = (&src[range.clone()], &mut out[range.clone()]);
            let done = if interleave {
                interleave_into(self.dtype, self.cols, from, to)
            } else if from_interleaved {
                deinterleave_into(self.dtype, self.cols, from, to)
            } else {
                to.copy_from_slice(from);
                true
            };
            assert!(
                done,
                "`{}`: whole groups of rows of a type that fits",
                self.name
            );
            self.release(range);
        }
        self.data = Data::Copied {
            buf: out,
            interleaved: interleave,
        };
    }

    /// Lets the memory map's pages of `range` (of this tensor's bytes) go: they are not read
    /// again.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        match &self.data {
            Data::Gguf(g, r) => g.release(r.start + range.start..r.start + range.end),
            Data::Safetensors(st, i) => st.release(&st.tensors()[*i], range),
            Data::Pth(m, s, i) => m.shards[*s].release(&m.shards[*s].tensors()[*i], range),
            Data::Owned(_) | Data::Copied { .. } => {}
        }
    }

    /// A matrix of bytes held in memory (a merged LoRA adapter, `lora.rs`).
    pub(crate) fn owned(
        name: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Tensor {
        Tensor {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            data: Data::Owned(bytes),
        }
    }

    /// The whole tensor as f32 (for the small 1-D norm gains).
    fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, dst) in out.chunks_exact_mut(self.cols).enumerate() {
            self.view().dequantize_row_into(r, dst);
        }
        out
    }
}

/// One transformer block.
pub struct Layer {
    /// `[d_model]`
    pub attn_norm: Vec<f32>,
    /// `[q_dim, d_model]`, `[kv_dim, d_model]`, `[kv_dim, d_model]`, `[d_model, q_dim]`
    pub wq: Tensor,
    pub wk: Tensor,
    pub wv: Tensor,
    pub wo: Tensor,
    /// `[d_model]`
    pub ffn_norm: Vec<f32>,
    /// `[d_ff, d_model]`, `[d_ff, d_model]`, `[d_model, d_ff]`
    pub w_gate: Tensor,
    pub w_up: Tensor,
    pub w_down: Tensor,
}

/// All weights of a Llama model, in the canonical layout.
pub struct Weights {
    /// `[n_vocab, d_model]`
    pub token_embd: Tensor,
    pub layers: Vec<Layer>,
    /// `[d_model]`
    pub output_norm: Vec<f32>,
    /// `[n_vocab, d_model]`; `None` when tied to `token_embd`.
    pub output: Option<Tensor>,
    /// Per-pair RoPE frequency divisors (GGUF `rope_freqs.weight`, Llama 3.1 scaling baked in).
    pub rope_freqs: Option<Vec<f32>>,
}

impl Weights {
    pub fn output(&self) -> &Tensor {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Every matrix, for reporting.
    pub fn matrices(&self) -> impl Iterator<Item = &Tensor> {
        std::iter::once(&self.token_embd)
            .chain(
                self.layers
                    .iter()
                    .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]),
            )
            .chain(self.output.iter())
    }
}

impl Weights {
    /// Random weights of `config`'s shape, for benchmarks and device checks where no checkpoint
    /// can be fetched: matrices in F16 drawn from N(0, 0.02²) (the usual initialisation scale;
    /// speed depends on the shapes and types, not the values), norm gains 1 + N(0, 0.02²), named
    /// as in a GGUF. The same seed gives the same bytes.
    pub fn random(config: &Config, seed: u64) -> Weights {
        let (d, kv, q, ff) = (config.d_model, config.kv_dim(), config.q_dim(), config.d_ff);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Each row draws from its own stream (seed, tensor, row), so rows fill in parallel and
        // the bytes do not depend on the thread count.
        let mut tensor = 0u64;
        let mut matrix = |name: String, rows: usize, cols: usize| {
            tensor += 1;
            let t = tensor;
            let mut data = vec![0u8; rows * cols * 2];
            let per = rows.div_ceil(threads) * cols * 2;
            std::thread::scope(|s| {
                for (k, part) in data.chunks_mut(per).enumerate() {
                    s.spawn(move || {
                        let mut row = vec![0.0f32; cols];
                        for (j, dst) in part.chunks_exact_mut(cols * 2).enumerate() {
                            let r = (k * per / (cols * 2) + j) as u64;
                            let mut rng = Normal::new(seed ^ (t << 40) ^ r);
                            row.iter_mut().for_each(|x| *x = 0.02 * rng.next());
                            quantize_row(DType::F16, &row, dst);
                        }
                    });
                }
            });
            Tensor {
                name,
                dtype: DType::F16,
                rows,
                cols,
                data: Data::Owned(data),
            }
        };
        let token_embd = matrix("token_embd.weight".into(), config.n_vocab, d);
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: Vec::new(),
                wq: matrix(n("attn_q"), q, d),
                wk: matrix(n("attn_k"), kv, d),
                wv: matrix(n("attn_v"), kv, d),
                wo: matrix(n("attn_output"), d, q),
                ffn_norm: Vec::new(),
                w_gate: matrix(n("ffn_gate"), ff, d),
                w_up: matrix(n("ffn_up"), ff, d),
                w_down: matrix(n("ffn_down"), d, ff),
            });
        }
        let output =
            (!config.tied_embeddings).then(|| matrix("output.weight".into(), config.n_vocab, d));
        let mut rng = Normal::new(seed);
        let mut gain = || {
            (0..d)
                .map(|_| 1.0 + 0.02 * rng.next())
                .collect::<Vec<f32>>()
        };
        for l in &mut layers {
            l.attn_norm = gain();
            l.ffn_norm = gain();
        }
        Weights {
            token_embd,
            layers,
            output_norm: gain(),
            output,
            rope_freqs: None,
        }
    }
}

/// Standard normal draws: xorshift64* uniforms through Box-Muller (Marsaglia 2003; Box & Muller
/// 1958), two draws per pair of uniforms.
struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        Normal {
            state: seed ^ 0x9E37_79B9_7F4A_7C15 | 1,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // 53 random bits in (0, 1]: never 0, so the logarithm is finite.
        ((x >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        self.spare = Some((r * t.sin()) as f32);
        (r * t.cos()) as f32
    }
}

/// A checkpoint opened for loading: its config and a way to fetch tensors by GGUF name.
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: Config,
    source: Source,
}

enum Source {
    Gguf(Arc<Gguf>),
    /// Hugging Face safetensors: tensors are looked up by their HF names.
    Hf(Arc<SafetensorsModel>),
    /// Meta's release folder: looked up by Meta's names, shards joined.
    Meta(Arc<MetaCheckpoint>),
}

impl Checkpoint {
    /// Opens a GGUF file, a Hugging Face folder (config.json + safetensors), or a Meta release
    /// folder (params.json + consolidated.NN.pth; also given as one of its `.pth` files).
    pub fn open(path: &Path) -> Result<Checkpoint, ModelError> {
        if path.is_dir() {
            if !path.join("config.json").is_file() && MetaCheckpoint::is_meta_folder(path) {
                return Self::open_meta(path);
            }
            return Self::open_hf(path);
        }
        if path.extension().is_some_and(|e| e == "pth") {
            let dir = path.parent().unwrap_or(Path::new("."));
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            return Self::open_meta(dir);
        }
        if camelid_formats::gguf::has_magic(path) {
            Self::open_gguf(path)
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            Self::open_hf(path.parent().unwrap_or(Path::new(".")))
        } else if !path.exists() {
            Err(ModelError::NotAModel {
                path: path.into(),
                msg: "no such file or folder".into(),
            })
        } else {
            Err(ModelError::NotAModel {
                path: path.into(),
                msg: "not a GGUF file (no `GGUF` magic) nor a Hugging Face model folder".into(),
            })
        }
    }

    fn open_gguf(path: &Path) -> Result<Checkpoint, ModelError> {
        let g = Arc::new(Gguf::open(path)?);
        let config = config_from_gguf(&g)?;
        Ok(Checkpoint {
            path: path.into(),
            config,
            source: Source::Gguf(g),
        })
    }

    fn open_hf(dir: &Path) -> Result<Checkpoint, ModelError> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(ModelError::NotAModel {
                path: dir.into(),
                msg: "folder has no config.json: not a Hugging Face model folder (config.json and safetensors) nor a Meta release folder (params.json and consolidated.NN.pth)".into(),
            });
        }
        let hf = camelid_formats::hf_config::load(&cfg_path)?;
        let st = Arc::new(SafetensorsModel::open(dir)?);
        let tied_default = st.tensor("lm_head.weight").is_none();
        let config = config_from_hf(&hf, tied_default).map_err(|err| ModelError::Config {
            path: cfg_path.clone(),
            err,
        })?;
        Ok(Checkpoint {
            path: dir.into(),
            config,
            source: Source::Hf(st),
        })
    }

    fn open_meta(dir: &Path) -> Result<Checkpoint, ModelError> {
        if !dir.join(camelid_formats::pth::PARAMS_FILE).is_file() {
            return Err(ModelError::NotAModel {
                path: dir.into(),
                msg: "a .pth file is read as part of a Meta release folder (params.json + consolidated.NN.pth), and this folder has no params.json".into(),
            });
        }
        let ck = Arc::new(MetaCheckpoint::open(dir)?);
        let config = crate::meta::config(&ck)?;
        Ok(Checkpoint {
            path: dir.into(),
            config,
            source: Source::Meta(ck),
        })
    }

    /// The underlying GGUF, when the checkpoint is one.
    pub fn gguf(&self) -> Option<&Gguf> {
        match &self.source {
            Source::Gguf(g) => Some(g),
            _ => None,
        }
    }

    /// The underlying safetensors, when the checkpoint is a Hugging Face folder.
    pub fn safetensors(&self) -> Option<&SafetensorsModel> {
        match &self.source {
            Source::Hf(st) => Some(st),
            _ => None,
        }
    }

    /// The underlying Meta release folder, when the checkpoint is one.
    pub fn meta(&self) -> Option<&MetaCheckpoint> {
        match &self.source {
            Source::Meta(m) => Some(m),
            _ => None,
        }
    }

    /// Loads and checks every tensor against the config.
    pub fn load_weights(&self) -> Result<Weights, ModelError> {
        let c = &self.config;
        let (d, q, kv, ff, v) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff, c.n_vocab);
        let token_embd = self.matrix("token_embd.weight", v, d)?;
        let output = match self.find("output.weight")? {
            Some(_) if c.tied_embeddings => None,
            Some(_) => Some(self.matrix("output.weight", v, d)?),
            None if c.tied_embeddings => None,
            None => return Err(self.missing("output.weight")),
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let mut wq = self.matrix(&n("attn_q"), q, d)?;
            let mut wk = self.matrix(&n("attn_k"), kv, d)?;
            if matches!(self.source, Source::Hf(_)) {
                wq = unpermute_rows(wq, c.n_heads, c.head_dim);
                wk = unpermute_rows(wk, c.n_kv_heads, c.head_dim);
            }
            layers.push(Layer {
                attn_norm: self.vector(&n("attn_norm"), d)?,
                wq,
                wk,
                wv: self.matrix(&n("attn_v"), kv, d)?,
                wo: self.matrix(&n("attn_output"), d, q)?,
                ffn_norm: self.vector(&n("ffn_norm"), d)?,
                w_gate: self.matrix(&n("ffn_gate"), ff, d)?,
                w_up: self.matrix(&n("ffn_up"), ff, d)?,
                w_down: self.matrix(&n("ffn_down"), d, ff)?,
            });
        }
        let rope_freqs = match self.find("rope_freqs.weight")? {
            Some(_) => Some(self.vector("rope_freqs.weight", c.head_dim / 2)?),
            None => None,
        };
        Ok(Weights {
            token_embd,
            layers,
            output_norm: self.vector("output_norm.weight", d)?,
            output,
            rope_freqs,
        })
    }

    fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingTensor {
            path: self.path.clone(),
            tensor: self.source_name(name),
        }
    }

    fn source_name(&self, gguf_name: &str) -> String {
        match self.source {
            Source::Gguf(_) => gguf_name.to_string(),
            Source::Hf(_) => hf_name(gguf_name),
            Source::Meta(_) => {
                crate::meta::meta_name(gguf_name).unwrap_or_else(|| gguf_name.to_string())
            }
        }
    }

    /// Finds a tensor by its GGUF name: `(dtype, shape as [rows, cols] or [n], data)`.
    fn find(&self, name: &str) -> Result<Option<(DType, Vec<usize>, Data)>, ModelError> {
        let unsupported = |dtype: &str| ModelError::UnsupportedType {
            path: self.path.clone(),
            tensor: self.source_name(name),
            dtype: dtype.to_string(),
        };
        match &self.source {
            Source::Gguf(g) => {
                let Some(t) = g.tensor(name) else {
                    return Ok(None);
                };
                // Every type camelid-kernels knows goes by its ggml name (F16, Q4_K, ...).
                let name = t.ggml_type.name();
                let dtype = DType::from_name(name).ok_or_else(|| unsupported(name))?;
                // GGUF lists dimensions fastest first: [cols, rows].
                let shape: Vec<usize> = t.dims.iter().rev().map(|&x| x as usize).collect();
                Ok(Some((
                    dtype,
                    shape,
                    Data::Gguf(g.clone(), t.data_range.clone()),
                )))
            }
            Source::Hf(st) => {
                let hf = hf_name(name);
                let Some(i) = st.tensors().iter().position(|t| t.name == hf) else {
                    return Ok(None);
                };
                let t = &st.tensors()[i];
                let dtype = match t.dtype {
                    StDtype::F32 => DType::F32,
                    StDtype::F16 => DType::F16,
                    StDtype::BF16 => DType::BF16,
                    other => return Err(unsupported(&format!("{other:?}"))),
                };
                Ok(Some((
                    dtype,
                    t.shape.clone(),
                    Data::Safetensors(st.clone(), i),
                )))
            }
            Source::Meta(m) => {
                let Some((dtype, shape, found)) = crate::meta::find(m, name, self.config.d_model)?
                else {
                    return Ok(None);
                };
                let data = match found {
                    crate::meta::Found::InPlace(shard) => {
                        let meta = crate::meta::meta_name(name).expect("found by this name");
                        let i = m.shards[shard]
                            .tensors()
                            .iter()
                            .position(|t| t.name == meta)
                            .expect("found in this shard");
                        Data::Pth(m.clone(), shard, i)
                    }
                    crate::meta::Found::Joined(bytes) => Data::Owned(bytes),
                };
                Ok(Some((dtype, shape, data)))
            }
        }
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor, ModelError> {
        let (dtype, shape, data) = self.find(name)?.ok_or_else(|| self.missing(name))?;
        if shape != [rows, cols] {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                tensor: self.source_name(name),
                expected: vec![rows, cols],
                got: shape,
            });
        }
        let t = Tensor {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            data,
        };
        // The readers have checked that the bytes fit the file; this checks they fit the shape.
        if WeightView::new(dtype, rows, cols, t.bytes()).is_none() {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                tensor: self.source_name(name),
                expected: vec![rows, cols],
                got: vec![t.bytes().len(), 0],
            });
        }
        Ok(t)
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let (dtype, shape, data) = self.find(name)?.ok_or_else(|| self.missing(name))?;
        if shape != [n] {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                tensor: self.source_name(name),
                expected: vec![n],
                got: shape,
            });
        }
        let t = Tensor {
            name: name.to_string(),
            dtype,
            rows: 1,
            cols: n,
            data,
        };
        Ok(t.to_f32())
    }
}

/// The Hugging Face name of a GGUF tensor name (transformers `LlamaForCausalLM` state dict).
fn hf_name(gguf: &str) -> String {
    let fixed = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        ("rope_freqs.weight", "rope_freqs.weight"),
    ];
    if let Some((_, hf)) = fixed.iter().find(|(g, _)| *g == gguf) {
        return hf.to_string();
    }
    let Some(rest) = gguf.strip_prefix("blk.") else {
        return gguf.to_string();
    };
    let Some((layer, part)) = rest.split_once('.') else {
        return gguf.to_string();
    };
    let part = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        other => other,
    };
    format!("model.layers.{layer}.{part}")
}

/// Undoes Hugging Face's Wq/Wk row permutation on a matrix of `heads · head_dim` rows.
fn unpermute_rows(t: Tensor, heads: usize, head_dim: usize) -> Tensor {
    let src = t.bytes();
    let out = meta_row_order(src, src.len() / t.rows, heads, head_dim);
    Tensor {
        data: Data::Owned(out),
        ..t
    }
}

/// Rows of `row` elements each, `heads · head_dim` of them, from Hugging Face's Wq/Wk order into
/// Meta's: within each head, HF row `j·(hd/2) + i` holds Meta's row `2i + j` (transformers
/// `permute`: view(heads, hd/2, 2, d).transpose(1, 2)).
pub(crate) fn meta_row_order<T: Copy + Default>(
    src: &[T],
    row: usize,
    heads: usize,
    head_dim: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); src.len()];
    let half = head_dim / 2;
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let meta = h * head_dim + 2 * i + j;
                let hf = h * head_dim + j * half + i;
                out[meta * row..][..row].copy_from_slice(&src[hf * row..][..row]);
            }
        }
    }
    out
}

fn cfg_err(field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        msg: msg.into(),
    }
}

/// Reads the `llama.*` keys (GGUF spec, "LLM" section) and checks them against the tensors.
fn config_from_gguf(g: &Gguf) -> Result<Config, ModelError> {
    let path = g.path().to_path_buf();
    let err = |field: &str, msg: String| ModelError::Config {
        path: path.clone(),
        err: cfg_err(field, msg),
    };
    let arch = g
        .get(keys::general::ARCHITECTURE)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            err(
                keys::general::ARCHITECTURE,
                "missing or not a string".into(),
            )
        })?;
    if arch != "llama" {
        return Err(ModelError::Architecture {
            path: path.clone(),
            arch: arch.to_string(),
        });
    }
    let uint = |key: &str| -> Result<Option<usize>, ModelError> {
        g.get_as(key, "an unsigned integer", |v| {
            v.as_u64().map(|x| x as usize)
        })
        .map_err(|msg| err(key, msg))
    };
    let float = |key: &str| -> Result<Option<f32>, ModelError> {
        g.get_as(key, "a number", Value::as_f32)
            .map_err(|msg| err(key, msg))
    };
    let need = |key: &str| -> Result<usize, ModelError> {
        uint(key)?.ok_or_else(|| err(key, "missing".into()))
    };
    let d_model = need(keys::llama::EMBEDDING_LENGTH)?;
    let n_heads = need(keys::llama::HEAD_COUNT)?;
    let n_kv_heads = uint(keys::llama::HEAD_COUNT_KV)?.unwrap_or(n_heads);
    let head_dim = match uint(keys::llama::KEY_LENGTH)? {
        Some(k) => k,
        None if n_heads > 0 => d_model / n_heads,
        None => 0,
    };
    if let Some(rd) = uint(keys::llama::ROPE_DIMENSION_COUNT)?
        && rd != head_dim
    {
        return Err(err(
            keys::llama::ROPE_DIMENSION_COUNT,
            format!(
                "{rd} differs from the head size {head_dim}; partial RoPE is not a Llama feature"
            ),
        ));
    }
    // The vocabulary size is the embedding's row count; a declared size must agree.
    let embd = g
        .tensor("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            path: path.clone(),
            tensor: "token_embd.weight".into(),
        })?;
    let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
    if let Some(v) = uint(keys::llama::VOCAB_SIZE)?
        && v != n_vocab
    {
        return Err(err(
            keys::llama::VOCAB_SIZE,
            format!("{v} differs from token_embd.weight's {n_vocab} rows"),
        ));
    }
    let rope_scaling = match g
        .get(keys::llama::ROPE_SCALING_TYPE)
        .and_then(Value::as_str)
    {
        None | Some("none") => match float(keys::llama::ROPE_SCALE_LINEAR)? {
            Some(f) if f != 1.0 => RopeScaling::Linear { factor: f },
            _ => RopeScaling::None,
        },
        Some("linear") => RopeScaling::Linear {
            factor: float(keys::llama::ROPE_SCALING_FACTOR)?
                .ok_or_else(|| err(keys::llama::ROPE_SCALING_FACTOR, "missing".into()))?,
        },
        // Llama 3.1 files carry their scaling as `rope_freqs.weight` instead.
        Some(other) => {
            return Err(err(
                keys::llama::ROPE_SCALING_TYPE,
                format!("`{other}` is not supported (none, linear)"),
            ));
        }
    };
    let config = Config {
        n_vocab,
        d_model,
        n_layers: need(keys::llama::BLOCK_COUNT)?,
        n_heads,
        n_kv_heads,
        head_dim,
        d_ff: need(keys::llama::FEED_FORWARD_LENGTH)?,
        // No default for eps: a silently wrong eps was a bug other engines shipped.
        norm_eps: float(keys::llama::RMS_EPSILON)?
            .ok_or_else(|| err(keys::llama::RMS_EPSILON, "missing".into()))?,
        rope_theta: float(keys::llama::ROPE_FREQ_BASE)?.unwrap_or(10000.0),
        rope_scaling,
        n_ctx_train: need(keys::llama::CONTEXT_LENGTH)?,
        tied_embeddings: g.tensor("output.weight").is_none(),
    };
    config
        .validate()
        .map_err(|e| ModelError::Config { path, err: e })?;
    Ok(config)
}

/// Builds a [`Config`] from `config.json`, with transformers' `LlamaConfig` defaults.
fn config_from_hf(hf: &HfConfig, no_lm_head: bool) -> Result<Config, ConfigError> {
    if let Some(mt) = &hf.model_type
        && mt != "llama"
    {
        return Err(cfg_err(
            "model_type",
            format!("`{mt}` is not supported (llama)"),
        ));
    }
    let need = |v: Option<usize>, field: &str| v.ok_or_else(|| cfg_err(field, "missing"));
    let d_model = need(hf.hidden_size, "hidden_size")?;
    let n_heads = need(hf.num_attention_heads, "num_attention_heads")?;
    let head_dim = match hf.head_dim {
        Some(h) => h,
        None if n_heads > 0 => d_model / n_heads,
        None => 0,
    };
    // transformers 5 moved `rope_theta` and the scaling into `rope_parameters`.
    let rope_params = hf.rope_scaling.as_ref().or(hf.rope_parameters.as_ref());
    let rope_theta = hf
        .rope_theta
        .or(hf.rope_parameters.as_ref().and_then(|p| p.rope_theta));
    let rope_scaling = match rope_params {
        None => RopeScaling::None,
        Some(rs) => match rs.rope_type.as_deref() {
            None | Some("default") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: rs
                    .factor
                    .ok_or_else(|| cfg_err("rope_scaling.factor", "missing"))?
                    as f32,
            },
            Some("llama3") => RopeScaling::Llama3 {
                factor: rs
                    .factor
                    .ok_or_else(|| cfg_err("rope_scaling.factor", "missing"))?
                    as f32,
                low_freq_factor: rs
                    .low_freq_factor
                    .ok_or_else(|| cfg_err("rope_scaling.low_freq_factor", "missing"))?
                    as f32,
                high_freq_factor: rs
                    .high_freq_factor
                    .ok_or_else(|| cfg_err("rope_scaling.high_freq_factor", "missing"))?
                    as f32,
                original_context: rs.original_max_position_embeddings.ok_or_else(|| {
                    cfg_err("rope_scaling.original_max_position_embeddings", "missing")
                })?,
            },
            Some(other) => {
                return Err(cfg_err(
                    "rope_scaling.rope_type",
                    format!("`{other}` is not supported (linear, llama3)"),
                ));
            }
        },
    };
    let config = Config {
        n_vocab: need(hf.vocab_size, "vocab_size")?,
        d_model,
        n_layers: need(hf.num_hidden_layers, "num_hidden_layers")?,
        n_heads,
        n_kv_heads: hf.num_key_value_heads.unwrap_or(n_heads),
        head_dim,
        d_ff: need(hf.intermediate_size, "intermediate_size")?,
        norm_eps: hf.rms_norm_eps.unwrap_or(1e-6) as f32,
        rope_theta: rope_theta.unwrap_or(10000.0) as f32,
        rope_scaling,
        n_ctx_train: hf.max_position_embeddings.unwrap_or(2048),
        tied_embeddings: hf.tie_word_embeddings.unwrap_or(false)
            || no_lm_head && hf.tie_word_embeddings.is_none(),
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HF's permute on an 8-dim head (rows a0 b0 a1 b1 a2 b2 a3 b3 in Meta's order) gives
    /// a0 a1 a2 a3 b0 b1 b2 b3; undoing it restores Meta's order.
    #[test]
    fn unpermute_restores_meta_row_order() {
        let hf_rows: [u8; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
        let t = Tensor {
            name: "q".into(),
            dtype: DType::F32,
            rows: 8,
            cols: 1,
            data: Data::Owned(
                hf_rows
                    .iter()
                    .flat_map(|&r| (r as f32).to_le_bytes())
                    .collect(),
            ),
        };
        let t = unpermute_rows(t, 1, 8);
        let got: Vec<f32> = t
            .bytes()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(got, [0., 1., 2., 3., 4., 5., 6., 7.]);
    }

    #[test]
    fn hf_names() {
        assert_eq!(
            hf_name("blk.3.attn_k.weight"),
            "model.layers.3.self_attn.k_proj.weight"
        );
        assert_eq!(hf_name("output.weight"), "lm_head.weight");
    }
}
