//! The data directory's lock: one server, or one admin command, at a time.
//!
//! `DATA/.lock` is locked exclusively (`flock`, through std's
//! [`File::try_lock`]) by a server for as long as it serves, and by each
//! `netdisk user` command while it changes accounts: an admin command
//! rewriting `users.xlsx` under a running server would be overwritten by
//! the server's next registration, so it refuses instead. The lock goes
//! with the process, however it ends; the file itself stays.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;

use anyhow::{bail, Context};

/// Holds the data directory's lock until dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// The lock file's name in the data directory.
    pub const FILE: &'static str = ".lock";

    /// Takes the lock of `root` (creating the directory if needed) without
    /// waiting.
    ///
    /// # Errors
    /// If another process holds it, saying so, or if the file cannot be
    /// opened.
    pub fn acquire(root: &Path) -> anyhow::Result<DataLock> {
        fs::create_dir_all(root)
            .with_context(|| format!("cannot create data directory {}", root.display()))?;
        let path = root.join(Self::FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DataLock { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "{} is in use by a running netdisk server (or another `netdisk user` \
                 command); stop the server first",
                root.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::acquire(dir.path()).unwrap();
        let err = DataLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("running netdisk server"), "{err}");
        drop(first);
        assert!(DataLock::acquire(dir.path()).is_ok());
    }
}
