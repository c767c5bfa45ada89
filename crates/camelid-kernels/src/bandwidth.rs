//! A short measurement of the machine's memory read bandwidth: the ceiling a memory-bound decode
//! step can reach, so that a benchmark can say which regime a machine is in (`camelid bench`
//! reports its weight-read GB/s as a share of it).
//!
//! Every thread of a [`ThreadPool`] of the requested size sums its contiguous share of one
//! buffer several times larger than the last-level cache, so nearly every byte comes from
//! memory; the best of a few passes is the ceiling (a pass slowed by another process on a shared
//! machine says nothing about the hardware). It reads as decode does: the same number of
//! threads, each streaming a long contiguous range, from memory on huge pages as the CPU
//! backend's weights are ([`crate::hugebuf`]).

use std::time::Instant;

use crate::pool::ThreadPool;

/// One read-bandwidth measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadCeiling {
    /// Best pass, in GB/s (10⁹ bytes per second).
    pub gbs: f64,
    /// Bytes of the buffer read in each pass.
    pub buffer_bytes: usize,
    /// Threads that read it.
    pub threads: usize,
    /// The last-level cache the buffer was sized against, where the system says.
    pub llc_bytes: Option<usize>,
}

impl ReadCeiling {
    /// The faster of two measurements.
    pub fn best(self, other: ReadCeiling) -> ReadCeiling {
        if other.gbs > self.gbs { other } else { self }
    }
}

/// Timed passes; the first pass before them warms the threads and the TLB.
const PASSES: usize = 5;
/// The buffer is this many times the last-level cache, and at least [`MIN_BUFFER`].
const LLC_FACTOR: usize = 4;
const MIN_BUFFER: usize = 64 << 20;
/// When the cache size is unknown.
const DEFAULT_BUFFER: usize = 256 << 20;
const MAX_BUFFER: usize = 1 << 30;

/// Measures the read bandwidth of `threads` threads (at least one); about a tenth of a second
/// on a machine of 20 GB/s, most of it filling the buffer.
pub fn read_ceiling(threads: usize) -> ReadCeiling {
    let threads = threads.max(1);
    let llc = last_level_cache();
    let bytes = buffer_bytes(llc);
    // Non-zero, so that every page is written and backed by its own memory (a zeroed
    // allocation may map one shared zero page, which would be read from cache).
    let mut buf = crate::hugebuf::HugeBuf::zeroed(bytes + 8);
    buf.fill(1);
    // SAFETY: every bit pattern is a valid u64; `align_to` only picks the aligned middle.
    let (_, words, _) = unsafe { buf.align_to::<u64>() };
    let words = &words[..bytes / 8];
    let pool = ThreadPool::new(threads);
    let share = words.len().div_ceil(threads);
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..threads).map(|_| 0.into()).collect();
    let job = |id: usize| {
        let part = words.chunks(share).nth(id).unwrap_or(&[]);
        sums[id].store(sum_words(part), std::sync::atomic::Ordering::Relaxed);
    };
    let mut best = f64::INFINITY;
    for pass in 0..=PASSES {
        let t = Instant::now();
        pool.run(&job);
        let secs = t.elapsed().as_secs_f64();
        if pass > 0 {
            best = best.min(secs);
        }
    }
    // The sums are each part's words added up: checking them keeps the reads from being
    // optimized away and the partition honest.
    let total: u64 = sums
        .iter()
        .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        .fold(0, u64::wrapping_add);
    debug_assert_eq!(
        total,
        (words.len() as u64).wrapping_mul(0x0101_0101_0101_0101)
    );
    std::hint::black_box(total);
    ReadCeiling {
        gbs: (words.len() * 8) as f64 / best.max(1e-9) / 1e9,
        buffer_bytes: words.len() * 8,
        threads,
        llc_bytes: llc,
    }
}

/// The buffer for a last-level cache of `llc` bytes: [`LLC_FACTOR`] times it, within
/// [`MIN_BUFFER`]..=[`MAX_BUFFER`], a multiple of 64 bytes.
fn buffer_bytes(llc: Option<usize>) -> usize {
    let b = llc.map_or(DEFAULT_BUFFER, |c| {
        c.saturating_mul(LLC_FACTOR).clamp(MIN_BUFFER, MAX_BUFFER)
    });
    b / 64 * 64
}

/// Wrapping sum of the words, with eight independent sums so that the loop is bound by the
/// loads (the compiler vectorizes it), not by one chain of additions.
fn sum_words(w: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = acc[k].wrapping_add(c[k]);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0, |a: u64, &b| a.wrapping_add(b));
    acc.iter().fold(tail, |a, &b| a.wrapping_add(b))
}

/// The largest cache CPU 0 reports (Linux sysfs), in bytes.
fn last_level_cache() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| {
        let size = std::fs::read_to_string(e.ok()?.path().join("size")).ok()?;
        parse_cache_size(size.trim())
    })
    .max()
}

/// `32768K`, `1M`, `512` as sysfs writes cache sizes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = num.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => n.checked_mul(1 << 10),
        "M" => n.checked_mul(1 << 20),
        "G" => n.checked_mul(1 << 30),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("4X"), None);
        assert_eq!(parse_cache_size(""), None);
    }

    #[test]
    fn the_buffer_is_well_beyond_the_cache() {
        assert_eq!(buffer_bytes(Some(32 << 20)), 128 << 20);
        assert_eq!(buffer_bytes(Some(1 << 20)), MIN_BUFFER);
        assert_eq!(buffer_bytes(Some(1 << 40)), MAX_BUFFER);
        assert_eq!(buffer_bytes(None), DEFAULT_BUFFER);
    }

    #[test]
    fn word_sums_cover_every_word() {
        let w: Vec<u64> = (1..=1003).collect();
        assert_eq!(sum_words(&w), 1003 * 1004 / 2);
    }

    /// The fields are consistent; nothing about the speed is asserted.
    #[test]
    fn a_measurement_reports_its_setup() {
        let c = read_ceiling(2);
        assert_eq!(c.threads, 2);
        assert_eq!(c.buffer_bytes, buffer_bytes(c.llc_bytes));
        assert!(c.gbs.is_finite() && c.gbs > 0.0);
    }
}
