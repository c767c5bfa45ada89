//! What the evaluation commands read and write, beside the math of [`crate::eval`]: the
//! logits file a reference run saves and the KL pass that reads it back, multiple-choice task
//! files (JSON lines), and the KL report as text (laid out as llama.cpp's `llama-perplexity
//! --kl-divergence` prints it, so the two read side by side) and as JSON; the perplexity and
//! multiple-choice reports likewise.

use std::fmt;
use std::io::{self, Read, Write};

use camelid_model::{Model, State};
use serde_json::{Value, json};

use crate::eval::{
    Chunks, EvalError, KlStats, KlSummary, LogitsHeader, Moments, Task, TaskScore, eval_chunk,
    kl_row, log_softmax_into, read_logp_row, wilson_interval, write_logp_row,
};

/// Writes a logits file row by row. Rows arrive inside the model's callback, which cannot
/// return an error, so the first I/O error is kept until [`LogitsWriter::check`].
pub struct LogitsWriter<W: Write> {
    out: W,
    logp: Vec<f32>,
    buf: Vec<u8>,
    err: Option<io::Error>,
}

impl<W: Write> LogitsWriter<W> {
    /// Writes `header` to `out`.
    pub fn new(mut out: W, header: &LogitsHeader) -> io::Result<LogitsWriter<W>> {
        header.write(&mut out)?;
        Ok(LogitsWriter {
            out,
            logp: Vec::new(),
            buf: Vec::new(),
            err: None,
        })
    }

    /// Appends the log-softmax of one scored position's `logits`.
    pub fn push(&mut self, logits: &[f32]) {
        if self.err.is_some() {
            return;
        }
        self.logp.resize(logits.len(), 0.0);
        log_softmax_into(logits, &mut self.logp);
        if let Err(e) = write_logp_row(&mut self.out, &self.logp, &mut self.buf) {
            self.err = Some(e);
        }
    }

    /// The first error of the rows pushed so far.
    pub fn check(&mut self) -> io::Result<()> {
        self.err.take().map_or(Ok(()), Err)
    }

    /// Flushes, after [`LogitsWriter::check`], and hands the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Evaluates one chunk and compares every scored position with the reference row read from
/// `base` (positioned at this chunk's first row), into `stats`. `rows` is scratch space.
pub fn kl_chunk(
    model: &Model,
    state: &mut State,
    chunk: &[u32],
    bos: Option<u32>,
    base: &mut impl Read,
    stats: &mut KlStats,
) -> Result<(), EvalError> {
    let (mut base_row, mut buf) = (vec![0.0f32; model.config.n_vocab], Vec::new());
    let mut io_err = None;
    eval_chunk(model, state, chunk, bos, |row| {
        if io_err.is_some() {
            return;
        }
        match read_logp_row(base, &mut base_row, &mut buf) {
            Ok(()) => stats.push(&kl_row(&base_row, row.logits, row.log_z, row.target)),
            Err(e) => io_err = Some(e),
        }
    })?;
    io_err.map_or(Ok(()), |e| Err(EvalError::Io(e)))
}

/// The first position where `tokens` differ from the reference's (`tokens` may be longer), or
/// None where the reference's tokens are a prefix of them.
pub fn first_difference(reference: &LogitsHeader, tokens: &[u32]) -> Option<usize> {
    (0..reference.tokens.len()).find(|&k| tokens.get(k) != Some(&reference.tokens[k]))
}

/// Parses a task file of JSON lines, `{"context": "...", "endings": ["...", ...], "label": N}`
/// (blank lines skipped; a label may be a string of digits, as HellaSwag's own files write it).
/// Errors name the line, from 1.
pub fn parse_tasks(text: &str) -> Result<Vec<Task>, EvalError> {
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.trim().is_empty() {
            let bad = |msg: String| EvalError::TaskLine { line: i + 1, msg };
            tasks.push(parse_task(line).map_err(bad)?);
        }
    }
    if tasks.is_empty() {
        return Err(EvalError::TaskLine {
            line: 0,
            msg: "no tasks in the file".into(),
        });
    }
    Ok(tasks)
}

