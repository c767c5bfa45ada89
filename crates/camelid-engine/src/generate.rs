//! The generation loop: prompt pass, then one token at a time until a stop condition.
//!
//! Stop conditions, checked after every token: an end-of-generation token (EOS, `<|eot_id|>`,
//! `<|eom_id|>`, `<|im_end|>`, whatever the tokenizer declares), a stop string (also one that
//! spans several tokens: text that could still become a stop string is held back, and the stop
//! string itself is never emitted), the token budget, a full context, a cancel flag, or a
//! grammar that is complete ([`GenParams::grammar`]: constrained decoding, where each step's
//! logits outside the grammar are set to -∞ before sampling).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camelid_constrain::{Constraint, Grammar};
use camelid_model::{Model, ModelError, Next, State, Want};
use camelid_tokenizer::{StreamDecoder, Tokenizer};

use crate::sampler::{Sampler, SamplerConfig};
use crate::speculate::{AfterDraft, DraftCheck, SpecStats, Speculator};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// At most this many new tokens.
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub sampler: SamplerConfig,
    /// Output constrained to a grammar (a JSON schema, GBNF...), compiled for the tokenizer.
    pub grammar: Option<Grammar>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    ContextFull,
    /// The caller raised the cancel flag.
    Cancelled,
}

/// The outcome of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated ids, the end-of-generation token excluded.
    pub tokens: Vec<u32>,
    /// The text emitted (stop string excluded).
    pub text: String,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub gen_time: Duration,
    /// With a grammar: the time spent on token masks and how many were computed.
    pub masks: Option<(Duration, u32)>,
    /// With speculative decoding: drafts proposed and taken.
    pub speculation: Option<SpecStats>,
}

impl Generation {
    pub fn prompt_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    pub fn gen_tokens_per_s(&self) -> f64 {
        self.tokens.len() as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }

    /// How it ended, as OpenAI names it (`stop`, `length`), and `cancelled`.
    pub fn finish_name(&self) -> &'static str {
        match self.finish {
            FinishReason::EndOfGeneration | FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::ContextFull => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }

    /// The reason it ended where a user should hear it, then the speeds and the grammar's
    /// cost: the lines a front end prints after the text (`n_ctx`: the context it ran in).
    pub fn summary_lines(&self, n_ctx: usize) -> Vec<String> {
        let mut lines = Vec::new();
        match self.finish {
            FinishReason::ContextFull => lines.push(format!(
                "[stopped: the context of {n_ctx} tokens is full; raise --ctx for longer output]"
            )),
            FinishReason::Cancelled => lines.push("[interrupted]".into()),
            _ => {}
        }
        lines.push(format!(
            "prompt: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s",
            self.prompt_tokens,
            self.prompt_tokens_per_s(),
            self.tokens.len(),
            self.gen_tokens_per_s()
        ));
        if let Some((t, n)) = self.masks {
            lines.push(format!(
                "grammar: {n} token masks, {:.1} µs per mask",
                t.as_secs_f64() * 1e6 / f64::from(n.max(1))
            ));
        }
        if let Some(s) = self.speculation {
            lines.push(s.summary());
        }
        lines
    }

    /// The generation of `prompt_ids` with `seed` as one JSON object: ids, text, finish reason
    /// and timings.
    pub fn to_json(&self, prompt_ids: &[u32], seed: u64) -> serde_json::Value {
        serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": self.tokens,
            "text": self.text,
            "finish_reason": self.finish_name(),
            "seed": seed,
            "timings": {
                "prompt_tokens": self.prompt_tokens,
                "prompt_ms": self.prompt_time.as_secs_f64() * 1e3,
                "prompt_tokens_per_s": self.prompt_tokens_per_s(),
                "gen_tokens": self.tokens.len(),
                "gen_ms": self.gen_time.as_secs_f64() * 1e3,
                "gen_tokens_per_s": self.gen_tokens_per_s(),
                "grammar_masks": self.masks.map(|m| m.1),
                "grammar_mask_ms": self.masks.map(|m| m.0.as_secs_f64() * 1e3),
            },
            "speculation": self.speculation.map(|s| serde_json::json!({
                "passes": s.passes,
                "drafted": s.drafted,
                "accepted": s.accepted,
            })),
        })
    }
}

