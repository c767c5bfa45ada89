//! Text in an SVG: an SVG writer cannot measure text, so widths are estimated on the wide side
//! and layouts that must fit (legends, bar labels) use the estimate.

/// Estimated advance width of `s` in pixels at `size`: DejaVu Sans's widths rounded up per class
/// of character (it is wider than Arial and Helvetica, so those come out narrower still), a full
/// em for wide scripts such as CJK.
pub fn text_width(s: &str, size: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            ' ' | 'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 0.34,
            'm' | 'w' | 'M' | 'W' | '@' | '%' => 1.0,
            'A'..='Z' | '0'..='9' | '#' | '&' => 0.72,
            c if c.is_ascii() => 0.62,
            // Latin, Greek and Cyrillic letters outside ASCII are letter-sized; CJK, kana and
            // the rest are taken as full-width.
            c if (c as u32) < 0x2e80 => 0.72,
            _ => 1.0,
        })
        .sum();
    em * size
}

/// `s` cut with an ellipsis to fit `width` pixels at `size`.
pub fn fit_text(s: &str, size: f64, width: f64) -> String {
    if text_width(s, size) <= width {
        return s.to_string();
    }
    let ellipsis = text_width("…", size);
    let mut out = String::new();
    let mut w = 0.0;
    for c in s.chars() {
        let cw = text_width(c.encode_utf8(&mut [0; 4]), size);
        if w + cw + ellipsis > width {
            break;
        }
        out.push(c);
        w += cw;
    }
    out + "…"
}

/// `s` with the five characters XML gives meaning to in text and attributes escaped.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
