//! Files on disk: users' folders, staged uploads and cached digests.
//!
//! ```text
//! DATA/.lock                      held by the server while it serves
//! DATA/users.xlsx                 accounts (see `users`)
//! DATA/known-addresses.json       where each user logged in from lately
//! DATA/users/KEY/files/PATH       what the user sees: folders and regular
//!                                 files, "SIZE MTIME_NS MD5" in each file's
//!                                 user.netdisk.md5
//! DATA/users/KEY/trash/N/         a folder deleted recursively, being removed
//! DATA/users/KEY/staging/H.part   an upload in progress, H = md5(PATH)
//! DATA/users/KEY/staging/H.meta   {"name": PATH, "size": S} of that upload
//! DATA/users/KEY/staging/H.md5    its running MD5 when it stopped (a resume
//!                                  hashes no staged byte again)
//! DATA/users/KEY/digests/INO      the same record of the file with inode INO,
//!                                 where the filesystem keeps no attributes
//! DATA/attic/KEY.TIME/            a removed user's leftovers, out of reach
//! ```
//!
//! Server files live outside every user's `files/`, so no user name or file
//! name can collide with them. Every path reaching this module has passed
//! [`names::check_path`]: plain components joined by `/`, joined only to
//! the user's own folder, each parent checked to be a real folder (`tree`).
//! Files are opened with `O_NOFOLLOW | O_NONBLOCK` and their type checked
//! on the open descriptor, so a symlink, FIFO or device placed anywhere in
//! the tree is never followed, read or written through.
//!
//! This file holds [`Storage`] and the plain file operations; `tree` the
//! folders, moves, deletes and usage; `lock` the upload locks and quota
//! reservations, `upload` the staged uploads and their sweep, `digest` the
//! cached digests.

mod attrs;
pub mod budget;
mod datalock;
mod digest;
mod listing;
mod lock;
mod staged;
mod tree;
mod upload;

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::error::Error;

pub use attrs::{Prop, MAX_PROPS, MAX_PROPS_BYTES};
pub use datalock::DataLock;
pub use listing::{FileRef, FolderRef, Folders, Listing, Record};
pub use lock::{UploadLock, DEFAULT_MAX_FILES, DEFAULT_MAX_STAGED};
pub use tree::{Kind, Stat, Usage};
pub use upload::{Upload, Verified};

/// Uploads in progress, and the size each declared.
type Uploads = HashMap<(String, String), u64>;

pub use crate::protocol::FileInfo;

/// The data directory.
pub struct Storage {
    root: PathBuf,
    /// Uploads in progress: (user key, file name) → the size it declared,
    /// so that uploads in flight together stay within the quota.
    uploads: Arc<Mutex<Uploads>>,
    /// Unfinished uploads one user may hold.
    max_staged: usize,
    /// Files one user may hold (stored and unfinished together).
    max_files: u64,
    /// Folder generations and shared listing frames.
    listings: Arc<listing::Listings>,
    /// The memory listings being built or sent may hold together.
    listing_budget: Arc<budget::Budget>,
    /// Each user's files and bytes, kept up to date.
    usage: Arc<tree::UsageTable>,
}

impl Storage {
    /// Opens (creating if needed) the data directory.
    ///
    /// # Errors
    /// If the folders cannot be created.
    pub fn open(root: &Path) -> io::Result<Storage> {
        fs::create_dir_all(root.join("users"))?;
        fs::create_dir_all(root.join("attic"))?;
        Ok(Storage {
            root: root.to_path_buf(),
            uploads: Arc::default(),
            max_staged: DEFAULT_MAX_STAGED,
            max_files: DEFAULT_MAX_FILES,
            listings: Arc::default(),
            listing_budget: Arc::default(),
            usage: Arc::default(),
        })
    }

    /// Sets the memory listings may hold together (see `budget`).
    pub fn set_listing_memory(&mut self, bytes: usize) {
        self.listing_budget = Arc::new(budget::Budget::new(bytes));
    }

    /// The most memory listings have held together so far.
    pub fn listing_memory_high_water(&self) -> usize {
        self.listing_budget.high_water()
    }

    /// Where removed users' folders go.
    pub fn attic_dir(&self) -> PathBuf {
        self.root.join("attic")
    }

    /// Path of `users.xlsx`.
    pub fn users_file(&self) -> PathBuf {
        self.root.join("users.xlsx")
    }

    fn user_dir(&self, key: &str) -> PathBuf {
        self.root.join("users").join(key)
    }

    fn files_dir(&self, key: &str) -> PathBuf {
        self.user_dir(key).join("files")
    }

