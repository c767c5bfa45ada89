//! Finding special tokens in text: leftmost match first, the longest token at that place
//! (as Hugging Face's added-token matcher does), over a byte trie.

/// A byte trie of token texts. Node 0 is the root.
#[derive(Clone)]
pub(crate) struct Trie {
    /// Per node: sorted (byte, child) edges.
    edges: Vec<Vec<(u8, u32)>>,
    /// Per node: the token that ends here.
    token: Vec<Option<u32>>,
    /// Bytes that begin some token, to skip the rest of the text quickly.
    first: [bool; 256],
}

impl Default for Trie {
    fn default() -> Trie {
        Trie {
            edges: Vec::new(),
            token: Vec::new(),
            first: [false; 256],
        }
    }
}

impl Trie {
    pub(crate) fn insert(&mut self, text: &[u8], id: u32) {
        if self.edges.is_empty() {
            self.edges.push(Vec::new());
            self.token.push(None);
        }
        self.first[text[0] as usize] = true;
        let mut node = 0usize;
        for &b in text {
            node = match self.edges[node].binary_search_by_key(&b, |e| e.0) {
                Ok(k) => self.edges[node][k].1 as usize,
                Err(k) => {
                    let child = self.edges.len();
                    self.edges.push(Vec::new());
                    self.token.push(None);
                    self.edges[node].insert(k, (b, child as u32));
                    child
                }
            };
        }
        // The first token with a given text wins, as in a vocabulary lookup.
        if self.token[node].is_none() {
            self.token[node] = Some(id);
        }
    }

    fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// The longest token that `text` starts with: (length, id).
    fn longest_prefix(&self, text: &[u8]) -> Option<(usize, u32)> {
        let mut node = 0usize;
        let mut best = None;
        for (i, &b) in text.iter().enumerate() {
            match self.edges[node].binary_search_by_key(&b, |e| e.0) {
                Ok(k) => node = self.edges[node][k].1 as usize,
                Err(_) => break,
            }
            if let Some(id) = self.token[node] {
                best = Some((i + 1, id));
            }
        }
        best
    }
}

pub(crate) enum Part<'t> {
    /// Plain text, and whether it starts the input or follows a special token.
    Text(&'t str, bool),
    Token(u32),
}

/// Cuts `text` into plain stretches and special tokens, in order. Empty stretches are left out.
pub(crate) fn split<'t>(trie: &Trie, text: &'t str, mut f: impl FnMut(Part<'t>)) {
    if trie.is_empty() {
        if !text.is_empty() {
            f(Part::Text(text, true));
        }
        return;
    }
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut after_special = true;
    let mut i = 0;
    while i < bytes.len() {
        if trie.first[bytes[i] as usize] {
            // Tokens are valid UTF-8, so a match begins and ends on character boundaries.
            if let Some((len, id)) = trie.longest_prefix(&bytes[i..]) {
                if start < i {
                    f(Part::Text(&text[start..i], after_special));
                }
                f(Part::Token(id));
                after_special = true;
                i += len;
                start = i;
                continue;
            }
        }
        i += 1;
    }
    if start < bytes.len() {
        f(Part::Text(&text[start..], after_special));
    }
}
