//! Feeds arbitrary bytes to the GGUF reader. Properties checked beyond "no panic, no hang, no
//! unbounded allocation": everything an accepted file exposes can be used (tensor data sliced,
//! values displayed), and what `GgufWriter` makes of it reads back to the same tensors and
//! writes again to the same bytes.
#![no_main]

use camelid_formats::gguf::{Gguf, GgufWriter};
use libfuzzer_sys::fuzz_target;

/// Writes everything `g` holds into a new GGUF.
fn rewrite(g: &Gguf) -> Vec<u8> {
    let mut w = GgufWriter::new(g.alignment());
    for (key, value) in g.metadata() {
        let _ = value.to_string();
        assert!(g.get(key).is_some());
        w.add_metadata(key, value.clone());
    }
    for t in g.tensors() {
        let bytes = g.tensor_data(t);
        assert_eq!(bytes.len(), t.n_bytes());
        assert_eq!(g.tensor(&t.name), Some(t));
        w.add_tensor(&t.name, &t.dims, t.ggml_type, bytes.to_vec())
            .expect("a tensor the reader accepted must be writable");
    }
    let mut out = Vec::new();
    w.write_to(&mut out)
        .expect("a file the reader accepted must be writable");
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    let once = rewrite(&g);
    let back = Gguf::from_bytes(once.clone(), "rewritten.gguf").expect("rewritten file must read");
    assert_eq!(back.metadata().len(), g.metadata().len());
    assert_eq!(back.tensors().len(), g.tensors().len());
    for (a, b) in g.tensors().iter().zip(back.tensors()) {
        assert_eq!(
            (&a.name, &a.dims, a.ggml_type),
            (&b.name, &b.dims, b.ggml_type)
        );
        assert_eq!(g.tensor_data(a), back.tensor_data(b));
    }
    // Compared as bytes, so that NaN metadata values count as equal to themselves.
    assert!(rewrite(&back) == once, "writing is not idempotent");
});
