//! safetensors: files written by the reference implementation, read back and compared with what
//! it reports (testdata/safetensors/reference.json, from tools/safetensors_reference.py).

use camelid_formats::safetensors::{SafetensorsModel, StDtype, StTensor};
use serde_json::Value as Json;

use crate::{fixture, scratch_dir, testdata};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `model`'s tensors listed in `file` (one entry of reference.json) against it.
fn assert_matches(model: &SafetensorsModel, file: &Json, shard: usize) {
    let name = file["file"].as_str().unwrap();
    for r in file["tensors"].as_array().unwrap() {
        let tname = r["name"].as_str().unwrap();
        let t: &StTensor = model
            .tensor(tname)
            .unwrap_or_else(|| panic!("{name}: no {tname}"));
        let what = format!("{name}: {tname}");
        assert_eq!(t.dtype.name(), r["dtype"].as_str().unwrap(), "{what}");
        let shape: Vec<usize> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{what}");
        assert_eq!(t.file, shard, "{what}");
        assert_eq!(
            t.data_range.start as u64,
            r["data_start"].as_u64().unwrap(),
            "{what}"
        );
        assert_eq!(hex(model.data(t)), r["data"].as_str().unwrap(), "{what}");
        assert_eq!(t.n_elements(), shape.iter().product::<usize>());
    }
}

