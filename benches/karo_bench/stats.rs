//! Small measuring helpers: throughput loops, medians, percentiles, formatting.

use std::time::{Duration, Instant};

/// Runs `f` (which processes some units and returns how many) again and again for
/// at least `budget`, at least once; returns units per second.
pub fn throughput(budget: Duration, mut f: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut units = 0u64;
    loop {
        units += f();
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return units as f64 / elapsed.as_secs_f64();
        }
    }
}

/// The median of `values` (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted durations.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `123 456/s`, with thin grouping so that columns stay readable.
pub fn rate(per_second: f64) -> String {
    format!("{}/s", group(per_second.round() as u64))
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `12.3 ms`, `1.23 s`, `456 µs`.
pub fn dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// `3.4x`
pub fn ratio(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}x")
    } else if x >= 10.0 {
        format!("{x:.1}x")
    } else {
        format!("{x:.2}x")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn yes_no(met: bool) -> String {
    if met { "yes" } else { "**no**" }.to_string()
}

/// (median, min, max) of `values`.
pub fn median_range(values: &[f64]) -> (f64, f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(values), min, max)
}

/// `8.56 s (8.10–9.20 s)`: the median of `values` and their range.
pub fn dur_range(values: &[Duration]) -> String {
    let secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    let (m, lo, hi) = median_range(&secs);
    let d = |s: f64| dur(Duration::from_secs_f64(s.max(0.0)));
    format!("{} ({}–{})", d(m), d(lo), d(hi))
}

/// `82/s (75–90/s)`: the median rate and its range.
pub fn rate_range(per_second: &[f64]) -> String {
    let (m, lo, hi) = median_range(per_second);
    format!("{} ({}–{})", rate(m), group(lo.round() as u64), rate(hi))
}

/// `2.16x (2.01–2.40x)`: the median ratio and its range.
pub fn ratio_range(values: &[f64]) -> String {
    let (m, lo, hi) = median_range(values);
    format!(
        "{} ({}–{})",
        ratio(m),
        ratio(lo).trim_end_matches('x'),
        ratio(hi)
    )
}
