//! Closing the loop on the real cluster, with a real Alertmanager (0.25) delivering
//! its webhooks to Karo (send_resolved, group_wait 0s, group_interval 1s) and Karo
//! as a process on this host against the cluster, so that it can be SIGKILLed and
//! started again on the same port while Alertmanager retries:
//!
//! - `onResolved: Cancel`: the alert resolved in Alertmanager deletes the Run's
//!   running Job and its pod, the Run ends `Cancelled` and runs no `onFailure`;
//!   also when Karo's own silence mutes the resolved notification (Karo asks
//!   Alertmanager's alerts API); a Job that had already succeeded is not cancelled;
//! - `silence`: Alertmanager (read with `amtool`) holds Karo's silence on the alert's
//!   exact labels while the Job runs and mutes the alert; it is expired after a
//!   success, and at once after a failure, when Alertmanager notifies again;
//! - `verify`: a Job that succeeds while the alert keeps firing ends `Ineffective`
//!   and runs `onFailure` once with the Run in its arguments; one after which the
//!   alert resolves ends `Remediated` and runs `onSuccess` once;
//! - Karo killed during the long Job (the resolved notification waits in
//!   Alertmanager's retries) and while verifying (the deadline passes while it is
//!   down): the same outcome after the restart, and nothing runs twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::CustomResourceExt;
use serde_json::Value;

use super::{create_reaction, events_about, runs_of, POD_GUARD};
use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::cluster::Cluster;
use crate::support::karo_lib::{AlertReaction, AlertReactionRun, JobPhase, RunPhase, SilenceState};
use crate::support::karo_process::KaroProcess;
use crate::support::process::free_port;
use crate::support::ready::{wait_for, wait_until};
use crate::support::webhook::metric;

/// A long Job that ends at once on SIGTERM (a shell as PID 1 ignores it otherwise,
/// and the pod would take its 30 s grace period to go).
const CANCEL: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: cancel}
spec:
  alertName: ClosingCancel
  onResolved: Cancel
  actions:
    - name: wait
      image: IMAGE
      command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
  onFailure:
    - name: page
      image: IMAGE
      command: ["echo", "{{run.name}} {{run.phase}}"]
"#;

const SILENCE_OK: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: quiet}
spec:
  alertName: ClosingSilence
  silence: {duration: 10m, comment: "see the runbook"}
  actions:
    - name: work
      image: IMAGE
      command: ["sleep", "15"]
"#;

/// `silence: {}`: the defaults (enabled, 1h).
const SILENCE_FAIL: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: loud}
spec:
  alertName: ClosingSilenceFail
  backoffLimit: 0
  silence: {}
  actions:
    - name: work
      image: IMAGE
      command: ["sh", "-c", "sleep 12; echo disk still full; exit 3"]
"#;

/// A fix that succeeds at once; `onSuccess` and `onFailure` print what they see of
/// the Run.
fn verify_reaction(within: &str) -> String {
    format!(
        r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {{name: verify}}
spec:
  alertName: ClosingVerify
  verify: {{within: {within}}}
  actions:
    - name: fix
      image: IMAGE
      command: ["sh", "-c", "echo fixing {{{{labels.instance}}}}"]
  onSuccess:
    - name: note
      image: IMAGE
      command: ["sh", "-c", "echo noted {{{{run.name}}}} {{{{run.phase}}}} {{{{run.reason}}}}"]
  onFailure:
    - name: page
      image: IMAGE
      command: ["sh", "-c", "echo paging {{{{run.name}}}} {{{{run.phase}}}} {{{{run.reason}}}}{{{{#each run.jobs}}}} {{{{this.action}}}}={{{{this.phase}}}}{{{{/each}}}}"]
"#
    )
}

const CANCEL_ALERT: [(&str, &str); 2] = [("alertname", "ClosingCancel"), ("instance", "web-1")];
const VERIFY_ALERT: [(&str, &str); 2] = [("alertname", "ClosingVerify"), ("instance", "db-1")];

/// One test's world: its namespace; a real Alertmanager whose receiver is Karo's
/// webhook; Karo as a process against the cluster, watching that namespace only,
/// with its own Lease (5 s, so that a restarted Karo leads soon) and
/// `alertmanager.url`. The namespace is deleted on drop (its pods with it).
struct Loop {
    ns: String,
    am: Alertmanager,
    karo: KaroProcess,
}

impl Loop {
    /// `am`: the route's settings (`AlertmanagerConfig::nowhere()` and what the test
    /// changes); Karo's webhook is added as its receiver.
    async fn start(prefix: &str, am: AlertmanagerConfig) -> Loop {
        Loop::start_with_lease(prefix, am, "5s").await
    }

