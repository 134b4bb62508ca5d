//! Cooldown and `concurrencyPolicy: Forbid`: the plan's gates, decided from the
//! Jobs in the API server (label selector, owner UID, occurrence label), so no
//! state is kept beside the API server.

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::Api;

use crate::core::jobs::{self, LABEL_ACTION, LABEL_FINGERPRINT, LABEL_OCCURRENCE, LABEL_REACTION};
use crate::core::plan::Gates;
use crate::core::reaction::CompiledReaction;
use crate::daemon::metrics::SkipReason;
use crate::model::alert::Alert;

/// What the gates say about one Job.
pub enum Gate {
    Proceed,
    /// The Job of this very occurrence exists: a duplicate delivery.
    Exists,
    Skip(SkipReason, String),
}

/// Cooldown and `concurrencyPolicy: Forbid`, decided from the Jobs in the API
/// server. Jobs of the same occurrence do not block: their creation deduplicates.
pub async fn gate(
    api: &Api<Job>,
    reaction: &CompiledReaction,
    gates: Gates,
    action: &str,
    alert: &Alert,
    name: &str,
) -> Result<Gate, kube::Error> {
    let occurrence = jobs::occurrence_id(alert);
    let reaction_label = jobs::sanitize_label_value(&reaction.name);
    if let Some(window) = gates.cooldown {
        let selector = format!(
            "{LABEL_REACTION}={reaction_label},{LABEL_FINGERPRINT}={}",
            jobs::sanitize_label_value(&alert.fingerprint)
        );
        let Some(owned) = owned_jobs(api, reaction, &selector, name).await? else {
            return Ok(Gate::Exists);
        };
        let now = jiff::Timestamp::now();
        let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
        for j in &owned {
            if same_occurrence(j, &occurrence) {
                continue;
            }
            if let Some(t) = &j.metadata.creation_timestamp {
                if now.duration_since(t.0) < window {
                    return Ok(Gate::Skip(
                        SkipReason::Cooldown,
                        format!(
                            "Job {} ran for this alert less than {} ago",
                            j.metadata.name.as_deref().unwrap_or(""),
                            reaction.spec.cooldown.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
        }
    }
    if gates.forbid {
        let selector = format!(
            "{LABEL_REACTION}={reaction_label},{LABEL_ACTION}={}",
            jobs::sanitize_label_value(action)
        );
        let Some(owned) = owned_jobs(api, reaction, &selector, name).await? else {
            return Ok(Gate::Exists);
        };
        for j in &owned {
            if !same_occurrence(j, &occurrence) && is_active(j) {
                return Ok(Gate::Skip(
                    SkipReason::Concurrency,
                    format!(
                        "Job {} of this action is still active (concurrencyPolicy: Forbid)",
                        j.metadata.name.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(Gate::Proceed)
}

/// The reaction's Jobs that match `selector`, or `None` when the Job `name`
/// itself is among them (a duplicate delivery).
async fn owned_jobs(
    api: &Api<Job>,
    reaction: &CompiledReaction,
    selector: &str,
    name: &str,
) -> Result<Option<Vec<Job>>, kube::Error> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let owned: Vec<Job> = list
        .items
        .into_iter()
        .filter(|j| owned_by(j, reaction))
        .collect();
    if owned
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(name))
    {
        return Ok(None);
    }
    Ok(Some(owned))
}

fn same_occurrence(job: &Job, occurrence: &str) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_OCCURRENCE))
        .is_some_and(|o| o == occurrence)
}

fn owned_by(job: &Job, reaction: &CompiledReaction) -> bool {
    job.metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.uid == reaction.uid))
}

/// A Job is active until it has a `Complete` or `Failed` condition.
fn is_active(job: &Job) -> bool {
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    !finished
}
