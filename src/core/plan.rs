//! The plan: for a notification and the reactions that could apply to it, what
//! should happen to every alert and every action. Which reaction matched and,
//! where one did not, why; whether it is suspended or in dry run; the Job each
//! action would create, or why it could not be rendered; and what must still be
//! checked against the cluster (cooldown, `concurrencyPolicy: Forbid`).
//!
//! One function decides; the daemon executes its plan and `karo render` prints
//! it, so the two cannot disagree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;

use crate::core::jobs::{self, BuildError, JobInput};
use crate::core::matching::{Evaluation, MatchTable};
use crate::core::reaction::CompiledReaction;
use crate::core::render::Renderer;
use crate::core::snapshot::Snapshot;
use crate::model::alert::{Alert, Notification};
use crate::model::crd::ConcurrencyPolicy;

/// Where the plan finds the reactions for an alert name.
pub trait Reactions {
    /// The Ready reactions whose `spec.alertName` is `alert_name`.
    fn for_alert(&self, alert_name: &str) -> Option<Arc<ReactionGroup>>;
}

/// The Ready reactions of one alert name, with their matchers compiled into one
/// table. Built when the reactions change, not per alert.
#[derive(Debug, Default)]
pub struct ReactionGroup {
    reactions: Vec<Arc<CompiledReaction>>,
    table: MatchTable,
}

impl ReactionGroup {
    pub fn new(reactions: Vec<Arc<CompiledReaction>>) -> Self {
        let table = MatchTable::new(reactions.iter().map(|r| &r.matchers));
        ReactionGroup { reactions, table }
    }

    pub fn reactions(&self) -> &[Arc<CompiledReaction>] {
        &self.reactions
    }

    /// Each reaction with the position of its first failing matcher for
    /// `alert`, or `None` when all of its matchers hold. `evaluation` is
    /// scratch space, reused from alert to alert.
    pub fn evaluate<'g, 'a>(
        &'g self,
        alert: &'a Alert,
        evaluation: &'g mut Evaluation<'a>,
    ) -> impl Iterator<Item = (&'g Arc<CompiledReaction>, Option<usize>)> + use<'g, 'a> {
        self.table.start(alert, evaluation);
        self.reactions
            .iter()
            .enumerate()
            .map(move |(i, r)| (r, self.table.first_failing(i, evaluation)))
    }
}

/// Reactions by alert name: the index `karo render` plans against.
#[derive(Debug, Default)]
pub struct ReactionTable {
    by_alert: HashMap<String, Arc<ReactionGroup>>,
}

impl ReactionTable {
    pub fn new(reactions: impl IntoIterator<Item = Arc<CompiledReaction>>) -> Self {
        let mut by_alert: HashMap<String, Vec<Arc<CompiledReaction>>> = HashMap::new();
        for r in reactions {
            by_alert
                .entry(r.spec.alert_name.clone())
                .or_default()
                .push(r);
        }
        ReactionTable {
            by_alert: by_alert
                .into_iter()
                .map(|(name, rs)| (name, Arc::new(ReactionGroup::new(rs))))
                .collect(),
        }
    }
}

impl Reactions for ReactionTable {
    fn for_alert(&self, alert_name: &str) -> Option<Arc<ReactionGroup>> {
        self.by_alert.get(alert_name).cloned()
    }
}

/// What should happen for one notification, alert by alert, in order.
#[derive(Debug, Default)]
pub struct Plan {
    pub alerts: Vec<AlertPlan>,
}

/// The reactions for one alert's name and what each decided.
#[derive(Debug, Default)]
pub struct AlertPlan {
    pub candidates: Vec<Candidate>,
}

#[derive(Debug)]
pub struct Candidate {
    pub reaction: Arc<CompiledReaction>,
    pub decision: Decision,
}

#[derive(Debug)]
pub enum Decision {
    /// A matcher does not hold: its position in `spec.matchers`.
    NoMatch { matcher: usize },
    /// The alert's status is not in `spec.triggerOn`.
    NotTriggered,
    /// The reaction applies: one step per action, in `spec` order.
    Matched { actions: Vec<ActionPlan> },
}

/// One action of a matched reaction.
#[derive(Debug)]
pub struct ActionPlan {
    /// The action's name, or `job` for the `jobTemplate`.
    pub action: String,
    /// The Job's deterministic name.
    pub job_name: String,
    pub step: Step,
}

#[derive(Debug)]
pub enum Step {
    /// The reaction is suspended: nothing is rendered or created.
    Suspended,
    /// The Job could not be built for this alert.
    RenderFailed(BuildError),
    /// Rendered and reported, not created.
    DryRun { job: Box<Job>, by: DryRunBy },
    /// To create, once the gates hold against the Jobs in the cluster.
    Create { job: Box<Job>, gates: Gates },
}

