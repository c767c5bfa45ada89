//! The BPE trainer against Hugging Face `tokenizers`: `tools/bpe_train_reference.py` had camelid
//! train two 1,000-token vocabularies on `testdata/tokenizer/train/corpus/` and stored them with
//! the ids `tokenizers` gives 2,186 strings on them (`reference.jsonl`). camelid must read the
//! files and encode every string alike; retraining must reproduce the files (a regression check:
//! the trainer's output is not a reference, the encodings are).

use camelid_tokenizer::train::{TrainConfig, train};
use camelid_tokenizer::{ModelKind, Tokenizer};
use serde_json::Value;

use crate::common::testdata;

const KINDS: [(&str, &str, ModelKind); 2] = [
    ("byte_level", "byte-level", ModelKind::ByteLevel),
    ("spm", "sentencepiece", ModelKind::SentencePiece),
];

fn reference() -> Vec<Value> {
    let text = std::fs::read_to_string(testdata("train/reference.jsonl")).unwrap();
    text.split('\n')
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn trained_vocabularies_encode_as_hf_tokenizers() {
    let rows = reference();
    assert!(rows.len() >= 2000, "{} strings", rows.len());
    for (key, file, kind) in KINDS {
        let tok = Tokenizer::from_tokenizer_json(testdata(&format!("train/{file}.json"))).unwrap();
        assert_eq!(tok.kind(), kind);
        assert!(tok.add_bos_default(), "{file}: the post-processor adds BOS");
        let mut bad = Vec::new();
        for row in &rows {
            let s = row["text"].as_str().unwrap();
            let parsed = ids(&row[key]);
            let plain = row
                .get(format!("{key}_plain"))
                .map_or_else(|| parsed.clone(), ids);
            let got = tok.encode(s, true, true);
            if got != parsed {
                bad.push(format!("{s:?}: got {got:?}, want {parsed:?}"));
            }
            let got = tok.encode(s, true, false);
            if got != plain {
                bad.push(format!(
                    "{s:?} (specials as text): got {got:?}, want {plain:?}"
                ));
            }
            assert_eq!(tok.decode(&got[1..]).unwrap(), s, "{file}: round trip");
        }
        assert!(
            bad.is_empty(),
            "{file}: {} encodings differ from tokenizers':\n{}",
            bad.len(),
            bad[..bad.len().min(10)].join("\n")
        );
    }
}

#[test]
fn trainer_reproduces_the_fixture_vocabularies() {
    let dir = testdata("train/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let texts: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (_, file, kind) in KINDS {
        let mut cfg = TrainConfig::new(kind, 1000);
        cfg.threads = 2;
        let got = train(&texts, &cfg).unwrap().tokenizer_json();
        let want = std::fs::read_to_string(testdata(&format!("train/{file}.json"))).unwrap();
        assert!(
            got == want,
            "{file}: retraining gave another tokenizer.json"
        );
    }
}
