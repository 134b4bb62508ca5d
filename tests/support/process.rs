//! Child processes and temp dirs that cannot outlive the test binary.
//!
//! Three layers, because the test harness never drops statics and a test binary can be
//! killed outright:
//! - every child is spawned with `PR_SET_PDEATHSIG = SIGKILL` from one spawner thread
//!   that lives as long as the process (the signal fires when the *thread* that forked
//!   exits, and test threads end early);
//! - owned handles (`Proc`, `TestDir`) kill, reap and remove in `Drop`, which also runs
//!   when a test panics;
//! - an `atexit` hook kills what is still registered (the shared control plane lives in
//!   a static) and removes its dirs; dirs of test binaries that died without running
//!   it are removed by the next test binary that starts (`remove_stale_dirs`).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, Once, OnceLock, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Pids of live children and paths of live temp dirs, for the `atexit` hook.
static LIVE_PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static LIVE_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
static INIT: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs once per test binary: registers the exit hook and removes dirs left behind by
/// test binaries that no longer exist.
fn init() {
    INIT.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
        remove_stale_dirs();
    });
}

extern "C" fn cleanup_at_exit() {
    // Never unwind across the C boundary.
    let _ = std::panic::catch_unwind(|| {
        let pids: Vec<u32> = match LIVE_PIDS.try_lock() {
            Ok(g) => g.iter().copied().collect(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().iter().copied().collect(),
            Err(TryLockError::WouldBlock) => Vec::new(),
        };
        for pid in pids {
            // SAFETY: plain syscalls on a pid we spawned and have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
        }
        let dirs: Vec<PathBuf> = match LIVE_DIRS.try_lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().iter().cloned().collect(),
            Err(TryLockError::WouldBlock) => Vec::new(),
        };
        for dir in dirs {
            let _ = fs::remove_dir_all(dir);
        }
    });
}

/// Root of all test temp dirs: `$TMPDIR/karo-tests`.
pub fn tests_root() -> PathBuf {
    std::env::temp_dir().join("karo-tests")
}

/// Removes `<root>/<pid>-*` dirs whose process is gone.
pub fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(tests_root()) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !pid_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `pid` names a running (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// A temp dir `<root>/<pid>-<prefix>-<n>`, removed on drop (and at exit).
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> Result<TestDir> {
        init();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = tests_root().join(format!("{}-{prefix}-{n}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        lock(&LIVE_DIRS).insert(path.clone());
        Ok(TestDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        lock(&LIVE_DIRS).remove(&self.path);
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread, with `PR_SET_PDEATHSIG`.
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    init();
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("karo-test-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop (and the thread) never ends.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });

    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody will send the signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(spawner)
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    let child = reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))??;
    lock(&LIVE_PIDS).insert(child.id());
    Ok(child)
}

/// A long-running child whose stdout and stderr go to a log file. Killed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, appending its output to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        writeln!(out, "--- karo tests: starting {name}: {cmd:?}")?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawn(cmd).with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            status: None,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                self.status = Some(status);
                lock(&LIVE_PIDS).remove(&self.pid);
                Some(status)
            }
            _ => None,
        }
    }

    /// Whether the process has exited (or was killed).
    pub fn exited(&mut self) -> bool {
        self.try_exit_status();
        self.child.is_none()
    }

    /// An error carrying the log tail, if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if !self.exited() {
            return Ok(());
        }
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "killed".to_string(),
        };
        Err(anyhow!(
            "{} exited early ({status}); last lines of {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail(40)
        ))
    }

    /// Sends `signal`; a no-op once the process has been reaped.
    pub fn signal(&self, signal: libc::c_int) {
        if self.child.is_some() {
            // SAFETY: the pid is our unreaped child, so it cannot have been reused.
            unsafe {
                libc::kill(self.pid as libc::pid_t, signal);
            }
        }
    }

    /// Waits for the process to exit on its own, up to `timeout` (a hang guard).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            lock(&LIVE_PIDS).remove(&self.pid);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file (reads at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// Random lowercase hex, from the kernel.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("cannot read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a short-lived command to completion (through the spawner, so it dies with the
/// test binary too), feeding it `stdin` and capturing its output.
pub fn run_output(mut cmd: Command, stdin: Option<&[u8]>) -> io::Result<std::process::Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = spawn(cmd)?;
    let pid = child.id();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written from another thread so that a child filling its stdout pipe before
        // reading all of stdin cannot deadlock us.
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let output = child.wait_with_output();
    lock(&LIVE_PIDS).remove(&pid);
    output
}
