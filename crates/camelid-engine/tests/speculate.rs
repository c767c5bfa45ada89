//! Speculative decoding gives the tokens plain decoding gives, whatever the drafts: on the
//! default model, greedy and seeded sampling, with prompt lookup and with a draft model, up to
//! every way a generation ends, and leaves the cache where plain decoding leaves it.
//!
//! No fixture: the reference is plain decoding of the same model (itself checked against
//! llama.cpp's greedy output in tests/generate.rs), and what must hold is that the two agree
//! exactly.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use camelid_engine::constrain::{GrammarSpec, Vocabulary};
use camelid_engine::speculate::{DraftModel, Drafter, Lookup, Speculator};
use camelid_engine::{
    FinishReason, GenParams, Generation, SamplerConfig, Speculation, generate_with,
};
use camelid_model::Model;
use camelid_model::tokenizer_load::tokenizer_from_gguf;
use camelid_model::weights::Checkpoint;
use camelid_tokenizer::Tokenizer;

fn default_model() -> (Model, Tokenizer) {
    let assets = std::env::var_os("CAMELID_ASSETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
        PathBuf::from,
    );
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

/// One generation of `prompt` after `before` (already in the cache), with `spec` or plainly;
/// the generation and where the cache ends.
fn run(
    model: &Model,
    tok: &Tokenizer,
    before: &[u32],
    prompt: &[u32],
    params: &GenParams,
    n_ctx: usize,
    spec: Option<&mut Speculator<'_>>,
) -> (Generation, usize) {
    let mut state = model.new_state(n_ctx).unwrap();
    let never = AtomicBool::new(false);
    if !before.is_empty() {
        model.forward(&mut state, before, false, |_, _| {}).unwrap();
    }
    let spec = spec.map(|speculator| Speculation { speculator, before });
    let mut streamed = String::new();
    let g = generate_with(model, &mut state, tok, prompt, params, spec, &never, |t| {
        streamed.push_str(t)
    })
    .unwrap();
    assert_eq!(streamed, g.text, "the text streamed is the text returned");
    (g, state.pos)
}

fn params(max_tokens: usize, sampler: SamplerConfig, stop: &[&str]) -> GenParams {
    GenParams {
        max_tokens,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        sampler,
        grammar: None,
    }
}

#[test]
fn speculative_decoding_draws_what_plain_decoding_draws() {
    let (model, tok) = default_model();
    let draft_model = &model;
    let text = "The recipe: mix the flour, the sugar and the butter; then mix the flour, the \
                sugar and the butter again, and bake. Repeat: mix the flour, the sugar and";
    let before = tok.encode(text, tok.add_bos_default(), false);
    let (before, prompt) = before.split_at(before.len() - 6);
    let sampled = |seed| SamplerConfig {
        temperature: 0.7,
        seed,
        ..SamplerConfig::default()
    };
    let penalized = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.3,
        seed: 7,
        ..SamplerConfig::default()
    };
    let n_ctx = 256;
    let cases = [
        ("greedy", params(40, SamplerConfig::greedy(), &[]), n_ctx),
        ("sampled", params(40, sampled(1), &[]), n_ctx),
        ("sampled, another seed", params(40, sampled(2), &[]), n_ctx),
        ("penalties", params(30, penalized, &[]), n_ctx),
        (
            "stop string",
            params(40, SamplerConfig::greedy(), &["butter"]),
            n_ctx,
        ),
        (
            "JSON schema",
            {
                let vocab = Vocabulary::new(std::sync::Arc::new(tok.clone())).unwrap();
                let schema = serde_json::json!({"type": "object", "properties":
                {"steps": {"type": "array", "items": {"type": "string"}}}, "required": ["steps"]});
                let mut p = params(60, SamplerConfig::greedy(), &[]);
                p.grammar = Some(vocab.compile(&GrammarSpec::JsonSchema(schema)).unwrap());
                p
            },
            n_ctx,
        ),
        // The context fills up within a draft.
        (
            "full context",
            params(200, SamplerConfig::greedy(), &[]),
            before.len() + prompt.len() + 13,
        ),
    ];
    let mut drafted = 0;
    for (name, p, n_ctx) in &cases {
        let (plain, plain_pos) = run(&model, &tok, before, prompt, p, *n_ctx, None);
        let drafters: Vec<(&str, Speculator<'_>)> = vec![
            (
                "lookup",
                Speculator::new(Drafter::Lookup(Lookup::default()), 8),
            ),
            (
                "lookup of single tokens",
                Speculator::new(
                    Drafter::Lookup(Lookup {
                        ngram_min: 1,
                        ngram_max: 1,
                    }),
                    5,
                ),
            ),
            (
                "the model itself",
                Speculator::new(
                    Drafter::Model(
                        DraftModel::new(draft_model, &tok, &tok, model.config.n_vocab, 512, 0.0)
                            .unwrap(),
                    ),
                    6,
                ),
            ),
        ];
        for (how, mut s) in drafters {
            let (g, pos) = run(&model, &tok, before, prompt, p, *n_ctx, Some(&mut s));
            let what = format!("{name}, drafted by {how}");
            assert_eq!(g.tokens, plain.tokens, "{what}: tokens");
            assert_eq!(g.text, plain.text, "{what}: text");
            assert_eq!(g.finish, plain.finish, "{what}: finish");
            assert_eq!(pos, plain_pos, "{what}: cache length");
            let stats = g.speculation.unwrap();
            assert!(stats.accepted <= stats.drafted, "{what}: {stats:?}");
            drafted += stats.drafted;
            eprintln!("{what}: {} tokens, {stats:?}", g.tokens.len());
            if how == "the model itself" && *name == "greedy" {
                // Greedy drafts of the same model are what greedy decoding draws.
                assert_eq!(stats.accepted, stats.drafted, "{what}: {stats:?}");
                assert!(stats.passes * 4 < g.tokens.len(), "{what}: {stats:?}");
            }
        }
        eprintln!("{name}: {:?} {:?}", plain.finish, plain.text);
    }
    assert!(
        drafted > 100,
        "the drafters proposed {drafted} tokens in all"
    );
    let ends = |n: &str| cases.iter().position(|c| c.0 == n).unwrap();
    let (g, _) = run(
        &model,
        &tok,
        before,
        prompt,
        &cases[ends("full context")].1,
        cases[ends("full context")].2,
        None,
    );
    assert_eq!(g.finish, FinishReason::ContextFull);
}

