//! A reader of the SVG this crate writes, for tests and tools that check a chart by its
//! structure (panels, axis titles, labels, bars) rather than by its pixels.
//!
//! It reads the subset of XML the writer produces: elements, double-quoted attributes, escaped
//! text; no comments, CDATA, processing instructions or entities beyond the five XML defines.

use std::fmt;

/// An element: its name, attributes, the text directly inside it, and its child elements.
#[derive(Clone, Debug, PartialEq)]
pub struct El {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<El>,
}

/// Why a document could not be read, with the byte offset where reading stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub offset: usize,
    pub what: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a well-formed chart at byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for ReadError {}

impl El {
    fn new(name: &str) -> El {
        El {
            name: name.to_string(),
            attrs: Vec::new(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    /// An attribute read as a number; None where it is absent or not a number.
    pub fn num(&self, k: &str) -> Option<f64> {
        self.attr(k)?.parse().ok()
    }

    pub fn has_class(&self, c: &str) -> bool {
        self.attr("class")
            .is_some_and(|v| v.split(' ').any(|x| x == c))
    }

    /// The picture's width and height, where this is an `<svg>` whose `width` and `height` are
    /// those of a `viewBox` from the origin (so that user units are pixels); None otherwise.
    pub fn picture_size(&self) -> Option<(f64, f64)> {
        let view: Vec<f64> = self
            .attr("viewBox")?
            .split(' ')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        let size = (self.num("width")?, self.num("height")?);
        (self.name == "svg"
            && view.len() == 4
            && view[..2] == [0.0, 0.0]
            && (view[2], view[3]) == size)
            .then_some(size)
    }

    /// Descendants matching `pred`, in document order.
    pub fn all(&self, pred: &dyn Fn(&El) -> bool) -> Vec<&El> {
        let mut out = Vec::new();
        for c in &self.children {
            if pred(c) {
                out.push(c);
            }
            out.extend(c.all(pred));
        }
        out
    }

    /// Descendants of class `c`, in document order.
    pub fn class(&self, c: &str) -> Vec<&El> {
        self.all(&|e| e.has_class(c))
    }

    /// The texts of the descendants of class `c`, in document order.
    pub fn texts(&self, c: &str) -> Vec<String> {
        self.class(c).iter().map(|e| e.text.clone()).collect()
    }

    /// All the text inside the element, its descendants' included.
    pub fn all_text(&self) -> String {
        let mut s = self.text.clone();
        for c in &self.children {
            s.push_str(&c.all_text());
        }
        s
    }
}

/// The texts of `svg` (a root `<svg>` with `width` and `height`) that a viewer would draw
/// outside the picture, each with where it would fall (left, right, baseline), judged by its
/// anchor and its [`narrow_text_width`]. A text without numeric `x`, `y` and `font-size` counts
/// as outside.
pub fn texts_outside(svg: &El) -> Vec<(String, f64, f64, f64)> {
    let (w, h) = (
        svg.num("width").unwrap_or(0.0),
        svg.num("height").unwrap_or(0.0),
    );
    let mut out = Vec::new();
    for t in svg.all(&|e| e.name == "text") {
        let (Some(x), Some(y), Some(size)) = (t.num("x"), t.num("y"), t.num("font-size")) else {
            out.push((t.text.clone(), f64::NAN, f64::NAN, f64::NAN));
            continue;
        };
        let tw = narrow_text_width(&t.text, size);
        let (l, r) = match t.attr("text-anchor").unwrap_or("start") {
            "end" => (x - tw, x),
            "middle" => (x - tw / 2.0, x + tw / 2.0),
            _ => (x, x + tw),
        };
        if !(l >= 0.0 && r <= w && y > 0.0 && y <= h) {
            out.push((t.text.clone(), l, r, y));
        }
    }
    out
}

/// About the width of `s` in a sans-serif font, estimated independently of (and narrower than)
/// the writer's own estimate: 0.3 em for the narrow marks and letters (space, i, l,
/// punctuation), 0.6 em for the rest of ASCII, a full em for other scripts. No layout can be
/// checked exactly without a renderer; this one catches labels that run off the picture or out
/// of their box by more than a character or two.
pub fn narrow_text_width(s: &str, size: f64) -> f64 {
    s.chars()
        .map(|c| match c {
            ' ' | 'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 0.3,
            c if c.is_ascii() => 0.6,
            _ => 1.0,
        })
        .sum::<f64>()
        * size
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Parses a document, checking that every element is closed by its own name and that there is
/// one root element, which it returns.
pub fn parse(s: &str) -> Result<El, ReadError> {
    let err = |offset: usize, what: String| ReadError { offset, what };
    let mut stack = vec![El::new("#document")];
    let mut pos = 0;
    while let Some(rel) = s[pos..].find('<') {
        let open = pos + rel;
        let text = unescape(s[pos..open].trim());
        if let Some(top) = stack.last_mut() {
            top.text.push_str(&text);
        }
        let close = match s[open..].find('>') {
            Some(c) => open + c,
            None => return Err(err(open, "a tag is not closed".into())),
        };
        let tag = &s[open + 1..close];
        pos = close + 1;
        if let Some(name) = tag.strip_prefix('/') {
            let el = match stack.pop() {
                Some(el) if stack.is_empty() => {
                    return Err(err(open, format!("</{name}> closes nothing ({})", el.name)));
                }
                Some(el) => el,
                None => return Err(err(open, format!("</{name}> closes nothing"))),
            };
            if el.name != name {
                return Err(err(open, format!("</{name}> closes <{}>", el.name)));
            }
            if let Some(parent) = stack.last_mut() {
                parent.children.push(el);
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        let mut el = El::new(name);
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let Some((k, r)) = attrs.split_once("=\"") else {
                return Err(err(
                    open,
                    format!("<{name}>: an attribute without a quoted value"),
                ));
            };
            let Some((v, r)) = r.split_once('"') else {
                return Err(err(
                    open,
                    format!("<{name}>: attribute {k} is not terminated"),
                ));
            };
            el.attrs.push((k.to_string(), unescape(v)));
            attrs = r;
        }
        match stack.last_mut() {
            Some(parent) if self_closing => parent.children.push(el),
            _ => stack.push(el),
        }
    }
    if !s[pos..].trim().is_empty() {
        return Err(err(pos, "text after the last tag".into()));
    }
    let mut doc = match stack.pop() {
        Some(doc) if stack.is_empty() => doc,
        Some(el) => return Err(err(s.len(), format!("<{}> is not closed", el.name))),
        None => return Err(err(s.len(), "no document".into())),
    };
    match (doc.children.pop(), doc.children.is_empty()) {
        (Some(root), true) => Ok(root),
        _ => Err(err(0, "not exactly one root element".into())),
    }
}
