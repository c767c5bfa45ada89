//! Attention of a batch of query rows, spread over the thread pool.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::matmul::{Kernels, OutPtr};
use crate::ops::{AttnShape, attention_heads};

impl Kernels {
    /// Causal attention of `b` query rows at once: `q, out: [b, n_heads · head_dim]`; row `t`
    /// attends over `row(t) = (k, v, n_past)`, the keys and values of its sequence
    /// (`[n_kv_heads, cap ≥ n_past, head_dim]`, as [`crate::ops::attention`] takes them) and
    /// how many positions it sees. Rows and kv-head
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
        F: Fn(usize) -> (&'a [f32], &'a [f32], usize) + Sync,
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
            let (k, v, n_past) = row(t);
            assert!(
                k.len().is_multiple_of(kv_dim) && v.len() == k.len() && k.len() >= n_past * kv_dim,
                "row {t}: the cache is not [{n_kv_heads}, ≥ {n_past}, {head_dim}]"
            );
            max_past = max_past.max(n_past);
        }
        let group = n_heads / n_kv_heads;
        let work = b * max_past * qd;
        let threads = if work < (1 << 15) { 1 } else { threads.max(1) };

        let mut inner = self.lock_inner(threads);
        // Scores for the `group` query heads of one kv head, per thread.
        let (pool, scores) = inner.pool_and_scores(threads, group * max_past);
        let items = b * n_kv_heads;
        let next = AtomicUsize::new(0);
        let outp = OutPtr(out.as_mut_ptr());
        let scr = OutPtr(scores.as_mut_ptr());
        let job = |id: usize| {
            if id >= threads {
                return;
            }
            // SAFETY: thread `id` owns scratch row `id` of `threads · group · max_past` floats.
            let sc = unsafe { scr.slice(id * group * max_past, group * max_past) };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items {
                    break;
                }
                let (t, g) = (i / n_kv_heads, i % n_kv_heads);
                let heads = g * group..(g + 1) * group;
                let (k, v, n_past) = row(t);
                // SAFETY: item (t, g) alone writes the heads of group `g` of row `t`, a range
                // inside `out: [b, qd]`.
                let o = unsafe { outp.slice(t * qd + heads.start * head_dim, group * head_dim) };
                attention_heads(o, &q[t * qd..][..qd], k, v, n_past, shape, heads, sc);
            }
        };
        if threads == 1 {
            job(0);
        } else {
            pool.run(&job);
        }
    }
}
