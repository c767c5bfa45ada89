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
//! - `POST /v1/embeddings` (pooled final hidden states, computed by the same worker:
//!   [`embeddings`]);
//! - `GET /v1/models`, `GET /v1/models/{id}`;
//! - `GET /health`, `GET /metrics` (Prometheus text).
//!
//! Around them: an access log of one line per request ([`access_log`]) and CORS for browser
//! front ends ([`cors`]), both middleware. Request bodies are read field by field (the
//! `fields` module): every field is honoured or refused, none silently ignored.
//!
//! [`router`] builds the whole service without a socket (tests drive it with
//! `tower::ServiceExt::oneshot`); [`serve`] binds it and handles SIGINT/SIGTERM.

pub mod access_log;
mod api;
pub mod cors;
pub mod embeddings;
mod error;
mod fields;
mod metrics;
mod structured;
mod tools;
pub mod worker;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use camelid_engine::FinishReason;
use camelid_engine::chat::ChatTemplate;
use camelid_engine::constrain::Vocabulary;
use camelid_model::sampling::SamplingHints;
use camelid_model::{Model, Pooling};
use camelid_tokenizer::Tokenizer;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

pub use access_log::{AccessLog, LogFormat, LogSink};
pub use cors::Cors;
pub use error::ApiError;
pub use metrics::Metrics;
pub use worker::Speculation;

use access_log::Record;
use api::{Choice, Common, Limits, Prompt, Reply};
use embeddings::{EmbedJob, Input};
use worker::{Event, Failure, Job, Usage, Worker};

/// The most choices (`n`) one request may ask for, as OpenAI allows.
const MAX_N: usize = 128;

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
    /// Refuse a `model` other than `model_id` (404). Off, any name is taken: clients hard-code
    /// names like `gpt-4o`, and one model is served whatever they say.
    pub strict_model: bool,
    /// Origins whose browser pages may call the API (none by default).
    pub cors: Cors,
    /// One line per request, or none.
    pub access_log: Option<AccessLog>,
    /// How `/v1/embeddings` pools a sequence's hidden states.
    pub pooling: Pooling,
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
            strict_model: false,
            cors: Cors::default(),
            access_log: None,
            pooling: Pooling::default(),
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
    /// The vocabulary as the grammar engine sees it (constrained replies, tool calls); `None`
    /// for a vocabulary without an end-of-generation token.
    vocab: Option<Arc<Vocabulary>>,
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
        AppState::with_speculation(model, tok, config, None)
    }

    /// [`AppState::new`], decoding every request speculatively when `spec` is given (the same
    /// replies; [`Speculation`]).
    pub fn with_speculation(
        model: Model,
        tok: Tokenizer,
        config: ServerConfig,
        spec: Option<Speculation>,
    ) -> Result<AppState, camelid_model::ModelError> {
        let tok = Arc::new(tok);
        let metrics = Arc::new(Metrics::default());
        let template = ChatTemplate::for_tokenizer(&tok).map(Arc::new);
        let vocab = Vocabulary::new(tok.clone()).ok().map(Arc::new);
        let worker = Worker::spawn(
            model,
            tok.clone(),
            config.n_slots.max(1),
            config.n_ctx,
            spec,
            metrics.clone(),
        )?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                tok,
                template,
                vocab,
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

    fn check_model(&self, model: &str, strict: bool) -> Result<(), ApiError> {
        if !strict || model == self.inner.config.model_id {
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

    fn limits(&self) -> Limits<'_> {
        Limits {
            hints: &self.inner.config.sampling,
            n_vocab: self.inner.worker.n_vocab,
            // n jobs wait in the queue together: more than it holds could never be admitted.
            max_n: MAX_N.min(self.inner.config.max_queue.max(1)),
        }
    }

    /// Checks the prompt against the context, enqueues one job per choice and answers: a
    /// stream, or the whole result once every choice is done.
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
        let n = req.common.n;
        let m = &self.inner.metrics;
        let queued = m.queued.fetch_add(n, Ordering::SeqCst);
        if queued + n > self.inner.config.max_queue {
            m.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(ApiError::overloaded(queued));
        }
        // One channel for all choices: the worker tags each event with its choice. Choices go
        // to the worker as separate sequences; the first computes the prompt, the others wait
        // for it and copy its cache (the channel tells the worker they are siblings).
        let (tx, rx) = unbounded_channel();
        for i in 0..n {
            let job = Job {
                prompt: prompt.clone(),
                params: req.common.choice_params(i),
                logprobs: req.logprobs,
                cache_prompt: req.common.cache_prompt,
                choice: i,
                events: tx.clone(),
            };
            if !self.inner.worker.submit(job) {
                m.queued.fetch_sub(n - i, Ordering::SeqCst);
                return Err(ApiError::shutting_down());
            }
        }
        drop(tx);
        let answer = Answer {
            rx,
            reply: req.reply,
            n,
            prompt_tokens: prompt.len(),
            record: req.record,
            tools: req.tools,
        };
        if req.common.stream {
            Ok(stream(
                answer,
                req.common.include_usage,
                self.inner.config.keep_alive,
            ))
        } else {
            collect(answer).await
        }
    }
}

