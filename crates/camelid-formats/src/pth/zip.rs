//! The zip container of a PyTorch checkpoint, read from its central directory.
//!
//! Format: PKWARE's APPNOTE.TXT (sections 4.3.6 local file header, 4.3.12 central directory
//! header, 4.3.14-4.3.16 zip64 end of central directory record and locator, 4.5.3 the zip64
//! extra field). `torch.save` writes every entry *stored* (method 0, no compression), with the
//! local header's extra field padding the data to a 64-byte boundary, and switches to the zip64
//! records when an entry or the archive passes 4 GiB (caffe2 `PyTorchStreamWriter`, which uses
//! miniz). Only stored, unencrypted entries are accepted: an entry's bytes are then a plain
//! range of the file, used in place, and no decompressor (nor a zip bomb) is ever involved.

use std::collections::HashMap;
use std::ops::Range;

/// The most entries an archive may list; a real checkpoint has a few per tensor.
pub const MAX_ENTRIES: usize = 1 << 22;

const EOCD_SIG: u64 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: u64 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: u64 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL_SIG: u64 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u64 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;
/// A 16-bit field at its maximum means "see the zip64 record"; likewise for 32-bit fields.
const U16_MAX: u64 = 0xFFFF;
const U32_MAX: u64 = 0xFFFF_FFFF;

/// A malformed or unsupported archive: the byte offset of the offending item, and what is wrong.
#[derive(Debug)]
pub(crate) struct ZipError {
    pub offset: u64,
    pub msg: String,
}

fn fail<T>(offset: usize, msg: impl Into<String>) -> Result<T, ZipError> {
    Err(ZipError {
        offset: offset as u64,
        msg: msg.into(),
    })
}

/// One stored entry: its name and the byte range of its data in the file.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub name: String,
    pub data: Range<usize>,
}

/// The entries of an archive, by name.
#[derive(Debug)]
pub(crate) struct Archive {
    pub entries: Vec<Entry>,
    pub index: HashMap<String, usize>,
}

impl Archive {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u16::from_le_bytes([b[at], b[at + 1]]) as u64
}

fn u32_at(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `len` bytes at `at`, or an error naming `what` when they run past the end.
fn slice<'a>(b: &'a [u8], at: u64, len: u64, what: &str) -> Result<&'a [u8], ZipError> {
    match at.checked_add(len) {
        Some(end) if end <= b.len() as u64 => Ok(&b[at as usize..end as usize]),
        _ => Err(ZipError {
            offset: at.min(b.len() as u64),
            msg: format!(
                "{what} ({len} bytes at byte {at}) runs past the end of the {}-byte file (truncated?)",
                b.len()
            ),
        }),
    }
}

/// Parses the archive's directory and checks every entry (see the module comment).
pub(crate) fn read(b: &[u8]) -> Result<Archive, ZipError> {
    let eocd = find_eocd(b)?;
    let mut n_entries = u16_at(b, eocd + 10);
    let mut cd_size = u32_at(b, eocd + 12);
    let mut cd_offset = u32_at(b, eocd + 16);
    if u16_at(b, eocd + 4) != 0 || u16_at(b, eocd + 6) != 0 {
        return fail(eocd, "multi-disk (split) archives are not supported");
    }
    let zip64 = n_entries == U16_MAX || cd_size == U32_MAX || cd_offset == U32_MAX;
    if zip64 {
        let Some(loc) = eocd.checked_sub(ZIP64_LOCATOR_LEN) else {
            return fail(
                eocd,
                "the end record defers to zip64 but there is no zip64 locator",
            );
        };
        if u32_at(b, loc) != ZIP64_LOCATOR_SIG {
            return fail(
                loc,
                "the end record defers to zip64 but there is no zip64 locator",
            );
        }
        let rec_at = u64_at(b, loc + 8);
        let rec = slice(b, rec_at, ZIP64_EOCD_LEN as u64, "zip64 end record")?;
        if u32_at(rec, 0) != ZIP64_EOCD_SIG {
            return fail(rec_at as usize, "bad zip64 end record signature");
        }
        n_entries = u64_at(rec, 32);
        cd_size = u64_at(rec, 40);
        cd_offset = u64_at(rec, 48);
    }
    let cd = slice(b, cd_offset, cd_size, "central directory")?;
    let cd_start = cd_offset as usize;
    // Each header is at least 46 bytes: this bounds the count before anything is allocated.
    if n_entries > (cd.len() / CENTRAL_LEN) as u64 || n_entries > MAX_ENTRIES as u64 {
        return fail(
            eocd,
            format!(
                "{n_entries} entries cannot fit in a {}-byte central directory (limit {MAX_ENTRIES})",
                cd.len()
            ),
        );
    }
    let mut entries = Vec::with_capacity(n_entries as usize);
    let mut index = HashMap::with_capacity(n_entries as usize);
    let mut at = 0usize;
    for _ in 0..n_entries {
        let (entry, next) = central_entry(b, cd, cd_start, at)?;
        if index.insert(entry.name.clone(), entries.len()).is_some() {
            return fail(
                cd_start + at,
                format!("entry {:?} is listed twice", entry.name),
            );
        }
        // Data must lie before the directory, where local entries live.
        if entry.data.end > cd_start {
            return fail(
                cd_start + at,
                format!(
                    "entry {:?}: data [{}, {}) overlaps the central directory at {cd_start}",
                    entry.name, entry.data.start, entry.data.end
                ),
            );
        }
        entries.push(entry);
        at = next;
    }
    Ok(Archive { entries, index })
}

