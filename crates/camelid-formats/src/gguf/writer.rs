//! Writes GGUF version 3 files (layout in the parent module's docs).
//!
//! Tensor data is either handed over as bytes or produced by a closure at write time, so a
//! multi-gigabyte model can be written one tensor at a time (quantize a tensor, write it, drop
//! it) without ever holding the whole model in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgmlType, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KEY_LEN,
    MAX_TENSOR_NAME, Value, ValueType,
};
use crate::Error;

/// Produces a tensor's bytes into the file at write time. It must write exactly the tensor's
/// byte size; the writer checks.
type Stream<'a> = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + 'a>;

enum Source<'a> {
    Bytes(Vec<u8>),
    Stream(Stream<'a>),
}

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    size: u64,
    source: Source<'a>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file in one pass.
///
/// Metadata keeps the order of first insertion; adding a key again replaces its value.
/// Tensors are laid out in the order they were added, each at an offset that is a multiple of
/// the alignment. The lifetime `'a` is that of whatever the tensor closures borrow (typically
/// the input model being converted).
pub struct GgufWriter<'a> {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

/// Stands for the path in errors raised before a file is named.
const NO_PATH: &str = "(GGUF writer)";

fn io_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(path: &Path, msg: String) -> Error {
    Error::GgufWrite {
        path: path.to_path_buf(),
        msg,
    }
}

