//! Speculative decoding: cheap guesses of the next tokens, checked by the model in one pass.
//!
//! A drafter proposes up to `draft_max` tokens after the last token taken. The model runs that
//! token and the draft as one batch: one read of the weights for all of them, so about the
//! cost of one decoding step where decoding is bound by memory (a GPU, or a large model on a
//! CPU). The continuation then samples from each row's logits in order, as it would one step
//! at a time. While the token drawn is the draft's, the next row's logits are the ones a plain
//! step would have computed, and it goes on; at the first difference the token drawn is kept
//! and the rest of the draft dropped (the cache forgets it: its positions are written again by
//! the next pass).
//!
//! On the CPU the model's rows in a batch are bit for bit what it computes one token at a
//! time (camelid-model, `llama.rs`), and the sampler draws once per token in the same order,
//! so the text is the one plain decoding gives with the same seed, whatever the drafter
//! proposes: the drafter changes only the speed. On CUDA a pass of several rows takes other
//! kernels than a step of one (at the fast precision the tensor cores from 4 rows, and the
//! prompt attention), whose roundings differ, so there the text is plain decoding's up to a
//! near-tie between the two most likely tokens, as for any batch on that backend. (The
//! rejection rule of Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
//! Decoding", keeps the distribution but not the seeded draws; keeping a draft token only when
//! it is the token drawn is what llama.cpp's server does.)
//!
//! Drafters:
//! - [`Lookup`]: prompt lookup (Saxena 2023, "Prompt Lookup Decoding"): the tokens that
//!   followed the latest earlier occurrence of the text's last few tokens. Free, and good
//!   where the output repeats the input: summaries, edits, code, extraction.
//! - [`DraftModel`]: a smaller model of the same vocabulary, decoding greedily while its most
//!   likely token has at least `p_min` of the probability (llama.cpp's `--draft-p-min`).

use camelid_model::{Model, ModelError, State};
use camelid_tokenizer::Tokenizer;

use crate::generate::{Continuation, FinishReason};

/// Where the draft tokens come from.
pub enum Drafter<'m> {
    Lookup(Lookup),
    Model(DraftModel<'m>),
}

/// Drafts by prompt lookup: for n from `ngram_max` down to `ngram_min`, the latest earlier
/// occurrence of the text's last n tokens; the draft is what followed it.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    pub ngram_min: usize,
    pub ngram_max: usize,
}

impl Default for Lookup {
    fn default() -> Self {
        Lookup {
            ngram_min: 2,
            ngram_max: 4,
        }
    }
}

impl Lookup {
    /// Appends up to `max` draft tokens after `text` to `out`.
    fn propose(&self, text: &[u32], max: usize, out: &mut Vec<u32>) {
        let len = text.len();
        for n in (self.ngram_min.max(1)..=self.ngram_max).rev() {
            if len <= n {
                continue;
            }
            let key = &text[len - n..];
            // Occurrences that end before the last token: some text follows each.
            let Some(at) = text[..len - 1].windows(n).rposition(|w| w == key) else {
                continue;
            };
            // What followed, read on into the draft itself where it runs past the end (as an
            // LZ77 copy does): a match `p` tokens back repeats with period `p`.
            let (from, base) = (at + n, out.len());
            for i in 0..max {
                let t = match text.get(from + i) {
                    Some(&t) => t,
                    None => out[base + from + i - len],
                };
                out.push(t);
            }
            return;
        }
    }
}

/// Drafts with a smaller model of the same vocabulary, greedily.
pub struct DraftModel<'m> {
    model: &'m Model,
    state: State,
    /// The tokens whose keys and values are in `state`'s cache.
    cached: Vec<u32>,
    /// Drafting stops before a token whose probability under the draft model is below this.
    pub p_min: f32,
}

