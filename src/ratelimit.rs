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
//!
//! With `--db` the counters live in the `login_limits` table, shared by
//! every server on the database, with the same limits and windows: each
//! slot is taken, and each settled, by one `INSERT … ON CONFLICT … DO
//! UPDATE` (or `UPDATE`) per key, so guesses spread over several servers
//! count once. Windows run on the database's clock. An attempt waiting
//! for slots in flight on another server asks again every [`POLL`]. Slots
//! a crashed server held are dropped when their window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::db::{Pool, NOW_MS};
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
/// Above this many tracked keys, expired entries are swept (with
/// `--db`: every this many attempts on this server).
const SWEEP_AT: usize = 10_000;
/// With `--db`: how often an attempt waiting for slots in flight asks the
/// database again (slots settled on this server wake it at once).
pub const POLL: Duration = Duration::from_millis(100);

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

/// Why no slot was taken.
enum Refusal {
    /// A limit is reached by counted attempts: the window ends in this.
    Over(Duration),
    /// The attempts in flight did not settle in time.
    Timeout,
    /// The database failed.
    Failed(Error),
}

/// Counters of recent attempts.
pub struct RateLimiter {
    /// With `--db`: the counters are there, and `windows` is unused.
    db: Option<Pool>,
    /// Attempts begun with `--db`, to sweep the table now and then.
    attempts: AtomicUsize,
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
            db: None,
            attempts: AtomicUsize::new(0),
            windows: Mutex::default(),
            settled: Condvar::new(),
            waiting: AtomicUsize::new(0),
            register_max: DEFAULT_REGISTER_LIMIT,
        }
    }
}

