//! From a compiled reaction, one of its Job sources and an alert to the Job that
//! Karo creates. Pure: no API client.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::core::reaction::{CompiledReaction, JobSource, SourceKind};
use crate::core::render::{self, Budget, RenderError, Renderer, TemplateTree};
use crate::model::alert::{Alert, Notification};
use crate::model::config::JobDefaults;
use crate::model::crd::limits::MAX_RENDERED_JOB_BYTES;
use crate::model::crd::{Action, JobTemplate, Volume};

/// The built-in Job skeleton, `templates/job.yaml`.
pub const DEFAULT_SKELETON: &str = include_str!("../../templates/job.yaml");

/// Kubernetes' limit on the total size of an object's annotations.
const ANNOTATIONS_LIMIT: usize = 256 * 1024;
/// Room left for annotations added after Karo's (by defaults or the template).
const ALERT_LABELS_BUDGET: usize = 64 * 1024;

pub const LABEL_REACTION: &str = "karo.io/reaction";
pub const LABEL_ACTION: &str = "karo.io/action";
pub const LABEL_FINGERPRINT: &str = "karo.io/fingerprint";
/// Identifies one alert occurrence (fingerprint, start, status) across actions.
pub const LABEL_OCCURRENCE: &str = "karo.io/occurrence";
pub const LABEL_ALERTNAME: &str = "karo.io/alertname";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub use crate::model::run::LABEL_RUN;

/// The parsed Job skeleton.
#[derive(Debug)]
pub struct Skeleton {
    source: String,
    tree: TemplateTree,
}

impl PartialEq for Skeleton {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why a Job could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Render(#[from] RenderError),
    #[error("{field}: the rendered Job is not valid: {message}")]
    Invalid { field: String, message: String },
    /// The Job would be bigger than Karo creates.
    #[error("{field}: the rendered Job is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        field: String,
        size: usize,
        limit: usize,
    },
}

/// Why a Job skeleton cannot be used; each names the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum SkeletonError {
    #[error("{origin}: not valid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error("{origin}: must be a YAML mapping (a Job)")]
    NotMapping { origin: String },
    #[error(transparent)]
    Template(#[from] RenderError),
}

impl Skeleton {
    /// Parses a skeleton: YAML first, then each string compiled as a template.
    pub fn parse(yaml: &str, origin: &str) -> Result<Self, SkeletonError> {
        let value: Value = serde_yaml::from_str(yaml).map_err(|e| SkeletonError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(SkeletonError::NotMapping {
                origin: origin.to_string(),
            });
        }
        let tree = TemplateTree::compile(&value, origin)?;
        Ok(Skeleton {
            source: yaml.to_string(),
            tree,
        })
    }

    pub fn builtin() -> Result<Self, SkeletonError> {
        Self::parse(DEFAULT_SKELETON, "templates/job.yaml")
    }

    /// Static check of the skeleton's templates.
    pub fn validate(&self, renderer: &Renderer) -> Result<(), SkeletonError> {
        Ok(self.tree.validate(renderer)?)
    }
}

/// Deterministic Job name `<reaction>-<action>-<hash>`: valid DNS-1123, at most
/// 63 characters. The hash covers the reaction's UID, the action, and the alert
/// occurrence, so every delivery of the same occurrence names the same Job.
pub fn job_name(reaction: &CompiledReaction, action: &str, alert: &Alert) -> String {
    let mut h = Sha256::new();
    for part in [
        reaction.uid.as_str(),
        action,
        alert.fingerprint.as_str(),
        &canonical_time(&alert.starts_at),
        alert.status.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let hash = hex(&h.finalize()[..5]);
    let prefix = format!(
        "{}-{}",
        sanitize_name(&reaction.name),
        sanitize_name(action)
    );
    let mut prefix: String = prefix.chars().take(63 - 1 - hash.len()).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        format!("karo-{hash}")
    } else {
        format!("{prefix}-{hash}")
    }
}

/// Identifies an alert occurrence: the same alert (fingerprint), the same start,
/// the same status.
pub fn occurrence_id(alert: &Alert) -> String {
    hex(&occurrence_hash(alert, &[])[..8])
}

/// Deterministic Run name `<reaction>-<hash>`: valid DNS-1123, at most 63
/// characters. The hash covers the reaction's UID and the alert occurrence, so
/// every delivery of the same occurrence names the same Run.
pub fn run_name(reaction: &CompiledReaction, alert: &Alert) -> String {
    run_name_for(reaction, alert, false)
}