fn parse_task(line: &str) -> Result<Task, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let context = v["context"]
        .as_str()
        .ok_or("\"context\" must be a string")?;
    let endings = v["endings"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|e| e.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or("\"endings\" must be an array of strings")?;
    let n = endings.len();
    if n < 2 {
        return Err(format!("{n} ending(s); a choice needs at least 2"));
    }
    let label = match &v["label"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "\"label\" must be an ending index (0 to {}), found {}",
            n - 1,
            v["label"]
        )
    })?;
    if label as usize >= n {
        return Err(format!(
            "label {label} is not an index of the {n} endings (0 to {})",
            n - 1
        ));
    }
    Ok(Task {
        context: context.to_string(),
        endings,
        label: label as usize,
    })
}

impl KlSummary {
    pub fn to_json(&self) -> Value {
        let pair = |p: (f64, f64)| json!([p.0, p.1]);
        json!({
            "count": self.count,
            "ppl": pair(self.ppl),
            "ppl_base": pair(self.ppl_base),
            "ln_ppl_correlation": self.ln_ppl_correlation,
            "ln_ppl_ratio": pair(self.ln_ppl_ratio),
            "ppl_ratio": pair(self.ppl_ratio),
            "kld_mean": pair(self.kld_mean),
            "kld_percentiles": self.kld_percentiles.iter().map(|&(q, v)| json!({"q": q, "kld": v})).collect::<Vec<_>>(),
            "p_diff_mean": pair(self.p_diff_mean),
            "p_diff_rms": pair(self.p_diff_rms),
            "same_top": pair(self.same_top),
        })
    }
}

/// The report, in llama-perplexity's sections: perplexities, KL divergence, token probability.
impl fmt::Display for KlSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pm = |f: &mut fmt::Formatter<'_>, label: &str, (v, e): (f64, f64)| {
            writeln!(f, "{label:<24}{v:>12.6} ± {e:.6}")
        };
        let pct = |f: &mut fmt::Formatter<'_>, label: &str, (v, e): (f64, f64)| {
            writeln!(f, "{label:<24}{:>9.3} ± {:.3} %", 100.0 * v, 100.0 * e)
        };
        writeln!(f, "\n====== Perplexity ({} tokens) ======", self.count)?;
        pm(f, "PPL(Q)", self.ppl)?;
        pm(f, "PPL(base)", self.ppl_base)?;
        let cor = 100.0 * self.ln_ppl_correlation;
        writeln!(f, "Cor(ln PPL(Q), ln PPL(base)) {cor:>7.2} %")?;
        pm(f, "ln(PPL(Q)/PPL(base))", self.ln_ppl_ratio)?;
        pm(f, "PPL(Q)/PPL(base)", self.ppl_ratio)?;
        writeln!(f, "\n====== KL divergence (nats) ======")?;
        pm(f, "Mean", self.kld_mean)?;
        for &(q, v) in &self.kld_percentiles {
            let label = match q {
                1.0 => "Maximum".to_string(),
                0.5 => "Median".to_string(),
                0.0 => "Minimum".to_string(),
                _ => format!("{:.1}%", 100.0 * q),
            };
            writeln!(f, "{label:<24}{v:>12.6}")?;
        }
        writeln!(f, "\n====== Token probability ======")?;
        pct(f, "Mean Δp", self.p_diff_mean)?;
        pct(f, "RMS Δp", self.p_diff_rms)?;
        pct(f, "Same top token", self.same_top)
    }
}

/// Writes the logits of `tokens` as JSON, `{"n_vocab": V, "logits": [[...], ...]}`: every
/// position's with `all`, else the last's; fed one token at a time with `decode` (as decoding
/// does), else as one batch. A rejected input (an id outside the vocabulary, a context too
/// long) writes nothing: the header goes out with the first row, the batched pass checks its
/// input before it yields a row, and decoding checks every id first. Floats are written as the
/// shortest text that reads back as the same f32; a non-finite one as `null` (JSON has no NaN).
pub fn write_logits_json(
    model: &Model,
    tokens: &[u32],
    all: bool,
    decode: bool,
    out: &mut impl Write,
) -> Result<(), EvalError> {
    let n_vocab = model.config.n_vocab;
    let mut state = model.new_state(tokens.len())?;
    let mut first = true;
    let mut io_err = Ok(());
    let mut emit = |row: &[f32]| {
        if io_err.is_ok() {
            io_err = write_row(out, row, first, n_vocab);
            first = false;
        }
    };
    if decode {
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(camelid_model::ModelError::TokenOutOfRange { token, n_vocab }.into());
        }
        for (i, &t) in tokens.iter().enumerate() {
            let want = all || i + 1 == tokens.len();
            model.forward(&mut state, &[t], false, |_, row| {
                if want {
                    emit(row)
                }
            })?;
        }
    } else {
        model.forward(&mut state, tokens, all, |_, row| emit(row))?;
    }
    io_err
        .and_then(|()| writeln!(out, "]}}"))
        .map_err(EvalError::Io)
}

