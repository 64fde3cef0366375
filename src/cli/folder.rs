//! Whole folders: `put -r` and `get -r` (issue 17).
//!
//! `put -r DIR` walks DIR without following symbolic links, makes the
//! folders that hold nothing (`mkdir`; the others come with their files),
//! and uploads every file through the same runner as `put` (small files
//! pipelined, big ones resumable over `-j` connections), with one overall
//! progress line. Names the server cannot hold (starting with `.`, say)
//! are skipped and named. Run again, it skips each file the server already
//! holds with the same size and MD5, so a `put -r` cut short is finished
//! by the same command.
//!
//! `get -r PATH` lists PATH's subtree once (`ls` recursive) and makes it
//! again under `-o DIR`. Every name in the listing is untrusted: each is
//! checked again here with `names::check_path` before anything is made,
//! and one that fails refuses the whole listing, so nothing is written
//! outside DIR. Local folders are made one component at a time and each is
//! looked at without following links: a symbolic link planted inside the
//! tree is refused, never followed. A file already there with the server's
//! MD5 is skipped; a download cut short continues from its part file.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use md5::{Digest, Md5};

use super::download::{GetJob, Mode};
use super::exit::{self, Coded, Exit};
use super::output::{clean, clean_path, human_size, io_words};
use super::paths::{self, shown};
use super::remote::Remote;
use super::runner::Bars;
use super::transfer::{run_gets, run_puts};
use super::upload::PutJob;
use super::{GetArgs, PutArgs};
use crate::commands::ls;
use crate::error::ErrorCode;
use crate::hashcopy::hash_prefix;
use crate::names::{check_file_name, check_path};
use crate::protocol::FileInfo;

/// What a whole-folder transfer found to do before it starts.
struct Plan<J> {
    jobs: Vec<J>,
    /// Folders to make on the server (`put`).
    folders: Vec<String>,
    /// Files already there with the same MD5.
    same: usize,
    /// Entries left out on purpose, with why (printed, not failures).
    skipped: Vec<String>,
    /// What failed before any transfer: (what, why).
    failed: Vec<(String, anyhow::Error)>,
}

impl<J> Plan<J> {
    fn new() -> Plan<J> {
        Plan {
            jobs: Vec::new(),
            folders: Vec::new(),
            same: 0,
            skipped: Vec::new(),
            failed: Vec::new(),
        }
    }
}

/// `put -r FILE_OR_DIR... [--as PATH]`.
///
/// # Errors
/// Bad arguments before anything is sent; otherwise the failures, each
/// named on stderr.
pub fn put_tree(remote: &mut Remote, args: &PutArgs) -> anyhow::Result<()> {
    let (folder, exact) = match args.as_name.as_deref() {
        Some(p) if args.files.len() == 1 && !p.ends_with('/') => {
            (None, Some(paths::resolve(&remote.cwd, p)?))
        }
        Some(p) => (Some(paths::resolve(&remote.cwd, p)?), None),
        None => (Some(remote.cwd.clone()), None),
    };
    let mut plan: Plan<PutJob> = Plan::new();
    let mut roots = Vec::new();
    for arg in &args.files {
        let shown_arg = clean_path(arg);
        let meta = fs::metadata(arg).map_err(|e| anyhow!("{shown_arg}: {}", io_words(&e)))?;
        let target = match (&exact, &folder) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => paths::join(f, &own_name(arg)?),
            (None, None) => unreachable!("a folder or an exact path"),
        };
        if meta.is_dir() {
            walk(arg, &target, &mut plan);
            roots.push(target);
        } else if meta.is_file() {
            if target.is_empty() {
                bail!("{shown_arg} is a file: it needs a name on the server, not /");
            }
            plan.jobs.push(PutJob {
                path: arg.clone(),
                name: target,
            });
        } else {
            bail!("{shown_arg}: not a regular file or folder");
        }
    }
    let mut seen = HashSet::new();
    if let Some(j) = plan.jobs.iter().find(|j| !seen.insert(j.name.as_str())) {
        bail!("two files would be uploaded as {}", shown(&j.name));
    }
    let there = remote_trees(remote, &roots)?;
    skip_uploaded(&mut plan, &there);
    let made = make_folders(remote, &mut plan, &there);
    let results = run_puts(remote, &plan.jobs, Bars::OverallOnly, args.jobs)?;
    let moved = |up: &super::upload::Uploaded| up.size;
    finish(remote.quiet, plan, results, moved, "upload", made)
}

