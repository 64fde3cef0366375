//! A throw-away S3 store for one test: `moto_server` (moto, from PyPI:
//! `python3 -m pip install 'moto[server]'`) on an ephemeral loopback port,
//! with a fresh bucket, killed by PID on drop. Without `moto_server` on the
//! PATH such a test says it is skipped and passes, except in CI
//! (`CI=true`), where it fails: a CI run must not pass without having run
//! them (`.ci/run` installs moto).
//!
//! Why moto: it starts in about a second with nothing to build (s3s-fs, a
//! Rust S3 server, takes some six minutes to build here), keeps objects in
//! memory, and speaks enough S3 for these requests. Its quirks (moto 5.2):
//! - it does not check `Content-MD5`: a wrong one is stored as sent (the
//!   client's tests check the header goes out, signed, instead);
//! - an upload part or completion of an aborted upload fails with a 500
//!   (AWS: 404 `NoSuchUpload`), which the client retries as a passing fault;
//! - like AWS, it refuses parts under 5 MiB but the last (`EntityTooSmall`)
//!   and gives a part the quoted hex MD5 of its bytes as its ETag;
//! - it checks no signature: any key and secret are let in.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{Backoff, S3Config, S3};

/// The S3 server the tests run.
pub const TOOL: &str = "moto_server";

/// A moto server with one empty bucket, stopped on drop.
pub struct TestS3 {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
    /// moto's log line of each request so far (`"DELETE /b/k?uploadId=…
    /// HTTP/1.1" 204 -`).
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestS3 {
    /// A new server and bucket, or `None` (after a skip notice) when
    /// `moto_server` is missing outside CI.
    ///
    /// # Panics
    /// If moto is missing in CI, or does not start, or refuses the bucket.
    pub fn start(test: &str) -> Option<TestS3> {
        // Killed with the thread that started it, should this value never
        // be dropped (one kept to the end of a test run, say): util-linux's
        // `setpriv --pdeathsig`, where it is (Debian: always).
        let mut command = match which("setpriv") {
            true => {
                let mut c = Command::new("setpriv");
                c.args(["--pdeathsig", "KILL", TOOL]);
                c
            }
            false => Command::new(TOOL),
        };
        if !which(TOOL) {
            command = Command::new(TOOL);
        }
        command
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = command.spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{test}: {TOOL} is not installed, and CI=true: S3 tests must run");
                }
                eprintln!(
                    "skipped {test}: install moto (python3 -m pip install 'moto[server]') to run it"
                );
                return None;
            }
            Err(e) => panic!("{test}: cannot start {TOOL}: {e}"),
        };
        // moto says `Running on http://127.0.0.1:PORT` on stderr, and logs
        // each request there after: read on to the end, or it would block.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let _ = tx.send(rest.trim().parse::<u16>().ok());
                } else if line.contains(" HTTP/1.1\" ") {
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            }
        });
        let mut server = TestS3 {
            child,
            endpoint: String::new(),
            bucket: String::new(),
            requests,
        };
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => port,
            other => panic!("{test}: {TOOL} did not say its port: {other:?}"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{test}: {TOOL} does not answer on {addr}"
            );
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{test}: {TOOL} exited: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        server.endpoint = format!("http://{addr}");
        static SEQ: AtomicU64 = AtomicU64::new(0);
        server.bucket = format!(
            "netdisk-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        server.create_bucket(test);
        Some(server)
    }

    /// The store's config, keys under `prefix` (quick retries, short
    /// timeouts).
    ///
    /// # Panics
    /// Never for a valid prefix.
    pub fn config(&self, prefix: &str) -> S3Config {
        let url = format!("s3://{}/{prefix}", self.bucket);
        let endpoint = self.endpoint.clone();
        let mut config = S3Config::from_vars(&url, |name| match name {
            "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
            "AWS_ACCESS_KEY_ID" => Some("testing".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("testing-secret".into()),
            _ => None,
        })
        .expect("test store config");
        config.connect_timeout = Duration::from_secs(5);
        config.io_timeout = Duration::from_secs(10);
        config.backoff = Backoff {
            attempts: 3,
            first: Duration::from_millis(50),
        };
        config
    }

    /// The request lines the store has logged so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The CPU seconds the store has used so far (user and system), where
    /// `/proc` tells them.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// A client of the bucket, keys under `prefix`.
    ///
    /// # Panics
    /// If the store does not answer.
    pub fn open(&self, prefix: &str) -> S3 {
        S3::open(self.config(prefix)).expect("open the test store")
    }

    fn create_bucket(&self, test: &str) {
        let endpoint = self.endpoint.parse().expect("endpoint URL");
        let bucket = Bucket::new(endpoint, UrlStyle::Path, self.bucket.clone(), "us-east-1")
            .expect("bucket");
        let credentials = Credentials::new("testing", "testing-secret");
        let action = bucket.create_bucket(&credentials);
        let url = action.sign(Duration::from_secs(600));
        ureq::request_url("PUT", &url)
            .send_string(&action.body())
            .unwrap_or_else(|e| panic!("{test}: cannot create bucket {}: {e}", self.bucket));
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `tool` is on the PATH.
fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}
