//! Charts as SVG text, for people to read: a [`Figure`] is a column of blocks (legends, panels
//! of lines or points on linear or logarithmic [`Axis`]es, panels of horizontal bars grouped
//! under headings), each as tall as it needs, one fixed width.
//!
//! What it is for: `camelid compare --plot` (KV cache against context on log-log axes, tokens
//! per character, perplexity per chunk), training loss curves (train and validation loss
//! against step), experiment reports (loss against model size on log axes).
//!
//! What a reader can rely on in the output, for tests and tools ([`read`] parses it back):
//! every panel is a `<g class="panel" id=…>` with one `panel-title`, its axis titles
//! (`axis-title y-axis`, then `axis-title x-axis`) and `tick` labels; a line panel holds one
//! `<g class="series" data-key=…>` per series (a `polyline` for a line, `circle`s for its
//! marks) and `end-label`s; a bar panel one `<g class="bar" data-…>` per bar with its
//! `data-value`; a legend is a `<g class="legend">` with a `legend-box` and one `legend-entry`
//! (`data-key`) per entry, its `legend-label` cut to fit the box.
//!
//! Layout follows the usual advice for statistical graphics (Cleveland, "The Elements of
//! Graphing Data", 1985): one colour per thing across panels, stroke patterns on top of colour
//! so that overlapping lines stay apart, labels at the data where they fit, axis titles that
//! say the unit.

mod axis;
pub mod format;
pub mod read;
mod text;

use std::fmt::Write as _;

pub use axis::Axis;
pub use text::{fit_text, text_width, xml_escape};

/// Matplotlib's "tab10" colours: distinct at line width, and familiar from plots people read.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const FONT: f64 = 13.0;
const TICK_FONT: f64 = 12.0;
const TITLE_FONT: f64 = 16.0;
const MARGIN: f64 = 16.0;
/// Room left of a plot area for tick labels such as "256 MiB", and right of it for half of the
/// last x label.
const PLOT_LEFT: f64 = 84.0;
const PLOT_RIGHT_GAP: f64 = 40.0;
const PLOT_H: f64 = 280.0;

/// A stroke pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
    DashDot,
}

impl Dash {
    /// The `n`-th pattern, cycling through solid, dashed, dotted, dash-dot.
    pub fn nth(n: usize) -> Dash {
        [Dash::Solid, Dash::Dashed, Dash::Dotted, Dash::DashDot][n % 4]
    }

    fn attr(self) -> &'static str {
        match self {
            Dash::Solid => "",
            Dash::Dashed => r#" stroke-dasharray="9 5""#,
            Dash::Dotted => r#" stroke-dasharray="2 4""#,
            Dash::DashDot => r#" stroke-dasharray="12 4 2 4""#,
        }
    }
}

/// How a series or legend entry is drawn: a colour (any SVG colour) and a stroke pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: &'static str,
    pub dash: Dash,
}

impl Style {
    /// The style of the `i`-th of several things: a palette colour, every other one dashed, so
    /// that lines with the same course stay apart; once the palette runs out the colours repeat
    /// with the patterns swapped.
    pub fn nth(i: usize) -> Style {
        Style {
            color: PALETTE[i % PALETTE.len()],
            dash: Dash::nth((i + i / PALETTE.len()) % 2),
        }
    }
}

/// A boxed legend: a swatch and a label per entry, in as many equal columns as fit the figure's
/// width, filled column by column; labels too long for one column are cut with an ellipsis.
#[derive(Clone, Debug, Default)]
pub struct Legend {
    pub heading: Option<String>,
    pub entries: Vec<LegendEntry>,
}

/// One swatch and its label; `key` names what it stands for (written as `data-key`, for readers
/// of the file), `label` is what a person reads.
#[derive(Clone, Debug)]
pub struct LegendEntry {
    pub key: String,
    pub label: String,
    pub style: Style,
}

impl LegendEntry {
    pub fn new(key: impl Into<String>, label: impl Into<String>, style: Style) -> LegendEntry {
        LegendEntry {
            key: key.into(),
            label: label.into(),
            style,
        }
    }
}

impl Legend {
    pub fn new(heading: Option<&str>) -> Legend {
        Legend {
            heading: heading.map(String::from),
            entries: Vec::new(),
        }
    }

    /// An entry per series, its key and label the series' name.
    pub fn of(series: &[Series]) -> Legend {
        Legend {
            heading: None,
            entries: series
                .iter()
                .map(|s| LegendEntry::new(&s.name, &s.name, s.style))
                .collect(),
        }
    }

