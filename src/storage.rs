//! Files on disk: users' folders, staged uploads and cached digests.
//!
//! ```text
//! DATA/users.xlsx                 accounts (see `users`)
//! DATA/users/KEY/files/NAME       what the user sees: regular files only
//! DATA/users/KEY/staging/H.part   an upload in progress, H = md5(NAME)
//! DATA/users/KEY/staging/H.meta   {"name": NAME, "size": S} of that upload
//! DATA/users/KEY/digests/INO      "SIZE MTIME_NS MD5" of the file with inode INO
//! DATA/attic/KEY.TIME/            a removed user's leftovers, out of reach
//! ```
//!
//! Server files live outside every user's `files/`, so no user name or file
//! name can collide with them. Every name reaching this module has passed
//! [`names::check_file_name`]: it is one plain path component, joined only to
//! the user's own folder. Files are opened with `O_NOFOLLOW | O_NONBLOCK` and
//! their type checked on the open descriptor, so a symlink, FIFO or device
//! placed in a folder is never followed, read or written through.
//!
//! Digests are keyed by inode and checked against size and mtime: a rename
//! keeps the inode, so the MD5 moves with the file for free, and a file
//! changed by other means no longer matches its record and is re-hashed.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::hashcopy::{hash_prefix, hashed_copy};
use crate::names;
use crate::protocol::md5_hex;

/// Uploads in progress, and what each will add to its user's folder.
type Uploads = HashMap<(String, String), u64>;

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    /// Unix seconds.
    pub mtime: u64,
    /// `None` until known for a file placed by other means.
    pub md5: Option<String>,
}

/// The data directory.
pub struct Storage {
    root: PathBuf,
    /// Uploads in progress: (user key, file name) → the bytes the upload
    /// will add to the user's folder when it succeeds, so that uploads in
    /// flight together stay within the quota.
    uploads: Arc<Mutex<Uploads>>,
}

impl Storage {
    /// Opens (creating if needed) the data directory.
    ///
    /// # Errors
    /// If the folders cannot be created.
    pub fn open(root: &Path) -> io::Result<Storage> {
        fs::create_dir_all(root.join("users"))?;
        fs::create_dir_all(root.join("attic"))?;
        Ok(Storage {
            root: root.to_path_buf(),
            uploads: Arc::default(),
        })
    }

    /// Path of `users.xlsx`.
    pub fn users_file(&self) -> PathBuf {
        self.root.join("users.xlsx")
    }

    fn user_dir(&self, key: &str) -> PathBuf {
        self.root.join("users").join(key)
    }

    fn files_dir(&self, key: &str) -> PathBuf {
        self.user_dir(key).join("files")
    }

    /// Gives a new user an empty folder. Anything left under that name by a
    /// removed account is moved to the attic first, never inherited.
    ///
    /// # Errors
    /// If the folders cannot be moved or created.
    pub fn create_home(&self, key: &str) -> io::Result<()> {
        let dir = self.user_dir(key);
        if fs::symlink_metadata(&dir).is_ok() {
            let stamp = unix_secs(SystemTime::now());
            let mut n = 0;
            loop {
                let to = self.root.join("attic").join(format!("{key}.{stamp}.{n}"));
                if fs::symlink_metadata(&to).is_err() {
                    fs::rename(&dir, &to)?;
                    break;
                }
                n += 1;
            }
        }
        self.ensure_home(key)?;
        sync_dir(&self.root.join("users"))
    }

    /// Creates a user's folders if missing (a crash may have left a
    /// registered user without them).
    fn ensure_home(&self, key: &str) -> io::Result<()> {
        for sub in ["files", "staging", "digests"] {
            fs::create_dir_all(self.user_dir(key).join(sub))?;
        }
        Ok(())
    }

