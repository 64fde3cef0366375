//! The `netdisk` command: `serve` runs the server, `user` manages accounts
//! while it is stopped; every other subcommand is the client (see
//! `netdisk::cli`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use netdisk::cli;
use netdisk::server::limits::PeerSet;
use netdisk::server::{Config, Server};
use netdisk::storage::{DataLock, Storage};
use netdisk::tls::server::{CertSource, Identity};
use netdisk::users::UserStore;

/// A small self-hosted network disk: file server and client.
#[derive(Parser)]
#[command(name = "netdisk", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the file server.
    #[command(after_help = SERVE_HELP)]
    Serve(Box<ServeArgs>),
    /// Print the server's TLS fingerprint (making its certificate on the
    /// first run), without starting it.
    Fingerprint(FingerprintArgs),
    /// Manage accounts in a data directory, while its server runs or not.
    #[command(after_help = USER_HELP)]
    User(UserArgs),
    /// Move a single-machine data directory into PostgreSQL (`serve --db`).
    #[command(after_help = MIGRATE_HELP)]
    Migrate(MigrateArgs),
    #[command(flatten)]
    Client(cli::Command),
}

const MIGRATE_HELP: &str = "\
Copies the accounts (names, password hashes, quotas), every folder and file
(with its modification time, MD5 and WebDAV properties) and the unfinished
uploads of the data directory into the database, and the files' bytes into
DIR/blobs (or --to DIR2/blobs): hard links where that is the same filesystem,
copies otherwise. users.xlsx and the users' files are only read. Stop the
directory's server first: the directory's lock is held meanwhile.

Run it again after an interruption: what is there already is kept and only
the rest is moved. At the end every account is checked: the numbers of files
and folders and their bytes, and each file's MD5. Then serve the same disk
with `netdisk serve --db URL --data DIR` (or --data DIR2).";

#[derive(Args)]
struct MigrateArgs {
    /// The data directory to move (that of `netdisk serve --data DIR`).
    #[arg(long)]
    data: PathBuf,
    /// The database of `serve --db`.
    #[arg(long, env = "NETDISK_DB", value_name = "URL", hide_env_values = true)]
    db: String,
    /// Where the blobs go (default: the data directory itself).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
}

const SERVE_HELP: &str = "\
One port serves both TLS and plaintext: plaintext only from the peers of
--plaintext-from (by default this host's loopback addresses), TLS from
everyone. On the first start the server makes a self-signed certificate in
DATA/tls; clients pin its fingerprint, printed at start, on first use.

Connections wait in one event loop between requests and cost no worker;
a worker is taken only while a request (with its body) is served.

The same port serves the web page and its API (docs/HTTP.md): open
https://HOST:PORT/ in a browser (plain http:// works only from the peers of
--plaintext-from).

Behind a load balancer in TCP mode (HAProxy with send-proxy-v2), name it
in --proxy-from: each connection's client address is then the one the
balancer's PROXY header carries.

Example:
  netdisk serve --addr 0.0.0.0:9000 --data /srv/netdisk";

