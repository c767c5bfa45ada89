//! The whole training loop against PyTorch. 20 steps (`tools/train_loop_reference.py`): every
//! step's lr, loss and gradient norm, and the final weights. A 200-step run of the whole loop (batch order over many epochs, accumulation, clipping,
//! AdamW, warmup and cosine, the forward and backward pass) against transformers +
//! torch.optim.AdamW from the same initial weights on the same batches
//! (`tools/train_curve_reference.py` → `testdata/train/curve_reference.*`): the loss curve is
//! within 1e-3 relative of PyTorch's for the first 20 steps and within 1% at step 200. The same
//! run stopped at step 100, saved, and resumed from its checkpoint ends with the very bits of the
//! uninterrupted run (weights, optimizer moments, every logged loss).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use camelid_formats::safetensors::SafetensorsModel;
use camelid_model::config::RopeScaling;
use camelid_tokenizer::Tokenizer;
use camelid_train::Params;
use camelid_train::checkpoint;
use camelid_train::data::{Position, Shards, collect_documents, hash_files, prepare};
use camelid_train::optim::AdamWConfig;
use camelid_train::trainer::{Hooks, Output, Plan, Settings, StepRecord, Stopped, Trainer, run};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// Collects the logged losses (the bits as logged: f32 loss, f64 norm).
#[derive(Default)]
struct Curve(Vec<(u64, u32, u64)>);

impl Hooks for Curve {
    fn step(&mut self, r: &StepRecord, _: &Trainer) {
        self.0
            .push((r.step, r.loss.to_bits(), r.grad_norm.to_bits()));
    }
    fn sample(&mut self, _: &Path, _: u64) {}
    fn saved(&mut self, _: &Path, _: u64) {}
}

/// A PyTorch run written by `tools/train_loop_reference.py` or `train_curve_reference.py`: its
/// JSON (settings, model, per-step lr/loss/grad norm) and weights, as camelid's config,
/// settings and parameters.
struct Reference {
    json: serde_json::Value,
    st: SafetensorsModel,
    config: camelid_model::Config,
    settings: Settings,
}

impl Reference {
    fn open(name: &str) -> Reference {
        let path = testdata(&format!("train/{name}.json"));
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        let st = SafetensorsModel::open(&testdata(&format!("train/{name}.safetensors"))).unwrap();
        let m = &json["model"];
        let u = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        let d = u(&m["hidden_size"]);
        let config = camelid_model::Config {
            n_vocab: u(&m["vocab_size"]),
            d_model: d,
            n_layers: u(&m["num_hidden_layers"]),
            n_heads: u(&m["num_attention_heads"]),
            n_kv_heads: u(&m["num_key_value_heads"]),
            head_dim: d / u(&m["num_attention_heads"]),
            d_ff: u(&m["intermediate_size"]),
            norm_eps: m["rms_norm_eps"].as_f64().unwrap() as f32,
            rope_theta: m["rope_theta"].as_f64().unwrap() as f32,
            rope_scaling: RopeScaling::None,
            n_ctx_train: u(&m["max_position_embeddings"]),
            tied_embeddings: m["tie_word_embeddings"].as_bool().unwrap(),
        };
        let s = &json["settings"];
        let f = |k: &str| s[k].as_f64().unwrap();
        let settings = Settings {
            lr: f("lr"),
            min_lr_ratio: f("min_lr_ratio"),
            warmup: s["warmup"].as_u64().unwrap(),
            steps: s["steps"].as_u64().unwrap(),
            ctx: u(&s["ctx"]),
            seqs_per_step: u(&s["seqs_per_step"]),
            micro_seqs: u(&s["micro_seqs"]),
            seed: s["seed"].as_u64().unwrap(),
            max_grad_norm: f("max_grad_norm"),
            adamw: AdamWConfig {
                weight_decay: f("weight_decay") as f32,
                ..AdamWConfig::default()
            },
            eval_seqs: 1,
        };
        Reference {
            json,
            st,
            config,
            settings,
        }
    }

    /// The weights stored under `prefix` + camelid's (Hugging Face) tensor names.
    fn params(&self, prefix: &str) -> Params {
        let mut p = Params::zeros(&self.config);
        for t in &mut p.tensors {
            let s = self.st.tensor(&format!("{prefix}{}", t.name)).unwrap();
            assert_eq!(s.shape, t.shape, "{}", t.name);
            t.data = self
                .st
                .data(s)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
        }
        p
    }
}

/// The tiny corpus's shards under `tmp`, with the spm-tiny tokenizer both scripts used.
fn tiny_shards(tmp: &Path) -> (Shards, Tokenizer, PathBuf) {
    let tok_path = testdata("tokenizer/spm-tiny.model");
    let tok = camelid_model::tokenizer_load::load_tokenizer(&tok_path).unwrap();
    let docs = collect_documents(&[testdata("train/corpus")]).unwrap();
    let key = hash_files(&tok_path).unwrap();
    let shards = prepare(&docs, &tok, &key, 0.25, tmp, 1, &mut |_| {}).unwrap();
    (shards, tok, tok_path)
}

