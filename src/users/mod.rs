//! The user store: accounts kept in `users.xlsx` (or, with `serve --db`,
//! in PostgreSQL), checked with argon2id.
//!
//! The sheet is read once at start and rewritten whole on each change;
//! `sheet` holds its format, the reading and the atomic rewrite, `admin`
//! the changes an admin makes with the server stopped, `known` the
//! addresses each user logged in from lately, `pg` the accounts table of
//! `--db`, where every lookup is a query and nothing is cached: a password
//! changed or an account removed by another server holds here at once.
//!
//! Locks: `state` is held only to look up or change a record; `write`
//! serialises changes around the file rewrite. Neither is held while
//! hashing, so a login never delays a request that does not hash.
//!
//! Hashing runs on a small pool of its own threads: one for every two
//! cores, at least one and at most four. Each argon2id hash works through
//! 19 MiB of memory; were every worker to hash at once, a burst of logins
//! would cost the server hundreds of MiB, and its CPU, which transfers need
//! for their MD5s. A login waits its turn instead, the memory stays bounded
//! by the pool's size, and half the cores stay free for transfers.

mod admin;
pub mod control;
mod known;
pub mod pace;
pub(crate) mod pg;
mod sheet;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db;
use crate::error::Error;
use crate::names;
use crate::password;
use crate::ratelimit::{address_key, RateLimiter};
use known::KnownAddresses;
use pace::Pace;
use sheet::{read_sheet, write_sheet};

pub use known::{KNOWN_FILE, KNOWN_FOR};
pub use sheet::COLUMNS;

pub use crate::protocol::Password;

/// One account.
#[derive(Debug, Clone)]
pub struct User {
    /// The name as it was registered (`login` replies with it).
    pub name: String,
    /// NFC + lowercase: the identity, and the name of the user's folder.
    pub key: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Per-user quota in bytes; `None` falls back to the server's `--quota`.
    pub quota: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Rows in file order.
    list: Vec<Arc<User>>,
    /// Canonical name → index into `list`.
    index: HashMap<String, usize>,
}

/// Accounts, backed by `users.xlsx` or by the database.
pub struct UserStore {
    /// With `--db`: the accounts are there, and `path`, `state` and
    /// `write` are unused.
    db: Option<db::Pool>,
    path: PathBuf,
    state: Mutex<State>,
    write: Mutex<()>,
    limiter: RateLimiter,
    /// The pace of logins that get in.
    pace: Pace,
    /// Where each user logged in from lately.
    known: KnownAddresses,
    /// Where passwords are hashed and checked (see the module comment).
    hashers: rayon::ThreadPool,
}

/// Most password hashes computed at once.
const MAX_HASHERS: usize = 4;

/// The hashing threads (see the module comment).
fn hashers() -> Result<rayon::ThreadPool, Error> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads((cores / 2).clamp(1, MAX_HASHERS))
        .thread_name(|i| format!("hasher-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start hashing threads: {e}")))
}

impl UserStore {
    /// Loads `path`, or starts empty (and writes a header-only file) if it
    /// does not exist, and the known addresses beside it ([`KNOWN_FILE`]).
    ///
    /// # Errors
    /// If the file exists but cannot be read as a workbook, or a row that is
    /// not empty does not hold a valid account (see [`read_sheet`]): the
    /// server must not start and later overwrite accounts it failed to read.
    pub fn open(path: &Path) -> Result<UserStore, Error> {
        let store = UserStore {
            db: None,
            path: path.to_path_buf(),
            state: Mutex::new(State::default()),
            write: Mutex::new(()),
            limiter: RateLimiter::default(),
            pace: Pace::default(),
            known: KnownAddresses::open(&path.with_file_name(KNOWN_FILE)),
            hashers: hashers()?,
        };
        if path.exists() {
            // `read_sheet` has refused duplicates: every key is new here.
            let users = read_sheet(path)?;
            let mut state = store.lock_state();
            for user in users {
                let at = state.list.len();
                state.index.insert(user.key.clone(), at);
                state.list.push(Arc::new(user));
            }
        } else {
            write_sheet(path, &[])?;
        }
        Ok(store)
    }

    /// The accounts in the database of `pool` (`serve --db`), with the
    /// failed-login limits and the known addresses there too, shared by
    /// every server on it. The pace of logins that get in stays this
    /// server's own (see `pace`).
    ///
    /// # Errors
    /// If the hashing threads cannot be started.
    pub fn open_db(pool: db::Pool) -> Result<UserStore, Error> {
        Ok(UserStore {
            path: PathBuf::new(),
            state: Mutex::new(State::default()),
            write: Mutex::new(()),
            limiter: RateLimiter::with_db(pool.clone()),
            pace: Pace::default(),
            known: KnownAddresses::with_db(pool.clone()),
            hashers: hashers()?,
            db: Some(pool),
        })
    }

