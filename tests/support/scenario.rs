//! Where most integration tests start: a namespace of their own with AlertReactions in
//! it and a Karo that watches only that namespace, every reaction Ready. Then what they
//! read back from the namespace: reactions, Runs, Jobs and Events.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde::de::DeserializeOwned;

use super::control_plane::ControlPlane;
use super::karo_lib::{AlertReaction, AlertReactionRun, RunPhase};
use super::karo_process::KaroProcess;
use super::ready::{wait_for, SOON};

/// What a scenario is made of; `Scenario::build` starts one.
pub struct ScenarioBuilder {
    prefix: String,
    own_control_plane: bool,
    /// Reaction manifests, and whether Karo must find each valid (Ready).
    reactions: Vec<(String, bool)>,
    config: String,
}

impl ScenarioBuilder {
    /// A control plane of the scenario's own, instead of the shared one (for a test
    /// that stops its API server, for example).
    pub fn own_control_plane(mut self) -> ScenarioBuilder {
        self.own_control_plane = true;
        self
    }

    /// An AlertReaction (YAML; its namespace is the scenario's) that becomes Ready.
    pub fn reaction(mut self, yaml: &str) -> ScenarioBuilder {
        self.reactions.push((yaml.to_string(), true));
        self
    }

    /// An AlertReaction that Karo refuses: the test checks its `Ready` condition.
    pub fn refused_reaction(mut self, yaml: &str) -> ScenarioBuilder {
        self.reactions.push((yaml.to_string(), false));
        self
    }

    /// YAML appended to Karo's config file (after `namespaces`).
    pub fn config(mut self, extra: &str) -> ScenarioBuilder {
        self.config = extra.to_string();
        self
    }

    /// The namespace and its reactions, without Karo.
    pub async fn create(self) -> Scenario {
        self.create_with_ready().await.0
    }

    /// The namespace, its reactions, and Karo watching it; returns once every reaction
    /// added with `reaction` is Ready.
    pub async fn start(self) -> (Scenario, KaroProcess) {
        let config = self.config.clone();
        let (scenario, ready) = self.create_with_ready().await;
        let karo = scenario.start_karo(&config).await;
        for name in ready {
            scenario.wait_ready(&name, "True").await;
        }
        (scenario, karo)
    }

    async fn create_with_ready(self) -> (Scenario, Vec<String>) {
        let own = if self.own_control_plane {
            Some(ControlPlane::start().await.expect("control plane"))
        } else {
            None
        };
        let cp = own.as_ref().unwrap_or_else(|| ControlPlane::shared());
        cp.install_crd().await;
        let ns = cp.namespace(&self.prefix).await;
        let scenario = Scenario { own, ns };
        let mut ready = Vec::new();
        for (yaml, must_be_ready) in &self.reactions {
            let created = scenario.apply(yaml).await;
            if *must_be_ready {
                ready.push(created.metadata.name.expect("a reaction has a name"));
            }
        }
        (scenario, ready)
    }
}

/// A namespace of a test's own, on the shared control plane or on one of its own.
pub struct Scenario {
    own: Option<ControlPlane>,
    pub ns: String,
}

impl Scenario {
    /// Starts building a scenario in a namespace named `<prefix>-<random>`.
    pub fn build(prefix: &str) -> ScenarioBuilder {
        ScenarioBuilder {
            prefix: prefix.to_string(),
            own_control_plane: false,
            reactions: Vec::new(),
            config: String::new(),
        }
    }

    pub fn cp(&self) -> &ControlPlane {
        self.own.as_ref().unwrap_or_else(|| ControlPlane::shared())
    }

    /// The scenario's own control plane (see `own_control_plane`).
    pub fn own_cp(&mut self) -> &mut ControlPlane {
        self.own
            .as_mut()
            .expect("the scenario was built with own_control_plane")
    }

    /// Karo's config: `namespaces: [<ns>]`, then `extra`.
    pub fn karo_config(&self, extra: &str) -> String {
        format!("namespaces: [{}]\n{extra}", self.ns)
    }

