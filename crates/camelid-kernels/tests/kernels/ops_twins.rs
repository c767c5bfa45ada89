//! The element-wise operations of the active path (`CAMELID_ISA`, else the best the CPU has)
//! against their scalar references.

use camelid_kernels::Kv;
use camelid_kernels::ops::{self, AttnShape, reference};
use half::f16;

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

/// Against the scalar reference, and the query heads of a kv head taken together (scratch for
/// all of them) equal to one head at a time (scratch for one), bit for bit.
#[test]
fn attention_matches_reference() {
    for (heads, kv, hd, n_past) in [
        (4usize, 2usize, 8usize, 1usize),
        (6, 2, 20, 33),
        (32, 8, 64, 130),
        (8, 8, 128, 300),
        (16, 2, 128, 70),
        (14, 2, 72, 45),
        // A head size past the last whole vector of every path (4, 8 and 16 lanes).
        (3, 1, 18, 9),
        (5, 1, 64, 0),
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
        let mut grouped = vec![0.0; heads * hd];
        let mut sg = vec![0.0; heads * n_past];
        ops::attention(&mut grouped, &q, &k, &v, n_past, shape, &mut sg);
        assert!(
            grouped
                .iter()
                .zip(&a)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "attention ({heads}/{kv}/{hd}/{n_past}): heads together differ from one at a time"
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "attention[{i}] ({heads}/{kv}/{hd}/{n_past}): {x} vs {y}"
            );
        }
    }
}

/// Rows of a prompt batch at increasing positions, and rows of two sequences, spread over
/// threads: each equals the scalar reference on its own row.
#[test]
fn attention_rows_match_reference_row_by_row() {
    use camelid_kernels::{Isa, Kernels};
    let shape = AttnShape {
        n_heads: 8,
        n_kv_heads: 2,
        head_dim: 16,
    };
    let (qd, kvd) = (8 * 16, 2 * 16);
    let b = 11;
    let q = data(b * qd, 11, 2.0);
    let caches = [data(40 * kvd, 13, 2.0), data(40 * kvd, 17, 2.0)];
    let vals = [data(40 * kvd, 19, 2.0), data(40 * kvd, 23, 2.0)];
    // Row t belongs to sequence t % 2 and sees 3 + 3t positions.
    let row = |t: usize| (&caches[t % 2][..], &vals[t % 2][..], 3 + 3 * t);
    for isa in Isa::available() {
        let k = Kernels::with_isa(2, isa);
        let mut out = vec![0.0f32; b * qd];
        k.attention_rows(&mut out, &q, shape, 2, |t| {
            let (kc, vc, n_past) = row(t);
            (Kv::F32(kc, vc), n_past)
        });
        for t in 0..b {
            let (kc, vc, n_past) = row(t);
            let mut want = vec![0.0f32; qd];
            let mut sc = vec![0.0f32; n_past];
            reference::attention(
                &mut want,
                &q[t * qd..][..qd],
                kc,
                vc,
                n_past,
                shape,
                &mut sc,
            );
            for (i, (x, y)) in out[t * qd..][..qd].iter().zip(&want).enumerate() {
                assert!((x - y).abs() <= 1e-5, "{isa} row {t}[{i}]: {x} vs {y}");
            }
        }
    }
}

/// The cache's layout, against attention written out in f64 from its definition: kv head `g`'s
/// key at position `t` is `k[(g · cap + t) · head_dim..][..head_dim]` (each head's positions
/// side by side, `cap` more than the positions seen), the same for values; query head `h`
/// reads kv head `h / (n_heads / n_kv_heads)`. On every path the CPU has, one row alone and
/// rows of a batch over threads.
#[test]
fn attention_reads_each_kv_head_as_its_own_run_of_positions() {
    use camelid_kernels::{Isa, Kernels};
    let (n_heads, n_kv, hd, cap, n_past) = (6usize, 3usize, 16usize, 50usize, 37usize);
    let shape = AttnShape {
        n_heads,
        n_kv_heads: n_kv,
        head_dim: hd,
    };
    let q = data(n_heads * hd, 29, 2.0);
    let k = data(n_kv * cap * hd, 31, 2.0);
    let v = data(n_kv * cap * hd, 37, 2.0);
    let mut want = vec![0.0f64; n_heads * hd];
    for h in 0..n_heads {
        let g = h / (n_heads / n_kv);
        let at = |t: usize| (g * cap + t) * hd;
        let s: Vec<f64> = (0..n_past)
            .map(|t| {
                let dot: f64 = (0..hd)
                    .map(|d| q[h * hd + d] as f64 * k[at(t) + d] as f64)
                    .sum();
                dot / (hd as f64).sqrt()
            })
            .collect();
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for d in 0..hd {
            want[h * hd + d] = (0..n_past).map(|t| e[t] / sum * v[at(t) + d] as f64).sum();
        }
    }
    let check = |got: &[f32], what: &str| {
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert!((*x as f64 - y).abs() <= 1e-5, "{what}[{i}]: {x} vs {y}");
        }
    };
    let mut out = vec![0.0f32; n_heads * hd];
    let mut sc = vec![0.0f32; n_heads * n_past];
    ops::attention(&mut out, &q, &k, &v, n_past, shape, &mut sc);
    check(&out, "attention");
    reference::attention(&mut out, &q, &k, &v, n_past, shape, &mut sc);
    check(&out, "reference");
    let b = 3;
    let qs: Vec<f32> = (0..b).flat_map(|_| q.iter().copied()).collect();
    for isa in Isa::available() {
        let kernels = Kernels::with_isa(2, isa);
        let mut out = vec![0.0f32; b * n_heads * hd];
        kernels.attention_rows(&mut out, &qs, shape, 2, |_| (Kv::F32(&k, &v), n_past));
        for r in 0..b {
            check(
                &out[r * n_heads * hd..][..n_heads * hd],
                &format!("{isa} row {r}"),
            );
        }
    }
}

