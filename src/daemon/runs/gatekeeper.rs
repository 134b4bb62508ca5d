//! Cooldown and `concurrencyPolicy: Forbid`, decided atomically per reaction.
//!
//! Only the leader decides, one Run of a reaction at a time (a lock per
//! reaction), from the reaction's Runs in the API server plus the decisions it
//! made itself and has not seen come back through the watch yet. Two alerts of
//! one notification, or the same notification given to two replicas, cannot
//! both pass a Forbid.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use crate::core::jobs::{self, LABEL_REACTION};
use crate::core::plan::Gates;
use crate::core::reaction::CompiledReaction;
use crate::core::run::{self, RunView, Verdict};
use crate::model::run::{AlertReactionRun, RunPhase, LABEL_RUN};

/// Decisions of this leadership term.
#[derive(Default)]
pub struct Gatekeeper {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// (reaction UID, `namespace/name` of a Run) to what was decided for it.
    decided: Mutex<HashMap<(String, String), RunView>>,
}

impl Gatekeeper {
    fn lock_for(&self, reaction_uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        locks.entry(reaction_uid.to_string()).or_default().clone()
    }

    fn decided(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), RunView>> {
        match self.decided.lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        }
    }

    /// Records the state of a Run this process started, skipped or finished.
    pub fn record(&self, reaction_uid: &str, namespace: &str, view: RunView) {
        self.decided().insert(
            (
                reaction_uid.to_string(),
                format!("{namespace}/{}", view.name),
            ),
            view,
        );
    }

    /// Whether `run` may start now. On `Proceed` the Run counts as running for
    /// the next decisions, before its status says so.
    pub async fn decide(
        &self,
        reaction: &CompiledReaction,
        run: &AlertReactionRun,
        store: &Store<AlertReactionRun>,
        jobs: &Store<Job>,
    ) -> Verdict {
        let gates = Gates::of(reaction);
        let name = run.name_any();
        let namespace = run.namespace().unwrap_or_default();
        let fingerprint = run.spec.alert.fingerprint.clone();
        let key_names = reaction
            .spec
            .budget
            .as_ref()
            .map(|b| b.key.as_slice())
            .unwrap_or_default();
        let budget_key = run::budget_key(&run.spec.alert.labels, key_names);
        let now = Timestamp::now();
        if !gates.any() {
            return Verdict::Proceed;
        }
        let lock = self.lock_for(&reaction.uid);
        let _held = lock.lock().await;
        // Runs whose Jobs exist although their status does not say so yet (a
        // leader stopped between the two).
        let reaction_label = jobs::sanitize_label_value(&reaction.name);
        let with_jobs: HashMap<String, Option<Timestamp>> = jobs
            .state()
            .into_iter()
            .filter(|j| {
                j.namespace().as_deref() == Some(namespace.as_str())
                    && j.labels().get(LABEL_REACTION) == Some(&reaction_label)
            })
            .filter_map(|j| {
                let run = j.labels().get(LABEL_RUN)?.clone();
                Some((run, j.metadata.creation_timestamp.as_ref().map(|t| t.0)))
            })
            .collect();
        let mut others: Vec<RunView> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        {
            let decided = self.decided();
            for r in store.state() {
                if r.spec.reaction.uid != reaction.uid
                    || r.namespace().as_deref() != Some(&namespace)
                {
                    continue;
                }
                let rname = r.name_any();
                let status = r.status.clone().unwrap_or_default();
                let mut view = RunView {
                    name: rname.clone(),
                    fingerprint: r.spec.alert.fingerprint.clone(),
                    budget_key: run::budget_key(&r.spec.alert.labels, key_names),
                    phase: status.phase.unwrap_or_default(),
                    started: status.start_time.map(|t| t.0),
                };
                // A Run waiting for approval was admitted: it holds its place
                // (Forbid, cooldown, budget) from its request until it is rejected.
                if view.phase == RunPhase::AwaitingApproval {
                    view.phase = RunPhase::Running;
                    view.started = status
                        .approval
                        .as_ref()
                        .and_then(|a| a.requested_at.as_ref())
                        .map(|t| t.0);
                }
                if view.phase == RunPhase::Pending {
                    let key = (reaction.uid.clone(), format!("{namespace}/{rname}"));
                    if let Some(d) = decided.get(&key) {
                        view = d.clone();
                    } else if let Some(created) = with_jobs.get(&rname) {
                        view.phase = RunPhase::Running;
                        view.started = *created;
                    }
                }
                seen.insert(rname);
                others.push(view);
            }
            // Decided here, not in the store yet.
            let prefix = format!("{namespace}/");
            for ((uid, key), view) in decided.iter() {
                if *uid == reaction.uid && key.starts_with(&prefix) && !seen.contains(&view.name) {
                    others.push(view.clone());
                }
            }
        }
        let cooldown_text = reaction.spec.cooldown.as_deref().unwrap_or("");
        let verdict = run::gate(
            &name,
            &fingerprint,
            &budget_key,
            gates,
            cooldown_text,
            &others,
            now,
        );
        let phase = match verdict {
            Verdict::Proceed => RunPhase::Running,
            _ => RunPhase::Skipped,
        };
        self.record(
            &reaction.uid,
            &namespace,
            RunView {
                name,
                fingerprint,
                budget_key,
                phase,
                started: (phase == RunPhase::Running).then_some(now),
            },
        );
        verdict
    }
}
