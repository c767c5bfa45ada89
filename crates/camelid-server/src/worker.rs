//! The batching worker: one thread owns the model and the KV cache of every slot.
//!
//! Continuous batching (as in Orca, Yu et al. 2022, "iteration-level scheduling"): each step is
//! one pass over the weights ([`Model::forward_seqs`]) that advances every active sequence by one
//! token, with chunks of newly admitted prompts riding in the same pass. Requests join between
//! steps, as soon as a slot is free, and leave as soon as they finish; a request whose client
//! went away (its event receiver dropped) is dropped at the start of the next step.
//!
//! Prefix reuse: a slot keeps the tokens whose keys and values are in its cache after its
//! request ends. A new request goes to the free slot sharing the longest prefix with its prompt
//! and computes only the rest: a long system prompt, or a chat that grows turn by turn, is
//! computed once. A prefix held by another slot, busy or free, is copied from its cache
//! ([`Model::copy_prefix`]); so the `n` choices of one request compute their prompt once: the
//! first computes it while the others wait, then each copies it and computes only its last
//! token.
//!
//! Embedding requests ([`crate::embeddings`]) take slots too: their tokens ride in the same
//! passes as prompt chunks, asking for hidden states instead of logits.
//!
//! Constrained decoding: a job whose `params.grammar` is set (a JSON schema, GBNF, a forced
//! tool call) has its own grammar state in its [`Continuation`], which masks that sequence's
//! logits before sampling in the step's callback, so the sequences of one batch each follow
//! their own grammar (or none), and one ends when its grammar is complete.
//!
//! Speculative decoding ([`Speculation`]: `--lookup` or `--model-draft`): a decoding sequence
//! feeds its last token and a draft, by prompt lookup of its own cache or by its slot's state
//! of the draft model (camelid-engine's `speculate`); the pass gives back every
//! row's token or logits, and the sequence's rows are drawn in order in the step's callback,
//! each draft token taken while it is the token drawn ([`DraftCheck`]). The tokens are those
//! of plain decoding (on CUDA up to near-ties, as for any batch there); the cache is cut back
//! to what plain decoding would have fed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camelid_engine::speculate::{AfterDraft, DraftCheck, DraftModel, Drafter, Lookup, Speculator};
use camelid_engine::{Continuation, FinishReason, GenParams};
use camelid_model::llama::MAX_BATCH;
use camelid_model::{Model, ModelError, Next, State, Want};
use camelid_tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::embeddings::{EmbedJob, Embedding};
use crate::metrics::Metrics;

/// What the worker is asked to do.
enum Work {
    Generate(Job),
    Embed(EmbedJob),
}

impl Work {
    fn is_closed(&self) -> bool {
        match self {
            Work::Generate(j) => j.events.is_closed(),
            Work::Embed(j) => j.events.is_closed(),
        }
    }

    fn fail(&self, f: impl Fn() -> Failure) {
        match self {
            Work::Generate(j) => j.send(Event::Failed(f())),
            Work::Embed(j) => j.send(Err(f())),
        }
    }

    /// The tokens a slot's cache may already hold: the slot to pick is the one holding most.
    fn reusable_prefix(&self) -> &[u32] {
        match self {
            Work::Generate(j) if j.cache_prompt => &j.prompt,
            Work::Embed(j) => &j.tokens[..j.reusable()],
            Work::Generate(_) => &[],
        }
    }
}

/// One choice of a request as the worker sees it: tokens in, events out. A request with `n`
/// choices is `n` jobs sharing one event channel, each event tagged with its choice.
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: GenParams,
    /// `Some(k)`: report the log-probability of each generated token and of the `k` most
    /// likely tokens at its position.
    pub logprobs: Option<usize>,
    /// Whether a slot's cached prefix may be reused (llama.cpp's `cache_prompt`).
    pub cache_prompt: bool,
    /// Which choice of its request this is (the `index` of OpenAI's `choices`).
    pub choice: usize,
    pub events: UnboundedSender<(usize, Event)>,
}

impl Job {
    /// Sends an event tagged with the choice; a client that went away is noticed elsewhere.
    fn send(&self, event: Event) {
        let _ = self.events.send((self.choice, event));
    }
}

