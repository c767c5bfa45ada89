//! Prompt and decode speed with llama-bench's meaning of the figures (llama.cpp
//! `tools/llama-bench/README.md`): pp<P> is one pass over a prompt of P tokens, in tokens/s;
//! tg<N> is N tokens decoded one at a time after an empty context, in tokens/s; `@ d<D>` after
//! either (llama-bench's `-d`) means after a context already holding D tokens instead. Each test
//! is warmed up once (the whole prompt for pp, one token for tg), then run `reps` times from the
//! same context; mean ± sample standard deviation. A [`Report`] prints a run as llama-bench's
//! JSON records or as a Markdown table with the memory-bandwidth lines.

use std::fmt::Write as _;
use std::time::Instant;

use camelid_kernels::bandwidth::ReadCeiling;
use camelid_model::{CacheType, Config, DeviceInfo, Model, ModelError, State};

use crate::eval::Moments;

/// The samples of one test, in tokens/s.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// `pp512`, `tg128`, `tg128 @ d4096`.
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Tokens in the context before the test's own (llama-bench's `n_depth`).
    pub n_depth: usize,
    pub samples: Vec<f64>,
}

impl Stat {
    /// A test without samples: `pp<n_prompt>` when `n_gen` is 0, else `tg<n_gen>`.
    pub fn new(n_prompt: usize, n_gen: usize) -> Stat {
        let test = if n_gen > 0 {
            format!("tg{n_gen}")
        } else {
            format!("pp{n_prompt}")
        };
        Stat {
            test,
            n_prompt,
            n_gen,
            n_depth: 0,
            samples: Vec::new(),
        }
    }

    /// The same test after a context of `n_depth` tokens: `tg128 @ d4096`, as llama-bench
    /// names it.
    pub fn at_depth(self, n_depth: usize) -> Stat {
        let test = match n_depth {
            0 => self.test,
            d => format!("{} @ d{d}", self.test),
        };
        Stat {
            test,
            n_depth,
            ..self
        }
    }

    fn moments(&self) -> Moments {
        let mut m = Moments::default();
        self.samples.iter().for_each(|&x| m.push(x));
        m
    }

    pub fn mean(&self) -> f64 {
        self.moments().mean()
    }

    /// The sample standard deviation (N − 1), 0 below two samples.
    pub fn stddev(&self) -> f64 {
        self.moments().stderr() * (self.samples.len() as f64).sqrt()
    }

    /// Weight bytes read per second, for weights of `size` bytes: every weight is read once
    /// per decoded token (tg) and at least once per prompt pass (pp).
    pub fn weight_read_gbs(&self, size: u64) -> f64 {
        let passes_per_token = if self.n_gen > 0 {
            1.0
        } else {
            1.0 / self.n_prompt.max(1) as f64
        };
        size as f64 * self.mean() * passes_per_token / 1e9
    }
}

/// `n` token ids spread over a vocabulary of `n_vocab`, as llama-bench's random prompt is (a
/// multiplicative hash of the position, Knuth's 2654435761).
pub fn bench_tokens(n_vocab: usize, n: usize) -> Vec<u32> {
    let v = n_vocab.max(1) as u64;
    (0..n as u64)
        .map(|i| ((i.wrapping_mul(2654435761) + 12345) % v) as u32)
        .collect()
}

/// Fills an empty `state` with `depth` tokens, in passes of at most 512 (llama-bench's
/// default batch), untimed: the context a test `@ d<D>` starts from.
pub fn fill(model: &Model, state: &mut State, depth: &[u32]) -> Result<(), ModelError> {
    state.pos = 0;
    for part in depth.chunks(512) {
        model.forward(state, part, false, |_, _| {})?;
    }
    Ok(())
}

