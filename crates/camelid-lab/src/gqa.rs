//! MHA vs GQA vs MQA at about one parameter budget: the attention Llama 2 gave its 70B model and
//! Llama 3 all of its sizes. Fewer key/value heads shrink the KV cache; the FFN is widened by the
//! parameters the narrower k/v projections save, so that the three models are the same size.

use std::path::Path;
use std::time::Instant;

use camelid_model::Model;
use camelid_plot::{
    Axis, Bar, BarGroup, BarPanel, Figure, Legend, LinePanel, Marks, PALETTE, Series, Style, format,
};

use crate::report::{Report, pct};
use crate::run::{Lab, RunResult, RunSpec};
use crate::{LabError, Study};

/// Greedy decoding is timed over this many tokens from BOS (at most the context).
const DECODE_TOKENS: usize = 255;
const DECODE_ROUNDS: usize = 5;

pub fn run(lab: &mut Lab) -> Result<Report, LabError> {
    let smoke = lab.opts.smoke;
    let (d, layers, heads, base_ff, ctx) = if smoke {
        (16, 1, 4, 32, 16)
    } else {
        (128, 4, 8, 352, 256)
    };
    // Llama 3's 4 query heads per kv head (8B: 32/8) where there are enough heads.
    let group = if heads >= 8 { 4 } else { 2 };
    let variants = [("mha", heads), ("gqa", heads / group), ("mqa", 1)];
    let head_dim = d / heads;
    let attn = |kv: usize| 2 * d * heads * head_dim + 2 * d * kv * head_dim;
    let spec = |name: &str, kv: usize, steps: u64| {
        // The FFN's three matrices take back what the k/v projections gave up.
        let ff = base_ff + ((attn(heads) - attn(kv)) as f64 / (3 * d) as f64).round() as usize;
        RunSpec {
            name: name.into(),
            d_model: d,
            n_layers: layers,
            n_heads: heads,
            n_kv_heads: kv,
            d_ff: ff,
            ctx,
            steps,
            seqs_per_step: if smoke { 4 } else { 16 },
            micro: if smoke { 2 } else { 8 },
            lr: 2e-3,
            eval_every: (steps / 10).max(1),
            eval_tokens: if smoke { 4 * ctx } else { 128 * ctx },
        }
    };
    let steps = match lab.opts.steps {
        Some(s) => s,
        None => {
            let t = lab.seconds_per_step(&spec("mha", heads, 3))?;
            crate::run::steps_for(lab.budget_secs() / 3.0, t)
        }
    };
    let mut runs = Vec::new();
    for (name, kv) in variants {
        runs.push(lab.train(&spec(name, kv, steps), None)?);
    }
    let speeds = decode_speeds(&runs, lab.opts.threads, lab.tok.bos().unwrap_or(0))?;
    for (r, s) in runs.iter().zip(&speeds) {
        (lab.say)(&format!(
            "{}: greedy decoding at {s:.0} tokens/s",
            r.spec.name
        ));
    }
    Ok(report(lab, steps, &runs, &speeds))
}

/// Greedy tokens per second of each run's checkpoint, decoding up to [`DECODE_TOKENS`] from BOS:
/// the best of [`DECODE_ROUNDS`] passes, the models taking turns so that a change in the
/// machine's other work falls on all of them alike.
fn decode_speeds(runs: &[RunResult], threads: usize, first: u32) -> Result<Vec<f64>, LabError> {
    let mut models = Vec::new();
    for r in runs {
        let mut m = Model::load(&r.dir).map_err(|e| model_err(&r.dir, &e))?;
        m.set_threads(threads);
        models.push((m, DECODE_TOKENS.min(r.spec.ctx - 1), &r.dir));
    }
    let mut best = vec![f64::INFINITY; runs.len()];
    for _ in 0..DECODE_ROUNDS {
        for ((model, n, dir), b) in models.iter().zip(&mut best) {
            *b = b.min(decode_secs(model, first, *n).map_err(|e| model_err(dir, &e))?);
        }
    }
    Ok(models
        .iter()
        .zip(best)
        .map(|((_, n, _), b)| *n as f64 / b.max(1e-9))
        .collect())
}

fn model_err(dir: &Path, e: &dyn std::fmt::Display) -> LabError {
    LabError::Model(format!("{}: {e}", dir.display()))
}

