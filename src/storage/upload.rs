//! Staged uploads: a `.part` file per upload, hashed as it grows, resumed
//! after a hang-up, made visible by one rename when its MD5 matches; and
//! the sweep of those nobody finished.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};

use super::digest;
use super::listing::Listings;
use super::staged::{HashState, StagedMeta};
use super::tree::{make_parents, UsageTable};
use super::{open_nofollow, release, sync_dir, Storage, UploadLock, RELEASED_FROM};
use crate::error::Error;
use crate::hashcopy::{hash_prefix, hash_range, hashed_copy};

impl Storage {
    /// Opens (or resumes) the staged upload `lock` was claimed for: its
    /// user, name and size. The returned [`Upload`] has already hashed the
    /// bytes it holds.
    ///
    /// # Errors
    /// If the staging folder cannot be written.
    pub fn begin_upload(&self, lock: &UploadLock) -> Result<Upload, Error> {
        debug_assert!(lock.is_from(self));
        let (key, name, size) = (lock.key(), lock.name(), lock.size());
        self.ensure_home(key)?;
        let (part, meta_path) = self.staged_paths(key, name);
        let wanted = StagedMeta {
            name: name.to_string(),
            size,
        };
        let resumable = StagedMeta::read(&meta_path).is_some_and(|m| m == wanted);
        let mut file = open_nofollow(
            &part,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        let mut held = file.metadata()?.len();
        let state_path = HashState::path(&part);
        if !resumable || held > size {
            let _ = fs::remove_file(&state_path);
            file.set_len(0)?;
            held = 0;
            wanted.write(&meta_path)?;
        }
        let mut hasher = Md5::new();
        if held > 0 {
            // The running digest kept when the upload stopped, if it is
            // whole and covers no more than what is staged; then only the
            // bytes after it are hashed (none, normally).
            match HashState::read(&state_path).filter(|s| s.offset <= held) {
                Some(state) => {
                    hasher = state.hasher;
                    hash_range(&file, state.offset, held, &mut hasher)?;
                }
                None => hash_prefix(&file, held, &mut hasher)?,
            }
        }
        file.seek(SeekFrom::Start(held))?;
        Ok(self.upload(lock, file, hasher, held, (part, meta_path)))
    }

    /// Opens the staged upload `lock` was claimed for from scratch,
    /// dropping whatever an earlier interrupted upload of it staged (an
    /// upload in one go, PROTOCOL.md "Small uploads in one go"). It writes
    /// no record: it is never resumed, and while it runs its claim counts
    /// it against the quota; a `.part` left without a record by a crash is
    /// swept like any stale one.
    ///
    /// # Errors
    /// If the staging folder cannot be written.
    pub fn begin_fresh_upload(&self, lock: &UploadLock) -> Result<Upload, Error> {
        debug_assert!(lock.is_from(self));
        let (key, name) = (lock.key(), lock.name());
        self.ensure_home(key)?;
        let (part, meta_path) = self.staged_paths(key, name);
        match fs::remove_file(&meta_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let _ = fs::remove_file(HashState::path(&part));
        let file = open_nofollow(
            &part,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        Ok(self.upload(lock, file, Md5::new(), 0, (part, meta_path)))
    }

    /// An upload of what `lock` claims, holding `held` bytes (hashed into
    /// `hasher`) in `file`, staged at `paths` (`.part`, `.meta`).
    fn upload(
        &self,
        lock: &UploadLock,
        file: File,
        hasher: Md5,
        held: u64,
        (part, meta_path): (PathBuf, PathBuf),
    ) -> Upload {
        let key = lock.key();
        Upload {
            file,
            hasher,
            held,
            size: lock.size(),
            part,
            meta_path,
            files: self.files_dir(key),
            path: lock.name().to_string(),
            digests: self.user_dir(key).join("digests"),
            changed: (Arc::clone(&self.listings), key.to_string()),
            usage: Arc::clone(&self.usage),
        }
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
                        let name = StagedMeta::read(&meta_path).map(|m| m.name);
                        let claim = name.map(|n| self.claim(&key, &n, 0));
                        if claim.as_ref().is_some_and(Result::is_err) {
                            continue;
                        }
                        let _ = fs::remove_file(&path);
                        let _ = fs::remove_file(&meta_path);
                        let _ = fs::remove_file(HashState::path(&path));
                    }
                    // A running digest whose upload is gone.
                    Some("md5") if old && !path.with_extension("part").exists() => {
                        let _ = fs::remove_file(&path);
                    }
                    // A record whose upload is gone.
                    Some("meta") if old && !path.with_extension("part").exists() => {
                        let _ = fs::remove_file(&path);
                    }
                    // A record a crash left half-written.
                    Some("tmp") if old => {
                        let _ = fs::remove_file(&path);
                    }
                    _ => {}
                }
            }
        }
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
    /// The user's `files/`, and the path of the upload under it.
    files: PathBuf,
    path: String,
    digests: PathBuf,
    /// Where to mark the folder changed once the file is in place.
    changed: (Arc<Listings>, String),
    /// Where the user's usage is kept.
    usage: Arc<UsageTable>,
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

