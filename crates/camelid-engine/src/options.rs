//! Option values as llama.cpp's command-line tools read them, for front ends that take the same
//! spellings: a negative value means what llama.cpp gives it ("no limit", "all", "random",
//! "greedy") where it gives one, and is a range error where it gives none.

fn integer(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|e| e.to_string())
}

/// `-n`: a count of tokens, or -1 for no limit (generation goes on until an end-of-generation
/// token or a full context).
pub fn max_tokens(s: &str) -> Result<usize, String> {
    match integer(s)? {
        -1 => Ok(usize::MAX),
        n if n >= 1 => usize::try_from(n).map_err(|e| e.to_string()),
        n => Err(format!(
            "expected a count of tokens ≥ 1, or -1 for no limit, got {n}"
        )),
    }
}

/// `--temp`: llama.cpp's temperature sampler picks the most likely token for any temperature
/// ≤ 0, so a negative one means greedy, which is 0 here. Not-a-number and infinities are left
/// for `SamplerConfig::validate` to reject with its message.
pub fn temperature(s: &str) -> Result<f32, String> {
    let t: f32 = s.trim().parse().map_err(|e| format!("{e}"))?;
    Ok(if t.is_finite() && t < 0.0 { 0.0 } else { t })
}

/// `--top-k`: a count; llama.cpp documents only 0 (off), so a negative count is out of range.
pub fn top_k(s: &str) -> Result<usize, String> {
    match integer(s)? {
        k if k < 0 => Err(format!("top-k must be ≥ 0 (0 = off), got {k}")),
        k => usize::try_from(k).map_err(|e| e.to_string()),
    }
}

/// `--repeat-last-n`: a count of tokens, or -1 for all of them.
pub fn penalty_window(s: &str) -> Result<usize, String> {
    camelid_model::sampling::penalty_window(integer(s)?)
}

/// `--threads`: a count ≥ 1, or -1 for all the cores this process may use (llama.cpp's default
/// value).
pub fn threads(s: &str) -> Result<usize, String> {
    match integer(s)? {
        -1 => Ok(camelid_kernels::pool::usable_cores().unwrap_or(1)),
        n if n >= 1 => usize::try_from(n).map_err(|e| e.to_string()),
        n => Err(format!(
            "expected a count of threads ≥ 1, or -1 for all cores, got {n}"
        )),
    }
}

/// A `--seed`: -1 asks for a fresh random seed, as leaving it out does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    Random,
    Fixed(u64),
}

impl Seed {
    /// The seed given, None for a random one.
    pub fn fixed(self) -> Option<u64> {
        match self {
            Seed::Fixed(s) => Some(s),
            Seed::Random => None,
        }
    }
}

pub fn seed(s: &str) -> Result<Seed, String> {
    if s.trim() == "-1" {
        return Ok(Seed::Random);
    }
    s.parse::<u64>().map(Seed::Fixed).map_err(|_| {
        format!(
            "expected a seed from 0 to {} or -1 (random), got {s}",
            u64::MAX
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_values_mean_what_llama_cpp_gives_them() {
        assert_eq!(max_tokens("-1"), Ok(usize::MAX));
        assert_eq!(max_tokens("12"), Ok(12));
        assert_eq!(
            max_tokens("0"),
            Err("expected a count of tokens ≥ 1, or -1 for no limit, got 0".into())
        );
        assert_eq!(temperature("-1"), Ok(0.0));
        assert_eq!(temperature("0.7"), Ok(0.7));
        assert!(temperature("NaN").unwrap().is_nan());
        assert_eq!(top_k("0"), Ok(0));
        assert_eq!(
            top_k("-1"),
            Err("top-k must be ≥ 0 (0 = off), got -1".into())
        );
        assert_eq!(penalty_window("-1"), Ok(usize::MAX));
        assert_eq!(penalty_window("64"), Ok(64));
        assert_eq!(seed("-1"), Ok(Seed::Random));
        assert_eq!(seed("42").map(Seed::fixed), Ok(Some(42)));
        assert!(seed("-2").unwrap_err().contains("or -1 (random), got -2"));
        assert!(max_tokens("x").is_err() && top_k("1.5").is_err());
        assert_eq!(threads("3"), Ok(3));
        assert!(threads("-1").unwrap() >= 1);
        assert_eq!(
            threads("0"),
            Err("expected a count of threads ≥ 1, or -1 for all cores, got 0".into())
        );
    }
}
