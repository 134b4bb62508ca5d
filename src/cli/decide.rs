//! `karo approve RUN`, `karo reject RUN` and `karo resume REACTION`: a person's
//! decision, written with the user's own kubeconfig, so that RBAC decides who may
//! make it (patching AlertReactionRuns, or AlertReactions for `resume`; the
//! chart's `karo-approver` ClusterRole grants exactly that). Karo's leader sees
//! the annotation and records the decision on the Run.

use std::process::ExitCode;

use kube::api::{Api, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::Client;
use serde_json::json;

use crate::model::crd::{AlertReaction, ANNOTATION_RESUMED_AT};
use crate::model::run::{
    AlertReactionRun, RunPhase, ANNOTATION_APPROVAL, ANNOTATION_APPROVAL_BY,
    ANNOTATION_APPROVAL_REASON,
};

/// What a person decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// `karo approve` / `karo reject`.
pub fn decide(decision: Decision, run: &str, namespace: Option<&str>, reason: &str) -> ExitCode {
    block_on(async {
        let (client, ns) = connect(namespace).await?;
        let api: Api<AlertReactionRun> = Api::namespaced(client, &ns);
        let current = api
            .get(run)
            .await
            .map_err(|e| explain(e, &format!("AlertReactionRun {ns}/{run}"), DECIDING))?;
        let phase = current
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if phase != RunPhase::AwaitingApproval {
            return Err(format!(
                "AlertReactionRun {ns}/{run} is {}, not AwaitingApproval: nothing to decide",
                phase.as_str()
            ));
        }
        let (word, done) = match decision {
            Decision::Approve => ("approved", "approved"),
            Decision::Reject => ("rejected", "rejected"),
        };
        let by = user();
        let patch = json!({"metadata": {"annotations": {
            ANNOTATION_APPROVAL: word,
            ANNOTATION_APPROVAL_BY: by,
            ANNOTATION_APPROVAL_REASON: reason,
        }}});
        api.patch(run, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| explain(e, &format!("AlertReactionRun {ns}/{run}"), DECIDING))?;
        println!("alertreactionrun.karo.io/{run} {done} by {by}");
        Ok(())
    })
}

/// `karo resume`: sets `karo.io/resumed-at` to now on the reaction.
pub fn resume(reaction: &str, namespace: Option<&str>) -> ExitCode {
    block_on(async {
        let (client, ns) = connect(namespace).await?;
        let api: Api<AlertReaction> = Api::namespaced(client, &ns);
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {ANNOTATION_RESUMED_AT: now}}});
        api.patch(reaction, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| explain(e, &format!("AlertReaction {ns}/{reaction}"), RESUMING))?;
        println!("alertreaction.karo.io/{reaction} resumed at {now}");
        Ok(())
    })
}

fn block_on(work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A client from the user's kubeconfig (`KUBECONFIG`, `~/.kube/config`) or the
/// pod's service account, and the namespace: `-n`, else the context's.
async fn connect(namespace: Option<&str>) -> Result<(Client, String), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the cluster with your kubeconfig: {e}"))?;
    let ns = namespace.map_or_else(|| client.default_namespace().to_string(), str::to_string);
    Ok((client, ns))
}

/// The user the kubeconfig's current context names (recorded as who decided;
/// RBAC, and the API server's audit log, are the authority).
fn user() -> String {
    Kubeconfig::read()
        .ok()
        .and_then(|k| {
            let current = k.current_context.clone()?;
            k.contexts
                .iter()
                .find(|c| c.name == current)?
                .context
                .as_ref()?
                .user
                .clone()
        })
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// What `karo approve` and `karo reject` need, for a refusal.
const DECIDING: &str = "deciding needs `get` and `patch` on alertreactionruns; the chart's karo-approver ClusterRole grants them";
/// What `karo resume` needs, for a refusal.
const RESUMING: &str = "resuming needs `patch` on alertreactions, as editing the reaction does; the karo-approver ClusterRole does not grant it";

/// An API error as the user needs it: forbidden says which permission (`needs`).
fn explain(e: kube::Error, what: &str, needs: &str) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            format!("{what}: forbidden: {} ({needs})", s.message)
        }
        kube::Error::Api(s) if s.code == 404 => format!("{what}: not found"),
        other => format!("{what}: {other}"),
    }
}
