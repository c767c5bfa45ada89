//! `camelid embed`: the embedding of each text (or of given token ids), one JSON array per line:
//! the final hidden states pooled and scaled to unit L2 norm, as `camelid serve` answers
//! `/v1/embeddings` (camelid-model's `embed` module).

use std::io::{self, BufRead, Write};

use anyhow::{Context, Result, bail};
use camelid_model::Pooling;

use crate::load::{LoadArgs, load};

#[derive(clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// How a text's final hidden states become one vector: mean (over its tokens), last (its
    /// last token) or cls (its first token).
    #[arg(long, default_value_t = Pooling::Mean)]
    pub pooling: Pooling,
    /// Embed these token ids (comma-separated) instead of text.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "texts")]
    pub tokens: Vec<u32>,
    /// The texts to embed, one line of output each; without any (and without --tokens), each
    /// line of standard input is one text.
    pub texts: Vec<String>,
}

pub fn run(a: &EmbedArgs) -> Result<()> {
    let loaded = load(&a.load)?;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let inputs: Vec<Vec<u32>> = if !a.tokens.is_empty() {
        vec![a.tokens.clone()]
    } else {
        let texts = if a.texts.is_empty() {
            io::stdin()
                .lock()
                .lines()
                .collect::<io::Result<Vec<_>>>()
                .context("reading standard input")?
        } else {
            a.texts.clone()
        };
        // Text is data, as on the server: special-token spellings in it are not parsed.
        texts
            .iter()
            .map(|t| tok.encode(t, tok.add_bos_default(), false))
            .collect()
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    for (i, ids) in inputs.iter().enumerate() {
        if ids.is_empty() {
            bail!("input {} has no tokens", i + 1);
        }
        if ids.len() > loaded.n_ctx {
            bail!(
                "input {} has {} tokens, more than the context of {} (--ctx)",
                i + 1,
                ids.len(),
                loaded.n_ctx
            );
        }
        let v = model.embed(ids, a.pooling)?;
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
