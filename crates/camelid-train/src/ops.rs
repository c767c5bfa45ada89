//! The row operations of the training forward pass and their backward passes, one row (token)
//! at a time.
//!
//! Forward formulas are those of transformers `LlamaForCausalLM` (`LlamaRMSNorm`,
//! `apply_rotary_pos_emb` with `rotate_half`, `LlamaMLP`, `CrossEntropyLoss`), which the
//! gradient fixtures come from. The backward passes are the chain rule written out; each
//! function says which derivative it takes.

/// RMSNorm of one row: `out = g ⊙ (x · r)` with `r = 1 / sqrt(mean(x²) + eps)`; returns `r`.
/// The sum of squares is taken in f64 as `camelid_kernels::ops::rmsnorm` does.
pub fn rmsnorm(out: &mut [f32], x: &[f32], g: &[f32], eps: f32) -> f32 {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let r = (1.0 / (ss / x.len() as f64 + eps as f64).sqrt()) as f32;
    for ((o, &v), &gi) in out.iter_mut().zip(x).zip(g) {
        *o = gi * (v * r);
    }
    r
}

/// `dx += ∂/∂x` of RMSNorm for one row, given `dy`. With `y_j = g_j x_j r` and
/// `∂r/∂x_j = −r³ x_j / n`:
/// `dx_j = r · (g_j dy_j − x_j · r² · Σ_i g_i dy_i x_i / n)`.
pub fn rmsnorm_backward(dx: &mut [f32], dy: &[f32], x: &[f32], g: &[f32], r: f32) {
    let dot: f64 = dy
        .iter()
        .zip(x)
        .zip(g)
        .map(|((&d, &v), &gi)| (gi * d) as f64 * v as f64)
        .sum();
    let c = (dot / x.len() as f64) as f32 * r * r;
    for (((o, &d), &v), &gi) in dx.iter_mut().zip(dy).zip(x).zip(g) {
        *o += r * (gi * d - v * c);
    }
}

/// `dg[i] += Σ_t dy[t, i] · x[t, i] · r[t]` over the rows `t`: the gain's gradient, summed in
/// the order of the rows.
pub fn rmsnorm_gain_grad(dg: &mut [f32], dy: &[f32], x: &[f32], r: &[f32]) {
    let n = dg.len();
    for ((dyt, xt), &rt) in dy.chunks_exact(n).zip(x.chunks_exact(n)).zip(r) {
        for ((o, &d), &v) in dg.iter_mut().zip(dyt).zip(xt) {
            *o += d * (v * rt);
        }
    }
}

/// Rotates every head of `x: [heads, head_dim]` by the angles whose cosines and sines are `cos`,
/// `sin` (`[head_dim / 2]`), pairing dimension `i` with `i + head_dim / 2` as transformers'
/// `rotate_half` does for Hugging Face checkpoints:
/// `x'[i] = x[i]·cos − x[i+h]·sin`, `x'[i+h] = x[i+h]·cos + x[i]·sin`.
pub fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let h = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        let (a, b) = head.split_at_mut(h);
        for (((a, b), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
            let (x0, x1) = (*a, *b);
            *a = x0 * c - x1 * s;
            *b = x1 * c + x0 * s;
        }
    }
}