/// `serve --log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: String,
    /// Data directory: users.xlsx, every user's files, the certificate.
    #[arg(long, default_value = "./netdisk-data")]
    data: PathBuf,
    /// Keep accounts, folders, file records, unfinished uploads, login
    /// limits and web sessions in this PostgreSQL database
    /// (postgres://USER:PASS@HOST:PORT/DB) instead of users.xlsx; the file
    /// bytes stay under --data. Several servers may share one database and
    /// one data directory.
    #[arg(long, env = "NETDISK_DB", value_name = "URL", hide_env_values = true)]
    db: Option<String>,
    /// Keep the file bytes in this S3 bucket (s3://BUCKET[/PREFIX]) instead
    /// of under --data; needs --db. The endpoint and credentials come from
    /// AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    /// AWS_REGION.
    #[arg(long, env = "NETDISK_BLOBS", value_name = "S3_URL")]
    blobs: Option<String>,
    /// Worker threads: requests served at once. Idle connections do not
    /// hold one.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    workers: u32,
    /// Requests (whole headers) that may wait for a free worker; beyond
    /// that the connection gets BUSY and is closed.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    queue: u32,
    /// Seconds a connection may stay silent between requests, or a body
    /// make no progress, before it gets TIMEOUT and is closed.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout: u64,
    /// Seconds a request header (and a TLS handshake) may take once its
    /// first byte has arrived.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Seconds a new connection may take to log in (like sshd's
    /// LoginGraceTime).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    login_timeout: u64,
    /// A body (upload or download) slower than this many bytes a second,
    /// averaged over --rate-window, gets TIMEOUT (an upload keeps its
    /// staged bytes). 0 disables the floor.
    #[arg(long, value_name = "BYTES/S", default_value_t = 4096)]
    min_rate: u64,
    /// Seconds over which --min-rate is averaged.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    rate_window: u64,
    /// Connections open at once; beyond that BUSY. Default: what the
    /// descriptor limit (raised to its hard limit at start) allows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Connections open at once from one IP address (IPv6: one /64);
    /// beyond that BUSY. Enough for an office behind one NAT address.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    max_per_address: u64,
    /// Peers that may use plaintext: `any`, `none`, or addresses and CIDR
    /// blocks (comma-separated). Others must use TLS (TLS_REQUIRED).
    #[arg(long, value_name = "PEERS", default_value = "127.0.0.0/8,::1")]
    plaintext_from: PeerSet,
    /// Load balancers (addresses and CIDR blocks, comma-separated) whose
    /// connections begin with a PROXY protocol v1 or v2 header (HAProxy's
    /// send-proxy-v2): the client it names is the connection's address for
    /// the per-address limits, --plaintext-from, the login limits and the
    /// log. A PROXY header from anyone else is refused; one of these that
    /// sends none within --header-timeout is dropped.
    #[arg(long, value_name = "PEERS")]
    proxy_from: Option<PeerSet>,
    /// PEM certificate chain (leaf first) to use instead of the
    /// self-signed one, e.g. Let's Encrypt's fullchain.pem.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Default storage quota per user in bytes (users.xlsx's quota_bytes
    /// column overrides it per user). Unlimited if absent.
    #[arg(long, value_name = "BYTES")]
    quota: Option<u64>,
    /// Seconds a shutdown (SIGINT/SIGTERM) waits for requests in flight.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    grace: u64,
    /// Whether clients may create accounts with `register`; when closed,
    /// accounts are added with `netdisk user add`.
    #[arg(long, value_enum, default_value_t = Registration::Open)]
    registration: Registration,
    /// Accounts one client address may register per hour (IPv6: per /64);
    /// beyond that, RATE_LIMITED.
    #[arg(long, value_name = "N", default_value_t = netdisk::ratelimit::DEFAULT_REGISTER_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..))]
    register_limit: u32,
    /// Logins that get in at once for one user; then --login-rate a
    /// second. An address gets four times both.
    #[arg(long, value_name = "N", default_value_t = netdisk::users::pace::DEFAULT_BURST,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    login_burst: u32,
    /// Logins a second for one user after a burst (fractions allowed).
    #[arg(long, value_name = "PER_SEC", default_value_t = netdisk::users::pace::DEFAULT_RATE)]
    login_rate: f64,
    /// Seconds a login beyond that pace may wait for its turn (off the
    /// workers) before it gets RATE_LIMITED.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=300))]
    login_wait: u64,
    /// Bytes of memory that listings being built or sent may hold
    /// together; beyond that a listing waits for its turn.
    #[arg(long, value_name = "BYTES", default_value_t = netdisk::storage::budget::DEFAULT_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    listing_memory: u64,
    /// Unfinished uploads one user may hold at once; a put of another name
    /// beyond that is QUOTA_EXCEEDED.
    #[arg(long, value_name = "N", default_value_t = netdisk::storage::DEFAULT_MAX_STAGED as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_staged: u32,
    /// Files one user may hold (stored and unfinished together); an upload
    /// of a new name beyond that is QUOTA_EXCEEDED.
    #[arg(long, value_name = "N", default_value_t = netdisk::storage::DEFAULT_MAX_FILES,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_files: u64,
    /// Seconds a web session (the page's sign-in) lives without a
    /// request; signing out ends it at once.
    #[arg(long, value_name = "SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=30 * 86400))]
    web_idle: u64,
    /// The log on stderr: `text` lines, or `json`, one object per line
    /// with the same fields (for journald, Loki, ELK).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// `serve --registration`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Registration {
    /// Anyone may register, within --register-limit.
    Open,
    /// `register` is REGISTRATION_CLOSED.
    Closed,
}

