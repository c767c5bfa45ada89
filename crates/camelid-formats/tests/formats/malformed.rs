//! Replays testdata/malformed/: every hand-made bad file (made by tools/make_malformed.py) must
//! be rejected with the message testdata/malformed/expected.json names; every input the fuzzers
//! kept (`fuzz-*`) must parse or fail, but never panic.

use std::panic::AssertUnwindSafe;

use camelid_formats::gguf::Gguf;
use camelid_formats::pth::PthFile;
use camelid_formats::safetensors::SafetensorsModel;

use crate::{fixture, testdata};

/// Runs `parse` on every file of `testdata/malformed/<folder>`; returns how many were checked.
fn replay(folder: &str, parse: impl Fn(Vec<u8>, &str) -> Result<(), String>) -> usize {
    let expected = fixture("malformed/expected.json");
    let dir = testdata().join("malformed").join(folder);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut hand_made = 0;
    for path in &entries {
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(path).unwrap();
        let key = format!("{folder}/{name}");
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| parse(bytes, name)))
            .unwrap_or_else(|_| panic!("{key}: the parser panicked"));
        if name.starts_with("fuzz-") {
            continue;
        }
        hand_made += 1;
        let want = expected[&key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not listed in testdata/malformed/expected.json"));
        match result {
            Ok(()) => panic!("{key}: accepted, expected an error containing {want:?}"),
            Err(msg) => {
                assert!(
                    msg.contains(want),
                    "{key}: error {msg:?} does not contain {want:?}"
                );
                assert!(
                    msg.starts_with(name),
                    "{key}: error {msg:?} does not name the file"
                );
            }
        }
    }
    let listed = expected
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(&format!("{folder}/")))
        .count();
    assert_eq!(
        hand_made,
        listed,
        "expected.json lists files missing from {}",
        dir.display()
    );
    entries.len()
}

#[test]
fn malformed_gguf_files_are_rejected_with_their_reason() {
    let n = replay("gguf", |bytes, name| {
        Gguf::from_bytes(bytes, name)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    assert!(n >= 30, "only {n} files");
}

#[test]
fn every_truncation_of_a_valid_gguf_is_an_error() {
    // Cutting a valid file anywhere before its last tensor's end must give an error, not a panic.
    let bytes = std::fs::read(testdata().join("gguf/gguf_py_writer.gguf")).unwrap();
    let full = Gguf::from_bytes(bytes.clone(), "full.gguf").unwrap();
    let end = full
        .tensors()
        .iter()
        .map(|t| t.data_range.end)
        .max()
        .unwrap();
    for len in 0..end {
        let err = Gguf::from_bytes(bytes[..len].to_vec(), "cut.gguf").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cut.gguf: invalid GGUF at byte "),
            "{err}"
        );
    }
}

#[test]
fn malformed_safetensors_files_are_rejected_with_their_reason() {
    let n = replay("safetensors", |bytes, name| {
        SafetensorsModel::from_bytes(bytes, name)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    assert!(n >= 18, "only {n} files");
}

#[test]
fn every_truncation_of_a_valid_safetensors_is_an_error() {
    let bytes = std::fs::read(testdata().join("safetensors/single.safetensors")).unwrap();
    SafetensorsModel::from_bytes(bytes.clone(), "full.safetensors").unwrap();
    for len in 0..bytes.len() {
        let err =
            SafetensorsModel::from_bytes(bytes[..len].to_vec(), "cut.safetensors").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cut.safetensors: invalid safetensors at byte "),
            "{err}"
        );
    }
}

#[test]
fn hostile_pth_files_are_refused_with_their_reason() {
    // Pickles that call os.system, eval or unknown globals, truncated and compressed archives
    // (a 16 MiB deflate bomb among them), storages that lie: each an error naming what and
    // where, and nothing run.
    let n = replay("pth", |bytes, name| {
        PthFile::from_bytes(bytes, name)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    assert!(n >= 20, "only {n} files");
}

#[test]
fn every_truncation_of_a_torch_save_file_is_an_error() {
    let path = testdata().join("meta/llama3-gqa-mp2-f32/consolidated.01.pth");
    let bytes = std::fs::read(path).unwrap();
    PthFile::from_bytes(bytes.clone(), "full.pth").unwrap();
    // Every cut in the directory and pickle region, and a stride through the data.
    let step = |len: usize| {
        if len + 4096 > bytes.len() || len < 4096 {
            1
        } else {
            97
        }
    };
    let mut len = 0;
    while len < bytes.len() {
        let err = PthFile::from_bytes(bytes[..len].to_vec(), "cut.pth").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cut.pth: invalid PyTorch checkpoint at byte "),
            "{err}"
        );
        len += step(len);
    }
}