impl<'m> DraftModel<'m> {
    /// A draft model for a model whose vocabulary is `target`'s: every token the draft model
    /// can propose must be the same text in both. Its cache holds `n_ctx` tokens.
    pub fn new(
        model: &'m Model,
        tok: &Tokenizer,
        target: &Tokenizer,
        target_vocab: usize,
        n_ctx: usize,
        p_min: f32,
    ) -> Result<DraftModel<'m>, SpecError> {
        check_vocabularies(tok, model.config.n_vocab, target, target_vocab)?;
        if !(0.0..=1.0).contains(&p_min) {
            return Err(SpecError(format!(
                "the draft's minimum probability must be from 0 to 1, got {p_min}"
            )));
        }
        let state = model
            .new_state(n_ctx)
            .map_err(|e| SpecError(e.to_string()))?;
        Ok(DraftModel::with_state(model, state, p_min))
    }

    /// A draft model in `state` (a state of `model`), whose vocabulary the caller has checked
    /// against the model's ([`check_vocabularies`]): a server makes one for each of its slots.
    pub fn with_state(model: &'m Model, state: State, p_min: f32) -> DraftModel<'m> {
        DraftModel {
            model,
            state,
            cached: Vec::new(),
            p_min,
        }
    }

    /// Makes the cache keep what it shares with `text` (at least the last token goes through
    /// the model again, for the logits after the text); returns the tokens to feed.
    fn rewind(&mut self, text: &[u32]) -> Vec<u32> {
        let common = self
            .cached
            .iter()
            .zip(text)
            .take_while(|(a, b)| a == b)
            .count();
        let common = common.min(text.len() - 1);
        self.state.pos = common;
        self.cached.truncate(common);
        text[common..].to_vec()
    }
}

