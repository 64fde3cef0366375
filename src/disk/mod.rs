//! The storage seam: what commands and front ends reach a user's disk
//! through, whichever engine keeps it.
//!
//! - [`crate::storage::Storage`] (`local.rs`): the single-machine disk, as
//!   it always was: folders are folders, each file's record sits in its
//!   extended attributes, uploads are staged beside them.
//! - [`db::DbDisk`] (`serve --db`): the namespace (folders, file rows: name
//!   → size, mtime, MD5, content key; usage; unfinished uploads and their
//!   MD5 state) in PostgreSQL, the bytes in [`blobs::Blobs`] under ids no
//!   user path ever becomes, so that a rename is one `UPDATE` and several
//!   servers serve one disk.
//!
//! Handlers hold a `&dyn Disk`; the upload phases ([`UploadLock`],
//! [`Upload`], [`Verified`]) are enums over the engines, so the per-byte
//! path stays a direct call. Both engines hand out a local [`File`] to
//! read, so `sendfile` keeps working behind the seam.

pub mod blobs;
pub mod db;
mod local;
pub mod s3;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::protocol::FileInfo;
use crate::storage::{self, Listing, Prop};

pub use crate::storage::{Kind, Stat};

/// Opens a remote object's bytes from an offset.
pub type OpenAt = Box<dyn FnOnce(u64) -> Result<Box<dyn Read + Send>, Error> + Send>;

/// Where a file's bytes are read from.
pub enum Source {
    /// A local file (sent with `sendfile` where the connection allows).
    File(File),
    /// A remote object, opened from an offset once the sending starts
    /// (an HTTP range may move the offset after the `get`).
    Remote(OpenAt),
}

impl Source {
    /// The bytes from `offset` on, as a reader.
    ///
    /// # Errors
    /// If the bytes cannot be reached.
    pub fn reader(self, offset: u64) -> Result<Box<dyn Read + Send>, Error> {
        match self {
            Source::File(mut f) => {
                f.seek(SeekFrom::Start(offset))?;
                Ok(Box::new(f))
            }
            Source::Remote(open) => open(offset),
        }
    }
}

/// A file opened for reading: its bytes and its record.
pub struct Opened {
    pub source: Source,
    pub size: u64,
    /// Unix seconds.
    pub mtime: u64,
    /// The digest, where the engine keeps it with the record.
    pub(crate) md5: Option<String>,
    /// The local engine's metadata, for its cached digest.
    pub(crate) meta: Option<std::fs::Metadata>,
}

/// Encodes a listing into a reply frame ([`Disk::shared_listing`]).
pub type Encode<'a> = &'a mut dyn FnMut(&Listing) -> Result<Vec<u8>, Error>;

