//! The user store: accounts kept in `users.xlsx`, checked with argon2id.
//!
//! The sheet has a header row `user | password_hash | created_at |
//! quota_bytes` and one row per user. It is read once at start (calamine),
//! so an admin's edits made while the server is stopped take effect on the
//! next start, and rewritten whole on each registration (rust_xlsxwriter):
//! temp file in the same folder, fsync, rename, fsync the folder, so a crash
//! leaves the old file or the new one, never a broken one.
//!
//! Locks: `state` is held only to look up or insert a record; `write`
//! serialises registrations around the file rewrite. Neither is held while
//! hashing, so a login never delays a request that does not hash.
//!
//! Hashing runs on a small pool of its own threads: one for every two
//! cores, at least one and at most four. Each argon2id hash works through
//! 19 MiB of memory; were every worker to hash at once, a burst of logins
//! would cost the server hundreds of MiB, and its CPU, which transfers need
//! for their MD5s. A login waits its turn instead, the memory stays bounded
//! by the pool's size, and half the cores stay free for transfers.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::PasswordHash;
use calamine::{Data, Reader, Xlsx};
use rust_xlsxwriter::Workbook;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::names;
use crate::password;
use crate::ratelimit::RateLimiter;

/// The sheet's header row, in column order.
pub const COLUMNS: [&str; 4] = ["user", "password_hash", "created_at", "quota_bytes"];

/// A password: its `Debug` and `Display` never show it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Password {
        Password(s.into())
    }

    /// The secret itself, for hashing or sending.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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

/// Accounts, backed by `users.xlsx`.
pub struct UserStore {
    path: PathBuf,
    state: Mutex<State>,
    write: Mutex<()>,
    limiter: RateLimiter,
    /// Where passwords are hashed and checked (see the module comment).
    hashers: rayon::ThreadPool,
}

/// Most password hashes computed at once.
const MAX_HASHERS: usize = 4;

