//! The single-machine disk behind the seam: [`Storage`] as it is.

use std::sync::Arc;
use std::time::Duration;

use super::{Disk, Encode, Kind, Opened, Source, Upload, UploadLock};
use crate::error::Error;
use crate::protocol::FileInfo;
use crate::storage::{Listing, Prop, Storage};

impl Disk for Storage {
    fn create_home(&self, key: &str) -> Result<(), Error> {
        Ok(Storage::create_home(self, key)?)
    }

    fn remove_home(&self, key: &str) -> Result<(), Error> {
        Ok(Storage::remove_home(self, key)?)
    }

    fn attic(&self) -> Option<std::path::PathBuf> {
        Some(self.attic_dir())
    }

    fn kind(&self, key: &str, path: &str) -> Result<Kind, Error> {
        Storage::kind(self, key, path)
    }

    fn listing(&self, key: &str, path: &str, recursive: bool) -> Result<Listing, Error> {
        Storage::listing(self, key, path, recursive)
    }

    fn shared_listing(
        &self,
        key: &str,
        path: &str,
        recursive: bool,
        encode: Encode<'_>,
    ) -> Result<Arc<Vec<u8>>, Error> {
        Storage::shared_listing(self, key, path, recursive, encode)
    }

    fn list(&self, key: &str) -> Result<Vec<FileInfo>, Error> {
        Storage::list(self, key)
    }

    fn open_file(&self, key: &str, path: &str) -> Result<Opened, Error> {
        let (file, meta) = Storage::open_file(self, key, path)?;
        Ok(Opened {
            source: Source::File(file),
            size: meta.len(),
            mtime: crate::storage::mtime_secs(&meta),
            md5: None,
            meta: Some(meta),
        })
    }

    fn digest(&self, key: &str, file: &Opened) -> Result<String, Error> {
        match &file.meta {
            Some(meta) => match &file.source {
                Source::File(f) => Storage::digest(self, key, f, meta),
                Source::Remote(_) => Err(Error::Internal("a file opened elsewhere".into())),
            },
            None => Err(Error::Internal("a file opened elsewhere".into())),
        }
    }

    fn mkdir(&self, key: &str, path: &str) -> Result<(), Error> {
        Storage::mkdir(self, key, path)
    }

    fn delete(&self, key: &str, path: &str, recursive: bool) -> Result<(), Error> {
        Storage::delete(self, key, path, recursive)
    }

    fn rename(&self, key: &str, from: &str, to: &str) -> Result<(), Error> {
        Storage::rename(self, key, from, to)
    }

    fn usage(&self, key: &str) -> Result<(u64, u64), Error> {
        Storage::usage(self, key)
    }

    fn props(&self, key: &str, path: &str) -> Result<Vec<Prop>, Error> {
        Storage::props(self, key, path)
    }

    fn set_props(&self, key: &str, path: &str, props: &[Prop]) -> Result<(), Error> {
        Storage::set_props(self, key, path, props)
    }

    fn set_mtime(&self, key: &str, path: &str, secs: u64) -> Result<(), Error> {
        Storage::set_mtime(self, key, path, secs)
    }

    fn lock_upload(
        &self,
        key: &str,
        name: &str,
        size: u64,
        quota: Option<u64>,
    ) -> Result<UploadLock, Error> {
        Storage::lock_upload(self, key, name, size, quota).map(UploadLock::Local)
    }

    fn begin_upload(&self, lock: &UploadLock) -> Result<Upload, Error> {
        match lock {
            UploadLock::Local(l) => Storage::begin_upload(self, l).map(Upload::Local),
            UploadLock::Db(_) => Err(Error::Internal("a lock from another disk".into())),
        }
    }

    fn begin_fresh_upload(&self, lock: &UploadLock) -> Result<Upload, Error> {
        match lock {
            UploadLock::Local(l) => Storage::begin_fresh_upload(self, l).map(Upload::Local),
            UploadLock::Db(_) => Err(Error::Internal("a lock from another disk".into())),
        }
    }

    fn staged_bytes(&self, key: &str) -> u64 {
        Storage::staged_bytes(self, key)
    }

    fn staged_offset(&self, key: &str, name: &str, size: u64) -> u64 {
        Storage::staged_offset(self, key, name, size)
    }

    fn uploading(&self, key: &str, name: &str) -> bool {
        Storage::uploading(self, key, name)
    }

    fn discard(&self, key: &str, name: &str) -> Result<(), Error> {
        Storage::discard(self, key, name)
    }

    fn sweep_staging(&self, max_age: Duration) {
        Storage::sweep_staging(self, max_age);
    }

    fn recount_usage(&self) {
        Storage::recount_usage(self);
    }

    fn empty_trash(&self) {
        Storage::empty_trash(self);
    }

    fn release_claims(&self) {
        // The claims are this process's memory: they end with it.
    }
}
