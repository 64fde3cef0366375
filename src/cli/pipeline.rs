//! Many small files over one connection, pipelined: a window of requests
//! in flight, answers read in order (PROTOCOL.md, "Small uploads in one
//! go"). A batch then costs about one round trip instead of one or two
//! per file.
//!
//! Uploads go in one go (`put` with `md5`, the file read and hashed
//! first); downloads are plain `get`s sent ahead of their answers. Each
//! file keeps its own result, bar and line in the report, as over the
//! resumable path.
//!
//! The window never deadlocks against the server: the client writes
//! requests and bodies while the server may be writing answers nobody reads
//! yet, but at most [`WINDOW_FILES`] of them, a few hundred bytes each,
//! which always fit in the socket buffers between the two. Bodies going the
//! other way (downloads) are read as they come, one answer at a time.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Read;
use std::path::PathBuf;
use std::thread;

use anyhow::anyhow;
use crossbeam_channel::{unbounded, Receiver, Sender};
use md5::{Digest, Md5};

use super::cancel;
use super::download::{self, Downloaded, GetJob};
use super::durable::Batch;
use super::exit::{Coded, Exit};
use super::output::{clean, clean_path, io_words, Plain};
use super::progress::Bar;
use super::remote::is_broken;
use super::upload::{PutJob, Uploaded};
use crate::client::{Client, ClientError};
use crate::commands::put::ONE_GO_MAX;

/// Requests in flight at most on one connection.
pub const WINDOW_FILES: usize = 128;
/// Body bytes in flight at most on one connection (a file larger than
/// this still goes, alone).
pub const WINDOW_BYTES: u64 = 16 << 20;
/// Threads that rename checked downloads into place while the connection
/// goes on; one `syncfs` at the end makes them durable (`durable`).
const SAVERS: usize = 2;

/// A file's result, or `None` if the connection broke before its answer
/// arrived: nothing is known, and the caller may try it again.
pub type Outcome<T> = Option<anyhow::Result<T>>;

/// Whether a file of `size` bytes goes in one go.
pub fn fits(size: u64) -> bool {
    size <= ONE_GO_MAX
}

/// An upload sent and not yet answered.
struct Sent {
    index: usize,
    size: u64,
    md5: String,
}

/// Uploads `jobs` in one go each, pipelined over `client`. `bars[i]` is
/// `jobs[i]`'s bar. Returns one outcome per job; after a broken
/// connection (the error is returned too) the unanswered ones are `None`.
pub fn put_all(
    client: &mut Client,
    jobs: &[&PutJob],
    bars: &mut [Bar],
) -> (Vec<Outcome<Uploaded>>, Option<ClientError>) {
    let mut results: Vec<Outcome<Uploaded>> = jobs.iter().map(|_| None).collect();
    let mut flight: VecDeque<Sent> = VecDeque::new();
    let mut in_flight = 0u64;
    let mut next = 0;
    // A file read, waiting for room in the window.
    let mut ready: Option<(usize, Vec<u8>, String)> = None;
    loop {
        while flight.len() < WINDOW_FILES {
            if ready.is_none() {
                if next == jobs.len() || cancel::check().is_err() {
                    break;
                }
                match read_whole(&jobs[next].path) {
                    Ok(data) => {
                        let md5 = crate::protocol::md5_hex(Md5::digest(&data));
                        ready = Some((next, data, md5));
                    }
                    Err(e) => results[next] = Some(Err(e)),
                }
                next += 1;
                continue;
            }
            let Some((index, data, md5)) = ready.take() else {
                break;
            };
            let size = data.len() as u64;
            if !flight.is_empty() && in_flight + size > WINDOW_BYTES {
                ready = Some((index, data, md5));
                break;
            }
            let bar = &mut bars[index];
            bar.set_total(size);
            bar.set(0);
            if let Err(e) = client.put_send(&jobs[index].name, &md5, &data) {
                return (results, Some(e));
            }
            bar.add(size);
            in_flight += size;
            flight.push_back(Sent { index, size, md5 });
        }
        let Some(sent) = flight.pop_front() else {
            break;
        };
        in_flight -= sent.size;
        let verdict = client.put_answer().and_then(|answer| {
            let ours = answer.name == jobs[sent.index].name
                && answer.size == sent.size
                && answer.md5 == sent.md5;
            if ours {
                Ok(())
            } else {
                Err(ClientError::Protocol(
                    "put reply does not match the upload".into(),
                ))
            }
        });
        match verdict {
            Ok(()) => {
                bars[sent.index].finish();
                results[sent.index] = Some(Ok(Uploaded {
                    size: sent.size,
                    resumed_at: None,
                }));
            }
            Err(e) if !is_broken(&e) => results[sent.index] = Some(Err(Plain(e).into())),
            Err(e) => return (results, Some(e)),
        }
    }
    // Files never sent because of Ctrl-C.
    for r in &mut results[next..] {
        *r = Some(Err(cancel::Cancelled {
            kept: "nothing was sent".into(),
        }
        .into()));
    }
    (results, None)
}