/// [`run_name`], or with `dry_run` the name of the occurrence's dry-run Run: another
/// one, so an occurrence recorded in dry run is still acted on when dry run is
/// turned off while it fires.
pub fn run_name_for(reaction: &CompiledReaction, alert: &Alert, dry_run: bool) -> String {
    let uid = reaction.uid.as_str();
    let parts: &[&str] = if dry_run { &[uid, "dry-run"] } else { &[uid] };
    let hash = hex(&occurrence_hash(alert, parts)[..5]);
    let mut prefix: String = sanitize_name(&reaction.name)
        .chars()
        .take(63 - 1 - hash.len())
        .collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        format!("karo-{hash}")
    } else {
        format!("{prefix}-{hash}")
    }
}

fn occurrence_hash(alert: &Alert, before: &[&str]) -> Vec<u8> {
    let mut h = Sha256::new();
    let starts = canonical_time(&alert.starts_at);
    for part in before.iter().copied().chain([
        alert.fingerprint.as_str(),
        starts.as_str(),
        alert.status.as_str(),
    ]) {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().to_vec()
}

/// Alertmanager peers may format the same instant differently; hash the instant.
fn canonical_time(s: &str) -> String {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_nanosecond().to_string())
        .unwrap_or_else(|_| s.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case DNS-1123 characters only, runs of others collapsed to `-`.
fn sanitize_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A valid label value: at most 63 characters of `[A-Za-z0-9._-]`, beginning and
/// ending with an alphanumeric (or empty).
pub fn sanitize_label_value(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    while out.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        out.pop();
    }
    let start = out
        .find(|c: char| c.is_ascii_alphanumeric())
        .unwrap_or(out.len());
    out[start..].to_string()
}

/// Everything a Job is built from.
pub struct JobInput<'a> {
    pub reaction: &'a CompiledReaction,
    pub source: &'a JobSource,
    pub alert: &'a Alert,
    pub notification: &'a Notification,
    pub renderer: &'a Renderer,
    pub skeleton: &'a Skeleton,
    pub defaults: &'a JobDefaults,
}

/// Renders and assembles the Job of one of `spec.actions` or the `jobTemplate`:
/// its templates see the Run `Pending`.
pub fn build_job(input: &JobInput) -> Result<Job, BuildError> {
    let run = render::run_context(
        &run_name(input.reaction, input.alert),
        "Pending",
        "",
        "",
        json!([]),
    );
    build_job_with_run(input, run)
}

