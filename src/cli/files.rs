//! The commands on the server's files and folders that move no bytes:
//! `ls`, `mkdir`, `rm`, `mv`, `discard`, and the shell's `cd` and `pwd`.
//! Every path is resolved against the session's current folder
//! (`paths::resolve`) before it is sent.

use std::io::{self, Write};

use anyhow::Context;

use super::exit::{self, Coded};
use super::output::{self, clean};
use super::paths::{self, shown};
use super::remote::Remote;
use super::{confirm, print, DiscardArgs, LsArgs, MkdirArgs, MvArgs, RmArgs};
use crate::client::{Client, ClientError};
use crate::error::ErrorCode;

/// `ls [PATH] [-r] [--json]`.
///
/// # Errors
/// A bad path, or the server's refusal (no such folder, a file).
pub fn ls(remote: &mut Remote, args: &LsArgs) -> anyhow::Result<()> {
    let path = paths::resolve(&remote.cwd, args.path.as_deref().unwrap_or("."))?;
    let listed = remote
        .call(|c| c.list(&path, args.recursive))
        .map_err(not_a_folder_hint);
    // The top folder always exists: what fails there is the connection.
    let answer = if path.is_empty() {
        listed?
    } else {
        listed.with_context(|| format!("cannot list {}", shown(&path)))?
    };
    let text = if args.json {
        output::ls_json(&answer.files, &answer.folders)
    } else {
        output::ls_table(&answer.files, &answer.folders)
    };
    print(&text)
}

/// `ls` of a file says so in words of its own.
fn not_a_folder_hint(e: anyhow::Error) -> anyhow::Error {
    if exit::refusal(&e) == Some(ErrorCode::NotAFolder) {
        let words = "that is a file (or inside one), not a folder";
        return Coded::new(exit::code(&e), words).into();
    }
    e
}

/// `mkdir PATH`.
///
/// # Errors
/// A bad path, or the server's refusal (it exists, a parent is a file).
pub fn mkdir(remote: &mut Remote, args: &MkdirArgs) -> anyhow::Result<()> {
    let path = paths::resolve_entry(&remote.cwd, &args.path, "making")?;
    remote
        .call(|c| c.mkdir(&path))
        .with_context(|| format!("cannot make the folder {}", shown(&path)))?;
    confirm(remote, &format!("made the folder {}", shown(&path)))
}

