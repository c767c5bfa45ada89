//! GGUF reader and writer.
//!
//! Format: ggml `docs/gguf.md` (the GGUF spec). A file is
//!
//! ```text
//! magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//! metadata_kv_count × (string key, u32 value_type, value)
//! tensor_count × (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset)
//! padding to general.alignment (default 32)
//! tensor data; each tensor at data_start + offset, offsets multiples of the alignment
//! ```
//!
//! with every integer little-endian and a string being `u64 length` + UTF-8 bytes (no NUL).
//! Versions 2 and 3 share this layout; version 1 used 32-bit counts and lengths and is rejected.
//!
//! The reader trusts nothing: every count and length is checked against the bytes left in the
//! file before anything is allocated, every tensor's extent against the file size, and arrays
//! may nest only [`MAX_ARRAY_DEPTH`] deep so that recursion is bounded too.

mod ggml_type;
pub mod keys;
mod value;
mod writer;

pub use ggml_type::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::backing::Backing;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Whether `path` is a file that starts with [`MAGIC`] (what the callers that take either a
/// GGUF or something else look at first; [`Gguf::open`] checks the rest).
pub fn has_magic(path: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|_| head == MAGIC)
}
/// Alignment of the data section and of tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`]; the spec makes it a `u32`.
pub const ALIGNMENT_KEY: &str = keys::general::ALIGNMENT;
/// ggml tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// The spec caps tensor names at 64 bytes.
pub const MAX_TENSOR_NAME: usize = 64;
/// The spec caps metadata keys at 2^16 - 1 bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;
/// How deep arrays of arrays may nest. The spec sets no limit; this one only keeps a hostile
/// file from exhausting the stack, and is far beyond anything a model needs.
pub const MAX_ARRAY_DEPTH: usize = 16;

/// Bytes a tensor info takes at least: name length, n_dims, type and offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 4 + 8;
/// Bytes a metadata entry takes at least: key length, value type and a one-byte value.
const MIN_KV: u64 = 8 + 4 + 1;

/// One tensor's entry in the file's tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// In GGUF (ggml) order: `dims[0]` is the contiguous row length, `dims[1]` the number of
    /// rows, and so on. A PyTorch shape `[out, in]` is stored as `[in, out]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section, as written in the file.
    pub offset: u64,
    /// Absolute byte range of the tensor's data in the file.
    pub data_range: Range<usize>,
}

impl TensorInfo {
    /// The number of elements (the product of the dims; 1 for a 0-dimensional tensor).
    /// Never overflows: the reader rejects tensors whose element count exceeds `i64::MAX`.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The size of the data in bytes.
    pub fn n_bytes(&self) -> usize {
        self.data_range.len()
    }
}

/// A validated GGUF file. Owns its memory map (or buffer); tensor data is borrowed from it.
pub struct Gguf {
    path: PathBuf,
    backing: Backing,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl Gguf {
    /// Maps and validates the file at `path`. Only the header is read; tensor data stays in the
    /// page cache until a caller touches it.
    pub fn open(path: &Path) -> Result<Gguf, Error> {
        Gguf::from_backing(Backing::map(path)?, path.to_path_buf())
    }

    /// Parses an in-memory file with the same code as [`Gguf::open`]. `name` stands for the
    /// path in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Gguf, Error> {
        Gguf::from_backing(Backing::Heap(bytes), PathBuf::from(name))
    }

