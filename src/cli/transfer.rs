//! `put` and `get` for one or many files: planning and the report.
//!
//! Files over 4 MiB go first, by the resumable protocol, one by one over
//! the session's own connection or in parallel on up to `-j` connections
//! (a rayon pool; each connection logs in as the session's account, the
//! session's own connection is one of them). The small ones (PROTOCOL.md
//! "Small uploads in one go") then go pipelined on the session's
//! connection (`pipeline`); those whose answer a broken connection lost
//! are tried again by the resumable path. `runner` drives both. One
//! progress bar per file.
//!
//! A `get` of several paths lists their folders first, for the sizes; a
//! `get` that continues a local file never goes pipelined. A file is saved
//! under its own name (the path's last part). Whole folders (`-r`) are
//! planned in `folder` and run here too.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use super::cancel;
use super::download::{self, local_target, Downloaded, GetJob, Mode};
use super::exit::{self, Coded};
use super::folder;
use super::output::{clean, clean_path, human_size, io_words};
use super::paths;
use super::pipeline;
use super::progress::Bar;
use super::prompt::{self, Existing};
use super::remote::Remote;
use super::runner::{run_all, Bars};
use super::upload::{self, PutJob, Uploaded};
use super::{GetArgs, PutArgs};
use crate::client::Client;
use crate::error::ErrorCode;

/// `put FILE... [--as PATH] [-r] [-j N]`.
///
/// # Errors
/// Bad arguments before anything is sent; otherwise the failed uploads.
pub fn put(remote: &mut Remote, args: &PutArgs) -> anyhow::Result<()> {
    if args.recursive {
        return folder::put_tree(remote, args);
    }
    let planned = upload::plan(&args.files, args.as_name.as_deref(), &remote.cwd)?;
    let jobs: Vec<PutJob> = planned.iter().flatten().cloned().collect();
    let mut sent = run_puts(remote, &jobs, Bars::PerFile, args.jobs)?.into_iter();
    // Each file's outcome in the order given: a file that could not be
    // read is reported by its local path, among the others.
    let mut names = Vec::with_capacity(planned.len());
    let mut results = Vec::with_capacity(planned.len());
    for (path, plan) in args.files.iter().zip(planned) {
        match plan {
            Ok(job) => {
                names.push(job.name);
                results.push(sent.next().expect("one result per job"));
            }
            Err(e) => {
                names.push(path.display().to_string());
                results.push(Err(e));
            }
        }
    }
    report(
        remote.quiet,
        &names,
        |n| n.as_str(),
        results,
        "upload",
        |name, up| {
            let resumed = up
                .resumed_at
                .map_or(String::new(), |k| format!(", resumed at {}", human_size(k)));
            format!("uploaded {name} ({}{resumed})", human_size(up.size))
        },
    )
}

/// Uploads `jobs`: the small ones pipelined, the rest resumable on up to
/// `parallel` connections.
///
/// # Errors
/// Only if no transfer could start; each file has its own result.
pub(super) fn run_puts(
    remote: &mut Remote,
    jobs: &[PutJob],
    shown: Bars,
    parallel: u16,
) -> anyhow::Result<Vec<anyhow::Result<Uploaded>>> {
    let sizes: Vec<Option<u64>> = jobs
        .iter()
        .map(|j| std::fs::metadata(&j.path).ok().map(|m| m.len()))
        .collect();
    let small: Vec<bool> = sizes
        .iter()
        .map(|s| s.is_some_and(pipeline::fits))
        .collect();
    run_all(
        remote,
        jobs,
        |j| &j.name,
        shown,
        parallel,
        &small,
        &sizes,
        pipeline::put_all,
        upload::upload,
    )
}

