//! Tests of the backward pass: gradients against transformers' autograd (fixtures from
//! `tools/train_grad_reference.py`), results independent of threads and checkpointing, and
//! the errors of bad input.

use std::path::PathBuf;

use camelid_formats::safetensors::{SafetensorsModel, StDtype};
use camelid_kernels::DType;
use camelid_model::Config;
use camelid_model::config::RopeScaling;

use crate::{Batch, IGNORE, Params, TrainError, Workspace};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/train")
}

struct Fixture {
    config: Config,
    params: Params,
    batch: Batch,
    loss: f32,
    grads: Params,
}

fn floats(st: &SafetensorsModel, name: &str) -> Vec<f32> {
    let t = st
        .tensor(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"));
    let bytes = st.data(t);
    let mut out = vec![0.0f32; t.n_elements()];
    match t.dtype {
        StDtype::F16 => camelid_kernels::quant::dequantize_row(DType::F16, bytes, &mut out),
        StDtype::F32 => camelid_kernels::quant::dequantize_row(DType::F32, bytes, &mut out),
        d => panic!("{name}: unexpected dtype {d}"),
    }
    out
}

fn ids(st: &SafetensorsModel, name: &str) -> Vec<u32> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype, StDtype::I32);
    st.data(t)
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .map(|v| if v < 0 { IGNORE } else { v as u32 })
        .collect()
}

fn load(name: &str) -> Fixture {
    let st = SafetensorsModel::open(&fixture_dir().join(format!("{name}.safetensors"))).unwrap();
    let meta = &st.metadata().iter().find(|(k, _)| k == "config").unwrap().1;
    let m: serde_json::Value = serde_json::from_str(meta).unwrap();
    let u = |k: &str| m[k].as_u64().unwrap() as usize;
    let rope_scaling = if m["rope"].is_null() {
        RopeScaling::None
    } else {
        let r = &m["rope"];
        RopeScaling::Llama3 {
            factor: r["factor"].as_f64().unwrap() as f32,
            low_freq_factor: r["low_freq_factor"].as_f64().unwrap() as f32,
            high_freq_factor: r["high_freq_factor"].as_f64().unwrap() as f32,
            original_context: r["original_max_position_embeddings"].as_u64().unwrap() as usize,
        }
    };
    let config = Config {
        n_vocab: u("vocab"),
        d_model: u("hidden"),
        n_layers: u("layers"),
        n_heads: u("heads"),
        n_kv_heads: u("kv_heads"),
        head_dim: u("head_dim"),
        d_ff: u("ffn"),
        norm_eps: m["eps"].as_f64().unwrap() as f32,
        rope_theta: m["theta"].as_f64().unwrap() as f32,
        rope_scaling,
        n_ctx_train: u("max_position_embeddings"),
        tied_embeddings: m["tied"].as_bool().unwrap(),
    };
    config.validate().unwrap();
    let mut params = Params::zeros(&config);
    let mut grads = Params::zeros(&config);
    for (p, g) in params.tensors.iter_mut().zip(&mut grads.tensors) {
        p.data = floats(&st, &format!("param.{}", p.name));
        g.data = floats(&st, &format!("grad.{}", g.name));
    }
    let inputs = ids(&st, "inputs");
    let shape = &st.tensor("inputs").unwrap().shape;
    let batch = Batch {
        targets: ids(&st, "targets"),
        n_seqs: shape[0],
        seq_len: shape[1],
        inputs,
    };
    Fixture {
        config,
        params,
        batch,
        loss: floats(&st, "loss")[0],
        grads,
    }
}

const FIXTURES: [&str; 3] = ["mha-untied", "gqa4-tied-llama3", "mqa-untied"];