/// Renders and assembles a Job whose templates see `run` (an `onSuccess` or
/// `onFailure` Job sees the Run's outcome).
///
/// The output of the skeleton's and the source's templates together is at most
/// `MAX_RENDER_OUTPUT_BYTES`, and then the Job as JSON at most
/// [`MAX_RENDERED_JOB_BYTES`]: past either the Job is refused for this alert
/// ([`BuildError::Render`] or [`BuildError::TooLarge`]), before more is allocated.
pub fn build_job_with_run(input: &JobInput, run: Value) -> Result<Job, BuildError> {
    let JobInput {
        reaction,
        source,
        alert,
        notification,
        renderer,
        skeleton,
        defaults,
    } = *input;
    let mut ctx = render::context(
        alert,
        notification,
        &reaction.name,
        &reaction.namespace,
        &source.action_name,
    );
    ctx["run"] = run;
    let mut budget = Budget::job();
    let base = skeleton.tree.render_within(renderer, &ctx, &mut budget)?;
    let rendered = source.tree.render_within(renderer, &ctx, &mut budget)?;
    let fragment = match source.kind {
        SourceKind::Action(_) | SourceKind::FollowUp(..) => {
            let field = source.field();
            let mut action: Action =
                serde_json::from_value(rendered).map_err(|e| BuildError::Invalid {
                    field: field.clone(),
                    message: e.to_string(),
                })?;
            // The name identifies the action in Job names, labels and status: never rendered.
            action.name = source.action_name.clone();
            action_fragment(&action, &reaction.spec.volumes, alert)
        }
        SourceKind::JobTemplate => {
            let jt: JobTemplate =
                serde_json::from_value(rendered).map_err(|e| BuildError::Invalid {
                    field: "spec.jobTemplate".into(),
                    message: e.to_string(),
                })?;
            let mut v = Map::new();
            if let Some(m) = jt.metadata {
                v.insert("metadata".into(), m);
            }
            v.insert("spec".into(), jt.spec);
            Value::Object(v)
        }
    };

    let mut job = base.clone();
    deep_merge(&mut job, fragment);
    // Karo's own labels cannot be overridden by a template: they are how Karo
    // finds its Jobs again (cooldown, concurrency, kubectl selectors).
    for path in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(Value::Object(own)) = base.pointer(path) {
            if let Some(Value::Object(labels)) = job.pointer_mut(path) {
                for (k, v) in own {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
    }
    finish(&mut job, reaction, &source.job_action(), alert, defaults)?;
    let field = match job.pointer("/metadata/name") {
        Some(Value::String(n)) => format!("Job {n}"),
        _ => "Job".into(),
    };
    let size = json_size(&job);
    if size > MAX_RENDERED_JOB_BYTES {
        return Err(BuildError::TooLarge {
            field,
            size,
            limit: MAX_RENDERED_JOB_BYTES,
        });
    }
    serde_json::from_value::<Job>(job).map_err(|e| BuildError::Invalid {
        field,
        message: e.to_string(),
    })
}

/// The length of `v` as compact JSON, without building the text.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The Job fragment of an earlier-form action: one container, the reaction's volumes.
fn action_fragment(action: &Action, volumes: &[Volume], alert: &Alert) -> Value {
    let env: Vec<Value> = action
        .env
        .iter()
        .map(|e| {
            let mut out = json!({ "name": e.name });
            if let Some(v) = &e.value {
                out["value"] = json!(v);
            }
            if let Some(from) = &e.value_from {
                if let Some(r) = &from.alert_ref {
                    out["value"] = json!(alert_field(alert, &r.field_path));
                } else if let Some(r) = &from.config_map_key_ref {
                    out["valueFrom"] = json!({ "configMapKeyRef": r });
                } else if let Some(r) = &from.secret_key_ref {
                    out["valueFrom"] = json!({ "secretKeyRef": r });
                }
            }
            out
        })
        .collect();
    let mut container = json!({
        "name": container_name(&action.name),
        "image": action.image,
    });
    if !action.command.is_empty() {
        container["command"] = json!(action.command);
    }
    if !action.args.is_empty() {
        container["args"] = json!(action.args);
    }
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if let Some(r) = &action.resources {
        container["resources"] = json!(r);
    }
    if !action.volume_mounts.is_empty() {
        container["volumeMounts"] = json!(action.volume_mounts);
    }
    let mut pod = json!({ "containers": [container] });
    if !volumes.is_empty() {
        pod["volumes"] = json!(volumes);
    }
    if let Some(sa) = &action.service_account {
        pod["serviceAccountName"] = json!(sa);
    }
    json!({ "spec": { "template": { "spec": pod } } })
}

fn container_name(action: &str) -> String {
    let mut n: String = sanitize_name(action).chars().take(63).collect();
    while n.ends_with('-') {
        n.pop();
    }
    if n.is_empty() {
        "action".into()
    } else {
        n
    }
}

/// The value of `env[].valueFrom.alertRef.fieldPath`; a missing label or
/// annotation is the empty string.
pub fn alert_field(alert: &Alert, path: &str) -> String {
    match path {
        "." => alert.to_json().to_string(),
        "status" => alert.status.as_str().to_string(),
        "startsAt" => alert.starts_at.clone(),
        "endsAt" => alert.ends_at.clone(),
        "fingerprint" => alert.fingerprint.clone(),
        "generatorURL" => alert.generator_url.clone(),
        _ => {
            if let Some(k) = path.strip_prefix("labels.") {
                alert.labels.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = path.strip_prefix("annotations.") {
                alert.annotations.get(k).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        }
    }
}

/// Maps merge key by key; anything else in `over` replaces what is in `base`.
fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Name, namespace, owner, Karo's bookkeeping labels, and the Job defaults.
fn finish(
    job: &mut Value,
    reaction: &CompiledReaction,
    action: &str,
    alert: &Alert,
    defaults: &JobDefaults,
) -> Result<(), BuildError> {
    let invalid = |field: &str, message: &str| BuildError::Invalid {
        field: field.into(),
        message: message.into(),
    };
    let Value::Object(root) = job else {
        return Err(invalid("Job", "the skeleton is not a mapping"));
    };
    root.insert("apiVersion".into(), json!("batch/v1"));
    root.insert("kind".into(), json!("Job"));
    let meta = object_at(root, "metadata").ok_or_else(|| invalid("metadata", "not a mapping"))?;
    meta.insert("name".into(), json!(job_name(reaction, action, alert)));
    meta.insert("namespace".into(), json!(reaction.namespace));
    // Owned by its Run; the Run's UID is known once the Run exists.
    let run = run_name(reaction, alert);
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "karo.io/v1alpha1",
            "kind": "AlertReactionRun",
            "name": run,
            "uid": "",
            "controller": true,
        }]),
    );
    {
        let labels =
            object_at(meta, "labels").ok_or_else(|| invalid("metadata.labels", "not a mapping"))?;
        for (k, v) in &defaults.labels {
            labels.entry(k.clone()).or_insert_with(|| json!(v));
        }
        labels.insert(LABEL_OCCURRENCE.into(), json!(occurrence_id(alert)));
        labels.insert(LABEL_RUN.into(), json!(run));
        sanitize_labels(labels);
    }
    {
        let annotations = object_at(meta, "annotations")
            .ok_or_else(|| invalid("metadata.annotations", "not a mapping"))?;
        for (k, v) in &defaults.annotations {
            annotations.entry(k.clone()).or_insert_with(|| json!(v));
        }
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > ANNOTATIONS_LIMIT - ALERT_LABELS_BUDGET {
            // Alert labels are also on the alert's labels; keep the Job creatable.
            annotations.insert(
                "karo.io/alert-labels".into(),
                json!("{\"truncated\":\"alert labels exceed the annotation size limit\"}"),
            );
        }
    }

    let spec = object_at(root, "spec").ok_or_else(|| invalid("spec", "not a mapping"))?;
    let (spec_values, default_values) = (&reaction.spec, defaults);
    let overrides = [
        (
            "ttlSecondsAfterFinished",
            spec_values
                .ttl_seconds_after_finished
                .or(default_values.ttl_seconds_after_finished)
                .map(i64::from),
        ),
        (
            "backoffLimit",
            spec_values
                .backoff_limit
                .or(default_values.backoff_limit)
                .map(i64::from),
        ),
        (
            "activeDeadlineSeconds",
            spec_values
                .active_deadline_seconds
                .or(default_values.active_deadline_seconds),
        ),
    ];
    for (key, value) in overrides {
        if let Some(v) = value {
            spec.entry(key.to_string()).or_insert_with(|| json!(v));
        }
    }
    let template =
        object_at(spec, "template").ok_or_else(|| invalid("spec.template", "not a mapping"))?;
    {
        let tmeta = object_at(template, "metadata")
            .ok_or_else(|| invalid("spec.template.metadata", "not a mapping"))?;
        if let Some(labels) = object_at(tmeta, "labels") {
            sanitize_labels(labels);
        }
    }
    let pod = object_at(template, "spec")
        .ok_or_else(|| invalid("spec.template.spec", "not a mapping"))?;
    pod.entry("restartPolicy".to_string())
        .or_insert_with(|| json!("Never"));
    Ok(())
}

