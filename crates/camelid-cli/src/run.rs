//! `camelid run`: generate a continuation of a prompt, streamed to stdout.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use camelid_engine::chat::ChatTemplate;
use camelid_engine::constrain::{Grammar, GrammarSpec, Vocabulary};
use camelid_engine::load::Loaded;
use camelid_engine::options::{self, Seed};
use camelid_engine::sampler::SamplingOptions;
use camelid_engine::speculate::{DraftModel, Drafter, Lookup, Speculator, check_vocabularies};
use camelid_engine::{FinishReason, GenParams, SamplerConfig, Speculation, generate_with};
use camelid_model::sampling::SamplingHints;
use camelid_tokenizer::Tokenizer;
use camelid_tokenizer::text::utf8_text;

use crate::load::{LoadArgs, load};

/// Sampling options shared by `run` and `chat`. An option left unset takes the value the
/// model recommends (GGUF `general.sampling.*`, or a folder's `generation_config.json`), else
/// llama.cpp's default, given in its help line.
///
/// Every numeric option takes a negative value as a value (`--temp -1`, `--seed -1`), as
/// llama.cpp's do: where llama.cpp gives a negative value a meaning, it has the same one here,
/// and otherwise it gets the option's range error rather than clap's "unexpected argument".
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SampleArgs {
    /// Temperature; 0 or less is greedy, as in llama.cpp (default: the model's, else 0.8).
    #[arg(long = "temp", value_parser = options::temperature, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Keep the K most likely tokens, 0 = off (default: the model's, else 40).
    #[arg(long, value_parser = options::top_k, allow_negative_numbers = true)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (default: the
    /// model's, else 0.95).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the most likely one (default: the
    /// model's, else 0.05).
    #[arg(long, allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Repetition penalty over the last --repeat-last-n tokens, 1 = off (default: the model's,
    /// else 1).
    #[arg(long, allow_negative_numbers = true)]
    pub repeat_penalty: Option<f32>,
    /// Tokens the penalties look back over, -1 = all (default: the model's, else 64).
    #[arg(long, value_parser = options::penalty_window, allow_negative_numbers = true)]
    pub repeat_last_n: Option<usize>,
    /// Subtract this from the logit of every token that occurs in the last --repeat-last-n
    /// tokens, once whatever its count (OpenAI's presence_penalty: -2 to 2, 0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Subtract this times its count from the logit of every token in the last
    /// --repeat-last-n tokens (OpenAI's frequency_penalty: -2 to 2, 0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Random seed; -1 = a fresh one, as when unset (it is printed on stderr, to repeat the
    /// run).
    #[arg(long, value_parser = options::seed, allow_negative_numbers = true)]
    pub seed: Option<Seed>,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Constrain the output to JSON valid under this JSON schema (a file; generation ends when
    /// the value is complete).
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Constrain the output to this grammar, in llama.cpp's GBNF (a file; `root` is the start
    /// rule; generation ends when nothing more can follow).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

impl SampleArgs {
    /// The options as the engine takes them.
    pub fn options(&self) -> SamplingOptions {
        SamplingOptions {
            given: SamplingHints {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                source: String::new(),
            },
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed.and_then(Seed::fixed),
        }
    }

    /// Checks the options given on the command line, before a model is loaded.
    pub fn check(&self) -> Result<()> {
        self.sampler(&SamplingHints::default()).map(|_| ())
    }

    /// The grammar of --json-schema or --grammar, compiled for the vocabulary; errors name the
    /// file and what is wrong in it.
    pub fn grammar(&self, tok: &Tokenizer) -> Result<Option<Grammar>> {
        let (path, spec) = match (&self.json_schema, &self.grammar) {
            (Some(p), _) => {
                let text = read_text(p)?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("--json-schema {}: not JSON", p.display()))?;
                (p, GrammarSpec::JsonSchema(v))
            }
            (None, Some(p)) => (p, GrammarSpec::Gbnf(read_text(p)?)),
            (None, None) => return Ok(None),
        };
        let t0 = std::time::Instant::now();
        let vocab = Vocabulary::new(std::sync::Arc::new(tok.clone()))?;
        let t1 = std::time::Instant::now();
        let g = vocab
            .compile(&spec)
            .with_context(|| format!("{}: not a usable grammar", path.display()))?;
        eprintln!(
            "[grammar: token trie of {} tokens in {:.1} ms, compiled in {:.1} ms]",
            vocab.n_vocab(),
            (t1 - t0).as_secs_f64() * 1e3,
            t1.elapsed().as_secs_f64() * 1e3
        );
        Ok(Some(g))
    }

    /// The sampler: the options given, then the model's recommendations, then llama.cpp's
    /// defaults.
    pub fn sampler(&self, hints: &SamplingHints) -> Result<SamplerConfig> {
        self.options().sampler(hints).map_err(anyhow::Error::msg)
    }
}

/// Speculative decoding, shared by `run`, `chat` and `serve`: the tokens are those plain
/// decoding gives (on the CPU, the same seed draws the same text); only the speed changes.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(group(clap::ArgGroup::new("drafter").args(["model_draft", "lookup"])))]
pub struct DraftArgs {
    /// Speculative decoding with this smaller model of the same vocabulary as the draft (a
    /// GGUF file, a Hugging Face folder...; loaded with the same --device, --threads and
    /// --precision): it proposes tokens, the model checks them several at a time.
    #[arg(
        long = "model-draft",
        visible_alias = "draft-model",
        value_name = "MODEL",
        conflicts_with = "lookup"
    )]
    pub model_draft: Option<String>,
    /// Speculative decoding by prompt lookup: the draft is what followed the latest earlier
    /// occurrence of the last 2 to 4 tokens (no second model; good where the output repeats
    /// the input: edits, summaries, code, extraction).
    #[arg(long)]
    pub lookup: bool,
    /// With --model-draft or --lookup: draft tokens checked per pass at most.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=255),
          requires = "drafter")]
    pub draft_max: u16,
    /// With --model-draft: the draft stops before a token the draft model gives less than this
    /// probability (llama.cpp's --draft-p-min).
    #[arg(long, default_value_t = 0.75, value_parser = probability, requires = "model_draft",
          conflicts_with = "lookup")]
    pub draft_p_min: f32,
}