/// The criterion: every tensor within 1e-4 · max(1, max |ref|) of the reference.
fn check_grads(name: &str, got: &Params, want: &Params) {
    for (g, w) in got.tensors.iter().zip(&want.tensors) {
        let max_ref = w.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = g
            .data
            .iter()
            .zip(&w.data)
            .map(|(a, b)| (a - b).abs())
            // A NaN counts as infinitely far (f32::max would pass over it).
            .fold(0.0f32, |m, d| {
                m.max(if d.is_nan() { f32::INFINITY } else { d })
            });
        let tol = 1e-4 * max_ref.max(1.0);
        assert!(
            err <= tol,
            "{name} {}: max error {err:e} > {tol:e} (max |ref| {max_ref:e})",
            g.name
        );
        // Also relative to the tensor's own scale, so that a small gradient cannot hide a bug
        // under the absolute floor: f32 with another summation order is within ~1e-6.
        assert!(
            err <= 1e-4 * max_ref + 1e-7,
            "{name} {}: max error {err:e} against max |ref| {max_ref:e}",
            g.name
        );
    }
}

#[test]
fn loss_and_gradients_match_transformers() {
    // The output projection in one block of rows, and in blocks of 7 (the last one short).
    for (name, logit_rows) in FIXTURES.iter().flat_map(|&n| [(n, 512), (n, 7)]) {
        let f = load(name);
        let mut ws = Workspace::new(&f.config, f.batch.n_seqs, f.batch.seq_len, 2);
        ws.logit_rows = logit_rows;
        let mut grads = f.params.zeros_like();
        let loss = ws
            .loss_and_grad(&f.params, &f.batch, &mut grads, 1.0)
            .unwrap();
        assert!(
            (loss - f.loss).abs() <= 1e-4 * f.loss.abs().max(1.0),
            "{name}: loss {loss} vs {}",
            f.loss
        );
        check_grads(name, &grads, &f.grads);
        // The validation loss is the same pass without gradients.
        assert_eq!(ws.loss(&f.params, &f.batch).unwrap(), loss);
    }
}

#[test]
fn losses_by_position_average_to_the_loss_and_mark_ignored_targets() {
    let f = load("mqa-untied");
    let mut ws = Workspace::new(&f.config, 2, 16, 1);
    let per = ws.losses(&f.params, &f.batch).unwrap();
    let mut sum = 0.0f64;
    let mut n = 0;
    for (l, &t) in per.iter().zip(&f.batch.targets) {
        assert_eq!(l.is_nan(), t == IGNORE);
        if t != IGNORE {
            sum += *l as f64;
            n += 1;
        }
    }
    let mean = (sum / n as f64) as f32;
    assert!(
        (mean - f.loss).abs() < 1e-4 * f.loss,
        "{mean} vs {}",
        f.loss
    );
}