    fn from_backing(backing: Backing, path: PathBuf) -> Result<Gguf, Error> {
        let header = parse(backing.bytes(), &path)?;
        Ok(Gguf {
            path,
            backing,
            version: header.version,
            alignment: header.alignment,
            data_offset: header.data_offset,
            metadata: header.metadata,
            metadata_index: header.metadata_index,
            tensors: header.tensors,
            tensor_index: header.tensor_index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or 32 when the file does not set it.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section (the end of the header, rounded up to the alignment).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The value of `key` read through `conv` (one of [`Value`]'s `as_*` readers): `Ok(None)`
    /// when the key is absent, `Err("expected {what}, found {type}")` when `conv` refuses it.
    pub fn get_as<'a, T>(
        &'a self,
        key: &str,
        what: &str,
        conv: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => conv(v)
                .map(Some)
                .ok_or_else(|| format!("expected {what}, found {}", v.type_name())),
        }
    }

    /// All tensors, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the map without copying.
    ///
    /// # Panics
    /// If `t` comes from another, shorter file (a `TensorInfo` of this file is always in range).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        &self.bytes()[t.data_range.clone()]
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// Tells the system that bytes `range` of the file, copied elsewhere, will not be read
    /// again soon: their pages leave the process's resident memory (the file is untouched; a
    /// later read brings them back).
    pub fn release(&self, range: std::ops::Range<usize>) {
        self.backing.release(range);
    }
}

/// Everything [`parse`] learns from a header.
struct Header {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn error(&self, offset: usize, msg: String) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            msg,
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// Takes `n` bytes, or fails naming `what` was being read.
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(self.error(
                self.pos,
                format!(
                    "{}: needs {n} bytes but the file ends {} bytes later (file size {})",
                    what(),
                    self.remaining(),
                    self.bytes.len()
                ),
            ));
        }
        let start = self.pos;
        // `n <= remaining` so this fits in usize and in the slice.
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], Error> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, Error> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, Error> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u32 type id, known to `from_id`; `unknown(id)` says what is wrong with another.
    fn type_id<T>(
        &mut self,
        what: &dyn Fn() -> String,
        from_id: fn(u32) -> Option<T>,
        unknown: &dyn Fn(u32) -> String,
    ) -> Result<T, Error> {
        let at = self.pos;
        let id = self.u32(what)?;
        from_id(id).ok_or_else(|| self.error(at, unknown(id)))
    }

    /// A GGUF string: u64 length, then that many bytes of UTF-8, at most `max_len` of them.
    fn string(&mut self, max_len: usize, what: &dyn Fn() -> String) -> Result<String, Error> {
        let start = self.pos;
        let len = self.u64(&|| format!("{} (string length)", what()))?;
        if len > max_len as u64 {
            return Err(self.error(
                start,
                format!(
                    "{}: string length {len} exceeds the limit of {max_len} bytes",
                    what()
                ),
            ));
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(
                start + 8 + e.valid_up_to(),
                format!(
                    "{}: string is not valid UTF-8 (invalid byte {} bytes into a {len}-byte string)",
                    what(),
                    e.valid_up_to()
                ),
            )),
        }
    }

    /// Fails unless `count` items of at least `min_size` bytes each can fit in what is left.
    /// Called before every allocation sized by a count from the file.
    fn check_count(&self, at: usize, count: u64, min_size: u64, what: &str) -> Result<(), Error> {
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|need| need <= self.remaining());
        if fits {
            Ok(())
        } else {
            Err(self.error(
                at,
                format!(
                    "{what} count {count} is impossible: each takes at least {min_size} bytes and only {} bytes are left in the file",
                    self.remaining()
                ),
            ))
        }
    }

    fn value(&mut self, ty: ValueType, depth: usize, key: &str) -> Result<Value, Error> {
        let what = || format!("value of metadata key {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(&what)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(&what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(&what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(self
                            .error(at, format!("{}: bool byte is {b}, expected 0 or 1", what())));
                    }
                }
            }
            ValueType::String => Value::String(self.string(usize::MAX, &what)?),
            ValueType::Array => {
                let at = self.pos;
                let elem_id = self.u32(&|| format!("{} (array element type)", what()))?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    self.error(
                        at,
                        format!(
                            "{}: unknown array element type {elem_id}, expected 0..=12",
                            what()
                        ),
                    )
                })?;
                if elem == ValueType::Array && depth + 1 >= MAX_ARRAY_DEPTH {
                    return Err(self.error(
                        at,
                        format!(
                            "{}: arrays nest deeper than {MAX_ARRAY_DEPTH} levels",
                            what()
                        ),
                    ));
                }
                let count_at = self.pos;
                let count = self.u64(&|| format!("{} (array length)", what()))?;
                self.check_count(
                    count_at,
                    count,
                    elem.min_encoded_size(),
                    &format!("{} array element", what()),
                )?;
                // Bounded above by the bytes left in the file.
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem, depth + 1, key)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_next_multiple_of(alignment)
}

