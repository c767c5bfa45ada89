//! Writes the tokenizer files a checkpoint gets for a tokenizer (copied, or a `tokenizer.json` +
//! `tokenizer_config.json` written from a GGUF vocabulary or a `tokenizer.model`) into a folder,
//! for `tools/tokenizer_json_check.py` to load in Hugging Face `tokenizers` and transformers.
//!
//! ```sh
//! cargo run --release -p camelid-train --example tokenizer_files -- TOKENIZER OUT_DIR
//! ```

use std::path::PathBuf;

use camelid_train::checkpoint::{self, TokenizerFile};

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [src, out] = args.as_slice() else {
        eprintln!("usage: tokenizer_files TOKENIZER OUT_DIR");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("{}: {e}", out.display());
        std::process::exit(1);
    }
    for f in checkpoint::tokenizer_files(src) {
        let bytes = match &f {
            TokenizerFile::Copy { from, .. } => std::fs::read(from),
            TokenizerFile::Made { bytes, .. } => Ok(bytes.clone()),
        };
        let written = bytes.and_then(|b| {
            checkpoint::write_atomic(out, f.name(), &b)
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        if let Err(e) = written {
            eprintln!("{}: {e}", out.join(f.name()).display());
            std::process::exit(1);
        }
        println!("{}", f.name());
    }
}
