//! Matrix products of a weight matrix (any [`DType`]) with f32 activations, and the [`Kernels`]
//! context that owns the thread pool and the scratch buffers.
//!
//! Two precisions:
//! - [`Precision::Exact`] dequantizes a strip of each weight row to f32 and takes f32 dot
//!   products, so the only error against an f32 computation on the same (rounded or
//!   dequantized) weights is the order of the additions. This is the reference path.
//! - [`Precision::Fast`] rounds the activations to 8 bits (see [`crate::act`]) and uses integer
//!   dot products, as llama.cpp does; its error is that of llama.cpp on the same file.
//!
//! F32 and F16 weights are always multiplied exactly in f32: widening a half to f32 is exact.
//! BF16 weights at [`Precision::Exact`] too; at [`Precision::Fast`] their activations are
//! rounded to bf16 (8 significant bits, as llama.cpp does for BF16 weights) and multiplied in
//! pairs with f32 sums, as AVX512-BF16's `vdpbf16ps` does (`kernels::scalar::dot_bf16_bf16`
//! is the arithmetic); a relative error of at most 2⁻⁸ per activation.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::act::{ActKind, QuantAct, bf16_stride};
use crate::dtype::DType;
use crate::interleave;
use crate::isa::Isa;
use crate::kernels::{self, ActPtr, NT, Panel, PanelBuf, PanelJob, Table, Tile};
use crate::pool::ThreadPool;
use crate::quant::dequantize_row;

/// A weight matrix `[rows, cols]` borrowed from wherever it lives (usually a memory map):
/// row-major as in the file, or with its rows interleaved in eights ([`crate::interleave`]).
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    /// Whether `data` is in the interleaved layout ([`WeightView::interleaved`]).
    pub interleaved: bool,
}

impl<'a> WeightView<'a> {
    /// Checks that `data` holds exactly `rows × cols` elements of `dtype`.
    pub fn new(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> Option<Self> {
        let expected = dtype.row_bytes(cols)?.checked_mul(rows)?;
        (data.len() == expected).then_some(WeightView {
            dtype,
            rows,
            cols,
            data,
            interleaved: false,
        })
    }

    /// As [`WeightView::new`] for the output of [`crate::interleave::interleave`], which only
    /// products on a path whose [`Kernels::interleaves`] says so may take.
    pub fn interleaved(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> Option<Self> {
        let w = WeightView::new(dtype, rows, cols, data)
            .filter(|_| interleave::fits(dtype, rows, cols))?;
        Some(WeightView {
            interleaved: true,
            ..w
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// The bytes of row `r` in the file's layout (gathered where the rows are interleaved).
    pub fn row(&self, r: usize) -> Cow<'a, [u8]> {
        let rb = self.row_bytes();
        if self.interleaved {
            let mut row = vec![0u8; rb];
            interleave::row_into(self.dtype, self.cols, self.data, r, &mut row);
            Cow::Owned(row)
        } else {
            Cow::Borrowed(&self.data[r * rb..(r + 1) * rb])
        }
    }

    /// Dequantizes row `r` into `dst` (`cols` long): an embedding lookup.
    pub fn dequantize_row_into(&self, r: usize, dst: &mut [f32]) {
        if self.interleaved {
            interleave::dequantize_row_into(self.dtype, self.cols, self.data, r, dst);
        } else {
            dequantize_row(self.dtype, &self.row(r), dst);
        }
    }
}

/// How quantized weights are multiplied; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Dequantize to f32, f32 dot products.
    Exact,
    /// 8-bit activations, integer dot products (llama.cpp's arithmetic); bf16 activations for
    /// BF16 weights.
    #[default]
    Fast,
}

/// The compute context of a model: the kernel table chosen for this CPU, the precision, a thread
/// pool and scratch buffers for quantized activations. `matmul` takes `&self`; calls from
/// several threads are serialized.
pub struct Kernels {
    table: &'static Table,
    /// Precision of products with quantized weights.
    pub precision: Precision,
    inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    pool: ThreadPool,
    act: QuantAct,
    /// One panel buffer per thread.
    panels: Vec<PanelBuf>,
    /// Attention scores, `[threads, max n_past]`.
    scores: Vec<f32>,
    /// Attention's tiles of rows (kept, like the scores, so that no pass allocates them).
    tiles: Vec<usize>,
}

impl Inner {
    /// The pool, attention scratch for `threads` rows of `n` scores, and an empty list for
    /// attention's tiles of rows.
    pub(crate) fn attention_scratch(
        &mut self,
        threads: usize,
        n: usize,
    ) -> (&ThreadPool, &mut [f32], &mut Vec<usize>) {
        if self.scores.len() < threads * n {
            self.scores.resize(threads * n, 0.0);
        }
        self.tiles.clear();
        (&self.pool, &mut self.scores[..threads * n], &mut self.tiles)
    }
}

/// The per-thread panel buffers shared by the workers of one product.
#[derive(Clone, Copy)]
struct PanelsPtr(*mut PanelBuf);
// SAFETY: participant `i` touches only buffer `i`, and `matmul_with` holds the `Inner` lock
// (and so the buffers) until every participant is done.
unsafe impl Send for PanelsPtr {}
// SAFETY: as for Send: shared references hand out disjoint buffers, one per participant.
unsafe impl Sync for PanelsPtr {}

impl PanelsPtr {
    /// # Safety
    /// `i` is within the buffers and no one else uses buffer `i` while the borrow lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut PanelBuf {
        // SAFETY: caller's contract.
        unsafe { &mut *self.0.add(i) }
    }
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("isa", &self.table.isa)
            .field("precision", &self.precision)
            .finish()
    }
}

impl Kernels {
    /// A context with `threads` compute threads (the caller counts as one) on the path chosen
    /// by [`Isa::active`] (`CAMELID_ISA`, else the best this CPU has).
    pub fn new(threads: usize) -> Kernels {
        Kernels::with_isa(threads, Isa::active())
    }

