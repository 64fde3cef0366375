//! Cached digests: the MD5 of each user file, recorded on the file itself.
//!
//! The record is "SIZE MTIME_NS MD5\n" in the file's extended attribute
//! `user.netdisk.md5`, set before the file is synced and renamed into
//! place, so that it costs no file of its own. Where the filesystem has no
//! user attributes, it goes to `digests/INO` instead (replaced
//! atomically), and records there are read too. Either way it is checked
//! against size and mtime: a rename keeps the inode, so the MD5 moves with
//! the file for free, and a file changed by other means no longer matches
//! its record and is re-hashed.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::{replace_file, Storage};
use crate::error::Error;
use crate::hashcopy::hash_prefix;

/// The extended attribute that holds a file's record.
const ATTR: &str = "user.netdisk.md5";

impl Storage {
    /// MD5 of an open file: from the cache when the server stored it,
    /// otherwise computed from disk and cached.
    ///
    /// # Errors
    /// If the file cannot be read.
    pub fn digest(&self, key: &str, file: &File, meta: &Metadata) -> Result<String, Error> {
        if let Some(d) = self.cached_digest_of(key, file, meta) {
            return Ok(d);
        }
        let mut hasher = Md5::new();
        hash_prefix(file, meta.len(), &mut hasher)?;
        let digest = crate::protocol::md5_hex(hasher.finalize());
        // Cache only if the file did not change while it was read. A
        // record that cannot be written costs a re-hash next time, not
        // this answer.
        let digests = self.user_dir(key).join("digests");
        if file.metadata().is_ok_and(|now| same_version(&now, meta))
            && record(file, meta, &digest, &digests).is_ok()
        {
            // A listing that said `null` for this file is out of date.
            self.changed(key);
        }
        Ok(digest)
    }

    pub(super) fn digest_path(&self, key: &str, ino: u64) -> PathBuf {
        self.user_dir(key).join("digests").join(ino.to_string())
    }

    /// The MD5 the server recorded for the open `file`, which `meta`
    /// describes, if it did; never hashes nor records.
    pub fn recorded_digest(&self, key: &str, file: &File, meta: &Metadata) -> Option<String> {
        self.cached_digest_of(key, file, meta)
    }

    /// The recorded MD5 of the open `file`, which `meta` describes.
    fn cached_digest_of(&self, key: &str, file: &File, meta: &Metadata) -> Option<String> {
        use xattr::FileExt;
        self.recorded(key, file.get_xattr(ATTR).ok().flatten(), meta)
    }

    /// The recorded MD5 of the file at `path`, which `meta` describes.
    pub(super) fn cached_digest(&self, key: &str, path: &Path, meta: &Metadata) -> Option<String> {
        self.recorded(key, read_attr(path), meta)
    }

    /// The recorded MD5 of the file at `path` that a listing found with
    /// `meta`. When the record does not describe `meta` (the file may have
    /// been replaced since it was looked at), the file is opened and its
    /// record read against the `stat` of that same open file, whose
    /// metadata comes back too: a stored file is never listed without its
    /// digest because an overwrite raced the listing. `None`: the file is
    /// gone (or is no longer a file), and is not listed.
    pub(super) fn listed_digest(
        &self,
        key: &str,
        path: &Path,
        meta: &Metadata,
    ) -> Option<(Option<String>, Option<Metadata>)> {
        if let Some(d) = self.cached_digest(key, path, meta) {
            return Some((Some(d), None));
        }
        let file = match super::open_nofollow(path, fs::OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) if super::is_not_found(&e) => return None,
            Err(_) => return Some((None, None)),
        };
        match file.metadata() {
            Ok(now) if now.is_file() => Some((self.cached_digest_of(key, &file, &now), Some(now))),
            Ok(_) => None,
            Err(_) => Some((None, None)),
        }
    }

    /// The MD5 in a file's attribute `attr`, or without one, in its record
    /// file.
    fn recorded(&self, key: &str, attr: Option<Vec<u8>>, meta: &Metadata) -> Option<String> {
        match attr {
            Some(text) => parse_record(&text, meta),
            None => parse_record(&fs::read(self.digest_path(key, meta.ino())).ok()?, meta),
        }
    }
}