/// An error before generation could start or during a model step.
#[derive(Debug)]
pub enum GenError {
    /// The prompt does not fit in the context (`n_ctx`) next to what is cached.
    PromptTooLong {
        prompt: usize,
        n_ctx: usize,
    },
    EmptyPrompt,
    Model(ModelError),
    Sampler(String),
}

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenError::PromptTooLong { prompt, n_ctx } => write!(
                f,
                "the prompt is {prompt} tokens, longer than the context of {n_ctx} tokens (raise --ctx or shorten the prompt)"
            ),
            GenError::EmptyPrompt => write!(f, "the prompt is empty (no tokens to start from)"),
            GenError::Model(e) => e.fmt(f),
            GenError::Sampler(e) => write!(f, "invalid sampling settings: {e}"),
        }
    }
}

impl std::error::Error for GenError {}

impl From<ModelError> for GenError {
    fn from(e: ModelError) -> Self {
        GenError::Model(e)
    }
}

/// Generates a continuation of `prompt` (appended to what `state` already holds), calling
/// `on_text` with each piece of text as soon as it is certain.
pub fn generate(
    model: &Model,
    state: &mut State,
    tok: &Tokenizer,
    prompt: &[u32],
    params: &GenParams,
    cancel: &AtomicBool,
    on_text: impl FnMut(&str),
) -> Result<Generation, GenError> {
    generate_with(model, state, tok, prompt, params, None, cancel, on_text)
}

/// A drafter for [`generate_with`] and the tokens `state` holds before the prompt (its
/// `state.pos` first tokens: what a draft model or a lookup reads besides the prompt).
pub struct Speculation<'s, 'm> {
    pub speculator: &'s mut Speculator<'m>,
    pub before: &'s [u32],
}

/// [`generate`], with speculative decoding when `spec` is given: the same tokens, fewer
/// passes over the weights when the drafts are good (`crate::speculate`).
#[allow(clippy::too_many_arguments)]
pub fn generate_with(
    model: &Model,
    state: &mut State,
    tok: &Tokenizer,
    prompt: &[u32],
    params: &GenParams,
    mut spec: Option<Speculation<'_, '_>>,
    cancel: &AtomicBool,
    mut on_text: impl FnMut(&str),
) -> Result<Generation, GenError> {
    let mut cont = Continuation::new(tok, prompt, params)?;
    if state.pos + prompt.len() > state.n_ctx {
        return Err(GenError::PromptTooLong {
            prompt: state.pos + prompt.len(),
            n_ctx: state.n_ctx,
        });
    }
    // The whole sequence, for the drafter.
    let mut text: Vec<u32> = match &spec {
        Some(s) => [s.before, prompt].concat(),
        None => Vec::new(),
    };
    let mut stats = SpecStats::default();
    let t0 = Instant::now();
    let mut next = 0u32;
    model.forward(state, prompt, false, |_, logits| next = cont.sample(logits))?;
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();

    let finish = loop {
        if cancel.load(Ordering::Relaxed) {
            break cont.cancel(&mut on_text);
        }
        if let Some(finish) = cont.accept(next, state.pos < state.n_ctx, &mut on_text) {
            break finish;
        }
        if let Some(s) = spec.as_mut() {
            text.push(next);
            // The pass takes `next` and the draft: it must fit in the cache, and drafts past
            // the token budget would be computed for nothing.
            let room = state.n_ctx - state.pos - 1;
            let budget = cont.tokens_left().saturating_sub(1);
            let draft = s.speculator.propose(&text, room.min(budget))?;
            if !draft.is_empty() {
                let check = check_draft(model, state, &mut cont, next, draft, &mut on_text)?;
                let taken = check.taken();
                stats.passes += 1;
                stats.drafted += draft.len();
                stats.accepted += taken;
                text.extend_from_slice(&draft[..taken]);
                s.speculator.taken(taken);
                match check.after() {
                    AfterDraft::Finished(finish) => break finish,
                    AfterDraft::Next(t) => next = t,
                }
                continue;
            }
        }
        if cont.is_greedy() {
            // The model picks the token where the logits are (on a GPU, one number crosses).
            let feed = [next];
            let on_next = |_, n: Next<'_>| {
                if let Next::Token(t) = n {
                    next = t;
                }
            };
            model.forward_batch(
                &mut [state],
                &[&feed],
                |_| Want::Token,
                on_next,
                |_, _, _| {},
            )?;
        } else {
            model.forward(state, &[next], false, |_, logits| {
                next = cont.sample(logits)
            })?;
        }
    };
    Ok(Generation {
        masks: cont.mask_stats(),
        tokens: cont.tokens,
        text: cont.out.emitted,
        finish,
        prompt_tokens: prompt.len(),
        prompt_time,
        gen_time: t1.elapsed(),
        speculation: spec.map(|_| stats),
    })
}