    /// As [`Kernels::new`] on a given path (lowered to what this CPU supports).
    pub fn with_isa(threads: usize, isa: Isa) -> Kernels {
        Kernels {
            table: kernels::table(isa),
            precision: Precision::Fast,
            inner: Mutex::new(Inner {
                pool: ThreadPool::new(threads.max(1)),
                act: QuantAct::default(),
                panels: Vec::new(),
                scores: Vec::new(),
                tiles: Vec::new(),
            }),
        }
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.table.isa
    }

    /// Whether this path multiplies `dtype` faster with its rows interleaved in eights
    /// ([`crate::interleave`], [`WeightView::interleaved`]); only then may such a view be given
    /// to it.
    pub fn interleaves(&self, dtype: DType) -> bool {
        self.table.get(dtype, Precision::Fast).interleaved.is_some()
    }

    /// Threads of the pool.
    pub fn threads(&self) -> usize {
        self.lock().pool.threads()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The context, its pool grown to at least `threads`.
    pub(crate) fn lock_inner(&self, threads: usize) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if threads > inner.pool.threads() {
            inner.pool = ThreadPool::new(threads);
        }
        inner
    }

    /// Runs `job(i)` once for every `i` in `0..threads` on this context's pool (grown if asked
    /// for more threads than it has), the caller taking `i = 0`. For a caller's own row or head
    /// loops between products: they reuse the workers of the products instead of waking a
    /// second set of threads that would compete with them for the cores.
    pub fn run(&self, threads: usize, job: &(dyn Fn(usize) + Sync)) {
        let threads = threads.max(1);
        if threads == 1 {
            job(0);
            return;
        }
        let inner = self.lock_inner(threads);
        inner.pool.run(&|i| {
            if i < threads {
                job(i)
            }
        });
    }

    /// `out[t, r] = Σ_c w[r, c] · x[t, c]` for `x: [n, cols]`, `out: [n, rows]`, with at most
    /// `threads` threads (the pool grows if asked for more than it has), at `self.precision`.
    pub fn matmul(&self, w: &WeightView, x: &[f32], out: &mut [f32], threads: usize) {
        self.matmul_with(w, x, out, threads, self.precision);
    }

    /// As [`Kernels::matmul`] at a given precision.
    pub fn matmul_with(
        &self,
        w: &WeightView,
        x: &[f32],
        out: &mut [f32],
        threads: usize,
        precision: Precision,
    ) {
        self.matmuls_with(x, &mut [(*w, out)], threads, precision);
    }

