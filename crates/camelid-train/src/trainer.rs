//! The training loop: micro-batches accumulated to a step, clipping, AdamW on a schedule,
//! evaluation, the JSONL log, checkpoints, and stopping (a step limit, a time limit, a flag set
//! by Ctrl-C) with a checkpoint that resumes bit-identically.
//!
//! A step is deterministic: its sequences come from the data position, its gradients from the
//! objective (which must itself be deterministic), the update is elementwise. A resumed run
//! restores the parameters, both moments, the optimizer step and the data position exactly
//! (f32 in safetensors, integers in JSON), so it continues with the very bits the uninterrupted
//! run would have had.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, CheckpointError};
use crate::data::{Position, Sequences, Shards};
use crate::optim::{AdamW, AdamWConfig, Schedule, clip_grad_norm};
use crate::params::Params;

/// What computes the loss and its gradient (the forward and backward pass).
pub trait Objective {
    /// `grads += scale · ∂(mean cross-entropy over the targets)/∂params`; returns that mean.
    /// `inputs` and `targets` are `n_seqs` rows of `seq_len` tokens, row-major.
    fn loss_and_grad(
        &mut self,
        params: &Params,
        inputs: &[u32],
        targets: &[u32],
        n_seqs: usize,
        grads: &mut Params,
        scale: f32,
    ) -> Result<f32, String>;

    /// The mean cross-entropy alone.
    fn loss(
        &mut self,
        params: &Params,
        inputs: &[u32],
        targets: &[u32],
        n_seqs: usize,
    ) -> Result<f32, String>;
}

/// The forward and backward pass of [`crate::grad`] as the loop's objective.
impl Objective for crate::grad::Workspace {
    fn loss_and_grad(
        &mut self,
        params: &Params,
        inputs: &[u32],
        targets: &[u32],
        n_seqs: usize,
        grads: &mut Params,
        scale: f32,
    ) -> Result<f32, String> {
        let batch = batch(inputs, targets, n_seqs);
        crate::grad::Workspace::loss_and_grad(self, params, &batch, grads, scale)
            .map_err(|e| e.to_string())
    }

    fn loss(
        &mut self,
        params: &Params,
        inputs: &[u32],
        targets: &[u32],
        n_seqs: usize,
    ) -> Result<f32, String> {
        crate::grad::Workspace::loss(self, params, &batch(inputs, targets, n_seqs))
            .map_err(|e| e.to_string())
    }
}

fn batch(inputs: &[u32], targets: &[u32], n_seqs: usize) -> crate::grad::Batch {
    crate::grad::Batch {
        inputs: inputs.to_vec(),
        targets: targets.to_vec(),
        n_seqs,
        seq_len: inputs.len() / n_seqs.max(1),
    }
}

/// The settings that decide the numbers of a run (all saved in the checkpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Peak learning rate.
    pub lr: f64,
    pub min_lr_ratio: f64,
    pub warmup: u64,
    /// Total optimizer steps (the schedule's length).
    pub steps: u64,
    /// Tokens per sequence.
    pub ctx: usize,
    /// Sequences per optimizer step (the token batch is `seqs_per_step · ctx`).
    pub seqs_per_step: usize,
    /// Sequences per forward/backward pass; divides `seqs_per_step`.
    pub micro_seqs: usize,
    pub seed: u64,
    pub max_grad_norm: f64,
    pub adamw: AdamWConfig,
    /// Validation sequences per evaluation (at most the split's).
    pub eval_seqs: usize,
}