/// One pass over `next` (taken, not yet in the cache) and `draft`, drawing each row's token in
/// order while the draft holds: sampled from the row's logits, or, when the continuation is
/// greedy, picked by the model (on a GPU, a word a row crosses rather than the vocabulary's
/// logits). Returns the check: the draft tokens taken and what came after them. The cache then
/// holds what plain decoding would have fed ([`DraftCheck::cache_len`]).
fn check_draft(
    model: &Model,
    state: &mut State,
    cont: &mut Continuation<'_>,
    next: u32,
    draft: &[u32],
    on_text: &mut impl FnMut(&str),
) -> Result<DraftCheck, GenError> {
    let feed: Vec<u32> = std::iter::once(next).chain(draft.iter().copied()).collect();
    let mut check = DraftCheck::new(state.pos, state.n_ctx, draft.to_vec());
    if cont.is_greedy() {
        let on_next = |_, n: Next<'_>| {
            if let Next::Token(t) = n {
                check.row(t, cont, on_text);
            }
        };
        model.forward_batch(
            &mut [state],
            &[&feed],
            |_| Want::Tokens,
            on_next,
            |_, _, _| {},
        )?;
    } else {
        model.forward(state, &feed, true, |_, logits| {
            if !check.is_decided() {
                let t = cont.sample(logits);
                check.row(t, cont, on_text);
            }
        })?;
    }
    state.pos = check.cache_len();
    Ok(check)
}

/// One generation driven a token at a time by a caller who runs the model itself: what
/// [`generate`] does between two forward passes. A server batching many sequences into one pass
/// keeps one of these per sequence.
///
/// The caller alternates [`sample`](Continuation::sample) (logits to a token) and
/// [`accept`](Continuation::accept) (the token to text and stop conditions) until `accept`
/// returns a reason to finish; between the two it may look at the logits (log-probabilities).
pub struct Continuation<'t> {
    tok: &'t Tokenizer,
    sampler: Sampler,
    /// Prompt and generated ids, for the penalties.
    history: Vec<u32>,
    decoder: StreamDecoder<'t>,
    out: StopScanner,
    /// Generated ids, the end-of-generation token excluded.
    tokens: Vec<u32>,
    max_tokens: usize,
    /// The grammar's state, and the masked copy of the logits it samples from.
    constraint: Option<Constraint>,
    masked: Vec<f32>,
}

