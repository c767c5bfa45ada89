//! The kernels of `kernels/*.cu`: compiled at run time by NVRTC for the card at hand, loaded as
//! one module, and looked up once into a table (per weight type, and one per operation).
//!
//! The argument lists and launch geometry follow `kernels/README.md`; each wrapper in
//! `backend.rs` states the signature it passes.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::PathBuf;

use camelid_kernels::DType;
use camelid_model::CacheType;
use cudarc::driver::{result, sys};
use cudarc::nvrtc::sys as nvrtc;

use crate::device::{CudaError, Device, Func, Result};

/// The sources, each its own NVRTC program and module, after [`COMMON`] (see [`program`]).
const SOURCES: [(&str, &str); 3] = [
    ("quant.cu", include_str!("../kernels/quant.cu")),
    ("ops.cu", include_str!("../kernels/ops.cu")),
    ("attention.cu", include_str!("../kernels/attention.cu")),
];

/// What every source uses (the launch-order wait), put before each.
const COMMON: &str = include_str!("../kernels/common.cuh");

/// The grid i-quants' codebooks, put before quant.cu (after [`COMMON`]): camelid-kernels'
/// tables as CUDA arrays, written by the test `iq_grids_are_camelid_kernels_tables`.
const IQ_GRIDS: &str = include_str!("../kernels/iq_grids.cuh");

/// quant.cu's weight types by the program that defines their kernels (`CAMELID_QUANT_PART`
/// k is group k; the file's `#if CAMELID_PART(k)` blocks hold the same groups, which the test
/// `every_source_compiles_to_a_cubin_with_nvrtc` checks). A backend compiles group 0 (which also
/// holds `rope_store` and `f32_to_f16`) and the groups of its model's types, at once, each on a
/// thread: 4-8 s each in nvcc 13.0 on a core of the development VM (the whole file, when it had
/// 11 of its 24 types, took 31 s in NVRTC 12.9).
const QUANT_GROUPS: [&[DType]; 7] = [
    &[DType::F32, DType::F16, DType::BF16],
    &[DType::Q8_0, DType::Q4_0, DType::Q4_1],
    &[DType::Q5_0, DType::Q5_1, DType::IQ4_NL],
    &[DType::Q4_K, DType::Q5_K, DType::Q6_K],
    &[
        DType::Q2_K,
        DType::Q3_K,
        DType::IQ4_XS,
        DType::TQ1_0,
        DType::TQ2_0,
    ],
    &[DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S],
    &[DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M],
];

/// The group of quant.cu that defines `d`'s kernels.
fn quant_group(d: DType) -> Option<usize> {
    QUANT_GROUPS.iter().position(|g| g.contains(&d))
}

/// A program for NVRTC: the source's name (for its messages), the cache file's stem, the text.
struct Program {
    name: &'static str,
    stem: String,
    text: String,
}

/// The decode products' CTA (quant.cu's `MV_ROWS` rows of `MV_WARPS` warps): 2 × 4, or what
/// `CAMELID_CUDA_MATVEC_SHAPE=RxW` says (R 2 or 4, W 2, 4 or 8), a knob for measuring the shapes
/// on a card. Each shape sums in its own order: the results of two are within the products'
/// tolerance of each other, not the same bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatvecShape {
    pub rows: usize,
    pub warps: usize,
}

impl MatvecShape {
    pub const DEFAULT: MatvecShape = MatvecShape { rows: 2, warps: 4 };

    /// The CTAs of a product with `rows` rows.
    pub fn ctas(&self, rows: usize) -> usize {
        rows.div_ceil(self.rows)
    }

    /// The block: `(32, MV_WARPS, 1)`.
    pub fn block(&self) -> (u32, u32, u32) {
        (32, self.warps as u32, 1)
    }

    fn from_env() -> Result<MatvecShape> {
        std::env::var("CAMELID_CUDA_MATVEC_SHAPE").map_or(Ok(Self::DEFAULT), |v| Self::parse(&v))
    }

    /// `RxW`, as `CAMELID_CUDA_MATVEC_SHAPE` gives it.
    fn parse(v: &str) -> Result<MatvecShape> {
        v.split_once('x')
            .and_then(|(r, w)| {
                Some(MatvecShape {
                    rows: r.parse().ok()?,
                    warps: w.parse().ok()?,
                })
            })
            .filter(|s| matches!(s.rows, 2 | 4) && matches!(s.warps, 2 | 4 | 8))
            .ok_or_else(|| {
                CudaError(format!(
                    "CAMELID_CUDA_MATVEC_SHAPE={v}: expected ROWSxWARPS, rows 2 or 4, warps 2, 4 \
                     or 8 (2x4 by default)"
                ))
            })
    }
}

