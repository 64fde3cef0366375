//! A fixed pool of blocking workers fed by a bounded channel.
//!
//! The channel's bound is the connection queue: the accept loop never
//! blocks on it (it answers `BUSY` instead) and never spawns threads.

use std::net::TcpStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{session, Shared};

/// The worker threads.
pub struct Pool {
    workers: Vec<JoinHandle<()>>,
    /// Disconnects when every worker has returned.
    done: Receiver<()>,
}

impl Pool {
    /// Starts `n` workers taking connections from `jobs`.
    ///
    /// # Errors
    /// If a thread cannot be spawned.
    pub fn start(
        n: usize,
        jobs: Receiver<TcpStream>,
        shared: Arc<Shared>,
    ) -> std::io::Result<Pool> {
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let jobs = jobs.clone();
            let shared = Arc::clone(&shared);
            let done_tx: Sender<()> = done_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let _done = done_tx;
                    for stream in jobs.iter() {
                        if shared.stopping() {
                            continue; // drain and drop what was queued
                        }
                        // A panic ends one connection, not the worker.
                        let r = panic::catch_unwind(AssertUnwindSafe(|| {
                            session::serve(&shared, stream);
                        }));
                        if r.is_err() {
                            eprintln!("worker-{i}: a connection panicked; it was closed");
                        }
                    }
                })?;
            workers.push(handle);
        }
        Ok(Pool { workers, done })
    }

    /// Waits up to `grace` for the workers to finish (after the job sender
    /// was dropped). Returns whether all of them did.
    pub fn join(self, grace: Duration) -> bool {
        match self.done.recv_timeout(grace) {
            Err(RecvTimeoutError::Disconnected) => {
                for w in self.workers {
                    let _ = w.join();
                }
                true
            }
            _ => false,
        }
    }
}
