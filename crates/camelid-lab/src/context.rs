//! Training context 256 vs 1024 at equal training tokens (Llama 2 doubled LLaMA's 2048 to 4096):
//! the validation loss at each position of 1024-token windows, for both models, says how much
//! the longer window buys and what the shorter model does past the positions it trained.

use camelid_plot::{Axis, Figure, Legend, LegendEntry, LinePanel, Marks, Series, Style, format};

use crate::report::{Report, pct};
use crate::run::{Lab, RunResult, RunSpec};
use crate::{LabError, Study};

pub fn run(lab: &mut Lab) -> Result<Report, LabError> {
    let smoke = lab.opts.smoke;
    let (d, layers, heads, ff) = if smoke {
        (16, 1, 2, 32)
    } else {
        (128, 4, 4, 352)
    };
    let (short, long) = if smoke { (8, 32) } else { (256, 1024) };
    // Equal tokens per step and per micro-batch at both lengths.
    let (step_tokens, micro_tokens) = if smoke { (64, 32) } else { (8192, 2048) };
    let spec = |ctx: usize, steps: u64| RunSpec {
        name: format!("ctx{ctx}"),
        d_model: d,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: heads,
        d_ff: ff,
        ctx,
        steps,
        seqs_per_step: step_tokens / ctx,
        micro: micro_tokens / ctx,
        lr: 2e-3,
        eval_every: (steps / 10).max(1),
        eval_tokens: if smoke { 4 * long } else { 32 * long },
    };
    let steps = match lab.opts.steps {
        Some(s) => s,
        None => {
            let t =
                lab.seconds_per_step(&spec(short, 3))? + lab.seconds_per_step(&spec(long, 3))?;
            crate::run::steps_for(lab.budget_secs(), t)
        }
    };
    let runs = [
        lab.train(&spec(short, steps), Some(long))?,
        lab.train(&spec(long, steps), Some(long))?,
    ];
    Ok(report(lab, steps, &runs))
}

/// Mean of `v` over positions `a..b`.
fn mean(v: &[f64], a: usize, b: usize) -> f64 {
    let s = &v[a.min(v.len())..b.min(v.len())];
    s.iter().sum::<f64>() / s.len().max(1) as f64
}

fn report(lab: &Lab, steps: u64, runs: &[RunResult; 2]) -> Report {
    let (s, l) = (&runs[0], &runs[1]);
    let (short, long) = (s.spec.ctx, l.spec.ctx);
    let sp = s.by_position.as_deref().unwrap_or(&[]);
    let lp = l.by_position.as_deref().unwrap_or(&[]);
    let mut rep = Report::new(
        Study::Context,
        "Context length: what a longer training window buys",
        lab,
        steps,
        &format!(
            "Llama 2 doubled LLaMA's context from 2,048 to 4,096 tokens. Here one model shape \
             ({} layers, width {}, {} heads) is trained twice on the same number of tokens \
             ({} each): once on windows of {short} tokens, once on windows of {long}. Both are \
             then scored at every position of the same {long}-token validation windows (mean \
             loss over {} windows), so the question is how much a token gains from the \
             context before it, and what a model does at positions it never trained.",
            s.config.n_layers,
            s.config.d_model,
            s.config.n_heads,
            format::thousands(s.tokens),
            (lab.shards.val.len().saturating_sub(1)) / long
        ),
    );
    let half = short / 2;
    rep.h2("Results");
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let p = r.by_position.as_deref().unwrap_or(&[]);
            vec![
                r.spec.name.clone(),
                r.spec.ctx.to_string(),
                format!("{} × {}", r.spec.seqs_per_step, r.spec.ctx),
                format::thousands(r.tokens),
                format!("{:.4}", r.val_bpb),
                format!("{:.3}", mean(p, 0, half)),
                format!("{:.3}", mean(p, half, short)),
                format!("{:.3}", mean(p, short, long)),
            ]
        })
        .collect();
    let h1 = format!("loss at 0–{}", half - 1);
    let h2 = format!("loss at {half}–{}", short - 1);
    let h3 = format!("loss at {short}–{}", long - 1);
    rep.table(
        &[
            "run",
            "training context",
            "sequences per step",
            "training tokens",
            "validation bits per byte (own context)",
            &h1,
            &h2,
            &h3,
        ],
        &rows,
    );
    rep.para("Losses by position are mean nats per token on the shared validation windows.");
    rep.chart(
        "context-by-position.svg",
        "validation loss against position for the two training contexts",
        by_position_svg(runs),
        &format!(
            "The loss of the token at each position of a {long}-token window, averaged over \
             positions in bins that widen with the position (log scale), for the model trained \
             on {short}-token windows and the one trained on {long}. The falling part of each \
             line is what earlier tokens teach the model; the {short}-token model's line past \
             position {short} ({:.3} nats on average against {:.3} before it) shows positions \
             its attention never saw in training.",
            mean(sp, short, long),
            mean(sp, half, short)
        ),
    );
    rep.chart(
        "context-curves.svg",
        "validation bits per byte against training tokens for both contexts",
        curves_svg(runs),
        &format!(
            "Validation loss during training, each model scored on windows of its own context, \
             against the tokens seen. At equal tokens the {long}-token model ends at {:.4} bits \
             per byte and the {short}-token one at {:.4} ({}).",
            l.val_bpb,
            s.val_bpb,
            pct(l.val_bpb, s.val_bpb)
        ),
    );
    rep.h2("Against the paper");
    rep.para(&claim(short, long, sp, lp));
    rep.add_runs(runs);
    rep.results = serde_json::json!({
        "by_position": {
            s.spec.name.clone(): sp,
            l.spec.name.clone(): lp,
        },
    });
    rep
}

