//! A TCP proxy between Karo and the API server that a test can stall: while
//! stalled, no byte crosses it in either direction, on the connections it has and on
//! those it accepts meanwhile; released, everything held back flows on. TLS passes
//! through untouched (the test kubeconfigs skip verifying the API server's
//! certificate, so the proxy's port does not matter to it).
//!
//! It runs on a thread and runtime of its own, so that it keeps forwarding while a
//! test blocks its own runtime (waiting for a process to exit, for example); dropping
//! it stops that runtime and with it every connection.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::control_plane::ControlPlane;
use super::process::TestDir;

/// A proxy on `127.0.0.1:<free port>` in front of a control plane's API server.
pub struct FaultProxy {
    /// `true` while stalled.
    stalled: watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    kubeconfig: PathBuf,
    _dir: TestDir,
}

impl FaultProxy {
    /// Starts a proxy to `cp`'s API server, and writes a copy of `cp`'s (admin)
    /// kubeconfig whose server is the proxy (`kubeconfig`).
    pub fn in_front_of(cp: &ControlPlane) -> Result<FaultProxy> {
        let upstream: SocketAddr = cp
            .url()
            .strip_prefix("https://")
            .and_then(|authority| authority.parse().ok())
            .with_context(|| {
                format!(
                    "the API server's URL {} is not https://<ip>:<port>",
                    cp.url()
                )
            })?;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the proxy's runtime")?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let (stalled, stalled_rx) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = accept(listener, upstream, stalled_rx) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here drops every connection's task.
            })
            .context("starting the proxy's thread")?;

        let dir = TestDir::new("fault-proxy")?;
        let original = std::fs::read_to_string(cp.kubeconfig())?;
        let server = format!("server: {}\n", cp.url());
        anyhow::ensure!(
            original.contains(&server),
            "the control plane's kubeconfig names no `{}`",
            server.trim_end()
        );
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            original.replace(&server, &format!("server: https://{addr}\n")),
        )?;
        Ok(FaultProxy {
            stalled,
            stop: Some(stop),
            thread: Some(thread),
            kubeconfig,
            _dir: dir,
        })
    }

    /// The control plane's kubeconfig with the proxy as its server.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// From now on, no byte crosses the proxy until `release`.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards again, what was held back first.
    pub fn release(&self) {
        self.stalled.send_replace(false);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // Err: the thread has ended already.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, stalled: watch::Receiver<bool>) {
    loop {
        match listener.accept().await {
            Ok((downstream, _)) => {
                tokio::spawn(forward(downstream, upstream, stalled.clone()));
            }
            Err(e) => {
                // Out of file descriptors, for example: wait a little, go on.
                eprintln!("karo tests: the fault proxy cannot accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Joins `downstream` to a new connection to `upstream` until both sides have
/// closed, or either fails.
async fn forward(downstream: TcpStream, upstream: SocketAddr, stalled: watch::Receiver<bool>) {
    let upstream = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("karo tests: the fault proxy cannot reach {upstream}: {e}");
            return;
        }
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    // An error on either side ends both, as when the connection breaks.
    let _ = tokio::try_join!(
        pump(down_read, up_write, stalled.clone()),
        pump(up_read, down_write, stalled),
    );
}

/// Copies `from` to `to` whenever the proxy is not stalled; an end of stream is
/// passed on as one (a half close).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        released(&mut stalled).await?;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        // Bytes read as the stall began are held back too.
        released(&mut stalled).await?;
        to.write_all(&buf[..n]).await?;
    }
}

async fn released(stalled: &mut watch::Receiver<bool>) -> io::Result<()> {
    match stalled.wait_for(|stalled| !*stalled).await {
        Ok(_) => Ok(()),
        Err(_) => Err(io::Error::other("the fault proxy stopped")),
    }
}