impl Settings {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            peak: self.lr,
            warmup: self.warmup,
            total: self.steps,
            min_ratio: self.min_lr_ratio,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "lr": self.lr,
            "min_lr_ratio": self.min_lr_ratio,
            "warmup": self.warmup,
            "steps": self.steps,
            "ctx": self.ctx,
            "seqs_per_step": self.seqs_per_step,
            "micro_seqs": self.micro_seqs,
            "seed": self.seed,
            "max_grad_norm": self.max_grad_norm,
            "beta1": self.adamw.beta1,
            "beta2": self.adamw.beta2,
            "eps": self.adamw.eps,
            "weight_decay": self.adamw.weight_decay,
            "decay_embeddings": self.adamw.decay_embeddings,
            "decay_norms": self.adamw.decay_norms,
            "eval_seqs": self.eval_seqs,
        })
    }

    /// Rejects values the loop cannot run with (the message names the field).
    pub fn validate(&self) -> Result<(), String> {
        if self.ctx == 0 || self.micro_seqs == 0 || self.seqs_per_step == 0 {
            return Err("ctx, seqs_per_step and micro_seqs must be at least 1".into());
        }
        if !self.seqs_per_step.is_multiple_of(self.micro_seqs) {
            return Err(format!(
                "micro_seqs {} does not divide seqs_per_step {}",
                self.micro_seqs, self.seqs_per_step
            ));
        }
        if self.steps == 0 || !(self.lr.is_finite() && self.lr > 0.0) {
            return Err("steps and lr must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(format!(
                "min_lr_ratio {} is not in [0, 1]",
                self.min_lr_ratio
            ));
        }
        Ok(())
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Settings, String> {
        let f = |k: &str| {
            v[k].as_f64()
                .ok_or_else(|| format!("settings.{k} is missing"))
        };
        let u = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| format!("settings.{k} is missing"))
        };
        let b = |k: &str| {
            v[k].as_bool()
                .ok_or_else(|| format!("settings.{k} is missing"))
        };
        Ok(Settings {
            lr: f("lr")?,
            min_lr_ratio: f("min_lr_ratio")?,
            warmup: u("warmup")?,
            steps: u("steps")?,
            ctx: u("ctx")? as usize,
            seqs_per_step: u("seqs_per_step")? as usize,
            micro_seqs: u("micro_seqs")? as usize,
            seed: u("seed")?,
            max_grad_norm: f("max_grad_norm")?,
            adamw: AdamWConfig {
                beta1: f("beta1")? as f32,
                beta2: f("beta2")? as f32,
                eps: f("eps")? as f32,
                weight_decay: f("weight_decay")? as f32,
                decay_embeddings: b("decay_embeddings")?,
                decay_norms: b("decay_norms")?,
            },
            eval_seqs: u("eval_seqs")? as usize,
        })
    }
}

/// One optimizer step's figures, as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Steps done, this one included (1 for the first).
    pub step: u64,
    pub lr: f64,
    /// Mean training loss of the step's sequences (nats per token).
    pub loss: f32,
    /// The same in bits per byte of the training split's text (`loss / ln 2 / bytes per
    /// token`), comparable across tokenizers.
    pub bpb: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    /// Validation loss and bits per byte, on evaluation steps.
    pub val: Option<(f32, f64)>,
}