    /// `start` with `leaderElection.leaseDuration` `lease`: how long a restarted
    /// Karo waits before it follows the Runs (its webhook answers at once).
    async fn start_with_lease(prefix: &str, am: AlertmanagerConfig, lease: &str) -> Loop {
        let cluster = Cluster::get();
        install_crds().await;
        let ns = cluster.namespace(prefix).await;
        // Karo's port comes first: Alertmanager's config names the webhook, which
        // stays the same when Karo is restarted.
        let port = free_port();
        let am =
            Alertmanager::start(&am.and_webhook(&format!("http://127.0.0.1:{port}/webhook"))).await;
        let config = format!(
            "namespaces: [{ns}]\n\
             leaderElection: {{leaseName: karo-closing, namespace: {ns}, leaseDuration: {lease}}}\n\
             alertmanager: {{url: \"{}\"}}\n",
            am.url()
        );
        let karo = KaroProcess::start_with_config_on_port(cluster.kubeconfig(), &config, port)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        Loop { ns, am, karo }
    }

    /// The name of the reaction's one Run, once it exists.
    async fn the_run(&self, reaction: &str) -> String {
        let ns = &self.ns;
        let found = wait_for(POD_GUARD, || async move {
            let runs = runs_of(ns, reaction).await;
            assert!(runs.len() <= 1, "more than one Run of {reaction}");
            runs.first().and_then(|r| r.metadata.name.clone())
        })
        .await;
        found.unwrap_or_else(|e| panic!("no Run of {reaction}: {e}\n{}", self.diagnostics()))
    }