    /// Several products of the same activations, `out_i = w_i · x` as [`Kernels::matmul`] gives
    /// each, in one hand-out of work to the threads: the activations are quantized once and the
    /// threads meet once, where separate products pay both per product (the q, k and v
    /// projections, gate and up: 5 meetings a layer instead of 8 in a decode step).
    pub fn matmuls(&self, x: &[f32], products: &mut [(WeightView, &mut [f32])], threads: usize) {
        self.matmuls_with(x, products, threads, self.precision);
    }

    /// As [`Kernels::matmuls`] at a given precision.
    pub fn matmuls_with(
        &self,
        x: &[f32],
        products: &mut [(WeightView, &mut [f32])],
        threads: usize,
        precision: Precision,
    ) {
        let Some((first, _)) = products.first() else {
            return;
        };
        let cols = first.cols;
        assert!(
            cols > 0 && x.len().is_multiple_of(cols),
            "activations are not [n, {cols}]"
        );
        let n = x.len() / cols;
        let mut jobs = [None; MAX_FUSED];
        let mut work = 0;
        let mut act_kind = None;
        let mut split = products.len();
        for (i, (w, out)) in products.iter_mut().enumerate() {
            let rows = w.rows;
            assert_eq!(
                w.cols, cols,
                "products of one activation matrix differ in width"
            );
            assert_eq!(out.len(), n * rows, "output is not [{n}, {rows}]");
            assert_eq!(
                Some(w.data.len()),
                w.dtype.row_bytes(cols).and_then(|rb| rb.checked_mul(rows)),
                "weights are not [{rows}, {cols}] of {}",
                w.dtype
            );
            let mut tk = self.table.get(w.dtype, precision);
            let exact = precision == Precision::Exact && w.dtype.is_quantized();
            if w.interleaved && !exact {
                let (tile, panel) = tk
                    .interleaved
                    .expect("interleaved weights on a path without their kernels");
                (tk.tile, tk.panel) = (tile, Some(panel));
            }
            let panel = tk
                .panel
                .filter(|p| !exact && n >= p.min_n && rows >= p.rows);
            let kind = (!exact).then(|| panel.map_or(tk.act, |p| p.act));
            if i == MAX_FUSED || (act_kind.is_some() && kind.is_some() && act_kind != kind) {
                split = i;
                break;
            }
            act_kind = act_kind.or(kind);
            work += rows * cols * n;
            jobs[i] = Some(Job {
                w: *w,
                tk,
                panel,
                exact,
                chunk: 0,
                full: 0,
                tail: 0,
                end: 0,
                out: OutPtr(out.as_mut_ptr()),
            });
        }
        if split < products.len() {
            // Activations of another kind, or too many products: those from `split` go apart.
            let (head, rest) = products.split_at_mut(split);
            self.matmuls_with(x, head, threads, precision);
            return self.matmuls_with(x, rest, threads, precision);
        }
        if n == 0 || work == 0 {
            return;
        }
        let mut inner = self.lock();
        let threads = threads.max(1);
        if threads > inner.pool.threads() {
            inner.pool = ThreadPool::new(threads);
        }
        // Small products are not worth waking the workers.
        let threads = if work < (1 << 16) { 1 } else { threads };

        let Inner {
            pool, act, panels, ..
        } = &mut *inner;
        if let Some(kind) = act_kind {
            quantize_activations(self.table, kind, x, n, cols, act);
        }
        let act = &*act;
        if panels.len() < threads {
            panels.resize_with(threads, Default::default);
        }
        let bufs = PanelsPtr(panels.as_mut_ptr());
        // Units of work are numbered through the products in turn: product `i` has those below
        // its `end` and at or above the previous product's.
        // A decode hand-out's last `threads` units, where they are large (from [`TAIL_FROM`] to
        // 4 MiB), are cut in [`TAIL_SPLIT`], so that a thread that finishes first waits for a
        // small unit rather than a large one.
        let mut n_chunks = 0;
        let last = jobs.iter().rposition(Option::is_some);
        for (i, j) in jobs.iter_mut().enumerate() {
            let Some(j) = j else { continue };
            let rows = j.w.rows;
            let mut chunk = chunk_rows(rows, j.w.row_bytes(), n, threads);
            if let Some(p) = j.panel {
                chunk = chunk.div_ceil(p.rows) * p.rows;
            }
            let units = rows.div_ceil(chunk);
            j.chunk = chunk;
            let large = chunk * j.w.row_bytes() >= TAIL_FROM;
            (j.full, j.tail) = if Some(i) == last && n == 1 && threads > 1 && large {
                let tail = (chunk / TAIL_SPLIT).next_multiple_of(8).max(8);
                (units.saturating_sub(threads), tail)
            } else {
                (units, chunk)
            };
            n_chunks += j.full + (rows - (j.full * chunk).min(rows)).div_ceil(j.tail);
            j.end = n_chunks;
        }
        let jobs = &jobs;
        let next = AtomicUsize::new(0);
        let job = |id: usize| {
            if id >= threads {
                return;
            }
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= n_chunks {
                    break;
                }
                let mut begin = 0;
                for j in jobs.iter().flatten() {
                    if c < j.end {
                        let k = c - begin;
                        let r = if k < j.full {
                            k * j.chunk..((k + 1) * j.chunk).min(j.w.rows)
                        } else {
                            let at = j.full * j.chunk + (k - j.full) * j.tail;
                            at..(at + j.tail).min(j.w.rows)
                        };
                        let w = &j.w;
                        if j.exact {
                            exact_rows(w, x, n, r, j.out);
                        } else if let Some(pf) = j.panel {
                            // SAFETY: participant `id < threads ≤ panels.len()` owns buffer `id`.
                            let buf = unsafe { bufs.get(id) };
                            panel_rows(pf, buf, w, x, act, n, r, j.out);
                        } else {
                            fast_rows(j.tk.tile, j.tk.act, w, x, act, n, r, j.out);
                        }
                        break;
                    }
                    begin = j.end;
                }
            }
        };
        if threads == 1 {
            job(0);
        } else {
            pool.run(&job);
        }
    }
}

