//! The server: bind, run the event loop and the worker pool, shut down.
//!
//! One event loop ([`event_loop`]) owns every connection between
//! requests: it accepts, applies the limits ([`limits`]), tells TLS from
//! plaintext by the first byte, runs TLS handshakes and reads request
//! headers without blocking. A fixed pool of blocking workers ([`pool`])
//! serves each request ([`session`], over [`conn`]) and gives the
//! connection back ([`link`]). [`Stopper::stop`] (wired to SIGINT/SIGTERM
//! by `main`) stops accepting, lets requests in flight finish within the
//! grace period, and returns.

pub mod bodies;
pub mod conn;
pub mod event_loop;
pub mod limits;
pub mod link;
pub mod log;
pub mod logins;
pub mod pool;
pub mod proxy;
pub mod reach;
pub mod refused;
pub mod session;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mio::{Poll, Waker};
use rustls::ServerConfig;

use crate::disk::db::DbDisk;
use crate::disk::s3::{S3Config, S3};
use crate::disk::Disk;
use crate::http::sessions::Sessions;
pub use crate::state::{Config, Shared};
use crate::storage::{DataLock, Storage};
use crate::tls::server::Identity;
use crate::users::control;
use crate::users::UserStore;
use bodies::Bodies;
use event_loop::EventLoop;

/// How long staged uploads are kept without being resumed (PROTOCOL.md).
pub const STAGING_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    poll: Poll,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    tls: Arc<ServerConfig>,
    fingerprint: String,
    /// Held while serving: a second server on the same data refuses, and
    /// `netdisk user` goes through the admin socket instead.
    _data_lock: Option<DataLock>,
    /// The admin socket's file, removed when the server goes (none with
    /// `--db`: `netdisk user --db` changes the database itself).
    _admin: Option<control::SocketFile>,
}

/// Stops a running server from another thread (or a signal handler).
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
}