    /// Sets the successful registrations allowed per address per hour.
    pub fn set_register_limit(&mut self, per_hour: u32) {
        self.limiter.set_register_limit(per_hour);
    }

    /// Sets the pace of logins that get in: `burst` at once per user,
    /// then `rate` a second (an address: [`pace::ADDRESS_SHARE`] times
    /// both).
    pub fn set_login_pace(&mut self, burst: u32, rate: f64) {
        self.pace = Pace::new(burst, rate);
    }

    /// Number of accounts (0 if the database cannot say).
    pub fn count(&self) -> usize {
        match &self.db {
            Some(pool) => pg::count(pool).unwrap_or_else(|e| {
                eprintln!("cannot count the accounts: {e}");
                0
            }),
            None => self.lock_state().list.len(),
        }
    }

    /// Looks up a user by canonical name (`None` too if the database
    /// cannot be asked: the caller treats it as no such user).
    pub fn get(&self, key: &str) -> Option<Arc<User>> {
        self.try_get(key).unwrap_or_else(|e| {
            eprintln!("cannot look up an account: {e}");
            None
        })
    }

    /// Looks up a user by canonical name.
    ///
    /// # Errors
    /// A database error (`INTERNAL`).
    pub fn try_get(&self, key: &str) -> Result<Option<Arc<User>>, Error> {
        if let Some(pool) = &self.db {
            return Ok(pg::get(pool, key)?.map(Arc::new));
        }
        let state = self.lock_state();
        Ok(state.index.get(key).map(|&i| Arc::clone(&state.list[i])))
    }

    /// Creates an account for a client at `peer`, within the per-address
    /// registration limit. `prepare_home` runs under the registration lock,
    /// before the account is written, to give the user an empty folder
    /// (with `--db`: just after, see [`UserStore::create`]).
    ///
    /// # Errors
    /// `INVALID_NAME`, `WEAK_PASSWORD`, `RATE_LIMITED`, `USER_EXISTS`, or an
    /// I/O error (then nothing was registered and `users.xlsx` is unchanged).
    pub fn register(
        &self,
        name: &str,
        password: &Password,
        peer: &str,
        prepare_home: impl FnOnce(&str) -> io::Result<()>,
    ) -> Result<Arc<User>, Error> {
        names::canonical_user(name)?;
        names::check_password(password.expose())?;
        // Reserved before the hash, like a login: registrations in flight
        // from one address cannot overshoot its limit together.
        let slot = self.limiter.begin_register(peer)?;
        let user = self.create(name, password, prepare_home)?;
        slot.count();
        Ok(user)
    }

    /// Creates an account, with no limit (an admin's `netdisk user add`,
    /// and [`UserStore::register`] within its limit).
    ///
    /// With `--db`, the row is inserted first (the UNIQUE key decides
    /// between servers registering one name at once) and `prepare_home`
    /// runs after it, for the disk may need the account's row; if it
    /// fails, the row is deleted again.
    ///
    /// # Errors
    /// `INVALID_NAME`, `WEAK_PASSWORD`, `USER_EXISTS`, or an I/O error
    /// (then nothing was registered and `users.xlsx` is unchanged).
    pub fn create(
        &self,
        name: &str,
        password: &Password,
        prepare_home: impl FnOnce(&str) -> io::Result<()>,
    ) -> Result<Arc<User>, Error> {
        let key = names::canonical_user(name)?;
        names::check_password(password.expose())?;
        if self.try_get(&key)?.is_some() {
            return Err(Error::UserExists);
        }
        let password_hash = self.hashers.install(|| password::hash(password))?;
        if let Some(pool) = &self.db {
            let user = User {
                name: name.to_string(),
                key: key.clone(),
                password_hash,
                created_at: unix_now(),
                quota: None,
            };
            if !pg::insert(pool, &user)? {
                return Err(Error::UserExists);
            }
            if let Err(e) = prepare_home(&key) {
                pg::delete(pool, &key)?;
                return Err(e.into());
            }
            return Ok(Arc::new(user));
        }
        let _write = self.lock_write();
        if self.get(&key).is_some() {
            return Err(Error::UserExists);
        }
        prepare_home(&key)?;
        // A new account never inherits a removed one's addresses.
        self.known.forget(&key)?;
        let user = Arc::new(User {
            name: name.to_string(),
            key: key.clone(),
            password_hash,
            created_at: unix_now(),
            quota: None,
        });
        let mut rows: Vec<Arc<User>> = self.lock_state().list.clone();
        rows.push(Arc::clone(&user));
        write_sheet(&self.path, &rows)?;
        let mut state = self.lock_state();
        let at = state.list.len();
        state.index.insert(key, at);
        state.list.push(Arc::clone(&user));
        Ok(user)
    }

