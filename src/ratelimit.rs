//! Guessing limits: failed logins per address, per (user name, address)
//! and per user name across addresses; successful registrations per
//! address (`RATE_LIMITED`, PROTOCOL.md "Limits").
//!
//! A fixed window per key: after `max` counted attempts within the
//! window, further attempts are refused until the window that started
//! with the first has passed. Refusing costs no hashing and no sleeping,
//! so an attacker slows down nobody but themselves.
//!
//! An attempt takes a [`Slot`] *before* it hashes, and every slot in
//! flight counts against each of its keys: while the attempts counted plus
//! those in flight reach a limit, the next attempt waits for one of them
//! to settle, and is refused as soon as the counted ones alone reach it.
//! So of N simultaneous wrong logins for one name, at most the limit are
//! ever checked, while N simultaneous right ones (a client opening eight
//! connections at once) all get through.
//!
//! The per-name limit across addresses is not applied to an address the
//! caller says the user logged in from recently (see `users::known`): a
//! stranger guessing a name locks out the stranger, never the owner.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Failed logins allowed per user name, across addresses, within a window.
pub const MAX_PER_USER: u32 = 5;
/// Failed logins allowed per (user name, address) within a window.
pub const MAX_PER_USER_PEER: u32 = 5;
/// Failed logins allowed per peer address within a window.
pub const MAX_PER_PEER: u32 = 20;
/// Length of a login window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Successful registrations allowed per address within [`REGISTER_WINDOW`]
/// by default (`serve --register-limit`).
pub const DEFAULT_REGISTER_LIMIT: u32 = 10;
/// Length of a registration window.
pub const REGISTER_WINDOW: Duration = Duration::from_secs(3600);
/// Longest an attempt waits for the attempts in flight before it.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Above this many tracked keys, expired entries are swept.
const SWEEP_AT: usize = 10_000;

/// What a counter counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// Failed logins from an address (IPv6: its /64).
    Peer(String),
    /// Failed logins for a user name, from anywhere.
    User(String),
    /// Failed logins for a user name from one address.
    UserPeer(String, String),
    /// Successful registrations from an address (IPv6: its /64).
    Register(String),
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    /// Attempts that counted in this window.
    counted: u32,
    /// Attempts holding a slot right now.
    in_flight: u32,
}

/// Counters of recent attempts.
pub struct RateLimiter {
    windows: Mutex<HashMap<Key, Window>>,
    /// Signalled whenever a slot settles.
    settled: Condvar,
    /// Attempts waiting for a slot right now.
    waiting: AtomicUsize,
    register_max: u32,
}

impl Default for RateLimiter {
    fn default() -> RateLimiter {
        RateLimiter {
            windows: Mutex::default(),
            settled: Condvar::new(),
            waiting: AtomicUsize::new(0),
            register_max: DEFAULT_REGISTER_LIMIT,
        }
    }
}

impl RateLimiter {
    /// Sets the successful registrations allowed per address per hour.
    pub fn set_register_limit(&mut self, max: u32) {
        self.register_max = max;
    }

