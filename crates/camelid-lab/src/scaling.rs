//! Tokens against parameters at one training compute: a sweep of model sizes, each trained on
//! the tokens the budget `C = 6·N·D` leaves it (the Chinchilla curve), then the LLaMA argument
//! drawn on it: a model smaller than the compute-optimal one, trained longer, reaching its loss
//! at a lower cost per generated token.

use camelid_plot::{Axis, Figure, Legend, LegendEntry, LinePanel, Marks, Series, Style, format};

use crate::report::{Report, pct};
use crate::run::{Lab, RunResult, RunSpec};
use crate::{LabError, Study};

/// The smaller model's run is this many times its budget.
const LONG: u64 = 3;
/// Chinchilla's compute-optimal tokens per parameter (Hoffmann et al. 2022, table 3: 20.2 at
/// 1B parameters and about 20 across their fits).
const CHINCHILLA_TOKENS_PER_PARAM: f64 = 20.0;

pub fn run(lab: &mut Lab) -> Result<Report, LabError> {
    let smoke = lab.opts.smoke;
    // (width, layers, heads, FFN): heads of 32 dimensions, FFN about 2.7·width (Meta's rule).
    let sizes: &[(usize, usize, usize, usize)] = if smoke {
        &[(8, 1, 2, 16), (16, 1, 2, 32), (32, 1, 2, 64)]
    } else {
        &[
            (64, 2, 2, 176),
            (96, 3, 3, 256),
            (128, 4, 4, 352),
            (192, 6, 6, 512),
        ]
    };
    let ctx = if smoke { 8 } else { 128 };
    let spec = |i: usize, steps: u64, long: bool| {
        let (d, l, h, ff) = sizes[i];
        RunSpec {
            name: format!("d{d}-l{l}{}", if long { "-long" } else { "" }),
            d_model: d,
            n_layers: l,
            n_heads: h,
            n_kv_heads: h,
            d_ff: ff,
            ctx,
            steps,
            seqs_per_step: if smoke { 4 } else { 16 },
            micro: if smoke { 2 } else { 8 },
            lr: 2e-3,
            eval_every: if long {
                (steps / LONG / 2).max(1)
            } else {
                (steps / 10).max(1)
            },
            eval_tokens: if smoke { 4 * ctx } else { 256 * ctx },
        }
    };
    let n_vocab = lab.tok.n_vocab();
    let nmm: Vec<f64> = (0..sizes.len())
        .map(|i| Ok(spec(i, 1, false).config(n_vocab)?.matmul_params() as f64))
        .collect::<Result<_, LabError>>()?;
    let reference = sizes.len() - 1;
    // Steps of size i for the reference's steps: the same 6·N·D.
    let steps_of =
        |i: usize, s_ref: u64| ((s_ref as f64 * nmm[reference] / nmm[i]).round() as u64).max(1);
    let s_ref = match lab.opts.steps {
        Some(s) => s,
        None => {
            let mut per_run = Vec::new();
            for i in 0..sizes.len() {
                let t = lab.seconds_per_step(&spec(i, 3, false))?;
                per_run.push(t * nmm[reference] / nmm[i]);
            }
            let worst = per_run.iter().copied().fold(0.0, f64::max);
            let units = per_run.iter().sum::<f64>() + LONG as f64 * worst;
            (lab.budget_secs() / units).floor().max(2.0) as u64
        }
    };
    let mut runs = Vec::new();
    for i in 0..sizes.len() {
        runs.push(lab.train(&spec(i, steps_of(i, s_ref), false), None)?);
    }
    let best = (0..runs.len())
        .min_by(|&a, &b| runs[a].val_loss.total_cmp(&runs[b].val_loss))
        .unwrap_or(0);
    // The LLaMA argument needs a model smaller than the optimum.
    let long = if best > 0 {
        Some(lab.train(
            &spec(best - 1, LONG * steps_of(best - 1, s_ref), true),
            None,
        )?)
    } else {
        None
    };
    Ok(report(lab, s_ref, &runs, best, long.as_ref()))
}

/// FLOPs in scientific notation with three significant digits (`2.97e12`).
fn flops(v: f64) -> String {
    format!("{v:.2e}")
}

