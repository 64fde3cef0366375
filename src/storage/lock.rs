//! Upload locks: one connection at a time uploads a name, and a user's
//! unfinished uploads, in flight or abandoned, count against the quota
//! (PROTOCOL.md, "Errors", `QUOTA_EXCEEDED`) and are bounded in number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Storage, Uploads};
use crate::error::Error;

/// Unfinished uploads a user may hold by default (`serve --max-staged`).
pub const DEFAULT_MAX_STAGED: usize = 16;
/// Files one user may hold by default (`serve --max-files`): empty files
/// cost no quota, but every one costs an inode and a line in `ls`.
pub const DEFAULT_MAX_FILES: u64 = 1_000_000;

impl Storage {
    /// Claims the right to upload `name` with `size` bytes for this
    /// connection, and checks the quota with PROTOCOL.md's formula: the
    /// files, minus the file being replaced, plus `size`, plus the declared
    /// sizes of the user's other unfinished uploads (in flight here, or
    /// staged on disk by an upload nobody finished), must not exceed
    /// `quota`. A user may hold at most [`Storage::set_max_staged`]
    /// unfinished uploads; resuming one of them is always allowed.
    ///
    /// # Errors
    /// `NOT_A_FOLDER` if a parent is a file, `IS_A_FOLDER` if `name` is a
    /// folder; `LOCKED` if another connection is uploading that name;
    /// `QUOTA_EXCEEDED` if it would not fit, or if there are too many
    /// unfinished uploads.
    pub fn lock_upload(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        // PROTOCOL.md "Folders": at step 2, `NOT_A_FOLDER` for a parent
        // that is a file, `IS_A_FOLDER` for a path that is a folder.
        super::tree::check_parents(&self.files_dir(key), name)?;
        let (replaced, replaced_none) = match self.kind(key, name)? {
            super::Kind::File(stat) => (stat.size, false),
            super::Kind::Folder(_) => return Err(Error::IsAFolder),
            super::Kind::Nothing => (0, true),
        };
        let (lock, in_flight) = self.claim(key, name, size)?;
        // Read after the claim: an upload that finishes meanwhile shows its
        // file before it drops its claim and its record, so it is counted
        // at least once, never zero times.
        let mut others: HashMap<String, u64> = self.staged_records(key).into_iter().collect();
        // An upload in flight may have restarted its record with a new
        // size: its declared size is the one it claimed with.
        others.extend(in_flight);
        others.remove(name);
        if others.len() >= self.max_staged {
            return Err(Error::TooManyStaged(others.len()));
        }
        if replaced_none {
            let (files, _) = self.usage(key)?;
            if files.saturating_add(others.len() as u64) >= self.max_files {
                return Err(Error::TooManyFiles(self.max_files));
            }
        }
        if let Some(quota) = quota {
            let (_, used) = self.usage(key)?;
            // Sizes are the client's: a few near u64::MAX must saturate,
            // not overflow.
            let staged = others.values().fold(0u64, |sum, &s| sum.saturating_add(s));
            let after = used
                .saturating_sub(replaced)
                .saturating_add(size)
                .saturating_add(staged);
            if after > quota {
                let taken = used.saturating_sub(replaced).saturating_add(staged);
                return Err(Error::QuotaExceeded {
                    needs: size,
                    left: quota.saturating_sub(taken),
                    quota,
                });
            }
        }
        Ok(lock)
    }

    /// Claims `name` for this connection, declaring `size`; returns the
    /// claim and the user's other uploads in flight with their declared
    /// sizes.
    ///
    /// # Errors
    /// `LOCKED` if another connection holds the name.
    pub(super) fn claim(
        &self,
        key: &str,
        name: &str,
        size: u64,
    ) -> Result<(UploadLock, Vec<(String, u64)>), Error> {
        let entry = (key.to_string(), name.to_string());
        let mut uploads = self.lock_uploads();
        if uploads.contains_key(&entry) {
            return Err(Error::Locked);
        }
        uploads.insert(entry.clone(), size);
        let others = uploads
            .iter()
            .filter(|((k, n), _)| k == key && n != name)
            .map(|((_, n), &s)| (n.clone(), s))
            .collect();
        drop(uploads);
        // The guard exists as soon as the entry does: whatever fails from
        // here on, the name is released, never left `LOCKED`.
        let lock = UploadLock {
            uploads: Arc::clone(&self.uploads),
            entry,
            size,
        };
        Ok((lock, others))
    }

