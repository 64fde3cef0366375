//! Logins wait for the password hasher here, not on a worker.
//!
//! A worker that reads a login request hands the connection over with
//! the login pending in its session (`SessionState::login`): the
//! connection waits in a fair queue, one line per address taken in turn
//! (round robin), so that a flood of logins from some addresses delays
//! another address's login by one hash per flooding address, not by the
//! whole flood. A few threads take the queue in that order, check the
//! password (the limits and the hash of `UserStore::login_with`) and give
//! the connection to the workers again with the outcome
//! (`SessionState::login_done`); the front end that read the login (v1,
//! the web API, or any other: it finds its own `PendingLogin::resume`
//! again) answers it in microseconds.
//!
//! A login first needs its tokens of the login pace (`users::pace`: a
//! burst per user and per address, then a few a second). One that finds
//! none waits here for them, holding neither a worker nor a worker-queue
//! place, up to `--login-wait`; one that cannot have them by then is
//! answered `RATE_LIMITED` with the seconds to wait, at once. One address
//! may have at most [`PER_ADDRESS`] logins waiting, everyone together
//! [`IN_ALL`]; beyond that the login is answered `BUSY` at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::Waker;

use super::limits::address_key;
use super::link::{Link, LoginDone};
use crate::error::Error;
use crate::state::Shared;
use crate::users::{retry_after, LoginPass, UserStore};

/// Logins one address may have waiting for the hasher (as many as it may
/// have connections by default: a line only ever delays its own address).
pub const PER_ADDRESS: usize = 128;
/// Logins that may wait in all: each holds its connection and what the
/// client pipelined behind the login (at most the 64 KiB read-ahead), so
/// the queue stays under 64 MiB.
pub const IN_ALL: usize = 1024;
/// Logins of one line whose tokens are looked at per turn: a line of one
/// user's logins that wait for that user's tokens is not walked whole
/// each time.
const LOOK_AHEAD: usize = 16;
/// Longest the threads sleep without looking at the queue again.
const NAP: Duration = Duration::from_secs(1);

/// A login in line.
struct Waiting {
    link: Link,
    /// Past this it is refused rather than wait longer for its tokens.
    until: Instant,
}

/// One address's logins, in the order they came.
#[derive(Default)]
struct Line {
    logins: VecDeque<Waiting>,
    /// The address has no token until then: none of its logins can go.
    rests_until: Option<Instant>,
}

/// What a thread does next.
enum Job<'u> {
    /// Check this login, which holds its tokens.
    Check(Link, LoginPass<'u>),
    /// Answer `RATE_LIMITED`: its tokens come only after this wait.
    Refuse(Link, Duration),
}

#[derive(Default)]
struct Queue {
    lines: HashMap<IpAddr, Line>,
    /// Addresses with a login waiting, in the order they are served.
    turn: VecDeque<IpAddr>,
    waiting: usize,
    closed: bool,
}

