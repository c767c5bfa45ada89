//! Integration tests of camelid-kernels: formats against llama.cpp's own encoder and decoder
//! (fixtures written by `tools/kernels_quant_reference.py`), and every SIMD path against its
//! scalar twin; the cap on compute threads.

mod ops_twins;
mod quant_reference;
mod simd_twins;

/// `--threads` above the usable cores only makes the threads wait for each other: capped, with
/// a warning that says how to force it, unless forced.
#[test]
fn threads_above_the_cores_are_capped_unless_forced() {
    use camelid_kernels::pool::cap_threads;
    let cap = |requested, cores, forced| cap_threads(requested, cores, forced, "FORCE=1");
    assert_eq!(cap(2, Some(4), false), (2, None));
    assert_eq!(cap(4, Some(4), false), (4, None));
    let (n, w) = cap(16, Some(2), false);
    assert_eq!(n, 2);
    let w = w.unwrap();
    assert!(w.contains("--threads 16 is more than the 2 cores"), "{w}");
    assert!(w.contains("(FORCE=1 keeps 16)"), "{w}");
    assert_eq!(cap(16, Some(2), true), (16, None));
    // A platform that does not tell its cores: nothing to cap to.
    assert_eq!(cap(16, None, false), (16, None));
}
