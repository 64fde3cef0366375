//! The folder tree (PROTOCOL.md, "Folders"): finding a path under a
//! user's `files/` without following a symlink at any depth, folders made
//! and removed, moves of files and folders, and the user's usage.
//!
//! Every path reaching this module has passed [`names::check_path`]: plain
//! components joined by single `/`s, none of them `.` or `..`. Each parent
//! is looked at with `lstat` before it is used, so a symlink (or anything
//! else that is not a real folder) planted anywhere in the tree is never
//! gone through: it is "no such folder" to a reader and "not a folder" to
//! a writer. The last component is opened with `O_NOFOLLOW` or acted on
//! with calls that never follow it (`rename`, `unlink`, `rmdir`, `mkdir`).
//!
//! A recursive delete moves the folder to `DATA/users/KEY/trash/` in one
//! rename (no reader sees half of it) and removes it there, off the
//! request path.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::thread;

use crossbeam_channel::Sender;

use super::{is_not_found, open_regular, release, sync_dir, unix_secs, Storage};
use crate::error::Error;
use crate::names;

/// What a path names.
pub enum Kind {
    File(Stat),
    Folder(Stat),
    /// Nothing the user can see: absent, a symlink, a FIFO, ...
    Nothing,
}

/// A file's or folder's size (0 for a folder) and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    /// Unix seconds.
    pub mtime: u64,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        Stat {
            size: if meta.is_file() { meta.len() } else { 0 },
            mtime: super::mtime_secs(meta),
        }
    }
}

/// Files and bytes of a user's whole tree (`whoami`, quota checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
}

/// Per user: the usage, once counted; kept up to date by every change.
#[derive(Default)]
pub(super) struct UsageTable(Mutex<HashMap<String, Usage>>);

impl UsageTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Usage>> {
        // Every update is one assignment: nothing half-done to see.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `files` and `bytes` (either may be negative) to a user's count,
    /// if it has been counted; an uncounted one is counted when first asked.
    pub(super) fn adjust(&self, key: &str, files: i64, bytes: i128) {
        if let Some(u) = self.lock().get_mut(key) {
            u.files = u.files.saturating_add_signed(files);
            u.bytes = u128::from(u.bytes)
                .checked_add_signed(bytes)
                .map_or(0, |b| u64::try_from(b).unwrap_or(u64::MAX));
        }
    }