/// Pieces each of the last units of a decode hand-out is cut in. The threads waited for each
/// other in 3.5–4.7% of the samples of a Q4_K_M decode of the 1.24B model (`perf`, spinning
/// in the pool) with whole units of up to 4 MiB at the end, 0.9–1.0% with eighths of those
/// from 1 MiB; units that short throughout had cost 3–5% (`chunk_rows`).
const TAIL_SPLIT: usize = 8;
/// Units smaller than this are not cut: their tail is short already, and pieces of a few rows
/// cost more in hand-outs than they save (a model in cache: 128 KiB units, 16 KiB pieces).
const TAIL_FROM: usize = 1 << 20;

/// Products [`Kernels::matmuls`] hands out together; more go in further rounds.
const MAX_FUSED: usize = 4;

/// One product of [`Kernels::matmuls`]: its weights and kernels, rows per unit of work, where
/// its units end in the shared numbering, and its output.
#[derive(Clone, Copy)]
struct Job<'a> {
    w: WeightView<'a>,
    tk: kernels::TypeKernels,
    panel: Option<Panel>,
    exact: bool,
    /// Rows of each of the first `full` units, then of each of the rest.
    chunk: usize,
    full: usize,
    tail: usize,
    end: usize,
    out: OutPtr,
}

/// Rows per unit of work, a multiple of eight rows (the quantized kernels take rows in eights).
///
/// A matrix-vector product (decode) streams its weights from memory: two units per thread, of
/// up to 4 MiB each, so that each thread reads long contiguous runs that its prefetching keeps
/// streaming. Units of 256 KiB had decode of the 1.24B model at two threads 3–5% slower where
/// the memory read 36–45 GB/s and up to a fifth slower where it read 60 (F16, Q8_0, Q4_K_M,
/// BF16, alternating runs); one unit per thread was no faster than two; units of 16 KiB had
/// measured half the two-thread throughput. When several activation rows reuse the weights
/// from cache, units of 64 KiB (at most 256 rows) and enough of them to balance the threads.
fn chunk_rows(rows: usize, row_bytes: usize, n: usize, threads: usize) -> usize {
    let units = |target: usize, per_thread: usize| {
        let by_size = (target / row_bytes.max(1)).max(8) / 8 * 8;
        by_size.min(rows.div_ceil(per_thread * threads).next_multiple_of(8))
    };
    if n > 1 {
        units(64 << 10, 8).clamp(8, 256)
    } else {
        units(4 << 20, 2).max(8)
    }
}

