//! Validation and compilation of an `AlertReaction`, once per generation:
//! matchers and templates are compiled here, so the webhook only evaluates.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;

use crate::core::matching::MatcherSet;
use crate::core::render::{Renderer, TemplateTree};
use crate::model::config::Policy;
use crate::model::crd::limits::{
    MAX_ACTIONS, MAX_ARGS, MAX_BUDGET_KEYS, MAX_ENV, MAX_FOLLOW_UPS, MAX_MATCHERS,
    MAX_TEMPLATES_BYTES, MAX_VOLUMES, MAX_VOLUME_MOUNTS,
};
use crate::model::crd::{
    Action, AlertReaction, AlertReactionSpec, ANNOTATION_RESUMED_AT, JOB_TEMPLATE_ACTION,
};
use crate::model::error::FieldError;

/// A reaction that passed validation, ready to be evaluated against alerts.
#[derive(Debug)]
pub struct CompiledReaction {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: i64,
    pub spec: AlertReactionSpec,
    pub matchers: MatcherSet,
    pub sources: Vec<JobSource>,
    pub cooldown: Option<Duration>,
    /// `spec.onSuccess`, compiled.
    pub on_success: Vec<JobSource>,
    /// `spec.onFailure`, compiled.
    pub on_failure: Vec<JobSource>,
    /// When a person last resumed it (`karo.io/resumed-at`): failures before do
    /// not count against `budget.suspendAfterFailures`.
    pub resumed_at: Option<jiff::Timestamp>,
}

/// Where one Job of a reaction comes from.
#[derive(Debug)]
pub struct JobSource {
    /// The action's name, or `job` for the `jobTemplate`.
    pub action_name: String,
    pub kind: SourceKind,
    /// The action or jobTemplate as a JSON tree whose strings are templates.
    pub tree: TemplateTree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `spec.actions[i]`
    Action(usize),
    /// `spec.jobTemplate`
    JobTemplate,
    /// `spec.onSuccess[i]` or `spec.onFailure[i]`
    FollowUp(FollowUp, usize),
}

/// Which of the actions run after a Run's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    OnSuccess,
    OnFailure,
}

impl FollowUp {
    /// The field of the spec: `onSuccess` or `onFailure`.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUp::OnSuccess => "onSuccess",
            FollowUp::OnFailure => "onFailure",
        }
    }

    /// What a Run that ended in `phase` runs after, if anything.
    pub fn after(phase: crate::model::run::RunPhase) -> Option<FollowUp> {
        if phase.is_success() {
            Some(FollowUp::OnSuccess)
        } else if phase.is_failure() {
            Some(FollowUp::OnFailure)
        } else {
            None
        }
    }
}

impl JobSource {
    /// The field the source's templates come from, for errors.
    pub fn field(&self) -> String {
        match self.kind {
            SourceKind::Action(i) => format!("spec.actions[{i}]"),
            SourceKind::JobTemplate => "spec.jobTemplate".into(),
            SourceKind::FollowUp(f, i) => format!("spec.{}[{i}]", f.as_str()),
        }
    }

    /// The action name its Job's name and labels carry: `onFailure/<name>` for a
    /// follow-up, so it never collides with one of `spec.actions`.
    pub fn job_action(&self) -> String {
        match self.kind {
            SourceKind::FollowUp(f, _) => format!("{}/{}", f.as_str(), self.action_name),
            _ => self.action_name.clone(),
        }
    }
}

/// The `Ready` condition's reason for a reaction that does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    InvalidSpec,
    InvalidMatcher,
    InvalidTemplate,
    PolicyViolation,
    /// Valid, but stopped: `budget.suspendAfterFailures` Runs in a row failed.
    FailureBudgetExhausted,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::InvalidSpec => "InvalidSpec",
            InvalidReason::InvalidMatcher => "InvalidMatcher",
            InvalidReason::InvalidTemplate => "InvalidTemplate",
            InvalidReason::PolicyViolation => "PolicyViolation",
            InvalidReason::FailureBudgetExhausted => "FailureBudgetExhausted",
        }
    }
}

/// Why a reaction is not Ready: a condition reason and the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}", .reason.as_str())]
pub struct Invalid {
    pub reason: InvalidReason,
    pub field: FieldError,
}