/// A request ready for the worker, with how to answer it.
struct Generate {
    /// The request field holding the prompt, named in errors.
    param: &'static str,
    common: Common,
    logprobs: Option<usize>,
    reply: Reply,
    record: Arc<Record>,
    /// Replies are read for tool calls.
    tools: Option<Arc<ToolUse>>,
}

/// The tools of a request and how the template writes calls.
struct ToolUse {
    tools: tools::Tools,
    format: tools::Format,
}

impl ToolUse {
    fn parse(&self, text: &str) -> Option<Vec<tools::Call>> {
        self.tools.parse(text, self.format, &mut tools::new_call_id)
    }
}

/// What answering a request needs: the events of its choices and how to render them.
struct Answer {
    rx: UnboundedReceiver<(usize, Event)>,
    reply: Reply,
    n: usize,
    prompt_tokens: usize,
    /// The access-log line, given the token counts at the end.
    record: Arc<Record>,
    tools: Option<Arc<ToolUse>>,
}

impl Answer {
    /// The usage of all choices: the prompt counted once, as OpenAI counts it, the completions
    /// summed; the cached tokens are the most any choice found.
    fn usage(&self, each: &[Usage]) -> Usage {
        let usage = Usage {
            prompt_tokens: self.prompt_tokens,
            cached_tokens: each.iter().map(|u| u.cached_tokens).max().unwrap_or(0),
            completion_tokens: each.iter().map(|u| u.completion_tokens).sum(),
        };
        self.record
            .set_tokens(usage.prompt_tokens, usage.completion_tokens);
        usage
    }
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
        .route("/v1/embeddings", post(embeddings))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // The last layer added runs first: every request is logged, preflights included.
        .layer(from_fn_with_state(state.clone(), cors::layer))
        .layer(from_fn_with_state(state.clone(), access_log::layer))
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
        .and_then(|()| s.check_model(&id, true))
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
    Extension(record): Extension<Arc<Record>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    s.inner
        .metrics
        .requests_chat
        .fetch_add(1, Ordering::Relaxed);
    let r = chat_inner(&s, record, &headers, body).await;
    respond(&s, r)
}

async fn chat_inner(
    s: &AppState,
    record: Arc<Record>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    s.authorize(headers)?;
    let body = s.body(body)?;
    let req = api::chat_request(&body, &s.limits())?;
    s.check_model(&req.common.model, s.inner.config.strict_model)?;
    let template = s.inner.template.clone().ok_or_else(|| {
        ApiError::invalid(
            None,
            "This model has no chat template; use /v1/completions with a prompt.",
        )
    })?;
    let tok = s.inner.tok.clone();
    let messages = req.messages;
    let format = tools::Format::of(&template);
    let tools = req.tools;
    let mut common = req.common;
    let forced = tools.as_ref().and_then(|t| t.grammar(format));
    let constrained = match (forced, req.constrained) {
        (Some(_), Some(c)) => {
            return Err(ApiError::invalid(
                Some("tool_choice"),
                format!(
                    "tool_choice asks for a tool call, which {} cannot also constrain.",
                    c.param
                ),
            ));
        }
        (Some(spec), None) => Some(structured::Constrained {
            param: "tools".into(),
            spec,
        }),
        (None, c) => c,
    };
    let vocab = s.inner.vocab.clone();
    let for_prompt = tools.clone();
    let (prompt, grammar) = tokio::task::spawn_blocking(move || {
        let prompt = match &for_prompt {
            Some(t) if template.supports_tools() => {
                template.encode_with_tools(&tok, &messages, Some(&t.defs), true)
            }
            Some(t) => template.encode(&tok, &t.inline(&messages), true),
            None => template.encode(&tok, &messages, true),
        };
        let grammar = constrained
            .as_ref()
            .map(|c| structured::compile(vocab.as_deref(), c))
            .transpose();
        (prompt, grammar)
    })
    .await
    .map_err(ApiError::internal)?;
    let prompt = prompt.map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    common.params.grammar = grammar?;
    let tools = tools
        .filter(tools::Tools::parses)
        .map(|tools| Arc::new(ToolUse { tools, format }));
    let g = Generate {
        param: "messages",
        reply: s.reply(true, req.logprobs.is_some()),
        common,
        logprobs: req.logprobs,
        record,
        tools,
    };
    s.generate(prompt, g).await
}

