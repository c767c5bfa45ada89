//! A study's report: `report.md` with its charts beside it (`*.svg`) and `results.json` (the
//! measured values by run), in the study's folder.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::run::{Lab, RunResult, load_average};
use crate::{LabError, Study, io_err};

pub struct Report {
    pub study: Study,
    md: String,
    charts: Vec<(String, String)>,
    runs: Vec<RunResult>,
    /// Study-specific measured values for `results.json`.
    pub results: serde_json::Value,
}

impl Report {
    /// The title, the command that reproduces the study and the question it asks.
    pub fn new(study: Study, title: &str, lab: &Lab, steps: u64, question: &str) -> Report {
        let mut md = format!("# {title}\n\n{question}\n\n");
        let _ = writeln!(
            md,
            "Reproduce: `{}` (training is deterministic by seed at any thread count; every \
             number below comes from the runs listed under *Runs*, each with its `camelid \
             train` command and seed).\n",
            lab.experiment_command(study, steps)
        );
        Report {
            study,
            md,
            charts: Vec::new(),
            runs: Vec::new(),
            results: serde_json::json!({}),
        }
    }

    pub fn h2(&mut self, s: &str) {
        let _ = write!(self.md, "## {s}\n\n");
    }

    pub fn para(&mut self, s: &str) {
        let _ = write!(self.md, "{s}\n\n");
    }

    /// A Markdown table; cells must not hold `|`.
    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.md, "| {} |", headers.join(" | "));
        let _ = writeln!(
            self.md,
            "|{}|",
            headers.iter().map(|_| "---").collect::<Vec<_>>().join("|")
        );
        for r in rows {
            let _ = writeln!(self.md, "| {} |", r.join(" | "));
        }
        self.md.push('\n');
    }

    /// A chart (`file` beside the report) and what it shows.
    pub fn chart(&mut self, file: &str, alt: &str, svg: String, explain: &str) {
        let _ = write!(self.md, "![{alt}]({file})\n\n{explain}\n\n");
        self.charts.push((file.to_string(), svg));
    }

    /// The runs whose numbers the report uses (listed with their commands at the end).
    pub fn add_runs(&mut self, runs: &[RunResult]) {
        self.runs.extend(runs.iter().cloned());
    }

    /// Writes the charts, `report.md` (with the runs and the machine appended) and
    /// `results.json`; returns the report's path.
    pub fn write(mut self, lab: &Lab) -> Result<PathBuf, LabError> {
        self.h2("Runs");
        self.para(
            "Each run is what its `camelid train` command makes (the tokenizer is the file its \
             `--tokenizer` names, in this report's folder; `--data` absent means the default \
             Shakespeare text). The checkpoints are under `runs/`.",
        );
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.spec.name.clone(),
                    format!("`{}`", r.command),
                    lab.opts.seed.to_string(),
                    format!("{:.1} s", r.wall_s),
                ]
            })
            .collect();
        self.table(&["run", "command", "seed", "wall time"], &rows);
        self.h2("Machine");
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        if lab.read_back.get() > 0 {
            self.para(&format!(
                "This report was rewritten from runs already trained (`--reuse`): {} of the {} \
                 runs were read back from `runs/` (their losses and wall times from their \
                 checkpoints and logs); what follows describes the rewrite, and anything timed \
                 in it (decoding speeds) was measured during the rewrite.",
                lab.read_back.get(),
                self.runs.len()
            ));
        }
        self.para(&format!(
            "{} build; {} compute thread{} on a machine with {cores} usable cores; load average \
             (1, 5, 15 min) {} at the start and {} at the end; the study took {:.1} min. Times \
             and speeds are measured on this machine as it was (other work included) and are \
             not part of what a rerun reproduces; losses are.",
            if cfg!(debug_assertions) {
                "A dev (debug-assertions) camelid"
            } else {
                "A release camelid"
            },
            lab.opts.threads,
            if lab.opts.threads == 1 { "" } else { "s" },
            lab.load_at_start.as_deref().unwrap_or("unknown"),
            load_average().as_deref().unwrap_or("unknown"),
            lab.started.elapsed().as_secs_f64() / 60.0
        ));
        let out = &lab.opts.out;
        for (file, svg) in &self.charts {
            let p = out.join(file);
            std::fs::write(&p, svg).map_err(io_err(&p))?;
        }
        let json = serde_json::json!({
            "study": self.study.name(),
            "seed": lab.opts.seed,
            "runs": self.runs.iter().map(RunResult::to_json).collect::<Vec<_>>(),
            "results": self.results,
        });
        let p = out.join("results.json");
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        std::fs::write(&p, text + "\n").map_err(io_err(&p))?;
        let p = out.join("report.md");
        std::fs::write(&p, &self.md).map_err(io_err(&p))?;
        Ok(p)
    }
}

/// A relative change in percent with its sign (two decimals below 1%).
pub fn pct(new: f64, old: f64) -> String {
    let p = (new / old - 1.0) * 100.0;
    if p.abs() < 1.0 {
        format!("{p:+.2}%")
    } else {
        format!("{p:+.1}%")
    }
}