/// An f16 cache: attention equals, bit for bit, the f32 arithmetic on the same values widened
/// (each path against itself, one row and a batch of rows over threads; blocks of 64 positions
/// and a partial last one), and the scalar reference within its usual distance.
#[test]
fn f16_caches_give_the_f32_results_of_their_values() {
    use camelid_kernels::{Isa, Kernels};
    for (heads, kv, hd, cap, n_past) in [
        (32usize, 8usize, 64usize, 200usize, 150usize),
        (8, 2, 128, 64, 64),
        (6, 3, 20, 40, 33),
        (4, 1, 64, 8, 0),
    ] {
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: kv,
            head_dim: hd,
        };
        let q = data(heads * hd, 41, 2.0);
        let k16: Vec<f16> = data(kv * cap * hd, 43, 2.0)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let v16: Vec<f16> = data(kv * cap * hd, 47, 2.0)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let (k32, v32): (Vec<f32>, Vec<f32>) = (
            k16.iter().map(|x| x.to_f32()).collect(),
            v16.iter().map(|x| x.to_f32()).collect(),
        );
        let scratch = heads * n_past + 64 * hd;
        let (mut a, mut b) = (vec![0.0; heads * hd], vec![0.0; heads * hd]);
        let (mut sa, mut sb) = (vec![0.0; scratch], vec![0.0; scratch]);
        ops::attention(&mut a, &q, &k16, &v16, n_past, shape, &mut sa);
        ops::attention(&mut b, &q, &k32, &v32, n_past, shape, &mut sb);
        let what = format!("{heads}/{kv}/{hd}/{n_past}");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "f16 cache ({what}): not the f32 results of its values"
        );
        let mut r = vec![0.0; heads * hd];
        reference::attention(&mut r, &q, &k16, &v16, n_past, shape, &mut sb);
        for (i, (x, y)) in a.iter().zip(&r).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "f16 cache ({what})[{i}]: {x} vs reference {y}"
            );
        }
        let rows = 3;
        let qs: Vec<f32> = (0..rows).flat_map(|_| q.iter().copied()).collect();
        for isa in Isa::available() {
            let kernels = Kernels::with_isa(2, isa);
            let (mut x, mut y) = (
                vec![0.0f32; rows * heads * hd],
                vec![0.0f32; rows * heads * hd],
            );
            kernels.attention_rows(&mut x, &qs, shape, 2, |_| (Kv::F16(&k16, &v16), n_past));
            kernels.attention_rows(&mut y, &qs, shape, 2, |_| (Kv::F32(&k32, &v32), n_past));
            assert!(
                x.iter().zip(&y).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{isa} f16 cache ({what}): not the f32 results of its values"
            );
        }
    }
}