/// 20 steps of the whole loop (batch order, accumulation, clipping, AdamW, schedule, and the
/// forward/backward pass) against transformers + torch.optim.AdamW from the same weights on
/// the same batches (tools/train_loop_reference.py): every step's lr, loss and gradient norm,
/// and the final weights.
#[test]
fn twenty_steps_follow_pytorchs_loss_curve() {
    let r = Reference::open("loop_reference");
    let tmp = std::env::temp_dir().join(format!("camelid-loop-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let (shards, _, _) = tiny_shards(&tmp);
    let mut t = Trainer::new(
        r.params("init."),
        r.settings.clone(),
        &shards,
        0,
        Position::default(),
    )
    .unwrap();
    let mut ws = camelid_train::Workspace::new(&r.config, r.settings.micro_seqs, r.settings.ctx, 2);
    let mut worst: f64 = 0.0;
    for (i, want) in r.json["steps"].as_array().unwrap().iter().enumerate() {
        let (loss, norm, lr) = t.step(&mut ws).unwrap();
        let (wl, wn) = (
            want["loss"].as_f64().unwrap(),
            want["grad_norm"].as_f64().unwrap(),
        );
        assert!(
            (lr - want["lr"].as_f64().unwrap()).abs() < 1e-12,
            "step {i}: lr"
        );
        let rel = ((loss as f64 - wl) / wl).abs();
        worst = worst.max(rel);
        assert!(rel < 1e-5, "step {i}: loss {loss} vs PyTorch {wl}");
        assert!(
            ((norm - wn) / wn).abs() < 1e-4,
            "step {i}: grad norm {norm} vs {wn}"
        );
    }
    let want = r.params("final.");
    for (a, b) in t.params.tensors.iter().zip(&want.tensors) {
        let scale = b.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{}: {x} vs PyTorch {y}",
                a.name
            );
        }
    }
    eprintln!("worst relative loss difference over 20 steps: {worst:.2e}");
    let _ = fs::remove_dir_all(&tmp);
}

#[test]
fn two_hundred_steps_follow_pytorchs_curve_and_resume_bit_identically() {
    let r = Reference::open("curve_reference");
    let (config, settings, init) = (&r.config, r.settings.clone(), r.params(""));
    let want: Vec<f64> = r.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(want.len(), 200);
    assert_eq!(settings.steps, 200);

    let tmp = std::env::temp_dir().join(format!("camelid-curve-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let (shards, tok, tok_path) = tiny_shards(&tmp.join("cache"));
    let output = |name: &str| Output {
        dir: tmp.join(name),
        bos: tok.bos(),
        eos: tok.eos(),
        tokenizer_files: checkpoint::tokenizer_files(&tok_path),
        source: serde_json::json!({"test": "curve"}),
    };
    let stop = AtomicBool::new(false);
    let plan = |stop_at| Plan {
        eval_every: 0,
        sample_every: 0,
        save_every: 0,
        stop_at,
        max_time: None,
        stop: &stop,
    };
    let workspace = || camelid_train::Workspace::new(config, settings.micro_seqs, settings.ctx, 2);

    // The uninterrupted run.
    let whole = output("whole");
    let mut t = Trainer::new(
        init.clone(),
        settings.clone(),
        &shards,
        0,
        Position::default(),
    )
    .unwrap();
    let mut curve = Curve::default();
    let done = run(&mut t, &mut workspace(), &plan(None), &whole, &mut curve);
    assert_eq!(done, Ok(Stopped::Done));
    assert_eq!(curve.0.len(), 200);
    let rel = |i: usize| ((f32::from_bits(curve.0[i].1) as f64 - want[i]) / want[i]).abs();
    for (i, want) in want.iter().enumerate().take(20) {
        let got = f32::from_bits(curve.0[i].1);
        assert!(
            rel(i) < 1e-3,
            "step {}: loss {got} vs PyTorch {want}",
            i + 1
        );
    }
    let worst20 = (0..20).map(rel).fold(0.0, f64::max);
    assert!(
        rel(199) < 1e-2,
        "step 200: loss {} vs PyTorch {}",
        f32::from_bits(curve.0[199].1),
        want[199]
    );
    let worst = (0..200).map(rel).fold(0.0, f64::max);
    eprintln!(
        "loss {:.4} -> {:.4} (PyTorch {:.4} -> {:.4}); relative difference: worst {worst20:.1e} \
         over steps 1-20, {:.1e} at step 200, worst {worst:.1e} over all 200",
        f32::from_bits(curve.0[0].1),
        f32::from_bits(curve.0[199].1),
        want[0],
        want[199],
        rel(199),
    );

    // Stopped at step 100, saved, resumed from the folder by a fresh trainer and workspace.
    let halves = output("halves");
    let mut t = Trainer::new(init, settings.clone(), &shards, 0, Position::default()).unwrap();
    let mut first = Curve::default();
    let stopped = run(
        &mut t,
        &mut workspace(),
        &plan(Some(100)),
        &halves,
        &mut first,
    );
    assert_eq!(stopped, Ok(Stopped::StopAt));
    drop(t);
    let (mut t, _) = Trainer::resume(&halves.dir, &shards).unwrap();
    assert_eq!(t.step, 100);
    let mut second = Curve::default();
    let done = run(&mut t, &mut workspace(), &plan(None), &halves, &mut second);
    assert_eq!(done, Ok(Stopped::Done));
    first.0.extend(second.0);
    assert_eq!(first.0, curve.0, "the resumed run's losses differ");
    for f in [checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE] {
        assert!(
            fs::read(whole.dir.join(f)).unwrap() == fs::read(halves.dir.join(f)).unwrap(),
            "{f} differs between the uninterrupted and the resumed run"
        );
    }
    let _ = fs::remove_dir_all(&tmp);
}