impl Invalid {
    pub fn new(reason: InvalidReason, path: impl Into<String>, why: impl Into<String>) -> Self {
        Invalid {
            reason,
            field: FieldError::new(path, why),
        }
    }

    fn spec(path: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(InvalidReason::InvalidSpec, path, why)
    }

    fn policy(path: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(InvalidReason::PolicyViolation, path, why)
    }

    /// The `Ready` condition's message: the field and what is wrong with it.
    pub fn message(&self) -> String {
        self.field.to_string()
    }
}

/// The alert fields an action's `env[].valueFrom.alertRef.fieldPath` may name.
pub fn valid_alert_field(path: &str) -> bool {
    matches!(
        path,
        "." | "status" | "startsAt" | "endsAt" | "fingerprint" | "generatorURL"
    ) || path
        .strip_prefix("labels.")
        .or_else(|| path.strip_prefix("annotations."))
        .is_some_and(|k| !k.is_empty())
}

pub use crate::model::duration::parse as parse_duration;

/// When a person last resumed the reaction (`karo.io/resumed-at`), if ever.
pub fn resumed_at(ar: &AlertReaction) -> Option<jiff::Timestamp> {
    ar.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_RESUMED_AT)?
        .parse()
        .ok()
}

/// Whether the reaction is stopped by its failure budget: exhausted, and not
/// resumed since.
pub fn failure_budget_exhausted(ar: &AlertReaction) -> Option<jiff::Timestamp> {
    let at = ar.status.as_ref()?.failure_budget_exhausted_at.as_ref()?.0;
    match resumed_at(ar) {
        Some(resumed) if resumed >= at => None,
        _ => Some(at),
    }
}

