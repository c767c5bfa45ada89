//! Attention of a batch of query rows, spread over the thread pool.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::matmul::{Kernels, OutPtr};
use crate::ops::{AttnShape, KvElem, attention_heads};

/// One sequence's keys and values in one layer, `[n_kv_heads, cap, head_dim]` each (as
/// [`crate::ops::attention`] takes them), in the type its cache holds.
#[derive(Clone, Copy, Debug)]
pub enum Kv<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [half::f16], &'a [half::f16]),
}

impl Kv<'_> {
    /// Elements in each of the two.
    fn len(&self) -> (usize, usize) {
        match self {
            Kv::F32(k, v) => (k.len(), v.len()),
            Kv::F16(k, v) => (k.len(), v.len()),
        }
    }

    /// Whether `other` is the same cache (the same memory, the same type).
    fn same(&self, other: &Kv) -> bool {
        match (self, other) {
            (Kv::F32(k, v), Kv::F32(k2, v2)) => std::ptr::eq(*k, *k2) && std::ptr::eq(*v, *v2),
            (Kv::F16(k, v), Kv::F16(k2, v2)) => std::ptr::eq(*k, *k2) && std::ptr::eq(*v, *v2),
            _ => false,
        }
    }
}

/// Query rows of one sequence taken together (a prompt's): each block of its keys and values
/// is then read and widened once for all of them. At most this many, and fewer where their
/// scores would outgrow [`TILE_SCORES`]. Against 8 rows and 256 KiB of scores, pp512 @ d4096
/// gained 8–9% (SmolLM2 284, 301 → 321, 319 tokens/s; 1.24B Q4_0 115, 118 → 127, 126); 32
/// rows and 4 MiB gained nothing more.
const TILE_ROWS: usize = 16;

/// Floats of scores a tile of rows may keep (1 MiB).
const TILE_SCORES: usize = 1 << 18;

impl Kernels {
    /// Causal attention of `b` query rows at once: `q, out: [b, n_heads · head_dim]`; row `t`
    /// attends over `row(t) = (kv, n_past)`, the keys and values of its sequence
    /// (`[n_kv_heads, cap ≥ n_past, head_dim]`) and how many positions it sees. Consecutive
    /// rows on the same cache go together in tiles; tiles and kv-head groups are shared out among
    /// at most `threads` threads; each result equals [`crate::ops::attention`] on that row.
    pub fn attention_rows<'a, F>(
        &self,
        out: &mut [f32],
        q: &[f32],
        shape: AttnShape,
        threads: usize,
        row: F,
    ) where
        F: Fn(usize) -> (Kv<'a>, usize) + Sync,
    {
        let AttnShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = shape;
        let qd = n_heads * head_dim;
        assert!(
            n_kv_heads > 0 && n_heads.is_multiple_of(n_kv_heads),
            "{n_heads} heads over {n_kv_heads} kv heads"
        );
        assert!(
            qd > 0 && q.len().is_multiple_of(qd),
            "queries are not [b, {qd}]"
        );
        assert_eq!(out.len(), q.len(), "output is not [b, {qd}]");
        let b = q.len() / qd;
        let kv_dim = n_kv_heads * head_dim;
        let mut max_past = 0;
        for t in 0..b {
            let (kv, n_past) = row(t);
            let (k, v) = kv.len();
            assert!(
                k.is_multiple_of(kv_dim) && v == k && k >= n_past * kv_dim,
                "row {t}: the cache is not [{n_kv_heads}, ≥ {n_past}, {head_dim}]"
            );
            max_past = max_past.max(n_past);
        }
        let group = n_heads / n_kv_heads;
        let work = b * max_past * qd;
        let threads = if work < (1 << 15) { 1 } else { threads.max(1) };

        // Rows a tile may hold.
        let most = (TILE_SCORES / (group * max_past).max(1)).clamp(1, TILE_ROWS);
        let mut inner = self.lock_inner(threads);
        // Per thread: scores for the `group` query heads of one kv head and the rows of a tile,
        // a block of f16 keys or values widened, and the tile's outputs for those heads.
        let (sc_len, out_len) = (most * group * max_past, most * group * head_dim);
        let per = sc_len + half::f16::scratch(head_dim) + out_len;
        let (pool, scores, tiles) = inner.attention_scratch(threads, per);
        // Tiles of consecutive rows on the same cache: `tiles[i]..tiles[i + 1]`.
        tiles.push(0);
        for t in 1..b {
            let start = *tiles.last().expect("tiles start with 0");
            if t - start == most || !row(t).0.same(&row(start).0) {
                tiles.push(t);
            }
        }
        tiles.push(b);
        let tiles = &*tiles;
        let items = (tiles.len() - 1) * n_kv_heads;
        let next = AtomicUsize::new(0);
        let outp = OutPtr(out.as_mut_ptr());
        let scr = OutPtr(scores.as_mut_ptr());
        let job = |id: usize| {
            if id >= threads {
                return;
            }
            // SAFETY: thread `id` owns scratch row `id` of `threads · per` floats.
            let (sc, tile_out) = unsafe { scr.slice(id * per, per) }.split_at_mut(per - out_len);
            let mut past = [0; TILE_ROWS];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items {
                    break;
                }
                let (tile, g) = (i / n_kv_heads, i % n_kv_heads);
                let (t0, t1) = (tiles[tile], tiles[tile + 1]);
                let heads = g * group..(g + 1) * group;
                let kv = row(t0).0;
                for t in t0..t1 {
                    past[t - t0] = row(t).1;
                }
                let past = &past[..t1 - t0];
                let o = &mut tile_out[..past.len() * group * head_dim];
                let q = &q[t0 * qd..t1 * qd];
                match kv {
                    Kv::F32(k, v) => attention_heads(o, q, k, v, past, shape, heads.clone(), sc),
                    Kv::F16(k, v) => attention_heads(o, q, k, v, past, shape, heads.clone(), sc),
                }
                for (t, o) in (t0..t1).zip(o.chunks_exact(group * head_dim)) {
                    // SAFETY: item (tile, g) alone writes the heads of group `g` of the tile's
                    // rows, ranges inside `out: [b, qd]`.
                    unsafe { outp.slice(t * qd + heads.start * head_dim, group * head_dim) }
                        .copy_from_slice(o);
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