/// `rm [-r] PATH...`: each path in turn; one failure does not stop the
/// rest, and each is named.
///
/// # Errors
/// The failure of a single path, or how many of several failed.
pub fn rm(remote: &mut Remote, args: &RmArgs) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let total = args.paths.len();
    for typed in &args.paths {
        let done = paths::resolve_entry(&remote.cwd, typed, "removing").and_then(|path| {
            remote
                .call(|c| c.remove(&path, args.recursive))
                .with_context(|| format!("cannot remove {}", shown(&path)))?;
            Ok(path)
        });
        match done {
            Ok(path) => confirm(remote, &format!("removed {}", shown(&path)))?,
            Err(e) if total == 1 => return Err(e),
            Err(e) => {
                writeln!(io::stderr().lock(), "error: {e:#}")?;
                failed.push(exit::code(&e));
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let message = format!("{} of {total} removals failed", failed.len());
    Err(Coded::new(exit::common(failed), message).into())
}

/// `mv FROM TO`: a file or folder to another path, in any folder. If TO
/// is a folder that exists (or ends in `/`), FROM goes into it, keeping
/// its name, as `mv` does.
///
/// # Errors
/// A bad path, or the server's refusal (nothing at FROM, TO taken, a
/// folder into itself).
pub fn mv(remote: &mut Remote, args: &MvArgs) -> anyhow::Result<()> {
    let from = paths::resolve_entry(&remote.cwd, &args.from, "moving")?;
    let to = paths::resolve(&remote.cwd, &args.to)?;
    let verb = |to: &str| {
        if paths::parent(&from) == paths::parent(to) {
            "rename"
        } else {
            "move"
        }
    };
    let context = |to: &str| format!("cannot {} {} to {}", verb(to), shown(&from), shown(to));
    let into = |folder: &str| paths::join(folder, paths::base(&from));
    let target = if to.is_empty() || args.to.ends_with('/') {
        into(&to)
    } else {
        to.clone()
    };
    let moved = remote
        .call(|c| c.rename(&from, &target))
        .map_err(into_itself_hint);
    let target = match moved {
        Ok(()) => target,
        // An existing folder: into it.
        Err(e) if exit::refusal(&e) == Some(ErrorCode::Exists) && target == to => {
            if !is_folder(remote, &to) {
                return Err(e.context(context(&to)));
            }
            let inside = into(&to);
            remote
                .call(|c| c.rename(&from, &inside))
                .map_err(into_itself_hint)
                .with_context(|| context(&inside))?;
            inside
        }
        Err(e) => return Err(e.context(context(&target))),
    };
    confirm(
        remote,
        &format!("{}d {} to {}", verb(&target), shown(&from), shown(&target)),
    )
}

/// `rename`'s one `BAD_REQUEST` a person can cause (PROTOCOL.md, "Folders").
fn into_itself_hint(e: anyhow::Error) -> anyhow::Error {
    if exit::refusal(&e) == Some(ErrorCode::BadRequest) {
        let words = "a folder cannot move into itself or below itself";
        return Coded::new(exit::Exit::Failure, words).into();
    }
    e
}

/// Whether `path` is a folder on the server (a failed look says no).
fn is_folder(remote: &mut Remote, path: &str) -> bool {
    folder_check(remote, path).is_ok()
}

/// Checks that `path` is a folder: one `ls` of it.
fn folder_check(remote: &mut Remote, path: &str) -> anyhow::Result<()> {
    let probe = |c: &mut Client| -> Result<(), ClientError> {
        // Sub-folders only matter to completion; a listing is the one
        // question the protocol has for "is this a folder".
        c.list(path, false).map(drop)
    };
    remote.call(probe)
}

/// `discard PATH`.
///
/// # Errors
/// A bad path, or the server's refusal.
pub fn discard(remote: &mut Remote, args: &DiscardArgs) -> anyhow::Result<()> {
    let path = paths::resolve_entry(&remote.cwd, &args.name, "discarding")?;
    let context = || format!("cannot discard the upload of {}", shown(&path));
    remote.call(|c| c.discard(&path)).with_context(context)?;
    confirm(remote, &format!("discarded the upload of {}", shown(&path)))
}

/// The shell's `cd [PATH]`: the folder later paths are relative to; the
/// top folder without PATH.
///
/// # Errors
/// A bad path, `..` at the top, or no folder there.
pub fn cd(remote: &mut Remote, typed: Option<&str>) -> anyhow::Result<()> {
    let typed = typed.unwrap_or("/");
    if remote.cwd.is_empty() && matches!(typed, ".." | "../") {
        return Err(anyhow::anyhow!("already in the top folder of the disk (/)"));
    }
    let path = paths::resolve(&remote.cwd, typed)?;
    if !path.is_empty() {
        folder_check(remote, &path)
            .map_err(|e| match exit::refusal(&e) {
                Some(ErrorCode::NotFound) => Coded::new(
                    exit::Exit::NotFound,
                    format!("there is no folder {}", paths::absolute(&path)),
                )
                .into(),
                Some(ErrorCode::NotAFolder) => Coded::new(
                    exit::Exit::Failure,
                    format!("{} is a file, not a folder", paths::absolute(&path)),
                )
                .into(),
                _ => e,
            })
            .with_context(|| format!("cannot enter {}", clean(typed)))?;
    }
    remote.cwd = path;
    Ok(())
}

/// The shell's `pwd`.
pub fn pwd(remote: &Remote) -> String {
    format!("{}\n", paths::absolute(&remote.cwd))
}
