//! Prompt and decode speed with llama-bench's meaning of the figures (llama.cpp
//! `tools/llama-bench/README.md`): pp<P> is one pass over a prompt of P tokens, in tokens/s;
//! tg<N> is N tokens decoded one at a time after an empty context, in tokens/s. Each test is
//! warmed up once (the whole prompt for pp, one token for tg), then run `reps` times from an
//! empty cache; mean ± sample standard deviation.

use std::time::Instant;

use camelid_model::{Config, Model, ModelError, State};

use crate::eval::Moments;

/// The samples of one test, in tokens/s.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// `pp512`, `tg128`.
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
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
            samples: Vec::new(),
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

/// pp: `reps` passes over `prompt` after one warm-up pass.
pub fn prompt_speed(
    model: &Model,
    state: &mut State,
    prompt: &[u32],
    reps: usize,
) -> Result<Stat, ModelError> {
    let mut s = Stat::new(prompt.len(), 0);
    for rep in 0..=reps {
        state.pos = 0;
        let t = Instant::now();
        model.forward(state, prompt, false, |_, _| {})?;
        if rep > 0 {
            s.samples
                .push(prompt.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(s)
}

/// tg: `reps` runs decoding `tokens` one at a time from an empty cache, after one warm-up
/// token.
pub fn decode_speed(
    model: &Model,
    state: &mut State,
    tokens: &[u32],
    reps: usize,
) -> Result<Stat, ModelError> {
    let mut s = Stat::new(0, tokens.len());
    state.pos = 0;
    model.forward(state, &tokens[..tokens.len().min(1)], false, |_, _| {})?;
    for _ in 0..reps {
        state.pos = 0;
        let t = Instant::now();
        for &tok in tokens {
            model.forward(state, &[tok], false, |_, _| {})?;
        }
        s.samples
            .push(tokens.len() as f64 / t.elapsed().as_secs_f64());
    }
    Ok(s)
}

/// Bytes of the f32 K and V caches of `n_ctx` positions, as [`Model::new_state`] allocates
/// them on the CPU: `2 · n_layers · n_ctx · kv_dim · 4`.
pub fn kv_cache_bytes(c: &Config, n_ctx: usize) -> usize {
    2 * c.n_layers * n_ctx * c.kv_dim() * 4
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`), in bytes, where Linux
/// reports it. It counts the pages of a memory-mapped model that were touched.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
