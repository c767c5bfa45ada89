//! camelid-server: an OpenAI-compatible HTTP server over one model.
//!
//! The async side is thin: handlers check the key, parse the body, tokenize on tokio's blocking
//! pool, enqueue a [`worker::Job`] and turn the worker's events into a JSON answer or a stream
//! of server-sent events. One dedicated thread ([`worker`]) owns the model and every sequence's
//! KV cache, and decodes all active requests together (continuous batching), reusing cached
//! prompt prefixes. Endpoints:
//!
//! - `POST /v1/chat/completions`, `POST /v1/completions` (with `"stream": true` as
//!   server-sent events ending in `data: [DONE]`);
//! - `GET /v1/models`, `GET /v1/models/{id}`;
//! - `GET /health`, `GET /metrics` (Prometheus text).
//!
//! [`router`] builds the whole service without a socket (tests drive it with
//! `tower::ServiceExt::oneshot`); [`serve`] binds it and handles SIGINT/SIGTERM.

mod api;
mod error;
mod metrics;
pub mod worker;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use camelid_engine::chat::{ChatTemplate, Message};
use camelid_model::Model;
use camelid_model::sampling::SamplingHints;
use camelid_tokenizer::Tokenizer;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

pub use error::ApiError;
pub use metrics::Metrics;

use api::{ChatRequest, CompletionRequest, Prompt, Reply};
use worker::{Event, Failure, Job, Worker};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name clients use in `model`, listed by `/v1/models`.
    pub model_id: String,
    /// When set, `/v1/*` needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Sequences decoded together, each with its own KV cache.
    pub n_slots: usize,
    /// Context length of each slot.
    pub n_ctx: usize,
    /// Requests that may wait for a slot; beyond this the server answers 503.
    pub max_queue: usize,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    /// Interval of the keep-alive comments on idle event streams.
    pub keep_alive: Duration,
    /// The model's recommended sampling: defaults for the fields a request leaves out.
    pub sampling: SamplingHints,
}

impl ServerConfig {
    pub fn new(model_id: impl Into<String>, n_ctx: usize) -> ServerConfig {
        ServerConfig {
            model_id: model_id.into(),
            api_key: None,
            n_slots: 4,
            n_ctx,
            max_queue: 64,
            body_limit: 4 << 20,
            keep_alive: Duration::from_secs(10),
            sampling: SamplingHints::default(),
        }
    }
}

/// What the handlers share: configuration, tokenizer, chat template, the worker, counters.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    tok: Arc<Tokenizer>,
    template: Option<Arc<ChatTemplate>>,
    worker: Worker,
    metrics: Arc<Metrics>,
    created: u64,
    next_id: AtomicU64,
}

impl AppState {
    /// Starts the worker thread, which takes the model; fails when the backend's memory cannot
    /// hold the slots' caches.
    pub fn new(
        model: Model,
        tok: Tokenizer,
        config: ServerConfig,
    ) -> Result<AppState, camelid_model::ModelError> {
        let tok = Arc::new(tok);
        let metrics = Arc::new(Metrics::default());
        let template = ChatTemplate::for_tokenizer(&tok).map(Arc::new);
        let worker = Worker::spawn(
            model,
            tok.clone(),
            config.n_slots.max(1),
            config.n_ctx,
            metrics.clone(),
        )?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                tok,
                template,
                worker,
                metrics,
                created: unix_now(),
                next_id: AtomicU64::new(1),
            }),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Ends every request in flight: streams get an error event and `[DONE]`.
    pub fn cancel_all(&self) {
        self.inner.worker.cancel_all();
    }

    /// Takes no more requests, lets the worker finish what it has, and waits for it.
    pub fn shutdown(&self) {
        self.inner.worker.shutdown();
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.inner.config.api_key else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => Err(ApiError::unauthorized(false)),
            Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::unauthorized(true)),
        }
    }

    fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if model == self.inner.config.model_id {
            Ok(())
        } else {
            Err(ApiError::unknown_model(model))
        }
    }

    fn body(&self, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
        body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(self.inner.config.body_limit)
            } else {
                ApiError::invalid(None, "The request body could not be read.")
            }
        })
    }

    fn reply(&self, chat: bool, logprobs: bool) -> Reply {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Reply {
            chat,
            id: format!(
                "{}-{:x}{n:06x}",
                if chat { "chatcmpl" } else { "cmpl" },
                self.inner.created
            ),
            created: unix_now(),
            model: self.inner.config.model_id.clone(),
            logprobs,
        }
    }

    /// Checks the prompt against the context, enqueues it and answers: a stream, or the whole
    /// result once done.
    async fn generate(&self, prompt: Vec<u32>, req: Generate) -> Result<Response, ApiError> {
        let n_ctx = self.inner.worker.n_ctx;
        let n_vocab = self.inner.worker.n_vocab;
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                Some(req.param),
                "The prompt is empty (no tokens to start from).",
            ));
        }
        if prompt.len() >= n_ctx {
            return Err(ApiError::context_exceeded(req.param, prompt.len(), n_ctx));
        }
        if let Some(&t) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ApiError::invalid(
                Some(req.param),
                format!("Token id {t} is outside the vocabulary of {n_vocab} tokens."),
            ));
        }
        let m = &self.inner.metrics;
        let queued = m.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= self.inner.config.max_queue {
            m.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::overloaded(queued));
        }
        let (tx, rx) = unbounded_channel();
        let job = Job {
            prompt,
            params: req.params,
            logprobs: req.logprobs,
            events: tx,
        };
        if !self.inner.worker.submit(job) {
            m.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::shutting_down());
        }
        if req.stream {
            Ok(stream(
                rx,
                req.reply,
                req.include_usage,
                self.inner.config.keep_alive,
            ))
        } else {
            collect(rx, &req.reply).await
        }
    }
}

