//! Karo's benchmarks (issue 8): `make bench`, or
//! `cargo bench --bench karo_bench -- [all|pure|cluster|large|scale|p99]`.
//!
//! Measures, never asserts a time: every Karo figure is printed next to a baseline
//! measured in the same run, with their ratio, in a Markdown table (also written to
//! `target/karo-bench/results.md`). Behaviour checks (the Job counts) make the run fail.
//!
//! - `pure`: (1) ingest and match, (6) render; in process, one thread.
//! - `cluster`: (2) alert to Job (three rounds per size), (2b) the API writes of a
//!   Run's life, (3) duplicate storm, (4) memory, (5) reload;
//!   against a local etcd + kube-apiserver and the release `karo` binary.
//! - `large`: (7) peak memory with many large notifications in parallel, with
//!   `http.maxConcurrentNotifications` at its default and raised; its own control
//!   plane and Karo processes.
//! - `scale`: (8) 1, 2 and 3 `karo run` replicas behind a round-robin TCP proxy:
//!   notifications to Jobs per second, exactly once under redelivery; its own
//!   control plane.
//! - `p99`: (9) webhook latency of 1000-alert notifications, one after another and
//!   two at once; its own control plane.
//! - `--profile ingest|render`: only the hot loop of (1) or (6), untimed, to run
//!   under `valgrind --tool=callgrind` (see BENCHMARKS.md).

mod alloc_count;
mod cluster;
mod pure;
mod report;
mod stats;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};

use report::Report;

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("karo-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    // `cargo bench` passes `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        match args.get(i + 1).map(String::as_str) {
            Some("ingest") => pure::profile_ingest()?,
            Some("render") => {
                let n = pure::profile_render_loop(20_000)?;
                println!("profiled {n} renders");
            }
            other => bail!("--profile ingest|render, not {other:?}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let what = args.first().map(String::as_str).unwrap_or("all");
    let (pure_part, cluster_part, large_part, scale_part, p99_part) = match what {
        "all" => (true, true, true, true, true),
        "pure" => (true, false, false, false, false),
        "cluster" => (false, true, false, false, false),
        "large" => (false, false, true, false, false),
        "scale" => (false, false, false, true, false),
        "p99" => (false, false, false, false, true),
        other => bail!("unknown part {other:?}: all, pure, cluster, large, scale or p99"),
    };

    let header = machine();
    eprintln!("karo-bench: {}", header.replace('\n', "\nkaro-bench: "));
    let begun = Instant::now();
    let mut report = Report::default();
    if pure_part {
        // Before the control plane starts, so that it does not compete for the CPU.
        pure::ingest_and_match(&mut report)?;
        pure::render(&mut report)?;
        pure::memory_of_reactions(&mut report)?;
    }
    if (cluster_part || large_part || scale_part || p99_part)
        && std::env::var_os("KARO_BENCH_BIN").is_none()
    {
        report.note(format!(
            "KARO_BENCH_BIN unset: measured the karo binary Cargo built for the bench ({}), not the `cargo build --release` one; `make bench` sets it",
            support::karo_bin().display()
        ));
    }
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    if cluster_part {
        runtime()?.block_on(cluster::run(&mut report))?;
    }
    if large_part {
        runtime()?.block_on(cluster::large_notifications(&mut report))?;
    }
    if scale_part {
        runtime()?.block_on(cluster::replicas(&mut report))?;
    }
    if p99_part {
        runtime()?.block_on(cluster::big_notification_latency(&mut report))?;
    }
    report.note(format!(
        "whole run: {:.0} s; load average at the end: {}",
        begun.elapsed().as_secs_f64(),
        loadavg()
    ));

    let table = report.markdown(&header);
    println!("\n{table}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/karo-bench");
    let out = dir.join("results.md");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&out, &table)) {
        eprintln!("karo-bench: cannot write {}: {e}", out.display());
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the figures were measured on.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "Karo benchmarks, {}, source {}: {cpus} CPUs ({model}), {:.1} GiB RAM, load average at the start {}; karo binary {}",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        source_version(),
        mem_kib as f64 / 1024.0 / 1024.0,
        loadavg(),
        cluster::karo_bin().display(),
    )
}

/// `git describe --always --dirty` of the tree the benchmark was built from.
fn source_version() -> String {
    std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
