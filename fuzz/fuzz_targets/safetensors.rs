//! Feeds arbitrary bytes to the safetensors reader. Beyond "no panic, no hang, no unbounded
//! allocation": an accepted file's tensors tile its data exactly and each one's byte length
//! matches its dtype and shape.
#![no_main]

use camelid_formats::safetensors::SafetensorsModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = SafetensorsModel::from_bytes(data.to_vec(), "fuzz.safetensors") else {
        return;
    };
    let mut ranges: Vec<_> = model
        .tensors()
        .iter()
        .map(|t| t.data_range.clone())
        .collect();
    ranges.sort_by_key(|r| (r.start, r.end));
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "tensors must tile the data");
    }
    if let Some(last) = ranges.last() {
        assert_eq!(last.end, data.len());
    }
    for t in model.tensors() {
        let bytes = model.data(t);
        let bits = t.n_elements() as u128 * t.dtype.bits() as u128;
        assert_eq!(bytes.len() as u128 * 8, bits, "{}", t.name);
        assert_eq!(model.tensor(&t.name), Some(t));
    }
    let _ = model.metadata();
});