/// A request ready for the worker, with how to answer it.
struct Generate {
    /// The request field holding the prompt, named in errors.
    param: &'static str,
    params: camelid_engine::GenParams,
    logprobs: Option<usize>,
    reply: Reply,
    stream: bool,
    include_usage: bool,
}

/// The whole service. Routes outside it, or with the wrong method, get OpenAI-shaped errors.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.config.body_limit;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model_info))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Binds `addr`, calls `on_ready` with the bound address, and serves until SIGINT or SIGTERM.
/// Then it takes no new connections, lets in-flight requests finish for up to `grace` (and
/// cancels those still running after that), stops the worker, and returns.
pub fn serve(
    state: AppState,
    addr: SocketAddr,
    grace: Duration,
    on_ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("camelid-http")
        .enable_all()
        .build()?;
    let app = router(state.clone());
    let for_signal = state.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                eprintln!(
                    "camelid serve: shutting down; finishing requests in flight (for at most {} s)",
                    grace.as_secs_f64()
                );
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    for_signal.cancel_all();
                });
            })
            .await
    })?;
    drop(rt);
    state.shutdown();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares keys in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Counts the error, if it is one, and renders it.
fn respond(state: &AppState, r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| {
        state.inner.metrics.errors.fetch_add(1, Ordering::Relaxed);
        e.into_response()
    })
}

async fn health(State(s): State<AppState>) -> Response {
    let m = &s.inner.metrics;
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "slots_busy": m.slots_busy.load(Ordering::Relaxed),
            "slots_total": m.slots_total.load(Ordering::Relaxed),
            "queue": m.queued.load(Ordering::Relaxed),
        }),
    )
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.inner.metrics.render(),
    )
        .into_response()
}

fn model_json(s: &AppState) -> Value {
    json!({
        "id": s.inner.config.model_id,
        "object": "model",
        "created": s.inner.created,
        "owned_by": "camelid",
    })
}

async fn models(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r = s.authorize(&headers).map(|()| {
        json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [model_json(&s)]}),
        )
    });
    respond(&s, r)
}

async fn model_info(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = s
        .authorize(&headers)
        .and_then(|()| s.check_model(&id))
        .map(|()| json_response(StatusCode::OK, &model_json(&s)));
    respond(&s, r)
}

async fn not_found(State(s): State<AppState>, uri: Uri) -> Response {
    respond(&s, Err(ApiError::not_found(uri.path())))
}

async fn method_not_allowed(State(s): State<AppState>) -> Response {
    respond(&s, Err(ApiError::method_not_allowed()))
}

async fn chat(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    s.inner
        .metrics
        .requests_chat
        .fetch_add(1, Ordering::Relaxed);
    let r = chat_inner(&s, &headers, body).await;
    respond(&s, r)
}

async fn chat_inner(
    s: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    s.authorize(headers)?;
    let body = s.body(body)?;
    let req: ChatRequest = api::parse(&body)?;
    s.check_model(&req.common.model)?;
    let max = req.max_completion_tokens.or(req.common.max_tokens);
    let param = if req.max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    // No budget: until an end-of-turn token or a full context.
    let params = api::gen_params(&req.common, &s.inner.config.sampling, max, usize::MAX).map_err(
        |mut e| {
            if e.param.as_deref() == Some("max_tokens") {
                e.param = Some(param.into());
                e.message = e.message.replace("max_tokens", param);
            }
            e
        },
    )?;
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (true, Some(k)) if k > 20 => {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                format!("top_logprobs must be between 0 and 20, got {k}."),
            ));
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                "top_logprobs needs logprobs to be true.",
            ));
        }
        (false, _) => None,
    };
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must hold at least one message.",
        ));
    }
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| Ok(Message::new(m.role.clone(), m.text(i)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let template = s.inner.template.clone().ok_or_else(|| {
        ApiError::invalid(
            None,
            "This model has no chat template; use /v1/completions with a prompt.",
        )
    })?;
    let tok = s.inner.tok.clone();
    let prompt = tokio::task::spawn_blocking(move || template.encode(&tok, &messages, true))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    let stream = req.common.stream.unwrap_or(false);
    let include_usage = req
        .common
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let g = Generate {
        param: "messages",
        params,
        logprobs,
        reply: s.reply(true, logprobs.is_some()),
        stream,
        include_usage,
    };
    s.generate(prompt, g).await
}

async fn completions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    s.inner
        .metrics
        .requests_completions
        .fetch_add(1, Ordering::Relaxed);
    let r = completions_inner(&s, &headers, body).await;
    respond(&s, r)
}

