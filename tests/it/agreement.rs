//! `karo render` and the daemon decide with the same plan: for the same reactions
//! and the same notification, `karo render` prints the Jobs the daemon creates
//! (and those a dry run renders), owned by the same Runs, and says why the others
//! are not created (suspended, `triggerOn`, a matcher), as the daemon's answer counts
//! them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::files::{documents, stderr, stdout};
use crate::support::karo_lib::PLACEHOLDER_UID;
use crate::support::karo_process::karo_command as karo;
use crate::support::process::TestDir;
use crate::support::scenario::Scenario;
use crate::support::webhook::{alert, notification};

fn reaction(name: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {{name: {name}}}
spec:
  alertName: DiskFull
{extra}
  actions:
    - name: clean
      image: busybox
      args: ["clean {{{{labels.instance}}}} {{{{annotations.summary}}}}"]
"#
    )
}

fn names(jobs: &[Value]) -> BTreeSet<String> {
    jobs.iter()
        .map(|j| {
            j["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn karo_render_prints_what_the_daemon_does() {
    let reactions = [
        reaction("plain", ""),
        reaction("suspended", "  suspend: true"),
        reaction("dry", "  dryRun: true"),
        reaction("on-resolved", "  triggerOn: [resolved]"),
        reaction(
            "only-db",
            "  matchers: [{name: team, operator: \"=\", value: db}]",
        ),
    ];
    let mut builder = Scenario::build("agree");
    for r in &reactions {
        builder = builder.reaction(r);
    }
    let (s, karo_process) = builder.start().await;

    // One firing alert of team web (not db), one resolved alert.
    let mut resolved = alert(
        json!({"alertname": "DiskFull", "instance": "db-2", "team": "web"}),
        json!({"summary": "was full"}),
        "2026-06-01T00:00:00Z",
    );
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!("2026-06-01T01:00:00Z");
    let payload = notification(vec![
        alert(
            json!({"alertname": "DiskFull", "instance": "db-1", "team": "web"}),
            json!({"summary": "disk full"}),
            "2026-06-01T00:00:00Z",
        ),
        resolved,
    ]);

    // The reactions as the API server holds them: their UIDs name the Jobs.
    let dir = TestDir::new("agree").expect("temp dir");
    let mut manifests = String::new();
    for name in ["plain", "suspended", "dry", "on-resolved", "only-db"] {
        let r = s.reaction(name).await;
        manifests.push_str("---\n");
        manifests.push_str(&serde_yaml::to_string(&r).expect("reaction YAML"));
    }
    let reactions_file = dir.path().join("reactions.yaml");
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&reactions_file, manifests).expect("write reactions");
    std::fs::write(&payload_file, payload.to_string()).expect("write payload");

    let out = karo(&[
        "render",
        "-f",
        reactions_file.to_str().expect("utf-8 path"),
        "--alerts",
        payload_file.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "karo render: {}", stderr(&out));
    let rendered = documents(&stdout(&out));
    let log = stderr(&out);

    let summary = karo_process.notify_ok(&payload).await;
    let created = s.wait_jobs(2).await;

    // The same Jobs: what the daemon created and rendered in dry run is what
    // `karo render` printed, name for name.
    let created_json: Vec<Value> = created
        .iter()
        .map(|j| serde_json::to_value(j).expect("Job JSON"))
        .collect();
    let daemon_jobs: BTreeSet<String> = summary["jobs"]
        .as_array()
        .expect("jobs in the summary")
        .iter()
        .filter_map(|j| j.as_str().map(str::to_string))
        .collect();
    assert_eq!(names(&rendered), daemon_jobs, "{log}\n{summary}");
    assert_eq!(
        names(&created_json).len() + summary["dryRun"].as_u64().unwrap_or(0) as usize,
        rendered.len(),
        "{summary}"
    );
    // ... with the same containers, rendered from the same alert.
    for job in &created_json {
        let twin = rendered
            .iter()
            .find(|r| r["metadata"]["name"] == job["metadata"]["name"])
            .unwrap_or_else(|| panic!("{} not rendered:\n{log}", job["metadata"]["name"]));
        let containers = |j: &Value| j["spec"]["template"]["spec"]["containers"][0].clone();
        assert_eq!(containers(twin)["args"], containers(job)["args"]);
        assert_eq!(containers(twin)["image"], containers(job)["image"]);
        // ... owned by the same Run (offline, with the placeholder for its UID).
        let owner = |j: &Value| j["metadata"]["ownerReferences"][0].clone();
        assert_eq!(owner(job)["kind"], "AlertReactionRun", "{job}");
        assert_eq!(owner(twin)["name"], owner(job)["name"], "{log}");
        assert_eq!(owner(twin)["uid"], PLACEHOLDER_UID);
    }
    // ... and those are the Runs the daemon created, and the Runs `karo render` named.
    let runs = |names: Vec<&Value>| -> BTreeSet<String> {
        names
            .into_iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    };
    let daemon_runs = runs(summary["runs"].as_array().expect("runs").iter().collect());
    let mut owners = runs(
        created_json
            .iter()
            .map(|j| &j["metadata"]["ownerReferences"][0]["name"])
            .collect(),
    );
    // The dry run's Run records the occurrence and owns no Job.
    let dry: Vec<String> = s
        .runs()
        .await
        .into_iter()
        .filter(|r| r.spec.dry_run)
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(dry.len(), 1, "{summary}");
    owners.extend(dry);
    assert_eq!(daemon_runs, owners, "{summary}");
    let stored: BTreeSet<String> = s
        .runs()
        .await
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(stored, daemon_runs);
    for run in &daemon_runs {
        assert!(
            log.contains(&format!(" of Run {run}")),
            "{run} not in:\n{log}"
        );
    }

    // The same decisions: plain creates, dry runs, suspended is skipped, the
    // resolved alert triggers only on-resolved, only-db's matcher fails.
    assert_eq!(summary["created"], 2, "plain and on-resolved: {summary}");
    assert_eq!(summary["dryRun"], 1, "{summary}");
    assert_eq!(summary["skipped"], 1, "suspended: {summary}");
    assert_eq!(summary["matched"], 4, "{summary}");
    let matched_lines = log.lines().filter(|l| l.contains(": matched: ")).count();
    assert_eq!(matched_lines, 4, "{log}");
    for expected in [
        "default/suspended: matched: Job suspended-clean-",
        "the reaction is suspended",
        "dry run by spec.dryRun",
        "status firing is not in triggerOn [resolved]",
        "status resolved is not in triggerOn [firing]",
        "no match: matcher team=\"db\" failed (team=\"web\")",
    ] {
        let expected = expected.replace("default/", &format!("{}/", s.ns));
        assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
    }
}