/// Reads a whole small file.
fn read_whole(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let shown = clean_path(path);
    let mut file = File::open(path).map_err(|e| anyhow!("{shown}: {}", io_words(&e)))?;
    if !file.metadata()?.is_file() {
        return Err(anyhow!("{shown}: not a regular file"));
    }
    let mut data = Vec::new();
    (&mut file)
        .take(ONE_GO_MAX + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow!("cannot read {shown}: {}", io_words(&e)))?;
    if !fits(data.len() as u64) {
        return Err(anyhow!("{shown} grew while it was being uploaded"));
    }
    Ok(data)
}

/// A download asked for and not yet answered: its part file, locked.
struct Asked {
    index: usize,
    part: File,
    path: PathBuf,
    /// The listed size, for the window.
    size: u64,
}

/// A checked download to make durable and rename over its target.
struct ToSave {
    index: usize,
    part: File,
    path: PathBuf,
    target: PathBuf,
    size: u64,
}

/// Downloads `jobs` (fresh ones, whose part files hold nothing) with
/// pipelined `get`s over `client`. `sizes[i]` is what the listing said of
/// `jobs[i]` (for the window). Outcomes as [`put_all`].
pub fn get_all(
    client: &mut Client,
    jobs: &[&GetJob],
    sizes: &[u64],
    bars: &mut [Bar],
) -> (Vec<Outcome<Downloaded>>, Option<ClientError>) {
    let (save_tx, save_rx) = unbounded::<ToSave>();
    let (done_tx, done_rx) = unbounded();
    let batch = Batch::default();
    thread::scope(|s| {
        for _ in 0..SAVERS {
            let (rx, tx, batch) = (save_rx.clone(), done_tx.clone(), &batch);
            s.spawn(move || saver(&rx, &tx, batch));
        }
        drop(done_tx);
        let (mut results, broken) = fetch(client, jobs, sizes, bars, &save_tx);
        drop(save_tx);
        let placed: Vec<(usize, anyhow::Result<u64>)> = done_rx.iter().collect();
        // Nothing is reported downloaded before it is durable.
        let synced = batch.sync();
        for (index, saved) in placed {
            let saved = match (&synced, saved) {
                (Err(e), Ok(_)) => Err(anyhow!(
                    "{} was saved but could not be made durable: {}",
                    clean_path(&jobs[index].target),
                    io_words(e)
                )),
                (_, saved) => saved,
            };
            results[index] = Some(saved.map(|size| Downloaded {
                size,
                resumed_at: None,
            }));
        }
        for (index, r) in results.iter().enumerate() {
            if matches!(r, Some(Ok(_))) {
                bars[index].finish();
            }
        }
        (results, broken)
    })
}

/// Renames checked downloads into place (durable after `batch.sync()`).
fn saver(rx: &Receiver<ToSave>, done: &Sender<(usize, anyhow::Result<u64>)>, batch: &Batch) {
    for job in rx {
        let saved = batch
            .place(&job.part, &job.path, &job.target)
            .map(|()| job.size);
        if done.send((job.index, saved)).is_err() {
            return;
        }
    }
}