/// The programs of the kernels for weights of `types`: [`COMMON`], for quant.cu the part's
/// define, the decode products' `shape` and [`IQ_GRIDS`], then the source, whose lines keep
/// their numbers in NVRTC's messages.
fn programs(types: &[DType], shape: MatvecShape) -> Vec<Program> {
    let mut list = Vec::new();
    for (name, source) in SOURCES {
        let stem = name.trim_end_matches(".cu");
        let parts: Vec<Option<usize>> = if name == "quant.cu" {
            (0..QUANT_GROUPS.len())
                .filter(|&k| k == 0 || types.iter().any(|&d| quant_group(d) == Some(k)))
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for part in parts {
            let (grids, define) = part.map_or(("", String::new()), |k| {
                let (r, w) = (shape.rows, shape.warps);
                let defines = format!(
                    "#define CAMELID_QUANT_PART {k}\n#define MV_ROWS {r}\n#define MV_WARPS {w}\n"
                );
                (IQ_GRIDS, defines)
            });
            list.push(Program {
                name,
                stem: part.map_or(stem.to_string(), |k| format!("{stem}{k}")),
                text: format!("{COMMON}{define}{grids}#line 1 \"{name}\"\n{source}"),
            });
        }
    }
    list
}

/// What NVRTC makes for a card of compute capability `cc` (major · 10 + minor): a CUBIN for the
/// card's own architecture where this NVRTC knows it, which the driver loads as it is. For a card
/// newer than this NVRTC, PTX for the newest architecture it knows, which the driver translates
/// for the card as the module loads (PTX runs on the GPUs of its architecture and later ones:
/// CUDA C++ Programming Guide, "PTX Compatibility"). A card older than every architecture this
/// NVRTC knows (CUDA 13 dropped those before sm_75) is an error that says so.
struct Target {
    cc: i32,
    ptx: bool,
}

impl Target {
    fn for_card(card: i32) -> Result<Target> {
        let known = supported_archs()?;
        if known.contains(&card) {
            return Ok(Target {
                cc: card,
                ptx: false,
            });
        }
        match known.iter().filter(|&&a| a < card).max() {
            Some(&cc) => Ok(Target { cc, ptx: true }),
            None => Err(CudaError(format!(
                "NVRTC {} compiles for sm_{} to sm_{}, and this card is sm_{card}: use the NVRTC \
                 of a CUDA that still supports it (CUDA 12 goes back to sm_50)",
                nvrtc_version()?,
                known.iter().min().unwrap_or(&0),
                known.iter().max().unwrap_or(&0)
            ))),
        }
    }

    /// NVRTC's `--gpu-architecture`: `sm_XX` for a CUBIN, `compute_XX` for PTX.
    fn arch(&self) -> String {
        format!("{}_{}", if self.ptx { "compute" } else { "sm" }, self.cc)
    }
}

/// The architectures this NVRTC compiles for, as compute capabilities (major · 10 + minor).
fn supported_archs() -> Result<Vec<i32>> {
    let mut n: c_int = 0;
    // SAFETY: one out-pointer to a live integer.
    let r = unsafe { nvrtc::nvrtcGetNumSupportedArchs(&mut n) };
    nvrtc_check(r, "nvrtcGetNumSupportedArchs")?;
    let mut archs = vec![0 as c_int; n.max(0) as usize];
    // SAFETY: `archs` holds the `n` integers NVRTC said it would write.
    let r = unsafe { nvrtc::nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
    nvrtc_check(r, "nvrtcGetSupportedArchs")?;
    Ok(archs)
}

/// Compiles `programs` for `target` at once, a thread each (NVRTC compiles distinct programs
/// concurrently): first starts wait for the slowest rather than for the sum.
fn compile_all(programs: &[&Program], target: &Target) -> Vec<Result<Vec<u8>>> {
    std::thread::scope(|s| {
        let threads: Vec<_> = programs
            .iter()
            .map(|p| s.spawn(move || compile(p.name, &p.text, target)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(CudaError("an NVRTC thread panicked".into())))
            })
            .collect()
    })
}

/// The compute capability from which the tensor-core products exist (`mma.sync.m16n8k16` with
/// f16 inputs and `cvt.rn.f16x2.f32`: sm_80, PTX ISA 7.0).
pub const TC_MIN_MAJOR: i32 = 8;

/// Whether `d` has kernels; weights without are refused at load, naming the tensor.
pub fn has_kernels(d: DType) -> bool {
    quant_group(d).is_some()
}

/// The kernels of one weight type.
#[derive(Clone, Copy)]
pub struct WeightKernels {
    /// `matvec_<t>(w, x, y, rows, cols, n)`: fused dequantize-dot of `n` activation rows.
    pub matvec: Func,
    /// `matvec3_<t>(w0, y0, rows0, w1, y1, rows1, w2, y2, rows2, x, cols, n, pos, inv_freq,
    /// k_rows, v_rows, head_dim)`: two or three of those products of one `x` in one launch;
    /// with `pos` not null, q, k and v with RoPE and the cache writes as `rope_store` does them.
    pub matvec3: Func,
    /// `matvec_add_<t>(w, x, y, rows, cols, n)`: `y += W·x`, as `matvec` then `add`.
    pub matvec_add: Func,
    /// `matvec_add_norm_<t>(w, x, y, rows, cols, out, gain, eps, counter)`: `matvec_add` of
    /// one row, then the RMSNorm of `y` into `out` by the launch's last CTA, as `rmsnorm` gives
    /// it (`counter`: an int at 0, left at 0).
    pub matvec_add_norm: Func,
    /// `matvec_swiglu_<t>(w_gate, w_up, x, h, u, rows, cols, n)`: `u = Wup·x`, then
    /// `h = silu(Wgate·x) ⊙ u`, as `matvec3` of the two then `silu_mul`.
    pub matvec_swiglu: Func,
    /// `embed_<t>(w, tokens, out, cols, n)`.
    pub embed: Func,
    /// `dequant_<t>_f16(w, out, count)` and `_f32`: `count` in blocks (quantized types) or
    /// elements (float types).
    pub dequant_f16: Func,
    pub dequant_f32: Func,
    /// `v1_matvec_<t>`, `v1_matvec3_<t>`, `v1_matvec_add_<t>`, `v1_matvec_swiglu_<t>`: the four
    /// above compiled for one vector (`n` must be 1), with half the registers; [`Self::rows`]
    /// picks them.
    v1: [Func; 4],
    /// `tc_matvec_<t>(w, xh, y, rows, cols, n)` and `tc_matvec_add_<t>` (`y +=`): the products
    /// of `n` f16 activation rows on tensor cores, for the fast precision's small batches.
    /// `None` for f32 weights (never rounded to f16) and below sm_80 (no `mma.m16n8k16`).
    pub tc_matvec: Option<(Func, Func)>,
}

pub struct Kernels {
    _modules: Modules,
    by_type: Vec<(DType, WeightKernels)>,
    pub rmsnorm: Func,
    /// RoPE of q and k, and k and v into the cache, in one launch.
    pub rope_store: Func,
    pub silu_mul: Func,
    pub add: Func,
    pub gather_rows: Func,
    /// `argmax_rows(logits, out, n_vocab, n)`: the greedy token of each row.
    pub argmax_rows: Func,
    pub f32_to_f16: Func,
    /// `attention_partial` (f32 caches) and `attention_partial_f16` (f16 caches), by
    /// [`Kernels::by_cache`].
    pub attention_partial: [Func; 2],
    pub attention_combine: Func,
    /// `attention_partial` and `attention_combine` in one launch (its last CTA of a row and kv
    /// head combines), with counters: decode steps. `attention`, `attention_f16`.
    pub attention: [Func; 2],
    /// `attention_tc_f16`: prompt attention over f16 caches on the tensor cores, a tile of one
    /// sequence's rows a CTA (the fast precision). `None` below sm_80.
    pub attention_tc: Option<Func>,
    /// The CTA shape the decode products were compiled with.
    pub mv: MatvecShape,
    /// The architecture of the PTX the driver translated (`compute_90`), where NVRTC did not
    /// know the card's.
    pub ptx: Option<String>,
    /// Whether every kernel here is launched early ([`Func::early`]).
    pub early: bool,
}

/// The loaded modules, unloaded on drop (also when loading the rest fails), and how their
/// kernels are launched ([`Func::early`]).
struct Modules {
    list: Vec<sys::CUmodule>,
    early: bool,
}

// SAFETY: module handles are valid in their context from any thread; they are only unloaded,
// once, on drop.
unsafe impl Send for Modules {}
// SAFETY: as above; shared references never touch the handles.
unsafe impl Sync for Modules {}

impl Drop for Modules {
    fn drop(&mut self) {
        for &m in &self.list {
            // SAFETY: loaded by `Kernels::load`, unloaded once; no launch is in flight (the
            // backend synchronizes its stream after every pass).
            let _ = unsafe { result::module::unload(m) };
        }
    }
}

impl Modules {
    /// A kernel, from whichever module has it (the split of the sources is the README's).
    fn get(&self, name: &str) -> Result<Func> {
        let c = CString::new(name).expect("kernel names have no NUL");
        for &m in &self.list {
            // SAFETY: `m` is loaded and stays so while `self` lives.
            if let Ok(f) = unsafe { result::module::get_function(m, c.clone()) } {
                return Ok(Func {
                    f,
                    early: self.early,
                });
            }
        }
        Err(CudaError(format!("kernel `{name}` is in no module")))
    }
}

impl WeightKernels {
    /// The kernels for products of `n` vectors: for one, the single-vector `matvec` kernels.
    pub fn rows(self, n: usize) -> WeightKernels {
        if n != 1 {
            return self;
        }
        let [matvec, matvec3, matvec_add, matvec_swiglu] = self.v1;
        WeightKernels {
            matvec,
            matvec3,
            matvec_add,
            matvec_swiglu,
            ..self
        }
    }
}

impl Kernels {
    /// Compiles (or takes from the on-disk cache) and loads the kernels for `dev`'s card and
    /// weights of `types` (each must have kernels: [`has_kernels`]).
    pub fn load(dev: &Device, types: &[DType]) -> Result<Kernels> {
        dev.bind()?;
        let (major, minor) = dev
            .ctx
            .compute_capability()
            .map_err(|e| CudaError::at("reading the compute capability", e))?;
        let card = format!("sm_{major}{minor}");
        let target = Target::for_card(major * 10 + minor)?;
        let arch = target.arch();
        // What the code may use is its architecture's, which is the card's or older.
        let code_major = target.cc / 10;
        let mut modules = Modules {
            list: Vec::new(),
            early: early_launches(code_major)?,
        };
        // `types`' programs, or with CAMELID_CUDA_KERNELS=all every type's (to fill the cache
        // ahead of other models). The cached images first; a cached image that does not load
        // (damaged, or from another driver) is rebuilt with those missing, all at once.
        let all = std::env::var("CAMELID_CUDA_KERNELS").is_ok_and(|v| v == "all");
        let mv = MatvecShape::from_env()?;
        let programs = programs(if all { &DType::ALL } else { types }, mv);
        let mut missing = Vec::new();
        for p in &programs {
            let cache = cache_path(&p.stem, &p.text, &target)?;
            let cached = cache.as_ref().and_then(|c| std::fs::read(c).ok());
            match cached.map(|c| load_image(&c, target.ptx)) {
                Some(Ok(m)) => modules.list.push(m),
                _ => missing.push((p, cache)),
            }
        }
        let todo: Vec<&Program> = missing.iter().map(|&(p, _)| p).collect();
        if !todo.is_empty() {
            // Seconds to a minute of silence otherwise, on a first start.
            let kept = match cache_dir() {
                Some(d) => format!("kept in {} for later starts", d.display()),
                None => "not kept: neither XDG_CACHE_HOME nor HOME is set".to_string(),
            };
            let ptx = if target.ptx {
                format!(
                    ": NVRTC {} does not know the card's {card}, so PTX that the driver \
                     translates",
                    nvrtc_version()?
                )
            } else {
                String::new()
            };
            eprintln!(
                "camelid: compiling {} CUDA kernel program{} for {arch}{ptx} ({kept})",
                todo.len(),
                if todo.len() == 1 { "" } else { "s" }
            );
        }
        for ((p, cache), image) in missing.iter().zip(compile_all(&todo, &target)) {
            let image = image?;
            if let Some(c) = cache {
                store(c, &image);
            }
            let module = load_image(&image, target.ptx).map_err(|e| {
                CudaError(format!("loading {} ({arch}): {e}{}", p.name, driver_note()))
            })?;
            modules.list.push(module);
        }
        let mut by_type = Vec::new();
        let mut types = types.to_vec();
        types.sort_by_key(|d| d.name());
        types.dedup();
        for d in types {
            let t = d.name().to_ascii_lowercase();
            by_type.push((
                d,
                WeightKernels {
                    matvec: modules.get(&format!("matvec_{t}"))?,
                    matvec3: modules.get(&format!("matvec3_{t}"))?,
                    matvec_add: modules.get(&format!("matvec_add_{t}"))?,
                    matvec_add_norm: modules.get(&format!("matvec_add_norm_{t}"))?,
                    v1: [
                        modules.get(&format!("v1_matvec_{t}"))?,
                        modules.get(&format!("v1_matvec3_{t}"))?,
                        modules.get(&format!("v1_matvec_add_{t}"))?,
                        modules.get(&format!("v1_matvec_swiglu_{t}"))?,
                    ],
                    matvec_swiglu: modules.get(&format!("matvec_swiglu_{t}"))?,
                    embed: modules.get(&format!("embed_{t}"))?,
                    dequant_f16: modules.get(&format!("dequant_{t}_f16"))?,
                    dequant_f32: modules.get(&format!("dequant_{t}_f32"))?,
                    tc_matvec: if d == DType::F32 || code_major < TC_MIN_MAJOR {
                        None
                    } else {
                        Some((
                            modules.get(&format!("tc_matvec_{t}"))?,
                            modules.get(&format!("tc_matvec_add_{t}"))?,
                        ))
                    },
                },
            ));
        }
        Ok(Kernels {
            by_type,
            rmsnorm: modules.get("rmsnorm")?,
            rope_store: modules.get("rope_store")?,
            silu_mul: modules.get("silu_mul")?,
            add: modules.get("add")?,
            gather_rows: modules.get("gather_rows")?,
            argmax_rows: modules.get("argmax_rows")?,
            f32_to_f16: modules.get("f32_to_f16")?,
            attention_partial: [
                modules.get("attention_partial")?,
                modules.get("attention_partial_f16")?,
            ],
            attention_combine: modules.get("attention_combine")?,
            attention: [modules.get("attention")?, modules.get("attention_f16")?],
            attention_tc: if code_major < TC_MIN_MAJOR {
                None
            } else {
                Some(modules.get("attention_tc_f16")?)
            },
            mv,
            ptx: target.ptx.then(|| target.arch()),
            early: modules.early,
            _modules: modules,
        })
    }

    /// The index of a cache type's kernels in the pairs above.
    pub fn by_cache(t: CacheType) -> usize {
        match t {
            CacheType::F32 => 0,
            CacheType::F16 => 1,
        }
    }

    /// The kernels of a weight type (checked at load for every weight).
    pub fn of(&self, d: DType) -> WeightKernels {
        self.by_type
            .iter()
            .find(|(t, _)| *t == d)
            .map(|(_, k)| *k)
            .expect("weight types are checked at load")
    }
}

/// Whether kernels are launched early ([`Func::early`]): from sm_90 (`griddepcontrol`), with a
/// driver of CUDA 12.3 or later (graph capture keeps such launches' programmatic edges from
/// 12.3 on), unless `CAMELID_CUDA_PDL=0`.
fn early_launches(major: i32) -> Result<bool> {
    if major < 9 || std::env::var("CAMELID_CUDA_PDL").is_ok_and(|v| v == "0") {
        return Ok(false);
    }
    Ok(driver_version()? >= 12030)
}

/// The driver's CUDA version, 1000 · major + 10 · minor.
fn driver_version() -> Result<i32> {
    let mut version = 0;
    // SAFETY: one out-pointer to a live integer.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| CudaError::at("reading the driver version", e))?;
    Ok(version)
}

/// Loads a CUBIN image, or NUL-terminated PTX text (`ptx`), into the current context.
fn load_image(
    image: &[u8],
    ptx: bool,
) -> std::result::Result<sys::CUmodule, cudarc::driver::DriverError> {
    // cuModuleLoadData reads an image from its header, and PTX to its NUL; a truncated file
    // must not reach it.
    let whole = if ptx {
        image.last() == Some(&0) && image.windows(8).any(|w| w == b".version")
    } else {
        image.len() >= 64 && &image[..4] == b"\x7fELF"
    };
    if !whole {
        return Err(cudarc::driver::DriverError(
            sys::CUresult::CUDA_ERROR_INVALID_IMAGE,
        ));
    }
    // SAFETY: `image` is an ELF image, or PTX text ending in its NUL (checked above), from
    // NVRTC for this device (or, as PTX, an earlier architecture); the driver copies it, or
    // translates it, during the call.
    unsafe { result::module::load_data(image.as_ptr().cast()) }
}

/// Where the image of a program for `target` is cached: `~/.cache/camelid/cuda`, under a name
/// that hashes the text, the architecture and the NVRTC version (the kernels take tens of
/// seconds of NVRTC's time, so later starts read them instead). `None` without a home
/// directory.
fn cache_path(stem: &str, text: &str, target: &Target) -> Result<Option<PathBuf>> {
    let version = nvrtc_version()?;
    let arch = target.arch();
    let key = fnv1a(format!("{arch}\0{version}\0{text}").as_bytes());
    let ext = if target.ptx { "ptx" } else { "cubin" };
    Ok(cache_dir().map(|d| d.join(format!("{stem}-{arch}-{key:016x}.{ext}"))))
}

/// Writes a cache file whole or not at all (a temporary file renamed into place), so that a
/// concurrent start never reads half of one. Failing to write only costs a later start a
/// compile.
fn store(path: &std::path::Path, cubin: &[u8]) {
    let Some(dir) = path.parent() else { return };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let ok = std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, cubin).is_ok();
    if !ok || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("camelid").join("cuda"))
}