const USER_HELP: &str = "\
Each subcommand rewrites users.xlsx atomically. While a server runs on the
data directory, the change goes through that server (its admin.sock, which
only its own Unix user may use) and applies at once; otherwise it is made
here. The output is the same either way. The data directory must exist.
Passwords come from NETDISK_PASSWORD, or are asked twice on a terminal.

With --db URL (or NETDISK_DB), the accounts are those in that database
(`serve --db`): each subcommand changes it directly, while servers run, and
a new password or a removal signs the user's web sessions out everywhere.
`export --xlsx FILE` writes the accounts as a sheet with the columns of
users.xlsx (from the database with --db, else from the data directory).

Examples:
  netdisk user add alice --data /srv/netdisk
  netdisk user quota alice 10000000000 --data /srv/netdisk
  netdisk user list --data /srv/netdisk
  netdisk user add alice --db postgres://netdisk@db.example/netdisk
  netdisk user export --xlsx users.xlsx --db postgres://netdisk@db.example/netdisk";

#[derive(Args)]
struct UserArgs {
    /// Data directory: users.xlsx and every user's files.
    #[arg(long, global = true, default_value = "./netdisk-data")]
    data: PathBuf,
    /// The PostgreSQL database of `serve --db`: change the accounts there.
    #[arg(
        long,
        global = true,
        env = "NETDISK_DB",
        value_name = "URL",
        hide_env_values = true
    )]
    db: Option<String>,
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account with an empty folder.
    Add {
        /// User name.
        name: String,
    },
    /// Set a new password.
    Passwd {
        /// User name.
        name: String,
    },
    /// Remove an account; its folder is moved to the data directory's attic/.
    Del {
        /// User name.
        name: String,
    },
    /// Set a user's quota in bytes, or `none` for the server's --quota.
    Quota {
        /// User name.
        name: String,
        /// Bytes, or `none`.
        #[arg(value_name = "BYTES|none", value_parser = parse_quota)]
        bytes: Quota,
    },
    /// List the accounts: name, quota, created (UTC).
    List,
    /// Write every account to a sheet with the columns of users.xlsx.
    Export {
        /// The sheet to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        xlsx: PathBuf,
    },
}

/// `user quota`'s value.
#[derive(Clone, Copy)]
struct Quota(Option<u64>);

fn parse_quota(s: &str) -> Result<Quota, String> {
    if s == "none" {
        return Ok(Quota(None));
    }
    s.parse()
        .map(|b| Quota(Some(b)))
        .map_err(|_| "a whole number of bytes, or `none`".to_string())
}

