//! Login throttling: after too many failed logins for one user name, further attempts are
//! refused (429) until the failures are old enough to be forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed-login bookkeeping, per lower-cased user name (known or not).
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// At most this many user names are remembered; the oldest entries go first.
const MAX_ENTRIES: usize = 100_000;

impl Throttle {
    /// A throttle refusing after `max_failures` failures within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Throttle {
        Throttle {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `username` is locked out now.
    pub fn check(&self, username: &str) -> Result<(), u64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&username.to_lowercase()) {
            Some((count, first)) if *count >= self.max_failures => {
                let left = self.window.saturating_sub(first.elapsed());
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs().max(1))
                }
            }
            _ => Ok(()),
        }
    }

    /// Records a failed login for `username`.
    pub fn failed(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            let window = self.window;
            map.retain(|_, (_, first)| first.elapsed() < window);
        }
        let entry = map
            .entry(username.to_lowercase())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Forgets the failures of `username` after a successful login.
    pub fn succeeded(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_the_limit_and_forgets_after_the_window() {
        let t = Throttle::new(2, Duration::from_millis(200));
        assert!(t.check("Admin").is_ok());
        t.failed("admin");
        assert!(t.check("admin").is_ok());
        t.failed("ADMIN");
        assert!(t.check("admin").is_err());
        assert!(t.check("other").is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("admin").is_ok());
        t.failed("admin");
        assert!(
            t.check("admin").is_ok(),
            "the count restarted after the window"
        );
        t.succeeded("admin");
        t.failed("admin");
        assert!(t.check("admin").is_ok());
    }
}
