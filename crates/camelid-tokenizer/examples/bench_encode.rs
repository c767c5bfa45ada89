//! Single-thread encoding speed.
//!
//! `cargo run --release -p camelid-tokenizer --example bench_encode -- TOKENIZER FILE...`
//!
//! TOKENIZER is a `tokenizer.json` or a `tokenizer.model`. For each FILE, the whole text is
//! encoded as one string (special tokens not parsed) repeatedly for at least two seconds after a
//! warm-up; the best run's MB/s (10^6 bytes per second) is printed as one JSON line per file,
//! with the token count so that `tools/tokenizer_bench.py` can check that the output matches.

use std::time::{Duration, Instant};

use camelid_tokenizer::Tokenizer;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: bench_encode TOKENIZER FILE...");
        std::process::exit(2);
    }
    let tok = if args[0].ends_with(".json") {
        Tokenizer::from_tokenizer_json(&args[0])
    } else {
        Tokenizer::from_tokenizer_model(&args[0])
    }
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    for file in &args[1..] {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
            eprintln!("error: {file}: {e}");
            std::process::exit(1)
        });
        let n_tokens = tok.encode(&text, false, false).len();
        let mut best = Duration::MAX;
        let mut runs = 0;
        let start = Instant::now();
        while runs < 3 || start.elapsed() < Duration::from_secs(2) {
            let t = Instant::now();
            let ids = tok.encode(&text, false, false);
            let dt = t.elapsed();
            assert_eq!(ids.len(), n_tokens);
            best = best.min(dt);
            runs += 1;
        }
        let mbps = text.len() as f64 / best.as_secs_f64() / 1e6;
        println!(
            "{{\"file\": {:?}, \"bytes\": {}, \"tokens\": {n_tokens}, \"runs\": {runs}, \"best_s\": {:.6}, \"mb_per_s\": {mbps:.2}}}",
            file,
            text.len(),
            best.as_secs_f64()
        );
    }
}