/// What the worker tells the request's handler.
#[derive(Debug)]
pub enum Event {
    /// Text that is now certain, and the tokens generated since the last event.
    Text {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// The end: why, and the counts for `usage`.
    Done { finish: FinishReason, usage: Usage },
    /// The request could not go on.
    Failed(Failure),
}

#[derive(Debug)]
pub enum Failure {
    ShuttingDown,
    /// A request the handler should have refused (the message is for the client).
    Invalid(String),
    /// Something inside went wrong (logged by the worker).
    Internal,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// One generated token with its log-probability under the model, and the most likely
/// alternatives at its position (most likely first).
#[derive(Clone, Debug)]
pub struct TokenLogprob {
    pub token: Candidate,
    pub top: Vec<Candidate>,
}

#[derive(Clone, Debug)]
pub struct Candidate {
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The handle the HTTP side keeps: a queue into the worker and a way to stop it.
pub struct Worker {
    jobs: Mutex<Option<Sender<Work>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub n_ctx: usize,
    pub n_vocab: usize,
    /// Width of the hidden states (of the embeddings).
    pub d_model: usize,
}

/// Speculative decoding of every decoding request in the worker: drafts of up to `draft_max`
/// tokens, by prompt lookup, or by `draft` (a model of the served model's vocabulary, which the
/// caller checks: `camelid_engine::speculate::check_vocabularies`), greedy while its most
/// likely token has at least `p_min` of the probability.
pub struct Speculation {
    pub draft_max: usize,
    pub draft: Option<Model>,
    pub p_min: f32,
}

impl Worker {
    /// Starts the worker thread with `n_slots` sequences of `n_ctx` tokens each, decoding
    /// speculatively when `spec` says so (a draft model gets a state of `n_ctx` in each slot);
    /// fails when the backend's memory cannot hold their caches.
    pub fn spawn(
        model: Model,
        tok: Arc<Tokenizer>,
        n_slots: usize,
        n_ctx: usize,
        spec: Option<Speculation>,
        metrics: Arc<Metrics>,
    ) -> Result<Worker, ModelError> {
        let states = (0..n_slots)
            .map(|_| model.new_state(n_ctx))
            .collect::<Result<Vec<State>, _>>()?;
        let draft_states = match spec.as_ref().and_then(|s| s.draft.as_ref()) {
            Some(d) => (0..n_slots)
                .map(|_| d.new_state(n_ctx))
                .collect::<Result<Vec<State>, _>>()?,
            None => Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let n_vocab = model.config.n_vocab;
        let d_model = model.config.d_model;
        metrics.slots_total.store(n_slots, Ordering::Relaxed);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("camelid-worker".into())
            .spawn(move || {
                // Each slot's drafter, borrowing the draft model the thread owns.
                let spec = spec.as_ref();
                let mut draft_states = draft_states.into_iter();
                let drafters = (0..n_slots)
                    .map(|_| {
                        let s = spec?;
                        let drafter = match (&s.draft, draft_states.next()) {
                            (Some(m), Some(state)) => {
                                Drafter::Model(DraftModel::with_state(m, state, s.p_min))
                            }
                            _ => Drafter::Lookup(Lookup::default()),
                        };
                        Some(Speculator::new(drafter, s.draft_max))
                    })
                    .collect();
                run(&model, &tok, states, drafters, &rx, &flag, &metrics)
            })
            .expect("spawning the worker thread");
        Ok(Worker {
            jobs: Mutex::new(Some(tx)),
            stop,
            thread: Mutex::new(Some(thread)),
            n_ctx,
            n_vocab,
            d_model,
        })
    }

    /// Hands a job to the worker; false if it has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.send(Work::Generate(job))
    }

    /// Hands one input of an embeddings request to the worker; false if it has stopped.
    pub fn submit_embedding(&self, job: EmbedJob) -> bool {
        self.send(Work::Embed(job))
    }

    fn send(&self, work: Work) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.as_ref().is_some_and(|tx| tx.send(work).is_ok())
    }

    /// Cancels every request (their streams end with an error event) and ends the thread.
    pub fn cancel_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Lets the worker finish what it has, takes no more, and waits for the thread.
    pub fn shutdown(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.cancel_all();
        self.shutdown();
    }
}

/// A sequence slot: its cache, the tokens in it, and the request it serves, if any.
struct Slot<'t> {
    state: State,
    /// Tokens whose keys and values are in `state` (`cached.len() == state.pos`).
    cached: Vec<u32>,
    /// When the slot last served a request: the least recently used free slot is reused first.
    last_used: u64,
    active: Option<Active<'t>>,
    /// An embedding being computed instead (a slot serves one request at a time).
    embedding: Option<Embedding>,
    /// Speculative decoding: the slot's drafter (a draft model's state keeps its prefix from
    /// request to request, as the slot's cache does).
    spec: Option<Speculator<'t>>,
}

impl Slot<'_> {
    fn is_free(&self) -> bool {
        self.active.is_none() && self.embedding.is_none()
    }
}

