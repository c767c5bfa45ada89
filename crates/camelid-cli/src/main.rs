//! `camelid`: run, inspect and evaluate Llama-family models from the command line.

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod chat;
mod compare;
mod embed;
mod eval;
mod experiment;
mod inspect;
mod load;
mod local;
mod quantize;
mod run;
mod serve;
mod tokenize;
mod train;
mod train_tokenizer;

// Model resolution and downloads are the library crate camelid-hub; the commands call it `fetch`.
use camelid_hub as fetch;

#[derive(Parser)]
#[command(
    name = "camelid",
    version,
    about = "A Rust engine for the Llama model family"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the logits of a token sequence as JSON: {"n_vocab": V, "logits": [[...], ...]}.
    Logits(LogitsArgs),
    /// Print a model's metadata, tensor table and parameter count.
    Inspect(inspect::InspectArgs),
    /// Generate a continuation of a prompt, streamed to stdout.
    Run(run::RunArgs),
    /// Chat with a model, in the terminal or one message per line of stdin.
    Chat(chat::ChatArgs),
    /// Serve a model over an OpenAI-compatible HTTP API, batching concurrent requests.
    Serve(serve::ServeArgs),
    /// Print the embedding of each text (pooled final hidden states, unit norm) as a JSON array.
    Embed(embed::EmbedArgs),
    /// Measure prompt (pp) and decode (tg) speed, as llama-bench does.
    Bench(bench::BenchArgs),
    /// Convert a GGUF or Hugging Face model to a quantized GGUF (llama-quantize's types and mixes).
    Quantize(quantize::QuantizeArgs),
    /// Write a model of a published shape with random weights (benchmarks, device checks).
    RandomModel(quantize::RandomModelArgs),
    /// Perplexity of a text as llama-perplexity computes it; KL divergence against a saved run.
    Perplexity(eval::PerplexityArgs),
    /// Multiple-choice accuracy (HellaSwag-style JSONL) by length-normalized log-likelihood.
    Score(eval::ScoreArgs),
    /// Every published Llama shape: parameters, memory, compute, training tokens; with
    /// --local, the models and vocabularies stored on this machine.
    Models(compare::ModelsArgs),
    /// Presets or model files side by side, tokenizer efficiency on texts, an SVG chart.
    Compare(compare::CompareArgs),
    /// Pre-train a Llama model on text (default: Shakespeare), with checkpoints that camelid and
    /// transformers load.
    Train(Box<train::TrainArgs>),
    /// Train and measure a study of the Llama papers' claims (gqa, scaling, context, vocab) and write a
    /// Markdown report with SVG charts.
    Experiment(experiment::ExperimentArgs),
    /// Train a BPE vocabulary (byte-level as Llama 3, or SentencePiece-style as Llama 2) on
    /// text and write it as tokenizer.json.
    TrainTokenizer(train_tokenizer::TrainTokenizerArgs),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Print the text of token ids.
    Detokenize(tokenize::DetokenizeArgs),
}

#[derive(clap::Args)]
struct LogitsArgs {
    #[arg(short, long, help = load::MODEL_HELP)]
    model: Option<String>,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    tokens: Vec<u32>,
    /// Print the logits of every position, not only the last.
    #[arg(long)]
    all: bool,
    /// Feed the tokens one at a time, as decoding does (default: as one prompt batch).
    #[arg(long)]
    decode: bool,
    #[command(flatten)]
    compute: load::ComputeArgs,
    #[command(flatten)]
    adapters: load::AdapterArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Logits(a) => logits(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::RandomModel(a) => quantize::run_random(a),
        Command::Chat(a) => chat::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Perplexity(a) => eval::run_perplexity(a),
        Command::Score(a) => eval::run_score(a),
        Command::Models(a) if a.local => local::run(a.json),
        Command::Models(a) => compare::run_models(a),
        Command::Compare(a) => compare::run_compare(a),
        Command::Train(a) => train::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::TrainTokenizer(a) => train_tokenizer::run(a),
        Command::Tokenize(a) => tokenize::run_tokenize(a),
        Command::Detokenize(a) => tokenize::run_detokenize(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Raised by the first Ctrl-C, which stops the generation in progress; a second one exits.
pub fn interrupt_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if FLAG.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    });
    &FLAG
}

/// A progress bar on stderr drawn by `template` (indicatif's syntax).
pub fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A closed stdout (`camelid ... | head`) ends the program quietly, as it does for Unix tools.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn logits(a: &LogitsArgs) -> Result<()> {
    let c = &a.compute;
    let (_, model) = load::open_resolved(
        a.model.as_deref(),
        c.device,
        c.threads,
        c.precision.get(),
        c.cache_type,
        a.adapters.get()?,
    )?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    camelid_engine::eval_io::write_logits_json(&model, &a.tokens, a.all, a.decode, &mut out)?;
    out.flush()?;
    Ok(())
}