impl RateLimiter {
    /// Counters in the database of `pool`, shared by every server on it.
    pub fn with_db(pool: Pool) -> RateLimiter {
        RateLimiter {
            db: Some(pool),
            ..RateLimiter::default()
        }
    }

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
        self.reserve(keys, true).map_err(|refusal| match refusal {
            // Rounded up: "try again in 0 s" would be refused again.
            Refusal::Over(wait) => Error::RateLimited(wait.as_secs() + 1),
            Refusal::Timeout => Error::RateLimited(WINDOW.as_secs()),
            Refusal::Failed(e) => e,
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
            .map_err(|refusal| match refusal {
                Refusal::Failed(e) => e,
                _ => Error::RegisterLimited,
            })
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
    /// over its limit starts a new window.
    fn reserve(&self, keys: Vec<Key>, count_on_drop: bool) -> Result<Slot<'_>, Refusal> {
        let deadline = Instant::now() + MAX_WAIT;
        if let Some(pool) = &self.db {
            return self.reserve_db(pool, keys, count_on_drop, deadline);
        }
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
                    return Err(Refusal::Over(ends.saturating_duration_since(now)));
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
                return Err(Refusal::Timeout);
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

    /// [`RateLimiter::reserve`] on the database: a slot on each key in
    /// turn, by one conditional upsert; if one is refused, those taken are
    /// given back and the keys' rows say whether to wait or refuse.
    fn reserve_db(
        &self,
        pool: &Pool,
        keys: Vec<Key>,
        count_on_drop: bool,
        deadline: Instant,
    ) -> Result<Slot<'_>, Refusal> {
        let failed = |e: postgres::Error| Refusal::Failed(e.into());
        let mut conn = pool.get().map_err(|e| Refusal::Failed(e.into()))?;
        if self.attempts.fetch_add(1, Ordering::Relaxed) % SWEEP_AT == SWEEP_AT - 1 {
            let longest = millis(REGISTER_WINDOW.max(WINDOW));
            conn.execute(
                &format!("DELETE FROM login_limits WHERE window_start + $1 <= {NOW_MS}"),
                &[&longest],
            )
            .map_err(failed)?;
        }
        let take = format!(
            "INSERT INTO login_limits AS l (key, window_start, counted, in_flight)
             VALUES ($1, {NOW_MS}, 0, 1)
             ON CONFLICT (key) DO UPDATE SET
                 window_start = CASE WHEN l.window_start + $2 <= {NOW_MS}
                                     THEN {NOW_MS} ELSE l.window_start END,
                 counted = CASE WHEN l.window_start + $2 <= {NOW_MS}
                                THEN 0 ELSE l.counted END,
                 in_flight = CASE WHEN l.window_start + $2 <= {NOW_MS}
                                  THEN 1 ELSE l.in_flight + 1 END
             WHERE l.window_start + $2 <= {NOW_MS} OR l.counted + l.in_flight < $3
             RETURNING 1"
        );
        let names: Vec<String> = keys.iter().map(Key::db_name).collect();
        loop {
            let mut taken = 0;
            for (key, name) in keys.iter().zip(&names) {
                let max = i32::try_from(self.max(key)).unwrap_or(i32::MAX);
                let got = conn
                    .query_opt(&take, &[name, &millis(window(key)), &max])
                    .map_err(failed)?;
                if got.is_none() {
                    break;
                }
                taken += 1;
            }
            if taken == keys.len() {
                return Ok(Slot {
                    limiter: self,
                    keys,
                    count_on_drop,
                });
            }
            if taken > 0 {
                conn.execute(
                    "UPDATE login_limits SET in_flight = greatest(in_flight - 1, 0)
                     WHERE key = ANY($1)",
                    &[&&names[..taken]],
                )
                .map_err(failed)?;
                self.settled.notify_all();
            }
            let rows = conn
                .query(
                    &format!(
                        "SELECT key, counted, window_start - {NOW_MS} FROM login_limits
                         WHERE key = ANY($1)"
                    ),
                    &[&names],
                )
                .map_err(failed)?;
            for row in rows {
                let name: String = row.get(0);
                let counted: i32 = row.get(1);
                let since_start: i64 = row.get(2);
                let Some(key) = names.iter().position(|n| *n == name).map(|i| &keys[i]) else {
                    continue;
                };
                let left = millis(window(key)) + since_start;
                if left > 0 && u32::try_from(counted).unwrap_or(0) >= self.max(key) {
                    let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                    return Err(Refusal::Over(left));
                }
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(Refusal::Timeout);
            };
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let map = self.lock();
            drop(
                self.settled
                    .wait_timeout(map, left.min(POLL))
                    .unwrap_or_else(|p| p.into_inner()),
            );
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn settle(&self, keys: &[Key], counted: bool, forgive: bool) {
        if let Some(pool) = &self.db {
            if let Err(e) = settle_db(pool, keys, counted, forgive) {
                eprintln!("cannot settle a login attempt: {e}");
            }
            self.settled.notify_all();
            return;
        }
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

impl Key {
    /// The key's name in `login_limits`: a JSON array, so that no name or
    /// address (even one holding a NUL) can pass for another.
    fn db_name(&self) -> String {
        let parts: Vec<&str> = match self {
            Key::Peer(p) => vec!["peer", p],
            Key::User(u) => vec!["user", u],
            Key::UserPeer(u, p) => vec!["user-peer", u, p],
            Key::Register(p) => vec!["register", p],
        };
        serde_json::to_string(&parts).unwrap_or_default()
    }
}

/// [`RateLimiter::settle`] on the database: one `UPDATE` per key.
fn settle_db(pool: &Pool, keys: &[Key], counted: bool, forgive: bool) -> Result<(), Error> {
    let mut conn = pool.get()?;
    let settle = format!(
        "UPDATE login_limits SET
             window_start = CASE WHEN window_start + $2 <= {NOW_MS}
                                 THEN {NOW_MS} ELSE window_start END,
             counted = CASE WHEN $4 THEN 0
                            WHEN window_start + $2 <= {NOW_MS} THEN $3
                            ELSE counted + $3 END,
             in_flight = greatest(in_flight - 1, 0)
         WHERE key = $1"
    );
    for key in keys {
        let forgive = forgive && matches!(key, Key::UserPeer(..));
        conn.execute(
            &settle,
            &[
                &key.db_name(),
                &millis(window(key)),
                &i32::from(counted),
                &forgive,
            ],
        )?;
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

    /// Two limiters on one database, as two servers are.
    fn two_on_one_db(test: &str) -> Option<(crate::db::testing::TestDb, RateLimiter, RateLimiter)> {
        let db = crate::db::testing::TestDb::create(test)?;
        let a = RateLimiter::with_db(db.pool());
        let b = RateLimiter::with_db(db.pool());
        Some((db, a, b))
    }

    #[test]
    fn with_a_database_guesses_on_several_servers_count_once() {
        let Some((_db, a, b)) = two_on_one_db("guesses_on_several_servers") else {
            return;
        };
        for i in 0..MAX_PER_USER {
            let r = if i % 2 == 0 { &a } else { &b };
            fail(r, "alice", &format!("10.0.0.{i}"), false).unwrap();
        }
        for r in [&a, &b] {
            match fail(r, "alice", "10.0.1.1", false) {
                Err(Error::RateLimited(secs)) => assert!(secs > 0 && secs <= 61, "{secs}"),
                other => panic!("{other:?}"),
            }
        }
        let home = b.begin_login("alice", "10.9.9.9", true).unwrap();
        home.forgive();
        fail(&a, "bob", "10.0.0.0", false).unwrap();

        // The owner's success forgives the failures from its address.
        for _ in 0..MAX_PER_USER_PEER - 1 {
            fail(&a, "carol", "10.0.2.1", true).unwrap();
        }
        b.begin_login("carol", "10.0.2.1", true).unwrap().forgive();
        for _ in 0..MAX_PER_USER_PEER {
            fail(&b, "carol", "10.0.2.1", true).unwrap();
        }
        assert!(a.begin_login("carol", "10.0.2.1", true).is_err());
    }

    #[test]
    fn with_a_database_an_attempt_waits_for_slots_in_flight_elsewhere() {
        let Some((_db, a, b)) = two_on_one_db("waits_for_slots_in_flight") else {
            return;
        };
        let slots: Vec<_> = (0..MAX_PER_USER_PEER)
            .map(|_| a.begin_login("alice", "10.0.0.1", false).unwrap())
            .collect();
        thread::scope(|s| {
            let waiter = s.spawn(|| fail(&b, "alice", "10.0.0.1", false));
            until_waiting(&b, 1);
            drop(slots);
            assert!(matches!(waiter.join().unwrap(), Err(Error::RateLimited(_))));
        });
        // Right ones in flight on both let each other through.
        let n = 2 * MAX_PER_USER_PEER;
        let go = Barrier::new(n as usize);
        thread::scope(|s| {
            for i in 0..n {
                let (r, go) = (if i % 2 == 0 { &a } else { &b }, &go);
                s.spawn(move || {
                    go.wait();
                    r.begin_login("dave", "10.0.0.2", false).unwrap().forgive();
                });
            }
        });
    }

    #[test]
    fn with_a_database_registrations_count_across_servers() {
        let Some((_db, mut a, mut b)) = two_on_one_db("registrations_count_across") else {
            return;
        };
        a.set_register_limit(2);
        b.set_register_limit(2);
        drop(a.begin_register("10.0.0.1").unwrap());
        a.begin_register("10.0.0.1").unwrap().count();
        b.begin_register("10.0.0.1").unwrap().count();
        assert!(matches!(
            a.begin_register("10.0.0.1"),
            Err(Error::RegisterLimited)
        ));
        assert!(b.begin_register("2001:db8::1").is_ok());
    }

    #[test]
    fn keys_with_odd_bytes_stay_apart() {
        let a = Key::UserPeer("a\"b".into(), "c".into()).db_name();
        let b = Key::UserPeer("a".into(), "b\",\"c".into()).db_name();
        assert_ne!(a, b);
        assert!(!Key::User("x\0y".into()).db_name().contains('\0'));
    }
}
