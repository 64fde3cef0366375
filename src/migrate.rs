//! `netdisk migrate --data DIR --db URL`: a single-machine data directory
//! moved into PostgreSQL (`serve --db`), its bytes into blobs.
//!
//! - Accounts keep their names, password hashes, creation dates and quotas.
//! - Every folder and file becomes a row (size, mtime, MD5, WebDAV
//!   properties); a file's bytes become a blob under a key made from its
//!   place and version, hard-linked from the old file where the blob
//!   folder is on the same filesystem (no second copy; neither side ever
//!   writes a committed file in place) and copied otherwise.
//! - Unfinished uploads become staged rows with a copy of their bytes
//!   (the copy is appended to later, so never a link); they are re-hashed
//!   on resume.
//! - Idempotent and resumable: an account or row already there is kept,
//!   a file whose row already has its size and MD5 is skipped, and a blob
//!   key names one version of one file, so a run cut short and run again
//!   redoes only what was missing.
//! - At the end every account is checked: the numbers of files and folders
//!   and the bytes match the directory's, and every row's blob hashes to
//!   the row's MD5, which is the MD5 the old server recorded where it had.
//!
//! The old directory is only read (its lock is held, so no server runs on
//! it meanwhile): users.xlsx, the files and their records are unchanged.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use md5::{Digest, Md5};
use postgres::GenericClient;

use crate::db::Pool;
use crate::disk::blobs::Blobs;
use crate::protocol::md5_hex;
use crate::storage::{DataLock, Storage};
use crate::users::{User, UserStore};

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Accounts added, and found already there.
    pub accounts: u64,
    pub accounts_kept: u64,
    /// Folders and files in the directory, and files whose rows were
    /// already complete.
    pub folders: u64,
    pub files: u64,
    pub files_kept: u64,
    /// Bytes of the files.
    pub bytes: u64,
    /// Unfinished uploads moved.
    pub staged: u64,
}

/// Moves the data directory `data` into the database `pool`, the blobs
/// into `to/blobs`; `say` hears one line per account.
///
/// # Errors
/// If `data` is not a data directory, a server runs on it, the database
/// fails, or the check at the end finds a difference (saying which).
pub fn run(
    data: &Path,
    to: &Path,
    pool: &Pool,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    let sheet = data.join("users.xlsx");
    if !sheet.is_file() {
        bail!(
            "{} is not a netdisk data directory (it has no users.xlsx)",
            data.display()
        );
    }
    let _lock = DataLock::acquire(data)?;
    let users =
        UserStore::open(&sheet).with_context(|| format!("cannot load {}", sheet.display()))?;
    let mut storage = Storage::open(data)?;
    // One listing of a whole tree at a time; no server shares this budget.
    storage.set_listing_memory(usize::MAX / 4);
    storage.set_max_files(u64::MAX);
    let blobs =
        Blobs::open(to).with_context(|| format!("cannot make {}", to.join("blobs").display()))?;
    let mut report = Report::default();
    for user in users.list() {
        let moved = account(&storage, &blobs, pool, &user, &mut report)
            .with_context(|| format!("account {}", user.name))?;
        say(&format!(
            "{}: {} files ({} already there), {} folders, {} bytes, {} unfinished uploads; checked",
            user.name, moved.files, moved.files_kept, moved.folders, moved.bytes, moved.staged
        ));
    }
    Ok(report)
}

