//! What every request can reach, whichever front end carries it: the
//! users, the storage, the settings, the log and the stop flag.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http::sessions::Sessions;
use crate::server::bodies::Bodies;
use crate::server::limits::PeerSet;
use crate::server::log::Log;
use crate::tls::server::CertSource;
use crate::users::UserStore;

/// Server settings (see `netdisk serve --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: String,
    pub data: PathBuf,
    /// PostgreSQL URL (`--db`): accounts and metadata there, not in
    /// `users.xlsx` and the folders.
    pub db: Option<String>,
    /// S3 bucket of the file bytes (`--blobs`), only with `db`.
    pub blobs: Option<String>,
    /// Blocking worker threads: requests served at once.
    pub workers: usize,
    /// Requests (whole headers) that may wait for a worker; beyond that
    /// the connection gets `BUSY`.
    pub queue: usize,
    /// Between requests: how long a connection may stay silent.
    pub idle_timeout: Duration,
    /// How long a header may take once its first byte (or the TLS
    /// handshake) has arrived.
    pub header_timeout: Duration,
    /// How long an anonymous connection may go without logging in.
    pub login_timeout: Duration,
    /// Bodies slower than this many bytes a second over `rate_window` are
    /// cut; 0 disables the floor.
    pub min_rate: u64,
    pub rate_window: Duration,
    /// Connections open at once, in all and from one address.
    pub max_connections: usize,
    pub max_per_address: usize,
    /// Peers that may speak plaintext; the rest must use TLS.
    pub plaintext_from: PeerSet,
    /// Load balancers whose connections begin with a PROXY protocol
    /// header naming the client (`--proxy-from`; empty: none do).
    pub proxy_from: PeerSet,
    /// The server's certificate.
    pub tls: CertSource,
    /// Default quota for users without their own `quota_bytes`.
    pub quota: Option<u64>,
    /// How long a shutdown waits for requests in flight.
    pub grace: Duration,
    /// Whether `register` creates accounts (else `REGISTRATION_CLOSED`).
    pub registration_open: bool,
    /// Successful registrations allowed per address per hour.
    pub register_limit: u32,
    /// Logins that get in at once per user (an address: four times).
    pub login_burst: u32,
    /// Logins a second per user after a burst (an address: four times).
    pub login_rate: f64,
    /// How long a login over that pace may wait for its turn in the login
    /// queue before it is `RATE_LIMITED`.
    pub login_wait: Duration,
    /// Memory that listings being built or sent may hold together.
    pub listing_memory: usize,
    /// Unfinished uploads one user may hold.
    pub max_staged: usize,
    /// Files one user may hold.
    pub max_files: u64,
    /// How long a web session lives without a request.
    pub web_idle: Duration,
    /// The log as JSON objects, one a line, instead of text lines.
    pub log_json: bool,
}

/// Error replies in a row after which a connection is closed: a client
/// checking a few hundred bad names is fine, a flood is not.
pub const MAX_ERROR_RUN: u32 = 1000;

/// State every worker shares.
pub struct Shared {
    /// The database (`--db`), if any.
    pub db: Option<crate::db::Pool>,
    pub users: UserStore,
    pub disk: Box<dyn crate::disk::Disk>,
    pub config: Config,
    /// The request log.
    pub log: Log,
    /// Set once shutdown begins.
    pub stop: Arc<AtomicBool>,
    /// The web front end's signed-in browsers.
    pub web: Sessions,
    /// Bodies in flight: how many workers may wait on the network.
    pub bodies: Arc<Bodies>,
    /// WebDAV write locks, which every front end honours.
    pub locks: crate::locks::Locks,
    /// WebDAV credentials verified lately.
    pub dav_auth: crate::http::dav::Remembered,
}

impl Shared {
    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