    /// Waits until the Run satisfies `check`; returns it. On the hang guard, panics
    /// with the Run, the namespace's objects and Karo's log.
    async fn wait_run(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AlertReactionRun) -> bool,
    ) -> AlertReactionRun {
        let api = self.runs().await;
        let check = &check;
        let waited = wait_for(POD_GUARD, || {
            let api = api.clone();
            async move { api.get(name).await.ok().filter(check) }
        })
        .await;
        waited.unwrap_or_else(|e| {
            panic!(
                "Run {}/{name} never {what}: {e}\n{}",
                self.ns,
                self.diagnostics()
            )
        })
    }

    async fn wait_phase(&self, name: &str, phase: RunPhase) -> AlertReactionRun {
        self.wait_run(name, phase.as_str(), |r| phase_of(r) == phase)
            .await
    }

    async fn run(&self, name: &str) -> AlertReactionRun {
        self.runs().await.get(name).await.expect("reading the Run")
    }

    async fn runs(&self) -> Api<AlertReactionRun> {
        Api::namespaced(Cluster::get().client().await, &self.ns)
    }

    async fn jobs(&self, selector: &str) -> Vec<Job> {
        Api::<Job>::namespaced(Cluster::get().client().await, &self.ns)
            .list(&ListParams::default().labels(selector))
            .await
            .expect("listing Jobs")
            .items
    }

    /// The Jobs of the Run (label `karo.io/run`), by name.
    async fn jobs_of_run(&self, run: &str) -> BTreeMap<String, Job> {
        self.jobs(&format!("karo.io/run={run}"))
            .await
            .into_iter()
            .map(|j| (j.metadata.name.clone().unwrap_or_default(), j))
            .collect()
    }

    /// The namespace's pods matching `selector` (`""`: all of them, which are its
    /// Jobs' pods).
    async fn pods(&self, selector: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(Cluster::get().client().await, &self.ns)
            .list(&ListParams::default().labels(selector))
            .await
            .expect("listing pods")
            .items
    }

    /// Waits until the Job's pod runs its container; returns the pod's name.
    async fn pod_running(&self, job: &str) -> String {
        let selector = format!("job-name={job}");
        let found = wait_for(POD_GUARD, || {
            let selector = selector.clone();
            async move {
                self.pods(&selector).await.into_iter().find_map(|p| {
                    let running = p.status.as_ref()?.phase.as_deref() == Some("Running");
                    running.then(|| p.metadata.name.clone().unwrap_or_default())
                })
            }
        })
        .await;
        found.unwrap_or_else(|e| {
            panic!(
                "the pod of Job {job} never ran: {e}\n{}",
                self.diagnostics()
            )
        })
    }

    /// Waits until the Run's one follow-up Job (`onfailure` or `onsuccess`) has
    /// succeeded; returns its name and its log.
    async fn follow_up_done(&self, run: &str, which: &str) -> (String, String) {
        let done = self
            .wait_run(
                run,
                &format!("recorded its {which} Job as succeeded"),
                |r| {
                    r.status.as_ref().is_some_and(|s| {
                        s.follow_up.len() == 1 && s.follow_up[0].phase == JobPhase::Succeeded
                    })
                },
            )
            .await;
        let name = done.status.expect("status").follow_up[0].name.clone();
        assert!(name.contains(which), "{name} is not an {which} Job");
        let log = Cluster::get().kubectl_ok(&["-n", &self.ns, "logs", &format!("job/{name}")]);
        (name, log.trim().to_string())
    }

    /// For a failure message: the namespace's Runs, Jobs and pods, and the end of
    /// Karo's log.
    fn diagnostics(&self) -> String {
        let state = Cluster::get().kubectl(&["-n", &self.ns, "get", "arr,jobs,pods", "-o", "wide"]);
        let log = self.karo.log_text();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "{}{}\nthe end of Karo's log:\n{}",
            String::from_utf8_lossy(&state.stdout),
            String::from_utf8_lossy(&state.stderr),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// The reasons of the Events about the reaction `name`.
    async fn event_reasons(&self, name: &str) -> Vec<String> {
        events_about(&self.ns, name)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Waits until the reaction has Events with each of `reasons`.
    async fn wait_events(&self, reaction: &str, reasons: &[&str]) {
        let waited = wait_until(POD_GUARD, || async {
            let seen = self.event_reasons(reaction).await;
            reasons.iter().all(|r| seen.iter().any(|s| s == r))
        })
        .await;
        if let Err(e) = waited {
            panic!(
                "Events {reasons:?} on {reaction}: {e}; seen {:?}",
                self.event_reasons(reaction).await
            );
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Its Jobs' pods go with it; nothing waits for that.
        let _ = Cluster::get().kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// Karo's CRDs as this build defines them (server-side apply, once per test
/// binary): Karo runs here as a process, so no `helm install` brings them (the
/// charts of other cluster tests bring the same ones, and skip them when present).
async fn install_crds() {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let client = Cluster::get().client().await;
            let crds = Api::<CustomResourceDefinition>::all(client.clone());
            for crd in [AlertReaction::crd(), AlertReactionRun::crd()] {
                let name = crd.metadata.name.clone().expect("a CRD name");
                crds.patch(
                    &name,
                    &PatchParams::apply("karo-tests").force(),
                    &Patch::Apply(&crd),
                )
                .await
                .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
            }
            let runs = Api::<AlertReactionRun>::all(client.clone());
            let reactions = Api::<AlertReaction>::all(client);
            wait_until(POD_GUARD, || async {
                runs.list(&ListParams::default().limit(1)).await.is_ok()
                    && reactions
                        .list(&ListParams::default().limit(1))
                        .await
                        .is_ok()
            })
            .await
            .expect("Karo's CRDs served");
        })
        .await;
}

fn phase_of(run: &AlertReactionRun) -> RunPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(RunPhase::Pending)
}

fn reason_of(run: &AlertReactionRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .unwrap_or("")
}

/// The Run's silence: its ID and state, once it has one.
fn silence_of(run: &AlertReactionRun) -> Option<(String, SilenceState)> {
    let s = run.status.as_ref()?.silence.as_ref()?;
    Some((s.id.clone().unwrap_or_default(), s.state))
}

/// A silence's matchers as `name -> value`, each checked to be an exact equality.
fn exact_matchers(silence: &Value) -> BTreeMap<String, String> {
    silence["matchers"]
        .as_array()
        .expect("matchers")
        .iter()
        .map(|m| {
            assert_eq!(m["isRegex"], false, "{m}");
            assert_eq!(m["isEqual"], true, "{m}");
            (
                m["name"].as_str().expect("name").to_string(),
                m["value"].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Alertmanager's state of the alert named `alertname` (`active`, `suppressed`),
/// and the silences it is muted by.
async fn alert_state(am: &Alertmanager, alertname: &str) -> Option<(String, Vec<String>)> {
    let alert = am
        .alerts()
        .await
        .into_iter()
        .find(|a| a["labels"]["alertname"] == alertname)?;
    let state = alert["status"]["state"].as_str()?.to_string();
    let by = alert["status"]["silencedBy"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some((state, by))
}

/// A Run cancelled because its alert resolved: its record, the Job and its pod
/// gone, and no `onFailure` Job.
async fn assert_cancelled(l: &Loop, run: &AlertReactionRun, job: &str) {
    let status = run.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some("AlertResolved"),
        "{status:?}"
    );
    assert!(status.resolved_at.is_some(), "{status:?}");
    assert!(status.completion_time.is_some(), "{status:?}");
    assert_eq!(status.jobs.len(), 1, "{status:?}");
    assert_eq!(status.jobs[0].name, job);
    assert_eq!(status.jobs[0].phase, JobPhase::Cancelled, "{status:?}");
    assert_eq!(status.jobs[0].reason.as_deref(), Some("AlertResolved"));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("1 active Job(s) deleted"), "{message}");
    // A silence kept while the Job ran is expired, in the Run and in Alertmanager.
    if let Some((id, state)) = silence_of(run) {
        assert_eq!(state, SilenceState::Expired, "{status:?}");
        let in_am = l.am.silences().await;
        assert!(
            in_am
                .iter()
                .any(|s| s["id"] == id.as_str() && s["status"]["state"] == "expired"),
            "{in_am:?}"
        );
    }

    let jobs: Api<Job> = Api::namespaced(Cluster::get().client().await, &l.ns);
    let job_gone = wait_until(POD_GUARD, || async {
        matches!(jobs.get_opt(job).await, Ok(None))
    })
    .await;
    assert!(
        job_gone.is_ok(),
        "Job {job} still there\n{}",
        l.diagnostics()
    );
    let selector = format!("job-name={job}");
    let pods_gone = wait_until(POD_GUARD, || async { l.pods(&selector).await.is_empty() }).await;
    assert!(
        pods_gone.is_ok(),
        "the pod of {job} still there\n{}",
        l.diagnostics()
    );

    // Cancelled is neither a success nor a failure: no follow-up Job.
    let name = run.metadata.name.clone().expect("a name");
    assert!(l.jobs_of_run(&name).await.is_empty(), "{}", l.diagnostics());
    let status = l.run(&name).await.status.expect("status");
    assert!(status.follow_up.is_empty(), "{status:?}");
    assert_eq!(status.phase, Some(RunPhase::Cancelled), "{status:?}");
    l.wait_events("cancel", &["Triggered", "Cancelled"]).await;
}

#[tokio::test]
async fn on_resolved_cancel_deletes_the_running_job_and_its_pod() {
    let l = Loop::start("closing-cancel", AlertmanagerConfig::nowhere()).await;
    create_reaction(&l.ns, CANCEL).await;
    l.am.fire(&CANCEL_ALERT, &[]).await;
    let run = l.the_run("cancel").await;
    let running = l.wait_phase(&run, RunPhase::Running).await;
    let job = running.status.expect("status").jobs[0].name.clone();
    let pod = l.pod_running(&job).await;

    l.am.resolve(&CANCEL_ALERT, &[]).await;
    let resolved = Instant::now();
    let cancelled = l.wait_phase(&run, RunPhase::Cancelled).await;
    let to_cancelled = resolved.elapsed();
    assert_cancelled(&l, &cancelled, &job).await;
    eprintln!(
        "cancel: resolved in Alertmanager -> Run Cancelled in {to_cancelled:?}, Job and pod {pod} \
         gone after {:?}",
        resolved.elapsed()
    );
}

#[tokio::test]
async fn on_resolved_cancel_sees_the_resolve_through_its_own_silence() {
    let l = Loop::start("closing-cancel-silenced", AlertmanagerConfig::nowhere()).await;
    let reaction = CANCEL.replace(
        "onResolved: Cancel\n",
        "onResolved: Cancel\n  silence: {}\n",
    );
    create_reaction(&l.ns, &reaction).await;
    l.am.fire(&CANCEL_ALERT, &[]).await;
    let run = l.the_run("cancel").await;
    let silenced = l
        .wait_run(&run, "silenced", |r| {
            phase_of(r) == RunPhase::Running
                && silence_of(r).is_some_and(|(_, state)| state == SilenceState::Active)
        })
        .await;
    let job = silenced.status.expect("status").jobs[0].name.clone();
    let pod = l.pod_running(&job).await;

    l.am.resolve(&CANCEL_ALERT, &[]).await;
    let resolved = Instant::now();
    let cancelled = l.wait_phase(&run, RunPhase::Cancelled).await;
    let to_cancelled = resolved.elapsed();
    assert!(silence_of(&cancelled).is_some(), "{:?}", cancelled.status);
    assert_cancelled(&l, &cancelled, &job).await;
    // Alertmanager muted the resolved notification with Karo's silence: Karo saw
    // the resolve in Alertmanager's alerts API, not through its webhook.
    assert_eq!(
        l.karo
            .metric("karo_alerts_received_total{status=\"resolved\"}")
            .await,
        0.0
    );
    eprintln!(
        "cancel through the silence: resolved in Alertmanager -> Run Cancelled in \
         {to_cancelled:?}, pod {pod} gone after {:?}",
        resolved.elapsed()
    );
}

#[tokio::test]
async fn karo_killed_during_the_job_cancels_it_once_restarted() {
    let mut l = Loop::start("closing-cancel-restart", AlertmanagerConfig::nowhere()).await;
    create_reaction(&l.ns, CANCEL).await;
    l.am.fire(&CANCEL_ALERT, &[]).await;
    let run = l.the_run("cancel").await;
    let running = l.wait_phase(&run, RunPhase::Running).await;
    let job = running.status.expect("status").jobs[0].name.clone();
    l.pod_running(&job).await;

    // Karo dies; the alert resolves; Alertmanager cannot deliver it.
    let failed = "alertmanager_notification_requests_failed_total";
    let failed_before = metric(l.am.url(), failed).await;
    l.karo.kill();
    l.am.resolve(&CANCEL_ALERT, &[]).await;
    let resolved = Instant::now();
    wait_until(POD_GUARD, || async {
        metric(l.am.url(), failed).await > failed_before
    })
    .await
    .expect("Alertmanager tried to deliver the resolved alert to the dead Karo");
    let waiting = l.run(&run).await;
    assert_eq!(
        phase_of(&waiting),
        RunPhase::Running,
        "{:?}",
        waiting.status
    );
    assert!(
        waiting
            .status
            .as_ref()
            .is_some_and(|s| s.resolved_at.is_none()),
        "{:?}",
        waiting.status
    );
    assert_eq!(l.pods(&format!("job-name={job}")).await.len(), 1);

    // Back on the same port: Alertmanager's retry reaches it, the Run is cancelled.
    l.karo.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
    let restarted = Instant::now();
    let cancelled = l.wait_phase(&run, RunPhase::Cancelled).await;
    let to_cancelled = restarted.elapsed();
    assert_cancelled(&l, &cancelled, &job).await;
    // Nothing ran twice: no Job and no pod is left in the namespace, and one Job
    // was ever created (the reaction's count).
    assert!(l.jobs("").await.is_empty(), "{}", l.diagnostics());
    assert!(l.pods("").await.is_empty(), "{}", l.diagnostics());
    eprintln!(
        "cancel after restart: Karo down {:?}; restart -> Cancelled in {to_cancelled:?}",
        restarted.duration_since(resolved)
    );
}

#[tokio::test]
async fn the_silence_holds_while_the_job_runs_and_is_expired_after_success() {
    let l = Loop::start("closing-silence", AlertmanagerConfig::nowhere()).await;
    create_reaction(&l.ns, SILENCE_OK).await;
    let labels = [
        ("alertname", "ClosingSilence"),
        ("instance", "db-1"),
        ("severity", "page"),
    ];
    l.am.fire(&labels, &[]).await;
    let run = l.the_run("quiet").await;
    let silenced = l
        .wait_run(&run, "silenced", |r| {
            silence_of(r).is_some_and(|(id, state)| !id.is_empty() && state == SilenceState::Active)
        })
        .await;
    let (id, _) = silence_of(&silenced).expect("a silence");

    // amtool shows Karo's silence on the alert's exact labels, naming the Run.
    let listed =
        l.am.amtool(&["silence", "query", "alertname=ClosingSilence"]);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let silence = &listed[0];
    assert_eq!(silence["id"], id.as_str(), "{silence}");
    assert_eq!(silence["createdBy"], "karo", "{silence}");
    assert_eq!(silence["status"]["state"], "active", "{silence}");
    let comment = silence["comment"].as_str().expect("comment");
    assert!(
        comment.contains(&format!("karo run {}/{run}", l.ns)),
        "{comment}"
    );
    assert!(
        comment.contains("quiet") && comment.contains("see the runbook"),
        "{comment}"
    );
    assert_eq!(exact_matchers(silence), label_map(&labels));
    let time = |key: &str| -> jiff::Timestamp {
        silence[key]
            .as_str()
            .expect(key)
            .parse()
            .expect("a timestamp")
    };
    let length = time("endsAt").duration_since(time("startsAt"));
    assert!(
        length > jiff::SignedDuration::from_mins(9)
            && length <= jiff::SignedDuration::from_mins(10),
        "silence.duration 10m: {length:?}"
    );
    // Alertmanager mutes the alert with it, while the Job still runs.
    let muted = wait_until(POD_GUARD, || async {
        alert_state(&l.am, "ClosingSilence")
            .await
            .is_some_and(|(state, by)| state == "suppressed" && by == [id.clone()])
    })
    .await;
    assert!(
        muted.is_ok(),
        "{:?}",
        alert_state(&l.am, "ClosingSilence").await
    );
    let still = l.run(&run).await;
    assert_eq!(phase_of(&still), RunPhase::Running, "{:?}", still.status);

    // The Job succeeded: the silence is expired, the alert notifies again.
    let done = l.wait_phase(&run, RunPhase::Succeeded).await;
    assert_eq!(silence_of(&done), Some((id.clone(), SilenceState::Expired)));
    let active =
        l.am.amtool(&["silence", "query", "alertname=ClosingSilence"]);
    assert_eq!(active, Value::Array(Vec::new()), "no active silence left");
    let expired =
        l.am.amtool(&["silence", "query", "--expired", "alertname=ClosingSilence"]);
    let expired = expired.as_array().expect("a list");
    assert!(
        expired
            .iter()
            .any(|s| s["id"] == id.as_str() && s["status"]["state"] == "expired"),
        "{expired:?}"
    );
    let unmuted = wait_until(POD_GUARD, || async {
        alert_state(&l.am, "ClosingSilence")
            .await
            .is_some_and(|(state, _)| state == "active")
    })
    .await;
    assert!(
        unmuted.is_ok(),
        "{:?}",
        alert_state(&l.am, "ClosingSilence").await
    );
    l.wait_events("quiet", &["Silenced", "Succeeded"]).await;
    assert!(
        !l.event_reasons("quiet")
            .await
            .iter()
            .any(|r| r == "SilenceFailed"),
        "{:?}",
        l.event_reasons("quiet").await
    );
}

#[tokio::test]
async fn a_failed_job_expires_the_silence_at_once_and_alertmanager_notifies_again() {
    // Repeated every 2 s while not silenced: Karo sees every notification.
    let l = Loop::start(
        "closing-silence-fail",
        AlertmanagerConfig::nowhere().repeat_interval("2s"),
    )
    .await;
    create_reaction(&l.ns, SILENCE_FAIL).await;
    let labels = [("alertname", "ClosingSilenceFail"), ("instance", "db-2")];
    l.am.fire(&labels, &[]).await;
    let run = l.the_run("loud").await;
    let silenced = l
        .wait_run(&run, "silenced", |r| {
            silence_of(r).is_some_and(|(id, state)| !id.is_empty() && state == SilenceState::Active)
        })
        .await;
    let (id, _) = silence_of(&silenced).expect("a silence");
    let muted = wait_until(POD_GUARD, || async {
        alert_state(&l.am, "ClosingSilenceFail")
            .await
            .is_some_and(|(state, by)| state == "suppressed" && by == [id.clone()])
    })
    .await;
    assert!(
        muted.is_ok(),
        "{:?}",
        alert_state(&l.am, "ClosingSilenceFail").await
    );

    // While the Job runs, the repeats are muted: nothing reaches Karo. (A
    // notification already on its way when the silence came may land first.)
    let received = "karo_alerts_received_total";
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = l.karo.metric(received).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = l.karo.metric(received).await;
    let job = l.run(&run).await.status.expect("status").jobs[0]
        .name
        .clone();
    let job_state = l
        .jobs_of_run(&run)
        .await
        .remove(&job)
        .and_then(|j| j.status);
    assert!(
        job_state
            .as_ref()
            .is_some_and(|s| s.failed.unwrap_or(0) == 0),
        "the Job ended before the check: {job_state:?}"
    );
    assert_eq!(during, before, "notifications reached Karo while silenced");

    // The Job fails: the silence is expired at once and the alert pages again.
    let failed = l.wait_phase(&run, RunPhase::Failed).await;
    assert_eq!(reason_of(&failed), "BackoffLimitExceeded");
    assert_eq!(
        silence_of(&failed),
        Some((id.clone(), SilenceState::Expired))
    );
    let in_am = l.am.silences().await;
    let mine = in_am
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("silence {id} in {in_am:?}"));
    assert_eq!(mine["status"]["state"], "expired", "{mine}");
    let length = {
        let t =
            |k: &str| -> jiff::Timestamp { mine[k].as_str().expect(k).parse().expect("a time") };
        t("endsAt").duration_since(t("startsAt"))
    };
    // Expired (endsAt moved to the expiry), not left to its default hour.
    assert!(length < jiff::SignedDuration::from_mins(59), "{length:?}");
    let again = wait_for(POD_GUARD, || async {
        let now = l.karo.metric(received).await;
        (now > during).then_some(now)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "Alertmanager never notified Karo again: {e}\n{}",
            l.diagnostics()
        )
    });

    // The redelivered occurrence runs nothing again.
    assert_eq!(runs_of(&l.ns, "loud").await.len(), 1);
    assert_eq!(l.jobs_of_run(&run).await.len(), 1);
    assert_eq!(l.pods("karo.io/reaction=loud").await.len(), 1);
    let after = l.run(&run).await;
    assert_eq!(phase_of(&after), RunPhase::Failed);
    l.wait_events("loud", &["Silenced", "Failed"]).await;
    eprintln!(
        "silence: {before} alerts received before, {during} while silenced, {again} after expiry"
    );
}

/// A Run that ended `Ineffective` ran its one `onFailure` Job with the Run's details,
/// and nothing else: two Jobs of the Run (the fix and the page), one pod each.
async fn assert_ineffective_paged_once(l: &Loop, run: &str) {
    let ended = l.wait_phase(run, RunPhase::Ineffective).await;
    let status = ended.status.clone().expect("status");
    assert_eq!(status.reason.as_deref(), Some("StillFiring"), "{status:?}");
    assert!(status.resolved_at.is_none(), "{status:?}");
    assert_eq!(status.jobs.len(), 1, "{status:?}");
    assert_eq!(status.jobs[0].phase, JobPhase::Succeeded, "{status:?}");
    let (page, log) = l.follow_up_done(run, "onfailure").await;
    assert!(page.starts_with("verify-onfailure-page-"), "{page}");
    assert_eq!(
        log,
        format!("paging {run} Ineffective StillFiring fix=Succeeded")
    );

    let jobs = l.jobs_of_run(run).await;
    let names: Vec<&String> = jobs.keys().collect();
    assert_eq!(jobs.len(), 2, "the fix and one page: {names:?}");
    assert!(
        jobs.contains_key(&page) && jobs.contains_key(&status.jobs[0].name),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("onsuccess")), "{names:?}");
    let owner = jobs[&page]
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(owner.len(), 1, "{owner:?}");
    assert_eq!(
        (owner[0].kind.as_str(), owner[0].name.as_str()),
        ("AlertReactionRun", run)
    );
    assert_eq!(
        l.pods("karo.io/reaction=verify").await.len(),
        2,
        "{}",
        l.diagnostics()
    );
    let final_status = l.run(run).await.status.expect("status");
    assert_eq!(final_status.phase, Some(RunPhase::Ineffective));
    assert_eq!(final_status.follow_up.len(), 1, "{final_status:?}");
    l.wait_events("verify", &["Ineffective", "FollowUp"]).await;
    let reaction = Api::<AlertReaction>::namespaced(Cluster::get().client().await, &l.ns);
    let counted = wait_until(POD_GUARD, || async {
        reaction
            .get("verify")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.failed_runs == Some(1) && s.succeeded_runs.unwrap_or(0) == 0)
    })
    .await;
    assert!(
        counted.is_ok(),
        "{:?}",
        reaction.get("verify").await.map(|r| r.status)
    );
}