#[test]
fn a_draft_model_of_another_vocabulary_is_refused() {
    let (model, tok) = default_model();
    let spm = std::env::var_os("CAMELID_ASSETS")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
            PathBuf::from,
        )
        .join("llama-spm/ggml-vocab-llama-spm.gguf");
    let other = camelid_model::tokenizer_load::load_tokenizer(&spm).unwrap();
    let err = DraftModel::new(&model, &tok, &other, other.n_vocab(), 64, 0.5)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("more than the model's 32000"), "{err}");
    let err = camelid_engine::speculate::check_vocabularies(&other, 32000, &tok, 49152)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "the draft model's token 0 is \"<unk>\" where the model's is \"<|endoftext|>\""
        ),
        "{err}"
    );
    let err = DraftModel::new(&model, &tok, &tok, model.config.n_vocab, 64, 1.5)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("from 0 to 1"), "{err}");
}

/// A conversation's replies are the same with a speculator, turn after turn: the drafter reads
/// the dialog cached before each prompt, and the cache ends where it ends without one (the
/// second turn reuses it).
#[test]
fn a_conversation_replies_the_same_with_speculation() {
    use camelid_engine::chat::ChatTemplate;
    use camelid_engine::conversation::{Conversation, Event};
    let (model, tok) = default_model();
    let template = ChatTemplate::for_tokenizer(&tok).unwrap();
    let p = params(24, SamplerConfig::greedy(), &[]);
    let turns = [
        "Repeat after me: the red fox jumps over the red fence.",
        "Again, twice: the red fox jumps over the red fence.",
    ];
    let dialog = |speculator: Option<Speculator<'_>>| {
        let mut c =
            Conversation::new(&model, &tok, template.clone(), 512, None, p.clone()).unwrap();
        c.speculator = speculator;
        let never = AtomicBool::new(false);
        turns
            .iter()
            .map(|t| {
                let r = c.reply(t.to_string(), &never, &mut |_: Event| {}).unwrap();
                (r.generation.tokens, r.reused, r.generation.speculation)
            })
            .collect::<Vec<_>>()
    };
    let plain = dialog(None);
    assert!(plain[1].1 > 0, "the second turn reuses the cache");
    let lookup = Speculator::new(Drafter::Lookup(Lookup::default()), 16);
    let draft = DraftModel::new(&model, &tok, &tok, model.config.n_vocab, 512, 0.5).unwrap();
    for s in [lookup, Speculator::new(Drafter::Model(draft), 16)] {
        let got = dialog(Some(s));
        for (g, want) in got.iter().zip(&plain) {
            assert_eq!((&g.0, g.1), (&want.0, want.1));
            assert!(g.2.unwrap().accepted > 0, "{:?}", g.2);
        }
    }
}

