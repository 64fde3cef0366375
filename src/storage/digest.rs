//! Cached digests: the MD5 of each user file, kept under `digests/INO`.
//!
//! Digests are keyed by inode and checked against size and mtime: a rename
//! keeps the inode, so the MD5 moves with the file for free, and a file
//! changed by other means no longer matches its record and is re-hashed.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::{replace_file, Storage};
use crate::error::Error;
use crate::hashcopy::hash_prefix;

impl Storage {
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
        let digest = format!("{:x}", hasher.finalize());
        // Cache only if the file did not change while it was read.
        if file.metadata().is_ok_and(|now| same_version(&now, meta)) {
            self.record_digest(key, meta, &digest)?;
        }
        Ok(digest)
    }

    pub(super) fn digest_path(&self, key: &str, ino: u64) -> PathBuf {
        self.user_dir(key).join("digests").join(ino.to_string())
    }

    pub(super) fn cached_digest(&self, key: &str, meta: &Metadata) -> Option<String> {
        read_record(&self.digest_path(key, meta.ino()), meta)
    }

    fn record_digest(&self, key: &str, meta: &Metadata, md5: &str) -> io::Result<()> {
        write_record(&self.user_dir(key).join("digests"), meta, md5)?;
        // A listing that said `null` for this file is out of date.
        self.changed(key);
        Ok(())
    }
}

/// Records `md5` as the digest of the file `meta` describes, in the
/// `digests` folder: `INO` holds "SIZE MTIME_NS MD5\n", replaced
/// atomically.
///
/// # Errors
/// If the record cannot be written.
pub(super) fn write_record(digests: &Path, meta: &Metadata, md5: &str) -> io::Result<()> {
    let line = format!("{} {} {md5}\n", meta.len(), mtime_ns(meta));
    replace_file(&digests.join(meta.ino().to_string()), line.as_bytes())
}

/// The MD5 in the record at `path`, if there is a well-formed one and it
/// still describes the file `meta` describes (same size and mtime).
fn read_record(path: &Path, meta: &Metadata) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let size: u64 = parts.next()?.parse().ok()?;
    let mtime: i128 = parts.next()?.parse().ok()?;
    let md5 = parts.next()?;
    (size == meta.len() && mtime == mtime_ns(meta) && crate::protocol::is_md5_hex(md5))
        .then(|| md5.to_string())
}

fn same_version(a: &Metadata, b: &Metadata) -> bool {
    a.ino() == b.ino() && a.len() == b.len() && mtime_ns(a) == mtime_ns(b)
}

pub(super) fn mtime_ns(m: &Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::storage;

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
        // The record alone, in its format; no temporary file left over.
        let digests: Vec<_> = fs::read_dir(s.user_dir("alice").join("digests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(digests, [m.ino().to_string().as_str()]);
        assert_eq!(
            fs::read_to_string(s.digest_path("alice", m.ino())).unwrap(),
            format!("5 {} 5d41402abc4b2a76b9719d911017c592\n", mtime_ns(&m))
        );
    }
}
