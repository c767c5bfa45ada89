//! The sampler chain, in a fixed order:
//!
//! 0. logit bias (OpenAI's `logit_bias`): a constant added to chosen tokens' logits; a bias of
//!    -100 or less bans the token (its logit becomes -∞), as OpenAI documents that value; when
//!    sampling (`T > 0`), a NaN logit (a broken model's) counts as banned;
//! 1. penalties on the raw logits: repetition (CTRL, Keskar et al. 2019: a positive logit is
//!    divided by `r`, a negative one multiplied, for tokens among the last `repeat_last_n`),
//!    then OpenAI's presence and frequency penalties (`logit -= presence·[count > 0] +
//!    frequency·count` over the same window);
//! 2. top-k: keep the `k` largest logits (0 = off);
//! 3. top-p (nucleus, Holtzman et al. 2019): keep the smallest set of most likely tokens whose
//!    probability sums to at least `p`;
//! 4. min-p: keep tokens whose probability is at least `min_p` times the most likely one's;
//! 5. temperature: divide the surviving logits by `T`;
//! 6. draw from the softmax with a seeded generator.
//!
//! Steps 3 and 4 use the probabilities before temperature, as llama.cpp's default chain does
//! (its temperature sampler comes after top-p and min-p). `T = 0` is greedy: the argmax after
//! the penalties.

use crate::exp_sum::{exp_sum, exp_sum_slice, weight};
use camelid_model::backend::greedy_token;
use camelid_model::sampling::SamplingHints;

/// Sampling options as a user sets them: the values given win over the model's
/// recommendations, which win over llama.cpp's defaults. `given` holds the options a model may
/// also recommend.
#[derive(Clone, Debug, Default)]
pub struct SamplingOptions {
    pub given: SamplingHints,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// None: a fresh random seed.
    pub seed: Option<u64>,
}

impl SamplingOptions {
    /// The sampler under the model's recommendations `hints`. The options given are checked
    /// first; a recommendation out of range is an error that names where it comes from.
    pub fn sampler(&self, hints: &SamplingHints) -> Result<SamplerConfig, String> {
        self.merge(&SamplingHints::default()).validate()?;
        let c = self.merge(hints);
        c.validate().map_err(|e| {
            format!(
                "{e}, recommended by the model ({}); set the option to override it",
                hints.source
            )
        })?;
        Ok(c)
    }

    fn merge(&self, hints: &SamplingHints) -> SamplerConfig {
        SamplerConfig {
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed.unwrap_or_else(random_seed),
            ..SamplerConfig::default().with_hints(&self.given.or(hints))
        }
    }

    /// The line that gives a seed drawn at random, when the sampler draws with it (not when it
    /// is greedy), so that a run worth keeping can be repeated.
    pub fn seed_note(&self, c: &SamplerConfig) -> Option<String> {
        (self.seed.is_none() && c.temperature > 0.0).then(|| {
            format!(
                "[seed {} drawn at random: --seed {} repeats this run]",
                c.seed, c.seed
            )
        })
    }

    /// The line that says which recommendations of the model are in effect, if any.
    pub fn hints_note(&self, hints: &SamplingHints) -> Option<String> {
        let used = hints.unset_in(&self.given);
        (!used.is_empty()).then(|| {
            format!(
                "[sampling as the model recommends: {} ({})]",
                used.describe(),
                hints.source
            )
        })
    }
}

/// A seed for a run that asked for none: the clock, mixed with a counter so that requests in
/// the same instant differ.
pub fn random_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Sampling settings. The defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
    /// (token id, bias) pairs added to the logits before anything else; ids past the
    /// vocabulary are skipped here (callers that take ids from users check them first).
    pub logit_bias: Vec<(u32, f32)>,
}