/// A run in memory: model, optimizer and data position.
pub struct Trainer<'a> {
    pub params: Params,
    pub grads: Params,
    pub opt: AdamW,
    pub settings: Settings,
    /// Optimizer steps done.
    pub step: u64,
    train: Sequences<'a>,
    val: Sequences<'a>,
    val_bytes_per_token: f64,
    train_bytes_per_token: f64,
    /// The shard folder's name (a hash of the data, tokenizer and split), checked on resume.
    shards_name: String,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl<'a> Trainer<'a> {
    /// A run from `params` at step `step` and data position `pos` (0 and the start for a new
    /// run). Errors when a split is too short for one sequence.
    pub fn new(
        params: Params,
        settings: Settings,
        shards: &'a Shards,
        step: u64,
        pos: Position,
    ) -> Result<Trainer<'a>, String> {
        settings.validate()?;
        let train = Sequences::shuffled(&shards.train, "train", settings.ctx, settings.seed, pos)
            .map_err(|e| e.to_string())?;
        let val = Sequences::in_order(&shards.val, "validation", settings.ctx)
            .map_err(|e| e.to_string())?;
        let opt = AdamW::new(&params, settings.adamw);
        Ok(Trainer {
            grads: params.zeros_like(),
            params,
            opt,
            settings,
            step,
            train,
            val,
            val_bytes_per_token: shards.val_bytes_per_token(),
            shards_name: shards
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            train_bytes_per_token: shards.train_bytes_per_token(),
            inputs: Vec::new(),
            targets: Vec::new(),
        })
    }

    pub fn position(&self) -> Position {
        self.train.pos
    }

    /// Windows in the training split per epoch.
    pub fn train_windows(&self) -> usize {
        self.train.len()
    }

    pub fn val_windows(&self) -> usize {
        self.val.len()
    }

    /// One optimizer step: the step's sequences in micro-batches, gradients averaged over them,
    /// clipped, then AdamW at the scheduled rate. Returns (loss, grad norm, lr).
    pub fn step(&mut self, obj: &mut dyn Objective) -> Result<(f32, f64, f64), String> {
        let s = &self.settings;
        let n_micro = s.seqs_per_step / s.micro_seqs;
        let scale = 1.0 / n_micro as f32;
        self.grads.fill(0.0);
        let mut loss = 0.0f64;
        for _ in 0..n_micro {
            self.inputs.clear();
            self.targets.clear();
            self.train
                .next_batch(s.micro_seqs, &mut self.inputs, &mut self.targets);
            let l = obj.loss_and_grad(
                &self.params,
                &self.inputs,
                &self.targets,
                s.micro_seqs,
                &mut self.grads,
                scale,
            )?;
            loss += l as f64;
        }
        let norm = clip_grad_norm(&mut self.grads, s.max_grad_norm);
        let lr = s.schedule().lr(self.step);
        self.opt.update(&mut self.params, &self.grads, lr);
        self.step += 1;
        Ok(((loss / n_micro as f64) as f32, norm, lr))
    }

    /// Mean validation loss over the first `eval_seqs` windows, and bits per byte
    /// (`loss / ln 2 / bytes per token`, the split's text bytes over its predicted tokens).
    pub fn evaluate(&mut self, obj: &mut dyn Objective) -> Result<(f32, f64), String> {
        let n = self.settings.eval_seqs.min(self.val.len()).max(1);
        let micro = self.settings.micro_seqs;
        let ctx = self.settings.ctx;
        let (mut sum, mut done) = (0.0f64, 0usize);
        while done < n {
            let k = micro.min(n - done);
            self.inputs.resize(k * ctx, 0);
            self.targets.resize(k * ctx, 0);
            for j in 0..k {
                let (i, t) = (
                    &mut self.inputs[j * ctx..][..ctx],
                    &mut self.targets[j * ctx..][..ctx],
                );
                self.val.window(done + j, i, t);
            }
            let l = obj.loss(&self.params, &self.inputs, &self.targets, k)?;
            sum += l as f64 * k as f64;
            done += k;
        }
        let loss = (sum / n as f64) as f32;
        let bpb = loss as f64 / std::f64::consts::LN_2 / self.val_bytes_per_token;
        Ok((loss, bpb))
    }

    /// The mean validation loss at each position of windows of `ctx` tokens (nats per token,
    /// `[ctx]`), over the first `windows` windows of the split in file order (at most all of
    /// them): how much a token's context helps predict it. `ctx` may exceed the training
    /// context (RoPE positions past it were never trained).
    pub fn loss_by_position(
        &self,
        ws: &mut crate::grad::Workspace,
        ctx: usize,
        windows: usize,
    ) -> Result<Vec<f64>, String> {
        let val =
            Sequences::in_order(self.val.tokens(), "validation", ctx).map_err(|e| e.to_string())?;
        let n = windows.min(val.len()).max(1);
        let micro = self.settings.micro_seqs.max(1);
        let mut sums = vec![0.0f64; ctx];
        let mut done = 0;
        while done < n {
            let k = micro.min(n - done);
            let mut batch = crate::grad::Batch {
                inputs: vec![0; k * ctx],
                targets: vec![0; k * ctx],
                n_seqs: k,
                seq_len: ctx,
            };
            for j in 0..k {
                val.window(
                    done + j,
                    &mut batch.inputs[j * ctx..][..ctx],
                    &mut batch.targets[j * ctx..][..ctx],
                );
            }
            let losses = ws.losses(&self.params, &batch).map_err(|e| e.to_string())?;
            for row in losses.chunks_exact(ctx) {
                for (s, &l) in sums.iter_mut().zip(row) {
                    *s += l as f64;
                }
            }
            done += k;
        }
        Ok(sums.into_iter().map(|s| s / n as f64).collect())
    }

    /// The state that, with the model and optimizer files, resumes this run.
    pub fn state_json(&self, source: &serde_json::Value) -> serde_json::Value {
        let pos = self.train.pos;
        serde_json::json!({
            "format": 1,
            "step": self.step,
            "epoch": pos.epoch,
            "cursor": pos.cursor,
            "settings": self.settings.to_json(),
            "shards": self.shards_name,
            "source": source,
        })
    }

    /// The run saved in `dir` (by [`Output::save`]), to continue on `shards` (prepared from the
    /// same data: its `source`, returned beside, says how they were named).
    pub fn resume(
        dir: &Path,
        shards: &'a Shards,
    ) -> Result<(Trainer<'a>, serde_json::Value), String> {
        let state = checkpoint::read_state(dir).map_err(|e| e.to_string())?;
        let state_path = dir.join(checkpoint::STATE_FILE);
        let field = |k: &str| {
            state[k]
                .as_u64()
                .ok_or_else(|| format!("{}: `{k}` is missing", state_path.display()))
        };
        let settings = Settings::from_json(&state["settings"])
            .and_then(|s| s.validate().map(|()| s))
            .map_err(|e| format!("{}: {e}", state_path.display()))?;
        let shards_name = shards
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if state["shards"].as_str() != shards_name.as_deref() {
            return Err(format!(
                "{}: the data or the tokenizer changed since this run was saved (its token shards \
                 were {}, now {}): a resumed run must see the same tokens",
                state_path.display(),
                state["shards"],
                shards_name.unwrap_or_default()
            ));
        }
        let pos = Position {
            epoch: field("epoch")?,
            cursor: field("cursor")?,
        };
        let step = field("step")?;
        let config = camelid_model::weights::Checkpoint::open(dir)
            .map_err(|e| e.to_string())?
            .config;
        let params = checkpoint::load_params(dir, &config).map_err(|e| e.to_string())?;
        let mut t = Trainer::new(params, settings, shards, step, pos)?;
        checkpoint::load_optimizer(dir, &mut t.opt).map_err(|e| e.to_string())?;
        if t.opt.step != step {
            return Err(format!(
                "{}: the optimizer is at step {} but the state says {step}",
                dir.join(checkpoint::OPTIMIZER_FILE).display(),
                t.opt.step
            ));
        }
        Ok((t, state["source"].clone()))
    }
}

