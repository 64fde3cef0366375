//! Failed-login limits per user name and per peer address (`RATE_LIMITED`).
//!
//! A fixed window per key: after `max` failures within `window`, further
//! attempts are refused until the window that started with the first
//! failure has passed. Refusing costs no hashing and no sleeping, so an
//! attacker slows down nobody but themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per user name within a window.
pub const MAX_PER_USER: u32 = 5;
/// Failures allowed per peer address within a window.
pub const MAX_PER_PEER: u32 = 20;
/// Length of a window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked keys, expired entries are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Counters of recent failed logins.
#[derive(Default)]
pub struct RateLimiter {
    users: Mutex<HashMap<String, Window>>,
    peers: Mutex<HashMap<String, Window>>,
}

impl RateLimiter {
    /// Whether a login for `user` from `peer` must be refused now.
    pub fn is_blocked(&self, user: &str, peer: &str) -> bool {
        let now = Instant::now();
        over(&self.users, user, MAX_PER_USER, now) || over(&self.peers, peer, MAX_PER_PEER, now)
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, peer: &str) {
        let now = Instant::now();
        bump(&self.users, user, now);
        bump(&self.peers, peer, now);
    }

    /// Forgets a user's failures after a successful login.
    pub fn succeeded(&self, user: &str) {
        lock(&self.users).remove(user);
    }
}

fn lock(m: &Mutex<HashMap<String, Window>>) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
    // Counters stay consistent whatever panicked: each update is one insert.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn over(m: &Mutex<HashMap<String, Window>>, key: &str, max: u32, now: Instant) -> bool {
    lock(m)
        .get(key)
        .is_some_and(|w| now.duration_since(w.start) < WINDOW && w.failures >= max)
}

fn bump(m: &Mutex<HashMap<String, Window>>, key: &str, now: Instant) {
    let mut map = lock(m);
    if map.len() >= SWEEP_AT {
        map.retain(|_, w| now.duration_since(w.start) < WINDOW);
    }
    let w = map.entry(key.to_string()).or_insert(Window {
        start: now,
        failures: 0,
    });
    if now.duration_since(w.start) >= WINDOW {
        *w = Window {
            start: now,
            failures: 0,
        };
    }
    w.failures += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_a_user_after_max_failures_but_not_others() {
        let r = RateLimiter::default();
        for i in 0..MAX_PER_USER {
            assert!(!r.is_blocked("alice", &format!("peer{i}")));
            r.failed("alice", &format!("peer{i}"));
        }
        assert!(r.is_blocked("alice", "fresh-peer"));
        assert!(!r.is_blocked("bob", "peer0"));
        r.succeeded("alice");
        assert!(!r.is_blocked("alice", "fresh-peer"));
    }

    #[test]
    fn blocks_an_address_trying_many_names() {
        let r = RateLimiter::default();
        for i in 0..MAX_PER_PEER {
            r.failed(&format!("user{i}"), "10.0.0.1");
        }
        assert!(r.is_blocked("someone-new", "10.0.0.1"));
        assert!(!r.is_blocked("someone-new", "10.0.0.2"));
    }
}
