//! safetensors checkpoints, single-file and sharded, memory-mapped.
//!
//! Format (huggingface/safetensors README, "Format"):
//!
//! ```text
//! u64 N (little-endian) | N bytes of UTF-8 JSON header | data
//! header = { "<name>": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
//!            "__metadata__": {"<key>": "<string>", ...} (optional) }
//! ```
//!
//! Offsets are relative to the start of the data. As the reference implementation does, this
//! reader requires the tensors to tile the data exactly: no gaps, no overlaps, nothing after the
//! last tensor, and each tensor's byte length equal to its element count times its dtype size.
//!
//! A sharded checkpoint is a `model.safetensors.index.json`, `{"metadata": {...},
//! "weight_map": {"<tensor>": "<shard file name>", ...}}`, next to its shards
//! (transformers' `save_pretrained` with `max_shard_size`).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;

use crate::Error;
use crate::backing::Backing;

/// The reference implementation refuses headers larger than this (`MAX_HEADER_SIZE`).
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// The file a folder's single-file checkpoint is in.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The shard index of a folder's sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The header key holding free-form string metadata.
const METADATA_KEY: &str = "__metadata__";

macro_rules! st_dtypes {
    ($( $variant:ident = $bits:literal, )*) => {
        /// An element type as named in a safetensors header. Only the float types matter to a
        /// Llama loader; the others are parsed so that a file using them gets a precise error
        /// from the model crate rather than a parse failure here.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum StDtype {
            $( $variant, )*
        }

        impl StDtype {
            /// Every dtype this reader knows.
            pub const ALL: &'static [StDtype] = &[$( StDtype::$variant, )*];

            /// The dtype with header name `name` (`"F16"`, `"BF16"`, ...).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( stringify!($variant) => Some(StDtype::$variant), )*
                    _ => None,
                }
            }

            /// The name as written in a header.
            pub fn name(self) -> &'static str {
                match self { $( StDtype::$variant => stringify!($variant), )* }
            }

            /// Bits per element (4 and 6 for the packed micro-float types).
            pub fn bits(self) -> usize {
                match self { $( StDtype::$variant => $bits, )* }
            }
        }
    };
}

// Names and widths from the reference implementation's `Dtype` (safetensors/src/tensor.rs).
st_dtypes! {
    BOOL = 8,
    F4 = 4,
    F6_E2M3 = 6,
    F6_E3M2 = 6,
    U8 = 8,
    I8 = 8,
    F8_E5M2 = 8,
    F8_E4M3 = 8,
    F8_E8M0 = 8,
    F8_E4M3FNUZ = 8,
    F8_E5M2FNUZ = 8,
    I16 = 16,
    U16 = 16,
    F16 = 16,
    BF16 = 16,
    I32 = 32,
    U32 = 32,
    F32 = 32,
    C64 = 64,
    F64 = 64,
    I64 = 64,
    U64 = 64,
}

impl StDtype {
    /// Bytes taken by `n` elements, or `None` on overflow or when they do not fill whole bytes.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bits = n.checked_mul(self.bits() as u64)?;
        (bits % 8 == 0).then_some(bits / 8)
    }
}

impl fmt::Display for StDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StTensor {
    pub name: String,
    pub dtype: StDtype,
    /// Row-major (PyTorch order): the last dimension is contiguous. `[out, in]` for a linear
    /// layer's weight.
    pub shape: Vec<usize>,
    /// Index of the shard file holding the data (0 for a single file).
    pub file: usize,
    /// Absolute byte range of the data in that file.
    pub data_range: Range<usize>,
}

