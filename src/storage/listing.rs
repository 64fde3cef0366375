//! Listings of a user's folder, compact and shared.
//!
//! A folder of 45,000 files with 255-byte names lists to about 15 MB of
//! JSON. Building it as one `String` and one JSON value per entry cost
//! several times that per `ls`, from every worker's own malloc arena, and
//! glibc kept most of it after. So a listing is read into two buffers (all
//! names in one, fixed-size rows in the other), sorted there, and handed to
//! the caller to encode straight into its reply frame; and `ls` requests
//! of one folder that arrive while its frame is being built or sent share
//! that one frame instead of building their own.
//!
//! Sharing must never answer with a folder older than the request: every
//! change the server makes to a folder bumps its generation, a frame
//! remembers the generation read before its folder was, and a request
//! reuses a frame only if the generation is still the one it saw on
//! arrival. Changes made behind the server's back are seen by the next
//! build, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use super::{unix_secs, Storage};
use crate::error::Error;

/// A folder's files and sub-folders (or a whole subtree's, names as paths
/// relative to the folder), each sorted by UTF-8 bytes: every name in one
/// buffer.
pub struct Listing {
    names: String,
    rows: Vec<Row>,
    folders: Vec<FolderRow>,
}

struct FolderRow {
    start: u32,
    len: u16,
    mtime: u64,
}

/// A folder of a [`Listing`], borrowed; serialises as PROTOCOL.md's
/// `{name, mtime}`.
pub struct FolderRef<'a> {
    pub name: &'a str,
    pub mtime: u64,
}

struct Row {
    /// Where the name starts in `Listing::names`.
    start: u32,
    /// Its length in bytes (paths are at most 1024).
    len: u16,
    size: u64,
    mtime: u64,
    md5: Option<[u8; 32]>,
}

/// One entry of a [`Listing`], borrowed; serialises as PROTOCOL.md's
/// `{name, size, mtime, md5}`.
pub struct FileRef<'a> {
    pub name: &'a str,
    pub size: u64,
    pub mtime: u64,
    pub md5: Option<&'a str>,
}

/// One entry of a listing being built from records kept elsewhere (a
/// database): its name (relative to the folder listed), whether it is a
/// folder, size, mtime and digest.
pub struct Record {
    pub name: String,
    pub folder: bool,
    pub size: u64,
    pub mtime: u64,
    pub md5: Option<String>,
}

impl Listing {
    /// A listing of `records`, sorted as every listing is.
    ///
    /// # Errors
    /// If the names hold more than 4 GiB.
    pub fn of_records(records: impl IntoIterator<Item = Record>) -> Result<Listing, Error> {
        let mut listing = Listing {
            names: String::new(),
            rows: Vec::new(),
            folders: Vec::new(),
        };
        for r in records {
            let start = u32::try_from(listing.names.len())
                .map_err(|_| Error::Internal("too many names to list".into()))?;
            let len = u16::try_from(r.name.len()).unwrap_or(u16::MAX);
            listing.names.push_str(&r.name);
            if r.folder {
                listing.folders.push(FolderRow {
                    start,
                    len,
                    mtime: r.mtime,
                });
            } else {
                let md5 = r
                    .md5
                    .filter(|d| crate::protocol::is_md5_hex(d))
                    .and_then(|d| d.into_bytes().try_into().ok());
                listing.rows.push(Row {
                    start,
                    len,
                    size: r.size,
                    mtime: r.mtime,
                    md5,
                });
            }
        }
        listing.sort();
        Ok(listing)
    }

    fn sort(&mut self) {
        let Listing {
            names,
            rows,
            folders,
        } = self;
        let name = |start: u32, len: u16| &names.as_bytes()[start as usize..][..usize::from(len)];
        rows.sort_unstable_by(|a, b| name(a.start, a.len).cmp(name(b.start, b.len)));
        folders.sort_unstable_by(|a, b| name(a.start, a.len).cmp(name(b.start, b.len)));
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the folder has no files.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of folders.
    pub fn folder_count(&self) -> usize {
        self.folders.len()
    }

    /// The folders in order.
    pub fn folders(&self) -> impl Iterator<Item = FolderRef<'_>> + '_ {
        self.folders.iter().map(|r| FolderRef {
            name: self.slice(r.start, r.len),
            mtime: r.mtime,
        })
    }

    /// The folders, serialisable as a JSON array.
    pub fn folder_list(&self) -> Folders<'_> {
        Folders(self)
    }

