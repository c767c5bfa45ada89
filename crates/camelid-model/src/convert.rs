//! Converting a checkpoint into a GGUF of another weight type: the type each tensor gets
//! (llama.cpp's mixtures), the tensors' order and sources, their conversion, and the metadata
//! keys of a Llama GGUF. `camelid quantize` and `camelid random-model` parse their arguments and
//! print around these; an already quantized input is requantized only where the caller allows it
//! ([`Planned::requantizes`] says which tensors would be).
//!
//! TYPE names the same file types as llama.cpp's `llama-quantize` (`llama_ftype` in
//! `include/llama.h`, whose numbers go into `general.file_type`), and the per-tensor choices follow
//! its rules (`src/llama-quant.cpp`, `llama_tensor_get_type_impl` and `tensor_type_fallback`), so
//! the two tools put every tensor in the same type:
//!
//! - Only 2-D `*.weight` tensors other than norms are converted; 1-D tensors stay F32.
//! - The output matrix (or, in a model with tied embeddings, the token embedding that serves as
//!   output) gets Q6_K in every quantized type except Q8_0, or Q8_0 when its rows are not a whole
//!   number of the base type's blocks.
//! - The `_M`/`_S`/`_L` mixes and Q2_K raise some tensors: `attn_v` (Q4_K_M, Q5_K_M: Q6_K in the
//!   layers where [`use_more_bits`] holds; Q3_K_M: Q5_K in the first two, else Q4_K; Q3_K_L: Q5_K;
//!   Q4_K_S: Q5_K in the first four; Q2_K: Q4_K with ≥ 4 query heads per KV head, else Q3_K; and
//!   Q5_K instead of Q3_K/Q4_K in a 70B-shaped model), `ffn_down` (Q4_K_M, Q5_K_M: Q6_K where
//!   [`use_more_bits`]; Q3_K_M: Q5_K in the first sixteenth, else Q4_K; Q3_K_L: Q5_K; Q4_K_S: Q5_K
//!   in the first eighth; Q2_K: Q3_K) and `attn_output` (Q2_K:
//!   Q3_K, Q3_K_M: Q4_K, Q3_K_L: Q5_K). IQ4_NL and IQ4_XS: Q5_K for `attn_v` with ≥ 4 query
//!   heads per KV head and for `ffn_down` in the first eighth (llama.cpp's rule without an
//!   importance matrix). llama.cpp counts layers in the order its loader keeps
//!   the tensors (`weight_name_comparer`, `src/llama-model-loader.h`: by block number, then by
//!   name), not in the file's: in a file stored in name order (blk.0, blk.1, blk.10, ..., as
//!   the default model is) the two differ. We take, and write, the tensors in llama.cpp's order.
//! - A row length that is not a whole number of blocks falls back: Q2_K and Q3_K to Q4_0, Q4_K to
//!   Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, IQ4_XS to IQ4_NL, and to F16 when even that does not
//!   divide it.
//! - `--pure` skips the mixture rules (not the fallback), as `llama-quantize --pure` does.
//!
//! A Hugging Face folder is read through [`Checkpoint`](crate::weights::Checkpoint), which undoes HF's
//! Wq/Wk row permutation; the `llama.*` keys are written from its config and the `tokenizer.*`
//! keys from `tokenizer.json` or `tokenizer.model` (the keys llama.cpp's `convert_hf_to_gguf.py`
//! writes for a Llama model, GGUF spec `docs/gguf.md`). Llama 3.1 RoPE scaling becomes a
//! `rope_freqs.weight` tensor of per-pair divisors, as that converter writes it.

use std::io::{self, Write};

use camelid_formats::gguf::{GgmlType, Gguf, GgufWriter, TensorInfo, Value, ValueType, keys};
use camelid_kernels::DType;
use camelid_kernels::quant::quantize_row;
use camelid_tokenizer::{ModelKind, PreTokenizer, Tokenizer};

use crate::config::{Config, RopeScaling};
use crate::weights::{Tensor, Weights};