impl StTensor {
    /// The number of elements (1 for a 0-dimensional tensor).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Writes f32 tensors as one safetensors file (the layout in the module documentation) to `w`,
/// in the order given, with `metadata` as `__metadata__` (transformers wants
/// `{"format": "pt"}`). The header is padded with spaces to a multiple of 8 bytes, as the
/// reference writer does, so the data is aligned; the same input gives the same bytes. The data
/// is streamed: nothing the size of the tensors is allocated.
pub fn write_f32(
    mut w: impl std::io::Write,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, Json> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
            .collect();
        header.insert(METADATA_KEY.into(), Json::Object(m));
    }
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        let end = offset + data.len() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = Json::Object(header).to_string().into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    let mut buf = Vec::with_capacity(1 << 16);
    for (_, _, data) in tensors {
        for chunk in data.chunks(1 << 14) {
            buf.clear();
            for x in chunk {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
    }
    w.flush()
}

struct Shard {
    path: PathBuf,
    backing: Backing,
}

/// A checkpoint of one or more mmapped safetensors files, fully validated on open.
pub struct SafetensorsModel {
    shards: Vec<Shard>,
    tensors: Vec<StTensor>,
    index: HashMap<String, usize>,
    metadata: Vec<(String, String)>,
}

impl fmt::Debug for SafetensorsModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsModel")
            .field(
                "shards",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl SafetensorsModel {
    /// Opens a checkpoint: a folder (with `model.safetensors.index.json` and its shards, or
    /// `model.safetensors`), an index file, or a single `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            let single = path.join(SINGLE_FILE);
            if index.is_file() {
                return Self::open_index(&index);
            }
            if single.is_file() {
                return Self::open_single(&single);
            }
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the folder has neither {INDEX_FILE} nor {SINGLE_FILE}"),
                ),
            });
        }
        let is_index = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".index.json"));
        if is_index {
            Self::open_index(path)
        } else {
            Self::open_single(path)
        }
    }

    /// Parses one in-memory file with the same code as [`SafetensorsModel::open`]. `name`
    /// stands for the path in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self, Error> {
        Self::single(Shard {
            path: PathBuf::from(name),
            backing: Backing::Heap(bytes),
        })
    }

    fn open_single(path: &Path) -> Result<Self, Error> {
        Self::single(Shard {
            path: path.to_path_buf(),
            backing: Backing::map(path)?,
        })
    }

    fn single(shard: Shard) -> Result<Self, Error> {
        let parsed = parse(shard.backing.bytes(), &shard.path)?;
        let index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsModel {
            shards: vec![shard],
            tensors: parsed.tensors,
            index,
            metadata: parsed.metadata,
        })
    }

    fn open_index(index_path: &Path) -> Result<Self, Error> {
        let fail = |offset: u64, msg: String| Error::Safetensors {
            path: index_path.to_path_buf(),
            offset,
            msg,
        };
        let text = std::fs::read(index_path).map_err(|source| Error::Io {
            path: index_path.to_path_buf(),
            source,
        })?;
        let json: Json = serde_json::from_slice(&text).map_err(|e| {
            fail(
                json_error_offset(&text, &e),
                format!("index is not valid JSON: {e}"),
            )
        })?;
        let Some(weight_map) = json.get("weight_map").and_then(Json::as_object) else {
            return Err(fail(
                0,
                "expected an object with a \"weight_map\" object".to_owned(),
            ));
        };
        if weight_map.is_empty() {
            return Err(fail(0, "\"weight_map\" is empty".to_owned()));
        }
        // Which shard each tensor is in, per the index; shards in name order.
        let mut listed: Vec<(&str, &str)> = Vec::with_capacity(weight_map.len());
        for (tensor, file) in weight_map {
            let Some(file) = file.as_str() else {
                return Err(fail(
                    0,
                    format!(
                        "weight_map: tensor {tensor:?}: expected a file name string, found {file}"
                    ),
                ));
            };
            if !is_plain_file_name(file) {
                return Err(fail(
                    0,
                    format!(
                        "weight_map: tensor {tensor:?} points to {file:?}, which is not a file name in the index's folder"
                    ),
                ));
            }
            listed.push((tensor, file));
        }
        let mut files: Vec<&str> = listed.iter().map(|&(_, f)| f).collect();
        files.sort_unstable();
        files.dedup();

        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut model = SafetensorsModel {
            shards: Vec::with_capacity(files.len()),
            tensors: Vec::new(),
            index: HashMap::new(),
            metadata: Vec::new(),
        };
        for (file_index, file) in files.iter().enumerate() {
            let path = dir.join(file);
            let backing = Backing::map(&path)?;
            let parsed = parse(backing.bytes(), &path)?;
            if file_index == 0 {
                model.metadata = parsed.metadata;
            }
            for mut t in parsed.tensors {
                if let Some(&other) = model.index.get(&t.name) {
                    let first: &Path = &model.shards[model.tensors[other].file].path;
                    return Err(Error::Safetensors {
                        path,
                        offset: 8,
                        msg: format!("tensor {:?} is also in shard {}", t.name, first.display()),
                    });
                }
                t.file = file_index;
                model.index.insert(t.name.clone(), model.tensors.len());
                model.tensors.push(t);
            }
            model.shards.push(Shard { path, backing });
        }
        for (tensor, file) in listed {
            let found = model.index.get(tensor).map(|&i| model.tensors[i].file);
            if found.is_none_or(|f| files[f] != file) {
                return Err(fail(
                    0,
                    format!(
                        "weight_map puts tensor {tensor:?} in {file:?}, but that shard does not hold it"
                    ),
                ));
            }
        }
        Ok(model)
    }

    /// All tensors: shard by shard (in file name order), each in header order.
    pub fn tensors(&self) -> &[StTensor] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&StTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from its shard's map.
    ///
    /// # Panics
    /// If `t` does not come from this model and lies outside its shard.
    pub fn data(&self, t: &StTensor) -> &[u8] {
        &self.shards[t.file].backing.bytes()[t.data_range.clone()]
    }

    /// Tells the system that bytes `range` of tensor `t`'s data, copied elsewhere, will not be
    /// read again soon: their pages leave the process's resident memory (the file is
    /// untouched; a later read brings them back).
    pub fn release(&self, t: &StTensor, range: std::ops::Range<usize>) {
        let at = t.data_range.start;
        self.shards[t.file]
            .backing
            .release(at + range.start..at + range.end);
    }

    /// The `__metadata__` strings of the (first) file, in header order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// The paths of the shard files, indexed by [`StTensor::file`].
    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }
}