/// A probability, from 0 to 1.
fn probability(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(p) => Err(format!("expected a probability from 0 to 1, got {p}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The draft model of --model-draft, loaded.
pub struct DraftLoaded(Option<Loaded>);

impl DraftArgs {
    /// Loads the draft model, if one is asked for, as `load` says (its --device, threads...).
    pub fn load(&self, load: &LoadArgs) -> Result<DraftLoaded> {
        let Some(m) = &self.model_draft else {
            return Ok(DraftLoaded(None));
        };
        let path = crate::fetch::resolve_model(Some(m))?;
        // The adapters are the model's: a draft only proposes, whatever it was tuned on.
        let load = LoadArgs {
            adapters: Default::default(),
            ..load.clone()
        };
        let loaded = crate::load::load_from(&path, &load)
            .with_context(|| format!("--model-draft {}", path.display()))?;
        Ok(DraftLoaded(Some(loaded)))
    }

    /// An error of the draft model, named as the user gave it.
    fn draft_error(&self, e: impl std::fmt::Display) -> anyhow::Error {
        let name = self.model_draft.as_deref().unwrap_or_default();
        anyhow::anyhow!("--model-draft {name}: {e}")
    }

    /// A line on stderr when the draft model is not smaller than the model: its steps then
    /// cost at least what they save.
    fn note_size(&self, draft: &Loaded, target: &Loaded) {
        let (d, t) = (
            draft.model.config.n_params(),
            target.model.config.n_params(),
        );
        if d >= t {
            eprintln!(
                "[--model-draft: the draft model has {:.2}B parameters, the model {:.2}B; a draft \
                 pays off when it is many times smaller]",
                d as f64 / 1e9,
                t as f64 / 1e9
            );
        }
    }

    /// The speculator of these options for `target`, if speculation is asked for.
    pub fn speculator<'m>(
        &self,
        draft: &'m DraftLoaded,
        target: &Loaded,
    ) -> Result<Option<Speculator<'m>>> {
        let drafter = match &draft.0 {
            Some(d) => Drafter::Model({
                self.note_size(d, target);
                DraftModel::new(
                    &d.model,
                    &d.tokenizer,
                    &target.tokenizer,
                    target.model.config.n_vocab,
                    target.n_ctx,
                    self.draft_p_min,
                )
                .map_err(|e| self.draft_error(e))?
            }),
            None if self.lookup => Drafter::Lookup(Lookup::default()),
            None => return Ok(None),
        };
        Ok(Some(Speculator::new(drafter, usize::from(self.draft_max))))
    }

    /// The server's speculation of these options for `target`, if it is asked for: the draft
    /// model (its vocabulary checked against `target`'s) goes to the worker.
    pub fn server_speculation(
        &self,
        draft: DraftLoaded,
        target: &Loaded,
    ) -> Result<Option<camelid_server::Speculation>> {
        if draft.0.is_none() && !self.lookup {
            return Ok(None);
        }
        if let Some(d) = &draft.0 {
            check_vocabularies(
                &d.tokenizer,
                d.model.config.n_vocab,
                &target.tokenizer,
                target.model.config.n_vocab,
            )
            .map_err(|e| self.draft_error(e))?;
            self.note_size(d, target);
        }
        Ok(Some(camelid_server::Speculation {
            draft_max: usize::from(self.draft_max),
            draft: draft.0.map(|d| d.model),
            p_min: self.draft_p_min,
        }))
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The prompt.
    #[arg(short, long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file ("-" for stdin).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Tokens to generate at most; -1 = no limit (until the model ends its text or the context
    /// is full).
    #[arg(short = 'n', long = "n-predict", default_value = "256", value_parser = options::max_tokens,
          allow_negative_numbers = true)]
    pub n_predict: usize,
    /// Send the prompt as one user message in the model's chat template, so that a chat model
    /// answers it (one turn of `camelid chat`); without it the prompt is continued as raw text.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message before the prompt.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[command(flatten)]
    pub sample: SampleArgs,
    #[command(flatten)]
    pub draft: DraftArgs,
    /// Print the generated ids, text and timings as JSON instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// Said when a chat model ends at once on a raw prompt: a chat model expects its template's
/// turn markers and, given bare text, most often closes the turn it thinks it is in.
const CHAT_HINT: &str = "[the model ended its reply at once; it is a chat model: try camelid \
chat, or run --chat]";

pub fn run(a: &RunArgs) -> Result<()> {
    a.sample.check()?;
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => read_text(f)?,
        (None, None) => bail!("give a prompt with -p TEXT or -f FILE"),
    };
    let loaded = load(&a.load)?;
    let draft = a.draft.load(&a.load)?;
    let mut speculator = a.draft.speculator(&draft, &loaded)?;
    let sampler = a.sample.sampler(&loaded.sampling)?;
    let options = a.sample.options();
    if let Some(note) = options.hints_note(&loaded.sampling) {
        eprintln!("{note}");
    }
    if let Some(note) = options.seed_note(&sampler).filter(|_| !a.json) {
        eprintln!("{note}");
    }
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let template = ChatTemplate::for_tokenizer(tok);
    let ids = prompt_ids(a, &prompt, tok, template.as_ref())?;
    let mut state = model.new_state(loaded.n_ctx)?;
    let params = GenParams {
        max_tokens: a.n_predict,
        stop: a.sample.stop.clone(),
        sampler: sampler.clone(),
        grammar: a.sample.grammar(tok)?,
    };
    let cancel = crate::interrupt_flag();
    let mut stdout = io::stdout().lock();
    let mut io_err: io::Result<()> = Ok(());
    let spec = speculator.as_mut().map(|speculator| Speculation {
        speculator,
        before: &[],
    });
    let g = generate_with(
        model,
        &mut state,
        tok,
        &ids,
        &params,
        spec,
        cancel,
        |text| {
            if !a.json && io_err.is_ok() {
                io_err = stdout
                    .write_all(text.as_bytes())
                    .and_then(|_| stdout.flush());
                if io_err.is_err() {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        },
    )?;
    io_err.context("writing to stdout")?;
    let ended_at_once = g.tokens.is_empty() && g.finish == FinishReason::EndOfGeneration;
    if ended_at_once && !a.chat && template.is_some() {
        eprintln!("{CHAT_HINT}");
    }
    if a.json {
        writeln!(stdout, "{}", g.to_json(&ids, sampler.seed))?;
    } else {
        writeln!(stdout)?;
        stdout.flush()?;
        for line in g.summary_lines(loaded.n_ctx) {
            eprintln!("{line}");
        }
    }
    Ok(())
}

/// The prompt's ids: the text as it is, or with --chat one user turn (after the --system one)
/// in the model's template, the assistant's turn opened.
fn prompt_ids(
    a: &RunArgs,
    prompt: &str,
    tok: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Result<Vec<u32>> {
    if !a.chat {
        return Ok(tok.encode(prompt, tok.add_bos_default(), true));
    }
    let template = template.with_context(|| {
        format!(
            "--chat: {} has no chat template and its vocabulary is not one of a known chat \
             format; `camelid chat --chat-template llama2|llama3|FILE` takes one",
            a.load
                .model
                .as_deref()
                .unwrap_or(crate::fetch::SMOLLM2.file_name)
        )
    })?;
    Ok(template.encode_turn(tok, a.system.as_deref(), prompt)?)
}

/// Reads a text file (or stdin for "-"); bytes that are not UTF-8 are an error naming the first
/// bad byte and its offset, as `tokenize` says it.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(utf8_text(bytes, &path.display().to_string())?)
}