/// What put an action in dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRunBy {
    /// `spec.dryRun`
    Reaction,
    /// The configuration's `dryRun`
    Config,
}

/// Conditions that depend on the Jobs in the cluster, checked when executing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gates {
    /// `spec.cooldown`: no Job for the same alert within this window.
    pub cooldown: Option<Duration>,
    /// `concurrencyPolicy: Forbid`: no active Job of the same action.
    pub forbid: bool,
    /// `budget.maxRunsPerHour`: at most this many Runs per hour and budget key.
    pub max_runs_per_hour: Option<u32>,
}

impl Gates {
    pub fn of(reaction: &CompiledReaction) -> Self {
        Gates {
            cooldown: reaction.cooldown,
            forbid: reaction.spec.concurrency_policy == ConcurrencyPolicy::Forbid,
            max_runs_per_hour: reaction
                .spec
                .budget
                .as_ref()
                .and_then(|b| b.max_runs_per_hour),
        }
    }

    pub fn any(&self) -> bool {
        self.cooldown.is_some() || self.forbid || self.max_runs_per_hour.is_some()
    }
}

/// Decides what should happen to every alert of `notification`.
pub fn plan(
    notification: &Notification,
    reactions: &dyn Reactions,
    renderer: &Renderer,
    snapshot: &Snapshot,
) -> Plan {
    let mut evaluation = Evaluation::default();
    let alerts = notification
        .alerts
        .iter()
        .map(|alert| {
            let Some(group) = reactions.for_alert(alert.alert_name()) else {
                return AlertPlan::default();
            };
            let candidates = group
                .evaluate(alert, &mut evaluation)
                .map(|(reaction, failing)| {
                    let reaction = reaction.clone();
                    let decision = match failing {
                        Some(matcher) => Decision::NoMatch { matcher },
                        None if !reaction.spec.trigger_on.contains(&alert.status) => {
                            Decision::NotTriggered
                        }
                        None => Decision::Matched {
                            actions: reaction
                                .sources
                                .iter()
                                .map(|source| {
                                    let input = JobInput {
                                        reaction: &reaction,
                                        source,
                                        alert,
                                        notification,
                                        renderer,
                                        skeleton: &snapshot.skeleton,
                                        defaults: &snapshot.config.job_defaults,
                                    };
                                    ActionPlan {
                                        action: source.action_name.clone(),
                                        job_name: jobs::job_name(
                                            &reaction,
                                            &source.action_name,
                                            alert,
                                        ),
                                        step: step(&input, snapshot.config.dry_run),
                                    }
                                })
                                .collect(),
                        },
                    };
                    Candidate { reaction, decision }
                })
                .collect();
            AlertPlan { candidates }
        })
        .collect();
    Plan { alerts }
}