/// A shard name from an index must stay in the index's folder.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !Path::new(name).has_root()
}

struct Parsed {
    tensors: Vec<StTensor>,
    metadata: Vec<(String, String)>,
}

/// The header's top-level entries in file order. `serde_json`'s map would keep only the last
/// of two equal keys; a duplicate tensor name must be an error instead.
struct Entries(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object mapping tensor names to {dtype, shape, data_offsets}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out: Vec<(String, Json)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate tensor name {key:?}"
                        )));
                    }
                    out.push((key, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The byte offset (within `text`) that a `serde_json` error's line and column point at.
fn json_error_offset(text: &[u8], e: &serde_json::Error) -> u64 {
    let line_start: usize = text
        .split_inclusive(|&b| b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    (line_start + e.column().saturating_sub(1)) as u64
}

/// A JSON value as a non-negative integer that fits in `usize`.
fn as_index(v: &Json) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Parses and validates one file's header; data is only bounds-checked.
fn parse(bytes: &[u8], path: &Path) -> Result<Parsed, Error> {
    let fail = |offset: u64, msg: String| Error::Safetensors {
        path: path.to_path_buf(),
        offset,
        msg,
    };
    let Some(len_bytes) = bytes.first_chunk::<8>() else {
        return Err(fail(
            0,
            format!(
                "needs 8 bytes for the header length, the file has {}",
                bytes.len()
            ),
        ));
    };
    let header_len = u64::from_le_bytes(*len_bytes);
    let after = (bytes.len() - 8) as u64;
    if header_len > after {
        return Err(fail(
            0,
            format!("header length {header_len} exceeds the {after} bytes after it"),
        ));
    }
    if header_len > MAX_HEADER_LEN {
        return Err(fail(
            0,
            format!("header length {header_len} exceeds the limit of {MAX_HEADER_LEN} bytes"),
        ));
    }
    // header_len <= file length, so these fit in usize.
    let header = &bytes[8..8 + header_len as usize];
    let data_start = 8 + header_len as usize;
    let data_len = bytes.len() - data_start;

    let entries: Entries = serde_json::from_slice(header).map_err(|e| {
        let offset = 8 + json_error_offset(header, &e);
        if e.is_data() {
            fail(offset, format!("header: {e}"))
        } else {
            fail(offset, format!("header is not valid JSON: {e}"))
        }
    })?;

    // Semantic errors are reported at the header's start, naming the tensor.
    let fail_at_header = |msg: String| fail(8, msg);
    let mut tensors = Vec::with_capacity(entries.0.len());
    let mut metadata = Vec::new();
    for (name, value) in entries.0 {
        if name == METADATA_KEY {
            let Some(map) = value.as_object() else {
                return Err(fail_at_header(format!(
                    "{METADATA_KEY} must be an object, found {value}"
                )));
            };
            for (k, v) in map {
                let Some(v) = v.as_str() else {
                    return Err(fail_at_header(format!(
                        "{METADATA_KEY} values must be strings, but {k:?} is {v}"
                    )));
                };
                metadata.push((k.clone(), v.to_owned()));
            }
            continue;
        }
        let t = |msg: String| fail_at_header(format!("tensor {name:?}: {msg}"));
        let Some(obj) = value.as_object() else {
            return Err(t(format!(
                "expected an object with dtype, shape and data_offsets, found {value}"
            )));
        };
        let field = |key: &str| obj.get(key).ok_or_else(|| t(format!("missing {key:?}")));
        let dtype_name = field("dtype")?;
        let dtype = dtype_name
            .as_str()
            .and_then(StDtype::from_name)
            .ok_or_else(|| t(format!("unknown dtype {dtype_name}")))?;
        let shape: Vec<usize> = field("shape")?
            .as_array()
            .and_then(|dims| dims.iter().map(as_index).collect())
            .ok_or_else(|| t("\"shape\" must be an array of non-negative integers".to_owned()))?;
        let offsets = field("data_offsets")?
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((as_index(&a[0])?, as_index(&a[1])?)))
            .ok_or_else(|| {
                t("\"data_offsets\" must be [begin, end], two non-negative integers".to_owned())
            })?;
        let (begin, end) = offsets;
        let n_bytes = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .and_then(|n| dtype.bytes_for(n))
            .filter(|&n| n <= usize::MAX as u64)
            .ok_or_else(|| {
                t(format!(
                    "shape {shape:?} overflows or does not fill whole bytes in {dtype}"
                ))
            })?;
        if begin > end {
            return Err(t(format!("data_offsets [{begin}, {end}] are reversed")));
        }
        if end > data_len {
            return Err(t(format!(
                "data_offsets [{begin}, {end}] end past the {data_len} bytes of data"
            )));
        }
        if (end - begin) as u64 != n_bytes {
            return Err(t(format!(
                "{dtype} {shape:?} takes {n_bytes} bytes, but data_offsets [{begin}, {end}] span {}",
                end - begin
            )));
        }
        tensors.push(StTensor {
            name,
            dtype,
            shape,
            file: 0,
            data_range: begin..end,
        });
    }

    // The tensors must tile the data exactly (the reference's `validate`).
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| (tensors[i].data_range.start, tensors[i].data_range.end));
    let mut covered = 0;
    for &i in &order {
        let r = &tensors[i].data_range;
        if r.start != covered {
            return Err(fail(
                (data_start + r.start) as u64,
                format!(
                    "tensor {:?} starts at data offset {}, but the previous tensor ends at {covered}",
                    tensors[i].name, r.start
                ),
            ));
        }
        covered = r.end;
    }
    if covered != data_len {
        return Err(fail(
            (data_start + covered) as u64,
            format!("tensors end at data offset {covered}, but the data is {data_len} bytes"),
        ));
    }
    for t in &mut tensors {
        t.data_range = data_start + t.data_range.start..data_start + t.data_range.end;
    }
    Ok(Parsed { tensors, metadata })
}
