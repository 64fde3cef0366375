//! A protocol client: one connection, one method per command.
//!
//! It speaks only PROTOCOL.md, builds requests from the commands' shared
//! `Args`, and turns error frames into [`ClientError::Server`] in one place
//! ([`Client::call`]). Every read is bounded: connect and read timeouts,
//! and reply headers of at most 16 MiB. A connection is plaintext or TLS
//! ([`Security`]); the deadlines sit on the socket, under TLS.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::commands::{self, delete, get, login, ls, mkdir, ping, put, register, rename, whoami};
use crate::error::ErrorCode;
use crate::protocol::{
    encode_frame, read_header, FileInfo, FrameError, Header, Password, Timed, MAX_RESPONSE_HEADER,
};
use crate::tls::client::{is_loopback, server_name, KnownServers, Trust, Verifier};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client waits for the server to say or take anything.
/// Generous: resuming a large upload makes the server re-hash its prefix.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The server answered with an error frame.
    #[error("{message}")]
    Server {
        /// The wire code; `None` if this client does not know it.
        code: Option<ErrorCode>,
        /// The code as sent.
        raw: String,
        message: String,
    },
    /// The server did not answer in time.
    #[error("the server did not answer in time")]
    Timeout,
    /// The connection broke.
    #[error("connection to the server was lost: {0}")]
    Io(io::Error),
    /// The server sent something PROTOCOL.md does not allow.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// The TLS handshake failed for a reason other than trust.
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    /// The server's certificate is not trusted (see [`Trust`]).
    #[error("{}", untrusted_words(server, trust))]
    Untrusted { server: String, trust: Trust },
}

fn untrusted_words(server: &str, trust: &Trust) -> String {
    match trust {
        Trust::Unknown { fingerprint } => format!(
            "the server at {server} is not known yet; its certificate's fingerprint is \
             {fingerprint}. If that is the fingerprint the server printed at start \
             (`netdisk fingerprint` on the server), trust it with --trust {fingerprint} \
             (or NETDISK_TRUST), or connect once from a terminal and answer yes"
        ),
        Trust::Changed {
            fingerprint,
            pinned,
            file,
        } => format!(
            "the certificate of the server at {server} has CHANGED: it is now {fingerprint}, \
             but line {} of {} pins {}. Someone may be intercepting the connection. If the \
             server's key was replaced on purpose, `netdisk known-servers forget {server}` \
             and connect again",
            pinned.line,
            file.display(),
            pinned.fingerprint,
        ),
        Trust::NotTheTrusted {
            fingerprint,
            trusted,
        } => format!(
            "the server at {server} presented {fingerprint}, not the trusted {trusted}; \
             refusing to connect"
        ),
    }
}

/// Whether a connection uses TLS, and whom it trusts.
#[derive(Debug, Clone)]
pub struct Security {
    /// `None`: TLS unless every address of the server is a loopback one.
    pub tls: Option<bool>,
    /// Pinned fingerprints.
    pub known: KnownServers,
    /// A fingerprint the user vouches for (`--trust`).
    pub trust: Option<String>,
}

impl Security {
    /// Plaintext, for a server on this host.
    pub fn plaintext() -> Security {
        Security {
            tls: Some(false),
            known: KnownServers {
                path: KnownServers::default_path(),
            },
            trust: None,
        }
    }
}

/// The byte stream under a client.
enum Link {
    Plain(Timed),
    Tls(Box<StreamOwned<ClientConnection, Timed>>),
}

