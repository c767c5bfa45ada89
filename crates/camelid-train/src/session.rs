//! A training run from its options: what `camelid train` does between parsing its arguments and
//! printing. Checks the options (named as the command names them), resolves the model shape and
//! the batch, prepares the data, describes the run in one line per figure, and samples text from
//! a checkpoint. Fetching the default text and vocabularies is the caller's (camelid-hub).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use camelid_engine::generate::{GenParams, generate};
use camelid_engine::sampler::SamplerConfig;
use camelid_model::{Config, Model};
use camelid_tokenizer::Tokenizer;

use crate::checkpoint::{self, CheckpointError};
use crate::data::{self, DataError, Progress, Shards};
use crate::optim::AdamWConfig;
use crate::params::Params;
use crate::shape::{self, Arch, Memory, Overrides, PRESETS, Preset};
use crate::trainer::{Output, Settings, Stopped, Trainer};

/// Why a run could not be set up (or a sample not drawn).
#[derive(Debug)]
pub enum SessionError {
    /// An option out of range or naming nothing; the message names the option.
    Option(String),
    Data(DataError),
    Checkpoint(CheckpointError),
    /// A file or folder that could not be read or made.
    Io {
        path: PathBuf,
        err: std::io::Error,
    },
    /// Loading the checkpoint or the tokenizer, or generating from it, failed.
    Model(String),
    /// The trainer refused its settings or the saved state.
    Trainer(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Option(msg) | SessionError::Model(msg) | SessionError::Trainer(msg) => {
                f.write_str(msg)
            }
            SessionError::Data(e) => write!(f, "{e}"),
            SessionError::Checkpoint(e) => write!(f, "{e}"),
            SessionError::Io { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent: the wrapped error's own cause, not the wrapped error a second time.
        match self {
            SessionError::Data(e) => e.source(),
            SessionError::Checkpoint(e) => e.source(),
            _ => None,
        }
    }
}

impl From<DataError> for SessionError {
    fn from(e: DataError) -> Self {
        SessionError::Data(e)
    }
}

impl From<CheckpointError> for SessionError {
    fn from(e: CheckpointError) -> Self {
        SessionError::Checkpoint(e)
    }
}

fn option(msg: String) -> SessionError {
    SessionError::Option(msg)
}

/// How the data and the tokenizer were named: saved in the state so that `--resume` prepares
/// the same shards.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// Text files or folders; empty for the default text.
    pub data: Vec<PathBuf>,
    /// None for the generation's default vocabulary.
    pub tokenizer: Option<PathBuf>,
    pub arch: Arch,
    pub val_fraction: f64,
    pub preset: String,
    /// --eval-every, --sample-every, --save-every.
    pub every: [u64; 3],
}

impl Source {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "data": self.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "tokenizer": self.tokenizer.as_ref().map(|p| p.display().to_string()),
            "arch": self.arch.name(),
            "val_fraction": self.val_fraction,
            "preset": self.preset,
            "eval_every": self.every[0],
            "sample_every": self.every[1],
            "save_every": self.every[2],
        })
    }

    /// The source saved in the state of the run in `dir` (named in errors).
    pub fn from_json(v: &serde_json::Value, dir: &Path) -> Result<Source, SessionError> {
        let bad = |k: &str| option(format!("{}: source.{k} is missing", dir.display()));
        Ok(Source {
            data: v["data"]
                .as_array()
                .ok_or_else(|| bad("data"))?
                .iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect(),
            tokenizer: v["tokenizer"].as_str().map(PathBuf::from),
            arch: v["arch"]
                .as_str()
                .and_then(Arch::parse)
                .ok_or_else(|| bad("arch"))?,
            val_fraction: v["val_fraction"]
                .as_f64()
                .ok_or_else(|| bad("val_fraction"))?,
            preset: v["preset"].as_str().unwrap_or("").to_string(),
            every: [
                v["eval_every"].as_u64().unwrap_or(100),
                v["sample_every"].as_u64().unwrap_or(0),
                v["save_every"].as_u64().unwrap_or(0),
            ],
        })
    }

    /// Replaces the saved intervals with those given again on resuming.
    pub fn override_every(&mut self, given: [Option<u64>; 3]) {
        for (saved, given) in self.every.iter_mut().zip(given) {
            *saved = given.unwrap_or(*saved);
        }
    }
}

