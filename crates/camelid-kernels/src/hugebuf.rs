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

/// Whether `bytes` more of anonymous memory fit in what the system has available, keeping
/// [`MARGIN`] spare: Linux's `MemAvailable` (free memory and the page cache and caches it could
/// reclaim), and where the process's control groups limit its memory (a container's
/// `--memory`), each limit less the anonymous memory already charged to it. `true` where the
/// system does not say.
pub fn fits_in_memory(bytes: usize) -> bool {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let meminfo = available_bytes(&read("/proc/meminfo").unwrap_or_default());
    let cgroups = read("/proc/self/cgroup").map_or(Vec::new(), |c| cgroup_dirs(&c));
    let limits = cgroups.iter().filter_map(|(dir, v2)| {
        let file = |name: &str| read(&format!("{dir}/{name}"));
        let limit = file(if *v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        })?;
        cgroup_room(&limit, &file("memory.stat")?, *v2)
    });
    meminfo
        .into_iter()
        .chain(limits)
        .min()
        .is_none_or(|free| bytes.saturating_add(MARGIN) <= free)
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

/// The memory control groups of a `/proc/self/cgroup` text, from the process's own up to the
/// root, each with whether it is cgroup v2 (the `0::` line, under `/sys/fs/cgroup`) or v1 (the
/// `memory` controller's line, under `/sys/fs/cgroup/memory`). Documentation/admin-guide/
/// cgroup-v2.rst and cgroup-v1/memory.rst.
fn cgroup_dirs(cgroup: &str) -> Vec<(String, bool)> {
    let mut dirs = Vec::new();
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (root, v2) = if id == "0" && controllers.is_empty() {
            ("/sys/fs/cgroup", true)
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", false)
        } else {
            continue;
        };
        let mut path = path.trim_end_matches('/');
        loop {
            dirs.push((format!("{root}{path}"), v2));
            match path.rfind('/') {
                Some(i) => path = &path[..i],
                None => break,
            }
        }
    }
    dirs
}

/// Room left under one control group's limit: the limit (`memory.max`, or v1's
/// `memory.limit_in_bytes`) less its anonymous memory (`memory.stat`'s `anon`, v1's
/// `total_rss`), which, unlike its page cache, cannot be reclaimed without swap. `None` where
/// there is no limit (`max`, or v1's page-rounded `i64::MAX`).
fn cgroup_room(limit: &str, stat: &str, v2: bool) -> Option<usize> {
    let limit: u64 = limit.trim().parse().ok()?;
    if limit >= 1 << 62 {
        return None;
    }
    let key = if v2 { "anon" } else { "total_rss" };
    let anon: u64 = stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })?;
    usize::try_from(limit.saturating_sub(anon)).ok()
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
        assert_eq!(
            cgroup_dirs("0::/system.slice/camelid.service\n"),
            [
                (
                    "/sys/fs/cgroup/system.slice/camelid.service".to_string(),
                    true
                ),
                ("/sys/fs/cgroup/system.slice".to_string(), true),
                ("/sys/fs/cgroup".to_string(), true),
            ]
        );
        // A container's own namespace: its group is the root.
        assert_eq!(
            cgroup_dirs("0::/\n"),
            [("/sys/fs/cgroup".to_string(), true)]
        );
        assert_eq!(
            cgroup_dirs("5:devices:/\n4:memory:/docker/abc\n0::/\n"),
            [
                ("/sys/fs/cgroup/memory/docker/abc".to_string(), false),
                ("/sys/fs/cgroup/memory/docker".to_string(), false),
                ("/sys/fs/cgroup/memory".to_string(), false),
                ("/sys/fs/cgroup".to_string(), true),
            ]
        );
        let v2 = "anon 1073741824\nfile 5368709120\n";
        assert_eq!(cgroup_room("8589934592\n", v2, true), Some(7 << 30));
        assert_eq!(cgroup_room("max\n", v2, true), None);
        let v1 = "rss 1\ncache 5\ntotal_rss 2147483648\ntotal_cache 9\n";
        assert_eq!(cgroup_room("4294967296\n", v1, false), Some(2 << 30));
        assert_eq!(cgroup_room("9223372036854771712\n", v1, false), None);
        assert_eq!(cgroup_room("4294967296\n", "", false), None);
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