    pub(super) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The parent folder of `rel` under `files`, each component checked to be
/// a real folder.
///
/// # Errors
/// `NOT_FOUND` if a parent is missing (or is a symlink, which is never
/// gone through), `NOT_A_FOLDER` if a parent is a file.
pub(super) fn parent_of(files: &Path, rel: &str) -> Result<PathBuf, Error> {
    walk_parents(files, rel, false)
}

/// Checks that the parents of `rel` that exist are real folders, as an
/// upload must before it begins (the missing ones are made when it
/// commits).
///
/// # Errors
/// `NOT_A_FOLDER` if a parent is a file or anything else but a folder.
pub(super) fn check_parents(files: &Path, rel: &str) -> Result<(), Error> {
    match walk_parents(files, rel, true) {
        Ok(_) | Err(Error::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Goes through the parents of `rel`; `writing`: a parent that is neither
/// a folder nor a file (a symlink) is `NOT_A_FOLDER` rather than
/// `NOT_FOUND`.
fn walk_parents(files: &Path, rel: &str, writing: bool) -> Result<PathBuf, Error> {
    let mut dir = files.to_path_buf();
    let mut parts = rel.split('/').peekable();
    let mut walked = String::new();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            break;
        }
        dir.push(part);
        push_component(&mut walked, part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.is_file() || writing => return Err(Error::NotAFolder(walked)),
            Ok(_) => return Err(Error::NotFound),
            Err(e) if is_not_found(&e) => return Err(Error::NotFound),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::NotAFolder(walked))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(dir)
}

/// Makes the missing parents of `rel` under `files` (like `mkdir -p`),
/// durably, and returns the folder `rel` goes into.
///
/// # Errors
/// `NOT_A_FOLDER` if a parent is a file (or a symlink), or an I/O error.
pub(super) fn make_parents(files: &Path, rel: &str) -> Result<PathBuf, Error> {
    let Some((parents, _)) = rel.rsplit_once('/') else {
        return Ok(files.to_path_buf());
    };
    make_folders(files, parents, false)
}

/// Makes the folder `rel` and its missing parents; `exclusive`: `EXISTS`
/// if `rel` itself is already there.
fn make_folders(files: &Path, rel: &str, exclusive: bool) -> Result<PathBuf, Error> {
    let mut dir = files.to_path_buf();
    let mut walked = String::new();
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let parent = dir.clone();
        dir.push(part);
        push_component(&mut walked, part);
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(&dir)?;
                if last && exclusive {
                    return Err(Error::Exists);
                }
                if !meta.is_dir() {
                    return Err(Error::NotAFolder(walked));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::NotAFolder(walked))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(dir)
}

fn push_component(walked: &mut String, part: &str) {
    if !walked.is_empty() {
        walked.push('/');
    }
    walked.push_str(part);
}

/// Calls `each` for every entry of the folder `dir` the protocol could
/// have made: a regular file or a real folder with a valid name. Symlinks,
/// FIFOs, devices and odd names are skipped.
///
/// # Errors
/// If the folder cannot be read, or `each`'s.
pub(super) fn entries(
    dir: &Path,
    mut each: impl FnMut(&str, &Metadata) -> Result<(), Error>,
) -> Result<(), Error> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if names::check_file_name(&name).is_err() {
            continue;
        }
        // `DirEntry::metadata` does not follow symlinks. An entry gone
        // since the folder was read is skipped.
        match entry.metadata() {
            Ok(meta) if meta.is_file() || meta.is_dir() => each(&name, &meta)?,
            _ => {}
        }
    }
    Ok(())
}

/// Calls `each` for every file and folder under `dir`, depth first, with
/// its path relative to `dir`, as far as the protocol's path rules reach
/// (deeper or longer paths, which it could not have made, are skipped).
///
/// # Errors
/// If a folder cannot be read (one removed meanwhile is skipped), or
/// `each`'s.
pub(super) fn walk_tree(
    dir: &Path,
    mut each: impl FnMut(&str, &Metadata) -> Result<(), Error>,
) -> Result<(), Error> {
    // (folder on disk, its path relative to `dir`, its depth)
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0usize)];
    while let Some((folder, rel, depth)) = stack.pop() {
        let listed = entries(&folder, |name, meta| {
            let mut path = rel.clone();
            push_component(&mut path, name);
            if path.len() > names::MAX_PATH_BYTES {
                return Ok(());
            }
            if meta.is_dir() && depth + 1 < names::MAX_PATH_COMPONENTS {
                stack.push((folder.join(name), path.clone(), depth + 1));
            }
            each(&path, meta)
        });
        match listed {
            Err(Error::Io(e)) if depth > 0 && is_not_found(&e) => {}
            other => other?,
        }
    }
    Ok(())
}

impl Storage {
    /// What `path` names in `key`'s tree.
    ///
    /// # Errors
    /// `NOT_A_FOLDER` if a parent is a file, or an I/O error. A missing
    /// parent is [`Kind::Nothing`].
    pub fn kind(&self, key: &str, path: &str) -> Result<Kind, Error> {
        let dir = match parent_of(&self.files_dir(key), path) {
            Ok(dir) => dir,
            Err(Error::NotFound) => return Ok(Kind::Nothing),
            Err(e) => return Err(e),
        };
        let leaf = path.rsplit('/').next().unwrap_or(path);
        Ok(match fs::symlink_metadata(dir.join(leaf)) {
            Ok(m) if m.is_file() => Kind::File(Stat::of(&m)),
            Ok(m) if m.is_dir() => Kind::Folder(Stat::of(&m)),
            Ok(_) => Kind::Nothing,
            Err(e) if is_not_found(&e) => Kind::Nothing,
            Err(e) => return Err(e.into()),
        })
    }

    /// Where the file or folder `path` is on disk (`netdisk migrate`).
    ///
    /// # Errors
    /// `NOT_FOUND` or `NOT_A_FOLDER` for a parent.
    pub fn file_path(&self, key: &str, path: &str) -> Result<PathBuf, Error> {
        self.locate(key, path)
    }

