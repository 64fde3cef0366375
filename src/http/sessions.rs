//! Web sessions: a random 256-bit token in a cookie names a signed-in
//! user; a second random token guards state-changing requests (CSRF).
//! Sessions end on sign-out or after `--web-idle` without a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::users::User;

/// Sessions held at once; beyond that, expired ones are dropped, then
/// [`Refused::Full`].
const MAX_SESSIONS: usize = 100_000;

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
    /// The table is full of live sessions (answered `BUSY`).
    Full,
    /// The system gave no randomness for a token (`INTERNAL`).
    NoRandomness,
}

struct Entry {
    session: Session,
    last: Instant,
}

/// Every live session.
pub struct Sessions {
    table: Mutex<HashMap<String, Entry>>,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }
    }
}

impl Sessions {
    /// Starts a session for `user`.
    ///
    /// # Errors
    /// [`Refused`]: no randomness, or a table full of live sessions.
    pub fn create(&self, user: Arc<User>, idle: Duration) -> Result<Session, Refused> {
        let session = Session {
            token: self.token()?,
            user,
            csrf: self.token()?,
        };
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, e| now - e.last < idle);
            if table.len() >= MAX_SESSIONS {
                return Err(Refused::Full);
            }
        }
        table.insert(
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
        let entry = table.get_mut(token)?;
        if now - entry.last >= idle {
            table.remove(token);
            return None;
        }
        entry.last = now;
        Some(entry.session.clone())
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
}
