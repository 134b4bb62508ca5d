//! On the real single-node cluster (`tests/platform/cluster`, started by `make test`),
//! where Jobs run pods and Karo runs as a pod from its own image (`make image`). Run
//! these alone with `cargo test --test it cluster::` once the cluster is up.
//!
//! - `karo_pod`: the chart, Karo's pod, a real Alertmanager, a Job that runs;
//! - `demo`: `make demo` shows the Job, its log and the restarted Deployment;
//! - `remediation`: a Job that restarts a Deployment with `kubectl rollout restart`;
//! - `lifecycle`: the Job TTL, and the garbage collector after a reaction is deleted;
//! - `live_config`: `helm upgrade` reaches Karo through the kubelet, without a restart;
//! - `secrets_and_replicas`: a rotated password Secret, and two replicas behind the Service;
//! - `runs`: AlertReactionRuns follow real Jobs to their outcome, survive the Job's TTL,
//!   and retry a Job the API server refuses for a passing reason;
//! - `closing`: closing the loop with a real Alertmanager and Karo as a process that is
//!   killed and restarted: `onResolved: Cancel`, the silence, `verify`, `onSuccess` and
//!   `onFailure`.

mod closing;
mod demo;
mod karo_pod;
mod lifecycle;
mod live_config;
mod remediation;
mod runs;
mod secrets_and_replicas;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use crate::support::bins;
use crate::support::cluster::{karo_image, Cluster, TOOLS_IMAGE};
use crate::support::files::{repo_path, succeeded};
use crate::support::karo_lib::{AlertReaction, AlertReactionRun, RunPhase};
use crate::support::process::run_output;
use crate::support::ready::{wait_for, wait_until};
use crate::support::webhook::post_json;

/// Pods start in seconds here; this only guards against a hang.
const POD_GUARD: Duration = Duration::from_secs(180);

/// `helm <args>` against the cluster, with Helm's own files in a temp dir.
fn helm(cluster: &Cluster, args: &[&str]) -> String {
    let mut cmd = Command::new(bins::helm3().expect("helm 3"));
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("karo-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("karo-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("karo-helm/data"),
        )
        .env_remove("KUBECONFIG");
    succeeded(
        &run_output(cmd, None).expect("running helm"),
        &format!("helm {}", args.join(" ")),
    )
}

/// `helm install karo charts/karo` into `namespace` on the cluster, with Karo's
/// image as `make image` tags it, then `extra` (`--set ...`).
fn helm_install(cluster: &Cluster, namespace: &str, extra: &[&str]) {
    let image = karo_image();
    let (repository, tag) = image.rsplit_once(':').expect("image reference with a tag");
    let chart = repo_path("charts/karo").display().to_string();
    let (repository, tag) = (
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
    );
    let mut args = vec!["install", "karo", chart.as_str(), "--namespace", namespace];
    args.extend(["--set", &repository, "--set", &tag]);
    args.extend(["--set", "image.pullPolicy=Never"]);
    args.extend(extra);
    helm(cluster, &args);
}