/// Drafts of several draft models of one model at once: `jobs[i] = (draft model, text, max)`
/// appends up to `max` tokens after `text` to `outs[i]`. Each step is one pass of the draft
/// model over every sequence still drafting (a sequence stops at `max`, at a token less likely
/// than its `p_min`, or when its cache is full), so a server's slots read the draft model's
/// weights once a step rather than once each.
fn draft_together(
    jobs: &mut [(&mut DraftModel<'_>, &[u32], usize)],
    outs: &mut [&mut Vec<u32>],
) -> Result<(), ModelError> {
    let Some(model) = jobs.first().map(|j| j.0.model) else {
        return Ok(());
    };
    let mut feeds: Vec<Vec<u32>> = jobs
        .iter_mut()
        .map(|(d, text, max)| {
            if *max == 0 || text.is_empty() {
                Vec::new()
            } else {
                d.rewind(text)
            }
        })
        .collect();
    loop {
        // The sequences drafting this step.
        let going: Vec<usize> = (0..jobs.len())
            .filter(|&i| {
                let d = &jobs[i].0;
                !feeds[i].is_empty() && d.state.pos + feeds[i].len() <= d.state.n_ctx
            })
            .collect();
        if going.is_empty() {
            return Ok(());
        }
        let mut picks = vec![(0u32, 0.0f64); going.len()];
        {
            let mut states: Vec<&mut State> = Vec::with_capacity(going.len());
            let mut next = going.iter().peekable();
            for (i, (d, _, _)) in jobs.iter_mut().enumerate() {
                if next.peek() == Some(&&i) {
                    next.next();
                    states.push(&mut d.state);
                }
            }
            let tokens: Vec<&[u32]> = going.iter().map(|&i| feeds[i].as_slice()).collect();
            model.forward_seqs(&mut states, &tokens, |k, logits| {
                picks[k] = most_likely(logits)
            })?;
        }
        for (&i, &(t, p)) in going.iter().zip(&picks) {
            let (d, _, max) = &mut jobs[i];
            d.cached.extend_from_slice(&feeds[i]);
            feeds[i].clear();
            if p < f64::from(d.p_min) {
                continue;
            }
            outs[i].push(t);
            if outs[i].len() < *max {
                feeds[i].push(t);
            }
        }
    }
}

/// The most likely token of `logits` and its probability.
fn most_likely(logits: &[f32]) -> (u32, f64) {
    let best = crate::eval::argmax(logits);
    let lse = crate::eval::log_sum_exp(logits);
    (best as u32, (f64::from(logits[best]) - lse).exp())
}

/// A draft model whose vocabulary is not the model's, or settings out of range.
#[derive(Debug)]
pub struct SpecError(pub String);

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Every token the draft can propose (its model's `draft_vocab` rows) must be a token of the
/// target model with the same text.
pub fn check_vocabularies(
    draft: &Tokenizer,
    draft_vocab: usize,
    target: &Tokenizer,
    target_vocab: usize,
) -> Result<(), SpecError> {
    if draft_vocab > target_vocab {
        return Err(SpecError(format!(
            "the draft model has {draft_vocab} tokens, more than the model's {target_vocab}: \
             a draft model must share the model's vocabulary"
        )));
    }
    for id in 0..draft_vocab as u32 {
        let (d, t) = (draft.token_bytes(id), target.token_bytes(id));
        if d != t {
            let show = |b: Option<&[u8]>| {
                b.map_or("no token".to_string(), |b| {
                    format!("{:?}", String::from_utf8_lossy(b))
                })
            };
            return Err(SpecError(format!(
                "the draft model's token {id} is {} where the model's is {}: a draft model must \
                 share the model's vocabulary",
                show(d),
                show(t)
            )));
        }
    }
    Ok(())
}

/// What speculation did over a generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecStats {
    /// Passes that checked a draft.
    pub passes: usize,
    /// Draft tokens proposed, and those the model drew too.
    pub drafted: usize,
    pub accepted: usize,
}

impl SpecStats {
    /// The line a front end prints after the text.
    pub fn summary(&self) -> String {
        format!(
            "speculation: {} drafted, {} accepted ({:.1}%) in {} passes, {:.2} tokens a pass",
            self.drafted,
            self.accepted,
            100.0 * self.accepted as f64 / self.drafted.max(1) as f64,
            self.passes,
            (self.accepted + self.passes) as f64 / self.passes.max(1) as f64
        )
    }
}

/// How a checked draft ends: the token drawn after the draft tokens taken (not taken itself),
/// or the reason taking one of them ended the generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterDraft {
    Next(u32),
    Finished(FinishReason),
}

/// A draft checked against the tokens drawn from a pass over the last token taken and the
/// draft: row `i`'s token is the one drawn after the pass's token `i`, plain decoding's own
/// while the draft held. The rows come in order; each draft token drawn is taken
/// ([`Continuation::accept`]), and the first token drawn that is not the draft's decides.
#[derive(Clone, Debug)]
pub struct DraftCheck {
    /// Where the pass began, and the cache's length.
    pos: usize,
    n_ctx: usize,
    draft: Vec<u32>,
    taken: usize,
    after: Option<AfterDraft>,
}

impl DraftCheck {
    /// A check of `draft`, whose pass feeds the last token taken at position `pos` of a cache
    /// of `n_ctx`.
    pub fn new(pos: usize, n_ctx: usize, draft: Vec<u32>) -> DraftCheck {
        DraftCheck {
            pos,
            n_ctx,
            draft,
            taken: 0,
            after: None,
        }
    }

    pub fn draft(&self) -> &[u32] {
        &self.draft
    }

    /// Whether the rows still to come change nothing.
    pub fn is_decided(&self) -> bool {
        self.after.is_some()
    }

    /// The token drawn at the next row; nothing once decided.
    pub fn row(&mut self, t: u32, cont: &mut Continuation<'_>, on_text: &mut impl FnMut(&str)) {
        if self.after.is_some() {
            return;
        }
        let i = self.taken;
        if self.draft.get(i) != Some(&t) {
            self.after = Some(AfterDraft::Next(t));
            return;
        }
        self.taken += 1;
        // Plain decoding would feed it at position pos + i + 1.
        let room = self.pos + i + 1 < self.n_ctx;
        self.after = cont.accept(t, room, on_text).map(AfterDraft::Finished);
    }

    /// Draft tokens taken.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// What came after the tokens taken. The row after the whole draft never matches, so a
    /// check that saw every row of its pass is decided.
    ///
    /// # Panics
    /// Before the check is decided.
    pub fn after(&self) -> AfterDraft {
        self.after
            .expect("a check is decided by the row after its draft")
    }

    /// The length of the cache that plain decoding would have fed: the last token taken before
    /// the pass and the draft tokens taken, but for the last one when it ended the generation.
    pub fn cache_len(&self) -> usize {
        let ended = matches!(self.after, Some(AfterDraft::Finished(_)));
        self.pos + self.taken + usize::from(!ended)
    }
}

/// A drafter and its limits, kept across generations (a draft model keeps its cache).
///
/// A pass costs more with each row where the model's products are bound by arithmetic rather
/// than by reading the weights (a CPU, a small model), so a draft that fails early wastes the
/// rows after it. The draft's length adapts: after a draft taken whole the next may be twice as
/// long (up to `draft_max`), after one that failed it is one longer than what was taken.
pub struct Speculator<'m> {
    pub drafter: Drafter<'m>,
    /// At most this many draft tokens a pass.
    pub draft_max: usize,
    /// The length of the next draft at most.
    cap: usize,
    draft: Vec<u32>,
}