#[test]
fn single_file_matches_the_reference_reader() {
    let reference = fixture("safetensors/reference.json");
    let file = &reference["files"][0];
    assert_eq!(file["file"], "single.safetensors");
    let model = SafetensorsModel::open(&testdata().join("safetensors/single.safetensors")).unwrap();
    assert_eq!(
        model.tensors().len(),
        file["tensors"].as_array().unwrap().len()
    );
    assert_matches(&model, file, 0);

    let mut metadata: Vec<(String, String)> = model.metadata().to_vec();
    metadata.sort();
    let mut expected: Vec<(String, String)> = file["metadata"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    expected.sort();
    assert_eq!(metadata, expected);

    // Header order is file order (the reference writer sorts by alignment, then name).
    let header_len = file["header_len"].as_u64().unwrap() as usize;
    let starts: Vec<usize> = model.tensors().iter().map(|t| t.data_range.start).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    assert!(starts.iter().all(|&s| s >= 8 + header_len));

    let bf16 = model.tensor("lm_head.weight").unwrap();
    assert_eq!(bf16.dtype, StDtype::BF16);
    // bfloat16 1.0 is 0x3f80, little-endian.
    assert_eq!(&model.data(bf16)[..2], &[0x80, 0x3f]);
}

#[test]
fn from_bytes_reads_like_open() {
    let path = testdata().join("safetensors/single.safetensors");
    let opened = SafetensorsModel::open(&path).unwrap();
    let read =
        SafetensorsModel::from_bytes(std::fs::read(&path).unwrap(), "x.safetensors").unwrap();
    assert_eq!(opened.tensors(), read.tensors());
    for t in opened.tensors() {
        assert_eq!(opened.data(t), read.data(t));
    }
}

#[test]
fn sharded_folder_matches_the_reference_reader() {
    let reference = fixture("safetensors/reference.json");
    let dir = testdata().join("safetensors/sharded");
    for path in [dir.clone(), dir.join("model.safetensors.index.json")] {
        let model = SafetensorsModel::open(&path).unwrap();
        let shards = model.shard_paths();
        assert_eq!(shards.len(), 2);
        assert!(shards[0].ends_with("model-00001-of-00002.safetensors"));
        let files = reference["files"].as_array().unwrap();
        assert_matches(&model, &files[1], 0);
        assert_matches(&model, &files[2], 1);
        let weight_map = reference["weight_map"].as_object().unwrap();
        assert_eq!(model.tensors().len(), weight_map.len());
        for (tensor, file) in weight_map {
            let t = model.tensor(tensor).unwrap();
            assert!(shards[t.file].ends_with(file.as_str().unwrap()), "{tensor}");
        }
        assert_eq!(model.metadata(), [("format".to_owned(), "pt".to_owned())]);
    }
}

#[test]
fn folder_with_a_single_file() {
    let dir = scratch_dir("st_single_folder");
    std::fs::copy(
        testdata().join("safetensors/single.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let model = SafetensorsModel::open(&dir).unwrap();
    assert_eq!(model.tensors().len(), 8);
    let empty = scratch_dir("st_empty_folder");
    let e = SafetensorsModel::open(&empty).unwrap_err().to_string();
    assert!(
        e.contains("neither model.safetensors.index.json nor model.safetensors"),
        "{e}"
    );
}

/// Copies the sharded fixture into a scratch folder and rewrites its index.
fn sharded_with_index(name: &str, index: &str) -> std::path::PathBuf {
    let dir = scratch_dir(name);
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        std::fs::copy(
            testdata().join("safetensors/sharded").join(shard),
            dir.join(shard),
        )
        .unwrap();
    }
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    dir
}

#[test]
fn inconsistent_shard_indexes_are_rejected() {
    let cases = [
        (
            r#"{"weight_map": {"x": "../model-00001-of-00002.safetensors"}}"#,
            "not a file name in the index's folder",
        ),
        (
            r#"{"weight_map": {"x": "/etc/passwd"}}"#,
            "not a file name in the index's folder",
        ),
        (
            r#"{"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}"#,
            "weight_map puts tensor \"lm_head.weight\" in \"model-00001-of-00002.safetensors\", but that shard does not hold it",
        ),
        (
            r#"{"weight_map": {"x": "missing.safetensors"}}"#,
            "missing.safetensors",
        ),
        (r#"{"weight_map": {"x": 3}}"#, "expected a file name string"),
        (r#"{"weight_map": {}}"#, "\"weight_map\" is empty"),
        (
            r#"{"metadata": {}}"#,
            "expected an object with a \"weight_map\" object",
        ),
        (
            "{\n  \"weight_map\": {,}\n}",
            "index is not valid JSON: key must be a string at line 2 column 18",
        ),
    ];
    for (i, (index, want)) in cases.iter().enumerate() {
        let dir = sharded_with_index(&format!("st_bad_index_{i}"), index);
        let e = SafetensorsModel::open(&dir).unwrap_err().to_string();
        assert!(
            e.contains(want),
            "case {i}: {e:?} does not contain {want:?}"
        );
    }
    // The same tensor in two shards.
    let dir = sharded_with_index(
        "st_dup_shard",
        r#"{"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}"#,
    );
    std::fs::copy(
        dir.join("model-00002-of-00002.safetensors"),
        dir.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    let index = r#"{"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors", "lm_head.weight": "model-00001-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    let e = SafetensorsModel::open(&dir).unwrap_err().to_string();
    assert!(e.contains("is also in shard"), "{e}");
}

#[test]
fn dtype_sizes_follow_the_spec() {
    for (name, bits) in [
        ("F32", 32),
        ("F16", 16),
        ("BF16", 16),
        ("F8_E4M3", 8),
        ("F4", 4),
        ("C64", 64),
    ] {
        assert_eq!(StDtype::from_name(name).unwrap().bits(), bits, "{name}");
    }
    assert_eq!(StDtype::F4.bytes_for(3), None, "half a byte");
    assert_eq!(StDtype::F4.bytes_for(4), Some(2));
    assert_eq!(StDtype::from_name("f32"), None, "names are case-sensitive");
}

#[test]
fn json_header_padding_and_errors_point_into_the_header() {
    // The spec allows trailing spaces after the JSON.
    let header = br#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}    "#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[7, 9]);
    let m = SafetensorsModel::from_bytes(file, "padded.safetensors").unwrap();
    assert_eq!(m.data(m.tensor("w").unwrap()), [7, 9]);

    let header = b"{\n\"w\": oops}";
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    let e = SafetensorsModel::from_bytes(file, "bad.safetensors")
        .unwrap_err()
        .to_string();
    // "oops" starts at line 2, column 6: byte 8 + 2 + 5.
    assert!(
        e.starts_with("bad.safetensors: invalid safetensors at byte 15: header is not valid JSON"),
        "{e}"
    );
}
