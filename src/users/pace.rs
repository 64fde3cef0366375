//! The pace of logins that get in: a token bucket per user and per
//! address (issue 16, "logins drain the hasher").
//!
//! Failed logins have their own limits (`ratelimit`); these bound the
//! right ones, which cost the same hash. A user's bucket holds `burst`
//! tokens and gains `rate` a second; an address's holds four times as
//! many and fills four times as fast, since an office may log in through
//! one address. A login takes a token from both before it hashes, or
//! neither. A login that then fails gives the user's token back, so
//! that a stranger's guesses never spend an owner's logins; the
//! address's stays spent (the stranger's own).
//!
//! Nothing here waits: [`Pace::take`] says how long until both buckets
//! hold a token, and the login queue (`server::logins`) decides whether
//! to wait that long.
//!
//! The buckets are each server's own, also with `--db`: they bound the
//! hashing one server does, which is its own CPU and memory, so servers
//! sharing a database do not share them (the failure limits, which count
//! guesses, are shared: see `ratelimit`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Logins one user may make at once by default (`serve --login-burst`).
pub const DEFAULT_BURST: u32 = 10;
/// Logins a second one user may make after a burst by default
/// (`serve --login-rate`).
pub const DEFAULT_RATE: f64 = 1.0;
/// How many times a user's bucket an address's holds (and fills by).
pub const ADDRESS_SHARE: u32 = 4;
/// Above this many buckets, full ones (nobody used lately) are dropped.
const SWEEP_AT: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A user's canonical name (or, for a name that is no valid name, what
    /// the failure limits count it by).
    User(String),
    /// An address, IPv6 by its /64.
    Address(String),
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets of logins.
pub struct Pace {
    buckets: Mutex<HashMap<Key, Bucket>>,
    burst: f64,
    /// Tokens a second (a user's).
    rate: f64,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::new(DEFAULT_BURST, DEFAULT_RATE)
    }
}

impl Pace {
    /// Buckets of `burst` tokens gaining `rate` a second (an address's:
    /// [`ADDRESS_SHARE`] times both). A `rate` of 0 never refills.
    pub fn new(burst: u32, rate: f64) -> Pace {
        Pace {
            buckets: Mutex::default(),
            burst: f64::from(burst.max(1)),
            rate: rate.max(0.0),
        }
    }

    fn size(&self, key: &Key) -> (f64, f64) {
        match key {
            Key::User(_) => (self.burst, self.rate),
            Key::Address(_) => {
                let share = f64::from(ADDRESS_SHARE);
                (self.burst * share, self.rate * share)
            }
        }
    }

    /// Takes a token for `user` and one for `address` (an address key:
    /// IPv4, or an IPv6 /64), or neither.
    ///
    /// # Errors
    /// How long until both buckets hold one, and whether the address's is
    /// short.
    pub fn take(&self, user: &str, address: &str) -> Result<Pass<'_>, Short> {
        let keys = [
            Key::User(user.to_string()),
            Key::Address(address.to_string()),
        ];
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|k, b| refilled(*b, self.size(k), now) < self.size(k).0);
        }
        let mut wait = Duration::ZERO;
        let mut address_short = false;
        for key in &keys {
            let (burst, rate) = self.size(key);
            let tokens = map
                .get(key)
                .map_or(burst, |b| refilled(*b, (burst, rate), now));
            if tokens < 1.0 {
                let need = if rate > 0.0 {
                    Duration::try_from_secs_f64((1.0 - tokens) / rate).unwrap_or(Duration::MAX)
                } else {
                    Duration::MAX
                };
                wait = wait.max(need);
                address_short |= matches!(key, Key::Address(_));
            }
        }
        if wait > Duration::ZERO {
            return Err(Short {
                wait,
                address: address_short,
            });
        }
        for key in &keys {
            let (burst, rate) = self.size(key);
            let tokens = map
                .get(key)
                .map_or(burst, |b| refilled(*b, (burst, rate), now));
            map.insert(
                key.clone(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        let [user, _] = keys;
        Ok(Pass {
            pace: self,
            user: Some(user),
        })
    }

    fn give_back(&self, key: &Key) {
        let now = Instant::now();
        let size = self.size(key);
        let mut map = self.lock();
        if let Some(b) = map.get_mut(key) {
            b.tokens = (refilled(*b, size, now) + 1.0).min(size.0);
            b.at = now;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Bucket>> {
        // Each update is a whole insert: nothing is left half-done.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a login may not go yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Short {
    /// Until both buckets hold a token (`Duration::MAX`: never).
    pub wait: Duration,
    /// The address's bucket is short (so is every login from it).
    pub address: bool,
}

/// The tokens `b` holds at `now`.
fn refilled(b: Bucket, (burst, rate): (f64, f64), now: Instant) -> f64 {
    let gained = now.saturating_duration_since(b.at).as_secs_f64() * rate;
    (b.tokens + gained).min(burst)
}

/// A login's tokens. Dropped without [`Pass::spend`] (the login failed,
/// or never hashed), it gives the user's token back.
pub struct Pass<'a> {
    pace: &'a Pace,
    user: Option<Key>,
}

impl Pass<'_> {
    /// The login got in: its tokens stay spent.
    pub fn spend(mut self) {
        self.user = None;
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.user.take() {
            self.pace.give_back(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_a_burst_then_waits_for_the_rate() {
        let p = Pace::new(3, 1.0);
        for _ in 0..3 {
            p.take("alice", "10.0.0.1").unwrap().spend();
        }
        let short = p.take("alice", "10.0.0.2").err().unwrap();
        assert!(short.wait > Duration::ZERO && short.wait <= Duration::from_secs(1));
        assert!(!short.address);
        // Another user from the same address is not held up by alice...
        p.take("bob", "10.0.0.1").unwrap().spend();
    }

    #[test]
    fn an_address_gets_its_share_for_many_users() {
        let p = Pace::new(2, 0.0);
        for i in 0..2 * ADDRESS_SHARE {
            p.take(&format!("user{i}"), "10.0.0.1").unwrap().spend();
        }
        let short = p.take("one-more", "10.0.0.1").err().unwrap();
        assert_eq!(short.wait, Duration::MAX);
        assert!(short.address);
        p.take("one-more", "10.0.0.2").unwrap().spend();
    }

    #[test]
    fn a_failed_login_gives_the_users_token_back_but_not_the_addresss() {
        let p = Pace::new(1, 0.0);
        for _ in 0..ADDRESS_SHARE - 1 {
            drop(p.take("alice", "10.0.0.9").unwrap());
        }
        // The guesses spent nothing of alice's...
        p.take("alice", "10.0.0.1").unwrap().spend();
        assert!(p.take("alice", "10.0.0.2").is_err());
        // ...and the guessing address has one token of its four left.
        p.take("bob", "10.0.0.9").unwrap().spend();
        assert!(p.take("carol", "10.0.0.9").is_err());
    }

    #[test]
    fn refused_takes_nothing() {
        let p = Pace::new(1, 0.0);
        p.take("alice", "10.0.0.1").unwrap().spend();
        // Refused for alice's bucket: the address keeps its tokens.
        for _ in 0..ADDRESS_SHARE {
            assert!(p.take("alice", "10.0.0.2").is_err());
        }
        for i in 0..ADDRESS_SHARE {
            p.take(&format!("u{i}"), "10.0.0.2").unwrap().spend();
        }
    }
}
