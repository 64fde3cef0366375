//! Group commit of pipelined uploads in one go (PROTOCOL.md, "Small
//! uploads in one go"): a burst of small files is written and checked one
//! by one, then made durable together (their `fsync`s on a few threads,
//! which the disk serves in shared flushes), renamed into place, their
//! folder synced once, and only then answered, in order. A reply still
//! means the file is durable; a burst pays one folder sync instead of one
//! per file.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use rayon::prelude::*;

use serde_json::Value;

use crate::commands::put::Checked;
use crate::error::Error;
use crate::protocol::{Header, Reply};
use crate::storage::sync_dir;

/// Uploads waiting at most; the next one commits the group first. Each
/// holds its name's claim until then, and claims count against the
/// user's bound on unfinished uploads (16 by default) on every
/// connection: a few is enough to share the folder sync.
pub const GROUP_MAX: usize = 8;
/// Threads that sync groups' files, shared by all connections.
const SYNC_THREADS: usize = 8;

/// A request's log line, kept until its answer goes out.
pub struct Entry {
    pub cmd: String,
    pub name: Option<String>,
    pub bytes: u64,
    pub started: Instant,
}

/// An upload renamed into place, with the folder still to sync.
type Placed = Result<(Reply, Option<PathBuf>), Error>;

/// Checked uploads waiting for one commit.
#[derive(Default)]
pub struct Group {
    waiting: Vec<(Checked, Entry)>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.waiting.len() >= GROUP_MAX
    }

    pub fn push(&mut self, checked: Checked, entry: Entry) {
        self.waiting.push((checked, entry));
    }

    /// Whether `header` may be served before the group commits: an upload
    /// in one go of a name not waiting here. Anything else may look at
    /// what the group holds (a `get` of it, a `put` of the same name, which
    /// would find it locked) or must be answered after it.
    pub fn admits(&self, header: &Header) -> bool {
        let one_go = header.get("cmd").and_then(Value::as_str) == Some("put")
            && header.get("md5").is_some_and(Value::is_string);
        let name = header.get("name").and_then(Value::as_str);
        one_go
            && !self.is_full()
            && name.is_some_and(|n| self.waiting.iter().all(|(c, _)| c.name() != n))
    }

    /// Makes every waiting upload durable and visible; returns each one's
    /// answer with its log line, in order.
    pub fn commit(&mut self) -> Vec<(Entry, Result<Reply, Error>)> {
        let waiting = std::mem::take(&mut self.waiting);
        let synced = sync_all(&waiting);
        // Those synced are placed together (one transaction on the
        // database); a failed sync is that file's answer.
        let mut answers: Vec<Option<Placed>> = Vec::with_capacity(waiting.len());
        let (mut entries, mut ready) = (Vec::new(), Vec::new());
        for ((checked, entry), synced) in waiting.into_iter().zip(synced) {
            entries.push(entry);
            match synced {
                Ok(()) => {
                    ready.push(checked);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let mut placed_ready = Checked::place_all(ready).into_iter();
        let mut placed: Vec<(Entry, Placed)> = entries
            .into_iter()
            .zip(answers)
            .map(|(entry, answer)| {
                let p = answer.unwrap_or_else(|| {
                    placed_ready
                        .next()
                        .unwrap_or_else(|| Err(Error::Internal("no answer".into())))
                });
                (entry, p)
            })
            .collect();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, p) in &placed {
            if let Ok((_, Some(dir))) = p {
                if !dirs.contains(dir) {
                    dirs.push(dir.clone());
                }
            }
        }
        // Several folders (the database's blobs spread over 256) are
        // synced side by side, as the files are.
        let synced = on_syncers(&dirs, |d| sync_dir(d));
        for (dir, synced) in dirs.into_iter().zip(synced) {
            if let Err(e) = synced {
                // The renames in it are not known to be durable: say so.
                let words = e.to_string();
                for (_, p) in &mut placed {
                    if p.as_ref().is_ok_and(|(_, d)| d.as_ref() == Some(&dir)) {
                        *p = Err(Error::Internal(format!("folder sync failed: {words}")));
                    }
                }
            }
        }
        placed
            .into_iter()
            .map(|(entry, p)| (entry, p.map(|(answer, _)| answer)))
            .collect()
    }
}

/// Syncs every file, on up to [`SYNC_THREADS`] threads of one pool that
/// every connection's groups share, started once: starting threads for
/// each group cost about a sixth of a small upload where fsyncs are cheap
/// (on tmpfs, 9,335–11,265 files/s before, 11,186–13,374 after).
fn sync_all(waiting: &[(Checked, Entry)]) -> Vec<Result<(), Error>> {
    on_syncers(waiting, |(c, _)| c.sync())
}

/// `sync` of each of `items`, on the shared sync threads when there are
/// two or more.
fn on_syncers<T: Sync, E: Send>(
    items: &[T],
    sync: impl Fn(&T) -> Result<(), E> + Sync,
) -> Vec<Result<(), E>> {
    static SYNCERS: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let pool = SYNCERS.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(SYNC_THREADS)
            .thread_name(|i| format!("sync-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) if items.len() >= 2 => pool.install(|| {
            items
                .par_iter()
                .with_max_len(items.len().div_ceil(SYNC_THREADS))
                .map(&sync)
                .collect()
        }),
        _ => items.iter().map(sync).collect(),
    }
}
