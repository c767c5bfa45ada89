//! The loss curve of a run, `DIR/loss.svg`: training and validation loss in bits per byte of
//! text against the step (bits per byte so that runs with different tokenizers compare), drawn
//! with camelid-plot from the run's `log.jsonl` (so a resumed run's curve is the whole run's).

use camelid_plot::{Axis, Figure, Legend, LinePanel, Marks, Series, Style, format};

/// The SVG of the log's `bpb` (every step) and `val_bpb` (evaluation steps); `None` when the log
/// has no step yet. Lines that are not JSON objects with a step are skipped.
pub fn loss_svg(log_jsonl: &str, title: &str) -> Option<String> {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for line in log_jsonl.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(step) = v["step"].as_f64() else {
            continue;
        };
        if let Some(b) = v["bpb"].as_f64().filter(|b| b.is_finite()) {
            train.push((step, b));
        }
        if let Some(b) = v["val_bpb"].as_f64().filter(|b| b.is_finite()) {
            val.push((step, b));
        }
    }
    let last = train.last().or(val.last())?.0;
    let ys = train.iter().chain(&val).map(|p| p.1);
    let (lo, hi) = ys.fold((f64::INFINITY, 0f64), |(l, h), y| (l.min(y), h.max(y)));
    let x = Axis::linear(0.0, last, 1.0, &|v| format::count(v)).title("step");
    let y = Axis::linear(lo.min(hi) * 0.95, hi * 1.02, 0.0, &|v| format!("{v:.2}"))
        .title("bits per byte");
    let mut panel = LinePanel::new("loss", title, x, y);
    let train_style = Style::nth(0);
    let val_style = Style::nth(1);
    let mut legend = Legend::new(None);
    if !train.is_empty() {
        panel = panel.series(Series::line("train", train_style, train));
        legend = legend.entry(camelid_plot::LegendEntry::new(
            "train",
            "train (each step)",
            train_style,
        ));
    }
    if !val.is_empty() {
        panel = panel.series(Series::line("validation", val_style, val).marks(Marks::Every));
        legend = legend.entry(camelid_plot::LegendEntry::new(
            "validation",
            "validation (held-out documents)",
            val_style,
        ));
    }
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    Some(fig.to_svg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_line_per_split_with_the_logged_points() {
        let log = "{\"step\":1,\"bpb\":4.5}\n{\"step\":2,\"bpb\":4.0,\"val_bpb\":4.2}\nnot json\n\
                   {\"step\":3,\"bpb\":3.5}\n{\"step\":4,\"bpb\":3.0,\"val_bpb\":3.3}\n";
        let svg = loss_svg(log, "a run").unwrap();
        let doc = camelid_plot::read::parse(&svg).unwrap();
        let series = doc.class("series");
        let keys: Vec<&str> = series.iter().filter_map(|s| s.attr("data-key")).collect();
        assert_eq!(keys, ["train", "validation"]);
        let dots = series[1].all(&|e| e.name == "circle").len();
        assert_eq!(dots, 2, "one mark per evaluation");
        assert_eq!(doc.texts("panel-title"), ["a run"]);
        assert!(loss_svg("", "empty").is_none());
    }
}