/// The step of one action of a matched reaction. A suspended reaction renders
/// nothing, so a broken template stays quiet while it is suspended.
fn step(input: &JobInput, config_dry_run: bool) -> Step {
    let reaction = input.reaction;
    if reaction.spec.suspend {
        return Step::Suspended;
    }
    let job = match jobs::build_job(input) {
        Ok(job) => Box::new(job),
        Err(e) => return Step::RenderFailed(e),
    };
    if reaction.spec.dry_run {
        Step::DryRun {
            job,
            by: DryRunBy::Reaction,
        }
    } else if config_dry_run {
        Step::DryRun {
            job,
            by: DryRunBy::Config,
        }
    } else {
        Step::Create {
            job,
            gates: Gates::of(reaction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::reaction;
    use crate::model::alert::parse_notification;
    use crate::model::config::{Config, Policy};
    use crate::model::crd::AlertReaction;
    use serde_json::json;

    /// A reaction `name` for alert `Disk` with severity critical, one action
    /// echoing `arg`, and the fields of `extra` in its spec.
    fn compiled(name: &str, arg: &str, extra: serde_json::Value) -> Arc<CompiledReaction> {
        let mut spec = serde_json::json!({
            "alertName": "Disk",
            "matchers": [{"name": "severity", "operator": "=", "value": "critical"}],
            "actions": [{"name": "echo", "image": "busybox", "command": ["echo", arg]}],
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut ar = AlertReaction::new(name, serde_json::from_value(spec).expect("spec"));
        ar.metadata.namespace = Some("default".into());
        ar.metadata.uid = Some("uid-1".into());
        Arc::new(reaction::compile(&ar, &Renderer::new(), &Policy::default()).expect("compiles"))
    }

    /// `compiled` with the instance as the argument.
    fn disk(extra: serde_json::Value) -> Arc<CompiledReaction> {
        compiled("disk", "{{ labels.instance }}", extra)
    }

    fn notification(status: &str, severity: &str) -> Notification {
        let body = format!(
            r#"{{"version":"4","status":"{status}","alerts":[
                {{"status":"{status}","labels":{{"alertname":"Disk","severity":"{severity}","instance":"db-1"}},
                  "startsAt":"2026-01-01T00:00:00Z","fingerprint":"f1"}},
                {{"status":"{status}","labels":{{"alertname":"Other"}},"startsAt":"2026-01-01T00:00:00Z"}}]}}"#
        );
        parse_notification(body.as_bytes(), jiff::Timestamp::UNIX_EPOCH).expect("payload")
    }

    fn snapshot(dry_run: bool) -> Snapshot {
        let config = Config {
            dry_run,
            ..Config::default()
        };
        Snapshot::prepare(config, &Renderer::new()).expect("default snapshot")
    }

    fn decide(reactions: Vec<Arc<CompiledReaction>>, n: &Notification, dry_run: bool) -> Plan {
        plan(
            n,
            &ReactionTable::new(reactions),
            &Renderer::new(),
            &snapshot(dry_run),
        )
    }

    fn only_step(plan: &Plan) -> &Step {
        match &plan.alerts[0].candidates[0].decision {
            Decision::Matched { actions } => &actions[0].step,
            other => panic!("expected a match, got {other:?}"),
        }
    }

    #[test]
    fn a_matching_alert_plans_its_job_and_other_alerts_have_no_candidates() {
        let r = disk(json!({}));
        let plan = decide(vec![r], &notification("firing", "critical"), false);
        assert_eq!(plan.alerts.len(), 2);
        assert!(plan.alerts[1].candidates.is_empty(), "alertname Other");
        let Decision::Matched { actions } = &plan.alerts[0].candidates[0].decision else {
            panic!("expected a match");
        };
        assert_eq!(actions.len(), 1);
        assert!(actions[0].job_name.starts_with("disk-echo-"));
        let Step::Create { job, gates } = &actions[0].step else {
            panic!("expected a Job to create, got {:?}", actions[0].step);
        };
        assert_eq!(
            job.metadata.name.as_deref(),
            Some(actions[0].job_name.as_str())
        );
        assert!(!gates.any());
        let args = serde_json::to_string(&job.spec).expect("json");
        assert!(args.contains("db-1"), "rendered from the labels: {args}");
    }

    #[test]
    fn a_failing_matcher_is_named() {
        let r = disk(json!({}));
        let plan = decide(vec![r], &notification("firing", "warning"), false);
        assert!(matches!(
            plan.alerts[0].candidates[0].decision,
            Decision::NoMatch { matcher: 0 }
        ));
    }

    #[test]
    fn trigger_on_decides_resolved_alerts() {
        let firing_only = disk(json!({}));
        let both = compiled("both", "x", json!({"triggerOn": ["firing", "resolved"]}));
        let plan = decide(
            vec![firing_only, both],
            &notification("resolved", "critical"),
            false,
        );
        let decisions = &plan.alerts[0].candidates;
        assert!(matches!(decisions[0].decision, Decision::NotTriggered));
        assert!(matches!(decisions[1].decision, Decision::Matched { .. }));
    }

    #[test]
    fn suspended_reactions_render_nothing_even_with_a_template_that_cannot_render() {
        // `labels.missing` fails in strict mode at render time, never for a suspended reaction.
        let suspended = compiled("disk", "{{ labels.missing }}", json!({"suspend": true}));
        let plan = decide(vec![suspended], &notification("firing", "critical"), false);
        assert!(matches!(only_step(&plan), Step::Suspended));

        let broken = compiled("disk", "{{ labels.missing }}", json!({}));
        let plan = decide(vec![broken], &notification("firing", "critical"), false);
        assert!(matches!(only_step(&plan), Step::RenderFailed(_)));
    }

    #[test]
    fn dry_run_comes_from_the_reaction_or_the_config() {
        for (extra, config_dry_run, want) in [
            (json!({"dryRun": true}), false, DryRunBy::Reaction),
            (json!({}), true, DryRunBy::Config),
        ] {
            let r = disk(extra.clone());
            let plan = decide(vec![r], &notification("firing", "critical"), config_dry_run);
            assert!(
                matches!(only_step(&plan), Step::DryRun { by, .. } if *by == want),
                "{extra}, config dryRun {config_dry_run}: {:?}",
                only_step(&plan)
            );
        }
    }

    #[test]
    fn cooldown_and_forbid_are_gates_for_the_executor() {
        let r = disk(json!({"cooldown": "10m", "concurrencyPolicy": "Forbid"}));
        let plan = decide(vec![r], &notification("firing", "critical"), false);
        let Step::Create { gates, .. } = only_step(&plan) else {
            panic!("expected a Job to create");
        };
        assert_eq!(gates.cooldown, Some(Duration::from_secs(600)));
        assert!(gates.forbid);
    }
}