/// The options of a new run that decide its shape and its source.
#[derive(Clone, Copy)]
pub struct NewRun<'a> {
    pub preset: &'a str,
    pub arch: Option<&'a str>,
    pub data: &'a [PathBuf],
    pub tokenizer: Option<&'a Path>,
    pub val_fraction: f64,
    /// --eval-every, --sample-every, --save-every as given.
    pub every: [Option<u64>; 3],
    pub out: Option<&'a Path>,
}

impl NewRun<'_> {
    /// The preset, the source (paths made absolute, so that `--resume` from another folder
    /// finds them) and the output folder, which must be new or empty.
    pub fn resolve(&self) -> Result<(&'static Preset, Source, PathBuf), SessionError> {
        let Some(preset) = shape::preset(self.preset) else {
            let ids: Vec<&str> = PRESETS.iter().map(|p| p.id).collect();
            return Err(option(format!(
                "unknown --preset {:?}; one of: {}",
                self.preset,
                ids.join(", ")
            )));
        };
        let arch = match self.arch {
            Some(s) => Arch::parse(s).ok_or_else(|| {
                option(format!(
                    "unknown --arch {s:?}; one of: llama1, llama2, llama3"
                ))
            })?,
            None => preset.arch.unwrap_or(Arch::Llama2),
        };
        let out = self.out.map_or_else(
            || PathBuf::from(format!("camelid-train-{}", preset.id)),
            Path::to_path_buf,
        );
        check_out(&out)?;
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return Err(option("--val-fraction must be in (0, 1)".into()));
        }
        let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let [eval, sample, save] = self.every;
        let source = Source {
            data: self.data.iter().map(|p| absolute(p)).collect(),
            tokenizer: self.tokenizer.map(absolute),
            arch,
            val_fraction: self.val_fraction,
            preset: preset.id.to_string(),
            every: [eval.unwrap_or(100), sample.unwrap_or(0), save.unwrap_or(0)],
        };
        Ok((preset, source, out))
    }
}

/// How a run starts: new from its options, or continued from the folder of a saved one.
// Made once per run and consumed by `open`: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Start<'a> {
    New {
        run: NewRun<'a>,
        overrides: Overrides,
        batch: BatchOptions,
    },
    /// `every`: --eval-every, --sample-every, --save-every given again.
    Resume {
        dir: &'a Path,
        every: [Option<u64>; 3],
    },
}

/// A run with its tokenizer, data and output resolved; its trainer, which borrows the shards,
/// comes from [`trainer`].
pub struct Opened {
    pub shards: Shards,
    pub tok: Tokenizer,
    pub output: Output,
    pub source: Source,
    /// A new run's initial weights and settings; None when resuming.
    pub init: Option<(Params, Settings)>,
}

impl Start<'_> {
    /// Checks the options and resolves the tokenizer and the data, which the caller provides:
    /// `tokenizer` the source's (fetched when it names none), `data` its token shards. A new
    /// run's options are all checked before the data is prepared.
    pub fn open<E: From<SessionError>>(
        self,
        tokenizer: impl FnOnce(&Source) -> Result<(Tokenizer, PathBuf), E>,
        data: impl FnOnce(&Source, &Tokenizer, &Path) -> Result<Shards, E>,
    ) -> Result<Opened, E> {
        let (source, out, init) = match self {
            Start::Resume { dir, every } => {
                let state = checkpoint::read_state(dir).map_err(SessionError::from)?;
                let mut source = Source::from_json(&state["source"], dir)?;
                source.override_every(every);
                (source, dir.to_path_buf(), None)
            }
            Start::New {
                run,
                overrides,
                batch,
            } => {
                let (preset, source, out) = run.resolve()?;
                (source, out, Some((preset, overrides, batch)))
            }
        };
        let (tok, tok_path) = tokenizer(&source)?;
        let init = match init {
            Some((preset, overrides, batch)) => {
                let config = model_config(preset, source.arch, &overrides, tok.n_vocab())?;
                let settings = batch.settings(config.n_ctx_train)?;
                Some((config, settings, batch.seed))
            }
            None => None,
        };
        let shards = data(&source, &tok, &tok_path)?;
        let init = init
            .map(|(config, settings, seed)| (crate::init::init_params(&config, seed), settings));
        let output = output(out, &tok, &tok_path, &source);
        Ok(Opened {
            shards,
            tok,
            output,
            source,
            init,
        })
    }
}

