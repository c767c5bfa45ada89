//! Vocabulary size (Llama 3 grew Llama 2's 32K vocabulary to 128K): byte-level BPE vocabularies
//! of 1K to 32K tokens trained on English and on Japanese text, each measured by the tokens it
//! spends per character of held-out text, then a small model trained with each on the same
//! number of tokens and scored in bits per byte, which does not depend on the vocabulary.

use std::path::{Path, PathBuf};

use camelid_model::Config;
use camelid_plot::{Axis, Figure, Legend, LegendEntry, LinePanel, Marks, Series, Style, format};
use camelid_tokenizer::ModelKind;
use camelid_tokenizer::train::{TrainConfig, count_tokens, train};
use camelid_train::data;

use crate::report::{Report, pct};
use crate::run::{Lab, RunResult, RunSpec, data_flags};
use crate::{LabError, Study, io_err};

/// The vocabulary sizes, special tokens included (1K, 4K, 16K, 32K).
const VOCABS: [usize; 4] = [1024, 4096, 16384, 32768];
/// Byte-level vocabularies start from 256 bytes and Llama 3's 8 special tokens.
const SMOKE_VOCABS: [usize; 4] = [270, 290, 310, 330];
/// The Japanese text comes as one long file; it is cut into documents of about this many bytes
/// at line breaks, so that whole documents can be held out as they are in English.
const JA_DOC_BYTES: usize = 32 * 1024;
/// Held-out text each model is scored on (its first windows, about this many bytes whatever the
/// vocabulary, so that every model of a language is scored on the same text).
const EVAL_BYTES: f64 = 48.0 * 1024.0;
/// `camelid train`'s held-out share of documents, as the lab uses it.
const VAL_FRACTION: f64 = 0.05;

type Named = (String, String);

/// A language's text, split as `camelid train` splits it.
struct Language {
    code: &'static str,
    name: &'static str,
    /// `text/CODE` in the study's folder: `train/` and `val/` hold the documents.
    dir: PathBuf,
    train: Vec<Named>,
    val: Vec<Named>,
}

impl Language {
    fn val_chars(&self) -> usize {
        self.val.iter().map(|(_, t)| t.chars().count()).sum()
    }

    fn bytes(&self) -> usize {
        self.train_bytes() + self.val.iter().map(|(_, t)| t.len()).sum::<usize>()
    }

    fn train_bytes(&self) -> usize {
        self.train.iter().map(|(_, t)| t.len()).sum()
    }
}

/// A trained vocabulary and its compression of the held-out text.
struct Vocab {
    lang: usize,
    /// The size asked for; `n_vocab` is what training reached (merges stop at pairs seen once).
    size: usize,
    n_vocab: usize,
    command: String,
    path: PathBuf,
    val_tokens: usize,
    tokens_per_char: f64,
    bytes_per_token: f64,
    train_secs: f64,
}