    /// Bytes of all names together.
    pub fn name_bytes(&self) -> usize {
        self.names.len()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = FileRef<'_>> + '_ {
        self.rows.iter().map(|r| FileRef {
            name: self.name(r),
            size: r.size,
            mtime: r.mtime,
            // The row holds only digests that passed `is_md5_hex`: ASCII.
            md5: r.md5.as_ref().and_then(|d| std::str::from_utf8(d).ok()),
        })
    }

    fn name(&self, r: &Row) -> &str {
        self.slice(r.start, r.len)
    }

    fn slice(&self, start: u32, len: u16) -> &str {
        let start = start as usize;
        // Rows are cut at the boundaries of the names pushed into `names`.
        self.names
            .get(start..start + usize::from(len))
            .unwrap_or_default()
    }
}

/// A [`Listing`]'s folders as a JSON array of `{name, mtime}`.
pub struct Folders<'a>(&'a Listing);

impl Serialize for FolderRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FolderInfo", 2)?;
        st.serialize_field("name", self.name)?;
        st.serialize_field("mtime", &self.mtime)?;
        st.end()
    }
}

impl Serialize for Folders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.folder_count()))?;
        for f in self.0.folders() {
            seq.serialize_element(&f)?;
        }
        seq.end()
    }
}

impl Serialize for FileRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FileInfo", 4)?;
        st.serialize_field("name", self.name)?;
        st.serialize_field("size", &self.size)?;
        st.serialize_field("mtime", &self.mtime)?;
        st.serialize_field("md5", &self.md5)?;
        st.end()
    }
}

impl Serialize for Listing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for f in self.iter() {
            seq.serialize_element(&f)?;
        }
        seq.end()
    }
}

/// Per user: the generation of the tree; per folder listed: the last frame
/// built.
#[derive(Default)]
pub(super) struct Listings {
    generations: Mutex<HashMap<String, u64>>,
    slots: Mutex<HashMap<SlotKey, Arc<Mutex<Slot>>>>,
    /// Per user: recursive walks read-lock the tree, moves write-lock it
    /// for their one `rename(2)`, so that a walk sees a moved folder at
    /// one place or the other, whole.
    trees: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

/// What a frame lists: (user key, folder path, recursive).
type SlotKey = (String, String, bool);

#[derive(Default)]
struct Slot {
    generation: u64,
    frame: Weak<Vec<u8>>,
}

impl Listings {
    /// Marks a change to `key`'s tree: no frame built before it is reused.
    pub(super) fn bump(&self, key: &str) {
        let mut g = lock(&self.generations);
        match g.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                g.insert(key.to_string(), 1);
            }
        }
    }

    pub(super) fn generation(&self, key: &str) -> u64 {
        lock(&self.generations).get(key).copied().unwrap_or(0)
    }

    /// The lock on `key`'s tree (see [`Listings::trees`]).
    pub(super) fn tree(&self, key: &str) -> Arc<RwLock<()>> {
        Arc::clone(lock(&self.trees).entry(key.to_string()).or_default())
    }
}

impl Storage {
    /// Reads the folder `path` of `key` (`""`: the root) into a
    /// [`Listing`]: its files and folders, or with `recursive` the whole
    /// subtree's, named by their paths relative to `path`.
    ///
    /// # Errors
    /// `NOT_FOUND` if there is no such folder, `NOT_A_FOLDER` if it is a
    /// file, or if the folder cannot be read, or holds more than 4 GiB of
    /// names.
    pub fn listing(&self, key: &str, path: &str, recursive: bool) -> Result<Listing, Error> {
        if !recursive {
            return self.listing_once(key, path, recursive);
        }
        // No folder moves under the walk.
        let tree = self.listings.tree(key);
        let _walk = tree.read().unwrap_or_else(|e| e.into_inner());
        self.listing_once(key, path, recursive)
    }

