//! The disk with its namespace in PostgreSQL (`serve --db`) and its bytes
//! in [`Blobs`].
//!
//! Every change that touches more than one row is one transaction, and
//! every one that changes a user's tree or bookings first locks that
//! user's `accounts` row: changes to one user's tree are serialised across
//! all servers (each takes a millisecond or so), so a check made inside
//! the transaction still holds when it commits. Readers take no lock; a
//! listing is one statement, so it sees a rename wholly or not at all.
//!
//! Bookings are conditional updates of the `accounts` row: an upload is
//! claimed by one `UPDATE … WHERE used - replaced + staged + size <= quota
//! AND staged_count < max_staged …`, so two servers never overbook a quota.
//! An upload's claim is the `holder` of its `staged` row (`SERVER/N`),
//! alive while its server refreshes `heartbeat` ([`HEARTBEAT`]) and has a
//! connection to the database (named `netdisk/SERVER`, seen in
//! `pg_stat_activity`): a killed server's claims are free as soon as the
//! database sees its connections close, a server cut off from the database
//! loses them after [`CLAIM_LAPSES`].
//!
//! A blob no row names any more is written to `retired` in the transaction
//! that drops its row, and deleted after the commit (or by the next sweep
//! if the server dies first): no crash leaves a row without its bytes or
//! bytes nobody can find.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::{Digest, Md5};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{GenericClient, Transaction};

use super::blobs::Blobs;
use super::s3::S3;
use super::{Disk, Encode, Kind, Opened, Stat, Upload, UploadLock, Verified};
use crate::db::{now, Pool};
use crate::error::Error;
use crate::hashcopy::{hash_prefix, hash_range, hashed_copy};
use crate::protocol::FileInfo;
use crate::storage::budget::{Budget, PER_ENTRY};
use crate::storage::{Listing, Prop, Record};

mod one_go;
mod parts;

pub use parts::part_size;

/// How often a server renews the claims of the uploads it runs.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A claim not renewed for this long belongs to a server that is gone.
pub const CLAIM_LAPSES: i64 = 60;

/// The PostgreSQL disk.
pub struct DbDisk {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// `None` for an admin command, which changes rows only: the blobs it
    /// retires are freed by the servers' housekeeping.
    blobs: Option<Blobs>,
    /// The bytes in S3 instead (`--blobs`).
    s3: Option<S3>,
    /// This server, in the claims it holds (random per start).
    server: String,
    claims: AtomicU64,
    /// The claims this server's connections hold now: only these are
    /// renewed, so a claim whose release failed (the database away when
    /// its upload ended) lapses, and this server takes it over at once.
    live: Mutex<HashSet<String>>,
    /// Uploads in one go claimed here, to be checked at their commit
    /// ([`one_go`]): (account key, path).
    pending: Mutex<HashSet<(String, String)>>,
    max_staged: usize,
    max_files: u64,
    listing_budget: Arc<Budget>,
}

/// Limits the disk applies (the same flags as the local disk's).
pub struct Limits {
    pub max_staged: usize,
    pub max_files: u64,
    pub listing_memory: usize,
}

/// A held upload claim: released (its row's `holder` cleared) on drop.
pub struct DbLock {
    inner: Weak<Inner>,
    account: i64,
    path: String,
    pub(super) size: u64,
    holder: String,
    blob: String,
    /// Its row holds no bytes and no digest state (new, or started over).
    fresh: bool,
    /// Its row is gone (the upload committed): nothing to release.
    gone: Arc<AtomicBool>,
    /// An upload in one go, checked when it commits: no row until then.
    deferred: Option<one_go::Deferred>,
}

impl Drop for DbLock {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if let Some(d) = &self.deferred {
            inner.pending().remove(&(d.key.clone(), self.path.clone()));
            return;
        }
        inner.live_claims().remove(&self.holder);
        if self.gone.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut c) = inner.pool.get() {
            let _ = c.execute(
                "UPDATE staged SET holder = NULL WHERE account = $1 AND path = $2 AND holder = $3",
                &[&self.account, &self.path, &self.holder],
            );
        }
    }
}

/// A staged upload being received into its blob.
pub struct DbUpload {
    inner: Arc<Inner>,
    sink: Sink,
    /// Committed or discarded: nothing of it to keep.
    settled: bool,
    hasher: Md5,
    held: u64,
    size: u64,
    account: i64,
    path: String,
    holder: String,
    blob: String,
    /// Its lock's [`DbLock::gone`].
    gone: Arc<AtomicBool>,
    /// Its lock's [`DbLock::deferred`].
    deferred: Option<one_go::Deferred>,
}

/// Where an upload's bytes go.
enum Sink {
    /// Its blob file, appended to.
    File(File),
    /// Parts of an S3 upload.
    Parts(Box<parts::Parts>),
}

/// An upload whose MD5 matched, ready to commit.
pub struct DbVerified {
    upload: DbUpload,
    md5: String,
}

fn int(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::bad_request(format!("{n} bytes is more than a disk holds")))
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The parent folder of `path` (`""`: the root).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// `path`'s parents, outermost first.
fn ancestors(path: &str) -> Vec<String> {
    path.match_indices('/')
        .map(|(i, _)| path[..i].to_string())
        .collect()
}

/// A node's row: (is_dir, size, mtime, md5, blob).
type Row = (bool, i64, i64, Option<String>, Option<String>);

/// What the rows of `path` and its parents say.
struct Found {
    /// The row of `path` itself.
    this: Option<Row>,
    /// Parents present, and whether each is a folder.
    parents: Vec<(String, bool)>,
}

impl Found {
    /// From rows of (path, is_dir, size, mtime, md5, blob).
    fn of(rows: Vec<postgres::Row>, path: &str) -> Found {
        let mut found = Found {
            this: None,
            parents: Vec::new(),
        };
        for row in rows {
            let p: String = row.get(0);
            if p == path {
                found.this = Some((row.get(1), row.get(2), row.get(3), row.get(4), row.get(5)));
            } else {
                found.parents.push((p, row.get(1)));
            }
        }
        found
    }

    /// PROTOCOL.md "Folders": the first parent that is missing is
    /// `NOT_FOUND`, the first that is a file `NOT_A_FOLDER`.
    fn check_parents(&self, path: &str, missing_ok: bool) -> Result<(), Error> {
        for want in ancestors(path) {
            match self.parents.iter().find(|(p, _)| *p == want) {
                Some((_, true)) => {}
                Some((_, false)) => return Err(Error::NotAFolder(want)),
                None if missing_ok => {}
                None => return Err(Error::NotFound),
            }
        }
        Ok(())
    }
}

impl DbDisk {
    /// A disk over `pool`, its bytes under `root/blobs`, for the server
    /// `server`, whose pool names its connections
    /// [`crate::db::server_name`]; starts the thread that renews this
    /// server's upload claims.
    ///
    /// # Errors
    /// If the blob folder cannot be made.
    pub fn open(
        pool: Pool,
        root: &std::path::Path,
        limits: &Limits,
        server: &str,
    ) -> Result<DbDisk, Error> {
        let blobs = Blobs::open(root)?;
        DbDisk::start(pool, Some(blobs), None, limits, server)
    }

    /// A disk over `pool` with its bytes in the bucket of `s3`
    /// (`--blobs`), for the server `server` (as [`DbDisk::open`]).
    ///
    /// # Errors
    /// If the claims thread cannot start.
    pub fn open_s3(pool: Pool, s3: S3, limits: &Limits, server: &str) -> Result<DbDisk, Error> {
        DbDisk::start(pool, None, Some(s3), limits, server)
    }