pub fn run(lab: &mut Lab) -> Result<Report, LabError> {
    let smoke = lab.opts.smoke;
    let out = lab.opts.out.clone();
    let english = read(&lab.opts.data)?;
    let japanese = japanese_documents(&read(&lab.opts.japanese)?);
    let langs = [
        language(&out, "en", "English", english)?,
        language(&out, "ja", "Japanese", japanese)?,
    ];
    let sizes = if smoke { SMOKE_VOCABS } else { VOCABS };
    let mut vocabs = Vec::new();
    for (li, l) in langs.iter().enumerate() {
        for &size in &sizes {
            vocabs.push(train_vocab(lab, li, l, size)?);
        }
    }
    let subs: Vec<Lab> = vocabs
        .iter()
        .map(|v| lab.sub(v.path.clone(), vec![langs[v.lang].dir.clone()]))
        .collect::<Result<_, _>>()?;
    let (d, layers, heads, ff, ctx) = if smoke {
        (16, 1, 2, 32, 16)
    } else {
        (128, 4, 4, 352, 256)
    };
    let spec = |v: &Vocab, sub: &Lab, steps: u64| RunSpec {
        name: run_name(langs[v.lang].code, v.size),
        d_model: d,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: heads,
        d_ff: ff,
        ctx,
        steps,
        // Half the other studies' batch: the budget buys few tokens at the large
        // vocabularies, and more steps of fewer tokens train further on them.
        seqs_per_step: if smoke { 4 } else { 8 },
        micro: if smoke { 2 } else { 4 },
        lr: 2e-3,
        eval_every: (steps / 5).max(1),
        // About EVAL_BYTES of held-out text at this vocabulary's bytes per token.
        eval_tokens: if smoke {
            4 * ctx
        } else {
            ((EVAL_BYTES / sub.shards.val_bytes_per_token()) as usize).max(ctx)
        },
    };
    // Equal tokens: every run takes the same steps; the probe times one language's runs (the
    // other's have the same shapes) and the budget left after the vocabularies pays for all.
    let steps = match lab.opts.steps {
        Some(s) => s,
        None => {
            let mut per_step = 0.0;
            for (v, sub) in vocabs.iter().zip(&subs).filter(|(v, _)| v.lang == 0) {
                per_step += sub.seconds_per_step(&spec(v, sub, 3))?;
            }
            let left = lab.budget_secs() - lab.started.elapsed().as_secs_f64();
            crate::run::steps_for(left, per_step * langs.len() as f64)
        }
    };
    let mut runs = Vec::new();
    for (v, sub) in vocabs.iter().zip(&subs) {
        runs.push(sub.train(&spec(v, sub, steps), None)?);
        lab.read_back
            .set(lab.read_back.get() + sub.read_back.replace(0));
    }
    let bytes_per_train_token: Vec<f64> = subs
        .iter()
        .map(|s| s.shards.train_bytes_per_token())
        .collect();
    Ok(report(
        lab,
        steps,
        &langs,
        &vocabs,
        &runs,
        &bytes_per_train_token,
    ))
}

fn run_name(code: &str, size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{code}-{}k", size / 1024)
    } else {
        format!("{code}-{size}")
    }
}

/// The text of each document of `inputs`, named by file.
fn read(inputs: &[PathBuf]) -> Result<Vec<Named>, LabError> {
    let docs = data::collect_documents(inputs).map_err(|e| LabError::Train(e.to_string()))?;
    let texts = data::read_documents(&docs).map_err(|e| LabError::Train(e.to_string()))?;
    Ok(docs
        .into_iter()
        .map(|d| d.name.replace('/', "_"))
        .zip(texts)
        .collect())
}

/// The Japanese files as documents: each line's indentation dropped (the plain-text rendering of
/// the Debian Reference indents every line, which would count as text), then cut into pieces of
/// about [`JA_DOC_BYTES`] at line breaks.
fn japanese_documents(files: &[Named]) -> Vec<Named> {
    let mut docs = Vec::new();
    for (name, text) in files {
        let stem = name.trim_end_matches(".txt");
        let mut piece = String::new();
        for line in text.lines() {
            piece.push_str(line.trim_start());
            piece.push('\n');
            if piece.len() >= JA_DOC_BYTES {
                docs.push((
                    format!("{stem}-{:03}.txt", docs.len()),
                    std::mem::take(&mut piece),
                ));
            }
        }
        if !piece.trim().is_empty() {
            docs.push((format!("{stem}-{:03}.txt", docs.len()), piece));
        }
    }
    docs
}

/// Splits the documents as `camelid train` will and writes them under `text/CODE/{train,val}`,
/// so that the tokenizer's command names the training documents alone and the runs' commands the
/// folder of both (whose split is the same: it goes by the documents' text).
fn language(
    out: &Path,
    code: &'static str,
    name: &'static str,
    docs: Vec<Named>,
) -> Result<Language, LabError> {
    let (train, val) = data::split_documents(docs, VAL_FRACTION);
    if val.is_empty() || train.is_empty() {
        return Err(LabError::Train(format!(
            "the {name} text needs at least two documents, to hold one out"
        )));
    }
    let dir = out.join("text").join(code);
    for (split, docs) in [("train", &train), ("val", &val)] {
        let d = dir.join(split);
        std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        for (n, t) in docs.iter() {
            let p = d.join(n);
            std::fs::write(&p, t).map_err(io_err(&p))?;
        }
    }
    Ok(Language {
        code,
        name,
        dir,
        train,
        val,
    })
}

