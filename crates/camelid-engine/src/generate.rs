//! The generation loop: prompt pass, then one token at a time until a stop condition.
//!
//! Stop conditions, checked after every token: an end-of-generation token (EOS, `<|eot_id|>`,
//! `<|eom_id|>`, `<|im_end|>`, whatever the tokenizer declares), a stop string (also one that
//! spans several tokens: text that could still become a stop string is held back, and the stop
//! string itself is never emitted), the token budget, a full context, or a cancel flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camelid_model::{Model, ModelError, State};
use camelid_tokenizer::Tokenizer;

use crate::sampler::{Sampler, SamplerConfig};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// At most this many new tokens.
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub sampler: SamplerConfig,
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
}

impl Generation {
    pub fn prompt_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    pub fn gen_tokens_per_s(&self) -> f64 {
        self.tokens.len() as f64 / self.gen_time.as_secs_f64().max(1e-9)
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
    mut on_text: impl FnMut(&str),
) -> Result<Generation, GenError> {
    params.sampler.validate().map_err(GenError::Sampler)?;
    if prompt.is_empty() {
        return Err(GenError::EmptyPrompt);
    }
    if state.pos + prompt.len() > state.n_ctx {
        return Err(GenError::PromptTooLong {
            prompt: state.pos + prompt.len(),
            n_ctx: state.n_ctx,
        });
    }
    let mut sampler = Sampler::new(params.sampler.clone());
    let mut history: Vec<u32> = prompt.to_vec();
    let mut decoder = tok.stream_decoder();
    let mut out = StopScanner::new(&params.stop);
    let mut tokens = Vec::new();

    let t0 = Instant::now();
    let mut next = 0u32;
    model.forward(state, prompt, false, |_, logits| {
        next = sampler.sample(logits, &history)
    })?;
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();

    let finish = loop {
        if cancel.load(Ordering::Relaxed) {
            break FinishReason::Cancelled;
        }
        if tok.is_eog(next) {
            break FinishReason::EndOfGeneration;
        }
        tokens.push(next);
        history.push(next);
        let piece = decoder.push(next).unwrap_or_default();
        if out.push(&piece, &mut on_text) {
            break FinishReason::Stop;
        }
        if tokens.len() >= params.max_tokens {
            break FinishReason::Length;
        }
        if state.pos >= state.n_ctx {
            break FinishReason::ContextFull;
        }
        model.forward(state, &[next], false, |_, logits| {
            next = sampler.sample(logits, &history)
        })?;
    };
    if finish != FinishReason::Stop {
        let tail = decoder.finish();
        out.push(&tail, &mut on_text);
        out.flush(&mut on_text);
    }
    Ok(Generation {
        tokens,
        text: out.emitted,
        finish,
        prompt_tokens: prompt.len(),
        prompt_time,
        gen_time: t1.elapsed(),
    })
}

/// Holds back text that might be the start of a stop string.
struct StopScanner<'a> {
    stops: &'a [String],
    /// Text received but not yet emitted.
    pending: String,
    emitted: String,
}

impl<'a> StopScanner<'a> {
    fn new(stops: &'a [String]) -> Self {
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

    fn scan(stops: &[&str], pieces: &[&str]) -> (String, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut sc = StopScanner::new(&stops);
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
