//! The `AlertReaction` custom resource (`karo.io/v1alpha1`).
//!
//! Two forms describe the Jobs a reaction creates, and both may be used at once:
//! `actions`, the earlier Go implementation's form (one Job per action), and
//! `jobTemplate`, a Kubernetes `JobTemplateSpec` used as the Job. Every string in
//! either is a Handlebars template rendered with the alert.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

/// What one AlertReaction may hold, so that no reaction can exhaust Karo. The
/// list lengths and string lengths are in the CRD's schema, where the API server
/// enforces them; Karo checks them again (a CRD applied from an older schema does
/// not), together with what a schema cannot express: a regex's compiled size, the
/// total size of a reaction's templates, and the size of a rendered Job.
pub mod limits {
    /// `spec.matchers`.
    pub const MAX_MATCHERS: usize = 64;
    /// `spec.actions`.
    pub const MAX_ACTIONS: usize = 32;
    /// `spec.onSuccess` and `spec.onFailure`, each.
    pub const MAX_FOLLOW_UPS: usize = 16;
    /// `spec.volumes`.
    pub const MAX_VOLUMES: usize = 32;
    /// An action's `command` and `args`, each.
    pub const MAX_ARGS: usize = 256;
    /// An action's `env`.
    pub const MAX_ENV: usize = 128;
    /// An action's `volumeMounts`.
    pub const MAX_VOLUME_MOUNTS: usize = 32;
    /// `spec.budget.key`.
    pub const MAX_BUDGET_KEYS: usize = 16;
    /// A matcher's `name`, in bytes.
    pub const MAX_MATCHER_NAME_LENGTH: usize = 256;
    /// A matcher's `value`, in bytes.
    pub const MAX_MATCHER_VALUE_LENGTH: usize = 4096;
    /// One template string, in bytes.
    pub const MAX_TEMPLATE_LENGTH: usize = 32 * 1024;
    /// Every string of a reaction's `actions`, `jobTemplate`, `onSuccess` and
    /// `onFailure` together, in bytes.
    pub const MAX_TEMPLATES_BYTES: usize = 256 * 1024;
    /// One matcher's compiled regex (and its lazy DFA's cache), in bytes.
    pub const MAX_REGEX_COMPILED_BYTES: usize = 1024 * 1024;
    /// A rendered Job as JSON, in bytes: room for a label value of 1 MiB in an
    /// argument, and for the Run that carries the Job under etcd's 1.5 MiB.
    pub const MAX_RENDERED_JOB_BYTES: usize = 1280 * 1024;
    /// The output of one Job's templates together, in bytes: room for an alert
    /// whose labels are as big as a notification may carry (the skeleton's
    /// `karo.io/alert-labels` holds them all, and is cut afterwards to fit an
    /// annotation), while a template that repeats itself stops here.
    pub const MAX_RENDER_OUTPUT_BYTES: usize = 4 * 1024 * 1024;
}

use limits::*;

/// Desired state of an `AlertReaction`.
#[skip_serializing_none]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "karo.io",
    version = "v1alpha1",
    kind = "AlertReaction",
    plural = "alertreactions",
    singular = "alertreaction",
    shortname = "ar",
    category = "karo",
    namespaced,
    status = "AlertReactionStatus",
    derive = "PartialEq",
    doc = "Turns matching Prometheus alerts into Kubernetes Jobs.",
    printcolumn = r#"{"name":"Alert","type":"string","jsonPath":".spec.alertName"}"#,
    printcolumn = r#"{"name":"Actions","type":"string","jsonPath":".spec.actions[*].name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Triggered","type":"date","jsonPath":".status.lastTriggered"}"#,
    printcolumn = r#"{"name":"Triggers","type":"integer","jsonPath":".status.triggerCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertReactionSpec {
    /// The alert's `alertname` label must equal this.
    #[schemars(length(min = 1))]
    pub alert_name: String,

    /// Further conditions on the alert's labels and annotations; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_MATCHERS))]
    pub matchers: Vec<Matcher>,

    /// One Job per action (the earlier implementation's form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ACTIONS))]
    pub actions: Vec<Action>,

    /// A Kubernetes JobTemplateSpec used as one more Job.
    pub job_template: Option<JobTemplate>,

    /// Volumes available to every action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES))]
    pub volumes: Vec<Volume>,

    /// Alert statuses that trigger the reaction.
    #[serde(default = "default_trigger_on")]
    #[schemars(default = "default_trigger_on", length(max = 2))]
    pub trigger_on: Vec<AlertStatus>,

    /// After the reaction ran for an alert, later occurrences of the same alert
    /// (same fingerprint) within this window are skipped. Example: `30s`, `10m`, `1h`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub cooldown: Option<String>,

    /// `Forbid`: no new Job while a Job of this reaction and action is still active.
    #[serde(default)]
    #[schemars(default = "ConcurrencyPolicy::default")]
    pub concurrency_policy: ConcurrencyPolicy,

    /// Matched, but nothing is created.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,

    /// Everything is rendered and recorded, nothing is created.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,

    /// Overrides the configured `jobDefaults.ttlSecondsAfterFinished`.
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,

    /// Overrides the configured `jobDefaults.backoffLimit`.
    #[schemars(range(min = 0))]
    pub backoff_limit: Option<i32>,

    /// Overrides the configured `jobDefaults.activeDeadlineSeconds`.
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// `Cancel`: the alert's resolved notification deletes the occurrence's
    /// active Jobs and ends its Run `Cancelled`. `Keep` (default): they run on.
    #[serde(default, skip_serializing_if = "OnResolved::is_keep")]
    #[schemars(default = "OnResolved::default")]
    pub on_resolved: OnResolved,

    /// An Alertmanager silence on the alert's exact labels while the Run's Jobs
    /// run; expired when they succeed, at once when they fail or are cancelled.
    pub silence: Option<SilenceSpec>,

    /// After the Jobs succeed, wait for the alert to resolve: `Remediated` when it
    /// does, `Ineffective` when it still fires after `within`.
    pub verify: Option<VerifySpec>,

    /// Actions run once when a Run ends `Succeeded` or `Remediated`. Their
    /// templates also see `run` (name, phase, reason, message, jobs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_FOLLOW_UPS))]
    pub on_success: Vec<Action>,

    /// Actions run once when a Run ends `Failed` or `Ineffective`: escalation,
    /// notification. Their templates also see `run`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_FOLLOW_UPS))]
    pub on_failure: Vec<Action>,

    /// Limits on how often the reaction runs, counted from its Runs in the API
    /// server (every replica sees the same).
    pub budget: Option<BudgetSpec>,

    /// A person approves each Run before its Jobs are created.
    pub approval: Option<ApprovalSpec>,
}