/// Fires the alert and waits until the Run verifies; returns the Run.
async fn verifying(l: &Loop) -> AlertReactionRun {
    l.am.fire(&VERIFY_ALERT, &[]).await;
    let run = l.the_run("verify").await;
    let verifying = l.wait_phase(&run, RunPhase::Verifying).await;
    let status = verifying.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some("JobsSucceeded"),
        "{status:?}"
    );
    assert_eq!(status.jobs[0].phase, JobPhase::Succeeded, "{status:?}");
    assert!(status.verify_deadline.is_some(), "{status:?}");
    assert!(status.follow_up.is_empty(), "{status:?}");
    verifying
}

#[tokio::test]
async fn verify_ends_ineffective_while_the_alert_fires_and_runs_on_failure_once() {
    let l = Loop::start("closing-ineffective", AlertmanagerConfig::nowhere()).await;
    create_reaction(&l.ns, &verify_reaction("10s")).await;
    let run = verifying(&l).await;
    let name = run.metadata.name.clone().expect("a name");
    let since = Instant::now();
    assert_ineffective_paged_once(&l, &name).await;
    eprintln!(
        "ineffective: Verifying -> page Job done in {:?}",
        since.elapsed()
    );
}

#[tokio::test]
async fn verify_ends_remediated_when_the_alert_resolves_and_runs_on_success_once() {
    let l = Loop::start("closing-remediated", AlertmanagerConfig::nowhere()).await;
    // Long enough that only the resolved notification can end it well.
    create_reaction(&l.ns, &verify_reaction("5m")).await;
    let run = verifying(&l).await;
    let name = run.metadata.name.clone().expect("a name");
    l.am.resolve(&VERIFY_ALERT, &[]).await;
    let resolved = Instant::now();
    let ended = l.wait_phase(&name, RunPhase::Remediated).await;
    let to_remediated = resolved.elapsed();
    let status = ended.status.clone().expect("status");
    assert_eq!(
        status.reason.as_deref(),
        Some("AlertResolved"),
        "{status:?}"
    );
    assert_eq!(
        status.message.as_deref(),
        Some("the alert resolved after the Jobs succeeded"),
        "{status:?}"
    );
    assert!(status.resolved_at.is_some(), "{status:?}");
    let (note, log) = l.follow_up_done(&name, "onsuccess").await;
    assert!(note.starts_with("verify-onsuccess-note-"), "{note}");
    assert_eq!(log, format!("noted {name} Remediated AlertResolved"));
    let jobs = l.jobs_of_run(&name).await;
    assert_eq!(jobs.len(), 2, "the fix and one note: {:?}", jobs.keys());
    assert!(
        !jobs.keys().any(|n| n.contains("onfailure")),
        "{:?}",
        jobs.keys()
    );
    assert_eq!(l.pods("karo.io/reaction=verify").await.len(), 2);
    l.wait_events("verify", &["Remediated", "FollowUp"]).await;
    eprintln!("remediated: resolved -> Remediated in {to_remediated:?}");
}

