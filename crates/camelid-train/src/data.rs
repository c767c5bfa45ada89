//! The data pipeline: text files → tokens → shards on disk → shuffled packed sequences.
//!
//! 1. **Documents.** Each input file is one document; a folder contributes its `.txt` and `.md`
//!    files (recursively, hidden entries skipped), sorted by path so the order does not depend on
//!    the file system. Text must be UTF-8.
//! 2. **Validation split, by document.** The `ceil(n · fraction)` documents whose content hashes
//!    rank lowest are held out: deterministic, independent of the input order, and stable when
//!    documents are added. A corpus of a single document is cut at the line break nearest
//!    `(1 − fraction)` of its bytes, the tail held out.
//! 3. **Tokens.** Each document becomes `BOS text EOS` (whichever of the two the tokenizer has),
//!    documents tokenized in parallel and written in document order, so the shards do not depend
//!    on the thread count.
//! 4. **Shards.** `train.bin` and `val.bin`: little-endian u16 tokens when the vocabulary has at
//!    most 65,536 entries, else u32, with `shards.json` describing them. They live in a folder of
//!    the data cache named by a hash of the documents (names and contents), the tokenizer's files
//!    and the split, so a later run with the same inputs maps them again without tokenizing. A
//!    folder is written under a temporary name and renamed into place when complete.
//! 5. **Sequences.** A split's token stream is cut into windows of `ctx + 1` tokens at stride
//!    `ctx` (inputs = the first `ctx`, targets = the last `ctx`): every token but the first is a
//!    target exactly once per epoch. Windows cross document boundaries; BOS/EOS mark them.
//!    Training windows are visited in a random order per epoch ([`SplitMix64`], Fisher–Yates);
//!    validation windows in file order.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use camelid_tokenizer::Tokenizer;
use memmap2::Mmap;
use sha2::{Digest, Sha256};

/// Bumped whenever the shard layout or the tokenization rules change, so old caches are not reused.
const FORMAT: u32 = 1;

/// Why the data could not be prepared.
#[derive(Debug)]
pub enum DataError {
    Io {
        path: PathBuf,
        err: io::Error,
    },
    /// A document is not UTF-8 text (byte offset of the first bad byte).
    NotUtf8 {
        path: PathBuf,
        offset: usize,
    },
    /// No documents, or no text in them.
    Empty {
        what: String,
    },
    /// A split is too short for one sequence of the asked context.
    TooShort {
        split: &'static str,
        tokens: usize,
        ctx: usize,
    },
    /// A cached shard folder is unreadable or inconsistent.
    BadShard {
        path: PathBuf,
        msg: String,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            DataError::NotUtf8 { path, offset } => write!(
                f,
                "{}: not UTF-8 text (bad byte at offset {offset})",
                path.display()
            ),
            DataError::Empty { what } => write!(f, "no text to train on: {what}"),
            DataError::TooShort { split, tokens, ctx } => write!(
                f,
                "the {split} split has {tokens} tokens, fewer than one sequence of --ctx {ctx} \
                 needs ({}): use a shorter --ctx or more text",
                ctx + 1
            ),
            DataError::BadShard { path, msg } => write!(f, "{}: {msg}", path.display()),
        }
    }
}

impl std::error::Error for DataError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataError + '_ {
    move |err| DataError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// One document: its name (path relative to the input it was found under) and its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub name: String,
    pub path: PathBuf,
}

/// The text of each document; one that is not UTF-8 is an error naming its first bad byte.
pub fn read_documents(docs: &[Document]) -> Result<Vec<String>, DataError> {
    docs.iter()
        .map(|d| {
            let bytes = fs::read(&d.path).map_err(io_err(&d.path))?;
            String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
                path: d.path.clone(),
                offset: e.utf8_error().valid_up_to(),
            })
        })
        .collect()
}

