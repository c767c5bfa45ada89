//! Training throughput of whole optimizer steps (forward, backward, gradient clipping, AdamW) on a
//! preset's shape with a 32,000-token vocabulary (llama2.c's and Llama 2's), the Llama
//! initialisation and random tokens; the PyTorch twin is `tools/train_speed_reference.py` and
//! `tools/train_speed.py` runs both, interleaved. Prints one JSON line.
//!
//! ```sh
//! cargo run --release -p camelid-train --example train_speed -- \
//!     [--preset stories15m] [--threads 2] [--seqs 4] [--steps 5] [--tied] [--checkpoint]
//! ```
//!
//! FLOPs per step: 3 × the forward pass (the backward pass costs twice the forward), summed over
//! the positions of each sequence with [`camelid_model::Config::flops_per_token`] (`2·N_mm` plus
//! causal attention), i.e. `6·N_mm·tokens + attention`.

use std::time::Instant;

use camelid_train::optim::{AdamW, clip_grad_norm};
use camelid_train::shape::{self, Arch, Overrides};
use camelid_train::{Batch, Workspace, init};

fn main() {
    if let Err(e) = run() {
        eprintln!("train_speed: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let (mut preset, mut threads, mut seqs, mut steps) = ("stories15m".to_string(), 2, 4, 5);
    let (mut tied, mut ckpt) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let mut number = || -> Result<usize, String> {
            let v = value()?;
            v.parse().map_err(|_| format!("{v}: not a number"))
        };
        match a.as_str() {
            "--preset" => preset = value()?,
            "--threads" => threads = number()?,
            "--seqs" => seqs = number()?,
            "--steps" => steps = number()?,
            "--tied" => tied = true,
            "--checkpoint" => ckpt = true,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if threads == 0 || seqs == 0 || steps == 0 {
        return Err("--threads, --seqs and --steps must be at least 1".into());
    }
    let p = shape::preset(&preset).ok_or(format!("no preset {preset}"))?;
    let overrides = Overrides {
        tied,
        ..Overrides::default()
    };
    let config = shape::model_config(p, Arch::Llama2, &overrides, 32000)?;
    let seq_len = p.ctx;

    let mut params = init::init_params(&config, 1);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut token = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % config.n_vocab as u64) as u32
    };
    let n = seqs * seq_len;
    let batch = Batch {
        inputs: (0..n).map(|_| token()).collect(),
        targets: (0..n).map(|_| token()).collect(),
        n_seqs: seqs,
        seq_len,
    };
    let mut ws = Workspace::new(&config, seqs, seq_len, threads);
    ws.set_checkpointing(ckpt);
    let mut grads = params.zeros_like();
    let mut opt = AdamW::llama(&params);
    let mut step = || -> Result<f32, String> {
        grads.fill(0.0);
        let loss = ws
            .loss_and_grad(&params, &batch, &mut grads, 1.0)
            .map_err(|e| e.to_string())?;
        clip_grad_norm(&mut grads, 1.0);
        opt.update(&mut params, &grads, 1e-4);
        Ok(loss)
    };
    // One warm-up step (page faults of the first touch), then the timed ones.
    let first_loss = step()?;
    let mut times = Vec::new();
    let cpu0 = cpu_seconds();
    for _ in 0..steps {
        let t0 = Instant::now();
        step()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let cpu = (cpu_seconds() - cpu0) / steps as f64;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flop: f64 = 3.0
        * seqs as f64
        * (0..seq_len)
            .map(|pos| config.flops_per_token(pos))
            .sum::<f64>();
    let line = serde_json::json!({
        "engine": "camelid",
        "preset": p.id,
        "dim": config.d_model, "layers": config.n_layers, "heads": config.n_heads,
        "ffn": config.d_ff, "vocab": config.n_vocab, "tied": config.tied_embeddings,
        "threads": threads, "seqs": seqs, "seq_len": seq_len, "steps": steps,
        "checkpointing": ckpt,
        "first_loss": first_loss,
        "median_s": median, "min_s": times[0], "cpu_s_per_step": cpu,
        "tokens_per_s": n as f64 / median,
        "flop_per_step": flop,
        "gflop_per_s": flop / median / 1e9,
    });
    println!("{line}");
    Ok(())
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
    f.get(11)
        .zip(f.get(12))
        .map_or(f64::NAN, |(u, s)| (u + s) / 100.0)
}
