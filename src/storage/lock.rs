//! Upload locks: one connection at a time uploads a name, and the uploads
//! in flight together stay within the user's quota.

use std::sync::{Arc, Mutex};

use super::{Storage, Uploads};
use crate::error::Error;

impl Storage {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{storage, upload};

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
}
