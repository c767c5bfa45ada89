//! GGUF: the reader against gguf-py's view of real files, the writer against gguf-py's writer,
//! and writer → reader round trips.

use std::io::Write;

use camelid_formats::Error;
use camelid_formats::gguf::{GgmlType, Gguf, GgufWriter, Value, ValueType};
use serde_json::Value as Json;

use crate::{asset, fixture, scratch_dir, testdata};

#[test]
fn ggml_type_table_matches_gguf_py() {
    let reference = fixture("gguf_reference.json");
    let types = reference["ggml_types"].as_array().unwrap();
    assert_eq!(
        types.len(),
        GgmlType::ALL.len(),
        "gguf-py and camelid know different type sets"
    );
    for t in types {
        let id = t["id"].as_u64().unwrap() as u32;
        let ours = GgmlType::from_id(id).unwrap_or_else(|| panic!("id {id} unknown: {t}"));
        assert_eq!(ours.name(), t["name"].as_str().unwrap());
        assert_eq!(
            ours.block_size() as u64,
            t["block_size"].as_u64().unwrap(),
            "{t}"
        );
        assert_eq!(
            ours.type_size() as u64,
            t["type_size"].as_u64().unwrap(),
            "{t}"
        );
        assert_eq!(ours.id(), id);
    }
}

#[test]
fn value_type_ids_match_gguf_py() {
    let reference = fixture("gguf_reference.json");
    let types = reference["value_types"].as_array().unwrap();
    assert_eq!(types.len(), 13);
    for t in types {
        let id = t["id"].as_u64().unwrap() as u32;
        let ours = ValueType::from_id(id).unwrap();
        assert_eq!(ours.name(), t["name"].as_str().unwrap());
        assert_eq!(ours.id(), id);
    }
    assert_eq!(ValueType::from_id(13), None);
}

/// Compares one of our values with gguf-py's JSON rendering of it.
fn assert_value_eq(ours: &Value, reference: &Json, what: &str) {
    match reference {
        Json::Bool(b) => assert_eq!(ours.as_bool(), Some(*b), "{what}"),
        Json::String(s) => assert_eq!(ours.as_str(), Some(s.as_str()), "{what}"),
        Json::Number(n) if n.is_f64() => {
            // gguf-py widened the f32 to a double exactly, so equality is exact.
            assert_eq!(ours.as_f64(), n.as_f64(), "{what}: {ours:?}");
        }
        Json::Number(n) => assert_eq!(ours.as_i64(), n.as_i64(), "{what}: {ours:?}"),
        other => panic!("{what}: unexpected reference value {other}"),
    }
}

