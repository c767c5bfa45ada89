//! `camelid train` end to end on the tiny corpus (testdata/train/corpus) with the tiny
//! SentencePiece tokenizer: a run writes a checkpoint camelid loads, a run stopped halfway and
//! resumed ends with the same bytes and losses as an uninterrupted one, `--export-gguf` loads
//! with the same logits, and bad inputs are refused with the reason, leaving files alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh folder under the target directory (kept after the run for inspection).
fn scratch(name: &str) -> PathBuf {
    let d = repo().join("target/camelid-tests/train").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn camelid(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(args)
        .current_dir(repo())
        .env("CAMELID_DATA_CACHE", cache)
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {err}");
    err
}

fn refused(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; stderr: {err}");
    assert!(err.contains(want), "wanted {want:?} in: {err}");
}

/// A tiny model on the tiny corpus: 8 steps of 4 sequences of 16 tokens, micro-batches of 2;
/// `extra` flags replace the same flags' values or are added.
fn train_args<'a>(out: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("--data", "testdata/train/corpus"),
        ("--tokenizer", "testdata/tokenizer/spm-tiny.model"),
        ("--dim", "32"),
        ("--layers", "2"),
        ("--heads", "4"),
        ("--kv-heads", "2"),
        ("--ffn", "64"),
        ("--ctx", "16"),
        ("--steps", "8"),
        ("--batch-tokens", "64"),
        ("--micro-batch", "2"),
        ("--val-fraction", "0.25"),
        ("--eval-every", "3"),
        ("--threads", "2"),
        ("--out", out),
    ];
    for &(flag, value) in extra {
        match pairs.iter_mut().find(|(f, _)| *f == flag) {
            Some(p) => p.1 = value,
            None => pairs.push((flag, value)),
        }
    }
    let mut a = vec!["train"];
    for (f, v) in pairs {
        a.extend([f, v]);
    }
    a
}

/// (step, loss, grad norm, val loss) of each log line, as written (timings left out).
fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {} {} {} {}",
                v["step"], v["lr"], v["loss"], v["grad_norm"], v["val_loss"]
            )
        })
        .collect()
}

