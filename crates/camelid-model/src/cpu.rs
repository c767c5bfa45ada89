//! The CPU backend: the weights where the loader left them (usually a memory map), KV caches
//! (f32, or f16 with `CacheType::F16`) and f32 activations in host memory, and the kernels of
//! `camelid-kernels`.

use std::sync::Mutex;

use camelid_kernels::ops::{AttnShape, KvElem, rmsnorm, rope, silu_mul};
use camelid_kernels::{Kernels, Kv, Precision, WeightView};
use half::f16;

use crate::backend::{
    Backend, Buf, CacheType, DeviceInfo, KvCache, Mat, Norm, Ops, Out, Row, downcast_cache,
    downcast_cache_ref, greedy_token,
};
use crate::config::Config;
use crate::error::ModelError;
use crate::llama::forward_rows;
use crate::weights::{Tensor, Weights};

pub struct CpuBackend {
    config: Config,
    weights: Weights,
    /// `[head_dim / 2]`
    inv_freq: Vec<f32>,
    threads: usize,
    /// Kernel table, precision of quantized products, and the compute thread pool.
    kernels: Kernels,
    cache_type: CacheType,
    /// The batch buffers, reused from pass to pass; passes from several threads take turns.
    act: Mutex<Activations>,
}

/// `[n_layers, n_kv_heads, C, head_dim]` keys and values of one sequence: each kv head's
/// positions side by side, so that attention reads a head's keys and values as two streams
/// (with positions side by side, a head's 64 or 128 floats a position lay a whole row of all
/// heads apart, and a decode step deep in the context went at a third of the memory's speed).
///
/// f32 or f16, as [`CacheType`] says.
pub struct CpuCache {
    n_ctx: usize,
    kv: KvData,
}

enum KvData {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

impl CpuCache {
    /// Layer `layer`'s keys and values.
    fn layer(&self, layer: usize, kvd: usize) -> Kv<'_> {
        let r = layer * self.n_ctx * kvd..(layer + 1) * self.n_ctx * kvd;
        match &self.kv {
            KvData::F32 { k, v } => Kv::F32(&k[r.clone()], &v[r]),
            KvData::F16 { k, v } => Kv::F16(&k[r.clone()], &v[r]),
        }
    }

    /// Writes one row's keys and values `ks, vs: [kv]` at position `pos` of layer `layer`: each
    /// kv head's `hd` floats to its own run of positions, rounded to the cache's type.
    fn store(&mut self, layer: usize, pos: usize, hd: usize, ks: &[f32], vs: &[f32]) {
        fn put<E: KvElem>(k: &mut [E], v: &mut [E], at: usize, ks: &[f32], vs: &[f32]) {
            E::store(ks, &mut k[at..][..ks.len()]);
            E::store(vs, &mut v[at..][..vs.len()]);
        }
        let n_kv = ks.len() / hd;
        for g in 0..n_kv {
            let at = ((layer * n_kv + g) * self.n_ctx + pos) * hd;
            let (kg, vg) = (&ks[g * hd..][..hd], &vs[g * hd..][..hd]);
            match &mut self.kv {
                KvData::F32 { k, v } => put(k, v, at, kg, vg),
                KvData::F16 { k, v } => put(k, v, at, kg, vg),
            }
        }
    }
}

/// Copies the first `len` positions of every layer's kv heads (`runs` runs of `hd` per
/// position, each `src_ctx` or `dst_ctx` positions long).
fn copy_runs<E: Copy>(
    src: &[E],
    dst: &mut [E],
    runs: usize,
    src_ctx: usize,
    dst_ctx: usize,
    len: usize,
    hd: usize,
) {
    for r in 0..runs {
        dst[r * dst_ctx * hd..][..len * hd].copy_from_slice(&src[r * src_ctx * hd..][..len * hd]);
    }
}

impl KvCache for CpuCache {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
}

/// The buffers of one batch of rows; shapes as on [`Buf`].
#[derive(Default)]
struct Activations {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl CpuBackend {
    /// The backend on all cores, on the kernel path [`camelid_kernels::Isa::active`] picks, at
    /// the fast precision, with its matrices laid out for it ([`CpuBackend::lay_out`]).
    pub fn new(config: Config, weights: Weights, inv_freq: Vec<f32>) -> CpuBackend {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut be = CpuBackend {
            config,
            weights,
            inv_freq,
            threads,
            kernels: Kernels::new(threads),
            cache_type: CacheType::F32,
            act: Mutex::new(Activations::default()),
        };
        be.lay_out();
        be
    }