/// A target file type: llama.cpp's `llama_ftype` (name, number, base tensor type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // llama.cpp's names
pub enum Ftype {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

/// (ftype, name, `llama_ftype` number, base type), `include/llama.h`.
const FTYPES: [(Ftype, &str, u32, DType); 19] = [
    (Ftype::F32, "F32", 0, DType::F32),
    (Ftype::F16, "F16", 1, DType::F16),
    (Ftype::Q4_0, "Q4_0", 2, DType::Q4_0),
    (Ftype::Q4_1, "Q4_1", 3, DType::Q4_1),
    (Ftype::Q8_0, "Q8_0", 7, DType::Q8_0),
    (Ftype::Q5_0, "Q5_0", 8, DType::Q5_0),
    (Ftype::Q5_1, "Q5_1", 9, DType::Q5_1),
    (Ftype::Q2_K, "Q2_K", 10, DType::Q2_K),
    (Ftype::Q3_K_S, "Q3_K_S", 11, DType::Q3_K),
    (Ftype::Q3_K_M, "Q3_K_M", 12, DType::Q3_K),
    (Ftype::Q3_K_L, "Q3_K_L", 13, DType::Q3_K),
    (Ftype::Q4_K_S, "Q4_K_S", 14, DType::Q4_K),
    (Ftype::Q4_K_M, "Q4_K_M", 15, DType::Q4_K),
    (Ftype::Q5_K_S, "Q5_K_S", 16, DType::Q5_K),
    (Ftype::Q5_K_M, "Q5_K_M", 17, DType::Q5_K),
    (Ftype::Q6_K, "Q6_K", 18, DType::Q6_K),
    (Ftype::IQ4_NL, "IQ4_NL", 25, DType::IQ4_NL),
    (Ftype::IQ4_XS, "IQ4_XS", 30, DType::IQ4_XS),
    (Ftype::BF16, "BF16", 32, DType::BF16),
];

impl Ftype {
    pub fn parse(s: &str) -> Option<Ftype> {
        let s = s.to_ascii_uppercase();
        // llama-quantize's short names for the _M mixes.
        let s = match s.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        FTYPES.iter().find(|f| f.1 == s).map(|f| f.0)
    }

    fn entry(self) -> &'static (Ftype, &'static str, u32, DType) {
        FTYPES
            .iter()
            .find(|f| f.0 == self)
            .expect("every ftype is listed")
    }

    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The number written as `general.file_type`.
    pub fn id(self) -> u32 {
        self.entry().2
    }

    pub fn base(self) -> DType {
        self.entry().3
    }

    /// Every file type, in `llama_ftype` order.
    pub fn all() -> impl Iterator<Item = Ftype> {
        FTYPES.iter().map(|f| f.0)
    }
}

/// What a tensor is, for the mixture rules (llama.cpp's `tensor_category`, by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    AttnOutput,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    match name {
        "output.weight" => Category::Output,
        "token_embd.weight" => Category::TokenEmbd,
        _ if name.contains("attn_v.weight") => Category::AttnV,
        _ if name.contains("attn_output.weight") => Category::AttnOutput,
        _ if name.contains("ffn_down") => Category::FfnDown,
        _ => Category::Other,
    }
}

/// llama.cpp's choice of layers that get more bits in the _M mixes: the first and last eighth,
/// and every third layer in between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The model facts the rules look at.
struct Shape {
    n_layers: usize,
    /// Query heads per KV head.
    n_gqa: usize,
    /// llama.cpp's `LLM_TYPE_70B`: 80 layers with grouped-query attention.
    is_70b: bool,
    tied: bool,
    /// Number of `attn_v` tensors.
    n_attn_v: usize,
}

/// Counters over the tensors seen so far, as llama.cpp keeps them.
#[derive(Default)]
struct Counters {
    attn_v: usize,
    ffn_down: usize,
}

/// The type of one converted tensor with `cols` elements per row.
fn choose_type(
    ft: Ftype,
    pure: bool,
    name: &str,
    cols: usize,
    shape: &Shape,
    counters: &mut Counters,
) -> DType {
    let base = ft.base();
    if !base.is_quantized() {
        return base;
    }
    let mut t = base;
    if !pure {
        t = mixture_type(ft, name, cols, shape, counters);
    }
    fallback(t, cols)
}