#[test]
fn real_files_match_gguf_py() {
    let reference = fixture("gguf_reference.json");
    for file in reference["files"].as_array().unwrap() {
        let rel = file["file"].as_str().unwrap();
        let gguf = Gguf::open(&asset(rel)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u64::from(gguf.version()),
            file["version"].as_u64().unwrap(),
            "{rel}"
        );
        assert_eq!(
            gguf.alignment(),
            file["alignment"].as_u64().unwrap(),
            "{rel}"
        );

        let metadata = file["metadata"].as_array().unwrap();
        assert_eq!(
            gguf.metadata().len(),
            metadata.len(),
            "{rel}: metadata count"
        );
        for ((key, value), m) in gguf.metadata().iter().zip(metadata) {
            let what = format!("{rel}: {key}");
            assert_eq!(key, m["key"].as_str().unwrap(), "{rel}: metadata order");
            assert_eq!(value.type_name(), m["type"].as_str().unwrap(), "{what}");
            assert_eq!(gguf.get(key), Some(value));
            match value {
                Value::Array(elem, items) => {
                    assert_eq!(elem.name(), m["element_type"].as_str().unwrap(), "{what}");
                    assert_eq!(items.len() as u64, m["len"].as_u64().unwrap(), "{what}");
                    for sample in m["samples"].as_array().unwrap() {
                        let i = sample[0].as_u64().unwrap() as usize;
                        assert_value_eq(&items[i], &sample[1], &format!("{what}[{i}]"));
                    }
                }
                _ => assert_value_eq(value, &m["value"], &what),
            }
        }

        let tensors = file["tensors"].as_array().unwrap();
        assert_eq!(gguf.tensors().len(), tensors.len(), "{rel}: tensor count");
        if !tensors.is_empty() {
            assert_eq!(
                gguf.data_offset(),
                file["data_offset"].as_u64().unwrap(),
                "{rel}"
            );
        }
        for (t, r) in gguf.tensors().iter().zip(tensors) {
            let what = format!("{rel}: tensor {}", t.name);
            assert_eq!(t.name, r["name"].as_str().unwrap(), "{rel}: tensor order");
            let dims: Vec<u64> = r["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            assert_eq!(t.dims, dims, "{what}");
            assert_eq!(t.ggml_type.name(), r["type"].as_str().unwrap(), "{what}");
            assert_eq!(
                t.data_range.start as u64,
                r["data_offset"].as_u64().unwrap(),
                "{what}"
            );
            assert_eq!(
                t.data_range.len() as u64,
                r["n_bytes"].as_u64().unwrap(),
                "{what}"
            );
            assert_eq!(t.n_elements(), r["n_elements"].as_u64().unwrap(), "{what}");
            assert_eq!(gguf.tensor(&t.name), Some(t));
            let data = gguf.tensor_data(t);
            assert_eq!(hex(&data[..8]), r["head"].as_str().unwrap(), "{what}");
            assert_eq!(
                hex(&data[data.len() - 8..]),
                r["tail"].as_str().unwrap(),
                "{what}"
            );
        }
    }
}

#[test]
fn smollm2_key_facts() {
    // Spot checks a model loader depends on, beyond the generic comparison above.
    let gguf = Gguf::open(&asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    assert_eq!(gguf.tensors().len(), 272);
    assert_eq!(
        gguf.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    assert_eq!(
        gguf.get("llama.embedding_length").and_then(Value::as_u64),
        Some(576)
    );
    let embd = gguf.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, [576, 49152]);
    let tokens = gguf.get("tokenizer.ggml.tokens").unwrap();
    let shown = tokens.to_string();
    assert!(
        shown.starts_with("[string; 49152] [\"<|endoftext|>\", "),
        "{shown}"
    );
    assert!(shown.ends_with(", ...]"), "{shown}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The content tools/gguf_writer_reference.py gives gguf-py's writer, in the same order.
fn gguf_py_content(w: &mut GgufWriter<'_>) {
    w.add_metadata("general.architecture", Value::String("llama".into()));
    w.add_metadata("general.alignment", Value::U32(64));
    w.add_metadata("test.u8", Value::U8(200));
    w.add_metadata("test.i8", Value::I8(-100));
    w.add_metadata("test.u16", Value::U16(60000));
    w.add_metadata("test.i16", Value::I16(-30000));
    w.add_metadata("test.u32", Value::U32(4_000_000_000));
    w.add_metadata("test.i32", Value::I32(-2_000_000_000));
    w.add_metadata("test.u64", Value::U64((1 << 40) + 3));
    w.add_metadata("test.i64", Value::I64(-(1 << 40)));
    w.add_metadata("test.f32", Value::F32(0.1));
    w.add_metadata("test.f64", Value::F64(0.1));
    w.add_metadata("test.bool", Value::Bool(true));
    w.add_metadata("test.string", Value::String("h\u{e9}llo \u{2713}".into()));
    let i32s = |v: &[i32]| Value::Array(ValueType::I32, v.iter().map(|&x| Value::I32(x)).collect());
    let strs = |v: &[&str]| {
        Value::Array(
            ValueType::String,
            v.iter().map(|s| Value::String(s.to_string())).collect(),
        )
    };
    w.add_metadata("test.array_i32", i32s(&[1, -2, 3]));
    w.add_metadata("test.array_str", strs(&["a", "bc", ""]));
    w.add_metadata(
        "test.array_u8",
        Value::Array(ValueType::U8, vec![Value::U8(0), Value::U8(255)]),
    );
    w.add_metadata(
        "test.nested",
        Value::Array(ValueType::Array, vec![i32s(&[1, 2]), i32s(&[3])]),
    );
    w.add_metadata(
        "test.nested_str",
        Value::Array(ValueType::Array, vec![strs(&["x"]), strs(&["y", "z"])]),
    );

    let f32s: Vec<f32> = (0..6).map(|i| i as f32).collect();
    w.add_tensor("t.f32", &[3, 2], GgmlType::F32, f32_bytes(&f32s))
        .unwrap();
    // 1.0, -2.0, 0.5, 65504.0, 0.0 as IEEE half floats.
    let f16: Vec<u8> = [0x3c00u16, 0xc000, 0x3800, 0x7bff, 0]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    w.add_tensor("t.f16", &[5], GgmlType::F16, f16).unwrap();
    let i32_data: Vec<u8> = [-1i32, 2, 3, -4]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    w.add_tensor("t.i32", &[2, 2, 1], GgmlType::I32, i32_data)
        .unwrap();
    w.add_tensor("t.q8_0", &[64, 1], GgmlType::Q8_0, (0..68).collect())
        .unwrap();
    w.add_tensor("t.4d", &[1, 2, 1, 1], GgmlType::F32, f32_bytes(&[1.0, 1.0]))
        .unwrap();
}

#[test]
fn writer_matches_gguf_py_byte_for_byte() {
    let expected = std::fs::read(testdata().join("gguf/gguf_py_writer.gguf")).unwrap();
    let mut w = GgufWriter::new(64);
    gguf_py_content(&mut w);
    let mut out = Vec::new();
    let n = w.write_to(&mut out).unwrap();
    assert_eq!(n as usize, out.len());
    assert_eq!(out.len(), expected.len());
    if let Some(i) = out.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!("first difference from gguf-py's file at byte {i}");
    }
}

#[test]
fn reader_reads_gguf_py_writer_output() {
    let gguf = Gguf::open(&testdata().join("gguf/gguf_py_writer.gguf")).unwrap();
    assert_eq!(gguf.version(), 3);
    assert_eq!(gguf.alignment(), 64);
    assert_eq!(gguf.get("test.u8"), Some(&Value::U8(200)));
    assert_eq!(gguf.get("test.i64"), Some(&Value::I64(-(1 << 40))));
    assert_eq!(gguf.get("test.f32"), Some(&Value::F32(0.1)));
    assert_eq!(gguf.get("test.bool").and_then(Value::as_bool), Some(true));
    assert_eq!(
        gguf.get("test.string").and_then(Value::as_str),
        Some("h\u{e9}llo \u{2713}")
    );
    let nested = gguf.get("test.nested").unwrap();
    assert_eq!(nested.array_type(), Some(ValueType::Array));
    assert_eq!(nested.to_string(), "[[1, 2], [3]]");
    assert_eq!(
        gguf.get("test.nested_str").unwrap().to_string(),
        r#"[["x"], ["y", "z"]]"#
    );
    let t = gguf.tensor("t.f32").unwrap();
    assert_eq!(t.dims, [3, 2]);
    assert_eq!(
        gguf.tensor_data(t),
        f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    );
    let q = gguf.tensor("t.q8_0").unwrap();
    assert_eq!((q.ggml_type, q.n_elements()), (GgmlType::Q8_0, 64));
    assert_eq!(gguf.tensor_data(q), (0..68).collect::<Vec<u8>>());
    for t in gguf.tensors() {
        assert_eq!(t.data_range.start % 64, 0, "{}", t.name);
    }
}

#[test]
fn version_2_reads_like_version_3() {
    let mut bytes = std::fs::read(testdata().join("gguf/gguf_py_writer.gguf")).unwrap();
    bytes[4] = 2;
    let gguf = Gguf::from_bytes(bytes, "v2.gguf").unwrap();
    assert_eq!(gguf.version(), 2);
    assert_eq!(gguf.tensors().len(), 5);
}

/// One value of every type, with arrays of every element type, empty and nested ones.
fn every_value() -> Vec<(String, Value)> {
    let scalars = vec![
        Value::U8(u8::MAX),
        Value::I8(i8::MIN),
        Value::U16(u16::MAX),
        Value::I16(i16::MIN),
        Value::U32(u32::MAX),
        Value::I32(i32::MIN),
        Value::U64(u64::MAX),
        Value::I64(i64::MIN),
        Value::F32(-1.5e-7),
        Value::F64(std::f64::consts::PI),
        Value::Bool(false),
        Value::String("multi\nline \u{1f999} and \0 nul".into()),
    ];
    let mut out = Vec::new();
    for v in &scalars {
        out.push((format!("scalar.{}", v.type_name()), v.clone()));
        let ty = v.value_type();
        out.push((
            format!("array.{}", ty.name()),
            Value::Array(ty, vec![v.clone(), v.clone()]),
        ));
        out.push((format!("empty.{}", ty.name()), Value::Array(ty, vec![])));
    }
    let inner = Value::Array(ValueType::U16, vec![Value::U16(1), Value::U16(2)]);
    let mid = Value::Array(
        ValueType::Array,
        vec![inner.clone(), Value::Array(ValueType::U16, vec![])],
    );
    out.push((
        "nested.3".into(),
        Value::Array(ValueType::Array, vec![mid.clone(), mid]),
    ));
    out.push((
        "nested.empty".into(),
        Value::Array(ValueType::Array, vec![]),
    ));
    out.push(("".into(), Value::String(String::new())));
    out
}

#[test]
fn writer_reader_round_trip_every_value_type_and_alignment() {
    for alignment in [1u64, 8, 32, 64, 4096] {
        let mut w = GgufWriter::new(alignment);
        for (k, v) in every_value() {
            w.add_metadata(&k, v);
        }
        // Odd sizes so that padding is needed between tensors.
        let a: Vec<u8> = (0..7 * 4).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..3 * 18).map(|i| (i * 7) as u8).collect();
        w.add_tensor("a", &[7], GgmlType::F32, a.clone()).unwrap();
        w.add_tensor("b", &[32, 3], GgmlType::Q4_0, b.clone())
            .unwrap();
        w.add_tensor("empty", &[0, 5], GgmlType::F16, vec![])
            .unwrap();
        w.add_tensor("scalar", &[], GgmlType::I8, vec![42]).unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();

        let g = Gguf::from_bytes(bytes, "round-trip.gguf").unwrap();
        assert_eq!(g.alignment(), alignment);
        let mut expected = every_value();
        if alignment != 32 {
            expected.push(("general.alignment".into(), Value::U32(alignment as u32)));
        }
        assert_eq!(g.metadata(), expected.as_slice());
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "empty", "scalar"]);
        assert_eq!(g.tensor_data(g.tensor("a").unwrap()), a);
        assert_eq!(g.tensor_data(g.tensor("b").unwrap()), b);
        assert_eq!(g.tensor("b").unwrap().dims, [32, 3]);
        assert!(g.tensor_data(g.tensor("empty").unwrap()).is_empty());
        assert_eq!(g.tensor("scalar").unwrap().n_elements(), 1);
        assert_eq!(g.tensor_data(g.tensor("scalar").unwrap()), [42]);
        assert_eq!(g.data_offset() % alignment, 0);
        for t in g.tensors() {
            assert_eq!(t.offset % alignment, 0, "{}", t.name);
            assert_eq!(t.data_range.start as u64, g.data_offset() + t.offset);
        }
    }
}

