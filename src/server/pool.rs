//! A fixed pool of blocking workers fed by a bounded channel of requests.
//!
//! The event loop sends a connection with a whole request header in hand;
//! the worker serves it (and any requests already buffered behind it) and
//! sends it back, waking the loop. The channel's bound is `--queue`: the
//! loop never blocks on it (it answers `BUSY` instead) and never spawns
//! threads.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::Waker;

use super::link::Link;
use super::logins::Logins;
use super::session;
use crate::state::Shared;

/// The worker threads.
pub struct Pool {
    workers: Vec<JoinHandle<()>>,
    /// Disconnects when every worker has returned.
    done: Receiver<()>,
}

impl Pool {
    /// Starts `n` workers taking connections from `jobs` and giving them
    /// back on `back`.
    ///
    /// # Errors
    /// If a thread cannot be spawned.
    pub fn start(
        n: usize,
        jobs: Receiver<Link>,
        back: Sender<Link>,
        waker: Arc<Waker>,
        shared: Arc<Shared>,
        logins: Arc<Logins>,
    ) -> std::io::Result<Pool> {
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let jobs = jobs.clone();
            let back = back.clone();
            let waker = Arc::clone(&waker);
            let shared = Arc::clone(&shared);
            let logins = Arc::clone(&logins);
            let done_tx: Sender<()> = done_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let _done = done_tx;
                    for link in jobs.iter() {
                        if shared.stopping() {
                            continue; // drain and drop what was queued
                        }
                        // A panic ends one connection, not the worker.
                        let served = panic::catch_unwind(AssertUnwindSafe(|| {
                            let serve = |link: Link| {
                                if link.http {
                                    crate::http::serve(&shared, link)
                                } else {
                                    session::serve(&shared, link)
                                }
                            };
                            let mut link = serve(link);
                            // A login waits for the hasher in its queue,
                            // not here; refused there, it is answered here.
                            while link.session.login.is_some() {
                                match logins.submit(link) {
                                    None => return None,
                                    Some(back) => link = serve(back),
                                }
                            }
                            Some(link)
                        }));
                        match served {
                            Ok(None) => {}
                            Ok(Some(link)) => {
                                if back.send(link).is_ok() {
                                    let _ = waker.wake();
                                }
                            }
                            Err(_) => {
                                eprintln!("worker-{i}: a connection panicked; it was closed");
                            }
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
