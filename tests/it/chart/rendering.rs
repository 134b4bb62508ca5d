//! What `helm template` renders: the default install named for the README's commands,
//! the README's examples (basic, security, advanced, monitoring), everything turned on
//! (Ingress, basic auth, a named TLS Secret, namespaced RBAC), and a restart checksum
//! that rolls the pods only for the settings Karo cannot reload.

use serde_json::{json, Value};

use super::{contains, fixture, karo_container, object, of_kind, pod_spec, Helm, HELMS, RELEASE};
use crate::support::files::{documents, read, yaml};

#[test]
fn default_install_is_named_for_the_readme_commands() {
    for helm in HELMS {
        let docs = helm.render(&[]);
        // `helm install my-operator karo/karo`, then the README's curl to
        // karo.default.svc.cluster.local:8080/webhook.
        let service = object(&docs, "Service", "karo");
        let ports: Vec<(Value, Value, Value)> = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].clone(),
                    p["port"].clone(),
                    p["targetPort"].clone(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![
                (json!("http"), json!(8080), json!("http")),
                (json!("webhook"), json!(9443), json!("webhook")),
            ]
        );
        let deployment = object(&docs, "Deployment", "karo");
        // `kubectl get pods -l app.kubernetes.io/name=karo`
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["app.kubernetes.io/name"], "karo");
        assert_eq!(pod_labels["app.kubernetes.io/instance"], RELEASE);
        for label in [
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                deployment["metadata"]["labels"][label].is_string(),
                "{label}"
            );
        }
        assert!(contains(
            &service["spec"]["selector"],
            &json!({"app.kubernetes.io/name": "karo", "app.kubernetes.io/instance": RELEASE})
        ));
        let container = karo_container(deployment);
        assert_eq!(container["image"], "docker.io/dudizimber/karo:latest");
        assert_eq!(
            container["args"],
            json!(["run", "--config", "/etc/karo/config/config.yaml"])
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(
            container["env"][0],
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        );
        // The seed's security defaults.
        assert!(contains(
            &pod_spec(deployment)["securityContext"],
            &json!({"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532})
        ));
        assert!(contains(
            &container["securityContext"],
            &json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": 65532,
            })
        ));
        // The ConfigMap is mounted as a directory (no subPath), so edits reach the pod.
        let mounts = container["volumeMounts"].as_array().expect("mounts");
        assert!(mounts.iter().all(|m| m.get("subPath").is_none()));
        assert!(mounts.contains(
            &json!({"name": "config", "mountPath": "/etc/karo/config", "readOnly": true})
        ));
        assert!(of_kind(&docs, "Ingress").is_empty());
        assert!(of_kind(&docs, "ServiceMonitor").is_empty());
        assert_eq!(of_kind(&docs, "ClusterRole").len(), 1);
        // The one Role: leader election, in the release namespace.
        let roles: Vec<&Value> = of_kind(&docs, "Role")
            .iter()
            .map(|r| &r["metadata"]["name"])
            .collect();
        assert_eq!(roles, [&json!("karo-leader-election")]);
        // TLS is on by default, with a certificate the chart generates.
        let tls = object(&docs, "Secret", "karo-webhook-tls");
        assert_eq!(tls["type"], "kubernetes.io/tls");
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            assert!(tls["data"][key].is_string(), "{key}");
        }
    }
}

#[test]
fn seed_examples_configure_the_deployment() {
    for helm in HELMS {
        let basic = helm.render(&["-f", &fixture("values-basic.yaml")]);
        let deployment = object(&basic, "Deployment", "karo");
        let container = karo_container(deployment);
        assert_eq!(container["image"], "docker.io/dudizimber/karo:0.1.0");
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(
            container["ports"],
            json!([
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "webhook", "containerPort": 9443, "protocol": "TCP"},
            ])
        );
        let config = yaml(
            object(&basic, "ConfigMap", "karo")["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml"),
        );
        assert_eq!(config["webhook"]["path"], "/webhook");
        assert_eq!(config["webhook"]["port"], 9443);
        assert_eq!(config["http"]["port"], 8080);

        let security_values = yaml(&read(fixture("values-security.yaml")));
        let security = helm.render(&["-f", &fixture("values-security.yaml")]);
        let deployment = object(&security, "Deployment", "karo");
        assert!(contains(
            &pod_spec(deployment)["securityContext"],
            &security_values["podSecurityContext"]
        ));
        assert!(contains(
            &karo_container(deployment)["securityContext"],
            &security_values["securityContext"]
        ));
        assert_eq!(
            karo_container(deployment)["resources"],
            security_values["resources"]
        );

        let advanced_values = yaml(&read(fixture("values-advanced.yaml")));
        let advanced = helm.render(&["-f", &fixture("values-advanced.yaml")]);
        let deployment = object(&advanced, "Deployment", "karo");
        let env = karo_container(deployment)["env"].as_array().expect("env");
        for var in advanced_values["env"].as_array().expect("env") {
            assert!(env.contains(var), "{var} not in {env:?}");
        }
        for key in ["nodeSelector", "tolerations", "affinity"] {
            assert_eq!(pod_spec(deployment)[key], advanced_values[key], "{key}");
        }

        let monitoring = helm.render(&["-f", &fixture("values-monitoring.yaml")]);
        let monitor = object(&monitoring, "ServiceMonitor", "karo");
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(
            monitor["metadata"]["labels"]["prometheus"],
            "kube-prometheus"
        );
        assert_eq!(
            monitor["spec"]["endpoints"],
            json!([{"port": "http", "path": "/metrics", "interval": "30s"}])
        );
        let service = object(&monitoring, "Service", "karo");
        assert!(contains(
            &service["metadata"]["labels"],
            &monitor["spec"]["selector"]["matchLabels"]
        ));
    }
}

