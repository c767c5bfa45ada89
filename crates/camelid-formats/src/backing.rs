//! Where a parsed file's bytes live: a read-only memory map of the file, or a heap buffer
//! handed in by the caller (tests, fuzzing). Parsers only ever see `&[u8]`.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::Error;

pub(crate) enum Backing {
    Map(Mmap),
    Heap(Vec<u8>),
}

impl Backing {
    /// Maps `path` read-only. Nothing is read into the heap: pages are faulted in on access.
    pub(crate) fn map(path: &Path) -> Result<Backing, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            // A zero-length mapping is an error on some systems; an empty buffer parses the same.
            return Ok(Backing::Heap(Vec::new()));
        }
        // SAFETY: the map is read-only and we never hand out anything but `&[u8]` borrowed from
        // it. If another process truncates or rewrites the file while it is mapped, reads may see
        // the new bytes or fault (SIGBUS); that is the accepted contract of every mmap-based model
        // loader, and the parsers re-check every bound against the length they saw at open.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Ok(Backing::Map(map))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Heap(v) => v,
        }
    }

    /// Lets the pages wholly inside `range` of a map leave the process's resident memory
    /// (`madvise(MADV_DONTNEED)`): for bytes a caller has copied and will not read again. The
    /// file is untouched, and a later read faults its pages back in from it. A hint: failures
    /// are ignored, and a heap buffer stays as it is.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Backing::Map(m) = self {
            const PAGE: usize = 4096;
            let base = m.as_ptr() as usize;
            let start = (base + range.start).next_multiple_of(PAGE) - base;
            let end = ((base + range.end.min(m.len())) / PAGE * PAGE).saturating_sub(base);
            if start < end {
                // SAFETY: the map is a read-only shared file mapping that nothing writes, so
                // dropping its pages loses nothing: every later read of them sees the file's
                // bytes again, as every `&[u8]` borrowed from the map expects.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}
