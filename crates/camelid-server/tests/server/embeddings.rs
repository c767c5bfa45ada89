//! `/v1/embeddings` against transformers (testdata/embeddings/smollm2.json, made by
//! tools/embeddings_reference.py: `LlamaModel.last_hidden_state` on the same file's weights,
//! pooled and normalised), its errors, and `n > 1` choices computing their prompt once.

use super::*;
use camelid_kernels::Precision;
use camelid_model::Pooling;

fn reference() -> Value {
    let p = repo().join("testdata/embeddings/smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

/// Standard base64 (RFC 4648) back to bytes.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let mut out = Vec::new();
    for q in s.as_bytes().chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q
            .iter()
            .map(|&c| if c == b'=' { 0 } else { val(c) })
            .fold(0u32, |n, v| n << 6 | v);
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

/// The vectors of an answer, checked for OpenAI's shape.
fn vectors(v: &Value, n: usize) -> Vec<Vec<f32>> {
    assert_eq!(v["object"], "list", "{v}");
    assert_eq!(v["model"], MODEL);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), n);
    data.iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            floats(&d["embedding"])
        })
        .collect()
}

/// The embeddings of the reference's inputs at the server's pooling are within 1e-4 cosine
/// distance of transformers' at the exact precision (1e-3 at the fast one), of unit norm; base64 carries the same floats; text embeds as its
/// tokens do; and embeddings computed while a generation decodes (sharing its passes) are the
/// same bit for bit, the generation unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_transformers_and_ride_with_generation() {
    let r = reference();
    let inputs = r["inputs"].clone();
    let n = inputs.as_array().unwrap().len();
    let n_tokens: usize = inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_array().unwrap().len())
        .sum();
    // The exact path (f32 products) within 1e-4; the fast path (8-bit activations, llama.cpp's
    // arithmetic and the server's default) within 1e-3.
    for (precision, pooling, key, bound) in [
        (Precision::Exact, Pooling::Mean, "mean", 1e-4),
        (Precision::Exact, Pooling::Last, "last", 1e-4),
        (Precision::Fast, Pooling::Mean, "mean", 1e-3),
    ] {
        let (mut model, tok) = load();
        model.set_precision(precision);
        let mut config = ServerConfig::new(MODEL, 256);
        config.n_slots = 3;
        config.pooling = pooling;
        let app = router(AppState::new(model, tok.clone(), config).unwrap());
        let body = json!({"model": MODEL, "input": inputs});
        let (status, v) = post_json(&app, "/v1/embeddings", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["usage"]["prompt_tokens"], n_tokens);
        assert_eq!(v["usage"]["total_tokens"], n_tokens);
        let got = vectors(&v, n);
        let mut worst = 0f64;
        for (g, want) in got.iter().zip(r["embeddings"].as_array().unwrap()) {
            let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
            worst = worst.max(cosine_distance(g, &floats(&want[key])));
        }
        eprintln!("{precision:?} {key}: largest cosine distance to transformers {worst:.2e}");
        assert!(
            worst <= bound,
            "{precision:?} {key}: cosine distance {worst:.2e}"
        );

        // base64: the little-endian f32 bytes of the same vectors.
        let mut b = body.clone();
        b["encoding_format"] = json!("base64");
        let (status, v64) = post_json(&app, "/v1/embeddings", b).await;
        assert_eq!(status, StatusCode::OK, "{v64}");
        for (d, g) in v64["data"].as_array().unwrap().iter().zip(&got) {
            let bytes = decode_base64(d["embedding"].as_str().unwrap());
            let f: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(&f, g);
        }

        // A string embeds as its tokens; one string gives one entry.
        let text = "The capital of France is Paris.";
        let ids = tok.encode(text, tok.add_bos_default(), false);
        let (_, by_text) = post_json(
            &app,
            "/v1/embeddings",
            json!({"model": MODEL, "input": text}),
        )
        .await;
        let (_, by_ids) = post_json(
            &app,
            "/v1/embeddings",
            json!({"model": MODEL, "input": [ids]}),
        )
        .await;
        assert_eq!(vectors(&by_text, 1), vectors(&by_ids, 1));
        assert_eq!(by_text["usage"]["prompt_tokens"], ids.len());

        if precision != Precision::Fast {
            continue;
        }
        // While a greedy generation streams in another slot.
        let refs = references(&tok);
        let generation = json!({"model": MODEL, "prompt": refs[0].ids, "max_tokens": 48,
            "temperature": 0, "stream": true});
        let app2 = app.clone();
        let streaming =
            tokio::spawn(async move { stream(&app2, "/v1/completions", generation).await });
        wait_for("the generation to start", async || {
            metric(&app, "camelid_slots_busy").await >= 1.0
        })
        .await;
        let (status, v2) = post_json(&app, "/v1/embeddings", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{v2}");
        assert_eq!(vectors(&v2, n), got);
        let (events, done) = streaming.await.unwrap();
        assert!(done);
        let (text, finish, _) = streamed_text(&events);
        assert!(text.starts_with(&refs[0].text), "{text:?}");
        assert_eq!(finish.as_deref(), Some("length"));
        assert_eq!(
            metric(&app, "camelid_requests_total{endpoint=\"embeddings\"}").await,
            5.0
        );
    }
}