/// `spec.approval`: the Run waits `AwaitingApproval` until `karo approve RUN`
/// or `karo reject RUN` (or the annotation they set), `Rejected` after `timeout`.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// Off when false (default true).
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    pub required: bool,
    /// How long a Run waits for a decision (default `1h`).
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub timeout: Option<String>,
}

/// `spec.budget`.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// At most this many Runs start per hour for each value of `key`; the others
    /// are `Skipped` (reason `Budget`).
    #[schemars(range(min = 1))]
    pub max_runs_per_hour: Option<u32>,
    /// Alert label names whose values share one budget (for example
    /// `[instance]`); none: one budget for the whole reaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_BUDGET_KEYS))]
    pub key: Vec<String>,
    /// This many Runs in a row that end `Failed` or `Ineffective` stop the
    /// reaction (`Ready=False`, `FailureBudgetExhausted`) until a person resumes
    /// it (`karo resume`, or the `karo.io/resumed-at` annotation).
    #[schemars(range(min = 1))]
    pub suspend_after_failures: Option<u32>,
}

/// Set by `karo resume` on an AlertReaction: the time a person resumed it; a
/// failure budget exhausted before it no longer stops the reaction.
pub const ANNOTATION_RESUMED_AT: &str = "karo.io/resumed-at";

/// What the alert's resolved notification does to a Run still running.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnResolved {
    #[default]
    Keep,
    Cancel,
}

impl OnResolved {
    fn is_keep(&self) -> bool {
        *self == OnResolved::Keep
    }
}

/// `spec.silence`: keep the alert quiet while the remediation runs.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SilenceSpec {
    /// Off when false (default true).
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    pub enabled: bool,
    /// The longest the silence lasts (default `1h`); it ends earlier with the Jobs.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub duration: Option<String>,
    /// Added to the silence's comment, which always names the Run and the reaction.
    pub comment: Option<String>,
}

fn yes() -> bool {
    true
}

/// `spec.verify`: how long the alert may keep firing after the Jobs succeeded.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// Example: `5m`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub within: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_trigger_on() -> Vec<AlertStatus> {
    vec![AlertStatus::Firing]
}

/// A condition on one label or annotation, with Prometheus/Alertmanager semantics.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Matcher {
    /// A label name, or `annotations.<key>` for an annotation.
    #[schemars(length(min = 1, max = MAX_MATCHER_NAME_LENGTH))]
    pub name: String,
    /// One of `=`, `!=`, `=~`, `!~`.
    pub operator: MatchOperator,
    /// The value, or for `=~` and `!~` a regular expression as Alertmanager reads
    /// it (Go's RE2 syntax, anchored as `^(?:value)$`).
    #[schemars(length(max = MAX_MATCHER_VALUE_LENGTH))]
    pub value: String,
}

/// Prometheus matcher operators.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MatchOperator {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    RegexMatch,
    #[serde(rename = "!~")]
    RegexNotMatch,
}

impl MatchOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOperator::Equal => "=",
            MatchOperator::NotEqual => "!=",
            MatchOperator::RegexMatch => "=~",
            MatchOperator::RegexNotMatch => "!~",
        }
    }
}

/// Alert status as Alertmanager reports it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    #[default]
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// As in CronJob.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    Forbid,
}

