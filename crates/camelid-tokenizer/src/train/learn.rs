//! The BPE learning loop (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with
//! Subword Units", section 3.2), over distinct words with counts rather than the text:
//! - `pairs` holds every adjacent pair's count (summed over words, weighted by word count), and
//!   `where_` the words each pair occurs in;
//! - a max-heap yields the most frequent pair. Counts only fall, except for pairs with the new
//!   token, which are pushed afresh after each merge; so a stale entry overestimates, and is
//!   pushed back with its true count when it surfaces (lazy deletion);
//! - a merge rewrites only the words that hold the pair, and changes only the counts of the pairs
//!   around each occurrence.
//!
//! Equal counts go to the pair of lower ids (left, then right), so the result depends on nothing
//! but the words and their counts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::merge::FastMap;

/// What learning produced: every token's content (the alphabet first, in its order, then the
/// merged tokens in the order they were made) and the merge rules in rank order.
pub(crate) struct Learned {
    pub(crate) tokens: Vec<Vec<u8>>,
    /// `(left, right, merged)` token indices.
    pub(crate) merges: Vec<(u32, u32, u32)>,
}

/// Symbols of one word and how often the word occurs.
pub(crate) struct Word {
    pub(crate) symbols: Vec<u32>,
    pub(crate) count: u64,
}

#[inline]
fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Learns merges over `words` (symbols index `alphabet`) until `n_tokens` tokens exist or no pair
/// occurs `min_count` times. `forbidden(content)` rejects a merged token (one spelled like a
/// special token). A merge whose result already exists (made from another pair) reuses it.
pub(crate) fn learn(
    mut words: Vec<Word>,
    alphabet: Vec<Vec<u8>>,
    n_tokens: usize,
    min_count: u64,
    forbidden: &dyn Fn(&[u8]) -> bool,
) -> Learned {
    let min_count = min_count.max(1);
    let mut tokens = alphabet;
    let mut by_content: FastMap<Vec<u8>, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let (mut pairs, mut where_) = count_pairs(&words);
    let mut heap: BinaryHeap<(u64, Reverse<u64>)> =
        pairs.iter().map(|(&k, &c)| (c, Reverse(k))).collect();

    let mut merges = Vec::new();
    // Count changes of one merge, and the pairs whose count rose.
    let mut changes: Vec<(u64, i64)> = Vec::new();
    let mut risen: Vec<u64> = Vec::new();
    while tokens.len() < n_tokens {
        let Some((count, Reverse(k))) = heap.pop() else {
            break;
        };
        let now = pairs.get(&k).copied().unwrap_or(0);
        if now != count {
            if now >= min_count {
                heap.push((now, Reverse(k)));
            }
            continue;
        }
        if count < min_count {
            break;
        }
        let (a, b) = ((k >> 32) as u32, k as u32);
        let mut content = tokens[a as usize].clone();
        content.extend_from_slice(&tokens[b as usize]);
        if forbidden(&content) {
            // Dropped for good: its count stays, but it is never pushed again (only pairs with a
            // new token are), so the heap forgets it.
            continue;
        }
        let c = match by_content.get(&content) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as u32;
                by_content.insert(content.clone(), id);
                tokens.push(content);
                id
            }
        };
        merges.push((a, b, c));

        let mut list = where_.remove(&k).unwrap_or_default();
        list.sort_unstable();
        list.dedup();
        risen.clear();
        for &w in &list {
            let word = &mut words[w as usize];
            changes.clear();
            merge_word(&mut word.symbols, a, b, c, &mut changes);
            let weight = word.count as i64;
            for &(p, d) in &changes {
                let slot = pairs.entry(p).or_insert(0);
                *slot = (*slot as i64 + d * weight) as u64;
                if d > 0 {
                    let l = where_.entry(p).or_default();
                    if l.last() != Some(&w) {
                        l.push(w);
                    }
                    risen.push(p);
                }
            }
        }
        debug_assert_eq!(pairs.get(&k).copied().unwrap_or(0), 0);
        pairs.remove(&k);
        risen.sort_unstable();
        risen.dedup();
        for &p in &risen {
            let n = pairs[&p];
            if n >= min_count {
                heap.push((n, Reverse(p)));
            }
        }
    }
    Learned { tokens, merges }
}

