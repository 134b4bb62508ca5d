//! The global circuit breaker for alert storms: at most `limits.maxJobsPerMinute`
//! Jobs created per minute by this process, over a sliding window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct RateLimiter {
    created: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// Takes one creation from the budget; `false` when the last minute used it
    /// up. `limit` 0 means unlimited.
    pub fn try_acquire(&self, limit: u32, now: Instant) -> bool {
        if limit == 0 {
            return true;
        }
        let mut created = match self.created.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        while created
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            created.pop_front();
        }
        if created.len() >= limit as usize {
            return false;
        }
        created.push_back(now);
        true
    }

    /// Gives back a creation that did not happen (the Job existed, or failed).
    pub fn release(&self, at: Instant) {
        let mut created = match self.created.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(pos) = created.iter().rposition(|t| *t == at) {
            created.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.try_acquire(3, t0));
        }
        assert!(!r.try_acquire(3, t0 + Duration::from_secs(30)));
        r.release(t0);
        assert!(r.try_acquire(3, t0 + Duration::from_secs(30)));
        assert!(!r.try_acquire(3, t0 + Duration::from_secs(59)));
        // The first two leave the window after a minute.
        assert!(r.try_acquire(3, t0 + Duration::from_secs(60)));
        assert!(r.try_acquire(3, t0 + Duration::from_secs(60)));
        assert!(!r.try_acquire(3, t0 + Duration::from_secs(61)));
        assert!(r.try_acquire(0, t0), "0 is unlimited");
    }
}