/// The documents of the inputs (files, or folders searched for `.txt` and `.md` files).
pub fn collect_documents(inputs: &[PathBuf]) -> Result<Vec<Document>, DataError> {
    let mut docs = Vec::new();
    for input in inputs {
        let meta = fs::metadata(input).map_err(io_err(input))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(input, &mut found)?;
            found.sort();
            if found.is_empty() {
                return Err(DataError::Empty {
                    what: format!("{} holds no .txt or .md files", input.display()),
                });
            }
            for path in found {
                let rel = path.strip_prefix(input).unwrap_or(&path);
                docs.push(Document {
                    name: rel.to_string_lossy().replace('\\', "/"),
                    path,
                });
            }
        } else {
            let name = input.file_name().map_or_else(
                || input.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            docs.push(Document {
                name,
                path: input.clone(),
            });
        }
    }
    if docs.is_empty() {
        return Err(DataError::Empty {
            what: "no input files".into(),
        });
    }
    Ok(docs)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type().map_err(io_err(&path))?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("txt") || e.eq_ignore_ascii_case("md"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// What [`prepare`] reports as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Tokenizing starts: this many bytes of text in all.
    Start { bytes: u64 },
    /// One more document of this many bytes is tokenized.
    Advance { bytes: u64 },
    /// The shards were found in the cache; nothing is tokenized.
    Cached,
}

/// What the shard folder's `shards.json` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub format: u32,
    pub n_vocab: usize,
    /// Bytes per token in the `.bin` files (2 or 4).
    pub width: usize,
    pub train_docs: usize,
    pub val_docs: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    /// UTF-8 bytes of the documents of each split (for bits per byte).
    pub train_bytes: u64,
    pub val_bytes: u64,
    /// The held-out documents' names.
    pub val_names: Vec<String>,
}

impl ShardInfo {
    fn to_json(&self) -> String {
        serde_json::json!({
            "format": self.format,
            "n_vocab": self.n_vocab,
            "width": self.width,
            "train_docs": self.train_docs,
            "val_docs": self.val_docs,
            "train_tokens": self.train_tokens,
            "val_tokens": self.val_tokens,
            "train_bytes": self.train_bytes,
            "val_bytes": self.val_bytes,
            "val_names": self.val_names,
        })
        .to_string()
    }

    fn from_json(text: &str, path: &Path) -> Result<ShardInfo, DataError> {
        let bad = |msg: String| DataError::BadShard {
            path: path.to_path_buf(),
            msg,
        };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let n = |k: &str| -> Result<u64, DataError> {
            v[k].as_u64()
                .ok_or_else(|| bad(format!("field `{k}` is missing or not a number")))
        };
        let names = v["val_names"]
            .as_array()
            .ok_or_else(|| bad("field `val_names` is missing".into()))?
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect();
        Ok(ShardInfo {
            format: n("format")? as u32,
            n_vocab: n("n_vocab")? as usize,
            width: n("width")? as usize,
            train_docs: n("train_docs")? as usize,
            val_docs: n("val_docs")? as usize,
            train_tokens: n("train_tokens")? as usize,
            val_tokens: n("val_tokens")? as usize,
            train_bytes: n("train_bytes")?,
            val_bytes: n("val_bytes")?,
            val_names: names,
        })
    }
}

/// A memory-mapped token file.
pub struct TokenFile {
    map: Option<Mmap>,
    width: usize,
    len: usize,
}

