//! Write locks on paths (WebDAV `LOCK`, RFC 4918 §6–7), honoured by every
//! front end: a locked path can be changed only by a request that submits
//! the lock's token, which a protocol-v1 or page request never does, so
//! for them a lock is `LOCKED` until it is released or times out.
//!
//! Locks live in memory, per user, each with a bounded timeout (at most
//! [`MAX_TIMEOUT`]): a lock whose client went away ends by itself and
//! never blocks anyone for long. A lock covers its path, and with depth
//! infinity everything below it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;

/// Longest timeout a lock may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The timeout of a lock that asks for none (or for `Infinite`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Locks one user may hold at once.
pub const MAX_PER_USER: usize = 1024;

/// One lock.
#[derive(Debug, Clone)]
pub struct Lock {
    /// `opaquelocktoken:…`, the name the client submits.
    pub token: String,
    /// The path it was taken on (`""`: the root).
    pub path: String,
    /// Depth infinity (else 0).
    pub deep: bool,
    /// A shared lock (else exclusive).
    pub shared: bool,
    /// The client's `<owner>` element, as XML to send back.
    pub owner: String,
    pub timeout: Duration,
    expires: Instant,
}

impl Lock {
    /// Seconds left before it ends.
    pub fn seconds_left(&self) -> u64 {
        self.expires
            .saturating_duration_since(Instant::now())
            .as_secs()
    }

    /// Whether this lock covers `path`.
    pub fn covers(&self, path: &str) -> bool {
        self.path == path || self.deep && is_under(path, &self.path)
    }
}

/// Whether `path` is strictly inside the folder `folder` (`""`: the root).
pub fn is_under(path: &str, folder: &str) -> bool {
    if folder.is_empty() {
        return !path.is_empty();
    }
    path.len() > folder.len() && path.starts_with(folder) && path.as_bytes()[folder.len()] == b'/'
}

/// Whether `path` is `folder` or inside it.
pub fn is_within(path: &str, folder: &str) -> bool {
    path == folder || is_under(path, folder)
}

/// Every user's locks.
#[derive(Default)]
pub struct Locks {
    table: Mutex<HashMap<String, Vec<Lock>>>,
}

/// What a new lock asks for.
pub struct Wanted {
    pub path: String,
    pub deep: bool,
    pub shared: bool,
    pub owner: String,
    pub timeout: Duration,
}

impl Locks {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Vec<Lock>) -> T) -> T {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let locks = table.entry(key.to_string()).or_default();
        locks.retain(|l| l.expires > now);
        let out = f(locks);
        if locks.is_empty() {
            table.remove(key);
        }
        out
    }

    /// Takes a new lock.
    ///
    /// # Errors
    /// `LOCKED` if it conflicts with a lock held (an exclusive one on
    /// either side covering the other's path), `BUSY` past
    /// [`MAX_PER_USER`], `INTERNAL` without randomness.
    pub fn lock(&self, key: &str, wanted: Wanted) -> Result<Lock, Error> {
        let token = new_token()?;
        self.with(key, |locks| {
            let clash = locks.iter().any(|l| {
                let overlap = l.covers(&wanted.path)
                    || wanted.deep && is_under(&l.path, &wanted.path)
                    || l.path == wanted.path;
                overlap && !(l.shared && wanted.shared)
            });
            if clash {
                return Err(Error::Locked);
            }
            if locks.len() >= MAX_PER_USER {
                return Err(Error::Busy("too many locks held".into()));
            }
            let timeout = wanted.timeout.min(MAX_TIMEOUT);
            let lock = Lock {
                token,
                path: wanted.path,
                deep: wanted.deep,
                shared: wanted.shared,
                owner: wanted.owner,
                timeout,
                expires: Instant::now() + timeout,
            };
            locks.push(lock.clone());
            Ok(lock)
        })
    }

    /// Refreshes the lock `token` that covers `path`, for `timeout`.
    pub fn refresh(&self, key: &str, path: &str, token: &str, timeout: Duration) -> Option<Lock> {
        self.with(key, |locks| {
            let l = locks
                .iter_mut()
                .find(|l| l.token == token && l.covers(path))?;
            l.timeout = timeout.min(MAX_TIMEOUT);
            l.expires = Instant::now() + l.timeout;
            Some(l.clone())
        })
    }

    /// Releases the lock `token` covering `path`; whether there was one.
    pub fn unlock(&self, key: &str, path: &str, token: &str) -> bool {
        self.with(key, |locks| {
            let before = locks.len();
            locks.retain(|l| !(l.token == token && l.covers(path)));
            locks.len() != before
        })
    }

    /// The locks that cover `path`.
    pub fn covering(&self, key: &str, path: &str) -> Vec<Lock> {
        self.with(key, |locks| {
            locks.iter().filter(|l| l.covers(path)).cloned().collect()
        })
    }

    /// Whether a lock with `token` covers `path`.
    pub fn holds(&self, key: &str, path: &str, token: &str) -> bool {
        self.with(key, |locks| {
            locks.iter().any(|l| l.token == token && l.covers(path))
        })
    }

    /// Checks that a change to `path` may go ahead: every lock covering
    /// it, and with `subtree` every lock inside it, is one whose token is
    /// among `tokens`.
    ///
    /// # Errors
    /// `LOCKED` otherwise.
    pub fn check(
        &self,
        key: &str,
        path: &str,
        subtree: bool,
        tokens: &[String],
    ) -> Result<(), Error> {
        self.with(key, |locks| {
            let submitted = |l: &Lock| tokens.contains(&l.token);
            let hit = |l: &&Lock| l.covers(path) || subtree && is_under(&l.path, path);
            // Every exclusive lock needs its token; of shared locks on the
            // same resources, one token is enough (RFC 4918 §7.1).
            let exclusive_ok = locks
                .iter()
                .filter(hit)
                .filter(|l| !l.shared)
                .all(submitted);
            let mut shared = locks.iter().filter(hit).filter(|l| l.shared).peekable();
            let shared_ok = shared.peek().is_none() || shared.any(submitted);
            if exclusive_ok && shared_ok {
                Ok(())
            } else {
                Err(Error::Locked)
            }
        })
    }

    /// Forgets the locks on `path` and inside it (it was deleted or moved
    /// away: locks do not follow a resource, RFC 4918 §7.5).
    pub fn forget(&self, key: &str, path: &str) {
        self.with(key, |locks| locks.retain(|l| !is_within(&l.path, path)));
    }

    /// Forgets all of a user's locks (the account was removed).
    pub fn forget_user(&self, key: &str) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.remove(key);
    }
}

