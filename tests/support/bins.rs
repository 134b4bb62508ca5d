//! Where the platform's binaries are. `tests/platform/setup.sh` prints `KARO_*`
//! variables that the Makefile exports; without them, the usual places are tried.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// `KARO_CACHE`, default `~/.cache/karo` (as in setup.sh).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KARO_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/karo")
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn kubebuilder_asset(name: &str) -> Option<PathBuf> {
    env_path("KUBEBUILDER_ASSETS")
        .map(|dir| dir.join(name))
        .filter(|p| is_executable(p))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn found(what: &str, candidates: &[Option<PathBuf>]) -> Result<PathBuf> {
    for c in candidates.iter().flatten() {
        if is_executable(c) {
            return Ok(c.clone());
        }
    }
    bail!(
        "{what} not found (tried {:?}); run `bash tests/platform/setup.sh` (or `make test`), \
         which installs it and prints the KARO_* variables",
        candidates.iter().flatten().collect::<Vec<_>>()
    )
}

pub fn etcd() -> Result<PathBuf> {
    found(
        "etcd",
        &[
            env_path("KARO_ETCD"),
            kubebuilder_asset("etcd"),
            on_path("etcd"),
        ],
    )
}

pub fn kube_apiserver() -> Result<PathBuf> {
    found(
        "kube-apiserver",
        &[
            env_path("KARO_KUBE_APISERVER"),
            kubebuilder_asset("kube-apiserver"),
            Some(cache_dir().join("bin/kube-apiserver")),
        ],
    )
}

pub fn alertmanager() -> Result<PathBuf> {
    found(
        "prometheus-alertmanager",
        &[
            env_path("KARO_ALERTMANAGER"),
            on_path("prometheus-alertmanager"),
            on_path("alertmanager"),
        ],
    )
}

pub fn amtool() -> Result<PathBuf> {
    found("amtool", &[env_path("KARO_AMTOOL"), on_path("amtool")])
}

pub fn promtool() -> Result<PathBuf> {
    found(
        "promtool",
        &[env_path("KARO_PROMTOOL"), on_path("promtool")],
    )
}

pub fn helm3() -> Result<PathBuf> {
    found(
        "helm 3",
        &[env_path("KARO_HELM3"), Some(cache_dir().join("bin/helm3"))],
    )
}

pub fn helm4() -> Result<PathBuf> {
    found(
        "helm 4",
        &[env_path("KARO_HELM4"), Some(cache_dir().join("bin/helm4"))],
    )
}

pub fn kubectl() -> Result<PathBuf> {
    found(
        "kubectl",
        &[Some(PathBuf::from("/usr/bin/kubectl")), on_path("kubectl")],
    )
}

pub fn openssl() -> Result<PathBuf> {
    found("openssl", &[on_path("openssl")])
}

/// The `karo` binary Cargo built for this test run.
pub fn karo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_karo"))
}