/// The end of central directory record: the last signature within the final 64 KiB + 22 bytes
/// (the record ends with a comment of at most 65535 bytes).
fn find_eocd(b: &[u8]) -> Result<usize, ZipError> {
    if b.len() < EOCD_LEN {
        return fail(
            0,
            format!("{} bytes is too short for a zip archive", b.len()),
        );
    }
    let lowest = b.len().saturating_sub(EOCD_LEN + U16_MAX as usize);
    let mut at = b.len() - EOCD_LEN;
    loop {
        if u32_at(b, at) == EOCD_SIG && at + EOCD_LEN + u16_at(b, at + 20) as usize == b.len() {
            return Ok(at);
        }
        if at == lowest {
            return fail(
                b.len(),
                "no zip end-of-central-directory record: not a zip archive, or truncated",
            );
        }
        at -= 1;
    }
}

/// Parses the central header at `cd[at..]` and its local header; returns the entry and the
/// offset of the next central header.
fn central_entry(
    b: &[u8],
    cd: &[u8],
    cd_start: usize,
    at: usize,
) -> Result<(Entry, usize), ZipError> {
    let here = cd_start + at;
    let h = slice(
        cd,
        at as u64,
        CENTRAL_LEN as u64,
        "central directory header",
    )
    .map_err(|e| ZipError {
        offset: here as u64,
        ..e
    })?;
    if u32_at(h, 0) != CENTRAL_SIG {
        return fail(here, "bad central directory header signature");
    }
    let flags = u16_at(h, 8);
    let method = u16_at(h, 10);
    let mut comp = u32_at(h, 20);
    let mut size = u32_at(h, 24);
    let name_len = u16_at(h, 28);
    let extra_len = u16_at(h, 30);
    let comment_len = u16_at(h, 32);
    let mut local = u32_at(h, 42);
    let var = slice(
        cd,
        (at + CENTRAL_LEN) as u64,
        name_len + extra_len + comment_len,
        "central directory name and extra fields",
    )
    .map_err(|e| ZipError {
        offset: here as u64,
        ..e
    })?;
    let name = String::from_utf8_lossy(&var[..name_len as usize]).into_owned();
    let extra = &var[name_len as usize..(name_len + extra_len) as usize];
    if flags & 1 != 0 {
        return fail(
            here,
            format!("entry {name:?} is encrypted; camelid reads only plain stored entries"),
        );
    }
    if method != 0 {
        let what = match method {
            8 => "deflate",
            9 => "deflate64",
            12 => "bzip2",
            14 => "lzma",
            93 => "zstd",
            _ => "an unknown method",
        };
        return fail(
            here,
            format!(
                "entry {name:?} is compressed (method {method}, {what}); torch.save stores entries uncompressed and camelid reads only stored entries"
            ),
        );
    }
    // Zip64 extra field: the 64-bit values of the 32-bit fields that are at their maximum,
    // in the order uncompressed size, compressed size, local header offset.
    if size == U32_MAX || comp == U32_MAX || local == U32_MAX {
        let mut field = zip64_extra(extra).ok_or_else(|| ZipError {
            offset: here as u64,
            msg: format!("entry {name:?} needs a zip64 extra field and has none"),
        })?;
        let mut next = |v: &mut u64| -> Result<(), ZipError> {
            if *v == U32_MAX {
                let Some((x, rest)) = field.split_first_chunk::<8>() else {
                    return fail(here, format!("entry {name:?}: zip64 extra field too short"));
                };
                *v = u64::from_le_bytes(*x);
                field = rest;
            }
            Ok(())
        };
        next(&mut size)?;
        next(&mut comp)?;
        next(&mut local)?;
    }
    if comp != size {
        return fail(
            here,
            format!(
                "entry {name:?} is stored but its sizes differ ({comp} stored, {size} uncompressed)"
            ),
        );
    }
    let lh = slice(b, local, LOCAL_LEN as u64, "local file header")?;
    if u32_at(lh, 0) != LOCAL_SIG {
        return fail(
            local as usize,
            format!("entry {name:?}: bad local header signature"),
        );
    }
    let local_var = u16_at(lh, 26) + u16_at(lh, 28);
    let data_at = local + LOCAL_LEN as u64 + local_var;
    let local_name = slice(
        b,
        local + LOCAL_LEN as u64,
        u16_at(lh, 26),
        "local header name",
    )?;
    if local_name != name.as_bytes() {
        return fail(
            local as usize,
            format!("entry {name:?}: the local header names it differently"),
        );
    }
    slice(b, data_at, size, &format!("entry {name:?}"))?;
    let next = at + CENTRAL_LEN + (name_len + extra_len + comment_len) as usize;
    Ok((
        Entry {
            name,
            data: data_at as usize..(data_at + size) as usize,
        },
        next,
    ))
}

/// The body of the zip64 extra field (id 1) in an extra-field block, if there is one.
fn zip64_extra(mut extra: &[u8]) -> Option<&[u8]> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0);
        let len = u16_at(extra, 2) as usize;
        let body = extra.get(4..4 + len)?;
        if id == 1 {
            return Some(body);
        }
        extra = &extra[4 + len..];
    }
    None
}