/// Moves one account; returns its own figures (and adds them to `total`).
fn account(
    storage: &Storage,
    blobs: &Blobs,
    pool: &Pool,
    user: &User,
    total: &mut Report,
) -> anyhow::Result<Report> {
    let mut mine = Report::default();
    if crate::users::pg::insert(pool, user)? {
        total.accounts += 1;
    } else {
        total.accounts_kept += 1;
    }
    let mut c = pool.get()?;
    let id: i64 = c
        .query_one("SELECT id FROM accounts WHERE key = $1", &[&user.key])?
        .get(0);
    let key = &user.key;
    let tree = storage.listing(key, "", true)?;
    for folder in tree.folders() {
        let props = props_of(storage, key, folder.name)?;
        c.execute(
            "INSERT INTO nodes (account, path, parent, is_dir, mtime, props)
             VALUES ($1, $2, $3, true, $4, $5) ON CONFLICT (account, path) DO NOTHING",
            &[
                &id,
                &folder.name,
                &parent(folder.name),
                &int(folder.mtime),
                &props,
            ],
        )?;
        mine.folders += 1;
    }
    for f in tree.iter() {
        mine.files += 1;
        mine.bytes += f.size;
        if file(storage, blobs, &mut *c, id, key, f.name)? {
            mine.files_kept += 1;
        }
    }
    for (name, size) in storage.staged_records(key) {
        staged(storage, blobs, &mut *c, id, key, &name, size)?;
        mine.staged += 1;
    }
    c.execute(
        "UPDATE accounts SET
            used_files = (SELECT count(*) FROM nodes WHERE account = $1 AND NOT is_dir),
            used_bytes = (SELECT coalesce(sum(size), 0)::bigint FROM nodes
                          WHERE account = $1 AND NOT is_dir),
            staged_count = (SELECT count(*) FROM staged WHERE account = $1),
            staged_bytes = (SELECT coalesce(sum(size), 0)::bigint FROM staged WHERE account = $1)
         WHERE id = $1",
        &[&id],
    )?;
    check(storage, blobs, &mut *c, id, key, &mine)?;
    total.folders += mine.folders;
    total.files += mine.files;
    total.files_kept += mine.files_kept;
    total.bytes += mine.bytes;
    total.staged += mine.staged;
    Ok(mine)
}

/// Moves one file; `true` if its row was already complete.
fn file(
    storage: &Storage,
    blobs: &Blobs,
    c: &mut impl GenericClient,
    id: i64,
    key: &str,
    path: &str,
) -> anyhow::Result<bool> {
    let (mut src, meta) = storage.open_file(key, path)?;
    let size = int(meta.len());
    let recorded = storage.recorded_digest(key, &src, &meta);
    let row = c.query_opt(
        "SELECT size, md5, blob FROM nodes WHERE account = $1 AND path = $2",
        &[&id, &path],
    )?;
    let old_blob: Option<String> = row.as_ref().and_then(|r| r.get(2));
    if let Some(r) = &row {
        let (s, md5): (i64, Option<String>) = (r.get(0), r.get(1));
        if s == size && md5.is_some() && (recorded.is_none() || md5 == recorded) {
            return Ok(true);
        }
    }
    let blob = blob_key(&format!(
        "file\0{key}\0{path}\0{}\0{}\0{}.{}",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ));
    place(blobs, &blob, storage, key, path, &mut src, &meta)?;
    let md5 = hash(&mut blobs.open_read(&blob)?)?;
    if recorded.as_ref().is_some_and(|r| *r != md5) {
        bail!("{path}: its bytes do not match the MD5 the server recorded; not moved");
    }
    let props = props_of(storage, key, path)?;
    let mtime = int(crate::storage::mtime_secs(&meta));
    let mut tx = c.transaction()?;
    tx.execute(
        "INSERT INTO nodes (account, path, parent, is_dir, size, mtime, md5, blob, props)
         VALUES ($1, $2, $3, false, $4, $5, $6, $7, $8)
         ON CONFLICT (account, path) DO UPDATE
           SET is_dir = false, size = $4, mtime = $5, md5 = $6, blob = $7, props = $8",
        &[
            &id,
            &path,
            &parent(path),
            &size,
            &mtime,
            &md5,
            &blob,
            &props,
        ],
    )?;
    if let Some(old) = old_blob.filter(|b| *b != blob) {
        tx.execute(
            "INSERT INTO retired (blob, since) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&old, &crate::db::now()],
        )?;
    }
    tx.commit()?;
    Ok(false)
}

/// Moves one unfinished upload (kept if the database has one of that name).
fn staged(
    storage: &Storage,
    blobs: &Blobs,
    c: &mut impl GenericClient,
    id: i64,
    key: &str,
    name: &str,
    size: u64,
) -> anyhow::Result<()> {
    let there = c.query_opt(
        "SELECT 1 FROM staged WHERE account = $1 AND path = $2",
        &[&id, &name],
    )?;
    if there.is_some() {
        return Ok(());
    }
    let part = storage.staged_part(key, name);
    let mut src = File::open(&part).with_context(|| format!("cannot read {}", part.display()))?;
    let meta = src.metadata()?;
    let blob = blob_key(&format!("staged\0{key}\0{name}\0{size}\0{}", meta.len()));
    copy(blobs, &blob, &mut src)?;
    c.execute(
        "INSERT INTO staged (account, path, size, blob, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (account, path) DO NOTHING",
        &[&id, &name, &int(size), &blob, &meta.mtime()],
    )?;
    Ok(())
}