/// Records `md5` as the digest of `file`, which `meta` describes: in its
/// attribute, or where the filesystem has none, in the `digests` folder
/// under its inode number.
///
/// # Errors
/// If the record cannot be written.
pub(super) fn record(file: &File, meta: &Metadata, md5: &str, digests: &Path) -> io::Result<()> {
    let line = format!("{} {} {md5}\n", meta.len(), mtime_ns(meta));
    match set_attr(file, line.as_bytes()) {
        Err(e) if no_attributes(&e) => write_record_file(digests, meta, &line),
        done => done,
    }
}

/// Whether an error from setting an attribute means that this filesystem
/// (or its mount) keeps no user attributes.
pub(super) fn no_attributes(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EPERM))
}

fn write_record_file(digests: &Path, meta: &Metadata, line: &str) -> io::Result<()> {
    replace_file(&digests.join(meta.ino().to_string()), line.as_bytes())
}

fn set_attr(file: &File, value: &[u8]) -> io::Result<()> {
    use xattr::FileExt;
    file.set_xattr(ATTR, value)
}

/// The record in the attribute of the file at `path` (not following a
/// symlink), if it has one.
fn read_attr(path: &Path) -> Option<Vec<u8>> {
    xattr::get(path, ATTR).ok().flatten()
}

/// The MD5 in `text`, if it is a well-formed record that still describes
/// the file `meta` describes (same size and mtime).
fn parse_record(text: &[u8], meta: &Metadata) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
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

    /// Whether the filesystem under `dir` keeps user attributes.
    fn keeps_attributes(dir: &Path) -> bool {
        let probe = dir.join("probe");
        fs::write(&probe, b"").unwrap();
        let kept = xattr::set(&probe, ATTR, b"x").is_ok();
        fs::remove_file(&probe).unwrap();
        kept
    }

    #[test]
    fn foreign_files_get_their_digest_computed_and_cached() {
        let (d, s) = storage();
        let path = s.files_dir("alice").join("dropped");
        fs::write(&path, b"hello").unwrap();
        assert_eq!(s.list("alice").unwrap()[0].md5, None);
        let (f, m) = s.open_file("alice", "dropped").unwrap();
        assert_eq!(
            s.digest("alice", &f, &m).unwrap(),
            "5d41402abc4b2a76b9719d911017c592"
        );
        assert!(s.list("alice").unwrap()[0].md5.is_some());
        // The record, in its format, on the file where the filesystem
        // allows, else in a file of its own; no temporary file left over.
        let line = format!("5 {} 5d41402abc4b2a76b9719d911017c592\n", mtime_ns(&m));
        let digests: Vec<_> = fs::read_dir(s.user_dir("alice").join("digests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if keeps_attributes(d.path()) {
            assert_eq!(xattr::get(&path, ATTR).unwrap(), Some(line.into_bytes()));
            assert!(digests.is_empty(), "no record file: {digests:?}");
        } else {
            assert_eq!(digests, [m.ino().to_string().as_str()]);
            assert_eq!(
                fs::read_to_string(s.digest_path("alice", m.ino())).unwrap(),
                line
            );
        }
    }

    #[test]
    fn record_files_are_read_and_checked_against_the_file() {
        let (_d, s) = storage();
        let path = s.files_dir("alice").join("old");
        fs::write(&path, b"hello").unwrap();
        let m = fs::metadata(&path).unwrap();
        let md5 = "5d41402abc4b2a76b9719d911017c592";
        let line = format!("5 {} {md5}\n", mtime_ns(&m));
        write_record_file(&s.user_dir("alice").join("digests"), &m, &line).unwrap();
        assert_eq!(s.list("alice").unwrap()[0].md5.as_deref(), Some(md5));
        // A record of another size no longer describes the file.
        fs::write(&path, b"hello!").unwrap();
        assert_eq!(s.list("alice").unwrap()[0].md5, None);
    }

    #[test]
    fn an_attribute_that_does_not_describe_the_file_is_ignored() {
        let (d, s) = storage();
        if !keeps_attributes(d.path()) {
            return;
        }
        let path = s.files_dir("alice").join("f");
        fs::write(&path, b"hello").unwrap();
        xattr::set(&path, ATTR, b"5 1 5d41402abc4b2a76b9719d911017c592\n").unwrap();
        assert_eq!(s.list("alice").unwrap()[0].md5, None, "wrong mtime");
        xattr::set(&path, ATTR, b"garbage").unwrap();
        assert_eq!(s.list("alice").unwrap()[0].md5, None);
    }
}
