//! The forward pass's operations as kernel launches ([`CudaOps`]), and the layout of the
//! per-pass inputs they read ([`Layout`]).
//!
//! Launch geometry and argument lists follow `kernels/README.md` and the comments above each
//! entry point in `kernels/*.cu`; a kernel's `int` is an `i32` here, `long long` an `i64`, and a
//! pointer a `u64` device address.

use std::ffi::c_void;

use camelid_kernels::{DType, Precision};
use camelid_model::backend::{Buf, KvCache, Mat, Norm, Ops, Out, Row};
use camelid_model::llama::MAX_BATCH;
use camelid_model::{CacheType, Config};

use crate::backend::{CudaBackend, DevMat, GRAPH_MAX_BATCH, Pass, cuda_cache};
use crate::device::{CudaError, DevBuf, Func, Pinned, Result, arg, launch};
use crate::kernels::Kernels;

/// How a product of `n` activation rows runs:
/// - at the fast precision, from [`TC_ROWS_DEFAULT`] rows (`CAMELID_CUDA_TC_ROWS` sets it) up to
///   [`TC_MAX_ROWS_DEFAULT`] (`CAMELID_CUDA_TC_MAX_ROWS`, up to `MAX_BATCH`: a prompt pass on
///   them rather than on the GEMMs, to measure), on the tensor cores (`tc_matvec_<t>`: weights
///   decoded in registers and rounded to f16, f16 activations, f32 sums; the GEMM path's inputs
///   without expanding the matrix into memory), one launch that reads the matrix once;
/// - otherwise up to [`MATVEC_ROWS_DEFAULT`] rows (`CAMELID_CUDA_MATVEC_ROWS`) on the f32
///   `matvec_<t>` kernels, one launch that reads the quantized matrix once (rows 8 at a time,
///   `MV_MAX_N` in quant.cu, each slice after the first finding a CTA's weights in cache);
/// - larger batches expand the weights for a cuBLAS GEMM.
///
/// Not measured on a GPU yet. By arithmetic: the f32 matvec does one FMA per weight and row,
/// so a 4-bit matrix is compute-bound from a few rows (at 4 rows, 7 FLOP per byte read against
/// an H200's 14 at FP32 peak and 4.8 TB/s, and its kernels run below peak); the tensor cores
/// do those FMAs at about 15 times the FP32 rate. The GEMM path's cost is mostly the
/// expansion (about 6 GB of traffic a step for the 1B in Q4_0, 1.3 ms), which the tensor-core
/// products skip. The crossovers are knobs so that a card can measure them.
pub(crate) const MATVEC_ROWS_DEFAULT: usize = 32;
pub(crate) const TC_ROWS_DEFAULT: usize = 4;
/// The tensor-core products take vectors 32 at a time (`TC_MAX_N`), each slice a pass over
/// the CTA's rows (from cache after the first); past two slices, by estimate, the GEMM's one
/// expansion pays.
pub(crate) const TC_MAX_ROWS_DEFAULT: usize = 64;

/// Whether the tensor-core products of `t` take their activations as two f16 terms (`tc_split`
/// in quant.cu): float weights, exact in f16 or nearly, whose products' error would otherwise
/// be the activations' one f16 rounding. A quantized matrix's own error is far larger. (By
/// arithmetic, the second mma costs these no time: at 2 bytes a weight their products stay
/// bound by the weights' reads. Not measured on a card.) The kernels decide the same by the
/// format's kind; were the two to differ, a kernel would read remainders this pass never wrote
/// (NaN or another pass's), and the F16 and BF16 fast-path tests would fail.
fn tc_split(t: DType) -> bool {
    matches!(t, DType::F16 | DType::BF16)
}

/// Rows per CTA of `tc_matvec_<t>` (`TC_ROWS`), its block (`TC_WARPS` warps) and the column
/// multiple it needs (four pieces of 16).
const TC_CTA_ROWS: usize = 32;
const TC_BLOCK: (u32, u32, u32) = (32, 4, 1);
const TC_COLS: usize = 64;
/// Block sizes the kernels' comments give.
const EMBED_THREADS: u32 = 128;
const RMS_THREADS: u32 = 256;
const ROPE_THREADS: u32 = 128;
const ROW_THREADS: u32 = 256;
const ELEM_THREADS: u32 = 256;
const ATT_THREADS: u32 = 128;
const COMBINE_THREADS: u32 = 128;
const ARGMAX_THREADS: u32 = 1024;
/// Cap on grid-stride grids: enough CTAs to fill any current GPU several times.
const MAX_GRID: usize = 4096;
/// `attention_tc_f16`: query vectors (row, query head) per CTA (`TCA_VECS`), the widest head it
/// takes (`TCA_MAX_HD`), and its block.
const TCA_VECS: usize = 64;
const TCA_MAX_HD: usize = 128;
const TCA_THREADS: u32 = 128;

/// Rows per tile of `attention_tc_f16` for `c`'s heads (a CTA holds [`TCA_VECS`] query vectors, a
/// row's group of query heads each); `None` where the kernel does not take the heads (a width
/// not a multiple of 8 or above [`TCA_MAX_HD`], a group larger than a CTA).
fn tc_tile_rows(c: &Config) -> Option<usize> {
    let group = c.n_heads / c.n_kv_heads;
    (c.head_dim.is_multiple_of(8) && c.head_dim <= TCA_MAX_HD && group <= TCA_VECS)
        .then_some(TCA_VECS / group)
}

/// How many tiles `attention_tc_f16` takes for `rows` where the pass uses it, else 0: at the
/// fast precision, over f16 caches (whose values an mma takes exactly; an f32 cache's would be
/// rounded), where the card and the heads allow it, and where tiles hold two rows or more on
/// average (prompts; a decode step's rows are each a sequence of their own, one row a tile,
/// which the flash-decoding kernels split over more CTAs).
fn tc_attention_tiles(be: &CudaBackend, rows: &[Row], cache: CacheType) -> usize {
    let Some(per) = tc_tile_rows(&be.config) else {
        return 0;
    };
    if be.precision != Precision::Fast
        || cache != CacheType::F16
        || !be.tc_attention
        || be.k.attention_tc.is_none()
    {
        return 0;
    }
    let tiles = attention_tiles(rows, per).count();
    if 2 * tiles <= rows.len() { tiles } else { 0 }
}

/// The tiles of `attention_tc_f16` over a batch: runs of consecutive rows of one sequence, cut
/// every `per` rows, as `(first row, rows)`.
fn attention_tiles(rows: &[Row], per: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut first = 0;
    std::iter::from_fn(move || {
        let seq = rows.get(first)?.seq;
        let len = rows[first..]
            .iter()
            .take(per)
            .take_while(|r| r.seq == seq)
            .count();
        first += len;
        Some((first - len, len))
    })
}