/// The mapping at `key`, created when absent; `None` when it is not a mapping.
fn object_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let entry = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

fn sanitize_labels(labels: &mut Map<String, Value>) {
    for v in labels.values_mut() {
        if let Value::String(s) = v {
            let clean = sanitize_label_value(s);
            if clean != *s {
                *s = clean;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_sanitised() {
        assert_eq!(sanitize_label_value("HighCPU"), "HighCPU");
        assert_eq!(sanitize_label_value("a b/c"), "a_b_c");
        assert_eq!(sanitize_label_value("-x-"), "x");
        assert_eq!(sanitize_label_value(&"a".repeat(100)).len(), 63);
        assert_eq!(sanitize_label_value("{{x}}"), "x");
        assert_eq!(sanitize_label_value("\n  hostPath:"), "hostPath");
    }

    #[test]
    fn names_are_dns1123() {
        assert_eq!(sanitize_name("High_CPU.Reaction"), "high-cpu-reaction");
        assert_eq!(container_name("--"), "action");
    }

    mod limits {
        use std::collections::BTreeMap;

        use serde_json::json;

        use super::super::*;
        use crate::core::reaction;
        use crate::model::config::Policy;
        use crate::model::crd::limits::MAX_RENDER_OUTPUT_BYTES;
        use crate::model::crd::AlertReaction;

        fn reaction_with(action: Value) -> CompiledReaction {
            let spec = json!({"alertName": "Big", "actions": [action]});
            let mut ar = AlertReaction::new("big", serde_json::from_value(spec).expect("spec"));
            ar.metadata.namespace = Some("default".into());
            ar.metadata.uid = Some("uid-1".into());
            reaction::compile(&ar, &Renderer::new(), &Policy::default()).expect("compiles")
        }

        /// An alert with `n` labels of `len` bytes each.
        fn big_alert(n: usize, len: usize) -> Alert {
            let mut labels: BTreeMap<String, String> =
                (0..n).map(|i| (format!("l{i}"), "x".repeat(len))).collect();
            labels.insert("alertname".into(), "Big".into());
            Alert {
                labels,
                starts_at: "2026-01-01T00:00:00Z".into(),
                fingerprint: "f1".into(),
                ..Alert::default()
            }
        }

        fn build(reaction: &CompiledReaction, alert: &Alert) -> Result<Job, BuildError> {
            let skeleton = Skeleton::builtin().expect("skeleton");
            build_job(&JobInput {
                reaction,
                source: &reaction.sources[0],
                alert,
                notification: &Notification::default(),
                renderer: &Renderer::new(),
                skeleton: &skeleton,
                defaults: &JobDefaults::default(),
            })
        }

        #[test]
        fn a_template_that_repeats_over_big_labels_is_refused_for_that_alert() {
            // Every label, every label again: 150 labels of 200 bytes make 4.5 MB.
            let r = reaction_with(json!({
                "name": "a", "image": "busybox",
                "args": ["{{#each labels}}{{#each ../labels}}{{this}}{{/each}}{{/each}}"],
            }));
            let err = build(&r, &big_alert(150, 200)).expect_err("too big");
            let BuildError::Render(e) = &err else {
                panic!("a render error: {err}");
            };
            assert_eq!(e.field(), "spec.actions[0].args[0]");
            assert_eq!(e.reason(), "RenderFailed");
            assert!(
                err.to_string().contains(&format!(
                    "the rendered output exceeds the limit of {MAX_RENDER_OUTPUT_BYTES} bytes for one Job"
                )),
                "{err}"
            );
            // The same reaction for an alert with few labels renders.
            let job = build(&r, &big_alert(3, 10)).expect("small alert");
            let args = job
                .spec
                .and_then(|s| s.template.spec)
                .map(|p| p.containers[0].args.clone());
            assert_eq!(
                args.flatten().map(|a| a[0].len()),
                Some(4 * 4 * 10 - 4 * 10 + 4 * 3)
            );
        }

        #[test]
        fn the_budget_is_shared_by_every_template_of_the_job() {
            // Each argument is under the limit; together they are over it.
            let arg = "{{#each labels}}{{this}}{{/each}}";
            let r = reaction_with(json!({
                "name": "a", "image": "busybox", "args": [arg, arg, arg],
            }));
            // 1100 labels of 1000 bytes: 1.1 MB per argument, and as much for the
            // skeleton's `karo.io/alert-labels`: 4.4 MB together.
            let err = build(&r, &big_alert(1100, 1000)).expect_err("too big");
            assert!(
                err.to_string()
                    .starts_with("spec.actions[0].args[2]: the rendered output exceeds"),
                "{err}"
            );
            build(&r, &big_alert(100, 1000)).expect("400 kB together");
        }

        #[test]
        fn replace_cannot_multiply_a_label_past_the_limit() {
            let r = reaction_with(json!({
                "name": "a", "image": "busybox",
                "args": [r#"{{replace labels.l0 "x" "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"}}"#],
            }));
            let err = build(&r, &big_alert(1, 100_000)).expect_err("5 MB");
            assert!(
                err.to_string()
                    .contains("`replace` would produce 5100000 bytes, more than the limit"),
                "{err}"
            );
            build(&r, &big_alert(1, 1000)).expect("51 kB");
        }

        #[test]
        fn a_job_bigger_than_the_limit_is_refused_even_without_templates() {
            // The whole alert as JSON in 3 variables, from a 500 kB alert.
            let env: Vec<Value> = (0..3)
                .map(|i| json!({"name": format!("A{i}"), "valueFrom": {"alertRef": {"fieldPath": "."}}}))
                .collect();
            let r = reaction_with(json!({"name": "a", "image": "busybox", "env": env}));
            let err = build(&r, &big_alert(50, 10_000)).expect_err("1.5 MB");
            let BuildError::TooLarge { field, size, limit } = &err else {
                panic!("TooLarge: {err}");
            };
            assert!(field.starts_with("Job big-a-"), "{field}");
            assert!(*size > *limit && *limit == MAX_RENDERED_JOB_BYTES, "{err}");
            build(&r, &big_alert(10, 10_000)).expect("300 kB");
        }
    }
}
