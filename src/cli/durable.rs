//! Durability paid once per batch of small downloads.
//!
//! A download is renamed over its target only once its MD5 matched, so a
//! file is never visible under its name with bytes that were not checked.
//! For a batch of small files, fsyncing each before its rename would make
//! the disk's flush the pace of the whole batch (one per file); instead
//! each checked file is renamed at once, and before the command reports
//! any of them downloaded, they are all fsynced at once on a few threads
//! (the file system commits them together), then each folder they went
//! into once, for the renames. A file reported downloaded survives a power
//! cut.
//!
//! `syncfs(2)` was tried in their place: one call, but it writes back
//! everything dirty on the file system, whoever wrote it, so a batch beside
//! a busy writer (a build, say) waited for that writer's gigabytes.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;

use anyhow::anyhow;

use super::output::{clean_path, io_words};

/// fsyncs at once at most.
const SYNCERS: usize = 8;

/// Checked files renamed into place and not yet durable, and the folders
/// they went into.
#[derive(Default)]
pub struct Batch {
    placed: Mutex<(Vec<File>, BTreeSet<PathBuf>)>,
}

impl Batch {
    /// Makes the checked part file at `path` an ordinary file and renames
    /// it over `target`; durable after [`Batch::sync`].
    ///
    /// # Errors
    /// If it cannot be renamed.
    pub fn place(&self, part: &File, path: &Path, target: &Path) -> anyhow::Result<()> {
        // The part file is private (0600) while it grows; a download is an
        // ordinary file.
        part.set_permissions(fs::Permissions::from_mode(0o644))?;
        let file = part.try_clone()?;
        fs::rename(path, target)
            .map_err(|e| anyhow!("cannot save {}: {}", clean_path(target), io_words(&e)))?;
        let dir = super::download::parent_dir(target).to_path_buf();
        let mut placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
        placed.0.push(file);
        placed.1.insert(dir);
        Ok(())
    }

    /// Makes everything placed so far durable: every file's fsync at once
    /// on up to [`SYNCERS`] threads, then each folder's.
    ///
    /// # Errors
    /// The first that failed: what was placed may not survive a power cut.
    pub fn sync(&self) -> io::Result<()> {
        let (files, dirs) =
            std::mem::take(&mut *self.placed.lock().unwrap_or_else(|p| p.into_inner()));
        let share = files.len().div_ceil(SYNCERS).max(1);
        thread::scope(|s| {
            let syncing: Vec<_> = files
                .chunks(share)
                .map(|group| s.spawn(move || group.iter().try_for_each(File::sync_all)))
                .collect();
            syncing
                .into_iter()
                .try_for_each(|t| t.join().unwrap_or_else(|_| Err(io::Error::other("fsync"))))
        })?;
        for dir in dirs {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &dir
            };
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn placed_files_are_renamed_at_once_and_synced_together() {
        let dir = tempfile::tempdir().unwrap();
        let batch = Batch::default();
        for i in 0..3 {
            let path = dir.path().join(format!(".p{i}.part"));
            let mut part = File::create(&path).unwrap();
            part.write_all(b"checked").unwrap();
            let target = dir.path().join(format!("f{i}"));
            batch.place(&part, &path, &target).unwrap();
            assert!(!path.exists());
            assert_eq!(fs::read(&target).unwrap(), b"checked");
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        {
            let placed = batch.placed.lock().unwrap();
            assert_eq!(
                (placed.0.len(), placed.1.len()),
                (3, 1),
                "three files, one folder"
            );
        }
        batch.sync().unwrap();
        assert!(batch.placed.lock().unwrap().0.is_empty());
    }
}
