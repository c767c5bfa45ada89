//! Counters shared by the HTTP side and the worker, rendered in Prometheus' text format
//! (exposition format 0.0.4: `# HELP`, `# TYPE`, then `name{labels} value` lines).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub requests_chat: AtomicU64,
    pub requests_completions: AtomicU64,
    pub requests_embeddings: AtomicU64,
    /// Requests answered with an error status.
    pub errors: AtomicU64,
    /// Requests ended because their client went away (or the server shut down).
    pub cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens whose keys and values were found in a slot's cache, not recomputed.
    pub prompt_tokens_cached: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Requests accepted but not yet given a slot.
    pub queued: AtomicUsize,
    pub slots_busy: AtomicUsize,
    pub slots_total: AtomicUsize,
    /// Forward passes of the worker (each serves every active sequence).
    pub steps: AtomicU64,
    /// Time the worker spent in forward passes and sampling, in microseconds.
    pub busy_us: AtomicU64,
    /// Generated tokens per second of worker time over the last few seconds of work (f64 bits).
    pub recent_tokens_per_s: AtomicU64,
    /// Speculative decoding: draft tokens checked, and those taken.
    pub draft_tokens: AtomicU64,
    pub draft_tokens_accepted: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let u = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "camelid_requests_total",
            "counter",
            "Requests received, by endpoint.",
            &[
                (
                    "{endpoint=\"chat_completions\"}",
                    g(&self.requests_chat).to_string(),
                ),
                (
                    "{endpoint=\"completions\"}",
                    g(&self.requests_completions).to_string(),
                ),
                (
                    "{endpoint=\"embeddings\"}",
                    g(&self.requests_embeddings).to_string(),
                ),
            ],
        );
        let one = |v: String| [("", v)];
        metric(
            "camelid_request_errors_total",
            "counter",
            "Requests answered with an error status.",
            &one(g(&self.errors).to_string()),
        );
        metric(
            "camelid_requests_cancelled_total",
            "counter",
            "Requests cancelled because the client disconnected or the server shut down.",
            &one(g(&self.cancelled).to_string()),
        );
        metric(
            "camelid_prompt_tokens_total",
            "counter",
            "Prompt tokens of admitted requests.",
            &one(g(&self.prompt_tokens).to_string()),
        );
        metric(
            "camelid_prompt_tokens_cached_total",
            "counter",
            "Prompt tokens reused from a slot's KV cache instead of recomputed.",
            &one(g(&self.prompt_tokens_cached).to_string()),
        );
        metric(
            "camelid_completion_tokens_total",
            "counter",
            "Tokens generated.",
            &one(g(&self.completion_tokens).to_string()),
        );
        metric(
            "camelid_draft_tokens_total",
            "counter",
            "Draft tokens of speculative decoding checked by the model.",
            &one(g(&self.draft_tokens).to_string()),
        );
        metric(
            "camelid_draft_tokens_accepted_total",
            "counter",
            "Draft tokens of speculative decoding that the model drew too.",
            &one(g(&self.draft_tokens_accepted).to_string()),
        );
        metric(
            "camelid_queue_length",
            "gauge",
            "Requests waiting for a slot.",
            &one(u(&self.queued).to_string()),
        );
        metric(
            "camelid_slots_busy",
            "gauge",
            "Slots serving a request.",
            &one(u(&self.slots_busy).to_string()),
        );
        metric(
            "camelid_slots_total",
            "gauge",
            "Slots (sequences decoded together).",
            &one(u(&self.slots_total).to_string()),
        );
        metric(
            "camelid_decode_steps_total",
            "counter",
            "Forward passes of the batching worker.",
            &one(g(&self.steps).to_string()),
        );
        metric(
            "camelid_busy_seconds_total",
            "counter",
            "Seconds the worker spent computing.",
            &one(format!("{:.6}", g(&self.busy_us) as f64 / 1e6)),
        );
        metric(
            "camelid_tokens_per_second",
            "gauge",
            "Generated tokens per second of compute over the last few seconds of work.",
            &one(format!(
                "{:.3}",
                f64::from_bits(g(&self.recent_tokens_per_s))
            )),
        );
        out
    }
}