/// When to evaluate, sample, save and stop.
pub struct Plan<'s> {
    /// Evaluate every N steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Call the sample hook every N steps (after saving); 0: never.
    pub sample_every: u64,
    /// Save a checkpoint every N steps; 0: only at the end.
    pub save_every: u64,
    /// Stop after this many steps in all, before the schedule's end (a run in sessions).
    pub stop_at: Option<u64>,
    pub max_time: Option<Duration>,
    /// Set from outside (Ctrl-C): finish the current step, save, stop.
    pub stop: &'s AtomicBool,
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    Done,
    StopAt,
    MaxTime,
    Interrupted,
}

/// What the loop reports (the binary prints; a library user may ignore it).
pub trait Hooks {
    fn step(&mut self, record: &StepRecord, trainer: &Trainer);
    /// After a checkpoint was written to the output folder at a sample step.
    fn sample(&mut self, dir: &Path, step: u64);
    fn saved(&mut self, dir: &Path, step: u64);
}

/// Where and what a run writes.
pub struct Output {
    pub dir: PathBuf,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub tokenizer_files: Vec<checkpoint::TokenizerFile>,
    /// How the data and tokenizer were named (saved in the state for `--resume`).
    pub source: serde_json::Value,
}

impl Output {
    pub fn save(&self, t: &Trainer) -> Result<(), CheckpointError> {
        checkpoint::save_model(
            &self.dir,
            &t.params,
            self.bos,
            self.eos,
            &self.tokenizer_files,
        )?;
        checkpoint::save_state(&self.dir, &t.opt, &t.state_json(&self.source))
    }
}

/// `dir/loss.svg` from `dir/log.jsonl` (nothing before the first step).
fn write_chart(dir: &Path) -> Result<(), String> {
    let log = dir.join("log.jsonl");
    let text = fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let title = format!(
        "{}: loss",
        dir.file_name().unwrap_or_default().to_string_lossy()
    );
    match crate::chart::loss_svg(&text, &title) {
        Some(svg) => {
            checkpoint::write_atomic(dir, "loss.svg", svg.as_bytes()).map_err(|e| e.to_string())
        }
        None => Ok(()),
    }
}

