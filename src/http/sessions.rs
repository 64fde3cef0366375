//! Web sessions: a random 256-bit token in a cookie names a signed-in
//! user; a second random token guards state-changing requests (CSRF).
//! Sessions end on sign-out or after `--web-idle` without a request.
//!
//! One user holds at most [`MAX_PER_USER`] sessions: signing in once more
//! signs the oldest out, so one account cannot fill the table. When the
//! table is full anyway (many accounts), the session idle the longest
//! makes room: signing in is never refused for everyone.
//!
//! With `--db` the sessions are rows of `web_sessions`, shared by every
//! server, so a browser signed in on one is signed in on all. A row holds
//! the SHA-256 of the token, never the token: whoever reads the table
//! cannot sign in with it. Each request is one query; `last_seen` is
//! written only when it is older than [`refresh`] allows, so a busy page
//! does not write a row per request. The caps are the same; a session
//! goes with its account (`ON DELETE CASCADE`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::db::{Pool, NOW_MS};
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
    /// The database failed, or the account went meanwhile (`INTERNAL`).
    Database(String),
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
    /// With `--db`: the sessions are there, and `table` is unused.
    db: Option<Pool>,
    table: Mutex<Table>,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            db: None,
            table: Mutex::default(),
            rng: SystemRandom::new(),
        }
    }
}

impl Sessions {
    /// Sessions in the database of `pool`, shared by every server on it.
    pub fn with_db(pool: Pool) -> Sessions {
        Sessions {
            db: Some(pool),
            ..Sessions::default()
        }
    }

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
        if let Some(pool) = &self.db {
            create_db(pool, &session, idle).map_err(|e| Refused::Database(e.to_string()))?;
            return Ok(session);
        }
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
        if let Some(pool) = &self.db {
            return get_db(pool, token, idle).unwrap_or_else(|e| {
                eprintln!("cannot look up a web session: {e}");
                None
            });
        }
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
        if let Some(pool) = &self.db {
            let gone = pool
                .get()
                .map_err(crate::error::Error::from)
                .and_then(|mut c| {
                    c.execute(
                        "DELETE FROM web_sessions USING accounts
                     WHERE account = id AND key = $1",
                        &[&key],
                    )
                    .map_err(Into::into)
                });
            if let Err(e) = gone {
                eprintln!("cannot sign a user's web sessions out: {e}");
            }
            return;
        }
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for token in table.by_user.get(key).cloned().unwrap_or_default() {
            table.remove(&token);
        }
    }

    /// Ends a session.
    pub fn remove(&self, token: &str) {
        if let Some(pool) = &self.db {
            let gone = pool
                .get()
                .map_err(crate::error::Error::from)
                .and_then(|mut c| {
                    c.execute(
                        "DELETE FROM web_sessions WHERE token_hash = $1",
                        &[&hash(token)],
                    )
                    .map_err(Into::into)
                });
            if let Err(e) = gone {
                eprintln!("cannot end a web session: {e}");
            }
            return;
        }
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

/// What the table keeps of a token: its SHA-256.
fn hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How stale `last_seen` may be before a request writes it: a tenth of
/// the idle time, at most 5 s (a session may end that much early).
fn refresh(idle: Duration) -> Duration {
    (idle / 10).min(Duration::from_secs(5))
}

/// [`Sessions::create`] on the database, in one transaction: expired
/// sessions go, the stalest goes if the table is full, the new row goes
/// in, and the user keeps its newest [`MAX_PER_USER`].
fn create_db(pool: &Pool, s: &Session, idle: Duration) -> Result<(), crate::error::Error> {
    let mut conn = pool.get()?;
    let mut tx = conn.transaction()?;
    tx.execute(
        &format!("DELETE FROM web_sessions WHERE last_seen <= {NOW_MS} - $1"),
        &[&millis(idle)],
    )?;
    let max = i64::try_from(MAX_SESSIONS).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM web_sessions WHERE token_hash IN (
             SELECT token_hash FROM web_sessions ORDER BY last_seen, seq
             LIMIT greatest((SELECT count(*) FROM web_sessions) - $1 + 1, 0))",
        &[&max],
    )?;
    let row = tx.query_opt(
        &format!(
            "INSERT INTO web_sessions (token_hash, account, csrf, created_at, last_seen)
             SELECT $1, id, $3, {NOW_MS}, {NOW_MS} FROM accounts WHERE key = $2
             RETURNING account"
        ),
        &[&hash(&s.token), &s.user.key, &s.csrf],
    )?;
    let Some(row) = row else {
        return Err(crate::error::Error::Internal(
            "the account was removed while signing in".into(),
        ));
    };
    let account: i64 = row.get(0);
    let per_user = i64::try_from(MAX_PER_USER).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM web_sessions WHERE account = $1 AND seq NOT IN (
             SELECT seq FROM web_sessions WHERE account = $1 ORDER BY seq DESC LIMIT $2)",
        &[&account, &per_user],
    )?;
    tx.commit()?;
    Ok(())
}