#[tokio::test]
async fn karo_killed_while_verifying_ends_ineffective_once_restarted() {
    let mut l = Loop::start("closing-verify-restart", AlertmanagerConfig::nowhere()).await;
    create_reaction(&l.ns, &verify_reaction("10s")).await;
    let run = verifying(&l).await;
    let name = run.metadata.name.clone().expect("a name");
    let deadline = run
        .status
        .clone()
        .and_then(|s| s.verify_deadline)
        .expect("a deadline");

    // Karo dies while verifying; the deadline passes while it is down.
    l.karo.kill();
    let left = deadline.0.duration_since(jiff::Timestamp::now());
    let left = Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(2)).await;
    let waiting = l.run(&name).await;
    assert_eq!(
        phase_of(&waiting),
        RunPhase::Verifying,
        "{:?}",
        waiting.status
    );
    assert!(l.jobs_of_run(&name).await.len() == 1, "{}", l.diagnostics());

    l.karo.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
    let restarted = Instant::now();
    assert_ineffective_paged_once(&l, &name).await;
    eprintln!(
        "ineffective after restart: restart -> page Job done in {:?}",
        restarted.elapsed()
    );
}

#[tokio::test]
async fn a_job_that_succeeded_before_the_resolve_was_seen_is_not_cancelled() {
    // A long Lease: the restarted Karo answers the webhook at once but follows the
    // Runs only once the dead one's Lease expired, so the resolve is recorded first.
    let mut l =
        Loop::start_with_lease("closing-cancel-late", AlertmanagerConfig::nowhere(), "30s").await;
    create_reaction(&l.ns, &CANCEL.replace("sleep 600", "sleep 8")).await;
    l.am.fire(&CANCEL_ALERT, &[]).await;
    let run = l.the_run("cancel").await;
    let running = l.wait_phase(&run, RunPhase::Running).await;
    let job = running.status.expect("status").jobs[0].name.clone();
    l.pod_running(&job).await;

    // While Karo is down, the Job succeeds and then the alert resolves.
    l.karo.kill();
    let jobs: Api<Job> = Api::namespaced(Cluster::get().client().await, &l.ns);
    wait_until(POD_GUARD, || async {
        jobs.get_opt(&job)
            .await
            .ok()
            .flatten()
            .and_then(|j| j.status?.succeeded)
            .unwrap_or(0)
            == 1
    })
    .await
    .expect("the Job succeeded");
    l.am.resolve(&CANCEL_ALERT, &[]).await;
    l.karo.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
    let marked = l
        .wait_run(&run, "marked resolved", |r| {
            r.status.as_ref().is_some_and(|s| s.resolved_at.is_some())
        })
        .await;
    assert_eq!(phase_of(&marked), RunPhase::Running, "{:?}", marked.status);

    // Nothing was left to cancel: the Run records the Job's success.
    let ended = l
        .wait_run(&run, "finished", |r| {
            !matches!(phase_of(r), RunPhase::Pending | RunPhase::Running)
        })
        .await;
    let status = ended.status.clone().expect("status");
    assert_eq!(status.phase, Some(RunPhase::Succeeded), "{status:?}");
    assert_eq!(status.jobs[0].phase, JobPhase::Succeeded, "{status:?}");
    assert!(status.silence.is_none(), "{status:?}");
    assert!(l.jobs_of_run(&run).await.contains_key(&job));
}
