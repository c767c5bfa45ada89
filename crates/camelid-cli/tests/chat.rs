//! `camelid chat` scripted through stdin on SmolLM2-135M-Instruct.

use std::io::Write;
use std::path::PathBuf;
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

#[test]
fn a_full_context_restarts_the_conversation() {
    let out = chat(
        &["--temp", "0", "-c", "64", "-n", "200"],
        "Tell me a long story about a dragon.\nWhat is the capital of France? Answer in one sentence.\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("the conversation starts over"), "{stderr}");
    assert!(stdout.contains("Paris"), "{stdout}");
}