/// The connection's half of [`get_all`]: asks, reads, checks, and hands
/// each good file to the savers. A file handed over has no outcome yet.
fn fetch(
    client: &mut Client,
    jobs: &[&GetJob],
    sizes: &[u64],
    bars: &mut [Bar],
    save: &Sender<ToSave>,
) -> (Vec<Outcome<Downloaded>>, Option<ClientError>) {
    let mut results: Vec<Outcome<Downloaded>> = jobs.iter().map(|_| None).collect();
    let mut flight: VecDeque<Asked> = VecDeque::new();
    let mut in_flight = 0u64;
    let mut next = 0;
    loop {
        while next < jobs.len() && flight.len() < WINDOW_FILES {
            let size = sizes[next];
            if !flight.is_empty() && in_flight + size > WINDOW_BYTES {
                break;
            }
            if cancel::check().is_err() {
                break;
            }
            let job = jobs[next];
            let path = download::part_path(&job.target);
            match download::lock_part(&path, &job.target) {
                Ok(part) => {
                    if let Err(e) = client.get_send(&job.name, 0) {
                        let _ = fs::remove_file(&path);
                        return (results, Some(e));
                    }
                    in_flight += size;
                    flight.push_back(Asked {
                        index: next,
                        part,
                        path,
                        size,
                    });
                }
                Err(e) => results[next] = Some(Err(e)),
            }
            next += 1;
        }
        let Some(mut asked) = flight.pop_front() else {
            break;
        };
        in_flight -= asked.size;
        let job = jobs[asked.index];
        let bar = &mut bars[asked.index];
        match receive(client, job, &mut asked.part, bar) {
            Ok(size) => {
                let to_save = ToSave {
                    index: asked.index,
                    part: asked.part,
                    path: asked.path,
                    target: job.target.clone(),
                    size,
                };
                // The savers outlive this function: a send cannot fail.
                let _ = save.send(to_save);
            }
            Err(Failure::File(e)) => {
                let _ = fs::remove_file(&asked.path);
                results[asked.index] = Some(Err(e));
            }
            Err(Failure::Link(e)) => {
                // What arrived of this file is kept in its part file, to
                // be continued; the ones asked after it hold nothing.
                for a in flight {
                    let _ = fs::remove_file(&a.path);
                }
                return (results, Some(e));
            }
        }
    }
    // Files never asked for because of Ctrl-C; the ones handed to the
    // savers get their outcome there.
    for r in &mut results[next..] {
        *r = Some(Err(cancel::Cancelled {
            kept: "nothing was kept".into(),
        }
        .into()));
    }
    (results, None)
}

/// Why one pipelined download failed.
enum Failure {
    /// This file only; the connection goes on.
    File(anyhow::Error),
    /// The connection is out of step or gone.
    Link(ClientError),
}

/// Reads the answer to the oldest `get` in flight and its body into
/// `part`, and checks
/// the MD5. Returns the size.
fn receive(
    client: &mut Client,
    job: &GetJob,
    part: &mut File,
    bar: &mut Bar,
) -> Result<u64, Failure> {
    let answer = match client.get_answer(0) {
        Ok(a) => a,
        Err(e) if !is_broken(&e) => return Err(Failure::File(Plain(e).into())),
        Err(e) => return Err(Failure::Link(e)),
    };
    if answer.name != job.name {
        return Err(Failure::Link(ClientError::Protocol(format!(
            "asked for {:?}, got {:?}",
            clean(&job.name),
            clean(&answer.name)
        ))));
    }
    bar.set_total(answer.size);
    bar.set(0);
    let mut hasher = Md5::new();
    if let Err(e) = download::receive(client, answer.size, part, &mut hasher, bar) {
        return Err(match e.downcast::<Plain>() {
            Ok(Plain(e)) => Failure::Link(e),
            // A local write failed or Ctrl-C: the body is not all read,
            // so the connection cannot go on either.
            Err(e) => Failure::Link(ClientError::Io(std::io::Error::other(format!("{e:#}")))),
        });
    }
    let md5 = crate::protocol::md5_hex(hasher.finalize());
    if md5 != answer.md5 {
        return Err(Failure::File(
            Coded::new(
                Exit::Checksum,
                format!(
                    "MD5 mismatch: the server says {} but {md5} arrived; nothing was saved",
                    answer.md5
                ),
            )
            .into(),
        ));
    }
    Ok(answer.size)
}
