//! Shared by the tokenizer tests of this crate and the GGUF-based ones in `camelid-model`
//! (included there with `#[path]`): asset lookup, llama.cpp's vectors, and the fixture corpus
//! `testdata/tokenizer/corpus.jsonl` written by `tools/tokenizer_corpus.py`.
#![allow(dead_code)]

use std::path::PathBuf;

use camelid_tokenizer::Tokenizer;
use serde_json::Value;

pub fn assets() -> PathBuf {
    match std::env::var_os("CAMELID_ASSETS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets")),
    }
}

pub fn asset(rel: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(
        p.exists(),
        "missing test asset {}: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tokenizer"
    ))
    .join(rel)
}

/// llama.cpp's vectors: strings separated by "\n__ggml_vocab_test__\n", one line of ids per string.
pub fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let inp =
        std::fs::read_to_string(asset(&format!("{name}/ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out =
        std::fs::read_to_string(asset(&format!("{name}/ggml-vocab-{name}.gguf.out"))).unwrap();
    let mut strings: Vec<String> = inp
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    assert_eq!(
        strings.pop().as_deref(),
        Some(""),
        "the .inp file ends with a separator"
    );
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!((strings.len(), ids.len()), (46, 46));
    strings.into_iter().zip(ids).collect()
}

pub fn check_vectors(tok: &Tokenizer, name: &str) {
    let mut bad = Vec::new();
    for (s, want) in vectors(name) {
        let got = tok.encode(&s, false, false);
        if got != want {
            bad.push(format!("{s:?}: got {got:?}, want {want:?}"));
        }
        assert_eq!(tok.decode(&got).unwrap(), s, "round trip of {s:?}");
    }
    assert!(
        bad.is_empty(),
        "{} of 46 differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The 100 KB line, generated as `long_line` in `tools/tokenizer_corpus.py` does: splitmix64 from
/// the seed picks an atom and a separator, until 100,000 bytes are reached.
pub fn long_line(seed: u64) -> String {
    const ATOMS: &[&str] = &[
        "the",
        "The",
        "camel",
        "llama",
        "don't",
        "I'll",
        "WE'VE",
        "it's",
        "naïve",
        "café",
        "Việt",
        "Nam",
        "日本語",
        "東京",
        "中文",
        "한국어",
        "русский",
        "язык",
        "العربية",
        "हिन्दी",
        "0",
        "7",
        "42",
        "1234",
        "3.14159",
        "2024-05-01",
        "1,000,000",
        "٣٤٥",
        "½",
        "fn",
        "main()",
        "{",
        "}",
        "x+=1;",
        "==",
        "->",
        "&&",
        "//",
        "#include",
        "<div>",
        "\"quoted\"",
        "!",
        "?",
        "...",
        "—",
        "(",
        ")",
        "[]",
        "@",
        "$5",
        "100%",
        "🦙",
        "👍🏽",
        "👨\u{200d}👩\u{200d}👧",
        "🇯🇵",
        "é",
        "ñ",
        "ü",
        "ß",
        "Ω",
    ];
    const SEPS: &[&str] = &[" ", " ", " ", " ", "  ", ", ", ". ", "\t", " - ", ""];
    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut state = seed;
    let mut s = String::new();
    while s.len() < 100_000 {
        let a = splitmix64(&mut state);
        let b = splitmix64(&mut state);
        s.push_str(ATOMS[(a % ATOMS.len() as u64) as usize]);
        s.push_str(SEPS[(b % SEPS.len() as u64) as usize]);
    }
    s
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

pub struct Record {
    pub text: String,
    pub ids: Value,
    pub special: Option<Value>,
}

pub struct Corpus {
    pub records: Vec<Record>,
    pub long_line: String,
    pub long_ids: Value,
}

/// The corpus, read once per test binary.
pub fn corpus() -> &'static Corpus {
    static C: std::sync::OnceLock<Corpus> = std::sync::OnceLock::new();
    C.get_or_init(read_corpus)
}

fn read_corpus() -> Corpus {
    let path = testdata("corpus.jsonl");
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (made by tools/tokenizer_corpus.py)",
            path.display()
        )
    });
    let mut lines = data.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let seed = header["long_line"]["seed"].as_u64().unwrap();
    let long = long_line(seed);
    assert_eq!(
        long.len() as u64,
        header["long_line"]["bytes"].as_u64().unwrap(),
        "long line length"
    );
    assert_eq!(
        format!("{:016x}", fnv1a64(long.as_bytes())),
        header["long_line"]["fnv1a64"].as_str().unwrap(),
        "the long line generator differs from tools/tokenizer_corpus.py"
    );
    let mut records = Vec::new();
    let mut long_ids = Value::Null;
    for l in lines {
        let mut v: Value = serde_json::from_str(l).unwrap();
        if v.get("long_line").is_some() {
            long_ids = v;
            continue;
        }
        records.push(Record {
            text: v["text"].as_str().unwrap().to_string(),
            special: v.get_mut("special").map(Value::take),
            ids: v,
        });
    }
    assert!(
        records.len() >= 2000,
        "only {} strings in the corpus",
        records.len()
    );
    Corpus {
        records,
        long_line: long,
        long_ids,
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Checks every corpus string (and the long line) against the reference ids stored under `key`,
/// with special tokens not parsed; with `special_key`, the strings that look like special tokens
/// again with them parsed, against `special[special_key]`; and decode(encode(s)) == s throughout.
pub fn check_corpus(tok: &Tokenizer, key: &str, special_key: Option<&str>) {
    let c = corpus();
    let mut bad = Vec::new();
    let mut n_special = 0;
    for r in &c.records {
        // spm_tiny_json is stored only where it differs from spm_tiny.
        let stored = match (&r.ids[key], key) {
            (Value::Null, "spm_tiny_json") => &r.ids["spm_tiny"],
            (v, _) => v,
        };
        let want = ids(stored);
        let got = tok.encode(&r.text, false, false);
        if got != want {
            bad.push(format!("{:?}\n  got  {got:?}\n  want {want:?}", r.text));
        }
        let back = tok.decode(&got).unwrap();
        if back != r.text {
            bad.push(format!("{:?} decodes back to {back:?}", r.text));
        }
        if let (Some(skey), Some(sp)) = (special_key, &r.special) {
            n_special += 1;
            let want = ids(&sp[skey]);
            let got = tok.encode(&r.text, false, true);
            if got != want {
                bad.push(format!(
                    "{:?} (parse_special)\n  got  {got:?}\n  want {want:?}",
                    r.text
                ));
            }
            let back = tok.decode(&got).unwrap();
            if back != r.text {
                bad.push(format!(
                    "{:?} (parse_special) decodes back to {back:?}",
                    r.text
                ));
            }
        }
    }
    assert!(
        special_key.is_none() || n_special >= 20,
        "only {n_special} special-token strings"
    );
    let want = ids(&c.long_ids[key]);
    let got = tok.encode(&c.long_line, false, false);
    if got != want {
        let at = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        bad.push(format!(
            "the 100 KB line differs first at id {at} ({} vs {} ids)",
            got.len(),
            want.len()
        ));
    }
    assert_eq!(
        tok.decode(&got).unwrap(),
        c.long_line,
        "the 100 KB line does not decode back"
    );
    assert!(
        bad.is_empty(),
        "{key}: {} problems in {} strings; the first:\n{}",
        bad.len(),
        c.records.len(),
        bad.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
}
