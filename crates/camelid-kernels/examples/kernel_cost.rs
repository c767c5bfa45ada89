//! A fixed amount of matrix-vector work per weight type, for counting instructions rather than
//! timing: the compute cost per weight byte of the decode kernels (`nt = 1` tiles).
//!
//! ```sh
//! cargo build --release -p camelid-kernels --example kernel_cost
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/kernel_cost F16 Q4_0
//! callgrind_annotate --inclusive=yes cg.out | grep tile_
//! ```
//!
//! Each type gets `CAMELID_COST_CALLS` (default 20) products of one `[rows, 4096]` matrix
//! (`CAMELID_COST_ROWS`, default 64: half a MiB of F16, inside a 1 MiB L2), with one activation row on one thread; the first call is a warm-up that also
//! builds the f16 table, and then
//! [`ROUNDS`] rounds run, the fastest printed (`ns/byte`). Divide a tile function's inclusive instruction count by the bytes it
//! read (printed per type) for instructions per weight byte. Valgrind has no AVX-512, so under
//! callgrind the AVX2 path runs (as `CAMELID_ISA=avx2` would choose it); without valgrind the
//! program also prints wall time per call, which on a shared machine is only indicative.

use std::time::Instant;

use camelid_kernels::interleave::interleave;
use camelid_kernels::quant::{can_quantize, quantize_row};
use camelid_kernels::{DType, Kernels, Precision, WeightView};

const COLS: usize = 4096;
/// Rounds of `calls` products each (the fastest is reported).
const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let types: Vec<DType> = if args.is_empty() {
        DType::ALL.to_vec()
    } else {
        args.iter()
            .map(|a| DType::from_name(a).unwrap_or_else(|| panic!("unknown type {a}")))
            .collect()
    };
    let calls: usize = std::env::var("CAMELID_COST_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rows: usize = std::env::var("CAMELID_COST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut kernels = Kernels::new(1);
    if let Ok("exact") = std::env::var("CAMELID_BENCH_PRECISION").as_deref() {
        kernels.precision = Precision::Exact;
    }
    println!("isa {}, precision {:?}", kernels.isa(), kernels.precision);
    println!(
        "{:<6} {:>12} {:>10} {:>9}",
        "type", "bytes/call", "calls", "ns/byte"
    );
    for dtype in types {
        let rb = dtype.row_bytes(COLS).expect("COLS fits every block size");
        let mut w = vec![0u8; rows * rb];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for r in 0..rows {
            let row: Vec<f32> = (0..COLS)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            if can_quantize(dtype) {
                quantize_row(dtype, &row, &mut w[r * rb..][..rb]);
            } else {
                // The grid i-quants: random bytes (the kernels' speed does not depend on the values).
                for (b, v) in w[r * rb..][..rb].iter_mut().zip(&row) {
                    *b = v.to_bits() as u8;
                }
            }
        }
        let x: Vec<f32> = (0..COLS)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let mut out = vec![0.0f32; rows];
        // The file's layout, and the interleaved one where this path has it (`name/x8`).
        let il = interleave(dtype, rows, COLS, &w).filter(|_| kernels.interleaves(dtype));
        let mut views = vec![(
            dtype.name().to_string(),
            WeightView::new(dtype, rows, COLS, &w).expect("whole rows"),
        )];
        if let Some(il) = &il {
            let view = WeightView::interleaved(dtype, rows, COLS, il).expect("whole rows");
            views.push((format!("{}/x8", dtype.name()), view));
        }
        for (name, view) in views {
            kernels.matmul(&view, &x, &mut out, 1);
            // The fastest of a few rounds: on a shared machine the slower ones lost the core.
            let mut secs = f64::INFINITY;
            for _ in 0..ROUNDS {
                let start = Instant::now();
                for _ in 0..calls {
                    kernels.matmul(&view, &x, &mut out, 1);
                }
                secs = secs.min(start.elapsed().as_secs_f64());
            }
            println!(
                "{:<6} {:>12} {:>10} {:>9.4}",
                name,
                w.len(),
                ROUNDS * calls + 1,
                secs * 1e9 / (calls * w.len()) as f64
            );
            std::hint::black_box(&out);
        }
    }
}
