//! `put` and `get` for one or many files: planning, the parallel driver,
//! and the report.
//!
//! Small files (at most 4 MiB, PROTOCOL.md "Small uploads in one go") go
//! first, pipelined on the session's own connection (`pipeline`). The
//! others then go one by one over it, or in parallel on up to `-j`
//! connections (a rayon pool; each connection logs in as the session's
//! account, the session's own connection is one of them), by the
//! resumable protocol. One progress bar per file. Files whose pipelined
//! answer a broken connection lost are tried again that second way.
//!
//! A `get` of several names lists the folder first, for the sizes; a
//! `get` that continues a local file never goes pipelined.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail};
use rayon::prelude::*;

use super::cancel;
use super::download::{self, local_target, GetJob, Mode};
use super::exit::{self, Coded};
use super::output::{clean, human_size, io_words, Plain};
use super::pipeline::{self, Outcome};
use super::progress::{Bar, Progress};
use super::prompt::{self, Existing};
use super::session::{is_broken, Session};
use super::upload;
use super::{GetArgs, PutArgs};
use crate::client::{Client, ClientError};

/// `put FILE... [--as NAME] [-j N]`.
///
/// # Errors
/// Bad arguments before anything is sent; otherwise the failed uploads.
pub fn put(session: &mut Session, args: &PutArgs) -> anyhow::Result<()> {
    let jobs = upload::plan(&args.files, args.as_name.as_deref())?;
    let small: Vec<bool> = jobs
        .iter()
        .map(|j| std::fs::metadata(&j.path).is_ok_and(|m| pipeline::fits(m.len())))
        .collect();
    let results = run_all(
        session,
        &jobs,
        |j| &j.name,
        args.jobs,
        &small,
        pipeline::put_all,
        upload::upload,
    )?;
    report(
        session.quiet,
        &jobs,
        |j| &j.name,
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

/// `get NAME... [-o PATH] [--resume | --overwrite] [-j N]`.
///
/// # Errors
/// Bad arguments or a local file in the way, before anything is
/// downloaded; otherwise the failed downloads.
pub fn get(session: &mut Session, args: &GetArgs) -> anyhow::Result<()> {
    let jobs = plan_get(args)?;
    let sizes = listed_sizes(session, &jobs)?;
    let small: Vec<bool> = jobs
        .iter()
        .map(|j| {
            let fresh = j.mode == Mode::Fresh
                && std::fs::metadata(download::part_path(&j.target)).map_or(true, |m| m.len() == 0);
            sizes.as_ref().is_some_and(|s| {
                // A name not listed is answered NOT_FOUND, also pipelined.
                fresh && s.get(&j.name).is_none_or(|&size| pipeline::fits(size))
            })
        })
        .collect();
    let size_of = |j: &GetJob| {
        sizes
            .as_ref()
            .and_then(|s| s.get(&j.name).copied())
            .unwrap_or(0)
    };
    let pipelined = |c: &mut Client, jobs: &[&GetJob], bars: &mut [Bar]| {
        let listed: Vec<u64> = jobs.iter().map(|j| size_of(j)).collect();
        pipeline::get_all(c, jobs, &listed, bars)
    };
    let results = run_all(
        session,
        &jobs,
        |j| &j.name,
        args.jobs,
        &small,
        pipelined,
        download::download,
    )?;
    report(
        session.quiet,
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

/// The listed sizes of the server's files, when several are to be
/// downloaded (one `ls`); `None` for a single file, which gains nothing
/// from a pipeline.
fn listed_sizes(
    session: &mut Session,
    jobs: &[GetJob],
) -> anyhow::Result<Option<HashMap<String, u64>>> {
    if jobs.len() < 2 {
        return Ok(None);
    }
    let files = session.call(Client::ls)?;
    Ok(Some(files.into_iter().map(|f| (f.name, f.size)).collect()))
}

/// The jobs of a `get`: a target for each name and what to do with a
/// target that exists. Names the user cancels are left out.
fn plan_get(args: &GetArgs) -> anyhow::Result<Vec<GetJob>> {
    let names = &args.names;
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            bail!("{} is named twice", clean(n));
        }
    }
    let folder = match (&args.output, names.len()) {
        (Some(p), 1) if !p.is_dir() => None,
        (Some(p), _) => Some(p.clone()),
        (None, _) => Some(PathBuf::new()),
    };
    if let Some(dir) = &folder {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow!("cannot create {}: {}", show(dir), io_words(&e)))?;
    }
    let mut jobs = Vec::with_capacity(names.len());
    for name in names {
        let target = match (&folder, &args.output) {
            (Some(dir), _) => local_target(dir, name)?,
            (None, Some(file)) => {
                local_target(Path::new("."), name)?;
                file.clone()
            }
            (None, None) => unreachable!("no -o means the current folder"),
        };
        match decide(&target, args.resume, args.overwrite)? {
            Some(mode) => jobs.push(GetJob {
                name: name.clone(),
                target,
                mode,
            }),
            None => {
                let mut err = io::stderr().lock();
                writeln!(err, "skipped {}", clean(name))?;
            }
        }
    }
    Ok(jobs)
}

/// How to write `target`; `None` if the user cancels.
fn decide(target: &Path, resume: bool, overwrite: bool) -> anyhow::Result<Option<Mode>> {
    let meta = match std::fs::metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Mode::Fresh)),
        Err(e) => bail!("cannot use {}: {}", show(target), io_words(&e)),
    };
    if !meta.is_file() {
        bail!("{} exists and is not a regular file", show(target));
    }
    if resume {
        return Ok(Some(Mode::Resume));
    }
    if overwrite {
        return Ok(Some(Mode::Fresh));
    }
    if !prompt::interactive() {
        bail!(
            "{} exists; pass --resume to continue it or --overwrite to replace it \
             (it was left untouched)",
            show(target)
        );
    }
    Ok(match prompt::existing(target, meta.len())? {
        Existing::Resume => Some(Mode::Resume),
        Existing::Overwrite => Some(Mode::Fresh),
        Existing::Cancel => None,
    })
}