/// A model big enough that every product and row loop is split between threads.
fn random_model() -> (Params, Batch) {
    let config = Config {
        n_vocab: 300,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        d_ff: 176,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::None,
        n_ctx_train: 64,
        tied_embeddings: false,
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut p = Params::zeros(&config);
    for t in &mut p.tensors {
        let fan_in = *t.shape.last().unwrap() as f32;
        for v in &mut t.data {
            let u = (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            *v = if t.shape.len() == 1 {
                1.0 + u
            } else {
                u * 3.0 / fan_in.sqrt()
            };
        }
    }
    let (s, len) = (3, 40);
    let inputs: Vec<u32> = (0..s * len).map(|_| (next() % 300) as u32).collect();
    let mut targets: Vec<u32> = (0..s * len).map(|_| (next() % 300) as u32).collect();
    targets[7] = IGNORE;
    let batch = Batch {
        inputs,
        targets,
        n_seqs: s,
        seq_len: len,
    };
    (p, batch)
}

fn run(p: &Params, b: &Batch, threads: usize, ckpt: bool) -> (f32, Params) {
    let mut ws = Workspace::new(&p.config, b.n_seqs, b.seq_len, threads);
    // Blocks of output rows that do not divide the batch's 120 rows.
    ws.logit_rows = 50;
    let all = ws.bytes();
    ws.set_checkpointing(ckpt);
    // One layer's activations fewer with checkpointing (this model has two).
    assert_eq!(ws.bytes() < all, ckpt);
    let mut g = p.zeros_like();
    let loss = ws.loss_and_grad(p, b, &mut g, 1.0).unwrap();
    (loss, g)
}

#[test]
fn one_two_and_three_threads_and_checkpointing_give_identical_bits() {
    let (p, b) = random_model();
    let (loss1, g1) = run(&p, &b, 1, false);
    assert!(g1.tensors.iter().all(|t| t.data.iter().any(|&v| v != 0.0)));
    for (threads, ckpt) in [(2, false), (3, false), (1, true), (2, true)] {
        let (loss, g) = run(&p, &b, threads, ckpt);
        assert_eq!(
            loss.to_bits(),
            loss1.to_bits(),
            "{threads} threads, ckpt {ckpt}"
        );
        for (a, c) in g.tensors.iter().zip(&g1.tensors) {
            let same = a
                .data
                .iter()
                .zip(&c.data)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{}: {threads} threads, checkpointing {ckpt}", a.name);
        }
    }
}

#[test]
fn gradients_accumulate_scaled() {
    // Two calls at scale 0.5 add up to one at scale 1: the scale is a power of two, so the
    // sums are exact and equal bit for bit (with the logits in one block of rows: blocks add
    // their parts of the output matrix's gradient one after the other).
    let (p, b) = random_model();
    let mut ws = Workspace::new(&p.config, b.n_seqs, b.seq_len, 2);
    let mut g1 = p.zeros_like();
    ws.loss_and_grad(&p, &b, &mut g1, 1.0).unwrap();
    let mut g = p.zeros_like();
    for _ in 0..2 {
        ws.loss_and_grad(&p, &b, &mut g, 0.5).unwrap();
    }
    assert_eq!(g, g1);
}

#[test]
fn bad_batches_and_tensors_are_errors() {
    let (p, b) = random_model();
    let mut ws = Workspace::new(&p.config, b.n_seqs, b.seq_len, 1);
    let mut g = p.zeros_like();
    let mut bad = b.clone();
    bad.inputs[5] = 300;
    assert!(matches!(
        ws.loss(&p, &bad),
        Err(TrainError::TokenOutOfRange {
            index: 5,
            token: 300,
            ..
        })
    ));
    let mut bad = b.clone();
    bad.targets[3] = 1000;
    assert!(matches!(
        ws.loss(&p, &bad),
        Err(TrainError::TokenOutOfRange { .. })
    ));
    let mut bad = b.clone();
    bad.n_seqs += 1;
    bad.inputs.extend_from_slice(&b.inputs[..b.seq_len]);
    bad.targets.extend_from_slice(&b.targets[..b.seq_len]);
    assert!(matches!(
        ws.loss(&p, &bad),
        Err(TrainError::BatchTooLarge { .. })
    ));
    let mut bad = b.clone();
    bad.targets.pop();
    assert!(matches!(
        ws.loss(&p, &bad),
        Err(TrainError::BatchShape { .. })
    ));
    let mut bad = b.clone();
    bad.targets.fill(IGNORE);
    assert_eq!(ws.loss(&p, &bad), Err(TrainError::NoTargets));
    let mut bad_p = p.clone();
    bad_p.tensors[3].data.pop();
    assert!(matches!(
        ws.loss(&bad_p, &b),
        Err(TrainError::ShapeMismatch { .. })
    ));
    let mut bad_g = p.zeros_like();
    bad_g.tensors.pop();
    assert!(matches!(
        ws.loss_and_grad(&p, &b, &mut bad_g, 1.0),
        Err(TrainError::TensorCount { .. })
    ));
    let mut other = p.config.clone();
    other.n_layers = 1;
    let mut ws1 = Workspace::new(&other, 3, 40, 1);
    assert_eq!(ws1.loss(&p, &b), Err(TrainError::ConfigMismatch));
    let mut zero_kv = p.config.clone();
    zero_kv.n_kv_heads = 0;
    let mut ws0 = Workspace::new(&zero_kv, 1, 4, 1);
    assert!(matches!(
        ws0.loss(&p, &b),
        Err(TrainError::InvalidConfig(_))
    ));
    // A shorter batch than the workspace's fits.
    let short = Batch {
        inputs: b.inputs[..20].to_vec(),
        targets: b.targets[..20].to_vec(),
        n_seqs: 1,
        seq_len: 20,
    };
    assert!(
        ws.loss_and_grad(&p, &short, &mut g, 1.0)
            .unwrap()
            .is_finite()
    );
}