async fn completions(
    State(s): State<AppState>,
    Extension(record): Extension<Arc<Record>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    s.inner
        .metrics
        .requests_completions
        .fetch_add(1, Ordering::Relaxed);
    let r = completions_inner(&s, record, &headers, body).await;
    respond(&s, r)
}

async fn completions_inner(
    s: &AppState,
    record: Arc<Record>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    s.authorize(headers)?;
    let body = s.body(body)?;
    let req = api::completion_request(&body, &s.limits())?;
    s.check_model(&req.common.model, s.inner.config.strict_model)?;
    let prompt = match req.prompt {
        Prompt::Tokens(ids) => ids,
        Prompt::Text(text) => {
            let tok = s.inner.tok.clone();
            // Special tokens in the text are parsed, so a prompt may spell out a chat format.
            tokio::task::spawn_blocking(move || tok.encode(&text, tok.add_bos_default(), true))
                .await
                .map_err(ApiError::internal)?
        }
    };
    let mut common = req.common;
    if let Some(c) = req.constrained {
        let vocab = s.inner.vocab.clone();
        common.params.grammar = Some(
            tokio::task::spawn_blocking(move || structured::compile(vocab.as_deref(), &c))
                .await
                .map_err(ApiError::internal)??,
        );
    }
    let g = Generate {
        param: "prompt",
        reply: s.reply(false, req.logprobs.is_some()),
        common,
        logprobs: req.logprobs,
        record,
        tools: None,
    };
    s.generate(prompt, g).await
}

async fn embeddings(
    State(s): State<AppState>,
    Extension(record): Extension<Arc<Record>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    s.inner
        .metrics
        .requests_embeddings
        .fetch_add(1, Ordering::Relaxed);
    let r = embeddings_inner(&s, record, &headers, body).await;
    respond(&s, r)
}