#[derive(Args)]
struct FingerprintArgs {
    /// Data directory of the server.
    #[arg(long, default_value = "./netdisk-data")]
    data: PathBuf,
    /// A PEM certificate chain to print the fingerprint of instead.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The database of `serve --db`, which keeps the generated certificate.
    #[arg(long, env = "NETDISK_DB", value_name = "URL", hide_env_values = true)]
    db: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Fingerprint(args) => fingerprint(&args),
        Command::User(args) => user(args),
        Command::Migrate(args) => migrate(&args),
        Command::Client(cmd) => cli::run(&cli.global, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // The one mapping from a failure to its documented exit code.
            ExitCode::from(cli::exit::code(&e).status())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.blobs.is_some() && args.db.is_none() {
        bail!(
            "--blobs needs --db: with the bytes in S3, the folders, file records and \
             unfinished uploads must be where every server sees them (PostgreSQL)"
        );
    }
    // Idle connections cost a descriptor each: take all the system allows.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let workers = args.workers as usize;
    // Descriptors beside connections: files in transfer, the log, users.xlsx.
    let spare = 64 + 2 * workers as u64;
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| nofile.saturating_sub(spare).clamp(16, 1 << 20));
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => CertSource::Files { cert, key },
        _ => CertSource::Generated(args.data.join("tls")),
    };
    let config = Config {
        addr: args.addr,
        data: args.data,
        db: args.db,
        blobs: args.blobs,
        workers,
        queue: args.queue as usize,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        login_timeout: Duration::from_secs(args.login_timeout),
        min_rate: args.min_rate,
        rate_window: Duration::from_secs(args.rate_window),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_per_address: usize::try_from(args.max_per_address).unwrap_or(usize::MAX),
        plaintext_from: args.plaintext_from,
        proxy_from: args.proxy_from.unwrap_or_else(PeerSet::none),
        tls,
        quota: args.quota,
        grace: Duration::from_secs(args.grace),
        registration_open: args.registration == Registration::Open,
        register_limit: args.register_limit,
        max_staged: args.max_staged as usize,
        max_files: args.max_files,
        web_idle: Duration::from_secs(args.web_idle),
        login_burst: args.login_burst,
        login_rate: args.login_rate,
        login_wait: Duration::from_secs(args.login_wait),
        listing_memory: usize::try_from(args.listing_memory).unwrap_or(usize::MAX),
        log_json: args.log_format == LogFormat::Json,
    };
    let server = Server::bind(config)?;
    let stopper = server.stopper();
    ctrlc::set_handler(move || {
        stopper.stop();
    })
    .context("cannot install the signal handler")?;
    let addr = server.local_addr()?;
    server.note(&format!("tls fingerprint {}", server.fingerprint()));
    for host in netdisk::server::reach::addresses(addr) {
        server.note(&format!("web on https://{host}/"));
        server.note(&format!(
            "webdav on https://{host}/dav/ (file managers: davs://{host}/dav/)"
        ));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);
    server.run()?;
    Ok(())
}

fn fingerprint(args: &FingerprintArgs) -> anyhow::Result<()> {
    let source = match &args.tls_cert {
        Some(cert) => {
            let pem =
                std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
            let der = netdisk::tls::server::first_certificate(&pem)
                .with_context(|| format!("no certificate in {}", cert.display()))?;
            let fp = netdisk::tls::fingerprint(&der)?;
            println!("tls fingerprint {fp}");
            return Ok(());
        }
        None => CertSource::Generated(args.data.join("tls")),
    };
    let pool = args.db.as_deref().map(netdisk::db::open).transpose()?;
    let identity = Identity::load_shared(&source, pool.as_ref())?;
    println!("tls fingerprint {}", identity.fingerprint);
    Ok(())
}

/// `netdisk migrate`.
fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    if !args.data.is_dir() {
        bail!("there is no data directory at {}", args.data.display());
    }
    let pool = netdisk::db::open(&args.db)?;
    let to = args.to.as_deref().unwrap_or(&args.data);
    let report = netdisk::migrate::run(&args.data, to, &pool, &mut |line| println!("{line}"))?;
    println!(
        "moved {} accounts ({} already there): {} files ({} already there), {} folders, \
         {} bytes, {} unfinished uploads; every count and MD5 checked",
        report.accounts,
        report.accounts_kept,
        report.files,
        report.files_kept,
        report.folders,
        report.bytes,
        report.staged
    );
    Ok(())
}

