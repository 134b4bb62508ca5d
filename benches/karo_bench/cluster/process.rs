//! The processes measured and how: `karo run` from the release binary, its
//! config in a ConfigMap-like directory, memory, CPU and metrics read from outside.

use super::*;

/// The `karo` binary to measure: `KARO_BENCH_BIN` (the Makefile copies the
/// `cargo build --release` binary there, so that it is exactly the shipped build),
/// else the one Cargo built for this bench (release profile, but its dependencies'
/// features unified with the dev-dependencies').
pub fn karo_bin() -> PathBuf {
    std::env::var_os("KARO_BENCH_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(crate::support::karo_bin)
}

/// A `karo run` process (as `KaroProcess` in tests/support starts one, with the
/// binary of [`karo_bin`]). Killed on drop.
pub(super) struct Karo {
    // Field order matters: the process is killed before its dir is removed.
    pub(super) proc: Proc,
    pub(super) url: String,
    pub(super) _dir: TestDir,
}

impl Karo {
    /// Starts `karo run --http-port <free> --config <config>` and waits until
    /// `/readyz` is 200 (the AlertReaction cache has synced).
    pub(super) async fn start(
        kubeconfig: &Path,
        config: &Path,
        http: &reqwest::Client,
    ) -> Result<Karo> {
        let dir = TestDir::new("bench-karo")?;
        let port = free_port();
        let mut cmd = std::process::Command::new(karo_bin());
        cmd.current_dir(dir.path())
            .arg("run")
            .arg("--http-port")
            .arg(port.to_string())
            .arg("--config")
            .arg(config)
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("karo", cmd, &dir.path().join("karo.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let readyz = format!("{url}/readyz");
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            proc.check_running()?;
            if let Ok(r) = http.get(&readyz).send().await {
                if r.status().as_u16() == 200 {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("karo not ready; its log:\n{}", proc.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Karo {
            proc,
            url,
            _dir: dir,
        })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGTERM, a graceful exit within 10 s, else SIGKILL; its log is kept as
    /// `target/karo-bench/<name>.log`.
    pub(super) fn stop(mut self, name: &str) {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(Duration::from_secs(10));
        self.proc.kill();
        keep_log(self.proc.log_path(), name);
    }
}

/// Where the logs (and profiles) of the last run are kept.
pub(super) fn logs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/karo-bench")
}

pub(super) fn keep_log(from: &Path, name: &str) {
    let dir = logs_dir();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::copy(from, dir.join(format!("{name}.log")));
}

/// A reaction with one action, for (2) and (3). Each variant has its own alert
/// name, so that its alerts match its own reaction only.
pub(super) fn e2e_reaction(namespace: &str, alert_name: &str) -> Result<AlertReaction> {
    let mut ar: AlertReaction = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "e2e"},
        "spec": {
            "alertName": alert_name,
            "matchers": [{"name": "severity", "operator": "=~", "value": "critical|page"}],
            "actions": [{
                "name": "remediate",
                "image": "busybox:1.36",
                "command": ["sh", "-c"],
                "args": ["echo {{labels.instance}}: {{annotations.summary}}"],
            }],
        },
    }))?;
    ar.metadata.namespace = Some(namespace.to_string());
    Ok(ar)
}

/// Karo's config: the defaults, the given webhook path, and the namespaces it
/// watches (Karo's own, so that the direct baselines' reactions are not its).
pub(super) fn config_yaml(webhook_path: &str, namespaces: &[String]) -> String {
    format!(
        "logLevel: info\nnamespaces: [{}]\nwebhook:\n  path: {webhook_path}\n",
        namespaces.join(", ")
    )
}

/// A directory laid out like a mounted ConfigMap volume, updated as the kubelet
/// does (the same steps as `ConfigMapDir` in tests/it/config_reload.rs).
pub(super) struct ConfigMapDir {
    pub(super) dir: TestDir,
    pub(super) generation: AtomicUsize,
}

impl ConfigMapDir {
    pub(super) fn new(files: &[(&str, &str)]) -> Result<ConfigMapDir> {
        let d = ConfigMapDir {
            dir: TestDir::new("bench-configmap")?,
            generation: AtomicUsize::new(0),
        };
        d.update(files)?;
        Ok(d)
    }

    pub(super) fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Writes `..<ts>/`, points `..data_tmp` at it, renames that over `..data`,
    /// removes the old `..<ts>/`.
    pub(super) fn update(&self, files: &[(&str, &str)]) -> Result<()> {
        let root = self.dir.path();
        let n = self.generation.fetch_add(1, Ordering::SeqCst);
        let ts = format!("..2026_11_26_10_00_00.{n:06}");
        std::fs::create_dir(root.join(&ts))?;
        for (key, content) in files {
            std::fs::write(root.join(&ts).join(key), content)?;
        }
        let old = std::fs::read_link(root.join("..data")).ok();
        symlink(&ts, root.join("..data_tmp"))?;
        std::fs::rename(root.join("..data_tmp"), root.join("..data"))?;
        for (key, _) in files {
            let link = root.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{key}"), &link)?;
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old))?;
        }
        Ok(())
    }
}

/// (VmHWM, VmRSS) of a process, in KiB.
pub(super) fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// The sum of a metric's samples in Karo's `/metrics`.
pub(super) async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Result<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// CPU seconds (user + system) a process has used so far.
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}
