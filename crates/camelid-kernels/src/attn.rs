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
}

impl Kernels {
    /// Causal attention of `b` query rows at once: `q, out: [b, n_heads · head_dim]`; row `t`
    /// attends over `row(t) = (kv, n_past)`, the keys and values of its sequence
    /// (`[n_kv_heads, cap ≥ n_past, head_dim]`) and how many positions it sees. Rows and kv-head
    /// groups are shared out among at most `threads` threads; each result equals
    /// [`crate::ops::attention`] on that row.
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

        let mut inner = self.lock_inner(threads);
        // Scores for the `group` query heads of one kv head, and a block of f16 keys or values
        // widened, per thread.
        let per = group * max_past + half::f16::scratch(head_dim);
        let (pool, scores) = inner.pool_and_scores(threads, per);
        let items = b * n_kv_heads;
        let next = AtomicUsize::new(0);
        let outp = OutPtr(out.as_mut_ptr());
        let scr = OutPtr(scores.as_mut_ptr());
        let job = |id: usize| {
            if id >= threads {
                return;
            }
            // SAFETY: thread `id` owns scratch row `id` of `threads · per` floats.
            let sc = unsafe { scr.slice(id * per, per) };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items {
                    break;
                }
                let (t, g) = (i / n_kv_heads, i % n_kv_heads);
                let heads = g * group..(g + 1) * group;
                let (kv, n_past) = row(t);
                // SAFETY: item (t, g) alone writes the heads of group `g` of row `t`, a range
                // inside `out: [b, qd]`.
                let o = unsafe { outp.slice(t * qd + heads.start * head_dim, group * head_dim) };
                let q = &q[t * qd..][..qd];
                match kv {
                    Kv::F32(k, v) => attention_heads(o, q, k, v, n_past, shape, heads, sc),
                    Kv::F16(k, v) => attention_heads(o, q, k, v, n_past, shape, heads, sc),
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