    /// Where `path` is on disk, its parents checked (see [`parent_of`]).
    ///
    /// # Errors
    /// `NOT_FOUND` or `NOT_A_FOLDER` for a parent.
    pub(super) fn locate(&self, key: &str, path: &str) -> Result<PathBuf, Error> {
        let dir = parent_of(&self.files_dir(key), path)?;
        Ok(dir.join(path.rsplit('/').next().unwrap_or(path)))
    }

    /// The folder `path` (`""`: the root) on disk.
    ///
    /// # Errors
    /// `NOT_FOUND` if there is no such folder, `NOT_A_FOLDER` if it (or a
    /// parent) is a file.
    pub(super) fn folder(&self, key: &str, path: &str) -> Result<PathBuf, Error> {
        self.ensure_home(key)?;
        if path.is_empty() {
            return Ok(self.files_dir(key));
        }
        match self.kind(key, path)? {
            Kind::Folder(_) => self.locate(key, path),
            Kind::File(_) => Err(Error::NotAFolder(path.to_string())),
            Kind::Nothing => Err(Error::NotFound),
        }
    }

    /// Makes the folder `path` with any missing parents (`mkdir`).
    ///
    /// # Errors
    /// `EXISTS` if `path` is already a folder or a file, `NOT_A_FOLDER` if a
    /// parent is a file.
    pub fn mkdir(&self, key: &str, path: &str) -> Result<(), Error> {
        self.ensure_home(key)?;
        let made = make_folders(&self.files_dir(key), path, true);
        // Folders made before a failure are there all the same.
        self.changed(key);
        made.map(drop)
    }

    /// Deletes a file, or a folder: an empty one always, a full one only
    /// when `recursive`, in one step for readers.
    ///
    /// # Errors
    /// `NOT_FOUND`, `NOT_A_FOLDER` (a parent is a file), `NOT_EMPTY`,
    /// `LOCKED` (a file under the folder is being uploaded).
    pub fn delete(&self, key: &str, path: &str, recursive: bool) -> Result<(), Error> {
        let target = self.locate(key, path)?;
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        match self.kind(key, path)? {
            Kind::Nothing => Err(Error::NotFound),
            Kind::File(_) => {
                let (file, meta) = open_regular(&target)?;
                match fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => return Err(Error::NotFound),
                    Err(e) => return Err(e.into()),
                }
                self.usage.adjust(key, -1, -i128::from(meta.len()));
                release(file, meta.len());
                self.changed(key);
                use std::os::unix::fs::MetadataExt;
                let _ = fs::remove_file(self.digest_path(key, meta.ino()));
                sync_dir(&parent)?;
                Ok(())
            }
            Kind::Folder(_) => {
                match fs::remove_dir(&target) {
                    Ok(()) => {
                        self.changed(key);
                        sync_dir(&parent)?;
                        return Ok(());
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                    Err(e) if is_not_found(&e) => return Err(Error::NotFound),
                    Err(e) => return Err(e.into()),
                }
                if !recursive {
                    return Err(Error::NotEmpty);
                }
                self.check_tree_idle(key, path)?;
                let trash = self.user_dir(key).join("trash");
                fs::create_dir_all(&trash)?;
                let to = unique_in(&trash);
                let tree = self.listings.tree(key);
                let moved = {
                    let _move = tree.write().unwrap_or_else(|e| e.into_inner());
                    fs::rename(&target, &to)
                };
                match moved {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => return Err(Error::NotFound),
                    Err(e) => return Err(e.into()),
                }
                self.changed(key);
                sync_dir(&parent)?;
                let mut gone = Usage::default();
                walk_tree(&to, |_, meta| {
                    if meta.is_file() {
                        gone.files += 1;
                        gone.bytes += meta.len();
                    }
                    Ok(())
                })?;
                self.usage.adjust(
                    key,
                    -i64::try_from(gone.files).unwrap_or(i64::MAX),
                    -i128::from(gone.bytes),
                );
                let prefix = format!("{path}/");
                for (name, _) in self.staged_records(key) {
                    if name.starts_with(&prefix) {
                        let _ = self.discard(key, &name);
                    }
                }
                remove_later(to);
                Ok(())
            }
        }
    }

