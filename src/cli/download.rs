//! One download over one connection (PROTOCOL.md, "Download"), checked
//! against the server's MD5 of the whole file.
//!
//! A download that does not continue the target goes into a hidden part
//! file beside it ([`part_path`]) and is renamed over the target only once
//! its MD5 matches, so the final name never holds half a file. The part
//! file's name depends only on the target's, so a download that was
//! interrupted (Ctrl-C kills the client; nothing is cleaned up) is found
//! again by the next `get` of that target and continued from its length,
//! with no flag and no question: the part file is ours. An exclusive lock
//! on it keeps two clients from writing it at once.
//!
//! `--resume` instead appends to the existing target. Both resumes hash the
//! kept prefix, ask the server for the rest (`continue_file`) and check
//! the whole-file MD5; if it differs (the local prefix or the server's file
//! changed), or the server's file is shorter than the prefix, the file is
//! downloaded once more from the start, and a second mismatch is an error
//! (issue 3).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use md5::{Digest, Md5};

use super::cancel::{self, Cancelled};
use super::exit::{Coded, Exit};
use super::output::{clean, clean_path, human_size, io_words, Plain};
use super::progress::{Bar, Progress};
use crate::client::{Client, ClientError};
use crate::commands::get;
use crate::error::ErrorCode;
use crate::hashcopy::{hash_prefix, hashed_copy};

/// How the local target is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Into the part file (continuing what it holds), renamed over the
    /// target after the check.
    ViaPart,
    /// Appended to the existing target, from its length.
    AppendToTarget,
}

/// One file to download.
#[derive(Debug, Clone)]
pub struct GetJob {
    /// The name on the server.
    pub name: String,
    /// Where it goes.
    pub target: PathBuf,
    pub mode: Mode,
}

/// What a download did.
#[derive(Debug)]
pub struct Downloaded {
    pub size: u64,
    /// Bytes kept from the local file, if a resume succeeded.
    pub resumed_at: Option<u64>,
}

/// Downloads `job` over `client`.
///
/// # Errors
/// The server's refusal, a lost connection (an interrupted download into
/// the part file is kept, to be continued), a local write error, another
/// client downloading the same target, an MD5 that still differs after
/// downloading from the start, or Ctrl-C in the shell ([`Cancelled`],
/// saying what was kept).
pub fn download(
    client: &mut Client,
    job: &GetJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Downloaded> {
    attempt(client, job, bar, progress).map_err(|e| {
        if cancel::is_cancelled(&e) {
            Cancelled { kept: kept(job) }.into()
        } else {
            e
        }
    })
}

/// What a cancelled download left to continue, in words.
fn kept(job: &GetJob) -> String {
    let name = clean(&job.name);
    let size = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
    let part = part_path(&job.target);
    let typed = cancel::typed();
    if size(&part) > 0 {
        let again = typed.unwrap_or_else(|| format!("get {name}"));
        return format!(
            "kept {} of {name} in {}; `{again}` continues it",
            human_size(size(&part)),
            clean_path(&part)
        );
    }
    if job.mode == Mode::AppendToTarget {
        let again = match typed {
            Some(t) if t.split_whitespace().any(|w| w == "--resume") => t,
            Some(t) => format!("{t} --resume"),
            None => format!("get {name} --resume"),
        };
        return format!(
            "{} holds {}; `{again}` continues it",
            clean_path(&job.target),
            human_size(size(&job.target))
        );
    }
    "nothing was kept".to_string()
}

/// The body of [`download`].
fn attempt(
    client: &mut Client,
    job: &GetJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Downloaded> {
    if job.mode == Mode::AppendToTarget {
        if let Some(done) = resume_target(client, job, bar, progress)? {
            bar.finish();
            return Ok(done);
        }
    }
    let done = via_part(client, job, bar, progress)?;
    bar.finish();
    Ok(done)
}

/// The hidden file beside `target` that a download into `target` is
/// written to before it is checked and renamed. Named by the MD5 of the
/// target's file name, so that it is found again after an interruption and
/// stays 46 bytes long however long the name is (a name may have 255).
pub fn part_path(target: &Path) -> PathBuf {
    let name = target.file_name().map_or(&[][..], |n| n.as_bytes());
    let digest = crate::protocol::md5_hex(Md5::digest(name));
    parent_dir(target).join(format!(".netdisk-{digest}.part"))
}

/// Which local file a resume continues; only changes what the user reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// The target itself (`--resume`).
    Target,
    /// The part file of an interrupted download.
    Part,
}

impl Kept {
    fn what(self) -> &'static str {
        match self {
            Kept::Target => "the local file",
            Kept::Part => "the interrupted download",
        }
    }

    fn resuming(self) -> &'static str {
        match self {
            Kept::Target => "resuming the download",
            Kept::Part => "resuming the interrupted download",
        }
    }
}

