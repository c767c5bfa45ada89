//! Evaluation: perplexity, KL divergence against a reference run, and multiple-choice scoring.
//!
//! Perplexity follows llama.cpp's `llama-perplexity` (tools/perplexity/perplexity.cpp, the
//! default non-strided mode), so that numbers can be compared with the ones people publish:
//! - the whole text is tokenized once, with BOS in front when the vocabulary asks for it;
//! - the tokens are cut into `n = ⌊len / n_ctx⌋` non-overlapping chunks of `n_ctx` tokens (the
//!   tail is dropped), at least two of them;
//! - each chunk is evaluated from an empty cache, its first token replaced by BOS when the
//!   vocabulary adds BOS (so every chunk starts like a document), and kept as is otherwise;
//! - only the second half is scored: the logits at positions `n_ctx/2 .. n_ctx-2` predict the
//!   tokens at `n_ctx/2 + 1 .. n_ctx-1`, `n_ctx - 1 - n_ctx/2` tokens per chunk, so every scored
//!   token has at least half a context of history;
//! - `PPL = exp(mean NLL)`, with the standard error `PPL · sqrt((E[x²] − E[x]²)/(N − 1))` of the
//!   mean NLL `x` carried through the exponential.
//!
//! KL divergence compares a model `Q` with a reference run `P` on the same chunks, as
//! `llama-perplexity --kl-divergence` does: per scored token `KL(P‖Q) = Σ_i p_i (ln p_i − ln q_i)`
//! over the whole vocabulary, whether the arg-max tokens agree, and the perplexities of both.
//! The reference's log-probabilities travel in a file of our own format ([`LogitsHeader`]).
//!
//! Multiple-choice scoring ranks the endings of a HellaSwag-style task by their mean per-token
//! log-likelihood given the context, as llama.cpp's `--hellaswag` mode does (`acc_norm`).

use std::fmt;
use std::io::{self, Read, Write};

use camelid_model::{Model, ModelError, State};
use camelid_tokenizer::Tokenizer;
use half::f16;

/// Errors of the evaluation routines.
#[derive(Debug)]
pub enum EvalError {
    /// The text is too short for two chunks of the context.
    TooFewTokens { n_tokens: usize, n_ctx: usize },
    /// A context too small to leave a scored token in the second half.
    ContextTooSmall { n_ctx: usize },
    /// The model failed (token out of range, context full).
    Model(ModelError),
    /// A logits file that is not in the expected format, at a byte offset.
    LogitsFile { offset: u64, msg: String },
    /// A logits file made with another model, context or text.
    LogitsMismatch {
        what: &'static str,
        file: String,
        here: String,
    },
    /// A multiple-choice task that cannot be scored (numbered from 1).
    Task { task: usize, msg: String },
    /// A line of a task file that is not a task (numbered from 1; 0 for the whole file).
    TaskLine { line: usize, msg: String },
    /// Reading or writing logits (a logits file, JSON logits) failed.
    Io(io::Error),
    /// An error in one chunk of a run (numbered from 1).
    InChunk {
        chunk: usize,
        source: Box<EvalError>,
    },
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::TooFewTokens { n_tokens, n_ctx } => write!(
                f,
                "the text has {n_tokens} tokens; perplexity at context {n_ctx} needs at least {} \
                 (two chunks): use a longer text or a smaller --ctx",
                2 * n_ctx
            ),
            EvalError::ContextTooSmall { n_ctx } => {
                write!(
                    f,
                    "context {n_ctx} is too small: perplexity needs at least 4"
                )
            }
            EvalError::Model(e) => e.fmt(f),
            EvalError::LogitsFile { offset, msg } => {
                write!(f, "not a camelid logits file (at byte {offset}): {msg}")
            }
            EvalError::LogitsMismatch { what, file, here } => write!(
                f,
                "the logits file does not belong to this run: {what} is {file} in the file but \
                 {here} here"
            ),
            EvalError::Task { task, msg } => write!(f, "task {task}: {msg}"),
            EvalError::TaskLine { line: 0, msg } => f.write_str(msg),
            EvalError::TaskLine { line, msg } => write!(f, "line {line}: {msg}"),
            // The cause follows in the error's chain (`source`).
            EvalError::Io(_) => f.write_str("could not read or write logits"),
            EvalError::InChunk { chunk, source } => write!(f, "chunk {chunk}: {source}"),
        }
    }
}