/// The backward pass of [`rope`] in place: a rotation's transpose is the rotation by the
/// opposite angle, `dx[i] = dx'[i]·cos + dx'[i+h]·sin`, `dx[i+h] = dx'[i+h]·cos − dx'[i]·sin`.
pub fn rope_backward(dx: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let h = head_dim / 2;
    for head in dx.chunks_exact_mut(head_dim) {
        let (a, b) = head.split_at_mut(h);
        for (((a, b), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
            let (d0, d1) = (*a, *b);
            *a = d0 * c + d1 * s;
            *b = d1 * c - d0 * s;
        }
    }
}

/// SwiGLU's product: `act = silu(gate) ⊙ up`, `silu(x) = x · σ(x)`.
pub fn swiglu(act: &mut [f32], gate: &[f32], up: &[f32]) {
    for ((a, &g), &u) in act.iter_mut().zip(gate).zip(up) {
        *a = g / (1.0 + (-g).exp()) * u;
    }
}

/// The backward pass of [`swiglu`]: `dup = dact · silu(gate)`,
/// `dgate = dact · up · σ(gate) · (1 + gate · (1 − σ(gate)))` (the derivative of `x·σ(x)`).
pub fn swiglu_backward(dgate: &mut [f32], dup: &mut [f32], dact: &[f32], gate: &[f32], up: &[f32]) {
    for ((((dg, du), &da), &g), &u) in dgate
        .iter_mut()
        .zip(dup.iter_mut())
        .zip(dact)
        .zip(gate)
        .zip(up)
    {
        let s = 1.0 / (1.0 + (-g).exp());
        *du = da * (g * s);
        *dg = da * u * (s * (1.0 + g * (1.0 - s)));
    }
}

/// Cross-entropy of one row of logits against `target`: returns `log Σ exp(z) − z[target]`
/// and leaves `softmax(z)` in `z`, minus the one-hot of `target` when `grad` is set (that is
/// `∂loss/∂z`).
///
/// The loss is `−log p[target]` while that probability is a normal float; when it underflows,
/// the log-sum-exp comes from the largest probability instead, `exp(0) / Σ exp(z − max) = 1/Σ`
/// (at least `1 / len`, never underflowing), as `max − log p_max − z[target]`.
pub fn cross_entropy(z: &mut [f32], target: usize, grad: bool) -> f32 {
    let max = lane_max(z);
    let zt = z[target];
    camelid_kernels::ops::softmax(z);
    let pt = z[target];
    let loss = if pt >= 1e-30 {
        -(pt as f64).ln()
    } else {
        (max as f64 - zt as f64) - (lane_max(z) as f64).ln()
    };
    if grad {
        z[target] -= 1.0;
    }
    loss as f32
}

/// The largest element, sixteen lanes at a time (a form the compiler turns into vector maxima).
fn lane_max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in m.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    m.iter().fold(tail, |a, &v| a.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences in f64 of a scalar function of a row, against the analytic
    /// backward passes above.
    fn numeric(f: &dyn Fn(&[f64]) -> f64, x: &[f32]) -> Vec<f64> {
        let h = 1e-3;
        (0..x.len())
            .map(|i| {
                let mut a: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let mut b = a.clone();
                a[i] += h;
                b[i] -= h;
                (f(&a) - f(&b)) / (2.0 * h)
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f64], tol: f64) {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x as f64 - y).abs() <= tol * (1.0 + y.abs()),
                "{i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn rmsnorm_backward_matches_finite_differences() {
        let x = [0.3f32, -1.2, 0.7, 2.0, -0.4, 0.1];
        let g = [1.1f32, 0.9, -0.5, 1.3, 0.2, 0.8];
        let w = [0.5f64, -0.3, 0.8, 0.1, -0.9, 0.4];
        let eps = 1e-5;
        // loss = Σ w ⊙ rmsnorm(x)
        let f = |x: &[f64]| {
            let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
            x.iter()
                .zip(&g)
                .zip(&w)
                .map(|((v, &gi), wi)| gi as f64 * v * r * wi)
                .sum()
        };
        let mut y = [0.0f32; 6];
        let r = rmsnorm(&mut y, &x, &g, eps as f32);
        let dy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let mut dx = [0.0f32; 6];
        rmsnorm_backward(&mut dx, &dy, &x, &g, r);
        close(&dx, &numeric(&f, &x), 1e-4);
    }

    #[test]
    fn rope_backward_is_the_transpose_of_rope() {
        // <rope(x), d> = <x, rope_backward(d)> for any x, d.
        let (cos, sin) = ([0.6f32, -0.2], [0.8f32, 0.98]);
        let x = [0.5f32, -1.0, 2.0, 0.25, 1.5, -0.5, 0.75, 1.0];
        let d = [1.0f32, 0.3, -0.7, 0.2, -1.1, 0.4, 0.9, -0.6];
        let mut rx = x;
        rope(&mut rx, 4, &cos, &sin);
        let mut rd = d;
        rope_backward(&mut rd, 4, &cos, &sin);
        let lhs: f32 = rx.iter().zip(&d).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&rd).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
    }

    #[test]
    fn swiglu_backward_matches_finite_differences() {
        let gate = [0.3f32, -1.2, 2.5, -4.0];
        let up = [1.5f32, 0.7, -0.3, 2.0];
        let da = [0.2f32, -0.5, 1.0, 0.7];
        let (mut dg, mut du) = ([0.0f32; 4], [0.0f32; 4]);
        swiglu_backward(&mut dg, &mut du, &da, &gate, &up);
        let fg = |g: &[f64]| {
            g.iter()
                .zip(&up)
                .zip(&da)
                .map(|((&g, &u), &d)| g / (1.0 + (-g).exp()) * u as f64 * d as f64)
                .sum()
        };
        let fu = |u: &[f64]| {
            u.iter()
                .zip(&gate)
                .zip(&da)
                .map(|((&u, &g), &d)| {
                    let g = g as f64;
                    g / (1.0 + (-g).exp()) * u * d as f64
                })
                .sum()
        };
        close(&dg, &numeric(&fg, &gate), 1e-4);
        close(&du, &numeric(&fu, &up), 1e-4);
    }

    #[test]
    fn cross_entropy_of_a_hopeless_target_stays_finite() {
        // The target's probability underflows f32 (e^-200); the loss is still exact.
        let mut z = [200.0f32, 0.0, 0.0];
        let loss = cross_entropy(&mut z, 1, false);
        assert!((loss - 200.0).abs() < 1e-3, "{loss}");
    }
}
