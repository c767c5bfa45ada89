//! Speculative decoding in the batching worker (`--lookup`, `--model-draft`) gives every
//! request the reply it gets without it (the same tokens, log-probabilities, finish reasons
//! and usage), greedy or seeded, streamed or not, side by side with other requests, and counts
//! its drafts.

use super::*;
use camelid_server::Speculation;

/// Requests whose replies repeat their prompts (so that lookup finds drafts), and others.
fn requests() -> Vec<(&'static str, Value)> {
    let copy = "Copy this list exactly: apples, pears, plums, cherries, apples, pears, plums, \
                cherries, apples, pears,";
    let code =
        "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):";
    let chat = |content: &str| json!([{"role": "user", "content": content}]);
    vec![
        (
            "completion, greedy",
            json!({"prompt": copy, "max_tokens": 40, "temperature": 0}),
        ),
        (
            "completion, sampled",
            json!({"prompt": copy, "max_tokens": 40, "temperature": 0.7, "seed": 5}),
        ),
        (
            "code, greedy, streamed",
            json!({"prompt": code, "max_tokens": 48, "temperature": 0, "stream": true}),
        ),
        (
            "code, logprobs",
            json!({"prompt": code, "max_tokens": 24, "temperature": 0, "logprobs": 2}),
        ),
        (
            "code, stop string",
            json!({"prompt": code, "max_tokens": 48, "temperature": 0, "stop": ["mul"]}),
        ),
        (
            "chat, sampled, penalties",
            json!({"messages": chat("Repeat twice: the red fox jumps over the red fence."),
            "max_tokens": 40, "temperature": 0.9, "seed": 11, "frequency_penalty": 0.5}),
        ),
        (
            "chat, greedy, streamed",
            json!({"messages": chat("Repeat twice: the red fox jumps over the red fence."),
            "max_tokens": 40, "temperature": 0, "stream": true}),
        ),
        // Drafts the grammar refuses are drawn against its masked logits, and fail.
        (
            "chat, JSON schema",
            json!({"messages": chat("Give the list apples, pears, plums as JSON."),
            "max_tokens": 60, "temperature": 0, "response_format": {"type": "json_schema",
            "json_schema": {"name": "fruit", "schema": {"type": "object", "properties":
                {"fruit": {"type": "array", "items": {"type": "string"}}}, "required": ["fruit"]}}}}),
        ),
    ]
}

/// Every request at once; each reply's text, finish reason, usage and log-probabilities. (The
/// usage's cached tokens are left out: two requests share a prompt, and which computes it
/// depends on when each is admitted.)
async fn replies(app: &Router) -> Vec<(String, Option<String>, Value, Value)> {
    let mut tasks = Vec::new();
    for (_, mut body) in requests() {
        body["model"] = json!(MODEL);
        let path = if body.get("messages").is_some() {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            if body["stream"] == json!(true) {
                body["stream_options"] = json!({"include_usage": true});
                let (events, done) = stream(&app, path, body).await;
                assert!(done);
                let (text, finish, usage) = streamed_text(&events);
                (text, finish, usage.unwrap_or_default(), Value::Null)
            } else {
                let (status, v) = post_json(&app, path, body).await;
                assert_eq!(status, StatusCode::OK, "{v}");
                let c = &v["choices"][0];
                let text = c["text"]
                    .as_str()
                    .or(c["message"]["content"].as_str())
                    .unwrap()
                    .to_string();
                let finish = c["finish_reason"].as_str().map(str::to_string);
                (text, finish, v["usage"].clone(), c["logprobs"].clone())
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let mut reply = t.await.unwrap();
        if let Some(u) = reply.2.as_object_mut() {
            u.remove("prompt_tokens_details");
        }
        out.push(reply);
    }
    out
}

/// A server of 8 slots decoding speculatively as `spec` says.
fn speculating(spec: Speculation) -> Router {
    let (model, tok) = load();
    let mut config = ServerConfig::new(MODEL, 512);
    config.n_slots = 8;
    router(AppState::with_speculation(model, tok, config, Some(spec)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speculative_replies_are_the_replies_without_it() {
    let (plain, _, _) = server(512, |c| c.n_slots = 8);
    let want = replies(&plain).await;
    let lookup = |draft_max| Speculation {
        draft_max,
        draft: None,
        p_min: 0.0,
    };
    // The default model as its own draft: most drafts hold.
    let draft = Speculation {
        draft_max: 8,
        draft: Some(load().0),
        p_min: 0.5,
    };
    for (how, spec) in [
        ("lookup 16", lookup(16)),
        ("lookup 3", lookup(3)),
        ("draft model", draft),
    ] {
        let app = speculating(spec);
        let got = replies(&app).await;
        for ((name, _), (g, w)) in requests().iter().zip(got.iter().zip(&want)) {
            assert_eq!(g, w, "{name}, {how}");
        }
        let drafted = metric(&app, "camelid_draft_tokens_total").await;
        let accepted = metric(&app, "camelid_draft_tokens_accepted_total").await;
        eprintln!("{how}: {accepted} of {drafted} draft tokens taken");
        assert!(
            accepted > 10.0 && accepted <= drafted,
            "{how}: {accepted} of {drafted}"
        );
        let generated = metric(&app, "camelid_completion_tokens_total").await;
        assert_eq!(
            generated,
            metric(&plain, "camelid_completion_tokens_total").await
        );
    }
}