    fn listing_once(&self, key: &str, path: &str, recursive: bool) -> Result<Listing, Error> {
        let mut names = String::new();
        let mut rows = Vec::new();
        let mut folders = Vec::new();
        let dir = self.folder(key, path)?;
        let mut add = |name: &str, meta: &std::fs::Metadata| -> Result<(), Error> {
            let start = u32::try_from(names.len())
                .map_err(|_| Error::Internal("too many names to list".into()))?;
            // Paths are at most 1024 bytes.
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            let mtime = unix_secs(meta.modified()?);
            if meta.is_dir() {
                names.push_str(name);
                folders.push(FolderRow { start, len, mtime });
                return Ok(());
            }
            let Some((md5, now)) = self.listed_digest(key, &dir.join(name), meta) else {
                return Ok(());
            };
            let md5 = md5.and_then(|d| d.into_bytes().try_into().ok());
            let (size, mtime) = match &now {
                Some(m) => (m.len(), unix_secs(m.modified()?)),
                None => (meta.len(), mtime),
            };
            names.push_str(name);
            rows.push(Row {
                start,
                len,
                size,
                mtime,
                md5,
            });
            Ok(())
        };
        if recursive {
            super::tree::walk_tree(&dir, &mut add)?;
        } else {
            super::tree::entries(&dir, &mut add)?;
        }
        let mut listing = Listing {
            names,
            rows,
            folders,
        };
        listing.sort();
        Ok(listing)
    }

    /// A reply frame for the listing of `key`'s folder `path`, `encode`d
    /// from a fresh [`Listing`], or shared with other requests when no
    /// change came through the server since this one arrived (see the
    /// module comment). At most one frame per folder is built at a time,
    /// and all of them within the listings' memory budget (`budget`).
    ///
    /// # Errors
    /// The listing's or `encode`'s; `BUSY` if the budget stayed taken.
    pub fn shared_listing(
        &self,
        key: &str,
        path: &str,
        recursive: bool,
        encode: impl FnOnce(&Listing) -> Result<Vec<u8>, Error>,
    ) -> Result<Arc<Vec<u8>>, Error> {
        let seen = self.listings.generation(key);
        let slot = Arc::clone(
            lock(&self.listings.slots)
                .entry((key.to_string(), path.to_string(), recursive))
                .or_default(),
        );
        // Held while the folder is read and encoded: requests for the same
        // folder wait for this frame rather than build one each. Nothing
        // else takes this lock.
        let mut slot = lock(&slot);
        if slot.generation == seen {
            if let Some(frame) = slot.frame.upgrade() {
                return Ok(frame);
            }
        }
        let generation = self.listings.generation(key);
        // Its share of the listings' memory first (see `budget`).
        let want = super::budget::estimate(&self.folder(key, path)?, recursive);
        let charge = self.listing_budget.reserve(want)?;
        let frame = Arc::new(encode(&self.listing(key, path, recursive)?)?);
        charge.keep(&frame);
        *slot = Slot {
            generation,
            frame: Arc::downgrade(&frame),
        };
        Ok(frame)
    }

    /// Marks a change to `key`'s folder (see [`Storage::shared_listing`]).
    pub(super) fn changed(&self, key: &str) {
        self.listings.bump(key);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one assignment: nothing half-done to see.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{storage, upload};

    fn names(l: &Listing) -> Vec<String> {
        l.iter().map(|f| f.name.to_string()).collect()
    }

    #[test]
    fn a_listing_is_sorted_by_bytes_and_serialises_like_file_info() {
        let (_d, s) = storage();
        for name in ["b", "a", "é", "Z", "報告.pdf"] {
            upload(&s, name, name.as_bytes()).unwrap();
        }
        let l = s.listing("alice", "", false).unwrap();
        assert_eq!(names(&l), ["Z", "a", "b", "é", "報告.pdf"]);
        let ours = serde_json::to_value(&l).unwrap();
        let theirs = serde_json::to_value(s.list("alice").unwrap()).unwrap();
        assert_eq!(ours, theirs);
        assert!(ours[0]["md5"].is_string());
    }

    #[test]
    fn a_frame_is_shared_only_while_the_folder_is_unchanged() {
        let (_d, s) = storage();
        upload(&s, "a", b"1").unwrap();
        let count = |l: &Listing| Ok(l.len().to_string().into_bytes());
        let first = s.shared_listing("alice", "", false, count).unwrap();
        let again = s
            .shared_listing("alice", "", false, |_| panic!("built again"))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        upload(&s, "b", b"2").unwrap();
        let after_put = s.shared_listing("alice", "", false, count).unwrap();
        assert_eq!(*after_put, b"2");
        s.rename("alice", "b", "c").unwrap();
        assert!(!Arc::ptr_eq(
            &after_put,
            &s.shared_listing("alice", "", false, count).unwrap()
        ));
        s.delete("alice", "c", false).unwrap();
        drop((first, again, after_put));
        // Nobody holds a frame: the next request builds one.
        assert_eq!(*s.shared_listing("alice", "", false, count).unwrap(), b"1");
    }
}