async fn completions_inner(
    s: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    s.authorize(headers)?;
    let body = s.body(body)?;
    let req: CompletionRequest = api::parse(&body)?;
    s.check_model(&req.common.model)?;
    // OpenAI's default budget for completions is 16 tokens.
    let params = api::gen_params(
        &req.common,
        &s.inner.config.sampling,
        req.common.max_tokens,
        16,
    )?;
    let logprobs = match req.logprobs {
        Some(k) if k > 5 => {
            return Err(ApiError::invalid(
                Some("logprobs"),
                format!("logprobs must be between 0 and 5, got {k}."),
            ));
        }
        k => k.map(|k| k as usize),
    };
    if req.echo == Some(true) {
        return Err(ApiError::invalid(Some("echo"), "echo is not supported."));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            Some("suffix"),
            "suffix is not supported.",
        ));
    }
    if req.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid(
            Some("best_of"),
            "This server generates one choice per request; best_of must be 1.",
        ));
    }
    let prompt = match req.prompt()? {
        Prompt::Tokens(ids) => ids,
        Prompt::Text(text) => {
            let tok = s.inner.tok.clone();
            // Special tokens in the text are parsed, so a prompt may spell out a chat format.
            tokio::task::spawn_blocking(move || tok.encode(&text, tok.add_bos_default(), true))
                .await
                .map_err(ApiError::internal)?
        }
    };
    let stream = req.common.stream.unwrap_or(false);
    let include_usage = req
        .common
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let g = Generate {
        param: "prompt",
        params,
        logprobs,
        reply: s.reply(false, logprobs.is_some()),
        stream,
        include_usage,
    };
    s.generate(prompt, g).await
}

fn failure(f: Failure) -> ApiError {
    match f {
        Failure::ShuttingDown => ApiError::shutting_down(),
        Failure::Invalid(m) => ApiError::invalid(None, m),
        Failure::Internal => ApiError::internal("the forward pass failed (see the log above)"),
    }
}

/// Waits for the end of a request and answers it whole.
async fn collect(mut rx: UnboundedReceiver<Event>, reply: &Reply) -> Result<Response, ApiError> {
    let mut text = String::new();
    let mut lps = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text { text: t, logprobs } => {
                text.push_str(&t);
                lps.extend(logprobs);
            }
            Event::Done { finish, usage } => {
                return Ok(json_response(
                    StatusCode::OK,
                    &reply.full(&text, &lps, finish, usage),
                ));
            }
            Event::Failed(f) => return Err(failure(f)),
        }
    }
    Err(ApiError::internal(
        "the worker dropped a request without an answer",
    ))
}

/// The answer as server-sent events: (for chat) a role chunk, text chunks, a chunk with the
/// finish reason, optionally one with the usage, then `[DONE]`. Dropping the stream (the client
/// went away) drops the receiver, which the worker sees at its next step.
fn stream(
    rx: UnboundedReceiver<Event>,
    reply: Reply,
    include_usage: bool,
    keep_alive: Duration,
) -> Response {
    struct St {
        rx: UnboundedReceiver<Event>,
        reply: Reply,
        include_usage: bool,
        pending: std::collections::VecDeque<SseEvent>,
        started: bool,
        done: bool,
        offset: usize,
    }
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let st = St {
        rx,
        reply,
        include_usage,
        pending: Default::default(),
        started: false,
        done: false,
        offset: 0,
    };
    let events = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok::<_, Infallible>(e), st));
            }
            if st.done {
                return None;
            }
            if !st.started {
                st.started = true;
                if st.reply.chat {
                    st.pending.push_back(data(st.reply.role_chunk()));
                }
                continue;
            }
            match st.rx.recv().await {
                Some(Event::Text { text, logprobs }) => {
                    let chunk = st.reply.text_chunk(&text, &logprobs, st.offset);
                    st.offset += text.len();
                    st.pending.push_back(data(chunk));
                }
                Some(Event::Done { finish, usage }) => {
                    st.pending.push_back(data(st.reply.finish_chunk(finish)));
                    if st.include_usage {
                        st.pending.push_back(data(st.reply.usage_chunk(usage)));
                    }
                    st.done = true;
                }
                Some(Event::Failed(f)) => {
                    st.pending.push_back(data(failure(f).body()));
                    st.done = true;
                }
                None => {
                    let e = ApiError::internal("the worker dropped a stream without an end");
                    st.pending.push_back(data(e.body()));
                    st.done = true;
                }
            }
            if st.done {
                st.pending.push_back(SseEvent::default().data("[DONE]"));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}
