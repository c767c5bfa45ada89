//! The FMA peak of one core and the throughput of [`Kernels::gemm_f32`] on the products of a
//! training step of llama2.c's stories15M shape (1024 tokens, d 288, ffn 768, vocab 32000),
//! one thread, in FLOP per second of CPU time (user + system, from `/proc/self/stat`), which a
//! machine shared with other jobs disturbs less than the wall clock.
//!
//! ```sh
//! cargo run --release -p camelid-kernels --example gemm_speed
//! ```
//!
//! The peak is twelve independent chains of `vfmadd` on the widest vectors the CPU has
//! (AVX-512, else AVX2): `2 · lanes` FLOP per FMA.

use camelid_kernels::{GemmF32, Kernels};

/// CPU seconds of this process (Linux; NaN elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    (f[11] + f[12]) / 100.0
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains512(iters: usize) -> f32 {
        let b = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        let mut a = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = _mm512_fmadd_ps(*v, b, c);
            }
        }
        a.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    /// # Safety
    /// AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains256(iters: usize) -> f32 {
        let b = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut a = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = _mm256_fmadd_ps(*v, b, c);
            }
        }
        let mut out = [0.0f32; 8];
        for v in a {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds eight floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            for (o, l) in out.iter_mut().zip(lanes) {
                *o += l;
            }
        }
        out.iter().sum()
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        use camelid_kernels::Isa;
        let iters = 100_000_000;
        let (lanes, t0) = (Isa::best(), cpu_seconds());
        let (width, sink) = match lanes {
            // SAFETY: the CPU has AVX-512 (`Isa::best`).
            Isa::Avx512 => (16, unsafe { peak::chains512(iters) }),
            // SAFETY: the CPU has AVX2 and FMA.
            Isa::Avx2 => (8, unsafe { peak::chains256(iters) }),
            // Scalar (Neon is not an x86 path).
            _ => (0, 0.0),
        };
        if width > 0 {
            let flop = iters as f64 * 12.0 * 2.0 * width as f64;
            println!(
                "FMA peak ({} lanes): {:.1} GFLOP/s per core (checksum {sink:.3})",
                width,
                flop / (cpu_seconds() - t0) / 1e9
            );
        }
    }
    let k = Kernels::new(1);
    // (m, n, k, a transposed, what)
    let shapes = [
        (1024, 32000, 288, false, "logits = xn · W_outᵀ"),
        (1024, 288, 32000, false, "dxn = dlogits · W_out"),
        (32000, 288, 1024, true, "dW_out = dlogitsᵀ · xn"),
        (1024, 768, 288, false, "gate = xn · W_gateᵀ"),
        (1024, 288, 768, false, "dxn = dgate · W_gate"),
        (768, 288, 1024, true, "dW_gate = dgateᵀ · xn"),
        (256, 256, 48, false, "attention S = Q·Kᵀ (one head)"),
    ];
    for (m, n, kk, a_trans, what) in shapes {
        let lda = if a_trans { m } else { kk };
        let a: Vec<f32> = (0..m * kk).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let b: Vec<f32> = (0..kk * n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let mut c = vec![0.0f32; m * n];
        let g = GemmF32 {
            m,
            n,
            k: kk,
            a: &a,
            lda,
            a_trans,
            b: &b,
            ldb: n,
        };
        k.gemm_f32(&g, &mut c, n, 1);
        let flop = 2.0 * (m * n * kk) as f64;
        // About 0.4 s each: the CPU clock ticks every 10 ms.
        let reps = (4e10 / flop).ceil() as usize;
        let t0 = cpu_seconds();
        for _ in 0..reps {
            k.gemm_f32(&g, &mut c, n, 1);
        }
        let secs = cpu_seconds() - t0;
        println!(
            "{m:>5} x {n:>5} x {kk:>5} {what:<32} {:.1} GFLOP/s",
            flop * reps as f64 / secs / 1e9
        );
    }
}
