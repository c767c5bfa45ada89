//! Matrix-vector throughput per weight type: the decode-time kernel, in GB/s of weights read.
//!
//! ```sh
//! cargo run --release -p camelid-kernels --example matvec            # every type
//! cargo run --release -p camelid-kernels --example matvec -- Q4_0 F16 # some types
//! CAMELID_ISA=avx2 cargo run --release -p camelid-kernels --example matvec
//! ```
//!
//! Shapes 2048×8192 and 8192×2048 (a Llama 3.2 1B FFN), 1 and 2 threads. The products cycle
//! through copies of the matrix totalling about 1 GiB, so the weights come from memory and not
//! from the last-level cache, as they do when a model decodes. `CAMELID_BENCH_CEILING` (GB/s,
//! default 80) sets the machine's bandwidth ceiling the last column compares with;
//! `CAMELID_BENCH_PRECISION=exact` times the exact path; `CAMELID_BENCH_N=64` multiplies 64
//! activation rows at once (the prompt pass) and reports GMAC/s instead of GB/s;
//! `CAMELID_BENCH_SHAPE=ROWSxCOLS` times one other shape.
//!
//! On a busy machine wall-clock figures say little; on Linux the last column divides the bytes by
//! the CPU time the process's threads actually ran (`/proc/self/task/*/schedstat`), per thread:
//! what each thread streams while it holds a core.

use std::time::{Duration, Instant};

use camelid_kernels::quant::{can_quantize, quantize_row};
use camelid_kernels::{DType, Kernels, Precision, WeightView};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let types: Vec<DType> = if args.is_empty() {
        DType::ALL.to_vec()
    } else {
        args.iter()
            .map(|a| DType::from_name(a).unwrap_or_else(|| panic!("unknown type {a}")))
            .collect()
    };
    let ceiling: f64 = std::env::var("CAMELID_BENCH_CEILING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80.0);
    let precision = match std::env::var("CAMELID_BENCH_PRECISION").as_deref() {
        Ok("exact") => Precision::Exact,
        _ => Precision::Fast,
    };
    let n: usize = std::env::var("CAMELID_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // `CAMELID_BENCH_SHAPE=256x2048` times another shape (one small enough for the L2 cache,
    // with `CAMELID_BENCH_MIB=1`, measures a kernel's arithmetic without the memory).
    let shapes: Vec<(usize, usize)> = match std::env::var("CAMELID_BENCH_SHAPE") {
        Ok(s) => {
            let (r, c) = s.split_once('x').expect("CAMELID_BENCH_SHAPE is ROWSxCOLS");
            vec![(r.parse().expect("rows"), c.parse().expect("cols"))]
        }
        Err(_) => vec![(2048, 8192), (8192, 2048)],
    };
    let mut kernels = Kernels::new(2);
    kernels.precision = precision;
    println!(
        "isa {}, precision {precision:?}, ceiling {ceiling} GB/s",
        kernels.isa()
    );
    println!(
        "{:<6} {:>11} {:>3} {:>9} {:>8} {:>7} {:>10}",
        "type", "rows×cols", "thr", "µs/call", "GB/s", "% ceil", "GB/cpu-s"
    );
    for dtype in types {
        for &(rows, cols) in &shapes {
            let copies = make_copies(dtype, rows, cols);
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let mut out = vec![0.0f32; n * rows];
            for threads in [1, 2] {
                let views: Vec<WeightView> = copies
                    .iter()
                    .map(|c| WeightView::new(dtype, rows, cols, c).unwrap())
                    .collect();
                // Warm up: touch every copy once.
                for v in &views {
                    kernels.matmul(v, &x, &mut out, threads);
                }
                let start = Instant::now();
                let cpu0 = cpu_seconds();
                let mut calls = 0usize;
                while start.elapsed() < Duration::from_millis(600) {
                    for v in &views {
                        kernels.matmul(v, &x, &mut out, threads);
                    }
                    calls += views.len();
                }
                let secs = start.elapsed().as_secs_f64();
                let cpu = cpu_seconds().zip(cpu0).map(|(a, b)| a - b);
                // With several activation rows, count multiply-adds (as "bytes") instead.
                let bytes = if n == 1 {
                    copies[0].len() as f64 * calls as f64
                } else {
                    (rows * cols * n) as f64 * calls as f64
                };
                let gbs = bytes / secs / 1e9;
                let per_cpu = cpu.map_or("-".to_string(), |c| {
                    format!("{:.2}", bytes / (c / threads as f64) / 1e9)
                });
                println!(
                    "{:<6} {:>11} {:>3} {:>9.1} {:>8.2} {:>6.1}% {:>10}",
                    dtype.name(),
                    format!("{rows}×{cols}"),
                    threads,
                    secs / calls as f64 * 1e6,
                    gbs,
                    gbs / ceiling * 100.0,
                    per_cpu
                );
            }
        }
    }
}

/// Copies of one random `[rows, cols]` matrix of `dtype`, about `CAMELID_BENCH_MIB` (default
/// 1024) MiB in all.
fn make_copies(dtype: DType, rows: usize, cols: usize) -> Vec<Vec<u8>> {
    let rb = dtype.row_bytes(cols).expect("cols fit the block size");
    // Quantize 16 distinct rows and repeat them: the kernels' speed does not depend on values.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut pattern = vec![0u8; 16 * rb];
    for r in 0..16 {
        let row: Vec<f32> = (0..cols)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        if can_quantize(dtype) {
            quantize_row(dtype, &row, &mut pattern[r * rb..][..rb]);
        } else {
            // The grid i-quants: random bytes (the kernels' speed does not depend on the values).
            for (b, v) in pattern[r * rb..][..rb].iter_mut().zip(&row) {
                *b = v.to_bits() as u8;
            }
        }
    }
    let matrix: Vec<u8> = pattern.iter().copied().cycle().take(rows * rb).collect();
    let total: usize = std::env::var("CAMELID_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        << 20;
    let n = (total / matrix.len()).max(1);
    vec![matrix; n]
}

/// CPU seconds run by all threads of this process so far (Linux), `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}