    /// Lists a user's regular files, sorted by UTF-8 bytes.
    ///
    /// # Errors
    /// If the folder cannot be read.
    pub fn list(&self, key: &str) -> Result<Vec<FileInfo>, Error> {
        self.ensure_home(key)?;
        let mut out = Vec::new();
        for entry in fs::read_dir(self.files_dir(key))? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if names::check_file_name(&name).is_err() {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let md5 = self.cached_digest(key, &meta);
            out.push(FileInfo {
                name,
                size: meta.len(),
                mtime: unix_secs(meta.modified()?),
                md5,
            });
        }
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    /// Number of files and bytes used by a user's regular files.
    ///
    /// # Errors
    /// If the folder cannot be read.
    pub fn usage(&self, key: &str) -> Result<(u64, u64), Error> {
        self.ensure_home(key)?;
        let mut count = 0;
        let mut used = 0;
        for entry in fs::read_dir(self.files_dir(key))? {
            let entry = entry?;
            let visible = entry
                .file_name()
                .to_str()
                .is_some_and(|n| names::check_file_name(n).is_ok());
            match entry.metadata() {
                Ok(meta) if visible && meta.is_file() => {
                    count += 1;
                    used += meta.len();
                }
                _ => {}
            }
        }
        Ok((count, used))
    }

    /// Size of the regular file `name`, if there is one.
    pub fn size_of(&self, key: &str, name: &str) -> Option<u64> {
        let meta = fs::symlink_metadata(self.files_dir(key).join(name)).ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// Opens a regular file for reading, refusing symlinks, FIFOs, devices.
    ///
    /// # Errors
    /// `NOT_FOUND` if there is no regular file of that name.
    pub fn open_file(&self, key: &str, name: &str) -> Result<(File, Metadata), Error> {
        let path = self.files_dir(key).join(name);
        let file = match open_nofollow(&path, OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Error::NotFound);
        }
        Ok((file, meta))
    }

    /// MD5 of an open file: from the cache when the server stored it,
    /// otherwise computed from disk and cached.
    ///
    /// # Errors
    /// If the file cannot be read.
    pub fn digest(&self, key: &str, file: &File, meta: &Metadata) -> Result<String, Error> {
        if let Some(d) = self.cached_digest(key, meta) {
            return Ok(d);
        }
        let mut hasher = Md5::new();
        hash_prefix(file, meta.len(), &mut hasher)?;
        let digest = md5_hex(&hasher.finalize());
        // Cache only if the file did not change while it was read.
        if file.metadata().is_ok_and(|now| same_version(&now, meta)) {
            self.record_digest(key, meta, &digest)?;
        }
        Ok(digest)
    }

    fn digest_path(&self, key: &str, ino: u64) -> PathBuf {
        self.user_dir(key).join("digests").join(ino.to_string())
    }

    fn cached_digest(&self, key: &str, meta: &Metadata) -> Option<String> {
        let text = fs::read_to_string(self.digest_path(key, meta.ino())).ok()?;
        let mut parts = text.split_whitespace();
        let size: u64 = parts.next()?.parse().ok()?;
        let mtime: i128 = parts.next()?.parse().ok()?;
        let md5 = parts.next()?;
        (size == meta.len() && mtime == mtime_ns(meta) && crate::protocol::is_md5_hex(md5))
            .then(|| md5.to_string())
    }

    fn record_digest(&self, key: &str, meta: &Metadata, md5: &str) -> io::Result<()> {
        let line = format!("{} {} {md5}\n", meta.len(), mtime_ns(meta));
        let path = self.digest_path(key, meta.ino());
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, line)?;
        fs::rename(&tmp, &path)
    }

    /// Deletes a regular file.
    ///
    /// # Errors
    /// `NOT_FOUND` if there is no regular file of that name.
    pub fn delete(&self, key: &str, name: &str) -> Result<(), Error> {
        let path = self.files_dir(key).join(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Err(Error::NotFound),
            Err(e) if is_not_found(&e) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        };
        fs::remove_file(&path)?;
        let _ = fs::remove_file(self.digest_path(key, meta.ino()));
        sync_dir(&self.files_dir(key))?;
        Ok(())
    }