    /// Moves a file or a folder to `to`, never replacing anything there.
    ///
    /// # Errors
    /// `NOT_FOUND` if `from` or the parent of `to` is missing, `EXISTS` if
    /// `to` exists, `NOT_A_FOLDER` if a parent is a file, `BAD_REQUEST` for
    /// a folder moved into itself, `LOCKED` if a file it moves is being
    /// uploaded.
    pub fn rename(&self, key: &str, from: &str, to: &str) -> Result<(), Error> {
        let source = self.locate(key, from)?;
        let folder = match self.kind(key, from)? {
            Kind::Nothing => return Err(Error::NotFound),
            Kind::File(_) => false,
            Kind::Folder(_) => true,
        };
        if folder && (to == from || to.starts_with(&format!("{from}/"))) {
            return Err(Error::bad_request(
                "a folder cannot be moved into itself or below itself",
            ));
        }
        let target = self.locate(key, to)?;
        // A file being uploaded, or any under a folder, stays put.
        let _claim = if folder {
            self.check_tree_idle(key, from)?;
            None
        } else {
            Some(self.claim(key, from, 0)?.0)
        };
        {
            let tree = self.listings.tree(key);
            let _move = tree.write().unwrap_or_else(|e| e.into_inner());
            rename_noreplace(&source, &target, folder)?;
        }
        self.changed(key);
        let (a, b) = (source.parent(), target.parent());
        if let Some(a) = a {
            sync_dir(a)?;
        }
        if let Some(b) = b.filter(|b| Some(*b) != a) {
            sync_dir(b)?;
        }
        Ok(())
    }

    /// Files and bytes of `key`'s whole tree: counted once, then kept up
    /// to date by every change the server makes.
    ///
    /// # Errors
    /// If the tree cannot be read.
    pub fn usage(&self, key: &str) -> Result<(u64, u64), Error> {
        if let Some(u) = self.usage.lock().get(key) {
            return Ok((u.files, u.bytes));
        }
        // A change while the tree is counted is not seen by the count (it
        // had nothing to adjust yet), so the count is taken again; a tree
        // that never stops changing gets the last count.
        let mut tries = 0;
        let counted = loop {
            let before = self.listings.generation(key);
            let counted = self.count(key)?;
            tries += 1;
            if tries == 3 || self.listings.generation(key) == before {
                break counted;
            }
        };
        let u = *self.usage.lock().entry(key.to_string()).or_insert(counted);
        Ok((u.files, u.bytes))
    }

    /// Counts `key`'s tree again, correcting the kept usage for changes
    /// made behind the server's back (run at start and by the hourly
    /// sweep).
    pub fn recount_usage(&self) {
        let Ok(users) = fs::read_dir(self.root.join("users")) else {
            return;
        };
        for user in users.flatten() {
            let Some(key) = user.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let before = self.listings.generation(&key);
            match self.count(&key) {
                // A count that a change overtook keeps the kept figure,
                // which that change adjusted.
                Ok(u) if self.listings.generation(&key) == before => {
                    self.usage.lock().insert(key, u);
                }
                Ok(_) => {}
                Err(_) => self.usage.forget(&key),
            }
        }
    }

    fn count(&self, key: &str) -> Result<Usage, Error> {
        self.ensure_home(key)?;
        let mut u = Usage::default();
        walk_tree(&self.files_dir(key), |_, meta| {
            if meta.is_file() {
                u.files += 1;
                u.bytes += meta.len();
            }
            Ok(())
        })?;
        Ok(u)
    }

    /// Removes what recursive deletes left in the trash (at start: a
    /// crash may have cut a removal short).
    pub fn empty_trash(&self) {
        let Ok(users) = fs::read_dir(self.root.join("users")) else {
            return;
        };
        for user in users.flatten() {
            if let Ok(trash) = fs::read_dir(user.path().join("trash")) {
                for entry in trash.flatten() {
                    remove_later(entry.path());
                }
            }
        }
    }

    /// `LOCKED` if a file under the folder `path` is being uploaded. One
    /// that begins after this check and commits after the folder moved or
    /// went makes its parents again, as any `put` of that path would.
    fn check_tree_idle(&self, key: &str, path: &str) -> Result<(), Error> {
        let prefix = format!("{path}/");
        let busy = self
            .lock_uploads()
            .keys()
            .any(|(k, n)| k == key && n.starts_with(&prefix));
        if busy {
            return Err(Error::Locked);
        }
        Ok(())
    }
}

