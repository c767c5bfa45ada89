//! One training run from its `camelid train` options, and the lab of a study: its tokenizer,
//! token shards and output folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use camelid_model::Config;
use camelid_tokenizer::Tokenizer;
use camelid_train::checkpoint;
use camelid_train::data::{self, Position, Shards};
use camelid_train::grad::Workspace;
use camelid_train::session::{self, BatchOptions, Source};
use camelid_train::shape::{self, Arch, Overrides};
use camelid_train::trainer::{self, Hooks, Plan, Settings, StepRecord, Trainer};

use crate::{LabError, Study, io_err};

/// The tokenizer of every study: the 1,000-piece SentencePiece BPE with byte fallback that
/// tools/tokenizer_corpus.py trains on three Shakespeare plays. With the 32K Llama vocabulary
/// the output layer would hold most of the weights and compute of models this small.
pub const TOKENIZER: &[u8] = include_bytes!("../../../testdata/tokenizer/spm-tiny.model");
pub const TOKENIZER_FILE: &str = "tokenizer.model";
/// `camelid train`'s held-out share of documents (its default).
const VAL_FRACTION: f64 = 0.05;

/// What a study is given.
#[derive(Clone, Debug)]
pub struct Options {
    /// The study's folder: the report, its charts, `tokenizer.model` and `runs/`.
    pub out: PathBuf,
    /// Text files, one document each.
    pub data: Vec<PathBuf>,
    /// Whether `data` is `camelid train`'s default text (its commands then name no `--data`).
    pub default_data: bool,
    /// The vocabulary study's Japanese text (files; each is cut into documents).
    pub japanese: Vec<PathBuf>,
    /// Whether `japanese` is the default Japanese text (its command then names no `--japanese`).
    pub default_japanese: bool,
    /// Where token shards are kept (camelid train's cache).
    pub cache: PathBuf,
    pub threads: usize,
    pub seed: u64,
    /// The study's time budget; its steps come from a throughput probe unless `steps` is given.
    pub minutes: f64,
    /// Steps of the study's reference run (what the budget gave; pins a rerun).
    pub steps: Option<u64>,
    /// Toy shapes and a few steps: checks the pipeline in seconds; the numbers mean nothing.
    pub smoke: bool,
    /// Read back runs already finished in `out/runs` (same model, settings and steps, so the
    /// same numbers) instead of training them again; `out` may hold a previous report.
    pub reuse: bool,
}

/// A study's shared state.
pub struct Lab {
    pub opts: Options,
    pub tok: Tokenizer,
    tok_path: PathBuf,
    pub shards: Shards,
    /// Progress lines (stderr in the binary).
    pub say: fn(&str),
    /// `/proc/loadavg` when the study started (the machine may be shared).
    pub load_at_start: Option<String>,
    pub started: Instant,
    /// Runs read back rather than trained (`reuse`), for the report to say so.
    pub read_back: std::cell::Cell<usize>,
}

impl Lab {
    /// Writes the tokenizer into the (new or empty) output folder and tokenizes the data.
    pub fn open(opts: Options, say: fn(&str)) -> Result<Lab, LabError> {
        let has_files = std::fs::read_dir(&opts.out).is_ok_and(|mut d| d.next().is_some());
        if opts.out.is_file() || (has_files && !opts.reuse) {
            return Err(LabError::Train(format!(
                "--out {}: {}; choose another --out, or give --reuse to rewrite the report of \
                 the study in it",
                opts.out.display(),
                if has_files {
                    "the folder exists and is not empty"
                } else {
                    "is a file"
                }
            )));
        }
        std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
        let tok_path = opts.out.join(TOKENIZER_FILE);
        std::fs::write(&tok_path, TOKENIZER).map_err(io_err(&tok_path))?;
        Lab::with_tokenizer(opts, tok_path, say)
    }

    /// A lab on `opts.data` tokenized by the tokenizer file `tok_path`.
    fn with_tokenizer(opts: Options, tok_path: PathBuf, say: fn(&str)) -> Result<Lab, LabError> {
        let tok = session::open_tokenizer(&tok_path)?;
        let docs =
            data::collect_documents(&opts.data).map_err(|e| LabError::Train(e.to_string()))?;
        let key = data::hash_files(&tok_path).map_err(|e| LabError::Train(e.to_string()))?;
        let shards = data::prepare(
            &docs,
            &tok,
            &key,
            VAL_FRACTION,
            &opts.cache,
            opts.threads,
            &mut |_| {},
        )
        .map_err(|e| LabError::Train(e.to_string()))?;
        say(&session::data_line(&shards));
        Ok(Lab {
            opts,
            tok,
            tok_path,
            shards,
            say,
            load_at_start: load_average(),
            started: Instant::now(),
            read_back: std::cell::Cell::new(0),
        })
    }