struct Active<'t> {
    job: Job,
    cont: Continuation<'t>,
    /// Prompt tokens in the cache; the rest is fed in chunks.
    fed: usize,
    /// The last sampled token, fed at the next step.
    next: u32,
    /// Sampled in this step, not yet accepted.
    sampled: Option<(u32, Option<TokenLogprob>)>,
    /// Log-probabilities not yet sent (their text is held back).
    logprobs: Vec<TokenLogprob>,
    cached: usize,
    /// Speculative decoding: the draft of this step being checked, and the text of the draft
    /// tokens taken in it (sent with the step's events).
    check: Option<DraftCheck>,
    text: String,
}

/// The worker's loop: one step of continuous batching per pass, each step in the order of the
/// methods of [`Batcher`].
fn run<'a>(
    model: &'a Model,
    tok: &'a Tokenizer,
    states: Vec<State>,
    drafters: Vec<Option<Speculator<'a>>>,
    rx: &Receiver<Work>,
    stop: &AtomicBool,
    metrics: &'a Metrics,
) {
    let mut b = Batcher::new(model, tok, metrics, states, drafters);
    loop {
        match b.intake(rx, stop) {
            Intake::Closed => return,
            Intake::Nothing => continue,
            Intake::Ready => {}
        }
        if stop.load(Ordering::SeqCst) {
            b.shut_down(rx);
            return;
        }
        b.drop_abandoned();
        b.admit_waiting();
        let t0 = Instant::now();
        if !b.plan_batch() {
            continue;
        }
        match b.forward() {
            Ok(room_left) => {
                let generated = b.accept_sampled(&room_left);
                b.record_step(t0.elapsed(), generated);
            }
            Err(e) => b.fail_batch(&e),
        }
    }
}

/// What [`Batcher::intake`] found.
enum Intake {
    /// Work may be waiting or running: go on with the step.
    Ready,
    /// Nothing arrived while idle: wait again.
    Nothing,
    /// The channel is closed and nothing is left to do: the worker ends.
    Closed,
}

/// The worker's state between steps: the slots, the queue, and the buffers of a batch.
struct Batcher<'a> {
    model: &'a Model,
    tok: &'a Tokenizer,
    metrics: &'a Metrics,
    slots: Vec<Slot<'a>>,
    waiting: VecDeque<Work>,
    /// Counts admissions: a slot's `last_used`.
    clock: u64,
    /// The tokens of this step's pass, every sequence's run of them in `spans`.
    feed: Vec<u32>,
    /// Per slot, where its tokens start in `feed` and how many there are (0: not in the pass).
    spans: Vec<(usize, usize)>,
    rate: RateWindow,
    /// Whether the channel may still bring work.
    open: bool,
    /// Scratch: each slot's tokens, for its drafter.
    texts: Vec<Vec<u32>>,
}

impl<'a> Batcher<'a> {
    /// The batcher of slots in `states`, each with its drafter (`drafters`, one a slot).
    fn new(
        model: &'a Model,
        tok: &'a Tokenizer,
        metrics: &'a Metrics,
        states: Vec<State>,
        drafters: Vec<Option<Speculator<'a>>>,
    ) -> Self {
        let n_slots = states.len();
        let slots = states
            .into_iter()
            .zip(drafters)
            .map(|(state, spec)| Slot {
                state,
                cached: Vec::new(),
                last_used: 0,
                active: None,
                embedding: None,
                spec,
            })
            .collect();
        Batcher {
            model,
            tok,
            metrics,
            slots,
            waiting: VecDeque::new(),
            clock: 0,
            feed: Vec::with_capacity(MAX_BATCH * 2),
            spans: Vec::with_capacity(n_slots),
            rate: RateWindow::default(),
            open: true,
            texts: Vec::new(),
        }
    }