/// Parses and validates a whole header, in the file's order: magic and version, the two
/// counts, the metadata, the alignment it sets, the tensor infos, then the tensors' places in
/// the data section (inside the file, not overlapping). Tensor data is not read, only
/// bounds-checked.
fn parse(bytes: &[u8], path: &Path) -> Result<Header, Error> {
    let mut cur = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let version = read_preamble(&mut cur)?;
    let tensor_count_at = cur.pos;
    let tensor_count = cur.u64(&|| "tensor count".to_owned())?;
    let kv_count_at = cur.pos;
    let kv_count = cur.u64(&|| "metadata key/value count".to_owned())?;
    cur.check_count(kv_count_at, kv_count, MIN_KV, "metadata key/value")?;
    cur.check_count(tensor_count_at, tensor_count, MIN_TENSOR_INFO, "tensor")?;
    let md = read_metadata(&mut cur, kv_count)?;
    let alignment = md.alignment(&cur)?;
    // The tensor count was checked against the whole file; check it again against what is left.
    cur.check_count(tensor_count_at, tensor_count, MIN_TENSOR_INFO, "tensor")?;
    let mut infos = read_tensor_infos(&mut cur, tensor_count, alignment)?;
    let data_offset = align_up(cur.pos as u64, alignment)
        .ok_or_else(|| cur.error(cur.pos, "data section start overflows u64".to_owned()))?;
    infos.place(&cur, data_offset)?;
    infos.check_overlaps(&cur)?;
    Ok(Header {
        version,
        alignment,
        data_offset,
        metadata: md.entries,
        metadata_index: md.index,
        tensors: infos.tensors,
        tensor_index: infos.index,
    })
}

/// The magic and a supported version, with what to do about the usual wrong ones.
fn read_preamble(cur: &mut Cursor) -> Result<u32, Error> {
    let magic = cur.array::<4>(&|| "magic".to_owned())?;
    if magic != MAGIC {
        let hint = match &magic {
            b"lmgg" | b"fmgg" | b"tjgg" => {
                " (this is a pre-GGUF ggml/ggmf/ggjt file; convert the model to GGUF)"
            }
            b"FUGG" => " (the magic is byte-swapped)",
            _ => "",
        };
        return Err(cur.error(
            0,
            format!(
                "expected the magic \"GGUF\" (47 47 55 46), found {:02x} {:02x} {:02x} {:02x}{hint}",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }

    let version = cur.u32(&|| "version".to_owned())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(cur.error(
                4,
                "GGUF version 1 is not supported (it used 32-bit counts and lengths); \
                 re-convert the model with a current converter to get version 3"
                    .to_owned(),
            ));
        }
        v if (1..=3).contains(&v.swap_bytes()) => {
            return Err(cur.error(
                4,
                format!(
                    "this is a big-endian GGUF file (version reads {v:#010x}, byte-swapped {}); \
                     only little-endian files are supported",
                    v.swap_bytes()
                ),
            ));
        }
        v => {
            return Err(cur.error(4, format!("unsupported GGUF version {v}, expected 2 or 3")));
        }
    }

    Ok(version)
}

/// The metadata in file order, with an index by key and each key's byte offset (for errors).
struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    key_offsets: Vec<usize>,
}

/// `kv_count` key/value pairs (the count already bounded by the file size); a key defined
/// twice is an error.
fn read_metadata(cur: &mut Cursor, kv_count: u64) -> Result<Metadata, Error> {
    // The count is bounded by the file size.
    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut metadata_index = HashMap::with_capacity(kv_count as usize);
    let mut key_offsets = Vec::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let at = cur.pos;
        let key = cur.string(MAX_KEY_LEN, &|| format!("metadata key #{i}"))?;
        match metadata_index.entry(key.clone()) {
            Entry::Occupied(first) => {
                let first_at: usize = key_offsets[*first.get()];
                return Err(cur.error(
                    at,
                    format!("duplicate metadata key {key:?} (first defined at byte {first_at})"),
                ));
            }
            Entry::Vacant(slot) => {
                slot.insert(metadata.len());
            }
        }
        let ty = cur.type_id(
            &|| format!("value type of metadata key {key:?}"),
            ValueType::from_id,
            &|id| format!("metadata key {key:?}: unknown value type {id}, expected 0..=12"),
        )?;
        let value = cur.value(ty, 0, &key)?;
        key_offsets.push(at);
        metadata.push((key, value));
    }

    Ok(Metadata {
        entries: metadata,
        index: metadata_index,
        key_offsets,
    })
}

