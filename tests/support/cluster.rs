//! The real single-node cluster of `tests/platform/cluster` (kubelet, controller
//! manager, scheduler, kube-proxy, containerd): where Jobs run pods and Karo runs as
//! a pod from its own image. `make test` starts it before the tests and stops it
//! after; the tests find it through `KARO_CLUSTER_KUBECONFIG` and
//! `KARO_CLUSTER_CONTAINERD`, and Karo's image at `target/karo-image.tar` (`make
//! image`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::bins;
use super::files::{repo_path, succeeded};
use super::process::{random_hex, run_output};
use super::ready::wait_for;

/// The image `make image` builds, as the chart names it by default.
pub fn karo_image() -> String {
    format!("docker.io/dudizimber/karo:{}", env!("CARGO_PKG_VERSION"))
}

/// The image Jobs run in: busybox and kubectl (`tests/platform/cluster/build.sh`).
pub const TOOLS_IMAGE: &str = "local/busybox:1";

pub struct Cluster {
    kubeconfig: PathBuf,
    containerd: PathBuf,
}

impl Cluster {
    /// The running cluster. Panics with what to run when there is none.
    pub fn get() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            let var = |name: &str| {
                std::env::var_os(name)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        panic!(
                        "{name} is not set: the real cluster is not running. `make test` starts \
                         it; by hand: bash tests/platform/cluster/build.sh && bash \
                         tests/platform/cluster/start.sh, then \
                         eval \"$(bash tests/platform/cluster/exports.sh)\""
                    )
                    })
            };
            Cluster {
                kubeconfig: var("KARO_CLUSTER_KUBECONFIG"),
                containerd: var("KARO_CLUSTER_CONTAINERD"),
            }
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("cluster kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("cluster client config");
        kube::Client::try_from(config).expect("cluster client")
    }

    /// `kubectl --kubeconfig <cluster> <args>`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        // The cluster's own kubectl (built with it), else the machine's.
        let kubectl = std::env::var_os("KARO_CLUSTER_KUBECTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| bins::kubectl().expect("kubectl"));
        let mut cmd = Command::new(kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_output(cmd, None).expect("running kubectl")
    }

    /// `kubectl` that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        succeeded(&self.kubectl(args), &format!("kubectl {}", args.join(" ")))
    }

    /// Imports Karo's image (`target/karo-image.tar`) into the node's containerd,
    /// once per test run.
    pub fn import_karo_image(&self) {
        static IMPORTED: OnceLock<()> = OnceLock::new();
        IMPORTED.get_or_init(|| {
            let archive = repo_path("target/karo-image.tar");
            assert!(
                archive.is_file(),
                "{} is missing: `make image` builds it",
                archive.display()
            );
            let mut cmd = Command::new("ctr");
            cmd.arg("--address")
                .arg(&self.containerd)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(&archive);
            succeeded(
                &run_output(cmd, None).expect("running ctr"),
                "ctr images import",
            );
        });
    }

    /// A new namespace `<prefix>-<random>` whose default ServiceAccount has its
    /// token (pods are refused before).
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", random_hex(4));
        let client = self.client().await;
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating a namespace");
        let accounts: Api<ServiceAccount> = Api::namespaced(client, &name);
        wait_for(Duration::from_secs(60), || {
            let accounts = accounts.clone();
            async move {
                let sa = accounts.get_opt("default").await.ok().flatten()?;
                sa.secrets.filter(|s| !s.is_empty()).map(|_| ())
            }
        })
        .await
        .unwrap_or_else(|e| panic!("the default ServiceAccount of {name} has no token: {e}"));
        name
    }
}
