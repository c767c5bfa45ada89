//! PyTorch checkpoints (`torch.save` of a state dict) and Meta's original release folders
//! (`params.json` + `consolidated.NN.pth`), read without Python and without running code.
//!
//! A `.pth` file (torch >= 1.6, `_use_new_zipfile_serialization`) is a zip archive
//! ([`zip`]) holding `<archive>/data.pkl`, a pickle of the state dict ([`pickle`]), and one
//! entry `<archive>/data/<key>` per storage with its raw bytes in the machine's byte order
//! (`<archive>/byteorder` says which, when present). A tensor is a contiguous view of a storage:
//! its bytes are a range of the file, used in place.
//!
//! Meta's folders: `params.json` holds the `ModelArgs` of meta-llama/llama `llama/model.py`
//! (LLaMA 1/2) and meta-llama/llama3 `llama/model.py` (Llama 3); each `consolidated.NN.pth`
//! holds one model-parallel rank's slices. Joining them is the model crate's business.

mod pickle;
mod writer;
mod zip;

pub use writer::{PthEntry, write_pth};

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::backing::Backing;

/// The storage element types camelid reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PthDtype {
    F32,
    F16,
    BF16,
}

impl PthDtype {
    pub fn size(self) -> usize {
        match self {
            PthDtype::F32 => 4,
            PthDtype::F16 | PthDtype::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PthDtype::F32 => "F32",
            PthDtype::F16 => "F16",
            PthDtype::BF16 => "BF16",
        }
    }
}

impl fmt::Display for PthDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a `.pth` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PthTensor {
    pub name: String,
    pub dtype: PthDtype,
    /// Row-major, the last dimension contiguous (checked at open).
    pub shape: Vec<usize>,
    /// Absolute byte range of the data in the file.
    pub data_range: Range<usize>,
}

