//! Zeroed byte buffers for the large arrays a decode step streams through (weights a backend
//! rearranges at load), on 2 MiB pages where the system gives them.
//!
//! A decode step reads every weight once. On 4 KiB pages that stream crosses a page boundary
//! every 4 KiB, where the hardware prefetchers stop and a TLB entry is missed; on 2 MiB pages it
//! does not. Linux gives anonymous memory transparent huge pages when they are enabled `always`,
//! or, under the common default `madvise`, where asked for with `madvise(MADV_HUGEPAGE)`
//! (Documentation/admin-guide/mm/transhuge.rst). This buffer asks, over the 2 MiB-aligned part of
//! an anonymous map, before any page is touched, so that the first write faults in huge pages.
//! Elsewhere, or where the kernel says no, it is ordinary memory: the request is a hint.
//!
//! Measured on the development VM (PERF.md, "Weights on huge pages"): streaming reads at two
//! threads went from 28 to 33 GB/s.

use std::ops::{Deref, DerefMut};

/// The page size huge pages come in on x86-64 and most arm64 kernels.
const HUGE: usize = 2 << 20;

/// A zeroed, writable, heap-like buffer of fixed length.
pub struct HugeBuf {
    inner: Inner,
}

enum Inner {
    /// An anonymous map `HUGE` bytes longer than asked, and the offset of its first aligned byte.
    Map(memmap2::MmapMut, usize, usize),
    /// Small buffers (under a huge page), and systems where the map failed.
    Vec(Vec<u8>),
}

impl HugeBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> HugeBuf {
        let inner = if len >= HUGE {
            Self::map(len).map_or_else(
                || Inner::Vec(vec![0; len]),
                |(m, at)| Inner::Map(m, at, len),
            )
        } else {
            Inner::Vec(vec![0; len])
        };
        HugeBuf { inner }
    }

    /// An anonymous map with room to start on a huge-page boundary, that part advised.
    fn map(len: usize) -> Option<(memmap2::MmapMut, usize)> {
        let map = memmap2::MmapMut::map_anon(len.checked_add(HUGE)?).ok()?;
        let at = (map.as_ptr() as usize).next_multiple_of(HUGE) - map.as_ptr() as usize;
        #[cfg(target_os = "linux")]
        {
            // A hint: a kernel without transparent huge pages answers EINVAL, and the memory is
            // then ordinary pages.
            let _ = map.advise_range(memmap2::Advice::HugePage, at, len.next_multiple_of(4096));
        }
        Some((map, at))
    }

    /// Whether the buffer is an anonymous map advised for huge pages (not whether the kernel
    /// gave them).
    pub fn is_mapped(&self) -> bool {
        matches!(self.inner, Inner::Map(..))
    }
}

/// Whether `bytes` more of anonymous memory fit in what the system has available (Linux's
/// `MemAvailable`: free memory and the page cache and caches it could reclaim), keeping
/// [`MARGIN`] spare; `true` where the system does not say.
pub fn fits_in_memory(bytes: usize) -> bool {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    available_bytes(&meminfo).is_none_or(|free| bytes.saturating_add(MARGIN) <= free)
}

/// What [`fits_in_memory`] keeps spare: activations, caches, the rest of the process.
const MARGIN: usize = 512 << 20;

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn available_bytes(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: usize = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then(|| n.saturating_mul(1024))
}

impl Deref for HugeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Map(m, at, len) => &m[*at..*at + *len],
            Inner::Vec(v) => v,
        }
    }
}

impl DerefMut for HugeBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.inner {
            Inner::Map(m, at, len) => &mut m[*at..*at + *len],
            Inner::Vec(v) => v,
        }
    }
}

impl std::fmt::Debug for HugeBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeBuf")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_read_as_linux_writes_it() {
        let text = "MemTotal:       24589100 kB\nMemFree:        20000000 kB\n\
                    MemAvailable:   23400000 kB\nBuffers:            1234 kB\n";
        assert_eq!(available_bytes(text), Some(23_400_000 * 1024));
        assert_eq!(available_bytes("MemTotal: 5 kB\n"), None);
        assert_eq!(available_bytes("MemAvailable: many kB\n"), None);
        assert_eq!(available_bytes("MemAvailable: 5 MB\n"), None);
        if cfg!(target_os = "linux") {
            // No machine has the whole address space free.
            assert!(!fits_in_memory(usize::MAX));
        }
    }

    #[test]
    fn buffers_are_zeroed_writable_and_exactly_as_long_as_asked() {
        for len in [0, 1, 4095, HUGE - 1, HUGE, 3 * HUGE + 4097] {
            let mut b = HugeBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            assert_eq!(b.is_mapped(), len >= HUGE);
            if len > 0 {
                b[len - 1] = 7;
                b[0] = 9;
                assert_eq!((b[0], b[len - 1]), (9, if len == 1 { 9 } else { 7 }));
            }
            if b.is_mapped() {
                assert_eq!(b.as_ptr() as usize % HUGE, 0, "starts on a huge page");
            }
        }
    }
}