fn mixture_type(ft: Ftype, name: &str, cols: usize, s: &Shape, c: &mut Counters) -> DType {
    use DType as D;
    use Ftype as F;
    let mut t = ft.base();
    let cat = category(name);
    if cat == Category::Output || (s.tied && cat == Category::TokenEmbd) {
        if !cols.is_multiple_of(t.block_size()) {
            return D::Q8_0;
        }
        return if t == D::Q8_0 { t } else { D::Q6_K };
    }
    match cat {
        Category::Output | Category::TokenEmbd | Category::Other => {}
        Category::AttnV => {
            let i = c.attn_v;
            match ft {
                F::Q2_K => t = if s.n_gqa >= 4 { D::Q4_K } else { D::Q3_K },
                F::Q3_K_M => t = if i < 2 { D::Q5_K } else { D::Q4_K },
                F::Q3_K_L => t = D::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, s.n_attn_v) => t = D::Q6_K,
                F::Q4_K_S if i < 4 => t = D::Q5_K,
                F::IQ4_NL | F::IQ4_XS if s.n_gqa >= 4 => t = D::Q5_K,
                _ => {}
            }
            if s.is_70b && matches!(t, D::Q3_K | D::Q4_K) {
                t = D::Q5_K;
            }
            c.attn_v += 1;
        }
        Category::FfnDown => {
            let (i, n) = (c.ffn_down, s.n_layers);
            match ft {
                F::Q2_K => t = D::Q3_K,
                F::Q3_K_M => t = if i < n / 16 { D::Q5_K } else { D::Q4_K },
                F::Q3_K_L => t = D::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => t = D::Q6_K,
                F::Q4_K_S if i < n / 8 => t = D::Q5_K,
                // llama.cpp: only without an importance matrix, and camelid never has one.
                F::IQ4_NL | F::IQ4_XS if i < n / 8 => t = D::Q5_K,
                _ => {}
            }
            c.ffn_down += 1;
        }
        Category::AttnOutput => match ft {
            F::Q2_K => t = D::Q3_K,
            F::Q3_K_M => t = D::Q4_K,
            F::Q3_K_L => t = D::Q5_K,
            _ => {}
        },
    }
    t
}

/// A type whose blocks divide the row, as llama.cpp falls back.
fn fallback(t: DType, cols: usize) -> DType {
    if cols.is_multiple_of(t.block_size()) {
        return t;
    }
    let f = match t {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        DType::IQ4_XS => DType::IQ4_NL,
        DType::TQ1_0 | DType::TQ2_0 => DType::Q4_0,
        other => other,
    };
    if cols.is_multiple_of(f.block_size()) {
        f
    } else {
        DType::F16
    }
}

/// Where the bytes of one output tensor come from.
enum Source<'a> {
    /// A weight matrix, converted row by row.
    Matrix(&'a Tensor),
    /// A 1-D tensor, written as F32.
    Vector(&'a [f32]),
    /// A tensor camelid does not use, copied as it is.
    Raw(GgmlType, &'a [u8]),
}

/// One tensor of the output file: its name, shape and type, and where its bytes come from.
pub struct Planned<'a> {
    pub name: String,
    /// GGUF order: row length first.
    pub dims: Vec<u64>,
    pub ty: DType,
    source: Source<'a>,
}

impl Planned<'_> {
    /// Bytes in the output file.
    pub fn bytes(&self) -> u64 {
        match self.source {
            Source::Raw(_, b) => b.len() as u64,
            Source::Vector(v) => 4 * v.len() as u64,
            Source::Matrix(t) => (self.ty.row_bytes(t.cols).unwrap_or(0) * t.rows) as u64,
        }
    }

    /// The input tensor when it is quantized and goes to another type: dequantized and
    /// quantized again, which compounds two rounding errors.
    pub fn requantizes(&self) -> Option<&Tensor> {
        match self.source {
            Source::Matrix(t) if t.dtype.is_quantized() && t.dtype != self.ty => Some(t),
            _ => None,
        }
    }
}

fn ggml_type(d: DType) -> GgmlType {
    *GgmlType::ALL
        .iter()
        .find(|t| t.name() == d.name())
        .expect("every camelid type is a ggml type")
}

/// What a conversion reports as it goes (the binary draws a progress bar from it).
pub trait Progress {
    /// Converting or copying the tensor `name` starts (not said of the 1-D tensors).
    fn tensor(&self, name: &str);
    /// `n` more elements are written.
    fn advance(&self, n: u64);
}

/// Every metadata entry of `g` but its alignment, which the writer sets from its own.
pub fn copy_metadata(g: &Gguf, writer: &mut GgufWriter) {
    for (k, v) in g.metadata() {
        if k != keys::general::ALIGNMENT {
            writer.add_metadata(k, v.clone());
        }
    }
}

