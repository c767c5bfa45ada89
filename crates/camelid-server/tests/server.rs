//! The server driven through its router, without a socket (`tower::ServiceExt::oneshot`), on
//! the default model SmolLM2-135M-Instruct (Q4_1).
//!
//! Expected texts come from llama.cpp's greedy continuations of the same token ids on the same
//! file (testdata/smollm2/greedy.json, made by tools/smollm2_greedy.py). llama.cpp rounds
//! activations to 8 bits, so where its top two logits are close its choice is a coin flip; we
//! only use prompts whose first steps all have a top-2 gap of at least 0.5 in llama.cpp's own run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use camelid_model::Model;
use camelid_model::sampling::SamplingHints;
use camelid_model::tokenizer_load::tokenizer_from_gguf;
use camelid_model::weights::Checkpoint;
use camelid_server::{AppState, ServerConfig, router};
use camelid_tokenizer::Tokenizer;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// `/v1/embeddings`, and `n` choices sharing their prompt.
#[path = "server/embeddings.rs"]
mod embeddings;

/// Speculative decoding (`--lookup`) against plain decoding.
#[path = "server/speculate.rs"]
mod speculate;

const MODEL: &str = "smollm2";
/// Greedy steps compared with llama.cpp.
const STEPS: usize = 8;
const MIN_GAP: f64 = 0.5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load() -> (Model, Tokenizer) {
    let assets =
        std::env::var_os("CAMELID_ASSETS").map_or_else(|| repo().join("assets"), PathBuf::from);
    let path = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} missing: run scripts/fetch-assets.sh",
        path.display()
    );
    let ckpt = Checkpoint::open(&path).unwrap();
    let tok = tokenizer_from_gguf(ckpt.gguf().unwrap()).unwrap();
    (Model::from_checkpoint(ckpt).unwrap(), tok)
}

fn server(n_ctx: usize, set: impl FnOnce(&mut ServerConfig)) -> (Router, AppState, Tokenizer) {
    let (model, tok) = load();
    let mut config = ServerConfig::new(MODEL, n_ctx);
    set(&mut config);
    let state = AppState::new(model, tok.clone(), config).unwrap();
    (router(state.clone()), state, tok)
}

/// A llama.cpp greedy reference: prompt ids and the text of its first `STEPS` tokens.
struct Reference {
    prompt: String,
    ids: Vec<u32>,
    /// llama.cpp's first `STEPS` greedy tokens.
    generated: Vec<u32>,
    text: String,
}

/// The fixture's prompts whose first `STEPS` steps have clear top-2 gaps in llama.cpp's run.
fn references(tok: &Tokenizer) -> Vec<Reference> {
    let p = repo().join("testdata/smollm2/greedy.json");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let refs: Vec<Reference> = g["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let (a, b) = (
                p["top1_logit"].as_array().unwrap(),
                p["top2_logit"].as_array().unwrap(),
            );
            let eog_late = p["eog_steps"]
                .as_array()
                .is_none_or(|e| e.iter().all(|s| s.as_u64().unwrap() as usize >= STEPS));
            eog_late
                && a.iter()
                    .zip(b)
                    .take(STEPS)
                    .all(|(x, y)| x.as_f64().unwrap() - y.as_f64().unwrap() >= MIN_GAP)
        })
        .map(|p| {
            let generated = ids(&p["generated"]);
            Reference {
                prompt: p["prompt"].as_str().unwrap().to_string(),
                ids: ids(&p["prompt_ids"]),
                text: String::from_utf8(tok.decode_bytes(&generated[..STEPS]).unwrap()).unwrap(),
                generated: generated[..STEPS].to_vec(),
            }
        })
        .collect();
    assert!(refs.len() >= 4, "only {} usable references", refs.len());
    refs
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, post(path, body.to_string())).await
}

/// A streamed answer: every `data:` payload before `[DONE]`, and whether `[DONE]` came.
async fn stream(app: &Router, path: &str, body: Value) -> (Vec<Value>, bool) {
    let resp = app
        .clone()
        .oneshot(post(path, body.to_string()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE].to_str().unwrap(),
        "text/event-stream"
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut events = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let data: String = block
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        if data.is_empty() {
            continue; // a keep-alive comment
        }
        assert!(!done, "data after [DONE]: {data}");
        if data == "[DONE]" {
            done = true;
        } else {
            events.push(serde_json::from_str(&data).unwrap());
        }
    }
    (events, done)
}

