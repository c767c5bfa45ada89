//! The element-wise operations of the active path (`CAMELID_ISA`, else the best the CPU has)
//! against their scalar references.

use camelid_kernels::ops::{self, AttnShape, reference};

fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rel * y.abs().max(1e-30) + 1e-37,
            "{what}[{i}]: {x} vs reference {y}"
        );
    }
}

#[test]
fn silu_and_softmax_match_reference() {
    // Odd lengths leave a scalar tail; the gates reach far into both tails of the sigmoid.
    for (n, scale) in [(1usize, 1.0f32), (7, 4.0), (37, 20.0), (8195, 200.0)] {
        let gate = data(n, 1 + n as u64, scale);
        let up = data(n, 99, 3.0);
        let (mut a, mut b) = (gate.clone(), gate.clone());
        ops::silu_mul(&mut a, &up);
        reference::silu_mul(&mut b, &up);
        close(&a, &b, 4e-6, "silu_mul");

        let (mut a, mut b) = (gate.clone(), gate);
        ops::softmax(&mut a);
        reference::softmax(&mut b);
        // Softmax outputs far below the largest are tiny and may flush differently.
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 4e-6 * y.max(1e-6), "softmax: {x} vs {y}");
        }
    }
}

#[test]
fn attention_matches_reference() {
    for (heads, kv, hd, n_past) in [
        (4usize, 2usize, 8usize, 1usize),
        (6, 2, 20, 33),
        (32, 8, 64, 130),
    ] {
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: kv,
            head_dim: hd,
        };
        let q = data(heads * hd, 3, 2.0);
        let k = data(n_past * kv * hd, 5, 2.0);
        let v = data(n_past * kv * hd, 7, 2.0);
        let (mut a, mut b) = (vec![0.0; heads * hd], vec![0.0; heads * hd]);
        let (mut sa, mut sb) = (vec![0.0; n_past], vec![0.0; n_past]);
        ops::attention(&mut a, &q, &k, &v, n_past, shape, &mut sa);
        reference::attention(&mut b, &q, &k, &v, n_past, shape, &mut sb);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "attention[{i}] ({heads}/{kv}/{hd}/{n_past}): {x} vs {y}"
            );
        }
    }
}
