//! The server: bind, accept, hand connections to the worker pool, shut down.
//!
//! The accept loop passes each connection over a bounded crossbeam channel
//! to a fixed pool of workers ([`pool`]); each worker runs [`session`] for
//! one connection at a time. When the queue is full the loop answers `BUSY`
//! and closes at once. [`Stopper::stop`] (wired to SIGINT/SIGTERM by
//! `main`) stops accepting, lets requests in flight finish within the grace
//! period, and returns.

pub mod conn;
pub mod pool;
pub mod session;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::TrySendError;

use crate::error::ErrorCode;
use crate::protocol::{encode_frame, error_header};
use crate::storage::{DataLock, Storage};
use crate::users::UserStore;

/// How long staged uploads are kept without being resumed (PROTOCOL.md).
pub const STAGING_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Server settings (see `netdisk serve --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub data: PathBuf,
    pub workers: usize,
    pub queue: usize,
    /// Idle connections, and transfers without progress, are closed after this.
    pub idle_timeout: Duration,
    /// Default quota for users without their own `quota_bytes`.
    pub quota: Option<u64>,
    /// How long a shutdown waits for requests in flight.
    pub grace: Duration,
    /// Whether `register` creates accounts (else `REGISTRATION_CLOSED`).
    pub registration_open: bool,
    /// Successful registrations allowed per address per hour.
    pub register_limit: u32,
    /// Unfinished uploads one user may hold.
    pub max_staged: usize,
}

/// State every worker shares.
pub struct Shared {
    pub users: UserStore,
    pub storage: Storage,
    pub config: Config,
    /// Set once shutdown begins.
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    /// Held while serving: `netdisk user` refuses to change accounts
    /// under a running server (and a second server on the same data).
    _data_lock: DataLock,
}

/// Stops a running server from another thread (or a signal handler).
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl Stopper {
    /// Begins shutdown: sets the flag and wakes the accept loop.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A connection to ourselves unblocks `accept`; it is then dropped.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

impl Server {
    /// Locks and opens the data directory and the user store, and binds the
    /// address.
    ///
    /// # Errors
    /// If another server or admin command holds the data directory, if it
    /// or `users.xlsx` cannot be opened, or the address cannot be bound.
    pub fn bind(config: Config) -> anyhow::Result<Server> {
        use anyhow::Context;
        let data_lock = DataLock::acquire(&config.data)?;
        let mut storage = Storage::open(&config.data)
            .with_context(|| format!("cannot open data directory {}", config.data.display()))?;
        storage.set_max_staged(config.max_staged);
        let mut users = UserStore::open(&storage.users_file())
            .with_context(|| format!("cannot load {}", storage.users_file().display()))?;
        users.set_register_limit(config.register_limit);
        let listener = TcpListener::bind(&config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let shared = Shared {
            users,
            storage,
            config,
            stop: Arc::new(AtomicBool::new(false)),
        };
        Ok(Server {
            listener,
            shared: Arc::new(shared),
            _data_lock: data_lock,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    ///
    /// # Errors
    /// If the socket cannot report it.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops this server.
    ///
    /// # Errors
    /// If the socket cannot report its address.
    pub fn stopper(&self) -> io::Result<Stopper> {
        let mut wake = self.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => [127, 0, 0, 1].into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Ok(Stopper {
            flag: Arc::clone(&self.shared.stop),
            wake,
        })
    }

    /// Accepts connections until stopped, then drains the workers.
    ///
    /// # Errors
    /// If the worker threads cannot be started.
    pub fn run(self) -> io::Result<()> {
        let config = &self.shared.config;
        let (tx, rx) = crossbeam_channel::bounded(config.queue);
        let pool = pool::Pool::start(config.workers, rx, Arc::clone(&self.shared))?;
        self.start_janitor();
        for stream in self.listener.incoming() {
            if self.shared.stopping() {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors and the like: keep serving others.
                    eprintln!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            match tx.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(s)) => refuse_busy(s),
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        // Stop accepting for real: connections arriving during the grace
        // period are refused instead of waiting unserved in the backlog.
        drop(self.listener);
        drop(tx);
        if !pool.join(config.grace) {
            eprintln!("shutdown: requests still running after the grace period were cut off");
        }
        Ok(())
    }

    fn start_janitor(&self) {
        let shared = Arc::clone(&self.shared);
        let _ = thread::Builder::new()
            .name("janitor".into())
            .spawn(move || loop {
                shared.storage.sweep_staging(STAGING_MAX_AGE);
                thread::sleep(Duration::from_secs(3600));
            });
    }
}

/// Answers `BUSY` and closes, without blocking the accept loop for long.
fn refuse_busy(mut stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let frame = encode_frame(&error_header(
        ErrorCode::Busy,
        "every worker is busy; try again later",
    ));
    let _ = stream.write_all(&frame);
    eprintln!("{peer} - - - 0 0ms BUSY");
}