    /// Takes a slot for a login as `user` from `peer`. `known`: `peer`
    /// logged in as `user` recently, so the per-name limit does not apply.
    /// Dropping the slot without [`Slot::forgive`] counts a failure.
    ///
    /// # Errors
    /// `RATE_LIMITED` if a limit is reached by failures alone, or not
    /// freed by the attempts in flight within a minute.
    pub fn begin_login(&self, user: &str, peer: &str, known: bool) -> Result<Slot<'_>, Error> {
        let mut keys = vec![
            Key::UserPeer(user.to_string(), peer.to_string()),
            Key::Peer(address_key(peer)),
        ];
        if !known {
            keys.push(Key::User(user.to_string()));
        }
        self.reserve(keys, true).map_err(|wait| {
            // Rounded up: "try again in 0 s" would be refused again.
            Error::RateLimited(wait.map_or(WINDOW.as_secs(), |w| w.as_secs() + 1))
        })
    }

    /// Takes a slot for a registration from `peer`; it counts only if
    /// [`Slot::count`] is called (the account was created).
    ///
    /// # Errors
    /// `RATE_LIMITED` (as [`Error::RegisterLimited`]) once the address has
    /// registered its share this hour.
    pub fn begin_register(&self, peer: &str) -> Result<Slot<'_>, Error> {
        self.reserve(vec![Key::Register(address_key(peer))], false)
            .map_err(|_| Error::RegisterLimited)
    }

    /// Attempts waiting for the attempts in flight before them.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn max(&self, key: &Key) -> u32 {
        match key {
            Key::Peer(_) => MAX_PER_PEER,
            Key::User(_) => MAX_PER_USER,
            Key::UserPeer(..) => MAX_PER_USER_PEER,
            Key::Register(_) => self.register_max,
        }
    }

    /// Takes a slot on every key, or says how long until the key that is
    /// over its limit starts a new window (`None`: the attempts in flight
    /// did not settle in time).
    fn reserve(&self, keys: Vec<Key>, count_on_drop: bool) -> Result<Slot<'_>, Option<Duration>> {
        let deadline = Instant::now() + MAX_WAIT;
        let mut map = self.lock();
        loop {
            let now = Instant::now();
            if map.len() >= SWEEP_AT {
                map.retain(|k, w| w.in_flight > 0 || now.duration_since(w.start) < window(k));
            }
            let mut full = false;
            for key in &keys {
                let w = current(&mut map, key, now);
                let max = self.max(key);
                if w.counted >= max {
                    let ends = w.start + window(key);
                    return Err(Some(ends.saturating_duration_since(now)));
                }
                full |= w.counted + w.in_flight >= max;
            }
            if !full {
                for key in &keys {
                    current(&mut map, key, now).in_flight += 1;
                }
                return Ok(Slot {
                    limiter: self,
                    keys,
                    count_on_drop,
                });
            }
            let Some(left) = deadline.checked_duration_since(now) else {
                return Err(None);
            };
            self.waiting.fetch_add(1, Ordering::SeqCst);
            map = self
                .settled
                .wait_timeout(map, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn settle(&self, keys: &[Key], counted: bool, forgive: bool) {
        let now = Instant::now();
        let mut map = self.lock();
        for key in keys {
            let w = current(&mut map, key, now);
            w.in_flight = w.in_flight.saturating_sub(1);
            if counted {
                w.counted += 1;
            }
            // The owner got in from here: their typos before do not count.
            if forgive && matches!(key, Key::UserPeer(..)) {
                w.counted = 0;
            }
        }
        drop(map);
        self.settled.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Window>> {
        // Counters stay consistent whatever panicked: each update is a few
        // integer changes with nothing fallible between them.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An attempt in flight; settles on drop.
pub struct Slot<'a> {
    limiter: &'a RateLimiter,
    keys: Vec<Key>,
    count_on_drop: bool,
}

impl Slot<'_> {
    /// Settles the attempt as one that counts (a successful registration).
    pub fn count(mut self) {
        self.count_on_drop = true;
    }

    /// Settles a login that succeeded: it does not count, and the failures
    /// of this name from this address are forgotten.
    pub fn forgive(mut self) {
        self.count_on_drop = false;
        self.limiter.settle(&self.keys, false, true);
        self.keys.clear();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            self.limiter.settle(&self.keys, self.count_on_drop, false);
        }
    }
}

fn window(key: &Key) -> Duration {
    match key {
        Key::Register(_) => REGISTER_WINDOW,
        _ => WINDOW,
    }
}

/// The key's window, restarted if it has expired.
fn current<'m>(map: &'m mut HashMap<Key, Window>, key: &Key, now: Instant) -> &'m mut Window {
    let w = map.entry(key.clone()).or_insert(Window {
        start: now,
        counted: 0,
        in_flight: 0,
    });
    if now.duration_since(w.start) >= window(key) {
        w.start = now;
        w.counted = 0;
    }
    w
}