impl PthTensor {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A memory-mapped `.pth` state dict, validated on open.
pub struct PthFile {
    path: PathBuf,
    backing: Backing,
    tensors: Vec<PthTensor>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for PthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PthFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl PthFile {
    pub fn open(path: &Path) -> Result<PthFile, Error> {
        Self::parse(path.to_path_buf(), Backing::map(path)?)
    }

    /// Parses an in-memory file with the same code as [`PthFile::open`]; `name` stands for the
    /// path in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<PthFile, Error> {
        Self::parse(PathBuf::from(name), Backing::Heap(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<PthFile, Error> {
        let tensors = read_tensors(backing.bytes(), &path)?;
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(PthFile {
            path,
            backing,
            tensors,
            index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tensors, in the order of the pickled dict.
    pub fn tensors(&self) -> &[PthTensor] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&PthTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the map.
    ///
    /// # Panics
    /// If `t` does not come from this file and lies outside it.
    pub fn data(&self, t: &PthTensor) -> &[u8] {
        &self.backing.bytes()[t.data_range.clone()]
    }

    /// Tells the system that bytes `range` of tensor `t`'s data, copied elsewhere, will not be
    /// read again soon: their pages leave the process's resident memory (the file is
    /// untouched; a later read brings them back).
    pub fn release(&self, t: &PthTensor, range: std::ops::Range<usize>) {
        let at = t.data_range.start;
        self.backing.release(at + range.start..at + range.end);
    }
}

fn pth_err(path: &Path, offset: u64, msg: impl Into<String>) -> Error {
    Error::Pth {
        path: path.to_path_buf(),
        offset,
        msg: msg.into(),
    }
}

/// The pickle's bytes are at most this long (Meta's largest have a few hundred KB).
const MAX_PICKLE_LEN: usize = 1 << 28;

fn read_tensors(b: &[u8], path: &Path) -> Result<Vec<PthTensor>, Error> {
    // torch.save's legacy format (before 1.6) starts with a pickled magic number instead.
    if b.starts_with(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8") {
        return Err(pth_err(
            path,
            0,
            "legacy (pre-1.6, non-zip) torch.save format; re-save it with a current torch",
        ));
    }
    let archive = zip::read(b).map_err(|e| pth_err(path, e.offset, e.msg))?;
    // The pickle is `<archive>/data.pkl`, the archive name being the file's stem as torch chose it.
    let pkl: Vec<&zip::Entry> = archive
        .entries
        .iter()
        .filter(|e| e.name.split('/').count() == 2 && e.name.ends_with("/data.pkl"))
        .collect();
    let [pkl] = pkl[..] else {
        return Err(pth_err(
            path,
            0,
            format!(
                "expected one <archive>/data.pkl entry in the zip, found {}: not a torch.save checkpoint",
                pkl.len()
            ),
        ));
    };
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    if let Some(bo) = archive.get(&format!("{prefix}byteorder")) {
        let order = &b[bo.data.clone()];
        if order != b"little" {
            return Err(pth_err(
                path,
                bo.data.start as u64,
                format!(
                    "byteorder is {:?}; camelid reads little-endian storages",
                    String::from_utf8_lossy(&order[..order.len().min(16)])
                ),
            ));
        }
    }
    if pkl.data.len() > MAX_PICKLE_LEN {
        return Err(pth_err(
            path,
            pkl.data.start as u64,
            format!(
                "data.pkl is {} bytes, over the limit of {MAX_PICKLE_LEN}",
                pkl.data.len()
            ),
        ));
    }
    let refs = pickle::read_state_dict(&b[pkl.data.clone()]).map_err(|e| {
        pth_err(
            path,
            (pkl.data.start + e.offset) as u64,
            format!(
                "{}data.pkl at pickle offset {}: {}",
                prefix, e.offset, e.msg
            ),
        )
    })?;
    refs.into_iter()
        .map(|(name, r)| tensor_from_ref(&archive, prefix, path, pkl.data.start, name, r))
        .collect()
}

/// Resolves a pickled tensor to a byte range of its storage's entry.
fn tensor_from_ref(
    archive: &zip::Archive,
    prefix: &str,
    path: &Path,
    pkl_at: usize,
    name: String,
    r: pickle::TensorRef,
) -> Result<PthTensor, Error> {
    let fail = |msg: String| pth_err(path, pkl_at as u64, format!("tensor {name:?}: {msg}"));
    let key = &r.storage.key;
    if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(fail(format!("storage key {key:?} is not a plain name")));
    }
    let entry_name = format!("{prefix}data/{key}");
    let entry = archive
        .get(&entry_name)
        .ok_or_else(|| fail(format!("storage {entry_name:?} is not in the archive")))?;
    let es = r.storage.dtype.size() as u64;
    let storage_bytes = r.storage.numel.checked_mul(es);
    if storage_bytes != Some(entry.data.len() as u64) {
        return Err(fail(format!(
            "storage {entry_name:?} declares {} {} elements but holds {} bytes",
            r.storage.numel,
            r.storage.dtype,
            entry.data.len()
        )));
    }
    let mut shape = Vec::with_capacity(r.shape.len());
    for &d in &r.shape {
        shape.push(usize::try_from(d).map_err(|_| fail(format!("dimension {d} is too large")))?);
    }
    let numel = r
        .shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| fail(format!("shape {:?} overflows", r.shape)))?;
    // Contiguous row-major: each stride is the product of the sizes after it (a dimension of
    // size 1 may have any stride, as torch's own `is_contiguous` allows).
    let mut want = 1u64;
    for (i, (&d, &s)) in r.shape.iter().zip(&r.stride).enumerate().rev() {
        if d != 1 && s != want {
            return Err(fail(format!(
                "size {:?} with stride {:?} is not contiguous (dimension {i}); camelid reads tensors in place and needs them contiguous",
                r.shape, r.stride
            )));
        }
        want = want.saturating_mul(d);
    }
    let end = r.offset.checked_add(numel);
    if end.is_none_or(|e| e > r.storage.numel) {
        return Err(fail(format!(
            "elements [{}, {}) lie past the end of storage {entry_name:?} ({} elements)",
            r.offset,
            r.offset.saturating_add(numel),
            r.storage.numel
        )));
    }
    // Both are within the entry, which lies within the file: these fit in usize.
    let start = entry.data.start + (r.offset * es) as usize;
    Ok(PthTensor {
        name,
        dtype: r.storage.dtype,
        shape,
        data_range: start..start + (numel * es) as usize,
    })
}

/// `params.json` of a Meta release: the `ModelArgs` fields (meta-llama/llama3 `llama/model.py`;
/// meta-llama/llama-models `models/llama3/args.py` adds `rope_theta` and `use_scaled_rope`).
/// Unknown fields are ignored, as `ModelArgs` ignores them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct MetaParams {
    pub dim: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub n_kv_heads: Option<usize>,
    /// -1 in LLaMA 1 and Llama 2 (the tokenizer decides).
    pub vocab_size: Option<i64>,
    pub multiple_of: Option<usize>,
    pub ffn_dim_multiplier: Option<f64>,
    pub norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub use_scaled_rope: Option<bool>,
    /// The llama3 RoPE scaling factor and high-frequency factor. Not in Meta's Llama 3 files nor
    /// read by Meta's Llama 3 code (which fixes 8 and 4); Llama 4's `ModelArgs` has them
    /// (meta-llama/llama-models `models/llama4/args.py`), and a folder that states them means
    /// them.
    pub rope_scaling_factor: Option<f64>,
    pub rope_high_freq_factor: Option<f64>,
    /// Not in Meta's files (a run-time argument of their generator), honoured when present.
    pub max_seq_len: Option<usize>,
}

/// The params file of a Meta folder.
pub const PARAMS_FILE: &str = "params.json";

/// A Meta release folder: its params and one `.pth` per model-parallel rank, in rank order.
#[derive(Debug)]
pub struct MetaCheckpoint {
    pub dir: PathBuf,
    pub params: MetaParams,
    pub shards: Vec<PthFile>,
}

/// The rank of a `consolidated.NN.pth` file name.
fn shard_rank(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("consolidated.")?.strip_suffix(".pth")?;
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl MetaCheckpoint {
    /// Whether `dir` looks like a Meta release folder (`params.json` and a
    /// `consolidated.NN.pth`).
    pub fn is_meta_folder(dir: &Path) -> bool {
        dir.join(PARAMS_FILE).is_file()
            && std::fs::read_dir(dir).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_str().and_then(shard_rank).is_some())
            })
    }

    /// Opens `dir`: parses `params.json` and maps every shard, which must be numbered
    /// `00, 01, ...` without gaps.
    pub fn open(dir: &Path) -> Result<MetaCheckpoint, Error> {
        let params_path = dir.join(PARAMS_FILE);
        let text = std::fs::read_to_string(&params_path).map_err(|source| Error::Io {
            path: params_path.clone(),
            source,
        })?;
        let params = crate::hf_config::parse_json(&text, &params_path)?;
        let io = |source| Error::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut ranks: Vec<(usize, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io)? {
            let e = e.map_err(io)?;
            if let Some(r) = e.file_name().to_str().and_then(shard_rank) {
                ranks.push((r, e.path()));
            }
        }
        ranks.sort();
        if ranks.is_empty() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the folder has params.json but no consolidated.NN.pth",
                ),
            });
        }
        for (i, (r, p)) in ranks.iter().enumerate() {
            if *r != i {
                return Err(pth_err(
                    p,
                    0,
                    format!(
                        "model-parallel shards must be numbered 00..{:02} without gaps or repeats; this is rank {r} in place of {i}",
                        ranks.len() - 1
                    ),
                ));
            }
        }
        let shards = ranks
            .iter()
            .map(|(_, p)| PthFile::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MetaCheckpoint {
            dir: dir.to_path_buf(),
            params,
            shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every single-byte change of a real torch.save pickle (to a few values that matter:
    /// zero, 0xff, and each opcode torch uses) parses or fails, never panics; the unchanged
    /// pickle reads back all its tensors. A cheap deterministic stand-in for the fuzzer.
    #[test]
    fn every_byte_of_a_real_pickle_mutated() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/meta/llama1-mha-mp2-bf16/consolidated.01.pth");
        let bytes = std::fs::read(&path).unwrap();
        let archive = zip::read(&bytes).unwrap();
        let pkl = archive
            .entries
            .iter()
            .find(|e| e.name.ends_with("/data.pkl"))
            .unwrap();
        let pickle_bytes = &bytes[pkl.data.clone()];
        assert_eq!(pickle::read_state_dict(pickle_bytes).unwrap().len(), 21);
        let values = [
            0u8, 0xff, b'(', b')', b'}', b'q', b'h', b'Q', b'R', b'b', b'u', b't', b'.',
        ];
        let mut m = pickle_bytes.to_vec();
        for i in 0..m.len() {
            let orig = m[i];
            for &v in &values {
                m[i] = v;
                let _ = pickle::read_state_dict(&m);
            }
            m[i] = orig;
        }
    }

    #[test]
    fn shard_names() {
        assert_eq!(shard_rank("consolidated.00.pth"), Some(0));
        assert_eq!(shard_rank("consolidated.07.pth"), Some(7));
        assert_eq!(shard_rank("consolidated.pth"), None);
        assert_eq!(shard_rank("consolidated.0x.pth"), None);
    }
}