    fn start(
        pool: Pool,
        blobs: Option<Blobs>,
        s3: Option<S3>,
        limits: &Limits,
        server: &str,
    ) -> Result<DbDisk, Error> {
        let inner = Arc::new(Inner {
            pool,
            blobs,
            s3,
            server: server.to_string(),
            claims: AtomicU64::new(0),
            live: Mutex::default(),
            pending: Mutex::default(),
            max_staged: limits.max_staged,
            max_files: limits.max_files,
            listing_budget: Arc::new(Budget::new(limits.listing_memory)),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("claims".into())
            .spawn(move || heartbeat(&weak))
            .map_err(|e| Error::Internal(format!("cannot start the claims thread: {e}")))?;
        Ok(DbDisk { inner })
    }

    /// The disk as `netdisk user … --db` sees it: rows only, no blob
    /// folder (the command may run anywhere), no claims to renew.
    pub fn for_admin(pool: Pool) -> DbDisk {
        DbDisk {
            inner: Arc::new(Inner {
                pool,
                blobs: None,
                s3: None,
                server: "admin".into(),
                claims: AtomicU64::new(0),
                live: Mutex::default(),
                pending: Mutex::default(),
                max_staged: 0,
                max_files: 0,
                listing_budget: Arc::new(Budget::new(0)),
            }),
        }
    }
}

/// Renews this server's claims until the disk is dropped.
fn heartbeat(inner: &Weak<Inner>) {
    loop {
        thread::sleep(HEARTBEAT);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let live: Vec<String> = inner.live_claims().iter().cloned().collect();
        if live.is_empty() {
            continue;
        }
        if let Ok(mut c) = inner.pool.get() {
            let _ = c.execute(
                "UPDATE staged SET heartbeat = $1 WHERE holder = ANY($2)",
                &[&now(), &live],
            );
        }
    }
}

impl Inner {
    fn blobs(&self) -> Result<&Blobs, Error> {
        self.blobs
            .as_ref()
            .ok_or_else(|| Error::Internal("an admin command reads no file".into()))
    }

    /// The account id of `key`.
    fn account(&self, c: &mut impl GenericClient, key: &str) -> Result<i64, Error> {
        match c.query_opt("SELECT id FROM accounts WHERE key = $1", &[&key])? {
            Some(row) => Ok(row.get(0)),
            None => Err(Error::Internal(format!("no account {key:?}"))),
        }
    }

    /// Locks `key`'s account row for the rest of `tx` (see the module
    /// comment); returns its id.
    fn lock_account(&self, tx: &mut Transaction<'_>, key: &str) -> Result<i64, Error> {
        match tx.query_opt("SELECT id FROM accounts WHERE key = $1 FOR UPDATE", &[&key])? {
            Some(row) => Ok(row.get(0)),
            None => Err(Error::Internal(format!("no account {key:?}"))),
        }
    }

    /// The rows of `path` and its parents.
    fn find(&self, c: &mut impl GenericClient, account: i64, path: &str) -> Result<Found, Error> {
        let mut wanted = ancestors(path);
        wanted.push(path.to_string());
        let rows = c.query(
            "SELECT path, is_dir, size, mtime, md5, blob FROM nodes
             WHERE account = $1 AND path = ANY($2)",
            &[&account, &wanted],
        )?;
        Ok(Found::of(rows, path))
    }

    /// [`Inner::find`] by the account's key, in one round trip (a `get`'s
    /// whole business with the database). No account: no rows.
    fn find_by_key(&self, c: &mut postgres::Client, key: &str, path: &str) -> Result<Found, Error> {
        use postgres::types::Type;
        let mut wanted = ancestors(path);
        wanted.push(path.to_string());
        // Typed: parsed with its parameters, without a round trip of its own.
        let rows = c.query_typed(
            "SELECT n.path, n.is_dir, n.size, n.mtime, n.md5, n.blob
             FROM nodes n JOIN accounts a ON a.id = n.account
             WHERE a.key = $1 AND n.path = ANY($2)",
            &[(&key, Type::TEXT), (&wanted, Type::TEXT_ARRAY)],
        )?;
        Ok(Found::of(rows, path))
    }

    /// Drops blobs whose rows are gone, once `retired` names them; `only`
    /// limits it to those (after a commit), else it takes what it can.
    fn free(&self, only: Option<&[String]>) {
        if let Some(s3) = &self.s3 {
            self.free_s3(s3, only);
            return;
        }
        let Some(blobs) = &self.blobs else {
            return;
        };
        if only.is_some_and(<[String]>::is_empty) {
            return;
        }
        let Ok(mut c) = self.pool.get() else {
            return;
        };
        let taken = match only {
            Some([]) => return,
            Some(keys) => c.query(
                "DELETE FROM retired WHERE blob = ANY($1) RETURNING blob",
                &[&keys],
            ),
            None => c.query(
                "DELETE FROM retired WHERE blob IN
                   (SELECT blob FROM retired FOR UPDATE SKIP LOCKED LIMIT 10000)
                 RETURNING blob",
                &[],
            ),
        };
        // Deleted here after their rows left `retired`: a crash between
        // costs disk space, never a file.
        for row in taken.unwrap_or_default() {
            let blob: String = row.get(0);
            let _ = blobs.delete(&blob);
        }
    }

    /// Deletes the local blobs no row names and nothing has written to for
    /// `max_age`: an upload in one go is claimed in memory only, so one cut
    /// short by a crash before its commit leaves its bytes unnamed.
    fn sweep_unnamed(&self, max_age: Duration) {
        let Some(blobs) = &self.blobs else {
            return;
        };
        let before = std::time::SystemTime::now()
            .checked_sub(max_age)
            .unwrap_or(std::time::UNIX_EPOCH);
        for keys in blobs.written_before(before).chunks(1000) {
            let Ok(mut c) = self.pool.get() else {
                return;
            };
            let unnamed = c.query(
                "SELECT b FROM unnest($1::text[]) AS t(b)
                 WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE blob = b)
                   AND NOT EXISTS (SELECT 1 FROM staged WHERE blob = b)
                   AND NOT EXISTS (SELECT 1 FROM retired WHERE blob = b)",
                &[&keys],
            );
            drop(c);
            for row in unnamed.unwrap_or_default() {
                let _ = blobs.delete(row.get::<_, &str>(0));
            }
        }
    }

    /// [`Inner::free`] in S3: each retired object deleted (an unfinished
    /// upload's multipart upload aborted) while its row is locked, and the
    /// row dropped once the store said yes, so that a store fault leaves
    /// it for the next sweep and no two servers work on one (`SKIP
    /// LOCKED`): each is aborted or deleted exactly once.
    fn free_s3(&self, s3: &S3, only: Option<&[String]>) {
        if only.is_some_and(<[String]>::is_empty) {
            return;
        }
        let Ok(mut c) = self.pool.get() else {
            return;
        };
        let Ok(mut tx) = c.transaction() else {
            return;
        };
        let rows = match only {
            Some(keys) => tx.query(
                "SELECT blob, upload_id FROM retired WHERE blob = ANY($1) FOR UPDATE SKIP LOCKED",
                &[&keys],
            ),
            None => tx.query(
                "SELECT blob, upload_id FROM retired FOR UPDATE SKIP LOCKED LIMIT 1000",
                &[],
            ),
        };
        let mut done = Vec::new();
        for row in rows.unwrap_or_default() {
            let (blob, upload_id): (String, Option<String>) = (row.get(0), row.get(1));
            let aborted = upload_id.map_or(Ok(()), |id| s3.abort_multipart(&blob, &id));
            if aborted.is_ok() && s3.delete_object(&blob).is_ok() {
                done.push(blob);
            }
        }
        if !done.is_empty()
            && tx
                .execute("DELETE FROM retired WHERE blob = ANY($1)", &[&done])
                .is_ok()
        {
            let _ = tx.commit();
        }
    }

    /// Drops the staged rows of `account` that `filter` selects (their
    /// bookings with them) and retires their blobs; returns the blobs.
    fn drop_staged(
        &self,
        tx: &mut Transaction<'_>,
        account: i64,
        filter: &str,
        arg: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<Vec<String>, Error> {
        let sql = format!(
            "WITH gone AS (DELETE FROM staged WHERE account = $1 AND {filter}
                           RETURNING blob, size, upload_id),
                  booked AS (UPDATE accounts SET
                      staged_count = staged_count - (SELECT count(*) FROM gone),
                      staged_bytes = staged_bytes - (SELECT coalesce(sum(size), 0) FROM gone)
                    WHERE id = $1)
             INSERT INTO retired (blob, since, upload_id) SELECT blob, $3, upload_id FROM gone
             ON CONFLICT DO NOTHING RETURNING blob"
        );
        let rows = tx.query(&sql, &[&account, arg, &now()])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn claim_name(&self) -> String {
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}/{n}", self.server);
        self.live_claims().insert(name.clone());
        name
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        // A set of names, as `live`.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_claims(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A set of names: nothing is left half-changed by a panic.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `holder` is a claim of this server that no connection holds
    /// any more (its release failed): free to take over.
    fn orphaned(&self, holder: &str) -> bool {
        holder
            .strip_prefix(self.server.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
            && !self.live_claims().contains(holder)
    }
}

/// Whether a staged row's claim is held by a live server.
/// Its server has a connection to the database now (a killed server's
/// connections end with it, so its claims are free at once).
const LIVE: &str = "holder IS NOT NULL AND heartbeat > $9
    AND EXISTS (SELECT 1 FROM pg_stat_activity
                WHERE application_name = 'netdisk/' || split_part(holder, '/', 1))";

impl Disk for DbDisk {
    fn create_home(&self, _key: &str) -> Result<(), Error> {
        // A new account row has a new id: it owns no row of an older one.
        Ok(())
    }

    fn remove_home(&self, key: &str) -> Result<(), Error> {
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        let Ok(account) = inner.lock_account(&mut tx, key) else {
            return Ok(());
        };
        // The filter must use its parameter: PostgreSQL refuses a
        // statement with one whose type it cannot tell.
        let mut freed = inner.drop_staged(&mut tx, account, "$2::boolean", &true)?;
        let rows = tx.query(
            "WITH gone AS (DELETE FROM nodes WHERE account = $1 RETURNING blob),
                  counted AS (UPDATE accounts SET used_files = 0, used_bytes = 0 WHERE id = $1)
             INSERT INTO retired (blob, since) SELECT blob, $2 FROM gone WHERE blob IS NOT NULL
             ON CONFLICT DO NOTHING RETURNING blob",
            &[&account, &now()],
        )?;
        freed.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        tx.commit()?;
        // Freeing takes a connection of its own: this one goes back
        // first, or a busy pool would wait on itself.
        drop(c);
        inner.free(Some(&freed));
        Ok(())
    }

    fn attic(&self) -> Option<PathBuf> {
        None
    }

    fn kind(&self, key: &str, path: &str) -> Result<Kind, Error> {
        if path.is_empty() {
            return Ok(Kind::Folder(Stat { size: 0, mtime: 0 }));
        }
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let account = inner.account(&mut *c, key)?;
        let found = inner.find(&mut *c, account, path)?;
        match found.check_parents(path, false) {
            Ok(()) => {}
            Err(Error::NotFound) => return Ok(Kind::Nothing),
            Err(e) => return Err(e),
        }
        Ok(match found.this {
            None => Kind::Nothing,
            Some((dir, size, mtime, _, _)) => {
                let stat = Stat {
                    size: uint(size),
                    mtime: uint(mtime),
                };
                if dir {
                    Kind::Folder(stat)
                } else {
                    Kind::File(stat)
                }
            }
        })
    }

    fn listing(&self, key: &str, path: &str, recursive: bool) -> Result<Listing, Error> {
        match self.kind(key, path)? {
            Kind::Folder(_) => {}
            Kind::File(_) => return Err(Error::NotAFolder(path.to_string())),
            Kind::Nothing => return Err(Error::NotFound),
        }
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let account = inner.account(&mut *c, key)?;
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let (sql, under): (&str, &(dyn ToSql + Sync)) = if recursive {
            (
                "SELECT path, is_dir, size, mtime, md5 FROM nodes
                 WHERE account = $1 AND starts_with(path, $2)",
                &prefix,
            )
        } else {
            (
                "SELECT path, is_dir, size, mtime, md5 FROM nodes
                 WHERE account = $1 AND parent = $2",
                &path,
            )
        };
        let params: [&(dyn ToSql + Sync); 2] = [&account, under];
        // Row by row into the listing's compact form, never all the rows
        // at once (a folder may hold a hundred thousand).
        let mut rows = c.query_raw(sql, params)?;
        let mut failed = None;
        let skip = if path.is_empty() { 0 } else { path.len() + 1 };
        let records = std::iter::from_fn(|| match rows.next() {
            Ok(row) => row,
            Err(e) => {
                failed = Some(e);
                None
            }
        })
        .map(|row| {
            let full: &str = row.get(0);
            Record {
                name: full.get(skip..).unwrap_or_default().to_string(),
                folder: row.get(1),
                size: uint(row.get(2)),
                mtime: uint(row.get(3)),
                md5: row.get(4),
            }
        });
        let listing = Listing::of_records(records)?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(listing),
        }
    }

    fn shared_listing(
        &self,
        key: &str,
        path: &str,
        recursive: bool,
        encode: Encode<'_>,
    ) -> Result<Arc<Vec<u8>>, Error> {
        // What it will take, from the rows' count and name bytes, within
        // the listings' memory budget; frames are not shared between
        // requests here (another server may change the folder meanwhile).
        let inner = &self.inner;
        let want = {
            let mut c = inner.pool.get()?;
            let account = inner.account(&mut *c, key)?;
            let row = if recursive {
                let prefix = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}/")
                };
                c.query_one(
                    "SELECT count(*), coalesce(sum(octet_length(path)), 0)::bigint FROM nodes
                     WHERE account = $1 AND starts_with(path, $2)",
                    &[&account, &prefix],
                )?
            } else {
                c.query_one(
                    "SELECT count(*), coalesce(sum(octet_length(path)), 0)::bigint FROM nodes
                     WHERE account = $1 AND parent = $2",
                    &[&account, &path],
                )?
            };
            let (n, bytes): (i64, i64) = (row.get(0), row.get(1));
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .saturating_mul(PER_ENTRY)
                .saturating_add(
                    usize::try_from(bytes)
                        .unwrap_or(usize::MAX)
                        .saturating_mul(2),
                )
        };
        let charge = inner.listing_budget.reserve(want)?;
        let frame = Arc::new(encode(&self.listing(key, path, recursive)?)?);
        charge.keep(&frame);
        Ok(frame)
    }

