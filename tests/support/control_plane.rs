//! etcd plus kube-apiserver on loopback, as TESTING.md describes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::CustomResourceExt;

use super::bins;
use super::karo_lib::{AlertReaction, AlertReactionRun};
use super::process::{free_port, random_hex, run_output, Proc, TestDir};
use super::ready::{start_on_free_port, wait_until, Probe};

/// Hang guards for startup; a healthy start takes a few seconds.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(60);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A kube-apiserver backed by its own etcd. Stopped (and its dir removed) on drop.
pub struct ControlPlane {
    dir: TestDir,
    etcd: Proc,
    apiserver: Option<Proc>,
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
    port: u16,
    url: String,
    token: String,
    kubeconfig: PathBuf,
    crd_installed: AtomicBool,
}

/// Users besides `admin` that the API server knows (a token each, no group, so no
/// permission until a test binds them a role); `user_kubeconfig` is the kubeconfig
/// to run `karo` or `kubectl` as one of them.
pub const USERS: [&str; 2] = ["alice", "mallory"];

impl ControlPlane {
    /// One control plane per test binary, started on first use. Tests sharing it must
    /// work in their own namespaces. Its processes die with the test binary.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            // Started on a thread with its own runtime: the caller's runtime ends with
            // its test, and nothing of this runtime is kept.
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(ControlPlane::start())
                    .map_err(|e| format!("{e:#}"))
            })
            .join()
            .unwrap_or_else(|_| Err("the start thread panicked".to_string()))
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("the shared control plane did not start: {e}"),
        }
    }

    /// An exclusive control plane, owned by the caller.
    pub async fn start() -> Result<ControlPlane> {
        let begun = Instant::now();
        let dir = TestDir::new("cp")?;
        let token = random_hex(16);
        let mut tokens = format!("{token},admin,admin,system:masters\n");
        let mut user_tokens = Vec::new();
        for user in USERS {
            let user_token = random_hex(16);
            tokens.push_str(&format!("{user_token},{user},{user}\n"));
            user_tokens.push((user, user_token));
        }
        fs::write(dir.path().join("tokens.csv"), tokens)?;
        let sa_key = dir.path().join("sa.key");
        let mut genrsa = Command::new(bins::openssl()?);
        genrsa.arg("genrsa").arg("-out").arg(&sa_key).arg("2048");
        let out = run_output(genrsa, None).context("running openssl genrsa")?;
        if !out.status.success() {
            bail!(
                "openssl genrsa failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let (etcd, etcd_url) = start_etcd(dir.path()).await?;
        let apiserver_bin = bins::kube_apiserver()?;

        let (apiserver, port, apiserver_args) =
            start_on_free_port(APISERVER_READY_TIMEOUT, |port, _| {
                let args = apiserver_args(dir.path(), &etcd_url, port);
                let proc = spawn_apiserver(dir.path(), &apiserver_bin, &args)?;
                Ok((proc, apiserver_probe(port, &token), args))
            })
            .await?;

        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig = dir.path().join("kubeconfig");
        fs::write(&kubeconfig, kubeconfig_yaml(&url, "admin", &token))?;
        for (user, user_token) in &user_tokens {
            fs::write(
                dir.path().join(format!("kubeconfig-{user}")),
                kubeconfig_yaml(&url, user, user_token),
            )?;
        }
        eprintln!(
            "karo tests: control plane {url} (etcd {etcd_url}, dir {}) ready after {:.1?}",
            dir.path().display(),
            begun.elapsed()
        );
        Ok(ControlPlane {
            dir,
            etcd,
            apiserver: Some(apiserver),
            apiserver_bin,
            apiserver_args,
            port,
            url,
            token,
            kubeconfig,
            crd_installed: AtomicBool::new(false),
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig for `user`, one of `USERS`: its user entry is named after the
    /// user, its token is the user's own.
    pub fn user_kubeconfig(&self, user: &str) -> PathBuf {
        assert!(USERS.contains(&user), "{user} is not one of {USERS:?}");
        self.dir.path().join(format!("kubeconfig-{user}"))
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bearer token of `admin` (group `system:masters`).
    #[allow(dead_code, reason = "only benches/karo_bench uses it")]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The control plane's temp dir (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn etcd_pid(&self) -> u32 {
        self.etcd.pid()
    }

    /// `None` while stopped with `stop_apiserver`.
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.apiserver.as_ref().map(Proc::pid)
    }

    #[allow(dead_code, reason = "only benches/karo_bench uses it")]
    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.path().join("kube-apiserver.log")
    }

    /// A kube client config from the kubeconfig (admin).
    pub async fn config(&self) -> kube::Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("reading the kubeconfig");
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("loading the kubeconfig")
    }

    /// A new admin client. Make one per test: a client is tied to the runtime it was
    /// made on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await).expect("building a kube client")
    }

    /// Creates a namespace `<prefix>-<random>` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        let mut base: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        base.truncate(50);
        let base = base.trim_matches('-');
        let base = if base.is_empty() { "test" } else { base };
        let name = format!("{base}-{}", random_hex(4));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client().await)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        name
    }

    /// Applies Karo's CRDs (AlertReaction, AlertReactionRun; server-side apply)
    /// and waits until they are Established and their resources are served.
    pub async fn install_crd(&self) {
        if self.crd_installed.load(Ordering::SeqCst) {
            return;
        }
        let client = self.client().await;
        let crds = Api::<CustomResourceDefinition>::all(client.clone());
        let mut names = Vec::new();
        for crd in [AlertReaction::crd(), AlertReactionRun::crd()] {
            let name = crd.metadata.name.clone().expect("the CRD has a name");
            crds.patch(
                &name,
                &PatchParams::apply("karo-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
            names.push(name);
        }
        for name in names {
            wait_crd_established(&client, &name)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        self.crd_installed.store(true, Ordering::SeqCst);
    }

    /// Runs `kubectl --kubeconfig <ours> <args>` (its discovery cache is kept in our dir).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, None)
    }

    /// `kubectl` with `stdin` as its input (for `apply -f -`).
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(bins::kubectl().expect("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .arg("--request-timeout=60s")
            .args(args);
        run_output(cmd, stdin).expect("running kubectl")
    }

    /// Kills the API server; etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut proc) = self.apiserver.take() {
            proc.kill();
        }
    }

    /// Starts the API server again, on the same port with the same etcd.
    pub async fn start_apiserver(&mut self) {
        if self.apiserver.is_some() {
            return;
        }
        let mut proc = spawn_apiserver(self.dir.path(), &self.apiserver_bin, &self.apiserver_args)
            .unwrap_or_else(|e| panic!("{e:#}"));
        if let Err(e) = apiserver_probe(self.port, &self.token)
            .wait(&mut proc, APISERVER_READY_TIMEOUT)
            .await
        {
            panic!("restarting the API server on port {}: {e:#}", self.port);
        }
        self.apiserver = Some(proc);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_apiserver();
        self.etcd.kill();
        // `dir` is removed when the field drops, after both processes are reaped.
    }
}