/// pp: `reps` passes over `prompt` after one warm-up pass, each from the state's position at
/// the call (the cache below it is left as it is: later passes overwrite only their own
/// positions).
pub fn prompt_speed(
    model: &Model,
    state: &mut State,
    prompt: &[u32],
    reps: usize,
) -> Result<Stat, ModelError> {
    let start = state.pos;
    let mut s = Stat::new(prompt.len(), 0).at_depth(start);
    for rep in 0..=reps {
        state.pos = start;
        let t = Instant::now();
        model.forward(state, prompt, false, |_, _| {})?;
        if rep > 0 {
            s.samples
                .push(prompt.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(s)
}

/// tg: `reps` runs decoding `tokens` one at a time after one warm-up token, each from the
/// state's position at the call.
pub fn decode_speed(
    model: &Model,
    state: &mut State,
    tokens: &[u32],
    reps: usize,
) -> Result<Stat, ModelError> {
    let start = state.pos;
    let mut s = Stat::new(0, tokens.len()).at_depth(start);
    model.forward(state, &tokens[..tokens.len().min(1)], false, |_, _| {})?;
    for _ in 0..reps {
        state.pos = start;
        let t = Instant::now();
        for &tok in tokens {
            model.forward(state, &[tok], false, |_, _| {})?;
        }
        s.samples
            .push(tokens.len() as f64 / t.elapsed().as_secs_f64());
    }
    Ok(s)
}

/// Bytes of the K and V caches of `n_ctx` positions holding `t`, as [`Model::new_state`]
/// allocates them on the CPU: `2 · n_layers · n_ctx · kv_dim · (4 or 2)`.
pub fn kv_cache_bytes(c: &Config, n_ctx: usize, t: CacheType) -> usize {
    (c.kv_bytes_per_token(t.bytes()) * n_ctx as u64) as usize
}

/// Sets the process's peak resident set back to what it holds now (Linux: `5` written to
/// `/proc/self/clear_refs`, see proc(5)); a no-op where that is not possible.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`), in bytes, where Linux
/// reports it. It counts the pages of a memory-mapped model that were touched.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The checks of [`run`] that need no model: at least one test and one repetition.
pub fn check(n_prompt: usize, n_gen: usize, reps: usize) -> Result<(), String> {
    if reps == 0 {
        return Err("-r must be at least 1".into());
    }
    if n_prompt == 0 && n_gen == 0 {
        return Err("nothing to measure: -p and -n are both 0".into());
    }
    Ok(())
}

/// What to measure: llama-bench's `-p`, `-n`, `-d` and `-r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tests {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub reps: usize,
}

/// Runs the tests llama-bench would (pp of `n_prompt` tokens, tg of `n_gen`, `reps` times
/// each, a test skipped at 0, each after a context of `n_depth` tokens) on `model`, loaded
/// from `path`; on the CPU between two measurements of the memory read ceiling of the model's
/// threads.
/// Errors are plain text, as the checks say them.
pub fn run(model: &Model, path: &std::path::Path, t: Tests) -> Result<Report, String> {
    let Tests {
        n_prompt,
        n_gen,
        n_depth,
        reps,
    } = t;
    check(n_prompt, n_gen, reps)?;
    let n_ctx = n_depth.saturating_add(n_prompt.max(n_gen).max(1));
    if n_ctx > model.config.n_ctx_train {
        let n = model.config.n_ctx_train;
        let test = n_prompt.max(n_gen);
        return Err(match n_depth {
            0 => format!("{test} tokens exceed the model's context of {n}"),
            d => format!("a depth of {d} and {test} tokens exceed the model's context of {n}"),
        });
    }
    let tokens = bench_tokens(model.config.n_vocab, n_prompt.max(n_gen));
    let depth = &bench_tokens(model.config.n_vocab, n_depth);
    let mut state = model.new_state(n_ctx).map_err(|e| e.to_string())?;
    let device = model.device();
    let ceiling = (device.device == "cpu").then(|| {
        let c = camelid_kernels::bandwidth::read_ceiling(model.threads());
        // The probe's buffer (freed now) is not the model's memory: the peak starts again from
        // here, so that `peak_rss` is the model's (its weights resident or not yet touched).
        reset_peak_rss();
        c
    });
    let mut stats = Vec::new();
    let mut measure = |n: usize, test: fn(&Model, &mut State, &[u32], usize) -> _| {
        if n > 0 {
            fill(model, &mut state, depth)
                .and_then(|()| test(model, &mut state, &tokens[..n], reps))
                .map(|s| stats.push(s))
                .map_err(|e: ModelError| e.to_string())
        } else {
            Ok(())
        }
    };
    measure(n_prompt, prompt_speed)?;
    measure(n_gen, decode_speed)?;
    let peak_rss = peak_rss();
    // Memory on a shared machine is faster in some minutes than in others: a second probe
    // after the tests, the better of the two the ceiling, so that a test's reads are less
    // often set against a slow minute's.
    let ceiling = ceiling.map(|c| c.best(camelid_kernels::bandwidth::read_ceiling(c.threads)));
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    Ok(Report {
        path: path.display().to_string(),
        name,
        n_params: model.config.n_params(),
        n_threads: model.threads(),
        device,
        precision: format!("{:?}", model.precision()).to_lowercase(),
        peak_rss,
        kv_cache_bytes: kv_cache_bytes(&model.config, n_ctx, model.cache_type()),
        cache_type: model.cache_type(),
        ceiling,
        stats,
    })
}

/// A benchmark run: the model, the machine and the tests' samples.
#[derive(Clone, Debug)]
pub struct Report {
    /// The model file's path (`model_filename`) and its name in the table.
    pub path: String,
    pub name: String,
    pub n_params: u64,
    pub n_threads: usize,
    /// The backend; `weight_bytes` is llama-bench's `model_size`.
    pub device: DeviceInfo,
    /// `fast` or `exact`.
    pub precision: String,
    pub peak_rss: Option<u64>,
    pub kv_cache_bytes: usize,
    pub cache_type: CacheType,
    /// The memory read bandwidth of as many threads, the better of the measurements before
    /// and after the tests (CPU backends only).
    pub ceiling: Option<ReadCeiling>,
    pub stats: Vec<Stat>,
}

fn mib(bytes: f64) -> f64 {
    bytes / (1 << 20) as f64
}

impl Report {
    /// One record per test, with llama-bench's field names (`model_size`, `n_prompt`, `n_gen`,
    /// `avg_ts`, `stddev_ts`, `samples_ts`) and camelid's own (kernels, precision, memory,
    /// weight bytes read per second against the ceiling).
    pub fn to_json(&self) -> serde_json::Value {
        let size = self.device.weight_bytes;
        let c = self.ceiling;
        let records = self.stats.iter().map(|s| {
            let read = s.weight_read_gbs(size);
            serde_json::json!({
                "model_filename": self.path,
                "model_size": size,
                "model_n_params": self.n_params,
                "n_threads": self.n_threads,
                "device": self.device.device,
                "isa": self.device.name,
                "device_memory_used_bytes": self.device.memory_used,
                "device_memory_in_use_bytes": self.device.memory_in_use,
                "precision": self.precision,
                "test": s.test,
                "n_prompt": s.n_prompt,
                "n_gen": s.n_gen,
                "n_depth": s.n_depth,
                "avg_ts": s.mean(),
                "stddev_ts": s.stddev(),
                "samples_ts": s.samples,
                "peak_rss_bytes": self.peak_rss,
                "kv_cache_bytes": self.kv_cache_bytes,
                "cache_type": self.cache_type.name(),
                "weight_read_gbs": read,
                "bandwidth_ceiling_gbs": c.map(|c| c.gbs),
                "bandwidth_ceiling_share": c.map(|c| read / c.gbs),
                "bandwidth_buffer_bytes": c.map(|c| c.buffer_bytes),
            })
        });
        serde_json::Value::Array(records.collect())
    }

    /// llama-bench's Markdown table, then the peak memory, the read ceiling and each test's
    /// weight reads against it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let size = self.device.weight_bytes;
        let (isa, precision) = (&self.device.name, &self.precision);
        out.push_str("| model | size | params | threads | kernels | test | t/s |\n");
        out.push_str("|---|---:|---:|---:|---|---:|---:|\n");
        for s in &self.stats {
            let _ = writeln!(
                out,
                "| {} | {:.2} MiB | {:.2} M | {} | {isa} {precision} | {} | {:.2} ± {:.2} |",
                self.name,
                mib(size as f64),
                self.n_params as f64 / 1e6,
                self.n_threads,
                s.test,
                s.mean(),
                s.stddev()
            );
        }
        out.push('\n');
        if let Some(r) = self.peak_rss {
            let _ = writeln!(out, "peak resident memory: {:.1} MiB", mib(r as f64));
        }
        if let Some(used) = self.device.memory_used {
            let in_use = self.device.memory_in_use.map_or(String::new(), |m| {
                format!(
                    "; {:.1} MiB in use on the device, the driver's own included",
                    mib(m as f64)
                )
            });
            let _ = writeln!(
                out,
                "device memory: {:.1} MiB at most (weights {:.1} MiB, {} KV cache {:.1} MiB){in_use}",
                mib(used as f64),
                mib(size as f64),
                self.cache_type.name(),
                mib(self.kv_cache_bytes as f64),
            );
        }
        if let Some(c) = self.ceiling {
            let llc = c.llc_bytes.map_or(String::new(), |l| {
                format!(", last-level cache {:.0} MiB", mib(l as f64))
            });
            let _ = writeln!(
                out,
                "memory read ceiling: {:.2} GB/s ({} threads reading {:.0} MiB{llc})",
                c.gbs,
                c.threads,
                mib(c.buffer_bytes as f64)
            );
        }
        for s in &self.stats {
            let read = s.weight_read_gbs(size);
            let share = self.ceiling.map_or(String::new(), |c| {
                format!(", {:.0}% of the ceiling", 100.0 * read / c.gbs)
            });
            let _ = writeln!(out, "{} weight reads: {read:.2} GB/s{share}", s.test);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let stat = |n_prompt, n_gen, samples: &[f64]| Stat {
            samples: samples.to_vec(),
            ..Stat::new(n_prompt, n_gen)
        };
        Report {
            path: "models/m.gguf".into(),
            name: "m.gguf".into(),
            n_params: 135_000_000,
            n_threads: 2,
            device: DeviceInfo {
                device: "cpu".into(),
                name: "avx2".into(),
                weight_bytes: 1 << 30,
                memory_used: None,
                memory_in_use: None,
            },
            precision: "fast".into(),
            peak_rss: Some(3 << 29),
            kv_cache_bytes: 4096,
            cache_type: CacheType::F32,
            ceiling: Some(ReadCeiling {
                gbs: 10.0,
                buffer_bytes: 1 << 28,
                threads: 2,
                llc_bytes: None,
            }),
            stats: vec![stat(512, 0, &[1000.0, 1200.0]), stat(0, 128, &[4.0, 6.0])],
        }
    }

    #[test]
    fn json_records_carry_llama_bench_fields_and_the_read_share() {
        let v = report().to_json();
        let tg = &v[1];
        assert_eq!(
            (tg["test"].as_str(), tg["n_gen"].as_u64()),
            (Some("tg128"), Some(128))
        );
        assert_eq!(
            (tg["avg_ts"].as_f64(), tg["model_size"].as_u64()),
            (Some(5.0), Some(1 << 30))
        );
        // 5 tokens/s, each reading all 2^30 bytes once: 5.37 GB/s of a 10 GB/s ceiling.
        let read = 5.0 * (1u64 << 30) as f64 / 1e9;
        assert_eq!(tg["weight_read_gbs"].as_f64(), Some(read));
        assert_eq!(tg["bandwidth_ceiling_share"].as_f64(), Some(read / 10.0));
        // pp reads the weights once per prompt: 1100 tokens/s over 512-token prompts.
        let pp_read = (1u64 << 30) as f64 * 1100.0 / 512.0 / 1e9;
        assert!((v[0]["weight_read_gbs"].as_f64().unwrap() - pp_read).abs() < 1e-9);
    }

    /// The whole run on a tiny random model: one stat per test with `reps` samples, the
    /// llama-bench names, and the checks' errors before any work.
    #[test]
    fn a_run_measures_each_test_it_is_given() {
        let preset = camelid_model::config::presets()
            .into_iter()
            .find(|p| p.id == "llama-7b")
            .unwrap();
        let c = preset
            .config
            .resized(Some(1), Some(64), Some(128), Some(256))
            .unwrap();
        let model = Model::new(c.clone(), camelid_model::weights::Weights::random(&c, 1));
        let path = std::path::Path::new("dir/tiny.gguf");
        let t = |n_prompt, n_gen, n_depth, reps| Tests {
            n_prompt,
            n_gen,
            n_depth,
            reps,
        };
        let r = run(&model, path, t(8, 4, 0, 2)).unwrap();
        let tests: Vec<&str> = r.stats.iter().map(|s| s.test.as_str()).collect();
        assert_eq!(tests, ["pp8", "tg4"]);
        assert!(
            r.stats
                .iter()
                .all(|s| s.samples.len() == 2 && s.mean() > 0.0)
        );
        assert_eq!(
            (r.name.as_str(), r.kv_cache_bytes),
            ("tiny.gguf", kv_cache_bytes(&c, 8, CacheType::F32))
        );
        assert!(r.ceiling.is_some());
        assert_eq!(run(&model, path, t(0, 4, 0, 1)).unwrap().stats.len(), 1);
        assert_eq!(
            run(&model, path, t(8, 4, 0, 0)).unwrap_err(),
            "-r must be at least 1"
        );
        assert!(
            run(&model, path, t(0, 0, 0, 1))
                .unwrap_err()
                .starts_with("nothing to measure")
        );
        let too_long = c.n_ctx_train + 1;
        let err = run(&model, path, t(too_long, 0, 0, 1)).unwrap_err();
        assert!(err.contains("exceed the model's context"), "{err}");
        // The context counts the depth: the tests after it, named as llama-bench names them.
        let deep = c.n_ctx_train - 8;
        let err = run(&model, path, t(8, 9, deep, 1)).unwrap_err();
        assert!(err.contains("exceed the model's context"), "{err}");
        let err = run(&model, path, t(8, 0, usize::MAX, 1)).unwrap_err();
        assert!(err.contains("exceed the model's context"), "{err}");
        let r = run(&model, path, t(8, 4, 16, 1)).unwrap();
        let named: Vec<(&str, usize)> = r
            .stats
            .iter()
            .map(|s| (s.test.as_str(), s.n_depth))
            .collect();
        assert_eq!(named, [("pp8 @ d16", 16), ("tg4 @ d16", 16)]);
        assert_eq!(r.kv_cache_bytes, kv_cache_bytes(&c, 24, CacheType::F32));
        // An f16 cache: half the bytes, said in the JSON.
        let mut model = model;
        model.set_cache_type(CacheType::F16).unwrap();
        let r = run(&model, path, t(8, 4, 16, 1)).unwrap();
        assert_eq!(r.kv_cache_bytes, kv_cache_bytes(&c, 24, CacheType::F32) / 2);
        assert_eq!(r.to_json()[0]["cache_type"], "f16");
    }

    #[test]
    fn the_table_has_a_row_per_test_and_the_bandwidth_lines() {
        let t = report().to_text();
        assert!(
            t.contains("| m.gguf | 1024.00 MiB | 135.00 M | 2 | avx2 fast | tg128 | 5.00 ± 1.41 |"),
            "{t}"
        );
        assert!(t.contains("peak resident memory: 1536.0 MiB"), "{t}");
        assert!(
            t.contains("memory read ceiling: 10.00 GB/s (2 threads reading 256 MiB)"),
            "{t}"
        );
        assert!(
            t.contains("tg128 weight reads: 5.37 GB/s, 54% of the ceiling"),
            "{t}"
        );
        assert!(!t.contains("device memory"), "{t}");
    }

    /// A backend with memory of its own (a GPU) says how much it held, beside what it holds.
    #[test]
    fn a_device_backend_prints_its_memory() {
        let mut r = report();
        r.device.memory_used = Some(1200 << 20);
        r.device.memory_in_use = Some(1700 << 20);
        r.cache_type = CacheType::F16;
        r.kv_cache_bytes = 16 << 20;
        let t = r.to_text();
        assert!(
            t.contains(
                "device memory: 1200.0 MiB at most (weights 1024.0 MiB, f16 KV cache 16.0 MiB); \
                 1700.0 MiB in use on the device, the driver's own included"
            ),
            "{t}"
        );
    }
}