/// The groups of rows `forward_rows` gathers, in its order: for the output projection (the
/// rows that want logits, then those that want their greedy token), and for hidden states.
const LOGIT_GROUPS: [Out; 2] = [Out::Logits, Out::Token];
const HIDDEN_GROUPS: [Out; 1] = [Out::Hidden];

/// Where the inputs of a pass of `b` rows lie in the inputs buffer, in bytes: four pointer
/// arrays `[n_layers, b]` (key and value destination of each row in its cache, and the layer's
/// base of each row's cache, which attention reads), then `[b]` tokens, positions, `n_past`,
/// the indices of the rows that want logits and those of the rows that want hidden states, and
/// `[b, 2]` the tiles of `attention_tc_f16` ([`attention_tiles`]). The layout depends only on `b`,
/// so a graph captured for `b` rows reads the inputs of any later pass of `b` rows.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    b: usize,
    n_layers: usize,
}

impl Layout {
    pub fn new(b: usize, n_layers: usize) -> Layout {
        Layout { b, n_layers }
    }

    fn ptrs(&self) -> usize {
        self.n_layers * self.b * 8
    }
    pub fn k_rows(&self, l: usize) -> usize {
        l * self.b * 8
    }
    pub fn v_rows(&self, l: usize) -> usize {
        self.ptrs() + l * self.b * 8
    }
    pub fn k_cache(&self, l: usize) -> usize {
        2 * self.ptrs() + l * self.b * 8
    }
    pub fn v_cache(&self, l: usize) -> usize {
        3 * self.ptrs() + l * self.b * 8
    }
    pub fn tokens(&self) -> usize {
        4 * self.ptrs()
    }
    pub fn pos(&self) -> usize {
        self.tokens() + 4 * self.b
    }
    pub fn n_past(&self) -> usize {
        self.pos() + 4 * self.b
    }
    pub fn logit_idx(&self) -> usize {
        self.n_past() + 4 * self.b
    }
    pub fn hidden_idx(&self) -> usize {
        self.logit_idx() + 4 * self.b
    }
    pub fn tiles(&self) -> usize {
        self.hidden_idx() + 4 * self.b
    }
    pub fn bytes(&self) -> usize {
        self.tiles() + 8 * self.b
    }

    /// Writes the inputs of `rows` into `staging`; returns how many bytes to upload.
    pub fn stage(
        &self,
        staging: &mut Pinned,
        rows: &[Row],
        caches: &mut [&mut dyn KvCache],
        c: &Config,
    ) -> usize {
        let (b, kvd) = (self.b, c.kv_dim());
        let words: &mut [u64] = staging.as_mut_slice();
        assert!(
            words.len() * 8 >= self.bytes(),
            "staging sized for MAX_BATCH"
        );
        for (t, r) in rows.iter().enumerate() {
            let cache = cuda_cache(&mut *caches[r.seq]);
            assert!(r.pos < cache.n_ctx, "position {} past the cache", r.pos);
            let row = kvd * cache.ty.bytes() as usize;
            for l in 0..self.n_layers {
                // Byte offsets of layer l, and of this row's slot in it: [n_layers, C, kv].
                let layer = (l * cache.n_ctx * row) as u64;
                let slot = layer + (r.pos * row) as u64;
                let (k, v) = (cache.k.ptr(), cache.v.ptr());
                words[self.k_rows(l) / 8 + t] = k + slot;
                words[self.v_rows(l) / 8 + t] = v + slot;
                words[self.k_cache(l) / 8 + t] = k + layer;
                words[self.v_cache(l) / 8 + t] = v + layer;
            }
        }
        let ints: &mut [i32] = staging.as_mut_slice();
        for (t, r) in rows.iter().enumerate() {
            ints[self.tokens() / 4 + t] = r.token as i32;
            ints[self.pos() / 4 + t] = r.pos as i32;
            ints[self.n_past() / 4 + t] = (r.pos + 1) as i32;
        }
        // The rows the pass gathers for the output projection, in the order the forward pass
        // asks for them (`LOGIT_GROUPS`), and those it gathers for hidden states.
        for (section, groups) in [
            (self.logit_idx(), &LOGIT_GROUPS[..]),
            (self.hidden_idx(), &HIDDEN_GROUPS[..]),
        ] {
            let picked = groups
                .iter()
                .flat_map(|&want| (0..rows.len()).filter(move |&t| rows[t].out == want));
            for (k, t) in picked.enumerate() {
                ints[section / 4 + k] = t as i32;
            }
        }
        if let Some(per) = tc_tile_rows(c) {
            for (i, (first, len)) in attention_tiles(rows, per).enumerate() {
                ints[self.tiles() / 4 + 2 * i] = first as i32;
                ints[self.tiles() / 4 + 2 * i + 1] = len as i32;
            }
        }
        debug_assert_eq!(b, rows.len());
        self.bytes()
    }
}

/// The operations of one pass, as launches on the backend's stream. A launch that fails keeps
/// its error for [`CudaOps::finish`] (the `Ops` methods cannot fail) and the rest of the pass is
/// skipped.
pub(crate) struct CudaOps<'a> {
    be: &'a CudaBackend,
    p: &'a mut Pass,
    rows: &'a [Row],
    lay: Layout,
    /// Attention chunking of this pass (fixed for its shape).
    chunk_len: usize,
    max_chunks: usize,
    /// What the pass's caches hold (one type a pass).
    cache: CacheType,
    /// `attention_tc_f16`'s tiles where this pass takes it (the staged ones), else 0.
    tc_tiles: usize,
    /// The host logits, for passes with more logits rows than the device buffer holds (never
    /// while capturing a graph).
    host_logits: Option<&'a mut [f32]>,
    /// Which buffer, pointer and row count `x16` holds in f16, and whether with the remainders
    /// ([`CudaOps::as_f16`]), while still current.
    x16_of: Option<(Buf, u64, usize, bool)>,
    /// A residual product not launched yet ([`Residual`]).
    residual: Option<Residual>,
    /// `(out, x)`: a gather of a one-row pass, where `out` stands for `x` rather than receive
    /// a copy of its row ([`CudaOps::gather_rows`]).
    alias: Option<(Buf, Buf)>,
    err: Option<CudaError>,
}

/// A residual product of one row (`x += W·a` on the `matvec_add_<t>` route: a decode step of one
/// sequence) held back one operation: where the next is the RMSNorm of `x` (the forward pass's
/// next step, `xn = rms(x)`), the two go as one `matvec_add_norm_<t>` launch, the norm done by the
/// product's last CTA rather than by a launch of its own (a decode step of the 1B: 32 launches
/// fewer of 115, the final norm's included); any other launch, and the end of the pass, sends
/// it alone first ([`CudaOps::go3`], [`CudaOps::finish`]). One row only: the norm is then one
/// CTA's tail, where `rmsnorm` takes several rows at once in a launch of its own.
#[derive(Clone, Copy)]
struct Residual {
    add: Func,
    add_norm: Func,
    w: Mat,
    a: u64,
    x: Buf,
}