impl Stopper {
    /// Begins shutdown: sets the flag, says so in the log, and wakes the
    /// event loop.
    pub fn stop(&self) {
        self.shared.log.write("shutting down", "shutting down");
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

impl Server {
    /// Binds the address, then locks and opens the data directory and the
    /// user store.
    ///
    /// # Errors
    /// If another server or admin command holds the data directory, if it
    /// or `users.xlsx` cannot be opened, or the address cannot be bound.
    pub fn bind(config: Config) -> anyhow::Result<Server> {
        use anyhow::Context;
        // First: a busy or forbidden address fails before anything is
        // made on disk.
        let listener = TcpListener::bind(&config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        // With --db, several servers share the data directory (its blobs
        // are keyed by ids no two servers make alike): no lock on it.
        let data_lock = match config.db {
            None => Some(DataLock::acquire(&config.data)?),
            Some(_) => None,
        };
        // This server, in the claims it holds and its connections' name.
        let server_id = crate::disk::blobs::Blobs::new_key()?[..16].to_string();
        let db = config
            .db
            .as_deref()
            .map(|url| crate::db::open_as(url, &crate::db::server_name(&server_id)))
            .transpose()?;
        let (disk, mut users): (Box<dyn Disk>, UserStore) = match &db {
            Some(pool) => {
                let limits = crate::disk::db::Limits {
                    max_staged: config.max_staged,
                    max_files: config.max_files,
                    listing_memory: config.listing_memory,
                };
                let disk = match &config.blobs {
                    Some(url) => {
                        let s3 = S3Config::from_env(url)?;
                        let s3 = S3::open(s3).map_err(|e| anyhow::anyhow!("--blobs {url}: {e}"))?;
                        DbDisk::open_s3(pool.clone(), s3, &limits, &server_id)?
                    }
                    None => DbDisk::open(pool.clone(), &config.data, &limits, &server_id)
                        .with_context(|| {
                            format!("cannot open the blob folder in {}", config.data.display())
                        })?,
                };
                (Box::new(disk), UserStore::open_db(pool.clone())?)
            }
            None => {
                let mut storage = Storage::open(&config.data).with_context(|| {
                    format!("cannot open data directory {}", config.data.display())
                })?;
                storage.set_max_staged(config.max_staged);
                storage.set_max_files(config.max_files);
                storage.set_listing_memory(config.listing_memory);
                let users = UserStore::open(&storage.users_file())
                    .with_context(|| format!("cannot load {}", storage.users_file().display()))?;
                (Box::new(storage), users)
            }
        };
        let identity = Identity::load_shared(&config.tls, db.as_ref())?;
        let web = db.clone().map(Sessions::with_db).unwrap_or_default();
        let tls = identity.server_config()?;
        users.set_register_limit(config.register_limit);
        users.set_login_pace(config.login_burst, config.login_rate);
        let poll = Poll::new().context("cannot start the event loop")?;
        let waker = EventLoop::waker(&poll).context("cannot start the event loop")?;
        let json_log = config.log_json;
        let bodies = Bodies::new(config.workers, config.min_rate, config.rate_window);
        let shared = Shared {
            db,
            users,
            disk,
            bodies: Arc::new(bodies),
            config,
            log: log::Log::new(json_log),
            stop: Arc::new(AtomicBool::new(false)),
            web,
            locks: Default::default(),
            dav_auth: Default::default(),
        };
        let shared = Arc::new(shared);
        let admin = if shared.db.is_some() {
            None
        } else {
            let shared = Arc::clone(&shared);
            control::listen(&shared.config.data.clone(), move |op| {
                let signed_out = |key: &str| {
                    shared.web.remove_user(key);
                    shared.locks.forget_user(key);
                };
                let target = control::Target {
                    users: &shared.users,
                    storage: Some(&*shared.disk),
                    signed_out: &signed_out,
                };
                control::apply(op, &target)
            })
            .map(Some)
            .with_context(|| "cannot open the admin socket in the data directory".to_string())?
        };
        Ok(Server {
            listener,
            poll,
            waker,
            _admin: admin,
            shared,
            tls,
            fingerprint: identity.fingerprint,
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

    /// Writes `text` to the server's log (stamped, and as JSON with
    /// `--log-format json`).
    pub fn note(&self, text: &str) {
        self.shared.log.write(text, text);
    }

    /// The SPKI fingerprint of the server's certificate, `sha256:…`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A handle that stops this server.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            flag: Arc::clone(&self.shared.stop),
            waker: Arc::clone(&self.waker),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until stopped, then drains the workers.
    ///
    /// # Errors
    /// If the worker threads cannot be started or polling fails.
    pub fn run(self) -> io::Result<()> {
        let config = &self.shared.config;
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(config.queue);
        let (back_tx, back_rx) = crossbeam_channel::unbounded();
        // As many threads as the hasher has: each waits on one hash.
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let logins = logins::Logins::start(
            (cores / 2).clamp(1, 4),
            Arc::clone(&self.shared),
            jobs_tx.clone(),
            Arc::clone(&self.waker),
        )?;
        let pool = pool::Pool::start(
            config.workers,
            jobs_rx,
            back_tx,
            Arc::clone(&self.waker),
            Arc::clone(&self.shared),
            Arc::clone(&logins),
        )?;
        start_janitor(Arc::clone(&self.shared));
        let grace = config.grace;
        let mut event_loop = EventLoop::new(
            self.poll,
            self.listener,
            jobs_tx,
            back_rx,
            Arc::clone(&self.shared),
            self.tls,
        )?;
        let result = event_loop.run();
        // The loop has closed the listener and every waiting connection
        // and dropped the job sender: the workers finish what they serve.
        drop(event_loop);
        // Its threads hold senders of the workers' queue: they must go for
        // the workers to see the end of it.
        logins.close();
        if !pool.join(grace) {
            let cut = "shutdown: requests still running after the grace period were cut off";
            self.shared.log.write(cut, cut);
            self.shared.disk.release_claims();
        }
        result
    }
}

fn start_janitor(shared: Arc<Shared>) {
    let _ = thread::Builder::new()
        .name("janitor".into())
        .spawn(move || {
            shared.disk.empty_trash();
            loop {
                shared.disk.sweep_staging(STAGING_MAX_AGE);
                // Corrects the kept usage for changes made by hand.
                shared.disk.recount_usage();
                thread::sleep(Duration::from_secs(3600));
            }
        });
}