    /// Renames a regular file; never replaces an existing name.
    ///
    /// # Errors
    /// `NOT_FOUND` if `from` is not a regular file, `EXISTS` if `to` exists.
    pub fn rename(&self, key: &str, from: &str, to: &str) -> Result<(), Error> {
        let dir = self.files_dir(key);
        match fs::symlink_metadata(dir.join(from)) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(Error::NotFound),
            Err(e) if is_not_found(&e) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        }
        // link + unlink is an atomic "rename unless the target exists"; the
        // inode, and so the cached digest, carries over.
        match fs::hard_link(dir.join(from), dir.join(to)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(Error::Exists),
            Err(e) if is_not_found(&e) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        }
        fs::remove_file(dir.join(from))?;
        sync_dir(&dir)?;
        Ok(())
    }

    /// Claims the right to upload `name` with `size` bytes for this
    /// connection, and checks that the upload fits in `quota` together with
    /// the files and with the user's other uploads in flight.
    ///
    /// # Errors
    /// `LOCKED` if another connection is uploading that name;
    /// `QUOTA_EXCEEDED` if it would not fit.
    pub fn lock_upload(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        let replaced = self.size_of(key, name).unwrap_or(0);
        let entry = (key.to_string(), name.to_string());
        // Declared before the mutex guard, so that it is dropped after it:
        // its `Drop` takes the same mutex.
        let lock;
        let others: u64 = {
            let mut uploads = self.lock_uploads();
            if uploads.contains_key(&entry) {
                return Err(Error::Locked);
            }
            uploads.insert(entry.clone(), size.saturating_sub(replaced));
            // The guard exists as soon as the entry does: whatever fails
            // from here on, the name is released, never left `LOCKED`.
            lock = UploadLock {
                uploads: Arc::clone(&self.uploads),
                entry,
            };
            // Sizes are the client's: a few near u64::MAX must saturate,
            // not overflow.
            uploads
                .iter()
                .filter(|((k, n), _)| k == key && n != name)
                .fold(0u64, |sum, (_, &grows)| sum.saturating_add(grows))
        };
        if let Some(quota) = quota {
            // Read after the reservations: an upload that finishes meanwhile
            // shows its file before it drops its reservation, so it is
            // counted at least once.
            let (_, used) = self.usage(key)?;
            let after = used
                .saturating_sub(replaced)
                .saturating_add(size)
                .saturating_add(others);
            if after > quota {
                return Err(Error::QuotaExceeded);
            }
        }
        Ok(lock)
    }

    fn lock_uploads(&self) -> std::sync::MutexGuard<'_, Uploads> {
        // Each update is one insert or remove: nothing half-done to see.
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (or resumes) the staged upload of `name` with `size` bytes.
    /// The returned [`Upload`] has already hashed the bytes it holds.
    ///
    /// # Errors
    /// If the staging folder cannot be written.
    pub fn begin_upload(
        &self,
        _lock: &UploadLock,
        key: &str,
        name: &str,
        size: u64,
    ) -> Result<Upload, Error> {
        self.ensure_home(key)?;
        let stage = self.user_dir(key).join("staging");
        let id = md5_hex(&Md5::digest(name.as_bytes()));
        let part = stage.join(format!("{id}.part"));
        let meta_path = stage.join(format!("{id}.meta"));
        let wanted = StagedMeta {
            name: name.to_string(),
            size,
        };
        let resumable = fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<StagedMeta>(&b).ok())
            .is_some_and(|m| m == wanted);
        let mut file = open_nofollow(
            &part,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        let mut held = file.metadata()?.len();
        if !resumable || held > size {
            file.set_len(0)?;
            held = 0;
            fs::write(
                &meta_path,
                serde_json::to_vec(&wanted).map_err(io::Error::other)?,
            )?;
        }
        let mut hasher = Md5::new();
        if held > 0 {
            hash_prefix(&file, held, &mut hasher)?;
        }
        file.seek(SeekFrom::Start(held))?;
        Ok(Upload {
            file,
            hasher,
            held,
            size,
            part,
            meta_path,
            target: self.files_dir(key).join(name),
            digests: self.user_dir(key).join("digests"),
        })
    }

    /// Removes staged uploads nobody touched for `max_age`, except those
    /// being uploaded right now.
    pub fn sweep_staging(&self, max_age: Duration) {
        let Ok(users) = fs::read_dir(self.root.join("users")) else {
            return;
        };
        let now = SystemTime::now();
        let stale = |m: &Metadata| {
            m.modified()
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > max_age)
        };
        for user in users.flatten() {
            let Some(key) = user.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(stage) = fs::read_dir(user.path().join("staging")) else {
                continue;
            };
            for f in stage.flatten() {
                let path = f.path();
                let old = f.metadata().is_ok_and(|m| stale(&m));
                match path.extension().and_then(|e| e.to_str()) {
                    Some("part") if old => {
                        let meta_path = path.with_extension("meta");
                        // Claim the name as an upload would, so that nobody
                        // resumes it while it goes; if somebody is
                        // uploading it right now, it is not stale.
                        let name = fs::read(&meta_path)
                            .ok()
                            .and_then(|b| serde_json::from_slice::<StagedMeta>(&b).ok())
                            .map(|m| m.name);
                        let claim = name.map(|n| self.lock_upload(&key, &n, 0, None));
                        if claim.as_ref().is_some_and(Result::is_err) {
                            continue;
                        }
                        let _ = fs::remove_file(&path);
                        let _ = fs::remove_file(&meta_path);
                    }
                    // A record whose upload is gone.
                    Some("meta") if old && !path.with_extension("part").exists() => {
                        let _ = fs::remove_file(&path);
                    }
                    _ => {}
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StagedMeta {
    name: String,
    size: u64,
}

/// Held while a connection uploads a name; releases the name and its share
/// of the quota on drop.
pub struct UploadLock {
    uploads: Arc<Mutex<Uploads>>,
    entry: (String, String),
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.entry);
    }
}

/// A staged upload: bytes are appended and hashed as they arrive; the
/// visible file is replaced only by [`Upload::finish`] with a matching MD5.
pub struct Upload {
    file: File,
    hasher: Md5,
    held: u64,
    size: u64,
    part: PathBuf,
    meta_path: PathBuf,
    target: PathBuf,
    digests: PathBuf,
}

impl Upload {
    /// Bytes staged so far: where the client continues.
    pub fn offset(&self) -> u64 {
        self.held
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.size - self.held
    }

    /// Receives the rest of the upload. `fill` reads each chunk from the
    /// client and says how many bytes arrived (all of them, unless it also
    /// returns an error). They are written to the staged file while the
    /// chunks before them are hashed, and a large upload is flushed to disk
    /// as it grows.
    ///
    /// # Errors
    /// `fill`'s error, or a failed disk write (a full disk among others).
    /// Every byte that arrived before it is staged for a resume.
    pub fn receive(
        &mut self,
        mut fill: impl FnMut(&mut [u8]) -> (usize, Result<(), Error>),
    ) -> Result<(), Error> {
        let file = &self.file;
        let held = &mut self.held;
        hashed_copy(&mut self.hasher, self.size - *held, Some(file), |chunk| {
            let (got, read) = fill(chunk);
            let mut w = file;
            w.write_all(&chunk[..got])?;
            *held += got as u64;
            read
        })
    }

    /// Checks the client's digest; on a match makes the upload durable and
    /// visible in one rename, on a mismatch discards it.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH` (staged data discarded, old file untouched), or
    /// an I/O error (old file untouched, staged data kept).
    pub fn finish(self, expected: &str) -> Result<String, Error> {
        debug_assert_eq!(self.held, self.size);
        let actual = md5_hex(&self.hasher.finalize());
        if actual != expected {
            drop(self.file);
            let _ = fs::remove_file(&self.part);
            let _ = fs::remove_file(&self.meta_path);
            return Err(Error::ChecksumMismatch);
        }
        self.file.sync_all()?;
        let meta = self.file.metadata()?;
        let line = format!("{} {} {actual}\n", meta.len(), mtime_ns(&meta));
        fs::write(self.digests.join(meta.ino().to_string()), line)?;
        let replaced = fs::symlink_metadata(&self.target).ok().map(|m| m.ino());
        fs::rename(&self.part, &self.target)?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir)?;
        }
        if let Some(old) = replaced.filter(|&i| i != meta.ino()) {
            let _ = fs::remove_file(self.digests.join(old.to_string()));
        }
        let _ = fs::remove_file(&self.meta_path);
        Ok(actual)
    }
}