fn tokens_per_param(r: &RunResult) -> f64 {
    r.tokens as f64 / r.config.n_params() as f64
}

/// FLOPs per generated token at half the training context.
fn infer_flops(r: &RunResult) -> f64 {
    r.config.flops_per_token(r.spec.ctx / 2)
}

fn report(
    lab: &Lab,
    s_ref: u64,
    runs: &[RunResult],
    best: usize,
    long: Option<&RunResult>,
) -> Report {
    let budget = runs[runs.len() - 1].train_flops();
    let mut rep = Report::new(
        Study::Scaling,
        "Tokens against parameters at one training compute",
        lab,
        s_ref,
        &format!(
            "Chinchilla (Hoffmann et al. 2022) found that for a given training compute the \
             lowest loss comes from about {CHINCHILLA_TOKENS_PER_PARAM:.0} training tokens per \
             parameter. LLaMA (Touvron et al. 2023, §1) argued for going past that point: a \
             smaller model trained on more tokens than compute-optimal reaches the same loss \
             and is cheaper at every token it later generates. Here {} model sizes are each \
             trained for the same compute, {} FLOPs by the 6·N·D rule (N the parameters that \
             multiply activations, D the training tokens), then the size below the best one is \
             trained on {LONG}× its share.",
            runs.len(),
            flops(budget)
        ),
    );
    rep.h2("Results");
    let mut all: Vec<&RunResult> = runs.iter().collect();
    all.extend(long);
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.spec.name.clone(),
                format::thousands(r.config.n_params()),
                format::thousands(r.tokens),
                format!("{:.1}", tokens_per_param(r)),
                flops(r.train_flops()),
                format!("{:.4}", r.val_bpb),
                format!("{:.4}", r.val_loss),
                flops(infer_flops(r)),
            ]
        })
        .collect();
    rep.table(
        &[
            "run",
            "parameters",
            "training tokens",
            "tokens per parameter",
            "training FLOPs (6·N·D)",
            "validation bits per byte",
            "validation loss (nats)",
            "FLOPs per generated token",
        ],
        &rows,
    );
    let b = &runs[best];
    rep.chart(
        "scaling-loss-vs-size.svg",
        "final validation loss against parameters at one training compute",
        size_svg(runs, best, long),
        &format!(
            "Each point on the line is a model trained with the same compute; bigger models see \
             fewer tokens, so the curve bottoms out at the compute-optimal size, here {} ({} \
             parameters, {:.4} bits per byte).{}",
            b.spec.name,
            format::thousands(b.config.n_params()),
            b.val_bpb,
            match long {
                Some(l) => format!(
                    " The separate point is {} trained on {LONG}× the tokens: {:.4} bits per \
                     byte at {} parameters.",
                    l.spec.name,
                    l.val_bpb,
                    format::thousands(l.config.n_params())
                ),
                None => String::new(),
            }
        ),
    );
    rep.chart(
        "scaling-loss-vs-flops.svg",
        "validation loss against training FLOPs for each run",
        flops_svg(runs, long, budget),
        "Every run's validation loss against the compute it had spent when evaluated, on \
         logarithmic compute. Where the lines cross is where a bigger model starts to pay for \
         its cost; the lowest line at the budget is the compute-optimal size.",
    );
    rep.h2("Against the papers");
    rep.para(&chinchilla_claim(runs, best));
    rep.para(&llama_claim(runs, best, long));
    rep.add_runs(runs);
    rep.add_runs(&long.into_iter().cloned().collect::<Vec<_>>());
    rep.results = serde_json::json!({
        "budget_flops": budget,
        "best": runs[best].spec.name,
        "long": long.map(|l| l.spec.name.clone()),
    });
    rep
}