/// One Job of the earlier implementation's form.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Name of the action; part of the Job's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Container image.
    #[schemars(length(min = 1, max = MAX_TEMPLATE_LENGTH))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ARGS), inner(length(max = MAX_TEMPLATE_LENGTH)))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ARGS), inner(length(max = MAX_TEMPLATE_LENGTH)))]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ENV))]
    pub env: Vec<EnvVar>,
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUME_MOUNTS))]
    pub volume_mounts: Vec<VolumeMount>,
    /// Service account the Job's pod runs as.
    #[schemars(length(max = MAX_TEMPLATE_LENGTH))]
    pub service_account: Option<String>,
}

/// An environment variable of an action's container.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[schemars(length(min = 1))]
    pub name: String,
    /// A template rendered with the alert.
    #[schemars(length(max = MAX_TEMPLATE_LENGTH))]
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

/// Where an environment variable's value comes from.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A field of the alert.
    pub alert_ref: Option<AlertFieldSelector>,
    /// A key of a ConfigMap, passed to the pod as a native `valueFrom`.
    pub config_map_key_ref: Option<KeySelector>,
    /// A key of a Secret, passed to the pod as a native `valueFrom`.
    pub secret_key_ref: Option<KeySelector>,
}

/// Selects a field of the alert: `labels.<name>`, `annotations.<name>`, `status`,
/// `startsAt`, `endsAt`, `fingerprint`, `generatorURL`, or `.` for the whole alert as JSON.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertFieldSelector {
    #[schemars(length(min = 1))]
    pub field_path: String,
}

/// A key of a ConfigMap or Secret.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct KeySelector {
    pub name: String,
    pub key: String,
    pub optional: Option<bool>,
}

/// Compute resources of an action's container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// A Kubernetes quantity (`500m`, `64Mi`, `1`), written as a string or a number,
/// as a Pod spec accepts it.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Quantity(s)),
            Value::Number(n) => Ok(Quantity(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "a quantity must be a string or a number, not {other}"
            ))),
        }
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true
        })
    }
}

/// Mounts one of the reaction's volumes into an action's container.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Must name a volume in `spec.volumes`.
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: Option<bool>,
}

/// A volume available to every action of the reaction.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub config_map: Option<ConfigMapVolumeSource>,
    pub secret: Option<SecretVolumeSource>,
    pub empty_dir: Option<EmptyDirVolumeSource>,
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    pub host_path: Option<HostPathVolumeSource>,
}

#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    pub name: String,
    pub default_mode: Option<i32>,
    pub optional: Option<bool>,
}

#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    pub secret_name: String,
    pub default_mode: Option<i32>,
    pub optional: Option<bool>,
}

#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolumeSource {
    pub medium: Option<String>,
    pub size_limit: Option<Quantity>,
}

#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimVolumeSource {
    pub claim_name: String,
    pub read_only: Option<bool>,
}

#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolumeSource {
    pub path: String,
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// A Kubernetes `JobTemplateSpec`. Its contents are kept as written: every string
/// in them is a template, and the API server validates the Job that results.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct JobTemplate {
    /// Labels and annotations added to the Job.
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<Value>,
    /// A Kubernetes `JobSpec`.
    #[schemars(schema_with = "preserve_unknown_object")]
    pub spec: Value,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Observed state of an `AlertReaction`.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertReactionStatus {
    /// The generation the `Ready` condition describes.
    pub observed_generation: Option<i64>,
    /// `Ready`: whether the reaction is valid and can fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the reaction last created (or, in dry run, rendered) Jobs.
    pub last_triggered: Option<Time>,
    /// How many alert occurrences triggered the reaction.
    pub trigger_count: Option<i64>,
    /// The Jobs created by the last trigger (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_jobs_created: Vec<JobReference>,
    /// The Run that finished last.
    pub last_run: Option<RunReference>,
    /// Runs that ended `Succeeded` or `Remediated`.
    pub succeeded_runs: Option<i64>,
    /// Runs that ended `Failed` or `Ineffective`.
    pub failed_runs: Option<i64>,
    /// When `budget.suspendAfterFailures` Runs in a row failed: the reaction is
    /// stopped until it is resumed after this time.
    pub failure_budget_exhausted_at: Option<Time>,
}

/// A Run of a reaction, as the reaction's status names it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReference {
    pub name: String,
    pub phase: String,
    pub completion_time: Time,
}

/// A Job created by a reaction.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobReference {
    pub name: String,
    pub namespace: String,
    pub action_name: String,
    pub created_at: Time,
}

/// The CRD as YAML, as `karo crd` prints it and as it is committed under
/// `config/crd/` and `charts/karo/crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    crate::model::yaml::to_string(&AlertReaction::crd())
}

impl AlertReactionSpec {
    /// Names of the Jobs' sources, in creation order: each action's name, then
    /// `job` for the `jobTemplate` Job.
    pub fn action_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.actions.iter().map(|a| a.name.as_str()).collect();
        if self.job_template.is_some() {
            names.push(JOB_TEMPLATE_ACTION);
        }
        names
    }
}

/// The action name that the `jobTemplate` Job carries in its name and labels.
pub const JOB_TEMPLATE_ACTION: &str = "job";
