//! The access log: one line per request, in text or JSON, when the request is over.
//!
//! The middleware gives each request a [`Record`] (a request extension); handlers that run the
//! model fill in the token counts. The line is written when the last holder drops the record:
//! the middleware, once the response's head is out, for an answer sent whole; the event
//! stream, after its last event (or when the client leaves), for a streamed one, so that the
//! time and the counts cover the whole generation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use camelid_engine::chat::civil_from_days;
use serde_json::json;

use crate::AppState;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-05-01T12:00:00.123Z POST /v1/completions 200 prompt=5 completion=16 412.7ms`
    Text,
    /// `{"time": ..., "method": ..., "path": ..., "status": ..., "prompt_tokens": ...,
    /// "completion_tokens": ..., "ms": ...}`
    Json,
}

/// Where the lines go: stderr, or a function (tests read the log this way).
#[derive(Clone)]
pub struct LogSink(Arc<dyn Fn(&str) + Send + Sync>);

impl LogSink {
    pub fn stderr() -> LogSink {
        LogSink(Arc::new(|line| eprintln!("{line}")))
    }

    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> LogSink {
        LogSink(Arc::new(f))
    }

    /// A sink that keeps the lines, and the list they go to.
    pub fn memory() -> (LogSink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let to = lines.clone();
        let sink = LogSink::new(move |l| {
            to.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(l.to_string())
        });
        (sink, lines)
    }
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

/// How requests are logged.
#[derive(Clone, Debug)]
pub struct AccessLog {
    pub format: LogFormat,
    pub sink: LogSink,
}

/// One request's line, written on drop. A stream's counts stay 0 if its client leaves before
/// the end (the usage of a generation cut short is never known to the handler).
pub struct Record {
    log: Option<AccessLog>,
    arrived: SystemTime,
    start: Instant,
    method: String,
    path: String,
    status: AtomicU16,
    prompt_tokens: AtomicUsize,
    completion_tokens: AtomicUsize,
}

impl Record {
    /// The token counts of the request, summed over its choices.
    pub fn set_tokens(&self, prompt: usize, completion: usize) {
        self.prompt_tokens.store(prompt, Ordering::Relaxed);
        self.completion_tokens.store(completion, Ordering::Relaxed);
    }

    fn line(&self, format: LogFormat) -> String {
        let time = rfc3339(self.arrived);
        let ms = (self.start.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        let status = self.status.load(Ordering::Relaxed);
        let prompt = self.prompt_tokens.load(Ordering::Relaxed);
        let completion = self.completion_tokens.load(Ordering::Relaxed);
        match format {
            LogFormat::Text => format!(
                "{time} {} {} {status} prompt={prompt} completion={completion} {ms:.1}ms",
                self.method, self.path
            ),
            LogFormat::Json => json!({
                "time": time,
                "method": self.method,
                "path": self.path,
                "status": status,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "ms": ms,
            })
            .to_string(),
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            (log.sink.0)(&self.line(log.format));
        }
    }
}

/// The middleware: a record for every request, whatever answers it.
pub async fn layer(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let rec = Arc::new(Record {
        log: s.inner.config.access_log.clone(),
        arrived: SystemTime::now(),
        start: Instant::now(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        // nginx's 499 until an answer exists: if this future is dropped before one does, the
        // client closed the connection while its request was being handled.
        status: AtomicU16::new(499),
        prompt_tokens: AtomicUsize::new(0),
        completion_tokens: AtomicUsize::new(0),
    });
    req.extensions_mut().insert(rec.clone());
    let resp = next.run(req).await;
    rec.status.store(resp.status().as_u16(), Ordering::Relaxed);
    resp
}

/// `2026-05-01T12:00:00.123Z` (UTC, milliseconds).
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year), 23:59:59.
        assert_eq!(at(951_868_799, 5), "2000-02-29T23:59:59.005Z");
        assert_eq!(at(1_767_225_600, 123), "2026-01-01T00:00:00.123Z");
    }
}