    /// A lab in the same folder on other text (not `camelid train`'s default) and another
    /// tokenizer: the vocabulary study's runs, one per language and vocabulary.
    pub fn sub(&self, tok_path: PathBuf, data: Vec<PathBuf>) -> Result<Lab, LabError> {
        let opts = Options {
            data,
            default_data: false,
            ..self.opts.clone()
        };
        let mut lab = Lab::with_tokenizer(opts, tok_path, self.say)?;
        lab.load_at_start = self.load_at_start.clone();
        lab.started = self.started;
        Ok(lab)
    }

    pub fn tokenizer_path(&self) -> &Path {
        &self.tok_path
    }

    /// The budget in seconds, less a margin for evaluations, decoding and the report.
    pub fn budget_secs(&self) -> f64 {
        self.opts.minutes * 60.0 * 0.85
    }

    /// The command that reruns this study with the same steps (so the same numbers).
    pub fn experiment_command(&self, study: Study, steps: u64) -> String {
        let mut c = format!(
            "camelid experiment {} --out {} --seed {} --steps {steps}",
            study.name(),
            self.opts.out.display(),
            self.opts.seed
        );
        if !self.opts.default_data {
            c.push_str(&data_flags(&self.opts.data));
        }
        if study == Study::Vocab && !self.opts.default_japanese {
            for j in &self.opts.japanese {
                c.push_str(&format!(" --japanese {}", j.display()));
            }
        }
        if self.opts.smoke {
            c.push_str(" --smoke");
        }
        c
    }

