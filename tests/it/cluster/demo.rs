//! `make demo` (tests/platform/demo.sh) on the running cluster: it shows the Run and
//! the Job Karo created, its rendered command, its pod's log and the restarted Deployment's
//! new ReplicaSet.

use std::process::Command;

use crate::support::cluster::karo_image;
use crate::support::files::{repo_path, stderr, stdout};

/// The lines after the `==> <heading>` line, up to the next heading.
fn section<'a>(lines: &[&'a str], heading: &str) -> Vec<&'a str> {
    let at = lines
        .iter()
        .position(|l| *l == format!("==> {heading}"))
        .unwrap_or_else(|| panic!("no section {heading:?} in:\n{}", lines.join("\n")));
    lines[at + 1..]
        .iter()
        .take_while(|l| !l.starts_with("==> "))
        .copied()
        .collect()
}

#[test]
fn demo_shows_the_run_the_job_its_log_and_the_restarted_deployment() {
    let out = Command::new("bash")
        .arg(repo_path("tests/platform/demo.sh"))
        .current_dir(repo_path(""))
        // The image `make image` built for this run; the cluster is running.
        .env("KARO_DEMO_IMAGE", karo_image())
        .output()
        .expect("running tests/platform/demo.sh");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "demo.sh failed:\n{text}\n{}",
        stderr(&out)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(text.contains("==> using the running cluster"), "{text}");

    let run = section(
        &lines,
        "the Run: Karo's record of this reaction to the alert",
    );
    assert!(
        run[0].starts_with("NAME ") && run[0].contains("PHASE"),
        "{text}"
    );
    assert!(
        run[1].starts_with("restart-deployment-") && run[1].contains("Succeeded"),
        "the Run succeeded:
{text}"
    );
    let job = section(&lines, "the Job Karo created");
    assert!(job[0].starts_with("NAME "), "{text}");
    assert!(job[1].starts_with("restart-deployment-restart-"), "{text}");
    assert!(job[1].contains("1/1"), "the Job completed:\n{text}");
    let command = section(&lines, "its rendered command");
    assert!(
        command[0].starts_with("kubectl rollout restart deployment/checkout -n karo-demo-"),
        "{text}"
    );
    assert_eq!(
        section(&lines, "its pod's log"),
        ["deployment.apps/checkout restarted"]
    );
    let sets = section(&lines, "its effect: checkout rolled out a new ReplicaSet");
    assert_eq!(sets.len(), 3, "a header and two ReplicaSets:\n{text}");
    assert_eq!(lines.last(), sets.last(), "the demo ends with the effect");
}
