//! Web sessions: a random 256-bit token in a cookie names a signed-in
//! user; a second random token guards state-changing requests (CSRF).
//! Sessions end on sign-out or after `--web-idle` without a request.
//!
//! One user holds at most [`MAX_PER_USER`] sessions: signing in once more
//! signs the oldest out, so one account cannot fill the table. When the
//! table is full anyway (many accounts), the session idle the longest
//! makes room: signing in is never refused for everyone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::users::User;

/// Sessions held at once; beyond that, expired ones are dropped, then the
/// one idle the longest.
const MAX_SESSIONS: usize = 100_000;
/// Sessions one user holds at once (browsers, devices, tabs signed in
/// anew); beyond that the oldest is signed out.
pub const MAX_PER_USER: usize = 32;

/// A signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub user: Arc<User>,
    /// The value `X-Netdisk-CSRF` must carry.
    pub csrf: String,
}

/// Why no session was made.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The system gave no randomness for a token (`INTERNAL`).
    NoRandomness,
}

struct Entry {
    session: Session,
    last: Instant,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<String, Entry>,
    /// Each user's tokens, oldest first.
    by_user: HashMap<String, VecDeque<String>>,
}

impl Table {
    fn remove(&mut self, token: &str) {
        if let Some(e) = self.sessions.remove(token) {
            let key = &e.session.user.key;
            if let Some(tokens) = self.by_user.get_mut(key) {
                tokens.retain(|t| t != token);
                if tokens.is_empty() {
                    self.by_user.remove(key);
                }
            }
        }
    }
}

/// Every live session.
pub struct Sessions {
    table: Mutex<Table>,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            table: Mutex::default(),
            rng: SystemRandom::new(),
        }
    }
}

impl Sessions {
    /// Starts a session for `user`, signing out that user's oldest if
    /// it holds [`MAX_PER_USER`] already.
    ///
    /// # Errors
    /// [`Refused`]: no randomness.
    pub fn create(&self, user: Arc<User>, idle: Duration) -> Result<Session, Refused> {
        let session = Session {
            token: self.token()?,
            user,
            csrf: self.token()?,
        };
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let key = session.user.key.clone();
        while table.by_user.get(&key).map_or(0, VecDeque::len) >= MAX_PER_USER {
            let oldest = table.by_user[&key][0].clone();
            table.remove(&oldest);
        }
        if table.sessions.len() >= MAX_SESSIONS {
            let expired: Vec<String> = table
                .sessions
                .iter()
                .filter(|(_, e)| now - e.last >= idle)
                .map(|(t, _)| t.clone())
                .collect();
            for t in expired {
                table.remove(&t);
            }
        }
        if table.sessions.len() >= MAX_SESSIONS {
            let stalest = table
                .sessions
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(t, _)| t.clone());
            if let Some(t) = stalest {
                table.remove(&t);
            }
        }
        table
            .by_user
            .entry(key)
            .or_default()
            .push_back(session.token.clone());
        table.sessions.insert(
            session.token.clone(),
            Entry {
                session: session.clone(),
                last: now,
            },
        );
        Ok(session)
    }

    /// The live session of `token`, which this request keeps alive; an
    /// expired one is removed.
    pub fn get(&self, token: &str, idle: Duration) -> Option<Session> {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = table.sessions.get_mut(token)?;
        if now - entry.last >= idle {
            table.remove(token);
            return None;
        }
        entry.last = now;
        Some(entry.session.clone())
    }

    /// Signs every session of the user `key` out (a new password, a
    /// removed account).
    pub fn remove_user(&self, key: &str) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for token in table.by_user.get(key).cloned().unwrap_or_default() {
            table.remove(&token);
        }
    }

    /// Ends a session.
    pub fn remove(&self, token: &str) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    fn token(&self) -> Result<String, Refused> {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| Refused::NoRandomness)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Arc<User> {
        Arc::new(User {
            name: "alice".into(),
            key: "alice".into(),
            password_hash: String::new(),
            created_at: 0,
            quota: None,
        })
    }

    #[test]
    fn sessions_live_while_used_and_end_when_idle_or_removed() {
        let s = Sessions::default();
        let idle = Duration::from_secs(60);
        let a = s.create(alice(), idle).unwrap();
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, a.csrf);
        assert_eq!(s.get(&a.token, idle).unwrap().user.name, "alice");
        assert!(s.get(&a.token, Duration::ZERO).is_none(), "expired");
        assert!(s.get(&a.token, idle).is_none(), "and gone");
        let b = s.create(alice(), idle).unwrap();
        s.remove(&b.token);
        assert!(s.get(&b.token, idle).is_none());
        assert!(same_token(&a.csrf, &a.csrf.clone()));
        assert!(!same_token(&a.csrf, &b.csrf));
        assert!(!same_token("ab", "abc"));
    }

    #[test]
    fn one_user_signing_in_again_and_again_signs_out_only_its_oldest() {
        let s = Sessions::default();
        let idle = Duration::from_secs(60);
        let mut bob = (*alice()).clone();
        bob.key = "bob".into();
        let bob = s.create(Arc::new(bob), idle).unwrap();
        let first = s.create(alice(), idle).unwrap();
        let second = s.create(alice(), idle).unwrap();
        for _ in 0..MAX_PER_USER * 10 {
            s.create(alice(), idle).unwrap();
        }
        assert!(s.get(&first.token, idle).is_none(), "the oldest went first");
        assert!(s.get(&second.token, idle).is_none());
        assert!(
            s.get(&bob.token, idle).is_some(),
            "another user keeps theirs"
        );
        let table = s.table.lock().unwrap();
        assert_eq!(table.sessions.len(), MAX_PER_USER + 1);
        assert_eq!(table.by_user["alice"].len(), MAX_PER_USER);
    }
}