/// One row of [`write_logits_json`], after the header when it is the first.
fn write_row(out: &mut impl Write, row: &[f32], first: bool, n_vocab: usize) -> io::Result<()> {
    if first {
        write!(out, "{{\"n_vocab\": {n_vocab}, \"logits\": [")?;
    } else {
        out.write_all(b", ")?;
    }
    out.write_all(b"[")?;
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.write_all(b", ")?;
        }
        if v.is_finite() {
            write!(out, "{v}")?;
        } else {
            out.write_all(b"null")?;
        }
    }
    out.write_all(b"]")
}

impl KlSummary {
    /// The header of the per-chunk lines of [`KlSummary::chunk_line`].
    pub const CHUNK_HEADER: &'static str =
        " chunk           PPL    ln(PPL(Q)/PPL(base))         KL divergence          same top";

    /// The running figures after chunk `chunk` (from 1), a line under [`Self::CHUNK_HEADER`].
    pub fn chunk_line(&self, chunk: usize) -> String {
        format!(
            "{chunk:>6}  {:>12.4}  {:>10.5} ± {:>9.5}  {:>8.5} ± {:>9.5}  {:>6.2} ± {:>5.2} %",
            self.ppl.0,
            self.ln_ppl_ratio.0,
            self.ln_ppl_ratio.1,
            self.kld_mean.0,
            self.kld_mean.1,
            100.0 * self.same_top.0,
            100.0 * self.same_top.1
        )
    }

    /// The running figures after chunk `chunk` (from 1), as JSON.
    pub fn chunk_json(&self, chunk: usize) -> Value {
        json!({
            "chunk": chunk, "ppl": self.ppl.0, "ln_ppl_ratio": self.ln_ppl_ratio.0,
            "kld_mean": self.kld_mean.0, "same_top": self.same_top.0,
        })
    }
}

impl LogitsHeader {
    /// The header's chunks, at most `max`.
    pub fn chunks_at_most(&self, max: Option<usize>) -> crate::eval::Chunks {
        let mut c = self.chunks();
        c.n_chunks = max.map_or(c.n_chunks, |m| m.min(c.n_chunks));
        c
    }

    /// The file must have been made with a model of `n_vocab` tokens.
    pub fn check_vocab(&self, n_vocab: usize) -> Result<(), EvalError> {
        if self.n_vocab as usize == n_vocab {
            return Ok(());
        }
        Err(EvalError::LogitsMismatch {
            what: "the vocabulary size",
            file: self.n_vocab.to_string(),
            here: n_vocab.to_string(),
        })
    }
}

impl TaskScore {
    /// The task's score as JSON, numbered `task` (from 1) with its right `label`.
    pub fn to_json(&self, task: usize, label: usize) -> Value {
        let endings = self
            .endings
            .iter()
            .map(|e| json!({"logprob": e.logprob, "n_tokens": e.n_tokens, "mean": e.mean()}));
        json!({
            "task": task,
            "label": label,
            "choice": self.choice,
            "correct": self.correct,
            "endings": endings.collect::<Vec<_>>(),
        })
    }
}

/// A perplexity run's figures, chunk by chunk, and its report: lines as llama-perplexity prints
/// them, or one JSON object.
pub struct PerplexityReport {
    /// The text's name, as the user gave it.
    pub file: String,
    pub n_tokens: usize,
    pub chunks: Chunks,
    pub bos: Option<u32>,
    /// All chunks so far.
    pub total: Moments,
    /// Per chunk: its perplexity and the running one.
    rows: Vec<(f64, f64)>,
}

impl PerplexityReport {
    /// The header of the per-chunk lines of [`PerplexityReport::add`].
    pub const CHUNK_HEADER: &'static str = " chunk    PPL(chunk)           PPL";