/// A fresh name in `dir`.
fn unique_in(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let stamp = unix_secs(std::time::SystemTime::now());
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("{stamp}.{}.{n}", std::process::id()));
        if fs::symlink_metadata(&p).is_err() {
            return p;
        }
    }
}

/// `rename(2)` unless `to` exists (`RENAME_NOREPLACE`). Where the
/// filesystem does not offer that, a file is linked and unlinked (also
/// atomic), and a folder is checked first (a move racing a creation of the
/// same name may then replace an empty folder).
fn rename_noreplace(from: &Path, to: &Path, folder: bool) -> Result<(), Error> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let map = |e: io::Error| -> Error {
        match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Error::Exists,
            Some(libc::ENOTDIR) => Error::NotAFolder(String::new()),
            _ if is_not_found(&e) => Error::NotFound,
            _ => e.into(),
        }
    };
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
        Err(e) => return Err(map(e.into())),
    }
    if folder {
        if fs::symlink_metadata(to).is_ok() {
            return Err(Error::Exists);
        }
        return fs::rename(from, to).map_err(map);
    }
    fs::hard_link(from, to).map_err(map)?;
    fs::remove_file(from)?;
    Ok(())
}

/// Removes a folder tree on a thread of its own (std's `remove_dir_all`
/// never follows a symlink). One thread does all, in order.
fn remove_later(path: PathBuf) {
    static REMOVER: OnceLock<Option<Sender<PathBuf>>> = OnceLock::new();
    let remover = REMOVER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
        thread::Builder::new()
            .name("remove".into())
            .spawn(move || {
                for p in rx {
                    let _ = fs::remove_dir_all(&p);
                }
            })
            .ok()
            .map(|_| tx)
    });
    match remover {
        Some(tx) => {
            if let Err(e) = tx.send(path) {
                let _ = fs::remove_dir_all(e.0);
            }
        }
        None => {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{storage, upload};

    fn files(s: &Storage, path: &str, recursive: bool) -> (Vec<String>, Vec<String>) {
        let l = s.listing("alice", path, recursive).unwrap();
        (
            l.iter().map(|f| f.name.to_string()).collect(),
            l.folders().map(|f| f.name.to_string()).collect(),
        )
    }

    #[test]
    fn uploads_make_their_parents_only_when_they_commit() {
        let (_d, s) = storage();
        let lock = s.lock_upload("alice", "报告/2024/a.txt", 5, None).unwrap();
        let up = s.begin_upload(&lock).unwrap();
        assert!(matches!(s.kind("alice", "报告").unwrap(), Kind::Nothing));
        drop((up, lock));
        upload(&s, "报告/2024/a.txt", b"hello").unwrap();
        assert_eq!(files(&s, "", false), (vec![], vec!["报告".to_string()]));
        assert_eq!(
            files(&s, "", true),
            (
                vec!["报告/2024/a.txt".to_string()],
                vec!["报告".to_string(), "报告/2024".to_string()]
            )
        );
        assert_eq!(files(&s, "报告/2024", false).0, ["a.txt"]);
        assert_eq!(s.usage("alice").unwrap(), (1, 5));
        // Through a file, onto a folder.
        assert!(matches!(
            s.lock_upload("alice", "报告/2024/a.txt/b", 1, None),
            Err(Error::NotAFolder(p)) if p == "报告/2024/a.txt"
        ));
        assert!(matches!(
            s.lock_upload("alice", "报告/2024", 1, None),
            Err(Error::IsAFolder)
        ));
        assert!(matches!(
            s.listing("alice", "报告/2024/a.txt", false),
            Err(Error::NotAFolder(_))
        ));
        assert!(matches!(
            s.listing("alice", "nope", false),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            s.open_file("alice", "报告"),
            Err(Error::IsAFolder)
        ));
    }

    #[test]
    fn folders_move_whole_and_never_into_themselves() {
        let (_d, s) = storage();
        upload(&s, "a/b/c", b"123").unwrap();
        s.mkdir("alice", "a/empty").unwrap();
        s.mkdir("alice", "z").unwrap();
        assert!(matches!(
            s.rename("alice", "a", "a/b/x"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            s.rename("alice", "a", "a"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(s.rename("alice", "a", "z"), Err(Error::Exists)));
        assert!(matches!(
            s.rename("alice", "a", "q/a"),
            Err(Error::NotFound)
        ));
        s.rename("alice", "a", "z/a").unwrap();
        assert_eq!(files(&s, "z", true).0, ["a/b/c"]);
        assert_eq!(files(&s, "z", true).1, ["a", "a/b", "a/empty"]);
        let l = s.listing("alice", "z/a/b", false).unwrap();
        assert!(
            l.iter().next().unwrap().md5.is_some(),
            "the MD5 moved along"
        );
        // A file moves across folders too, and a name is never replaced.
        s.rename("alice", "z/a/b/c", "c").unwrap();
        upload(&s, "d", b"x").unwrap();
        assert!(matches!(s.rename("alice", "c", "d"), Err(Error::Exists)));
        assert!(matches!(s.rename("alice", "c", "z"), Err(Error::Exists)));
        assert_eq!(s.usage("alice").unwrap(), (2, 4));
    }

    #[test]
    fn deletes_of_folders_are_empty_only_or_recursive_and_whole() {
        let (_d, s) = storage();
        for i in 0..20 {
            upload(&s, &format!("t/{}/f{i}", i % 3), b"12345").unwrap();
        }
        upload(&s, "keep", b"1").unwrap();
        s.mkdir("alice", "e").unwrap();
        s.delete("alice", "e", false).unwrap();
        assert!(matches!(
            s.delete("alice", "t", false),
            Err(Error::NotEmpty)
        ));
        // An unfinished upload under the folder goes with it.
        let lock = s.lock_upload("alice", "t/0/partial", 10, None).unwrap();
        drop(s.begin_upload(&lock).unwrap());
        let busy = s.lock_upload("alice", "t/1/busy", 10, None).unwrap();
        assert!(matches!(s.delete("alice", "t", true), Err(Error::Locked)));
        drop((busy, lock));
        assert_eq!(s.usage("alice").unwrap(), (21, 101));
        s.delete("alice", "t", true).unwrap();
        assert_eq!(files(&s, "", true), (vec!["keep".to_string()], vec![]));
        assert_eq!(s.usage("alice").unwrap(), (1, 1));
        assert!(s.staged_records("alice").is_empty());
        assert!(matches!(s.delete("alice", "t", true), Err(Error::NotFound)));
        // A recount agrees with the kept figure.
        s.recount_usage();
        assert_eq!(s.usage("alice").unwrap(), (1, 1));
    }

    #[test]
    fn symlinks_at_any_depth_are_never_gone_through() {
        let (d, s) = storage();
        upload(&s, "a/b/f", b"1").unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"top secret").unwrap();
        let b = s.files_dir("alice").join("a/b");
        std::os::unix::fs::symlink(&outside, b.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), b.join("file-link")).unwrap();
        assert_eq!(files(&s, "", true).0, ["a/b/f"]);
        assert_eq!(files(&s, "", true).1, ["a", "a/b"]);
        for path in ["a/b/link/secret", "a/b/file-link"] {
            assert!(
                matches!(s.open_file("alice", path), Err(Error::NotFound)),
                "{path}"
            );
        }
        assert!(matches!(
            s.listing("alice", "a/b/link", false),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            s.delete("alice", "a/b/link/secret", false),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            s.delete("alice", "a/b/link", true),
            Err(Error::NotFound)
        ));
        assert!(s.lock_upload("alice", "a/b/link/new", 1, None).is_err());
        assert!(matches!(
            s.mkdir("alice", "a/b/link/x"),
            Err(Error::NotAFolder(_))
        ));
        assert!(matches!(
            s.rename("alice", "a/b/link", "moved"),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            s.rename("alice", "a/b/f", "a/b/link/f"),
            Err(Error::NotFound)
        ));
        s.delete("alice", "a", true).unwrap();
        // Once the trash is emptied, what the links pointed at is intact.
        let trash = s.user_dir("alice").join("trash");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while fs::read_dir(&trash).unwrap().next().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the trash was not emptied"
            );
            thread::yield_now();
        }
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"top secret");
        assert_eq!(s.usage("alice").unwrap(), (0, 0));
    }
}
