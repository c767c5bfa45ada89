//! `camelid tokenize` and `camelid detokenize`: text to ids and back with a model's tokenizer.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use camelid_model::tokenizer_load::load_tokenizer;
use camelid_tokenizer::Tokenizer;

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

/// Bytes to text, naming the first byte that is not UTF-8.
fn utf8(bytes: Vec<u8>, source: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let b = e.as_bytes()[at];
        anyhow::anyhow!("{source} is not valid UTF-8: byte 0x{b:02X} at offset {at}")
    })
}

/// A token's text for display on one line: escapes for line breaks, tabs and other controls,
/// `\xNN` for bytes that are part of a character split across tokens.
fn display_piece(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

pub fn run_tokenize(args: &TokenizeArgs) -> Result<()> {
    let text = match (&args.file, &args.text) {
        (Some(f), _) => {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            utf8(bytes, &f.display().to_string())?
        }
        (None, Some(t)) => t.clone(),
        (None, None) => {
            let mut bytes = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("cannot read standard input")?;
            utf8(bytes, "standard input")?
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
            writeln!(out, "{id}\t{}", display_piece(piece))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Parses ids separated by commas, spaces or both; brackets are allowed around them.
fn parse_ids(parts: &[String]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for part in parts {
        for s in part.split(|c: char| c == ',' || c.is_whitespace() || c == '[' || c == ']') {
            if s.is_empty() {
                continue;
            }
            let id: u32 = s
                .parse()
                .with_context(|| format!("{s:?} is not a token id (a number 0 to 4294967295)"))?;
            ids.push(id);
        }
    }
    if ids.is_empty() {
        bail!("no token ids given");
    }
    Ok(ids)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_any_separator() {
        let v = |s: &[&str]| parse_ids(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(v(&["1,2, 3"]).unwrap(), [1, 2, 3]);
        assert_eq!(v(&["1", "2", "3"]).unwrap(), [1, 2, 3]);
        assert_eq!(v(&["[1, 2]"]).unwrap(), [1, 2]);
        assert!(v(&["1,x"]).unwrap_err().to_string().contains("\"x\""));
        assert!(v(&[","]).is_err());
    }

    #[test]
    fn non_utf8_names_the_offset() {
        let e = utf8(b"ab\xFFc".to_vec(), "f.txt").unwrap_err().to_string();
        assert_eq!(e, "f.txt is not valid UTF-8: byte 0xFF at offset 2");
    }

    fn spm_tiny() -> Option<String> {
        Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/tokenizer/spm-tiny.model"
            )
            .into(),
        )
    }

    #[test]
    fn detokenize_rejects_ids_out_of_range() {
        let args = DetokenizeArgs {
            model: spm_tiny(),
            ids: vec!["5, 1000".to_string()],
        };
        let e = run_detokenize(&args).unwrap_err().to_string();
        assert!(
            e.contains("token id 1000") && e.contains("1000 tokens"),
            "{e}"
        );
    }

    #[test]
    fn tokenize_rejects_a_non_utf8_file() {
        let path = std::env::temp_dir().join(format!("camelid-cli-tok-{}.txt", std::process::id()));
        std::fs::write(&path, b"caf\xC3(").unwrap();
        let args = TokenizeArgs {
            model: spm_tiny(),
            no_bos: false,
            special: false,
            json: true,
            file: Some(path.clone()),
            text: None,
        };
        let e = run_tokenize(&args).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(e.contains("byte 0xC3 at offset 3"), "{e}");
    }

    #[test]
    fn pieces_stay_on_one_line() {
        assert_eq!(display_piece(b" a\n\t"), " a\\n\\t");
        assert_eq!(display_piece(&[0xE6, 0x97]), "\\xE6\\x97");
    }
}