impl std::error::Error for EvalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent, as `Display` is: the model error's own source, not the model error
            // again (an error chain would print it twice).
            EvalError::Model(e) => std::error::Error::source(e),
            EvalError::Io(e) => Some(e),
            EvalError::InChunk { source, .. } => source.source(),
            _ => None,
        }
    }
}

impl From<ModelError> for EvalError {
    fn from(e: ModelError) -> EvalError {
        EvalError::Model(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Log-probabilities and running statistics

/// `ln Σ_i exp(x_i)`, shifted by the maximum so that no term overflows: the sum of
/// [`crate::exp_sum`] (each exponential within 1.5e-7 of its value, summed within 2^-46 a term
/// of the exact sum, in vector lanes), in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = camelid_model::backend::max_logit(logits);
    max as f64 + crate::exp_sum::exp_sum_slice(logits, max, 1.0).ln()
}

/// `out[i] = x_i − ln Σ_j exp(x_j)`: the log-probabilities of a row of logits.
pub fn log_softmax_into(logits: &[f32], out: &mut [f32]) {
    let log_z = log_sum_exp(logits);
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = (x as f64 - log_z) as f32;
    }
}

/// Index of the largest value (the first one on ties, as a greedy sampler picks).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// Running sums of a sample (negative log-likelihoods, KL divergences): mean and the standard
/// error of the mean.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    pub sum: f64,
    pub sum2: f64,
    pub count: u64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.sum += x;
        self.sum2 += x * x;
        self.count += 1;
    }

    pub fn add(&mut self, other: &Moments) {
        self.sum += other.sum;
        self.sum2 += other.sum2;
        self.count += other.count;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    /// `sqrt((E[x²] − E[x]²) / (N − 1))`, 0 below two samples.
    pub fn stderr(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let m = self.sum / n;
        let var = self.sum2 / n - m * m;
        if var > 0.0 {
            (var / (n - 1.0)).sqrt()
        } else {
            0.0
        }
    }

    /// `exp(mean)`: the perplexity when the sample is of negative log-likelihoods.
    pub fn ppl(&self) -> f64 {
        self.mean().exp()
    }

    /// The standard error of [`Moments::ppl`] to first order: `d exp(m) = exp(m) dm`.
    pub fn ppl_stderr(&self) -> f64 {
        self.ppl() * self.stderr()
    }
}

// ---------------------------------------------------------------------------------------------
// Chunks and their evaluation

/// How a token sequence is cut into perplexity chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunks {
    pub n_ctx: usize,
    pub n_chunks: usize,
}

impl Chunks {
    /// `⌊n_tokens / n_ctx⌋` chunks, at most `max_chunks`; an error below two chunks (llama.cpp
    /// asks for `2·n_ctx` tokens) or for a context with nothing to score.
    pub fn new(
        n_tokens: usize,
        n_ctx: usize,
        max_chunks: Option<usize>,
    ) -> Result<Chunks, EvalError> {
        if n_ctx < 4 {
            return Err(EvalError::ContextTooSmall { n_ctx });
        }
        if n_tokens < 2 * n_ctx {
            return Err(EvalError::TooFewTokens { n_tokens, n_ctx });
        }
        let all = n_tokens / n_ctx;
        Ok(Chunks {
            n_ctx,
            n_chunks: max_chunks.map_or(all, |m| m.min(all)),
        })
    }

    /// Position of the first logits row that is scored: `n_ctx / 2`.
    pub fn first(&self) -> usize {
        self.n_ctx / 2
    }

    /// Scored tokens per chunk: `n_ctx − 1 − n_ctx/2`.
    pub fn scored_per_chunk(&self) -> usize {
        self.n_ctx - 1 - self.first()
    }

    /// The tokens of chunk `i`.
    pub fn chunk<'t>(&self, tokens: &'t [u32], i: usize) -> &'t [u32] {
        &tokens[i * self.n_ctx..(i + 1) * self.n_ctx]
    }

    /// All evaluated tokens: the first `n_chunks · n_ctx`.
    pub fn evaluated<'t>(&self, tokens: &'t [u32]) -> &'t [u32] {
        &tokens[..self.n_chunks * self.n_ctx]
    }
}

/// One scored position of a chunk, handed to the caller of [`eval_chunk`].
pub struct ScoredRow<'a> {
    /// 0 .. `scored_per_chunk`.
    pub index: usize,
    /// The token the logits predict.
    pub target: u32,
    pub logits: &'a [f32],
    /// `ln Σ exp(logits)`.
    pub log_z: f64,
    /// `log_z − logits[target]`.
    pub nll: f64,
}