    pub fn new(file: String, n_tokens: usize, chunks: Chunks, bos: Option<u32>) -> Self {
        PerplexityReport {
            file,
            n_tokens,
            chunks,
            bos,
            total: Moments::default(),
            rows: Vec::new(),
        }
    }

    /// What is about to be evaluated, in one line.
    pub fn intro(&self) -> String {
        format!(
            "perplexity: {} tokens, {} chunks of {} ({} scored per chunk), BOS {}",
            self.n_tokens,
            self.chunks.n_chunks,
            self.chunks.n_ctx,
            self.chunks.scored_per_chunk(),
            if self.bos.is_some() {
                "at each chunk"
            } else {
                "off"
            }
        )
    }

    /// Adds the next chunk's figures; returns its line under [`Self::CHUNK_HEADER`].
    pub fn add(&mut self, chunk: &Moments) -> String {
        self.total.add(chunk);
        self.rows.push((chunk.ppl(), self.total.ppl()));
        format!(
            "{:>6}  {:>12.4}  {:>12.4}",
            self.rows.len(),
            chunk.ppl(),
            self.total.ppl()
        )
    }

    /// The final estimate, as llama-perplexity words it.
    pub fn summary(&self) -> String {
        format!(
            "Final estimate: PPL = {:.4} +/- {:.5}  ({} tokens scored)",
            self.total.ppl(),
            self.total.ppl_stderr(),
            self.total.count
        )
    }

    pub fn to_json(&self) -> Value {
        let rows = self.rows.iter().enumerate().map(
            |(i, &(ppl, running))| json!({"chunk": i + 1, "ppl": ppl, "running_ppl": running}),
        );
        json!({
            "file": self.file,
            "n_tokens": self.n_tokens,
            "n_ctx": self.chunks.n_ctx,
            "n_chunks": self.chunks.n_chunks,
            "scored_tokens": self.total.count,
            "bos": self.bos,
            "chunks": rows.collect::<Vec<_>>(),
            "nll_mean": self.total.mean(),
            "ppl": self.total.ppl(),
            "ppl_stderr": self.total.ppl_stderr(),
        })
    }
}

impl PerplexityReport {
    /// Evaluates every chunk of `tokens` into the report, appending each scored position's
    /// log-probabilities to `save` if given; `on_line` gets each chunk's line under
    /// [`Self::CHUNK_HEADER`]. A failed write is [`EvalError::Io`].
    pub fn run<W: Write>(
        &mut self,
        model: &Model,
        tokens: &[u32],
        mut save: Option<&mut LogitsWriter<W>>,
        mut on_line: impl FnMut(String),
    ) -> Result<(), EvalError> {
        let mut state = model.new_state(self.chunks.n_ctx)?;
        for i in 0..self.chunks.n_chunks {
            let chunk = self.chunks.chunk(tokens, i);
            let m = eval_chunk(model, &mut state, chunk, self.bos, |row| {
                if let Some(s) = save.as_deref_mut() {
                    s.push(row.logits);
                }
            })?;
            if let Some(s) = save.as_deref_mut() {
                s.check().map_err(EvalError::Io)?;
            }
            on_line(self.add(&m));
        }
        Ok(())
    }
}

/// The KL pass over a reference run: evaluates each of `chunks` of the reference's tokens and
/// compares it with the rows read from `base` (positioned after the header), calling
/// `on_chunk(number from 1, running summary)` after each. An error names its chunk.
pub fn kl_run(
    model: &Model,
    header: &LogitsHeader,
    chunks: Chunks,
    bos: Option<u32>,
    base: &mut impl Read,
    mut on_chunk: impl FnMut(usize, &KlSummary),
) -> Result<KlStats, EvalError> {
    let mut state = model.new_state(chunks.n_ctx)?;
    let mut stats = KlStats::default();
    for i in 0..chunks.n_chunks {
        let chunk = chunks.chunk(&header.tokens, i);
        kl_chunk(model, &mut state, chunk, bos, base, &mut stats).map_err(|e| {
            EvalError::InChunk {
                chunk: i + 1,
                source: Box::new(e),
            }
        })?;
        on_chunk(i + 1, &stats.summary());
    }
    Ok(stats)
}

/// A multiple-choice run's scores, task by task, and its report.
pub struct ScoreReport {
    /// The task file's name, as the user gave it.
    pub file: String,
    pub correct: usize,
    tasks: Vec<Value>,
}

