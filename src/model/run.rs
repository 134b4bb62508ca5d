//! The `AlertReactionRun` custom resource (`karo.io/v1alpha1`): the record of one
//! reaction to one alert occurrence.
//!
//! Its name is derived from the reaction and the occurrence, so creating it is
//! the exactly-once point: a repeated delivery of the same occurrence finds it
//! exists. The spec is written once, when the webhook accepts the occurrence:
//! the reaction, the alert, the notification and the Jobs to run, rendered. The
//! status follows the Jobs to their outcome.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

use crate::model::alert::{Alert, Notification};
use crate::model::crd::AlertStatus;

/// What a Run was asked to do: written once, when the occurrence is accepted.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "karo.io",
    version = "v1alpha1",
    kind = "AlertReactionRun",
    plural = "alertreactionruns",
    singular = "alertreactionrun",
    shortname = "arr",
    category = "karo",
    namespaced,
    status = "AlertReactionRunStatus",
    derive = "PartialEq",
    doc = "One reaction to one alert occurrence: its Jobs and their outcome.",
    printcolumn = r#"{"name":"Reaction","type":"string","jsonPath":".spec.reaction.name"}"#,
    printcolumn = r#"{"name":"Alert","type":"string","jsonPath":".spec.alert.labels.alertname"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".status.startTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertReactionRunSpec {
    pub reaction: RunReaction,
    pub alert: RunAlert,
    pub notification: RunNotification,
    /// The Jobs this Run creates, rendered when the occurrence was accepted.
    #[serde(default)]
    pub actions: Vec<RunAction>,
    /// What follows the Jobs, from the reaction when the occurrence was accepted.
    #[serde(default, skip_serializing_if = "RunClosing::is_empty")]
    pub closing: RunClosing,
    /// Accepted in dry run (the reaction's `dryRun` or the configuration's): the
    /// Jobs are rendered in `actions` and none is created. The Run records the
    /// occurrence once, however often it is delivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The reaction's `onResolved`, `silence` and `verify`, fixed for the Run's life.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunClosing {
    /// `Cancel`: the resolved notification cancels the Run's active Jobs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_on_resolved: bool,
    /// How long the silence lasts at most, as `1h`; none: no silence.
    pub silence_duration: Option<String>,
    /// The reaction's `silence.comment`.
    pub silence_comment: Option<String>,
    /// How long the alert may fire after the Jobs succeeded, as `5m`; none: no check.
    pub verify_within: Option<String>,
    /// The `onSuccess` actions to run after a good outcome, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    /// The `onFailure` actions to run after a bad outcome, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
    /// How long the Run waits for a person's approval, as `1h`; none: no approval.
    pub approval_timeout: Option<String>,
}

impl RunClosing {
    pub fn is_empty(&self) -> bool {
        *self == RunClosing::default()
    }
}

/// The AlertReaction a Run belongs to, at the generation that accepted it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RunReaction {
    pub name: String,
    pub uid: String,
    pub generation: i64,
}

/// The alert as it was delivered.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunAlert {
    pub status: AlertStatus,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// Absent while the alert fires.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "plain_string")]
    pub ends_at: String,
    #[serde(
        default,
        rename = "generatorURL",
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(schema_with = "plain_string")]
    pub generator_url: String,
    pub fingerprint: String,
}

impl From<&Alert> for RunAlert {
    fn from(a: &Alert) -> Self {
        RunAlert {
            status: a.status,
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at.clone(),
            ends_at: a.ends_at.clone(),
            generator_url: a.generator_url.clone(),
            fingerprint: a.fingerprint.clone(),
        }
    }
}

impl From<&RunAlert> for Alert {
    fn from(a: &RunAlert) -> Self {
        Alert {
            status: a.status,
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at.clone(),
            ends_at: a.ends_at.clone(),
            generator_url: a.generator_url.clone(),
            fingerprint: a.fingerprint.clone(),
        }
    }
}

