//! What a file or folder carries besides its bytes: properties set by
//! clients (WebDAV "dead" properties), kept in the extended attribute
//! `user.netdisk.props` of the file or folder itself, so that they follow
//! it on a rename or move for free and go with it when it is deleted; and
//! its modification time, which a client may set after an upload.

use std::fs::{File, Metadata, OpenOptions};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{digest, is_not_found, open_nofollow, Storage};
use crate::error::Error;

/// The extended attribute that holds a resource's properties.
const ATTR: &str = "user.netdisk.props";
/// Properties one file or folder may carry.
pub const MAX_PROPS: usize = 32;
/// Bytes all of one resource's properties may take, names and values
/// (within what every Linux filesystem keeps in one attribute).
pub const MAX_PROPS_BYTES: usize = 3000;

/// One property: namespace, local name and its value as XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prop {
    pub ns: String,
    pub name: String,
    pub value: String,
}

impl Storage {
    /// Opens the file or folder at `path` without following a symlink.
    fn open_entry(&self, key: &str, path: &str) -> Result<(File, Metadata), Error> {
        let at = if path.is_empty() {
            self.folder(key, "")?
        } else {
            self.locate(key, path)?
        };
        let file = match open_nofollow(&at, OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() && !meta.is_dir() {
            return Err(Error::NotFound);
        }
        Ok((file, meta))
    }

    /// The properties clients set on `path`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `NOT_A_FOLDER` for a parent, or an I/O error.
    pub fn props(&self, key: &str, path: &str) -> Result<Vec<Prop>, Error> {
        use xattr::FileExt;
        let (file, _) = self.open_entry(key, path)?;
        Ok(match file.get_xattr(ATTR) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    /// Replaces the properties of `path` with `props`.
    ///
    /// # Errors
    /// `QUOTA_EXCEEDED` past [`MAX_PROPS`] or [`MAX_PROPS_BYTES`] or where
    /// the filesystem keeps no attributes; `NOT_FOUND`, or an I/O error.
    pub fn set_props(&self, key: &str, path: &str, props: &[Prop]) -> Result<(), Error> {
        use xattr::FileExt;
        let (file, _) = self.open_entry(key, path)?;
        if props.is_empty() {
            return match file.remove_xattr(ATTR) {
                Err(e) if e.raw_os_error() != Some(libc::ENODATA) && !digest::no_attributes(&e) => {
                    Err(e.into())
                }
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec(props).map_err(|e| Error::Internal(e.to_string()))?;
        // The properties' own room, told as a quota of its own.
        let full = |left: usize| Error::QuotaExceeded {
            needs: bytes.len() as u64,
            left: left as u64,
            quota: MAX_PROPS_BYTES as u64,
        };
        if props.len() > MAX_PROPS || bytes.len() > MAX_PROPS_BYTES {
            return Err(full(MAX_PROPS_BYTES));
        }
        match file.set_xattr(ATTR, &bytes) {
            Ok(()) => Ok(()),
            Err(e) if digest::no_attributes(&e) || e.raw_os_error() == Some(libc::ENOSPC) => {
                Err(full(0))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the modification time of the file at `path` to `secs` (Unix
    /// seconds), keeping its digest record valid.
    ///
    /// # Errors
    /// `NOT_FOUND`, `IS_A_FOLDER`, or an I/O error.
    pub fn set_mtime(&self, key: &str, path: &str, secs: u64) -> Result<(), Error> {
        let (file, meta) = self.open_file(key, path)?;
        let md5 = self.digest(key, &file, &meta)?;
        let when = UNIX_EPOCH + Duration::from_secs(secs);
        // The file is open read-only: set the times through its path's
        // descriptor (`futimens` needs only ownership).
        file.set_times(
            std::fs::FileTimes::new()
                .set_modified(when)
                .set_accessed(SystemTime::now()),
        )?;
        let now = file.metadata()?;
        let _ = digest::record(&file, &now, &md5, &self.user_dir(key).join("digests"));
        self.changed(key);
        Ok(())
    }
}