/// The text of a streamed answer, its finish reason, and its usage chunk if any.
fn streamed_text(events: &[Value]) -> (String, Option<String>, Option<Value>) {
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for e in events {
        if let Some(u) = e.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        for c in e["choices"].as_array().unwrap() {
            if let Some(t) = c["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if let Some(t) = c["text"].as_str() {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (text, finish, usage)
}

async fn metric(app: &Router, name: &str) -> f64 {
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// Polls a condition on the server's state (no timing is asserted: the bound only keeps a
/// broken server from hanging the test).
async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..6000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_follow_llama_cpp_streamed_or_not_with_stops_and_usage() {
    let (app, _state, tok) = server(256, |_| {});
    let refs = references(&tok);
    let r = &refs[0];
    let body = json!({"model": MODEL, "prompt": r.ids, "max_tokens": STEPS, "temperature": 0});

    let (status, v) = post_json(&app, "/v1/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["choices"][0]["text"],
        r.text.as_str(),
        "prompt {:?}",
        r.prompt
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], r.ids.len());
    assert_eq!(v["usage"]["completion_tokens"], STEPS);
    assert_eq!(v["usage"]["total_tokens"], r.ids.len() + STEPS);

    // The same as a stream, with the usage chunk asked for.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let (events, done) = stream(&app, "/v1/completions", sbody).await;
    assert!(done, "no [DONE]");
    let (text, finish, usage) = streamed_text(&events);
    assert_eq!(text, r.text);
    assert_eq!(finish.as_deref(), Some("length"));
    let usage = usage.expect("usage chunk");
    assert_eq!(usage["completion_tokens"], STEPS);
    assert_eq!(usage["prompt_tokens"], r.ids.len());

    // A stop sequence in the middle of the reference text: the text before it, "stop".
    let cut = r
        .text
        .char_indices()
        .nth(r.text.chars().count() / 2)
        .unwrap()
        .0;
    let stop: String = r.text[cut..].chars().take(3).collect();
    let want = &r.text[..r.text.find(&stop).unwrap()];
    let mut stop_body = body.clone();
    stop_body["stop"] = json!([stop, "never appears"]);
    let (status, v) = post_json(&app, "/v1/completions", stop_body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["text"], want, "stop {stop:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    stop_body["stream"] = json!(true);
    let (events, done) = stream(&app, "/v1/completions", stop_body).await;
    assert!(done);
    let (text, finish, _) = streamed_text(&events);
    assert_eq!(text, want);
    assert_eq!(finish.as_deref(), Some("stop"));

    // A text prompt gives the same as its ids (SmolLM2 adds no BOS).
    let (status, v) = post_json(
        &app,
        "/v1/completions",
        json!({"model": MODEL, "prompt": r.prompt, "max_tokens": STEPS, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["choices"][0]["text"], r.text.as_str());

    // Log-probabilities: the greedy token is the most likely one, and probabilities are ≤ 1.
    let mut lp_body = body.clone();
    lp_body["logprobs"] = json!(2);
    lp_body["max_tokens"] = json!(3);
    let (_, v) = post_json(&app, "/v1/completions", lp_body).await;
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 3, "{v}");
    for (i, l) in lp["token_logprobs"].as_array().unwrap().iter().enumerate() {
        let l = l.as_f64().unwrap();
        assert!(l <= 0.0);
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert_eq!(top.len(), 2);
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(best, l);
    }
}

/// A request that leaves the sampling fields out gets the model's recommended sampling: with
/// a recommended temperature of 0, llama.cpp's greedy text whatever the seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omitted_fields_take_the_models_recommended_sampling() {
    let (app, _state, tok) = server(256, |c| {
        c.sampling = SamplingHints {
            temperature: Some(0.0),
            source: "test".into(),
            ..SamplingHints::default()
        }
    });
    let r = &references(&tok)[0];
    for seed in [1, 2] {
        let body = json!({"model": MODEL, "prompt": r.ids, "max_tokens": STEPS, "seed": seed});
        let (status, v) = post_json(&app, "/v1/completions", body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["choices"][0]["text"], r.text.as_str(), "seed {seed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streamed_and_not_agree_and_stop() {
    let (app, _state, _tok) = server(512, |_| {});
    // llama.cpp (llama-simple, greedy, on this GGUF with its chat template) answers this
    // "The capital of France is Paris."
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        "temperature": 0,
        "max_tokens": 24,
    });
    let (status, v) = post_json(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["content"], "The capital of France is Paris.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((7..=9).contains(&completion), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (events, done) = stream(&app, "/v1/chat/completions", sbody).await;
    assert!(done);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk")
    );
    let (text, finish, _) = streamed_text(&events);
    assert_eq!(text, "The capital of France is Paris.");
    assert_eq!(finish.as_deref(), Some("stop"));

    // A stop string, and content given as text parts.
    let mut stop_body = body.clone();
    stop_body["stop"] = json!(" is");
    stop_body["messages"][0]["content"] = json!([
        {"type": "text", "text": "What is the capital of France?"},
        {"type": "text", "text": " Answer in one sentence."},
    ]);
    let (_, v) = post_json(&app, "/v1/chat/completions", stop_body).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The capital of France"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // max_completion_tokens wins over max_tokens; a cut answer ends with "length".
    let mut short = body.clone();
    short["max_completion_tokens"] = json!(3);
    let (_, v) = post_json(&app, "/v1/chat/completions", short).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["message"]["content"], "The capital of");

    // Chat log-probabilities: the chosen token and its top alternatives.
    let mut lp = body.clone();
    lp["logprobs"] = json!(true);
    lp["top_logprobs"] = json!(3);
    lp["max_tokens"] = json!(2);
    let (_, v) = post_json(&app, "/v1/chat/completions", lp).await;
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{v}");
    assert_eq!(content[0]["token"], "The");
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 3);
    assert_eq!(content[0]["top_logprobs"][0]["token"], "The");
    assert_eq!(content[0]["bytes"], json!(b"The".to_vec()));
}

/// 16 streaming requests at once (greedy ones twice each, and sampled ones beside them) on 16
/// slots: every greedy answer is llama.cpp's, and the same as when it ran alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_streams_are_independent() {
    let (app, _state, tok) = server(128, |c| c.n_slots = 16);
    let mut refs = references(&tok);
    refs.truncate(4);
    let greedy = |r: &Reference| json!({"model": MODEL, "prompt": r.ids, "max_tokens": STEPS, "temperature": 0, "stream": true});
    let mut alone = Vec::new();
    for r in &refs {
        let (events, done) = stream(&app, "/v1/completions", greedy(r)).await;
        assert!(done);
        let text = streamed_text(&events).0;
        assert_eq!(text, r.text, "alone, prompt {:?}", r.prompt);
        alone.push(text);
    }
    let mut tasks = Vec::new();
    for i in 0..16 {
        let app = app.clone();
        let k = i % refs.len();
        let mut body = greedy(&refs[k]);
        let sampled = i >= 12;
        if sampled {
            body["temperature"] = json!(1.0);
            body["seed"] = json!(i);
        }
        tasks.push(tokio::spawn(async move {
            let (events, done) = stream(&app, "/v1/completions", body).await;
            (k, sampled, done, streamed_text(&events))
        }));
    }
    for t in tasks {
        let (k, sampled, done, (text, finish, _)) = t.await.unwrap();
        assert!(done);
        assert!(finish.is_some());
        if !sampled {
            assert_eq!(text, alone[k], "in the crowd, prompt {:?}", refs[k].prompt);
        }
    }
    assert_eq!(metric(&app, "camelid_slots_busy").await, 0.0);
}

/// A client that goes away mid-stream: its slot is free after at most one more step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_frees_the_slot_within_one_step() {
    let (app, _state, tok) = server(512, |_| {});
    // "1, 2, 3, 4, 5," goes on counting for all 64 of llama.cpp's steps.
    let ids = tok.encode("1, 2, 3, 4, 5,", false, false);
    let body =
        json!({"model": MODEL, "prompt": ids, "max_tokens": 400, "temperature": 0, "stream": true});
    let resp = app
        .clone()
        .oneshot(post("/v1/completions", body.to_string()))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert_eq!(metric(&app, "camelid_slots_busy").await, 1.0);
    drop(body);
    let steps_at_drop = metric(&app, "camelid_decode_steps_total").await;
    wait_for("the slot to be freed", async || {
        metric(&app, "camelid_slots_busy").await == 0.0
    })
    .await;
    let steps_after = metric(&app, "camelid_decode_steps_total").await;
    assert_eq!(metric(&app, "camelid_requests_cancelled_total").await, 1.0);
    assert!(
        steps_after - steps_at_drop <= 1.0,
        "{} steps ran after the client left",
        steps_after - steps_at_drop
    );
}

