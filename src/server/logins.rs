//! Logins wait for the password hasher here, not on a worker.
//!
//! A worker that reads a `login` request hands the connection over (see
//! `session`): the connection waits in a fair queue, one line per address
//! taken in turn (round robin), so that a flood of logins from some
//! addresses delays another address's login by one hash per flooding
//! address, not by the whole flood. A few threads take the queue in that
//! order, check the password (the limits and the hash of `UserStore::login`,
//! as before) and give the connection to the workers again with the
//! outcome; a worker then answers it in microseconds. One address may have
//! at most [`PER_ADDRESS`] logins waiting, everyone together
//! [`IN_ALL`]; beyond that the login is answered `BUSY` at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use crossbeam_channel::Sender;
use mio::Waker;

use super::limits::address_key;
use super::link::{Link, LoginDone};
use crate::error::Error;
use crate::state::Shared;

/// Logins one address may have waiting for the hasher (as many as it may
/// have connections by default: a line only ever delays its own address).
pub const PER_ADDRESS: usize = 128;
/// Logins that may wait in all: each holds its connection and what the
/// client pipelined behind the login (at most the 64 KiB read-ahead), so
/// the queue stays under 64 MiB.
pub const IN_ALL: usize = 1024;

#[derive(Default)]
struct Queue {
    lines: HashMap<IpAddr, VecDeque<Link>>,
    /// Addresses with a login waiting, in the order they are served.
    turn: VecDeque<IpAddr>,
    waiting: usize,
    closed: bool,
}

/// The queue and its threads.
pub struct Logins {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Logins {
    /// Starts `threads` threads that check logins and hand the connections
    /// to `jobs` (the workers' queue).
    ///
    /// # Errors
    /// If a thread cannot be spawned.
    pub fn start(
        threads: usize,
        shared: Arc<Shared>,
        jobs: Sender<Link>,
        waker: Arc<Waker>,
    ) -> std::io::Result<Arc<Logins>> {
        let logins = Arc::new(Logins {
            queue: Mutex::default(),
            ready: Condvar::new(),
        });
        for i in 0..threads.max(1) {
            let (logins, shared, jobs, waker) = (
                Arc::clone(&logins),
                Arc::clone(&shared),
                jobs.clone(),
                Arc::clone(&waker),
            );
            thread::Builder::new()
                .name(format!("login-{i}"))
                .spawn(move || {
                    while let Some(mut link) = logins.next() {
                        let Some(pending) = link.session.login.take() else {
                            continue;
                        };
                        let outcome =
                            shared
                                .users
                                .login(&pending.user, &pending.password, &link.peer_ip);
                        link.session.login_done = Some(LoginDone {
                            user: pending.user,
                            outcome,
                            started: pending.started,
                        });
                        if jobs.send(link).is_err() {
                            return; // shutting down
                        }
                        let _ = waker.wake();
                    }
                })?;
        }
        Ok(logins)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a connection whose session holds a pending login (`None`);
    /// gives it back, its login answered `BUSY`, if its address (or
    /// everyone) has too many waiting.
    pub fn submit(&self, mut link: Link) -> Option<Link> {
        let address = address_key(link.peer.ip());
        let mut q = self.lock();
        let line = q.lines.get(&address).map_or(0, VecDeque::len);
        if q.closed || line >= PER_ADDRESS || q.waiting >= IN_ALL {
            drop(q);
            if let Some(pending) = link.session.login.take() {
                link.session.login_done = Some(LoginDone {
                    user: pending.user,
                    outcome: Err(Error::Busy(
                        "too many logins at once; try again in a moment".into(),
                    )),
                    started: pending.started,
                });
            }
            return Some(link);
        }
        if line == 0 {
            q.turn.push_back(address);
        }
        q.lines.entry(address).or_default().push_back(link);
        q.waiting += 1;
        drop(q);
        self.ready.notify_one();
        None
    }

    /// The next login, address by address in turn; `None` once closed.
    fn next(&self) -> Option<Link> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(address) = q.turn.pop_front() {
                let line = q.lines.get_mut(&address)?;
                let link = line.pop_front();
                if line.is_empty() {
                    q.lines.remove(&address);
                } else {
                    q.turn.push_back(address);
                }
                q.waiting -= 1;
                if let Some(link) = link {
                    return Some(link);
                }
                continue;
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops the threads; waiting logins are dropped (their connections
    /// close).
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.lines.clear();
        q.turn.clear();
        drop(q);
        self.ready.notify_all();
    }

    /// Logins waiting right now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }
}