impl TokenFile {
    fn open(path: &Path, width: usize, len: usize) -> Result<TokenFile, DataError> {
        let file = fs::File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        if size != (len * width) as u64 {
            return Err(DataError::BadShard {
                path: path.to_path_buf(),
                msg: format!("{size} bytes, expected {len} tokens of {width} bytes"),
            });
        }
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the file is a shard in camelid's cache, written once under a temporary
            // name and renamed into place complete; nothing writes to it afterwards. A user
            // truncating it under a running process is the memmap2 caveat every map carries.
            Some(unsafe { Mmap::map(&file) }.map_err(io_err(path))?)
        };
        Ok(TokenFile { map, width, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Token `i` (`i < len`).
    pub fn get(&self, i: usize) -> u32 {
        let bytes = self.map.as_deref().unwrap_or(&[]);
        let b = &bytes[i * self.width..][..self.width];
        if self.width == 2 {
            u16::from_le_bytes([b[0], b[1]]) as u32
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    }

    /// Bytes mapped.
    pub fn bytes(&self) -> u64 {
        (self.len * self.width) as u64
    }
}

/// The two splits of a prepared corpus.
pub struct Shards {
    pub dir: PathBuf,
    pub info: ShardInfo,
    pub train: TokenFile,
    pub val: TokenFile,
}

impl Shards {
    /// Text bytes per predicted token of the validation split, for bits per byte:
    /// `bpb = loss_nats / ln 2 / bytes_per_token`. Every token but the split's first is a target.
    pub fn val_bytes_per_token(&self) -> f64 {
        self.info.val_bytes as f64 / (self.info.val_tokens.saturating_sub(1)).max(1) as f64
    }

    pub fn train_bytes_per_token(&self) -> f64 {
        self.info.train_bytes as f64 / (self.info.train_tokens.saturating_sub(1)).max(1) as f64
    }
}

/// Tokenizes the documents into shards under `cache` (reused when already there).
///
/// `tokenizer_key` identifies the tokenizer (a hash of its files, see [`hash_files`]); `threads`
/// documents are tokenized at once.
pub fn prepare(
    docs: &[Document],
    tokenizer: &Tokenizer,
    tokenizer_key: &str,
    val_fraction: f64,
    cache: &Path,
    threads: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Shards, DataError> {
    let names = docs.iter().map(|d| d.name.clone());
    let mut texts: Vec<Named> = names.zip(read_documents(docs)?).collect();
    if texts.iter().all(|(_, t)| t.trim().is_empty()) {
        return Err(DataError::Empty {
            what: format!("the {} input document(s) hold no text", docs.len()),
        });
    }
    texts.retain(|(_, t)| !t.is_empty());

    let mut key = Sha256::new();
    key.update(format!("camelid-train shards {FORMAT}\n").as_bytes());
    key.update(format!("tokenizer {tokenizer_key}\nval {val_fraction}\n").as_bytes());
    let mut doc_hashes = Vec::with_capacity(texts.len());
    for (name, text) in &texts {
        let h: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        key.update(format!("doc {} {} ", name.len(), name).as_bytes());
        key.update(h);
        doc_hashes.push(h);
    }
    let key = hex(&key.finalize());
    let dir = cache.join(&key[..32]);

    if dir.join("shards.json").is_file() {
        progress(Progress::Cached);
        return open_shards(&dir);
    }

    let (train_docs, val_docs) = split(texts, &doc_hashes, val_fraction);
    let n_vocab = tokenizer.n_vocab();
    let width = if n_vocab <= 1 << 16 { 2 } else { 4 };
    let total: u64 = train_docs
        .iter()
        .chain(&val_docs)
        .map(|(_, t)| t.len() as u64)
        .sum();
    progress(Progress::Start { bytes: total });

    fs::create_dir_all(cache).map_err(io_err(cache))?;
    let tmp = cache.join(format!(".{}.{}.part", &key[..32], std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        let (train_tokens, train_bytes) = write_split(
            &tmp.join("train.bin"),
            &train_docs,
            tokenizer,
            width,
            threads,
            progress,
        )?;
        let (val_tokens, val_bytes) = write_split(
            &tmp.join("val.bin"),
            &val_docs,
            tokenizer,
            width,
            threads,
            progress,
        )?;
        let info = ShardInfo {
            format: FORMAT,
            n_vocab,
            width,
            train_docs: train_docs.len(),
            val_docs: val_docs.len(),
            train_tokens,
            val_tokens,
            train_bytes,
            val_bytes,
            val_names: val_docs.iter().map(|(n, _)| n.clone()).collect(),
        };
        let meta = tmp.join("shards.json");
        fs::write(&meta, info.to_json() + "\n").map_err(io_err(&meta))?;
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(()),
            // Another process finished the same shards first: theirs are as good as ours.
            Err(_) if dir.join("shards.json").is_file() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(io_err(&dir)(e)),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    open_shards(&dir)
}

/// Maps the shards of a folder [`prepare`] wrote.
pub fn open_shards(dir: &Path) -> Result<Shards, DataError> {
    let meta = dir.join("shards.json");
    let text = fs::read_to_string(&meta).map_err(io_err(&meta))?;
    let info = ShardInfo::from_json(&text, &meta)?;
    if info.format != FORMAT || !(info.width == 2 || info.width == 4) {
        return Err(DataError::BadShard {
            path: meta,
            msg: format!(
                "format {} width {} is not this camelid's",
                info.format, info.width
            ),
        });
    }
    let train = TokenFile::open(&dir.join("train.bin"), info.width, info.train_tokens)?;
    let val = TokenFile::open(&dir.join("val.bin"), info.width, info.val_tokens)?;
    Ok(Shards {
        dir: dir.to_path_buf(),
        info,
        train,
        val,
    })
}

type Named = (String, String);

/// The (train, validation) split [`prepare`] makes of these `(name, text)` documents, so that a
/// caller can use the training documents alone (a tokenizer trained without the held-out text).
pub fn split_documents(mut texts: Vec<Named>, val_fraction: f64) -> (Vec<Named>, Vec<Named>) {
    texts.retain(|(_, t)| !t.is_empty());
    let hashes: Vec<[u8; 32]> = texts
        .iter()
        .map(|(_, t)| Sha256::digest(t.as_bytes()).into())
        .collect();
    split(texts, &hashes, val_fraction)
}

/// Documents → (train, val), see the module documentation.
fn split(texts: Vec<Named>, hashes: &[[u8; 32]], fraction: f64) -> (Vec<Named>, Vec<Named>) {
    if fraction <= 0.0 {
        return (texts, Vec::new());
    }
    if texts.len() == 1 {
        let (name, text) = texts.into_iter().next().expect("one document");
        let mut cut = ((1.0 - fraction.min(1.0)) * text.len() as f64) as usize;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        // The nearest line break at or before the cut, so no line is split (the cut itself when
        // the text has none there).
        if let Some(nl) = text[..cut].rfind('\n').filter(|&nl| nl > 0) {
            cut = nl + 1;
        }
        let (head, tail) = text.split_at(cut);
        return (
            vec![(format!("{name} (head)"), head.to_string())],
            vec![(format!("{name} (tail)"), tail.to_string())],
        );
    }
    let n_val = ((texts.len() as f64 * fraction).ceil() as usize).min(texts.len() - 1);
    let mut rank: Vec<usize> = (0..texts.len()).collect();
    rank.sort_by(|&a, &b| hashes[a].cmp(&hashes[b]).then(a.cmp(&b)));
    let mut held = vec![false; texts.len()];
    for &i in &rank[..n_val] {
        held[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, d) in texts.into_iter().enumerate() {
        if held[i] { val.push(d) } else { train.push(d) }
    }
    (train, val)
}

/// Tokenizes `docs` in parallel, `threads` documents at a time, and writes them in order.
/// Returns (tokens, text bytes).
fn write_split(
    path: &Path,
    docs: &[Named],
    tok: &Tokenizer,
    width: usize,
    threads: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<(usize, u64), DataError> {
    let file = fs::File::create(path).map_err(io_err(path))?;
    let mut out = io::BufWriter::new(file);
    let (mut n_tokens, mut n_bytes) = (0usize, 0u64);
    for group in docs.chunks(threads.max(1)) {
        let encoded: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|(_, text)| s.spawn(move || encode_document(tok, text)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a tokenizer thread panicked"))
                .collect()
        });
        for ((_, text), ids) in group.iter().zip(encoded) {
            let mut buf = Vec::with_capacity(ids.len() * width);
            for id in &ids {
                if width == 2 {
                    buf.extend_from_slice(&(*id as u16).to_le_bytes());
                } else {
                    buf.extend_from_slice(&id.to_le_bytes());
                }
            }
            out.write_all(&buf).map_err(io_err(path))?;
            n_tokens += ids.len();
            n_bytes += text.len() as u64;
            progress(Progress::Advance {
                bytes: text.len() as u64,
            });
        }
    }
    let file = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    file.sync_all().map_err(io_err(path))?;
    Ok((n_tokens, n_bytes))
}

/// `BOS text EOS`, with whichever of the two the tokenizer has.
pub fn encode_document(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let mut ids = Vec::with_capacity(text.len() / 3 + 2);
    ids.extend(tok.bos());
    ids.extend(tok.encode(text, false, false));
    ids.extend(tok.eos());
    ids
}

/// A hex sha256 over the named files' contents (those that exist), to key the shard cache on the
/// tokenizer. A folder stands for its `tokenizer.json`, `tokenizer.model` and
/// `tokenizer_config.json`.
pub fn hash_files(path: &Path) -> Result<String, DataError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        ["tokenizer.json", "tokenizer.model", "tokenizer_config.json"]
            .iter()
            .map(|n| path.join(n))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut h = Sha256::new();
    for f in files {
        let bytes = fs::read(&f).map_err(io_err(&f))?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        h.update(format!("{} {}\n", name.unwrap_or_default(), bytes.len()).as_bytes());
        h.update(&bytes);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// splitmix64 (Steele, Lea & Flood, "Fast Splittable Pseudorandom Number Generators", OOPSLA
/// 2014; constants as in Vigna's public-domain reference): a 64-bit state advanced by the golden
/// gamma, each output mixed by two xor-shift-multiply rounds. Small, fast, and every seed is good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` by the multiply-high mapping (Lemire 2019, without the rejection step:
    /// the bias is below n / 2⁶⁴).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A uniform value in [0, 1) with 24 random bits (an f32's mantissa).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Sequences of one split, in batches.
pub struct Sequences<'a> {
    tokens: &'a TokenFile,
    ctx: usize,
    /// The visiting order of this epoch (training), or `None` (file order).
    order: Option<Vec<u32>>,
    seed: u64,
    pub pos: Position,
}

/// Where a training run is in its data: restored on resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: u64,
    /// Windows of this epoch already handed out.
    pub cursor: u64,
}

impl<'a> Sequences<'a> {
    /// Windows of `split` in a shuffled order per epoch, from `pos`. Errors when not even one
    /// window fits.
    pub fn shuffled(
        tokens: &'a TokenFile,
        split: &'static str,
        ctx: usize,
        seed: u64,
        pos: Position,
    ) -> Result<Sequences<'a>, DataError> {
        let mut s = Sequences::in_order(tokens, split, ctx)?;
        s.seed = seed;
        s.pos = pos;
        s.order = Some(s.permutation(pos.epoch));
        Ok(s)
    }

    /// Windows of `split` in file order.
    pub fn in_order(
        tokens: &'a TokenFile,
        split: &'static str,
        ctx: usize,
    ) -> Result<Sequences<'a>, DataError> {
        if ctx == 0 || tokens.len() < ctx + 1 {
            return Err(DataError::TooShort {
                split,
                tokens: tokens.len(),
                ctx,
            });
        }
        Ok(Sequences {
            tokens,
            ctx,
            order: None,
            seed: 0,
            pos: Position::default(),
        })
    }

    /// Windows per epoch.
    pub fn len(&self) -> usize {
        (self.tokens.len() - 1) / self.ctx
    }

    /// The split's tokens.
    pub fn tokens(&self) -> &'a TokenFile {
        self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Epoch `e`'s order: Fisher–Yates (Knuth, TAOCP vol. 2, algorithm 3.4.2 P) driven by
    /// splitmix64 seeded with the run's seed and the epoch.
    fn permutation(&self, epoch: u64) -> Vec<u32> {
        let n = self.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut rng = SplitMix64::new(self.seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }

    /// Window `w` into `inputs` and `targets` (`ctx` each).
    pub fn window(&self, w: usize, inputs: &mut [u32], targets: &mut [u32]) {
        let start = w * self.ctx;
        for j in 0..self.ctx {
            inputs[j] = self.tokens.get(start + j);
            targets[j] = self.tokens.get(start + j + 1);
        }
    }

    /// The next `n` windows of the shuffled order, continuing into the next epoch (reshuffled)
    /// when this one runs out, appended to `inputs` and `targets`.
    pub fn next_batch(&mut self, n: usize, inputs: &mut Vec<u32>, targets: &mut Vec<u32>) {
        for _ in 0..n {
            if self.pos.cursor as usize >= self.len() {
                self.pos = Position {
                    epoch: self.pos.epoch + 1,
                    cursor: 0,
                };
                if self.order.is_some() {
                    self.order = Some(self.permutation(self.pos.epoch));
                }
            }
            let c = self.pos.cursor as usize;
            let w = self.order.as_ref().map_or(c, |o| o[c] as usize);
            let at = inputs.len();
            inputs.resize(at + self.ctx, 0);
            targets.resize(at + self.ctx, 0);
            self.window(w, &mut inputs[at..], &mut targets[at..]);
            self.pos.cursor += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        // The first three outputs of Vigna's splitmix64.c (prng.di.unimi.it) from state 0.
        let mut r = SplitMix64::new(0);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
    }

    #[test]
    fn a_permutation_visits_every_window_once() {
        let dir = std::env::temp_dir().join(format!("camelid-perm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.bin");
        let toks: Vec<u8> = (0..101u16).flat_map(|t| t.to_le_bytes()).collect();
        fs::write(&path, toks).unwrap();
        let tf = TokenFile::open(&path, 2, 101).unwrap();
        let mut s = Sequences::shuffled(&tf, "train", 10, 7, Position::default()).unwrap();
        assert_eq!(s.len(), 10);
        let (mut i, mut t) = (Vec::new(), Vec::new());
        s.next_batch(10, &mut i, &mut t);
        let mut starts: Vec<u32> = i.chunks(10).map(|w| w[0]).collect();
        assert_ne!(starts, (0..10).map(|k| k * 10).collect::<Vec<_>>());
        starts.sort();
        assert_eq!(starts, (0..10).map(|k| k * 10).collect::<Vec<_>>());
        for (w, t) in i.chunks(10).zip(t.chunks(10)) {
            assert_eq!(&w[1..], &t[..9]);
            assert_eq!(t[9], w[9] + 1);
        }
        assert_eq!(
            s.pos,
            Position {
                epoch: 0,
                cursor: 10
            }
        );
        s.next_batch(1, &mut i, &mut t);
        assert_eq!(
            s.pos,
            Position {
                epoch: 1,
                cursor: 1
            }
        );
        let _ = fs::remove_dir_all(&dir);
    }

    fn testdata(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(rel)
    }

    fn ids(v: &serde_json::Value) -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    }

    /// The tiny corpus against sentencepiece (tools/train_data_reference.py): documents found,
    /// the held-out document, the token streams, the byte counts, the windows; a second prepare
    /// maps the cached shards.
    #[test]
    fn the_tiny_corpus_shards_as_the_reference_says() {
        let r: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(testdata("train/data_reference.json")).unwrap(),
        )
        .unwrap();
        let docs = collect_documents(&[testdata("train/corpus")]).unwrap();
        let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        let want: Vec<&str> = r["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(names, want);

        let tok_path = testdata("tokenizer/spm-tiny.model");
        let tok = camelid_model::tokenizer_load::load_tokenizer(&tok_path).unwrap();
        let key = hash_files(&tok_path).unwrap();
        let cache = std::env::temp_dir().join(format!("camelid-data-{}", std::process::id()));
        let _ = fs::remove_dir_all(&cache);
        let mut events = Vec::new();
        let shards = prepare(&docs, &tok, &key, 0.25, &cache, 3, &mut |p| events.push(p)).unwrap();
        assert!(matches!(events[0], Progress::Start { .. }));
        let read = |t: &TokenFile| (0..t.len()).map(|i| t.get(i)).collect::<Vec<u32>>();
        assert_eq!(read(&shards.train), ids(&r["train_tokens"]));
        assert_eq!(read(&shards.val), ids(&r["val_tokens"]));
        assert_eq!(shards.info.width, 2);
        assert_eq!(shards.info.train_bytes, r["train_bytes"].as_u64().unwrap());
        assert_eq!(shards.info.val_bytes, r["val_bytes"].as_u64().unwrap());
        assert_eq!(
            shards.info.val_names,
            vec![r["val_names"][0].as_str().unwrap()]
        );

        let ctx = r["ctx"].as_u64().unwrap() as usize;
        let seqs = Sequences::in_order(&shards.train, "train", ctx).unwrap();
        let windows = r["train_windows"].as_array().unwrap();
        assert_eq!(seqs.len(), windows.len());
        let (mut i, mut t) = (vec![0; ctx], vec![0; ctx]);
        for (w, want) in windows.iter().enumerate() {
            let want = ids(want);
            seqs.window(w, &mut i, &mut t);
            assert_eq!(i, want[..ctx], "window {w}");
            assert_eq!(t, want[1..], "window {w}");
        }

        let mut again = Vec::new();
        let cached = prepare(&docs, &tok, &key, 0.25, &cache, 1, &mut |p| again.push(p)).unwrap();
        assert_eq!(again, [Progress::Cached]);
        assert_eq!(cached.dir, shards.dir);
        assert_eq!(read(&cached.train), ids(&r["train_tokens"]));

        // Another split is another set of shards.
        let other = prepare(&docs, &tok, &key, 0.5, &cache, 1, &mut |_| {}).unwrap();
        assert_ne!(other.dir, shards.dir);
        let _ = fs::remove_dir_all(&cache);
    }

    #[test]
    fn bad_corpora_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("camelid-bad-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("empty")).unwrap();
        let err = collect_documents(&[dir.join("empty")]).unwrap_err();
        assert!(
            err.to_string().contains("holds no .txt or .md files"),
            "{err}"
        );
        let err = collect_documents(&[dir.join("missing.txt")]).unwrap_err();
        assert!(err.to_string().contains("missing.txt"), "{err}");

        let tok_path = testdata("tokenizer/spm-tiny.model");
        let tok = camelid_model::tokenizer_load::load_tokenizer(&tok_path).unwrap();
        fs::write(dir.join("blank.txt"), "  \n\n").unwrap();
        let docs = collect_documents(&[dir.join("blank.txt")]).unwrap();
        let err = prepare(&docs, &tok, "k", 0.1, &dir.join("cache"), 1, &mut |_| {});
        assert!(matches!(err, Err(DataError::Empty { .. })));

        fs::write(dir.join("latin1.txt"), b"caf\xe9\n").unwrap();
        let docs = collect_documents(&[dir.join("latin1.txt")]).unwrap();
        let err = prepare(&docs, &tok, "k", 0.1, &dir.join("cache"), 1, &mut |_| {})
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("latin1.txt: not UTF-8 text (bad byte at offset 3)"),
            "{err}"
        );

        // One document: its tail is held out; a context longer than a split is refused.
        fs::write(
            dir.join("one.txt"),
            "line one\nline two\nline three\nline four\n",
        )
        .unwrap();
        let docs = collect_documents(&[dir.join("one.txt")]).unwrap();
        let shards = prepare(&docs, &tok, "k", 0.3, &dir.join("cache"), 1, &mut |_| {}).unwrap();
        assert_eq!(shards.info.val_names, ["one.txt (tail)"]);
        // 70% of 39 bytes is byte 27, in "line three": the cut moves back to its line start.
        assert_eq!(
            shards.info.val_bytes,
            "line three\nline four\n".len() as u64
        );
        let err = Sequences::in_order(&shards.val, "val", 512).err().unwrap();
        assert!(err.to_string().contains("the val split has"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
