//! Known addresses: where each user logged in from lately, so that the
//! per-name login limit does not apply there (see `ratelimit`). OWASP's
//! "device cookie" idea, keyed by address.
//!
//! Kept in `DATA/known-addresses.json`, beside `users.xlsx` and outside
//! every user's folder: `{"KEY": {"ADDRESS": UNIX_SECS, ...}, ...}`, the
//! time of the last successful login from there. It is read at start and
//! rewritten whole (temp file, fsync, rename) when a user logs in from a
//! new address, or from a known one not recorded for a day. Entries older
//! than [`KNOWN_FOR`] are dropped. A file that cannot be read costs only
//! the exemption: the server starts without it and says so.
//!
//! With `--db` the table is `known_addresses` instead, one row per user
//! and address, shared by every server: an owner known to one server is
//! known to all. Its rows go with the account (`ON DELETE CASCADE`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::db::Pool;
use crate::error::Error;

/// How long a successful login keeps its address known.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// A known address's time is rewritten at most this often.
const REFRESH: u64 = 24 * 3600;
/// The file's name in the data directory.
pub const KNOWN_FILE: &str = "known-addresses.json";

type Table = HashMap<String, HashMap<String, u64>>;

/// Users' recent login addresses.
pub struct KnownAddresses {
    /// With `--db`: the table is there; `path` and `table` are unused.
    db: Option<Pool>,
    path: PathBuf,
    table: Mutex<Table>,
    /// Serialises rewrites of the file, so that the last one written holds
    /// the last change.
    write: Mutex<()>,
}

impl KnownAddresses {
    /// Loads `path` (a missing file is an empty table).
    pub fn open(path: &Path) -> KnownAddresses {
        let table = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Table>(&bytes).unwrap_or_else(|e| {
                eprintln!(
                    "{}: unreadable ({e}); every address starts unknown",
                    path.display()
                );
                Table::new()
            }),
            Err(_) => Table::new(),
        };
        let known = KnownAddresses {
            db: None,
            path: path.to_path_buf(),
            table: Mutex::new(table),
            write: Mutex::new(()),
        };
        prune(&mut known.lock(), unix_now());
        known
    }

    /// The table in the database of `pool`.
    pub fn with_db(pool: Pool) -> KnownAddresses {
        KnownAddresses {
            db: Some(pool),
            path: PathBuf::new(),
            table: Mutex::default(),
            write: Mutex::new(()),
        }
    }

    /// Whether `key` logged in successfully from `peer` within [`KNOWN_FOR`]
    /// (with `--db`, not if the database cannot be asked).
    pub fn is_known(&self, key: &str, peer: &str) -> bool {
        let now = unix_now();
        if let Some(pool) = &self.db {
            let since = to_db(now.saturating_sub(KNOWN_FOR.as_secs()));
            let known = pool.get().map_err(Error::from).and_then(|mut c| {
                c.query_opt(
                    "SELECT 1 FROM known_addresses k JOIN accounts a ON a.id = k.account
                     WHERE a.key = $1 AND k.address = $2 AND k.last_login > $3",
                    &[&key, &peer, &since],
                )
                .map_err(Error::from)
            });
            return match known {
                Ok(row) => row.is_some(),
                Err(e) => {
                    eprintln!("cannot look up a known address: {e}");
                    false
                }
            };
        }
        self.lock()
            .get(key)
            .and_then(|m| m.get(peer))
            .is_some_and(|&t| now.saturating_sub(t) < KNOWN_FOR.as_secs())
    }

    /// Records a successful login of `key` from `peer`.
    ///
    /// # Errors
    /// If the file cannot be rewritten (the address is still known until
    /// the server stops).
    pub fn record(&self, key: &str, peer: &str) -> Result<(), Error> {
        let now = unix_now();
        if let Some(pool) = &self.db {
            let mut conn = pool.get()?;
            conn.execute(
                "INSERT INTO known_addresses AS k (account, address, last_login)
                 SELECT id, $2, $3 FROM accounts WHERE key = $1
                 ON CONFLICT (account, address) DO UPDATE SET last_login = EXCLUDED.last_login
                 WHERE k.last_login <= EXCLUDED.last_login - $4",
                &[&key, &peer, &to_db(now), &to_db(REFRESH)],
            )?;
            // The user's addresses that have expired go, as `prune` does.
            let before = to_db(now.saturating_sub(KNOWN_FOR.as_secs()));
            conn.execute(
                "DELETE FROM known_addresses USING accounts
                 WHERE account = id AND key = $1 AND last_login <= $2",
                &[&key, &before],
            )?;
            return Ok(());
        }
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = {
            let mut table = self.lock();
            let addrs = table.entry(key.to_string()).or_default();
            match addrs.get(peer) {
                Some(&t) if now.saturating_sub(t) < REFRESH => return Ok(()),
                _ => {}
            }
            addrs.insert(peer.to_string(), now);
            prune(&mut table, now);
            serde_json::to_vec(&*table).map_err(|e| Error::Internal(e.to_string()))?
        };
        self.write_file(&bytes)
    }

    /// Forgets every address of `key` (a removed or new account).
    ///
    /// # Errors
    /// If the file cannot be rewritten.
    pub fn forget(&self, key: &str) -> Result<(), Error> {
        if let Some(pool) = &self.db {
            pool.get()?.execute(
                "DELETE FROM known_addresses USING accounts
                 WHERE known_addresses.account = accounts.id AND accounts.key = $1",
                &[&key],
            )?;
            return Ok(());
        }
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = {
            let mut table = self.lock();
            if table.remove(key).is_none() {
                return Ok(());
            }
            serde_json::to_vec(&*table).map_err(|e| Error::Internal(e.to_string()))?
        };
        self.write_file(&bytes)
    }

    fn write_file(&self, bytes: &[u8]) -> Result<(), Error> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".known-addresses.")
            .tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        crate::storage::sync_dir(dir)?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every change is a single insert or remove.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn prune(table: &mut Table, now: u64) {
    for addrs in table.values_mut() {
        addrs.retain(|_, t| now.saturating_sub(*t) < KNOWN_FOR.as_secs());
    }
    table.retain(|_, addrs| !addrs.is_empty());
}