/// A new random lock token (RFC 4918 §6.5 `opaquelocktoken:` with a UUID
/// of random bits).
fn new_token() -> Result<String, Error> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Internal("no randomness for a lock token".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "opaquelocktoken:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(path: &str, deep: bool, shared: bool) -> Wanted {
        Wanted {
            path: path.into(),
            deep,
            shared,
            owner: String::new(),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn exclusive_locks_clash_shared_ones_do_not() {
        let l = Locks::default();
        let a = l.lock("u", want("a", true, false)).unwrap();
        assert!(matches!(
            l.lock("u", want("a/b", false, false)),
            Err(Error::Locked)
        ));
        assert!(matches!(
            l.lock("u", want("", true, true)),
            Err(Error::Locked)
        ));
        assert!(l.lock("v", want("a", true, false)).is_ok(), "users apart");
        assert!(l.lock("u", want("ab", false, false)).is_ok(), "a sibling");
        assert!(l.unlock("u", "a/x", &a.token));
        let s1 = l.lock("u", want("f", false, true)).unwrap();
        let s2 = l.lock("u", want("f", false, true)).unwrap();
        assert_ne!(s1.token, s2.token);
        assert!(s1.token.starts_with("opaquelocktoken:"));
        assert!(matches!(
            l.lock("u", want("f", false, false)),
            Err(Error::Locked)
        ));
    }

    #[test]
    fn changes_need_every_covering_token() {
        let l = Locks::default();
        let a = l.lock("u", want("d", true, false)).unwrap();
        assert!(l.check("u", "d/x", false, &[]).is_err());
        assert!(l
            .check("u", "d/x", false, std::slice::from_ref(&a.token))
            .is_ok());
        assert!(l.check("u", "", false, &[]).is_ok());
        assert!(l.check("u", "", true, &[]).is_err(), "a subtree holds it");
        assert!(l.check("u", "dd", false, &[]).is_ok());
        l.forget("u", "d");
        assert!(l.check("u", "d/x", false, &[]).is_ok());
    }

    #[test]
    fn timeouts_are_bounded_and_end_locks() {
        let l = Locks::default();
        let mut w = want("a", false, false);
        w.timeout = Duration::from_secs(1 << 40);
        assert_eq!(l.lock("u", w).unwrap().timeout, MAX_TIMEOUT);
        let mut w = want("b", false, false);
        w.timeout = Duration::ZERO;
        l.lock("u", w).unwrap();
        assert!(l.check("u", "b", false, &[]).is_ok(), "expired at once");
    }
}