impl UserStore {
    /// Loads `path`, or starts empty (and writes a header-only file) if it
    /// does not exist.
    ///
    /// # Errors
    /// If the file exists but cannot be read as a workbook, or a row that is
    /// not empty does not hold a valid account (see [`read_sheet`]): the
    /// server must not start and later overwrite accounts it failed to read.
    pub fn open(path: &Path) -> Result<UserStore, Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hashers = rayon::ThreadPoolBuilder::new()
            .num_threads((cores / 2).clamp(1, MAX_HASHERS))
            .thread_name(|i| format!("hasher-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start hashing threads: {e}")))?;
        let store = UserStore {
            path: path.to_path_buf(),
            state: Mutex::new(State::default()),
            write: Mutex::new(()),
            limiter: RateLimiter::default(),
            hashers,
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

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.lock_state().list.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks up a user by canonical name.
    pub fn get(&self, key: &str) -> Option<Arc<User>> {
        let state = self.lock_state();
        state.index.get(key).map(|&i| Arc::clone(&state.list[i]))
    }

    /// Creates an account. `prepare_home` runs under the registration lock,
    /// before the account is written, to give the user an empty folder.
    ///
    /// # Errors
    /// `INVALID_NAME`, `WEAK_PASSWORD`, `USER_EXISTS`, or an I/O error (then
    /// nothing was registered and `users.xlsx` is unchanged).
    pub fn register(
        &self,
        name: &str,
        password: &Password,
        prepare_home: impl FnOnce(&str) -> io::Result<()>,
    ) -> Result<Arc<User>, Error> {
        let key = names::canonical_user(name)?;
        names::check_password(password.expose())?;
        if self.get(&key).is_some() {
            return Err(Error::UserExists);
        }
        let password_hash = self.hashers.install(|| password::hash(password))?;
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(&key).is_some() {
            return Err(Error::UserExists);
        }
        prepare_home(&key)?;
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

    /// Checks a login from `peer`.
    ///
    /// # Errors
    /// `RATE_LIMITED` after too many failures for this name or address,
    /// otherwise `AUTH_FAILED` for any kind of wrong credentials.
    pub fn login(&self, name: &str, password: &Password, peer: &str) -> Result<Arc<User>, Error> {
        let key = names::canonical_user(name);
        let limit_key = match &key {
            Ok(k) => k.clone(),
            // An impossible name still counts against itself, bounded in size.
            Err(_) => name.chars().take(64).collect::<String>().to_lowercase(),
        };
        if self.limiter.is_blocked(&limit_key, peer) {
            return Err(Error::RateLimited);
        }
        let user = key.ok().and_then(|k| self.get(&k));
        let valid = self.hashers.install(|| {
            // Unknown users cost a hash too, so timing does not tell who exists.
            let hash = user
                .as_ref()
                .map_or_else(|| password::dummy(), |u| u.password_hash.as_str());
            password::verify(password, hash)
        });
        match user {
            Some(user) if valid => {
                self.limiter.succeeded(&limit_key);
                Ok(user)
            }
            _ => {
                self.limiter.failed(&limit_key, peer);
                Err(Error::AuthFailed)
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated: every
        // mutation is a single insert/push pair after all fallible work.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads every account in the sheet.
///
/// The next registration rewrites the file from what this returns, so a row
/// it skipped would be deleted then. It therefore refuses any row that is
/// not completely empty and does not hold a valid account, naming the row
/// as a spreadsheet shows it and the problem, so an admin can fix it.
fn read_sheet(path: &Path) -> Result<Vec<User>, Error> {
    let bad = |e: &dyn fmt::Display| Error::Internal(format!("{}: {e}", path.display()));
    let mut book: Xlsx<_> = calamine::open_workbook(path).map_err(|e| bad(&e))?;
    let range = match book.worksheet_range_at(0) {
        Some(r) => r.map_err(|e| bad(&e))?,
        None => return Ok(Vec::new()),
    };
    // The range starts at the first used cell, not necessarily at row 1.
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let mut users = Vec::new();
    // Canonical name → row number, to name both rows of a duplicate.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, row) in range.rows().enumerate() {
        let n = first_row + i + 1;
        let bad_row = |problem: String| bad(&format!("row {n}: {problem}"));
        let cell = |c: usize| row.get(c).unwrap_or(&Data::Empty);
        if i == 0 && cell_text(cell(0)).as_deref() == Some(COLUMNS[0]) {
            continue;
        }
        if row.iter().all(is_blank) {
            continue;
        }
        let Some(name) = cell_text(cell(0)) else {
            return Err(bad_row("the user cell is empty or not text".into()));
        };
        let key = names::canonical_user(&name).map_err(|e| {
            let why = match e {
                Error::InvalidName(why) => why.to_string(),
                other => other.to_string(),
            };
            bad_row(format!("user name {name:?} is not valid: {why}"))
        })?;
        let Some(password_hash) = cell_text(cell(1)) else {
            return Err(bad_row(format!("user {name:?} has no password_hash")));
        };
        if PasswordHash::new(&password_hash).is_err() {
            return Err(bad_row(format!(
                "user {name:?}: password_hash is not a PHC hash string"
            )));
        }
        let quota = cell_u64(cell(3));
        if quota.is_none() && !is_blank(cell(3)) {
            return Err(bad_row(format!(
                "user {name:?}: quota_bytes {} is not a whole number of bytes",
                cell(3)
            )));
        }
        if let Some(&other) = seen.get(&key) {
            return Err(bad_row(format!(
                "user {name:?} is the same user as row {other} \
                 (names are compared after NFC normalisation and lowercasing)"
            )));
        }
        seen.insert(key.clone(), n);
        users.push(User {
            name,
            key,
            password_hash,
            created_at: cell_u64(cell(2)).unwrap_or(0),
            quota,
        });
    }
    Ok(users)
}

fn is_blank(d: &Data) -> bool {
    match d {
        Data::Empty => true,
        Data::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn cell_text(d: &Data) -> Option<String> {
    match d {
        Data::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) if f.fract() == 0.0 => Some(format!("{f:.0}")),
        _ => None,
    }
}

fn cell_u64(d: &Data) -> Option<u64> {
    match d {
        Data::Int(i) => u64::try_from(*i).ok(),
        Data::Float(f) if *f >= 0.0 && f.fract() == 0.0 && *f < 1.9e19 => Some(*f as u64),
        Data::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Rewrites the sheet atomically: temp file beside it, fsync, rename, fsync dir.
fn write_sheet(path: &Path, users: &[Arc<User>]) -> Result<(), Error> {
    let xerr = |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("users").map_err(xerr)?;
    for (c, title) in COLUMNS.iter().enumerate() {
        sheet.write_string(0, c as u16, *title).map_err(xerr)?;
    }
    for (i, u) in users.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, &u.name).map_err(xerr)?;
        sheet.write_string(r, 1, &u.password_hash).map_err(xerr)?;
        sheet
            .write_number(r, 2, u.created_at as f64)
            .map_err(xerr)?;
        if let Some(q) = u.quota {
            sheet.write_number(r, 3, q as f64).map_err(xerr)?;
        }
    }
    sheet.set_column_width(0, 20).map_err(xerr)?;
    sheet.set_column_width(1, 100).map_err(xerr)?;
    sheet.set_column_width(2, 12).map_err(xerr)?;
    sheet.set_column_width(3, 14).map_err(xerr)?;
    let bytes = book.save_to_buffer().map_err(xerr)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".users.xlsx.")
        .tempfile_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    crate::storage::sync_dir(dir)?;
    Ok(())
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
            .register("Alice", &pw("correct horse"), |k| {
                homes.push(k.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(homes, ["alice"]);
        assert!(matches!(
            store.register("ALICE", &pw("another pw"), |_| Ok(())),
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
        assert_eq!(again.len(), 1);
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
        let r = store.register("bob", &pw("password1"), |_| Err(io::Error::other("disk")));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(store.get("bob").is_none());
    }

    /// A well-formed argon2id PHC string (of no password in particular).
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A";

    /// Writes a sheet the way an admin's editor would: only non-empty cells.
    fn write_rows(path: &Path, rows: &[&[&str]]) {
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        for (r, row) in rows.iter().enumerate() {
            for (c, text) in row.iter().enumerate() {
                if !text.is_empty() {
                    sheet.write_string(r as u32, c as u16, *text).unwrap();
                }
            }
        }
        book.save(path).unwrap();
    }

    fn open_err(path: &Path) -> String {
        match UserStore::open(path) {
            Ok(_) => panic!("opened a sheet with a bad row"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_bad_row_refuses_to_open_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        let cases: [(&[&str], &str); 7] = [
            (&[".asa", HASH], "user name \".asa\" is not valid"),
            (&["bob"], "user \"bob\" has no password_hash"),
            (&["bob", "hunter2-plain"], "password_hash is not a PHC"),
            (&["ÅSA", HASH], "user \"ÅSA\" is the same user as row 2"),
            // "åsa" with a combining ring: the same after NFC.
            (&["a\u{30a}sa", HASH], "is the same user as row 2"),
            (&["", HASH], "the user cell is empty"),
            (
                &["bob", HASH, "0", "10 GB"],
                "quota_bytes 10 GB is not a whole number",
            ),
        ];
        for (row, problem) in cases {
            write_rows(&path, &[&COLUMNS, &["Åsa", HASH], &[], row]);
            let before = std::fs::read(&path).unwrap();
            let err = open_err(&path);
            assert!(err.contains("row 4: ") && err.contains(problem), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), before, "{problem}");
        }
    }

    #[test]
    fn empty_rows_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        write_rows(
            &path,
            &[
                &COLUMNS,
                &[],
                &["alice", HASH],
                &["  ", "", " "],
                &["Bob", HASH, "5", "100"],
            ],
        );
        let store = UserStore::open(&path).unwrap();
        assert_eq!(store.len(), 2);
        let bob = store.get("bob").unwrap();
        assert_eq!((bob.name.as_str(), bob.created_at), ("Bob", 5));
        assert_eq!(bob.quota, Some(100));
    }

    #[test]
    fn unreadable_sheet_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.xlsx");
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(UserStore::open(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"not a zip");
    }
}