/// Adds the file-type keys and the planned tensors to `writer`. The tensors are converted when
/// the writer asks for their bytes, each matrix by `threads` threads, so that no more than a
/// few MiB of the output are in memory at once.
pub fn add_tensors<'a>(
    writer: &mut GgufWriter<'a>,
    plan: Vec<Planned<'a>>,
    ft: Ftype,
    threads: usize,
    progress: &'a dyn Progress,
) -> Result<(), camelid_formats::Error> {
    writer.add_metadata(keys::general::FILE_TYPE, Value::U32(ft.id()));
    // GGML_QNT_VERSION (ggml.h): the block layouts of the current quantized types.
    writer.add_metadata(keys::general::QUANTIZATION_VERSION, Value::U32(2));
    for p in plan {
        let name = p.name.clone();
        let n = p.dims.iter().product::<u64>();
        match p.source {
            Source::Raw(ty, bytes) => writer.add_tensor_stream(&p.name, &p.dims, ty, move |w| {
                progress.tensor(&name);
                w.write_all(bytes)?;
                progress.advance(n);
                Ok(())
            })?,
            Source::Vector(v) => {
                writer.add_tensor_stream(&p.name, &p.dims, GgmlType::F32, move |w| {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    w.write_all(&bytes)?;
                    progress.advance(n);
                    Ok(())
                })?
            }
            Source::Matrix(t) => {
                writer.add_tensor_stream(&p.name, &p.dims, ggml_type(p.ty), move |w| {
                    progress.tensor(&name);
                    convert_matrix(t, p.ty, threads, w, progress)
                })?
            }
        }
    }
    Ok(())
}

fn model_shape(c: &Config, tied: bool, n_attn_v: usize) -> Shape {
    Shape {
        n_layers: c.n_layers,
        n_gqa: c.n_heads / c.n_kv_heads,
        is_70b: c.n_layers == 80 && c.n_heads != c.n_kv_heads,
        tied,
        n_attn_v,
    }
}

/// The tensors of a GGUF input, in its order: the model's matrices converted, its 1-D tensors as
/// F32, anything else copied.
pub fn plan_gguf<'a>(
    g: &'a Gguf,
    c: &Config,
    w: &'a Weights,
    ft: Ftype,
    pure: bool,
) -> Vec<Planned<'a>> {
    let matrices: Vec<&Tensor> = w.matrices().collect();
    let mut vectors: Vec<(String, &[f32])> = vec![("output_norm.weight".into(), &w.output_norm)];
    for (i, l) in w.layers.iter().enumerate() {
        vectors.push((format!("blk.{i}.attn_norm.weight"), &l.attn_norm));
        vectors.push((format!("blk.{i}.ffn_norm.weight"), &l.ffn_norm));
    }
    if let Some(f) = &w.rope_freqs {
        vectors.push(("rope_freqs.weight".into(), f));
    }
    let n_attn_v = g
        .tensors()
        .iter()
        .filter(|t| category(&t.name) == Category::AttnV)
        .count();
    let tied = w.output.is_none();
    let shape = model_shape(c, tied, n_attn_v);
    let mut counters = Counters::default();
    let mut plan = Vec::new();
    let mut ordered: Vec<(&str, Option<&TensorInfo>)> = g
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), Some(t)))
        .collect();
    // A LoRA adapter of a tied model's output (`lora.rs`) gives it an output matrix the file
    // lacks.
    if !tied && g.tensor("output.weight").is_none() {
        ordered.push(("output.weight", None));
    }
    ordered.sort_by(|a, b| llama_order(a.0, b.0));
    for (name, t) in ordered {
        if let Some(m) = matrices.iter().find(|m| m.name == name) {
            let ty = choose_type(ft, pure, name, m.cols, &shape, &mut counters);
            plan.push(Planned {
                name: name.to_string(),
                dims: vec![m.cols as u64, m.rows as u64],
                ty,
                source: Source::Matrix(m),
            });
            continue;
        }
        let t = t.expect("only the output matrix is added");
        let dims = t.dims.clone();
        let source = if let Some((_, v)) = vectors.iter().find(|(n, _)| *n == t.name) {
            Source::Vector(v)
        } else {
            Source::Raw(t.ggml_type, g.tensor_data(t))
        };
        let ty = match &source {
            Source::Raw(gt, _) => DType::from_name(gt.name()).unwrap_or(DType::F32),
            _ => DType::F32,
        };
        plan.push(Planned {
            name: t.name.clone(),
            dims,
            ty,
            source,
        });
    }
    plan
}

