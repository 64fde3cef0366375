//! What a user's unfinished uploads hold: their records on disk, the bytes
//! they keep, and `discard`.
//!
//! Each staged upload is a `.part` file and a `.meta` record naming it and
//! its declared size (see `upload`). The records are the truth across a
//! restart: the quota check reads them on every `put`, so an upload
//! abandoned before a restart still counts after it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::{is_not_found, replace_file, Storage};
use crate::error::Error;

/// The record beside a `.part`: which name it stages, at what size, as
/// `{"name":NAME,"size":S}`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StagedMeta {
    pub(super) name: String,
    pub(super) size: u64,
}

impl StagedMeta {
    /// The record at `path`; `None` if there is none or it cannot be read.
    pub(super) fn read(path: &Path) -> Option<StagedMeta> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Writes this record at `path`, replacing any other atomically.
    ///
    /// # Errors
    /// If the record cannot be written.
    pub(super) fn write(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        replace_file(path, &bytes)
    }
}

/// The running MD5 of a staged upload, kept beside its `.part` as
/// `H.md5`: the offset it covers, the hasher's state, and a digest of both
/// (a record torn by a crash is ignored, never trusted). With it, a resume
/// hashes no staged byte again: only those the record does not cover yet.
pub(super) struct HashState {
    pub(super) offset: u64,
    pub(super) hasher: Md5,
}

impl HashState {
    /// The record at `path`, if there is a whole one.
    pub(super) fn read(path: &Path) -> Option<HashState> {
        use md5::digest::common::hazmat::{SerializableState, SerializedState};
        let bytes = fs::read(path).ok()?;
        let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(16)?)?;
        if Md5::digest(body).as_slice() != check {
            return None;
        }
        let (offset, state) = body.split_at_checked(8)?;
        let offset = u64::from_le_bytes(offset.try_into().ok()?);
        let state = SerializedState::<Md5>::try_from(state).ok()?;
        let hasher = Md5::deserialize(&state).ok()?;
        Some(HashState { offset, hasher })
    }

    /// Writes the record of `hasher` after `offset` bytes at `path`
    /// (through a temporary file and a rename; not synced: a record lost
    /// to a crash only costs hashing the staged bytes again).
    pub(super) fn write(path: &Path, offset: u64, hasher: &Md5) -> io::Result<()> {
        use md5::digest::common::hazmat::SerializableState;
        let mut bytes = offset.to_le_bytes().to_vec();
        bytes.extend_from_slice(&hasher.serialize());
        let check = Md5::digest(&bytes);
        bytes.extend_from_slice(&check);
        let tmp = path.with_extension("md5.tmp");
        fs::write(&tmp, &bytes)?;
        fs::rename(&tmp, path)
    }

    /// The record's path for an upload's `.part`.
    pub(super) fn path(part: &Path) -> PathBuf {
        part.with_extension("md5")
    }
}

impl Storage {
    /// The staging folder of a user.
    pub(super) fn staging_dir(&self, key: &str) -> PathBuf {
        self.user_dir(key).join("staging")
    }

    /// Paths of the `.part` file and `.meta` record of `name`'s upload.
    pub(super) fn staged_paths(&self, key: &str, name: &str) -> (PathBuf, PathBuf) {
        let id = crate::protocol::md5_hex(Md5::digest(name.as_bytes()));
        let stage = self.staging_dir(key);
        (
            stage.join(format!("{id}.part")),
            stage.join(format!("{id}.meta")),
        )
    }

    /// The `.part` file staging an upload of `name`.
    pub fn staged_part(&self, key: &str, name: &str) -> PathBuf {
        self.staged_paths(key, name).0
    }

    /// The user's unfinished uploads on disk: each name with its declared
    /// size. A record that cannot be read, or whose `.part` is gone, holds
    /// nothing and is left to the staging sweep.
    pub fn staged_records(&self, key: &str) -> Vec<(String, u64)> {
        self.staged(key)
            .into_iter()
            .map(|(m, _)| (m.name, m.size))
            .collect()
    }

    /// Bytes held by the user's unfinished uploads (`whoami`'s `staged`).
    pub fn staged_bytes(&self, key: &str) -> u64 {
        self.staged(key)
            .iter()
            .fold(0u64, |sum, (_, held)| sum.saturating_add(*held))
    }

    /// Each readable record with the length of its `.part`.
    fn staged(&self, key: &str) -> Vec<(StagedMeta, u64)> {
        let Ok(dir) = fs::read_dir(self.staging_dir(key)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in dir.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            let Some(meta) = StagedMeta::read(&path) else {
                continue;
            };
            // Only a record kept under its own name's id is the upload of
            // that name; the part must be a regular file.
            if self.staged_paths(key, &meta.name).1 != path {
                continue;
            }
            match fs::symlink_metadata(path.with_extension("part")) {
                Ok(m) if m.is_file() => out.push((meta, m.len())),
                _ => {}
            }
        }
        out
    }

    /// Where an upload of `name` with `size` bytes would continue, found
    /// by looking only: the bytes staged for that name and size, or 0 when
    /// none are (a new upload, or one of another size, starts over). It
    /// claims nothing and writes nothing.
    pub fn staged_offset(&self, key: &str, name: &str, size: u64) -> u64 {
        let (part, meta_path) = self.staged_paths(key, name);
        match StagedMeta::read(&meta_path) {
            Some(m) if m.name == name && m.size == size => match fs::symlink_metadata(part) {
                Ok(m) if m.is_file() && m.len() <= size => m.len(),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Whether a connection is uploading `name` right now.
    pub fn uploading(&self, key: &str, name: &str) -> bool {
        self.lock_uploads()
            .contains_key(&(key.to_string(), name.to_string()))
    }

    /// Drops the unfinished upload of `name`.
    ///
    /// # Errors
    /// `LOCKED` while a connection uploads it, `NOT_FOUND` if there is
    /// none, or an I/O error.
    pub fn discard(&self, key: &str, name: &str) -> Result<(), Error> {
        let (_claim, _) = self.claim(key, name, 0)?;
        let (part, meta) = self.staged_paths(key, name);
        let _ = fs::remove_file(HashState::path(&part));
        let mut found = false;
        for path in [&part, &meta] {
            match fs::remove_file(path) {
                Ok(()) => found = true,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !found {
            return Err(Error::NothingStaged);
        }
        Ok(())
    }
}
