//! `camelid chat` scripted through stdin on SmolLM2-135M-Instruct (and, for the start-up
//! checks, a tiny model of testdata/tiny).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn model() -> PathBuf {
    let assets = std::env::var_os("CAMELID_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets")));
    let m = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        m.is_file(),
        "{} is missing: run scripts/fetch-assets.sh",
        m.display()
    );
    m
}

fn chat(args: &[&str], stdin: &str) -> Output {
    let m = model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .arg("chat")
        .arg("-m")
        .arg(&m)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Greedy, the question is phrased so the first token has a clear lead: llama.cpp (llama-simple
/// on this GGUF) answers it "The capital of France is Paris." with "The" 1.5 logits ahead. The bare
/// "What is the capital of France?" is a near-tie of "L", "La" and "The" on this 4-bit 135M
/// model, and llama.cpp's greedy reply to it is "L'Étoile, la Marseillaise, ...".
#[test]
fn piped_questions_get_answers() {
    let out = chat(
        &["--temp", "0", "-n", "48"],
        "What is the capital of France? Answer in one sentence.\nAnd what is the capital of Germany?\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("Paris"),
        "first reply: {first:?}\nall: {stdout}"
    );
    // Two replies, each ended by a newline; the second one was generated after the first turn
    // stayed in the cache.
    assert!(stdout.lines().count() >= 2, "{stdout}");
    assert!(stdout.ends_with('\n'));
}

#[test]
fn commands_and_a_message_that_cannot_fit() {
    // With 24 tokens of context even the template's system prompt does not fit: the message gets
    // a clear error, the program a non-zero exit, and /exit ends the session before the rest.
    let out = chat(
        &["--temp", "0", "-c", "24"],
        "/reset\nHello\n/exit\nNever read\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("[conversation cleared]"), "{stderr}");
    assert!(stderr.contains("context of 24 tokens"), "{stderr}");
    assert!(stderr.contains("1 message(s) got no reply"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A full context dropped the whole conversation, system prompt included (issue 19). Now the
/// story that fills the 64 tokens stays until the next message needs the room; then its turn,
/// the oldest, goes, the system prompt stays, and one line says so.
#[test]
fn a_full_context_drops_the_oldest_turns_and_keeps_the_system_prompt() {
    let out = chat(
        &[
            "--temp",
            "0",
            "-c",
            "64",
            "-n",
            "200",
            "--system",
            "You are a helpful assistant.",
        ],
        "Tell me a long story about a dragon.\nWhat is the capital of France? Answer in one sentence.\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("[context full: the reply filled the context of 64 tokens"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("[context full: dropped the oldest turn; the system prompt is kept]")
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("starts over"), "{stderr}");
    assert!(stdout.contains("Paris"), "{stdout}");
}

/// `camelid chat` on `model` with `args`, `stdin` piped.
fn chat_on(model: &Path, args: &[&str], stdin: &str) -> (Output, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .arg("chat")
        .arg("-m")
        .arg(model)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/camelid-tests/chat"
    ))
    .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `--chat-template chatml` failed (issue 19): ChatML is built in, as llama.cpp names it, and
/// SmolLM2 (a ChatML model) answers through it. A name that is no built-in and no file gets the
/// list of names before the model is loaded; a template that cannot be used (Jinja that does
/// not parse, a model's own broken template, a built-in whose tokens the vocabulary lacks) is
/// refused at start-up: here with nothing on stdin, so no message was ever sent.
#[test]
fn chat_templates_are_named_and_checked_at_start_up() {
    let (out, err) = chat_on(
        &model(),
        &["--temp", "0", "-n", "48", "--chat-template", "chatml"],
        "What is the capital of France? Answer in one sentence.\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(stdout.contains("Paris"), "{stdout}");

    let tiny = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tiny/llama3-gqa/q4_0.gguf"
    ));
    let dir = scratch("templates");
    let bad = dir.join("bad.jinja");
    std::fs::write(&bad, "{% for m in messages %}{{ m.content }").unwrap();
    let good = dir.join("good.jinja");
    std::fs::write(
        &good,
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:",
    )
    .unwrap();
    let broken_model = dir.join("broken-template.gguf");
    {
        use camelid_formats::gguf::{Gguf, GgufWriter, Value};
        let g = Gguf::open(&tiny).unwrap();
        let mut w = GgufWriter::new(g.alignment());
        for (k, v) in g.metadata() {
            if k != "general.alignment" {
                w.add_metadata(k, v.clone());
            }
        }
        w.add_metadata(
            "tokenizer.chat_template",
            Value::String("{% if %}".to_string()),
        );
        for t in g.tensors() {
            w.add_tensor(&t.name, &t.dims, t.ggml_type, g.tensor_data(t).to_vec())
                .unwrap();
        }
        w.write_file(&broken_model).unwrap();
    }
    let no_such = dir.join("no-such.jinja");
    let cases: [(&Path, &[&str], &str); 5] = [
        (
            &tiny,
            &["--chat-template", "chatlm"],
            "--chat-template \"chatlm\": not a built-in chat format (one of: chatml, llama2, \
             llama3) nor a template file",
        ),
        (
            &tiny,
            &["--chat-template", no_such.to_str().unwrap()],
            "(one of: chatml, llama2, llama3)",
        ),
        (
            &tiny,
            &["--chat-template", bad.to_str().unwrap()],
            "the chat template does not parse",
        ),
        (
            &tiny,
            &["--chat-template", "chatml"],
            "the vocabulary has no <|im_start|> token",
        ),
        (
            &broken_model,
            &[],
            "the model's chat template cannot be used",
        ),
    ];
    for (m, args, want) in cases {
        let (out, err) = chat_on(m, args, "");
        assert!(!out.status.success(), "{args:?}: succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The model's vocabulary fits no built-in: the error lists the names.
    let (out, err) = chat_on(&tiny, &[], "");
    assert!(!out.status.success());
    assert!(
        err.contains("built-in names: chatml, llama2, llama3"),
        "{err}"
    );
    // A good template file works on the same model.
    let (out, err) = chat_on(
        &tiny,
        &[
            "--temp",
            "0",
            "-n",
            "4",
            "--chat-template",
            good.to_str().unwrap(),
        ],
        "hi\n",
    );
    assert!(out.status.success(), "{err}");
}

/// `--json-schema` and `--grammar`: every reply of a chat follows the file's grammar (checked
/// here against the schema's and the grammar's definitions), and a file that is not a usable
/// grammar is a clear error naming it.
#[test]
fn json_schema_and_grammar_files_constrain_replies() {
    let dir = std::env::temp_dir().join(format!("camelid-constrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("s.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
            "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["answer", "confidence"], "additionalProperties": false}"#,
    )
    .unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let out = chat(
        &[
            "--temp",
            "0.8",
            "--seed",
            "7",
            "-n",
            "64",
            "--json-schema",
            &path(&schema),
        ],
        "Is the sky blue?\nIs fire cold?\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!replies.is_empty(), "{stdout}");
    // A reply may span lines (JSON whitespace): rejoin and split on the objects' ends.
    let joined = stdout.replace('\n', " ");
    let mut n = 0;
    for v in serde_json::Deserializer::from_str(&joined).into_iter::<serde_json::Value>() {
        let v = v.unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert!(
            ["yes", "no"].contains(&v["answer"].as_str().unwrap()),
            "{v}"
        );
        assert!(
            (0..=100).contains(&v["confidence"].as_i64().unwrap()),
            "{v}"
        );
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        n += 1;
    }
    assert_eq!(n, 2, "{stdout}");

    let grammar = dir.join("g.gbnf");
    std::fs::write(&grammar, "root ::= (\"Yes\" | \"No\") \"!\"\n").unwrap();
    let out = chat(
        &["--temp", "0", "--grammar", &path(&grammar)],
        "Is the sky blue?\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(["Yes!", "No!"].contains(&stdout.trim()), "{stdout:?}");

    std::fs::write(&grammar, "root ::= missing\n").unwrap();
    let out = chat(&["--grammar", &path(&grammar)], "hi\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("g.gbnf") && stderr.contains("undefined rule `missing`"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
