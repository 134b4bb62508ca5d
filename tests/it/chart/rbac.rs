//! The RBAC `helm template` renders. In the namespaces Karo watches (a ClusterRole, or
//! a Role in each namespace of `config.namespaces`): AlertReactions and their status,
//! AlertReactionRuns and their status, Jobs, pods and their logs, Events. In Karo's own
//! namespace, in both forms, a Role of its own for its leader-election Lease, limited
//! to the Lease named in the rendered config: the release's fullname unless
//! `config.leaderElection.leaseName` names one.

use serde_json::{json, Value};

use super::{karo_container, load_config, object, of_kind, Helm, HELMS, RELEASE};
use crate::support::files::documents;

/// The release namespace of these renderings.
const NAMESPACE: &str = "monitoring";

/// What Karo does in the namespaces it watches, and nothing more.
fn watched_namespace_rules() -> Value {
    json!([
        {"apiGroups": ["karo.io"], "resources": ["alertreactions"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["karo.io"], "resources": ["alertreactions/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["karo.io"], "resources": ["alertreactionruns"],
         "verbs": ["create", "get", "list", "watch", "patch", "update", "delete"]},
        {"apiGroups": ["karo.io"], "resources": ["alertreactionruns/status"], "verbs": ["update", "patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// Leader election: any Lease may be created (RBAC cannot name what is created), only
/// Karo's own is read and renewed.
fn lease_rules(lease: &str) -> Value {
    json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
         "verbs": ["get", "update", "patch"]},
    ])
}

/// `helm template my-operator charts/karo -n monitoring <args>`.
fn render(helm: Helm, args: &[&str]) -> Vec<Value> {
    documents(&helm.template(RELEASE, NAMESPACE, args))
}

/// (namespace, name) of every object of `kind`, sorted.
fn placed(docs: &[Value], kind: &str) -> Vec<(String, String)> {
    let mut placed: Vec<(String, String)> = of_kind(docs, kind)
        .iter()
        .map(|d| {
            (
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                d["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    placed.sort();
    placed
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .collect()
}

/// The rules of the Role `namespace/name`.
fn role_rules<'a>(docs: &'a [Value], namespace: &str, name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|d| {
            d["kind"] == "Role"
                && d["metadata"]["namespace"] == namespace
                && d["metadata"]["name"] == name
        })
        .unwrap_or_else(|| {
            panic!(
                "no Role {namespace}/{name} among {:?}",
                placed(docs, "Role")
            )
        })["rules"]
}

/// Every (Cluster)RoleBinding binds the (Cluster)Role of its own name, in its own
/// namespace, to Karo's ServiceAccount in the release namespace.
fn assert_bindings_match_roles(docs: &[Value], account: &str) {
    for (binding_kind, role_kind) in [
        ("RoleBinding", "Role"),
        ("ClusterRoleBinding", "ClusterRole"),
    ] {
        assert_eq!(
            placed(docs, binding_kind),
            placed(docs, role_kind),
            "{binding_kind}s vs {role_kind}s"
        );
        for binding in of_kind(docs, binding_kind) {
            assert_eq!(
                binding["roleRef"],
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                       "name": binding["metadata"]["name"]}),
                "{binding}"
            );
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]),
                "{binding}"
            );
        }
    }
}

#[test]
fn cluster_wide_rbac_grants_runs_jobs_pods_and_logs_with_the_lease_in_a_release_namespace_role() {
    for helm in HELMS {
        let docs = render(helm, &[]);
        assert_eq!(
            placed(&docs, "ClusterRole"),
            pairs(&[("", "karo-monitoring")])
        );
        assert_eq!(
            object(&docs, "ClusterRole", "karo-monitoring")["rules"],
            watched_namespace_rules(),
            "{helm:?}"
        );
        // Leases only in Karo's own namespace, never cluster-wide.
        assert_eq!(
            placed(&docs, "Role"),
            pairs(&[(NAMESPACE, "karo-leader-election")])
        );
        assert_eq!(
            role_rules(&docs, NAMESPACE, "karo-leader-election"),
            &lease_rules("karo"),
            "{helm:?}"
        );
        assert_bindings_match_roles(&docs, "karo");
        // Karo finds its Lease's namespace in POD_NAMESPACE.
        let container = karo_container(object(&docs, "Deployment", "karo"));
        assert!(
            container["env"]
                .as_array()
                .expect("env")
                .contains(&json!({"name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})),
            "{}",
            container["env"]
        );
    }
}

#[test]
fn namespaced_rbac_grants_the_same_rules_in_each_listed_namespace_and_the_lease_in_its_own() {
    for helm in HELMS {
        // The release namespace is listed too: its two Roles have names of their own.
        let docs = render(helm, &["--set", "config.namespaces={team-a,monitoring}"]);
        assert!(of_kind(&docs, "ClusterRole").is_empty());
        assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
        assert_eq!(
            placed(&docs, "Role"),
            pairs(&[
                (NAMESPACE, "karo-leader-election"),
                (NAMESPACE, "karo-monitoring"),
                ("team-a", "karo-monitoring"),
            ])
        );
        for namespace in ["team-a", NAMESPACE] {
            assert_eq!(
                role_rules(&docs, namespace, "karo-monitoring"),
                &watched_namespace_rules(),
                "{helm:?} {namespace}"
            );
        }
        assert_eq!(
            role_rules(&docs, NAMESPACE, "karo-leader-election"),
            &lease_rules("karo"),
            "{helm:?}"
        );
        assert_bindings_match_roles(&docs, "karo");

        // Watching only other namespaces: the Lease's Role stays in the release's.
        let docs = render(helm, &["--set", "config.namespaces={team-a,team-b}"]);
        assert_eq!(
            placed(&docs, "Role"),
            pairs(&[
                (NAMESPACE, "karo-leader-election"),
                ("team-a", "karo-monitoring"),
                ("team-b", "karo-monitoring"),
            ])
        );
        assert_bindings_match_roles(&docs, "karo");
    }
}

/// Two Karos in one namespace (`fullnameOverride`) do not share a Lease; a name or a
/// namespace set in `config.leaderElection` is kept, and the Role follows the Lease.
#[test]
fn the_lease_is_named_after_the_releases_objects_in_the_config_and_the_role() {
    // (values, the Lease's name, its namespace in the config, the Role's namespace)
    let cases: [(&[&str], &str, Option<&str>, &str); 4] = [
        (&[], "karo", None, NAMESPACE),
        (
            &["--set", "fullnameOverride=karo-canary"],
            "karo-canary",
            None,
            NAMESPACE,
        ),
        (
            &["--set", "config.leaderElection.leaseName=shared-karo"],
            "shared-karo",
            None,
            NAMESPACE,
        ),
        (
            &["--set", "config.leaderElection.namespace=elections"],
            "karo",
            Some("elections"),
            "elections",
        ),
    ];
    for helm in HELMS {
        for (args, lease, config_namespace, role_namespace) in cases {
            let docs = render(helm, args);
            let config_maps = of_kind(&docs, "ConfigMap");
            assert_eq!(config_maps.len(), 1, "{args:?}");
            let config = load_config(
                config_maps[0]["data"]["config.yaml"]
                    .as_str()
                    .expect("config.yaml"),
            );
            assert_eq!(
                config.leader_election.lease_name, lease,
                "{helm:?} {args:?}"
            );
            assert_eq!(
                config.leader_election.namespace.as_deref(),
                config_namespace,
                "{helm:?} {args:?}"
            );
            let fullname = config_maps[0]["metadata"]["name"].as_str().expect("name");
            let role = format!("{fullname}-leader-election");
            assert!(
                placed(&docs, "Role").contains(&(role_namespace.to_string(), role.clone())),
                "{helm:?} {args:?}: {:?}",
                placed(&docs, "Role")
            );
            assert_eq!(
                role_rules(&docs, role_namespace, &role),
                &lease_rules(lease),
                "{helm:?} {args:?}"
            );
            assert_bindings_match_roles(&docs, fullname);
        }
    }
}

#[test]
fn no_rbac_without_rbac_create() {
    for helm in HELMS {
        for args in [
            &["--set", "rbac.create=false"][..],
            &[
                "--set",
                "rbac.create=false",
                "--set",
                "config.namespaces={team-a}",
            ],
        ] {
            let docs = render(helm, args);
            for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
                assert!(of_kind(&docs, kind).is_empty(), "{helm:?} {args:?}: {kind}");
            }
        }
    }
}
