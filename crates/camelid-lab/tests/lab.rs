//! Each study end to end in its smoke mode (toy shapes, a few steps, seconds): the report names
//! every run's command and seed, states its claims with the measured numbers, and its charts
//! parse with the axes, titles and series they promise.

use std::path::{Path, PathBuf};

use camelid_lab::{Lab, Options, Study};
use camelid_plot::read::{self, El};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A folder of 40 documents of made-up sentences (deterministic), enough for a validation split
/// of two.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let words = [
        "the", "king", "shall", "speak", "of", "night", "and", "my", "lord", "doth", "love",
        "fair", "sword", "crown", "hath", "not", "yet", "come",
    ];
    std::fs::create_dir_all(dir).unwrap();
    let mut x: u64 = 7;
    for d in 0..40 {
        let mut text = String::new();
        for i in 0..220 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(words[(x >> 33) as usize % words.len()]);
            text.push_str(if i % 12 == 11 { ".\n" } else { " " });
        }
        std::fs::write(dir.join(format!("doc{d:02}.txt")), text).unwrap();
    }
    vec![dir.to_path_buf()]
}

/// 40 files of made-up Japanese sentences (deterministic), each one document of the vocab study.
fn japanese(dir: &Path) -> Vec<PathBuf> {
    let words = [
        "猫",
        "は",
        "名前",
        "が",
        "まだ",
        "無い",
        "どこ",
        "で",
        "生れた",
        "か",
        "とんと",
        "見当",
        "つかぬ",
        "何",
        "でも",
        "薄暗い",
        "所",
        "泣いて",
        "いた",
        "事",
        "だけ",
        "記憶",
        "する",
        "apt-get",
    ];
    std::fs::create_dir_all(dir).unwrap();
    let mut x: u64 = 5;
    for d in 0..40 {
        let mut text = String::new();
        for i in 0..150 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(words[(x >> 33) as usize % words.len()]);
            if i % 12 == 11 {
                text.push_str("。\n    ");
            }
        }
        std::fs::write(dir.join(format!("ja{d:02}.txt")), text).unwrap();
    }
    vec![dir.to_path_buf()]
}

/// `tag` names the test's scratch folder (tests run in parallel).
fn study(study: Study, steps: Option<u64>, tag: &str) -> (PathBuf, String, serde_json::Value) {
    let root = scratch(tag);
    let opts = Options {
        out: root.join("report"),
        data: corpus(&root.join("text")),
        default_data: false,
        japanese: japanese(&root.join("japanese")),
        default_japanese: false,
        cache: root.join("cache"),
        threads: 2,
        seed: 11,
        minutes: 0.02,
        steps,
        smoke: true,
        reuse: false,
    };
    let mut lab = Lab::open(opts, |_| {}).unwrap();
    let path = study.run(&mut lab).unwrap();
    let md = std::fs::read_to_string(&path).unwrap();
    let out = path.parent().unwrap().to_path_buf();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    // Every run is in the report with its command and seed, and its command reproduces it.
    let runs = json["runs"].as_array().unwrap();
    assert!(!runs.is_empty());
    for r in runs {
        let cmd = r["command"].as_str().unwrap();
        assert!(cmd.starts_with("camelid train "), "{cmd}");
        assert!(cmd.contains(" --seed 11 "), "{cmd}");
        assert!(md.contains(&format!("`{cmd}`")), "the report lacks {cmd}");
        assert!(
            out.join("runs")
                .join(r["name"].as_str().unwrap())
                .join("model.safetensors")
                .is_file()
        );
    }
    assert!(md.contains(&format!("camelid experiment {} ", study.name())));
    assert!(md.contains("## Against the pape"), "{md}");
    (out, md, json)
}

fn chart(dir: &Path, file: &str, md: &str) -> El {
    assert!(
        md.contains(&format!("]({file})")),
        "the report does not show {file}"
    );
    let svg = std::fs::read_to_string(dir.join(file)).unwrap();
    let doc = read::parse(&svg).unwrap();
    assert!(doc.picture_size().is_some(), "{file}: no picture size");
    doc
}

fn keys(doc: &El) -> Vec<String> {
    doc.class("series")
        .iter()
        .filter_map(|s| s.attr("data-key").map(str::to_string))
        .collect()
}

fn axis_titles(doc: &El) -> Vec<String> {
    doc.texts("axis-title")
}