#[test]
fn streamed_tensors_are_written_without_being_held() {
    let source: Vec<f32> = (0..1000).map(|i| i as f32 * 0.25).collect();
    let mut w = GgufWriter::new(32);
    // The closure borrows `source` and writes it in pieces, as a quantizer would.
    w.add_tensor_stream("big", &[100, 10], GgmlType::F32, |out: &mut dyn Write| {
        for row in source.chunks(100) {
            out.write_all(&f32_bytes(row))?;
        }
        Ok(())
    })
    .unwrap();
    let dir = scratch_dir("gguf_stream");
    let path = dir.join("out.gguf");
    w.write_file(&path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["out.gguf"], "temporary file left behind");
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.tensor_data(g.tensor("big").unwrap()), f32_bytes(&source));
}

#[test]
fn write_file_replaces_the_file_it_reads_from() {
    // Rewriting a model in place: the output path is the input, still mapped while writing.
    let dir = scratch_dir("gguf_in_place");
    let path = dir.join("model.gguf");
    let mut w = GgufWriter::new(32);
    w.add_tensor("x", &[4], GgmlType::F32, f32_bytes(&[1.0, 2.0, 3.0, 4.0]))
        .unwrap();
    w.write_file(&path).unwrap();

    let input = Gguf::open(&path).unwrap();
    let mut w = GgufWriter::new(32);
    w.add_metadata("general.name", Value::String("rewritten".into()));
    let t = input.tensor("x").unwrap();
    w.add_tensor_stream("x", &t.dims, t.ggml_type, |out| {
        out.write_all(input.tensor_data(t))
    })
    .unwrap();
    w.write_file(&path).unwrap();
    drop(input);

    let out = Gguf::open(&path).unwrap();
    assert_eq!(
        out.get("general.name").and_then(Value::as_str),
        Some("rewritten")
    );
    assert_eq!(
        out.tensor_data(out.tensor("x").unwrap()),
        f32_bytes(&[1.0, 2.0, 3.0, 4.0])
    );
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let mut w = GgufWriter::new(32);
    let msg = |e: Error| e.to_string();
    assert!(
        msg(w
            .add_tensor("q", &[33], GgmlType::Q4_0, vec![0; 18])
            .unwrap_err())
        .contains("not a multiple of the Q4_0 block size 32")
    );
    assert!(
        msg(w
            .add_tensor("f", &[3], GgmlType::F32, vec![0; 8])
            .unwrap_err())
        .contains("8 bytes given, but F32 [3] takes 12")
    );
    assert!(
        msg(w
            .add_tensor(&"n".repeat(65), &[1], GgmlType::I8, vec![0])
            .unwrap_err())
        .contains("at most 64")
    );
    assert!(
        msg(w
            .add_tensor("d", &[1, 1, 1, 1, 1], GgmlType::I8, vec![0])
            .unwrap_err())
        .contains("5 dimensions")
    );
    assert!(
        msg(w
            .add_tensor("o", &[u64::MAX, 2], GgmlType::I8, vec![])
            .unwrap_err())
        .contains("more than 2^63 - 1 elements")
    );
    w.add_tensor("x", &[1], GgmlType::I8, vec![0]).unwrap();
    assert!(
        msg(w.add_tensor("x", &[1], GgmlType::I8, vec![0]).unwrap_err()).contains("added twice")
    );

    let mut w = GgufWriter::new(32);
    w.add_tensor_stream("s", &[4], GgmlType::F32, |out| out.write_all(&[0; 15]))
        .unwrap();
    let e = w.write_to(Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("tensor \"s\": its stream wrote 15 bytes, but F32 [4] takes 16"),
        "{e}"
    );

    let mut w = GgufWriter::new(32);
    w.add_metadata(
        "mixed",
        Value::Array(ValueType::U8, vec![Value::U8(1), Value::I8(1)]),
    );
    let e = w.write_to(Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("metadata key \"mixed\": array of u8 has a i8 at index 1"),
        "{e}"
    );

    let e = GgufWriter::new(48)
        .write_to(Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("alignment 48 is not a power of two"), "{e}");

    let mut w = GgufWriter::new(64);
    w.add_metadata("general.alignment", Value::U32(32));
    let e = w.write_to(Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("general.alignment is 32 (u32), but the writer aligns to 64"),
        "{e}"
    );
}