/// A bias at or below this bans the token outright, whatever its logit: OpenAI documents -100
/// as "ban", and a finite shift would leave a token with a huge logit still drawable.
pub const BAN_BIAS: f32 = -100.0;

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0x5eed,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplerConfig {
    /// These settings with the values `hints` sets in place of theirs: a front end's defaults
    /// (llama.cpp's for the CLI, OpenAI's for the server) under what the user and the model
    /// chose (`given.or(&recommended)`).
    pub fn with_hints(self, hints: &SamplingHints) -> SamplerConfig {
        SamplerConfig {
            temperature: hints.temperature.unwrap_or(self.temperature),
            top_k: hints.top_k.unwrap_or(self.top_k),
            top_p: hints.top_p.unwrap_or(self.top_p),
            min_p: hints.min_p.unwrap_or(self.min_p),
            repeat_penalty: hints.repeat_penalty.unwrap_or(self.repeat_penalty),
            repeat_last_n: hints.repeat_last_n.unwrap_or(self.repeat_last_n),
            ..self
        }
    }

    /// Greedy decoding: the argmax, no penalties.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Checks every value's range; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |v: f32, name: &str| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number, got {v}"))
            }
        };
        finite(self.temperature, "temperature")?;
        finite(self.presence_penalty, "presence penalty")?;
        finite(self.frequency_penalty, "frequency penalty")?;
        if self.temperature < 0.0 {
            return Err(format!("temperature must be ≥ 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min-p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(format!(
                "repeat penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty)
            || !(-2.0..=2.0).contains(&self.frequency_penalty)
        {
            return Err("presence and frequency penalties must be in [-2, 2]".into());
        }
        if let Some((id, b)) = self.logit_bias.iter().find(|(_, b)| b.is_nan()) {
            return Err(format!(
                "the logit bias of token {id} is not a number ({b})"
            ));
        }
        Ok(())
    }
}

/// A token and its (adjusted) logit.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// The sampler: its settings, its random state and a scratch buffer reused between tokens.
pub struct Sampler {
    pub config: SamplerConfig,
    rng: Rng,
    cands: Vec<Candidate>,
    /// The logits with the bias and the penalties applied, when there are any.
    adjusted: Vec<f32>,
    /// The radix sort's keys and their second buffer.
    keys: Vec<u64>,
    /// The sampled logits' bits of [`top_candidates`].
    picks: Vec<u32>,
    /// (token, occurrences) in the penalty window.
    counts: Vec<(u32, u32)>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        Sampler {
            rng: Rng::new(config.seed),
            config,
            cands: Vec::new(),
            adjusted: Vec::new(),
            keys: Vec::new(),
            picks: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Whether [`Sampler::sample`] would take the greedy pick of the raw logits
    /// ([`greedy_token`]): temperature 0, no bias, no penalty in effect after `history`. A
    /// caller may then ask the model for that token instead of the logits
    /// ([`camelid_model::Want::Token`]).
    pub fn is_greedy(&self, history: &[u32]) -> bool {
        let c = &self.config;
        c.temperature == 0.0 && c.logit_bias.is_empty() && !penalized(history, c)
    }

    /// Picks the next token from `logits`, given the tokens so far (`history`, for penalties).
    ///
    /// The chain reads as if every candidate were sorted, most likely first; only as much is
    /// sorted as the draw reaches, so a token costs microseconds rather than milliseconds on a
    /// 128K vocabulary:
    /// - with top-k, the `k` first, picked in linear time among the few that pass
    ///   [`top_candidates`]' bar;
    /// - without, the thousand or so most likely tokens (the first of [`FIRST_SORTED`]),
    ///   walked with the sums of the whole vocabulary; more only when the filters or the draw
    ///   reach past them.
    ///
    /// The token drawn is the one a full sort gives, bit for bit (the tests keep that sort as
    /// the twin): the sums ([`exp_sum`]) do not depend on the order of their terms.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = &self.config;
        // The bias and the penalties change a few logits, and a NaN (a broken model's) counts
        // as banned: of a copy, when there are any.
        let nan = c.temperature > 0.0 && logits.iter().fold(false, |nan, l| nan | l.is_nan());
        let logits = if c.logit_bias.is_empty() && !penalized(history, c) && !nan {
            logits
        } else {
            self.adjusted.clear();
            self.adjusted.extend(
                logits
                    .iter()
                    .map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }),
            );
            apply_bias(&mut self.adjusted, &c.logit_bias);
            apply_penalties(&mut self.adjusted, &mut self.counts, history, c);
            &self.adjusted
        };
        if c.temperature == 0.0 {
            return greedy_token(logits);
        }
        let r = self.rng.next_f64() as f32;
        if c.top_k > 0 {
            // Top-k keeps the k first, the whole of what the chain draws from: pick them
            // (linear time), then sort only those.
            if !top_candidates(logits, c.top_k, &mut self.cands, &mut self.picks) {
                all_candidates(logits, &mut self.cands);
            }
            if c.top_k < self.cands.len() {
                self.cands
                    .select_nth_unstable_by(c.top_k - 1, most_likely_first);
                self.cands.truncate(c.top_k);
            }
            sort_most_likely_first(&mut self.cands, &mut self.keys);
            return draw(&mut self.cands, None, true, c, r).expect("a whole list draws");
        }
        let mut vocab = VocabSums::new(logits);
        for k in FIRST_SORTED {
            if !top_candidates(logits, k, &mut self.cands, &mut self.picks) {
                break;
            }
            sort_most_likely_first(&mut self.cands, &mut self.keys);
            if let Some(token) = draw(&mut self.cands, Some(&mut vocab), false, c, r) {
                return token;
            }
        }
        all_candidates(logits, &mut self.cands);
        sort_most_likely_first(&mut self.cands, &mut self.keys);
        draw(&mut self.cands, Some(&mut vocab), true, c, r).expect("a whole list draws")
    }
}

