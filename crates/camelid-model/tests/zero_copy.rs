//! A GGUF's weights are held once. The CPU backend copies the matrices it multiplies into memory
//! of their own (`Tensor::lay_out`: on huge pages, interleaved where its kernels want) and lets
//! the mapped pages go as it copies; everything else is used in place from the memory map. A
//! counting allocator measures the heap (the tensor index, the small norm gains, the buffers,
//! and the copies of matrices under a huge page); the process's peak resident memory measures
//! the rest. (Its own test binary, so no other test allocates concurrently.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn gguf_weights_are_held_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::var_os("CAMELID_ASSETS")
        .map_or_else(|| root.join("assets"), Into::into)
        .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} missing: run scripts/fetch-assets.sh",
        path.display()
    );
    let file_size = std::fs::metadata(&path).unwrap().len() as usize;

    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let model = camelid_model::Model::load(&path).unwrap();
    let mut state = model.new_state(4).unwrap();
    let state_bytes = {
        let c = &model.config;
        2 * c.n_layers * 4 * c.kv_dim() * 4
    };
    let mut top = 0u32;
    model
        .forward(&mut state, &[1, 2, 3, 4], false, |_, l| {
            top = l
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0 as u32
        })
        .unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let copied = laid_out_bytes(&path);
    let resident = peak_resident_bytes();
    eprintln!(
        "file {file_size} bytes, heap peak {peak} bytes (KV cache {state_bytes}, matrices laid \
         out {copied}), peak resident {resident:?} bytes, top token {top}"
    );
    // Metadata (the 49,152-token vocabulary strings), norms and activation buffers: a few MB.
    assert!(
        peak < copied + file_size / 10,
        "heap peak {peak} bytes is not small next to the {file_size}-byte file beyond the \
         {copied} bytes of the matrices laid out: weights were copied twice"
    );
    // The file once, the test binary and its libraries: not the file's mapped pages beside
    // the copies.
    if let Some(resident) = resident {
        assert!(
            resident < file_size + file_size / 5 + (32 << 20),
            "peak resident {resident} bytes for a {file_size}-byte file: weights held twice"
        );
    }
}

/// The process's peak resident set (`VmHWM`), where Linux says.
fn peak_resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

/// Bytes of the matrices the CPU backend lays out: every layer's, and the output matrix (the
/// token embedding when it is also the output matrix).
fn laid_out_bytes(path: &Path) -> usize {
    let g = camelid_formats::gguf::Gguf::open(path).unwrap();
    let tied = g.tensor("output.weight").is_none();
    g.tensors()
        .iter()
        .filter(|t| {
            t.name.starts_with("blk.")
                || t.name == "output.weight"
                || (tied && t.name == "token_embd.weight")
        })
        .filter(|t| t.dims.len() == 2 && t.name.ends_with(".weight"))
        .map(|t| t.n_bytes())
        .sum()
}