impl<'t> Continuation<'t> {
    /// Checks the settings and the prompt; nothing runs yet.
    pub fn new(
        tok: &'t Tokenizer,
        prompt: &[u32],
        params: &GenParams,
    ) -> Result<Continuation<'t>, GenError> {
        params.sampler.validate().map_err(GenError::Sampler)?;
        if prompt.is_empty() {
            return Err(GenError::EmptyPrompt);
        }
        Ok(Continuation {
            tok,
            sampler: Sampler::new(params.sampler.clone()),
            history: prompt.to_vec(),
            decoder: tok.stream_decoder(),
            out: StopScanner::new(params.stop.clone()),
            tokens: Vec::new(),
            max_tokens: params.max_tokens,
            constraint: params.grammar.as_ref().map(Grammar::start),
            masked: Vec::new(),
        })
    }

    /// Picks the next token from the logits of the last position (of the tokens the grammar
    /// allows, if there is one).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if let Some(c) = &mut self.constraint {
            self.masked.clear();
            self.masked.extend_from_slice(logits);
            if c.mask_logits(&mut self.masked) {
                return self.sampler.sample(&self.masked, &self.history);
            }
        }
        self.sampler.sample(logits, &self.history)
    }

    /// Whether [`Continuation::sample`] would take the greedy pick of the raw logits (no
    /// grammar, and [`Sampler::is_greedy`]): the caller may then ask the model for its next
    /// token alone ([`camelid_model::Want::Token`]) and [`accept`](Continuation::accept) it.
    pub fn is_greedy(&self) -> bool {
        self.constraint.is_none() && self.sampler.is_greedy(&self.history)
    }

    /// Time spent on grammar masks and how many were computed; `None` without a grammar.
    pub fn mask_stats(&self) -> Option<(Duration, u32)> {
        self.constraint.as_ref().map(Constraint::mask_stats)
    }

    /// The grammar's error, when a token it refused ended generation (a logit bias that
    /// banned every token the grammar allowed, say).
    pub fn grammar_error(&self) -> Option<&str> {
        self.constraint.as_ref().and_then(Constraint::error)
    }

    /// Takes the sampled token: emits the text that is now certain through `on_text`, and
    /// returns why generation ends, if it does. `room` says whether the cache can take the
    /// token (if not, generation ends after it). When `None` comes back, the caller feeds the
    /// token to the model and calls [`sample`](Continuation::sample) on its logits.
    pub fn accept(
        &mut self,
        token: u32,
        room: bool,
        on_text: &mut impl FnMut(&str),
    ) -> Option<FinishReason> {
        let refused = self
            .constraint
            .as_mut()
            .is_some_and(|c| c.accept(token).is_err());
        if self.tok.is_eog(token) {
            return Some(self.end(FinishReason::EndOfGeneration, on_text));
        }
        if refused {
            return Some(self.end(FinishReason::Stop, on_text));
        }
        self.tokens.push(token);
        self.history.push(token);
        let piece = self.decoder.push(token).unwrap_or_default();
        if self.out.push(&piece, on_text) {
            return Some(FinishReason::Stop);
        }
        // The grammar is complete and allows nothing more: the end, as if the model said so.
        if self
            .constraint
            .as_ref()
            .is_some_and(Constraint::is_finished)
        {
            return Some(self.end(FinishReason::EndOfGeneration, on_text));
        }
        if self.tokens.len() >= self.max_tokens {
            return Some(self.end(FinishReason::Length, on_text));
        }
        if !room {
            return Some(self.end(FinishReason::ContextFull, on_text));
        }
        None
    }

    /// Ends early at the caller's request, emitting what was held back.
    pub fn cancel(&mut self, on_text: &mut impl FnMut(&str)) -> FinishReason {
        self.end(FinishReason::Cancelled, on_text)
    }

    /// How many more tokens the budget allows.
    pub fn tokens_left(&self) -> usize {
        self.max_tokens.saturating_sub(self.tokens.len())
    }

    /// The ids generated so far (an end-of-generation token excluded).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The text emitted so far (a stop string excluded).
    pub fn text(&self) -> &str {
        &self.out.emitted
    }

    /// Releases everything held back: an unfinished character, text that might have begun a
    /// stop string.
    fn end(&mut self, finish: FinishReason, on_text: &mut impl FnMut(&str)) -> FinishReason {
        let tail = self.decoder.finish();
        self.out.push(&tail, on_text);
        self.out.flush(on_text);
        finish
    }
}