/// Evaluates one chunk from an empty cache (`state` is reused; it must hold `chunk.len()`
/// tokens), with its first token replaced by `bos` if given. Returns the NLL moments of the
/// scored half and calls `on_row` for each scored position, in order.
pub fn eval_chunk(
    model: &Model,
    state: &mut State,
    chunk: &[u32],
    bos: Option<u32>,
    mut on_row: impl FnMut(ScoredRow<'_>),
) -> Result<Moments, EvalError> {
    let n_ctx = chunk.len();
    if n_ctx < 4 {
        return Err(EvalError::ContextTooSmall { n_ctx });
    }
    let first = n_ctx / 2;
    let mut tokens = chunk.to_vec();
    if let Some(b) = bos {
        tokens[0] = b;
    }
    state.pos = 0;
    // The first half only builds the cache: no logits rows are needed there, and the output
    // projection is a large share of a small model's work.
    model.forward(state, &tokens[..first], false, |_, _| {})?;
    let mut m = Moments::default();
    let mut log_z = Vec::new();
    let v = model.config.n_vocab;
    model.forward_batches(state, &tokens[first..], |start, rows| {
        log_sum_exp_rows(rows, v, &mut log_z);
        for (j, (logits, &log_z)) in rows.chunks_exact(v).zip(&log_z).enumerate() {
            // Row i is position first + i; the last position predicts nothing inside the chunk.
            let i = start + j;
            if first + i + 1 >= n_ctx {
                return;
            }
            let target = tokens[first + i + 1];
            let nll = log_z - logits[target as usize] as f64;
            m.push(nll);
            on_row(ScoredRow {
                index: i,
                target,
                logits,
                log_z,
                nll,
            });
        }
    })?;
    Ok(m)
}

/// [`log_sum_exp`] of each row of `rows` (`[n, v]`) into `out`, the rows shared out over the
/// host's cores: a pass on a GPU gives its rows faster than one core sums them.
pub fn log_sum_exp_rows(rows: &[f32], v: usize, out: &mut Vec<f64>) {
    let n = rows.len() / v.max(1);
    out.clear();
    out.resize(n, 0.0);
    // Read once: on Linux the answer comes from the cgroup's files.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |t| t.get()));
    let per = n.div_ceil(threads.min(n).max(1)).max(1);
    let sums = |rows: &[f32], out: &mut [f64]| {
        for (row, o) in rows.chunks_exact(v).zip(out) {
            *o = log_sum_exp(row);
        }
    };
    // The first share on this thread, the others on threads of their own.
    std::thread::scope(|s| {
        let mut shares = rows.chunks(per * v).zip(out.chunks_mut(per));
        let here = shares.next();
        for (rows, out) in shares {
            s.spawn(move || sums(rows, out));
        }
        if let Some((rows, out)) = here {
            sums(rows, out);
        }
    });
}

/// The BOS a chunk starts with: llama.cpp puts it in only when the vocabulary adds BOS.
pub fn chunk_bos(tok: &Tokenizer) -> Option<u32> {
    tok.bos().filter(|_| tok.add_bos_default())
}

/// Perplexity of `tokens` chunk by chunk; `on_chunk(i, chunk, running)` after each chunk.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    chunks: Chunks,
    bos: Option<u32>,
    mut on_chunk: impl FnMut(usize, &Moments, &Moments),
) -> Result<Moments, EvalError> {
    let mut state = model.new_state(chunks.n_ctx)?;
    let mut total = Moments::default();
    for i in 0..chunks.n_chunks {
        let m = eval_chunk(model, &mut state, chunks.chunk(tokens, i), bos, |_| {})?;
        total.add(&m);
        on_chunk(i, &m, &total);
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// KL divergence

/// The comparison of one position: reference log-probabilities against a model's logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlRow {
    /// `KL(P‖Q) = Σ_i p_i (ln p_i − ln q_i)` in nats.
    pub kld: f64,
    /// `−ln q(target)`, `−ln p(target)`.
    pub nll: f64,
    pub nll_base: f64,
    /// Whether the arg-max tokens agree.
    pub same_top: bool,
    /// `q(target) − p(target)`.
    pub p_diff: f64,
}

/// Compares the reference log-probabilities `base_logp` (P) with `logits` (Q, whose
/// `ln Σ exp` is `log_z`) at a position whose next token is `target`.
///
/// The reference is renormalized first (`ln p_i − ln Σ_j p_j`): a stored, rounded reference
/// sums to 1 only up to its rounding, and the divergence is defined between distributions.
/// The sum runs over the whole vocabulary (llama.cpp skips reference terms with
/// `ln p_i ≤ −16`, whose share of the sum is negligible).
pub fn kl_row(base_logp: &[f32], logits: &[f32], log_z: f64, target: u32) -> KlRow {
    let base_z = log_sum_exp(base_logp);
    let mut kld = 0.0f64;
    for (&lp, &x) in base_logp.iter().zip(logits) {
        let lp = lp as f64 - base_z;
        kld += lp.exp() * (lp - (x as f64 - log_z));
    }
    let t = target as usize;
    let nll = log_z - logits[t] as f64;
    let nll_base = base_z - base_logp[t] as f64;
    KlRow {
        kld,
        nll,
        nll_base,
        same_top: argmax(base_logp) == argmax(logits),
        p_diff: (-nll).exp() - (-nll_base).exp(),
    }
}

/// Accumulates [`KlRow`]s into the figures `llama-perplexity --kl-divergence` prints.
#[derive(Clone, Debug, Default)]
pub struct KlStats {
    pub nll: Moments,
    pub nll_base: Moments,
    /// `Σ nll · nll_base`, for the covariance of the two means.
    pub sum_cross: f64,
    pub kld: Moments,
    pub kld_values: Vec<f32>,
    pub p_diff: Moments,
    /// Moments of `p_diff²`, for its RMS.
    pub p_diff_sq: Moments,
    pub same_top: u64,
}

/// What [`KlStats::summary`] reports; each `(value, standard error)` pair as llama.cpp
/// computes it.
#[derive(Clone, Debug, PartialEq)]
pub struct KlSummary {
    pub count: u64,
    pub ppl: (f64, f64),
    pub ppl_base: (f64, f64),
    /// Correlation of the two NLL means.
    pub ln_ppl_correlation: f64,
    pub ln_ppl_ratio: (f64, f64),
    pub ppl_ratio: (f64, f64),
    pub kld_mean: (f64, f64),
    /// `(fraction, value)`: 1.0 is the maximum, 0.5 the median, 0.0 the minimum.
    pub kld_percentiles: Vec<(f64, f64)>,
    pub p_diff_mean: (f64, f64),
    pub p_diff_rms: (f64, f64),
    /// Share of positions where the arg-max tokens agree.
    pub same_top: (f64, f64),
}

/// The percentiles printed, as fractions.
pub const KLD_PERCENTILES: [f64; 11] = [
    1.0, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001, 0.0,
];

/// The value at fraction `q` of sorted `xs`, interpolated linearly between the two nearest
/// ranks at `q·(n−1)` (the usual "type 7" definition; also llama.cpp's).
pub fn percentile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let p = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = p.floor() as usize;
    let frac = p - i as f64;
    let j = (i + 1).min(sorted.len() - 1);
    (1.0 - frac) * sorted[i] as f64 + frac * sorted[j] as f64
}