impl<'m> Speculator<'m> {
    pub fn new(drafter: Drafter<'m>, draft_max: usize) -> Speculator<'m> {
        Speculator {
            drafter,
            draft_max,
            cap: draft_max,
            draft: Vec::new(),
        }
    }

    /// A new sequence: the draft's length starts again from `draft_max` (a draft model keeps
    /// its cache, whose prefix the new sequence may share).
    pub fn restart(&mut self) {
        self.cap = self.draft_max;
    }

    /// Hears how many tokens of the last draft the model drew too.
    pub fn taken(&mut self, taken: usize) {
        self.cap = if taken == self.draft.len() {
            (2 * self.cap).min(self.draft_max)
        } else {
            taken + 1
        };
    }

    /// Up to `max.min(draft_max)` tokens to follow `text` (everything in the sequence so far,
    /// the last token included).
    pub fn propose(&mut self, text: &[u32], max: usize) -> Result<&[u32], ModelError> {
        Speculator::propose_all(&mut [(&mut *self, text, max)])?;
        Ok(&self.draft)
    }

    /// [`Speculator::propose`] for several sequences, each draft then in its speculator
    /// ([`Speculator::draft`]). Those whose drafter is a draft model run their steps together,
    /// one pass for all of them, when they share that model.
    pub fn propose_all(
        jobs: &mut [(&mut Speculator<'m>, &[u32], usize)],
    ) -> Result<(), ModelError> {
        let mut together: Vec<(&mut DraftModel<'m>, &[u32], usize)> = Vec::new();
        let mut outs: Vec<&mut Vec<u32>> = Vec::new();
        let mut alone: Vec<(&mut DraftModel<'m>, &[u32], usize, &mut Vec<u32>)> = Vec::new();
        for (s, text, max) in jobs.iter_mut() {
            let max = (*max).min(s.cap);
            s.draft.clear();
            match &mut s.drafter {
                Drafter::Lookup(l) => l.propose(text, max, &mut s.draft),
                Drafter::Model(m) => {
                    let shared = together
                        .first()
                        .is_none_or(|(first, _, _)| std::ptr::eq(first.model, m.model));
                    if shared {
                        together.push((m, text, max));
                        outs.push(&mut s.draft);
                    } else {
                        alone.push((m, text, max, &mut s.draft));
                    }
                }
            }
        }
        draft_together(&mut together, &mut outs)?;
        for (m, text, max, out) in alone {
            draft_together(&mut [(m, text, max)], &mut [out])?;
        }
        Ok(())
    }

    /// The draft of the last proposal.
    pub fn draft(&self) -> &[u32] {
        &self.draft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(text: &[u32], max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        Lookup::default().propose(text, max, &mut out);
        out
    }

    #[test]
    fn lookup_continues_the_latest_match_of_the_longest_ngram() {
        // "5 6" occurs twice before the end; the latest is followed by 9 9.
        assert_eq!(lookup(&[5, 6, 7, 8, 1, 5, 6, 9, 9, 2, 5, 6], 3), [9, 9, 2]);
        // A longer n-gram wins over a later shorter one: "4 5 6" was followed by 7.
        assert_eq!(lookup(&[4, 5, 6, 7, 8, 3, 5, 6, 1, 4, 5, 6], 2), [7, 8]);
        // No repeated bigram: nothing (single tokens are not looked up by default).
        assert_eq!(lookup(&[1, 2, 3, 1, 4], 4), Vec::<u32>::new());
        assert_eq!(lookup(&[], 4), Vec::<u32>::new());
        assert_eq!(lookup(&[1, 2, 1, 2], 0), Vec::<u32>::new());
    }

    #[test]
    fn lookup_runs_on_into_its_own_draft() {
        // Period 2: the latest "1 2" is two back, followed by "1 2", then by the draft itself.
        assert_eq!(lookup(&[9, 1, 2, 1, 2], 5), [1, 2, 1, 2, 1]);
        // Period 1.
        assert_eq!(lookup(&[3, 7, 7, 7], 4), [7, 7, 7, 7]);
    }

    #[test]
    fn the_draft_grows_when_taken_whole_and_shrinks_to_what_was_taken() {
        let mut s = Speculator::new(Drafter::Lookup(Lookup::default()), 16);
        let text: Vec<u32> = [1, 2, 3].repeat(20);
        let mut lens = Vec::new();
        for taken in [
            usize::MAX,
            2,
            usize::MAX,
            usize::MAX,
            usize::MAX,
            0,
            usize::MAX,
        ] {
            let n = s.propose(&text, 100).unwrap().len();
            lens.push(n);
            s.taken(taken.min(n));
        }
        assert_eq!(lens, [16, 16, 3, 6, 12, 16, 1]);
        // The caller's limit (the context's room, the token budget) comes first.
        assert_eq!(s.propose(&text, 1).unwrap().len(), 1);
    }

    #[test]
    fn stats_summary() {
        let s = SpecStats {
            passes: 4,
            drafted: 20,
            accepted: 10,
        };
        assert_eq!(
            s.summary(),
            "speculation: 20 drafted, 10 accepted (50.0%) in 4 passes, 3.50 tokens a pass"
        );
    }
}