/// The name of a local argument (`.` has its folder's).
fn own_name(arg: &Path) -> anyhow::Result<String> {
    let full;
    let name = match arg.file_name() {
        Some(n) => n,
        None => {
            full = fs::canonicalize(arg)
                .map_err(|e| anyhow!("{}: {}", clean_path(arg), io_words(&e)))?;
            full.file_name().unwrap_or_default()
        }
    };
    let name = name
        .to_str()
        .with_context(|| format!("{}: the name is not UTF-8; use --as PATH", clean_path(arg)))?;
    check_file_name(name).map_err(|e| {
        anyhow!(
            "cannot upload {} as {:?}: {e}; use --as PATH",
            clean_path(arg),
            clean(name)
        )
    })?;
    Ok(name.to_string())
}

/// Adds everything under the local folder `dir` to `plan`, as `remote`
/// and below. Links are not followed; an unreadable folder is a failure.
fn walk(dir: &Path, remote: &str, plan: &mut Plan<PutJob>) {
    let mut stack = vec![(dir.to_path_buf(), remote.to_string())];
    while let Some((dir, remote)) = stack.pop() {
        let entries = match read_sorted(&dir) {
            Ok(e) => e,
            Err(e) => {
                plan.failed.push((clean_path(&dir), e));
                continue;
            }
        };
        let mut holds = false;
        for (name, kind) in entries {
            let local = dir.join(&name);
            let Some(name) = name.to_str() else {
                plan.skipped
                    .push(format!("{}: the name is not UTF-8", clean_path(&local)));
                continue;
            };
            let path = paths::join(&remote, name);
            if let Err(e) = check_file_name(name).and_then(|()| check_path(&path)) {
                plan.skipped.push(format!("{}: {e}", clean_path(&local)));
                continue;
            }
            if kind.is_dir() {
                stack.push((local, path));
            } else if kind.is_file() {
                plan.jobs.push(PutJob {
                    path: local,
                    name: path,
                });
            } else if kind.is_symlink() {
                let why = "a symbolic link (not followed)";
                plan.skipped.push(format!("{}: {why}", clean_path(&local)));
                continue;
            } else {
                let why = "not a regular file";
                plan.skipped.push(format!("{}: {why}", clean_path(&local)));
                continue;
            }
            holds = true;
        }
        if !holds && !remote.is_empty() {
            plan.folders.push(remote);
        }
    }
}

