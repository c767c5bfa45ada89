//! Decode attention at depth: one query row of the Llama-3.2-1B shape (32 heads of 64 over 8 kv
//! heads) against `n_past` cached positions, through `Kernels::attention_rows` as a decode step
//! calls it, in µs per layer and the GB/s of K and V read.
//!
//! ```sh
//! cargo build --release -p camelid-kernels --example attn_speed
//! target/release/examples/attn_speed 512 4096      # CAMELID_THREADS (1), CAMELID_LAYERS (16)
//! ```
//!
//! `CAMELID_HEADS` and `CAMELID_KV_HEADS` (32 and 8) change the shape: 9 and 3 for SmolLM2-135M.
//! `CAMELID_CACHE=f16` measures an f16 cache. `CAMELID_LAYERS` caches side by side (a decode step reads each layer's once, so by default
//! they do not fit in the last-level cache, as in a real model); each call goes to the next.

use std::time::Instant;

use camelid_kernels::ops::AttnShape;
use camelid_kernels::{Kernels, Kv};
use half::f16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let threads = env("CAMELID_THREADS", 1);
    let layers = env("CAMELID_LAYERS", 16).max(1);
    let shape = AttnShape {
        n_heads: env("CAMELID_HEADS", 32),
        n_kv_heads: env("CAMELID_KV_HEADS", 8),
        head_dim: 64,
    };
    let (qd, kvd) = (shape.n_heads * 64, shape.n_kv_heads * 64);
    let f16_cache = std::env::var("CAMELID_CACHE").is_ok_and(|c| c == "f16");
    let kernels = Kernels::new(threads);
    let cache = if f16_cache { "f16" } else { "f32" };
    println!(
        "isa {}, {threads} threads, {layers} layers, {cache} cache, {} heads over {} kv heads",
        kernels.isa(),
        shape.n_heads,
        shape.n_kv_heads
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for n_past in std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap())
    {
        let kv: Vec<(Vec<f32>, Vec<f32>)> = (0..layers)
            .map(|_| {
                let k = (0..n_past * kvd).map(|_| rand()).collect();
                let v = (0..n_past * kvd).map(|_| rand()).collect();
                (k, v)
            })
            .collect();
        let kv16: Option<Vec<(Vec<f16>, Vec<f16>)>> = f16_cache.then(|| {
            kv.iter()
                .map(|(k, v)| {
                    let h = |x: &Vec<f32>| x.iter().map(|&y| f16::from_f32(y)).collect();
                    (h(k), h(v))
                })
                .collect()
        });
        let q: Vec<f32> = (0..qd).map(|_| rand()).collect();
        let mut out = vec![0.0f32; qd];
        let mut best = f64::INFINITY;
        for _ in 0..env("CAMELID_ROUNDS", 5) {
            let t = Instant::now();
            for (i, (k, v)) in kv.iter().enumerate() {
                let row = |_| match &kv16 {
                    Some(h) => (Kv::F16(&h[i].0, &h[i].1), n_past),
                    None => (Kv::F32(k, v), n_past),
                };
                kernels.attention_rows(&mut out, &q, shape, threads, row);
            }
            best = best.min(t.elapsed().as_secs_f64() / layers as f64);
        }
        let bytes = 2.0 * (n_past * kvd * if f16_cache { 2 } else { 4 }) as f64;
        println!(
            "n_past {n_past:>6}: {:>8.1} µs per layer, {:>6.2} GB/s of K and V",
            best * 1e6,
            bytes / best / 1e9
        );
    }
}
