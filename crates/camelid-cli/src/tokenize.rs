//! `camelid tokenize` and `camelid detokenize`: text to ids and back with a model's tokenizer.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_tokenizer::Tokenizer;
use camelid_tokenizer::text::{escape_piece, parse_ids, utf8_text};

#[derive(clap::Args)]
pub struct TokenizeArgs {
    #[arg(short, long, help = TOKENIZER_HELP)]
    pub model: Option<String>,
    /// Do not put BOS in front (by default it is added when the vocabulary asks for it).
    #[arg(long)]
    pub no_bos: bool,
    /// Turn special-token text such as `<|eot_id|>` into its id instead of encoding it as text.
    #[arg(long)]
    pub special: bool,
    /// Print a JSON array of ids instead of one `id<TAB>piece` line per token.
    #[arg(long)]
    pub json: bool,
    /// Read the text from this file (UTF-8, taken verbatim).
    #[arg(short, long, conflicts_with = "text")]
    pub file: Option<PathBuf>,
    /// The text to tokenize; without it and without --file, standard input is read.
    pub text: Option<String>,
}

#[derive(clap::Args)]
pub struct DetokenizeArgs {
    #[arg(short, long, help = TOKENIZER_HELP)]
    pub model: Option<String>,
    /// Token ids, separated by commas or spaces (`1,2,3`, `"1 2 3"`, `1 2 3`, `[1, 2, 3]`).
    #[arg(required = true, num_args = 1..)]
    pub ids: Vec<String>,
}

/// Any model `-m` takes elsewhere (resolved the same way), or a tokenizer file on its own.
const TOKENIZER_HELP: &str = "A GGUF file (model or vocabulary only), a model folder, a \
tokenizer.json or a tokenizer.model, `hf:OWNER/REPO[/FILE]`, or the name `smollm2` (the default \
model, fetched on first use)";

fn load(model: Option<&str>) -> Result<Tokenizer> {
    let path = crate::fetch::resolve_model(model)?;
    load_tokenizer(&path)
        .with_context(|| format!("cannot load a tokenizer from {}", path.display()))
}

pub fn run_tokenize(args: &TokenizeArgs) -> Result<()> {
    let text = match (&args.file, &args.text) {
        (Some(f), _) => {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            utf8_text(bytes, &f.display().to_string())?
        }
        (None, Some(t)) => t.clone(),
        (None, None) => {
            let mut bytes = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("cannot read standard input")?;
            utf8_text(bytes, "standard input")?
        }
    };
    let tok = load(args.model.as_deref())?;
    let add_bos = tok.add_bos_default() && !args.no_bos;
    let ids = tok.encode(&text, add_bos, args.special);
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer(&mut out, &ids)?;
        writeln!(out)?;
    } else {
        for &id in &ids {
            let piece = tok.token_bytes(id).unwrap_or_default();
            writeln!(out, "{id}\t{}", escape_piece(piece))?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run_detokenize(args: &DetokenizeArgs) -> Result<()> {
    let ids = parse_ids(&args.ids)?;
    let tok = load(args.model.as_deref())?;
    let bytes = tok.decode_bytes(&ids)?;
    let mut out = io::stdout().lock();
    out.write_all(&bytes)?;
    // Ended by a newline as every other output line is, so that the shell prompt does not
    // follow the text on the same line.
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
