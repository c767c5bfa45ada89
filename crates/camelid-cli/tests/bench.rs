//! `camelid bench`: the llama-bench figures it reports and its refusals (no timing is asserted).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/llama3-gqa/q8_0.gguf")
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camelid"))
        .arg("bench")
        .arg("-m")
        .arg(model())
        .args(args)
        .output()
        .unwrap()
}

/// The tests of a `--json` run that must succeed.
fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = bench(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn json_has_llama_bench_fields() {
    for precision in ["fast", "exact"] {
        let tests = bench_json(&[
            "-p",
            "16",
            "-n",
            "8",
            "-r",
            "3",
            "-t",
            "2",
            "--precision",
            precision,
            "--json",
        ]);
        assert_eq!(tests.len(), 2);
        for (t, name, np, ng) in [(&tests[0], "pp16", 16, 0), (&tests[1], "tg8", 0, 8)] {
            assert_eq!(t["test"], name);
            assert_eq!(t["n_prompt"], np);
            assert_eq!(t["n_gen"], ng);
            // Capped to the cores on a machine with fewer than 2.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            assert_eq!(t["n_threads"], 2.min(cores));
            assert_eq!(t["precision"], precision);
            let samples = t["samples_ts"].as_array().unwrap();
            assert_eq!(samples.len(), 3);
            let mean = samples.iter().map(|s| s.as_f64().unwrap()).sum::<f64>() / 3.0;
            assert!((t["avg_ts"].as_f64().unwrap() - mean).abs() <= 1e-9 * mean);
            // The peak resident set includes at least the mapped weights that were read.
            assert!(t["peak_rss_bytes"].as_u64().unwrap() > t["model_size"].as_u64().unwrap());
            // Weight reads: model_size per token (tg) or per prompt pass (pp), and their share
            // of the measured read ceiling.
            let size = t["model_size"].as_f64().unwrap();
            let passes = if ng > 0 { mean } else { mean / np as f64 };
            let read = t["weight_read_gbs"].as_f64().unwrap();
            assert!((read - size * passes / 1e9).abs() <= 1e-9 * read, "{t}");
            let ceiling = t["bandwidth_ceiling_gbs"].as_f64().unwrap();
            assert!(ceiling.is_finite() && ceiling > 0.0, "{t}");
            let share = t["bandwidth_ceiling_share"].as_f64().unwrap();
            assert!((share - read / ceiling).abs() <= 1e-9 * share, "{t}");
            assert!(
                t["bandwidth_buffer_bytes"].as_u64().unwrap() >= 64 << 20,
                "{t}"
            );
            // One measurement for the whole run.
            assert_eq!(
                t["bandwidth_ceiling_gbs"],
                tests[0]["bandwidth_ceiling_gbs"]
            );
        }
    }
}

#[test]
fn table_and_refusals() {
    let out = bench(&["-p", "8", "-n", "0", "-r", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| pp8 |") && !text.contains("tg"), "{text}");
    assert!(text.contains("memory read ceiling: "), "{text}");
    assert!(
        text.contains("pp8 weight reads: ") && text.contains("% of the ceiling"),
        "{text}"
    );
    for (args, msg) in [
        (&["-r", "0"][..], "-r must be at least 1"),
        (&["-p", "0", "-n", "0"][..], "nothing to measure"),
        (&["-p", "4096"][..], "exceed the model's context"),
        (&["--precision", "half"][..], "invalid value"),
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(msg),
            "{args:?}: {err}"
        );
    }
}

/// `-d` (llama-bench's depth) and `--cache-type`: the tests after a context of D tokens, named
/// as llama-bench names them, with the cache's type and bytes in the JSON; without
/// `--cache-type` the cache is f16 at the fast precision and f32 at the exact one.
#[test]
fn depth_and_cache_type() {
    let mut bytes = Vec::new();
    for (extra, cache) in [
        (&["--cache-type", "f32"][..], "f32"),
        (&["--cache-type", "f16"], "f16"),
        (&[], "f16"),
        (&["--precision", "exact"], "f32"),
    ] {
        let mut args = vec!["-p", "8", "-n", "4", "-d", "20", "-r", "1", "--json"];
        args.extend(extra);
        let tests = bench_json(&args);
        let names: Vec<&str> = tests.iter().map(|t| t["test"].as_str().unwrap()).collect();
        assert_eq!(names, ["pp8 @ d20", "tg4 @ d20"]);
        assert!(
            tests
                .iter()
                .all(|t| t["n_depth"] == 20 && t["cache_type"] == cache),
            "{extra:?}: {tests:?}"
        );
        bytes.push(tests[0]["kv_cache_bytes"].as_u64().unwrap());
    }
    assert_eq!(bytes[0], 2 * bytes[1]);
    // The depth counts against the context.
    let out = bench(&["-p", "8", "-n", "0", "-d", "1000000", "-r", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceed the model's context"), "{err}");
}
