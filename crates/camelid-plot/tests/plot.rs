//! The chart library, read back as a viewer would lay it out: axes, ticks, labels, series,
//! bars, legends that fit, escaping. Expected values are hand-checkable facts: tick values of
//! round scales, equal spacing of decades on a log axis, bar lengths in proportion to values.

use camelid_plot::format;
use camelid_plot::read::{El, narrow_text_width, parse, texts_outside};
use camelid_plot::{
    Axis, Bar, BarGroup, BarPanel, Figure, Legend, LegendEntry, LinePanel, Marks, Series, Style,
    fit_text, text_width,
};

fn num(e: &El, k: &str) -> f64 {
    e.num(k)
        .unwrap_or_else(|| panic!("<{}> has no numeric {k}", e.name))
}

/// The picture's width and height, checked against its viewBox.
fn size(svg: &El) -> (f64, f64) {
    svg.picture_size()
        .expect("an svg with width and height of its viewBox")
}

/// Every text inside the picture.
fn assert_inside(svg: &El) {
    size(svg);
    let out = texts_outside(svg);
    assert!(out.is_empty(), "drawn outside the picture: {out:?}");
}

/// The points of a polyline, in SVG coordinates.
fn points(p: &El) -> Vec<(f64, f64)> {
    p.attr("points")
        .unwrap()
        .split(' ')
        .map(|xy| {
            let (x, y) = xy.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

fn ticks(a: &Axis) -> Vec<f64> {
    a.ticks().iter().map(|t| t.0).collect()
}

#[test]
fn axes_tick_at_round_values() {
    // 0..9.3 in about five steps: a fifth of the span is 1.86, the next round step is 2.
    let a = Axis::linear(0.0, 9.3, 0.0, &format::number);
    assert_eq!(ticks(&a), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    assert_eq!((a.lo(), a.hi(), a.is_log()), (0.0, 10.0, false));
    assert_eq!(a.frac(5.0), 0.5);
    // A minimum step wins over the round one: chunks are counted in whole numbers.
    assert_eq!(
        ticks(&Axis::linear(1.0, 3.0, 1.0, &format::number)),
        [1.0, 2.0, 3.0]
    );

    // Powers of two from 512 to 128k are nine ticks, under a limit of twelve; under a limit of
    // five every other power.
    let p = Axis::pow2(512.0, 131072.0, 12, &format::count_k);
    let labels: Vec<&str> = p.ticks().iter().map(|t| t.1.as_str()).collect();
    assert_eq!(
        labels,
        ["512", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"]
    );
    let q = Axis::pow2(512.0, 131072.0, 5, &format::count_k);
    assert_eq!(ticks(&q), [512.0, 2048.0, 8192.0, 32768.0, 131072.0]);

    // 1, 2, 5 per decade, from the tick at or below 3 to the one at or above 700.
    let l = Axis::log10(3.0, 700.0, &format::number);
    assert_eq!(
        ticks(&l),
        [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
    );
    // The geometric mean of the ends is half way on a log axis.
    assert!((l.frac((2.0f64 * 1000.0).sqrt()) - 0.5).abs() < 1e-12);
    // A single value still makes an axis with a length.
    let one = Axis::log10(5.0, 5.0, &format::number);
    assert!(one.hi() > one.lo());
}

#[test]
fn labels_say_values_in_their_units() {
    assert_eq!(format::bytes(2.0 * (1u64 << 30) as f64), "2.00 GiB");
    assert_eq!(format::bytes(16.0 * (1u64 << 30) as f64), "16.0 GiB");
    assert_eq!(format::bytes(512.0 * 1024.0), "512 KiB");
    assert_eq!(format::bytes(100.0), "100 B");
    assert_eq!(
        format::bytes_pow2(1u64.wrapping_shl(20) as f64 * 256.0),
        "256 MiB"
    );
    assert_eq!(format::count(6_738_415_616.0), "6.74B");
    assert_eq!(format::count(134_515_008.0), "135M");
    assert_eq!(format::count(405_853_388_800.0), "406B");
    assert_eq!(format::count(999.0), "999");
    assert_eq!(format::count_k(131072.0), "128k");
    assert_eq!(format::count_k(1000.0), "1000");
    assert_eq!(format::thousands(173942), "173,942");
    assert_eq!(format::thousands(999), "999");
    assert_eq!(format::number(0.5), "0.50");
    assert_eq!(format::number(2.5), "2.5");
    assert_eq!(format::number(250.4), "250");
}

#[test]
fn text_is_cut_to_fit_and_escaped() {
    let long = "a model name far too long for the room it is given";
    let cut = fit_text(long, 12.0, 100.0);
    assert!(
        cut.ends_with('…') && text_width(&cut, 12.0) <= 100.0,
        "{cut}"
    );
    assert_eq!(fit_text("short", 12.0, 100.0), "short");
    // Markup in names stays text: it reads back as written.
    let name = r#"<b> & "quoted" 'x'"#;
    let mut f = Figure::new();
    f.legend(Legend::new(Some(name)).entry(LegendEntry::new(name, name, Style::nth(0))));
    let svg = parse(&f.to_svg()).unwrap();
    let entry = svg.class("legend-entry")[0];
    assert_eq!(entry.attr("data-key"), Some(name));
    assert_eq!(entry.texts("legend-label"), [name]);
}

/// A training run's loss curves, as `camelid train` draws them: train and validation loss in
/// bits per byte against step, a legend under the panel.
#[test]
fn loss_curves_are_lines_on_their_axes() {
    let train: Vec<(f64, f64)> = (0..=20)
        .map(|s| (s as f64 * 50.0, 4.0 / (1.0 + s as f64 * 0.3)))
        .collect();
    let val: Vec<(f64, f64)> = (0..=4)
        .map(|s| (s as f64 * 250.0, 4.2 / (1.0 + s as f64 * 1.4)))
        .collect();
    let x = Axis::linear(0.0, 1000.0, 1.0, &format::number).title("step (batches of 16k tokens)");
    let y = Axis::linear(0.0, 4.2, 0.0, &format::number).title("loss (bits per byte)");
    let s = [
        Series::line("train", Style::nth(0), train.clone()),
        Series::line("validation", Style::nth(1), val)
            .marks(Marks::Every)
            .end_label("0.58"),
    ];
    let mut f = Figure::new();
    f.lines(
        LinePanel::new("loss", "Loss during training", x, y)
            .series(s[0].clone())
            .series(s[1].clone())
            .legend(Legend::of(&s)),
    );
    let svg = parse(&f.to_svg()).unwrap();
    assert_inside(&svg);
    let panels = svg.class("panel");
    assert_eq!(panels.len(), 1);
    assert_eq!(panels[0].attr("id"), Some("loss"));
    assert_eq!(panels[0].texts("panel-title"), ["Loss during training"]);
    assert_eq!(
        panels[0].texts("axis-title"),
        ["loss (bits per byte)", "step (batches of 16k tokens)"]
    );
    let tick_texts = panels[0].texts("tick");
    for t in ["0", "200", "1000", "1", "4", "5"] {
        assert!(
            tick_texts.iter().any(|x| x == t),
            "{t} not in {tick_texts:?}"
        );
    }
    let series = panels[0].class("series");
    let keys: Vec<&str> = series.iter().map(|s| s.attr("data-key").unwrap()).collect();
    assert_eq!(keys, ["train", "validation"]);
    // The train line: one point per step, left to right, falling as the loss falls; its ends
    // on the axes' corners where the data are (step 0 at the y axis).
    let line = series[0].all(&|e| e.name == "polyline");
    assert_eq!(line.len(), 1);
    let pts = points(line[0]);
    assert_eq!(pts.len(), train.len());
    assert!(
        pts.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1),
        "{pts:?}"
    );
    // Equal steps are equal distances: a linear axis.
    let dx: Vec<f64> = pts.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(dx.iter().all(|d| (d - dx[0]).abs() < 0.11), "{dx:?}");
    // The axis line starts where step 0 is drawn.
    let axes = panels[0].all(&|e| e.name == "path")[0]
        .attr("d")
        .unwrap()
        .to_string();
    assert!(
        axes.starts_with(&format!("M{:.1} ", pts[0].0)),
        "{axes} vs {pts:?}"
    );
    // No marks on the train line, one per point on the validation one, and its end label.
    assert!(series[0].all(&|e| e.name == "circle").is_empty());
    assert_eq!(series[1].all(&|e| e.name == "circle").len(), 5);
    assert_eq!(panels[0].texts("end-label"), ["0.58"]);
    // The legend below the panel, an entry per series.
    let legend = svg.class("legend");
    assert_eq!(legend.len(), 1);
    let entry_keys: Vec<&str> = legend[0]
        .class("legend-entry")
        .iter()
        .map(|e| e.attr("data-key").unwrap())
        .collect();
    assert_eq!(entry_keys, ["train", "validation"]);
    assert!(num(legend[0].class("legend-box")[0], "y") > pts[0].1);
}

/// An experiment report's loss against model size: a scatter on log axes, where sizes a decade
/// apart are equally far apart.
#[test]
fn a_scatter_on_log_axes_spaces_decades_evenly() {
    let pts = vec![(1e6, 3.1), (1e7, 2.2), (1e8, 1.6)];
    let x = Axis::log10(1e6, 1e8, &format::count).title("parameters (log scale)");
    let y =
        Axis::log10(1.6, 3.1, &format::number).title("validation loss (bits per byte, log scale)");
    assert_eq!(x.ticks().first().unwrap().1, "1.00M");
    assert_eq!(x.ticks().last().unwrap().1, "100M");
    let mut f = Figure::new().width(600.0);
    f.lines(
        LinePanel::new("size", "Loss against size", x, y).series(Series::scatter(
            "runs",
            Style::nth(2),
            pts,
        )),
    );
    let svg = parse(&f.to_svg()).unwrap();
    assert_eq!(size(&svg).0, 600.0);
    assert_inside(&svg);
    let s = svg.class("series");
    assert!(
        s[0].all(&|e| e.name == "polyline").is_empty(),
        "a scatter has no line"
    );
    let dots: Vec<(f64, f64)> = s[0]
        .all(&|e| e.name == "circle")
        .iter()
        .map(|c| (num(c, "cx"), num(c, "cy")))
        .collect();
    assert_eq!(dots.len(), 3);
    assert!(
        ((dots[1].0 - dots[0].0) - (dots[2].0 - dots[1].0)).abs() < 0.11,
        "{dots:?}"
    );
    assert!(
        dots[0].1 < dots[1].1 && dots[1].1 < dots[2].1,
        "higher loss drawn higher"
    );
}

#[test]
fn bars_are_proportional_with_values_and_gaps_shown() {
    let bar = |model: &str, v: Option<f64>, i: usize| Bar {
        label: model.to_string(),
        value: v,
        color: Style::nth(i).color,
        data: vec![
            ("model".into(), model.into()),
            ("text".into(), "en.txt".into()),
        ],
    };
    let mut panel = BarPanel::new(
        "tokens",
        "Tokens per 1,000 characters",
        "tokens per 1,000 characters",
    );
    panel.missing = "n/a (no tokenizer)".into();
    let panel = panel.group(BarGroup {
        heading: "en.txt (1,234 characters)".into(),
        bars: vec![
            bar("a", Some(300.0), 0),
            bar("b", Some(150.0), 1),
            bar("c", None, 2),
        ],
    });
    let mut f = Figure::new();
    f.legend(Legend::new(Some("Models")).entry(LegendEntry::new("a", "a", Style::nth(0))));
    f.bars(panel);
    let svg = parse(&f.to_svg()).unwrap();
    assert_inside(&svg);
    let p = &svg.class("panel")[0];
    assert_eq!(p.texts("group-title"), ["en.txt (1,234 characters)"]);
    assert_eq!(p.texts("axis-title"), ["tokens per 1,000 characters"]);
    let bars = p.class("bar");
    assert_eq!(bars.len(), 3);
    let width = |b: &El| num(b.all(&|e| e.name == "rect")[0], "width");
    assert!((width(bars[0]) / width(bars[1]) - 2.0).abs() < 1e-3);
    assert_eq!(bars[0].attr("data-model"), Some("a"));
    assert_eq!(bars[0].attr("data-text"), Some("en.txt"));
    assert_eq!(bars[0].attr("data-value"), Some("300"));
    assert_eq!(bars[0].texts("value"), ["300"]);
    assert_eq!(bars[2].attr("data-value"), Some("n/a"));
    assert!(bars[2].all(&|e| e.name == "rect").is_empty());
    assert_eq!(bars[2].texts("value"), ["n/a (no tokenizer)"]);
}

/// Many long labels: the legend takes as many columns as fit, and every label stays in its box
/// and the box in the picture.
#[test]
fn legends_fit_the_picture() {
    let mut l = Legend::new(Some("Models"));
    for i in 0..11 {
        let label = format!(
            "model-{i}: GQA 8:1, KV 128 KiB/token, context 128k{}",
            "x".repeat(i * 10)
        );
        l = l.entry(LegendEntry::new(format!("m{i}"), label, Style::nth(i)));
    }
    let mut f = Figure::new();
    f.legend(l);
    let svg = parse(&f.to_svg()).unwrap();
    let (w, h) = size(&svg);
    assert_inside(&svg);
    let legend = svg.class("legend")[0];
    let b = legend.class("legend-box")[0];
    let (bx, by) = (num(b, "x"), num(b, "y"));
    let (br, bb) = (bx + num(b, "width"), by + num(b, "height"));
    assert!(bx >= 0.0 && by >= 0.0 && br <= w && bb <= h);
    let labels = legend.class("legend-label");
    assert_eq!(labels.len(), 11);
    assert!(
        labels.iter().any(|t| t.text.ends_with('…')),
        "the longest are cut"
    );
    for t in labels {
        let right = num(t, "x") + narrow_text_width(&t.text, num(t, "font-size"));
        assert!(right <= br && num(t, "y") <= bb, "{:?}", t.text);
    }
    // Colours cycle past the palette with the patterns swapped.
    assert_eq!(Style::nth(8).color, Style::nth(0).color);
    assert_ne!(Style::nth(8).dash, Style::nth(0).dash);
}

#[test]
fn the_reader_refuses_what_is_not_well_formed() {
    assert!(parse("<svg><g></svg>").is_err());
    assert!(parse("<svg><g>").is_err());
    assert!(parse("<svg></svg><svg></svg>").is_err());
    assert!(parse("<svg x=1></svg>").is_err());
    assert!(parse("<svg></svg> trailing").is_err());
    let e = parse("<svg><g></h></svg>").unwrap_err();
    assert!(e.to_string().contains("</h> closes <g>"), "{e}");
    assert_eq!(
        parse("<svg a=\"1\"><t>x &amp; y</t></svg>")
            .unwrap()
            .children[0]
            .text,
        "x & y"
    );
}