fn quantize_activations(
    table: &Table,
    kind: ActKind,
    x: &[f32],
    n: usize,
    cols: usize,
    act: &mut QuantAct,
) {
    act.reset(kind, n, cols);
    match kind {
        ActKind::F32 => {}
        ActKind::Bf16 => {
            let stride = bf16_stride(cols);
            for t in 0..n {
                (table.quant_bf16)(
                    &x[t * cols..][..cols],
                    &mut act.bf16s[t * stride..][..stride],
                );
            }
        }
        ActKind::Q8 => {
            let nb = cols / 32;
            for t in 0..n {
                (table.quant_q8)(
                    &x[t * cols..][..cols],
                    &mut act.qs[t * cols..][..cols],
                    &mut act.d[t * nb..][..nb],
                    &mut act.dsum[t * nb..][..nb],
                    &mut act.dsum16[t * 2 * nb..][..2 * nb],
                );
            }
        }
    }
}

/// The output pointer shared by the workers of one product.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: workers write disjoint sets of elements (distinct rows `r` of `out[t, r]`), and
// `matmul_with` returns only after every worker is done with the borrow of `out`.
unsafe impl Send for OutPtr {}
// SAFETY: as for Send: the workers sharing it write disjoint elements.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// `len` floats from element `at`.
    ///
    /// # Safety
    /// The range lies inside the buffer and no one else uses it while the borrow lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        // SAFETY: caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

#[allow(clippy::too_many_arguments)]
fn fast_rows(
    tile: kernels::TileFn,
    kind: ActKind,
    w: &WeightView,
    x: &[f32],
    act: &QuantAct,
    n: usize,
    rows: Range<usize>,
    out: OutPtr,
) {
    let (cols, total_rows) = (w.cols, w.rows);
    let row_bytes = w.row_bytes();
    let blk = kind.block();
    let mut t0 = 0;
    while t0 < n {
        let nt = (n - t0).min(NT);
        let a = match kind {
            ActKind::F32 => ActPtr {
                f32s: x[t0 * cols..].as_ptr(),
                ..null_act()
            },
            ActKind::Bf16 => ActPtr {
                bf16s: act.bf16s[t0 * bf16_stride(cols)..].as_ptr(),
                ..null_act()
            },
            ActKind::Q8 => ActPtr {
                qs: act.qs[t0 * cols..].as_ptr(),
                d: act.d[t0 * cols / blk..].as_ptr(),
                dsum: act.dsum[t0 * cols / 32..].as_ptr(),
                dsum16: act.dsum16[t0 * cols / 16..].as_ptr(),
                ..null_act()
            },
        };
        let t = Tile {
            w: w.data[rows.start * row_bytes..rows.end * row_bytes].as_ptr(),
            row_bytes,
            nr: rows.len(),
            cols,
            act: a,
            nt,
            // SAFETY: `t0 < n` and `rows.start < total_rows`, inside `out: [n, total_rows]`.
            out: unsafe { out.0.add(t0 * total_rows + rows.start) },
            ldo: total_rows,
        };
        // SAFETY: the tile was built from checked slices: `nr` rows of weights of `cols`
        // elements, `nt` activation rows of `kind` (sized by `quantize_activations`), outputs
        // `out[t0 + i, r]` inside `out` and written by this worker only; the table was chosen for
        // an ISA this CPU supports (`kernels::table`).
        unsafe { tile(&t) };
        t0 += nt;
    }
}

/// `rows` through panels of (at most) `pf.rows` rows.
#[allow(clippy::too_many_arguments)]
fn panel_rows(
    pf: Panel,
    buf: &mut PanelBuf,
    w: &WeightView,
    x: &[f32],
    act: &QuantAct,
    n: usize,
    rows: Range<usize>,
    out: OutPtr,
) {
    let row_bytes = w.row_bytes();
    let mut r = rows.start;
    while r < rows.end {
        let nr = (rows.end - r).min(pf.rows);
        let job = PanelJob {
            w: w.data[r * row_bytes..(r + nr) * row_bytes].as_ptr(),
            nr,
            row_bytes,
            cols: w.cols,
            act: ActPtr {
                f32s: x.as_ptr(),
                qs: act.qs.as_ptr(),
                d: act.d.as_ptr(),
                dsum: act.dsum.as_ptr(),
                dsum16: act.dsum16.as_ptr(),
                bf16s: act.bf16s.as_ptr(),
            },
            n,
            // SAFETY: `r < w.rows`, inside `out: [n, rows]`.
            out: unsafe { out.0.add(r) },
            ldo: w.rows,
        };
        // SAFETY: `nr` whole rows of the checked weights, `n` activation rows of the panel's
        // kind (`x` itself, or sized by `quantize_activations`), outputs `out[t, r..r + nr]` written by this worker only;
        // panels exist only in tables of ISAs this CPU supports.
        unsafe { (pf.f)(&job, buf) };
        r += nr;
    }
}