impl KlStats {
    pub fn push(&mut self, r: &KlRow) {
        self.nll.push(r.nll);
        self.nll_base.push(r.nll_base);
        self.sum_cross += r.nll * r.nll_base;
        self.kld.push(r.kld);
        self.kld_values.push(r.kld as f32);
        self.p_diff.push(r.p_diff);
        self.p_diff_sq.push(r.p_diff * r.p_diff);
        self.same_top += r.same_top as u64;
    }

    pub fn count(&self) -> u64 {
        self.kld.count
    }

    /// The covariance of the two NLL means, `(E[ab] − E[a]E[b]) / (N − 1)`.
    fn mean_covariance(&self) -> f64 {
        let n = self.count();
        if n < 2 {
            return 0.0;
        }
        let nf = n as f64;
        (self.sum_cross / nf - self.nll.mean() * self.nll_base.mean()) / (nf - 1.0)
    }

    /// `ln(PPL(Q)/PPL(base))` and its standard error, `sqrt(σa² + σb² − 2 cov)`.
    pub fn ln_ppl_ratio(&self) -> (f64, f64) {
        let (sa, sb) = (self.nll.stderr(), self.nll_base.stderr());
        let var = sa * sa + sb * sb - 2.0 * self.mean_covariance();
        (self.nll.mean() - self.nll_base.mean(), var.max(0.0).sqrt())
    }