    pub fn entry(mut self, e: LegendEntry) -> Legend {
        self.entries.push(e);
        self
    }
}

/// Which points of a series get a dot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marks {
    None,
    /// The last point: where a line ends (a model's trained context).
    Last,
    /// Every point: measured data (per-chunk perplexity, a scatter).
    Every,
}

/// A named series of (x, y) points, drawn as a line, as points, or both.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
    /// Join the points with a line (a scatter has none).
    pub line: bool,
    pub marks: Marks,
    /// Written beside the last point, in the series' colour.
    pub end_label: Option<String>,
}

impl Series {
    /// A line through `points`, without marks.
    pub fn line(name: impl Into<String>, style: Style, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            style,
            points,
            line: true,
            marks: Marks::None,
            end_label: None,
        }
    }

    /// A dot at each of `points`, without a line.
    pub fn scatter(name: impl Into<String>, style: Style, points: Vec<(f64, f64)>) -> Series {
        Series {
            line: false,
            marks: Marks::Every,
            ..Series::line(name, style, points)
        }
    }

    pub fn marks(mut self, marks: Marks) -> Series {
        self.marks = marks;
        self
    }

    pub fn end_label(mut self, label: impl Into<String>) -> Series {
        self.end_label = Some(label.into());
        self
    }
}

/// A panel of series on two axes: title, y-axis title above the plot (horizontal, so that it can
/// be as long as its units need), grid, series, x-axis title, and an optional legend below.
#[derive(Clone, Debug)]
pub struct LinePanel {
    /// The panel's `id` attribute.
    pub id: String,
    pub x: Axis,
    pub y: Axis,
    pub title: String,
    pub series: Vec<Series>,
    /// Drawn below the panel.
    pub legend: Option<Legend>,
}

impl LinePanel {
    /// `id` is the panel's `id` attribute (an XML name: letters, digits, `-`).
    pub fn new(id: impl Into<String>, title: impl Into<String>, x: Axis, y: Axis) -> LinePanel {
        LinePanel {
            id: id.into(),
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            legend: None,
        }
    }

    pub fn series(mut self, s: Series) -> LinePanel {
        self.series.push(s);
        self
    }

    pub fn legend(mut self, l: Legend) -> LinePanel {
        self.legend = Some(l);
        self
    }
}

/// A panel of horizontal bars from zero on a linear axis, in groups under headings: which of
/// several things is larger, thing by thing (tokens per character of each text for each model,
/// loss of each run). A bar without a value shows the panel's `missing` text instead.
#[derive(Clone, Debug)]
pub struct BarPanel {
    pub id: String,
    pub title: String,
    /// The value axis' title, with its unit.
    pub x_title: String,
    pub groups: Vec<BarGroup>,
    /// Shown in place of a bar that has no value.
    pub missing: String,
    /// The text of a value written at its bar's end.
    pub value_label: fn(f64) -> String,
}

/// Bars under one heading (the text they measure, the run they belong to).
#[derive(Clone, Debug)]
pub struct BarGroup {
    pub heading: String,
    pub bars: Vec<Bar>,
}

/// One bar: its label left of the axis, its value, its colour, and `data-…` attributes for
/// readers of the file (`("model", "llama3-8b")` becomes `data-model="llama3-8b"`).
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub color: &'static str,
    pub value: Option<f64>,
    pub data: Vec<(String, String)>,
}

impl BarPanel {
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        x_title: impl Into<String>,
    ) -> Self {
        BarPanel {
            id: id.into(),
            title: title.into(),
            x_title: x_title.into(),
            groups: Vec::new(),
            missing: "n/a".into(),
            value_label: |v| format!("{v:.0}"),
        }
    }

    pub fn group(mut self, g: BarGroup) -> BarPanel {
        self.groups.push(g);
        self
    }
}

enum Block {
    Legend(Legend),
    Lines(LinePanel),
    Bars(BarPanel),
}

/// A column of legends and panels, drawn top to bottom at one width.
pub struct Figure {
    width: f64,
    blocks: Vec<Block>,
}

impl Default for Figure {
    fn default() -> Self {
        Figure::new()
    }
}

impl Figure {
    /// An empty figure 880 pixels wide: a page's width at a readable font size.
    pub fn new() -> Figure {
        Figure {
            width: 880.0,
            blocks: Vec::new(),
        }
    }

    /// The figure at `width` pixels (at least 320: room for a plot beside its tick labels).
    pub fn width(mut self, width: f64) -> Figure {
        self.width = width.max(320.0);
        self
    }

