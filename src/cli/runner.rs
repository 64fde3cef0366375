//! Running the files of one `put` or `get`: the small ones pipelined over
//! the session's connection (`pipeline`), the others one by one over it or
//! in parallel on up to `-j` connections, each file's result kept in the
//! order given.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rayon::prelude::*;

use super::cancel;
use super::exit::{self, Coded};
use super::output::Plain;
use super::pipeline::Outcome;
use super::progress::{Bar, Progress};
use super::remote::{is_broken, Remote};
use crate::client::{Client, ClientError};
use crate::error::ErrorCode;

/// How long a file of a broken batch, sent again over a new connection,
/// waits out `LOCKED` (the old connection's claim, until the server has
/// seen it end).
const LOCKED_AFTER_BREAK: Duration = Duration::from_secs(10);

/// What a transfer does with one item over one connection.
pub(super) trait Work<J, T>:
    Fn(&mut Client, &J, &mut Bar, &Progress) -> anyhow::Result<T> + Sync
{
}
impl<J, T, F> Work<J, T> for F where
    F: Fn(&mut Client, &J, &mut Bar, &Progress) -> anyhow::Result<T> + Sync
{
}

/// What sends a batch of small files pipelined over one connection.
pub(super) trait Batch<J, T>:
    FnMut(&mut Client, &[&J], &mut [Bar]) -> (Vec<Outcome<T>>, Option<ClientError>)
{
}
impl<J, T, F> Batch<J, T> for F where
    F: FnMut(&mut Client, &[&J], &mut [Bar]) -> (Vec<Outcome<T>>, Option<ClientError>)
{
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bars {
    /// A bar per file, and an overall line under several.
    PerFile,
    /// The overall line alone (a whole folder: thousands of files).
    OverallOnly,
}

/// Runs every item: those marked `small` pipelined over the session's
/// connection by `batch`, then the rest by `work`, one after another over
/// that connection or on up to `parallel` connections at once. Results
/// come back in the order of `items`. `sizes`, as far as known before
/// anything moves, let the overall line count every file from the start.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_all<J: Sync + Clone, T: Send>(
    remote: &mut Remote,
    items: &[J],
    name: impl Fn(&J) -> &str + Sync,
    shown: Bars,
    parallel: u16,
    small: &[bool],
    sizes: &[Option<u64>],
    mut batch: impl Batch<J, T>,
    work: impl Work<J, T>,
) -> anyhow::Result<Vec<anyhow::Result<T>>> {
    let mut progress = Progress::new(remote.quiet);
    let bars: Vec<Bar> = items
        .iter()
        .map(|i| match shown {
            Bars::PerFile => progress.bar(name(i)),
            Bars::OverallOnly => progress.hidden_bar(),
        })
        .collect();
    if items.len() > 1 || shown == Bars::OverallOnly {
        progress.overall(items.len());
    }
    let mut bars: Vec<Option<Bar>> = bars
        .into_iter()
        .zip(sizes.iter().chain(std::iter::repeat(&None)))
        .map(|(b, size)| {
            let mut b = b.counting_towards(&progress);
            if let Some(size) = size {
                b.set_total(*size);
            }
            Some(b)
        })
        .collect();
    let mut results: Vec<Option<anyhow::Result<T>>> = items.iter().map(|_| None).collect();
    let large: Vec<usize> = (0..items.len()).filter(|&i| !small[i]).collect();
    run_rest(
        remote,
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
    let client = match remote.client() {
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
        remote.drop_client();
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
        // The server may still be winding the broken connection down (its
        // worker reading what was buffered before the break), holding the
        // name it was receiving: `LOCKED` for that name is waited out.
        let patient = |c: &mut Client, job: &J, bar: &mut Bar, progress: &Progress| {
            let deadline = Instant::now() + LOCKED_AFTER_BREAK;
            let mut pause = Duration::from_millis(20);
            loop {
                let result = work(c, job, bar, progress);
                let locked = result.as_ref().is_err_and(|e| {
                    e.downcast_ref::<Plain>()
                        .is_some_and(|p| p.0.code() == Some(ErrorCode::Locked))
                });
                if !locked || Instant::now() + pause > deadline || cancel::check().is_err() {
                    return result;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        };
        run_rest(
            remote,
            items,
            &again,
            &mut bars,
            &mut results,
            parallel,
            &progress,
            &patient,
        )?;
    }
    Ok(finished(results))
}

/// Runs `work` for the items at `which`, as [`run_all`] does for files
/// that do not go pipelined.
#[allow(clippy::too_many_arguments)]
fn run_rest<J: Sync + Clone, T: Send>(
    remote: &mut Remote,
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
        run_one_by_one(remote, &jobs, rest_bars, progress, work)?
    } else {
        run_parallel(remote, &jobs, rest_bars, parallel, progress, work)?
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
    remote: &mut Remote,
    items: &[J],
    bars: Vec<Bar>,
    progress: &Progress,
    work: impl Work<J, T>,
) -> anyhow::Result<Vec<anyhow::Result<T>>> {
    let mut results = Vec::with_capacity(items.len());
    for (item, mut bar) in items.iter().zip(bars) {
        let result = remote
            .client()
            .and_then(|c| work(c, item, &mut bar, progress));
        if result.as_ref().is_err_and(|e| !reusable(e)) {
            remote.drop_client();
        }
        results.push(result);
    }
    Ok(results)
}

/// The parallel half of [`run_all`]: a rayon pool of `parallel` threads
/// sharing a pool of logged-in connections, the session's among them.
fn run_parallel<J: Sync, T: Send>(
    remote: &mut Remote,
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
    let idle = Mutex::new(Vec::from_iter(remote.take_client()));
    let shared: &Remote = remote;
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
        remote.return_client(c);
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