/// Several sequences' drafts at once (a server's slots): the draft model's steps for all of
/// them in one pass each give the drafts each gets alone, a lookup drafter beside them, and
/// again on a second round that reuses the draft models' caches.
#[test]
fn drafts_proposed_together_are_the_drafts_proposed_alone() {
    let (model, tok) = default_model();
    let texts: Vec<Vec<u32>> = [
        "The capital of France is",
        "def add(a, b):\n    return a + b\n\ndef sub(a, b):",
        "One, two, three, four,",
    ]
    .iter()
    .map(|t| tok.encode(t, tok.add_bos_default(), false))
    .collect();
    let maxes = [6, 3, 8];
    let speculators = || -> Vec<Speculator<'_>> {
        let mut v: Vec<Speculator<'_>> = texts
            .iter()
            .map(|_| {
                let d =
                    DraftModel::new(&model, &tok, &tok, model.config.n_vocab, 128, 0.0).unwrap();
                Speculator::new(Drafter::Model(d), 8)
            })
            .collect();
        v.push(Speculator::new(Drafter::Lookup(Lookup::default()), 8));
        v
    };
    let (mut alone, mut together) = (speculators(), speculators());
    let lookup_text: Vec<u32> = [7, 8, 9, 7, 8].to_vec();
    for round in 0..2 {
        // The second round: each text grown by its first draft, as after a pass that took it.
        let texts: Vec<Vec<u32>> = texts
            .iter()
            .zip(&alone)
            .map(|(t, s)| {
                if round == 0 {
                    t.clone()
                } else {
                    [t, s.draft()].concat()
                }
            })
            .chain([lookup_text.clone()])
            .collect();
        let want: Vec<Vec<u32>> = alone
            .iter_mut()
            .zip(&texts)
            .zip(maxes.iter().chain([&5]))
            .map(|((s, t), &max)| s.propose(t, max).unwrap().to_vec())
            .collect();
        let mut jobs: Vec<_> = together
            .iter_mut()
            .zip(&texts)
            .zip(maxes.iter().chain([&5]))
            .map(|((s, t), &max)| (s, t.as_slice(), max))
            .collect();
        Speculator::propose_all(&mut jobs).unwrap();
        let got: Vec<Vec<u32>> = together.iter().map(|s| s.draft().to_vec()).collect();
        assert_eq!(got, want, "round {round}");
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [6, 3, 8, 5],
            "round {round}"
        );
    }
}
