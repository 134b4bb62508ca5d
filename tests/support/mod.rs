//! The local platform Karo's integration tests run against: etcd and kube-apiserver,
//! Alertmanager, and the `karo` binary, all on loopback. See `/TESTING.md` and
//! `tests/platform/setup.sh`.
//!
//! Every process started here dies with the test that owns it (on drop, panics
//! included) and, at the latest, with the test binary (`process` explains how).

// Each test binary uses part of this module.
#![allow(dead_code, unused_imports)]

pub mod alertmanager;
pub mod bins;
pub mod control_plane;
pub mod karo;
pub mod process;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

pub use alertmanager::{webhook_config, Alertmanager};
pub use control_plane::ControlPlane;
pub use karo::KaroProcess;
pub use process::{free_port, pid_alive, Proc, TestDir};

/// The `karo` binary Cargo built for this test run.
pub fn karo_bin() -> PathBuf {
    bins::karo_bin()
}

/// Polls `check` until it returns true. `timeout` only guards against hangs: a test
/// never asserts how fast something happened.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it returns `Some`, and returns that value.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("condition still false after {timeout:?} (hang guard)");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