/// The change a `netdisk user` subcommand asks for (passwords asked
/// here), or for `export`, the sheet to write.
fn account_op(action: UserAction) -> anyhow::Result<Result<netdisk::users::control::Op, PathBuf>> {
    use netdisk::users::control::Op;
    Ok(Ok(match action {
        UserAction::Add { name } => {
            let password = cli::ask_password(&name, true)?;
            Op::Add {
                name,
                password: password.expose().to_string(),
            }
        }
        UserAction::Passwd { name } => {
            let password = cli::ask_password(&name, true)?;
            Op::Passwd {
                name,
                password: password.expose().to_string(),
            }
        }
        UserAction::Del { name } => Op::Del { name },
        UserAction::Quota { name, bytes } => Op::Quota {
            name,
            bytes: bytes.0,
        },
        UserAction::List => Op::List,
        UserAction::Export { xlsx } => return Ok(Err(xlsx)),
    }))
}

/// `netdisk user ...`: one change to the accounts, under the data lock.
fn user(args: UserArgs) -> anyhow::Result<()> {
    use netdisk::users::control;
    if let Some(url) = args.db.clone() {
        return user_db(&url, args);
    }
    // Only `serve` makes a data directory: a mistyped --data must not
    // silently list an empty new one.
    if !args.data.is_dir() {
        bail!(
            "there is no data directory at {}: pass --data DIR, the directory \
             `netdisk serve --data DIR` uses",
            args.data.display()
        );
    }
    let op = match account_op(args.action)? {
        Ok(op) => op,
        Err(xlsx) => {
            // A reading of the sheet, which is only ever replaced whole.
            let users = UserStore::open(&args.data.join("users.xlsx"))
                .with_context(|| format!("cannot load the accounts in {}", args.data.display()))?;
            return export(&users, &xlsx);
        }
    };
    // A running server makes the change itself; else it is made here,
    // under the data directory's lock, the same way.
    let result = match control::request(&args.data, &op) {
        Some(answer) => answer,
        None => {
            let _lock = DataLock::acquire(&args.data)?;
            let storage = Storage::open(&args.data)
                .with_context(|| format!("cannot open data directory {}", args.data.display()))?;
            let users = UserStore::open(&storage.users_file())
                .with_context(|| format!("cannot load {}", storage.users_file().display()))?;
            let target = control::Target {
                users: &users,
                storage: Some(&storage),
                signed_out: &|_| {},
            };
            control::apply(&op, &target)
        }
    };
    let text = result.map_err(|e| anyhow!("{e}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `netdisk user … --db URL`: one change to the accounts in the database.
fn user_db(url: &str, args: UserArgs) -> anyhow::Result<()> {
    use netdisk::http::sessions::Sessions;
    use netdisk::users::control;
    let pool = netdisk::db::open(url)?;
    let users = UserStore::open_db(pool.clone())?;
    let op = match account_op(args.action)? {
        Ok(op) => op,
        Err(xlsx) => return export(&users, &xlsx),
    };
    let sessions = Sessions::with_db(pool.clone());
    // Rows only: a new account owns no rows of an old one; a removed one's
    // files are retired, for the servers to free.
    let disk = netdisk::disk::db::DbDisk::for_admin(pool);
    let target = control::Target {
        users: &users,
        storage: Some(&disk),
        signed_out: &|key| sessions.remove_user(key),
    };
    let text = control::apply(&op, &target).map_err(|e| anyhow!("{e}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `netdisk user export --xlsx FILE`.
fn export(users: &UserStore, path: &std::path::Path) -> anyhow::Result<()> {
    let n = users
        .export(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("exported {n} accounts to {}", path.display());
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