/// Tokenizes the inputs, checks them, hands each to the worker as its own sequence and answers
/// once all are pooled.
async fn embeddings_inner(
    s: &AppState,
    record: Arc<Record>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    s.authorize(headers)?;
    let body = s.body(body)?;
    let worker = &s.inner.worker;
    let req = embeddings::embeddings_request(&body, worker.d_model)?;
    s.check_model(&req.model, s.inner.config.strict_model)?;
    let tok = s.inner.tok.clone();
    let inputs = req.inputs;
    // Text is data here: special tokens spelled in it are not parsed.
    let seqs: Vec<Vec<u32>> = tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .map(|i| match i {
                Input::Text(t) => tok.encode(&t, tok.add_bos_default(), false),
                Input::Tokens(ids) => ids,
            })
            .collect()
    })
    .await
    .map_err(ApiError::internal)?;
    let (n_ctx, n_vocab) = (worker.n_ctx, worker.n_vocab);
    for (i, seq) in seqs.iter().enumerate() {
        let param = if seqs.len() > 1 {
            format!("input[{i}]")
        } else {
            "input".into()
        };
        if seq.is_empty() {
            return Err(ApiError::invalid(Some(&param), "The input has no tokens."));
        }
        if seq.len() > n_ctx {
            return Err(ApiError::invalid(
                Some(&param),
                format!(
                    "This model's maximum context length is {n_ctx} tokens, however {param} has {} tokens. Please reduce its length.",
                    seq.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        if let Some(&t) = seq.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ApiError::invalid(
                Some(&param),
                format!("Token id {t} is outside the vocabulary of {n_vocab} tokens."),
            ));
        }
    }
    // A request of many inputs is taken while the queue has room for one more: its inputs
    // then wait their turn like any request's.
    let n = seqs.len();
    let m = &s.inner.metrics;
    let queued = m.queued.fetch_add(n, Ordering::SeqCst);
    if queued >= s.inner.config.max_queue {
        m.queued.fetch_sub(n, Ordering::SeqCst);
        return Err(ApiError::overloaded(queued));
    }
    let prompt_tokens = seqs.iter().map(Vec::len).sum();
    let (tx, mut rx) = unbounded_channel();
    for (index, tokens) in seqs.into_iter().enumerate() {
        let job = EmbedJob {
            tokens,
            pooling: s.inner.config.pooling,
            index,
            events: tx.clone(),
        };
        if !worker.submit_embedding(job) {
            m.queued.fetch_sub(n - index, Ordering::SeqCst);
            return Err(ApiError::shutting_down());
        }
    }
    drop(tx);
    let mut vectors = vec![Vec::new(); n];
    let mut left = n;
    while left > 0 {
        match rx.recv().await {
            Some((i, Ok(v))) => {
                vectors[i] = v;
                left -= 1;
            }
            Some((_, Err(f))) => return Err(failure(f)),
            None => {
                return Err(ApiError::internal(
                    "the worker dropped an embedding without an answer",
                ));
            }
        }
    }
    record.set_tokens(prompt_tokens, 0);
    let model = &s.inner.config.model_id;
    Ok(json_response(
        StatusCode::OK,
        &embeddings::response(&vectors, req.base64, model, prompt_tokens),
    ))
}

fn failure(f: Failure) -> ApiError {
    match f {
        Failure::ShuttingDown => ApiError::shutting_down(),
        Failure::Invalid(m) => ApiError::invalid(None, m),
        Failure::Internal => ApiError::internal("the forward pass failed (see the log above)"),
    }
}

/// Waits for the end of every choice and answers them whole.
async fn collect(mut a: Answer) -> Result<Response, ApiError> {
    let mut texts = vec![(String::new(), Vec::new()); a.n];
    let mut ends: Vec<Option<(FinishReason, Usage)>> = vec![None; a.n];
    let mut left = a.n;
    while let Some((i, ev)) = a.rx.recv().await {
        match ev {
            Event::Text { text, logprobs } => {
                texts[i].0.push_str(&text);
                texts[i].1.extend(logprobs);
            }
            Event::Done { finish, usage } => {
                ends[i] = Some((finish, usage));
                left -= 1;
                if left == 0 {
                    break;
                }
            }
            Event::Failed(f) => return Err(failure(f)),
        }
    }
    if left > 0 {
        return Err(ApiError::internal(
            "the worker dropped a request without an answer",
        ));
    }
    let ends: Vec<(FinishReason, Usage)> = ends.into_iter().flatten().collect();
    let usage = a.usage(&ends.iter().map(|e| e.1).collect::<Vec<_>>());
    let choices: Vec<Choice> = texts
        .into_iter()
        .zip(&ends)
        .map(|((text, logprobs), &(finish, _))| Choice {
            tool_calls: a.tools.as_ref().and_then(|t| t.parse(&text)),
            text,
            logprobs,
            finish,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &a.reply.full(&choices, usage),
    ))
}

/// The answer as server-sent events: (for chat) a role chunk per choice, text chunks, a chunk
/// with each choice's finish reason, optionally one with the usage once all are done, then
/// `[DONE]`. Dropping the stream (the client went away) drops the receiver, which the worker
/// sees at its next step, for every choice.
fn stream(a: Answer, include_usage: bool, keep_alive: Duration) -> Response {
    struct St {
        a: Answer,
        include_usage: bool,
        pending: std::collections::VecDeque<SseEvent>,
        started: bool,
        done: bool,
        /// Per choice: where its next text starts, and its usage once done.
        offsets: Vec<usize>,
        usages: Vec<Usage>,
        /// With tools: each choice's text held while it may be a call.
        hold: Option<tools::StreamHold>,
    }
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let st = St {
        include_usage,
        pending: Default::default(),
        started: false,
        done: false,
        offsets: vec![0; a.n],
        usages: Vec::with_capacity(a.n),
        hold: a.tools.as_ref().map(|_| tools::StreamHold::new(a.n)),
        a,
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
                if st.a.reply.chat {
                    for i in 0..st.a.n {
                        st.pending.push_back(data(st.a.reply.role_chunk(i)));
                    }
                }
                continue;
            }
            match st.a.rx.recv().await {
                Some((i, Event::Text { text, logprobs })) => {
                    let text = match &mut st.hold {
                        Some(h) => h.push(i, &text),
                        None => text,
                    };
                    if text.is_empty() && logprobs.is_empty() {
                        continue;
                    }
                    let chunk = st.a.reply.text_chunk(i, &text, &logprobs, st.offsets[i]);
                    st.offsets[i] += text.len();
                    st.pending.push_back(data(chunk));
                }
                Some((i, Event::Done { finish, usage })) => {
                    let held = st.hold.as_mut().and_then(|h| h.take(i));
                    let calls = held
                        .as_deref()
                        .and_then(|t| st.a.tools.as_ref().and_then(|u| u.parse(t)));
                    match (calls, held) {
                        (Some(calls), _) => {
                            for c in tools::call_chunks(&st.a.reply, i, &calls) {
                                st.pending.push_back(data(c));
                            }
                        }
                        (None, Some(text)) if !text.is_empty() => {
                            let chunk = st.a.reply.text_chunk(i, &text, &[], st.offsets[i]);
                            st.offsets[i] += text.len();
                            st.pending.push_back(data(chunk));
                            st.pending
                                .push_back(data(st.a.reply.finish_chunk(i, finish)));
                        }
                        _ => st
                            .pending
                            .push_back(data(st.a.reply.finish_chunk(i, finish))),
                    }
                    st.usages.push(usage);
                    if st.usages.len() == st.a.n {
                        let usage = st.a.usage(&st.usages);
                        if st.include_usage {
                            st.pending.push_back(data(st.a.reply.usage_chunk(usage)));
                        }
                        st.done = true;
                    }
                }
                Some((_, Event::Failed(f))) => {
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