    /// Gives a new user an empty folder. Anything left under that name by a
    /// removed account is moved to the attic first, never inherited.
    ///
    /// # Errors
    /// If the folders cannot be moved or created.
    pub fn create_home(&self, key: &str) -> io::Result<()> {
        self.remove_home(key)?;
        self.changed(key);
        self.usage.forget(key);
        self.ensure_home(key)?;
        sync_dir(&self.root.join("users"))
    }

    /// Moves a user's folder, if any, to `attic/KEY.TIME.N`, out of every
    /// user's reach (`netdisk user del`).
    ///
    /// # Errors
    /// If the folder cannot be moved.
    pub fn remove_home(&self, key: &str) -> io::Result<()> {
        let dir = self.user_dir(key);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        let stamp = unix_secs(SystemTime::now());
        let mut n = 0;
        loop {
            let to = self.root.join("attic").join(format!("{key}.{stamp}.{n}"));
            if fs::symlink_metadata(&to).is_err() {
                fs::rename(&dir, &to)?;
                break;
            }
            n += 1;
        }
        sync_dir(&self.root.join("attic"))?;
        sync_dir(&self.root.join("users"))
    }

    /// Creates a user's folders if missing (a crash may have left a
    /// registered user without them).
    fn ensure_home(&self, key: &str) -> io::Result<()> {
        for sub in ["files", "staging", "digests"] {
            fs::create_dir_all(self.user_dir(key).join(sub))?;
        }
        Ok(())
    }

    /// Lists the files of a user's root folder, sorted by UTF-8 bytes.
    ///
    /// # Errors
    /// If the folder cannot be read.
    pub fn list(&self, key: &str) -> Result<Vec<FileInfo>, Error> {
        Ok(self
            .listing(key, "", false)?
            .iter()
            .map(|f| FileInfo {
                name: f.name.to_string(),
                size: f.size,
                mtime: f.mtime,
                md5: f.md5.map(str::to_string),
            })
            .collect())
    }

    /// Size of the regular file at `path`, if there is one.
    pub fn size_of(&self, key: &str, path: &str) -> Option<u64> {
        match self.kind(key, path) {
            Ok(Kind::File(stat)) => Some(stat.size),
            _ => None,
        }
    }

    /// Opens a regular file for reading, refusing symlinks, FIFOs, devices.
    ///
    /// # Errors
    /// `NOT_FOUND` if there is no regular file at `path`, `IS_A_FOLDER`
    /// for a folder, `NOT_A_FOLDER` if a parent is a file.
    pub fn open_file(&self, key: &str, path: &str) -> Result<(File, Metadata), Error> {
        let (file, meta) = open_regular(&self.locate(key, path)?)?;
        Ok((file, meta))
    }
}

/// Opens `path` for reading if it is a regular file: not a symlink (not
/// followed), FIFO, device or folder.
///
/// # Errors
/// `NOT_FOUND` if there is no regular file there.
fn open_regular(path: &Path) -> Result<(File, Metadata), Error> {
    let file = match open_nofollow(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Err(Error::NotFound),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(Error::IsAFolder);
    }
    if !meta.is_file() {
        return Err(Error::NotFound);
    }
    Ok((file, meta))
}

