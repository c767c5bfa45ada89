//! Prompt-pass throughput of the panels (`n` activation rows at once) per weight type on the
//! products of a Llama-3.2-1B layer, in GFLOP/s of wall time: the compute-bound half of a
//! prompt, which a model benchmark mixes with attention and the rest.
//!
//! ```sh
//! cargo build --release -p camelid-kernels --example panel_speed
//! target/release/examples/panel_speed F16 BF16 Q8_0     # CAMELID_THREADS (1), CAMELID_N (512)
//! ```
//!
//! `CAMELID_COLS=C` measures one `[2048, C]` product instead; `CAMELID_ISA` picks the path.
//!
//! Per type: `[2048, 2048]` (q, o), `[512, 2048]` (k, v), `[8192, 2048]` (gate, up) and
//! `[2048, 8192]` (down) against `n` rows of activations, each product three times after a
//! warm-up, the fastest printed, then the layer's FLOPs over the sum of the fastest times.

use std::time::Instant;

use camelid_kernels::interleave::interleave;
use camelid_kernels::quant::{can_quantize, quantize_row};
use camelid_kernels::{DType, Kernels, WeightView};

const SHAPES: [(usize, usize, usize); 4] = [
    (2048, 2048, 2),
    (512, 2048, 2),
    (8192, 2048, 2),
    (2048, 8192, 1),
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let types: Vec<DType> = std::env::args()
        .skip(1)
        .map(|a| DType::from_name(&a).unwrap_or_else(|| panic!("unknown type {a}")))
        .collect();
    let threads = env("CAMELID_THREADS", 1);
    let n = env("CAMELID_N", 512);
    let kernels = Kernels::new(threads);
    println!("isa {}, {threads} threads, n {n}", kernels.isa());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for dtype in types {
        let (mut flops, mut secs) = (0.0, 0.0);
        assert!(can_quantize(dtype), "cannot write {dtype}");
        let mut line = format!("{:<7}", dtype.to_string());
        let extra = env("CAMELID_COLS", 0);
        let shapes: Vec<_> = if extra > 0 {
            vec![(2048, extra, 1)]
        } else {
            SHAPES.to_vec()
        };
        for (rows, cols, times) in shapes {
            let rb = dtype.row_bytes(cols).expect("block size divides the width");
            let mut w = vec![0u8; rows * rb];
            for r in 0..rows {
                let row: Vec<f32> = (0..cols).map(|_| rand() * 0.04).collect();
                let dst = &mut w[r * rb..(r + 1) * rb];
                quantize_row(dtype, &row, dst);
            }
            let view = if kernels.interleaves(dtype) {
                w = interleave(dtype, rows, cols, &w).expect("interleavable");
                WeightView::interleaved(dtype, rows, cols, &w)
            } else {
                WeightView::new(dtype, rows, cols, &w)
            }
            .expect("weights match their shape");
            let x: Vec<f32> = (0..n * cols).map(|_| rand()).collect();
            let mut out = vec![0.0; n * rows];
            kernels.matmul(&view, &x, &mut out, threads);
            let best = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    kernels.matmul(&view, &x, &mut out, threads);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            let f = 2.0 * (rows * cols * n) as f64;
            line += &format!("  {rows}x{cols} {:6.1}", f / best / 1e9);
            flops += f * times as f64;
            secs += best * times as f64;
        }
        println!("{line}  layer {:6.1} GFLOP/s", flops / secs / 1e9);
    }
}