fn chinchilla_claim(runs: &[RunResult], best: usize) -> String {
    let r = tokens_per_param(&runs[best]);
    // Bigger models see fewer tokens per parameter: the optimum's neighbours bracket it.
    let above = runs.get(best + 1).map(tokens_per_param);
    let below = best.checked_sub(1).map(|i| tokens_per_param(&runs[i]));
    let c = CHINCHILLA_TOKENS_PER_PARAM;
    let verdict = match (below, above) {
        (Some(hi), Some(lo)) if (lo..=hi).contains(&c) => {
            "agrees: the rule's ratio lies between the optimum's neighbours in the sweep"
        }
        (Some(_), Some(lo)) if c < lo => {
            "disagrees at this scale: the optimum trains on more tokens per parameter than the \
             rule says, and so does its larger neighbour"
        }
        (Some(_), Some(_)) => {
            "disagrees at this scale: the optimum trains on fewer tokens per parameter than the \
             rule says, and so does its smaller neighbour"
        }
        (None, _) if r < c => {
            "leans the rule's way without bracketing it: the optimum is the sweep's smallest \
             size, and the rule asks for still more tokens per parameter, a smaller model still"
        }
        (_, None) if r > c => {
            "leans the rule's way without bracketing it: the optimum is the sweep's largest \
             size, and the rule asks for fewer tokens per parameter, a larger model still"
        }
        _ => {
            "disagrees at this scale: the optimum sits at the edge of the sweep on the side the \
             rule does not point to"
        }
    };
    format!(
        "**Claim (Chinchilla): about {c:.0} tokens per parameter is compute-optimal.** The best \
         model of the sweep, {}, saw {r:.1} tokens per parameter{}{}. This {verdict}. The sweep \
         is coarse ({} sizes) and each size has one seed.",
        runs[best].spec.name,
        below.map_or(String::new(), |v| format!(" (its smaller neighbour {v:.1}")),
        match (below, above) {
            (Some(_), Some(a)) => format!(", its larger one {a:.1})"),
            (Some(_), None) => ")".into(),
            (None, Some(a)) => format!(" (its larger neighbour {a:.1})"),
            (None, None) => String::new(),
        },
        runs.len()
    )
}

fn llama_claim(runs: &[RunResult], best: usize, long: Option<&RunResult>) -> String {
    let b = &runs[best];
    let Some(l) = long else {
        return format!(
            "**Claim (LLaMA): a smaller model trained on more tokens reaches the compute-optimal \
             model's loss at a lower inference cost.** Not tested here: the smallest size of \
             the sweep, {}, is already the best at this budget, so there is no smaller size to \
             train longer (a larger budget moves the optimum up).",
            b.spec.name
        );
    };
    let budget_tokens = l.tokens / LONG;
    let crossing = l
        .curve
        .iter()
        .find(|c| c.1 <= b.val_loss)
        .map(|c| c.0 * (l.spec.seqs_per_step * l.spec.ctx) as u64);
    let saving = format!(
        "{} has {:.1}× fewer parameters than {} ({} against {}) and costs {} FLOPs per \
         generated token against {} ({})",
        l.spec.name,
        b.config.n_params() as f64 / l.config.n_params() as f64,
        b.spec.name,
        format::thousands(l.config.n_params()),
        format::thousands(b.config.n_params()),
        flops(infer_flops(l)),
        flops(infer_flops(b)),
        pct(infer_flops(l), infer_flops(b))
    );
    let outcome = if l.val_loss <= b.val_loss {
        format!(
            "This agrees: trained on {LONG}× its compute-optimal share ({} tokens instead of \
             {}), it ends at {:.4} nats against the optimum's {:.4}{}. {saving}.",
            format::thousands(l.tokens),
            format::thousands(budget_tokens),
            l.val_loss,
            b.val_loss,
            crossing.map_or(String::new(), |t| format!(
                ", and already matched it at {} tokens ({:.1}× its share; an evaluation \
                 partway through a longer schedule, so if anything late)",
                format::thousands(t),
                t as f64 / budget_tokens as f64
            ))
        )
    } else {
        format!(
            "This disagrees at this budget: trained on {LONG}× its share ({} tokens), it ends \
             at {:.4} nats, still {} above the optimum's {:.4}; the smaller model would need \
             more than {LONG}× the training compute to match. Had it matched, {saving}.",
            format::thousands(l.tokens),
            l.val_loss,
            pct(l.val_loss, b.val_loss),
            b.val_loss
        )
    };
    format!(
        "**Claim (LLaMA): a smaller model trained on more tokens reaches the compute-optimal \
         model's loss at a lower inference cost.** The optimum is {} ({:.4} nats); the next \
         size down is {}. {outcome}",
        b.spec.name, b.val_loss, l.spec.name
    )
}