/// [`Sessions::get`] on the database.
fn get_db(
    pool: &Pool,
    token: &str,
    idle: Duration,
) -> Result<Option<Session>, crate::error::Error> {
    let mut conn = pool.get()?;
    let token_hash = hash(token);
    let row = conn.query_opt(
        &format!(
            "SELECT a.name, a.key, a.password_hash, a.created_at, a.quota, s.csrf,
                    s.last_seen <= {NOW_MS} - $3
             FROM web_sessions s JOIN accounts a ON a.id = s.account
             WHERE s.token_hash = $1 AND s.last_seen > {NOW_MS} - $2"
        ),
        &[&token_hash, &millis(idle), &millis(refresh(idle))],
    )?;
    let Some(row) = row else {
        conn.execute(
            &format!(
                "DELETE FROM web_sessions WHERE token_hash = $1 AND last_seen <= {NOW_MS} - $2"
            ),
            &[&token_hash, &millis(idle)],
        )?;
        return Ok(None);
    };
    let stale: bool = row.get(6);
    if stale {
        conn.execute(
            &format!("UPDATE web_sessions SET last_seen = {NOW_MS} WHERE token_hash = $1"),
            &[&token_hash],
        )?;
    }
    Ok(Some(Session {
        token: token.to_string(),
        user: Arc::new(crate::users::pg::user(&row)),
        csrf: row.get(5),
    }))
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

    /// A database with the accounts `alice` and `bob`, and two servers'
    /// sessions on it.
    fn two_on_one_db(test: &str) -> Option<(crate::db::testing::TestDb, Sessions, Sessions)> {
        let db = crate::db::testing::TestDb::create(test)?;
        let pool = db.pool();
        pool.get()
            .unwrap()
            .execute(
                "INSERT INTO accounts (key, name, password_hash, created_at)
                 VALUES ('alice', 'alice', '', 0), ('bob', 'bob', '', 0)",
                &[],
            )
            .unwrap();
        let other = db.pool();
        Some((db, Sessions::with_db(pool), Sessions::with_db(other)))
    }

    #[test]
    fn with_a_database_a_sign_in_on_one_server_holds_on_another() {
        let Some((db, a, b)) = two_on_one_db("a_sign_in_holds_on_another") else {
            return;
        };
        let idle = Duration::from_secs(60);
        let s = a.create(alice(), idle).unwrap();
        assert_eq!(s.token.len(), 64);
        let seen = b.get(&s.token, idle).unwrap();
        assert_eq!(
            (seen.user.name.as_str(), seen.csrf.as_str()),
            ("alice", s.csrf.as_str())
        );
        assert_eq!(seen.token, s.token);

        // The table holds the token's hash, never the token.
        let pool = db.pool();
        let mut conn = pool.get().unwrap();
        let stored: Vec<u8> = conn
            .query_one("SELECT token_hash FROM web_sessions", &[])
            .unwrap()
            .get(0);
        assert_eq!(stored, hash(&s.token));
        assert_ne!(stored, s.token.as_bytes());

        assert!(b.get(&s.token, Duration::ZERO).is_none(), "expired");
        assert!(a.get(&s.token, idle).is_none(), "and gone everywhere");

        let t = a.create(alice(), idle).unwrap();
        b.remove(&t.token);
        assert!(a.get(&t.token, idle).is_none(), "signed out everywhere");
        let u = a.create(alice(), idle).unwrap();
        b.remove_user("alice");
        assert!(a.get(&u.token, idle).is_none(), "a new password signs out");
        let v = a.create(alice(), idle).unwrap();
        conn.execute("DELETE FROM accounts WHERE key = 'alice'", &[])
            .unwrap();
        assert!(
            b.get(&v.token, idle).is_none(),
            "a removed account signs out"
        );
        assert!(matches!(a.create(alice(), idle), Err(Refused::Database(_))));
    }

    #[test]
    fn with_a_database_one_user_signing_in_again_signs_out_only_its_oldest() {
        let Some((db, a, b)) = two_on_one_db("signs_out_only_its_oldest") else {
            return;
        };
        let idle = Duration::from_secs(60);
        let mut bob = (*alice()).clone();
        bob.key = "bob".into();
        let bob = a.create(Arc::new(bob), idle).unwrap();
        let first = a.create(alice(), idle).unwrap();
        let second = b.create(alice(), idle).unwrap();
        for i in 0..MAX_PER_USER * 2 {
            let s = if i % 2 == 0 { &a } else { &b };
            s.create(alice(), idle).unwrap();
        }
        assert!(a.get(&first.token, idle).is_none(), "the oldest went first");
        assert!(b.get(&second.token, idle).is_none());
        assert!(
            b.get(&bob.token, idle).is_some(),
            "another user keeps theirs"
        );
        let n: i64 = db
            .pool()
            .get()
            .unwrap()
            .query_one("SELECT count(*) FROM web_sessions", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, MAX_PER_USER as i64 + 1);
    }
}
