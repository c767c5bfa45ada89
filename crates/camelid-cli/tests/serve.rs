//! `camelid serve` as a process on a loopback socket: it answers, and on SIGTERM it ends the
//! streams in flight with `[DONE]` and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// Starts the server on a free port; returns the child and its address.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_camelid"))
        .args(["serve", "--port", "0", "-m"])
        .arg(model())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the server exited before listening: {:?}", child.wait());
        }
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on http://".len()..].trim().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
    });
    (child, addr)
}

fn request(addr: &str, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

#[test]
fn answers_then_sigterm_ends_streams_and_exits_zero() {
    let (mut child, addr) = start(&["--ctx", "512", "--parallel", "2", "--shutdown-grace", "0.5"]);

    let mut s = request(
        &addr,
        "/v1/completions",
        r#"{"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}"#,
    );
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"text_completion\""), "{resp}");

    // A long stream; once its first event arrived, SIGTERM.
    let mut s = request(
        &addr,
        "/v1/completions",
        r#"{"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0, "stream": true}"#,
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: {") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    s.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[test]
fn sigint_lets_a_short_stream_finish_and_exits_zero() {
    let (mut child, addr) = start(&["--ctx", "256", "--parallel", "1", "--shutdown-grace", "120"]);
    let mut s = request(
        &addr,
        "/v1/completions",
        r#"{"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 6, "temperature": 0, "stream": true}"#,
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: {") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    s.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    // Within the grace period the stream runs to its end: its budget, then [DONE].
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(!text.contains("shutting down"), "{text}");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