/// Compares the account's rows with what the directory holds.
fn check(
    storage: &Storage,
    blobs: &Blobs,
    c: &mut impl GenericClient,
    id: i64,
    key: &str,
    want: &Report,
) -> anyhow::Result<()> {
    let counts = c.query_one(
        "SELECT count(*) FILTER (WHERE NOT is_dir), count(*) FILTER (WHERE is_dir),
                coalesce(sum(size) FILTER (WHERE NOT is_dir), 0)::bigint,
                (SELECT count(*) FROM staged WHERE account = $1)
         FROM nodes WHERE account = $1",
        &[&id],
    )?;
    let got = (
        uint(counts.get(0)),
        uint(counts.get(1)),
        uint(counts.get(2)),
        uint(counts.get(3)),
    );
    let expected = (want.files, want.folders, want.bytes, want.staged);
    if got != expected {
        bail!(
            "the database holds {} files, {} folders, {} bytes and {} unfinished uploads; \
             the directory {} files, {} folders, {} bytes and {}",
            got.0,
            got.1,
            got.2,
            got.3,
            expected.0,
            expected.1,
            expected.2,
            expected.3
        );
    }
    let tree = storage.listing(key, "", true)?;
    for f in tree.iter() {
        let row = c.query_one(
            "SELECT size, md5, blob FROM nodes WHERE account = $1 AND path = $2 AND NOT is_dir",
            &[&id, &f.name],
        )?;
        let (size, md5, blob): (i64, Option<String>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let (md5, blob) = md5
            .zip(blob)
            .ok_or_else(|| anyhow!("{}: a row without bytes", f.name))?;
        let (src, meta) = storage.open_file(key, f.name)?;
        let recorded = storage.recorded_digest(key, &src, &meta);
        let actual = hash(&mut blobs.open_read(&blob)?)?;
        if uint(size) != meta.len() || actual != md5 || recorded.is_some_and(|r| r != md5) {
            bail!("{}: the moved file differs from the original", f.name);
        }
    }
    Ok(())
}

/// Makes `blob` hold the file `src`: a hard link where it can, a copy
/// otherwise. A blob of that key already there is this very version.
fn place(
    blobs: &Blobs,
    blob: &str,
    storage: &Storage,
    key: &str,
    path: &str,
    src: &mut File,
    meta: &Metadata,
) -> anyhow::Result<()> {
    let target = blobs.path(blob)?;
    if fs::symlink_metadata(&target).is_ok_and(|m| m.len() == meta.len()) {
        return Ok(());
    }
    let _ = fs::remove_file(&target);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir)?;
    }
    let from = storage.file_path(key, path)?;
    match fs::hard_link(&from, &target) {
        Ok(()) if fs::symlink_metadata(&target).is_ok_and(|m| m.ino() == meta.ino()) => Ok(()),
        // Another filesystem (or one without links), or a file replaced
        // since it was opened: copy the bytes of the one opened.
        _ => {
            let _ = fs::remove_file(&target);
            copy(blobs, blob, src)
        }
    }
}

/// Copies `src` from its start into a new blob `blob`, durably.
fn copy(blobs: &Blobs, blob: &str, src: &mut File) -> anyhow::Result<()> {
    use std::io::Seek;
    src.rewind()?;
    let mut out = blobs.open_staged(blob)?;
    out.set_len(0)?;
    io::copy(src, &mut out)?;
    out.flush()?;
    out.sync_all()?;
    Ok(())
}

/// The MD5 of everything `r` holds.
fn hash(r: &mut impl Read) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(md5_hex(hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// A blob key naming one version of one file: 32 hex digits like the
/// random ones, so a rerun finds the blob it made.
fn blob_key(version: &str) -> String {
    md5_hex(Md5::digest(version.as_bytes()))
}

/// The WebDAV properties of `path`, as the database keeps them.
fn props_of(storage: &Storage, key: &str, path: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let props = storage.props(key, path)?;
    Ok((!props.is_empty())
        .then(|| serde_json::to_value(&props))
        .transpose()?)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