    /// Copies the matrices into memory of their own on huge pages ([`Tensor::lay_out`]), in
    /// place of the mapped (or heap) bytes: at the fast precision, those this path multiplies faster
    /// with their rows interleaved ([`Kernels::interleaves`]: Q4_0, Q4_1, Q8_0, Q4_K, Q5_K,
    /// Q6_K, IQ4_NL and IQ4_XS on AVX-512; Q4_0, Q4_1, Q4_K and Q6_K on AVX2) rearranged so;
    /// at the exact precision, which dequantizes row by row, and for the other types, in the
    /// file's layout. The token embedding only where it is also the output matrix (tied),
    /// since a lookup reads one row and gains nothing. Nothing is copied where the copies would
    /// not fit in the memory the system has available.
    fn lay_out(&mut self) {
        let fast = self.kernels.precision == Precision::Fast;
        let w = &mut self.weights;
        let layers = w.layers.iter_mut().flat_map(|l| {
            [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.w_gate,
                &mut l.w_up,
                &mut l.w_down,
            ]
        });
        let output = match &mut w.output {
            Some(t) => t,
            None => &mut w.token_embd,
        };
        // The copies are spread over the backend's threads, largest first (a tied 128K-token
        // output matrix is a fifth of a 1B model).
        let mut all: Vec<&mut Tensor> = layers.chain([output]).collect();
        // A model larger than the memory the system has free stays in its map, where the kernel
        // can page it in from the file as it is read (slowly), rather than copies that cannot
        // be paged out getting the process killed.
        let to_copy: usize = all
            .iter()
            .filter(|t| t.is_mapped())
            .map(|t| t.bytes().len())
            .sum();
        if !camelid_kernels::hugebuf::fits_in_memory(to_copy) {
            return;
        }
        all.sort_by_key(|t| std::cmp::Reverse(t.bytes().len()));
        let n = self.threads.clamp(1, all.len().max(1));
        let mut parts: Vec<Vec<&mut Tensor>> = (0..n).map(|_| Vec::new()).collect();
        for (i, t) in all.into_iter().enumerate() {
            parts[i % n].push(t);
        }
        let kernels = &self.kernels;
        std::thread::scope(|scope| {
            for part in parts {
                scope.spawn(move || {
                    for t in part {
                        t.lay_out(fast && kernels.interleaves(t.dtype));
                    }
                });
            }
        });
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            device: "cpu".into(),
            name: self.kernels.isa().to_string(),
            weight_bytes: self
                .weights
                .matrices()
                .map(|t| t.bytes().len() as u64)
                .sum(),
            memory_used: None,
            memory_in_use: None,
        }
    }

    fn precision(&self) -> Precision {
        self.kernels.precision
    }

    fn cache_type(&self) -> CacheType {
        self.cache_type
    }

    fn set_cache_type(&mut self, t: CacheType) -> Result<(), ModelError> {
        self.cache_type = t;
        Ok(())
    }