impl<'a> CudaOps<'a> {
    pub fn new(
        be: &'a CudaBackend,
        p: &'a mut Pass,
        rows: &'a [Row],
        lay: Layout,
        (chunk_len, max_chunks): (usize, usize),
        cache: CacheType,
        host_logits: Option<&'a mut [f32]>,
    ) -> CudaOps<'a> {
        CudaOps {
            tc_tiles: tc_attention_tiles(be, rows, cache),
            be,
            p,
            rows,
            lay,
            chunk_len,
            max_chunks,
            cache,
            host_logits,
            x16_of: None,
            residual: None,
            alias: None,
            err: None,
        }
    }

    pub fn finish(mut self) -> Result<()> {
        self.send_residual();
        self.err.map_or(Ok(()), Err)
    }

    /// The buffer that holds `b`'s rows: `b` itself, or the one it stands for.
    fn resolve(&self, b: Buf) -> Buf {
        match self.alias {
            Some((out, x)) if out == b => x,
            _ => b,
        }
    }

    /// A buffer's device address and row width.
    fn buf(&self, b: Buf) -> (u64, usize) {
        let c = &self.be.config;
        let a = &self.p.act;
        match self.resolve(b) {
            Buf::X => (a.x.ptr(), c.d_model),
            Buf::Xn => (a.xn.ptr(), c.d_model),
            Buf::Q => (a.q.ptr(), c.q_dim()),
            Buf::K => (a.k.ptr(), c.kv_dim()),
            Buf::V => (a.v.ptr(), c.kv_dim()),
            Buf::Att => (a.att.ptr(), c.q_dim()),
            Buf::Proj => (a.proj.ptr(), c.d_model),
            Buf::Gate => (a.gate.ptr(), c.d_ff),
            Buf::Up => (a.up.ptr(), c.d_ff),
            Buf::Logits => (self.p.logits.ptr(), c.n_vocab),
            // Made before any pass with hidden-state rows, the only ones that write it.
            Buf::Hidden => (self.p.hidden.as_ref().map_or(0, DevBuf::ptr), c.d_model),
        }
    }

    /// The cache writes' `int half_cache` argument: 1 where the pass's caches hold f16.
    fn half_cache(&self) -> i32 {
        i32::from(self.cache == CacheType::F16)
    }

    fn input(&self, offset: usize) -> u64 {
        self.p.inputs.ptr() + offset as u64
    }

    /// Launches unless an earlier launch failed.
    ///
    /// # Safety
    /// As [`launch`]: the arguments match `f`'s signature and address buffers large enough for
    /// the grid (the buffers are sized for MAX_BATCH rows and checked shapes at load).
    unsafe fn go(&mut self, f: Func, grid: (u32, u32, u32), block: u32, args: &mut [*mut c_void]) {
        // SAFETY: forwarded to the caller.
        unsafe { self.go3(f, grid, (block, 1, 1), args) }
    }

    /// After the residual product held back, if any (taken out first: sending it comes back
    /// here with none).
    ///
    /// # Safety
    /// As [`CudaOps::go`].
    unsafe fn go3(
        &mut self,
        f: Func,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &mut [*mut c_void],
    ) {
        self.send_residual();
        if self.err.is_none() {
            // SAFETY: forwarded to the caller.
            if let Err(e) = unsafe { launch(f, grid, block, self.be.dev.stream(), args) } {
                self.err = Some(e);
            }
        }
    }

    /// `f(x, y, count)` over the first `n` rows of `x` (written) and `y`: `silu_mul` and `add`,
    /// whose signatures are `(float* x, const float* y, long long n)`.
    fn elementwise(&mut self, f: Func, x: Buf, y: Buf, n: usize) {
        let (xp, w) = self.buf(x);
        let (yp, _) = self.buf(y);
        let count = (n * w) as i64;
        // SAFETY: `f` takes (float*, const float*, long long); both buffers hold n·w floats.
        unsafe {
            self.go(
                f,
                elem_grid(n * w),
                ELEM_THREADS,
                &mut [arg(&xp), arg(&yp), arg(&count)],
            )
        };
        self.wrote(x);
    }

    /// Launches the residual product held back, alone.
    fn send_residual(&mut self) {
        if let Some(r) = self.residual.take() {
            let be = self.be;
            let (y, _) = self.buf(r.x);
            self.matvec_with(r.add, be.mat(r.w), r.a, y, 1);
        }
    }

    /// `r` (taken out of `residual`) as one `matvec_add_norm_<t>` launch, the norm into `out`
    /// with `gain`.
    fn residual_norm(&mut self, r: Residual, out: Buf, gain: Norm) {
        let m = self.be.mat(r.w);
        let (y, _) = self.buf(r.x);
        let (o, d) = self.buf(out);
        debug_assert_eq!(d, m.rows);
        let (w, rows, cols) = (m.ptr, m.rows as i32, m.cols as i32);
        let grid = (self.be.k.mv.ctas(m.rows) as u32, 1, 1);
        let g = self.be.norm(gain);
        // The kernel's `float eps`: the argument's size must be 4 bytes.
        let eps: f32 = self.be.config.norm_eps;
        let counter = self.p.norm_count.ptr();
        // SAFETY: matvec_add_norm_<t>(const unsigned char* w, const float* x, float* y,
        // int rows, int cols, float* out, const float* gain, float eps, int* counter): `w`
        // holds the rows·cols weights, `a` one row of cols floats, `y` and `out` (another
        // buffer) one of rows, `rows` gains, and the pass's counter, at 0 between launches
        // (each leaves it so).
        unsafe {
            self.go3(
                r.add_norm,
                grid,
                self.be.k.mv.block(),
                &mut [
                    arg(&w),
                    arg(&r.a),
                    arg(&y),
                    arg(&rows),
                    arg(&cols),
                    arg(&o),
                    arg(&g),
                    arg(&eps),
                    arg(&counter),
                ],
            )
        };
    }

    /// A buffer was written: its f16 copy, if any, is stale.
    fn wrote(&mut self, b: Buf) {
        if self.x16_of.is_some_and(|(held, ..)| held == b) {
            self.x16_of = None;
        }
    }

    /// `n` rows of `cols` at `x` (part of buffer `buf`) in f16, in `x16`; with `split`, followed
    /// by what each rounding leaves, rounded again (the tensor-core products of float weights,
    /// [`tc_split`]). A copy with the remainders serves where none are wanted.
    fn as_f16(&mut self, buf: Buf, x: u64, n: usize, cols: usize, split: bool) -> u64 {
        let out = self.p.x16.ptr();
        let held = self
            .x16_of
            .filter(|&(b, p, rows, s)| (b, p, rows) == (buf, x, n) && (s || !split));
        if held.is_none() {
            let (count, s) = ((n * cols) as i64, i32::from(split));
            // SAFETY: f32_to_f16(const float* x, unsigned short* out, long long n, int split);
            // `x` holds n·cols floats, `x16` MAX_BATCH · widest halves, at least 2n·cols where
            // `split` (`route` takes it for n ≤ MAX_BATCH / 2 only).
            unsafe {
                self.go(
                    self.be.k.f32_to_f16,
                    elem_grid(n * cols),
                    ELEM_THREADS,
                    &mut [arg(&x), arg(&out), arg(&count), arg(&s)],
                )
            };
            self.x16_of = Some((buf, x, n, split));
        }
        out
    }

    /// Which kernels a product of `n` rows with `m` takes (see [`MATVEC_ROWS_DEFAULT`]).
    fn route(&self, m: &DevMat, n: usize) -> Route {
        let be = self.be;
        let tc = be.k.of(m.dtype).tc_matvec.filter(|_| {
            be.precision == Precision::Fast
                && (be.tc_rows..=be.tc_max_rows).contains(&n)
                && (!tc_split(m.dtype) || 2 * n <= MAX_BATCH)
                && m.cols.is_multiple_of(TC_COLS)
        });
        if let Some((plain, add)) = tc {
            Route::TensorCores { plain, add }
        } else if n <= be.matvec_rows {
            Route::Matvec
        } else {
            Route::Gemm
        }
    }

    /// `y[t, r] = Σ_c w[r, c] · x[t, c]` for `t < n` (`y` rows are `w.rows` apart).
    fn product(&mut self, m: &DevMat, xbuf: Buf, x: u64, y: u64, n: usize) {
        match self.route(m, n) {
            Route::TensorCores { plain, .. } => self.tc_matvec(plain, m, xbuf, x, y, n),
            Route::Matvec => self.matvec(m, x, y, n),
            Route::Gemm => self.gemm(m, xbuf, x, y, n),
        }
    }

    /// `f`, `tc_matvec_<t>` or `tc_matvec_add_<t>` (same arguments), on the f16 copy of `x`,
    /// in one launch.
    fn tc_matvec(&mut self, f: Func, m: &DevMat, xbuf: Buf, x: u64, y: u64, n: usize) {
        let xh = self.as_f16(xbuf, x, n, m.cols, tc_split(m.dtype));
        let (rows, cols, n) = (m.rows as i32, m.cols as i32, n as i32);
        let w = m.ptr;
        let grid = (m.rows.div_ceil(TC_CTA_ROWS) as u32, 1, 1);
        // SAFETY: tc_matvec_<t> / tc_matvec_add_<t>(const unsigned char* w,
        // const unsigned short* xh, float* y, int rows, int cols, int n): `w` holds the
        // rows·cols weights (cols a multiple of 64, checked by `route`), `xh` n·cols halves and
        // `y` n·rows floats.
        unsafe {
            self.go3(
                f,
                grid,
                TC_BLOCK,
                &mut [arg(&w), arg(&xh), arg(&y), arg(&rows), arg(&cols), arg(&n)],
            )
        };
    }

    fn matvec(&mut self, m: &DevMat, x: u64, y: u64, n: usize) {
        self.matvec_with(self.be.k.of(m.dtype).rows(n).matvec, m, x, y, n);
    }

    /// `f`, `matvec_<t>` or `matvec_add_<t>` (same arguments), in one launch.
    fn matvec_with(&mut self, f: Func, m: &DevMat, x: u64, y: u64, n: usize) {
        let (rows, cols, n) = (m.rows as i32, m.cols as i32, n as i32);
        let w = m.ptr;
        let grid = (self.be.k.mv.ctas(m.rows) as u32, 1, 1);
        // SAFETY: matvec_<t> / matvec_add_<t>(const unsigned char* w, const float* x, float* y,
        // int rows, int cols, int n): `w` holds the rows·cols weights, `x` n·cols and `y`
        // n·rows floats.
        unsafe {
            self.go3(
                f,
                grid,
                self.be.k.mv.block(),
                &mut [arg(&w), arg(&x), arg(&y), arg(&rows), arg(&cols), arg(&n)],
            )
        };
    }

    /// `matvec` of two or three matrices of one type and width against the same `x` (`rows[2]`
    /// = 0 for two), in one `matvec3_<t>` launch; with `rope`, the layer whose q, k and v they
    /// are: RoPE and the cache writes in the same launch, as [`Ops::rope_store`] would do them.
    fn matvec_fused(
        &mut self,
        mats: [&DevMat; 3],
        rows: [usize; 3],
        x: u64,
        ys: [u64; 3],
        n: usize,
        rope: Option<usize>,
    ) {
        let f = self.be.k.of(mats[0].dtype).rows(n).matvec3;
        let cols = mats[0].cols;
        let cols32 = cols as i32;
        let rows32 = rows.map(|r| r as i32);
        let ws = mats.map(|m| m.ptr);
        let ctas: usize = rows.iter().map(|&r| self.be.k.mv.ctas(r)).sum();
        let n = n as i32;
        // Null pointers (and no head width) when there is no RoPE: the kernel reads none.
        let (pos, inv_freq, k_rows, v_rows, head_dim) = match rope {
            Some(layer) => (
                self.input(self.lay.pos()),
                self.be.inv_freq,
                self.input(self.lay.k_rows(layer)),
                self.input(self.lay.v_rows(layer)),
                self.be.config.head_dim as i32,
            ),
            None => (0u64, 0u64, 0u64, 0u64, 0i32),
        };
        let half = self.half_cache();
        // SAFETY: matvec3_<t>(const unsigned char* w0, float* y0, int rows0, ..., w2, y2, rows2,
        // const float* x, int cols, int n, const int* pos, const float* inv_freq,
        // void* const* k_rows, void* const* v_rows, int head_dim, int half_cache): each `w_i`
        // holds rows_i·cols weights of the type, `y_i` n·rows_i floats, `x` n·cols floats;
        // with `pos`, n positions, head_dim/2 frequencies and per row a cache slot of rows_1 =
        // rows_2 = n_kv_heads·head_dim elements of the pass's cache type, f16 where
        // `half_cache` (positions checked against n_ctx when staged).
        unsafe {
            self.go3(
                f,
                (ctas as u32, 1, 1),
                self.be.k.mv.block(),
                &mut [
                    arg(&ws[0]),
                    arg(&ys[0]),
                    arg(&rows32[0]),
                    arg(&ws[1]),
                    arg(&ys[1]),
                    arg(&rows32[1]),
                    arg(&ws[2]),
                    arg(&ys[2]),
                    arg(&rows32[2]),
                    arg(&x),
                    arg(&cols32),
                    arg(&n),
                    arg(&pos),
                    arg(&inv_freq),
                    arg(&k_rows),
                    arg(&v_rows),
                    arg(&head_dim),
                    arg(&half),
                ],
            )
        };
    }

    /// Whether `products` of one `x` (2 or 3) can run as one launch of `n` rows: the matvec
    /// route, one type and width, none into the logits (which go a chunk at a time).
    fn fusable(&self, products: &[(Mat, Buf)], n: usize) -> bool {
        let be = self.be;
        let first = be.mat(products[0].0);
        (2..=3).contains(&products.len())
            && matches!(self.route(first, n), Route::Matvec)
            && products.iter().all(|&(w, out)| {
                let m = be.mat(w);
                out != Buf::Logits && m.dtype == first.dtype && m.cols == first.cols
            })
    }

    /// [`CudaOps::matvec_fused`] of `products` (fusable), with RoPE for layer `rope`.
    fn matmuls_fused(&mut self, x: Buf, products: &[(Mat, Buf)], n: usize, rope: Option<usize>) {
        let be = self.be;
        // A third product of two: the first again with no rows (its pointers are never read).
        let pick = |i: usize| products[if i < products.len() { i } else { 0 }];
        let mats = [0, 1, 2].map(|i| be.mat(pick(i).0));
        let rows = [0, 1, 2].map(|i| if i < products.len() { mats[i].rows } else { 0 });
        let ys = [0, 1, 2].map(|i| self.buf(pick(i).1).0);
        let (xp, _) = self.buf(x);
        self.matvec_fused(mats, rows, xp, ys, n, rope);
        for &(_, out) in products {
            self.wrote(out);
        }
    }

    /// Prompt batches on cuBLAS. Exact: f32 weights (expanded where stored otherwise) and
    /// activations, `cublasSgemm` without TF32. Fast: f16 weights and activations with f32
    /// accumulation on tensor cores (`cublasGemmEx`). f32 weights are never rounded to f16.
    fn gemm(&mut self, m: &DevMat, xbuf: Buf, x: u64, y: u64, n: usize) {
        if self.err.is_some() {
            return;
        }
        let exact = self.be.precision == Precision::Exact || m.dtype == DType::F32;
        let xin = if exact {
            x
        } else {
            self.as_f16(xbuf, x, n, m.cols, false)
        };
        let r = if m.dtype == DType::F32 || (!exact && m.dtype == DType::F16) {
            // Already in the GEMM's input type: no expansion.
            // SAFETY: `w` holds rows·cols elements, `xin` n·cols, `y` n·rows floats.
            unsafe {
                self.p
                    .blas
                    .gemm(!exact, m.rows, n, m.cols, m.ptr, xin, y, m.rows)
            }
        } else {
            self.gemm_slabs(m, exact, xin, y, n)
        };
        if let Err(e) = r {
            self.err = Some(e);
        }
    }

    /// Expands `m` a slab of rows at a time into the scratch and multiplies each slab into its
    /// columns of `y` (`ldc` = all rows).
    fn gemm_slabs(&mut self, m: &DevMat, exact: bool, x: u64, y: u64, n: usize) -> Result<()> {
        let esize = if exact { 4 } else { 2 };
        let slab = (self.be.scratch_bytes / (m.cols * esize)).clamp(1, m.rows);
        let wk = self.be.k.of(m.dtype);
        let f = if exact {
            wk.dequant_f32
        } else {
            wk.dequant_f16
        };
        let row_bytes = m.dtype.row_bytes(m.cols).expect("shapes checked at load");
        let scratch = self.p.wscratch.ptr();
        for r0 in (0..m.rows).step_by(slab) {
            let sr = slab.min(m.rows - r0);
            let w = m.ptr + (r0 * row_bytes) as u64;
            let elems = sr * m.cols;
            // Blocks for the quantized types, elements for the float ones (README).
            let count = if m.dtype.is_quantized() {
                elems / m.dtype.block_size()
            } else {
                elems
            } as i64;
            // SAFETY: dequant_<t>_<f16|f32>(const unsigned char* w, T* out, long long count):
            // `w` holds the slab's sr rows, the scratch sr·cols elements (slab sized for it).
            unsafe {
                self.go(
                    f,
                    elem_grid(elems / 16),
                    ELEM_THREADS,
                    &mut [arg(&w), arg(&scratch), arg(&count)],
                )
            };
            if let Some(e) = self.err.take() {
                return Err(e);
            }
            // SAFETY: the scratch holds sr·cols expanded weights, `x` n·cols activations, and
            // `y + r0` the slab's columns of n rows `rows` apart.
            unsafe {
                self.p.blas.gemm(
                    !exact,
                    sr,
                    n,
                    m.cols,
                    scratch,
                    x,
                    y + (r0 * 4) as u64,
                    m.rows,
                )
            }?;
        }
        Ok(())
    }

    /// Copies logits rows `t0..t0 + n` (in the device buffer's first rows) to the host now:
    /// the next chunk reuses the buffer. Only passes with more logits rows than it holds come
    /// here, and those are never captured.
    fn flush_logits(&mut self, t0: usize, n: usize) {
        self.send_residual();
        if self.err.is_some() {
            return;
        }
        let v = self.be.config.n_vocab;
        let r = (|| -> Result<()> {
            let host: &mut [f32] = self.p.logits_host.as_mut_slice();
            // SAFETY: the device buffer holds n·V floats written above; the pinned buffer as
            // many; the stream is synchronized before the host reads them.
            unsafe {
                cudarc::driver::result::memcpy_dtoh_async(
                    &mut host[..n * v],
                    self.p.logits.ptr(),
                    self.be.dev.stream(),
                )
            }
            .map_err(|e| CudaError::at("copying logits", e))?;
            self.be.dev.sync()?;
            let out = self
                .host_logits
                .as_deref_mut()
                .expect("chunked logits only outside captures");
            out[t0 * v..(t0 + n) * v].copy_from_slice(&host[..n * v]);
            Ok(())
        })();
        if let Err(e) = r {
            self.err = Some(e);
        }
    }

    /// `out` from the partials of the pass's chunks (`attention_partial`'s or
    /// `attention_tc_f16`'s).
    fn attention_combine(&mut self, out: Buf) {
        let c = &self.be.config;
        let (op, _) = self.buf(out);
        let np = self.input(self.lay.n_past());
        let (po, pml) = (self.p.att_o.ptr(), self.p.att_ml.ptr());
        let (nh, hd) = (c.n_heads as i32, c.head_dim as i32);
        let (cl, mc) = (self.chunk_len as i32, self.max_chunks as i32);
        // SAFETY: attention_combine(const float* part_o, const float* part_ml,
        // const int* n_past, float* out, int n_heads, int head_dim, int chunk_len,
        // int max_chunks): the partials of the pass's rows and chunks, `out` n rows of
        // n_heads·head_dim floats.
        unsafe {
            self.go(
                self.be.k.attention_combine,
                (c.n_heads as u32, self.rows.len() as u32, 1),
                COMBINE_THREADS,
                &mut [
                    arg(&po),
                    arg(&pml),
                    arg(&np),
                    arg(&op),
                    arg(&nh),
                    arg(&hd),
                    arg(&cl),
                    arg(&mc),
                ],
            )
        };
    }
}