fn open_nofollow(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer. It has no
    // effect on regular files.
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

fn is_not_found(e: &io::Error) -> bool {
    // ELOOP: the name is a symlink, which does not count as a file.
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP)
}

fn same_version(a: &Metadata, b: &Metadata) -> bool {
    a.ino() == b.ino() && a.len() == b.len() && mtime_ns(a) == mtime_ns(b)
}

fn mtime_ns(m: &Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Fsyncs a directory, making renames and creations in it durable.
///
/// # Errors
/// If the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        s.create_home("alice").unwrap();
        (dir, s)
    }

    /// Sends `data` as a client's body; if it is shorter than the upload
    /// expects, the client hangs up after it.
    fn feed(up: &mut Upload, data: &[u8]) -> Result<(), Error> {
        let mut src = data;
        up.receive(|chunk| {
            let n = chunk.len().min(src.len());
            chunk[..n].copy_from_slice(&src[..n]);
            src = &src[n..];
            if n < chunk.len() {
                let eof = io::ErrorKind::UnexpectedEof.into();
                (n, Err(Error::Disconnected(eof)))
            } else {
                (n, Ok(()))
            }
        })
    }

    fn upload(s: &Storage, name: &str, data: &[u8]) -> Result<String, Error> {
        let lock = s.lock_upload("alice", name, data.len() as u64, None)?;
        let mut up = s.begin_upload(&lock, "alice", name, data.len() as u64)?;
        feed(&mut up, data)?;
        let md5 = md5_hex(&Md5::digest(data));
        up.finish(&md5)
    }

    #[test]
    fn upload_list_rename_delete() {
        let (_d, s) = storage();
        upload(&s, "a.txt", b"hello").unwrap();
        let ls = s.list("alice").unwrap();
        assert_eq!(ls.len(), 1);
        assert_eq!(
            ls[0].md5.as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        s.rename("alice", "a.txt", "b.txt").unwrap();
        let ls = s.list("alice").unwrap();
        assert_eq!(ls[0].name, "b.txt");
        assert!(ls[0].md5.is_some(), "digest follows the rename");
        upload(&s, "c.txt", b"x").unwrap();
        assert!(matches!(
            s.rename("alice", "b.txt", "c.txt"),
            Err(Error::Exists)
        ));
        assert!(matches!(s.rename("alice", "zz", "q"), Err(Error::NotFound)));
        s.delete("alice", "b.txt").unwrap();
        assert!(matches!(s.delete("alice", "b.txt"), Err(Error::NotFound)));
        assert_eq!(s.usage("alice").unwrap(), (1, 1));
    }

    #[test]
    fn resume_continues_from_staged_bytes() {
        let (_d, s) = storage();
        let data = b"0123456789";
        {
            let lock = s.lock_upload("alice", "f", 10, None).unwrap();
            let mut up = s.begin_upload(&lock, "alice", "f", 10).unwrap();
            assert!(feed(&mut up, &data[..4]).is_err(), "the client hung up");
        }
        assert!(
            s.list("alice").unwrap().is_empty(),
            "staged data is not listed"
        );
        let lock = s.lock_upload("alice", "f", 10, None).unwrap();
        let mut up = s.begin_upload(&lock, "alice", "f", 10).unwrap();
        assert_eq!(up.offset(), 4);
        feed(&mut up, &data[4..]).unwrap();
        up.finish(&md5_hex(&Md5::digest(data))).unwrap();
        assert_eq!(fs::read(s.files_dir("alice").join("f")).unwrap(), data);
        // A different size starts over.
        let mut up = s.begin_upload(&lock, "alice", "f", 3).unwrap();
        assert_eq!(up.offset(), 0);
        feed(&mut up, b"abc").unwrap();
        drop(up);
        assert_eq!(s.begin_upload(&lock, "alice", "f", 3).unwrap().offset(), 3);
    }

    #[test]
    fn mismatch_keeps_the_old_file_and_drops_staging() {
        let (_d, s) = storage();
        upload(&s, "f", b"old").unwrap();
        let lock = s.lock_upload("alice", "f", 10, None).unwrap();
        let mut up = s.begin_upload(&lock, "alice", "f", 3).unwrap();
        feed(&mut up, b"new").unwrap();
        assert!(matches!(
            up.finish(&"0".repeat(32)),
            Err(Error::ChecksumMismatch)
        ));
        assert_eq!(fs::read(s.files_dir("alice").join("f")).unwrap(), b"old");
        assert_eq!(s.begin_upload(&lock, "alice", "f", 3).unwrap().offset(), 0);
    }

    #[test]
    fn second_uploader_is_locked_out() {
        let (_d, s) = storage();
        let lock = s.lock_upload("alice", "f", 10, None).unwrap();
        assert!(matches!(
            s.lock_upload("alice", "f", 10, None),
            Err(Error::Locked)
        ));
        assert!(s.lock_upload("alice", "g", 10, None).is_ok());
        drop(lock);
        assert!(s.lock_upload("alice", "f", 10, None).is_ok());
    }

    #[test]
    fn uploads_in_flight_share_the_quota() {
        let (_d, s) = storage();
        upload(&s, "old", &[0; 30]).unwrap();
        let quota = Some(100);
        let a = s.lock_upload("alice", "a", 50, quota).unwrap();
        assert!(matches!(
            s.lock_upload("alice", "b", 21, quota),
            Err(Error::QuotaExceeded)
        ));
        // Replacing a file only reserves what it adds.
        let old = s.lock_upload("alice", "old", 40, quota).unwrap();
        assert!(matches!(
            s.lock_upload("alice", "b", 11, quota),
            Err(Error::QuotaExceeded)
        ));
        // Another user's uploads and a released reservation do not count.
        assert!(s.lock_upload("bob", "b", 100, quota).is_ok());
        drop(a);
        drop(old);
        assert!(s.lock_upload("alice", "b", 70, quota).is_ok());
    }

    #[test]
    fn symlinks_and_fifos_are_invisible() {
        let (d, s) = storage();
        let files = s.files_dir("alice");
        let outside = d.path().join("secret");
        fs::write(&outside, b"top secret").unwrap();
        std::os::unix::fs::symlink(&outside, files.join("link")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(files.join("pipe"))
            .status();
        assert!(s.list("alice").unwrap().is_empty());
        assert!(matches!(s.open_file("alice", "link"), Err(Error::NotFound)));
        if fifo.is_ok_and(|st| st.success()) {
            assert!(matches!(s.open_file("alice", "pipe"), Err(Error::NotFound)));
        }
        assert!(matches!(s.delete("alice", "link"), Err(Error::NotFound)));
        assert!(outside.exists());
    }

    #[test]
    fn foreign_files_get_their_digest_computed_and_cached() {
        let (_d, s) = storage();
        fs::write(s.files_dir("alice").join("dropped"), b"hello").unwrap();
        assert_eq!(s.list("alice").unwrap()[0].md5, None);
        let (f, m) = s.open_file("alice", "dropped").unwrap();
        assert_eq!(
            s.digest("alice", &f, &m).unwrap(),
            "5d41402abc4b2a76b9719d911017c592"
        );
        assert!(s.list("alice").unwrap()[0].md5.is_some());
    }

    #[test]
    fn a_new_user_never_inherits_old_files() {
        let (d, s) = storage();
        upload(&s, "old.txt", b"x").unwrap();
        s.create_home("alice").unwrap();
        assert!(s.list("alice").unwrap().is_empty());
        assert_eq!(fs::read_dir(d.path().join("attic")).unwrap().count(), 1);
    }

    /// Three uploads of u64::MAX bytes at once: the sum of the reservations
    /// saturates, and no name is left locked.
    #[test]
    fn huge_uploads_in_flight_do_not_overflow() {
        let (_d, s) = storage();
        let a = s.lock_upload("alice", "a", u64::MAX, None).unwrap();
        let b = s.lock_upload("alice", "b", u64::MAX, None).unwrap();
        let quota = Some(1 << 40);
        assert!(matches!(
            s.lock_upload("alice", "c", u64::MAX, quota),
            Err(Error::QuotaExceeded)
        ));
        assert!(matches!(
            s.lock_upload("alice", "c", 1, quota),
            Err(Error::QuotaExceeded)
        ));
        let c = s.lock_upload("alice", "c", u64::MAX, None).unwrap();
        drop((a, b, c));
        for name in ["a", "b", "c"] {
            assert!(s.lock_upload("alice", name, 1, Some(1)).is_ok(), "{name}");
        }
    }

    /// Stages the first 4 of 10 bytes of `name`, as a client that hung up.
    fn stage_part(s: &Storage, name: &str) -> UploadLock {
        let lock = s.lock_upload("alice", name, 10, None).unwrap();
        let mut up = s.begin_upload(&lock, "alice", name, 10).unwrap();
        assert!(feed(&mut up, b"0123").is_err(), "the client hung up");
        lock
    }

    fn staged_path(s: &Storage, name: &str) -> PathBuf {
        let id = md5_hex(&Md5::digest(name.as_bytes()));
        s.user_dir("alice")
            .join("staging")
            .join(format!("{id}.part"))
    }

    fn resume_offset(s: &Storage, name: &str) -> u64 {
        let lock = s.lock_upload("alice", name, 10, None).unwrap();
        s.begin_upload(&lock, "alice", name, 10).unwrap().offset()
    }

    #[test]
    fn sweep_removes_only_stale_staged_uploads_nobody_is_sending() {
        let (_d, s) = storage();
        let day = Duration::from_secs(24 * 3600);
        drop(stage_part(&s, "stale"));
        drop(stage_part(&s, "fresh"));
        let busy = stage_part(&s, "busy");
        let long_ago = SystemTime::now() - 2 * day;
        for name in ["stale", "busy"] {
            let part = OpenOptions::new()
                .write(true)
                .open(staged_path(&s, name))
                .unwrap();
            part.set_modified(long_ago).unwrap();
        }

        // Records left without their upload: an old one and a new one.
        let orphan = staged_path(&s, "orphan").with_extension("meta");
        let young_orphan = staged_path(&s, "young orphan").with_extension("meta");
        for path in [&orphan, &young_orphan] {
            fs::write(path, br#"{"name":"x","size":1}"#).unwrap();
        }
        File::options()
            .write(true)
            .open(&orphan)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();

        s.sweep_staging(day);

        assert!(!orphan.exists() && young_orphan.exists());
        let stale = staged_path(&s, "stale");
        assert!(!stale.exists() && !stale.with_extension("meta").exists());
        assert!(staged_path(&s, "fresh").exists());
        assert!(staged_path(&s, "busy").exists());
        assert_eq!(resume_offset(&s, "stale"), 0);
        assert_eq!(resume_offset(&s, "fresh"), 4);
        let up = s.begin_upload(&busy, "alice", "busy", 10).unwrap();
        assert_eq!(up.offset(), 4);
    }
}