    /// The evaluations and wall time of a run of exactly `spec` finished in its folder: its
    /// model, settings and step count as `spec` makes them. None when there is none.
    fn finished(
        &self,
        spec: &RunSpec,
        config: &Config,
        settings: &Settings,
    ) -> Option<(Vec<Evaluation>, f64)> {
        let dir = self.run_dir(&spec.name);
        let state = checkpoint::read_state(&dir).ok()?;
        let saved = Settings::from_json(&state["settings"]).ok()?;
        let ck = camelid_model::weights::Checkpoint::open(&dir).ok()?;
        if saved != *settings || state["step"].as_u64() != Some(spec.steps) || ck.config != *config
        {
            return None;
        }
        let log = std::fs::read_to_string(dir.join("log.jsonl")).ok()?;
        let (mut curve, mut wall) = (Vec::new(), 0.0);
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            wall = v["elapsed_s"].as_f64().unwrap_or(wall);
            if let (Some(step), Some(loss), Some(bpb)) = (
                v["step"].as_u64(),
                v["val_loss"].as_f64(),
                v["val_bpb"].as_f64(),
            ) {
                curve.push((step, loss, bpb));
            }
        }
        (curve.last().map(|c| c.0) == Some(spec.steps)).then_some((curve, wall))
    }

    /// Seconds per optimizer step of `spec`, from two steps after a warm-up one (nothing is
    /// written).
    pub fn seconds_per_step(&self, spec: &RunSpec) -> Result<f64, LabError> {
        let probe = RunSpec {
            steps: 3,
            ..spec.clone()
        };
        let (mut t, mut ws) = self.trainer(&probe, probe.ctx)?;
        let err = |e: String| LabError::Train(format!("{}: {e}", spec.name));
        t.step(&mut ws).map_err(err)?;
        let start = Instant::now();
        for _ in 0..2 {
            t.step(&mut ws).map_err(err)?;
        }
        Ok(start.elapsed().as_secs_f64() / 2.0)
    }

    fn trainer(&self, spec: &RunSpec, ws_len: usize) -> Result<(Trainer<'_>, Workspace), LabError> {
        let config = spec.config(self.tok.n_vocab())?;
        let settings = spec.batch(self.opts.seed).settings(spec.ctx)?;
        let params = camelid_train::init::init_params(&config, self.opts.seed);
        let t = Trainer::new(params, settings, &self.shards, 0, Position::default())
            .map_err(|e| LabError::Train(format!("{}: {e}", spec.name)))?;
        let ws = Workspace::new(&config, spec.micro, ws_len.max(spec.ctx), self.opts.threads);
        Ok((t, ws))
    }

    /// Trains `spec` into `runs/NAME` as `camelid train` would; with `by_position`, also the
    /// validation loss at each position of windows that long.
    pub fn train(&self, spec: &RunSpec, by_position: Option<usize>) -> Result<RunResult, LabError> {
        let (mut t, mut ws) = self.trainer(spec, by_position.unwrap_or(spec.ctx))?;
        let config = t.params.config.clone();
        let dir = self.run_dir(&spec.name);
        let done = if self.opts.reuse {
            self.finished(spec, &config, &t.settings)
        } else {
            None
        };
        if let Some((curve, wall_s)) = done {
            self.read_back.set(self.read_back.get() + 1);
            (self.say)(&format!(
                "{}: finished in {}, read back",
                spec.name,
                dir.display()
            ));
            let params = checkpoint::load_params(&dir, &config)
                .map_err(|e| LabError::Train(format!("{}: {e}", spec.name)))?;
            t = Trainer::new(
                params,
                t.settings.clone(),
                &self.shards,
                spec.steps,
                Position::default(),
            )
            .map_err(|e| LabError::Train(format!("{}: {e}", spec.name)))?;
            return self.result(spec, config, dir, curve, wall_s, &t, &mut ws, by_position);
        }
        if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(LabError::Train(format!(
                "{}: holds another run than {} (other steps or settings); choose another --out",
                dir.display(),
                spec.name
            )));
        }
        let source = Source {
            data: self.opts.data.clone(),
            tokenizer: Some(self.tok_path.clone()),
            arch: Arch::Llama2,
            val_fraction: VAL_FRACTION,
            preset: "tiny".into(),
            every: [spec.eval_every, 0, 0],
        };
        let output = session::output(dir.clone(), &self.tok, &self.tok_path, &source);
        let stop = AtomicBool::new(false);
        let plan = Plan {
            eval_every: spec.eval_every,
            sample_every: 0,
            save_every: 0,
            stop_at: None,
            max_time: None,
            stop: &stop,
        };
        (self.say)(&format!(
            "{}: {}",
            spec.name,
            session::model_line(Arch::Llama2, &config, spec.ctx)
        ));
        let mut rec = Recorder {
            name: &spec.name,
            say: self.say,
            curve: Vec::new(),
            every: (spec.steps / 5).max(1),
            elapsed_s: 0.0,
        };
        trainer::run(&mut t, &mut ws, &plan, &output, &mut rec)
            .map_err(|e| LabError::Train(format!("{}: {e}", spec.name)))?;
        self.result(
            spec,
            config,
            dir,
            rec.curve,
            rec.elapsed_s,
            &t,
            &mut ws,
            by_position,
        )
    }

    /// A run's measurements from its evaluations and its trained weights.
    #[allow(clippy::too_many_arguments)]
    fn result(
        &self,
        spec: &RunSpec,
        config: Config,
        dir: PathBuf,
        curve: Vec<Evaluation>,
        wall_s: f64,
        t: &Trainer,
        ws: &mut Workspace,
        by_position: Option<usize>,
    ) -> Result<RunResult, LabError> {
        let &(_, val_loss, val_bpb) = curve.last().ok_or_else(|| {
            LabError::Train(format!(
                "{}: the run ended without an evaluation",
                spec.name
            ))
        })?;
        let by_position = match by_position {
            Some(n) => Some(
                t.loss_by_position(ws, n, usize::MAX)
                    .map_err(|e| LabError::Train(format!("{}: {e}", spec.name)))?,
            ),
            None => None,
        };
        Ok(RunResult {
            command: spec.command(self),
            tokens: spec.steps * (spec.seqs_per_step * spec.ctx) as u64,
            spec: spec.clone(),
            config,
            dir,
            val_loss,
            val_bpb,
            curve,
            wall_s,
            by_position,
        })
    }

    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.opts.out.join("runs").join(name)
    }
}

/// ` --data A --data B` (one flag per path, as `camelid train` takes them).
pub fn data_flags(data: &[PathBuf]) -> String {
    data.iter()
        .map(|d| format!(" --data {}", d.display()))
        .collect()
}

/// `/proc/loadavg`'s three averages, where there is one.
pub fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// A run's options: the `camelid train` flags that decide its numbers.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Its folder under `runs/`, and its name in tables and charts.
    pub name: String,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_ff: usize,
    pub ctx: usize,
    pub steps: u64,
    pub seqs_per_step: usize,
    pub micro: usize,
    pub lr: f64,
    pub eval_every: u64,
    /// Validation tokens per evaluation.
    pub eval_tokens: usize,
}

impl RunSpec {
    fn overrides(&self) -> Overrides {
        Overrides {
            d_model: Some(self.d_model),
            n_layers: Some(self.n_layers),
            n_heads: Some(self.n_heads),
            n_kv_heads: Some(self.n_kv_heads),
            d_ff: Some(self.d_ff),
            n_vocab: None,
            ctx: Some(self.ctx),
            tied: false,
        }
    }