/// The kernels of one product ([`CudaOps::route`]).
enum Route {
    /// `tc_matvec_<t>` (or `tc_matvec_add_<t>`) on f16 activations.
    TensorCores { plain: Func, add: Func },
    /// The f32 `matvec_<t>` kernels.
    Matvec,
    /// Expanded weights and cuBLAS.
    Gemm,
}

/// A grid-stride grid for `n` items.
fn elem_grid(n: usize) -> (u32, u32, u32) {
    (
        n.div_ceil(ELEM_THREADS as usize).clamp(1, MAX_GRID) as u32,
        1,
        1,
    )
}

impl Ops for CudaOps<'_> {
    /// Picks every gathered row's token, not only rows `from..`: a captured step then does not
    /// depend on which of its rows want logits and which a token. Where the logits went to the
    /// host a chunk at a time (more rows than the device buffer holds; never in a graph), the
    /// host picks instead, from the logits it received ([`CudaBackend::run`]).
    fn greedy_tokens(&mut self, from: usize, n: usize) {
        let rows = from + n;
        if rows > self.p.logit_rows {
            return;
        }
        let logits = self.p.logits.ptr();
        let tokens = self.p.tokens.ptr();
        let (v, n32) = (self.be.config.n_vocab as i32, rows as i32);
        // SAFETY: argmax_rows(const float* logits, unsigned int* out, int n_vocab, int n): the
        // device logits hold `rows ≤ logit_rows` rows of V floats, `tokens` MAX_BATCH ≥ rows
        // words.
        unsafe {
            self.go(
                self.be.k.argmax_rows,
                (rows as u32, 1, 1),
                ARGMAX_THREADS,
                &mut [arg(&logits), arg(&tokens), arg(&v), arg(&n32)],
            )
        };
    }

    fn embed(&mut self, out: Buf) {
        let m = &self.be.token_embd;
        let f = self.be.k.of(m.dtype).embed;
        let (o, _) = self.buf(out);
        let w = m.ptr;
        let tokens = self.input(self.lay.tokens());
        let (cols, n) = (m.cols as i32, self.rows.len() as i32);
        let grid = (
            (m.cols / 16).div_ceil(EMBED_THREADS as usize) as u32,
            n as u32,
            1,
        );
        // SAFETY: embed_<t>(const unsigned char* w, const unsigned int* tokens, float* out,
        // int cols, int n): tokens (< n_vocab, checked by the model) are in the inputs, `out`
        // holds n rows of d_model = cols.
        unsafe {
            self.go(
                f,
                grid,
                EMBED_THREADS,
                &mut [arg(&w), arg(&tokens), arg(&o), arg(&cols), arg(&n)],
            )
        };
        self.wrote(out);
    }

    /// Joined to the residual product before it where that one is held back
    /// ([`Residual`]); else a launch of a CTA a row.
    fn rmsnorm(&mut self, out: Buf, x: Buf, gain: Norm, n: usize) {
        let x = self.resolve(x);
        if let Some(r) = self.residual.take_if(|r| r.x == x && n == 1 && out != x) {
            self.residual_norm(r, out, gain);
            self.wrote(out);
            return;
        }
        let (o, d) = self.buf(out);
        let (xp, _) = self.buf(x);
        let g = self.be.norm(gain);
        let (d, n32) = (d as i32, n as i32);
        // The kernel's `float eps`: the argument's size must be 4 bytes.
        let eps: f32 = self.be.config.norm_eps;
        // SAFETY: rmsnorm(float* out, const float* x, const float* gain, int d, float eps,
        // int n): n rows of d floats in `out` and `x`, d gains.
        unsafe {
            self.go(
                self.be.k.rmsnorm,
                (n as u32, 1, 1),
                RMS_THREADS,
                &mut [arg(&o), arg(&xp), arg(&g), arg(&d), arg(&eps), arg(&n32)],
            )
        };
        self.wrote(out);
    }

    /// The products of one input (q, k, v; gate, up): in decode-sized passes, one fused launch
    /// where the matrices share their type and width (a Q4_K_M file's Q6_K
    /// `attn_v` beside Q4_K `attn_q` does not), each product as `matmul` would give it; else
    /// one `matmul` each.
    fn matmuls(&mut self, x: Buf, products: &[(Mat, Buf)], n: usize) {
        if !self.fusable(products, n) {
            for &(w, out) in products {
                self.matmul(w, x, out, n);
            }
            return;
        }
        self.matmuls_fused(x, products, n, None);
    }

    /// Where the products fuse ([`CudaOps::fusable`]), one `matvec3_<t>` launch that also
    /// rotates q and k and writes k and v into the cache. Where only q and k fuse (a Q4_K_M
    /// file's Q6_K `attn_v` beside Q4_K `attn_q`), two: q and k with RoPE and k's cache
    /// writes, then v with its cache writes (`matvec3_<t>` of v's type given v alone, as its
    /// third matrix). Else the products, then `rope_store`.
    fn qkv_rope_store(&mut self, layer: usize, x: Buf, q: Buf, k: Buf, v: Buf, n: usize) {
        let products = [(Mat::Q(layer), q), (Mat::K(layer), k), (Mat::V(layer), v)];
        let wv = self.be.mat(Mat::V(layer));
        if self.be.fuse && self.fusable(&products, n) {
            self.matmuls_fused(x, &products, n, Some(layer));
        } else if self.be.fuse
            && self.fusable(&products[..2], n)
            && matches!(self.route(wv, n), Route::Matvec)
        {
            self.matmuls_fused(x, &products[..2], n, Some(layer));
            let (xp, _) = self.buf(x);
            let (vp, _) = self.buf(v);
            self.matvec_fused([wv; 3], [0, 0, wv.rows], xp, [vp; 3], n, Some(layer));
            self.wrote(v);
        } else {
            self.matmuls(x, &products, n);
            self.rope_store(layer, q, k, v);
        }
    }

    /// Where the two products fuse ([`CudaOps::fusable`]), one `matvec_swiglu_<t>` launch;
    /// else the products, then `silu_mul`.
    fn swiglu(&mut self, layer: usize, x: Buf, gate: Buf, up: Buf, n: usize) {
        let products = [(Mat::Gate(layer), gate), (Mat::Up(layer), up)];
        if !(self.be.fuse && self.fusable(&products, n)) {
            self.matmuls(x, &products, n);
            self.silu_mul(gate, up, n);
            return;
        }
        let (wg, wu) = (self.be.mat(products[0].0), self.be.mat(products[1].0));
        let f = self.be.k.of(wg.dtype).rows(n).matvec_swiglu;
        let (xp, _) = self.buf(x);
        let (h, _) = self.buf(gate);
        let (hu, _) = self.buf(up);
        let (g, u) = (wg.ptr, wu.ptr);
        let (rows, cols, n32) = (wg.rows as i32, wg.cols as i32, n as i32);
        let grid = (self.be.k.mv.ctas(wg.rows) as u32, 1, 1);
        // SAFETY: matvec_swiglu_<t>(const unsigned char* w_gate, const unsigned char* w_up,
        // const float* x, float* h, float* u, int rows, int cols, int n): both matrices hold
        // rows·cols weights of the type (both [d_ff, d_model], checked at load; the type by
        // `fusable`), `x` n·cols floats, `h` and `u` n·rows.
        unsafe {
            self.go3(
                f,
                grid,
                self.be.k.mv.block(),
                &mut [
                    arg(&g),
                    arg(&u),
                    arg(&xp),
                    arg(&h),
                    arg(&hu),
                    arg(&rows),
                    arg(&cols),
                    arg(&n32),
                ],
            )
        };
        self.wrote(gate);
        self.wrote(up);
    }

    /// One `tc_matvec_add_<t>` or `matvec_add_<t>` launch (the product added to `x` as `add`
    /// would add it) where the product takes those kernels ([`CudaOps::route`]); the GEMM and
    /// `add` otherwise.
    fn matmul_add(&mut self, w: Mat, a: Buf, x: Buf, scratch: Buf, n: usize) {
        let m = self.be.mat(w);
        let (ap, _) = self.buf(a);
        let (xp, _) = self.buf(x);
        match self.route(m, n) {
            Route::TensorCores { add, .. } => self.tc_matvec(add, m, a, ap, xp, n),
            Route::Matvec if self.be.fuse && n == 1 => {
                let k = self.be.k.of(m.dtype).rows(1);
                self.send_residual();
                self.residual = Some(Residual {
                    add: k.matvec_add,
                    add_norm: k.matvec_add_norm,
                    w,
                    a: ap,
                    x,
                });
            }
            Route::Matvec => {
                self.matvec_with(self.be.k.of(m.dtype).rows(n).matvec_add, m, ap, xp, n)
            }
            Route::Gemm => {
                self.matmul(w, a, scratch, n);
                self.add(x, scratch, n);
                return;
            }
        }
        self.wrote(x);
    }

    fn matmul(&mut self, w: Mat, x: Buf, out: Buf, n: usize) {
        let be = self.be;
        let m = be.mat(w);
        let (xp, _) = self.buf(x);
        let (op, _) = self.buf(out);
        if out == Buf::Logits {
            // The logits buffer holds `logit_rows` rows: larger requests go a chunk at a time.
            let l = self.p.logit_rows;
            for t0 in (0..n).step_by(l) {
                let cn = l.min(n - t0);
                self.product(m, x, xp + (t0 * m.cols * 4) as u64, op, cn);
                if t0 + cn < n {
                    self.flush_logits(t0, cn);
                }
            }
        } else {
            self.product(m, x, xp, op, n);
        }
        self.wrote(out);
    }

    /// One `rope_store` launch: both rotations and the cache writes.
    fn rope_store(&mut self, layer: usize, q: Buf, k: Buf, v: Buf) {
        let c = &self.be.config;
        let (qp, _) = self.buf(q);
        let (kp, _) = self.buf(k);
        let (vp, _) = self.buf(v);
        let pos = self.input(self.lay.pos());
        let f = self.be.inv_freq;
        let kr = self.input(self.lay.k_rows(layer));
        let vr = self.input(self.lay.v_rows(layer));
        let n = self.rows.len();
        let (n32, h32, kvh32, hd32) = (
            n as i32,
            c.n_heads as i32,
            c.n_kv_heads as i32,
            c.head_dim as i32,
        );
        let half = self.half_cache();
        let grid = (
            ((c.n_heads + c.n_kv_heads) * c.head_dim / 2).div_ceil(ROPE_THREADS as usize) as u32,
            n as u32,
            1,
        );
        // SAFETY: rope_store(float* q, float* k, const float* v, const int* pos,
        // const float* inv_freq, void* const* k_rows, void* const* v_rows, int n,
        // int n_heads, int n_kv_heads, int head_dim, int half_cache): n rows of q
        // (n_heads·head_dim floats), of k and v (n_kv_heads·head_dim), n positions, head_dim/2
        // frequencies, and per row a cache slot of n_kv_heads·head_dim elements of the pass's
        // cache type, f16 where `half_cache` (positions checked against n_ctx when staged).
        unsafe {
            self.go(
                self.be.k.rope_store,
                grid,
                ROPE_THREADS,
                &mut [
                    arg(&qp),
                    arg(&kp),
                    arg(&vp),
                    arg(&pos),
                    arg(&f),
                    arg(&kr),
                    arg(&vr),
                    arg(&n32),
                    arg(&h32),
                    arg(&kvh32),
                    arg(&hd32),
                    arg(&half),
                ],
            )
        };
        self.wrote(q);
        self.wrote(k);
    }

    /// Prompt passes at the fast precision over f16 caches ([`tc_attention_tiles`]):
    /// `attention_tc_f16`, a CTA per tile of one sequence's rows, kv head and chunk of the
    /// pass's positions. Other passes up to [`GRAPH_MAX_BATCH`] rows (decode steps): one
    /// `attention` launch, whose last CTA of each row and kv head combines the chunks. Larger
    /// ones, or with `CAMELID_CUDA_FUSE=0`: `attention_partial` (fewer registers, for the many
    /// CTAs of a prompt). `attention_partial`, and `attention_tc_f16` over more than one chunk,
    /// leave partials that `attention_combine` then merges.
    fn attention(&mut self, layer: usize, q: Buf, out: Buf) {
        let c = &self.be.config;
        let (qp, _) = self.buf(q);
        let (op, _) = self.buf(out);
        let kc = self.input(self.lay.k_cache(layer));
        let vc = self.input(self.lay.v_cache(layer));
        let np = self.input(self.lay.n_past());
        let (po, pml) = (self.p.att_o.ptr(), self.p.att_ml.ptr());
        let n = self.rows.len();
        let (nh, nkv, hd) = (c.n_heads as i32, c.n_kv_heads as i32, c.head_dim as i32);
        // As the CPU forms it.
        let scale = 1.0 / (c.head_dim as f32).sqrt();
        let (cl, mc) = (self.chunk_len as i32, self.max_chunks as i32);
        let tc = self.tc_tiles > 0;
        let one = !tc && self.be.fuse && n <= GRAPH_MAX_BATCH;
        // `attention`'s counters, or `attention_tc_f16`'s tiles.
        let extra = if tc {
            self.input(self.lay.tiles())
        } else {
            self.p.att_count.ptr()
        };
        // attention_partial's arguments, then the two that `attention` (counters, out) and
        // `attention_tc_f16` (tiles, out) add.
        let mut args = [
            arg(&qp),
            arg(&kc),
            arg(&vc),
            arg(&np),
            arg(&po),
            arg(&pml),
            arg(&nh),
            arg(&nkv),
            arg(&hd),
            arg(&scale),
            arg(&cl),
            arg(&mc),
            arg(&extra),
            arg(&op),
        ];
        let by = Kernels::by_cache(self.cache);
        let (f, grid, block, n_args) = if tc {
            let f = self
                .be
                .k
                .attention_tc
                .expect("checked by tc_attention_tiles");
            let grid = (self.tc_tiles as u32, nkv as u32, mc as u32);
            (f, grid, TCA_THREADS, 14)
        } else {
            let grid = (mc as u32, nkv as u32, n as u32);
            if one {
                (self.be.k.attention[by], grid, ATT_THREADS, 14)
            } else {
                (self.be.k.attention_partial[by], grid, ATT_THREADS, 12)
            }
        };
        // SAFETY: attention_partial(const float* q, const E* const* k_cache,
        // const E* const* v_cache, const int* n_past, float* part_o, float* part_ml,
        // int n_heads, int n_kv_heads, int head_dim, float scale, int chunk_len,
        // int max_chunks), E the element of the pass's caches (float, or f16 bits for the
        // `_f16` forms): per row a layer of its cache (n_ctx ≥ n_past positions), and
        // scratch for n · n_heads · max_chunks partials (n · max_chunks ≤ ATT_PARTS).
        // attention(the same, int* counters, float* out): also n · n_kv_heads counters at zero
        // (n ≤ MAX_BATCH, and each launch leaves them so) and `out` n rows of
        // n_heads·head_dim floats. attention_tc_f16(the same, const int* tiles, float* out),
        // E = f16 (the pass's caches, checked by tc_attention_tiles): the staged tiles
        // (`tc_tiles` pairs of rows of one sequence, at most tc_tile_rows each; the heads
        // checked by it), chunk_len a multiple of ATT_TILE (so of the kernel's 64 positions).
        unsafe { self.go(f, grid, block, &mut args[..n_args]) };
        if !one && (!tc || mc > 1) {
            self.attention_combine(out);
        }
        self.wrote(out);
    }

    fn silu_mul(&mut self, gate: Buf, up: Buf, n: usize) {
        self.elementwise(self.be.k.silu_mul, gate, up, n);
    }

    fn add(&mut self, x: Buf, y: Buf, n: usize) {
        self.elementwise(self.be.k.add, x, y, n);
    }

    fn gather_rows(&mut self, wants: &[Out], out: Buf, x: Buf) -> usize {
        // The staged indices hold these two groupings (`Layout::stage`).
        let section = if wants == LOGIT_GROUPS {
            self.lay.logit_idx()
        } else if wants == HIDDEN_GROUPS {
            self.lay.hidden_idx()
        } else {
            unreachable!("forward_rows gathers {LOGIT_GROUPS:?} and {HIDDEN_GROUPS:?} only")
        };
        let r = self.rows.iter().filter(|r| wants.contains(&r.out)).count();
        if r == 0 {
            return 0;
        }
        // One row gathered from a pass of one: `out` would be a copy of `x`, which the pass
        // does not write again, so it reads `x` instead. A decode step of one sequence saves
        // the launch, and its final norm joins the last residual product ([`Residual`]).
        if self.rows.len() == 1 {
            self.alias = Some((out, x));
            return r;
        }
        let (o, d) = self.buf(out);
        let (xp, _) = self.buf(x);
        let idx = self.input(section);
        let (d32, r32) = (d as i32, r as i32);
        // SAFETY: gather_rows(float* out, const float* x, const int* idx, int d, int n): r
        // indices below the batch's row count, r rows of d floats in `out`.
        unsafe {
            self.go(
                self.be.k.gather_rows,
                (r as u32, 1, 1),
                ROW_THREADS,
                &mut [arg(&o), arg(&xp), arg(&idx), arg(&d32), arg(&r32)],
            )
        };
        self.wrote(out);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inputs' sections do not overlap, stay 8-byte aligned for the pointer arrays, and a
    /// full batch's layout is the largest (the buffers are sized by it).
    #[test]
    fn input_sections_are_disjoint_and_aligned() {
        for (b, layers) in [(1, 1), (3, 2), (64, 16), (MAX_BATCH_FOR_TEST, 80)] {
            let l = Layout::new(b, layers);
            let mut sections: Vec<(usize, usize)> = Vec::new();
            for layer in 0..layers {
                for start in [
                    l.k_rows(layer),
                    l.v_rows(layer),
                    l.k_cache(layer),
                    l.v_cache(layer),
                ] {
                    assert_eq!(start % 8, 0);
                    sections.push((start, start + 8 * b));
                }
            }
            for start in [
                l.tokens(),
                l.pos(),
                l.n_past(),
                l.logit_idx(),
                l.hidden_idx(),
            ] {
                assert_eq!(start % 4, 0);
                sections.push((start, start + 4 * b));
            }
            sections.push((l.tiles(), l.tiles() + 8 * b));
            sections.sort();
            assert_eq!(sections[0].0, 0);
            for w in sections.windows(2) {
                assert_eq!(
                    w[0].1, w[1].0,
                    "b {b}: sections touch, without gaps or overlaps"
                );
            }
            assert_eq!(sections.last().unwrap().1, l.bytes());
            assert!(l.bytes() <= Layout::new(MAX_BATCH_FOR_TEST, layers).bytes());
        }
    }

    const MAX_BATCH_FOR_TEST: usize = camelid_model::llama::MAX_BATCH;

    /// Tiles are runs of one sequence's consecutive rows, cut every `per` rows: a sequence
    /// that comes back later in the batch starts a tile of its own.
    #[test]
    fn attention_tiles_are_runs_of_one_sequence() {
        let rows: Vec<Row> = [0, 0, 0, 0, 0, 1, 1, 0, 2]
            .iter()
            .enumerate()
            .map(|(pos, &seq)| Row {
                seq,
                pos,
                token: 1,
                out: Out::None,
            })
            .collect();
        let tiles: Vec<_> = attention_tiles(&rows, 2).collect();
        assert_eq!(tiles, [(0, 2), (2, 2), (4, 1), (5, 2), (7, 1), (8, 1)]);
        let tiles: Vec<_> = attention_tiles(&rows, 64).collect();
        assert_eq!(tiles, [(0, 5), (5, 2), (7, 1), (8, 1)]);
        assert_eq!(attention_tiles(&[], 4).count(), 0);
    }

    /// Llama 3.2 1B (32 heads, 8 kv heads of 64): tiles of 16 rows; 3B (24 / 8 of 128): 21;
    /// heads wider than 128 take the other kernels.
    #[test]
    fn tile_rows_follow_the_query_groups() {
        let mut c = camelid_model::config::find_preset("llama3.2-1b")
            .unwrap()
            .config;
        assert_eq!(tc_tile_rows(&c), Some(16));
        (c.n_heads, c.n_kv_heads, c.head_dim) = (24, 8, 128);
        assert_eq!(tc_tile_rows(&c), Some(21));
        c.head_dim = 256;
        assert_eq!(tc_tile_rows(&c), None);
    }
}
