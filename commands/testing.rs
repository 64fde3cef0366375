//! A server's state without a server, for the handlers' unit tests: a
//! temp data dir, the user store and storage over it, and a way to run
//! one command as one connection would.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{lookup, Ctx, Then};
use crate::error::{Error, ErrorCode};
use crate::protocol::{Header, Reply};
use crate::server::bodies::Bodies;
use crate::server::limits::PeerSet;
use crate::server::log::Log;
use crate::state::{Config, Shared};
use crate::storage::Storage;
use crate::tls::server::CertSource;
use crate::users::{User, UserStore};

/// The password of every fixture user.
pub const PASSWORD: &str = "correct horse battery";

/// Settings as `netdisk serve` defaults them, over `data`.
pub fn config(data: &Path) -> Config {
    Config {
        addr: "127.0.0.1:0".into(),
        data: data.to_path_buf(),
        workers: 2,
        queue: 4,
        idle_timeout: Duration::from_secs(300),
        header_timeout: Duration::from_secs(10),
        login_timeout: Duration::from_secs(30),
        min_rate: 4096,
        rate_window: Duration::from_secs(30),
        max_connections: 64,
        max_per_address: 16,
        plaintext_from: PeerSet::loopback(),
        proxy_from: PeerSet::none(),
        tls: CertSource::Generated(data.join("tls")),
        quota: None,
        grace: Duration::from_secs(1),
        registration_open: true,
        register_limit: 10,
        max_staged: 16,
        max_files: crate::storage::DEFAULT_MAX_FILES,
        web_idle: Duration::from_secs(1800),
        login_burst: crate::users::pace::DEFAULT_BURST,
        login_rate: crate::users::pace::DEFAULT_RATE,
        login_wait: Duration::from_secs(10),
        listing_memory: crate::storage::budget::DEFAULT_BYTES,
        log_json: false,
        db: None,
        blobs: None,
    }
}

/// A fresh state in a temp dir, changed by `tweak` first.
pub fn shared_with(tweak: impl FnOnce(&mut Config)) -> (TempDir, Shared) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    tweak(&mut config);
    let storage = Storage::open(dir.path()).unwrap();
    let users = UserStore::open(&storage.users_file()).unwrap();
    let bodies = Bodies::new(config.workers, config.min_rate, config.rate_window);
    let shared = Shared {
        users,
        disk: Box::new(storage),
        bodies: Arc::new(bodies),
        config,
        log: Log::default(),
        stop: Arc::new(AtomicBool::new(false)),
        web: Default::default(),
        locks: Default::default(),
        dav_auth: Default::default(),
        db: None,
    };
    (dir, shared)
}

/// A fresh state with default settings.
pub fn shared() -> (TempDir, Shared) {
    shared_with(|_| {})
}

/// One connection's session: who is logged in.
pub struct Session<'a> {
    pub shared: &'a Shared,
    pub user: Option<Arc<User>>,
    /// Whether the last request asked to close the connection.
    pub closed: bool,
    /// The pre-encoded reply frame of the last request, if it made one.
    pub frame: Option<Arc<Vec<u8>>>,
}

impl<'a> Session<'a> {
    /// An anonymous session.
    pub fn anonymous(shared: &'a Shared) -> Session<'a> {
        Session {
            shared,
            user: None,
            closed: false,
            frame: None,
        }
    }

    /// A session logged in as a new user `name`.
    pub fn user(shared: &'a Shared, name: &str) -> Session<'a> {
        let mut s = Session::anonymous(shared);
        s.ok(&format!(
            r#"{{"cmd":"register","user":"{name}","password":"{PASSWORD}"}}"#
        ));
        s.ok(&format!(
            r#"{{"cmd":"login","user":"{name}","password":"{PASSWORD}"}}"#
        ));
        s
    }

    /// Runs one request (JSON text) as the session would, auth gate
    /// included; returns the reply fields and what follows them.
    pub fn run(&mut self, json: &str) -> Result<(Reply, Option<Then>), Error> {
        let header: Header = serde_json::from_str(json).unwrap();
        let cmd = header.get("cmd").and_then(Value::as_str).unwrap();
        let command = lookup(cmd).unwrap();
        if command.requires_auth() && self.user.is_none() {
            return Err(Error::NotLoggedIn);
        }
        let mut ctx = Ctx::new(self.shared, &mut self.user, "127.0.0.1");
        let result = command.run(&mut ctx, &header);
        let (then, closed, frame) = (ctx.then, ctx.close, ctx.frame);
        self.closed = closed;
        self.frame = frame;
        Ok((result?, then))
    }

    /// Runs a request that must succeed; returns its reply fields.
    #[track_caller]
    pub fn ok(&mut self, json: &str) -> Reply {
        match self.run(json) {
            Ok((reply, _)) => reply,
            Err(e) => panic!("{json}: {e:?}"),
        }
    }

    /// Runs a request that must fail with `code`.
    #[track_caller]
    pub fn fails(&mut self, json: &str, code: ErrorCode) {
        match self.run(json) {
            Ok((reply, _)) => panic!("{json}: expected {code}, got {reply:?}"),
            Err(e) => assert_eq!(e.code(), code, "{json}: {e:?}"),
        }
    }

    /// Stores `data` as `name` in the user's folder, as a finished upload.
    pub fn store(&mut self, name: &str, data: &[u8]) {
        let (_, then) = self
            .run(&format!(
                r#"{{"cmd":"put","name":"{name}","size":{}}}"#,
                data.len()
            ))
            .unwrap();
        let Some(Then::Receive(mut up)) = then else {
            panic!("put leaves an upload to receive");
        };
        feed(&mut up, data);
        let md5 = {
            use md5::Digest;
            crate::protocol::md5_hex(md5::Md5::digest(data))
        };
        let step4: Header = serde_json::from_str(&format!(r#"{{"md5":"{md5}"}}"#)).unwrap();
        up.finish(&step4).unwrap();
    }
}

/// Feeds `data` to an upload as the client's body.
pub fn feed(up: &mut super::put::Receive, data: &[u8]) {
    let mut src = data;
    up.receive(|chunk| {
        let n = chunk.len().min(src.len());
        chunk[..n].copy_from_slice(&src[..n]);
        src = &src[n..];
        (n, Ok(()))
    })
    .unwrap();
}