/// `get PATH... [-o PATH] [--resume | --overwrite] [-r] [-j N]`.
///
/// # Errors
/// Bad arguments or a local file in the way, before anything is
/// downloaded; otherwise the failed downloads.
pub fn get(remote: &mut Remote, args: &GetArgs) -> anyhow::Result<()> {
    if args.recursive {
        return folder::get_tree(remote, args);
    }
    let jobs = plan_get(args, &remote.cwd)?;
    let sizes = listed_sizes(remote, &jobs)?;
    let results = run_gets(remote, &jobs, sizes.as_ref(), Bars::PerFile, args.jobs)?;
    let results = results
        .into_iter()
        .map(|r| r.map_err(folder_hint))
        .collect();
    report(
        remote.quiet,
        &jobs,
        |j| &j.name,
        results,
        "download",
        |name, d| {
            let resumed = d
                .resumed_at
                .map_or(String::new(), |k| format!(", resumed at {}", human_size(k)));
            format!(
                "downloaded {name} ({}{resumed}, MD5 checked)",
                human_size(d.size)
            )
        },
    )
}

/// A `get` of a folder says how to download one.
fn folder_hint(e: anyhow::Error) -> anyhow::Error {
    if exit::refusal(&e) == Some(ErrorCode::IsAFolder) {
        let words = "that is a folder on the server; `get -r` downloads a folder whole";
        return Coded::new(exit::code(&e), words).into();
    }
    e
}

/// Downloads `jobs`: fresh small ones (by the listed `sizes`, if known)
/// pipelined, the rest resumable on up to `parallel` connections.
///
/// # Errors
/// Only if no transfer could start; each file has its own result.
pub(super) fn run_gets(
    remote: &mut Remote,
    jobs: &[GetJob],
    sizes: Option<&HashMap<String, u64>>,
    shown: Bars,
    parallel: u16,
) -> anyhow::Result<Vec<anyhow::Result<Downloaded>>> {
    let small: Vec<bool> = jobs
        .iter()
        .map(|j| {
            let fresh = j.mode == Mode::ViaPart
                && std::fs::metadata(download::part_path(&j.target)).map_or(true, |m| m.len() == 0);
            sizes.is_some_and(|s| {
                // A name not listed is answered NOT_FOUND, also pipelined.
                fresh && s.get(&j.name).is_none_or(|&size| pipeline::fits(size))
            })
        })
        .collect();
    let size_of = |j: &GetJob| sizes.and_then(|s| s.get(&j.name).copied()).unwrap_or(0);
    let listed: Vec<Option<u64>> = jobs
        .iter()
        .map(|j| sizes.and_then(|s| s.get(&j.name).copied()))
        .collect();
    let pipelined = |c: &mut Client, jobs: &[&GetJob], bars: &mut [Bar]| {
        let listed: Vec<u64> = jobs.iter().map(|j| size_of(j)).collect();
        pipeline::get_all(c, jobs, &listed, bars)
    };
    run_all(
        remote,
        jobs,
        |j| &j.name,
        shown,
        parallel,
        &small,
        &listed,
        pipelined,
        download::download,
    )
}