    /// The MD5 of the bytes staged so far: the whole file's once all are
    /// there (for a front end whose client sent no digest of its own).
    pub fn held_md5(&self) -> String {
        crate::protocol::md5_hex(self.hasher.clone().finalize())
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
        // Bytes of the chunk whose step failed: written, not hashed.
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
        if received.is_err() {
            // Interrupted: keep the running digest for the resume. It
            // covers every step that succeeded (hashed_copy's promise).
            let hashed = self.held - unhashed;
            let path = HashState::path(&self.part);
            if hashed > 0 {
                let _ = HashState::write(&path, hashed, &self.hasher);
            }
        }
        received
    }

    /// Drops what this upload staged, and its record.
    pub fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.part);
        let _ = fs::remove_file(&self.meta_path);
        let _ = fs::remove_file(HashState::path(&self.part));
    }

    /// Checks the client's digest; on a match makes the upload durable and
    /// visible in one rename, on a mismatch discards it.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH` (staged data discarded, old file untouched), or
    /// an I/O error (old file untouched, staged data kept).
    pub fn finish(self, expected: &str) -> Result<String, Error> {
        let verified = self.verify(expected)?;
        verified.sync()?;
        let (md5, dir) = verified.place()?;
        sync_dir(&dir)?;
        Ok(md5)
    }

    /// Checks the client's digest: on a match the upload is ready to be
    /// made durable and visible ([`Verified`]), on a mismatch it is
    /// discarded.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH` (staged data discarded, old file untouched).
    pub fn verify(self, expected: &str) -> Result<Verified, Error> {
        debug_assert_eq!(self.held, self.size);
        let actual = crate::protocol::md5_hex(self.hasher.clone().finalize());
        if actual != expected {
            self.discard();
            return Err(Error::ChecksumMismatch);
        }
        // Recorded now, so that the record is synced with the bytes.
        let meta = self.file.metadata()?;
        digest::record(&self.file, &meta, &actual, &self.digests)?;
        Ok(Verified {
            upload: self,
            md5: actual,
        })
    }
}

/// A staged upload whose MD5 matched, not yet visible. Several can be made
/// durable ([`Verified::sync`], which may run on several threads at once)
/// before they are renamed into place ([`Verified::place`]) and their
/// folder synced once: a group commit of a pipelined burst. Dropped, it
/// stays staged like an interrupted upload.
pub struct Verified {
    upload: Upload,
    md5: String,
}

impl Verified {
    /// Makes the staged bytes durable.
    ///
    /// # Errors
    /// An I/O error.
    pub fn sync(&self) -> Result<(), Error> {
        self.upload.file.sync_all()?;
        Ok(())
    }

