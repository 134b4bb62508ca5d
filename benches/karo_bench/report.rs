//! The table the benchmark prints (Markdown, so that BENCHMARKS.md can quote it).

use std::fmt::Write as _;

pub struct Row {
    pub what: String,
    pub karo: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    pub met: String,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    /// Behaviour checks that failed (a wrong Job count, an error answer): the
    /// benchmark still prints its table, then exits non-zero.
    pub failures: Vec<String>,
}

impl Report {
    pub fn row(
        &mut self,
        what: String,
        karo: String,
        baseline: String,
        ratio: String,
        goal: String,
        met: String,
    ) {
        let row = Row {
            what,
            karo,
            baseline,
            ratio,
            goal,
            met,
        };
        eprintln!(
            "karo-bench: {} | {} | {} | {} | {} | {}",
            row.what, row.karo, row.baseline, row.ratio, row.goal, row.met
        );
        self.rows.push(row);
    }

    pub fn note(&mut self, note: String) {
        eprintln!("karo-bench: {note}");
        self.notes.push(note);
    }

    pub fn fail(&mut self, failure: String) {
        eprintln!("karo-bench: CHECK FAILED: {failure}");
        self.failures.push(failure);
    }

    pub fn markdown(&self, header: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{header}\n");
        let _ = writeln!(
            out,
            "| benchmark | Karo | baseline (same run) | ratio | goal | met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.what, r.karo, r.baseline, r.ratio, r.goal, r.met
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nChecks that FAILED:");
            for f in &self.failures {
                let _ = writeln!(out, "- {f}");
            }
        }
        out
    }
}