/// llama.cpp's loader order (`weight_name_comparer`): tensors outside the blocks first, then
/// block by block in numeric order, by name within each.
fn llama_order(a: &str, b: &str) -> std::cmp::Ordering {
    let block = |name: &str| -> Option<u64> {
        let rest = name.strip_prefix("blk.")?;
        rest.split_once('.')?.0.parse().ok()
    };
    block(a).cmp(&block(b)).then_with(|| a.cmp(b))
}

/// The tensors of a Hugging Face input in llama.cpp's names, layer by layer.
pub fn plan_canonical<'a>(
    c: &Config,
    w: &'a Weights,
    rope_freqs: Option<&'a [f32]>,
    ft: Ftype,
    pure: bool,
) -> Vec<Planned<'a>> {
    let shape = model_shape(c, w.output.is_none(), w.layers.len());
    let mut counters = Counters::default();
    let mut plan = Vec::new();
    let matrix = |plan: &mut Vec<Planned<'a>>, t: &'a Tensor, counters: &mut Counters| {
        let ty = choose_type(ft, pure, &t.name, t.cols, &shape, counters);
        plan.push(Planned {
            name: t.name.clone(),
            dims: vec![t.cols as u64, t.rows as u64],
            ty,
            source: Source::Matrix(t),
        });
    };
    let vector = |plan: &mut Vec<Planned<'a>>, name: String, v: &'a [f32]| {
        plan.push(Planned {
            name,
            dims: vec![v.len() as u64],
            ty: DType::F32,
            source: Source::Vector(v),
        });
    };
    if let Some(f) = rope_freqs {
        vector(&mut plan, "rope_freqs.weight".into(), f);
    }
    matrix(&mut plan, &w.token_embd, &mut counters);
    for (i, l) in w.layers.iter().enumerate() {
        vector(&mut plan, format!("blk.{i}.attn_norm.weight"), &l.attn_norm);
        for t in [&l.wq, &l.wk, &l.wv, &l.wo] {
            matrix(&mut plan, t, &mut counters);
        }
        vector(&mut plan, format!("blk.{i}.ffn_norm.weight"), &l.ffn_norm);
        for t in [&l.w_gate, &l.w_up, &l.w_down] {
            matrix(&mut plan, t, &mut counters);
        }
    }
    vector(&mut plan, "output_norm.weight".into(), &w.output_norm);
    if let Some(o) = &w.output {
        matrix(&mut plan, o, &mut counters);
    }
    plan
}

/// Elements converted per step; bounds the buffers to a few MiB whatever the tensor.
const CHUNK_ELEMS: usize = 1 << 22;

/// Writes `t` converted to `ty`, rows split over `threads` threads, chunk by chunk.
fn convert_matrix(
    t: &Tensor,
    ty: DType,
    threads: usize,
    w: &mut dyn Write,
    progress: &dyn Progress,
) -> io::Result<()> {
    if t.dtype == ty {
        w.write_all(t.bytes())?;
        progress.advance((t.rows * t.cols) as u64);
        return Ok(());
    }
    let view = t.view();
    let row_bytes = ty
        .row_bytes(t.cols)
        .expect("the type was chosen to fit the rows");
    let chunk_rows = (CHUNK_ELEMS / t.cols).max(threads).min(t.rows);
    let mut buf = vec![0u8; chunk_rows * row_bytes];
    let mut start = 0;
    while start < t.rows {
        let n = chunk_rows.min(t.rows - start);
        let chunk = &mut buf[..n * row_bytes];
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (k, part) in chunk.chunks_mut(per * row_bytes).enumerate() {
                let view = &view;
                s.spawn(move || {
                    let mut row = vec![0.0f32; t.cols];
                    for (j, dst) in part.chunks_exact_mut(row_bytes).enumerate() {
                        view.dequantize_row_into(start + k * per + j, &mut row);
                        quantize_row(ty, &row, dst);
                    }
                });
            }
        });
        w.write_all(chunk)?;
        progress.advance((n * t.cols) as u64);
        start += n;
    }
    Ok(())
}