/// Every adjacent pair's count, weighted by word count, and the words it occurs in.
fn count_pairs(words: &[Word]) -> (FastMap<u64, u64>, FastMap<u64, Vec<u32>>) {
    let mut pairs: FastMap<u64, u64> = FastMap::default();
    let mut where_: FastMap<u64, Vec<u32>> = FastMap::default();
    for (w, word) in words.iter().enumerate() {
        for s in word.symbols.windows(2) {
            let k = key(s[0], s[1]);
            *pairs.entry(k).or_insert(0) += word.count;
            let list = where_.entry(k).or_default();
            if list.last() != Some(&(w as u32)) {
                list.push(w as u32);
            }
        }
    }
    (pairs, where_)
}

/// Replaces each `a b` in `s` (left to right, not overlapping) by `c`, recording the pair count
/// changes: the merged pair and its neighbours' pairs go, the new token's pairs come. The left
/// neighbour is read after rewriting, so that in `a b a b` the pair between the two new tokens is
/// counted once as `(c, c)`.
fn merge_word(s: &mut Vec<u32>, a: u32, b: u32, c: u32, changes: &mut Vec<(u64, i64)>) {
    let n = s.len();
    let (mut r, mut w) = (0, 0);
    while r < n {
        if r + 1 < n && s[r] == a && s[r + 1] == b {
            if w > 0 {
                let prev = s[w - 1];
                changes.push((key(prev, a), -1));
                changes.push((key(prev, c), 1));
            }
            changes.push((key(a, b), -1));
            if r + 2 < n {
                let next = s[r + 2];
                changes.push((key(b, next), -1));
                changes.push((key(c, next), 1));
            }
            s[w] = c;
            r += 2;
        } else {
            s[w] = s[r];
            r += 1;
        }
        w += 1;
    }
    s.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair counts of `words`, counted from scratch.
    fn recount(words: &[Word]) -> FastMap<u64, u64> {
        let mut m = FastMap::default();
        for w in words {
            for s in w.symbols.windows(2) {
                *m.entry(key(s[0], s[1])).or_insert(0) += w.count;
            }
        }
        m
    }

    #[test]
    fn merge_word_changes_equal_a_recount() {
        for (syms, a, b) in [
            (vec![0, 1, 0, 1], 0, 1),
            (vec![0, 0, 0, 0, 0], 0, 0),
            (vec![2, 0, 1, 2, 0, 1, 1], 0, 1),
            (vec![1, 1, 0, 1, 1], 1, 1),
        ] {
            let before = recount(&[Word {
                symbols: syms.clone(),
                count: 3,
            }]);
            let mut s = syms.clone();
            let mut changes = Vec::new();
            merge_word(&mut s, a, b, 9, &mut changes);
            let mut after: FastMap<u64, i64> =
                before.iter().map(|(&k, &v)| (k, v as i64)).collect();
            for (p, d) in changes {
                *after.entry(p).or_insert(0) += 3 * d;
            }
            after.retain(|_, v| *v != 0);
            let want: FastMap<u64, i64> = recount(&[Word {
                symbols: s.clone(),
                count: 3,
            }])
            .into_iter()
            .map(|(k, v)| (k, v as i64))
            .collect();
            assert_eq!(after, want, "{syms:?} merging ({a}, {b}) gave {s:?}");
        }
    }

    #[test]
    fn learns_the_most_frequent_pairs_first() {
        // "ab" x5, "abc" x3, "bc" x1: (a,b) 8, then (ab,c) 3 beats (b,c) 1.
        let alphabet = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let words = vec![
            Word {
                symbols: vec![0, 1],
                count: 5,
            },
            Word {
                symbols: vec![0, 1, 2],
                count: 3,
            },
            Word {
                symbols: vec![1, 2],
                count: 1,
            },
        ];
        let l = learn(words, alphabet, 10, 1, &|_| false);
        assert_eq!(l.merges, [(0, 1, 3), (3, 2, 4), (1, 2, 5)]);
        assert_eq!(
            l.tokens[3..],
            [b"ab".to_vec(), b"abc".to_vec(), b"bc".to_vec()]
        );
        // With min_count 2 the last merge is not made; a forbidden token is skipped.
        let words = || {
            vec![
                Word {
                    symbols: vec![0, 1, 2],
                    count: 4,
                },
                Word {
                    symbols: vec![1, 2],
                    count: 1,
                },
            ]
        };
        let alphabet = || vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let l = learn(words(), alphabet(), 10, 2, &|_| false);
        assert_eq!(l.merges, [(1, 2, 3), (0, 3, 4)]);
        let l = learn(words(), alphabet(), 10, 2, &|t| t == b"bc");
        assert_eq!(l.merges, [(0, 1, 3), (3, 2, 4)]);
    }
}