/// Karo installed by its chart in a namespace of its own, serving that namespace
/// only; returns the namespace and Karo's URL through its Service.
async fn karo_in_namespace(prefix: &str, extra: &[&str]) -> (String, String) {
    let cluster = Cluster::get();
    cluster.import_karo_image();
    let ns = cluster.namespace(prefix).await;
    let only_here = format!("config.namespaces[0]={ns}");
    let mut args = vec!["--set", only_here.as_str()];
    args.extend(extra);
    helm_install(cluster, &ns, &args);
    let client = cluster.client().await;
    karo_pod(&client, &ns).await;
    let url = service_url(&client, &ns).await;
    // kube-proxy programs the Service's endpoints a moment after the pod is Ready.
    let readyz = format!("{url}/readyz");
    wait_until(POD_GUARD, || async {
        reqwest::get(&readyz)
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await
    .unwrap_or_else(|e| panic!("{readyz} through the Service: {e}"));
    (ns, url)
}

/// `http://<ClusterIP>:8080`: the host reaches Services through kube-proxy's rules.
async fn service_url(client: &kube::Client, namespace: &str) -> String {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get("karo")
        .await
        .expect("Karo's Service");
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    format!("http://{ip}:8080")
}

/// Waits until the Deployment's pod is Ready; returns it.
async fn karo_pod(client: &kube::Client, namespace: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(POD_GUARD, || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=karo"))
                .await
                .ok()?;
            list.items.into_iter().find(pod_ready)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("Karo's pod in {namespace} is not Ready: {e}"))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Container restarts of Karo's pods in `namespace`.
async fn restarts(namespace: &str) -> i32 {
    let pods: Api<Pod> = Api::namespaced(Cluster::get().client().await, namespace);
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=karo"))
        .await
        .expect("Karo's pods")
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// Creates a reaction (YAML; `IMAGE` stands for the tools image) in `namespace`,
/// and waits until Karo reports it Ready: from then on Karo acts on its alerts.
async fn create_reaction(namespace: &str, yaml: &str) -> AlertReaction {
    let mut reaction: AlertReaction =
        serde_yaml::from_str(&yaml.replace("IMAGE", TOOLS_IMAGE)).expect("reaction YAML");
    reaction.metadata.namespace = Some(namespace.to_string());
    let api = Api::<AlertReaction>::namespaced(Cluster::get().client().await, namespace);
    let created = api
        .create(&PostParams::default(), &reaction)
        .await
        .expect("creating the AlertReaction");
    let name = created.metadata.name.clone().expect("a name");
    wait_until(POD_GUARD, || async {
        api.get(&name)
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    })
    .await
    .unwrap_or_else(|e| panic!("AlertReaction {namespace}/{name} not Ready: {e}"));
    created
}

/// Posts a notification to Karo's webhook; it must answer 200. Returns the summary.
async fn notify(url: &str, notification: &Value) -> Value {
    let (code, body) = post_json(&format!("{url}/webhook"), notification).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Waits until a Job of the namespace has succeeded; returns it.
async fn succeeded_job(namespace: &str, name_prefix: &str) -> Job {
    let cluster = Cluster::get();
    let jobs: Api<Job> = Api::namespaced(cluster.client().await, namespace);
    wait_for(POD_GUARD, || {
        let jobs = jobs.clone();
        async move {
            let list = jobs.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|j| {
                j.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(name_prefix))
                    && j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) >= 1
            })
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "no Job {name_prefix}* succeeded in {namespace}: {e}\n{}",
            diagnostics(namespace)
        )
    })
}

/// For a failure message: the namespace's Runs, Jobs and pods, and what Karo's
/// pods logged above INFO.
fn diagnostics(namespace: &str) -> String {
    let cluster = Cluster::get();
    let state = cluster.kubectl(&["-n", namespace, "get", "arr,jobs,pods", "-o", "wide"]);
    let logs = cluster.kubectl(&[
        "-n",
        namespace,
        "logs",
        "-l",
        "app.kubernetes.io/name=karo",
        "--tail=200",
    ]);
    let problems: Vec<String> = String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_string)
        .collect();
    format!(
        "{}\nKaro's warnings and errors:\n{}",
        String::from_utf8_lossy(&state.stdout),
        problems.join("\n")
    )
}

/// Waits until the Job `name` exists in the namespace (Karo creates a Run's Jobs
/// after the webhook has answered); returns it.
async fn job_created(namespace: &str, name: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(Cluster::get().client().await, namespace);
    wait_for(POD_GUARD, || {
        let jobs = jobs.clone();
        async move { jobs.get_opt(name).await.ok().flatten() }
    })
    .await
    .unwrap_or_else(|e| panic!("no Job {namespace}/{name}: {e}"))
}

/// The Runs of the namespace's reaction `reaction` (label `karo.io/reaction`).
async fn runs_of(namespace: &str, reaction: &str) -> Vec<AlertReactionRun> {
    Api::<AlertReactionRun>::namespaced(Cluster::get().client().await, namespace)
        .list(&ListParams::default().labels(&format!("karo.io/reaction={reaction}")))
        .await
        .expect("listing AlertReactionRuns")
        .items
}

/// Waits until the Run `name` satisfies `check`; returns it. On the hang guard,
/// panics with the Run's status and the namespace's Jobs and pods.
async fn wait_run(
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&AlertReactionRun) -> bool,
) -> AlertReactionRun {
    let cluster = Cluster::get();
    let api: Api<AlertReactionRun> = Api::namespaced(cluster.client().await, namespace);
    let check = &check;
    let waited = wait_for(POD_GUARD, || {
        let api = api.clone();
        async move { api.get(name).await.ok().filter(check) }
    })
    .await;
    match waited {
        Ok(run) => run,
        Err(e) => {
            let status = api.get_opt(name).await.map(|r| r.map(|r| r.status));
            panic!(
                "Run {namespace}/{name} never {what}: {e}; its status: {status:?}\n{}",
                diagnostics(namespace)
            )
        }
    }
}

/// Waits until the Run `name` has `status.phase` `phase`; returns it.
async fn wait_run_phase(namespace: &str, name: &str, phase: RunPhase) -> AlertReactionRun {
    wait_run(namespace, name, phase.as_str(), |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(phase)
    })
    .await
}

/// The Events of the namespace about the object named `name`.
async fn events_about(namespace: &str, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(Cluster::get().client().await, namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("listing Events")
        .items
}