impl Metadata {
    /// The data section's alignment: `general.alignment`, a power of two, or the default.
    fn alignment(&self, cur: &Cursor) -> Result<u64, Error> {
        let (metadata, metadata_index, key_offsets) =
            (&self.entries, &self.index, &self.key_offsets);
        Ok(match metadata_index.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let at = key_offsets[i];
                match metadata[i].1 {
                    Value::U32(a) if a.is_power_of_two() => u64::from(a),
                    Value::U32(a) => {
                        return Err(cur.error(
                            at,
                            format!("{ALIGNMENT_KEY} is {a}, expected a non-zero power of two"),
                        ));
                    }
                    ref other => {
                        return Err(cur.error(
                            at,
                            format!(
                                "{ALIGNMENT_KEY} has type {}, expected u32",
                                other.type_name()
                            ),
                        ));
                    }
                }
            }
        })
    }
}

/// The tensor infos in file order, with an index by name, each info's byte offset (for
/// errors) and each tensor's size in bytes.
struct TensorInfos {
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    info_offsets: Vec<usize>,
    sizes: Vec<u64>,
}

/// `tensor_count` tensor infos: unique names, bounded dimensions, known types, whole blocks per
/// row, offsets on the alignment. Their data ranges are set by [`TensorInfos::place`].
fn read_tensor_infos(
    cur: &mut Cursor,
    tensor_count: u64,
    alignment: u64,
) -> Result<TensorInfos, Error> {
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut tensor_index = HashMap::with_capacity(tensor_count as usize);
    let mut info_offsets = Vec::with_capacity(tensor_count as usize);
    // Byte sizes, kept until the data section's start is known.
    let mut sizes = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let at = cur.pos;
        let name = cur.string(MAX_TENSOR_NAME, &|| format!("name of tensor #{i}"))?;
        if let Some(&first) = tensor_index.get(&name) {
            let first_at: usize = info_offsets[first];
            return Err(cur.error(
                at,
                format!("duplicate tensor name {name:?} (first defined at byte {first_at})"),
            ));
        }
        let (dims, ggml_type, size, offset) = read_tensor_layout(cur, &name, alignment)?;
        tensor_index.insert(name.clone(), tensors.len());
        info_offsets.push(at);
        sizes.push(size);
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            data_range: 0..0,
        });
    }

    Ok(TensorInfos {
        tensors,
        index: tensor_index,
        info_offsets,
        sizes,
    })
}