/// What a transfer does with one item over one connection.
trait Work<J, T>: Fn(&mut Client, &J, &mut Bar, &Progress) -> anyhow::Result<T> + Sync {}
impl<J, T, F> Work<J, T> for F where
    F: Fn(&mut Client, &J, &mut Bar, &Progress) -> anyhow::Result<T> + Sync
{
}

/// What sends a batch of small files pipelined over one connection.
trait Batch<J, T>:
    FnMut(&mut Client, &[&J], &mut [Bar]) -> (Vec<Outcome<T>>, Option<ClientError>)
{
}
impl<J, T, F> Batch<J, T> for F where
    F: FnMut(&mut Client, &[&J], &mut [Bar]) -> (Vec<Outcome<T>>, Option<ClientError>)
{
}

/// Runs every item: those marked `small` pipelined over the session's
/// connection by `batch`, then the rest by `work`, one after another over
/// that connection or on up to `parallel` connections at once. Results
/// come back in the order of `items`.
fn run_all<J: Sync + Clone, T: Send>(
    session: &mut Session,
    items: &[J],
    name: impl Fn(&J) -> &str + Sync,
    parallel: u16,
    small: &[bool],
    mut batch: impl Batch<J, T>,
    work: impl Work<J, T>,
) -> anyhow::Result<Vec<anyhow::Result<T>>> {
    let mut progress = Progress::new(session.quiet);
    let bars: Vec<Bar> = items.iter().map(|i| progress.bar(name(i))).collect();
    if items.len() > 1 {
        progress.overall(items.len());
    }
    let mut bars: Vec<Option<Bar>> = bars
        .into_iter()
        .map(|b| Some(b.counting_towards(&progress)))
        .collect();
    let mut results: Vec<Option<anyhow::Result<T>>> = items.iter().map(|_| None).collect();
    let large: Vec<usize> = (0..items.len()).filter(|&i| !small[i]).collect();
    run_rest(
        session,
        items,
        &large,
        &mut bars,
        &mut results,
        parallel,
        &progress,
        &work,
    )?;
    let piped: Vec<usize> = (0..items.len()).filter(|&i| small[i]).collect();
    if piped.is_empty() {
        return Ok(finished(results));
    }
    let jobs: Vec<&J> = piped.iter().map(|&i| &items[i]).collect();
    let mut piped_bars: Vec<Bar> = piped.iter().filter_map(|&i| bars[i].take()).collect();
    let client = match session.client() {
        Ok(c) => c,
        Err(e) => {
            // Each file fails with it, as over the resumable path.
            let (exit, words) = (exit::code(&e), format!("{e:#}"));
            for &i in &piped {
                results[i] = Some(Err(Coded::new(exit, words.clone()).into()));
            }
            return Ok(finished(results));
        }
    };
    let (outcomes, broken) = batch(client, &jobs, &mut piped_bars);
    let mut again = Vec::new();
    for ((&i, outcome), bar) in piped.iter().zip(outcomes).zip(piped_bars) {
        match outcome {
            Some(r) => results[i] = Some(r),
            None => {
                bars[i] = Some(bar);
                again.push(i);
            }
        }
    }
    if let Some(e) = broken {
        session.drop_client();
        let e = Plain(e);
        if cancel::check().is_err() {
            for &i in &again {
                results[i] = Some(Err(cancel::Cancelled {
                    kept: "nothing was kept".into(),
                }
                .into()));
            }
            return Ok(finished(results));
        }
        progress.note(&format!(
            "the connection broke during the batch ({e}); trying the rest again"
        ));
        run_rest(
            session,
            items,
            &again,
            &mut bars,
            &mut results,
            parallel,
            &progress,
            &work,
        )?;
    }
    Ok(finished(results))
}