impl Link {
    fn timed(&mut self) -> &mut Timed {
        match self {
            Link::Plain(t) => t,
            Link::Tls(s) => &mut s.sock,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(t) => t.get_ref(),
            Link::Tls(s) => s.sock.get_ref(),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(t) => t.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(t) => t.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(t) => t.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => *code,
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

/// Shorthand for client results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One connection to a server.
pub struct Client {
    io: BufReader<Link>,
    /// How long a reply header, or any single read or write, may take.
    timeout: Duration,
}

impl Client {
    /// Connects to `addr` (`host:port`) in plaintext, trying each address
    /// it resolves to.
    ///
    /// # Errors
    /// [`ClientError::Connect`] naming the address if nothing answers.
    pub fn connect(addr: &str) -> Result<Client> {
        let (stream, _) = dial(addr)?;
        Client::from_stream(stream).map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })
    }

    /// Connects to `addr` with TLS or not, as `security` says.
    ///
    /// # Errors
    /// [`ClientError::Connect`], [`ClientError::Untrusted`] for a
    /// certificate neither a CA nor a pin vouches for, [`ClientError::Tls`].
    pub fn connect_with(addr: &str, security: &Security) -> Result<Client> {
        let (stream, resolved) = dial(addr)?;
        let tls = security.tls.unwrap_or_else(|| !is_loopback(&resolved));
        Client::over(stream, addr, tls, security)
    }

    /// A client over a connected stream to `addr` (`host:port`, the name
    /// of its pin), with TLS or not.
    ///
    /// # Errors
    /// As [`Client::connect_with`].
    pub fn over(stream: TcpStream, addr: &str, tls: bool, security: &Security) -> Result<Client> {
        if !tls {
            return Client::from_stream(stream).map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            });
        }
        let fail = |reason: String| ClientError::Tls {
            addr: addr.to_string(),
            reason,
        };
        let verifier = Verifier::new(addr, security.known.clone(), security.trust.clone());
        let config = verifier.client_config().map_err(|e| fail(e.to_string()))?;
        let name = server_name(addr).map_err(fail)?;
        let conn = ClientConnection::new(config, name).map_err(|e| fail(e.to_string()))?;
        configure(&stream).map_err(|e| fail(e.to_string()))?;
        let mut tls_stream = StreamOwned::new(conn, Timed::new(stream));
        while tls_stream.conn.is_handshaking() {
            if let Err(e) = tls_stream.conn.complete_io(&mut tls_stream.sock) {
                if let Some(trust) = verifier.refusal() {
                    return Err(ClientError::Untrusted {
                        server: addr.to_string(),
                        trust,
                    });
                }
                return Err(fail(e.to_string()));
            }
        }
        verifier
            .pin_if_trusted()
            .map_err(|e| fail(format!("cannot save the trusted fingerprint: {e}")))?;
        Ok(Client {
            io: BufReader::with_capacity(256 * 1024, Link::Tls(Box::new(tls_stream))),
            timeout: IO_TIMEOUT,
        })
    }

    /// Wraps a connected stream (plaintext).
    ///
    /// # Errors
    /// If socket options cannot be set.
    pub fn from_stream(stream: TcpStream) -> io::Result<Client> {
        configure(&stream)?;
        Ok(Client {
            io: BufReader::with_capacity(256 * 1024, Link::Plain(Timed::new(stream))),
            timeout: IO_TIMEOUT,
        })
    }

    /// Whether this connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.io.get_ref(), Link::Tls(_))
    }

    /// Changes the timeout (by default [`IO_TIMEOUT`]).
    ///
    /// # Errors
    /// If the socket options cannot be set.
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        let link = self.io.get_mut();
        link.tcp().set_write_timeout(Some(timeout))?;
        link.timed().clear_deadline(timeout)
    }

    /// Sends one request header and reads its reply header.
    ///
    /// # Errors
    /// [`ClientError::Server`] for an error frame; I/O and protocol errors.
    pub fn call(&mut self, request: &Header) -> Result<Header> {
        self.send(request)?;
        self.reply()
    }

    /// Sends a header frame without waiting for a reply.
    ///
    /// # Errors
    /// I/O errors.
    pub fn send(&mut self, header: &Header) -> Result<()> {
        let link = self.io.get_mut();
        link.write_all(&encode_frame(header))?;
        link.flush()?;
        Ok(())
    }

    /// Reads one reply header; error frames become [`ClientError::Server`].
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn reply(&mut self) -> Result<Header> {
        // The whole header within the timeout, however it trickles in; a
        // body after it only has to keep moving.
        self.io
            .get_mut()
            .timed()
            .set_deadline(Instant::now() + self.timeout);
        let read = read_header(&mut self.io, MAX_RESPONSE_HEADER);
        self.io.get_mut().timed().clear_deadline(self.timeout)?;
        let header = match read {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )))
            }
            Err(FrameError::Io(e)) => return Err(e.into()),
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        match header.get("ok") {
            Some(Value::Bool(true)) => Ok(header),
            Some(Value::Bool(false)) => {
                let raw = header
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("UNKNOWN")
                    .to_string();
                let message = header
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                Err(ClientError::Server {
                    code: ErrorCode::parse(&raw),
                    raw,
                    message,
                })
            }
            _ => Err(ClientError::Protocol("reply without \"ok\"".into())),
        }
    }

    fn typed<A: Serialize, R: DeserializeOwned>(&mut self, cmd: &str, args: &A) -> Result<R> {
        let reply = self.call(&commands::request(cmd, args))?;
        decode(reply)
    }

    /// `register`.
    ///
    /// # Errors
    /// `INVALID_NAME`, `WEAK_PASSWORD`, `USER_EXISTS`, I/O.
    pub fn register(&mut self, user: &str, password: &Password) -> Result<()> {
        self.call(&commands::request("register", &account(user, password)))
            .map(drop)
    }

    /// `login`; returns the user name as registered.
    ///
    /// # Errors
    /// `AUTH_FAILED`, `RATE_LIMITED`, I/O.
    pub fn login(&mut self, user: &str, password: &Password) -> Result<String> {
        let answer: login::Answer = self.typed("login", &account(user, password))?;
        Ok(answer.user)
    }

    /// `ls`.
    ///
    /// # Errors
    /// `NOT_LOGGED_IN`, I/O.
    pub fn ls(&mut self) -> Result<Vec<FileInfo>> {
        let answer: ls::Answer = self.typed("ls", &serde_json::Map::new())?;
        Ok(answer.files)
    }

    /// `ls` of one folder (`""`: the root), or of its whole subtree
    /// (names then are paths relative to `path`).
    ///
    /// # Errors
    /// `NOT_FOUND`, `NOT_A_FOLDER`, `INVALID_NAME`, `NOT_LOGGED_IN`, I/O.
    pub fn list(&mut self, path: &str, recursive: bool) -> Result<ls::Answer> {
        let args = ls::Args {
            path: (!path.is_empty()).then(|| path.to_string()),
            recursive: recursive.then_some(true),
        };
        self.typed("ls", &args)
    }

    /// `mkdir`: the folder at `path`, with any missing parents.
    ///
    /// # Errors
    /// `EXISTS`, `NOT_A_FOLDER`, `INVALID_NAME`, I/O.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        let args = mkdir::Args { path: path.into() };
        self.call(&commands::request("mkdir", &args)).map(drop)
    }

    /// `whoami`.
    ///
    /// # Errors
    /// `NOT_LOGGED_IN`, I/O.
    pub fn whoami(&mut self) -> Result<whoami::Answer> {
        self.typed("whoami", &serde_json::Map::new())
    }

    /// `delete`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `INVALID_NAME`, I/O.
    pub fn delete(&mut self, name: &str) -> Result<()> {
        self.remove(name, false)
    }

    /// `delete`, of a folder with all it holds if `recursive`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `NOT_EMPTY`, `NOT_A_FOLDER`, `LOCKED`, `INVALID_NAME`, I/O.
    pub fn remove(&mut self, name: &str, recursive: bool) -> Result<()> {
        let args = delete::Args {
            name: name.into(),
            recursive: recursive.then_some(true),
        };
        self.call(&commands::request("delete", &args)).map(drop)
    }

    /// `discard`: drops the unfinished upload of `name`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `LOCKED`, `INVALID_NAME`, I/O.
    pub fn discard(&mut self, name: &str) -> Result<()> {
        let args = commands::discard::Args { name: name.into() };
        self.call(&commands::request("discard", &args)).map(drop)
    }

    /// `rename`.
    ///
    /// # Errors
    /// `NOT_FOUND`, `EXISTS`, `INVALID_NAME`, I/O.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let args = rename::Args {
            from: from.into(),
            to: to.into(),
        };
        self.call(&commands::request("rename", &args)).map(drop)
    }

    /// `ping`: the server's answer, with `message` echoed.
    ///
    /// # Errors
    /// `BAD_REQUEST` (message too long), I/O.
    pub fn ping(&mut self, message: Option<&str>) -> Result<ping::Answer> {
        let args = ping::Args {
            message: message.map(str::to_string),
        };
        self.typed("ping", &args)
    }

    /// `quit`.
    ///
    /// # Errors
    /// I/O.
    pub fn quit(&mut self) -> Result<()> {
        self.call(&commands::request("quit", &serde_json::Map::new()))
            .map(drop)
    }

    /// `put` steps 1–2: returns the offset the body starts at.
    ///
    /// # Errors
    /// `INVALID_NAME`, `LOCKED`, `QUOTA_EXCEEDED`, I/O.
    pub fn put_begin(&mut self, name: &str, size: u64) -> Result<u64> {
        let args = put::Args {
            name: name.into(),
            size,
            md5: None,
        };
        let ready: put::Ready = self.typed("put", &args)?;
        if ready.offset > size {
            return Err(ClientError::Protocol(format!(
                "offset {} past size {size}",
                ready.offset
            )));
        }
        Ok(ready.offset)
    }

    /// Writes body bytes (`put` step 3), in as many calls as the caller likes.
    ///
    /// # Errors
    /// I/O.
    pub fn write_body(&mut self, bytes: &[u8]) -> Result<()> {
        let link = self.io.get_mut();
        link.write_all(bytes)?;
        if let Link::Tls(_) = link {
            // Records go out as they fill; the last partial one now.
            link.flush()?;
        }
        Ok(())
    }

    /// `put` steps 4–5: sends the whole file's MD5 and waits for the verdict.
    ///
    /// # Errors
    /// `CHECKSUM_MISMATCH`, `BAD_REQUEST`, I/O.
    pub fn put_end(&mut self, md5: &str) -> Result<put::Answer> {
        let digest = put::Digest { md5: md5.into() };
        let mut h = Header::new();
        h.extend(commands::fields(&digest));
        let reply = self.call(&h)?;
        decode(reply)
    }

    /// Sends a whole upload in one go (PROTOCOL.md, "Small uploads in one
    /// go"): the request with `md5`, then `body`, without waiting for the
    /// answer, which [`Client::put_answer`] reads. Requests sent this way
    /// are answered in order.
    ///
    /// # Errors
    /// I/O.
    pub fn put_send(&mut self, name: &str, md5: &str, body: &[u8]) -> Result<()> {
        let args = put::Args {
            name: name.into(),
            size: body.len() as u64,
            md5: Some(md5.into()),
        };
        let mut frame = encode_frame(&commands::request("put", &args));
        let link = self.io.get_mut();
        // One write for a small file: one segment on the wire.
        if body.len() <= 64 * 1024 {
            frame.extend_from_slice(body);
            link.write_all(&frame)?;
        } else {
            link.write_all(&frame)?;
            link.write_all(body)?;
        }
        link.flush()?;
        Ok(())
    }

    /// Reads the answer to the oldest upload sent with
    /// [`Client::put_send`] and not yet answered.
    ///
    /// # Errors
    /// The server's refusal (`INVALID_NAME`, `QUOTA_EXCEEDED`, `LOCKED`,
    /// `CHECKSUM_MISMATCH`, ...), I/O.
    pub fn put_answer(&mut self) -> Result<put::Answer> {
        let reply = self.reply()?;
        decode(reply)
    }

    /// Sends `get` step 1 without waiting; [`Client::get_answer`] reads
    /// the reply (and the body after it), in the order sent.
    ///
    /// # Errors
    /// I/O.
    pub fn get_send(&mut self, name: &str, offset: u64) -> Result<()> {
        let args = get::Args {
            name: name.into(),
            offset: Some(offset),
        };
        self.send(&commands::request("get", &args))
    }

    /// Reads the reply to the oldest `get` sent and not yet answered;
    /// `answer.size - answer.offset` body bytes follow.
    ///
    /// # Errors
    /// As [`Client::get_begin`].
    pub fn get_answer(&mut self, offset: u64) -> Result<get::Answer> {
        let answer: get::Answer = decode(self.reply()?)?;
        if answer.offset != offset || answer.offset > answer.size {
            return Err(ClientError::Protocol(
                "get reply with a wrong offset".into(),
            ));
        }
        if !crate::protocol::is_md5_hex(&answer.md5) {
            return Err(ClientError::Protocol(
                "get reply with an ill-typed md5".into(),
            ));
        }
        Ok(answer)
    }

    /// `get` steps 1–2: returns the reply; `answer.size - answer.offset`
    /// body bytes follow, to be read with [`Client::read_body_exact`].
    ///
    /// # Errors
    /// `NOT_FOUND`, `INVALID_NAME`, `BAD_REQUEST`, I/O.
    pub fn get_begin(&mut self, name: &str, offset: u64) -> Result<get::Answer> {
        self.get_send(name, offset)?;
        self.get_answer(offset)
    }

    /// Reads exactly `buf.len()` body bytes.
    ///
    /// # Errors
    /// I/O, including an early close.
    pub fn read_body_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.io.read_exact(buf)?;
        Ok(())
    }

    /// Whether this idle connection can no longer carry a request: the
    /// server closed it, or sent something nobody asked for (a `TIMEOUT`
    /// before closing an idle connection). Looks without waiting.
    pub fn is_stale(&mut self) -> bool {
        if !self.io.buffer().is_empty() {
            return true;
        }
        if self.io.get_ref().tcp().set_nonblocking(true).is_err() {
            return true;
        }
        let stale = match self.io.get_mut() {
            Link::Plain(t) => {
                let mut byte = [0u8; 1];
                // Data or end of stream (Ok of any length) both mean stale.
                !matches!(t.get_ref().peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // TLS records may arrive unasked (session tickets): only
            // plaintext, a close or a broken session mean stale.
            Link::Tls(s) => tls_stale(s),
        };
        self.io.get_ref().tcp().set_nonblocking(false).is_err() || stale
    }
}

/// Reads what TLS records have arrived (the socket is non-blocking) and
/// says whether they carry anything but housekeeping.
fn tls_stale(s: &mut StreamOwned<ClientConnection, Timed>) -> bool {
    loop {
        match s.conn.read_tls(&mut s.sock) {
            Ok(0) => return true,
            Ok(_) => match s.conn.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                    return true
                }
                Ok(_) => {}
                Err(_) => return true,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// The fields of `register` and `login`.
fn account(user: &str, password: &Password) -> register::Args {
    register::Args {
        user: user.to_string(),
        password: password.clone(),
    }
}

/// Opens a TCP connection to the first address of `addr` that answers.
fn dial(addr: &str) -> Result<(TcpStream, Vec<SocketAddr>)> {
    let fail = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let resolved: Vec<SocketAddr> = addr.to_socket_addrs().map_err(fail)?.collect();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing");
    for sa in &resolved {
        match TcpStream::connect_timeout(sa, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok((stream, resolved)),
            Err(e) => last = e,
        }
    }
    Err(fail(last))
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))
}

fn decode<R: DeserializeOwned>(mut reply: Header) -> Result<R> {
    reply.remove("ok");
    serde_json::from_value(Value::Object(reply))
        .map_err(|e| ClientError::Protocol(format!("unexpected reply: {e}")))
}