/// The listed sizes of the files to download, when there are several (one
/// `ls` per folder they are in); `None` for a single file, which gains
/// nothing from a pipeline. A folder that cannot be listed lists nothing:
/// its files then fail on their own.
fn listed_sizes(
    remote: &mut Remote,
    jobs: &[GetJob],
) -> anyhow::Result<Option<HashMap<String, u64>>> {
    if jobs.len() < 2 {
        return Ok(None);
    }
    let mut folders: Vec<&str> = jobs.iter().map(|j| paths::parent(&j.name)).collect();
    folders.sort_unstable();
    folders.dedup();
    let mut sizes = HashMap::new();
    for folder in folders {
        match remote.call(|c| c.list(folder, false)) {
            Ok(answer) => sizes.extend(
                answer
                    .files
                    .into_iter()
                    .map(|f| (paths::join(folder, &f.name), f.size)),
            ),
            Err(e) if exit::refusal(&e).is_some() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(sizes))
}

/// The jobs of a `get`: a target for each path and what to do with a
/// target that exists. Paths the user cancels are left out.
fn plan_get(args: &GetArgs, cwd: &str) -> anyhow::Result<Vec<GetJob>> {
    let mut names: Vec<String> = Vec::with_capacity(args.names.len());
    for typed in &args.names {
        let path = paths::resolve_entry(cwd, typed, "downloading")?;
        if names.contains(&path) {
            bail!("{} is named twice", paths::shown(&path));
        }
        names.push(path);
    }
    let folder = match (&args.output, names.len()) {
        (Some(p), 1) if !p.is_dir() => None,
        (Some(p), _) => Some(p.clone()),
        (None, _) => Some(PathBuf::new()),
    };
    if let Some(dir) = &folder {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow!("cannot create {}: {}", clean_path(dir), io_words(&e)))?;
    }
    let mut jobs = Vec::with_capacity(names.len());
    for name in names {
        let base = paths::base(&name);
        if let Some(other) = jobs.iter().find(|j: &&GetJob| paths::base(&j.name) == base) {
            bail!(
                "{} and {} would both be saved as {}",
                paths::shown(&other.name),
                paths::shown(&name),
                clean(base)
            );
        }
        let target = match (&folder, &args.output) {
            (Some(dir), _) => local_target(dir, base)?,
            (None, Some(file)) => {
                local_target(Path::new("."), base)?;
                file.clone()
            }
            (None, None) => unreachable!("no -o means the current folder"),
        };
        match decide(&target, args.resume, args.overwrite)? {
            Some(mode) => jobs.push(GetJob { name, target, mode }),
            None => {
                let mut err = io::stderr().lock();
                writeln!(err, "skipped {}", clean(&name))?;
            }
        }
    }
    Ok(jobs)
}

/// How to write `target`; `None` if the user cancels.
fn decide(target: &Path, resume: bool, overwrite: bool) -> anyhow::Result<Option<Mode>> {
    let meta = match std::fs::metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Mode::ViaPart)),
        Err(e) => bail!("cannot use {}: {}", clean_path(target), io_words(&e)),
    };
    if !meta.is_file() {
        bail!("{} exists and is not a regular file", clean_path(target));
    }
    if resume {
        return Ok(Some(Mode::AppendToTarget));
    }
    if overwrite {
        return Ok(Some(Mode::ViaPart));
    }
    if !prompt::interactive() {
        bail!(
            "{} exists; pass --resume to continue it or --overwrite to replace it \
             (it was left untouched)",
            clean_path(target)
        );
    }
    Ok(match prompt::existing(target, meta.len())? {
        Existing::Resume => Some(Mode::AppendToTarget),
        Existing::Overwrite => Some(Mode::ViaPart),
        Existing::Cancel => None,
    })
}

/// Prints one line per finished transfer (stdout, unless `-q`) and one per
/// failure (stderr). One failed file is the command's error; with several,
/// the error counts them.
pub(super) fn report<J, T>(
    quiet: bool,
    items: &[J],
    name: impl Fn(&J) -> &str,
    results: Vec<anyhow::Result<T>>,
    verb: &str,
    done: impl Fn(&str, &T) -> String,
) -> anyhow::Result<()> {
    let total = results.len();
    let mut failed = Vec::new();
    let mut out = io::stdout().lock();
    for (item, result) in items.iter().zip(results) {
        let shown = clean(name(item));
        match result {
            Ok(v) if !quiet => writeln!(out, "{}", done(&shown, &v))?,
            Ok(_) => {}
            Err(e) if total == 1 => return Err(e.context(format!("cannot {verb} {shown}"))),
            Err(e) => {
                failed.push(exit::code(&e));
                let mut err = io::stderr().lock();
                if cancel::is_cancelled(&e) {
                    // Ctrl-C in the shell: no error, a note of what is kept.
                    writeln!(err, "{shown}: {e:#}")?;
                } else {
                    writeln!(err, "error: cannot {verb} {shown}: {e:#}")?;
                }
            }
        }
    }
    if !failed.is_empty() {
        let n = failed.len();
        let message = format!("{n} of {total} {verb}s failed");
        return Err(Coded::new(exit::common(failed), message).into());
    }
    Ok(())
}
