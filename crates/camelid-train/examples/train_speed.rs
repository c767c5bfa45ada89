//! Training throughput of `Workspace::loss_and_grad` (forward + backward, no optimizer) on
//! llama2.c's stories15M shape (dim 288, 6 layers, 6 heads, ffn 768, vocab 32000, ctx 256)
//! with random weights and tokens; the PyTorch twin is `tools/train_speed_reference.py`.
//!
//! cargo run --release -p camelid-train --example train_speed -- [threads] [seqs] [steps] [ckpt]

use std::time::Instant;

use camelid_model::Config;
use camelid_model::config::RopeScaling;
use camelid_train::{Batch, Params, Workspace};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (threads, seqs, steps, ckpt) = (arg(0, 2), arg(1, 4), arg(2, 5), arg(3, 0) != 0);
    let seq_len = 256;
    let config = Config {
        n_vocab: 32000,
        d_model: 288,
        n_layers: 6,
        n_heads: 6,
        n_kv_heads: 6,
        head_dim: 48,
        d_ff: 768,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::None,
        n_ctx_train: 256,
        tied_embeddings: true,
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut params = Params::zeros(&config);
    for t in &mut params.tensors {
        for v in &mut t.data {
            let u = (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            *v = if t.shape.len() == 1 { 1.0 } else { u * 0.07 };
        }
    }
    let n = seqs * seq_len;
    let batch = Batch {
        inputs: (0..n).map(|_| (next() % 32000) as u32).collect(),
        targets: (0..n).map(|_| (next() % 32000) as u32).collect(),
        n_seqs: seqs,
        seq_len,
    };
    let mut ws = Workspace::new(&config, seqs, seq_len, threads);
    ws.set_checkpointing(ckpt);
    let mut grads = params.zeros_like();
    eprintln!(
        "workspace {:.0} MiB, parameters and gradients {:.0} MiB",
        ws.bytes() as f64 / (1 << 20) as f64,
        8.0 * params.len() as f64 / (1 << 20) as f64
    );
    let loss = ws.loss_and_grad(&params, &batch, &mut grads, 1.0).unwrap();
    let mut times = Vec::new();
    let cpu0 = cpu_seconds();
    for _ in 0..steps {
        let t0 = Instant::now();
        ws.loss_and_grad(&params, &batch, &mut grads, 1.0).unwrap();
        times.push(t0.elapsed().as_secs_f64());
    }
    let cpu = (cpu_seconds() - cpu0) / steps as f64;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flops = 6.0 * config.matmul_params() as f64 * n as f64;
    println!(
        "stories15M shape, {threads} threads, {seqs}x{seq_len} tokens, checkpointing {ckpt}: \
         loss {loss:.4}, median step {:.1} ms (min {:.1}), {:.0} tokens/s, {:.1} GFLOP/s (6·N_mm·tokens); \
         {:.2} CPU s/step, {:.0} tokens per CPU second",
        median * 1e3,
        times[0] * 1e3,
        n as f64 / median,
        flops / median / 1e9,
        cpu,
        n as f64 / cpu,
    );
}

/// User + system CPU time of this process (Linux `/proc/self/stat`, clock ticks of 1/100 s),
/// which a machine shared with other jobs disturbs less than the wall clock; NaN elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    (f[11] + f[12]) / 100.0
}