/// Bad embeddings requests are 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_errors_name_the_field() {
    let (app, _state, tok) = server(64, |_| {});
    let d = 576;
    let big = tok.n_vocab();
    let long: Vec<u32> = vec![1; 65];
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!({"model": MODEL}), "input", None),
        (json!({"input": "hi"}), "model", None),
        (
            json!({"model": MODEL, "input": 5}),
            "input",
            Some("invalid_type"),
        ),
        (json!({"model": MODEL, "input": ""}), "input", None),
        (json!({"model": MODEL, "input": []}), "input", None),
        (json!({"model": MODEL, "input": [[]]}), "input", None),
        (
            json!({"model": MODEL, "input": ["a", 7]}),
            "input",
            Some("invalid_type"),
        ),
        (
            json!({"model": MODEL, "input": [1, -2]}),
            "input",
            Some("invalid_type"),
        ),
        (json!({"model": MODEL, "input": [big]}), "input", None),
        (
            json!({"model": MODEL, "input": long}),
            "input",
            Some("context_length_exceeded"),
        ),
        (
            json!({"model": MODEL, "input": [[1, 2], long]}),
            "input[1]",
            Some("context_length_exceeded"),
        ),
        (
            json!({"model": MODEL, "input": "hi", "encoding_format": "int8"}),
            "encoding_format",
            None,
        ),
        (
            json!({"model": MODEL, "input": "hi", "dimensions": 64}),
            "dimensions",
            None,
        ),
        (
            json!({"model": MODEL, "input": "hi", "user": 3}),
            "user",
            Some("invalid_type"),
        ),
        (
            json!({"model": MODEL, "input": "hi", "stream": true}),
            "stream",
            Some("unknown_parameter"),
        ),
    ];
    for (body, param, code) in cases {
        let (status, v) = post_json(&app, "/v1/embeddings", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{body}: {v}");
        }
    }
    // What is accepted: the model's own width, `user`, a context-long input.
    let ok = json!({"model": MODEL, "input": vec![1; 64], "dimensions": d, "user": "u"});
    let (status, v) = post_json(&app, "/v1/embeddings", ok).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(vectors(&v, 1)[0].len(), d);
}

/// `n` choices compute their prompt once: the first computes it, the others copy its cache
/// and compute only its last token (counted as cached); their texts are those of separate
/// requests that compute everything themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_compute_their_prompt_once() {
    let (app, _state, tok) = server(256, |c| c.n_slots = 4);
    let r = &references(&tok)[0];
    let l = r.ids.len();
    let greedy =
        json!({"model": MODEL, "prompt": r.ids, "max_tokens": STEPS, "temperature": 0, "n": 3});
    let (status, v) = post_json(&app, "/v1/completions", greedy).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for c in v["choices"].as_array().unwrap() {
        assert_eq!(c["text"], r.text.as_str());
    }
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], l - 1);
    assert_eq!(
        metric(&app, "camelid_prompt_tokens_cached_total").await,
        (2 * (l - 1)) as f64
    );

    // Sampled: choice i draws with seed + i, as a request of one choice with that seed.
    let ask = |n: usize, seed: u64, cache: bool| {
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Name three fruits."}],
            "max_tokens": 10, "temperature": 1.0, "seed": seed, "n": n, "cache_prompt": cache})
    };
    let (status, v) = post_json(&app, "/v1/chat/completions", ask(3, 40, true)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let p = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], p - 1);
    for (i, c) in v["choices"].as_array().unwrap().iter().enumerate() {
        let (_, alone) =
            post_json(&app, "/v1/chat/completions", ask(1, 40 + i as u64, false)).await;
        assert_eq!(
            c["message"]["content"], alone["choices"][0]["message"]["content"],
            "choice {i}"
        );
    }
}