/// Validates and compiles a reaction. Errors name the offending field.
pub fn compile(
    ar: &AlertReaction,
    renderer: &Renderer,
    policy: &Policy,
) -> Result<CompiledReaction, Invalid> {
    let spec = &ar.spec;
    if let Some(at) = failure_budget_exhausted(ar) {
        let n = spec
            .budget
            .as_ref()
            .and_then(|b| b.suspend_after_failures)
            .unwrap_or(0);
        return Err(Invalid::new(
            InvalidReason::FailureBudgetExhausted,
            "status.failureBudgetExhaustedAt",
            format!(
                "{n} Runs in a row failed (at {at}); stopped until resumed: karo resume {} (or annotate it {ANNOTATION_RESUMED_AT}=<now>)",
                ar.metadata.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    check_alert_name(&spec.alert_name)?;
    check_limits(spec)?;
    check_has_sources(!spec.actions.is_empty(), spec.job_template.is_some())?;
    let matchers = MatcherSet::compile(&spec.matchers).map_err(|e| {
        Invalid::new(
            InvalidReason::InvalidMatcher,
            format!("spec.matchers[{}].{}", e.index, e.field),
            e.message,
        )
    })?;
    let cooldown = spec.cooldown.as_deref().map(check_cooldown).transpose()?;
    check_closing(spec)?;
    validate_volumes(spec, policy)?;

    let mut sources = Vec::new();
    let mut names = BTreeSet::new();
    for (i, action) in spec.actions.iter().enumerate() {
        validate_action(spec, i, action, policy)?;
        check_action_name(i, &action.name, &mut names, spec.job_template.is_some())?;
        let tree_value = serde_json::to_value(action)
            .map_err(|e| Invalid::spec(format!("spec.actions[{i}]"), e.to_string()))?;
        let tree = compile_tree(&tree_value, &format!("spec.actions[{i}]"), renderer)?;
        sources.push(JobSource {
            action_name: action.name.clone(),
            kind: SourceKind::Action(i),
            tree,
        });
    }
    if let Some(jt) = &spec.job_template {
        validate_job_template(&jt.spec, policy)?;
        let tree_value = serde_json::to_value(jt)
            .map_err(|e| Invalid::spec("spec.jobTemplate", e.to_string()))?;
        let tree = compile_tree(&tree_value, "spec.jobTemplate", renderer)?;
        sources.push(JobSource {
            action_name: JOB_TEMPLATE_ACTION.to_string(),
            kind: SourceKind::JobTemplate,
            tree,
        });
    }

    let (mut on_success, mut on_failure) = (Vec::new(), Vec::new());
    for (which, list, out) in [
        (FollowUp::OnSuccess, &spec.on_success, &mut on_success),
        (FollowUp::OnFailure, &spec.on_failure, &mut on_failure),
    ] {
        let field = which.as_str();
        let mut names = BTreeSet::new();
        for (i, action) in list.iter().enumerate() {
            validate_action_in(spec, field, i, action, policy)?;
            check_action_name_in(field, i, &action.name, &mut names, false)?;
            let tree_value = serde_json::to_value(action)
                .map_err(|e| Invalid::spec(format!("spec.{field}[{i}]"), e.to_string()))?;
            let tree = compile_tree(&tree_value, &format!("spec.{field}[{i}]"), renderer)?;
            out.push(JobSource {
                action_name: action.name.clone(),
                kind: SourceKind::FollowUp(which, i),
                tree,
            });
        }
    }

    Ok(CompiledReaction {
        on_success,
        on_failure,
        resumed_at: resumed_at(ar),
        name: ar.metadata.name.clone().unwrap_or_default(),
        namespace: ar.metadata.namespace.clone().unwrap_or_default(),
        uid: ar.metadata.uid.clone().unwrap_or_default(),
        generation: ar.metadata.generation.unwrap_or_default(),
        spec: spec.clone(),
        matchers,
        sources,
        cooldown,
    })
}

/// `spec.alertName` must name an alert.
pub fn check_alert_name(alert_name: &str) -> Result<(), Invalid> {
    if alert_name.is_empty() {
        return Err(Invalid::spec("spec.alertName", "must not be empty"));
    }
    Ok(())
}

/// The lengths of a reaction's lists and the total size of its templates are
/// within Karo's [`limits`](crate::model::crd::limits). The CRD's schema has the
/// same list limits, but a CRD applied from an older schema does not, and no
/// schema can sum the strings of a `jobTemplate`.
pub fn check_limits(spec: &AlertReactionSpec) -> Result<(), Invalid> {
    let too_many = |path: String, n: usize, limit: usize| {
        if n > limit {
            Err(Invalid::spec(
                path,
                format!("has {n} items, more than the limit of {limit}"),
            ))
        } else {
            Ok(())
        }
    };
    too_many("spec.matchers".into(), spec.matchers.len(), MAX_MATCHERS)?;
    too_many("spec.actions".into(), spec.actions.len(), MAX_ACTIONS)?;
    too_many(
        "spec.onSuccess".into(),
        spec.on_success.len(),
        MAX_FOLLOW_UPS,
    )?;
    too_many(
        "spec.onFailure".into(),
        spec.on_failure.len(),
        MAX_FOLLOW_UPS,
    )?;
    too_many("spec.volumes".into(), spec.volumes.len(), MAX_VOLUMES)?;
    too_many("spec.triggerOn".into(), spec.trigger_on.len(), 2)?;
    if let Some(b) = &spec.budget {
        too_many("spec.budget.key".into(), b.key.len(), MAX_BUDGET_KEYS)?;
    }
    let lists = [
        ("actions", &spec.actions),
        ("onSuccess", &spec.on_success),
        ("onFailure", &spec.on_failure),
    ];
    for (list, actions) in lists {
        for (i, a) in actions.iter().enumerate() {
            let at = |field: &str| format!("spec.{list}[{i}].{field}");
            too_many(at("command"), a.command.len(), MAX_ARGS)?;
            too_many(at("args"), a.args.len(), MAX_ARGS)?;
            too_many(at("env"), a.env.len(), MAX_ENV)?;
            too_many(at("volumeMounts"), a.volume_mounts.len(), MAX_VOLUME_MOUNTS)?;
        }
    }
    let mut bytes = 0;
    for (_, actions) in lists {
        for a in actions {
            bytes += serde_json::to_value(a).map_or(0, |v| text_bytes(&v));
        }
    }
    if let Some(jt) = &spec.job_template {
        bytes += jt.metadata.as_ref().map_or(0, text_bytes) + text_bytes(&jt.spec);
    }
    if bytes > MAX_TEMPLATES_BYTES {
        return Err(Invalid::new(
            InvalidReason::InvalidTemplate,
            "spec",
            format!(
                "the strings of actions, jobTemplate, onSuccess and onFailure total {bytes} bytes, more than the limit of {MAX_TEMPLATES_BYTES}"
            ),
        ));
    }
    Ok(())
}

/// The bytes of every string and key in `v`.
fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + text_bytes(v)).sum(),
        _ => 0,
    }
}

/// A reaction needs `actions` or a `jobTemplate`.
pub fn check_has_sources(has_actions: bool, has_job_template: bool) -> Result<(), Invalid> {
    if !has_actions && !has_job_template {
        return Err(Invalid::spec(
            "spec",
            "needs `actions` or `jobTemplate` (neither is set)",
        ));
    }
    Ok(())
}

/// `spec.cooldown` as a duration.
pub fn check_cooldown(cooldown: &str) -> Result<Duration, Invalid> {
    parse_duration(cooldown).ok_or_else(|| {
        Invalid::spec(
            "spec.cooldown",
            format!("{cooldown:?} is not a duration such as 30s, 10m or 1h"),
        )
    })
}

/// `silence`, `verify`, `approval` and `budget`: durations that parse, label
/// names that are not empty.
pub fn check_closing(spec: &AlertReactionSpec) -> Result<(), Invalid> {
    if let Some(d) = spec.silence.as_ref().and_then(|s| s.duration.as_deref()) {
        match parse_duration(d) {
            Some(d) if !d.is_zero() => {}
            _ => {
                return Err(Invalid::spec(
                    "spec.silence.duration",
                    format!("{d:?} is not a duration such as 30m or 2h"),
                ))
            }
        }
    }
    if let Some(v) = &spec.verify {
        match parse_duration(&v.within) {
            Some(d) if !d.is_zero() => {}
            _ => {
                return Err(Invalid::spec(
                    "spec.verify.within",
                    format!("{:?} is not a duration such as 5m or 1h", v.within),
                ))
            }
        }
    }
    if let Some(t) = spec.approval.as_ref().and_then(|a| a.timeout.as_deref()) {
        match parse_duration(t) {
            Some(d) if !d.is_zero() => {}
            _ => {
                return Err(Invalid::spec(
                    "spec.approval.timeout",
                    format!("{t:?} is not a duration such as 30m or 2h"),
                ))
            }
        }
    }
    if let Some(b) = &spec.budget {
        if let Some(i) = b.key.iter().position(|k| k.is_empty()) {
            return Err(Invalid::spec(
                format!("spec.budget.key[{i}]"),
                "must name an alert label",
            ));
        }
    }
    Ok(())
}

/// Action names are unique and `job` is kept for the `jobTemplate`'s Job;
/// `names` collects the names seen so far.
pub fn check_action_name(
    i: usize,
    name: &str,
    names: &mut BTreeSet<String>,
    has_job_template: bool,
) -> Result<(), Invalid> {
    check_action_name_in("actions", i, name, names, has_job_template)
}

/// [`check_action_name`] for the action list `list` (`actions`, `onSuccess`, `onFailure`).
pub fn check_action_name_in(
    list: &str,
    i: usize,
    name: &str,
    names: &mut BTreeSet<String>,
    has_job_template: bool,
) -> Result<(), Invalid> {
    if !name.is_empty() && !names.insert(name.to_string()) {
        return Err(Invalid::spec(
            format!("spec.{list}[{i}].name"),
            format!("{name:?} is used by another action"),
        ));
    }
    if has_job_template && name == JOB_TEMPLATE_ACTION {
        return Err(Invalid::spec(
            format!("spec.{list}[{i}].name"),
            format!("the action name {JOB_TEMPLATE_ACTION:?} is reserved for the jobTemplate Job"),
        ));
    }
    Ok(())
}

fn compile_tree(value: &Value, field: &str, renderer: &Renderer) -> Result<TemplateTree, Invalid> {
    let invalid = |e: crate::core::render::RenderError| Invalid {
        reason: InvalidReason::InvalidTemplate,
        field: e.field_error(),
    };
    renderer.compile_shared(value, field).map_err(invalid)
}

pub fn validate_volumes(spec: &AlertReactionSpec, policy: &Policy) -> Result<(), Invalid> {
    let mut names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        if v.name.is_empty() {
            return Err(Invalid::spec(
                format!("spec.volumes[{i}].name"),
                "must not be empty",
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(Invalid::spec(
                format!("spec.volumes[{i}].name"),
                format!("{:?} is defined twice", v.name),
            ));
        }
        exactly_one(
            format!("spec.volumes[{i}]"),
            "configMap, secret, emptyDir, persistentVolumeClaim, hostPath",
            &[
                v.config_map.is_some(),
                v.secret.is_some(),
                v.empty_dir.is_some(),
                v.persistent_volume_claim.is_some(),
                v.host_path.is_some(),
            ],
        )?;
        if v.host_path.is_some() && !policy.allow_host_path {
            return Err(Invalid::policy(
                format!("spec.volumes[{i}].hostPath"),
                "hostPath volumes are not allowed (policy.allowHostPath is false)",
            ));
        }
    }
    Ok(())
}

pub fn validate_action(
    spec: &AlertReactionSpec,
    i: usize,
    action: &Action,
    policy: &Policy,
) -> Result<(), Invalid> {
    validate_action_in(spec, "actions", i, action, policy)
}

/// [`validate_action`] for the action list `list` (`actions`, `onSuccess`, `onFailure`).
pub fn validate_action_in(
    spec: &AlertReactionSpec,
    list: &str,
    i: usize,
    action: &Action,
    policy: &Policy,
) -> Result<(), Invalid> {
    if action.name.is_empty() {
        return Err(Invalid::spec(
            format!("spec.{list}[{i}].name"),
            "must not be empty",
        ));
    }
    if action.image.is_empty() {
        return Err(Invalid::spec(
            format!("spec.{list}[{i}].image"),
            "must not be empty",
        ));
    }
    for (j, env) in action.env.iter().enumerate() {
        let field = format!("spec.{list}[{i}].env[{j}]");
        match (&env.value, &env.value_from) {
            (Some(_), Some(_)) => {
                return Err(Invalid::spec(
                    field,
                    "`value` and `valueFrom` are exclusive",
                ))
            }
            (_, Some(from)) => {
                exactly_one(
                    format!("{field}.valueFrom"),
                    "alertRef, configMapKeyRef, secretKeyRef",
                    &[
                        from.alert_ref.is_some(),
                        from.config_map_key_ref.is_some(),
                        from.secret_key_ref.is_some(),
                    ],
                )?;
                if let Some(r) = &from.alert_ref {
                    if !valid_alert_field(&r.field_path) {
                        return Err(Invalid::spec(format!("{field}.valueFrom.alertRef.fieldPath"), format!("{:?} is not an alert field (labels.<name>, annotations.<name>, status, startsAt, endsAt, fingerprint, generatorURL or .)", r.field_path)));
                    }
                }
            }
            _ => {}
        }
    }
    for (j, m) in action.volume_mounts.iter().enumerate() {
        if !spec.volumes.iter().any(|v| v.name == m.name) {
            return Err(Invalid::spec(
                format!("spec.{list}[{i}].volumeMounts[{j}].name"),
                format!("no volume {:?} in spec.volumes", m.name),
            ));
        }
    }
    if let Some(sa) = &action.service_account {
        check_service_account(policy, sa, &format!("spec.{list}[{i}].serviceAccount"))?;
    }
    Ok(())
}

/// Exactly one of the fields named in `names` is set (`set` says which are).
fn exactly_one(field: String, names: &str, set: &[bool]) -> Result<(), Invalid> {
    let n = set.iter().filter(|s| **s).count();
    if n != 1 {
        return Err(Invalid::spec(
            field,
            format!("exactly one of {names} must be set ({n} are)"),
        ));
    }
    Ok(())
}

fn check_service_account(policy: &Policy, sa: &str, field: &str) -> Result<(), Invalid> {
    if !policy.allowed_service_accounts.is_empty()
        && !policy.allowed_service_accounts.iter().any(|a| a == sa)
    {
        return Err(Invalid::policy(
            field,
            format!("service account {sa:?} is not in policy.allowedServiceAccounts"),
        ));
    }
    Ok(())
}

pub fn validate_job_template(spec: &Value, policy: &Policy) -> Result<(), Invalid> {
    let pod = spec.pointer("/template/spec");
    let containers = pod
        .and_then(|p| p.get("containers"))
        .and_then(Value::as_array);
    match containers {
        Some(c) if !c.is_empty() => {}
        _ => {
            return Err(Invalid::spec(
                "spec.jobTemplate.spec.template.spec.containers",
                "at least one container is required",
            ))
        }
    }
    let Some(pod) = pod else { return Ok(()) };
    for key in ["serviceAccountName", "serviceAccount"] {
        if let Some(sa) = pod.get(key).and_then(Value::as_str) {
            check_service_account(
                policy,
                sa,
                &format!("spec.jobTemplate.spec.template.spec.{key}"),
            )?;
        }
    }
    if let Some(vols) = pod.get("volumes").and_then(Value::as_array) {
        for (i, v) in vols.iter().enumerate() {
            if v.get("hostPath").is_some() && !policy.allow_host_path {
                return Err(Invalid::policy(
                    format!("spec.jobTemplate.spec.template.spec.volumes[{i}].hostPath"),
                    "hostPath volumes are not allowed (policy.allowHostPath is false)",
                ));
            }
        }
    }
    if !policy.allow_privileged {
        for kind in ["initContainers", "containers"] {
            if let Some(cs) = pod.get(kind).and_then(Value::as_array) {
                for (i, c) in cs.iter().enumerate() {
                    if c.pointer("/securityContext/privileged") == Some(&Value::Bool(true)) {
                        return Err(Invalid::policy(format!("spec.jobTemplate.spec.template.spec.{kind}[{i}].securityContext.privileged"), "privileged containers are not allowed (policy.allowPrivileged is false)"));
                    }
                }
            }
        }
    }
    Ok(())
}

impl CompiledReaction {
    /// The resource this was compiled from (metadata as far as Karo keeps it).
    pub fn to_resource(&self) -> AlertReaction {
        let mut ar = AlertReaction::new(&self.name, self.spec.clone());
        ar.metadata.namespace = Some(self.namespace.clone());
        ar.metadata.uid = Some(self.uid.clone());
        ar.metadata.generation = Some(self.generation);
        if let Some(at) = self.resumed_at {
            ar.metadata.annotations = Some(
                [(ANNOTATION_RESUMED_AT.to_string(), at.to_string())]
                    .into_iter()
                    .collect(),
            );
        }
        ar
    }

    /// The reference Events are attached to.
    pub fn object_ref(&self) -> ObjectReference {
        object_ref(&self.namespace, &self.name, Some(self.uid.clone()))
    }
}

/// A reference to an AlertReaction, for Events.
pub fn object_ref(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("karo.io/v1alpha1".into()),
        kind: Some("AlertReaction".into()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn alert_fields() {
        for ok in [
            ".",
            "status",
            "labels.instance",
            "annotations.summary",
            "fingerprint",
        ] {
            assert!(valid_alert_field(ok), "{ok}");
        }
        for bad in ["labels.", "label.x", "", "startsat"] {
            assert!(!valid_alert_field(bad), "{bad}");
        }
    }

    mod limits {
        use serde_json::json;

        use super::super::*;
        use crate::model::crd::limits::MAX_TEMPLATE_LENGTH;

        fn compile_spec(spec: Value) -> Result<CompiledReaction, Invalid> {
            let mut ar = AlertReaction::new("r", serde_json::from_value(spec).expect("spec"));
            ar.metadata.namespace = Some("default".into());
            compile(&ar, &Renderer::new(), &Policy::default())
        }

        fn action(name: &str, args: Vec<String>) -> Value {
            json!({"name": name, "image": "busybox", "args": args})
        }

        #[test]
        fn lists_longer_than_the_limits_are_refused() {
            let matcher = json!({"name": "severity", "operator": "=", "value": "critical"});
            let ok = compile_spec(json!({
                "alertName": "A",
                "matchers": vec![matcher.clone(); MAX_MATCHERS],
                "actions": [action("a", vec![])],
            }));
            assert!(ok.is_ok(), "{ok:?}");
            let err = compile_spec(json!({
                "alertName": "A",
                "matchers": vec![matcher; MAX_MATCHERS + 1],
                "actions": [action("a", vec![])],
            }))
            .expect_err("65 matchers");
            assert_eq!(err.reason, InvalidReason::InvalidSpec);
            assert_eq!(
                err.message(),
                "spec.matchers: has 65 items, more than the limit of 64"
            );

            let actions: Vec<Value> = (0..=MAX_ACTIONS)
                .map(|i| action(&format!("a{i}"), vec![]))
                .collect();
            let err = compile_spec(json!({"alertName": "A", "actions": actions}))
                .expect_err("33 actions");
            assert_eq!(
                err.message(),
                "spec.actions: has 33 items, more than the limit of 32"
            );

            let follow_ups: Vec<Value> = (0..=MAX_FOLLOW_UPS)
                .map(|i| action(&format!("f{i}"), vec![]))
                .collect();
            let err = compile_spec(json!({
                "alertName": "A", "actions": [action("a", vec![])], "onFailure": follow_ups,
            }))
            .expect_err("17 follow-ups");
            assert_eq!(
                err.message(),
                "spec.onFailure: has 17 items, more than the limit of 16"
            );

            let err = compile_spec(json!({
                "alertName": "A", "actions": [action("a", vec!["x".into(); MAX_ARGS + 1])],
            }))
            .expect_err("257 args");
            assert_eq!(
                err.message(),
                "spec.actions[0].args: has 257 items, more than the limit of 256"
            );
        }

        #[test]
        fn a_template_longer_than_the_limit_is_refused_wherever_it_is() {
            let long = format!("{{{{labels.x}}}}{}", "y".repeat(MAX_TEMPLATE_LENGTH));
            let err = compile_spec(json!({
                "alertName": "A", "actions": [action("a", vec!["ok".into(), long.clone()])],
            }))
            .expect_err("too long");
            assert_eq!(err.reason, InvalidReason::InvalidTemplate);
            assert_eq!(
                err.message(),
                format!(
                    "spec.actions[0].args[1]: the string is {} bytes long, more than the limit of {MAX_TEMPLATE_LENGTH}",
                    long.len()
                )
            );
            // In a jobTemplate, which the CRD's schema cannot bound.
            let err = compile_spec(json!({
                "alertName": "A",
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "image": "busybox", "command": ["sh", "-c", "y".repeat(MAX_TEMPLATE_LENGTH + 1)]}
                ]}}}},
            }))
            .expect_err("too long");
            assert_eq!(
                err.field.path,
                "spec.jobTemplate.spec.template.spec.containers[0].command[2]"
            );
        }

        #[test]
        fn templates_bigger_than_the_total_limit_are_refused() {
            // Eight strings of 32 kB, each within its own limit: 256 kB and more.
            let big = "y".repeat(MAX_TEMPLATE_LENGTH);
            let err = compile_spec(json!({
                "alertName": "A",
                "actions": [action("a", vec![big.clone(); 4])],
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "image": "busybox", "args": vec![big.clone(); 4]}
                ]}}}},
            }))
            .expect_err("too big");
            assert_eq!(err.reason, InvalidReason::InvalidTemplate);
            assert_eq!(err.field.path, "spec");
            assert!(
                err.message()
                    .ends_with(&format!("more than the limit of {MAX_TEMPLATES_BYTES}")),
                "{}",
                err.message()
            );
            compile_spec(json!({
                "alertName": "A", "actions": [action("a", vec![big; 4])],
            }))
            .expect("128 kB");
        }

        #[test]
        fn a_costly_regex_makes_the_reaction_invalid_naming_the_matcher() {
            let err = compile_spec(json!({
                "alertName": "A",
                "matchers": [
                    {"name": "severity", "operator": "=", "value": "critical"},
                    {"name": "instance", "operator": "=~", "value": r"(?:\pL{100}){10}"},
                ],
                "actions": [action("a", vec![])],
            }))
            .expect_err("too costly");
            assert_eq!(err.reason, InvalidReason::InvalidMatcher);
            assert_eq!(err.field.path, "spec.matchers[1].value");
            assert!(
                err.message()
                    .contains("exceeds the compiled size limit of 1048576 bytes"),
                "{}",
                err.message()
            );
        }
    }
}