/// Llama 3.1 scaling as GGUF stores it: per-pair divisors of the base frequencies (llama.cpp's
/// converter, `LlamaModel.generate_extra_tensors`; the rule in `Config::rope_inv_freq`).
pub fn llama3_rope_divisors(c: &Config) -> Option<Vec<f32>> {
    if !matches!(c.rope_scaling, RopeScaling::Llama3 { .. }) {
        return None;
    }
    let plain = Config {
        rope_scaling: RopeScaling::None,
        ..c.clone()
    };
    Some(
        plain
            .rope_inv_freq()
            .iter()
            .zip(c.rope_inv_freq())
            .map(|(f, scaled)| f / scaled)
            .collect(),
    )
}

/// The `general.*` and `llama.*` keys of a model (GGUF spec, "LLM"), as llama.cpp's converter
/// writes them for a Llama checkpoint.
pub fn llama_metadata(c: &Config, name: &str) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let mut m: Vec<(String, Value)> = vec![
        (
            keys::general::ARCHITECTURE.into(),
            Value::String("llama".into()),
        ),
        (keys::general::TYPE.into(), Value::String("model".into())),
    ];
    if !name.is_empty() {
        m.push((keys::general::NAME.into(), Value::String(name.into())));
    }
    m.extend([
        (keys::llama::BLOCK_COUNT.into(), u(c.n_layers)),
        (keys::llama::CONTEXT_LENGTH.into(), u(c.n_ctx_train)),
        (keys::llama::EMBEDDING_LENGTH.into(), u(c.d_model)),
        (keys::llama::FEED_FORWARD_LENGTH.into(), u(c.d_ff)),
        (keys::llama::HEAD_COUNT.into(), u(c.n_heads)),
        (keys::llama::HEAD_COUNT_KV.into(), u(c.n_kv_heads)),
        (keys::llama::ROPE_FREQ_BASE.into(), Value::F32(c.rope_theta)),
        (keys::llama::RMS_EPSILON.into(), Value::F32(c.norm_eps)),
        (keys::llama::KEY_LENGTH.into(), u(c.head_dim)),
        (keys::llama::VALUE_LENGTH.into(), u(c.head_dim)),
        (keys::llama::VOCAB_SIZE.into(), u(c.n_vocab)),
        (keys::llama::ROPE_DIMENSION_COUNT.into(), u(c.head_dim)),
    ]);
    if let RopeScaling::Linear { factor } = c.rope_scaling {
        m.push((
            keys::llama::ROPE_SCALING_TYPE.into(),
            Value::String("linear".into()),
        ));
        m.push((keys::llama::ROPE_SCALING_FACTOR.into(), Value::F32(factor)));
    }
    m
}

/// The GGUF name of a byte-level pre-tokenizer (llama.cpp `tokenizer.ggml.pre`).
fn pre_name(p: PreTokenizer) -> &'static str {
    match p {
        PreTokenizer::Llama3 => "llama-bpe",
        PreTokenizer::Gpt2 => "gpt2",
        PreTokenizer::SmolLm => "smollm",
    }
}

