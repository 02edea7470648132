//! A sliding-window limiter for sign-in attempts, so passwords cannot be guessed at speed.
//!
//! It is per process: with several replicas an attacker gets the limit once per replica, which
//! still bounds guessing to a handful of attempts a minute. Keys are kept in memory only while
//! they have recent failures.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per key within a window.
#[derive(Debug)]
pub struct Limiter {
    window: Duration,
    max_failures: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// Allows `max_failures` failures per key within `window`.
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            window,
            max_failures,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` if `key` is over the limit now, with how long until an attempt frees up.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(key) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            map.remove(key);
            return Ok(());
        }
        if times.len() >= self.max_failures {
            let oldest = times[0];
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }

    /// Records a failure for `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the memory an attacker can make us hold with many distinct keys.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        map.entry(key.to_owned()).or_default().push_back(now);
    }

    /// Forgets `key`'s failures, after a successful attempt.
    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_frees_up_after_the_window() {
        let l = Limiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check("k", t0).is_ok(), "attempt {i}");
            l.fail("k", t0);
        }
        assert_eq!(l.check("k", t0), Err(60));
        assert!(l.check("other", t0).is_ok());
        let after_the_window = t0 + Duration::from_secs(61);
        assert!(l.check("k", after_the_window).is_ok());
        l.fail("k", t0);
        l.clear("k");
        assert!(l.check("k", t0).is_ok());
    }
}