/// Seconds to decode `n` tokens greedily after `first`.
fn decode_secs(model: &Model, first: u32, n: usize) -> Result<f64, camelid_model::ModelError> {
    let mut state = model.new_state(n + 1)?;
    let mut token = first;
    let start = Instant::now();
    for _ in 0..n {
        let mut next = 0;
        model.forward(&mut state, &[token], false, |_, logits| {
            next = argmax(logits);
        })?;
        token = next;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Bytes per token of context of a cache in f16 (llama.cpp's default cache type).
fn kv_bytes(r: &RunResult) -> u64 {
    r.config.kv_bytes_per_token(2)
}

fn report(lab: &Lab, steps: u64, runs: &[RunResult], speeds: &[f64]) -> Report {
    let (mha, gqa, mqa) = (&runs[0], &runs[1], &runs[2]);
    let c = &gqa.config;
    let mut rep = Report::new(
        Study::Gqa,
        "Grouped-query attention: KV cache against quality",
        lab,
        steps,
        &format!(
            "Llama 2 trained its 70B model with grouped-query attention (GQA) and Llama 3 all of \
             its sizes: query heads share key/value heads, so the KV cache shrinks by the group \
             size. The Llama 2 paper reports that GQA keeps quality close to multi-head \
             attention (MHA) at the same parameter count, which multi-query attention (MQA, one \
             kv head) does less well. Here three models of {} layers, width {}, {} query heads \
             of {} dimensions are trained on the same tokens in the same order for {steps} \
             steps: MHA ({} kv heads), GQA ({} kv heads) and MQA (1 kv head), the FFN widened to \
             keep the parameter count equal.",
            c.n_layers,
            c.d_model,
            c.n_heads,
            c.head_dim,
            mha.config.n_kv_heads,
            gqa.config.n_kv_heads
        ),
    );
    rep.h2("Results");
    let rows: Vec<Vec<String>> = runs
        .iter()
        .zip(speeds)
        .map(|(r, s)| {
            vec![
                r.spec.name.to_uppercase(),
                format!("{}/{}", r.config.n_heads, r.config.n_kv_heads),
                r.config.d_ff.to_string(),
                format::thousands(r.config.n_params()),
                format::thousands(kv_bytes(r)),
                format!("{:.4}", r.val_bpb),
                format!("{s:.0}"),
            ]
        })
        .collect();
    rep.table(
        &[
            "attention",
            "query/kv heads",
            "FFN",
            "parameters",
            "KV cache bytes per token (f16)",
            "validation bits per byte",
            "greedy decode tokens/s",
        ],
        &rows,
    );
    rep.chart(
        "gqa-summary.svg",
        "validation bits per byte, KV cache bytes per token and decode speed of MHA, GQA and MQA",
        summary_svg(runs, speeds),
        &format!(
            "Each panel compares the three attention layouts on one measure: quality (validation \
             bits per byte, lower is better), memory (KV cache bytes per token of context) and \
             greedy decoding speed. The cache shrinks {:.0}× from MHA to GQA and {:.0}× to MQA, \
             while the losses differ by {} and {}.",
            kv_bytes(mha) as f64 / kv_bytes(gqa) as f64,
            kv_bytes(mha) as f64 / kv_bytes(mqa) as f64,
            pct(gqa.val_bpb, mha.val_bpb),
            pct(mqa.val_bpb, mha.val_bpb)
        ),
    );
    rep.chart(
        "gqa-curves.svg",
        "validation bits per byte against step for MHA, GQA and MQA",
        curves_svg(runs),
        "The validation loss of each model at each evaluation, on the same held-out windows. \
         Lines that stay together through training mean the layouts learn at the same rate, not \
         only that they end close.",
    );
    rep.h2("Against the paper");
    rep.para(&claim(mha, gqa, mqa, speeds));
    rep.add_runs(runs);
    rep.results = serde_json::json!({
        "kv_bytes_per_token_f16": runs.iter().map(kv_bytes).collect::<Vec<_>>(),
        "val_bpb": runs.iter().map(|r| r.val_bpb).collect::<Vec<_>>(),
        "decode_tokens_per_s": speeds,
    });
    rep
}

/// The paper's claim set against the measurements, in words chosen by the numbers.
fn claim(mha: &RunResult, gqa: &RunResult, mqa: &RunResult, speeds: &[f64]) -> String {
    let d_gqa = gqa.val_bpb / mha.val_bpb - 1.0;
    let d_mqa = mqa.val_bpb / mha.val_bpb - 1.0;
    let verdict = if d_gqa.abs() <= 0.02 {
        format!(
            "This agrees with the claim: the quality difference ({}) is within 2%, for a cache \
             {:.0}× smaller.",
            pct(gqa.val_bpb, mha.val_bpb),
            kv_bytes(mha) as f64 / kv_bytes(gqa) as f64
        )
    } else if d_gqa > 0.0 {
        format!(
            "This disagrees with the claim at this scale: GQA is {} worse than MHA, more than \
             \"nearly the same\".",
            pct(gqa.val_bpb, mha.val_bpb)
        )
    } else {
        format!(
            "GQA is even {} better than MHA here, which agrees with the claim's direction; a \
             difference this size between single-seed runs may be noise.",
            pct(gqa.val_bpb, mha.val_bpb)
        )
    };
    let order = if (d_mqa - d_gqa).abs() < 0.005 {
        format!(
            "MQA ends within 0.5% of GQA ({:.4} bits per byte, {} against MHA), a difference \
             these single-seed runs cannot resolve; the paper found MQA somewhat worse than GQA",
            mqa.val_bpb,
            pct(mqa.val_bpb, mha.val_bpb)
        )
    } else if d_mqa > d_gqa {
        format!(
            "MQA loses more than GQA ({:.4} bits per byte, {} against MHA), as the paper found",
            mqa.val_bpb,
            pct(mqa.val_bpb, mha.val_bpb)
        )
    } else {
        format!(
            "MQA does better than GQA here ({:.4} bits per byte, {} against MHA), unlike the \
             paper's finding",
            mqa.val_bpb,
            pct(mqa.val_bpb, mha.val_bpb)
        )
    };
    let weights = mha.config.n_params() * 4;
    let cache_full = kv_bytes(mha) * mha.spec.ctx as u64;
    let d_speed = speeds[1] / speeds[0] - 1.0;
    let speed = if d_speed.abs() <= 0.1 {
        format!(
            "so GQA's smaller cache hardly moves the speed here ({}): a full-context MHA cache \
             is {} beside {} of f32 weights, and decoding a token reads mostly weights",
            pct(speeds[1], speeds[0]),
            format::bytes(cache_full as f64),
            format::bytes(weights as f64)
        )
    } else {
        format!(
            "GQA {} against MHA, more than the cache explains at this size (a full-context MHA \
             cache is {} beside {} of f32 weights, which every token reads): timing on this \
             shared machine is noisy (see *Machine*)",
            pct(speeds[1], speeds[0]),
            format::bytes(cache_full as f64),
            format::bytes(weights as f64)
        )
    };
    format!(
        "**Claim (Llama 2, §2.2 and appendix A.2.1): GQA gives a smaller KV cache at nearly the \
         same quality.** Measured: GQA's cache is {} bytes per token against MHA's {} ({}), and \
         its validation loss {:.4} bits per byte against {:.4} ({}). {verdict} {order}.\n\n\
         **Speed.** Greedy decoding ran at {:.0} (MHA), {:.0} (GQA) and {:.0} (MQA) tokens/s, \
         {speed}. The paper's speed argument is for large batches and long contexts, where the \
         cache outgrows the weights.",
        format::thousands(kv_bytes(gqa)),
        format::thousands(kv_bytes(mha)),
        pct(kv_bytes(gqa) as f64, kv_bytes(mha) as f64),
        gqa.val_bpb,
        mha.val_bpb,
        pct(gqa.val_bpb, mha.val_bpb),
        speeds[0],
        speeds[1],
        speeds[2],
    )
}

fn bars(id: &str, title: &str, x_title: &str, runs: &[RunResult], values: &[f64]) -> BarPanel {
    let bars = runs
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, (r, v))| Bar {
            label: r.spec.name.to_uppercase(),
            color: PALETTE[i % PALETTE.len()],
            value: Some(*v),
            data: vec![("run".into(), r.spec.name.clone())],
        })
        .collect();
    BarPanel::new(id, title, x_title).group(BarGroup {
        heading: "attention".into(),
        bars,
    })
}

fn summary_svg(runs: &[RunResult], speeds: &[f64]) -> String {
    let bpb: Vec<f64> = runs.iter().map(|r| r.val_bpb).collect();
    let kv: Vec<f64> = runs.iter().map(|r| kv_bytes(r) as f64).collect();
    let mut quality = bars(
        "bpb",
        "Quality",
        "validation bits per byte (lower is better)",
        runs,
        &bpb,
    );
    quality.value_label = |v| format!("{v:.4}");
    let memory = bars(
        "kv",
        "KV cache",
        "bytes per token of context (f16)",
        runs,
        &kv,
    );
    let speed = bars(
        "decode",
        "Decoding",
        "greedy tokens per second (this machine)",
        runs,
        speeds,
    );
    let mut fig = Figure::new();
    fig.bars(quality).bars(memory).bars(speed);
    fig.to_svg()
}

fn curves_svg(runs: &[RunResult]) -> String {
    let pts = |r: &RunResult| -> Vec<(f64, f64)> {
        r.curve.iter().map(|&(s, _, b)| (s as f64, b)).collect()
    };
    let ys = runs.iter().flat_map(|r| r.curve.iter().map(|c| c.2));
    let (lo, hi) = ys.fold((f64::INFINITY, 0f64), |(l, h), y| (l.min(y), h.max(y)));
    let last = runs[0].spec.steps as f64;
    let x = Axis::linear(0.0, last, 1.0, &|v| format::count(v)).title("step");
    let y = Axis::linear(lo * 0.98, hi * 1.02, 0.0, &|v| format!("{v:.2}"))
        .title("validation bits per byte");
    let mut panel = LinePanel::new("curves", "Validation loss during training", x, y);
    for (i, r) in runs.iter().enumerate() {
        panel = panel.series(
            Series::line(r.spec.name.clone(), Style::nth(i), pts(r))
                .marks(Marks::Every)
                .end_label(r.spec.name.to_uppercase()),
        );
    }
    let legend = Legend::new(None);
    let legend = runs.iter().enumerate().fold(legend, |l, (i, r)| {
        l.entry(camelid_plot::LegendEntry::new(
            r.spec.name.clone(),
            format!(
                "{}: {} query heads on {} kv heads, FFN {}",
                r.spec.name.to_uppercase(),
                r.config.n_heads,
                r.config.n_kv_heads,
                r.config.d_ff
            ),
            Style::nth(i),
        ))
    });
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    fig.to_svg()
}
