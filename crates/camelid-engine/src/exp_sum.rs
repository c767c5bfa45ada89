//! Sums of exponentials that do not depend on the order of their terms, and the exponential
//! they use: the sampler's normalizers ([`crate::sampler`]) and the log-probabilities of
//! evaluation ([`crate::eval::log_sum_exp`]) read a whole vocabulary each token, so the sum
//! runs in vector lanes, and gives the same value over any subset in any order.

/// `e^x` for `x ≤ 0` (below -87, where `e^x` is about 1.6e-38, as at -87): `2^n · e^r` with
/// `n = round(x · log2 e)` and `|r| ≤ ln 2 / 2`, `e^r` by the degree-6 polynomial of Cephes
/// `expf` (S. Moshier, Cephes Math Library), `ln 2` split in two so that `r` is exact; within
/// 1.5e-7 of `e^x`, relative. Multiplications, additions (none fused) and bit moves only: the
/// loops of [`exp_sum`] vectorize, and every lane gives the bits a scalar call gives.
#[inline(always)]
fn exp_le0(x: f32) -> f32 {
    // Adding 1.5 · 2^23 rounds to an integer (to nearest), left in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x > -87.0 { x } else { -87.0 };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = p * r + c;
    }
    let e = p * (r * r) + r + 1.0;
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    f32::from_bits((e.to_bits() as i32).wrapping_add(n << 23) as u32)
}

/// The exponential of a logit at temperature `t`, the largest logit `max` at 1:
/// `e^((l - max) / t)`, with `inv_t = 1 / t`.
#[inline(always)]
pub(crate) fn weight(l: f32, max: f32, inv_t: f32) -> f32 {
    exp_le0((l - max) * inv_t)
}

/// A weight in [0, 1] as two integers, `hi · 2^-23 + lo · 2^-46` (within 2^-47 of it): `hi`
/// the integer nearest `w · 2^23`, `lo` the one nearest the rest (exact, as f32 has 24
/// significant bits) times 2^23. Adding 2^23 to a number in [0, 2^23] (1.5 · 2^23 to one in
/// [-2^22, 2^22]) rounds it to an integer that its bits then hold; no conversion to check.
#[inline(always)]
fn fixed_point(w: f32) -> (i32, i32) {
    const HI: f32 = 8_388_608.0;
    const LO: f32 = 12_582_912.0;
    let s = w * HI;
    let t = s + HI;
    let rest = (s - (t - HI)) * HI;
    let u = rest + LO;
    (
        (t.to_bits() as i32).wrapping_sub(HI.to_bits() as i32),
        (u.to_bits() as i32).wrapping_sub(LO.to_bits() as i32),
    )
}

/// The sum of [`fixed_point`] parts as one f64: `hi · 2^-23 + lo · 2^-46`, rounded once.
fn from_fixed_point(hi: i64, lo: i64) -> f64 {
    ((i128::from(hi) << 23) + i128::from(lo)) as f64 * 2f64.powi(-46)
}

/// Σ [`weight`] over `logits`: the weights' [`fixed_point`] parts summed as integers, so the
/// sum does not depend on the order of the terms (a sorted prefix, the top k as picked, or
/// the vocabulary in id order give the same normalizer), and is within 2^-46 a term of the
/// exact one.
pub(crate) fn exp_sum(logits: impl Iterator<Item = f32>, max: f32, t: f32) -> f64 {
    let (mut hi, mut lo, inv_t) = (0i64, 0i64, 1.0 / t);
    for l in logits {
        let (h, l) = fixed_point(weight(l, max, inv_t));
        (hi, lo) = (hi + i64::from(h), lo + i64::from(l));
    }
    from_fixed_point(hi, lo)
}

/// [`exp_sum`] of a slice, the same value, in vector lanes: with AVX2 where the CPU has it.
pub(crate) fn exp_sum_slice(logits: &[f32], max: f32, t: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { exp_sum_avx2(logits, max, t) };
    }
    exp_sum_lanes(logits, max, t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_sum_avx2(logits: &[f32], max: f32, t: f32) -> f64 {
    exp_sum_lanes(logits, max, t)
}

/// [`exp_sum`] over eight lanes of i32 sums, each taking at most 128 terms (within ±2^30)
/// before they go into the i64 totals.
#[inline(always)]
fn exp_sum_lanes(logits: &[f32], max: f32, t: f32) -> f64 {
    const LANES: usize = 8;
    let inv_t = 1.0 / t;
    let (mut hi, mut lo) = (0i64, 0i64);
    for block in logits.chunks(LANES * 128) {
        let (mut h, mut l) = ([0i32; LANES], [0i32; LANES]);
        let lanes = block.chunks_exact(LANES);
        let tail = lanes.remainder();
        for group in lanes {
            for j in 0..LANES {
                let (a, b) = fixed_point(weight(group[j], max, inv_t));
                (h[j], l[j]) = (h[j] + a, l[j] + b);
            }
        }
        for &x in tail {
            let (a, b) = fixed_point(weight(x, max, inv_t));
            (h[0], l[0]) = (h[0] + a, l[0] + b);
        }
        hi += h.iter().map(|&x| i64::from(x)).sum::<i64>();
        lo += l.iter().map(|&x| i64::from(x)).sum::<i64>();
    }
    from_fixed_point(hi, lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exponential against f64's over the whole range it serves, in relative error.
    #[test]
    fn exp_le0_is_within_its_bound() {
        let mut worst = 0.0f64;
        for i in 0..=1_000_000 {
            let x = -87.0 * i as f32 / 1e6;
            let want = (x as f64).exp();
            worst = worst.max(((exp_le0(x) as f64 - want) / want).abs());
        }
        assert!(worst < 1.5e-7, "{worst:e}");
        assert_eq!(exp_le0(0.0), 1.0);
    }

    /// The lanes give the scalar sum's value, in any order of the terms, within 2^-46 a term
    /// of the exact sum.
    #[test]
    fn sums_agree_in_any_order() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        for n in [1usize, 7, 8, 1000, 1031, 49_152] {
            let logits: Vec<f32> = (0..n).map(|_| next() * 40.0 - 30.0).collect();
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for t in [1.0f32, 0.7] {
                let lanes = exp_sum_slice(&logits, max, t);
                assert_eq!(lanes, exp_sum(logits.iter().copied(), max, t), "n {n}");
                assert_eq!(
                    lanes,
                    exp_sum(logits.iter().rev().copied(), max, t),
                    "n {n}"
                );
                let exact: f64 = logits.iter().map(|&l| weight(l, max, 1.0 / t) as f64).sum();
                assert!((lanes - exact).abs() <= n as f64 * 2f64.powi(-46), "n {n}");
            }
        }
    }
}
