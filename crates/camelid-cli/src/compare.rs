//! `camelid models` (every published Llama shape with its costs) and `camelid compare` (presets
//! or model files side by side: shapes, memory, compute, tokenizer efficiency on given texts,
//! perplexity of model files, and an SVG chart).
//!
//! The figures, tables and chart are `camelid_engine::compare`'s; this module resolves the
//! models and their tokenizers, reads the texts, and prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use camelid_engine::compare::{
    Comparison, Entry, FOOTNOTES, PplOptions, compare, entry_tokenizers, models_table, table,
};
use camelid_model::config::{find_preset, preset_ids, presets};
use camelid_model::weights::Checkpoint;
use camelid_tokenizer::Tokenizer;
use serde_json::{Value, json};

use crate::eval::read_nonempty;
use crate::fetch;
use crate::load::{ComputeArgs, load_from};
#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// List what is stored on this machine instead: the default model and the preset
    /// vocabularies in camelid's cache, and the hf: downloads in the Hugging Face cache, with
    /// their paths and sizes.
    #[arg(long)]
    pub local: bool,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Preset ids (llama-7b, llama2-7b, llama3-8b, llama3.1-405b, ...; see `camelid models`)
    /// or models as every command takes them: GGUF files, Hugging Face folders,
    /// `hf:OWNER/REPO[/FILE]`, `smollm2`.
    #[arg(required = true, num_args = 1..)]
    pub models: Vec<String>,
    /// Texts to tokenize with each model's tokenizer (repeatable); model files also get their
    /// perplexity on each text that holds two chunks.
    #[arg(long = "text")]
    pub texts: Vec<PathBuf>,
    /// Write an SVG chart: KV-cache memory against context length (log scales), tokens per
    /// 1,000 characters of each text for each model, and per-chunk perplexity of the model files
    /// on the texts.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Context (chunk length) of the perplexity runs.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Chunks per perplexity run at most.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Where and how the perplexity runs compute (`--device cuda` on a GPU).
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run_models(a: &ModelsArgs) -> Result<()> {
    let entries: Vec<Entry> = presets().iter().map(Entry::preset).collect();
    if a.json {
        let v: Vec<Value> = entries.iter().map(Entry::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "models": v }))?);
        return Ok(());
    }
    let (header, rows) = models_table(&entries);
    println!("{}", table(&header, &rows));
    println!("{FOOTNOTES}");
    println!(
        "What is stored on this machine (default model, vocabularies, hf: downloads): camelid models --local"
    );
    Ok(())
}

fn resolve(arg: &str) -> Result<Entry> {
    if let Some(p) = find_preset(arg) {
        return Ok(Entry::preset(&p));
    }
    let path = fetch::resolve_model(Some(arg)).map_err(|e| {
        let ids = preset_ids();
        anyhow::Error::new(e).context(format!(
            "`{arg}` is neither a preset nor a model (presets: {ids})"
        ))
    })?;
    let ckpt = Checkpoint::open(&path)?;
    let name = path
        .file_name()
        .map_or_else(|| arg.to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Entry {
        label: arg.to_string(),
        name,
        config: ckpt.config.clone(),
        training_tokens: None,
        file: Some(path),
    })
}

pub fn run_compare(a: &CompareArgs) -> Result<()> {
    let entries = a
        .models
        .iter()
        .map(|m| resolve(m))
        .collect::<Result<Vec<_>>>()?;
    let texts = a
        .texts
        .iter()
        .map(|p| Ok((p.display().to_string(), read_nonempty(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let tokenizers = if texts.is_empty() {
        Vec::new()
    } else {
        entry_tokenizers(&entries, |presets| match fetch::Resolver::from_env() {
            Ok(r) => r.preset_vocabularies(presets),
            Err(e) => presets.iter().map(|_| Err(format!("{e:#}"))).collect(),
        })
    };
    let load_args = a.compute.load_args(None, Some(a.ctx), &Default::default());
    let ppl = PplOptions {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
        load: &mut |path: &Path| load_from(path, &load_args).map(|l| l.model),
        started: &mut |what: &str| eprintln!("{what}"),
    };
    let tokenizers: Vec<Result<&Tokenizer, String>> = tokenizers
        .iter()
        .map(|t| t.as_deref().map_err(Clone::clone))
        .collect();
    let c: Comparison = compare(entries, &texts, &tokenizers, ppl)?;
    if let Some(out) = &a.plot {
        std::fs::write(out, c.to_svg()).with_context(|| format!("writing {}", out.display()))?;
    }
    if a.json {
        let mut v = c.to_json();
        v["plot"] = json!(a.plot.as_ref().map(|p| p.display().to_string()));
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", c.to_text());
        if let Some(p) = &a.plot {
            println!("chart written to {}", p.display());
        }
    }
    Ok(())
}