async fn start_etcd(dir: &Path) -> Result<(Proc, String)> {
    let bin = bins::etcd()?;
    let (proc, _, client_url) = start_on_free_port(ETCD_READY_TIMEOUT, |client_port, attempt| {
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let data_dir = dir.join(format!("etcd-{attempt}"));
        let mut cmd = Command::new(&bin);
        cmd.arg("--name=karo-test")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=karo-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .env_remove("ETCDCTL_API");
        let proc = Proc::spawn("etcd", cmd, &dir.join("etcd.log"))?;
        Ok((proc, Probe::get(format!("{client_url}/health")), client_url))
    })
    .await?;
    Ok((proc, client_url))
}

fn apiserver_args(dir: &Path, etcd_url: &str, port: u16) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--cert-dir={}", path("certs")),
        format!("--token-auth-file={}", path("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", path("sa.key")),
        format!("--service-account-signing-key-file={}", path("sa.key")),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--disable-admission-plugins=ServiceAccount".into(),
        "--insecure-port=0".into(),
        "--feature-gates=TTLAfterFinished=true".into(),
    ]
}

fn spawn_apiserver(dir: &Path, bin: &Path, args: &[String]) -> Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    Proc::spawn("kube-apiserver", cmd, &dir.join("kube-apiserver.log"))
}

/// Ready when `/readyz`, asked as admin, answers 200.
fn apiserver_probe(port: u16, token: &str) -> Probe {
    Probe::get(format!("https://127.0.0.1:{port}/readyz")).bearer(token)
}

async fn wait_crd_established(client: &kube::Client, name: &str) -> Result<()> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let reactions = Api::<AlertReaction>::all(client.clone());
    let runs = Api::<AlertReactionRun>::all(client.clone());
    wait_until(Duration::from_secs(60), || {
        let crds = crds.clone();
        let reactions = reactions.clone();
        let runs = runs.clone();
        async move {
            let established = match crds.get(name).await {
                Ok(crd) => crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"),
                Err(_) => false,
            };
            // Established, and the resource is actually served.
            established
                && reactions
                    .list(&ListParams::default().limit(1))
                    .await
                    .is_ok()
                && runs.list(&ListParams::default().limit(1)).await.is_ok()
        }
    })
    .await
    .with_context(|| format!("CRD {name} did not become Established"))
}

fn kubeconfig_yaml(url: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: karo-test
  cluster:
    server: {url}
    insecure-skip-tls-verify: true
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: karo-test
  context:
    cluster: karo-test
    user: {user}
    namespace: default
current-context: karo-test
"
    )
}