    /// Takes the tokens a login as `name` from `peer` needs before it may
    /// hash (see `pace`), without waiting: a front end that can let the
    /// login wait off its worker (the login queue, `server::logins`) asks
    /// again later.
    ///
    /// # Errors
    /// How long until the tokens are there (`Duration::MAX`: never).
    pub fn login_pass(&self, name: &str, peer: &str) -> Result<LoginPass<'_>, pace::Short> {
        self.pace.take(&limit_key(name), &address_key(peer))
    }

    /// Checks a login from `peer` now, or refuses it if it would go faster
    /// than the pace allows ([`UserStore::login_pass`] and
    /// [`UserStore::login_with`] in one).
    ///
    /// # Errors
    /// `RATE_LIMITED` (too fast, or too many failures), `AUTH_FAILED`.
    pub fn login(&self, name: &str, password: &Password, peer: &str) -> Result<Arc<User>, Error> {
        let pass = self
            .login_pass(name, peer)
            .map_err(|short| Error::LoginsTooFast(retry_after(short.wait)))?;
        self.login_with(pass, name, password, peer)
    }

    /// Checks a login from `peer` that holds its tokens. The attempt holds
    /// its place in the failure limits while it hashes (see `ratelimit`); a
    /// success spends the tokens and makes `peer` a known address of the
    /// user, a failure gives the user's token back.
    ///
    /// # Errors
    /// `RATE_LIMITED` after too many failures for this name or address,
    /// otherwise `AUTH_FAILED` for any kind of wrong credentials.
    pub fn login_with(
        &self,
        pass: LoginPass<'_>,
        name: &str,
        password: &Password,
        peer: &str,
    ) -> Result<Arc<User>, Error> {
        let key = names::canonical_user(name);
        let limit_key = limit_key(name);
        let known = self.known.is_known(&limit_key, peer);
        let slot = self.limiter.begin_login(&limit_key, peer, known)?;
        let user = match key {
            Ok(k) => self.try_get(&k)?,
            Err(_) => None,
        };
        let valid = self.hashers.install(|| {
            // Unknown users cost a hash too, so timing does not tell who exists.
            let hash = user
                .as_ref()
                .map_or_else(|| password::dummy(), |u| u.password_hash.as_str());
            password::verify(password, hash)
        });
        match user {
            Some(user) if valid => {
                slot.forgive();
                pass.spend();
                if let Err(e) = self.known.record(&user.key, peer) {
                    // The login stands; only the exemption may not outlive
                    // a restart.
                    eprintln!("cannot record a known address: {e}");
                }
                Ok(user)
            }
            // Dropping the slot counts the failure, dropping the pass gives
            // the user's token back.
            _ => Err(Error::AuthFailed),
        }
    }

    fn lock_write(&self) -> std::sync::MutexGuard<'_, ()> {
        // Guards no data of its own: only the order of rewrites.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated: every
        // mutation is a single insert/push pair after all fallible work.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The tokens of a login (see `pace`).
pub type LoginPass<'a> = pace::Pass<'a>;

/// What a login's limits count a name by: its canonical form, or, for a
/// name that could never be valid, its first 64 characters lowercased.
fn limit_key(name: &str) -> String {
    names::canonical_user(name)
        .unwrap_or_else(|_| name.chars().take(64).collect::<String>().to_lowercase())
}

/// Whole seconds to wait, rounded up ("try again in 0 s" would be refused
/// again), for a `RATE_LIMITED` reply.
pub fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs_f64().ceil();
    if secs >= 86_400.0 {
        86_400
    } else {
        (secs as u64).max(1)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s)
    }

    #[test]
    fn password_never_prints() {
        let p = pw("hunter2-secret");
        assert_eq!(format!("{p:?} {p}"), "*** ***");
    }

    #[test]
    fn register_login_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        let store = UserStore::open(&path).unwrap();
        let mut homes = Vec::new();
        store
            .register("Alice", &pw("correct horse"), "p", |k| {
                homes.push(k.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(homes, ["alice"]);
        assert!(matches!(
            store.register("ALICE", &pw("another pw"), "p", |_| Ok(())),
            Err(Error::UserExists)
        ));
        assert_eq!(
            store
                .login("alice", &pw("correct horse"), "p")
                .unwrap()
                .name,
            "Alice"
        );
        assert!(matches!(
            store.login("alice", &pw("wrong pass"), "p"),
            Err(Error::AuthFailed)
        ));

        let text = std::fs::read(&path).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("correct horse"));
        let again = UserStore::open(&path).unwrap();
        assert_eq!(again.count(), 1);
        let u = again.get("alice").unwrap();
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(u.created_at > 0);
    }

    #[test]
    fn failed_home_leaves_the_sheet_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        let store = UserStore::open(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let r = store.register("bob", &pw("password1"), "p", |_| {
            Err(io::Error::other("disk"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(store.get("bob").is_none());
    }
}
