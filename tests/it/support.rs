//! Test fixtures: a real `netdisk serve` on `127.0.0.1:0` with a temp data
//! dir, a raw frame client for hostile input, and small helpers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use netdisk::client::Client;
use netdisk::db::testing::TestDb;
use netdisk::disk::s3::testing::TestS3;
use netdisk::protocol::Password;
use serde_json::Value;
use tempfile::TempDir;

/// The `netdisk` binary under test.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin!("netdisk").to_path_buf()
}

pub use crate::serve::{ready, serve_args};

/// Starts `serve` on `data`, which must refuse to start; returns its stderr.
pub fn serve_refuses(data: &Path) -> String {
    let mut child = serve_args(&mut Command::new(bin()), data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Ok(addr) = ready(&mut BufReader::new(child.stdout.take().unwrap())) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started on {addr}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The variable that runs the suite's servers on PostgreSQL: with
/// `NETDISK_TEST_ENGINE=db` every server gets `--db` and a database of its
/// own (made on `NETDISK_TEST_PG`'s server), kept for as long as its data
/// directory exists, so that a restart finds its disk again.
pub const ENGINE: &str = "NETDISK_TEST_ENGINE";

/// Whether this run's servers keep accounts and metadata in PostgreSQL
/// (`NETDISK_TEST_ENGINE=db`, or `s3` for their bytes in S3 as well).
pub fn on_db() -> bool {
    std::env::var(ENGINE).is_ok_and(|v| v == "db" || v == "s3")
}

/// Whether this run's servers keep the file bytes in S3 (`--blobs`, on a
/// moto server of each data directory's own: `NETDISK_TEST_ENGINE=s3`).
pub fn on_s3() -> bool {
    std::env::var(ENGINE).is_ok_and(|v| v == "s3")
}

/// What a data directory's servers keep their disk in.
pub struct Engine {
    pub db: TestDb,
    pub s3: Option<TestS3>,
}

/// Says that `test` checks what only the local engine has (the data
/// directory's layout, `users.xlsx`, the admin socket) and is skipped on
/// PostgreSQL; `true` if so.
pub fn local_only(test: &str) -> bool {
    if on_db() {
        eprintln!("skipped {test} with {ENGINE}=db: it checks the local data directory");
    }
    on_db()
}

/// Says that `test` breaks or plants the bytes in the data directory
/// (a disk error, a sparse file), which S3 keeps elsewhere, and is
/// skipped with `NETDISK_TEST_ENGINE=s3`; `true` if so.
pub fn local_bytes_only(test: &str) -> bool {
    if on_s3() {
        eprintln!("skipped {test} with {ENGINE}=s3: it works on the bytes in the data directory");
    }
    on_s3()
}

/// The database of the data directory `data`, made on first use.
fn db_for(data: &Path) -> Option<Arc<Engine>> {
    static DBS: Mutex<Vec<(PathBuf, Arc<Engine>)>> = Mutex::new(Vec::new());
    if !on_db() {
        return None;
    }
    let mut dbs = DBS.lock().unwrap();
    // Those of data directories gone are dropped (and their databases).
    dbs.retain(|(dir, _)| dir.exists());
    if let Some((_, db)) = dbs.iter().find(|(dir, _)| dir == data) {
        return Some(Arc::clone(db));
    }
    let db = TestDb::create("the suite on PostgreSQL").expect("NETDISK_TEST_PG is set");
    let s3 = on_s3().then(|| TestS3::start("the suite on S3").expect("moto_server is installed"));
    let engine = Arc::new(Engine { db, s3 });
    dbs.push((data.to_path_buf(), Arc::clone(&engine)));
    Some(engine)
}

/// A running server; killed and reaped on drop.
pub struct TestServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The data directory (kept across restarts by [`TestServer::restart`]).
    pub data: Arc<TempDir>,
    log: Arc<(Mutex<String>, Condvar)>,
    /// The database of a server started with `--db`.
    db_url: Option<String>,
    engine: Option<Arc<Engine>>,
    _stdout: BufReader<ChildStdout>,
}

impl TestServer {
    /// Starts a server with default options.
    pub fn start() -> TestServer {
        TestServer::with_args(&[])
    }

    /// Starts a server with extra `serve` options.
    pub fn with_args(args: &[&str]) -> TestServer {
        TestServer::start_in(Arc::new(tempfile::tempdir().unwrap()), args)
    }

    /// Starts a server on an existing data directory.
    pub fn start_in(data: Arc<TempDir>, args: &[&str]) -> TestServer {
        TestServer::spawn(Command::new(bin()), data, args)
    }

    /// Starts a server on `data` with `env` set as well.
    pub fn start_with_env(data: Arc<TempDir>, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(bin());
        command.envs(env.iter().copied());
        TestServer::spawn(command, data, args)
    }

    /// Starts a server listening on `addr` (a loopback address with port
    /// 0) instead of `127.0.0.1:0`.
    pub fn on(addr: &str, args: &[&str]) -> TestServer {
        TestServer::on_with_env(addr, args, &[])
    }

    /// [`TestServer::on`] with `env` set as well.
    pub fn on_with_env(addr: &str, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(bin());
        command.envs(env.iter().copied());
        command.args(["serve", "--addr", addr, "--data"]);
        TestServer::spawn_with(command, Arc::new(tempfile::tempdir().unwrap()), args, false)
    }

    /// Starts a server through `sh`, which first runs `prelude` (to set a
    /// resource limit, say) and then execs the server.
    pub fn start_under_shell(prelude: &str, args: &[&str]) -> TestServer {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("{prelude}; exec \"$0\" \"$@\""))
            .arg(bin());
        TestServer::spawn(sh, Arc::new(tempfile::tempdir().unwrap()), args)
    }

    fn spawn(command: Command, data: Arc<TempDir>, args: &[&str]) -> TestServer {
        TestServer::spawn_with(command, data, args, true)
    }

    /// Spawns `command` over `data`, after [`serve_args`] if `default_addr`
    /// (else `command` ends in `--data`).
    fn spawn_with(
        mut command: Command,
        data: Arc<TempDir>,
        args: &[&str],
        default_addr: bool,
    ) -> TestServer {
        if default_addr {
            serve_args(&mut command, data.path());
        } else {
            command.arg(data.path());
        }
        // A test that names its own database keeps it.
        let named = args
            .iter()
            .position(|a| *a == "--db")
            .and_then(|i| args.get(i + 1))
            .map(|url| (*url).to_string())
            .or_else(|| {
                args.iter()
                    .find_map(|a| a.strip_prefix("--db="))
                    .map(str::to_string)
            });
        let db = if named.is_some() {
            None
        } else {
            db_for(data.path())
        };
        if let Some(engine) = &db {
            command.arg("--db").arg(&engine.db.url);
            if let Some(s3) = &engine.s3 {
                command
                    .arg("--blobs")
                    .arg(format!("s3://{}", s3.bucket))
                    .env("AWS_ENDPOINT_URL", &s3.endpoint)
                    .env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
                    .env("AWS_REGION", "us-east-1");
            }
        }
        let db_url = named.or_else(|| db.as_ref().map(|d| d.db.url.clone()));
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netdisk serve");
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.0.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
                sink.1.notify_all();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let addr = match ready(&mut stdout) {
            Ok(a) => a,
            Err(line) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start: {line:?}\n{}", log.0.lock().unwrap());
            }
        };
        TestServer {
            child,
            addr,
            data,
            log,
            db_url,
            engine: db,
            _stdout: stdout,
        }
    }

    /// The database the server keeps its disk in (`--db`), if any.
    pub fn db_url(&self) -> Option<&str> {
        self.db_url.as_deref()
    }

    /// A connection to the server's database, if it has one.
    fn pg(&self) -> Option<postgres::Client> {
        let url = self.db_url()?;
        Some(postgres::Client::connect(url, postgres::NoTls).expect("connect to the test database"))
    }

    /// The row of `path` on `user`'s disk: whether it is a folder, and
    /// its blob. `None` without a database.
    fn node(&self, user: &str, path: &str) -> Option<Option<(bool, Option<String>)>> {
        let mut pg = self.pg()?;
        let row = pg
            .query_opt(
                "SELECT n.is_dir, n.blob FROM nodes n JOIN accounts a ON a.id = n.account
                 WHERE a.key = $1 AND n.path = $2",
                &[&user, &path],
            )
            .unwrap();
        Some(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Where the blob `key` keeps its bytes.
    fn blob_path(&self, key: &str) -> PathBuf {
        self.data.path().join("blobs").join(&key[..2]).join(key)
    }

    /// The bytes of the blob `key`, in the data directory or in S3.
    fn blob_bytes(&self, key: &str) -> Vec<u8> {
        match self.engine.as_ref().and_then(|e| e.s3.as_ref()) {
            Some(s3) => {
                let mut bytes = Vec::new();
                s3.open("")
                    .get_range(key, 0)
                    .expect("a file row's object")
                    .read_to_end(&mut bytes)
                    .unwrap();
                bytes
            }
            None => std::fs::read(self.blob_path(key)).expect("a file row's blob"),
        }
    }

    /// The bytes of the file at `path` on `user`'s disk, as the server
    /// stored them (`None`: no file there), whichever engine keeps it.
    pub fn stored(&self, user: &str, path: &str) -> Option<Vec<u8>> {
        match self.node(user, path) {
            None => std::fs::read(self.user_files(user).join(path)).ok(),
            Some(Some((false, Some(blob)))) => Some(self.blob_bytes(&blob)),
            Some(_) => None,
        }
    }

    /// Whether anything (file or folder) is stored at `path`.
    pub fn is_stored(&self, user: &str, path: &str) -> bool {
        match self.node(user, path) {
            None => self.user_files(user).join(path).exists(),
            Some(row) => row.is_some(),
        }
    }

    /// Whether a folder is stored at `path`.
    pub fn is_stored_dir(&self, user: &str, path: &str) -> bool {
        match self.node(user, path) {
            None => self.user_files(user).join(path).is_dir(),
            Some(row) => matches!(row, Some((true, _))),
        }
    }

    /// The names in the folder `path` (`""`: the top), sorted.
    pub fn stored_names(&self, user: &str, path: &str) -> Vec<String> {
        let mut names: Vec<String> = match self.pg() {
            None => std::fs::read_dir(self.user_files(user).join(path))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Some(mut pg) => pg
                .query(
                    "SELECT n.path FROM nodes n JOIN accounts a ON a.id = n.account
                     WHERE a.key = $1 AND n.parent = $2",
                    &[&user, &path],
                )
                .unwrap()
                .iter()
                .map(|r| {
                    let full: String = r.get(0);
                    full.rsplit('/').next().unwrap().to_string()
                })
                .collect(),
        };
        names.sort();
        names
    }

    /// The subtree below the folder `path`: each path relative to it, with
    /// a file's bytes or `None` for a folder (hidden names left out).
    pub fn stored_tree(&self, user: &str, path: &str) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![String::new()];
        while let Some(rel) = todo.pop() {
            let at = |name: &str| {
                [path, &rel, name]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/")
            };
            for name in self.stored_names(user, &at("")) {
                if name.starts_with('.') {
                    continue;
                }
                let full = at(&name);
                if self.db_url.is_none() {
                    let meta = std::fs::symlink_metadata(self.user_files(user).join(&full));
                    assert!(!meta.unwrap().is_symlink(), "a link at {full}");
                }
                let rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if self.is_stored_dir(user, &full) {
                    out.insert(rel.clone(), None);
                    todo.push(rel);
                } else {
                    let bytes = self.stored(user, &full).expect("a file listed");
                    out.insert(rel, Some(bytes));
                }
            }
        }
        out
    }

    /// Whether `user` has a home: a folder under `users/`, or an account
    /// row.
    pub fn has_home(&self, user: &str) -> bool {
        match self.pg() {
            None => self.data.path().join("users").join(user).exists(),
            Some(mut pg) => pg
                .query_opt("SELECT 1 FROM accounts WHERE key = $1", &[&user])
                .unwrap()
                .is_some(),
        }
    }

    /// Whether the server has kept where its users logged in from
    /// (`known-addresses.json`, or its table).
    pub fn keeps_known_addresses(&self) -> bool {
        match self.pg() {
            None => self.path("known-addresses.json").exists(),
            Some(mut pg) => pg
                .query_opt("SELECT 1 FROM known_addresses LIMIT 1", &[])
                .unwrap()
                .is_some(),
        }
    }

    /// The PEM of the certificate the server presents (as rclone or curl
    /// would be given it).
    pub fn cert_pem(&self) -> Vec<u8> {
        match self.pg() {
            None => std::fs::read(self.path("tls/cert.pem")).unwrap(),
            Some(mut pg) => pg
                .query_one(
                    "SELECT value FROM settings WHERE name = 'tls.cert_pem'",
                    &[],
                )
                .unwrap()
                .get(0),
        }
    }

    /// Waits until the unfinished upload of `name` holds `len` bytes or
    /// more, wherever they are (with S3: sent parts, as its row counts
    /// them); `alive` fails the test if the uploader is gone.
    #[track_caller]
    pub fn wait_staged(&self, user: &str, name: &str, len: u64, mut alive: impl FnMut() -> bool) {
        if !on_s3() {
            return wait_for_size(&self.staged_file(user, name), len, alive);
        }
        let mut pg = self.pg().expect("a database");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let held: Option<i64> = pg
                .query_opt(
                    "SELECT s.hashed FROM staged s JOIN accounts a ON a.id = s.account
                     WHERE a.key = $1 AND s.path = $2",
                    &[&user, &name],
                )
                .unwrap()
                .map(|r| r.get(0));
            if held.is_some_and(|h| h as u64 >= len) {
                return;
            }
            assert!(alive(), "the uploader of {name} is gone");
            assert!(Instant::now() < deadline, "{name} never held {len} bytes");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The file an unfinished upload of `name` is staged in, once it
    /// exists (a failing test gives up after a minute).
    #[track_caller]
    pub fn staged_file(&self, user: &str, name: &str) -> PathBuf {
        let Some(mut pg) = self.pg() else {
            let id = md5(name.as_bytes());
            return self
                .data
                .path()
                .join(format!("users/{user}/staging/{id}.part"));
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = pg
                .query_opt(
                    "SELECT s.blob FROM staged s JOIN accounts a ON a.id = s.account
                     WHERE a.key = $1 AND s.path = $2",
                    &[&user, &name],
                )
                .unwrap();
            if let Some(blob) = row.map(|r| self.blob_path(r.get(0))) {
                if blob.exists() {
                    return blob;
                }
            }
            assert!(Instant::now() < deadline, "{name} was never staged");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sets the modification time of the file at `path`, as kept by the
    /// engine, to `secs` after the epoch.
    pub fn set_stored_mtime(&self, user: &str, path: &str, secs: u64) {
        match self.pg() {
            None => std::fs::File::options()
                .write(true)
                .open(self.user_files(user).join(path))
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap(),
            Some(mut pg) => {
                let n = pg
                    .execute(
                        "UPDATE nodes SET mtime = $3 FROM accounts a
                         WHERE a.id = nodes.account AND a.key = $1 AND nodes.path = $2",
                        &[&user, &path, &i64::try_from(secs).unwrap()],
                    )
                    .unwrap();
                assert_eq!(n, 1, "{path}");
            }
        }
    }

    /// The names of the accounts, in the order they were made: the rows of
    /// `users.xlsx`, or of the accounts table.
    pub fn account_names(&self) -> Vec<String> {
        match self.pg() {
            None => crate::lifecycle::sheet_rows(&self.path("users.xlsx"))[1..]
                .iter()
                .map(|r| r[0].to_string())
                .collect(),
            Some(mut pg) => pg
                .query("SELECT name FROM accounts ORDER BY id", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }

    /// How many unfinished uploads `user` has staged.
    pub fn staged_count(&self, user: &str) -> usize {
        match self.pg() {
            // `H.part`, `H.meta`, `H.md5`: one upload.
            None => std::fs::read_dir(self.data.path().join("users").join(user).join("staging"))
                .map_or(0, |d| {
                    let stems: std::collections::BTreeSet<String> = d
                        .map(|e| {
                            let name = e.unwrap().file_name().into_string().unwrap();
                            name.split('.').next().unwrap().to_string()
                        })
                        .collect();
                    stems.len()
                }),
            Some(mut pg) => {
                let n: i64 = pg
                    .query_one(
                        "SELECT count(*) FROM staged s JOIN accounts a ON a.id = s.account
                         WHERE a.key = $1",
                        &[&user],
                    )
                    .unwrap()
                    .get(0);
                usize::try_from(n).unwrap()
            }
        }
    }

    /// Path inside the data directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.data.path().join(rel)
    }

    /// A user's visible folder.
    pub fn user_files(&self, key: &str) -> PathBuf {
        self.data.path().join("users").join(key).join("files")
    }

    /// The server's peak resident memory so far, in bytes (Linux).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle` (a failing test gives up after
    /// a minute); returns the log.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        let (lock, grew) = &*self.log;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = lock.lock().unwrap();
        while !log.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "never logged {needle:?}:\n{log}");
            log = grew.wait_timeout(log, left).unwrap().0;
        }
        log.clone()
    }

    /// The server's TLS fingerprint, as it printed it at start.
    pub fn fingerprint(&self) -> String {
        let log = self.wait_for_log("tls fingerprint sha256:");
        let line = log
            .lines()
            .find_map(|l| l.split_once(" tls fingerprint ").map(|(_, fp)| fp))
            .unwrap();
        line.trim().to_string()
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`) and waits for the exit.
    pub fn signal(&mut self, sig: &str) -> ExitStatus {
        // The shell's builtin `kill`: present wherever `sh` is.
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.child.id()))
            .status()
            .unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }

    /// Kills the server (SIGKILL) and starts a new one on the same data.
    pub fn restart(mut self, args: &[&str]) -> TestServer {
        self.signal("KILL");
        TestServer::start_in(Arc::clone(&self.data), args)
    }

    /// A fresh protocol client connection.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr).unwrap()
    }

    /// A fresh raw connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(&self.addr)
    }

    /// A raw connection from the loopback address `127.0.0.N`.
    pub fn raw_from(&self, n: u8) -> Raw {
        Raw::with_stream(connect_from(&self.addr, n))
    }

    /// A protocol client connected from the loopback address `127.0.0.N`.
    pub fn client_from(&self, n: u8) -> Client {
        Client::from_stream(connect_from(&self.addr, n)).unwrap()
    }

    /// Registers `user` with [`PASSWORD`] and returns a logged-in client.
    pub fn user(&self, user: &str) -> Client {
        let mut c = self.client();
        c.register(user, &pw()).unwrap();
        c.login(user, &pw()).unwrap();
        c
    }

    /// A client logged in as an existing `user`.
    pub fn login(&self, user: &str) -> Client {
        let mut c = self.client();
        c.login(user, &pw()).unwrap();
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Occupies a worker until dropped: a logged-in connection in the middle
/// of an upload's body, which a worker reads. `put`'s first reply proves
/// that the worker has it.
pub fn hold_worker(server: &TestServer, user: &str) -> Client {
    let mut c = server.user(user);
    let offset = c.put_begin("held", 1 << 20).unwrap();
    assert_eq!(offset, 0);
    c.write_body(b"x").unwrap();
    c
}

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";

/// [`PASSWORD`] as a [`Password`].
pub fn pw() -> Password {
    Password::new(PASSWORD)
}

/// Lowercase hex MD5 of `data`.
pub fn md5(data: &[u8]) -> String {
    use md5::Digest;
    netdisk::protocol::md5_hex(md5::Md5::digest(data))
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A TCP connection to `addr` (on 127.0.0.1) whose own end is bound to
/// the loopback address `127.0.0.N`, so that the server sees another peer.
/// Only loopback addresses: nothing leaves the host.
pub fn connect_from(addr: &str, n: u8) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let target: std::net::SocketAddrV4 = addr.parse().unwrap();
    assert!(target.ip().is_loopback());
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, n, 0)).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::from(target)).unwrap();
    TcpStream::from(fd)
}

/// Waits until the file at `path` holds at least `len` bytes, woken by
/// inotify on its folder whenever something there is written; a failing
/// test gives up after a minute. `alive` is asked after each wake-up and
/// fails the test if the writer is gone.
#[track_caller]
pub fn wait_for_size(path: &Path, len: u64, mut alive: impl FnMut() -> bool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let dir = path.parent().unwrap();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Checked after the watch exists, so that no write is missed.
    while std::fs::metadata(path).map_or(0, |m| m.len()) < len {
        assert!(alive(), "the writer of {} ended", path.display());
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} never grew to {len} bytes",
            path.display()
        );
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        poll(&mut fds, timeout).unwrap();
        let _ = inotify.read_events();
    }
}

/// A raw connection for byte-level tests.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connects, with a read timeout that bounds a failing test.
    pub fn connect(addr: &str) -> Raw {
        Raw::with_stream(TcpStream::connect(addr).unwrap())
    }

    /// Wraps a connected stream, as [`Raw::connect`].
    pub fn with_stream(stream: TcpStream) -> Raw {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a frame with the given length prefix and payload.
    pub fn send_frame(&mut self, len: u32, payload: &[u8]) {
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        self.send_bytes(&v);
    }

    /// Sends a JSON header as a well-formed frame.
    pub fn send(&mut self, header: &Value) {
        let b = serde_json::to_vec(header).unwrap();
        self.send_frame(b.len() as u32, &b);
    }

    /// Reads one reply header.
    pub fn recv(&mut self) -> Value {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).unwrap();
        serde_json::from_slice(&buf).unwrap()
    }

    /// Sends a header and reads the reply.
    pub fn call(&mut self, header: Value) -> Value {
        self.send(&header);
        self.recv()
    }

    /// Reads exactly `n` body bytes.
    pub fn recv_body(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).unwrap();
        buf
    }
}

/// Asserts an error reply carries `code`.
#[track_caller]
pub fn assert_code(reply: &Value, code: &str) {
    assert_eq!(reply["ok"], false, "expected {code}, got {reply}");
    assert_eq!(reply["error"], code, "expected {code}, got {reply}");
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Whether `tool` runs (`tool VERSION_ARG`); says that `what` is skipped
/// when it does not, and panics instead under `CI=true`, where every test
/// must run.
pub fn have_tool(tool: &str, version_arg: &str, what: &str) -> bool {
    let runs = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if runs {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "the {what} needs {tool} (CI=true: not skipped; `bash .ci/run` installs it)"
    );
    eprintln!(
        "NOTICE: {what} skipped: {tool} is missing (apt-get install {tool}, or `bash .ci/run`)"
    );
    false
}
