//! Axes: the range a panel shows, linear or logarithmic, its labelled ticks and its title.

/// An axis: the value range it shows, linear or logarithmic, its labelled ticks, and the title
/// that names the quantity and its unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
    title: String,
}

impl Axis {
    /// A linear axis with about five round ticks (1, 2 or 5 times a power of ten, at least
    /// `min_step` apart) from at or below `lo` to at or above `hi`.
    pub fn linear(lo: f64, hi: f64, min_step: f64, label: &dyn Fn(f64) -> String) -> Axis {
        let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
        let raw = span / 5.0;
        let pow = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * pow)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * pow)
            .max(min_step);
        let first = (lo / step).floor() as i64;
        let last = ((hi / step).ceil() as i64).max(first + 1);
        let ticks = (first..=last)
            .map(|i| i as f64 * step)
            .map(|v| (v, label(v)))
            .collect();
        Axis {
            lo: first as f64 * step,
            hi: last as f64 * step,
            log: false,
            ticks,
            title: String::new(),
        }
    }

    /// A log axis ticked at 1, 2 and 5 times powers of ten, for positive values over a wide
    /// range (model sizes, losses over orders of magnitude).
    pub fn log10(lo: f64, hi: f64, label: &dyn Fn(f64) -> String) -> Axis {
        let lo = lo.max(f64::MIN_POSITIVE);
        let hi = hi.max(lo);
        let steps = |e: i32| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e));
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let all: Vec<f64> = (a..=b).flat_map(steps).collect();
        let lo_t = all.iter().rev().find(|v| **v <= lo).copied().unwrap_or(lo);
        let mut hi_t = all.iter().find(|v| **v >= hi).copied().unwrap_or(hi);
        if hi_t <= lo_t {
            // One value: the next tick up, so that the axis has a length.
            hi_t = all
                .iter()
                .find(|v| **v > lo_t)
                .copied()
                .unwrap_or(lo_t * 10.0);
        }
        let ticks = all
            .into_iter()
            .filter(|v| (lo_t..=hi_t).contains(v))
            .map(|v| (v, label(v)))
            .collect();
        Axis {
            lo: lo_t,
            hi: hi_t,
            log: true,
            ticks,
            title: String::new(),
        }
    }

    /// A log axis between powers of two around `lo..=hi`, ticked at every `2^k`-th power for
    /// the smallest `k` that keeps the ticks fewer than `max_ticks`, ending on a tick (context
    /// lengths, memory sizes).
    pub fn pow2(lo: f64, hi: f64, max_ticks: usize, label: &dyn Fn(f64) -> String) -> Axis {
        let a = lo.max(1e-9).log2().floor() as i32;
        let b = (hi.max(lo).log2().ceil() as i32).max(a + 1);
        let span = (b - a) as usize;
        let step = (1..=span)
            .find(|s| span.div_ceil(*s) < max_ticks)
            .unwrap_or(span);
        let b = a + (span.div_ceil(step) * step) as i32;
        let ticks = (a..=b)
            .step_by(step)
            .map(|e| (2f64.powi(e), label(2f64.powi(e))))
            .collect();
        Axis {
            lo: 2f64.powi(a),
            hi: 2f64.powi(b),
            log: true,
            ticks,
            title: String::new(),
        }
    }

    /// The axis with its title: the quantity and its unit ("loss (bits per byte)").
    pub fn title(mut self, title: impl Into<String>) -> Axis {
        self.title = title.into();
        self
    }

    /// The lowest value the axis shows.
    pub fn lo(&self) -> f64 {
        self.lo
    }

    /// The highest value the axis shows.
    pub fn hi(&self) -> f64 {
        self.hi
    }

    pub fn is_log(&self) -> bool {
        self.log
    }

    /// The ticks: value and label, in increasing order.
    pub fn ticks(&self) -> &[(f64, String)] {
        &self.ticks
    }

    pub fn title_text(&self) -> &str {
        &self.title
    }

    /// Where `v` falls: 0 at `lo`, 1 at `hi` (on a log axis, in proportion to the logarithm).
    pub fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v / self.lo).ln() / (self.hi / self.lo).ln()
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}
