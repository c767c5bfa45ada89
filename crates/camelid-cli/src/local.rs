//! `camelid models --local`: where camelid keeps what it fetched, and how big it is.

use anyhow::Result;
use serde_json::json;

use crate::fetch::{CacheState, Listing, Resolver};

pub fn run(json: bool) -> Result<()> {
    let listing = Resolver::from_env()?.listing();
    if json {
        println!("{}", serde_json::to_string_pretty(&listing_json(&listing))?);
    } else {
        print!("{}", listing_text(&listing));
    }
    Ok(())
}

fn state_name(s: CacheState) -> &'static str {
    match s {
        CacheState::Missing => "not fetched",
        CacheState::Checked => "verified",
        CacheState::Unchecked => "unverified",
    }
}

fn listing_json(l: &Listing) -> serde_json::Value {
    json!({
        "cache": l.cache.display().to_string(),
        "files": l.files.iter().map(|f| json!({
            "path": f.path.display().to_string(),
            "what": f.packaged.map(|p| p.what),
            "package": f.packaged.map(|p| p.package),
            "bytes": f.size,
            "state": state_name(f.state),
        })).collect::<Vec<_>>(),
        "hub_cache": l.hub_cache.display().to_string(),
        "hub": l.repos.iter().map(|r| json!({
            "model": format!("hf:{}", r.repo),
            "path": r.path.display().to_string(),
            "bytes": r.size,
            "files": r.files,
        })).collect::<Vec<_>>(),
    })
}

/// Sizes in binary units, as `du -h` gives them, so that they can be checked against it.
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn listing_text(l: &Listing) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let total: u64 = l.files.iter().map(|f| f.size).sum();
    let _ = writeln!(
        out,
        "camelid's cache: {} ({}; CAMELID_CACHE moves it)",
        l.cache.display(),
        human(total)
    );
    for f in &l.files {
        let what = f
            .packaged
            .map_or("a file camelid does not know", |p| p.what);
        let size = match f.state {
            CacheState::Missing => "-".to_string(),
            _ => human(f.size),
        };
        let state = match (f.state, f.packaged) {
            (CacheState::Missing, Some(p)) => {
                format!("not fetched: on first use, from {}", p.package)
            }
            (CacheState::Checked, _) => "sha256 verified".to_string(),
            (CacheState::Unchecked, Some(_)) => {
                "not verified: checked, and fetched again if wrong, on next use".to_string()
            }
            (s, None) => state_name(s).to_string(),
        };
        let _ = writeln!(out, "  {size:>10}  {}", f.path.display());
        let _ = writeln!(out, "              {what}; {state}");
    }
    let total: u64 = l.repos.iter().map(|r| r.size).sum();
    let _ = writeln!(
        out,
        "\nHugging Face cache (hf: models, shared with other tools): {} ({}; HF_HUB_CACHE or HF_HOME moves it)",
        l.hub_cache.display(),
        human(total)
    );
    if l.repos.is_empty() {
        let _ = writeln!(out, "  nothing yet");
    }
    for r in &l.repos {
        let _ = writeln!(
            out,
            "  {:>10}  hf:{}  {}",
            human(r.size),
            r.repo,
            r.path.display()
        );
        if !r.files.is_empty() {
            let _ = writeln!(out, "              {}", r.files.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(98_362_432), "93.8 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