/// Trains a byte-level vocabulary of `size` on the language's training documents into
/// `tokenizers/CODE-SIZE/` as `camelid train-tokenizer` would, and measures it on the held-out
/// ones.
fn train_vocab(lab: &Lab, li: usize, l: &Language, size: usize) -> Result<Vocab, LabError> {
    let err = |e: camelid_tokenizer::Error| LabError::Train(format!("vocabulary {size}: {e}"));
    let mut config = TrainConfig::new(ModelKind::ByteLevel, size);
    config.threads = lab.opts.threads;
    let texts: Vec<&str> = l.train.iter().map(|(_, t)| t.as_str()).collect();
    let start = std::time::Instant::now();
    let trained = train(&texts, &config).map_err(err)?;
    let train_secs = start.elapsed().as_secs_f64();
    let dir = lab.opts.out.join("tokenizers").join(run_name(l.code, size));
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let tok = trained.tokenizer();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tok.to_tokenizer_json().map_err(err)?).map_err(io_err(&path))?;
    let cfg = dir.join("tokenizer_config.json");
    std::fs::write(&cfg, tok.to_tokenizer_config_json()).map_err(io_err(&cfg))?;
    let val: Vec<&str> = l.val.iter().map(|(_, t)| t.as_str()).collect();
    let val_tokens = count_tokens(tok, &val, lab.opts.threads);
    let val_bytes: usize = val.iter().map(|t| t.len()).sum();
    (lab.say)(&format!(
        "{}: {} tokens trained in {train_secs:.1} s; {:.3} tokens per character held out",
        run_name(l.code, size),
        tok.n_vocab(),
        val_tokens as f64 / l.val_chars().max(1) as f64
    ));
    Ok(Vocab {
        lang: li,
        size,
        n_vocab: tok.n_vocab(),
        command: format!(
            "camelid train-tokenizer --kind byte-level --vocab-size {size}{} --out {}",
            data_flags(&[l.dir.join("train")]),
            dir.display()
        ),
        path,
        val_tokens,
        tokens_per_char: val_tokens as f64 / l.val_chars().max(1) as f64,
        bytes_per_token: val_bytes as f64 / val_tokens.max(1) as f64,
        train_secs,
    })
}

/// Input embedding and output layer: their share of the weights.
fn embedding_share(c: &Config) -> f64 {
    let emb = c.n_vocab as u64 * c.d_model as u64 * if c.tied_embeddings { 1 } else { 2 };
    emb as f64 / c.n_params() as f64
}

/// The weights outside the embedding and output layers.
fn body(c: &Config) -> u64 {
    c.n_params() - c.n_vocab as u64 * c.d_model as u64 * if c.tied_embeddings { 1 } else { 2 }
}

/// Share of Japanese characters (kana, CJK ideographs, full-width forms and punctuation).
fn japanese_share(docs: &[Named]) -> f64 {
    let (mut ja, mut all) = (0usize, 0usize);
    for c in docs.iter().flat_map(|(_, t)| t.chars()) {
        all += 1;
        ja += matches!(c, '\u{3000}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}' | '\u{ff00}'..='\u{ffef}')
            as usize;
    }
    ja as f64 / all.max(1) as f64
}