    pub fn legend(&mut self, l: Legend) -> &mut Figure {
        self.blocks.push(Block::Legend(l));
        self
    }

    pub fn lines(&mut self, p: LinePanel) -> &mut Figure {
        self.blocks.push(Block::Lines(p));
        self
    }

    pub fn bars(&mut self, p: BarPanel) -> &mut Figure {
        self.blocks.push(Block::Bars(p));
        self
    }

    /// The SVG document: white background, every block in order, the height what they need.
    pub fn to_svg(&self) -> String {
        let mut c = Canvas {
            svg: String::new(),
            width: self.width,
        };
        let mut y = MARGIN;
        for b in &self.blocks {
            y += match b {
                Block::Legend(l) => c.legend(y, l) + 6.0,
                Block::Lines(p) => {
                    let h = c.lines(y, p);
                    match &p.legend {
                        Some(l) => h + c.legend(y + h, l) + 10.0,
                        None => h,
                    }
                }
                Block::Bars(p) => c.bars(y, p),
            };
        }
        let (w, h) = (self.width, (y + MARGIN).ceil());
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Verdana, Arial, sans-serif">"#
        );
        let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        svg.push_str(&c.svg);
        svg.push_str("</svg>\n");
        svg
    }
}

/// The document being written and the figure's width; each method draws one block at `top` and
/// returns its height.
struct Canvas {
    svg: String,
    width: f64,
}

impl Canvas {
    fn plot_right(&self) -> f64 {
        self.width - PLOT_RIGHT_GAP
    }

    /// One `<text>`; `attrs` carries the anchor, class and anything else.
    fn text(&mut self, x: f64, y: f64, size: f64, attrs: &str, s: &str) {
        let _ = writeln!(
            self.svg,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" {attrs}>{}</text>"#,
            xml_escape(s)
        );
    }