#[test]
fn gqa_study_reports_cache_quality_and_speed() {
    // No --steps: the budget and the throughput probe decide them.
    let (dir, md, json) = study(Study::Gqa, None, "gqa");
    let doc = chart(&dir, "gqa-summary.svg", &md);
    assert_eq!(
        doc.texts("panel-title"),
        ["Quality", "KV cache", "Decoding"]
    );
    let bars = doc.class("bar");
    assert_eq!(bars.len(), 9, "three runs in three panels");
    // The KV bars are the measured bytes per token: 4, 2 and 1 kv heads of 4 dimensions, one
    // layer, K and V in f16.
    let kv: Vec<f64> = bars[3..6]
        .iter()
        .map(|b| b.num("data-value").unwrap())
        .collect();
    assert_eq!(kv, [64.0, 32.0, 16.0]);
    let doc = chart(&dir, "gqa-curves.svg", &md);
    assert_eq!(keys(&doc), ["mha", "gqa", "mqa"]);
    assert_eq!(axis_titles(&doc), ["validation bits per byte", "step"]);
    // The claim quotes the measured losses.
    let bpb = json["results"]["val_bpb"].as_array().unwrap();
    for b in bpb {
        assert!(
            md.contains(&format!("{:.4}", b.as_f64().unwrap())),
            "{b} not in the report"
        );
    }
    assert!(md.contains("GQA gives a smaller KV cache at nearly the same quality"));
}

#[test]
fn context_study_reports_loss_by_position() {
    let (dir, md, json) = study(Study::Context, Some(4), "context");
    let doc = chart(&dir, "context-by-position.svg", &md);
    assert_eq!(keys(&doc), ["ctx8", "ctx32", "short-edge"]);
    assert_eq!(
        axis_titles(&doc),
        ["validation loss (nats per token)", "position in the window"]
    );
    let by_pos = &json["results"]["by_position"];
    assert_eq!(by_pos["ctx8"].as_array().unwrap().len(), 32);
    assert_eq!(by_pos["ctx32"].as_array().unwrap().len(), 32);
    let doc = chart(&dir, "context-curves.svg", &md);
    assert_eq!(keys(&doc), ["ctx8", "ctx32"]);
    assert!(md.contains("**Claim (Llama 2"));
}

#[test]
fn scaling_study_sweeps_sizes_at_one_compute() {
    let (dir, md, json) = study(Study::Scaling, Some(6), "scaling");
    let runs = json["runs"].as_array().unwrap();
    // Three sizes at one compute: steps in inverse proportion to the multiplying parameters.
    let steps: Vec<u64> = runs[..3]
        .iter()
        .map(|r| r["steps"].as_u64().unwrap())
        .collect();
    assert_eq!(steps[2], 6);
    assert!(steps[0] > steps[1] && steps[1] > steps[2], "{steps:?}");
    let doc = chart(&dir, "scaling-loss-vs-size.svg", &md);
    let k = keys(&doc);
    assert_eq!(&k[..2], ["sweep", "optimum"]);
    assert_eq!(
        axis_titles(&doc),
        ["validation bits per byte", "parameters"]
    );
    let sweep = &doc.class("series")[0];
    assert_eq!(sweep.all(&|e| e.name == "circle").len(), 3);
    let doc = chart(&dir, "scaling-loss-vs-flops.svg", &md);
    assert_eq!(keys(&doc).last().map(String::as_str), Some("budget"));
    assert!(md.contains("**Claim (Chinchilla)") && md.contains("**Claim (LLaMA)"));
    // The best run named in the results is the one with the lowest loss.
    let best = runs[..3]
        .iter()
        .min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_loss"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(json["results"]["best"], best["name"]);
}

#[test]
fn a_folder_with_files_is_refused() {
    let root = scratch("refuse");
    std::fs::create_dir_all(root.join("report")).unwrap();
    std::fs::write(root.join("report").join("mine.txt"), "keep").unwrap();
    let opts = Options {
        out: root.join("report"),
        data: corpus(&root.join("text")),
        default_data: false,
        japanese: Vec::new(),
        default_japanese: false,
        cache: root.join("cache"),
        threads: 1,
        seed: 0,
        minutes: 1.0,
        steps: None,
        smoke: true,
        reuse: false,
    };
    let e = Lab::open(opts, |_| {}).err().unwrap().to_string();
    assert!(
        e.contains("the folder exists and is not empty; choose another --out, or give --reuse"),
        "{e}"
    );
}