/// Runs `work` for the items at `which`, as [`run_all`] does for files
/// that do not go pipelined.
#[allow(clippy::too_many_arguments)]
fn run_rest<J: Sync + Clone, T: Send>(
    session: &mut Session,
    items: &[J],
    which: &[usize],
    bars: &mut [Option<Bar>],
    results: &mut [Option<anyhow::Result<T>>],
    parallel: u16,
    progress: &Progress,
    work: &impl Work<J, T>,
) -> anyhow::Result<()> {
    if which.is_empty() {
        return Ok(());
    }
    let jobs: Vec<J> = which.iter().map(|&i| items[i].clone()).collect();
    let rest_bars: Vec<Bar> = which.iter().filter_map(|&i| bars[i].take()).collect();
    let done = if jobs.len() <= 1 || parallel <= 1 {
        run_one_by_one(session, &jobs, rest_bars, progress, work)?
    } else {
        run_parallel(session, &jobs, rest_bars, parallel, progress, work)?
    };
    for (&i, r) in which.iter().zip(done) {
        results[i] = Some(r);
    }
    Ok(())
}

/// The results of a run, every item having one.
fn finished<T>(results: Vec<Option<anyhow::Result<T>>>) -> Vec<anyhow::Result<T>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("not transferred"))))
        .collect()
}

/// The sequential half of [`run_all`], over the session's connection.
fn run_one_by_one<J, T>(
    session: &mut Session,
    items: &[J],
    bars: Vec<Bar>,
    progress: &Progress,
    work: impl Work<J, T>,
) -> anyhow::Result<Vec<anyhow::Result<T>>> {
    let mut results = Vec::with_capacity(items.len());
    for (item, mut bar) in items.iter().zip(bars) {
        let result = session
            .client()
            .and_then(|c| work(c, item, &mut bar, progress));
        if result.as_ref().is_err_and(|e| !reusable(e)) {
            session.drop_client();
        }
        results.push(result);
    }
    Ok(results)
}

/// The parallel half of [`run_all`]: a rayon pool of `parallel` threads
/// sharing a pool of logged-in connections, the session's among them.
fn run_parallel<J: Sync, T: Send>(
    session: &mut Session,
    items: &[J],
    bars: Vec<Bar>,
    parallel: u16,
    progress: &Progress,
    work: impl Work<J, T>,
) -> anyhow::Result<Vec<anyhow::Result<T>>> {
    let threads = usize::from(parallel).min(items.len());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let idle = Mutex::new(Vec::from_iter(session.take_client()));
    let shared: &Session = session;
    let results = pool.install(|| {
        items
            .par_iter()
            .zip(bars.into_par_iter())
            .map(|(item, mut bar)| {
                let pooled = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let mut client = match pooled {
                    Some(c) => c,
                    None => shared.connect_logged_in()?,
                };
                let result = work(&mut client, item, &mut bar, progress);
                if result.as_ref().map_or_else(reusable, |_| true) {
                    idle.lock().unwrap_or_else(|p| p.into_inner()).push(client);
                }
                result
            })
            .collect()
    });
    let mut idle = idle.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = idle.pop() {
        session.put_client(c);
    }
    for mut c in idle {
        let _ = c.quit();
    }
    Ok(results)
}

/// Whether a connection can go on after a transfer failed with `e`: only
/// after a server error reply, which always arrives with the stream in
/// step. Anything else may have left half a body on the wire.
fn reusable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Plain>().is_some_and(|p| {
        matches!(p.0, crate::client::ClientError::Server { .. }) && !is_broken(&p.0)
    })
}

/// Prints one line per finished transfer (stdout, unless `-q`) and one per
/// failure (stderr). One failed file is the command's error; with several,
/// the error counts them.
fn report<J, T>(
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

fn show(p: &Path) -> String {
    clean(&p.display().to_string()).into_owned()
}