    fn list(&self, key: &str) -> Result<Vec<FileInfo>, Error> {
        Ok(self
            .listing(key, "", false)?
            .iter()
            .map(|f| FileInfo {
                name: f.name.to_string(),
                size: f.size,
                mtime: f.mtime,
                md5: f.md5.map(str::to_string),
            })
            .collect())
    }

    fn open_file(&self, key: &str, path: &str) -> Result<Opened, Error> {
        let inner = &self.inner;
        let found = inner.find_by_key(&mut *inner.pool.get()?, key, path)?;
        found.check_parents(path, false)?;
        let Some((dir, size, mtime, md5, blob)) = found.this else {
            return Err(Error::NotFound);
        };
        if dir {
            return Err(Error::IsAFolder);
        }
        let blob = blob.ok_or_else(|| Error::Internal(format!("{path}: a file without bytes")))?;
        let source = match &inner.s3 {
            Some(s3) => {
                let s3 = s3.clone();
                super::Source::Remote(Box::new(move |offset| {
                    let body: Box<dyn std::io::Read + Send> = s3.get_range(&blob, offset)?;
                    Ok(body)
                }))
            }
            None => super::Source::File(inner.blobs()?.open_read(&blob)?),
        };
        Ok(Opened {
            source,
            size: uint(size),
            mtime: uint(mtime),
            md5,
            meta: None,
        })
    }

    fn digest(&self, _key: &str, file: &Opened) -> Result<String, Error> {
        file.md5
            .clone()
            .ok_or_else(|| Error::Internal("a file record without its MD5".into()))
    }