#[test]
fn everything_on_renders_ingress_auth_named_tls_and_namespaced_rbac() {
    for helm in HELMS {
        let docs = helm.template(RELEASE, "monitoring", &["-f", &fixture("values-full.yaml")]);
        let docs = documents(&docs);

        let ingress = object(&docs, "Ingress", "karo");
        assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
        assert_eq!(
            ingress["spec"]["rules"],
            json!([{
                "host": "karo.example.com",
                "http": {"paths": [{
                    "path": "/webhook",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": "karo", "port": {"name": "http"}}},
                }]},
            }])
        );
        assert_eq!(
            ingress["spec"]["tls"],
            json!([{"hosts": ["karo.example.com"], "secretName": "karo-ingress-tls"}])
        );

        // TLS from the named Secret: nothing generated.
        assert!(docs
            .iter()
            .all(|d| d["metadata"]["name"] != "karo-webhook-tls"));
        let deployment = object(&docs, "Deployment", "karo");
        let volumes = pod_spec(deployment)["volumes"].as_array().expect("volumes");
        assert!(volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "karo-webhook-cert"));
        assert!(volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "karo-webhook-auth"
                && v["secret"]["items"] == json!([{"key": "password", "path": "password"}])));

        // Inline basic credentials land in a Secret, not in the ConfigMap.
        let auth = object(&docs, "Secret", "karo-webhook-auth");
        assert_eq!(auth["data"]["password"], "c2VjcmV0"); // "secret"
        let config_map = object(&docs, "ConfigMap", "karo");
        assert!(!config_map.to_string().contains("secret\""));

        let monitor = object(&docs, "ServiceMonitor", "karo");
        assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
        assert_eq!(monitor["spec"]["endpoints"][0]["scrapeTimeout"], "10s");

        // A namespace list: a Role and RoleBinding in each listed namespace, no
        // ClusterRole; leader election in the release namespace.
        assert!(of_kind(&docs, "ClusterRole").is_empty());
        assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
        let roles: Vec<(&str, &str)> = of_kind(&docs, "Role")
            .iter()
            .map(|r| {
                (
                    r["metadata"]["namespace"].as_str().expect("namespace"),
                    r["metadata"]["name"].as_str().expect("name"),
                )
            })
            .collect();
        assert_eq!(
            roles,
            [
                ("team-a", "karo-monitoring"),
                ("team-b", "karo-monitoring"),
                ("monitoring", "karo-leader-election")
            ]
        );
        for binding in of_kind(&docs, "RoleBinding") {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "karo", "namespace": "monitoring"}])
            );
        }
    }
}

/// The Deployment changes (and the pods roll) only for the settings Karo cannot
/// reload: ports, TLS on/off, namespaces and leader election. Everything else reaches
/// the running pods through the mounted ConfigMap.
#[test]
fn only_settings_that_need_a_restart_roll_the_pods() {
    let deployment = |set: &[&str]| -> Value {
        let mut args = vec!["-s", "templates/deployment.yaml"];
        for s in set {
            args.extend(["--set", s]);
        }
        Helm::V3.render(&args).remove(0)
    };
    let checksum = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["checksum/restart-settings"].clone()
    };
    let base = deployment(&[]);
    assert!(checksum(&base).is_string());
    for live in [
        "config.logLevel=debug",
        "config.dryRun=true",
        "config.jobDefaults.ttlSecondsAfterFinished=60",
        "config.limits.maxJobsPerMinute=10",
        "config.runs.retention=48h",
        "config.runs.retentionAfterResolved=10m",
        "config.runs.historyLimit=5",
        "jobTemplate=apiVersion: batch/v1",
    ] {
        assert_eq!(deployment(&[live]), base, "{live} changed the Deployment");
    }
    for restart in [
        "config.namespaces={a}",
        "service.targetPort=8181",
        "webhook.port=9444",
        "webhook.tls.enabled=false",
        "config.leaderElection.leaseName=other",
        "config.leaderElection.namespace=elections",
        "config.leaderElection.leaseDuration=30s",
    ] {
        assert_ne!(
            checksum(&deployment(&[restart])),
            checksum(&base),
            "{restart} must roll the pods"
        );
    }
}