    /// The model, as `camelid train --preset tiny --arch llama2` with these overrides makes it.
    pub fn config(&self, n_vocab: usize) -> Result<Config, LabError> {
        let preset = shape::preset("tiny").expect("the tiny preset exists");
        Ok(session::model_config(
            preset,
            Arch::Llama2,
            &self.overrides(),
            n_vocab,
        )?)
    }

    fn batch(&self, seed: u64) -> BatchOptions {
        BatchOptions {
            lr: self.lr,
            min_lr_ratio: 0.1,
            warmup: None,
            steps: self.steps,
            batch_tokens: Some(self.seqs_per_step * self.ctx),
            micro_batch: self.micro,
            weight_decay: 0.1,
            seed,
            eval_tokens: Some(self.eval_tokens),
        }
    }

    /// The `camelid train` command that makes this run (the defaults it relies on: min-lr-ratio
    /// 0.1, weight decay 0.1, warmup a tenth of the steps up to 100, val fraction 0.05).
    pub fn command(&self, lab: &Lab) -> String {
        let mut c = String::from("camelid train");
        if !lab.opts.default_data {
            c.push_str(&data_flags(&lab.opts.data));
        }
        c.push_str(&format!(
            " --tokenizer {} --preset tiny --arch llama2 --dim {} --layers {} --heads {} \
             --kv-heads {} --ffn {} --ctx {} --steps {} --batch-tokens {} --micro-batch {} \
             --lr {} --eval-every {} --eval-tokens {} --seed {} --out {}",
            lab.tok_path.display(),
            self.d_model,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.d_ff,
            self.ctx,
            self.steps,
            self.seqs_per_step * self.ctx,
            self.micro,
            self.lr,
            self.eval_every,
            self.eval_tokens,
            lab.opts.seed,
            lab.run_dir(&self.name).display()
        ));
        c
    }
}

/// (step, validation loss, validation bits per byte) of an evaluation.
pub type Evaluation = (u64, f64, f64);

/// What a run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub spec: RunSpec,
    pub command: String,
    pub config: Config,
    pub dir: PathBuf,
    /// The final validation loss (nats per token) and bits per byte.
    pub val_loss: f64,
    pub val_bpb: f64,
    pub curve: Vec<Evaluation>,
    /// Training tokens seen.
    pub tokens: u64,
    /// The training loop's time (evaluations included, saving not), from the run's log.
    pub wall_s: f64,
    /// Mean validation loss at each position (nats), when asked for.
    pub by_position: Option<Vec<f64>>,
}

impl RunResult {
    /// Training FLOPs by the 6·N·D rule (Kaplan et al. 2020, Chinchilla), N the parameters that
    /// multiply activations (output layer included, embedding lookup not).
    pub fn train_flops(&self) -> f64 {
        6.0 * self.config.matmul_params() as f64 * self.tokens as f64
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.spec.name,
            "command": self.command,
            "params": self.config.n_params(),
            "steps": self.spec.steps,
            "tokens": self.tokens,
            "val_loss": self.val_loss,
            "val_bpb": self.val_bpb,
            "wall_s": self.wall_s,
        })
    }
}

/// Keeps the evaluations and says how the run goes now and then.
struct Recorder<'a> {
    name: &'a str,
    say: fn(&str),
    curve: Vec<Evaluation>,
    every: u64,
    /// The run's time so far, as its log records it (so that a run read back has the same).
    elapsed_s: f64,
}

impl Hooks for Recorder<'_> {
    fn step(&mut self, r: &StepRecord, t: &Trainer) {
        self.elapsed_s = r.elapsed_s;
        if let Some((loss, bpb)) = r.val {
            self.curve.push((r.step, loss as f64, bpb));
        }
        if r.step.is_multiple_of(self.every) || r.step == t.settings.steps {
            (self.say)(&format!(
                "{}: step {}/{}, train loss {:.3}, {:.0} tokens/s{}",
                self.name,
                r.step,
                t.settings.steps,
                r.loss,
                r.tokens_per_s,
                self.curve
                    .last()
                    .map(|c| format!(", last validation {:.3} bits per byte", c.2))
                    .unwrap_or_default()
            ));
        }
    }

    fn sample(&mut self, _: &Path, _: u64) {}

    fn saved(&mut self, _: &Path, _: u64) {}
}

/// Steps that fit `secs` at `secs_per_step`, rounded down to tens, at least 10.
pub fn steps_for(secs: f64, secs_per_step: f64) -> u64 {
    let n = (secs / secs_per_step.max(1e-9)).floor() as u64;
    (n / 10 * 10).max(10)
}