/// A prompt's rows on one cache go through attention in tiles (each block of keys and values
/// read once for the tile): every row equals `ops::attention` on that row alone, bit for bit,
/// for f32 and f16 caches, on one and two threads, where the rows' positions cross blocks of
/// 64 inside a tile, where a long context leaves room for fewer rows a tile, and where a batch
/// holds two sequences' prompts one after the other.
#[test]
fn prompt_rows_in_tiles_equal_each_row_alone() {
    use camelid_kernels::Kernels;
    for (heads, kv, hd, cap, first, b) in [
        (8usize, 2usize, 64usize, 200usize, 40usize, 30usize),
        (9, 3, 64, 3000, 2950, 20),
        // 8 query heads a kv head at 2580 positions: tiles of 12 rows (1 MiB of scores).
        (8, 1, 64, 2600, 2550, 30),
        (4, 4, 128, 300, 0, 17),
    ] {
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: kv,
            head_dim: hd,
        };
        let (qd, n) = (heads * hd, kv * cap * hd);
        let q = data(b * qd, 61, 2.0);
        let kf = [data(n, 67, 2.0), data(n, 71, 2.0)];
        let vf = [data(n, 73, 2.0), data(n, 79, 2.0)];
        let h = |x: &Vec<f32>| -> Vec<f16> { x.iter().map(|&y| f16::from_f32(y)).collect() };
        let (kh, vh) = ([h(&kf[0]), h(&kf[1])], [h(&vf[0]), h(&vf[1])]);
        // Rows 0..b/2 are sequence 0's prompt, the rest sequence 1's; row t sees one more
        // position than the row before it in its sequence.
        let split = b / 2;
        let seq = |t: usize| usize::from(t >= split);
        let past = |t: usize| first + 1 + if t < split { t } else { t - split };
        for f16_cache in [false, true] {
            let row = |t: usize| {
                let s = seq(t);
                let kv = if f16_cache {
                    Kv::F16(&kh[s], &vh[s])
                } else {
                    Kv::F32(&kf[s], &vf[s])
                };
                (kv, past(t))
            };
            for threads in [1, 2] {
                let mut out = vec![0.0f32; b * qd];
                Kernels::new(threads).attention_rows(&mut out, &q, shape, threads, row);
                for t in 0..b {
                    let mut want = vec![0.0f32; qd];
                    let mut sc = vec![0.0f32; heads * past(t) + 64 * hd];
                    let qt = &q[t * qd..][..qd];
                    let s = seq(t);
                    if f16_cache {
                        ops::attention(&mut want, qt, &kh[s], &vh[s], past(t), shape, &mut sc);
                    } else {
                        ops::attention(&mut want, qt, &kf[s], &vf[s], past(t), shape, &mut sc);
                    }
                    assert!(
                        out[t * qd..][..qd]
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{heads}/{kv}/{hd}, f16 {f16_cache}, {threads} threads: row {t} \
                         differs from attention on its own"
                    );
                }
            }
        }
    }
}

/// Decode rows deep in a context on more threads than their (row, kv head) units divide
/// evenly (3 kv heads on 2 threads, 2 on 5, two sequences' rows on 3 threads): each row equals
/// `ops::attention` on it alone, bit for bit, f32 and f16 caches.
#[test]
fn decode_rows_over_threads_equal_each_row_alone() {
    use camelid_kernels::Kernels;
    for (heads, kv, hd, pasts, threads) in [
        (9usize, 3usize, 64usize, &[1000usize][..], 2usize),
        (8, 2, 128, &[700], 5),
        (4, 2, 64, &[513, 2000], 3),
        (6, 3, 32, &[4100], 2),
    ] {
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: kv,
            head_dim: hd,
        };
        let (qd, b) = (heads * hd, pasts.len());
        let cap = pasts.iter().max().unwrap() + 5;
        let n = kv * cap * hd;
        let q = data(b * qd, 83, 2.0);
        let kf: Vec<Vec<f32>> = (0..b).map(|s| data(n, 89 + s as u64, 2.0)).collect();
        let vf: Vec<Vec<f32>> = (0..b).map(|s| data(n, 97 + s as u64, 2.0)).collect();
        let h = |x: &Vec<f32>| -> Vec<f16> { x.iter().map(|&y| f16::from_f32(y)).collect() };
        let kh: Vec<Vec<f16>> = kf.iter().map(h).collect();
        let vh: Vec<Vec<f16>> = vf.iter().map(h).collect();
        for f16_cache in [false, true] {
            let row = |t: usize| {
                let kv = if f16_cache {
                    Kv::F16(&kh[t], &vh[t])
                } else {
                    Kv::F32(&kf[t], &vf[t])
                };
                (kv, pasts[t])
            };
            let mut out = vec![0.0f32; b * qd];
            Kernels::new(threads).attention_rows(&mut out, &q, shape, threads, row);
            for t in 0..b {
                let mut want = vec![0.0f32; qd];
                let mut sc = vec![0.0f32; heads * pasts[t] + 64 * hd];
                let qt = &q[t * qd..][..qd];
                if f16_cache {
                    ops::attention(&mut want, qt, &kh[t], &vh[t], pasts[t], shape, &mut sc);
                } else {
                    ops::attention(&mut want, qt, &kf[t], &vf[t], pasts[t], shape, &mut sc);
                }
                assert!(
                    out[t * qd..][..qd]
                        .iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{heads}/{kv}/{hd}, f16 {f16_cache}, {threads} threads: row {t} differs \
                     from attention on its own"
                );
            }
        }
    }
}