impl ScoreReport {
    pub fn new(file: String) -> Self {
        ScoreReport {
            file,
            correct: 0,
            tasks: Vec::new(),
        }
    }

    /// Adds the next task's score (`label`: its right ending); returns its line.
    pub fn add(&mut self, s: &TaskScore, label: usize) -> String {
        self.correct += usize::from(s.correct);
        self.tasks.push(s.to_json(self.tasks.len() + 1, label));
        let means: Vec<String> = s
            .endings
            .iter()
            .map(|e| format!("{:.4}", e.mean()))
            .collect();
        format!(
            "task {:>4}: chose {} (label {label}) {}  mean log-prob per token: {}",
            self.tasks.len(),
            s.choice,
            if s.correct { "right" } else { "wrong" },
            means.join(" ")
        )
    }

    /// Accuracy and its 95% Wilson interval.
    fn accuracy(&self) -> (f64, f64, f64) {
        let n = self.tasks.len();
        let (lo, hi) = wilson_interval(self.correct, n);
        (self.correct as f64 / n as f64, lo, hi)
    }

    pub fn summary(&self) -> String {
        let (acc, lo, hi) = self.accuracy();
        format!(
            "accuracy (length-normalized log-likelihood): {}/{} = {:.2} % \
             (95% Wilson interval {:.2} to {:.2} %)",
            self.correct,
            self.tasks.len(),
            100.0 * acc,
            100.0 * lo,
            100.0 * hi
        )
    }

    pub fn to_json(&self) -> Value {
        let (acc, lo, hi) = self.accuracy();
        json!({
            "file": self.file,
            "tasks": self.tasks,
            "n_tasks": self.tasks.len(),
            "correct": self.correct,
            "accuracy": acc,
            "accuracy_95": [lo, hi],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::EndingScore;

    #[test]
    fn a_perplexity_report_runs_its_chunks() {
        let chunks = Chunks::new(1000, 256, Some(2)).unwrap();
        let mut r = PerplexityReport::new("t.txt".into(), 1000, chunks, Some(1));
        let header = format!("{:>6}  {:>12}  {:>12}", "chunk", "PPL(chunk)", "PPL");
        assert_eq!(PerplexityReport::CHUNK_HEADER, header);
        // Mean negative log-likelihoods ln 4 and ln 16: perplexities 4 and 16, running 8.
        let chunk = |nll: f64| {
            let mut m = Moments::default();
            m.push(nll);
            m.push(nll);
            m
        };
        assert_eq!(
            r.add(&chunk(4f64.ln())),
            "     1        4.0000        4.0000"
        );
        assert_eq!(
            r.add(&chunk(16f64.ln())),
            "     2       16.0000        8.0000"
        );
        assert!(
            r.summary().starts_with("Final estimate: PPL = 8.0000 +/- "),
            "{}",
            r.summary()
        );
        assert!(r.summary().ends_with("(4 tokens scored)"));
        let v = r.to_json();
        assert_eq!(
            (v["n_chunks"].as_u64(), v["scored_tokens"].as_u64()),
            (Some(2), Some(4))
        );
        assert_eq!(
            v["chunks"][1]["running_ppl"]
                .as_f64()
                .map(|p| (p * 1e9).round()),
            Some(8e9)
        );
        assert!(
            r.intro()
                .starts_with("perplexity: 1000 tokens, 2 chunks of 256"),
            "{}",
            r.intro()
        );
    }

    #[test]
    fn a_score_report_counts_right_answers() {
        let task = |choice, correct| TaskScore {
            endings: vec![
                EndingScore {
                    logprob: -2.0,
                    n_tokens: 2,
                },
                EndingScore {
                    logprob: -3.0,
                    n_tokens: 1,
                },
            ],
            choice,
            correct,
        };
        let mut r = ScoreReport::new("tasks.jsonl".into());
        let line = r.add(&task(0, true), 0);
        assert_eq!(
            line,
            "task    1: chose 0 (label 0) right  mean log-prob per token: -1.0000 -3.0000"
        );
        r.add(&task(0, false), 1);
        let v = r.to_json();
        assert_eq!(
            (v["n_tasks"].as_u64(), v["correct"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(v["accuracy"].as_f64(), Some(0.5));
        assert!(
            r.summary()
                .starts_with("accuracy (length-normalized log-likelihood): 1/2 = 50.00 %")
        );
    }
}