    /// Starts (another) `karo run` watching this namespace, `extra` in its config.
    pub async fn start_karo(&self, extra: &str) -> KaroProcess {
        KaroProcess::start_with_config(self.cp().kubeconfig(), &self.karo_config(extra))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn api<K>(&self, client: kube::Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(client, &self.ns)
    }

    /// Creates an AlertReaction from YAML in this namespace.
    pub async fn apply(&self, yaml: &str) -> AlertReaction {
        let mut reaction: AlertReaction = serde_yaml::from_str(yaml).expect("reaction YAML");
        reaction.metadata.namespace = Some(self.ns.clone());
        self.api(self.cp().client().await)
            .create(&PostParams::default(), &reaction)
            .await
            .unwrap_or_else(|e| panic!("creating reaction: {e}"))
    }

    pub async fn reaction(&self, name: &str) -> AlertReaction {
        self.api::<AlertReaction>(self.cp().client().await)
            .get(name)
            .await
            .expect("reading reaction")
    }

    /// Waits until the reaction's `Ready` condition has `status`; returns its reason
    /// and message.
    pub async fn wait_ready(&self, name: &str, status: &str) -> (String, String) {
        let api: Api<AlertReaction> = self.api(self.cp().client().await);
        wait_for(SOON, || {
            let api = api.clone();
            async move {
                let c = api
                    .get(name)
                    .await
                    .ok()?
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (c.status == status).then_some((c.reason, c.message))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("reaction {name} never Ready={status}: {e}"))
    }

    /// Waits until the reaction's `status.triggerCount` is `n`.
    pub async fn wait_trigger_count(&self, name: &str, n: i64) {
        let api: Api<AlertReaction> = self.api(self.cp().client().await);
        wait_for(SOON, || {
            let api = api.clone();
            async move {
                let got = api.get(name).await.ok()?.status?.trigger_count;
                (got == Some(n)).then_some(())
            }
        })
        .await
        .unwrap_or_else(|e| panic!("triggerCount of {name} never {n}: {e}"));
    }

    /// Every object of kind `K` in the scenario's namespace.
    pub async fn list<K>(&self, params: &ListParams) -> Vec<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>(self.cp().client().await)
            .list(params)
            .await
            .unwrap_or_else(|e| panic!("listing {}: {e}", K::plural(&Default::default())))
            .items
    }

    pub async fn jobs(&self) -> Vec<Job> {
        self.list(&ListParams::default()).await
    }

    /// The Jobs of one reaction (label `karo.io/reaction`).
    pub async fn jobs_of(&self, reaction: &str) -> Vec<Job> {
        self.list(&ListParams::default().labels(&format!("karo.io/reaction={reaction}")))
            .await
    }

    /// Waits until exactly `n` Jobs exist (never returns early with more).
    pub async fn wait_jobs(&self, n: usize) -> Vec<Job> {
        wait_for(SOON, || async move {
            let j = self.jobs().await;
            assert!(j.len() <= n, "expected {n} Jobs, found {}", j.len());
            (j.len() == n).then_some(j)
        })
        .await
        .unwrap_or_else(|e| panic!("waiting for {n} Jobs in {}: {e}", self.ns))
    }

    /// Waits until the Job named `name` exists (the runner creates the Jobs of a Run
    /// after the webhook answered) and returns it.
    pub async fn wait_job(&self, name: &str) -> Job {
        let api: Api<Job> = self.api(self.cp().client().await);
        wait_for(SOON, || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten() }
        })
        .await
        .unwrap_or_else(|e| panic!("no Job {name} in {}: {e}", self.ns))
    }

    /// Waits until exactly `n` Jobs of the reaction `reaction` exist (never returns
    /// early with more).
    pub async fn wait_jobs_of(&self, reaction: &str, n: usize) -> Vec<Job> {
        wait_for(SOON, || async move {
            let j = self.jobs_of(reaction).await;
            assert!(
                j.len() <= n,
                "expected {n} Jobs of {reaction}, found {}",
                j.len()
            );
            (j.len() == n).then_some(j)
        })
        .await
        .unwrap_or_else(|e| panic!("waiting for {n} Jobs of {reaction} in {}: {e}", self.ns))
    }

