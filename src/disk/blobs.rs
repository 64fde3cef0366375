//! File bytes by content key: `DATA/blobs/KK/KEY`, KEY 32 hex digits made
//! at random when an upload begins, never a user's path. A staged upload is
//! written in place under its key; committing it is a database update, so
//! nothing here is ever renamed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;

/// The local blob store.
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Opens (creating if needed) `root/blobs`.
    ///
    /// # Errors
    /// If the folder cannot be made.
    pub fn open(root: &Path) -> io::Result<Blobs> {
        let dir = root.join("blobs");
        fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    /// A new key, unique across servers (128 random bits).
    ///
    /// # Errors
    /// If the system has no randomness to give.
    pub fn new_key() -> Result<String, Error> {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Internal("no randomness for a blob key".into()))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Where `key`'s bytes are; refuses anything but a key this store made.
    pub(crate) fn path(&self, key: &str) -> Result<PathBuf, Error> {
        let ok = key.len() == 32 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(Error::Internal(format!("not a blob key: {key:?}")));
        }
        Ok(self.dir.join(&key[..2]).join(key))
    }

    /// The folder `key` lives in (synced once a blob in it is durable).
    ///
    /// # Errors
    /// For a malformed key.
    pub fn dir_of(&self, key: &str) -> Result<PathBuf, Error> {
        Ok(self.path(key)?.parent().unwrap_or(&self.dir).to_path_buf())
    }

    /// Opens `key` to append to, creating it (and syncing its folder, so
    /// that the name is as durable as the bytes synced later) if missing.
    ///
    /// # Errors
    /// An I/O error.
    pub fn open_staged(&self, key: &str) -> Result<File, Error> {
        let path = self.path(key)?;
        let dir = self.dir_of(key)?;
        let open = |create: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(create)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        match open(false) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir)?;
                let f = match open(true) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open(false)?,
                    Err(e) => return Err(e.into()),
                };
                crate::storage::sync_dir(&dir)?;
                Ok(f)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates `key` (its folder too), without syncing the folder: the
    /// caller syncs it once the bytes are (a group commit does).
    ///
    /// # Errors
    /// An I/O error, or `key` existing already.
    pub fn open_new(&self, key: &str) -> Result<File, Error> {
        let path = self.path(key)?;
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        match open() {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A new folder: its name made durable in the store's.
                fs::create_dir_all(self.dir_of(key)?)?;
                crate::storage::sync_dir(&self.dir)?;
                Ok(open()?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `key` for reading.
    ///
    /// # Errors
    /// `INTERNAL` if a blob a record names is missing.
    pub fn open_read(&self, key: &str) -> Result<File, Error> {
        let path = self.path(key)?;
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::Internal(format!("blob {key}: {e}")))
    }

    /// Bytes `key` holds (0 if it is missing).
    pub fn len(&self, key: &str) -> u64 {
        self.path(key)
            .ok()
            .and_then(|p| fs::symlink_metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// The keys of the blobs last written before `before`.
    pub fn written_before(&self, before: std::time::SystemTime) -> Vec<String> {
        let entries = |dir: &Path| fs::read_dir(dir).into_iter().flatten().flatten();
        let mut keys = Vec::new();
        for shard in entries(&self.dir) {
            for blob in entries(&shard.path()) {
                let name = blob.file_name().to_string_lossy().into_owned();
                let old = blob
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < before);
                if old && self.path(&name).is_ok_and(|p| p == blob.path()) {
                    keys.push(name);
                }
            }
        }
        keys
    }

    /// Deletes `key` (a missing one is fine: deletes are retried).
    ///
    /// # Errors
    /// An I/O error other than the blob being gone already.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        match fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
