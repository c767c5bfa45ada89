//! `--export-gguf`: a saved checkpoint folder as a GGUF file that `camelid run` and llama.cpp
//! load, through the same conversion as `camelid quantize` of a Hugging Face folder (the model
//! crate's loader undoes HF's Wq/Wk row permutation; `convert::plan_canonical` names the
//! tensors as llama.cpp does; `llama_metadata` and `tokenizer_metadata` write the keys).

use std::path::Path;

use camelid_formats::gguf::{DEFAULT_ALIGNMENT, GgufWriter};
use camelid_model::convert::{
    self, Ftype, llama_metadata, llama3_rope_divisors, plan_canonical, tokenizer_metadata,
};
use camelid_model::weights::Checkpoint;
use camelid_tokenizer::Tokenizer;

struct Silent;

impl convert::Progress for Silent {
    fn tensor(&self, _: &str) {}
    fn advance(&self, _: u64) {}
}

/// Writes the checkpoint in `dir` to `out` as a GGUF of type `ftype` with `tokenizer`'s keys.
/// Returns the bytes written.
pub fn export_gguf(
    dir: &Path,
    tokenizer: &Tokenizer,
    name: &str,
    out: &Path,
    ftype: Ftype,
    threads: usize,
) -> Result<u64, String> {
    let ck = Checkpoint::open(dir).map_err(|e| e.to_string())?;
    let config = ck.config.clone();
    let weights = ck.load_weights().map_err(|e| e.to_string())?;
    if tokenizer.n_vocab() > config.n_vocab {
        return Err(format!(
            "the tokenizer has {} tokens, more than the model's {}",
            tokenizer.n_vocab(),
            config.n_vocab
        ));
    }
    let rope_freqs = llama3_rope_divisors(&config);
    let progress = Silent;
    let mut writer = GgufWriter::new(DEFAULT_ALIGNMENT);
    for (k, v) in llama_metadata(&config, name) {
        writer.add_metadata(&k, v);
    }
    for (k, v) in tokenizer_metadata(tokenizer, config.n_vocab) {
        writer.add_metadata(&k, v);
    }
    let plan = plan_canonical(&config, &weights, rope_freqs.as_deref(), ftype, false);
    convert::add_tensors(&mut writer, plan, ftype, threads.max(1), &progress)
        .map_err(|e| e.to_string())?;
    writer.write_file(out).map_err(|e| e.to_string())
}