    /// Waits until exactly one Job exists, and checks that the reaction `name` created it.
    pub async fn wait_one_job_of(&self, name: &str) -> Job {
        let job = self.wait_jobs(1).await.remove(0);
        let reaction = job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("karo.io/reaction"));
        assert_eq!(
            reaction.map(String::as_str),
            Some(name),
            "label karo.io/reaction"
        );
        job
    }

    pub async fn runs(&self) -> Vec<AlertReactionRun> {
        self.list(&ListParams::default()).await
    }

    /// The Runs of one reaction (label `karo.io/reaction`).
    pub async fn runs_of(&self, reaction: &str) -> Vec<AlertReactionRun> {
        self.list(&ListParams::default().labels(&format!("karo.io/reaction={reaction}")))
            .await
    }

    /// The Run named `name`, which must exist.
    pub async fn run(&self, name: &str) -> AlertReactionRun {
        self.api::<AlertReactionRun>(self.cp().client().await)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Run {name}: {e}"))
    }

    /// Waits until the Run `name` has `status.phase` `phase`; returns it.
    pub async fn wait_run_phase(&self, name: &str, phase: RunPhase) -> AlertReactionRun {
        let api: Api<AlertReactionRun> = self.api(self.cp().client().await);
        let waited = wait_for(SOON, || {
            let api = api.clone();
            async move {
                let run = api.get(name).await.ok()?;
                let got = run.status.as_ref()?.phase?;
                (got == phase).then_some(run)
            }
        })
        .await;
        match waited {
            Ok(run) => run,
            Err(e) => {
                let status = api.get(name).await.map(|r| r.status);
                panic!(
                    "Run {name} never {}: {e}; its status: {status:?}",
                    phase.as_str()
                )
            }
        }
    }

    /// Waits until exactly `n` Runs exist (never returns early with more).
    pub async fn wait_runs(&self, n: usize) -> Vec<AlertReactionRun> {
        wait_for(SOON, || async move {
            let r = self.runs().await;
            assert!(r.len() <= n, "expected {n} Runs, found {}", r.len());
            (r.len() == n).then_some(r)
        })
        .await
        .unwrap_or_else(|e| panic!("waiting for {n} Runs in {}: {e}", self.ns))
    }

    /// Waits for an Event with `reason` whose note contains `needle`.
    pub async fn wait_event(&self, reason: &str, needle: &str) -> Event {
        wait_for(SOON, || async move {
            self.list::<Event>(&ListParams::default())
                .await
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.note.as_deref().unwrap_or("").contains(needle)
                })
        })
        .await
        .unwrap_or_else(|e| panic!("no {reason} event containing {needle:?}: {e}"))
    }

    /// The stdout of `kubectl get -n <ns> <args>`, as users see it.
    pub fn kubectl_get(&self, args: &[&str]) -> String {
        let mut all = vec!["get", "-n", self.ns.as_str()];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.cp().kubectl(&all).stdout).into_owned()
    }
}

/// The one owner of a Job: its AlertReactionRun (Karo sets exactly one).
pub fn owner(job: &Job) -> &OwnerReference {
    let owners = job
        .metadata
        .owner_references
        .as_deref()
        .expect("a Job of Karo has an owner");
    assert_eq!(owners.len(), 1, "one owner: {owners:?}");
    &owners[0]
}

/// Checks that `job` is owned (as its controller) by the Run `run`, and carries its
/// name as label `karo.io/run`.
pub fn assert_owned_by(job: &Job, run: &AlertReactionRun) {
    let o = owner(job);
    let job_name = job.metadata.name.as_deref().unwrap_or("?");
    assert_eq!(o.kind, "AlertReactionRun", "owner of {job_name}");
    assert_eq!(o.api_version, "karo.io/v1alpha1", "owner of {job_name}");
    assert_eq!(
        Some(&o.name),
        run.metadata.name.as_ref(),
        "owner of {job_name}"
    );
    assert_eq!(
        Some(&o.uid),
        run.metadata.uid.as_ref(),
        "owner of {job_name}"
    );
    assert_eq!(o.controller, Some(true), "owner of {job_name}");
    let label = job
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("karo.io/run"));
    assert_eq!(
        label,
        run.metadata.name.as_ref(),
        "label karo.io/run of {job_name}"
    );
}

/// The first container of a Job's pod.
pub fn first_container(job: &Job) -> &Container {
    &pod_spec(job).containers[0]
}

/// The pod spec of a Job.
pub fn pod_spec(job: &Job) -> &PodSpec {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

/// `spec.ttlSecondsAfterFinished` of a Job.
pub fn ttl(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished)
}