/// The queue and its threads.
pub struct Logins {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// How long a login may wait for its tokens (`--login-wait`).
    patience: Duration,
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
            patience: shared.config.login_wait,
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
                    while let Some(job) = logins.next(&shared.users) {
                        let (mut link, outcome) = match job {
                            Job::Check(link, pass) => {
                                let Some(pending) = link.session.login.as_ref() else {
                                    continue; // never queued without one
                                };
                                let outcome = shared.users.login_with(
                                    pass,
                                    &pending.user,
                                    &pending.password,
                                    &link.peer_ip,
                                );
                                (link, outcome)
                            }
                            Job::Refuse(link, wait) => {
                                (link, Err(Error::LoginsTooFast(retry_after(wait))))
                            }
                        };
                        let Some(pending) = link.session.login.take() else {
                            continue;
                        };
                        link.session.login_done = Some(LoginDone {
                            user: pending.user,
                            outcome,
                            started: pending.started,
                            resume: pending.resume,
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
        let line = q.lines.get(&address).map_or(0, |l| l.logins.len());
        if q.closed || line >= PER_ADDRESS || q.waiting >= IN_ALL {
            drop(q);
            if let Some(pending) = link.session.login.take() {
                link.session.login_done = Some(LoginDone {
                    user: pending.user,
                    outcome: Err(Error::Busy(
                        "too many logins at once; try again in a moment".into(),
                    )),
                    started: pending.started,
                    resume: pending.resume,
                });
            }
            return Some(link);
        }
        if line == 0 {
            q.turn.push_back(address);
        }
        let until = Instant::now() + self.patience;
        q.lines
            .entry(address)
            .or_default()
            .logins
            .push_back(Waiting { link, until });
        q.waiting += 1;
        drop(q);
        self.ready.notify_one();
        None
    }

    /// The next login to check or refuse, address by address in turn;
    /// `None` once closed.
    fn next<'u>(&self, users: &'u UserStore) -> Option<Job<'u>> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return None;
            }
            let now = Instant::now();
            let mut soonest = now + NAP;
            for _ in 0..q.turn.len() {
                let address = q.turn.pop_front()?;
                let Some(line) = q.lines.get_mut(&address) else {
                    continue;
                };
                let found = pick(line, users, now, &mut soonest);
                let job = found.and_then(|(i, pass)| {
                    let w = line.logins.remove(i)?;
                    Some(match pass {
                        Ok(pass) => Job::Check(w.link, pass),
                        Err(wait) => Job::Refuse(w.link, wait),
                    })
                });
                if line.logins.is_empty() {
                    q.lines.remove(&address);
                } else {
                    q.turn.push_back(address);
                }
                if let Some(job) = job {
                    q.waiting -= 1;
                    return Some(job);
                }
            }
            let nap = soonest
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            q = if q.waiting == 0 {
                self.ready.wait(q).unwrap_or_else(|e| e.into_inner())
            } else {
                let (q, _) = self
                    .ready
                    .wait_timeout(q, nap)
                    .unwrap_or_else(|e| e.into_inner());
                q
            };
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

    /// Logins waiting right now (for the hasher or for their tokens).
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }
}

/// The login of `line` to take now: the first that has its tokens, or
/// one that cannot have them before its time is up (to refuse, with the
/// wait). Lowers `soonest` to when the line may have one.
fn pick<'u>(
    line: &mut Line,
    users: &'u UserStore,
    now: Instant,
    soonest: &mut Instant,
) -> Option<(usize, Result<LoginPass<'u>, Duration>)> {
    let resting = line.rests_until.filter(|&t| t > now);
    let mut looked = 0;
    for (i, w) in line.logins.iter().enumerate() {
        let Some(pending) = &w.link.session.login else {
            // Nothing to check: answered as a refusal of nothing.
            return Some((i, Err(Duration::ZERO)));
        };
        if resting.is_some() || looked >= LOOK_AHEAD {
            if now >= w.until {
                let wait = resting.map_or(Duration::ZERO, |t| t - now);
                return Some((i, Err(wait)));
            }
            *soonest = (*soonest).min(w.until);
            continue;
        }
        looked += 1;
        match users.login_pass(&pending.user, &w.link.peer_ip) {
            Ok(pass) => {
                line.rests_until = None;
                return Some((i, Ok(pass)));
            }
            Err(short) => {
                let ready = now.checked_add(short.wait);
                if ready.is_none_or(|t| t > w.until) {
                    return Some((i, Err(short.wait)));
                }
                let ready = ready.unwrap_or(w.until);
                *soonest = (*soonest).min(ready);
                if short.address {
                    line.rests_until = Some(ready);
                    return pick_expired(line, now, ready, soonest);
                }
            }
        }
    }
    None
}

/// With the address resting until `ready`, a login of `line` whose time
/// is up, to refuse; lowers `soonest` to the next deadline.
fn pick_expired<'u>(
    line: &Line,
    now: Instant,
    ready: Instant,
    soonest: &mut Instant,
) -> Option<(usize, Result<LoginPass<'u>, Duration>)> {
    for (i, w) in line.logins.iter().enumerate() {
        if now >= w.until {
            return Some((i, Err(ready - now)));
        }
        *soonest = (*soonest).min(w.until);
    }
    None
}