/// An error of the disk as an I/O error, for the account store's hooks
/// ([`Disk::create_home`], [`Disk::remove_home`]).
pub fn io_error(e: Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// One user's disk, by user key; every path has passed
/// [`crate::names::check_path`].
pub trait Disk: Send + Sync {
    /// Gives a new user an empty disk; nothing of a removed account's is
    /// ever inherited.
    fn create_home(&self, key: &str) -> Result<(), Error>;
    /// Puts a removed user's files out of reach (`netdisk user del`).
    fn remove_home(&self, key: &str) -> Result<(), Error>;
    /// Where [`Disk::remove_home`] keeps a removed user's files, if it
    /// keeps them.
    fn attic(&self) -> Option<PathBuf>;
    /// What `path` names.
    fn kind(&self, key: &str, path: &str) -> Result<Kind, Error>;
    /// A folder's files and folders (or its subtree's), sorted by bytes.
    fn listing(&self, key: &str, path: &str, recursive: bool) -> Result<Listing, Error>;
    /// A reply frame of that listing, shared with concurrent requests where
    /// the engine can, within the listings' memory budget.
    fn shared_listing(
        &self,
        key: &str,
        path: &str,
        recursive: bool,
        encode: Encode<'_>,
    ) -> Result<Arc<Vec<u8>>, Error>;
    /// The root folder's files (tests, `rename`'s checks).
    fn list(&self, key: &str) -> Result<Vec<FileInfo>, Error>;
    /// Opens a file for reading.
    fn open_file(&self, key: &str, path: &str) -> Result<Opened, Error>;
    /// The MD5 of an opened file: kept with its record, or hashed once.
    fn digest(&self, key: &str, file: &Opened) -> Result<String, Error>;
    fn mkdir(&self, key: &str, path: &str) -> Result<(), Error>;
    fn delete(&self, key: &str, path: &str, recursive: bool) -> Result<(), Error>;
    fn rename(&self, key: &str, from: &str, to: &str) -> Result<(), Error>;
    /// Files and bytes of the user's whole tree.
    fn usage(&self, key: &str) -> Result<(u64, u64), Error>;
    /// WebDAV dead properties of a file or folder.
    fn props(&self, key: &str, path: &str) -> Result<Vec<Prop>, Error>;
    fn set_props(&self, key: &str, path: &str, props: &[Prop]) -> Result<(), Error>;
    fn set_mtime(&self, key: &str, path: &str, secs: u64) -> Result<(), Error>;
    /// Claims `name` for one upload of `size` bytes and books it against
    /// the quota (PROTOCOL.md's formula) and `--max-staged`.
    fn lock_upload(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error>;
    /// Claims `name` for an upload in one go, whose answer comes after its
    /// body: an engine may book it when it commits instead (the database
    /// does, a group of them in one transaction).
    fn lock_one_go(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        self.lock_upload(key, name, size, quota)
    }
    /// Opens or resumes the staged upload `lock` claims.
    fn begin_upload(&self, lock: &UploadLock) -> Result<Upload, Error>;
    /// Opens the staged upload `lock` claims from scratch.
    fn begin_fresh_upload(&self, lock: &UploadLock) -> Result<Upload, Error>;
    /// Bytes the user's unfinished uploads hold.
    fn staged_bytes(&self, key: &str) -> u64;
    /// Where an upload of `name` with `size` bytes would resume.
    fn staged_offset(&self, key: &str, name: &str, size: u64) -> u64;
    /// Whether a connection is uploading `name` now.
    fn uploading(&self, key: &str, name: &str) -> bool;
    /// Drops the unfinished upload of `name`.
    fn discard(&self, key: &str, name: &str) -> Result<(), Error>;
    /// Housekeeping, run hourly: unfinished uploads older than `max_age`.
    fn sweep_staging(&self, max_age: Duration);
    /// Housekeeping at start: recounts what usage figures a crash may have
    /// left wrong.
    fn recount_usage(&self);
    /// Housekeeping: frees what deletes and replacements left to free.
    fn empty_trash(&self);
    /// At shutdown, once the grace period is over: gives up the claims of
    /// the uploads still running (they are cut off with the process), so
    /// that the next server resumes them at once instead of answering
    /// `LOCKED` until the claims lapse.
    fn release_claims(&self);
}

/// The right to upload one name, held until the upload ends.
pub enum UploadLock {
    Local(storage::UploadLock),
    Db(db::DbLock),
}

impl UploadLock {
    /// The size the upload declared.
    pub fn size(&self) -> u64 {
        match self {
            UploadLock::Local(l) => l.size(),
            UploadLock::Db(l) => l.size,
        }
    }
}

/// A staged upload being received.
pub enum Upload {
    Local(storage::Upload),
    Db(db::DbUpload),
}

impl Upload {
    /// Bytes staged so far: where the client continues.
    pub fn offset(&self) -> u64 {
        match self {
            Upload::Local(u) => u.offset(),
            Upload::Db(u) => u.offset(),
        }
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        match self {
            Upload::Local(u) => u.remaining(),
            Upload::Db(u) => u.remaining(),
        }
    }

    /// The MD5 of the bytes staged so far.
    pub fn held_md5(&self) -> String {
        match self {
            Upload::Local(u) => u.held_md5(),
            Upload::Db(u) => u.held_md5(),
        }
    }

    /// Receives the rest (see [`storage::Upload::receive`]).
    ///
    /// # Errors
    /// `fill`'s, or a write's; what arrived before it stays staged.
    pub fn receive(
        &mut self,
        fill: impl FnMut(&mut [u8]) -> (usize, Result<(), Error>),
    ) -> Result<(), Error> {
        match self {
            Upload::Local(u) => u.receive(fill),
            Upload::Db(u) => u.receive(fill),
        }
    }

    /// Drops what was staged.
    pub fn discard(self) {
        match self {
            Upload::Local(u) => u.discard(),
            Upload::Db(u) => u.discard(),
        }
    }

    /// Checks the digest and makes the file durable and visible.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH` (staged bytes dropped, old file kept), `INTERNAL`.
    pub fn finish(self, expected: &str) -> Result<String, Error> {
        let verified = self.verify(expected)?;
        verified.sync()?;
        let (md5, dir) = verified.place()?;
        if let Some(dir) = dir {
            storage::sync_dir(&dir)?;
        }
        Ok(md5)
    }

    /// Checks the digest: on a match ready to commit, else discarded.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH`.
    pub fn verify(self, expected: &str) -> Result<Verified, Error> {
        Ok(match self {
            Upload::Local(u) => Verified::Local(u.verify(expected)?),
            Upload::Db(u) => Verified::Db(u.verify(expected)?),
        })
    }
}

/// An upload whose MD5 matched, not yet visible (a group commit syncs
/// several, places them, then syncs their folders once).
pub enum Verified {
    Local(storage::Verified),
    Db(db::DbVerified),
}

impl Verified {
    /// Makes the staged bytes durable.
    ///
    /// # Errors
    /// An I/O error.
    /// Places several, as [`Verified::place`] each, in order; an engine
    /// may commit them together.
    pub fn place_all(items: Vec<Verified>) -> Vec<Result<(String, Option<PathBuf>), Error>> {
        if items.iter().all(|v| matches!(v, Verified::Db(_))) {
            let db = items
                .into_iter()
                .filter_map(|v| match v {
                    Verified::Db(v) => Some(v),
                    Verified::Local(_) => None,
                })
                .collect();
            return db::DbVerified::place_all(db);
        }
        items.into_iter().map(Verified::place).collect()
    }

    pub fn sync(&self) -> Result<(), Error> {
        match self {
            Verified::Local(v) => v.sync(),
            Verified::Db(v) => v.sync(),
        }
    }

    /// Makes the file visible; returns its MD5 and the folder to sync
    /// before the answer counts as durable (none for bytes in S3).
    ///
    /// # Errors
    /// `INTERNAL` (the old file kept).
    pub fn place(self) -> Result<(String, Option<PathBuf>), Error> {
        match self {
            Verified::Local(v) => v.place().map(|(md5, dir)| (md5, Some(dir))),
            Verified::Db(v) => v.place(),
        }
    }
}