/// One tensor info after its name: dimensions (at most [`MAX_DIMS`], fewer than 2^63
/// elements), ggml type, size in bytes (whole blocks per row), and data offset (on the
/// alignment).
fn read_tensor_layout(
    cur: &mut Cursor,
    name: &str,
    alignment: u64,
) -> Result<(Vec<u64>, GgmlType, u64, u64), Error> {
    let dims_at = cur.pos;
    let n_dims = cur.u32(&|| format!("tensor {name:?}: number of dimensions"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(cur.error(
            dims_at,
            format!("tensor {name:?}: {n_dims} dimensions, expected at most {MAX_DIMS}"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut n_elements: u64 = 1;
    for d in 0..n_dims {
        let dim = cur.u64(&|| format!("tensor {name:?}: dimension {d}"))?;
        // ggml stores dims as int64_t, so the element count must fit in an i64.
        n_elements = n_elements
            .checked_mul(dim)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                cur.error(
                    dims_at,
                    format!(
                        "tensor {name:?}: dimensions {:?} have more than 2^63 - 1 elements",
                        [&dims[..], &[dim]].concat()
                    ),
                )
            })?;
        dims.push(dim);
    }
    let ggml_type = cur.type_id(
        &|| format!("tensor {name:?}: type"),
        GgmlType::from_id,
        &|id| format!("tensor {name:?}: unknown ggml type id {id}"),
    )?;
    let row_len = dims.first().copied().unwrap_or(1);
    let n_rows = n_elements.checked_div(row_len).unwrap_or(0);
    let size = ggml_type
        .row_bytes(row_len)
        .ok_or_else(|| {
            cur.error(
                dims_at,
                format!(
                    "tensor {name:?}: row length {row_len} is not a multiple of the {} block size {}",
                    ggml_type.name(),
                    ggml_type.block_size()
                ),
            )
        })?
        .checked_mul(n_rows)
        .ok_or_else(|| {
            cur.error(dims_at, format!("tensor {name:?}: byte size overflows u64"))
        })?;
    let offset_at = cur.pos;
    let offset = cur.u64(&|| format!("tensor {name:?}: data offset"))?;
    if offset % alignment != 0 {
        return Err(cur.error(
            offset_at,
            format!(
                "tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}"
            ),
        ));
    }
    Ok((dims, ggml_type, size, offset))
}

impl TensorInfos {
    /// Sets each tensor's byte range in the file, the data section starting at `data_offset`;
    /// a tensor that ends past the end of the file is an error that says whether the file looks
    /// truncated.
    fn place(&mut self, cur: &Cursor, data_offset: u64) -> Result<(), Error> {
        let (tensors, sizes, info_offsets) =
            (&mut self.tensors, &self.sizes[..], &self.info_offsets[..]);
        let file_len = cur.bytes.len() as u64;
        let end_of = |t: &TensorInfo, size: u64| {
            data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(size))
        };
        // The size the header implies, when every extent is representable: a header that parsed
        // with data cut short is what an interrupted download or copy leaves, and saying so (with
        // both sizes) tells the user to fetch the file again rather than suspect the reader.
        let implied_len = tensors
            .iter()
            .zip(sizes)
            .try_fold(data_offset, |m, (t, &size)| {
                end_of(t, size).map(|e| m.max(e))
            });
        for ((t, &size), &at) in tensors.iter_mut().zip(sizes).zip(info_offsets) {
            match end_of(t, size) {
                Some(end) if end <= file_len => {
                    // `start <= end <= file_len`, which fits in usize.
                    t.data_range = (data_offset + t.offset) as usize..end as usize;
                }
                _ => {
                    let (truncated, size_note) = match implied_len {
                        Some(need) => (
                            format!("file looks truncated ({file_len} of ≥ {need} bytes): "),
                            String::new(),
                        ),
                        None => (String::new(), format!(", file size is {file_len}")),
                    };
                    return Err(cur.error(
                        at,
                        format!(
                            "{truncated}tensor {:?} ({} {:?}, {size} bytes at data offset {}) ends past \
                             the end of the file: data section starts at byte {data_offset}{size_note}",
                            t.name, t.ggml_type, t.dims, t.offset
                        ),
                    ));
                }
            }
        }

        Ok(())
    }

    /// Tensors may come in any order in the data section, but must not share bytes.
    fn check_overlaps(&self, cur: &Cursor) -> Result<(), Error> {
        let (tensors, sizes, info_offsets) =
            (&self.tensors, &self.sizes[..], &self.info_offsets[..]);
        let mut order: Vec<usize> = (0..tensors.len()).filter(|&i| sizes[i] > 0).collect();
        order.sort_by_key(|&i| tensors[i].data_range.start);
        for pair in order.windows(2) {
            let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
            if b.data_range.start < a.data_range.end {
                return Err(cur.error(
                    info_offsets[pair[1]],
                    format!(
                        "tensor {:?} (bytes {:?}) overlaps tensor {:?} (bytes {:?})",
                        b.name, b.data_range, a.name, a.data_range
                    ),
                ));
            }
        }

        Ok(())
    }
}
