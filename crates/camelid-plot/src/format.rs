//! Tick and value labels: functions from a value to its text, to hand to [`crate::Axis`].

/// A plain number: whole numbers and values from 100 up without decimals, one decimal from 1,
/// two below.
pub fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A size in bytes at a power of two (a tick of a [`crate::Axis::pow2`] axis), in the largest
/// binary unit that keeps it whole-ish: "512 KiB", "2 GiB".
pub fn bytes_pow2(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", number(v), units[u])
}

/// A size in bytes to three significant digits in the largest binary unit it reaches: "2.00 GiB",
/// "16.0 GiB", "512 KiB".
pub fn bytes(b: f64) -> String {
    let (v, unit) = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .iter()
        .map(|&(shift, u)| (b / (1u64 << shift) as f64, u))
        .find(|(v, _)| *v >= 1.0)
        .unwrap_or((b, "B"));
    if unit == "B" {
        format!("{v:.0} {unit}")
    } else {
        format!("{} {unit}", sig3(v))
    }
}

/// A count to three significant digits with a decimal suffix: 6.74B, 13.0B, 406B, 135M, 12.3K;
/// below a thousand the number itself.
pub fn count(n: f64) -> String {
    match [(1e9, "B"), (1e6, "M"), (1e3, "K")]
        .iter()
        .find(|(scale, _)| n.abs() >= *scale)
    {
        Some((scale, unit)) => format!("{}{unit}", sig3(n / scale)),
        None => format!("{n:.0}"),
    }
}

/// A count that is a multiple of 1,024 as "4k", "128k" (how context lengths are spoken of); any
/// other as the number.
pub fn count_k(n: f64) -> String {
    let i = n.round() as u64;
    if i >= 1024 && i.is_multiple_of(1024) {
        format!("{}k", i / 1024)
    } else {
        format!("{i}")
    }
}

/// 173942 as "173,942".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `v` to three significant digits where it is at least 1 ("4.58", "12.6", "406"); two
/// decimals below 1.
pub fn sig3(v: f64) -> String {
    let decimals = match v {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{v:.decimals$}")
}