/// Without top-k, the most likely tokens are sorted first: those above the bar of
/// [`top_candidates`] for 16 (about 64 times as many pass it), which hold most of a language
/// model's probability; then those above the bar for 256, when the filters or the draw reach
/// past the first; then all.
const FIRST_SORTED: [usize; 2] = [16, 256];

/// The whole vocabulary's sums of a token ([`exp_sum_slice`]), each taken once however many
/// sorts the draw goes through: at temperature 1 (top-p, min-p) and at `T`.
struct VocabSums<'a> {
    logits: &'a [f32],
    /// `((max, t), sum)` of the sums taken (two at most: no allocation in a token's path).
    taken: [Option<((f32, f32), f64)>; 2],
}

impl<'a> VocabSums<'a> {
    fn new(logits: &'a [f32]) -> Self {
        VocabSums {
            logits,
            taken: [None; 2],
        }
    }

    fn sum(&mut self, max: f32, t: f32) -> f64 {
        let key = (max, t);
        if let Some((_, s)) = self.taken.iter().flatten().find(|(k, _)| *k == key) {
            return *s;
        }
        let s = exp_sum_slice(self.logits, max, t);
        // A third key cannot come (max is the vocabulary's); were it to, it replaces the first.
        let slot = self.taken.iter().position(Option::is_none).unwrap_or(0);
        self.taken[slot] = Some((key, s));
        s
    }
}