    /// Intake: blocks while there is nothing to do, else takes what arrived without waiting.
    fn intake(&mut self, rx: &Receiver<Work>, stop: &AtomicBool) -> Intake {
        let idle = self.waiting.is_empty() && self.slots.iter().all(Slot::is_free);
        if idle && !stop.load(Ordering::SeqCst) {
            if !self.open {
                return Intake::Closed;
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(job) => self.waiting.push_back(job),
                Err(RecvTimeoutError::Timeout) => return Intake::Nothing,
                Err(RecvTimeoutError::Disconnected) => return Intake::Closed,
            }
        }
        while self.open {
            match rx.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.open = false,
            }
        }
        Intake::Ready
    }

    /// On shutdown, every request still here, queued or running, hears why it ends.
    fn shut_down(&mut self, rx: &Receiver<Work>) {
        let metrics = self.metrics;
        self.waiting.extend(rx.try_iter());
        for job in self.waiting.drain(..) {
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            job.fail(|| Failure::ShuttingDown);
        }
        for slot in &mut self.slots {
            if let Some(a) = slot.active.take() {
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                a.job.send(Event::Failed(Failure::ShuttingDown));
            }
            if let Some(e) = slot.embedding.take() {
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                e.job.send(Err(Failure::ShuttingDown));
            }
        }
    }

    /// Requests whose client went away: dropped from the queue, their slots freed.
    fn drop_abandoned(&mut self) {
        let metrics = self.metrics;
        self.waiting.retain(|job| {
            let gone = job.is_closed();
            if gone {
                metrics.queued.fetch_sub(1, Ordering::Relaxed);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            !gone
        });
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|a| a.job.events.is_closed())
            {
                slot.active = None;
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            if slot
                .embedding
                .as_ref()
                .is_some_and(|e| e.job.events.is_closed())
            {
                slot.embedding = None;
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Admission, first come first served, each to the free slot with the longest shared
    /// prefix (the least recently used among equals). A choice whose sibling is still
    /// computing their prompt waits for it, to copy it then.
    fn admit_waiting(&mut self) {
        let (model, tok, metrics) = (self.model, self.tok, self.metrics);
        let mut k = 0;
        while k < self.waiting.len() {
            if sibling_prefilling(&self.waiting[k], &self.slots) {
                k += 1;
                continue;
            }
            // Without prompt caching, the least recently used slot, whose cache is least
            // likely to serve another request.
            let Some(i) = pick_slot(&self.slots, self.waiting[k].reusable_prefix()) else {
                break;
            };
            let work = self.waiting.remove(k).expect("in the queue");
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            self.clock += 1;
            let slots = &mut self.slots;
            match work {
                Work::Generate(job) => {
                    admit(model, slots, i, job, tok, self.clock, metrics);
                    if let Some(s) = slots[i].spec.as_mut() {
                        s.restart();
                    }
                }
                Work::Embed(job) => admit_embedding(model, slots, i, job, self.clock, metrics),
            }
        }
    }

    /// Each slot's draft for this step, where its sequence is decoding and speculating: after
    /// its cache and the token it feeds, and within its cache, its token budget and a share of
    /// the batch. A draft model's steps run for every slot together. Empty (no allocation) when
    /// no slot speculates.
    fn propose_drafts(&mut self) -> Vec<Option<Vec<u32>>> {
        if self.slots.iter().all(|s| s.spec.is_none()) {
            return Vec::new();
        }
        let n_slots = self.slots.len();
        let decoding = |s: &Slot| {
            s.active
                .as_ref()
                .is_some_and(|a| a.fed == a.job.prompt.len())
        };
        let n_dec = self.slots.iter().filter(|s| decoding(s)).count();
        let share = MAX_BATCH.saturating_sub(n_dec) / n_dec.max(1);
        self.texts.resize_with(n_slots, Vec::new);
        let mut jobs = Vec::new();
        let mut which = Vec::new();
        for (i, (slot, text)) in self.slots.iter_mut().zip(&mut self.texts).enumerate() {
            let Slot {
                spec: Some(s),
                active: Some(a),
                state,
                cached,
                ..
            } = slot
            else {
                continue;
            };
            if a.fed != a.job.prompt.len() {
                continue;
            }
            // The draft must fit in the cache beside the token fed, and in the budget after it.
            let fits = state.n_ctx.saturating_sub(state.pos + 1);
            let max = fits.min(a.cont.tokens_left().saturating_sub(1)).min(share);
            text.clear();
            text.extend_from_slice(cached);
            text.push(a.next);
            jobs.push((s, text.as_slice(), max));
            which.push(i);
        }
        let mut drafts = vec![None; n_slots];
        if let Err(e) = Speculator::propose_all(&mut jobs) {
            // A draft model's failure costs the drafts, not the requests.
            eprintln!("camelid serve: the draft model failed: {e}");
            return drafts;
        }
        for ((s, _, _), i) in jobs.iter().zip(which) {
            drafts[i] = Some(s.draft().to_vec());
        }
        drafts
    }

    /// The batch: every decoding sequence's last token (and its draft, when speculating), then
    /// prompt chunks in the room left. False when there is nothing to compute.
    fn plan_batch(&mut self) -> bool {
        let mut drafts = self.propose_drafts().into_iter();
        let (feed, spans) = (&mut self.feed, &mut self.spans);
        feed.clear();
        spans.clear();
        let mut room = MAX_BATCH;
        for slot in &mut self.slots {
            let draft = drafts.next().flatten().unwrap_or_default();
            match &mut slot.active {
                Some(a) if a.fed == a.job.prompt.len() => {
                    let at = feed.len();
                    feed.push(a.next);
                    room = room.saturating_sub(1);
                    if !draft.is_empty() {
                        feed.extend_from_slice(&draft);
                        room = room.saturating_sub(draft.len());
                        let state = &slot.state;
                        a.check = Some(DraftCheck::new(state.pos, state.n_ctx, draft));
                    }
                    spans.push((at, feed.len() - at));
                }
                _ => spans.push((feed.len(), 0)),
            }
        }
        // A prompt always gets some room, so many decoding sequences cannot starve it.
        let mut room = room.max(MAX_BATCH / 4);
        for (slot, span) in self.slots.iter_mut().zip(spans.iter_mut()) {
            let pending = match (&mut slot.active, &mut slot.embedding) {
                (Some(a), _) => Some((&a.job.prompt, &mut a.fed)),
                (None, Some(e)) => Some((&e.job.tokens, &mut e.fed)),
                (None, None) => None,
            };
            if let Some((prompt, fed)) = pending
                && *fed < prompt.len()
                && room > 0
            {
                let n = (prompt.len() - *fed).min(room);
                *span = (feed.len(), n);
                feed.extend_from_slice(&prompt[*fed..*fed + n]);
                *fed += n;
                room -= n;
            }
        }
        !feed.is_empty()
    }

    /// One pass over the weights for the planned batch. A generating sequence samples its next
    /// token in the pass (not yet accepted); an embedding adds its hidden states to its pooler.
    /// Returns, per generating sequence, whether its cache has room for another token.
    fn forward(&mut self) -> Result<Vec<bool>, ModelError> {
        let n_slots = self.slots.len();
        let (feed, tok) = (&self.feed, self.tok);
        let mut states: Vec<&mut State> = Vec::with_capacity(n_slots);
        let mut actives: Vec<&mut Active> = Vec::with_capacity(n_slots);
        let mut tokens: Vec<&[u32]> = Vec::with_capacity(n_slots);
        // Embedding sequences go after the generation ones (sequence `n_gen + j` is
        // `embeds[j]`), so that `actives[i]` is sequence `i`.
        let (mut e_states, mut embeds, mut e_tokens) = (Vec::new(), Vec::new(), Vec::new());
        for (slot, &(at, n)) in self.slots.iter_mut().zip(&self.spans) {
            if n == 0 {
                continue;
            }
            let Slot {
                state,
                cached,
                active,
                embedding,
                ..
            } = slot;
            cached.extend_from_slice(&feed[at..at + n]);
            if let Some(a) = active.as_mut() {
                states.push(state);
                actives.push(a);
                tokens.push(&feed[at..at + n]);
            } else if let Some(e) = embedding.as_mut() {
                e_states.push(state);
                embeds.push(e);
                e_tokens.push(&feed[at..at + n]);
            }
        }
        let n_gen = states.len();
        states.append(&mut e_states);
        tokens.append(&mut e_tokens);
        // A sequence that samples greedily (and wants no log-probabilities) asks for its next
        // token alone: a GPU then copies back one number rather than the vocabulary's logits.
        // A sequence checking a draft wants every row's: token or logits likewise.
        let wants: Vec<Want> = actives
            .iter()
            .map(|a| {
                let greedy = a.job.logprobs.is_none() && a.cont.is_greedy();
                match (greedy, a.check.is_some()) {
                    (true, false) => Want::Token,
                    (false, false) => Want::Logits,
                    (true, true) => Want::Tokens,
                    (false, true) => Want::AllLogits,
                }
            })
            .chain(std::iter::repeat_n(Want::Hidden, embeds.len()))
            .collect();
        let want = |i: usize| wants[i];
        let on_hidden = |i: usize, pos: usize, h: &[f32]| embeds[i - n_gen].pooler.add(pos, h);
        let result = self.model.forward_batch_rows(
            &mut states,
            &tokens,
            want,
            |rows| sample_rows(tok, &mut actives, rows),
            on_hidden,
        );
        let room_left = states.iter().map(|s| s.pos < s.n_ctx).collect();
        self.metrics.steps.fetch_add(1, Ordering::Relaxed);
        result.map(|()| room_left)
    }

    /// A failed pass (not expected: lengths and ids are checked on admission) fails the
    /// requests in the slots and forgets the slots' caches, whose contents are now unknown.
    fn fail_batch(&mut self, e: &ModelError) {
        eprintln!("camelid serve: forward pass failed: {e}");
        let metrics = self.metrics;
        for slot in &mut self.slots {
            if let Some(a) = slot.active.take() {
                a.job.send(Event::Failed(Failure::Internal));
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(e) = slot.embedding.take() {
                e.job.send(Err(Failure::Internal));
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
            }
            slot.cached.clear();
            slot.state.pos = 0;
        }
    }

    /// Each sampled token: text, stop conditions, events; embeddings whose last tokens were in
    /// the pass are sent. Returns the tokens generated.
    fn accept_sampled(&mut self, room_left: &[bool]) -> usize {
        let metrics = self.metrics;
        let mut generated = 0;
        let mut r = 0;
        for (slot, &(_, n)) in self.slots.iter_mut().zip(&self.spans) {
            if n == 0 {
                continue;
            }
            if slot.embedding.is_some() {
                finish_embedding(slot, metrics);
                continue;
            }
            let mut room = room_left[r];
            r += 1;
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            // A checked draft: the tokens taken are, and the cache keeps what plain decoding
            // would have fed.
            let mut text = std::mem::take(&mut a.text);
            let mut finish = None;
            if let Some(check) = a.check.take() {
                let taken = check.taken();
                generated += taken;
                metrics
                    .draft_tokens
                    .fetch_add(check.draft().len() as u64, Ordering::Relaxed);
                metrics
                    .draft_tokens_accepted
                    .fetch_add(taken as u64, Ordering::Relaxed);
                if let Some(s) = slot.spec.as_mut() {
                    s.taken(taken);
                }
                slot.state.pos = check.cache_len();
                slot.cached.truncate(slot.state.pos);
                room = slot.state.pos < slot.state.n_ctx;
                if let AfterDraft::Finished(f) = check.after() {
                    finish = Some(f);
                }
            }
            let sampled = a.sampled.take();
            let drew = sampled.is_some();
            if let Some((t, lp)) = sampled {
                generated += 1;
                finish = a.cont.accept(t, room, &mut |s| text.push_str(s));
                a.logprobs.extend(lp);
                a.next = t;
            }
            if !drew && finish.is_none() {
                continue;
            }
            if !text.is_empty() || (finish.is_some() && !a.logprobs.is_empty()) {
                let logprobs = std::mem::take(&mut a.logprobs);
                a.job.send(Event::Text { text, logprobs });
            }
            if let Some(finish) = finish {
                let usage = Usage {
                    prompt_tokens: a.job.prompt.len(),
                    cached_tokens: a.cached,
                    completion_tokens: a.cont.tokens().len(),
                };
                // Counters first: a client that saw its end sees them updated.
                metrics
                    .completion_tokens
                    .fetch_add(usage.completion_tokens as u64, Ordering::Relaxed);
                metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
                a.job.send(Event::Done { finish, usage });
                slot.active = None;
            }
        }
        generated
    }

    /// The step's compute time and the recent generation rate, for /metrics.
    fn record_step(&mut self, busy: Duration, generated: usize) {
        let metrics = self.metrics;
        metrics
            .busy_us
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        if let Some(r) = self.rate.add(generated, busy) {
            metrics
                .recent_tokens_per_s
                .store(r.to_bits(), Ordering::Relaxed);
        }
    }
}

/// The free slot for a prompt: the longest cached prefix, then the least recently used.
fn pick_slot(slots: &[Slot], prompt: &[u32]) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_free())
        .max_by_key(|(_, s)| {
            (
                common_prefix(&s.cached, prompt),
                std::cmp::Reverse(s.last_used),
            )
        })
        .map(|(i, _)| i)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn admit<'t>(
    model: &Model,
    slots: &mut [Slot<'t>],
    i: usize,
    job: Job,
    tok: &'t Tokenizer,
    clock: u64,
    metrics: &Metrics,
) {
    let cont = match Continuation::new(tok, &job.prompt, &job.params) {
        Ok(c) => c,
        Err(e) => {
            // The handler checks these before enqueueing; say so if one slipped through.
            job.send(Event::Failed(Failure::Invalid(e.to_string())));
            return;
        }
    };
    // Keep the shared prefix, but recompute at least the prompt's last token: its logits give
    // the first generated token.
    let keep = if job.cache_prompt {
        reuse_prefix(model, slots, i, &job.prompt[..job.prompt.len() - 1])
    } else {
        reuse_prefix(model, slots, i, &[])
    };
    let slot = &mut slots[i];
    slot.last_used = clock;
    metrics
        .prompt_tokens
        .fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
    metrics
        .prompt_tokens_cached
        .fetch_add(keep as u64, Ordering::Relaxed);
    metrics.slots_busy.fetch_add(1, Ordering::Relaxed);
    slot.active = Some(Active {
        job,
        cont,
        fed: keep,
        next: 0,
        sampled: None,
        logprobs: Vec::new(),
        cached: keep,
        check: None,
        text: String::new(),
    });
}

/// Makes slot `i` hold the longest prefix of `prefix` that any slot's cache holds: its own, or
/// a copy of another's (busy or free); returns its length. The slot's cache is cut there.
fn reuse_prefix(model: &Model, slots: &mut [Slot], i: usize, prefix: &[u32]) -> usize {
    let own = common_prefix(&slots[i].cached, prefix);
    let best = (0..slots.len())
        .filter(|&j| j != i)
        .map(|j| (common_prefix(&slots[j].cached, prefix), j))
        .max();
    let keep = match best {
        Some((len, j)) if len > own => {
            let (src, dst) = if j < i {
                let (a, b) = slots.split_at_mut(i);
                (&a[j], &mut b[0])
            } else {
                let (a, b) = slots.split_at_mut(j);
                (&b[0], &mut a[i])
            };
            match model.copy_prefix(&src.state, &mut dst.state, len) {
                Ok(()) => {
                    dst.cached.clear();
                    dst.cached.extend_from_slice(&src.cached[..len]);
                    len
                }
                Err(e) => {
                    // Not expected (the states are this model's and the lengths fit): compute
                    // the prefix instead.
                    eprintln!("camelid serve: copying a cached prefix failed: {e}");
                    own
                }
            }
        }
        _ => own,
    };
    let slot = &mut slots[i];
    slot.cached.truncate(keep);
    slot.state.pos = keep;
    keep
}

/// Whether `work` is a choice of a request whose other choice is computing their prompt in a
/// slot: it waits, then copies the prompt from that slot instead of computing it again.
fn sibling_prefilling(work: &Work, slots: &[Slot]) -> bool {
    let Work::Generate(job) = work else {
        return false;
    };
    job.cache_prompt
        && slots.iter().any(|s| {
            s.active.as_ref().is_some_and(|a| {
                a.job.events.same_channel(&job.events) && a.fed < a.job.prompt.len()
            })
        })
}

fn admit_embedding(
    model: &Model,
    slots: &mut [Slot],
    i: usize,
    job: EmbedJob,
    clock: u64,
    metrics: &Metrics,
) {
    let keep = reuse_prefix(model, slots, i, &job.tokens[..job.reusable()]);
    let slot = &mut slots[i];
    slot.last_used = clock;
    metrics
        .prompt_tokens
        .fetch_add(job.tokens.len() as u64, Ordering::Relaxed);
    metrics
        .prompt_tokens_cached
        .fetch_add(keep as u64, Ordering::Relaxed);
    metrics.slots_busy.fetch_add(1, Ordering::Relaxed);
    slot.embedding = Some(Embedding::new(job, keep, model.config.d_model));
}

/// Sends an embedding whose last tokens were in this step's pass, and frees its slot.
fn finish_embedding(slot: &mut Slot, metrics: &Metrics) {
    if slot
        .embedding
        .as_ref()
        .is_some_and(|e| e.fed == e.job.tokens.len())
        && let Some(e) = slot.embedding.take()
    {
        metrics.slots_busy.fetch_sub(1, Ordering::Relaxed);
        e.job.send(Ok(e.pooler.finish()));
    }
}

/// Samples the next token of each generating sequence in `rows` (`(i, next)`: `actives[i]`;
/// a sequence checking a draft has a row per token, in order), spread over the machine's cores
/// when there is enough to share: a sequence's draw takes up to a millisecond or two on a 128K
/// vocabulary, and 32 of them one after the other would take longer than a GPU's whole
/// decoding step. Each sequence keeps its own sampler, so the tokens drawn do not depend on
/// the split.
fn sample_rows(tok: &Tokenizer, actives: &mut [&mut Active], rows: &[(usize, Next<'_>)]) {
    let mut work: Vec<(&mut Active, &[(usize, Next<'_>)])> = Vec::with_capacity(rows.len());
    let mut slots: Vec<Option<&mut Active>> = actives.iter_mut().map(|a| Some(&mut **a)).collect();
    // A sequence's rows are next to each other (they are all of one kind, and each kind comes
    // in batch order).
    for run in rows.chunk_by(|x, y| x.0 == y.0) {
        // Mid-prompt: these logits predict a token the prompt already has.
        match slots.get_mut(run[0].0).and_then(Option::take) {
            Some(a) if a.fed >= a.job.prompt.len() => work.push((a, run)),
            _ => {}
        }
    }
    let one = |(a, run): (&mut Active, &[(usize, Next<'_>)])| {
        for &(_, next) in run {
            if a.check.as_ref().is_some_and(DraftCheck::is_decided) {
                break;
            }
            // The greedy pick, made by the model (`Want::Token(s)`): what sampling would take.
            let (t, logits) = match next {
                Next::Token(t) => (t, None),
                Next::Logits(logits) => (a.cont.sample(logits), Some(logits)),
            };
            let lp = logits.and_then(|l| a.job.logprobs.map(|k| logprobs(tok, l, t, k)));
            let Some(check) = a.check.as_mut() else {
                a.sampled = Some((t, lp));
                break;
            };
            let text = &mut a.text;
            check.row(t, &mut a.cont, &mut |s| text.push_str(s));
            match check.is_decided().then(|| check.after()) {
                // Drawn where the draft was wrong (or past its end): taken as a plain step's.
                Some(AfterDraft::Next(_)) => a.sampled = Some((t, lp)),
                // A draft token, taken.
                _ => a.logprobs.extend(lp),
            }
        }
    };
    let vocab = rows.iter().find_map(|(_, n)| match n {
        Next::Logits(l) => Some(l.len()),
        Next::Token(_) => None,
    });
    let logit_rows = rows
        .iter()
        .filter(|(_, n)| matches!(n, Next::Logits(_)))
        .count();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below this many logits in all, a thread's start costs more than it saves.
    const PER_THREAD: usize = 1 << 16;
    let threads = threads
        .min(logit_rows * vocab.unwrap_or(0) / PER_THREAD)
        .min(work.len())
        .max(1);
    if threads == 1 {
        work.into_iter().for_each(one);
        return;
    }
    let per = work.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut rest = work;
        while rest.len() > per {
            let tail = rest.split_off(per);
            let part = std::mem::replace(&mut rest, tail);
            s.spawn(move || part.into_iter().for_each(one));
        }
        rest.into_iter().for_each(one);
    });
}

/// The log-probability of `chosen` and the `k` most likely tokens, under the model's
/// distribution (log-softmax of the raw logits, before any sampling setting).
fn logprobs(tok: &Tokenizer, logits: &[f32], chosen: u32, k: usize) -> TokenLogprob {
    let lse = camelid_engine::eval::log_sum_exp(logits);
    let cand = |id: u32| {
        let bytes = tok.token_bytes(id).unwrap_or_default().to_vec();
        Candidate {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob: (logits[id as usize] as f64 - lse) as f32,
        }
    };
    // The k largest, kept sorted descending while scanning once.
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if top.len() < k || l > top[top.len() - 1].0 {
                let at = top.partition_point(|&(v, _)| v >= l);
                top.insert(at, (l, i as u32));
                top.truncate(k);
            }
        }
    }
    TokenLogprob {
        token: cand(chosen),
        top: top.iter().map(|&(_, id)| cand(id)).collect(),
    }
}

/// Tokens per second of compute over windows of about two seconds of work.
#[derive(Default)]
struct RateWindow {
    tokens: usize,
    time: Duration,
}

impl RateWindow {
    fn add(&mut self, tokens: usize, time: Duration) -> Option<f64> {
        self.tokens += tokens;
        self.time += time;
        if self.time < Duration::from_secs(2) {
            return None;
        }
        let r = self.tokens as f64 / self.time.as_secs_f64();
        *self = RateWindow::default();
        Some(r)
    }
}
