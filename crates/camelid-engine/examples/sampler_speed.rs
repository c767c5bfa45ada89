//! Time of one `Sampler::sample` call, in microseconds, for the vocabularies of the default
//! model (49,152) and of Llama 3 (128,256), with the CLI's default settings (llama.cpp's:
//! temperature 0.8, top-k 40, top-p 0.95, min-p 0.05), the server's (OpenAI's: temperature 1,
//! no other filter) and greedy decoding. The logits are those of a language model's typical
//! shape: a few large values over a normal background (seeded, the same every run).
//!
//! ```sh
//! cargo run --release -p camelid-engine --example sampler_speed
//! ```

use std::time::Instant;

use camelid_engine::{Sampler, SamplerConfig};

fn logits(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            // Box-Muller from two uniforms; every 1000th token a few units above the rest.
            let (u, v) = (next().max(1e-12), next());
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            (2.0 * z + if i % 1000 == 7 { 8.0 } else { 0.0 }) as f32
        })
        .collect()
}

fn main() {
    let cli = SamplerConfig::default();
    let server = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerConfig::default()
    };
    println!(
        "{:>8} {:>10} {:>10} {:>10}",
        "vocab", "cli µs", "server µs", "greedy µs"
    );
    for n in [49_152, 128_256] {
        let rows: Vec<Vec<f32>> = (0..16).map(|i| logits(n, 0x9e37 + i)).collect();
        let mut cells = Vec::new();
        for config in [cli.clone(), server.clone(), SamplerConfig::greedy()] {
            let mut s = Sampler::new(config);
            let history: Vec<u32> = (0..64).map(|i| i * 7).collect();
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = Instant::now();
                let mut sink = 0u32;
                for row in &rows {
                    sink ^= s.sample(row, &history);
                }
                std::hint::black_box(sink);
                best = best.min(t.elapsed().as_secs_f64() * 1e6 / rows.len() as f64);
            }
            cells.push(best);
        }
        println!(
            "{n:>8} {:>10.1} {:>10.1} {:>10.1}",
            cells[0], cells[1], cells[2]
        );
    }
}