    /// Sets how many unfinished uploads one user may hold.
    pub fn set_max_staged(&mut self, max: usize) {
        self.max_staged = max;
    }

    /// Sets how many files (stored and unfinished) one user may hold.
    pub fn set_max_files(&mut self, max: u64) {
        self.max_files = max;
    }

    pub(super) fn lock_uploads(&self) -> std::sync::MutexGuard<'_, Uploads> {
        // Each update is one insert or remove: nothing half-done to see.
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Held while a connection uploads a name; releases the name and its share
/// of the quota on drop. It carries what it was claimed for, the user, the
/// name and the declared size, and an upload is begun from it alone.
pub struct UploadLock {
    uploads: Arc<Mutex<Uploads>>,
    /// (user key, file name).
    entry: (String, String),
    size: u64,
}

impl UploadLock {
    /// The key of the user uploading.
    pub fn key(&self) -> &str {
        &self.entry.0
    }

    /// The name being uploaded.
    pub fn name(&self) -> &str {
        &self.entry.1
    }

    /// The size the upload declared.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether this lock was claimed from `storage`.
    pub(super) fn is_from(&self, storage: &Storage) -> bool {
        Arc::ptr_eq(&self.uploads, &storage.uploads)
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{feed, storage, upload};

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
        match s.lock_upload("alice", "b", 21, quota) {
            Err(
                e @ Error::QuotaExceeded {
                    needs: 21,
                    left: 20,
                    quota: 100,
                },
            ) => assert_eq!(
                e.to_string(),
                "quota exceeded: needs 21 B, 20 B left of 100 B"
            ),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("over the quota"),
        }
        // Replacing a file: its old size is not counted for the new one,
        // but another upload in flight counts with its whole declared size.
        let old = s.lock_upload("alice", "old", 50, quota).unwrap();
        assert!(matches!(
            s.lock_upload("alice", "b", 1, quota),
            Err(Error::QuotaExceeded { .. })
        ));
        // Another user's uploads and a released reservation do not count.
        assert!(s.lock_upload("bob", "b", 100, quota).is_ok());
        drop(a);
        drop(old);
        assert!(s.lock_upload("alice", "b", 70, quota).is_ok());
    }

    /// An upload nobody finished still holds its declared size, until it
    /// is resumed, finished or discarded.
    #[test]
    fn abandoned_uploads_count_with_their_declared_size() {
        let (_d, s) = storage();
        let quota = Some(100);
        {
            let lock = s.lock_upload("alice", "a", 60, quota).unwrap();
            let mut up = s.begin_upload(&lock).unwrap();
            assert!(feed(&mut up, b"0123").is_err(), "the client hung up");
        }
        assert_eq!(s.staged_bytes("alice"), 4);
        assert!(matches!(
            s.lock_upload("alice", "b", 41, quota),
            Err(Error::QuotaExceeded { .. })
        ));
        assert!(s.lock_upload("alice", "b", 40, quota).is_ok());
        // Resuming the abandoned one is not counted twice.
        assert!(s.lock_upload("alice", "a", 100, quota).is_ok());
        s.discard("alice", "a").unwrap();
        assert!(matches!(s.discard("alice", "a"), Err(Error::NothingStaged)));
        assert!(s.lock_upload("alice", "b", 100, quota).is_ok());
    }

    #[test]
    fn the_number_of_unfinished_uploads_is_bounded() {
        let (_d, mut s) = storage();
        s.set_max_staged(2);
        let a = s.lock_upload("alice", "a", 1, None).unwrap();
        drop(s.begin_upload(&a).unwrap());
        drop(a);
        let _b = s.lock_upload("alice", "b", 1, None).unwrap();
        match s.lock_upload("alice", "c", 1, None) {
            Err(e @ Error::TooManyStaged(2)) => assert!(e.to_string().contains("discard")),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a third upload was allowed"),
        }
        assert!(s.lock_upload("alice", "a", 1, None).is_ok(), "a resume");
        assert!(s.lock_upload("bob", "c", 1, None).is_ok());
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
            Err(Error::QuotaExceeded { .. })
        ));
        assert!(matches!(
            s.lock_upload("alice", "c", 1, quota),
            Err(Error::QuotaExceeded { .. })
        ));
        let c = s.lock_upload("alice", "c", u64::MAX, None).unwrap();
        drop((a, b, c));
        for name in ["a", "b", "c"] {
            assert!(s.lock_upload("alice", name, 1, Some(1)).is_ok(), "{name}");
        }
    }
}