/// A folder's entries and their types (links not followed), by name.
fn read_sorted(dir: &Path) -> anyhow::Result<Vec<(std::ffi::OsString, fs::FileType)>> {
    let words = |e: io::Error| anyhow!("cannot read the folder: {}", io_words(&e));
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(words)? {
        let entry = entry.map_err(words)?;
        entries.push((entry.file_name(), entry.file_type().map_err(words)?));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// What the server already holds under each root: files by path, and
/// folders. A root that is not there yet holds nothing.
struct There {
    files: HashMap<String, FileInfo>,
    folders: HashSet<String>,
}

fn remote_trees(remote: &mut Remote, roots: &[String]) -> anyhow::Result<There> {
    let mut there = There {
        files: HashMap::new(),
        folders: HashSet::new(),
    };
    for root in roots {
        let answer = match remote.call(|c| c.list(root, true)) {
            Ok(a) => a,
            Err(e) if exit::refusal(&e) == Some(ErrorCode::NotFound) => continue,
            Err(e) => return Err(e.context(format!("cannot list {}", shown(root)))),
        };
        there.folders.insert(root.clone());
        for f in answer.folders {
            there.folders.insert(paths::join(root, &f.name));
        }
        for f in answer.files {
            there.files.insert(paths::join(root, &f.name), f);
        }
    }
    Ok(there)
}

/// Leaves out the uploads the server already holds: same size, same MD5.
fn skip_uploaded(plan: &mut Plan<PutJob>, there: &There) {
    let before = plan.jobs.len();
    plan.jobs.retain(|j| {
        let Some(info) = there.files.get(&j.name) else {
            return true;
        };
        let same = fs::metadata(&j.path).is_ok_and(|m| m.len() == info.size)
            && info
                .md5
                .as_deref()
                .is_some_and(|md5| local_md5(&j.path, info.size).as_deref() == Some(md5));
        !same
    });
    plan.same += before - plan.jobs.len();
}

/// The MD5 of the first `size` bytes of a local file, if it can be read.
fn local_md5(path: &Path, size: u64) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut hasher = Md5::new();
    hash_prefix(&file, size, &mut hasher).ok()?;
    Some(crate::protocol::md5_hex(hasher.finalize()))
}

/// Makes the empty folders the server does not have yet; returns how many.
fn make_folders(remote: &mut Remote, plan: &mut Plan<PutJob>, there: &There) -> usize {
    let mut made = 0;
    for folder in std::mem::take(&mut plan.folders) {
        if there.folders.contains(&folder) {
            continue;
        }
        match remote.call(|c| c.mkdir(&folder)) {
            Ok(()) => made += 1,
            // Made meanwhile, or a file in the way: its files say which.
            Err(e) if exit::refusal(&e) == Some(ErrorCode::Exists) => {}
            Err(e) => plan
                .failed
                .push((shown(&folder), e.context("cannot make the folder"))),
        }
    }
    made
}

/// `get -r PATH... [-o DIR] [--resume | --overwrite]`.
///
/// # Errors
/// A bad path or an unsafe listing before anything is written; otherwise
/// the failures, each named on stderr.
pub fn get_tree(remote: &mut Remote, args: &GetArgs) -> anyhow::Result<()> {
    let out = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut listed = Vec::new();
    for typed in &args.names {
        let path = paths::resolve(&remote.cwd, typed)?;
        let answer = remote
            .call(|c| c.list(&path, true))
            .with_context(|| format!("cannot download {}", shown(&path)))?;
        check_listing(&answer)?;
        let local = if path.is_empty() {
            out.clone()
        } else {
            out.join(paths::base(&path))
        };
        if listed
            .iter()
            .any(|(_, l, _): &(String, PathBuf, ls::Answer)| *l == local)
        {
            bail!("two folders would be saved as {}", clean_path(&local));
        }
        listed.push((path, local, answer));
    }
    fs::create_dir_all(&out)
        .map_err(|e| anyhow!("cannot create {}: {}", clean_path(&out), io_words(&e)))?;
    let mut plan: Plan<GetJob> = Plan::new();
    let mut sizes = HashMap::new();
    let mut made = 0;
    for (path, local, answer) in listed {
        let mut tree = LocalTree::new(local);
        if let Err(e) = tree.dir("") {
            plan.failed.push((shown(&path), e));
            continue;
        }
        for f in &answer.folders {
            if let Err(e) = tree.dir(&f.name) {
                plan.failed.push((shown(&paths::join(&path, &f.name)), e));
            }
        }
        for f in answer.files {
            let name = paths::join(&path, &f.name);
            let target = tree.root.join(&f.name);
            let decided = tree
                .dir(paths::parent(&f.name))
                .and_then(|()| decide(&target, &f, args.resume, args.overwrite));
            match decided {
                Ok(Some(mode)) => {
                    sizes.insert(name.clone(), f.size);
                    plan.jobs.push(GetJob { name, target, mode });
                }
                Ok(None) => plan.same += 1,
                Err(e) => plan.failed.push((shown(&name), e)),
            }
        }
        made += tree.made;
    }
    let results = run_gets(
        remote,
        &plan.jobs,
        Some(&sizes),
        Bars::OverallOnly,
        args.jobs,
    )?;
    let moved = |d: &super::download::Downloaded| d.size;
    finish(remote.quiet, plan, results, moved, "download", made)
}

/// Refuses a listing with any name that is not a safe relative path: the
/// server is not trusted to keep the tree inside `-o DIR`.
fn check_listing(answer: &ls::Answer) -> anyhow::Result<()> {
    let names = answer
        .folders
        .iter()
        .map(|f| &f.name)
        .chain(answer.files.iter().map(|f| &f.name));
    for name in names {
        if let Err(e) = check_path(name) {
            return Err(Coded::new(
                Exit::Server,
                format!(
                    "the server listed the unsafe name {:?} ({e}); nothing was downloaded",
                    clean(name)
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// A local folder being made again, component by component.
struct LocalTree {
    root: PathBuf,
    /// Folders (relative) known to be real folders, not links.
    known: HashSet<String>,
    /// How many this run made.
    made: usize,
}

impl LocalTree {
    fn new(root: PathBuf) -> LocalTree {
        LocalTree {
            root,
            known: HashSet::new(),
            made: 0,
        }
    }

    /// Makes `rel` (a checked relative path, `""` the root) and every
    /// folder on the way, refusing anything on the way that is not a
    /// folder, links included.
    fn dir(&mut self, rel: &str) -> anyhow::Result<()> {
        let mut at = String::new();
        let components = std::iter::once("").chain(rel.split('/').filter(|c| !c.is_empty()));
        for part in components {
            at = paths::join(&at, part);
            if self.known.contains(&at) {
                continue;
            }
            // `root.join("")` would end in `/`, which follows a link.
            let local = if at.is_empty() {
                self.root.clone()
            } else {
                self.root.join(&at)
            };
            match fs::symlink_metadata(&local) {
                Ok(m) if m.file_type().is_symlink() => {
                    bail!("{} is a symbolic link; not followed", clean_path(&local))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("{} is in the way: not a folder", clean_path(&local)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // mkdir(2) does not follow a link at its last component.
                    fs::create_dir(&local).map_err(|e| {
                        anyhow!("cannot create {}: {}", clean_path(&local), io_words(&e))
                    })?;
                    self.made += 1;
                }
                Err(e) => bail!("cannot use {}: {}", clean_path(&local), io_words(&e)),
            }
            self.known.insert(at.clone());
        }
        Ok(())
    }
}

/// What to do with the local `target` of server file `f`: `None` to skip
/// it (already there with the server's MD5), else how to write it.
fn decide(
    target: &Path,
    f: &FileInfo,
    resume: bool,
    overwrite: bool,
) -> anyhow::Result<Option<Mode>> {
    let meta = match fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Mode::ViaPart)),
        Err(e) => bail!("cannot use {}: {}", clean_path(target), io_words(&e)),
    };
    if meta.file_type().is_symlink() {
        bail!("{} is a symbolic link; not followed", clean_path(target));
    }
    if !meta.is_file() {
        bail!("{} exists and is not a regular file", clean_path(target));
    }
    let same = meta.len() == f.size
        && f.md5
            .as_deref()
            .is_some_and(|md5| local_md5(target, f.size).as_deref() == Some(md5));
    if same {
        return Ok(None);
    }
    if resume {
        return Ok(Some(Mode::AppendToTarget));
    }
    if overwrite {
        return Ok(Some(Mode::ViaPart));
    }
    bail!(
        "{} exists and differs from the server's file; pass --resume to continue it or \
         --overwrite to replace it (it was left untouched)",
        clean_path(target)
    )
}

/// Names each failure on stderr and sums up the rest on stdout (unless
/// `-q`); skipped entries are named on stderr even with `-q`.
fn finish<J, T>(
    quiet: bool,
    plan: Plan<J>,
    results: Vec<anyhow::Result<T>>,
    size: impl Fn(&T) -> u64,
    verb: &str,
    made: usize,
) -> anyhow::Result<()>
where
    J: Named,
{
    let mut err = io::stderr().lock();
    for why in &plan.skipped {
        writeln!(err, "skipped {why}")?;
    }
    let mut codes = Vec::new();
    for (what, e) in &plan.failed {
        writeln!(err, "error: cannot {verb} {what}: {e:#}")?;
        codes.push(exit::code(e));
    }
    let (mut files, mut bytes) = (0usize, 0u64);
    for (job, result) in plan.jobs.iter().zip(&results) {
        match result {
            Ok(t) => {
                files += 1;
                bytes += size(t);
            }
            Err(e) => {
                writeln!(err, "error: cannot {verb} {}: {e:#}", shown(job.name()))?;
                codes.push(exit::code(e));
            }
        }
    }
    drop(err);
    if !quiet {
        let noun = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        let mut line = format!("{verb}ed {} ({})", noun(files, "file"), human_size(bytes));
        if made > 0 {
            line.push_str(&format!(", made {}", noun(made, "folder")));
        }
        if plan.same > 0 {
            line.push_str(&format!(
                "; {} already there with the same MD5",
                noun(plan.same, "file")
            ));
        }
        writeln!(io::stdout().lock(), "{line}")?;
    }
    if codes.is_empty() {
        return Ok(());
    }
    let total = plan.jobs.len() + plan.failed.len();
    let message = format!("{} of {total} {verb}s failed", codes.len());
    Err(Coded::new(exit::common(codes), message).into())
}

/// A job's path on the server.
trait Named {
    fn name(&self) -> &str;
}

impl Named for PutJob {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for GetJob {
    fn name(&self) -> &str {
        &self.name
    }
}