#[test]
fn a_rerun_with_reuse_reads_the_finished_runs_back() {
    let (dir, _, first) = study(Study::Context, Some(3), "reuse");
    let root = dir.parent().unwrap();
    let opts = |reuse, steps| Options {
        out: dir.clone(),
        data: vec![root.join("text")],
        default_data: false,
        japanese: Vec::new(),
        default_japanese: false,
        cache: root.join("cache"),
        threads: 1,
        seed: 11,
        minutes: 1.0,
        steps: Some(steps),
        smoke: true,
        reuse,
    };
    // Without --reuse the folder is taken; with it, the same numbers come back, the by-position
    // losses recomputed from the saved weights.
    assert!(Lab::open(opts(false, 3), |_| {}).is_err());
    let mut lab = Lab::open(opts(true, 3), |_| {}).unwrap();
    Study::Context.run(&mut lab).unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(again, first);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("2 of the 2 runs were read back"), "{md}");
    // Other steps are another run: it is not read back, and its folder is not overwritten.
    let mut lab = Lab::open(opts(true, 5), |_| {}).unwrap();
    let e = Study::Context.run(&mut lab).unwrap_err().to_string();
    assert!(e.contains("holds another run than ctx8"), "{e}");
}

#[test]
fn vocab_study_reports_compression_quality_and_embedding_share() {
    let (dir, md, json) = study(Study::Vocab, Some(3), "vocab");
    let runs = json["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "en-270", "en-290", "en-310", "en-330", "ja-270", "ja-290", "ja-310", "ja-330"
        ]
    );
    // Equal training tokens: every run the same steps.
    assert!(runs.iter().all(|r| r["tokens"] == runs[0]["tokens"]));
    // Each vocabulary has its train-tokenizer command in the report, naming the training
    // documents alone, and its tokens per character are the held-out tokens over the held-out
    // characters counted here.
    let toks = json["results"]["tokenizers"].as_array().unwrap();
    assert_eq!(toks.len(), 8);
    for t in toks {
        let cmd = t["command"].as_str().unwrap();
        assert!(
            cmd.starts_with("camelid train-tokenizer --kind byte-level --vocab-size "),
            "{cmd}"
        );
        assert!(md.contains(&format!("`{cmd}`")), "the report lacks {cmd}");
        let lang = t["language"].as_str().unwrap();
        assert!(cmd.contains(&format!("text/{lang}/train ")), "{cmd}");
        let val = dir.join("text").join(lang).join("val");
        let chars: usize = std::fs::read_dir(&val)
            .unwrap()
            .map(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .chars()
                    .count()
            })
            .sum();
        let tpc = t["tokens_per_char"].as_f64().unwrap();
        let expect = t["val_tokens"].as_f64().unwrap() / chars as f64;
        assert!((tpc - expect).abs() < 1e-12, "{tpc} against {expect}");
        assert!(md.contains(&format!("{tpc:.4}")), "{tpc} not in the report");
        let tok = dir
            .join("tokenizers")
            .join(t["name"].as_str().unwrap())
            .join("tokenizer.json");
        assert!(tok.is_file(), "{}", tok.display());
    }
    // The Japanese text lost its indentation on the way into documents.
    let ja = dir.join("text").join("ja").join("train");
    let first = std::fs::read_dir(&ja)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!std::fs::read_to_string(first).unwrap().contains("\n "));
    for (file, y_title) in [
        ("vocab-tokens-per-char.svg", "tokens per character"),
        ("vocab-bpb.svg", "validation bits per byte"),
        ("vocab-embedding-share.svg", "share of parameters (%)"),
    ] {
        let doc = chart(&dir, file, &md);
        assert_eq!(keys(&doc), ["en", "ja"], "{file}");
        assert_eq!(
            axis_titles(&doc),
            [y_title, "vocabulary size (tokens)"],
            "{file}"
        );
        for s in doc.class("series") {
            assert_eq!(s.all(&|e| e.name == "circle").len(), 4, "{file}");
        }
    }
    // The embedding share grows with the vocabulary.
    let share: Vec<f64> = json["results"]["embedding_share"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        share[0] < share[1] && share[1] < share[2] && share[2] < share[3],
        "{share:?}"
    );
    assert!(md.contains("**Claim (Llama 3"));
}