fn report(
    lab: &Lab,
    steps: u64,
    langs: &[Language; 2],
    vocabs: &[Vocab],
    runs: &[RunResult],
    bytes_per_train_token: &[f64],
) -> Report {
    let n = vocabs.len() / 2;
    let (en, ja) = (&vocabs[..n], &vocabs[n..]);
    let c = &runs[0].config;
    let all_ja: Vec<Named> = langs[1]
        .train
        .iter()
        .chain(&langs[1].val)
        .cloned()
        .collect();
    let mut rep = Report::new(
        Study::Vocab,
        "Vocabulary size: fewer tokens for the same text, and what they cost",
        lab,
        steps,
        &format!(
            "Llama 3 grew the vocabulary from Llama 2's 32K tokens to 128K; Meta reports that \
             the same English text then takes about 15% fewer tokens, and other languages far \
             fewer. Here vocabularies of {} tokens are trained with `camelid train-tokenizer` \
             on English ({}; {} documents, {}) and on Japanese ({}; {} documents, {}, {:.0}% of \
             its characters kana, kanji or full-width forms, the rest mostly ASCII). \
             All are **byte-level BPE in the Llama 3 style** (its pre-tokenizer pattern, the \
             256 bytes as the alphabet): it is the kind whose growth the claim is about, and \
             with bytes as the alphabet even the 1K vocabulary can spell the thousands of \
             distinct Japanese characters, where a SentencePiece-style 1K vocabulary could not \
             hold them. Each vocabulary is trained on its language's training documents and \
             measured on the held-out ones. Then one model shape ({} layers, width {}, {} \
             heads) is trained with each vocabulary at **equal training tokens** ({} each, as \
             Llama 3 fixed its token count rather than its compute): a larger vocabulary packs \
             more text into those tokens but pays for a larger embedding and output layer. \
             Quality is validation bits per byte, which is comparable across vocabularies, on \
             the first {} of each language's held-out text.",
            vocabs[..n]
                .iter()
                .map(|v| format::count_k(v.size as f64))
                .collect::<Vec<_>>()
                .join(", "),
            if lab.opts.default_data {
                "the complete works of Shakespeare"
            } else {
                "the given text"
            },
            langs[0].train.len() + langs[0].val.len(),
            format::bytes(langs[0].bytes() as f64),
            if lab.opts.default_japanese {
                "the Japanese translation of the Debian Reference, a system administration \
                 manual by Osamu Aoki under GPL-2+, as plain text from the Debian package \
                 debian-reference-ja 2.100, checked against its SHA-256; its commands and paths \
                 are ASCII"
            } else {
                "the given text"
            },
            langs[1].train.len() + langs[1].val.len(),
            format::bytes(langs[1].bytes() as f64),
            100.0 * japanese_share(&all_ja),
            c.n_layers,
            c.d_model,
            c.n_heads,
            format::thousands(runs[0].tokens),
            format::bytes(EVAL_BYTES),
        ),
    );
    rep.h2("Compression");
    let rows: Vec<Vec<String>> = vocabs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let prev = (i % n > 0).then(|| &vocabs[i - 1]);
            vec![
                langs[v.lang].name.to_string(),
                format::thousands(v.size as u64),
                format::thousands(v.n_vocab as u64),
                format::thousands(v.val_tokens as u64),
                format!("{:.4}", v.tokens_per_char),
                format!("{:.3}", v.bytes_per_token),
                prev.map_or("".into(), |p| pct(v.tokens_per_char, p.tokens_per_char)),
                format!("{:.1} s", v.train_secs),
            ]
        })
        .collect();
    rep.table(
        &[
            "language",
            "vocabulary asked",
            "tokens",
            "held-out tokens",
            "tokens per character",
            "bytes per token",
            "tokens against the size before",
            "training time",
        ],
        &rows,
    );
    rep.para(&format!(
        "Held out: {} English characters ({} documents), {} Japanese characters ({} documents). \
         A vocabulary may come out smaller than asked when no pair is left that occurs twice.",
        format::thousands(langs[0].val_chars() as u64),
        langs[0].val.len(),
        format::thousands(langs[1].val_chars() as u64),
        langs[1].val.len()
    ));
    rep.chart(
        "vocab-tokens-per-char.svg",
        "tokens per character of held-out text against vocabulary size, English and Japanese",
        compression_svg(langs, vocabs),
        &format!(
            "Tokens spent per character of held-out text by each vocabulary (lower is better \
             compression), on a doubling scale of vocabulary size. From {} to {} tokens English \
             goes from {:.3} to {:.3} tokens per character ({}) and Japanese from {:.3} to \
             {:.3} ({}); a kana or kanji is three UTF-8 bytes, which a small byte-level \
             vocabulary spells in pieces.",
            format::count_k(en[0].size as f64),
            format::count_k(en[n - 1].size as f64),
            en[0].tokens_per_char,
            en[n - 1].tokens_per_char,
            pct(en[n - 1].tokens_per_char, en[0].tokens_per_char),
            ja[0].tokens_per_char,
            ja[n - 1].tokens_per_char,
            pct(ja[n - 1].tokens_per_char, ja[0].tokens_per_char),
        ),
    );
    let passes: Vec<f64> = runs
        .iter()
        .zip(vocabs)
        .zip(bytes_per_train_token)
        .map(|((r, v), bpt)| r.tokens as f64 * bpt / langs[v.lang].train_bytes() as f64)
        .collect();
    rep.h2("Training with each vocabulary");
    let rows: Vec<Vec<String>> = runs
        .iter()
        .zip(vocabs)
        .zip(bytes_per_train_token)
        .map(|((r, v), bpt)| {
            vec![
                r.spec.name.clone(),
                format::thousands(v.n_vocab as u64),
                format::thousands(r.config.n_params()),
                format!("{:.1}%", 100.0 * embedding_share(&r.config)),
                format::thousands(r.tokens),
                format::bytes(r.tokens as f64 * bpt),
                format!(
                    "{:.2}",
                    r.tokens as f64 * bpt / langs[v.lang].train_bytes() as f64
                ),
                format!("{:.3e}", r.train_flops()),
                format!("{:.4}", r.val_bpb),
            ]
        })
        .collect();
    rep.table(
        &[
            "run",
            "vocabulary",
            "parameters",
            "embedding + output share",
            "training tokens",
            "training text seen",
            "passes over the training text",
            "training FLOPs (6·N·D)",
            "validation bits per byte",
        ],
        &rows,
    );
    rep.chart(
        "vocab-bpb.svg",
        "validation bits per byte against vocabulary size, English and Japanese",
        bpb_svg(langs, vocabs, runs),
        &format!(
            "Validation bits per byte of each model after {} training tokens (lower is \
             better); bits per byte counts the held-out text's bytes, so models with different \
             vocabularies are scored alike. The best English vocabulary here is {}, at {:.4} \
             bits per byte, and the best Japanese one {}, at {:.4}; the Japanese runs read \
             their smaller training text up to {:.1} times, the English ones up to {:.2} of \
             theirs.",
            format::thousands(runs[0].tokens),
            reached(&en[best(&runs[..n]).0]),
            best(&runs[..n]).1,
            reached(&ja[best(&runs[n..]).0]),
            best(&runs[n..]).1,
            passes[n..].iter().fold(0f64, |a, &b| a.max(b)),
            passes[..n].iter().fold(0f64, |a, &b| a.max(b)),
        ),
    );
    rep.chart(
        "vocab-embedding-share.svg",
        "share of the parameters in the embedding and output layers against vocabulary size",
        share_svg(langs, vocabs, runs),
        &format!(
            "The share of each model's weights in its input embedding and output layer, which \
             grow with the vocabulary while the transformer body stays at {} weights. At {} \
             tokens they are {:.0}% of the model, so the larger vocabularies spend most of a \
             small model on the vocabulary; both languages' models have the same shapes, so \
             their lines coincide up to where the Japanese vocabulary stopped growing.",
            format::thousands(body(c)),
            format::count_k(en[n - 1].size as f64),
            100.0 * embedding_share(&runs[n - 1].config)
        ),
    );
    rep.h2("Against the paper");
    rep.para(&claim(en, ja, &runs[..n], &runs[n..]));
    rep.h2("Tokenizers");
    rep.para(
        "Each vocabulary is what its command makes (training is deterministic; no seed is \
         involved). The text folders are written by the study: the English documents as \
         fetched, the Japanese file with each line's indentation dropped and cut into \
         documents of about 32 KiB at line breaks; `train/` and `val/` are the split `camelid \
         train` makes of them.",
    );
    let rows: Vec<Vec<String>> = vocabs
        .iter()
        .map(|v| {
            vec![
                run_name(langs[v.lang].code, v.size),
                format!("`{}`", v.command),
            ]
        })
        .collect();
    rep.table(&["vocabulary", "command"], &rows);
    rep.add_runs(runs);
    rep.results = serde_json::json!({
        "tokenizers": vocabs.iter().map(|v| serde_json::json!({
            "name": run_name(langs[v.lang].code, v.size),
            "language": langs[v.lang].code,
            "vocab_size": v.size,
            "n_vocab": v.n_vocab,
            "command": v.command,
            "val_tokens": v.val_tokens,
            "tokens_per_char": v.tokens_per_char,
            "bytes_per_token": v.bytes_per_token,
        })).collect::<Vec<_>>(),
        "embedding_share": runs.iter().map(|r| embedding_share(&r.config)).collect::<Vec<_>>(),
        "val_chars": {
            langs[0].code: langs[0].val_chars(),
            langs[1].code: langs[1].val_chars(),
        },
    });
    rep
}