/// The `tokenizer.*` keys (GGUF spec, "Tokenizer"). A model with more embedding rows than tokens
/// gets padding tokens `[PAD<i>]` of type unused, as llama.cpp's converter pads the vocabulary.
pub fn tokenizer_metadata(tok: &Tokenizer, n_vocab: usize) -> Vec<(String, Value)> {
    let n = tok.n_vocab();
    let spm = tok.kind() == ModelKind::SentencePiece;
    let mut tokens: Vec<Value> = (0..n as u32)
        .map(|i| Value::String(tok.token_piece(i).unwrap_or_default().to_string()))
        .collect();
    let mut types: Vec<Value> = (0..n as u32)
        .map(|i| Value::I32(tok.token_type(i).map_or(1, |t| t as i32)))
        .collect();
    for i in n..n_vocab {
        tokens.push(Value::String(format!("[PAD{i}]")));
        types.push(Value::I32(5));
    }
    let mut m: Vec<(String, Value)> = vec![
        (
            keys::tokenizer::MODEL.into(),
            Value::String(if spm { "llama" } else { "gpt2" }.into()),
        ),
        (
            keys::tokenizer::PRE.into(),
            Value::String(tok.pre_tokenizer().map_or("default", pre_name).into()),
        ),
        (
            keys::tokenizer::TOKENS.into(),
            Value::Array(ValueType::String, tokens),
        ),
    ];
    if spm {
        let scores = spm_scores(tok, n_vocab);
        m.push((
            keys::tokenizer::SCORES.into(),
            Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
        ));
    }
    m.push((
        keys::tokenizer::TOKEN_TYPE.into(),
        Value::Array(ValueType::I32, types),
    ));
    if !spm {
        let piece = |i: u32| tok.token_piece(i).unwrap_or_default();
        let merges: Vec<Value> = tok
            .merges()
            .into_iter()
            .map(|(l, r, _)| Value::String(format!("{} {}", piece(l), piece(r))))
            .collect();
        m.push((
            keys::tokenizer::MERGES.into(),
            Value::Array(ValueType::String, merges),
        ));
    }
    let ids = [
        (keys::tokenizer::BOS_ID, tok.bos()),
        (keys::tokenizer::EOS_ID, tok.eos()),
        (keys::tokenizer::UNKNOWN_ID, tok.unk()),
        (keys::tokenizer::PADDING_ID, tok.pad()),
    ];
    for (k, id) in ids {
        if let Some(id) = id {
            m.push((k.into(), Value::U32(id)));
        }
    }
    m.push((
        keys::tokenizer::ADD_BOS.into(),
        Value::Bool(tok.add_bos_default()),
    ));
    m.push((
        keys::tokenizer::ADD_EOS.into(),
        Value::Bool(tok.add_eos_default()),
    ));
    // llama.cpp assumes a space prefix for SentencePiece; say so only when it is off.
    if spm && !tok.add_space_prefix() {
        m.push((keys::tokenizer::ADD_SPACE_PREFIX.into(), Value::Bool(false)));
    }
    if let Some(t) = tok.chat_template() {
        m.push((
            keys::tokenizer::CHAT_TEMPLATE.into(),
            Value::String(t.into()),
        ));
    }
    m
}

/// SentencePiece scores: as given, or, for a `tokenizer.json` that has merges instead, minus the
/// rank of the merge that makes each piece (so merging by score follows the merge order).
fn spm_scores(tok: &Tokenizer, n_vocab: usize) -> Vec<f32> {
    let mut s = tok.scores().to_vec();
    if s.is_empty() {
        s = vec![0.0; tok.n_vocab()];
        let mut seen = vec![false; tok.n_vocab()];
        for (rank, (_, _, merged)) in tok.merges().into_iter().enumerate() {
            let m = merged as usize;
            if !seen[m] {
                seen[m] = true;
                s[m] = -(rank as f32);
            }
        }
    }
    s.resize(n_vocab, 0.0);
    s
}
#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `use_more_bits` on 16 and 32 layers (the layer lists follow from its formula).
    #[test]
    fn more_bits_layers() {
        let pick = |n| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(pick(16), [0, 1, 4, 7, 10, 13, 14, 15]);
        assert_eq!(pick(2), [1]);
    }

    /// The order of llama.cpp's `weight_name_comparer`: blocks by number, not by text.
    #[test]
    fn tensors_in_llama_cpp_order() {
        let mut names = [
            "blk.10.attn_v.weight",
            "token_embd.weight",
            "blk.2.ffn_down.weight",
            "blk.2.attn_v.weight",
            "output.weight",
            "blk.1.attn_v.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.1.attn_v.weight",
                "blk.2.attn_v.weight",
                "blk.2.ffn_down.weight",
                "blk.10.attn_v.weight",
            ]
        );
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(DType::Q4_K, 64), DType::Q5_0);
        assert_eq!(fallback(DType::Q3_K, 96), DType::Q4_0);
        assert_eq!(fallback(DType::Q6_K, 2048), DType::Q6_K);
        assert_eq!(fallback(DType::Q5_K, 48), DType::F16);
        assert_eq!(fallback(DType::Q8_0, 40), DType::F16);
        assert_eq!(fallback(DType::IQ4_XS, 64), DType::IQ4_NL);
        assert_eq!(fallback(DType::IQ4_XS, 48), DType::F16);
    }

    #[test]
    fn ftype_names() {
        assert_eq!(Ftype::parse("q4_k"), Some(Ftype::Q4_K_M));
        assert_eq!(Ftype::parse("Q4_K_M").map(Ftype::id), Some(15));
        assert_eq!(Ftype::parse("bf16").map(Ftype::id), Some(32));
        assert_eq!(Ftype::parse("Q4_2"), None);
        assert_eq!(Ftype::parse("iq4_xs").map(Ftype::id), Some(30));
        assert_eq!(Ftype::parse("IQ4_NL").map(Ftype::base), Some(DType::IQ4_NL));
    }
}