    fn set_precision(&mut self, precision: Precision) {
        if precision != self.kernels.precision {
            self.kernels.precision = precision;
            self.lay_out();
        }
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn set_threads(&mut self, threads: usize) {
        // The pool grows on the first product that asks for more threads than it has.
        self.threads = threads.max(1);
    }

    fn new_cache(&self, n_ctx: usize) -> Result<Box<dyn KvCache>, ModelError> {
        let c = &self.config;
        let len = c.n_layers * n_ctx * c.kv_dim();
        let kv = match self.cache_type {
            CacheType::F16 => KvData::F16 {
                k: vec![f16::ZERO; len],
                v: vec![f16::ZERO; len],
            },
            CacheType::F32 => KvData::F32 {
                k: vec![0.0; len],
                v: vec![0.0; len],
            },
        };
        Ok(Box::new(CpuCache { n_ctx, kv }))
    }

    fn forward(
        &self,
        rows: &[Row],
        caches: &mut [&mut dyn KvCache],
        logits: &mut [f32],
        tokens: &mut [u32],
        hidden: &mut [f32],
    ) -> Result<(), ModelError> {
        let mut act = self.act.lock().unwrap_or_else(|e| e.into_inner());
        let c = &self.config;
        let b = rows.len();
        let a = &mut *act;
        for (buf, width) in [
            (&mut a.x, c.d_model),
            (&mut a.xn, c.d_model),
            (&mut a.q, c.q_dim()),
            (&mut a.k, c.kv_dim()),
            (&mut a.v, c.kv_dim()),
            (&mut a.att, c.q_dim()),
            (&mut a.proj, c.d_model),
            (&mut a.gate, c.d_ff),
            (&mut a.up, c.d_ff),
        ] {
            if buf.len() < b * width {
                buf.resize(b * width, 0.0);
            }
        }
        let mut ops = CpuOps {
            be: self,
            a,
            rows,
            caches,
            logits,
            tokens,
            hidden,
            narrowed: false,
        };
        forward_rows(c, &mut ops, rows);
        Ok(())
    }

    fn copy_cache(
        &self,
        src: &dyn KvCache,
        dst: &mut dyn KvCache,
        len: usize,
    ) -> Result<(), ModelError> {
        let kvd = self.config.kv_dim();
        let src: &CpuCache = downcast_cache_ref(src);
        let dst: &mut CpuCache = downcast_cache(dst);
        assert!(
            len <= src.n_ctx && len <= dst.n_ctx,
            "{len} positions do not fit"
        );
        // Layer l's kv head g starts at (l · n_kv + g) · C · hd, C being each cache's own
        // length.
        let hd = self.config.head_dim;
        let runs = self.config.n_layers * (kvd / hd);
        let (sc, dc) = (src.n_ctx, dst.n_ctx);
        match (&src.kv, &mut dst.kv) {
            (KvData::F32 { k, v }, KvData::F32 { k: dk, v: dv }) => {
                copy_runs(k, dk, runs, sc, dc, len, hd);
                copy_runs(v, dv, runs, sc, dc, len, hd);
            }
            (KvData::F16 { k, v }, KvData::F16 { k: dk, v: dv }) => {
                copy_runs(k, dk, runs, sc, dc, len, hd);
                copy_runs(v, dv, runs, sc, dc, len, hd);
            }
            _ => {
                return Err(ModelError::Backend(
                    "cannot copy between an f16 and an f32 KV cache".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The greedy token of each `[v]` row of `logits` into `tokens`, spread over up to `threads`
/// threads when each gets at least `per_thread` logits (a step of many greedy streams on a
/// large vocabulary; below that, starting a thread costs more than it saves).
fn greedy_rows(tokens: &mut [u32], logits: &[f32], v: usize, threads: usize, per_thread: usize) {
    let pick = |tokens: &mut [u32], logits: &[f32]| {
        for (t, row) in tokens.iter_mut().zip(logits.chunks_exact(v)) {
            *t = greedy_token(row);
        }
    };
    let threads = threads.min(tokens.len() * v / per_thread.max(1)).max(1);
    if threads == 1 {
        return pick(tokens, logits);
    }
    let per = tokens.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (t, l) in tokens.chunks_mut(per).zip(logits.chunks(per * v)) {
            s.spawn(move || pick(t, l));
        }
    });
}

/// The CPU backend's operations on one batch.
struct CpuOps<'a, 'c> {
    be: &'a CpuBackend,
    a: &'a mut Activations,
    rows: &'a [Row],
    /// Downcast where used (a type-id comparison), so a pass allocates nothing.
    caches: &'a mut [&'c mut dyn KvCache],
    logits: &'a mut [f32],
    tokens: &'a mut [u32],
    hidden: &'a mut [f32],
    /// Set by `keep_output_rows`: the buffers' rows are those of `rows` that give something
    /// back.
    narrowed: bool,
}

impl CpuOps<'_, '_> {
    /// RoPE on every row of `x`, at its position.
    fn rope(&mut self, x: Buf) {
        let be = self.be;
        let rows = self.rows;
        let (x, w) = self.buf(x);
        for (t, r) in rows.iter().enumerate() {
            rope(
                &mut x[t * w..][..w],
                be.config.head_dim,
                r.pos,
                &be.inv_freq,
            );
        }
    }

    /// Row `t`'s `k` and `v` into its sequence's cache, layer `layer`, at its position.
    fn store_kv(&mut self, layer: usize, k: Buf, v: Buf) {
        let kvd = self.be.config.kv_dim();
        let a = &*self.a;
        let (ks, vs) = match (k, v) {
            (Buf::K, Buf::V) => (&a.k, &a.v),
            _ => unreachable!("keys and values live in Buf::K and Buf::V"),
        };
        let hd = self.be.config.head_dim;
        for (t, r) in self.rows.iter().enumerate() {
            let s: &mut CpuCache = downcast_cache(&mut *self.caches[r.seq]);
            s.store(
                layer,
                r.pos,
                hd,
                &ks[t * kvd..][..kvd],
                &vs[t * kvd..][..kvd],
            );
        }
    }

    /// A buffer and the width of its rows.
    fn buf(&mut self, b: Buf) -> (&mut [f32], usize) {
        let c = &self.be.config;
        let a = &mut *self.a;
        match b {
            Buf::X => (&mut a.x, c.d_model),
            Buf::Xn => (&mut a.xn, c.d_model),
            Buf::Q => (&mut a.q, c.q_dim()),
            Buf::K => (&mut a.k, c.kv_dim()),
            Buf::V => (&mut a.v, c.kv_dim()),
            Buf::Att => (&mut a.att, c.q_dim()),
            Buf::Proj => (&mut a.proj, c.d_model),
            Buf::Gate => (&mut a.gate, c.d_ff),
            Buf::Up => (&mut a.up, c.d_ff),
            Buf::Logits => (&mut *self.logits, c.n_vocab),
            Buf::Hidden => (&mut *self.hidden, c.d_model),
        }
    }

    /// Two distinct buffers, the first mutable.
    fn pair(&mut self, x: Buf, y: Buf) -> (&mut [f32], &[f32], usize) {
        assert_ne!(x, y, "an operation on one buffer twice");
        let (xp, w) = {
            let (s, w) = self.buf(x);
            (s as *mut [f32], w)
        };
        let (ys, _) = self.buf(y);
        // SAFETY: `x` and `y` name different buffers (checked above), and every `Buf` is a
        // separate allocation, so the two slices do not overlap.
        (unsafe { &mut *xp }, ys, w)
    }
}

impl CpuBackend {
    fn weight(&self, m: Mat) -> WeightView<'_> {
        let w = &self.weights;
        match m {
            Mat::Q(l) => w.layers[l].wq.view(),
            Mat::K(l) => w.layers[l].wk.view(),
            Mat::V(l) => w.layers[l].wv.view(),
            Mat::O(l) => w.layers[l].wo.view(),
            Mat::Gate(l) => w.layers[l].w_gate.view(),
            Mat::Up(l) => w.layers[l].w_up.view(),
            Mat::Down(l) => w.layers[l].w_down.view(),
            Mat::Output => w.output().view(),
        }
    }
}

impl Ops for CpuOps<'_, '_> {
    fn embed(&mut self, out: Buf) {
        let be = self.be;
        let rows = self.rows;
        let (x, d) = self.buf(out);
        for (t, r) in rows.iter().enumerate() {
            be.weights
                .token_embd
                .view()
                .dequantize_row_into(r.token as usize, &mut x[t * d..][..d]);
        }
    }

    fn rmsnorm(&mut self, out: Buf, x: Buf, gain: Norm, n: usize) {
        let be = self.be;
        let (gain, eps) = match gain {
            Norm::Attn(l) => (&be.weights.layers[l].attn_norm, be.config.norm_eps),
            Norm::Ffn(l) => (&be.weights.layers[l].ffn_norm, be.config.norm_eps),
            Norm::Output => (&be.weights.output_norm, be.config.norm_eps),
        };
        let (o, x, d) = self.pair(out, x);
        for t in 0..n {
            rmsnorm(&mut o[t * d..][..d], &x[t * d..][..d], gain, eps);
        }
    }

    fn matmul(&mut self, w: Mat, x: Buf, out: Buf, n: usize) {
        let be = self.be;
        let view = be.weight(w);
        let (o, x, _) = self.pair(out, x);
        be.kernels.matmul(
            &view,
            &x[..n * view.cols],
            &mut o[..n * view.rows],
            be.threads,
        );
    }

    fn matmuls(&mut self, x: Buf, products: &[(Mat, Buf)], n: usize) {
        if !(2..=3).contains(&products.len()) {
            for &(w, o) in products {
                self.matmul(w, x, o, n);
            }
            return;
        }
        let distinct = products
            .iter()
            .enumerate()
            .all(|(i, &(_, o))| o != x && products[..i].iter().all(|&(_, p)| p != o));
        assert!(distinct, "a product writes its input or another's output");
        let be = self.be;
        let xs = self.buf(x).0 as *const [f32];
        let mut out = |(w, o): (Mat, Buf)| {
            let view = be.weight(w);
            let s = self.buf(o).0 as *mut [f32];
            // SAFETY: the buffers of `products` and `x` are distinct (checked above), and every
            // `Buf` is a separate allocation, so the slices do not overlap.
            (view, unsafe { &mut (&mut *s)[..n * view.rows] })
        };
        // SAFETY: as above.
        let xs = unsafe { &(&*xs)[..n * be.weight(products[0].0).cols] };
        match *products {
            [a, b] => be.kernels.matmuls(xs, &mut [out(a), out(b)], be.threads),
            [a, b, c] => be
                .kernels
                .matmuls(xs, &mut [out(a), out(b), out(c)], be.threads),
            _ => unreachable!("two or three products"),
        }
    }

    fn rope_store(&mut self, layer: usize, q: Buf, k: Buf, v: Buf) {
        self.rope(q);
        self.rope(k);
        self.store_kv(layer, k, v);
    }

    fn attention(&mut self, layer: usize, q: Buf, out: Buf) {
        let be = self.be;
        let c = &be.config;
        let (b, kvd) = (self.rows.len(), c.kv_dim());
        let shape = AttnShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
        };
        let rows = self.rows;
        let caches: &[&mut dyn KvCache] = self.caches;
        let (o, q, w) = {
            let a = &mut *self.a;
            match (q, out) {
                (Buf::Q, Buf::Att) => (&mut a.att, &a.q, c.q_dim()),
                _ => unreachable!("attention reads Buf::Q into Buf::Att"),
            }
        };
        be.kernels
            .attention_rows(&mut o[..b * w], &q[..b * w], shape, be.threads, |t| {
                let r = &rows[t];
                let s: &CpuCache = downcast_cache_ref(&*caches[r.seq]);
                (s.layer(layer, kvd), r.pos + 1)
            });
    }

    fn silu_mul(&mut self, gate: Buf, up: Buf, n: usize) {
        let (g, u, w) = self.pair(gate, up);
        silu_mul(&mut g[..n * w], &u[..n * w]);
    }

    fn add(&mut self, x: Buf, y: Buf, n: usize) {
        let (x, y, w) = self.pair(x, y);
        for (a, b) in x[..n * w].iter_mut().zip(&y[..n * w]) {
            *a += b;
        }
    }

    fn gather_rows(&mut self, wants: &[Out], out: Buf, x: Buf) -> usize {
        let (narrowed, all) = (self.narrowed, self.rows);
        let (o, x, d) = self.pair(out, x);
        let mut n = 0;
        for &want in wants {
            let rows = all.iter().filter(|r| !narrowed || r.out != Out::None);
            for (t, r) in rows.enumerate() {
                if r.out == want {
                    o[n * d..][..d].copy_from_slice(&x[t * d..][..d]);
                    n += 1;
                }
            }
        }
        n
    }

    fn greedy_tokens(&mut self, from: usize, n: usize) {
        let v = self.be.config.n_vocab;
        let logits = &self.logits[from * v..(from + n) * v];
        greedy_rows(&mut self.tokens[..n], logits, v, self.be.threads, 1 << 16);
    }

    fn keep_output_rows(&mut self, bufs: &[Buf], n: usize) -> usize {
        debug_assert!(!self.narrowed && n == self.rows.len());
        let rows = self.rows;
        for &b in bufs {
            let (x, d) = self.buf(b);
            let mut kept = 0;
            for (t, r) in rows.iter().enumerate() {
                if r.out != Out::None {
                    x.copy_within(t * d..(t + 1) * d, kept * d);
                    kept += 1;
                }
            }
        }
        self.narrowed = true;
        rows.iter().filter(|r| r.out != Out::None).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spread over threads (rows split unevenly), the picks are the serial ones.
    #[test]
    fn greedy_rows_on_threads_pick_as_one_thread_does() {
        let (rows, v) = (7, 53);
        let logits: Vec<f32> = (0..rows * v)
            .map(|i| ((i * 7919) % 101) as f32 - 50.0)
            .collect();
        let mut one = vec![u32::MAX; rows];
        greedy_rows(&mut one, &logits, v, 1, 1);
        for threads in [2, 3, 8] {
            let mut many = vec![u32::MAX; rows];
            greedy_rows(&mut many, &logits, v, threads, 1);
            assert_eq!(many, one, "{threads} threads");
        }
        let want: Vec<u32> = logits.chunks(v).map(greedy_token).collect();
        assert_eq!(one, want);
    }
}