/// Continues the target from its length. `None` means "start over"; the
/// target is then as it was.
fn resume_target(
    client: &mut Client,
    job: &GetJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Option<Downloaded>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&job.target)
        .with_context(|| format!("cannot open {}", clean_path(&job.target)))?;
    let have = file.metadata()?.len();
    let kept = Kept::Target;
    match continue_file(client, &job.name, &mut file, have, kept, bar, progress)? {
        Some(size) => {
            file.sync_all()?;
            Ok(Some(Downloaded {
                size,
                resumed_at: Some(have),
            }))
        }
        None => {
            // Put the local file back as it was before downloading it whole.
            file.set_len(have)?;
            Ok(None)
        }
    }
}

/// Appends the server's bytes `[have, size)` to `file`, whose first
/// `have` bytes are kept, and checks the MD5 of the whole. Returns the
/// size, or `None` (after telling the user why) if the file must be
/// downloaded from the start: the server's file is shorter than `have`,
/// or the MD5 differs. The caller then cuts `file` back as it needs.
fn continue_file(
    client: &mut Client,
    name: &str,
    file: &mut File,
    have: u64,
    kept: Kept,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Option<u64>> {
    let shown = clean(name).into_owned();
    let mut hasher = Md5::new();
    hash_prefix(file, have, &mut hasher)?;
    let answer = match begin(client, name, have) {
        Err(e) if have > 0 && e.code() == Some(ErrorCode::BadRequest) => {
            progress.note(&format!(
                "{shown}: {} is longer than the server's; downloading it from the start",
                kept.what()
            ));
            return Ok(None);
        }
        other => other.map_err(Plain)?,
    };
    if have == answer.size {
        progress.note(&format!(
            "{shown}: {} is already whole ({}); checking its MD5",
            kept.what(),
            human_size(have)
        ));
    } else {
        progress.note(&format!(
            "{shown}: {} at {} of {}",
            kept.resuming(),
            human_size(have),
            human_size(answer.size)
        ));
    }
    // The whole file, the kept part filled; the rate counts what moves.
    bar.resume(answer.size, have);
    receive(client, answer.size - have, file, &mut hasher, bar)?;
    if crate::protocol::md5_hex(hasher.finalize()) == answer.md5 {
        return Ok(Some(answer.size));
    }
    progress.note(&format!(
        "{shown}: MD5 mismatch after resuming (the local part or the server's file \
         changed); downloading it again from the start"
    ));
    Ok(None)
}

/// Downloads into the part file, continuing what it holds, and renames it
/// over the target once the MD5 matches.
fn via_part(
    client: &mut Client,
    job: &GetJob,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Downloaded> {
    let path = part_path(&job.target);
    let mut part = lock_part(&path, &job.target)?;
    let result = fill_part(client, job, &path, &mut part, bar, progress);
    if result.is_err() {
        // Bytes that arrived are kept for the next `get`; an empty part
        // file (the server refused, say) is only clutter. We still hold
        // the lock, so nobody else is writing it.
        if part.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&path);
        }
    }
    result
}

/// The body of [`via_part`]: continue the part file if it holds bytes,
/// else (or if that fails) download from 0, check, and rename.
fn fill_part(
    client: &mut Client,
    job: &GetJob,
    path: &Path,
    part: &mut File,
    bar: &mut Bar,
    progress: &Progress,
) -> anyhow::Result<Downloaded> {
    let have = part.metadata()?.len();
    if have > 0 {
        let resumed = continue_file(client, &job.name, part, have, Kept::Part, bar, progress)?;
        if let Some(size) = resumed {
            save(part, path, &job.target)?;
            return Ok(Downloaded {
                size,
                resumed_at: Some(have),
            });
        }
        part.set_len(0)?;
        part.seek(SeekFrom::Start(0))?;
    }
    let answer = begin(client, &job.name, 0).map_err(Plain)?;
    bar.set_total(answer.size);
    bar.set(0);
    let mut hasher = Md5::new();
    receive(client, answer.size, part, &mut hasher, bar)?;
    let md5 = crate::protocol::md5_hex(hasher.finalize());
    if md5 != answer.md5 {
        // Nothing in it is worth continuing.
        let _ = fs::remove_file(path);
        return Err(Coded::new(
            Exit::Checksum,
            format!(
                "MD5 mismatch: the server says {} but {md5} arrived; nothing was saved",
                answer.md5
            ),
        )
        .into());
    }
    save(part, path, &job.target)?;
    Ok(Downloaded {
        size: answer.size,
        resumed_at: None,
    })
}