/// Runs steps until the schedule ends or a stop condition holds, logging each step to
/// `out.dir/log.jsonl` (appended, so a resumed run continues the same log) and saving a
/// checkpoint and `loss.svg` (also after each evaluation) when it stops.
///
/// A log line: `{"step", "lr", "loss", "bpb", "grad_norm", "tokens_per_s", "elapsed_s"}`, plus
/// `"val_loss"` and `"val_bpb"` on evaluation steps; losses in nats per token, `bpb` in bits per
/// byte of text. This is what a loss-curve chart reads (train and validation in bits per byte).
pub fn run(
    t: &mut Trainer,
    obj: &mut dyn Objective,
    plan: &Plan,
    out: &Output,
    hooks: &mut dyn Hooks,
) -> Result<Stopped, String> {
    let log_path = out.dir.join("log.jsonl");
    fs::create_dir_all(&out.dir).map_err(|e| format!("{}: {e}", out.dir.display()))?;
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let start = Instant::now();
    let tokens_per_step = (t.settings.seqs_per_step * t.settings.ctx) as f64;
    let mut stopped = Stopped::Done;
    while t.step < t.settings.steps {
        if plan.stop.load(Ordering::Relaxed) {
            stopped = Stopped::Interrupted;
            break;
        }
        if plan.max_time.is_some_and(|m| start.elapsed() >= m) {
            stopped = Stopped::MaxTime;
            break;
        }
        if plan.stop_at.is_some_and(|s| t.step >= s) {
            stopped = Stopped::StopAt;
            break;
        }
        let step_start = Instant::now();
        let (loss, grad_norm, lr) = t.step(obj)?;
        let secs = step_start.elapsed().as_secs_f64();
        let last = t.step == t.settings.steps;
        let eval = last || (plan.eval_every > 0 && t.step.is_multiple_of(plan.eval_every));
        let val = if eval { Some(t.evaluate(obj)?) } else { None };
        let record = StepRecord {
            step: t.step,
            lr,
            loss,
            bpb: loss as f64 / std::f64::consts::LN_2 / t.train_bytes_per_token,
            grad_norm,
            tokens_per_s: tokens_per_step / secs.max(1e-9),
            elapsed_s: start.elapsed().as_secs_f64(),
            val,
        };
        let mut line = serde_json::json!({
            "step": record.step,
            "lr": record.lr,
            "loss": record.loss,
            "bpb": record.bpb,
            "grad_norm": record.grad_norm,
            "tokens_per_s": record.tokens_per_s,
            "elapsed_s": record.elapsed_s,
        });
        if let Some((vl, bpb)) = record.val {
            line["val_loss"] = vl.into();
            line["val_bpb"] = bpb.into();
        }
        writeln!(log, "{line}").map_err(|e| format!("{}: {e}", log_path.display()))?;
        if record.val.is_some() {
            write_chart(&out.dir)?;
        }
        hooks.step(&record, t);
        let save = plan.save_every > 0 && t.step.is_multiple_of(plan.save_every);
        let sample = plan.sample_every > 0 && t.step.is_multiple_of(plan.sample_every);
        if (save || sample) && !last {
            out.save(t).map_err(|e| e.to_string())?;
            hooks.saved(&out.dir, t.step);
        }
        if sample && !last {
            hooks.sample(&out.dir, t.step);
        }
    }
    out.save(t).map_err(|e| e.to_string())?;
    write_chart(&out.dir)?;
    hooks.saved(&out.dir, t.step);
    if plan.sample_every > 0 {
        hooks.sample(&out.dir, t.step);
    }
    Ok(stopped)
}