/// "32k", or "32k (18.0K reached)" when training ran out of pairs seen twice.
fn reached(v: &Vocab) -> String {
    if v.n_vocab == v.size {
        format::count_k(v.size as f64)
    } else {
        format!(
            "{} ({} reached)",
            format::count_k(v.size as f64),
            format::count(v.n_vocab as f64)
        )
    }
}

/// The index and loss of the run with the lowest loss.
fn best(runs: &[RunResult]) -> (usize, f64) {
    runs.iter()
        .enumerate()
        .min_by(|a, b| a.1.val_bpb.total_cmp(&b.1.val_bpb))
        .map_or((0, f64::NAN), |(i, r)| (i, r.val_bpb))
}

fn claim(en: &[Vocab], ja: &[Vocab], en_runs: &[RunResult], ja_runs: &[RunResult]) -> String {
    let n = en.len();
    // Llama 3's step is two doublings (32K to 128K), as 4K to 16K is here.
    let (a, b) = (1, 2);
    let d_en = en[b].tokens_per_char / en[a].tokens_per_char - 1.0;
    let d_ja = ja[b].tokens_per_char / ja[a].tokens_per_char - 1.0;
    let size = reached;
    let step = format!(
        "two doublings from {} to {} take English from {:.3} to {:.3} tokens per character ({}) \
         and Japanese from {:.3} to {:.3} ({})",
        size(&en[a]),
        size(&en[b]),
        en[a].tokens_per_char,
        en[b].tokens_per_char,
        pct(en[b].tokens_per_char, en[a].tokens_per_char),
        ja[a].tokens_per_char,
        ja[b].tokens_per_char,
        pct(ja[b].tokens_per_char, ja[a].tokens_per_char),
    );
    let tokens = if d_ja < d_en {
        let ratio = d_ja / d_en;
        format!("agrees in direction: {step}, {ratio:.1}× the English reduction")
    } else {
        format!("does not show here: {step}, no larger gain for Japanese")
    };
    let quality = |name: &str, v: &[Vocab], r: &[RunResult]| {
        let (b, bpb) = best(r);
        let last = &r[r.len() - 1];
        if b == r.len() - 1 {
            format!(
                "in {name} the largest vocabulary ({}) also gives the lowest bits per byte \
                 ({bpb:.4}, against {:.4} at {})",
                size(&v[v.len() - 1]),
                r[0].val_bpb,
                size(&v[0])
            )
        } else {
            format!(
                "in {name} the lowest bits per byte come from {} tokens ({bpb:.4}), and the \
                 largest vocabulary ({}) ends at {:.4} ({})",
                size(&v[b]),
                size(&v[v.len() - 1]),
                last.val_bpb,
                pct(last.val_bpb, bpb)
            )
        }
    };
    let (big, small) = (&en_runs[n - 1], &en_runs[0]);
    let largest_wins = [en_runs, ja_runs].iter().all(|r| best(r).0 == r.len() - 1);
    let why = if largest_wins {
        format!(
            "At equal tokens the extra text outweighs the larger embedding, each of whose rows \
             is trained only by the tokens that use it, which agrees with Llama 3's choice. \
             Equal compute is another comparison, not made here: the {} English run cost \
             {:.1}× the training FLOPs of the {} one. The compute-optimal vocabulary grows with \
             the model (Tao et al. 2024, *Scaling Laws with Vocabulary*), and beside a \
             transformer body of {} weights the embedding and output layers already hold {:.0}% \
             of the {} model",
            size(&en[n - 1]),
            big.train_flops() / small.train_flops(),
            size(&en[0]),
            format::thousands(body(&small.config)),
            100.0 * embedding_share(&big.config),
            size(&en[n - 1]),
        )
    } else {
        format!(
            "Beside a transformer body of {} weights the embedding and output layers take most \
             of the weights and of the compute at the larger sizes ({:.0}% of the {} model), \
             and each of their rows is trained only by the tokens that use it. The vocabulary \
             that pays grows with the model (Tao et al. 2024, *Scaling Laws with Vocabulary*); \
             Llama 3's 128K sits beside 8B to 405B parameters",
            format::thousands(body(&small.config)),
            100.0 * embedding_share(&big.config),
            size(&en[n - 1]),
        )
    };
    let quality = format!(
        "With equal training tokens the larger vocabularies see more text ({:.2} bytes per \
         token at {} against {:.2} at {} in English); {}, and {}. {why}",
        en[n - 1].bytes_per_token,
        size(&en[n - 1]),
        en[0].bytes_per_token,
        size(&en[0]),
        quality("English", en, en_runs),
        quality("Japanese", ja, ja_runs),
    );
    format!(
        "**Claim (Llama 3, §3.1 and the model card): a 128K vocabulary encodes the same text in \
         fewer tokens than a 32K one, about 15% fewer in English and far fewer in other \
         languages.** Vocabularies of 128K cannot be trained on corpora this small, so the \
         comparison is the same step of two doublings (×4) at smaller sizes, each vocabulary \
         trained on its own language (Llama 3's is multilingual, and much of its Japanese gain \
         is tokens that a mostly-English 32K vocabulary lacked). The claim {tokens}. \
         English's {} over that ×4 step is {} Llama 3's 15% at 32K to 128K; the gain per \
         step shrinks as the vocabulary grows (the next doubling, {} to {}, gives English {} \
         and Japanese {}).\n\n**Quality at equal tokens.** {quality}.",
        pct(en[b].tokens_per_char, en[a].tokens_per_char),
        if (d_en.abs() * 100.0 - 15.0).abs() <= 5.0 {
            "close to"
        } else {
            "to be set against"
        },
        size(&en[b]),
        size(&en[n - 1]),
        pct(en[n - 1].tokens_per_char, en[b].tokens_per_char),
        pct(ja[n - 1].tokens_per_char, ja[b].tokens_per_char),
    )
}

