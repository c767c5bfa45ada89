//! The merge loop shared by both tokenizer kinds: adjacent symbols are replaced by the token of
//! their pair, lowest rank first and leftmost among equal ranks, until no adjacent pair has a rule.
//! Byte-level BPE ranks pairs by their place in the merge list (or, for tiktoken files, by the rank
//! of the merged token); SentencePiece BPE ranks them by the merged piece's score, best first.
//! Short symbol runs (almost every pre-token) use a scan over a small array, long ones (an SPM
//! text, a long word without spaces) a heap over a linked list, so the cost stays O(n log n).

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Marks "no token": a symbol that never merges, or the end of a list.
pub(crate) const NONE: u32 = u32::MAX;

/// A small multiplicative hasher (the FxHash construction): vocabulary keys are short and not
/// adversarial to the process, and the default SipHash costs more than the merge itself.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    /// The multiply leaves its entropy in the high bits while the table indexes by the low
    /// ones: rotate them down, or keys that differ only in later bytes share buckets.
    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The merge rules: (left id, right id) → (rank, merged id).
#[derive(Default, Clone)]
pub(crate) struct PairMap {
    map: FastMap<u64, (u32, u32)>,
}

#[inline]
fn key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

impl PairMap {
    /// Adds a rule; a pair already present keeps its better (lower) rank.
    pub(crate) fn insert(&mut self, left: u32, right: u32, rank: u32, merged: u32) {
        self.map
            .entry(key(left, right))
            .and_modify(|e| {
                if rank < e.0 {
                    *e = (rank, merged)
                }
            })
            .or_insert((rank, merged));
    }

    #[inline]
    pub(crate) fn get(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        if left == NONE || right == NONE {
            return None;
        }
        self.map.get(&key(left, right)).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every rule as `(left, right, merged)`, best rank first.
    pub(crate) fn rules(&self) -> Vec<(u32, u32, u32)> {
        let mut v: Vec<(u32, u32, u32, u32)> = self
            .map
            .iter()
            .map(|(&k, &(rank, merged))| (rank, (k >> 32) as u32, k as u32, merged))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, l, r, m)| (l, r, m)).collect()
    }
}

/// One symbol: its token (or [`NONE`]) and the byte offset where it starts in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sym {
    pub(crate) id: u32,
    pub(crate) start: u32,
}

/// Reusable buffers, so that encoding a long text allocates once, not once per word.
#[derive(Default)]
pub(crate) struct Scratch {
    ranks: Vec<u32>,
    merged: Vec<u32>,
    nodes: Vec<Node>,
    heap: BinaryHeap<std::cmp::Reverse<(u32, u32)>>,
}

#[derive(Clone, Copy)]
struct Node {
    id: u32,
    start: u32,
    prev: u32,
    next: u32,
}

/// Below this many symbols the quadratic scan beats the heap.
const SCAN_MAX: usize = 48;

/// Merges `syms` in place. `on_merge(merged, left, right)` is told about every merge (SentencePiece
/// needs it to split unused pieces again).
pub(crate) fn merge(
    pairs: &PairMap,
    syms: &mut Vec<Sym>,
    scratch: &mut Scratch,
    on_merge: &mut dyn FnMut(u32, u32, u32),
) {
    if syms.len() < 2 {
        return;
    }
    if syms.len() <= SCAN_MAX {
        merge_scan(pairs, syms, scratch, on_merge);
    } else {
        merge_heap(pairs, syms, scratch, on_merge);
    }
}

fn merge_scan(
    pairs: &PairMap,
    syms: &mut Vec<Sym>,
    scratch: &mut Scratch,
    on_merge: &mut dyn FnMut(u32, u32, u32),
) {
    // ranks[i] / merged[i] describe the pair (syms[i], syms[i + 1]).
    let ranks = &mut scratch.ranks;
    let merged = &mut scratch.merged;
    ranks.clear();
    merged.clear();
    for w in syms.windows(2) {
        let (r, m) = pairs.get(w[0].id, w[1].id).unwrap_or((NONE, NONE));
        ranks.push(r);
        merged.push(m);
    }
    loop {
        let mut best = NONE;
        let mut at = 0;
        for (i, &r) in ranks.iter().enumerate() {
            if r < best {
                best = r;
                at = i;
            }
        }
        if best == NONE {
            break;
        }
        let new_id = merged[at];
        on_merge(new_id, syms[at].id, syms[at + 1].id);
        syms[at].id = new_id;
        syms.remove(at + 1);
        ranks.remove(at);
        merged.remove(at);
        if at + 1 < syms.len() {
            let (r, m) = pairs.get(new_id, syms[at + 1].id).unwrap_or((NONE, NONE));
            ranks[at] = r;
            merged[at] = m;
        }
        if at > 0 {
            let (r, m) = pairs.get(syms[at - 1].id, new_id).unwrap_or((NONE, NONE));
            ranks[at - 1] = r;
            merged[at - 1] = m;
        }
    }
}

fn merge_heap(
    pairs: &PairMap,
    syms: &mut Vec<Sym>,
    scratch: &mut Scratch,
    on_merge: &mut dyn FnMut(u32, u32, u32),
) {
    use std::cmp::Reverse;
    let n = syms.len();
    let nodes = &mut scratch.nodes;
    nodes.clear();
    nodes.extend(syms.iter().enumerate().map(|(i, s)| Node {
        id: s.id,
        start: s.start,
        prev: if i == 0 { NONE } else { i as u32 - 1 },
        next: if i + 1 == n { NONE } else { i as u32 + 1 },
    }));
    // Entries are (rank, position of the left symbol); positions keep the input order, so the
    // min-heap yields the leftmost pair among equal ranks. Stale entries are skipped on pop.
    let heap = &mut scratch.heap;
    heap.clear();
    for i in 0..n - 1 {
        if let Some((r, _)) = pairs.get(nodes[i].id, nodes[i + 1].id) {
            heap.push(Reverse((r, i as u32)));
        }
    }
    while let Some(Reverse((rank, left))) = heap.pop() {
        let l = left as usize;
        let right = nodes[l].next;
        if nodes[l].id == NONE || right == NONE {
            continue;
        }
        let r = right as usize;
        let Some((cur_rank, new_id)) = pairs.get(nodes[l].id, nodes[r].id) else {
            continue;
        };
        if cur_rank != rank {
            continue;
        }
        on_merge(new_id, nodes[l].id, nodes[r].id);
        nodes[l].id = new_id;
        let after = nodes[r].next;
        nodes[l].next = after;
        nodes[r].id = NONE;
        nodes[r].next = NONE;
        if after != NONE {
            nodes[after as usize].prev = left;
            if let Some((rk, _)) = pairs.get(new_id, nodes[after as usize].id) {
                heap.push(Reverse((rk, left)));
            }
        }
        let before = nodes[l].prev;
        if before != NONE {
            if let Some((rk, _)) = pairs.get(nodes[before as usize].id, new_id) {
                heap.push(Reverse((rk, before)));
            }
        }
    }
    syms.clear();
    let mut i = 0u32;
    while i != NONE {
        let node = nodes[i as usize];
        syms.push(Sym {
            id: node.id,
            start: node.start,
        });
        i = node.next;
    }
}