/// Opens the part file at `path` (creating it, private, if need be) and
/// locks it for this client alone.
///
/// # Errors
/// If it cannot be created, is not a regular file (a symlink is not
/// followed), or another client holds its lock.
pub(super) fn lock_part(path: &Path, target: &Path) -> anyhow::Result<File> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // What it holds is the interrupted download to continue.
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("cannot write {}", clean_path(path)))?;
        if !file.metadata()?.is_file() {
            bail!("{} is not a regular file", clean_path(path));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "another netdisk is downloading {} (into {}); try again when it has finished",
                clean_path(target),
                clean_path(path)
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", clean_path(path)))
            }
        }
        // The client that held the lock before us may have renamed or
        // removed the file we opened before we locked it: only the file
        // still at `path` is the part file.
        if is_at(&file, path)? {
            return Ok(file);
        }
    }
}

/// Whether `path` names the open `file`.
fn is_at(file: &File, path: &Path) -> io::Result<bool> {
    let ours = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.dev() == ours.dev() && m.ino() == ours.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the checked part file durable and an ordinary file, and renames
/// it over the target.
pub(super) fn save(part: &File, path: &Path, target: &Path) -> anyhow::Result<()> {
    // The part file is private (0600) while it grows; a download is an
    // ordinary file.
    part.set_permissions(fs::Permissions::from_mode(0o644))?;
    part.sync_all()?;
    fs::rename(path, target)
        .map_err(|e| anyhow!("cannot save {}: {}", clean_path(target), io_words(&e)))
}

/// `get` steps 1–2, refusing a reply about another file.
fn begin(client: &mut Client, name: &str, offset: u64) -> Result<get::Answer, ClientError> {
    let answer = client.get_begin(name, offset)?;
    if answer.name != name {
        return Err(ClientError::Protocol(format!(
            "asked for {:?}, got {:?}",
            clean(name),
            clean(&answer.name)
        )));
    }
    Ok(answer)
}

/// Reads `len` body bytes into `out`, hashing them on a second thread
/// and flushing `out` in the background as it grows.
pub(super) fn receive(
    client: &mut Client,
    len: u64,
    out: &mut File,
    hasher: &mut Md5,
    bar: &mut Bar,
) -> anyhow::Result<()> {
    let out: &File = out;
    hashed_copy(hasher, len, Some(out), |chunk| {
        cancel::check()?;
        client.read_body_exact(chunk).map_err(Plain)?;
        let mut w = out;
        w.write_all(chunk).context("cannot write the download")?;
        bar.add(chunk.len() as u64);
        Ok::<_, anyhow::Error>(())
    })
}

/// The local path for server file `name` inside `dir`. The name is checked
/// against PROTOCOL.md's rules first, so no name, whoever sent it, can
/// point outside `dir` (`..`, `/`, `\`, a leading `.`, control characters).
///
/// # Errors
/// If the name breaks the rules.
pub fn local_target(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    crate::names::check_file_name(name)
        .map_err(|e| anyhow!("refusing the file name {:?}: {e}", clean(name)))?;
    Ok(dir.join(name))
}

/// The folder `p` is in (`.` for a bare name).
pub(super) fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_folder_are_refused() {
        let dir = Path::new("/tmp/downloads");
        for name in [
            "../x",
            "..",
            ".",
            "/etc/passwd",
            "a/../../b",
            "sub/file",
            "..\\x",
            ".bashrc",
            "",
            "nul\0",
            "esc\x1b]0;t\x07",
        ] {
            assert!(local_target(dir, name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn part_files_are_hidden_short_and_beside_the_target() {
        let long = "é".repeat(127) + "x";
        assert_eq!(long.len(), 255);
        let dir = Path::new("/tmp/downloads");
        for name in ["a.bin", "报告.pdf", long.as_str()] {
            let part = part_path(&dir.join(name));
            assert_eq!(part.parent(), Some(dir));
            let file = part.file_name().unwrap().to_str().unwrap();
            assert!(file.starts_with(".netdisk-") && file.ends_with(".part"));
            assert_eq!(file.len(), 46, "{file}");
            assert_eq!(part, part_path(&dir.join(name)), "the same every time");
        }
        assert_ne!(part_path(&dir.join("a")), part_path(&dir.join("b")));
        assert_eq!(
            part_path(Path::new("a.bin")),
            Path::new(".").join(part_path(Path::new("x/a.bin")).file_name().unwrap())
        );
    }

    #[test]
    fn ordinary_names_stay_inside() {
        let dir = Path::new("/tmp/downloads");
        for name in ["a.bin", "报告.pdf", "😀", "-rf", "my file"] {
            let p = local_target(dir, name).unwrap();
            assert_eq!(p.parent(), Some(dir));
            assert_eq!(p.file_name().and_then(|n| n.to_str()), Some(name));
        }
    }
}