    /// Renames the synced upload over its name; returns the MD5 and the
    /// folder, which the caller must sync before the rename counts as
    /// durable.
    ///
    /// # Errors
    /// An I/O error (old file untouched, staged data kept).
    pub fn place(self) -> Result<(String, PathBuf), Error> {
        let up = self.upload;
        let meta = up.file.metadata()?;
        // The parents are made now, when the upload commits, never before.
        let dir = make_parents(&up.files, &up.path)?;
        let leaf = up.path.rsplit('/').next().unwrap_or(&up.path);
        let target = dir.join(leaf);
        // A record file of the file being replaced (where the filesystem
        // keeps no attributes, or from before they were used) goes first,
        // while that file still holds its inode: once the rename frees the
        // inode, another upload may get it and write its own record under
        // it, which a later removal would delete.
        let replaced = fs::symlink_metadata(&target).ok();
        if replaced.as_ref().is_some_and(Metadata::is_dir) {
            return Err(Error::IsAFolder);
        }
        if let Some(old) = replaced.as_ref().map(MetadataExt::ino) {
            if old != meta.ino() {
                let _ = fs::remove_file(up.digests.join(old.to_string()));
            }
        }
        // A big file replaced is held open across the rename, so that
        // freeing its blocks waits for the close (see `release`).
        let old_len = replaced.as_ref().filter(|m| m.is_file()).map(Metadata::len);
        let held = replaced
            .filter(|m| m.is_file() && m.len() >= RELEASED_FROM)
            .and_then(|m| {
                let f = open_nofollow(&target, OpenOptions::new().read(true)).ok()?;
                Some((f, m.len()))
            });
        match fs::rename(&up.part, &target) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => return Err(Error::IsAFolder),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::NotAFolder(up.path.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        // A symlink or FIFO replaced was never counted.
        let (files, bytes) = match old_len {
            Some(old) => (0, i128::from(meta.len()) - i128::from(old)),
            None => (1, i128::from(meta.len())),
        };
        up.usage.adjust(&up.changed.1, files, bytes);
        if let Some((old, len)) = held {
            release(old, len);
        }
        up.changed.0.bump(&up.changed.1);
        let _ = fs::remove_file(&up.meta_path);
        let _ = fs::remove_file(HashState::path(&up.part));
        Ok((self.md5, dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{feed, storage, upload};

    #[test]
    fn resume_continues_from_staged_bytes() {
        let (_d, s) = storage();
        let data = b"0123456789";
        {
            let lock = s.lock_upload("alice", "f", 10, None).unwrap();
            let mut up = s.begin_upload(&lock).unwrap();
            assert!(feed(&mut up, &data[..4]).is_err(), "the client hung up");
        }
        assert!(
            s.list("alice").unwrap().is_empty(),
            "staged data is not listed"
        );
        let lock = s.lock_upload("alice", "f", 10, None).unwrap();
        let mut up = s.begin_upload(&lock).unwrap();
        assert_eq!(up.offset(), 4);
        feed(&mut up, &data[4..]).unwrap();
        up.finish(&crate::protocol::md5_hex(Md5::digest(data)))
            .unwrap();
        assert_eq!(fs::read(s.files_dir("alice").join("f")).unwrap(), data);
        drop(lock);
        // A different size starts over.
        let lock = s.lock_upload("alice", "f", 3, None).unwrap();
        let mut up = s.begin_upload(&lock).unwrap();
        assert_eq!(up.offset(), 0);
        feed(&mut up, b"abc").unwrap();
        drop(up);
        assert_eq!(s.begin_upload(&lock).unwrap().offset(), 3);
    }

    #[test]
    fn mismatch_keeps_the_old_file_and_drops_staging() {
        let (_d, s) = storage();
        upload(&s, "f", b"old").unwrap();
        let lock = s.lock_upload("alice", "f", 3, None).unwrap();
        let mut up = s.begin_upload(&lock).unwrap();
        feed(&mut up, b"new").unwrap();
        assert!(matches!(
            up.finish(&"0".repeat(32)),
            Err(Error::ChecksumMismatch)
        ));
        assert_eq!(fs::read(s.files_dir("alice").join("f")).unwrap(), b"old");
        assert_eq!(s.begin_upload(&lock).unwrap().offset(), 0);
    }

    /// Stages the first 4 of 10 bytes of `name`, as a client that hung up.
    fn stage_part(s: &Storage, name: &str) -> UploadLock {
        let lock = s.lock_upload("alice", name, 10, None).unwrap();
        let mut up = s.begin_upload(&lock).unwrap();
        assert!(feed(&mut up, b"0123").is_err(), "the client hung up");
        lock
    }

    fn staged_path(s: &Storage, name: &str) -> PathBuf {
        let id = crate::protocol::md5_hex(Md5::digest(name.as_bytes()));
        s.user_dir("alice")
            .join("staging")
            .join(format!("{id}.part"))
    }

    fn resume_offset(s: &Storage, name: &str) -> u64 {
        let lock = s.lock_upload("alice", name, 10, None).unwrap();
        s.begin_upload(&lock).unwrap().offset()
    }

    /// A resume takes the running digest kept when the upload stopped, and
    /// hashes no staged byte again: bytes changed on disk under it do not
    /// change the digest (they would if it re-read them).
    #[test]
    fn a_resume_reads_no_staged_byte_again() {
        let (_d, s) = storage();
        // 3 MiB in all, cut after 1 MiB + 5 (mid-chunk, mid-hand-off).
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
        let cut = (1 << 20) + 5;
        let lock = s
            .lock_upload("alice", "big", data.len() as u64, None)
            .unwrap();
        let mut up = s.begin_upload(&lock).unwrap();
        assert!(feed(&mut up, &data[..cut]).is_err());
        drop(up);
        let part = staged_path(&s, "big");
        let state = HashState::read(&HashState::path(&part)).unwrap();
        assert!(
            state.offset <= cut as u64 && state.offset > 0,
            "{}",
            state.offset
        );
        // Scribble over the start of the staged bytes.
        use std::os::unix::fs::FileExt;
        let f = OpenOptions::new().write(true).open(&part).unwrap();
        f.write_all_at(b"XXXX", 0).unwrap();
        drop(f);
        let mut up = s.begin_upload(&lock).unwrap();
        assert_eq!(up.offset(), cut as u64);
        feed(&mut up, &data[cut..]).unwrap();
        let md5 = crate::protocol::md5_hex(Md5::digest(&data));
        assert_eq!(up.finish(&md5).unwrap(), md5);
        assert!(
            !HashState::path(&part).exists(),
            "the record goes with the upload"
        );
    }

    #[test]
    fn a_torn_digest_record_is_ignored_and_the_bytes_hashed_again() {
        let (_d, s) = storage();
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 13 % 253) as u8).collect();
        let lock = s
            .lock_upload("alice", "f", data.len() as u64, None)
            .unwrap();
        let mut up = s.begin_upload(&lock).unwrap();
        assert!(feed(&mut up, &data[..700_000]).is_err());
        drop(up);
        let path = HashState::path(&staged_path(&s, "f"));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(HashState::read(&path).is_none());
        let mut up = s.begin_upload(&lock).unwrap();
        assert_eq!(up.offset(), 700_000);
        feed(&mut up, &data[700_000..]).unwrap();
        let md5 = crate::protocol::md5_hex(Md5::digest(&data));
        assert_eq!(up.finish(&md5).unwrap(), md5);
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
        // And a record a crash left half-written.
        let torn = s.staging_dir("alice").join(".tmpAbCdEf.tmp");
        for path in [&orphan, &young_orphan, &torn] {
            fs::write(path, br#"{"name":"x","size":1}"#).unwrap();
        }
        for path in [&orphan, &torn] {
            File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }

        s.sweep_staging(day);

        assert!(!orphan.exists() && young_orphan.exists() && !torn.exists());
        let stale = staged_path(&s, "stale");
        assert!(!stale.exists() && !stale.with_extension("meta").exists());
        assert!(staged_path(&s, "fresh").exists());
        assert!(staged_path(&s, "busy").exists());
        assert_eq!(resume_offset(&s, "stale"), 0);
        assert_eq!(resume_offset(&s, "fresh"), 4);
        let up = s.begin_upload(&busy).unwrap();
        assert_eq!(up.offset(), 4);
    }
}