    pub fn summary(&self) -> KlSummary {
        let n = self.count();
        let (sa, sb) = (self.nll.stderr(), self.nll_base.stderr());
        let ln_ratio = self.ln_ppl_ratio();
        let ratio = ln_ratio.0.exp();
        let mut sorted = self.kld_values.clone();
        sorted.sort_by(f32::total_cmp);
        let ms = self.p_diff_sq.mean();
        let rms = ms.sqrt();
        let top = self.same_top as f64 / n.max(1) as f64;
        KlSummary {
            count: n,
            ppl: (self.nll.ppl(), self.nll.ppl_stderr()),
            ppl_base: (self.nll_base.ppl(), self.nll_base.ppl_stderr()),
            ln_ppl_correlation: if sa > 0.0 && sb > 0.0 {
                self.mean_covariance() / (sa * sb)
            } else {
                f64::NAN
            },
            ln_ppl_ratio: ln_ratio,
            ppl_ratio: (ratio, ratio * ln_ratio.1),
            kld_mean: (self.kld.mean(), self.kld.stderr()),
            kld_percentiles: KLD_PERCENTILES
                .iter()
                .map(|&q| (q, percentile(&sorted, q)))
                .collect(),
            p_diff_mean: (self.p_diff.mean(), self.p_diff.stderr()),
            // d sqrt(m) = dm / (2 sqrt(m))
            p_diff_rms: (
                rms,
                if rms > 0.0 {
                    self.p_diff_sq.stderr() / (2.0 * rms)
                } else {
                    0.0
                },
            ),
            same_top: (
                top,
                if n > 1 {
                    (top * (1.0 - top) / (n - 1) as f64).sqrt()
                } else {
                    0.0
                },
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The logits file

/// The header of a camelid logits file, written by a reference run (`--save-logits`) and read
/// by a run to compare (`--kl-base`).
///
/// Layout, all integers little-endian:
/// ```text
/// magic     8 bytes  "CAMLOGP1"
/// n_vocab   u32
/// n_ctx     u32
/// n_chunks  u32
/// tokens    u32 × n_chunks·n_ctx    the evaluated tokens, before any BOS replacement
/// rows      f16 × n_vocab, n_chunks · (n_ctx − 1 − n_ctx/2) of them, chunk by chunk
/// ```
/// A row holds the log-softmax of the reference's logits at one scored position, rounded to
/// IEEE half precision: 2 bytes per vocabulary entry, half of f32. Half precision keeps 11
/// significant bits, so a log-probability near −1 is off by at most 2.4e-4 and one near −10
/// (probability 4.5e-5) by 3.9e-3; these errors are unbiased and average out in the mean KL
/// divergence. The tokens make the file self-contained: the run that compares needs no text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogitsHeader {
    pub n_vocab: u32,
    pub n_ctx: u32,
    pub n_chunks: u32,
    pub tokens: Vec<u32>,
}

pub const LOGITS_MAGIC: &[u8; 8] = b"CAMLOGP1";
/// Largest vocabulary a logits file may declare (Llama 3's is 128,256).
const MAX_FILE_VOCAB: u32 = 1 << 24;
const MAX_FILE_CTX: u32 = 1 << 24;

impl LogitsHeader {
    pub fn new(n_vocab: usize, chunks: Chunks, tokens: &[u32]) -> LogitsHeader {
        LogitsHeader {
            n_vocab: n_vocab as u32,
            n_ctx: chunks.n_ctx as u32,
            n_chunks: chunks.n_chunks as u32,
            tokens: chunks.evaluated(tokens).to_vec(),
        }
    }

    pub fn chunks(&self) -> Chunks {
        Chunks {
            n_ctx: self.n_ctx as usize,
            n_chunks: self.n_chunks as usize,
        }
    }

    fn header_len(n_ctx: u32, n_chunks: u32) -> Option<u64> {
        (n_ctx as u64 * n_chunks as u64)
            .checked_mul(4)?
            .checked_add(20)
    }

    /// Bytes of the whole file this header describes.
    pub fn file_len(&self) -> Option<u64> {
        let c = self.chunks();
        let rows = self.n_chunks as u64 * c.scored_per_chunk() as u64;
        rows.checked_mul(self.n_vocab as u64 * 2)?
            .checked_add(Self::header_len(self.n_ctx, self.n_chunks)?)
    }

    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(LOGITS_MAGIC)?;
        for v in [self.n_vocab, self.n_ctx, self.n_chunks] {
            w.write_all(&v.to_le_bytes())?;
        }
        let mut buf = Vec::with_capacity(self.tokens.len() * 4);
        for t in &self.tokens {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        w.write_all(&buf)
    }

    /// Reads and checks a header; `file_len` is the size of the whole file, checked against
    /// what the header declares before anything is allocated.
    pub fn read(r: &mut impl Read, file_len: u64) -> Result<LogitsHeader, EvalError> {
        let bad = |offset: u64, msg: String| EvalError::LogitsFile { offset, msg };
        let mut head = [0u8; 20];
        read_exact_at(r, &mut head, 0)?;
        if &head[..8] != LOGITS_MAGIC {
            return Err(bad(
                0,
                format!(
                    "magic is {:?}, expected {:?}",
                    String::from_utf8_lossy(&head[..8]),
                    String::from_utf8_lossy(LOGITS_MAGIC)
                ),
            ));
        }
        let u = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap());
        let (n_vocab, n_ctx, n_chunks) = (u(8), u(12), u(16));
        if n_vocab == 0 || n_vocab > MAX_FILE_VOCAB {
            return Err(bad(8, format!("n_vocab {n_vocab} is out of range")));
        }
        if !(4..=MAX_FILE_CTX).contains(&n_ctx) {
            return Err(bad(12, format!("n_ctx {n_ctx} is out of range")));
        }
        if n_chunks == 0 {
            return Err(bad(16, "n_chunks is 0".into()));
        }
        let mut h = LogitsHeader {
            n_vocab,
            n_ctx,
            n_chunks,
            tokens: Vec::new(),
        };
        match h.file_len() {
            Some(want) if want == file_len => {}
            want => {
                return Err(bad(
                    file_len.min(want.unwrap_or(u64::MAX)),
                    format!(
                        "the header (n_vocab {n_vocab}, n_ctx {n_ctx}, n_chunks {n_chunks}) \
                         declares {} bytes but the file has {file_len}{}",
                        want.map_or("more than 2^64".into(), |w| w.to_string()),
                        if want.is_some_and(|w| w > file_len) {
                            " (truncated?)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        let n = n_ctx as usize * n_chunks as usize;
        let mut raw = vec![0u8; n * 4];
        read_exact_at(r, &mut raw, 20)?;
        h.tokens = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        if let Some(i) = h.tokens.iter().position(|&t| t >= n_vocab) {
            return Err(bad(
                20 + 4 * i as u64,
                format!(
                    "token {} is outside the vocabulary of {n_vocab}",
                    h.tokens[i]
                ),
            ));
        }
        Ok(h)
    }
}

fn read_exact_at(r: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<(), EvalError> {
    r.read_exact(buf).map_err(|e| EvalError::LogitsFile {
        offset,
        msg: if e.kind() == io::ErrorKind::UnexpectedEof {
            format!("the file ends inside a {}-byte field", buf.len())
        } else {
            e.to_string()
        },
    })
}

/// Writes one row of log-probabilities as f16; `buf` is scratch space.
pub fn write_logp_row(w: &mut impl Write, logp: &[f32], buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    for &x in logp {
        // Log-probabilities are ≤ 0; below f16's range (−65504) they are certainly 0 anyway.
        buf.extend_from_slice(&f16::from_f32(x.max(-65504.0)).to_le_bytes());
    }
    w.write_all(buf)
}

/// Reads one row written by [`write_logp_row`] into `out`.
pub fn read_logp_row(r: &mut impl Read, out: &mut [f32], buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(out.len() * 2, 0);
    r.read_exact(buf)?;
    for (o, b) in out.iter_mut().zip(buf.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Multiple choice

/// A HellaSwag-style task: a context, candidate endings, and the index of the right one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub context: String,
    pub endings: Vec<String>,
    pub label: usize,
}

/// The log-likelihood of one ending.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EndingScore {
    /// `Σ ln p(token)` over the ending's tokens.
    pub logprob: f64,
    pub n_tokens: usize,
}

impl EndingScore {
    /// The length-normalized score: mean log-probability per token.
    pub fn mean(&self) -> f64 {
        self.logprob / self.n_tokens.max(1) as f64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskScore {
    pub endings: Vec<EndingScore>,
    /// The ending with the highest mean log-probability (the first on ties).
    pub choice: usize,
    pub correct: bool,
}

/// The token sequences of a task, `context + " " + ending` each, tokenized whole with the
/// tokenizer's BOS default (as llama.cpp's `--hellaswag` does), and the length of the prefix
/// they all share. The scored tokens of ending `s` are `seqs[s][max(prefix, 1)..]`.
pub fn task_tokens(tokenizer: &Tokenizer, task: &Task) -> (Vec<Vec<u32>>, usize) {
    let seqs: Vec<Vec<u32>> = task
        .endings
        .iter()
        .map(|e| {
            tokenizer.encode(
                &format!("{} {}", task.context, e),
                tokenizer.add_bos_default(),
                false,
            )
        })
        .collect();
    let shortest = seqs.iter().map(Vec::len).min().unwrap_or(0);
    let prefix = (0..shortest)
        .take_while(|&k| seqs.iter().all(|s| s[k] == seqs[0][k]))
        .count();
    (seqs, prefix)
}

/// Scores one task with `task` numbered `index` (from 1) in errors. `state` must hold the
/// longest of the task's sequences.
pub fn score_task(
    model: &Model,
    state: &mut State,
    tokenizer: &Tokenizer,
    task: &Task,
    index: usize,
) -> Result<TaskScore, EvalError> {
    let err = |msg: String| EvalError::Task { task: index, msg };
    if task.endings.len() < 2 {
        return Err(err(format!(
            "{} ending(s); a choice needs at least 2",
            task.endings.len()
        )));
    }
    if task.label >= task.endings.len() {
        return Err(err(format!(
            "label {} is not an index of its {} endings",
            task.label,
            task.endings.len()
        )));
    }
    let (seqs, prefix) = task_tokens(tokenizer, task);
    // Token 0 has no logits before it, so a sequence must reach past max(prefix, 1).
    if let Some(s) = seqs.iter().position(|s| s.len() <= prefix.max(1)) {
        return Err(err(format!(
            "ending {s} adds no token to the context ({:?})",
            task.endings[s]
        )));
    }
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if longest > state.n_ctx {
        return Err(err(format!(
            "{longest} tokens do not fit the context of {}",
            state.n_ctx
        )));
    }
    // The shared prefix runs once; its last logits predict the first token after it. Each
    // ending then continues from the prefix's cache (positions past it are overwritten).
    let n_vocab = model.config.n_vocab;
    let mut prefix_logits = vec![0.0f32; n_vocab];
    if prefix > 0 {
        state.pos = 0;
        model.forward(state, &seqs[0][..prefix], false, |_, l| {
            prefix_logits.copy_from_slice(l)
        })?;
    }
    let token_logprob = |logits: &[f32], t: u32| logits[t as usize] as f64 - log_sum_exp(logits);
    let mut endings = Vec::with_capacity(seqs.len());
    for seq in &seqs {
        let mut score = EndingScore {
            logprob: 0.0,
            n_tokens: 0,
        };
        // Token j is predicted by the logits at position j − 1: the prefix's last row for
        // j = prefix, row j − 1 − prefix of this pass for the rest.
        if prefix > 0 {
            score.logprob += token_logprob(&prefix_logits, seq[prefix]);
            score.n_tokens += 1;
        }
        state.pos = prefix;
        model.forward(state, &seq[prefix..seq.len() - 1], true, |i, logits| {
            score.logprob += token_logprob(logits, seq[prefix + i + 1]);
            score.n_tokens += 1;
        })?;
        endings.push(score);
    }
    let mut choice = 0;
    for (s, e) in endings.iter().enumerate() {
        if e.mean() > endings[choice].mean() {
            choice = s;
        }
    }
    Ok(TaskScore {
        endings,
        choice,
        correct: choice == task.label,
    })
}

/// The Wilson score interval of a proportion `k/n` at 95% confidence: better than the normal
/// approximation at small `n` or near 0 and 1 (E. B. Wilson, JASA 22, 1927).
pub fn wilson_interval(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let z2n = z * z / nf;
    let center = p + z2n / 2.0;
    let half = z * (p * (1.0 - p) / nf + z2n / (4.0 * nf)).sqrt();
    (
        ((center - half) / (1.0 + z2n)).max(0.0),
        ((center + half) / (1.0 + z2n)).min(1.0),
    )
}