/// The notification that delivered the alert first.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunNotification {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "plain_string")]
    pub receiver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "plain_string")]
    pub group_key: String,
    #[serde(
        default,
        rename = "externalURL",
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(schema_with = "plain_string")]
    pub external_url: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
}

impl From<&Notification> for RunNotification {
    fn from(n: &Notification) -> Self {
        RunNotification {
            receiver: n.receiver.clone(),
            group_key: n.group_key.clone(),
            external_url: n.external_url.clone(),
            group_labels: n.group_labels.clone(),
            common_labels: n.common_labels.clone(),
            common_annotations: n.common_annotations.clone(),
        }
    }
}

impl From<&RunNotification> for Notification {
    /// The notification as a Run recorded it (without its alerts).
    fn from(n: &RunNotification) -> Self {
        Notification {
            receiver: n.receiver.clone(),
            group_key: n.group_key.clone(),
            external_url: n.external_url.clone(),
            group_labels: n.group_labels.clone(),
            common_labels: n.common_labels.clone(),
            common_annotations: n.common_annotations.clone(),
            ..Default::default()
        }
    }
}

/// One Job of a Run: the action it comes from and the Job as rendered.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunAction {
    /// The action's name, or `job` for the reaction's `jobTemplate`.
    pub name: String,
    /// The Job's deterministic name.
    pub job_name: String,
    /// The Job to create (its owner, the Run, is added when it is created).
    #[schemars(schema_with = "preserve_unknown_object")]
    pub job: Value,
}

/// An optional string, left out when empty. Written without a `default`:
/// kube-apiserver 1.20 reads an empty-string default as null and refuses the CRD.
fn plain_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string" })
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Where a Run is in its life.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum RunPhase {
    /// Accepted; its Jobs are not created yet.
    #[default]
    Pending,
    /// Admitted; waiting for `karo approve` or `karo reject` (`spec.approval`).
    AwaitingApproval,
    /// Its Jobs are created and not all finished.
    Running,
    /// Its Jobs succeeded; waiting for the alert to resolve (`verify`).
    Verifying,
    /// Every Job succeeded.
    Succeeded,
    /// Every Job succeeded and the alert resolved within `verify.within`.
    Remediated,
    /// Every Job succeeded and the alert still fired after `verify.within`.
    Ineffective,
    /// A Job failed, was rejected or disappeared before its outcome was seen.
    Failed,
    /// The alert resolved while the Jobs ran (`onResolved: Cancel`); they were deleted.
    Cancelled,
    /// Not run: `reason` says why (cooldown, concurrency, rate limit, budget).
    Skipped,
    /// Not run: a person rejected it, or nobody approved it in time.
    Rejected,
}

impl RunPhase {
    pub const ALL: [RunPhase; 11] = [
        RunPhase::Pending,
        RunPhase::AwaitingApproval,
        RunPhase::Running,
        RunPhase::Verifying,
        RunPhase::Succeeded,
        RunPhase::Remediated,
        RunPhase::Ineffective,
        RunPhase::Failed,
        RunPhase::Cancelled,
        RunPhase::Skipped,
        RunPhase::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::AwaitingApproval => "AwaitingApproval",
            RunPhase::Running => "Running",
            RunPhase::Verifying => "Verifying",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::Remediated => "Remediated",
            RunPhase::Ineffective => "Ineffective",
            RunPhase::Failed => "Failed",
            RunPhase::Cancelled => "Cancelled",
            RunPhase::Skipped => "Skipped",
            RunPhase::Rejected => "Rejected",
        }
    }

    /// A finished Run's phase does not change any more.
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            RunPhase::Pending
                | RunPhase::AwaitingApproval
                | RunPhase::Running
                | RunPhase::Verifying
        )
    }

    /// Its Jobs were created (it was not skipped or rejected, and is past
    /// `Pending` and `AwaitingApproval`).
    pub fn started(self) -> bool {
        !matches!(
            self,
            RunPhase::Pending | RunPhase::AwaitingApproval | RunPhase::Skipped | RunPhase::Rejected
        )
    }

    /// Ended well: `onSuccess` runs.
    pub fn is_success(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Remediated)
    }

    /// Ended badly: `onFailure` runs.
    pub fn is_failure(self) -> bool {
        matches!(self, RunPhase::Failed | RunPhase::Ineffective)
    }
}