/// The trainer of an opened run: a new one from `init`, its output folder made; else the one
/// saved in the output folder.
pub fn trainer<'s>(
    shards: &'s Shards,
    init: Option<(Params, Settings)>,
    output: &Output,
) -> Result<Trainer<'s>, SessionError> {
    let Some((params, settings)) = init else {
        let (t, _) = Trainer::resume(&output.dir, shards).map_err(SessionError::Trainer)?;
        return Ok(t);
    };
    let t = Trainer::new(
        params,
        settings,
        shards,
        0,
        crate::data::Position::default(),
    )
    .map_err(SessionError::Trainer)?;
    let out = &output.dir;
    std::fs::create_dir_all(out).map_err(|err| SessionError::Io {
        path: out.clone(),
        err,
    })?;
    Ok(t)
}

/// Refuses an output folder that holds anything: a run never overwrites files it did not write.
pub fn check_out(out: &Path) -> Result<(), SessionError> {
    if out.is_file() {
        return Err(option(format!(
            "--out {}: is a file; name a new folder",
            out.display()
        )));
    }
    if out.is_dir() {
        let mut entries = std::fs::read_dir(out).map_err(|err| SessionError::Io {
            path: out.to_path_buf(),
            err,
        })?;
        if entries.next().is_some() {
            return Err(option(format!(
                "--out {}: the folder exists and is not empty; continue its run with --resume {} \
                 or choose another --out",
                out.display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// The model shape: the preset with the overrides, the vocabulary at least the tokenizer's.
pub fn model_config(
    preset: &Preset,
    arch: Arch,
    overrides: &Overrides,
    n_vocab: usize,
) -> Result<Config, SessionError> {
    shape::model_config(preset, arch, overrides, n_vocab)
        .map_err(|e| option(format!("--preset {}: {e}", preset.id)))
}

/// The batch and schedule options of a new run.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    pub lr: f64,
    pub min_lr_ratio: f64,
    /// Default: 100, or a tenth of the steps if fewer.
    pub warmup: Option<u64>,
    pub steps: u64,
    /// Tokens per optimizer step, rounded down to whole sequences (default: 16 sequences).
    pub batch_tokens: Option<usize>,
    pub micro_batch: usize,
    pub weight_decay: f32,
    pub seed: u64,
    /// Validation tokens per evaluation (default: at most 64 sequences).
    pub eval_tokens: Option<usize>,
}

impl BatchOptions {
    /// The settings of a run of sequences of `ctx` tokens.
    pub fn settings(&self, ctx: usize) -> Result<Settings, SessionError> {
        let seqs_per_step = self.batch_tokens.map_or(16, |b| b / ctx.max(1));
        if seqs_per_step == 0 {
            return Err(option(format!(
                "--batch-tokens must be at least one sequence of --ctx {ctx} tokens"
            )));
        }
        if self.micro_batch == 0 || !seqs_per_step.is_multiple_of(self.micro_batch) {
            return Err(option(format!(
                "--micro-batch {} must divide the {seqs_per_step} sequences of a step \
                 (--batch-tokens / --ctx)",
                self.micro_batch
            )));
        }
        if self.steps == 0 {
            return Err(option("--steps must be at least 1".into()));
        }
        Ok(Settings {
            lr: self.lr,
            min_lr_ratio: self.min_lr_ratio,
            warmup: self.warmup.unwrap_or(100.min(self.steps / 10)),
            steps: self.steps,
            ctx,
            seqs_per_step,
            micro_seqs: self.micro_batch,
            seed: self.seed,
            max_grad_norm: 1.0,
            adamw: AdamWConfig {
                weight_decay: self.weight_decay,
                ..AdamWConfig::default()
            },
            eval_seqs: self.eval_tokens.map_or(64, |t| (t / ctx.max(1)).max(1)),
        })
    }
}

/// The tokenizer at `path`, which the user named (`--tokenizer`) or the caller fetched.
pub fn open_tokenizer(path: &Path) -> Result<Tokenizer, SessionError> {
    if !path.exists() {
        return Err(option(format!(
            "--tokenizer {}: no such file or folder",
            path.display()
        )));
    }
    camelid_model::tokenizer_load::load_tokenizer(path)
        .map_err(|e| SessionError::Model(format!("{}: reading the tokenizer: {e}", path.display())))
}

/// What a run writes besides the weights: the tokenizer's files, its special ids, the source.
pub fn output(dir: PathBuf, tok: &Tokenizer, tok_path: &Path, source: &Source) -> Output {
    Output {
        dir,
        bos: tok.bos(),
        eos: tok.eos(),
        tokenizer_files: checkpoint::tokenizer_files(tok_path),
        source: source.to_json(),
    }
}

/// Token shards of `inputs` (the source's data, or the default text the caller fetched), from
/// the cache when already made. `progress` hears of the bytes tokenized.
pub fn prepare_data(
    source: &Source,
    inputs: &[PathBuf],
    tok: &Tokenizer,
    tok_path: &Path,
    threads: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Shards, SessionError> {
    if let Some(p) = inputs.iter().find(|p| !p.exists()) {
        return Err(option(format!(
            "--data {}: no such file or folder",
            p.display()
        )));
    }
    let docs = data::collect_documents(inputs)?;
    let key = data::hash_files(tok_path)?;
    let cache = data_cache()?;
    Ok(data::prepare(
        &docs,
        tok,
        &key,
        source.val_fraction,
        &cache,
        threads,
        progress,
    )?)
}

/// `CAMELID_DATA_CACHE`, else `$XDG_CACHE_HOME/camelid/data`, else `~/.cache/camelid/data`.
pub fn data_cache() -> Result<PathBuf, SessionError> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("CAMELID_DATA_CACHE") {
        return Ok(p);
    }
    let base = match (var("XDG_CACHE_HOME"), var("HOME")) {
        (Some(p), _) => p,
        (None, Some(h)) => h.join(".cache"),
        (None, None) => {
            return Err(option(
                "cannot find a cache folder: set CAMELID_DATA_CACHE or HOME".into(),
            ));
        }
    };
    Ok(base.join("camelid").join("data"))
}

/// Bytes in MiB with one decimal, as the summaries print them.
pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// One line on the shards: documents, tokens, bytes per token, where they are.
pub fn data_line(shards: &Shards) -> String {
    let i = &shards.info;
    format!(
        "data: {} documents ({} held out), {} + {} tokens ({:.2} bytes per token), shards in {}",
        i.train_docs + i.val_docs,
        i.val_docs,
        i.train_tokens,
        i.val_tokens,
        shards.train_bytes_per_token(),
        shards.dir.display()
    )
}

/// The model's shape in one line.
pub fn model_line(arch: Arch, c: &Config, ctx: usize) -> String {
    format!(
        "model: {} d {} layers {} heads {}/{} kv, FFN {}, vocab {}, ctx {}, {}; {:.2}M parameters",
        arch.name(),
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.d_ff,
        c.n_vocab,
        ctx,
        if c.tied_embeddings { "tied" } else { "untied" },
        c.n_params() as f64 / 1e6
    )
}

/// The batch and schedule in one line; `train_windows` is the training split's sequences.
pub fn batch_line(s: &Settings, threads: usize, train_windows: usize) -> String {
    format!(
        "batch: {} sequences × {} tokens = {} tokens per step in micro-batches of {}; {} steps, \
         lr {} (warmup {}, cosine to {}×), {} threads; an epoch is {} steps",
        s.seqs_per_step,
        s.ctx,
        s.seqs_per_step * s.ctx,
        s.micro_seqs,
        s.steps,
        s.lr,
        s.warmup,
        s.min_lr_ratio,
        threads,
        train_windows.div_ceil(s.seqs_per_step.max(1))
    )
}

/// The memory of the run in one line, its parts summed.
pub fn memory_line(m: &Memory) -> String {
    format!(
        "memory: {} = weights {} + gradients {} + Adam moments {} + activations {} + shards {}",
        mib(m.total()),
        mib(m.weights),
        mib(m.grads),
        mib(m.moments),
        mib(m.activations),
        mib(m.shards)
    )
}

/// Why the run stopped, as the summary says it.
pub fn stopped_reason(s: Stopped) -> &'static str {
    match s {
        Stopped::Done => "done",
        Stopped::StopAt => "stopped at --stop-at",
        Stopped::MaxTime => "stopped at --max-time",
        Stopped::Interrupted => "interrupted",
    }
}

/// A continuation of BOS by the checkpoint in `dir` (loaded as `camelid run` loads it), sampled
/// at the default temperature with a seed.
pub fn sample(
    dir: &Path,
    tok: &Tokenizer,
    seed: u64,
    n: usize,
    threads: usize,
) -> Result<String, SessionError> {
    let model_err = |e: &dyn fmt::Display| SessionError::Model(format!("{}: {e}", dir.display()));
    let mut model = Model::load(dir).map_err(|e| model_err(&e))?;
    model.set_threads(threads);
    let prompt: Vec<u32> = tok.bos().into_iter().collect();
    if prompt.is_empty() {
        return Err(SessionError::Model(
            "the tokenizer has no BOS token to start from".into(),
        ));
    }
    let mut state = model
        .new_state((prompt.len() + n).min(model.config.n_ctx_train))
        .map_err(|e| model_err(&e))?;
    let params = GenParams {
        max_tokens: n,
        stop: Vec::new(),
        sampler: SamplerConfig {
            seed,
            ..SamplerConfig::default()
        },
        grammar: None,
    };
    let never = AtomicBool::new(false);
    let g = generate(&model, &mut state, tok, &prompt, &params, &never, |_| {})
        .map_err(|e| model_err(&e))?;
    Ok(g.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> BatchOptions {
        BatchOptions {
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup: None,
            steps: 50,
            batch_tokens: None,
            micro_batch: 8,
            weight_decay: 0.1,
            seed: 7,
            eval_tokens: None,
        }
    }

    #[test]
    fn batch_defaults_follow_the_documented_rules() {
        let s = batch().settings(128).unwrap();
        // 16 sequences per step by default; warmup is a tenth of 50 steps (fewer than 100).
        assert_eq!((s.seqs_per_step, s.micro_seqs, s.warmup), (16, 8, 5));
        assert_eq!(s.eval_seqs, 64);
        let long = BatchOptions {
            steps: 5000,
            batch_tokens: Some(1000),
            micro_batch: 7,
            eval_tokens: Some(300),
            ..batch()
        };
        // 1000 tokens of 128-token sequences round down to 7; 300 tokens make 2 sequences.
        let s = long.settings(128).unwrap();
        assert_eq!((s.seqs_per_step, s.warmup, s.eval_seqs), (7, 100, 2));
    }

    #[test]
    fn batch_options_out_of_range_name_the_option() {
        let cases = [
            (
                BatchOptions {
                    batch_tokens: Some(100),
                    ..batch()
                },
                "--batch-tokens must be at least one sequence of --ctx 128",
            ),
            (
                BatchOptions {
                    micro_batch: 3,
                    ..batch()
                },
                "--micro-batch 3 must divide the 16 sequences",
            ),
            (
                BatchOptions {
                    micro_batch: 0,
                    ..batch()
                },
                "--micro-batch 0 must divide",
            ),
            (
                BatchOptions {
                    steps: 0,
                    ..batch()
                },
                "--steps must be at least 1",
            ),
        ];
        for (b, want) in cases {
            let e = b.settings(128).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("camelid-session-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_new_run_refuses_a_folder_with_files_and_bad_options() {
        let dir = scratch("out");
        std::fs::create_dir_all(&dir).unwrap();
        let run = NewRun {
            preset: "tiny",
            arch: None,
            data: &[],
            tokenizer: None,
            val_fraction: 0.05,
            every: [None, Some(10), None],
            out: Some(&dir),
        };
        // An empty folder is fine; the defaults fill the intervals not given.
        let (preset, source, out) = run.resolve().unwrap();
        assert_eq!((preset.id, out.as_path()), ("tiny", dir.as_path()));
        assert_eq!(source.every, [100, 10, 0]);
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = run.resolve().unwrap_err().to_string();
        assert!(e.contains("the folder exists and is not empty"), "{e}");
        let e = check_out(&dir.join("notes.txt")).unwrap_err().to_string();
        assert!(e.contains("is a file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        let bad = [
            (
                NewRun {
                    preset: "huge",
                    ..run
                },
                "unknown --preset \"huge\"; one of: tiny",
            ),
            (
                NewRun {
                    arch: Some("llama9"),
                    ..run
                },
                "unknown --arch \"llama9\"",
            ),
            (
                NewRun {
                    val_fraction: 1.0,
                    ..run
                },
                "--val-fraction must be in (0, 1)",
            ),
            (
                NewRun {
                    val_fraction: 0.0,
                    ..run
                },
                "--val-fraction must be in (0, 1)",
            ),
        ];
        for (r, want) in bad {
            let e = r.resolve().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn a_source_survives_its_json_and_resumed_intervals_override_it() {
        let s = Source {
            data: vec![PathBuf::from("a"), PathBuf::from("b/c")],
            tokenizer: Some(PathBuf::from("t.model")),
            arch: Arch::Llama3,
            val_fraction: 0.25,
            preset: "small".into(),
            every: [5, 6, 7],
        };
        let mut back = Source::from_json(&s.to_json(), Path::new("run")).unwrap();
        assert_eq!(back, s);
        back.override_every([None, Some(0), Some(9)]);
        assert_eq!(back.every, [5, 0, 9]);
        let e = Source::from_json(&serde_json::json!({"data": []}), Path::new("run"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "run: source.arch is missing");
    }

    #[test]
    fn a_new_run_checks_every_option_before_its_data_is_prepared() {
        let tok_path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/tokenizer/spm-tiny.model"
        ));
        let out = scratch("open");
        let start = |micro_batch| Start::New {
            run: NewRun {
                preset: "tiny",
                arch: None,
                data: &[],
                tokenizer: None,
                val_fraction: 0.05,
                every: [None; 3],
                out: Some(&out),
            },
            overrides: Overrides::default(),
            batch: BatchOptions {
                micro_batch,
                ..batch()
            },
        };
        let tokenizer = |_: &Source| -> Result<_, SessionError> {
            Ok((open_tokenizer(&tok_path)?, tok_path.clone()))
        };
        let mut prepared = false;
        let e = start(3)
            .open(tokenizer, |_, _, _| {
                prepared = true;
                Err(option("unreachable".into()))
            })
            .err()
            .unwrap();
        assert!(e.to_string().contains("--micro-batch 3 must divide"), "{e}");
        assert!(!prepared);
        // With good options the data is asked for, and its error is the run's.
        let e = start(8)
            .open(tokenizer, |s, tok, _| {
                assert_eq!((s.preset.as_str(), tok.n_vocab()), ("tiny", 1000));
                Err(option("no data here".into()))
            })
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "no data here");
        let e = Start::Resume {
            dir: &out,
            every: [None; 3],
        }
        .open(tokenizer, |_, _, _| Err(option("unreachable".into())))
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("not a camelid training checkpoint"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_tokenizer_is_named() {
        let e = open_tokenizer(Path::new("no-such.model"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--tokenizer no-such.model: no such file or folder");
    }

    #[test]
    fn memory_line_sums_its_parts() {
        let m = Memory {
            weights: 1 << 20,
            grads: 1 << 20,
            moments: 2 << 20,
            activations: 3 << 19,
            shards: 0,
        };
        assert_eq!(
            memory_line(&m),
            "memory: 5.5 MiB = weights 1.0 MiB + gradients 1.0 MiB + Adam moments 2.0 MiB + \
             activations 1.5 MiB + shards 0.0 MiB"
        );
    }
}