    fn legend(&mut self, top: f64, l: &Legend) -> f64 {
        const PAD: f64 = 10.0;
        const SWATCH: f64 = 34.0;
        const GAP: f64 = 24.0;
        const ROW: f64 = 20.0;
        if l.entries.is_empty() {
            return 0.0;
        }
        let inner = self.width - 2.0 * MARGIN - 2.0 * PAD;
        let widest = l
            .entries
            .iter()
            .map(|e| text_width(&e.label, FONT))
            .fold(0.0, f64::max)
            .min(inner - SWATCH);
        let col_w = SWATCH + widest + GAP;
        let cols = (((inner + GAP) / col_w).floor() as usize).clamp(1, l.entries.len());
        let rows = l.entries.len().div_ceil(cols);
        let head_h = if l.heading.is_some() { ROW } else { 0.0 };
        let box_w = cols as f64 * col_w - GAP + 2.0 * PAD;
        let box_h = head_h + rows as f64 * ROW + 2.0 * PAD - 4.0;
        let _ = writeln!(
            self.svg,
            r##"<g class="legend"><rect class="legend-box" x="{MARGIN}" y="{top}" width="{box_w:.1}" height="{box_h:.1}" fill="white" stroke="#c8c8c8"/>"##
        );
        if let Some(h) = &l.heading {
            self.text(
                MARGIN + PAD,
                top + PAD + 11.0,
                FONT,
                r#"font-weight="bold""#,
                h,
            );
        }
        for (i, e) in l.entries.iter().enumerate() {
            let x = MARGIN + PAD + (i / rows) as f64 * col_w;
            let y = top + PAD + head_h + (i % rows) as f64 * ROW + 11.0;
            let (sx, sy) = (x + SWATCH - 8.0, y - 4.0);
            let _ = writeln!(
                self.svg,
                r#"<g class="legend-entry" data-key="{}"><line x1="{x:.1}" y1="{sy:.1}" x2="{sx:.1}" y2="{sy:.1}" stroke="{}" stroke-width="3"{}/><circle cx="{sx:.1}" cy="{sy:.1}" r="3.5" fill="{}"/>"#,
                xml_escape(&e.key),
                e.style.color,
                e.style.dash.attr(),
                e.style.color,
            );
            let label = fit_text(&e.label, FONT, widest);
            self.text(x + SWATCH, y, FONT, r#"class="legend-label""#, &label);
            self.svg.push_str("</g>\n");
        }
        self.svg.push_str("</g>\n");
        box_h
    }

    /// A panel's title, and the group that holds the panel; the caller closes the group.
    fn open_panel(&mut self, top: f64, id: &str, title: &str) {
        let _ = writeln!(self.svg, r#"<g class="panel" id="{}">"#, xml_escape(id));
        self.text(
            self.width / 2.0,
            top + 20.0,
            TITLE_FONT,
            r#"class="panel-title" font-weight="bold" text-anchor="middle""#,
            title,
        );
    }

    /// A vertical grid line and its label under the axis at `bottom`.
    fn x_tick(&mut self, xx: f64, grid_top: f64, bottom: f64, color: &str, label: &str) {
        let _ = writeln!(
            self.svg,
            r#"<line x1="{xx:.1}" y1="{grid_top:.1}" x2="{xx:.1}" y2="{bottom:.1}" stroke="{color}"/>"#
        );
        self.text(
            xx,
            bottom + 18.0,
            TICK_FONT,
            r#"class="tick" text-anchor="middle""#,
            label,
        );
    }

    /// The L of the axes from (`left`, `top`) down to `bottom` and right to the plot's edge,
    /// and the x-axis title centred under it.
    fn axes(&mut self, left: f64, top: f64, bottom: f64, x_title: &str) {
        let right = self.plot_right();
        let _ = writeln!(
            self.svg,
            r#"<path d="M{left:.1} {top:.1}V{bottom:.1}H{right:.1}" fill="none" stroke="black"/>"#
        );
        self.text(
            (left + right) / 2.0,
            bottom + 40.0,
            FONT,
            r#"class="axis-title x-axis" text-anchor="middle""#,
            x_title,
        );
    }

    fn lines(&mut self, top: f64, p: &LinePanel) -> f64 {
        self.open_panel(top, &p.id, &p.title);
        let (left, right) = (PLOT_LEFT, self.plot_right());
        let plot_top = top + 58.0;
        let bottom = plot_top + PLOT_H;
        let px = |v: f64| left + (right - left) * p.x.frac(v);
        let py = |v: f64| bottom - PLOT_H * p.y.frac(v);
        self.text(
            MARGIN,
            top + 46.0,
            FONT,
            r#"class="axis-title y-axis""#,
            p.y.title_text(),
        );
        for (v, l) in p.y.ticks() {
            let yy = py(*v);
            let _ = writeln!(
                self.svg,
                r##"<line x1="{left:.1}" y1="{yy:.1}" x2="{right:.1}" y2="{yy:.1}" stroke="#e4e4e4"/>"##
            );
            self.text(
                left - 6.0,
                yy + 4.0,
                TICK_FONT,
                r#"class="tick" text-anchor="end""#,
                l,
            );
        }
        for (v, l) in p.x.ticks() {
            self.x_tick(px(*v), plot_top, bottom, "#efefef", l);
        }
        self.axes(left, plot_top, bottom, p.x.title_text());
        let n = p.series.len();
        for (i, s) in p.series.iter().enumerate() {
            let _ = writeln!(
                self.svg,
                r#"<g class="series" data-key="{}">"#,
                xml_escape(&s.name)
            );
            if s.line {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .map(|&(a, b)| format!("{:.1},{:.1}", px(a), py(b)))
                    .collect();
                let _ = writeln!(
                    self.svg,
                    r#"<polyline fill="none" stroke="{}" stroke-width="{:.1}"{} points="{}"/>"#,
                    s.style.color,
                    // Earlier lines are wider, so that one hidden under a later one shows at
                    // its edges.
                    2.0 + 3.0 * (n - 1 - i) as f64 / (n.max(2) - 1) as f64,
                    s.style.dash.attr(),
                    pts.join(" ")
                );
            }
            let marks = match s.marks {
                Marks::None => &[][..],
                Marks::Last => &s.points[s.points.len().saturating_sub(1)..],
                Marks::Every => &s.points[..],
            };
            for &(a, b) in marks {
                let _ = writeln!(
                    self.svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"/>"#,
                    px(a),
                    py(b),
                    s.style.color
                );
            }
            self.svg.push_str("</g>\n");
        }
        let ends: Vec<(f64, f64, &str, &str)> = p
            .series
            .iter()
            .filter_map(|s| {
                let (a, b) = *s.points.last()?;
                Some((px(a), py(b), s.end_label.as_deref()?, s.style.color))
            })
            .collect();
        self.end_labels(&ends);
        self.svg.push_str("</g>\n");
        bottom + 50.0 - top
    }

    /// Labels above and left of line ends (x, y, text, colour): lines that rise to the right
    /// leave that spot clear of their own line. Each label is moved up past any label already
    /// placed that it would overlap.
    fn end_labels(&mut self, ends: &[(f64, f64, &str, &str)]) {
        const H: f64 = 15.0;
        let mut order: Vec<usize> = (0..ends.len()).collect();
        // Lowest first, so that labels stack upwards, the way the lines run.
        order.sort_by(|&a, &b| ends[b].1.total_cmp(&ends[a].1));
        // Boxes placed so far: left, right, baseline.
        let mut placed: Vec<(f64, f64, f64)> = Vec::new();
        for i in order {
            let (x, y, s, color) = ends[i];
            let (right, w) = (x - 6.0, text_width(s, TICK_FONT));
            let mut base = y - 7.0;
            while let Some(&(_, _, b)) = placed
                .iter()
                .find(|&&(l, r, b)| l < right && right - w < r && (b - base).abs() < H)
            {
                base = b - H;
            }
            placed.push((right - w, right, base));
            // A white halo keeps the label legible where it crosses a line.
            let attrs = format!(
                r#"class="end-label" text-anchor="end" fill="{color}" font-weight="bold" stroke="white" stroke-width="3" paint-order="stroke""#
            );
            self.text(right, base, TICK_FONT, &attrs, s);
        }
    }

    fn bars(&mut self, top: f64, p: &BarPanel) -> f64 {
        const ROW: f64 = 18.0;
        const BAR: f64 = 12.0;
        const GROUP_HEAD: f64 = 24.0;
        let all = || p.groups.iter().flat_map(|g| &g.bars);
        let label_w = all()
            .map(|b| text_width(&b.label, TICK_FONT))
            .fold(40.0, f64::max)
            .min(220.0);
        let right = self.plot_right();
        let left = (MARGIN + 12.0 + label_w + 8.0).max(PLOT_LEFT);
        let max_v = all().filter_map(|b| b.value).fold(0.0, f64::max);
        let x = Axis::linear(
            0.0,
            if max_v > 0.0 { max_v } else { 1.0 },
            0.0,
            &format::number,
        );
        let px = |v: f64| left + (right - left) * x.frac(v);

        self.open_panel(top, &p.id, &p.title);
        let area_top = top + 34.0;
        let area_h: f64 = p
            .groups
            .iter()
            .map(|g| GROUP_HEAD + ROW * g.bars.len() as f64 + 6.0)
            .sum();
        let bottom = area_top + area_h;
        for (v, l) in x.ticks() {
            self.x_tick(px(*v), area_top, bottom, "#e4e4e4", l);
        }
        self.axes(left, area_top, bottom, &p.x_title);
        let mut y = area_top;
        for g in &p.groups {
            self.text(
                MARGIN,
                y + 16.0,
                FONT,
                // Over the axis where the labels' column is narrower than the heading: a white
                // halo keeps it legible.
                r#"class="group-title" font-weight="bold" stroke="white" stroke-width="4" paint-order="stroke""#,
                &g.heading,
            );
            y += GROUP_HEAD;
            for b in &g.bars {
                let mid = y + ROW / 2.0;
                let mut open = String::from(r#"<g class="bar""#);
                for (k, v) in &b.data {
                    let _ = write!(open, r#" data-{}="{}""#, xml_escape(k), xml_escape(v));
                }
                let value = b.value.map_or("n/a".into(), |v| v.to_string());
                let _ = writeln!(self.svg, r#"{open} data-value="{value}">"#);
                let label = fit_text(&b.label, TICK_FONT, label_w);
                self.text(
                    left - 8.0,
                    mid + 4.0,
                    TICK_FONT,
                    r#"class="bar-label" text-anchor="end""#,
                    &label,
                );
                match b.value {
                    Some(v) => {
                        let end = px(v);
                        let _ = writeln!(
                            self.svg,
                            r#"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{BAR}" fill="{}"/>"#,
                            mid - BAR / 2.0,
                            (end - left).max(0.0),
                            b.color
                        );
                        let shown = (p.value_label)(v);
                        // The value after the bar, or inside it where the bar reaches the edge.
                        if end + 4.0 + text_width(&shown, TICK_FONT) <= right {
                            self.text(end + 4.0, mid + 4.0, TICK_FONT, r#"class="value""#, &shown);
                        } else {
                            let attrs = r#"class="value" text-anchor="end" fill="white""#;
                            self.text(end - 4.0, mid + 4.0, TICK_FONT, attrs, &shown);
                        }
                    }
                    None => self.text(
                        left + 4.0,
                        mid + 4.0,
                        TICK_FONT,
                        r##"class="value" fill="#666" font-style="italic""##,
                        &p.missing,
                    ),
                }
                self.svg.push_str("</g>\n");
                y += ROW;
            }
            y += 6.0;
        }
        self.svg.push_str("</g>\n");
        bottom + 50.0 - top
    }
}