    fn mkdir(&self, key: &str, path: &str) -> Result<(), Error> {
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        let account = inner.lock_account(&mut tx, key)?;
        let found = inner.find(&mut tx, account, path)?;
        found.check_parents(path, true)?;
        if found.this.is_some() {
            return Err(Error::Exists);
        }
        let mut made = ancestors(path);
        made.push(path.to_string());
        let parents: Vec<String> = made.iter().map(|p| parent(p).to_string()).collect();
        tx.execute(
            "INSERT INTO nodes (account, path, parent, is_dir, mtime)
             SELECT $1, p, q, true, $4 FROM unnest($2::text[], $3::text[]) AS t(p, q)
             ON CONFLICT DO NOTHING",
            &[&account, &made, &parents, &now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn delete(&self, key: &str, path: &str, recursive: bool) -> Result<(), Error> {
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        let account = inner.lock_account(&mut tx, key)?;
        let found = inner.find(&mut tx, account, path)?;
        found.check_parents(path, false)?;
        let Some((dir, ..)) = found.this else {
            return Err(Error::NotFound);
        };
        let prefix = format!("{path}/");
        let mut freed = Vec::new();
        if dir {
            let full = tx
                .query_opt(
                    "SELECT 1 FROM nodes WHERE account = $1 AND parent = $2 LIMIT 1",
                    &[&account, &path],
                )?
                .is_some();
            if full && !recursive {
                return Err(Error::NotEmpty);
            }
            let busy = tx.query_opt(
                &format!(
                    "SELECT 1 FROM staged WHERE account = $1 AND starts_with(path, $2)
                     AND {}",
                    LIVE.replace("$9", "$3")
                ),
                &[&account, &prefix, &(now() - CLAIM_LAPSES)],
            )?;
            if busy.is_some() {
                return Err(Error::Locked);
            }
            freed = inner.drop_staged(&mut tx, account, "starts_with(path, $2)", &prefix)?;
        }
        let rows = tx.query(
            "WITH gone AS (DELETE FROM nodes WHERE account = $1
                             AND (path = $2 OR starts_with(path, $3))
                           RETURNING is_dir, size, blob),
                  counted AS (UPDATE accounts SET
                      used_files = used_files - (SELECT count(*) FROM gone WHERE NOT is_dir),
                      used_bytes = used_bytes - (SELECT coalesce(sum(size), 0) FROM gone WHERE NOT is_dir)
                    WHERE id = $1)
             INSERT INTO retired (blob, since) SELECT blob, $4 FROM gone WHERE blob IS NOT NULL
             ON CONFLICT DO NOTHING RETURNING blob",
            &[&account, &path, &prefix, &now()],
        )?;
        freed.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        tx.commit()?;
        // Freeing takes a connection of its own: this one goes back
        // first, or a busy pool would wait on itself.
        drop(c);
        inner.free(Some(&freed));
        Ok(())
    }

    fn rename(&self, key: &str, from: &str, to: &str) -> Result<(), Error> {
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        let account = inner.lock_account(&mut tx, key)?;
        let source = inner.find(&mut tx, account, from)?;
        source.check_parents(from, false)?;
        let Some((folder, ..)) = source.this else {
            return Err(Error::NotFound);
        };
        if folder && (to == from || to.starts_with(&format!("{from}/"))) {
            return Err(Error::bad_request(
                "a folder cannot be moved into itself or below itself",
            ));
        }
        let target = inner.find(&mut tx, account, to)?;
        target.check_parents(to, false)?;
        if target.this.is_some() {
            return Err(Error::Exists);
        }
        let cutoff = now() - CLAIM_LAPSES;
        let busy = if folder {
            tx.query_opt(
                &format!(
                    "SELECT 1 FROM staged WHERE account = $1 AND starts_with(path, $2) AND {}",
                    LIVE.replace("$9", "$3")
                ),
                &[&account, &format!("{from}/"), &cutoff],
            )?
        } else {
            tx.query_opt(
                &format!(
                    "SELECT 1 FROM staged WHERE account = $1 AND path = $2 AND {}",
                    LIVE.replace("$9", "$3")
                ),
                &[&account, &from, &cutoff],
            )?
        };
        if busy.is_some() {
            return Err(Error::Locked);
        }
        // One statement: the folder and its whole subtree move at once.
        tx.execute(
            "UPDATE nodes SET
                 path = $3 || substr(path, char_length($2) + 1),
                 parent = CASE WHEN path = $2 THEN $4
                               ELSE $3 || substr(parent, char_length($2) + 1) END
             WHERE account = $1 AND (path = $2 OR starts_with(path, $2 || '/'))",
            &[&account, &from, &to, &parent(to)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn usage(&self, key: &str) -> Result<(u64, u64), Error> {
        let mut c = self.inner.pool.get()?;
        let row = c
            .query_opt(
                "SELECT used_files, used_bytes FROM accounts WHERE key = $1",
                &[&key],
            )?
            .ok_or_else(|| Error::Internal(format!("no account {key:?}")))?;
        Ok((uint(row.get(0)), uint(row.get(1))))
    }

    fn props(&self, key: &str, path: &str) -> Result<Vec<Prop>, Error> {
        if path.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let account = inner.account(&mut *c, key)?;
        let found = inner.find(&mut *c, account, path)?;
        found.check_parents(path, false)?;
        if found.this.is_none() {
            return Err(Error::NotFound);
        }
        let row = c.query_one(
            "SELECT props FROM nodes WHERE account = $1 AND path = $2",
            &[&account, &path],
        )?;
        let props: Option<serde_json::Value> = row.get(0);
        Ok(props
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    fn set_props(&self, key: &str, path: &str, props: &[Prop]) -> Result<(), Error> {
        if path.is_empty() {
            return Err(Error::bad_request("the root folder keeps no properties"));
        }
        let value = serde_json::to_value(props).map_err(|e| Error::Internal(e.to_string()))?;
        let value = (!props.is_empty()).then_some(value);
        self.update_node(key, path, "props = $3", &value)
    }

    fn set_mtime(&self, key: &str, path: &str, secs: u64) -> Result<(), Error> {
        if path.is_empty() {
            return Ok(());
        }
        self.update_node(key, path, "mtime = $3", &int(secs)?)
    }

    fn lock_one_go(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        if self.inner.s3.is_some() {
            // One PutObject at the commit: booked first, as any upload.
            return self.lock_upload(key, name, size, quota);
        }
        self.lock_deferred(key, name, size, quota)
    }

    fn lock_upload(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        let inner = &self.inner;
        // Sizes are the client's: under a quota one past what a bigint
        // holds is booked as the most it holds, which no quota admits;
        // without one it is refused as more than a disk holds.
        let signed = match quota {
            Some(_) => i64::try_from(size).unwrap_or(i64::MAX),
            None => int(size)?,
        };
        let quota_signed = quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX));
        if inner
            .pending()
            .contains(&(key.to_string(), name.to_string()))
        {
            return Err(Error::Locked);
        }
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        let account = inner.lock_account(&mut tx, key)?;
        let found = inner.find(&mut tx, account, name)?;
        found.check_parents(name, true)?;
        let replaced = match &found.this {
            Some((true, ..)) => return Err(Error::IsAFolder),
            Some((false, size, ..)) => Some(*size),
            None => None,
        };
        let cutoff = now() - CLAIM_LAPSES;
        let staged = tx.query_opt(
            &format!(
                "SELECT size, blob, {}, holder FROM staged
                 WHERE account = $1 AND path = $2 FOR UPDATE",
                LIVE.replace("$9", "$3")
            ),
            &[&account, &name, &cutoff],
        )?;
        // A staged row of another size is an upload started over: its
        // bytes are retired with the old blob, and it starts on a new one.
        let mut freed = Vec::new();
        let (had, prev, blob) = match staged {
            Some(row) => {
                let holder: Option<String> = row.get(3);
                if row.get::<_, bool>(2) && !holder.is_some_and(|h| inner.orphaned(&h)) {
                    return Err(Error::Locked);
                }
                let (prev, old): (i64, String) = (row.get(0), row.get(1));
                if prev == signed {
                    (1i32, prev, old)
                } else {
                    freed.push(old);
                    (1, prev, Blobs::new_key()?)
                }
            }
            None => (0, 0, Blobs::new_key()?),
        };
        let max_staged = i32::try_from(inner.max_staged).unwrap_or(i32::MAX);
        let max_files = i64::try_from(inner.max_files).unwrap_or(i64::MAX);
        // The booking: one conditional statement (see the module comment).
        let booked = tx.query_opt(
            "UPDATE accounts SET staged_count = staged_count + 1 - $2,
                                 staged_bytes = staged_bytes - $3 + $4
             WHERE id = $1
               AND staged_count - $2 < $5
               AND ($6 OR used_files + staged_count - $2 < $7)
               AND ($8::bigint IS NULL
                    OR used_bytes::numeric - $9::bigint + staged_bytes - $3::bigint + $4::bigint
                       <= $8::bigint)
             RETURNING id",
            &[
                &account,
                &had,
                &prev,
                &signed,
                &max_staged,
                &replaced.is_some(),
                &max_files,
                &quota_signed,
                &replaced.unwrap_or(0),
            ],
        )?;
        if booked.is_none() {
            let row = tx.query_one(
                "SELECT used_files, used_bytes, staged_count, staged_bytes FROM accounts WHERE id = $1",
                &[&account],
            )?;
            let (files, used, count, bytes): (i64, i64, i32, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let others = usize::try_from(count - had).unwrap_or(0);
            if others >= inner.max_staged {
                return Err(Error::TooManyStaged(others));
            }
            if replaced.is_none() && uint(files) + others as u64 >= inner.max_files {
                return Err(Error::TooManyFiles(inner.max_files));
            }
            let quota = quota.unwrap_or(0);
            let taken = uint(
                used.saturating_sub(replaced.unwrap_or(0))
                    .saturating_add(bytes)
                    .saturating_sub(prev),
            );
            return Err(Error::QuotaExceeded {
                needs: size,
                left: quota.saturating_sub(taken),
                quota,
            });
        }
        let holder = inner.claim_name();
        // A row of another size loses its digest state with its bytes.
        tx.execute(
            "INSERT INTO staged (account, path, size, blob, holder, heartbeat, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (account, path) DO UPDATE SET
                 holder = $5, heartbeat = $6, blob = $4,
                 hashed = CASE WHEN staged.size = $3 THEN staged.hashed ELSE 0 END,
                 hash_state = CASE WHEN staged.size = $3 THEN staged.hash_state END,
                 created_at = CASE WHEN staged.size = $3 THEN staged.created_at ELSE $6 END,
                 size = $3",
            &[&account, &name, &signed, &blob, &holder, &now()],
        )?;
        if !freed.is_empty() {
            tx.execute(
                "INSERT INTO retired (blob, since) SELECT unnest($1::text[]), $2
                 ON CONFLICT DO NOTHING",
                &[&freed, &now()],
            )?;
        }
        tx.commit()?;
        // Freeing takes a connection of its own: this one goes back
        // first, or a busy pool would wait on itself.
        drop(c);
        inner.free(Some(&freed));
        Ok(UploadLock::Db(DbLock {
            inner: Arc::downgrade(&self.inner),
            account,
            path: name.to_string(),
            size,
            holder,
            blob,
            fresh: had == 0 || prev != signed,
            gone: Arc::default(),
            deferred: None,
        }))
    }

    fn begin_upload(&self, lock: &UploadLock) -> Result<Upload, Error> {
        let UploadLock::Db(lock) = lock else {
            return Err(Error::Internal("a lock from another disk".into()));
        };
        if lock.deferred.is_some() {
            return Err(Error::Internal("an upload in one go is not resumed".into()));
        }
        let inner = &self.inner;
        let state = {
            let mut c = inner.pool.get()?;
            c.query_opt(
                "SELECT hashed, hash_state FROM staged
                 WHERE account = $1 AND path = $2 AND holder = $3",
                &[&lock.account, &lock.path, &lock.holder],
            )?
            .ok_or_else(|| Error::Internal("the upload's claim is gone".into()))?
        };
        let (hashed, saved): (i64, Option<Vec<u8>>) = (state.get(0), state.get(1));
        if let Some(s3) = &inner.s3 {
            return self.resume_parts(s3, lock, hashed, saved);
        }
        let mut file = inner.blobs()?.open_staged(&lock.blob)?;
        let mut held = file.metadata()?.len();
        let mut hasher = Md5::new();
        let saved = saved
            .and_then(|s| SerializedState::<Md5>::try_from(s.as_slice()).ok())
            .and_then(|s| Md5::deserialize(&s).ok());
        if held > lock.size {
            file.set_len(0)?;
            held = 0;
        } else if held > 0 {
            // The digest state kept when it stopped, then only the bytes
            // after it (none, normally).
            match saved.filter(|_| uint(hashed) <= held && hashed > 0) {
                Some(state) => {
                    hasher = state;
                    hash_range(&file, uint(hashed), held, &mut hasher)?;
                }
                None => hash_prefix(&file, held, &mut hasher)?,
            }
        }
        file.seek(SeekFrom::Start(held))?;
        Ok(Upload::Db(self.upload(
            lock,
            Sink::File(file),
            hasher,
            held,
        )))
    }

    fn begin_fresh_upload(&self, lock: &UploadLock) -> Result<Upload, Error> {
        let UploadLock::Db(lock) = lock else {
            return Err(Error::Internal("a lock from another disk".into()));
        };
        if let Some(s3) = &self.inner.s3 {
            return self.fresh_parts(s3, lock);
        }
        if lock.deferred.is_some() {
            // A new blob, its folder synced with the commit's.
            let file = self.inner.blobs()?.open_new(&lock.blob)?;
            return Ok(Upload::Db(self.upload(
                lock,
                Sink::File(file),
                Md5::new(),
                0,
            )));
        }
        let file = self.inner.blobs()?.open_staged(&lock.blob)?;
        file.set_len(0)?;
        if !lock.fresh {
            let mut c = self.inner.pool.get()?;
            c.execute(
                "UPDATE staged SET hashed = 0, hash_state = NULL
                 WHERE account = $1 AND path = $2 AND holder = $3",
                &[&lock.account, &lock.path, &lock.holder],
            )?;
        }
        Ok(Upload::Db(self.upload(
            lock,
            Sink::File(file),
            Md5::new(),
            0,
        )))
    }

    fn staged_bytes(&self, key: &str) -> u64 {
        let Ok(mut c) = self.inner.pool.get() else {
            return 0;
        };
        if self.inner.s3.is_some() {
            // The parts sent: what the store holds of each.
            return c
                .query_one(
                    "SELECT coalesce(sum(s.hashed), 0)::bigint FROM staged s
                     JOIN accounts a ON a.id = s.account WHERE a.key = $1",
                    &[&key],
                )
                .map_or(0, |r| uint(r.get(0)));
        }
        let rows = c
            .query(
                "SELECT s.blob FROM staged s JOIN accounts a ON a.id = s.account WHERE a.key = $1",
                &[&key],
            )
            .unwrap_or_default();
        rows.iter()
            .map(|r| self.inner.blobs.as_ref().map_or(0, |b| b.len(r.get(0))))
            .fold(0u64, u64::saturating_add)
    }

    fn staged_offset(&self, key: &str, name: &str, size: u64) -> u64 {
        let Ok(mut c) = self.inner.pool.get() else {
            return 0;
        };
        let row = c.query_opt(
            "SELECT s.size, s.blob, s.hashed FROM staged s JOIN accounts a ON a.id = s.account
             WHERE a.key = $1 AND s.path = $2",
            &[&key, &name],
        );
        match row {
            Ok(Some(row)) if uint(row.get(0)) == size => {
                let held = match &self.inner.s3 {
                    Some(_) => uint(row.get(2)),
                    None => self.inner.blobs.as_ref().map_or(0, |b| b.len(row.get(1))),
                };
                if held <= size {
                    held
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    fn uploading(&self, key: &str, name: &str) -> bool {
        if self
            .inner
            .pending()
            .contains(&(key.to_string(), name.to_string()))
        {
            return true;
        }
        let Ok(mut c) = self.inner.pool.get() else {
            return false;
        };
        c.query_opt(
            &format!(
                "SELECT 1 FROM staged JOIN accounts a ON a.id = staged.account
                 WHERE a.key = $1 AND staged.path = $2 AND {}",
                LIVE.replace("$9", "$3")
            ),
            &[&key, &name, &(now() - CLAIM_LAPSES)],
        )
        .is_ok_and(|r| r.is_some())
    }

    fn discard(&self, key: &str, name: &str) -> Result<(), Error> {
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        let account = inner.lock_account(&mut tx, key)?;
        let row = tx.query_opt(
            &format!(
                "SELECT {} FROM staged WHERE account = $1 AND path = $2",
                LIVE.replace("$9", "$3")
            ),
            &[&account, &name, &(now() - CLAIM_LAPSES)],
        )?;
        match row {
            None => return Err(Error::NothingStaged),
            Some(r) if r.get::<_, bool>(0) => return Err(Error::Locked),
            Some(_) => {}
        }
        let freed = inner.drop_staged(&mut tx, account, "path = $2", &name)?;
        tx.commit()?;
        // Freeing takes a connection of its own: this one goes back
        // first, or a busy pool would wait on itself.
        drop(c);
        inner.free(Some(&freed));
        Ok(())
    }

    fn sweep_staging(&self, max_age: Duration) {
        let inner = &self.inner;
        let Ok(mut c) = inner.pool.get() else {
            return;
        };
        let old = now() - i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let stale = c
            .query(
                &format!(
                    "SELECT DISTINCT account FROM staged WHERE created_at < $1
                     AND NOT coalesce({}, false)",
                    LIVE.replace("$9", "$2")
                ),
                &[&old, &(now() - CLAIM_LAPSES)],
            )
            .unwrap_or_default();
        for row in stale {
            let account: i64 = row.get(0);
            let Ok(mut tx) = c.transaction() else {
                return;
            };
            let locked = tx.query_opt(
                "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&account],
            );
            if !matches!(locked, Ok(Some(_))) {
                continue;
            }
            let filter = format!(
                "created_at < $2 AND NOT coalesce({}, false)",
                LIVE.replace("$9", &(now() - CLAIM_LAPSES).to_string())
            );
            if inner.drop_staged(&mut tx, account, &filter, &old).is_ok() {
                let _ = tx.commit();
            }
        }
        drop(c);
        inner.free(None);
        inner.sweep_unnamed(max_age);
    }

    fn recount_usage(&self) {
        // Every figure is changed by the statement that changes what it
        // counts, in one transaction: nothing to correct after a crash.
        self.inner.free(None);
    }

    fn empty_trash(&self) {
        self.inner.free(None);
    }

    fn release_claims(&self) {
        let inner = &self.inner;
        if let Ok(mut c) = inner.pool.get() {
            let mine = format!("{}/", inner.server);
            let _ = c.execute(
                "UPDATE staged SET holder = NULL WHERE starts_with(holder, $1)",
                &[&mine],
            );
        }
    }
}

impl DbDisk {
    fn upload(&self, lock: &DbLock, sink: Sink, hasher: Md5, held: u64) -> DbUpload {
        DbUpload {
            inner: Arc::clone(&self.inner),
            sink,
            settled: false,
            hasher,
            held,
            size: lock.size,
            account: lock.account,
            path: lock.path.clone(),
            holder: lock.holder.clone(),
            blob: lock.blob.clone(),
            gone: Arc::clone(&lock.gone),
            deferred: lock.deferred.clone(),
        }
    }

    /// Resumes an S3 upload after the parts its row records, with the MD5
    /// state after them; one whose record does not add up starts over.
    fn resume_parts(
        &self,
        s3: &S3,
        lock: &DbLock,
        hashed: i64,
        saved: Option<Vec<u8>>,
    ) -> Result<Upload, Error> {
        let row = self.inner.pool.get()?.query_one(
            "SELECT upload_id, parts, tail FROM staged
             WHERE account = $1 AND path = $2 AND holder = $3",
            &[&lock.account, &lock.path, &lock.holder],
        )?;
        let upload_id: Option<String> = row.get(0);
        let sent: Vec<parts::Part> = serde_json::from_value(row.get(1)).unwrap_or_default();
        let tail: Vec<u8> = row.get::<_, Option<Vec<u8>>>(2).unwrap_or_default();
        let state = saved
            .and_then(|s| SerializedState::<Md5>::try_from(s.as_slice()).ok())
            .and_then(|s| Md5::deserialize(&s).ok());
        let parts = parts::Parts::new(s3.clone(), &lock.blob, lock.size, upload_id, sent, tail);
        let held = parts.held();
        // The record adds up: its parts and tail are the bytes hashed (and
        // a multipart upload has its id).
        let whole = held == uint(hashed)
            && held > 0
            && held <= lock.size
            && (parts.sent_bytes() == 0 || parts.has_upload());
        match state {
            Some(hasher) if whole => Ok(Upload::Db(self.upload(
                lock,
                Sink::Parts(Box::new(parts)),
                hasher,
                held,
            ))),
            _ => self.fresh_parts(s3, lock),
        }
    }

    /// Starts an S3 upload from its first byte: a multipart upload the row
    /// named is aborted (its parts are worth nothing now).
    fn fresh_parts(&self, s3: &S3, lock: &DbLock) -> Result<Upload, Error> {
        let mut c = self.inner.pool.get()?;
        let keys: [&(dyn ToSql + Sync); 3] = [&lock.account, &lock.path, &lock.holder];
        let old = c.query_opt(
            "SELECT upload_id FROM staged WHERE account = $1 AND path = $2 AND holder = $3",
            &keys,
        )?;
        c.execute(
            "UPDATE staged SET hashed = 0, hash_state = NULL, upload_id = NULL, parts = '[]',
                 tail = NULL
             WHERE account = $1 AND path = $2 AND holder = $3",
            &keys,
        )?;
        drop(c);
        if let Some(id) = old.and_then(|r| r.get::<_, Option<String>>(0)) {
            let _ = s3.abort_multipart(&lock.blob, &id);
        }
        let parts = parts::Parts::new(s3.clone(), &lock.blob, lock.size, None, vec![], vec![]);
        Ok(Upload::Db(self.upload(
            lock,
            Sink::Parts(Box::new(parts)),
            Md5::new(),
            0,
        )))
    }

    /// Sets one column of the row at `path`.
    fn update_node(
        &self,
        key: &str,
        path: &str,
        set: &str,
        value: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let mut c = inner.pool.get()?;
        let account = inner.account(&mut *c, key)?;
        let found = inner.find(&mut *c, account, path)?;
        found.check_parents(path, false)?;
        let n = c.execute(
            &format!("UPDATE nodes SET {set} WHERE account = $1 AND path = $2"),
            &[&account, &path, value],
        )?;
        if n == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }
}

impl DbUpload {
    pub fn offset(&self) -> u64 {
        self.held
    }

    pub fn remaining(&self) -> u64 {
        self.size - self.held
    }

    pub fn held_md5(&self) -> String {
        crate::protocol::md5_hex(self.hasher.clone().finalize())
    }

    /// As [`crate::storage::Upload::receive`]; an interrupted upload keeps
    /// its digest state in its row, so that any server resumes it without
    /// hashing a staged byte again.
    ///
    /// # Errors
    /// `fill`'s, or a write's.
    pub fn receive(
        &mut self,
        mut fill: impl FnMut(&mut [u8]) -> (usize, Result<(), Error>),
    ) -> Result<(), Error> {
        let file = match &mut self.sink {
            Sink::File(file) => &*file,
            Sink::Parts(parts) => {
                return receive_parts(
                    parts,
                    &mut self.hasher,
                    &mut self.held,
                    self.size,
                    &self.inner.pool,
                    &parts::Row {
                        account: self.account,
                        path: &self.path,
                        holder: &self.holder,
                    },
                    fill,
                )
            }
        };
        let held = &mut self.held;
        let mut unhashed = 0;
        let received = hashed_copy(&mut self.hasher, self.size - *held, Some(file), |chunk| {
            let (got, read) = fill(chunk);
            let mut w = file;
            w.write_all(&chunk[..got])?;
            *held += got as u64;
            if read.is_err() {
                unhashed = got as u64;
            }
            read
        });
        if received.is_err() && self.deferred.is_none() {
            let hashed = self.held - unhashed;
            if hashed > 0 {
                self.keep_state(hashed);
            }
        }
        received
    }

    fn keep_state(&self, hashed: u64) {
        let Ok(mut c) = self.inner.pool.get() else {
            return;
        };
        let state = self.hasher.serialize().to_vec();
        let _ = c.execute(
            "UPDATE staged SET hashed = $4, hash_state = $5
             WHERE account = $1 AND path = $2 AND holder = $3",
            &[
                &self.account,
                &self.path,
                &self.holder,
                &i64::try_from(hashed).unwrap_or(0),
                &state,
            ],
        );
    }

    /// Drops the bytes of an upload in one go (it has no row).
    fn drop_bytes(&mut self) {
        self.settled = true;
        if let Ok(blobs) = self.inner.blobs() {
            let _ = blobs.delete(&self.blob);
        }
    }

    /// Drops what this upload staged, its row and its booking.
    pub fn discard(mut self) {
        self.settled = true;
        let inner = Arc::clone(&self.inner);
        if let Some(d) = self.deferred.take() {
            // No row of its own; what an earlier upload of the name
            // staged goes too, unless it is in progress (PROTOCOL.md).
            self.drop_bytes();
            let _ = DbDisk { inner }.discard(&d.key, &self.path);
            return;
        }
        let Ok(mut c) = inner.pool.get() else {
            return;
        };
        let Ok(mut tx) = c.transaction() else {
            return;
        };
        if tx
            .query_opt(
                "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&self.account],
            )
            .is_err()
        {
            return;
        }
        let filter = "path = $2 AND holder = '".to_string() + &self.holder.replace('\'', "") + "'";
        let freed = inner.drop_staged(&mut tx, self.account, &filter, &self.path);
        let Ok(freed) = freed else {
            return;
        };
        if tx.commit().is_ok() {
            drop(c);
            inner.free(Some(&freed));
        }
    }

    /// Checks the digest: on a match ready to commit, else discarded.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH`.
    pub fn verify(self, expected: &str) -> Result<DbVerified, Error> {
        debug_assert_eq!(self.held, self.size);
        let actual = crate::protocol::md5_hex(self.hasher.clone().finalize());
        if actual != expected {
            self.discard();
            return Err(Error::ChecksumMismatch);
        }
        Ok(DbVerified {
            upload: self,
            md5: actual,
        })
    }
}

/// An S3 upload that ends uncommitted (all its bytes in but no digest
/// yet, a step 4 refused, a commit that failed) keeps what its row does
/// not hold yet.
impl Drop for DbUpload {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Sink::Parts(parts) = &mut self.sink {
            if parts.unkept() {
                let row = parts::Row {
                    account: self.account,
                    path: &self.path,
                    holder: &self.holder,
                };
                let _ = parts.keep_tail(&self.inner.pool, &row, &self.hasher);
            }
        }
    }
}

/// [`DbUpload::receive`] into S3 parts: what arrives is hashed and cut
/// into parts, each sent and recorded once whole; an upload that stops
/// keeps the rest in its row.
fn receive_parts(
    parts: &mut parts::Parts,
    hasher: &mut Md5,
    held: &mut u64,
    size: u64,
    pool: &Pool,
    row: &parts::Row<'_>,
    mut fill: impl FnMut(&mut [u8]) -> (usize, Result<(), Error>),
) -> Result<(), Error> {
    let mut buf = vec![0u8; (size - *held).min(1 << 20) as usize];
    while *held < size {
        let want = (size - *held).min(buf.len() as u64) as usize;
        let (got, read) = fill(&mut buf[..want]);
        let fed = parts::feed(parts, hasher, &buf[..got], pool, row);
        *held = parts.held();
        if let Err(e) = fed.and(read) {
            // Stopped: what it holds past its last part is kept to resume
            // from (a fault keeping it leaves the last part's record).
            if parts.unkept() {
                let _ = parts.keep_tail(pool, row, hasher);
            }
            return Err(e);
        }
    }
    Ok(())
}

impl DbVerified {
    /// Places several uploads of one connection: those in one go in one
    /// transaction ([`one_go`]), the others one by one; answers in order.
    pub fn place_all(items: Vec<DbVerified>) -> Vec<one_go::Placed> {
        if items.iter().all(|i| i.upload.deferred.is_some()) {
            return one_go::commit(items);
        }
        items.into_iter().map(DbVerified::place).collect()
    }

    pub fn sync(&self) -> Result<(), Error> {
        // An S3 upload is sent whole when it is placed.
        if let Sink::File(file) = &self.upload.sink {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Commits the upload in one transaction: the parents it lacks made,
    /// the file row written over the old one (whose blob is retired), the
    /// staged row and its booking dropped, the usage updated. Its bytes
    /// were synced and their name made durable before.
    ///
    /// # Errors
    /// `IS_A_FOLDER`, `NOT_A_FOLDER`, `INTERNAL` (the old file kept, the
    /// upload staged).
    pub fn place(self) -> Result<(String, Option<PathBuf>), Error> {
        if self.upload.deferred.is_some() {
            return DbVerified::place_all(vec![self])
                .pop()
                .unwrap_or_else(|| Err(Error::Internal("no answer for the upload".into())));
        }
        let mut up = self.upload;
        let inner = Arc::clone(&up.inner);
        let inner = &inner;
        if let Sink::Parts(parts) = &mut up.sink {
            // The object first: a row never names bytes the store lacks.
            let row = parts::Row {
                account: up.account,
                path: &up.path,
                holder: &up.holder,
            };
            parts.finish(&self.md5, &inner.pool, &row, &up.hasher)?;
        }
        let mut c = inner.pool.get()?;
        let mut tx = c.transaction()?;
        tx.query_one(
            "SELECT id FROM accounts WHERE id = $1 FOR UPDATE",
            &[&up.account],
        )?;
        let ours = tx.query_opt(
            "SELECT 1 FROM staged WHERE account = $1 AND path = $2 AND holder = $3 AND blob = $4",
            &[&up.account, &up.path, &up.holder, &up.blob],
        )?;
        if ours.is_none() {
            return Err(Error::Internal("the upload's claim lapsed".into()));
        }
        let found = inner.find(&mut tx, up.account, &up.path)?;
        found.check_parents(&up.path, true)?;
        let old = match found.this {
            Some((true, ..)) => return Err(Error::IsAFolder),
            Some((false, size, _, _, blob)) => Some((size, blob)),
            None => None,
        };
        let at = now();
        let made = ancestors(&up.path);
        if !made.is_empty() {
            let parents: Vec<String> = made.iter().map(|p| parent(p).to_string()).collect();
            tx.execute(
                "INSERT INTO nodes (account, path, parent, is_dir, mtime)
                 SELECT $1, p, q, true, $4 FROM unnest($2::text[], $3::text[]) AS t(p, q)
                 ON CONFLICT DO NOTHING",
                &[&up.account, &made, &parents, &at],
            )?;
        }
        let size = int(up.size)?;
        tx.execute(
            "INSERT INTO nodes (account, path, parent, is_dir, size, mtime, md5, blob)
             VALUES ($1, $2, $3, false, $4, $5, $6, $7)
             ON CONFLICT (account, path) DO UPDATE SET
                 size = $4, mtime = $5, md5 = $6, blob = $7, props = NULL",
            &[
                &up.account,
                &up.path,
                &parent(&up.path),
                &size,
                &at,
                &self.md5,
                &up.blob,
            ],
        )?;
        let replaced = old.is_some();
        let (old_size, old_blob) = old.map_or((0, None), |(s, b)| (s, b));
        tx.execute(
            "UPDATE accounts SET
                 used_files = used_files + $2, used_bytes = used_bytes + $3 - $4,
                 staged_count = staged_count - 1, staged_bytes = staged_bytes - $3
             WHERE id = $1",
            &[&up.account, &i64::from(!replaced), &size, &old_size],
        )?;
        tx.execute(
            "DELETE FROM staged WHERE account = $1 AND path = $2",
            &[&up.account, &up.path],
        )?;
        let mut freed = Vec::new();
        if let Some(blob) = old_blob.filter(|b| *b != up.blob) {
            tx.execute(
                "INSERT INTO retired (blob, since) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&blob, &at],
            )?;
            freed.push(blob);
        }
        tx.commit()?;
        up.settled = true;
        up.gone.store(true, Ordering::Release);
        // Freeing takes a connection of its own: this one goes back
        // first, or a busy pool would wait on itself.
        drop(c);
        inner.free(Some(&freed));
        let dir = match &up.sink {
            Sink::File(_) => Some(inner.blobs()?.dir_of(&up.blob)?),
            Sink::Parts(_) => None,
        };
        Ok((self.md5, dir))
    }
}

impl From<DbVerified> for Verified {
    fn from(v: DbVerified) -> Verified {
        Verified::Db(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::TestDb;

    pub(super) const LIMITS: Limits = Limits {
        max_staged: 16,
        max_files: 1000,
        listing_memory: 1 << 20,
    };

    /// A disk on a new database with the account `alice`, and its folder.
    pub(super) fn disk(test: &str) -> Option<(TestDb, tempfile::TempDir, DbDisk)> {
        let db = TestDb::create(test)?;
        let pool = db.pool_as("first");
        pool.get()
            .unwrap()
            .execute(
                "INSERT INTO accounts (key, name, password_hash, created_at)
                 VALUES ('alice', 'alice', 'x', 0)",
                &[],
            )
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let disk = DbDisk::open(pool, root.path(), &LIMITS, "first").unwrap();
        Some((db, root, disk))
    }

    /// Stages `data` of an upload of `size` bytes and stops, as a client
    /// that hangs up; returns the offset it began at.
    pub(super) fn stage(disk: &DbDisk, name: &str, size: u64, data: &[u8]) -> u64 {
        let lock = disk.lock_upload("alice", name, size, None).unwrap();
        let mut up = disk.begin_upload(&lock).unwrap();
        let offset = up.offset();
        let mut left = data;
        let _ = up.receive(|buf| {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            left = &left[n..];
            let end = if left.is_empty() {
                Err(Error::Timeout)
            } else {
                Ok(())
            };
            (n, end)
        });
        offset
    }

    fn put(disk: &DbDisk, name: &str, data: &[u8]) {
        let lock = disk
            .lock_upload("alice", name, data.len() as u64, None)
            .unwrap();
        let mut up = disk.begin_upload(&lock).unwrap();
        let mut left = data;
        up.receive(|buf| {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            left = &left[n..];
            (n, Ok(()))
        })
        .unwrap();
        let md5 = crate::protocol::md5_hex(Md5::digest(data));
        up.finish(&md5).unwrap();
    }

    #[test]
    fn removing_a_home_with_files_and_staged_uploads_drops_them_all() {
        let Some((db, root, disk)) = disk("removing_a_home_drops_its_rows") else {
            return;
        };
        disk.mkdir("alice", "docs").unwrap();
        put(&disk, "docs/a", b"some bytes");
        stage(&disk, "b", 100, b"half");
        let admin = DbDisk::for_admin(db.pool());
        admin.remove_home("alice").unwrap();
        let mut c = db.pool().get().unwrap();
        for table in ["nodes", "staged"] {
            let n: i64 = c
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{table}");
        }
        let (count, bytes): (i32, i64) = {
            let row = c
                .query_one(
                    "SELECT staged_count, staged_bytes FROM accounts WHERE key = 'alice'",
                    &[],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!((count, bytes), (0, 0));
        // The servers free the blobs the admin command retired.
        disk.empty_trash();
        let left: Vec<_> = walk(&root.path().join("blobs"));
        assert!(left.is_empty(), "{left:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    /// Every change that frees blobs does it with one connection at a
    /// time: with all but one of the pool's taken, each still works (it
    /// used to wait for a second one until the checkout timed out).
    #[test]
    fn changes_that_free_blobs_need_one_connection_at_a_time() {
        let Some((db, root, _)) = disk("changes_that_free_blobs") else {
            return;
        };
        let pool = db.pool_as("second");
        let disk = DbDisk::open(pool.clone(), root.path(), &LIMITS, "second").unwrap();
        put(&disk, "f", b"old");
        stage(&disk, "s", 100, b"half");
        let held: Vec<_> = (1..crate::db::POOL_SIZE)
            .map(|_| pool.get().unwrap())
            .collect();
        let started = std::time::Instant::now();
        put(&disk, "f", b"new");
        disk.rename("alice", "f", "g").unwrap();
        disk.discard("alice", "s").unwrap();
        disk.delete("alice", "g", false).unwrap();
        disk.sweep_staging(Duration::ZERO);
        let lock = disk.lock_upload("alice", "big", 10, None).unwrap();
        let up = disk.begin_upload(&lock).unwrap();
        up.discard();
        drop(lock);
        disk.remove_home("alice").unwrap();
        // None waited for a connection (a wait ends after CHECKOUT_WAIT,
        // and the blobs to free stay behind).
        assert!(
            started.elapsed() < crate::db::CHECKOUT_WAIT,
            "{:?}",
            started.elapsed()
        );
        drop(held);
    }

    #[test]
    fn blobs_no_row_names_are_swept_once_a_day_has_passed_without_a_write() {
        let Some((db, root, disk)) = disk("blobs_no_row_names") else {
            return;
        };
        put(&disk, "f", b"kept");
        let named: String = db
            .pool_as("check")
            .get()
            .unwrap()
            .query_one("SELECT blob FROM nodes WHERE path = 'f'", &[])
            .unwrap()
            .get(0);
        let blobs = Blobs::open(root.path()).unwrap();
        let day = Duration::from_secs(24 * 3600);
        let two_days_ago = std::time::SystemTime::now() - 2 * day;
        let (old, new) = (Blobs::new_key().unwrap(), Blobs::new_key().unwrap());
        for key in [&old, &new] {
            std::io::Write::write_all(&mut blobs.open_new(key).unwrap(), b"unnamed").unwrap();
        }
        for key in [&old, &named] {
            let file = File::options()
                .write(true)
                .open(blobs.path(key).unwrap())
                .unwrap();
            file.set_modified(two_days_ago).unwrap();
        }
        disk.sweep_staging(day);
        assert!(!blobs.path(&old).unwrap().exists(), "an old unnamed blob");
        assert!(blobs.path(&new).unwrap().exists(), "one written lately");
        assert!(blobs.path(&named).unwrap().exists(), "a file's bytes");
        assert_eq!(std::fs::read(blobs.path(&named).unwrap()).unwrap(), b"kept");
    }

    #[test]
    fn sizes_past_a_bigint_are_over_any_quota() {
        let Some((_db, _root, disk)) = disk("sizes_past_a_bigint") else {
            return;
        };
        for size in [u64::MAX, i64::MAX as u64, (i64::MAX as u64) + 1, 1001] {
            assert!(
                matches!(
                    disk.lock_upload("alice", "big", size, Some(1000)),
                    Err(Error::QuotaExceeded { needs, left: 1000, quota: 1000 }) if needs == size
                ),
                "{size}"
            );
        }
        put(&disk, "a", &[7; 600]);
        assert!(matches!(
            disk.lock_upload("alice", "big", u64::MAX, Some(1000)),
            Err(Error::QuotaExceeded { left: 400, .. })
        ));
        assert!(disk.lock_upload("alice", "b", 400, Some(1000)).is_ok());
    }

    #[test]
    fn an_upload_started_over_with_another_size_keeps_none_of_the_old_bytes() {
        let Some((db, root, disk)) = disk("an_upload_started_over") else {
            return;
        };
        let size = 5u64 << 30;
        assert_eq!(stage(&disk, "huge", size, &[1; 4096]), 0);
        assert_eq!(disk.staged_offset("alice", "huge", size), 4096);
        assert_eq!(stage(&disk, "huge", size, &[2; 4096]), 4096);
        assert_eq!(disk.staged_offset("alice", "huge", size + (1 << 32)), 0);
        assert_eq!(stage(&disk, "huge", size + (1 << 32), &[3; 10]), 0);
        assert_eq!(disk.staged_offset("alice", "huge", size + (1 << 32)), 10);
        assert_eq!(disk.staged_bytes("alice"), 10);
        // The old blob is gone, not left behind.
        assert_eq!(walk(&root.path().join("blobs")).len(), 1);
        let row = db
            .pool()
            .get()
            .unwrap()
            .query_one("SELECT staged_count, staged_bytes FROM accounts", &[])
            .unwrap();
        let (count, bytes): (i32, i64) = (row.get(0), row.get(1));
        assert_eq!((count, uint(bytes)), (1, size + (1 << 32)));
    }

    #[test]
    fn the_claims_of_a_server_gone_from_the_database_are_free_at_once() {
        let Some((db, root, disk)) = disk("claims_of_a_gone_server") else {
            return;
        };
        let held = disk.lock_upload("alice", "f", 10, None).unwrap();
        let next = DbDisk::open(db.pool_as("next"), root.path(), &LIMITS, "next").unwrap();
        assert!(matches!(
            next.lock_upload("alice", "f", 10, None),
            Err(Error::Locked)
        ));
        // As a killed server: its claim never released, its connections
        // closed.
        std::mem::forget(held);
        drop(disk);
        // The database notices a closed connection within moments.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match next.lock_upload("alice", "f", 10, None) {
                Ok(_) => break,
                Err(Error::Locked) if std::time::Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the claim of a gone server still holds: {e:?}"),
            }
        }
    }

    #[test]
    fn claims_released_at_shutdown_free_the_name_for_the_next_server() {
        let Some((db, root, disk)) = disk("claims_released_at_shutdown") else {
            return;
        };
        let held = disk.lock_upload("alice", "f", 10, None).unwrap();
        let next = DbDisk::open(db.pool_as("next"), root.path(), &LIMITS, "next").unwrap();
        assert!(matches!(
            next.lock_upload("alice", "f", 10, None),
            Err(Error::Locked)
        ));
        assert!(next.uploading("alice", "f"));
        // The grace period is over: the upload is cut off with the server.
        disk.release_claims();
        assert!(!next.uploading("alice", "f"));
        let lock = next.lock_upload("alice", "f", 10, None).unwrap();
        // The old claim's end takes nothing from the new one.
        drop(held);
        assert!(next.uploading("alice", "f"));
        drop(lock);
    }
}