fn size_svg(runs: &[RunResult], best: usize, long: Option<&RunResult>) -> String {
    let pts: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| (r.config.n_params() as f64, r.val_bpb))
        .collect();
    let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    ys.extend(long.map(|l| l.val_bpb));
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, 0f64), |(l, h), &y| (l.min(y), h.max(y)));
    let (xlo, xhi) = (pts[0].0, pts[pts.len() - 1].0);
    let x = Axis::log10(xlo * 0.8, xhi * 1.25, &|v| format::count(v)).title("parameters");
    let y = Axis::linear(lo * 0.98, hi * 1.02, 0.0, &|v| format!("{v:.2}"))
        .title("validation bits per byte");
    let mut panel = LinePanel::new("loss-vs-size", "Loss against size at one compute", x, y);
    let sweep = Style::nth(0);
    panel = panel.series(
        Series::line("sweep", sweep, pts.clone())
            .marks(Marks::Every)
            .end_label("same compute"),
    );
    let optimum = Style::nth(2);
    panel = panel.series(
        Series::scatter("optimum", optimum, vec![pts[best]])
            .end_label(runs[best].spec.name.clone()),
    );
    let mut legend = Legend::new(None)
        .entry(LegendEntry::new(
            "sweep",
            "each size trained with the same FLOPs",
            sweep,
        ))
        .entry(LegendEntry::new(
            "optimum",
            "the compute-optimal size",
            optimum,
        ));
    if let Some(l) = long {
        let st = Style::nth(1);
        panel = panel.series(
            Series::scatter("long", st, vec![(l.config.n_params() as f64, l.val_bpb)])
                .end_label(format!("{} ({LONG}× tokens)", l.spec.name)),
        );
        legend = legend.entry(LegendEntry::new(
            "long",
            format!("the next size down, trained on {LONG}× the tokens"),
            st,
        ));
    }
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    fig.to_svg()
}

fn flops_svg(runs: &[RunResult], long: Option<&RunResult>, budget: f64) -> String {
    let mut all: Vec<&RunResult> = runs.iter().collect();
    all.extend(long);
    let flops_at = |r: &RunResult, step: u64| {
        6.0 * r.config.matmul_params() as f64
            * (step * (r.spec.seqs_per_step * r.spec.ctx) as u64) as f64
    };
    let series: Vec<Vec<(f64, f64)>> = all
        .iter()
        .map(|r| {
            r.curve
                .iter()
                .map(|&(s, _, b)| (flops_at(r, s), b))
                .collect()
        })
        .collect();
    let pts = series.iter().flatten();
    let (xlo, xhi) = pts
        .clone()
        .fold((f64::INFINITY, 0f64), |(l, h), p| (l.min(p.0), h.max(p.0)));
    let (lo, hi) = pts.fold((f64::INFINITY, 0f64), |(l, h), p| (l.min(p.1), h.max(p.1)));
    let x = Axis::log10(xlo, xhi, &|v| flops(v)).title("training FLOPs (6·N·D)");
    let y = Axis::linear(lo * 0.98, hi * 1.02, 0.0, &|v| format!("{v:.2}"))
        .title("validation bits per byte");
    let mut panel = LinePanel::new("loss-vs-flops", "Loss against training compute", x, y);
    let mut legend = Legend::new(None);
    for (i, (r, pts)) in all.iter().zip(series).enumerate() {
        let st = Style::nth(i);
        panel = panel.series(
            Series::line(r.spec.name.clone(), st, pts)
                .marks(Marks::Last)
                .end_label(r.spec.name.clone()),
        );
        legend = legend.entry(LegendEntry::new(
            r.spec.name.clone(),
            format!(
                "{}: {} parameters",
                r.spec.name,
                format::thousands(r.config.n_params())
            ),
            st,
        ));
    }
    let edge = Style::nth(7);
    panel = panel.series(Series::line(
        "budget",
        edge,
        vec![(budget, lo * 0.98), (budget, hi * 1.02)],
    ));
    legend = legend.entry(LegendEntry::new(
        "budget",
        "the sweep's compute budget",
        edge,
    ));
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    fig.to_svg()
}