/// The address an address limit counts by: an IPv4 address, or an IPv6
/// address's /64 (one host usually holds a whole /64).
pub(crate) fn address_key(peer: &str) -> String {
    match peer.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(String::new, |v4| v4.to_string()),
        _ => peer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;

    use super::*;

    fn fail(r: &RateLimiter, user: &str, peer: &str, known: bool) -> Result<(), Error> {
        r.begin_login(user, peer, known).map(drop)
    }

    #[test]
    fn blocks_a_name_after_max_failures_except_from_known_addresses() {
        let r = RateLimiter::default();
        for i in 0..MAX_PER_USER {
            fail(&r, "alice", &format!("10.0.0.{i}"), false).unwrap();
        }
        assert!(matches!(
            fail(&r, "alice", "10.0.1.1", false),
            Err(Error::RateLimited(_))
        ));
        // The owner's own address is not locked out by the others...
        let home = r.begin_login("alice", "10.9.9.9", true).unwrap();
        home.forgive();
        // ...and other names are not affected.
        fail(&r, "bob", "10.0.0.0", false).unwrap();
    }

    #[test]
    fn blocks_a_name_from_one_address_even_if_known() {
        let r = RateLimiter::default();
        for _ in 0..MAX_PER_USER_PEER {
            fail(&r, "alice", "10.0.0.1", true).unwrap();
        }
        assert!(r.begin_login("alice", "10.0.0.1", true).is_err());
        assert!(r.begin_login("alice", "10.0.0.2", true).is_ok());
    }

    #[test]
    fn blocks_an_address_trying_many_names() {
        let r = RateLimiter::default();
        for i in 0..MAX_PER_PEER {
            fail(&r, &format!("user{i}"), "10.0.0.1", false).unwrap();
        }
        assert!(r.begin_login("someone-new", "10.0.0.1", false).is_err());
        assert!(r.begin_login("someone-new", "10.0.0.2", false).is_ok());
        // An IPv6 host counts by its /64.
        for i in 0..MAX_PER_PEER {
            fail(
                &r,
                &format!("v6user{i}"),
                &format!("2001:db8::{i:x}"),
                false,
            )
            .unwrap();
        }
        assert!(r.begin_login("other", "2001:db8::ffff", false).is_err());
        assert!(r.begin_login("other", "2001:db8:0:1::1", false).is_ok());
    }

    /// Waits until `n` attempts are waiting for a slot.
    fn until_waiting(r: &RateLimiter, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.waiting() < n {
            assert!(Instant::now() < deadline, "nobody waited");
            thread::yield_now();
        }
    }

    /// Slots in flight count: with the limit reached by slots in flight, the
    /// next attempt waits, and is refused once they have all failed...
    #[test]
    fn attempts_in_flight_hold_their_slots() {
        let r = RateLimiter::default();
        let slots: Vec<_> = (0..MAX_PER_USER_PEER)
            .map(|_| r.begin_login("alice", "10.0.0.1", false).unwrap())
            .collect();
        thread::scope(|s| {
            let waiter = s.spawn(|| fail(&r, "alice", "10.0.0.1", false));
            until_waiting(&r, 1);
            drop(slots);
            assert!(matches!(waiter.join().unwrap(), Err(Error::RateLimited(_))));
        });
    }

    /// ...and gets its turn when one of them succeeds.
    #[test]
    fn a_success_in_flight_lets_a_waiting_attempt_in() {
        let r = RateLimiter::default();
        let mut slots: Vec<_> = (0..MAX_PER_USER_PEER)
            .map(|_| r.begin_login("alice", "10.0.0.1", false).unwrap())
            .collect();
        thread::scope(|s| {
            let waiter = s.spawn(|| r.begin_login("alice", "10.0.0.1", false).map(Slot::forgive));
            until_waiting(&r, 1);
            slots.pop().unwrap().forgive();
            assert!(waiter.join().unwrap().is_ok());
        });
        assert_eq!(r.waiting(), 0);
    }

    /// Right passwords in flight release their slots: all get through.
    #[test]
    fn successes_in_flight_let_the_next_through() {
        let r = RateLimiter::default();
        let n = 4 * MAX_PER_USER_PEER;
        let go = Barrier::new(n as usize);
        thread::scope(|s| {
            for _ in 0..n {
                s.spawn(|| {
                    go.wait();
                    r.begin_login("alice", "10.0.0.1", false).unwrap().forgive();
                });
            }
        });
    }

    #[test]
    fn registrations_count_only_when_they_succeed() {
        let mut r = RateLimiter::default();
        r.set_register_limit(2);
        drop(r.begin_register("10.0.0.1").unwrap());
        r.begin_register("10.0.0.1").unwrap().count();
        r.begin_register("10.0.0.1").unwrap().count();
        assert!(matches!(
            r.begin_register("10.0.0.1"),
            Err(Error::RegisterLimited)
        ));
        assert!(r.begin_register("10.0.0.2").is_ok());
    }
}
