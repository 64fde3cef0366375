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
        let mut found = false;
        for path in [&part, &meta] {
            match fs::remove_file(path) {
                Ok(()) => found = true,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !found {
            return Err(Error::NotFound);
        }
        Ok(())
    }
}