/// The chain's steps 3 to 6 along `cands`, sorted most likely first, with the uniform draw
/// `r`. The sums are over `vocab`'s logits where given (the whole vocabulary, of which `cands`
/// are the most likely), over `cands` otherwise. Unless `cands` are `complete` (all of the
/// vocabulary or the top k), a walk that reaches past their end gives None.
fn draw(
    cands: &mut Vec<Candidate>,
    mut vocab: Option<&mut VocabSums>,
    complete: bool,
    c: &SamplerConfig,
    r: f32,
) -> Option<u32> {
    // Banned tokens (-∞) go before any filter counts them; one stays if all are banned, so a
    // degenerate request still gets a token rather than a NaN distribution.
    let live = cands.partition_point(|c| c.logit > f32::NEG_INFINITY);
    cands.truncate(live.max(1));
    // An empty vocabulary draws token 0, as the greedy pick does, rather than failing.
    let Some(&Candidate { id, logit: max }) = cands.first() else {
        return Some(0);
    };
    if max == f32::NEG_INFINITY {
        return Some(id);
    }
    let mut sum_all = |cands: &[Candidate], t: f32| match vocab.as_deref_mut() {
        Some(v) => v.sum(max, t),
        None => exp_sum(cands.iter().map(|c| c.logit), max, t),
    };
    // Top-p and min-p keep a prefix: up to where the probabilities (before temperature) first
    // sum to `p`, and before the first below `min_p` × the largest (whose exponential is 1).
    let mut kept = None;
    if c.top_p < 1.0 || c.min_p > 0.0 {
        let sum = sum_all(cands, 1.0);
        let floor = prob(1.0, sum) * c.min_p;
        let mut acc = 0.0f64;
        for (i, cand) in cands.iter().enumerate() {
            let p = prob(weight(cand.logit, max, 1.0), sum);
            if c.min_p > 0.0 && p < floor {
                kept = Some(i);
                break;
            }
            acc += p as f64;
            if c.top_p < 1.0 && acc >= c.top_p as f64 {
                kept = Some(i + 1);
                break;
            }
        }
        if kept.is_none() && !complete {
            return None;
        }
    }
    let (keep, sum) = match kept {
        Some(n) => {
            let n = n.max(1);
            (
                n,
                exp_sum(cands[..n].iter().map(|c| c.logit), max, c.temperature),
            )
        }
        None => (cands.len(), sum_all(cands, c.temperature)),
    };
    let (mut acc, inv_t) = (0.0f32, 1.0 / c.temperature);
    for cand in &cands[..keep] {
        acc += prob(weight(cand.logit, max, inv_t), sum);
        if r < acc {
            return Some(cand.id);
        }
    }
    // Rounding left the draw past the last token kept: it is drawn, if the list held them all.
    (kept.is_some() || complete).then(|| cands[keep - 1].id)
}

/// Every token, in id order.
fn all_candidates(logits: &[f32], cands: &mut Vec<Candidate>) {
    cands.clear();
    cands.extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
        id: i as u32,
        logit: l,
    }));
}

/// The order of the chain: larger logit first (`total_cmp`'s order), then smaller id.
fn most_likely_first(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// A logit's bits as an unsigned integer in `total_cmp`'s order (negative values' bits
/// inverted, positive values' sign bit set), and back.
fn ordered_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 1 << 31 }
}

fn from_ordered_bits(m: u32) -> f32 {
    f32::from_bits(if m >> 31 == 1 { m & !(1 << 31) } else { !m })
}

/// Sorts `cands` by [`most_likely_first`]. More than 256 still in id order (the whole
/// vocabulary as built, or those a bar let through) by a radix sort of the logits' bits
/// (inverted, so that larger comes first), least significant byte first: up to four stable
/// counting passes, which leave equal logits in id order, as the comparison does. Anything
/// else (the top k, in the order picking left them) by comparison.
fn sort_most_likely_first(cands: &mut [Candidate], keys: &mut Vec<u64>) {
    if cands.len() <= 256 || !cands.is_sorted_by_key(|c| c.id) {
        cands.sort_unstable_by(most_likely_first);
        return;
    }
    let n = cands.len();
    keys.clear();
    keys.extend(
        cands
            .iter()
            .map(|c| (u64::from(!ordered_bits(c.logit)) << 32) | u64::from(c.id)),
    );
    keys.resize(2 * n, 0);
    let (mut src, mut dst) = keys.split_at_mut(n);
    // Every digit's counts in one read; a digit all the keys share (a logit's sign and top
    // exponent bits, most often) needs no pass.
    let mut counts = [[0usize; 256]; 4];
    for &k in src.iter() {
        for (d, count) in counts.iter_mut().enumerate() {
            count[(k >> (32 + 8 * d)) as usize & 255] += 1;
        }
    }
    for (d, count) in counts.iter_mut().enumerate() {
        if count.contains(&n) {
            continue;
        }
        let shift = 32 + 8 * d;
        let mut at = 0;
        for c in count.iter_mut() {
            (*c, at) = (at, at + *c);
        }
        for &k in src.iter() {
            let b = (k >> shift) as usize & 255;
            dst[count[b]] = k;
            count[b] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    for (c, &k) in cands.iter_mut().zip(src.iter()) {
        *c = Candidate {
            id: k as u32,
            logit: from_ordered_bits(!((k >> 32) as u32)),
        };
    }
}

/// The candidates that can be among the `k` most likely (all of them, and usually a few
/// thousand of a 128K vocabulary more), in id order, without a candidate per token: a sample of
/// every 64th logit gives a bar, its own `k`-th largest, that at least `k` logits reach (those
/// sampled), so every one of the `k` most likely reaches it too. False (nothing done) when
/// top-k is off or the sample is smaller than `k`.
fn top_candidates(
    logits: &[f32],
    k: usize,
    cands: &mut Vec<Candidate>,
    picks: &mut Vec<u32>,
) -> bool {
    const STRIDE: usize = 64;
    if k == 0 || logits.len().div_ceil(STRIDE) < k {
        return false;
    }
    picks.clear();
    picks.extend(logits.iter().step_by(STRIDE).map(|&l| ordered_bits(l)));
    let (_, &mut bar, _) = picks.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    cands.clear();
    // Blocks of 16 logits: which pass, as the bits of a mask (the tests vectorize), then one
    // push per bit set; most blocks have none.
    let blocks = logits.chunks_exact(16);
    let tail = blocks.remainder();
    let mut push = |id: usize, logit: f32| {
        cands.push(Candidate {
            id: id as u32,
            logit,
        })
    };
    for (b, block) in blocks.enumerate() {
        let mut mask = block.iter().enumerate().fold(0u32, |m, (i, &l)| {
            m | u32::from(ordered_bits(l) >= bar) << i
        });
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            push(16 * b + i, block[i]);
            mask &= mask - 1;
        }
    }
    let at = logits.len() - tail.len();
    for (i, &l) in tail.iter().enumerate() {
        if ordered_bits(l) >= bar {
            push(at + i, l);
        }
    }
    true
}

/// Whether the penalties change any logit for this history.
fn penalized(history: &[u32], c: &SamplerConfig) -> bool {
    c.repeat_last_n > 0
        && !history.is_empty()
        && (c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0)
}

fn apply_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if b <= BAN_BIAS {
                f32::NEG_INFINITY
            } else {
                *l + b
            };
        }
    }
}