/// FNV-1a: a stable hash for cache file names (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn nvrtc_version() -> Result<String> {
    let (major, minor) = nvrtc_major_minor()?;
    Ok(format!("{major}.{minor}"))
}

fn nvrtc_major_minor() -> Result<(i32, i32)> {
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: two out-pointers to live integers.
    let r = unsafe { nvrtc::nvrtcVersion(&mut major, &mut minor) };
    nvrtc_check(r, "nvrtcVersion")?;
    Ok((major, minor))
}

/// What to add to a compiled image's load error when the driver is older than the NVRTC that
/// compiled it ([`older_driver_note`]); nothing otherwise, or when a version cannot be read.
fn driver_note() -> String {
    match (driver_version(), nvrtc_major_minor()) {
        (Ok(driver), Ok(nvrtc)) => older_driver_note(driver, nvrtc).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The note for a driver of CUDA version `driver` (1000 · major + 10 · minor, as
/// `cuDriverGetVersion` gives it) older than NVRTC `nvrtc`: such a driver may refuse newer
/// toolkits' images (NVIDIA's compatibility rules promise them only within a major version,
/// and PTX only from an older toolkit).
fn older_driver_note(driver: i32, nvrtc: (i32, i32)) -> Option<String> {
    let have = (driver / 1000, driver % 1000 / 10);
    (have < nvrtc).then(|| {
        format!(
            " (the driver is CUDA {}.{} and NVRTC {}.{} compiled the kernels: update the driver, \
             or put the libraries of a CUDA {}.x toolkit first on LD_LIBRARY_PATH)",
            have.0, have.1, nvrtc.0, nvrtc.1, have.0
        )
    })
}

fn nvrtc_check(r: nvrtc::nvrtcResult, what: &str) -> Result<()> {
    if r == nvrtc::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(CudaError(format!("{what}: {r:?}")))
    }
}

/// Compiles `source` for `target`: a CUBIN (a real architecture, so the driver loads it without
/// a JIT step), or PTX with its NUL. On a compile error, the message carries NVRTC's log.
fn compile(name: &str, source: &str, target: &Target) -> Result<Vec<u8>> {
    let arch = target.arch();
    let src = CString::new(source).map_err(|_| CudaError(format!("{name} has a NUL")))?;
    let cname = CString::new(name).map_err(|_| CudaError(format!("{name} has a NUL")))?;
    let prog = cudarc::nvrtc::result::create_program(&src, Some(&cname))
        .map_err(|e| CudaError::at("nvrtcCreateProgram", e))?;
    // Round-to-nearest everywhere (no fast math, no flush to zero): the kernels are written to
    // match the CPU's f32 arithmetic.
    let opts = [
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
    ];
    // SAFETY: `prog` was just created and is destroyed below, once.
    let compiled = unsafe { cudarc::nvrtc::result::compile_program(prog, &opts) };
    let out = match compiled {
        // SAFETY: `prog` is live and compiled.
        Ok(()) => unsafe { get_image(prog, target.ptx) },
        Err(e) => {
            // SAFETY: `prog` is live.
            let log = unsafe { cudarc::nvrtc::result::get_program_log(prog) }
                .map(|l| c_chars_to_string(&l))
                .unwrap_or_default();
            Err(CudaError(format!(
                "compiling {name} for {arch}: {e:?}\n{}",
                log.trim_end()
            )))
        }
    };
    // SAFETY: created above, destroyed once.
    let _ = unsafe { cudarc::nvrtc::result::destroy_program(prog) };
    out
}

/// The compiled CUBIN, or with `ptx` the PTX text (its size counts the NUL at its end).
///
/// # Safety
/// `prog` must be a live, successfully compiled program.
unsafe fn get_image(prog: nvrtc::nvrtcProgram, ptx: bool) -> Result<Vec<u8>> {
    let mut size = 0usize;
    // SAFETY: as the caller guarantees; `size` is a live out-pointer.
    let r = unsafe {
        if ptx {
            nvrtc::nvrtcGetPTXSize(prog, &mut size)
        } else {
            nvrtc::nvrtcGetCUBINSize(prog, &mut size)
        }
    };
    nvrtc_check(r, "reading the image's size")?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds the `size` bytes NVRTC said it would write.
    let r = unsafe {
        let out = buf.as_mut_ptr().cast::<c_char>();
        if ptx {
            nvrtc::nvrtcGetPTX(prog, out)
        } else {
            nvrtc::nvrtcGetCUBIN(prog, out)
        }
    };
    nvrtc_check(r, "reading the image")?;
    Ok(buf)
}

fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver older than NVRTC is named in a load error's note, with the way out; an equal
    /// or newer one adds nothing.
    #[test]
    fn a_driver_older_than_nvrtc_is_named() {
        let note = older_driver_note(12040, (13, 0)).unwrap();
        assert!(
            note.contains("the driver is CUDA 12.4 and NVRTC 13.0")
                && note.contains("a CUDA 12.x toolkit"),
            "{note}"
        );
        assert!(older_driver_note(12040, (12, 9)).is_some());
        assert_eq!(older_driver_note(12090, (12, 9)), None);
        assert_eq!(older_driver_note(13000, (12, 9)), None);
    }

    /// The text of `kernels/iq_grids.cuh`: camelid-kernels' codebooks (generated there from
    /// gguf-py, and checked against its dequantizers) as `__device__` arrays.
    fn iq_grids_text() -> String {
        use camelid_kernels::quant::{
            IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
        };
        let mut out = String::from(concat!(
            "// @generated by camelid-cuda's test `iq_grids_are_camelid_kernels_tables` ",
            "(CAMELID_BLESS=1 rewrites it): do not edit.\n",
            "// The grid i-quants' codebooks, camelid-kernels `src/quant/iq_tables.rs` (from ",
            "llama.cpp's gguf-py,\n",
            "// `gguf.quants`): entry k's values are the little-endian bytes of element k. Defined ",
            "where quant.cu's\n",
            "// grid types are: its parts 5 and 6, or the whole file.\n",
            "#if !defined(CAMELID_QUANT_PART) || CAMELID_QUANT_PART >= 5\n",
        ));
        let mut table = |name: &str, doc: &str, ty: &str, hex: Vec<String>| {
            out.push_str(&format!(
                "\n// {doc}\n__device__ const {ty} {name}[{}] = {{\n",
                hex.len()
            ));
            for line in hex.chunks(4) {
                out.push_str(&format!("    {},\n", line.join(", ")));
            }
            out.push_str("};\n");
        };
        let u64s = |t: &[u64]| t.iter().map(|v| format!("0x{v:016x}ull")).collect();
        let u32s = |t: &[u32]| t.iter().map(|v| format!("0x{v:08x}u")).collect();
        let long = "unsigned long long";
        table(
            "IQ2XXS_GRID",
            "IQ2_XXS: eight values (8, 25, 43) an entry.",
            long,
            u64s(&IQ2XXS_GRID),
        );
        table(
            "IQ2XS_GRID",
            "IQ2_XS: eight values an entry.",
            long,
            u64s(&IQ2XS_GRID),
        );
        table(
            "IQ2S_GRID",
            "IQ2_S: eight values an entry.",
            long,
            u64s(&IQ2S_GRID),
        );
        table(
            "IQ3XXS_GRID",
            "IQ3_XXS: four values an entry.",
            "unsigned int",
            u32s(&IQ3XXS_GRID),
        );
        table(
            "IQ3S_GRID",
            "IQ3_S: four values an entry.",
            "unsigned int",
            u32s(&IQ3S_GRID),
        );
        table(
            "IQ1S_GRID",
            "IQ1_S and IQ1_M: eight values (-1, 0, 1 as signed bytes) an entry.",
            long,
            u64s(&IQ1S_GRID),
        );
        out.push_str("\n#endif\n");
        out
    }

    /// Every weight type camelid reads has CUDA kernels.
    #[test]
    fn every_weight_type_has_kernels() {
        for d in DType::ALL {
            assert!(has_kernels(d), "{}", d.name());
        }
    }

    /// `kernels/iq_grids.cuh` holds camelid-kernels' tables (`CAMELID_BLESS=1` writes it), and
    /// quant.cu's `ksigns` formula gives gguf-py's sign patterns.
    #[test]
    fn iq_grids_are_camelid_kernels_tables() {
        for (s, &k) in camelid_kernels::quant::KSIGNS.iter().enumerate() {
            let s = s as u32;
            assert_eq!(k as u32, s | (s.count_ones() & 1) << 7, "ksigns({s})");
        }
        let want = iq_grids_text();
        if want != IQ_GRIDS {
            assert!(
                std::env::var_os("CAMELID_BLESS").is_some(),
                "kernels/iq_grids.cuh differs from camelid-kernels' tables; run this test with \
                 CAMELID_BLESS=1"
            );
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels/iq_grids.cuh");
            std::fs::write(path, &want).unwrap();
            eprintln!("wrote {path}");
        }
    }

    /// The run-time build as the backend does it (NVRTC, CUBIN for Hopper), where NVRTC can be
    /// loaded: no GPU is needed to compile. Elsewhere (CI) a note says it was skipped.
    #[test]
    fn every_source_compiles_to_a_cubin_with_nvrtc() {
        // SAFETY: opening NVRTC runs its initialisers, which have no preconditions.
        if !unsafe { nvrtc::is_culib_present() } {
            eprintln!("skipped: NVRTC (libnvrtc.so) not found on the library path");
            return;
        }
        eprintln!("NVRTC {}", nvrtc_version().unwrap());
        let every = programs(&DType::ALL, MatvecShape::DEFAULT);
        assert_eq!(every.len(), QUANT_GROUPS.len() + SOURCES.len() - 1);
        let all: Vec<&Program> = every.iter().collect();
        let mut images = Vec::new();
        let hopper = Target { cc: 90, ptx: false };
        for (p, cubin) in every.iter().zip(compile_all(&all, &hopper)) {
            let cubin = cubin.unwrap_or_else(|e| panic!("{}", e.0));
            assert_eq!(&cubin[..4], b"\x7fELF", "{}: not an ELF image", p.stem);
            eprintln!("{}: {} bytes", p.stem, cubin.len());
            images.push((p.stem.clone(), cubin));
        }
        let has = |stem: &str, name: &str| {
            let sym = format!(".text.{name}\0");
            images
                .iter()
                .any(|(s, i)| s == stem && i.windows(sym.len()).any(|w| w == sym.as_bytes()))
        };
        // Every kernel the table looks up is a symbol (`.text.<name>`) of the image that
        // `programs` compiles for it: a weight type's of its group's (so that the groups here
        // are quant.cu's), the others' of their own source's.
        for (stem, n) in [
            ("ops", "rmsnorm"),
            ("quant0", "rope_store"),
            ("ops", "silu_mul"),
            ("ops", "add"),
            ("ops", "gather_rows"),
            ("ops", "argmax_rows"),
            ("quant0", "f32_to_f16"),
            ("attention", "attention_partial"),
            ("attention", "attention_combine"),
            ("attention", "attention"),
            ("attention", "attention_tc_f16"),
        ] {
            assert!(has(stem, n), "kernel `{n}` is not in {stem}");
        }
        for d in DType::ALL {
            let t = d.name().to_ascii_lowercase();
            let stem = format!("quant{}", quant_group(d).unwrap());
            let mut names = vec![
                format!("matvec_{t}"),
                format!("matvec3_{t}"),
                format!("matvec_add_{t}"),
                format!("matvec_add_norm_{t}"),
                format!("v1_matvec_{t}"),
                format!("v1_matvec3_{t}"),
                format!("v1_matvec_add_{t}"),
                format!("v1_matvec_swiglu_{t}"),
                format!("matvec_swiglu_{t}"),
                format!("embed_{t}"),
                format!("dequant_{t}_f16"),
                format!("dequant_{t}_f32"),
            ];
            if d != DType::F32 {
                names.extend([format!("tc_matvec_{t}"), format!("tc_matvec_add_{t}")]);
            }
            for n in names {
                assert!(has(&stem, &n), "kernel `{n}` is not in {stem}");
            }
        }
        // A model's programs: group 0, its types' groups, ops and attention.
        let stems = |types: &[DType]| -> Vec<String> {
            programs(types, MatvecShape::DEFAULT)
                .into_iter()
                .map(|p| p.stem)
                .collect()
        };
        assert_eq!(
            stems(&[DType::Q4_K, DType::Q6_K, DType::Q4_K]),
            ["quant0", "quant3", "ops", "attention"]
        );
        assert_eq!(stems(&[DType::F16]), ["quant0", "ops", "attention"]);
    }

    #[test]
    fn a_compile_error_carries_the_log() {
        // SAFETY: as above.
        if !unsafe { nvrtc::is_culib_present() } {
            eprintln!("skipped: NVRTC (libnvrtc.so) not found on the library path");
            return;
        }
        let e = compile(
            "bad.cu",
            "extern \"C\" __global__ void k() { nope; }",
            &Target { cc: 90, ptx: false },
        )
        .expect_err("an error");
        assert!(e.0.contains("bad.cu") && e.0.contains("nope"), "{}", e.0);
    }

    #[test]
    fn matvec_shapes_are_rows_by_warps() {
        let ok = |v: &str| MatvecShape::parse(v).map(|s| (s.rows, s.warps)).ok();
        assert_eq!(ok("2x4"), Some((2, 4)));
        assert_eq!(ok("4x8"), Some((4, 8)));
        for bad in ["3x4", "2x16", "4", "x", "2x4x1", "1x4"] {
            let e = MatvecShape::parse(bad).expect_err(bad).0;
            assert!(
                e.starts_with(&format!("CAMELID_CUDA_MATVEC_SHAPE={bad}: ")),
                "{e}"
            );
        }
    }

    /// A card this NVRTC knows gets a CUBIN for itself; one newer than every architecture it
    /// knows gets PTX for the newest (which compiles, ends in its NUL, and names that
    /// architecture); one older than all of them is an error that says what NVRTC supports.
    #[test]
    fn the_code_suits_cards_older_and_newer_than_nvrtc() {
        // SAFETY: as above.
        if !unsafe { nvrtc::is_culib_present() } {
            eprintln!("skipped: NVRTC (libnvrtc.so) not found on the library path");
            return;
        }
        let known = supported_archs().unwrap();
        let newest = *known.iter().max().unwrap();
        eprintln!("NVRTC {} knows {known:?}", nvrtc_version().unwrap());
        let hopper = Target::for_card(90).unwrap();
        assert_eq!(
            (hopper.cc, hopper.ptx, hopper.arch().as_str()),
            (90, false, "sm_90")
        );
        let future = Target::for_card(990).unwrap();
        assert_eq!((future.cc, future.ptx), (newest, true));
        let ops = programs(&[], MatvecShape::DEFAULT)
            .into_iter()
            .find(|p| p.stem == "ops")
            .unwrap();
        let ptx = compile(ops.name, &ops.text, &future).unwrap();
        let text = String::from_utf8_lossy(&ptx);
        assert!(ptx.ends_with(&[0]), "PTX without its NUL");
        assert!(
            text.contains(&format!(".target sm_{newest}")),
            "{}",
            &text[..300]
        );
        assert!(text.contains(".entry rmsnorm"), "no rmsnorm in the PTX");
        let e = Target::for_card(10)
            .err()
            .expect("sm_10 is older than any NVRTC supports");
        assert!(
            e.0.contains("this card is sm_10") && e.0.contains(&format!("to sm_{newest}")),
            "{}",
            e.0
        );
    }
}