impl<'a> GgufWriter<'a> {
    /// A writer whose data section and tensors are aligned to `alignment` bytes. 32 is the
    /// spec's default; any other value is recorded as `general.alignment` (appended to the
    /// metadata at write time unless it was added explicitly). A value that is not a power of two
    /// is reported by the write.
    pub fn new(alignment: u64) -> Self {
        GgufWriter {
            alignment,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets `key` to `value`. Keys are checked when the file is written.
    pub fn add_metadata(&mut self, key: &str, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
    }

    /// Adds a tensor whose data is already in memory. `dims` are in GGUF order (row length
    /// first); `data.len()` must be the size those dims take in type `ty`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        let size = self.check_tensor(name, dims, ty)?;
        if data.len() as u64 != size {
            return Err(write_error(
                Path::new(NO_PATH),
                format!(
                    "tensor {name:?}: {} bytes given, but {ty} {dims:?} takes {size}",
                    data.len()
                ),
            ));
        }
        self.push(name, dims, ty, size, Source::Bytes(data));
        Ok(())
    }

    /// Adds a tensor whose bytes `produce` writes when the file is written, so they need not be
    /// in memory before then. `produce` must write exactly the size of `ty` × `dims`.
    pub fn add_tensor_stream(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()> + 'a,
    ) -> Result<(), Error> {
        let size = self.check_tensor(name, dims, ty)?;
        self.push(name, dims, ty, size, Source::Stream(Box::new(produce)));
        Ok(())
    }

    fn push(&mut self, name: &str, dims: &[u64], ty: GgmlType, size: u64, source: Source<'a>) {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ty,
            size,
            source,
        });
    }

    /// Validates a tensor the reader would accept; returns its byte size.
    fn check_tensor(&self, name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, Error> {
        let fail = |msg: String| {
            Err(write_error(
                Path::new(NO_PATH),
                format!("tensor {name:?}: {msg}"),
            ))
        };
        if name.len() > MAX_TENSOR_NAME {
            return fail(format!(
                "name is {} bytes, at most {MAX_TENSOR_NAME} allowed",
                name.len()
            ));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return fail("added twice".to_owned());
        }
        if dims.len() > MAX_DIMS {
            return fail(format!(
                "{} dimensions, at most {MAX_DIMS} allowed",
                dims.len()
            ));
        }
        let Some(n) = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
        else {
            return fail(format!(
                "dimensions {dims:?} have more than 2^63 - 1 elements"
            ));
        };
        let row = dims.first().copied().unwrap_or(1);
        let Some(row_bytes) = ty.row_bytes(row) else {
            return fail(format!(
                "row length {row} is not a multiple of the {ty} block size {}",
                ty.block_size()
            ));
        };
        match row_bytes.checked_mul(n.checked_div(row).unwrap_or(0)) {
            Some(size) => Ok(size),
            None => fail("byte size overflows u64".to_owned()),
        }
    }

    /// Writes the file to `w`, consuming the writer (tensor closures run once). Returns the
    /// number of bytes written.
    pub fn write_to(self, w: impl Write) -> Result<u64, Error> {
        self.write_inner(w, Path::new(NO_PATH))
    }

    /// Writes the file to `path` safely: into a temporary file in the same folder, synced, then
    /// renamed over `path`. A crash or error never leaves a half-written `path`, and the input
    /// of a conversion may be `path` itself (its open map keeps the old contents alive).
    pub fn write_file(self, path: &Path) -> Result<u64, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(file_name) = path.file_name() else {
            return Err(write_error(
                path,
                "the output path names no file".to_owned(),
            ));
        };
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let result = (|| {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let n = self.write_inner(&mut out, path)?;
            let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            file.sync_all().map_err(io_err(&tmp))?;
            drop(file);
            fs::rename(&tmp, path).map_err(io_err(path))?;
            Ok(n)
        })();
        if result.is_err() {
            // Best effort: the error being returned matters more than a leftover temp file.
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_inner(self, w: impl Write, path: &Path) -> Result<u64, Error> {
        let fail = |msg: String| write_error(path, msg);
        if !self.alignment.is_power_of_two() || u32::try_from(self.alignment).is_err() {
            return Err(fail(format!(
                "alignment {} is not a power of two that fits in u32",
                self.alignment
            )));
        }
        let mut metadata = self.metadata;
        match metadata
            .iter()
            .find(|(k, _)| k == ALIGNMENT_KEY)
            .map(|(_, v)| v)
        {
            Some(Value::U32(a)) if u64::from(*a) == self.alignment => {}
            None if self.alignment == DEFAULT_ALIGNMENT => {}
            // Checked above to fit.
            None => metadata.push((ALIGNMENT_KEY.to_owned(), Value::U32(self.alignment as u32))),
            Some(other) => {
                return Err(fail(format!(
                    "metadata {ALIGNMENT_KEY} is {other} ({}), but the writer aligns to {}",
                    other.type_name(),
                    self.alignment
                )));
            }
        }
        for (key, value) in &metadata {
            if key.len() > MAX_KEY_LEN {
                return Err(fail(format!(
                    "metadata key of {} bytes is too long",
                    key.len()
                )));
            }
            check_value(value, 0).map_err(|msg| fail(format!("metadata key {key:?}: {msg}")))?;
        }

        let mut out = Counting {
            inner: w,
            written: 0,
        };
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in &metadata {
            put_string(&mut header, key);
            header.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut header, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = offset
                .checked_add(t.size)
                .and_then(|end| end.checked_next_multiple_of(self.alignment))
                .ok_or_else(|| fail("total data size overflows u64".to_owned()))?;
        }
        out.write_all(&header).map_err(io_err)?;
        pad(&mut out, self.alignment).map_err(io_err)?;
        let data_start = out.written;

        for (t, offset) in self.tensors.into_iter().zip(offsets) {
            debug_assert_eq!(out.written - data_start, offset);
            let before = out.written;
            match t.source {
                Source::Bytes(data) => out.write_all(&data).map_err(io_err)?,
                Source::Stream(produce) => produce(&mut out).map_err(io_err)?,
            }
            let written = out.written - before;
            if written != t.size {
                return Err(fail(format!(
                    "tensor {:?}: its stream wrote {written} bytes, but {} {:?} takes {}",
                    t.name, t.ty, t.dims, t.size
                )));
            }
            pad(&mut out, self.alignment).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        Ok(out.written)
    }
}

/// Checks that arrays are homogeneous and nest no deeper than the reader accepts (the same rule
/// as the reader's, so that whatever this writes reads back).
fn check_value(value: &Value, depth: usize) -> Result<(), String> {
    if let Value::Array(ty, items) = value {
        if *ty == ValueType::Array && depth + 1 >= MAX_ARRAY_DEPTH {
            return Err(format!("arrays nest deeper than {MAX_ARRAY_DEPTH} levels"));
        }
        for (i, item) in items.iter().enumerate() {
            if item.value_type() != *ty {
                return Err(format!(
                    "array of {ty} has a {} at index {i}",
                    item.type_name()
                ));
            }
            check_value(item, depth + 1)?;
        }
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// Writes zeros up to the next multiple of `alignment`.
fn pad<W: Write>(out: &mut Counting<W>, alignment: u64) -> io::Result<()> {
    let n = out.written.next_multiple_of(alignment) - out.written;
    let zeros = [0u8; 256];
    let mut left = n;
    while left > 0 {
        let chunk = left.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..chunk])?;
        left -= chunk as u64;
    }
    Ok(())
}

/// Counts what passes through, so offsets and stream sizes can be checked.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