/// Holds back text that might be the start of a stop string.
struct StopScanner {
    stops: Vec<String>,
    /// Text received but not yet emitted.
    pending: String,
    emitted: String,
}

impl StopScanner {
    fn new(stops: Vec<String>) -> Self {
        StopScanner {
            stops,
            pending: String::new(),
            emitted: String::new(),
        }
    }

    /// Adds text; emits what can no longer be part of a stop string. True when a stop string
    /// was found (the text before it is emitted, the rest dropped).
    fn push(&mut self, text: &str, on_text: &mut impl FnMut(&str)) -> bool {
        self.pending.push_str(text);
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            self.pending.truncate(at);
            self.flush(on_text);
            return true;
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - keep;
        if cut > 0 {
            let ready: String = self.pending.drain(..cut).collect();
            on_text(&ready);
            self.emitted.push_str(&ready);
        }
        false
    }

    fn flush(&mut self, on_text: &mut impl FnMut(&str)) {
        if !self.pending.is_empty() {
            on_text(&self.pending);
            self.emitted.push_str(&self.pending);
            self.pending.clear();
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on char bounds).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_reports_its_end_speeds_and_grammar_cost() {
        let g = Generation {
            tokens: vec![5, 6, 7, 8],
            text: "abcd".into(),
            finish: FinishReason::ContextFull,
            prompt_tokens: 10,
            prompt_time: Duration::from_millis(500),
            gen_time: Duration::from_secs(2),
            masks: Some((Duration::from_millis(3), 4)),
            speculation: None,
        };
        assert_eq!(
            g.summary_lines(64),
            [
                "[stopped: the context of 64 tokens is full; raise --ctx for longer output]",
                "prompt: 10 tokens, 20.0 tokens/s | generation: 4 tokens, 2.0 tokens/s",
                "grammar: 4 token masks, 750.0 µs per mask",
            ]
        );
        let v = g.to_json(&[1, 2], 42);
        assert_eq!(v["finish_reason"], "length");
        assert_eq!(
            (v["seed"].as_u64(), v["timings"]["gen_ms"].as_f64()),
            (Some(42), Some(2000.0))
        );
        assert_eq!(v["timings"]["grammar_masks"].as_u64(), Some(4));
        let cancelled = Generation {
            finish: FinishReason::Cancelled,
            masks: None,
            ..g
        };
        assert_eq!(cancelled.finish_name(), "cancelled");
        assert_eq!(cancelled.summary_lines(64).len(), 2);
    }

    fn scan(stops: &[&str], pieces: &[&str]) -> (String, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut sc = StopScanner::new(stops);
        let mut seen = String::new();
        let mut hit = false;
        for p in pieces {
            if sc.push(p, &mut |t| seen.push_str(t)) {
                hit = true;
                break;
            }
        }
        if !hit {
            sc.flush(&mut |t| seen.push_str(t));
        }
        (seen, sc.emitted, hit)
    }

    #[test]
    fn stop_string_spanning_tokens_is_never_printed() {
        let (seen, emitted, hit) = scan(&["\nUser:"], &["Hello", "\n", "Us", "er", ": more"]);
        assert!(hit);
        assert_eq!(seen, "Hello");
        assert_eq!(emitted, "Hello");
    }

    #[test]
    fn held_back_text_is_released_when_it_diverges() {
        let (seen, _, hit) = scan(&["STOP"], &["a S", "T", "x"]);
        assert!(!hit);
        assert_eq!(seen, "a STx");
    }

    #[test]
    fn multibyte_text_and_stops() {
        let (seen, _, hit) = scan(&["日本"], &["こんにち", "は日", "本語"]);
        assert!(hit);
        assert_eq!(seen, "こんにちは");
    }
}