fn unix_now() -> u64 {
    super::unix_now()
}

fn to_db(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_a_reload_and_old_ones_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KNOWN_FILE);
        let known = KnownAddresses::open(&path);
        assert!(!known.is_known("alice", "10.0.0.1"));
        known.record("alice", "10.0.0.1").unwrap();
        assert!(known.is_known("alice", "10.0.0.1"));
        assert!(!known.is_known("bob", "10.0.0.1"));

        let again = KnownAddresses::open(&path);
        assert!(again.is_known("alice", "10.0.0.1"));
        again.forget("alice").unwrap();
        assert!(!KnownAddresses::open(&path).is_known("alice", "10.0.0.1"));

        let old = unix_now() - KNOWN_FOR.as_secs() - 1;
        std::fs::write(&path, format!(r#"{{"bob":{{"10.0.0.2":{old}}}}}"#)).unwrap();
        assert!(!KnownAddresses::open(&path).is_known("bob", "10.0.0.2"));
        std::fs::write(&path, "not json").unwrap();
        assert!(!KnownAddresses::open(&path).is_known("bob", "10.0.0.2"));
    }

    #[test]
    fn with_a_database_every_server_knows_the_address() {
        let Some(db) = crate::db::testing::TestDb::create("every_server_knows_the_address") else {
            return;
        };
        let pool = db.pool();
        pool.get()
            .unwrap()
            .execute(
                "INSERT INTO accounts (key, name, password_hash, created_at)
                 VALUES ('alice', 'alice', 'x', 0), ('bob', 'bob', 'x', 0)",
                &[],
            )
            .unwrap();
        let a = KnownAddresses::with_db(pool.clone());
        let b = KnownAddresses::with_db(db.pool());
        assert!(!b.is_known("alice", "10.0.0.1"));
        a.record("alice", "10.0.0.1").unwrap();
        assert!(b.is_known("alice", "10.0.0.1"));
        assert!(!b.is_known("bob", "10.0.0.1"));
        assert!(!b.is_known("alice", "10.0.0.2"));
        // An unknown name records nothing.
        a.record("nobody", "10.0.0.1").unwrap();
        assert!(!a.is_known("nobody", "10.0.0.1"));

        let old = i64::try_from(unix_now() - KNOWN_FOR.as_secs() - 1).unwrap();
        pool.get()
            .unwrap()
            .execute(
                "INSERT INTO known_addresses (account, address, last_login)
                 SELECT id, '10.0.0.3', $1 FROM accounts WHERE key = 'bob'",
                &[&old],
            )
            .unwrap();
        assert!(!a.is_known("bob", "10.0.0.3"), "expired");
        b.forget("alice").unwrap();
        assert!(!a.is_known("alice", "10.0.0.1"));
    }
}
