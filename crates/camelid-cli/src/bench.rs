//! `camelid bench`: prompt and decode speed with llama-bench's meaning of the figures (the
//! timing is `camelid_engine::bench`'s). The JSON output uses
//! llama-bench's field names (`n_prompt`, `n_gen`, `avg_ts`, `stddev_ts`, `samples_ts`) plus the
//! kernel path, the precision and the process's peak resident memory.
//!
//! Which regime a machine is in: before the tests, a short read benchmark measures the memory
//! read bandwidth of the same number of threads (`camelid_kernels::bandwidth`), and each test
//! reports the weight bytes it read per second, `model_size` times the passes over the weights
//! per second: tokens/s for tg (each decoded token reads every weight once) and tokens/s ÷ P for
//! pp (one pass per prompt, the least it reads; the prompt kernels re-read weights from cache,
//! not memory). That figure over the ceiling says how close decode is to memory-bound; well
//! under it, the kernels' arithmetic is the limit. `model_size` counts every weight matrix, as
//! llama-bench's does, also an untied embedding table of which decode reads one row per token.
//! Only the CPU backend gets a ceiling: it measures host memory.

use anyhow::{Result, bail};
use camelid_engine::bench::{bench_tokens, decode_speed, kv_cache_bytes, peak_rss, prompt_speed};
use camelid_model::weights::Checkpoint;

use crate::load::LoadArgs;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Prompt length of the pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens of the tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    if a.n_prompt == 0 && a.n_gen == 0 {
        bail!("nothing to measure: -p and -n are both 0");
    }
    let path = crate::fetch::resolve_model(a.load.model.as_deref())?;
    let mut model = crate::load::open_model(Checkpoint::open(&path)?, a.load.device)?;
    crate::load::set_threads(&mut model, a.load.threads)?;
    model.set_precision(a.load.precision.into());
    let n_ctx = a.n_prompt.max(a.n_gen).max(1);
    if n_ctx > model.config.n_ctx_train {
        bail!(
            "{n_ctx} tokens exceed the model's context of {}",
            model.config.n_ctx_train
        );
    }
    let tokens = bench_tokens(model.config.n_vocab, n_ctx);
    let mut state = model.new_state(n_ctx)?;
    let device = model.device();
    let ceiling =
        (device.device == "cpu").then(|| camelid_kernels::bandwidth::read_ceiling(model.threads()));
    let mut stats = Vec::new();
    if a.n_prompt > 0 {
        stats.push(prompt_speed(
            &model,
            &mut state,
            &tokens[..a.n_prompt],
            a.reps,
        )?);
    }
    if a.n_gen > 0 {
        stats.push(decode_speed(
            &model,
            &mut state,
            &tokens[..a.n_gen],
            a.reps,
        )?);
    }
    let size = device.weight_bytes;
    let params = model.config.n_params();
    let rss = peak_rss();
    let kv_bytes = kv_cache_bytes(&model.config, n_ctx);
    let isa = device.name.clone();
    let precision = format!("{:?}", model.precision()).to_lowercase();
    if a.json {
        let v: Vec<_> = stats
            .iter()
            .map(|s| {
                let read = s.weight_read_gbs(size);
                serde_json::json!({
                    "model_filename": path.display().to_string(),
                    "model_size": size,
                    "model_n_params": params,
                    "n_threads": model.threads(),
                    "device": device.device,
                    "isa": isa,
                    "device_memory_used_bytes": device.memory_used,
                    "precision": precision,
                    "test": s.test,
                    "n_prompt": s.n_prompt,
                    "n_gen": s.n_gen,
                    "avg_ts": s.mean(),
                    "stddev_ts": s.stddev(),
                    "samples_ts": s.samples,
                    "peak_rss_bytes": rss,
                    "kv_cache_bytes": kv_bytes,
                    "weight_read_gbs": read,
                    "bandwidth_ceiling_gbs": ceiling.map(|c| c.gbs),
                    "bandwidth_ceiling_share": ceiling.map(|c| read / c.gbs),
                    "bandwidth_buffer_bytes": ceiling.map(|c| c.buffer_bytes),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("| model | size | params | threads | kernels | test | t/s |");
        println!("|---|---:|---:|---:|---|---:|---:|");
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        for s in &stats {
            println!(
                "| {name} | {:.2} MiB | {:.2} M | {} | {isa} {precision} | {} | {:.2} ± {:.2} |",
                size as f64 / (1 << 20) as f64,
                params as f64 / 1e6,
                model.threads(),
                s.test,
                s.mean(),
                s.stddev()
            );
        }
        println!();
        if let Some(r) = rss {
            println!(
                "peak resident memory: {:.1} MiB",
                r as f64 / (1 << 20) as f64
            );
        }
        if let Some(c) = ceiling {
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            let llc = c.llc_bytes.map_or(String::new(), |l| {
                format!(", last-level cache {:.0} MiB", mib(l))
            });
            println!(
                "memory read ceiling: {:.2} GB/s ({} threads reading {:.0} MiB{llc})",
                c.gbs,
                c.threads,
                mib(c.buffer_bytes)
            );
        }
        for s in &stats {
            let read = s.weight_read_gbs(size);
            let share = ceiling.map_or(String::new(), |c| {
                format!(", {:.0}% of the ceiling", 100.0 * read / c.gbs)
            });
            println!("{} weight reads: {read:.2} GB/s{share}", s.test);
        }
    }
    Ok(())
}