fn apply_penalties(
    logits: &mut [f32],
    counts: &mut Vec<(u32, u32)>,
    history: &[u32],
    c: &SamplerConfig,
) {
    if !penalized(history, c) {
        return;
    }
    let window = &history[history.len().saturating_sub(c.repeat_last_n)..];
    counts.clear();
    for &t in window {
        match counts.iter_mut().find(|(id, _)| *id == t) {
            Some(e) => e.1 += 1,
            None => counts.push((t, 1)),
        }
    }
    for &(id, n) in counts.iter() {
        let Some(l) = logits.get_mut(id as usize) else {
            continue;
        };
        *l = if *l > 0.0 {
            *l / c.repeat_penalty
        } else {
            *l * c.repeat_penalty
        };
        *l -= c.presence_penalty + c.frequency_penalty * n as f32;
    }
}

fn prob(e: f32, sum: f64) -> f32 {
    (e as f64 / sum) as f32
}

/// xoshiro256** (Blackman & Vigna 2018), seeded through SplitMix64: small, fast, and the same
/// stream on every platform, so a seed reproduces a run.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e3779b97f4a7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the user set wins over what the model recommends, which wins over the front end's
    /// default; the recommendations in effect are the ones the user left unset.
    #[test]
    fn options_over_recommendations_over_defaults() {
        let given = SamplingHints {
            temperature: Some(0.0),
            top_k: Some(5),
            ..SamplingHints::default()
        };
        let model = SamplingHints {
            temperature: Some(0.6),
            top_p: Some(0.9),
            source: "generation_config.json".into(),
            ..SamplingHints::default()
        };
        let c = SamplerConfig::default().with_hints(&given.or(&model));
        assert_eq!((c.temperature, c.top_k, c.top_p), (0.0, 5, 0.9));
        assert_eq!((c.min_p, c.repeat_last_n), (0.05, 64));
        let used = model.unset_in(&given);
        assert_eq!(used.describe(), "top-p 0.9");
        assert_eq!(used.source, "generation_config.json");
        assert!(model.unset_in(&model).is_empty());
    }

    /// The options given are checked before the recommendations; a recommendation out of range
    /// names its source; the notes say what is in effect.
    #[test]
    fn sampling_options_check_and_note() {
        let model = SamplingHints {
            top_p: Some(1.5),
            temperature: Some(0.6),
            source: "general.sampling.* of m.gguf".into(),
            ..SamplingHints::default()
        };
        let mut o = SamplingOptions {
            presence_penalty: 0.5,
            ..SamplingOptions::default()
        };
        let e = o.sampler(&model).unwrap_err();
        assert!(e.ends_with("recommended by the model (general.sampling.* of m.gguf); set the option to override it"), "{e}");
        o.given.top_p = Some(0.9);
        let c = o.sampler(&model).unwrap();
        assert_eq!(
            (c.temperature, c.top_p, c.presence_penalty),
            (0.6, 0.9, 0.5)
        );
        assert_eq!(
            o.hints_note(&model).unwrap(),
            "[sampling as the model recommends: temp 0.6 (general.sampling.* of m.gguf)]"
        );
        let note = o.seed_note(&c).unwrap();
        assert_eq!(
            note,
            format!(
                "[seed {} drawn at random: --seed {} repeats this run]",
                c.seed, c.seed
            )
        );
        // A seed given, or a greedy sampler, needs no note.
        o.seed = Some(7);
        let c = o.sampler(&model).unwrap();
        assert_eq!((c.seed, o.seed_note(&c)), (7, None));
        o.given.temperature = Some(-0.5);
        assert!(o.sampler(&SamplingHints::default()).is_err());
    }

    /// Logits of a known distribution: p = [0.5, 0.25, 0.125, 0.0625, 0.0625].
    fn dist() -> Vec<f32> {
        [0.5f32, 0.25, 0.125, 0.0625, 0.0625]
            .iter()
            .map(|p| p.ln())
            .collect()
    }

    /// Draws many samples and returns each token's frequency.
    fn frequencies(config: SamplerConfig, logits: &[f32], n: usize) -> Vec<f64> {
        let mut s = Sampler::new(config);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[s.sample(logits, &[]) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    fn plain() -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    /// Each row: a setting and the distribution the math says survives it.
    #[test]
    fn filters_keep_the_distribution_the_math_predicts() {
        let table: Vec<(&str, SamplerConfig, [f64; 5])> = vec![
            ("no filter", plain(), [0.5, 0.25, 0.125, 0.0625, 0.0625]),
            // top-k 2 renormalizes 0.5 : 0.25.
            (
                "top-k 2",
                SamplerConfig {
                    top_k: 2,
                    ..plain()
                },
                [2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 0.0],
            ),
            // top-p 0.7: 0.5 < 0.7 ≤ 0.75, so two tokens.
            (
                "top-p 0.7",
                SamplerConfig {
                    top_p: 0.7,
                    ..plain()
                },
                [2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 0.0],
            ),
            // top-p 0.8: 0.75 < 0.8 ≤ 0.875, three tokens: 4:2:1.
            (
                "top-p 0.8",
                SamplerConfig {
                    top_p: 0.8,
                    ..plain()
                },
                [4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0, 0.0],
            ),
            // min-p 0.2 keeps p ≥ 0.1: three tokens.
            (
                "min-p 0.2",
                SamplerConfig {
                    min_p: 0.2,
                    ..plain()
                },
                [4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0, 0.0],
            ),
            // Temperature 0.5 squares the probabilities: 16:4:1 over the top three (top-k 3).
            (
                "top-k 3, T 0.5",
                SamplerConfig {
                    top_k: 3,
                    temperature: 0.5,
                    ..plain()
                },
                [16.0 / 21.0, 4.0 / 21.0, 1.0 / 21.0, 0.0, 0.0],
            ),
        ];
        for (name, config, want) in table {
            let got = frequencies(config, &dist(), 200_000);
            for (g, w) in got.iter().zip(want) {
                // 200k draws: the standard error is below 0.0012; allow 4 of them.
                assert!((g - w).abs() < 0.005, "{name}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn greedy_and_penalties() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&dist(), &[]), 0);
        // Repeat penalty 4 on token 0: ln 0.5 = -0.69 becomes -2.77 < ln 0.25 = -1.39.
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 4.0,
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&dist(), &[0]), 1);
        // Positive logits are divided: 2.0 / 4 = 0.5 < 1.0.
        assert_eq!(s.sample(&[2.0, 1.0], &[0]), 1);
        // Frequency penalty 0.5 × 2 occurrences = 1.0 > 0.69 gap.
        let mut s = Sampler::new(SamplerConfig {
            frequency_penalty: 0.5,
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&[1.0, 0.31], &[0, 0]), 1);
        assert_eq!(s.sample(&[1.0, 0.31], &[0]), 0);
        // Presence penalty counts once.
        let mut s = Sampler::new(SamplerConfig {
            presence_penalty: 0.75,
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&[1.0, 0.31], &[0, 0, 0]), 1);
        // Only the last `repeat_last_n` tokens count.
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 4.0,
            repeat_last_n: 1,
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&dist(), &[0, 3]), 0);
    }

    #[test]
    fn logit_bias_shifts_and_bans() {
        // Banning the argmax: greedy takes the runner-up, sampling never draws it.
        let ban = SamplerConfig {
            logit_bias: vec![(0, -100.0)],
            ..SamplerConfig::greedy()
        };
        assert_eq!(Sampler::new(ban.clone()).sample(&dist(), &[]), 1);
        let f = frequencies(
            SamplerConfig {
                temperature: 1.0,
                ..ban
            },
            &dist(),
            20_000,
        );
        assert_eq!(f[0], 0.0, "{f:?}");
        // A positive bias of ln 4 on token 2 (p 0.125 → weight 0.5) makes it tie token 0.
        let mut s = Sampler::new(SamplerConfig {
            logit_bias: vec![(2, 4f32.ln() + 0.01)],
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&dist(), &[]), 2);
        // Ids past the vocabulary are skipped, not a panic; every token banned still draws one.
        let all_banned = SamplerConfig {
            logit_bias: (0..5).map(|i| (i, -100.0)).chain([(99, 1.0)]).collect(),
            ..plain()
        };
        let t = Sampler::new(all_banned).sample(&dist(), &[]);
        assert!(t < 5);
    }

    /// The chain as first written, sorting every candidate: the twin of [`Sampler::sample`],
    /// with its weights ([`weight`]) and sums ([`exp_sum`]).
    fn sample_by_full_sort(s: &mut Sampler, logits: &[f32], history: &[u32]) -> u32 {
        let c = &s.config;
        let mut logits: Vec<f32> = logits
            .iter()
            .map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l })
            .collect();
        apply_bias(&mut logits, &c.logit_bias);
        apply_penalties(&mut logits, &mut s.counts, history, c);
        let mut cands: Vec<Candidate> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            })
            .collect();
        if c.temperature == 0.0 {
            // The first strictly larger wins: ties go to the smaller id.
            let mut best = cands[0];
            for &c in &cands[1..] {
                if c.logit > best.logit {
                    best = c;
                }
            }
            return best.id;
        }
        cands.sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
        let live = cands.partition_point(|c| c.logit > f32::NEG_INFINITY);
        cands.truncate(live.max(1));
        if c.top_k > 0 {
            cands.truncate(c.top_k);
        }
        // Softmax of `logits / t`, every probability formed.
        let softmax = |cands: &[Candidate], t: f32| -> Vec<f32> {
            let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
            let e: Vec<f32> = cands
                .iter()
                .map(|c| weight(c.logit, max, 1.0 / t))
                .collect();
            let sum = exp_sum(cands.iter().map(|c| c.logit), max, t);
            e.iter().map(|&x| (x as f64 / sum) as f32).collect()
        };
        let probs = softmax(&cands, 1.0);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut acc = 0.0f64;
            keep = probs
                .iter()
                .position(|&q| {
                    acc += q as f64;
                    acc >= c.top_p as f64
                })
                .map_or(probs.len(), |i| i + 1);
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * c.min_p;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count());
        }
        cands.truncate(keep.max(1));
        let probs = softmax(&cands, c.temperature);
        let r = s.rng.next_f64() as f32;
        let mut acc = 0.0f32;
        for (cand, &p) in cands.iter().zip(&probs) {
            acc += p;
            if r < acc {
                return cand.id;
            }
        }
        cands.last().map_or(0, |c| c.id)
    }

    /// The partial sorts draw what sorting everything draws, token for token: vocabularies
    /// small and large, logits with many ties (rounded to a coarse grid), banned tokens, NaN,
    /// every filter alone and together, penalties and biases, the same seed on both sides.
    #[test]
    fn partial_sorts_draw_what_a_full_sort_draws() {
        let mut seed = 0x2545f4914f6cdd1du64;
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let configs = [
            SamplerConfig::default(),
            plain(),
            SamplerConfig {
                top_k: 0,
                top_p: 0.9,
                min_p: 0.0,
                temperature: 0.7,
                ..plain()
            },
            SamplerConfig {
                top_k: 0,
                top_p: 0.95,
                min_p: 0.3,
                temperature: 1.3,
                ..plain()
            },
            SamplerConfig {
                top_k: 300,
                min_p: 0.01,
                ..plain()
            },
            SamplerConfig {
                top_k: 1,
                ..plain()
            },
            SamplerConfig {
                repeat_penalty: 1.3,
                presence_penalty: 0.5,
                frequency_penalty: 0.25,
                logit_bias: vec![(3, -100.0), (5, 2.5), (10_000, 1.0)],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                logit_bias: vec![(1, 0.5)],
                ..SamplerConfig::greedy()
            },
            SamplerConfig::greedy(),
        ];
        let history: Vec<u32> = (0..80).map(|i| (i * 37) % 700).collect();
        // Llama 3's vocabulary, whose draws without top-k take every sort: the 1K or 16K
        // most likely tokens, or all (a debug build is slow there: those configs, fewer steps).
        for (case, n) in [5usize, 200, 257, 4096, 20_000, 128_256]
            .into_iter()
            .enumerate()
        {
            let configs = configs
                .iter()
                .filter(|c| n < 100_000 || (c.top_k == 0 && c.temperature > 0.0));
            for config in configs {
                let (mut fast, mut twin) =
                    (Sampler::new(config.clone()), Sampler::new(config.clone()));
                for step in 0..if n > 100_000 { 4 } else { 24 } {
                    let coarse = step % 2 == 0;
                    let mut logits: Vec<f32> = (0..n)
                        .map(|_| {
                            let x = (uniform() * 12.0 - 6.0) as f32;
                            if coarse { (x * 2.0).round() / 2.0 } else { x }
                        })
                        .collect();
                    if step % 5 == 1 {
                        logits[n / 2] = f32::NEG_INFINITY;
                        logits[0] = -0.0;
                    }
                    if step == 7 && case > 0 {
                        logits[1] = f32::NAN;
                    }
                    let h = &history[..step % history.len()];
                    assert_eq!(
                        fast.sample(&logits, h),
                        sample_by_full_sort(&mut twin, &logits, h),
                        "vocabulary {n}, step {step}, {config:?}"
                    );
                }
            }
        }
    }

    /// No logits at all (a model of no vocabulary) draw token 0 on every path, as greedy does.
    #[test]
    fn an_empty_vocabulary_draws_token_0() {
        for config in [plain(), SamplerConfig::default(), SamplerConfig::greedy()] {
            assert_eq!(Sampler::new(config).sample(&[], &[]), 0);
        }
    }

    #[test]
    fn a_seed_reproduces_the_draws() {
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..plain() });
            (0..64).map(|_| s.sample(&dist(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn validation_names_the_option() {
        for (c, needle) in [
            (
                SamplerConfig {
                    top_p: 2.0,
                    ..plain()
                },
                "top-p",
            ),
            (
                SamplerConfig {
                    temperature: -1.0,
                    ..plain()
                },
                "temperature",
            ),
            (
                SamplerConfig {
                    min_p: 1.5,
                    ..plain()
                },
                "min-p",
            ),
            (
                SamplerConfig {
                    repeat_penalty: 0.0,
                    ..plain()
                },
                "repeat penalty",
            ),
        ] {
            assert!(c.validate().unwrap_err().contains(needle));
        }
    }
}