/// Requests sharing a prefix with a slot's cache compute only the rest: a growing chat reuses
/// the whole earlier prompt, a shared system prompt is computed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_prefixes_are_not_recomputed() {
    let (app, _state, tok) = server(1024, |c| c.n_slots = 2);
    let system: String = (1..=40)
        .map(|i| format!("Rule {i}: answer politely and briefly. "))
        .collect();
    let n_system = tok.encode(&system, false, false).len();
    assert!(n_system > 300, "{n_system}");
    let ask = |messages: Value| json!({"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 4});
    let first = json!([{"role": "system", "content": system}, {"role": "user", "content": "Hi!"}]);
    let (status, v1) = post_json(&app, "/v1/chat/completions", ask(first.clone())).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(v1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let p1 = v1["usage"]["prompt_tokens"].as_u64().unwrap();

    // The chat grows by the answer and a new question.
    let mut grown = first.as_array().unwrap().clone();
    grown.push(json!({"role": "assistant", "content": v1["choices"][0]["message"]["content"]}));
    grown.push(json!({"role": "user", "content": "And then?"}));
    let (_, v2) = post_json(&app, "/v1/chat/completions", ask(Value::Array(grown))).await;
    let cached2 = v2["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached2 >= p1, "cached {cached2} < first prompt {p1}");
    assert!(cached2 < v2["usage"]["prompt_tokens"].as_u64().unwrap());

    // Another conversation with the same system prompt.
    let other =
        json!([{"role": "system", "content": system}, {"role": "user", "content": "Hello there"}]);
    let (_, v3) = post_json(&app, "/v1/chat/completions", ask(other)).await;
    let cached3 = v3["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached3 as usize >= n_system,
        "cached {cached3} < {n_system}"
    );
    assert_eq!(
        metric(&app, "camelid_prompt_tokens_cached_total").await,
        (cached2 + cached3) as f64
    );
}

/// An error case: the request, the status, `param`, `code`, and words the message must hold.
type Case = (
    Request<Body>,
    u16,
    Option<&'static str>,
    Option<&'static str>,
    Vec<&'static str>,
);

/// Every error case: status, and a body of OpenAI's shape saying what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_openai_shape_and_status() {
    let (app, _state, tok) = server(64, |c| {
        c.api_key = Some("sekrit".into());
        c.body_limit = 4096;
        c.strict_model = true;
    });
    let n_vocab = tok.n_vocab();
    let authed = |path: &str, body: String| {
        Request::post(path)
            .header(header::AUTHORIZATION, "Bearer sekrit")
            .body(Body::from(body))
            .unwrap()
    };
    let chat = |v: Value| authed("/v1/chat/completions", v.to_string());
    let compl = |v: Value| authed("/v1/completions", v.to_string());
    let hi = json!([{"role": "user", "content": "hi"}]);
    let long_ids: Vec<u32> = (0..100).map(|i| 1000 + i).collect();
    let cases: Vec<Case> = vec![
        (
            post(
                "/v1/chat/completions",
                json!({"model": MODEL, "messages": hi}).to_string(),
            ),
            401,
            None,
            Some("invalid_api_key"),
            vec!["API key"],
        ),
        (
            Request::post("/v1/completions")
                .header(header::AUTHORIZATION, "Bearer wrong")
                .body(Body::from(
                    json!({"model": MODEL, "prompt": "x"}).to_string(),
                ))
                .unwrap(),
            401,
            None,
            Some("invalid_api_key"),
            vec!["Incorrect API key"],
        ),
        (
            Request::get("/v1/models").body(Body::empty()).unwrap(),
            401,
            None,
            Some("invalid_api_key"),
            vec![],
        ),
        (
            authed("/v1/chat/completions", "{\"model\": ".into()),
            400,
            None,
            None,
            vec!["JSON"],
        ),
        (
            authed("/v1/completions", "[1, 2]".into()),
            400,
            None,
            None,
            vec!["JSON"],
        ),
        (
            chat(json!({"model": MODEL})),
            400,
            Some("messages"),
            None,
            vec!["messages"],
        ),
        (
            compl(json!({"model": MODEL})),
            400,
            Some("prompt"),
            None,
            vec!["prompt"],
        ),
        (
            chat(json!({"messages": hi})),
            400,
            Some("model"),
            None,
            vec!["model"],
        ),
        (
            chat(json!({"model": "gpt-9", "messages": hi})),
            404,
            Some("model"),
            Some("model_not_found"),
            vec!["gpt-9"],
        ),
        (
            chat(json!({"model": MODEL, "messages": hi, "n": 0})),
            400,
            Some("n"),
            None,
            vec!["n must be between 1 and"],
        ),
        (
            chat(
                json!({"model": MODEL, "messages": hi, "logit_bias": {n_vocab.to_string(): -100}}),
            ),
            400,
            Some("logit_bias"),
            None,
            vec!["outside the vocabulary", "49152"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": "x", "logit_bias": {"12": 101}})),
            400,
            Some("logit_bias"),
            None,
            vec!["between -100 and 100"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": "x", "logit_bias": {"the": 1}})),
            400,
            Some("logit_bias"),
            None,
            vec!["not a token id"],
        ),
        (
            chat(
                json!({"model": MODEL, "messages": hi, "stream_options": {"include_usage": true}}),
            ),
            400,
            Some("stream_options"),
            None,
            vec!["stream"],
        ),
        (
            chat(json!({"model": MODEL, "messages": hi, "temperature": "hot"})),
            400,
            Some("temperature"),
            Some("invalid_type"),
            vec!["number"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": "x", "top_k": -2})),
            400,
            Some("top_k"),
            None,
            vec!["-1"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": "x", "repeat_penalty": 0})),
            400,
            Some("repeat_penalty"),
            None,
            vec!["> 0"],
        ),
        (
            chat(json!({"model": MODEL, "messages": hi, "temperature": 5})),
            400,
            Some("temperature"),
            None,
            vec!["temperature"],
        ),
        (
            chat(json!({"model": MODEL, "messages": hi, "stop": ["a", "b", "c", "d", "e"]})),
            400,
            Some("stop"),
            None,
            vec!["4"],
        ),
        (
            chat(json!({"model": MODEL, "messages": hi, "top_logprobs": 3})),
            400,
            Some("top_logprobs"),
            None,
            vec!["logprobs"],
        ),
        (
            chat(json!({"model": MODEL, "messages": [{"role": "user", "content": 5}]})),
            400,
            Some("messages[0].content"),
            None,
            vec!["string"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": long_ids})),
            400,
            Some("prompt"),
            Some("context_length_exceeded"),
            vec!["64", "100"],
        ),
        (
            chat(
                json!({"model": MODEL, "messages": [{"role": "user", "content": "word ".repeat(200)}]}),
            ),
            400,
            Some("messages"),
            Some("context_length_exceeded"),
            vec!["64"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": [1, 2, 999999]})),
            400,
            Some("prompt"),
            None,
            vec!["999999"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": "x", "max_tokens": 0})),
            400,
            Some("max_tokens"),
            None,
            vec!["max_tokens"],
        ),
        (
            compl(json!({"model": MODEL, "prompt": "x".repeat(5000)})),
            413,
            None,
            Some("request_too_large"),
            vec!["4096"],
        ),
        (
            Request::get("/v1/completions")
                .header(header::AUTHORIZATION, "Bearer sekrit")
                .body(Body::empty())
                .unwrap(),
            405,
            None,
            None,
            vec![],
        ),
        (
            Request::get("/v2/nothing").body(Body::empty()).unwrap(),
            404,
            None,
            None,
            vec!["/v2/nothing"],
        ),
    ];
    let n = cases.len();
    for (i, (req, status, param, code, words)) in cases.into_iter().enumerate() {
        let what = format!("case {i}: {} {}", req.method(), req.uri());
        let (got, v) = call(&app, req).await;
        assert_eq!(got.as_u16(), status, "{what}: {v}");
        let e = v["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {v}"));
        let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["code", "message", "param", "type"], "{what}");
        assert_eq!(e["param"].as_str(), param, "{what}: {v}");
        assert_eq!(e["code"].as_str(), code, "{what}: {v}");
        let msg = e["message"].as_str().unwrap();
        for w in words {
            assert!(msg.contains(w), "{what}: {msg:?} lacks {w:?}");
        }
        // Nothing of the implementation leaks: no source paths, no Rust type names.
        for leak in [".rs", "serde", "camelid_", "panicked", "Error("] {
            assert!(!msg.contains(leak), "{what}: {msg:?}");
        }
    }
    // The right key passes, and every refusal above was counted.
    let (status, v) = call(
        &app,
        Request::get("/v1/models")
            .header(header::AUTHORIZATION, "Bearer sekrit")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(metric(&app, "camelid_request_errors_total").await, n as f64);
}

/// One slot and room for one waiting request: a third concurrent request gets 503 with
/// Retry-After, and the queue drains when the others end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503() {
    let (app, _state, tok) = server(512, |c| {
        c.n_slots = 1;
        c.max_queue = 1;
    });
    let ids = tok.encode("1, 2, 3, 4, 5,", false, false);
    let long =
        json!({"model": MODEL, "prompt": ids, "max_tokens": 400, "temperature": 0, "stream": true});
    let running = app
        .clone()
        .oneshot(post("/v1/completions", long.to_string()))
        .await
        .unwrap();
    wait_for("the slot to be taken", async || {
        metric(&app, "camelid_slots_busy").await == 1.0
    })
    .await;
    let waiting = app
        .clone()
        .oneshot(post("/v1/completions", long.to_string()))
        .await
        .unwrap();
    assert_eq!(metric(&app, "camelid_queue_length").await, 1.0);
    let resp = app
        .clone()
        .oneshot(post("/v1/completions", long.to_string()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(v["error"]["type"], "server_overloaded");
    // Both clients leave; the queue and the slot empty.
    drop(running);
    drop(waiting);
    wait_for("the queue and the slot to empty", async || {
        metric(&app, "camelid_queue_length").await == 0.0
            && metric(&app, "camelid_slots_busy").await == 0.0
    })
    .await;
    let (status, _) = call(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

/// `logit_bias` {id: -100} bans the greedy first token: the answer then starts with the
/// runner-up, the second of the unbiased request's top log-probabilities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logit_bias_bans_the_greedy_first_token() {
    let (app, _state, tok) = server(256, |_| {});
    let r = &references(&tok)[0];
    let first = r.generated[0];
    let body =
        json!({"model": MODEL, "prompt": r.ids, "max_tokens": 1, "temperature": 0, "logprobs": 2});
    let (status, v) = post_json(&app, "/v1/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let first_text = String::from_utf8(tok.decode_bytes(&[first]).unwrap()).unwrap();
    assert_eq!(lp["tokens"][0], first_text.as_str());
    let top = lp["top_logprobs"][0].as_object().unwrap();
    let runner_up = top
        .iter()
        .filter(|(t, _)| **t != first_text)
        .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
        .unwrap()
        .0
        .clone();

    for path in ["/v1/completions", "/v1/chat/completions"] {
        let mut b = body.clone();
        b["logit_bias"] = json!({first.to_string(): -100});
        if path.ends_with("chat/completions") {
            // Chat: the ban holds for every position, so the first token is never the banned one.
            b = json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "temperature": 0, "max_tokens": 8, "logprobs": true,
                "logit_bias": {tok.encode("The", false, false)[0].to_string(): -100},
            });
            let (status, v) = post_json(&app, path, b).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
            assert!(content.iter().all(|t| t["token"] != "The"), "{v}");
            continue;
        }
        let (status, v) = post_json(&app, path, b).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["choices"][0]["text"], runner_up.as_str(), "{v}");
    }
    // A positive bias of 100 on any token makes it the greedy choice.
    let forced = tok.encode(" zebra", false, false)[0];
    let mut b = body.clone();
    b["logit_bias"] = json!({forced.to_string(): 100});
    let (_, v) = post_json(&app, "/v1/completions", b).await;
    let forced_text = String::from_utf8(tok.decode_bytes(&[forced]).unwrap()).unwrap();
    assert_eq!(v["choices"][0]["text"], forced_text.as_str(), "{v}");
}

/// `n` choices: indexed 0..n, each with its own seed (seed + index), so a seeded request
/// repeats all of them, streamed or not; greedy choices are all the greedy text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_streamed_or_not() {
    let (app, _state, tok) = server(256, |c| c.n_slots = 4);
    let r = &references(&tok)[0];
    let greedy =
        json!({"model": MODEL, "prompt": r.ids, "max_tokens": STEPS, "temperature": 0, "n": 3});
    let (status, v) = post_json(&app, "/v1/completions", greedy).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["text"], r.text.as_str());
    }
    assert_eq!(v["usage"]["prompt_tokens"], r.ids.len());
    assert_eq!(v["usage"]["completion_tokens"], 3 * STEPS);

    let sampled = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a word."}],
        "max_tokens": 6, "temperature": 1.0, "seed": 11, "n": 3,
    });
    let (status, v) = post_json(&app, "/v1/chat/completions", sampled.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let texts: Vec<String> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 3);
    let (_, again) = post_json(&app, "/v1/chat/completions", sampled.clone()).await;
    assert_eq!(v["choices"], again["choices"]);

    // Streamed: every choice's role chunk, text and finish reason under its own index.
    let mut s = sampled.clone();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let (events, done) = stream(&app, "/v1/chat/completions", s).await;
    assert!(done);
    let mut streamed = vec![String::new(); 3];
    let mut roles = 0;
    let mut finishes = 0;
    for e in &events {
        for c in e["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            roles += usize::from(c["delta"]["role"] == "assistant");
            finishes += usize::from(c["finish_reason"].is_string());
            streamed[i].push_str(c["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    assert_eq!((roles, finishes), (3, 3));
    assert_eq!(streamed, texts);
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], v["usage"]["completion_tokens"]);
}

/// llama.cpp's sampling fields are honoured: top_k 1 (or min_p 1) is greedy whatever the seed
/// and temperature; a strong repeat penalty changes a repetitive continuation; cache_prompt
/// false computes the prompt again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_sampling_fields_are_honoured() {
    let (app, _state, tok) = server(256, |c| c.n_slots = 1);
    let r = &references(&tok)[0];
    for (field, value) in [("top_k", json!(1)), ("min_p", json!(1.0))] {
        for seed in [1, 2, 3] {
            let mut body = json!({"model": MODEL, "prompt": r.ids, "max_tokens": STEPS, "temperature": 1.5, "seed": seed});
            body[field] = value.clone();
            let (status, v) = post_json(&app, "/v1/completions", body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(
                v["choices"][0]["text"],
                r.text.as_str(),
                "{field}, seed {seed}"
            );
        }
    }
    let ids = tok.encode("1, 2, 3, 4, 5,", false, false);
    let counting = json!({"model": MODEL, "prompt": ids, "max_tokens": 8, "temperature": 0});
    let (_, plain) = post_json(&app, "/v1/completions", counting.clone()).await;
    assert!(
        plain["choices"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(" 6, 7"),
        "{plain}"
    );
    let mut penalized = counting.clone();
    penalized["repeat_penalty"] = json!(3.0);
    penalized["repeat_last_n"] = json!(-1);
    let (_, v) = post_json(&app, "/v1/completions", penalized).await;
    assert_ne!(v["choices"][0]["text"], plain["choices"][0]["text"], "{v}");

    // The same prompt again: cached, unless cache_prompt is false.
    let (_, v) = post_json(&app, "/v1/completions", counting.clone()).await;
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        ids.len() - 1
    );
    let mut fresh = counting.clone();
    fresh["cache_prompt"] = json!(false);
    let (_, v) = post_json(&app, "/v1/completions", fresh).await;
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(v["choices"][0]["text"], plain["choices"][0]["text"]);
}

/// Each field camelid does not implement is a 400 naming it, as is an unknown field; values
/// that ask for nothing (and nulls) pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_unknown_fields_are_refused_by_name() {
    let (app, _state, _tok) = server(128, |_| {});
    let hi = json!([{"role": "user", "content": "hi"}]);
    let tool =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let chat_cases: Vec<(&str, Value, &str)> = vec![
        ("functions", json!([{"name": "f"}]), "unsupported_parameter"),
        (
            "function_call",
            json!({"name": "f"}),
            "unsupported_parameter",
        ),
        (
            "audio",
            json!({"voice": "alloy", "format": "wav"}),
            "unsupported_parameter",
        ),
        (
            "modalities",
            json!(["text", "audio"]),
            "unsupported_parameter",
        ),
        (
            "prediction",
            json!({"type": "content", "content": "x"}),
            "unsupported_parameter",
        ),
        ("web_search_options", json!({}), "unsupported_parameter"),
        ("reasoning_effort", json!("low"), "unsupported_parameter"),
        ("verbosity", json!("low"), "unsupported_parameter"),
        ("store", json!(true), "unsupported_parameter"),
        ("service_tier", json!("flex"), "unsupported_parameter"),
        (
            "prompt_cache_retention",
            json!("24h"),
            "unsupported_parameter",
        ),
        ("echo", json!(true), "unknown_parameter"),
        ("mirostat", json!(2), "unknown_parameter"),
        ("typical_p", json!(0.9), "unknown_parameter"),
        ("frobnicate", json!(1), "unknown_parameter"),
    ];
    let completion_cases: Vec<(&str, Value, &str)> = vec![
        ("echo", json!(true), "unsupported_parameter"),
        ("suffix", json!("}"), "unsupported_parameter"),
        ("best_of", json!(3), "unsupported_parameter"),
        ("tools", tool.clone(), "unknown_parameter"),
        (
            "response_format",
            json!({"type": "text"}),
            "unknown_parameter",
        ),
        ("max_completion_tokens", json!(4), "unknown_parameter"),
    ];
    let mut cases = Vec::new();
    for (field, value, code) in chat_cases {
        let mut b = json!({"model": MODEL, "messages": hi, "max_tokens": 1});
        b[field] = value;
        cases.push(("/v1/chat/completions", b, field.to_string(), code));
    }
    for (field, value, code) in completion_cases {
        let mut b = json!({"model": MODEL, "prompt": "x", "max_tokens": 1});
        b[field] = value;
        cases.push(("/v1/completions", b, field.to_string(), code));
    }
    // Inside messages and stream_options, the path names the field.
    for (k, v) in [("name", json!("bob")), ("refusal", json!("no"))] {
        let mut m = json!({"role": "user", "content": "hi"});
        m[k] = v;
        let b = json!({"model": MODEL, "messages": [m], "max_tokens": 1});
        cases.push((
            "/v1/chat/completions",
            b,
            format!("messages[0].{k}"),
            "unsupported_parameter",
        ));
    }
    cases.push((
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi", "colour": "red"}]}),
        "messages[0].colour".into(),
        "unknown_parameter",
    ));
    cases.push((
        "/v1/completions",
        json!({"model": MODEL, "prompt": "x", "stream": true, "stream_options": {"include_obfuscation": true}}),
        "stream_options.include_obfuscation".into(),
        "unsupported_parameter",
    ));
    for (path, body, field, code) in cases {
        let (status, v) = post_json(&app, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {field}: {v}");
        assert_eq!(v["error"]["param"], field.as_str(), "{path}: {v}");
        assert_eq!(v["error"]["code"], code, "{path} {field}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(&field),
            "{v}"
        );
    }

    // What asks for nothing passes: plain text, no tools, nothing stored, ignored identifiers.
    let trivial = json!({
        "model": "gpt-4o", "messages": hi, "max_tokens": 1,
        "response_format": {"type": "text"}, "tools": [], "tool_choice": "none",
        "parallel_tool_calls": false, "functions": null, "store": false, "service_tier": "auto",
        "modalities": ["text"], "prompt_cache_retention": "in_memory", "grammar": "",
        "json_schema": null, "user": "u-1", "metadata": {"k": "v"}, "safety_identifier": "s",
        "prompt_cache_key": "k", "audio": null, "reasoning_effort": null,
        "messages": [{"role": "user", "content": "hi", "name": null, "tool_calls": []}],
        "stream": true, "stream_options": {"include_usage": false, "include_obfuscation": false},
    });
    let (events, done) = stream(&app, "/v1/chat/completions", trivial).await;
    assert!(done && !events.is_empty());
    let trivial = json!({
        "model": MODEL, "prompt": "x", "max_tokens": 1, "echo": false, "suffix": "",
        "best_of": 2, "n": 2, "grammar": null, "user": "u-1",
    });
    let (status, v) = post_json(&app, "/v1/completions", trivial).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
}

/// Any model name is taken when one model is served (answers name the served one); with
/// strict_model only that name. /v1/models is the same either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_model_name_is_taken_unless_strict() {
    let (app, _state, _tok) = server(128, |_| {});
    let body = json!({"model": "gpt-4o-mini", "prompt": "x", "max_tokens": 1});
    let (status, v) = post_json(&app, "/v1/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], MODEL);
    let (_, models) = call(
        &app,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    assert_eq!(models["data"][0]["id"], MODEL);

    let (strict, _state, _tok) = server(128, |c| c.strict_model = true);
    let (status, v) = post_json(&strict, "/v1/completions", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    let (_, strict_models) = call(
        &strict,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    // The same listing (its `created` is the server's start time, so only the ids compare).
    assert_eq!(strict_models["data"].as_array().unwrap().len(), 1);
    assert_eq!(strict_models["data"][0]["id"], MODEL);
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/v1/chat/completions")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type, x-stainless-os",
        )
        .body(Body::empty())
        .unwrap()
}

/// A browser preflight from an allowed origin gets 204 with the allow headers; from another
/// origin, or with CORS off, a 403 without them. Answers to allowed origins carry
/// Access-Control-Allow-Origin, others do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_follows_the_allowed_origins() {
    let (app, _state, _tok) = server(128, |c| {
        c.cors =
            camelid_server::Cors::parse(&["http://localhost:5173,https://app.example"]).unwrap();
        c.api_key = Some("k".into());
    });
    for origin in ["http://localhost:5173", "https://app.example"] {
        let resp = app.clone().oneshot(preflight(origin)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{origin}");
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
        assert!(
            methods.contains("POST") && methods.contains("GET"),
            "{methods}"
        );
        let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for want in ["authorization", "content-type", "x-stainless-os"] {
            assert!(allowed.contains(want), "{allowed}");
        }
    }
    let refused = |app: Router, origin: &'static str| async move {
        let (status, v) = call(&app, preflight(origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {v}");
        assert_eq!(v["error"]["code"], "origin_not_allowed");
        let resp = app.oneshot(preflight(origin)).await.unwrap();
        assert!(
            !resp
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    };
    refused(app.clone(), "https://evil.example").await;
    refused(app.clone(), "http://localhost:5174").await;
    let (off, _state, _tok) = server(128, |_| {});
    refused(off, "http://localhost:5173").await;

    // The request itself: allowed origins can read the answer (errors included).
    let get = |origin: &str| {
        Request::get("/v1/models")
            .header(header::ORIGIN, origin)
            .header(header::AUTHORIZATION, "Bearer k")
            .body(Body::empty())
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(get("https://app.example"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let resp = app
        .clone()
        .oneshot(get("https://evil.example"))
        .await
        .unwrap();
    assert!(
        !resp
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
}

/// One access-log line per request, whatever answers it, with the token counts of the ones
/// that generate (a stream's line once the stream is over); text and JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_access_log_line_per_request() {
    let (sink, lines) = camelid_server::LogSink::memory();
    let (app, _state, tok) = server(128, |c| {
        c.access_log = Some(camelid_server::AccessLog {
            format: camelid_server::LogFormat::Json,
            sink,
        })
    });
    let ids = tok.encode("1, 2, 3, 4, 5,", false, false);
    let body = json!({"model": MODEL, "prompt": ids, "max_tokens": 4, "temperature": 0});
    post_json(&app, "/v1/completions", body.clone()).await;
    let mut s = body.clone();
    s["stream"] = json!(true);
    s["n"] = json!(2);
    stream(&app, "/v1/completions", s).await;
    call(&app, Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    call(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    wait_for("four log lines", async || lines.lock().unwrap().len() >= 4).await;
    let lines: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let want = [
        ("POST", "/v1/completions", 200, ids.len(), 4),
        ("POST", "/v1/completions", 200, ids.len(), 8),
        ("GET", "/nowhere", 404, 0, 0),
        ("GET", "/health", 200, 0, 0),
    ];
    for (l, (method, path, status, prompt, completion)) in lines.iter().zip(want) {
        assert_eq!(l["method"], method, "{l}");
        assert_eq!(l["path"], path, "{l}");
        assert_eq!(l["status"], status, "{l}");
        assert_eq!(l["prompt_tokens"], prompt, "{l}");
        assert_eq!(l["completion_tokens"], completion, "{l}");
        assert!(l["ms"].as_f64().unwrap() >= 0.0, "{l}");
        let time = l["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
    }

    // The text form, from the same kind of record.
    let (sink, text) = camelid_server::LogSink::memory();
    let (app, _state, _tok) = server(128, |c| {
        c.access_log = Some(camelid_server::AccessLog {
            format: camelid_server::LogFormat::Text,
            sink,
        })
    });
    post_json(&app, "/v1/completions", body).await;
    let line = text.lock().unwrap()[0].clone();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        &fields[1..6],
        [
            "POST",
            "/v1/completions",
            "200",
            &format!("prompt={}", ids.len()),
            "completion=4"
        ],
        "{line}"
    );
    assert!(fields[6].ends_with("ms"), "{line}");
}

/// Constrained replies: a JSON schema (response_format and llama.cpp's json_schema), a GBNF
/// grammar, two sequences with different grammars in one batch; a grammar or schema the engine
/// cannot use is a 400 naming the field. Replies are checked against the grammars' definitions
/// here (the Python server test validates many more with the `jsonschema` package).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_replies_follow_their_grammars() {
    let (app, _state, _tok) = server(512, |_| {});
    let ask = |q: &str| json!([{"role": "user", "content": q}]);
    let schema = json!({"type": "object", "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "n": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["color", "n"], "additionalProperties": false});
    let check = |text: &str| {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 2, "{text}");
        assert!(["red", "green", "blue"].contains(&o["color"].as_str().unwrap()));
        assert!((1..=9).contains(&o["n"].as_i64().unwrap()), "{text}");
    };
    let gbnf = "root ::= (\"yes\" | \"no\") \", \" [0-9] \".\"";
    let matches_gbnf = |t: &str| {
        let b = t.as_bytes();
        let (word, rest) = t.split_at(if t.starts_with("yes") { 3 } else { 2 });
        ["yes", "no"].contains(&word)
            && rest.len() == 4
            && rest.starts_with(", ")
            && b[b.len() - 2].is_ascii_digit()
            && rest.ends_with('.')
    };
    // Both at once: each sequence of the batch follows its own grammar.
    let a = post_json(
        &app,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": ask("Pick a color and a digit."), "max_tokens": 60,
               "seed": 3, "temperature": 0.8,
               "response_format": {"type": "json_schema",
                                   "json_schema": {"name": "pick", "strict": true, "schema": schema}}}),
    );
    let b = post_json(
        &app,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": ask("Is 7 prime? Say yes or no and a digit."),
               "max_tokens": 20, "temperature": 0, "grammar": gbnf}),
    );
    let ((sa, va), (sb, vb)) = tokio::join!(a, b);
    assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{va} {vb}");
    check(va["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(va["choices"][0]["finish_reason"], "stop");
    let t = vb["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(matches_gbnf(t), "{t:?}");
    // llama.cpp's json_schema, on completions.
    let (_, v) = post_json(
        &app,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "JSON:", "max_tokens": 60, "temperature": 0,
               "json_schema": schema}),
    )
    .await;
    check(v["choices"][0]["text"].as_str().unwrap());

    for (body, param) in [
        (json!({"grammar": "root ::= nothing"}), "grammar"),
        (json!({"json_schema": {"type": "bogus"}}), "json_schema"),
        (json!({"json_schema": 3}), "json_schema"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
            "response_format.json_schema.name",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "grammar": gbnf}),
            "grammar",
        ),
    ] {
        let mut b = json!({"model": MODEL, "messages": ask("hi"), "max_tokens": 4});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (status, v) = post_json(&app, "/v1/chat/completions", b).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}

/// tool_choice "required": the reply is a call of one of the tools with arguments of its
/// schema, whole and streamed (the deltas reassemble to the same call); the call and a tool
/// result go back in the next turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tool_calls_parse_and_stream() {
    let (app, _state, _tok) = server(1024, |_| {});
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16}},
                        "required": ["city"]}}},
        {"type": "function", "function": {"name": "add", "description": "Add two integers",
         "parameters": {"type": "object", "properties": {
             "a": {"type": "integer", "minimum": 0, "maximum": 99},
             "b": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "b"]}}}
    ]);
    let body = json!({"model": MODEL, "temperature": 0, "max_tokens": 80,
        "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
        "tools": tools, "tool_choice": "required"});
    let (status, v) = post_json(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let ch = &v["choices"][0];
    assert_eq!(ch["finish_reason"], "tool_calls", "{v}");
    assert!(ch["message"]["content"].is_null());
    let call = &ch["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    let name = call["function"]["name"].as_str().unwrap();
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    match name {
        "get_weather" => assert!(args["city"].is_string() && args.as_object().unwrap().len() == 1),
        "add" => assert!(
            args["a"].is_i64() && args["b"].is_i64() && args.as_object().unwrap().len() == 2
        ),
        other => panic!("called {other}"),
    }

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (events, done) = stream(&app, "/v1/chat/completions", sbody).await;
    assert!(done);
    let (mut sname, mut sargs, mut finish) = (String::new(), String::new(), Value::Null);
    for e in &events {
        let c = &e["choices"][0];
        if !c["finish_reason"].is_null() {
            finish = c["finish_reason"].clone();
        }
        for d in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            assert_eq!(d["index"], 0);
            sname += d["function"]["name"].as_str().unwrap_or("");
            sargs += d["function"]["arguments"].as_str().unwrap_or("");
        }
    }
    assert_eq!(finish, "tool_calls");
    assert_eq!(sname, name);
    assert_eq!(serde_json::from_str::<Value>(&sargs).unwrap(), args);

    // The next turn: the call and its result in the dialog.
    let follow = json!({"model": MODEL, "temperature": 0, "max_tokens": 8, "tools": tools,
        "messages": [
            {"role": "user", "content": "What is the weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "12 degrees, rain"}]});
    let (status, v) = post_json(&app, "/v1/chat/completions", follow).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // A tool call whose arguments are not JSON is a 400 naming them.
    let bad = json!({"model": MODEL, "max_tokens": 1, "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
         "function": {"name": "add", "arguments": "{not json"}}]}]});
    let (status, v) = post_json(&app, "/v1/chat/completions", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["param"],
        "messages[0].tool_calls[0].function.arguments"
    );
}