const fn null_act() -> ActPtr {
    ActPtr {
        f32s: std::ptr::null(),
        qs: std::ptr::null(),
        d: std::ptr::null(),
        dsum: std::ptr::null(),
        dsum16: std::ptr::null(),
        bf16s: std::ptr::null(),
    }
}

/// Columns dequantized at a time: a multiple of every block size, small enough for the stack.
const STRIP: usize = 256;

/// f32 dot product with eight independent accumulators, so the compiler can keep them in one
/// vector register without reassociating a single running sum.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The exact path over `rows`: dequantized strips of each weight row, f32 dot products.
fn exact_rows(w: &WeightView, x: &[f32], n: usize, rows: Range<usize>, out: OutPtr) {
    let (cols, total_rows, dtype) = (w.cols, w.rows, w.dtype);
    let bs = dtype.block_size();
    let bb = dtype.block_bytes();
    let mut strip = [0.0f32; STRIP];
    for r in rows {
        let row = w.row(r);
        let mut sums = [0.0f32; 64];
        let mut t0 = 0;
        // Activation rows are taken 64 at a time so the partial sums stay on the stack.
        while t0 < n {
            let tn = (n - t0).min(64);
            sums[..tn].fill(0.0);
            for c0 in (0..cols).step_by(STRIP) {
                let len = STRIP.min(cols - c0);
                let bytes = &row[c0 / bs * bb..(c0 + len) / bs * bb];
                dequantize_row(dtype, bytes, &mut strip[..len]);
                for (t, s) in sums[..tn].iter_mut().enumerate() {
                    let xt = &x[(t0 + t) * cols + c0..][..len];
                    *s += dot_f32(&strip[..len], xt);
                }
            }
            for (t, s) in sums[..tn].iter().enumerate() {
                // SAFETY: `(t0 + t) < n` and `r < total_rows`, so the index is inside `out`,
                // and only this worker writes row `r`.
                unsafe { *out.0.add((t0 + t) * total_rows + r) = *s };
            }
            t0 += tn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row;

    /// A decode product large enough for its last units to be cut finer gives one thread's
    /// bits on two threads, on every path this CPU has.
    #[test]
    fn decode_units_cut_at_the_end_keep_the_bits() {
        let cols = 512;
        for dtype in [DType::F16, DType::Q4_K, DType::Q8_0] {
            let rb = dtype.row_bytes(cols).unwrap();
            // Units of at least TAIL_FROM (F16: the last piece is short).
            let rows = (4 * TAIL_FROM / rb).next_multiple_of(8) + 24;
            assert!(chunk_rows(rows, rb, 1, 2) * rb >= TAIL_FROM);
            // The rows repeat every PERIOD: each distinct one is quantized once (the k-quant
            // search over 14K rows took a minute under qemu).
            const PERIOD: usize = 89;
            let mut distinct = vec![0u8; rb * PERIOD];
            for r in 0..PERIOD {
                let wf: Vec<f32> = (0..cols)
                    .map(|c| (((r * 17 + c * 5) % PERIOD) as f32 - 44.0) / 40.0)
                    .collect();
                quantize_row(dtype, &wf, &mut distinct[r * rb..][..rb]);
            }
            let wq: Vec<u8> = (0..rows)
                .flat_map(|r| &distinct[r % PERIOD * rb..][..rb])
                .copied()
                .collect();
            let w = WeightView::new(dtype, rows, cols, &wq).unwrap();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                .collect();
            for isa in Isa::available() {
                let k = Kernels::with_isa(2, isa);
                for precision in [Precision::Fast, Precision::Exact] {
                    let (mut two, mut one) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
                    k.matmul_with(&w, &x, &mut two, 2, precision);
                    k.matmul_with(&w, &x, &mut one, 1, precision);
                    assert!(
                        two.iter()
                            .zip(&one)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} {precision:?} {dtype}: two threads differ from one"
                    );
                }
            }
        }
    }

    /// Products handed out together give each product's own result bit for bit, and two
    /// threads one thread's: mixed activation kinds (Q8, f32, bf16), more products than go in
    /// one round, decode and prompt batch sizes, both precisions, on every path this CPU has.
    #[test]
    fn fused_products_equal_separate_ones() {
        let cols = 512;
        let types = [
            DType::Q4_K,
            DType::Q6_K,
            DType::F16,
            DType::Q8_0,
            DType::BF16,
            DType::Q4_0,
        ];
        let ws: Vec<(DType, usize, Vec<u8>)> = types
            .iter()
            .enumerate()
            .map(|(i, &dtype)| {
                let rows = 40 + 24 * i;
                let rb = dtype.row_bytes(cols).unwrap();
                let mut wq = vec![0u8; rb * rows];
                for r in 0..rows {
                    let wf: Vec<f32> = (0..cols)
                        .map(|c| (((r * 31 + c * 7 + i) % 97) as f32 - 48.0) / 50.0)
                        .collect();
                    quantize_row(dtype, &wf, &mut wq[r * rb..][..rb]);
                }
                (dtype, rows, wq)
            })
            .collect();
        for isa in Isa::available() {
            let k = Kernels::with_isa(2, isa);
            for precision in [Precision::Fast, Precision::Exact] {
                for n in [1, 9] {
                    let x: Vec<f32> = (0..n * cols)
                        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                        .collect();
                    let views: Vec<WeightView> = ws
                        .iter()
                        .map(|(d, rows, wq)| WeightView::new(*d, *rows, cols, wq).unwrap())
                        .collect();
                    let want: Vec<Vec<f32>> = views
                        .iter()
                        .map(|w| {
                            let mut out = vec![0.0f32; n * w.rows];
                            k.matmul_with(w, &x, &mut out, 2, precision);
                            // Two threads (units cut finer at the end) give one thread's bits.
                            let mut one = vec![0.0f32; n * w.rows];
                            k.matmul_with(w, &x, &mut one, 1, precision);
                            assert!(
                                out.iter()
                                    .zip(&one)
                                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{isa:?} {precision:?} n={n}: {} on two threads",
                                w.dtype
                            );
                            out
                        })
                        .collect();
                    let mut outs: Vec<Vec<f32>> =
                        views.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
                    let mut products: Vec<(WeightView, &mut [f32])> = views
                        .iter()
                        .zip(outs.iter_mut())
                        .map(|(w, o)| (*w, o.as_mut_slice()))
                        .collect();
                    k.matmuls_with(&x, &mut products, 2, precision);
                    for (i, (got, want)) in outs.iter().zip(&want).enumerate() {
                        let same = got
                            .iter()
                            .zip(want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{isa:?} {precision:?} n={n}: product {i} differs");
                    }
                }
            }
        }
    }

    /// Rows interleaved in eights (every type that has the layout) give the file layout's results bit for bit, through the
    /// decode tiles and the prompt panels (a last panel of eight rows included) and at the exact
    /// precision, on every path that interleaves (AVX-512 where this CPU has it, and Q4_K,
    /// Q5_K, Q6_K, Q4_0, Q4_1, IQ4_NL and IQ4_XS on AVX2).
    #[test]
    fn interleaved_rows_give_the_file_layouts_results() {
        for dtype in [
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
            DType::IQ4_XS,
            DType::Q4_0,
            DType::Q4_1,
            DType::IQ4_NL,
            DType::Q8_0,
        ] {
            interleaved_equals_file_layout(dtype);
        }
    }

    fn interleaved_equals_file_layout(dtype: DType) {
        let (rows, cols) = (40, 768);
        let rb = dtype.row_bytes(cols).unwrap();
        let mut wq = vec![0u8; rows * rb];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for r in 0..rows {
            let wf: Vec<f32> = (0..cols)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            quantize_row(dtype, &wf, &mut wq[r * rb..][..rb]);
        }
        let il = interleave::interleave(dtype, rows, cols, &wq).unwrap();
        let (w, wi) = (
            WeightView::new(dtype, rows, cols, &wq).unwrap(),
            WeightView::interleaved(dtype, rows, cols, &il).unwrap(),
        );
        let mut paths = 0;
        for isa in Isa::available() {
            let k = Kernels::with_isa(2, isa);
            if !k.interleaves(dtype) {
                continue;
            }
            paths += 1;
            for precision in [Precision::Fast, Precision::Exact] {
                // 65: past the AVX2 panels' tile rows (`x86::octet2`).
                for n in [1, 2, 3, 4, 5, 8, 9, 17, 65] {
                    let x: Vec<f32> = (0..n * cols)
                        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                        .collect();
                    let (mut want, mut got) = (vec![0.0f32; n * rows], vec![f32::NAN; n * rows]);
                    k.matmul_with(&w, &x, &mut want, 2, precision);
                    k.matmul_with(&wi, &x, &mut got, 2, precision);
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "{isa} {precision:?} n={n} [{i}]");
                    }
                }
            }
        }
        if Isa::available().contains(&Isa::Avx512) {
            assert!(paths > 0, "the AVX-512 path interleaves {dtype}");
        }
    }

    /// The exact path equals a plain f64 triple loop over the dequantized weights; the fast
    /// path stays within the error of 8-bit activations.
    #[test]
    fn matmul_matches_naive_for_every_dtype_and_odd_sizes() {
        for precision in [Precision::Exact, Precision::Fast] {
            let k = Kernels::with_isa(3, Isa::Scalar);
            // The grid i-quants cannot be quantized; `tests/kernels/iquants.rs` covers them.
            for dtype in DType::ALL
                .into_iter()
                .filter(|&d| crate::quant::can_quantize(d))
            {
                for &(rows, cols, n) in &[
                    (1, 32, 1),
                    (7, 96, 3),
                    (33, 320, 2),
                    (5, 288, 70),
                    (3, 512, 5),
                    (130, 256, 2),
                    // Prompt-pass panels: 8 and 16 rows and a short one, 9 activation rows.
                    (19, 512, 9),
                ] {
                    let Some(rb) = dtype.row_bytes(cols) else {
                        continue;
                    };
                    let wf: Vec<f32> = (0..rows * cols)
                        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                        .collect();
                    let mut wq = vec![0u8; rb * rows];
                    for r in 0..rows {
                        quantize_row(dtype, &wf[r * cols..][..cols], &mut wq[r * rb..][..rb]);
                    }
                    let mut wd = vec![0.0f32; rows * cols];
                    for r in 0..rows {
                        dequantize_row(dtype, &wq[r * rb..][..rb], &mut wd[r * cols..][..cols]);
                    }
                    let x: Vec<f32> = (0..n * cols)
                        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                        .collect();
                    let w = WeightView::new(dtype, rows, cols, &wq).unwrap();
                    for threads in [1, 3] {
                        let mut out = vec![0.0f32; n * rows];
                        k.matmul_with(&w, &x, &mut out, threads, precision);
                        for t in 0..n {
                            let xt = &x[t * cols..][..cols];
                            let amax = xt.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                            for r in 0..rows {
                                let wr = &wd[r * cols..][..cols];
                                let want: f64 =
                                    wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
                                let wabs: f64 = wr.iter().map(|&a| (a as f64).abs()).sum();
                                // Fast: each activation is off by at most half a step of
                                // amax / 127.
                                // BF16 fast: each activation is off by at most 2⁻⁸ of itself (8 significant bits).
                                let xw: f64 = wr
                                    .iter()
                                    .zip(xt)
                                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                                    .sum();
                                let tol = match (precision, dtype) {
                                    (Precision::Fast, DType::BF16) => xw / 256.0 + 1e-4 * xw,
                                    (Precision::Fast, d) if d.is_quantized() => {
                                        wabs * amax / 254.0 * 1.01
                                    }
                                    _ => 1e-4 * (1.0 + want.abs()),
                                };
                                let got = out[t * rows + r] as f64;
                                assert!(
                                    (got - want).abs() <= tol + 1e-4,
                                    "{precision:?} {dtype} {rows}x{cols} n={n}: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
