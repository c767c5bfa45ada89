//! Loading a GGUF uses the memory map in place: the heap holds the tensor index, the small norm
//! gains and the buffers, and of the weights only the matrices the kernel path interleaves
//! (`camelid_kernels::interleave`: a copy whose mapped pages are let go). A counting allocator
//! measures it. (Its own test binary, so no other test allocates concurrently.)

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
fn gguf_weights_stay_in_the_memory_map() {
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
    let copied = interleaved_bytes(&path);
    eprintln!(
        "file {file_size} bytes, heap peak {peak} bytes (KV cache {state_bytes}, interleaved \
         {copied}), top token {top}"
    );
    // Metadata (the 49,152-token vocabulary strings), norms and activation buffers: a few MB.
    assert!(
        peak < copied + file_size / 10,
        "heap peak {peak} bytes is not small next to the {file_size}-byte file beyond the \
         {copied} interleaved bytes: weights were copied"
    );
}

/// Bytes of the matrices the CPU backend interleaves on this machine's kernel path: those of
/// a type the path interleaves, the token embedding only when it is also the output matrix.
fn interleaved_bytes(path: &Path) -> usize {
    let g = camelid_formats::gguf::Gguf::open(path).unwrap();
    let kernels = camelid_kernels::Kernels::new(1);
    let tied = g.tensor("output.weight").is_none();
    g.tensors()
        .iter()
        .filter(|t| t.name.starts_with("blk.") || t.name == "output.weight" || tied)
        .filter(|t| t.dims.len() == 2 && t.name.ends_with(".weight"))
        .filter(|t| {
            camelid_kernels::DType::from_name(t.ggml_type.name()).is_some_and(|d| {
                kernels.interleaves(d)
                    && camelid_kernels::interleave::fits(d, t.dims[1] as usize, t.dims[0] as usize)
            })
        })
        .map(|t| t.n_bytes())
        .sum()
}
