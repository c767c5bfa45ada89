//! `camelid bench`: prompt and decode speed with llama-bench's meaning of the figures (the
//! timing is `camelid_engine::bench`'s). The JSON output uses
//! llama-bench's field names (`n_prompt`, `n_gen`, `avg_ts`, `stddev_ts`, `samples_ts`) plus the
//! kernel path, the precision and the process's peak resident memory.
//!
//! Which regime a machine is in: before the tests and after them, a short read benchmark
//! measures the memory read bandwidth of the same number of threads
//! (`camelid_kernels::bandwidth`; the better of the two is the ceiling), and each test
//! reports the weight bytes it read per second, `model_size` times the passes over the weights
//! per second: tokens/s for tg (each decoded token reads every weight once) and tokens/s ÷ P for
//! pp (one pass per prompt, the least it reads; the prompt kernels re-read weights from cache,
//! not memory). That figure over the ceiling says how close decode is to memory-bound; well
//! under it, the kernels' arithmetic is the limit. `model_size` counts every weight matrix, as
//! llama-bench's does, also an untied embedding table of which decode reads one row per token.
//! Only the CPU backend gets a ceiling: it measures host memory.

use anyhow::Result;

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
    /// Tokens already in the context when each test starts (llama-bench's `-d`): speed deep
    /// into a long chat or document. Filled once per test, untimed.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    pub n_depth: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &BenchArgs) -> Result<()> {
    camelid_engine::bench::check(a.n_prompt, a.n_gen, a.reps).map_err(anyhow::Error::msg)?;
    let l = &a.load;
    let (path, model) = crate::load::open_resolved(
        l.model.as_deref(),
        l.device,
        l.threads,
        l.precision,
        l.cache_type,
        l.adapters.get()?,
    )?;
    let tests = camelid_engine::bench::Tests {
        n_prompt: a.n_prompt,
        n_gen: a.n_gen,
        n_depth: a.n_depth,
        reps: a.reps,
    };
    let report = camelid_engine::bench::run(&model, &path, tests).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