fn logits(model: &Path, cache: &Path) -> Vec<Vec<f64>> {
    let out = camelid(
        &[
            "logits",
            "-m",
            model.to_str().unwrap(),
            "--tokens",
            "1,764,436,350,299",
            "--all",
        ],
        cache,
    );
    ok(&out, "camelid logits");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn a_run_resumed_halfway_is_bit_identical_and_its_checkpoints_load() {
    let dir = scratch("resume");
    let cache = dir.join("cache");
    let (whole, half) = (dir.join("whole"), dir.join("half"));
    let gguf = dir.join("whole.gguf");
    let (w, h, g) = (
        whole.to_str().unwrap(),
        half.to_str().unwrap(),
        gguf.to_str().unwrap(),
    );
    let err = ok(
        &camelid(&train_args(w, &[("--export-gguf", g)]), &cache),
        "the whole run",
    );
    assert!(err.contains("memory: "), "{err}");
    assert!(err.contains("done at step 8/8"), "{err}");
    ok(
        &camelid(&train_args(h, &[("--stop-at", "4")]), &cache),
        "the first half",
    );
    assert_eq!(log(&half).len(), 4);
    let err = ok(
        &camelid(&["train", "--resume", h, "--threads", "1"], &cache),
        "the resumed half",
    );
    assert!(
        err.contains("resuming") && err.contains("at step 4 of 8"),
        "{err}"
    );

    for f in ["model.safetensors", "optimizer.safetensors", "config.json"] {
        let (a, b) = (
            std::fs::read(whole.join(f)).unwrap(),
            std::fs::read(half.join(f)).unwrap(),
        );
        assert!(
            a == b,
            "{f} differs between the whole run and the resumed one"
        );
    }
    assert_eq!(log(&whole), log(&half));
    assert_eq!(log(&whole).len(), 8);

    // The folder and the GGUF load as models, with the same logits.
    let (a, b) = (logits(&whole, &cache), logits(&gguf, &cache));
    assert_eq!(a.len(), 5);
    for (ra, rb) in a.iter().zip(&b) {
        for (x, y) in ra.iter().zip(rb) {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
}

#[test]
fn bad_inputs_are_refused_with_the_reason() {
    let dir = scratch("bad");
    let cache = dir.join("cache");
    let out = dir.join("out");
    let o = out.to_str().unwrap();

    let mut a = train_args(o, &[]);
    a[2] = "testdata/train/no-such-folder";
    refused(
        &camelid(&a, &cache),
        "no-such-folder: no such file or folder",
    );

    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let empty = dir.join("empty");
    refused(
        &camelid(
            &train_args(o, &[("--data", empty.to_str().unwrap())]),
            &cache,
        ),
        "holds no .txt or .md files",
    );

    refused(
        &camelid(
            &train_args(o, &[("--ctx", "512"), ("--batch-tokens", "1024")]),
            &cache,
        ),
        "fewer than one sequence of --ctx 512",
    );
    refused(
        &camelid(&train_args(o, &[("--micro-batch", "3")]), &cache),
        "--micro-batch 3 must divide",
    );
    refused(
        &camelid(&train_args(o, &[("--preset", "huge")]), &cache),
        "unknown --preset \"huge\"",
    );
    refused(
        &camelid(&train_args(o, &[("--tokenizer", "missing.model")]), &cache),
        "--tokenizer missing.model: no such file or folder",
    );

    // An existing folder with anything in it is never written to.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    refused(
        &camelid(&train_args(o, &[]), &cache),
        "the folder exists and is not empty",
    );
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );

    // --resume of a folder that is not a training checkpoint.
    refused(
        &camelid(&["train", "--resume", o], &cache),
        "not a camelid training checkpoint",
    );

    // A saved run whose data changed, or whose state was edited into nonsense, is refused.
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for f in ["a.txt", "b.md", "more/c.txt", "more/d.txt"] {
        let text = std::fs::read(repo().join("testdata/train/corpus").join(f)).unwrap();
        std::fs::write(corpus.join(f.replace('/', "-")), text).unwrap();
    }
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let args = train_args(
        r,
        &[("--data", corpus.to_str().unwrap()), ("--stop-at", "1")],
    );
    ok(&camelid(&args, &cache), "a run to resume");
    std::fs::write(corpus.join("a.txt"), "Something else entirely.\n").unwrap();
    refused(
        &camelid(&["train", "--resume", r], &cache),
        "the data or the tokenizer changed since this run was saved",
    );
    let state_path = run.join("train_state.json");
    let state = std::fs::read_to_string(&state_path).unwrap();
    std::fs::write(
        &state_path,
        state.replace("\"micro_seqs\": 2", "\"micro_seqs\": 0"),
    )
    .unwrap();
    refused(
        &camelid(&["train", "--resume", r], &cache),
        "must be at least 1",
    );
}

/// `camelid train-tokenizer` writes the vocabulary the library's trainer makes (the fixture that
/// `tests/train` of camelid-tokenizer checks against Hugging Face tokenizers), `camelid train`
/// takes it, and bad arguments are refused with the reason.
#[test]
fn train_tokenizer_output_trains_a_model() {
    let dir = scratch("train-tokenizer");
    let cache = dir.join("cache");
    let tok = dir.join("tok");
    for (kind, file) in [
        ("byte-level", "byte-level.json"),
        ("sentencepiece", "sentencepiece.json"),
    ] {
        let out = camelid(
            &[
                "train-tokenizer",
                "--kind",
                kind,
                "--vocab-size",
                "1000",
                "--data",
                "testdata/tokenizer/train/corpus",
                "--out",
                tok.to_str().unwrap(),
            ],
            &cache,
        );
        ok(&out, kind);
        let got = std::fs::read(tok.join("tokenizer.json")).unwrap();
        let want = std::fs::read(repo().join("testdata/tokenizer/train").join(file)).unwrap();
        assert!(got == want, "{kind}: not the fixture's tokenizer.json");
        assert!(tok.join("tokenizer_config.json").is_file());
    }
    let model = dir.join("model");
    let tok_json = tok.join("tokenizer.json");
    let args = train_args(
        model.to_str().unwrap(),
        &[
            ("--tokenizer", tok_json.to_str().unwrap()),
            ("--steps", "2"),
        ],
    );
    let err = ok(&camelid(&args, &cache), "train with the trained vocabulary");
    assert!(err.contains("vocab 1000"), "{err}");

    let bad = |extra: &[&str], want: &str| {
        let mut a = vec!["train-tokenizer", "--out", tok.to_str().unwrap()];
        a.extend(extra);
        refused(&camelid(&a, &cache), want);
    };
    bad(
        &["--data", "testdata/train/corpus", "--vocab-size", "100"],
        "at least 264 tokens",
    );
    bad(&["--data", "no/such/folder"], "no such file or folder");
    bad(
        &[
            "--data",
            "testdata/train/corpus",
            "--kind",
            "spm",
            "--character-coverage",
            "1.5",
        ],
        "character coverage",
    );
}