/// A run's time limit as `--max-time` takes it: seconds, or a number with a unit (`90s`, `20m`,
/// `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90, 90s, 20m, 1h)"))?;
    let secs = match unit {
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("90"), Ok(90.0));
        assert_eq!(secs("1.5m"), Ok(90.0));
        assert_eq!(secs(" 2 h"), Ok(7200.0));
        assert_eq!(secs("20s"), Ok(20.0));
        assert_eq!(secs("3d"), Err("\"3d\": the unit is s, m or h".into()));
        assert_eq!(
            secs("soon"),
            Err("\"soon\" is not a duration (e.g. 90, 90s, 20m, 1h)".into())
        );
        assert_eq!(secs("0"), Err("\"0\" is not a positive duration".into()));
        assert_eq!(
            secs("-5m"),
            Err("\"-5m\" is not a positive duration".into())
        );
    }
    use crate::data::{collect_documents, hash_files, prepare};
    use camelid_model::config::RopeScaling;
    use camelid_tokenizer::Tokenizer;

    /// A stand-in for the forward/backward pass with the properties the loop relies on: the
    /// gradient depends on the parameters and on the batch's tokens, deterministically. (The
    /// real objective is `grad::Workspace`; this test is about the loop's bookkeeping.)
    struct Quadratic;

    impl Objective for Quadratic {
        fn loss_and_grad(
            &mut self,
            params: &Params,
            inputs: &[u32],
            targets: &[u32],
            _n: usize,
            grads: &mut Params,
            scale: f32,
        ) -> Result<f32, String> {
            let pull = inputs
                .iter()
                .zip(targets)
                .map(|(a, b)| (a ^ b) as f32)
                .sum::<f32>()
                / (inputs.len() as f32 * 1000.0);
            let mut loss = 0.0;
            for (p, g) in params.tensors.iter().zip(grads.tensors.iter_mut()) {
                for (x, gx) in p.data.iter().zip(g.data.iter_mut()) {
                    let d = x - pull;
                    loss += 0.5 * d * d;
                    *gx += scale * d;
                }
            }
            Ok(loss)
        }

        fn loss(&mut self, params: &Params, i: &[u32], t: &[u32], n: usize) -> Result<f32, String> {
            let mut scratch = params.zeros_like();
            self.loss_and_grad(params, i, t, n, &mut scratch, 0.0)
        }
    }

    struct Quiet;
    impl Hooks for Quiet {
        fn step(&mut self, _: &StepRecord, _: &Trainer) {}
        fn sample(&mut self, _: &Path, _: u64) {}
        fn saved(&mut self, _: &Path, _: u64) {}
    }

    fn testdata(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(rel)
    }

    /// The tiny tokenizer, the test corpus's shards in `cache` (a quarter held out) and a
    /// one-layer GQA model of context `n_ctx` over that vocabulary.
    fn tiny_run(cache: &Path, n_ctx: usize) -> (Tokenizer, Shards, camelid_model::Config) {
        let tok_path = testdata("tokenizer/spm-tiny.model");
        let tok = camelid_model::tokenizer_load::load_tokenizer(&tok_path).unwrap();
        let docs = collect_documents(&[testdata("train/corpus")]).unwrap();
        let key = hash_files(&tok_path).unwrap();
        let shards = prepare(&docs, &tok, &key, 0.25, cache, 1, &mut |_| {}).unwrap();
        let config = camelid_model::Config {
            n_vocab: tok.n_vocab(),
            d_model: 8,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            d_ff: 16,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            n_ctx_train: n_ctx,
            tied_embeddings: false,
        };
        (tok, shards, config)
    }

    fn losses(dir: &Path) -> Vec<(u64, String)> {
        fs::read_to_string(dir.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    format!("{} {}", v["loss"], v["grad_norm"]),
                )
            })
            .collect()
    }

    #[test]
    fn a_run_stopped_and_resumed_is_bit_identical_and_loads_in_camelid() {
        let tmp = std::env::temp_dir().join(format!("camelid-trainer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let (tok, shards, config) = tiny_run(&tmp.join("cache"), 8);
        let settings = Settings {
            lr: 1e-2,
            min_lr_ratio: 0.1,
            warmup: 2,
            steps: 8,
            ctx: 8,
            seqs_per_step: 4,
            micro_seqs: 2,
            seed: 3,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            eval_seqs: 2,
        };
        let stop = AtomicBool::new(false);
        let plan = |stop_at| Plan {
            eval_every: 3,
            sample_every: 0,
            save_every: 0,
            stop_at,
            max_time: None,
            stop: &stop,
        };
        let output = |name: &str| Output {
            dir: tmp.join(name),
            bos: tok.bos(),
            eos: tok.eos(),
            tokenizer_files: checkpoint::tokenizer_files(&testdata("tokenizer/spm-tiny.model")),
            source: serde_json::json!({"test": name}),
        };
        let init = crate::init::init_params(&config, 1);

        let whole = output("whole");
        let mut t = Trainer::new(
            init.clone(),
            settings.clone(),
            &shards,
            0,
            Position::default(),
        )
        .unwrap();
        // 8 steps of 4 windows over an epoch of 14: the run crosses into a second epoch.
        assert_eq!(t.train_windows(), 14);
        assert_eq!(
            run(&mut t, &mut Quadratic, &plan(None), &whole, &mut Quiet),
            Ok(Stopped::Done)
        );

        let halves = output("halves");
        let mut t = Trainer::new(init, settings, &shards, 0, Position::default()).unwrap();
        assert_eq!(
            run(&mut t, &mut Quadratic, &plan(Some(4)), &halves, &mut Quiet),
            Ok(Stopped::StopAt)
        );
        assert_ne!(
            fs::read(whole.dir.join("model.safetensors")).unwrap(),
            fs::read(halves.dir.join("model.safetensors")).unwrap()
        );
        let (mut t, source) = Trainer::resume(&halves.dir, &shards).unwrap();
        assert_eq!(source, serde_json::json!({"test": "halves"}));
        assert_eq!(
            (t.step, t.position()),
            (
                4,
                Position {
                    epoch: 1,
                    cursor: 2
                }
            )
        );
        assert_eq!(
            run(&mut t, &mut Quadratic, &plan(None), &halves, &mut Quiet),
            Ok(Stopped::Done)
        );

        for f in ["model.safetensors", "optimizer.safetensors", "config.json"] {
            assert!(
                fs::read(whole.dir.join(f)).unwrap() == fs::read(halves.dir.join(f)).unwrap(),
                "{f} differs"
            );
        }
        assert_eq!(losses(&whole.dir), losses(&halves.dir));
        assert_eq!(losses(&whole.dir).len(), 8);

        // The folder is a model camelid loads, tokenizer included.
        let ck = camelid_model::weights::Checkpoint::open(&whole.dir).unwrap();
        assert_eq!(ck.config, config);
        ck.load_weights().unwrap();
        let tok2 = camelid_model::tokenizer_load::load_tokenizer(&whole.dir).unwrap();
        assert_eq!(
            tok2.encode("Fair is foul", true, false),
            tok.encode("Fair is foul", true, false)
        );
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn loss_by_position_averages_to_the_validation_loss() {
        let tmp = std::env::temp_dir().join(format!("camelid-bypos-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let (_, shards, config) = tiny_run(&tmp, 4);
        let settings = Settings {
            lr: 1e-2,
            min_lr_ratio: 0.1,
            warmup: 0,
            steps: 1,
            ctx: 4,
            seqs_per_step: 3,
            micro_seqs: 3,
            seed: 3,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            eval_seqs: 1000,
        };
        let params = crate::init::init_params(&config, 5);
        let mut t = Trainer::new(params, settings, &shards, 0, Position::default()).unwrap();
        let mut ws = crate::grad::Workspace::new(&config, 3, 8, 1);
        let (loss, _) = t.evaluate(&mut ws).unwrap();
        // Every window of 4 (the evaluation's), in micro-batches of 3 with a partial one.
        let all = t.val_windows();
        assert!(
            !all.is_multiple_of(3),
            "{all} windows: the last micro-batch should be partial"
        );
        let by_pos = t.loss_by_position(&mut ws, 4, usize::MAX).unwrap();
        assert_eq!(by_pos.len(), 4);
        let mean = by_pos.iter().sum::<f64>() / 4.0;
        assert!(
            (mean - loss as f64).abs() < 1e-5 * loss as f64,
            "{mean} vs {loss}"
        );
        // Positions differ (the first token has no context), and longer windows than the
        // training context are allowed.
        assert!(by_pos.windows(2).any(|w| w[0] != w[1]));
        assert_eq!(t.loss_by_position(&mut ws, 8, 1).unwrap().len(), 8);
        let _ = fs::remove_dir_all(&tmp);
    }
}