fn claim(short: usize, long: usize, sp: &[f64], lp: &[f64]) -> String {
    let half = short / 2;
    let (l_far, l_near) = (mean(lp, short, long), mean(lp, half, short));
    let gain = if l_far < l_near {
        format!(
            "agrees: tokens at positions {short}–{} have a mean loss of {l_far:.3} nats against \
             {l_near:.3} at {half}–{} ({}), so the context beyond {short} tokens is used",
            long - 1,
            short - 1,
            pct(l_far, l_near)
        )
    } else {
        format!(
            "does not show here: tokens at positions {short}–{} have a mean loss of {l_far:.3} \
             nats against {l_near:.3} at {half}–{} ({}), no gain from the context beyond \
             {short} tokens at this scale",
            long - 1,
            short - 1,
            pct(l_far, l_near)
        )
    };
    let (s_in, l_in) = (mean(sp, 0, short), mean(lp, 0, short));
    let cost = if l_in <= s_in * 1.02 {
        format!(
            "agrees: within the first {short} positions the {long}-token model's loss is \
             {l_in:.3} against the {short}-token model's {s_in:.3} ({})",
            pct(l_in, s_in)
        )
    } else {
        format!(
            "disagrees at this scale: within the first {short} positions the {long}-token \
             model's loss is {l_in:.3} against the {short}-token model's {s_in:.3} ({}); with \
             equal tokens it saw a quarter as many window starts",
            pct(l_in, s_in)
        )
    };
    format!(
        "**Claim (Llama 2, §2.2 and appendix A.2.1): a longer context window lets the model use \
         more of the text, without losing quality on short inputs.** The first half {gain}. The \
         second half {cost}. Past position {short} the {short}-token model's loss goes to \
         {:.3} (from {:.3} at {half}–{}): a window has to be trained, not only allowed, which \
         is why each Llama generation trained (or fine-tuned) at its longer context.",
        mean(sp, short, long),
        mean(sp, half, short),
        short - 1
    )
}

/// Means over bins of positions that widen with the position (about 8 per doubling): `(centre
/// position counted from 1, mean loss)`.
fn binned(v: &[f64]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut a = 0;
    while a < v.len() {
        let b = (a + (a / 8).max(1)).min(v.len());
        out.push(((a + b + 1) as f64 / 2.0, mean(v, a, b)));
        a = b;
    }
    out
}

fn by_position_svg(runs: &[RunResult; 2]) -> String {
    let series: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| binned(r.by_position.as_deref().unwrap_or(&[])))
        .collect();
    let ys = series.iter().flatten().map(|p| p.1);
    let (lo, hi) = ys.fold((f64::INFINITY, 0f64), |(l, h), y| (l.min(y), h.max(y)));
    let long = runs[1].spec.ctx as f64;
    let x = Axis::log10(1.0, long, &|v| format::count(v)).title("position in the window");
    let y = Axis::linear(lo * 0.95, hi.min(lo * 3.0) * 1.02, 0.0, &|v| {
        format!("{v:.1}")
    })
    .title("validation loss (nats per token)");
    let mut panel = LinePanel::new("by-position", "Loss by position", x, y);
    let mut legend = Legend::new(None);
    for (i, (r, pts)) in runs.iter().zip(series).enumerate() {
        let style = Style::nth(i);
        // Points above the axis (the short model far past its window) are cut at its top.
        let cap = hi.min(lo * 3.0) * 1.02;
        let pts = pts.into_iter().map(|(x, y)| (x, y.min(cap))).collect();
        panel = panel
            .series(Series::line(r.spec.name.clone(), style, pts).end_label(r.spec.name.clone()));
        legend = legend.entry(LegendEntry::new(
            r.spec.name.clone(),
            format!("trained on {}-token windows", r.spec.ctx),
            style,
        ));
    }
    let short = runs[0].spec.ctx as f64;
    let edge = Style::nth(7);
    panel = panel.series(Series::line(
        "short-edge",
        edge,
        vec![(short, lo * 0.95), (short, hi.min(lo * 3.0))],
    ));
    legend = legend.entry(LegendEntry::new(
        "short-edge",
        format!("end of the {}-token training window", runs[0].spec.ctx),
        edge,
    ));
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    fig.to_svg()
}

fn curves_svg(runs: &[RunResult; 2]) -> String {
    let tokens_at =
        |r: &RunResult, step: u64| (step * (r.spec.seqs_per_step * r.spec.ctx) as u64) as f64;
    let ys = runs.iter().flat_map(|r| r.curve.iter().map(|c| c.2));
    let (lo, hi) = ys.fold((f64::INFINITY, 0f64), |(l, h), y| (l.min(y), h.max(y)));
    let x = Axis::linear(0.0, runs[1].tokens as f64, 1.0, &|v| format::count(v))
        .title("training tokens");
    let y = Axis::linear(lo * 0.98, hi * 1.02, 0.0, &|v| format!("{v:.2}"))
        .title("validation bits per byte");
    let mut panel = LinePanel::new("curves", "Validation loss during training", x, y);
    let mut legend = Legend::new(None);
    for (i, r) in runs.iter().enumerate() {
        let pts = r
            .curve
            .iter()
            .map(|&(s, _, b)| (tokens_at(r, s), b))
            .collect();
        panel = panel.series(
            Series::line(r.spec.name.clone(), Style::nth(i), pts)
                .marks(Marks::Every)
                .end_label(r.spec.name.clone()),
        );
        legend = legend.entry(LegendEntry::new(
            r.spec.name.clone(),
            format!("context {} (scored on its own windows)", r.spec.ctx),
            Style::nth(i),
        ));
    }
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    fig.to_svg()
}