fn lang_style(li: usize) -> Style {
    Style::nth(li)
}

/// Vocabularies are drawn at the size they reached.
fn vocab_axis(vocabs: &[Vocab]) -> Axis {
    let lo = vocabs.iter().map(|v| v.n_vocab).min().unwrap_or(1) as f64;
    let hi = vocabs.iter().map(|v| v.n_vocab).max().unwrap_or(2) as f64;
    Axis::pow2(lo, hi, 8, &|v| format::count_k(v)).title("vocabulary size (tokens)")
}

/// One panel of a value per vocabulary, a line per language.
fn per_language_svg(
    id: &str,
    title: &str,
    langs: &[Language; 2],
    vocabs: &[Vocab],
    values: &[f64],
    y_title: &str,
    y_label: &dyn Fn(f64) -> String,
) -> String {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &y| {
            (l.min(y), h.max(y))
        });
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.01);
    let y = Axis::linear((lo - pad).max(0.0), hi + pad, 0.0, y_label).title(y_title);
    let mut panel = LinePanel::new(id, title, vocab_axis(vocabs), y);
    let mut legend = Legend::new(None);
    for (li, l) in langs.iter().enumerate() {
        let pts = vocabs
            .iter()
            .zip(values)
            .filter(|(v, _)| v.lang == li)
            .map(|(v, &y)| (v.n_vocab as f64, y))
            .collect();
        panel = panel.series(
            Series::line(l.code, lang_style(li), pts)
                .marks(Marks::Every)
                .end_label(l.name),
        );
        legend = legend.entry(LegendEntry::new(
            l.code,
            format!("{} ({})", l.name, l.code),
            lang_style(li),
        ));
    }
    let mut fig = Figure::new();
    fig.lines(panel.legend(legend));
    fig.to_svg()
}

fn compression_svg(langs: &[Language; 2], vocabs: &[Vocab]) -> String {
    let v: Vec<f64> = vocabs.iter().map(|v| v.tokens_per_char).collect();
    per_language_svg(
        "tokens-per-char",
        "Compression of held-out text",
        langs,
        vocabs,
        &v,
        "tokens per character",
        &|v| format!("{v:.2}"),
    )
}

fn bpb_svg(langs: &[Language; 2], vocabs: &[Vocab], runs: &[RunResult]) -> String {
    let v: Vec<f64> = runs.iter().map(|r| r.val_bpb).collect();
    per_language_svg(
        "bpb",
        "Quality at equal training tokens",
        langs,
        vocabs,
        &v,
        "validation bits per byte",
        &|v| format!("{v:.2}"),
    )
}

fn share_svg(langs: &[Language; 2], vocabs: &[Vocab], runs: &[RunResult]) -> String {
    let v: Vec<f64> = runs
        .iter()
        .map(|r| 100.0 * embedding_share(&r.config))
        .collect();
    per_language_svg(
        "embedding-share",
        "Weights in the embedding and output layers",
        langs,
        vocabs,
        &v,
        "share of parameters (%)",
        &|v| format!("{v:.0}%"),
    )
}