fn open_nofollow(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer. It has no
    // effect on regular files.
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Files at least this big are closed by [`release`]'s thread once their
/// last name is gone.
const RELEASED_FROM: u64 = 8 << 20;

/// Closes `file`, whose last name is gone: on a thread of its own if it
/// is big (`len` bytes), since the close frees its blocks (and trims them, on a disk
/// mounted with `discard`), which takes 0.2 s for a GiB on the
/// development machine, and no answer needs to wait for it. A few wait at
/// most; past that the caller closes it.
fn release(file: File, len: u64) {
    static RELEASER: OnceLock<Option<Sender<File>>> = OnceLock::new();
    if len < RELEASED_FROM {
        return;
    }
    let releaser = RELEASER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<File>(16);
        thread::Builder::new()
            .name("release".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = releaser {
        // Full or gone: closed here instead, as any other file.
        let _ = tx.try_send(file);
    }
}

fn is_not_found(e: &io::Error) -> bool {
    // ELOOP: the name is a symlink, which does not count as a file.
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP)
}

/// A file's modification time in Unix seconds, as listings show it.
pub fn mtime_secs(meta: &Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    u64::try_from(meta.mtime()).unwrap_or(0)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Replaces `path` with `bytes` in one rename, so that a reader sees the
/// old content or the new, never part of it. Used for the server's own
/// records (digests, staged uploads), which are not synced: a crash that
/// loses one costs a re-hash or a restarted upload, never a wrong answer.
/// A temporary file a crash leaves behind is named `.tmp*.tmp`.
fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Fsyncs a directory, making renames and creations in it durable.
///
/// # Errors
/// If the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod test_support {
    use md5::{Digest, Md5};

    use super::*;

    pub(super) fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        s.create_home("alice").unwrap();
        (dir, s)
    }

    /// Sends `data` as a client's body; if it is shorter than the upload
    /// expects, the client hangs up after it.
    pub(super) fn feed(up: &mut Upload, data: &[u8]) -> Result<(), Error> {
        let mut src = data;
        up.receive(|chunk| {
            let n = chunk.len().min(src.len());
            chunk[..n].copy_from_slice(&src[..n]);
            src = &src[n..];
            if n < chunk.len() {
                let eof = io::ErrorKind::UnexpectedEof.into();
                (n, Err(Error::Disconnected(eof)))
            } else {
                (n, Ok(()))
            }
        })
    }

    pub(super) fn upload(s: &Storage, name: &str, data: &[u8]) -> Result<String, Error> {
        let lock = s.lock_upload("alice", name, data.len() as u64, None)?;
        let mut up = s.begin_upload(&lock)?;
        feed(&mut up, data)?;
        let md5 = crate::protocol::md5_hex(Md5::digest(data));
        up.finish(&md5)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{storage, upload};
    use super::*;

    #[test]
    fn upload_list_rename_delete() {
        let (_d, s) = storage();
        upload(&s, "a.txt", b"hello").unwrap();
        let ls = s.list("alice").unwrap();
        assert_eq!(ls.len(), 1);
        assert_eq!(
            ls[0].md5.as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        s.rename("alice", "a.txt", "b.txt").unwrap();
        let ls = s.list("alice").unwrap();
        assert_eq!(ls[0].name, "b.txt");
        assert!(ls[0].md5.is_some(), "digest follows the rename");
        upload(&s, "c.txt", b"x").unwrap();
        assert!(matches!(
            s.rename("alice", "b.txt", "c.txt"),
            Err(Error::Exists)
        ));
        assert!(matches!(s.rename("alice", "zz", "q"), Err(Error::NotFound)));
        s.delete("alice", "b.txt", false).unwrap();
        assert!(matches!(
            s.delete("alice", "b.txt", false),
            Err(Error::NotFound)
        ));
        assert_eq!(s.usage("alice").unwrap(), (1, 1));
    }

    #[test]
    fn big_files_replaced_or_deleted_are_gone_at_once() {
        // Big enough that the replaced and the deleted file are closed on
        // the releasing thread.
        let (_d, s) = storage();
        let size = RELEASED_FROM as usize + 1;
        let (one, two) = (vec![1u8; size], vec![2u8; size]);
        upload(&s, "big", &one).unwrap();
        let md5 = upload(&s, "big", &two).unwrap();
        let ls = s.list("alice").unwrap();
        assert_eq!((ls.len(), ls[0].md5.as_deref()), (1, Some(md5.as_str())));
        assert_eq!(fs::read(s.files_dir("alice").join("big")).unwrap(), two);
        assert_eq!(s.usage("alice").unwrap(), (1, size as u64));
        s.delete("alice", "big", false).unwrap();
        assert!(s.list("alice").unwrap().is_empty());
        assert_eq!(s.usage("alice").unwrap(), (0, 0));
        assert!(matches!(
            s.delete("alice", "big", false),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn symlinks_and_fifos_are_invisible() {
        let (d, s) = storage();
        let files = s.files_dir("alice");
        let outside = d.path().join("secret");
        fs::write(&outside, b"top secret").unwrap();
        std::os::unix::fs::symlink(&outside, files.join("link")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(files.join("pipe"))
            .status();
        assert!(s.list("alice").unwrap().is_empty());
        assert!(matches!(s.open_file("alice", "link"), Err(Error::NotFound)));
        if fifo.is_ok_and(|st| st.success()) {
            assert!(matches!(s.open_file("alice", "pipe"), Err(Error::NotFound)));
        }
        assert!(matches!(
            s.delete("alice", "link", false),
            Err(Error::NotFound)
        ));
        assert!(outside.exists());
    }

    #[test]
    fn a_new_user_never_inherits_old_files() {
        let (d, s) = storage();
        upload(&s, "old.txt", b"x").unwrap();
        s.create_home("alice").unwrap();
        assert!(s.list("alice").unwrap().is_empty());
        assert_eq!(fs::read_dir(d.path().join("attic")).unwrap().count(), 1);
    }
}