/// What happened to a Run.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertReactionRunStatus {
    pub phase: Option<RunPhase>,
    /// A CamelCase word for the phase: `JobFailed`, `Cooldown`, `JobRejected`, ...
    pub reason: Option<String>,
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When its Jobs were created.
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    /// From start to completion, as `1m5s`.
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<RunJob>,
    /// Attempts to create the Jobs that the API server refused for a passing
    /// reason (429, 5xx, quota, connection).
    pub attempts: Option<i32>,
    /// The occurrence's last delivery (refreshed at most every few minutes).
    pub last_seen: Option<Time>,
    /// When the alert's resolved notification arrived.
    pub resolved_at: Option<Time>,
    /// The Alertmanager silence kept while the Jobs run (`spec.silence`).
    pub silence: Option<RunSilence>,
    /// `Verifying` ends `Ineffective` at this time unless the alert resolves.
    pub verify_deadline: Option<Time>,
    /// The `onSuccess` or `onFailure` Jobs run after the outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_up: Vec<RunJob>,
    /// The approval asked for (`spec.approval`) and the decision.
    pub approval: Option<RunApproval>,
}

/// A Run's approval.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunApproval {
    /// When the Run started waiting.
    pub requested_at: Option<Time>,
    /// It is `Rejected` at this time without a decision.
    pub deadline: Option<Time>,
    /// `Approved` or `Rejected`.
    pub decision: Option<String>,
    /// Who decided, as `karo approve` names the user of its kubeconfig.
    pub by: Option<String>,
    /// When Karo saw the decision.
    pub decided_at: Option<Time>,
    pub reason: Option<String>,
}

/// The annotation `karo approve` and `karo reject` set on a Run: `approved` or
/// `rejected`. Who may patch a Run may decide.
pub const ANNOTATION_APPROVAL: &str = "karo.io/approval";
/// Who decided, as the deciding client names its user.
pub const ANNOTATION_APPROVAL_BY: &str = "karo.io/approval-by";
/// Why, in the decider's words.
pub const ANNOTATION_APPROVAL_REASON: &str = "karo.io/approval-reason";

/// A Run's Alertmanager silence.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSilence {
    /// The silence's ID in Alertmanager.
    pub id: Option<String>,
    pub state: SilenceState,
    /// Why it could not be created or expired.
    pub message: Option<String>,
}

/// Where a Run's silence is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SilenceState {
    /// Created; the alert is quiet.
    #[default]
    Active,
    /// Expired by Karo: the alert notifies again.
    Expired,
    /// Could not be created (the remediation went on without it).
    Failed,
}

/// One Job of a Run and its outcome.
#[skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunJob {
    pub action: String,
    pub name: String,
    pub phase: JobPhase,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The last lines of a failed container's termination message or log (at most 2 KiB).
    pub log: Option<String>,
}

/// A Job's state as a Run records it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum JobPhase {
    #[default]
    Running,
    Succeeded,
    Failed,
    /// Deleted before Karo saw its outcome.
    Lost,
    /// Deleted by Karo when the alert resolved (`onResolved: Cancel`).
    Cancelled,
}

impl JobPhase {
    pub fn is_finished(self) -> bool {
        !matches!(self, JobPhase::Running)
    }
}

/// Labels of a Run (and of its Jobs, `karo.io/run`).
pub const LABEL_RUN: &str = "karo.io/run";

/// The CRD as YAML, as `karo crd` prints it after the AlertReaction's.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    crate::model::yaml::to_string(&AlertReactionRun::crd())
}
