//! From alert to Job against a real kube-apiserver and a real Alertmanager 0.25. By
//! concern:
//!
//! - `alertmanager`: notifications Alertmanager delivers become rendered Jobs, once per
//!   occurrence, with two Karo replicas, and across an API server outage.
//! - `templates`: how a reaction's spec becomes a Job: the seed's and the earlier
//!   implementation's examples, hostile label values, broken templates and matchers.
//! - `gates`: whether a matching alert creates a Job: `triggerOn`, suspend, dry run,
//!   cooldown and `concurrencyPolicy: Forbid`.
//! - `endpoint`: the webhook endpoint itself: bad bodies, a notification of 1000 alerts,
//!   and a clean stop on SIGTERM.
//! - `in_flight`: a notification is handled to the end when its client goes away, and
//!   when Karo is stopped, while the API server does not answer.
//!
//! Here: the helpers they share.

mod alertmanager;
mod endpoint;
mod gates;
mod in_flight;
mod templates;

/// A reaction `name` to `alert_name` with one busybox action, `a`: `spec` holds more
/// lines of the spec (indented, or empty), `action` more fields of the action
/// (`, key: value`, or empty).
fn reaction(name: &str, alert_name: &str, spec: &str, action: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  alertName: {alert_name}\n{spec}  actions: [{{name: a, image: busybox{action}}}]\n"
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
