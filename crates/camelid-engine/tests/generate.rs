//! Greedy generation on the default model against llama.cpp's greedy output
//! (testdata/smollm2/greedy.json, from tools/smollm2_greedy.py).
//!
//! How the prompts are picked: llama.cpp rounds activations to 8 bits, so where its top two
//! logits are close its greedy choice is a coin flip no other engine can be expected to repeat.
//! We keep the candidate prompts whose first 32 steps all have a top-2 gap of at least 0.25 in
//! llama.cpp's own run (and no end-of-generation token), using only the fixture's recorded gaps.
//! `CAMELID_GREEDY_PROMPTS=N` keeps the first N of them (scripts/test-aarch64.sh: under qemu a
//! prompt takes about 20 seconds).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use camelid_engine::{FinishReason, GenParams, SamplerConfig, generate};
use camelid_model::Model;
use camelid_model::tokenizer_load::tokenizer_from_gguf;
use camelid_model::weights::Checkpoint;
use serde_json::Value;

const STEPS: usize = 32;
const MIN_GAP: f64 = 0.25;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_equals_llama_cpp_for_32_tokens() {
    let assets =
        std::env::var_os("CAMELID_ASSETS").map_or_else(|| repo().join("assets"), PathBuf::from);
    let path = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} missing: run scripts/fetch-assets.sh",
        path.display()
    );
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("testdata/smollm2/greedy.json")).unwrap(),
    )
    .unwrap();

    let ckpt = Checkpoint::open(&path).unwrap();
    let tok = tokenizer_from_gguf(ckpt.gguf().unwrap()).unwrap();
    let model = Model::from_checkpoint(ckpt).unwrap();

    let clear = |p: &&Value| {
        let (a, b) = (
            p["top1_logit"].as_array().unwrap(),
            p["top2_logit"].as_array().unwrap(),
        );
        let gaps_ok = a
            .iter()
            .zip(b)
            .take(STEPS)
            .all(|(x, y)| x.as_f64().unwrap() - y.as_f64().unwrap() >= MIN_GAP);
        let eog_ok = p["eog_steps"]
            .as_array()
            .is_none_or(|e| e.iter().all(|s| s.as_u64().unwrap() as usize >= STEPS));
        gaps_ok && eog_ok
    };
    let mut chosen: Vec<&Value> = g["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(clear)
        .collect();
    assert!(
        chosen.len() >= 5,
        "only {} prompts have clear gaps; regenerate the fixture with more candidates",
        chosen.len()
    );
    if let Ok(n) = std::env::var("CAMELID_GREEDY_PROMPTS") {
        let n: usize = n
            .parse()
            .expect("CAMELID_GREEDY_PROMPTS: a number of prompts");
        chosen.truncate(n.max(1));
    }

    let params = GenParams {
        max_tokens: STEPS,
        stop: vec![],
        sampler: SamplerConfig::greedy(),
        grammar: None,
    };
    let cancel = AtomicBool::new(false);
    for p in chosen.iter() {
        let text = p["prompt"].as_str().unwrap();
        let prompt = tok.encode(text, tok.add_bos_default(), true);
        assert_eq!(
            prompt,
            ids(&p["prompt_ids"]),
            "{text:?}: prompt ids differ from llama.cpp's"
        );
        let mut state = model.new_state(256).unwrap();
        let out = generate(&model, &mut state, &tok, &prompt, &params, &cancel, |_| {}).unwrap();
        assert_eq!(out.finish, FinishReason::Length);
        assert_eq!(
            out.tokens,
            ids(&p["generated"])[..STEPS],
            "{text:?}: greedy output differs from llama.cpp's"
        );
        eprintln!("{text:?} -> {:?}", out.text);
    }
}

/// A seeded sampled run is reproducible: the same ids on a second run and with another number
/// of compute threads (each output row is summed by one thread, in a fixed order).
#[test]
fn seeded_sampling_is_reproducible_across_runs_and_thread_counts() {
    // A real model: its matrices are large enough to be split between threads.
    let assets =
        std::env::var_os("CAMELID_ASSETS").map_or_else(|| repo().join("assets"), PathBuf::from);
    let path = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let ckpt = Checkpoint::open(&path).unwrap();
    let tok = tokenizer_from_gguf(ckpt.gguf().unwrap()).unwrap();
    let mut model = Model::from_checkpoint(ckpt).unwrap();
    let prompt = tok.encode("Once upon a time", tok.add_bos_default(), false);
    let params = GenParams {
        max_tokens: 24,
        stop: vec![],
        sampler: SamplerConfig {
            temperature: 1.0,
            seed: 42,
            ..SamplerConfig::default()
        },
        grammar: None,
    };
    let cancel = AtomicBool::new(false);
    let mut run = |threads: usize| {
        model.set_threads(threads);
        let mut state = model.new_state(128).unwrap();
        generate(&model, &mut state, &tok, &prompt, &params, &cancel, |_| {})
            .unwrap()
            .tokens
    };
    let first = run(1);
    assert_eq!(first.len(), 24);
    assert_eq!(run(1), first);
    assert_eq!(run(2), first);
    assert_eq!(run(3), first);
}
